//! `[[webhook]]`: each payment POSTed as JSON to a URL the shop owns (its web shop, a chat
//! bot bridge), optionally signed so the receiver can tell it came from this paysay.
//!
//! The signature is the common modern form: `X-Paysay-Timestamp` (unix seconds) and
//! `X-Paysay-Signature`, the lower-case hex HMAC-SHA256 of `timestamp + "." + body` with
//! the shared secret. A receiver recomputes it over the raw body, compares in constant
//! time, and refuses timestamps far from its clock, which bounds replays.

use hmac::Mac;
use std::time::Duration;

use super::SinkError;
use crate::config::WebhookConfig;
use crate::events::{DeliveryError, DeliveryFuture, PaymentEvent, Sink};
use crate::signing::{hex, hmac_sha256};

/// One webhook receiver.
pub struct Webhook {
    name: String,
    url: url::Url,
    secret: Option<String>,
    client: reqwest::Client,
}

impl Webhook {
    /// The webhook named `name` ([`crate::config::SinkSpec`]).
    pub fn new(name: &str, config: &WebhookConfig) -> Result<Webhook, SinkError> {
        let name = name.to_string();
        let url = url::Url::parse(&config.url).map_err(|e| SinkError::Config {
            name: name.clone(),
            problem: format!("url is not a URL: {e}"),
        })?;
        let client = super::client(&name, Duration::from_millis(config.timeout_ms))?;
        Ok(Webhook {
            name,
            url,
            secret: config.secret.clone(),
            client,
        })
    }

    /// POSTs `body` (signed when there is a secret); `Ok` on a 2xx answer. `paysay doctor`
    /// sends its test event through here too.
    pub async fn post(&self, body: &serde_json::Value) -> Result<(), DeliveryError> {
        // A JSON value always serializes.
        let body = serde_json::to_vec(body).unwrap_or_default();
        let mut request = self
            .client
            .post(self.url.clone())
            .header(reqwest::header::CONTENT_TYPE, "application/json");
        if let Some(secret) = &self.secret {
            let timestamp = crate::now_unix().to_string();
            let signature = signature(secret.as_bytes(), &timestamp, &body);
            request = request
                .header("X-Paysay-Timestamp", timestamp)
                .header("X-Paysay-Signature", signature);
        }
        let what = format!("POST {}", self.shown_url());
        let response = request
            .body(body)
            .send()
            .await
            .map_err(|e| super::unanswered(&what, &e))?;
        let status = response.status();
        if status.is_success() {
            return Ok(());
        }
        super::by_status(&what, status, &super::excerpt(response).await)
    }

    /// The URL for the log: without a query, which may carry a receiver's token.
    fn shown_url(&self) -> String {
        let mut shown = self.url.clone();
        shown.set_query(None);
        let _ = shown.set_password(None);
        shown.to_string()
    }
}

impl Sink for Webhook {
    fn name(&self) -> &str {
        &self.name
    }

    fn deliver<'a>(&'a self, event: &'a PaymentEvent) -> DeliveryFuture<'a> {
        Box::pin(async move { self.post(&event.to_json()).await })
    }
}

/// Lower-case hex HMAC-SHA256 of `timestamp.body` with `secret`: `X-Paysay-Signature`.
pub fn signature(secret: &[u8], timestamp: &str, body: &[u8]) -> String {
    hex(&hmac_sha256(secret, &[timestamp.as_bytes(), b".", body])
        .finalize()
        .into_bytes())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn signature_is_hex_hmac_sha256_of_timestamp_dot_body() {
        // Python: hmac.new(b"shop-secret", b'1714528800.{"id":"abc"}', sha256).hexdigest()
        assert_eq!(
            signature(b"shop-secret", "1714528800", br#"{"id":"abc"}"#),
            "fc8c4bd0deb224d67c44161c976c8ba147960e8b014c7f076584f20847ef3bfd"
        );
    }
}
