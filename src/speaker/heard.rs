//! The speaker's own small ledger (`speaker.sqlite3` in the state dir): the ids of the
//! payments it was told about, which of them it said, and its client id at the broker.
//!
//! It is opened and shared like the daemon's ledger ([`crate::ledger::db`],
//! [`crate::ledger::Shared`]): owner-only, WAL, checked at open, upgraded by
//! `user_version`, its calls on the blocking pool.

use std::path::{Path, PathBuf};

use rusqlite::{Connection, OptionalExtension, params};

use super::Payment;
use crate::ledger::db::{self, Schema};
use crate::ledger::{DEFAULT_BUSY_TIMEOUT, LedgerError, Recorded, Store};
use crate::payment::Wallet;

/// Version 1 is the first with `user_version`; a ledger from before it (no `wallet`, a
/// speaker that said every payment as WeChat) gets the column, a new one the tables.
const SCHEMA: Schema = Schema {
    steps: &[(
        "creating the tables",
        "CREATE TABLE IF NOT EXISTS heard (
             id           TEXT PRIMARY KEY,
             amount_fen   INTEGER NOT NULL CHECK (amount_fen >= 0),
             received_at  INTEGER NOT NULL,
             announced_at INTEGER
         );
         CREATE TABLE IF NOT EXISTS meta (
             key   TEXT PRIMARY KEY,
             value TEXT NOT NULL
         );
         ALTER TABLE heard ADD COLUMN wallet TEXT NOT NULL DEFAULT 'wechat';",
    )],
};

/// The speaker's ledger.
pub struct Heard {
    conn: Connection,
    path: PathBuf,
}

impl Store for Heard {
    fn reopen_if_read_only(&mut self) -> Result<(), LedgerError> {
        db::reopen_if_read_only(&mut self.conn, &self.path, DEFAULT_BUSY_TIMEOUT, &SCHEMA)
    }
}

impl Heard {
    /// Opens (or creates) the ledger at `path`, owner-only: it says what the shop earned.
    pub fn open(path: &Path) -> Result<Heard, LedgerError> {
        Ok(Heard {
            conn: db::open(path, DEFAULT_BUSY_TIMEOUT, &SCHEMA)?,
            path: path.to_path_buf(),
        })
    }

