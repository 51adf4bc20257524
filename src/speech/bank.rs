//! The voice bank: one clip per word an announcement is made of (零…九, 两, 十 百 千 万 亿,
//! 点, 元, the template's words around `{amount}`) and the spoken alerts, so that any amount
//! can be said at once and offline in the shop's chosen voice.
//!
//! A bank is built by synthesizing each word once with one backend, or loaded from a voice
//! pack (the shop's own recordings, `[speech] clips`). Either way every clip is conditioned
//! the same: mono, 16 kHz, leading and trailing silence trimmed, brought to one loudness,
//! faded in and out over a few milliseconds so that joins do not click.
//!
//! Loudness is an RMS target over the clip's voiced part (−20 dBFS) with a peak ceiling
//! (−1 dBFS), not EBU R128: a word is 200–500 ms, and R128's integrated loudness is gated
//! over 400 ms blocks, so on clips this short it measures one block or none. The RMS of the
//! frames within 30 dB of the clip's peak is what a listener compares between two words.
//!
//! A built bank lives in `<cache>/tts/bank/`: a WAV per word and `manifest.json` naming the
//! backend, its voice settings (rate included), the words and the format. A bank whose
//! manifest no longer matches the config (voice, rate or template changed) is stale and is
//! built again.

use std::collections::HashMap;
use std::path::{Path, PathBuf};
use std::time::Instant;

use serde::{Deserialize, Serialize};

use super::compose::{Template, YUAN};
use super::words::Word;
use super::{Synthesizer, TtsError};
use crate::config::SpeechConfig;

/// Sample rate of every clip in a bank: enough for speech, a third of the memory of 48 kHz.
pub const RATE: u32 = 16_000;
/// Changes when the clips' conditioning or the manifest changes, so old banks are rebuilt.
pub const FORMAT_VERSION: u32 = 1;
/// The loudness every clip is brought to: RMS of its voiced frames, in dBFS.
pub const TARGET_RMS_DBFS: f32 = -20.0;
/// No sample louder than this after the gain, in dBFS.
pub const PEAK_CEILING_DBFS: f32 = -1.0;
/// Samples this far below the clip's peak count as silence when trimming, in dB.
const TRIM_BELOW_PEAK_DB: f32 = 40.0;
/// Frames this far below the clip's peak do not count towards its loudness, in dB.
const VOICED_BELOW_PEAK_DB: f32 = 30.0;
/// Kept of the silence before the first and after the last voiced sample.
const MARGIN_MS: u32 = 15;
/// Fade at both ends of a clip.
const FADE_MS: u32 = 4;
/// A word of a voice pack is said in well under this; a longer file is a wrong file.
pub const MAX_PACK_CLIP_SECS: f64 = 3.0;
/// A spoken alert of a voice pack is a sentence: longer than a word, never this long.
pub const MAX_PACK_ALERT_SECS: f64 = 15.0;
/// The largest file of a voice pack read (a 3 s WAV at 48 kHz stereo is 576 kB).
pub const MAX_PACK_FILE_BYTES: u64 = 2 * 1024 * 1024;
/// The longest synthesized clip kept (an alert is a sentence, a few seconds).
const MAX_SYNTH_SECS: usize = 20;
const MANIFEST: &str = "manifest.json";

/// A word (or alert) a bank holds a clip for.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Token {
    /// The clip's file name without extension, in a built bank and in a voice pack.
    pub stem: String,
    /// What is said.
    pub text: String,
    /// A whole spoken alert: played as a file, never composed, optional in a voice pack.
    pub alert: bool,
}

