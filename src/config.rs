//! The TOML configuration: what the shop owner writes, with a working default for every key.
//!
//! Every section is optional and every key inside it too, so a file holding only
//! `[wechat] base_url = "…"` is a complete configuration. Unknown keys are refused with the
//! key's name and line (toml's error carries both), because a misspelt `volum = 0.5` that
//! silently does nothing is worse than an error at start-up.

use std::path::{Path, PathBuf};
use std::time::Duration;

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
    /// `[mqtt]`: absent, no MQTT.
    pub mqtt: Option<MqttConfig>,
    /// `[[webhook]]`, any number: each payment POSTed as JSON.
    #[serde(rename = "webhook")]
    pub webhooks: Vec<WebhookConfig>,
    /// `[vmq]`: a V免签 server told of each payment, with a heartbeat.
    pub vmq: VmqConfig,
    /// `[notify]`: absent, paysay sends nothing in WeChat (sending from a web client may
    /// raise the risk of a ban, so it is opt-in and sparse).
    pub notify: Option<NotifyConfig>,
    /// `[web]`: the shop's page (status, login QR code, today's payments).
    pub web: WebConfig,
    /// `[intake]`: payment notices from the shop's phone (SmsForwarder, the V免签 monitor
    /// app). Absent: no listener at all.
    pub intake: Option<IntakeConfig>,
}

/// The port of the phone intake when `[intake] listen` does not say.
pub const DEFAULT_INTAKE_PORT: u16 = 8152;

/// `[intake]`: the shop phone's payment notices, forwarded over HTTP by SmsForwarder
/// (`POST /intake/smsforwarder`) or the V免签 monitor app (`/appHeart`, `/appPush`).
#[derive(Debug, Clone, Deserialize, PartialEq)]
#[serde(default, deny_unknown_fields)]
pub struct IntakeConfig {
    /// Address and port, `IP:PORT`; the phone reaches it over the shop's LAN.
    pub listen: std::net::SocketAddr,
    /// SmsForwarder's 加签 secret, and the V免签 key the monitor app is given. Required.
    pub secret: String,
    /// A phone that has sent heartbeats and then falls silent this long is offline
    /// (said once, until it is back), in seconds.
    pub phone_timeout_secs: u64,
    /// While the web session is logged in, how long a WeChat notice from the phone waits
    /// for the same payment's web copy before it is said, in milliseconds.
    pub web_wait_ms: u64,
    /// Copies of one payment from the two ways (web and phone) are matched by wallet and
    /// exact amount within this many seconds of each other.
    pub match_window_secs: u64,
}

impl Default for IntakeConfig {
    fn default() -> Self {
        IntakeConfig {
            listen: std::net::SocketAddr::from(([0, 0, 0, 0], DEFAULT_INTAKE_PORT)),
            secret: String::new(),
            phone_timeout_secs: 90,
            web_wait_ms: 3000,
            match_window_secs: 120,
        }
    }
}

/// `[notify]`: texts to the owner in WeChat (webwxsendmsg), at most one a minute and
/// `max_per_day` a day.
#[derive(Debug, Clone, Deserialize, PartialEq)]
#[serde(default, deny_unknown_fields)]
pub struct NotifyConfig {
    /// Who gets them: `filehelper` (the own 文件传输助手) or a contact's remark or nickname.
    pub to: String,
    /// Local time `HH:MM` of the day's summary (count, total, per kind, and what WeChat
    /// counted that the ledger lacks); `""` sends none.
    pub daily_summary: String,
    /// After a re-login, one text saying how long paysay was away.
    pub back_online: bool,
    /// The most texts (tries included) a day (1-50).
    pub max_per_day: u64,
}

impl Default for NotifyConfig {
    fn default() -> Self {
        NotifyConfig {
            to: "filehelper".into(),
            daily_summary: "22:00".into(),
            back_online: true,
            max_per_day: 10,
        }
    }
}

impl NotifyConfig {
    /// `daily_summary` as a time of day; `None` when off (or unreadable: load refuses it).
    pub fn summary_at(&self) -> Option<time::Time> {
        parse_time_of_day(&self.daily_summary).ok().flatten()
    }
}

/// `"22:00"` → 22:00; `""` → `None` (off).
fn parse_time_of_day(s: &str) -> Result<Option<time::Time>, String> {
    let s = s.trim();
    if s.is_empty() {
        return Ok(None);
    }
    let format = time::macros::format_description!("[hour padding:none]:[minute]");
    time::Time::parse(s, &format)
        .map(Some)
        .map_err(|_| format!("must be a local time like \"22:00\" (or \"\" for none), not {s:?}"))
}

/// The port of the shop's page when `[web] listen` does not say.
pub const DEFAULT_WEB_PORT: u16 = 8151;

/// `[web]`: the shop's page, served by `paysay run` (in builds with the `web` feature).
#[derive(Debug, Clone, Deserialize, PartialEq)]
#[serde(default, deny_unknown_fields)]
pub struct WebConfig {
    /// Serve the page at all. `false`: no port is opened.
    pub enabled: bool,
    /// Address and port, `IP:PORT`. The default answers this computer alone; an address
    /// other devices reach (`0.0.0.0:8151`, the LAN address) makes every request from
    /// elsewhere need the token paysay prints at start. Port 0 picks a free port (the log
    /// says which).
    pub listen: std::net::SocketAddr,
    /// Connections served at once (1-4096); one more is answered 503 and closed, so that a
    /// flood on the shop's network cannot use up paysay's file handles.
    pub max_connections: u64,
    /// Seconds a connection may take to send a request's headers, or stay idle between
    /// requests (1-300), before it is closed.
    pub header_timeout_secs: u64,
}

impl Default for WebConfig {
    fn default() -> Self {
        WebConfig {
            enabled: true,
            listen: std::net::SocketAddr::from(([127, 0, 0, 1], DEFAULT_WEB_PORT)),
            max_connections: 64,
            header_timeout_secs: 10,
        }
    }
}

