//! The ledger as the daemon's memory: each payment counts once, across restarts, and what
//! was detected but not announced before a crash is still there.

use paysay::ledger::{DeliveryState, Ledger, LedgerError, Recorded};
use paysay::payment::{Payment, PaymentKind};

fn payment(msg_id: &str, fen: u64, time: i64) -> Payment {
    Payment {
        msg_id: msg_id.into(),
        amount_fen: fen,
        kind: PaymentKind::Collection,
        payer: None,
        remark: Some("good".into()),
        daily_count: Some(3),
        daily_total_fen: Some(1250),
        time,
        account: "微信支付".into(),
        transfer_id: None,
        wallet: paysay::payment::Wallet::WeChat,
        source: paysay::payment::Source::Web,
    }
}

fn transfer(msg_id: &str, transfer_id: &str) -> Payment {
    Payment {
        kind: PaymentKind::Transfer,
        payer: Some("张三".into()),
        transfer_id: Some(transfer_id.into()),
        ..payment(msg_id, 10, 1_700_000_100)
    }
}

fn open(dir: &tempfile::TempDir) -> Ledger {
    // A nested path: open() must create the directories.
    Ledger::open(&dir.path().join("state/paysay/ledger.sqlite3")).expect("ledger opens")
}

#[test]
fn ledger_is_send() {
    fn assert_send<T: Send>() {}
    assert_send::<Ledger>();
}

#[test]
fn the_same_message_counts_once() {
    let dir = tempfile::tempdir().unwrap();
    let ledger = open(&dir);
    let p = payment("m1", 1250, 1_700_000_000);
    assert_eq!(ledger.record(&p).unwrap(), Recorded::New);
    assert_eq!(ledger.record(&p).unwrap(), Recorded::Duplicate);
    // Redelivered with other details still counts once: the message is the key.
    assert_eq!(
        ledger.record(&payment("m1", 999, 1)).unwrap(),
        Recorded::Duplicate
    );
    assert_eq!(ledger.unannounced().unwrap(), vec![p]);
}

#[test]
fn one_transfer_counts_once_whatever_its_messages() {
    let dir = tempfile::tempdir().unwrap();
    let ledger = open(&dir);
    assert_eq!(ledger.record(&transfer("m1", "T1")).unwrap(), Recorded::New);
    assert_eq!(
        ledger.record(&transfer("m2", "T1")).unwrap(),
        Recorded::Duplicate
    );
    assert_eq!(ledger.record(&transfer("m3", "T2")).unwrap(), Recorded::New);
    // Payments without a transfer id never collide with each other on it.
    assert_eq!(ledger.record(&payment("m4", 1, 1)).unwrap(), Recorded::New);
    assert_eq!(ledger.record(&payment("m5", 1, 1)).unwrap(), Recorded::New);
    let ids: Vec<String> = ledger
        .unannounced()
        .unwrap()
        .into_iter()
        .map(|p| p.msg_id)
        .collect();
    assert_eq!(ids, ["m1", "m3", "m4", "m5"]);
}

#[test]
fn memory_survives_a_restart_and_a_crash_before_announcing() {
    let dir = tempfile::tempdir().unwrap();
    {
        let ledger = open(&dir);
        ledger.record(&payment("m1", 100, 1_700_000_000)).unwrap();
        ledger.record(&payment("m2", 200, 1_700_000_001)).unwrap();
        ledger.record(&transfer("m3", "T1")).unwrap();
        ledger.mark_announced("m1").unwrap();
        // "Crash": dropped without announcing m2 and m3.
    }
    let ledger = open(&dir);
    let pending: Vec<(String, u64)> = ledger
        .unannounced()
        .unwrap()
        .into_iter()
        .map(|p| (p.msg_id, p.amount_fen))
        .collect();
    assert_eq!(pending, [("m2".to_string(), 200), ("m3".to_string(), 10)]);
    assert_eq!(
        ledger.record(&payment("m1", 100, 1_700_000_000)).unwrap(),
        Recorded::Duplicate
    );
    assert_eq!(
        ledger.record(&transfer("m9", "T1")).unwrap(),
        Recorded::Duplicate
    );
    ledger.mark_announced("m2").unwrap();
    ledger.mark_announced("m3").unwrap();
    assert!(ledger.unannounced().unwrap().is_empty());
}