    fn err(&self, action: &'static str) -> impl FnOnce(rusqlite::Error) -> LedgerError + '_ {
        move |source| LedgerError::Sql {
            path: self.path.clone(),
            action,
            source,
        }
    }

    /// The speaker's client id at the broker: made once, then kept, so that the broker's
    /// persistent session (and the messages it holds while the speaker reconnects) is found
    /// again, and two speakers never share one.
    pub fn client_id(&self) -> Result<String, LedgerError> {
        let fresh = crate::mqtt::random_client_id("paysay-speaker");
        self.conn
            .execute(
                "INSERT INTO meta (key, value) VALUES ('client_id', ?1) ON CONFLICT DO NOTHING",
                params![fresh],
            )
            .map_err(self.err("storing the client id"))?;
        self.conn
            .query_row("SELECT value FROM meta WHERE key = 'client_id'", [], |r| {
                r.get(0)
            })
            .map_err(self.err("reading the client id"))
    }

    /// Stores a payment's id unless it is known. The amount is stored as it is or not at
    /// all (an error), never clamped: what is said and what is recorded are one number.
    pub fn record(&self, p: &Payment) -> Result<Recorded, LedgerError> {
        let inserted = self
            .conn
            .execute(
                "INSERT INTO heard (id, amount_fen, wallet, received_at) VALUES (?1, ?2, ?3, ?4)
                 ON CONFLICT DO NOTHING",
                params![p.id, p.amount_fen, p.wallet.as_str(), crate::now_unix()],
            )
            .map_err(self.err("recording a payment"))?;
        Ok(if inserted == 1 {
            Recorded::New
        } else {
            Recorded::Duplicate
        })
    }

    /// The payment was said.
    pub fn mark_announced(&self, id: &str) -> Result<(), LedgerError> {
        self.conn
            .execute(
                "UPDATE heard SET announced_at = ?2 WHERE id = ?1",
                params![id, crate::now_unix()],
            )
            .map_err(self.err("marking a payment announced"))?;
        Ok(())
    }

    /// Payments received but not said (a stop or a crash in between), oldest first.
    pub fn unannounced(&self) -> Result<Vec<Payment>, LedgerError> {
        let mut stmt = self
            .conn
            .prepare(
                "SELECT id, amount_fen, wallet FROM heard WHERE announced_at IS NULL ORDER BY rowid",
            )
            .map_err(self.err("reading the backlog"))?;
        let rows = stmt
            .query_map([], |r| {
                Ok(Payment {
                    id: r.get(0)?,
                    amount_fen: r.get(1)?,
                    // Written by `record` from a `Wallet`: anything else is a hand edit.
                    wallet: r.get::<_, String>(2)?.parse().unwrap_or(Wallet::WeChat),
                })
            })
            .map_err(self.err("reading the backlog"))?;
        rows.collect::<Result<_, _>>()
            .map_err(self.err("reading the backlog"))
    }

    /// Whether `id` was said (for tests and `paysay doctor`).
    pub fn announced(&self, id: &str) -> Result<bool, LedgerError> {
        self.conn
            .query_row(
                "SELECT announced_at IS NOT NULL FROM heard WHERE id = ?1",
                params![id],
                |r| r.get(0),
            )
            .optional()
            .map(|v| v.unwrap_or(false))
            .map_err(self.err("reading a payment"))
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::money::MAX_PAYMENT_FEN;

    fn payment(id: &str, amount_fen: u64) -> Payment {
        Payment {
            id: id.into(),
            amount_fen,
            wallet: Wallet::WeChat,
        }
    }

    #[test]
    fn a_payments_wallet_is_kept_for_the_backlog_and_older_ledgers_are_upgraded() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("speaker.sqlite3");
        // A speaker ledger as paysay wrote it before wallets: no column, user_version 0.
        let old = Connection::open(&path).unwrap();
        old.execute_batch(
            "CREATE TABLE heard (id TEXT PRIMARY KEY, amount_fen INTEGER NOT NULL CHECK (amount_fen >= 0),
                                 received_at INTEGER NOT NULL, announced_at INTEGER);
             INSERT INTO heard VALUES ('old', 100, 0, NULL);",
        )
        .unwrap();
        drop(old);
        let heard = Heard::open(&path).unwrap();
        let alipay = Payment {
            wallet: Wallet::Alipay,
            ..payment("new", 200)
        };
        heard.record(&alipay).unwrap();
        assert_eq!(
            heard.unannounced().unwrap(),
            vec![payment("old", 100), alipay]
        );
        drop(heard);
        assert!(Heard::open(&path).is_ok(), "opened again, upgraded once");
    }

    #[test]
    fn amounts_are_recorded_as_they_are_or_not_at_all() {
        let dir = tempfile::tempdir().unwrap();
        let heard = Heard::open(&dir.path().join("speaker.sqlite3")).unwrap();
        assert!(heard.record(&payment("max", u64::MAX)).is_err());
        assert_eq!(
            heard.record(&payment("a", MAX_PAYMENT_FEN)).unwrap(),
            Recorded::New
        );
        assert_eq!(heard.unannounced().unwrap()[0].amount_fen, MAX_PAYMENT_FEN);
    }

    #[test]
    fn ids_are_recorded_once_and_the_client_id_is_kept() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("state/speaker.sqlite3");
        let heard = Heard::open(&path).unwrap();
        let id = heard.client_id().unwrap();
        assert!(id.starts_with("paysay-speaker-"), "{id}");
        assert_eq!(heard.record(&payment("a", 100)).unwrap(), Recorded::New);
        assert_eq!(
            heard.record(&payment("a", 100)).unwrap(),
            Recorded::Duplicate
        );
        assert_eq!(heard.unannounced().unwrap().len(), 1);
        heard.mark_announced("a").unwrap();
        drop(heard);
        let again = Heard::open(&path).unwrap();
        assert_eq!(again.client_id().unwrap(), id);
        assert!(again.announced("a").unwrap());
        assert!(again.unannounced().unwrap().is_empty());
        #[cfg(unix)]
        {
            use std::os::unix::fs::PermissionsExt;
            let mode = std::fs::metadata(&path).unwrap().permissions().mode();
            assert_eq!(mode & 0o777, 0o600);
        }
    }
}
