//! Speech: payment amount → announcement text → synthesized audio clip, cached on disk.
//!
//! A [`Speech`] holds the backends the shop owner listed in `speech.backends`, in order, and
//! a [`ClipCache`] in front of them. When a backend fails (network down, quota, timeout, a
//! missing program) the next one speaks; the failure is logged with the backend's name and
//! reason. Only when every backend fails is the announcement an error, so a payment is never
//! dropped silently: the caller keeps it unannounced and tries again later.

pub mod baidu;
pub mod cache;
pub mod system;
pub mod words;

use std::future::Future;
use std::path::PathBuf;
use std::pin::Pin;

use crate::config::{Backend, SpeechConfig};
use crate::payment::Wallet;

pub use baidu::BaiduSynthesizer;
pub use cache::ClipCache;
pub use system::SystemSynthesizer;
pub use words::{amount_words, announcement};

/// Audio bytes a backend produced, in a format the player can decode.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Audio {
    pub bytes: Vec<u8>,
    pub format: AudioFormat,
}

/// The container of synthesized audio; it becomes the cache file's extension.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum AudioFormat {
    Wav,
    Mp3,
}

impl AudioFormat {
    /// File extension without the dot.
    pub fn extension(self) -> &'static str {
        match self {
            AudioFormat::Wav => "wav",
            AudioFormat::Mp3 => "mp3",
        }
    }
}

/// A synthesized announcement ready to play: a file in the cache directory.
///
/// The player reads the file when it plays the clip and closes it straight away, so a clip
/// holds no open file while it waits in the queue.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Clip {
    /// The audio file (WAV or MP3).
    pub path: PathBuf,
    /// Name of the backend that spoke (`baidu`, `system`).
    pub backend: &'static str,
    /// The words in the clip.
    pub text: String,
    /// True when the clip came from the cache without synthesis.
    pub cached: bool,
}

/// The future a [`Synthesizer`] returns.
pub type SynthFuture<'a> = Pin<Box<dyn Future<Output = Result<Audio, TtsError>> + Send + 'a>>;

/// A text-to-speech backend.
///
/// Asynchronous, returning a boxed future so the trait stays dyn-compatible (the chain is a
/// `Vec<Box<dyn Synthesizer>>` chosen from config): the Baidu backend is an HTTP client on the
/// daemon's tokio runtime with per-request timeouts, and the system backend waits for a child
/// process with `tokio::process`, so neither ties up a worker thread while it waits, and a
/// timed-out synthesis is cancelled simply by dropping its future.
pub trait Synthesizer: Send + Sync {
    /// The name used in `speech.backends` and in logs.
    fn name(&self) -> &'static str;
    /// Everything besides the text that changes the audio (voice, rate, format…): part of
    /// the cache key, so changing the rate in the config does not replay old clips.
    fn voice(&self) -> String;
    /// Speaks `text` into audio bytes.
    fn synthesize<'a>(&'a self, text: &'a str) -> SynthFuture<'a>;
}

/// Why speech could not be synthesized. Each message names the backend and what to check.
#[derive(Debug, thiserror::Error)]
pub enum TtsError {
    #[error("baidu: api_key and secret_key are not set in [speech.baidu]")]
    NotConfigured,
    #[error("baidu: cannot reach {url}: {reason}")]
    Network { url: String, reason: String },
    #[error("baidu: {url} did not answer within {secs} s")]
    Timeout { url: String, secs: u64 },
    #[error("baidu: the token request was refused: {0} (check api_key and secret_key)")]
    TokenRefused(String),
    #[error("baidu: synthesis refused with err_no {code}: {message}")]
    Api { code: i64, message: String },
    #[error("baidu: unexpected answer from {url}: {detail}")]
    BadResponse { url: String, detail: String },
    #[error("system: the speech program {program} is not installed ({hint})")]
    ProgramMissing { program: String, hint: &'static str },
    #[error("system: {program} failed ({status}): {stderr}")]
    ProgramFailed {
        program: String,
        status: String,
        stderr: String,
    },
    #[error("system: {program} did not finish within {secs} s")]
    ProgramTimeout { program: String, secs: u64 },
    #[error("{backend}: produced no audio")]
    EmptyAudio { backend: &'static str },
    #[error(
        "{backend}: produced only silence for {text:?} (does the voice speak Chinese? check the voice setting)"
    )]
    Silent { backend: &'static str, text: String },
    #[error("speech cache {path}: {source}")]
    Cache {
        path: PathBuf,
        source: std::io::Error,
    },
    #[error("temporary file for synthesis: {0}")]
    TempFile(std::io::Error),
    #[error("no speech backend could speak {text:?}: {}", failures.join("; "))]
    AllFailed { text: String, failures: Vec<String> },
}

/// The synthesizer for `backend`, configured from its `[speech.*]` section. The default list
/// in the config is `["system"]`, the one that needs no account.
pub fn synthesizer(
    backend: Backend,
    config: &SpeechConfig,
) -> Result<Box<dyn Synthesizer>, TtsError> {
    Ok(match backend {
        Backend::System => Box::new(SystemSynthesizer::new(&config.system)),
        Backend::Baidu => Box::new(BaiduSynthesizer::new(&config.baidu)?),
    })
}

/// The configured fallback chain with its cache: what the daemon calls to get a clip.
pub struct Speech {
    backends: Vec<Box<dyn Synthesizer>>,
    cache: ClipCache,
    /// The announcement per wallet: WeChat's, Alipay's, 云闪付's.
    templates: [String; 3],
}

impl Speech {
    /// Builds the chain named in `config.backends`, caching in `cache_dir`
    /// (`Paths::tts_cache_dir()`).
    pub fn from_config(config: &SpeechConfig, cache_dir: PathBuf) -> Result<Speech, TtsError> {
        let mut backends = Vec::new();
        for &backend in &config.backends {
            backends.push(synthesizer(backend, config)?);
        }
        let cache = ClipCache::new(cache_dir, config.cache_max_mb.saturating_mul(1024 * 1024));
        let mut speech = Speech::new(backends, cache, &config.template);
        speech.templates[1] = config.alipay_template.clone();
        speech.templates[2] = config.unionpay_template.clone();
        Ok(speech)
    }