#[test]
fn marking_announced_is_idempotent_and_needs_a_recorded_payment() {
    let dir = tempfile::tempdir().unwrap();
    let ledger = open(&dir);
    ledger.record(&payment("m1", 100, 1_700_000_000)).unwrap();
    ledger.mark_announced("m1").unwrap();
    let first = ledger.entries(0, i64::MAX).unwrap()[0].announced_at;
    assert!(first.is_some());
    ledger.mark_announced("m1").unwrap();
    assert_eq!(ledger.entries(0, i64::MAX).unwrap()[0].announced_at, first);
    assert!(matches!(
        ledger.mark_announced("nope"),
        Err(LedgerError::NotRecorded { .. })
    ));
}

#[test]
fn entries_are_the_half_open_range_oldest_first() {
    let dir = tempfile::tempdir().unwrap();
    let ledger = open(&dir);
    for (id, time) in [("late", 300), ("early", 100), ("edge", 200), ("before", 99)] {
        ledger.record(&payment(id, 1, time)).unwrap();
    }
    let ids = |from, to| -> Vec<String> {
        ledger
            .entries(from, to)
            .unwrap()
            .into_iter()
            .map(|e| e.payment.msg_id)
            .collect()
    };
    assert_eq!(ids(100, 300), ["early", "edge"]);
    assert_eq!(ids(0, 301), ["before", "early", "edge", "late"]);
    assert!(ids(301, 400).is_empty());
    let entry = &ledger.entries(100, 101).unwrap()[0];
    assert_eq!(entry.payment, payment("early", 1, 100));
    assert!(entry.detected_at > 1_600_000_000);
    assert_eq!(entry.announced_at, None);
}

#[test]
fn amounts_beyond_sqlite_integers_are_refused_not_wrapped() {
    let dir = tempfile::tempdir().unwrap();
    let ledger = open(&dir);
    let huge = payment("m1", u64::MAX, 1);
    assert!(matches!(
        ledger.record(&huge),
        Err(LedgerError::AmountTooLarge { .. })
    ));
    assert!(ledger.entries(i64::MIN, i64::MAX).unwrap().is_empty());
}

#[test]
fn a_newer_schema_or_a_foreign_file_is_refused_with_the_path() {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("ledger.sqlite3");
    drop(Ledger::open(&path).unwrap());
    {
        let conn = rusqlite::Connection::open(&path).unwrap();
        conn.pragma_update(None, "user_version", 99).unwrap();
    }
    let err = Ledger::open(&path).unwrap_err();
    assert!(
        matches!(err, LedgerError::NewerSchema { found: 99, .. }),
        "{err}"
    );
    let junk = dir.path().join("junk.sqlite3");
    std::fs::write(&junk, "this is not a database, it is a shopping list").unwrap();
    let err = Ledger::open(&junk).unwrap_err().to_string();
    assert!(err.contains("junk.sqlite3"), "{err}");
}

/// A transfer heard before the ledger could take it may be recorded from its next step's
/// message: marking it heard finds it by its transfer id, and never marks another one.
#[test]
fn a_transfer_is_marked_heard_by_its_transfer_id() {
    let dir = tempfile::tempdir().unwrap();
    let ledger = open(&dir);
    ledger.record(&transfer("accepted", "t1")).unwrap();
    ledger.record(&transfer("other", "t2")).unwrap();
    ledger.mark_heard(&transfer("sent", "t1")).unwrap();
    let left: Vec<String> = ledger
        .unannounced()
        .unwrap()
        .into_iter()
        .map(|p| p.msg_id)
        .collect();
    assert_eq!(left, vec!["other".to_string()]);
    assert!(matches!(
        ledger.mark_heard(&payment("never", 1, 1)),
        Err(LedgerError::NotRecorded { .. })
    ));
}

// ---- issue 12: the outbox ----

