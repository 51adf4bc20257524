//! Hostile sizes and values (issue 10, part 5): what a hostile network or a broken disk
//! hands paysay, against the simulator and the real binary.

mod common;

use std::path::Path;
use std::process::{Child, Stdio};
use std::time::{Duration, Instant};

use paysay::session::{self, Events, SessionEvent, SessionFiles};
use wechat_sim::{Endpoint, SimConfig, Simulator};

const WAIT: Duration = Duration::from_secs(60);

#[tokio::test]
async fn a_session_file_of_bad_bytes_means_a_new_login_not_a_failed_start() {
    let sim = Simulator::start(SimConfig::for_tests()).await.unwrap();
    let dir = tempfile::tempdir().unwrap();
    let files = SessionFiles {
        session: dir.path().join("session.json"),
        qr_png: dir.path().join("login-qr.png"),
    };
    // Not UTF-8: once a start failure, under systemd a restart loop.
    std::fs::write(
        &files.session,
        b"{\"version\": 1, \"sid\": \"\xff\xfe\x80\"}",
    )
    .unwrap();
    let config = common::session::client_config(&sim);
    let (events, mut rx) = Events::channel();
    let connecting = {
        let files = files.clone();
        tokio::spawn(async move { session::connect(&config, &files, &events, None).await })
    };
    let qr = tokio::time::timeout(WAIT, async {
        loop {
            match rx.recv().await {
                Some(SessionEvent::QrCode { .. }) => return true,
                Some(_) => {}
                None => return false,
            }
        }
    })
    .await
    .expect("no QR code shown");
    assert!(qr, "connect ended without showing a QR code");
    sim.scan();
    sim.confirm();
    let session = tokio::time::timeout(WAIT, connecting)
        .await
        .expect("login did not finish")
        .unwrap()
        .expect("login failed");
    drop(session);
    // The bad file was replaced by the new session.
    let saved = session::store::load(&files.session).unwrap();
    assert!(saved.is_some(), "the new session was not saved");
    sim.shutdown().await;
}

/// Starts the audio thread with `chime_path` and returns why it refused.
fn chime_refusal(path: &std::path::Path) -> String {
    let config = paysay::config::AudioConfig {
        chime_path: Some(path.to_path_buf()),
        ..paysay::config::AudioConfig::default()
    };
    match paysay::audio::Player::spawn_with(&config, || {
        Box::new(paysay::audio::NullOutput::default())
    }) {
        Err(e @ paysay::audio::AudioError::Chime { .. }) => e.to_string(),
        Err(e) => panic!("{}: refused for another reason: {e}", path.display()),
        Ok(_) => panic!("{}: accepted as a chime", path.display()),
    }
}

#[test]
fn a_chime_path_to_a_device_or_a_huge_file_is_refused_without_reading_it() {
    // /dev/zero reports a size of 0 and never ends: reading it whole ate gigabytes.
    let err = chime_refusal(std::path::Path::new("/dev/zero"));
    assert!(err.contains("not a regular file"), "{err}");

    let dir = tempfile::tempdir().unwrap();
    let sparse = dir.path().join("huge.wav");
    std::fs::File::create(&sparse)
        .unwrap()
        .set_len(1 << 30)
        .unwrap();
    let err = chime_refusal(&sparse);
    assert!(
        err.contains("larger than 5 MB") && err.contains("huge.wav"),
        "{err}"
    );

    // Just over the limit, written for real: refused by what is read, not only the size.
    let over = dir.path().join("over.wav");
    std::fs::write(&over, vec![0u8; 5 * 1024 * 1024 + 1]).unwrap();
    let err = chime_refusal(&over);
    assert!(err.contains("larger than 5 MB"), "{err}");

    // A FIFO would block the start forever if it were opened.
    let fifo = dir.path().join("fifo.wav");
    if std::process::Command::new("mkfifo")
        .arg(&fifo)
        .status()
        .is_ok_and(|s| s.success())
    {
        let err = chime_refusal(&fifo);
        assert!(err.contains("not a regular file"), "{err}");
    }
}

