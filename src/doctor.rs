//! `paysay doctor`: every part paysay needs, checked the way the daemon uses it, one line
//! each, with a fix for each failure. It is what a shop owner runs (or is asked to run over
//! the phone) when the counter stays silent, so each line names the file or device it looked
//! at, and no check can hang or panic the whole report.

use std::fmt;
use std::path::Path;
use std::time::Duration;

use crate::audio::OUTPUTS;
use crate::config::{
    Backend, Broker, Config, ConfigError, MqttConfig, SinkSpec, SpeechConfig, VmqConfig, VmqServer,
    WebhookConfig,
};
use crate::events::{DeliveryError, PaymentEvent};
use crate::ledger::{Ledger, LedgerError, report};
use crate::money::Yuan;
use crate::paths::Paths;
use crate::service::{Manager, Role};
use crate::session::store;
use crate::sinks::{Vmq, Webhook};
use crate::speech::{ClipCache, Speech, TtsError, announcement, synthesizer};
use crate::text::Escaped;

/// How long the sound device may take to open and play a moment of silence: a real device
/// answers in milliseconds, a wedged sound server never.
const AUDIO_TIMEOUT: Duration = Duration::from_secs(10);
/// How long a voice may take for one short announcement (the system voice's own limit is
/// 30 s, Baidu's is configured lower).
const VOICE_TIMEOUT: Duration = Duration::from_secs(40);
/// The test announcement: one yuan, through the configured template.
const TEST_FEN: u64 = 100;
/// A saved session older than this has most likely been ended by WeChat.
const SESSION_STALE: Duration = Duration::from_secs(2 * 24 * 3600);

/// The outcome of one check.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Status {
    /// Works.
    Ok,
    /// Not a fault, but something to know (no login yet, service not installed).
    Note,
    /// Broken: paysay will not announce payments until this is fixed.
    Fail,
}

/// One line of the report.
#[derive(Debug, Clone)]
pub struct Check {
    /// What was checked: `config`, `audio`, `voice baidu`…
    pub name: String,
    pub status: Status,
    /// What was found.
    pub detail: String,
    /// What to do about it (failures and notes).
    pub fix: Option<String>,
}

impl Check {
    fn ok(name: impl Into<String>, detail: impl Into<String>) -> Check {
        Check {
            name: name.into(),
            status: Status::Ok,
            detail: detail.into(),
            fix: None,
        }
    }

    fn note(name: impl Into<String>, detail: impl Into<String>, fix: impl Into<String>) -> Check {
        Check {
            status: Status::Note,
            fix: Some(fix.into()),
            ..Check::ok(name, detail)
        }
    }

    fn fail(name: impl Into<String>, detail: impl Into<String>, fix: impl Into<String>) -> Check {
        Check {
            status: Status::Fail,
            fix: Some(fix.into()),
            ..Check::ok(name, detail)
        }
    }
}

impl fmt::Display for Check {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let mark = match self.status {
            Status::Ok => "✓",
            Status::Note => "!",
            Status::Fail => "✗",
        };
        // Multi-line details (toml's errors quote the offending line) stay in their column.
        let detail = self.detail.replace('\n', &format!("\n  {:<13} ", ""));
        write!(f, "{mark} {:<13} {detail}", self.name)?;
        if let Some(fix) = &self.fix {
            let label = if self.status == Status::Fail {
                "fix"
            } else {
                "hint"
            };
            write!(f, "\n  {:<13} {label}: {fix}", "")?;
        }
        Ok(())
    }
}

/// Every check, in the order paysay needs the parts.
#[derive(Debug, Clone, Default)]
pub struct Report {
    pub checks: Vec<Check>,
}

impl Report {
    /// How many checks failed.
    pub fn failures(&self) -> usize {
        self.checks
            .iter()
            .filter(|c| c.status == Status::Fail)
            .count()
    }
}

