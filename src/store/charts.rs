//! What the admin page's charts and the overview's summaries read: series over a time
//! range, per-row trends, failures grouped by subscription and reason, and the success
//! rates per attempt and per delivery. Series come from the history `rollup.rs` keeps,
//! so a chart reads at most a few hundred rows per subscription however long the store's
//! history is; the failure groups read only failed attempts of the last day (bounded).

use std::collections::HashMap;

use crate::store::db::params;
use serde::Serialize;

use super::rollup::{Histogram, ALL, HOUR, MINUTE};
use super::{QueryError, Reader};

/// The time ranges a chart offers.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum ChartRange {
    Hour,
    Day,
    Week,
    Month,
}

impl ChartRange {
    pub const NAMES: &'static str = "1h, 24h, 7d or 30d";

    pub fn parse(text: &str) -> Result<ChartRange, QueryError> {
        Ok(match text {
            "1h" => ChartRange::Hour,
            "24h" => ChartRange::Day,
            "7d" => ChartRange::Week,
            "30d" => ChartRange::Month,
            other => {
                return Err(QueryError::BadInput(format!(
                    "unknown range {other:?}; expected {}",
                    Self::NAMES
                )))
            }
        })
    }

    pub fn name(self) -> &'static str {
        match self {
            ChartRange::Hour => "1h",
            ChartRange::Day => "24h",
            ChartRange::Week => "7d",
            ChartRange::Month => "30d",
        }
    }

    /// (length, width of a point, width of the stored rows it is summed from), in ms.
    fn shape(self) -> (i64, i64, i64) {
        match self {
            ChartRange::Hour => (HOUR, MINUTE, MINUTE),
            ChartRange::Day => (24 * HOUR, 15 * MINUTE, MINUTE),
            ChartRange::Week => (7 * 24 * HOUR, HOUR, HOUR),
            ChartRange::Month => (30 * 24 * HOUR, 6 * HOUR, HOUR),
        }
    }
}

/// One point of a delivery chart: what happened from `at` for `step_ms`.
#[derive(Debug, Clone, Default, PartialEq, Serialize)]
pub struct ChartPoint {
    pub at: i64,
    /// Deliveries that ended delivered.
    pub delivered: u64,
    /// Attempts that failed (each retry counts).
    pub failed_attempts: u64,
    /// Deliveries that ended dead (retries used up).
    pub dead: u64,
    pub attempts: u64,
    /// Attempt latency (ms) from a histogram: the upper edge of the bucket holding the
    /// percentile, at most the slowest attempt; `None` without attempts.
    pub latency_p50_ms: Option<i64>,
    pub latency_p95_ms: Option<i64>,
}

/// The queue at a point: the most pending deliveries and the longest wait sampled in
/// it; both `None` where nothing was sampled (posthorn was not running).
#[derive(Debug, Clone, Default, PartialEq, Serialize)]
pub struct QueuePoint {
    pub at: i64,
    pub depth: Option<u64>,
    pub oldest_pending_age_ms: Option<i64>,
}

/// A chart's data: oldest point first, one per `step_ms` from `from_ms` to `to_ms`.
#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct Charts {
    pub range: &'static str,
    /// `None` for every subscription together.
    pub subscription: Option<String>,
    pub from_ms: i64,
    pub to_ms: i64,
    pub step_ms: i64,
    pub points: Vec<ChartPoint>,
    /// The queue (only for every subscription together: it is not kept per one).
    #[serde(skip_serializing_if = "Option::is_none")]
    pub queue: Option<Vec<QueuePoint>>,
}

/// A subscription's last 24 h, hour by hour, for the small line in its row.
#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct Trend {
    pub subscription: String,
    pub from_ms: i64,
    pub step_ms: i64,
    pub delivered: Vec<u64>,
    pub failed_attempts: Vec<u64>,
}

/// The two success rates, told apart: per attempt (a receiver that needs three tries
/// for each delivery scores 33 %) and per delivery (delivered in the end, of those that
/// finished: 100 % for the same receiver).
#[derive(Debug, Clone, Default, PartialEq, Serialize)]
pub struct Rates {
    pub attempts: u64,
    /// 2xx attempts / attempts, 0.0 to 1.0; `None` without attempts.
    pub attempt_success_rate: Option<f64>,
    /// Deliveries that ended (delivered or dead) in the window.
    pub deliveries_finished: u64,
    /// Delivered / finished, 0.0 to 1.0; `None` when none finished.
    pub delivery_success_rate: Option<f64>,
    /// Start of the window (unix ms): the hour that began 23 to 24 h ago.
    pub since_ms: i64,
}

/// Failed attempts of one subscription for one reason.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct FailureGroup {
    pub subscription: String,
    /// `HTTP 503`, or the error without a response (timeout, refused, ...).
    pub reason: String,
    pub status: Option<u16>,
    pub count: u64,
    pub first_at: i64,
    pub last_at: i64,
    /// The delivery of the newest of them, to open.
    pub last_delivery_id: i64,
}

