//! `paysay doctor` run as the real binary against a temp home. The sound card is ALSA's file
//! plugin (tests/asound-capture.conf) or a config with no devices at all; ALSA's variables
//! are set on the child process only, so these tests run in parallel with any other.

#![cfg(target_os = "linux")]

mod common;
#[path = "common/mosquitto.rs"]
mod mosquitto;
#[path = "common/receivers.rs"]
mod receivers;

use std::path::{Path, PathBuf};
use std::process::Output;

use paysay::ledger::Ledger;
use paysay::payment::{Payment, PaymentKind};

struct Shop {
    dir: tempfile::TempDir,
}

/// The sound card a test gives paysay.
enum Alsa {
    /// Everything played lands in capture.wav.
    Capture,
    /// An ALSA config that defines no device at all.
    Nothing,
}

impl Shop {
    fn new(config: &str) -> Shop {
        let dir = tempfile::tempdir().unwrap();
        std::fs::write(dir.path().join("paysay.toml"), config).unwrap();
        Shop { dir }
    }

    fn root(&self) -> &Path {
        self.dir.path()
    }

    fn capture(&self) -> PathBuf {
        self.root().join("capture.wav")
    }

    fn doctor(&self, alsa: Alsa) -> Output {
        let root = self.root();
        let conf = match alsa {
            Alsa::Capture => common::capture_conf(),
            Alsa::Nothing => {
                let empty = root.join("empty-asound.conf");
                std::fs::write(&empty, "# no devices\n").unwrap();
                empty
            }
        };
        common::paysay_capturing(root, &self.capture())
            .arg("--config")
            .arg(root.join("paysay.toml"))
            .arg("doctor")
            .env("ALSA_CONFIG_PATH", conf)
            .output()
            .unwrap()
    }
}

const SYSTEM_VOICE: &str = "[speech]\nbackends = [\"system\"]\n";

fn stdout(out: &Output) -> String {
    String::from_utf8_lossy(&out.stdout).into_owned()
}

/// The report's lines for `name`: its own and the indented ones after it (detail, fix).
fn line(report: &str, name: &str) -> String {
    let lines: Vec<&str> = report.lines().collect();
    let at = lines
        .iter()
        .position(|l| {
            l.split_once(' ')
                .is_some_and(|(_, rest)| rest.starts_with(name))
        })
        .unwrap_or_else(|| panic!("no {name} line in\n{report}"));
    let continued = lines[at + 1..].iter().take_while(|l| l.starts_with("  "));
    std::iter::once(&lines[at])
        .chain(continued)
        .copied()
        .collect::<Vec<_>>()
        .join("\n")
}

#[test]
fn a_working_shop_passes_with_sound_through_alsa() {
    let shop = Shop::new(SYSTEM_VOICE);
    let out = shop.doctor(Alsa::Capture);
    let report = stdout(&out);
    assert!(
        out.status.success(),
        "{report}\n{}",
        String::from_utf8_lossy(&out.stderr)
    );
    assert!(line(&report, "audio").starts_with('✓'), "{report}");
    assert!(line(&report, "voice system").starts_with('✓'), "{report}");
    assert!(line(&report, "config").contains("paysay.toml"), "{report}");
    assert!(
        line(&report, "session").contains("paysay login"),
        "{report}"
    );
    // Samples really went through rodio, cpal and ALSA: a WAV header and then some.
    let captured = std::fs::metadata(shop.capture())
        .map(|m| m.len())
        .unwrap_or(0);
    assert!(captured > 44, "capture is {captured} bytes");
}

