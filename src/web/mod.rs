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
//! its own connection to the ledger. [`access`] says who may read.

pub mod access;

use std::collections::{BTreeMap, HashSet};
use std::convert::Infallible;
use std::net::SocketAddr;
use std::sync::Arc;
use std::time::Duration;

use axum::Router;
use axum::extract::{ConnectInfo, Query, Request, State};
use axum::http::{HeaderMap, HeaderValue, StatusCode, header};
use axum::middleware::{self, Next};
use axum::response::sse::{Event, KeepAlive, Sse};
use axum::response::{Html, IntoResponse, Response};
use axum::routing::get;
use futures_util::Stream;
use serde::{Deserialize, Serialize};
use time::{Date, OffsetDateTime, UtcOffset};
use tokio::net::TcpListener;
use tokio::sync::broadcast::error::RecvError;
use tokio_util::sync::CancellationToken;

use crate::config::Config;
use crate::ledger::report::{self, CSV_HEADER, DayTotals, Tally, csv_row};
use crate::ledger::{Ledger, LedgerError, LedgerHandle, SinkSummary};
use crate::live::{Live, SessionState, Status};
use crate::money::Yuan;
use crate::paths::Paths;
use crate::payment::{Payment, PaymentKind};
use access::{Access, Refusal};

/// The page, with `{{lang}}` and `{{kinds}}` where the server puts the language and the
/// payment kinds' names in it.
const PAGE: &str = include_str!("page.html");

/// Days of history the page shows, and the most a request may ask for.
const HISTORY_DAYS: u32 = 30;
const HISTORY_DAYS_MAX: u32 = 366;

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
        let limits = crate::listener::Limits {
            // Bounded at load (1-4096).
            max_connections: config.web.max_connections as usize,
            header_timeout: Duration::from_secs(config.web.header_timeout_secs),
        };
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

fn router(app: Arc<App>) -> Router {
    Router::new()
        .route("/", get(page))
        .route("/api/status", get(status))
        .route("/api/today", get(today))
        .route("/api/history", get(history))
        .route("/ledger.csv", get(csv))
        .route("/qr.png", get(qr_png))
        .route("/events", get(events))
        .layer(middleware::from_fn_with_state(app.clone(), guard))
        .with_state(app)
}

/// The access rule ([`access`]) on every request, and headers that keep the page's data
/// out of caches and other sites' frames.
async fn guard(State(app): State<Arc<App>>, request: Request, next: Next) -> Response {
    let peer = request
        .extensions()
        .get::<ConnectInfo<SocketAddr>>()
        .map(|ConnectInfo(addr)| addr.ip());
    let headers = request.headers();
    let host = headers.get(header::HOST).and_then(|h| h.to_str().ok());
    let from_query = query_token(request.uri().query());
    let presented = from_query
        .clone()
        .or_else(|| bearer(headers))
        .or_else(|| cookie(headers, access::COOKIE));
    // No peer address is a server set up without ConnectInfo: refuse rather than guess.
    let verdict = match peer {
        Some(peer) => app.access.check(peer, host, presented.as_deref()),
        None => Err(Refusal::NeedsToken),
    };
    if let Err(refusal) = verdict {
        return refused(refusal);
    }
    let mut response = next.run(request).await;
    let headers = response.headers_mut();
    headers.insert(header::CACHE_CONTROL, HeaderValue::from_static("no-store"));
    headers.insert(
        header::X_CONTENT_TYPE_OPTIONS,
        HeaderValue::from_static("nosniff"),
    );
    headers.insert(
        header::CONTENT_SECURITY_POLICY,
        HeaderValue::from_static(
            "default-src 'none'; img-src 'self'; style-src 'unsafe-inline'; script-src 'unsafe-inline'; connect-src 'self'; frame-ancestors 'none'",
        ),
    );
    // The printed address carries the token once; the cookie keeps the tablet in.
    if let (Some(token), Some(given)) = (app.access.token(), from_query)
        && given == token
        && let Ok(value) = HeaderValue::from_str(&format!(
            "{}={token}; Path=/; Max-Age=31536000; HttpOnly; SameSite=Strict",
            access::COOKIE
        ))
    {
        headers.insert(header::SET_COOKIE, value);
    }
    response
}

