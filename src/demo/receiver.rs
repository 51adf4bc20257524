//! The demo's own webhook receiver: a payment event going out of paysay and checked the way
//! a shop's server checks it (the HMAC signature), so a newcomer sees the events that
//! `[[webhook]]`, `[vmq]` and `[mqtt]` carry without setting any of them up.

use std::net::SocketAddr;
use std::sync::Arc;
use std::sync::atomic::{AtomicUsize, Ordering};

use axum::Router;
use axum::body::Bytes;
use axum::extract::State;
use axum::http::{HeaderMap, StatusCode};
use axum::routing::post;
use tokio::net::TcpListener;
use tokio_util::sync::CancellationToken;

use crate::config::WebhookConfig;
use crate::sinks::webhook;
use crate::text::Escaped;

/// The sink's name in the demo's log and ledger.
const NAME: &str = "demo-webhook";

/// A webhook endpoint on a free port of 127.0.0.1 that prints each event it is sent.
pub struct Receiver {
    addr: SocketAddr,
    got: Arc<Got>,
    stop: CancellationToken,
}

struct Got {
    secret: String,
    /// Events whose signature matched.
    events: AtomicUsize,
}

impl Receiver {
    /// Listens until dropped.
    pub async fn start() -> std::io::Result<Receiver> {
        let listener = TcpListener::bind(SocketAddr::from(([127, 0, 0, 1], 0))).await?;
        let addr = listener.local_addr()?;
        // A fresh secret each run: nothing to configure, nothing a stale config could match.
        let secret = format!("{:032x}", rand::random::<u128>());
        let got = Arc::new(Got {
            secret,
            events: AtomicUsize::new(0),
        });
        let app = Router::new()
            .route("/paysay", post(take))
            .with_state(got.clone());
        let stop = CancellationToken::new();
        let stopped = stop.clone();
        tokio::spawn(async move {
            let serving = axum::serve(listener, app)
                .with_graceful_shutdown(async move { stopped.cancelled().await });
            if let Err(e) = serving.await {
                tracing::warn!(error = %e, "the demo's webhook receiver stopped");
            }
        });
        Ok(Receiver { addr, got, stop })
    }

    /// The `[[webhook]]` that sends the daemon's events here, signed.
    pub fn webhook(&self) -> WebhookConfig {
        WebhookConfig {
            url: format!("http://{}/paysay", self.addr),
            name: Some(NAME.into()),
            secret: Some(self.got.secret.clone()),
            timeout_ms: 5000,
            allow_insecure_http: false,
        }
    }

    /// How many correctly signed events have come in.
    pub fn events(&self) -> usize {
        self.got.events.load(Ordering::SeqCst)
    }
}

impl Drop for Receiver {
    fn drop(&mut self) {
        self.stop.cancel();
    }
}

/// One POST: checked, printed, answered 200; a wrong signature is answered 401.
async fn take(State(got): State<Arc<Got>>, headers: HeaderMap, body: Bytes) -> StatusCode {
    let header = |name| headers.get(name).and_then(|v| v.to_str().ok());
    let signed = match (header("X-Paysay-Timestamp"), header("X-Paysay-Signature")) {
        (Some(timestamp), Some(signature)) => {
            webhook::signature(got.secret.as_bytes(), timestamp, &body) == signature
        }
        _ => false,
    };
    if !signed {
        println!("  → webhook: an event with a wrong signature, refused");
        return StatusCode::UNAUTHORIZED;
    }
    let Ok(event) = serde_json::from_slice::<serde_json::Value>(&body) else {
        println!("  → webhook: a signed event that is not JSON, refused");
        return StatusCode::BAD_REQUEST;
    };
    let field = |name| event[name].as_str().unwrap_or("?");
    let id: String = field("id").chars().take(12).collect();
    println!(
        "  → webhook got {} yuan, {} {}, event {}…, signature checked",
        Escaped(field("amount")),
        Escaped(field("wallet")),
        Escaped(field("kind")),
        Escaped(&id)
    );
    got.events.fetch_add(1, Ordering::SeqCst);
    StatusCode::OK
}
