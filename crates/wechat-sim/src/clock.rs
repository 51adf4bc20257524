//! The simulated server's clock: what `CreateTime`, `SystemTime`, the scan time and the
//! day of the 汇总 running total read. By default it is the wall clock; a soak runs it from
//! a chosen start, faster than real time, and jumps it forward, so a week of shop traffic
//! gets a week of realistic times (and the day's running total restarts at simulated
//! midnight, China time) in a few minutes.

use std::time::Instant;

/// A simulated clock for [`SimConfig::clock`](super::SimConfig::clock).
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct SimClock {
    /// Unix seconds the clock reads when the simulator starts.
    pub start_unix: i64,
    /// Simulated seconds per real second: 1.0 runs at real speed, 0.0 stands still until
    /// [`Simulator::advance_clock`](super::Simulator::advance_clock) moves it. Negative or
    /// NaN counts as 0.0: the clock never runs backwards.
    pub speed: f64,
}

/// The running clock: a base (wall clock or a [`SimClock`]) plus the jumps made so far.
#[derive(Debug)]
pub(crate) struct Clock {
    base: Option<(SimClock, Instant)>,
    jumped: i64,
}

impl Clock {
    pub fn new(config: Option<SimClock>) -> Clock {
        Clock {
            base: config.map(|c| (c, Instant::now())),
            jumped: 0,
        }
    }

    /// Unix seconds now, on this clock.
    pub fn now(&self) -> i64 {
        let base = match &self.base {
            None => time::OffsetDateTime::now_utc().unix_timestamp(),
            Some((clock, started)) => {
                // `max` also turns NaN into 0.0; `as` saturates, so no overflow either way.
                let ran = started.elapsed().as_secs_f64() * clock.speed.max(0.0);
                clock.start_unix.saturating_add(ran as i64)
            }
        };
        base.saturating_add(self.jumped)
    }

    /// Moves the clock forward by `secs`.
    pub fn advance(&mut self, secs: u64) {
        let secs = i64::try_from(secs).unwrap_or(i64::MAX);
        self.jumped = self.jumped.saturating_add(secs);
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_still_clock_moves_only_when_advanced() {
        let mut clock = Clock::new(Some(SimClock {
            start_unix: 1_700_000_000,
            speed: 0.0,
        }));
        assert_eq!(clock.now(), 1_700_000_000);
        clock.advance(86_400);
        assert_eq!(clock.now(), 1_700_086_400);
    }

    #[test]
    fn odd_speeds_never_run_backwards_or_overflow() {
        for speed in [f64::NAN, -5.0, f64::INFINITY] {
            let mut clock = Clock::new(Some(SimClock {
                start_unix: i64::MAX - 10,
                speed,
            }));
            clock.advance(u64::MAX);
            assert!(clock.now() >= i64::MAX - 10, "{speed}");
        }
    }

    #[test]
    fn the_default_is_the_wall_clock() {
        let wall = time::OffsetDateTime::now_utc().unix_timestamp();
        assert!((Clock::new(None).now() - wall).abs() <= 1);
    }
}
