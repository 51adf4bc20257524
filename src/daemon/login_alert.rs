//! When to say out loud that WeChat needs a new scan.
//!
//! Once per lost session, at once; then a reminder at most every [`REMIND_EVERY`] while
//! it stays lost (QR codes expire and are replaced every few minutes: each is not worth a
//! sentence). A session counts as back only once it has stayed up for [`BACK_AFTER`]: a
//! server that ends every session right after login would otherwise have the speaker
//! repeat the alert at every cycle, drowning the payments out.

use std::time::Duration;

use tokio::time::Instant;

/// The least time between two spoken login alerts while the session stays lost.
pub const REMIND_EVERY: Duration = Duration::from_secs(5 * 60);

/// How long a login must last before the next lost session is a new one, alerted at once.
pub const BACK_AFTER: Duration = Duration::from_secs(5 * 60);

/// What the daemon remembers of logins, for the alert.
#[derive(Debug, Default)]
pub struct LoginAlerts {
    /// When the last alert was spoken.
    spoken_at: Option<Instant>,
    /// When the current (or last) login began, until its end is seen.
    logged_in_at: Option<Instant>,
    /// The last login lasted [`BACK_AFTER`] or more: the next QR code starts a new episode.
    was_back: bool,
}

impl LoginAlerts {
    /// A login (or a resumed session) began.
    pub fn logged_in(&mut self, now: Instant) {
        self.logged_in_at = Some(now);
    }

    /// The server ended the session.
    pub fn logged_out(&mut self, now: Instant) {
        if let Some(began) = self.logged_in_at.take() {
            self.was_back = now.saturating_duration_since(began) >= BACK_AFTER;
        }
    }

    /// A QR code waits for a scan: whether to say so now.
    pub fn should_speak(&mut self, now: Instant) -> bool {
        // A QR code while "logged in" means the end was not reported: judge it as one.
        self.logged_out(now);
        let due = self
            .spoken_at
            .is_none_or(|at| now.saturating_duration_since(at) >= REMIND_EVERY);
        let speak = self.was_back || due;
        if speak {
            self.spoken_at = Some(now);
            self.was_back = false;
        }
        speak
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    const SECOND: Duration = Duration::from_secs(1);

    #[test]
    fn the_first_qr_code_is_announced_and_its_replacements_only_every_few_minutes() {
        let t0 = Instant::now();
        let mut alerts = LoginAlerts::default();
        assert!(alerts.should_speak(t0));
        // QR codes expire and come anew while nobody scans.
        assert!(!alerts.should_speak(t0 + 60 * SECOND));
        assert!(!alerts.should_speak(t0 + 4 * 60 * SECOND));
        assert!(alerts.should_speak(t0 + REMIND_EVERY), "a reminder");
        assert!(!alerts.should_speak(t0 + REMIND_EVERY + 60 * SECOND));
    }

    #[test]
    fn a_flapping_session_is_one_lost_session() {
        let t0 = Instant::now();
        let mut alerts = LoginAlerts::default();
        let mut spoken = 0;
        // A login ended 200 ms later, a QR code, again, for ten minutes.
        let mut t = t0;
        while t < t0 + 10 * 60 * SECOND {
            spoken += usize::from(alerts.should_speak(t));
            alerts.logged_in(t + SECOND / 10);
            alerts.logged_out(t + SECOND / 5);
            t += SECOND / 4;
        }
        assert_eq!(spoken, 2, "once, and one reminder after five minutes");
    }

    #[test]
    fn a_session_that_stayed_up_is_alerted_at_once_when_lost() {
        let t0 = Instant::now();
        let mut alerts = LoginAlerts::default();
        assert!(alerts.should_speak(t0));
        alerts.logged_in(t0 + SECOND);
        alerts.logged_out(t0 + SECOND + BACK_AFTER);
        assert!(
            alerts.should_speak(t0 + 2 * SECOND + BACK_AFTER),
            "a new lost session"
        );
        // Came back briefly, lost again within a minute: the same episode.
        alerts.logged_in(t0 + 3 * SECOND + BACK_AFTER);
        alerts.logged_out(t0 + 30 * SECOND + BACK_AFTER);
        assert!(!alerts.should_speak(t0 + 31 * SECOND + BACK_AFTER));
    }

    #[test]
    fn a_qr_code_after_a_long_login_without_a_logout_event_is_a_new_episode() {
        let t0 = Instant::now();
        let mut alerts = LoginAlerts::default();
        assert!(alerts.should_speak(t0));
        alerts.logged_in(t0 + SECOND);
        // A restart of the session task's login without LoggedOut (e.g. resume refused).
        assert!(alerts.should_speak(t0 + 2 * SECOND + BACK_AFTER));
    }
}
