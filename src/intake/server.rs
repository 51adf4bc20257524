//! The intake's HTTP side: `POST /intake/smsforwarder`, `GET /appHeart`, `GET /appPush`,
//! served through [`crate::listener`] (the connection cap and header timeout the page has:
//! this listener faces the shop's LAN too), with bodies capped at [`MAX_BODY`], a rate per
//! source address, and the phone's comings and goings.
//!
//! Every request is checked before anything in it is believed: its signature with
//! `[intake] secret`, its timestamp against this computer's clock, and that its signature
//! was not taken before. What a request carries is never logged raw (escaped) and the
//! secret never at all.

use std::collections::HashMap;
use std::net::{IpAddr, SocketAddr};
use std::sync::{Arc, Mutex, MutexGuard};
use std::time::Duration;

use axum::Router;
use axum::body::Bytes;
use axum::extract::{ConnectInfo, DefaultBodyLimit, Query, State};
use axum::http::{HeaderMap, StatusCode, header};
use axum::response::{IntoResponse, Response};
use axum::routing::{get, post};
use serde::Deserialize;
use tokio::net::TcpListener;
use tokio::sync::mpsc;
use tokio_util::sync::CancellationToken;

use super::sign::{self, Refusal, Replays};
use super::{Forwarder, IntakeEvent, PhoneNotice};
use crate::config::IntakeConfig;
use crate::listener::Limits;
use crate::money::{MAX_PAYMENT_FEN, parse_yuan};
use crate::payment::Wallet;
use crate::payment::notice::{self, NoticePayment};
use crate::sinks::vmq::now_ms;
use crate::text::Escaped;

/// The largest request body: a notice is a few hundred bytes.
pub const MAX_BODY: usize = 64 * 1024;

/// Requests one source address may make in a burst, and how many more it earns a second:
/// a phone sends a heartbeat every 30 s and a notice per payment, a busy counter a few a
/// second; a flood of thousands is held to this.
const BURST: f64 = 60.0;
const PER_SECOND: f64 = 20.0;
/// Source addresses remembered for the rate; beyond it the table starts again (only a
/// bound on memory: a shop's LAN has a handful).
const MAX_SOURCES: usize = 1024;

/// How often the phone's silence is looked at.
const LIVENESS_TICK: Duration = Duration::from_secs(1);

/// Why the intake cannot listen.
#[derive(Debug, thiserror::Error)]
pub enum IntakeError {
    #[error(
        "cannot listen on {addr} for the phone's notices: {source} (another program on that port? set [intake] listen)"
    )]
    Bind {
        addr: SocketAddr,
        source: std::io::Error,
    },
}

/// The intake, bound and ready: [`Server::run`] serves until shutdown.
pub struct Server {
    listener: TcpListener,
    addr: SocketAddr,
    app: Arc<App>,
    phone_timeout: Duration,
    limits: Limits,
}

/// What every request reads.
struct App {
    secret: String,
    events: mpsc::UnboundedSender<IntakeEvent>,
    replays: Mutex<Replays>,
    rates: Mutex<HashMap<IpAddr, Bucket>>,
    phone: Mutex<Phone>,
    /// Notices read as no payment, said once each (an app, a title) per run.
    ignored: Mutex<std::collections::HashSet<String>>,
}

/// What is known of the phone.
#[derive(Debug, Default)]
struct Phone {
    /// When it was last heard from (a signed request), tokio time.
    last: Option<tokio::time::Instant>,
    /// It has sent heartbeats: its silence means something.
    beats: bool,
    /// Said offline, and not back since.
    offline: bool,
}

/// A token bucket per source address.
#[derive(Debug, Clone, Copy)]
struct Bucket {
    tokens: f64,
    at: tokio::time::Instant,
}

impl Server {
    /// Listens on `[intake] listen`; events go down `events`.
    pub async fn bind(
        config: &IntakeConfig,
        limits: Limits,
        events: mpsc::UnboundedSender<IntakeEvent>,
    ) -> Result<Server, IntakeError> {
        let listener =
            TcpListener::bind(config.listen)
                .await
                .map_err(|source| IntakeError::Bind {
                    addr: config.listen,
                    source,
                })?;
        let addr = listener.local_addr().map_err(|source| IntakeError::Bind {
            addr: config.listen,
            source,
        })?;
        tracing::info!(%addr, "listening for the phone's payment notices (SmsForwarder: POST /intake/smsforwarder; V免签 app: host/key)");
        Ok(Server {
            listener,
            addr,
            app: Arc::new(App {
                secret: config.secret.clone(),
                events,
                replays: Mutex::default(),
                rates: Mutex::default(),
                phone: Mutex::default(),
                ignored: Mutex::default(),
            }),
            phone_timeout: Duration::from_secs(config.phone_timeout_secs),
            limits,
        })
    }

