//! The health questions of the read side: the overview, the queue, each subscription's
//! health over the last day, and which subscriptions are paused.

use crate::store::db::{params, OptionalExtension};

use super::*;

pub(super) const QUEUE_SQL: &str =
    "SELECT COUNT(*), MIN(created_at) FROM deliveries WHERE state = 'pending'";

impl Reader {
    /// The overview page as of `now_ms`, with the newest `recent_failures` failed attempts.
    pub fn overview(&self, now_ms: i64, recent_failures: usize) -> Result<Overview, QueryError> {
        let conn = &self.conn;
        let count = |sql: &str, value: Option<i64>| -> crate::store::db::Result<u64> {
            let mut stmt = conn.prepare_cached(sql)?;
            match value {
                Some(value) => stmt.query_row(params![value], |row| row.get(0)),
                None => stmt.query_row([], |row| row.get(0)),
            }
        };
        let events_total = count("SELECT COUNT(*) FROM events", None)?;
        let events_last_24h = count(
            "SELECT COUNT(*) FROM events WHERE received_at >= ?1",
            Some(now_ms - DAY_MS),
        )?;
        let mut deliveries = StateCounts::default();
        {
            let mut stmt =
                conn.prepare_cached("SELECT state, COUNT(*) FROM deliveries GROUP BY state")?;
            let rows = stmt.query_map([], |row| Ok((row.get::<String>(0)?, row.get(1)?)))?;
            for row in rows {
                let (state, n) = row?;
                match state.as_str() {
                    "pending" => deliveries.pending = n,
                    "delivered" => deliveries.delivered = n,
                    "dead" => deliveries.dead = n,
                    "cancelled" => deliveries.cancelled = n,
                    _ => {}
                }
            }
        }
        deliveries.failing = count(
            "SELECT COUNT(*) FROM deliveries WHERE state = 'pending' AND attempts > 0",
            None,
        )?;
        let oldest: Option<i64> = conn
            .prepare_cached("SELECT MIN(created_at) FROM deliveries WHERE state = 'pending'")?
            .query_row([], |row| row.get(0))?;
        let mut stmt = conn.prepare_cached(&format!(
            "SELECT a.delivery_id, d.subscription, d.event_id, a.attempt, a.started_at,
                    a.duration_ms, a.status, a.error
             FROM attempts a JOIN deliveries d ON d.id = a.delivery_id
             WHERE {FAILED} ORDER BY a.started_at DESC, a.id DESC LIMIT ?1"
        ))?;
        let recent_failures = stmt
            .query_map(params![recent_failures as i64], |row| {
                Ok(FailureRow {
                    delivery_id: row.get(0)?,
                    subscription: row.get(1)?,
                    event_id: row.get(2)?,
                    attempt: row.get(3)?,
                    started_at: row.get(4)?,
                    duration_ms: row.get(5)?,
                    status: row.get(6)?,
                    error: row.get(7)?,
                })
            })?
            .collect::<Result<_, _>>()?;
        Ok(Overview {
            events_total,
            events_last_24h,
            queue_depth: deliveries.pending,
            deliveries,
            oldest_pending_age_ms: oldest.map(|at| (now_ms - at).max(0)),
            recent_failures,
        })
    }

    /// The queue as of `now_ms` (what [`Reader::overview`] says of it, cheaply: both
    /// come from the `deliveries_state` index, without reading a row).
    pub fn queue(&self, now_ms: i64) -> Result<Queue, QueryError> {
        let (depth, oldest): (u64, Option<i64>) = self
            .conn
            .prepare_cached(QUEUE_SQL)?
            .query_row([], |row| Ok((row.get(0)?, row.get(1)?)))?;
        Ok(Queue {
            depth,
            oldest_pending_age_ms: oldest.map(|at| (now_ms - at).max(0)),
        })
    }

