//! The outbox: every payment the ledger records is queued, in the same transaction, for
//! each configured sink (`deliveries` in the ledger), and one task per sink sends the queue
//! in order, at least once, until the receiver acknowledges.
//!
//! Delivery never delays an announcement: the record path only inserts rows and wakes the
//! tasks, which send on their own ledger connection. A receiver that is down holds back
//! only its own queue, retried with capped exponential backoff; the queue lives in the
//! ledger file, so it waits through restarts, and a task sends what is pending when it
//! starts. `paysay resend` (another process) marks events pending again: the tasks look
//! for pending rows every [`POLL`] besides being woken.

use std::path::Path;
use std::sync::{Arc, Mutex};
use std::time::Duration;

use time::UtcOffset;
use tokio::sync::Notify;
use tokio::task::JoinHandle;
use tokio_util::sync::CancellationToken;

use crate::backoff::Backoff;
use crate::events::{DeliveryError, PaymentEvent, Sink};
use crate::ledger::{DeliveryState, Ledger, LedgerError, Pending};
use crate::money::Yuan;
use crate::text::Escaped;

/// How often an idle task looks for pending events it was not woken for (`paysay resend`
/// from another process).
pub const POLL: Duration = Duration::from_secs(2);
/// First wait after a failed delivery; doubles per failure up to [`MAX_BACKOFF`].
pub const MIN_BACKOFF: Duration = Duration::from_secs(1);
pub const MAX_BACKOFF: Duration = Duration::from_secs(60);

/// The delivery side of the ledger: its own connection, shared by the sinks' tasks.
#[derive(Clone)]
pub struct Outbox {
    ledger: Arc<Mutex<Ledger>>,
    /// The offset events' times are written with (read once, at start: `time` cannot read
    /// the local offset in a multi-threaded process).
    offset: UtcOffset,
    min_backoff: Duration,
    max_backoff: Duration,
    poll: Duration,
}

/// Wakes every delivery task: a payment was just recorded.
#[derive(Clone, Default)]
pub struct Wakers(Vec<Arc<Notify>>);

impl Wakers {
    pub fn wake_all(&self) {
        for waker in &self.0 {
            // A permit is stored if the task is busy, so the payment is not left for POLL.
            waker.notify_one();
        }
    }
}

impl Outbox {
    /// Opens its own connection to the ledger at `path`.
    pub fn open(
        path: &Path,
        busy_timeout: Duration,
        offset: UtcOffset,
    ) -> Result<Outbox, LedgerError> {
        let ledger = Ledger::open_with(path, busy_timeout)?;
        Ok(Outbox {
            ledger: Arc::new(Mutex::new(ledger)),
            offset,
            min_backoff: MIN_BACKOFF,
            max_backoff: MAX_BACKOFF,
            poll: POLL,
        })
    }

    /// Other waits than the daemon's (tests).
    pub fn timing(
        mut self,
        min_backoff: Duration,
        max_backoff: Duration,
        poll: Duration,
    ) -> Outbox {
        self.min_backoff = min_backoff;
        self.max_backoff = max_backoff;
        self.poll = poll;
        self
    }

    /// Starts one delivery task per sink; they end on `shutdown`.
    pub fn spawn(
        &self,
        sinks: Vec<Arc<dyn Sink>>,
        shutdown: &CancellationToken,
    ) -> (Vec<JoinHandle<()>>, Wakers) {
        let mut tasks = Vec::new();
        let mut wakers = Wakers::default();
        for sink in sinks {
            let wake = Arc::new(Notify::new());
            wakers.0.push(wake.clone());
            let task = Delivery {
                outbox: self.clone(),
                sink,
                wake,
                shutdown: shutdown.clone(),
            };
            tasks.push(tokio::spawn(task.run()));
        }
        (tasks, wakers)
    }

    async fn call<T: Send + 'static>(
        &self,
        f: impl FnOnce(&Ledger) -> Result<T, LedgerError> + Send + 'static,
    ) -> Result<T, LedgerError> {
        let ledger = self.ledger.clone();
        tokio::task::spawn_blocking(move || {
            // A panic mid-call cannot leave SQLite inconsistent: its transactions see to that.
            let mut ledger = ledger.lock().unwrap_or_else(|e| e.into_inner());
            let result = f(&ledger);
            if result.as_ref().is_err_and(LedgerError::is_read_only) {
                // Opened read-only when the file was not writable: once the owner has fixed
                // it, only a new connection can write. The next call sees which it is.
                let _ = ledger.reopen_if_read_only();
            }
            result
        })
        .await
        .unwrap_or_else(|e| Err(LedgerError::Task(e.to_string())))
    }
}

