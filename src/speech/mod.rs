//! Speech: payment amount → announcement text → synthesized audio clip, cached on disk.
//!
//! A [`Speech`] holds the backends the shop owner listed in `speech.backends`, in order, and
//! a [`ClipCache`] in front of them. When a backend fails (network down, quota, timeout, a
//! missing program) the next one speaks; the failure is logged with the backend's name and
//! reason. Only when every backend fails is the announcement an error, so a payment is never
//! dropped silently: the caller keeps it unannounced and tries again later.
//!
//! A backend that failed or timed out is skipped for a while (a bounded backoff), so a
//! hanging network costs one timeout, not one per payment; the whole-phrase synthesis in the
//! background is what tries it again.
//!
//! An amount with no cached whole phrase is composed at once from the voice bank
//! ([`bank`], [`compose`]), and its whole phrase synthesized in the background for the next
//! time (`[speech] compose`).

pub mod baidu;
pub mod bank;
pub mod cache;
pub mod compose;
pub mod system;
pub mod words;

use std::collections::HashSet;
use std::future::Future;
use std::path::{Path, PathBuf};
use std::pin::Pin;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use crate::backoff::Backoff;
use crate::config::{Backend, Compose, SpeechConfig};
use crate::payment::Wallet;

pub use baidu::BaiduSynthesizer;
pub use bank::{Bank, BankError, Manifest, PackError};
pub use cache::ClipCache;
pub use system::SystemSynthesizer;
pub use words::{Word, amount_tokens, amount_words, announcement};

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

/// Mono 16-bit samples: a composed announcement.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Pcm {
    pub rate: u32,
    pub samples: Vec<i16>,
}

impl Pcm {
    /// How long it plays.
    pub fn duration(&self) -> Duration {
        Duration::from_secs_f64(self.samples.len() as f64 / f64::from(self.rate.max(1)))
    }
}

/// Where a clip's audio is.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum ClipAudio {
    /// A file in the cache (or the bank, or a voice pack): WAV or MP3. The player reads it
    /// when it plays the clip and closes it straight away, so a clip holds no open file while
    /// it waits in the queue.
    File(PathBuf),
    /// Samples composed in memory. Handed to the player as they are: writing them to a file
    /// first would add a write and a decode between the payment and the first sound, and
    /// leave files to clean up.
    Composed(Arc<Pcm>),
}

/// An announcement ready to play: a whole phrase (a file) or one composed from the bank.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Clip {
    pub audio: ClipAudio,
    /// Who spoke: the backend (`baidu`, `system`), or `pack` for a voice pack.
    pub backend: &'static str,
    /// The words in the clip.
    pub text: String,
    /// True when the clip came from the cache (or the bank) without synthesis.
    pub cached: bool,
}

impl Clip {
    /// A whole phrase in a file.
    pub fn file(path: PathBuf, backend: &'static str, text: &str, cached: bool) -> Clip {
        Clip {
            audio: ClipAudio::File(path),
            backend,
            text: text.to_string(),
            cached,
        }
    }

    /// True when composed from the bank's clips.
    pub fn is_composed(&self) -> bool {
        matches!(self.audio, ClipAudio::Composed(_))
    }

    /// The file of a whole phrase.
    pub fn path(&self) -> Option<&Path> {
        match &self.audio {
            ClipAudio::File(path) => Some(path),
            ClipAudio::Composed(_) => None,
        }
    }

