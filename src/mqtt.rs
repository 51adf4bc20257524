//! MQTT: payments published to a broker (the `[mqtt]` sink), for cloud payment speakers and
//! for `paysay speaker` at other counters, which subscribe to the same topic.
//!
//! rumqttc speaks the protocol; what paysay adds is the one thing its client API does not
//! give: knowing *which* publish the broker acknowledged. [`MqttSink::deliver`] answers `Ok`
//! only once the broker's PUBACK for that very publish has come, so the outbox's
//! at-least-once is real rather than fire-and-forget.
//!
//! How a PUBACK is matched to its delivery: each connection gets a fresh rumqttc client and
//! event loop (so no request, packet id or half-sent publish of a dead connection survives
//! into the next one: the outbox sends those again). Within one connection the event loop
//! takes publishes off its channel in the order they were handed to it, and reports each as
//! `Outgoing::Publish(pkid)` as it writes it; a delivery is queued in that same order under
//! one lock, so the n-th such report is the n-th queued delivery, and the `PubAck(pkid)`
//! that follows resolves it. A connection that ends drops its queue, and every delivery
//! still waiting on it fails as [`DeliveryError::Transient`].

use std::collections::{HashMap, VecDeque};
use std::future::Future;
use std::ops::ControlFlow;
use std::sync::{Arc, Mutex, MutexGuard};
use std::time::Duration;

use hmac::Mac;
use rumqttc::{
    AsyncClient, ConnectionError, Event, EventLoop, Incoming, LastWill, MqttOptions, Outgoing, QoS,
    TlsConfiguration, Transport,
};
use tokio::sync::oneshot;
use tokio::task::JoinHandle;
use tokio_util::sync::CancellationToken;

use crate::backoff::Backoff;
use crate::config::{Broker, MqttConfig};
use crate::events::{DeliveryError, DeliveryFuture, PaymentEvent, Sink};
use crate::signing::{hex, hmac_sha256};
use crate::text::Escaped;

/// Retained on `<topic>/status` while the daemon is connected.
pub const ONLINE: &str = "online";
/// Retained on `<topic>/status` after a clean stop, and the Last Will the broker publishes
/// when the daemon vanishes (a crash, a power cut, a cut cable).
pub const OFFLINE: &str = "offline";

/// Requests the client may hold before the event loop takes them: a full channel means the
/// connection is stuck, and a delivery then fails fast rather than queueing without end.
pub(crate) const REQUEST_CAPACITY: usize = 64;
/// First wait before reconnecting; doubles per failed attempt.
pub(crate) const MIN_RECONNECT: Duration = Duration::from_millis(200);
/// Longest wait between attempts while the broker is down.
pub(crate) const MAX_RECONNECT: Duration = Duration::from_secs(30);
/// How long a clean stop waits for the broker to take `offline`.
/// A connection the broker ends soon after accepting it (another client with the same id,
/// an ACL that drops it) must not reset the wait before the next try, or the two would
/// knock each other off several times a second: only one that stayed up this long does.
pub(crate) const STABLE: Duration = Duration::from_secs(10);
const STOP_TIMEOUT: Duration = Duration::from_secs(3);

/// Why an MQTT client could not be set up.
#[derive(Debug, thiserror::Error)]
pub enum MqttError {
    #[error("[mqtt] url {url}: {problem}")]
    Url { url: String, problem: String },
    #[error("cannot set up TLS for {url}: {source}")]
    Tls { url: String, source: rustls::Error },
}

/// The rumqttc options for `config`'s broker: the address, TLS for `mqtts://`, the login and
/// the keep-alive. `clean_session` false keeps the broker holding QoS 1 messages for this
/// client id while it reconnects (the speaker); true makes each connection start afresh.
pub fn options(
    config: &MqttConfig,
    broker: &Broker,
    client_id: &str,
    clean_session: bool,
) -> Result<MqttOptions, MqttError> {
    let Broker { host, port, tls } = broker.clone();
    let mut options = MqttOptions::new(client_id, host, port);
    options
        .set_keep_alive(Duration::from_secs(config.keep_alive_secs))
        .set_clean_session(clean_session)
        .set_request_channel_capacity(REQUEST_CAPACITY);
    if tls {
        options.set_transport(Transport::tls_with_config(TlsConfiguration::Rustls(
            tls_config(&config.url)?,
        )));
    }
    if let Some(username) = &config.username {
        options.set_credentials(username, config.password.clone().unwrap_or_default());
    }
    Ok(options)
}

