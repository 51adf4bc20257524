//! The real WeChat client against the simulator, in this process: one simulator, the
//! client's settings and files in a temp dir, and a running client whose events a test
//! waits for.

use std::time::Duration;

use paysay::config::WechatConfig;
use paysay::protocol::msg_type;
use paysay::session::{self, Ack, Events, Incoming, SessionError, SessionEvent, SessionFiles};
use tokio::sync::mpsc::UnboundedReceiver;
use tokio::task::JoinHandle;
use tokio_util::sync::CancellationToken;
use wechat_sim::{SimConfig, Simulator};

/// How long a test waits for an event or for the client to stop, unless it says otherwise
/// ([`Harness::wait`]).
pub const WAIT: Duration = Duration::from_secs(15);

/// The client's settings for talking to `sim`: short timeouts and backoffs, so a fault
/// costs a test well under a second.
pub fn client_config(sim: &Simulator) -> WechatConfig {
    WechatConfig {
        base_url: Some(sim.base_url()),
        long_poll_timeout_secs: 3,
        request_timeout_secs: 3,
        min_backoff_ms: 20,
        max_backoff_secs: 1,
        ..WechatConfig::default()
    }
}

/// A simulator and what the client needs to talk to it. A test changes `config` or `wait`
/// before [`Harness::start`] to try other timings.
pub struct Harness {
    pub sim: Simulator,
    pub config: WechatConfig,
    pub files: SessionFiles,
    /// How long the clients it starts wait for an event, and to stop.
    pub wait: Duration,
    _dir: tempfile::TempDir,
}

impl Harness {
    /// A simulator with `sim_config`, the client configured by [`client_config`].
    pub async fn new(sim_config: SimConfig) -> Harness {
        let sim = Simulator::start(sim_config).await.unwrap();
        let dir = tempfile::tempdir().unwrap();
        let config = client_config(&sim);
        let files = SessionFiles {
            session: dir.path().join("state/session.json"),
            qr_png: dir.path().join("state/login-qr.png"),
        };
        Harness {
            sim,
            config,
            files,
            wait: WAIT,
            _dir: dir,
        }
    }

    /// Starts the client (`session::run`) as a task of its own.
    pub fn start(&self) -> Running {
        let (events, rx) = Events::channel();
        let (outgoing, outgoing_rx) = session::outgoing_channel();
        let shutdown = CancellationToken::new();
        let (config, files, token) = (self.config.clone(), self.files.clone(), shutdown.clone());
        let task =
            tokio::spawn(
                async move { session::run(&config, &files, events, outgoing_rx, token).await },
            );
        Running {
            rx,
            outgoing,
            seen: Vec::new(),
            wait: self.wait,
            shutdown,
            task,
        }
    }

    /// Starts the client and waits for its QR code.
    pub async fn start_with_qr(&self) -> Running {
        let mut running = self.start();
        running
            .wait_for(|e| matches!(e, SessionEvent::QrCode { .. }))
            .await;
        running
    }

    /// Starts the client and plays the phone: scan, confirm, until logged in.
    pub async fn start_logged_in(&self) -> Running {
        let mut running = self.start_with_qr().await;
        self.sim.scan();
        self.sim.confirm();
        running
            .wait_for(|e| matches!(e, SessionEvent::LoggedIn { .. }))
            .await;
        running
    }
}

/// A client started by [`Harness::start`].
pub struct Running {
    pub rx: UnboundedReceiver<SessionEvent>,
    /// Texts for the session to send (webwxsendmsg).
    pub outgoing: tokio::sync::mpsc::Sender<session::Outgoing>,
    /// The name of every event received so far, for the message of a test that times out.
    pub seen: Vec<String>,
    wait: Duration,
    pub shutdown: CancellationToken,
    pub task: JoinHandle<Result<(), SessionError>>,
}

impl Running {
    /// The next event matching `pred`; message batches on the way are acknowledged, and
    /// a matching one is the caller's to answer.
    pub async fn wait_for(&mut self, pred: impl Fn(&SessionEvent) -> bool) -> SessionEvent {
        let found = tokio::time::timeout(self.wait, async {
            loop {
                let event = self.rx.recv().await.expect("session task ended");
                self.seen.push(event_name(&event));
                if pred(&event) {
                    return event;
                }
                // A dropped acknowledgement is a refusal: the batch would come again.
                if let SessionEvent::Messages { ack, .. } = event {
                    let _ = ack.send(Ack::Recorded);
                }
            }
        })
        .await;
        found.unwrap_or_else(|_| {
            panic!(
                "timed out waiting for a session event; events so far: {:?}",
                self.seen
            )
        })
    }

