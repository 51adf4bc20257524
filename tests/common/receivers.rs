//! Real receivers for the payment events: a webhook endpoint that checks paysay's HMAC
//! signature, and a V免签 server built from `../shared/protocol/OUTBOUND.md` (sign check,
//! 50 s clock window, `code` 1 / -1, "无订单转账" when no order matches, heartbeat state).
//! Both bind 127.0.0.1 and record what they were sent.
#![allow(dead_code)]

use std::collections::HashMap;
use std::net::SocketAddr;
use std::sync::atomic::{AtomicU16, Ordering};
use std::sync::{Arc, Mutex};
use std::time::{Duration, SystemTime, UNIX_EPOCH};

use axum::Router;
use axum::body::Bytes;
use axum::extract::{Query, State};
use axum::http::{HeaderMap, StatusCode};
use axum::routing::{get, post};
use hmac::{Hmac, Mac};
use md5::{Digest, Md5};
use sha2::Sha256;
use tokio::net::TcpListener;

/// What the webhook answers: a status, or hold the request without answering.
pub const HANG: u16 = 0;

/// One request the webhook receiver took.
#[derive(Debug, Clone)]
pub struct Received {
    pub body: serde_json::Value,
    /// Whether `X-Paysay-Signature` matched the HMAC of `X-Paysay-Timestamp.body`.
    pub signed: bool,
}

struct Hook {
    secret: Option<String>,
    answer: AtomicU16,
    received: Mutex<Vec<Received>>,
}

/// A webhook endpoint at `http://{addr}/hook`.
#[derive(Clone)]
pub struct WebhookReceiver {
    pub addr: SocketAddr,
    hook: Arc<Hook>,
    stop: tokio_util::sync::CancellationToken,
}

impl WebhookReceiver {
    /// Listens on `addr` (port 0: any free one), answering `answer`.
    pub async fn start(addr: SocketAddr, secret: Option<&str>, answer: u16) -> WebhookReceiver {
        let hook = Arc::new(Hook {
            secret: secret.map(String::from),
            answer: AtomicU16::new(answer),
            received: Mutex::new(Vec::new()),
        });
        let listener = TcpListener::bind(addr).await.unwrap();
        let addr = listener.local_addr().unwrap();
        let app = Router::new()
            .route("/hook", post(take))
            .with_state(hook.clone());
        let stop = tokio_util::sync::CancellationToken::new();
        let until = stop.clone().cancelled_owned();
        tokio::spawn(async move {
            let _ = axum::serve(listener, app)
                .with_graceful_shutdown(until)
                .await;
        });
        WebhookReceiver { addr, hook, stop }
    }

    pub fn url(&self) -> String {
        format!("http://{}/hook", self.addr)
    }

    pub fn answer(&self, status: u16) {
        self.hook.answer.store(status, Ordering::SeqCst);
    }

    pub fn received(&self) -> Vec<Received> {
        self.hook.received.lock().unwrap().clone()
    }

    /// The event ids received, in order.
    pub fn ids(&self) -> Vec<String> {
        self.received()
            .iter()
            .map(|r| r.body["id"].as_str().unwrap_or("").to_string())
            .collect()
    }

    pub fn stop(&self) {
        self.stop.cancel();
    }
}

async fn take(State(hook): State<Arc<Hook>>, headers: HeaderMap, body: Bytes) -> StatusCode {
    let signed = match &hook.secret {
        None => true,
        Some(secret) => {
            let header = |name| {
                headers
                    .get(name)
                    .and_then(|v| v.to_str().ok())
                    .unwrap_or("")
            };
            let mut mac = Hmac::<Sha256>::new_from_slice(secret.as_bytes()).unwrap();
            mac.update(header("x-paysay-timestamp").as_bytes());
            mac.update(b".");
            mac.update(&body);
            let expected: String = mac
                .finalize()
                .into_bytes()
                .iter()
                .map(|b| format!("{b:02x}"))
                .collect();
            let fresh = header("x-paysay-timestamp")
                .parse::<u64>()
                .is_ok_and(|t| t.abs_diff(now_ms() / 1000) < 300);
            fresh && header("x-paysay-signature") == expected
        }
    };
    let body = serde_json::from_slice(&body).unwrap_or(serde_json::Value::Null);
    hook.received
        .lock()
        .unwrap()
        .push(Received { body, signed });
    if !signed {
        return StatusCode::UNAUTHORIZED;
    }
    match hook.answer.load(Ordering::SeqCst) {
        HANG => {
            std::future::pending::<()>().await;
            StatusCode::OK
        }
        status => StatusCode::from_u16(status).unwrap(),
    }
}

pub fn now_ms() -> u64 {
    SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .unwrap()
        .as_millis() as u64
}

fn md5_hex(text: &str) -> String {
    Md5::digest(text.as_bytes())
        .iter()
        .map(|b| format!("{b:02x}"))
        .collect()
}

/// One row of V免签's `pay_order` (open until paid) or a "无订单转账" record.
#[derive(Debug, Clone, PartialEq)]
pub struct VmqPayment {
    pub price: String,
    pub kind: String,
    /// The order it paid, or "无订单转账".
    pub order: String,
}

#[derive(Default)]
struct VmqState {
    key: String,
    /// Open orders: id → really_price in fen.
    open: Vec<(String, u64)>,
    payments: Vec<VmqPayment>,
    /// Accepted heartbeats, and when the last one came (ms).
    heartbeats: usize,
    lastheart: u64,
    lastpay: u64,
    /// Refusals, as answered.
    refusals: Vec<String>,
    /// Added to this server's clock, to play a server whose clock is off.
    skew_ms: i64,
}

