//! Texts to the shop owner in WeChat (`[notify]`): the day's summary at a set local time,
//! and "back online" after a re-login, so the owner knows without walking to the computer.
//!
//! Sending from a web client may raise the risk of a ban, so it stays sparse: at most one
//! try a minute, `max_per_day` tries a day, and after WeChat refuses for sending too much
//! (1204, 1205) nothing is tried for minutes, longer each time. Nothing is retried at once.
//!
//! The supervisor tells this task of logins and logouts; the session task sends (it owns
//! the session) and answers how it went. Times of day are read from a wall clock the
//! daemon passes in, so a test can run it on tokio's paused clock.

use std::collections::VecDeque;
use std::sync::Arc;
use std::time::Duration;

use time::{Date, OffsetDateTime, UtcOffset};
use tokio::sync::{mpsc, oneshot};
use tokio::time::Instant;
use tokio_util::sync::CancellationToken;

use crate::config::NotifyConfig;
use crate::ledger::LedgerHandle;
use crate::ledger::{Entry, reconcile, report};
use crate::money::Yuan;
use crate::session::{ErrorKind, Outgoing, SessionError};

/// Unix seconds now: the wall clock, or a test's.
pub type WallClock = Arc<dyn Fn() -> i64 + Send + Sync>;

/// The wall clock.
pub fn system_clock() -> WallClock {
    Arc::new(crate::now_unix)
}

/// The least time between two tries.
pub const MIN_INTERVAL: Duration = Duration::from_secs(60);
/// The first wait after WeChat refused for sending too much; doubles up to
/// [`MAX_REFUSAL_BACKOFF`].
pub const REFUSAL_BACKOFF: Duration = Duration::from_secs(10 * 60);
pub const MAX_REFUSAL_BACKOFF: Duration = Duration::from_secs(2 * 3600);
/// How long a text may wait for the session to send it (it sends between long polls).
const REPLY_TIMEOUT: Duration = Duration::from_secs(120);
/// The longest nap before the wall clock is read again (it may jump: suspend, NTP).
const MAX_NAP: Duration = Duration::from_secs(300);
/// Texts waiting at most; older ones give way.
const MAX_WAITING: usize = 4;
/// Failed tries (network, server errors) before a text is given up.
const MAX_TRIES: u32 = 3;

/// What the supervisor tells this task.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum OwnerEvent {
    LoggedIn,
    /// The session ended, or a QR code waits for a scan.
    Away,
}

/// A text waiting to be sent.
#[derive(Debug)]
struct Waiting {
    text: String,
    tries: u32,
}

/// When the next try may be: one a minute, a daily cap, and backoff after a refusal.
#[derive(Debug)]
struct Pacer {
    max_per_day: u64,
    last_try: Option<Instant>,
    refused_until: Option<Instant>,
    refusal_backoff: Duration,
    /// Tries made on this local day.
    day: Option<(Date, u64)>,
}

impl Pacer {
    fn new(max_per_day: u64) -> Pacer {
        Pacer {
            max_per_day,
            last_try: None,
            refused_until: None,
            refusal_backoff: REFUSAL_BACKOFF,
            day: None,
        }
    }

    fn ready_at(&self) -> Instant {
        let after_last = self.last_try.map(|t| t + MIN_INTERVAL);
        [after_last, self.refused_until]
            .into_iter()
            .flatten()
            .max()
            .unwrap_or_else(Instant::now)
    }

    fn may_try(&self, today: Date) -> bool {
        match self.day {
            Some((day, tries)) if day == today => tries < self.max_per_day,
            _ => true,
        }
    }

    fn tried(&mut self, now: Instant, today: Date) {
        self.last_try = Some(now);
        self.day = match self.day {
            Some((day, tries)) if day == today => Some((day, tries + 1)),
            _ => Some((today, 1)),
        };
    }

    fn sent(&mut self) {
        self.refusal_backoff = REFUSAL_BACKOFF;
    }

    /// WeChat said "too much": wait, longer each time in a row. Returns the wait.
    fn refused(&mut self, now: Instant) -> Duration {
        let wait = self.refusal_backoff;
        self.refused_until = Some(now + wait);
        self.refusal_backoff = (wait * 2).min(MAX_REFUSAL_BACKOFF);
        wait
    }
}