/// A v1 ledger (before the outbox) as an older paysay left it: migrated on open, its
/// payments kept, and no event queued for them; payments recorded from then on are queued
/// for the configured sinks.
#[test]
fn a_v1_ledger_gains_the_outbox_and_only_new_payments_are_queued() {
    let dir = tempfile::tempdir().unwrap();
    let db = dir.path().join("ledger.sqlite3");
    {
        let conn = rusqlite::Connection::open(&db).unwrap();
        conn.execute_batch(
            "CREATE TABLE payments (
                id INTEGER PRIMARY KEY, msg_id TEXT NOT NULL UNIQUE, transfer_id TEXT UNIQUE,
                kind TEXT NOT NULL, amount_fen INTEGER NOT NULL CHECK (amount_fen >= 0),
                payer TEXT, remark TEXT, daily_count INTEGER, daily_total_fen INTEGER,
                time INTEGER NOT NULL, account TEXT NOT NULL, detected_at INTEGER NOT NULL,
                announced_at INTEGER);
             CREATE INDEX payments_by_time ON payments (time);
             CREATE INDEX payments_unannounced ON payments (id) WHERE announced_at IS NULL;
             INSERT INTO payments (msg_id, kind, amount_fen, time, account, detected_at, announced_at)
                VALUES ('old', 'collection', 100, 1700000000, '微信支付', 1700000001, 1700000002);
             PRAGMA user_version = 1;",
        )
        .unwrap();
    }
    let mut ledger = Ledger::open(&db).unwrap();
    ledger.set_sinks(vec!["shop".into(), "vmq".into()]);
    ledger.record(&payment("new", 200, 1_700_000_100)).unwrap();
    let entries = ledger.entries(0, i64::MAX).unwrap();
    assert_eq!(entries.len(), 2);
    assert!(entries[0].deliveries.is_empty(), "no event for the old one");
    let states: Vec<(&str, &str)> = entries[1]
        .deliveries
        .iter()
        .map(|(s, st)| (s.as_str(), st.as_str()))
        .collect();
    assert_eq!(states, [("shop", "pending"), ("vmq", "pending")]);
    assert_eq!(
        ledger.next_pending("shop").unwrap().unwrap().payment.msg_id,
        "new"
    );
    assert_eq!(ledger.next_pending("mqtt").unwrap(), None);
    drop(ledger);
    let conn = rusqlite::Connection::open(&db).unwrap();
    let version: i64 = conn
        .query_row("PRAGMA user_version", [], |r| r.get(0))
        .unwrap();
    assert_eq!(version, paysay::ledger::SCHEMA_VERSION);
    assert_eq!(version, 3);
}

/// v2 → v3: what a ledger holds from before the phone's notices is WeChat's, heard on the
/// web; new payments keep the wallet and the way they came.
#[test]
fn a_v2_ledger_gains_wallet_and_source_and_keeps_its_payments() {
    let dir = tempfile::tempdir().unwrap();
    let db = dir.path().join("ledger.sqlite3");
    {
        let mut ledger = Ledger::open(&db).unwrap();
        ledger.set_sinks(vec!["shop".into()]);
        ledger.record(&payment("old", 100, 1_700_000_000)).unwrap();
    }
    {
        // Back to what a v2 build left: no wallet, no source.
        let conn = rusqlite::Connection::open(&db).unwrap();
        conn.execute_batch(
            "DROP INDEX payments_by_wallet_amount;
             ALTER TABLE payments DROP COLUMN wallet;
             ALTER TABLE payments DROP COLUMN source;
             PRAGMA user_version = 2;",
        )
        .unwrap();
    }
    let ledger = Ledger::open(&db).unwrap();
    let mut alipay = payment("phone:1", 250, 1_700_000_100);
    alipay.wallet = paysay::payment::Wallet::Alipay;
    alipay.source = paysay::payment::Source::Phone;
    ledger.record(&alipay).unwrap();
    let entries = ledger.entries(0, i64::MAX).unwrap();
    let seen: Vec<(&str, &str, &str)> = entries
        .iter()
        .map(|e| {
            (
                e.payment.msg_id.as_str(),
                e.payment.wallet.as_str(),
                e.payment.source.as_str(),
            )
        })
        .collect();
    assert_eq!(
        seen,
        [("old", "wechat", "web"), ("phone:1", "alipay", "phone")]
    );
    assert_eq!(entries[0].deliveries.len(), 1, "its outbox row is kept");
}

