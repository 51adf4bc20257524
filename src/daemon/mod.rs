//! The whole pipeline in one place: session → messages → payments → ledger → announcer
//! (speech → audio). One supervisor loop owns the session's events, the reload signal and
//! the watchdog; shutdown reaches every task through one `CancellationToken`.

mod announcer;
mod login_alert;
mod notify;

use std::sync::{Arc, Mutex, MutexGuard};

use tokio::sync::{mpsc, watch};
use tokio::task::JoinHandle;
use tokio_util::sync::CancellationToken;

pub use announcer::Announcement;
use announcer::Announcer;
use login_alert::LoginAlerts;

use crate::audio::{AudioError, Player, PlayerHandle};
use crate::config::Config;
use crate::ledger::{Ledger, LedgerError, Recorded};
use crate::paths::Paths;
use crate::payment::{Detector, Payment};
use crate::session::{self, Events, Incoming, SessionError, SessionEvent, SessionFiles};
use crate::speech::{Speech, TtsError, Yuan};

/// Why the daemon stopped with an error.
#[derive(Debug, thiserror::Error)]
pub enum DaemonError {
    #[error(transparent)]
    Session(#[from] SessionError),
    #[error(transparent)]
    Ledger(#[from] LedgerError),
    #[error("cannot set up speech: {0}")]
    Speech(#[from] TtsError),
    #[error(transparent)]
    Audio(#[from] AudioError),
    #[error(
        "the WeChat session stopped unexpectedly ({0}); paysay exits with an error so that the service restarts it"
    )]
    SessionCrashed(String),
    #[error(
        "the announcer stopped unexpectedly ({0}); paysay stops so the service restarts it and says what is pending"
    )]
    AnnouncerCrashed(String),
}

/// The ledger, shared by the supervisor (records) and the announcer (marks announced).
/// SQLite calls are short; they run on the blocking pool, never on an async worker.
#[derive(Clone)]
pub struct SharedLedger(Arc<Mutex<Ledger>>);

impl SharedLedger {
    fn lock(&self) -> MutexGuard<'_, Ledger> {
        // A panic mid-call cannot leave SQLite inconsistent: its transactions see to that.
        self.0.lock().unwrap_or_else(|e| e.into_inner())
    }

    async fn call<T: Send + 'static>(
        &self,
        f: impl FnOnce(&Ledger) -> Result<T, LedgerError> + Send + 'static,
    ) -> Result<T, LedgerError> {
        let ledger = self.clone();
        tokio::task::spawn_blocking(move || f(&ledger.lock()))
            .await
            .unwrap_or_else(|e| Err(LedgerError::Task(e.to_string())))
    }
}

/// Runs until `shutdown` is cancelled or something a person must fix happens.
pub async fn run(
    config: Config,
    paths: Paths,
    shutdown: CancellationToken,
) -> Result<(), DaemonError> {
    let player = Player::spawn(&config.audio)?;
    run_with_player(config, paths, player, shutdown).await
}

/// [`run`] with a given audio player (tests and `--dry-run` use a null output).
pub async fn run_with_player(
    config: Config,
    paths: Paths,
    player: PlayerHandle,
    shutdown: CancellationToken,
) -> Result<(), DaemonError> {
    let speech = Speech::from_config(&config.speech, paths.tts_cache_dir())?;
    run_with_speech(config, paths, player, speech, shutdown).await
}

/// [`run_with_player`] with a given speech chain until the first config reload (SIGHUP
/// rebuilds it from the config): for soak tests, whose synthesizer writes each amount
/// into the audio so the output can tell which payment it played.
pub async fn run_with_speech(
    config: Config,
    paths: Paths,
    player: PlayerHandle,
    speech: Speech,
    shutdown: CancellationToken,
) -> Result<(), DaemonError> {
    let ledger = SharedLedger(Arc::new(Mutex::new(Ledger::open(&paths.ledger_db())?)));
    let (speech_tx, speech_rx) = watch::channel(Arc::new(speech));
    let (queue, queue_rx) = mpsc::unbounded_channel();
    queue_backlog(&ledger, &queue).await?;
    let mut announcer = Some(tokio::spawn(
        Announcer {
            speech: speech_rx,
            player: player.clone(),
            ledger: ledger.clone(),
            queue: queue_rx,
            shutdown: shutdown.clone(),
        }
        .run(),
    ));
    let mut supervisor = Supervisor {
        detector: Detector::new(&config.payments),
        config,
        paths,
        ledger,
        queue,
        speech: speech_tx,
        player: player.clone(),
        login_alerts: LoginAlerts::default(),
    };
    let result = supervisor.run(shutdown.clone(), &mut announcer).await;
    // Whatever ended the loop, stop the rest: the announcer finishes what it is saying.
    notify::stopping();
    shutdown.cancel();
    if let Some(announcer) = announcer
        && let Err(e) = announcer.await
    {
        tracing::error!(error = %e, "the announcer failed");
    }
    player.shutdown().await;
    tracing::info!("stopped");
    result
}

