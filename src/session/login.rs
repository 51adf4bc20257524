//! QR-code login, as the web client does it: jslogin → QR → poll → ticket.

use std::path::Path;
use std::time::Duration;

use super::error::SessionError;
use super::http::{self, Http, Request};
use super::{Events, SessionEvent, long_poll_timeout, now_ms, qr};
use crate::config::WechatConfig;
use crate::protocol::{self, Hosts, LoginPoll, LoginTicket};

/// The first login host; the service hosts follow the redirect.
pub const LOGIN_HOST: &str = "login.wx.qq.com";
const WEB_HOST: &str = "wx.qq.com";

/// The desktop (UOS) client's `extspam` header: a constant the client sends with the ticket
/// request (ItChat-UOS's UOS_PATCH_EXTSPAM).
const UOS_EXTSPAM: &str = "Go8FCIkFEokFCggwMDAwMDAwMRAGGvAESySibk50w5Wb3uTl2c2h64jVVrV7gNs06GFlWplHQbY/5FfiO++1yH4ykCyNPWKXmco+wfQzK5R98D3so7rJ5LmGFvBLjGceleySrc3SOf2Pc1gVehzJgODeS0lDL3/I/0S2SSE98YgKleq6Uqx6ndTy9yaL9qFxJL7eiA/R3SEfTaW1SBoSITIu+EEkXff+Pv8NHOk7N57rcGk1w0ZzRrQDkXTOXFN2iHYIzAAZPIOY45Lsh+A4slpgnDiaOvRtlQYCt97nmPLuTipOJ8Qc5pM7ZsOsAPPrCQL7nK0I7aPrFDF0q4ziUUKettzW8MrAaiVfmbD1/VkmLNVqqZVvBCtRblXb5FHmtS8FxnqCzYP4WFvz3T0TcrOqwLX1M/DQvcHaGGw0B0y4bZMs7lVScGBFxMj3vbFi2SRKbKhaitxHfYHAOAa0X7/MSS0RNAjdwoyGHeOepXOKY+h3iHeqCvgOH6LOifdHf/1aaZNwSkGotYnYScW8Yx63LnSwba7+hESrtPa/huRmB9KWvMCKbDThL/nne14hnL277EDCSocPu3rOSYjuB9gKSOdVmWsj9Dxb/iZIe+S6AiG29Esm+/eUacSba0k8wn5HhHg9d4tIcixrxveflc8vi2/wNQGVFNsGO6tB5WF0xf/plngOvQ1/ivGV/C1Qpdhzznh0ExAVJ6dwzNg7qIEBaw+BzTJTUuRcPk92Sn6QDn2Pu3mpONaEumacjW4w6ipPnPw+g2TfywJjeEcpSZaP4Q3YV5HG8D6UjWA4GSkBKculWpdCMadx0usMomsSS/74QgpYqcPkmamB4nVv1JxczYITIqItIKjD35IGKAUwAA==";

/// What is known of the login before this one, for a push login: the account, the host
/// it was on, and the browser's cookies (`webwx_auth_ticket` is what the server knows the
/// browser by).
#[derive(Debug, Clone)]
pub struct PreviousLogin {
    pub uin: u64,
    pub web_host: String,
    pub cookies: std::collections::BTreeMap<String, String>,
}

/// A confirmed login: the ticket's keys and the hosts the redirect chose.
#[derive(Debug, Clone)]
pub struct Credentials {
    pub ticket: LoginTicket,
    pub hosts: Hosts,
}

/// Logs in: a push login on the phone when the account is known, else a QR code until
/// someone scans and confirms it. Expired codes are replaced forever: a shop owner may be
/// away for hours, and the daemon must be ready when they come back.
pub async fn login(
    http: &Http,
    config: &WechatConfig,
    qr_path: &Path,
    previous: Option<&PreviousLogin>,
    events: &Events,
) -> Result<Credentials, SessionError> {
    if let Some(previous) = previous {
        http.set_cookies(previous.cookies.clone());
        match push_login(http, config, previous, events).await {
            Ok(Some(credentials)) => return Ok(credentials),
            Ok(None) => {
                tracing::info!("push login was not confirmed on the phone; showing a QR code")
            }
            Err(e) => {
                tracing::info!(error = %crate::text::Escaped(&e), "push login unavailable; showing a QR code")
            }
        }
    }
    loop {
        let uuid = fetch_uuid(http, config).await?;
        let url = qr::login_url(&uuid);
        qr::show(&url, qr_path)?;
        tracing::warn!(qr = %qr_path.display(), url = %crate::text::Escaped(&url), "WeChat login needed: scan the QR code with the shop's phone");
        events.emit(SessionEvent::QrCode {
            path: qr_path.to_path_buf(),
            url,
        });
        if let Some(credentials) = wait_for_confirmation(http, config, &uuid, None, events).await? {
            return Ok(credentials);
        }
        tracing::info!("the QR code expired; making a new one");
    }
}

async fn fetch_uuid(http: &Http, config: &WechatConfig) -> Result<String, SessionError> {
    let mut redirect = format!("https://{WEB_HOST}/cgi-bin/mmwebwx-bin/webwxnewloginpage");
    if config.desktop_mode {
        redirect.push_str("?mod=desktop");
    }
    let reply = http
        .send(Request {
            name: "jslogin",
            host: LOGIN_HOST,
            path_and_query: format!(
                "/jslogin?appid={}&redirect_uri={}&fun=new&lang=zh_CN&_={}",
                protocol::APP_ID,
                http::enc(&redirect),
                now_ms()
            ),
            json: None,
            timeout: Duration::from_secs(config.request_timeout_secs),
            headers: &[],
        })
        .await?;
    protocol::parse_qrlogin(&reply.body).map_err(|e| http::parse_error(&reply, e))
}