/// The task that sends the owner's texts.
pub struct OwnerNotifier {
    pub config: NotifyConfig,
    pub outgoing: mpsc::Sender<Outgoing>,
    pub ledger: LedgerHandle,
    pub offset: UtcOffset,
    pub clock: WallClock,
    pub events: mpsc::UnboundedReceiver<OwnerEvent>,
    pub shutdown: CancellationToken,
}

/// What the task remembers between events.
struct State {
    waiting: VecDeque<Waiting>,
    pacer: Pacer,
    logged_in: bool,
    /// Since when paysay has been away (unix seconds), after it had been logged in.
    away_since: Option<i64>,
    was_logged_in: bool,
    /// When the next summary is due (unix seconds).
    next_summary: Option<i64>,
}

impl OwnerNotifier {
    pub async fn run(mut self) {
        let mut state = State {
            waiting: VecDeque::new(),
            pacer: Pacer::new(self.config.max_per_day),
            logged_in: false,
            away_since: None,
            was_logged_in: false,
            next_summary: self.summary_after((self.clock)()),
        };
        loop {
            let now = (self.clock)();
            let summary_nap = state
                .next_summary
                .map(|at| Duration::from_secs(u64::try_from(at - now).unwrap_or(0)).min(MAX_NAP));
            let send_at =
                (state.logged_in && !state.waiting.is_empty()).then(|| state.pacer.ready_at());
            tokio::select! {
                _ = self.shutdown.cancelled() => return,
                // Logins and logouts; the supervisor gone means the daemon is stopping.
                event = self.events.recv() => match event {
                    Some(event) => self.on_event(&mut state, event),
                    None => return,
                },
                // The summary's time of day (or a nap's end, to read the clock again).
                _ = nap(summary_nap) => self.summary_if_due(&mut state).await,
                // The next text may go.
                _ = wake_at(send_at) => self.try_first(&mut state).await,
            }
        }
    }

    fn on_event(&self, state: &mut State, event: OwnerEvent) {
        match event {
            OwnerEvent::Away => {
                state.logged_in = false;
                if state.was_logged_in && state.away_since.is_none() {
                    state.away_since = Some((self.clock)());
                }
            }
            OwnerEvent::LoggedIn => {
                state.logged_in = true;
                state.was_logged_in = true;
                if let Some(since) = state.away_since.take()
                    && self.config.back_online
                {
                    let text = back_online_text((self.clock)() - since, since, self.offset);
                    queue(state, text);
                }
            }
        }
    }

    async fn summary_if_due(&self, state: &mut State) {
        let Some(due) = state.next_summary else {
            return;
        };
        if (self.clock)() < due {
            return;
        }
        state.next_summary = self.summary_after(due);
        let offset = self.offset;
        let day = reconcile::local_date(due, &|_| offset);
        let (from, to) = report::day_range(day, day, &|_| offset);
        match self.ledger.read(move |l| l.entries(from, to)).await {
            Ok(entries) => {
                let text = summary_text(&entries, offset);
                tracing::info!(summary = %text, "the day's summary goes to the owner in WeChat");
                queue(state, text);
            }
            Err(e) => tracing::error!(error = %e, "cannot read the ledger for the day's summary"),
        }
    }

    /// The first summary time strictly after `unix`.
    fn summary_after(&self, unix: i64) -> Option<i64> {
        let at = self.config.summary_at()?;
        let offset = self.offset;
        let today = reconcile::local_date(unix, &|_| offset);
        [Some(today), today.next_day()]
            .into_iter()
            .flatten()
            .map(|day| day.with_time(at).assume_offset(offset).unix_timestamp())
            .find(|&t| t > unix)
    }

