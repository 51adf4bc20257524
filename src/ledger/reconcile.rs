//! Reconciliation with WeChat's own count: each collection notice says how many payments
//! WeChat counted today and their total (`今日第3笔收款，共计￥12.50`). Compared with the
//! previous notice of the same account and local day that the ledger holds, the count
//! should be one more and the total should have grown by this payment. A jump means
//! notices paysay never saw (sent while it was logged out or stopped, or lost): the
//! ledger lacks `jump − 1` payments, worth the total's growth minus this payment.
//!
//! WeChat counts the payments the phone's notices brought too: a WeChat payment the ledger
//! holds only from the phone (`source` phone, the web session missed it) between the two
//! notices is one of the jump, not a gap.
//!
//! Only a jump is a gap. The first notice of a day proves nothing (paysay may have started
//! at noon), and a count that goes down or a total that does not add up is odd rather than
//! alarming: a day boundary seen differently, a clerk's copy, a refund.

use time::UtcOffset;

use super::Entry;
use crate::money::Yuan;
use crate::payment::{Payment, Source, Wallet};

/// Payments WeChat counted that the ledger does not hold.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Gap {
    /// The account whose count jumped (微信支付, 微信收款助手…).
    pub account: String,
    /// When the notice that showed the jump was sent (unix seconds).
    pub seen_at: i64,
    /// How many payments are missing.
    pub missed: u32,
    /// Their sum, where both notices carried a total.
    pub missed_fen: Option<u64>,
}

/// What a notice says about the ledger, against the previous one.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Check {
    /// No count to compare, or the first notice of the day: nothing to say.
    Nothing,
    /// One more, and the total grew by this payment.
    Consistent,
    Gap(Gap),
    /// Went down, or does not add up: worth a log line, not an alarm.
    Odd(&'static str),
}

/// WeChat payments the ledger holds from the phone alone, between two notices: how many,
/// and their sum.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct PhoneOnly {
    pub count: u32,
    pub fen: u64,
}

impl PhoneOnly {
    fn add(&mut self, p: &Payment) {
        self.count = self.count.saturating_add(1);
        self.fen = self.fen.saturating_add(p.amount_fen);
    }

    /// Whether `p` is one: a WeChat payment heard only from the phone.
    pub fn is(p: &Payment) -> bool {
        p.wallet == Wallet::WeChat && p.source == Source::Phone
    }
}

/// Compares `this` notice with the `previous` one of the same account and local day;
/// `between` are the WeChat payments the ledger holds from the phone alone since then.
pub fn check(previous: Option<&Payment>, this: &Payment, between: PhoneOnly) -> Check {
    let (Some(prev), Some(count)) = (previous, this.daily_count) else {
        return Check::Nothing;
    };
    let Some(prev_count) = prev.daily_count else {
        return Check::Nothing;
    };
    let growth = match (prev.daily_total_fen, this.daily_total_fen) {
        (Some(before), Some(now)) if now < before => return Check::Odd("the day's total shrank"),
        (Some(before), Some(now)) => Some(now - before),
        _ => None,
    };
    if count <= prev_count {
        return Check::Odd("the day's count did not grow");
    }
    let jump = count - prev_count;
    let growth = growth.map(|g| g.saturating_sub(between.fen));
    if jump <= between.count.saturating_add(1) {
        return match growth {
            Some(g) if g != this.amount_fen => {
                Check::Odd("the day's total grew by another amount than this payment")
            }
            _ => Check::Consistent,
        };
    }
    Check::Gap(Gap {
        account: this.account.clone(),
        seen_at: this.time,
        missed: jump - 1 - between.count,
        missed_fen: growth.map(|g| g.saturating_sub(this.amount_fen)),
    })
}

/// The gaps among `entries` (in time order, as [`super::Ledger::entries`] gives them):
/// each notice against the previous one of its account and local day.
pub fn gaps(entries: &[Entry], offset_at: &dyn Fn(i64) -> UtcOffset) -> Vec<Gap> {
    let mut last: Vec<(&str, time::Date, &Payment, PhoneOnly)> = Vec::new();
    let mut found = Vec::new();
    for p in entries.iter().map(|e| &e.payment) {
        let day = local_date(p.time, offset_at);
        if PhoneOnly::is(p) {
            for slot in last.iter_mut().filter(|slot| slot.1 == day) {
                slot.3.add(p);
            }
            continue;
        }
        if p.daily_count.is_none() {
            continue;
        }
        let slot = last
            .iter_mut()
            .find(|(account, d, _, _)| *account == p.account && *d == day);
        let (previous, between) = slot
            .as_ref()
            .map_or((None, PhoneOnly::default()), |(_, _, prev, between)| {
                (Some(*prev), *between)
            });
        if let Check::Gap(gap) = check(previous, p, between) {
            found.push(gap);
        }
        match slot {
            Some(slot) => {
                slot.2 = p;
                slot.3 = PhoneOnly::default();
            }
            None => last.push((&p.account, day, p, PhoneOnly::default())),
        }
    }
    found
}

