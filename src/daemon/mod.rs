//! The whole pipeline in one place: session → messages → payments → ledger → announcer
//! (speech → audio). One supervisor loop owns the session's events, the reload signal and
//! the watchdog; shutdown reaches every task through one `CancellationToken`.

mod heard;
mod login_alert;
pub mod owner_texts;
mod unrecorded;
mod ways;

use std::path::PathBuf;
use std::sync::Arc;
use std::time::Duration;

use tokio::sync::{mpsc, watch};
use tokio::task::JoinHandle;
use tokio_util::sync::CancellationToken;

pub use crate::announcer::Announcement;
use crate::announcer::Announcer;
use crate::live::{self, Live, SessionState};
use crate::readiness;
use login_alert::LoginAlerts;
use owner_texts::{OwnerEvent, OwnerNotifier, WallClock};
use unrecorded::{Resolved, Unrecorded};
use ways::{PhoneVerdict, Ways};

use crate::audio::{AudioError, Player, PlayerHandle};
use crate::config::Config;
use crate::intake::{IntakeEvent, PhoneNotice};
use crate::ledger::{Ledger, LedgerError, LedgerHandle, Recorded, reconcile, report};
use crate::money::Yuan;
use crate::outbox::Outbox;
use crate::paths::Paths;
use crate::payment::{Detector, Payment, PaymentKind, Source, Wallet};
use crate::session::{self, Ack, Events, Incoming, SessionError, SessionEvent, SessionFiles};
use crate::sinks::{SinkError, Sinks};
use crate::speech::{Speech, TtsError};

/// Why the daemon stopped with an error.
#[derive(Debug, thiserror::Error)]
pub enum DaemonError {
    #[error(transparent)]
    Session(#[from] SessionError),
    #[error(transparent)]
    Ledger(#[from] LedgerError),
    #[error(
        "cannot make the state directory {path} owner-only: {source} (it must be the shop owner's own: `sudo chown -R $USER {path}`)"
    )]
    StateDir {
        path: PathBuf,
        source: std::io::Error,
    },
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
    #[error(transparent)]
    Sink(#[from] SinkError),
    #[error("cannot hear the phone's notices: {0}")]
    Intake(String),
}

/// The daemon, ready to run: the config and paths it runs with, and the parts a test, the
/// demo or `--dry-run` may give it instead of the configured ones:
/// `Daemon::new(config, paths).player(null).run(shutdown).await`.
pub struct Daemon {
    config: Config,
    paths: Paths,
    player: Option<PlayerHandle>,
    speech: Option<Speech>,
    /// The offset payment events' times are written with, and local days are read in.
    offset: time::UtcOffset,
    /// What `[notify]`'s times of day are read from.
    clock: WallClock,
    /// What the daemon is doing, for the shop's page.
    live: Live,
    /// Told where the shop's page listens, once it does.
    #[cfg(feature = "web")]
    web_listening: Option<tokio::sync::oneshot::Sender<std::net::SocketAddr>>,
    /// Told where the phone's intake listens, once it does.
    intake_listening: Option<tokio::sync::oneshot::Sender<std::net::SocketAddr>>,
}

impl Daemon {
    /// A daemon that plays on `[audio]`'s device and speaks with `[speech]`'s voices.
    ///
    /// Call it before the runtime starts its threads: it reads the local time zone for the
    /// payment events, which `time` refuses to do in a multi-threaded process (UTC then).
    pub fn new(config: Config, paths: Paths) -> Daemon {
        let offset = crate::ledger::report::local_offset_at(crate::now_unix())
            .unwrap_or(time::UtcOffset::UTC);
        Daemon {
            config,
            paths,
            player: None,
            speech: None,
            offset,
            clock: owner_texts::system_clock(),
            live: Live::new(),
            #[cfg(feature = "web")]
            web_listening: None,
            intake_listening: None,
        }
    }

    /// Sends the address the phone's intake listens on (`[intake] listen` with port 0
    /// picks a free one) down `tx` once it listens: `paysay demo` plays the phone there.
    pub fn on_intake_listening(
        mut self,
        tx: tokio::sync::oneshot::Sender<std::net::SocketAddr>,
    ) -> Daemon {
        self.intake_listening = Some(tx);
        self
    }

    /// Reads the time of day for `[notify]` (the daily summary, how long paysay was away)
    /// from `clock` (unix seconds) instead of the system's: for tests.
    pub fn clock(mut self, clock: WallClock) -> Daemon {
        self.clock = clock;
        self
    }

    /// What the daemon is doing (session, speaker, payments recorded), as it runs.
    pub fn live(&self) -> Live {
        self.live.clone()
    }

    /// Sends the address the shop's page listens on (`[web] listen` with port 0 picks a
    /// free one) down `tx` once it listens: `paysay demo` prints it, tests open it.
    #[cfg(feature = "web")]
    pub fn on_web_listening(
        mut self,
        tx: tokio::sync::oneshot::Sender<std::net::SocketAddr>,
    ) -> Daemon {
        self.web_listening = Some(tx);
        self
    }

