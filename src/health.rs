//! Whether posthorn is healthy (`GET /healthz`): the store answers a round trip through
//! its writer, is not over `[storage] max_size`, its commits do not fail and the
//! integrity check at start found nothing wrong; and delivery is moving: the scheduler
//! turns (it stamps a heartbeat on every loop, at least once a second) and not every
//! worker is stuck in one attempt. The decisions are pure functions of the stamps and
//! thresholds, so they are tested without waiting.

use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::Mutex;
use std::time::{Duration, Instant};

use serde::Serialize;

use crate::store::StoreStatus;

/// A scheduler heartbeat older than this means the scheduler is stuck.
pub const HEARTBEAT_LIMIT: Duration = Duration::from_secs(30);
/// Past `[delivery] timeout`, how long an attempt may still run before its worker counts
/// as stuck (the HTTP client's timeout should have ended it long before).
pub const ATTEMPT_SLACK: Duration = Duration::from_secs(30);

/// Signs of life of the scheduler and the workers, stamped in milliseconds of a
/// monotonic clock (so a wall-clock jump cannot make them look stale).
#[derive(Debug)]
pub struct Liveness {
    epoch: Instant,
    heartbeat_ms: AtomicU64,
    /// When each worker started the attempt it is in, `None` while idle.
    busy_since_ms: Mutex<Vec<Option<u64>>>,
}

impl Default for Liveness {
    fn default() -> Self {
        Liveness::new()
    }
}

impl Liveness {
    /// Counts as a fresh heartbeat: the scheduler starts after the HTTP server.
    pub fn new() -> Liveness {
        Liveness {
            epoch: Instant::now(),
            heartbeat_ms: AtomicU64::new(0),
            busy_since_ms: Mutex::new(Vec::new()),
        }
    }

    /// Milliseconds since this was created, on the monotonic clock the stamps use.
    pub fn now_ms(&self) -> u64 {
        self.epoch.elapsed().as_millis() as u64
    }

    /// The scheduler went once more round its loop.
    pub fn scheduler_turned(&self) {
        self.heartbeat_ms.store(self.now_ms(), Ordering::Relaxed);
    }

    /// `count` workers have started, numbered from 0.
    pub fn workers_started(&self, count: usize) {
        *self.slots() = vec![None; count];
    }

    pub fn attempt_started(&self, worker: usize) {
        let now = self.now_ms();
        if let Some(slot) = self.slots().get_mut(worker) {
            *slot = Some(now);
        }
    }

    pub fn attempt_finished(&self, worker: usize) {
        if let Some(slot) = self.slots().get_mut(worker) {
            *slot = None;
        }
    }

    /// (workers, how many are in an attempt).
    pub fn workers(&self) -> (usize, usize) {
        let slots = self.slots();
        (slots.len(), slots.iter().flatten().count())
    }

    /// Judges the stamps as of now.
    pub fn delivery_check(&self, thresholds: Thresholds) -> DeliveryCheck {
        let busy_since = self.slots().clone();
        delivery_check(
            self.now_ms(),
            self.heartbeat_ms.load(Ordering::Relaxed),
            &busy_since,
            thresholds,
        )
    }

    fn slots(&self) -> std::sync::MutexGuard<'_, Vec<Option<u64>>> {
        self.busy_since_ms.lock().unwrap_or_else(|e| e.into_inner())
    }
}

/// When delivery counts as stuck.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Thresholds {
    /// The scheduler's heartbeat may be at most this old.
    pub heartbeat: Duration,
    /// A worker in one attempt for longer than this is stuck.
    pub attempt: Duration,
}

impl Thresholds {
    /// The thresholds for an attempt timeout of `timeout` (`[delivery] timeout`).
    pub fn for_timeout(timeout: Duration) -> Thresholds {
        Thresholds {
            heartbeat: HEARTBEAT_LIMIT,
            attempt: timeout + ATTEMPT_SLACK,
        }
    }
}

/// `"ok"` or `"unhealthy"`, as `/healthz` writes it.
fn status(ok: bool) -> &'static str {
    if ok {
        "ok"
    } else {
        "unhealthy"
    }
}

/// The delivery half of `/healthz`.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct DeliveryCheck {
    pub status: &'static str,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub reason: Option<String>,
    /// How long ago the scheduler last went round its loop.
    pub heartbeat_age_ms: u64,
    pub workers: usize,
    pub busy_workers: usize,
    /// The longest-running attempt in flight; `None` with none in flight.
    pub longest_attempt_ms: Option<u64>,
    /// `false` while delivery is switched off (`[delivery] enabled = false` or "pause
    /// all"); events are still taken in. Not a fault: the status stays `ok`.
    pub enabled: bool,
    /// Why delivery is switched off.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub switched_off: Option<&'static str>,
}

impl DeliveryCheck {
    pub fn ok(&self) -> bool {
        self.status == "ok"
    }
}

