//! A logged-in session and its calls: webwxinit, webwxstatusnotify, contacts, and the
//! synccheck/webwxsync round that yields new messages.

use std::collections::HashMap;
use std::path::Path;
use std::sync::Arc;
use std::time::Duration;

use serde_json::json;

use super::error::SessionError;
use super::http::{self, Http, Request};
use super::pace::{Floor, IdleRounds, Misbehaviour};
use super::store::{self, SavedSession};
use super::{Events, Incoming, login, long_poll_timeout, new_device_id, now_ms};
use crate::config::WechatConfig;
use crate::now_unix;
use crate::protocol::{
    self, BaseRequest, BatchContactResponse, Contact, ContactListResponse, InitResponse, SyncKey,
    SyncResponse, UnreadableMessage,
};

const API: &str = "/cgi-bin/mmwebwx-bin";
/// webwxbatchgetcontact takes at most this many names a call.
const BATCH_CONTACTS: usize = 50;
/// Rounds in a row whose sender lookup may fail before the batch goes on without it.
const MAX_LOOKUP_FAILURES: u32 = 3;
/// Pages read in a row on ContinueFlag before a synccheck comes in between: a server that
/// keeps answering ContinueFlag must not keep us from synccheck forever.
const MAX_CONTINUE_ROUNDS: usize = 100;

/// A place in the message stream (the SyncKey and SyncCheckKey), from
/// [`Session::sync_position`].
#[derive(Debug, Clone)]
pub struct SyncPosition {
    sync_key: SyncKey,
    sync_check_key: SyncKey,
}

/// A live session: keys, cookies (in the HTTP client), contacts, and the SyncKey cursor.
pub struct Session {
    /// Shared with texts going out beside the message loop ([`PreparedText`]).
    http: Arc<Http>,
    config: WechatConfig,
    state: SavedSession,
    contacts: HashMap<String, Contact>,
    /// The state as last written to disk, to skip writes when nothing moved.
    saved: Option<SavedSession>,
    /// Sender lookups failed in a row (see `look_up`).
    lookup_failures: u32,
    /// The least time between two synchecks, and between two webwxsyncs.
    synccheck_floor: Floor,
    sync_floor: Floor,
    /// Rounds that brought nothing although synccheck said something waits.
    idle: IdleRounds,
    /// A round ran out of pages with ContinueFlag still set, and that was logged.
    long_burst_logged: bool,
    /// Pages read in a row because the server said it had more (`ContinueFlag`); while
    /// non-zero, the next round skips synccheck (see `next_batch`).
    continued_pages: usize,
}

/// A webwxsendmsg with everything it needs, owned: it runs on a task of its own.
pub struct PreparedText {
    http: Arc<Http>,
    host: String,
    path_and_query: String,
    body: Vec<u8>,
    timeout: Duration,
}

impl PreparedText {
    /// Sends it; 1204/1205 (sending refused for now) are told apart from other errors.
    pub async fn send(self) -> Result<(), SessionError> {
        let reply = self
            .http
            .send(Request {
                name: "webwxsendmsg",
                host: &self.host,
                path_and_query: self.path_and_query,
                json: Some(self.body),
                timeout: self.timeout,
                headers: &[],
            })
            .await?;
        match http::json::<protocol::RetOnly>(&reply) {
            Err(SessionError::Ret {
                ret: ret @ (1204 | 1205),
                err_msg,
                host,
                ..
            }) => Err(SessionError::SendRefused { host, ret, err_msg }),
            other => other.map(|_| ()),
        }
    }
}