/// rustls with ring (the provider reqwest already brings in) and the web's root
/// certificates, as a browser would check the broker.
fn tls_config(url: &str) -> Result<Arc<rustls::ClientConfig>, MqttError> {
    let roots = rustls::RootCertStore {
        roots: webpki_roots::TLS_SERVER_ROOTS.to_vec(),
    };
    let provider = Arc::new(rustls::crypto::ring::default_provider());
    let config = rustls::ClientConfig::builder_with_provider(provider)
        .with_safe_default_protocol_versions()
        .map_err(|source| MqttError::Tls {
            url: url.to_string(),
            source,
        })?
        .with_root_certificates(roots)
        .with_no_client_auth();
    Ok(Arc::new(config))
}

/// The log of a broker going away and coming back: one warning when it goes (not one per
/// attempt, which would fill the journal while a broker is down for a night), one line when
/// it is back. Back means a connection that held [`STABLE`]: a broker that accepts and
/// drops every connection (two clients with one id, an ACL) is still away, in the debug
/// log only.
#[derive(Debug, Default)]
pub struct Outage {
    /// When the broker went away; `None` while it is up (or before the first try).
    since: Option<tokio::time::Instant>,
    /// When the current connection was accepted.
    up_at: Option<tokio::time::Instant>,
    /// Connections tried or dropped since it went away.
    tries: u64,
    /// Whether any connection was accepted yet (the first one is said at once).
    ever_connected: bool,
}

impl Outage {
    /// The connection failed or could not be made.
    pub fn failed(&mut self, broker: &str, error: &ConnectionError) {
        self.up_at = None;
        self.tries += 1;
        if self.since.is_none() {
            self.since = Some(tokio::time::Instant::now());
            self.tries = 1;
            tracing::warn!(broker, error = %Escaped(crate::error_chain(error)), "MQTT broker unreachable; reconnecting in the background");
        } else {
            tracing::debug!(broker, error = %Escaped(crate::error_chain(error)), "MQTT broker still unreachable");
        }
    }

    /// The broker accepted a connection.
    pub fn connected(&mut self, broker: &str) {
        self.up_at = Some(tokio::time::Instant::now());
        if std::mem::replace(&mut self.ever_connected, true) || self.since.is_some() {
            tracing::debug!(broker, "connected to the MQTT broker again");
        } else {
            tracing::info!(broker, "connected to the MQTT broker");
        }
    }

    /// The connection is still up (called on each of its events): once it has held
    /// [`STABLE`], an outage is over, said once.
    pub fn holding(&mut self, broker: &str) {
        let held = self.up_at.is_some_and(|t| t.elapsed() >= STABLE);
        if let Some(since) = self.since.take_if(|_| held) {
            tracing::info!(
                broker,
                down_s = since.elapsed().as_secs(),
                tries = std::mem::take(&mut self.tries),
                "MQTT broker reachable again"
            );
        }
    }
}

/// A fresh random client id, `paysay-` and 12 hex digits: two daemons (or a daemon and its
/// restart, while the broker still holds the old connection) never push each other off.
pub fn random_client_id(prefix: &str) -> String {
    format!("{prefix}-{:012x}", rand::random::<u64>() & 0xffff_ffff_ffff)
}

/// How a signed payload starts: the signature is the JSON object's first member, so that
/// it sits at a fixed place (bytes 8 to 72) and the signed bytes are simply the rest.
const SIGNED_PREFIX: &[u8] = b"{\"sig\":\"";
/// Hex digits of an HMAC-SHA256.
const SIG_HEX_LEN: usize = 64;

/// Why a payload is not signed with `[mqtt] secret`.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum SignatureError {
    #[error("it is not signed (it does not start with {{\"sig\":\"<64 hex digits>\",)")]
    Unsigned,
    #[error("its signature is not made with [mqtt] secret")]
    Wrong,
}

