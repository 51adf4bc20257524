//! The TOML configuration: what the shop owner writes, with a working default for every key.
//!
//! Every section is optional and every key inside it too, so a file holding only
//! `[wechat] base_url = "…"` is a complete configuration. Unknown keys are refused with the
//! key's name and line (toml's error carries both), because a misspelt `volum = 0.5` that
//! silently does nothing is worse than an error at start-up.

use std::path::{Path, PathBuf};

use serde::Deserialize;

/// Errors reading the configuration file.
#[derive(Debug, thiserror::Error)]
pub enum ConfigError {
    #[error("cannot read the config file {path}: {source}")]
    Read {
        path: PathBuf,
        source: std::io::Error,
    },
    /// toml's message names the line, the column and the offending key.
    #[error("error in the config file {path}: {message}")]
    Parse { path: PathBuf, message: String },
    #[error("error in the config file {path}: `{key}` {problem}")]
    Invalid {
        path: PathBuf,
        key: &'static str,
        problem: String,
    },
}

/// The whole configuration, defaults applied.
#[derive(Debug, Clone, Default, Deserialize, PartialEq)]
#[serde(default, deny_unknown_fields)]
pub struct Config {
    pub wechat: WechatConfig,
    pub payments: PaymentsConfig,
    pub speech: SpeechConfig,
    pub audio: AudioConfig,
    pub ledger: LedgerConfig,
}

/// `[wechat]`: the web session.
#[derive(Debug, Clone, Deserialize, PartialEq)]
#[serde(default, deny_unknown_fields)]
pub struct WechatConfig {
    /// When set, every WeChat host (login, web, push, file, and the host in `redirect_uri`)
    /// is replaced by this one URL, keeping paths and queries. For simulators and test servers.
    pub base_url: Option<String>,
    /// Where the login QR code is saved as a PNG. Default: `login-qr.png` in the state dir.
    pub qr_path: Option<PathBuf>,
    /// Log in as the desktop (UOS) client. Let accounts refused for web login in during
    /// 2021–2024; since 2025 such sessions are ended right after login (retcode 1102).
    pub desktop_mode: bool,
    /// Seconds a long-poll (login, synccheck) may take before the client gives up on it.
    pub long_poll_timeout_secs: u64,
    /// Seconds any other request may take.
    pub request_timeout_secs: u64,
    /// First wait before retrying after a network error, in milliseconds; doubles per failure.
    pub min_backoff_ms: u64,
    /// Longest wait between retries after network errors, in seconds; also the longest
    /// wait between rounds when synccheck keeps announcing messages that never come.
    pub max_backoff_secs: u64,
    /// Least time between two requests of one kind (synccheck, webwxsync), in
    /// milliseconds, whatever the server answers: a server that answers at once must not
    /// make paysay send thousands a second (and get the account flagged).
    pub min_request_interval_ms: u64,
    /// Longest wait before logging in again when WeChat keeps ending sessions soon after
    /// login (each short session in a row doubles the wait), in seconds.
    pub max_relogin_backoff_secs: u64,
}

impl Default for WechatConfig {
    fn default() -> Self {
        WechatConfig {
            base_url: None,
            qr_path: None,
            desktop_mode: false,
            long_poll_timeout_secs: 60,
            request_timeout_secs: 30,
            min_backoff_ms: 1000,
            max_backoff_secs: 60,
            min_request_interval_ms: 300,
            max_relogin_backoff_secs: 300,
        }
    }
}

/// `[payments]`: which kinds of money are announced.
#[derive(Debug, Clone, Deserialize, PartialEq)]
#[serde(default, deny_unknown_fields)]
pub struct PaymentsConfig {
    /// Collection notices from the official WeChat Pay accounts (QR code payments).
    pub collections: bool,
    /// Personal transfers received (微信转账).
    pub transfers: bool,
    /// Red packets received (the web client does not see their amount).
    pub red_packets: bool,
    /// Group collections (群收款).
    pub group_collections: bool,
    /// Names of the official accounts whose notices count. The sender must also be a
    /// verified official account in the contact list: the name alone proves nothing.
    pub accounts: Vec<String>,
}

