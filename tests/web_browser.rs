//! The shop's page in a real browser: headless Chromium (Debian's `chromium`, installed by
//! scripts/setup --tests) opens it while the simulator logs the daemon in and a customer pays. The
//! test reads what the browser rendered, over the DevTools protocol on a pipe
//! (`--remote-debugging-pipe`: fd 3 in, fd 4 out, one JSON message per NUL): the QR code
//! as drawn on the screen decodes to the login URL, a new one replaces it when it
//! expires, and the payment and the new total appear without a reload. A screenshot is
//! kept in `target/tmp/web-page.png` for people to look at.

mod common;

use std::io::{BufRead, BufReader, Write};
use std::os::fd::AsRawFd;
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::sync::mpsc;
use std::time::{Duration, Instant};

use base64::Engine;
use serde_json::{Value, json};
use wechat_sim::{SimConfig, Simulator};

const WAIT: Duration = Duration::from_secs(30);

/// Headless Chromium, driven over its DevTools pipe, with one page attached.
struct Chromium {
    child: Child,
    commands: std::fs::File,
    replies: mpsc::Receiver<Value>,
    next_id: u64,
    session: Option<String>,
    /// Its profile, fresh for each run; its log is `chromium.log` in there.
    profile: tempfile::TempDir,
}

fn chromium_exe() -> PathBuf {
    let candidates = ["chromium", "chromium-browser"];
    let found = std::env::var_os("PATH").and_then(|path| {
        std::env::split_paths(&path)
            .flat_map(|dir| candidates.map(|name| dir.join(name)))
            .find(|p| p.is_file())
    });
    found.unwrap_or_else(|| {
        panic!(
            "headless Chromium is needed for this test and is not installed: run ./scripts/setup --tests (Debian package `chromium`)"
        )
    })
}

impl Chromium {
    fn launch() -> Chromium {
        let exe = chromium_exe();
        let profile = tempfile::tempdir().unwrap();
        let (to_browser, commands) = pipe();
        let (replies_pipe, from_browser) = pipe();
        let log = std::fs::File::create(profile.path().join("chromium.log")).unwrap();
        let mut cmd = Command::new(exe);
        cmd.args([
            "--headless",
            "--no-sandbox",
            "--disable-gpu",
            "--no-first-run",
            "--disable-background-networking",
            "--disable-component-update",
            "--disable-sync",
            "--hide-scrollbars",
            "--remote-debugging-pipe",
        ])
        .arg(format!("--user-data-dir={}", profile.path().display()))
        .arg("about:blank")
        .stdin(Stdio::null())
        .stdout(Stdio::null())
        .stderr(log);
        hand_over_pipe(&mut cmd, &to_browser, &from_browser);
        let child = cmd.spawn().expect("starting chromium");
        // The browser's ends are its own now.
        drop((to_browser, from_browser));
        let (tx, replies) = mpsc::channel();
        std::thread::spawn(move || {
            let mut reader = BufReader::new(replies_pipe);
            loop {
                let mut message = Vec::new();
                match reader.read_until(0, &mut message) {
                    Ok(0) | Err(_) => return,
                    Ok(_) => {}
                }
                message.pop();
                if let Ok(value) = serde_json::from_slice::<Value>(&message)
                    && tx.send(value).is_err()
                {
                    return;
                }
            }
        });
        Chromium {
            child,
            commands,
            replies,
            next_id: 1,
            session: None,
            profile,
        }
    }

    /// Sends a command (to the attached page, once there is one) and waits for its result.
    fn call(&mut self, method: &str, params: Value) -> Value {
        let id = self.next_id;
        self.next_id += 1;
        let mut message = json!({"id": id, "method": method, "params": params});
        if let Some(session) = &self.session {
            message["sessionId"] = json!(session);
        }
        let mut bytes = serde_json::to_vec(&message).unwrap();
        bytes.push(0);
        self.commands.write_all(&bytes).unwrap();
        let deadline = Instant::now() + WAIT;
        loop {
            let left = deadline.saturating_duration_since(Instant::now());
            let reply = self.replies.recv_timeout(left).unwrap_or_else(|_| {
                panic!("chromium did not answer {method}; its log: {}", self.log())
            });
            if reply["id"] == id {
                if let Some(error) = reply.get("error") {
                    panic!("{method} failed: {error}");
                }
                return reply["result"].clone();
            }
        }
    }