/// `payload`, a JSON object, signed with `secret`: `{"sig":"<hex>",` and then the rest of
/// the object, where `<hex>` is the lower-case hex HMAC-SHA256 of `payload` itself (the
/// webhook's signing code, over the payload alone). MQTT 3.1.1 has no headers, so the
/// signature travels in the payload; as a member of the same object it leaves every field
/// where a receiver that does not check it reads it (`money` for cloud speakers), and at
/// a fixed place a receiver that checks finds it without a JSON library: bytes 8 to 72 are
/// the signature, and `{` followed by bytes 74 on is what was signed.
pub fn sign_payload(secret: &[u8], payload: &[u8]) -> Vec<u8> {
    let sig = hex(&hmac_sha256(secret, &[payload]).finalize().into_bytes());
    // An empty object would leave a trailing comma; an event never is one.
    let rest = payload.strip_prefix(b"{").unwrap_or(payload);
    [SIGNED_PREFIX, sig.as_bytes(), b"\",", rest].concat()
}

/// Checks that `payload` was signed by [`sign_payload`] with `secret` (in constant time).
pub fn verify_payload(secret: &[u8], payload: &[u8]) -> Result<(), SignatureError> {
    let signed = payload
        .strip_prefix(SIGNED_PREFIX)
        .filter(|rest| rest.len() >= SIG_HEX_LEN)
        .map(|rest| rest.split_at(SIG_HEX_LEN))
        .and_then(|(sig, rest)| Some((unhex(sig)?, rest.strip_prefix(b"\",")?)));
    let Some((sig, rest)) = signed else {
        return Err(SignatureError::Unsigned);
    };
    hmac_sha256(secret, &[b"{", rest])
        .verify_slice(&sig)
        .map_err(|_| SignatureError::Wrong)
}

/// Hex digits to bytes; `None` unless every character is one.
fn unhex(digits: &[u8]) -> Option<Vec<u8>> {
    let value = |d: u8| char::from(d).to_digit(16);
    digits
        .chunks(2)
        .map(|pair| match pair {
            [hi, lo] => Some((value(*hi)? * 16 + value(*lo)?) as u8),
            _ => None,
        })
        .collect()
}

/// Who is waiting for a publish to be acknowledged: a delivery, or nobody (the status).
type Waiter = Option<oneshot::Sender<()>>;

/// The connection in use, while there is one.
struct Link {
    client: AsyncClient,
    /// Publishes handed to the client and not yet reported written, in hand-over order.
    queued: VecDeque<Waiter>,
    /// Written and waiting for their PUBACK, by packet id.
    unacked: HashMap<u16, Waiter>,
}

impl Link {
    /// Hands a QoS 1 publish to the client; the receiver resolves on its PUBACK, and fails
    /// if the connection ends first.
    fn publish(
        &mut self,
        topic: &str,
        retain: bool,
        payload: Vec<u8>,
    ) -> Result<oneshot::Receiver<()>, rumqttc::ClientError> {
        let (tx, rx) = oneshot::channel();
        self.client
            .try_publish(topic, QoS::AtLeastOnce, retain, payload)?;
        self.queued.push_back(Some(tx));
        Ok(rx)
    }

    /// The event loop wrote a publish (or, after an out-of-order acknowledgement, holds it
    /// back until `pkid` is free: it is then written under the same id).
    fn written(&mut self, pkid: u16) {
        if self.unacked.contains_key(&pkid) {
            return;
        }
        match self.queued.pop_front() {
            Some(waiter) => {
                self.unacked.insert(pkid, waiter);
            }
            None => tracing::warn!(pkid, "MQTT publish written that paysay did not queue"),
        }
    }

    /// The broker's PUBACK.
    fn acked(&mut self, pkid: u16) {
        if let Some(Some(waiter)) = self.unacked.remove(&pkid) {
            // The delivery may have timed out meanwhile: then nobody is listening.
            let _ = waiter.send(());
        }
    }
}

/// What the connection task shares with deliveries.
#[derive(Clone, Default)]
struct Shared(Arc<Mutex<Option<Link>>>);