    /// Plays through `player` instead (tests and `--dry-run` use a null output).
    pub fn player(mut self, player: PlayerHandle) -> Daemon {
        self.player = Some(player);
        self
    }

    /// Speaks with `speech` until the first config reload (SIGHUP rebuilds it from the
    /// config): for soak tests, whose synthesizer writes each amount into the audio so the
    /// output can tell which payment it played.
    pub fn speech(mut self, speech: Speech) -> Daemon {
        self.speech = Some(speech);
        self
    }

    /// Runs until `shutdown` is cancelled or something a person must fix happens. Either
    /// way, `shutdown` is cancelled and every task has ended when this returns.
    pub async fn run(self, shutdown: CancellationToken) -> Result<(), DaemonError> {
        let Daemon {
            config,
            paths,
            player,
            speech,
            offset,
            clock,
            live,
            #[cfg(feature = "web")]
            web_listening,
            intake_listening,
        } = self;
        let player = match player {
            Some(player) => player,
            None => Player::spawn(&config.audio)?,
        };
        let speech = match speech {
            Some(speech) => speech,
            None => Speech::from_config(&config.speech, paths.tts_cache_dir())?,
        };
        // Resolved once: the sinks' names and addresses for the outbox and the page.
        let specs = config.sinks().map_err(|(key, problem)| SinkError::Config {
            name: key.to_string(),
            problem,
        })?;
        let sinks = Sinks::start(&specs)?;
        let ledger = open_ledger(&config, &paths, sinks.names())?;
        let unrecorded = Unrecorded::default();
        let speech = Arc::new(speech);
        crate::speech::spawn_bank_build(&speech);
        let (speech_tx, speech_rx) = watch::channel(speech);
        let (queue, queue_rx) = mpsc::unbounded_channel();
        queue_backlog(&ledger, &queue).await?;
        let (events, events_rx) = Events::channel();
        let (outgoing, outgoing_rx) = session::outgoing_channel();
        let wechat = config.wechat.clone();
        let files = SessionFiles::from_paths(&paths);
        let token = shutdown.clone();
        if !wechat.enabled {
            tracing::info!(
                "the WeChat web session is off ([wechat] enabled = false): payments come from the phone's notices"
            );
            live.update(|s| s.session = SessionState::Off);
        }
        let mut tasks = Tasks::spawn(
            async move {
                if !wechat.enabled {
                    token.cancelled().await;
                    return Ok(());
                }
                session::run(&wechat, &files, events, outgoing_rx, token).await
            },
            Announcer {
                speech: speech_rx,
                player: player.clone(),
                record: heard::Heard {
                    ledger: ledger.clone(),
                    unrecorded: unrecorded.clone(),
                },
                queue: queue_rx,
                shutdown: shutdown.clone(),
                live: live.clone(),
            }
            .run(),
            &shutdown,
        );
        // The page is a convenience; the speaker is what the shop needs: a port taken by
        // another program is logged, and paysay speaks all the same.
        #[cfg(feature = "web")]
        if let Err(e) = tasks
            .spawn_web(&config, &paths, &ledger, offset, &live, web_listening)
            .await
        {
            tracing::error!(error = %e, "the shop's page is not served; payments are still announced");
            readiness::status(&format!("the shop's page is not served: {e}"));
        }
        let intake = tasks.spawn_intake(&config, intake_listening).await?;
        if intake.is_some() {
            live.update(|s| s.phone = Some(live::PhoneStatus::default()));
        }
        let (logged_in, logged_in_rx) = watch::channel(false);
        tasks.spawn_outbox(&ledger, offset, sinks, logged_in_rx);
        let owner = config.notify.clone().map(|notify| {
            let (tx, events) = mpsc::unbounded_channel();
            tracing::info!(to = %crate::text::Escaped(&notify.to), daily_summary = %notify.daily_summary, "[notify]: texts go to the owner in WeChat");
            tasks.outbox.push(tokio::spawn(
                OwnerNotifier {
                    config: notify,
                    outgoing,
                    ledger: ledger.clone(),
                    offset,
                    clock,
                    events,
                    shutdown: shutdown.clone(),
                }
                .run(),
            ));
            tx
        });
        let ways = config.intake.as_ref().map(|i| {
            Ways::new(
                Duration::from_millis(i.web_wait_ms),
                Duration::from_secs(i.match_window_secs),
            )
        });
        let mut supervisor = Supervisor {
            ways,
            web_up: false,
            phone_up: false,
            owner,
            offset,
            detector: Detector::new(&config.payments),
            config,
            paths,
            ledger,
            unrecorded,
            ledger_down: false,
            queue,
            speech: speech_tx,
            player: player.clone(),
            login_alerts: LoginAlerts::default(),
            logged_in,
            live,
        };
        // A ledger SQLite could only open read-only: the owner learns now, not at the first
        // payment.
        let writable = supervisor.ledger.is_writable();
        if !writable {
            let path = supervisor.paths.ledger_db();
            supervisor.ledger_fails(&LedgerError::ReadOnly { path });
        }
        let result = supervisor
            .run(events_rx, intake, &mut tasks, &shutdown)
            .await;
        // Whatever ended the loop, stop the rest: the announcer finishes what it is saying.
        readiness::stopping();
        shutdown.cancel();
        tasks.join().await;
        player.shutdown().await;
        tracing::info!("stopped");
        result
    }
}

/// The state dir, owner-only, and the ledger in it, queueing each new payment's event for
/// `sinks`.
fn open_ledger(
    config: &Config,
    paths: &Paths,
    sinks: Vec<String>,
) -> Result<LedgerHandle, DaemonError> {
    paths
        .prepare_state_dir()
        .map_err(|source| DaemonError::StateDir {
            path: paths.state_dir.clone(),
            source,
        })?;
    let busy_timeout = Duration::from_millis(config.ledger.busy_timeout_ms);
    let mut ledger = Ledger::open_with(&paths.ledger_db(), busy_timeout)?;
    ledger.set_sinks(sinks);
    ledger.set_match_window(
        config
            .intake
            .as_ref()
            .map(|i| Duration::from_secs(i.match_window_secs)),
    );
    Ok(LedgerHandle::new(ledger)?)
}

/// The daemon's tasks, the WeChat session, the announcer, and the outbox's (one delivery
/// task per sink, V免签's heartbeat): started together, and awaited together, so that
/// none outlives [`Daemon::run`].
struct Tasks {
    /// `None` once its end has been seen (a `JoinHandle` yields only once).
    session: Option<JoinHandle<Result<(), SessionError>>>,
    announcer: Option<JoinHandle<()>>,
    /// They end on shutdown; a crash there is logged when they are awaited. The
    /// `[notify]` task is among them.
    outbox: Vec<JoinHandle<()>>,
    /// Told to say `offline` once the delivery tasks have ended.
    mqtt: Option<Arc<crate::mqtt::MqttSink>>,
    /// The shop's page; it stops on shutdown.
    web: Option<JoinHandle<()>>,
    /// What ends the tasks started later.
    shutdown: CancellationToken,
}

impl Tasks {
    fn spawn(
        session: impl Future<Output = Result<(), SessionError>> + Send + 'static,
        announcer: impl Future<Output = ()> + Send + 'static,
        shutdown: &CancellationToken,
    ) -> Tasks {
        Tasks {
            session: Some(tokio::spawn(session)),
            announcer: Some(tokio::spawn(announcer)),
            outbox: Vec::new(),
            mqtt: None,
            web: None,
            shutdown: shutdown.clone(),
        }
    }