/// Polls until confirmed (`Some`), or the code expired or `max_waits` empty polls passed
/// (`None`).
async fn wait_for_confirmation(
    http: &Http,
    config: &WechatConfig,
    uuid: &str,
    max_waits: Option<u32>,
    events: &Events,
) -> Result<Option<Credentials>, SessionError> {
    let mut tip = 1;
    let mut waits = 0;
    let mut counter = now_ms();
    loop {
        counter += 1;
        let reply = http
            .send(Request {
                name: "login poll",
                host: LOGIN_HOST,
                path_and_query: format!(
                    "/cgi-bin/mmwebwx-bin/login?loginicon=true&uuid={}&tip={tip}&r={}&_={counter}",
                    http::enc(uuid),
                    -(now_ms() / 1579)
                ),
                json: None,
                timeout: long_poll_timeout(config),
                headers: &[],
            })
            .await?;
        match protocol::parse_login_poll(&reply.body).map_err(|e| http::parse_error(&reply, e))? {
            LoginPoll::Waiting => {
                waits += 1;
                if max_waits.is_some_and(|max| waits >= max) {
                    return Ok(None);
                }
            }
            LoginPoll::Scanned => {
                if tip == 1 {
                    tracing::info!("QR code scanned; waiting for the phone to confirm");
                    events.emit(SessionEvent::Scanned);
                }
                tip = 0;
            }
            LoginPoll::Expired => return Ok(None),
            LoginPoll::Confirmed { redirect_uri } => {
                return fetch_ticket(http, config, &redirect_uri).await.map(Some);
            }
            LoginPoll::Other(code) => {
                tracing::warn!(code, "login poll answered an unknown code; polling on");
                tokio::time::sleep(Duration::from_secs(1)).await;
            }
        }
    }
}

/// Follows the redirect (`fun=new&version=v2`) and reads the XML ticket.
async fn fetch_ticket(
    http: &Http,
    config: &WechatConfig,
    redirect_uri: &str,
) -> Result<Credentials, SessionError> {
    let url = url::Url::parse(redirect_uri).map_err(|_| SessionError::BadRedirect {
        uri: redirect_uri.to_string(),
    })?;
    let host = url.host_str().ok_or(SessionError::BadRedirect {
        uri: redirect_uri.to_string(),
    })?;
    let mut path_and_query = url.path().to_string();
    path_and_query.push('?');
    path_and_query.push_str(url.query().unwrap_or(""));
    path_and_query.push_str("&fun=new&version=v2");
    let desktop_headers: &[(&str, &str)] = if config.desktop_mode {
        &[
            ("client-version", "2.0.0"),
            ("extspam", UOS_EXTSPAM),
            ("referer", "https://wx.qq.com/?&lang=zh_CN&target=t"),
        ]
    } else {
        &[]
    };
    let reply = http
        .send(Request {
            name: "login ticket",
            host,
            path_and_query,
            json: None,
            timeout: Duration::from_secs(config.request_timeout_secs),
            headers: desktop_headers,
        })
        .await?;
    let mut ticket =
        protocol::parse_ticket(&reply.body).map_err(|e| http::parse_error(&reply, e))?;
    if ticket.ret != 0 {
        return Err(SessionError::LoginRefused {
            ret: ticket.ret,
            message: ticket.message,
        });
    }
    // Desktop mode: wxsid/wxuin come as cookies, not always in the XML.
    if ticket.wxsid.is_empty() {
        ticket.wxsid = http.cookie("wxsid").unwrap_or_default();
    }
    if ticket.wxuin.is_empty() {
        ticket.wxuin = http.cookie("wxuin").unwrap_or_default();
    }
    Ok(Credentials {
        ticket,
        hosts: Hosts::for_redirect_host(host),
    })
}

/// Asks the phone to confirm a login without a QR code (`webwxpushloginurl`), then waits a
/// few polls for the confirmation. `Ok(None)`: not confirmed, fall back to a QR code.
async fn push_login(
    http: &Http,
    config: &WechatConfig,
    previous: &PreviousLogin,
    events: &Events,
) -> Result<Option<Credentials>, SessionError> {
    #[derive(serde::Deserialize)]
    struct PushReply {
        #[serde(default)]
        ret: String,
        #[serde(default)]
        uuid: String,
    }
    let reply = http
        .send(Request {
            name: "webwxpushloginurl",
            host: &previous.web_host,
            path_and_query: format!(
                "/cgi-bin/mmwebwx-bin/webwxpushloginurl?uin={}",
                previous.uin
            ),
            json: None,
            timeout: Duration::from_secs(config.request_timeout_secs),
            headers: &[],
        })
        .await?;
    let push: PushReply = http::plain_json(&reply)?;
    if push.ret != "0" || push.uuid.is_empty() {
        return Ok(None);
    }
    tracing::warn!("WeChat login needed: confirm the login on the shop's phone");
    events.emit(SessionEvent::PushLoginSent);
    // About two minutes on the real server, which holds each poll for ~25 s.
    wait_for_confirmation(http, config, &push.uuid, Some(5), events).await
}
