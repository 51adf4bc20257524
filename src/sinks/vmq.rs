//! `[vmq]`: paysay as the monitor of a V免签 server, the personal-QR checkout many web
//! shops run. The shop gives each order a unique amount; the monitor reports every amount
//! received (`appPush`), and the server confirms the order with that amount. A heartbeat
//! (`appHeart`) says a monitor is watching: without one for 60 s the server stops taking
//! orders, which is right while WeChat is logged out, so paysay beats only while it is in.
//!
//! Every request is signed with md5 over concatenated fields and the key, and carries the
//! client's time in milliseconds, which the server accepts within 50 s of its own clock.
//! The price is sent in one canonical form ("12.50") and signed exactly as sent: a whole
//! amount formatted one way and signed another ("100" vs "100.00") fails the server's check.
//! Success is `code == 1` (vmq-itchat's `code == 0` is a bug not to copy).

use std::sync::Arc;
use std::time::Duration;

use md5::{Digest, Md5};
use serde::Deserialize;
use tokio::sync::watch;
use tokio_util::sync::CancellationToken;

use super::SinkError;
use crate::config::{VMQ_SINK, VmqConfig, VmqServer};
use crate::events::{DeliveryError, DeliveryFuture, PaymentEvent, Sink};
use crate::failing::Failing;
use crate::text::Escaped;

/// `type` in `appPush` for a wallet: 1 WeChat, 2 Alipay. V免签 has none for 云闪付.
fn push_type(wallet: &str) -> Option<&'static str> {
    match wallet {
        "wechat" => Some("1"),
        "alipay" => Some("2"),
        _ => None,
    }
}

/// A V免签 server.
pub struct Vmq {
    server: VmqServer,
    heartbeat: Duration,
    client: reqwest::Client,
}

/// What V免签 answers: `{"code":1,"msg":"成功","data":null}`, `code` -1 with a reason.
#[derive(Debug, Deserialize)]
struct Answer {
    code: i64,
    #[serde(default)]
    msg: serde_json::Value,
}

impl Vmq {
    /// The configured server, `None` without `[vmq] server`.
    pub fn from_config(config: &VmqConfig) -> Result<Option<Vmq>, SinkError> {
        let Some(server) = &config.server else {
            return Ok(None);
        };
        let server = VmqServer::parse(server).map_err(|problem| SinkError::Config {
            name: VMQ_SINK.into(),
            problem: format!("server {problem}"),
        })?;
        Vmq::new(server, config).map(Some)
    }

    /// V免签 at `server` (parsed from `[vmq] server`), with `config`'s timing.
    pub fn new(server: VmqServer, config: &VmqConfig) -> Result<Vmq, SinkError> {
        if server.base.scheme() == "http" && !crate::config::is_loopback(&server.base) {
            // V免签 servers mostly speak plain http and their signatures have no nonce:
            // allowed, because that is how they are run, but worth knowing.
            tracing::warn!(
                host = server.base.host_str().unwrap_or("?"),
                "[vmq] server is plain http: a payment report seen on the way can be replayed within 50 s; use https:// if the server has it"
            );
        }
        let client = super::client(VMQ_SINK, Duration::from_millis(config.timeout_ms))?;
        Ok(Vmq {
            server,
            heartbeat: Duration::from_secs(config.heartbeat_secs),
            client,
        })
    }

    /// `appHeart`: tells the server a monitor is watching.
    pub async fn heartbeat(&self) -> Result<(), DeliveryError> {
        let t = now_ms().to_string();
        let sign = md5_hex(&[&t, &self.server.key]);
        self.call("appHeart", &[("t", &t), ("sign", &sign)]).await
    }

    /// `appPush` of one payment of `price` ("12.50"), `kind` 1 (WeChat) or 2 (Alipay).
    pub async fn push(&self, kind: &str, price: &str) -> Result<(), DeliveryError> {
        let t = now_ms().to_string();
        let sign = md5_hex(&[kind, price, &t, &self.server.key]);
        self.call(
            "appPush",
            &[("t", &t), ("type", kind), ("price", price), ("sign", &sign)],
        )
        .await
    }

    async fn call(&self, endpoint: &str, query: &[(&str, &str)]) -> Result<(), DeliveryError> {
        let mut url = self.server.base.clone();
        url.set_path(endpoint);
        url.query_pairs_mut().extend_pairs(query);
        let what = format!("V免签 {endpoint} at {}", self.server.base);
        let response = self
            .client
            .get(url)
            .send()
            .await
            .map_err(|e| super::unanswered(&what, &e))?;
        let status = response.status();
        let body = super::excerpt(response).await;
        super::by_status(&what, status, &body)?;
        judge(&what, &body)
    }

