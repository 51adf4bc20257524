//! The Baidu backend against a fake Baidu on 127.0.0.1: token fetch and reuse, expiry,
//! token errors, API errors and timeouts.

use std::collections::{HashMap, VecDeque};
use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::{Arc, Mutex};
use std::time::Duration;

use axum::Router;
use axum::extract::{Query, State};
use axum::http::header::CONTENT_TYPE;
use axum::response::{IntoResponse, Response};
use axum::routing::post;
use paysay::config::BaiduConfig;
use paysay::speech::{
    Audio, AudioFormat, BaiduSynthesizer, ClipCache, Speech, SynthFuture, Synthesizer, TtsError,
};

const FAKE_WAV: &[u8] = b"RIFF\x24\x00\x00\x00WAVEfmt fake audio from the fake baidu";

/// What the fake text2audio endpoint answers next; `Audio` once the script is used up.
#[derive(Clone, Copy)]
enum Reply {
    Audio,
    Error(i64, &'static str),
    Hang,
    /// 9 MB of "audio", more than any announcement.
    Huge,
}

#[derive(Default)]
struct Fake {
    expires_in: u64,
    token_requests: AtomicUsize,
    tts_requests: AtomicUsize,
    script: Mutex<VecDeque<Reply>>,
    forms: Mutex<Vec<HashMap<String, String>>>,
}

async fn token(
    State(fake): State<Arc<Fake>>,
    Query(q): Query<HashMap<String, String>>,
) -> Response {
    let n = fake.token_requests.fetch_add(1, Ordering::SeqCst) + 1;
    let ok = q.get("grant_type").map(String::as_str) == Some("client_credentials")
        && q.get("client_id").map(String::as_str) == Some("key")
        && q.get("client_secret").map(String::as_str) == Some("secret");
    let body = if ok {
        serde_json::json!({ "access_token": format!("tok-{n}"), "expires_in": fake.expires_in })
    } else {
        serde_json::json!({ "error": "invalid_client", "error_description": "unknown client id" })
    };
    axum::Json(body).into_response()
}

async fn text2audio(State(fake): State<Arc<Fake>>, body: String) -> Response {
    fake.tts_requests.fetch_add(1, Ordering::SeqCst);
    let form: HashMap<String, String> = url::form_urlencoded::parse(body.as_bytes())
        .into_owned()
        .collect();
    fake.forms.lock().unwrap().push(form);
    let reply = fake
        .script
        .lock()
        .unwrap()
        .pop_front()
        .unwrap_or(Reply::Audio);
    match reply {
        Reply::Audio => ([(CONTENT_TYPE, "audio/wav")], FAKE_WAV).into_response(),
        Reply::Error(code, msg) => {
            axum::Json(serde_json::json!({ "err_no": code, "err_msg": msg, "sn": "x" }))
                .into_response()
        }
        Reply::Huge => ([(CONTENT_TYPE, "audio/wav")], vec![0u8; 9 << 20]).into_response(),
        Reply::Hang => {
            tokio::time::sleep(Duration::from_secs(10)).await;
            ([(CONTENT_TYPE, "audio/wav")], FAKE_WAV).into_response()
        }
    }
}

/// Starts the fake and returns a config pointing at it.
async fn fake_baidu(expires_in: u64, script: &[Reply]) -> (Arc<Fake>, BaiduConfig) {
    let fake = Arc::new(Fake {
        expires_in,
        script: Mutex::new(script.iter().copied().collect()),
        ..Fake::default()
    });
    let app = Router::new()
        .route("/oauth/2.0/token", post(token))
        .route("/text2audio", post(text2audio))
        .with_state(fake.clone());
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let addr = listener.local_addr().unwrap();
    tokio::spawn(async move { axum::serve(listener, app).await });
    let config = BaiduConfig {
        api_key: "key".into(),
        secret_key: "secret".into(),
        token_url: format!("http://{addr}/oauth/2.0/token"),
        tts_url: format!("http://{addr}/text2audio"),
        timeout_secs: 1,
        spd: 7,
        per: 4,
        ..BaiduConfig::default()
    };
    (fake, config)
}

const MONTH: u64 = 2_592_000;

#[tokio::test]
async fn token_is_fetched_once_and_reused() {
    let (fake, config) = fake_baidu(MONTH, &[]).await;
    let baidu = BaiduSynthesizer::new(&config).unwrap();
    for _ in 0..3 {
        let audio = baidu.synthesize("微信收款1+1元").await.unwrap();
        assert_eq!(
            audio,
            Audio {
                bytes: FAKE_WAV.to_vec(),
                format: AudioFormat::Wav
            }
        );
    }
    assert_eq!(fake.token_requests.load(Ordering::SeqCst), 1);
    assert_eq!(fake.tts_requests.load(Ordering::SeqCst), 3);
}

#[tokio::test]
async fn form_carries_token_voice_and_twice_encoded_text() {
    let (fake, config) = fake_baidu(MONTH, &[]).await;
    BaiduSynthesizer::new(&config)
        .unwrap()
        .synthesize("收款1+1元")
        .await
        .unwrap();
    let form = fake.forms.lock().unwrap()[0].clone();
    // The server undoes the form encoding; what is left is the text encoded once more.
    let tex = &form["tex"];
    assert!(
        tex.contains('%') && !tex.contains('收'),
        "tex not encoded twice: {tex}"
    );
    let text: String = url::form_urlencoded::parse(format!("t={tex}").as_bytes())
        .map(|(_, v)| v.into_owned())
        .collect();
    assert_eq!(text, "收款1+1元");
    for (key, want) in [
        ("tok", "tok-1"),
        ("ctp", "1"),
        ("lan", "zh"),
        ("spd", "7"),
        ("pit", "5"),
        ("vol", "5"),
        ("per", "4"),
        ("aue", "6"),
    ] {
        assert_eq!(form.get(key).map(String::as_str), Some(want), "{key}");
    }
    assert!(!form["cuid"].is_empty());
}

#[tokio::test]
async fn expired_token_is_fetched_again() {
    // expires_in 0: every token is stale by the next announcement.
    let (fake, config) = fake_baidu(0, &[]).await;
    let baidu = BaiduSynthesizer::new(&config).unwrap();
    baidu.synthesize("一").await.unwrap();
    baidu.synthesize("二").await.unwrap();
    assert_eq!(fake.token_requests.load(Ordering::SeqCst), 2);
    assert_eq!(fake.forms.lock().unwrap()[1]["tok"], "tok-2");
}

#[tokio::test]
async fn token_error_renews_the_token_and_retries_once() {
    let (fake, config) = fake_baidu(MONTH, &[Reply::Error(502, "token verification failed")]).await;
    let baidu = BaiduSynthesizer::new(&config).unwrap();
    baidu.synthesize("一").await.unwrap();
    assert_eq!(fake.token_requests.load(Ordering::SeqCst), 2);
    assert_eq!(fake.tts_requests.load(Ordering::SeqCst), 2);
    assert_eq!(fake.forms.lock().unwrap()[1]["tok"], "tok-2");
}

/// A server that answers more than any announcement could be is refused, not read whole.
#[tokio::test]
async fn an_answer_larger_than_any_announcement_is_refused() {
    let (_fake, config) = fake_baidu(MONTH, &[Reply::Huge]).await;
    let baidu = BaiduSynthesizer::new(&config).unwrap();
    let err = baidu.synthesize("一").await.unwrap_err();
    assert!(
        matches!(&err, TtsError::BadResponse { detail, .. } if detail.contains("larger than")),
        "{err:?}"
    );
    // The next answer is an ordinary one again.
    assert_eq!(baidu.synthesize("一").await.unwrap().bytes, FAKE_WAV);
}

#[tokio::test]
async fn json_error_is_an_error_with_its_code() {
    let (fake, config) = fake_baidu(MONTH, &[Reply::Error(500, "notsupport.")]).await;
    let err = BaiduSynthesizer::new(&config)
        .unwrap()
        .synthesize("一")
        .await
        .unwrap_err();
    assert!(
        matches!(&err, TtsError::Api { code: 500, message } if message == "notsupport."),
        "{err:?}"
    );
    assert!(err.to_string().contains("500"), "{err}");
    assert_eq!(
        fake.token_requests.load(Ordering::SeqCst),
        1,
        "not a token error: no renewal"
    );
}

#[tokio::test]
async fn refused_credentials_say_so() {
    let (_fake, mut config) = fake_baidu(MONTH, &[]).await;
    config.secret_key = "wrong".into();
    let err = BaiduSynthesizer::new(&config)
        .unwrap()
        .synthesize("一")
        .await
        .unwrap_err();
    assert!(
        matches!(err, TtsError::TokenRefused(ref r) if r.contains("invalid_client")),
        "{err:?}"
    );
    assert!(
        !err.to_string().contains("wrong"),
        "secret leaked into the message: {err}"
    );
}

#[tokio::test]
async fn missing_keys_fail_without_a_request() {
    let (fake, mut config) = fake_baidu(MONTH, &[]).await;
    config.api_key.clear();
    let err = BaiduSynthesizer::new(&config)
        .unwrap()
        .synthesize("一")
        .await
        .unwrap_err();
    assert!(matches!(err, TtsError::NotConfigured), "{err:?}");
    assert_eq!(fake.token_requests.load(Ordering::SeqCst), 0);
}

/// A second backend that always works, counting its calls.
struct Stub(AtomicUsize);

impl Synthesizer for Stub {
    fn name(&self) -> &'static str {
        "stub"
    }
    fn voice(&self) -> String {
        String::new()
    }
    fn synthesize<'a>(&'a self, _text: &'a str) -> SynthFuture<'a> {
        self.0.fetch_add(1, Ordering::SeqCst);
        Box::pin(async {
            Ok(Audio {
                bytes: b"RIFF stub".to_vec(),
                format: AudioFormat::Wav,
            })
        })
    }
}