/// Runs every check against the config at `config_file` (`explicit` when named with
/// `--config`). Each check is printed through `progress` as soon as it is done, because
/// the audio and voice checks take a moment.
///
/// Call it before the process starts other threads: the ledger check reads the local time
/// zone, which `time` refuses to do in a multi-threaded process.
pub fn run(config_file: &Path, explicit: bool, progress: &mut dyn FnMut(&Check)) -> Report {
    let mut report = Report::default();
    let mut add = |check: Check| {
        progress(&check);
        report.checks.push(check);
    };
    let (check, config) = check_config(config_file, explicit);
    add(check);
    let paths = match Paths::new(config_file, &config) {
        Ok(paths) => paths,
        Err(e) => {
            add(Check::fail(
                "directories",
                e.to_string(),
                "set HOME to the shop owner's home directory",
            ));
            return report;
        }
    };
    add(check_writable("state dir", &paths.state_dir));
    add(check_writable("cache dir", &paths.cache_dir));
    add(check_session(&paths));
    add(check_ledger(&paths.ledger_db()));
    add(check_audio());
    if cfg!(target_os = "linux") {
        add(check_espeak(&config.speech));
    }
    for check in check_voices(&config.speech) {
        add(check);
    }
    add(check_bank(&config.speech, &paths));
    for check in check_sinks(&config) {
        add(check);
    }
    if let Some(intake) = &config.intake {
        add(check_intake(intake));
    }
    add(check_service());
    report
}

/// The config file parses; on an error the remaining checks use the defaults.
fn check_config(path: &Path, explicit: bool) -> (Check, Config) {
    // Absolute, so the owner reading the report over the phone knows which file it was.
    let shown = std::path::absolute(path).unwrap_or_else(|_| path.to_path_buf());
    match Config::load(path, explicit) {
        Ok(config) if path.exists() => (Check::ok("config", shown.display().to_string()), config),
        Ok(config) => (
            Check::ok(
                "config",
                format!(
                    "no file at {}: every setting at its default",
                    shown.display()
                ),
            ),
            config,
        ),
        Err(e) => {
            let fix = match e {
                ConfigError::Read { .. } => {
                    "check the file named with --config exists and is readable"
                }
                _ => {
                    "correct the key and line named above; config.example.toml documents every key"
                }
            };
            let detail = format!("{e} (the checks below use the defaults)");
            (Check::fail("config", detail, fix), Config::default())
        }
    }
}

/// `dir` exists (or can be made) and a file can be written in it.
fn check_writable(name: &str, dir: &Path) -> Check {
    let written = std::fs::create_dir_all(dir).and_then(|()| tempfile::tempfile_in(dir));
    match written {
        Ok(_) => Check::ok(name, format!("{} is writable", dir.display())),
        Err(e) => Check::fail(
            name,
            format!("cannot write in {}: {e}", dir.display()),
            format!(
                "make it the shop owner's: `sudo chown -R $USER {}`, or point XDG_STATE_HOME / XDG_CACHE_HOME elsewhere",
                dir.display()
            ),
        ),
    }
}

/// The saved WeChat session, and how long ago it was last saved.
fn check_session(paths: &Paths) -> Check {
    let file = paths.session_file();
    let login_hint = format!(
        "run `paysay login` and scan the QR code (a running service saves it as {})",
        paths.qr_png().display()
    );
    match store::load(&file) {
        Ok(None) => Check::note(
            "session",
            format!("no saved WeChat session in {}", file.display()),
            login_hint,
        ),
        Ok(Some(session)) => {
            let age = Duration::from_secs(
                u64::try_from(crate::now_unix().saturating_sub(session.saved_at)).unwrap_or(0),
            );
            let detail = format!(
                "logged in as {}, last saved {} ago",
                session.nick_name,
                human_age(age)
            );
            if age > SESSION_STALE {
                Check::note(
                    "session",
                    detail,
                    format!("WeChat has most likely ended it by now; {login_hint}"),
                )
            } else {
                Check::ok("session", detail)
            }
        }
        Err(e) => Check::fail(
            "session",
            e.to_string(),
            format!("make {} readable by the shop owner", file.display()),
        ),
    }
}