    /// The shop's page, when `[web]` enables it.
    #[cfg(feature = "web")]
    async fn spawn_web(
        &mut self,
        config: &Config,
        paths: &Paths,
        ledger: &LedgerHandle,
        offset: time::UtcOffset,
        live: &Live,
        listening: Option<tokio::sync::oneshot::Sender<std::net::SocketAddr>>,
    ) -> Result<(), crate::web::WebError> {
        if !config.web.enabled {
            tracing::info!("the shop's page is off ([web] enabled = false)");
            return Ok(());
        }
        let server =
            crate::web::Server::bind(config, paths, ledger.clone(), offset, live.clone()).await?;
        if let Some(tx) = listening {
            let _ = tx.send(server.local_addr());
        }
        self.web = Some(tokio::spawn(server.run(self.shutdown.clone())));
        Ok(())
    }

    /// The phone's intake, when `[intake]` asks for it: its events, or `None` without it.
    async fn spawn_intake(
        &mut self,
        config: &Config,
        listening: Option<tokio::sync::oneshot::Sender<std::net::SocketAddr>>,
    ) -> Result<Option<mpsc::UnboundedReceiver<IntakeEvent>>, DaemonError> {
        let Some(intake) = &config.intake else {
            return Ok(None);
        };
        #[cfg(feature = "intake")]
        {
            let (tx, rx) = mpsc::unbounded_channel();
            let limits = crate::listener::Limits::of(&config.web);
            let server = crate::intake::Server::bind(intake, limits, tx)
                .await
                .map_err(|e| DaemonError::Intake(e.to_string()))?;
            if let Some(tx) = listening {
                let _ = tx.send(server.local_addr());
            }
            self.outbox
                .push(tokio::spawn(server.run(self.shutdown.clone())));
            Ok(Some(rx))
        }
        #[cfg(not(feature = "intake"))]
        {
            let _ = (intake, listening);
            Err(DaemonError::Intake(
                "this paysay was built without the intake feature".into(),
            ))
        }
    }

    /// One delivery task per sink, woken by the ledger's writes, and V免签's heartbeat,
    /// told by `logged_in` whether WeChat is in.
    fn spawn_outbox(
        &mut self,
        ledger: &LedgerHandle,
        offset: time::UtcOffset,
        sinks: Sinks,
        logged_in: watch::Receiver<bool>,
    ) {
        if sinks.all.is_empty() {
            return;
        }
        self.mqtt = sinks.mqtt.clone();
        if let Some(vmq) = sinks.vmq.clone() {
            self.outbox.push(tokio::spawn(
                vmq.run_heartbeat(logged_in, self.shutdown.clone()),
            ));
        }
        tracing::info!(sinks = ?sinks.names(), "payment events go out to these sinks");
        let outbox = Outbox::new(ledger.clone(), offset);
        self.outbox.extend(outbox.spawn(sinks.all, &self.shutdown));
    }

