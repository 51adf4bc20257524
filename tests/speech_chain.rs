//! The fallback chain and its cache, with counting backends and the real espeak-ng.

mod common;

use std::sync::Arc;
use std::sync::atomic::{AtomicUsize, Ordering};

use paysay::config::{SpeechConfig, SystemVoiceConfig};
use paysay::speech::system::Engine;
use paysay::speech::{
    Audio, AudioFormat, ClipCache, Speech, SynthFuture, Synthesizer, SystemSynthesizer, TtsError,
};

/// A backend that counts calls and fails when told to.
struct Counting {
    name: &'static str,
    calls: Arc<AtomicUsize>,
    fail: bool,
    voice: &'static str,
}

impl Synthesizer for Counting {
    fn name(&self) -> &'static str {
        self.name
    }
    fn voice(&self) -> String {
        self.voice.into()
    }
    fn synthesize<'a>(&'a self, text: &'a str) -> SynthFuture<'a> {
        self.calls.fetch_add(1, Ordering::SeqCst);
        let fail = self.fail;
        Box::pin(async move {
            if fail {
                return Err(TtsError::EmptyAudio { backend: "baidu" });
            }
            Ok(Audio {
                bytes: text.as_bytes().repeat(100),
                format: AudioFormat::Mp3,
            })
        })
    }
}

fn counting(
    name: &'static str,
    fail: bool,
    voice: &'static str,
) -> (Box<dyn Synthesizer>, Arc<AtomicUsize>) {
    let calls = Arc::new(AtomicUsize::new(0));
    (
        Box::new(Counting {
            name,
            calls: calls.clone(),
            fail,
            voice,
        }),
        calls,
    )
}

#[tokio::test]
async fn second_synthesis_of_the_same_text_comes_from_the_cache() {
    let dir = tempfile::tempdir().unwrap();
    let (backend, calls) = counting("stub", false, "v1");
    let speech = Speech::new(
        vec![backend],
        ClipCache::new(dir.path().into(), 1 << 20),
        "微信收款{amount}元",
    );
    let first = speech.announce(1250).await.unwrap();
    let second = speech.announce(1250).await.unwrap();
    assert_eq!(
        calls.load(Ordering::SeqCst),
        1,
        "the backend was called again"
    );
    assert!(!first.cached && second.cached);
    assert_eq!(first.path(), second.path());
    assert_eq!(first.path().unwrap().extension().unwrap(), "mp3");
    assert_eq!(
        std::fs::read(second.path().unwrap()).unwrap(),
        "微信收款十二点五元".as_bytes().repeat(100)
    );
    speech.announce(100).await.unwrap();
    assert_eq!(
        calls.load(Ordering::SeqCst),
        2,
        "a new amount must be synthesized"
    );
}

#[tokio::test]
async fn changed_voice_settings_are_not_served_old_clips() {
    let dir = tempfile::tempdir().unwrap();
    let cache = ClipCache::new(dir.path().into(), 1 << 20);
    let (slow, _) = counting("stub", false, "rate120");
    Speech::new(vec![slow], cache.clone(), "{amount}")
        .announce(1)
        .await
        .unwrap();
    let (fast, calls) = counting("stub", false, "rate200");
    Speech::new(vec![fast], cache, "{amount}")
        .announce(1)
        .await
        .unwrap();
    assert_eq!(calls.load(Ordering::SeqCst), 1);
}

#[tokio::test]
async fn a_failing_first_backend_is_skipped_for_a_while() {
    let dir = tempfile::tempdir().unwrap();
    let (down, down_calls) = counting("baidu", true, "");
    let (up, up_calls) = counting("system", false, "");
    let speech = Speech::new(
        vec![down, up],
        ClipCache::new(dir.path().into(), 1 << 20),
        "{amount}",
    );
    let clip = speech.announce(500).await.unwrap();
    assert_eq!(clip.backend, "system");
    let clip = speech.announce(500).await.unwrap();
    assert!(clip.cached && clip.backend == "system");
    // The preferred voice that just failed is skipped, not waited for on every payment.
    assert_eq!(down_calls.load(Ordering::SeqCst), 1);
    assert_eq!(up_calls.load(Ordering::SeqCst), 1);
}

#[tokio::test]
async fn cache_bound_evicts_through_the_chain() {
    let dir = tempfile::tempdir().unwrap();
    // Each clip is ~1.2-1.8 kB; 4 kB holds two or three of them.
    let (backend, _) = counting("stub", false, "");
    let speech = Speech::new(
        vec![backend],
        ClipCache::new(dir.path().into(), 4000),
        "微信收款{amount}元",
    );
    for fen in 1..=10 {
        speech.announce(fen * 100).await.unwrap();
    }
    let total: u64 = std::fs::read_dir(dir.path())
        .unwrap()
        .map(|e| e.unwrap().metadata().unwrap().len())
        .sum();
    assert!(total <= 4000, "cache holds {total} bytes");
    assert!(
        speech.announce(1000).await.unwrap().cached,
        "the newest clip was evicted"
    );
}