    /// Waits for the first round after a login (the status notification) and acknowledges
    /// it, so that the next round reads what comes next.
    pub async fn status_notify_round(&mut self) {
        let SessionEvent::Messages { batch, ack, .. } = self
            .wait_for(|e| matches!(e, SessionEvent::Messages { .. }))
            .await
        else {
            unreachable!("wait_for returns a batch")
        };
        assert!(
            batch
                .iter()
                .all(|m| m.message.msg_type == msg_type::STATUS_NOTIFY)
        );
        let _ = ack.send(Ack::Recorded);
    }

    /// Collects `n` messages other than status notifications, acknowledging each batch,
    /// while the phone confirms whatever login the session asks for on the way.
    pub async fn messages_across_relogin(&mut self, sim: &Simulator, n: usize) -> Vec<Incoming> {
        let mut got = Vec::new();
        while got.len() < n {
            let event = tokio::time::timeout(WAIT, self.rx.recv())
                .await
                .unwrap_or_else(|_| panic!("timed out with {} of {n} messages", got.len()))
                .expect("session task ended");
            match event {
                SessionEvent::Messages { batch, ack, .. } => {
                    got.extend(
                        batch
                            .into_iter()
                            .filter(|m| m.message.msg_type != msg_type::STATUS_NOTIFY),
                    );
                    let _ = ack.send(Ack::Recorded);
                }
                SessionEvent::PushLoginSent | SessionEvent::QrCode { .. } => {
                    sim.scan();
                    sim.confirm();
                }
                _ => {}
            }
        }
        got
    }

    /// Collects `n` messages other than status notifications, acknowledging each batch.
    pub async fn messages(&mut self, n: usize) -> Vec<Incoming> {
        let mut got = Vec::new();
        while got.len() < n {
            got.extend(self.next_batch().await);
        }
        got
    }

    /// Messages other than status notifications, acknowledging each batch, until one
    /// with MsgId `last` has come.
    pub async fn messages_until(&mut self, last: &str) -> Vec<Incoming> {
        let mut got: Vec<Incoming> = Vec::new();
        while !got.iter().any(|m| m.message.msg_id == last) {
            got.extend(self.next_batch().await);
        }
        got
    }

    /// The messages of the next batch other than status notifications; the batch is
    /// acknowledged.
    async fn next_batch(&mut self) -> Vec<Incoming> {
        let SessionEvent::Messages { batch, ack, .. } = self
            .wait_for(|e| matches!(e, SessionEvent::Messages { .. }))
            .await
        else {
            unreachable!("waited for messages")
        };
        let _ = ack.send(Ack::Recorded);
        batch
            .into_iter()
            .filter(|m| m.message.msg_type != msg_type::STATUS_NOTIFY)
            .collect()
    }

    /// Has the session send `text` to `to` and waits for how it went, acknowledging the
    /// batches that come meanwhile (the session sends between rounds).
    pub async fn send(&mut self, to: &str, text: &str) -> Result<(), SessionError> {
        let (reply, answer) = tokio::sync::oneshot::channel();
        let out = session::Outgoing {
            to: to.to_string(),
            text: text.to_string(),
            reply,
        };
        self.outgoing.send(out).await.expect("session task ended");
        let mut answer = std::pin::pin!(answer);
        let waited = tokio::time::timeout(self.wait, async {
            loop {
                tokio::select! {
                    r = &mut answer => return r.expect("the session dropped the text"),
                    Some(event) = self.rx.recv() => {
                        self.seen.push(event_name(&event));
                        if let SessionEvent::Messages { ack, .. } = event {
                            let _ = ack.send(Ack::Recorded);
                        }
                    }
                }
            }
        })
        .await;
        waited.expect("timed out waiting for the session to send")
    }

    /// Cancels the client and returns how `run` ended.
    pub async fn stop(self) -> Result<(), SessionError> {
        self.shutdown.cancel();
        tokio::time::timeout(self.wait, self.task)
            .await
            .expect("run did not stop")
            .unwrap()
    }
}

/// The variant's name: `QrCode`, `Messages`, …
fn event_name(event: &SessionEvent) -> String {
    let debug = format!("{event:?}");
    debug
        .split(|c: char| !c.is_alphanumeric())
        .next()
        .unwrap_or_default()
        .to_string()
}
