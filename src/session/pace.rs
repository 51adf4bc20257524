//! Pacing: the session's loops never spin, whatever the server answers.
//!
//! Against the real server a client that sends thousands of requests a second gets the
//! account flagged, and a server that misbehaves (a synccheck that keeps saying "new
//! messages" while webwxsync brings none, a ContinueFlag that never ends, a session ended
//! right after every login) would otherwise drive paysay into exactly that. So:
//! - [`Floor`]: the least time between two requests of one kind;
//! - [`IdleRounds`]: rounds that bring nothing although the server said something waits back
//!   off exponentially, and the episode is logged once, with what the server did;
//! - [`Relogins`]: a session that ended soon after its login makes the next login wait,
//!   longer each time in a row.

use std::time::Duration;

use tokio::time::Instant;

use crate::backoff::Backoff;
use crate::config::WechatConfig;

/// The least time between the starts of two requests of one kind.
#[derive(Debug)]
pub struct Floor {
    interval: Duration,
    last: Option<Instant>,
}

impl Floor {
    pub fn new(interval: Duration) -> Floor {
        Floor {
            interval,
            last: None,
        }
    }

    /// Waits until `interval` has passed since the last request of this kind began, and
    /// counts this one as beginning now. Cancelled mid-wait, nothing is counted.
    pub async fn wait(&mut self) {
        if let Some(last) = self.last {
            tokio::time::sleep_until(last + self.interval).await;
        }
        self.last = Some(Instant::now());
    }
}

/// What a misbehaving server does, in the words of the one log line it gets.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Misbehaviour {
    /// synccheck answered this selector, then webwxsync brought nothing.
    EmptyRounds { selector: i64 },
    /// webwxsync set ContinueFlag on a page that brought nothing.
    EmptyContinue,
}

impl std::fmt::Display for Misbehaviour {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            Misbehaviour::EmptyRounds { selector } => write!(
                f,
                "synccheck keeps saying there are new messages (selector {selector}) but webwxsync brings none"
            ),
            Misbehaviour::EmptyContinue => f.write_str(
                "webwxsync keeps saying more is waiting (ContinueFlag 1) but brings nothing",
            ),
        }
    }
}

/// Empty rounds in a row before the episode is logged: one now and then is the server
/// reporting something paysay does not read (a profile change, a chat opened on the phone).
const LOG_AFTER: u32 = 3;

/// Rounds that brought nothing although the server said something was waiting.
#[derive(Debug)]
pub struct IdleRounds {
    backoff: Backoff,
    in_a_row: u32,
    /// The next round starts no earlier than this.
    resume_at: Option<Instant>,
    /// The episode has been logged.
    logged: bool,
}

impl IdleRounds {
    pub fn from_config(config: &WechatConfig) -> IdleRounds {
        IdleRounds {
            backoff: super::backoff(config),
            in_a_row: 0,
            resume_at: None,
            logged: false,
        }
    }

    /// Waits out the backoff of the empty rounds before, if any. A deadline, so a round
    /// cancelled mid-wait (a shutdown) does not shorten it.
    pub async fn wait(&self) {
        if let Some(at) = self.resume_at {
            tokio::time::sleep_until(at).await;
        }
    }

    /// A round brought nothing: the next waits longer (returned). Logged once an episode.
    pub fn nothing(&mut self, what: Misbehaviour) -> Duration {
        let delay = self.backoff.next_delay();
        self.resume_at = Some(Instant::now() + delay);
        self.in_a_row = self.in_a_row.saturating_add(1);
        if self.in_a_row >= LOG_AFTER && !self.logged {
            self.logged = true;
            tracing::warn!(
                rounds = self.in_a_row,
                "WeChat misbehaves: {what}; slowing down (next round in {} ms, at most {} s apart) until messages arrive",
                delay.as_millis(),
                self.backoff.max().as_secs()
            );
        }
        delay
    }

    /// A round brought messages: back to full speed.
    pub fn something(&mut self) {
        if self.logged {
            tracing::info!(
                empty_rounds = self.in_a_row,
                "WeChat delivers messages again; back to full speed"
            );
        }
        self.backoff.reset();
        self.in_a_row = 0;
        self.resume_at = None;
        self.logged = false;
    }
}

/// A session that lived less than this ended "right after login": the next login waits.
/// The daily forced logout comes after hours, so it never slows a login down.
pub const SHORT_SESSION: Duration = Duration::from_secs(300);