impl Default for PaymentsConfig {
    fn default() -> Self {
        PaymentsConfig {
            collections: true,
            transfers: true,
            red_packets: false,
            group_collections: false,
            accounts: ["微信支付", "微信收款助手", "微信收款商业版", "微信商家助手"]
                .map(String::from)
                .to_vec(),
        }
    }
}

/// `[speech]`: what is said and which voice says it.
#[derive(Debug, Clone, Deserialize, PartialEq)]
#[serde(default, deny_unknown_fields)]
pub struct SpeechConfig {
    /// The announcement; `{amount}` becomes the amount in Chinese words.
    pub template: String,
    /// Backends in order: when one fails the next one speaks. `baidu`, `system`.
    pub backends: Vec<String>,
    /// Upper bound of the synthesized-audio cache, in megabytes.
    pub cache_max_mb: u64,
    /// Said when WeChat needs a new scan (the daily logout), so the owner learns it at once.
    pub login_alert: String,
    pub baidu: BaiduConfig,
    pub system: SystemVoiceConfig,
}

impl Default for SpeechConfig {
    fn default() -> Self {
        SpeechConfig {
            template: "微信收款{amount}元".into(),
            backends: vec!["system".into()],
            cache_max_mb: 64,
            login_alert: "微信需要重新登录，请扫描二维码".into(),
            baidu: BaiduConfig::default(),
            system: SystemVoiceConfig::default(),
        }
    }
}

/// `[speech.baidu]`: a Baidu-style text-to-speech HTTP API.
#[derive(Debug, Clone, Deserialize, PartialEq)]
#[serde(default, deny_unknown_fields)]
pub struct BaiduConfig {
    pub api_key: String,
    pub secret_key: String,
    /// OAuth token endpoint.
    pub token_url: String,
    /// Synthesis endpoint.
    pub tts_url: String,
    /// Speech rate, 0–15 (5 is normal).
    pub spd: u32,
    /// Pitch, 0–15.
    pub pit: u32,
    /// Volume, 0–15.
    pub vol: u32,
    /// Voice (person): 0 female, 1 male, 3 and 4 emotional voices, more for paid plans.
    pub per: u32,
    /// Audio format: 3 mp3, 6 wav.
    pub aue: u32,
    /// Seconds a synthesis request may take before the next backend is tried.
    pub timeout_secs: u64,
}

impl Default for BaiduConfig {
    fn default() -> Self {
        BaiduConfig {
            api_key: String::new(),
            secret_key: String::new(),
            token_url: "https://aip.baidubce.com/oauth/2.0/token".into(),
            tts_url: "https://tsn.baidu.com/text2audio".into(),
            spd: 5,
            pit: 5,
            vol: 5,
            per: 0,
            aue: 6,
            timeout_secs: 5,
        }
    }
}

/// `[speech.system]`: the voice the operating system has (espeak-ng, `say`, SAPI).
#[derive(Debug, Clone, Deserialize, PartialEq)]
#[serde(default, deny_unknown_fields)]
pub struct SystemVoiceConfig {
    /// Voice name: espeak-ng `cmn` (Mandarin), macOS `Tingting`, a SAPI voice name on
    /// Windows. Empty: the platform's Chinese default.
    pub voice: String,
    /// Speech rate in words per minute (espeak-ng and `say`); SAPI maps it to -10…10.
    pub rate: u32,
    /// Program to run instead of the platform's default (e.g. `/usr/bin/espeak-ng`).
    pub command: Option<PathBuf>,
}

impl Default for SystemVoiceConfig {
    fn default() -> Self {
        SystemVoiceConfig {
            voice: String::new(),
            rate: 160,
            command: None,
        }
    }
}