/// Delivery is stuck when the scheduler's heartbeat (`heartbeat_ms`) is older than
/// `thresholds.heartbeat`, or when every worker has been in one attempt (started at
/// `busy_since_ms`, `None` for an idle worker) for longer than `thresholds.attempt`. All
/// times are milliseconds on one clock.
pub fn delivery_check(
    now_ms: u64,
    heartbeat_ms: u64,
    busy_since_ms: &[Option<u64>],
    thresholds: Thresholds,
) -> DeliveryCheck {
    let heartbeat_age_ms = now_ms.saturating_sub(heartbeat_ms);
    let running: Vec<u64> = busy_since_ms
        .iter()
        .flatten()
        .map(|since| now_ms.saturating_sub(*since))
        .collect();
    let attempt_limit = thresholds.attempt.as_millis() as u64;
    let all_stuck = !busy_since_ms.is_empty()
        && running.len() == busy_since_ms.len()
        && running.iter().all(|&ms| ms > attempt_limit);
    let reason = if heartbeat_age_ms > thresholds.heartbeat.as_millis() as u64 {
        Some(format!(
            "the scheduler has not run for {} s (limit {} s)",
            heartbeat_age_ms / 1000,
            thresholds.heartbeat.as_secs()
        ))
    } else if all_stuck {
        Some(format!(
            "every delivery worker has been in one attempt for over {} s ([delivery] timeout + {} s)",
            thresholds.attempt.as_secs(),
            ATTEMPT_SLACK.as_secs()
        ))
    } else {
        None
    };
    DeliveryCheck {
        status: status(reason.is_none()),
        reason,
        heartbeat_age_ms,
        workers: busy_since_ms.len(),
        busy_workers: running.len(),
        longest_attempt_ms: running.iter().copied().max(),
        enabled: true,
        switched_off: None,
    }
}

/// The store half of `/healthz`.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct StoreCheck {
    pub status: &'static str,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub reason: Option<String>,
    /// Bytes the store holds, as `[storage] max_size` counts them; `None` when the
    /// writer did not answer.
    pub used_bytes: Option<u64>,
    pub max_size_bytes: Option<u64>,
    /// Commits that fail, and corruption found at start, in words.
    #[serde(skip_serializing_if = "Vec::is_empty")]
    pub problems: Vec<String>,
}

impl StoreCheck {
    pub fn ok(&self) -> bool {
        self.status == "ok"
    }
}

/// The store is healthy when its writer answered (`answer` is its reply, or why there
/// was none), it is not over `[storage] max_size`, and there are no `problems` (failing
/// commits, corruption found at start; see `store::Faults`).
pub fn store_check(answer: Result<StoreStatus, String>, problems: Vec<String>) -> StoreCheck {
    let mut check = match answer {
        Err(reason) => StoreCheck {
            status: status(false),
            reason: Some(reason),
            used_bytes: None,
            max_size_bytes: None,
            problems: Vec::new(),
        },
        Ok(answer) => {
            let full = answer.max_size.is_some_and(|max| answer.used_bytes > max);
            StoreCheck {
                status: status(!full),
                reason: full.then(|| {
                    "the store is over [storage] max_size; new input is refused until \
                     retention makes room"
                        .to_string()
                }),
                used_bytes: Some(answer.used_bytes),
                max_size_bytes: answer.max_size,
                problems: Vec::new(),
            }
        }
    };
    if !problems.is_empty() {
        check.status = status(false);
        check.reason.get_or_insert_with(|| problems.join("; "));
        check.problems = problems;
    }
    check
}

/// The whole answer of `/healthz`.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct Health {
    pub status: &'static str,
    pub checks: Checks,
}

#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct Checks {
    pub store: StoreCheck,
    pub delivery: DeliveryCheck,
}

impl Health {
    pub fn new(store: StoreCheck, delivery: DeliveryCheck) -> Health {
        Health {
            status: status(store.ok() && delivery.ok()),
            checks: Checks { store, delivery },
        }
    }

