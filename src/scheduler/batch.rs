//! How the scheduler groups its writes: when to claim and how much, and when finished
//! attempts must go to the store at once. Every commit rewrites the pages it touches
//! (the deliveries' indexes hold a range per subscription), so its cost hardly depends on
//! how many deliveries it carries: fewer, fuller commits are what makes fan-out cheap.

use std::collections::HashSet;

use crate::store::{AttemptRecord, NextStep};

/// Jobs that may wait in the pool's queue for a worker, per worker. A worker then goes
/// from one attempt to the next without waiting for a claim's commit, and under load
/// each claim leases many deliveries. A queued job waits at most for one attempt ahead
/// of it, well inside its lease (twice the longest timeout, plus 30 s).
const QUEUE_PER_WORKER: usize = 1;

/// How many deliveries to claim now (`None`: wait for more attempts to finish). With a
/// worker idle it claims at once, so low load keeps its latency; with every worker busy
/// it waits until the queue is half empty, so each claim is a large one. Without
/// `queue`, it claims only for idle workers.
pub fn claim_room(workers: usize, in_flight: usize, queue: bool) -> Option<usize> {
    let queue = if queue { workers * QUEUE_PER_WORKER } else { 0 };
    let free = (workers + queue).saturating_sub(in_flight);
    let refill = in_flight < workers || in_flight <= workers + queue / 2;
    (free > 0 && refill).then_some(free)
}

/// Whether the outcomes held back must be written before the next claim (they then
/// share its commit): a retry, whose new due time the claim reports back, or an outcome
/// of an ordered subscription, whose conversation's next event is claimable only once
/// it is written. Other outcomes wait for company (see `RECORD_DELAY`).
pub fn claim_needs(unrecorded: &[AttemptRecord], ordered: Option<&HashSet<String>>) -> bool {
    unrecorded.iter().any(|r| {
        matches!(r.next, NextStep::RetryAt(_))
            || ordered.is_some_and(|ordered| ordered.contains(&r.subscription))
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn an_idle_worker_is_fed_at_once_and_a_busy_pool_is_refilled_in_large_claims() {
        // Nothing in flight: room for every worker and the queue.
        assert_eq!(claim_room(32, 0, true), Some(64));
        // One worker idle: claim now, however few.
        assert_eq!(claim_room(32, 31, true), Some(33));
        // Every worker busy and the queue more than half full: wait.
        assert_eq!(claim_room(32, 49, true), None);
        assert_eq!(claim_room(32, 64, true), None);
        // Half the queue drained: one claim refills it.
        assert_eq!(claim_room(32, 48, true), Some(16));
        assert_eq!(claim_room(1, 0, true), Some(2));
        assert_eq!(claim_room(1, 1, true), Some(1));
        assert_eq!(claim_room(1, 2, true), None);
        // Without the queue, only idle workers are fed.
        assert_eq!(claim_room(32, 0, false), Some(32));
        assert_eq!(claim_room(32, 31, false), Some(1));
        assert_eq!(claim_room(32, 32, false), None);
    }

    fn record(subscription: &str, next: NextStep) -> AttemptRecord {
        AttemptRecord {
            delivery_id: 1,
            subscription: subscription.into(),
            attempt: 1,
            started_at_ms: 0,
            duration_ms: 1,
            status: Some(200),
            error: None,
            response_snippet: None,
            next,
            shaping: None,
        }
    }

    #[test]
    fn only_retries_and_ordered_outcomes_are_written_before_a_claim() {
        let ordered: HashSet<String> = ["in-line".to_string()].into();
        let delivered = record("free", NextStep::Delivered);
        let dead = record("free", NextStep::Dead);
        assert!(!claim_needs(&[delivered.clone(), dead], Some(&ordered)));
        assert!(!claim_needs(&[], Some(&ordered)));
        assert!(claim_needs(
            &[delivered.clone(), record("free", NextStep::RetryAt(5))],
            Some(&ordered)
        ));
        assert!(claim_needs(
            &[delivered, record("in-line", NextStep::Delivered)],
            Some(&ordered)
        ));
    }
}
