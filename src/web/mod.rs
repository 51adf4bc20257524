//! The shop's page: open `http://127.0.0.1:8151` (or the printed address on a tablet) to see
//! whether WeChat is logged in, scan the login QR code when it is not, and watch today's
//! payments come in.
//!
//! One small page (`page.html`, HTML, CSS and script inline, nothing fetched from
//! elsewhere: the shop may be offline) and a few read-only endpoints:
//!
//! | path | what |
//! |---|---|
//! | `/` | the page, in Chinese unless the browser prefers English (`?lang=en`/`zh` forces) |
//! | `/api/status` | session, last sync, speaker, ledger, and each sink's deliveries |
//! | `/api/today` | today's payments, total, count by kind, totals per hour |
//! | `/api/history` | totals per day, the last 30 days (`?days=N`, at most 366) |
//! | `/ledger.csv` | the payments of `?since=YYYY-MM-DD&until=YYYY-MM-DD` (default: 30 days) |
//! | `/qr.png` | the login QR code while one waits to be scanned, else 404 |
//! | `/events` | server-sent events: `status`, `today` (on connect), `payment` (each new one) |
//!
//! The daemon's supervisor publishes into [`Live`]; the page's server only reads it and
//! its own connection to the ledger. `access` says who may read and `guard` applies it to
//! each request; `page` serves the page, `api` the endpoints and `events` the stream, all
//! in the shapes of `views`. This file binds, routes and stops.

mod access;
mod api;
mod events;
mod guard;
mod page;
mod views;

use std::net::SocketAddr;
use std::sync::Arc;
use std::time::Duration;

use axum::Router;
use axum::http::StatusCode;
use axum::middleware;
use axum::response::{IntoResponse, Response};
use axum::routing::get;
use time::{Date, OffsetDateTime, UtcOffset};
use tokio::net::TcpListener;
use tokio_util::sync::CancellationToken;

use crate::config::Config;
use crate::ledger::report;
use crate::ledger::{Ledger, LedgerError, LedgerHandle};
use crate::live::Live;
use crate::paths::Paths;
use crate::payment::Payment;
use access::Access;
use views::Today;

/// How long the server waits for open requests after shutdown before it drops them.
const STOP_GRACE: Duration = Duration::from_secs(2);

/// Why the page cannot be served.
#[derive(Debug, thiserror::Error)]
pub enum WebError {
    #[error(
        "cannot listen on {addr} for the shop's page: {source} (another program on that port? set [web] listen, or enabled = false)"
    )]
    Bind {
        addr: SocketAddr,
        source: std::io::Error,
    },
    #[error("cannot keep the shop's page token in {path}: {source}")]
    Token {
        path: std::path::PathBuf,
        source: std::io::Error,
    },
    #[error(transparent)]
    Ledger(#[from] LedgerError),
}

/// The page's server, bound and ready: [`Server::run`] serves until shutdown.
pub struct Server {
    listener: TcpListener,
    addr: SocketAddr,
    app: Arc<App>,
    limits: crate::listener::Limits,
}

/// What every request reads.
struct App {
    live: Live,
    /// The page's own connection: reads never wait behind the supervisor's lock.
    ledger: LedgerHandle,
    /// The configured sinks, by the names the ledger keeps them under.
    sinks: Vec<String>,
    /// Days and hours are local at this offset (the daemon's).
    offset: UtcOffset,
    access: Access,
    shutdown: CancellationToken,
}

impl Server {
    /// Listens on `[web] listen`, reading `ledger`, and makes the token when the address
    /// is reachable from other devices (then logs the page's address with it).
    pub async fn bind(
        config: &Config,
        paths: &Paths,
        ledger: LedgerHandle,
        offset: UtcOffset,
        live: Live,
    ) -> Result<Server, WebError> {
        let listen = config.web.listen;
        let access = if access::reachable_from_elsewhere(listen) {
            let path = paths.web_token();
            let token = access::load_or_create_token(&path)
                .map_err(|source| WebError::Token { path, source })?;
            Access::with_token(token)
        } else {
            Access::loopback_only()
        };
        let listener = TcpListener::bind(listen)
            .await
            .map_err(|source| WebError::Bind {
                addr: listen,
                source,
            })?;
        let addr = listener.local_addr().map_err(|source| WebError::Bind {
            addr: listen,
            source,
        })?;
        log_addresses(addr, &access);
        let app = Arc::new(App {
            live,
            ledger,
            sinks: config.sink_names(),
            offset,
            access,
            shutdown: CancellationToken::new(),
        });
        let limits = crate::listener::Limits::of(&config.web);
        Ok(Server {
            listener,
            addr,
            app,
            limits,
        })
    }

