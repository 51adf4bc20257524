//! Random faults: the background noise of a real server (5xx after hours, connections that
//! drop, answers that never arrive). Each request draws from one seeded generator, so a run
//! that failed can be replayed with its seed; the faults drawn are the same kinds
//! [`Simulator::inject`](super::Simulator::inject) queues, answered by the same code.

use std::collections::HashMap;

use rand::rngs::StdRng;
use rand::{Rng, SeedableRng};

use super::{Endpoint, Fault};

/// The kinds drawn, equally often: what WeChat's servers and the network do to a client.
const KINDS: [fn() -> Fault; 5] = [
    || Fault::Status(503),
    || Fault::Status(500),
    || Fault::Drop,
    || Fault::Lost,
    || Fault::EmptyBody,
];

/// The generator and its rate.
#[derive(Debug)]
pub(crate) struct Chaos {
    rate: f64,
    rng: StdRng,
}

impl Chaos {
    /// `None` when the rate is zero (or not a number): no draws, no faults.
    pub fn new(rate: f64, seed: u64) -> Option<Chaos> {
        (rate > 0.0).then(|| Chaos {
            rate: rate.min(1.0),
            rng: StdRng::seed_from_u64(seed),
        })
    }

    /// A fault for this request, or none. The QR page stands in for the phone, not for
    /// WeChat's servers, so it is never hit.
    pub fn draw(&mut self, endpoint: Endpoint) -> Option<Fault> {
        if endpoint == Endpoint::QrPage || !self.rng.random_bool(self.rate) {
            return None;
        }
        let kind = KINDS[self.rng.random_range(0..KINDS.len())];
        Some(kind())
    }
}

/// How many requests the simulator answered and which faults it answered them with
/// (injected and random), for a soak's report.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct SimStats {
    /// Every request answered, faulted or not.
    pub requests: u64,
    /// Successful ticket exchanges: logins, first and re-.
    pub logins: u64,
    /// Answered with an HTTP error status ([`Fault::Status`]).
    pub status_faults: u64,
    /// Connections closed before any answer ([`Fault::Drop`]).
    pub drops: u64,
    /// Processed, then the connection closed ([`Fault::Lost`]).
    pub lost: u64,
    /// HTTP 200 with nothing in it ([`Fault::EmptyBody`]).
    pub empty_bodies: u64,
    /// Delays and garbage bodies.
    pub other_faults: u64,
    /// Faults of every kind, by the endpoint that answered them.
    pub faults_by_endpoint: HashMap<Endpoint, u64>,
    /// QR codes issued by jslogin (a push login issues none the owner sees).
    pub qr_codes: u64,
    /// New QR uuids (jslogin or push login) issued while the current one, which the client
    /// had polled, was scanned or confirmed and not yet used: a login that asked the owner
    /// to scan again for nothing.
    pub valid_qrs_replaced: u64,
}

impl SimStats {
    /// All faults answered, of every kind.
    pub fn faults(&self) -> u64 {
        self.status_faults + self.drops + self.lost + self.empty_bodies + self.other_faults
    }

    /// Faults answered by `endpoint`.
    pub fn faults_at(&self, endpoint: Endpoint) -> u64 {
        self.faults_by_endpoint.get(&endpoint).copied().unwrap_or(0)
    }

    /// Counts one answered request and its fault.
    pub(crate) fn count(&mut self, endpoint: Option<Endpoint>, fault: Option<&Fault>) {
        self.requests += 1;
        if let (Some(endpoint), Some(_)) = (endpoint, fault) {
            *self.faults_by_endpoint.entry(endpoint).or_default() += 1;
        }
        match fault {
            None => {}
            Some(Fault::Status(_)) => self.status_faults += 1,
            Some(Fault::Drop) => self.drops += 1,
            Some(Fault::Lost) => self.lost += 1,
            Some(Fault::EmptyBody) => self.empty_bodies += 1,
            Some(Fault::Delay(_) | Fault::Body(_)) => self.other_faults += 1,
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn run(seed: u64) -> Vec<Option<Fault>> {
        let mut chaos = Chaos::new(0.3, seed).unwrap();
        (0..200).map(|_| chaos.draw(Endpoint::Sync)).collect()
    }

    #[test]
    fn a_seed_replays_the_same_faults() {
        assert_eq!(run(7), run(7));
        assert_ne!(run(7), run(8));
    }

    #[test]
    fn the_rate_is_roughly_kept_and_every_kind_drawn() {
        let drawn: Vec<Fault> = run(1).into_iter().flatten().collect();
        assert!((30..=90).contains(&drawn.len()), "{}", drawn.len());
        for kind in KINDS {
            assert!(drawn.contains(&kind()), "{:?} never drawn", kind());
        }
    }

    #[test]
    fn no_rate_no_chaos_and_the_phone_is_spared() {
        assert!(Chaos::new(0.0, 1).is_none());
        assert!(Chaos::new(f64::NAN, 1).is_none());
        let mut always = Chaos::new(1.0, 1).unwrap();
        assert_eq!(always.draw(Endpoint::QrPage), None);
        assert!(always.draw(Endpoint::SyncCheck).is_some());
    }
}
