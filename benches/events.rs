//! Latency of a payment event: from the ledger's commit of the payment (its events are
//! queued in the same transaction) to the whole signed webhook request received by a
//! receiver on 127.0.0.1.
//!
//! The real pieces run: the ledger on disk (`synchronous=FULL`), the outbox's delivery task
//! on its own connection (on a runtime built like `paysay run`'s), the webhook sink with
//! HMAC signing, reqwest; the receiver is a small axum server on a runtime of its own.
//! Clock start: `Ledger::record` returned (committed). Clock stop: the receiver has read the
//! body. The delivery task is woken as the daemon wakes it after a record.
//!
//!     cargo bench --bench events [-- --payments 200 --pause-ms 20]

mod common;

use std::sync::Arc;
use std::sync::mpsc;
use std::time::{Duration, Instant};

use axum::Router;
use axum::body::Bytes;
use axum::extract::State;
use axum::routing::post;
use paysay::config::WebhookConfig;
use paysay::events::Sink;
use paysay::ledger::Ledger;
use paysay::outbox::Outbox;
use paysay::payment::{Payment, PaymentKind};
use paysay::sinks::Webhook;
use tokio_util::sync::CancellationToken;

use common::{arg, summary_ms};

fn main() {
    let payments: usize = arg("--payments", 200);
    let pause = Duration::from_millis(arg("--pause-ms", 20));
    let scratch = tempfile::tempdir().expect("a scratch dir");
    let db = scratch.path().join("ledger.sqlite3");

    // The receiver, on a runtime of its own: each request's arrival goes down `arrived`.
    let (arrived, arrivals) = mpsc::channel::<Instant>();
    let receiver = tokio::runtime::Builder::new_multi_thread()
        .worker_threads(1)
        .enable_all()
        .build()
        .expect("a runtime for the receiver");
    let listener = receiver
        .block_on(tokio::net::TcpListener::bind("127.0.0.1:0"))
        .expect("a port");
    let url = format!("http://{}/hook", listener.local_addr().expect("an address"));
    let app = Router::new()
        .route("/hook", post(take))
        .with_state(Arc::new(std::sync::Mutex::new(arrived)));
    receiver.spawn(async move { axum::serve(listener, app).await });

    // paysay's side, on a runtime like `paysay run`'s.
    let runtime = tokio::runtime::Builder::new_multi_thread()
        .worker_threads(2)
        .enable_all()
        .build()
        .expect("a runtime like paysay run's");
    let mut ledger = Ledger::open(&db).expect("the ledger");
    ledger.set_sinks(vec!["shop".into()]);
    let sink: Arc<dyn Sink> = Arc::new(
        Webhook::new(&WebhookConfig {
            url,
            name: Some("shop".into()),
            secret: Some("bench-secret".into()),
            timeout_ms: 5000,
            allow_insecure_http: false,
        })
        .expect("the webhook"),
    );
    let shutdown = CancellationToken::new();
    let (tasks, wakers) = runtime.block_on(async {
        Outbox::open(&db, Duration::from_secs(10), time::UtcOffset::UTC)
            .expect("the outbox")
            .spawn(vec![sink], &shutdown)
    });

    println!(
        "events: {payments} payments, pause {} ms, webhook on 127.0.0.1, signed",
        pause.as_millis()
    );
    let mut latencies = Vec::with_capacity(payments);
    for i in 0..payments {
        ledger.record(&payment(i)).expect("recorded");
        let committed = Instant::now();
        wakers.wake_all();
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
    });
    println!(
        "{}",
        summary_ms("commit → webhook received", &mut latencies)
    );
}

async fn take(
    State(arrived): State<Arc<std::sync::Mutex<mpsc::Sender<Instant>>>>,
    _body: Bytes,
) -> &'static str {
    let now = Instant::now();
    let _ = arrived.lock().map(|tx| tx.send(now));
    "ok"
}

fn payment(i: usize) -> Payment {
    Payment {
        msg_id: format!("bench-{i}"),
        amount_fen: 1250 + i as u64,
        kind: PaymentKind::Collection,
        payer: Some("张三".into()),
        remark: None,
        daily_count: None,
        daily_total_fen: None,
        time: 1_714_528_800 + i as i64,
        account: "微信支付".into(),
        transfer_id: None,
    }
}