fn refused(refusal: Refusal) -> Response {
    let why = match refusal {
        Refusal::NeedsToken => {
            "paysay: this page opens from another device only with the address paysay printed at start (it ends in ?token=...). 请使用 paysay 启动时打印的带 token 的地址打开。\n"
        }
        Refusal::ForeignHost => {
            "paysay: open the page as http://127.0.0.1:PORT/ on this computer, or with the address paysay printed (with ?token=...).\n"
        }
    };
    (
        StatusCode::FORBIDDEN,
        [(header::CONTENT_TYPE, "text/plain; charset=utf-8")],
        why,
    )
        .into_response()
}

fn query_token(query: Option<&str>) -> Option<String> {
    url::form_urlencoded::parse(query?.as_bytes())
        .find(|(key, _)| key == "token")
        .map(|(_, value)| value.into_owned())
}

fn bearer(headers: &HeaderMap) -> Option<String> {
    let value = headers.get(header::AUTHORIZATION)?.to_str().ok()?;
    value.strip_prefix("Bearer ").map(|t| t.trim().to_string())
}

fn cookie(headers: &HeaderMap, name: &str) -> Option<String> {
    headers
        .get_all(header::COOKIE)
        .iter()
        .filter_map(|v| v.to_str().ok())
        .flat_map(|v| v.split(';'))
        .filter_map(|pair| pair.trim().split_once('='))
        .find(|(key, _)| *key == name)
        .map(|(_, value)| value.to_string())
}

/// The page's language: Chinese, unless the browser's first choice is English.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Lang {
    Zh,
    En,
}

impl Lang {
    fn tag(self) -> &'static str {
        match self {
            Lang::Zh => "zh-CN",
            Lang::En => "en",
        }
    }

    /// Each payment kind's name in this language, as a script's object literal
    /// (`{"collection":"二维码收款",…}`): the page shows the words the owner's summary uses.
    fn kind_labels(self) -> String {
        let labels: serde_json::Map<String, serde_json::Value> = PaymentKind::ALL
            .into_iter()
            .map(|kind| {
                let label = match self {
                    Lang::Zh => kind.label_zh(),
                    Lang::En => kind.label_en(),
                };
                (kind.as_str().to_string(), label.into())
            })
            .collect();
        serde_json::Value::Object(labels).to_string()
    }

    /// From `Accept-Language`: the language of the highest weight (the first among
    /// equals) decides; anything but English is Chinese.
    pub fn negotiate(accept: Option<&str>) -> Lang {
        let best = accept
            .unwrap_or_default()
            .split(',')
            .filter_map(|item| {
                let mut parts = item.split(';');
                let tag = parts.next()?.trim();
                let q = parts
                    .find_map(|p| p.trim().strip_prefix("q="))
                    .map_or(1.0, |q| q.trim().parse::<f32>().unwrap_or(0.0));
                (!tag.is_empty() && q > 0.0).then_some((tag, q))
            })
            .fold(None::<(&str, f32)>, |best, (tag, q)| match best {
                Some((_, best_q)) if best_q >= q => best,
                _ => Some((tag, q)),
            });
        match best {
            Some((tag, _)) if tag.get(..2).is_some_and(|p| p.eq_ignore_ascii_case("en")) => {
                Lang::En
            }
            _ => Lang::Zh,
        }
    }
}

#[derive(Debug, Deserialize)]
struct PageQuery {
    lang: Option<String>,
}

async fn page(Query(q): Query<PageQuery>, headers: HeaderMap) -> Response {
    let lang = match q.lang.as_deref() {
        Some("en") => Lang::En,
        Some("zh") => Lang::Zh,
        _ => Lang::negotiate(
            headers
                .get(header::ACCEPT_LANGUAGE)
                .and_then(|v| v.to_str().ok()),
        ),
    };
    let page = PAGE
        .replace("{{lang}}", lang.tag())
        .replace("{{kinds}}", &lang.kind_labels());
    let mut response = Html(page).into_response();
    response
        .headers_mut()
        .insert(header::VARY, HeaderValue::from_static("Accept-Language"));
    response
}