/// The local date of a unix time.
pub fn local_date(unix: i64, offset_at: &dyn Fn(i64) -> UtcOffset) -> time::Date {
    time::OffsetDateTime::from_unix_timestamp(unix)
        .unwrap_or(time::OffsetDateTime::UNIX_EPOCH)
        .to_offset(offset_at(unix))
        .date()
}

/// How many payments, and how much, all the gaps add up to.
pub fn missing(gaps: &[Gap]) -> (u32, u64) {
    gaps.iter().fold((0, 0), |(n, fen), g| {
        (
            n.saturating_add(g.missed),
            fen.saturating_add(g.missed_fen.unwrap_or(0)),
        )
    })
}

/// `WeChat counted 1 more payment, ￥12.50, than the ledger` (for `paysay ledger`).
pub fn report_line(gap: &Gap, offset_at: &dyn Fn(i64) -> UtcOffset) -> String {
    let noun = if gap.missed == 1 {
        "payment"
    } else {
        "payments"
    };
    let amount = gap
        .missed_fen
        .map_or_else(String::new, |fen| format!(", ￥{}", Yuan(fen)));
    let seen = crate::rfc3339(gap.seen_at, offset_at(gap.seen_at));
    format!(
        "WeChat counted {} more {noun}{amount}, than the ledger ({}, before the notice of {seen}): check the phone",
        gap.missed, gap.account
    )
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::payment::PaymentKind;

    fn notice(count: u32, total: u64, amount: u64) -> Payment {
        Payment {
            msg_id: format!("m{count}"),
            amount_fen: amount,
            kind: PaymentKind::Collection,
            payer: None,
            remark: None,
            daily_count: Some(count),
            daily_total_fen: Some(total),
            time: 1_714_528_800 + i64::from(count),
            account: "微信支付".into(),
            transfer_id: None,
            wallet: crate::payment::Wallet::WeChat,
            source: crate::payment::Source::Web,
        }
    }

    #[test]
    fn phone_only_payments_between_two_notices_are_no_gap() {
        let phone = PhoneOnly { count: 1, fen: 300 };
        assert_eq!(
            check(Some(&notice(1, 100, 100)), &notice(3, 650, 250), phone),
            Check::Consistent
        );
        // One more than the phone brought is still a gap of one.
        let gap = check(Some(&notice(1, 100, 100)), &notice(4, 1650, 250), phone);
        let Check::Gap(gap) = gap else {
            panic!("{gap:?}")
        };
        assert_eq!((gap.missed, gap.missed_fen), (1, Some(1000)));
    }

    #[test]
    fn one_more_and_the_amount_is_consistent() {
        assert_eq!(
            check(
                Some(&notice(1, 100, 100)),
                &notice(2, 350, 250),
                PhoneOnly::default()
            ),
            Check::Consistent
        );
    }

    #[test]
    fn a_jump_is_a_gap_of_the_jump_minus_one() {
        let gap = check(
            Some(&notice(1, 100, 100)),
            &notice(3, 1600, 250),
            PhoneOnly::default(),
        );
        let Check::Gap(gap) = gap else {
            panic!("{gap:?}")
        };
        assert_eq!((gap.missed, gap.missed_fen), (1, Some(1250)));
    }

    #[test]
    fn the_first_notice_and_one_going_down_are_no_gap() {
        assert_eq!(
            check(None, &notice(7, 900, 100), PhoneOnly::default()),
            Check::Nothing
        );
        assert!(matches!(
            check(
                Some(&notice(7, 900, 100)),
                &notice(1, 100, 100),
                PhoneOnly::default()
            ),
            Check::Odd(_)
        ));
        assert!(matches!(
            check(
                Some(&notice(2, 900, 100)),
                &notice(3, 500, 100),
                PhoneOnly::default()
            ),
            Check::Odd(_)
        ));
    }

    #[test]
    fn gaps_compare_within_one_account_and_day() {
        let entry = |p: Payment| Entry {
            payment: p,
            detected_at: 0,
            announced_at: None,
            deliveries: Vec::new(),
        };
        let mut clerk = notice(5, 800, 100);
        clerk.account = "微信收款助手".into();
        let mut next_day = notice(9, 900, 100);
        next_day.time += 86_400;
        let entries = [
            entry(notice(1, 100, 100)),
            entry(clerk),
            entry(notice(2, 300, 200)),
            entry(next_day),
            entry(notice(4, 1000, 100)),
        ];
        let found = gaps(&entries, &|_| UtcOffset::UTC);
        assert_eq!(found.len(), 1, "{found:?}");
        assert_eq!((found[0].missed, found[0].missed_fen), (1, Some(600)));
        assert_eq!(
            report_line(&found[0], &|_| UtcOffset::UTC),
            "WeChat counted 1 more payment, ￥6.00, than the ledger (微信支付, before the notice of 2024-05-01T02:00:04Z): check the phone"
        );
    }
}
