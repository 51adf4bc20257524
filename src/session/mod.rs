//! The WeChat web session: log in, keep the session alive with the synccheck/webwxsync
//! long-poll, resume it after a restart, and log in again when the server ends it.
//!
//! [`run`] is the whole life of the session; it hands each batch of messages to the daemon
//! and saves the new SyncKey only after the daemon has acknowledged the batch as recorded,
//! so a crash in between makes the server deliver the batch again rather than lose it. A
//! batch the daemon could not record (the ledger cannot be written) is asked for again
//! from the old SyncKey after a backoff, until it is recorded.

mod api;
pub mod error;
mod http;
mod login;
mod pace;
pub mod qr;
pub mod store;

use std::path::PathBuf;
use std::time::{Duration, SystemTime, UNIX_EPOCH};

use tokio::sync::{mpsc, oneshot};
use tokio_util::sync::CancellationToken;
use tracing::Instrument;

pub use api::{Session, SyncPosition};
pub use error::{ErrorKind, SessionError};
pub use login::PreviousLogin;

use crate::backoff::Backoff;
use crate::config::WechatConfig;
use crate::failing::Failing;
use crate::protocol::{Contact, Message};

/// A message with the contact record of its sender, which alone says who sent it.
#[derive(Debug, Clone)]
pub struct Incoming {
    pub message: Message,
    /// `None` when the server could not tell us who the sender is.
    pub sender: Option<Contact>,
}

/// What the session tells the daemon.
#[derive(Debug)]
pub enum SessionEvent {
    /// A new QR code to scan (the owner must be told at once: log, speak).
    QrCode {
        path: PathBuf,
        url: String,
    },
    /// The QR code was scanned; waiting for the phone to confirm.
    Scanned,
    /// The phone was asked to confirm a login without a QR code.
    PushLoginSent,
    LoggedIn {
        nick_name: String,
        resumed: bool,
    },
    /// A sync round ended: WeChat answered, the session is alive (last sync time).
    Synced,
    /// The server ended the session; a new login follows.
    LoggedOut {
        retcode: i64,
    },
    /// New messages. Answer on `ack`: [`Ack::Recorded`] once they are safely recorded (the
    /// SyncKey that moves past them is saved only then), else [`Ack::NotRecorded`]. A
    /// dropped `ack` counts as not recorded.
    Messages {
        own_user_name: String,
        batch: Vec<Incoming>,
        ack: oneshot::Sender<Ack>,
    },
}

/// A text for the session to send (webwxsendmsg), from the daemon: the session task owns
/// the session, so sending goes through it, between two sync rounds.
#[derive(Debug)]
pub struct Outgoing {
    /// `filehelper`, or a contact's remark or nickname (see [`Session::recipient`]).
    pub to: String,
    pub text: String,
    /// How it went. A sender that stopped waiting (dropped the receiver) is not sent for.
    pub reply: oneshot::Sender<Result<(), SessionError>>,
}

/// How many texts may wait for the session: the daemon sends a few a day.
pub const OUTGOING_CAPACITY: usize = 4;

/// Where texts for the session go, and where the session takes them from.
pub fn outgoing_channel() -> (mpsc::Sender<Outgoing>, mpsc::Receiver<Outgoing>) {
    mpsc::channel(OUTGOING_CAPACITY)
}

/// The daemon's answer to a batch of messages.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Ack {
    /// Every payment in the batch is in the ledger: the SyncKey may move past it.
    Recorded,
    /// Something could not be recorded: keep the old SyncKey, so that the server delivers
    /// the batch again, and ask again after a while.
    NotRecorded,
}

/// Waits before asking again for a batch the daemon could not record: short, for a lock
/// that goes away; growing, so a full disk does not make paysay hammer WeChat.
const UNRECORDED_RETRY_MIN: Duration = Duration::from_secs(1);
const UNRECORDED_RETRY_MAX: Duration = Duration::from_secs(30);

/// Where session events go. A closed receiver is not an error: the session keeps going.
#[derive(Debug, Clone)]
pub struct Events(mpsc::UnboundedSender<SessionEvent>);

impl Events {
    pub fn channel() -> (Events, mpsc::UnboundedReceiver<SessionEvent>) {
        let (tx, rx) = mpsc::unbounded_channel();
        (Events(tx), rx)
    }

    pub fn emit(&self, event: SessionEvent) {
        let _ = self.0.send(event);
    }
}