impl Session {
    /// A fresh login (push or QR), then init. webwxinit is retried with the ticket's keys
    /// while it fails on the network: the ticket cannot be exchanged twice, and a new one
    /// would cost a new scan. If the server ended the new session before webwxinit got
    /// through (an answer lost after it replaced the skey), the phone is asked once to
    /// confirm by push login, which needs no scan, before a QR code is shown again.
    pub async fn login(
        config: &WechatConfig,
        qr_path: &Path,
        previous: Option<&login::PreviousLogin>,
        events: &Events,
    ) -> Result<Session, SessionError> {
        let mut http = Arc::new(Http::new(config.base_url.as_deref())?);
        let mut previous = previous.cloned();
        let mut asked_again = false;
        loop {
            let creds = login::login(&http, config, qr_path, previous.as_ref(), events).await?;
            let mut session = Session::with_state(http, config, state_after_login(creds)?);
            match session.init_after_login().await {
                Ok(()) => {
                    session.after_init().await?;
                    return Ok(session);
                }
                Err(e) if e.kind() == super::ErrorKind::LoggedOut && !asked_again => {
                    asked_again = true;
                    tracing::warn!(error = %e, "the new session ended before webwxinit got through; asking the phone to confirm again");
                    previous = Some(session.previous_login());
                    http = session.http;
                }
                Err(e) => return Err(e),
            }
        }
    }

    /// Goes on with a saved session: webwxinit proves the server still accepts it. The saved
    /// SyncKey is kept, so messages that arrived while paysay was down are delivered now.
    pub async fn resume(
        config: &WechatConfig,
        saved: SavedSession,
    ) -> Result<Session, SessionError> {
        let http = Arc::new(Http::new(config.base_url.as_deref())?);
        http.set_cookies(saved.cookies.clone());
        let mut session = Session::with_state(http, config, saved);
        session.start().await?;
        Ok(session)
    }

    fn with_state(http: Arc<Http>, config: &WechatConfig, state: SavedSession) -> Session {
        let floor = Duration::from_millis(config.min_request_interval_ms);
        Session {
            http,
            config: config.clone(),
            state,
            contacts: HashMap::new(),
            saved: None,
            lookup_failures: 0,
            synccheck_floor: Floor::new(floor),
            sync_floor: Floor::new(floor),
            idle: IdleRounds::from_config(config),
            long_burst_logged: false,
            continued_pages: 0,
        }
    }

    /// init, status notify, contacts: what the web page does after a reload.
    async fn start(&mut self) -> Result<(), SessionError> {
        self.init().await?;
        self.after_init().await
    }

    /// webwxinit right after a login, retried on the same keys while it fails on the
    /// network (see [`login::StepRetry`]).
    async fn init_after_login(&mut self) -> Result<(), SessionError> {
        let mut retry = login::StepRetry::new("webwxinit");
        loop {
            match self.init().await {
                Ok(()) => return Ok(()),
                Err(e) => retry.after_failure(e).await?,
            }
        }
    }

    /// Status notify and contacts: what the web page does after webwxinit. Neither is
    /// needed to receive payments, so only a logout fails here.
    async fn after_init(&mut self) -> Result<(), SessionError> {
        if let Err(e) = self.status_notify().await {
            // Only the phone's "logged in on the web" banner depends on it.
            tracing::warn!(error = %crate::text::Escaped(&e), "webwxstatusnotify failed; going on");
        }
        if let Err(e) = self.fetch_contacts().await {
            // Huge contact lists make this slow or fail; unknown senders are looked up
            // one batch at a time instead.
            if e.kind() == super::ErrorKind::LoggedOut {
                return Err(e);
            }
            tracing::warn!(error = %crate::text::Escaped(&e), "webwxgetcontact failed; senders will be looked up as they write");
        }
        Ok(())
    }

    pub fn nick_name(&self) -> &str {
        &self.state.nick_name
    }

    pub fn user_name(&self) -> &str {
        &self.state.user_name
    }

    pub fn contact(&self, user_name: &str) -> Option<&Contact> {
        self.contacts.get(user_name)
    }

    pub fn contact_count(&self) -> usize {
        self.contacts.len()
    }

    fn base_request(&self) -> BaseRequest {
        BaseRequest {
            uin: self.state.uin,
            sid: self.state.sid.clone(),
            skey: self.state.skey.clone(),
            device_id: self.state.device_id.clone(),
        }
    }

