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

pub mod report;

use std::path::{Path, PathBuf};
use std::time::Duration;

use rusqlite::{Connection, TransactionBehavior, params};

use crate::paths;
use crate::payment::{Payment, PaymentKind};

/// How long a write waits for another program's lock (`paysay ledger`, a backup) before
/// it fails: `[ledger] busy_timeout_ms` overrides it.
pub const DEFAULT_BUSY_TIMEOUT: Duration = Duration::from_secs(10);

/// The schema this build writes (`PRAGMA user_version`).
pub const SCHEMA_VERSION: i64 = 1;

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

const COLUMNS: &str = "msg_id, transfer_id, kind, amount_fen, payer, remark, daily_count, \
    daily_total_fen, time, account, detected_at, announced_at";

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
        "the ledger {path} was written by a newer paysay (schema {found}, this one knows {SCHEMA_VERSION}); update paysay or point [ledger] path elsewhere"
    )]
    NewerSchema { path: PathBuf, found: i64 },
    #[error("ledger {path}: {action} failed: {source}")]
    Sql {
        path: PathBuf,
        action: &'static str,
        source: rusqlite::Error,
    },
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
}

/// A payment as the ledger holds it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Entry {
    pub payment: Payment,
    /// Unix seconds when paysay recorded it.
    pub detected_at: i64,
    /// Unix seconds when it was announced; `None` if not (yet).
    pub announced_at: Option<i64>,
}

/// The ledger file. `Send`, so the daemon can move it into a blocking task; not `Sync`:
/// one owner at a time.
#[derive(Debug)]
pub struct Ledger {
    conn: Connection,
    path: PathBuf,
}

/// A row as SQLite returns it, before the checks that turn it into an [`Entry`].
struct RawRow {
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
}