/// Payments recorded but never heard (a crash, a power cut, a stop mid-sentence) are said
/// first, oldest first.
async fn queue_backlog(
    ledger: &SharedLedger,
    queue: &mpsc::UnboundedSender<Announcement>,
) -> Result<(), LedgerError> {
    let backlog = ledger.call(|l| l.unannounced()).await?;
    if !backlog.is_empty() {
        tracing::warn!(
            count = backlog.len(),
            "payments recorded but not yet announced; announcing them now"
        );
    }
    for p in backlog {
        let _ = queue.send(Announcement::Payment(p));
    }
    Ok(())
}

struct Supervisor {
    config: Config,
    paths: Paths,
    /// Built from `config.payments`; rebuilt on reload.
    detector: Detector,
    ledger: SharedLedger,
    queue: mpsc::UnboundedSender<Announcement>,
    speech: watch::Sender<Arc<Speech>>,
    player: PlayerHandle,
    /// When the owner was told (out loud) that a scan is needed, and when to tell again.
    login_alerts: LoginAlerts,
}

impl Supervisor {
    async fn run(
        &mut self,
        shutdown: CancellationToken,
        announcer: &mut Option<JoinHandle<()>>,
    ) -> Result<(), DaemonError> {
        let files = SessionFiles::from_paths(&self.paths);
        let (events, mut rx) = Events::channel();
        let wechat = self.config.wechat.clone();
        let token = shutdown.clone();
        let mut session =
            tokio::spawn(async move { session::run(&wechat, &files, events, token).await });
        let mut hangup = Hangup::new();
        let mut watchdog = notify::watchdog_period().map(tokio::time::interval);
        notify::ready("connecting to WeChat");
        loop {
            tokio::select! {
                // The session ends on shutdown, or on an error a person must fix. A crashed
                // session is an error too: exiting 0 would keep `Restart=on-failure` from
                // bringing the shop's speaker back.
                ended = &mut session => {
                    return match ended {
                        Ok(r) => r.map_err(DaemonError::from),
                        Err(e) => Err(DaemonError::SessionCrashed(e.to_string())),
                    };
                }
                // The announcer ends only on shutdown. Ending otherwise (a panic), it would
                // leave payments recorded but never said until a restart: stop, so the
                // service restarts paysay and the backlog is said.
                ended = finished(announcer) => {
                    *announcer = None;
                    if !shutdown.is_cancelled() {
                        let why = ended.err().map_or_else(|| "it returned".to_string(), |e| e.to_string());
                        return Err(DaemonError::AnnouncerCrashed(why));
                    }
                }
                // Messages, logins, logouts.
                Some(event) = rx.recv() => self.handle(event).await,
                // SIGHUP: new speech, volume and payment settings without a new login.
                _ = hangup.recv() => self.reload(),
                // systemd's watchdog: the loop is alive.
                _ = tick(&mut watchdog) => notify::watchdog(),
            }
        }
    }

    async fn handle(&mut self, event: SessionEvent) {
        match event {
            SessionEvent::Messages {
                own_user_name,
                batch,
                ack,
            } => {
                self.record_payments(&own_user_name, batch).await;
                // Acknowledged only now: the SyncKey moves past this batch once it is recorded.
                let _ = ack.send(());
            }
            SessionEvent::QrCode { path, .. } => {
                notify::status(&format!("waiting for a QR scan: {}", path.display()));
                if self.login_alerts.should_speak(tokio::time::Instant::now()) {
                    let _ = self
                        .queue
                        .send(Announcement::Alert(self.config.speech.login_alert.clone()));
                }
            }
            SessionEvent::LoggedIn { nick_name, resumed } => {
                self.login_alerts.logged_in(tokio::time::Instant::now());
                let how = if resumed { "resumed" } else { "logged in" };
                notify::status(&format!("{how} as {nick_name}"));
            }
            SessionEvent::LoggedOut { retcode } => {
                self.login_alerts.logged_out(tokio::time::Instant::now());
                notify::status(&format!(
                    "logged out by WeChat (retcode {retcode}); waiting for a new login"
                ));
            }
            SessionEvent::Scanned | SessionEvent::PushLoginSent => {}
        }
    }

