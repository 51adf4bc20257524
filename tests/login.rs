//! A login that meets network trouble after the scan: the failed step (login poll, ticket,
//! webwxinit) is retried on the same QR code, so the shop owner never scans twice for a
//! blip; a ticket spent by a lost answer makes a new code instead of a fatal error; a login
//! poll the server answers at once is paced; `paysay login` retries the same way.

mod common;

use std::path::Path;
use std::time::{Duration, SystemTime};

use common::session::{Harness, Running};
use paysay::session::{Ack, SessionError, SessionEvent};
use wechat_sim::{Endpoint, Fault, SimConfig, Simulator, Verdict};

const WAIT: Duration = Duration::from_secs(30);
/// `request_timeout_secs` in these tests: a delay longer than this is a timeout.
const REQUEST_TIMEOUT: Duration = Duration::from_secs(1);
/// `long_poll_timeout_secs` in these tests; the client waits 5 s more for a login poll.
const LONG_POLL_TIMEOUT_SECS: u64 = 1;

/// The session harness with short request timeouts, so a delayed answer is a timeout soon.
async fn harness() -> Harness {
    let mut h = Harness::new(SimConfig::for_tests()).await;
    h.config.long_poll_timeout_secs = LONG_POLL_TIMEOUT_SECS;
    h.config.request_timeout_secs = REQUEST_TIMEOUT.as_secs();
    h.wait = WAIT;
    h
}

// What only these tests ask of the shared harness.
impl Harness {
    /// The QR code as the owner sees it: its bytes and when it was written.
    fn qr_file(&self) -> (Vec<u8>, SystemTime) {
        let bytes = std::fs::read(&self.files.qr_png).unwrap();
        let written = std::fs::metadata(&self.files.qr_png)
            .unwrap()
            .modified()
            .unwrap();
        (bytes, written)
    }

    /// Scans the QR code and waits until a poll has told the client so; the next polls
    /// are the ones faults queued now will meet.
    async fn scan(&self, running: &mut Running) {
        self.sim.scan();
        running
            .wait_for(|e| matches!(e, SessionEvent::Scanned))
            .await;
    }

    /// The faults met at `endpoint`, in the order they were answered.
    fn faults_met(&self, endpoint: Endpoint) -> Vec<Fault> {
        self.sim
            .requests_to(endpoint)
            .into_iter()
            .filter_map(|r| r.fault)
            .collect()
    }

    /// Waits until `n` faults were met at `endpoint`.
    async fn wait_until_met(&self, endpoint: Endpoint, n: usize) {
        let met = tokio::time::timeout(WAIT, async {
            while self.faults_met(endpoint).len() < n {
                tokio::time::sleep(Duration::from_millis(20)).await;
            }
        })
        .await;
        assert!(met.is_ok(), "{n} faults at {endpoint:?} never met");
    }
}

impl Running {
    fn qr_codes_shown(&self) -> usize {
        self.seen.iter().filter(|e| *e == "QrCode").count()
    }
}

/// Asserts the login went through on the first QR code: one jslogin, one QR shown, the PNG
/// as it was first written.
fn assert_same_qr(h: &Harness, running: &Running, first_qr: &(Vec<u8>, SystemTime)) {
    assert_eq!(
        h.sim.requests_to(Endpoint::JsLogin).len(),
        1,
        "no new QR code was fetched"
    );
    assert_eq!(running.qr_codes_shown(), 1, "events: {:?}", running.seen);
    assert!(h.qr_file() == *first_qr, "the QR PNG was rewritten");
}

#[tokio::test]
async fn a_failed_login_poll_after_the_scan_is_retried_on_the_same_qr() {
    let h = harness().await;
    let mut running = h.start_with_qr().await;
    let first_qr = h.qr_file();
    h.scan(&mut running).await;
    let beyond_timeout = Duration::from_secs(LONG_POLL_TIMEOUT_SECS + 5) + REQUEST_TIMEOUT;
    let faults = [
        Fault::Status(503),
        Fault::Drop,
        Fault::Delay(beyond_timeout),
        // Processed: the confirmation it carried never arrives, the next poll repeats it.
        Fault::Lost,
    ];
    for fault in faults.clone() {
        h.sim.inject(Endpoint::LoginPoll, fault);
    }
    // Polls go on while the phone waits for the confirmation: let them meet the faults.
    h.wait_until_met(Endpoint::LoginPoll, 2).await;
    h.sim.confirm();
    running
        .wait_for(|e| matches!(e, SessionEvent::LoggedIn { .. }))
        .await;
    // The delayed poll is never recorded: the client timed out and closed the connection,
    // which cancels its handler. The Lost fault queued behind it shows it was taken.
    assert_eq!(
        h.faults_met(Endpoint::LoginPoll),
        [Fault::Status(503), Fault::Drop, Fault::Lost]
    );
    assert_same_qr(&h, &running, &first_qr);
    running.stop().await.unwrap();
}

