//! The real `paysay run` binary sending payment events to real receivers: a SIGKILL in the
//! middle of a delivery loses nothing and a resend carries the same id; V免签 hears a
//! heartbeat only while WeChat is logged in, and each payment. Delivery states are read
//! through `paysay ledger --json`, as a shop's own tooling would.

mod common;
#[path = "common/receivers.rs"]
mod receivers;

use std::path::PathBuf;
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

use receivers::{HANG, VmqServer, WebhookReceiver};
use wechat_sim::{Endpoint, SimConfig, Simulator};

const WAIT: Duration = Duration::from_secs(60);
const SECRET: &str = "e2e-secret";

struct Shop {
    dir: tempfile::TempDir,
    sim: Simulator,
}

impl Shop {
    async fn new(extra_config: &str) -> Shop {
        let sim = Simulator::start(SimConfig::for_tests()).await.unwrap();
        let dir = tempfile::tempdir().unwrap();
        let config = format!(
            "[wechat]\nbase_url = \"{}\"\nlong_poll_timeout_secs = 3\nmin_backoff_ms = 50\n\n[audio]\nidle_close_ms = 50\n\n[web]\nlisten = \"127.0.0.1:0\"\n{extra_config}",
            sim.base_url()
        );
        std::fs::write(dir.path().join("paysay.toml"), config).unwrap();
        Shop { dir, sim }
    }

    fn path(&self, name: &str) -> PathBuf {
        self.dir.path().join(name)
    }

    fn command(&self, args: &[&str]) -> Command {
        let root = self.dir.path();
        let mut cmd = common::paysay_capturing(root, &root.join("capture.wav"));
        cmd.arg("--config")
            .arg(root.join("paysay.toml"))
            .args(args)
            .env("PAYSAY_LOG", "info");
        cmd
    }

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