/// `/api/status`: the live status and each sink's deliveries.
#[derive(Debug, Serialize)]
struct StatusView {
    #[serde(flatten)]
    status: Status,
    sinks: Vec<SinkSummary>,
    /// The server's clock, unix seconds: "last sync 12 s ago" needs no trust in the
    /// tablet's clock.
    now: i64,
}

async fn status(State(app): State<Arc<App>>) -> Response {
    let status = app.live.watch_status().borrow().clone();
    let sinks = app.sinks.clone();
    match app.read(move |l| l.sink_summary(&sinks)).await {
        Ok(sinks) => axum::Json(StatusView {
            status,
            sinks,
            now: crate::now_unix(),
        })
        .into_response(),
        Err(e) => ledger_failed(&e),
    }
}

/// One payment as the page shows it; times are local at the daemon's offset.
#[derive(Debug, Clone, Serialize)]
pub struct PaymentView {
    pub msg_id: String,
    pub amount_fen: u64,
    pub amount_yuan: String,
    pub kind: &'static str,
    /// `wechat`, `alipay`, `unionpay`.
    pub wallet: &'static str,
    /// `web`, `phone`, `both`.
    pub source: &'static str,
    pub payer: Option<String>,
    pub remark: Option<String>,
    /// Unix seconds.
    pub time: i64,
    /// `14:05:09`.
    pub clock: String,
    /// `2024-05-01`.
    pub day: String,
    /// 0–23.
    pub hour: u8,
}

impl PaymentView {
    fn new(p: &Payment, offset: UtcOffset) -> PaymentView {
        let at = OffsetDateTime::from_unix_timestamp(p.time)
            .unwrap_or(OffsetDateTime::UNIX_EPOCH)
            .to_offset(offset);
        let (h, m, s) = at.time().as_hms();
        PaymentView {
            msg_id: p.msg_id.clone(),
            amount_fen: p.amount_fen,
            amount_yuan: Yuan(p.amount_fen).to_string(),
            kind: p.kind.as_str(),
            wallet: p.wallet.as_str(),
            source: p.source.as_str(),
            payer: p.payer.clone(),
            remark: p.remark.clone(),
            time: p.time,
            clock: format!("{h:02}:{m:02}:{s:02}"),
            day: at.date().to_string(),
            hour: h,
        }
    }
}

/// `/api/today`, and the `today` event.
#[derive(Debug, Clone, Serialize)]
pub struct Today {
    pub date: String,
    pub total_fen: u64,
    pub total_yuan: String,
    pub count: u64,
    /// Count and total per kind (`collection`, `transfer`, …).
    pub by_kind: BTreeMap<&'static str, Tally>,
    /// Count and total per wallet (`wechat`, `alipay`, `unionpay`).
    pub by_wallet: BTreeMap<&'static str, Tally>,
    /// Total fen per local hour, 0–23.
    pub hourly_fen: [u64; 24],
    /// Oldest first.
    pub payments: Vec<PaymentView>,
}

impl Today {
    /// The day's sums are [`DayTotals`]'s, the same as the owner's daily summary; only the
    /// hours, which the summary does not show, are added up here.
    fn of(date: Date, payments: &[Payment], offset: UtcOffset) -> Today {
        let totals = DayTotals::of(payments);
        let payments: Vec<PaymentView> = payments
            .iter()
            .map(|p| PaymentView::new(p, offset))
            .collect();
        let mut hourly_fen = [0u64; 24];
        for p in &payments {
            let hour = &mut hourly_fen[usize::from(p.hour) % 24];
            *hour = hour.saturating_add(p.amount_fen);
        }
        Today {
            date: date.to_string(),
            total_fen: totals.all.total_fen,
            total_yuan: Yuan(totals.all.total_fen).to_string(),
            count: totals.all.count,
            by_kind: totals
                .by_kind
                .into_iter()
                .map(|(kind, tally)| (kind.as_str(), tally))
                .collect(),
            by_wallet: totals
                .by_wallet
                .into_iter()
                .map(|(wallet, tally)| (wallet.as_str(), tally))
                .collect(),
            hourly_fen,
            payments,
        }
    }
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