    /// Heartbeats every `[vmq] heartbeat_secs` while `logged_in` says WeChat is in, none
    /// while it is out, until `shutdown`.
    pub async fn run_heartbeat(
        self: Arc<Vmq>,
        mut logged_in: watch::Receiver<bool>,
        shutdown: CancellationToken,
    ) {
        let mut failing = Failing::default();
        loop {
            // Wait for a login.
            while !*logged_in.borrow_and_update() {
                tokio::select! {
                    changed = logged_in.changed() => if changed.is_err() { return },
                    _ = shutdown.cancelled() => return,
                }
            }
            let beat = tokio::select! {
                beat = self.heartbeat() => beat,
                _ = shutdown.cancelled() => return,
            };
            match beat {
                Ok(()) => match failing.worked() {
                    Some(failed) => tracing::info!(failed, "V免签 heartbeat answered again"),
                    None => tracing::debug!("V免签 heartbeat answered"),
                },
                Err(e) if failing.failed() => {
                    tracing::warn!(error = %Escaped(&e), "V免签 heartbeat failed; the server stops taking orders 60 s after the last one (said once until it answers again)")
                }
                Err(e) => tracing::debug!(error = %Escaped(&e), "V免签 heartbeat failed again"),
            }
            // The next beat after the period, or at once on a new login; a logout stops it.
            tokio::select! {
                _ = tokio::time::sleep(self.heartbeat) => {}
                changed = logged_in.changed() => if changed.is_err() { return },
                _ = shutdown.cancelled() => return,
            }
        }
    }
}

impl Sink for Vmq {
    fn name(&self) -> &str {
        VMQ_SINK
    }

    fn deliver<'a>(&'a self, event: &'a PaymentEvent) -> DeliveryFuture<'a> {
        // A refusal is logged by the outbox, with the server's words and what to fix.
        Box::pin(async move {
            let Some(kind) = push_type(event.wallet) else {
                return Err(DeliveryError::Rejected(format!(
                    "V免签 takes WeChat (type 1) and Alipay (type 2) payments only; this {} payment is not pushed",
                    event.wallet
                )));
            };
            self.push(kind, &event.amount).await
        })
    }
}

/// `code == 1` is success. A clock error is tried again (the clock may be put right); any
/// other refusal (a sign error: the wrong key; the shop's notify failing) is not.
fn judge(what: &str, body: &str) -> Result<(), DeliveryError> {
    let answer: Answer = serde_json::from_str(body)
        .map_err(|_| DeliveryError::Transient(format!("{what}: not a V免签 answer: {body}")))?;
    if answer.code == 1 {
        return Ok(());
    }
    let said = match &answer.msg {
        serde_json::Value::String(s) => s.clone(),
        other => other.to_string(),
    };
    let problem = format!("{what}: code {}: {said}", answer.code);
    if said.contains("时间") {
        Err(DeliveryError::Transient(format!(
            "{problem} (this computer's clock is more than 50 s off the server's: set it right, e.g. with NTP)"
        )))
    } else if said.contains("签名") {
        Err(DeliveryError::Rejected(format!(
            "{problem} (check [vmq] server: the key after the `/` must be the server's 通讯密钥)"
        )))
    } else {
        Err(DeliveryError::Rejected(problem))
    }
}

/// Lower-case hex md5 of the parts joined.
pub fn md5_hex(parts: &[&str]) -> String {
    let mut hasher = Md5::new();
    for part in parts {
        hasher.update(part.as_bytes());
    }
    hasher
        .finalize()
        .iter()
        .map(|b| format!("{b:02x}"))
        .collect()
}

pub(crate) fn now_ms() -> i64 {
    std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map_or(0, |d| i64::try_from(d.as_millis()).unwrap_or(i64::MAX))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn signs_are_md5_of_the_fields_as_sent() {
        // Python: md5(("1" + "12.50" + "1714528800000" + "key123").encode()).hexdigest()
        assert_eq!(
            md5_hex(&["1", "12.50", "1714528800000", "key123"]),
            "e6e9ba0487c77fee1df49561b765124d"
        );
        assert_eq!(
            md5_hex(&["1714528800000", "key123"]),
            "9e9caa4ce6457438ba767e09c9258676"
        );
    }

    #[test]
    fn answers_sort_into_done_retry_and_refused() {
        assert_eq!(
            judge("push", r#"{"code":1,"msg":"成功","data":null}"#),
            Ok(())
        );
        assert!(matches!(
            judge("push", r#"{"code":-1,"msg":"客户端时间错误"}"#),
            Err(DeliveryError::Transient(m)) if m.contains("客户端时间错误") && m.contains("clock")
        ));
        assert!(matches!(
            judge("push", r#"{"code":-1,"msg":"签名校验不通过"}"#),
            Err(DeliveryError::Rejected(m)) if m.contains("签名校验不通过")
        ));
        assert!(matches!(
            judge("push", r#"{"code":0,"msg":"ok"}"#),
            Err(DeliveryError::Rejected(_))
        ));
        assert!(matches!(
            judge("push", "<html>"),
            Err(DeliveryError::Transient(_))
        ));
    }

    #[test]
    fn server_is_host_slash_key() {
        let s = VmqServer::parse("pay.example.com:8080/abc123").unwrap();
        assert_eq!(s.base.as_str(), "http://pay.example.com:8080/");
        assert_eq!(s.key, "abc123");
        let s = VmqServer::parse("https://pay.example.com/k").unwrap();
        assert_eq!(s.base.scheme(), "https");
        for bad in [
            "pay.example.com",
            "pay.example.com/a/b",
            "/key",
            "host/",
            "ftp://h/k",
        ] {
            assert!(VmqServer::parse(bad).is_err(), "{bad}");
        }
    }
}
