//! Everything the simulated server remembers: the QR codes and their phone-side state, the
//! one web session of the account, its message log with the sync keys issued into it, the
//! address book, queued faults and the record of requests.
//!
//! All of it sits behind one `std::sync::Mutex` that is never held across an `.await`, so the
//! control handle works from sync and async code alike; a `watch` channel wakes long-polls
//! whenever something changes.

use std::collections::{HashMap, VecDeque};
use std::sync::{Arc, Mutex, MutexGuard};
use std::time::Duration;

use serde_json::Value;
use tokio::sync::watch;
use tokio_util::sync::CancellationToken;

use super::chaos::{Chaos, SimStats};
use super::clock::Clock;
use super::contacts::{self, Entry, Kind};
use super::messages::{self, RunningTotal};
use super::{Endpoint, Fault, Misbehaviour, RecordedRequest, SimConfig, ids};
use wechat_web::{Contact, KeyVal, Message, SyncKey};

/// The most requests kept for `requests()`, so a long demo does not grow without bound.
const MAX_RECORDED: usize = 10_000;

/// State shared by the server's handlers and the control handle.
pub(crate) struct Shared {
    pub config: SimConfig,
    world: Mutex<World>,
    changes: watch::Sender<u64>,
    pub cancel: CancellationToken,
}

impl Shared {
    pub fn new(config: SimConfig) -> Arc<Shared> {
        let world = World::new(&config);
        Arc::new(Shared {
            config,
            world: Mutex::new(world),
            changes: watch::Sender::new(0),
            cancel: CancellationToken::new(),
        })
    }

    fn lock(&self) -> MutexGuard<'_, World> {
        // A panic elsewhere must not take the simulator down with it: the data is still usable.
        self.world
            .lock()
            .unwrap_or_else(|poisoned| poisoned.into_inner())
    }

    /// Reads (or changes without waking anyone) the world.
    pub fn with<R>(&self, f: impl FnOnce(&mut World) -> R) -> R {
        f(&mut self.lock())
    }

    /// Changes the world and wakes every long-poll so it looks again.
    pub fn update<R>(&self, f: impl FnOnce(&mut World) -> R) -> R {
        let result = f(&mut self.lock());
        self.changes.send_modify(|n| *n = n.wrapping_add(1));
        result
    }

    /// Holds until `check` returns something, `limit` passes, or the simulator shuts down;
    /// after the time limit `check` gets one last look.
    pub async fn wait_for<T>(
        &self,
        limit: Duration,
        mut check: impl FnMut(&mut World) -> Option<T>,
    ) -> Option<T> {
        let deadline = tokio::time::Instant::now() + limit;
        loop {
            // Subscribe before looking, so a change between the look and the wait is not lost.
            let mut changed = self.changes.subscribe();
            if let Some(found) = self.with(&mut check) {
                return Some(found);
            }
            tokio::select! {
                _ = changed.changed() => {}
                _ = tokio::time::sleep_until(deadline) => return self.with(&mut check),
                _ = self.cancel.cancelled() => return None,
            }
        }
    }
}

/// Where a QR code stands on the phone.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum QrStatus {
    Waiting,
    Scanned,
    Confirmed,
    /// The ticket was exchanged (or refused): the uuid is spent.
    Used,
    Expired,
}

/// One QR login attempt (jslogin or push login).
#[derive(Debug, Clone)]
pub struct Qr {
    pub status: QrStatus,
    /// A poll has already answered 201, so later polls hold instead of repeating it.
    pub scan_reported: bool,
    /// The client has polled it, so it knows the uuid (and could show the QR code).
    pub polled: bool,
    pub ticket: String,
    /// Unix time of the scan, for the redirect's `scan=`.
    pub scanned_at: i64,
}

/// Phone actions asked for before any QR existed; applied to the next one.
#[derive(Debug, Clone, Copy, Default)]
pub struct PhoneIntent {
    pub scan: bool,
    pub confirm: bool,
}

