//! The payment ledger: every payment detected, and whether it was announced.
//!
//! It is also paysay's memory. The web server redelivers messages whenever a sync key goes
//! stale, and a transfer shows up once per step (sent, accepted): the ledger's unique keys
//! (`msg_id`, and `transfer_id` for transfers) make each payment count once, across
//! restarts. A payment is recorded *before* it is announced and marked afterwards, so that
//! after a crash [`Ledger::unannounced`] says what still has to be spoken: nothing lost,
//! nothing said twice.
//!
//! SQLite in WAL mode with `synchronous=FULL`: a shop's power can go out, and a payment
//! committed must still be there afterwards. `paysay ledger` can read while the daemon
//! writes.
//!
//! What the shop earned and who paid is the owner's business alone: the file, its `-wal`
//! and `-shm` companions and a directory made for it are owner-only whatever the umask.
//! A file that fails SQLite's quick check is refused at open, never written into: paysay
//! would otherwise start, fail every write, and the owner would learn it only from the log.

pub(crate) mod db;
pub mod handle;
pub mod reconcile;
pub mod report;

use std::collections::HashMap;
use std::path::{Path, PathBuf};
use std::time::Duration;

use rusqlite::{Connection, OptionalExtension, params};

use crate::payment::{Payment, PaymentKind, Source, Wallet};
pub use handle::{LedgerHandle, Shared, Store};

/// How long a write waits for another program's lock (`paysay ledger`, a backup) before
/// it fails: `[ledger] busy_timeout_ms` overrides it.
pub const DEFAULT_BUSY_TIMEOUT: Duration =
    Duration::from_millis(crate::config::DEFAULT_BUSY_TIMEOUT_MS);

/// The ledger's schema, one step per version: `PRAGMA user_version` says which steps a
/// file has had.
const SCHEMA: db::Schema = db::Schema {
    steps: &[
        ("creating the schema", SCHEMA_V1),
        // v1 → v2: the outbox starts empty; payments recorded before it are not sent.
        ("adding the outbox to the schema", SCHEMA_V2),
        // v2 → v3: what was recorded is WeChat's, from the web session.
        ("adding wallets and sources to the schema", SCHEMA_V3),
    ],
};

/// The schema this build writes (`PRAGMA user_version`).
pub const SCHEMA_VERSION: i64 = SCHEMA.version();

const SCHEMA_V1: &str = "
CREATE TABLE payments (
    id              INTEGER PRIMARY KEY,
    msg_id          TEXT NOT NULL UNIQUE,
    -- NULL for everything but transfers; SQLite lets any number of NULLs be unique.
    transfer_id     TEXT UNIQUE,
    kind            TEXT NOT NULL,
    amount_fen      INTEGER NOT NULL CHECK (amount_fen >= 0),
    payer           TEXT,
    remark          TEXT,
    daily_count     INTEGER,
    daily_total_fen INTEGER,
    time            INTEGER NOT NULL,
    account         TEXT NOT NULL,
    detected_at     INTEGER NOT NULL,
    announced_at    INTEGER
);
CREATE INDEX payments_by_time ON payments (time);
CREATE INDEX payments_unannounced ON payments (id) WHERE announced_at IS NULL;
";

/// v2, the outbox: one row per payment and sink that is to be told of it (webhook, V免签,
/// MQTT). A row is written in the same transaction as its payment, for the sinks configured
/// at that moment: a sink configured later is told only of payments recorded from then on
/// (`paysay resend` sends it older ones by hand). The event itself is not stored: it is made
/// from the payment row each time, so its id ([`crate::events::event_id`]) never changes.
const SCHEMA_V2: &str = "
CREATE TABLE deliveries (
    payment_id   INTEGER NOT NULL REFERENCES payments (id),
    sink         TEXT NOT NULL,
    state        TEXT NOT NULL CHECK (state IN ('pending', 'delivered', 'rejected')),
    attempts     INTEGER NOT NULL DEFAULT 0,
    last_error   TEXT,
    delivered_at INTEGER,
    PRIMARY KEY (payment_id, sink)
) WITHOUT ROWID;
CREATE INDEX deliveries_pending ON deliveries (sink, payment_id) WHERE state = 'pending';
";

/// v3, the phone's notices: which wallet each payment came through and which way paysay
/// heard of it (`web`, `phone`, or `both`: one payment, said once). Payments recorded
/// before are WeChat's, from the web session.
const SCHEMA_V3: &str = "
ALTER TABLE payments ADD COLUMN wallet TEXT NOT NULL DEFAULT 'wechat'
    CHECK (wallet IN ('wechat', 'alipay', 'unionpay'));
ALTER TABLE payments ADD COLUMN source TEXT NOT NULL DEFAULT 'web'
    CHECK (source IN ('web', 'phone', 'both'));