    /// The pass_ticket as a query value: the XML's (already encoded) value encoded once more.
    fn pass_ticket(&self) -> String {
        http::enc(&self.state.pass_ticket)
    }

    fn timeout(&self) -> Duration {
        self.config.request_timeout()
    }

    async fn post(
        &self,
        name: &'static str,
        path_and_query: String,
        body: serde_json::Value,
    ) -> Result<http::Reply, SessionError> {
        let host = self.state.hosts.web.clone();
        self.http
            .send(Request {
                name,
                host: &host,
                path_and_query,
                json: Some(body.to_string().into_bytes()),
                timeout: self.timeout(),
                headers: &[],
            })
            .await
    }

    async fn init(&mut self) -> Result<(), SessionError> {
        let mut base = serde_json::to_value(self.base_request()).unwrap_or_default();
        // The browser sends Uin as a string here (and a number everywhere else).
        base["Uin"] = json!(self.state.uin.to_string());
        let reply = self
            .post(
                "webwxinit",
                format!(
                    "{API}/webwxinit?r={}&lang=zh_CN&pass_ticket={}",
                    -(now_ms() / 1000),
                    self.pass_ticket()
                ),
                json!({ "BaseRequest": base }),
            )
            .await?;
        let init: InitResponse = http::json(&reply)?;
        if !init.skey.is_empty() {
            self.state.skey = init.skey;
        }
        // A resumed session keeps its own cursor: the server's would skip what came meanwhile.
        if self.state.sync_key.is_empty() {
            self.state.sync_key = init.sync_key.clone();
            self.state.sync_check_key = init.sync_key;
        }
        self.state.user_name = init.user.user_name.clone();
        self.state.nick_name = init.user.nick_name.clone();
        for c in init.contact_list {
            self.contacts.insert(c.user_name.clone(), c);
        }
        tracing::debug!(user = %crate::text::Escaped(&self.state.nick_name), "webwxinit ok");
        Ok(())
    }

    async fn status_notify(&self) -> Result<(), SessionError> {
        let me = &self.state.user_name;
        let reply = self
            .post(
                "webwxstatusnotify",
                format!(
                    "{API}/webwxstatusnotify?lang=zh_CN&pass_ticket={}",
                    self.pass_ticket()
                ),
                json!({
                    "BaseRequest": self.base_request(),
                    "Code": 3,
                    "FromUserName": me,
                    "ToUserName": me,
                    "ClientMsgId": now_ms(),
                }),
            )
            .await?;
        http::json::<protocol::RetOnly>(&reply).map(|_| ())
    }

    /// The UserName to send to for `to` as the owner wrote it in `[notify]`: `filehelper`
    /// (the own 文件传输助手) as is, else the contact whose remark name, or failing that
    /// whose nickname, is `to`. User names change at every login, so this is asked anew.
    pub fn recipient(&self, to: &str) -> Option<String> {
        if to == FILEHELPER {
            return Some(FILEHELPER.to_string());
        }
        let people = || {
            self.contacts
                .values()
                .filter(|c| !c.user_name.starts_with("@@"))
        };
        people()
            .find(|c| c.remark_name == to)
            .or_else(|| people().find(|c| c.nick_name == to))
            .map(|c| c.user_name.clone())
    }

    /// Sends `text` to `to` (as [`Session::recipient`] reads it) with webwxsendmsg: one
    /// request, never retried here. WeChat's refusals for sending too much (1204, 1205) come
    /// back as [`SessionError::SendRefused`]: the caller waits minutes before the next try.
    pub async fn send_text(&self, to: &str, text: &str) -> Result<(), SessionError> {
        self.prepare_text(to, text)?.send().await
    }

