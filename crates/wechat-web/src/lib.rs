//! The WeChat web protocol's wire formats, shared by the client (`session`) and the
//! simulator (`simulator`), with no I/O in here.
//!
//! The server speaks three dialects: JavaScript assignments (`window.QRLogin.uuid = "…";`),
//! an XML login ticket whose root is `<error>` even on success, and JSON served as
//! `text/plain`. Field names follow the server's spelling (`BaseRequest`, `SyncKey`, …) so a
//! reader can match them to `docs/protocol/WECHAT-WEB.md` and to captures.

use serde::{Deserialize, Serialize};

pub mod money;

/// The application id every web client sends to `jslogin`.
pub const APP_ID: &str = "wx782c26e4c19acffb";

/// Errors in what the server sent: the body did not have the expected shape.
#[derive(Debug, thiserror::Error, PartialEq, Eq)]
pub enum ParseError {
    #[error("expected `{what}` in the response, got {excerpt:?}")]
    Missing { what: &'static str, excerpt: String },
    #[error("the login ticket XML is malformed: {0}")]
    TicketXml(String),
}

/// First characters of a body, for error messages that say what came back.
pub fn excerpt(body: &str) -> String {
    const MAX: usize = 200;
    match body.char_indices().nth(MAX) {
        Some((i, _)) => format!("{}…", &body[..i]),
        None => body.to_string(),
    }
}

/// Finds `name = <value>` in a JavaScript-assignment body and returns the value, unquoted,
/// without the trailing `;`. Whitespace around `=` varies between endpoints.
pub fn js_value<'a>(body: &'a str, name: &str) -> Option<&'a str> {
    let mut rest = body;
    while let Some(pos) = rest.find(name) {
        let after = &rest[pos + name.len()..];
        let trimmed = after.trim_start();
        if let Some(value) = trimmed.strip_prefix('=') {
            let value = value.trim_start();
            return Some(match value.chars().next() {
                Some(q @ ('"' | '\'')) => {
                    let inner = &value[1..];
                    inner.find(q).map_or(inner, |end| &inner[..end])
                }
                _ => {
                    let end = value.find([';', '\n', '}', ',']).unwrap_or(value.len());
                    value[..end].trim()
                }
            });
        }
        rest = after;
    }
    None
}

/// `window.QRLogin.code = 200; window.QRLogin.uuid = "gbyKnbsmqQ==";`
pub fn parse_qrlogin(body: &str) -> Result<String, ParseError> {
    let code = js_value(body, "window.QRLogin.code");
    match (code, js_value(body, "window.QRLogin.uuid")) {
        (Some("200"), Some(uuid)) if !uuid.is_empty() => Ok(uuid.to_string()),
        _ => Err(ParseError::Missing {
            what: "window.QRLogin.code = 200 and a uuid",
            excerpt: excerpt(body),
        }),
    }
}

/// What one poll of `cgi-bin/mmwebwx-bin/login` said.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum LoginPoll {
    /// 408: nobody has scanned yet; poll again.
    Waiting,
    /// 201: scanned on the phone, not yet confirmed; poll on with `tip=0`.
    Scanned,
    /// 200: confirmed; follow this redirect to get the ticket.
    Confirmed { redirect_uri: String },
    /// 400 (or 500): the QR code expired; fetch a new uuid.
    Expired,
    /// Any other code the server may invent.
    Other(String),
}

/// `window.code=200;\nwindow.redirect_uri="https://…";`
pub fn parse_login_poll(body: &str) -> Result<LoginPoll, ParseError> {
    let missing = || ParseError::Missing {
        what: "window.code",
        excerpt: excerpt(body),
    };
    let code = js_value(body, "window.code").ok_or_else(missing)?;
    Ok(match code {
        "408" => LoginPoll::Waiting,
        "201" => LoginPoll::Scanned,
        "400" | "500" => LoginPoll::Expired,
        "200" => {
            let uri = js_value(body, "window.redirect_uri").ok_or(ParseError::Missing {
                what: "window.redirect_uri",
                excerpt: excerpt(body),
            })?;
            LoginPoll::Confirmed {
                redirect_uri: uri.to_string(),
            }
        }
        other => LoginPoll::Other(other.to_string()),
    })
}