CREATE INDEX payments_by_wallet_amount ON payments (wallet, amount_fen, time);
";

/// The columns a payment is recorded with.
const RECORD_COLUMNS: &str = "msg_id, transfer_id, kind, amount_fen, payer, remark, \
    daily_count, daily_total_fen, time, account, detected_at, announced_at, wallet, source";
/// The columns a payment is read with: [`RECORD_COLUMNS`] and its row id first.
const COLUMNS: &str = "id, msg_id, transfer_id, kind, amount_fen, payer, remark, daily_count, \
    daily_total_fen, time, account, detected_at, announced_at, wallet, source";

/// What went wrong with the ledger file.
#[derive(Debug, thiserror::Error)]
pub enum LedgerError {
    #[error("cannot create the ledger's directory {path}: {source}")]
    CreateDir {
        path: PathBuf,
        source: std::io::Error,
    },
    #[error(
        "cannot open the ledger {path}: {source} (is it a paysay ledger, and is the disk writable?)"
    )]
    Open {
        path: PathBuf,
        source: rusqlite::Error,
    },
    #[error(
        "the ledger {path} was written by a newer paysay (schema {found}, this one knows {known}); update paysay or point [ledger] path elsewhere"
    )]
    NewerSchema {
        path: PathBuf,
        found: i64,
        known: i64,
    },
    #[error("ledger {path}: {action} failed: {source}")]
    Sql {
        path: PathBuf,
        action: &'static str,
        source: rusqlite::Error,
    },
    #[error(
        "the ledger {path} cannot be written (SQLite opened it read-only: the file, its -wal or -shm, or its directory is not writable)"
    )]
    ReadOnly { path: PathBuf },
    #[error("payment {msg_id}: {amount_fen} fen is more than the ledger can store")]
    AmountTooLarge { msg_id: String, amount_fen: u64 },
    #[error("payment {msg_id} is not in the ledger, so it cannot be marked announced")]
    NotRecorded { msg_id: String },
    #[error("the ledger task stopped unexpectedly: {0}")]
    Task(String),
    #[error(
        "the ledger {path} is damaged ({problem}); paysay does not write into a damaged ledger. Stop paysay, move the file aside (with any -wal and -shm files beside it) and start paysay again: it begins a new ledger. `sqlite3 OLD-FILE .recover` gets back what can be read"
    )]
    Corrupt { path: PathBuf, problem: String },
    #[error("ledger {path}: the row for {msg_id} is damaged: {problem}")]
    Damaged {
        path: PathBuf,
        msg_id: String,
        problem: String,
    },
}

/// Whether [`Ledger::record`] stored a payment or already knew it.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Recorded {
    /// First time seen: announce it.
    New,
    /// Seen before (same message, or another message of the same transfer): stay quiet.
    Duplicate,
    /// The same payment heard the other way before (a WeChat payment from the web session
    /// and from the phone's notice, within [`Ledger::set_match_window`]): one row now, of
    /// source `both`; it was said, or is being, the first time: stay quiet.
    Merged,
}

/// A payment as the ledger holds it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Entry {
    pub payment: Payment,
    /// Unix seconds when paysay recorded it.
    pub detected_at: i64,
    /// Unix seconds when it was announced; `None` if not (yet).
    pub announced_at: Option<i64>,
    /// What each sink was told, by sink name in name order; empty where no sink was
    /// configured when the payment was recorded.
    pub deliveries: Vec<(String, DeliveryState)>,
}

/// Which of a sink's events `paysay resend` sends again.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Redeliver {
    /// Every event, delivered ones too: for receivers that drop an event id they have
    /// (webhooks, MQTT).
    Everything,
    /// Only what the receiver has not acknowledged (pending, failed, rejected): for a
    /// receiver that matches by amount (V免签).
    Undelivered,
}

/// What `paysay resend` queued.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct Resent {
    /// Events pending again (or for the first time).
    pub queued: usize,
    /// Delivered events left alone ([`Redeliver::Undelivered`]).
    pub kept_delivered: usize,
}

/// Where a payment's event stands with one sink.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum DeliveryState {
    /// Not yet acknowledged: the sink's delivery task sends it (again).
    Pending,
    /// The receiver acknowledged it.
    Delivered,
    /// The receiver refused it for good (a 4xx, a sign error); `paysay resend` tries again.
    Rejected,
}

impl DeliveryState {
    /// The word in the ledger file and in `paysay ledger --json`.
    pub fn as_str(self) -> &'static str {
        match self {
            DeliveryState::Pending => "pending",
            DeliveryState::Delivered => "delivered",
            DeliveryState::Rejected => "rejected",
        }
    }

    fn parse(s: &str) -> Option<DeliveryState> {
        match s {
            "pending" => Some(DeliveryState::Pending),
            "delivered" => Some(DeliveryState::Delivered),
            "rejected" => Some(DeliveryState::Rejected),
            _ => None,
        }
    }
}

