//! `paysay say` end to end through rodio, cpal and ALSA, with ALSA's file plugin standing in
//! for the sound card (tests/asound-capture.conf). The environment is set on the child
//! process only, so these tests can run in parallel with any other.

mod common;

use std::path::{Path, PathBuf};
use std::process::Output;

struct Shop {
    dir: tempfile::TempDir,
}

impl Shop {
    fn new(config: &str) -> Shop {
        let dir = tempfile::tempdir().unwrap();
        std::fs::write(dir.path().join("paysay.toml"), config).unwrap();
        Shop { dir }
    }

    fn capture(&self) -> PathBuf {
        self.dir.path().join("capture.wav")
    }

    fn cache(&self) -> PathBuf {
        self.dir.path().join("cache/paysay/tts")
    }

    fn say(&self, amount: &str) -> Output {
        let root = self.dir.path();
        common::paysay_capturing(root, &self.capture())
            .arg("--config")
            .arg(root.join("paysay.toml"))
            .args(["say", amount])
            .output()
            .unwrap()
    }
}

const CONFIG: &str = r#"
[speech]
backends = ["system"]

[speech.system]
voice = "cmn"
rate = 160

[audio]
chime = true
"#;

/// Samples as f32 per frame (channels averaged), and the rate.
fn read_wav(path: &Path) -> (Vec<f32>, u32) {
    let mut reader = hound::WavReader::open(path).unwrap();
    let spec = reader.spec();
    assert_eq!(spec.bits_per_sample, 16, "{spec:?}");
    let samples: Vec<i16> = reader.samples::<i16>().map(Result::unwrap).collect();
    let frames = samples
        .chunks(spec.channels as usize)
        .map(|f| f.iter().map(|&s| f32::from(s) / 32768.0).sum::<f32>() / f.len() as f32)
        .collect();
    (frames, spec.sample_rate)
}

/// Seconds from the first to the last sample louder than -40 dBFS.
fn sounding_span(frames: &[f32], rate: u32) -> f64 {
    let loud = |s: &&f32| s.abs() > 0.01;
    let first = frames.iter().position(|s| loud(&s)).unwrap_or(0);
    let last = frames.iter().rposition(|s| loud(&s)).unwrap_or(0);
    (last.saturating_sub(first)) as f64 / f64::from(rate)
}

fn rms(frames: &[f32]) -> f64 {
    (frames.iter().map(|&s| f64::from(s).powi(2)).sum::<f64>() / frames.len().max(1) as f64).sqrt()
}

#[test]
fn say_plays_chime_and_words_through_alsa() {
    let shop = Shop::new(CONFIG);
    let out = shop.say("12.50");
    let stdout = String::from_utf8_lossy(&out.stdout);
    assert!(
        out.status.success(),
        "stderr: {}",
        String::from_utf8_lossy(&out.stderr)
    );
    assert!(
        stdout.contains("whole phrase by system") && stdout.contains("微信收款十二点五元"),
        "{stdout}"
    );

    // The synthesized clip, from the cache, is what should have been heard after the chime.
    let clips: Vec<PathBuf> = std::fs::read_dir(shop.cache())
        .unwrap()
        .map(|e| e.unwrap().path())
        .collect();
    assert_eq!(clips.len(), 1, "{clips:?}");
    let (words, words_rate) = read_wav(&clips[0]);
    let chime_seconds = 32189.0 / 44100.0;
    let words_end =
        words.iter().rposition(|s| s.abs() > 0.01).unwrap() as f64 / f64::from(words_rate);
    let expected = chime_seconds + words_end;

    let (captured, rate) = read_wav(&shop.capture());
    assert_eq!(rate, 48000);
    let total = captured.len() as f64 / f64::from(rate);
    let span = sounding_span(&captured, rate);
    eprintln!(
        "capture: {total:.2} s in all, {span:.2} s sounding; expected {expected:.2} s (chime {chime_seconds:.2} + words {words_end:.2})"
    );
    assert!(
        (span - expected).abs() < 0.1,
        "sounding {span:.3} s, expected {expected:.3} s"
    );
    // Loud enough to be the speech, not dither: the words alone have an RMS around 0.1.
    let start = captured.iter().position(|s| s.abs() > 0.01).unwrap();
    let sounding = &captured[start..start + (span * f64::from(rate)) as usize];
    assert!(
        rms(sounding) > 0.5 * rms(&words),
        "capture RMS {} vs clip {}",
        rms(sounding),
        rms(&words)
    );
}

