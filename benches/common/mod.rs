//! What the bench binaries share: their arguments, runtimes, a simulator on a runtime of
//! its own, a payment, the log file, and percentiles.

#![allow(dead_code)] // each bench uses a different part

#[path = "../../tests/common/mosquitto.rs"]
pub mod mosquitto;
pub mod stamping;

use std::path::Path;
use std::time::Duration;

use paysay::payment::{Payment, PaymentKind};
use tokio::runtime::Runtime;
use wechat_sim::{SimConfig, Simulator};

/// `--name value` from the command line; `cargo bench` adds `--bench`, which is ignored.
pub fn arg<T: std::str::FromStr>(name: &str, default: T) -> T {
    let args: Vec<String> = std::env::args().collect();
    args.windows(2)
        .find(|w| w[0] == name)
        .and_then(|w| w[1].parse().ok())
        .unwrap_or(default)
}

/// A string argument, as [`arg`].
pub fn arg_str(name: &str, default: &str) -> String {
    arg(name, default.to_string())
}

/// A runtime of `workers` threads; 2 is what `paysay run` and `paysay speaker` build
/// (src/main.rs), 1 for a server or client beside them whose work is not counted.
pub fn runtime(workers: usize) -> Runtime {
    tokio::runtime::Builder::new_multi_thread()
        .worker_threads(workers)
        .enable_all()
        .build()
        .expect("a runtime")
}

/// Logs go to `dir/name`, as journald would take them: the daemon's log lines cost what
/// they cost in production, without cluttering the figures.
pub fn init_log(dir: &Path, name: &str) {
    let Ok(file) = std::fs::File::create(dir.join(name)) else {
        return;
    };
    tracing_subscriber::fmt()
        .with_env_filter(tracing_subscriber::EnvFilter::new(
            std::env::var("PAYSAY_LOG").unwrap_or_else(|_| "info".into()),
        ))
        .with_writer(std::sync::Mutex::new(file))
        .with_ansi(false)
        .init();
}

/// A QR-code payment from 张三 of `fen`, paid at unix second `time`.
pub fn payment(msg_id: &str, fen: u64, time: i64) -> Payment {
    Payment {
        msg_id: msg_id.into(),
        amount_fen: fen,
        kind: PaymentKind::Collection,
        payer: Some("张三".into()),
        remark: None,
        daily_count: None,
        daily_total_fen: None,
        time,
        account: "微信支付".into(),
        transfer_id: None,
        wallet: paysay::payment::Wallet::WeChat,
        source: paysay::payment::Source::Web,
    }
}

/// The simulator on a one-worker runtime of its own, so the code under test gets a runtime
/// configured as `paysay run`'s and the server's work is not counted against it.
pub struct SimServer {
    pub sim: Simulator,
    pub runtime: tokio::runtime::Runtime,
}

impl SimServer {
    pub fn start(config: SimConfig) -> SimServer {
        let runtime = runtime(1);
        let sim = runtime
            .block_on(Simulator::start(config))
            .expect("the simulator starts");
        SimServer { sim, runtime }
    }

    pub fn stop(self) {
        let SimServer { sim, runtime } = self;
        runtime.block_on(sim.shutdown());
        runtime.shutdown_timeout(Duration::from_secs(2));
    }
}

/// Nearest-rank percentile of sorted values.
pub fn percentile(sorted: &[f64], p: f64) -> f64 {
    if sorted.is_empty() {
        return f64::NAN;
    }
    let rank = ((p / 100.0) * sorted.len() as f64).ceil() as usize;
    sorted[rank.clamp(1, sorted.len()) - 1]
}

/// `label: n=…, p50 …, p90 …, p99 …, max …` in milliseconds.
pub fn summary_ms(label: &str, values: &mut [Duration]) -> String {
    let mut ms: Vec<f64> = values.iter().map(|d| d.as_secs_f64() * 1e3).collect();
    ms.sort_by(f64::total_cmp);
    format!(
        "{label:<44} n={:<4} p50 {:>7.2} ms  p90 {:>7.2} ms  p99 {:>7.2} ms  max {:>7.2} ms",
        ms.len(),
        percentile(&ms, 50.0),
        percentile(&ms, 90.0),
        percentile(&ms, 99.0),
        ms.last().copied().unwrap_or(f64::NAN),
    )
}
