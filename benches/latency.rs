//! Latency to the first sound: from the end of the webwxsync response that carries a
//! payment to the first audio sample handed to the output device.
//!
//! The real pieces run: the simulator (on a runtime of its own), the real session client and
//! daemon (`Daemon::run`, on a runtime built like `paysay run`'s), the ledger on disk
//! (`synchronous=FULL`), the speech cache, the audio thread with the chime. The output is
//! the null output (or, with `--output rodio`, the system device: run it under
//! `ALSA_CONFIG_PATH=../shared/audio/asound-capture.conf`) wrapped so that the sound's first
//! sample stamps the clock.
//!
//! Clock start: `RecordedRequest::answered_at`, taken in the simulator when the webwxsync
//! answer is ready and handed to HTTP, so the figure includes the transfer, the client's
//! read and parse. Clock stop: the first `next()` of the sound the output was given.
//!
//!     cargo bench --bench latency [-- --payments 200 --amounts 10 --pause-ms 400]
//!
//! `--cache-clips N` first fills the speech cache with N older 16 kB clips, as a shop's
//! cache looks after months of amounts (the default 64 MB holds about 4000 Baidu MP3s), so
//! the cold phase pays what storing a new clip costs next to them.
//!
//! Through ALSA's capture config, the output closed between customers as in a shop (each
//! sound then opens the device afresh):
//!
//!     ALSA_CONFIG_PATH=../shared/audio/asound-capture.conf AUDIO_CAPTURE=/tmp/latency.wav \
//!       cargo bench --bench latency -- --output rodio --idle-close-ms 50 --pause-ms 250

mod common;

use std::sync::mpsc;
use std::time::{Duration, Instant};

use paysay::audio::{OUTPUTS, Player};
use paysay::config::Config;
use paysay::daemon;
use paysay::paths::Paths;
use tokio_util::sync::CancellationToken;
use wechat_sim::{Endpoint, SimConfig, Simulator};

use common::stamping::Stamping;
use common::{SimServer, arg, arg_str, init_log, runtime, summary_ms};

/// How long a sound may take to come before the run is called broken.
const PATIENCE: Duration = Duration::from_secs(60);

fn main() {
    let payments: usize = arg("--payments", 200);
    let amounts: u64 = arg("--amounts", 10);
    // Longer than the session's floor between two synccheck requests
    // (`min_request_interval_ms`, 300 ms): a customer who pays sooner after the one before
    // waits for it, and the figure would be the floor, not paysay.
    let pause = Duration::from_millis(arg("--pause-ms", 400));
    let output = arg_str("--output", "null");
    let mut config = Config::default();
    // The cold phase measures synthesis, as before voice banks: new amounts composed from
    // the bank are `benches/compose.rs`'s subject, and a bank built in the background at
    // start would make this phase depend on whether it is ready yet.
    config.speech.compose = paysay::config::Compose::Never;
    config.audio.idle_close_ms = arg("--idle-close-ms", config.audio.idle_close_ms);
    let idle_close_ms = config.audio.idle_close_ms;
    let scratch = tempfile::tempdir().expect("a scratch dir");
    init_log(scratch.path(), "daemon.log");
    let cache_clips: usize = arg("--cache-clips", 0);
    prefill_cache(&scratch.path().join("cache/tts"), cache_clips);

    let server = SimServer::start(SimConfig {
        // WeChat's: the client sits in synccheck when a payment comes, as in a shop.
        long_poll: Duration::from_secs(25),
        auto_login: Some(Duration::from_millis(20)),
        ..SimConfig::default()
    });
    let sim = server.sim.clone();
    let (stamps, first_samples) = mpsc::channel();
    let runtime = runtime(2);
    let shutdown = CancellationToken::new();
    let daemon = runtime.spawn(start_daemon(
        config,
        &sim,
        scratch.path(),
        &output,
        stamps,
        shutdown.clone(),
    ));
    wait_until_idle(&server, &first_samples);

    let fens: Vec<u64> = (0..amounts).map(|i| 1250 + 101 * i).collect();
    println!(
        "latency: {payments} payments over {amounts} amounts, pause {} ms, output {output}, idle close {} ms, {cache_clips} clips cached before",
        pause.as_millis(),
        idle_close_ms
    );
    let cold = measure(&sim, &first_samples, fens.iter().copied(), pause);
    let warm_amounts = fens.iter().copied().cycle().take(payments);
    let warm = measure(&sim, &first_samples, warm_amounts, pause);
    report("cold cache (espeak-ng synthesizes)", cold);
    report("warm cache", warm);

    shutdown.cancel();
    match runtime.block_on(daemon) {
        Ok(Ok(())) => {}
        other => eprintln!("the daemon ended badly: {other:?}"),
    }
    server.stop();
    if arg("--keep", false) {
        // For reading the daemon's log afterwards (PAYSAY_LOG=debug times each step).
        println!("kept {}", scratch.keep().display());
    }
}