    /// How it was made, for messages: `composed from the baidu bank`, `whole phrase by system`.
    pub fn origin(&self) -> String {
        let how = if self.is_composed() {
            "composed from the clips of"
        } else {
            "whole phrase by"
        };
        let voice = if self.backend == "pack" {
            "the voice pack"
        } else {
            self.backend
        };
        let cached = if self.cached && !self.is_composed() {
            ", from the cache"
        } else {
            ""
        };
        format!("{how} {voice}{cached}")
    }
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
    #[error(transparent)]
    Pack(#[from] PackError),
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

/// The shortest and longest a failed backend is skipped: long enough that a payment rush
/// during an outage pays one timeout, short enough that the voice is back within minutes.
const SKIP_MIN: Duration = Duration::from_secs(10);
const SKIP_MAX: Duration = Duration::from_secs(300);

/// A backend of the chain and what it did lately.
struct Voice {
    synth: Box<dyn Synthesizer>,
    health: Mutex<Health>,
}

struct Health {
    backoff: Backoff,
    /// Skipped until then, after a failure.
    skip_until: Option<Instant>,
}

impl Voice {
    fn new(synth: Box<dyn Synthesizer>, min: Duration, max: Duration) -> Voice {
        Voice {
            synth,
            health: Mutex::new(Health {
                backoff: Backoff::new(min, max),
                skip_until: None,
            }),
        }
    }

    fn health(&self) -> std::sync::MutexGuard<'_, Health> {
        // Poisoned only by a panic in these few lines; the state is a hint either way.
        self.health.lock().unwrap_or_else(|e| e.into_inner())
    }

    /// False while the backend is skipped after a failure.
    fn available(&self) -> bool {
        self.health()
            .skip_until
            .is_none_or(|until| Instant::now() >= until)
    }

    /// Skips the backend for the next backoff step; logged when it starts failing only.
    fn failed(&self, e: &TtsError) {
        let mut health = self.health();
        let first = health.skip_until.is_none();
        let delay = health.backoff.next_delay();
        health.skip_until = Some(Instant::now() + delay);
        let name = self.synth.name();
        if first {
            tracing::warn!(
                backend = name,
                "speech backend failed, skipped for {} s (tried again in the background): {e}",
                delay.as_secs()
            );
        } else {
            tracing::debug!(
                backend = name,
                "speech backend still failing, skipped for {} s: {e}",
                delay.as_secs()
            );
        }
    }

    fn succeeded(&self) {
        let mut health = self.health();
        if health.skip_until.take().is_some() {
            health.backoff.reset();
            tracing::info!(backend = self.synth.name(), "speech backend speaks again");
        }
    }
}

/// The backends in order and the cache in front of them.
struct Chain {
    voices: Vec<Voice>,
    cache: ClipCache,
}

impl Chain {
    /// A whole phrase of `text` cached by one of the first `limit` backends.
    fn cached(&self, text: &str, limit: usize) -> Option<Clip> {
        self.voices.iter().take(limit).find_map(|voice| {
            let synth = &voice.synth;
            let key = ClipCache::key(synth.name(), &synth.voice(), text);
            let path = self.cache.lookup(&key)?;
            Some(Clip::file(path, synth.name(), text, true))
        })
    }

    /// `text` by `voice`, cached or synthesized and stored; the outcome goes to its health.
    async fn speak_with(&self, voice: &Voice, text: &str) -> Result<Clip, TtsError> {
        let backend = voice.synth.as_ref();
        let key = ClipCache::key(backend.name(), &backend.voice(), text);
        if let Some(path) = self.cache.lookup(&key) {
            return Ok(Clip::file(path, backend.name(), text, true));
        }
        let result = self.synthesize(backend, key, text).await;
        match &result {
            Ok(_) => voice.succeeded(),
            Err(e) => voice.failed(e),
        }
        result
    }

    async fn synthesize(
        &self,
        backend: &dyn Synthesizer,
        key: cache::CacheKey,
        text: &str,
    ) -> Result<Clip, TtsError> {
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
        Ok(Clip::file(path, backend.name(), text, false))
    }
}

/// Whole phrases being synthesized in the background, one at a time.
#[derive(Default)]
struct Background {
    one_at_a_time: tokio::sync::Mutex<()>,
    /// Texts queued or under way, so a repeated amount is not synthesized twice.
    pending: Mutex<HashSet<String>>,
    tasks: Mutex<Vec<tokio::task::JoinHandle<()>>>,
}

/// How announcements were said, for the demo and `paysay say`.
#[derive(Debug, Default)]
pub struct SpeechStats {
    composed: AtomicU64,
    phrases: AtomicU64,
}

impl SpeechStats {
    /// Announcements composed from the bank.
    pub fn composed(&self) -> u64 {
        self.composed.load(Ordering::SeqCst)
    }
    /// Announcements said as whole phrases.
    pub fn phrases(&self) -> u64 {
        self.phrases.load(Ordering::SeqCst)
    }
}

/// The voice bank of a [`Speech`]: where it lives, what it must hold, and the bank in use.
/// Shared with the background tasks, which build it again when a better voice is back.
struct BankHome {
    /// The bank new amounts are composed from, once built or loaded.
    slot: Mutex<Option<Arc<Bank>>>,
    /// Where the built bank lives (`<cache>/tts/bank`).
    dir: PathBuf,
    /// The clips the configured announcements need.
    tokens: Vec<bank::Token>,
    /// Set when the clips are a voice pack (`[speech] clips`): nothing to build.
    pack: Option<PathBuf>,
    /// Whether a missing bank is built without being asked: for a chain from the config.
    builds: bool,
    /// Why there is no bank, when there is none.
    note: Mutex<String>,
}

impl BankHome {
    fn bank(&self) -> Option<Arc<Bank>> {
        self.slot.lock().unwrap_or_else(|e| e.into_inner()).clone()
    }