/// `[wechat]`: the web session.
#[derive(Debug, Clone, Deserialize, PartialEq)]
#[serde(default, deny_unknown_fields)]
pub struct WechatConfig {
    /// Use the WeChat web session at all. `false` for an account WeChat refuses web login
    /// to (ret 1203): no login, no QR code, no login alerts; payments come from `[intake]`.
    pub enabled: bool,
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
    /// Accept a plain `http://` `base_url` on a host other than this machine. Off: the
    /// session's cookies, sid and skey would cross the network in clear text.
    pub allow_insecure_http: bool,
    /// Least time between two requests of one kind (synccheck, webwxsync), in
    /// milliseconds, whatever the server answers: a server that answers at once must not
    /// make paysay send thousands a second (and get the account flagged).
    pub min_request_interval_ms: u64,
    /// Longest wait before logging in again when WeChat keeps ending sessions soon after
    /// login (each short session in a row doubles the wait), in seconds.
    pub max_relogin_backoff_secs: u64,
}

impl WechatConfig {
    /// `request_timeout_secs`: how long one WeChat request may take.
    pub fn request_timeout(&self) -> Duration {
        Duration::from_secs(self.request_timeout_secs)
    }

    /// `min_backoff_ms`: the first wait after a failure, for the session and re-logins.
    pub fn min_backoff(&self) -> Duration {
        Duration::from_millis(self.min_backoff_ms)
    }
}

impl Default for WechatConfig {
    fn default() -> Self {
        WechatConfig {
            enabled: true,
            base_url: None,
            qr_path: None,
            desktop_mode: false,
            long_poll_timeout_secs: 60,
            request_timeout_secs: 30,
            min_backoff_ms: 1000,
            max_backoff_secs: 60,
            allow_insecure_http: false,
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
    /// The announcement of a WeChat payment; `{amount}` becomes the amount in Chinese words.
    pub template: String,
    /// The announcement of an Alipay payment (from the phone's notices).
    pub alipay_template: String,
    /// The announcement of a 云闪付 (UnionPay) payment (from the phone's notices).
    pub unionpay_template: String,
    /// Backends in order: when one fails the next one speaks. `baidu`, `system`.
    pub backends: Vec<Backend>,
    /// Upper bound of the synthesized-audio cache, in megabytes.
    pub cache_max_mb: u64,
    /// Said when WeChat needs a new scan (the daily logout), so the owner learns it at once.
    pub login_alert: String,
    /// Said once when a payment cannot be written to the ledger (it is still announced,
    /// and recorded once the ledger can be written again).
    pub ledger_alert: String,
    /// Said once when WeChat's 今日第N笔 count shows a payment paysay never saw.
    pub gap_alert: String,
    /// Said once when the shop's phone, after sending heartbeats, falls silent for
    /// `[intake] phone_timeout_secs` (the forwarder killed in the background).
    pub phone_alert: String,
    /// A voice pack: a directory of the shop's own recordings, one file per word (the
    /// README lists the names). When set, new amounts are composed from it instead of
    /// from a bank synthesized by the first backend.
    pub clips: Option<PathBuf>,
    /// When an amount is composed from clips: `on-miss` (an amount without a cached whole
    /// phrase), `always`, or `never` (wait for a backend, as before voice banks).
    pub compose: Compose,
    pub baidu: BaiduConfig,
    pub system: SystemVoiceConfig,
}

impl Default for SpeechConfig {
    fn default() -> Self {
        SpeechConfig {
            template: "微信收款{amount}元".into(),
            alipay_template: "支付宝收款{amount}元".into(),
            unionpay_template: "云闪付收款{amount}元".into(),
            backends: vec![Backend::System],
            cache_max_mb: 64,
            login_alert: "微信需要重新登录，请扫描二维码".into(),
            ledger_alert: "账本无法写入，收款仍会播报，请检查电脑".into(),
            gap_alert: "可能漏掉了一笔收款，请在手机上核对".into(),
            phone_alert: "收款手机已离线，请检查手机".into(),
            clips: None,
            compose: Compose::OnMiss,
            baidu: BaiduConfig::default(),
            system: SystemVoiceConfig::default(),
        }
    }
}

/// When an announcement is composed from clips (`[speech] compose`).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Deserialize)]
#[serde(rename_all = "kebab-case")]
pub enum Compose {
    /// A whole phrase from the cache when there is one; otherwise composed at once, and the
    /// whole phrase synthesized in the background for the next time.
    OnMiss,
    /// Always composed: one voice for every amount (a shop's own voice pack).
    Always,
    /// Never composed: a new amount waits for a backend to synthesize it.
    Never,
}

/// A voice that can speak announcements, as named in `speech.backends`.
///
/// An enum rather than a string so that a misspelt name is refused by the TOML parser with
/// its line, and every `match` on a backend names them all.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum Backend {
    /// Baidu's text-to-speech service (needs an account).
    Baidu,
    /// The computer's own voice (espeak-ng, `say`, SAPI).
    System,
}

impl Backend {
    /// The name used in `speech.backends`.
    pub fn name(self) -> &'static str {
        match self {
            Backend::Baidu => "baidu",
            Backend::System => "system",
        }
    }
}

impl std::fmt::Display for Backend {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(self.name())
    }
}

/// Baidu's `aue`: the audio format asked for, written as Baidu's number (`aue = 6`).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Deserialize)]
#[serde(try_from = "u32")]
pub enum Aue {
    Mp3 = 3,
    Wav = 6,
}

impl TryFrom<u32> for Aue {
    type Error = String;

    fn try_from(code: u32) -> Result<Aue, String> {
        match code {
            3 => Ok(Aue::Mp3),
            6 => Ok(Aue::Wav),
            _ => Err(format!("aue must be 3 (mp3) or 6 (wav), not {code}")),
        }
    }
}

