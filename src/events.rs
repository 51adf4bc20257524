//! Payment events going out: what a recorded payment looks like to the world beyond the
//! speaker (a web shop's webhook, a V免签 server, an MQTT broker feeding more speakers).
//!
//! Every receiver is told the same facts in the same words, and each event carries an id
//! derived from the payment's identity, so a receiver that is told twice (a retry, a
//! redelivery, a restart, a resend by hand) can tell it is the same payment.
//! `docs/protocol/OUTBOUND.md` says what the receivers expect.

use std::future::Future;
use std::pin::Pin;

use serde::Serialize;
use sha2::{Digest, Sha256};

use crate::money::Yuan;
use crate::payment::{Payment, PaymentKind};
use crate::rfc3339;

/// One payment as every sink sends it: the webhook's JSON body, and the MQTT payload with
/// `money` added.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct PaymentEvent {
    /// Stable across redeliveries, restarts and resends: see [`event_id`].
    pub id: String,
    pub msg_id: String,
    pub amount_fen: u64,
    /// The amount in yuan, two decimals: `"12.50"`.
    pub amount: String,
    /// `collection`, `clerk_collection`, `transfer`, `red_packet`, `group_collection`.
    pub kind: &'static str,
    /// `wechat`, `alipay` or `unionpay`.
    pub wallet: &'static str,
    pub payer: Option<String>,
    pub remark: Option<String>,
    /// The official account (or the transfer's sender) that delivered the notice.
    pub account: String,
    /// When WeChat says the payment was made, RFC 3339 in local time.
    pub time: String,
}

impl PaymentEvent {
    /// The event for a payment; `offset` is the local UTC offset at the payment's time.
    pub fn new(p: &Payment, offset: time::UtcOffset) -> PaymentEvent {
        PaymentEvent {
            id: event_id(p),
            msg_id: p.msg_id.clone(),
            amount_fen: p.amount_fen,
            amount: Yuan(p.amount_fen).to_string(),
            kind: p.kind.as_str(),
            wallet: p.wallet.as_str(),
            payer: p.payer.clone(),
            remark: p.remark.clone(),
            account: p.account.clone(),
            time: rfc3339(p.time, offset),
        }
    }

    /// The webhook body: the event as JSON.
    pub fn to_json(&self) -> serde_json::Value {
        // A struct of strings and numbers always serializes.
        serde_json::to_value(self).unwrap_or_default()
    }

    /// The MQTT payload: the webhook's JSON plus `"money": "12.50"`, the field cloud
    /// payment speakers read.
    pub fn to_mqtt_json(&self) -> serde_json::Value {
        let mut v = self.to_json();
        v["money"] = serde_json::Value::String(self.amount.clone());
        v
    }
}

/// The event id: the payment's identity in the ledger (its transfer id for a transfer, whose
/// steps arrive as several messages, else its msg_id), hashed so that it has one shape
/// (32 hex digits) whatever WeChat's ids look like.
pub fn event_id(p: &Payment) -> String {
    let identity = match (&p.kind, &p.transfer_id) {
        (PaymentKind::Transfer, Some(transfer_id)) => format!("transfer:{transfer_id}"),
        _ => format!("msg:{}", p.msg_id),
    };
    let digest = Sha256::digest(identity.as_bytes());
    digest[..16].iter().map(|b| format!("{b:02x}")).collect()
}

/// Why a delivery did not go through, sorted by what the delivery task does next.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum DeliveryError {
    /// Down, slow, 5xx, 408/429, a broker not connected: wait and send again.
    #[error("{0}")]
    Transient(String),
    /// The receiver said no and will say no again (4xx, a sign error): logged loudly, not
    /// retried for ever.
    #[error("rejected: {0}")]
    Rejected(String),
}

/// The future a sink's delivery returns.
pub type DeliveryFuture<'a> = Pin<Box<dyn Future<Output = Result<(), DeliveryError>> + Send + 'a>>;

/// Somewhere payment events go: a webhook, a V免签 server, an MQTT broker. One delivery task
/// per sink sends it the events in order, at least once.
pub trait Sink: Send + Sync {
    /// The sink's name in the log, the ledger's delivery state and `paysay resend --sink`.
    fn name(&self) -> &str;

    /// Sends one event; `Ok` once the receiver has acknowledged it.
    fn deliver<'a>(&'a self, event: &'a PaymentEvent) -> DeliveryFuture<'a>;
}

#[cfg(test)]
mod tests {
    use super::*;

    fn payment(kind: PaymentKind, msg_id: &str, transfer_id: Option<&str>) -> Payment {
        Payment {
            msg_id: msg_id.into(),
            amount_fen: 1250,
            kind,
            payer: Some("张三".into()),
            remark: None,
            daily_count: Some(3),
            daily_total_fen: Some(5000),
            time: 1_714_528_800,
            account: "微信支付".into(),
            transfer_id: transfer_id.map(String::from),
            wallet: crate::payment::Wallet::WeChat,
            source: crate::payment::Source::Web,
        }
    }

    #[test]
    fn the_id_is_the_payments_identity_and_nothing_else() {
        let a = payment(PaymentKind::Collection, "111", None);
        let mut again = a.clone();
        again.time += 60;
        again.amount_fen = 1;
        assert_eq!(event_id(&a), event_id(&again), "same message, same id");
        assert_ne!(
            event_id(&a),
            event_id(&payment(PaymentKind::Collection, "112", None))
        );
        assert_eq!(event_id(&a).len(), 32);
        // A transfer's steps come as different messages with one transfer id.
        let sent = payment(PaymentKind::Transfer, "201", Some("1000050001"));
        let step = payment(PaymentKind::Transfer, "202", Some("1000050001"));
        assert_eq!(event_id(&sent), event_id(&step));
    }

    #[test]
    fn the_payload_has_the_contract_fields() {
        let e = PaymentEvent::new(
            &payment(PaymentKind::Collection, "111", None),
            time::macros::offset!(+8),
        );
        let v = e.to_json();
        assert_eq!(v["msg_id"], "111");
        assert_eq!(v["amount_fen"], 1250);
        assert_eq!(v["amount"], "12.50");
        assert_eq!(v["kind"], "collection");
        assert_eq!(v["payer"], "张三");
        assert_eq!(v["remark"], serde_json::Value::Null);
        assert_eq!(v["account"], "微信支付");
        assert_eq!(v["time"], "2024-05-01T10:00:00+08:00");
        assert_eq!(v["id"], e.id.as_str());
        assert!(v.get("money").is_none());
        assert_eq!(e.to_mqtt_json()["money"], "12.50");
    }
}