/// The ledger opens, can be written and read; today's payments are counted. A ledger not
/// created yet is fine (the daemon creates it) and is not created here.
fn check_ledger(path: &Path) -> Check {
    if !path.exists() {
        return Check::ok(
            "ledger",
            format!("{} not created yet (paysay run creates it)", path.display()),
        );
    }
    let offset_at = |unix| report::local_offset_at(unix).unwrap_or(time::UtcOffset::UTC);
    let today = report::today(&offset_at);
    let (from, to) = report::day_range(today, today, &offset_at);
    let writable = |l: Ledger| {
        if l.is_writable() {
            Ok(l)
        } else {
            Err(LedgerError::ReadOnly {
                path: path.to_path_buf(),
            })
        }
    };
    match Ledger::open(path)
        .and_then(writable)
        .and_then(|l| l.entries(from, to))
    {
        Ok(entries) => {
            let total = report::total_fen(&entries);
            let count = match entries.len() {
                1 => "1 payment".to_string(),
                n => format!("{n} payments"),
            };
            Check::ok(
                "ledger",
                format!("{}: {count} today, {} yuan", path.display(), Yuan(total)),
            )
        }
        Err(e) => Check::fail(
            "ledger",
            e.to_string(),
            format!("{} ({})", e.advice(), path.display()),
        ),
    }
}

/// Opens the default sound output the way the daemon does and plays a moment of silence
/// ([`crate::audio::probe`]); a sound stack that never answers costs [`AUDIO_TIMEOUT`], not
/// the whole report.
fn check_audio() -> Check {
    match crate::audio::probe(AUDIO_TIMEOUT) {
        Ok(()) => Check::ok(
            "audio",
            format!("the default output ({}) opened and played", OUTPUTS[0].0),
        ),
        Err(e) => Check::fail("audio", e.to_string(), audio_fix()),
    }
}

fn audio_fix() -> String {
    if cfg!(target_os = "macos") {
        "connect a speaker and choose it in System Settings → Sound → Output".into()
    } else {
        "check the speaker is plugged in and switched on; `aplay -l` must list a sound card \
         (none: the driver is missing); your user must be in group `audio` \
         (`sudo usermod -aG audio $USER`, then log in again); with PipeWire or PulseAudio, \
         `systemctl --user status pipewire pulseaudio` must show one running for your user"
            .into()
    }
}

/// The speech program of the system voice is installed (Linux: espeak-ng).
fn check_espeak(speech: &SpeechConfig) -> Check {
    let program = speech
        .system
        .command
        .clone()
        .unwrap_or_else(|| "espeak-ng".into());
    let name = format!("{}", program.display());
    let ran = std::process::Command::new(&program)
        .arg("--version")
        .stdin(std::process::Stdio::null())
        .output();
    let used = speech.backends.contains(&Backend::System);
    match ran {
        Ok(out) if out.status.success() => {
            let version = String::from_utf8_lossy(&out.stdout);
            let first = version.lines().next().unwrap_or_default();
            let first = first.split_whitespace().collect::<Vec<_>>().join(" ");
            Check::ok("espeak-ng", format!("{name}: {first}"))
        }
        Ok(out) => Check::fail(
            "espeak-ng",
            format!("{name} --version failed ({})", out.status),
            "reinstall it: `sudo apt install --reinstall espeak-ng`",
        ),
        Err(e) => {
            let detail = format!("{name} cannot be run: {e}");
            let fix = "install it: `sudo apt install espeak-ng`, or set speech.system.command";
            if used {
                Check::fail("espeak-ng", detail, fix)
            } else {
                Check::note("espeak-ng", detail, fix)
            }
        }
    }
}

/// A runtime for the checks that talk to something; the check `name` fails without one.
fn check_runtime(name: &'static str) -> Result<tokio::runtime::Runtime, Check> {
    tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
        .map_err(|e| {
            Check::fail(
                name,
                format!("cannot start the async runtime: {e}"),
                "free some memory and file descriptors, then run paysay doctor again",
            )
        })
}

/// Each configured voice speaks the test announcement, into a throwaway cache so the check
/// really synthesizes and never fills the shop's cache.
/// The voice bank new amounts are composed from: a voice pack that must be complete, or
/// the bank the daemon builds in the cache dir.
fn check_bank(speech: &SpeechConfig, paths: &Paths) -> Check {
    let label = "voice bank";
    match Speech::from_config(speech, paths.tts_cache_dir()) {
        Ok(chain) => match chain.bank_status() {
            Ok(detail) => Check::ok(label, detail),
            Err(detail) => Check::note(
                label,
                format!("{detail}: new amounts wait for a voice until it is built"),
                "the running daemon builds it by itself; `paysay voice build` builds it now",
            ),
        },
        Err(TtsError::Pack(e)) => Check::fail(
            label,
            e.to_string(),
            "add or fix the files named (the README lists every file name), or remove [speech] clips",
        ),
        Err(e) => Check::fail(label, e.to_string(), "check [speech] in the config"),
    }
}