/// One delivered (or to-be-delivered) message.
#[derive(Debug, Clone)]
pub struct LogEntry {
    pub msg: Message,
    /// Address-book index of the sender, whose per-login user name is filled in when the
    /// message is served; `None` for raw messages, served exactly as pushed.
    pub sender: Option<usize>,
    /// Envelope fields beyond [`Message`]'s (status-notify fields).
    pub extras: Vec<(&'static str, Value)>,
    /// Address-book entries first seen with this message: sent in `ModContactList`.
    pub new_contacts: Vec<usize>,
    /// Served exactly as this instead, when set ([`Simulator::push_raw_message`]); `msg`
    /// then holds only its MsgId and MsgType, for the log's own bookkeeping.
    ///
    /// [`Simulator::push_raw_message`]: super::Simulator::push_raw_message
    pub raw: Option<Value>,
}

/// The web session: what the ticket handed out, and the message stream.
#[derive(Debug, Clone)]
pub struct Session {
    pub sid: String,
    pub skey: String,
    /// Skeys replaced by webwxinit: refused from then on.
    pub old_skeys: Vec<String>,
    /// As in the XML: already percent-encoded once.
    pub pass_ticket: String,
    pub data_ticket: String,
    pub user_name: String,
    /// Set by `logout` or webwxlogout: the retcode/Ret every later call gets.
    pub ended: Option<i64>,
    /// webwxinit has been called; messages before that wait in `World::held`.
    pub initialized: bool,
    pub log: Vec<LogEntry>,
    /// Every SyncKey / SyncCheckKey string issued, with the log position it stands for.
    pub issued: HashMap<String, usize>,
    /// The furthest log position a webwxsync has asked from: the client sending a key
    /// proves it got everything before it. A key handed out in an answer the client never
    /// read (a lost connection) proves nothing.
    pub acked: usize,
    key_base: u64,
    /// Offset of webwxgetcontact's `Seq` cursor, so Seq values look like the server's.
    pub seq_base: u64,
}

impl Session {
    /// A SyncKey standing for log position `pos`: init's four keys, or the longer list
    /// webwxsync hands out (keys 1 and 2 move with the position, the others with time).
    pub fn sync_key(&mut self, pos: usize, long: bool, now: i64) -> SyncKey {
        let b = self.key_base;
        let p = pos as u64;
        let now = now.max(0) as u64;
        let pairs: Vec<(u64, u64)> = if long {
            vec![
                (1, b + p),
                (2, b + p + 37),
                (3, b + 11),
                (11, b + p + 5),
                (13, b - 2000),
                (201, now),
                (203, now.saturating_sub(450)),
                (1000, now.saturating_sub(1200)),
                (1001, now.saturating_sub(1170)),
            ]
        } else {
            vec![(1, b + p), (2, b + p + 37), (3, b + 11), (1000, 0)]
        };
        let key = SyncKey::new(
            pairs
                .into_iter()
                .map(|(key, val)| KeyVal { key, val })
                .collect(),
        );
        self.issued.insert(key.to_query(), pos);
        key
    }
}

/// A text the client sent with webwxsendmsg.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct SentMessage {
    /// The `ToUserName`, as sent (`filehelper`, or this login's user name of a contact).
    pub to: String,
    /// That contact's nickname (文件传输助手 for `filehelper`).
    pub to_nick: String,
    pub content: String,
    /// `LocalID` (= `ClientMsgId`): 17 digits.
    pub local_id: String,
    /// When it was sent, on the simulator's clock (unix seconds).
    pub at: i64,
}

/// Today's collections, for the 汇总 line of the next notice (China time).
#[derive(Debug, Clone, Default)]
pub struct Daily {
    pub date: Option<time::Date>,
    pub count: u64,
    pub total_fen: u64,
}

