//! `paysay speaker`: a second speaker with no WeChat session of its own. It subscribes to
//! the `[mqtt]` topic the daemon publishes payments to, and says each payment once, with the
//! same `[speech]` and `[audio]` settings as the daemon. A shop with several counters, or a
//! chain with a central broker, scales out this way: the broker is the distributed part.
//!
//! Each payment is said once: the event's `id` goes into the speaker's own small ledger
//! (`speaker.sqlite3` in the state dir) before the broker is told the message arrived, and
//! the message is announced only if its id was new. A redelivery, a second publish of the
//! same payment or a restart stays silent; a payment received but not yet said when the
//! speaker stopped is said at the next start. The speaker keeps one client id (stored in
//! that ledger) with a persistent session, so the broker holds what is published while the
//! speaker reconnects.
//!
//! Whoever may publish to the broker can put anything on the topic, so a message is said
//! only if it can be a payment: at most [`MAX_PAYLOAD_BYTES`], an amount no larger than
//! the detector's bound ([`MAX_PAYMENT_FEN`]) and, with `[mqtt] secret`, signed with it
//! ([`crate::mqtt::verify_payload`]). Anything else is acknowledged and skipped with one
//! log line, so that it neither ends the connection nor comes back.

use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Mutex, MutexGuard};
use std::time::Duration;

use rumqttc::{AsyncClient, Event, EventLoop, Incoming, Publish, QoS};
use rusqlite::{Connection, OptionalExtension, params};
use serde::Deserialize;
use tokio::sync::{mpsc, watch};
use tokio_util::sync::CancellationToken;

use crate::announcer::{Announcement, Announcer, Record, Spoken};
use crate::audio::{AudioError, Player, PlayerHandle};
use crate::backoff::Backoff;
use crate::config::Config;
use crate::failing::Failing;
use crate::ledger::Recorded;
use crate::live::Live;
use crate::money::{MAX_PAYMENT_FEN, Yuan, parse_yuan};
use crate::mqtt::{
    self, MAX_RECONNECT, MIN_RECONNECT, MqttError, Outage, REQUEST_CAPACITY, SignatureError,
};
use crate::paths::{self, Paths};
use crate::payment::Wallet;
use crate::readiness;
use crate::speech::{Clip, Speech, TtsError};
use crate::text::Escaped;

/// Longest event id accepted: paysay's are 32 hex digits; a cloud system's may be longer.
const MAX_ID_LEN: usize = 128;

/// The largest message that can be a payment: rumqttc's default packet limit, which every
/// message the speaker said so far fitted, and some twenty times a signed paysay event.
pub const MAX_PAYLOAD_BYTES: usize = 10 * 1024;

/// The client takes any packet the broker may send (the largest an MQTT remaining length
/// encodes). A packet over the client's limit ends the connection before it can be
/// acknowledged, and the broker sends it again on every reconnect, so one oversized
/// message would silence every payment behind it; the speaker instead skips it
/// ([`MAX_PAYLOAD_BYTES`]) and acknowledges it. The broker's own limit bounds the memory
/// one takes (mosquitto's `message_size_limit`).
const MAX_INCOMING_PACKET: usize = 268_435_455;
/// The speaker itself sends only CONNECT, SUBSCRIBE, PUBACK and PINGREQ: rumqttc's default.
const MAX_OUTGOING_PACKET: usize = 10 * 1024;

