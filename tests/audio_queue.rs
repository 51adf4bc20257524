//! The audio thread with test outputs: order, completion, idle close, volume, chime,
//! missing devices and shutdown. No sound card needed.

use std::path::{Path, PathBuf};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use paysay::audio::{AudioError, AudioOutput, NullOutput, Player, PlayerHandle, Sound};
use paysay::config::AudioConfig;
use paysay::speech::Clip;

/// Writes a mono 16 kHz WAV of `seconds` at constant `level` (0..1) and returns its clip.
fn clip(dir: &Path, name: &str, seconds: f64, level: f64) -> Clip {
    let path = dir.join(format!("{name}.wav"));
    let spec = hound::WavSpec {
        channels: 1,
        sample_rate: 16000,
        bits_per_sample: 16,
        sample_format: hound::SampleFormat::Int,
    };
    let mut writer = hound::WavWriter::create(&path, spec).unwrap();
    for i in 0..(seconds * 16000.0) as usize {
        // A square wave, so the level is the peak on both signs.
        let sign = if i % 20 < 10 { 1.0 } else { -1.0 };
        writer
            .write_sample((sign * level * 32767.0) as i16)
            .unwrap();
    }
    writer.finalize().unwrap();
    Clip::file(path, "test", name, false)
}

fn config(chime: bool, idle_close_ms: u64) -> AudioConfig {
    AudioConfig {
        volume: 1.0,
        chime,
        chime_path: None,
        idle_close_ms,
    }
}

#[derive(Debug, Clone, PartialEq)]
enum Event {
    Start,
    Stop,
    /// Seconds of sound and its peak level.
    Write(f64, f32),
}

/// Records what the thread did; `start` fails while `failing_starts` is above zero, and each
/// write takes `write_time` (like a real device playing in real time).
#[derive(Clone, Default)]
struct Recorder {
    events: Arc<Mutex<Vec<Event>>>,
    failing_starts: Arc<Mutex<u32>>,
    write_time: Duration,
}

impl Recorder {
    fn events(&self) -> Vec<Event> {
        self.events.lock().unwrap().clone()
    }
    fn writes(&self) -> Vec<(f64, f32)> {
        self.events()
            .into_iter()
            .filter_map(|e| match e {
                Event::Write(s, p) => Some((s, p)),
                _ => None,
            })
            .collect()
    }
    fn spawn(&self, config: &AudioConfig) -> PlayerHandle {
        let output = self.clone();
        Player::spawn_with(config, move || Box::new(output)).unwrap()
    }
}

impl AudioOutput for Recorder {
    fn start(&mut self) -> Result<(), AudioError> {
        let mut failing = self.failing_starts.lock().unwrap();
        if *failing > 0 {
            *failing -= 1;
            return Err(AudioError::NoDevice("test: speaker unplugged".into()));
        }
        self.events.lock().unwrap().push(Event::Start);
        Ok(())
    }
    fn stop(&mut self) {
        self.events.lock().unwrap().push(Event::Stop);
    }
    fn write(&mut self, mut sound: Sound) -> Result<(), AudioError> {
        let (mut seconds, mut peak) = (0.0, 0.0f32);
        loop {
            let per_second =
                f64::from(sound.sample_rate().get()) * f64::from(sound.channels().get());
            let Some(sample) = sound.next() else { break };
            seconds += 1.0 / per_second;
            peak = peak.max(sample.abs());
        }
        std::thread::sleep(self.write_time);
        self.events
            .lock()
            .unwrap()
            .push(Event::Write(seconds, peak));
        Ok(())
    }
}

/// Waits (briefly, for the audio thread) until `check` holds.
fn eventually(what: &str, check: impl Fn() -> bool) {
    let deadline = Instant::now() + Duration::from_secs(5);
    while !check() {
        assert!(Instant::now() < deadline, "timed out waiting for: {what}");
        std::thread::sleep(Duration::from_millis(10));
    }
}

const TAIL: f64 = 0.15;

