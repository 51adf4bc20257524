//! The shop phone's notices (`[intake]`): how soon one is heard, how long one waits for its
//! web copy, and what a flood of bad requests costs.
//!
//! The real pieces run in this process: the daemon (`Daemon::run`, on a runtime built like
//! `paysay run`'s) with its intake on 127.0.0.1, the ledger on disk, the speech cache, the
//! audio thread with the chime, and the null output wrapped so that a sound's first sample
//! stamps the clock. Notices are posted over HTTP, signed as SmsForwarder signs them.
//!
//! 1. Web session off (`[wechat] enabled = false`): POST sent → first sample, cold (espeak-ng
//!    synthesizes each new amount) and warm (the clip is cached).
//! 2. Web session logged in (the simulator): a WeChat notice with no web copy waits
//!    `web_wait_ms`; with its web copy paid right after it, it is said as soon as the web
//!    copy is in.
//! 3. A flood of requests with bad signatures and of signed notices that are no payment,
//!    `--flood-per-s` a second for `--flood-s` seconds, at the real `paysay run` in a process
//!    of its own: what they recorded (nothing) and its RSS before, at the peak and after.
//!
//!     cargo bench --bench intake [-- --notices 200 --amounts 10 --web-wait-ms 3000]

mod common;

use std::net::SocketAddr;
use std::sync::mpsc;
use std::time::{Duration, Instant};

use paysay::audio::{NullOutput, Player};
use paysay::config::{Config, IntakeConfig};
use paysay::daemon;
use paysay::paths::Paths;
use tokio_util::sync::CancellationToken;
use wechat_sim::{Endpoint, SimConfig};

use common::stamping::Stamping;
use common::{SimServer, arg, init_log, runtime, summary_ms};

const SECRET: &str = "bench-secret";
const PATIENCE: Duration = Duration::from_secs(60);

fn main() {
    let notices: usize = arg("--notices", 200);
    let amounts: u64 = arg("--amounts", 10);
    let web_wait_ms: u64 = arg("--web-wait-ms", IntakeConfig::default().web_wait_ms);
    let flood_per_s: u64 = arg("--flood-per-s", 1000);
    let flood_s: u64 = arg("--flood-s", 10);
    let scratch = tempfile::tempdir().expect("a scratch dir");
    init_log(scratch.path(), "daemon.log");
    let fens: Vec<u64> = (0..amounts).map(|i| 1250 + 101 * i).collect();
    println!("intake: {notices} notices over {amounts} amounts; web wait {web_wait_ms} ms");

    // 1. No web session: said at once.
    let rt = runtime(2);
    let (addr, stamps, shutdown, daemon) =
        start(&rt, scratch.path().join("off"), None, web_wait_ms);
    let cold = measure(&rt, addr, &stamps, fens.iter().copied(), None);
    let warm = measure(
        &rt,
        addr,
        &stamps,
        fens.iter().copied().cycle().take(notices),
        None,
    );
    println!(
        "{}",
        summary_ms("web off, cold cache: POST → sound", &mut cold.clone())
    );
    println!(
        "{}",
        summary_ms("web off, warm cache: POST → sound", &mut warm.clone())
    );

    shutdown.cancel();
    let _ = rt.block_on(daemon);

    // 3. The flood, against the real binary in a process of its own (so that its RSS is
    //    the daemon's alone, not this client's).
    flood(&rt, flood_per_s, flood_s, &scratch.path().join("flood"));

    // 2. The web session logged in: the wait for a web copy.
    let server = SimServer::start(SimConfig {
        long_poll: Duration::from_secs(25),
        auto_login: Some(Duration::from_millis(20)),
        ..SimConfig::default()
    });
    let sim = server.sim.clone();
    let (addr, stamps, shutdown, daemon) = start(
        &rt,
        scratch.path().join("web"),
        Some(sim.base_url()),
        web_wait_ms,
    );
    assert!(
        server
            .runtime
            .block_on(sim.wait_for_requests(Endpoint::Sync, 1, PATIENCE)),
        "the daemon did not log in"
    );
    // The login alert.
    let _ = stamps.recv_timeout(PATIENCE);
    std::thread::sleep(Duration::from_millis(500));
    while stamps.try_recv().is_ok() {}
    let rounds = (notices / 20).max(5);
    let alone = measure(
        &rt,
        addr,
        &stamps,
        fens.iter().copied().cycle().take(rounds),
        None,
    );
    let paid = |fen| {
        sim.pay(fen);
    };
    let with_web = measure(
        &rt,
        addr,
        &stamps,
        fens.iter().copied().cycle().take(rounds),
        Some(&paid),
    );
    println!(
        "{}",
        summary_ms(
            "web up, no web copy: POST → sound (the wait)",
            &mut alone.clone()
        )
    );
    println!(
        "{}",
        summary_ms(
            "web up, web copy paid right after: POST → sound",
            &mut with_web.clone()
        )
    );
    shutdown.cancel();
    let _ = rt.block_on(daemon);
    server.stop();
}