    /// Where it listens (the port the system picked, for `listen = "…:0"`).
    pub fn local_addr(&self) -> SocketAddr {
        self.addr
    }

    /// Serves until `shutdown`, and watches the phone's silence meanwhile.
    pub async fn run(self, shutdown: CancellationToken) {
        let Server {
            listener,
            app,
            phone_timeout,
            limits,
            ..
        } = self;
        let router = router(Arc::clone(&app));
        tokio::join!(
            crate::listener::serve("intake", listener, router, limits, shutdown.clone()),
            watch_phone(app, phone_timeout, shutdown),
        );
    }
}

fn router(app: Arc<App>) -> Router {
    Router::new()
        .route("/intake/smsforwarder", post(smsforwarder))
        .route("/appHeart", get(app_heart))
        .route("/appPush", get(app_push))
        .layer(DefaultBodyLimit::max(MAX_BODY))
        .with_state(app)
}

fn lock<T>(m: &Mutex<T>) -> MutexGuard<'_, T> {
    // Each map stays usable whatever a panicking holder left half done.
    m.lock().unwrap_or_else(|e| e.into_inner())
}

impl App {
    /// Whether `ip` may make one more request now.
    fn allow(&self, ip: IpAddr) -> bool {
        let now = tokio::time::Instant::now();
        let mut rates = lock(&self.rates);
        if rates.len() >= MAX_SOURCES && !rates.contains_key(&ip) {
            rates.clear();
        }
        let bucket = rates.entry(ip).or_insert(Bucket {
            tokens: BURST,
            at: now,
        });
        let earned = now.duration_since(bucket.at).as_secs_f64() * PER_SECOND;
        bucket.tokens = (bucket.tokens + earned).min(BURST);
        bucket.at = now;
        if bucket.tokens < 1.0 {
            return false;
        }
        bucket.tokens -= 1.0;
        true
    }

    /// The timestamp in the window and the signature not seen before; taken then.
    fn fresh(&self, timestamp: &str, sign: &str) -> Result<(), Refusal> {
        let now = now_ms();
        let t = sign::check_clock(timestamp, now)?;
        lock(&self.replays).take(sign, t, now)
    }

    /// A signed request came: the phone is there (and back, if it was said offline).
    fn heard(&self, forwarder: Forwarder, heartbeat: bool) {
        let back = {
            let mut phone = lock(&self.phone);
            let first = phone.last.is_none();
            phone.last = Some(tokio::time::Instant::now());
            phone.beats |= heartbeat;
            first || std::mem::take(&mut phone.offline)
        };
        if back {
            tracing::info!(forwarder = forwarder.as_str(), "the shop's phone is heard");
            let _ = self.events.send(IntakeEvent::PhoneOnline);
        }
        let _ = self.events.send(IntakeEvent::Heard(forwarder));
    }

    /// A notice read as `paid`, or logged as no payment.
    fn notice(&self, forwarded: Forwarded, read: Result<Option<NoticePayment>, String>) {
        let Forwarded {
            forwarder,
            id,
            app,
            title,
            text,
            time,
        } = forwarded;
        match read {
            Ok(Some(paid)) => {
                tracing::info!(forwarder = forwarder.as_str(), wallet = %paid.wallet, amount = %crate::money::Yuan(paid.amount_fen), "payment notice from the phone");
                let _ = self.events.send(IntakeEvent::Notice(PhoneNotice {
                    wallet: paid.wallet,
                    amount_fen: paid.amount_fen,
                    time,
                    id,
                    forwarder,
                    app,
                    title,
                    text,
                }));
            }
            Ok(None) => {
                let key = format!("{}|{title}", app.as_deref().unwrap_or(""));
                let mut ignored = lock(&self.ignored);
                if ignored.len() < 256 && ignored.insert(key) {
                    tracing::info!(forwarder = forwarder.as_str(), app = %Escaped(app.unwrap_or_default()), title = %Escaped(&title), "a notice from the phone that is no payment (said once per app and title)");
                }
            }
            Err(why) => tracing::warn!(
                forwarder = forwarder.as_str(),
                app = %Escaped(app.unwrap_or_default()),
                title = %Escaped(&title),
                text = %Escaped(&text),
                why = %Escaped(&why),
                "a payment notice from the phone that cannot be read; check the phone"
            ),
        }
    }
}

