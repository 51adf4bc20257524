//! Issue 14, the real daemon against the simulator: a notice whose 今日第N笔 skips one is
//! said once, logged, shown by `paysay ledger` and in the daily summary (across a restart
//! too); no false alarm after a mid-day start, across midnight or with clerk copies; the
//! summary at its time with its exact content; one back-online text after a re-login; a
//! 1205 that is not retried in a loop; and `paysay notify --test`.
//!
//! What is said is told apart by its length: the test voice speaks the gap alert as a
//! sound of [`GAP_SAMPLES`] samples and anything else as [`OTHER_SAMPLES`] (the player adds
//! a little silence to each, so a sound of at least `GAP_SAMPLES` is the gap alert).

mod common;

use std::io::Write as _;
use std::path::Path;
use std::sync::{Arc, Mutex, OnceLock};
use std::time::{Duration, Instant};

use paysay::audio::{AudioError, AudioOutput, Sound};
use paysay::config::{Config, NotifyConfig, SpeechConfig};
use paysay::ledger::{Entry, Ledger, reconcile};
use paysay::speech::{Audio, AudioFormat, SynthFuture, Synthesizer};
use time::UtcOffset;
use wechat_sim::{Endpoint, SimClock, SimConfig, Simulator, Verdict};

const GAP_SAMPLES: u64 = 4000;
const OTHER_SAMPLES: u64 = 400;
/// How long a test waits for something the daemon does within a second or two.
const WAIT: Duration = Duration::from_secs(20);

/// 2024-05-01T00:00:00Z; the daemon in a test process reads days in UTC (`time` cannot
/// read the local offset with several threads running).
const MAY_1: i64 = 1_714_521_600;
const HOUR: i64 = 3600;

/// Speaks the gap alert as [`GAP_SAMPLES`] samples, anything else as [`OTHER_SAMPLES`].
struct LengthVoice;

impl Synthesizer for LengthVoice {
    fn name(&self) -> &'static str {
        "length"
    }

    fn voice(&self) -> String {
        "length".into()
    }

    fn synthesize<'a>(&'a self, text: &'a str) -> SynthFuture<'a> {
        let gap = text == SpeechConfig::default().gap_alert;
        let samples = if gap { GAP_SAMPLES } else { OTHER_SAMPLES };
        Box::pin(async move {
            Ok(Audio {
                bytes: common::wav::beep(8_000, samples as u32),
                format: AudioFormat::Wav,
            })
        })
    }
}

/// An output that notes each sound's length in samples.
#[derive(Clone, Default)]
struct Heard(Arc<Mutex<Vec<u64>>>);

impl Heard {
    fn sounds(&self) -> Vec<u64> {
        self.0.lock().unwrap().clone()
    }

    fn gap_alerts(&self) -> usize {
        self.sounds().iter().filter(|&&n| n >= GAP_SAMPLES).count()
    }

    async fn wait_for(&self, n: usize) {
        wait_until(&format!("{n} sounds"), || self.sounds().len() >= n).await;
        // Anything said after these would come now.
        tokio::time::sleep(Duration::from_millis(800)).await;
    }
}

impl AudioOutput for Heard {
    fn start(&mut self) -> Result<(), AudioError> {
        Ok(())
    }

    fn stop(&mut self) {}

    fn write(&mut self, sound: Sound) -> Result<(), AudioError> {
        let samples = sound.count() as u64;
        self.0.lock().unwrap().push(samples);
        Ok(())
    }
}

async fn wait_until(what: &str, mut probe: impl FnMut() -> bool) {
    let deadline = Instant::now() + WAIT;
    while !probe() {
        assert!(Instant::now() < deadline, "timed out waiting for {what}");
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
}

/// Every log line of this test binary (tests here run the daemon on many threads, so the
/// subscriber is global; only one test makes gap lines).
fn log() -> &'static Arc<Mutex<Vec<u8>>> {
    static LOG: OnceLock<Arc<Mutex<Vec<u8>>>> = OnceLock::new();
    LOG.get_or_init(|| {
        let log = Arc::new(Mutex::new(Vec::new()));
        let writer = LogWriter(log.clone());
        let _ = tracing_subscriber::fmt()
            .with_writer(move || writer.clone())
            .with_ansi(false)
            .with_max_level(tracing::Level::INFO)
            .try_init();
        log
    })
}

