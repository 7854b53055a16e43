//! The read side of the admin page, the JSON API and the CLI: every question they ask the
//! store, each a method on [`Reader`] with typed inputs and a `Serialize` output, so the
//! web layer only parses, calls and maps. The admin actions that write are writer
//! commands (`writer.rs`).
//!
//! Lists are newest first and paginated by keyset, never by offset: the cursor names the
//! last row of a page, and the next page starts strictly after it, so rows that share a
//! timestamp are neither repeated nor skipped and a deep page costs what the first does.
//! Each filter of the delivery log has an index of migration 4 (a test checks the plans).

use crate::store::db::{params, Dialect, OptionalExtension, OwnedValue as Value, Row};
use serde::{Deserialize, Serialize};

use super::rollup::is_success;
use super::Reader;

/// Rows a list returns when the caller does not say.
pub const DEFAULT_PAGE: usize = 50;
/// Most rows one page may hold.
pub const MAX_PAGE: usize = 200;
/// Attempts the health of a subscription looks at, at most (and only of the last 24 h).
pub const HEALTH_WINDOW: usize = 1000;
const DAY_MS: i64 = 24 * 60 * 60 * 1000;

/// A question the store cannot answer: bad input (a 400 for the API) or the database.
#[derive(Debug, thiserror::Error)]
pub enum QueryError {
    #[error("{0}")]
    BadInput(String),
    #[error("while reading the store: {0}")]
    Store(#[from] crate::store::db::Error),
}

/// One page of a list, and the cursor of the next page (`None` on the last).
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct Page<T> {
    pub items: Vec<T>,
    pub next_cursor: Option<String>,
}

/// Deliveries by state; `failing` are the pending ones that have failed at least once
/// (they are also counted in `pending`).
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct StateCounts {
    pub pending: u64,
    pub delivered: u64,
    pub dead: u64,
    pub cancelled: u64,
    pub failing: u64,
}

/// One failed attempt.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct FailureRow {
    pub delivery_id: i64,
    pub subscription: String,
    pub event_id: String,
    pub attempt: u32,
    pub started_at: i64,
    pub duration_ms: i64,
    pub status: Option<u16>,
    pub error: Option<String>,
}

/// The overview page.
#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct Overview {
    pub events_total: u64,
    pub events_last_24h: u64,
    pub deliveries: StateCounts,
    /// Pending deliveries: the queue.
    pub queue_depth: u64,
    /// How long the oldest pending delivery has waited, in ms; `None` with none pending.
    pub oldest_pending_age_ms: Option<i64>,
    /// The newest failed attempts (non-2xx or no response), newest first.
    pub recent_failures: Vec<FailureRow>,
}

/// The delivery queue, for the metrics scraped every few seconds: two index lookups, not
/// the overview's counts over every table.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Serialize)]
pub struct Queue {
    /// Pending deliveries (waiting, due or in flight).
    pub depth: u64,
    /// How long the oldest pending delivery has waited, in ms; `None` with none pending.
    pub oldest_pending_age_ms: Option<i64>,
}

/// How one subscription is doing. Rates and latencies cover its attempts of the last
/// 24 h, at most the newest [`HEALTH_WINDOW`]; `None` where there were none. The API's
/// `health` object is this without the name and pause flag, which it shows beside it.
#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
pub struct SubscriptionHealth {
    #[serde(skip)]
    pub subscription: String,
    #[serde(skip)]
    pub paused: bool,
    /// Attempts the rate and latencies were computed from.
    pub attempts_counted: u64,
    /// Share of 2xx attempts, 0.0 to 1.0.
    pub success_rate: Option<f64>,
    /// Nearest-rank median and 95th percentile of `duration_ms`.
    pub latency_median_ms: Option<i64>,
    pub latency_p95_ms: Option<i64>,
    /// The newest attempt ever, however old.
    pub last_attempt_at: Option<i64>,
    pub last_status: Option<u16>,
    pub last_error: Option<String>,
    /// Failed attempts since the last successful one (all of them if none succeeded).
    pub failing_streak: u64,
    pub pending: u64,
    /// Why posthorn paused it (410 Gone, failing too long); `None` when running or
    /// paused by an operator.
    #[serde(default)]
    pub pause_reason: Option<String>,
    /// Failing without a success since (unix ms); auto-pause counts from here.
    #[serde(default)]
    pub failing_since: Option<i64>,
    /// Its endpoint's circuit breaker when not closed: `open` (held back) or `probing`.
    #[serde(default)]
    pub breaker: Option<String>,
    /// Per delivery, beside `success_rate` per attempt: of its deliveries that ended in
    /// about the last 24 h (`charts::Rates`), the share delivered.
    #[serde(default)]
    pub delivery_success_rate: Option<f64>,
    #[serde(default)]
    pub deliveries_finished: u64,
}