/// The whole simulated world.
pub(crate) struct World {
    pub uin: u64,
    pub book: Vec<Entry>,
    /// The own account's contact record; its user name changes per login.
    pub me: Contact,
    pub qrs: HashMap<String, Qr>,
    pub current_qr: Option<String>,
    pub phone: PhoneIntent,
    pub refusal: Option<(i64, String)>,
    /// Login polls are answered at once instead of held (a misbehaving server).
    pub instant_login_poll: bool,
    pub session: Option<Session>,
    /// Issued at the first login; long-lived, like the browser's.
    pub auth_ticket: Option<String>,
    pub uvid: String,
    /// Messages that arrived while no initialized session could receive them.
    pub held: Vec<LogEntry>,
    pub faults: HashMap<Endpoint, VecDeque<Fault>>,
    /// Random faults, when `SimConfig::fault_rate` asks for them.
    chaos: Option<Chaos>,
    pub stats: SimStats,
    pub clock: Clock,
    pub requests: VecDeque<RecordedRequest>,
    pub daily: Daily,
    /// The clerk copies' own running total (see [`World::count_clerk_copy`]).
    pub clerk_daily: Daily,
    /// Messages per webwxsync (from the config).
    pub sync_page_size: usize,
    /// Chats webwxinit lists as recent (from the config).
    pub recent_chats: usize,
    /// A persistent misbehaviour the tests switched on.
    pub misbehaviour: Misbehaviour,
    /// The texts sent with webwxsendmsg.
    pub sent: Vec<SentMessage>,
    /// While set, webwxsendmsg refuses with this `Ret`.
    pub send_refusal: Option<i64>,
}

impl World {
    fn new(config: &SimConfig) -> World {
        World {
            uin: ids::uin(),
            book: contacts::initial(config.extra_contacts),
            me: Contact {
                user_name: contacts::user_name(Kind::Person),
                nick_name: "小店老板".to_string(),
                contact_flag: 0,
                ..Contact::default()
            },
            qrs: HashMap::new(),
            current_qr: None,
            phone: PhoneIntent::default(),
            refusal: None,
            instant_login_poll: false,
            session: None,
            auth_ticket: None,
            uvid: ids::hex(64),
            held: Vec::new(),
            faults: HashMap::new(),
            chaos: Chaos::new(config.fault_rate, config.fault_seed),
            stats: SimStats::default(),
            clock: Clock::new(config.clock),
            requests: VecDeque::new(),
            daily: Daily::default(),
            clerk_daily: Daily::default(),
            sync_page_size: config.sync_page_size,
            recent_chats: config.recent_chats,
            misbehaviour: Misbehaviour::None,
            sent: Vec::new(),
            send_refusal: None,
        }
    }

    /// A new QR uuid, made current, with any phone action asked for in advance applied.
    pub fn issue_qr(&mut self) -> String {
        // A uuid the client never polled (its answer was lost) it cannot have shown.
        let current = self.current_qr.as_ref().and_then(|u| self.qrs.get(u));
        if current.is_some_and(|q| {
            q.polled && matches!(q.status, QrStatus::Scanned | QrStatus::Confirmed)
        }) {
            self.stats.valid_qrs_replaced += 1;
        }
        let uuid = ids::uuid();
        self.qrs.insert(
            uuid.clone(),
            Qr {
                status: QrStatus::Waiting,
                scan_reported: false,
                polled: false,
                ticket: ids::ticket(),
                scanned_at: 0,
            },
        );
        self.current_qr = Some(uuid.clone());
        let intent = std::mem::take(&mut self.phone);
        if intent.scan {
            self.scan(&uuid);
        }
        if intent.confirm {
            self.confirm(&uuid);
        }
        uuid
    }

    /// The current QR, if it can still be scanned or confirmed.
    fn live_qr(&self) -> Option<String> {
        let uuid = self.current_qr.clone()?;
        let qr = self.qrs.get(&uuid)?;
        matches!(qr.status, QrStatus::Waiting | QrStatus::Scanned).then_some(uuid)
    }

    /// The phone scans the current QR, or the next one if none is live.
    pub fn scan_current(&mut self) {
        match self.live_qr() {
            Some(uuid) => self.scan(&uuid),
            None => self.phone.scan = true,
        }
    }

    /// The phone confirms the current QR, or the next one if none is live.
    pub fn confirm_current(&mut self) {
        match self.live_qr() {
            Some(uuid) => self.confirm(&uuid),
            None => self.phone.confirm = true,
        }
    }

    pub fn scan(&mut self, uuid: &str) {
        if let Some(qr) = self.qrs.get_mut(uuid) {
            if qr.status == QrStatus::Waiting {
                qr.status = QrStatus::Scanned;
                qr.scanned_at = self.clock.now();
            }
        }
    }