    fn set_bank(&self, bank: Bank) {
        *self.slot.lock().unwrap_or_else(|e| e.into_inner()) = Some(Arc::new(bank));
    }

    fn set_note(&self, note: String) {
        *self.note.lock().unwrap_or_else(|e| e.into_inner()) = note;
    }

    /// True when the bank should be built: none yet, or one spoken by a backend after the
    /// first (the first was down when it was built).
    fn wanted(&self, chain: &Chain) -> bool {
        let first = chain.voices.first().map(|v| v.synth.name());
        self.builds && self.pack.is_none() && self.bank().is_none_or(|b| Some(b.voice) != first)
    }

    /// True when the voice at `index` in the chain, which just spoke, comes before the
    /// bank's: it was down when the bank was built, and is back.
    fn better_voice_back(&self, chain: &Chain, index: usize) -> bool {
        let Some(bank) = self.bank() else {
            return false;
        };
        let position = chain
            .voices
            .iter()
            .position(|v| v.synth.name() == bank.voice);
        self.builds && self.pack.is_none() && position.is_some_and(|p| index < p)
    }

    /// Loads the built bank when it matches the config.
    fn load(&self, chain: &Chain) {
        let synths: Vec<&dyn Synthesizer> = chain.voices.iter().map(|v| v.synth.as_ref()).collect();
        match bank::load(&self.dir, &synths, &self.tokens) {
            bank::Stored::Fresh(fresh) => self.set_bank(fresh.0),
            bank::Stored::Missing => self.set_note("not built yet".into()),
            bank::Stored::Stale(why) => {
                tracing::info!("the voice bank is out of date ({why}); it is built again");
                self.set_note(format!("out of date ({why})"));
            }
        }
    }