type Running = (
    SocketAddr,
    mpsc::Receiver<Instant>,
    CancellationToken,
    tokio::task::JoinHandle<Result<(), daemon::DaemonError>>,
);

/// The daemon with its intake on a free port; the web session at `base_url`, or off.
fn start(
    rt: &tokio::runtime::Runtime,
    dir: std::path::PathBuf,
    base_url: Option<String>,
    web_wait_ms: u64,
) -> Running {
    let mut config = Config::default();
    // Cold amounts are synthesized, as before voice banks (composed ones: benches/compose.rs).
    config.speech.compose = paysay::config::Compose::Never;
    config.web.enabled = false;
    config.wechat.enabled = base_url.is_some();
    config.wechat.base_url = base_url;
    config.intake = Some(IntakeConfig {
        listen: SocketAddr::from(([127, 0, 0, 1], 0)),
        secret: SECRET.into(),
        web_wait_ms,
        ..IntakeConfig::default()
    });
    let mut paths = Paths::new(&dir.join("config.toml"), &config)
        .expect("a home dir")
        .with_state_dir(&dir.join("state"));
    paths.cache_dir = dir.join("cache");
    let (tx, stamps) = mpsc::channel();
    let player = Player::spawn_with(&config.audio, move || {
        Box::new(Stamping {
            inner: Box::new(NullOutput::default()),
            stamps: tx,
        })
    })
    .expect("the audio thread");
    let shutdown = CancellationToken::new();
    let (listening, addr) = tokio::sync::oneshot::channel();
    let daemon = rt.spawn(
        daemon::Daemon::new(config, paths)
            .player(player)
            .on_intake_listening(listening)
            .run(shutdown.clone()),
    );
    let addr = rt.block_on(addr).expect("the intake listens");
    (addr, stamps, shutdown, daemon)
}

fn now_ms() -> u64 {
    std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .expect("after 1970")
        .as_millis() as u64
}

/// A notice in the README's JSON template, signed with `secret` at `t`.
fn notice(secret: &str, t: u64, app: &str, title: &str, text: &str) -> String {
    let sign = paysay::intake::sign::smsforwarder_sign(secret, &t.to_string());
    serde_json::json!({"from": app, "title": title, "content": text,
        "timestamp": t.to_string(), "sign": sign})
    .to_string()
}

async fn post(client: &reqwest::Client, addr: SocketAddr, body: String) -> u16 {
    client
        .post(format!("http://{addr}/intake/smsforwarder"))
        .header("content-type", "application/json")
        .body(body)
        .send()
        .await
        .map(|r| r.status().as_u16())
        .unwrap_or(0)
}

/// Each amount as a WeChat notice from the phone: POST sent → first sample. `web_copy`
/// pays the same amount on the web session right after the POST.
fn measure(
    rt: &tokio::runtime::Runtime,
    addr: SocketAddr,
    stamps: &mpsc::Receiver<Instant>,
    amounts: impl Iterator<Item = u64>,
    web_copy: Option<&dyn Fn(u64)>,
) -> Vec<Duration> {
    let client = reqwest::Client::new();
    let mut samples = Vec::new();
    let mut last_t = 0;
    for fen in amounts {
        let t = now_ms().max(last_t + 1);
        last_t = t;
        let text = format!("微信支付收款{}.{:02}元(朋友到店)", fen / 100, fen % 100);
        let body = notice(SECRET, t, "com.tencent.mm", "微信支付", &text);
        let sent = Instant::now();
        let status = rt.block_on(post(&client, addr, body));
        assert_eq!(status, 200, "the intake took the notice");
        if let Some(pay) = web_copy {
            pay(fen);
        }
        let heard = stamps.recv_timeout(PATIENCE).expect("the notice was said");
        samples.push(heard.saturating_duration_since(sent));
        // The announcement finishes before the next customer.
        std::thread::sleep(Duration::from_millis(150));
        while stamps.try_recv().is_ok() {}
    }
    samples
}

/// `paysay run` with only `[intake]` (no web session, no page), silent, in `dir`.
fn spawn_binary(dir: &std::path::Path, port: u16) -> std::process::Child {
    std::fs::create_dir_all(dir).expect("the flood's dir");
    let config = dir.join("paysay.toml");
    std::fs::write(
        &config,
        format!(
            "[wechat]\nenabled = false\n\n[web]\nenabled = false\n\n[audio]\nvolume = 0.0\n\n[intake]\nlisten = \"127.0.0.1:{port}\"\nsecret = \"{SECRET}\"\n"
        ),
    )
    .expect("the flood's config");
    std::process::Command::new(env!("CARGO_BIN_EXE_paysay"))
        .arg("--config")
        .arg(&config)
        .arg("run")
        .env("HOME", dir)
        .env("XDG_STATE_HOME", dir.join("state"))
        .env("XDG_CACHE_HOME", dir.join("cache"))
        .env("XDG_CONFIG_HOME", dir.join("config"))
        .env("ALSA_CONFIG_PATH", dir.join("no-devices.conf"))
        .stdout(std::process::Stdio::null())
        .stderr(std::fs::File::create(dir.join("daemon.log")).expect("the log"))
        .spawn()
        .expect("paysay run starts")
}

