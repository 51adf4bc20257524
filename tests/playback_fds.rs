//! In-process playback through rodio into ALSA's file plugin: the output is really closed
//! after the idle spell (the capture stops growing) and the process's open file descriptors
//! go back to their count. ALSA reads its configuration from the environment, which is
//! process-wide, so this binary has its own `main` (no test harness threads) and sets the
//! environment before anything else runs.

use std::path::Path;
use std::time::{Duration, Instant};

use paysay::audio::Player;
use paysay::config::AudioConfig;
use paysay::speech::Clip;

fn main() {
    let dir = tempfile::tempdir().expect("temp dir");
    let capture = dir.path().join("capture.wav");
    let conf = Path::new(env!("CARGO_MANIFEST_DIR")).join("tests/asound-capture.conf");
    // SAFETY: no other thread exists yet in this process (harness = false, nothing spawned).
    unsafe {
        std::env::set_var("ALSA_CONFIG_PATH", conf);
        std::env::set_var("AUDIO_CAPTURE", &capture);
    }
    let runtime = tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
        .expect("runtime");
    runtime.block_on(output_is_closed_after_idle_and_fds_return(
        dir.path(),
        &capture,
    ));
    println!("playback_fds: ok");
}

fn open_fds() -> usize {
    std::fs::read_dir("/proc/self/fd")
        .expect("/proc/self/fd")
        .count()
}

fn wait_until(what: &str, check: impl Fn() -> bool) {
    let deadline = Instant::now() + Duration::from_secs(10);
    while !check() {
        assert!(Instant::now() < deadline, "timed out waiting for {what}");
        std::thread::sleep(Duration::from_millis(10));
    }
}

/// A 0.5 s 440 Hz tone as a clip.
fn tone(dir: &Path) -> Clip {
    let path = dir.join("tone.wav");
    let spec = hound::WavSpec {
        channels: 1,
        sample_rate: 22050,
        bits_per_sample: 16,
        sample_format: hound::SampleFormat::Int,
    };
    let mut writer = hound::WavWriter::create(&path, spec).expect("create tone");
    for i in 0..11025 {
        let t = i as f64 / 22050.0;
        writer
            .write_sample(((t * 440.0 * std::f64::consts::TAU).sin() * 16000.0) as i16)
            .expect("write tone");
    }
    writer.finalize().expect("finish tone");
    Clip::file(path, "test", "tone", true)
}

async fn output_is_closed_after_idle_and_fds_return(dir: &Path, capture: &Path) {
    let clip = tone(dir);
    let config = AudioConfig {
        volume: 1.0,
        chime: true,
        chime_path: None,
        idle_close_ms: 200,
    };
    let player = Player::spawn(&config).expect("audio thread");
    let before = open_fds();
    for round in 1..=3 {
        player.play(clip.clone()).await.expect("play through ALSA");
        let while_open = open_fds();
        assert!(
            player.is_output_open(),
            "round {round}: output closed before the idle spell"
        );
        wait_until("the output to close", || !player.is_output_open());
        let after = open_fds();
        eprintln!("round {round}: fds before {before}, open {while_open}, after close {after}");
        assert!(
            while_open > before,
            "the open output should hold descriptors (measuring nothing?)"
        );
        assert_eq!(after, before, "round {round}: descriptors leaked");
        // Closed for real: ALSA's unpaced null device would otherwise keep writing silence.
        let size = std::fs::metadata(capture).expect("capture written").len();
        std::thread::sleep(Duration::from_millis(300));
        assert_eq!(
            std::fs::metadata(capture).expect("capture").len(),
            size,
            "capture still growing"
        );
    }
    let mut reader = hound::WavReader::open(capture).expect("capture is a WAV");
    let spec = reader.spec();
    let samples: Vec<i16> = reader
        .samples::<i16>()
        .map(|s| s.expect("sample"))
        .collect();
    let seconds = samples.len() as f64 / f64::from(spec.sample_rate) / f64::from(spec.channels);
    let loud = samples.iter().filter(|s| s.unsigned_abs() > 3000).count();
    eprintln!("last capture: {seconds:.2} s, {loud} loud samples");
    // Chime (0.73 s) + tone (0.5 s) at least.
    assert!(seconds >= 1.2, "{seconds} s");
    assert!(loud > 10_000, "capture is silent");
    player.shutdown().await;
}