/// Failed attempts the grouping reads at most: a receiver failing thousands of times a
/// minute costs the overview this much and no more (counts then say "at least").
pub const FAILURE_SCAN_LIMIT: usize = 20_000;
/// Groups the overview shows.
pub const FAILURE_GROUPS: usize = 20;
/// Reasons one subscription may take of them, so a receiver failing in many ways does
/// not push the others off the list.
pub const FAILURE_REASONS_PER_SUBSCRIPTION: usize = 5;
const DAY_MS: i64 = 24 * HOUR;

#[derive(Default)]
struct Sum {
    ok: u64,
    failed: u64,
    delivered: u64,
    dead: u64,
    max_ms: i64,
    latency: Histogram,
}

impl Reader {
    /// The delivery chart (and, for every subscription together, the queue chart) of
    /// `range` ending now.
    pub fn charts(
        &self,
        subscription: Option<&str>,
        range: ChartRange,
        now_ms: i64,
    ) -> Result<Charts, QueryError> {
        let (length, step, span) = range.shape();
        let to = now_ms.div_euclid(step) * step + step;
        let from = to - length;
        let mut sums: HashMap<i64, Sum> = HashMap::new();
        let mut rows = self.conn.prepare_cached(
            "SELECT start, attempts_ok, attempts_failed, delivered, dead, latency_max_ms, latency
             FROM delivery_rollups
             WHERE span = ?1 AND subscription = ?2 AND start >= ?3 AND start < ?4",
        )?;
        rows.for_each(
            params![span, subscription.unwrap_or(ALL), from, to],
            |row| {
                let start: i64 = row.get(0)?;
                let sum = sums.entry(start.div_euclid(step) * step).or_default();
                sum.ok += row.get::<u64>(1)?;
                sum.failed += row.get::<u64>(2)?;
                sum.delivered += row.get::<u64>(3)?;
                sum.dead += row.get::<u64>(4)?;
                sum.max_ms = sum.max_ms.max(row.get(5)?);
                let blob: Vec<u8> = row.get(6)?;
                sum.latency.merge(&Histogram::from_blob(&blob));
                Ok(())
            },
        )?;
        let points = (from..to)
            .step_by(step as usize)
            .map(|at| match sums.get(&at) {
                None => ChartPoint {
                    at,
                    ..ChartPoint::default()
                },
                Some(sum) => ChartPoint {
                    at,
                    delivered: sum.delivered,
                    failed_attempts: sum.failed,
                    dead: sum.dead,
                    attempts: sum.ok + sum.failed,
                    latency_p50_ms: sum.latency.percentile(50, sum.max_ms),
                    latency_p95_ms: sum.latency.percentile(95, sum.max_ms),
                },
            })
            .collect();
        let queue = match subscription {
            Some(_) => None,
            None => Some(self.queue_points(from, to, step, span)?),
        };
        Ok(Charts {
            range: range.name(),
            subscription: subscription.map(str::to_string),
            from_ms: from,
            to_ms: to,
            step_ms: step,
            points,
            queue,
        })
    }

    fn queue_points(
        &self,
        from: i64,
        to: i64,
        step: i64,
        span: i64,
    ) -> Result<Vec<QueuePoint>, QueryError> {
        let mut worst: HashMap<i64, (u64, Option<i64>)> = HashMap::new();
        let mut stmt = self.conn.prepare_cached(
            "SELECT start, depth, oldest_pending_age_ms FROM queue_samples
             WHERE span = ?1 AND start >= ?2 AND start < ?3",
        )?;
        stmt.for_each(params![span, from, to], |row| {
            let start: i64 = row.get(0)?;
            let depth: u64 = row.get(1)?;
            let age: Option<i64> = row.get(2)?;
            let slot = worst
                .entry(start.div_euclid(step) * step)
                .or_insert((0, None));
            slot.0 = slot.0.max(depth);
            slot.1 = match (slot.1, age) {
                (Some(a), Some(b)) => Some(a.max(b)),
                (a, b) => a.or(b),
            };
            Ok(())
        })?;
        Ok((from..to)
            .step_by(step as usize)
            .map(|at| {
                let found = worst.get(&at);
                QueuePoint {
                    at,
                    depth: found.map(|w| w.0),
                    oldest_pending_age_ms: found.and_then(|w| w.1),
                }
            })
            .collect())
    }

    /// The last 24 h of each subscription in `names`, hour by hour (the current hour
    /// last).
    pub fn trends(&self, names: &[String], now_ms: i64) -> Result<Vec<Trend>, QueryError> {
        let to = now_ms.div_euclid(HOUR) * HOUR + HOUR;
        let from = to - DAY_MS;
        let mut stmt = self.conn.prepare_cached(
            "SELECT start, delivered, attempts_failed FROM delivery_rollups
             WHERE span = ?1 AND subscription = ?2 AND start >= ?3 AND start < ?4",
        )?;
        names
            .iter()
            .map(|name| {
                let mut delivered = vec![0; 24];
                let mut failed = vec![0; 24];
                stmt.for_each(params![HOUR, name, from, to], |row| {
                    let start: i64 = row.get(0)?;
                    if let Ok(i) = usize::try_from((start - from) / HOUR) {
                        if i < 24 {
                            delivered[i] += row.get::<u64>(1)?;
                            failed[i] += row.get::<u64>(2)?;
                        }
                    }
                    Ok(())
                })?;
                Ok(Trend {
                    subscription: name.clone(),
                    from_ms: from,
                    step_ms: HOUR,
                    delivered,
                    failed_attempts: failed,
                })
            })
            .collect()
    }