    /// A chain of given backends (tests, or a daemon that builds its own).
    pub fn new(backends: Vec<Box<dyn Synthesizer>>, cache: ClipCache, template: &str) -> Speech {
        let defaults = SpeechConfig::default();
        Speech {
            backends,
            cache,
            templates: [
                template.to_string(),
                defaults.alipay_template,
                defaults.unionpay_template,
            ],
        }
    }

    /// The clip announcing a WeChat payment of `fen`, from the template.
    pub async fn announce(&self, fen: u64) -> Result<Clip, TtsError> {
        self.announce_in(Wallet::WeChat, fen).await
    }

    /// The clip announcing a payment of `fen` through `wallet`, from its template
    /// (`[speech] template`, `alipay_template`, `unionpay_template`).
    pub async fn announce_in(&self, wallet: Wallet, fen: u64) -> Result<Clip, TtsError> {
        let template = match wallet {
            Wallet::WeChat => &self.templates[0],
            Wallet::Alipay => &self.templates[1],
            Wallet::UnionPay => &self.templates[2],
        };
        self.speak(&announcement(template, fen)).await
    }

    /// The clip for `text`: from the cache if a backend spoke it before, otherwise from the
    /// first backend that succeeds, in configured order.
    pub async fn speak(&self, text: &str) -> Result<Clip, TtsError> {
        let mut failures = Vec::new();
        for backend in &self.backends {
            match self.speak_with(backend.as_ref(), text).await {
                Ok(clip) => return Ok(clip),
                Err(e) => {
                    tracing::warn!(backend = backend.name(), "speech backend failed: {e}");
                    failures.push(format!("{}: {e}", backend.name()));
                }
            }
        }
        Err(TtsError::AllFailed {
            text: text.to_string(),
            failures,
        })
    }

    async fn speak_with(&self, backend: &dyn Synthesizer, text: &str) -> Result<Clip, TtsError> {
        let key = ClipCache::key(backend.name(), &backend.voice(), text);
        let clip = |path, cached| Clip {
            path,
            backend: backend.name(),
            text: text.to_string(),
            cached,
        };
        if let Some(path) = self.cache.lookup(&key) {
            return Ok(clip(path, true));
        }
        let audio = backend.synthesize(text).await?;
        if audio.bytes.is_empty() {
            return Err(TtsError::EmptyAudio {
                backend: backend.name(),
            });
        }
        let cache = self.cache.clone();
        let (name, text_owned) = (backend.name(), text.to_string());
        // Decoding for the silence check is CPU work and the store is file I/O: both on the
        // blocking pool, in one hop, so neither holds up an async worker.
        let path = tokio::task::spawn_blocking(move || {
            if is_silent(&audio) {
                return Err(TtsError::Silent {
                    backend: name,
                    text: text_owned,
                });
            }
            cache.store(&key, &audio)
        })
        .await
        .map_err(|e| TtsError::Cache {
            path: self.cache.dir().to_path_buf(),
            source: std::io::Error::other(e),
        })??;
        Ok(clip(path, false))
    }
}

/// True when the audio decodes to nothing but (near) silence: a voice that cannot read the
/// text (espeak-ng given a non-Chinese voice) produces a valid, silent file, and caching and
/// playing that would drop the announcement without a word. Audio that does not decode is
/// left for the player to report.
fn is_silent(audio: &Audio) -> bool {
    use rodio::Source;
    let Ok(decoder) = rodio::Decoder::try_from(std::io::Cursor::new(audio.bytes.clone())) else {
        return false;
    };
    let rate = decoder.sample_rate().get() as usize * usize::from(decoder.channels().get());
    // Two seconds are plenty to hear whether anything is said.
    let mut samples = decoder.take(rate * 2).peekable();
    if samples.peek().is_none() {
        return true;
    }
    samples.all(|s| s.abs() < 0.01)
}