    /// Tries the oldest waiting text, once.
    async fn try_first(&self, state: &mut State) {
        let today = reconcile::local_date((self.clock)(), &|_| self.offset);
        if !state.pacer.may_try(today) {
            tracing::warn!(
                dropped = state.waiting.len(),
                max_per_day = self.config.max_per_day,
                "[notify] max_per_day reached: no more texts today"
            );
            state.waiting.clear();
            return;
        }
        let Some(first) = state.waiting.front_mut() else {
            return;
        };
        state.pacer.tried(Instant::now(), today);
        match self.send(&first.text).await {
            Ok(()) => {
                tracing::info!("text sent to the owner in WeChat");
                state.pacer.sent();
                state.waiting.pop_front();
            }
            Err(SendFailure::Refused(e)) => {
                let wait = state.pacer.refused(Instant::now());
                tracing::warn!(error = %crate::text::Escaped(&e), retry_in_secs = wait.as_secs(), "WeChat refused the text; waiting before the next try");
            }
            Err(SendFailure::Stopped) => {}
            Err(SendFailure::Other(e)) if e.kind() == ErrorKind::Fatal => {
                tracing::error!(error = %crate::text::Escaped(&e), "the text cannot be sent; dropped");
                state.waiting.pop_front();
            }
            Err(SendFailure::Other(e)) if e.kind() == ErrorKind::LoggedOut => {
                tracing::warn!(error = %crate::text::Escaped(&e), "the text waits for the next login");
            }
            Err(SendFailure::Other(e)) => {
                first.tries += 1;
                tracing::warn!(error = %crate::text::Escaped(&e), tries = first.tries, "sending the text failed");
                if first.tries >= MAX_TRIES {
                    tracing::error!("the text was given up after {MAX_TRIES} tries");
                    state.waiting.pop_front();
                }
            }
        }
    }

    /// Hands the text to the session and waits for its answer.
    async fn send(&self, text: &str) -> Result<(), SendFailure> {
        let (reply, answer) = oneshot::channel();
        let out = Outgoing {
            to: self.config.to.clone(),
            text: text.to_string(),
            reply,
        };
        if self.outgoing.try_send(out).is_err() {
            return Err(SendFailure::Stopped);
        }
        let answered = tokio::select! {
            _ = self.shutdown.cancelled() => return Err(SendFailure::Stopped),
            a = tokio::time::timeout(REPLY_TIMEOUT, answer) => a,
        };
        match answered {
            Ok(Ok(Ok(()))) => Ok(()),
            Ok(Ok(Err(e @ SessionError::SendRefused { .. }))) => Err(SendFailure::Refused(e)),
            Ok(Ok(Err(e))) => Err(SendFailure::Other(e)),
            // Not sent (the session stopped, or is busy logging in): the receiver is
            // dropped with this future, so the session will not send it later either.
            Ok(Err(_)) | Err(_) => {
                tracing::warn!("the session did not take the text in time; trying later");
                Err(SendFailure::Stopped)
            }
        }
    }
}

enum SendFailure {
    /// 1204/1205: sending too much.
    Refused(SessionError),
    /// Not sent; no answer from the session.
    Stopped,
    Other(SessionError),
}

fn queue(state: &mut State, text: String) {
    if state.waiting.len() >= MAX_WAITING {
        tracing::warn!("too many texts waiting for WeChat; the oldest is dropped");
        state.waiting.pop_front();
    }
    state.waiting.push_back(Waiting { text, tries: 0 });
}

async fn nap(d: Option<Duration>) {
    match d {
        Some(d) => tokio::time::sleep(d).await,
        None => std::future::pending().await,
    }
}

async fn wake_at(at: Option<Instant>) {
    match at {
        Some(at) => tokio::time::sleep_until(at).await,
        None => std::future::pending().await,
    }
}

/// `今日收款 12 笔，共计 ￥1,234.50（二维码收款 10 笔 ￥1,034.50，转账 2 笔 ￥200.00）`, and a second
/// line when WeChat counted payments the ledger lacks.
pub fn summary_text(entries: &[Entry], offset: UtcOffset) -> String {
    let totals = report::DayTotals::of(entries.iter().map(|e| &e.payment));
    let mut text = format!(
        "今日收款 {} 笔，共计 ￥{}",
        totals.all.count,
        grouped_yuan(totals.all.total_fen)
    );
    let parts: Vec<String> = totals
        .by_kind
        .iter()
        .map(|(kind, tally)| {
            format!(
                "{} {} 笔 ￥{}",
                kind.label_zh(),
                tally.count,
                grouped_yuan(tally.total_fen)
            )
        })
        .collect();
    if !parts.is_empty() {
        text.push_str(&format!("（{}）", parts.join("，")));
    }
    let gaps = reconcile::gaps(entries, &|_| offset);
    if !gaps.is_empty() {
        let (missed, fen) = reconcile::missing(&gaps);
        text.push_str(&format!(
            "\n微信记录的收款比账本多 {missed} 笔，￥{}，请在手机上核对",
            grouped_yuan(fen)
        ));
    }
    text
}

