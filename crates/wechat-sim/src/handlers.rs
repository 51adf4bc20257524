//! One function per WeChat endpoint: checks the request as the server does, changes the
//! world, and answers in that endpoint's dialect.

use std::sync::Arc;

use serde_json::{Value, json};

use super::checks::{self, COOKIES_MISSING, INVALID, NOT_LOGGED_IN};
use super::contacts::contact_json;
use super::server::{Reply, SimRequest};
use super::state::{self, LogEntry, QrStatus, Shared, World, wall_clock_now};
use super::{Endpoint, Misbehaviour, Verdict, messages};
use wechat_web::{APP_ID, BaseResponse, SyncKey};

/// Answers one request to `endpoint`.
pub(crate) async fn handle(shared: &Arc<Shared>, endpoint: Endpoint, req: &SimRequest) -> Reply {
    match endpoint {
        Endpoint::JsLogin => jslogin(shared, req),
        Endpoint::QrPage => qr_page(shared, req),
        Endpoint::LoginPoll => login_poll(shared, req).await,
        Endpoint::Ticket => ticket(shared, req),
        Endpoint::Init => json_call(shared, req, init),
        Endpoint::StatusNotify => json_call(shared, req, status_notify),
        Endpoint::GetContact => get_contact(shared, req),
        Endpoint::BatchGetContact => json_call(shared, req, batch_get_contact),
        Endpoint::SyncCheck => sync_check(shared, req).await,
        Endpoint::Sync => json_call(shared, req, sync),
        Endpoint::PushLogin => push_login(shared, req),
        Endpoint::Logout => logout(shared, req),
        Endpoint::SendMsg => json_call(shared, req, send_msg),
    }
}

// ---- login ----

fn jslogin(shared: &Arc<Shared>, req: &SimRequest) -> Reply {
    if req.query("appid") != Some(APP_ID) {
        return Reply::js(
            "window.QRLogin.code = 400; window.QRLogin.error = \"appid error\";",
            Verdict::Refused(400),
        );
    }
    let uuid = shared.update(|w| {
        w.stats.qr_codes += 1;
        w.issue_qr()
    });
    auto_login(shared, &uuid, true);
    Reply::js(
        format!("window.QRLogin.code = 200; window.QRLogin.uuid = \"{uuid}\";"),
        Verdict::Ok,
    )
}

/// With `auto_login`, the phone scans (unless it is a push login) and confirms by itself.
fn auto_login(shared: &Arc<Shared>, uuid: &str, scan_first: bool) {
    let Some(delay) = shared.config.auto_login else {
        return;
    };
    let (shared, uuid) = (Arc::clone(shared), uuid.to_string());
    tokio::spawn(async move {
        if scan_first {
            tokio::time::sleep(delay).await;
            shared.update(|w| w.scan(&uuid));
        }
        tokio::time::sleep(delay).await;
        shared.update(|w| w.confirm(&uuid));
    });
}

/// The QR's own URL: opening it stands in for the phone (scan and confirm), so a person
/// trying the demo can log in from a browser.
fn qr_page(shared: &Arc<Shared>, req: &SimRequest) -> Reply {
    let uuid = req.path.rsplit('/').next().unwrap_or_default().to_string();
    let known = shared.update(|w| {
        let known = w.qrs.contains_key(&uuid);
        w.scan(&uuid);
        w.confirm(&uuid);
        known
    });
    let (text, verdict) = if known {
        (
            "登录已确认 (simulated phone: scanned and confirmed)",
            Verdict::Ok,
        )
    } else {
        ("二维码已失效 (unknown QR)", Verdict::Refused(400))
    };
    let mut r = Reply::text(text, verdict);
    r.content_type = "text/plain; charset=utf-8";
    r
}

/// What a login poll can answer right away, if anything.
enum PollAnswer {
    Scanned,
    Confirmed(String),
    Gone,
}

