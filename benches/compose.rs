//! New amounts, side by side: today's path (a new amount waits for a backend to synthesize
//! it, every backend tried again on every payment) against the composed voice (a new amount
//! composed from the voice bank at once, a failed backend skipped for a while), in one run.
//!
//! Latency is taken as in `benches/latency.rs`: from the end of the webwxsync answer that
//! carries a payment (`RecordedRequest::answered_at`, in the simulator) to the first sample
//! of the sound handed to the (null) output, with the real session client, daemon, ledger,
//! speech cache and audio thread. Every amount is one never said before.
//!
//! Three speech setups, each run with both paths:
//! - `hanging`: `backends = ["baidu", "system"]`, Baidu's host accepts and never answers
//!   (`timeout_secs` 5, the default), espeak-ng after it;
//! - `refused`: the same, the network refusing Baidu's host (nothing listens);
//! - `espeak`: `backends = ["system"]`, espeak-ng alone.
//!
//! For the composed path the bank is built first: with espeak-ng for `espeak`, and for the
//! two Baidu setups with a local fake Baidu that answers (as when Baidu was reachable the day
//! the bank was built), before Baidu's host goes away. Today's path with a hanging Baidu
//! waits `timeout_secs` per payment, so it runs fewer amounts (`--today-hanging`).
//!
//! Also: composing one announcement (in memory, no daemon), the bank's build time and size
//! per backend, and the memory the bank takes.
//!
//!     cargo bench --bench compose [-- --amounts 200 --today-hanging 12 --pause-ms 400
//!                                     --setups hanging,refused,espeak]

mod common;

use std::path::Path;
use std::sync::mpsc;
use std::time::{Duration, Instant};

use axum::Router;
use axum::http::header::CONTENT_TYPE;
use axum::response::IntoResponse;
use axum::routing::post;
use paysay::audio::{NullOutput, Player};
use paysay::config::{Backend, BaiduConfig, Compose, Config};
use paysay::daemon;
use paysay::paths::Paths;
use paysay::speech::Speech;
use paysay::speech::compose::{self, Template};
use tokio_util::sync::CancellationToken;
use wechat_sim::{Endpoint, SimConfig, Simulator};

use common::stamping::Stamping;
use common::{SimServer, arg, arg_str, init_log, percentile, runtime, summary_ms};

const PATIENCE: Duration = Duration::from_secs(60);

#[derive(Debug, Clone, Copy, PartialEq)]
enum Setup {
    Hanging,
    Refused,
    Espeak,
}

#[derive(Debug, Clone, Copy, PartialEq)]
enum Way {
    Today,
    Composed,
}

/// Where Baidu is, for each setup.
struct Hosts {
    /// A fake Baidu that answers: the bank is built against it.
    answering: String,
    /// Accepts connections and never answers.
    hanging: String,
    /// Nothing listens.
    refused: String,
}

fn main() {
    let amounts: usize = arg("--amounts", 200);
    let today_hanging: usize = arg("--today-hanging", 12);
    let pause = Duration::from_millis(arg("--pause-ms", 400));
    let scratch = tempfile::tempdir().expect("a scratch dir");
    init_log(scratch.path(), "daemon.log");
    let servers = runtime(1);
    let hosts = servers.block_on(start_hosts());

    composing(scratch.path(), &hosts);

    println!(
        "\nnew amounts, webwxsync end → first sample (pause {} ms between customers):",
        pause.as_millis()
    );
    let only = arg_str("--setups", "hanging,refused,espeak");
    let setups = [Setup::Hanging, Setup::Refused, Setup::Espeak]
        .into_iter()
        .filter(|s| only.contains(&format!("{s:?}").to_lowercase()));
    for setup in setups {
        for way in [Way::Today, Way::Composed] {
            let n = match (setup, way) {
                (Setup::Hanging, Way::Today) => today_hanging,
                _ => amounts,
            };
            let dir = scratch.path().join(format!("{setup:?}-{way:?}"));
            let mut delays = run(setup, way, n, pause, &dir, &hosts);
            println!("{}", summary_ms(&format!("{setup:?} {way:?}"), &mut delays));
        }
    }
    if arg("--keep", false) {
        println!("kept {}", scratch.keep().display());
    }
}

