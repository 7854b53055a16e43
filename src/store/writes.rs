//! The SQL each write command runs inside the writer's transaction (see `writer`): storing
//! an ingest batch with its deliveries, recording attempts, and the small bookkeeping
//! writes. Each function sees only a connection; committing is the writer's business.

use std::collections::{HashMap, HashSet};

use crate::store::db::{params, Db, Dialect, ToValue};

use super::writer::now_ms;
use super::{AttemptRecord, AuditEntry, IngestBatch, IngestReport, NextStep};

/// Rows one multi-row statement takes at most. Batches are cut into powers of two up to
/// this, so each kind of statement has a handful of texts for the statement caches.
const ROWS_PER_STATEMENT: usize = 64;

/// `items` in runs of `ROWS_PER_STATEMENT`, then the rest in falling powers of two.
pub(super) fn chunks<T>(items: &[T]) -> impl Iterator<Item = &[T]> {
    let mut rest = items;
    std::iter::from_fn(move || {
        if rest.is_empty() {
            return None;
        }
        let take = ROWS_PER_STATEMENT.min(1 << rest.len().ilog2());
        let (chunk, tail) = rest.split_at(take);
        rest = tail;
        Some(chunk)
    })
}

/// `(?, ?, ...), (...)`: `rows` rows of `columns` placeholders each.
pub(super) fn rows(rows: usize, columns: usize) -> String {
    let row = format!("({})", vec!["?"; columns].join(", "));
    vec![row; rows].join(", ")
}

/// The rows of new pending deliveries: event seq, event id, subscription, the time (as
/// next attempt, creation and update), event type and conversation line.
fn pending_rows(rows: usize) -> String {
    vec!["(?, ?, ?, 'pending', ?, ?, ?, ?, ?)"; rows].join(", ")
}

pub(super) fn ingest_batch(
    tx: &Db,
    batch: &IngestBatch,
    ordered: &HashSet<String>,
) -> crate::store::db::Result<IngestReport> {
    let now = now_ms();
    let mut report = IngestReport::default();
    // Many rows per statement: on PostgreSQL each statement is a round trip.
    let mut stored: HashMap<&str, i64> = HashMap::new();
    for chunk in chunks(&batch.events) {
        let sql = format!(
            "INSERT INTO events (id, type, conversation_id, project_id, received_at, source, body)
             VALUES {} ON CONFLICT (id) DO NOTHING RETURNING id, seq",
            rows(chunk.len(), 7)
        );
        let mut values: Vec<&dyn ToValue> = Vec::with_capacity(chunk.len() * 7);
        for routed in chunk {
            let event = &routed.event;
            values.extend([
                &event.id as &dyn ToValue,
                &event.kind,
                &event.conversation_id,
                &event.project_id,
                &now,
                &batch.source,
                &event.body,
            ]);
        }
        tx.prepare_cached(&sql)?.for_each(&values[..], |row| {
            let id: String = row.get(0)?;
            if let Some(routed) = chunk.iter().find(|r| r.event.id == id) {
                stored.insert(&routed.event.id, row.get(1)?);
            }
            Ok(())
        })?;
    }
    let mut deliveries: Vec<(i64, &str, &String, &str, Option<&String>)> = Vec::new();
    for routed in &batch.events {
        let event = &routed.event;
        // The first of an id in the batch is stored; a later one is a duplicate.
        let Some(seq) = stored.remove(event.id.as_str()) else {
            report.duplicates += 1;
            report.duplicate_ids.push(event.id.clone());
            continue;
        };
        report.stored += 1;
        for subscription in &routed.subscriptions {
            let line = ordered
                .contains(subscription)
                .then_some(event.conversation_id.as_ref())
                .flatten();
            deliveries.push((seq, &event.id, subscription, &event.kind, line));
        }
    }
    for chunk in chunks(&deliveries) {
        let sql = format!(
            "INSERT INTO deliveries (event_seq, event_id, subscription, state, next_attempt_at,
                                     created_at, updated_at, event_type, conversation_id)
             VALUES {}",
            pending_rows(chunk.len())
        );
        let mut values: Vec<&dyn ToValue> = Vec::with_capacity(chunk.len() * 8);
        for (seq, id, subscription, kind, line) in chunk {
            values.extend([
                seq as &dyn ToValue,
                id,
                *subscription,
                &now,
                &now,
                &now,
                kind,
                line,
            ]);
        }
        tx.prepare_cached(&sql)?.execute(&values[..])?;
        report.deliveries += chunk.len();
    }
    let mut insert_rejection = tx.prepare_cached(
        "INSERT INTO rejections (at, source, line, reason, snippet) VALUES (?1, ?2, ?3, ?4, ?5)",
    )?;
    for rejection in &batch.rejections {
        insert_rejection.execute(params![
            now,
            rejection.source,
            rejection.line,
            rejection.reason,
            rejection.snippet
        ])?;
    }
    if let Some(position) = &batch.position {
        tx.prepare_cached(
            r#"INSERT INTO spool_positions (file_key, path, "offset", line, head, updated_at)
             VALUES (?1, ?2, ?3, ?4, ?5, ?6)
             ON CONFLICT (file_key) DO UPDATE SET
                 path = excluded.path, "offset" = excluded."offset", line = excluded.line,
                 head = excluded.head, updated_at = excluded.updated_at"#,
        )?
        .execute(params![
            position.file_key,
            position.path,
            position.offset,
            position.line,
            position.head,
            now
        ])?;
    }
    Ok(report)
}

