//! The real `paysay run` binary against the simulator, with ALSA's file plugin as the
//! speaker: payments heard once each, forgeries and redeliveries silent, SIGTERM a clean
//! exit, and a SIGKILL mid-announcement neither losing nor doubling a payment.

mod common;

use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

use paysay::ledger::{Entry, Ledger};
use paysay::simulator::{Endpoint, SimConfig, Simulator};

const WAIT: Duration = Duration::from_secs(60);

/// A shop: a temp home with XDG dirs, a config, and the simulator it points at.
struct Shop {
    dir: tempfile::TempDir,
    sim: Simulator,
}

impl Shop {
    async fn new(extra_config: &str) -> Shop {
        let sim = Simulator::start(SimConfig::for_tests()).await.unwrap();
        let dir = tempfile::tempdir().unwrap();
        let config = format!(
            "[wechat]\nbase_url = \"{}\"\nlong_poll_timeout_secs = 3\nmin_backoff_ms = 50\n\n[audio]\nidle_close_ms = 50\n{extra_config}",
            sim.base_url()
        );
        std::fs::write(dir.path().join("paysay.toml"), config).unwrap();
        Shop { dir, sim }
    }

    fn path(&self, name: &str) -> PathBuf {
        self.dir.path().join(name)
    }

    fn command(&self, args: &[&str]) -> Command {
        paysay(self.dir.path(), args)
    }

    /// Starts `paysay run`, its log going to `log`.
    fn start(&self, log: &str) -> Child {
        let log = std::fs::File::create(self.path(log)).unwrap();
        self.command(&["run"])
            .stdout(Stdio::null())
            .stderr(log)
            .spawn()
            .unwrap()
    }

    fn log(&self, name: &str) -> String {
        std::fs::read_to_string(self.path(name)).unwrap_or_default()
    }

    fn entries(&self) -> Vec<Entry> {
        let db = self.path("state/paysay/ledger.sqlite3");
        if !db.exists() {
            return Vec::new();
        }
        Ledger::open(&db).unwrap().entries(0, i64::MAX).unwrap()
    }

    /// Waits until `n` payments are in the ledger and announced.
    async fn wait_announced(&self, n: usize) -> Vec<Entry> {
        wait_until(|| {
            let entries = self.entries();
            (entries.iter().filter(|e| e.announced_at.is_some()).count() >= n).then_some(entries)
        })
        .await
    }

    /// Plays the phone until the daemon is logged in and polling.
    async fn log_in(&self) {
        assert!(
            self.sim
                .wait_for_requests(Endpoint::LoginPoll, 1, WAIT)
                .await
        );
        self.sim.scan();
        self.sim.confirm();
        self.wait_polling().await;
    }

    async fn wait_polling(&self) {
        let before = self.sim.requests_to(Endpoint::SyncCheck).len();
        assert!(
            self.sim
                .wait_for_requests(Endpoint::SyncCheck, before + 1, WAIT)
                .await
        );
    }
}

/// `paysay --config ROOT/paysay.toml ARGS` with its dirs under `root` and ALSA capturing
/// to `root/capture.wav`; the environment is the child's alone.
fn paysay(root: &Path, args: &[&str]) -> Command {
    let mut cmd = common::paysay_capturing(root, &root.join("capture.wav"));
    cmd.arg("--config")
        .arg(root.join("paysay.toml"))
        .args(args)
        .env("PAYSAY_LOG", "info");
    cmd
}

