//! The read-only endpoints: `/api/status`, `/api/today`, `/api/history`,
//! `/ledger.csv` and `/qr.png`. They read what the supervisor publishes in
//! [`Live`](crate::live::Live) and the page's own ledger connection; none writes.

use std::collections::BTreeMap;
use std::sync::Arc;

use axum::extract::{Query, State};
use axum::http::{StatusCode, header};
use axum::response::{IntoResponse, Response};
use serde::Deserialize;
use time::Date;

use super::views::{DayView, StatusView};
use super::{App, ledger_failed};
use crate::ledger::report::{self, CSV_HEADER, csv_row};
use crate::live::SessionState;
use crate::money::Yuan;

/// Days of history the page shows, and the most a request may ask for.
const HISTORY_DAYS: u32 = 30;
const HISTORY_DAYS_MAX: u32 = 366;

/// `/api/status`: the live status, each sink's deliveries, and the server's clock.
pub(super) async fn status(State(app): State<Arc<App>>) -> Response {
    let status = app.live.watch_status().borrow().clone();
    let sinks = app.sinks.clone();
    match app.read(move |l| l.sink_summary(&sinks)).await {
        Ok(sinks) => axum::Json(StatusView {
            status,
            sinks,
            now: crate::now_unix(),
        })
        .into_response(),
        Err(e) => ledger_failed(&e),
    }
}

/// `/api/today`: the same [`Today`](super::views::Today) the event stream starts with.
pub(super) async fn today(State(app): State<Arc<App>>) -> Response {
    match app.today().await {
        Ok(today) => axum::Json(today).into_response(),
        Err(e) => ledger_failed(&e),
    }
}

#[derive(Debug, Deserialize)]
pub(super) struct HistoryQuery {
    days: Option<u32>,
}

/// `/api/history`: every day of the span, those without payments at zero.
pub(super) async fn history(
    State(app): State<Arc<App>>,
    Query(q): Query<HistoryQuery>,
) -> Response {
    let days = q.days.unwrap_or(HISTORY_DAYS).clamp(1, HISTORY_DAYS_MAX);
    let until = app.today_date();
    let since = until
        .checked_sub(time::Duration::days(i64::from(days - 1)))
        .unwrap_or(until);
    let offset = app.offset;
    let (from, to) = report::day_range(since, until, &|_| offset);
    let totals = match app
        .read(move |l| l.daily_totals(from, to, offset.whole_seconds()))
        .await
    {
        Ok(totals) => totals,
        Err(e) => return ledger_failed(&e),
    };
    let by_day: BTreeMap<i64, (u64, u64)> = totals
        .iter()
        .map(|d| (d.day, (d.total_fen, d.count)))
        .collect();
    // Every day of the span, those without payments at zero, oldest first.
    let mut views = Vec::with_capacity(days as usize);
    let mut date = since;
    loop {
        let day = i64::from(date.to_julian_day() - UNIX_EPOCH_JULIAN_DAY);
        let (total_fen, count) = by_day.get(&day).copied().unwrap_or((0, 0));
        views.push(DayView {
            date: date.to_string(),
            total_fen,
            total_yuan: Yuan(total_fen).to_string(),
            count,
        });
        match date.next_day() {
            Some(next) if next <= until => date = next,
            _ => break,
        }
    }
    axum::Json(views).into_response()
}

/// 1970-01-01 as a Julian day, to turn the ledger's day numbers into dates.
const UNIX_EPOCH_JULIAN_DAY: i32 = 2_440_588;

#[derive(Debug, Deserialize)]
pub(super) struct CsvQuery {
    since: Option<String>,
    until: Option<String>,
}

fn parse_date(s: &str) -> Option<Date> {
    let format = time::macros::format_description!("[year]-[month]-[day]");
    Date::parse(s.trim(), &format).ok()
}

/// `/ledger.csv`: the payments of `since..=until`, local days.
pub(super) async fn csv(State(app): State<Arc<App>>, Query(q): Query<CsvQuery>) -> Response {
    let until = match q.until.as_deref() {
        None => app.today_date(),
        Some(s) => match parse_date(s) {
            Some(d) => d,
            None => return bad_date("until"),
        },
    };
    let since = match q.since.as_deref() {
        None => until
            .checked_sub(time::Duration::days(i64::from(HISTORY_DAYS - 1)))
            .unwrap_or(until),
        Some(s) => match parse_date(s) {
            Some(d) => d,
            None => return bad_date("since"),
        },
    };
    // The whole answer is built in memory: a span from the query is bounded like
    // /api/history's, so `since=0001-01-01` cannot ask for the whole ledger at once.
    let days = (until - since).whole_days() + 1;
    if !(1..=i64::from(HISTORY_DAYS_MAX)).contains(&days) {
        return (
            StatusCode::BAD_REQUEST,
            format!(
                "since must be on or before until, and at most {HISTORY_DAYS_MAX} days before it\n"
            ),
        )
            .into_response();
    }
    let offset = app.offset;
    let (from, to) = report::day_range(since, until, &|_| offset);
    let entries = match app.read(move |l| l.entries(from, to)).await {
        Ok(entries) => entries,
        Err(e) => return ledger_failed(&e),
    };
    let mut body = String::from(CSV_HEADER);
    body.push_str("\r\n");
    for entry in &entries {
        body.push_str(&csv_row(entry, &|_| offset));
        body.push_str("\r\n");
    }
    let disposition = format!("attachment; filename=\"paysay-{since}-{until}.csv\"");
    (
        [
            (header::CONTENT_TYPE, "text/csv; charset=utf-8".to_string()),
            (header::CONTENT_DISPOSITION, disposition),
        ],
        body,
    )
        .into_response()
}

fn bad_date(key: &str) -> Response {
    (
        StatusCode::BAD_REQUEST,
        format!("{key} must be a date like 2024-05-01\n"),
    )
        .into_response()
}

/// `/qr.png`: the login QR code while one waits to be scanned.
pub(super) async fn qr_png(State(app): State<Arc<App>>) -> Response {
    let url = match &app.live.watch_status().borrow().session {
        SessionState::WaitingForScan { url, .. } => url.clone(),
        _ => {
            return (
                StatusCode::NOT_FOUND,
                "no QR code is waiting to be scanned\n",
            )
                .into_response();
        }
    };
    match crate::session::qr::png(&url) {
        Ok(png) => ([(header::CONTENT_TYPE, "image/png")], png).into_response(),
        Err(e) => {
            tracing::error!(error = %e, "cannot draw the login QR code for the page");
            StatusCode::INTERNAL_SERVER_ERROR.into_response()
        }
    }
}