/// Every clip the configured announcements need: the words of amounts, 元, each template's
/// own words, and the alerts. A text needed twice (two templates that open alike) is one
/// clip, named after its first use.
pub fn tokens(config: &SpeechConfig) -> Vec<Token> {
    let mut tokens: Vec<Token> = Vec::new();
    let mut add = |stem: String, text: &str, alert: bool| {
        if !text.is_empty() && !tokens.iter().any(|t| t.text == text) {
            tokens.push(Token {
                stem,
                text: text.to_string(),
                alert,
            });
        }
    };
    for word in Word::ALL {
        add(word.file_stem().into(), word.text(), false);
    }
    add("yuan".into(), YUAN, false);
    let templates = [
        ("wechat", &config.template),
        ("alipay", &config.alipay_template),
        ("unionpay", &config.unionpay_template),
    ];
    for (wallet, template) in templates {
        if let Some(t) = Template::parse(template) {
            add(wallet.into(), &t.before, false);
            add(format!("{wallet}-end"), &t.after, false);
        }
    }
    let alerts = [
        ("alert-login", &config.login_alert),
        ("alert-ledger", &config.ledger_alert),
        ("alert-gap", &config.gap_alert),
        ("alert-phone", &config.phone_alert),
    ];
    for (stem, text) in alerts {
        add(stem.into(), text, true);
    }
    tokens
}

/// What a built bank's directory says about it.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct Manifest {
    pub format: u32,
    /// The backend that spoke the clips (`baidu`, `system`).
    pub backend: String,
    /// The backend's voice settings, rate included ([`Synthesizer::voice`]).
    pub voice: String,
    pub rate: u32,
    pub tokens: Vec<Token>,
    /// How long the build took, in seconds.
    pub build_secs: f64,
    /// Bytes of audio in the bank.
    pub bytes: u64,
}

/// Clips ready to compose from, in memory (a few hundred kB); alerts stay files on disk.
#[derive(Debug, Clone)]
pub struct Bank {
    /// Who speaks: the backend's name, or `pack`.
    pub voice: &'static str,
    /// Where the clips came from, for messages: the bank's directory or the pack's.
    pub dir: PathBuf,
    clips: HashMap<String, Vec<i16>>,
    alerts: HashMap<String, PathBuf>,
}

impl Bank {
    /// The conditioned samples of `text` (mono, [`RATE`]).
    pub fn clip(&self, text: &str) -> Option<&[i16]> {
        self.clips.get(text).map(Vec::as_slice)
    }

    /// The file of a spoken alert.
    pub fn alert(&self, text: &str) -> Option<&Path> {
        self.alerts.get(text).map(PathBuf::as_path)
    }

    /// How many clips it holds, alerts included.
    pub fn len(&self) -> usize {
        self.clips.len() + self.alerts.len()
    }

    /// Bytes of samples it holds in memory (the alerts are files).
    pub fn memory_bytes(&self) -> usize {
        self.clips.values().map(|c| c.len() * 2).sum()
    }

    /// True when it holds nothing.
    pub fn is_empty(&self) -> bool {
        self.len() == 0
    }
}

/// Why a bank could not be built or read.
#[derive(Debug, thiserror::Error)]
pub enum BankError {
    #[error("{backend} could not speak {text:?} for the voice bank: {source}")]
    Synthesis {
        backend: &'static str,
        text: String,
        source: TtsError,
    },
    #[error("{backend} spoke {text:?} as audio that cannot be used: {reason}")]
    Audio {
        backend: &'static str,
        text: String,
        reason: String,
    },
    #[error("voice bank {path}: {source}")]
    Io {
        path: PathBuf,
        source: std::io::Error,
    },
    #[error("voice bank {path}: {reason}")]
    Corrupt { path: PathBuf, reason: String },
}

/// The state of a built bank on disk against the current config.
#[derive(Debug)]
pub enum Stored {
    /// No bank yet.
    Missing,
    /// A bank for other settings (the reason says which).
    Stale(String),
    /// A usable bank and its manifest.
    Fresh(Box<(Bank, Manifest)>),
}

