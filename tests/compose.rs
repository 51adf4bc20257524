//! The voice bank and composed announcements: against a fake Baidu on 127.0.0.1 that can be
//! told to hang, the real espeak-ng, voice packs on disk, and the `paysay` binary.

mod common;

use std::path::Path;
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, AtomicUsize, Ordering};
use std::time::{Duration, Instant};

use axum::Router;
use axum::extract::State;
use axum::http::header::CONTENT_TYPE;
use axum::response::{IntoResponse, Response};
use axum::routing::post;
use paysay::config::{BaiduConfig, SpeechConfig};
use paysay::speech::bank::{self, Bank};
use paysay::speech::compose::{self, Part, Template};
use paysay::speech::{
    Audio, AudioFormat, BaiduSynthesizer, ClipCache, Speech, SynthFuture, Synthesizer, TtsError,
};

/// A Baidu that answers with a tone per character, or hangs when told to.
#[derive(Default)]
struct FakeBaidu {
    hang: AtomicBool,
    tts_requests: AtomicUsize,
}

async fn token() -> Response {
    axum::Json(serde_json::json!({ "access_token": "tok", "expires_in": 2_592_000 }))
        .into_response()
}

async fn text2audio(State(fake): State<Arc<FakeBaidu>>, body: String) -> Response {
    fake.tts_requests.fetch_add(1, Ordering::SeqCst);
    if fake.hang.load(Ordering::SeqCst) {
        tokio::time::sleep(Duration::from_secs(30)).await;
    }
    let tex: String = url::form_urlencoded::parse(body.as_bytes())
        .find(|(k, _)| k == "tex")
        .map(|(_, v)| v.into_owned())
        .unwrap_or_default();
    let text: String = url::form_urlencoded::parse(tex.as_bytes())
        .map(|(k, _)| k.into_owned())
        .collect();
    ([(CONTENT_TYPE, "audio/wav")], spoken(&text, 0.6, 24_000)).into_response()
}

/// A WAV of "speech": per character a 0.2 s tone that swells and fades, between silences,
/// at `level` (0–1), at `rate`.
fn spoken(text: &str, level: f32, rate: u32) -> Vec<u8> {
    let per_char = (rate as f32 * 0.2) as usize;
    let gap = vec![0i16; rate as usize / 10];
    let mut samples = gap.clone();
    for (k, _) in text.chars().enumerate() {
        let pitch = 180.0 + 40.0 * (k % 5) as f32;
        samples.extend((0..per_char).map(|i| {
            let t = i as f32 / rate as f32;
            let envelope = (std::f32::consts::PI * i as f32 / per_char as f32).sin();
            (level * envelope * (std::f32::consts::TAU * pitch * t).sin() * 32767.0) as i16
        }));
    }
    samples.extend(gap);
    common::wav::wav(rate, samples)
}

struct Running {
    config: BaiduConfig,
    fake: Arc<FakeBaidu>,
}

async fn start_fake() -> Running {
    let fake = Arc::new(FakeBaidu::default());
    let app = Router::new()
        .route("/token", post(token))
        .route("/tts", post(text2audio))
        .with_state(fake.clone());
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let addr = listener.local_addr().unwrap();
    tokio::spawn(async move { axum::serve(listener, app).await });
    let config = BaiduConfig {
        api_key: "key".into(),
        secret_key: "secret".into(),
        token_url: format!("http://{addr}/token"),
        tts_url: format!("http://{addr}/tts"),
        timeout_secs: 1,
        ..BaiduConfig::default()
    };
    Running { config, fake }
}

/// A second backend that counts its calls: it must not be asked while Baidu's clips speak.
struct Counting(Arc<AtomicUsize>);

impl Synthesizer for Counting {
    fn name(&self) -> &'static str {
        "system"
    }
    fn voice(&self) -> String {
        "counting".into()
    }
    fn synthesize<'a>(&'a self, text: &'a str) -> SynthFuture<'a> {
        self.0.fetch_add(1, Ordering::SeqCst);
        Box::pin(async move {
            Ok(Audio {
                bytes: spoken(text, 0.1, 16_000),
                format: AudioFormat::Wav,
            })
        })
    }
}

