//! How paysay signs what it sends and checks what it is sent: HMAC-SHA256 written as
//! lower-case hex. Webhook requests, MQTT payloads and SmsForwarder's notices use it, so a
//! receiver checks paysay's signatures with the same few lines whatever the channel.

use hmac::{Hmac, Mac};
use sha2::Sha256;

/// HMAC-SHA256 with `secret` over `parts`, one after another.
pub(crate) fn hmac_sha256(secret: &[u8], parts: &[&[u8]]) -> Hmac<Sha256> {
    let mut mac = Hmac::<Sha256>::new_from_slice(secret).expect("HMAC takes a key of any length");
    for part in parts {
        mac.update(part);
    }
    mac
}

/// Bytes as lower-case hex, the way signatures are written.
pub(crate) fn hex(bytes: &[u8]) -> String {
    bytes.iter().map(|b| format!("{b:02x}")).collect()
}