/// `window.synccheck={retcode:"0",selector:"2"}`
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct SyncCheck {
    pub retcode: i64,
    pub selector: i64,
}

pub fn parse_synccheck(body: &str) -> Result<SyncCheck, ParseError> {
    let number = |name: &'static str| {
        js_value_in_object(body, name)
            .and_then(|v| v.parse::<i64>().ok())
            .ok_or(ParseError::Missing {
                what: name,
                excerpt: excerpt(body),
            })
    };
    Ok(SyncCheck {
        retcode: number("retcode")?,
        selector: number("selector")?,
    })
}

/// `retcode:"0"` inside a JS object literal.
fn js_value_in_object<'a>(body: &'a str, key: &str) -> Option<&'a str> {
    let start = body.find(&format!("{key}:"))? + key.len() + 1;
    let value = body[start..].trim_start();
    let value = value.strip_prefix('"').unwrap_or(value);
    let end = value.find(['"', ',', '}'])?;
    Some(value[..end].trim())
}

/// The XML ticket from the redirect (`<error><ret>0</ret>…</error>`).
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct LoginTicket {
    pub ret: i64,
    pub message: String,
    pub skey: String,
    pub wxsid: String,
    pub wxuin: String,
    /// Already percent-encoded by the server; encoded once more in later query strings.
    pub pass_ticket: String,
}

pub fn parse_ticket(body: &str) -> Result<LoginTicket, ParseError> {
    use quick_xml::events::Event;
    let mut reader = quick_xml::Reader::from_str(body);
    let mut ticket = LoginTicket::default();
    let mut current: Option<String> = None;
    let mut saw_ret = false;
    loop {
        match reader.read_event() {
            Ok(Event::Start(e)) => {
                current = Some(String::from_utf8_lossy(e.name().as_ref()).into_owned());
            }
            Ok(Event::End(_)) => current = None,
            Ok(Event::Text(t)) => {
                let text = t
                    .decode()
                    .map_err(|e| ParseError::TicketXml(e.to_string()))?
                    .into_owned();
                if let Some(name) = current.as_deref() {
                    saw_ret |= name == "ret";
                    set_ticket_field(&mut ticket, name, text.trim())?;
                }
            }
            Ok(Event::CData(t)) => {
                let text = String::from_utf8_lossy(&t).into_owned();
                if let Some(name) = current.as_deref() {
                    set_ticket_field(&mut ticket, name, text.trim())?;
                }
            }
            Ok(Event::Eof) => break,
            Ok(_) => {}
            Err(e) => return Err(ParseError::TicketXml(e.to_string())),
        }
    }
    if !saw_ret {
        return Err(ParseError::Missing {
            what: "<ret> in the login ticket",
            excerpt: excerpt(body),
        });
    }
    Ok(ticket)
}

fn set_ticket_field(ticket: &mut LoginTicket, name: &str, text: &str) -> Result<(), ParseError> {
    match name {
        "ret" => {
            ticket.ret = text
                .parse()
                .map_err(|_| ParseError::TicketXml(format!("<ret> is not a number: {text:?}")))?
        }
        "message" => ticket.message = text.to_string(),
        "skey" => ticket.skey = text.to_string(),
        "wxsid" => ticket.wxsid = text.to_string(),
        "wxuin" => ticket.wxuin = text.to_string(),
        "pass_ticket" => ticket.pass_ticket = text.to_string(),
        _ => {}
    }
    Ok(())
}