    /// A text to `to`, ready to go out on its own ([`PreparedText::send`]): a webwxsendmsg
    /// whose answer hangs then holds up nothing but itself, never the next synccheck.
    pub fn prepare_text(&self, to: &str, text: &str) -> Result<PreparedText, SessionError> {
        let to_user = self
            .recipient(to)
            .ok_or_else(|| SessionError::UnknownRecipient {
                name: to.to_string(),
            })?;
        let id = client_msg_id();
        let body = json!({
            "BaseRequest": self.base_request(),
            "Scene": 0,
            "Msg": {
                "Type": 1,
                "Content": text,
                "FromUserName": self.state.user_name,
                "ToUserName": to_user,
                "LocalID": id,
                "ClientMsgId": id,
            },
        });
        Ok(PreparedText {
            http: Arc::clone(&self.http),
            host: self.state.hosts.web.clone(),
            path_and_query: format!(
                "{API}/webwxsendmsg?lang=zh_CN&pass_ticket={}",
                self.pass_ticket()
            ),
            body: body.to_string().into_bytes(),
            timeout: self.timeout(),
        })
    }

    /// All contacts, page by page (`Seq` until 0).
    async fn fetch_contacts(&mut self) -> Result<(), SessionError> {
        let mut seq = 0u64;
        loop {
            let host = self.state.hosts.web.clone();
            let reply = self
                .http
                .send(Request {
                    name: "webwxgetcontact",
                    host: &host,
                    path_and_query: format!(
                        "{API}/webwxgetcontact?lang=zh_CN&pass_ticket={}&r={}&seq={seq}&skey={}",
                        self.pass_ticket(),
                        now_ms(),
                        http::enc(&self.state.skey)
                    ),
                    json: None,
                    timeout: self.timeout(),
                    headers: &[],
                })
                .await?;
            let page: ContactListResponse = http::json(&reply)?;
            for c in page.member_list {
                self.contacts.insert(c.user_name.clone(), c);
            }
            if page.seq == 0 || page.seq == seq {
                break;
            }
            seq = page.seq;
        }
        tracing::debug!(contacts = self.contacts.len(), "contacts loaded");
        Ok(())
    }

    /// Looks up senders we have no record of (≤ 50 a call).
    async fn fetch_unknown(&mut self, user_names: Vec<String>) -> Result<(), SessionError> {
        for chunk in user_names.chunks(BATCH_CONTACTS) {
            let list: Vec<_> = chunk
                .iter()
                .map(|u| json!({ "UserName": u, "EncryChatRoomId": "" }))
                .collect();
            let reply = self
                .post(
                    "webwxbatchgetcontact",
                    format!(
                        "{API}/webwxbatchgetcontact?type=ex&r={}&lang=zh_CN&pass_ticket={}",
                        now_ms(),
                        self.pass_ticket()
                    ),
                    json!({ "BaseRequest": self.base_request(), "Count": list.len(), "List": list }),
                )
                .await?;
            let found: BatchContactResponse = http::json(&reply)?;
            for c in found.contact_list {
                self.contacts.insert(c.user_name.clone(), c);
            }
        }
        Ok(())
    }

