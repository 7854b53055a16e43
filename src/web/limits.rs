//! Bounds on what a client may make the server do before it has proven who it is: how
//! many wrong tokens one address may send per minute (counted in a table of bounded
//! size; wrong passwords are counted in the store, see `web::auth`), how many argon2
//! verifications run at once (each costs ~19 MiB), and how long a request body may take
//! to arrive.

use std::collections::{HashMap, VecDeque};
use std::net::IpAddr;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use tokio::sync::{OwnedSemaphorePermit, Semaphore};

/// The body deadline when the app runs without a [`Guard`](super::guard::Guard) (tests).
pub const DEFAULT_BODY_TIMEOUT: Duration = Duration::from_secs(30);
/// Wrong passwords one address may try per window before it must wait (counted in the
/// store, for every node together: `web::auth`).
pub const LOGIN_FAILURES: usize = 5;
/// Wrong API or inlet tokens one address may send per window before it must wait.
const TOKEN_FAILURES: usize = 10;
pub const WINDOW: Duration = Duration::from_secs(60);
/// Argon2 verifications running at once; a login beyond them is told to come back.
const VERIFICATIONS: usize = 2;
/// Addresses a throttle remembers. Past it the address that failed longest ago is
/// forgotten first, so memory stays bounded whatever the number of clients.
const REMEMBERED: usize = 4096;

/// The limits of one server.
pub struct Limits {
    pub body_timeout: Duration,
    pub tokens: Throttle,
    verifying: Arc<Semaphore>,
    /// Argon2 verifications started, for `/metrics`.
    pub verifications: AtomicU64,
}

impl Limits {
    pub fn new(body_timeout: Duration) -> Limits {
        Limits {
            body_timeout,
            tokens: Throttle::new(TOKEN_FAILURES, WINDOW),
            verifying: Arc::new(Semaphore::new(VERIFICATIONS)),
            verifications: AtomicU64::new(0),
        }
    }

    /// A slot to run one argon2 verification in, or `None` while all are taken. Held
    /// until the verification ends, even if the client has gone.
    pub fn verification_slot(&self) -> Option<OwnedSemaphorePermit> {
        Arc::clone(&self.verifying).try_acquire_owned().ok()
    }

    /// Counts one argon2 verification started, for `/metrics`.
    pub fn count_verification(&self) {
        self.verifications.fetch_add(1, Ordering::Relaxed);
    }
}

/// Failures per client address within a sliding window.
pub struct Throttle {
    max: usize,
    window: Duration,
    failures: Mutex<HashMap<IpAddr, VecDeque<Instant>>>,
}

impl Throttle {
    pub fn new(max: usize, window: Duration) -> Throttle {
        Throttle {
            max,
            window,
            failures: Mutex::new(HashMap::new()),
        }
    }

    /// `Err` with the seconds to wait while `address` has used up its failures.
    pub fn check(&self, address: IpAddr) -> Result<(), u64> {
        let mut failures = self.failures.lock().unwrap_or_else(|e| e.into_inner());
        let now = Instant::now();
        match failures.get_mut(&key(address)) {
            Some(times) => self.wait(times, now),
            None => Ok(()),
        }
    }

    /// Counts one failure now.
    pub fn fail(&self, address: IpAddr) {
        let mut failures = self.failures.lock().unwrap_or_else(|e| e.into_inner());
        let now = Instant::now();
        self.entry(&mut failures, address, now).push_back(now);
    }

    /// Counts an attempt as a failure before it is judged (so attempts sent at once
    /// cannot all pass the check before any failed), or `Err` with the seconds to wait.
    /// [`Throttle::forgive`] takes it back if it succeeds.
    pub fn attempt(&self, address: IpAddr) -> Result<(), u64> {
        let mut failures = self.failures.lock().unwrap_or_else(|e| e.into_inner());
        let now = Instant::now();
        let times = self.entry(&mut failures, address, now);
        self.wait(times, now)?;
        times.push_back(now);
        Ok(())
    }

    /// Takes back the newest attempt counted for `address`.
    pub fn forgive(&self, address: IpAddr) {
        let mut failures = self.failures.lock().unwrap_or_else(|e| e.into_inner());
        if let Some(times) = failures.get_mut(&key(address)) {
            times.pop_back();
        }
    }