impl Aue {
    /// The number Baidu's API takes.
    pub fn code(self) -> u32 {
        self as u32
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
    pub aue: Aue,
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
            aue: Aue::Wav,
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
    /// A WAV/MP3 file to use as the chime instead of the built-in one (at most 5 MB).
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
#[derive(Debug, Clone, Deserialize, PartialEq)]
#[serde(default, deny_unknown_fields)]
pub struct LedgerConfig {
    /// SQLite file. Default: `ledger.sqlite3` in the state dir.
    pub path: Option<PathBuf>,
    /// How long a write waits for another program's lock on the ledger before the
    /// payment is retried later, in milliseconds.
    pub busy_timeout_ms: u64,
}

/// How long a ledger write waits for another program's lock (`paysay ledger`, a backup)
/// before it fails, unless `[ledger] busy_timeout_ms` says otherwise.
pub const DEFAULT_BUSY_TIMEOUT_MS: u64 = 10_000;

impl Default for LedgerConfig {
    fn default() -> Self {
        LedgerConfig {
            path: None,
            busy_timeout_ms: DEFAULT_BUSY_TIMEOUT_MS,
        }
    }
}

/// `[mqtt]`: payments published to an MQTT broker (for cloud payment speakers and
/// `paysay speaker` on other counters), and what `paysay speaker` subscribes to.
#[derive(Debug, Clone, Deserialize, PartialEq)]
#[serde(default, deny_unknown_fields)]
pub struct MqttConfig {
    /// The broker: `mqtt://host:port` (port 1883 when left out), or `mqtts://host:port`
    /// (TLS, port 8883 when left out), checked against the web's root certificates.
    pub url: String,
    /// Login name, for brokers that want one.
    pub username: Option<String>,
    /// Password; only with `username`.
    pub password: Option<String>,
    /// Where each payment is published (QoS 1). `<topic>/status` holds `online` or `offline`
    /// (retained; `offline` is also the daemon's Last Will).
    pub topic: String,
    /// The daemon's client id at the broker. Default: `paysay-` and a random suffix, new at
    /// each start. (`paysay speaker` keeps an id of its own in its ledger, so the broker
    /// keeps what is published while it reconnects.)
    pub client_id: Option<String>,
    /// Seconds a publish may wait for the broker's acknowledgement before it is sent again
    /// later.
    pub ack_timeout_secs: u64,
    /// Seconds between keep-alive pings: how soon a dead connection is noticed.
    pub keep_alive_secs: u64,
    /// A secret shared with the receivers: the daemon then signs each payment's payload
    /// (`{"sig":"<hex HMAC-SHA256>",` before the rest of the event, README, MQTT), and
    /// `paysay speaker` says only payments signed with it, since anyone who may publish to
    /// the broker could otherwise make it announce money that never came.
    pub secret: Option<String>,
}

impl Default for MqttConfig {
    fn default() -> Self {
        MqttConfig {
            url: "mqtt://127.0.0.1:1883".into(),
            username: None,
            password: None,
            topic: "paysay/payments".into(),
            client_id: None,
            ack_timeout_secs: 10,
            keep_alive_secs: 30,
            secret: None,
        }
    }
}

/// `[[webhook]]`: an HTTP endpoint that is POSTed each payment as JSON (README, Webhook).
#[derive(Debug, Clone, Deserialize, PartialEq)]
#[serde(deny_unknown_fields)]
pub struct WebhookConfig {
    /// Where each payment is POSTed.
    pub url: String,
    /// The sink's name in the log, `paysay ledger` and `paysay resend --sink`. Default: the
    /// URL's host, or host:port, then host:port/path, when another sink has it
    /// ([`Config::sinks`]). Renaming a sink (adding a second webhook on its host renames
    /// the first) leaves its undelivered events behind under the old name.
    pub name: Option<String>,
    /// A secret shared with the receiver: each request then carries `X-Paysay-Timestamp`
    /// (unix seconds) and `X-Paysay-Signature`, the hex HMAC-SHA256 of `timestamp.body`.
    pub secret: Option<String>,
    /// Milliseconds a request may take before it counts as failed and is sent again later.
    #[serde(default = "default_webhook_timeout_ms")]
    pub timeout_ms: u64,
    /// Accept a plain `http://` URL on a host other than this machine: the payer's name and
    /// the amount would cross the network in clear text.
    #[serde(default)]
    pub allow_insecure_http: bool,
}

fn default_webhook_timeout_ms() -> u64 {
    5000
}

impl WebhookConfig {
    /// The names this webhook may go by when it has no `name`, from the shortest: the
    /// URL's host, then host:port, then host:port and path (never the query, which may
    /// carry the receiver's token). [`Config::sinks`] takes the first no other sink has.
    fn default_names(&self) -> [String; 3] {
        let Ok(url) = url::Url::parse(&self.url) else {
            return ["webhook".into(), "webhook".into(), "webhook".into()];
        };
        let host = url.host_str().unwrap_or("webhook").to_string();
        let with_port = match url.port_or_known_default() {
            Some(port) => format!("{host}:{port}"),
            None => host.clone(),
        };
        let with_path = format!("{with_port}{}", url.path().trim_end_matches('/'));
        // A name is at most 64 characters; a long path is cut, not refused.
        [host, with_port, with_path.chars().take(64).collect()]
    }
}

/// A configured sink as paysay runs it: its name (under which the ledger keeps its
/// deliveries and `paysay resend --sink` knows it), its kind, and its address parsed once.
/// [`Config::sinks`] lists them; the daemon, the page, the doctor and `resend` all take
/// names and kinds from that one list.
#[derive(Debug, Clone, PartialEq)]
pub enum SinkSpec {
    Webhook {
        name: String,
        config: WebhookConfig,
    },
    Vmq {
        server: VmqServer,
        config: VmqConfig,
    },
    Mqtt {
        broker: Broker,
        config: MqttConfig,
    },
}

impl SinkSpec {
    pub fn name(&self) -> &str {
        match self {
            SinkSpec::Webhook { name, .. } => name,
            SinkSpec::Vmq { .. } => VMQ_SINK,
            SinkSpec::Mqtt { .. } => MQTT_SINK,
        }
    }

    /// What kind of receiver it is, for people: `webhook`, `V免签`, `MQTT`.
    pub fn kind(&self) -> &'static str {
        match self {
            SinkSpec::Webhook { .. } => "webhook",
            SinkSpec::Vmq { .. } => "V免签",
            SinkSpec::Mqtt { .. } => "MQTT",
        }
    }
}

/// `[vmq]`: a V免签 server (the personal-QR checkout of many web shops), told of each
/// payment as its monitor app would, with a heartbeat while WeChat is logged in.
#[derive(Debug, Clone, Deserialize, PartialEq)]
#[serde(default, deny_unknown_fields)]
pub struct VmqConfig {
    /// `host/key` exactly as the V免签 admin page shows it (`http://` unless the string
    /// starts with `https://`). Unset: no V免签.
    pub server: Option<String>,
    /// Seconds between heartbeats. V免签 stops taking orders 60 s after the last one.
    pub heartbeat_secs: u64,
    /// Milliseconds a request may take before it counts as failed.
    pub timeout_ms: u64,
}

impl Default for VmqConfig {
    fn default() -> Self {
        VmqConfig {
            server: None,
            heartbeat_secs: 30,
            timeout_ms: 5000,
        }
    }
}

impl MqttConfig {
    /// The broker's address and whether it is TLS, from `url`.
    pub fn broker(&self) -> Result<Broker, String> {
        let parsed = url::Url::parse(&self.url)
            .map_err(|e| format!("is not a URL like mqtt://host:1883: {e}"))?;
        let tls = match parsed.scheme() {
            "mqtt" => false,
            "mqtts" => true,
            other => {
                return Err(format!(
                    "must start with mqtt:// or mqtts://, not {other}://"
                ));
            }
        };
        let host = match parsed.host() {
            Some(url::Host::Domain(name)) => name.to_string(),
            Some(url::Host::Ipv4(ip)) => ip.to_string(),
            Some(url::Host::Ipv6(ip)) => ip.to_string(),
            None => return Err("names no host".into()),
        };
        let no_extras = parsed.path().trim_start_matches('/').is_empty()
            && parsed.query().is_none()
            && parsed.fragment().is_none()
            && parsed.username().is_empty()
            && parsed.password().is_none();
        if !no_extras {
            return Err(
                "must be only mqtt://host:port (the login goes in username and password)".into(),
            );
        }
        let port = parsed.port().unwrap_or(if tls { 8883 } else { 1883 });
        Ok(Broker { host, port, tls })
    }