/// Composing alone, the bank's build per backend, and its memory.
fn composing(scratch: &Path, hosts: &Hosts) {
    let rt = runtime(2);
    let mut config = Config::default();
    for (label, backends) in [
        ("espeak-ng", vec![Backend::System]),
        ("baidu (local fake, no network)", vec![Backend::Baidu]),
    ] {
        config.speech.backends = backends;
        config.speech.baidu = baidu_at(&hosts.answering);
        let dir = scratch.join(format!("bank-{}", config.speech.backends[0]));
        let speech = Speech::from_config(&config.speech, dir).expect("speech");
        let manifest = rt.block_on(speech.build_bank(None)).expect("a bank");
        let bank = speech.bank().expect("the bank");
        println!(
            "bank by {label:<31} {} clips in {:.2} s, {} kB on disk, {} kB of words in memory",
            manifest.tokens.len(),
            manifest.build_secs,
            manifest.bytes / 1024,
            bank.memory_bytes() / 1024
        );
        if config.speech.backends[0] != Backend::System {
            continue;
        }
        let rss_before = vm_rss_kb();
        let reloaded =
            Speech::from_config(&config.speech, speech.bank_dir().parent().unwrap().into())
                .expect("speech");
        let rss_after = vm_rss_kb();
        assert!(reloaded.bank().is_some(), "the bank reloads");
        println!(
            "loading the espeak-ng bank from disk: VmRSS {} → {} kB (+{} kB)",
            rss_before,
            rss_after,
            rss_after.saturating_sub(rss_before)
        );
        let template = Template::parse(&config.speech.template).expect("a template");
        let mut times = Vec::new();
        let mut seconds = 0.0;
        for i in 0..10_000u64 {
            // Amounts from 0.01 to 100,000,000.00 yuan, spread over every length.
            let fen = (i * 7_919 + 1) % (1 << (i % 34)) + 1;
            let started = Instant::now();
            let pcm = compose::compose(&bank, &compose::script(&template, fen)).expect("composed");
            times.push(started.elapsed());
            seconds += pcm.duration().as_secs_f64();
        }
        println!(
            "{} (mean announcement {:.2} s)",
            summary_ms("composing one announcement", &mut times),
            seconds / 10_000.0
        );
        let mut ms: Vec<f64> = times.iter().map(|d| d.as_secs_f64() * 1e3).collect();
        ms.sort_by(f64::total_cmp);
        assert!(percentile(&ms, 99.0) < 1.0, "composing p99 over 1 ms");
    }
}

fn baidu_at(host: &str) -> BaiduConfig {
    BaiduConfig {
        api_key: "key".into(),
        secret_key: "secret".into(),
        token_url: format!("{host}/token"),
        tts_url: format!("{host}/tts"),
        ..BaiduConfig::default()
    }
}

/// One setup and one way, on a daemon of its own: the delays of `n` new amounts.
fn run(
    setup: Setup,
    way: Way,
    n: usize,
    pause: Duration,
    dir: &Path,
    hosts: &Hosts,
) -> Vec<Duration> {
    let mut config = Config::default();
    config.speech.backends = match setup {
        Setup::Espeak => vec![Backend::System],
        _ => vec![Backend::Baidu, Backend::System],
    };
    config.speech.compose = match way {
        Way::Today => Compose::Never,
        Way::Composed => Compose::OnMiss,
    };
    let server = SimServer::start(SimConfig {
        long_poll: Duration::from_secs(25),
        auto_login: Some(Duration::from_millis(20)),
        ..SimConfig::default()
    });
    config.wechat.base_url = Some(server.sim.base_url());
    let mut paths = Paths::new(&dir.join("config.toml"), &config)
        .expect("a home dir")
        .with_state_dir(&dir.join("state"));
    paths.cache_dir = dir.join("cache");
    let rt = runtime(2);
    if way == Way::Composed {
        let mut building = config.speech.clone();
        building.baidu = baidu_at(&hosts.answering);
        let speech = Speech::from_config(&building, paths.tts_cache_dir()).expect("speech");
        rt.block_on(speech.build_bank(None)).expect("a bank");
    }
    config.speech.baidu = baidu_at(match setup {
        Setup::Hanging => &hosts.hanging,
        _ => &hosts.refused,
    });
    let mut speech = Speech::from_config(&config.speech, paths.tts_cache_dir()).expect("speech");
    if way == Way::Today {
        // Today's chain asks every backend again on every payment.
        speech = speech.retry_failed_after(Duration::ZERO, Duration::ZERO);
    } else {
        assert!(speech.bank().is_some(), "the bank is there");
    }
    let (stamps, first_samples) = mpsc::channel();
    let player = Player::spawn_with(&config.audio, move || {
        Box::new(Stamping {
            inner: Box::new(NullOutput::default()),
            stamps,
        })
    })
    .expect("the audio thread");
    let shutdown = CancellationToken::new();
    let daemon = rt.spawn(
        daemon::Daemon::new(config, paths)
            .player(player)
            .speech(speech)
            .run(shutdown.clone()),
    );
    wait_until_idle(&server, &first_samples);
    let offset = match setup {
        Setup::Hanging => 0,
        Setup::Refused => 1,
        Setup::Espeak => 2,
    };
    let fens = (0..n as u64).map(|i| 1250 + 3 * (101 * i) + offset);
    let delays = measure(&server.sim, &first_samples, fens, pause);
    shutdown.cancel();
    let _ = rt.block_on(daemon);
    server.stop();
    rt.shutdown_timeout(Duration::from_secs(1));
    delays
}

