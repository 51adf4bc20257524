//! Something that can fail over and over (a heartbeat every 30 s, an acknowledgement per
//! message in a burst): logged when it starts failing and when it works again, never once
//! per try, so that a night of a receiver being down is two lines in the journal.

/// A run of failures of one thing.
#[derive(Debug, Default)]
pub struct Failing {
    run: u64,
}

impl Failing {
    /// Notes a failure; `true` when it starts a run, i.e. when the caller logs it. The rest
    /// of the run belongs in the debug log.
    pub fn failed(&mut self) -> bool {
        self.run += 1;
        self.run == 1
    }

    /// Notes a success; the length of the run of failures it ends, if any, for the one
    /// line that says it works again.
    pub fn worked(&mut self) -> Option<u64> {
        (self.run > 0).then(|| std::mem::take(&mut self.run))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_run_is_told_at_its_start_and_at_its_end() {
        let mut f = Failing::default();
        assert_eq!(f.worked(), None);
        assert!(f.failed());
        assert!(!f.failed());
        assert!(!f.failed());
        assert_eq!(f.worked(), Some(3));
        assert_eq!(f.worked(), None);
        assert!(f.failed());
    }
}