    /// `<topic>/status`: `online` or `offline`, retained.
    pub fn status_topic(&self) -> String {
        format!("{}/status", self.topic)
    }

    fn validate(&self) -> Result<(), (&'static str, String)> {
        self.broker().map_err(|p| ("mqtt.url", p))?;
        // A publish topic holds no wildcard; the broker would drop the connection.
        if self.topic.is_empty()
            || self.topic.len() > 256
            || self.topic.contains(['#', '+'])
            || self.topic.chars().any(char::is_control)
        {
            return Err((
                "mqtt.topic",
                "must be 1 to 256 characters without #, + or control characters".into(),
            ));
        }
        if let Some(id) = &self.client_id
            && (id.is_empty() || id.len() > 64 || !id.chars().all(|c| c.is_ascii_graphic()))
        {
            return Err((
                "mqtt.client_id",
                "must be 1 to 64 visible ASCII characters".into(),
            ));
        }
        if self.password.is_some() && self.username.is_none() {
            return Err(("mqtt.password", "needs mqtt.username".into()));
        }
        // An empty key signs nothing anyone could not sign too.
        if self.secret.as_deref().is_some_and(str::is_empty) {
            return Err((
                "mqtt.secret",
                "must not be empty (leave it out for unsigned payments)".into(),
            ));
        }
        Ok(())
    }
}

/// Where an MQTT broker is, from `[mqtt] url`.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Broker {
    pub host: String,
    pub port: u16,
    /// `mqtts://`: TLS with the web's root certificates.
    pub tls: bool,
}
/// The V免签 server of `[vmq] server`, split into where it is and its key.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct VmqServer {
    /// `http://host[:port]`, no path.
    pub base: url::Url,
    /// The communication key (通讯密钥) every request is signed with.
    pub key: String,
}

impl VmqServer {
    /// `host/key`, as V免签 shows it: exactly two parts around one `/`, after an optional
    /// `http://` or `https://`.
    pub fn parse(server: &str) -> Result<VmqServer, String> {
        let server = server.trim();
        let (scheme, rest) = match server.split_once("://") {
            Some((scheme @ ("http" | "https"), rest)) => (scheme, rest),
            Some((other, _)) => {
                return Err(format!(
                    "has the scheme {other}://; V免签 speaks http or https"
                ));
            }
            None => ("http", server),
        };
        let parts: Vec<&str> = rest.split('/').collect();
        let [host, key] = parts[..] else {
            return Err(format!(
                "must be host/key as the V免签 admin page shows it (one `/`), not {} parts",
                parts.len()
            ));
        };
        if host.is_empty() || key.is_empty() {
            return Err("must be host/key with neither part empty".into());
        }
        let base = url::Url::parse(&format!("{scheme}://{host}"))
            .map_err(|e| format!("has a host paysay cannot use ({host}): {e}"))?;
        Ok(VmqServer {
            base,
            key: key.to_string(),
        })
    }
}

/// The name of the `[vmq]` sink in the ledger and `paysay resend --sink`.
pub const VMQ_SINK: &str = "vmq";

/// The name of the `[mqtt]` sink in the ledger and `paysay resend --sink`.
pub const MQTT_SINK: &str = "mqtt";

impl Config {
    /// The configured sinks, resolved: the webhooks in the order written, then V免签, then
    /// MQTT. Errors name the key to fix. Checked at load, so a loaded config's sinks
    /// resolve.
    pub fn sinks(&self) -> Result<Vec<SinkSpec>, (&'static str, String)> {
        let mut sinks = Vec::new();
        for (webhook, name) in self.webhooks.iter().zip(self.webhook_names()?) {
            sinks.push(SinkSpec::Webhook {
                name,
                config: webhook.clone(),
            });
        }
        if let Some(server) = &self.vmq.server {
            sinks.push(SinkSpec::Vmq {
                server: VmqServer::parse(server).map_err(|p| ("vmq.server", p))?,
                config: self.vmq.clone(),
            });
        }
        if let Some(mqtt) = &self.mqtt {
            sinks.push(SinkSpec::Mqtt {
                broker: mqtt.broker().map_err(|p| ("mqtt.url", p))?,
                config: mqtt.clone(),
            });
        }
        Ok(sinks)
    }

