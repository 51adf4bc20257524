//! A faithful WeChat web server on `127.0.0.1`, because the real one cannot be reached from
//! the machines paysay is built and tested on. It is a second implementation of the server
//! side of `docs/protocol/WECHAT-WEB.md`, not a special case in the client: it speaks the
//! same three dialects (JavaScript assignments, the `<error>` XML ticket, JSON as
//! `text/plain`), sets the same cookies, and refuses what WeChat refuses, so a sloppy client
//! fails here before it fails at a shop counter.
//!
//! Every WeChat host (login, web, push, file) is served on the one base URL: the client maps
//! hosts onto it and keeps paths and queries. The login redirect still names the real host
//! `wx2.qq.com`, and cookies carry the real `Domain`s, so the client's host mapping and its
//! cookie handling are exercised too.
//!
//! # What it checks, and how it refuses
//! - Empty (or non-JSON) POST body: HTTP 200 with an empty body.
//! - JSON calls (webwxinit, webwxstatusnotify, webwxbatchgetcontact, webwxsync) and
//!   webwxgetcontact: cookies `wxuin`, `wxsid`, `webwx_data_ticket` present and this
//!   session's; `pass_ticket` in the query equal to the XML's value after one decoding (so
//!   the client must encode the already-encoded value once more); BaseRequest Uin (number or
//!   string) and Sid this session's, DeviceID `e` + 15 digits. Any of these wrong: `Ret` 1100
//!   with an otherwise all-empty body. Skey (BaseRequest, or `skey=` in the query) not the
//!   current one, including the ticket's skey once webwxinit replaced it: `Ret` 1101.
//!   webwxsync also checks `sid`/`skey` in its query, and refuses a SyncKey it never issued
//!   with 1101. After [`Simulator::logout`]: `Ret` = the given retcode.
//! - synccheck: cookies missing or foreign → retcode 1102; uin/sid/deviceid wrong → 1100;
//!   skey wrong → 1101; a `synckey` never issued → 1101; session ended → its retcode.
//! - The ticket: unknown, spent or unconfirmed ticket, or `fun=new&version=v2` missing →
//!   `<ret>1</ret>`; [`Simulator::refuse_login`] → that ret and message, no cookies.
//! - The login poll: unknown, spent or expired uuid → `window.code=400;`. Held for
//!   [`SimConfig::long_poll`], or answered at once after
//!   [`Simulator::answer_login_polls_at_once`].
//! - jslogin: an appid other than the web client's → `window.QRLogin.code = 400;`.
//! - webwxpushloginurl: disabled, no earlier login, or `uin` not the account's →
//!   `{"ret":"1","msg":"param error"}`.
//! - webwxstatusnotify: `FromUserName` not this login's own user name → `Ret` 1.
//! - webwxsendmsg: besides the JSON checks, `Scene` 0, `Msg.Type` 1, `FromUserName` this
//!   login's own, `ToUserName` a contact of this login (or `filehelper`), `LocalID` equal to
//!   `ClientMsgId` and 17 digits, a non-empty `Content`: else `Ret` 1 (the simulator's
//!   reading). While [`Simulator::refuse_sends`] is on, every send is refused with that `Ret`
//!   (1204/1205: sending too much) and nothing is sent. What was sent:
//!   [`Simulator::sent_messages`].
//!
//! # Sessions and the message stream
//! The account's session lasts until [`Simulator::logout`], webwxlogout, or a new ticket
//! exchange; a restarted client with the saved cookies, keys and SyncKey carries on. Every
//! SyncKey/SyncCheckKey the server issues stands for a position in the session's message log:
//! webwxsync returns what follows the sent key (a stale key gets the same messages again),
//! synccheck answers selector 2 if anything follows, else holds. webwxinit's SyncKey stands
//! for the end of the log, like the real server's: a client that re-inits and adopts that
//! key skips messages it never synced, one that keeps its saved SyncKey gets them. Messages
//! sent before the first webwxinit of a session wait and follow the status-notify message.
//!
//! When a session ends, the messages after the furthest position a webwxsync asked from
//! (those the client cannot have seen) go to the next session, after its status-notify
//! message: a payment made while the shop was logged out is not lost.
//!
//! # Long runs
//! For soak tests, [`SimConfig::auto_login`] has the phone confirm every login by itself
//! (a push login after a [`Simulator::logout`], or a new QR), [`SimConfig::fault_rate`]
//! answers a share of requests with random faults from a seeded generator, and
//! [`SimConfig::clock`] with [`Simulator::advance_clock`] gives the messages a simulated
//! week's times; [`Simulator::stats`] counts what was met.
//!
//! # Misbehaviour
//! Besides one-shot faults, the server can be switched into a persistent misbehaviour
//! with [`Simulator::set_misbehaviour`] (and back with [`Misbehaviour::None`]), for the
//! client's pacing: a synccheck that says "new messages" at once whatever waits
//! ([`Misbehaviour::EndlessSelector`]), a webwxsync whose ContinueFlag never ends
//! ([`Misbehaviour::EndlessContinueFlag`]), and sessions ended at their first synccheck
//! ([`Misbehaviour::InstantLogout`]; with `auto_login: Some(Duration::ZERO)` every
//! re-login is confirmed at once: the storm). [`Simulator::push_raw_message`] puts any
//! JSON on the stream as an `AddMsgList` entry, to send messages of the wrong shape.
//!
//! # Known differences from WeChat
//! JSON object keys come out in alphabetical order (WeChat starts with `BaseResponse`);
//! values and layout (one-space indent) match the captures.
//!
//! Tests and `paysay demo` drive the "phone" through [`Simulator`]: scan and confirm the QR,
//! receive payments, log out, inject faults, and read back what the client sent.
//!
//! Module map: `state` (the world: QR codes, session, message log, sync keys), `contacts`
//! (the address book), `messages` (payment and text messages as the web client gets them),
//! `checks` (what a request must carry), `handlers` (one function per endpoint), `server`
//! (routing, faults, request record), `ids` (the shapes of tokens), `chaos` (random faults
//! and the counts), `clock` (the simulated time).

