//! The history the admin page's charts read (`charts.rs`), kept as it happens so that no
//! chart has to scan the attempts: per subscription and per minute and hour, the
//! attempts by outcome, the deliveries that ended delivered or dead, and a histogram of
//! attempt latency (for p50/p95); and the queue's depth and oldest pending age, sampled
//! once a minute. Rows with subscription `''` hold the sum over every subscription, so
//! the overview reads one row per bucket however many subscriptions there are.
//!
//! Each node adds to rows of its own (see [`writer_key`]); a bucket is the sum of its rows.
//!
//! Writes ride in the writer's transaction: attempt outcomes with the attempts
//! themselves (`writes::record`), queue samples and pruning with each retention step
//! (`prune.rs`). Minute rows are kept [`MINUTE_ROWS_KEPT_MS`] (the 1 h and 24 h
//! charts), hour rows as long as retention keeps final deliveries, at least
//! [`HOUR_ROWS_KEPT_MIN_MS`] (the 7 d and 30 d charts).

use std::collections::HashMap;

use crate::store::db::{params, Db, Dialect, OptionalExtension, ToValue};

use super::{AttemptRecord, NextStep};

pub const MINUTE: i64 = 60_000;
pub const HOUR: i64 = 60 * MINUTE;
/// The sum over every subscription.
pub const ALL: &str = "";
/// Minute rows serve the charts of the last 24 h; a day more covers clocks and restarts.
pub const MINUTE_ROWS_KEPT_MS: i64 = 48 * HOUR;
/// Hour rows serve the 30 d chart, whatever retention keeps of the deliveries.
pub const HOUR_ROWS_KEPT_MIN_MS: i64 = 31 * 24 * HOUR;

/// Upper bounds (ms, inclusive) of the latency histogram's buckets, about 1.25x apart; a
/// last bucket takes everything slower. A percentile is reported as its bucket's bound
/// (capped at the slowest attempt seen), so it is at most one step too high.
pub const LATENCY_BOUNDS: [i64; 46] = [
    1, 2, 3, 4, 5, 6, 8, 10, 12, 15, 20, 25, 30, 40, 50, 60, 80, 100, 120, 150, 200, 250, 300, 400,
    500, 600, 800, 1_000, 1_200, 1_500, 2_000, 2_500, 3_000, 4_000, 5_000, 6_000, 8_000, 10_000,
    12_000, 15_000, 20_000, 25_000, 30_000, 40_000, 50_000, 60_000,
];
pub const LATENCY_BUCKETS: usize = LATENCY_BOUNDS.len() + 1;

/// A latency histogram: counts per bucket of [`LATENCY_BOUNDS`].
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Histogram(pub [u32; LATENCY_BUCKETS]);

impl Default for Histogram {
    fn default() -> Self {
        Histogram([0; LATENCY_BUCKETS])
    }
}

impl Histogram {
    pub fn add(&mut self, duration_ms: i64) {
        let bucket = LATENCY_BOUNDS
            .iter()
            .position(|bound| duration_ms <= *bound)
            .unwrap_or(LATENCY_BOUNDS.len());
        self.0[bucket] = self.0[bucket].saturating_add(1);
    }

    pub fn merge(&mut self, other: &Histogram) {
        for (mine, theirs) in self.0.iter_mut().zip(other.0.iter()) {
            *mine = mine.saturating_add(*theirs);
        }
    }

    /// Little-endian u32 per bucket.
    pub fn to_blob(&self) -> Vec<u8> {
        self.0.iter().flat_map(|n| n.to_le_bytes()).collect()
    }

    /// Reads [`to_blob`](Self::to_blob)'s bytes; a blob of another length (a future
    /// layout, a damaged row) gives what it holds of the known buckets.
    pub fn from_blob(blob: &[u8]) -> Histogram {
        let mut histogram = Histogram::default();
        for (slot, chunk) in histogram.0.iter_mut().zip(blob.chunks_exact(4)) {
            *slot = u32::from_le_bytes([chunk[0], chunk[1], chunk[2], chunk[3]]);
        }
        histogram
    }

    pub fn count(&self) -> u64 {
        self.0.iter().map(|n| u64::from(*n)).sum()
    }

    /// The nearest-rank percentile `p` (1 to 100) as its bucket's upper bound, no more
    /// than `max_ms`; `None` when empty.
    pub fn percentile(&self, p: u64, max_ms: i64) -> Option<i64> {
        let n = self.count();
        if n == 0 {
            return None;
        }
        let rank = (n * p).div_ceil(100).max(1);
        let mut seen = 0;
        for (bucket, count) in self.0.iter().enumerate() {
            seen += u64::from(*count);
            if seen >= rank {
                let bound = LATENCY_BOUNDS.get(bucket).copied().unwrap_or(max_ms);
                return Some(bound.min(max_ms));
            }
        }
        Some(max_ms)
    }
}

