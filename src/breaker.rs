//! The circuit breaker of one endpoint (a receiver URL): a pure state machine over
//! attempt outcomes and millisecond timestamps, so every transition is tested on fixed
//! times. A receiver that keeps failing is one sick endpoint, not many separate
//! deliveries: after `after` failures in a row the breaker opens and nothing is sent for
//! a back-off; then it lets one probe through at a time (half-open) until one succeeds.
//! A failed probe opens it again for twice as long, up to a ceiling. Deliveries held back
//! are not attempted, so they burn no retry.

use std::time::Duration;

/// The longest an open breaker holds back, unless `breaker_backoff` is longer.
pub const MAX_BACKOFF: Duration = Duration::from_secs(3600);

/// When a breaker opens and for how long (`[delivery] breaker_after`, `breaker_backoff`).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Policy {
    pub after: usize,
    pub backoff: Duration,
}

impl Policy {
    fn ceiling(&self) -> Duration {
        self.backoff.max(MAX_BACKOFF)
    }
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum State {
    /// Sending normally; counts failures in a row.
    Closed { failures: usize },
    /// Sending nothing until `until_ms`.
    Open { until_ms: i64 },
    /// One probe at a time.
    HalfOpen,
}

/// A change worth telling the operator about.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Change {
    /// The endpoint failed `failures` times in a row and is held back until `until_ms`.
    Opened { failures: usize, until_ms: i64 },
    /// An attempt succeeded after the breaker had opened.
    Recovered,
}

#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Breaker {
    state: State,
    /// The hold of the next opening: `policy.backoff`, doubled by each failed probe.
    next_backoff: Duration,
}

impl Breaker {
    pub fn new(policy: &Policy) -> Breaker {
        Breaker {
            state: State::Closed { failures: 0 },
            next_backoff: policy.backoff,
        }
    }

    pub fn state(&self) -> State {
        self.state
    }

    /// Whether the endpoint is held back or probed rather than sent to normally.
    pub fn is_tripped(&self) -> bool {
        !matches!(self.state, State::Closed { .. })
    }

    /// How many attempts may be in flight to the endpoint at `now_ms`, given its normal
    /// cap: the cap while closed, none while open, one probe once the hold is over.
    pub fn allowance(&mut self, now_ms: i64, cap: usize) -> usize {
        match self.state {
            State::Closed { .. } => cap,
            State::Open { until_ms } if now_ms < until_ms => 0,
            State::Open { .. } | State::HalfOpen => {
                self.state = State::HalfOpen;
                cap.min(1)
            }
        }
    }

    /// Takes the outcome of an attempt that finished at `now_ms`.
    pub fn observe(&mut self, succeeded: bool, now_ms: i64, policy: &Policy) -> Option<Change> {
        if succeeded {
            let was_tripped = self.is_tripped();
            self.state = State::Closed { failures: 0 };
            self.next_backoff = policy.backoff;
            return was_tripped.then_some(Change::Recovered);
        }
        match self.state {
            State::Closed { failures } => {
                let failures = failures + 1;
                if failures < policy.after {
                    self.state = State::Closed { failures };
                    return None;
                }
                let until_ms = self.open(now_ms, policy);
                Some(Change::Opened { failures, until_ms })
            }
            // The probe failed: hold back again, longer. Still the same sickness, so no
            // new change to report.
            State::HalfOpen => {
                self.open(now_ms, policy);
                None
            }
            // An attempt sent before the breaker opened: already counted in.
            State::Open { .. } => None,
        }
    }

