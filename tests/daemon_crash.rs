//! A daemon whose announcer dies must stop with an error (so the service restarts it and
//! the backlog is said), not go on recording payments nobody will hear; and it must not
//! leave its WeChat session running behind it.

mod common;

use std::sync::Arc;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::time::Duration;

use paysay::audio::NullOutput;
use paysay::daemon::DaemonError;
use paysay::ledger::Ledger;
use paysay::speech::{Audio, AudioFormat, SynthFuture, Synthesizer};
use tracing::span::{Attributes, Id};
use tracing::{Metadata, Subscriber};
use tracing_subscriber::layer::{Context, Layer, SubscriberExt};
use tracing_subscriber::registry::LookupSpan;
use tracing_subscriber::util::SubscriberInitExt;
use wechat_sim::{Endpoint, SimConfig, Simulator};

/// Counts the WeChat session's spans now open: the session task holds one while it syncs,
/// and closes it only when it ends.
#[derive(Clone, Default)]
struct OpenSessions(Arc<AtomicUsize>);

impl OpenSessions {
    fn is_session(metadata: &Metadata<'_>) -> bool {
        metadata.name() == "session" && metadata.target().starts_with("paysay::session")
    }

    fn count(&self) -> usize {
        self.0.load(Ordering::SeqCst)
    }
}

impl<S: Subscriber + for<'a> LookupSpan<'a>> Layer<S> for OpenSessions {
    fn on_new_span(&self, attrs: &Attributes<'_>, _: &Id, _: Context<'_, S>) {
        if Self::is_session(attrs.metadata()) {
            self.0.fetch_add(1, Ordering::SeqCst);
        }
    }

    fn on_close(&self, id: Id, ctx: Context<'_, S>) {
        if ctx.metadata(&id).is_some_and(Self::is_session) {
            self.0.fetch_sub(1, Ordering::SeqCst);
        }
    }
}

/// A voice with a bug: it panics on amounts (the login alert it says fine).
struct PanickingVoice;

impl Synthesizer for PanickingVoice {
    fn name(&self) -> &'static str {
        "panicking"
    }

    fn voice(&self) -> String {
        "none".into()
    }

    fn synthesize<'a>(&'a self, text: &'a str) -> SynthFuture<'a> {
        Box::pin(async move {
            assert!(!text.contains("收款"), "a voice with a bug");
            Ok(Audio {
                // A tenth of a second.
                bytes: common::wav::beep(16_000, 1600),
                format: AudioFormat::Wav,
            })
        })
    }
}

#[tokio::test(flavor = "multi_thread")]
async fn a_crashed_announcer_stops_the_daemon_with_an_error_and_keeps_the_payment() {
    // The only test in this binary: the subscriber is the process's.
    let sessions = OpenSessions::default();
    tracing_subscriber::registry().with(sessions.clone()).init();
    let sim = Simulator::start(SimConfig {
        auto_login: Some(Duration::from_millis(50)),
        ..SimConfig::for_tests()
    })
    .await
    .unwrap();
    let dir = tempfile::tempdir().unwrap();
    let config = common::daemon::config_for(&sim);
    let daemon = common::daemon::start(
        config,
        dir.path(),
        Box::new(PanickingVoice),
        NullOutput::default(),
    );
    assert!(
        sim.wait_for_requests(Endpoint::SyncCheck, 1, Duration::from_secs(15))
            .await
    );
    assert_eq!(sessions.count(), 1, "the session syncs");
    let id = sim.pay(1250);
    let result = tokio::time::timeout(Duration::from_secs(15), daemon.task)
        .await
        .expect("the daemon stops by itself")
        .unwrap();
    assert!(
        matches!(result, Err(DaemonError::AnnouncerCrashed(_))),
        "{result:?}"
    );
    // The session task ended before `run` returned (it was awaited, not left behind), and
    // asks WeChat for nothing more.
    assert_eq!(sessions.count(), 0, "the session task is still running");
    // The simulator holds a long-poll 200 ms: a live session would poll ten times in this
    // window. One more may be a poll cut short at shutdown, answered after the fact.
    let polls = sim.requests_to(Endpoint::SyncCheck).len();
    tokio::time::sleep(Duration::from_secs(2)).await;
    assert!(
        sim.requests_to(Endpoint::SyncCheck).len() <= polls + 1,
        "the session went on polling after the daemon stopped"
    );
    let ledger = Ledger::open(&daemon.paths.ledger_db()).unwrap();
    let pending = ledger.unannounced().unwrap();
    assert_eq!(pending.len(), 1, "recorded, kept for the restart");
    assert_eq!(pending[0].msg_id, id);
}