#[tokio::test]
async fn clips_play_one_after_another_in_order() {
    let dir = tempfile::tempdir().unwrap();
    let recorder = Recorder::default();
    let player = recorder.spawn(&config(false, 60_000));
    let plays: Vec<_> = [0.3, 0.1, 0.2]
        .iter()
        .enumerate()
        .map(|(i, s)| player.play(clip(dir.path(), &i.to_string(), *s, 0.5)))
        .collect();
    for play in plays {
        play.await.unwrap();
    }
    let lengths: Vec<f64> = recorder
        .writes()
        .iter()
        .map(|(s, _)| (s - TAIL) * 10.0)
        .map(f64::round)
        .collect();
    assert_eq!(lengths, [3.0, 1.0, 2.0]);
    // One opening for the whole burst: the output stays open between queued clips.
    assert_eq!(
        recorder
            .events()
            .iter()
            .filter(|e| **e == Event::Start)
            .count(),
        1
    );
    player.shutdown().await;
}

#[tokio::test]
async fn play_resolves_only_when_the_clip_has_been_played() {
    let dir = tempfile::tempdir().unwrap();
    let recorder = Recorder {
        write_time: Duration::from_millis(300),
        ..Recorder::default()
    };
    let player = recorder.spawn(&config(false, 60_000));
    let started = Instant::now();
    player.play(clip(dir.path(), "a", 0.1, 0.5)).await.unwrap();
    assert!(started.elapsed() >= Duration::from_millis(300));
    assert_eq!(recorder.writes().len(), 1);
}

#[tokio::test]
async fn chime_plays_before_the_words() {
    let dir = tempfile::tempdir().unwrap();
    let recorder = Recorder::default();
    let player = recorder.spawn(&config(true, 60_000));
    player.play(clip(dir.path(), "a", 1.0, 0.5)).await.unwrap();
    let (seconds, _) = recorder.writes()[0];
    let chime = 32189.0 / 44100.0;
    assert!((seconds - (chime + 1.0 + TAIL)).abs() < 0.01, "{seconds} s");
}

#[tokio::test]
async fn chime_path_overrides_and_a_bad_one_is_refused_at_start() {
    let dir = tempfile::tempdir().unwrap();
    let chime = clip(dir.path(), "chime", 0.5, 0.2);
    let recorder = Recorder::default();
    let config = AudioConfig {
        chime_path: chime.path().map(std::path::Path::to_path_buf),
        ..config(true, 60_000)
    };
    let player = recorder.spawn(&config);
    player.play(clip(dir.path(), "a", 1.0, 0.5)).await.unwrap();
    let (seconds, _) = recorder.writes()[0];
    assert!((seconds - (0.5 + 1.0 + TAIL)).abs() < 0.01, "{seconds} s");

    let bad = AudioConfig {
        chime_path: Some(dir.path().join("missing.wav")),
        ..config
    };
    let err = Player::spawn_with(&bad, || Box::new(NullOutput::default())).unwrap_err();
    assert!(matches!(err, AudioError::Chime { .. }), "{err:?}");
    assert!(err.to_string().contains("missing.wav"), "{err}");
}

#[tokio::test]
async fn volume_applies_and_can_change_at_run_time() {
    let dir = tempfile::tempdir().unwrap();
    let recorder = Recorder::default();
    let player = recorder.spawn(&AudioConfig {
        volume: 0.5,
        ..config(false, 60_000)
    });
    let a = clip(dir.path(), "a", 0.1, 0.8);
    player.play(a.clone()).await.unwrap();
    player.set_volume(1.0);
    player.play(a).await.unwrap();
    let peaks: Vec<f32> = recorder.writes().iter().map(|(_, p)| *p).collect();
    assert!(
        (peaks[0] - 0.4).abs() < 0.01 && (peaks[1] - 0.8).abs() < 0.01,
        "{peaks:?}"
    );
    player.set_volume(9.0);
    assert_eq!(player.volume(), 2.0);
}