/// `n` clips of 16 kB in the speech cache, a day old, so none is the newest.
fn prefill_cache(dir: &std::path::Path, n: usize) {
    std::fs::create_dir_all(dir).expect("the cache dir");
    let day_ago = std::time::SystemTime::now() - Duration::from_secs(86_400);
    for i in 0..n {
        let path = dir.join(format!("baidu-{i:016x}.mp3"));
        std::fs::write(&path, [0u8; 16 * 1024]).expect("a cached clip");
        let file = std::fs::File::options().append(true).open(&path);
        file.and_then(|f| f.set_modified(day_ago))
            .expect("the clip's time");
    }
}

/// The daemon as `paysay run` starts it, with the stamping output.
fn start_daemon(
    mut config: Config,
    sim: &Simulator,
    scratch: &std::path::Path,
    output: &str,
    stamps: mpsc::Sender<Instant>,
    shutdown: CancellationToken,
) -> impl Future<Output = Result<(), daemon::DaemonError>> + use<> {
    config.wechat.base_url = Some(sim.base_url());
    let mut paths = Paths::new(&scratch.join("config.toml"), &config)
        .expect("a home dir")
        .with_state_dir(&scratch.join("state"));
    paths.cache_dir = scratch.join("cache");
    let make = OUTPUTS
        .iter()
        .find(|(name, _)| *name == output)
        .map(|(_, make)| *make)
        .expect("--output is one of: rodio, null");
    let player = Player::spawn_with(&config.audio, move || {
        Box::new(Stamping {
            inner: make(),
            stamps,
        })
    })
    .expect("the audio thread");
    daemon::Daemon::new(config, paths)
        .player(player)
        .run(shutdown)
}

/// Logged in and past the first batch (the status-notify message): the client now sits in
/// a synccheck long-poll, as it does at the counter between customers. The login alert (a
/// fresh state dir always needs a scan) has been said, and its stamp taken away.
fn wait_until_idle(server: &SimServer, first_samples: &mpsc::Receiver<Instant>) {
    let sim = &server.sim;
    let logged_in = server
        .runtime
        .block_on(sim.wait_for_requests(Endpoint::Sync, 1, PATIENCE));
    assert!(logged_in, "the daemon did not log in to the simulator");
    let alert = first_samples.recv_timeout(PATIENCE);
    assert!(alert.is_ok(), "the login alert was not said");
    std::thread::sleep(Duration::from_millis(500));
    while first_samples.try_recv().is_ok() {}
}

/// What one payment took.
struct Sample {
    /// webwxsync answered → first sample.
    from_sync: Duration,
    /// `pay()` → first sample: also the synccheck wake-up and the webwxsync round trip.
    from_pay: Duration,
}

fn measure(
    sim: &Simulator,
    first_samples: &mpsc::Receiver<Instant>,
    amounts: impl Iterator<Item = u64>,
    pause: Duration,
) -> Vec<Sample> {
    let mut samples = Vec::new();
    for fen in amounts {
        let paid_at = Instant::now();
        let msg_id = sim.pay(fen);
        let heard_at = first_samples
            .recv_timeout(PATIENCE)
            .expect("the payment was announced");
        // The announcement finishes (chime, words, ledger mark) and the client goes back to
        // synccheck before the next customer; the record is read only then.
        std::thread::sleep(pause);
        let answered_at = sim
            .requests_to(Endpoint::Sync)
            .iter()
            .find(|r| r.response.contains(&msg_id))
            .map(|r| r.answered_at)
            .expect("a webwxsync carried the payment");
        samples.push(Sample {
            from_sync: heard_at.saturating_duration_since(answered_at),
            from_pay: heard_at.saturating_duration_since(paid_at),
        });
    }
    samples
}

fn report(label: &str, samples: Vec<Sample>) {
    let (mut from_sync, mut from_pay): (Vec<_>, Vec<_>) =
        samples.iter().map(|s| (s.from_sync, s.from_pay)).unzip();
    println!(
        "{}",
        summary_ms(&format!("{label}: webwxsync end → sound"), &mut from_sync)
    );
    println!(
        "{}",
        summary_ms(&format!("{label}: pay() → sound"), &mut from_pay)
    );
}