    /// The health of each subscription in `names` (in that order), including those
    /// without a single row yet.
    pub fn subscription_health(
        &self,
        names: &[String],
        now_ms: i64,
    ) -> Result<Vec<SubscriptionHealth>, QueryError> {
        let paused = self.paused_subscriptions()?;
        let mut state = self.conn.prepare_cached(
            "SELECT pause_reason, failing_since FROM subscription_state WHERE subscription = ?1",
        )?;
        names
            .iter()
            .map(|name| {
                let mut health = self.health_of(name, now_ms)?;
                let rates = self.rates(Some(name), now_ms)?;
                health.delivery_success_rate = rates.delivery_success_rate;
                health.deliveries_finished = rates.deliveries_finished;
                health.paused = paused.contains(name);
                if let Some((reason, since)) = state
                    .query_row(params![name], |row| Ok((row.get(0)?, row.get(1)?)))
                    .optional()?
                {
                    health.pause_reason = reason;
                    health.failing_since = since;
                }
                Ok(health)
            })
            .collect()
    }

    fn health_of(&self, name: &str, now_ms: i64) -> Result<SubscriptionHealth, QueryError> {
        let conn = &self.conn;
        let window: Vec<(i64, Option<u16>)> = conn
            .prepare_cached(
                "SELECT duration_ms, status FROM attempts
                 WHERE subscription = ?1 AND started_at >= ?2
                 ORDER BY started_at DESC, id DESC LIMIT ?3",
            )?
            .query_map(
                params![name, now_ms - DAY_MS, HEALTH_WINDOW as i64],
                |row| Ok((row.get(0)?, row.get(1)?)),
            )?
            .collect::<Result<_, _>>()?;
        let successes = window.iter().filter(|(_, s)| is_success(*s)).count();
        let mut durations: Vec<i64> = window.iter().map(|(d, _)| *d).collect();
        durations.sort_unstable();
        let last: Option<(i64, Option<u16>, Option<String>)> = conn
            .prepare_cached(
                "SELECT started_at, status, error FROM attempts WHERE subscription = ?1
                 ORDER BY started_at DESC, id DESC LIMIT 1",
            )?
            .query_row(params![name], |row| {
                Ok((row.get(0)?, row.get(1)?, row.get(2)?))
            })
            .optional()?;
        let last_success: Option<i64> = conn
            .prepare_cached(
                "SELECT started_at FROM attempts
                 WHERE subscription = ?1 AND status BETWEEN 200 AND 299
                 ORDER BY started_at DESC LIMIT 1",
            )?
            .query_row(params![name], |row| row.get(0))
            .optional()?;
        let failing_streak: u64 = conn
            .prepare_cached(&format!(
                "SELECT COUNT(*) FROM attempts
                 WHERE subscription = ?1 AND started_at > ?2 AND {FAILED}"
            ))?
            .query_row(params![name, last_success.unwrap_or(i64::MIN)], |row| {
                row.get(0)
            })?;
        let pending: u64 = conn
            .prepare_cached(
                "SELECT COUNT(*) FROM deliveries WHERE state = 'pending' AND subscription = ?1",
            )?
            .query_row(params![name], |row| row.get(0))?;
        let (last_attempt_at, last_status, last_error) = match last {
            Some((at, status, error)) => (Some(at), status, error),
            None => (None, None, None),
        };
        Ok(SubscriptionHealth {
            subscription: name.to_string(),
            paused: false,
            attempts_counted: window.len() as u64,
            success_rate: (!window.is_empty()).then(|| successes as f64 / window.len() as f64),
            latency_median_ms: nearest_rank(&durations, 50),
            latency_p95_ms: nearest_rank(&durations, 95),
            last_attempt_at,
            last_status,
            last_error,
            failing_streak,
            pending,
            ..SubscriptionHealth::default()
        })
    }

    /// Names of the subscriptions paused from the admin page, sorted.
    pub fn paused_subscriptions(&self) -> Result<Vec<String>, QueryError> {
        Ok(self
            .conn
            .prepare_cached(
                "SELECT subscription FROM subscription_state WHERE paused = 1
                 ORDER BY subscription",
            )?
            .query_map([], |row| row.get(0))?
            .collect::<Result<_, _>>()?)
    }
}

/// The nearest-rank percentile `p` (1 to 100) of sorted values: the smallest value with
/// at least p % of the values at or below it.
pub(super) fn nearest_rank(sorted: &[i64], p: usize) -> Option<i64> {
    let rank = (sorted.len() * p).div_ceil(100).max(1);
    sorted.get(rank - 1).copied()
}
