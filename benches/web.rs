//! The shop's page: its weight, the time to the first byte of the page and of
//! `/api/today`, and the delay of a payment on the event stream from the ledger's commit.
//!
//! The real pieces run: the page's server (`web::Server`, its own ledger connection) on a
//! runtime built like `paysay run`'s; the ledger on disk (`synchronous=FULL`), recorded as
//! the supervisor records; `Live::recorded` as the supervisor calls it right after the
//! commit. The client (reqwest, one keep-alive connection; one open `/events` stream) runs
//! on a runtime of its own. SSE clock start: `Ledger::record` returned (committed). Clock
//! stop: the client has read the whole `payment` event.
//!
//!     cargo bench --bench web [-- --requests 200 --payments 200 --pause-ms 20]

mod common;

use std::net::SocketAddr;
use std::time::{Duration, Instant};

use paysay::config::Config;
use paysay::ledger::{Ledger, LedgerHandle};
use paysay::live::Live;
use paysay::paths::Paths;
use paysay::web::Server;
use tokio_util::sync::CancellationToken;

use common::{arg, payment, runtime, summary_ms};

fn main() {
    let requests: usize = arg("--requests", 200);
    let payments: usize = arg("--payments", 200);
    let pause = Duration::from_millis(arg("--pause-ms", 20));
    let scratch = tempfile::tempdir().expect("a scratch dir");

    let server_rt = runtime(2);
    let mut config = Config::default();
    config.web.listen = SocketAddr::from(([127, 0, 0, 1], 0));
    let paths = Paths::new(&scratch.path().join("config.toml"), &config)
        .expect("paths")
        .with_state_dir(&scratch.path().join("state"));
    let live = Live::new();
    let ledger = Ledger::open(&paths.ledger_db()).expect("the ledger");
    let handle = LedgerHandle::new(Ledger::open(&paths.ledger_db()).expect("the ledger"))
        .expect("the ledger's reader");
    let server = server_rt
        .block_on(Server::bind(
            &config,
            &paths,
            handle,
            time::UtcOffset::UTC,
            live.clone(),
        ))
        .expect("the page's server");
    let base = format!("http://{}", server.local_addr());
    let shutdown = CancellationToken::new();
    server_rt.spawn(server.run(shutdown.clone()));
    // A busy day already in the ledger: 300 payments.
    let now = time::OffsetDateTime::now_utc().unix_timestamp();
    for i in 0..300 {
        ledger
            .record(&payment(&format!("earlier-{i}"), 100 + i, now - 60))
            .expect("a payment");
    }

    let client_rt = runtime(1);
    let client = reqwest::Client::new();

    let weight = client_rt.block_on(async {
        let page = client
            .get(format!("{base}/"))
            .send()
            .await
            .expect("the page");
        page.bytes().await.expect("its body").len()
    });
    println!("page weight: {weight} bytes (one request, no other resources)");

    for path in ["/", "/api/today"] {
        let mut ttfb = Vec::with_capacity(requests);
        client_rt.block_on(async {
            for _ in 0..requests {
                let start = Instant::now();
                let response = client
                    .get(format!("{base}{path}"))
                    .send()
                    .await
                    .expect("a response");
                ttfb.push(start.elapsed());
                response.bytes().await.expect("its body");
            }
        });
        println!(
            "{}",
            summary_ms(&format!("time to first byte, GET {path}"), &mut ttfb)
        );
    }

    // The event stream: read on the client's runtime, each payment event's arrival time
    // sent back to this thread.
    let (arrived, arrivals) = std::sync::mpsc::channel::<Instant>();
    let events_url = format!("{base}/events");
    client_rt.spawn(async move {
        let mut response = reqwest::get(events_url).await.expect("the event stream");
        let mut buffer = String::new();
        while let Ok(Some(chunk)) = response.chunk().await {
            buffer.push_str(&String::from_utf8_lossy(&chunk));
            while let Some(end) = buffer.find("\n\n") {
                let block: String = buffer.drain(..end + 2).collect();
                if block.contains("event: payment") {
                    let _ = arrived.send(Instant::now());
                }
            }
        }
    });
    // The stream sends status and today first; give it a moment to be read.
    std::thread::sleep(Duration::from_millis(500));
    let mut delays = Vec::with_capacity(payments);
    for i in 0..payments {
        let p = payment(&format!("live-{i}"), 1000 + i as u64, now);
        ledger.record(&p).expect("a payment");
        let committed = Instant::now();
        live.recorded(&p);
        let at = arrivals
            .recv_timeout(Duration::from_secs(5))
            .expect("the payment event");
        delays.push(at.saturating_duration_since(committed));
        std::thread::sleep(pause);
    }
    println!(
        "{}",
        summary_ms("SSE payment event from the ledger commit", &mut delays)
    );

    shutdown.cancel();
    server_rt.shutdown_timeout(Duration::from_secs(3));
    client_rt.shutdown_timeout(Duration::from_secs(1));
}
