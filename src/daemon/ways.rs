//! One payment, two ways in. A WeChat payment may reach paysay twice: from the web session
//! (a message with its MsgId) and from the shop phone's notice (wallet, amount and time
//! only). It is said once and is one ledger row, whichever copy comes first:
//!
//! - Copies are matched by wallet and exact amount within `[intake] match_window_secs`,
//!   and each copy matches one other copy at most, so two equal payments close together
//!   are two payments.
//! - While the web session is logged in, a phone WeChat notice waits `[intake]
//!   web_wait_ms` for its web copy before it is said: the web copy carries more (its
//!   MsgId, the payer, WeChat's count for the day) and proves the sender. A notice the web
//!   session has just refused as a forgery (an ordinary contact named 微信支付 writing
//!   "微信支付收款100元", which the phone shows exactly like a real notice) is not said.
//! - When the web session is down, or off, a phone notice is said at once.
//! - Alipay and 云闪付 come only from the phone: said at once.
//!
//! What waits here lives in memory for a few seconds only; the ledger
//! ([`crate::ledger::Ledger::set_match_window`]) matches a copy that comes later than that
//! with the row the first copy left, across restarts too. This part is pure: the caller
//! passes the time.

use std::time::Duration;

use tokio::time::Instant;

use crate::intake::PhoneNotice;
use crate::payment::Wallet;

/// What to do with a phone notice now.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum PhoneVerdict {
    /// Record and say it: its web copy cannot come (web down, another wallet).
    SayNow(PhoneNotice),
    /// Kept until its web copy comes or [`Ways::expired`] gives it back.
    Waiting,
    /// The phone's copy of a message the web session refused as a forgery: not said.
    Forged(PhoneNotice),
}

/// A forgery the web session refused, as the phone would show it.
#[derive(Debug, Clone, Copy)]
struct Forgery {
    amount_fen: u64,
    /// Unix seconds, the message's.
    time: i64,
    seen: Instant,
}

/// Phone notices waiting for their web copy, and forgeries the web session refused.
#[derive(Debug)]
pub struct Ways {
    wait: Duration,
    /// Seconds between two copies of one payment, at most.
    window: i64,
    waiting: Vec<(PhoneNotice, Instant)>,
    forgeries: Vec<Forgery>,
}

impl Ways {
    pub fn new(wait: Duration, window: Duration) -> Ways {
        Ways {
            wait,
            window: i64::try_from(window.as_secs()).unwrap_or(i64::MAX),
            waiting: Vec::new(),
            forgeries: Vec::new(),
        }
    }

    fn close(&self, a: i64, b: i64) -> bool {
        a.abs_diff(b) <= self.window.unsigned_abs()
    }

    /// A phone notice: forged, waiting, or to be said now. `web_up`: the web session is
    /// logged in, so a WeChat payment's web copy is on its way.
    pub fn phone(&mut self, notice: PhoneNotice, web_up: bool, now: Instant) -> PhoneVerdict {
        if notice.wallet != Wallet::WeChat {
            return PhoneVerdict::SayNow(notice);
        }
        self.forget_old(now);
        if let Some(i) = self
            .forgeries
            .iter()
            .position(|f| f.amount_fen == notice.amount_fen && self.close(f.time, notice.time))
        {
            self.forgeries.remove(i);
            return PhoneVerdict::Forged(notice);
        }
        if !web_up || self.wait.is_zero() {
            return PhoneVerdict::SayNow(notice);
        }
        self.waiting.push((notice, now + self.wait));
        PhoneVerdict::Waiting
    }

    /// A WeChat payment from the web session: the waiting phone copy it is (the oldest of
    /// that amount within the window), taken.
    pub fn web_payment(&mut self, amount_fen: u64, time: i64) -> Option<PhoneNotice> {
        let i = self
            .waiting
            .iter()
            .position(|(n, _)| n.amount_fen == amount_fen && self.close(n.time, time))?;
        Some(self.waiting.remove(i).0)
    }

    /// The web session refused a forgery that the phone shows as `amount_fen`: its phone
    /// copy, if it waits already, is taken (not to be said); else it is refused when it
    /// comes.
    pub fn web_forgery(&mut self, amount_fen: u64, time: i64, now: Instant) -> Option<PhoneNotice> {
        if let Some(copy) = self.web_payment(amount_fen, time) {
            return Some(copy);
        }
        self.forget_old(now);
        self.forgeries.push(Forgery {
            amount_fen,
            time,
            seen: now,
        });
        None
    }

    /// When the next waiting notice is due.
    pub fn next_due(&self) -> Option<Instant> {
        self.waiting.iter().map(|(_, due)| *due).min()
    }