/// A delay far beyond the client's timeout, so the retry is never raced by the delayed
/// request (the simulator cancels it when the client closes the connection anyway).
const LONG_AFTER_THE_RETRY: Duration = Duration::from_secs(60);

/// Logs in with a delay, a 503, a dropped connection and an empty body queued at
/// `endpoint` after the scan; asserts that each was met (but the delayed one, cancelled by
/// the client's timeout) and that the login went through on the first QR code.
async fn logged_in_through_faults_at(endpoint: Endpoint) -> (Harness, Running) {
    let h = harness().await;
    let mut running = h.start_with_qr().await;
    let first_qr = h.qr_file();
    h.scan(&mut running).await;
    let faults = [
        Fault::Delay(LONG_AFTER_THE_RETRY),
        Fault::Status(503),
        Fault::Drop,
        Fault::EmptyBody,
    ];
    for fault in faults.clone() {
        h.sim.inject(endpoint, fault);
    }
    h.sim.confirm();
    running
        .wait_for(|e| matches!(e, SessionEvent::LoggedIn { .. }))
        .await;
    // The delayed request is never recorded: the client timed out, which cancels it; the
    // faults queued behind it were met.
    assert_eq!(h.faults_met(endpoint), faults[1..]);
    assert_same_qr(&h, &running, &first_qr);
    (h, running)
}

#[tokio::test]
async fn a_failed_ticket_fetch_is_retried_with_the_same_ticket() {
    let (h, running) = logged_in_through_faults_at(Endpoint::Ticket).await;
    let ok = h
        .sim
        .requests_to(Endpoint::Ticket)
        .into_iter()
        .filter(|r| r.verdict == Verdict::Ok)
        .count();
    assert_eq!(ok, 1, "one ticket exchange logged in");
    running.stop().await.unwrap();
}

#[tokio::test]
async fn a_failed_webwxinit_after_the_ticket_is_retried_with_the_same_keys() {
    let (h, mut running) = logged_in_through_faults_at(Endpoint::Init).await;
    assert_eq!(
        h.sim.requests_to(Endpoint::Ticket).len(),
        1,
        "one ticket, its keys reused"
    );
    // The session works.
    let id = h.sim.pay(880);
    let paid = running
        .wait_for(|e| match e {
            SessionEvent::Messages { batch, .. } => batch.iter().any(|m| m.message.msg_id == id),
            _ => false,
        })
        .await;
    if let SessionEvent::Messages { ack, .. } = paid {
        let _ = ack.send(Ack::Recorded);
    }
    running.stop().await.unwrap();
}

/// A lost webwxinit answer leaves the server with a new skey the client never saw, so the
/// ticket's keys are refused: the phone is asked to confirm (push login), not to scan.
#[tokio::test]
async fn a_lost_webwxinit_answer_asks_the_phone_rather_than_show_a_new_qr() {
    let h = harness().await;
    let mut running = h.start_with_qr().await;
    let first_qr = h.qr_file();
    h.scan(&mut running).await;
    h.sim.inject(Endpoint::Init, Fault::Lost);
    h.sim.confirm();
    running
        .wait_for(|e| matches!(e, SessionEvent::PushLoginSent))
        .await;
    h.sim.confirm();
    running
        .wait_for(|e| matches!(e, SessionEvent::LoggedIn { .. }))
        .await;
    assert_eq!(h.faults_met(Endpoint::Init), [Fault::Lost]);
    assert_same_qr(&h, &running, &first_qr);
    running.stop().await.unwrap();
}

/// The ticket is single-use: when its answer is lost, the server has spent it and the retry
/// is refused. That refusal is no verdict on the account: a new QR code, not a fatal error.
#[tokio::test]
async fn a_lost_ticket_answer_makes_a_new_qr_code() {
    let h = harness().await;
    let mut running = h.start_with_qr().await;
    let first_qr = h.qr_file();
    h.scan(&mut running).await;
    h.sim.inject(Endpoint::Ticket, Fault::Lost);
    h.sim.confirm();
    running
        .wait_for(|e| matches!(e, SessionEvent::QrCode { .. }))
        .await;
    let tickets = h.sim.requests_to(Endpoint::Ticket);
    assert_eq!(tickets.len(), 2);
    assert_eq!(tickets[0].fault, Some(Fault::Lost));
    assert!(matches!(tickets[1].verdict, Verdict::Refused(_)));
    assert_ne!(h.qr_file().0, first_qr.0, "a new PNG for the new code");
    h.scan(&mut running).await;
    h.sim.confirm();
    running
        .wait_for(|e| matches!(e, SessionEvent::LoggedIn { .. }))
        .await;
    assert_eq!(h.sim.requests_to(Endpoint::JsLogin).len(), 2);
    running.stop().await.unwrap();
}