/// Where the session keeps its files.
#[derive(Debug, Clone)]
pub struct SessionFiles {
    pub session: PathBuf,
    pub qr_png: PathBuf,
}

impl SessionFiles {
    pub fn from_paths(paths: &crate::paths::Paths) -> SessionFiles {
        SessionFiles {
            session: paths.session_file(),
            qr_png: paths.qr_png(),
        }
    }
}

/// The wait between tries while WeChat cannot be reached: `[wechat] min_backoff_ms`
/// doubling up to `max_backoff_secs`.
pub fn backoff(config: &WechatConfig) -> Backoff {
    Backoff::new(
        config.min_backoff(),
        Duration::from_secs(config.max_backoff_secs),
    )
}

/// Connects: resumes the saved session when the server still accepts it, else logs in
/// (push login first, then QR codes until one is confirmed), and saves the result.
///
/// `previous` is what is known of a session that just ended, for the push login.
pub async fn connect(
    config: &WechatConfig,
    files: &SessionFiles,
    events: &Events,
    previous: Option<PreviousLogin>,
) -> Result<Session, SessionError> {
    let saved = store::load(&files.session)?;
    let previous = saved
        .as_ref()
        .map(|s| PreviousLogin {
            uin: s.uin,
            web_host: s.hosts.web.clone(),
            cookies: s.cookies.clone(),
        })
        .or(previous);
    if let Some(saved) = saved {
        match Session::resume(config, saved).await {
            Ok(mut session) => {
                tracing::info!(user = %crate::text::Escaped(session.nick_name()), "resumed the saved WeChat session");
                save_later_if_not_now(&mut session, files);
                events.emit(SessionEvent::LoggedIn {
                    nick_name: session.nick_name().to_string(),
                    resumed: true,
                });
                return Ok(session);
            }
            Err(e) if e.kind() == ErrorKind::LoggedOut => {
                tracing::warn!(error = %crate::text::Escaped(&e), "the saved session has ended; a new login is needed");
                // Left in place, it is only tried again at the next start: no reason to
                // stop hearing payments.
                if let Err(e) = store::discard(&files.session) {
                    tracing::error!(error = %crate::text::Escaped(&e), "cannot remove the ended session; it is tried (and removed) again at the next start");
                }
            }
            // A network blip must not throw away a session the server may still accept.
            Err(e) => return Err(e),
        }
    }
    let mut session = Session::login(config, &files.qr_png, previous.as_ref(), events).await?;
    save_later_if_not_now(&mut session, files);
    tracing::info!(user = %crate::text::Escaped(session.nick_name()), "logged in to WeChat");
    events.emit(SessionEvent::LoggedIn {
        nick_name: session.nick_name().to_string(),
        resumed: false,
    });
    Ok(session)
}

/// The session's whole life: connect, sync until the server ends the session, log in
/// again, and so on until `shutdown`. Returns an error only for what a person must fix
/// (a refused account, an unwritable state dir).
///
/// A session that ended soon after its login makes the next login wait, longer each time
/// in a row (see [`pace::Relogins`]): a server that ends every session at once must not
/// drive paysay into logging in several times a second.
///
/// Texts on `outgoing` are sent while logged in, between two rounds (so up to a long poll
/// later); they wait while the session logs in again.
pub async fn run(
    config: &WechatConfig,
    files: &SessionFiles,
    events: Events,
    mut outgoing: mpsc::Receiver<Outgoing>,
    shutdown: CancellationToken,
) -> Result<(), SessionError> {
    let mut backoff = backoff(config);
    let mut relogins = pace::Relogins::from_config(config);
    let mut previous = None;
    let mut next_login_at = None;
    loop {
        if let Some(at) = next_login_at.take() {
            tokio::select! {
                _ = shutdown.cancelled() => return Ok(()),
                _ = tokio::time::sleep_until(at) => {}
            }
        }
        let connected = tokio::select! {
            _ = shutdown.cancelled() => return Ok(()),
            r = connect(config, files, &events, previous.clone()) => r,
        };
        let session = match connected {
            Ok(s) => s,
            Err(e) => {
                retry_or_fail(e, &mut backoff, &shutdown).await?;
                continue;
            }
        };
        backoff.reset();
        previous = Some(session.previous_login());
        let began = tokio::time::Instant::now();
        let span =
            tracing::info_span!("session", user = %crate::text::Escaped(session.nick_name()));
        let link = Link {
            events: &events,
            outgoing: &mut outgoing,
            shutdown: &shutdown,
        };
        let ended = sync_until_logout(session, files, link, &mut backoff)
            .instrument(span)
            .await?;
        match ended {
            Ended::Shutdown => return Ok(()),
            Ended::LoggedOut { retcode } => {
                let lived = began.elapsed();
                let wait = relogins.ended_after(lived, retcode);
                log_logout(retcode, lived, wait, relogins.in_episode());
                store::discard(&files.session)?;
                events.emit(SessionEvent::LoggedOut { retcode });
                next_login_at = wait.map(|d| tokio::time::Instant::now() + d);
            }
        }
    }
}