/// How one sink stands: [`Ledger::sink_summary`].
#[derive(Debug, Clone, Default, PartialEq, Eq, serde::Serialize)]
pub struct SinkSummary {
    pub sink: String,
    /// Waiting to be sent (again).
    pub pending: u64,
    pub delivered: u64,
    /// Refused for good by the receiver; `paysay resend` tries again.
    pub rejected: u64,
    /// Unix seconds of the last acknowledged delivery.
    pub last_delivered_at: Option<i64>,
}

/// One local day's payments: [`Ledger::daily_totals`].
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct DayTotal {
    /// Days since 1970-01-01 (local).
    pub day: i64,
    pub total_fen: u64,
    pub count: u64,
}

/// A payment whose event is waiting for one sink: [`Ledger::next_pending`].
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Pending {
    /// The payment's row in the ledger, by which the delivery is noted.
    pub row: i64,
    pub payment: Payment,
    /// Tries so far, across restarts.
    pub attempts: u32,
}

/// The ledger file. `Send`, so the daemon can move it into a blocking task; not `Sync`:
/// one owner at a time.
#[derive(Debug)]
pub struct Ledger {
    conn: Connection,
    path: PathBuf,
    /// Kept to open the file again: [`Ledger::reopen_if_read_only`].
    busy_timeout: Duration,
    /// The sinks a newly recorded payment is queued for: [`Ledger::set_sinks`].
    sinks: Vec<String>,
    /// Seconds within which web and phone copies are one payment: [`Ledger::set_match_window`].
    match_window: Option<i64>,
}

/// A row as SQLite returns it, before the checks that turn it into an [`Entry`].
struct RawRow {
    /// The payment's row (`payments.id`).
    id: i64,
    msg_id: String,
    transfer_id: Option<String>,
    kind: String,
    amount_fen: i64,
    payer: Option<String>,
    remark: Option<String>,
    daily_count: Option<i64>,
    daily_total_fen: Option<i64>,
    time: i64,
    account: String,
    detected_at: i64,
    announced_at: Option<i64>,
    wallet: String,
    source: String,
}

impl RawRow {
    fn read(row: &rusqlite::Row<'_>) -> rusqlite::Result<RawRow> {
        RawRow::read_from(row, 0)
    }

    /// Reads [`COLUMNS`] from column `at` on.
    fn read_from(row: &rusqlite::Row<'_>, at: usize) -> rusqlite::Result<RawRow> {
        Ok(RawRow {
            id: row.get(at)?,
            msg_id: row.get(at + 1)?,
            transfer_id: row.get(at + 2)?,
            kind: row.get(at + 3)?,
            amount_fen: row.get(at + 4)?,
            payer: row.get(at + 5)?,
            remark: row.get(at + 6)?,
            daily_count: row.get(at + 7)?,
            daily_total_fen: row.get(at + 8)?,
            time: row.get(at + 9)?,
            account: row.get(at + 10)?,
            detected_at: row.get(at + 11)?,
            announced_at: row.get(at + 12)?,
            wallet: row.get(at + 13)?,
            source: row.get(at + 14)?,
        })
    }
}

impl Ledger {
    /// Opens (or creates) the ledger at `path`, creating its directory and schema, with
    /// [`DEFAULT_BUSY_TIMEOUT`].
    pub fn open(path: &Path) -> Result<Ledger, LedgerError> {
        Ledger::open_with(path, DEFAULT_BUSY_TIMEOUT)
    }

    /// [`Ledger::open`], waiting up to `busy_timeout` for another program's lock on each
    /// write before failing.
    pub fn open_with(path: &Path, busy_timeout: Duration) -> Result<Ledger, LedgerError> {
        Ok(Ledger {
            conn: db::open(path, busy_timeout, &SCHEMA)?,
            path: path.to_path_buf(),
            busy_timeout,
            sinks: Vec::new(),
            match_window: None,
        })
    }

    /// A second connection to this ledger's file, for reads only: no second integrity
    /// check or migration ([`LedgerHandle`]).
    pub fn reader(&self) -> Result<Ledger, LedgerError> {
        Ok(Ledger {
            conn: db::open_reader(&self.path, self.busy_timeout)?,
            path: self.path.clone(),
            busy_timeout: self.busy_timeout,
            sinks: Vec::new(),
            match_window: None,
        })
    }