    /// After shutdown has been cancelled: waits for whichever task is still running. The
    /// daemon's result is what ended the supervisor; an error met here is only logged.
    async fn join(self) {
        if let Some(session) = self.session {
            match session.await {
                Ok(Ok(())) => {}
                Ok(Err(e)) => {
                    tracing::error!(error = %crate::text::Escaped(&e), "the WeChat session failed while stopping")
                }
                Err(e) => tracing::error!(error = %e, "the WeChat session failed while stopping"),
            }
        }
        if let Some(announcer) = self.announcer
            && let Err(e) = announcer.await
        {
            tracing::error!(error = %e, "the announcer failed while stopping");
        }
        for task in self.outbox {
            if let Err(e) = task.await {
                tracing::error!(error = %e, "a payment-event task failed");
            }
        }
        if let Some(mqtt) = self.mqtt {
            mqtt.shutdown().await;
        }
        if let Some(web) = self.web
            && let Err(e) = web.await
        {
            tracing::error!(error = %e, "the shop's page failed while stopping");
        }
    }
}

/// Payments recorded but never heard (a crash, a power cut, a stop mid-sentence) are said
/// first, oldest first.
async fn queue_backlog(
    ledger: &LedgerHandle,
    queue: &mpsc::UnboundedSender<Announcement>,
) -> Result<(), LedgerError> {
    let backlog = ledger.read(|l| l.unannounced()).await?;
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
    /// Phone notices waiting for their web copy, and the web's refused forgeries; `None`
    /// without `[intake]`.
    ways: Option<Ways>,
    /// Whether the web session is logged in (a WeChat payment's web copy is on its way).
    web_up: bool,
    /// Whether the phone is heard (its heartbeats have not stopped).
    phone_up: bool,
    /// Told of logins and logouts, for `[notify]`'s back-online text; `None` without it.
    owner: Option<mpsc::UnboundedSender<OwnerEvent>>,
    /// The local offset days are read in (reconciliation).
    offset: time::UtcOffset,
    config: Config,
    paths: Paths,
    /// Built from `config.payments`; rebuilt on reload.
    detector: Detector,
    ledger: LedgerHandle,
    /// Payments announced while the ledger could not record them.
    unrecorded: Unrecorded,
    /// Whether the last write failed (and the owner was told, once).
    ledger_down: bool,
    queue: mpsc::UnboundedSender<Announcement>,
    speech: watch::Sender<Arc<Speech>>,
    player: PlayerHandle,
    /// When the owner was told (out loud) that a scan is needed, and when to tell again.
    login_alerts: LoginAlerts,
    /// Whether WeChat is logged in: V免签's heartbeat beats only then.
    logged_in: watch::Sender<bool>,
    /// The state and the new payments, for the shop's page.
    live: Live,
}

impl Supervisor {
    /// The daemon's loop; its value is the daemon's result.
    async fn run(
        &mut self,
        mut events: mpsc::UnboundedReceiver<SessionEvent>,
        mut intake: Option<mpsc::UnboundedReceiver<IntakeEvent>>,
        tasks: &mut Tasks,
        shutdown: &CancellationToken,
    ) -> Result<(), DaemonError> {
        let mut hangup = Hangup::new();
        let mut watchdog = readiness::watchdog_period().map(tokio::time::interval);
        readiness::ready("connecting to WeChat");
        loop {
            tokio::select! {
                // The session ends on shutdown, or on an error a person must fix. A crashed
                // session is an error too: exiting 0 would keep `Restart=on-failure` from
                // bringing the shop's speaker back.
                ended = finished(&mut tasks.session) => {
                    return match ended {
                        Ok(r) => r.map_err(DaemonError::from),
                        Err(e) => Err(DaemonError::SessionCrashed(e.to_string())),
                    };
                }
                // The announcer ends only on shutdown. Ending otherwise (a panic), it would
                // leave payments recorded but never said until a restart: stop, so the
                // service restarts paysay and the backlog is said.
                ended = finished(&mut tasks.announcer) => {
                    if !shutdown.is_cancelled() {
                        let why = ended.err().map_or_else(|| "it returned".to_string(), |e| e.to_string());
                        return Err(DaemonError::AnnouncerCrashed(why));
                    }
                }
                // Messages, logins, logouts.
                Some(event) = events.recv() => self.handle(event).await,
                // The phone's notices and its comings and goings.
                Some(event) = next_intake(&mut intake) => self.handle_intake(event).await,
                // Phone notices whose web copy did not come in time: said now.
                _ = due(self.ways.as_ref().and_then(Ways::next_due)) => self.say_overdue().await,
                // SIGHUP: new speech, volume and payment settings without a new login.
                _ = hangup.recv() => self.reload(),
                // systemd's watchdog: the loop is alive.
                _ = tick(&mut watchdog) => readiness::watchdog(),
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
                let recorded = self.record_payments(&own_user_name, batch).await;
                self.live.update(|s| s.last_sync = Some(crate::now_unix()));
                // Answered only now: the SyncKey moves past this batch once it is recorded,
                // and stays before it (the server delivers it again) when it is not.
                let _ = ack.send(recorded);
            }
            SessionEvent::QrCode { path, url } => {
                self.web_up = false;
                self.beat_while_heard();
                self.tell_owner(OwnerEvent::Away);
                self.live.new_qr(url);
                readiness::status(&format!("waiting for a QR scan: {}", path.display()));
                if self.login_alerts.should_speak(tokio::time::Instant::now()) {
                    let _ = self
                        .queue
                        .send(Announcement::Alert(self.config.speech.login_alert.clone()));
                }
            }
            SessionEvent::LoggedIn { nick_name, resumed } => {
                self.web_up = true;
                self.beat_while_heard();
                self.tell_owner(OwnerEvent::LoggedIn);
                self.login_alerts.logged_in(tokio::time::Instant::now());
                self.live.update(|s| {
                    s.session = SessionState::LoggedIn {
                        nick_name: nick_name.clone(),
                        since: crate::now_unix(),
                    };
                    s.last_sync = Some(crate::now_unix());
                });
                let how = if resumed { "resumed" } else { "logged in" };
                readiness::status(&format!("{how} as {nick_name}"));
            }
            SessionEvent::LoggedOut { retcode } => {
                self.web_up = false;
                self.beat_while_heard();
                self.tell_owner(OwnerEvent::Away);
                self.login_alerts.logged_out(tokio::time::Instant::now());
                self.live
                    .update(|s| s.session = SessionState::LoggedOut { retcode });
                tracing::info!(
                    retcode,
                    "logged out by WeChat; waiting for a new login (payment events wait too)"
                );
                readiness::status(&format!(
                    "logged out by WeChat (retcode {retcode}); waiting for a new login"
                ));
            }
            SessionEvent::Scanned => self.live.update(|s| s.session = SessionState::Scanned),
            SessionEvent::PushLoginSent => self
                .live
                .update(|s| s.session = SessionState::ConfirmOnPhone),
            SessionEvent::Synced => self.live.update(|s| s.last_sync = Some(crate::now_unix())),
        }
    }