/// Builds a bank with `synth` for `tokens` in `dir`, replacing the bank there only once
/// every clip is ready (a failed build leaves the old one).
///
/// One clip at a time: synthesized, conditioned and written before the next is asked for,
/// so the build never holds more than one sentence of audio. A daemon that builds its bank
/// while it runs keeps the heap that build grew to.
pub async fn build(
    synth: &dyn Synthesizer,
    tokens: &[Token],
    dir: &Path,
) -> Result<(Bank, Manifest), BankError> {
    let started = Instant::now();
    let backend = synth.name();
    let fresh = dir.with_extension("new");
    blocking({
        let fresh = fresh.clone();
        move || fresh_dir(&fresh)
    })
    .await?;
    let mut bytes = 0;
    for token in tokens {
        let audio = synth
            .synthesize(&token.text)
            .await
            .map_err(|source| BankError::Synthesis {
                backend,
                text: token.text.clone(),
                source,
            })?;
        let (token, fresh) = (token.clone(), fresh.clone());
        bytes += blocking(move || store_clip(backend, &token, audio.bytes, &fresh)).await?;
    }
    let mut manifest = Manifest {
        format: FORMAT_VERSION,
        backend: backend.to_string(),
        voice: synth.voice(),
        rate: RATE,
        tokens: tokens.to_vec(),
        build_secs: started.elapsed().as_secs_f64(),
        bytes,
    };
    let dir = dir.to_path_buf();
    blocking(move || {
        swap_in(&fresh, &dir, &manifest)?;
        let bank = read(&dir, &manifest, backend)?;
        manifest.build_secs = started.elapsed().as_secs_f64();
        Ok((bank, manifest))
    })
    .await
}

/// Runs file and CPU work of the build on the blocking pool.
async fn blocking<T: Send + 'static>(
    work: impl FnOnce() -> Result<T, BankError> + Send + 'static,
) -> Result<T, BankError> {
    tokio::task::spawn_blocking(work)
        .await
        .map_err(|e| BankError::Io {
            path: PathBuf::new(),
            source: std::io::Error::other(e),
        })?
}

fn io_error(path: &Path) -> impl FnOnce(std::io::Error) -> BankError {
    let path = path.to_path_buf();
    move |source| BankError::Io { path, source }
}

/// An empty directory at `fresh` (what an interrupted build left there is removed).
fn fresh_dir(fresh: &Path) -> Result<(), BankError> {
    if fresh.exists() {
        std::fs::remove_dir_all(fresh).map_err(io_error(fresh))?;
    }
    std::fs::create_dir_all(fresh).map_err(io_error(fresh))
}

/// Conditions what `backend` said for `token` and writes it into `fresh`; its size.
fn store_clip(
    backend: &'static str,
    token: &Token,
    spoken: Vec<u8>,
    fresh: &Path,
) -> Result<u64, BankError> {
    let bad = |reason: String| BankError::Audio {
        backend,
        text: token.text.clone(),
        reason,
    };
    let samples = decode_mono(spoken, RATE as usize * MAX_SYNTH_SECS).map_err(bad)?;
    let clip = condition(&samples).ok_or_else(|| bad("it is silent".into()))?;
    let bytes = wav_bytes(&clip, RATE);
    let path = fresh.join(format!("{}.wav", token.stem));
    std::fs::write(&path, &bytes).map_err(io_error(&path))?;
    Ok(bytes.len() as u64)
}

/// Writes the manifest into `fresh` and swaps it in for `dir`: a reader sees the old bank
/// or the new one, never half of each.
fn swap_in(fresh: &Path, dir: &Path, manifest: &Manifest) -> Result<(), BankError> {
    let json = serde_json::to_vec_pretty(manifest).map_err(|e| BankError::Corrupt {
        path: fresh.to_path_buf(),
        reason: e.to_string(),
    })?;
    let path = fresh.join(MANIFEST);
    crate::fsutil::write_atomically(&path, &json).map_err(io_error(&path))?;
    if dir.exists() {
        std::fs::remove_dir_all(dir).map_err(io_error(dir))?;
    }
    std::fs::rename(fresh, dir).map_err(io_error(dir))
}