#[tokio::test]
async fn a_hanging_baidu_is_tried_once_and_amounts_are_composed_at_once() {
    let baidu = start_fake().await;
    let dir = tempfile::tempdir().unwrap();
    let second = Arc::new(AtomicUsize::new(0));
    let speech = Speech::new(
        vec![
            Box::new(BaiduSynthesizer::new(&baidu.config).unwrap()),
            Box::new(Counting(second.clone())),
        ],
        ClipCache::new(dir.path().join("tts"), 1 << 24),
        "微信收款{amount}元",
    )
    .retry_failed_after(Duration::from_millis(1500), Duration::from_millis(1500));
    let manifest = speech.build_bank(None).await.unwrap();
    assert_eq!(manifest.backend, "baidu");
    let built = baidu.fake.tts_requests.load(Ordering::SeqCst);
    assert_eq!(built, manifest.tokens.len());

    baidu.fake.hang.store(true, Ordering::SeqCst);
    // Said through the player (chime and words, to a null output that takes them at once).
    let output = paysay::audio::NullOutput::default();
    let played = output.stats();
    let player =
        paysay::audio::Player::spawn_with(&Default::default(), move || Box::new(output)).unwrap();
    for fen in [1234, 56_789, 100_005, 2_000_000] {
        let asked = Instant::now();
        let clip = speech.announce(fen).await.unwrap();
        assert!(clip.is_composed() && clip.backend == "baidu", "{clip:?}");
        player.play(clip).await.unwrap();
        assert!(
            asked.elapsed() < Duration::from_millis(50),
            "{fen} took {:?}",
            asked.elapsed()
        );
    }
    assert_eq!(played.sounds(), 4);
    // Chime, words and tail: the words of 十二点三四元 and longer are over a second.
    assert!(
        played.played() > Duration::from_secs(4 * 2),
        "{:?}",
        played.played()
    );
    speech.settle().await;
    assert_eq!(
        baidu.fake.tts_requests.load(Ordering::SeqCst) - built,
        1,
        "Baidu is tried once while it hangs, not once per payment"
    );
    assert_eq!(
        second.load(Ordering::SeqCst),
        0,
        "a whole phrase in a lesser voice must not replace Baidu's clips"
    );

    // Baidu answers again: once its skip is over, the background synthesis finds it back,
    // and the same amount is then said as Baidu's whole phrase.
    baidu.fake.hang.store(false, Ordering::SeqCst);
    tokio::time::sleep(Duration::from_millis(1600)).await;
    assert!(speech.announce(3300).await.unwrap().is_composed());
    speech.settle().await;
    let again = speech.announce(3300).await.unwrap();
    assert!(!again.is_composed() && again.cached, "{again:?}");
    assert_eq!(again.backend, "baidu");
    assert_eq!(baidu.fake.tts_requests.load(Ordering::SeqCst) - built, 2);
}

#[tokio::test]
async fn without_a_bank_a_failed_backend_is_skipped_not_waited_for() {
    let baidu = start_fake().await;
    baidu.fake.hang.store(true, Ordering::SeqCst);
    let dir = tempfile::tempdir().unwrap();
    let second = Arc::new(AtomicUsize::new(0));
    let speech = Speech::new(
        vec![
            Box::new(BaiduSynthesizer::new(&baidu.config).unwrap()),
            Box::new(Counting(second.clone())),
        ],
        ClipCache::new(dir.path().join("tts"), 1 << 24),
        "{amount}",
    );
    // The token request answers, text2audio hangs: one timeout, then the next voice.
    let first = speech.announce(100).await.unwrap();
    assert_eq!(first.backend, "system");
    let asked = Instant::now();
    let next = speech.announce(200).await.unwrap();
    assert_eq!(next.backend, "system");
    assert!(
        asked.elapsed() < Duration::from_millis(500),
        "{:?}",
        asked.elapsed()
    );
    assert_eq!(baidu.fake.tts_requests.load(Ordering::SeqCst), 1);
}

/// Mean loudness of a bank's word clips, in dBFS, as the bank measures it.
fn loudness(bank: &Bank, tokens: &[bank::Token]) -> f32 {
    let levels: Vec<f32> = tokens
        .iter()
        .filter(|t| !t.alert)
        .map(|t| {
            let samples: Vec<f32> = bank
                .clip(&t.text)
                .unwrap()
                .iter()
                .map(|s| f32::from(*s) / 32767.0)
                .collect();
            20.0 * bank::voiced_rms(&samples).log10()
        })
        .collect();
    levels.iter().sum::<f32>() / levels.len() as f32
}

