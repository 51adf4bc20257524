//! QR-code login, as the web client does it: jslogin → QR → poll → ticket.
//!
//! A QR code costs the shop owner a scan, so it is kept for as long as it is valid: a step
//! that fails on the network (the poll, the ticket, webwxinit after it) is retried on the
//! same uuid with a short backoff, and only a code the server has expired or spent is
//! replaced.

use std::path::Path;
use std::time::Duration;

use tokio::time::Instant;

use super::error::{ErrorKind, SessionError};
use super::http::{self, Http, Request};
use super::{Events, SessionEvent, long_poll_timeout, now_ms, qr};
use crate::backoff::Backoff;
use crate::config::WechatConfig;
use crate::protocol::{self, Hosts, LoginPoll, LoginTicket};

/// The first login host; the service hosts follow the redirect.
pub const LOGIN_HOST: &str = "login.wx.qq.com";
const WEB_HOST: &str = "wx.qq.com";

/// The desktop (UOS) client's `extspam` header: a constant the client sends with the ticket
/// request (ItChat-UOS's UOS_PATCH_EXTSPAM).
const UOS_EXTSPAM: &str = "Go8FCIkFEokFCggwMDAwMDAwMRAGGvAESySibk50w5Wb3uTl2c2h64jVVrV7gNs06GFlWplHQbY/5FfiO++1yH4ykCyNPWKXmco+wfQzK5R98D3so7rJ5LmGFvBLjGceleySrc3SOf2Pc1gVehzJgODeS0lDL3/I/0S2SSE98YgKleq6Uqx6ndTy9yaL9qFxJL7eiA/R3SEfTaW1SBoSITIu+EEkXff+Pv8NHOk7N57rcGk1w0ZzRrQDkXTOXFN2iHYIzAAZPIOY45Lsh+A4slpgnDiaOvRtlQYCt97nmPLuTipOJ8Qc5pM7ZsOsAPPrCQL7nK0I7aPrFDF0q4ziUUKettzW8MrAaiVfmbD1/VkmLNVqqZVvBCtRblXb5FHmtS8FxnqCzYP4WFvz3T0TcrOqwLX1M/DQvcHaGGw0B0y4bZMs7lVScGBFxMj3vbFi2SRKbKhaitxHfYHAOAa0X7/MSS0RNAjdwoyGHeOepXOKY+h3iHeqCvgOH6LOifdHf/1aaZNwSkGotYnYScW8Yx63LnSwba7+hESrtPa/huRmB9KWvMCKbDThL/nne14hnL277EDCSocPu3rOSYjuB9gKSOdVmWsj9Dxb/iZIe+S6AiG29Esm+/eUacSba0k8wn5HhHg9d4tIcixrxveflc8vi2/wNQGVFNsGO6tB5WF0xf/plngOvQ1/ivGV/C1Qpdhzznh0ExAVJ6dwzNg7qIEBaw+BzTJTUuRcPk92Sn6QDn2Pu3mpONaEumacjW4w6ipPnPw+g2TfywJjeEcpSZaP4Q3YV5HG8D6UjWA4GSkBKculWpdCMadx0usMomsSS/74QgpYqcPkmamB4nVv1JxczYITIqItIKjD35IGKAUwAA==";

/// How long one login step may keep failing before its QR code is given up. A QR code is
/// valid for a few minutes: retrying past that would only reach an expired code.
const STEP_PATIENCE: Duration = Duration::from_secs(180);
/// The first wait before a failed login step is tried again; it doubles per failure...
const STEP_RETRY_MIN: Duration = Duration::from_millis(500);
/// ...up to this, so a scanned code is still used seconds after the network is back.
const STEP_RETRY_MAX: Duration = Duration::from_secs(5);
/// The least time between the starts of two login polls. The server holds a poll until
/// something happens; one that answers at once must not make the client poll in a loop.
const MIN_POLL_INTERVAL: Duration = Duration::from_secs(1);
/// Polls answered at once in a row before the server is logged as not holding them.
const INSTANT_POLLS_LOGGED: u32 = 5;

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
    let mut pacer = PollPacer::default();
    if let Some(previous) = previous {
        http.set_cookies(previous.cookies.clone());
        match push_login(http, config, previous, events, &mut pacer).await {
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
        let confirmed =
            wait_for_confirmation(http, config, &uuid, None, events, &mut pacer).await?;
        if let Some(credentials) = confirmed {
            return Ok(credentials);
        }
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
            timeout: config.request_timeout(),
            headers: &[],
        })
        .await?;
    protocol::parse_qrlogin(&reply.body).map_err(|e| http::parse_error(&reply, e))
}