impl RawRow {
    fn read(row: &rusqlite::Row<'_>) -> rusqlite::Result<RawRow> {
        Ok(RawRow {
            msg_id: row.get(0)?,
            transfer_id: row.get(1)?,
            kind: row.get(2)?,
            amount_fen: row.get(3)?,
            payer: row.get(4)?,
            remark: row.get(5)?,
            daily_count: row.get(6)?,
            daily_total_fen: row.get(7)?,
            time: row.get(8)?,
            account: row.get(9)?,
            detected_at: row.get(10)?,
            announced_at: row.get(11)?,
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
        if let Some(dir) = path.parent().filter(|d| !d.as_os_str().is_empty()) {
            paths::create_private_dir_all(dir).map_err(|source| LedgerError::CreateDir {
                path: dir.to_path_buf(),
                source,
            })?;
        }
        let open_err = |source| LedgerError::Open {
            path: path.to_path_buf(),
            source,
        };
        // SQLite gives -wal and -shm the mode of the database file: a file made owner-only
        // first keeps all three so; older files (or another umask) are tightened.
        keep_private(path);
        let mut conn = Connection::open(path).map_err(open_err)?;
        // The daemon and `paysay ledger` may touch the file at once: wait, don't fail.
        conn.busy_timeout(busy_timeout).map_err(open_err)?;
        conn.query_row("PRAGMA journal_mode = WAL", [], |r| r.get::<_, String>(0))
            .map_err(|e| corrupt_or(path, e, open_err))?;
        conn.pragma_update(None, "synchronous", "FULL")
            .map_err(open_err)?;
        check_integrity(&conn, path)?;
        migrate(&mut conn, path)?;
        for companion in ["-wal", "-shm"] {
            keep_private(&with_suffix(path, companion));
        }
        Ok(Ledger {
            conn,
            path: path.to_path_buf(),
        })
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
        let inserted = self
            .conn
            .execute(
                &format!(
                    "INSERT INTO payments ({COLUMNS}) VALUES (?1, ?2, ?3, ?4, ?5, ?6, ?7, ?8, ?9, ?10, ?11, NULL)
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
                ],
            )
            .map_err(self.sql("recording a payment"))?;
        Ok(if inserted == 1 {
            Recorded::New
        } else {
            Recorded::Duplicate
        })
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
        let entries = self.query(
            "listing unannounced payments",
            &format!("SELECT {COLUMNS} FROM payments WHERE announced_at IS NULL ORDER BY id"),
            params![],
        )?;
        Ok(entries.into_iter().map(|e| e.payment).collect())
    }

    /// Payments whose time (the message's `CreateTime`) is in `from_unix..to_unix`
    /// (`to_unix` excluded), oldest first.
    pub fn entries(&self, from_unix: i64, to_unix: i64) -> Result<Vec<Entry>, LedgerError> {
        self.query(
            "listing payments",
            &format!(
                "SELECT {COLUMNS} FROM payments WHERE time >= ?1 AND time < ?2 ORDER BY time, id"
            ),
            params![from_unix, to_unix],
        )
    }

    fn query(
        &self,
        action: &'static str,
        sql: &str,
        params: &[&dyn rusqlite::ToSql],
    ) -> Result<Vec<Entry>, LedgerError> {
        let mut stmt = self.conn.prepare_cached(sql).map_err(self.sql(action))?;
        let rows = stmt
            .query_map(params, RawRow::read)
            .map_err(self.sql(action))?
            .collect::<Result<Vec<_>, _>>()
            .map_err(self.sql(action))?;
        rows.into_iter().map(|row| self.entry(row)).collect()
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
        };
        Ok(Entry {
            payment,
            detected_at: row.detected_at,
            announced_at: row.announced_at,
        })
    }
}

impl LedgerError {
    /// What the owner can do about it, in a few words for the log and `systemctl status`.
    pub fn advice(&self) -> &'static str {
        use rusqlite::ErrorCode as Code;
        let code = match self {
            LedgerError::Sql { source, .. } | LedgerError::Open { source, .. } => {
                source.sqlite_error_code()
            }
            LedgerError::Corrupt { .. } => Some(Code::DatabaseCorrupt),
            LedgerError::CreateDir { .. } => Some(Code::CannotOpen),
            _ => None,
        };
        match code {
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

/// SQLite's quick check: every page of every table and index is read and checked, which
/// finds a damaged page (but skips the slower index-to-table cross-check).
fn check_integrity(conn: &Connection, path: &Path) -> Result<(), LedgerError> {
    let open_err = |source| LedgerError::Open {
        path: path.to_path_buf(),
        source,
    };
    let problems = conn
        .prepare("PRAGMA quick_check(3)")
        .and_then(|mut stmt| {
            stmt.query_map([], |r| r.get::<_, String>(0))?
                .collect::<Result<Vec<_>, _>>()
        })
        .map_err(|e| corrupt_or(path, e, open_err))?;
    if problems.len() == 1 && problems[0] == "ok" {
        return Ok(());
    }
    Err(LedgerError::Corrupt {
        path: path.to_path_buf(),
        problem: format!("SQLite's integrity check says: {}", problems.join("; ")),
    })
}

/// [`LedgerError::Corrupt`] for SQLite's "database disk image is malformed", else `other`.
fn corrupt_or(
    path: &Path,
    e: rusqlite::Error,
    other: impl FnOnce(rusqlite::Error) -> LedgerError,
) -> LedgerError {
    if e.sqlite_error_code() == Some(rusqlite::ErrorCode::DatabaseCorrupt) {
        LedgerError::Corrupt {
            path: path.to_path_buf(),
            problem: e.to_string(),
        }
    } else {
        other(e)
    }
}

/// `ledger.sqlite3` + `-wal`: SQLite's names for the files beside the database.
fn with_suffix(path: &Path, suffix: &str) -> PathBuf {
    let mut name = path.as_os_str().to_owned();
    name.push(suffix);
    PathBuf::from(name)
}

/// Makes the file at `path` owner-only, creating it empty (SQLite's "new database") if it
/// is missing, so that it is never readable by others even for a moment. Best effort: a
/// file paysay may read but not change (another user's) stays as it is, with a warning.
fn keep_private(path: &Path) {
    #[cfg(unix)]
    {
        use std::os::unix::fs::OpenOptionsExt;
        // Already there is fine; a failure to create is SQLite's to report, with its path.
        let _ = std::fs::OpenOptions::new()
            .write(true)
            .create_new(true)
            .mode(0o600)
            .open(path);
    }
    if let Err(e) = paths::restrict(path, 0o600) {
        tracing::warn!(path = %path.display(), error = %e, "cannot make the ledger file owner-only");
    }
}

/// Brings the schema to [`SCHEMA_VERSION`] inside one immediate transaction, so that two
/// processes opening a new ledger at once cannot both create it.
fn migrate(conn: &mut Connection, path: &Path) -> Result<(), LedgerError> {
    let sql = |action| {
        move |source| LedgerError::Sql {
            path: path.to_path_buf(),
            action,
            source,
        }
    };
    let tx = conn
        .transaction_with_behavior(TransactionBehavior::Immediate)
        .map_err(sql("starting the schema check"))?;
    let found: i64 = tx
        .query_row("PRAGMA user_version", [], |r| r.get(0))
        .map_err(|source| LedgerError::Open {
            path: path.to_path_buf(),
            source,
        })?;
    match found {
        0 => {
            tx.execute_batch(SCHEMA_V1)
                .map_err(sql("creating the schema"))?;
            tx.pragma_update(None, "user_version", SCHEMA_VERSION)
                .map_err(sql("setting the schema version"))?;
        }
        SCHEMA_VERSION => {}
        newer => {
            return Err(LedgerError::NewerSchema {
                path: path.to_path_buf(),
                found: newer,
            });
        }
    }
    tx.commit().map_err(sql("committing the schema"))
}