/// Largest difference between two neighbouring samples.
fn largest_step(samples: &[i16]) -> i32 {
    samples
        .windows(2)
        .map(|w| (i32::from(w[1]) - i32::from(w[0])).abs())
        .max()
        .unwrap_or(0)
}

#[tokio::test]
async fn banks_of_two_voices_are_equally_loud_and_compose_without_clicks() {
    let baidu = start_fake().await;
    let dir = tempfile::tempdir().unwrap();
    let config = SpeechConfig::default();
    let tokens = bank::tokens(&config);
    let espeak = Speech::from_config(&config, dir.path().join("espeak")).unwrap();
    espeak.build_bank(None).await.unwrap();
    let fake = Speech::new(
        vec![Box::new(BaiduSynthesizer::new(&baidu.config).unwrap())],
        ClipCache::new(dir.path().join("baidu"), 1 << 24),
        &config.template,
    );
    fake.build_bank(None).await.unwrap();
    let (espeak, fake) = (espeak.bank().unwrap(), fake.bank().unwrap());
    let (a, b) = (loudness(&espeak, &tokens), loudness(&fake, &tokens));
    assert!(
        (a - b).abs() <= 1.0,
        "espeak-ng {a:.1} dBFS, baidu {b:.1} dBFS"
    );

    let template = Template::parse(&config.template).unwrap();
    for fen in [1, 1250, 10_005, 20_000, 100_005, 1_001_000, 10_000_000_000] {
        let parts = compose::script(&template, fen);
        let pcm = compose::compose(&espeak, &parts).unwrap();
        let clips: Vec<&[i16]> = parts
            .iter()
            .filter_map(|p| match p {
                Part::Clip(text) => espeak.clip(text),
                Part::Pause(_) => None,
            })
            .collect();
        let pauses: usize = parts
            .iter()
            .map(|p| match p {
                Part::Pause(d) => compose::samples_in(*d),
                Part::Clip(_) => 0,
            })
            .sum();
        let joins = parts
            .windows(2)
            .filter(|w| matches!(w, [Part::Clip(_), Part::Clip(_)]))
            .count();
        let expected = clips.iter().map(|c| c.len()).sum::<usize>() + pauses
            - joins * compose::samples_in(compose::CROSSFADE);
        let length = pcm.samples.len() as f64;
        assert!(
            (length / expected as f64 - 1.0).abs() <= 0.05,
            "{fen}: {length} samples, clips and joins make {expected}"
        );
        let own = clips.iter().map(|c| largest_step(c)).max().unwrap();
        assert!(
            largest_step(&pcm.samples) <= own,
            "{fen}: a join steps {} , the clips at most {own}",
            largest_step(&pcm.samples)
        );
    }
}

/// A voice pack of `spoken` clips for every word of the default config, but `leave_out`.
fn pack(dir: &Path, leave_out: &[&str]) {
    std::fs::create_dir_all(dir).unwrap();
    for token in bank::tokens(&SpeechConfig::default()) {
        if !token.alert && !leave_out.contains(&token.stem.as_str()) {
            std::fs::write(
                dir.join(format!("{}.wav", token.stem)),
                spoken(&token.text, 0.3, 22_050),
            )
            .unwrap();
        }
    }
}

#[test]
fn a_pack_with_a_missing_or_long_file_is_refused_naming_each() {
    let dir = tempfile::tempdir().unwrap();
    let voice = dir.path().join("voice");
    pack(&voice, &["digit-7"]);
    // Twenty characters of "speech" make a 4 s clip: too long for one word.
    std::fs::write(
        voice.join("shi.wav"),
        spoken("一二三四五六七八九十一二三四五六七八九十", 0.3, 22_050),
    )
    .unwrap();
    let config = SpeechConfig {
        clips: Some(voice.clone()),
        ..SpeechConfig::default()
    };
    let err = Speech::from_config(&config, dir.path().join("tts"))
        .err()
        .expect("the pack is refused");
    let TtsError::Pack(pack_error) = &err else {
        panic!("{err}")
    };
    assert_eq!(pack_error.problems.len(), 2, "{err}");
    let message = err.to_string();
    assert!(message.contains("digit-7.wav (七) is missing"), "{message}");
    assert!(
        message.contains("shi.wav (十) is longer than 3 s"),
        "{message}"
    );

    // `paysay voice check` says the same without starting anything.
    let root = dir.path().join("root");
    let out = common::paysay_in(&root)
        .args(["voice", "check"])
        .arg(&voice)
        .output()
        .unwrap();
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert!(!out.status.success());
    assert!(stderr.contains("digit-7.wav (七) is missing"), "{stderr}");

    // Complete, it is used: amounts are composed from it.
    pack(&voice, &[]);
    let speech = Speech::from_config(&config, dir.path().join("tts")).unwrap();
    assert_eq!(speech.bank().unwrap().voice, "pack");
    let out = common::paysay_in(&root)
        .args(["voice", "check"])
        .arg(&voice)
        .output()
        .unwrap();
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
}