/// What a forwarder sent of one notification, checked and not yet read.
struct Forwarded {
    forwarder: Forwarder,
    /// Unique per request: see [`id_of`].
    id: String,
    app: Option<String>,
    title: String,
    text: String,
    /// Unix seconds, the forwarder's timestamp.
    time: i64,
}

/// Looks at the phone's silence each second: a phone that has sent heartbeats and then
/// nothing for `timeout` is said offline once, until it is heard again.
async fn watch_phone(app: Arc<App>, timeout: Duration, shutdown: CancellationToken) {
    let mut tick = tokio::time::interval(LIVENESS_TICK);
    loop {
        tokio::select! {
            _ = shutdown.cancelled() => return,
            _ = tick.tick() => {}
        }
        let went = {
            let mut phone = lock(&app.phone);
            let silent = phone.last.is_some_and(|t| t.elapsed() >= timeout);
            let went = phone.beats && silent && !phone.offline;
            phone.offline |= went;
            went
        };
        if went {
            tracing::warn!(
                silent_s = timeout.as_secs(),
                "the shop's phone has stopped sending heartbeats: is the forwarder app still running?"
            );
            let _ = app.events.send(IntakeEvent::PhoneOffline);
        }
    }
}

/// The answer to SmsForwarder: any 2xx counts as sent; the body says what paysay made of it.
fn answer(status: StatusCode, msg: &str) -> Response {
    (
        status,
        axum::Json(
            serde_json::json!({"code": if status.is_success() { 0 } else { -1 }, "msg": msg}),
        ),
    )
        .into_response()
}

/// The answer to the V免签 app, as a V免签 server gives it.
fn vmq_answer(result: Result<(), String>) -> Response {
    let body = match result {
        Ok(()) => serde_json::json!({"code": 1, "msg": "成功", "data": null}),
        Err(msg) => serde_json::json!({"code": -1, "msg": msg, "data": null}),
    };
    axum::Json(body).into_response()
}

fn refused(forwarder: Forwarder, peer: SocketAddr, why: &Refusal) {
    tracing::warn!(forwarder = forwarder.as_str(), %peer, why = %why, "a request to the intake was refused");
}

/// What SmsForwarder posts, as a form or as the README's JSON template.
#[derive(Debug, Default, Deserialize)]
struct SmsForwarderBody {
    #[serde(default)]
    from: String,
    #[serde(default)]
    title: Option<String>,
    #[serde(default)]
    content: String,
    #[serde(default)]
    timestamp: String,
    #[serde(default)]
    sign: String,
}

impl SmsForwarderBody {
    fn parse(headers: &HeaderMap, body: &[u8]) -> Option<SmsForwarderBody> {
        let json = headers
            .get(header::CONTENT_TYPE)
            .and_then(|v| v.to_str().ok())
            .is_some_and(|t| t.contains("json"))
            || body.trim_ascii_start().starts_with(b"{");
        if json {
            return serde_json::from_slice(body).ok();
        }
        let mut parsed = SmsForwarderBody::default();
        for (key, value) in url::form_urlencoded::parse(body) {
            let value = value.into_owned();
            match key.as_ref() {
                "from" => parsed.from = value,
                "title" => parsed.title = Some(value),
                "content" => parsed.content = value,
                "timestamp" => parsed.timestamp = value,
                "sign" => parsed.sign = value,
                _ => {}
            }
        }
        Some(parsed)
    }

    /// The notice's title and text: the JSON template sends them apart; the default
    /// form sends SmsForwarder's multi-line text template in `content`.
    fn title_and_text(&self) -> (String, String) {
        match &self.title {
            Some(title) => (title.clone(), self.content.clone()),
            None => notice::split_smsforwarder_content(&self.content)
                .unwrap_or_else(|| (String::new(), self.content.clone())),
        }
    }
}

async fn smsforwarder(
    State(app): State<Arc<App>>,
    ConnectInfo(peer): ConnectInfo<SocketAddr>,
    headers: HeaderMap,
    body: Bytes,
) -> Response {
    let forwarder = Forwarder::SmsForwarder;
    if !app.allow(peer.ip()) {
        return answer(StatusCode::TOO_MANY_REQUESTS, "too many requests");
    }
    let Some(form) = SmsForwarderBody::parse(&headers, &body) else {
        return answer(StatusCode::BAD_REQUEST, "not SmsForwarder's form or JSON");
    };
    let checked = sign::check_smsforwarder(&app.secret, &form.timestamp, &form.sign)
        .and_then(|()| app.fresh(&form.timestamp, &form.sign));
    if let Err(why) = checked {
        refused(forwarder, peer, &why);
        return answer(StatusCode::UNAUTHORIZED, &why.to_string());
    }
    app.heard(forwarder, false);
    let (title, text) = form.title_and_text();
    let read = notice::read_notice(&form.from, &title, &text).map_err(|e| e.to_string());
    let time = form
        .timestamp
        .trim()
        .parse::<i64>()
        .map_or_else(|_| crate::now_unix(), |ms| ms / 1000);
    let id = format!("phone:{}:{}", forwarder.as_str(), id_of(&form.sign));
    let forwarded = Forwarded {
        forwarder,
        id,
        app: (!form.from.is_empty()).then(|| form.from.clone()),
        title,
        text,
        time,
    };
    app.notice(forwarded, read);
    answer(StatusCode::OK, "ok")
}