/// A V免签 server at `http://{addr}`; `server_string()` is what its admin page shows.
#[derive(Clone)]
pub struct VmqServer {
    pub addr: SocketAddr,
    state: Arc<Mutex<VmqState>>,
}

type Params = Query<HashMap<String, String>>;

impl VmqServer {
    pub async fn start(key: &str) -> VmqServer {
        let state = Arc::new(Mutex::new(VmqState {
            key: key.to_string(),
            ..VmqState::default()
        }));
        let listener = TcpListener::bind("127.0.0.1:0").await.unwrap();
        let addr = listener.local_addr().unwrap();
        let app = Router::new()
            .route("/appHeart", get(app_heart))
            .route("/appPush", get(app_push))
            .route("/getState", get(get_state))
            .with_state(state.clone());
        tokio::spawn(async move {
            let _ = axum::serve(listener, app).await;
        });
        VmqServer { addr, state }
    }

    /// `host/key`, as the admin page shows it.
    pub fn server_string(&self) -> String {
        format!("{}/{}", self.addr, self.state.lock().unwrap().key)
    }

    /// A shop order waiting for exactly `fen`.
    pub fn create_order(&self, id: &str, fen: u64) {
        self.state.lock().unwrap().open.push((id.to_string(), fen));
    }

    pub fn payments(&self) -> Vec<VmqPayment> {
        self.state.lock().unwrap().payments.clone()
    }

    pub fn heartbeats(&self) -> usize {
        self.state.lock().unwrap().heartbeats
    }

    pub fn refusals(&self) -> Vec<String> {
        self.state.lock().unwrap().refusals.clone()
    }

    pub fn set_skew(&self, skew: Duration, ahead: bool) {
        let ms = skew.as_millis() as i64;
        self.state.lock().unwrap().skew_ms = if ahead { ms } else { -ms };
    }

    /// `jkstate` as getState computes it: 1 while the last heartbeat is at most 60 s old.
    pub fn jkstate(&self) -> u8 {
        let s = self.state.lock().unwrap();
        u8::from(s.lastheart != 0 && now_ms().saturating_sub(s.lastheart) <= 60_000)
    }
}

fn answer(code: i64, msg: &str, data: serde_json::Value) -> axum::Json<serde_json::Value> {
    axum::Json(serde_json::json!({"code": code, "msg": msg, "data": data}))
}

/// The clock and sign checks every endpoint makes; `signed` is the fields before the key.
fn check(s: &mut VmqState, q: &HashMap<String, String>, signed: &str) -> Result<(), String> {
    let now = now_ms() as i64 + s.skew_ms;
    let t: i64 = q.get("t").and_then(|t| t.parse().ok()).unwrap_or(0);
    if (now - t).abs() > 50_000 {
        s.refusals.push("客户端时间错误".into());
        return Err("客户端时间错误".into());
    }
    if q.get("sign").map(String::as_str) != Some(md5_hex(&format!("{signed}{}", s.key)).as_str()) {
        s.refusals.push("签名校验不通过".into());
        return Err("签名校验不通过".into());
    }
    Ok(())
}

async fn app_heart(
    State(state): State<Arc<Mutex<VmqState>>>,
    Query(q): Params,
) -> axum::Json<serde_json::Value> {
    let mut s = state.lock().unwrap();
    let t = q.get("t").cloned().unwrap_or_default();
    if let Err(msg) = check(&mut s, &q, &t) {
        return answer(-1, &msg, serde_json::Value::Null);
    }
    s.heartbeats += 1;
    s.lastheart = now_ms();
    answer(1, "成功", serde_json::Value::Null)
}

async fn app_push(
    State(state): State<Arc<Mutex<VmqState>>>,
    Query(q): Params,
) -> axum::Json<serde_json::Value> {
    let mut s = state.lock().unwrap();
    let field = |name: &str| q.get(name).cloned().unwrap_or_default();
    let (t, kind, price) = (field("t"), field("type"), field("price"));
    if let Err(msg) = check(&mut s, &q, &format!("{kind}{price}{t}")) {
        return answer(-1, &msg, serde_json::Value::Null);
    }
    // Compared numerically, as PHP compares really_price.
    let fen = price
        .parse::<f64>()
        .map(|y| (y * 100.0).round() as u64)
        .ok();
    let matched = s
        .open
        .iter()
        .position(|(_, f)| Some(*f) == fen && kind == "1");
    let order = match matched {
        Some(i) => s.open.remove(i).0,
        None => "无订单转账".to_string(),
    };
    s.payments.push(VmqPayment { price, kind, order });
    s.lastpay = now_ms();
    answer(1, "成功", serde_json::Value::Null)
}

async fn get_state(
    State(state): State<Arc<Mutex<VmqState>>>,
    Query(q): Params,
) -> axum::Json<serde_json::Value> {
    let mut s = state.lock().unwrap();
    let t = q.get("t").cloned().unwrap_or_default();
    if let Err(msg) = check(&mut s, &q, &t) {
        return answer(-1, &msg, serde_json::Value::Null);
    }
    let jkstate = u8::from(s.lastheart != 0 && now_ms().saturating_sub(s.lastheart) <= 60_000);
    answer(
        1,
        "成功",
        serde_json::json!({"lastheart": s.lastheart / 1000, "lastpay": s.lastpay / 1000, "jkstate": jkstate}),
    )
}
