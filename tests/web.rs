//! The shop's page over real HTTP on 127.0.0.1: every endpoint, the access rule as this
//! computer meets it, and the event stream, first against the page's server alone (the
//! test publishes what the daemon would), then through the whole daemon and the simulator.
//! Requests from other devices (the token) are the router's unit tests in `src/web`, since
//! tests bind only loopback.

mod common;

use std::net::SocketAddr;
use std::time::Duration;

use paysay::config::{Config, WebhookConfig};
use paysay::ledger::{Ledger, LedgerHandle};
use paysay::live::{Live, SessionState};
use paysay::paths::Paths;
use paysay::payment::{Payment, PaymentKind};
use paysay::web::Server;
use tokio::task::JoinHandle;
use tokio_util::sync::CancellationToken;
use wechat_sim::{SimConfig, Simulator};

const WAIT: Duration = Duration::from_secs(20);

/// The page's server on a free port, over a ledger in a temp dir.
struct Page {
    addr: SocketAddr,
    live: Live,
    ledger: Ledger,
    shutdown: CancellationToken,
    task: JoinHandle<()>,
    _dir: tempfile::TempDir,
}

impl Page {
    async fn start() -> Page {
        let dir = tempfile::tempdir().unwrap();
        let mut config = Config::default();
        config.web.listen = SocketAddr::from(([127, 0, 0, 1], 0));
        config.webhooks.push(WebhookConfig {
            url: "http://127.0.0.1:9/hook".into(),
            name: Some("shop".into()),
            secret: None,
            timeout_ms: 1000,
            allow_insecure_http: false,
        });
        let paths = Paths::new(&dir.path().join("config.toml"), &config)
            .unwrap()
            .with_state_dir(&dir.path().join("state"));
        let live = Live::new();
        let offset = time::UtcOffset::UTC;
        let mut ledger = Ledger::open(&paths.ledger_db()).unwrap();
        ledger.set_sinks(config.sink_names());
        let handle = LedgerHandle::new(Ledger::open(&paths.ledger_db()).unwrap()).unwrap();
        let server = Server::bind(&config, &paths, handle, offset, live.clone())
            .await
            .unwrap();
        let addr = server.local_addr();
        assert_ne!(addr.port(), 0, "port 0 must become the port bound");
        let shutdown = CancellationToken::new();
        let task = tokio::spawn(server.run(shutdown.clone()));
        assert!(
            !paths.web_token().exists(),
            "no token is made for a page on loopback"
        );
        Page {
            addr,
            live,
            ledger,
            shutdown,
            task,
            _dir: dir,
        }
    }

    fn url(&self, path: &str) -> String {
        format!("http://{}{path}", self.addr)
    }

    async fn get(&self, path: &str) -> reqwest::Response {
        reqwest::get(self.url(path)).await.unwrap()
    }

    async fn json(&self, path: &str) -> serde_json::Value {
        let response = self.get(path).await;
        assert_eq!(response.status(), 200, "{path}");
        serde_json::from_slice(&response.bytes().await.unwrap()).unwrap()
    }

    /// Records `p` and publishes it, as the daemon's supervisor does.
    fn record(&self, p: &Payment) {
        self.ledger.record(p).unwrap();
        self.live.recorded(p);
    }
}

fn payment(msg_id: &str, fen: u64, time: i64, kind: PaymentKind) -> Payment {
    Payment {
        msg_id: msg_id.into(),
        amount_fen: fen,
        kind,
        payer: (kind == PaymentKind::Transfer).then(|| "张三".into()),
        remark: None,
        daily_count: None,
        daily_total_fen: None,
        time,
        account: "微信支付".into(),
        transfer_id: (kind == PaymentKind::Transfer).then(|| format!("t-{msg_id}")),
        wallet: paysay::payment::Wallet::WeChat,
        source: paysay::payment::Source::Web,
    }
}

fn now() -> i64 {
    time::OffsetDateTime::now_utc().unix_timestamp()
}