impl Shared {
    fn lock(&self) -> MutexGuard<'_, Option<Link>> {
        // The guarded state is a queue of senders: a panic cannot leave it half-updated in
        // a way that matters more than a lost acknowledgement.
        self.0.lock().unwrap_or_else(|e| e.into_inner())
    }
}

/// The `[mqtt]` sink: payments published with QoS 1 to `topic`, the payload
/// [`PaymentEvent::to_mqtt_json`]. Connects and reconnects by itself in a background task,
/// with `<topic>/status` retained `online` on each connect and `offline` as the Last Will.
///
/// Dropping it cuts the connection without a goodbye, so the broker publishes the Last Will;
/// [`MqttSink::shutdown`] publishes `offline` itself and disconnects cleanly.
pub struct MqttSink {
    topic: String,
    /// `[mqtt] secret`: each payload is signed with it ([`sign_payload`]).
    secret: Option<String>,
    status_topic: String,
    broker: String,
    ack_timeout: Duration,
    shared: Shared,
    stop: CancellationToken,
    task: Mutex<Option<JoinHandle<()>>>,
}

impl MqttSink {
    /// Starts connecting to `config`'s broker in the background (on the current tokio
    /// runtime); deliveries fail as transient until the broker has accepted the connection.
    pub fn start(config: &MqttConfig, broker: &Broker) -> Result<MqttSink, MqttError> {
        let client_id = config
            .client_id
            .clone()
            .unwrap_or_else(|| random_client_id("paysay"));
        let mut options = options(config, broker, &client_id, true)?;
        let status_topic = config.status_topic();
        options.set_last_will(LastWill::new(
            &status_topic,
            OFFLINE,
            QoS::AtLeastOnce,
            true,
        ));
        let shared = Shared::default();
        let stop = CancellationToken::new();
        let mut connection = Connection {
            status_topic: status_topic.clone(),
            shared: shared.clone(),
        };
        let (broker, token) = (config.url.clone(), stop.clone());
        let task = tokio::spawn(async move {
            connect_and_serve(&options, &broker, &mut connection, &token).await;
        });
        Ok(MqttSink {
            topic: config.topic.clone(),
            secret: config.secret.clone(),
            status_topic,
            broker: config.url.clone(),
            ack_timeout: Duration::from_secs(config.ack_timeout_secs),
            shared,
            stop,
            task: Mutex::new(Some(task)),
        })
    }

    /// Whether the broker has accepted the connection in use (for logs and tests).
    pub fn is_connected(&self) -> bool {
        self.shared.lock().is_some()
    }

    /// Publishes retained `offline` (waiting briefly for its PUBACK), disconnects cleanly
    /// and ends the background task.
    pub async fn shutdown(&self) {
        let offline = self
            .shared
            .lock()
            .as_mut()
            .and_then(|link| link.publish(&self.status_topic, true, OFFLINE.into()).ok());
        if let Some(acked) = offline {
            let _ = tokio::time::timeout(STOP_TIMEOUT, acked).await;
        }
        if let Some(link) = self.shared.lock().as_ref() {
            let _ = link.client.try_disconnect();
        }
        let task = self.task.lock().unwrap_or_else(|e| e.into_inner()).take();
        if let Some(task) = task {
            let mut task = task;
            // The task ends once the DISCONNECT is written; a broker that never reads it
            // does not hold up paysay's exit.
            if tokio::time::timeout(STOP_TIMEOUT, &mut task).await.is_err() {
                task.abort();
            }
        }
        self.stop.cancel();
    }

    async fn publish_event(&self, event: &PaymentEvent) -> Result<(), DeliveryError> {
        let payload = event.to_mqtt_json().to_string().into_bytes();
        let payload = match &self.secret {
            Some(secret) => sign_payload(secret.as_bytes(), &payload),
            None => payload,
        };
        let acked = {
            let mut link = self.shared.lock();
            let Some(link) = link.as_mut() else {
                return Err(DeliveryError::Transient(format!(
                    "not connected to the MQTT broker {}",
                    self.broker
                )));
            };
            link.publish(&self.topic, false, payload).map_err(|e| {
                DeliveryError::Transient(format!("MQTT client cannot take the publish: {e}"))
            })?
        };
        match tokio::time::timeout(self.ack_timeout, acked).await {
            Ok(Ok(())) => Ok(()),
            Ok(Err(_)) => Err(DeliveryError::Transient(format!(
                "the connection to {} ended before the broker acknowledged",
                self.broker
            ))),
            Err(_) => Err(DeliveryError::Transient(format!(
                "{} did not acknowledge within {} s",
                self.broker,
                self.ack_timeout.as_secs()
            ))),
        }
    }
}