/// The payment and its events are one transaction: when its events cannot be queued,
/// the payment is not recorded either (and WeChat's redelivery brings it again).
#[test]
fn a_payment_is_recorded_with_its_events_or_not_at_all() {
    let dir = tempfile::tempdir().unwrap();
    let mut ledger = open(&dir);
    // The same sink twice: the second event row breaks the primary key.
    ledger.set_sinks(vec!["shop".into(), "shop".into()]);
    assert!(ledger.record(&payment("m1", 100, 1_700_000_000)).is_err());
    assert!(ledger.entries(0, i64::MAX).unwrap().is_empty());
    ledger.set_sinks(vec!["shop".into()]);
    assert_eq!(
        ledger.record(&payment("m1", 100, 1_700_000_000)).unwrap(),
        Recorded::New
    );
    // A duplicate queues nothing more.
    assert_eq!(
        ledger.record(&payment("m1", 100, 1_700_000_000)).unwrap(),
        Recorded::Duplicate
    );
    let pending = ledger.next_pending("shop").unwrap().unwrap();
    ledger.note_delivery(pending.row, "shop", Ok(())).unwrap();
    assert_eq!(ledger.next_pending("shop").unwrap(), None);
}

#[test]
fn days_are_summed_from_local_midnight() {
    let dir = tempfile::tempdir().unwrap();
    let ledger = open(&dir);
    // 2024-05-01T15:59:59Z is still 1 May at +08:00; 16:00:00Z is 2 May there.
    ledger.record(&payment("a", 100, 1_714_579_199)).unwrap();
    ledger.record(&payment("b", 250, 1_714_579_200)).unwrap();
    ledger.record(&payment("c", 50, 1_714_579_300)).unwrap();
    let east8 = 8 * 3600;
    let days = ledger.daily_totals(0, i64::MAX, east8).unwrap();
    let may_1 = 19_844; // days from 1970-01-01 to 2024-05-01
    assert_eq!(
        days.iter()
            .map(|d| (d.day, d.total_fen, d.count))
            .collect::<Vec<_>>(),
        [(may_1, 100, 1), (may_1 + 1, 300, 2)]
    );
    // The range bounds by payment time.
    assert_eq!(
        ledger
            .daily_totals(1_714_579_200, i64::MAX, east8)
            .unwrap()
            .len(),
        1
    );
}

#[test]
fn each_sink_is_summed_by_delivery_state() {
    let dir = tempfile::tempdir().unwrap();
    let mut ledger = open(&dir);
    ledger.set_sinks(vec!["shop".into(), "vmq".into()]);
    ledger.record(&payment("a", 100, 1_000)).unwrap();
    ledger.record(&payment("b", 200, 2_000)).unwrap();
    let first = ledger.next_pending("shop").unwrap().unwrap();
    ledger.note_delivery(first.row, "shop", Ok(())).unwrap();
    let next = ledger.next_pending("shop").unwrap().unwrap();
    ledger
        .note_delivery(
            next.row,
            "shop",
            Err(("400 Bad Request", DeliveryState::Rejected)),
        )
        .unwrap();
    let sinks = ["shop", "vmq", "never-used"].map(String::from);
    let summary = ledger.sink_summary(&sinks).unwrap();
    let counts: Vec<_> = summary
        .iter()
        .map(|s| (s.sink.as_str(), s.pending, s.delivered, s.rejected))
        .collect();
    assert_eq!(
        counts,
        [("shop", 0, 1, 1), ("vmq", 2, 0, 0), ("never-used", 0, 0, 0)]
    );
    assert!(summary[0].last_delivered_at.is_some());
    assert_eq!(summary[1].last_delivered_at, None);
}