    /// `paysay ledger --json` over every day.
    fn ledger_json(&self) -> Vec<serde_json::Value> {
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

    /// The delivery state of each payment for `sink`, oldest first.
    fn states(&self, sink: &str) -> Vec<String> {
        self.ledger_json()
            .iter()
            .map(|l| l["deliveries"][sink].as_str().unwrap_or("none").to_string())
            .collect()
    }

    /// Waits for a new login poll, then plays the phone until the daemon is polling.
    async fn log_in(&self) {
        let polls = self.sim.requests_to(Endpoint::LoginPoll).len();
        assert!(
            self.sim
                .wait_for_requests(Endpoint::LoginPoll, polls.max(1), WAIT)
                .await
        );
        self.sim.scan();
        self.sim.confirm();
        let before = self.sim.requests_to(Endpoint::SyncCheck).len();
        assert!(
            self.sim
                .wait_for_requests(Endpoint::SyncCheck, before + 1, WAIT)
                .await
        );
    }
}

async fn wait_until(what: &str, mut probe: impl FnMut() -> bool) {
    let started = Instant::now();
    while !probe() {
        assert!(started.elapsed() < WAIT, "timed out waiting for {what}");
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
    let started = Instant::now();
    loop {
        if let Some(status) = child.try_wait().unwrap() {
            return status;
        }
        assert!(started.elapsed() < WAIT, "paysay did not exit");
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
}

fn webhook_config(name: &str, url: &str, secret: Option<&str>) -> String {
    let secret = secret.map_or(String::new(), |s| format!("secret = \"{s}\"\n"));
    format!("\n[[webhook]]\nname = \"{name}\"\nurl = \"{url}\"\ntimeout_ms = 30000\n{secret}")
}

#[tokio::test(flavor = "multi_thread")]
async fn sigkill_mid_delivery_loses_nothing_and_a_resend_carries_the_same_id() {
    let any = "127.0.0.1:0".parse().unwrap();
    // Takes the request and never answers: paysay is killed while it waits.
    let receiver = WebhookReceiver::start(any, Some(SECRET), HANG).await;
    let shop = Shop::new(&webhook_config("shop", &receiver.url(), Some(SECRET))).await;
    let mut daemon = shop.start("run1.log");
    shop.log_in().await;
    let msg_id = shop.sim.pay(1250);
    wait_until("the request in flight", || receiver.received().len() == 1).await;
    signal(&daemon, "-KILL");
    wait_exit(&mut daemon).await;
    assert_eq!(shop.states("shop"), ["pending"], "killed before the answer");
    let first = receiver.ids()[0].clone();

    // The next start sends it again, with the same id.
    receiver.answer(200);
    let mut daemon = shop.start("run2.log");
    wait_until("delivered after the restart", || {
        shop.states("shop") == ["delivered"]
    })
    .await;
    assert_eq!(receiver.ids(), [first.clone(), first.clone()]);
    let entry = &shop.ledger_json()[0];
    assert_eq!(entry["msg_id"], msg_id.as_str());
    assert_eq!(receiver.received()[1].body["msg_id"], msg_id.as_str());
    assert!(receiver.received().iter().all(|r| r.signed));

    // 补单 by hand while the daemon runs: picked up without a restart, same id.
    let out = shop
        .command(&["resend", "--since", "2000-01-01", "--sink", "shop"])
        .output()
        .unwrap();
    let said = String::from_utf8_lossy(&out.stdout);
    assert!(
        out.status.success(),
        "{said}{}",
        String::from_utf8_lossy(&out.stderr)
    );
    assert!(said.contains("1 event(s)"), "{said}");
    wait_until("the resend", || receiver.ids().len() == 3).await;
    wait_until("delivered again", || shop.states("shop") == ["delivered"]).await;
    assert_eq!(receiver.ids()[2], first);
    let unknown = shop
        .command(&["resend", "--since", "2000-01-01", "--sink", "nope"])
        .output()
        .unwrap();
    assert!(!unknown.status.success());
    assert!(String::from_utf8_lossy(&unknown.stderr).contains("configured: shop"));

    signal(&daemon, "-TERM");
    assert_eq!(wait_exit(&mut daemon).await.code(), Some(0));
    let log = shop.log("run2.log");
    assert_eq!(log.matches("event delivered").count(), 2, "{log}");
    assert_eq!(shop.log("run1.log").matches("event delivered").count(), 0);
}

#[tokio::test(flavor = "multi_thread")]
async fn vmq_heartbeats_only_while_logged_in_and_a_refusing_webhook_leaves_it_alone() {
    let server = VmqServer::start("shop-key-42").await;
    server.create_order("order-7", 1250);
    let refusing = WebhookReceiver::start("127.0.0.1:0".parse().unwrap(), None, 400).await;
    let shop = Shop::new(&format!(
        "\n[vmq]\nserver = \"{}\"\nheartbeat_secs = 1\n{}",
        server.server_string(),
        webhook_config("picky", &refusing.url(), None)
    ))
    .await;
    let mut daemon = shop.start("run.log");
    assert_eq!(server.heartbeats(), 0, "no heartbeat before the login");
    shop.log_in().await;
    wait_until("heartbeats", || server.heartbeats() >= 2).await;
    assert_eq!(server.jkstate(), 1);

    shop.sim.pay(1250);
    shop.sim.pay(300);
    wait_until("both pushed", || {
        shop.states("vmq") == ["delivered", "delivered"]
    })
    .await;
    wait_until("both refused", || {
        shop.states("picky") == ["rejected", "rejected"]
    })
    .await;
    let orders: Vec<String> = server.payments().into_iter().map(|p| p.order).collect();
    assert_eq!(orders, ["order-7", "无订单转账"]);
    assert_eq!(server.payments()[0].price, "12.50");
    assert_eq!(
        refusing.received().len(),
        2,
        "a refused event is not retried"
    );

    // Logged out, and nobody scans: no heartbeat, so the shop stops taking orders.
    shop.sim.logout(1101);
    wait_until("the logout", || {
        shop.log("run.log").contains("logged out by WeChat")
    })
    .await;
    let after_logout = server.heartbeats();
    tokio::time::sleep(Duration::from_secs(4)).await;
    assert!(
        server.heartbeats() <= after_logout + 1,
        "at most one beat already under way: {} then {}",
        after_logout,
        server.heartbeats()
    );
    let quiet = server.heartbeats();

    shop.log_in().await;
    wait_until("heartbeats again", || server.heartbeats() >= quiet + 2).await;
    signal(&daemon, "-TERM");
    assert_eq!(wait_exit(&mut daemon).await.code(), Some(0));
    let log = shop.log("run.log");
    assert!(log.contains("REFUSED"), "{log}");
    assert!(log.contains("400"), "{log}");
    assert!(server.refusals().is_empty(), "{:?}", server.refusals());
}
