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
