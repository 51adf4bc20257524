//! The second way in: payment notices from the shop's phone, forwarded over HTTP by the
//! apps shops already run, SmsForwarder (`POST /intake/smsforwarder`) and the V免签 monitor
//! app (`GET /appHeart`, `GET /appPush`). The listener faces the shop's LAN.
//!
//! What the intake hands the daemon is [`IntakeEvent`]: a verified notice already read
//! into a wallet and an exact amount, or the phone's comings and goings. Deciding whether
//! a notice is a payment the web session already heard is the daemon's job.

#[cfg(feature = "intake")]
mod server;
#[cfg(feature = "intake")]
pub mod sign;

#[cfg(feature = "intake")]
pub use server::{IntakeError, MAX_BODY, Server};

use crate::payment::Wallet;

/// Which forwarder app sent a notice.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Forwarder {
    /// pppscn/SmsForwarder's webhook sender.
    SmsForwarder,
    /// The V免签 monitor app (szvone/vmqApk and its forks).
    VmqApp,
}

impl Forwarder {
    pub fn as_str(self) -> &'static str {
        match self {
            Forwarder::SmsForwarder => "smsforwarder",
            Forwarder::VmqApp => "vmq-app",
        }
    }
}

/// A payment read from one of the phone's notices: signed, fresh, not a replay, and read
/// by the rules of [`crate::payment`] into a wallet and an exact amount.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct PhoneNotice {
    pub wallet: Wallet,
    pub amount_fen: u64,
    /// Unix seconds: when the phone says it received the notice (its timestamp, checked
    /// against this computer's clock).
    pub time: i64,
    /// Unique per forwarded notice (derived from the forwarder, its timestamp and
    /// signature): the ledger's `msg_id` for a payment heard only from the phone.
    pub id: String,
    pub forwarder: Forwarder,
    /// The notification's app (Android package name), where the forwarder says.
    pub app: Option<String>,
    /// The notification's title and text as the phone showed them (network text: escape
    /// before logging).
    pub title: String,
    pub text: String,
}

/// What the intake tells the daemon.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum IntakeEvent {
    /// A payment notice from the phone.
    Notice(PhoneNotice),
    /// The phone was heard from for the first time since start, or again after it was
    /// offline.
    PhoneOnline,
    /// The phone, after sending heartbeats, has been silent for `[intake]
    /// phone_timeout_secs`.
    PhoneOffline,
    /// A signed request from the phone (a heartbeat, or any notice): when it was last heard.
    Heard(Forwarder),
}
