//! One handle on the ledger per process: opened and checked once, cloned into every task
//! that records, marks, delivers or reads (the supervisor, the announcer, the outbox, the
//! shop's page, the owner's texts).
//!
//! SQLite calls are short but blocking: they run on tokio's blocking pool, never on an
//! async worker, each on the connection behind a mutex. Writes go through one connection,
//! reads through a second (`query_only`), so that the page reading a month of payments
//! never holds up the recording of a new one (WAL lets a reader and a writer work at
//! once). What a call can meet besides SQLite's own errors lives here once: a holder that
//! panicked (the mutex is poisoned, but SQLite's transactions kept the file whole), a task
//! that died ([`LedgerError::Task`]) and a connection SQLite opened read-only (opened again
//! once the owner has fixed the file).
//!
//! Every write is announced ([`LedgerHandle::changes`]): the outbox's delivery tasks sleep
//! until something was written, instead of each reading the ledger every few seconds. A
//! `paysay resend` from another process is seen through SQLite's `PRAGMA data_version`,
//! read by one task ([`LedgerHandle::watch_other_writers`]).

use std::sync::{Arc, Mutex, MutexGuard};
use std::time::Duration;

use tokio::sync::watch;
use tokio_util::sync::CancellationToken;

use super::{Ledger, LedgerError};

/// A file behind a [`Shared`]: what it does when a write found it read-only.
pub trait Store: Send + 'static {
    /// Opens the file again if this connection cannot write (SQLite opened it read-only
    /// while the file was not writable, and stays so after the owner has fixed it).
    fn reopen_if_read_only(&mut self) -> Result<(), LedgerError>;
}

impl Store for Ledger {
    fn reopen_if_read_only(&mut self) -> Result<(), LedgerError> {
        Ledger::reopen_if_read_only(self)
    }
}

/// A store shared by tasks, called on the blocking pool one call at a time: the payment
/// ledger's connections here, and the speaker's ledger (`paysay speaker`).
pub struct Shared<S>(Arc<Mutex<S>>);

impl<S> Clone for Shared<S> {
    fn clone(&self) -> Self {
        Shared(self.0.clone())
    }
}

impl<S: Store> Shared<S> {
    pub fn new(store: S) -> Shared<S> {
        Shared(Arc::new(Mutex::new(store)))
    }

    /// The store itself, for a quick look at start (before any task uses it).
    pub fn lock(&self) -> MutexGuard<'_, S> {
        // A panic mid-call cannot leave SQLite inconsistent: its transactions see to that.
        self.0.lock().unwrap_or_else(|e| e.into_inner())
    }

    /// Runs `f` on the store on the blocking pool. A write refused because the connection
    /// is read-only opens the file again, so that the next call can write once the owner
    /// has fixed it.
    pub async fn call<T: Send + 'static>(
        &self,
        f: impl FnOnce(&mut S) -> Result<T, LedgerError> + Send + 'static,
    ) -> Result<T, LedgerError> {
        let shared = self.clone();
        tokio::task::spawn_blocking(move || {
            let mut store = shared.lock();
            let result = f(&mut store);
            if result.as_ref().is_err_and(LedgerError::is_read_only) {
                let _ = store.reopen_if_read_only();
            }
            result
        })
        .await
        .unwrap_or_else(|e| Err(LedgerError::Task(e.to_string())))
    }
}

/// The daemon's ledger: a writer, a reader, and the news that something was written.
#[derive(Clone)]
pub struct LedgerHandle {
    writer: Shared<Ledger>,
    reader: Shared<Ledger>,
    /// Bumped after each write through this handle, and for other processes' writes
    /// while [`LedgerHandle::watch_other_writers`] runs.
    written: Arc<watch::Sender<u64>>,
}

impl LedgerHandle {
    /// The handle on `ledger` (opened and checked by [`Ledger::open_with`], its sinks and
    /// match window set), with a second, read-only connection to the same file.
    pub fn new(ledger: Ledger) -> Result<LedgerHandle, LedgerError> {
        let reader = ledger.reader()?;
        Ok(LedgerHandle {
            writer: Shared::new(ledger),
            reader: Shared::new(reader),
            written: Arc::new(watch::channel(0).0),
        })
    }

    /// Whether the writer can write (checked at start: the owner learns at once).
    pub fn is_writable(&self) -> bool {
        self.writer.lock().is_writable()
    }

    /// Runs `f` on the writer; on success, tells [`LedgerHandle::changes`].
    pub async fn write<T: Send + 'static>(
        &self,
        f: impl FnOnce(&mut Ledger) -> Result<T, LedgerError> + Send + 'static,
    ) -> Result<T, LedgerError> {
        let result = self.writer.call(f).await;
        if result.is_ok() {
            self.bump();
        }
        result
    }

    /// Runs `f` on the reader, beside whatever the writer is doing.
    pub async fn read<T: Send + 'static>(
        &self,
        f: impl FnOnce(&Ledger) -> Result<T, LedgerError> + Send + 'static,
    ) -> Result<T, LedgerError> {
        self.reader.call(move |l| f(l)).await
    }

    /// Changes each time something may have been written.
    pub fn changes(&self) -> watch::Receiver<u64> {
        self.written.subscribe()
    }

    fn bump(&self) {
        self.written.send_modify(|n| *n = n.wrapping_add(1));
    }

    /// Until `shutdown`: every `period`, asks SQLite whether another connection wrote
    /// (`paysay resend`, another process) and tells [`LedgerHandle::changes`] if so. One
    /// cheap read per period for the whole process, whatever the number of sinks.
    pub async fn watch_other_writers(self, period: Duration, shutdown: CancellationToken) {
        let mut seen = None;
        loop {
            tokio::select! {
                _ = tokio::time::sleep(period) => {}
                _ = shutdown.cancelled() => return,
            }
            match self.read(|l| l.data_version()).await {
                // The first look wakes the tasks too: a write between their first read
                // and this look would otherwise wait for the next one.
                Ok(version) => {
                    if seen != Some(version) {
                        self.bump();
                    }
                    seen = Some(version);
                }
                Err(e) => {
                    tracing::debug!(error = %e, "cannot ask the ledger whether it changed");
                }
            }
        }
    }
}