/// Sent in every JSON request; the server checks each field against the session.
#[derive(Debug, Clone, Default, Serialize, Deserialize, PartialEq, Eq)]
#[serde(rename_all = "PascalCase")]
pub struct BaseRequest {
    /// A number, though the browser sends it as a string in webwxinit: accept both.
    #[serde(deserialize_with = "number_or_string")]
    pub uin: u64,
    pub sid: String,
    pub skey: String,
    #[serde(rename = "DeviceID")]
    pub device_id: String,
}

fn number_or_string<'de, D: serde::Deserializer<'de>>(d: D) -> Result<u64, D::Error> {
    #[derive(Deserialize)]
    #[serde(untagged)]
    enum Either {
        N(u64),
        S(String),
    }
    match Either::deserialize(d)? {
        Either::N(n) => Ok(n),
        Either::S(s) => s.trim().parse().map_err(serde::de::Error::custom),
    }
}

#[derive(Debug, Clone, Default, Serialize, Deserialize, PartialEq, Eq)]
#[serde(rename_all = "PascalCase", default)]
pub struct BaseResponse {
    pub ret: i64,
    pub err_msg: String,
}

#[derive(Debug, Clone, Copy, Default, Serialize, Deserialize, PartialEq, Eq)]
#[serde(rename_all = "PascalCase")]
pub struct KeyVal {
    pub key: u64,
    pub val: u64,
}

/// The server's cursor into the message stream. Must be sent back as received.
#[derive(Debug, Clone, Default, Serialize, Deserialize, PartialEq, Eq)]
#[serde(rename_all = "PascalCase", default)]
pub struct SyncKey {
    pub count: u32,
    pub list: Vec<KeyVal>,
}

impl SyncKey {
    pub fn new(list: Vec<KeyVal>) -> Self {
        SyncKey {
            count: list.len() as u32,
            list,
        }
    }

    /// The `synckey` query parameter of synccheck: `1_652651920|2_652651939|…`.
    pub fn to_query(&self) -> String {
        self.list
            .iter()
            .map(|kv| format!("{}_{}", kv.key, kv.val))
            .collect::<Vec<_>>()
            .join("|")
    }

    pub fn is_empty(&self) -> bool {
        self.list.is_empty()
    }
}

/// A contact record: a person, group, or official account. Only these fields tell who a
/// sender really is, since user names are per-session hashes.
#[derive(Debug, Clone, Default, Serialize, Deserialize, PartialEq, Eq)]
#[serde(rename_all = "PascalCase", default)]
pub struct Contact {
    pub user_name: String,
    pub nick_name: String,
    pub remark_name: String,
    /// `VerifyFlag & 8 != 0` marks an official (verified) account; people have 0.
    pub verify_flag: u32,
    /// "gh_" for official accounts in some captures.
    pub key_word: String,
    pub contact_flag: u32,
    pub member_count: u32,
}

impl Contact {
    pub fn is_official_account(&self) -> bool {
        self.verify_flag & 8 != 0
    }
}

/// One entry of `AddMsgList`.
///
/// Read forgivingly where the meaning is plain (a null string is empty, a number may come
/// as a string), strictly where a guess could mislead: a message without an id, or whose
/// MsgType is not a number, cannot be read (see [`UnreadableMessage`]).
#[derive(Debug, Clone, Default, Serialize, Deserialize, PartialEq, Eq)]
#[serde(rename_all = "PascalCase", default)]
pub struct Message {
    #[serde(deserialize_with = "string_or_number")]
    pub msg_id: String,
    #[serde(deserialize_with = "null_as_default")]
    pub from_user_name: String,
    #[serde(deserialize_with = "null_as_default")]
    pub to_user_name: String,
    #[serde(deserialize_with = "code")]
    pub msg_type: u32,
    /// HTML-escaped XML for app messages, with `<br/>` for newlines.
    #[serde(deserialize_with = "null_as_default")]
    pub content: String,
    #[serde(deserialize_with = "code_or_null")]
    pub status: u32,
    #[serde(deserialize_with = "null_as_default")]
    pub create_time: i64,
    #[serde(deserialize_with = "null_as_default")]
    pub file_name: String,
    #[serde(deserialize_with = "null_as_default")]
    pub url: String,
    #[serde(deserialize_with = "code_or_null")]
    pub app_msg_type: u32,
    #[serde(deserialize_with = "null_as_default")]
    pub new_msg_id: u64,
}

