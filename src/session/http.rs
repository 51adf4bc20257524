//! The HTTP layer of the session: host mapping, cookies, browser headers, and bodies decoded
//! from raw bytes as UTF-8.
//!
//! Cookies are kept here by name rather than in reqwest's jar: every WeChat host of a session
//! shares them (they are set for `.qq.com`), they must be saved to disk with the session, and
//! when `base_url` maps the hosts onto one test server, domain matching would drop them.

use std::collections::BTreeMap;
use std::sync::Mutex;
use std::time::Duration;

use reqwest::header::{
    ACCEPT, COOKIE, HeaderMap, HeaderValue, ORIGIN, REFERER, SET_COOKIE, USER_AGENT,
};
use serde::de::DeserializeOwned;
use url::Url;

use super::error::SessionError;
use crate::protocol::{self, BaseResponse, JsonAnswer, RetOnly};

/// The largest reply body read. Real replies are a few kB, a webwxsync burst or a large
/// contact list a few MB; a bigger body is a fault or an attack, and reading it whole (a
/// 400 MB webwxsync peaked at 832 MB) would cost the shop's small computer its memory.
pub const MAX_BODY_BYTES: u64 = 8 * 1024 * 1024;

/// A desktop Chrome, as today's working clients send. The server does not gate on it.
const BROWSER_UA: &str = "Mozilla/5.0 (Windows NT 10.0; Win64; x64) AppleWebKit/537.36 (KHTML, like Gecko) Chrome/120.0.0.0 Safari/537.36";

/// One HTTP exchange's answer, body already decoded.
#[derive(Debug)]
pub struct Reply {
    pub body: String,
    pub host: String,
    pub request: &'static str,
}

/// What to send; `host` is the real WeChat host, mapped onto `base_url` when set.
pub struct Request<'a> {
    pub name: &'static str,
    pub host: &'a str,
    pub path_and_query: String,
    pub json: Option<Vec<u8>>,
    pub timeout: Duration,
    pub headers: &'a [(&'static str, &'a str)],
}

/// The session's HTTP client.
pub struct Http {
    client: reqwest::Client,
    base_url: Option<Url>,
    cookies: Mutex<BTreeMap<String, String>>,
}

impl Http {
    pub fn new(base_url: Option<&str>) -> Result<Http, SessionError> {
        let client = reqwest::Client::builder()
            // The ticket request may answer 301 *carrying* the XML: never follow redirects.
            .redirect(reqwest::redirect::Policy::none())
            .connect_timeout(Duration::from_secs(10))
            .build()
            .map_err(SessionError::Client)?;
        let base_url = base_url
            .map(|u| Url::parse(u).map_err(|_| SessionError::BadRedirect { uri: u.to_string() }))
            .transpose()?;
        Ok(Http {
            client,
            base_url,
            cookies: Mutex::new(BTreeMap::new()),
        })
    }

    /// The URL for `path_and_query` on `host`, or on `base_url` when it is set.
    pub fn url(&self, host: &str, path_and_query: &str) -> String {
        match &self.base_url {
            Some(base) => format!("{}{}", base.as_str().trim_end_matches('/'), path_and_query),
            None => format!("https://{host}{path_and_query}"),
        }
    }

    pub fn cookies(&self) -> BTreeMap<String, String> {
        self.lock_cookies().clone()
    }

    pub fn cookie(&self, name: &str) -> Option<String> {
        self.lock_cookies().get(name).cloned()
    }

    pub fn set_cookies(&self, cookies: BTreeMap<String, String>) {
        *self.lock_cookies() = cookies;
    }

