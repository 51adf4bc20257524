//! What the endpoints and the event stream send, as the page's script reads it: amounts
//! in fen and as yuan text, times as local clock and day at the daemon's offset.

use std::collections::BTreeMap;

use serde::Serialize;
use time::{Date, OffsetDateTime, UtcOffset};

use crate::ledger::SinkSummary;
use crate::ledger::report::{DayTotals, Tally};
use crate::live::Status;
use crate::money::Yuan;
use crate::payment::Payment;

/// `/api/status`: the live status and each sink's deliveries.
#[derive(Debug, Serialize)]
pub(super) struct StatusView {
    #[serde(flatten)]
    pub(super) status: Status,
    pub(super) sinks: Vec<SinkSummary>,
    /// The server's clock, unix seconds: "last sync 12 s ago" needs no trust in the
    /// tablet's clock.
    pub(super) now: i64,
}

/// One payment as the page shows it; times are local at the daemon's offset.
#[derive(Debug, Clone, Serialize)]
pub(super) struct PaymentView {
    pub(super) msg_id: String,
    pub(super) amount_fen: u64,
    pub(super) amount_yuan: String,
    pub(super) kind: &'static str,
    /// `wechat`, `alipay`, `unionpay`.
    pub(super) wallet: &'static str,
    /// `web`, `phone`, `both`.
    pub(super) source: &'static str,
    pub(super) payer: Option<String>,
    pub(super) remark: Option<String>,
    /// Unix seconds.
    pub(super) time: i64,
    /// `14:05:09`.
    pub(super) clock: String,
    /// `2024-05-01`.
    pub(super) day: String,
    /// 0–23.
    pub(super) hour: u8,
}

impl PaymentView {
    pub(super) fn new(p: &Payment, offset: UtcOffset) -> PaymentView {
        let at = OffsetDateTime::from_unix_timestamp(p.time)
            .unwrap_or(OffsetDateTime::UNIX_EPOCH)
            .to_offset(offset);
        let (h, m, s) = at.time().as_hms();
        PaymentView {
            msg_id: p.msg_id.clone(),
            amount_fen: p.amount_fen,
            amount_yuan: Yuan(p.amount_fen).to_string(),
            kind: p.kind.as_str(),
            wallet: p.wallet.as_str(),
            source: p.source.as_str(),
            payer: p.payer.clone(),
            remark: p.remark.clone(),
            time: p.time,
            clock: format!("{h:02}:{m:02}:{s:02}"),
            day: at.date().to_string(),
            hour: h,
        }
    }
}

/// `/api/today`, and the `today` event.
#[derive(Debug, Clone, Serialize)]
pub(super) struct Today {
    pub(super) date: String,
    pub(super) total_fen: u64,
    pub(super) total_yuan: String,
    pub(super) count: u64,
    /// Count and total per kind (`collection`, `transfer`, …).
    pub(super) by_kind: BTreeMap<&'static str, Tally>,
    /// Count and total per wallet (`wechat`, `alipay`, `unionpay`).
    pub(super) by_wallet: BTreeMap<&'static str, Tally>,
    /// Total fen per local hour, 0–23.
    pub(super) hourly_fen: [u64; 24],
    /// Oldest first.
    pub(super) payments: Vec<PaymentView>,
}

impl Today {
    /// The day's sums are [`DayTotals`]'s, the same as the owner's daily summary; only the
    /// hours, which the summary does not show, are added up here.
    pub(super) fn of(date: Date, payments: &[Payment], offset: UtcOffset) -> Today {
        let totals = DayTotals::of(payments);
        let payments: Vec<PaymentView> = payments
            .iter()
            .map(|p| PaymentView::new(p, offset))
            .collect();
        let mut hourly_fen = [0u64; 24];
        for p in &payments {
            let hour = &mut hourly_fen[usize::from(p.hour) % 24];
            *hour = hour.saturating_add(p.amount_fen);
        }
        Today {
            date: date.to_string(),
            total_fen: totals.all.total_fen,
            total_yuan: Yuan(totals.all.total_fen).to_string(),
            count: totals.all.count,
            by_kind: totals
                .by_kind
                .into_iter()
                .map(|(kind, tally)| (kind.as_str(), tally))
                .collect(),
            by_wallet: totals
                .by_wallet
                .into_iter()
                .map(|(wallet, tally)| (wallet.as_str(), tally))
                .collect(),
            hourly_fen,
            payments,
        }
    }
}

/// One day of `/api/history`.
#[derive(Debug, Serialize)]
pub(super) struct DayView {
    pub(super) date: String,
    pub(super) total_fen: u64,
    pub(super) total_yuan: String,
    pub(super) count: u64,
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn today_sums_by_kind_and_local_hour() {
        let payment = |id: &str, fen, time, kind| Payment {
            msg_id: id.into(),
            amount_fen: fen,
            kind,
            payer: None,
            remark: None,
            daily_count: None,
            daily_total_fen: None,
            time,
            account: "微信支付".into(),
            transfer_id: None,
            wallet: crate::payment::Wallet::WeChat,
            source: crate::payment::Source::Web,
        };
        use crate::payment::PaymentKind::{Collection, Transfer};
        // 2024-05-01T01:30Z and 02:10Z are 09:30 and 10:10 at +08:00.
        let ps = [
            payment("a", 1250, 1_714_527_000, Collection),
            payment("b", 1, 1_714_529_400, Collection),
            payment("c", 20000, 1_714_529_500, Transfer),
        ];
        let offset = UtcOffset::from_hms(8, 0, 0).unwrap();
        let today = Today::of(time::macros::date!(2024 - 05 - 01), &ps, offset);
        assert_eq!((today.total_fen, today.count), (21251, 3));
        assert_eq!(today.total_yuan, "212.51");
        assert_eq!(today.by_kind["collection"].count, 2);
        assert_eq!(today.by_kind["transfer"].total_fen, 20000);
        assert_eq!(today.hourly_fen[9], 1250);
        assert_eq!(today.hourly_fen[10], 20001);
        assert_eq!(today.payments[0].clock, "09:30:00");
        assert_eq!(today.payments[2].day, "2024-05-01");
    }
}