    /// The notices whose web copy did not come in time: to be said now, oldest first.
    pub fn expired(&mut self, now: Instant) -> Vec<PhoneNotice> {
        let (due, keep): (Vec<_>, Vec<_>) = std::mem::take(&mut self.waiting)
            .into_iter()
            .partition(|(_, due)| *due <= now);
        self.waiting = keep;
        due.into_iter().map(|(n, _)| n).collect()
    }

    /// Forgeries older than the window cannot match a copy any more.
    fn forget_old(&mut self, now: Instant) {
        let keep = Duration::from_secs(self.window.unsigned_abs());
        self.forgeries
            .retain(|f| now.duration_since(f.seen) <= keep);
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::intake::Forwarder;

    const WAIT: Duration = Duration::from_secs(3);

    fn ways() -> Ways {
        Ways::new(WAIT, Duration::from_secs(120))
    }

    fn notice(wallet: Wallet, fen: u64, time: i64, id: &str) -> PhoneNotice {
        PhoneNotice {
            wallet,
            amount_fen: fen,
            time,
            id: id.into(),
            forwarder: Forwarder::SmsForwarder,
            app: None,
            title: String::new(),
            text: String::new(),
        }
    }

    #[test]
    fn a_phone_copy_waits_for_its_web_copy_and_is_taken_by_it() {
        let now = Instant::now();
        let mut w = ways();
        let n = notice(Wallet::WeChat, 500, 1000, "p1");
        assert_eq!(w.phone(n.clone(), true, now), PhoneVerdict::Waiting);
        assert_eq!(w.next_due(), Some(now + WAIT));
        assert_eq!(w.web_payment(500, 1001), Some(n));
        assert_eq!(w.expired(now + WAIT), []);
    }

    #[test]
    fn two_equal_payments_are_two_and_each_copy_is_taken_once() {
        let now = Instant::now();
        let mut w = ways();
        let a = notice(Wallet::WeChat, 500, 1000, "p1");
        let b = notice(Wallet::WeChat, 500, 1002, "p2");
        assert_eq!(w.phone(a.clone(), true, now), PhoneVerdict::Waiting);
        assert_eq!(w.phone(b.clone(), true, now), PhoneVerdict::Waiting);
        assert_eq!(w.web_payment(500, 1000), Some(a));
        assert_eq!(w.web_payment(500, 1002), Some(b));
        assert_eq!(w.web_payment(500, 1002), None, "a third web copy has none");
    }

    #[test]
    fn without_its_web_copy_a_notice_is_said_when_the_wait_is_over() {
        let now = Instant::now();
        let mut w = ways();
        let n = notice(Wallet::WeChat, 500, 1000, "p1");
        w.phone(n.clone(), true, now);
        assert_eq!(w.expired(now + WAIT / 2), []);
        assert_eq!(w.expired(now + WAIT), [n]);
        assert_eq!(w.next_due(), None);
    }

    #[test]
    fn web_down_or_another_wallet_is_said_at_once() {
        let now = Instant::now();
        let mut w = ways();
        let wechat = notice(Wallet::WeChat, 500, 1000, "p1");
        assert_eq!(
            w.phone(wechat.clone(), false, now),
            PhoneVerdict::SayNow(wechat)
        );
        let alipay = notice(Wallet::Alipay, 500, 1000, "p2");
        assert_eq!(
            w.phone(alipay.clone(), true, now),
            PhoneVerdict::SayNow(alipay)
        );
        let unionpay = notice(Wallet::UnionPay, 1, 1000, "p3");
        assert_eq!(
            w.phone(unionpay.clone(), true, now),
            PhoneVerdict::SayNow(unionpay)
        );
    }

    #[test]
    fn a_forgery_refused_on_the_web_silences_its_phone_copy_either_order() {
        let now = Instant::now();
        let mut w = ways();
        // The web copy first: remembered, the phone copy refused when it comes.
        assert_eq!(w.web_forgery(10_000, 1000, now), None);
        let n = notice(Wallet::WeChat, 10_000, 1001, "p1");
        assert_eq!(w.phone(n.clone(), true, now), PhoneVerdict::Forged(n));
        // The phone copy first: it waits, and the forgery takes it.
        let m = notice(Wallet::WeChat, 10_000, 2000, "p2");
        assert_eq!(w.phone(m.clone(), true, now), PhoneVerdict::Waiting);
        assert_eq!(w.web_forgery(10_000, 2000, now), Some(m));
        assert_eq!(w.expired(now + WAIT), []);
        // A real payment of another amount is not touched.
        let r = notice(Wallet::WeChat, 500, 2001, "p3");
        assert_eq!(w.phone(r, true, now), PhoneVerdict::Waiting);
    }

    #[test]
    fn copies_outside_the_window_are_not_one_payment() {
        let now = Instant::now();
        let mut w = ways();
        w.phone(notice(Wallet::WeChat, 500, 1000, "p1"), true, now);
        assert_eq!(w.web_payment(500, 1000 + 121), None);
        assert_eq!(w.web_payment(600, 1000), None);
    }
}