    /// Confirming an unscanned QR is what a push login looks like: no scan step.
    pub fn confirm(&mut self, uuid: &str) {
        if let Some(qr) = self.qrs.get_mut(uuid) {
            if matches!(qr.status, QrStatus::Waiting | QrStatus::Scanned) {
                if qr.scanned_at == 0 {
                    qr.scanned_at = self.clock.now();
                }
                qr.status = QrStatus::Confirmed;
            }
        }
    }

    pub fn expire_current(&mut self) {
        if let Some(qr) = self.current_qr.clone().and_then(|u| self.qrs.get_mut(&u)) {
            qr.status = QrStatus::Expired;
        }
    }

    /// A successful ticket exchange: a new session replaces any old one, and every user name
    /// is drawn anew.
    pub fn login(&mut self) -> &Session {
        contacts::rename_all(&mut self.book);
        self.me.user_name = contacts::user_name(Kind::Person);
        if self.auth_ticket.is_none() {
            self.auth_ticket = Some(ids::auth_ticket());
        }
        // Messages still waiting in an old session's log are not lost for the shop: hand
        // the undelivered ones to the new session.
        let leftover = self.undelivered_of_old_session();
        self.held.splice(0..0, leftover);
        self.stats.logins += 1;
        let session = Session {
            sid: ids::wxsid(),
            skey: ids::skey(),
            old_skeys: Vec::new(),
            pass_ticket: ids::pass_ticket_encoded(),
            data_ticket: ids::data_ticket(),
            user_name: self.me.user_name.clone(),
            ended: None,
            initialized: false,
            log: Vec::new(),
            issued: HashMap::new(),
            acked: 0,
            key_base: 600_000_000 + u64::from(rand::random::<u32>() % 100_000_000),
            seq_base: 600_000_000 + u64::from(rand::random::<u32>() % 100_000_000),
        };
        self.session.insert(session)
    }

    /// The messages that never reached the client: those after the furthest position any
    /// webwxsync has asked from.
    fn undelivered_of_old_session(&mut self) -> Vec<LogEntry> {
        let Some(old) = self.session.take() else {
            return Vec::new();
        };
        // Status-notify messages belong to their session.
        old.log
            .into_iter()
            .skip(old.acked)
            .filter(|e| e.msg.msg_type != wechat_web::msg_type::STATUS_NOTIFY)
            .collect()
    }

    /// Adds a message to the stream: to the session's log if a client can sync it, else
    /// held for the next initialized session.
    pub fn deliver(&mut self, entry: LogEntry) {
        match self.session.as_mut() {
            Some(s) if s.initialized && s.ended.is_none() => s.log.push(entry),
            _ => self.held.push(entry),
        }
    }

    /// The index of the address-book entry named `nick`, creating a stranger (known only
    /// through webwxbatchgetcontact) if nobody has that name.
    pub fn person(&mut self, nick: &str) -> (usize, bool) {
        if let Some(i) = self.book.iter().position(|e| e.contact.nick_name == nick) {
            return (i, false);
        }
        self.book
            .push(contacts::entry(Kind::Person, nick, 0, false));
        (self.book.len() - 1, true)
    }

    /// The index of the official account named `nick`.
    pub fn official(&mut self, nick: &str) -> usize {
        match self
            .book
            .iter()
            .position(|e| e.contact.nick_name == nick && e.contact.is_official_account())
        {
            Some(i) => i,
            None => {
                self.book.push(contacts::official(nick));
                self.book.len() - 1
            }
        }
    }

    /// The impostor: an ordinary, listed contact whose nickname is 微信支付.
    pub fn impostor(&mut self) -> usize {
        match self
            .book
            .iter()
            .position(|e| e.contact.nick_name == contacts::WXPAY && e.contact.verify_flag == 0)
        {
            Some(i) => i,
            None => {
                self.book
                    .push(contacts::entry(Kind::Person, contacts::WXPAY, 0, true));
                self.book.len() - 1
            }
        }
    }

    /// Counts a collection into today's running total (China time, as the phone shows, on
    /// the simulator's clock).
    pub fn count_collection(&mut self, amount_fen: u64) -> RunningTotal {
        let today = self.china_date();
        count_into(&mut self.daily, today, amount_fen)
    }

