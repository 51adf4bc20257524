//! The accept loop of paysay's HTTP listeners. The shop's page (and, where the shop sets it
//! up, the phone's intake) faces the shop's LAN, where anything can connect: a thousand
//! event streams, or a thousand connections that never finish their request headers,
//! would otherwise use up the process's file handles, and the next announcement, ledger
//! write or session save would fail with "Too many open files". So each listener
//!
//! - serves at most [`Limits::max_connections`] connections at once and answers one more
//!   with an immediate `503` and closes it (written without waiting, so that refusing
//!   costs no handle for longer than the accept);
//! - closes a connection whose request headers have not all arrived within
//!   [`Limits::header_timeout`] (hyper's header read timeout; it also ends a kept-alive
//!   connection that stays idle that long);
//! - pauses briefly after an accept error (no handle left) instead of spinning on it.
//!
//! Nothing here stands between a payment and its announcement: the listener is a task of
//! its own, and its failures are logged once per run of them ([`Failing`]).

use std::convert::Infallible;
use std::net::SocketAddr;
use std::sync::Arc;
use std::time::Duration;

use axum::Router;
use axum::extract::ConnectInfo;
use hyper::body::Incoming;
use hyper_util::rt::{TokioIo, TokioTimer};
use tokio::net::{TcpListener, TcpStream};
use tokio::sync::{OwnedSemaphorePermit, Semaphore};
use tokio_util::sync::CancellationToken;
use tower::ServiceExt;

use crate::failing::Failing;

/// What one listener allows.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Limits {
    /// Connections served at once; one more is answered `503` and closed.
    pub max_connections: usize,
    /// How long a connection may take to send a request's headers (or stay idle between
    /// requests) before it is closed.
    pub header_timeout: Duration,
}

impl Limits {
    /// `[web]`'s cap and header timeout: the page and the phone's intake share them.
    pub fn of(web: &crate::config::WebConfig) -> Limits {
        Limits {
            // Bounded at load (1-4096).
            max_connections: web.max_connections as usize,
            header_timeout: Duration::from_secs(web.header_timeout_secs),
        }
    }
}

/// After an accept error (typically no file handle left): a pause before the next accept,
/// so that the loop does not spin while handles are short.
const ACCEPT_PAUSE: Duration = Duration::from_millis(100);

/// The answer to a connection beyond the cap. Written before its request is read: a
/// browser shows it all the same.
const BUSY: &[u8] = b"HTTP/1.1 503 Service Unavailable\r\n\
Content-Type: text/plain; charset=utf-8\r\n\
Content-Length: 21\r\n\
Retry-After: 5\r\n\
Connection: close\r\n\
\r\n\
too many connections\n";

/// Serves `router` on `listener` within `limits` until `shutdown`; then stops accepting,
/// lets each connection finish its request (event streams end through their own token),
/// and returns once every connection has closed. `name` says which listener in the log.
pub async fn serve(
    name: &'static str,
    listener: TcpListener,
    router: Router,
    limits: Limits,
    shutdown: CancellationToken,
) {
    let slots = Arc::new(Semaphore::new(limits.max_connections));
    let mut accept_errors = Failing::default();
    let mut refusals = Failing::default();
    loop {
        let accepted = tokio::select! {
            _ = shutdown.cancelled() => break,
            accepted = listener.accept() => accepted,
        };
        let (stream, peer) = match accepted {
            Ok(accepted) => accepted,
            Err(e) => {
                if accept_errors.failed() {
                    tracing::warn!(listener = name, error = %e, "cannot accept connections (said once until it can again)");
                }
                tokio::time::sleep(ACCEPT_PAUSE).await;
                continue;
            }
        };
        if let Some(failed) = accept_errors.worked() {
            tracing::info!(listener = name, failed, "accepting connections again");
        }
        match Arc::clone(&slots).try_acquire_owned() {
            Ok(slot) => {
                if let Some(refused) = refusals.worked() {
                    tracing::info!(listener = name, refused, "connections are taken again");
                }
                let router = router.clone();
                let shutdown = shutdown.clone();
                let timeout = limits.header_timeout;
                tokio::spawn(connection(stream, peer, router, timeout, shutdown, slot));
            }
            Err(_) => {
                if refusals.failed() {
                    tracing::warn!(
                        listener = name,
                        max_connections = limits.max_connections,
                        "too many connections: refusing new ones with 503 (said once until one is taken again)"
                    );
                }
                refuse(&stream);
            }
        }
    }
    // Every connection gives its slot back when it closes.
    let _ = slots
        .acquire_many_owned(limits.max_connections as u32)
        .await;
}

/// Answers a connection beyond the cap with [`BUSY`] and closes it, all without waiting:
/// the socket's send buffer takes these few bytes at once, and what the peer sent already
/// is read first, since closing a socket with unread bytes resets it and the peer would see
/// a reset instead of the 503. Whatever has not arrived yet is not worth a task.
fn refuse(stream: &TcpStream) {
    let _ = stream.try_write(BUSY);
    let mut sink = [0u8; 4096];
    for _ in 0..16 {
        match stream.try_read(&mut sink) {
            Ok(n) if n > 0 => continue,
            _ => break,
        }
    }
}

/// One connection, served until it closes, its headers time out, or shutdown asks it to
/// finish the request under way.
async fn connection(
    stream: TcpStream,
    peer: SocketAddr,
    router: Router,
    header_timeout: Duration,
    shutdown: CancellationToken,
    _slot: OwnedSemaphorePermit,
) {
    let service = hyper::service::service_fn(move |mut request: hyper::Request<Incoming>| {
        // What axum's `into_make_service_with_connect_info` would add: the page tells this
        // computer from the tablet by it.
        request.extensions_mut().insert(ConnectInfo(peer));
        let answer: tower::util::Oneshot<Router, _> = router.clone().oneshot(request);
        async move { Ok::<_, Infallible>(answer.await.unwrap_or_else(|never| match never {})) }
    });
    let mut builder = hyper::server::conn::http1::Builder::new();
    builder
        .timer(TokioTimer::new())
        .header_read_timeout(header_timeout);
    let connection = builder.serve_connection(TokioIo::new(stream), service);
    let mut connection = std::pin::pin!(connection);
    let ended = tokio::select! {
        ended = connection.as_mut() => ended,
        _ = shutdown.cancelled() => {
            connection.as_mut().graceful_shutdown();
            connection.await
        }
    };
    if let Err(e) = ended {
        // A client gone, or headers that never came: routine on a LAN.
        tracing::debug!(%peer, error = %e, "connection ended");
    }
}