#[derive(Clone)]
struct LogWriter(Arc<Mutex<Vec<u8>>>);

impl std::io::Write for LogWriter {
    fn write(&mut self, buf: &[u8]) -> std::io::Result<usize> {
        self.0.lock().unwrap().extend_from_slice(buf);
        Ok(buf.len())
    }

    fn flush(&mut self) -> std::io::Result<()> {
        Ok(())
    }
}

/// A simulator whose clock stands at `start_unix` until advanced, with the phone ready to
/// scan and confirm the first QR code.
async fn simulator(start_unix: Option<i64>) -> Simulator {
    let sim = Simulator::start(SimConfig {
        clock: start_unix.map(|start_unix| SimClock {
            start_unix,
            speed: 0.0,
        }),
        ..SimConfig::for_tests()
    })
    .await
    .unwrap();
    sim.scan();
    sim.confirm();
    sim
}

fn config(sim: &Simulator, notify: Option<NotifyConfig>) -> Config {
    let mut config = common::daemon::config_for(sim);
    config.audio.chime = false;
    config.notify = notify;
    config
}

fn notify(daily_summary: &str) -> Option<NotifyConfig> {
    Some(NotifyConfig {
        daily_summary: daily_summary.into(),
        ..NotifyConfig::default()
    })
}

/// The daemon in `dir`, heard by the returned output; `clock` is its wall clock.
fn start(
    config: Config,
    dir: &Path,
    clock: Option<Arc<dyn Fn() -> i64 + Send + Sync>>,
) -> (common::daemon::Running, Heard) {
    let heard = Heard::default();
    let running =
        common::daemon::start_custom(config, dir, Box::new(LengthVoice), heard.clone(), |d| {
            match clock {
                Some(clock) => d.clock(clock),
                None => d,
            }
        });
    (running, heard)
}

async fn stop(daemon: common::daemon::Running) {
    daemon.shutdown.cancel();
    daemon.task.await.unwrap().unwrap();
}

/// A wall clock that reads `at` now and runs in real time.
fn clock_from(at: i64) -> Arc<dyn Fn() -> i64 + Send + Sync> {
    let began = Instant::now();
    Arc::new(move || at + began.elapsed().as_secs() as i64)
}

fn entries(dir: &Path) -> Vec<Entry> {
    let path = dir.join("state/ledger.sqlite3");
    if !path.exists() {
        return Vec::new();
    }
    Ledger::open(&path)
        .and_then(|l| l.entries(0, i64::MAX))
        .unwrap_or_default()
}

