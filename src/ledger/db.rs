//! Opening a SQLite file the way paysay keeps its records: the payment ledger and the
//! speaker's small one go through the same steps, so neither skips one.
//!
//! Owner-only files (what the shop earned is the owner's business), WAL with
//! `synchronous=FULL` (a payment committed survives a power cut), a busy timeout (another
//! program may hold the lock for a moment), SQLite's quick check before anything is written
//! (a damaged file is refused, not written into), and the schema brought up to date by
//! `PRAGMA user_version`, one step per version, in one immediate transaction.

use std::path::{Path, PathBuf};
use std::time::Duration;

use rusqlite::{Connection, TransactionBehavior};

use super::LedgerError;
use crate::paths;

/// A file's schema: `steps[i]` brings it from version `i` to `i + 1`, so the version this
/// build writes is `steps.len()`.
pub struct Schema {
    /// What each step does, for the error should it fail, and its SQL.
    pub steps: &'static [(&'static str, &'static str)],
}

impl Schema {
    /// The version this build writes (`PRAGMA user_version`).
    pub const fn version(&self) -> i64 {
        self.steps.len() as i64
    }
}

/// Opens (or creates) the file at `path` and checks it: the connection that writes.
pub fn open(
    path: &Path,
    busy_timeout: Duration,
    schema: &Schema,
) -> Result<Connection, LedgerError> {
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
    migrate(&mut conn, path, schema)?;
    for companion in ["-wal", "-shm"] {
        keep_private(&with_suffix(path, companion));
    }
    Ok(conn)
}

/// A second connection to a file [`open`] has opened and checked in this process: no
/// second check or migration, and it cannot write (`query_only`), so that it only ever
/// serves reads beside the writer.
pub fn open_reader(path: &Path, busy_timeout: Duration) -> Result<Connection, LedgerError> {
    let open_err = |source| LedgerError::Open {
        path: path.to_path_buf(),
        source,
    };
    let conn = Connection::open(path).map_err(open_err)?;
    conn.busy_timeout(busy_timeout).map_err(open_err)?;
    conn.pragma_update(None, "query_only", true)
        .map_err(open_err)?;
    Ok(conn)
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
pub(super) fn corrupt_or(
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
    if let Err(e) = paths::create_private_file(path) {
        tracing::warn!(path = %path.display(), error = %e, "cannot make the ledger file owner-only");
    }
}

/// Brings the schema to `schema.version()` inside one immediate transaction, so that two
/// processes opening a new file at once cannot both create it.
fn migrate(conn: &mut Connection, path: &Path, schema: &Schema) -> Result<(), LedgerError> {
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
    let known = schema.version();
    if found > known {
        return Err(LedgerError::NewerSchema {
            path: path.to_path_buf(),
            found,
            known,
        });
    }
    if found == known {
        return Ok(());
    }
    for (action, step) in &schema.steps[usize::try_from(found).unwrap_or(0)..] {
        tx.execute_batch(step).map_err(sql(action))?;
    }
    tx.pragma_update(None, "user_version", known)
        .map_err(sql("setting the schema version"))?;
    tx.commit().map_err(sql("committing the schema"))
}

/// Whether SQLite can write through `conn`. When the file was not writable at open, SQLite
/// opened it read-only without a word, and every write fails until it is opened again.
pub fn is_writable(conn: &Connection) -> bool {
    !conn.is_readonly(rusqlite::MAIN_DB).unwrap_or(true)
}

/// A connection opened read-only stays read-only after the owner has fixed the file: opens
/// it again, and keeps the new connection if it can write. Errors with
/// [`LedgerError::ReadOnly`] while it still cannot.
pub fn reopen_if_read_only(
    conn: &mut Connection,
    path: &Path,
    busy_timeout: Duration,
    schema: &Schema,
) -> Result<(), LedgerError> {
    if is_writable(conn) {
        return Ok(());
    }
    let fresh = open(path, busy_timeout, schema)?;
    if !is_writable(&fresh) {
        return Err(LedgerError::ReadOnly {
            path: path.to_path_buf(),
        });
    }
    *conn = fresh;
    Ok(())
}