/// `[audio]`: the speaker.
#[derive(Debug, Clone, Deserialize, PartialEq)]
#[serde(default, deny_unknown_fields)]
pub struct AudioConfig {
    /// 0.0 (silent) to 2.0; 1.0 plays clips as synthesized.
    pub volume: f32,
    /// Play the chime before the words.
    pub chime: bool,
    /// A WAV/MP3 file to use as the chime instead of the built-in one.
    pub chime_path: Option<PathBuf>,
    /// Milliseconds of silence after which the output device is closed again.
    pub idle_close_ms: u64,
}

impl Default for AudioConfig {
    fn default() -> Self {
        AudioConfig {
            volume: 1.0,
            chime: true,
            chime_path: None,
            idle_close_ms: 1500,
        }
    }
}

/// `[ledger]`: the payment record.
#[derive(Debug, Clone, Default, Deserialize, PartialEq)]
#[serde(default, deny_unknown_fields)]
pub struct LedgerConfig {
    /// SQLite file. Default: `ledger.sqlite3` in the state dir.
    pub path: Option<PathBuf>,
}

impl Config {
    /// Reads `path`; a missing file at the *default* path means "all defaults", while a
    /// missing file named with `--config` is an error (the owner meant that file).
    pub fn load(path: &Path, explicit: bool) -> Result<Config, ConfigError> {
        match std::fs::read_to_string(path) {
            Ok(text) => Config::parse(&text, path),
            Err(e) if e.kind() == std::io::ErrorKind::NotFound && !explicit => {
                Ok(Config::default())
            }
            Err(source) => Err(ConfigError::Read {
                path: path.to_path_buf(),
                source,
            }),
        }
    }

    pub fn parse(text: &str, path: &Path) -> Result<Config, ConfigError> {
        let config: Config = toml::from_str(text).map_err(|e| ConfigError::Parse {
            path: path.to_path_buf(),
            message: e.to_string().trim_end().to_string(),
        })?;
        config.validate(path)?;
        Ok(config)
    }

    fn validate(&self, path: &Path) -> Result<(), ConfigError> {
        let invalid = |key, problem: &str| ConfigError::Invalid {
            path: path.to_path_buf(),
            key,
            problem: problem.to_string(),
        };
        if let Some(url) = &self.wechat.base_url {
            let parsed = url::Url::parse(url)
                .map_err(|e| invalid("wechat.base_url", &format!("is not a URL: {e}")))?;
            if !matches!(parsed.scheme(), "http" | "https") {
                return Err(invalid(
                    "wechat.base_url",
                    "must start with http:// or https://",
                ));
            }
        }
        if !(0.0..=2.0).contains(&self.audio.volume) {
            return Err(invalid("audio.volume", "must be between 0.0 and 2.0"));
        }
        if !self.speech.template.contains("{amount}") {
            return Err(invalid("speech.template", "must contain {amount}"));
        }
        if self.speech.backends.is_empty() {
            return Err(invalid("speech.backends", "must name at least one backend"));
        }
        for b in &self.speech.backends {
            if !matches!(b.as_str(), "baidu" | "system") {
                return Err(invalid(
                    "speech.backends",
                    &format!("names an unknown backend {b:?} (known: \"baidu\", \"system\")"),
                ));
            }
        }
        let baidu = &self.speech.baidu;
        for (key, v) in [
            ("speech.baidu.spd", baidu.spd),
            ("speech.baidu.pit", baidu.pit),
            ("speech.baidu.vol", baidu.vol),
        ] {
            if v > 15 {
                return Err(invalid(key, "must be between 0 and 15"));
            }
        }
        if !matches!(baidu.aue, 3 | 6) {
            return Err(invalid("speech.baidu.aue", "must be 3 (mp3) or 6 (wav)"));
        }
        if !(80..=450).contains(&self.speech.system.rate) {
            return Err(invalid(
                "speech.system.rate",
                "must be between 80 and 450 words per minute",
            ));
        }
        if self.wechat.long_poll_timeout_secs == 0 || self.wechat.request_timeout_secs == 0 {
            return Err(invalid("wechat.*_timeout_secs", "must be at least 1"));
        }
        if self.wechat.min_backoff_ms == 0 {
            // Every wait doubles it: 0 would retry a failing server in a busy loop.
            return Err(invalid("wechat.min_backoff_ms", "must be at least 1"));
        }
        self.validate_pacing(path)
    }

