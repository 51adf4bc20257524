//! A real mosquitto broker (Debian's `mosquitto`, installed by `scripts/setup --tests`) on a
//! free 127.0.0.1 port, anonymous, killed when dropped: for tests/mqtt.rs and the benches.
#![allow(dead_code)] // each user takes a part

use std::path::PathBuf;
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

use paysay::config::MqttConfig;

/// How long mosquitto may take to listen.
const WAIT: Duration = Duration::from_secs(30);

/// A mosquitto on 127.0.0.1:`port`, killed when dropped.
pub struct Broker {
    child: Option<Child>,
    pub port: u16,
    dir: tempfile::TempDir,
}

impl Broker {
    pub fn start() -> Broker {
        let port = std::net::TcpListener::bind("127.0.0.1:0")
            .unwrap()
            .local_addr()
            .unwrap()
            .port();
        let mut broker = Broker {
            child: None,
            port,
            dir: tempfile::tempdir().unwrap(),
        };
        broker.restart();
        broker
    }

    /// Starts (again) on the same port. mosquitto 2 listens on loopback only and refuses
    /// anonymous clients unless a config file says otherwise.
    pub fn restart(&mut self) {
        let conf = self.dir.path().join("mosquitto.conf");
        std::fs::write(
            &conf,
            format!(
                // As root, mosquitto would switch to its own user, who cannot write the
                // sessions it saves into this test's dir (`user` is ignored otherwise).
                "listener {} 127.0.0.1\nallow_anonymous true\npersistence true\npersistence_location {}/\nuser root\n",
                self.port,
                self.dir.path().display()
            ),
        )
        .unwrap();
        let child = Command::new(mosquitto())
            .arg("-c")
            .arg(&conf)
            .stdout(Stdio::null())
            .stderr(Stdio::null())
            .spawn()
            .unwrap_or_else(|e| {
                panic!("cannot run mosquitto ({e}); ./scripts/setup --tests installs it")
            });
        self.child = Some(child);
        let started = Instant::now();
        while std::net::TcpStream::connect(("127.0.0.1", self.port)).is_err() {
            assert!(started.elapsed() < WAIT, "mosquitto did not start");
            std::thread::sleep(Duration::from_millis(20));
        }
    }

    pub fn stop(&mut self) {
        if let Some(mut child) = self.child.take() {
            let _ = child.kill();
            let _ = child.wait();
        }
    }

    /// Stops with SIGTERM, so mosquitto saves its subscribers' sessions and the messages
    /// queued for them, and gives them back when it starts again.
    pub fn stop_cleanly(&mut self) {
        if let Some(mut child) = self.child.take() {
            let pid = child.id().to_string();
            let _ = Command::new("kill").args(["-TERM", &pid]).status();
            let _ = child.wait();
        }
    }

    pub fn signal(&self, sig: &str) {
        let pid = self.child.as_ref().unwrap().id().to_string();
        assert!(
            Command::new("kill")
                .args([sig, &pid])
                .status()
                .unwrap()
                .success()
        );
    }

    pub fn url(&self) -> String {
        format!("mqtt://127.0.0.1:{}", self.port)
    }

    pub fn config(&self) -> MqttConfig {
        MqttConfig {
            url: self.url(),
            ack_timeout_secs: 2,
            keep_alive_secs: 5,
            ..MqttConfig::default()
        }
    }
}

impl Drop for Broker {
    fn drop(&mut self) {
        self.stop();
    }
}

/// mosquitto lives in /usr/sbin, which is not on every user's PATH.
fn mosquitto() -> PathBuf {
    let on_path = std::env::var_os("PATH")
        .map(|p| {
            std::env::split_paths(&p)
                .map(|d| d.join("mosquitto"))
                .collect::<Vec<_>>()
        })
        .unwrap_or_default();
    on_path
        .into_iter()
        .chain([PathBuf::from("/usr/sbin/mosquitto")])
        .find(|p| p.is_file())
        .unwrap_or_else(|| PathBuf::from("mosquitto"))
}
