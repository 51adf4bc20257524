//! The `[mqtt]` sink and `paysay speaker` against a real mosquitto broker (Debian's
//! `mosquitto`, installed by scripts/setup --tests), started on a free 127.0.0.1 port per test and
//! killed at the end.

#![cfg(unix)]

mod common;
#[path = "common/mosquitto.rs"]
mod mosquitto;

use std::path::PathBuf;
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

use mosquitto::Broker;
use paysay::events::{DeliveryError, PaymentEvent, Sink};
use paysay::mqtt::MqttSink;
use paysay::payment::{Payment, PaymentKind};
use rumqttc::{AsyncClient, Event, Incoming, MqttOptions, Publish, QoS};
use tokio::sync::mpsc;

const WAIT: Duration = Duration::from_secs(30);

/// A test client subscribed (QoS 1) to `topic`; every message it gets comes out of the
/// receiver.
async fn subscribe(port: u16, topic: &str) -> mpsc::UnboundedReceiver<Publish> {
    let id = format!("test-sub-{}", rand::random::<u32>());
    subscribe_with(MqttOptions::new(id, "127.0.0.1", port), topic).await
}

/// [`subscribe`] with a session the broker keeps while the client is away (and across a
/// clean broker restart): what is published meanwhile comes when it is back, which it
/// tries to be every 100 ms.
async fn subscribe_persistent(port: u16, topic: &str) -> mpsc::UnboundedReceiver<Publish> {
    let id = format!("test-sub-{}", rand::random::<u32>());
    let mut options = MqttOptions::new(id, "127.0.0.1", port);
    options.set_clean_session(false);
    subscribe_with(options, topic).await
}

async fn subscribe_with(options: MqttOptions, topic: &str) -> mpsc::UnboundedReceiver<Publish> {
    let persistent = !options.clean_session();
    let (client, mut events) = AsyncClient::new(options, 16);
    client.subscribe(topic, QoS::AtLeastOnce).await.unwrap();
    let (tx, rx) = mpsc::unbounded_channel();
    let (subscribed, ready) = tokio::sync::oneshot::channel();
    tokio::spawn(async move {
        let mut subscribed = Some(subscribed);
        // Keeps the client alive as long as the events are read.
        let _client = client;
        loop {
            match events.poll().await {
                Ok(Event::Incoming(Incoming::SubAck(_))) => {
                    if let Some(s) = subscribed.take() {
                        let _ = s.send(());
                    }
                }
                Ok(Event::Incoming(Incoming::Publish(p))) => {
                    // The test is done with it once the receiver is gone.
                    if tx.send(p).is_err() {
                        return;
                    }
                }
                Ok(_) => {}
                Err(_) if persistent && !tx.is_closed() => {
                    tokio::time::sleep(Duration::from_millis(100)).await;
                }
                Err(_) => return,
            }
        }
    });
    tokio::time::timeout(WAIT, ready).await.unwrap().unwrap();
    rx
}

async fn next(rx: &mut mpsc::UnboundedReceiver<Publish>) -> Publish {
    tokio::time::timeout(WAIT, rx.recv())
        .await
        .expect("nothing published")
        .unwrap()
}

/// The retained `<topic>/status`, as a new subscriber sees it first.
async fn status(port: u16) -> (String, bool) {
    let mut rx = subscribe(port, "paysay/payments/status").await;
    let p = next(&mut rx).await;
    (String::from_utf8_lossy(&p.payload).into_owned(), p.retain)
}