    async fn today(self: &Arc<App>) -> Result<Today, LedgerError> {
        let date = self.today_date();
        let offset = self.offset;
        let (from, to) = report::day_range(date, date, &|_| offset);
        let entries = self.read(move |l| l.entries(from, to)).await?;
        let payments: Vec<Payment> = entries.into_iter().map(|e| e.payment).collect();
        Ok(Today::of(date, &payments, offset))
    }
}

fn ledger_failed(e: &LedgerError) -> Response {
    tracing::error!(error = %e, "the shop's page cannot read the ledger");
    (
        StatusCode::INTERNAL_SERVER_ERROR,
        "paysay cannot read its ledger; the log says why\n",
    )
        .into_response()
}

async fn today(State(app): State<Arc<App>>) -> Response {
    match app.today().await {
        Ok(today) => axum::Json(today).into_response(),
        Err(e) => ledger_failed(&e),
    }
}

#[derive(Debug, Deserialize)]
struct HistoryQuery {
    days: Option<u32>,
}

/// One day of `/api/history`.
#[derive(Debug, Serialize)]
struct DayView {
    date: String,
    total_fen: u64,
    total_yuan: String,
    count: u64,
}

async fn history(State(app): State<Arc<App>>, Query(q): Query<HistoryQuery>) -> Response {
    let days = q.days.unwrap_or(HISTORY_DAYS).clamp(1, HISTORY_DAYS_MAX);
    let until = app.today_date();
    let since = until
        .checked_sub(time::Duration::days(i64::from(days - 1)))
        .unwrap_or(until);
    let offset = app.offset;
    let (from, to) = report::day_range(since, until, &|_| offset);
    let totals = match app
        .read(move |l| l.daily_totals(from, to, offset.whole_seconds()))
        .await
    {
        Ok(totals) => totals,
        Err(e) => return ledger_failed(&e),
    };
    let by_day: BTreeMap<i64, (u64, u64)> = totals
        .iter()
        .map(|d| (d.day, (d.total_fen, d.count)))
        .collect();
    // Every day of the span, those without payments at zero, oldest first.
    let mut views = Vec::with_capacity(days as usize);
    let mut date = since;
    loop {
        let day = i64::from(date.to_julian_day() - UNIX_EPOCH_JULIAN_DAY);
        let (total_fen, count) = by_day.get(&day).copied().unwrap_or((0, 0));
        views.push(DayView {
            date: date.to_string(),
            total_fen,
            total_yuan: Yuan(total_fen).to_string(),
            count,
        });
        match date.next_day() {
            Some(next) if next <= until => date = next,
            _ => break,
        }
    }
    axum::Json(views).into_response()
}

/// 1970-01-01 as a Julian day, to turn the ledger's day numbers into dates.
const UNIX_EPOCH_JULIAN_DAY: i32 = 2_440_588;

#[derive(Debug, Deserialize)]
struct CsvQuery {
    since: Option<String>,
    until: Option<String>,
}

fn parse_date(s: &str) -> Option<Date> {
    let format = time::macros::format_description!("[year]-[month]-[day]");
    Date::parse(s.trim(), &format).ok()
}

async fn csv(State(app): State<Arc<App>>, Query(q): Query<CsvQuery>) -> Response {
    let until = match q.until.as_deref() {
        None => app.today_date(),
        Some(s) => match parse_date(s) {
            Some(d) => d,
            None => return bad_date("until"),
        },
    };
    let since = match q.since.as_deref() {
        None => until
            .checked_sub(time::Duration::days(i64::from(HISTORY_DAYS - 1)))
            .unwrap_or(until),
        Some(s) => match parse_date(s) {
            Some(d) => d,
            None => return bad_date("since"),
        },
    };
    // The whole answer is built in memory: a span from the query is bounded like
    // /api/history's, so `since=0001-01-01` cannot ask for the whole ledger at once.
    let days = (until - since).whole_days() + 1;
    if !(1..=i64::from(HISTORY_DAYS_MAX)).contains(&days) {
        return (
            StatusCode::BAD_REQUEST,
            format!(
                "since must be on or before until, and at most {HISTORY_DAYS_MAX} days before it\n"
            ),
        )
            .into_response();
    }
    let offset = app.offset;
    let (from, to) = report::day_range(since, until, &|_| offset);
    let entries = match app.read(move |l| l.entries(from, to)).await {
        Ok(entries) => entries,
        Err(e) => return ledger_failed(&e),
    };
    let mut body = String::from(CSV_HEADER);
    body.push_str("\r\n");
    for entry in &entries {
        body.push_str(&csv_row(entry, &|_| offset));
        body.push_str("\r\n");
    }
    let disposition = format!("attachment; filename=\"paysay-{since}-{until}.csv\"");
    (
        [
            (header::CONTENT_TYPE, "text/csv; charset=utf-8".to_string()),
            (header::CONTENT_DISPOSITION, disposition),
        ],
        body,
    )
        .into_response()
}