/// Which deliveries to list. Empty fields do not filter.
#[derive(Debug, Clone, Default)]
pub struct DeliveryFilter {
    pub subscription: Option<String>,
    /// `pending`, `delivered`, `dead` or `cancelled`.
    pub state: Option<String>,
    /// A conversation id, or a pattern where `*` stands for any text (`c-2*`).
    pub conversation_id: Option<String>,
    /// One event's deliveries.
    pub event_id: Option<String>,
    /// An event type, or a pattern where `*` stands for any text (`conversation.*`).
    pub event_type: Option<String>,
    /// Created at or after (unix ms).
    pub from_ms: Option<i64>,
    /// Created before (unix ms).
    pub to_ms: Option<i64>,
    /// `next_cursor` of the previous page.
    pub cursor: Option<String>,
    /// 0 for [`DEFAULT_PAGE`]; capped at [`MAX_PAGE`].
    pub limit: usize,
}

/// A row of the delivery log.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct DeliveryRow {
    pub id: i64,
    pub event_id: String,
    pub event_type: String,
    pub conversation_id: Option<String>,
    pub subscription: String,
    pub state: String,
    pub attempts: u32,
    /// When the next attempt falls due (pending only).
    pub next_attempt_at: Option<i64>,
    /// A worker is sending it right now.
    pub in_flight: bool,
    pub created_at: i64,
    pub updated_at: i64,
    pub last_status: Option<u16>,
    pub last_error: Option<String>,
}

/// An event as the delivery page shows it.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct EventView {
    pub seq: i64,
    pub id: String,
    pub event_type: String,
    pub conversation_id: Option<String>,
    pub project_id: Option<String>,
    pub received_at: i64,
    pub source: String,
    /// The exact delivery body; `None` once retention dropped it (see
    /// `payload_dropped_at`).
    pub body: Option<String>,
    pub payload_dropped_at: Option<i64>,
}

/// One attempt of a delivery.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct AttemptView {
    pub attempt: u32,
    pub started_at: i64,
    pub duration_ms: i64,
    pub status: Option<u16>,
    pub error: Option<String>,
    pub response_snippet: Option<String>,
    /// The fingerprint of the include/exclude that shaped what this attempt sent
    /// (`crate::shape::Shaping::fingerprint`); `None`: the whole body.
    #[serde(default)]
    pub shaping: Option<String>,
}

impl AttemptView {
    /// A 2xx answer.
    pub fn succeeded(&self) -> bool {
        is_success(self.status)
    }
}

/// A delivery in full: the row, its event and every attempt, oldest first.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct DeliveryDetail {
    pub delivery: DeliveryRow,
    pub event: EventView,
    pub attempts: Vec<AttemptView>,
}

#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct RejectionRow {
    pub id: i64,
    pub at: i64,
    pub source: String,
    pub line: Option<u64>,
    pub reason: String,
    pub snippet: Option<String>,
}

#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct AuditRow {
    pub id: i64,
    pub at: i64,
    pub actor: String,
    /// The client address an admin action came from; `None` for reloads.
    pub origin: Option<String>,
    pub action: String,
    pub detail: String,
    pub result: String,
}

/// How the event type filter is matched.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum TypeFilter {
    Exact(String),
    /// The pattern in SQLite `GLOB` syntax, every glob character but `*` escaped.
    Glob(String),
}

impl TypeFilter {
    pub fn parse(pattern: &str) -> TypeFilter {
        if !pattern.contains('*') {
            return TypeFilter::Exact(pattern.to_string());
        }
        let mut glob = String::with_capacity(pattern.len());
        for c in pattern.chars() {
            match c {
                '?' => glob.push_str("[?]"),
                '[' => glob.push_str("[[]"),
                c => glob.push(c),
            }
        }
        TypeFilter::Glob(glob)
    }
}

