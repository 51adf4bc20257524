//! A shop for tests of the real `paysay` binary: a temp home with its XDG dirs, a config
//! pointing at a simulator of its own, and ways to start `paysay run`, play the phone and
//! watch the log and the ledger.

use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

use paysay::ledger::{Entry, Ledger};
use wechat_sim::{Endpoint, SimConfig, Simulator};

/// How long anything a test waits for may take.
pub const WAIT: Duration = Duration::from_secs(60);

pub struct Shop {
    pub dir: tempfile::TempDir,
    pub sim: Simulator,
}

impl Shop {
    /// A quick-polling config for the simulator, the page on a free port, and `extra_config`.
    pub async fn new(extra_config: &str) -> Shop {
        let sim = Simulator::start(SimConfig::for_tests()).await.unwrap();
        let dir = tempfile::tempdir().unwrap();
        let config = format!(
            "[wechat]\nbase_url = \"{}\"\nlong_poll_timeout_secs = 3\nmin_backoff_ms = 50\n\n[audio]\nidle_close_ms = 50\n\n[web]\nlisten = \"127.0.0.1:0\"\n{extra_config}",
            sim.base_url()
        );
        std::fs::write(dir.path().join("paysay.toml"), config).unwrap();
        Shop { dir, sim }
    }

    pub fn path(&self, name: &str) -> PathBuf {
        self.dir.path().join(name)
    }

    pub fn command(&self, args: &[&str]) -> Command {
        paysay(self.dir.path(), args)
    }

    /// Starts `paysay run`, its log going to `log`.
    pub fn start(&self, log: &str) -> Child {
        let log = std::fs::File::create(self.path(log)).unwrap();
        self.command(&["run"])
            .stdout(Stdio::null())
            .stderr(log)
            .spawn()
            .unwrap()
    }

    pub fn log(&self, name: &str) -> String {
        std::fs::read_to_string(self.path(name)).unwrap_or_default()
    }

    /// The ledger as the daemon wrote it (nothing when there is none yet).
    pub fn entries(&self) -> Vec<Entry> {
        let db = self.path("state/paysay/ledger.sqlite3");
        if !db.exists() {
            return Vec::new();
        }
        Ledger::open(&db).unwrap().entries(0, i64::MAX).unwrap()
    }

    /// `paysay ledger --json` over every day.
    pub fn ledger_json(&self) -> Vec<serde_json::Value> {
        let out = self
            .command(&[
                "ledger",
                "--json",
                "--since",
                "2000-01-01",
                "--until",
                "2100-01-01",
            ])
            .output()
            .unwrap();
        assert!(
            out.status.success(),
            "{}",
            String::from_utf8_lossy(&out.stderr)
        );
        String::from_utf8(out.stdout)
            .unwrap()
            .lines()
            .map(|l| serde_json::from_str(l).unwrap())
            .collect()
    }

    /// Waits until `n` payments are in the ledger and announced.
    pub async fn wait_announced(&self, n: usize) -> Vec<Entry> {
        wait_until("the payments announced", || {
            let entries = self.entries();
            (entries.iter().filter(|e| e.announced_at.is_some()).count() >= n).then_some(entries)
        })
        .await
    }

    /// Waits for the daemon's login poll, then plays the phone until the daemon is polling.
    pub async fn log_in(&self) {
        assert!(
            self.sim
                .wait_for_requests(Endpoint::LoginPoll, 1, WAIT)
                .await
        );
        self.sim.scan();
        self.sim.confirm();
        self.wait_polling().await;
    }

    /// The shop's page's address (`[web] listen` on port 0 picks one), from the log.
    pub async fn page_addr(&self, log: &str) -> std::net::SocketAddr {
        wait_until("the page's address", || {
            let log = self.log(log);
            let at = log.find("url=http://127.0.0.1:")? + "url=http://".len();
            let end = at + log[at..].find('/')?;
            log[at..end].parse().ok()
        })
        .await
    }

    /// Waits for the daemon's next synccheck.
    pub async fn wait_polling(&self) {
        let before = self.sim.requests_to(Endpoint::SyncCheck).len();
        assert!(
            self.sim
                .wait_for_requests(Endpoint::SyncCheck, before + 1, WAIT)
                .await
        );
    }
}

/// `paysay --config ROOT/paysay.toml ARGS` with its dirs under `root`, logging at info, and
/// ALSA capturing to `root/capture.wav`; the environment is the child's alone.
pub fn paysay(root: &Path, args: &[&str]) -> Command {
    let mut cmd = super::paysay_capturing(root, &root.join("capture.wav"));
    cmd.arg("--config")
        .arg(root.join("paysay.toml"))
        .args(args)
        .env("PAYSAY_LOG", "info");
    cmd
}

/// Polls `probe` until it gives a value; fails the test after [`WAIT`].
pub async fn wait_until<T>(what: &str, mut probe: impl FnMut() -> Option<T>) -> T {
    let started = Instant::now();
    loop {
        if let Some(v) = probe() {
            return v;
        }
        assert!(started.elapsed() < WAIT, "timed out waiting for {what}");
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
}

/// Polls `probe` until it holds; fails the test after [`WAIT`].
pub async fn wait_for(what: &str, mut probe: impl FnMut() -> bool) {
    wait_until(what, || probe().then_some(())).await
}

/// Sends `sig` (`-TERM`, `-KILL`, `-HUP`) to the child with kill(1).
pub fn signal(child: &Child, sig: &str) {
    let status = Command::new("kill")
        .args([sig, &child.id().to_string()])
        .status()
        .unwrap();
    assert!(status.success());
}

pub async fn wait_exit(child: &mut Child) -> std::process::ExitStatus {
    wait_until("paysay to exit", || child.try_wait().unwrap()).await
}