    fn open(&mut self, now_ms: i64, policy: &Policy) -> i64 {
        let hold = self.next_backoff;
        self.next_backoff = (hold * 2).min(policy.ceiling());
        let until_ms = now_ms.saturating_add(hold.as_millis() as i64);
        self.state = State::Open { until_ms };
        until_ms
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    const POLICY: Policy = Policy {
        after: 3,
        backoff: Duration::from_secs(10),
    };
    const T: i64 = 1_700_000_000_000;

    #[test]
    fn opens_after_the_configured_failures_in_a_row_only() {
        let mut b = Breaker::new(&POLICY);
        assert_eq!(b.observe(false, T, &POLICY), None);
        assert_eq!(b.observe(false, T, &POLICY), None);
        // A success in between starts the count again.
        assert_eq!(b.observe(true, T, &POLICY), None);
        assert_eq!(b.observe(false, T, &POLICY), None);
        assert_eq!(b.observe(false, T, &POLICY), None);
        assert_eq!(b.allowance(T, 10), 10);
        assert_eq!(
            b.observe(false, T + 5, &POLICY),
            Some(Change::Opened {
                failures: 3,
                until_ms: T + 10_005
            })
        );
        assert!(b.is_tripped());
    }

    #[test]
    fn an_open_breaker_sends_nothing_then_one_probe_at_a_time() {
        let mut b = Breaker::new(&POLICY);
        for _ in 0..3 {
            b.observe(false, T, &POLICY);
        }
        assert_eq!(b.allowance(T + 9_999, 10), 0);
        assert_eq!(b.allowance(T + 10_000, 10), 1);
        assert_eq!(b.state(), State::HalfOpen);
        assert_eq!(b.allowance(T + 10_001, 10), 1);
        // A cap of 0 stays 0.
        assert_eq!(b.allowance(T + 10_001, 0), 0);
    }

    #[test]
    fn failed_probes_double_the_hold_up_to_the_ceiling() {
        let mut b = Breaker::new(&POLICY);
        for _ in 0..3 {
            b.observe(false, T, &POLICY);
        }
        let mut now = T;
        let mut holds = Vec::new();
        for _ in 0..12 {
            let State::Open { until_ms } = b.state() else {
                panic!("expected open, got {:?}", b.state())
            };
            holds.push((until_ms - now) / 1000);
            now = until_ms;
            assert_eq!(b.allowance(now, 10), 1);
            assert_eq!(b.observe(false, now, &POLICY), None);
        }
        assert_eq!(
            holds,
            [10, 20, 40, 80, 160, 320, 640, 1280, 2560, 3600, 3600, 3600]
        );
    }

    #[test]
    fn a_successful_probe_closes_and_resets_the_hold() {
        let mut b = Breaker::new(&POLICY);
        for _ in 0..3 {
            b.observe(false, T, &POLICY);
        }
        b.allowance(T + 10_000, 10);
        b.observe(false, T + 10_000, &POLICY); // hold now 20 s
        b.allowance(T + 30_000, 10);
        assert_eq!(
            b.observe(true, T + 30_000, &POLICY),
            Some(Change::Recovered)
        );
        assert_eq!(b.allowance(T + 30_000, 10), 10);
        for _ in 0..3 {
            b.observe(false, T + 40_000, &POLICY);
        }
        assert_eq!(
            b.state(),
            State::Open {
                until_ms: T + 50_000
            }
        );
    }

    #[test]
    fn late_outcomes_of_attempts_sent_before_opening() {
        let mut b = Breaker::new(&POLICY);
        for _ in 0..3 {
            b.observe(false, T, &POLICY);
        }
        // Another failure that was already in flight changes nothing.
        assert_eq!(b.observe(false, T + 1, &POLICY), None);
        assert_eq!(
            b.state(),
            State::Open {
                until_ms: T + 10_000
            }
        );
        // A success proves the endpoint answers again.
        assert_eq!(b.observe(true, T + 2, &POLICY), Some(Change::Recovered));
        assert_eq!(b.allowance(T + 2, 4), 4);
    }

    #[test]
    fn a_long_configured_backoff_is_its_own_ceiling() {
        let policy = Policy {
            after: 1,
            backoff: Duration::from_secs(7200),
        };
        let mut b = Breaker::new(&policy);
        b.observe(false, 0, &policy);
        b.allowance(7_200_000, 1);
        b.observe(false, 7_200_000, &policy);
        assert_eq!(
            b.state(),
            State::Open {
                until_ms: 14_400_000
            }
        );
    }
}
