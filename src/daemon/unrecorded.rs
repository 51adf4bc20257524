//! Payments announced before the ledger could record them. The money arrived, so the owner
//! hears it at once; the session keeps the old SyncKey, and when the server delivers the
//! payment again and the ledger records it, it must not be said a second time. Kept in
//! memory only: after a restart the server delivers the batch again (its SyncKey was never
//! saved), and a payment then said twice is better than one never said.

use std::sync::{Arc, Mutex, MutexGuard};

use crate::payment::Payment;

/// Shared by the supervisor (which records) and the announcer (which says).
#[derive(Debug, Clone, Default)]
pub struct Unrecorded(Arc<Mutex<Vec<Pending>>>);

/// One payment queued or said while the ledger could not record it, keyed like the
/// ledger's uniqueness: `msg_id`, and `transfer_id` for transfers (a transfer comes once
/// per step, each with its own `msg_id`).
#[derive(Debug)]
struct Pending {
    msg_id: String,
    transfer_id: Option<String>,
    heard: bool,
}

impl Pending {
    fn is(&self, p: &Payment) -> bool {
        self.msg_id == p.msg_id || (self.transfer_id.is_some() && self.transfer_id == p.transfer_id)
    }
}

/// What to do about a payment the ledger has just recorded (or found already there).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Resolved {
    /// Not announced before: the usual way.
    Unknown,
    /// Queued for the announcer before it was recorded: the announcer marks it once heard.
    BeingAnnounced,
    /// Said before it was recorded: mark it announced now, do not say it again.
    AlreadyHeard,
}

impl Unrecorded {
    fn lock(&self) -> MutexGuard<'_, Vec<Pending>> {
        // The list stays consistent across a panic: each change is one push, flag or remove.
        self.0.lock().unwrap_or_else(|e| e.into_inner())
    }

    /// Notes that `p` is announced although the ledger could not record it. False when it
    /// already was (delivered again while the ledger stays broken): do not say it twice.
    pub fn insert(&self, p: &Payment) -> bool {
        let mut pending = self.lock();
        if pending.iter().any(|e| e.is(p)) {
            return false;
        }
        pending.push(Pending {
            msg_id: p.msg_id.clone(),
            transfer_id: p.transfer_id.clone(),
            heard: false,
        });
        true
    }

    /// `p` is in the ledger now: forgets it, and says what is left to do.
    pub fn recorded(&self, p: &Payment) -> Resolved {
        let mut pending = self.lock();
        match pending.iter().position(|e| e.is(p)) {
            None => Resolved::Unknown,
            Some(i) if pending.swap_remove(i).heard => Resolved::AlreadyHeard,
            Some(_) => Resolved::BeingAnnounced,
        }
    }

    /// The announcer said `p`. True if it is not in the ledger yet: then the supervisor
    /// marks it announced once it is recorded; false means mark it now.
    pub fn heard(&self, p: &Payment) -> bool {
        let mut pending = self.lock();
        match pending.iter_mut().find(|e| e.is(p)) {
            Some(e) => {
                e.heard = true;
                true
            }
            None => false,
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::payment::PaymentKind;

    fn payment(msg_id: &str, transfer_id: Option<&str>) -> Payment {
        Payment {
            amount_fen: 100,
            kind: PaymentKind::Transfer,
            payer: None,
            remark: None,
            daily_count: None,
            daily_total_fen: None,
            time: 0,
            account: "微信支付".into(),
            transfer_id: transfer_id.map(String::from),
            msg_id: msg_id.into(),
            wallet: crate::payment::Wallet::WeChat,
            source: crate::payment::Source::Web,
        }
    }

    #[test]
    fn a_payment_heard_before_it_was_recorded_is_marked_not_said_again() {
        let u = Unrecorded::default();
        let p = payment("m1", None);
        assert!(u.insert(&p));
        assert!(
            !u.insert(&p),
            "a redelivery while broken is not queued again"
        );
        assert!(u.heard(&p));
        assert_eq!(u.recorded(&p), Resolved::AlreadyHeard);
        assert_eq!(u.recorded(&p), Resolved::Unknown, "forgotten once recorded");
        assert!(!u.heard(&p));
    }

    #[test]
    fn recorded_before_heard_leaves_the_marking_to_the_announcer() {
        let u = Unrecorded::default();
        let p = payment("m1", None);
        assert!(u.insert(&p));
        assert_eq!(u.recorded(&p), Resolved::BeingAnnounced);
        assert!(!u.heard(&p), "the announcer marks it in the ledger itself");
    }

    #[test]
    fn another_step_of_the_same_transfer_is_the_same_payment() {
        let u = Unrecorded::default();
        assert!(u.insert(&payment("sent", Some("t1"))));
        assert!(!u.insert(&payment("accepted", Some("t1"))));
        assert!(u.insert(&payment("other", Some("t2"))));
        assert!(u.heard(&payment("sent", Some("t1"))));
        assert_eq!(
            u.recorded(&payment("accepted", Some("t1"))),
            Resolved::AlreadyHeard
        );
    }
}