    /// One round: synccheck (long poll) and, when it says so, one webwxsync page. Empty when
    /// nothing came within the long poll. While the server has more (`ContinueFlag`), the
    /// next round reads the next page without a synccheck.
    ///
    /// One page a round, because sending a page's SyncKey tells the server that everything
    /// before it was received: it hands only what follows the furthest SyncKey sent to the
    /// next session. So the next page is asked for only after this one has been
    /// acknowledged, and a page that fails here (its senders cannot be looked up) or that
    /// the daemon cannot record is read again from its own SyncKey, which the server still
    /// counts as unread if the session ends first.
    ///
    /// Paced (see `pace`): requests of one kind are `min_request_interval_ms` apart, and
    /// a round that brings nothing although synccheck said something waits makes the next
    /// one wait longer, until messages come again.
    pub async fn next_batch(&mut self) -> Result<Vec<Incoming>, SessionError> {
        self.idle.wait().await;
        // `None`: a page the previous one said follows (ContinueFlag), read without synccheck.
        let mut selector = None;
        if self.continued_pages == 0 {
            let check = self.sync_check().await?;
            if check.selector == 0 {
                return Ok(Vec::new());
            }
            selector = Some(check.selector);
        }
        let page_start = (
            self.state.sync_key.clone(),
            self.state.sync_check_key.clone(),
        );
        let response = self.sync().await?;
        let brought = brought_something(&response);
        self.continued_pages = self.after_page(response.continue_flag, brought);
        match (brought, response.continue_flag, selector) {
            (true, _, _) => self.idle.something(),
            // "More is waiting" on a page with nothing on it: back to synccheck, slower.
            (false, flag, _) if flag != 0 => {
                self.idle.nothing(Misbehaviour::EmptyContinue);
            }
            (false, _, Some(selector)) => {
                self.idle.nothing(Misbehaviour::EmptyRounds { selector });
            }
            // The last page of a burst may well be empty.
            (false, _, None) => {}
        }
        let delivered = self.with_senders(response.add_msg_list).await;
        if delivered.is_err() {
            // Nothing of this page reaches the daemon: go back to its SyncKey, so the
            // server delivers the same messages again next round.
            (self.state.sync_key, self.state.sync_check_key) = page_start;
        }
        delivered
    }

    /// How many pages have been read in a row on ContinueFlag after this one: 0 sends the
    /// next round to synccheck. A run that reaches [`MAX_CONTINUE_ROUNDS`] is logged once.
    fn after_page(&mut self, continue_flag: u32, brought: bool) -> usize {
        if continue_flag == 0 {
            self.long_burst_logged = false;
            return 0;
        }
        if !brought {
            return 0;
        }
        if self.continued_pages + 1 >= MAX_CONTINUE_ROUNDS {
            if !self.long_burst_logged {
                self.long_burst_logged = true;
                tracing::warn!(
                    pages = MAX_CONTINUE_ROUNDS,
                    "webwxsync still says more is waiting (ContinueFlag) after {MAX_CONTINUE_ROUNDS} pages; asking synccheck in between"
                );
            }
            return 0;
        }
        self.continued_pages + 1
    }

    async fn sync_check(&mut self) -> Result<protocol::SyncCheck, SessionError> {
        self.synccheck_floor.wait().await;
        let key = if self.state.sync_check_key.is_empty() {
            &self.state.sync_key
        } else {
            &self.state.sync_check_key
        };
        let host = self.state.hosts.push.clone();
        let reply = self
            .http
            .send(Request {
                name: "synccheck",
                host: &host,
                path_and_query: format!(
                    "{API}/synccheck?r={}&skey={}&sid={}&uin={}&deviceid={}&synckey={}&_={}",
                    now_ms(),
                    http::enc(&self.state.skey),
                    http::enc(&self.state.sid),
                    self.state.uin,
                    self.state.device_id,
                    http::enc(&key.to_query()),
                    now_ms()
                ),
                json: None,
                timeout: long_poll_timeout(&self.config),
                headers: &[],
            })
            .await?;
        let check =
            protocol::parse_synccheck(&reply.body).map_err(|e| http::parse_error(&reply, e))?;
        match check.retcode {
            0 => Ok(check),
            code if super::error::is_logout_code(code) => Err(SessionError::LoggedOut {
                request: "synccheck",
                host,
                retcode: code,
            }),
            code => Err(SessionError::Ret {
                request: "synccheck",
                host,
                ret: code,
                err_msg: format!("unexpected retcode, selector {}", check.selector),
            }),
        }
    }