/// A message id: a string, or a number as some replies carry it. Null is no id.
fn string_or_number<'de, D: serde::Deserializer<'de>>(d: D) -> Result<String, D::Error> {
    struct Id;
    impl serde::de::Visitor<'_> for Id {
        type Value = String;
        fn expecting(&self, f: &mut std::fmt::Formatter) -> std::fmt::Result {
            f.write_str("a message id (a string or a number)")
        }
        fn visit_str<E: serde::de::Error>(self, v: &str) -> Result<String, E> {
            Ok(v.to_string())
        }
        fn visit_string<E: serde::de::Error>(self, v: String) -> Result<String, E> {
            Ok(v)
        }
        fn visit_u64<E: serde::de::Error>(self, v: u64) -> Result<String, E> {
            Ok(v.to_string())
        }
        fn visit_i64<E: serde::de::Error>(self, v: i64) -> Result<String, E> {
            Ok(v.to_string())
        }
    }
    d.deserialize_any(Id)
}

/// Null read as the type's empty value: the server sends `null` for fields it has nothing in.
fn null_as_default<'de, D, T>(d: D) -> Result<T, D::Error>
where
    D: serde::Deserializer<'de>,
    T: Deserialize<'de> + Default,
{
    Ok(Option::<T>::deserialize(d)?.unwrap_or_default())
}

/// A type code (MsgType): a number, or a number in a string.
fn code<'de, D: serde::Deserializer<'de>>(d: D) -> Result<u32, D::Error> {
    d.deserialize_any(Code { null: None })
}

/// [`code`], with null read as 0 (AppMsgType, Status: 0 is "none").
fn code_or_null<'de, D: serde::Deserializer<'de>>(d: D) -> Result<u32, D::Error> {
    d.deserialize_any(Code { null: Some(0) })
}

/// What [`code`] and [`code_or_null`] accept; `null` is what a JSON null stands for, if
/// anything.
struct Code {
    null: Option<u32>,
}

impl serde::de::Visitor<'_> for Code {
    type Value = u32;
    fn expecting(&self, f: &mut std::fmt::Formatter) -> std::fmt::Result {
        f.write_str("a type code (a number, or a number in a string)")
    }
    fn visit_u64<E: serde::de::Error>(self, v: u64) -> Result<u32, E> {
        u32::try_from(v).map_err(|_| E::invalid_value(serde::de::Unexpected::Unsigned(v), &self))
    }
    fn visit_i64<E: serde::de::Error>(self, v: i64) -> Result<u32, E> {
        u32::try_from(v).map_err(|_| E::invalid_value(serde::de::Unexpected::Signed(v), &self))
    }
    fn visit_str<E: serde::de::Error>(self, v: &str) -> Result<u32, E> {
        v.trim()
            .parse()
            .map_err(|_| E::invalid_value(serde::de::Unexpected::Str(v), &self))
    }
    fn visit_unit<E: serde::de::Error>(self) -> Result<u32, E> {
        self.null
            .ok_or_else(|| E::invalid_type(serde::de::Unexpected::Unit, &self))
    }
}

