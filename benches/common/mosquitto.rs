//! A real mosquitto broker for the benches, as tests/mqtt.rs starts it: on a free
//! 127.0.0.1 port, anonymous, stopped when dropped.

use std::path::PathBuf;
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

/// How long mosquitto may take to listen.
const START: Duration = Duration::from_secs(10);

pub struct Mosquitto {
    child: Child,
    pub port: u16,
    _dir: tempfile::TempDir,
}

impl Mosquitto {
    pub fn start() -> Mosquitto {
        let port = std::net::TcpListener::bind("127.0.0.1:0")
            .and_then(|l| l.local_addr())
            .expect("a free port")
            .port();
        let dir = tempfile::tempdir().expect("a dir for mosquitto");
        let conf = dir.path().join("mosquitto.conf");
        // mosquitto 2 listens on loopback only and refuses anonymous clients unless told;
        // as root it would switch to its own user (`user` is ignored otherwise).
        std::fs::write(
            &conf,
            format!("listener {port} 127.0.0.1\nallow_anonymous true\nuser root\n"),
        )
        .expect("mosquitto's config");
        let child = Command::new(mosquitto())
            .arg("-c")
            .arg(&conf)
            .stdout(Stdio::null())
            .stderr(Stdio::null())
            .spawn()
            .unwrap_or_else(|e| panic!("cannot run mosquitto ({e}); ./scripts/setup installs it"));
        let started = Instant::now();
        while std::net::TcpStream::connect(("127.0.0.1", port)).is_err() {
            assert!(started.elapsed() < START, "mosquitto did not start");
            std::thread::sleep(Duration::from_millis(20));
        }
        Mosquitto {
            child,
            port,
            _dir: dir,
        }
    }

    /// `mqtt://127.0.0.1:PORT`, as `[mqtt] url` takes it.
    pub fn url(&self) -> String {
        format!("mqtt://127.0.0.1:{}", self.port)
    }
}

impl Drop for Mosquitto {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
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