#[tokio::test]
async fn timeout_is_reported_and_the_next_backend_speaks() {
    let (_fake, config) = fake_baidu(MONTH, &[Reply::Hang, Reply::Hang]).await;
    let baidu = BaiduSynthesizer::new(&config).unwrap();
    let err = baidu.synthesize("一").await.unwrap_err();
    assert!(matches!(err, TtsError::Timeout { secs: 1, .. }), "{err:?}");

    let dir = tempfile::tempdir().unwrap();
    let speech = Speech::new(
        vec![Box::new(baidu), Box::new(Stub(AtomicUsize::new(0)))],
        ClipCache::new(dir.path().to_path_buf(), 1 << 20),
        "微信收款{amount}元",
    );
    let started = std::time::Instant::now();
    let clip = speech.announce(1250).await.unwrap();
    assert_eq!(clip.backend, "stub");
    assert_eq!(clip.text, "微信收款十二点五元");
    assert!(
        started.elapsed() < Duration::from_secs(5),
        "waited for the hung server"
    );
}

#[tokio::test]
async fn when_every_backend_fails_the_error_names_each() {
    let (_fake, config) = fake_baidu(MONTH, &[Reply::Error(503, "backend error")]).await;
    let dir = tempfile::tempdir().unwrap();
    let missing = paysay::config::SystemVoiceConfig {
        command: Some("/nonexistent/espeak-ng".into()),
        ..Default::default()
    };
    let speech = Speech::new(
        vec![
            Box::new(BaiduSynthesizer::new(&config).unwrap()),
            Box::new(paysay::speech::SystemSynthesizer::new(&missing)),
        ],
        ClipCache::new(dir.path().to_path_buf(), 1 << 20),
        "{amount}",
    );
    let err = speech.announce(100).await.unwrap_err().to_string();
    assert!(err.contains("baidu") && err.contains("503"), "{err}");
    assert!(
        err.contains("system") && err.contains("not installed"),
        "{err}"
    );
}