mod chaos;
mod checks;
mod clock;
mod contacts;
mod handlers;
mod ids;
mod messages;
mod server;
mod state;

use std::net::SocketAddr;
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use tokio::task::JoinHandle;

use state::{LogEntry, Shared};
use wechat_web::{Contact, Message};

pub use chaos::SimStats;
pub use clock::SimClock;
pub use contacts::{CASHIER_ASSISTANT, WXPAY};
pub use messages::escape_app_content;
pub use state::SentMessage;

/// How the simulated server behaves. `Default` is what WeChat does; tests shorten
/// `long_poll`.
#[derive(Debug, Clone)]
pub struct SimConfig {
    /// How long the login poll and synccheck hold when nothing happens (WeChat: ~25 s).
    pub long_poll: Duration,
    /// Contacts per webwxgetcontact page; `Seq` is 0 on the last page.
    pub contact_page_size: usize,
    /// Ordinary people in the address book, besides the specials, the two payment accounts
    /// and three groups.
    pub extra_contacts: usize,
    /// Messages per webwxsync; more pending sets `ContinueFlag`.
    pub sync_page_size: usize,
    /// The phone scans each new QR after this delay and confirms after the same delay again
    /// (a push login's QR is only confirmed), also for every re-login after a logout (for
    /// the demo and soaks); `None` waits for [`Simulator::scan`] / [`Simulator::confirm`].
    pub auto_login: Option<Duration>,
    /// Whether webwxpushloginurl offers a QR-less re-login.
    pub push_login: bool,
    /// How many chats webwxinit lists as recent (the payment accounts are among the first
    /// six). 0 makes the client depend on webwxgetcontact or webwxbatchgetcontact to know
    /// who the payment accounts are, as on a phone whose recent chats are all people.
    pub recent_chats: usize,
    /// The share of requests (0.0–1.0) answered with a random fault instead: HTTP 503 or
    /// 500, a dropped connection, a lost answer ([`Fault::Lost`]) or an empty body, equally
    /// often. Queued [`Simulator::inject`] faults come first. 0.0 (the default): none.
    pub fault_rate: f64,
    /// Seeds the random faults, so a failing run can be replayed fault for fault (as far
    /// as the client sends the same requests).
    pub fault_seed: u64,
    /// The clock messages are stamped with and the day's running total follows; `None`
    /// (the default) is the wall clock. See [`Simulator::advance_clock`].
    pub clock: Option<SimClock>,
}