const DELIVERY_COLUMNS: &str = "d.id, d.event_id, e.type, e.conversation_id, d.subscription,
     d.state, d.attempts, d.next_attempt_at, d.leased_at IS NOT NULL, d.created_at,
     d.updated_at, d.last_status, d.last_error";

fn delivery_row(row: &Row<'_>) -> crate::store::db::Result<DeliveryRow> {
    Ok(DeliveryRow {
        id: row.get(0)?,
        event_id: row.get(1)?,
        event_type: row.get(2)?,
        conversation_id: row.get(3)?,
        subscription: row.get(4)?,
        state: row.get(5)?,
        attempts: row.get(6)?,
        next_attempt_at: row.get(7)?,
        in_flight: row.get(8)?,
        created_at: row.get(9)?,
        updated_at: row.get(10)?,
        last_status: row.get(11)?,
        last_error: row.get(12)?,
    })
}

/// A failed attempt, as SQL: the same words as the partial index `attempts_failed`, so
/// the planner may use it.
const FAILED: &str = "(status IS NULL OR status < 200 OR status > 299)";

fn page_size(limit: usize) -> usize {
    match limit {
        0 => DEFAULT_PAGE,
        n => n.min(MAX_PAGE),
    }
}

/// `created_at.id` of a delivery: where the next page of the log starts.
fn parse_delivery_cursor(cursor: &str) -> Result<(i64, i64), QueryError> {
    cursor
        .split_once('.')
        .and_then(|(at, id)| Some((at.parse().ok()?, id.parse().ok()?)))
        .ok_or_else(|| QueryError::BadInput(format!("not a delivery cursor: {cursor:?}")))
}

fn parse_id_cursor(cursor: &str) -> Result<i64, QueryError> {
    cursor
        .parse()
        .map_err(|_| QueryError::BadInput(format!("not a cursor: {cursor:?}")))
}

/// Cuts the one extra row a list fetched off, and names the next page after the last
/// row kept.
fn paginate<T>(mut items: Vec<T>, size: usize, cursor: impl Fn(&T) -> String) -> Page<T> {
    let next_cursor = if items.len() > size {
        items.truncate(size);
        items.last().map(cursor)
    } else {
        None
    };
    Page { items, next_cursor }
}