/// Logins after sessions that ended soon after they began.
#[derive(Debug)]
pub struct Relogins {
    backoff: Backoff,
    /// Short sessions in a row.
    short_in_a_row: u32,
}

impl Relogins {
    pub fn from_config(config: &WechatConfig) -> Relogins {
        Relogins {
            backoff: Backoff::new(
                config.min_backoff(),
                Duration::from_secs(config.max_relogin_backoff_secs),
            ),
            short_in_a_row: 0,
        }
    }

    /// A session ended after `lived`: how long to wait before the next login. The first
    /// short session of an episode is logged with what happened; the rest at debug level.
    pub fn ended_after(&mut self, lived: Duration, retcode: i64) -> Option<Duration> {
        if lived >= SHORT_SESSION {
            self.backoff.reset();
            self.short_in_a_row = 0;
            return None;
        }
        let delay = self.backoff.next_delay();
        self.short_in_a_row = self.short_in_a_row.saturating_add(1);
        if self.short_in_a_row == 2 {
            tracing::warn!(
                retcode,
                lived_ms = lived.as_millis() as u64,
                "WeChat ends each session soon after login; logging in again after growing waits (at most {} s) until a session lasts {} min",
                self.backoff.max().as_secs(),
                SHORT_SESSION.as_secs() / 60
            );
        }
        Some(delay)
    }

    /// Whether this logout belongs to an episode already logged (its own line can be quiet).
    pub fn in_episode(&self) -> bool {
        self.short_in_a_row >= 2
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn config() -> WechatConfig {
        WechatConfig {
            min_backoff_ms: 100,
            max_backoff_secs: 2,
            max_relogin_backoff_secs: 10,
            ..WechatConfig::default()
        }
    }

    /// On tokio's paused clock: the waits are exact and take no real time.
    #[tokio::test(start_paused = true)]
    async fn the_floor_spaces_requests_of_one_kind() {
        let interval = Duration::from_millis(100);
        let mut floor = Floor::new(interval);
        let start = Instant::now();
        floor.wait().await;
        assert_eq!(start.elapsed(), Duration::ZERO, "the first request at once");
        for n in 1..=3 {
            floor.wait().await;
            assert_eq!(start.elapsed(), interval * n, "request {}", n + 1);
        }
        // A request that began long ago does not hold the next one back.
        tokio::time::sleep(interval * 5).await;
        let late = Instant::now();
        floor.wait().await;
        assert_eq!(late.elapsed(), Duration::ZERO);
    }

    #[test]
    fn empty_rounds_back_off_up_to_the_cap_and_messages_reset() {
        let mut idle = IdleRounds::from_config(&config());
        let waits: Vec<Duration> = (0..12)
            .map(|_| idle.nothing(Misbehaviour::EmptyRounds { selector: 2 }))
            .collect();
        assert!(waits[0] <= Duration::from_millis(100), "{waits:?}");
        assert!(
            waits.iter().all(|w| *w <= Duration::from_secs(2)),
            "{waits:?}"
        );
        assert!(
            waits[11] >= Duration::from_secs(1),
            "grew to the cap: {waits:?}"
        );
        assert!(
            idle.resume_at.is_some_and(|at| at > Instant::now()),
            "the next round waits"
        );
        idle.something();
        assert_eq!(idle.resume_at, None);
        let first = idle.nothing(Misbehaviour::EmptyContinue);
        assert!(
            first <= Duration::from_millis(100),
            "starts over: {first:?}"
        );
    }

    #[test]
    fn short_sessions_make_the_next_login_wait_longer_each_time() {
        let mut relogins = Relogins::from_config(&config());
        let quick = Duration::from_millis(50);
        let waits: Vec<Duration> = (0..10)
            .map(|_| relogins.ended_after(quick, 1101).unwrap())
            .collect();
        assert!(waits[0] <= Duration::from_millis(100), "{waits:?}");
        assert!(waits[9] >= Duration::from_secs(5), "grew: {waits:?}");
        assert!(
            waits.iter().all(|w| *w <= Duration::from_secs(10)),
            "{waits:?}"
        );
        assert!(relogins.in_episode());
        assert_eq!(relogins.ended_after(SHORT_SESSION, 1101), None);
        assert!(!relogins.in_episode());
        let again = relogins.ended_after(quick, 1101).unwrap();
        assert!(again <= Duration::from_millis(100), "reset: {again:?}");
    }
}