    /// Detects the payments in a batch and records each in the ledger before it is queued
    /// for announcement; a payment already in the ledger (a redelivery, a restart) is not.
    ///
    /// A payment the ledger cannot take is announced all the same (the money arrived), and
    /// the batch is answered [`Ack::NotRecorded`], so that it comes again and is recorded
    /// then. After one failure the rest of the batch is not tried (each try would wait for
    /// the busy timeout again), only announced.
    async fn record_payments(&mut self, own_user_name: &str, batch: Vec<Incoming>) -> Ack {
        if self.ledger_down {
            // Fixed meanwhile? A read-only connection does not notice by itself; when it is
            // still not writable, the first record below says so.
            let _ = self.ledger.write(|l| l.reopen_if_read_only()).await;
        }
        let mut failed: Option<LedgerError> = None;
        for incoming in batch {
            log_message(&incoming);
            let Some(mut payment) = self.detect(own_user_name, &incoming) else {
                continue;
            };
            self.join_waiting_phone_copy(&mut payment);
            if failed.is_some() {
                self.announce_unrecorded(payment);
                continue;
            }
            let p = payment.clone();
            match self.ledger.write(move |l| l.record(&p)).await {
                Ok(recorded) => {
                    if recorded == Recorded::New {
                        self.live.recorded(&payment);
                    }
                    let counted = payment.clone();
                    self.recorded(payment, recorded).await;
                    if recorded == Recorded::New {
                        self.reconcile(counted).await;
                    }
                }
                // Not a ledger fault, and no retry would store it: say so, go on.
                Err(e @ LedgerError::AmountTooLarge { .. }) => {
                    tracing::error!(error = %crate::text::Escaped(&e), "payment skipped: check the phone");
                }
                Err(e) => {
                    tracing::error!(
                        error = %crate::text::Escaped(&e),
                        amount = %Yuan(payment.amount_fen),
                        msg_id = %crate::text::Escaped(&payment.msg_id),
                        "cannot record the payment in the ledger; announcing it anyway, it is recorded when WeChat delivers it again"
                    );
                    self.announce_unrecorded(payment);
                    failed = Some(e);
                }
            }
        }
        match failed {
            None => {
                self.ledger_works();
                Ack::Recorded
            }
            Some(e) => {
                self.ledger_fails(&e);
                Ack::NotRecorded
            }
        }
    }