/// What a batch of attempts adds to one row.
#[derive(Debug, Default)]
struct Add {
    ok: i64,
    failed: i64,
    delivered: i64,
    dead: i64,
    max_ms: i64,
    latency: Histogram,
}

/// [`add_attempts`] in a savepoint of its own: should it fail, the charts miss these
/// attempts (and the log says so), but the attempts and their deliveries' new states,
/// written before it in the same transaction, stand.
pub(super) fn add_attempts_apart(tx: &Db, records: &[AttemptRecord], finished: &[bool]) {
    let outcome = tx
        .hold_batch("SAVEPOINT rollup")
        .and_then(|()| add_attempts(tx, records, finished));
    let closed = match &outcome {
        Ok(()) => tx.hold_batch("RELEASE rollup"),
        Err(_) => tx.execute_batch("ROLLBACK TO rollup; RELEASE rollup"),
    };
    if let Err(err) = outcome.and(closed) {
        tracing::warn!(%err, "the charts' history misses {} attempts", records.len());
    }
}

/// Adds attempt outcomes to the minute and hour rows of their subscription and of
/// [`ALL`]. `finished[i]` says whether record `i` changed its delivery's state (one
/// cancelled meanwhile keeps its attempt but did not end delivered or dead).
pub(super) fn add_attempts(
    tx: &Db,
    records: &[AttemptRecord],
    finished: &[bool],
) -> crate::store::db::Result<()> {
    let mut adds: HashMap<(i64, &str, i64), Add> = HashMap::new();
    for (record, finished) in records.iter().zip(finished) {
        for span in [MINUTE, HOUR] {
            let start = record.started_at_ms.div_euclid(span) * span;
            for subscription in [record.subscription.as_str(), ALL] {
                let add = adds.entry((span, subscription, start)).or_default();
                if is_success(record.status) {
                    add.ok += 1;
                } else {
                    add.failed += 1;
                }
                match (record.next, finished) {
                    (NextStep::Delivered, true) => add.delivered += 1,
                    (NextStep::Dead, true) => add.dead += 1,
                    _ => {}
                }
                add.max_ms = add.max_ms.max(record.duration_ms);
                add.latency.add(record.duration_ms);
            }
        }
    }
    let node = writer_key(tx.dialect());
    let adds: Vec<((i64, &str, i64), Add)> = adds.into_iter().collect();
    // Two statements per chunk of rows, not two per row: on PostgreSQL each statement is
    // a round trip to the server.
    for chunk in super::writes::chunks(&adds) {
        let mut old: HashMap<(i64, &str, i64), Histogram> = HashMap::new();
        let sql = format!(
            "SELECT span, subscription, start, latency FROM delivery_rollups
             WHERE node = ? AND (span, subscription, start) IN ({})",
            super::writes::rows(chunk.len(), 3)
        );
        let mut values: Vec<&dyn ToValue> = Vec::with_capacity(1 + chunk.len() * 3);
        values.push(&node);
        for ((span, subscription, start), _) in chunk {
            values.extend([span as &dyn ToValue, subscription, start]);
        }
        tx.prepare_cached(&sql)?.for_each(&values[..], |row| {
            let key: (i64, String, i64) = (row.get(0)?, row.get(1)?, row.get(2)?);
            let blob: Vec<u8> = row.get(3)?;
            if let Some(((span, subscription, start), _)) =
                chunk.iter().find(|((span, subscription, start), _)| {
                    (*span, *subscription, *start) == (key.0, key.1.as_str(), key.2)
                })
            {
                old.insert((*span, subscription, *start), Histogram::from_blob(&blob));
            }
            Ok(())
        })?;
        let sql = format!(
            "INSERT INTO delivery_rollups (span, subscription, start, attempts_ok,
                                           attempts_failed, delivered, dead, latency_max_ms,
                                           latency, node)
             VALUES {}
             ON CONFLICT (span, subscription, start, node) DO UPDATE SET
                 attempts_ok = delivery_rollups.attempts_ok + excluded.attempts_ok,
                 attempts_failed = delivery_rollups.attempts_failed + excluded.attempts_failed,
                 delivered = delivery_rollups.delivered + excluded.delivered,
                 dead = delivery_rollups.dead + excluded.dead,
                 latency_max_ms = {},
                 latency = excluded.latency",
            super::writes::rows(chunk.len(), 10),
            tx.dialect()
                .greatest("delivery_rollups.latency_max_ms", "excluded.latency_max_ms")
        );
        let blobs: Vec<Vec<u8>> = chunk
            .iter()
            .map(|(key, add)| {
                let mut latency = add.latency.clone();
                if let Some(old) = old.get(key) {
                    latency.merge(old);
                }
                latency.to_blob()
            })
            .collect();
        let mut values: Vec<&dyn ToValue> = Vec::with_capacity(chunk.len() * 10);
        for (((span, subscription, start), add), blob) in chunk.iter().zip(&blobs) {
            values.extend([
                span as &dyn ToValue,
                subscription,
                start,
                &add.ok,
                &add.failed,
                &add.delivered,
                &add.dead,
                &add.max_ms,
                blob,
                &node,
            ]);
        }
        tx.prepare_cached(&sql)?.execute(&values[..])?;
    }
    Ok(())
}