    async fn sync(&mut self) -> Result<SyncResponse, SessionError> {
        self.sync_floor.wait().await;
        let reply = self
            .post(
                "webwxsync",
                format!(
                    "{API}/webwxsync?sid={}&skey={}&lang=zh_CN&pass_ticket={}",
                    http::enc(&self.state.sid),
                    http::enc(&self.state.skey),
                    self.pass_ticket()
                ),
                json!({
                    "BaseRequest": self.base_request(),
                    "SyncKey": self.state.sync_key,
                    "rr": !now_unix(),
                }),
            )
            .await?;
        let response = match http::json::<SyncResponse>(&reply) {
            // One entry of the wrong shape must not hold up the stream: read entry by entry.
            Err(e @ SessionError::Json { .. }) => {
                SyncResponse::read_leniently(&reply.body).map_err(|_| e)?
            }
            other => other?,
        };
        for unreadable in &response.unreadable {
            self.log_unreadable(unreadable);
        }
        if !response.sync_key.is_empty() {
            self.state.sync_key = response.sync_key.clone();
        }
        if !response.sync_check_key.is_empty() {
            self.state.sync_check_key = response.sync_check_key.clone();
        }
        if !response.skey.is_empty() {
            self.state.skey = response.skey.clone();
        }
        for c in &response.mod_contact_list {
            self.contacts.insert(c.user_name.clone(), c.clone());
        }
        Ok(response)
    }

    /// Says what was skipped. One that may be a payment is an error the owner must act on:
    /// the money may have arrived without being announced.
    fn log_unreadable(&self, skipped: &UnreadableMessage) {
        let from_payment_account = self
            .contacts
            .get(&skipped.from_user_name)
            .is_some_and(is_payment_like_account);
        let msg_id = skipped.msg_id.as_deref().unwrap_or("-");
        if skipped.may_be_payment || from_payment_account {
            tracing::error!(
                msg_id = ?msg_id,
                error = %skipped.error,
                excerpt = ?skipped.excerpt,
                "skipped a message that cannot be read and may be a payment: check the phone for a payment that was not announced"
            );
        } else {
            tracing::warn!(
                msg_id = ?msg_id,
                error = %skipped.error,
                excerpt = ?skipped.excerpt,
                "skipped a message that cannot be read"
            );
        }
    }

    /// Attaches each message's sender record, fetching the ones we do not know.
    async fn with_senders(
        &mut self,
        messages: Vec<protocol::Message>,
    ) -> Result<Vec<Incoming>, SessionError> {
        // Groups are never payment accounts, so their records are not worth a lookup that
        // could fail on a huge member list.
        let mut unknown: Vec<String> = messages
            .iter()
            .map(|m| m.from_user_name.clone())
            .filter(|u| {
                !u.is_empty()
                    && !u.starts_with("@@")
                    && *u != self.state.user_name
                    && !self.contacts.contains_key(u)
            })
            .collect();
        unknown.sort();
        unknown.dedup();
        if !unknown.is_empty() {
            self.look_up(unknown).await?;
        }
        Ok(messages
            .into_iter()
            .map(|message| Incoming {
                sender: self.contacts.get(&message.from_user_name).cloned(),
                message,
            })
            .collect())
    }

    /// Fetches unknown senders. A failure fails the round (so it is read again) a few times
    /// running: a collection notice from a sender we cannot verify would be dropped as
    /// untrusted, i.e. lost. After that the batch goes on with the senders unknown, so one
    /// broken lookup cannot hold up every message for good.
    ///
    /// A logout is different: this round cannot be read again, as the next session starts
    /// after the position its last page asked from. Its messages go on with the senders
    /// known; the next synccheck meets the logout.
    async fn look_up(&mut self, unknown: Vec<String>) -> Result<(), SessionError> {
        match self.fetch_unknown(unknown).await {
            Ok(()) => {
                self.lookup_failures = 0;
                Ok(())
            }
            Err(e) if e.kind() == super::ErrorKind::LoggedOut => {
                tracing::warn!(error = %e, "the session ended during a sender lookup; passing the round's messages on with the senders unknown");
                Ok(())
            }
            Err(e) if self.lookup_failures < MAX_LOOKUP_FAILURES => {
                self.lookup_failures += 1;
                Err(e)
            }
            Err(e) => {
                self.lookup_failures = 0;
                tracing::error!(error = %crate::text::Escaped(&e), "webwxbatchgetcontact keeps failing; going on with the senders unknown (their payments cannot be verified)");
                Ok(())
            }
        }
    }