async fn login_poll(shared: &Arc<Shared>, req: &SimRequest) -> Reply {
    let uuid = req.query("uuid").unwrap_or_default().to_string();
    let hold = if shared.with(|w| w.instant_login_poll) {
        std::time::Duration::ZERO
    } else {
        shared.config.long_poll
    };
    let answer = shared.wait_for(hold, |w| poll_answer(w, &uuid)).await;
    match answer {
        Some(PollAnswer::Scanned) => Reply::js(
            format!("window.code=201;window.userAvatar = 'data:img/jpg;base64,{AVATAR}';"),
            Verdict::Ok,
        ),
        Some(PollAnswer::Confirmed(redirect)) => Reply::js(
            format!("window.code=200;\nwindow.redirect_uri=\"{redirect}\";"),
            Verdict::Ok,
        ),
        Some(PollAnswer::Gone) => Reply::js("window.code=400;", Verdict::Refused(400)),
        None => {
            // Held the whole time: still scanned-but-unconfirmed says 201 again.
            let scanned = shared.with(|w| {
                w.qrs
                    .get(&uuid)
                    .is_some_and(|q| q.status == QrStatus::Scanned)
            });
            let code = if scanned { 201 } else { 408 };
            Reply::js(format!("window.code={code};"), Verdict::Ok)
        }
    }
}

/// A tiny JPEG's base64 head, enough to look like the avatar WeChat sends.
const AVATAR: &str = "/9j/4AAQSkZJRgABAQAAAQABAAD/2wBDAAgGBgcGBQgHBwcJCQgKDBQNDAsLDBkSEw8UHRofHh0aHBwgJC4nICIsIxwcKDcpLDAxNDQ0Hyc5PTgyPC4zNDL/wAALCAABAAEBAREA/8QAFAABAAAAAAAAAAAAAAAAAAAACf/EABQQAQAAAAAAAAAAAAAAAAAAAAD/2gAIAQEAAD8AKp//2Q==";

fn poll_answer(w: &mut World, uuid: &str) -> Option<PollAnswer> {
    let Some(qr) = w.qrs.get_mut(uuid) else {
        return Some(PollAnswer::Gone);
    };
    qr.polled = true;
    match qr.status {
        QrStatus::Waiting => None,
        QrStatus::Scanned if qr.scan_reported => None,
        QrStatus::Scanned => {
            qr.scan_reported = true;
            Some(PollAnswer::Scanned)
        }
        QrStatus::Confirmed => Some(PollAnswer::Confirmed(format!(
            "https://wx2.qq.com/cgi-bin/mmwebwx-bin/webwxnewloginpage?ticket={}&uuid={uuid}&lang=zh_CN&scan={}",
            qr.ticket, qr.scanned_at
        ))),
        QrStatus::Used | QrStatus::Expired => Some(PollAnswer::Gone),
    }
}

fn ticket_xml(ret: i64, message: &str) -> String {
    format!("<error><ret>{ret}</ret><message>{message}</message></error>")
}

/// The ticket exchange: the XML `<error>` with the session's keys, and the cookies.
fn ticket(shared: &Arc<Shared>, req: &SimRequest) -> Reply {
    let ticket = req.query("ticket").unwrap_or_default();
    let uuid = req.query("uuid").unwrap_or_default();
    let versioned = req.query("fun") == Some("new") && req.query("version") == Some("v2");
    shared.update(|w| {
        let valid = w
            .qrs
            .get(uuid)
            .is_some_and(|q| q.status == QrStatus::Confirmed && q.ticket == ticket);
        if !valid || !versioned {
            // The simulator's reading: a wrong, spent or incomplete ticket request is ret 1.
            return Reply::text(ticket_xml(1, "登录失败，请重新扫码登录。"), Verdict::Refused(1));
        }
        if let Some(qr) = w.qrs.get_mut(uuid) {
            qr.status = QrStatus::Used;
        }
        if let Some((ret, message)) = w.refusal.take() {
            return Reply::text(ticket_xml(ret, &message), Verdict::Refused(ret));
        }
        let uin = w.uin;
        let session = w.login().clone();
        let body = format!(
            "<error><ret>0</ret><message></message><skey>{}</skey><wxsid>{}</wxsid><wxuin>{uin}</wxuin><pass_ticket>{}</pass_ticket><isgrayscale>1</isgrayscale></error>",
            session.skey, session.sid, session.pass_ticket
        );
        let mut reply = Reply::text(body, Verdict::Ok);
        reply.set_cookies = login_cookies(w, &session);
        reply
    })
}