    pub fn ok(&self) -> bool {
        self.status == "ok"
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    const LIMITS: Thresholds = Thresholds {
        heartbeat: Duration::from_secs(30),
        attempt: Duration::from_secs(40),
    };
    const NOW: u64 = 1_000_000;

    #[test]
    fn a_fresh_heartbeat_with_idle_or_busy_workers_is_healthy() {
        let check = delivery_check(NOW, NOW - 500, &[None, Some(NOW - 2_000)], LIMITS);
        assert!(check.ok(), "{check:?}");
        assert_eq!(check.reason, None);
        assert_eq!((check.workers, check.busy_workers), (2, 1));
        assert_eq!(check.heartbeat_age_ms, 500);
        assert_eq!(check.longest_attempt_ms, Some(2_000));
        // Exactly at the limits is not past them.
        let edge = delivery_check(NOW, NOW - 30_000, &[Some(NOW - 40_000)], LIMITS);
        assert!(edge.ok(), "{edge:?}");
    }

    #[test]
    fn a_stale_heartbeat_is_stuck() {
        let check = delivery_check(NOW, NOW - 30_001, &[None], LIMITS);
        assert!(!check.ok());
        assert_eq!(check.status, "unhealthy");
        assert!(
            check.reason.as_deref().unwrap().contains("scheduler"),
            "{check:?}"
        );
    }

    #[test]
    fn stuck_only_when_every_worker_is_past_the_attempt_limit() {
        let stuck = delivery_check(NOW, NOW, &[Some(NOW - 40_001), Some(NOW - 90_000)], LIMITS);
        assert!(!stuck.ok(), "{stuck:?}");
        assert!(stuck
            .reason
            .as_deref()
            .unwrap()
            .contains("every delivery worker"));
        assert_eq!(stuck.longest_attempt_ms, Some(90_000));

        let one_free = delivery_check(NOW, NOW, &[Some(NOW - 90_000), None], LIMITS);
        assert!(one_free.ok(), "{one_free:?}");
        let one_recent = delivery_check(NOW, NOW, &[Some(NOW - 90_000), Some(NOW - 1_000)], LIMITS);
        assert!(one_recent.ok(), "{one_recent:?}");
        // Before the workers exist there is nothing to be stuck.
        assert!(delivery_check(NOW, NOW, &[], LIMITS).ok());
    }

    #[test]
    fn thresholds_follow_the_attempt_timeout() {
        assert_eq!(
            Thresholds::for_timeout(Duration::from_secs(10)),
            Thresholds {
                heartbeat: Duration::from_secs(30),
                attempt: Duration::from_secs(40)
            }
        );
    }

    #[test]
    fn the_store_is_unhealthy_without_an_answer_or_over_max_size() {
        let fine = store_check(
            Ok(StoreStatus {
                used_bytes: 100,
                max_size: Some(100),
            }),
            Vec::new(),
        );
        assert!(fine.ok(), "{fine:?}");
        let unlimited = store_check(
            Ok(StoreStatus {
                used_bytes: u64::MAX,
                max_size: None,
            }),
            Vec::new(),
        );
        assert!(unlimited.ok());
        let full = store_check(
            Ok(StoreStatus {
                used_bytes: 101,
                max_size: Some(100),
            }),
            Vec::new(),
        );
        assert!(!full.ok());
        assert!(full.reason.as_deref().unwrap().contains("max_size"));
        let silent = store_check(
            Err("the store writer did not answer within 3 s".into()),
            Vec::new(),
        );
        assert!(!silent.ok());
        assert_eq!(silent.used_bytes, None);
    }

    #[test]
    fn failing_commits_and_corruption_make_the_store_unhealthy() {
        let answer = || {
            Ok(StoreStatus {
                used_bytes: 1,
                max_size: None,
            })
        };
        let failing = store_check(
            answer(),
            vec![
                "commits of ingest fail (3 in a row, the first 2 s ago): database or disk is full"
                    .into(),
            ],
        );
        assert!(!failing.ok(), "{failing:?}");
        assert!(failing
            .reason
            .as_deref()
            .unwrap()
            .contains("commits of ingest fail"));
        let json = serde_json::to_value(&failing).unwrap();
        assert_eq!(json["status"], "unhealthy");
        assert_eq!(json["problems"].as_array().unwrap().len(), 1);
        let fine = store_check(answer(), Vec::new());
        assert!(fine.ok());
        assert!(serde_json::to_value(&fine)
            .unwrap()
            .get("problems")
            .is_none());
    }

    #[test]
    fn health_is_ok_only_when_both_checks_are() {
        let store = store_check(
            Ok(StoreStatus {
                used_bytes: 1,
                max_size: None,
            }),
            Vec::new(),
        );
        let delivery = delivery_check(NOW, NOW, &[None], LIMITS);
        assert!(Health::new(store.clone(), delivery.clone()).ok());
        let stuck = delivery_check(NOW, 0, &[None], LIMITS);
        let health = Health::new(store, stuck);
        assert!(!health.ok());
        let json = serde_json::to_value(&health).unwrap();
        assert_eq!(json["status"], "unhealthy");
        assert_eq!(json["checks"]["store"]["status"], "ok");
        assert_eq!(json["checks"]["delivery"]["status"], "unhealthy");
    }

    #[test]
    fn stamps_track_each_worker() {
        let liveness = Liveness::new();
        liveness.workers_started(3);
        liveness.attempt_started(0);
        liveness.attempt_started(2);
        assert_eq!(liveness.workers(), (3, 2));
        liveness.attempt_finished(0);
        liveness.attempt_started(7); // no such worker: ignored
        assert_eq!(liveness.workers(), (3, 1));
        liveness.scheduler_turned();
        assert!(liveness.delivery_check(LIMITS).ok());
    }
}