fn bad_date(key: &str) -> Response {
    (
        StatusCode::BAD_REQUEST,
        format!("{key} must be a date like 2024-05-01\n"),
    )
        .into_response()
}

async fn qr_png(State(app): State<Arc<App>>) -> Response {
    let url = match &app.live.watch_status().borrow().session {
        SessionState::WaitingForScan { url, .. } => url.clone(),
        _ => {
            return (
                StatusCode::NOT_FOUND,
                "no QR code is waiting to be scanned\n",
            )
                .into_response();
        }
    };
    match crate::session::qr::png(&url) {
        Ok(png) => ([(header::CONTENT_TYPE, "image/png")], png).into_response(),
        Err(e) => {
            tracing::error!(error = %e, "cannot draw the login QR code for the page");
            StatusCode::INTERNAL_SERVER_ERROR.into_response()
        }
    }
}

/// `/events`: `status` now and on each change, `today` on connect (and after falling
/// behind), `payment` for each payment recorded after that. Subscribed before the day is
/// read, so no payment falls between the two; one in both is sent once.
async fn events(State(app): State<Arc<App>>) -> Response {
    let status = app.live.watch_status();
    let payments = app.live.subscribe_payments();
    let today = match app.today().await {
        Ok(today) => today,
        Err(e) => return ledger_failed(&e),
    };
    let stream = EventStream {
        app,
        status,
        payments,
        seen: today.payments.iter().map(|p| p.msg_id.clone()).collect(),
        queued: vec![today_event(&today)],
        status_sent: false,
    };
    Sse::new(stream.into_stream())
        .keep_alive(KeepAlive::new().interval(Duration::from_secs(15)))
        .into_response()
}

struct EventStream {
    app: Arc<App>,
    status: tokio::sync::watch::Receiver<Status>,
    payments: tokio::sync::broadcast::Receiver<Payment>,
    /// Today's payments already sent (in `today` or as `payment`).
    seen: HashSet<String>,
    /// Sent before anything else, first last.
    queued: Vec<Event>,
    status_sent: bool,
}

impl EventStream {
    fn into_stream(self) -> impl Stream<Item = Result<Event, Infallible>> {
        futures_util::stream::unfold(self, |mut s| async move {
            let event = s.next().await?;
            Some((Ok(event), s))
        })
    }

    /// The next event; `None` ends the stream (shutdown).
    async fn next(&mut self) -> Option<Event> {
        if !self.status_sent {
            self.status_sent = true;
            let status = self.status.borrow_and_update().clone();
            return Some(json_event("status", &status));
        }
        if let Some(event) = self.queued.pop() {
            return Some(event);
        }
        loop {
            tokio::select! {
                _ = self.app.shutdown.cancelled() => return None,
                changed = self.status.changed() => {
                    changed.ok()?;
                    let status = self.status.borrow_and_update().clone();
                    return Some(json_event("status", &status));
                }
                received = self.payments.recv() => match received {
                    Ok(payment) => {
                        if !self.seen.insert(payment.msg_id.clone()) {
                            continue;
                        }
                        return Some(json_event("payment", &PaymentView::new(&payment, self.app.offset)));
                    }
                    // Fell behind: the day again, whole.
                    Err(RecvError::Lagged(_)) => {
                        let today = self.app.today().await.ok()?;
                        self.seen = today.payments.iter().map(|p| p.msg_id.clone()).collect();
                        return Some(today_event(&today));
                    }
                    Err(RecvError::Closed) => return None,
                },
            }
        }
    }
}

fn today_event(today: &Today) -> Event {
    json_event("today", today)
}