/// Polls until confirmed (`Some`), or the code expired, its ticket was spent, or
/// `max_waits` empty polls passed (`None`: a new code is needed). A poll that fails is
/// retried on the same uuid; after [`STEP_PATIENCE`] of failures the error is returned.
async fn wait_for_confirmation(
    http: &Http,
    config: &WechatConfig,
    uuid: &str,
    max_waits: Option<u32>,
    events: &Events,
    pacer: &mut PollPacer,
) -> Result<Option<Credentials>, SessionError> {
    let mut tip = 1;
    let mut waits = 0;
    let mut counter = now_ms();
    let mut retry = StepRetry::new("login poll");
    loop {
        counter += 1;
        pacer.started();
        let answer = match poll_once(http, config, uuid, tip, counter).await {
            Ok(answer) => answer,
            Err(e) => {
                retry.after_failure(e).await?;
                continue;
            }
        };
        retry.succeeded();
        match answer {
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
            LoginPoll::Expired => {
                tracing::info!("the QR code expired; making a new one");
                return Ok(None);
            }
            LoginPoll::Confirmed { redirect_uri } => {
                return exchange_ticket(http, config, &redirect_uri).await;
            }
            LoginPoll::Other(code) => {
                tracing::warn!(code, "login poll answered an unknown code; polling on");
            }
        }
        pacer.answered().await;
    }
}

/// One login poll: held by the server until something happens or its long-poll time ends.
async fn poll_once(
    http: &Http,
    config: &WechatConfig,
    uuid: &str,
    tip: u8,
    counter: i64,
) -> Result<LoginPoll, SessionError> {
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
    protocol::parse_login_poll(&reply.body).map_err(|e| http::parse_error(&reply, e))
}

/// Spaces login polls [`MIN_POLL_INTERVAL`] apart when the server answers them at once
/// (a 408 without holding, a 201 repeated), and says so once per login.
#[derive(Debug)]
struct PollPacer {
    interval: Duration,
    started: Option<Instant>,
    instant_in_row: u32,
    logged: bool,
}

impl Default for PollPacer {
    fn default() -> PollPacer {
        PollPacer {
            interval: MIN_POLL_INTERVAL,
            started: None,
            instant_in_row: 0,
            logged: false,
        }
    }
}

impl PollPacer {
    fn started(&mut self) {
        self.started = Some(Instant::now());
    }

    /// After an answer that means "poll again": waits out the rest of the interval.
    async fn answered(&mut self) {
        let Some(started) = self.started else {
            return;
        };
        let next = started + self.interval;
        if Instant::now() >= next {
            self.instant_in_row = 0;
            return;
        }
        self.instant_in_row += 1;
        if self.instant_in_row >= INSTANT_POLLS_LOGGED && !self.logged {
            self.logged = true;
            tracing::warn!(
                in_a_row = self.instant_in_row,
                interval_ms = self.interval.as_millis() as u64,
                "the login poll answers at once instead of holding; spacing the polls out"
            );
        }
        tokio::time::sleep_until(next).await;
    }
}

/// Retries of one login step on the same uuid or ticket: a short capped backoff for
/// transient errors, for at most [`STEP_PATIENCE`] of failures in a row.
#[derive(Debug)]
pub(super) struct StepRetry {
    step: &'static str,
    backoff: Backoff,
    failing_since: Option<Instant>,
}

impl StepRetry {
    pub(super) fn new(step: &'static str) -> StepRetry {
        StepRetry {
            step,
            backoff: Backoff::new(STEP_RETRY_MIN, STEP_RETRY_MAX),
            failing_since: None,
        }
    }

    /// After a failure: waits and returns `Ok` to try again, or returns the error when it is
    /// not transient or the step has been failing for longer than its patience.
    pub(super) async fn after_failure(&mut self, e: SessionError) -> Result<(), SessionError> {
        if e.kind() != ErrorKind::Transient {
            return Err(e);
        }
        let since = *self.failing_since.get_or_insert_with(Instant::now);
        if since.elapsed() >= STEP_PATIENCE {
            tracing::warn!(
                step = self.step,
                error = %e,
                failing_for_secs = since.elapsed().as_secs(),
                "login step keeps failing; giving up on this login"
            );
            return Err(e);
        }
        let delay = self.backoff.next_delay();
        tracing::warn!(
            step = self.step,
            error = %e,
            retry_in_ms = delay.as_millis() as u64,
            "login step failed; retrying it, no new QR code needed"
        );
        tokio::time::sleep(delay).await;
        Ok(())
    }

    pub(super) fn succeeded(&mut self) {
        self.failing_since = None;
        self.backoff.reset();
    }
}