fn check_voices(speech: &SpeechConfig) -> Vec<Check> {
    let runtime = match check_runtime("voices") {
        Ok(runtime) => runtime,
        Err(failed) => return vec![failed],
    };
    speech
        .backends
        .iter()
        .map(|&backend| runtime.block_on(check_voice(speech, backend)))
        .collect()
}

async fn check_voice(speech: &SpeechConfig, backend: Backend) -> Check {
    let label = format!("voice {backend}");
    if backend == Backend::Baidu
        && (speech.baidu.api_key.is_empty() || speech.baidu.secret_key.is_empty())
    {
        return Check::fail(
            label,
            "not configured: set api_key/secret_key",
            "put the keys of a Baidu AI speech application in [speech.baidu], or remove \"baidu\" from speech.backends",
        );
    }
    let voice = match synthesizer(backend, speech) {
        Ok(voice) => voice,
        Err(e) => return Check::fail(label, e.to_string(), voice_fix(backend)),
    };
    let cache_dir = match tempfile::tempdir() {
        Ok(dir) => dir,
        Err(e) => return Check::fail(label, format!("no temporary dir: {e}"), "free disk space"),
    };
    let text = announcement(&speech.template, TEST_FEN);
    let chain = Speech::new(
        vec![voice],
        ClipCache::new(cache_dir.path().to_path_buf(), u64::MAX),
        &speech.template,
    );
    match tokio::time::timeout(VOICE_TIMEOUT, chain.announce(TEST_FEN)).await {
        Ok(Ok(_)) => Check::ok(label, format!("spoke {text:?}")),
        Ok(Err(TtsError::AllFailed { failures, .. })) => {
            Check::fail(label, failures.join("; "), voice_fix(backend))
        }
        Ok(Err(e)) => Check::fail(label, e.to_string(), voice_fix(backend)),
        Err(_) => Check::fail(
            label,
            format!("no audio within {} s", VOICE_TIMEOUT.as_secs()),
            voice_fix(backend),
        ),
    }
}

fn voice_fix(backend: Backend) -> &'static str {
    match backend {
        Backend::Baidu => {
            "check api_key/secret_key and that this computer reaches aip.baidubce.com; \
             meanwhile the next voice in speech.backends speaks"
        }
        Backend::System => {
            "install the speech program (Linux: `sudo apt install espeak-ng`), and check that \
             speech.system.voice speaks Chinese (`espeak-ng --voices=cmn`)"
        }
    }
}

/// Whether paysay is installed as a service (only the file: asking the manager needs a
/// user session that a doctor run over ssh may not have).
fn check_service() -> Check {
    let Some(file) = Manager::native().and_then(|m| m.service_file(Role::Daemon).ok()) else {
        return Check::ok("service", "not available on this system");
    };
    if file.exists() {
        Check::ok("service", format!("installed: {}", file.display()))
    } else {
        Check::note(
            "service",
            "not installed",
            "`paysay service install` runs paysay unattended, started at login and after a crash",
        )
    }
}

/// `90 s`, `12 min`, `5 h`, `3 days`.
fn human_age(age: Duration) -> String {
    let secs = age.as_secs();
    match secs {
        0..120 => format!("{secs} s"),
        120..7200 => format!("{} min", secs / 60),
        7200..172_800 => format!("{} h", secs / 3600),
        _ => format!("{} days", secs / 86_400),
    }
}

/// Each payment-event sink answers as it must: a webhook accepts a signed test event (an
/// event with `"test": true`, id `test-…` and amount 0, which receivers ignore), V免签
/// answers a heartbeat with code 1 (it then counts the monitor as online for 60 s), and the
/// MQTT broker accepts a connection with `[mqtt]`'s login (nothing is published).
fn check_sinks(config: &Config) -> Vec<Check> {
    let specs = match config.sinks() {
        Ok(specs) if specs.is_empty() => return Vec::new(),
        Ok(specs) => specs,
        Err((key, problem)) => {
            return vec![Check::fail(
                "sinks",
                format!("{key} {problem}"),
                "fix it in the config",
            )];
        }
    };
    let runtime = match check_runtime("sinks") {
        Ok(runtime) => runtime,
        Err(failed) => return vec![failed],
    };
    specs
        .iter()
        .map(|spec| {
            runtime.block_on(async {
                match spec {
                    SinkSpec::Webhook { name, config } => check_webhook(name, config).await,
                    SinkSpec::Vmq { server, config } => check_vmq(server, config).await,
                    SinkSpec::Mqtt { broker, config } => check_mqtt(broker, config).await,
                }
            })
        })
        .collect()
}