impl Default for SimConfig {
    fn default() -> Self {
        SimConfig {
            long_poll: Duration::from_secs(25),
            contact_page_size: 50,
            extra_contacts: 20,
            sync_page_size: 20,
            auto_login: None,
            push_login: true,
            recent_chats: 6,
            fault_rate: 0.0,
            fault_seed: 0,
            clock: None,
        }
    }
}

impl SimConfig {
    /// Settings for tests: long-polls hold 200 ms.
    pub fn for_tests() -> Self {
        SimConfig {
            long_poll: Duration::from_millis(200),
            ..SimConfig::default()
        }
    }
}

/// A persistent way for the server to misbehave, until switched off with
/// [`Simulator::set_misbehaviour`]`(Misbehaviour::None)`. What a real server was seen to
/// do, and what a client must survive without spinning.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub enum Misbehaviour {
    /// As WeChat behaves.
    #[default]
    None,
    /// synccheck answers selector 2 at once, whatever waits; webwxsync answers as usual
    /// (with nothing, when nothing waits).
    EndlessSelector,
    /// webwxsync sets ContinueFlag 1 on every page, the last one included.
    EndlessContinueFlag,
    /// Every session ends at its first synccheck, which answers this retcode (e.g. 1101).
    InstantLogout(i64),
}

/// The server's endpoints, to aim faults at and to read the request record by.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum Endpoint {
    /// `GET /jslogin`: a new QR uuid.
    JsLogin,
    /// `GET /cgi-bin/mmwebwx-bin/login`: the QR long-poll.
    LoginPoll,
    /// `GET /cgi-bin/mmwebwx-bin/webwxnewloginpage`: the XML ticket and cookies.
    Ticket,
    /// `POST webwxinit`.
    Init,
    /// `POST webwxstatusnotify`.
    StatusNotify,
    /// `GET webwxgetcontact`.
    GetContact,
    /// `POST webwxbatchgetcontact`.
    BatchGetContact,
    /// `GET synccheck`: the message long-poll.
    SyncCheck,
    /// `POST webwxsync`.
    Sync,
    /// `GET webwxpushloginurl`.
    PushLogin,
    /// `POST webwxlogout`.
    Logout,
    /// `GET /l/<uuid>`: the QR's own URL; opening it scans and confirms (a phone stand-in).
    QrPage,
    /// `POST webwxsendmsg`: a text from the web client.
    SendMsg,
}

/// A one-shot fault, queued per endpoint with [`Simulator::inject`]; the next request to
/// that endpoint gets it. [`SimConfig::fault_rate`] draws the first five kinds at random.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Fault {
    /// This HTTP status with an empty body (as WeChat's 503s after hours). Not processed.
    Status(u16),
    /// The connection closes before any response. Not processed.
    Drop,
    /// The request is processed (state moves on) but the connection closes before the
    /// response: e.g. a webwxsync whose new SyncKey the client never sees.
    Lost,
    /// HTTP 200 with an empty body. Not processed.
    EmptyBody,
    /// Held this long, then processed normally.
    Delay(Duration),
    /// HTTP 200 with this body instead of the real one. Not processed.
    Body(String),
}