    /// Both success rates of `subscription` (every one with `None`) over about the last
    /// 24 h: the hour rows from the hour that began 23 h before this one.
    pub fn rates(&self, subscription: Option<&str>, now_ms: i64) -> Result<Rates, QueryError> {
        let since = now_ms.div_euclid(HOUR) * HOUR - 23 * HOUR;
        let (ok, failed, delivered, dead): (u64, u64, u64, u64) = self
            .conn
            .prepare_cached(
                // CAST: PostgreSQL sums BIGINTs as NUMERIC.
                "SELECT CAST(COALESCE(SUM(attempts_ok), 0) AS BIGINT),
                        CAST(COALESCE(SUM(attempts_failed), 0) AS BIGINT),
                        CAST(COALESCE(SUM(delivered), 0) AS BIGINT),
                        CAST(COALESCE(SUM(dead), 0) AS BIGINT)
                 FROM delivery_rollups WHERE span = ?1 AND subscription = ?2 AND start >= ?3",
            )?
            .query_row(params![HOUR, subscription.unwrap_or(ALL), since], |row| {
                Ok((row.get(0)?, row.get(1)?, row.get(2)?, row.get(3)?))
            })?;
        let ratio = |part: u64, whole: u64| (whole > 0).then(|| part as f64 / whole as f64);
        Ok(Rates {
            attempts: ok + failed,
            attempt_success_rate: ratio(ok, ok + failed),
            deliveries_finished: delivered + dead,
            delivery_success_rate: ratio(delivered, delivered + dead),
            since_ms: since,
        })
    }

    /// Failed attempts of the last 24 h (the newest [`FAILURE_SCAN_LIMIT`] at most),
    /// grouped by subscription and reason, the group failing most recently first; at
    /// most `limit` groups, and at most [`FAILURE_REASONS_PER_SUBSCRIPTION`] of one
    /// subscription.
    pub fn failure_groups(
        &self,
        now_ms: i64,
        limit: usize,
    ) -> Result<Vec<FailureGroup>, QueryError> {
        let mut stmt = self.conn.prepare_cached(
            "SELECT subscription, status, CASE WHEN status IS NULL THEN error END AS reason,
                    COUNT(*), MIN(started_at), MAX(started_at)
             FROM (SELECT subscription, status, error, started_at FROM attempts
                   WHERE (status IS NULL OR status < 200 OR status > 299)
                     AND started_at >= ?1
                   ORDER BY started_at DESC LIMIT ?2) AS recent
             GROUP BY subscription, status, reason
             ORDER BY MAX(started_at) DESC LIMIT ?3",
        )?;
        let rows = stmt.query_map(
            params![
                now_ms - DAY_MS,
                FAILURE_SCAN_LIMIT as i64,
                (limit * 10) as i64
            ],
            |row| {
                let subscription: Option<String> = row.get(0)?;
                let status: Option<u16> = row.get(1)?;
                let error: Option<String> = row.get(2)?;
                Ok((
                    subscription.unwrap_or_default(),
                    status,
                    error,
                    row.get::<u64>(3)?,
                    row.get::<i64>(4)?,
                    row.get::<i64>(5)?,
                ))
            },
        )?;
        let mut per_subscription: HashMap<String, usize> = HashMap::new();
        let mut groups = Vec::new();
        for row in rows {
            let row = row?;
            let taken = per_subscription.entry(row.0.clone()).or_default();
            if *taken < FAILURE_REASONS_PER_SUBSCRIPTION && groups.len() < limit {
                *taken += 1;
                groups.push(row);
            }
        }
        let mut newest = self.conn.prepare_cached(
            "SELECT delivery_id FROM attempts
             WHERE subscription = ?1 AND started_at = ?2
               AND status IS NOT DISTINCT FROM ?3
             ORDER BY id DESC LIMIT 1",
        )?;
        groups
            .into_iter()
            .map(|(subscription, status, error, count, first_at, last_at)| {
                let last_delivery_id = newest
                    .query_row(params![subscription, last_at, status], |row| row.get(0))
                    .unwrap_or(0);
                let reason = match (status, &error) {
                    (Some(status), _) => format!("HTTP {status}"),
                    (None, Some(error)) => error.clone(),
                    (None, None) => "no response".to_string(),
                };
                Ok(FailureGroup {
                    subscription,
                    reason,
                    status,
                    count,
                    first_at,
                    last_at,
                    last_delivery_id,
                })
            })
            .collect()
    }
}

#[cfg(test)]
mod tests;
