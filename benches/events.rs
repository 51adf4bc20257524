//! Latency of a payment event: from the ledger's commit of the payment (its events are
//! queued in the same transaction) to the event received on 127.0.0.1, by a webhook receiver
//! (the whole signed request) or, with `--sink mqtt`, by an MQTT subscriber of a real
//! mosquitto broker that the bench starts.
//!
//! The real pieces run: the ledger on disk (`synchronous=FULL`), the outbox's delivery task
//! on its own connection (on a runtime built like `paysay run`'s), the sink (the webhook
//! with HMAC signing and reqwest, or `MqttSink` publishing with QoS 1 and waiting for the
//! PUBACK); the receiver (a small axum server, or a rumqttc subscriber at QoS 1) runs on a
//! runtime of its own. Clock start: `Ledger::record` returned (committed). Clock stop: the
//! receiver has the whole body (the webhook's request, the MQTT publish). The delivery task
//! is woken as the daemon wakes it after a record.
//!
//!     cargo bench --bench events [-- --payments 200 --pause-ms 20]
//!     cargo bench --bench events -- --sink mqtt

mod common;

use std::sync::Arc;
use std::sync::mpsc;
use std::time::{Duration, Instant};

use axum::Router;
use axum::body::Bytes;
use axum::extract::State;
use axum::routing::post;
use paysay::config::{MQTT_SINK, MqttConfig, WebhookConfig};
use paysay::events::Sink;
use paysay::ledger::{Ledger, LedgerHandle};
use paysay::mqtt::MqttSink;
use paysay::outbox::Outbox;
use paysay::sinks::Webhook;
use rumqttc::{AsyncClient, Event, Incoming, MqttOptions, QoS};
use tokio::runtime::Runtime;
use tokio_util::sync::CancellationToken;

use common::mosquitto::Broker;
use common::{arg, arg_str, payment, runtime, summary_ms};

/// How long the broker connection and the subscription may take to be ready.
const READY: Duration = Duration::from_secs(10);

fn main() {
    let payments: usize = arg("--payments", 200);
    let pause = Duration::from_millis(arg("--pause-ms", 20));
    let kind = arg_str("--sink", "webhook");
    let scratch = tempfile::tempdir().expect("a scratch dir");
    let db = scratch.path().join("ledger.sqlite3");

    // The receiver, on a runtime of its own: each event's arrival goes down `arrived`.
    let (arrived, arrivals) = mpsc::channel::<Instant>();
    let receiver = runtime(1);
    // paysay's side, on a runtime like `paysay run`'s.
    let runtime = runtime(2);

    let broker;
    let mut mqtt = None;
    let (sink, label): (Arc<dyn Sink>, _) = match kind.as_str() {
        "webhook" => (
            webhook_sink(&receiver, arrived),
            "webhook on 127.0.0.1, signed",
        ),
        "mqtt" => {
            broker = Broker::start();
            let sink = mqtt_sink(&runtime, &receiver, &broker, arrived);
            mqtt = Some(sink.clone());
            (sink, "MQTT via mosquitto on 127.0.0.1, QoS 1")
        }
        other => panic!("--sink is webhook or mqtt, not {other}"),
    };

    let mut ledger = Ledger::open(&db).expect("the ledger");
    ledger.set_sinks(vec![sink.name().to_string()]);
    let shutdown = CancellationToken::new();
    // The daemon's handle: a write through it wakes the sink's task.
    let ledger = LedgerHandle::new(ledger).expect("the ledger's reader");
    let tasks = runtime.block_on(async {
        Outbox::new(ledger.clone(), time::UtcOffset::UTC).spawn(vec![sink], &shutdown)
    });

    println!(
        "events: {payments} payments, pause {} ms, {label}",
        pause.as_millis()
    );
    let mut latencies = Vec::with_capacity(payments);
    for i in 0..payments {
        let p = payment(
            &format!("bench-{i}"),
            1250 + i as u64,
            1_714_528_800 + i as i64,
        );
        runtime
            .block_on(ledger.write(move |l| l.record(&p)))
            .expect("recorded");
        let committed = Instant::now();
        let at = arrivals
            .recv_timeout(Duration::from_secs(30))
            .expect("the event arrives");
        latencies.push(at.saturating_duration_since(committed));
        std::thread::sleep(pause);
    }
    shutdown.cancel();
    runtime.block_on(async {
        for t in tasks {
            let _ = t.await;
        }
        if let Some(mqtt) = mqtt {
            mqtt.shutdown().await;
        }
    });
    if let Some((i, slowest)) = latencies.iter().enumerate().max_by_key(|(_, d)| **d) {
        println!(
            "slowest: payment #{i} ({:.2} ms)",
            slowest.as_secs_f64() * 1e3
        );
    }
    // The receiver goes before the broker, so the subscriber sees no broker vanish.
    receiver.shutdown_background();
    println!(
        "{}",
        summary_ms(&format!("commit → {kind} received"), &mut latencies)
    );
}