/// `paysay run` with its dirs under `root`, logging at info level to `log`.
fn start_paysay(root: &Path, sim: &Simulator, log: &Path) -> Child {
    let config = format!(
        "[wechat]\nbase_url = \"{}\"\nlong_poll_timeout_secs = 3\nmin_backoff_ms = 50\n\n[audio]\nidle_close_ms = 50\n\n[web]\nlisten = \"127.0.0.1:0\"\n",
        sim.base_url()
    );
    std::fs::write(root.join("paysay.toml"), config).unwrap();
    common::paysay_capturing(root, &root.join("capture.wav"))
        .arg("--config")
        .arg(root.join("paysay.toml"))
        .arg("run")
        .env("PAYSAY_LOG", "info")
        .stdout(Stdio::null())
        .stderr(std::fs::File::create(log).unwrap())
        .spawn()
        .unwrap()
}

async fn wait_until(mut probe: impl FnMut() -> bool) {
    let started = Instant::now();
    while !probe() {
        assert!(started.elapsed() < WAIT, "timed out");
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
}

fn stop(mut child: Child) {
    let _ = std::process::Command::new("kill")
        .args(["-TERM", &child.id().to_string()])
        .status();
    let started = Instant::now();
    while child.try_wait().unwrap().is_none() {
        if started.elapsed() > WAIT {
            let _ = child.kill();
        }
        std::thread::sleep(Duration::from_millis(50));
    }
}

async fn log_in(sim: &Simulator) {
    assert!(sim.wait_for_requests(Endpoint::LoginPoll, 1, WAIT).await);
    sim.scan();
    sim.confirm();
    let before = sim.requests_to(Endpoint::SyncCheck).len();
    assert!(
        sim.wait_for_requests(Endpoint::SyncCheck, before + 1, WAIT)
            .await
    );
}

/// Text that would forge a log line and clear the screen if written raw.
const FORGED: &str = "\n1999-12-01T00:00:00Z  INFO paysay::daemon: payment received amount=999.00 kind=collection\x1b[2J\x1b]0;owned\x07";

#[tokio::test]
async fn network_text_with_a_newline_and_esc_forges_no_log_line() {
    let sim = Simulator::start(SimConfig::for_tests()).await.unwrap();
    let dir = tempfile::tempdir().unwrap();
    let log = dir.path().join("paysay.log");
    let child = start_paysay(dir.path(), &sim, &log);
    log_in(&sim).await;
    let read = || std::fs::read_to_string(&log).unwrap_or_default();

    // A payer whose nickname carries the forgery.
    let nick = format!("张三{FORGED}");
    sim.transfer(&nick, 100);
    wait_until(|| read().contains("payment received")).await;
    // A payment-like message from them that cannot be read, with a MsgId carrying it too:
    // both end up in the warning about the skipped message.
    let payer = sim
        .contact_by_nickname(&nick)
        .expect("the payer is a contact");
    let own = sim.session().expect("logged in").user_name;
    sim.push_message(paysay::protocol::Message {
        msg_id: format!("77{FORGED}"),
        from_user_name: payer.user_name,
        to_user_name: own,
        msg_type: paysay::protocol::msg_type::APP,
        app_msg_type: paysay::protocol::app_msg_type::TRANSFER,
        content: "<msg><appmsg><type>2000</type><wcpayinfo><paysubtype>1</paysubtype>".into(),
        create_time: sim.now(),
        ..Default::default()
    });
    wait_until(|| read().contains("payment-like message skipped")).await;
    stop(child);
    sim.shutdown().await;

    let text = read();
    assert!(
        !text.contains('\x1b') && !text.contains('\x07'),
        "raw escape codes in the log:\n{text}"
    );
    assert!(
        !text.lines().any(|l| l.starts_with("1999-12-01")),
        "a forged line:\n{text}"
    );
    let received: Vec<&str> = text
        .lines()
        .filter(|l| {
            l.split_once("paysay::daemon: ")
                .is_some_and(|(_, message)| message.starts_with("payment received"))
        })
        .collect();
    assert_eq!(received.len(), 1, "{text}");
    assert!(received[0].contains("amount=1.00"), "{}", received[0]);
    let skipped = text
        .lines()
        .find(|l| l.contains("payment-like message skipped"))
        .unwrap_or_default();
    assert!(
        skipped.contains("77\\n1999-12-01") && skipped.contains("张三\\n1999-12-01"),
        "MsgId and nickname are shown escaped: {skipped}"
    );
}