#[tokio::test]
async fn espeak_ng_writes_a_wav_with_real_speech() {
    let config = SystemVoiceConfig {
        voice: String::new(),
        rate: 160,
        command: None,
    };
    let audio = SystemSynthesizer::with_engine(Engine::Espeak, &config)
        .synthesize("微信收款十二点五元")
        .await
        .unwrap();
    assert_eq!(audio.format, AudioFormat::Wav);
    let (seconds, rms) = wav_stats(&audio.bytes);
    assert!((1.5..8.0).contains(&seconds), "{seconds} s");
    assert!(rms > 500.0, "RMS {rms}: silence");
}

#[tokio::test]
async fn espeak_rate_changes_the_length() {
    let speak = |rate| async move {
        let config = SystemVoiceConfig {
            voice: "cmn".into(),
            rate,
            command: None,
        };
        let audio = SystemSynthesizer::with_engine(Engine::Espeak, &config)
            .synthesize("微信收款十二点五元")
            .await
            .unwrap();
        wav_stats(&audio.bytes).0
    };
    let (slow, fast) = (speak(100).await, speak(300).await);
    assert!(fast < slow * 0.6, "rate 300: {fast} s, rate 100: {slow} s");
}

#[tokio::test]
async fn missing_program_is_a_clear_error() {
    let config = SystemVoiceConfig {
        command: Some("/nonexistent/espeak-ng".into()),
        ..Default::default()
    };
    let err = SystemSynthesizer::with_engine(Engine::Espeak, &config)
        .synthesize("一")
        .await
        .unwrap_err();
    assert!(matches!(err, TtsError::ProgramMissing { .. }), "{err:?}");
    assert!(err.to_string().contains("apt install espeak-ng"), "{err}");
}

#[tokio::test]
async fn unknown_voice_reports_the_program_message() {
    let config = SystemVoiceConfig {
        voice: "nosuchvoice".into(),
        ..Default::default()
    };
    match SystemSynthesizer::with_engine(Engine::Espeak, &config)
        .synthesize("一")
        .await
    {
        Err(err) => assert!(err.to_string().contains("voice does not exist"), "{err}"),
        Ok(audio) => panic!("{} bytes of audio from a missing voice", audio.bytes.len()),
    }
}

/// A backend whose voice says nothing: a valid WAV of one second of silence.
struct Mute;

impl Synthesizer for Mute {
    fn name(&self) -> &'static str {
        "mute"
    }
    fn voice(&self) -> String {
        String::new()
    }
    fn synthesize<'a>(&'a self, _text: &'a str) -> SynthFuture<'a> {
        let bytes = common::wav::wav(22050, std::iter::repeat_n(0, 22050));
        Box::pin(async move {
            Ok(Audio {
                bytes,
                format: AudioFormat::Wav,
            })
        })
    }
}

#[tokio::test]
async fn a_voice_that_says_nothing_is_a_failure_not_an_announcement() {
    let dir = tempfile::tempdir().unwrap();
    let speech = Speech::new(
        vec![Box::new(Mute)],
        ClipCache::new(dir.path().into(), 1 << 20),
        "{amount}",
    );
    let err = speech.announce(100).await.unwrap_err().to_string();
    assert!(err.contains("mute") && err.contains("silence"), "{err}");
    let (next, _) = counting("stub", false, "");
    let speech = Speech::new(
        vec![Box::new(Mute), next],
        ClipCache::new(dir.path().into(), 1 << 20),
        "{amount}",
    );
    assert_eq!(speech.announce(100).await.unwrap().backend, "stub");
    // Nothing silent was cached.
    assert_eq!(std::fs::read_dir(dir.path()).unwrap().count(), 1);
}

#[tokio::test]
async fn default_config_speaks_with_the_system_voice() {
    let dir = tempfile::tempdir().unwrap();
    let speech = Speech::from_config(&SpeechConfig::default(), dir.path().join("tts")).unwrap();
    let clip = speech.announce(1).await.unwrap();
    assert_eq!(
        (clip.backend, clip.text.as_str()),
        ("system", "微信收款零点零一元")
    );
    assert!(clip.path().unwrap().starts_with(dir.path().join("tts")));
}

/// Duration in seconds and RMS of 16-bit WAV bytes.
fn wav_stats(bytes: &[u8]) -> (f64, f64) {
    let mut reader = hound::WavReader::new(std::io::Cursor::new(bytes)).unwrap();
    let spec = reader.spec();
    let samples: Vec<i16> = reader.samples::<i16>().map(Result::unwrap).collect();
    let seconds = samples.len() as f64 / f64::from(spec.sample_rate) / f64::from(spec.channels);
    let rms =
        (samples.iter().map(|&s| f64::from(s).powi(2)).sum::<f64>() / samples.len() as f64).sqrt();
    (seconds, rms)
}
