//! The shop phone's notices (issue 19), through the real `paysay run` binary: SmsForwarder's
//! two request formats and the V免签 monitor app's calls, signed as those apps sign them,
//! against the intake on a free port; the web session from the simulator where both ways
//! are in play. What paysay recorded is read with `paysay ledger --json`, what it said from
//! its log.

mod common;
#[path = "common/receivers.rs"]
mod receivers;

use std::net::SocketAddr;
use std::time::{Duration, Instant};

use base64::Engine;
use common::shop::{Shop, signal, wait_exit, wait_for, wait_until};
use hmac::{Hmac, Mac};
use md5::{Digest, Md5};
use sha2::Sha256;

const SECRET: &str = "phone-secret-42";

/// `[intake]` on a free port; `extra` more of its keys.
fn intake_config(extra: &str) -> String {
    format!("\n[intake]\nlisten = \"127.0.0.1:0\"\nsecret = \"{SECRET}\"\n{extra}")
}

/// The intake's address, from the daemon's log.
async fn intake_addr(shop: &Shop, log: &str) -> SocketAddr {
    wait_until("the intake's address", || {
        let log = shop.log(log);
        let line = log
            .lines()
            .find(|l| l.contains("listening for the phone"))?;
        let at = line.find("addr=")? + "addr=".len();
        line[at..].split_whitespace().next()?.parse().ok()
    })
    .await
}

/// The time in ms, never the same twice: a forwarder's signature covers its timestamp
/// alone, and the intake takes each signature once.
fn now_ms() -> u64 {
    use std::sync::atomic::{AtomicU64, Ordering};
    static LAST: AtomicU64 = AtomicU64::new(0);
    let now = std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .unwrap()
        .as_millis() as u64;
    let prev = LAST.fetch_max(now, Ordering::SeqCst);
    if prev >= now {
        LAST.fetch_add(1, Ordering::SeqCst) + 1
    } else {
        now
    }
}

/// SmsForwarder's 加签: base64(HMAC-SHA256(secret, timestamp + "\n" + secret)), URL-encoded.
fn sign(secret: &str, timestamp: u64) -> String {
    let mut mac = Hmac::<Sha256>::new_from_slice(secret.as_bytes()).unwrap();
    mac.update(format!("{timestamp}\n{secret}").as_bytes());
    let b64 = base64::engine::general_purpose::STANDARD.encode(mac.finalize().into_bytes());
    url::form_urlencoded::byte_serialize(b64.as_bytes()).collect()
}

fn md5_hex(text: &str) -> String {
    Md5::digest(text.as_bytes())
        .iter()
        .map(|b| format!("{b:02x}"))
        .collect()
}

/// The README's JSON template, filled as SmsForwarder fills it.
async fn post_json(addr: SocketAddr, app: &str, title: &str, text: &str) -> reqwest::Response {
    let t = now_ms();
    let body = serde_json::json!({
        "from": app, "title": title, "content": text,
        "timestamp": t.to_string(), "sign": sign(SECRET, t),
    });
    post_raw(addr, "application/json", body.to_string().into_bytes()).await
}

/// SmsForwarder's default: a form whose `content` is its multi-line text template.
async fn post_form(addr: SocketAddr, app: &str, title: &str, text: &str) -> reqwest::Response {
    let t = now_ms();
    let content = format!("{app}\n{text}\n{title}\nUID：10086\n2024-05-01 12:00:00\nRedmi Note 12");
    let body: String = url::form_urlencoded::Serializer::new(String::new())
        .append_pair("from", app)
        .append_pair("content", &content)
        .append_pair("timestamp", &t.to_string())
        .append_pair("sign", &sign(SECRET, t))
        .finish();
    post_raw(addr, "application/x-www-form-urlencoded", body.into_bytes()).await
}

async fn post_raw(addr: SocketAddr, content_type: &str, body: Vec<u8>) -> reqwest::Response {
    reqwest::Client::new()
        .post(format!("http://{addr}/intake/smsforwarder"))
        .header("content-type", content_type)
        .body(body)
        .send()
        .await
        .unwrap()
}

/// The V免签 app's call, signed as vmqApk signs it.
async fn vmq_app(addr: SocketAddr, path: &str, params: &[(&str, String)]) -> serde_json::Value {
    let query: String = url::form_urlencoded::Serializer::new(String::new())
        .extend_pairs(params.iter().map(|(k, v)| (*k, v.as_str())))
        .finish();
    let text = reqwest::get(format!("http://{addr}/{path}?{query}"))
        .await
        .unwrap()
        .text()
        .await
        .unwrap();
    serde_json::from_str(&text).unwrap()
}