async fn wait_for_entries(dir: &Path, n: usize) {
    wait_until(&format!("{n} payments in the ledger"), || {
        entries(dir).len() >= n
    })
    .await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_skipped_notice_is_said_once_and_shows_in_the_log_the_ledger_and_the_summary() {
    let log = log();
    let sim = simulator(Some(MAY_1 + 11 * HOUR)).await;
    let dir = tempfile::tempdir().unwrap();

    // Two payments heard, then paysay stops.
    let (daemon, _) = start(config(&sim, None), dir.path(), None);
    sim.pay(100);
    sim.pay(250);
    wait_for_entries(dir.path(), 2).await;
    stop(daemon).await;

    // While it is stopped WeChat counts a payment whose notice never comes (今日第3笔);
    // the next one says 今日第4笔.
    sim.pay_unseen(1250);
    sim.pay(300);
    let (daemon, heard) = start(config(&sim, None), dir.path(), None);
    wait_for_entries(dir.path(), 3).await;
    heard.wait_for(2).await;
    assert_eq!(
        heard.gap_alerts(),
        1,
        "one spoken warning: {:?}",
        heard.sounds()
    );
    assert_eq!(heard.sounds().len(), 2, "the payment and the warning");
    stop(daemon).await;
    let text = String::from_utf8_lossy(&log.lock().unwrap()).into_owned();
    let line = text
        .lines()
        .find(|l| l.contains("WeChat counted payments today that paysay never saw"))
        .unwrap_or_else(|| panic!("no gap in the log:\n{text}"));
    assert!(line.contains("missed=1"), "{line}");
    assert!(line.contains("missed_amount=12.50"), "{line}");

    // `paysay ledger` says it.
    let config_file = dir.path().join("paysay.toml");
    let ledger_path = dir.path().join("state/ledger.sqlite3");
    std::fs::write(
        &config_file,
        format!("[ledger]\npath = {:?}\n", ledger_path.to_str().unwrap()),
    )
    .unwrap();
    let mut cmd = common::paysay_in(dir.path());
    cmd.arg("--config").arg(&config_file).args([
        "ledger",
        "--since",
        "2024-05-01",
        "--until",
        "2024-05-01",
    ]);
    let out = tokio::task::spawn_blocking(move || cmd.output().unwrap())
        .await
        .unwrap();
    let stdout = String::from_utf8_lossy(&out.stdout);
    assert!(out.status.success(), "{stdout}");
    assert!(
        stdout.contains("WeChat counted 1 more payment, ￥12.50, than the ledger"),
        "{stdout}"
    );

    // At 22:00 the summary goes to the file helper, gap included.
    let (daemon, _) = start(
        config(&sim, notify("22:00")),
        dir.path(),
        Some(clock_from(MAY_1 + 22 * HOUR - 2)),
    );
    wait_until("the summary", || !sim.sent_messages().is_empty()).await;
    tokio::time::sleep(Duration::from_secs(1)).await;
    stop(daemon).await;
    let sent = sim.sent_messages();
    assert_eq!(sent.len(), 1, "{sent:?}");
    assert_eq!(sent[0].to, "filehelper");
    assert_eq!(
        sent[0].content,
        "今日收款 3 笔，共计 ￥6.50（二维码收款 3 笔 ￥6.50）\n微信记录的收款比账本多 1 笔，￥12.50，请在手机上核对"
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn no_false_alarm_after_a_mid_day_start_across_midnight_or_with_clerk_copies() {
    let sim = simulator(Some(MAY_1 + 15 * HOUR)).await;
    // paysay starts at noon: WeChat counted three before the first notice it sees.
    for fen in [100, 200, 300] {
        sim.pay_unseen(fen);
    }
    sim.pay(100); // 今日第4笔
    sim.pay(200); // 第5笔
    // Clerk copies: their own account and count.
    sim.pay_clerk_notice(300); // 第1笔 on the clerk line
    sim.pay_clerk_notice(400); // 第2笔
    sim.pay(150); // 第6笔
    // Midnight in China (16:00 UTC): WeChat's count starts again, the local (UTC) day not.
    sim.advance_clock(Duration::from_secs(90 * 60));
    sim.pay(500); // 第1笔
    // The local midnight: paysay's day starts again; WeChat counted four meanwhile.
    sim.advance_clock(Duration::from_secs(9 * 3600));
    for fen in [1, 2, 3, 4] {
        sim.pay_unseen(fen);
    }
    sim.pay(600); // 第6笔, the first of the local day paysay sees
    let dir = tempfile::tempdir().unwrap();
    let (daemon, heard) = start(config(&sim, None), dir.path(), None);
    wait_for_entries(dir.path(), 7).await;
    // Seven payments and the login alert.
    heard.wait_for(8).await;
    stop(daemon).await;
    assert_eq!(heard.gap_alerts(), 0, "{:?}", heard.sounds());
    let entries = entries(dir.path());
    let counts: Vec<Option<u32>> = entries.iter().map(|e| e.payment.daily_count).collect();
    assert_eq!(
        counts,
        [4, 5, 1, 2, 6, 1, 6].map(Some),
        "the notices carried the counts this test means"
    );
    assert_eq!(reconcile::gaps(&entries, &|_| UtcOffset::UTC), []);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_re_login_sends_one_back_online_text() {
    let sim = simulator(None).await;
    let dir = tempfile::tempdir().unwrap();
    let (daemon, _) = start(config(&sim, notify("")), dir.path(), None);
    assert!(sim.wait_for_requests(Endpoint::SyncCheck, 1, WAIT).await);
    assert!(
        sim.sent_messages().is_empty(),
        "nothing after the first login"
    );
    sim.logout(1101);
    sim.confirm();
    wait_until("the back-online text", || !sim.sent_messages().is_empty()).await;
    tokio::time::sleep(Duration::from_secs(1)).await;
    stop(daemon).await;
    let sent = sim.sent_messages();
    assert_eq!(sent.len(), 1, "{sent:?}");
    assert!(
        sent[0]
            .content
            .starts_with("paysay 已重新登录微信，离开了 "),
        "{}",
        sent[0].content
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_1205_is_tried_once_and_not_again_for_minutes() {
    let sim = simulator(None).await;
    sim.refuse_sends(Some(1205));
    let dir = tempfile::tempdir().unwrap();
    let (daemon, _) = start(
        config(&sim, notify("22:00")),
        dir.path(),
        Some(clock_from(MAY_1 + 22 * HOUR - 1)),
    );
    assert!(sim.wait_for_requests(Endpoint::SendMsg, 1, WAIT).await);
    tokio::time::sleep(Duration::from_secs(3)).await;
    stop(daemon).await;
    let tries = sim.requests_to(Endpoint::SendMsg);
    assert_eq!(tries.len(), 1, "one try, then minutes of waiting");
    assert_eq!(tries[0].verdict, Verdict::Refused(1205));
    assert!(sim.sent_messages().is_empty());
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn paysay_notify_test_sends_one_text_through_the_saved_session() {
    let sim = simulator(None).await;
    let dir = tempfile::tempdir().unwrap();
    let config_file = dir.path().join("paysay.toml");
    let wechat = format!(
        "[wechat]\nbase_url = \"{}\"\nlong_poll_timeout_secs = 3\n",
        sim.base_url()
    );
    let run = |args: &'static [&'static str]| {
        let mut cmd = common::paysay_in(dir.path());
        cmd.arg("--config").arg(&config_file).args(args);
        tokio::task::spawn_blocking(move || cmd.output().unwrap())
    };
    std::fs::write(&config_file, &wechat).unwrap();
    let off = run(&["notify", "--test"]).await.unwrap();
    assert!(!off.status.success());
    assert!(String::from_utf8_lossy(&off.stderr).contains("[notify] is off"));

    let mut file = std::fs::File::create(&config_file).unwrap();
    write!(file, "{wechat}\n[notify]\nto = \"filehelper\"\n").unwrap();
    let not_in = run(&["notify", "--test"]).await.unwrap();
    assert!(!not_in.status.success());
    assert!(
        String::from_utf8_lossy(&not_in.stderr).contains("run `paysay login` first"),
        "{}",
        String::from_utf8_lossy(&not_in.stderr)
    );
    assert!(sim.requests_to(Endpoint::SendMsg).is_empty());

    let login = run(&["login"]).await.unwrap();
    assert!(
        login.status.success(),
        "{}",
        String::from_utf8_lossy(&login.stderr)
    );
    let sent = run(&["notify", "--test"]).await.unwrap();
    assert!(
        sent.status.success(),
        "{}",
        String::from_utf8_lossy(&sent.stderr)
    );
    let texts = sim.sent_messages();
    assert_eq!(texts.len(), 1, "{texts:?}");
    assert_eq!(texts[0].to, "filehelper");
    assert!(texts[0].content.starts_with("paysay 测试消息"));
}