/// What the simulator made of a request.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Verdict {
    /// Answered normally.
    Ok,
    /// Refused with this code: `Ret` for JSON calls, `retcode` for synccheck, `<ret>` for
    /// the ticket, `window.code`/`QRLogin.code` for the login endpoints, `ret` for push login.
    Refused(i64),
    /// An empty (or unreadable) POST body: answered HTTP 200 with an empty body.
    EmptyBody,
    /// An injected fault answered instead of the endpoint (see [`RecordedRequest::fault`]).
    Faulted,
    /// No such path.
    NotFound,
}

/// One request the client sent, as the simulator saw it.
#[derive(Debug, Clone)]
pub struct RecordedRequest {
    /// `None` for a path the simulator does not serve.
    pub endpoint: Option<Endpoint>,
    pub method: String,
    pub path: String,
    /// Query pairs, percent-decoded once (as the server reads them).
    pub query: Vec<(String, String)>,
    /// Cookies from the `Cookie` header, as sent.
    pub cookies: Vec<(String, String)>,
    /// The body, as UTF-8 (lossy).
    pub body: String,
    pub verdict: Verdict,
    /// The fault injected into this request, if any.
    pub fault: Option<Fault>,
    /// The HTTP status answered.
    pub status: u16,
    /// The body answered.
    pub response: String,
    /// When the answer was ready, just before it was handed to HTTP: where a latency
    /// measured from "the server answered" starts (the client sees it a little later).
    pub answered_at: Instant,
}

impl RecordedRequest {
    /// A query value by name.
    pub fn query_value(&self, name: &str) -> Option<&str> {
        pair(&self.query, name)
    }

    /// A cookie value by name.
    pub fn cookie(&self, name: &str) -> Option<&str> {
        pair(&self.cookies, name)
    }
}

/// The value of the first pair named `name` (query strings, cookies, form bodies).
fn pair<'a>(pairs: &'a [(String, String)], name: &str) -> Option<&'a str> {
    pairs
        .iter()
        .find(|(k, _)| k == name)
        .map(|(_, v)| v.as_str())
}

/// The session's keys, for assertions.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct SessionInfo {
    pub uin: u64,
    pub sid: String,
    /// The current skey (webwxinit replaces the ticket's).
    pub skey: String,
    /// As the XML carries it: already percent-encoded once.
    pub pass_ticket: String,
    pub data_ticket: String,
    /// The own account's UserName for this login.
    pub user_name: String,
    /// `Some(code)` once the session was ended with that retcode.
    pub ended: Option<i64>,
}

/// The control handle: the simulated phone and a window into the server. Cheap to clone;
/// every clone controls the same server. Methods other than `start`/`shutdown` are plain
/// functions, usable from sync and async code.
#[derive(Clone)]
pub struct Simulator {
    shared: Arc<Shared>,
    addr: SocketAddr,
    server: Arc<Mutex<Option<JoinHandle<()>>>>,
}

impl std::fmt::Debug for Simulator {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Simulator")
            .field("addr", &self.addr)
            .finish()
    }
}

impl Simulator {
    /// Binds `127.0.0.1:0` and serves until [`Simulator::shutdown`].
    pub async fn start(config: SimConfig) -> std::io::Result<Simulator> {
        let shared = Shared::new(config);
        let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await?;
        let addr = listener.local_addr()?;
        let server = tokio::spawn(server::run(listener, Arc::clone(&shared)));
        tracing::debug!(%addr, "WeChat simulator listening");
        Ok(Simulator {
            shared,
            addr,
            server: Arc::new(Mutex::new(Some(server))),
        })
    }

    /// `http://127.0.0.1:PORT`: every WeChat host maps onto this.
    pub fn base_url(&self) -> String {
        format!("http://{}", self.addr)
    }

    /// The QR uuid the last jslogin or push login handed out.
    pub fn current_uuid(&self) -> Option<String> {
        self.shared.with(|w| w.current_qr.clone())
    }

    /// The phone scans the current QR (login poll answers 201). Asked before any QR is live,
    /// it applies to the next one.
    pub fn scan(&self) {
        self.shared.update(|w| w.scan_current());
    }

