//! The outbox: each recorded payment's event reaches every sink once, in order, through a
//! receiver's outage, retried with capped exponential backoff; a receiver that refuses is
//! noted and left alone while the others get everything; V免签 is told each payment as its
//! monitor app would.
//!
//! What the outbox does over time runs against a receiver in memory ([`Scripted`]) on
//! tokio's paused clock: the waits are the daemon's own (seconds to a minute), checked to
//! the millisecond, and take no real time. What the receivers make of the requests (the
//! signature, the body, V免签's answers) runs against real servers on 127.0.0.1, on real
//! time, and never waits for a retry.

#[path = "common/receivers.rs"]
mod receivers;

use std::collections::VecDeque;
use std::path::Path;
use std::sync::{Arc, Mutex};
use std::time::Duration;

use paysay::config::{VmqConfig, WebhookConfig};
use paysay::events::{DeliveryError, DeliveryFuture, PaymentEvent, Sink, event_id};
use paysay::ledger::{DeliveryState, Entry, Ledger, LedgerHandle, Redeliver};
use paysay::outbox::{MAX_BACKOFF, MIN_BACKOFF, Outbox, POLL};
use paysay::payment::{Payment, PaymentKind};
use paysay::sinks::{Vmq, Webhook};
use receivers::{VmqServer, WebhookReceiver};
use tokio::sync::watch;
use tokio::time::Instant;
use tokio_util::sync::CancellationToken;

/// How long a real-time test waits for a real server before it fails.
const WAIT: Duration = Duration::from_secs(30);
/// How much of tokio's paused time a test lets pass before it fails: far more than any wait
/// of the outbox, and no real time at all.
const HOUR: Duration = Duration::from_secs(3600);
const SECRET: &str = "s3cret-shared-with-the-shop";

fn payment(msg_id: &str, amount_fen: u64) -> Payment {
    Payment {
        msg_id: msg_id.into(),
        amount_fen,
        kind: PaymentKind::Collection,
        payer: Some("张三".into()),
        remark: None,
        daily_count: None,
        daily_total_fen: None,
        time: 1_714_528_800,
        account: "微信支付".into(),
        transfer_id: None,
        wallet: paysay::payment::Wallet::WeChat,
        source: paysay::payment::Source::Web,
    }
}

fn webhook(name: &str, url: &str, secret: Option<&str>) -> Arc<dyn Sink> {
    Arc::new(
        Webhook::new(
            name,
            &WebhookConfig {
                url: url.into(),
                name: Some(name.into()),
                secret: secret.map(String::from),
                timeout_ms: 2000,
                allow_insecure_http: false,
            },
        )
        .unwrap(),
    )
}

/// A ledger queueing for `sinks`, and the daemon's outbox on it with the daemon's waits.
fn ledger_and_outbox(db: &Path, sinks: &[&str]) -> (Ledger, Outbox) {
    let mut ledger = Ledger::open(db).unwrap();
    ledger.set_sinks(sinks.iter().map(|s| s.to_string()).collect());
    // The outbox's own handle: the test's `ledger` writes like another process would
    // (`paysay resend`), seen through SQLite's data_version.
    let handle = LedgerHandle::new(Ledger::open(db).unwrap()).unwrap();
    (ledger, Outbox::new(handle, time::UtcOffset::UTC))
}

fn states(ledger: &Ledger, sink: &str) -> Vec<DeliveryState> {
    ledger
        .entries(0, i64::MAX)
        .unwrap()
        .iter()
        .map(|e: &Entry| {
            e.deliveries
                .iter()
                .find(|(name, _)| name == sink)
                .map(|(_, state)| *state)
                .unwrap()
        })
        .collect()
}