#[test]
fn no_sound_card_fails_the_audio_check_with_its_fix() {
    let shop = Shop::new(SYSTEM_VOICE);
    let out = shop.doctor(Alsa::Nothing);
    let report = stdout(&out);
    assert_eq!(out.status.code(), Some(1), "{report}");
    let audio = line(&report, "audio");
    assert!(audio.starts_with('✗'), "{audio}");
    assert!(
        audio.contains("fix:") && audio.contains("aplay -l"),
        "{audio}"
    );
    assert!(audio.contains("group `audio`"), "{audio}");
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert!(stderr.contains("1 of"), "{stderr}");
    assert!(!stderr.contains("panicked"), "{stderr}");
    // alsa-lib's own lines (`ALSA lib pcm.c:… Unknown PCM default`) are kept off stderr.
    assert!(!stderr.contains("ALSA lib"), "{stderr}");
}

#[test]
fn a_broken_config_fails_but_every_other_check_still_runs() {
    let shop = Shop::new("[audio]\nvolum = 0.5\n");
    let out = shop.doctor(Alsa::Capture);
    let report = stdout(&out);
    assert_eq!(out.status.code(), Some(1), "{report}");
    let config = line(&report, "config");
    assert!(
        config.starts_with('✗') && config.contains("volum"),
        "{config}"
    );
    assert!(line(&report, "audio").starts_with('✓'), "{report}");
}

#[test]
fn baidu_without_keys_is_reported_as_not_configured() {
    let shop = Shop::new("[speech]\nbackends = [\"baidu\", \"system\"]\n");
    let out = shop.doctor(Alsa::Capture);
    let report = stdout(&out);
    assert_eq!(out.status.code(), Some(1), "{report}");
    let baidu = line(&report, "voice baidu");
    assert!(
        baidu.starts_with('✗') && baidu.contains("not configured: set api_key/secret_key"),
        "{baidu}"
    );
    assert!(line(&report, "voice system").starts_with('✓'), "{report}");
}

#[test]
fn the_ledger_check_counts_todays_payments() {
    let shop = Shop::new(SYSTEM_VOICE);
    let ledger = Ledger::open(&shop.root().join("state/paysay/ledger.sqlite3")).unwrap();
    let now = time::OffsetDateTime::now_utc().unix_timestamp();
    ledger
        .record(&Payment {
            msg_id: "m-1".into(),
            amount_fen: 1250,
            kind: PaymentKind::Collection,
            payer: None,
            remark: None,
            daily_count: None,
            daily_total_fen: None,
            time: now,
            account: "微信支付".into(),
            transfer_id: None,
            wallet: paysay::payment::Wallet::WeChat,
            source: paysay::payment::Source::Web,
        })
        .unwrap();
    drop(ledger);
    let report = stdout(&shop.doctor(Alsa::Capture));
    let ledger = line(&report, "ledger");
    assert!(ledger.contains("1 payment today, 12.50 yuan"), "{ledger}");
}

/// Issue 10: a ledger SQLite can only open read-only loses every payment's record; the
/// doctor says so, with what to do.
#[test]
fn an_unwritable_ledger_fails_the_ledger_check() {
    let shop = Shop::new(SYSTEM_VOICE);
    let db = shop.root().join("state/paysay/ledger.sqlite3");
    drop(Ledger::open(&db).unwrap());
    let Some(_unwritable) = common::Unwritable::make(&db) else {
        eprintln!("skipped: root, and chattr +i is not allowed here: nothing is unwritable");
        return;
    };
    let out = shop.doctor(Alsa::Capture);
    let report = stdout(&out);
    let ledger = line(&report, "ledger");
    assert!(ledger.starts_with('✗'), "{report}");
    assert!(ledger.contains("cannot be written"), "{ledger}");
    assert!(ledger.contains("belong to the shop owner"), "{ledger}");
    assert_eq!(out.status.code(), Some(1), "{report}");
}