/// Writes each attempt and its delivery's new state; says for each whether the delivery
/// was still pending (a delivery cancelled meanwhile keeps the attempt, not the state).
pub(super) fn record(tx: &Db, records: &[AttemptRecord]) -> crate::store::db::Result<Vec<bool>> {
    let now = now_ms();
    for chunk in chunks(records) {
        let sql = format!(
            "INSERT INTO attempts (delivery_id, attempt, started_at, duration_ms, status, error,
                                   response_snippet, subscription, shaping)
             VALUES {}",
            vec![
                "(?, ?, ?, ?, ?, ?, ?, (SELECT subscription FROM deliveries WHERE id = ?), ?)";
                chunk.len()
            ]
            .join(", ")
        );
        let mut values: Vec<&dyn ToValue> = Vec::with_capacity(chunk.len() * 9);
        for r in chunk {
            values.extend([
                &r.delivery_id as &dyn ToValue,
                &r.attempt,
                &r.started_at_ms,
                &r.duration_ms,
                &r.status,
                &r.error,
                &r.response_snippet,
                &r.delivery_id,
                &r.shaping,
            ]);
        }
        tx.prepare_cached(&sql)?.execute(&values[..])?;
    }
    let updated = match tx.dialect() {
        Dialect::Postgres if ids_are_distinct(records) => update_states_together(tx, records, now)?,
        _ => update_states(tx, records, now)?,
    };
    super::rollup::add_attempts_apart(tx, records, &updated);
    Ok(updated)
}

/// The state an attempt's outcome leaves its delivery in, and when it is next due.
fn next_state(next: NextStep) -> (&'static str, Option<i64>) {
    match next {
        NextStep::Delivered => ("delivered", None),
        NextStep::RetryAt(at) => ("pending", Some(at)),
        NextStep::Dead => ("dead", None),
    }
}

fn ids_are_distinct(records: &[AttemptRecord]) -> bool {
    let mut seen = HashSet::with_capacity(records.len());
    records.iter().all(|r| seen.insert(r.delivery_id))
}

/// One `UPDATE` per delivery (SQLite, where a statement costs no round trip).
fn update_states(
    tx: &Db,
    records: &[AttemptRecord],
    now: i64,
) -> crate::store::db::Result<Vec<bool>> {
    let mut update = tx.prepare_cached(
        "UPDATE deliveries SET state = ?2, attempts = ?3, next_attempt_at = ?4, leased_at = NULL,
                               last_status = ?5, last_error = ?6, updated_at = ?7
         WHERE id = ?1 AND state = 'pending'",
    )?;
    let mut updated = Vec::with_capacity(records.len());
    for r in records {
        let (state, next_attempt_at) = next_state(r.next);
        let changed = update.execute(params![
            r.delivery_id,
            state,
            r.attempt,
            next_attempt_at,
            r.status,
            r.error,
            now
        ])?;
        updated.push(changed > 0);
    }
    Ok(updated)
}