    /// The names of the configured sinks, as the ledger keeps their deliveries
    /// ([`Config::sinks`]); none for sinks that do not resolve (refused at load).
    pub fn sink_names(&self) -> Vec<String> {
        self.sinks()
            .map(|sinks| sinks.iter().map(|s| s.name().to_string()).collect())
            .unwrap_or_default()
    }

    /// Each webhook's name: its `name`, else the shortest of its default names that no
    /// other sink has (two receivers on one machine are told apart by port, then path).
    /// Only two webhooks with the same URL and no name cannot be told apart.
    fn webhook_names(&self) -> Result<Vec<String>, (&'static str, String)> {
        let mut taken: Vec<String> = self
            .webhooks
            .iter()
            .filter_map(|w| w.name.clone())
            .collect();
        taken.extend([VMQ_SINK.to_string(), MQTT_SINK.to_string()]);
        let defaults: Vec<[String; 3]> = self.webhooks.iter().map(|w| w.default_names()).collect();
        let mut level = vec![0; self.webhooks.len()];
        loop {
            let names: Vec<String> = self
                .webhooks
                .iter()
                .enumerate()
                .map(|(i, w)| {
                    w.name
                        .clone()
                        .unwrap_or_else(|| defaults[i][level[i]].clone())
                })
                .collect();
            let clashing: Vec<usize> = (0..names.len())
                .filter(|&i| self.webhooks[i].name.is_none())
                .filter(|&i| {
                    taken.contains(&names[i])
                        || names
                            .iter()
                            .enumerate()
                            .any(|(j, n)| j != i && *n == names[i])
                })
                .collect();
            if clashing.is_empty() {
                return Ok(names);
            }
            if let Some(&i) = clashing.iter().find(|&&i| level[i] == 2) {
                let same_url = self
                    .webhooks
                    .iter()
                    .enumerate()
                    .any(|(j, w)| j != i && w.url == self.webhooks[i].url);
                let problem = if same_url {
                    format!(
                        "two [[webhook]]s have the URL of {}; keep one, or give each its own name = \"…\"",
                        names[i]
                    )
                } else {
                    format!(
                        "{} names two sinks; give each [[webhook]] its own name = \"…\"",
                        names[i]
                    )
                };
                return Err(("webhook.name", problem));
            }
            for i in clashing {
                level[i] += 1;
            }
        }
    }

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
            self.validate_base_url(url)
                .map_err(|problem| invalid("wechat.base_url", &problem))?;
        }
        if !(0.0..=2.0).contains(&self.audio.volume) {
            return Err(invalid("audio.volume", "must be between 0.0 and 2.0"));
        }
        for (key, template) in [
            ("speech.template", &self.speech.template),
            ("speech.alipay_template", &self.speech.alipay_template),
            ("speech.unionpay_template", &self.speech.unionpay_template),
        ] {
            if !template.contains("{amount}") {
                return Err(invalid(key, "must contain {amount}"));
            }
        }
        if self.speech.backends.is_empty() {
            return Err(invalid("speech.backends", "must name at least one backend"));
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
        if !(80..=450).contains(&self.speech.system.rate) {
            return Err(invalid(
                "speech.system.rate",
                "must be between 80 and 450 words per minute",
            ));
        }
        for bound in self.bounds() {
            bound
                .check()
                .map_err(|problem| invalid(bound.key, &problem))?;
        }
        if let Some(mqtt) = &self.mqtt {
            mqtt.validate()
                .map_err(|(key, problem)| invalid(key, &problem))?;
        }
        self.validate_sinks(path)?;
        if !self.wechat.enabled && self.intake.is_none() {
            return Err(invalid(
                "wechat.enabled",
                "false needs an [intake] section (the shop phone's notices): paysay would hear no payment at all",
            ));
        }
        if let Some(intake) = &self.intake
            && intake.secret.trim().is_empty()
        {
            return Err(invalid(
                "intake.secret",
                "must be set: the phone's forwarder signs each notice with it",
            ));
        }
        if let Some(notify) = &self.notify {
            if notify.to.trim().is_empty() {
                return Err(invalid("notify.to", "must name filehelper or a contact"));
            }
            parse_time_of_day(&notify.daily_summary)
                .map_err(|problem| invalid("notify.daily_summary", &problem))?;
        }
        let wechat = &self.wechat;
        if wechat.min_backoff_ms > wechat.max_backoff_secs.saturating_mul(1000) {
            return Err(invalid(
                "wechat.min_backoff_ms",
                "must not be longer than wechat.max_backoff_secs",
            ));
        }
        Ok(())
    }

    /// Every number with a unit the owner can set, with the range that makes sense for it:
    /// a backoff of 2⁶³ ms is a typo, not a wish (the first retry would come in millions of
    /// years), and 0 where a wait doubles would retry a failing server in a busy loop.
    fn bounds(&self) -> Vec<Bound> {
        let (w, s) = (&self.wechat, &self.speech);
        let mut bounds = vec![
            Bound::new(
                "wechat.long_poll_timeout_secs",
                w.long_poll_timeout_secs,
                1..=600,
                "seconds",
            ),
            Bound::new(
                "wechat.request_timeout_secs",
                w.request_timeout_secs,
                1..=600,
                "seconds",
            ),
            Bound::new(
                "wechat.min_backoff_ms",
                w.min_backoff_ms,
                1..=60_000,
                "milliseconds",
            ),
            Bound::new(
                "wechat.max_backoff_secs",
                w.max_backoff_secs,
                1..=3600,
                "seconds",
            ),
            Bound::new(
                "wechat.min_request_interval_ms",
                w.min_request_interval_ms,
                1..=10_000,
                "milliseconds",
            ),
            Bound::new(
                "wechat.max_relogin_backoff_secs",
                w.max_relogin_backoff_secs,
                1..=3600,
                "seconds",
            ),
            Bound::new(
                "speech.cache_max_mb",
                s.cache_max_mb,
                1..=10_240,
                "megabytes",
            ),
            Bound::new(
                "speech.baidu.timeout_secs",
                s.baidu.timeout_secs,
                1..=120,
                "seconds",
            ),
            Bound::new(
                "speech.baidu.per",
                u64::from(s.baidu.per),
                0..=99_999,
                "(a voice number)",
            ),
            Bound::new(
                "audio.idle_close_ms",
                self.audio.idle_close_ms,
                0..=600_000,
                "milliseconds",
            ),
            Bound::new(
                "web.max_connections",
                self.web.max_connections,
                1..=4096,
                "connections",
            ),
            Bound::new(
                "web.header_timeout_secs",
                self.web.header_timeout_secs,
                1..=300,
                "seconds",
            ),
            Bound::new(
                "ledger.busy_timeout_ms",
                self.ledger.busy_timeout_ms,
                1..=120_000,
                "milliseconds",
            ),
        ];
        if let Some(i) = &self.intake {
            bounds.push(Bound::new(
                "intake.phone_timeout_secs",
                i.phone_timeout_secs,
                10..=86_400,
                "seconds",
            ));
            bounds.push(Bound::new(
                "intake.web_wait_ms",
                i.web_wait_ms,
                0..=30_000,
                "milliseconds",
            ));
            bounds.push(Bound::new(
                "intake.match_window_secs",
                i.match_window_secs,
                1..=3600,
                "seconds",
            ));
        }
        if let Some(n) = &self.notify {
            bounds.push(Bound::new(
                "notify.max_per_day",
                n.max_per_day,
                1..=50,
                "texts",
            ));
        }
        if let Some(m) = &self.mqtt {
            bounds.push(Bound::new(
                "mqtt.ack_timeout_secs",
                m.ack_timeout_secs,
                1..=300,
                "seconds",
            ));
            bounds.push(Bound::new(
                "mqtt.keep_alive_secs",
                m.keep_alive_secs,
                5..=3600,
                "seconds",
            ));
        }
        bounds
    }

    /// Every sink has a URL paysay can use and a name of its own (the ledger's delivery
    /// rows are kept by name).
    fn validate_sinks(&self, path: &Path) -> Result<(), ConfigError> {
        let invalid = |key, problem: String| ConfigError::Invalid {
            path: path.to_path_buf(),
            key,
            problem,
        };
        for bound in [
            Bound::new(
                "vmq.heartbeat_secs",
                self.vmq.heartbeat_secs,
                1..=50,
                "seconds",
            ),
            Bound::new(
                "vmq.timeout_ms",
                self.vmq.timeout_ms,
                100..=30_000,
                "milliseconds",
            ),
        ] {
            bound.check().map_err(|p| invalid(bound.key, p))?;
        }
        let mut named = Vec::new();
        for webhook in &self.webhooks {
            validate_url(&webhook.url, webhook.allow_insecure_http)
                .map_err(|p| invalid("webhook.url", p))?;
            Bound::new(
                "webhook.timeout_ms",
                webhook.timeout_ms,
                100..=60_000,
                "milliseconds",
            )
            .check()
            .map_err(|p| invalid("webhook.timeout_ms", p))?;
            let Some(name) = &webhook.name else { continue };
            if name.is_empty() || name.len() > 64 || name.contains(char::is_control) {
                return Err(invalid(
                    "webhook.name",
                    "must be 1 to 64 printable characters".into(),
                ));
            }
            if named.contains(&name) || name == VMQ_SINK || name == MQTT_SINK {
                return Err(invalid(
                    "webhook.name",
                    format!("{name} names two sinks; give each [[webhook]] its own name = \"…\""),
                ));
            }
            named.push(name);
        }
        self.sinks()
            .map_err(|(key, problem)| invalid(key, problem))?;
        Ok(())
    }

    /// A plain-http `base_url` sends the session's cookies, sid and skey in clear text: only
    /// to this machine (a simulator, a local proxy), unless the owner says otherwise.
    fn validate_base_url(&self, url: &str) -> Result<(), String> {
        validate_url(url, self.wechat.allow_insecure_http).map_err(|e| {
            e.replace("the data", "the session's keys")
                .replace("allow_insecure_http", "wechat.allow_insecure_http")
        })
    }
}

