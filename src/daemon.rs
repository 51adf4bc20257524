//! The whole pipeline in one place: session → messages → (payments → ledger → speech →
//! audio). One supervisor loop owns the session's events.

use tokio_util::sync::CancellationToken;

use crate::config::Config;
use crate::paths::Paths;
use crate::session::{self, Events, Incoming, SessionError, SessionEvent, SessionFiles};

/// Why the daemon stopped with an error.
#[derive(Debug, thiserror::Error)]
pub enum DaemonError {
    #[error(transparent)]
    Session(#[from] SessionError),
}

/// Runs until `shutdown` is cancelled or something a person must fix happens.
pub async fn run(
    config: Config,
    paths: Paths,
    shutdown: CancellationToken,
) -> Result<(), DaemonError> {
    let files = SessionFiles::from_paths(&paths);
    let (events, mut rx) = Events::channel();
    let wechat = config.wechat.clone();
    let session_shutdown = shutdown.clone();
    let mut session =
        tokio::spawn(async move { session::run(&wechat, &files, events, session_shutdown).await });
    loop {
        tokio::select! {
            // The session ended: on shutdown, or on an error a person must fix.
            ended = &mut session => {
                return match ended {
                    Ok(r) => r.map_err(DaemonError::from),
                    Err(join) => {
                        tracing::error!(error = %join, "the session task failed");
                        Ok(())
                    }
                };
            }
            Some(event) = rx.recv() => handle(event),
        }
    }
}

fn handle(event: SessionEvent) {
    match event {
        SessionEvent::Messages { batch, ack, .. } => {
            for incoming in &batch {
                log_message(incoming);
            }
            let _ = ack.send(());
        }
        SessionEvent::QrCode { path, .. } => {
            tracing::warn!(qr = %path.display(), "scan the QR code to log in");
        }
        SessionEvent::LoggedOut { retcode } => {
            tracing::error!(retcode, "logged out of WeChat; a new QR code follows");
        }
        other => tracing::debug!(event = ?other, "session event"),
    }
}

fn log_message(incoming: &Incoming) {
    let m = &incoming.message;
    let sender = incoming
        .sender
        .as_ref()
        .map_or(m.from_user_name.as_str(), |c| c.nick_name.as_str());
    let preview: String = m.content.chars().take(40).collect();
    tracing::info!(
        msg_type = m.msg_type,
        app_msg_type = m.app_msg_type,
        sender,
        preview,
        "message"
    );
}