/// The same as [`update_states`] in one statement per chunk of deliveries (PostgreSQL,
/// where each statement is a round trip to the server). Each delivery appears once:
/// one `UPDATE ... FROM` row per delivery is what makes it the same.
///
/// The state each row must still have comes with the row (`v.was`), not as a constant:
/// `d.state = 'pending'` let PostgreSQL, with statistics taken while the queue was empty,
/// find the rows by reading every pending one through `deliveries_state` (15 to 45 ms a
/// statement in a backlog) instead of each by its id.
fn update_states_together(
    tx: &Db,
    records: &[AttemptRecord],
    now: i64,
) -> crate::store::db::Result<Vec<bool>> {
    let mut changed = HashSet::with_capacity(records.len());
    for chunk in chunks(records) {
        let sql = format!(
            "UPDATE deliveries AS d
             SET state = v.state, attempts = v.attempts, next_attempt_at = v.next_attempt_at,
                 leased_at = NULL, last_status = v.status, last_error = v.error,
                 updated_at = ?
             FROM (VALUES {}) AS v (id, state, attempts, next_attempt_at, status, error, was)
             WHERE d.id = v.id AND d.state = v.was
             RETURNING d.id",
            vec![
                "(CAST(? AS BIGINT), CAST(? AS TEXT), CAST(? AS BIGINT), CAST(? AS BIGINT), \
                  CAST(? AS BIGINT), CAST(? AS TEXT), CAST('pending' AS TEXT))";
                chunk.len()
            ]
            .join(", ")
        );
        let states: Vec<(&str, Option<i64>)> = chunk.iter().map(|r| next_state(r.next)).collect();
        let mut values: Vec<&dyn ToValue> = Vec::with_capacity(1 + chunk.len() * 6);
        values.push(&now);
        for (r, (state, next_attempt_at)) in chunk.iter().zip(&states) {
            values.extend([
                &r.delivery_id as &dyn ToValue,
                state,
                &r.attempt,
                next_attempt_at,
                &r.status,
                &r.error,
            ]);
        }
        tx.prepare_cached(&sql)?.for_each(&values[..], |row| {
            changed.insert(row.get::<i64>(0)?);
            Ok(())
        })?;
    }
    Ok(records
        .iter()
        .map(|r| changed.contains(&r.delivery_id))
        .collect())
}

pub(super) fn cancel_removed(
    tx: &Db,
    keep: &[String],
    when: &str,
) -> crate::store::db::Result<usize> {
    let keep_json = serde_json::to_string(keep).unwrap_or_else(|_| "[]".into());
    tx.execute(
        &format!(
            "UPDATE deliveries
             SET state = 'cancelled', next_attempt_at = NULL, leased_at = NULL, updated_at = ?2,
                 last_error = 'cancelled: subscription \"' || subscription || '\" was ' || ?3
             WHERE state = 'pending' AND subscription NOT IN ({})",
            tx.dialect().json_texts("?1")
        ),
        params![keep_json, now_ms(), when],
    )
}

pub(super) fn put_setting(
    tx: &Db,
    key: &str,
    value: &str,
    first_only: bool,
) -> crate::store::db::Result<()> {
    let sql = if first_only {
        "INSERT INTO settings (key, value, updated_at) VALUES (?1, ?2, ?3)
         ON CONFLICT (key) DO NOTHING"
    } else {
        "INSERT INTO settings (key, value, updated_at) VALUES (?1, ?2, ?3)
         ON CONFLICT (key) DO UPDATE SET value = excluded.value, updated_at = excluded.updated_at"
    };
    tx.prepare_cached(sql)?
        .execute(params![key, value, now_ms()])?;
    Ok(())
}

pub(super) fn audit(tx: &Db, entry: &AuditEntry) -> crate::store::db::Result<()> {
    tx.prepare_cached(
        "INSERT INTO audit_log (at, actor, action, detail, result, origin)
         VALUES (?1, ?2, ?3, ?4, ?5, ?6)",
    )?
    .execute(params![
        now_ms(),
        entry.actor,
        entry.action,
        entry.detail,
        entry.result,
        entry.origin
    ])?;
    Ok(())
}