/// The end of a session, once: within an episode of sessions ended right after login,
/// the episode's own line has said it (see [`pace::Relogins`]).
fn log_logout(retcode: i64, lived: Duration, wait: Option<Duration>, in_episode: bool) {
    let reason = error::describe_retcode(retcode);
    let lived_secs = lived.as_secs();
    let next_login_in_ms = wait.map_or(0, |d| d.as_millis() as u64);
    if in_episode {
        tracing::debug!(
            retcode,
            lived_secs,
            next_login_in_ms,
            "WeChat ended the session again"
        );
    } else {
        tracing::error!(
            retcode,
            reason,
            lived_secs,
            next_login_in_ms,
            "WeChat ended the session: a new login is needed"
        );
    }
}

enum Ended {
    Shutdown,
    LoggedOut { retcode: i64 },
}

/// How a save of the session went. A session that cannot be saved (a full disk, no file
/// handle left, a file the owner may not write) is no reason to stop hearing payments:
/// the session goes on in memory and only a restart would need a new scan. Said when
/// saving starts failing and when it works again.
fn keep(saved: Result<(), SessionError>, saves: &mut Failing) {
    match saved {
        Ok(()) => {
            if let Some(failed) = saves.worked() {
                tracing::info!(failed, "the WeChat session can be saved again");
            }
        }
        Err(e) if saves.failed() => tracing::error!(
            error = %crate::text::Escaped(&e),
            "cannot save the WeChat session; payments are still heard and announced, but a restart now would need a new QR scan"
        ),
        Err(e) => {
            tracing::debug!(error = %crate::text::Escaped(&e), "cannot save the WeChat session")
        }
    }
}

/// A session that cannot be saved right after its login goes on all the same: the first
/// round's save tries again, and says it if that fails too ([`keep`]).
fn save_later_if_not_now(session: &mut Session, files: &SessionFiles) {
    if let Err(e) = session.save(&files.session) {
        tracing::debug!(error = %crate::text::Escaped(&e), "cannot save the new WeChat session yet");
    }
}

/// Transient errors: wait and go on; anything else ends `run`.
async fn retry_or_fail(
    e: SessionError,
    backoff: &mut Backoff,
    shutdown: &CancellationToken,
) -> Result<(), SessionError> {
    if e.kind() == ErrorKind::Fatal {
        return Err(e);
    }
    let delay = backoff.next_delay();
    tracing::warn!(error = %crate::text::Escaped(&e), retry_in_ms = delay.as_millis() as u64, "WeChat request failed; retrying");
    tokio::select! {
        _ = shutdown.cancelled() => {}
        _ = tokio::time::sleep(delay) => {}
    }
    Ok(())
}

/// What a logged-in session talks to: the daemon's events, its texts to send, shutdown.
struct Link<'a> {
    events: &'a Events,
    outgoing: &'a mut mpsc::Receiver<Outgoing>,
    shutdown: &'a CancellationToken,
}

async fn sync_until_logout(
    mut session: Session,
    files: &SessionFiles,
    link: Link<'_>,
    backoff: &mut Backoff,
) -> Result<Ended, SessionError> {
    let Link {
        events,
        outgoing,
        shutdown,
    } = link;
    let mut unrecorded = Backoff::new(UNRECORDED_RETRY_MIN, UNRECORDED_RETRY_MAX);
    let mut saves = Failing::default();
    loop {
        send_waiting(&session, outgoing, shutdown);
        let round_start = session.sync_position();
        // Cancelling mid-request is safe: the SyncKey is saved only after a batch is
        // acknowledged, so an interrupted sync is delivered again next time.
        let batch = tokio::select! {
            _ = shutdown.cancelled() => return Ok(Ended::Shutdown),
            r = session.next_batch() => r,
        };
        match batch {
            Ok(batch) => {
                backoff.reset();
                if !batch.is_empty() {
                    match deliver(&session, batch, events, shutdown).await {
                        Delivery::Recorded => unrecorded.reset(),
                        Delivery::NotRecorded => {
                            session.rewind(round_start);
                            if !wait_to_redeliver(&mut unrecorded, shutdown).await {
                                return Ok(Ended::Shutdown);
                            }
                        }
                        Delivery::Stopped => return Ok(Ended::Shutdown),
                    }
                }
                keep(session.commit(&files.session), &mut saves);
                events.emit(SessionEvent::Synced);
            }
            Err(e) if e.kind() == ErrorKind::LoggedOut => {
                return Ok(Ended::LoggedOut {
                    retcode: logout_code(&e),
                });
            }
            Err(e) => retry_or_fail(e, backoff, shutdown).await?,
        }
    }
}

