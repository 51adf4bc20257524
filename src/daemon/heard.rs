//! Where the daemon's announcer marks a payment heard: the ledger, or, for a payment said
//! before the ledger could record it, the list the supervisor marks once it is recorded.

use super::unrecorded::Unrecorded;
use crate::announcer::Record;
use crate::ledger::LedgerHandle;
use crate::money::Yuan;
use crate::payment::Payment;
use crate::speech::Clip;

/// The daemon's [`Record`].
pub struct Heard {
    pub ledger: LedgerHandle,
    /// Payments said before the ledger could record them: marked later, by the supervisor.
    pub unrecorded: Unrecorded,
}

impl Record for Heard {
    type Payment = Payment;

    async fn heard(&self, p: &Payment, clip: &Clip) {
        if self.unrecorded.heard(p) {
            tracing::warn!(
                amount = %Yuan(p.amount_fen),
                kind = %p.kind,
                text = %clip.text,
                voice = clip.backend,
                composed = clip.is_composed(),
                "payment announced; not in the ledger yet, it is recorded once the ledger can be written"
            );
            return;
        }
        let payment = p.clone();
        match self.ledger.write(move |l| l.mark_heard(&payment)).await {
            Ok(()) => tracing::info!(
                amount = %Yuan(p.amount_fen),
                kind = %p.kind,
                text = %clip.text,
                voice = clip.backend,
                composed = clip.is_composed(),
                "payment announced"
            ),
            // Heard, but not recorded as heard: the next start says it again. Better twice
            // than never, and the log says why.
            Err(e) => {
                tracing::error!(error = %e, "payment announced, but the ledger could not record it")
            }
        }
    }
}