/// `per_s` requests a second for `secs` seconds at a `paysay run` of its own, half with a
/// wrong signature and half signed but no payment; its RSS before, at the end, and after a
/// settle; then one real notice must still be recorded.
fn flood(rt: &tokio::runtime::Runtime, per_s: u64, secs: u64, dir: &std::path::Path) {
    let port = std::net::TcpListener::bind("127.0.0.1:0")
        .and_then(|l| l.local_addr())
        .expect("a free port")
        .port();
    let addr = SocketAddr::from(([127, 0, 0, 1], port));
    let mut child = spawn_binary(dir, port);
    let pid = child.id();
    let client = reqwest::Client::new();
    // Up, and a first payment said (the speech cache warmed).
    let started = Instant::now();
    while rt.block_on(post(&client, addr, String::new())) == 0 {
        assert!(started.elapsed() < PATIENCE, "paysay run did not listen");
        std::thread::sleep(Duration::from_millis(100));
    }
    std::thread::sleep(Duration::from_secs(2));
    let before = rss_kb(pid);
    let started = Instant::now();
    let mut statuses = std::collections::BTreeMap::<u16, u64>::new();
    let mut sent = 0u64;
    let mut t = now_ms() + 1_000_000;
    let mut peak = before;
    for second in 0..secs {
        let batch: Vec<String> = (0..per_s)
            .map(|i| {
                t += 1;
                if i % 2 == 0 {
                    notice(
                        "wrong-secret",
                        t,
                        "com.tencent.mm",
                        "微信支付",
                        "微信支付收款1.00元",
                    )
                } else {
                    notice(
                        SECRET,
                        now_ms() - i,
                        "com.example.chat",
                        "某某",
                        "晚上一起吃饭吗",
                    )
                }
            })
            .collect();
        let answers = rt.block_on(async {
            let mut tasks = tokio::task::JoinSet::new();
            for body in batch {
                let client = client.clone();
                tasks.spawn(async move { post(&client, addr, body).await });
            }
            tasks.join_all().await
        });
        for status in answers {
            *statuses.entry(status).or_default() += 1;
            sent += 1;
        }
        peak = peak.max(rss_kb(pid));
        let next = Duration::from_secs(second + 1);
        if let Some(rest) = next.checked_sub(started.elapsed()) {
            std::thread::sleep(rest);
        }
    }
    let took = started.elapsed();
    let at_end = rss_kb(pid);
    // The flood's idle connections are closed by the header timeout (10 s) and the rate per
    // source has filled again: a real notice, on a connection of its own, is recorded.
    drop(client);
    std::thread::sleep(Duration::from_secs(11));
    let settled = rss_kb(pid);
    let client = reqwest::Client::new();
    let real = notice(
        SECRET,
        now_ms(),
        "com.tencent.mm",
        "微信支付",
        "微信支付收款9.99元",
    );
    let real_status = rt.block_on(post(&client, addr, real));
    std::thread::sleep(Duration::from_secs(1));
    let _ = std::process::Command::new("kill")
        .args(["-TERM", &pid.to_string()])
        .status();
    let _ = child.wait();
    let ledger =
        paysay::ledger::Ledger::open(&dir.join("state/paysay/ledger.sqlite3")).expect("the ledger");
    let rows = ledger.entries(0, i64::MAX).expect("the entries").len();
    println!(
        "flood: {sent} requests in {:.1} s ({:.0}/s), answers {statuses:?} (0: refused by the kernel's backlog); paysay run's RSS {before} kB before, {peak} kB peak, {at_end} kB at the end, {settled} kB 11 s later; a real notice after it answered {real_status}; ledger rows {rows} (the real one only)",
        took.as_secs_f64(),
        sent as f64 / took.as_secs_f64(),
    );
}

/// A process's resident set, from /proc (0 elsewhere).
fn rss_kb(pid: u32) -> u64 {
    std::fs::read_to_string(format!("/proc/{pid}/status"))
        .ok()
        .and_then(|s| {
            s.lines()
                .find(|l| l.starts_with("VmRSS:"))
                .and_then(|l| l.split_whitespace().nth(1)?.parse().ok())
        })
        .unwrap_or(0)
}