    /// Detects the payments in a batch and records each in the ledger before it is queued
    /// for announcement; a payment already in the ledger (a redelivery, a restart) is not.
    async fn record_payments(&mut self, own_user_name: &str, batch: Vec<Incoming>) {
        for incoming in batch {
            log_message(&incoming);
            let Some(payment) = self.detect(own_user_name, &incoming) else {
                continue;
            };
            let p = payment.clone();
            match self.ledger.call(move |l| l.record(&p)).await {
                Ok(Recorded::New) => {
                    tracing::info!(
                        amount = %Yuan(payment.amount_fen),
                        kind = %payment.kind,
                        payer = payment.payer.as_deref().unwrap_or("-"),
                        msg_id = %payment.msg_id,
                        "payment received"
                    );
                    let _ = self.queue.send(Announcement::Payment(payment));
                }
                Ok(Recorded::Duplicate) => tracing::info!(
                    amount = %Yuan(payment.amount_fen),
                    msg_id = %payment.msg_id,
                    "payment already recorded (delivered again): not announced twice"
                ),
                // Not recorded means not acknowledged either way; the log says so loudly.
                Err(e) => {
                    tracing::error!(error = %e, msg_id = %payment.msg_id, "cannot record the payment in the ledger")
                }
            }
        }
    }

    fn detect(&self, own_user_name: &str, incoming: &Incoming) -> Option<Payment> {
        match self
            .detector
            .detect(&incoming.message, incoming.sender.as_ref(), own_user_name)
        {
            Ok(Some(p)) => Some(p),
            Ok(None) => {
                self.warn_if_impostor(incoming);
                None
            }
            Err(e) => {
                tracing::warn!(error = %e, msg_id = %incoming.message.msg_id, "payment-like message skipped");
                None
            }
        }
    }

    /// A sender who carries a payment account's name without being one is worth a line.
    fn warn_if_impostor(&self, incoming: &Incoming) {
        let Some(sender) = &incoming.sender else {
            return;
        };
        let named_like = self.config.payments.accounts.contains(&sender.nick_name);
        if named_like && !sender.is_official_account() {
            tracing::warn!(
                sender = %sender.nick_name,
                msg_id = %incoming.message.msg_id,
                "ignored a message from an ordinary contact named like a payment account"
            );
        }
    }

    fn reload(&mut self) {
        notify::reloading();
        let config = match Config::load(&self.paths.config_file, false) {
            Ok(c) => c,
            Err(e) => {
                tracing::error!(error = %e, "config not reloaded; keeping the running settings");
                notify::status("config reload failed; see the log");
                return;
            }
        };
        match Speech::from_config(&config.speech, self.paths.tts_cache_dir()) {
            Ok(speech) => {
                let _ = self.speech.send(Arc::new(speech));
            }
            Err(e) => tracing::error!(error = %e, "speech settings not reloaded"),
        }
        self.player.set_volume(config.audio.volume);
        self.detector = Detector::new(&config.payments);
        if config.wechat != self.config.wechat {
            tracing::warn!("[wechat] settings change only on restart");
        }
        self.config = config;
        tracing::info!("config reloaded");
        notify::ready("config reloaded");
    }
}

/// The announcer's end; never, once it has been seen (a `JoinHandle` yields only once).
async fn finished(announcer: &mut Option<JoinHandle<()>>) -> Result<(), tokio::task::JoinError> {
    match announcer {
        Some(handle) => handle.await,
        None => std::future::pending().await,
    }
}

async fn tick(interval: &mut Option<tokio::time::Interval>) {
    match interval {
        Some(i) => {
            i.tick().await;
        }
        None => std::future::pending().await,
    }
}

/// SIGHUP where there is such a thing.
struct Hangup {
    #[cfg(unix)]
    signal: Option<tokio::signal::unix::Signal>,
}

impl Hangup {
    fn new() -> Hangup {
        #[cfg(unix)]
        {
            let signal = tokio::signal::unix::signal(tokio::signal::unix::SignalKind::hangup())
                .inspect_err(|e| tracing::warn!(error = %e, "cannot listen for SIGHUP; config reload needs a restart"))
                .ok();
            Hangup { signal }
        }
        #[cfg(not(unix))]
        Hangup {}
    }

    async fn recv(&mut self) {
        #[cfg(unix)]
        if let Some(s) = &mut self.signal {
            s.recv().await;
            return;
        }
        std::future::pending::<()>().await
    }
}

fn log_message(incoming: &Incoming) {
    let m = &incoming.message;
    let sender = incoming
        .sender
        .as_ref()
        .map_or(m.from_user_name.as_str(), |c| c.nick_name.as_str());
    let preview: String = m.content.chars().take(40).collect();
    tracing::debug!(
        msg_type = m.msg_type,
        app_msg_type = m.app_msg_type,
        sender,
        preview,
        "message"
    );
}