    /// Counts a clerk's copy into the clerk line's own running total: the copies an
    /// account gets as a clerk are another shop's collections, counted apart from the
    /// account's own 微信支付 notices.
    pub fn count_clerk_copy(&mut self, amount_fen: u64) -> RunningTotal {
        let today = self.china_date();
        count_into(&mut self.clerk_daily, today, amount_fen)
    }

    fn china_date(&self) -> time::Date {
        let china = time::UtcOffset::from_hms(8, 0, 0).unwrap_or(time::UtcOffset::UTC);
        time::OffsetDateTime::from_unix_timestamp(self.now())
            .unwrap_or(time::OffsetDateTime::UNIX_EPOCH)
            .to_offset(china)
            .date()
    }

    /// The message as served: sender and receiver named with this login's user names.
    pub fn served(&self, entry: &LogEntry) -> Value {
        if let Some(raw) = &entry.raw {
            return raw.clone();
        }
        let mut msg = entry.msg.clone();
        if let Some(sender) = entry.sender.and_then(|i| self.book.get(i)) {
            msg.from_user_name = sender.contact.user_name.clone();
            msg.to_user_name = self.me.user_name.clone();
        }
        messages::message_json(&msg, &entry.extras)
    }

    /// Looks up a contact by this login's user name (the own account included).
    pub fn contact_by_user_name(&self, user_name: &str) -> Option<&Contact> {
        if user_name == self.me.user_name {
            return Some(&self.me);
        }
        self.book
            .iter()
            .map(|e| &e.contact)
            .find(|c| c.user_name == user_name)
    }

    /// The fault for this request: the next one queued by `inject`, else a random draw.
    pub fn take_fault(&mut self, endpoint: Endpoint) -> Option<Fault> {
        let queued = self.faults.get_mut(&endpoint).and_then(VecDeque::pop_front);
        queued.or_else(|| self.chaos.as_mut()?.draw(endpoint))
    }

    /// Unix seconds now, on the simulator's clock.
    pub fn now(&self) -> i64 {
        self.clock.now()
    }

    pub fn record(&mut self, request: RecordedRequest) {
        self.stats.count(request.endpoint, request.fault.as_ref());
        if self.requests.len() >= MAX_RECORDED {
            self.requests.pop_front();
        }
        self.requests.push_back(request);
    }
}

/// Adds a collection to `daily`, starting it anew on a new day.
fn count_into(daily: &mut Daily, today: time::Date, amount_fen: u64) -> RunningTotal {
    if daily.date != Some(today) {
        *daily = Daily {
            date: Some(today),
            ..Daily::default()
        };
    }
    daily.count += 1;
    daily.total_fen += amount_fen;
    RunningTotal {
        count: daily.count,
        total_fen: daily.total_fen,
    }
}

/// Unix seconds now on the wall clock, for what the client reads against its own clock
/// (cookie expiry dates).
pub fn wall_clock_now() -> i64 {
    time::OffsetDateTime::now_utc().unix_timestamp()
}

#[cfg(test)]
mod tests {
    use super::*;

    fn entry(body: &str) -> LogEntry {
        LogEntry {
            msg: messages::text(body, 0),
            sender: None,
            extras: Vec::new(),
            new_contacts: Vec::new(),
            raw: None,
        }
    }

    fn bodies(entries: &[LogEntry]) -> Vec<String> {
        entries.iter().map(|e| e.msg.content.clone()).collect()
    }

    /// A webwxsync whose answer was lost issued a key past messages the client never saw:
    /// they must still reach the next session.
    #[test]
    fn a_new_session_gets_what_the_client_never_asked_past() {
        let mut w = World::new(&SimConfig::default());
        let s = w.login();
        assert!(s.ended.is_none());
        if let Some(s) = w.session.as_mut() {
            s.initialized = true;
        }
        for body in ["a", "b", "c"] {
            w.deliver(entry(body));
        }
        let s = w.session.as_mut().unwrap();
        s.sync_key(0, false, 0);
        s.acked = 1; // a webwxsync asked from position 1: "a" was read
        s.sync_key(3, true, 0); // its answer (past "c") never arrived
        w.login();
        assert_eq!(bodies(&w.held), ["b", "c"]);
    }
}