/// Why the speaker stopped with an error.
#[derive(Debug, thiserror::Error)]
pub enum SpeakerError {
    #[error(
        "paysay speaker needs an [mqtt] section in the config: the broker and topic the daemon publishes payments to"
    )]
    NoMqtt,
    #[error(transparent)]
    Mqtt(#[from] MqttError),
    #[error("cannot make the state directory {path} owner-only: {source}")]
    StateDir {
        path: PathBuf,
        source: std::io::Error,
    },
    #[error(transparent)]
    Heard(#[from] HeardError),
    #[error("cannot set up speech: {0}")]
    Speech(#[from] TtsError),
    #[error(transparent)]
    Audio(#[from] AudioError),
    #[error(
        "the announcer stopped unexpectedly ({0}); the speaker stops so the service restarts it and says what is pending"
    )]
    AnnouncerCrashed(String),
}

/// What went wrong with the speaker's ledger.
#[derive(Debug, thiserror::Error)]
#[error("speaker ledger {path}: {action} failed: {source}")]
pub struct HeardError {
    path: PathBuf,
    action: &'static str,
    source: rusqlite::Error,
}

/// The speaker's ledger: the ids of the payments it was told about, and which it said.
pub struct Heard {
    conn: Connection,
    path: PathBuf,
}

const HEARD_SCHEMA: &str = "
CREATE TABLE IF NOT EXISTS heard (
    id           TEXT PRIMARY KEY,
    amount_fen   INTEGER NOT NULL CHECK (amount_fen >= 0),
    received_at  INTEGER NOT NULL,
    announced_at INTEGER,
    wallet       TEXT NOT NULL DEFAULT 'wechat'
);
CREATE TABLE IF NOT EXISTS meta (
    key   TEXT PRIMARY KEY,
    value TEXT NOT NULL
);
";

impl Heard {
    /// Opens (or creates) the ledger at `path`, owner-only: it says what the shop earned.
    pub fn open(path: &Path) -> Result<Heard, HeardError> {
        let err = |action| {
            move |source| HeardError {
                path: path.to_path_buf(),
                action,
                source,
            }
        };
        create_private(path);
        let conn = Connection::open(path).map_err(err("opening"))?;
        conn.busy_timeout(Duration::from_secs(5))
            .map_err(err("opening"))?;
        conn.query_row("PRAGMA journal_mode = WAL", [], |r| r.get::<_, String>(0))
            .map_err(err("opening"))?;
        conn.pragma_update(None, "synchronous", "FULL")
            .map_err(err("opening"))?;
        conn.execute_batch(HEARD_SCHEMA)
            .map_err(err("creating the tables"))?;
        migrate(&conn).map_err(err("upgrading the tables"))?;
        for companion in ["-wal", "-shm"] {
            let mut name = path.as_os_str().to_owned();
            name.push(companion);
            create_private(Path::new(&name));
        }
        Ok(Heard {
            conn,
            path: path.to_path_buf(),
        })
    }

    fn err(&self, action: &'static str) -> impl FnOnce(rusqlite::Error) -> HeardError + '_ {
        move |source| HeardError {
            path: self.path.clone(),
            action,
            source,
        }
    }

    /// The speaker's client id at the broker: made once, then kept, so that the broker's
    /// persistent session (and the messages it holds while the speaker reconnects) is found
    /// again, and two speakers never share one.
    pub fn client_id(&self) -> Result<String, HeardError> {
        let fresh = crate::mqtt::random_client_id("paysay-speaker");
        self.conn
            .execute(
                "INSERT INTO meta (key, value) VALUES ('client_id', ?1) ON CONFLICT DO NOTHING",
                params![fresh],
            )
            .map_err(self.err("storing the client id"))?;
        self.conn
            .query_row("SELECT value FROM meta WHERE key = 'client_id'", [], |r| {
                r.get(0)
            })
            .map_err(self.err("reading the client id"))
    }

    /// Stores a payment's id unless it is known. The amount is stored as it is or not at
    /// all (an error), never clamped: what is said and what is recorded are one number.
    pub fn record(&self, p: &Payment) -> Result<Recorded, HeardError> {
        let inserted = self
            .conn
            .execute(
                "INSERT INTO heard (id, amount_fen, wallet, received_at) VALUES (?1, ?2, ?3, ?4)
                 ON CONFLICT DO NOTHING",
                params![p.id, p.amount_fen, p.wallet.as_str(), crate::now_unix()],
            )
            .map_err(self.err("recording a payment"))?;
        Ok(if inserted == 1 {
            Recorded::New
        } else {
            Recorded::Duplicate
        })
    }

    /// The payment was said.
    pub fn mark_announced(&self, id: &str) -> Result<(), HeardError> {
        self.conn
            .execute(
                "UPDATE heard SET announced_at = ?2 WHERE id = ?1",
                params![id, crate::now_unix()],
            )
            .map_err(self.err("marking a payment announced"))?;
        Ok(())
    }

    /// Payments received but not said (a stop or a crash in between), oldest first.
    pub fn unannounced(&self) -> Result<Vec<Payment>, HeardError> {
        let mut stmt = self
            .conn
            .prepare(
                "SELECT id, amount_fen, wallet FROM heard WHERE announced_at IS NULL ORDER BY rowid",
            )
            .map_err(self.err("reading the backlog"))?;
        let rows = stmt
            .query_map([], |r| {
                Ok(Payment {
                    id: r.get(0)?,
                    amount_fen: r.get(1)?,
                    // Written by `record` from a `Wallet`: anything else is a hand edit.
                    wallet: r.get::<_, String>(2)?.parse().unwrap_or(Wallet::WeChat),
                })
            })
            .map_err(self.err("reading the backlog"))?;
        rows.collect::<Result<_, _>>()
            .map_err(self.err("reading the backlog"))
    }

    /// Whether `id` was said (for tests and `paysay doctor`).
    pub fn announced(&self, id: &str) -> Result<bool, HeardError> {
        self.conn
            .query_row(
                "SELECT announced_at IS NOT NULL FROM heard WHERE id = ?1",
                params![id],
                |r| r.get(0),
            )
            .optional()
            .map(|v| v.unwrap_or(false))
            .map_err(self.err("reading a payment"))
    }
}

/// Brings a ledger of an older paysay up to date; `user_version` says how far it is.
/// Version 1 added `wallet` (a speaker from before Alipay said every payment as WeChat).
fn migrate(conn: &Connection) -> rusqlite::Result<()> {
    let version: i64 = conn.query_row("PRAGMA user_version", [], |r| r.get(0))?;
    if version < 1 {
        let has_wallet: bool = conn.query_row(
            "SELECT COUNT(*) > 0 FROM pragma_table_info('heard') WHERE name = 'wallet'",
            [],
            |r| r.get(0),
        )?;
        if !has_wallet {
            conn.execute_batch(
                "ALTER TABLE heard ADD COLUMN wallet TEXT NOT NULL DEFAULT 'wechat'",
            )?;
        }
        conn.pragma_update(None, "user_version", 1)?;
    }
    Ok(())
}

/// Creates `path` owner-only before SQLite does (SQLite gives -wal and -shm the database's
/// mode), and tightens an existing one.
fn create_private(path: &Path) {
    if let Some(dir) = path.parent().filter(|d| !d.as_os_str().is_empty()) {
        let _ = paths::create_private_dir_all(dir);
    }
    if let Err(e) = paths::create_private_file(path) {
        tracing::warn!(path = %path.display(), error = %e, "cannot make the speaker ledger owner-only");
    }
}

/// A payment as the speaker hears of it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Payment {
    pub id: String,
    pub amount_fen: u64,
    /// Said with that wallet's template; WeChat when the event does not say.
    pub wallet: Wallet,
}

impl Spoken for Payment {
    fn wallet(&self) -> Wallet {
        self.wallet
    }

    fn amount_fen(&self) -> u64 {
        self.amount_fen
    }

    fn id(&self) -> &str {
        &self.id
    }
}

/// The fields of the MQTT payload the speaker reads; the rest is for other receivers.
#[derive(Debug, Deserialize)]
struct Payload {
    id: String,
    amount_fen: Option<u64>,
    money: Option<String>,
    wallet: Option<String>,
}

/// Why a message on the topic is not a payment the speaker can say.
#[derive(Debug, thiserror::Error)]
pub enum PayloadError {
    #[error("{0} bytes, more than any payment event ({MAX_PAYLOAD_BYTES})")]
    TooLarge(usize),
    #[error(transparent)]
    Signature(#[from] SignatureError),
    #[error("not a payment event: {0}")]
    Json(#[from] serde_json::Error),
    #[error("the id is empty or longer than {MAX_ID_LEN} characters")]
    Id,
    #[error("no amount (amount_fen or money)")]
    NoAmount,
    #[error("bad money: {0}")]
    Money(String),
    #[error("amount_fen {amount_fen} and money {money:?} are not the same amount")]
    Disagree { amount_fen: u64, money: String },
    #[error("{} yuan is more than any payment can be ({} at most)", Yuan(*.0), Yuan(MAX_PAYMENT_FEN))]
    Amount(u64),
    #[error(transparent)]
    Wallet(#[from] crate::payment::UnknownWallet),
}

impl PayloadError {
    /// Whether the message may be an attempt to make the counter say money that did not
    /// come (logged as a refusal), rather than something that is no payment at all.
    fn is_refusal(&self) -> bool {
        matches!(
            self,
            PayloadError::Signature(_) | PayloadError::Disagree { .. } | PayloadError::Amount(_)
        )
    }
}

/// Reads a payment out of a message on the topic: first its size, then, with `secret`, its
/// signature, then the payment ([`parse_payload`]).
pub fn read_message(bytes: &[u8], secret: Option<&[u8]>) -> Result<Payment, PayloadError> {
    if bytes.len() > MAX_PAYLOAD_BYTES {
        return Err(PayloadError::TooLarge(bytes.len()));
    }
    if let Some(secret) = secret {
        mqtt::verify_payload(secret, bytes)?;
    }
    parse_payload(bytes)
}

/// Reads a payment out of an MQTT payload: paysay's event, or anything with an `id` and
/// `amount_fen` or `money` (`"12.50"`), refusing an amount no payment can be.
pub fn parse_payload(bytes: &[u8]) -> Result<Payment, PayloadError> {
    let payload: Payload = serde_json::from_slice(bytes)?;
    if payload.id.is_empty() || payload.id.chars().count() > MAX_ID_LEN {
        return Err(PayloadError::Id);
    }
    let money = |money: &str| parse_yuan(money).map_err(|e| PayloadError::Money(e.to_string()));
    let amount_fen = match (payload.amount_fen, payload.money) {
        // Cloud speakers on the topic say `money`: both must be the one amount.
        (Some(fen), Some(text)) if money(&text)? != fen => {
            return Err(PayloadError::Disagree {
                amount_fen: fen,
                money: text,
            });
        }
        (Some(fen), _) => fen,
        (None, Some(text)) => money(&text)?,
        (None, None) => return Err(PayloadError::NoAmount),
    };
    if amount_fen > MAX_PAYMENT_FEN {
        return Err(PayloadError::Amount(amount_fen));
    }
    let wallet = match payload.wallet {
        Some(name) => name.parse()?,
        None => Wallet::WeChat,
    };
    Ok(Payment {
        id: payload.id,
        amount_fen,
        wallet,
    })
}

/// The ledger, shared by the subscriber (records) and the announcer (marks said). SQLite
/// calls are short; they run on the blocking pool.
#[derive(Clone)]
struct SharedHeard(Arc<Mutex<Heard>>);

impl SharedHeard {
    fn lock(&self) -> MutexGuard<'_, Heard> {
        // SQLite's transactions keep the file whole whatever a panicking holder did.
        self.0.lock().unwrap_or_else(|e| e.into_inner())
    }

    async fn call<T: Send + 'static>(
        &self,
        f: impl FnOnce(&Heard) -> Result<T, HeardError> + Send + 'static,
    ) -> Option<Result<T, HeardError>> {
        let heard = self.clone();
        tokio::task::spawn_blocking(move || f(&heard.lock()))
            .await
            .ok()
    }
}

impl Record for SharedHeard {
    type Payment = Payment;

    async fn heard(&self, payment: &Payment, clip: &Clip) {
        let id = payment.id.clone();
        match self.call(move |h| h.mark_announced(&id)).await {
            Some(Ok(())) => {}
            Some(Err(e)) => {
                tracing::error!(error = %e, "payment announced, but the ledger could not record it")
            }
            None => {
                tracing::error!("payment announced, but the ledger task failed before recording it")
            }
        }
        tracing::info!(
            id = %Escaped(&payment.id),
            amount = %Yuan(payment.amount_fen),
            wallet = payment.wallet.as_str(),
            text = %clip.text,
            voice = clip.backend,
            composed = clip.is_composed(),
            "payment announced"
        );
    }
}

/// `paysay speaker`, ready to run: `Speaker::new(config, paths).run(shutdown).await`.
pub struct Speaker {
    config: Config,
    paths: Paths,
    player: Option<PlayerHandle>,
    speech: Option<Speech>,
}

impl Speaker {
    pub fn new(config: Config, paths: Paths) -> Speaker {
        Speaker {
            config,
            paths,
            player: None,
            speech: None,
        }
    }

    /// Speaks with `speech` instead of `[speech]`'s voices (tests).
    pub fn speech(mut self, speech: Speech) -> Speaker {
        self.speech = Some(speech);
        self
    }

    /// Plays through `player` instead of `[audio]`'s device (`--dry-run`, tests).
    pub fn player(mut self, player: PlayerHandle) -> Speaker {
        self.player = Some(player);
        self
    }

    /// The speaker's ledger file in `paths`' state dir.
    pub fn ledger_path(paths: &Paths) -> PathBuf {
        paths.state_dir.join("speaker.sqlite3")
    }

    /// Runs until `shutdown` is cancelled; the announcement under way is finished first.
    ///
    /// Stops with [`SpeakerError::AnnouncerCrashed`] if the announcer ends by itself (a
    /// panic): the payments it has not said stay unsaid in the ledger, and the restart the
    /// service manager then does says them.
    pub async fn run(self, shutdown: CancellationToken) -> Result<(), SpeakerError> {
        let mqtt = self.config.mqtt.clone().ok_or(SpeakerError::NoMqtt)?;
        self.paths
            .prepare_state_dir()
            .map_err(|source| SpeakerError::StateDir {
                path: self.paths.state_dir.clone(),
                source,
            })?;
        let heard = Heard::open(&Speaker::ledger_path(&self.paths))?;
        let client_id = heard.client_id()?;
        let backlog = heard.unannounced()?;
        let heard = SharedHeard(Arc::new(Mutex::new(heard)));
        let speech = match self.speech {
            Some(speech) => speech,
            None => Speech::from_config(&self.config.speech, self.paths.tts_cache_dir())?,
        };
        let player = match self.player {
            Some(player) => player,
            None => Player::spawn(&self.config.audio)?,
        };
        let mut options = crate::mqtt::options(&mqtt, &client_id, false)?;
        // Acknowledged only once recorded: a crash before that gets the message again.
        options
            .set_manual_acks(true)
            .set_max_packet_size(MAX_INCOMING_PACKET, MAX_OUTGOING_PACKET);
        let (queue, queue_rx) = mpsc::unbounded_channel();
        if !backlog.is_empty() {
            tracing::warn!(
                count = backlog.len(),
                "payments received but not yet announced; announcing them now"
            );
        }
        for payment in backlog {
            // The receiver is right here: the send cannot fail.
            let _ = queue.send(Announcement::Payment(payment));
        }
        // No reload in the speaker: the sender only has to outlive the announcer.
        let speech = Arc::new(speech);
        crate::speech::spawn_bank_build(&speech);
        let (_speech, speech_rx) = watch::channel(speech);
        // Its own token, cancelled once the subscriber has stopped: an announcer that ends
        // before that has crashed, never merely seen the shutdown first.
        let stop_announcer = CancellationToken::new();
        let mut announcer = tokio::spawn(
            Announcer {
                speech: speech_rx,
                player: player.clone(),
                record: heard.clone(),
                queue: queue_rx,
                shutdown: stop_announcer.clone(),
                // Nobody watches the speaker's state: publishing it costs nothing.
                live: Live::default(),
            }
            .run(),
        );
        let watchdog = tokio::spawn(watchdog());
        readiness::ready(&format!("connecting to the MQTT broker {}", mqtt.url));
        let subscriber = Subscriber {
            options,
            broker: mqtt.url.clone(),
            topic: mqtt.topic.clone(),
            secret: mqtt.secret.clone(),
            heard,
            queue,
            subscribed: AtomicBool::new(false),
        };
        let crashed = tokio::select! {
            () = subscriber.run(&shutdown) => None,
            ended = &mut announcer => Some(
                ended.err().map_or_else(|| "it returned".to_string(), |e| e.to_string()),
            ),
        };
        readiness::stopping();
        stop_announcer.cancel();
        watchdog.abort();
        if crashed.is_none()
            && let Err(e) = announcer.await
        {
            tracing::error!(error = %e, "the announcer failed while stopping");
        }
        player.shutdown().await;
        if let Some(why) = crashed {
            return Err(SpeakerError::AnnouncerCrashed(why));
        }
        tracing::info!("stopped");
        Ok(())
    }
}

/// systemd's watchdog, when the unit asks for one.
async fn watchdog() {
    let Some(period) = readiness::watchdog_period() else {
        return;
    };
    let mut interval = tokio::time::interval(period);
    loop {
        interval.tick().await;
        readiness::watchdog();
    }
}

/// Receives payments from the broker: subscribes on each connect, records each id, and
/// queues the new ones for the announcer.
struct Subscriber {
    options: rumqttc::MqttOptions,
    broker: String,
    topic: String,
    /// `[mqtt] secret`: only payments signed with it are said.
    secret: Option<String>,
    heard: SharedHeard,
    queue: mpsc::UnboundedSender<Announcement<Payment>>,
    /// Whether a subscription was acknowledged yet (said once).
    subscribed: AtomicBool,
}

impl Subscriber {
    async fn run(&self, shutdown: &CancellationToken) {
        let mut backoff = Backoff::new(MIN_RECONNECT, MAX_RECONNECT);
        let mut outage = Outage::default();
        loop {
            // A fresh client per connection: nothing of a dead connection is sent on the new.
            let (client, mut events) = AsyncClient::new(self.options.clone(), REQUEST_CAPACITY);
            let error = tokio::select! {
                _ = shutdown.cancelled() => return,
                e = self.serve(&client, &mut events, &mut backoff, &mut outage) => e,
            };
            outage.failed(&self.broker, &error);
            readiness::status(&format!(
                "MQTT broker {} unreachable; retrying",
                self.broker
            ));
            tokio::select! {
                _ = shutdown.cancelled() => return,
                _ = tokio::time::sleep(backoff.next_delay()) => {}
            }
        }
    }

    async fn serve(
        &self,
        client: &AsyncClient,
        events: &mut EventLoop,
        backoff: &mut Backoff,
        outage: &mut Outage,
    ) -> rumqttc::ConnectionError {
        let mut up_since: Option<tokio::time::Instant> = None;
        let mut acks = Failing::default();
        loop {
            let polled = events.poll().await;
            if polled.is_ok() {
                outage.holding(&self.broker);
            }
            match polled {
                Ok(Event::Incoming(Incoming::ConnAck(_))) => {
                    up_since = Some(tokio::time::Instant::now());
                    outage.connected(&self.broker);
                    readiness::status(&format!("listening on {} at {}", self.topic, self.broker));
                    if let Err(e) = client.try_subscribe(&self.topic, QoS::AtLeastOnce) {
                        tracing::error!(error = %e, "cannot subscribe to the payment topic");
                    }
                }
                // Said once; the reconnects after it are the outage's to tell.
                Ok(Event::Incoming(Incoming::SubAck(_)))
                    if !self.subscribed.swap(true, Ordering::Relaxed) =>
                {
                    tracing::info!(topic = %Escaped(&self.topic), "subscribed to the payment topic");
                }
                Ok(Event::Incoming(Incoming::SubAck(_))) => {
                    tracing::debug!(topic = %Escaped(&self.topic), "subscribed to the payment topic again");
                }
                Ok(Event::Incoming(Incoming::Publish(publish))) => {
                    self.receive(&publish).await;
                    match client.try_ack(&publish) {
                        Ok(()) => {
                            if let Some(failed) = acks.worked() {
                                tracing::info!(failed, "MQTT messages are acknowledged again");
                            }
                        }
                        Err(e) if acks.failed() => {
                            tracing::warn!(error = %e, "cannot acknowledge an MQTT message; the broker sends it again (said once until acknowledging works again)");
                        }
                        Err(e) => tracing::debug!(error = %e, "cannot acknowledge an MQTT message"),
                    }
                }
                Ok(_) => {}
                Err(e) => {
                    if up_since.is_some_and(|t| t.elapsed() >= mqtt::STABLE) {
                        backoff.reset();
                    }
                    return e;
                }
            }
        }
    }

    /// One message: a new payment is recorded and queued; a known one, or a message that
    /// is no payment, is logged and dropped.
    async fn receive(&self, publish: &Publish) {
        let secret = self.secret.as_deref().map(str::as_bytes);
        let payment = match read_message(&publish.payload, secret) {
            Ok(payment) => payment,
            Err(e) => return skipped(publish, &e),
        };
        let record = payment.clone();
        match self.heard.call(move |h| h.record(&record)).await {
            Some(Ok(Recorded::Duplicate | Recorded::Merged)) => {
                tracing::info!(id = %Escaped(&payment.id), "payment already announced; skipped");
                return;
            }
            Some(Ok(Recorded::New)) => {}
            // Said without a record: better twice (after a restart) than never.
            Some(Err(e)) => {
                tracing::error!(error = %e, "cannot record a payment; announcing it anyway")
            }
            None => tracing::error!("the ledger task failed; announcing the payment anyway"),
        }
        tracing::info!(id = %Escaped(&payment.id), amount = %Yuan(payment.amount_fen), wallet = payment.wallet.as_str(), "payment received");
        if self.queue.send(Announcement::Payment(payment)).is_err() {
            // The announcer has ended: `run` sees it and stops; the payment, recorded and
            // not marked said, is said at the next start.
            tracing::error!("the announcer has stopped; the payment is said at the next start");
        }
    }
}

/// One log line for a message that is not said: its size alone when it is too large, the
/// start of what it says otherwise (escaped: it comes from whoever published it).
fn skipped(publish: &Publish, e: &PayloadError) {
    let topic = Escaped(&publish.topic);
    if let PayloadError::TooLarge(bytes) = e {
        tracing::warn!(%topic, bytes, limit = MAX_PAYLOAD_BYTES, "oversized MQTT message skipped");
        return;
    }
    let shown = String::from_utf8_lossy(&publish.payload);
    let shown: String = shown.chars().take(200).collect();
    let (error, payload) = (Escaped(e), Escaped(&shown));
    if e.is_refusal() {
        tracing::warn!(%topic, %error, %payload, "MQTT payment refused");
    } else {
        tracing::warn!(%topic, %error, %payload, "malformed MQTT payment skipped");
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn payloads_from_paysay_and_cloud_systems_are_read() {
        let p = parse_payload(br#"{"id":"abc","amount_fen":1250,"money":"12.50"}"#).unwrap();
        assert_eq!(
            p,
            Payment {
                id: "abc".into(),
                amount_fen: 1250,
                wallet: Wallet::WeChat,
            }
        );
        let p = parse_payload(br#"{"id":"x1","money":"0.01"}"#).unwrap();
        assert_eq!(p.amount_fen, 1);
        let p = parse_payload(br#"{"id":"x2","amount_fen":5,"wallet":"alipay"}"#).unwrap();
        assert_eq!(p.wallet, Wallet::Alipay);
        for bad in [
            &br#"{"money":"1.00"}"#[..],
            br#"{"id":"","money":"1.00"}"#,
            br#"{"id":"a"}"#,
            br#"{"id":"a","money":"12.345"}"#,
            br#"{"id":"a","amount_fen":-1}"#,
            br#"{"id":"a","amount_fen":18446744073709551616}"#,
            br#"{"id":"a","amount_fen":1,"wallet":"paypal"}"#,
            b"not json",
        ] {
            assert!(
                parse_payload(bad).is_err(),
                "{}",
                String::from_utf8_lossy(bad)
            );
        }
    }

    #[test]
    fn amounts_no_payment_can_be_are_refused() {
        let at_most = format!(r#"{{"id":"a","amount_fen":{MAX_PAYMENT_FEN}}}"#);
        assert_eq!(
            parse_payload(at_most.as_bytes()).unwrap().amount_fen,
            MAX_PAYMENT_FEN
        );
        for beyond in [
            &br#"{"id":"a","amount_fen":10000000001}"#[..],
            br#"{"id":"a","amount_fen":18446744073709551615}"#,
            br#"{"id":"a","money":"100000000.01"}"#,
        ] {
            assert!(
                matches!(parse_payload(beyond), Err(PayloadError::Amount(_))),
                "{}",
                String::from_utf8_lossy(beyond)
            );
        }
        assert!(matches!(
            parse_payload(br#"{"id":"a","amount_fen":1,"money":"10000.00"}"#),
            Err(PayloadError::Disagree { .. })
        ));
        assert!(parse_payload(br#"{"id":"a","amount_fen":1250,"money":"12.5"}"#).is_ok());
    }

    #[test]
    fn a_message_is_checked_for_size_and_signature_before_it_is_read() {
        let event = br#"{"id":"a","amount_fen":100}"#;
        let signed = mqtt::sign_payload(b"s", event);
        assert!(read_message(event, None).is_ok());
        assert!(
            read_message(&signed, None).is_ok(),
            "a signature is one more field"
        );
        assert!(read_message(&signed, Some(b"s")).is_ok());
        assert!(matches!(
            read_message(event, Some(b"s")),
            Err(PayloadError::Signature(SignatureError::Unsigned))
        ));
        assert!(matches!(
            read_message(&signed, Some(b"t")),
            Err(PayloadError::Signature(SignatureError::Wrong))
        ));
        let big = vec![b' '; MAX_PAYLOAD_BYTES + 1];
        assert!(matches!(
            read_message(&big, None),
            Err(PayloadError::TooLarge(_))
        ));
    }

    fn payment(id: &str, amount_fen: u64) -> Payment {
        Payment {
            id: id.into(),
            amount_fen,
            wallet: Wallet::WeChat,
        }
    }

    #[test]
    fn a_payments_wallet_is_kept_for_the_backlog_and_older_ledgers_are_upgraded() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("speaker.sqlite3");
        // A speaker ledger as paysay wrote it before wallets: no column, user_version 0.
        let old = Connection::open(&path).unwrap();
        old.execute_batch(
            "CREATE TABLE heard (id TEXT PRIMARY KEY, amount_fen INTEGER NOT NULL CHECK (amount_fen >= 0),
                                 received_at INTEGER NOT NULL, announced_at INTEGER);
             INSERT INTO heard VALUES ('old', 100, 0, NULL);",
        )
        .unwrap();
        drop(old);
        let heard = Heard::open(&path).unwrap();
        let alipay = Payment {
            wallet: Wallet::Alipay,
            ..payment("new", 200)
        };
        heard.record(&alipay).unwrap();
        assert_eq!(
            heard.unannounced().unwrap(),
            vec![payment("old", 100), alipay]
        );
        drop(heard);
        assert!(Heard::open(&path).is_ok(), "opened again, upgraded once");
    }

    #[test]
    fn amounts_are_recorded_as_they_are_or_not_at_all() {
        let dir = tempfile::tempdir().unwrap();
        let heard = Heard::open(&dir.path().join("speaker.sqlite3")).unwrap();
        assert!(heard.record(&payment("max", u64::MAX)).is_err());
        assert_eq!(
            heard.record(&payment("a", MAX_PAYMENT_FEN)).unwrap(),
            Recorded::New
        );
        assert_eq!(heard.unannounced().unwrap()[0].amount_fen, MAX_PAYMENT_FEN);
    }

    #[test]
    fn ids_are_recorded_once_and_the_client_id_is_kept() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("state/speaker.sqlite3");
        let heard = Heard::open(&path).unwrap();
        let id = heard.client_id().unwrap();
        assert!(id.starts_with("paysay-speaker-"), "{id}");
        assert_eq!(heard.record(&payment("a", 100)).unwrap(), Recorded::New);
        assert_eq!(
            heard.record(&payment("a", 100)).unwrap(),
            Recorded::Duplicate
        );
        assert_eq!(heard.unannounced().unwrap().len(), 1);
        heard.mark_announced("a").unwrap();
        drop(heard);
        let again = Heard::open(&path).unwrap();
        assert_eq!(again.client_id().unwrap(), id);
        assert!(again.announced("a").unwrap());
        assert!(again.unannounced().unwrap().is_empty());
        #[cfg(unix)]
        {
            use std::os::unix::fs::PermissionsExt;
            let mode = std::fs::metadata(&path).unwrap().permissions().mode();
            assert_eq!(mode & 0o777, 0o600);
        }
    }
}