/// `1,234.50`: yuan with thousands separators.
pub fn grouped_yuan(fen: u64) -> String {
    let plain = Yuan(fen).to_string();
    let (int, frac) = plain.split_once('.').unwrap_or((&plain, "00"));
    let mut grouped = String::new();
    for (i, c) in int.chars().enumerate() {
        if i > 0 && (int.len() - i) % 3 == 0 {
            grouped.push(',');
        }
        grouped.push(c);
    }
    format!("{grouped}.{frac}")
}

/// `paysay 已重新登录微信，离开了 2 小时 5 分钟（14:03 起），这段时间的收款请在手机上核对`.
pub fn back_online_text(away_secs: i64, since: i64, offset: UtcOffset) -> String {
    let secs = away_secs.max(0);
    let (hours, minutes) = (secs / 3600, secs % 3600 / 60);
    let how_long = match (hours, minutes) {
        (0, 0) => "不到 1 分钟".to_string(),
        (0, m) => format!("{m} 分钟"),
        (h, 0) => format!("{h} 小时"),
        (h, m) => format!("{h} 小时 {m} 分钟"),
    };
    let from = OffsetDateTime::from_unix_timestamp(since)
        .map(|t| t.to_offset(offset))
        .map_or_else(
            |_| "?".to_string(),
            |t| format!("{:02}:{:02}", t.hour(), t.minute()),
        );
    format!("paysay 已重新登录微信，离开了 {how_long}（{from} 起），这段时间的收款请在手机上核对")
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::ledger::Ledger;
    use crate::payment::{Payment, PaymentKind};
    use std::sync::Mutex;
    use std::sync::atomic::{AtomicUsize, Ordering};

    #[test]
    fn yuan_is_grouped_by_thousands() {
        assert_eq!(grouped_yuan(123_450), "1,234.50");
        assert_eq!(grouped_yuan(5), "0.05");
        assert_eq!(grouped_yuan(10_000_000_000), "100,000,000.00");
        assert_eq!(grouped_yuan(99_999), "999.99");
    }

    fn entry(kind: PaymentKind, fen: u64, count: Option<u32>, total: Option<u64>) -> Entry {
        Entry {
            payment: Payment {
                msg_id: format!("m{fen}{count:?}"),
                amount_fen: fen,
                kind,
                payer: None,
                remark: None,
                daily_count: count,
                daily_total_fen: total,
                time: 1_714_528_800 + i64::from(count.unwrap_or(0)),
                account: "微信支付".into(),
                transfer_id: None,
                wallet: crate::payment::Wallet::WeChat,
                source: crate::payment::Source::Web,
            },
            detected_at: 0,
            announced_at: None,
            deliveries: Vec::new(),
        }
    }

    #[test]
    fn the_summary_counts_each_kind_and_the_gap() {
        let entries = [
            entry(PaymentKind::Collection, 100_000, Some(1), Some(100_000)),
            entry(PaymentKind::Collection, 3_450, Some(3), Some(104_700)),
            entry(PaymentKind::Transfer, 20_000, None, None),
        ];
        assert_eq!(
            summary_text(&entries, UtcOffset::UTC),
            "今日收款 3 笔，共计 ￥1,234.50（二维码收款 2 笔 ￥1,034.50，转账 1 笔 ￥200.00）\n微信记录的收款比账本多 1 笔，￥12.50，请在手机上核对"
        );
        assert_eq!(
            summary_text(&[], UtcOffset::UTC),
            "今日收款 0 笔，共计 ￥0.00"
        );
    }

    #[test]
    fn back_online_says_how_long() {
        let t = 1_714_528_800; // 02:00 UTC
        assert_eq!(
            back_online_text(2 * 3600 + 5 * 60 + 7, t, UtcOffset::UTC),
            "paysay 已重新登录微信，离开了 2 小时 5 分钟（02:00 起），这段时间的收款请在手机上核对"
        );
        assert!(back_online_text(30, t, UtcOffset::UTC).contains("不到 1 分钟"));
    }

    /// A stand-in for the session task: answers each text with `answer`, counts tries.
    fn fake_session(
        answer: impl Fn() -> Result<(), SessionError> + Send + 'static,
    ) -> (
        mpsc::Sender<Outgoing>,
        Arc<AtomicUsize>,
        Arc<Mutex<Vec<String>>>,
    ) {
        let (tx, mut rx) = crate::session::outgoing_channel();
        let tries = Arc::new(AtomicUsize::new(0));
        let texts = Arc::new(Mutex::new(Vec::new()));
        let (t, s) = (tries.clone(), texts.clone());
        tokio::spawn(async move {
            while let Some(out) = rx.recv().await {
                t.fetch_add(1, Ordering::SeqCst);
                let r = answer();
                if r.is_ok() {
                    s.lock().unwrap().push(out.text.clone());
                }
                let _ = out.reply.send(r);
            }
        });
        (tx, tries, texts)
    }

    struct Setup {
        events: mpsc::UnboundedSender<OwnerEvent>,
        shutdown: CancellationToken,
        task: tokio::task::JoinHandle<()>,
        _dir: tempfile::TempDir,
    }

    /// The notifier on tokio's (paused) clock, the wall clock starting at `start_unix`.
    fn start(config: NotifyConfig, outgoing: mpsc::Sender<Outgoing>, start_unix: i64) -> Setup {
        let dir = tempfile::tempdir().unwrap();
        let ledger = Ledger::open(&dir.path().join("ledger.sqlite3")).unwrap();
        let began = Instant::now();
        let clock: WallClock = Arc::new(move || start_unix + began.elapsed().as_secs() as i64);
        let (events, events_rx) = mpsc::unbounded_channel();
        let shutdown = CancellationToken::new();
        let notifier = OwnerNotifier {
            config,
            outgoing,
            ledger: LedgerHandle::new(ledger).unwrap(),
            offset: UtcOffset::UTC,
            clock,
            events: events_rx,
            shutdown: shutdown.clone(),
        };
        Setup {
            events,
            shutdown,
            task: tokio::spawn(notifier.run()),
            _dir: dir,
        }
    }

    /// 2024-05-01 21:00 UTC.
    const NINE_PM: i64 = 1_714_597_200;

    #[tokio::test(start_paused = true)]
    async fn refusals_back_off_for_minutes_without_a_loop() {
        let refused = || {
            Err(SessionError::SendRefused {
                host: "wx2.qq.com".into(),
                ret: 1205,
                err_msg: String::new(),
            })
        };
        let (outgoing, tries, _) = fake_session(refused);
        let config = NotifyConfig {
            daily_summary: "21:30".into(),
            ..NotifyConfig::default()
        };
        let s = start(config, outgoing, NINE_PM);
        s.events.send(OwnerEvent::LoggedIn).unwrap();
        tokio::time::sleep(Duration::from_secs(31 * 60)).await;
        assert_eq!(tries.load(Ordering::SeqCst), 1, "one try at 21:30");
        tokio::time::sleep(REFUSAL_BACKOFF - Duration::from_secs(90)).await;
        assert_eq!(
            tries.load(Ordering::SeqCst),
            1,
            "nothing within the backoff"
        );
        // Backoffs of 10, 20, 40, 80, 120, 120 minutes: 6 more tries in 6½ hours at most.
        tokio::time::sleep(Duration::from_secs(6 * 3600 + 1800)).await;
        let n = tries.load(Ordering::SeqCst);
        assert!((2..=7).contains(&n), "{n} tries in seven hours");
        s.shutdown.cancel();
        s.task.await.unwrap();
    }

    #[tokio::test(start_paused = true)]
    async fn texts_go_at_most_one_a_minute_and_stop_at_the_daily_cap() {
        let (outgoing, tries, texts) = fake_session(|| Ok(()));
        let config = NotifyConfig {
            daily_summary: String::new(),
            max_per_day: 2,
            ..NotifyConfig::default()
        };
        let s = start(config, outgoing, NINE_PM);
        s.events.send(OwnerEvent::LoggedIn).unwrap();
        // Three re-logins in a row: three back-online texts.
        for _ in 0..3 {
            s.events.send(OwnerEvent::Away).unwrap();
            tokio::time::sleep(Duration::from_secs(5)).await;
            s.events.send(OwnerEvent::LoggedIn).unwrap();
        }
        tokio::time::sleep(Duration::from_secs(30)).await;
        assert_eq!(tries.load(Ordering::SeqCst), 1, "one a minute");
        tokio::time::sleep(Duration::from_secs(600)).await;
        assert_eq!(tries.load(Ordering::SeqCst), 2, "the daily cap");
        let texts = texts.lock().unwrap().clone();
        assert!(texts[0].contains("离开了 不到 1 分钟"), "{texts:?}");
        s.shutdown.cancel();
        s.task.await.unwrap();
    }
}