async fn heart(addr: SocketAddr) -> serde_json::Value {
    let t = now_ms().to_string();
    let sign = md5_hex(&format!("{t}{SECRET}"));
    vmq_app(addr, "appHeart", &[("t", t), ("sign", sign)]).await
}

async fn push(addr: SocketAddr, kind: &str, price: &str) -> serde_json::Value {
    let t = now_ms().to_string();
    let sign = md5_hex(&format!("{kind}{price}{t}{SECRET}"));
    vmq_app(
        addr,
        "appPush",
        &[
            ("t", t),
            ("type", kind.into()),
            ("price", price.into()),
            ("sign", sign),
        ],
    )
    .await
}

async fn get_json(addr: SocketAddr, path: &str) -> serde_json::Value {
    let text = reqwest::get(format!("http://{addr}{path}"))
        .await
        .unwrap()
        .text()
        .await
        .unwrap();
    serde_json::from_str(&text).unwrap()
}

/// A shop whose WeChat account cannot log in to the web: `[wechat] enabled = false`.
async fn shop_without_web(intake_extra: &str, extra: &str) -> Shop {
    let shop = Shop::new(&format!("{extra}{}", intake_config(intake_extra))).await;
    let path = shop.path("paysay.toml");
    let config = std::fs::read_to_string(&path).unwrap();
    std::fs::write(
        &path,
        config.replacen("[wechat]\n", "[wechat]\nenabled = false\n", 1),
    )
    .unwrap();
    shop
}

/// (wallet, source, amount_fen) of each payment in the ledger, oldest first.
fn rows(shop: &Shop) -> Vec<(String, String, u64)> {
    shop.ledger_json()
        .iter()
        .map(|l| {
            (
                l["wallet"].as_str().unwrap_or("?").to_string(),
                l["source"].as_str().unwrap_or("?").to_string(),
                l["amount_fen"].as_u64().unwrap_or(0),
            )
        })
        .collect()
}

fn said(shop: &Shop, log: &str) -> Vec<String> {
    shop.log(log)
        .lines()
        .filter(|l| l.contains("payment announced"))
        .filter_map(|l| l.split("text=").nth(1))
        .map(|t| t.split_whitespace().next().unwrap_or("").to_string())
        .collect()
}

fn row(wallet: &str, source: &str, fen: u64) -> (String, String, u64) {
    (wallet.into(), source.into(), fen)
}

/// A shop whose account WeChat refuses on the web (ret 1203): only `[intake]`, every wallet
/// said at once, both of SmsForwarder's formats and the V免签 app.
#[tokio::test(flavor = "multi_thread")]
async fn without_web_login_every_wallet_is_heard_from_the_phone() {
    let shop = shop_without_web("", "").await;
    let mut daemon = shop.start("run.log");
    let addr = intake_addr(&shop, "run.log").await;

    let sent = Instant::now();
    let r = post_json(
        addr,
        "com.tencent.mm",
        "微信支付",
        "微信支付收款0.01元(朋友到店)",
    )
    .await;
    assert_eq!(r.status(), 200);
    shop.wait_announced(1).await;
    assert!(
        sent.elapsed() < Duration::from_secs(5),
        "said at once: {:?}",
        sent.elapsed()
    );
    let r = post_form(
        addr,
        "com.eg.android.AlipayGphone",
        "收钱码到账通知",
        "成功收款12.50元。享免费提现等更多专属服务，点击查看",
    )
    .await;
    assert_eq!(r.status(), 200);
    post_json(addr, "com.unionpay", "消息推送", "云闪付收款8.80元").await;
    assert_eq!(push(addr, "2", "1.0").await["code"], 1);
    shop.wait_announced(4).await;
    assert_eq!(
        rows(&shop),
        [
            row("wechat", "phone", 1),
            row("alipay", "phone", 1250),
            row("unionpay", "phone", 880),
            row("alipay", "phone", 100),
        ]
    );
    assert_eq!(
        said(&shop, "run.log"),
        [
            "微信收款零点零一元",
            "支付宝收款十二点五元",
            "云闪付收款八点八元",
            "支付宝收款一元"
        ]
    );
    assert!(
        !shop.path("state/paysay/login-qr.png").exists(),
        "no login at all"
    );
    // The shop's page: today per wallet, no web session, the phone heard.
    let page = shop.page_addr("run.log").await;
    let today = get_json(page, "/api/today").await;
    assert_eq!(today["by_wallet"]["alipay"]["total_fen"], 1350, "{today}");
    assert_eq!(today["by_wallet"]["unionpay"]["count"], 1, "{today}");
    assert_eq!(today["by_wallet"]["wechat"]["total_fen"], 1, "{today}");
    assert_eq!(today["payments"][1]["wallet"], "alipay", "{today}");
    let status = get_json(page, "/api/status").await;
    assert_eq!(status["session"]["state"], "off", "{status}");
    assert_eq!(status["phone"]["online"], true, "{status}");
    assert!(status["phone"]["last_heard"].is_i64(), "{status}");
    assert!(!shop.log("run.log").contains("QR"));
    signal(&daemon, "-TERM");
    assert_eq!(wait_exit(&mut daemon).await.code(), Some(0));
}