    /// Builds the bank with `backend` (a name in the chain), or with the first backend that
    /// can speak every clip, and composes from it from now on.
    async fn build(&self, chain: &Chain, backend: Option<&str>) -> Result<Manifest, BankError> {
        // One build at a time in a process: a reload during a build must not write the
        // same directory.
        static BUILDING: tokio::sync::Mutex<()> = tokio::sync::Mutex::const_new(());
        let _building = BUILDING.lock().await;
        let mut last = None;
        for voice in &chain.voices {
            if backend.is_some_and(|name| name != voice.synth.name()) {
                continue;
            }
            match bank::build(voice.synth.as_ref(), &self.tokens, &self.dir).await {
                Ok((bank, manifest)) => {
                    voice.succeeded();
                    tracing::info!(
                        backend = voice.synth.name(),
                        clips = bank.len(),
                        secs = format!("{:.1}", manifest.build_secs),
                        "voice bank built: new amounts are composed from it"
                    );
                    self.set_bank(bank);
                    return_freed_memory();
                    return Ok(manifest);
                }
                Err(e) => {
                    if let BankError::Synthesis { source, .. } = &e {
                        voice.failed(source);
                    }
                    tracing::warn!(backend = voice.synth.name(), "voice bank not built: {e}");
                    last = Some(e);
                }
            }
        }
        let e = last.unwrap_or_else(|| BankError::Corrupt {
            path: self.dir.clone(),
            reason: format!(
                "no backend named {} in speech.backends",
                backend.unwrap_or("?")
            ),
        });
        self.set_note(format!("not built: {e}"));
        Err(e)
    }
}

/// The configured fallback chain with its cache and voice bank: what the daemon calls to
/// get a clip.
pub struct Speech {
    chain: Arc<Chain>,
    /// The announcement per wallet: WeChat's, Alipay's, 云闪付's.
    templates: [String; 3],
    compose: Compose,
    home: Arc<BankHome>,
    background: Arc<Background>,
    stats: Arc<SpeechStats>,
}

impl Speech {
    /// Builds the chain named in `config.backends`, caching in `cache_dir`
    /// (`Paths::tts_cache_dir()`), with the voice pack or the built bank when there is one.
    /// A voice pack with a missing or bad file is refused here, naming each file.
    pub fn from_config(config: &SpeechConfig, cache_dir: PathBuf) -> Result<Speech, TtsError> {
        let mut backends = Vec::new();
        for &backend in &config.backends {
            backends.push(synthesizer(backend, config)?);
        }
        let cache = ClipCache::new(cache_dir, config.cache_max_mb.saturating_mul(1024 * 1024));
        let home = BankHome {
            slot: Mutex::default(),
            dir: cache.dir().join("bank"),
            tokens: bank::tokens(config),
            pack: config.clips.clone(),
            builds: true,
            note: Mutex::new("not built yet".into()),
        };
        let templates = [
            config.template.clone(),
            config.alipay_template.clone(),
            config.unionpay_template.clone(),
        ];
        let speech = Speech::assemble(backends, cache, templates, config.compose, home);
        let home = &speech.home;
        match &home.pack {
            // Never composed: no clips held in memory, no pack to check.
            _ if config.compose == Compose::Never => {
                home.set_note("not used (compose = \"never\")".into());
            }
            Some(dir) => home.set_bank(bank::load_pack(dir, &home.tokens)?),
            None => home.load(&speech.chain),
        }
        Ok(speech)
    }

    /// A chain of given backends (tests, or a daemon that builds its own), with the default
    /// templates' words for a bank and no bank: one is built only by [`Speech::build_bank`].
    pub fn new(backends: Vec<Box<dyn Synthesizer>>, cache: ClipCache, template: &str) -> Speech {
        let defaults = SpeechConfig {
            template: template.to_string(),
            ..SpeechConfig::default()
        };
        let home = BankHome {
            slot: Mutex::default(),
            dir: cache.dir().join("bank"),
            tokens: bank::tokens(&defaults),
            pack: None,
            builds: false,
            note: Mutex::new("not built yet".into()),
        };
        let templates = [
            defaults.template,
            defaults.alipay_template,
            defaults.unionpay_template,
        ];
        Speech::assemble(backends, cache, templates, Compose::OnMiss, home)
    }

    fn assemble(
        backends: Vec<Box<dyn Synthesizer>>,
        cache: ClipCache,
        templates: [String; 3],
        compose: Compose,
        home: BankHome,
    ) -> Speech {
        let voices = backends
            .into_iter()
            .map(|synth| Voice::new(synth, SKIP_MIN, SKIP_MAX))
            .collect();
        Speech {
            chain: Arc::new(Chain { voices, cache }),
            templates,
            compose,
            home: Arc::new(home),
            background: Arc::default(),
            stats: Arc::default(),
        }
    }

    /// Skips a failed backend for `min` at first, doubling up to `max` (tests shorten it).
    pub fn retry_failed_after(mut self, min: Duration, max: Duration) -> Speech {
        if let Some(chain) = Arc::get_mut(&mut self.chain) {
            for voice in &mut chain.voices {
                voice.health().backoff = Backoff::new(min, max);
            }
        }
        self
    }

    /// How announcements were said so far.
    pub fn stats(&self) -> Arc<SpeechStats> {
        self.stats.clone()
    }

    /// The bank new amounts are composed from, if there is one yet.
    pub fn bank(&self) -> Option<Arc<Bank>> {
        self.home.bank()
    }

    /// Where the built bank lives.
    pub fn bank_dir(&self) -> &Path {
        &self.home.dir
    }