/// Logged in, the login alert said, back in synccheck.
fn wait_until_idle(server: &SimServer, first_samples: &mpsc::Receiver<Instant>) {
    let logged_in =
        server
            .runtime
            .block_on(server.sim.wait_for_requests(Endpoint::Sync, 1, PATIENCE));
    assert!(logged_in, "the daemon did not log in to the simulator");
    let alert = first_samples.recv_timeout(PATIENCE);
    assert!(alert.is_ok(), "the login alert was not said");
    std::thread::sleep(Duration::from_millis(500));
    while first_samples.try_recv().is_ok() {}
}

fn measure(
    sim: &Simulator,
    first_samples: &mpsc::Receiver<Instant>,
    amounts: impl Iterator<Item = u64>,
    pause: Duration,
) -> Vec<Duration> {
    let mut delays = Vec::new();
    for fen in amounts {
        let msg_id = sim.pay(fen);
        let heard_at = first_samples
            .recv_timeout(PATIENCE)
            .expect("the payment was announced");
        std::thread::sleep(pause);
        let answered_at = sim
            .requests_to(Endpoint::Sync)
            .iter()
            .find(|r| r.response.contains(&msg_id))
            .map(|r| r.answered_at)
            .expect("a webwxsync carried the payment");
        delays.push(heard_at.saturating_duration_since(answered_at));
    }
    delays
}

/// The fake Baidu that answers, the host that hangs, the port that refuses.
async fn start_hosts() -> Hosts {
    let app = Router::new()
        .route(
            "/token",
            post(|| async {
                axum::Json(serde_json::json!({ "access_token": "tok", "expires_in": 2_592_000 }))
            }),
        )
        .route(
            "/tts",
            post(|| async { ([(CONTENT_TYPE, "audio/wav")], word()).into_response() }),
        );
    let answering = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let answering_addr = answering.local_addr().unwrap();
    tokio::spawn(async move { axum::serve(answering, app).await });
    let hanging = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let hanging_addr = hanging.local_addr().unwrap();
    tokio::spawn(async move {
        let mut held = Vec::new();
        while let Ok((socket, _)) = hanging.accept().await {
            held.push(socket);
        }
    });
    let refused_addr = std::net::TcpListener::bind("127.0.0.1:0")
        .unwrap()
        .local_addr()
        .unwrap();
    Hosts {
        answering: format!("http://{answering_addr}"),
        hanging: format!("http://{hanging_addr}"),
        refused: format!("http://{refused_addr}"),
    }
}

/// A third of a second of a swelling tone at 16 kHz: a word, for the fake Baidu.
fn word() -> Vec<u8> {
    let n = 5_333;
    let samples: Vec<i16> = (0..n)
        .map(|i| {
            let envelope = (std::f32::consts::PI * i as f32 / n as f32).sin();
            (envelope * (i as f32 * 0.1).sin() * 16_000.0) as i16
        })
        .collect();
    paysay::speech::bank::wav_bytes(&samples, 16_000)
}

fn vm_rss_kb() -> u64 {
    std::fs::read_to_string("/proc/self/status")
        .ok()
        .and_then(|s| {
            s.lines()
                .find(|l| l.starts_with("VmRSS:"))
                .and_then(|l| l.split_whitespace().nth(1))
                .and_then(|v| v.parse().ok())
        })
        .unwrap_or(0)
}