#[tokio::test]
async fn the_page_is_chinese_unless_the_browser_prefers_english() {
    let page = Page::start().await;
    let zh = page.get("/").await;
    assert_eq!(zh.status(), 200);
    assert!(
        zh.headers()["content-type"]
            .to_str()
            .unwrap()
            .starts_with("text/html")
    );
    let body = zh.text().await.unwrap();
    assert!(body.contains("<html lang=\"zh-CN\">"));
    // The kinds' names are paysay's, filled in by the server in the page's language.
    assert!(body.contains(r#""collection":"二维码收款""#));
    assert!(!body.contains("{{"), "a placeholder was left in the page");
    assert!(
        body.len() < 50 * 1024,
        "the page weighs {} bytes",
        body.len()
    );
    let client = reqwest::Client::new();
    let en = client
        .get(page.url("/"))
        .header("Accept-Language", "en-US,en;q=0.9,zh;q=0.5")
        .send()
        .await
        .unwrap()
        .text()
        .await
        .unwrap();
    assert!(en.contains("<html lang=\"en\">"));
    assert!(en.contains(r#""collection":"QR""#));
    let forced = page.get("/?lang=zh").await.text().await.unwrap();
    assert!(forced.contains("<html lang=\"zh-CN\">"));
}

#[tokio::test]
async fn status_says_who_is_logged_in_and_how_each_sink_stands() {
    let page = Page::start().await;
    let status = page.json("/api/status").await;
    assert_eq!(status["session"]["state"], "connecting");
    assert_eq!(status["last_sync"], serde_json::Value::Null);
    page.live.update(|s| {
        s.session = SessionState::LoggedIn {
            nick_name: "小卖部".into(),
            since: 1,
        };
        s.last_sync = Some(1_700_000_000);
    });
    page.record(&payment("m1", 100, now(), PaymentKind::Collection));
    let status = page.json("/api/status").await;
    assert_eq!(status["session"]["state"], "logged_in");
    assert_eq!(status["session"]["nick_name"], "小卖部");
    assert_eq!(status["last_sync"], 1_700_000_000);
    assert_eq!(status["speaker"]["state"], "idle");
    assert_eq!(status["ledger_ok"], true);
    assert_eq!(status["sinks"][0]["sink"], "shop");
    assert_eq!(status["sinks"][0]["pending"], 1);
    assert_eq!(status["sinks"][0]["delivered"], 0);
    assert!(status["now"].as_i64().unwrap() >= now() - 5);
}

#[tokio::test]
async fn the_qr_code_is_served_while_a_scan_waits_and_replaced_when_it_expires() {
    let page = Page::start().await;
    assert_eq!(page.get("/qr.png").await.status(), 404);
    for uuid in ["first", "second"] {
        let url = format!("https://login.weixin.qq.com/l/{uuid}");
        page.live.new_qr(url.clone());
        let response = page.get("/qr.png").await;
        assert_eq!(response.status(), 200);
        assert_eq!(response.headers()["content-type"], "image/png");
        assert_eq!(common::decode_qr(&response.bytes().await.unwrap()), url);
    }
    page.live.update(|s| s.session = SessionState::Scanned);
    assert_eq!(page.get("/qr.png").await.status(), 404);
    let status = page.json("/api/status").await;
    assert_eq!(status["session"]["state"], "scanned");
}

#[tokio::test]
async fn today_history_and_csv_add_up() {
    let page = Page::start().await;
    let t = now();
    page.record(&payment("a", 1250, t, PaymentKind::Collection));
    page.record(&payment("b", 1, t, PaymentKind::Collection));
    page.record(&payment("c", 20000, t, PaymentKind::Transfer));
    page.record(&payment(
        "old",
        999,
        t - 3 * 86_400,
        PaymentKind::Collection,
    ));

    let today = page.json("/api/today").await;
    assert_eq!(today["total_fen"], 21251);
    assert_eq!(today["total_yuan"], "212.51");
    assert_eq!(today["count"], 3);
    assert_eq!(today["by_kind"]["collection"]["count"], 2);
    assert_eq!(today["by_kind"]["transfer"]["total_fen"], 20000);
    let hour = ((t % 86_400) / 3600) as usize;
    assert_eq!(today["hourly_fen"][hour], 21251);
    let hourly_sum: u64 = today["hourly_fen"]
        .as_array()
        .unwrap()
        .iter()
        .map(|v| v.as_u64().unwrap())
        .sum();
    assert_eq!(hourly_sum, 21251);
    assert_eq!(today["payments"][2]["payer"], "张三");

    let history = page.json("/api/history").await;
    let days = history.as_array().unwrap();
    assert_eq!(days.len(), 30);
    assert_eq!(days[29]["date"], today["date"]);
    assert_eq!(days[29]["total_fen"], 21251);
    assert_eq!(days[26]["total_fen"], 999);
    assert_eq!(days[26]["count"], 1);
    assert_eq!(days[0]["total_fen"], 0);
    assert_eq!(
        page.json("/api/history?days=7")
            .await
            .as_array()
            .unwrap()
            .len(),
        7
    );

    let csv = page.get("/ledger.csv").await;
    assert_eq!(csv.status(), 200);
    assert!(
        csv.headers()["content-type"]
            .to_str()
            .unwrap()
            .starts_with("text/csv")
    );
    assert!(
        csv.headers()["content-disposition"]
            .to_str()
            .unwrap()
            .starts_with("attachment")
    );
    let body = csv.text().await.unwrap();
    let lines: Vec<&str> = body.lines().collect();
    assert_eq!(lines[0], paysay::ledger::report::CSV_HEADER);
    assert_eq!(lines.len(), 5, "{body}");
    assert!(
        lines
            .iter()
            .any(|l| l.contains(",200.00,20000,transfer,张三,"))
    );
    let date = today["date"].as_str().unwrap();
    let one_day = page
        .get(&format!("/ledger.csv?since={date}&until={date}"))
        .await;
    assert_eq!(one_day.text().await.unwrap().lines().count(), 4);
    assert_eq!(page.get("/ledger.csv?since=yesterday").await.status(), 400);
    assert_eq!(
        page.get("/ledger.csv?since=0001-01-01").await.status(),
        400,
        "a span from the query is bounded"
    );
}

#[tokio::test]
async fn this_computer_under_another_name_is_refused() {
    let page = Page::start().await;
    let client = reqwest::Client::new();
    for host in ["evil.example", "localhost.evil.example:8151"] {
        let response = client
            .get(page.url("/api/today"))
            .header("Host", host)
            .send()
            .await
            .unwrap();
        assert_eq!(response.status(), 403, "Host: {host}");
    }
    let response = client
        .get(page.url("/api/today"))
        .header("Host", format!("localhost:{}", page.addr.port()))
        .send()
        .await
        .unwrap();
    assert_eq!(response.status(), 200);
}

#[tokio::test]
async fn a_recorded_payment_arrives_on_the_event_stream() {
    let page = Page::start().await;
    page.record(&payment("before", 500, now(), PaymentKind::Collection));
    let mut events = EventReader::open(&page.url("/events")).await;
    let (name, status) = events.next().await;
    assert_eq!(name, "status");
    assert_eq!(status["session"]["state"], "connecting");
    let (name, today) = events.next().await;
    assert_eq!(name, "today");
    assert_eq!(today["total_fen"], 500);

    page.record(&payment("live", 1234, now(), PaymentKind::Collection));
    let (name, paid) = events.next().await;
    assert_eq!(name, "payment");
    assert_eq!(paid["msg_id"], "live");
    assert_eq!(paid["amount_yuan"], "12.34");
    assert_eq!(paid["kind"], "collection");

    // A payment the stream already sent in `today` is not sent again.
    page.live
        .recorded(&payment("before", 500, now(), PaymentKind::Collection));
    page.live.update(|s| s.session = SessionState::Scanned);
    let (name, status) = events.next().await;
    assert_eq!(name, "status");
    assert_eq!(status["session"]["state"], "scanned");
}

#[tokio::test]
async fn the_page_stops_on_shutdown_even_with_a_stream_open() {
    let page = Page::start().await;
    let mut events = EventReader::open(&page.url("/events")).await;
    events.next().await;
    page.shutdown.cancel();
    tokio::time::timeout(WAIT, page.task)
        .await
        .expect("the page's server did not stop")
        .unwrap();
    assert!(
        events.ended().await,
        "the stream stayed open after shutdown"
    );
}

/// The daemon, the simulator and the page together: the QR code of the real login, then a
/// payment the simulator delivers, recorded by the daemon and pushed to the page.
#[tokio::test(flavor = "multi_thread")]
async fn the_daemon_serves_its_login_and_payments_on_the_page() {
    let sim = Simulator::start(SimConfig::for_tests()).await.unwrap();
    let dir = tempfile::tempdir().unwrap();
    let (listening, addr) = tokio::sync::oneshot::channel();
    let daemon = common::daemon::start_with(common::daemon::config_for(&sim), dir.path(), |d| {
        d.on_web_listening(listening)
    });
    let addr = tokio::time::timeout(WAIT, addr).await.unwrap().unwrap();
    let base = format!("http://{addr}");
    let mut events = EventReader::open(&format!("{base}/events")).await;
    let qr = events
        .until(|name, data| name == "status" && data["session"]["state"] == "waiting_for_scan")
        .await;
    assert!(qr["session"]["qr"].is_u64());
    let png = reqwest::get(format!("{base}/qr.png"))
        .await
        .unwrap()
        .bytes()
        .await
        .unwrap();
    let url = common::decode_qr(&png);
    assert!(url.starts_with("https://login.weixin.qq.com/l/"), "{url}");
    let uuid = sim
        .current_uuid()
        .expect("the simulator handed out a QR code");
    assert_eq!(url, paysay::session::qr::login_url(&uuid));

    sim.scan();
    events
        .until(|name, data| name == "status" && data["session"]["state"] == "scanned")
        .await;
    sim.confirm();
    events
        .until(|name, data| name == "status" && data["session"]["state"] == "logged_in")
        .await;
    sim.pay(4321);
    let paid = events.until(|name, _| name == "payment").await;
    assert_eq!(paid["amount_fen"], 4321);
    let today = reqwest::get(format!("{base}/api/today")).await.unwrap();
    let today: serde_json::Value = serde_json::from_slice(&today.bytes().await.unwrap()).unwrap();
    assert_eq!(today["total_fen"], 4321);

    daemon.shutdown.cancel();
    tokio::time::timeout(WAIT, daemon.task)
        .await
        .expect("the daemon did not stop")
        .unwrap()
        .unwrap();
    assert!(
        reqwest::get(format!("{base}/")).await.is_err(),
        "the page outlived the daemon"
    );
    sim.shutdown().await;
}

/// A reader of a server-sent event stream.
struct EventReader {
    response: reqwest::Response,
    buffer: String,
}

impl EventReader {
    async fn open(url: &str) -> EventReader {
        let response = reqwest::get(url).await.unwrap();
        assert_eq!(response.status(), 200);
        assert_eq!(response.headers()["content-type"], "text/event-stream");
        EventReader {
            response,
            buffer: String::new(),
        }
    }

    /// The next event's name and JSON data (keep-alive comments skipped).
    async fn next(&mut self) -> (String, serde_json::Value) {
        tokio::time::timeout(WAIT, async {
            loop {
                if let Some(end) = self.buffer.find("\n\n") {
                    let block: String = self.buffer.drain(..end + 2).collect();
                    let mut name = String::new();
                    let mut data = String::new();
                    for line in block.lines() {
                        if let Some(v) = line.strip_prefix("event:") {
                            name = v.trim().to_string();
                        } else if let Some(v) = line.strip_prefix("data:") {
                            data.push_str(v.trim_start());
                        }
                    }
                    if data.is_empty() {
                        continue;
                    }
                    return (name, serde_json::from_str(&data).unwrap());
                }
                let chunk = self
                    .response
                    .chunk()
                    .await
                    .unwrap()
                    .expect("the stream ended");
                self.buffer.push_str(std::str::from_utf8(&chunk).unwrap());
            }
        })
        .await
        .expect("no event in time")
    }

    /// The data of the first event for which `pred` holds.
    async fn until(
        &mut self,
        pred: impl Fn(&str, &serde_json::Value) -> bool,
    ) -> serde_json::Value {
        loop {
            let (name, data) = self.next().await;
            if pred(&name, &data) {
                return data;
            }
        }
    }

    /// Whether the stream ends (rather than staying open) within the wait.
    async fn ended(&mut self) -> bool {
        tokio::time::timeout(WAIT, async {
            loop {
                match self.response.chunk().await {
                    Ok(Some(_)) => continue,
                    Ok(None) | Err(_) => return true,
                }
            }
        })
        .await
        .unwrap_or(false)
    }
}

/// The page's CSV download neutralises cells a spreadsheet would run, as `paysay ledger
/// --csv` does (one function writes both); its JSON keeps the name exact.
#[tokio::test]
async fn the_csv_download_carries_no_formula() {
    let page = Page::start().await;
    let mut p = payment("f", 100, now(), PaymentKind::Transfer);
    p.payer = Some("=HYPERLINK(\"http://evil.example/\",\"点我\")".into());
    p.account = "@SUM(1,2)".into();
    page.record(&p);
    let body = page.get("/ledger.csv").await.text().await.unwrap();
    assert!(
        body.contains(r#""'=HYPERLINK(""http://evil.example/"",""点我"")","#),
        "{body}"
    );
    assert!(body.contains(r#""'@SUM(1,2)""#), "{body}");
    let today = page.json("/api/today").await;
    assert_eq!(
        today["payments"][0]["payer"],
        "=HYPERLINK(\"http://evil.example/\",\"点我\")"
    );
}