    /// The bank's state in words, for `paysay doctor`: `Ok` when new amounts are composed.
    pub fn bank_status(&self) -> Result<String, String> {
        let note = self
            .home
            .note
            .lock()
            .unwrap_or_else(|e| e.into_inner())
            .clone();
        let Some(bank) = self.bank() else {
            return Err(note);
        };
        let from = match &self.home.pack {
            Some(dir) => format!("the voice pack {}", dir.display()),
            None => format!("{}'s clips in {}", bank.voice, bank.dir.display()),
        };
        let mode = match self.compose {
            Compose::OnMiss => "amounts not said before are composed from",
            Compose::Always => "every amount is composed from",
            Compose::Never => "compose = \"never\": not used, though there are",
        };
        Ok(format!("{mode} {from} ({} clips)", bank.len()))
    }

    /// True when the bank should be built: none yet, or one spoken by a backend after the
    /// first (the first was down when it was built). A voice pack is never built.
    pub fn bank_wanted(&self) -> bool {
        self.compose != Compose::Never && self.home.wanted(&self.chain)
    }

    /// Builds the bank with `backend` (a name in the chain), or with the first backend that
    /// can speak every clip, and composes from it from now on.
    pub async fn build_bank(&self, backend: Option<&str>) -> Result<Manifest, BankError> {
        self.home.build(&self.chain, backend).await
    }

    /// The clip announcing a WeChat payment of `fen`, from the template.
    pub async fn announce(&self, fen: u64) -> Result<Clip, TtsError> {
        self.announce_in(Wallet::WeChat, fen).await
    }

    /// The clip announcing a payment of `fen` through `wallet`, from its template
    /// (`[speech] template`, `alipay_template`, `unionpay_template`): a cached whole phrase,
    /// else one composed from the bank at once (its whole phrase synthesized in the
    /// background), else a whole phrase synthesized now.
    pub async fn announce_in(&self, wallet: Wallet, fen: u64) -> Result<Clip, TtsError> {
        let template = match wallet {
            Wallet::WeChat => &self.templates[0],
            Wallet::Alipay => &self.templates[1],
            Wallet::UnionPay => &self.templates[2],
        };
        let text = announcement(template, fen);
        let bank = self.bank().filter(|_| self.compose != Compose::Never);
        let limit = self.phrase_limit(bank.as_deref());
        let always = self.compose == Compose::Always && bank.is_some();
        if !always && let Some(clip) = self.chain.cached(&text, limit) {
            self.stats.phrases.fetch_add(1, Ordering::Relaxed);
            return Ok(clip);
        }
        if let Some(bank) = &bank {
            let pcm = compose::Template::parse(template)
                .and_then(|t| compose::compose(bank, &compose::script(&t, fen)));
            if let Some(pcm) = pcm {
                if !always {
                    self.synthesize_later(text.clone(), limit);
                }
                self.stats.composed.fetch_add(1, Ordering::Relaxed);
                return Ok(Clip {
                    audio: ClipAudio::Composed(Arc::new(pcm)),
                    backend: bank.voice,
                    text,
                    cached: false,
                });
            }
        }
        let clip = self.synthesize_now(&text).await?;
        self.stats.phrases.fetch_add(1, Ordering::Relaxed);
        Ok(clip)
    }

    /// The clip for `text` (a spoken alert): the bank's when it has it, else from the cache
    /// if a backend spoke it before, else from the first backend that succeeds.
    pub async fn speak(&self, text: &str) -> Result<Clip, TtsError> {
        let bank = self.bank().filter(|_| self.compose != Compose::Never);
        if let Some(bank) = &bank
            && let Some(path) = bank.alert(text)
        {
            return Ok(Clip::file(path.to_path_buf(), bank.voice, text, true));
        }
        if let Some(clip) = self.chain.cached(text, self.phrase_limit(bank.as_deref())) {
            return Ok(clip);
        }
        self.synthesize_now(text).await
    }

    /// How many backends, from the first, may say whole phrases: those at least as good as
    /// the bank's voice (a whole phrase by espeak-ng must not replace Baidu's composed
    /// voice). All of them with a voice pack or no bank.
    fn phrase_limit(&self, bank: Option<&Bank>) -> usize {
        let voices = &self.chain.voices;
        bank.filter(|_| self.home.pack.is_none())
            .and_then(|b| voices.iter().position(|v| v.synth.name() == b.voice))
            .map_or(voices.len(), |i| i + 1)
    }