/// The delivery log's SQL for `filter`, with its parameters (the page size comes last).
pub(super) fn delivery_list_sql(
    filter: &DeliveryFilter,
    size: usize,
    dialect: Dialect,
) -> Result<(String, Vec<Value>), QueryError> {
    let type_filter = filter.event_type.as_deref().map(TypeFilter::parse);
    let conversation_filter = filter.conversation_id.as_deref().map(TypeFilter::parse);
    // Start from the events when one event or one conversation is named (a conversation
    // holds few); otherwise walk the deliveries newest first through an index in time
    // order and stop at a page. An event type is on the delivery row (migration 6).
    let events_first =
        filter.event_id.is_some() || matches!(conversation_filter, Some(TypeFilter::Exact(_)));
    // Starting from the events, each event's deliveries must be found through
    // UNIQUE (event_seq, subscription). Without statistics the planner may instead take
    // an index on a filtered delivery column for that inner loop (a scan per event);
    // a unary `+` keeps it off those indexes.
    let d = if events_first {
        format!("{}d.", dialect.off_index())
    } else {
        "d.".to_owned()
    };
    let mut clauses: Vec<String> = Vec::new();
    let mut values: Vec<Value> = Vec::new();
    if let Some(subscription) = &filter.subscription {
        clauses.push(format!("{d}subscription = ?"));
        values.push(Value::Text(subscription.clone()));
    }
    if let Some(state) = &filter.state {
        if !matches!(
            state.as_str(),
            "pending" | "delivered" | "dead" | "cancelled"
        ) {
            return Err(QueryError::BadInput(format!(
                "unknown state {state:?}; expected pending, delivered, dead or cancelled"
            )));
        }
        clauses.push(format!("{d}state = ?"));
        values.push(Value::Text(state.clone()));
    }
    if let Some(event_id) = &filter.event_id {
        clauses.push("e.id = ?".into());
        values.push(Value::Text(event_id.clone()));
    }
    match conversation_filter {
        None => {}
        Some(TypeFilter::Exact(conversation)) => {
            clauses.push("e.conversation_id = ?".into());
            values.push(Value::Text(conversation));
        }
        Some(TypeFilter::Glob(glob)) => {
            // Like a type glob: checked on each row of the newest-first walk, kept off a
            // range of events_conversation the planner would then sort.
            clauses.push(dialect.glob_match("e.conversation_id"));
            values.push(Value::Text(dialect.glob(&glob)));
        }
    }
    match type_filter {
        None => {}
        Some(TypeFilter::Exact(kind)) => {
            // deliveries_type holds one type's deliveries in time order.
            clauses.push(format!("{d}event_type = ?"));
            values.push(Value::Text(kind));
        }
        Some(TypeFilter::Glob(glob)) => {
            // Checked on each row of the newest-first walk: a glob usually matches many
            // types, and a range over deliveries_type would have to sort them all.
            clauses.push(dialect.glob_match("d.event_type"));
            values.push(Value::Text(dialect.glob(&glob)));
        }
    }
    if let Some(from) = filter.from_ms {
        clauses.push(format!("{d}created_at >= ?"));
        values.push(Value::Integer(from));
    }
    if let Some(to) = filter.to_ms {
        clauses.push(format!("{d}created_at < ?"));
        values.push(Value::Integer(to));
    }
    if let Some(cursor) = &filter.cursor {
        let (at, id) = parse_delivery_cursor(cursor)?;
        // The first term bounds the index range; the second steps past the rows of the
        // cursor's own millisecond that the last page already showed.
        clauses.push(format!(
            "{d}created_at <= ? AND ({d}created_at < ? OR {d}id < ?)"
        ));
        values.extend([Value::Integer(at), Value::Integer(at), Value::Integer(id)]);
    }
    let from = if events_first {
        // CROSS JOIN fixes the loop order: events through their index, then each one's
        // deliveries through UNIQUE (event_seq, subscription).
        format!(
            "events e {} deliveries d ON d.event_seq = e.seq",
            dialect.ordered_join()
        )
    } else {
        "deliveries d JOIN events e ON e.seq = d.event_seq".to_owned()
    };
    let filter_sql = if clauses.is_empty() {
        String::new()
    } else {
        format!("WHERE {}", clauses.join(" AND "))
    };
    values.push(Value::Integer(size as i64 + 1));
    Ok((
        format!(
            "SELECT {DELIVERY_COLUMNS} FROM {from} {filter_sql}
             ORDER BY d.created_at DESC, d.id DESC LIMIT ?"
        ),
        values,
    ))
}

impl Reader {
    /// One page of the delivery log, newest first.
    pub fn deliveries(&self, filter: &DeliveryFilter) -> Result<Page<DeliveryRow>, QueryError> {
        let size = page_size(filter.limit);
        let (sql, values) = delivery_list_sql(filter, size, self.conn.dialect())?;
        let rows: Vec<DeliveryRow> = self
            .conn
            .prepare_cached(&sql)?
            .query_map(values, delivery_row)?
            .collect::<Result<_, _>>()?;
        Ok(paginate(rows, size, |row| {
            format!("{}.{}", row.created_at, row.id)
        }))
    }

    /// One delivery with its event and every attempt; `None` if there is no such
    /// delivery.
    pub fn delivery(&self, id: i64) -> Result<Option<DeliveryDetail>, QueryError> {
        let conn = &self.conn;
        let found = conn
            .prepare_cached(&format!(
                "SELECT {DELIVERY_COLUMNS}, e.seq, e.project_id, e.received_at, e.source,
                        e.body, e.payload_dropped_at
                 FROM deliveries d JOIN events e ON e.seq = d.event_seq WHERE d.id = ?1"
            ))?
            .query_row(params![id], |row| {
                let delivery = delivery_row(row)?;
                let payload_dropped_at: Option<i64> = row.get(18)?;
                let body: String = row.get(17)?;
                let event = EventView {
                    seq: row.get(13)?,
                    id: delivery.event_id.clone(),
                    event_type: delivery.event_type.clone(),
                    conversation_id: delivery.conversation_id.clone(),
                    project_id: row.get(14)?,
                    received_at: row.get(15)?,
                    source: row.get(16)?,
                    body: payload_dropped_at.is_none().then_some(body),
                    payload_dropped_at,
                };
                Ok((delivery, event))
            })
            .optional()?;
        let Some((delivery, event)) = found else {
            return Ok(None);
        };
        let attempts = conn
            .prepare_cached(
                "SELECT attempt, started_at, duration_ms, status, error, response_snippet, shaping
                 FROM attempts WHERE delivery_id = ?1 ORDER BY started_at, id",
            )?
            .query_map(params![id], |row| {
                Ok(AttemptView {
                    attempt: row.get(0)?,
                    started_at: row.get(1)?,
                    duration_ms: row.get(2)?,
                    status: row.get(3)?,
                    error: row.get(4)?,
                    response_snippet: row.get(5)?,
                    shaping: row.get(6)?,
                })
            })?
            .collect::<Result<_, _>>()?;
        Ok(Some(DeliveryDetail {
            delivery,
            event,
            attempts,
        }))
    }