#[tokio::test]
async fn output_closes_after_the_idle_spell_and_reopens_on_demand() {
    let dir = tempfile::tempdir().unwrap();
    let null = NullOutput::default();
    let stats = null.stats();
    let player = Player::spawn_with(&config(false, 150), move || Box::new(null)).unwrap();
    let a = clip(dir.path(), "a", 0.1, 0.5);
    player.play(a.clone()).await.unwrap();
    assert_eq!((stats.starts(), stats.sounds()), (1, 1));
    eventually("the output to close", || {
        stats.stops() == 1 && !player.is_output_open()
    });
    player.play(a).await.unwrap();
    assert_eq!(stats.starts(), 2);
    assert!(stats.samples() > 0 && stats.played() > Duration::from_millis(400));
    player.shutdown().await;
    assert_eq!(stats.stops(), 2);
}

#[tokio::test]
async fn no_device_is_an_error_and_the_thread_lives_on() {
    let dir = tempfile::tempdir().unwrap();
    let recorder = Recorder {
        failing_starts: Arc::new(Mutex::new(1)),
        ..Recorder::default()
    };
    let player = recorder.spawn(&config(false, 60_000));
    let a = clip(dir.path(), "a", 0.1, 0.5);
    let err = player.play(a.clone()).await.unwrap_err();
    assert!(matches!(err, AudioError::NoDevice(_)), "{err:?}");
    assert!(err.to_string().contains("try again"), "{err}");
    player.play(a).await.unwrap();
    assert_eq!(recorder.writes().len(), 1);
}

#[tokio::test]
async fn a_missing_clip_file_is_an_error_without_opening_the_device() {
    let recorder = Recorder::default();
    let player = recorder.spawn(&config(true, 60_000));
    let missing = Clip::file(PathBuf::from("/nonexistent/clip.wav"), "test", "x", true);
    let err = player.play(missing).await.unwrap_err();
    assert!(matches!(err, AudioError::ReadClip { .. }), "{err:?}");
    assert!(recorder.events().is_empty());
}

#[tokio::test]
async fn shutdown_finishes_the_clip_being_spoken_and_refuses_the_queue() {
    let dir = tempfile::tempdir().unwrap();
    let recorder = Recorder {
        write_time: Duration::from_millis(300),
        ..Recorder::default()
    };
    let player = recorder.spawn(&config(false, 60_000));
    let a = clip(dir.path(), "a", 0.1, 0.5);
    let first = tokio::spawn(player.play(a.clone()));
    let second = tokio::spawn(player.play(a.clone()));
    // Shut down once the first clip is playing (its write takes 300 ms). The audio thread
    // is a real thread on real time: wait for it, not for a guess at how long it takes.
    let deadline = Instant::now() + Duration::from_secs(5);
    while !recorder.events().contains(&Event::Start) {
        assert!(Instant::now() < deadline, "the first clip never started");
        tokio::time::sleep(Duration::from_millis(5)).await;
    }
    player.shutdown().await;
    first.await.unwrap().unwrap();
    assert!(matches!(
        second.await.unwrap(),
        Err(AudioError::ShuttingDown)
    ));
    assert_eq!(recorder.writes().len(), 1);
    assert_eq!(recorder.events().last(), Some(&Event::Stop));
    // The thread is gone: later clips are refused, not lost in a queue.
    assert!(matches!(player.play(a).await, Err(AudioError::Stopped)));
}

/// An output whose first write panics, as a driver bug might.
struct Panicky(u32, NullOutput);

impl AudioOutput for Panicky {
    fn start(&mut self) -> Result<(), AudioError> {
        Ok(())
    }
    fn stop(&mut self) {}
    fn write(&mut self, sound: Sound) -> Result<(), AudioError> {
        self.0 += 1;
        if self.0 == 1 {
            panic!("driver hiccup");
        }
        self.1.write(sound)
    }
}

#[tokio::test]
async fn a_panic_in_the_output_does_not_kill_the_audio_thread() {
    let dir = tempfile::tempdir().unwrap();
    let null = NullOutput::default();
    let stats = null.stats();
    let player =
        Player::spawn_with(&config(false, 60_000), move || Box::new(Panicky(0, null))).unwrap();
    let a = clip(dir.path(), "a", 0.1, 0.5);
    let err = player.play(a.clone()).await.unwrap_err();
    assert!(err.to_string().contains("driver hiccup"), "{err}");
    player.play(a).await.unwrap();
    assert_eq!(stats.sounds(), 1);
}