impl Sink for MqttSink {
    fn name(&self) -> &str {
        crate::config::MQTT_SINK
    }

    fn deliver<'a>(&'a self, event: &'a PaymentEvent) -> DeliveryFuture<'a> {
        Box::pin(self.publish_event(event))
    }
}

impl Drop for MqttSink {
    fn drop(&mut self) {
        // No DISCONNECT: the broker sees the connection vanish and publishes the Last Will.
        self.stop.cancel();
        if let Some(task) = self.task.lock().unwrap_or_else(|e| e.into_inner()).take() {
            task.abort();
        }
    }
}

/// What one side does on a connection that [`connect_and_serve`] keeps up: the sink tracks
/// the acknowledgements of its publishes, `paysay speaker` subscribes and receives.
pub(crate) trait Session: Send {
    /// The broker accepted a connection; `client` sends on it until it ends.
    fn connected(&mut self, client: &AsyncClient);
    /// Any other event of the connection. `Break` ends it for good: paysay said goodbye.
    fn event(
        &mut self,
        client: &AsyncClient,
        event: Event,
    ) -> impl Future<Output = ControlFlow<()>> + Send;
    /// The connection failed or could not be made; the next try comes after a backoff.
    fn lost(&mut self);
}

/// Connects to the broker and keeps connecting until `stop` (or the session says
/// goodbye): a fresh client and event loop per connection, so that nothing of a dead
/// connection is sent on the next; capped exponential backoff between tries, reset only by
/// a connection that held [`STABLE`]; an outage logged once when it starts and once when
/// it ends ([`Outage`]).
pub(crate) async fn connect_and_serve(
    options: &MqttOptions,
    broker: &str,
    session: &mut impl Session,
    stop: &CancellationToken,
) {
    let mut backoff = Backoff::new(MIN_RECONNECT, MAX_RECONNECT);
    let mut outage = Outage::default();
    loop {
        let (client, mut events) = AsyncClient::new(options.clone(), REQUEST_CAPACITY);
        let ended = tokio::select! {
            _ = stop.cancelled() => return,
            ended = serve(&client, &mut events, broker, session, &mut backoff, &mut outage) => ended,
        };
        session.lost();
        match ended {
            ControlFlow::Break(()) => return,
            ControlFlow::Continue(e) => outage.failed(broker, &e),
        }
        tokio::select! {
            _ = stop.cancelled() => return,
            _ = tokio::time::sleep(backoff.next_delay()) => {}
        }
    }
}

/// Polls one connection's event loop until it fails (`Continue`, with why) or the session
/// ends it (`Break`).
async fn serve(
    client: &AsyncClient,
    events: &mut EventLoop,
    broker: &str,
    session: &mut impl Session,
    backoff: &mut Backoff,
    outage: &mut Outage,
) -> ControlFlow<(), ConnectionError> {
    let mut up_since: Option<tokio::time::Instant> = None;
    loop {
        let event = match events.poll().await {
            Ok(event) => event,
            Err(e) => {
                if up_since.is_some_and(|t| t.elapsed() >= STABLE) {
                    backoff.reset();
                }
                return ControlFlow::Continue(e);
            }
        };
        outage.holding(broker);
        if let Event::Incoming(Incoming::ConnAck(_)) = event {
            up_since = Some(tokio::time::Instant::now());
            outage.connected(broker);
            session.connected(client);
        } else if session.event(client, event).await.is_break() {
            return ControlFlow::Break(());
        }
    }
}

/// The sink's side of a connection: tracks acknowledgements, says `online`.
struct Connection {
    status_topic: String,
    shared: Shared,
}