/// The cookies the ticket sets, with WeChat's attributes: the session ones for 12 hours on
/// the web host (webwx_data_ticket for all of `.qq.com`), the browser ones for ten years.
fn login_cookies(w: &World, s: &state::Session) -> Vec<String> {
    // The client checks expiry against its own clock, so these follow the wall clock even
    // when the simulator's runs elsewhere.
    let now = wall_clock_now();
    let half_day = expires(now + 12 * 3600);
    let ten_years = expires(now + 10 * 365 * 86_400);
    let host = "wx2.qq.com";
    let mut cookies = vec![
        format!("wxuin={}; Domain={host}; Path=/; Expires={half_day}", w.uin),
        format!("wxsid={}; Domain={host}; Path=/; Expires={half_day}", s.sid),
        format!("wxloadtime={now}; Domain={host}; Path=/; Expires={half_day}"),
        format!("mm_lang=zh_CN; Domain={host}; Path=/; Expires={half_day}"),
        format!(
            "webwx_data_ticket={}; Domain=.qq.com; Path=/; Expires={half_day}",
            s.data_ticket
        ),
        format!(
            "webwxuvid={}; Domain={host}; Path=/; Expires={ten_years}",
            w.uvid
        ),
    ];
    if let Some(auth) = &w.auth_ticket {
        cookies.push(format!(
            "webwx_auth_ticket={auth}; Domain={host}; Path=/; Expires={ten_years}"
        ));
    }
    cookies
}

/// `Tue, 05-Jun-2018 17:49:22 GMT`, the dashed form WeChat uses.
fn expires(unix: i64) -> String {
    let format = time::macros::format_description!(
        "[weekday repr:short], [day]-[month repr:short]-[year] [hour]:[minute]:[second] GMT"
    );
    time::OffsetDateTime::from_unix_timestamp(unix)
        .ok()
        .and_then(|t| t.format(format).ok())
        .unwrap_or_default()
}

fn push_login(shared: &Arc<Shared>, req: &SimRequest) -> Reply {
    let allowed = shared.config.push_login;
    let uuid = shared.update(|w| {
        // The browser that logged in before is known by its long-lived webwx_auth_ticket
        // cookie; a push login from anywhere else is refused.
        let known_browser =
            w.auth_ticket.is_some() && req.cookie("webwx_auth_ticket") == w.auth_ticket.as_deref();
        let known_account = known_browser && req.query("uin") == Some(&w.uin.to_string());
        (allowed && known_account).then(|| w.issue_qr())
    });
    match uuid {
        Some(uuid) => {
            auto_login(shared, &uuid, false);
            Reply::text(
                format!("{{\"msg\":\"all ok\",\"uuid\":\"{uuid}\",\"ret\":\"0\"}}"),
                Verdict::Ok,
            )
        }
        None => Reply::text(
            "{\"ret\":\"1\",\"msg\":\"param error\"}",
            Verdict::Refused(1),
        ),
    }
}

fn logout(shared: &Arc<Shared>, req: &SimRequest) -> Reply {
    let form: Vec<(String, String)> = url::form_urlencoded::parse(&req.body)
        .into_owned()
        .collect();
    let field = |name: &str| super::pair(&form, name);
    let ended = shared.update(|w| {
        let uin = w.uin.to_string();
        let session = w.session.as_mut().filter(|s| s.ended.is_none())?;
        let matches = req.query("skey") == Some(session.skey.as_str())
            && field("sid") == Some(session.sid.as_str())
            && field("uin") == Some(uin.as_str());
        matches.then(|| session.ended = Some(INVALID))
    });
    match ended {
        Some(()) => Reply::text("", Verdict::Ok),
        None => Reply::text("", Verdict::Refused(NOT_LOGGED_IN)),
    }
}

