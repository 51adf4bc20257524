//! Payment parsing throughput: a 1 MB webwxsync body of mixed messages, deserialized as the
//! client does (`BaseResponse` first, then the whole `SyncResponse`) and every message run
//! through `Detector::detect` with its sender's contact record.
//!
//! The body is real: the simulator's own message builders (collection notices, clerk
//! notices, transfers, texts, a forgery) plus the captured cards of
//! `tests/fixtures/payments/` sent as 微信支付, served by the simulator to the real session
//! client and read back from the simulator's request record.
//!
//!     cargo bench --bench parse [-- --mb 1 --secs 3]

mod common;

use std::path::Path;
use std::time::{Duration, Instant};

use paysay::config::{PaymentsConfig, WechatConfig};
use paysay::payment::Detector;
use paysay::protocol::{Message, RetOnly, SyncResponse, app_msg_type, msg_type};
use paysay::session::{Events, Session, SessionFiles};
use wechat_sim::{Endpoint, SimConfig, WXPAY, escape_app_content};

use common::{SimServer, arg};

fn main() {
    let target_bytes = (arg("--mb", 1.0f64) * 1024.0 * 1024.0) as usize;
    let secs = Duration::from_secs_f64(arg("--secs", 3.0));
    let scratch = tempfile::tempdir().expect("a scratch dir");
    let (body, session) = webwxsync_body(scratch.path(), target_bytes);
    let detector = Detector::new(&PaymentsConfig::default());

    let parsed: SyncResponse = serde_json::from_str(&body).expect("the body parses");
    let found = detect_all(&detector, &session, &parsed);
    println!(
        "parse: body {:.2} MB, {} messages, {found} payments detected",
        body.len() as f64 / 1e6,
        parsed.add_msg_list.len(),
    );
    let deser = throughput(secs, body.len(), || {
        std::hint::black_box(deserialize(&body));
    });
    let detect = throughput(secs, body.len(), || {
        std::hint::black_box(detect_all(&detector, &session, &parsed));
    });
    let both = throughput(secs, body.len(), || {
        std::hint::black_box(detect_all(&detector, &session, &deserialize(&body)));
    });
    println!("deserialize only      {deser}");
    println!("detect only           {detect}");
    println!("deserialize + detect  {both}");
}

/// As the client reads a JSON reply (`session::http::json`): `Ret` first, then the body.
fn deserialize(body: &str) -> SyncResponse {
    let head: RetOnly = serde_json::from_str(body).expect("BaseResponse parses");
    assert_eq!(head.base_response.ret, 0);
    serde_json::from_str(body).expect("the body parses")
}

fn detect_all(detector: &Detector, session: &Session, sync: &SyncResponse) -> usize {
    sync.add_msg_list
        .iter()
        .filter(|m| {
            let sender = session.contact(&m.from_user_name);
            matches!(detector.detect(m, sender, session.user_name()), Ok(Some(_)))
        })
        .count()
}

/// Runs `f` for about `secs`; MB/s as median, best and worst over the runs.
fn throughput(secs: Duration, bytes: usize, mut f: impl FnMut()) -> String {
    let mut rates = Vec::new();
    let started = Instant::now();
    while started.elapsed() < secs || rates.len() < 5 {
        let t = Instant::now();
        f();
        rates.push(bytes as f64 / 1e6 / t.elapsed().as_secs_f64());
    }
    rates.sort_by(f64::total_cmp);
    format!(
        "{:>8.1} MB/s median  ({:.1} worst, {:.1} best, {} runs)",
        common::percentile(&rates, 50.0),
        rates[0],
        rates[rates.len() - 1],
        rates.len()
    )
}

/// Logs the real client in, puts rounds of mixed messages on the stream until one
/// webwxsync answer carries `target` bytes, and returns that answer with the session.
fn webwxsync_body(scratch: &Path, target: usize) -> (String, Session) {
    let server = SimServer::start(SimConfig {
        long_poll: Duration::from_millis(200),
        sync_page_size: usize::MAX,
        auto_login: Some(Duration::from_millis(20)),
        ..SimConfig::default()
    });
    let sim = server.sim.clone();
    let wechat = WechatConfig {
        base_url: Some(sim.base_url()),
        ..WechatConfig::default()
    };
    let files = SessionFiles {
        session: scratch.join("session.json"),
        qr_png: scratch.join("qr.png"),
    };
    let cards = fixture_cards();
    let (body, session) = server.runtime.block_on(async {
        let (events, _rx) = Events::channel();
        let mut session = paysay::session::connect(&wechat, &files, &events, None)
            .await
            .expect("logged in");
        session.next_batch().await.expect("the status notify");
        let wxpay = sim
            .contact_by_nickname(WXPAY)
            .expect("微信支付 is a contact");
        // Each webwxsync carries what came since the last one: put enough rounds on the
        // stream for one answer of `target` bytes, scaled from a first small try.
        let (mut round, mut rounds) = (0u64, 10u64);
        loop {
            for _ in 0..rounds {
                put_round(&sim, &wxpay.user_name, &cards, round);
                round += 1;
            }
            session.next_batch().await.expect("a batch");
            let body = sim
                .requests_to(Endpoint::Sync)
                .pop()
                .map(|r| r.response)
                .unwrap_or_default();
            if body.len() >= target {
                break (body, session);
            }
            let per_round = (body.len() as u64 / rounds).max(1);
            rounds = (target as u64 / per_round) * 105 / 100 + 1;
        }
    });
    server.stop();
    (body, session)
}

/// One round of a shop's message stream: mostly chat, some money, a forgery, and the
/// payment account's cards (collections, refunds, receipts, reminders).
fn put_round(sim: &wechat_sim::Simulator, wxpay: &str, cards: &[String], round: u64) {
    for i in 0..4 {
        sim.send_text("李四", &format!("老板，今天还有豆浆吗？第{round}-{i}条"));
    }
    sim.send_text("张三", "好的👌 [微笑] <b>不是标签</b> & 也不是实体");
    sim.pay(1250 + round);
    sim.pay_clerk_notice(800 + round);
    sim.transfer("张三", 20000 + round);
    sim.forged_payment(99900);
    let card = &cards[round as usize % cards.len()];
    sim.push_message(Message {
        msg_id: format!("{}", 7_000_000_000_000_000_000u64 + round),
        from_user_name: wxpay.to_string(),
        msg_type: msg_type::APP,
        app_msg_type: app_msg_type::LINK,
        content: escape_app_content(card),
        create_time: 1_714_528_800,
        ..Message::default()
    });
}

/// The XML cards among the fixtures.
fn fixture_cards() -> Vec<String> {
    let dir = Path::new(env!("CARGO_MANIFEST_DIR")).join("tests/fixtures/payments");
    let mut cards: Vec<String> = std::fs::read_dir(&dir)
        .expect("the fixtures dir")
        .filter_map(Result::ok)
        .map(|e| e.path())
        .filter(|p| p.extension().is_some_and(|x| x == "xml"))
        .filter_map(|p| std::fs::read_to_string(p).ok())
        .collect();
    cards.sort();
    cards
}