impl Session for Connection {
    /// The connection is up: deliveries may use it, and `<topic>/status` says `online`.
    fn connected(&mut self, client: &AsyncClient) {
        let mut link = Link {
            client: client.clone(),
            queued: VecDeque::new(),
            unacked: HashMap::new(),
        };
        if let Err(e) = link.publish(&self.status_topic, true, ONLINE.into()) {
            tracing::warn!(error = %e, "cannot publish the MQTT online status");
        }
        // Nobody waits for the status's acknowledgement.
        if let Some(waiter) = link.queued.back_mut() {
            *waiter = None;
        }
        *self.shared.lock() = Some(link);
    }

    async fn event(&mut self, _client: &AsyncClient, event: Event) -> ControlFlow<()> {
        match event {
            Event::Outgoing(Outgoing::Publish(pkid) | Outgoing::AwaitAck(pkid)) => {
                if let Some(link) = self.shared.lock().as_mut() {
                    link.written(pkid);
                }
            }
            Event::Incoming(Incoming::PubAck(ack)) => {
                if let Some(link) = self.shared.lock().as_mut() {
                    link.acked(ack.pkid);
                }
            }
            Event::Outgoing(Outgoing::Disconnect) => return ControlFlow::Break(()),
            _ => {}
        }
        ControlFlow::Continue(())
    }

    /// Deliveries still waiting on the connection fail now (their senders drop).
    fn lost(&mut self) {
        self.shared.lock().take();
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// A link whose event loop is never polled: `try_publish` only fills its channel.
    fn link() -> (Link, EventLoop) {
        let (client, events) = AsyncClient::new(MqttOptions::new("t", "127.0.0.1", 1), 8);
        let link = Link {
            client,
            queued: VecDeque::new(),
            unacked: HashMap::new(),
        };
        (link, events)
    }

    #[tokio::test]
    async fn each_puback_resolves_the_publish_written_under_its_id() {
        let (mut link, _events) = link();
        let mut first = link.publish("t", false, b"1".to_vec()).unwrap();
        let mut second = link.publish("t", false, b"2".to_vec()).unwrap();
        link.written(7);
        link.written(8);
        link.acked(8);
        assert_eq!(second.try_recv(), Ok(()));
        assert!(first.try_recv().is_err(), "acked before its PUBACK");
        // A collision report and the later write of the same id are one publish.
        link.written(7);
        link.acked(7);
        assert_eq!(first.try_recv(), Ok(()));
        assert!(link.queued.is_empty() && link.unacked.is_empty());
    }

    #[test]
    fn a_signed_payload_is_the_event_with_its_hmac_first() {
        let event = br#"{"id":"abc","money":"12.50"}"#;
        let signed = sign_payload(b"shop-secret", event);
        // Python: hmac.new(b"shop-secret", b'{"id":"abc","money":"12.50"}', sha256).hexdigest()
        assert_eq!(
            String::from_utf8(signed.clone()).unwrap(),
            r#"{"sig":"f73e7a4a3ca4e515c14d7da592c46afe18b284730aeccfc5e177afa7d2fe7b54","id":"abc","money":"12.50"}"#
        );
        assert_eq!(verify_payload(b"shop-secret", &signed), Ok(()));
        assert_eq!(
            verify_payload(b"other", &signed),
            Err(SignatureError::Wrong)
        );
        let changed = String::from_utf8(signed).unwrap().replace("12.50", "99.50");
        assert_eq!(
            verify_payload(b"shop-secret", changed.as_bytes()),
            Err(SignatureError::Wrong)
        );
        for unsigned in [
            &event[..],
            br#"{"sig":"zz","id":"abc"}"#,
            br#"{"sig":"#,
            b"",
        ] {
            assert_eq!(
                verify_payload(b"shop-secret", unsigned),
                Err(SignatureError::Unsigned)
            );
        }
    }

    #[tokio::test]
    async fn a_dropped_link_fails_its_waiters() {
        let (mut link, _events) = link();
        let waiting = link.publish("t", false, b"1".to_vec()).unwrap();
        link.written(1);
        drop(link);
        assert!(waiting.await.is_err());
    }
}
