//! paysay: a WeChat Pay payment speaker.
//!
//! The data flows one way: `session` (WeChat web, owns cookies and keys) → `protocol`
//! messages → `payment` (pure detection) → `ledger` (what was detected and announced) →
//! `speech` (text → audio clip, cached) → `audio` (one thread owns the device). `daemon`
//! wires the stages together.
//!
//! The wire formats live in the `wechat-web` crate (here as [`protocol`]), shared with the
//! `wechat-sim` crate: the WeChat simulator the tests and `paysay demo` run. The simulator is
//! a tool beside the daemon, not part of it: only the `demo` feature links it in.

pub(crate) mod announcer;
pub mod audio;
pub(crate) mod backoff;
mod body;
pub mod config;
pub mod daemon;
#[cfg(feature = "demo")]
pub mod demo;
pub mod doctor;
pub mod events;
mod failing;
pub(crate) mod fsutil;
pub mod intake;
pub mod ledger;
#[cfg(any(feature = "web", feature = "intake"))]
mod listener;
pub mod live;
pub mod mqtt;
pub mod outbox;
pub mod paths;
pub mod payment;
pub(crate) mod readiness;
pub mod service;
pub mod session;
mod signing;
pub mod sinks;
pub mod speaker;
pub mod speech;
pub mod text;
#[cfg(feature = "web")]
pub mod web;

pub use wechat_web as protocol;
pub use wechat_web::money;

/// An error with its causes ("error sending request: connection refused"): the top-level
/// messages of reqwest and rodio alone rarely say what to fix.
pub(crate) fn error_chain(e: &dyn std::error::Error) -> String {
    let mut text = e.to_string();
    let mut source = e.source();
    while let Some(cause) = source {
        text.push_str(": ");
        text.push_str(&cause.to_string());
        source = cause.source();
    }
    text
}

/// Seconds since the epoch; a clock before 1970 reads as 0 rather than failing a payment.
pub(crate) fn now_unix() -> i64 {
    std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map_or(0, |d| i64::try_from(d.as_secs()).unwrap_or(i64::MAX))
}

/// `unix` in RFC 3339 at the given offset; out-of-range times show as the raw number. One
/// format for every time paysay writes for programs: the ledger's JSON and CSV, the
/// events sinks send, the doctor's report.
pub(crate) fn rfc3339(unix: i64, offset: time::UtcOffset) -> String {
    time::OffsetDateTime::from_unix_timestamp(unix)
        .ok()
        .and_then(|t| {
            t.to_offset(offset)
                .format(&time::format_description::well_known::Rfc3339)
                .ok()
        })
        .unwrap_or_else(|| unix.to_string())
}