/// What is not a signed, fresh, first-time payment notice from the phone is recorded as
/// nothing: a wrong or missing sign, a stale timestamp, a replay, a huge body, an app that
/// is no wallet, money going out.
#[tokio::test(flavor = "multi_thread")]
async fn what_is_no_signed_payment_notice_records_nothing() {
    let shop = shop_without_web("", "").await;
    let mut daemon = shop.start("run.log");
    let addr = intake_addr(&shop, "run.log").await;
    let t = now_ms();
    let notice = |t: u64, sign: String| {
        serde_json::json!({"from": "com.tencent.mm", "title": "微信支付",
            "content": "微信支付收款5.00元", "timestamp": t.to_string(), "sign": sign})
        .to_string()
        .into_bytes()
    };
    let json = "application/json";
    assert_eq!(
        post_raw(addr, json, notice(t, sign("wrong", t)))
            .await
            .status(),
        401
    );
    assert_eq!(
        post_raw(addr, json, notice(t, String::new()))
            .await
            .status(),
        401
    );
    let stale = t - 10 * 60 * 1000;
    assert_eq!(
        post_raw(addr, json, notice(stale, sign(SECRET, stale)))
            .await
            .status(),
        401
    );
    let big = vec![b'x'; 200 * 1024];
    assert_eq!(post_raw(addr, json, big).await.status(), 413);
    assert_eq!(
        post_json(addr, "com.tencent.mm", "微信支付", "已支付¥0.01")
            .await
            .status(),
        200
    );
    assert_eq!(
        post_json(addr, "com.example.chat", "收款通知", "向你付款5.00元")
            .await
            .status(),
        200
    );
    assert_eq!(
        post_json(addr, "com.tencent.mm", "张三", "微信支付收款100元")
            .await
            .status(),
        200
    );
    // A good one, then the same request again.
    let body = notice(t + 1, sign(SECRET, t + 1));
    assert_eq!(post_raw(addr, json, body.clone()).await.status(), 200);
    assert_eq!(post_raw(addr, json, body).await.status(), 401);
    // The V免签 app's calls, answered as a V免签 server answers them.
    let bad = vmq_app(
        addr,
        "appPush",
        &[
            ("t", now_ms().to_string()),
            ("type", "1".into()),
            ("price", "5.00".into()),
            ("sign", "0".repeat(32)),
        ],
    )
    .await;
    assert_eq!(bad["code"], -1);
    assert_eq!(bad["msg"], "签名校验不通过");
    let old = (now_ms() - 3_600_000).to_string();
    let clock = vmq_app(
        addr,
        "appHeart",
        &[
            ("t", old.clone()),
            ("sign", md5_hex(&format!("{old}{SECRET}"))),
        ],
    )
    .await;
    assert_eq!(clock["msg"], "客户端时间错误");
    assert_eq!(
        heart(addr).await,
        serde_json::json!({"code": 1, "msg": "成功", "data": null})
    );

    shop.wait_announced(1).await;
    tokio::time::sleep(Duration::from_secs(1)).await;
    assert_eq!(rows(&shop), [row("wechat", "phone", 500)]);
    let log = shop.log("run.log");
    assert!(!log.contains(SECRET), "the secret is never logged");
    signal(&daemon, "-TERM");
    assert_eq!(wait_exit(&mut daemon).await.code(), Some(0));
}