/// Waits for the bank a background build installs.
async fn bank_of(speech: &Speech) -> Arc<Bank> {
    let started = Instant::now();
    loop {
        if let Some(bank) = speech.bank() {
            return bank;
        }
        assert!(started.elapsed() < Duration::from_secs(60), "no bank built");
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
}

#[tokio::test]
async fn a_new_rate_makes_the_bank_stale_and_it_is_built_again() {
    let dir = tempfile::tempdir().unwrap();
    let cache = dir.path().join("tts");
    let mut config = SpeechConfig::default();
    let speech = Arc::new(Speech::from_config(&config, cache.clone()).unwrap());
    assert!(speech.bank().is_none());
    paysay::speech::spawn_bank_build(&speech);
    let slow = bank_of(&speech).await;
    let before = bank::read_manifest(speech.bank_dir()).unwrap().unwrap();
    assert!(before.voice.ends_with("|160"), "{}", before.voice);

    // The same rate again: the stored bank is used as it is.
    let same = Speech::from_config(&config, cache.clone()).unwrap();
    assert!(same.bank().is_some() && !same.bank_wanted());

    config.system.rate = 260;
    let speech = Arc::new(Speech::from_config(&config, cache).unwrap());
    let stale = speech.bank_status().unwrap_err();
    assert!(stale.contains("260"), "{stale}");
    paysay::speech::spawn_bank_build(&speech);
    let fast = bank_of(&speech).await;
    let after = bank::read_manifest(speech.bank_dir()).unwrap().unwrap();
    assert!(after.voice.ends_with("|260"), "{}", after.voice);
    // Said faster, the words are shorter.
    let length = |b: &Bank| b.clip("七").unwrap().len() + b.clip("百").unwrap().len();
    assert!(
        length(&fast) < length(&slow),
        "{} vs {}",
        length(&fast),
        length(&slow)
    );
}

#[tokio::test]
async fn a_bank_built_while_baidu_was_down_is_built_again_once_it_answers() {
    let baidu = start_fake().await;
    baidu.fake.hang.store(true, Ordering::SeqCst);
    let dir = tempfile::tempdir().unwrap();
    let config = SpeechConfig {
        backends: vec![
            paysay::config::Backend::Baidu,
            paysay::config::Backend::System,
        ],
        baidu: baidu.config.clone(),
        ..SpeechConfig::default()
    };
    let speech = Arc::new(
        Speech::from_config(&config, dir.path().join("tts"))
            .unwrap()
            .retry_failed_after(Duration::from_millis(300), Duration::from_millis(300)),
    );
    // The first start with Baidu down: one timeout, then espeak-ng's bank.
    paysay::speech::spawn_bank_build(&speech);
    assert_eq!(bank_of(&speech).await.voice, "system");
    assert_eq!(
        speech.announce(4321).await.unwrap().backend,
        "system",
        "composed from espeak-ng's clips"
    );
    speech.settle().await;

    baidu.fake.hang.store(false, Ordering::SeqCst);
    tokio::time::sleep(Duration::from_millis(400)).await;
    // The next new amount is composed at once; its whole phrase finds Baidu back, and the
    // bank is built again with Baidu's voice.
    assert!(speech.announce(8765).await.unwrap().is_composed());
    speech.settle().await;
    let bank = speech.bank().unwrap();
    assert_eq!(bank.voice, "baidu");
    let manifest = bank::read_manifest(speech.bank_dir()).unwrap().unwrap();
    assert_eq!(manifest.backend, "baidu");
    let clip = speech.announce(1111).await.unwrap();
    assert!(clip.is_composed() && clip.backend == "baidu", "{clip:?}");
}