/// Exchanges the confirmed login's ticket, retrying what fails on the network. The ticket
/// is single-use: a refusal on a retry means an earlier answer was lost after the server
/// spent it, so a new QR code is needed (`None`). A refusal on the first try is the
/// server's verdict on the account and ends the login.
async fn exchange_ticket(
    http: &Http,
    config: &WechatConfig,
    redirect_uri: &str,
) -> Result<Option<Credentials>, SessionError> {
    let url = url::Url::parse(redirect_uri).map_err(|_| SessionError::BadRedirect {
        uri: redirect_uri.to_string(),
    })?;
    let mut retry = StepRetry::new("login ticket");
    let mut first_try = true;
    loop {
        match fetch_ticket(http, config, &url).await {
            Ok(credentials) => return Ok(Some(credentials)),
            Err(SessionError::LoginRefused { ret, message }) if !first_try => {
                tracing::warn!(
                    ret,
                    message = ?message,
                    "the login ticket was refused on a retry: the lost answer spent it; making a new QR code"
                );
                return Ok(None);
            }
            Err(e) => retry.after_failure(e).await?,
        }
        first_try = false;
    }
}

/// Follows the redirect (`fun=new&version=v2`) and reads the XML ticket.
async fn fetch_ticket(
    http: &Http,
    config: &WechatConfig,
    url: &url::Url,
) -> Result<Credentials, SessionError> {
    let host = url.host_str().ok_or(SessionError::BadRedirect {
        uri: url.to_string(),
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
            timeout: config.request_timeout(),
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
    pacer: &mut PollPacer,
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
            timeout: config.request_timeout(),
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
    wait_for_confirmation(http, config, &push.uuid, Some(5), events, pacer).await
}

#[cfg(test)]
mod tests {
    use super::*;

    fn transient() -> SessionError {
        SessionError::EmptyBody {
            request: "login poll",
            host: LOGIN_HOST.to_string(),
            status: 200,
        }
    }

    /// The waits are the daemon's own, on tokio's paused clock (three minutes that take no
    /// real time).
    #[tokio::test(start_paused = true)]
    async fn a_failing_step_is_retried_until_its_patience_runs_out() {
        let tick = Duration::from_millis(1);
        let mut retry = StepRetry::new("test");
        let start = Instant::now();
        let mut last = start;
        let mut retries = 0;
        while retry.after_failure(transient()).await.is_ok() {
            let waited = last.elapsed();
            assert!(
                waited >= STEP_RETRY_MIN / 2 && waited <= STEP_RETRY_MAX + tick,
                "retry {} after {waited:?}",
                retries + 1
            );
            last = Instant::now();
            retries += 1;
        }
        let gave_up = start.elapsed();
        assert!(
            gave_up >= STEP_PATIENCE && gave_up <= STEP_PATIENCE + STEP_RETRY_MAX + tick,
            "gave up after {gave_up:?}"
        );
        let capped = STEP_PATIENCE.as_millis() / STEP_RETRY_MAX.as_millis();
        assert!(retries >= capped, "retried only {retries} times");

        // A success starts the count again: the next failure is retried, after a short wait.
        retry.succeeded();
        let again = Instant::now();
        assert!(retry.after_failure(transient()).await.is_ok());
        assert!(
            again.elapsed() <= STEP_RETRY_MIN + tick,
            "{:?}",
            again.elapsed()
        );
    }

    #[tokio::test]
    async fn a_refused_account_is_not_retried() {
        let mut retry = StepRetry::new("login ticket");
        let refused = SessionError::LoginRefused {
            ret: 1203,
            message: String::new(),
        };
        let e = retry.after_failure(refused).await.unwrap_err();
        assert!(matches!(e, SessionError::LoginRefused { ret: 1203, .. }));
    }

    #[tokio::test(start_paused = true)]
    async fn instant_answers_are_spaced_out_and_logged_once() {
        let mut pacer = PollPacer::default();
        let start = Instant::now();
        for n in 1..=INSTANT_POLLS_LOGGED {
            assert!(!pacer.logged, "logged after only {} instant answers", n - 1);
            pacer.started();
            pacer.answered().await;
            assert_eq!(
                start.elapsed(),
                MIN_POLL_INTERVAL * n,
                "polls {MIN_POLL_INTERVAL:?} apart"
            );
        }
        assert!(pacer.logged, "a server that never holds is logged");

        // A poll that was held resets the count, and the next goes out at once.
        pacer.started();
        tokio::time::sleep(MIN_POLL_INTERVAL).await;
        let answered = Instant::now();
        pacer.answered().await;
        assert_eq!(answered.elapsed(), Duration::ZERO);
        assert_eq!(pacer.instant_in_row, 0);
    }
}