    /// The phone confirms the login (login poll answers 200 with the redirect). Also
    /// confirms an unscanned QR, as a push login does. Applies to the next QR if none is live.
    pub fn confirm(&self) {
        self.shared.update(|w| w.confirm_current());
    }

    /// The current QR expires: its polls answer 400.
    pub fn expire_qr(&self) {
        self.shared.update(|w| w.expire_current());
    }

    /// The next ticket request answers `<ret>{ret}</ret><message>{message}</message>` and no
    /// session starts (e.g. 1203, 为了你的帐号安全，此微信号不能登录网页微信。).
    pub fn refuse_login(&self, ret: i64, message: &str) {
        self.shared
            .update(|w| w.refusal = Some((ret, message.to_string())));
    }

    /// While `on`, login polls are answered at once (408 when nothing happened) instead of
    /// being held for the long-poll time: a server that would make a careless client poll
    /// in a busy loop.
    pub fn answer_login_polls_at_once(&self, on: bool) {
        self.shared.update(|w| w.instant_login_poll = on);
    }

    /// Ends the session as the phone or the server would: synccheck answers `retcode`,
    /// JSON calls `Ret` = `retcode`. The account stays known for push login.
    pub fn logout(&self, retcode: i64) {
        self.shared.update(|w| {
            if let Some(s) = w.session.as_mut() {
                s.ended = Some(retcode);
            }
        });
    }

    /// Puts a raw message on the stream as given (user names not filled in). Returns its
    /// MsgId.
    pub fn push_message(&self, msg: Message) -> String {
        self.shared
            .update(|w| deliver_into(w, msg, None, Vec::new()))
    }

    /// Puts any JSON on the stream as an `AddMsgList` entry, served exactly as given: for
    /// entries of the wrong shape (`"Content": null`, `"MsgType": "x"`, `"MsgId": null`).
    /// Returns its MsgId, if it has one as a string or a number.
    pub fn push_raw_message(&self, entry: serde_json::Value) -> Option<String> {
        let msg_id = match entry.get("MsgId") {
            Some(serde_json::Value::String(s)) => Some(s.clone()),
            Some(serde_json::Value::Number(n)) => Some(n.to_string()),
            _ => None,
        };
        let msg = Message {
            msg_id: msg_id.clone().unwrap_or_default(),
            msg_type: entry
                .get("MsgType")
                .and_then(serde_json::Value::as_u64)
                .and_then(|t| u32::try_from(t).ok())
                .unwrap_or_default(),
            ..Message::default()
        };
        self.shared.update(|w| {
            w.deliver(LogEntry {
                msg,
                sender: None,
                extras: Vec::new(),
                new_contacts: Vec::new(),
                raw: Some(entry),
            })
        });
        msg_id
    }

    /// Switches the server into a persistent misbehaviour (see [`Misbehaviour`]), or back
    /// to normal with [`Misbehaviour::None`].
    pub fn set_misbehaviour(&self, misbehaviour: Misbehaviour) {
        self.shared.update(|w| w.misbehaviour = misbehaviour);
    }

    /// A text message from the person with this nickname (a stranger is created if nobody
    /// has it: known only through webwxbatchgetcontact and `ModContactList`).
    pub fn send_text(&self, from: &str, text: &str) -> String {
        self.deliver_from_person(from, |now| messages::text(text, now))
    }

    /// A 微信支付 collection notice for `amount_fen`, counted into today's running
    /// count and total (shown on the card's 汇总 line).
    pub fn pay(&self, amount_fen: u64) -> String {
        self.shared.update(|w| pay_into(w, amount_fen))
    }

    /// A burst: a collection notice for each amount, all arriving at once (no request is
    /// answered in between), so the next webwxsync finds them together. Returns their
    /// MsgIds in order.
    pub fn pay_many(&self, amounts_fen: &[u64]) -> Vec<String> {
        self.shared
            .update(|w| amounts_fen.iter().map(|&fen| pay_into(w, fen)).collect())
    }