    /// A payment now in the ledger: announced, unless it was (or is being) announced
    /// already, before the ledger could take it.
    async fn recorded(&self, payment: Payment, recorded: Recorded) {
        match (self.unrecorded.recorded(&payment), recorded) {
            (Resolved::Unknown, Recorded::New) => {
                tracing::info!(
                    amount = %Yuan(payment.amount_fen),
                    kind = %payment.kind,
                    payer = payment.payer.as_deref().unwrap_or("-"),
                    msg_id = %crate::text::Escaped(&payment.msg_id),
                    "payment received"
                );
                let _ = self.queue.send(Announcement::Payment(payment));
            }
            (Resolved::Unknown, Recorded::Merged) => tracing::info!(
                amount = %Yuan(payment.amount_fen),
                msg_id = %crate::text::Escaped(&payment.msg_id),
                "payment heard the other way already (web and phone): one payment, not announced twice"
            ),
            (Resolved::Unknown, Recorded::Duplicate) => tracing::info!(
                amount = %Yuan(payment.amount_fen),
                msg_id = %crate::text::Escaped(&payment.msg_id),
                "payment already recorded (delivered again): not announced twice"
            ),
            (Resolved::BeingAnnounced, _) => tracing::info!(
                amount = %Yuan(payment.amount_fen),
                msg_id = %crate::text::Escaped(&payment.msg_id),
                "payment recorded now; its announcement is already queued"
            ),
            (Resolved::AlreadyHeard, _) => {
                let amount = Yuan(payment.amount_fen);
                let msg_id = crate::text::Escaped(payment.msg_id.clone());
                match self.ledger.write(move |l| l.mark_heard(&payment)).await {
                    Ok(()) => {
                        tracing::info!(%amount, %msg_id, "payment recorded now; it was announced already, not again")
                    }
                    // The next start says it again: better twice than never.
                    Err(e) => {
                        tracing::error!(error = %e, %msg_id, "payment recorded, but the ledger could not note that it was announced")
                    }
                }
            }
        }
    }

    fn tell_owner(&self, event: OwnerEvent) {
        if let Some(owner) = &self.owner {
            let _ = owner.send(event);
        }
    }

    /// Compares a newly recorded notice's 今日第N笔 with the previous notice of its account
    /// and local day in the ledger (see [`reconcile`]): a jump is said out loud, once, and
    /// logged; `paysay ledger` and the daily summary show it from the ledger.
    async fn reconcile(&self, payment: Payment) {
        if payment.daily_count.is_none() {
            return;
        }
        let offset = self.offset;
        let day = reconcile::local_date(payment.time, &|_| offset);
        let day_start = report::start_of_day(day, &|_| offset);
        let p = payment.clone();
        let previous = match self
            .ledger
            .read(move |l| {
                let previous = l.previous_notice(&p, day_start)?;
                let since = previous.as_ref().map_or(day_start, |prev| prev.time);
                Ok((previous, l.phone_only_between(since, p.time)?))
            })
            .await
        {
            Ok(previous) => previous,
            Err(e) => {
                tracing::warn!(error = %e, "cannot compare the notice with the previous one");
                return;
            }
        };
        let (previous, between) = previous;
        match reconcile::check(previous.as_ref(), &payment, between) {
            reconcile::Check::Gap(gap) => {
                tracing::error!(
                    missed = gap.missed,
                    missed_amount = %gap.missed_fen.map_or_else(|| "?".to_string(), |fen| Yuan(fen).to_string()),
                    account = %crate::text::Escaped(&gap.account),
                    daily_count = payment.daily_count,
                    msg_id = %crate::text::Escaped(&payment.msg_id),
                    "WeChat counted payments today that paysay never saw: check the phone"
                );
                let _ = self
                    .queue
                    .send(Announcement::Alert(self.config.speech.gap_alert.clone()));
            }
            reconcile::Check::Odd(why) => tracing::info!(
                why,
                daily_count = payment.daily_count,
                previous = previous.as_ref().and_then(|p| p.daily_count),
                account = %crate::text::Escaped(&payment.account),
                "WeChat's day count does not follow on from the previous notice (a new day, a clerk copy, a refund?)"
            ),
            reconcile::Check::Nothing | reconcile::Check::Consistent => {}
        }
    }

    /// Queues a payment the ledger could not take, unless it is queued or said already.
    fn announce_unrecorded(&self, payment: Payment) {
        if self.unrecorded.insert(&payment) {
            tracing::info!(
                amount = %Yuan(payment.amount_fen),
                kind = %payment.kind,
                msg_id = %crate::text::Escaped(&payment.msg_id),
                "payment received (not in the ledger yet)"
            );
            let _ = self.queue.send(Announcement::Payment(payment));
        } else {
            tracing::info!(
                amount = %Yuan(payment.amount_fen),
                msg_id = %crate::text::Escaped(&payment.msg_id),
                "payment delivered again, still not in the ledger: not announced twice"
            );
        }
    }

    /// The ledger failed a write: the owner hears it once per outage; the log and
    /// `systemctl status` say why and what to do each time.
    fn ledger_fails(&mut self, e: &LedgerError) {
        let advice = e.advice();
        readiness::status(&format!(
            "cannot write the payment ledger: {advice}. Payments are still announced, and recorded once it works ({e})"
        ));
        self.live.update(|s| s.ledger_ok = false);
        if self.ledger_down {
            return;
        }
        self.ledger_down = true;
        tracing::error!(error = %e, advice, "the ledger cannot be written: payments are announced but not recorded; paysay keeps trying");
        let _ = self
            .queue
            .send(Announcement::Alert(self.config.speech.ledger_alert.clone()));
    }