    /// Where it listens (the port the system picked, for `listen = "…:0"`).
    pub fn local_addr(&self) -> SocketAddr {
        self.addr
    }

    /// Serves until `shutdown`, within `[web]`'s connection cap and header timeout
    /// ([`crate::listener`]); open event streams end then, and requests still running
    /// after a short grace are dropped.
    pub async fn run(self, shutdown: CancellationToken) {
        let Server {
            listener,
            app,
            limits,
            ..
        } = self;
        let streams = app.shutdown.clone();
        let serving = async {
            tokio::join!(
                crate::listener::serve("page", listener, router(app), limits, shutdown.clone()),
                async {
                    shutdown.cancelled().await;
                    streams.cancel();
                }
            )
        };
        tokio::select! {
            _ = serving => {}
            _ = async {
                shutdown.cancelled().await;
                tokio::time::sleep(STOP_GRACE).await;
            } => tracing::warn!("the shop's page did not stop in time; its connections are dropped"),
        }
    }
}

/// The page's address, and for other devices the address with the token.
fn log_addresses(addr: SocketAddr, access: &Access) {
    let Some(token) = access.token() else {
        tracing::info!(url = %format!("http://{addr}/"), "the shop's page (this computer only)");
        return;
    };
    let host = if addr.ip().is_unspecified() {
        lan_address().map_or_else(|| "THIS-COMPUTER".to_string(), |ip| ip.to_string())
    } else {
        addr.ip().to_string()
    };
    let host = if host.contains(':') {
        format!("[{host}]")
    } else {
        host
    };
    tracing::info!(
        url = %format!("http://{host}:{}/?token={token}", addr.port()),
        "the shop's page for other devices: open this address on the tablet (the token is in the state dir, web-token)"
    );
    tracing::info!(url = %format!("http://127.0.0.1:{}/", addr.port()), "the shop's page on this computer");
}

/// This computer's address on its network: the one a packet to the outside would leave
/// from. A UDP "connect" sends nothing; it only asks the routing table.
fn lan_address() -> Option<std::net::IpAddr> {
    let socket = std::net::UdpSocket::bind("0.0.0.0:0").ok()?;
    socket.connect("192.0.2.1:9").ok()?;
    let ip = socket.local_addr().ok()?.ip();
    (!ip.is_unspecified() && !ip.is_loopback()).then_some(ip)
}

/// One route per path of the table above, every one behind the guard.
fn router(app: Arc<App>) -> Router {
    Router::new()
        .route("/", get(page::serve))
        .route("/api/status", get(api::status))
        .route("/api/today", get(api::today))
        .route("/api/history", get(api::history))
        .route("/ledger.csv", get(api::csv))
        .route("/qr.png", get(api::qr_png))
        .route("/events", get(events::subscribe))
        .layer(middleware::from_fn_with_state(app.clone(), guard::guard))
        .with_state(app)
}

impl App {
    /// Runs `f` on the ledger's reader.
    async fn read<T: Send + 'static>(
        &self,
        f: impl FnOnce(&Ledger) -> Result<T, LedgerError> + Send + 'static,
    ) -> Result<T, LedgerError> {
        self.ledger.read(f).await
    }

    fn today_date(&self) -> Date {
        OffsetDateTime::now_utc().to_offset(self.offset).date()
    }

    /// Today's payments as `/api/today` and the event stream's first `today` send them.
    async fn today(self: &Arc<App>) -> Result<Today, LedgerError> {
        let date = self.today_date();
        let offset = self.offset;
        let (from, to) = report::day_range(date, date, &|_| offset);
        let entries = self.read(move |l| l.entries(from, to)).await?;
        let payments: Vec<Payment> = entries.into_iter().map(|e| e.payment).collect();
        Ok(Today::of(date, &payments, offset))
    }
}

/// A 500 for a failed ledger read: the reason goes to the log, not to the tablet.
fn ledger_failed(e: &LedgerError) -> Response {
    tracing::error!(error = %e, "the shop's page cannot read the ledger");
    (
        StatusCode::INTERNAL_SERVER_ERROR,
        "paysay cannot read its ledger; the log says why\n",
    )
        .into_response()
}

#[cfg(test)]
mod tests {
    use super::*;
    use axum::extract::{ConnectInfo, Request};
    use axum::http::{HeaderMap, header};