/// An http(s) URL; plain http only to this machine unless `allow_insecure_http`.
fn validate_url(url: &str, allow_insecure_http: bool) -> Result<(), String> {
    let parsed = url::Url::parse(url).map_err(|e| format!("is not a URL: {e}"))?;
    match parsed.scheme() {
        "https" => Ok(()),
        "http" if allow_insecure_http || is_loopback(&parsed) => Ok(()),
        "http" => Err(format!(
            "is plain http to {}, which would send the data in clear text; \
             use https, a loopback address, or set allow_insecure_http = true",
            parsed.host_str().unwrap_or("?")
        )),
        _ => Err("must start with http:// or https://".into()),
    }
}

/// One bounded number of the config.
struct Bound {
    key: &'static str,
    value: u64,
    range: std::ops::RangeInclusive<u64>,
    unit: &'static str,
}

impl Bound {
    /// `Err` with the range and unit when the value is outside it.
    fn check(&self) -> Result<(), String> {
        if self.range.contains(&self.value) {
            return Ok(());
        }
        Err(format!(
            "must be between {} and {} {}, not {}",
            self.range.start(),
            self.range.end(),
            self.unit,
            self.value
        ))
    }

    fn new(
        key: &'static str,
        value: u64,
        range: std::ops::RangeInclusive<u64>,
        unit: &'static str,
    ) -> Bound {
        Bound {
            key,
            value,
            range,
            unit,
        }
    }
}