/// Starts the texts that wait, each once, on tasks of their own that answer each sender:
/// a webwxsendmsg whose answer hangs must not hold up the next synccheck, and with it a
/// payment. Texts are few (`[notify]` sends at most one a minute).
fn send_waiting(
    session: &Session,
    outgoing: &mut mpsc::Receiver<Outgoing>,
    shutdown: &CancellationToken,
) {
    while let Ok(out) = outgoing.try_recv() {
        if out.reply.is_closed() {
            // The sender gave up waiting; sending now could make it a second copy.
            continue;
        }
        let text = match session.prepare_text(&out.to, &out.text) {
            Ok(text) => text,
            Err(e) => {
                let _ = out.reply.send(Err(e));
                continue;
            }
        };
        let shutdown = shutdown.clone();
        tokio::spawn(async move {
            tokio::select! {
                _ = shutdown.cancelled() => {}
                sent = text.send() => {
                    let _ = out.reply.send(sent);
                }
            }
        });
    }
}

/// What became of a batch handed to the daemon.
enum Delivery {
    Recorded,
    NotRecorded,
    /// Shutdown, or nobody takes messages any more: stop without moving past the batch.
    Stopped,
}

/// Hands a batch to the daemon and waits for its acknowledgement.
async fn deliver(
    session: &Session,
    batch: Vec<Incoming>,
    events: &Events,
    shutdown: &CancellationToken,
) -> Delivery {
    let (ack, acked) = oneshot::channel();
    let sent = events.0.send(SessionEvent::Messages {
        own_user_name: session.user_name().to_string(),
        batch,
        ack,
    });
    if sent.is_err() {
        // Nobody could ever record these; asking again would go on for ever.
        tracing::warn!(
            "nobody takes messages any more; the session stops without moving past them"
        );
        return Delivery::Stopped;
    }
    tokio::select! {
        // An acknowledged batch is saved even when shutdown came at the same moment.
        biased;
        answer = acked => match answer {
            Ok(Ack::Recorded) => Delivery::Recorded,
            // A dropped sender is no yes: nobody said the batch was recorded.
            Ok(Ack::NotRecorded) | Err(_) => Delivery::NotRecorded,
        },
        _ = shutdown.cancelled() => Delivery::Stopped,
    }
}

/// After a batch the daemon could not record, which the session has rewound to: waits
/// before the server is asked for it again. False on shutdown.
async fn wait_to_redeliver(backoff: &mut Backoff, shutdown: &CancellationToken) -> bool {
    let delay = backoff.next_delay();
    tracing::warn!(
        retry_in_ms = delay.as_millis() as u64,
        "the batch was not recorded; keeping the old SyncKey, the server delivers it again"
    );
    tokio::select! {
        _ = shutdown.cancelled() => false,
        _ = tokio::time::sleep(delay) => true,
    }
}

fn logout_code(e: &SessionError) -> i64 {
    match e {
        SessionError::LoggedOut { retcode, .. } => *retcode,
        SessionError::Ret { ret, .. } => *ret,
        _ => 0,
    }
}

pub(crate) fn now_ms() -> i64 {
    SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .map_or(0, |d| d.as_millis() as i64)
}

/// `e` + 15 digits, as the browser makes it.
pub(crate) fn new_device_id() -> String {
    use rand::Rng;
    let mut rng = rand::rng();
    let digits: String = (0..15)
        .map(|_| char::from(b'0' + rng.random_range(0..10u8)))
        .collect();
    format!("e{digits}")
}

pub(crate) fn long_poll_timeout(config: &WechatConfig) -> Duration {
    Duration::from_secs(config.long_poll_timeout_secs + 5)
}
