//! The announcer: one task that says payments (and spoken alerts) one after another, in the
//! order they arrived, and has each payment marked heard only once it has been heard. What
//! it could not say stays unmarked for the next run.
//!
//! The daemon and `paysay speaker` both say payments through it; they differ only in where
//! "heard" is written ([`Record`]): the daemon's ledger, or the speaker's own.

use std::future::Future;
use std::sync::Arc;
use std::time::Duration;

use tokio::sync::{mpsc, watch};
use tokio_util::sync::CancellationToken;
use tracing::Instrument;

use crate::audio::{AudioError, PlayerHandle};
use crate::backoff::Backoff;
use crate::live::{Live, SpeakerState};
use crate::money::Yuan;
use crate::payment::{Payment, Wallet};
use crate::speech::{Clip, Speech, TtsError};

/// Something to say: a payment (the daemon's [`Payment`], or what the speaker heard of one),
/// or a spoken alert, e.g. that WeChat needs a new scan.
#[derive(Debug, Clone)]
pub enum Announcement<P = Payment> {
    Payment(P),
    Alert(String),
}

/// What the announcer needs to know of a payment: what to say, and what to log.
pub trait Spoken: Send + Sync + 'static {
    fn wallet(&self) -> Wallet;
    fn amount_fen(&self) -> u64;
    /// The payment's id, for the log.
    fn id(&self) -> &str;
}

impl Spoken for Payment {
    fn wallet(&self) -> Wallet {
        self.wallet
    }

    fn amount_fen(&self) -> u64 {
        self.amount_fen
    }

    fn id(&self) -> &str {
        &self.msg_id
    }
}

/// Where the announcer writes that a payment was heard (and says so in the log): the
/// daemon's ledger, or the speaker's. Called only once the payment has been heard; a
/// failure to write is logged by the implementation, and the next start says it again,
/// better twice than never.
pub trait Record: Send + Sync + 'static {
    type Payment: Spoken;

    fn heard(&self, payment: &Self::Payment, clip: &Clip) -> impl Future<Output = ()> + Send;
}

#[derive(Debug, thiserror::Error)]
enum SayError {
    #[error(transparent)]
    Speech(#[from] TtsError),
    #[error(transparent)]
    Audio(#[from] AudioError),
}

/// What the announcer needs; `speech` is swapped on a config reload.
pub struct Announcer<R: Record> {
    pub speech: watch::Receiver<Arc<Speech>>,
    pub player: PlayerHandle,
    /// Where heard payments are marked.
    pub record: R,
    pub queue: mpsc::UnboundedReceiver<Announcement<R::Payment>>,
    pub shutdown: CancellationToken,
    /// Told whether the speaker is speaking, idle or failing.
    pub live: Live,
}

impl<R: Record> Announcer<R> {
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
    async fn announce(&mut self, announcement: Announcement<R::Payment>) {
        let span = match &announcement {
            Announcement::Payment(p) => {
                tracing::info_span!("announce", id = %crate::text::Escaped(p.id()), amount = %Yuan(p.amount_fen()))
            }
            Announcement::Alert(_) => tracing::info_span!("announce", alert = true),
        };
        self.announce_until_heard(announcement)
            .instrument(span)
            .await
    }

    async fn announce_until_heard(&mut self, announcement: Announcement<R::Payment>) {
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

    async fn done(&self, announcement: &Announcement<R::Payment>, clip: &Clip) {
        match announcement {
            Announcement::Payment(p) => self.record.heard(p, clip).await,
            Announcement::Alert(_) => tracing::info!(text = %clip.text, "alert spoken"),
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

async fn say<P: Spoken>(
    speech: &Speech,
    player: &PlayerHandle,
    announcement: &Announcement<P>,
) -> Result<Clip, SayError> {
    let clip = match announcement {
        Announcement::Payment(p) => speech.announce_in(p.wallet(), p.amount_fen()).await?,
        Announcement::Alert(text) => speech.speak(text).await?,
    };
    player.play(clip.clone()).await?;
    Ok(clip)
}
