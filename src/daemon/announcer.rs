//! The announcer: one task that says payments (and login alerts) one after another, in the
//! order they arrived, and marks each payment announced in the ledger only once it has been
//! heard. What it could not say stays unannounced in the ledger for the next run.

use std::sync::Arc;
use std::time::Duration;

use tokio::sync::{mpsc, watch};
use tokio_util::sync::CancellationToken;
use tracing::Instrument;

use super::SharedLedger;
use super::live::{Live, SpeakerState};
use super::unrecorded::Unrecorded;
use crate::audio::{AudioError, PlayerHandle};
use crate::money::Yuan;
use crate::payment::Payment;
use crate::session::Backoff;
use crate::speech::{Clip, Speech, TtsError};

/// Something to say.
#[derive(Debug, Clone)]
pub enum Announcement {
    Payment(Payment),
    /// A spoken alert, e.g. that WeChat needs a new scan.
    Alert(String),
}

#[derive(Debug, thiserror::Error)]
enum SayError {
    #[error(transparent)]
    Speech(#[from] TtsError),
    #[error(transparent)]
    Audio(#[from] AudioError),
}

/// What the announcer needs; `speech` is swapped on a config reload.
pub struct Announcer {
    pub speech: watch::Receiver<Arc<Speech>>,
    pub player: PlayerHandle,
    pub ledger: SharedLedger,
    /// Payments said before the ledger could record them: marked later, by the supervisor.
    pub unrecorded: Unrecorded,
    pub queue: mpsc::UnboundedReceiver<Announcement>,
    pub shutdown: CancellationToken,
    /// Told whether the speaker is speaking, idle or failing.
    pub live: Live,
}

impl Announcer {
    /// Runs until shutdown; the announcement being spoken then is finished first.
    pub async fn run(mut self) {
        loop {
            let next = tokio::select! {
                biased;
                _ = self.shutdown.cancelled() => break,
                next = self.queue.recv() => next,
            };
            let Some(announcement) = next else { break };
            self.announce(announcement).await;
        }
    }

    /// Says one announcement, retrying (in order: later ones wait) while the speaker or every
    /// voice fails. Gives up only on shutdown, leaving the payment for the next run.
    async fn announce(&mut self, announcement: Announcement) {
        let span = match &announcement {
            Announcement::Payment(p) => {
                tracing::info_span!("announce", msg_id = %crate::text::Escaped(&p.msg_id), amount = %Yuan(p.amount_fen))
            }
            Announcement::Alert(_) => tracing::info_span!("announce", alert = true),
        };
        self.announce_until_heard(announcement)
            .instrument(span)
            .await
    }

    async fn announce_until_heard(&mut self, announcement: Announcement) {
        let mut backoff = Backoff::new(Duration::from_secs(2), Duration::from_secs(60));
        loop {
            let speech = self.speech.borrow().clone();
            self.live.update(|s| s.speaker = SpeakerState::Speaking);
            match say(&speech, &self.player, &announcement).await {
                Ok(clip) => {
                    self.live.update(|s| s.speaker = SpeakerState::Idle);
                    self.done(&announcement, &clip).await;
                    return;
                }
                Err(e) => {
                    let failing = e.as_speaker_state();
                    self.live.update(|s| s.speaker = failing);
                    let delay = backoff.next_delay();
                    tracing::error!(error = %e, retry_in_s = delay.as_secs(), "announcement not heard yet; retrying");
                    tokio::select! {
                        _ = self.shutdown.cancelled() => {
                            tracing::warn!("stopping before the announcement was heard; it is kept for the next start");
                            return;
                        }
                        _ = tokio::time::sleep(delay) => {}
                    }
                }
            }
        }
    }

    async fn done(&self, announcement: &Announcement, clip: &Clip) {
        let Announcement::Payment(p) = announcement else {
            tracing::info!(text = %clip.text, "alert spoken");
            return;
        };
        if self.unrecorded.heard(p) {
            tracing::warn!(
                amount = %Yuan(p.amount_fen),
                kind = %p.kind,
                text = %clip.text,
                voice = clip.backend,
                "payment announced; not in the ledger yet, it is recorded once the ledger can be written"
            );
            return;
        }
        let payment = p.clone();
        match self.ledger.call(move |l| l.mark_heard(&payment)).await {
            Ok(()) => tracing::info!(
                amount = %Yuan(p.amount_fen),
                kind = %p.kind,
                text = %clip.text,
                voice = clip.backend,
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

impl SayError {
    fn as_speaker_state(&self) -> SpeakerState {
        let what = match self {
            SayError::Speech(_) => "speech",
            SayError::Audio(_) => "audio",
        };
        SpeakerState::Failing {
            what,
            error: crate::text::Escaped(self).to_string(),
        }
    }
}

async fn say(
    speech: &Speech,
    player: &PlayerHandle,
    announcement: &Announcement,
) -> Result<Clip, SayError> {
    let clip = match announcement {
        Announcement::Payment(p) => speech.announce_in(p.wallet, p.amount_fen).await?,
        Announcement::Alert(text) => speech.speak(text).await?,
    };
    player.play(clip.clone()).await?;
    Ok(clip)
}