// ---- JSON calls ----

/// What a JSON handler gets: the world, the live session's request and its body.
type JsonHandler = fn(&mut World, &SimRequest, &Value) -> Result<Value, i64>;

/// The checks every JSON POST shares (body, cookies, pass_ticket, BaseRequest), then the
/// handler; a refusal is `Ret` with an otherwise all-empty body.
fn json_call(shared: &Arc<Shared>, req: &SimRequest, handler: JsonHandler) -> Reply {
    let Some(body) = checks::json_body(req) else {
        return Reply::empty();
    };
    let answer = shared.update(|w| {
        let uin = w.uin;
        let session = checks::session(w, req, true)?;
        checks::base_request(uin, session, &body)?;
        handler(w, req, &body)
    });
    match answer {
        Ok(value) => Reply::text(pretty(&value), Verdict::Ok),
        Err(ret) => refused_json(req, ret),
    }
}

/// An all-empty body of the endpoint's shape with this `Ret`.
fn refused_json(req: &SimRequest, ret: i64) -> Reply {
    let base = serde_json::to_value(BaseResponse {
        ret,
        err_msg: String::new(),
    })
    .unwrap_or(Value::Null);
    let empty_key = json!({"Count": 0, "List": []});
    let body = if req.path.ends_with("webwxinit") {
        json!({"BaseResponse": base, "Count": 0, "ContactList": [], "SyncKey": empty_key,
               "User": {"Uin": 0, "UserName": "", "NickName": "", "HeadImgUrl": "",
                        "RemarkName": "", "PYInitial": "", "PYQuanPin": "",
                        "RemarkPYInitial": "", "RemarkPYQuanPin": "", "HideInputBarFlag": 0,
                        "StarFriend": 0, "Sex": 0, "Signature": "", "AppAccountFlag": 0,
                        "VerifyFlag": 0, "ContactFlag": 0, "WebWxPluginSwitch": 0,
                        "HeadImgFlag": 0, "SnsFlag": 0},
               "ChatSet": "", "SKey": "", "ClientVersion": 0, "SystemTime": 0,
               "GrayScale": 0, "InviteStartCount": 0, "MPSubscribeMsgCount": 0,
               "MPSubscribeMsgList": [], "ClickReportInterval": 0})
    } else if req.path.ends_with("webwxsync") {
        json!({"BaseResponse": base, "AddMsgCount": 0, "AddMsgList": [], "ModContactCount": 0,
               "ModContactList": [], "DelContactCount": 0, "DelContactList": [],
               "ModChatRoomMemberCount": 0, "ModChatRoomMemberList": [],
               "Profile": profile(""), "ContinueFlag": 0, "SyncKey": empty_key,
               "SKey": "", "SyncCheckKey": empty_key})
    } else if req.path.ends_with("webwxgetcontact") {
        json!({"BaseResponse": base, "MemberCount": 0, "MemberList": [], "Seq": 0})
    } else if req.path.ends_with("webwxbatchgetcontact") {
        json!({"BaseResponse": base, "Count": 0, "ContactList": []})
    } else {
        json!({"BaseResponse": base, "MsgID": ""})
    };
    Reply::text(pretty(&body), Verdict::Refused(ret))
}

/// WeChat's JSON layout: pretty-printed with a one-space indent.
fn pretty(value: &Value) -> String {
    let mut out = Vec::new();
    let formatter = serde_json::ser::PrettyFormatter::with_indent(b" ");
    let mut ser = serde_json::Serializer::with_formatter(&mut out, formatter);
    match serde::Serialize::serialize(value, &mut ser) {
        Ok(()) => String::from_utf8(out).unwrap_or_default(),
        Err(_) => String::new(),
    }
}

fn ok() -> Value {
    json!({"Ret": 0, "ErrMsg": ""})
}

