//! Exponential backoff with jitter, for every retry loop in paysay (the WeChat session, the
//! announcer, the outbox, MQTT): trouble is retried for as long as it lasts, but never in a
//! busy loop and never all clients in step.

use std::time::Duration;

use rand::Rng;

#[derive(Debug, Clone)]
pub struct Backoff {
    min: Duration,
    max: Duration,
    attempt: u32,
}

impl Backoff {
    pub fn new(min: Duration, max: Duration) -> Backoff {
        Backoff {
            min,
            max: max.max(min),
            attempt: 0,
        }
    }

    /// The next wait: `min · 2^attempt`, capped at `max`, then scaled by a random factor in
    /// [0.5, 1.0] so that it never drops below half the nominal step.
    pub fn next_delay(&mut self) -> Duration {
        let nominal = self
            .min
            .saturating_mul(1u32 << self.attempt.min(20))
            .min(self.max);
        self.attempt = self.attempt.saturating_add(1);
        nominal.mul_f64(rand::rng().random_range(0.5..=1.0))
    }

    pub fn reset(&mut self) {
        self.attempt = 0;
    }

    /// The longest wait it gives.
    pub fn max(&self) -> Duration {
        self.max
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn grows_then_caps_and_resets() {
        let mut b = Backoff::new(Duration::from_millis(100), Duration::from_secs(2));
        let first = b.next_delay();
        assert!(first >= Duration::from_millis(50) && first <= Duration::from_millis(100));
        for _ in 0..30 {
            let d = b.next_delay();
            assert!(d <= Duration::from_secs(2), "{d:?}");
            assert!(d >= Duration::from_millis(50), "never a busy loop: {d:?}");
        }
        let late = b.next_delay();
        assert!(
            late >= Duration::from_secs(1),
            "capped step stays large: {late:?}"
        );
        b.reset();
        assert!(b.next_delay() <= Duration::from_millis(100));
    }
}