    /// A collection WeChat counts into today's running count and total without the notice
    /// ever reaching the web client: a notice paysay never saw (lost, or sent while nobody
    /// listened). The next [`Simulator::pay`] says 今日第N笔 with the skip.
    pub fn pay_unseen(&self, amount_fen: u64) {
        self.shared.update(|w| {
            w.count_collection(amount_fen);
        });
    }

    /// While `Some(ret)`, webwxsendmsg refuses every send with `Ret` = `ret` (1204 or 1205:
    /// sending too much or too fast); `None` sends again.
    pub fn refuse_sends(&self, ret: Option<i64>) {
        self.shared.update(|w| w.send_refusal = ret);
    }

    /// The texts the client sent (webwxsendmsg), in order.
    pub fn sent_messages(&self) -> Vec<SentMessage> {
        self.shared.with(|w| w.sent.clone())
    }

    /// A 微信收款助手 clerk copy (`[店员消息]收款到账…元`) of a collection for `amount_fen`.
    /// Its 今日第N笔 is the clerk line's own count, apart from [`Simulator::pay`]'s: an
    /// account gets clerk copies of another shop's collections.
    pub fn pay_clerk_notice(&self, amount_fen: u64) -> String {
        self.shared.update(|w| {
            let today = w.count_clerk_copy(amount_fen);
            let msg = messages::clerk_notice(amount_fen, today, w.now());
            let sender = w.official(CASHIER_ASSISTANT);
            deliver_into(w, msg, Some(sender), Vec::new())
        })
    }

    /// A transfer (AppMsgType 2000, paysubtype 1) from the person with this nickname.
    pub fn transfer(&self, from_nickname: &str, amount_fen: u64) -> String {
        self.deliver_from_person(from_nickname, |now| messages::transfer(amount_fen, now))
    }

    /// The same collection XML as [`Simulator::pay`], sent by an ordinary contact
    /// (VerifyFlag 0) whose nickname is 微信支付. Not counted into today's total.
    pub fn forged_payment(&self, amount_fen: u64) -> String {
        self.shared.update(|w| {
            let today = messages::RunningTotal {
                count: w.daily.count + 1,
                total_fen: w.daily.total_fen + amount_fen,
            };
            let msg = messages::collection_notice(amount_fen, today, w.now());
            let sender = w.impostor();
            deliver_into(w, msg, Some(sender), Vec::new())
        })
    }

    /// A text from the ordinary contact (VerifyFlag 0) whose nickname is 微信支付, e.g.
    /// `微信支付收款100元`: the shop's phone shows it exactly as it shows a real notice.
    pub fn forged_text(&self, text: &str) -> String {
        self.shared.update(|w| {
            let msg = messages::text(text, w.now());
            let sender = w.impostor();
            deliver_into(w, msg, Some(sender), Vec::new())
        })
    }

    /// Puts an already-delivered message (by MsgId) on the stream again, unchanged, as the
    /// server does when it is unsure the client got it. Returns whether it was found.
    pub fn redeliver(&self, msg_id: &str) -> bool {
        self.shared.update(|w| {
            let found = w
                .session
                .iter()
                .flat_map(|s| s.log.iter())
                .chain(w.held.iter())
                .find(|e| e.msg.msg_id == msg_id)
                .cloned();
            match found {
                Some(mut entry) => {
                    entry.new_contacts.clear();
                    w.deliver(entry);
                    true
                }
                None => false,
            }
        })
    }

    /// Unix seconds on the simulator's clock (see [`SimConfig::clock`]).
    pub fn now(&self) -> i64 {
        self.shared.with(|w| w.now())
    }

    /// Moves the simulator's clock forward by `by` (whole seconds): later messages carry
    /// the later `CreateTime`, and crossing midnight (China time) starts a new day's
    /// running total. Works on the wall clock too, as an offset.
    pub fn advance_clock(&self, by: Duration) {
        self.shared.with(|w| w.clock.advance(by.as_secs()));
    }

    /// Requests answered and faults met so far (injected and random).
    pub fn stats(&self) -> SimStats {
        self.shared.with(|w| w.stats.clone())
    }