/// The test event a webhook is sent: the shape of a real one, marked so that no receiver
/// takes it for money.
pub fn test_event() -> serde_json::Value {
    let mut event = PaymentEvent {
        id: format!("test-{}", crate::now_unix()),
        msg_id: "paysay-doctor".into(),
        amount_fen: 0,
        amount: Yuan(0).to_string(),
        kind: "collection",
        wallet: "wechat",
        payer: None,
        remark: Some("paysay doctor: a test, not a payment".into()),
        account: "paysay".into(),
        time: crate::rfc3339(crate::now_unix(), time::UtcOffset::UTC),
    }
    .to_json();
    event["test"] = serde_json::Value::Bool(true);
    event
}

async fn check_webhook(name: &str, config: &WebhookConfig) -> Check {
    let label = format!("webhook {name}");
    let signed = if config.secret.is_some() {
        "signed "
    } else {
        ""
    };
    let sent = match Webhook::new(name, config) {
        Ok(webhook) => webhook.post(&test_event()).await,
        Err(e) => return Check::fail(label, e.to_string(), "check [[webhook]] in the config"),
    };
    match sent {
        // The host only: a URL's query may carry the receiver's token.
        Ok(()) => {
            let host = url::Url::parse(&config.url)
                .ok()
                .and_then(|u| u.host_str().map(String::from))
                .unwrap_or_default();
            Check::ok(label, format!("{host} accepted a {signed}test event"))
        }
        Err(DeliveryError::Rejected(why)) => Check::fail(
            label,
            Escaped(why).to_string(),
            "the receiver refuses paysay's events: check its URL and that its secret is the one in [[webhook]] secret",
        ),
        Err(DeliveryError::Transient(why)) => Check::fail(
            label,
            Escaped(why).to_string(),
            "the receiver is not reachable or failing: check that it runs and the URL; events wait in the ledger meanwhile",
        ),
    }
}

/// `[intake]`: the port is free for `paysay run`, or a running paysay's intake answers on
/// it. The probe is a heartbeat signed *wrong*, answered with V免签's sign refusal: a right
/// one would tell the running daemon that the phone is there, and its silence afterwards
/// that the phone went offline.
fn check_intake(intake: &crate::config::IntakeConfig) -> Check {
    let label = "intake";
    let fix_port = "another program holds the port: stop it, or set [intake] listen to a free port (and tell the phone's app)";
    match std::net::TcpListener::bind(intake.listen) {
        Ok(_) => {
            return Check::ok(
                label,
                format!(
                    "{} is free: paysay run listens there for the phone's notices",
                    intake.listen
                ),
            );
        }
        Err(e) if e.kind() != std::io::ErrorKind::AddrInUse => {
            return Check::fail(
                label,
                format!("cannot listen on {}: {e}", intake.listen),
                fix_port,
            );
        }
        Err(_) => {}
    }
    let runtime = match check_runtime("intake") {
        Ok(runtime) => runtime,
        Err(failed) => return failed,
    };
    let port = intake.listen.port();
    let host = if intake.listen.ip().is_unspecified() {
        std::net::IpAddr::from([127, 0, 0, 1])
    } else {
        intake.listen.ip()
    };
    let t = crate::sinks::vmq::now_ms().to_string();
    let url = format!(
        "http://{}/appHeart?t={t}&sign=paysay-doctor",
        std::net::SocketAddr::new(host, port)
    );
    let answer = runtime.block_on(async {
        let reply = reqwest::Client::new()
            .get(&url)
            .timeout(std::time::Duration::from_secs(5))
            .send()
            .await
            .ok()?;
        crate::body::read_capped(reply, 4096).await.ok()
    });
    match answer.and_then(|body| serde_json::from_slice::<serde_json::Value>(&body).ok()) {
        Some(v) if v["code"] == -1 && v["msg"] == "签名校验不通过" => Check::ok(
            label,
            format!(
                "a running paysay hears the phone on {} (it refused the doctor's unsigned heartbeat, as it should)",
                intake.listen
            ),
        ),
        _ => Check::fail(
            label,
            format!("{} is taken, and not by paysay's intake", intake.listen),
            fix_port,
        ),
    }
}

