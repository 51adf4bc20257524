//! The real `paysay run` binary against the simulator, with ALSA's file plugin as the
//! speaker: payments heard once each, forgeries and redeliveries silent, SIGTERM a clean
//! exit, and a SIGKILL mid-announcement neither losing nor doubling a payment.

mod common;

use std::path::{Path, PathBuf};
use std::process::{Command, Stdio};

use common::shop::{Shop, paysay, signal, wait_exit, wait_for};
use paysay::ledger::Ledger;
use wechat_sim::{Endpoint, Simulator};

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
    wait_for("alert spoken", || {
        shop.log("run.log").contains("alert spoken")
    })
    .await;
    shop.sim.pay(888);
    wait_for("payment received", || {
        shop.log("run.log").contains("payment received")
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
    wait_for("payment received", || {
        shop.log("run1.log").contains("payment received")
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
#[cfg(feature = "demo")]
fn demo_is_heard_end_to_end() {
    let dir = tempfile::tempdir().unwrap();
    let root = dir.path();
    std::fs::write(
        root.join("paysay.toml"),
        "[audio]\nidle_close_ms = 50\n\n[web]\nlisten = \"127.0.0.1:0\"\n",
    )
    .unwrap();
    let out = paysay(root, &["demo"]).output().unwrap();
    let stdout = String::from_utf8_lossy(&out.stdout);
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert!(out.status.success(), "{stdout}\n{stderr}");
    assert!(stdout.contains("total 327.96 yuan"), "{stdout}");
    // A first run: the bank is built first, and the six amounts, never said before, are
    // composed from it at once.
    assert!(stdout.contains("voice bank ready"), "{stdout}");
    assert!(
        stdout.contains("how they were said: 6 composed at once"),
        "{stdout}"
    );
    // Six payments, one of them heard both from WeChat and from the phone: said once.
    assert_eq!(count(&stderr, "payment announced"), 6, "{stderr}");
    assert!(stderr.contains("text=支付宝收款六点六元"), "{stderr}");
    assert!(
        stdout.contains("alipay   collection       phone"),
        "{stdout}"
    );
    assert!(
        stdout.contains("wechat   collection       both"),
        "{stdout}"
    );
    assert!(loud_seconds(&root.join("capture.wav")) > 1.0);
    assert!(
        !root.join("state/paysay/ledger.sqlite3").exists(),
        "the demo leaves the real ledger alone"
    );
    assert_eq!(
        count(&stdout, "signature checked"),
        6,
        "each payment goes out once to the demo's webhook: {stdout}"
    );
}

/// The demo's payments are not money: a shop's own webhook, V免签 server (which would
/// confirm an order) and broker (whose speakers would say them) must not hear of them.
#[test]
#[cfg(feature = "demo")]
fn demo_sends_nothing_to_the_sinks_of_the_shop_config() {
    let dir = tempfile::tempdir().unwrap();
    let root = dir.path();
    let shop = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
    shop.set_nonblocking(true).unwrap();
    let port = shop.local_addr().unwrap().port();
    std::fs::write(
        root.join("paysay.toml"),
        format!(
            "[[webhook]]\nurl = \"http://127.0.0.1:{port}/orders\"\n\n\
             [vmq]\nserver = \"127.0.0.1:{port}/key\"\n\n\
             [mqtt]\nurl = \"mqtt://127.0.0.1:{port}\"\n"
        ),
    )
    .unwrap();
    let out = paysay(root, &["demo", "--dry-run"]).output().unwrap();
    let stdout = String::from_utf8_lossy(&out.stdout);
    assert!(out.status.success(), "{stdout}");
    assert_eq!(count(&stdout, "signature checked"), 6, "{stdout}");
    assert!(
        matches!(shop.accept(), Err(e) if e.kind() == std::io::ErrorKind::WouldBlock),
        "nothing connected to the shop's own sinks"
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
    wait_for("config reloaded", || {
        shop.log("run.log").contains("config reloaded")
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
#[cfg(feature = "demo")]
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
    assert!(stdout.contains("total 327.96 yuan"), "{stdout}");
}

// ---- issue 10: the ledger under faults ----

fn ledger_path(root: &Path) -> PathBuf {
    root.join("state/paysay/ledger.sqlite3")
}

/// The requests that carried the payment `msg_id` back from webwxsync.
fn syncs_delivering(sim: &Simulator, msg_id: &str) -> Vec<wechat_sim::RecordedRequest> {
    sim.requests_to(Endpoint::Sync)
        .into_iter()
        .filter(|r| r.response.contains(msg_id))
        .collect()
}

fn sent_sync_key(r: &wechat_sim::RecordedRequest) -> serde_json::Value {
    serde_json::from_str::<serde_json::Value>(&r.body).unwrap()["SyncKey"].clone()
}

/// Issue 10: another program held SQLite's write lock for 20 s while a payment arrived;
/// the batch was acknowledged anyway and the payment lost. Now it is heard at once, the
/// owner hears once that the ledger cannot be written, the session asks again from the old
/// SyncKey until the lock is gone, and then the payment is recorded, marked announced, and
/// not said again.
#[tokio::test(flavor = "multi_thread")]
async fn a_locked_ledger_still_announces_at_once_and_records_once_the_lock_is_gone() {
    let shop = Shop::new("\n[ledger]\nbusy_timeout_ms = 100\n").await;
    let mut daemon = shop.start("run.log");
    shop.log_in().await;
    // The login alert is said first, so it is not counted below.
    wait_for("alert spoken", || {
        shop.log("run.log").contains("alert spoken")
    })
    .await;

    let lock = rusqlite::Connection::open(ledger_path(shop.dir.path())).unwrap();
    lock.execute_batch("BEGIN EXCLUSIVE").unwrap();
    let id = shop.sim.pay(1250);
    // Heard while the lock is held; the batch is refused and asked for again, twice more.
    wait_for("heard, and the batch asked for twice more", || {
        let heard = count(&shop.log("run.log"), "payment announced") == 1;
        heard && syncs_delivering(&shop.sim, &id).len() >= 3
    })
    .await;
    lock.execute_batch("ROLLBACK").unwrap();
    drop(lock);

    let entries = shop.wait_announced(1).await;
    assert_eq!(entries.len(), 1);
    assert_eq!(entries[0].payment.msg_id, id);
    assert_eq!(entries[0].payment.amount_fen, 1250);
    // The announcer works in order: once a later payment is heard, a second announcement
    // of the first one would have been heard before it.
    shop.sim.pay(300);
    let entries = shop.wait_announced(2).await;
    signal(&daemon, "-TERM");
    assert_eq!(wait_exit(&mut daemon).await.code(), Some(0));

    assert_eq!(entries.len(), 2, "each payment once in the ledger");
    let log = shop.log("run.log");
    assert_eq!(
        count(&log, "payment announced"),
        2,
        "each heard once: {log}"
    );
    assert!(
        count(&log, "cannot record the payment in the ledger") >= 2,
        "failed more than once: {log}"
    );
    assert_eq!(
        count(&log, "text=账本无法写入"),
        1,
        "the ledger alert is said once, not per failure: {log}"
    );
    assert!(
        log.contains("another program holds the ledger's lock"),
        "{log}"
    );
    assert!(log.contains("the ledger can be written again"), "{log}");
    let delivering = syncs_delivering(&shop.sim, &id);
    assert!(
        delivering
            .iter()
            .all(|r| sent_sync_key(r) == sent_sync_key(&delivering[0])),
        "asked again from the old SyncKey each time"
    );
}

/// Issue 10: with the ledger file not writable when paysay started, every payment was
/// lost. Now a payment is heard at once, the owner hears once that the ledger cannot be
/// written and the log says what to do, and nothing is acknowledged; once the file can be
/// written again the payment is recorded, and not said a second time.
#[tokio::test(flavor = "multi_thread")]
async fn a_ledger_unwritable_at_start_loses_nothing_once_it_is_writable() {
    let shop = Shop::new("\n[ledger]\nbusy_timeout_ms = 100\n").await;
    let db = ledger_path(shop.dir.path());
    std::fs::create_dir_all(db.parent().unwrap()).unwrap();
    drop(Ledger::open(&db).unwrap());
    let Some(unwritable) = common::Unwritable::make(&db) else {
        eprintln!("skipped: root, and chattr +i is not allowed here: nothing is unwritable");
        return;
    };

    let mut daemon = shop.start("run.log");
    shop.log_in().await;
    wait_for("alert spoken", || {
        shop.log("run.log").contains("alert spoken")
    })
    .await;
    let id = shop.sim.pay(1250);
    wait_for("heard, and the batch asked for twice more", || {
        let heard = count(&shop.log("run.log"), "payment announced") == 1;
        heard && syncs_delivering(&shop.sim, &id).len() >= 3
    })
    .await;
    assert!(
        shop.entries().is_empty(),
        "nothing recorded while unwritable"
    );

    drop(unwritable);
    shop.sim.pay(300);
    let entries = shop.wait_announced(2).await;
    signal(&daemon, "-TERM");
    assert_eq!(wait_exit(&mut daemon).await.code(), Some(0));

    let ids: Vec<&str> = entries.iter().map(|e| e.payment.msg_id.as_str()).collect();
    assert_eq!(ids[0], id, "the first payment recorded once writable");
    assert_eq!(entries.len(), 2);
    let log = shop.log("run.log");
    assert_eq!(
        count(&log, "payment announced"),
        2,
        "each heard once: {log}"
    );
    assert_eq!(count(&log, "text=账本无法写入"), 1, "said once: {log}");
    assert!(log.contains("cannot be written"), "{log}");
}

/// Issue 10: a ledger with one damaged page (header intact) let paysay start and lose
/// every payment. It is refused at start, by `paysay ledger` and by the doctor, with the
/// file named and what to do, and left as it was.
#[tokio::test(flavor = "multi_thread")]
async fn a_damaged_ledger_is_refused_with_the_file_and_what_to_do() {
    let dir = tempfile::tempdir().unwrap();
    let root = dir.path();
    // Nothing listens there: if paysay ran on, it could not reach anything.
    std::fs::write(
        root.join("paysay.toml"),
        "[wechat]\nbase_url = \"http://127.0.0.1:9\"\n",
    )
    .unwrap();
    let db = ledger_path(root);
    {
        let ledger = Ledger::open(&db).unwrap();
        for i in 0..20 {
            ledger
                .record(&collection(&format!("m{i}"), 100 + i))
                .unwrap();
        }
    }
    // Page 2 is the payments table; page 1 (the header and schema) stays intact.
    let mut bytes = std::fs::read(&db).unwrap();
    assert!(bytes.len() > 8192, "the ledger has more than two pages");
    bytes[4096..8192].fill(0xA5);
    std::fs::write(&db, &bytes).unwrap();

    let mut run = paysay(root, &["run"])
        .stderr(Stdio::piped())
        .spawn()
        .unwrap();
    let status = wait_exit(&mut run).await;
    let mut stderr = String::new();
    std::io::Read::read_to_string(&mut run.stderr.take().unwrap(), &mut stderr).unwrap();
    assert!(!status.success(), "{stderr}");
    let named = db.display().to_string();
    for out in [stderr, run_output(root, &["ledger"], false)] {
        assert!(out.contains("is damaged"), "{out}");
        assert!(out.contains(&named), "{out}");
        assert!(out.contains("move the file aside"), "{out}");
    }
    let doctor = run_output(root, &["doctor"], false);
    let line = doctor.lines().find(|l| l.contains("ledger")).unwrap_or("");
    assert!(line.contains("is damaged"), "{doctor}");
    assert_eq!(
        std::fs::read(&db).unwrap(),
        bytes,
        "the damaged file is left as it was"
    );
}

/// `paysay ARGS` in `root`; stdout and stderr together. `success` is what its exit must be.
fn run_output(root: &Path, args: &[&str], success: bool) -> String {
    let out = paysay(root, args).output().unwrap();
    let text = format!(
        "{}{}",
        String::from_utf8_lossy(&out.stdout),
        String::from_utf8_lossy(&out.stderr)
    );
    assert_eq!(out.status.success(), success, "paysay {args:?}: {text}");
    text
}

fn collection(msg_id: &str, amount_fen: u64) -> paysay::payment::Payment {
    paysay::payment::Payment {
        msg_id: msg_id.into(),
        amount_fen,
        kind: paysay::payment::PaymentKind::Collection,
        payer: None,
        remark: Some("a remark long enough to fill the table's pages quickly".into()),
        daily_count: None,
        daily_total_fen: None,
        time: 1_700_000_000,
        account: "微信支付".into(),
        transfer_id: None,
        wallet: paysay::payment::Wallet::WeChat,
        source: paysay::payment::Source::Web,
    }
}

/// Issue 10: under umask 022 the ledger was 0644 and the state dir 0755. The daemon makes
/// them owner-only, an older ledger and dir included, and SQLite's -wal and -shm follow.
#[cfg(unix)]
#[tokio::test(flavor = "multi_thread")]
async fn the_ledger_and_state_dir_are_owner_only_whatever_the_umask() {
    use std::os::unix::fs::PermissionsExt;
    let mode = |p: &Path| std::fs::metadata(p).unwrap().permissions().mode() & 0o777;
    let set = |p: &Path, m| std::fs::set_permissions(p, std::fs::Permissions::from_mode(m));
    let shop = Shop::new("").await;
    let db = ledger_path(shop.dir.path());
    let state = db.parent().unwrap().to_path_buf();
    // As an older paysay left them under umask 022.
    drop(Ledger::open(&db).unwrap());
    set(&db, 0o644).unwrap();
    set(&state, 0o755).unwrap();

    let log = std::fs::File::create(shop.path("run.log")).unwrap();
    let mut daemon = under_umask(shop.command(&["run"]), "022")
        .stdout(Stdio::null())
        .stderr(log)
        .spawn()
        .unwrap();
    shop.log_in().await;
    shop.sim.pay(100);
    // Not through `shop.entries()`: opening the ledger here would tighten it too.
    wait_for("payment announced", || {
        shop.log("run.log").contains("payment announced")
    })
    .await;
    let wal = PathBuf::from(format!("{}-wal", db.display()));
    let shm = PathBuf::from(format!("{}-shm", db.display()));
    assert_eq!(mode(&state), 0o700, "state dir");
    for file in [&db, &wal, &shm] {
        assert_eq!(mode(file), 0o600, "{}", file.display());
    }
    signal(&daemon, "-TERM");
    assert_eq!(wait_exit(&mut daemon).await.code(), Some(0));
}

/// `cmd` run by `sh` under `umask`, with the same program, arguments and environment.
#[cfg(unix)]
fn under_umask(cmd: Command, umask: &str) -> Command {
    let mut sh = Command::new("sh");
    sh.arg("-c")
        .arg(format!("umask {umask} && exec \"$@\""))
        .arg("sh")
        .arg(cmd.get_program())
        .args(cmd.get_args());
    for (key, value) in cmd.get_envs() {
        match value {
            Some(v) => sh.env(key, v),
            None => sh.env_remove(key),
        };
    }
    sh
}

/// `[notify]`'s back-online text goes out beside the message loop: while WeChat's answer
/// to it hangs (here 40 s, longer than the request timeout), synccheck goes on and a
/// payment is recorded and said at once, not after the text gives up.
#[tokio::test(flavor = "multi_thread")]
async fn a_hanging_text_to_the_owner_holds_up_no_payment() {
    let shop = Shop::new("\n[notify]\nto = \"filehelper\"\ndaily_summary = \"\"\n").await;
    let mut daemon = shop.start("run.log");
    shop.log_in().await;
    shop.sim.inject(
        Endpoint::SendMsg,
        wechat_sim::Fault::Delay(std::time::Duration::from_secs(40)),
    );
    shop.sim.logout(1101);
    shop.sim.confirm();
    shop.wait_polling().await;
    // The text is queued on the login and taken up within a round (3 s here): by now it
    // hangs at the server.
    tokio::time::sleep(std::time::Duration::from_secs(5)).await;
    let paid = std::time::Instant::now();
    shop.sim.pay(1250);
    shop.wait_announced(1).await;
    let took = paid.elapsed();
    assert!(
        took < std::time::Duration::from_secs(10),
        "the payment waited {took:?} behind the text:\n{}",
        shop.log("run.log")
    );
    signal(&daemon, "-TERM");
    assert_eq!(wait_exit(&mut daemon).await.code(), Some(0));
}

/// A session that cannot be saved (here its file's place is taken by a directory; in a
/// shop: a full disk, no file handle left) is said once, and paysay goes on hearing and
/// announcing payments: it used to exit with an error.
#[tokio::test(flavor = "multi_thread")]
async fn a_session_that_cannot_be_saved_ends_nothing() {
    let shop = Shop::new("").await;
    let blocker = shop.path("state/paysay/session.json/blocker");
    std::fs::create_dir_all(blocker.parent().unwrap()).unwrap();
    std::fs::write(&blocker, b"").unwrap();
    let mut daemon = shop.start("run.log");
    shop.log_in().await;
    shop.sim.pay(1250);
    shop.sim.pay(300);
    shop.wait_announced(2).await;
    assert!(daemon.try_wait().unwrap().is_none(), "paysay exited");
    signal(&daemon, "-TERM");
    assert_eq!(wait_exit(&mut daemon).await.code(), Some(0));
    let log = shop.log("run.log");
    assert_eq!(
        log.matches("cannot save the WeChat session").count(),
        1,
        "said once: {log}"
    );
}