type Params = Query<HashMap<String, String>>;

async fn app_heart(
    State(app): State<Arc<App>>,
    ConnectInfo(peer): ConnectInfo<SocketAddr>,
    Query(q): Params,
) -> Response {
    let field = |name: &str| q.get(name).map_or("", String::as_str);
    let (t, signature) = (field("t"), field("sign"));
    if let Some(refusal) = vmq_refusal(&app, peer, &[t], t, signature) {
        return refusal;
    }
    app.heard(Forwarder::VmqApp, true);
    vmq_answer(Ok(()))
}

/// What a V免签 server checks of the app's call, and the rate per source: the answer to
/// give when it fails, `None` when the call may go on.
fn vmq_refusal(
    app: &App,
    peer: SocketAddr,
    signed: &[&str],
    t: &str,
    signature: &str,
) -> Option<Response> {
    if !app.allow(peer.ip()) {
        let busy = vmq_answer(Err("请求过于频繁".into()));
        return Some((StatusCode::TOO_MANY_REQUESTS, busy).into_response());
    }
    let why = sign::check_vmq(&app.secret, signed, signature)
        .and_then(|()| app.fresh(t, signature))
        .err()?;
    refused(Forwarder::VmqApp, peer, &why);
    Some(vmq_answer(Err(vmq_words(&why))))
}

async fn app_push(
    State(app): State<Arc<App>>,
    ConnectInfo(peer): ConnectInfo<SocketAddr>,
    Query(q): Params,
) -> Response {
    let forwarder = Forwarder::VmqApp;
    let field = |name: &str| q.get(name).map_or("", String::as_str);
    let (t, kind, price, signature) = (field("t"), field("type"), field("price"), field("sign"));
    if let Some(refusal) = vmq_refusal(&app, peer, &[kind, price, t], t, signature) {
        return refusal;
    }
    app.heard(forwarder, false);
    let wallet = match kind {
        "1" => Wallet::WeChat,
        "2" => Wallet::Alipay,
        _ => {
            tracing::warn!(kind = %Escaped(kind), "a V免签 app push of an unknown type (1 WeChat, 2 Alipay); check the phone");
            return vmq_answer(Err("type 错误".into()));
        }
    };
    let read = match parse_yuan(price) {
        Ok(fen) if fen > 0 && fen <= MAX_PAYMENT_FEN => Ok(Some(NoticePayment {
            wallet,
            amount_fen: fen,
        })),
        Ok(fen) => Err(format!("{} yuan is no payment", crate::money::Yuan(fen))),
        Err(e) => Err(e.to_string()),
    };
    let unreadable = read.is_err();
    let time = t
        .parse::<i64>()
        .map_or_else(|_| crate::now_unix(), |ms| ms / 1000);
    let id = format!("phone:{}:{}", forwarder.as_str(), id_of(signature));
    let forwarded = Forwarded {
        forwarder,
        id,
        app: None,
        title: String::new(),
        text: format!("type={kind} price={price}"),
        time,
    };
    app.notice(forwarded, read);
    if unreadable {
        return vmq_answer(Err("price 错误".into()));
    }
    vmq_answer(Ok(()))
}

/// The V免签 server's own words for a refusal, which the app shows.
fn vmq_words(why: &Refusal) -> String {
    match why {
        Refusal::Clock { .. } | Refusal::NoTimestamp => "客户端时间错误".into(),
        Refusal::Replay => "重复请求".into(),
        Refusal::Unsigned | Refusal::WrongSign => "签名校验不通过".into(),
    }
}

/// A short, stable id from a signature (unique per forwarded request: the replay check
/// takes each once).
fn id_of(signature: &str) -> String {
    use sha2::Digest;
    let digest = sha2::Sha256::digest(signature.as_bytes());
    crate::signing::hex(&digest[..8])
}