/// The webhook sink, and its receiver: a small axum server on `receiver`.
fn webhook_sink(receiver: &Runtime, arrived: mpsc::Sender<Instant>) -> Arc<dyn Sink> {
    let listener = receiver
        .block_on(tokio::net::TcpListener::bind("127.0.0.1:0"))
        .expect("a port");
    let url = format!("http://{}/hook", listener.local_addr().expect("an address"));
    let app = Router::new()
        .route("/hook", post(take))
        .with_state(Arc::new(std::sync::Mutex::new(arrived)));
    receiver.spawn(async move { axum::serve(listener, app).await });
    Arc::new(
        Webhook::new(
            "shop",
            &WebhookConfig {
                url,
                name: Some("shop".into()),
                secret: Some("bench-secret".into()),
                timeout_ms: 5000,
                allow_insecure_http: false,
            },
        )
        .expect("the webhook"),
    )
}

async fn take(
    State(arrived): State<Arc<std::sync::Mutex<mpsc::Sender<Instant>>>>,
    _body: Bytes,
) -> &'static str {
    let now = Instant::now();
    let _ = arrived.lock().map(|tx| tx.send(now));
    "ok"
}

/// The `[mqtt]` sink on `runtime`, connected to `broker`, and a subscriber to its topic on
/// `receiver`, subscribed before this returns.
fn mqtt_sink(
    runtime: &Runtime,
    receiver: &Runtime,
    broker: &Broker,
    arrived: mpsc::Sender<Instant>,
) -> Arc<MqttSink> {
    let config = MqttConfig {
        url: broker.url(),
        ..MqttConfig::default()
    };
    let (subscribed, ready) = mpsc::channel();
    let options = MqttOptions::new("bench-subscriber", "127.0.0.1", broker.port);
    let (client, mut events) = AsyncClient::new(options, 16);
    let topic = config.topic.clone();
    receiver.spawn(async move {
        if client.subscribe(&topic, QoS::AtLeastOnce).await.is_err() {
            return;
        }
        loop {
            match events.poll().await {
                Ok(Event::Incoming(Incoming::Publish(p))) if p.topic == topic => {
                    let _ = arrived.send(Instant::now());
                }
                Ok(Event::Incoming(Incoming::SubAck(_))) => {
                    let _ = subscribed.send(());
                }
                Ok(_) => {}
                Err(e) => {
                    eprintln!("the bench's subscriber lost the broker: {e}");
                    return;
                }
            }
        }
    });
    ready.recv_timeout(READY).expect("the bench subscribed");
    let sink = Arc::new(
        runtime
            .block_on(async { MqttSink::start(&config, &config.broker().expect("a broker URL")) })
            .expect("the MQTT sink"),
    );
    let started = Instant::now();
    while !sink.is_connected() {
        assert!(started.elapsed() < READY, "the sink did not connect");
        std::thread::sleep(Duration::from_millis(10));
    }
    assert_eq!(sink.name(), MQTT_SINK);
    sink
}