/// The bank in `dir`, checked against the chain's backends and the config's `tokens`.
pub fn load(dir: &Path, backends: &[&dyn Synthesizer], tokens: &[Token]) -> Stored {
    let manifest = match read_manifest(dir) {
        Ok(Some(m)) => m,
        Ok(None) => return Stored::Missing,
        Err(e) => return Stored::Stale(e.to_string()),
    };
    if manifest.format != FORMAT_VERSION || manifest.rate != RATE {
        return Stored::Stale(format!(
            "built by an older paysay (format {})",
            manifest.format
        ));
    }
    let Some(synth) = backends.iter().find(|b| b.name() == manifest.backend) else {
        return Stored::Stale(format!(
            "built with {}, which is no longer in speech.backends",
            manifest.backend
        ));
    };
    if synth.voice() != manifest.voice {
        return Stored::Stale(format!(
            "built with {} {}, the config now says {}",
            manifest.backend,
            manifest.voice,
            synth.voice()
        ));
    }
    if manifest.tokens != tokens {
        return Stored::Stale("built for other templates or alerts".into());
    }
    match read(dir, &manifest, synth.name()) {
        Ok(bank) => Stored::Fresh(Box::new((bank, manifest))),
        Err(e) => Stored::Stale(e.to_string()),
    }
}

/// The manifest of the bank in `dir`; `None` when there is none.
pub fn read_manifest(dir: &Path) -> Result<Option<Manifest>, BankError> {
    let path = dir.join(MANIFEST);
    let bytes = match std::fs::read(&path) {
        Ok(bytes) => bytes,
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => return Ok(None),
        Err(source) => return Err(BankError::Io { path, source }),
    };
    serde_json::from_slice(&bytes)
        .map(Some)
        .map_err(|e| BankError::Corrupt {
            path,
            reason: e.to_string(),
        })
}

fn read(dir: &Path, manifest: &Manifest, voice: &'static str) -> Result<Bank, BankError> {
    let mut bank = Bank {
        voice,
        dir: dir.to_path_buf(),
        clips: HashMap::new(),
        alerts: HashMap::new(),
    };
    for token in &manifest.tokens {
        let path = dir.join(format!("{}.wav", token.stem));
        if token.alert {
            bank.alerts.insert(token.text.clone(), path);
            continue;
        }
        let corrupt = |reason: String| BankError::Corrupt {
            path: path.clone(),
            reason,
        };
        let reader = hound::WavReader::open(&path).map_err(|e| corrupt(e.to_string()))?;
        let samples = reader
            .into_samples::<i16>()
            .collect::<Result<Vec<i16>, _>>()
            .map_err(|e| corrupt(e.to_string()))?;
        bank.clips.insert(token.text.clone(), samples);
    }
    Ok(bank)
}

/// Why a voice pack cannot be used: every problem, each naming its file.
#[derive(Debug, thiserror::Error)]
#[error("voice pack {dir}: {}", problems.join("; "))]
pub struct PackError {
    pub dir: PathBuf,
    pub problems: Vec<String>,
}

/// The voice pack in `dir` for `tokens`: one `<stem>.wav` or `<stem>.mp3` per word
/// (alerts optional), each readable, at most [`MAX_PACK_CLIP_SECS`] long (an alert
/// [`MAX_PACK_ALERT_SECS`]) and
/// [`MAX_PACK_FILE_BYTES`] big. Conditioned like a built bank.
pub fn load_pack(dir: &Path, tokens: &[Token]) -> Result<Bank, PackError> {
    let mut bank = Bank {
        voice: "pack",
        dir: dir.to_path_buf(),
        clips: HashMap::new(),
        alerts: HashMap::new(),
    };
    if !dir.is_dir() {
        return Err(PackError {
            dir: dir.to_path_buf(),
            problems: vec!["is not a directory".into()],
        });
    }
    let mut problems = Vec::new();
    for token in tokens {
        let found = ["wav", "mp3"]
            .iter()
            .map(|ext| dir.join(format!("{}.{ext}", token.stem)))
            .find(|p| p.exists());
        let Some(path) = found else {
            if !token.alert {
                problems.push(format!("{}.wav ({}) is missing", token.stem, token.text));
            }
            continue;
        };
        let name = path.file_name().unwrap_or_default().to_string_lossy();
        let longest = if token.alert {
            MAX_PACK_ALERT_SECS
        } else {
            MAX_PACK_CLIP_SECS
        };
        match pack_clip(&path, longest) {
            // An alert is checked like a word, then played from its file as it is.
            Ok(_) if token.alert => {
                bank.alerts.insert(token.text.clone(), path.clone());
            }
            Ok(samples) => {
                bank.clips.insert(token.text.clone(), samples);
            }
            Err(reason) => problems.push(format!("{name} ({}) {reason}", token.text)),
        }
    }
    if problems.is_empty() {
        Ok(bank)
    } else {
        Err(PackError {
            dir: dir.to_path_buf(),
            problems,
        })
    }
}