#[tokio::test(flavor = "multi_thread")]
async fn each_sink_is_checked_with_a_signed_test_event_or_a_heartbeat() {
    let any = "127.0.0.1:0".parse().unwrap();
    let receiver = receivers::WebhookReceiver::start(any, Some("right"), 200).await;
    let vmq = receivers::VmqServer::start("vmq-key").await;
    let shop = Shop::new(&format!(
        "{SYSTEM_VOICE}\n[vmq]\nserver = \"{}\"\n\n[[webhook]]\nname = \"good\"\nurl = \"{url}\"\nsecret = \"right\"\n\n[[webhook]]\nname = \"wrong-secret\"\nurl = \"{url}\"\nsecret = \"wrong\"\n",
        vmq.server_string(),
        url = receiver.url(),
    ));
    let out = tokio::task::spawn_blocking(move || (shop.doctor(Alsa::Capture), shop))
        .await
        .unwrap()
        .0;
    let report = stdout(&out);
    assert_eq!(out.status.code(), Some(1), "{report}");
    let good = line(&report, "webhook good");
    assert!(
        good.starts_with('✓') && good.contains("signed test event"),
        "{good}"
    );
    let wrong = line(&report, "webhook wrong-secret");
    assert!(
        wrong.starts_with('✗') && wrong.contains("401") && wrong.contains("secret"),
        "{wrong}"
    );
    assert!(line(&report, "vmq").starts_with('✓'), "{report}");
    assert_eq!(vmq.heartbeats(), 1);
    let received = receiver.received();
    assert_eq!(received.len(), 2);
    assert!(received[0].signed && !received[1].signed);
    assert_eq!(received[0].body["test"], true);
    assert_eq!(received[0].body["amount_fen"], 0);
}

/// `[mqtt]` is checked like every other sink: a real mosquitto accepts the connection; a
/// port nobody listens on fails with what to check. Two webhooks on one host with no name
/// are two sinks, each checked under its own name.
#[test]
fn the_mqtt_broker_is_checked_too() {
    let broker = mosquitto::Broker::start();
    let closed = std::net::TcpListener::bind("127.0.0.1:0")
        .unwrap()
        .local_addr()
        .unwrap()
        .port();
    for (url, works) in [
        (broker.url(), true),
        (format!("mqtt://127.0.0.1:{closed}"), false),
    ] {
        let shop = Shop::new(&format!(
            "{SYSTEM_VOICE}\n[mqtt]\nurl = \"{url}\"\nack_timeout_secs = 5\n\n[[webhook]]\nurl = \"http://127.0.0.1:{closed}/a\"\n\n[[webhook]]\nurl = \"http://127.0.0.1:9/b\"\n"
        ));
        let out = shop.doctor(Alsa::Capture);
        let report = stdout(&out);
        let mqtt = line(&report, "mqtt");
        if works {
            assert!(
                mqtt.starts_with('✓') && mqtt.contains("accepted a connection"),
                "{report}"
            );
        } else {
            assert!(
                mqtt.starts_with('✗') && mqtt.contains("broker runs"),
                "{report}"
            );
        }
        assert!(
            line(&report, &format!("webhook 127.0.0.1:{closed}")).starts_with('✗'),
            "{report}"
        );
        assert!(
            line(&report, "webhook 127.0.0.1:9").starts_with('✗'),
            "{report}"
        );
    }
}

/// `[intake]`: a free port passes (paysay run will listen there); a port another program
/// holds fails with what to do.
#[test]
fn the_intake_check_tells_a_free_port_from_one_another_program_holds() {
    let taken = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
    let free = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
    let free_addr = free.local_addr().unwrap();
    drop(free);
    for (addr, ok) in [(free_addr, true), (taken.local_addr().unwrap(), false)] {
        let shop = Shop::new(&format!(
            "{SYSTEM_VOICE}\n[intake]\nlisten = \"{addr}\"\nsecret = \"s\"\n"
        ));
        let report = stdout(&shop.doctor(Alsa::Capture));
        let intake = line(&report, "intake");
        assert_eq!(intake.starts_with('✓'), ok, "{report}");
        if !ok {
            assert!(intake.contains("not by paysay"), "{intake}");
        }
    }
}