/// An `AddMsgList` entry that could not be read as a [`Message`]: what can still be said
/// of it, for the log. It is skipped, so that one bad entry does not hold up the rest of
/// the stream: the SyncKey moves past it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct UnreadableMessage {
    /// Its MsgId, when that much is readable.
    pub msg_id: Option<String>,
    /// Its FromUserName, when readable (else empty).
    pub from_user_name: String,
    /// What did not fit.
    pub error: String,
    /// The entry as JSON (so control characters come escaped), cut to 200 characters.
    pub excerpt: String,
    /// MsgType 49 (app message, as every payment notice is) or words of money in it: the
    /// owner must look at the phone, as paysay cannot tell.
    pub may_be_payment: bool,
}

impl UnreadableMessage {
    /// Words found in collection notices, transfers and red packets.
    const MONEY_WORDS: [&'static str; 5] = ["收款", "转账", "红包", "微信支付", "wxpay"];

    fn describe(entry: &serde_json::Value, error: serde_json::Error) -> UnreadableMessage {
        let text = |key: &str| match entry.get(key) {
            Some(serde_json::Value::String(s)) => Some(s.clone()),
            Some(serde_json::Value::Number(n)) => Some(n.to_string()),
            _ => None,
        };
        let json = entry.to_string();
        let app_message = text("MsgType").is_some_and(|t| t.trim() == "49");
        UnreadableMessage {
            msg_id: text("MsgId").filter(|id| !id.is_empty()),
            from_user_name: text("FromUserName").unwrap_or_default(),
            error: error.to_string(),
            may_be_payment: app_message || Self::MONEY_WORDS.iter().any(|w| json.contains(w)),
            excerpt: excerpt(&json),
        }
    }
}

/// MsgType values (`Message::msg_type`).
pub mod msg_type {
    pub const TEXT: u32 = 1;
    pub const APP: u32 = 49;
    pub const STATUS_NOTIFY: u32 = 51;
    pub const SYSTEM: u32 = 10000;
}

/// AppMsgType values for `MsgType` 49.
pub mod app_msg_type {
    pub const LINK: u32 = 5;
    pub const TRANSFER: u32 = 2000;
    pub const RED_PACKET: u32 = 2001;
}

#[derive(Debug, Clone, Default, Serialize, Deserialize, PartialEq, Eq)]
#[serde(rename_all = "PascalCase", default)]
pub struct InitResponse {
    pub base_response: BaseResponse,
    pub user: Contact,
    pub count: u32,
    pub contact_list: Vec<Contact>,
    pub sync_key: SyncKey,
    #[serde(rename = "SKey")]
    pub skey: String,
    pub chat_set: String,
    pub system_time: i64,
}

#[derive(Debug, Clone, Default, Serialize, Deserialize, PartialEq, Eq)]
#[serde(rename_all = "PascalCase", default)]
pub struct ContactListResponse {
    pub base_response: BaseResponse,
    pub member_count: u32,
    pub member_list: Vec<Contact>,
    pub seq: u64,
}

#[derive(Debug, Clone, Default, Serialize, Deserialize, PartialEq, Eq)]
#[serde(rename_all = "PascalCase", default)]
pub struct BatchContactResponse {
    pub base_response: BaseResponse,
    pub count: u32,
    pub contact_list: Vec<Contact>,
}

#[derive(Debug, Clone, Default, Deserialize, PartialEq, Eq)]
#[serde(rename_all = "PascalCase", default)]
pub struct SyncResponse {
    pub base_response: BaseResponse,
    pub add_msg_count: u32,
    pub add_msg_list: Vec<Message>,
    /// Entries of `AddMsgList` that could not be read (see [`SyncResponse::read_leniently`]).
    #[serde(skip)]
    pub unreadable: Vec<UnreadableMessage>,
    pub mod_contact_count: u32,
    pub mod_contact_list: Vec<Contact>,
    pub del_contact_count: u32,
    pub continue_flag: u32,
    pub sync_key: SyncKey,
    pub sync_check_key: SyncKey,
    #[serde(rename = "SKey")]
    pub skey: String,
}

impl SyncResponse {
    /// Reads a reply that did not parse as a whole, entry by entry: the rest of the reply
    /// (SyncKey, ContinueFlag, contacts) must fit, and each `AddMsgList` entry that does
    /// not goes to `unreadable`. Slower than the one-pass reading every reply gets first,
    /// so kept for the replies that need it.
    pub fn read_leniently(body: &str) -> Result<SyncResponse, serde_json::Error> {
        let mut whole: serde_json::Value = serde_json::from_str(body)?;
        // The list is taken out, the rest read as usual, then the entries one by one.
        let list = whole
            .get_mut("AddMsgList")
            .map(|slot| std::mem::replace(slot, serde_json::Value::Array(Vec::new())));
        let entries = match list {
            Some(serde_json::Value::Array(entries)) => entries,
            None | Some(serde_json::Value::Null) => Vec::new(),
            Some(other) => {
                return Err(serde::de::Error::custom(format!(
                    "AddMsgList is not a list: {}",
                    excerpt(&other.to_string())
                )));
            }
        };
        let mut response = SyncResponse::deserialize(whole)?;
        for entry in entries {
            match Message::deserialize(&entry) {
                Ok(message) => response.add_msg_list.push(message),
                Err(e) => response
                    .unreadable
                    .push(UnreadableMessage::describe(&entry, e)),
            }
        }
        Ok(response)
    }
}

/// Only the field every JSON response shares: for answers whose rest is not read, and to
/// tell a refusal apart from a malformed body when the rest does not fit.
#[derive(Debug, Clone, Default, Deserialize)]
#[serde(rename_all = "PascalCase", default)]
pub struct RetOnly {
    pub base_response: BaseResponse,
}

/// A JSON answer: its `BaseResponse.Ret` says whether the rest can be trusted.
pub trait JsonAnswer {
    fn base_response(&self) -> &BaseResponse;
}

macro_rules! json_answer {
    ($($t:ty),*) => {$(
        impl JsonAnswer for $t {
            fn base_response(&self) -> &BaseResponse {
                &self.base_response
            }
        }
    )*};
}

json_answer!(
    InitResponse,
    ContactListResponse,
    BatchContactResponse,
    SyncResponse,
    RetOnly
);

/// Which WeChat hosts a session talks to, derived from the login redirect's host. Sessions
/// saved by earlier builds also hold `file` and `login` hosts, which nothing used; serde
/// skips them when loading.
#[derive(Debug, Clone, Serialize, Deserialize, PartialEq, Eq)]
pub struct Hosts {
    /// The host of the redirect: webwxinit, webwxsync, contacts.
    pub web: String,
    /// synccheck's long-poll host.
    pub push: String,
}

impl Hosts {
    /// First substring of the redirect host that matches wins (order matters).
    pub fn for_redirect_host(host: &str) -> Hosts {
        const TABLE: &[(&str, &str)] = &[
            ("wx2.qq.com", "webpush.wx2.qq.com"),
            ("wx8.qq.com", "webpush.wx8.qq.com"),
            ("qq.com", "webpush.wx.qq.com"),
            ("web2.wechat.com", "webpush.web2.wechat.com"),
            ("wechat.com", "webpush.web.wechat.com"),
        ];
        let push = TABLE
            .iter()
            .find(|(needle, _)| host.contains(needle))
            // An unknown host (or the simulator): everything on that host.
            .map_or(host, |(_, push)| push);
        Hosts {
            web: host.to_string(),
            push: push.to_string(),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn qrlogin_uuid() {
        let body = r#"window.QRLogin.code = 200; window.QRLogin.uuid = "gbyKnbsmqQ==";"#;
        assert_eq!(parse_qrlogin(body).unwrap(), "gbyKnbsmqQ==");
        assert!(parse_qrlogin("window.QRLogin.code = 400;").is_err());
        assert!(parse_qrlogin("").is_err());
    }

    #[test]
    fn login_poll_codes() {
        assert_eq!(
            parse_login_poll("window.code=408;").unwrap(),
            LoginPoll::Waiting
        );
        assert_eq!(
            parse_login_poll("window.code=201;window.userAvatar = 'data:img/jpg;base64,AA';")
                .unwrap(),
            LoginPoll::Scanned
        );
        assert_eq!(
            parse_login_poll("window.code=400;").unwrap(),
            LoginPoll::Expired
        );
        let ok = "window.code=200;\nwindow.redirect_uri=\"https://wx2.qq.com/cgi-bin/mmwebwx-bin/webwxnewloginpage?ticket=A@qrticket_0&uuid=x==&lang=zh_CN&scan=1\";";
        assert_eq!(
            parse_login_poll(ok).unwrap(),
            LoginPoll::Confirmed {
                redirect_uri: "https://wx2.qq.com/cgi-bin/mmwebwx-bin/webwxnewloginpage?ticket=A@qrticket_0&uuid=x==&lang=zh_CN&scan=1".into()
            }
        );
        assert!(parse_login_poll("window.code=200;").is_err());
    }

    #[test]
    fn synccheck() {
        let sc = parse_synccheck(r#"window.synccheck={retcode:"0",selector:"2"}"#).unwrap();
        assert_eq!(
            sc,
            SyncCheck {
                retcode: 0,
                selector: 2
            }
        );
        let sc = parse_synccheck(r#"window.synccheck={retcode:"1101",selector:"0"}"#).unwrap();
        assert_eq!(sc.retcode, 1101);
        assert!(parse_synccheck("").is_err());
    }

    #[test]
    fn ticket_ok_and_refused() {
        let ok = "<error><ret>0</ret><message></message><skey>@crypt_1_2</skey><wxsid>abc</wxsid><wxuin>2663483803</wxuin><pass_ticket>a%2Fb%3D</pass_ticket><isgrayscale>1</isgrayscale></error>";
        let t = parse_ticket(ok).unwrap();
        assert_eq!(t.ret, 0);
        assert_eq!(t.wxuin, "2663483803");
        assert_eq!(t.pass_ticket, "a%2Fb%3D");
        let refused = "<error><ret>1203</ret><message>为了你的帐号安全，此微信号不能登录网页微信。</message></error>";
        let t = parse_ticket(refused).unwrap();
        assert_eq!(t.ret, 1203);
        assert!(t.message.starts_with("为了你的帐号安全"));
        assert!(parse_ticket("").is_err());
        assert!(parse_ticket("<error><ret>x</ret></error>").is_err());
    }

    #[test]
    fn base_request_uin_as_string_or_number() {
        let a: BaseRequest =
            serde_json::from_str(r#"{"Uin":"12","Sid":"s","Skey":"k","DeviceID":"e1"}"#).unwrap();
        let b: BaseRequest =
            serde_json::from_str(r#"{"Uin":12,"Sid":"s","Skey":"k","DeviceID":"e1"}"#).unwrap();
        assert_eq!(a, b);
    }

    #[test]
    fn hosts_table() {
        assert_eq!(
            Hosts::for_redirect_host("wx2.qq.com").push,
            "webpush.wx2.qq.com"
        );
        assert_eq!(
            Hosts::for_redirect_host("web.wechat.com").push,
            "webpush.web.wechat.com"
        );
        assert_eq!(Hosts::for_redirect_host("127.0.0.1:9").push, "127.0.0.1:9");
    }

    #[test]
    fn hosts_saved_with_file_and_login_still_load() {
        let saved = r#"{"web":"wx.qq.com","file":"file.wx.qq.com","push":"webpush.wx.qq.com","login":"login.wx.qq.com"}"#;
        assert_eq!(
            serde_json::from_str::<Hosts>(saved).unwrap(),
            Hosts::for_redirect_host("wx.qq.com")
        );
    }

    #[test]
    fn a_message_reads_nulls_as_empty_and_numbers_in_strings() {
        let m: Message = serde_json::from_str(
            r#"{"MsgId":12,"MsgType":"49","Content":null,"FromUserName":null,"Status":null,"AppMsgType":"2000","CreateTime":null}"#,
        )
        .unwrap();
        assert_eq!(m.msg_id, "12");
        assert_eq!(m.msg_type, 49);
        assert_eq!(m.app_msg_type, 2000);
        assert_eq!((m.content.as_str(), m.status, m.create_time), ("", 0, 0));
        for bad in [
            r#"{"MsgId":null,"MsgType":1}"#,
            r#"{"MsgId":"1","MsgType":"abc"}"#,
            r#"{"MsgId":"1","MsgType":null}"#,
            r#"{"MsgId":"1","MsgType":-1}"#,
            r#"{"MsgId":"1","MsgType":1,"Content":{"a":1}}"#,
        ] {
            assert!(serde_json::from_str::<Message>(bad).is_err(), "{bad}");
        }
    }

    fn sync_body(entries: &str) -> String {
        format!(
            r#"{{"BaseResponse":{{"Ret":0,"ErrMsg":""}},"AddMsgCount":3,"AddMsgList":{entries},"ContinueFlag":1,"SyncKey":{{"Count":1,"List":[{{"Key":1,"Val":7}}]}},"SKey":"k"}}"#
        )
    }

    #[test]
    fn an_unreadable_entry_is_set_aside_and_the_rest_of_the_reply_read() {
        let body = sync_body(
            r#"[{"MsgId":"a","MsgType":1,"Content":"hi"},
                {"MsgId":null,"MsgType":49,"Content":"<msg>收款\u001b</msg>","FromUserName":"@pay"},
                {"MsgId":"c","MsgType":"x","Content":"hello"},
                7,
                {"MsgId":"d","MsgType":1,"Content":null}]"#,
        );
        assert!(serde_json::from_str::<SyncResponse>(&body).is_err());
        let r = SyncResponse::read_leniently(&body).unwrap();
        let ids: Vec<&str> = r.add_msg_list.iter().map(|m| m.msg_id.as_str()).collect();
        assert_eq!(ids, ["a", "d"]);
        assert_eq!(r.continue_flag, 1);
        assert_eq!(r.sync_key.list, [KeyVal { key: 1, val: 7 }]);
        assert_eq!(r.skey, "k");
        assert_eq!(r.unreadable.len(), 3);
        let payment = &r.unreadable[0];
        assert_eq!(payment.msg_id, None);
        assert_eq!(payment.from_user_name, "@pay");
        assert!(payment.may_be_payment);
        assert!(!payment.excerpt.contains('\u{1b}'), "{:?}", payment.excerpt);
        assert_eq!(r.unreadable[1].msg_id.as_deref(), Some("c"));
        assert!(!r.unreadable[1].may_be_payment);
        assert!(
            r.unreadable[1].error.contains("type code"),
            "{}",
            r.unreadable[1].error
        );
    }

    #[test]
    fn a_reply_whose_own_fields_do_not_fit_is_still_refused() {
        let bad_key = sync_body("[]").replace(r#""Val":7"#, r#""Val":"x""#);
        assert!(SyncResponse::read_leniently(&bad_key).is_err());
        let not_a_list = sync_body(r#"{"MsgId":"a"}"#);
        assert!(SyncResponse::read_leniently(&not_a_list).is_err());
        assert!(SyncResponse::read_leniently("<html>").is_err());
        let none = SyncResponse::read_leniently(&sync_body("null")).unwrap();
        assert!(none.add_msg_list.is_empty() && none.unreadable.is_empty());
    }

    #[test]
    fn synckey_query() {
        let k = SyncKey::new(vec![
            KeyVal { key: 1, val: 5 },
            KeyVal { key: 1000, val: 0 },
        ]);
        assert_eq!(k.to_query(), "1_5|1000_0");
    }
}