async fn check_vmq(server: &VmqServer, config: &VmqConfig) -> Check {
    let vmq = match Vmq::new(server.clone(), config) {
        Ok(vmq) => vmq,
        Err(e) => return Check::fail("vmq", e.to_string(), "check [vmq] server in the config"),
    };
    match vmq.heartbeat().await {
        Ok(()) => Check::ok("vmq", "the V免签 server answered a heartbeat with code 1"),
        Err(e) => Check::fail(
            "vmq",
            Escaped(&e).to_string(),
            "copy [vmq] server again from the V免签 admin page (host/key), and check this computer's clock",
        ),
    }
}

/// `[mqtt]`: the broker accepts a connection with the configured login, within
/// `ack_timeout_secs`. A client id of its own, a clean session and no Last Will, so that
/// neither a running daemon's connection nor its `<topic>/status` is touched.
async fn check_mqtt(broker: &Broker, config: &MqttConfig) -> Check {
    use rumqttc::{Event, Incoming};
    let label = "mqtt";
    let id = crate::mqtt::random_client_id("paysay-doctor");
    let options = match crate::mqtt::options(config, broker, &id, true) {
        Ok(options) => options,
        Err(e) => return Check::fail(label, e.to_string(), "check [mqtt] url in the config"),
    };
    let (client, mut events) = rumqttc::AsyncClient::new(options, 10);
    let wait = Duration::from_secs(config.ack_timeout_secs);
    let answered = tokio::time::timeout(wait, async {
        loop {
            match events.poll().await {
                Ok(Event::Incoming(Incoming::ConnAck(_))) => return Ok(()),
                Ok(_) => {}
                Err(e) => return Err(e),
            }
        }
    })
    .await;
    let _ = client.try_disconnect();
    let tls = if broker.tls { " over TLS" } else { "" };
    match answered {
        Ok(Ok(())) => Check::ok(
            label,
            format!("{}:{} accepted a connection{tls}", broker.host, broker.port),
        ),
        Ok(Err(e)) => Check::fail(
            label,
            Escaped(crate::error_chain(&e)).to_string(),
            "check that the broker runs, [mqtt] url, and username/password if it asks for a login; events wait in the ledger meanwhile",
        ),
        Err(_) => Check::fail(
            label,
            format!(
                "{}:{} did not answer within {} s",
                broker.host,
                broker.port,
                wait.as_secs()
            ),
            "check that the broker runs and that no firewall drops the port; events wait in the ledger meanwhile",
        ),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn ages_read_naturally() {
        assert_eq!(human_age(Duration::from_secs(59)), "59 s");
        assert_eq!(human_age(Duration::from_secs(600)), "10 min");
        assert_eq!(human_age(Duration::from_secs(5 * 3600)), "5 h");
        assert_eq!(human_age(Duration::from_secs(3 * 86_400)), "3 days");
    }

    #[test]
    fn a_failure_shows_its_fix_under_it() {
        let check = Check::fail("audio", "no device", "plug it in");
        assert_eq!(
            check.to_string(),
            "✗ audio         no device\n                fix: plug it in"
        );
        assert_eq!(Check::ok("config", "/x").to_string(), "✓ config        /x");
    }

    #[tokio::test]
    async fn baidu_without_keys_is_not_configured() {
        let speech = SpeechConfig {
            backends: vec![Backend::Baidu],
            ..SpeechConfig::default()
        };
        let check = check_voice(&speech, Backend::Baidu).await;
        assert_eq!(check.status, Status::Fail);
        assert!(check.detail.contains("not configured"), "{check}");
    }

    #[test]
    fn a_broken_config_fails_and_falls_back_to_defaults() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("c.toml");
        std::fs::write(&path, "[audio]\nvolum = 1\n").unwrap();
        let (check, config) = check_config(&path, true);
        assert_eq!(check.status, Status::Fail);
        assert!(check.detail.contains("volum"), "{check}");
        assert_eq!(config, Config::default());
    }
}
