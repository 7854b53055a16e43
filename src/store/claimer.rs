//! Claims on a shared store (PostgreSQL): they run on a connection of their own, in the
//! caller's thread (the scheduler's), beside the writer. In the writer's queue a claim
//! waited behind the durable commits of ingests and outcomes, so each endpoint slot
//! stayed idle through a WAL flush before it was handed out again.
//!
//! Outcomes sent to the writer but not committed yet are kept in [`Finishing`]: their
//! deliveries are still leased in the store, but their attempts are over, so a claim
//! counts their endpoint slots as free. A claim for a line ordered by conversation waits
//! for the outcomes of its subscription to commit: they decide what heads each line.
//! SQLite has one node and one connection: its claims stay in the writer.

use std::collections::{HashMap, HashSet};
use std::sync::{Arc, Condvar, Mutex};
use std::time::{Duration, Instant};

use crate::metrics::Metrics;
use crate::store::db::Db;

use super::claim::{self, Budgets};
use super::faults::{Faults, StoreUnavailable};
use super::{now_ms, AttemptRecord, ClaimRequest, ClaimResult, Line};

/// Longest a claim for an ordered line waits for outcomes to commit; past it the claim
/// goes ahead, and a line whose head's outcome is still unwritten just gives nothing.
const ORDERED_WAIT: Duration = Duration::from_secs(2);

/// Attempts that have finished, whose outcomes the writer has not committed yet:
/// delivery id to subscription.
#[derive(Default)]
pub(super) struct Finishing {
    entries: Mutex<HashMap<i64, String>>,
    committed: Condvar,
}

impl Finishing {
    /// Before the outcomes are sent to the writer.
    pub(super) fn add(&self, records: &[AttemptRecord]) {
        let mut entries = self.entries.lock().unwrap_or_else(|e| e.into_inner());
        for record in records {
            entries.insert(record.delivery_id, record.subscription.clone());
        }
    }

    /// Once the writer's transaction holding them has ended, committed or not: either
    /// way the store's leases of them are all a claim has to go by now.
    pub(super) fn remove(&self, delivery_ids: &[i64]) {
        if delivery_ids.is_empty() {
            return;
        }
        let mut entries = self.entries.lock().unwrap_or_else(|e| e.into_inner());
        for id in delivery_ids {
            entries.remove(id);
        }
        drop(entries);
        self.committed.notify_all();
    }

    fn snapshot(&self) -> Vec<(String, i64)> {
        let entries = self.entries.lock().unwrap_or_else(|e| e.into_inner());
        entries
            .iter()
            .map(|(id, name)| (name.clone(), *id))
            .collect()
    }

    /// Waits (at most `limit`) until no outcome of `subscriptions` is left uncommitted.
    fn wait_for(&self, subscriptions: &HashSet<&str>, limit: Duration) {
        let deadline = Instant::now() + limit;
        let mut entries = self.entries.lock().unwrap_or_else(|e| e.into_inner());
        while entries
            .values()
            .any(|name| subscriptions.contains(name.as_str()))
        {
            let left = deadline.saturating_duration_since(Instant::now());
            if left.is_zero() {
                return;
            }
            entries = self
                .committed
                .wait_timeout(entries, left)
                .unwrap_or_else(|e| e.into_inner())
                .0;
        }
    }
}

pub(super) struct Claimer {
    db: Mutex<Db>,
    pub(super) finishing: Arc<Finishing>,
    metrics: Arc<Metrics>,
    faults: Arc<Faults>,
}

impl Claimer {
    pub(super) fn new(db: Db, metrics: Arc<Metrics>, faults: Arc<Faults>) -> Claimer {
        Claimer {
            db: Mutex::new(db),
            finishing: Arc::default(),
            metrics,
            faults,
        }
    }

    /// As `StoreHandle::claim_within`.
    pub(super) fn claim(
        &self,
        requests: &[ClaimRequest],
        budget: usize,
        mut group_budgets: Vec<usize>,
        now_ms_at: i64,
        lease_until_ms: i64,
    ) -> anyhow::Result<ClaimResult> {
        let ordered: HashSet<&str> = requests
            .iter()
            .filter(|r| matches!(r.line, Line::Conversation { .. }))
            .map(|r| r.subscription.as_str())
            .collect();
        if !ordered.is_empty() {
            self.finishing.wait_for(&ordered, ORDERED_WAIT);
        }
        let finishing = self.finishing.snapshot();
        let finishing: Vec<(&str, i64)> = finishing
            .iter()
            .map(|(name, id)| (name.as_str(), *id))
            .collect();
        let db = self.db.lock().unwrap_or_else(|e| e.into_inner());
        let budgets = Budgets {
            total: budget,
            groups: &mut group_budgets,
            finishing: &finishing,
        };
        // One statement, its own transaction (see `claim/cluster.rs`).
        let outcome = claim::claim(&db, requests, budgets, now_ms_at, lease_until_ms);
        // As in the writer, where a claim failed in its savepoint: only a store that
        // cannot be reached counts against the store's health, not a claim that timed
        // out waiting for another node.
        let lost = outcome.is_err() && db.is_closed();
        let own_faults = match &outcome {
            Err(err) if lost => vec![("claim", err.to_string())],
            _ => Vec::new(),
        };
        self.faults.note(&["claim"], &Ok(()), &own_faults, now_ms());
        match outcome {
            Ok(result) => {
                self.metrics.count_commit();
                Ok(result)
            }
            Err(err) if lost => Err(StoreUnavailable(format!("the claim failed: {err}")).into()),
            Err(err) => Err(err.into()),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::store::NextStep;

    fn record(delivery_id: i64, subscription: &str) -> AttemptRecord {
        AttemptRecord {
            delivery_id,
            subscription: subscription.into(),
            attempt: 1,
            started_at_ms: 1,
            duration_ms: 1,
            status: Some(200),
            error: None,
            response_snippet: None,
            shaping: None,
            next: NextStep::Delivered,
        }
    }

    fn pending(finishing: &Finishing) -> Vec<i64> {
        let mut ids: Vec<i64> = finishing.snapshot().into_iter().map(|(_, id)| id).collect();
        ids.sort_unstable();
        ids
    }

    #[test]
    fn an_ordered_claim_waits_for_its_subscriptions_outcomes_and_gives_up_at_its_limit() {
        let finishing = Arc::new(Finishing::default());
        finishing.add(&[record(7, "ordered"), record(8, "other")]);
        std::thread::scope(|scope| {
            let writer = Arc::clone(&finishing);
            scope.spawn(move || {
                std::thread::sleep(Duration::from_millis(50));
                writer.remove(&[7]);
            });
            // Returns only once the writer is done with outcome 7.
            finishing.wait_for(&HashSet::from(["ordered"]), Duration::from_secs(60));
            assert_eq!(pending(&finishing), [8]);
        });
        // Outcome 8 is never committed: the wait ends at its limit, 8 still pending.
        finishing.wait_for(&HashSet::from(["other"]), Duration::from_millis(20));
        assert_eq!(pending(&finishing), [8]);
        // A subscription with nothing pending does not wait at all.
        finishing.wait_for(&HashSet::from(["quiet"]), Duration::from_secs(60));
    }
}