    /// Queues a one-shot fault for the next request to `endpoint` (several queue in order).
    pub fn inject(&self, endpoint: Endpoint, fault: Fault) {
        self.shared
            .with(|w| w.faults.entry(endpoint).or_default().push_back(fault));
    }

    /// Every request so far (the last 10 000), in the order they were answered.
    pub fn requests(&self) -> Vec<RecordedRequest> {
        self.shared.with(|w| w.requests.iter().cloned().collect())
    }

    /// Requests to one endpoint, in the order they were answered.
    pub fn requests_to(&self, endpoint: Endpoint) -> Vec<RecordedRequest> {
        self.shared.with(|w| {
            w.requests
                .iter()
                .filter(|r| r.endpoint == Some(endpoint))
                .cloned()
                .collect()
        })
    }

    /// Waits until at least `count` requests to `endpoint` have been answered; false on
    /// timeout. For tests that must know the client got somewhere.
    pub async fn wait_for_requests(
        &self,
        endpoint: Endpoint,
        count: usize,
        timeout: Duration,
    ) -> bool {
        self.shared
            .wait_for(timeout, |w| {
                let n = w
                    .requests
                    .iter()
                    .filter(|r| r.endpoint == Some(endpoint))
                    .count();
                (n >= count).then_some(())
            })
            .await
            .is_some()
    }

    /// The session's keys, `None` before the first login.
    pub fn session(&self) -> Option<SessionInfo> {
        self.shared.with(|w| {
            w.session.as_ref().map(|s| SessionInfo {
                uin: w.uin,
                sid: s.sid.clone(),
                skey: s.skey.clone(),
                pass_ticket: s.pass_ticket.clone(),
                data_ticket: s.data_ticket.clone(),
                user_name: s.user_name.clone(),
                ended: s.ended,
            })
        })
    }

    /// The contact record with this nickname, with this login's user name. Where an
    /// official account and an impostor share a name, the official account is returned.
    pub fn contact_by_nickname(&self, nick: &str) -> Option<Contact> {
        self.shared.with(|w| {
            let mut matching = w.book.iter().filter(|e| e.contact.nick_name == nick);
            let all: Vec<_> = matching.by_ref().collect();
            all.iter()
                .find(|e| e.contact.is_official_account())
                .or(all.first())
                .map(|e| e.contact.clone())
        })
    }

    /// Stops serving: long-polls end, the listener closes. Other clones stop working too.
    pub async fn shutdown(self) {
        self.shared.cancel.cancel();
        let handle = self.server.lock().unwrap_or_else(|p| p.into_inner()).take();
        if let Some(handle) = handle {
            // Graceful shutdown waits for open connections; a client that holds one open
            // must not hang the caller.
            let abort = handle.abort_handle();
            if tokio::time::timeout(Duration::from_secs(2), handle)
                .await
                .is_err()
            {
                abort.abort();
            }
        }
    }

    fn deliver_from_person(&self, nick: &str, make: impl FnOnce(i64) -> Message) -> String {
        self.shared.update(|w| {
            let msg = make(w.now());
            let (sender, created) = w.person(nick);
            let new = if created { vec![sender] } else { Vec::new() };
            deliver_into(w, msg, Some(sender), new)
        })
    }
}

/// A 微信支付 collection notice, counted into today's running total, on the stream.
fn pay_into(w: &mut state::World, amount_fen: u64) -> String {
    let today = w.count_collection(amount_fen);
    let msg = messages::collection_notice(amount_fen, today, w.now());
    let sender = w.official(WXPAY);
    deliver_into(w, msg, Some(sender), Vec::new())
}

fn deliver_into(
    w: &mut state::World,
    msg: Message,
    sender: Option<usize>,
    new_contacts: Vec<usize>,
) -> String {
    let id = msg.msg_id.clone();
    w.deliver(LogEntry {
        msg,
        sender,
        extras: Vec::new(),
        new_contacts,
        raw: None,
    });
    id
}