fn json_event(name: &str, data: &impl Serialize) -> Event {
    // Plain structs of strings and numbers always serialize.
    let json = serde_json::to_string(data).unwrap_or_else(|_| "null".to_string());
    Event::default().event(name).data(json)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn chinese_unless_english_comes_first() {
        for (header, lang) in [
            (None, Lang::Zh),
            (Some(""), Lang::Zh),
            (Some("zh-CN,zh;q=0.9,en;q=0.8"), Lang::Zh),
            (Some("en-US,en;q=0.9,zh-CN;q=0.8"), Lang::En),
            (Some("EN"), Lang::En),
            (Some("zh;q=0.5, en-GB;q=0.8"), Lang::En),
            (Some("fr-FR,fr;q=0.9"), Lang::Zh),
            (Some("en;q=0, zh"), Lang::Zh),
        ] {
            assert_eq!(Lang::negotiate(header), lang, "{header:?}");
        }
    }

    #[test]
    fn the_page_names_kinds_as_the_summary_does() {
        let zh: serde_json::Value = serde_json::from_str(&Lang::Zh.kind_labels()).unwrap();
        assert_eq!(zh["collection"], PaymentKind::Collection.label_zh());
        assert_eq!(zh["collection"], "二维码收款");
        let en: serde_json::Value = serde_json::from_str(&Lang::En.kind_labels()).unwrap();
        assert_eq!(en["red_packet"], "red packet");
        assert_eq!(en.as_object().unwrap().len(), PaymentKind::ALL.len());
    }

    #[test]
    fn tokens_come_from_the_query_a_bearer_header_or_the_cookie() {
        assert_eq!(
            query_token(Some("lang=en&token=abc")).as_deref(),
            Some("abc")
        );
        assert_eq!(query_token(Some("lang=en")), None);
        let mut headers = HeaderMap::new();
        headers.insert(
            header::AUTHORIZATION,
            HeaderValue::from_static("Bearer xyz"),
        );
        headers.insert(
            header::COOKIE,
            HeaderValue::from_static("a=1; paysay_token=def; b=2"),
        );
        assert_eq!(bearer(&headers).as_deref(), Some("xyz"));
        assert_eq!(cookie(&headers, access::COOKIE).as_deref(), Some("def"));
    }

    #[test]
    fn today_sums_by_kind_and_local_hour() {
        let payment = |id: &str, fen, time, kind| Payment {
            msg_id: id.into(),
            amount_fen: fen,
            kind,
            payer: None,
            remark: None,
            daily_count: None,
            daily_total_fen: None,
            time,
            account: "微信支付".into(),
            transfer_id: None,
            wallet: crate::payment::Wallet::WeChat,
            source: crate::payment::Source::Web,
        };
        use crate::payment::PaymentKind::{Collection, Transfer};
        // 2024-05-01T01:30Z and 02:10Z are 09:30 and 10:10 at +08:00.
        let ps = [
            payment("a", 1250, 1_714_527_000, Collection),
            payment("b", 1, 1_714_529_400, Collection),
            payment("c", 20000, 1_714_529_500, Transfer),
        ];
        let offset = UtcOffset::from_hms(8, 0, 0).unwrap();
        let today = Today::of(time::macros::date!(2024 - 05 - 01), &ps, offset);
        assert_eq!((today.total_fen, today.count), (21251, 3));
        assert_eq!(today.total_yuan, "212.51");
        assert_eq!(today.by_kind["collection"].count, 2);
        assert_eq!(today.by_kind["transfer"].total_fen, 20000);
        assert_eq!(today.hourly_fen[9], 1250);
        assert_eq!(today.hourly_fen[10], 20001);
        assert_eq!(today.payments[0].clock, "09:30:00");
        assert_eq!(today.payments[2].day, "2024-05-01");
    }

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

    #[test]
    fn the_page_is_small_and_self_contained() {
        assert!(PAGE.len() < 50 * 1024, "{} bytes", PAGE.len());
        assert!(PAGE.contains("{{lang}}") && PAGE.contains("{{kinds}}"));
        for outside in ["http://", "https://", "//cdn", "@import"] {
            assert!(!PAGE.contains(outside), "the page refers to {outside}");
        }
    }
}