    /// Opens `url` in a new page, as a Chinese phone's screen, and attaches to it.
    fn open(&mut self, url: &str) {
        let target = self.call("Target.createTarget", json!({"url": "about:blank"}));
        let attached = self.call(
            "Target.attachToTarget",
            json!({"targetId": target["targetId"], "flatten": true}),
        );
        self.session = Some(attached["sessionId"].as_str().unwrap().to_string());
        self.call(
            "Emulation.setDeviceMetricsOverride",
            json!({"width": 412, "height": 1100, "deviceScaleFactor": 1, "mobile": true}),
        );
        // Headless Chromium asks for en-US whatever --lang says.
        let agent = self.eval("navigator.userAgent");
        self.call(
            "Emulation.setUserAgentOverride",
            json!({"userAgent": agent, "acceptLanguage": "zh-CN,zh;q=0.9"}),
        );
        self.call("Page.navigate", json!({"url": url}));
    }

    /// The value of a JavaScript expression in the page.
    fn eval(&mut self, expression: &str) -> Value {
        let result = self.call(
            "Runtime.evaluate",
            json!({"expression": expression, "returnByValue": true}),
        );
        result["result"]["value"].clone()
    }

    /// Waits until `expression` is true in the page; its last value is in the panic.
    fn wait_until(&mut self, what: &str, expression: &str) {
        let deadline = Instant::now() + WAIT;
        while Instant::now() < deadline {
            if self.eval(expression) == json!(true) {
                return;
            }
            std::thread::sleep(Duration::from_millis(100));
        }
        let body = self.eval("document.body ? document.body.innerText : ''");
        panic!("the page never showed {what}; it shows: {body}");
    }

    /// A PNG of the page, or of `clip` (`{x, y, width, height, scale}`) in it.
    fn screenshot(&mut self, clip: Option<Value>) -> Vec<u8> {
        let mut params = json!({"format": "png", "captureBeyondViewport": true});
        if let Some(clip) = clip {
            params["clip"] = clip;
        }
        let shot = self.call("Page.captureScreenshot", params);
        base64::engine::general_purpose::STANDARD
            .decode(shot["data"].as_str().unwrap())
            .unwrap()
    }

    /// The QR code as the browser drew it.
    fn qr_on_screen(&mut self) -> String {
        let rect = self.eval(
            "(() => { const r = document.getElementById('qr').getBoundingClientRect(); \
             return {x: r.x + scrollX, y: r.y + scrollY, width: r.width, height: r.height, scale: 1}; })()",
        );
        common::decode_qr(&self.screenshot(Some(rect)))
    }

    fn log(&self) -> String {
        std::fs::read_to_string(self.profile.path().join("chromium.log")).unwrap_or_default()
    }
}

