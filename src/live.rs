//! What the daemon is doing right now, published for whoever watches (the shop's page):
//! the session's and the speaker's state in a `watch` (a late reader sees the latest), and
//! each newly recorded payment on a `broadcast` (a reader sees those that come after it
//! subscribed). Publishing costs nothing when nobody watches, so the daemon always does it,
//! with or without the `web` feature.

use serde::Serialize;
use tokio::sync::{broadcast, watch};

use crate::payment::Payment;

/// Payments a slow reader may fall behind by before it is told it lagged (and reads the
/// day again from the ledger).
const PAYMENTS_BUFFERED: usize = 256;

/// The WeChat session, as the shop owner would say it.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
#[serde(tag = "state", rename_all = "snake_case")]
pub enum SessionState {
    /// Starting: resuming the saved session or asking for a QR code.
    Connecting,
    /// A QR code waits to be scanned. `qr` changes with each new code (they expire).
    WaitingForScan {
        qr: u64,
        /// What the QR code encodes. It logs the account in for whoever scans it first,
        /// so it is served only as the image, under the page's access rule.
        #[serde(skip)]
        url: String,
    },
    /// Push login: the phone was asked to confirm.
    ConfirmOnPhone,
    /// Scanned; waiting for "log in" on the phone.
    Scanned,
    /// Logged in, `since` in unix seconds.
    LoggedIn { nick_name: String, since: i64 },
    /// WeChat ended the session; a new login follows.
    LoggedOut { retcode: i64 },
    /// No web session: `[wechat] enabled = false`; payments come from the phone.
    Off,
}

/// The shop's phone, as `[intake]` last heard it.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize)]
pub struct PhoneStatus {
    /// Heard from since start, and not silent since its heartbeats stopped.
    pub online: bool,
    /// When it was last heard from (a heartbeat or a notice), unix seconds.
    pub last_heard: Option<i64>,
}

/// The speaker, as the announcer last found it.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
#[serde(tag = "state", rename_all = "snake_case")]
pub enum SpeakerState {
    Idle,
    Speaking,
    /// The last announcement failed and is being retried: `what` is `audio` (the sound
    /// device) or `speech` (every voice).
    Failing {
        what: &'static str,
        error: String,
    },
}

/// The daemon's state as a whole.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct Status {
    pub session: SessionState,
    /// When the session last heard from WeChat (a sync round ended), unix seconds.
    pub last_sync: Option<i64>,
    pub speaker: SpeakerState,
    /// Whether the last write to the ledger worked.
    pub ledger_ok: bool,
    /// The shop's phone; `None` without `[intake]`.
    pub phone: Option<PhoneStatus>,
}

impl Default for Status {
    fn default() -> Self {
        Status {
            session: SessionState::Connecting,
            last_sync: None,
            speaker: SpeakerState::Idle,
            ledger_ok: true,
            phone: None,
        }
    }
}

/// The publishing side, held by the supervisor and the announcer.
#[derive(Debug, Clone)]
pub struct Live {
    status: watch::Sender<Status>,
    payments: broadcast::Sender<Payment>,
}

impl Default for Live {
    fn default() -> Self {
        Live::new()
    }
}

impl Live {
    pub fn new() -> Live {
        Live {
            status: watch::Sender::new(Status::default()),
            payments: broadcast::Sender::new(PAYMENTS_BUFFERED),
        }
    }

    /// Changes the status; watchers are woken only when it really changed.
    pub fn update(&self, change: impl FnOnce(&mut Status)) {
        self.status.send_if_modified(|status| {
            let before = status.clone();
            change(status);
            *status != before
        });
    }

    /// A payment is in the ledger (committed) for the first time.
    pub fn recorded(&self, payment: &Payment) {
        // No receiver is fine: nobody has the page open.
        let _ = self.payments.send(payment.clone());
    }

    /// The status now and its changes from here on.
    pub fn watch_status(&self) -> watch::Receiver<Status> {
        self.status.subscribe()
    }

    /// Payments recorded from now on.
    pub fn subscribe_payments(&self) -> broadcast::Receiver<Payment> {
        self.payments.subscribe()
    }

    /// A new QR code: the serial of the last one plus one.
    pub fn new_qr(&self, url: String) {
        self.update(|s| {
            let qr = match &s.session {
                SessionState::WaitingForScan { qr, .. } => qr + 1,
                _ => self.qr_serial_after(),
            };
            s.session = SessionState::WaitingForScan { qr, url };
        });
    }

    /// Serials keep rising across logins, so that a page never shows an old image from
    /// its cache.
    fn qr_serial_after(&self) -> u64 {
        crate::now_unix().unsigned_abs()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_new_qr_code_changes_its_serial_and_wakes_watchers() {
        let live = Live::new();
        let mut watcher = live.watch_status();
        live.new_qr("https://login.weixin.qq.com/l/a".into());
        assert!(watcher.has_changed().unwrap());
        let first = match &watcher.borrow_and_update().session {
            SessionState::WaitingForScan { qr, .. } => *qr,
            other => panic!("{other:?}"),
        };
        live.new_qr("https://login.weixin.qq.com/l/b".into());
        match &watcher.borrow_and_update().session {
            SessionState::WaitingForScan { qr, url } => {
                assert_eq!(*qr, first + 1);
                assert!(url.ends_with("/b"));
            }
            other => panic!("{other:?}"),
        }
        // The same state again is no change.
        live.update(|s| s.ledger_ok = true);
        assert!(!watcher.has_changed().unwrap());
    }

    #[test]
    fn the_url_stays_out_of_the_json() {
        let live = Live::new();
        live.new_qr("https://login.weixin.qq.com/l/secret".into());
        let json = serde_json::to_string(&*live.watch_status().borrow()).unwrap();
        assert!(!json.contains("secret"), "{json}");
        assert!(json.contains("waiting_for_scan"), "{json}");
    }
}