/// The `node` of the rows this process's writer adds to. SQLite has one writer: ''.
/// On PostgreSQL each process has its own rows (host name, process id and start time),
/// so two nodes never update one row: their writers would queue behind each other's
/// commits, and a histogram read before another node's write would lose that write.
/// The charts sum a bucket's rows whatever their node.
fn writer_key(dialect: Dialect) -> &'static str {
    static KEY: std::sync::OnceLock<String> = std::sync::OnceLock::new();
    match dialect {
        Dialect::Sqlite => "",
        Dialect::Postgres => KEY.get_or_init(|| {
            let started = std::time::SystemTime::now()
                .duration_since(std::time::UNIX_EPOCH)
                .map_or(0, |at| at.as_nanos());
            format!(
                "{}:{}:{started:x}",
                crate::nodes::hostname(),
                std::process::id()
            )
        }),
    }
}

/// Samples the queue once per minute: the first call in a minute stores the depth and
/// oldest pending age in that minute's row and raises its hour's row to them (the hour
/// keeps the worst it saw); later calls in the minute cost one probe.
pub(super) fn sample_queue(tx: &Db, now_ms: i64) -> crate::store::db::Result<()> {
    let minute = now_ms.div_euclid(MINUTE) * MINUTE;
    let taken: bool = tx
        .prepare_cached("SELECT 1 FROM queue_samples WHERE span = ?1 AND start = ?2")?
        .query_row(params![MINUTE, minute], |_| Ok(()))
        .optional()?
        .is_some();
    if taken {
        return Ok(());
    }
    let (depth, oldest): (i64, Option<i64>) = tx
        .prepare_cached("SELECT COUNT(*), MIN(created_at) FROM deliveries WHERE state = 'pending'")?
        .query_row([], |row| Ok((row.get(0)?, row.get(1)?)))?;
    let age = oldest.map(|at| (now_ms - at).max(0));
    let dialect = tx.dialect();
    let mut write = tx.prepare_cached(&format!(
        "INSERT INTO queue_samples (span, start, depth, oldest_pending_age_ms)
         VALUES (?1, ?2, ?3, ?4)
         ON CONFLICT (span, start) DO UPDATE SET
             depth = {},
             oldest_pending_age_ms = {}",
        dialect.greatest("queue_samples.depth", "excluded.depth"),
        dialect.greatest(
            "COALESCE(queue_samples.oldest_pending_age_ms, 0)",
            "COALESCE(excluded.oldest_pending_age_ms, 0)"
        )
    ))?;
    write.execute(params![MINUTE, minute, depth, age])?;
    write.execute(params![HOUR, now_ms.div_euclid(HOUR) * HOUR, depth, age])?;
    Ok(())
}

/// Deletes at most `limit` rows of each table and span past their time: minute rows
/// older than [`MINUTE_ROWS_KEPT_MS`], hour rows older than `hours_before_ms` (never
/// newer than [`HOUR_ROWS_KEPT_MIN_MS`] ago). Returns how many rows went.
pub(super) fn prune(
    tx: &Db,
    hours_before_ms: i64,
    now_ms: i64,
    limit: usize,
) -> crate::store::db::Result<usize> {
    let cutoffs = [
        (MINUTE, now_ms - MINUTE_ROWS_KEPT_MS),
        (HOUR, hours_before_ms.min(now_ms - HOUR_ROWS_KEPT_MIN_MS)),
    ];
    let mut deleted = 0;
    for (span, before) in cutoffs {
        deleted += tx
            .prepare_cached(
                "DELETE FROM delivery_rollups WHERE (span, subscription, start, node) IN
                     (SELECT span, subscription, start, node FROM delivery_rollups
                      WHERE span = ?1 AND start < ?2 ORDER BY start LIMIT ?3)",
            )?
            .execute(params![span, before, limit as i64])?;
        deleted += tx
            .prepare_cached(
                "DELETE FROM queue_samples WHERE (span, start) IN
                     (SELECT span, start FROM queue_samples
                      WHERE span = ?1 AND start < ?2 ORDER BY start LIMIT ?3)",
            )?
            .execute(params![span, before, limit as i64])?;
    }
    Ok(deleted)
}

pub(super) fn is_success(status: Option<u16>) -> bool {
    status.is_some_and(|s| (200..300).contains(&s))
}
