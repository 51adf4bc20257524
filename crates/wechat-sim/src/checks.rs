//! What a request must carry to be served, checked as WeChat checks it: the three session
//! cookies, the pass_ticket (encoded once more than the XML's), and a BaseRequest whose Uin,
//! Sid and Skey match the session and whose DeviceID looks like a browser's.
//!
//! The codes follow the protocol notes: a missing or foreign cookie, pass_ticket, Uin or Sid
//! is "not logged in" (1100); a wrong or replaced Skey is "session invalid" (1101).

use serde_json::Value;

use super::server::SimRequest;
use super::state::{Session, World};
use wechat_web::BaseRequest;

/// Not logged in / cookies, pass_ticket, Uin or Sid wrong.
pub const NOT_LOGGED_IN: i64 = 1100;
/// Session invalid: wrong or replaced Skey, unknown SyncKey.
pub const INVALID: i64 = 1101;
/// synccheck's answer when the session cookies are missing.
pub const COOKIES_MISSING: i64 = 1102;

/// The JSON body of a POST; `None` for an empty or non-JSON body, which gets an empty answer.
pub fn json_body(req: &SimRequest) -> Option<Value> {
    serde_json::from_slice(&req.body).ok()
}

/// The live session, if the request's cookies (and pass_ticket, where the call carries one)
/// belong to it.
pub fn session<'a>(
    world: &'a mut World,
    req: &SimRequest,
    needs_pass_ticket: bool,
) -> Result<&'a mut Session, i64> {
    let uin = world.uin;
    let session = world.session.as_mut().ok_or(NOT_LOGGED_IN)?;
    if let Some(code) = session.ended {
        return Err(code);
    }
    if !cookies_match(uin, session, req) {
        return Err(NOT_LOGGED_IN);
    }
    // The query value, decoded once by the parser, must be exactly the XML's (still
    // encoded) value: a client that did not encode it again sends `/` and fails here.
    if needs_pass_ticket && req.query("pass_ticket") != Some(session.pass_ticket.as_str()) {
        return Err(NOT_LOGGED_IN);
    }
    Ok(session)
}

/// wxuin, wxsid and webwx_data_ticket present and this session's.
pub fn cookies_match(uin: u64, session: &Session, req: &SimRequest) -> bool {
    req.cookie("wxuin") == Some(uin.to_string().as_str())
        && req.cookie("wxsid") == Some(session.sid.as_str())
        && req.cookie("webwx_data_ticket") == Some(session.data_ticket.as_str())
}

/// The body's BaseRequest against the session.
pub fn base_request(uin: u64, session: &Session, body: &Value) -> Result<(), i64> {
    let br: BaseRequest = body
        .get("BaseRequest")
        .cloned()
        .and_then(|v| serde_json::from_value(v).ok())
        .ok_or(NOT_LOGGED_IN)?;
    if br.uin != uin || br.sid != session.sid || !is_device_id(&br.device_id) {
        return Err(NOT_LOGGED_IN);
    }
    if br.skey != session.skey {
        return Err(INVALID);
    }
    Ok(())
}

/// `e` followed by 15 digits, as browsers make it.
pub fn is_device_id(id: &str) -> bool {
    id.len() == 16 && id.starts_with('e') && id[1..].bytes().all(|b| b.is_ascii_digit())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn device_ids() {
        assert!(is_device_id("e123456789012345"));
        assert!(!is_device_id("e12345678901234"));
        assert!(!is_device_id("x123456789012345"));
        assert!(!is_device_id("e12345678901234a"));
        assert!(!is_device_id("é23456789012345"));
    }
}