    /// The first backend that speaks `text`, in configured order, skipping those that
    /// failed lately unless every other one fails too.
    async fn synthesize_now(&self, text: &str) -> Result<Clip, TtsError> {
        let mut failures = Vec::new();
        let mut skipped = Vec::new();
        for voice in &self.chain.voices {
            if !voice.available() {
                skipped.push(voice);
                continue;
            }
            match self.chain.speak_with(voice, text).await {
                Ok(clip) => return Ok(clip),
                Err(e) => failures.push(format!("{}: {e}", voice.synth.name())),
            }
        }
        // Every voice that was tried failed: better one that failed lately than silence.
        for voice in skipped {
            match self.chain.speak_with(voice, text).await {
                Ok(clip) => return Ok(clip),
                Err(e) => failures.push(format!("{}: {e}", voice.synth.name())),
            }
        }
        Err(TtsError::AllFailed {
            text: text.to_string(),
            failures,
        })
    }

    /// Synthesizes the whole phrase of `text` in the background with the first of the
    /// `limit` backends that is not skipped, for the next time the amount is paid. This is
    /// what tries a failed backend again once its skip is over.
    fn synthesize_later(&self, text: String, limit: usize) {
        let Ok(runtime) = tokio::runtime::Handle::try_current() else {
            return;
        };
        let background = self.background.clone();
        let chain = self.chain.clone();
        let home = self.home.clone();
        let fresh = background
            .pending
            .lock()
            .unwrap_or_else(|e| e.into_inner())
            .insert(text.clone());
        if !fresh {
            return;
        }
        let task = runtime.spawn({
            let background = background.clone();
            async move {
                let _turn = background.one_at_a_time.lock().await;
                for (index, voice) in chain.voices.iter().enumerate().take(limit) {
                    if !voice.available() {
                        continue;
                    }
                    if chain.speak_with(voice, &text).await.is_ok() {
                        if home.better_voice_back(&chain, index) {
                            tracing::info!(
                                backend = voice.synth.name(),
                                "a voice before the bank's is back: building the bank with it"
                            );
                            // Logged inside; the old bank speaks until the new one is in.
                            let _ = home.build(&chain, Some(voice.synth.name())).await;
                        }
                        break;
                    }
                }
                background
                    .pending
                    .lock()
                    .unwrap_or_else(|e| e.into_inner())
                    .remove(&text);
            }
        });
        let mut tasks = background.tasks.lock().unwrap_or_else(|e| e.into_inner());
        tasks.retain(|t| !t.is_finished());
        tasks.push(task);
    }

    /// Waits for the whole phrases being synthesized in the background (`paysay say`, which
    /// exits right after, and tests).
    pub async fn settle(&self) {
        let tasks: Vec<_> = std::mem::take(
            &mut *self
                .background
                .tasks
                .lock()
                .unwrap_or_else(|e| e.into_inner()),
        );
        for task in tasks {
            let _ = task.await;
        }
    }
}

/// Builds `speech`'s bank in the background when it has none, or one by a backend after
/// the first; until it is ready, announcements take the whole-phrase path. A build cut short
/// (shutdown, a backend failing) leaves the previous bank as it was.
pub fn spawn_bank_build(speech: &Arc<Speech>) {
    if !speech.bank_wanted() {
        return;
    }
    let speech = speech.clone();
    tokio::spawn(async move {
        // Logged inside; the whole-phrase path speaks meanwhile.
        let _ = speech.build_bank(None).await;
    });
}

/// Hands the heap pages a bank build freed back to the system. glibc keeps freed memory for
/// reuse, and with paysay's single malloc arena (see `main.rs`) the build's decoded
/// sentences would stay resident for the daemon's whole life: measured, +0.5 MB of idle RSS
/// for nothing (BENCHMARKS.md).
fn return_freed_memory() {
    #[cfg(all(target_os = "linux", target_env = "gnu"))]
    // SAFETY: malloc_trim only releases free pages of glibc's own heap; it reads nothing of
    // ours.
    unsafe {
        libc::malloc_trim(0);
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
