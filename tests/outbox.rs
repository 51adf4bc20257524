//! The outbox in-process against real receivers on 127.0.0.1: each recorded payment's event
//! reaches every sink once, in order, through a receiver's outage; a receiver that refuses
//! is noted and left alone while the others get everything; V免签 is told each payment as
//! its monitor app would.

#[path = "common/receivers.rs"]
mod receivers;

use std::path::Path;
use std::sync::Arc;
use std::time::{Duration, Instant};

use paysay::config::{VmqConfig, WebhookConfig};
use paysay::events::{Sink, event_id};
use paysay::ledger::{DeliveryState, Entry, Ledger, LedgerHandle, Redeliver};
use paysay::outbox::Outbox;
use paysay::payment::{Payment, PaymentKind};
use paysay::sinks::{Vmq, Webhook};
use receivers::{VmqServer, WebhookReceiver};
use tokio_util::sync::CancellationToken;

const WAIT: Duration = Duration::from_secs(30);
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

/// A ledger queueing for `sinks`, and its outbox with short waits.
fn ledger_and_outbox(db: &Path, sinks: &[&str]) -> (Ledger, Outbox) {
    let mut ledger = Ledger::open(db).unwrap();
    ledger.set_sinks(sinks.iter().map(|s| s.to_string()).collect());
    // The outbox's own handle: the test's `ledger` writes like another process would
    // (`paysay resend`), seen through SQLite's data_version.
    let handle = LedgerHandle::new(Ledger::open(db).unwrap()).unwrap();
    let outbox = Outbox::new(handle, time::UtcOffset::UTC).timing(
        Duration::from_millis(50),
        Duration::from_millis(400),
        Duration::from_millis(50),
    );
    (ledger, outbox)
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

async fn wait_until(mut probe: impl FnMut() -> bool) {
    let started = Instant::now();
    while !probe() {
        assert!(started.elapsed() < WAIT, "timed out");
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
}

#[tokio::test]
async fn a_receiver_down_for_a_while_gets_every_event_afterwards_once_in_order() {
    let dir = tempfile::tempdir().unwrap();
    let db = dir.path().join("ledger.sqlite3");
    // A port nobody listens on yet: connections are refused until the receiver comes up.
    let port = std::net::TcpListener::bind("127.0.0.1:0")
        .unwrap()
        .local_addr()
        .unwrap();
    let url = format!("http://{port}/hook");
    let (ledger, outbox) = ledger_and_outbox(&db, &["shop"]);
    let shutdown = CancellationToken::new();
    let tasks = outbox.spawn(vec![webhook("shop", &url, Some(SECRET))], &shutdown);

    let payments: Vec<Payment> = (1..=5)
        .map(|i| payment(&format!("m{i}"), i * 100))
        .collect();
    for p in &payments {
        ledger.record(p).unwrap();
    }
    // Tried and failed at least twice while down; nothing delivered.
    wait_until(|| {
        let conn = rusqlite::Connection::open(&db).unwrap();
        conn.query_row("SELECT max(attempts) FROM deliveries", [], |r| {
            r.get::<_, i64>(0)
        })
        .unwrap()
            >= 2
    })
    .await;
    assert!(
        states(&ledger, "shop")
            .iter()
            .all(|s| *s == DeliveryState::Pending)
    );

    let receiver = WebhookReceiver::start(port, Some(SECRET), 200).await;
    wait_until(|| {
        states(&ledger, "shop")
            .iter()
            .all(|s| *s == DeliveryState::Delivered)
    })
    .await;
    // Idle a moment: nothing more goes out.
    tokio::time::sleep(Duration::from_millis(300)).await;
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
    assert_eq!(amounts, ["1.00", "2.00", "3.00", "4.00", "5.00"]);
    assert_eq!(received[0].body["msg_id"], "m1");
    assert_eq!(received[0].body["amount_fen"], 100);
    assert_eq!(received[0].body["kind"], "collection");
    assert_eq!(received[0].body["payer"], "张三");
    assert_eq!(received[0].body["time"], "2024-05-01T02:00:00Z");
}

/// A payment recorded through the daemon's own handle wakes the delivery task at once:
/// with the look for other processes' writes an hour away, only the handle's news of the
/// write can have sent it.
#[tokio::test]
async fn a_write_through_the_handle_wakes_the_outbox_without_polling() {
    let dir = tempfile::tempdir().unwrap();
    let db = dir.path().join("ledger.sqlite3");
    let good = WebhookReceiver::start("127.0.0.1:0".parse().unwrap(), Some(SECRET), 204).await;
    let mut ledger = Ledger::open(&db).unwrap();
    ledger.set_sinks(vec!["good".into()]);
    let handle = LedgerHandle::new(ledger).unwrap();
    let hour = Duration::from_secs(3600);
    let outbox = Outbox::new(handle.clone(), time::UtcOffset::UTC).timing(
        Duration::from_millis(50),
        Duration::from_millis(400),
        hour,
    );
    let shutdown = CancellationToken::new();
    let tasks = outbox.spawn(vec![webhook("good", &good.url(), Some(SECRET))], &shutdown);
    // Let the task find nothing and go to sleep first.
    tokio::time::sleep(Duration::from_millis(100)).await;
    for i in 1..=3 {
        let p = payment(&format!("m{i}"), i);
        handle.write(move |l| l.record(&p)).await.unwrap();
    }
    wait_until(|| good.ids().len() == 3).await;
    shutdown.cancel();
    for t in tasks {
        t.await.unwrap();
    }
}

#[tokio::test]
async fn a_refusing_receiver_is_noted_once_and_the_others_get_everything() {
    let dir = tempfile::tempdir().unwrap();
    let db = dir.path().join("ledger.sqlite3");
    let any = "127.0.0.1:0".parse().unwrap();
    let refusing = WebhookReceiver::start(any, None, 400).await;
    let good = WebhookReceiver::start(any, Some(SECRET), 204).await;
    let (ledger, outbox) = ledger_and_outbox(&db, &["bad", "good"]);
    let shutdown = CancellationToken::new();
    let sinks = vec![
        webhook("bad", &refusing.url(), None),
        webhook("good", &good.url(), Some(SECRET)),
    ];
    let tasks = outbox.spawn(sinks, &shutdown);
    for i in 1..=3 {
        ledger.record(&payment(&format!("m{i}"), i)).unwrap();
    }
    wait_until(|| {
        states(&ledger, "good")
            .iter()
            .all(|s| *s == DeliveryState::Delivered)
            && states(&ledger, "bad")
                .iter()
                .all(|s| *s == DeliveryState::Rejected)
    })
    .await;
    // Given time to retry, a refused event is not sent again.
    tokio::time::sleep(Duration::from_millis(500)).await;
    shutdown.cancel();
    for t in tasks {
        t.await.unwrap();
    }
    assert_eq!(
        refusing.received().len(),
        3,
        "each refused event tried once"
    );
    assert_eq!(good.ids().len(), 3);
    let conn = rusqlite::Connection::open(&db).unwrap();
    let error: String = conn
        .query_row(
            "SELECT last_error FROM deliveries WHERE sink = 'bad' LIMIT 1",
            [],
            |r| r.get(0),
        )
        .unwrap();
    assert!(error.contains("400"), "{error}");

    // paysay resend: pending again for one sink, sent again with the same ids.
    let resent = ledger
        .resend(0, i64::MAX, &[("good".to_string(), Redeliver::Everything)])
        .unwrap();
    assert_eq!(resent.queued, 3);
    let tasks = outbox.spawn(
        vec![webhook("good", &good.url(), Some(SECRET))],
        &CancellationToken::new(),
    );
    wait_until(|| good.ids().len() == 6).await;
    wait_until(|| {
        states(&ledger, "good")
            .iter()
            .all(|s| *s == DeliveryState::Delivered)
    })
    .await;
    let ids = good.ids();
    assert_eq!(ids[..3], ids[3..], "the same ids again");
    assert_eq!(refusing.received().len(), 3, "the other sink is not resent");
    for t in tasks {
        t.abort();
    }
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
    let shutdown = CancellationToken::new();
    let tasks = outbox.spawn(vec![Arc::new(vmq)], &shutdown);
    for (id, fen) in [("m1", 1250), ("m2", 300), ("m3", 10000)] {
        ledger.record(&payment(id, fen)).unwrap();
    }
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

#[tokio::test]
async fn vmq_clock_skew_is_retried_with_the_servers_words_and_delivered_once_the_clocks_agree() {
    let dir = tempfile::tempdir().unwrap();
    let db = dir.path().join("ledger.sqlite3");
    let server = VmqServer::start("k").await;
    server.set_skew(Duration::from_secs(120), true);
    let vmq = Vmq::from_config(&VmqConfig {
        server: Some(server.server_string()),
        ..VmqConfig::default()
    })
    .unwrap()
    .unwrap();
    let (ledger, outbox) = ledger_and_outbox(&db, &["vmq"]);
    let shutdown = CancellationToken::new();
    let tasks = outbox.spawn(vec![Arc::new(vmq)], &shutdown);
    ledger.record(&payment("m1", 99)).unwrap();
    wait_until(|| server.refusals().len() >= 2).await;
    let conn = rusqlite::Connection::open(&db).unwrap();
    let error: String = conn
        .query_row("SELECT last_error FROM deliveries", [], |r| r.get(0))
        .unwrap();
    assert!(
        error.contains("客户端时间错误") && error.contains("clock"),
        "{error}"
    );
    assert_eq!(states(&ledger, "vmq"), [DeliveryState::Pending]);

    server.set_skew(Duration::ZERO, true);
    wait_until(|| states(&ledger, "vmq") == [DeliveryState::Delivered]).await;
    shutdown.cancel();
    for t in tasks {
        t.await.unwrap();
    }
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
