//! Is a forwarded notice from the shop's phone? Both forwarders sign with the secret the
//! owner gave them, and neither signs in a way that stops a replay by itself, so the
//! intake also keeps each signature it took for as long as its timestamp is acceptable.
//!
//! - SmsForwarder (its webhook sender, "加签"): `sign = URLEncode(Base64(HmacSHA256(key =
//!   secret, data = timestamp + "\n" + secret)))`, `timestamp` in milliseconds — the
//!   DingTalk robot's scheme. It covers the timestamp alone, not the content, so the
//!   window is short (5 minutes) and a signature is taken once.
//! - The V免签 monitor app: `appHeart` signs `md5(t + key)`, `appPush` signs
//!   `md5(type + price + t + key)`, lower-case hex, with `price` exactly as sent.

use std::collections::{HashMap, VecDeque};

use base64::Engine;
use hmac::Mac;

use crate::signing::hmac_sha256;
use crate::sinks::vmq::md5_hex;

/// How far a forwarder's timestamp may be from this computer's clock, either way.
pub const WINDOW_MS: i64 = 5 * 60 * 1000;

/// The most signatures remembered; beyond it the oldest go first (a flood of valid
/// signatures needs the secret, so this is only a bound on memory).
const MAX_REMEMBERED: usize = 4096;

/// Why a request was refused, in words for the forwarder's log and paysay's.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum Refusal {
    #[error("no signature: set the same secret in the forwarder as in [intake] secret")]
    Unsigned,
    #[error("wrong signature: the forwarder's secret is not [intake] secret")]
    WrongSign,
    #[error("timestamp missing or not a number")]
    NoTimestamp,
    #[error(
        "the phone's clock is {off_s} s off this computer's (at most 300 s): set both to the network time"
    )]
    Clock { off_s: i64 },
    #[error("this signature was already used (a replay)")]
    Replay,
}

/// SmsForwarder's signature of `timestamp`, as it sends it before URL-encoding.
pub fn smsforwarder_sign(secret: &str, timestamp: &str) -> String {
    let mac = hmac_sha256(
        secret.as_bytes(),
        &[timestamp.as_bytes(), b"\n", secret.as_bytes()],
    );
    base64::engine::general_purpose::STANDARD.encode(mac.finalize().into_bytes())
}

/// Checks SmsForwarder's `sign` for `timestamp`. The sign arrives URL-encoded once by
/// SmsForwarder; a form body's decoding or a template may leave it encoded or not, so
/// both spellings of the one correct value are taken (compared in constant time).
pub fn check_smsforwarder(secret: &str, timestamp: &str, sign: &str) -> Result<(), Refusal> {
    if sign.is_empty() {
        return Err(Refusal::Unsigned);
    }
    let expected = smsforwarder_sign(secret, timestamp);
    let decoded: String = url::form_urlencoded::parse(format!("s={sign}").as_bytes())
        .map(|(_, v)| v.into_owned())
        .next()
        .unwrap_or_default();
    if same(sign, &expected) || same(&decoded, &expected) {
        Ok(())
    } else {
        Err(Refusal::WrongSign)
    }
}

/// Checks a V免签 app signature: `md5` of `signed` then the key.
pub fn check_vmq(secret: &str, signed: &[&str], sign: &str) -> Result<(), Refusal> {
    if sign.is_empty() {
        return Err(Refusal::Unsigned);
    }
    let mut parts = signed.to_vec();
    parts.push(secret);
    if same(&sign.to_ascii_lowercase(), &md5_hex(&parts)) {
        Ok(())
    } else {
        Err(Refusal::WrongSign)
    }
}

/// The timestamp (ms) as a number within [`WINDOW_MS`] of `now_ms`.
pub fn check_clock(timestamp: &str, now_ms: i64) -> Result<i64, Refusal> {
    let t: i64 = timestamp.trim().parse().map_err(|_| Refusal::NoTimestamp)?;
    let off = t.saturating_sub(now_ms);
    if off.abs() > WINDOW_MS {
        return Err(Refusal::Clock { off_s: off / 1000 });
    }
    Ok(t)
}