    fn lock_cookies(&self) -> std::sync::MutexGuard<'_, BTreeMap<String, String>> {
        // A poisoned lock only means another thread panicked mid-insert; the map is still usable.
        self.cookies.lock().unwrap_or_else(|e| e.into_inner())
    }

    pub async fn send(&self, req: Request<'_>) -> Result<Reply, SessionError> {
        let url = self.url(req.host, &req.path_and_query);
        // The URL carries skey, sid and pass_ticket: keep it out of errors and the log.
        let network = |source: reqwest::Error| SessionError::Network {
            request: req.name,
            host: req.host.to_string(),
            source: source.without_url(),
        };
        let builder = match &req.json {
            Some(body) => self
                .client
                .post(&url)
                .header(ORIGIN, format!("https://{}", req.host))
                .header("Content-Type", "application/json;charset=UTF-8")
                .body(body.clone()),
            None => self.client.get(&url),
        };
        let response = builder
            .headers(self.headers(req.host, req.headers))
            .timeout(req.timeout)
            .send()
            .await
            .map_err(network)?;
        let status = response.status().as_u16();
        self.store_cookies(response.headers());
        let bytes = crate::body::read_capped(response, MAX_BODY_BYTES)
            .await
            .map_err(|e| match e {
                crate::body::BodyError::TooLarge => {
                    tracing::warn!(
                        request = req.name,
                        host = req.host,
                        status,
                        limit_bytes = MAX_BODY_BYTES,
                        "reply too large; dropped unread"
                    );
                    SessionError::TooLarge {
                        request: req.name,
                        host: req.host.to_string(),
                        limit: MAX_BODY_BYTES,
                    }
                }
                crate::body::BodyError::Network(source) => network(source),
            })?;
        // The server's Content-Type rarely names a charset: decode UTF-8 ourselves, or
        // Chinese in Content comes out garbled.
        let body = String::from_utf8_lossy(&bytes).into_owned();
        tracing::debug!(
            request = req.name,
            host = req.host,
            status,
            bytes = bytes.len(),
            "reply"
        );
        if status >= 400 {
            return Err(SessionError::Status {
                request: req.name,
                host: req.host.to_string(),
                status,
                excerpt: protocol::excerpt(&body),
            });
        }
        if body.trim().is_empty() {
            return Err(SessionError::EmptyBody {
                request: req.name,
                host: req.host.to_string(),
                status,
            });
        }
        Ok(Reply {
            body,
            host: req.host.to_string(),
            request: req.name,
        })
    }

    fn headers(&self, host: &str, extra: &[(&'static str, &str)]) -> HeaderMap {
        let mut h = HeaderMap::new();
        h.insert(USER_AGENT, HeaderValue::from_static(BROWSER_UA));
        h.insert(
            ACCEPT,
            HeaderValue::from_static("application/json, text/plain, */*"),
        );
        let referer = format!("https://{}/", web_host_for_referer(host));
        if let Ok(v) = HeaderValue::from_str(&referer) {
            h.insert(REFERER, v);
        }
        let cookie = self
            .lock_cookies()
            .iter()
            .map(|(k, v)| format!("{k}={v}"))
            .collect::<Vec<_>>()
            .join("; ");
        if let Ok(v) = HeaderValue::from_str(&cookie)
            && !cookie.is_empty()
        {
            h.insert(COOKIE, v);
        }
        for (name, value) in extra {
            if let Ok(v) = HeaderValue::from_str(value) {
                h.insert(*name, v);
            }
        }
        h
    }

    fn store_cookies(&self, headers: &HeaderMap) {
        let mut jar = self.lock_cookies();
        for value in headers.get_all(SET_COOKIE) {
            let Ok(text) = value.to_str() else { continue };
            if let Some((name, value, expired)) = parse_set_cookie(text) {
                if expired {
                    jar.remove(&name);
                } else {
                    jar.insert(name, value);
                }
            }
        }
    }
}

/// The web host a browser page would be on, for `Referer` (push and login hosts share it).
fn web_host_for_referer(host: &str) -> &str {
    host.strip_prefix("webpush.")
        .or_else(|| host.strip_prefix("login."))
        .or_else(|| host.strip_prefix("file."))
        .unwrap_or(host)
}

/// `name=value; Domain=.qq.com; Max-Age=0` → (name, value, expired).
fn parse_set_cookie(header: &str) -> Option<(String, String, bool)> {
    let mut parts = header.split(';');
    let (name, value) = parts.next()?.split_once('=')?;
    let name = name.trim();
    if name.is_empty() {
        return None;
    }
    let expired = parts.any(|attr| {
        let attr = attr.trim().to_ascii_lowercase();
        attr == "max-age=0" || attr.starts_with("max-age=-")
    });
    Some((name.to_string(), value.trim().to_string(), expired))
}

/// Parses a JSON reply in one go and refuses it on a non-zero `BaseResponse.Ret`, so a
/// logged-out session is told apart from a malformed body.
pub fn json<T: DeserializeOwned + JsonAnswer>(reply: &Reply) -> Result<T, SessionError> {
    let refused = |base: &BaseResponse| SessionError::Ret {
        request: reply.request,
        host: reply.host.clone(),
        ret: base.ret,
        err_msg: base.err_msg.clone(),
    };
    match serde_json::from_str::<T>(&reply.body) {
        Ok(answer) if answer.base_response().ret != 0 => Err(refused(answer.base_response())),
        Ok(answer) => Ok(answer),
        Err(e) => match serde_json::from_str::<RetOnly>(&reply.body) {
            // A refusal whose (all-empty) rest does not fit `T` is still a refusal.
            Ok(head) if head.base_response.ret != 0 => Err(refused(&head.base_response)),
            _ => Err(json_error(reply, e)),
        },
    }
}

/// Parses a JSON reply that carries no `BaseResponse` (webwxpushloginurl).
pub fn plain_json<T: DeserializeOwned>(reply: &Reply) -> Result<T, SessionError> {
    serde_json::from_str(&reply.body).map_err(|e| json_error(reply, e))
}

fn json_error(reply: &Reply, e: serde_json::Error) -> SessionError {
    SessionError::Json {
        request: reply.request,
        host: reply.host.clone(),
        message: e.to_string(),
        excerpt: protocol::excerpt(&reply.body),
    }
}

/// Turns a parse failure of a reply into a session error naming the request.
pub fn parse_error(reply: &Reply, source: protocol::ParseError) -> SessionError {
    SessionError::Parse {
        request: reply.request,
        host: reply.host.clone(),
        source,
    }
}

/// Percent-encodes a query value (RFC 3986 unreserved characters kept).
pub fn enc(value: &str) -> String {
    url::form_urlencoded::byte_serialize(value.as_bytes())
        .collect::<String>()
        .replace('+', "%20")
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn set_cookie_parsing() {
        assert_eq!(
            parse_set_cookie(
                "wxuin=123; Domain=wx2.qq.com; Path=/; Expires=Tue, 02-Nov-2027 04:49:11 GMT"
            ),
            Some(("wxuin".into(), "123".into(), false))
        );
        assert_eq!(
            parse_set_cookie("wxsid=; Max-Age=0"),
            Some(("wxsid".into(), "".into(), true))
        );
        assert_eq!(parse_set_cookie("garbage"), None);
    }

    #[test]
    fn base_url_maps_every_host_keeping_path_and_query() {
        let http = Http::new(Some("http://127.0.0.1:8080/")).unwrap();
        assert_eq!(
            http.url("webpush.wx2.qq.com", "/cgi-bin/mmwebwx-bin/synccheck?a=1"),
            "http://127.0.0.1:8080/cgi-bin/mmwebwx-bin/synccheck?a=1"
        );
        let real = Http::new(None).unwrap();
        assert_eq!(
            real.url("login.wx.qq.com", "/jslogin?x"),
            "https://login.wx.qq.com/jslogin?x"
        );
    }

    #[tokio::test]
    async fn network_errors_keep_the_session_keys_out_of_the_message() {
        // A port nobody listens on: bind one, then let it go.
        let port = std::net::TcpListener::bind("127.0.0.1:0")
            .unwrap()
            .local_addr()
            .unwrap()
            .port();
        let http = Http::new(Some(&format!("http://127.0.0.1:{port}"))).unwrap();
        let err = http
            .send(Request {
                name: "synccheck",
                host: "webpush.wx2.qq.com",
                path_and_query: "/cgi-bin/mmwebwx-bin/synccheck?skey=%40crypt_SECRET&sid=SID123"
                    .into(),
                json: None,
                timeout: Duration::from_secs(2),
                headers: &[],
            })
            .await
            .unwrap_err();
        let text = err.to_string();
        assert!(
            text.contains("synccheck to webpush.wx2.qq.com failed"),
            "{text}"
        );
        assert!(
            !text.contains("SECRET") && !text.contains("SID123"),
            "{text}"
        );
    }

    /// A server on 127.0.0.1 answering every connection with `head` and then `body_len`
    /// bytes of `x`; returns its URL.
    async fn huge_reply_server(head: String, body_len: usize) -> String {
        use tokio::io::{AsyncReadExt, AsyncWriteExt};
        let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
        let url = format!("http://{}", listener.local_addr().unwrap());
        tokio::spawn(async move {
            while let Ok((mut socket, _)) = listener.accept().await {
                let head = head.clone();
                tokio::spawn(async move {
                    let mut request = [0u8; 4096];
                    let _ = socket.read(&mut request).await;
                    socket.write_all(head.as_bytes()).await?;
                    let chunk = vec![b'x'; 64 * 1024];
                    let mut left = body_len;
                    while left > 0 {
                        let n = left.min(chunk.len());
                        // The client hangs up once it has had enough: the write fails.
                        socket.write_all(&chunk[..n]).await?;
                        left -= n;
                    }
                    std::io::Result::Ok(())
                });
            }
        });
        url
    }

    async fn sync_from(url: &str) -> Result<Reply, SessionError> {
        let http = Http::new(Some(url)).unwrap();
        http.send(Request {
            name: "webwxsync",
            host: "wx2.qq.com",
            path_and_query: "/cgi-bin/mmwebwx-bin/webwxsync".into(),
            json: Some(b"{}".to_vec()),
            timeout: Duration::from_secs(30),
            headers: &[],
        })
        .await
    }

    #[tokio::test]
    async fn a_reply_over_the_cap_is_refused_without_reading_it_whole() {
        let huge = 20 * 1024 * 1024;
        // Declared: refused on the header, before any of the body is read.
        let declared = format!("HTTP/1.1 200 OK\r\nContent-Length: {huge}\r\n\r\n");
        // Undeclared (read until the connection closes): refused once past the cap.
        let streamed = "HTTP/1.1 200 OK\r\nConnection: close\r\n\r\n".to_string();
        for head in [declared, streamed] {
            let url = huge_reply_server(head.clone(), huge).await;
            let err = sync_from(&url).await.unwrap_err();
            assert!(
                matches!(&err, SessionError::TooLarge { request: "webwxsync", limit, .. } if *limit == MAX_BODY_BYTES),
                "{head:?}: {err:?}"
            );
            assert_eq!(err.kind(), super::super::ErrorKind::Transient);
            let text = err.to_string();
            assert!(
                text.contains("webwxsync to wx2.qq.com") && text.contains("8 MB"),
                "{text}"
            );
        }
        // Just under the cap is an ordinary reply.
        let url = huge_reply_server(
            format!("HTTP/1.1 200 OK\r\nContent-Length: {MAX_BODY_BYTES}\r\n\r\n"),
            MAX_BODY_BYTES as usize,
        )
        .await;
        let reply = sync_from(&url).await.unwrap();
        assert_eq!(reply.body.len() as u64, MAX_BODY_BYTES);
    }

    #[test]
    fn json_checks_ret_once_parsed_and_when_the_rest_does_not_fit() {
        let reply = |body: &str| Reply {
            body: body.to_string(),
            host: "wx2.qq.com".into(),
            request: "webwxsync",
        };
        let ok: protocol::SyncResponse = json(&reply(
            r#"{"BaseResponse":{"Ret":0,"ErrMsg":""},"ContinueFlag":1}"#,
        ))
        .unwrap();
        assert_eq!(ok.continue_flag, 1);
        let refused = json::<protocol::SyncResponse>(&reply(
            r#"{"BaseResponse":{"Ret":1101,"ErrMsg":""},"ContinueFlag":0}"#,
        ))
        .unwrap_err();
        assert!(
            matches!(refused, SessionError::Ret { ret: 1101, .. }),
            "{refused}"
        );
        // The rest of a refusal need not fit: still a refusal, not a malformed body.
        let odd = json::<protocol::SyncResponse>(&reply(
            r#"{"BaseResponse":{"Ret":1100,"ErrMsg":""},"ContinueFlag":"x"}"#,
        ))
        .unwrap_err();
        assert!(matches!(odd, SessionError::Ret { ret: 1100, .. }), "{odd}");
        let bad = json::<protocol::SyncResponse>(&reply(r#"{"ContinueFlag":"x"}"#)).unwrap_err();
        assert!(matches!(bad, SessionError::Json { .. }), "{bad}");
    }

    #[test]
    fn query_encoding_encodes_percent_again() {
        assert_eq!(enc("a%2Fb%3D"), "a%252Fb%253D");
        assert_eq!(enc("1_2|3_4"), "1_2%7C3_4");
    }
}