    /// One event by its id; `None` if there is no such event (or retention removed it).
    pub fn event(&self, id: &str) -> Result<Option<EventView>, QueryError> {
        Ok(self
            .conn
            .prepare_cached(
                "SELECT seq, id, type, conversation_id, project_id, received_at, source, body,
                        payload_dropped_at
                 FROM events WHERE id = ?1",
            )?
            .query_row(params![id], |row| {
                let payload_dropped_at: Option<i64> = row.get(8)?;
                let body: String = row.get(7)?;
                Ok(EventView {
                    seq: row.get(0)?,
                    id: row.get(1)?,
                    event_type: row.get(2)?,
                    conversation_id: row.get(3)?,
                    project_id: row.get(4)?,
                    received_at: row.get(5)?,
                    source: row.get(6)?,
                    body: payload_dropped_at.is_none().then_some(body),
                    payload_dropped_at,
                })
            })
            .optional()?)
    }

    /// The id of the delivery of event `event_id` to `subscription`, if there is one
    /// (there is at most one: `UNIQUE (event_seq, subscription)`).
    pub fn delivery_of(
        &self,
        event_id: &str,
        subscription: &str,
    ) -> Result<Option<i64>, QueryError> {
        Ok(self
            .conn
            .prepare_cached(
                "SELECT d.id FROM events e JOIN deliveries d ON d.event_seq = e.seq
                 WHERE e.id = ?1 AND d.subscription = ?2",
            )?
            .query_row(params![event_id, subscription], |row| row.get(0))
            .optional()?)
    }

    /// One page of rejected inputs, newest first.
    pub fn rejections(
        &self,
        cursor: Option<&str>,
        limit: usize,
    ) -> Result<Page<RejectionRow>, QueryError> {
        let size = page_size(limit);
        let before = cursor.map(parse_id_cursor).transpose()?.unwrap_or(i64::MAX);
        let rows: Vec<RejectionRow> = self
            .conn
            .prepare_cached(
                "SELECT id, at, source, line, reason, snippet FROM rejections
                 WHERE id < ?1 ORDER BY id DESC LIMIT ?2",
            )?
            .query_map(params![before, size as i64 + 1], |row| {
                Ok(RejectionRow {
                    id: row.get(0)?,
                    at: row.get(1)?,
                    source: row.get(2)?,
                    line: row.get(3)?,
                    reason: row.get(4)?,
                    snippet: row.get(5)?,
                })
            })?
            .collect::<Result<_, _>>()?;
        Ok(paginate(rows, size, |row| row.id.to_string()))
    }

    /// One page of the audit log (operator actions and config reloads), newest first.
    pub fn audit_log(
        &self,
        cursor: Option<&str>,
        limit: usize,
    ) -> Result<Page<AuditRow>, QueryError> {
        let size = page_size(limit);
        let before = cursor.map(parse_id_cursor).transpose()?.unwrap_or(i64::MAX);
        let rows: Vec<AuditRow> = self
            .conn
            .prepare_cached(
                "SELECT id, at, actor, action, detail, result, origin FROM audit_log
                 WHERE id < ?1 ORDER BY id DESC LIMIT ?2",
            )?
            .query_map(params![before, size as i64 + 1], |row| {
                Ok(AuditRow {
                    id: row.get(0)?,
                    at: row.get(1)?,
                    actor: row.get(2)?,
                    action: row.get(3)?,
                    detail: row.get(4)?,
                    result: row.get(5)?,
                    origin: row.get(6)?,
                })
            })?
            .collect::<Result<_, _>>()?;
        Ok(paginate(rows, size, |row| row.id.to_string()))
    }
}

mod health;

#[cfg(test)]
mod tests;