#[test]
fn second_say_comes_from_the_cache() {
    let shop = Shop::new(CONFIG);
    assert!(shop.say("0.01").status.success());
    let out = shop.say("0.01");
    let stdout = String::from_utf8_lossy(&out.stdout);
    assert!(
        out.status.success() && stdout.contains("from the cache"),
        "{stdout}"
    );
    assert!(stdout.contains("零点零一"), "{stdout}");
    assert_eq!(std::fs::read_dir(shop.cache()).unwrap().count(), 1);
}

#[test]
fn say_refuses_a_malformed_amount() {
    let shop = Shop::new(CONFIG);
    let out = shop.say("12.505");
    assert!(!out.status.success());
    assert!(String::from_utf8_lossy(&out.stderr).contains("12.505"));
    assert!(!shop.capture().exists(), "something was played");
}

#[test]
fn say_without_a_sound_device_says_so() {
    let shop = Shop::new(CONFIG);
    let root = shop.dir.path();
    // An ALSA config whose default device cannot be opened, and one with no device at all
    // (as on a machine without a sound card, where alsa-lib complains on its own).
    for (name, conf_text) in [
        ("broken.conf", "pcm.!default { type hw card 99 }\n"),
        ("empty.conf", "# no devices\n"),
    ] {
        let conf = root.join(name);
        std::fs::write(&conf, conf_text).unwrap();
        let out = common::paysay_in(root)
            .arg("--config")
            .arg(root.join("paysay.toml"))
            .args(["say", "1"])
            .env("ALSA_CONFIG_PATH", &conf)
            .output()
            .unwrap();
        let stderr = String::from_utf8_lossy(&out.stderr);
        assert!(!out.status.success(), "{name}");
        assert!(
            stderr.contains("no audio output device"),
            "{name}: {stderr}"
        );
        // alsa-lib's own lines (`ALSA lib pcm.c:… Unknown PCM default`) stay off the
        // owner's terminal: paysay's message says it.
        assert!(!stderr.contains("ALSA lib"), "{name}: {stderr}");
    }
}

#[test]
fn a_composed_amount_plays_through_alsa_at_the_same_volume_and_is_written_out() {
    let shop =
        Shop::new("[speech]\nbackends = [\"system\"]\n[audio]\nchime = false\nvolume = 0.5\n");
    let root = shop.dir.path();
    let config = root.join("paysay.toml");
    let built = common::paysay_in(root)
        .arg("--config")
        .arg(&config)
        .args(["voice", "build"])
        .output()
        .unwrap();
    let stdout = String::from_utf8_lossy(&built.stdout);
    assert!(
        built.status.success() && stdout.contains("voice bank built with system"),
        "{stdout}"
    );

    let out_file = root.join("words.wav");
    let out = common::paysay_capturing(root, &shop.capture())
        .arg("--config")
        .arg(&config)
        .args(["say", "34.56", "--out"])
        .arg(&out_file)
        .output()
        .unwrap();
    let stdout = String::from_utf8_lossy(&out.stdout);
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    assert!(
        stdout.contains("composed from the clips of system")
            && stdout.contains("微信收款三十四点五六元"),
        "{stdout}"
    );

    // What was heard is the file written, at half its level: [audio] volume applies to
    // composed words as to whole phrases.
    let (words, words_rate) = read_wav(&out_file);
    let (captured, rate) = read_wav(&shop.capture());
    let (heard, written) = (
        sounding_span(&captured, rate),
        sounding_span(&words, words_rate),
    );
    assert!(
        (heard - written).abs() < 0.1,
        "heard {heard:.2} s, written {written:.2} s"
    );
    let start = captured.iter().position(|s| s.abs() > 0.01).unwrap();
    let sounding = &captured[start..start + (heard * f64::from(rate)) as usize];
    let first = words.iter().position(|s| s.abs() > 0.01).unwrap();
    let spoken = &words[first..first + (written * f64::from(words_rate)) as usize];
    let ratio = rms(sounding) / rms(spoken);
    assert!(
        (0.4..0.6).contains(&ratio),
        "heard at {ratio:.2} of the written level"
    );
}
