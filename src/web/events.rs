//! `/events`: server-sent events, so the page shows a payment the moment it is
//! recorded without polling.

use std::collections::HashSet;
use std::convert::Infallible;
use std::sync::Arc;
use std::time::Duration;

use axum::extract::State;
use axum::response::sse::{Event, KeepAlive, Sse};
use axum::response::{IntoResponse, Response};
use futures_util::Stream;
use serde::Serialize;
use tokio::sync::broadcast::error::RecvError;

use super::views::{PaymentView, Today};
use super::{App, ledger_failed};
use crate::live::Status;
use crate::payment::Payment;

/// `/events`: `status` now and on each change, `today` on connect (and after falling
/// behind), `payment` for each payment recorded after that. Subscribed before the day is
/// read, so no payment falls between the two; one in both is sent once.
pub(super) async fn subscribe(State(app): State<Arc<App>>) -> Response {
    let status = app.live.watch_status();
    let payments = app.live.subscribe_payments();
    let today = match app.today().await {
        Ok(today) => today,
        Err(e) => return ledger_failed(&e),
    };
    let stream = EventStream {
        app,
        status,
        payments,
        seen: today.payments.iter().map(|p| p.msg_id.clone()).collect(),
        queued: vec![today_event(&today)],
        status_sent: false,
    };
    Sse::new(stream.into_stream())
        .keep_alive(KeepAlive::new().interval(Duration::from_secs(15)))
        .into_response()
}

/// One connection's stream: what it has sent, and where it waits for more.
struct EventStream {
    app: Arc<App>,
    status: tokio::sync::watch::Receiver<Status>,
    payments: tokio::sync::broadcast::Receiver<Payment>,
    /// Today's payments already sent (in `today` or as `payment`).
    seen: HashSet<String>,
    /// Sent before anything else, first last.
    queued: Vec<Event>,
    status_sent: bool,
}

impl EventStream {
    fn into_stream(self) -> impl Stream<Item = Result<Event, Infallible>> {
        futures_util::stream::unfold(self, |mut s| async move {
            let event = s.next().await?;
            Some((Ok(event), s))
        })
    }

    /// The next event; `None` ends the stream (shutdown).
    async fn next(&mut self) -> Option<Event> {
        if !self.status_sent {
            self.status_sent = true;
            let status = self.status.borrow_and_update().clone();
            return Some(json_event("status", &status));
        }
        if let Some(event) = self.queued.pop() {
            return Some(event);
        }
        loop {
            tokio::select! {
                _ = self.app.shutdown.cancelled() => return None,
                changed = self.status.changed() => {
                    changed.ok()?;
                    let status = self.status.borrow_and_update().clone();
                    return Some(json_event("status", &status));
                }
                received = self.payments.recv() => match received {
                    Ok(payment) => {
                        if !self.seen.insert(payment.msg_id.clone()) {
                            continue;
                        }
                        return Some(json_event("payment", &PaymentView::new(&payment, self.app.offset)));
                    }
                    // Fell behind: the day again, whole.
                    Err(RecvError::Lagged(_)) => {
                        let today = self.app.today().await.ok()?;
                        self.seen = today.payments.iter().map(|p| p.msg_id.clone()).collect();
                        return Some(today_event(&today));
                    }
                    Err(RecvError::Closed) => return None,
                },
            }
        }
    }
}

fn today_event(today: &Today) -> Event {
    json_event("today", today)
}

fn json_event(name: &str, data: &impl Serialize) -> Event {
    // Plain structs of strings and numbers always serialize.
    let json = serde_json::to_string(data).unwrap_or_else(|_| "null".to_string());
    Event::default().event(name).data(json)
}