/// Both ways in: one WeChat payment heard from the web session and from the phone is said
/// once and is one row (source both), whichever comes first; two equal payments 2 s apart
/// are two; a forgery refused on the web is silent on the phone too.
#[tokio::test(flavor = "multi_thread")]
async fn both_ways_each_payment_is_said_once() {
    let shop = Shop::new(&intake_config("web_wait_ms = 3000\n")).await;
    let mut daemon = shop.start("run.log");
    let addr = intake_addr(&shop, "run.log").await;
    shop.log_in().await;

    // The phone first: it waits for the web copy, which comes.
    post_json(
        addr,
        "com.tencent.mm",
        "微信支付",
        "微信支付收款12.50元(朋友到店)",
    )
    .await;
    shop.sim.pay(1250);
    shop.wait_announced(1).await;
    // The web first: the phone's copy comes later.
    shop.sim.pay(300);
    shop.wait_announced(2).await;
    post_json(
        addr,
        "com.tencent.mm",
        "微信支付",
        "微信支付收款3.00元(朋友到店)",
    )
    .await;
    wait_for("the phone's copy matched", || {
        rows(&shop).iter().filter(|r| r.1 == "both").count() == 2
    })
    .await;
    // Two equal payments 2 s apart, both ways each.
    shop.sim.pay(500);
    post_json(addr, "com.tencent.mm", "微信支付", "微信支付收款5.00元").await;
    tokio::time::sleep(Duration::from_secs(2)).await;
    post_json(addr, "com.tencent.mm", "微信支付", "微信支付收款5.00元").await;
    shop.sim.pay(500);
    shop.wait_announced(4).await;
    // An ordinary contact named 微信支付 writes what a notice says; the phone shows it too.
    shop.sim.forged_text("微信支付收款100元");
    post_json(addr, "com.tencent.mm", "微信支付", "微信支付收款100元").await;
    // Long enough for the phone copy's wait (3 s) to have run out.
    tokio::time::sleep(Duration::from_secs(5)).await;

    assert_eq!(
        rows(&shop),
        [
            row("wechat", "both", 1250),
            row("wechat", "both", 300),
            row("wechat", "both", 500),
            row("wechat", "both", 500),
        ],
        "{}",
        shop.log("run.log")
    );
    assert_eq!(said(&shop, "run.log").len(), 4, "{}", shop.log("run.log"));
    let log = shop.log("run.log");
    assert!(
        log.contains("ordinary contact named like a payment account"),
        "{log}"
    );
    assert!(
        log.contains("not said"),
        "the phone's copy is refused: {log}"
    );
    signal(&daemon, "-TERM");
    assert_eq!(wait_exit(&mut daemon).await.code(), Some(0));
}

/// With the web session down, a WeChat notice from the phone is said at once; when the web
/// copy comes after the login, it is the same payment.
#[tokio::test(flavor = "multi_thread")]
async fn web_down_phone_notices_are_said_at_once_and_the_late_web_copy_is_the_same_payment() {
    let shop = Shop::new(&intake_config("web_wait_ms = 10000\n")).await;
    let mut daemon = shop.start("run.log");
    let addr = intake_addr(&shop, "run.log").await;
    // Not logged in: nobody scanned the QR code yet.
    let sent = Instant::now();
    post_json(addr, "com.tencent.mm", "微信支付", "微信支付收款7.00元").await;
    shop.wait_announced(1).await;
    assert!(
        sent.elapsed() < Duration::from_secs(5),
        "not held for the web: {:?}",
        sent.elapsed()
    );
    shop.sim.pay(700);
    shop.log_in().await;
    wait_for("the web copy matched", || {
        rows(&shop) == [row("wechat", "both", 700)]
    })
    .await;
    tokio::time::sleep(Duration::from_secs(1)).await;
    assert_eq!(said(&shop, "run.log").len(), 1);
    signal(&daemon, "-TERM");
    assert_eq!(wait_exit(&mut daemon).await.code(), Some(0));
}

/// An Alipay payment reaches V免签 as type 2, a 云闪付 one is not pushed.
#[tokio::test(flavor = "multi_thread")]
async fn alipay_goes_to_vmq_as_type_2() {
    let server = receivers::VmqServer::start("vmq-key").await;
    let vmq = format!(
        "\n[vmq]\nserver = \"{}\"\nheartbeat_secs = 1\n",
        server.server_string()
    );
    let shop = shop_without_web("", &vmq).await;
    let mut daemon = shop.start("run.log");
    let addr = intake_addr(&shop, "run.log").await;
    // The phone's heartbeat is what keeps V免签 taking orders when the web is off.
    assert_eq!(heart(addr).await["code"], 1);
    wait_for("V免签 heartbeats", || server.heartbeats() >= 1).await;
    post_json(
        addr,
        "com.eg.android.AlipayGphone",
        "收款通知",
        "某某通过扫码向你付款6.60元",
    )
    .await;
    wait_for("pushed", || !server.payments().is_empty()).await;
    let pushed = &server.payments()[0];
    assert_eq!((pushed.kind.as_str(), pushed.price.as_str()), ("2", "6.60"));
    signal(&daemon, "-TERM");
    assert_eq!(wait_exit(&mut daemon).await.code(), Some(0));
}

