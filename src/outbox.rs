//! The outbox: every payment the ledger records is queued, in the same transaction, for
//! each configured sink (`deliveries` in the ledger), and one task per sink sends the queue
//! in order, at least once, until the receiver acknowledges.
//!
//! Delivery never delays an announcement: the record path only inserts rows, and the
//! ledger's handle wakes the tasks after each write ([`LedgerHandle::changes`]); they read
//! on its reader connection. A receiver that is down holds back only its own queue, retried
//! with capped exponential backoff; the queue lives in the ledger file, so it waits through
//! restarts, and a task sends what is pending when it starts. `paysay resend` (another
//! process) marks events pending again: one task asks SQLite every [`POLL`] whether another
//! process wrote, and wakes them if so. An idle outbox reads nothing else.

use std::sync::Arc;
use std::time::Duration;

use time::UtcOffset;
use tokio::sync::watch;
use tokio::task::JoinHandle;
use tokio_util::sync::CancellationToken;

use crate::backoff::Backoff;
use crate::events::{DeliveryError, PaymentEvent, Sink};
use crate::ledger::{DeliveryState, LedgerHandle, Pending};
use crate::money::Yuan;
use crate::text::Escaped;

/// How often the outbox asks SQLite whether another process wrote (`paysay resend`).
pub const POLL: Duration = Duration::from_secs(2);
/// First wait after a failed delivery; doubles per failure up to [`MAX_BACKOFF`].
pub const MIN_BACKOFF: Duration = Duration::from_secs(1);
pub const MAX_BACKOFF: Duration = Duration::from_secs(60);

/// The delivery side of the ledger, shared by the sinks' tasks.
#[derive(Clone)]
pub struct Outbox {
    ledger: LedgerHandle,
    /// The offset events' times are written with (read once, at start: `time` cannot read
    /// the local offset in a multi-threaded process).
    offset: UtcOffset,
}

impl Outbox {
    /// Delivers what `ledger` queues, events' times written at `offset`.
    pub fn new(ledger: LedgerHandle, offset: UtcOffset) -> Outbox {
        Outbox { ledger, offset }
    }

    /// Starts one delivery task per sink, and the one that notices other processes'
    /// writes; they end on `shutdown`.
    pub fn spawn(
        &self,
        sinks: Vec<Arc<dyn Sink>>,
        shutdown: &CancellationToken,
    ) -> Vec<JoinHandle<()>> {
        let mut tasks: Vec<JoinHandle<()>> = sinks
            .into_iter()
            .map(|sink| {
                let task = Delivery {
                    outbox: self.clone(),
                    sink,
                    changes: self.ledger.changes(),
                    shutdown: shutdown.clone(),
                };
                tokio::spawn(task.run())
            })
            .collect();
        tasks.push(tokio::spawn(
            self.ledger
                .clone()
                .watch_other_writers(POLL, shutdown.clone()),
        ));
        tasks
    }
}

/// One sink's task.
struct Delivery {
    outbox: Outbox,
    sink: Arc<dyn Sink>,
    /// Moves when the ledger was written: something may be pending.
    changes: watch::Receiver<u64>,
    shutdown: CancellationToken,
}

impl Delivery {
    async fn run(mut self) {
        let mut backoff = Backoff::new(MIN_BACKOFF, MAX_BACKOFF);
        let name = self.sink.name().to_string();
        tracing::debug!(sink = %name, "delivery task started");
        while !self.shutdown.is_cancelled() {
            let sink = name.clone();
            // Whatever is written from here on wakes the wait below.
            self.changes.mark_unchanged();
            let wait = match self
                .outbox
                .ledger
                .read(move |l| l.next_pending(&sink))
                .await
            {
                Ok(Some(pending)) => match self.deliver(&pending).await {
                    Some(Step::Delivered) => {
                        backoff.reset();
                        None
                    }
                    // Refused for good: on to the next event, but not at once, so that a
                    // receiver refusing everything (a wrong V免签 key) does not get the
                    // whole backlog back to back.
                    Some(Step::Rejected) => Some(MIN_BACKOFF),
                    Some(Step::Retry) => Some(backoff.next_delay()),
                    // Shut down mid-request: the event stays pending for the next start.
                    None => return,
                },
                // Nothing to send: until something is written.
                Ok(None) => {
                    tokio::select! {
                        changed = self.changes.changed() => if changed.is_err() { return },
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
            .ledger
            .write(move |l| {
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