    /// SQLite's count of changes other connections committed (`PRAGMA data_version`): it
    /// moves when another connection or process wrote.
    pub fn data_version(&self) -> Result<i64, LedgerError> {
        self.conn
            .query_row("PRAGMA data_version", [], |r| r.get(0))
            .map_err(|source| LedgerError::Sql {
                path: self.path.clone(),
                action: "asking whether the ledger changed",
                source,
            })
    }

    /// Whether SQLite can write the file. When it was not writable at open, SQLite opened
    /// it read-only without a word, and every write fails until it is opened again.
    pub fn is_writable(&self) -> bool {
        db::is_writable(&self.conn)
    }

    /// A connection opened read-only stays read-only after the owner has fixed the file:
    /// opens it again, and keeps the new connection if it can write. Errors with
    /// [`LedgerError::ReadOnly`] while it still cannot.
    pub fn reopen_if_read_only(&mut self) -> Result<(), LedgerError> {
        db::reopen_if_read_only(&mut self.conn, &self.path, self.busy_timeout, &SCHEMA)
    }

    /// From now on, [`Ledger::record`] queues each new payment's event for these sinks, in
    /// the payment's own transaction.
    pub fn set_sinks(&mut self, sinks: Vec<String>) {
        self.sinks = sinks;
    }

    /// From now on, a WeChat payment heard one way (web or phone) within `window` of one of
    /// the same amount heard only the other way is that payment ([`Recorded::Merged`]).
    /// Each row is matched once, so two equal payments are two rows. Off (`None`) without
    /// `[intake]`: the web session is then the only way in.
    pub fn set_match_window(&mut self, window: Option<Duration>) {
        self.match_window = window.map(|w| i64::try_from(w.as_secs()).unwrap_or(i64::MAX));
    }

    /// The other way's copy of `p` in the ledger, made one payment with it: the oldest
    /// WeChat row of the same amount within the window heard only the other way becomes
    /// `both`. A web copy gives the row its identity (msg_id, and what WeChat says of it),
    /// so that WeChat's redelivery of the message is a duplicate.
    fn merge_other_way(
        &self,
        tx: &rusqlite::Transaction<'_>,
        p: &Payment,
        amount: i64,
    ) -> Result<bool, LedgerError> {
        let action = "matching a payment heard both ways";
        let (Some(window), Wallet::WeChat) = (self.match_window, p.wallet) else {
            return Ok(false);
        };
        let other = match p.source {
            Source::Web => Source::Phone,
            Source::Phone => Source::Web,
            Source::Both => return Ok(false),
        };
        let row: Option<i64> = tx
            .query_row(
                "SELECT id FROM payments WHERE wallet = 'wechat' AND source = ?1
                 AND amount_fen = ?2 AND time BETWEEN ?3 AND ?4 ORDER BY id LIMIT 1",
                params![
                    other.as_str(),
                    amount,
                    p.time.saturating_sub(window),
                    p.time.saturating_add(window)
                ],
                |r| r.get(0),
            )
            .optional()
            .map_err(self.sql(action))?;
        let Some(row) = row else {
            return Ok(false);
        };
        if p.source == Source::Web {
            tx.execute(
                "UPDATE payments SET source = 'both', msg_id = ?2, transfer_id = ?3, kind = ?4,
                 payer = ?5, remark = ?6, daily_count = ?7, account = ?8 WHERE id = ?1",
                params![
                    row,
                    p.msg_id,
                    p.transfer_id,
                    p.kind.as_str(),
                    p.payer,
                    p.remark,
                    p.daily_count,
                    p.account
                ],
            )
        } else {
            tx.execute(
                "UPDATE payments SET source = 'both' WHERE id = ?1",
                params![row],
            )
        }
        .map_err(self.sql(action))?;
        Ok(true)
    }

