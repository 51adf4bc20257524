//! Hostile sizes and values (issue 10, part 5): what a hostile network or a broken disk
//! hands paysay, against the simulator and the real binary.

use std::time::Duration;

use paysay::config::WechatConfig;
use paysay::session::{self, Events, SessionEvent, SessionFiles};
use paysay::simulator::{SimConfig, Simulator};

const WAIT: Duration = Duration::from_secs(60);

fn wechat_config(sim: &Simulator) -> WechatConfig {
    WechatConfig {
        base_url: Some(sim.base_url()),
        long_poll_timeout_secs: 3,
        request_timeout_secs: 3,
        min_backoff_ms: 20,
        max_backoff_secs: 1,
        ..WechatConfig::default()
    }
}

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
    let config = wechat_config(&sim);
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