/// Equal, in time that depends on the length alone.
fn same(a: &str, b: &str) -> bool {
    a.len() == b.len()
        && a.bytes()
            .zip(b.bytes())
            .fold(0u8, |acc, (x, y)| acc | (x ^ y))
            == 0
}

/// The signatures taken while their timestamps are in the window.
#[derive(Debug, Default)]
pub struct Replays {
    seen: HashMap<String, i64>,
    order: VecDeque<(i64, String)>,
}

impl Replays {
    /// Takes `sign` (whose timestamp is `t`, ms) once; a second time is a replay.
    pub fn take(&mut self, sign: &str, t: i64, now_ms: i64) -> Result<(), Refusal> {
        self.forget_before(now_ms - 2 * WINDOW_MS);
        if self.seen.contains_key(sign) {
            return Err(Refusal::Replay);
        }
        if self.order.len() >= MAX_REMEMBERED
            && let Some((_, oldest)) = self.order.pop_front()
        {
            self.seen.remove(&oldest);
        }
        self.seen.insert(sign.to_string(), t);
        self.order.push_back((now_ms, sign.to_string()));
        Ok(())
    }

    fn forget_before(&mut self, cutoff: i64) {
        while let Some((at, _)) = self.order.front() {
            if *at >= cutoff {
                break;
            }
            if let Some((_, sign)) = self.order.pop_front() {
                self.seen.remove(&sign);
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn smsforwarder_signs_the_timestamp_and_the_secret_with_hmac_sha256() {
        // Python: base64.b64encode(hmac.new(b"SEC", b"1700000000000\nSEC", sha256).digest())
        let sign = smsforwarder_sign("SEC", "1700000000000");
        assert_eq!(sign.len(), 44);
        assert_eq!(check_smsforwarder("SEC", "1700000000000", &sign), Ok(()));
        let encoded: String = url::form_urlencoded::byte_serialize(sign.as_bytes()).collect();
        assert_eq!(check_smsforwarder("SEC", "1700000000000", &encoded), Ok(()));
        assert_eq!(
            check_smsforwarder("other", "1700000000000", &sign),
            Err(Refusal::WrongSign)
        );
        assert_eq!(
            check_smsforwarder("SEC", "1700000000001", &sign),
            Err(Refusal::WrongSign)
        );
        assert_eq!(check_smsforwarder("SEC", "1", ""), Err(Refusal::Unsigned));
    }

    #[test]
    fn vmq_signs_md5_of_the_fields_then_the_key() {
        let sign = md5_hex(&["1", "1.0", "1700000000000", "key"]);
        assert_eq!(
            check_vmq("key", &["1", "1.0", "1700000000000"], &sign),
            Ok(())
        );
        assert_eq!(
            check_vmq("key", &["1", "1.00", "1700000000000"], &sign),
            Err(Refusal::WrongSign)
        );
    }

    #[test]
    fn clocks_five_minutes_apart_are_refused() {
        let now = 1_700_000_000_000;
        assert_eq!(check_clock("1700000000000", now), Ok(now));
        assert_eq!(
            check_clock(&(now - WINDOW_MS).to_string(), now),
            Ok(now - WINDOW_MS)
        );
        assert!(matches!(
            check_clock(&(now + WINDOW_MS + 1).to_string(), now),
            Err(Refusal::Clock { .. })
        ));
        assert_eq!(check_clock("soon", now), Err(Refusal::NoTimestamp));
    }

    #[test]
    fn a_signature_is_taken_once_and_memory_stays_bounded() {
        let mut replays = Replays::default();
        assert_eq!(replays.take("a", 1, 1_000), Ok(()));
        assert_eq!(replays.take("a", 1, 2_000), Err(Refusal::Replay));
        // Long after its window it is forgotten (its timestamp is refused by then anyway).
        assert_eq!(replays.take("a", 1, 1_000 + 3 * WINDOW_MS), Ok(()));
        for i in 0..(MAX_REMEMBERED + 100) {
            replays.take(&i.to_string(), 0, 5_000_000).unwrap();
        }
        assert!(replays.seen.len() <= MAX_REMEMBERED);
        assert_eq!(replays.seen.len(), replays.order.len());
    }
}