pub(super) fn forget_positions(tx: &Db, keys: &[String]) -> crate::store::db::Result<()> {
    let mut delete = tx.prepare_cached("DELETE FROM spool_positions WHERE file_key = ?1")?;
    for key in keys {
        delete.execute(params![key])?;
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::store::test_pg::fresh_database;
    use crate::store::test_support::TempStore;

    /// What one scenario leaves: the answers of each `record` call, and every delivery
    /// as (id, state, attempts, next attempt, lease, status, error).
    type Outcome = (
        Vec<Vec<bool>>,
        Vec<(i64, String, i64, Option<i64>, Option<i64>)>,
    );

    fn scenario(db: &Db) -> Outcome {
        let seq: i64 = db
            .query_row(
                "INSERT INTO events (id, type, received_at, source, body)
                 VALUES ('evt_1', 'conversation.ended', 1, 'test', '{}') RETURNING seq",
                [],
                |row| row.get(0),
            )
            .unwrap();
        let ids: Vec<i64> = ["a", "b", "c", "d"]
            .iter()
            .map(|subscription| {
                let state = if *subscription == "c" {
                    "cancelled"
                } else {
                    "pending"
                };
                db.query_row(
                    "INSERT INTO deliveries (event_seq, event_id, subscription, state,
                                             next_attempt_at, leased_at, created_at, updated_at)
                     VALUES (?1, 'evt_1', ?2, ?3, 100, 50, 1, 1) RETURNING id",
                    params![seq, *subscription, state],
                    |row| row.get(0),
                )
                .unwrap()
            })
            .collect();
        let record_of =
            |id: i64, attempt: u32, status: Option<u16>, next: NextStep| AttemptRecord {
                delivery_id: id,
                subscription: "s".into(),
                attempt,
                started_at_ms: 60,
                duration_ms: 3,
                status,
                error: status.is_none().then(|| "connection refused".into()),
                response_snippet: None,
                shaping: None,
                next,
            };
        let first = vec![
            record_of(ids[0], 1, Some(200), NextStep::Delivered),
            record_of(ids[1], 1, Some(503), NextStep::RetryAt(500)),
            record_of(ids[2], 1, None, NextStep::Dead),
            record_of(ids[3], 1, None, NextStep::Dead),
        ];
        // The same delivery twice in one batch: each outcome applies in turn.
        let second = vec![
            record_of(ids[1], 2, None, NextStep::RetryAt(600)),
            record_of(ids[1], 3, Some(204), NextStep::Delivered),
        ];
        let answers = vec![record(db, &first).unwrap(), record(db, &second).unwrap()];
        let mut rows = Vec::new();
        db.prepare(
            "SELECT id, state || ' ' || COALESCE(CAST(last_status AS TEXT), '-') || ' '
                    || COALESCE(last_error, '-'),
                    attempts, next_attempt_at, leased_at
             FROM deliveries ORDER BY id",
        )
        .unwrap()
        .for_each([], |row| {
            rows.push((
                row.get(0)?,
                row.get(1)?,
                row.get(2)?,
                row.get(3)?,
                row.get(4)?,
            ));
            Ok(())
        })
        .unwrap();
        (answers, rows)
    }

    #[test]
    fn outcomes_leave_the_same_rows_on_postgres_in_one_statement_as_on_sqlite_row_by_row() {
        let store = TempStore::new();
        let sqlite = scenario(&store.conn());
        let database = fresh_database();
        let mut client = database.connect();
        crate::store::schema_pg::migrate(&mut client).unwrap();
        let postgres = scenario(&Db::postgres(client, database.url()));

        assert_eq!(
            sqlite.0,
            vec![vec![true, true, false, true], vec![true, true]],
            "a cancelled delivery keeps its state"
        );
        let states: Vec<&str> = sqlite.1.iter().map(|row| row.1.as_str()).collect();
        assert_eq!(
            states,
            [
                "delivered 200 -",
                "delivered 204 -",
                "cancelled - -",
                "dead - connection refused"
            ]
        );
        assert!(sqlite
            .1
            .iter()
            .all(|row| row.3.is_none() || row.1.starts_with("cancelled")));
        assert_eq!(
            sqlite.1.iter().map(|row| row.4).collect::<Vec<_>>(),
            [None, None, Some(50), None],
            "an outcome ends the lease"
        );
        // Ids differ per backend only if the sequences do; both start at 1.
        assert_eq!(postgres, sqlite);
    }
}