    /// A batch was recorded: after an outage, says the ledger works again.
    fn ledger_works(&mut self) {
        self.live.update(|s| s.ledger_ok = true);
        if std::mem::take(&mut self.ledger_down) {
            tracing::info!(
                "the ledger can be written again; the payments announced meanwhile are recorded"
            );
            readiness::status("the payment ledger can be written again");
        }
    }

    fn detect(&mut self, own_user_name: &str, incoming: &Incoming) -> Option<Payment> {
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
                tracing::warn!(error = %crate::text::Escaped(&e), msg_id = %crate::text::Escaped(&incoming.message.msg_id), "payment-like message skipped");
                None
            }
        }
    }

    /// A sender who carries a payment account's name without being one is worth a line.
    fn warn_if_impostor(&mut self, incoming: &Incoming) {
        let Some(sender) = &incoming.sender else {
            return;
        };
        let named_like = self.config.payments.accounts.contains(&sender.nick_name);
        if named_like && !sender.is_official_account() {
            tracing::warn!(
                sender = %crate::text::Escaped(&sender.nick_name),
                msg_id = %crate::text::Escaped(&incoming.message.msg_id),
                "ignored a message from an ordinary contact named like a payment account"
            );
            self.note_forgery(incoming, &sender.nick_name);
        }
    }

    /// A forgery the web session refused shows on the phone exactly like a real notice
    /// (the phone cannot see who sent it): its phone copy must not be said either.
    fn note_forgery(&mut self, incoming: &Incoming, nick_name: &str) {
        let Some(ways) = &mut self.ways else {
            return;
        };
        let message = &incoming.message;
        let Ok(Some(shown)) = crate::payment::notice::read_notice(
            crate::payment::notice::WECHAT_APP,
            nick_name,
            &message.content,
        ) else {
            return;
        };
        let time = message.create_time;
        if let Some(copy) = ways.web_forgery(shown.amount_fen, time, tokio::time::Instant::now()) {
            tracing::warn!(amount = %Yuan(copy.amount_fen), "the phone's copy of that forged message is not said");
        }
    }

    /// A WeChat payment from the web session takes the phone copy that waits for it: one
    /// payment, heard both ways, said once now.
    fn join_waiting_phone_copy(&mut self, payment: &mut Payment) {
        let Some(ways) = &mut self.ways else {
            return;
        };
        if payment.wallet == Wallet::WeChat
            && ways.web_payment(payment.amount_fen, payment.time).is_some()
        {
            payment.source = Source::Both;
        }
    }

    /// V免签 takes orders only while someone hears the payments: the web session or the
    /// phone.
    fn beat_while_heard(&self) {
        self.logged_in.send_replace(self.web_up || self.phone_up);
    }

    async fn handle_intake(&mut self, event: IntakeEvent) {
        match event {
            IntakeEvent::Notice(notice) => {
                self.live.update(|s| {
                    if let Some(phone) = &mut s.phone {
                        phone.last_heard = Some(crate::now_unix());
                    }
                });
                let Some(ways) = &mut self.ways else { return };
                match ways.phone(notice, self.web_up, tokio::time::Instant::now()) {
                    PhoneVerdict::SayNow(notice) => self.record_phone(notice).await,
                    PhoneVerdict::Waiting => {}
                    PhoneVerdict::Forged(notice) => tracing::warn!(
                        amount = %Yuan(notice.amount_fen),
                        "a phone notice of a payment the web session refused as a forgery (an ordinary contact named like 微信支付): not said"
                    ),
                }
            }
            IntakeEvent::Heard(_) => self.live.update(|s| {
                if let Some(phone) = &mut s.phone {
                    phone.last_heard = Some(crate::now_unix());
                }
            }),
            IntakeEvent::PhoneOnline => {
                self.phone_up = true;
                self.beat_while_heard();
                self.live.update(|s| {
                    if let Some(phone) = &mut s.phone {
                        phone.online = true;
                    }
                });
            }
            IntakeEvent::PhoneOffline => {
                self.phone_up = false;
                self.beat_while_heard();
                self.live.update(|s| {
                    if let Some(phone) = &mut s.phone {
                        phone.online = false;
                    }
                });
                readiness::status("the shop's phone has stopped sending heartbeats");
                let _ = self
                    .queue
                    .send(Announcement::Alert(self.config.speech.phone_alert.clone()));
            }
        }
    }

    /// Phone notices whose web copy did not come within `[intake] web_wait_ms`.
    async fn say_overdue(&mut self) {
        let Some(ways) = &mut self.ways else { return };
        for notice in ways.expired(tokio::time::Instant::now()) {
            self.record_phone(notice).await;
        }
    }

    /// A payment heard from the phone: recorded (as one payment with its web copy, when
    /// the ledger has that) and said.
    async fn record_phone(&mut self, notice: PhoneNotice) {
        let payment = phone_payment(&notice);
        let p = payment.clone();
        match self.ledger.write(move |l| l.record(&p)).await {
            Ok(recorded) => {
                if recorded == Recorded::New {
                    self.live.recorded(&payment);
                }
                self.recorded(payment, recorded).await;
            }
            Err(e) => {
                tracing::error!(error = %crate::text::Escaped(&e), amount = %Yuan(payment.amount_fen), "cannot record the phone's payment in the ledger; announcing it anyway");
                self.ledger_fails(&e);
                self.announce_unrecorded(payment);
            }
        }
    }

    fn reload(&mut self) {
        readiness::reloading();
        let config = match Config::load(&self.paths.config_file, false) {
            Ok(c) => c,
            Err(e) => {
                tracing::error!(error = %e, "config not reloaded; keeping the running settings");
                readiness::status("config reload failed; see the log");
                return;
            }
        };
        match Speech::from_config(&config.speech, self.paths.tts_cache_dir()) {
            Ok(speech) => {
                let speech = Arc::new(speech);
                // A new voice, rate or template makes the bank stale: built again.
                crate::speech::spawn_bank_build(&speech);
                let _ = self.speech.send(speech);
            }
            Err(e) => tracing::error!(error = %e, "speech settings not reloaded"),
        }
        self.player.set_volume(config.audio.volume);
        self.detector = Detector::new(&config.payments);
        if config.wechat != self.config.wechat {
            tracing::warn!("[wechat] settings change only on restart");
        }
        if config.webhooks != self.config.webhooks || config.vmq != self.config.vmq {
            tracing::warn!("[[webhook]] and [vmq] settings change only on restart");
        }
        if config.notify != self.config.notify {
            tracing::warn!("[notify] settings change only on restart");
        }
        self.config = config;
        tracing::info!("config reloaded");
        readiness::ready("config reloaded");
    }
}