    fn sql(&self, action: &'static str) -> impl FnOnce(rusqlite::Error) -> LedgerError + '_ {
        move |source| LedgerError::Sql {
            path: self.path.clone(),
            action,
            source,
        }
    }

    /// Stores a payment unless its `msg_id` (or, for transfers, its `transfer_id`) is
    /// already known.
    pub fn record(&self, p: &Payment) -> Result<Recorded, LedgerError> {
        let to_db = |n: u64| {
            i64::try_from(n).map_err(|_| LedgerError::AmountTooLarge {
                msg_id: p.msg_id.clone(),
                amount_fen: n,
            })
        };
        let amount = to_db(p.amount_fen)?;
        let daily_total = p.daily_total_fen.map(to_db).transpose()?;
        // The payment and its events commit together: no payment without its events, and
        // no event for a payment that is not there.
        let tx = self
            .conn
            .unchecked_transaction()
            .map_err(self.sql("recording a payment"))?;
        let known: bool = tx
            .query_row(
                "SELECT EXISTS (SELECT 1 FROM payments WHERE msg_id = ?1 OR transfer_id = ?2)",
                params![p.msg_id, p.transfer_id],
                |r| r.get(0),
            )
            .map_err(self.sql("recording a payment"))?;
        if known {
            return Ok(Recorded::Duplicate);
        }
        if self.merge_other_way(&tx, p, amount)? {
            tx.commit().map_err(self.sql("recording a payment"))?;
            return Ok(Recorded::Merged);
        }
        let inserted = tx
            .execute(
                &format!(
                    "INSERT INTO payments ({RECORD_COLUMNS}) VALUES (?1, ?2, ?3, ?4, ?5, ?6, ?7, ?8, ?9, ?10, ?11, NULL, ?12, ?13)
                     ON CONFLICT DO NOTHING"
                ),
                params![
                    p.msg_id,
                    p.transfer_id,
                    p.kind.as_str(),
                    amount,
                    p.payer,
                    p.remark,
                    p.daily_count,
                    daily_total,
                    p.time,
                    p.account,
                    crate::now_unix(),
                    p.wallet.as_str(),
                    p.source.as_str(),
                ],
            )
            .map_err(self.sql("recording a payment"))?;
        if inserted == 1 {
            let row = tx.last_insert_rowid();
            for sink in &self.sinks {
                tx.execute(
                    "INSERT INTO deliveries (payment_id, sink, state) VALUES (?1, ?2, 'pending')",
                    params![row, sink],
                )
                .map_err(self.sql("queueing a payment's event"))?;
            }
        }
        tx.commit().map_err(self.sql("recording a payment"))?;
        Ok(if inserted == 1 {
            Recorded::New
        } else {
            Recorded::Duplicate
        })
    }

    /// The oldest payment whose event `sink` has not acknowledged: events go out in the
    /// order their payments were recorded.
    pub fn next_pending(&self, sink: &str) -> Result<Option<Pending>, LedgerError> {
        let action = "reading the outbox";
        let columns = format!("p.{}", COLUMNS.replace(", ", ", p."));
        let mut stmt = self
            .conn
            .prepare_cached(&format!(
                "SELECT d.attempts, {columns} FROM deliveries d
                 JOIN payments p ON p.id = d.payment_id
                 WHERE d.sink = ?1 AND d.state = 'pending'
                 ORDER BY d.payment_id LIMIT 1"
            ))
            .map_err(self.sql(action))?;
        let mut rows = stmt
            .query_map(params![sink], |row| {
                Ok((row.get::<_, i64>(0)?, RawRow::read_from(row, 1)?))
            })
            .map_err(self.sql(action))?;
        let Some(found) = rows.next() else {
            return Ok(None);
        };
        let (attempts, raw) = found.map_err(self.sql(action))?;
        let row = raw.id;
        let payment = self.entry(raw)?.payment;
        Ok(Some(Pending {
            row,
            payment,
            attempts: u32::try_from(attempts).unwrap_or(u32::MAX),
        }))
    }

    /// Notes how one try to tell `sink` of the payment in `row` ended: delivered, or the
    /// error and the state it leaves (pending: tried again; rejected: not).
    pub fn note_delivery(
        &self,
        row: i64,
        sink: &str,
        outcome: Result<(), (&str, DeliveryState)>,
    ) -> Result<(), LedgerError> {
        let (state, error) = match outcome {
            Ok(()) => (DeliveryState::Delivered, None),
            Err((error, state)) => (state, Some(error)),
        };
        let delivered_at = (state == DeliveryState::Delivered).then(crate::now_unix);
        self.conn
            .execute(
                "UPDATE deliveries SET state = ?3, attempts = attempts + 1, last_error = ?4,
                 delivered_at = ?5 WHERE payment_id = ?1 AND sink = ?2",
                params![row, sink, state.as_str(), error, delivered_at],
            )
            .map_err(self.sql("noting a delivery"))?;
        Ok(())
    }

    /// `paysay resend`: the events of the payments whose time is in `from_unix..to_unix`
    /// are pending again for each of `sinks` (a sink configured after the payment too), so
    /// they go out again, with the same ids.
    ///
    /// A sink marked [`Redeliver::Undelivered`] keeps what it has acknowledged: its
    /// receiver matches payments by amount alone (V免签 confirms whichever open order has
    /// that price), so a delivered event sent again would confirm an order nobody paid.
    pub fn resend(
        &self,
        from_unix: i64,
        to_unix: i64,
        sinks: &[(String, Redeliver)],
    ) -> Result<Resent, LedgerError> {
        let action = "queueing events again";
        let tx = self
            .conn
            .unchecked_transaction()
            .map_err(self.sql(action))?;
        let mut resent = Resent::default();
        for (sink, redeliver) in sinks {
            if *redeliver == Redeliver::Undelivered {
                resent.kept_delivered += tx
                    .query_row(
                        "SELECT COUNT(*) FROM deliveries d JOIN payments p ON p.id = d.payment_id
                         WHERE d.sink = ?3 AND d.state = 'delivered' AND p.time >= ?1 AND p.time < ?2",
                        params![from_unix, to_unix, sink],
                        |r| r.get::<_, i64>(0),
                    )
                    .map_err(self.sql(action))? as usize;
            }
            // `excluded` is the row that was to be inserted; the WHERE keeps a delivered
            // row as it is unless every event is to go again.
            resent.queued += tx
                .execute(
                    "INSERT INTO deliveries (payment_id, sink, state)
                     SELECT id, ?3, 'pending' FROM payments WHERE time >= ?1 AND time < ?2
                     ON CONFLICT (payment_id, sink) DO UPDATE
                     SET state = 'pending', attempts = 0, last_error = NULL, delivered_at = NULL
                     WHERE ?4 OR deliveries.state != 'delivered'",
                    params![
                        from_unix,
                        to_unix,
                        sink,
                        *redeliver == Redeliver::Everything
                    ],
                )
                .map_err(self.sql(action))?;
        }
        tx.commit().map_err(self.sql(action))?;
        Ok(resent)
    }

    /// Each sink's state for the payments whose time is in `from_unix..to_unix`, by
    /// payment row and then sink name: one query for a whole listing.
    fn deliveries_between(
        &self,
        from_unix: i64,
        to_unix: i64,
    ) -> Result<HashMap<i64, Vec<(String, DeliveryState)>>, LedgerError> {
        let action = "reading delivery states";
        let mut stmt = self
            .conn
            .prepare_cached(
                "SELECT d.payment_id, d.sink, d.state FROM deliveries d
                 JOIN payments p ON p.id = d.payment_id
                 WHERE p.time >= ?1 AND p.time < ?2 ORDER BY d.payment_id, d.sink",
            )
            .map_err(self.sql(action))?;
        let rows = stmt
            .query_map(params![from_unix, to_unix], |r| {
                Ok((
                    r.get::<_, i64>(0)?,
                    r.get::<_, String>(1)?,
                    r.get::<_, String>(2)?,
                ))
            })
            .map_err(self.sql(action))?;
        let mut by_payment: HashMap<i64, Vec<(String, DeliveryState)>> = HashMap::new();
        for row in rows {
            let (payment, sink, state) = row.map_err(self.sql(action))?;
            // The CHECK constraint keeps other words out; should one get in, it shows as
            // pending.
            let state = DeliveryState::parse(&state).unwrap_or(DeliveryState::Pending);
            by_payment.entry(payment).or_default().push((sink, state));
        }
        Ok(by_payment)
    }

    /// Notes that the payment was spoken. Marking twice keeps the first time.
    pub fn mark_announced(&self, msg_id: &str) -> Result<(), LedgerError> {
        let changed = self
            .conn
            .execute(
                "UPDATE payments SET announced_at = COALESCE(announced_at, ?2) WHERE msg_id = ?1",
                params![msg_id, crate::now_unix()],
            )
            .map_err(self.sql("marking a payment announced"))?;
        if changed == 0 {
            return Err(LedgerError::NotRecorded {
                msg_id: msg_id.to_string(),
            });
        }
        Ok(())
    }

    /// Notes that `p` was spoken, found by its `msg_id` or, for a transfer, by its
    /// `transfer_id`: a payment heard before the ledger could record it may be recorded
    /// later from another message of the same transfer.
    pub fn mark_heard(&self, p: &Payment) -> Result<(), LedgerError> {
        let changed = self
            .conn
            .execute(
                "UPDATE payments SET announced_at = COALESCE(announced_at, ?3)
                 WHERE msg_id = ?1 OR (?2 IS NOT NULL AND transfer_id = ?2)",
                params![p.msg_id, p.transfer_id, crate::now_unix()],
            )
            .map_err(self.sql("marking a payment announced"))?;
        if changed == 0 {
            return Err(LedgerError::NotRecorded {
                msg_id: p.msg_id.clone(),
            });
        }
        Ok(())
    }

    /// Payments recorded but not yet announced, in the order they were recorded. After a
    /// crash, these are what the daemon announces on start.
    pub fn unannounced(&self) -> Result<Vec<Payment>, LedgerError> {
        self.payments(
            "listing unannounced payments",
            &format!("SELECT {COLUMNS} FROM payments WHERE announced_at IS NULL ORDER BY id"),
            params![],
        )
    }

    /// The notice before `p` of the same account carrying WeChat's day count, no earlier
    /// than `day_start` (the local midnight of `p`'s day): what [`reconcile::check`]
    /// compares `p` with. Across restarts too, as it is read from the file.
    pub fn previous_notice(
        &self,
        p: &Payment,
        day_start: i64,
    ) -> Result<Option<Payment>, LedgerError> {
        let found = self.payments(
            "reading the previous notice",
            &format!(
                "SELECT {COLUMNS} FROM payments WHERE account = ?1 AND time >= ?2 AND time <= ?3
                 AND msg_id != ?4 AND daily_count IS NOT NULL ORDER BY time DESC, id DESC LIMIT 1"
            ),
            params![p.account, day_start, p.time, p.msg_id],
        )?;
        Ok(found.into_iter().next())
    }

    /// The WeChat payments heard from the phone alone (the web session missed them) with a
    /// time in `from_unix..=to_unix` (seconds: a notice and the phone's copy of the payment
    /// before it often share one): WeChat's own count for the day includes them.
    pub fn phone_only_between(
        &self,
        from_unix: i64,
        to_unix: i64,
    ) -> Result<reconcile::PhoneOnly, LedgerError> {
        self.conn
            .query_row(
                "SELECT COUNT(*), COALESCE(SUM(amount_fen), 0) FROM payments
                 WHERE wallet = 'wechat' AND source = 'phone' AND time BETWEEN ?1 AND ?2",
                params![from_unix, to_unix],
                |r| {
                    Ok(reconcile::PhoneOnly {
                        count: u32::try_from(r.get::<_, i64>(0)?).unwrap_or(u32::MAX),
                        fen: u64::try_from(r.get::<_, i64>(1)?).unwrap_or(0),
                    })
                },
            )
            .map_err(self.sql("counting the phone's payments"))
    }

    /// Payments whose time (the message's `CreateTime`) is in `from_unix..to_unix`
    /// (`to_unix` excluded), oldest first.
    pub fn entries(&self, from_unix: i64, to_unix: i64) -> Result<Vec<Entry>, LedgerError> {
        let rows = self.rows(
            "listing payments",
            &format!(
                "SELECT {COLUMNS} FROM payments WHERE time >= ?1 AND time < ?2 ORDER BY time, id"
            ),
            params![from_unix, to_unix],
        )?;
        let mut deliveries = self.deliveries_between(from_unix, to_unix)?;
        rows.into_iter()
            .map(|row| {
                let of_row = deliveries.remove(&row.id).unwrap_or_default();
                let mut entry = self.entry(row)?;
                entry.deliveries = of_row;
                Ok(entry)
            })
            .collect()
    }

    /// Each sink's deliveries counted by state, for the sinks named in `sinks` (in that
    /// order, zeros for one with no rows yet), with the last time one was delivered.
    pub fn sink_summary(&self, sinks: &[String]) -> Result<Vec<SinkSummary>, LedgerError> {
        let action = "counting deliveries";
        let mut stmt = self
            .conn
            .prepare_cached(
                "SELECT state, COUNT(*), MAX(delivered_at) FROM deliveries WHERE sink = ?1 GROUP BY state",
            )
            .map_err(self.sql(action))?;
        let mut summaries = Vec::with_capacity(sinks.len());
        for sink in sinks {
            let mut summary = SinkSummary {
                sink: sink.clone(),
                ..SinkSummary::default()
            };
            let rows = stmt
                .query_map(params![sink], |r| {
                    Ok((
                        r.get::<_, String>(0)?,
                        r.get::<_, i64>(1)?,
                        r.get::<_, Option<i64>>(2)?,
                    ))
                })
                .map_err(self.sql(action))?;
            for row in rows {
                let (state, count, delivered_at) = row.map_err(self.sql(action))?;
                let count = u64::try_from(count).unwrap_or(0);
                match DeliveryState::parse(&state) {
                    Some(DeliveryState::Delivered) => {
                        summary.delivered += count;
                        summary.last_delivered_at = delivered_at;
                    }
                    Some(DeliveryState::Rejected) => summary.rejected += count,
                    // As in `deliveries_of`: an unknown word counts as pending.
                    Some(DeliveryState::Pending) | None => summary.pending += count,
                }
            }
            summaries.push(summary);
        }
        Ok(summaries)
    }

    /// The total and the count of the payments of each local day in `from_unix..to_unix`
    /// that had any, oldest first; a day is counted from midnight at `offset_secs` east of
    /// UTC, and named by its number of days since 1970-01-01.
    pub fn daily_totals(
        &self,
        from_unix: i64,
        to_unix: i64,
        offset_secs: i32,
    ) -> Result<Vec<DayTotal>, LedgerError> {
        let action = "summing payments per day";
        let mut stmt = self
            .conn
            .prepare_cached(
                "SELECT (time + ?3) / 86400 AS day, SUM(amount_fen), COUNT(*) FROM payments
                 WHERE time >= ?1 AND time < ?2 GROUP BY day ORDER BY day",
            )
            .map_err(self.sql(action))?;
        let rows = stmt
            .query_map(params![from_unix, to_unix, offset_secs], |r| {
                Ok(DayTotal {
                    day: r.get(0)?,
                    // Amounts are checked non-negative on the way in; a sum past i64 is
                    // SQLite's integer overflow error, not a wrong number.
                    total_fen: u64::try_from(r.get::<_, i64>(1)?).unwrap_or(0),
                    count: u64::try_from(r.get::<_, i64>(2)?).unwrap_or(0),
                })
            })
            .map_err(self.sql(action))?;
        rows.collect::<Result<Vec<_>, _>>()
            .map_err(self.sql(action))
    }

    fn rows(
        &self,
        action: &'static str,
        sql: &str,
        params: &[&dyn rusqlite::ToSql],
    ) -> Result<Vec<RawRow>, LedgerError> {
        let mut stmt = self.conn.prepare_cached(sql).map_err(self.sql(action))?;
        stmt.query_map(params, RawRow::read)
            .map_err(self.sql(action))?
            .collect::<Result<Vec<_>, _>>()
            .map_err(self.sql(action))
    }

    /// The payments a query finds, without their delivery states.
    fn payments(
        &self,
        action: &'static str,
        sql: &str,
        params: &[&dyn rusqlite::ToSql],
    ) -> Result<Vec<Payment>, LedgerError> {
        self.rows(action, sql, params)?
            .into_iter()
            .map(|row| Ok(self.entry(row)?.payment))
            .collect()
    }

    fn entry(&self, row: RawRow) -> Result<Entry, LedgerError> {
        let damaged = |problem: String| LedgerError::Damaged {
            path: self.path.clone(),
            msg_id: row.msg_id.clone(),
            problem,
        };
        let kind: PaymentKind = row.kind.parse().map_err(|e| damaged(format!("{e}")))?;
        let amount_fen = u64::try_from(row.amount_fen)
            .map_err(|_| damaged(format!("negative amount {}", row.amount_fen)))?;
        let wallet = row.wallet.parse().map_err(|e| damaged(format!("{e}")))?;
        let payment = Payment {
            amount_fen,
            kind,
            payer: row.payer,
            remark: row.remark,
            daily_count: row.daily_count.and_then(|n| u32::try_from(n).ok()),
            daily_total_fen: row.daily_total_fen.and_then(|n| u64::try_from(n).ok()),
            time: row.time,
            account: row.account,
            transfer_id: row.transfer_id,
            msg_id: row.msg_id,
            wallet,
            source: Source::parse(&row.source),
        };
        Ok(Entry {
            payment,
            detected_at: row.detected_at,
            announced_at: row.announced_at,
            // Filled where they are wanted: [`Ledger::entries`].
            deliveries: Vec::new(),
        })
    }
}

impl LedgerError {
    /// Whether the file could not be written: a connection opened read-only, or a file
    /// made read-only since.
    pub fn is_read_only(&self) -> bool {
        self.code() == Some(rusqlite::ErrorCode::ReadOnly)
    }