    /// The router as the server runs it, over a ledger in `dir`, with `access`.
    fn app(dir: &tempfile::TempDir, access: Access) -> (Router, Live) {
        let live = Live::new();
        let ledger = Ledger::open(&dir.path().join("ledger.sqlite3")).unwrap();
        let app = Arc::new(App {
            live: live.clone(),
            ledger: LedgerHandle::new(ledger).unwrap(),
            sinks: Vec::new(),
            offset: UtcOffset::UTC,
            access,
            shutdown: CancellationToken::new(),
        });
        (router(app), live)
    }

    /// A GET from `peer` with `headers`: the status and the response's headers.
    async fn get_from(
        router: &Router,
        peer: &str,
        uri: &str,
        headers: &[(header::HeaderName, &str)],
    ) -> (StatusCode, HeaderMap) {
        use tower::ServiceExt;
        let mut request = Request::builder()
            .uri(uri)
            .header(header::HOST, "192.168.1.10:8151");
        for (name, value) in headers {
            request = request.header(name, *value);
        }
        let mut request = request.body(axum::body::Body::empty()).unwrap();
        let peer: SocketAddr = format!("{peer}:50000").parse().unwrap();
        request.extensions_mut().insert(ConnectInfo(peer));
        let response = router.clone().oneshot(request).await.unwrap();
        (response.status(), response.headers().clone())
    }

    const TOKEN: &str = "00112233445566778899aabbccddeeff";

    #[tokio::test]
    async fn a_tablet_on_the_lan_needs_the_token_for_every_endpoint() {
        let dir = tempfile::tempdir().unwrap();
        let (router, live) = app(&dir, Access::with_token(TOKEN.into()));
        live.new_qr("https://login.weixin.qq.com/l/x".into());
        let tablet = "192.168.1.23";
        for path in [
            "/",
            "/api/status",
            "/api/today",
            "/api/history",
            "/ledger.csv",
            "/qr.png",
            "/events",
        ] {
            let (code, _) = get_from(&router, tablet, path, &[]).await;
            assert_eq!(code, StatusCode::FORBIDDEN, "{path} without a token");
            let wrong = format!("{path}?token=00112233445566778899aabbccddeefe");
            let (code, _) = get_from(&router, tablet, &wrong, &[]).await;
            assert_eq!(code, StatusCode::FORBIDDEN, "{path} with a wrong token");
            if path == "/events" {
                continue; // a stream: its 200 is checked below without reading it
            }
            let (code, _) = get_from(&router, tablet, &format!("{path}?token={TOKEN}"), &[]).await;
            assert_eq!(code, StatusCode::OK, "{path} with the token");
        }
        let (code, headers) =
            get_from(&router, tablet, &format!("/events?token={TOKEN}"), &[]).await;
        assert_eq!(code, StatusCode::OK);
        assert_eq!(headers[header::CONTENT_TYPE], "text/event-stream");
    }

    #[tokio::test]
    async fn the_printed_address_leaves_a_cookie_that_lets_the_tablet_back_in() {
        let dir = tempfile::tempdir().unwrap();
        let (router, _live) = app(&dir, Access::with_token(TOKEN.into()));
        let tablet = "192.168.1.23";
        let (code, headers) = get_from(&router, tablet, &format!("/?token={TOKEN}"), &[]).await;
        assert_eq!(code, StatusCode::OK);
        let set = headers[header::SET_COOKIE].to_str().unwrap();
        assert!(set.starts_with(&format!("paysay_token={TOKEN};")), "{set}");
        assert!(
            set.contains("HttpOnly") && set.contains("SameSite=Strict"),
            "{set}"
        );
        let cookie = format!("paysay_token={TOKEN}");
        let (code, _) = get_from(&router, tablet, "/api/today", &[(header::COOKIE, &cookie)]).await;
        assert_eq!(code, StatusCode::OK);
        let bearer = format!("Bearer {TOKEN}");
        let (code, _) = get_from(
            &router,
            tablet,
            "/api/today",
            &[(header::AUTHORIZATION, &bearer)],
        )
        .await;
        assert_eq!(code, StatusCode::OK);
        let (code, _) = get_from(
            &router,
            tablet,
            "/api/today",
            &[(header::COOKIE, "paysay_token=0")],
        )
        .await;
        assert_eq!(code, StatusCode::FORBIDDEN);
    }

    #[tokio::test]
    async fn without_a_token_made_no_other_device_gets_in() {
        let dir = tempfile::tempdir().unwrap();
        let (router, _live) = app(&dir, Access::loopback_only());
        let (code, _) = get_from(&router, "10.1.2.3", &format!("/?token={TOKEN}"), &[]).await;
        assert_eq!(code, StatusCode::FORBIDDEN);
    }
}