/// Until `probe` holds, on real time: for tests with a real server on the other side.
async fn wait_until(mut probe: impl FnMut() -> bool) {
    let started = std::time::Instant::now();
    while !probe() {
        assert!(started.elapsed() < WAIT, "timed out");
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
}

/// A receiver in memory: answers each try with the next of its scripted answers, then with
/// `then` for ever, and notes which event came when on tokio's clock.
struct Scripted {
    name: &'static str,
    script: Mutex<VecDeque<Result<(), DeliveryError>>>,
    then: Result<(), DeliveryError>,
    tries: watch::Sender<Vec<Try>>,
}

#[derive(Debug, Clone)]
struct Try {
    msg_id: String,
    id: String,
    at: Instant,
    accepted: bool,
}

impl Scripted {
    fn new(
        name: &'static str,
        script: impl IntoIterator<Item = Result<(), DeliveryError>>,
        then: Result<(), DeliveryError>,
    ) -> Arc<Scripted> {
        Arc::new(Scripted {
            name,
            script: Mutex::new(script.into_iter().collect()),
            then,
            tries: watch::channel(Vec::new()).0,
        })
    }

    /// A receiver that takes everything.
    fn accepting(name: &'static str) -> Arc<Scripted> {
        Scripted::new(name, [], Ok(()))
    }

    fn tries(&self) -> Vec<Try> {
        self.tries.borrow().clone()
    }

    /// The tries once there are `n`; fails if an hour of tokio's time passes first. On the
    /// paused clock the hour takes no real time: tokio jumps to the outbox's next wake-up
    /// whenever every task is idle.
    async fn tried(&self, n: usize) -> Vec<Try> {
        let mut tries = self.tries.subscribe();
        let waited = tokio::time::timeout(HOUR, tries.wait_for(|t| t.len() >= n)).await;
        let tries = waited.unwrap_or_else(|_| {
            panic!("{}: {n} tries expected, got {:?}", self.name, self.tries())
        });
        tries.unwrap().clone()
    }
}

impl Sink for Scripted {
    fn name(&self) -> &str {
        self.name
    }

    fn deliver<'a>(&'a self, event: &'a PaymentEvent) -> DeliveryFuture<'a> {
        Box::pin(async move {
            let answer = self
                .script
                .lock()
                .unwrap()
                .pop_front()
                .unwrap_or_else(|| self.then.clone());
            self.tries.send_modify(|tries| {
                tries.push(Try {
                    msg_id: event.msg_id.clone(),
                    id: event.id.clone(),
                    at: Instant::now(),
                    accepted: answer.is_ok(),
                })
            });
            answer
        })
    }
}

fn down() -> Result<(), DeliveryError> {
    Err(DeliveryError::Transient("connection refused".into()))
}

/// `gap` is one of the outbox's waits of `nominal`: the backoff's jitter puts it in
/// [nominal/2, nominal]; the timer rounds up to the millisecond.
fn assert_backoff(gap: Duration, nominal: Duration, what: &str) {
    assert!(
        gap >= nominal / 2 && gap <= nominal + Duration::from_millis(1),
        "{what}: waited {gap:?}, expected {:?}..={nominal:?}",
        nominal / 2
    );
}

fn assert_about(gap: Duration, expected: Duration, what: &str) {
    assert!(
        gap >= expected && gap <= expected + Duration::from_millis(1),
        "{what}: waited {gap:?}, expected {expected:?}"
    );
}

/// The receiver is down for the first nine tries: the first event is tried again after
/// about 1 s, 2 s, 4 s … up to the 60 s cap; once the receiver is back every event goes out
/// at once, each once, in order.
#[tokio::test(start_paused = true)]
async fn a_receiver_down_for_a_while_gets_every_event_afterwards_once_in_order() {
    const OUTAGE: usize = 9;
    let dir = tempfile::tempdir().unwrap();
    let db = dir.path().join("ledger.sqlite3");
    let (ledger, outbox) = ledger_and_outbox(&db, &["shop"]);
    let payments: Vec<Payment> = (1..=5)
        .map(|i| payment(&format!("m{i}"), i * 100))
        .collect();
    for p in &payments {
        ledger.record(p).unwrap();
    }
    let shop = Scripted::new("shop", std::iter::repeat_with(down).take(OUTAGE), Ok(()));
    let shutdown = CancellationToken::new();
    let tasks = outbox.spawn(vec![shop.clone() as Arc<dyn Sink>], &shutdown);

    shop.tried(3).await;
    assert!(
        states(&ledger, "shop")
            .iter()
            .all(|s| *s == DeliveryState::Pending),
        "nothing delivered while down"
    );
    let tries = shop.tried(OUTAGE + payments.len()).await;
    // Idle for an hour: nothing more goes out.
    tokio::time::sleep(HOUR).await;
    shutdown.cancel();
    for t in tasks {
        t.await.unwrap();
    }
    assert_eq!(
        shop.tries().len(),
        tries.len(),
        "nothing after the last event"
    );

    let (outage, after) = tries.split_at(OUTAGE);
    assert!(
        outage.iter().all(|t| t.msg_id == "m1" && !t.accepted),
        "{outage:?}"
    );
    // The waits double from MIN_BACKOFF up to MAX_BACKOFF, and stay there.
    let mut nominal = MIN_BACKOFF;
    for (i, pair) in tries[..=OUTAGE].windows(2).enumerate() {
        let what = format!("the wait after failure {}", i + 1);
        assert_backoff(pair[1].at - pair[0].at, nominal, &what);
        nominal = (nominal * 2).min(MAX_BACKOFF);
    }
    assert_eq!(nominal, MAX_BACKOFF, "the outage lasted into the cap");
    // Through at last: the rest follow without a wait.
    assert!(
        after.iter().all(|t| t.accepted && t.at == after[0].at),
        "{after:?}"
    );
    let ids: Vec<String> = after.iter().map(|t| t.id.clone()).collect();
    let expected: Vec<String> = payments.iter().map(event_id).collect();
    assert_eq!(ids, expected, "each once, in order");
    assert!(
        states(&ledger, "shop")
            .iter()
            .all(|s| *s == DeliveryState::Delivered)
    );
    let conn = rusqlite::Connection::open(&db).unwrap();
    let attempts: Vec<i64> = conn
        .prepare("SELECT attempts FROM deliveries ORDER BY payment_id")
        .unwrap()
        .query_map([], |r| r.get(0))
        .unwrap()
        .collect::<Result<_, _>>()
        .unwrap();
    assert_eq!(attempts, [OUTAGE as i64 + 1, 1, 1, 1, 1]);
}

/// A payment recorded through the daemon's own handle wakes the delivery task at once: no
/// time passes between the write and the delivery, so the look for other processes'
/// writes (every [`POLL`]) cannot have sent it.
#[tokio::test(start_paused = true)]
async fn a_write_through_the_handle_wakes_the_outbox_without_polling() {
    let dir = tempfile::tempdir().unwrap();
    let db = dir.path().join("ledger.sqlite3");
    let mut ledger = Ledger::open(&db).unwrap();
    ledger.set_sinks(vec!["good".into()]);
    let handle = LedgerHandle::new(ledger).unwrap();
    let outbox = Outbox::new(handle.clone(), time::UtcOffset::UTC);
    let good = Scripted::accepting("good");
    let shutdown = CancellationToken::new();
    let tasks = outbox.spawn(vec![good.clone() as Arc<dyn Sink>], &shutdown);
    // Let the task find nothing and go to sleep first (the clock moves only once it has).
    tokio::time::sleep(POLL / 4).await;
    let written = Instant::now();
    for i in 1..=3 {
        let p = payment(&format!("m{i}"), i);
        handle.write(move |l| l.record(&p)).await.unwrap();
    }
    let tries = good.tried(3).await;
    assert!(tries.iter().all(|t| t.at == written), "{tries:?}");
    shutdown.cancel();
    for t in tasks {
        t.await.unwrap();
    }
}

#[tokio::test(start_paused = true)]
async fn a_refusing_receiver_is_noted_once_and_the_others_get_everything() {
    let dir = tempfile::tempdir().unwrap();
    let db = dir.path().join("ledger.sqlite3");
    let (ledger, outbox) = ledger_and_outbox(&db, &["bad", "good"]);
    for i in 1..=3 {
        ledger.record(&payment(&format!("m{i}"), i)).unwrap();
    }
    let refusal = "HTTP 400 Bad Request: unknown shop";
    let bad = Scripted::new("bad", [], Err(DeliveryError::Rejected(refusal.into())));
    let good = Scripted::accepting("good");
    let shutdown = CancellationToken::new();
    let sinks: Vec<Arc<dyn Sink>> = vec![bad.clone(), good.clone()];
    let tasks = outbox.spawn(sinks, &shutdown);

    let refused = bad.tried(3).await;
    assert_eq!(good.tried(3).await.len(), 3);
    // Given an hour to retry, a refused event is not sent again.
    tokio::time::sleep(HOUR).await;
    assert_eq!(bad.tries().len(), 3, "each refused event tried once");
    let tried: Vec<&str> = refused.iter().map(|t| t.msg_id.as_str()).collect();
    assert_eq!(tried, ["m1", "m2", "m3"]);
    // One after the other, a pause apart: a receiver refusing everything (a wrong key) does
    // not get the whole backlog back to back.
    for pair in refused.windows(2) {
        assert_about(
            pair[1].at - pair[0].at,
            MIN_BACKOFF,
            "the pause after a refusal",
        );
    }
    assert!(
        states(&ledger, "bad")
            .iter()
            .all(|s| *s == DeliveryState::Rejected)
    );
    assert!(
        states(&ledger, "good")
            .iter()
            .all(|s| *s == DeliveryState::Delivered)
    );
    let conn = rusqlite::Connection::open(&db).unwrap();
    let error: String = conn
        .query_row(
            "SELECT last_error FROM deliveries WHERE sink = 'bad' LIMIT 1",
            [],
            |r| r.get(0),
        )
        .unwrap();
    assert!(error.contains(refusal), "{error}");

    // paysay resend, from another process: pending again for one sink, seen within one
    // POLL, sent again with the same ids.
    let resent = ledger
        .resend(0, i64::MAX, &[("good".to_string(), Redeliver::Everything)])
        .unwrap();
    assert_eq!(resent.queued, 3);
    let resent_at = Instant::now();
    let tries = good.tried(6).await;
    assert!(tries[3].at - resent_at <= POLL, "{tries:?}");
    shutdown.cancel();
    for t in tasks {
        t.await.unwrap();
    }
    let ids: Vec<&str> = tries.iter().map(|t| t.id.as_str()).collect();
    assert_eq!(ids[..3], ids[3..], "the same ids again");
    assert_eq!(bad.tries().len(), 3, "the other sink is not resent");
    assert!(
        states(&ledger, "good")
            .iter()
            .all(|s| *s == DeliveryState::Delivered)
    );
}

/// The webhook over HTTP: every event signed, with the contract's fields, in order.
#[tokio::test]
async fn the_webhook_gets_every_event_signed_with_the_contract_fields() {
    let dir = tempfile::tempdir().unwrap();
    let db = dir.path().join("ledger.sqlite3");
    let receiver = WebhookReceiver::start("127.0.0.1:0".parse().unwrap(), Some(SECRET), 200).await;
    let (ledger, outbox) = ledger_and_outbox(&db, &["shop"]);
    let payments: Vec<Payment> = (1..=3)
        .map(|i| payment(&format!("m{i}"), i * 100))
        .collect();
    for p in &payments {
        ledger.record(p).unwrap();
    }
    let shutdown = CancellationToken::new();
    let tasks = outbox.spawn(
        vec![webhook("shop", &receiver.url(), Some(SECRET))],
        &shutdown,
    );
    wait_until(|| {
        states(&ledger, "shop")
            .iter()
            .all(|s| *s == DeliveryState::Delivered)
    })
    .await;
    shutdown.cancel();
    for t in tasks {
        t.await.unwrap();
    }

    let received = receiver.received();
    assert!(received.iter().all(|r| r.signed), "every request signed");
    let expected: Vec<String> = payments.iter().map(event_id).collect();
    assert_eq!(receiver.ids(), expected, "each once, in order");
    let amounts: Vec<&str> = received
        .iter()
        .map(|r| r.body["amount"].as_str().unwrap())
        .collect();
    assert_eq!(amounts, ["1.00", "2.00", "3.00"]);
    assert_eq!(received[0].body["msg_id"], "m1");
    assert_eq!(received[0].body["amount_fen"], 100);
    assert_eq!(received[0].body["kind"], "collection");
    assert_eq!(received[0].body["payer"], "张三");
    assert_eq!(received[0].body["time"], "2024-05-01T02:00:00Z");
}

#[tokio::test]
async fn vmq_is_told_each_payment_signed_as_sent_and_orders_are_confirmed() {
    let dir = tempfile::tempdir().unwrap();
    let db = dir.path().join("ledger.sqlite3");
    let server = VmqServer::start("vmq-key-123").await;
    server.create_order("order-1", 1250);
    server.create_order("order-2", 10000);
    let vmq = Vmq::from_config(&VmqConfig {
        server: Some(server.server_string()),
        ..VmqConfig::default()
    })
    .unwrap()
    .unwrap();
    let (ledger, outbox) = ledger_and_outbox(&db, &["vmq"]);
    for (id, fen) in [("m1", 1250), ("m2", 300), ("m3", 10000)] {
        ledger.record(&payment(id, fen)).unwrap();
    }
    // Pending at start: sent at once, without waiting for the look for other writers.
    let shutdown = CancellationToken::new();
    let tasks = outbox.spawn(vec![Arc::new(vmq)], &shutdown);
    wait_until(|| {
        states(&ledger, "vmq")
            .iter()
            .all(|s| *s == DeliveryState::Delivered)
    })
    .await;
    shutdown.cancel();
    for t in tasks {
        t.await.unwrap();
    }
    let paid: Vec<(String, String, String)> = server
        .payments()
        .into_iter()
        .map(|p| (p.price, p.kind, p.order))
        .collect();
    let row = |price: &str, order: &str| (price.to_string(), "1".to_string(), order.to_string());
    assert_eq!(
        paid,
        [
            row("12.50", "order-1"),
            row("3.00", "无订单转账"),
            row("100.00", "order-2")
        ]
    );
    assert!(server.refusals().is_empty(), "{:?}", server.refusals());
}

/// A clock error is worth trying again (the outbox does, as for any transient error) and
/// says what the server said; once the clocks agree the payment goes through.
#[tokio::test]
async fn vmq_clock_skew_is_transient_in_the_servers_words_and_goes_through_once_the_clocks_agree() {
    let server = VmqServer::start("k").await;
    server.set_skew(Duration::from_secs(120), true);
    let vmq = Vmq::from_config(&VmqConfig {
        server: Some(server.server_string()),
        ..VmqConfig::default()
    })
    .unwrap()
    .unwrap();
    let event = PaymentEvent::new(&payment("m1", 99), time::UtcOffset::UTC);
    let err = vmq.deliver(&event).await.unwrap_err();
    assert!(
        matches!(&err, DeliveryError::Transient(m) if m.contains("客户端时间错误") && m.contains("clock")),
        "{err}"
    );
    assert_eq!(server.refusals().len(), 1);
    assert!(server.payments().is_empty());

    server.set_skew(Duration::ZERO, true);
    vmq.deliver(&event).await.unwrap();
    assert_eq!(server.payments().len(), 1);
    assert_eq!(server.payments()[0].price, "0.99");
}

#[tokio::test]
async fn a_wrong_vmq_key_is_refused_for_good_with_what_the_server_said() {
    let server = VmqServer::start("right-key").await;
    let vmq = Vmq::from_config(&VmqConfig {
        server: Some(format!("{}/wrong-key", server.addr)),
        ..VmqConfig::default()
    })
    .unwrap()
    .unwrap();
    let err = vmq.push("1", "1.00").await.unwrap_err();
    assert!(
        matches!(&err, paysay::events::DeliveryError::Rejected(m) if m.contains("签名校验不通过") && m.contains("[vmq] server")),
        "{err}"
    );
    assert!(vmq.heartbeat().await.is_err());
    assert_eq!(server.heartbeats(), 0);
    assert!(server.payments().is_empty());
}