    /// Where the SyncKey stands now, to come back to with [`Session::rewind`].
    pub fn sync_position(&self) -> SyncPosition {
        SyncPosition {
            sync_key: self.state.sync_key.clone(),
            sync_check_key: self.state.sync_check_key.clone(),
        }
    }

    /// Goes back to `position`, so the server delivers what came after it again: the
    /// daemon could not record a batch, and a batch must not be skipped.
    pub fn rewind(&mut self, position: SyncPosition) {
        self.state.sync_key = position.sync_key;
        self.state.sync_check_key = position.sync_check_key;
    }

    /// Saves the session if anything in it moved since the last save.
    pub fn commit(&mut self, path: &Path) -> Result<(), SessionError> {
        self.state.cookies = self.http.cookies();
        let changed = self.saved.as_ref().is_none_or(|s| {
            s.sync_key != self.state.sync_key
                || s.sync_check_key != self.state.sync_check_key
                || s.skey != self.state.skey
                || s.cookies != self.state.cookies
        });
        if changed {
            self.save(path)?;
        }
        Ok(())
    }

    /// Writes the session to `path` (0600, atomic).
    pub fn save(&mut self, path: &Path) -> Result<(), SessionError> {
        let mut state = self.state();
        state.saved_at = now_unix();
        store::save(path, &state)?;
        self.saved = Some(state);
        Ok(())
    }

    /// What a push login after this session needs.
    pub fn previous_login(&self) -> login::PreviousLogin {
        login::PreviousLogin {
            uin: self.state.uin,
            web_host: self.state.hosts.web.clone(),
            cookies: self.http.cookies(),
        }
    }

    /// What would be saved now (for tests and `doctor`).
    pub fn state(&self) -> SavedSession {
        let mut state = self.state.clone();
        state.cookies = self.http.cookies();
        state
    }
}

/// The session a confirmed login starts: the ticket's keys, a new device, no SyncKey yet.
fn state_after_login(creds: login::Credentials) -> Result<SavedSession, SessionError> {
    let uin = creds
        .ticket
        .wxuin
        .trim()
        .parse()
        .map_err(|_| SessionError::LoginRefused {
            ret: -1,
            message: format!(
                "the login ticket's wxuin {:?} is not a number",
                creds.ticket.wxuin
            ),
        })?;
    Ok(SavedSession {
        version: SavedSession::new_version(),
        uin,
        sid: creds.ticket.wxsid,
        skey: creds.ticket.skey,
        pass_ticket: creds.ticket.pass_ticket,
        device_id: new_device_id(),
        hosts: creds.hosts,
        cookies: Default::default(),
        sync_key: SyncKey::default(),
        sync_check_key: SyncKey::default(),
        user_name: String::new(),
        nick_name: String::new(),
        saved_at: 0,
    })
}

/// The own 文件传输助手: a fixed user name, the same at every login.
pub const FILEHELPER: &str = "filehelper";

/// `LocalID`/`ClientMsgId` as the web client makes them: the time in ms and 4 random
/// digits, 17 digits in all.
fn client_msg_id() -> String {
    use rand::Rng;
    let suffix: u32 = rand::rng().random_range(0..10_000);
    format!("{:013}{suffix:04}", now_ms().max(0))
}

/// Whether a page brought anything at all: messages (read or not) or contact changes.
fn brought_something(page: &SyncResponse) -> bool {
    !page.add_msg_list.is_empty()
        || !page.unreadable.is_empty()
        || !page.mod_contact_list.is_empty()
        || page.del_contact_count > 0
}

/// An official account named like the payment accounts (微信支付, 微信收款助手, 微信商家助手…).
fn is_payment_like_account(contact: &Contact) -> bool {
    contact.is_official_account()
        && ["支付", "收款", "商家"]
            .iter()
            .any(|w| contact.nick_name.contains(w))
}
