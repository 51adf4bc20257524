//! Where payment events go: one module per kind of receiver, each a [`Sink`] the outbox
//! delivers to (`crate::outbox`). What each receiver expects is in
//! `docs/protocol/OUTBOUND.md`.

pub mod vmq;
pub mod webhook;

use std::sync::Arc;
use std::time::Duration;

use crate::config::SinkSpec;
use crate::events::{DeliveryError, Sink};
use crate::mqtt::MqttSink;

pub use vmq::Vmq;
pub use webhook::Webhook;

/// The most of a receiver's answer kept for the log: enough for its error message.
const ANSWER_EXCERPT_BYTES: usize = 512;

/// A sink that cannot be set up.
#[derive(Debug, thiserror::Error)]
pub enum SinkError {
    #[error("cannot set up the HTTP client of sink {name}: {source}")]
    Client {
        name: String,
        source: reqwest::Error,
    },
    #[error("sink {name}: {problem}")]
    Config { name: String, problem: String },
    #[error(transparent)]
    Mqtt(#[from] crate::mqtt::MqttError),
}

/// The configured sinks.
pub struct Sinks {
    /// Every sink, webhooks in the order written, then V免签, then MQTT: one delivery task
    /// each.
    pub all: Vec<Arc<dyn Sink>>,
    /// V免签 again, for its heartbeat task.
    pub vmq: Option<Arc<Vmq>>,
    /// The MQTT sink again, to say `offline` on a clean stop.
    pub mqtt: Option<Arc<MqttSink>>,
}

impl Sinks {
    /// The sinks of `specs` ([`crate::config::Config::sinks`]), in that order.
    pub fn start(specs: &[SinkSpec]) -> Result<Sinks, SinkError> {
        let mut sinks = Sinks {
            all: Vec::new(),
            vmq: None,
            mqtt: None,
        };
        for spec in specs {
            let sink: Arc<dyn Sink> = match spec {
                SinkSpec::Webhook { name, config } => Arc::new(Webhook::new(name, config)?),
                SinkSpec::Vmq { server, config } => {
                    let vmq = Arc::new(Vmq::new(server.clone(), config)?);
                    sinks.vmq = Some(vmq.clone());
                    vmq
                }
                // Connects in the background: a broker that is down is a transient
                // delivery error.
                SinkSpec::Mqtt { broker, config } => {
                    let mqtt = Arc::new(MqttSink::start(config, broker)?);
                    sinks.mqtt = Some(mqtt.clone());
                    mqtt
                }
            };
            sinks.all.push(sink);
        }
        Ok(sinks)
    }

    /// The sinks' names, which the ledger queues each payment's event under.
    pub fn names(&self) -> Vec<String> {
        self.all.iter().map(|s| s.name().to_string()).collect()
    }
}

/// An HTTP client for one receiver: its own timeout, and no redirects (a receiver that
/// moved is a configuration to fix, and a redirected POST would arrive as a GET).
fn client(name: &str, timeout: Duration) -> Result<reqwest::Client, SinkError> {
    reqwest::Client::builder()
        .redirect(reqwest::redirect::Policy::none())
        .connect_timeout(timeout)
        .timeout(timeout)
        .user_agent(concat!("paysay/", env!("CARGO_PKG_VERSION")))
        .build()
        .map_err(|source| SinkError::Client {
            name: name.to_string(),
            source,
        })
}

/// A request that got no answer (refused, timed out, reset): try again later.
fn unanswered(what: &str, e: &reqwest::Error) -> DeliveryError {
    DeliveryError::Transient(format!("{what}: {}", crate::error_chain(e)))
}

/// What an HTTP status means for a delivery: 2xx delivered; 408, 429 and 5xx try again;
/// any other answer (4xx, a redirect) will not change by itself.
fn by_status(what: &str, status: reqwest::StatusCode, answer: &str) -> Result<(), DeliveryError> {
    if status.is_success() {
        return Ok(());
    }
    let problem = format!("{what}: HTTP {status}: {answer}");
    let retry = matches!(status.as_u16(), 408 | 429) || status.is_server_error();
    Err(if retry {
        DeliveryError::Transient(problem)
    } else {
        DeliveryError::Rejected(problem)
    })
}

/// The start of a response body, as text, without reading more than needed.
async fn excerpt(mut response: reqwest::Response) -> String {
    let mut body = Vec::new();
    while body.len() < ANSWER_EXCERPT_BYTES {
        match response.chunk().await {
            Ok(Some(chunk)) => body.extend_from_slice(&chunk),
            _ => break,
        }
    }
    body.truncate(ANSWER_EXCERPT_BYTES);
    String::from_utf8_lossy(&body).trim().to_string()
}

#[cfg(test)]
mod tests {
    use super::*;
    use reqwest::StatusCode;

    #[test]
    fn statuses_sort_into_delivered_retry_and_rejected() {
        assert_eq!(by_status("POST", StatusCode::NO_CONTENT, ""), Ok(()));
        for retry in [408, 429, 500, 502, 503] {
            let status = StatusCode::from_u16(retry).unwrap();
            assert!(
                matches!(
                    by_status("POST", status, ""),
                    Err(DeliveryError::Transient(_))
                ),
                "{retry}"
            );
        }
        for reject in [301, 400, 401, 403, 404, 410, 422] {
            let status = StatusCode::from_u16(reject).unwrap();
            assert!(
                matches!(
                    by_status("POST", status, ""),
                    Err(DeliveryError::Rejected(_))
                ),
                "{reject}"
            );
        }
    }
}