/// Against a server answering every login poll at once, ~8,600 polls a second were sent.
#[tokio::test]
async fn login_polls_answered_at_once_are_paced() {
    let h = harness().await;
    h.sim.answer_login_polls_at_once(true);
    let mut running = h.start_with_qr().await;
    assert!(h.sim.wait_for_requests(Endpoint::LoginPoll, 2, WAIT).await);
    let before = h.sim.requests_to(Endpoint::LoginPoll).len();
    tokio::time::sleep(Duration::from_secs(3)).await;
    let in_window = h.sim.requests_to(Endpoint::LoginPoll).len() - before;
    assert!(in_window >= 1, "polling goes on");
    assert!(in_window <= 5, "{in_window} login polls in 3 s");
    let answered_408 = h
        .sim
        .requests_to(Endpoint::LoginPoll)
        .iter()
        .all(|r| r.response == "window.code=408;");
    assert!(answered_408, "the mode answers 408 at once");

    h.sim.answer_login_polls_at_once(false);
    let first_qr = h.qr_file();
    h.scan(&mut running).await;
    h.sim.confirm();
    running
        .wait_for(|e| matches!(e, SessionEvent::LoggedIn { .. }))
        .await;
    assert_same_qr(&h, &running, &first_qr);
    running.stop().await.unwrap();
}

/// A refused account on the first ticket answer still ends the login (see also
/// tests/session.rs): only a refusal on a retry is read as a spent ticket.
#[tokio::test]
async fn a_refused_account_after_a_failed_poll_still_stops() {
    let h = harness().await;
    h.sim
        .refuse_login(1203, "为了你的帐号安全，此微信号不能登录网页微信。");
    let mut running = h.start_with_qr().await;
    h.scan(&mut running).await;
    h.sim.inject(Endpoint::LoginPoll, Fault::Status(503));
    h.wait_until_met(Endpoint::LoginPoll, 1).await;
    h.sim.confirm();
    let result = tokio::time::timeout(WAIT, running.task)
        .await
        .unwrap()
        .unwrap();
    assert!(
        matches!(result, Err(SessionError::LoginRefused { ret: 1203, .. })),
        "{result:?}"
    );
    assert_eq!(h.sim.requests_to(Endpoint::JsLogin).len(), 1);
}

/// `paysay login` (the real binary) goes through the same retries, and retries what fails
/// before a QR code exists instead of giving up.
#[tokio::test]
async fn paysay_login_retries_each_step_without_a_second_scan() {
    let sim = Simulator::start(SimConfig {
        auto_login: Some(Duration::from_millis(100)),
        ..SimConfig::for_tests()
    })
    .await
    .unwrap();
    let dir = tempfile::tempdir().unwrap();
    write_config(dir.path(), &sim);
    sim.inject(Endpoint::JsLogin, Fault::Status(503));
    sim.inject(Endpoint::LoginPoll, Fault::Drop);
    sim.inject(Endpoint::Ticket, Fault::Status(503));
    sim.inject(Endpoint::Init, Fault::Drop);
    let mut cmd = common::paysay_in(dir.path());
    cmd.arg("--config")
        .arg(dir.path().join("paysay.toml"))
        .arg("login")
        .env("PAYSAY_LOG", "info");
    let output = tokio::task::spawn_blocking(move || cmd.output().unwrap())
        .await
        .unwrap();
    let stderr = String::from_utf8_lossy(&output.stderr);
    assert!(output.status.success(), "paysay login failed: {stderr}");
    assert!(String::from_utf8_lossy(&output.stdout).contains("Logged in as"));
    let jslogins = sim.requests_to(Endpoint::JsLogin);
    assert_eq!(jslogins.len(), 2, "the refused one, then one QR code");
    assert_eq!(jslogins[0].fault, Some(Fault::Status(503)));
    for endpoint in [Endpoint::LoginPoll, Endpoint::Ticket, Endpoint::Init] {
        let met = sim
            .requests_to(endpoint)
            .iter()
            .filter(|r| r.fault.is_some())
            .count();
        assert_eq!(met, 1, "{endpoint:?}'s fault was met and retried");
    }
    sim.shutdown().await;
}

fn write_config(dir: &Path, sim: &Simulator) {
    let config = format!(
        "[wechat]\nbase_url = \"{}\"\nlong_poll_timeout_secs = 3\nmin_backoff_ms = 50\nmax_backoff_secs = 1\n",
        sim.base_url()
    );
    std::fs::write(dir.join("paysay.toml"), config).unwrap();
}