/// The `Profile` block webwxsync carries (nothing changed).
fn profile(user_name: &str) -> Value {
    json!({"BitFlag": 0, "UserName": {"Buff": user_name}, "NickName": {"Buff": ""},
           "BindUin": 0, "BindEmail": {"Buff": ""}, "BindMobile": {"Buff": ""}, "Status": 0,
           "Sex": 0, "PersonalCard": 0, "Alias": "", "HeadImgUpdateFlag": 0,
           "HeadImgUrl": "", "Signature": ""})
}

/// webwxinit: the own record, recent chats, the first SyncKey, and a new SKey that replaces
/// the ticket's (the old one is refused from now on). The status-notify message and any
/// held messages go on the log, after the position this SyncKey stands for.
fn init(w: &mut World, _req: &SimRequest, _body: &Value) -> Result<Value, i64> {
    let me = w.me.clone();
    let recent: Vec<_> = w
        .book
        .iter()
        .filter(|e| e.listed)
        .take(w.recent_chats)
        .map(|e| e.contact.clone())
        .collect();
    let chat_set = recent
        .iter()
        .map(|c| c.user_name.as_str())
        .chain([me.user_name.as_str()])
        .collect::<Vec<_>>()
        .join(",");
    let now = w.now();
    let held = std::mem::take(&mut w.held);
    let session = w.session.as_mut().ok_or(NOT_LOGGED_IN)?;
    let fresh = super::ids::skey();
    let old = std::mem::replace(&mut session.skey, fresh.clone());
    session.old_skeys.push(old);
    let sync_key = session.sync_key(session.log.len(), false, now);
    let (notify, extras) = messages::status_notify(&me.user_name, &chat_set, now);
    session.log.push(LogEntry {
        msg: notify,
        sender: None,
        extras,
        new_contacts: Vec::new(),
        raw: None,
    });
    session.log.extend(held);
    session.initialized = true;
    let mut user = contact_json(&me);
    if let Value::Object(map) = &mut user {
        map.insert("Uin".into(), json!(w.uin));
        map.insert("WebWxPluginSwitch".into(), json!(0));
        map.insert("HeadImgFlag".into(), json!(1));
    }
    Ok(json!({
        "BaseResponse": ok(),
        "Count": recent.len(),
        "ContactList": recent.iter().map(contact_json).collect::<Vec<_>>(),
        "SyncKey": sync_key,
        "User": user,
        "ChatSet": chat_set,
        "SKey": fresh,
        "ClientVersion": 654_313_778,
        "SystemTime": now,
        "GrayScale": 1,
        "InviteStartCount": 40,
        "MPSubscribeMsgCount": 0,
        "MPSubscribeMsgList": [],
        "ClickReportInterval": 600_000,
    }))
}

/// webwxstatusnotify: the client tells the server it opened its own chat; `FromUserName`
/// must be this login's own user name (the simulator's reading: Ret 1 otherwise).
fn status_notify(w: &mut World, _req: &SimRequest, body: &Value) -> Result<Value, i64> {
    let from = body.get("FromUserName").and_then(Value::as_str);
    if from != Some(w.me.user_name.as_str()) {
        return Err(1);
    }
    Ok(json!({"BaseResponse": ok(), "MsgID": super::ids::msg_id().to_string()}))
}

/// webwxsendmsg: a text to a contact of this login (or the own 文件传输助手), kept for
/// [`Simulator::sent_messages`](super::Simulator::sent_messages). The shape is checked as
/// the web client builds it; anything else is the simulator's reading: `Ret` 1.
fn send_msg(w: &mut World, _req: &SimRequest, body: &Value) -> Result<Value, i64> {
    let msg = body.get("Msg").ok_or(1)?;
    let field = |name: &str| msg.get(name).and_then(Value::as_str).unwrap_or_default();
    let local_id = field("LocalID");
    let well_formed = body.get("Scene").and_then(Value::as_i64) == Some(0)
        && msg.get("Type").and_then(Value::as_i64) == Some(1)
        && field("FromUserName") == w.me.user_name
        && local_id.len() == 17
        && local_id.bytes().all(|b| b.is_ascii_digit())
        && field("ClientMsgId") == local_id
        && !field("Content").is_empty();
    if !well_formed {
        return Err(1);
    }
    let to = field("ToUserName");
    let to_nick = match w.contact_by_user_name(to) {
        Some(c) if to != w.me.user_name => c.nick_name.clone(),
        _ => return Err(1),
    };
    if let Some(ret) = w.send_refusal {
        return Err(ret);
    }
    let sent = state::SentMessage {
        to: to.to_string(),
        to_nick,
        content: field("Content").to_string(),
        local_id: local_id.to_string(),
        at: w.now(),
    };
    w.sent.push(sent);
    let msg_id = super::ids::msg_id().to_string();
    Ok(json!({"BaseResponse": ok(), "MsgID": msg_id, "LocalID": local_id}))
}

