//! The real `paysay run` binary sending payment events to real receivers: a SIGKILL in the
//! middle of a delivery loses nothing and a resend carries the same id; V免签 hears a
//! heartbeat only while WeChat is logged in, and each payment. Delivery states are read
//! through `paysay ledger --json`, as a shop's own tooling would.

mod common;
#[path = "common/receivers.rs"]
mod receivers;

use std::time::Duration;

use common::shop::{Shop, signal, wait_exit, wait_for};
use receivers::{HANG, VmqServer, WebhookReceiver};

const SECRET: &str = "e2e-secret";

/// The delivery state of each payment for `sink`, oldest first.
fn states(shop: &Shop, sink: &str) -> Vec<String> {
    shop.ledger_json()
        .iter()
        .map(|l| l["deliveries"][sink].as_str().unwrap_or("none").to_string())
        .collect()
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
    wait_for("the request in flight", || receiver.received().len() == 1).await;
    signal(&daemon, "-KILL");
    wait_exit(&mut daemon).await;
    assert_eq!(
        states(&shop, "shop"),
        ["pending"],
        "killed before the answer"
    );
    let first = receiver.ids()[0].clone();

    // The next start sends it again, with the same id.
    receiver.answer(200);
    let mut daemon = shop.start("run2.log");
    wait_for("delivered after the restart", || {
        states(&shop, "shop") == ["delivered"]
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
    wait_for("the resend", || receiver.ids().len() == 3).await;
    wait_for("delivered again", || states(&shop, "shop") == ["delivered"]).await;
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
    wait_for("heartbeats", || server.heartbeats() >= 2).await;
    assert_eq!(server.jkstate(), 1);

    shop.sim.pay(1250);
    shop.sim.pay(300);
    wait_for("both pushed", || {
        states(&shop, "vmq") == ["delivered", "delivered"]
    })
    .await;
    wait_for("both refused", || {
        states(&shop, "picky") == ["rejected", "rejected"]
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
    wait_for("the logout", || {
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
    wait_for("heartbeats again", || server.heartbeats() >= quiet + 2).await;
    signal(&daemon, "-TERM");
    assert_eq!(wait_exit(&mut daemon).await.code(), Some(0));
    let log = shop.log("run.log");
    assert!(log.contains("REFUSED"), "{log}");
    assert!(log.contains("400"), "{log}");
    assert!(server.refusals().is_empty(), "{:?}", server.refusals());
}

/// 补单 for the day with V免签 configured: V免签 confirms whichever open order has a pushed
/// amount, so a payment it already took, pushed again, would confirm the next customer's
/// order of the same amount, whom nobody paid. Only what it did not take goes again.
#[tokio::test(flavor = "multi_thread")]
async fn a_resend_never_pushes_to_vmq_an_amount_it_already_took() {
    let server = VmqServer::start("shop-key-42").await;
    server.create_order("paid-order", 1250);
    let receiver = WebhookReceiver::start("127.0.0.1:0".parse().unwrap(), None, 200).await;
    let shop = Shop::new(&format!(
        "\n[vmq]\nserver = \"{}\"\n{}",
        server.server_string(),
        webhook_config("shop", &receiver.url(), None)
    ))
    .await;
    let mut daemon = shop.start("run.log");
    shop.log_in().await;
    shop.sim.pay(1250);
    wait_for("delivered to both", || {
        states(&shop, "vmq") == ["delivered"] && states(&shop, "shop") == ["delivered"]
    })
    .await;
    // The next customer's order gets the freed price: nobody has paid it.
    server.create_order("unpaid-order", 1250);

    let out = shop
        .command(&["resend", "--since", "2000-01-01"])
        .output()
        .unwrap();
    let said = String::from_utf8_lossy(&out.stdout);
    assert!(
        out.status.success(),
        "{said}{}",
        String::from_utf8_lossy(&out.stderr)
    );
    assert!(
        said.contains("1 event(s) V免签 already took were not queued"),
        "{said}"
    );
    // The webhook, which drops an id it has, gets it again; V免签 does not.
    wait_for("the webhook's resend", || receiver.ids().len() == 2).await;
    tokio::time::sleep(Duration::from_secs(3)).await;
    let orders: Vec<String> = server.payments().into_iter().map(|p| p.order).collect();
    assert_eq!(orders, ["paid-order"], "nothing confirmed a second time");
    assert_eq!(states(&shop, "vmq"), ["delivered"]);

    // Only an explicit flag pushes it again, with a warning of what V免签 will do.
    let forced = shop
        .command(&[
            "resend",
            "--since",
            "2000-01-01",
            "--sink",
            "vmq",
            "--include-delivered",
        ])
        .output()
        .unwrap();
    assert!(forced.status.success());
    assert!(
        String::from_utf8_lossy(&forced.stderr).contains("even one nobody paid"),
        "{}",
        String::from_utf8_lossy(&forced.stderr)
    );
    wait_for("the forced push", || server.payments().len() == 2).await;
    signal(&daemon, "-TERM");
    assert_eq!(wait_exit(&mut daemon).await.code(), Some(0));
}

/// A V免签 server that refuses every heartbeat (its clock is off) is one warning, not one
/// per beat; the line that says it answers again ends the run.
#[tokio::test(flavor = "multi_thread")]
async fn a_failing_vmq_heartbeat_is_logged_once_until_it_answers_again() {
    let server = VmqServer::start("shop-key-42").await;
    server.set_skew(Duration::from_secs(600), true);
    let shop = Shop::new(&format!(
        "\n[vmq]\nserver = \"{}\"\nheartbeat_secs = 1\n",
        server.server_string()
    ))
    .await;
    let mut daemon = shop.start("run.log");
    shop.log_in().await;
    wait_for("refused beats", || server.refusals().len() >= 4).await;
    server.set_skew(Duration::ZERO, true);
    wait_for("answered again", || {
        shop.log("run.log").contains("heartbeat answered again")
    })
    .await;
    signal(&daemon, "-TERM");
    assert_eq!(wait_exit(&mut daemon).await.code(), Some(0));
    let log = shop.log("run.log");
    assert_eq!(log.matches("V免签 heartbeat failed").count(), 1, "{log}");
    assert!(log.contains("客户端时间错误"), "the server's words: {log}");
}