/// One sink's task.
struct Delivery {
    outbox: Outbox,
    sink: Arc<dyn Sink>,
    wake: Arc<Notify>,
    shutdown: CancellationToken,
}

impl Delivery {
    async fn run(self) {
        let mut backoff = Backoff::new(self.outbox.min_backoff, self.outbox.max_backoff);
        let name = self.sink.name().to_string();
        tracing::debug!(sink = %name, "delivery task started");
        while !self.shutdown.is_cancelled() {
            let sink = name.clone();
            let wait = match self.outbox.call(move |l| l.next_pending(&sink)).await {
                Ok(Some(pending)) => match self.deliver(&pending).await {
                    Some(Step::Delivered) => {
                        backoff.reset();
                        None
                    }
                    // Refused for good: on to the next event, but not at once, so that a
                    // receiver refusing everything (a wrong V免签 key) does not get the
                    // whole backlog back to back.
                    Some(Step::Rejected) => Some(self.outbox.min_backoff),
                    Some(Step::Retry) => Some(backoff.next_delay()),
                    // Shut down mid-request: the event stays pending for the next start.
                    None => return,
                },
                // Nothing to send: until a payment is recorded, or the next look.
                Ok(None) => {
                    tokio::select! {
                        _ = self.wake.notified() => {}
                        _ = tokio::time::sleep(self.outbox.poll) => {}
                        _ = self.shutdown.cancelled() => return,
                    }
                    None
                }
                Err(e) => {
                    tracing::error!(sink = %name, error = %Escaped(&e), "cannot read the outbox; trying again");
                    Some(backoff.next_delay())
                }
            };
            if let Some(delay) = wait {
                tokio::select! {
                    _ = tokio::time::sleep(delay) => {}
                    _ = self.shutdown.cancelled() => return,
                }
            }
        }
    }

    /// One try: how it ended, `None` on shutdown.
    async fn deliver(&self, pending: &Pending) -> Option<Step> {
        let event = PaymentEvent::new(&pending.payment, self.outbox.offset);
        let name = self.sink.name().to_string();
        let sent = tokio::select! {
            sent = self.sink.deliver(&event) => sent,
            _ = self.shutdown.cancelled() => return None,
        };
        let amount = Yuan(pending.payment.amount_fen);
        let (outcome, step) = match &sent {
            Ok(()) => {
                tracing::info!(sink = %name, id = %event.id, %amount, "event delivered");
                (Ok(()), Step::Delivered)
            }
            Err(DeliveryError::Rejected(why)) => {
                tracing::error!(sink = %name, id = %event.id, %amount, error = %Escaped(why), "the receiver REFUSED the payment event; it is not sent again by itself (fix the receiver, then `paysay resend --sink {name}`)");
                (Err((why.clone(), DeliveryState::Rejected)), Step::Rejected)
            }
            Err(DeliveryError::Transient(why)) => {
                tracing::warn!(sink = %name, id = %event.id, %amount, attempt = pending.attempts + 1, error = %Escaped(why), "payment event not delivered; trying again");
                (Err((why.clone(), DeliveryState::Pending)), Step::Retry)
            }
        };
        let row = pending.row;
        let noted = self
            .outbox
            .call(move |l| {
                let outcome = outcome
                    .as_ref()
                    .copied()
                    .map_err(|(why, state)| (why.as_str(), *state));
                l.note_delivery(row, &name, outcome)
            })
            .await;
        if let Err(e) = noted {
            // Delivered but not noted: sent again later, which the id makes harmless.
            tracing::error!(sink = %self.sink.name(), id = %event.id, error = %Escaped(&e), "cannot note the delivery in the ledger; the event may be sent again");
            return Some(Step::Retry);
        }
        Some(step)
    }
}

/// How one try to deliver an event ended.
enum Step {
    /// Acknowledged: the next event, at once.
    Delivered,
    /// Refused for good: the next event, after a pause.
    Rejected,
    /// To be tried again after the backoff.
    Retry,
}