/// One file of a voice pack, read and conditioned, or what is wrong with it.
fn pack_clip(path: &Path, longest: f64) -> Result<Vec<i16>, String> {
    let meta = std::fs::metadata(path).map_err(|e| format!("cannot be read: {e}"))?;
    if !meta.is_file() {
        return Err("is not a regular file".into());
    }
    if meta.len() > MAX_PACK_FILE_BYTES {
        return Err(format!(
            "is too big ({} kB, at most {} kB)",
            meta.len() / 1024,
            MAX_PACK_FILE_BYTES / 1024
        ));
    }
    let bytes = std::fs::read(path).map_err(|e| format!("cannot be read: {e}"))?;
    let limit = (RATE as f64 * longest) as usize;
    let samples = decode_mono(bytes, limit + 1).map_err(|e| format!("cannot be decoded: {e}"))?;
    if samples.len() > limit {
        return Err(format!("is longer than {longest} s"));
    }
    condition(&samples).ok_or_else(|| "is silent".to_string())
}

/// Decodes WAV or MP3 `bytes` to mono samples at [`RATE`], at most `limit` of them.
pub fn decode_mono(bytes: Vec<u8>, limit: usize) -> Result<Vec<f32>, String> {
    use std::num::NonZero;
    let decoder =
        rodio::Decoder::try_from(std::io::Cursor::new(bytes)).map_err(|e| e.to_string())?;
    let mono = NonZero::new(1).ok_or("no channel")?;
    let rate = NonZero::new(RATE).ok_or("no rate")?;
    Ok(
        rodio::source::UniformSourceIterator::new(decoder, mono, rate)
            .take(limit)
            .collect(),
    )
}

/// Trims silence, brings the voiced part to [`TARGET_RMS_DBFS`] under the ceiling, fades
/// both ends; `None` when nothing is voiced.
pub fn condition(samples: &[f32]) -> Option<Vec<i16>> {
    let peak = samples.iter().fold(0f32, |m, s| m.max(s.abs()));
    if peak < 1e-4 {
        return None;
    }
    let floor = peak * db(-TRIM_BELOW_PEAK_DB);
    let first = samples.iter().position(|s| s.abs() > floor)?;
    let last = samples.iter().rposition(|s| s.abs() > floor)?;
    let margin = (RATE * MARGIN_MS / 1000) as usize;
    let kept = &samples[first.saturating_sub(margin)..(last + margin + 1).min(samples.len())];
    let rms = voiced_rms(kept);
    let gain = (db(TARGET_RMS_DBFS) / rms).min(db(PEAK_CEILING_DBFS) / peak);
    let fade = (RATE * FADE_MS / 1000) as usize;
    let n = kept.len();
    Some(
        kept.iter()
            .enumerate()
            .map(|(i, s)| {
                let edge = i.min(n - 1 - i);
                let envelope = if edge < fade {
                    edge as f32 / fade as f32
                } else {
                    1.0
                };
                (s * gain * envelope * 32767.0).round() as i16
            })
            .collect(),
    )
}