async fn wait_until<T>(mut probe: impl FnMut() -> Option<T>) -> T {
    let started = Instant::now();
    loop {
        if let Some(v) = probe() {
            return v;
        }
        assert!(started.elapsed() < WAIT, "timed out");
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
}

fn signal(child: &Child, sig: &str) {
    let status = Command::new("kill")
        .args([sig, &child.id().to_string()])
        .status()
        .unwrap();
    assert!(status.success());
}

async fn wait_exit(child: &mut Child) -> std::process::ExitStatus {
    wait_until(|| child.try_wait().unwrap()).await
}

fn count(log: &str, needle: &str) -> usize {
    log.matches(needle).count()
}

/// Frames louder than -40 dBFS in the capture, in seconds.
fn loud_seconds(path: &Path) -> f64 {
    let mut reader = hound::WavReader::open(path).unwrap();
    let spec = reader.spec();
    let loud = reader
        .samples::<i16>()
        .map(Result::unwrap)
        .filter(|s| s.unsigned_abs() > 328)
        .count();
    loud as f64 / f64::from(spec.sample_rate) / f64::from(spec.channels)
}

#[tokio::test(flavor = "multi_thread")]
async fn run_announces_each_payment_once_and_sigterm_exits_cleanly() {
    let shop = Shop::new("").await;
    let mut daemon = shop.start("run1.log");
    shop.log_in().await;

    let first = shop.sim.pay(1250);
    shop.sim.forged_payment(99900);
    shop.sim.pay(1);
    shop.wait_announced(2).await;
    shop.sim.redeliver(&first);
    shop.sim.transfer("张三", 20000);
    let entries = shop.wait_announced(3).await;
    assert_eq!(entries.len(), 3);

    signal(&daemon, "-TERM");
    let status = wait_exit(&mut daemon).await;
    assert_eq!(status.code(), Some(0), "{}", shop.log("run1.log"));

    let log = shop.log("run1.log");
    assert_eq!(count(&log, "payment announced"), 3, "{log}");
    assert_eq!(count(&log, "delivered again"), 1, "{log}");
    assert_eq!(
        count(&log, "ordinary contact named like a payment account"),
        1,
        "{log}"
    );
    assert!(
        loud_seconds(&shop.path("capture.wav")) > 1.0,
        "the last announcement was captured"
    );

    // The ledger, through the documented JSON contract.
    let out = shop.command(&["ledger", "--json"]).output().unwrap();
    assert!(out.status.success());
    let lines: Vec<serde_json::Value> = String::from_utf8(out.stdout)
        .unwrap()
        .lines()
        .map(|l| serde_json::from_str(l).unwrap())
        .collect();
    let amounts: Vec<u64> = lines
        .iter()
        .map(|l| l["amount_fen"].as_u64().unwrap())
        .collect();
    assert_eq!(amounts, vec![1250, 1, 20000]);
    assert_eq!(lines[2]["kind"], "transfer");
    assert_eq!(lines[2]["payer"], "张三");
    assert_eq!(lines[0]["msg_id"], first.as_str());
    assert!(time_is_rfc3339(lines[0]["time"].as_str().unwrap()));

    // A payment while paysay is down is heard after the restart; nothing else is repeated.
    shop.sim.pay(500);
    let mut daemon = shop.start("run2.log");
    let entries = shop.wait_announced(4).await;
    assert_eq!(entries.len(), 4);
    signal(&daemon, "-INT");
    assert_eq!(wait_exit(&mut daemon).await.code(), Some(0));
    let log = shop.log("run2.log");
    assert_eq!(count(&log, "payment announced"), 1, "{log}");
    assert_eq!(
        count(&log, "resumed the saved WeChat session"),
        1,
        "no new scan: {log}"
    );
}

fn time_is_rfc3339(s: &str) -> bool {
    time::OffsetDateTime::parse(s, &time::format_description::well_known::Rfc3339).is_ok()
}

/// A shop whose voice takes 3 s to speak, so a signal lands between "recorded" and "heard".
async fn shop_with_slow_voice() -> (Shop, tempfile::TempDir) {
    let dir = tempfile::tempdir().unwrap();
    let slow = dir.path().join("slow-espeak");
    std::fs::write(&slow, "#!/bin/sh\nsleep 3\nexec espeak-ng \"$@\"\n").unwrap();
    make_executable(&slow);
    let shop = Shop::new(&format!(
        "\n[speech.system]\ncommand = \"{}\"\n",
        slow.display()
    ))
    .await;
    (shop, dir)
}

#[tokio::test(flavor = "multi_thread")]
async fn sigterm_finishes_the_announcement_being_spoken() {
    let (shop, _voice) = shop_with_slow_voice().await;
    let mut daemon = shop.start("run.log");
    shop.log_in().await;
    // The login alert is said first; the payment is the next announcement.
    wait_until(|| shop.log("run.log").contains("alert spoken").then_some(())).await;
    shop.sim.pay(888);
    wait_until(|| {
        shop.log("run.log")
            .contains("payment received")
            .then_some(())
    })
    .await;
    signal(&daemon, "-TERM");
    assert_eq!(wait_exit(&mut daemon).await.code(), Some(0));
    let entries = shop.entries();
    assert_eq!(entries.len(), 1);
    assert!(entries[0].announced_at.is_some(), "{}", shop.log("run.log"));
    assert_eq!(count(&shop.log("run.log"), "payment announced"), 1);
}

#[tokio::test(flavor = "multi_thread")]
async fn sigkill_mid_announcement_loses_nothing_and_doubles_nothing() {
    let (shop, _voice) = shop_with_slow_voice().await;

    let mut daemon = shop.start("run1.log");
    shop.log_in().await;
    let id = shop.sim.pay(777);
    wait_until(|| {
        shop.log("run1.log")
            .contains("payment received")
            .then_some(())
    })
    .await;
    signal(&daemon, "-KILL");
    wait_exit(&mut daemon).await;
    let entries = shop.entries();
    assert_eq!(entries.len(), 1, "recorded before it was spoken");
    assert_eq!(entries[0].announced_at, None, "killed before it was heard");

    let mut daemon = shop.start("run2.log");
    let entries = shop.wait_announced(1).await;
    signal(&daemon, "-TERM");
    assert_eq!(wait_exit(&mut daemon).await.code(), Some(0));
    assert_eq!(entries.len(), 1);
    assert_eq!(entries[0].payment.msg_id, id);
    let log = shop.log("run2.log");
    assert_eq!(count(&log, "payment announced"), 1, "{log}");
    assert_eq!(count(&shop.log("run1.log"), "payment announced"), 0);
    assert!(log.contains("not yet announced"), "{log}");
}

#[cfg(unix)]
fn make_executable(path: &Path) {
    use std::os::unix::fs::PermissionsExt;
    std::fs::set_permissions(path, std::fs::Permissions::from_mode(0o755)).unwrap();
}

#[test]
fn demo_is_heard_end_to_end() {
    let dir = tempfile::tempdir().unwrap();
    let root = dir.path();
    std::fs::write(root.join("paysay.toml"), "[audio]\nidle_close_ms = 50\n").unwrap();
    let out = paysay(root, &["demo"]).output().unwrap();
    let stdout = String::from_utf8_lossy(&out.stdout);
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert!(out.status.success(), "{stdout}\n{stderr}");
    assert!(stdout.contains("total 312.56 yuan"), "{stdout}");
    assert_eq!(count(&stderr, "payment announced"), 4, "{stderr}");
    assert!(loud_seconds(&root.join("capture.wav")) > 1.0);
    assert!(
        !root.join("state/paysay/ledger.sqlite3").exists(),
        "the demo leaves the real ledger alone"
    );
}

#[tokio::test(flavor = "multi_thread")]
async fn sighup_reloads_speech_settings_without_a_new_login() {
    let shop = Shop::new("").await;
    let mut daemon = shop.start("run.log");
    shop.log_in().await;
    shop.sim.pay(100);
    shop.wait_announced(1).await;

    let config = std::fs::read_to_string(shop.path("paysay.toml")).unwrap();
    std::fs::write(
        shop.path("paysay.toml"),
        format!("{config}\n[speech]\ntemplate = \"到账{{amount}}元\"\n"),
    )
    .unwrap();
    signal(&daemon, "-HUP");
    wait_until(|| {
        shop.log("run.log")
            .contains("config reloaded")
            .then_some(())
    })
    .await;
    shop.sim.pay(200);
    shop.wait_announced(2).await;
    signal(&daemon, "-TERM");
    assert_eq!(wait_exit(&mut daemon).await.code(), Some(0));

    let log = shop.log("run.log");
    assert!(log.contains("text=微信收款一元"), "{log}");
    assert!(log.contains("text=到账二元"), "{log}");
    assert_eq!(
        shop.sim.requests_to(Endpoint::JsLogin).len(),
        1,
        "no new login"
    );
}

#[test]
fn demo_without_a_sound_device_runs_silently_to_the_end() {
    let dir = tempfile::tempdir().unwrap();
    let root = dir.path();
    std::fs::write(root.join("paysay.toml"), "").unwrap();
    std::fs::write(root.join("no-devices.conf"), "# no devices\n").unwrap();
    let out = paysay(root, &["demo"])
        .env("ALSA_CONFIG_PATH", root.join("no-devices.conf"))
        .output()
        .unwrap();
    let stdout = String::from_utf8_lossy(&out.stdout);
    assert!(out.status.success(), "{stdout}");
    assert!(stdout.contains("no sound device"), "{stdout}");
    assert!(stdout.contains("total 312.56 yuan"), "{stdout}");
}