    /// The bounds of the `[wechat]` keys that pace requests and logins.
    fn validate_pacing(&self, path: &Path) -> Result<(), ConfigError> {
        let bounds = [
            (
                "wechat.min_request_interval_ms",
                self.wechat.min_request_interval_ms,
                1..=10_000,
                "must be between 1 and 10000 (milliseconds)",
            ),
            (
                "wechat.max_relogin_backoff_secs",
                self.wechat.max_relogin_backoff_secs,
                1..=3_600,
                "must be between 1 and 3600 (seconds)",
            ),
        ];
        for (key, value, range, problem) in bounds {
            if !range.contains(&value) {
                return Err(ConfigError::Invalid {
                    path: path.to_path_buf(),
                    key,
                    problem: problem.to_string(),
                });
            }
        }
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn parse(text: &str) -> Result<Config, ConfigError> {
        Config::parse(text, Path::new("paysay.toml"))
    }

    #[test]
    fn empty_file_is_all_defaults() {
        assert_eq!(parse("").unwrap(), Config::default());
    }

    #[test]
    fn base_url_alone_is_enough() {
        let c = parse("[wechat]\nbase_url = \"http://127.0.0.1:9\"\n").unwrap();
        assert_eq!(c.wechat.base_url.as_deref(), Some("http://127.0.0.1:9"));
        assert_eq!(c.speech.backends, vec!["system".to_string()]);
    }

    #[test]
    fn unknown_key_names_key_and_line() {
        let err = parse("[audio]\nvolume = 0.5\nvolum = 1.0\n")
            .unwrap_err()
            .to_string();
        assert!(err.contains("volum"), "{err}");
        assert!(err.contains("line 3"), "{err}");
    }

    #[test]
    fn bad_value_names_key() {
        let err = parse("[audio]\nvolume = 7.0\n").unwrap_err().to_string();
        assert!(err.contains("audio.volume"), "{err}");
        let err = parse("[speech]\nbackends = [\"google\"]\n")
            .unwrap_err()
            .to_string();
        assert!(err.contains("google"), "{err}");
        let err = parse("[audio]\nvolume = \"loud\"\n")
            .unwrap_err()
            .to_string();
        assert!(err.contains("line 2"), "{err}");
    }

    #[test]
    fn zero_backoff_is_refused() {
        let err = parse("[wechat]\nmin_backoff_ms = 0\n")
            .unwrap_err()
            .to_string();
        assert!(err.contains("wechat.min_backoff_ms"), "{err}");
    }

    #[test]
    fn pacing_keys_are_bounded() {
        for text in [
            "[wechat]\nmin_request_interval_ms = 0\n",
            "[wechat]\nmin_request_interval_ms = 10001\n",
            "[wechat]\nmax_relogin_backoff_secs = 0\n",
            "[wechat]\nmax_relogin_backoff_secs = 9223372036854775807\n",
        ] {
            let err = parse(text).unwrap_err().to_string();
            let key = text.split_once('\n').unwrap().1.split(' ').next().unwrap();
            assert!(err.contains(key), "{err}");
        }
        let c = parse("[wechat]\nmin_request_interval_ms = 10\nmax_relogin_backoff_secs = 1\n")
            .unwrap();
        assert_eq!(c.wechat.min_request_interval_ms, 10);
    }

    #[test]
    fn missing_default_file_is_defaults_but_explicit_is_error() {
        let p = Path::new("/nonexistent/paysay/config.toml");
        assert!(Config::load(p, false).is_ok());
        assert!(Config::load(p, true).is_err());
    }
}