/// webwxbatchgetcontact: records for up to 50 user names; unknown names are left out.
fn batch_get_contact(w: &mut World, _req: &SimRequest, body: &Value) -> Result<Value, i64> {
    let list = body.get("List").and_then(Value::as_array).ok_or(1)?;
    if list.len() > 50 {
        // The web client never asks for more; the simulator's reading: Ret 1.
        return Err(1);
    }
    let found: Vec<Value> = list
        .iter()
        .filter_map(|item| item.get("UserName").and_then(Value::as_str))
        .filter_map(|name| w.contact_by_user_name(name))
        .map(contact_json)
        .collect();
    Ok(json!({"BaseResponse": ok(), "Count": found.len(), "ContactList": found}))
}

/// webwxsync: the messages after the position the sent SyncKey stands for (a stale key
/// gets the same messages again), a page at a time, with the next SyncKey/SyncCheckKey.
fn sync(w: &mut World, req: &SimRequest, body: &Value) -> Result<Value, i64> {
    let sent: SyncKey = body
        .get("SyncKey")
        .cloned()
        .and_then(|v| serde_json::from_value(v).ok())
        .ok_or(INVALID)?;
    let page = w.sync_page_size.max(1);
    let now = w.now();
    let endless = w.misbehaviour == Misbehaviour::EndlessContinueFlag;
    let session = w.session.as_mut().ok_or(NOT_LOGGED_IN)?;
    if req.query("sid") != Some(session.sid.as_str()) {
        return Err(NOT_LOGGED_IN);
    }
    if req.query("skey") != Some(session.skey.as_str()) {
        return Err(INVALID);
    }
    let from = *session.issued.get(&sent.to_query()).ok_or(INVALID)?;
    let to = from.saturating_add(page).min(session.log.len());
    session.acked = session.acked.max(from);
    let next = session.sync_key(to, true, now);
    let more = to < session.log.len();
    let skey = session.skey.clone();
    let me = session.user_name.clone();
    let entries: Vec<LogEntry> = session.log[from..to].to_vec();
    let messages: Vec<Value> = entries.iter().map(|e| w.served(e)).collect();
    let new_contacts: Vec<Value> = entries
        .iter()
        .flat_map(|e| e.new_contacts.iter())
        .filter_map(|&i| w.book.get(i))
        .map(|e| contact_json(&e.contact))
        .collect();
    Ok(json!({
        "BaseResponse": ok(),
        "AddMsgCount": messages.len(),
        "AddMsgList": messages,
        "ModContactCount": new_contacts.len(),
        "ModContactList": new_contacts,
        "DelContactCount": 0,
        "DelContactList": [],
        "ModChatRoomMemberCount": 0,
        "ModChatRoomMemberList": [],
        "Profile": profile(&me),
        "ContinueFlag": u32::from(more || endless),
        "SyncKey": next,
        "SKey": skey,
        "SyncCheckKey": next,
    }))
}

// ---- GET calls with a session ----