/// Waits until the retained status is `want`.
async fn wait_status(port: u16, want: &str) {
    let started = Instant::now();
    loop {
        let (status, retained) = status(port).await;
        if status == want {
            assert!(retained);
            return;
        }
        assert!(started.elapsed() < WAIT, "status stayed {status}");
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
}

async fn wait_connected(sink: &MqttSink) {
    let started = Instant::now();
    while !sink.is_connected() {
        assert!(started.elapsed() < WAIT, "the sink did not connect");
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
}

fn event(msg_id: &str, fen: u64) -> PaymentEvent {
    let payment = Payment {
        msg_id: msg_id.into(),
        amount_fen: fen,
        kind: PaymentKind::Collection,
        payer: Some("张三".into()),
        remark: None,
        daily_count: Some(1),
        daily_total_fen: Some(fen),
        time: 1_714_528_800,
        account: "微信支付".into(),
        transfer_id: None,
        wallet: paysay::payment::Wallet::WeChat,
        source: paysay::payment::Source::Web,
    };
    PaymentEvent::new(&payment, time::UtcOffset::UTC)
}

fn json(p: &Publish) -> serde_json::Value {
    serde_json::from_slice(&p.payload).unwrap()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_payment_is_published_qos1_with_money_and_the_status_is_online() {
    let broker = Broker::start();
    let mut payments = subscribe(broker.port, "paysay/payments").await;
    let sink = start_sink(&broker.config());
    wait_connected(&sink).await;
    let e = event("1001", 1250);
    sink.deliver(&e).await.unwrap();
    let got = next(&mut payments).await;
    assert_eq!(got.qos, QoS::AtLeastOnce);
    assert!(!got.retain);
    let v = json(&got);
    assert_eq!(v["money"], "12.50");
    assert_eq!(v["amount_fen"], 1250);
    assert_eq!(v["id"], e.id.as_str());
    assert_eq!(sink.name(), "mqtt");
    assert_eq!(status(broker.port).await, ("online".to_string(), true));
    // In order, each acknowledged.
    for (i, fen) in [1u64, 2, 3].into_iter().enumerate() {
        sink.deliver(&event(&format!("20{i}"), fen)).await.unwrap();
    }
    for fen in [1u64, 2, 3] {
        assert_eq!(json(&next(&mut payments).await)["amount_fen"], fen);
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn delivery_waits_for_the_brokers_puback() {
    let broker = Broker::start();
    let sink = start_sink(&broker.config());
    wait_connected(&sink).await;
    // A broker that is connected but does not answer: the publish is written, and no
    // PUBACK comes, so the delivery is not done.
    broker.signal("-STOP");
    let result = sink.deliver(&event("3001", 100)).await;
    broker.signal("-CONT");
    assert!(
        matches!(result, Err(DeliveryError::Transient(ref why)) if why.contains("acknowledge")),
        "{result:?}"
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_vanished_sink_leaves_offline_as_its_last_will() {
    let broker = Broker::start();
    let sink = start_sink(&broker.config());
    wait_connected(&sink).await;
    wait_status(broker.port, "online").await;
    // Dropped: the connection is cut without a DISCONNECT, as when the daemon is killed.
    drop(sink);
    wait_status(broker.port, "offline").await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_clean_stop_publishes_offline() {
    let broker = Broker::start();
    let sink = start_sink(&broker.config());
    wait_connected(&sink).await;
    wait_status(broker.port, "online").await;
    sink.shutdown().await;
    assert_eq!(status(broker.port).await, ("offline".to_string(), true));
    assert!(!sink.is_connected());
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn broker_down_is_transient_and_delivery_resumes_when_it_is_back() {
    let mut broker = Broker::start();
    let sink = start_sink(&broker.config());
    wait_connected(&sink).await;
    sink.deliver(&event("4001", 1)).await.unwrap();
    broker.stop();
    let e = event("4002", 2);
    // Down: every attempt fails as transient, none hangs past the acknowledgement timeout.
    for _ in 0..3 {
        let result = tokio::time::timeout(Duration::from_secs(5), sink.deliver(&e))
            .await
            .expect("a delivery hung while the broker was down");
        assert!(
            matches!(result, Err(DeliveryError::Transient(_))),
            "{result:?}"
        );
        tokio::time::sleep(Duration::from_millis(300)).await;
    }
    broker.restart();
    let mut payments = subscribe(broker.port, "paysay/payments").await;
    let started = Instant::now();
    while sink.deliver(&e).await.is_err() {
        assert!(
            started.elapsed() < WAIT,
            "no delivery after the broker came back"
        );
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    assert_eq!(json(&next(&mut payments).await)["id"], e.id.as_str());
    wait_status(broker.port, "online").await;
}

/// `paysay speaker` in a temp home, speaking into ALSA's capture file.
struct Speaker {
    dir: tempfile::TempDir,
}

impl Speaker {
    fn new(broker: &Broker) -> Speaker {
        Speaker::with(broker, "")
    }

    /// A speaker with `mqtt_extra` lines added to its `[mqtt]` section.
    fn with(broker: &Broker, mqtt_extra: &str) -> Speaker {
        let dir = tempfile::tempdir().unwrap();
        let config = format!(
            "[audio]\nidle_close_ms = 50\n\n[mqtt]\nurl = \"{}\"\nkeep_alive_secs = 5\n{mqtt_extra}",
            broker.url()
        );
        std::fs::write(dir.path().join("paysay.toml"), config).unwrap();
        Speaker { dir }
    }

    fn path(&self, name: &str) -> PathBuf {
        self.dir.path().join(name)
    }

    fn start(&self, log: &str) -> Child {
        let root = self.dir.path();
        common::paysay_capturing(root, &root.join("capture.wav"))
            .arg("--config")
            .arg(root.join("paysay.toml"))
            .arg("speaker")
            .env("PAYSAY_LOG", "info")
            .stdout(Stdio::null())
            .stderr(std::fs::File::create(self.path(log)).unwrap())
            .spawn()
            .unwrap()
    }

    fn log(&self, name: &str) -> String {
        std::fs::read_to_string(self.path(name)).unwrap_or_default()
    }

    /// The log's lines that say a payment was announced.
    fn announced(&self, name: &str) -> Vec<String> {
        self.log(name)
            .lines()
            .filter(|l| l.contains("payment announced"))
            .map(String::from)
            .collect()
    }

    async fn wait_log(&self, name: &str, needle: &str, count: usize) -> String {
        let started = Instant::now();
        loop {
            let log = self.log(name);
            if log.matches(needle).count() >= count {
                return log;
            }
            assert!(started.elapsed() < WAIT, "no {count}× {needle:?} in\n{log}");
            tokio::time::sleep(Duration::from_millis(50)).await;
        }
    }
}

fn stop(child: &mut Child) -> std::process::ExitStatus {
    let pid = child.id().to_string();
    assert!(
        Command::new("kill")
            .args(["-TERM", &pid])
            .status()
            .unwrap()
            .success()
    );
    let started = Instant::now();
    loop {
        if let Some(status) = child.try_wait().unwrap() {
            return status;
        }
        assert!(started.elapsed() < WAIT, "the speaker did not stop");
        std::thread::sleep(Duration::from_millis(50));
    }
}

/// Publishes a raw payload (QoS 1) as another system on the broker would, up to 2 MiB.
async fn publish_raw(port: u16, payload: &[u8]) {
    let mut options = MqttOptions::new("test-raw", "127.0.0.1", port);
    options.set_max_packet_size(2 << 20, 2 << 20);
    let (client, mut events) = AsyncClient::new(options, 16);
    client
        .publish("paysay/payments", QoS::AtLeastOnce, false, payload.to_vec())
        .await
        .unwrap();
    tokio::time::timeout(WAIT, async {
        while let Ok(event) = events.poll().await {
            if let Event::Incoming(Incoming::PubAck(_)) = event {
                return;
            }
        }
        panic!("the broker went away");
    })
    .await
    .unwrap();
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_speaker_says_each_payment_once_across_duplicates_garbage_and_restarts() {
    let broker = Broker::start();
    let speaker = Speaker::new(&broker);
    let mut child = speaker.start("first.log");
    speaker
        .wait_log("first.log", "subscribed to the payment topic", 1)
        .await;
    let sink = start_sink(&broker.config());
    wait_connected(&sink).await;
    let first = event("5001", 1250);
    sink.deliver(&first).await.unwrap();
    speaker.wait_log("first.log", "payment announced", 1).await;
    // The same payment again (a redelivery by the outbox, a resend by hand): silent.
    sink.deliver(&first).await.unwrap();
    speaker
        .wait_log("first.log", "payment already announced; skipped", 1)
        .await;
    // Garbage on the topic, with a forged log line in it, is logged escaped and skipped.
    publish_raw(broker.port, b"{\"id\":\"x\"}\nINFO forged line").await;
    let log = speaker
        .wait_log("first.log", "malformed MQTT payment skipped", 1)
        .await;
    assert!(
        !log.contains("\nINFO forged") && log.contains("\\nINFO forged"),
        "{log}"
    );
    let second = event("5002", 300);
    sink.deliver(&second).await.unwrap();
    let log = speaker.wait_log("first.log", "payment announced", 2).await;
    assert!(log.contains(&second.id), "{log}");
    assert!(stop(&mut child).success(), "{}", speaker.log("first.log"));
    assert!(speaker.log("first.log").contains("stopped"));
    let heard = speaker.path("state/paysay/speaker.sqlite3");
    {
        use std::os::unix::fs::PermissionsExt;
        let mode = std::fs::metadata(&heard).unwrap().permissions().mode();
        assert_eq!(mode & 0o777, 0o600);
    }
    let capture = std::fs::metadata(speaker.path("capture.wav")).unwrap();
    assert!(
        capture.len() > 48_000,
        "nothing was played: {} bytes",
        capture.len()
    );

    // While the speaker is down: the first payment once more, and a new one. The broker
    // keeps both for the speaker's session; after the restart only the new one is said.
    sink.deliver(&first).await.unwrap();
    let third = event("5003", 5);
    sink.deliver(&third).await.unwrap();
    let mut child = speaker.start("second.log");
    let log = speaker.wait_log("second.log", "payment announced", 1).await;
    assert!(log.contains(&third.id), "{log}");
    speaker
        .wait_log("second.log", "payment already announced; skipped", 1)
        .await;
    assert!(stop(&mut child).success());
    let log = speaker.log("second.log");
    assert_eq!(log.matches("payment announced").count(), 1, "{log}");
    let total = speaker
        .log("first.log")
        .matches("payment announced")
        .count();
    assert_eq!(total, 2);
}

/// The shared secret of the signing tests.
const SECRET: &str = "counter-secret";

/// Lower-case hex HMAC-SHA256 of `bytes` with `secret`, as an integrator computes it.
fn hmac_hex(secret: &str, bytes: &[u8]) -> String {
    use hmac::{Hmac, Mac};
    let mut mac = Hmac::<sha2::Sha256>::new_from_slice(secret.as_bytes()).unwrap();
    mac.update(bytes);
    mac.finalize()
        .into_bytes()
        .iter()
        .map(|b| format!("{b:02x}"))
        .collect()
}

/// `broker`'s `[mqtt]` section with `secret = SECRET`, read as paysay reads a config file.
fn with_secret(broker: &Broker) -> paysay::config::MqttConfig {
    toml::from_str(&format!(
        "url = \"{}\"\nack_timeout_secs = 2\nsecret = \"{SECRET}\"\n",
        broker.url()
    ))
    .unwrap()
}

/// `unsigned` (a JSON object) signed the way README's MQTT section says: `{"sig":"<hex>",`
/// and then the rest of the object.
fn signed(secret: &str, unsigned: &[u8]) -> Vec<u8> {
    let mut out = format!("{{\"sig\":\"{}\",", hmac_hex(secret, unsigned)).into_bytes();
    out.extend_from_slice(&unsigned[1..]);
    out
}

/// The payload without its signature, if `secret` signed it: the check README gives
/// integrators, byte offsets and all.
fn verified(secret: &str, payload: &[u8]) -> Option<Vec<u8>> {
    let sig = payload.strip_prefix(b"{\"sig\":\"")?.get(..64)?;
    let rest = payload.get(72..)?.strip_prefix(b"\",")?;
    let unsigned = [&b"{"[..], rest].concat();
    (hmac_hex(secret, &unsigned).as_bytes() == sig).then_some(unsigned)
}

/// Anyone who can publish to the broker once made the counter say 十亿元, and u64::MAX fen
/// was said as one amount and recorded as another. What no payment can be (more than the
/// detector's bound) is now neither said nor recorded, and the payment after it is said.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_speaker_refuses_amounts_no_payment_can_be() {
    let broker = Broker::start();
    let speaker = Speaker::new(&broker);
    let mut child = speaker.start("speaker.log");
    speaker
        .wait_log("speaker.log", "subscribed to the payment topic", 1)
        .await;
    for forged in [
        r#"{"id":"huge","amount_fen":100000000000}"#,
        r#"{"id":"max","amount_fen":18446744073709551615}"#,
        r#"{"id":"yuan","money":"100000000.01"}"#,
    ] {
        publish_raw(broker.port, forged.as_bytes()).await;
    }
    publish_raw(broker.port, br#"{"id":"real","amount_fen":1250}"#).await;
    let log = speaker
        .wait_log("speaker.log", "payment announced", 1)
        .await;
    let announced = speaker.announced("speaker.log");
    assert_eq!(announced.len(), 1, "{log}");
    assert!(announced[0].contains("id=real"), "{log}");
    assert_eq!(log.matches("MQTT payment refused").count(), 3, "{log}");
    assert!(stop(&mut child).success());
    let heard = rusqlite::Connection::open(speaker.path("state/paysay/speaker.sqlite3")).unwrap();
    let ids: Vec<String> = heard
        .prepare("SELECT id FROM heard")
        .unwrap()
        .query_map([], |r| r.get(0))
        .unwrap()
        .collect::<Result<_, _>>()
        .unwrap();
    assert_eq!(ids, ["real"]);
}

/// The daemon's events carry `wallet`: the speaker says an Alipay or 云闪付 payment with that
/// wallet's template, as the daemon does, and one without `wallet` (a cloud system's) as
/// WeChat; an unknown wallet is no payment it can say.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_speaker_says_each_wallet_as_the_daemon_does() {
    let broker = Broker::start();
    let speaker = Speaker::new(&broker);
    let mut child = speaker.start("speaker.log");
    speaker
        .wait_log("speaker.log", "subscribed to the payment topic", 1)
        .await;
    for event in [
        r#"{"id":"a","amount_fen":1250,"wallet":"alipay"}"#,
        r#"{"id":"u","amount_fen":300,"wallet":"unionpay"}"#,
        r#"{"id":"w","amount_fen":100}"#,
        r#"{"id":"x","amount_fen":100,"wallet":"paypal"}"#,
    ] {
        publish_raw(broker.port, event.as_bytes()).await;
    }
    let log = speaker
        .wait_log("speaker.log", "payment announced", 3)
        .await;
    let announced = speaker.announced("speaker.log");
    assert_eq!(announced.len(), 3, "{log}");
    assert!(announced[0].contains("支付宝收款十二点五元"), "{log}");
    assert!(announced[1].contains("云闪付收款三元"), "{log}");
    assert!(announced[2].contains("微信收款一元"), "{log}");
    speaker
        .wait_log("speaker.log", "malformed MQTT payment skipped", 1)
        .await;
    assert!(stop(&mut child).success());
}

/// With `[mqtt] secret`, the speaker says only what was signed with it: an unsigned message,
/// one signed with another secret and a signed one changed on the way are refused; one
/// signed by hand as README says and one from paysay's own sink are said.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn with_a_secret_the_speaker_says_only_payments_signed_with_it() {
    let broker = Broker::start();
    let speaker = Speaker::with(&broker, &format!("secret = \"{SECRET}\"\n"));
    let mut child = speaker.start("speaker.log");
    speaker
        .wait_log("speaker.log", "subscribed to the payment topic", 1)
        .await;
    publish_raw(broker.port, br#"{"id":"unsigned","amount_fen":100}"#).await;
    let wrong = signed("another-secret", br#"{"id":"wrong","amount_fen":200}"#);
    publish_raw(broker.port, &wrong).await;
    let tampered = String::from_utf8(signed(SECRET, br#"{"id":"tampered","amount_fen":300}"#))
        .unwrap()
        .replace("300", "900");
    publish_raw(broker.port, tampered.as_bytes()).await;
    publish_raw(
        broker.port,
        &signed(SECRET, br#"{"id":"by-hand","money":"4.00"}"#),
    )
    .await;
    let sink = start_sink(&with_secret(&broker));
    wait_connected(&sink).await;
    let from_paysay = event("6001", 1250);
    sink.deliver(&from_paysay).await.unwrap();
    let log = speaker
        .wait_log("speaker.log", "payment announced", 2)
        .await;
    let announced = speaker.announced("speaker.log");
    assert!(announced[0].contains("id=by-hand"), "{log}");
    assert!(announced[1].contains(&from_paysay.id), "{log}");
    assert_eq!(log.matches("MQTT payment refused").count(), 3, "{log}");
    assert!(stop(&mut child).success());
    assert_eq!(speaker.announced("speaker.log").len(), 2);
}

/// An 11 KB message (over rumqttc's default limit of 10 KiB) and a 1 MiB one used to drop
/// the speaker's connection; the broker gave them again on every reconnect and no payment
/// behind them was ever said. Each is now acknowledged and skipped with one line, and does
/// not come back after a restart.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn an_oversized_message_is_skipped_once_and_the_payment_after_it_is_said() {
    let broker = Broker::start();
    let speaker = Speaker::new(&broker);
    let mut child = speaker.start("first.log");
    speaker
        .wait_log("first.log", "subscribed to the payment topic", 1)
        .await;
    // Would be a payment, but for its size.
    let padded = format!(
        r#"{{"id":"padded","amount_fen":100,"pad":"{}"}}"#,
        "x".repeat(11 * 1024)
    );
    publish_raw(broker.port, padded.as_bytes()).await;
    publish_raw(broker.port, &vec![b'x'; 1 << 20]).await;
    publish_raw(broker.port, br#"{"id":"after","amount_fen":1250}"#).await;
    let log = speaker.wait_log("first.log", "payment announced", 1).await;
    assert!(
        speaker.announced("first.log")[0].contains("id=after"),
        "{log}"
    );
    assert_eq!(
        log.matches("oversized MQTT message skipped").count(),
        2,
        "{log}"
    );
    assert!(
        !log.contains("unreachable"),
        "the connection dropped:\n{log}"
    );
    assert!(stop(&mut child).success());

    // Acknowledged: a restart does not get them again.
    let mut child = speaker.start("second.log");
    speaker
        .wait_log("second.log", "subscribed to the payment topic", 1)
        .await;
    publish_raw(broker.port, br#"{"id":"next","amount_fen":300}"#).await;
    let log = speaker.wait_log("second.log", "payment announced", 1).await;
    assert!(!log.contains("oversized"), "{log}");
    assert!(stop(&mut child).success());
}

// ---- the daemon's outbox publishing to the broker ----

/// Each payment's MQTT delivery state in the ledger, oldest first.
fn mqtt_states(paths: &paysay::paths::Paths) -> Vec<paysay::ledger::DeliveryState> {
    let ledger = paysay::ledger::Ledger::open(&paths.ledger_db()).unwrap();
    ledger
        .entries(i64::MIN, i64::MAX)
        .unwrap()
        .iter()
        .map(|e| {
            e.deliveries
                .iter()
                .find(|(sink, _)| sink == "mqtt")
                .map(|(_, state)| *state)
                .expect("an mqtt delivery row")
        })
        .collect()
}

async fn wait_states(paths: &paysay::paths::Paths, want: &[paysay::ledger::DeliveryState]) {
    let started = Instant::now();
    loop {
        let states = mqtt_states(paths);
        if states == want {
            return;
        }
        assert!(
            started.elapsed() < WAIT,
            "mqtt deliveries stayed {states:?}"
        );
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
}

/// The whole path: WeChat → ledger → outbox → broker. Each payment is published once its
/// ledger row is committed, with the event id the ledger's identity gives it; while the
/// broker is down the events wait in the ledger, and they go out, in order, once it is back.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_daemon_publishes_each_payment_through_the_outbox_even_across_a_broker_outage() {
    use paysay::ledger::DeliveryState::{Delivered, Pending};
    use wechat_sim::{Endpoint, SimConfig, Simulator};

    let mut broker = Broker::start();
    let mut payments = subscribe_persistent(broker.port, "paysay/payments").await;
    let sim = Simulator::start(SimConfig {
        auto_login: Some(Duration::from_millis(10)),
        ..SimConfig::for_tests()
    })
    .await
    .unwrap();
    let dir = tempfile::tempdir().unwrap();
    let mut config = common::daemon::config_for(&sim);
    config.mqtt = Some(broker.config());
    config.audio.chime = false;
    let daemon = common::daemon::start(
        config,
        dir.path(),
        Box::new(common::daemon::Beep),
        paysay::audio::NullOutput::default(),
    );
    assert!(sim.wait_for_requests(Endpoint::SyncCheck, 1, WAIT).await);

    let first = sim.pay(1250);
    let published = json(&next(&mut payments).await);
    assert_eq!(published["msg_id"], first.as_str());
    assert_eq!(published["money"], "12.50");
    let ledger = paysay::ledger::Ledger::open(&daemon.paths.ledger_db()).unwrap();
    let entry = ledger.entries(i64::MIN, i64::MAX).unwrap().remove(0);
    assert_eq!(
        published["id"],
        paysay::events::event_id(&entry.payment).as_str()
    );
    wait_states(&daemon.paths, &[Delivered]).await;

    // The broker goes away: the next payments are heard and recorded, and wait.
    broker.stop_cleanly();
    let while_down = [sim.pay(300), sim.pay(450)];
    wait_states(&daemon.paths, &[Delivered, Pending, Pending]).await;
    broker.restart();
    wait_states(&daemon.paths, &[Delivered, Delivered, Delivered]).await;
    for msg_id in &while_down {
        assert_eq!(json(&next(&mut payments).await)["msg_id"], msg_id.as_str());
    }

    daemon.shutdown.cancel();
    daemon.task.await.unwrap().unwrap();
    // A clean stop says so.
    let (status, _) = status(broker.port).await;
    assert_eq!(status, "offline");
}

/// `paysay run` with `[mqtt] secret` signs each event it publishes as README says, and a
/// receiver that does not check still finds every field where it was.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn paysay_run_signs_each_event_with_the_mqtt_secret() {
    use common::shop::{Shop, signal, wait_exit};

    let broker = Broker::start();
    let mut payments = subscribe(broker.port, "paysay/payments").await;
    let shop = Shop::new(&format!(
        "\n[mqtt]\nurl = \"{}\"\nsecret = \"{SECRET}\"\n",
        broker.url()
    ))
    .await;
    let mut daemon = shop.start("run.log");
    shop.log_in().await;
    let msg_id = shop.sim.pay(1250);
    let got = next(&mut payments).await;
    let shown = String::from_utf8_lossy(&got.payload).into_owned();
    let unsigned = verified(SECRET, &got.payload)
        .unwrap_or_else(|| panic!("not signed with the secret: {shown}"));
    let event: serde_json::Value = serde_json::from_slice(&unsigned).unwrap();
    assert_eq!(event["msg_id"], msg_id.as_str(), "{shown}");
    assert_eq!(event["amount_fen"], 1250);
    assert!(event.get("sig").is_none(), "{shown}");
    assert!(verified("another-secret", &got.payload).is_none());
    let whole = json(&got);
    assert_eq!(whole["money"], "12.50");
    assert_eq!(whole["id"], event["id"]);
    signal(&daemon, "-TERM");
    assert!(
        wait_exit(&mut daemon).await.success(),
        "{}",
        shop.log("run.log")
    );
}

/// A broker that accepts the speaker and drops it again and again (here: another client
/// with its id, as two speakers sharing a config would): one warning when it starts, not
/// two lines per reconnect; a payment after it settles is still said.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_broker_that_keeps_dropping_the_speaker_is_one_warning() {
    let broker = Broker::start();
    let speaker = Speaker::new(&broker);
    let mut child = speaker.start("speaker.log");
    speaker
        .wait_log("speaker.log", "subscribed to the payment topic", 1)
        .await;
    let heard = rusqlite::Connection::open(speaker.path("state/paysay/speaker.sqlite3")).unwrap();
    let id: String = heard
        .query_row("SELECT value FROM meta WHERE key = 'client_id'", [], |r| {
            r.get(0)
        })
        .unwrap();
    // Each connection with its id pushes the speaker off; it comes back and pushes this
    // one off in turn.
    let started = Instant::now();
    while started.elapsed() < Duration::from_secs(6) {
        let (client, mut events) =
            AsyncClient::new(MqttOptions::new(id.clone(), "127.0.0.1", broker.port), 8);
        let _ = tokio::time::timeout(Duration::from_millis(700), async {
            while let Ok(event) = events.poll().await {
                if let Event::Incoming(Incoming::ConnAck(_)) = event {
                    break;
                }
            }
        })
        .await;
        drop(client);
        tokio::time::sleep(Duration::from_millis(300)).await;
    }
    let log = speaker.log("speaker.log");
    assert_eq!(
        log.matches("unreachable").count(),
        1,
        "one line when the trouble starts:\n{log}"
    );
    assert!(!log.contains("reachable again"), "it never held:\n{log}");
    assert_eq!(log.matches("subscribed").count(), 1, "{log}");
    // One line once a connection holds (10 s), then a payment is said as ever. (The test's
    // clients had no persistent session: what was published before that was lost to it.)
    let log = speaker.wait_log("speaker.log", "reachable again", 1).await;
    assert_eq!(log.matches("unreachable").count(), 1, "{log}");
    publish_raw(broker.port, br#"{"id":"after","amount_fen":1250}"#).await;
    speaker
        .wait_log("speaker.log", "payment announced", 1)
        .await;
    assert!(stop(&mut child).success());
}

/// The sink for `config`'s broker, as the daemon starts it.
fn start_sink(config: &paysay::config::MqttConfig) -> MqttSink {
    MqttSink::start(config, &config.broker().unwrap()).unwrap()
}