impl Drop for Chromium {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

/// A pipe's read and write ends, closed on exec (std's own `pipe` is newer than the MSRV).
fn pipe() -> (std::fs::File, std::fs::File) {
    use std::os::fd::FromRawFd;
    let mut fds = [0; 2];
    // SAFETY: pipe2 fills both fds on success; each is owned by one File from here on.
    unsafe {
        assert_eq!(libc::pipe2(fds.as_mut_ptr(), libc::O_CLOEXEC), 0, "pipe2");
        (
            std::fs::File::from_raw_fd(fds[0]),
            std::fs::File::from_raw_fd(fds[1]),
        )
    }
}

/// Puts `to_browser` on the child's fd 3 and `from_browser` on its fd 4, where
/// `--remote-debugging-pipe` looks.
fn hand_over_pipe(cmd: &mut Command, to_browser: &impl AsRawFd, from_browser: &impl AsRawFd) {
    use std::os::unix::process::CommandExt;
    let (read, write) = (to_browser.as_raw_fd(), from_browser.as_raw_fd());
    // SAFETY: between fork and exec only async-signal-safe calls (fcntl, dup2) are made.
    unsafe {
        cmd.pre_exec(move || {
            // Out of the way first (either may already be fd 3 or 4), then into place;
            // dup2 clears close-on-exec on the copies.
            let read = libc::fcntl(read, libc::F_DUPFD, 10);
            let write = libc::fcntl(write, libc::F_DUPFD, 10);
            if read < 0 || write < 0 || libc::dup2(read, 3) < 0 || libc::dup2(write, 4) < 0 {
                return Err(std::io::Error::last_os_error());
            }
            Ok(())
        });
    }
}

fn screenshot_path() -> PathBuf {
    Path::new(env!("CARGO_TARGET_TMPDIR")).join("web-page.png")
}

#[tokio::test(flavor = "multi_thread")]
async fn the_page_shows_the_login_and_a_payment_live_in_chromium() {
    let mut browser = Chromium::launch();
    let sim = Simulator::start(SimConfig::for_tests()).await.unwrap();
    let dir = tempfile::tempdir().unwrap();
    let (listening, addr) = tokio::sync::oneshot::channel();
    let daemon = common::daemon::start_with(common::daemon::config_for(&sim), dir.path(), |d| {
        d.on_web_listening(listening)
    });
    let addr = tokio::time::timeout(WAIT, addr).await.unwrap().unwrap();
    let login_url = |sim: &Simulator| {
        paysay::session::qr::login_url(&sim.current_uuid().expect("a QR code handed out"))
    };

    tokio::task::block_in_place(|| {
        browser.open(&format!("http://{addr}/"));
        browser.wait_until("the page", "document.getElementById('total') !== null");
        browser.eval("window.notReloaded = true");
        let qr_drawn = "!document.getElementById('login').hidden && \
            document.getElementById('qr').complete && document.getElementById('qr').naturalWidth > 0";
        browser.wait_until("the QR code", qr_drawn);
        assert_eq!(browser.qr_on_screen(), login_url(&sim));
        assert_eq!(browser.eval("document.documentElement.lang"), "zh-CN");
    });

    // The code expires: the page shows the new one by itself.
    let first_src =
        tokio::task::block_in_place(|| browser.eval("document.getElementById('qr').src"));
    sim.expire_qr();
    tokio::task::block_in_place(|| {
        let replaced = format!(
            "document.getElementById('qr').src !== {first_src} && document.getElementById('qr').complete"
        );
        browser.wait_until("a new QR code", &replaced);
        assert_eq!(browser.qr_on_screen(), login_url(&sim));
    });

    sim.scan();
    tokio::task::block_in_place(|| {
        browser.wait_until(
            "scanned, confirm on the phone",
            "document.getElementById('loginmsg').textContent.includes('已扫码')",
        );
    });
    sim.confirm();
    tokio::task::block_in_place(|| {
        browser.wait_until(
            "logged in",
            "document.getElementById('session').textContent.startsWith('已登录') && \
             document.getElementById('login').hidden",
        );
        assert_eq!(
            browser.eval("document.getElementById('total').textContent"),
            "0.00"
        );
    });

    sim.pay(4321);
    sim.pay(1250);
    tokio::task::block_in_place(|| {
        browser.wait_until(
            "the payments and the new total",
            "document.getElementById('total').textContent === '55.71' && \
             document.querySelectorAll('#payments li[data-msg-id]').length === 2",
        );
        let newest = browser.eval("document.querySelector('#payments li').textContent");
        assert!(newest.as_str().unwrap().contains("¥12.50"), "{newest}");
        // The kind's name comes from paysay (PaymentKind::label_zh), not the page's script.
        assert!(newest.as_str().unwrap().contains("二维码收款"), "{newest}");
        assert_eq!(
            browser.eval("document.getElementById('count').textContent"),
            "2 笔"
        );
        assert_eq!(
            browser.eval("window.notReloaded === true"),
            true,
            "the page was reloaded"
        );
        let png = browser.screenshot(None);
        std::fs::write(screenshot_path(), png).unwrap();
    });

    daemon.shutdown.cancel();
    tokio::time::timeout(WAIT, daemon.task)
        .await
        .expect("the daemon did not stop")
        .unwrap()
        .unwrap();
    sim.shutdown().await;
}