    /// SQLite's kind of failure, where there is one.
    fn code(&self) -> Option<rusqlite::ErrorCode> {
        use rusqlite::ErrorCode as Code;
        match self {
            LedgerError::Sql { source, .. } | LedgerError::Open { source, .. } => {
                source.sqlite_error_code()
            }
            LedgerError::Corrupt { .. } => Some(Code::DatabaseCorrupt),
            LedgerError::CreateDir { .. } => Some(Code::CannotOpen),
            LedgerError::ReadOnly { .. } => Some(Code::ReadOnly),
            _ => None,
        }
    }

    /// What the owner can do about it, in a few words for the log and `systemctl status`.
    pub fn advice(&self) -> &'static str {
        use rusqlite::ErrorCode as Code;
        match self.code() {
            Some(Code::DatabaseBusy | Code::DatabaseLocked) => {
                "another program holds the ledger's lock (an open sqlite3 shell, a backup tool, a second paysay?): close it"
            }
            Some(Code::DiskFull) => "the disk is full: free some space",
            Some(Code::ReadOnly | Code::CannotOpen | Code::PermissionDenied) => {
                "the ledger or its directory cannot be written: check they belong to the shop owner (`paysay paths` shows where) and the disk is not read-only"
            }
            Some(Code::DatabaseCorrupt | Code::NotADatabase) => {
                "the ledger file is damaged: stop paysay, move it aside and start again (README, Troubleshooting)"
            }
            Some(Code::SystemIoFailure) => {
                "the disk reported an error: check it and its free space"
            }
            _ => "check the disk (full? read-only?) and the ledger file's permissions",
        }
    }
}