/// A payment as the phone's notice tells it: no payer, no MsgId (its id is the notice's).
/// Its account is the one a shop knows the wallet's notices by (WeChat's as titled, so
/// that it reads like the web copy's).
fn phone_payment(notice: &PhoneNotice) -> Payment {
    let title = notice.title.trim();
    let account = match notice.wallet {
        Wallet::WeChat if !title.is_empty() => title,
        Wallet::WeChat => "微信支付",
        Wallet::Alipay => "支付宝",
        Wallet::UnionPay => "云闪付",
    }
    .to_string();
    Payment {
        msg_id: notice.id.clone(),
        amount_fen: notice.amount_fen,
        kind: PaymentKind::Collection,
        payer: None,
        remark: None,
        daily_count: None,
        daily_total_fen: None,
        time: notice.time,
        account,
        transfer_id: None,
        wallet: notice.wallet,
        source: Source::Phone,
    }
}

/// The next intake event; never without an intake.
async fn next_intake(
    intake: &mut Option<mpsc::UnboundedReceiver<IntakeEvent>>,
) -> Option<IntakeEvent> {
    match intake {
        Some(rx) => rx.recv().await,
        None => std::future::pending().await,
    }
}

/// The moment `at`; never when there is none.
async fn due(at: Option<tokio::time::Instant>) {
    match at {
        Some(at) => tokio::time::sleep_until(at).await,
        None => std::future::pending().await,
    }
}

/// A task's end; never, once it has been seen.
async fn finished<T>(task: &mut Option<JoinHandle<T>>) -> Result<T, tokio::task::JoinError> {
    let Some(handle) = task else {
        return std::future::pending().await;
    };
    let ended = handle.await;
    // Cancel-safe: a handle that has yielded its task's end is dropped in the same poll.
    *task = None;
    ended
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

#[cfg(test)]
mod tests {
    use std::sync::atomic::{AtomicBool, Ordering};

    use super::*;

    /// A session that, like the real one, stops on shutdown, but needs a few turns of the
    /// runtime to do so; `ended` says it got to the end.
    async fn slow_to_stop(
        shutdown: CancellationToken,
        ended: Arc<AtomicBool>,
    ) -> Result<(), SessionError> {
        shutdown.cancelled().await;
        for _ in 0..10 {
            tokio::task::yield_now().await;
        }
        ended.store(true, Ordering::SeqCst);
        Ok(())
    }

    #[tokio::test]
    async fn a_crashed_announcer_leaves_no_session_running() {
        let shutdown = CancellationToken::new();
        let ended = Arc::new(AtomicBool::new(false));
        let mut tasks = Tasks::spawn(
            slow_to_stop(shutdown.clone(), ended.clone()),
            async { panic!("an announcer with a bug") },
            &shutdown,
        );
        let crash = finished(&mut tasks.announcer).await;
        assert!(crash.is_err_and(|e| e.is_panic()));
        shutdown.cancel();
        tasks.join().await;
        assert!(
            ended.load(Ordering::SeqCst),
            "join returned before the session ended"
        );
    }
}
