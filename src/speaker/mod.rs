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

mod heard;

use std::ops::ControlFlow;
use std::path::PathBuf;
use std::sync::Arc;

use rumqttc::{AsyncClient, Event, Incoming, Publish, QoS};
use serde::Deserialize;
use tokio::sync::{mpsc, watch};
use tokio_util::sync::CancellationToken;

pub use heard::Heard;

use crate::announcer::{Announcement, Announcer, Record, Spoken};
use crate::audio::{AudioError, Player, PlayerHandle};
use crate::config::Config;
use crate::failing::Failing;
use crate::ledger::{LedgerError, Recorded, Shared};
use crate::live::Live;
use crate::money::{MAX_PAYMENT_FEN, Yuan, parse_yuan};
use crate::mqtt::{self, MqttError, SignatureError};
use crate::paths::Paths;
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
    Ledger(#[from] LedgerError),
    #[error("cannot set up speech: {0}")]
    Speech(#[from] TtsError),
    #[error(transparent)]
    Audio(#[from] AudioError),
    #[error(
        "the announcer stopped unexpectedly ({0}); the speaker stops so the service restarts it and says what is pending"
    )]
    AnnouncerCrashed(String),
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

/// The ledger, shared by the subscriber (records) and the announcer (marks said).
type SharedHeard = Shared<Heard>;

impl Record for SharedHeard {
    type Payment = Payment;

    async fn heard(&self, payment: &Payment, clip: &Clip) {
        let id = payment.id.clone();
        if let Err(e) = self.call(move |h| h.mark_announced(&id)).await {
            tracing::error!(error = %e, "payment announced, but the ledger could not record it")
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
        let heard = Shared::new(heard);
        let speech = match self.speech {
            Some(speech) => speech,
            None => Speech::from_config(&self.config.speech, self.paths.tts_cache_dir())?,
        };
        let player = match self.player {
            Some(player) => player,
            None => Player::spawn(&self.config.audio)?,
        };
        let broker = mqtt.broker().map_err(|problem| MqttError::Url {
            url: mqtt.url.clone(),
            problem,
        })?;
        let mut options = crate::mqtt::options(&mqtt, &broker, &client_id, false)?;
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
        let mut subscriber = Subscriber {
            broker: mqtt.url.clone(),
            topic: mqtt.topic.clone(),
            secret: mqtt.secret.clone(),
            heard,
            queue,
            subscribed: false,
            acks: Failing::default(),
        };
        let crashed = tokio::select! {
            () = mqtt::connect_and_serve(&options, &mqtt.url, &mut subscriber, &shutdown) => None,
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
    broker: String,
    topic: String,
    /// `[mqtt] secret`: only payments signed with it are said.
    secret: Option<String>,
    heard: SharedHeard,
    queue: mpsc::UnboundedSender<Announcement<Payment>>,
    /// Whether a subscription was acknowledged yet (said once).
    subscribed: bool,
    /// Acknowledgements failing on this connection (said once until they work again).
    acks: Failing,
}

impl mqtt::Session for Subscriber {
    fn connected(&mut self, client: &AsyncClient) {
        self.acks = Failing::default();
        readiness::status(&format!("listening on {} at {}", self.topic, self.broker));
        if let Err(e) = client.try_subscribe(&self.topic, QoS::AtLeastOnce) {
            tracing::error!(error = %e, "cannot subscribe to the payment topic");
        }
    }

    async fn event(&mut self, client: &AsyncClient, event: Event) -> ControlFlow<()> {
        match event {
            // Said once; the reconnects after it are the outage's to tell.
            Event::Incoming(Incoming::SubAck(_))
                if !std::mem::replace(&mut self.subscribed, true) =>
            {
                tracing::info!(topic = %Escaped(&self.topic), "subscribed to the payment topic");
            }
            Event::Incoming(Incoming::SubAck(_)) => {
                tracing::debug!(topic = %Escaped(&self.topic), "subscribed to the payment topic again");
            }
            Event::Incoming(Incoming::Publish(publish)) => {
                self.receive(&publish).await;
                self.acknowledge(client, &publish);
            }
            _ => {}
        }
        ControlFlow::Continue(())
    }

    fn lost(&mut self) {
        readiness::status(&format!(
            "MQTT broker {} unreachable; retrying",
            self.broker
        ));
    }
}

impl Subscriber {
    /// Tells the broker the message arrived (once it is recorded, or skipped for good).
    fn acknowledge(&mut self, client: &AsyncClient, publish: &Publish) {
        match client.try_ack(publish) {
            Ok(()) => {
                if let Some(failed) = self.acks.worked() {
                    tracing::info!(failed, "MQTT messages are acknowledged again");
                }
            }
            Err(e) if self.acks.failed() => {
                tracing::warn!(error = %e, "cannot acknowledge an MQTT message; the broker sends it again (said once until acknowledging works again)");
            }
            Err(e) => tracing::debug!(error = %e, "cannot acknowledge an MQTT message"),
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
            Ok(Recorded::Duplicate | Recorded::Merged) => {
                tracing::info!(id = %Escaped(&payment.id), "payment already announced; skipped");
                return;
            }
            Ok(Recorded::New) => {}
            // Said without a record: better twice (after a restart) than never.
            Err(e) => {
                tracing::error!(error = %e, "cannot record a payment; announcing it anyway")
            }
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
}