/// 127.0.0.0/8, ::1 and `localhost`: traffic that never leaves this machine.
pub fn is_loopback(url: &url::Url) -> bool {
    match url.host() {
        Some(url::Host::Ipv4(ip)) => ip.is_loopback(),
        Some(url::Host::Ipv6(ip)) => ip.is_loopback(),
        Some(url::Host::Domain(name)) => name.eq_ignore_ascii_case("localhost"),
        None => false,
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
        assert_eq!(c.speech.backends, vec![Backend::System]);
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
        assert!(err.contains("line 2"), "{err}");
        let err = parse("[audio]\nvolume = \"loud\"\n")
            .unwrap_err()
            .to_string();
        assert!(err.contains("line 2"), "{err}");
    }

    #[test]
    fn aue_is_baidus_number() {
        let c = parse("[speech.baidu]\naue = 3\n").unwrap();
        assert_eq!(c.speech.baidu.aue, Aue::Mp3);
        let err = parse("[speech.baidu]\nper = 0\naue = 5\n")
            .unwrap_err()
            .to_string();
        assert!(err.contains("not 5"), "{err}");
        assert!(err.contains("line 3"), "{err}");
    }

    #[test]
    fn zero_backoff_is_refused() {
        let err = parse("[wechat]\nmin_backoff_ms = 0\n")
            .unwrap_err()
            .to_string();
        assert!(err.contains("wechat.min_backoff_ms"), "{err}");
    }

    #[test]
    fn ledger_busy_timeout_is_bounded() {
        for bad in ["0", "9223372036854775807"] {
            let err = parse(&format!("[ledger]\nbusy_timeout_ms = {bad}\n"))
                .unwrap_err()
                .to_string();
            assert!(err.contains("ledger.busy_timeout_ms"), "{err}");
        }
        let c = parse("[ledger]\nbusy_timeout_ms = 250\n").unwrap();
        assert_eq!(c.ledger.busy_timeout_ms, 250);
    }

    #[test]
    fn huge_or_zero_numbers_are_refused_naming_key_and_range() {
        for (text, key, range) in [
            (
                "[wechat]\nmin_backoff_ms = 9223372036854775807\n",
                "wechat.min_backoff_ms",
                "between 1 and 60000",
            ),
            (
                "[wechat]\nmax_backoff_secs = 0\n",
                "wechat.max_backoff_secs",
                "between 1 and 3600",
            ),
            (
                "[wechat]\nlong_poll_timeout_secs = 100000\n",
                "wechat.long_poll_timeout_secs",
                "between 1 and 600",
            ),
            (
                "[wechat]\nrequest_timeout_secs = 0\n",
                "wechat.request_timeout_secs",
                "between 1 and 600",
            ),
            (
                "[audio]\nidle_close_ms = 18446744073709551615\n",
                "audio.idle_close_ms",
                "between 0 and 600000",
            ),
            (
                "[speech]\ncache_max_mb = 0\n",
                "speech.cache_max_mb",
                "between 1 and 10240",
            ),
            (
                "[speech.baidu]\ntimeout_secs = 86400\n",
                "speech.baidu.timeout_secs",
                "between 1 and 120",
            ),
        ] {
            let err = parse(text).unwrap_err().to_string();
            assert!(err.contains(key) && err.contains(range), "{text}: {err}");
        }
        let err = parse("[wechat]\nmin_backoff_ms = 60000\nmax_backoff_secs = 30\n")
            .unwrap_err()
            .to_string();
        assert!(err.contains("wechat.min_backoff_ms"), "{err}");
        // The edges of each range are accepted.
        parse("[wechat]\nmin_backoff_ms = 60000\nmax_backoff_secs = 3600\nlong_poll_timeout_secs = 1\n[audio]\nidle_close_ms = 0\n").unwrap();
    }

    #[test]
    fn plain_http_only_to_loopback_unless_allowed() {
        for url in [
            "http://127.0.0.1:9",
            "http://127.8.9.10/",
            "http://[::1]:8080",
            "http://localhost:8080",
            "http://LOCALHOST",
            "https://wx.example.com",
        ] {
            let text = format!("[wechat]\nbase_url = \"{url}\"\n");
            assert!(parse(&text).is_ok(), "{url} refused");
        }
        for url in [
            "http://192.168.1.10:8080",
            "http://wx.example.com",
            "http://127.0.0.1.example.com",
            "http://[::2]/",
            "http://localhost.example.com",
        ] {
            let text = format!("[wechat]\nbase_url = \"{url}\"\n");
            let err = parse(&text).unwrap_err().to_string();
            assert!(
                err.contains("wechat.base_url") && err.contains("allow_insecure_http"),
                "{url}: {err}"
            );
            let allowed = format!("{text}allow_insecure_http = true\n");
            assert!(parse(&allowed).is_ok(), "{url} refused though allowed");
        }
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
    fn mqtt_is_off_unless_its_section_is_there() {
        assert_eq!(parse("").unwrap().mqtt, None);
        let c = parse("[mqtt]\n").unwrap();
        let mqtt = c.mqtt.unwrap();
        assert_eq!(mqtt.topic, "paysay/payments");
        assert_eq!(mqtt.status_topic(), "paysay/payments/status");
        let broker = mqtt.broker().unwrap();
        assert_eq!(
            (broker.host.as_str(), broker.port, broker.tls),
            ("127.0.0.1", 1883, false)
        );
    }

    #[test]
    fn mqtt_url_names_a_broker_and_nothing_else() {
        let broker = |url: &str| {
            parse(&format!("[mqtt]\nurl = \"{url}\"\n")).map(|c| c.mqtt.unwrap().broker().unwrap())
        };
        let b = broker("mqtts://broker.example.com").unwrap();
        assert_eq!(
            (b.host.as_str(), b.port, b.tls),
            ("broker.example.com", 8883, true)
        );
        let b = broker("mqtt://[::1]:1884").unwrap();
        assert_eq!((b.host.as_str(), b.port), ("::1", 1884));
        for bad in [
            "http://broker:1883",
            "mqtt://",
            "broker:1883",
            "mqtt://user:secret@broker:1883",
            "mqtt://broker:1883/topic",
        ] {
            let err = broker(bad).unwrap_err().to_string();
            assert!(err.contains("mqtt.url"), "{bad}: {err}");
        }
    }

    #[test]
    fn mqtt_keys_are_checked() {
        for (text, key) in [
            ("topic = \"shop/#\"", "mqtt.topic"),
            ("topic = \"\"", "mqtt.topic"),
            ("client_id = \"a b\"", "mqtt.client_id"),
            ("password = \"x\"", "mqtt.password"),
            ("ack_timeout_secs = 0", "mqtt.ack_timeout_secs"),
            ("keep_alive_secs = 86400", "mqtt.keep_alive_secs"),
            ("secret = \"\"", "mqtt.secret"),
        ] {
            let err = parse(&format!("[mqtt]\n{text}\n")).unwrap_err().to_string();
            assert!(err.contains(key), "{text}: {err}");
        }
        let err = parse("[mqtt]\nqos = 2\n").unwrap_err().to_string();
        assert!(err.contains("qos") && err.contains("line 2"), "{err}");
    }

    /// Two receivers on one machine, as a new user would set them up (different ports, or
    /// different paths), need no `name`: each gets the shortest default no other sink has.
    #[test]
    fn webhooks_on_one_host_get_names_of_their_own() {
        let hooks = |urls: &[&str]| {
            let text: String = urls
                .iter()
                .map(|u| format!("[[webhook]]\nurl = \"{u}\"\n"))
                .collect();
            parse(&text).map(|c| c.sink_names())
        };
        assert_eq!(
            hooks(&["http://127.0.0.1:9001/hook", "http://127.0.0.1:9002/hook"]).unwrap(),
            ["127.0.0.1:9001", "127.0.0.1:9002"]
        );
        assert_eq!(
            hooks(&[
                "https://a.example.com/1?token=s",
                "https://a.example.com/2",
                "https://b.example.com/x"
            ])
            .unwrap(),
            [
                "a.example.com:443/1",
                "a.example.com:443/2",
                "b.example.com"
            ]
        );
        // A webhook alone keeps the host, the name it had before.
        assert_eq!(
            hooks(&["https://a.example.com/1"]).unwrap(),
            ["a.example.com"]
        );
        // A named one keeps its name; the other gives way.
        let c = parse(
            "[[webhook]]\nurl = \"http://127.0.0.1:1/h\"\nname = \"127.0.0.1\"\n[[webhook]]\nurl = \"http://127.0.0.1:2/h\"\n",
        )
        .unwrap();
        assert_eq!(c.sink_names(), ["127.0.0.1", "127.0.0.1:2"]);
        let err = hooks(&["https://a.example.com/1", "https://a.example.com/1"]).unwrap_err();
        assert!(
            err.to_string().contains("same") || err.to_string().contains("URL"),
            "{err}"
        );
    }

    #[test]
    fn sinks_need_usable_urls_and_names_of_their_own() {
        let c = parse(
            "[vmq]\nserver = \"pay.example.com:8080/k1\"\n\n[[webhook]]\nurl = \"https://a.example.com/h\"\n\n[[webhook]]\nurl = \"http://127.0.0.1:9/h\"\nname = \"local\"\nsecret = \"s\"\n",
        )
        .unwrap();
        assert_eq!(c.sink_names(), ["a.example.com", "local", "vmq"]);
        assert_eq!(c.webhooks[0].timeout_ms, 5000);
        for (text, key) in [
            ("[vmq]\nserver = \"pay.example.com\"\n", "vmq.server"),
            (
                "[vmq]\nserver = \"h/k\"\nheartbeat_secs = 90\n",
                "vmq.heartbeat_secs",
            ),
            (
                "[[webhook]]\nurl = \"http://shop.example.com/h\"\n",
                "webhook.url",
            ),
            ("[[webhook]]\nurl = \"ftp://127.0.0.1/h\"\n", "webhook.url"),
            (
                "[[webhook]]\nurl = \"https://a.example.com/1\"\n[[webhook]]\nurl = \"https://a.example.com/1\"\n",
                "webhook.name",
            ),
            (
                "[[webhook]]\nurl = \"https://a.example.com/1\"\nname = \"x\"\n[[webhook]]\nurl = \"https://b.example.com/1\"\nname = \"x\"\n",
                "webhook.name",
            ),
            (
                "[vmq]\nserver = \"h/k\"\n[[webhook]]\nurl = \"https://v.example.com\"\nname = \"vmq\"\n",
                "webhook.name",
            ),
            (
                "[[webhook]]\nurl = \"https://a.example.com\"\ntimeout_ms = 0\n",
                "webhook.timeout_ms",
            ),
        ] {
            let err = parse(text).unwrap_err().to_string();
            assert!(err.contains(key), "{text}: {err}");
        }
        let err = parse("[[webhook]]\nurl = \"https://a.example.com\"\nsecrett = \"x\"\n")
            .unwrap_err()
            .to_string();
        assert!(err.contains("secrett") && err.contains("line 3"), "{err}");
        parse("[[webhook]]\nurl = \"http://shop.example.com/h\"\nallow_insecure_http = true\n")
            .unwrap();
    }

    #[test]
    fn web_page_listens_on_loopback_unless_told() {
        let c = parse("").unwrap();
        assert!(c.web.enabled);
        assert_eq!(c.web.listen.to_string(), "127.0.0.1:8151");
        let c = parse("[web]\nlisten = \"0.0.0.0:0\"\nenabled = false\n").unwrap();
        assert!(!c.web.enabled);
        assert_eq!(c.web.listen.port(), 0);
        let err = parse("[web]\nlisten = \"shop-pc:8151\"\n")
            .unwrap_err()
            .to_string();
        assert!(err.contains("line 2") && err.contains("listen"), "{err}");
    }

    #[test]
    fn missing_default_file_is_defaults_but_explicit_is_error() {
        let p = Path::new("/nonexistent/paysay/config.toml");
        assert!(Config::load(p, false).is_ok());
        assert!(Config::load(p, true).is_err());
    }
}