/// webwxgetcontact: the listed address book, `contact_page_size` at a time; `Seq` is the
/// cursor for the next page and 0 on the last one.
fn get_contact(shared: &Arc<Shared>, req: &SimRequest) -> Reply {
    let page = shared.config.contact_page_size.max(1);
    let answer = shared.with(|w| {
        let session = checks::session(w, req, true)?;
        if req.query("skey") != Some(session.skey.as_str()) {
            return Err(INVALID);
        }
        let seq: u64 = req
            .query("seq")
            .and_then(|s| s.parse().ok())
            .ok_or(INVALID)?;
        let offset = if seq == 0 {
            0
        } else {
            usize::try_from(seq.saturating_sub(session.seq_base)).unwrap_or(usize::MAX)
        };
        let seq_base = session.seq_base;
        let listed: Vec<_> = w.book.iter().filter(|e| e.listed).collect();
        let slice: Vec<Value> = listed
            .iter()
            .skip(offset)
            .take(page)
            .map(|e| contact_json(&e.contact))
            .collect();
        let end = offset.saturating_add(page);
        let next = if end < listed.len() {
            seq_base + end as u64
        } else {
            0
        };
        Ok(json!({"BaseResponse": ok(), "MemberCount": slice.len(), "MemberList": slice, "Seq": next}))
    });
    match answer {
        Ok(value) => Reply::text(pretty(&value), Verdict::Ok),
        Err(ret) => refused_json(req, ret),
    }
}

fn synccheck_body(retcode: i64, selector: i64) -> String {
    format!("window.synccheck={{retcode:\"{retcode}\",selector:\"{selector}\"}}")
}

/// synccheck: refuses a request that does not belong to the session, answers selector 2 at
/// once if messages wait after the sent synckey, and otherwise holds for the long-poll
/// time (ending early when a message arrives or the session ends).
async fn sync_check(shared: &Arc<Shared>, req: &SimRequest) -> Reply {
    let position = match shared.with(|w| sync_check_position(w, req)) {
        Ok(pos) => pos,
        Err(code) => return Reply::js(synccheck_body(code, 0), Verdict::Refused(code)),
    };
    if let Some(reply) = misbehave_on_synccheck(shared) {
        return reply;
    }
    let outcome = shared
        .wait_for(shared.config.long_poll, |w| match &w.session {
            Some(s) if s.ended.is_some() => s.ended.map(Err),
            Some(s) if s.log.len() > position => Some(Ok(2)),
            Some(_) => None,
            None => Some(Err(NOT_LOGGED_IN)),
        })
        .await;
    match outcome {
        Some(Ok(selector)) => Reply::js(synccheck_body(0, selector), Verdict::Ok),
        Some(Err(code)) => Reply::js(synccheck_body(code, 0), Verdict::Refused(code)),
        None => Reply::js(synccheck_body(0, 0), Verdict::Ok),
    }
}

/// What synccheck answers under a [`Misbehaviour`] that concerns it, if one is on.
fn misbehave_on_synccheck(shared: &Arc<Shared>) -> Option<Reply> {
    match shared.with(|w| w.misbehaviour) {
        Misbehaviour::EndlessSelector => Some(Reply::js(synccheck_body(0, 2), Verdict::Ok)),
        Misbehaviour::InstantLogout(code) => {
            shared.update(|w| {
                if let Some(s) = w.session.as_mut() {
                    s.ended = Some(code);
                }
            });
            Some(Reply::js(synccheck_body(code, 0), Verdict::Refused(code)))
        }
        Misbehaviour::None | Misbehaviour::EndlessContinueFlag => None,
    }
}

/// The log position synccheck's `synckey` stands for, after the session checks.
fn sync_check_position(w: &World, req: &SimRequest) -> Result<usize, i64> {
    let session = w.session.as_ref().ok_or(NOT_LOGGED_IN)?;
    if let Some(code) = session.ended {
        return Err(code);
    }
    if !checks::cookies_match(w.uin, session, req) {
        return Err(COOKIES_MISSING);
    }
    let uin = w.uin.to_string();
    if req.query("uin") != Some(uin.as_str())
        || req.query("sid") != Some(session.sid.as_str())
        || !req.query("deviceid").is_some_and(checks::is_device_id)
    {
        return Err(NOT_LOGGED_IN);
    }
    if req.query("skey") != Some(session.skey.as_str()) {
        return Err(INVALID);
    }
    let synckey = req.query("synckey").unwrap_or_default();
    session.issued.get(synckey).copied().ok_or(INVALID)
}