    fn wait(&self, times: &mut VecDeque<Instant>, now: Instant) -> Result<(), u64> {
        while times
            .front()
            .is_some_and(|t| now.duration_since(*t) >= self.window)
        {
            times.pop_front();
        }
        match times.front() {
            Some(oldest) if times.len() >= self.max => {
                let wait = self.window.saturating_sub(now.duration_since(*oldest));
                Err(wait.as_secs().max(1))
            }
            _ => Ok(()),
        }
    }

    fn entry<'a>(
        &self,
        failures: &'a mut HashMap<IpAddr, VecDeque<Instant>>,
        address: IpAddr,
        now: Instant,
    ) -> &'a mut VecDeque<Instant> {
        let address = key(address);
        if !failures.contains_key(&address) && failures.len() >= REMEMBERED {
            failures.retain(|_, times| {
                times
                    .back()
                    .is_some_and(|t| now.duration_since(*t) < self.window)
            });
            if failures.len() >= REMEMBERED {
                let stalest = failures
                    .iter()
                    .min_by_key(|(_, times)| times.back().copied())
                    .map(|(a, _)| *a);
                if let Some(stalest) = stalest {
                    failures.remove(&stalest);
                }
            }
        }
        failures.entry(address).or_default()
    }

    #[cfg(test)]
    fn remembered(&self) -> usize {
        self.failures.lock().unwrap().len()
    }
}

/// The key an address is counted under: IPv6 clients by their /64, as one host usually
/// holds a whole /64 and could otherwise take a fresh address per attempt.
pub fn key(address: IpAddr) -> IpAddr {
    match address.to_canonical() {
        IpAddr::V6(v6) => IpAddr::V6((u128::from(v6) & !(u128::MAX >> 64)).into()),
        v4 => v4,
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn ip(n: u32) -> IpAddr {
        IpAddr::V4(n.into())
    }

    #[test]
    fn attempts_are_counted_before_they_are_judged() {
        let throttle = Throttle::new(5, WINDOW);
        let granted = (0..30).filter(|_| throttle.attempt(ip(1)).is_ok()).count();
        assert_eq!(
            granted, 5,
            "30 attempts at once: only the limit gets through"
        );
        assert!(
            throttle.attempt(ip(2)).is_ok(),
            "another address is not held up"
        );
        let wait = throttle.attempt(ip(1)).unwrap_err();
        assert!((1..=60).contains(&wait), "{wait}");
    }

    #[test]
    fn a_forgiven_attempt_does_not_count() {
        let throttle = Throttle::new(2, WINDOW);
        for _ in 0..10 {
            throttle.attempt(ip(1)).unwrap();
            throttle.forgive(ip(1));
        }
        assert!(throttle.check(ip(1)).is_ok());
        throttle.fail(ip(1));
        throttle.fail(ip(1));
        assert!(throttle.check(ip(1)).is_err());
    }

    #[test]
    fn failures_age_out_of_the_window() {
        let throttle = Throttle::new(1, Duration::from_millis(1));
        throttle.fail(ip(1));
        std::thread::sleep(Duration::from_millis(5));
        assert!(throttle.check(ip(1)).is_ok());
    }

    #[test]
    fn memory_stays_bounded_whatever_the_number_of_addresses() {
        let throttle = Throttle::new(5, WINDOW);
        for n in 0..(REMEMBERED as u32 + 500) {
            throttle.fail(ip(n));
        }
        assert_eq!(throttle.remembered(), REMEMBERED);
        let v6 = |last: u16| IpAddr::V6([0x2001, 0xdb8, 0, 1, 0, 0, 0, last].into());
        let throttle = Throttle::new(2, WINDOW);
        throttle.fail(v6(1));
        throttle.fail(v6(2));
        assert!(throttle.check(v6(3)).is_err(), "one /64 is one client");
    }

    #[test]
    fn verifications_beyond_the_cap_get_no_slot() {
        let limits = Limits::new(Duration::from_secs(1));
        let held: Vec<_> = (0..VERIFICATIONS)
            .map(|_| limits.verification_slot().unwrap())
            .collect();
        assert!(limits.verification_slot().is_none());
        drop(held);
        assert!(limits.verification_slot().is_some());
        limits.count_verification();
        assert_eq!(limits.verifications.load(Ordering::Relaxed), 1);
    }
}