/// The V免签 app heartbeats every 30 s; a phone that then falls silent is said once
/// ("收款手机已离线，请检查手机"), until it is heard again.
#[tokio::test(flavor = "multi_thread")]
async fn a_phone_silent_after_heartbeats_is_one_alert() {
    let shop = shop_without_web("phone_timeout_secs = 10\n", "").await;
    let mut daemon = shop.start("run.log");
    let addr = intake_addr(&shop, "run.log").await;
    assert_eq!(heart(addr).await["code"], 1);
    wait_for("the alert", || {
        shop.log("run.log").contains("收款手机已离线")
    })
    .await;
    // Silent longer still: no second alert.
    tokio::time::sleep(Duration::from_secs(3)).await;
    assert_eq!(heart(addr).await["code"], 1);
    wait_for("heard again", || {
        shop.log("run.log")
            .matches("the shop's phone is heard")
            .count()
            == 2
    })
    .await;
    signal(&daemon, "-TERM");
    assert_eq!(wait_exit(&mut daemon).await.code(), Some(0));
    let log = shop.log("run.log");
    assert_eq!(
        log.matches("alert spoken text=收款手机已离线").count(),
        1,
        "{log}"
    );
}

/// WeChat's own count (今日第N笔) counts a payment whatever way paysay heard it: one that
/// only the phone brought (its web message lost) is no gap in the count.
#[tokio::test(flavor = "multi_thread")]
async fn a_payment_only_the_phone_brought_is_no_gap_in_wechats_count() {
    let shop = Shop::new(&intake_config("web_wait_ms = 500\n")).await;
    let mut daemon = shop.start("run.log");
    let addr = intake_addr(&shop, "run.log").await;
    shop.log_in().await;
    shop.sim.pay(100);
    shop.wait_announced(1).await;
    // Counted by WeChat, never delivered to the web session; the phone shows it.
    shop.sim.pay_unseen(250);
    post_json(addr, "com.tencent.mm", "微信支付", "微信支付收款2.50元").await;
    shop.wait_announced(2).await;
    shop.sim.pay(300);
    shop.wait_announced(3).await;
    tokio::time::sleep(Duration::from_millis(500)).await;
    assert_eq!(
        rows(&shop),
        [
            row("wechat", "web", 100),
            row("wechat", "phone", 250),
            row("wechat", "web", 300)
        ]
    );
    let log = shop.log("run.log");
    assert!(!log.contains("never saw"), "{log}");
    signal(&daemon, "-TERM");
    assert_eq!(wait_exit(&mut daemon).await.code(), Some(0));
}

/// `paysay doctor` beside a running paysay: the intake answers, and the doctor's probe does
/// not pass for the phone (a phone that then "fell silent" would be said offline).
#[tokio::test(flavor = "multi_thread")]
async fn the_doctor_sees_the_running_intake_without_posing_as_the_phone() {
    let port = std::net::TcpListener::bind("127.0.0.1:0")
        .unwrap()
        .local_addr()
        .unwrap()
        .port();
    let shop = shop_without_web("", "").await;
    let path = shop.path("paysay.toml");
    let config = std::fs::read_to_string(&path).unwrap();
    std::fs::write(
        &path,
        config.replace(
            "127.0.0.1:0\"\nsecret",
            &format!("127.0.0.1:{port}\"\nsecret"),
        ),
    )
    .unwrap();
    let mut daemon = shop.start("run.log");
    intake_addr(&shop, "run.log").await;
    let out = shop.command(&["doctor"]).output().unwrap();
    let report = String::from_utf8_lossy(&out.stdout);
    let line = report
        .lines()
        .find(|l| l.contains("intake"))
        .unwrap_or_else(|| panic!("{report}"));
    assert!(
        line.starts_with('✓') && line.contains("running paysay"),
        "{report}"
    );
    tokio::time::sleep(Duration::from_millis(300)).await;
    assert!(
        !shop.log("run.log").contains("the shop's phone is heard"),
        "{}",
        shop.log("run.log")
    );
    signal(&daemon, "-TERM");
    assert_eq!(wait_exit(&mut daemon).await.code(), Some(0));
}