/// RMS of the 10 ms frames within [`VOICED_BELOW_PEAK_DB`] of the loudest sample: the
/// loudness of the word, not of the silence around it.
pub fn voiced_rms(samples: &[f32]) -> f32 {
    let peak = samples.iter().fold(0f32, |m, s| m.max(s.abs()));
    let floor = peak * db(-VOICED_BELOW_PEAK_DB);
    let frame = (RATE / 100) as usize;
    let (mut sum, mut count) = (0f64, 0usize);
    for chunk in samples.chunks(frame) {
        let energy: f64 = chunk.iter().map(|s| f64::from(*s).powi(2)).sum();
        let rms = (energy / chunk.len() as f64).sqrt() as f32;
        if rms >= floor {
            sum += energy;
            count += chunk.len();
        }
    }
    if count == 0 {
        return peak.max(1e-6);
    }
    ((sum / count as f64).sqrt() as f32).max(1e-6)
}

/// `dbfs` as a linear factor.
fn db(dbfs: f32) -> f32 {
    10f32.powf(dbfs / 20.0)
}

/// A mono 16-bit WAV file of `samples`.
pub fn wav_bytes(samples: &[i16], rate: u32) -> Vec<u8> {
    let spec = hound::WavSpec {
        channels: 1,
        sample_rate: rate,
        bits_per_sample: 16,
        sample_format: hound::SampleFormat::Int,
    };
    let mut bytes = std::io::Cursor::new(Vec::with_capacity(44 + samples.len() * 2));
    // Writing to memory fails only on a sample count beyond WAV's 4 GB: not a word.
    if let Ok(mut writer) = hound::WavWriter::new(&mut bytes, spec) {
        let mut samples_writer = writer.get_i16_writer(samples.len() as u32);
        for s in samples {
            samples_writer.write_sample(*s);
        }
        let _ = samples_writer.flush();
        let _ = writer.finalize();
    }
    bytes.into_inner()
}

#[cfg(test)]
mod tests {
    use super::*;

    fn tone(secs: f32, level: f32, silence: f32) -> Vec<f32> {
        let pad = (RATE as f32 * silence) as usize;
        let n = (RATE as f32 * secs) as usize;
        let mut out = vec![0.0; pad];
        out.extend(
            (0..n).map(|i| level * (i as f32 * 440.0 * std::f32::consts::TAU / RATE as f32).sin()),
        );
        out.extend(vec![0.0; pad]);
        out
    }

    #[test]
    fn conditioning_trims_and_levels() {
        let quiet = condition(&tone(0.3, 0.05, 0.2)).unwrap();
        let loud = condition(&tone(0.3, 0.8, 0.2)).unwrap();
        let margin = 2 * (RATE * MARGIN_MS / 1000) as usize;
        assert!(quiet.len() <= (RATE as f32 * 0.3) as usize + margin + 1);
        let level = |s: &[i16]| {
            let f: Vec<f32> = s.iter().map(|x| f32::from(*x) / 32767.0).collect();
            20.0 * voiced_rms(&f).log10()
        };
        assert!((level(&quiet) - level(&loud)).abs() < 0.2);
        assert!(
            (level(&quiet) - TARGET_RMS_DBFS).abs() < 0.5,
            "{}",
            level(&quiet)
        );
        assert_eq!((quiet[0], *quiet.last().unwrap()), (0, 0), "not faded");
        assert_eq!(condition(&[0.0; 1000]), None);
    }

    #[test]
    fn tokens_cover_words_templates_and_alerts_once() {
        let config = SpeechConfig::default();
        let tokens = tokens(&config);
        let stems: Vec<&str> = tokens.iter().map(|t| t.stem.as_str()).collect();
        for stem in [
            "digit-0", "liang", "dian", "yuan", "wechat", "alipay", "unionpay",
        ] {
            assert!(stems.contains(&stem), "{stems:?}");
        }
        assert!(
            !stems.contains(&"wechat-end"),
            "元 alone needs no clip of its own"
        );
        assert_eq!(tokens.iter().filter(|t| t.alert).count(), 4);
        let wav = wav_bytes(&[0, 1000, -1000], RATE);
        assert_eq!(decode_mono(wav, 10).unwrap().len(), 3);
    }
}
