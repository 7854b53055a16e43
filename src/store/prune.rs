//! Retention's SQL: one bounded prune step, run by the writer inside its transaction like
//! any other command. A step changes at most `limit` rows of each kind and reads little
//! more, so it never holds the writer (and the ingest behind it) for long; the pruner in
//! `retention.rs` sends steps until one reports nothing more to do.
//!
//! Order matters because of the foreign keys: attempts, then their delivery, then the
//! event once no delivery refers to it. An event is never deleted, and its body never
//! blanked, while any delivery of it is pending.

use crate::store::db::{params, Db, OptionalExtension};

use super::{PruneReport, PruneRequest};

// The statements that find work, each served by an index of migration 2 (a test checks
// the plans). `state != 'pending'` is spelled out so the planner may use the partial
// index `deliveries_final`.
const SELECT_FINAL_DELIVERIES: &str = "SELECT id, event_seq FROM deliveries
     WHERE state != 'pending' AND state = ?1 AND updated_at < ?2
     ORDER BY updated_at LIMIT ?3";
const SELECT_LAST_SEQ_BEFORE: &str = "SELECT seq FROM events WHERE received_at < ?1
     ORDER BY received_at DESC, seq DESC LIMIT 1";
const SELECT_EVENTS_WITH_PAYLOAD: &str = "SELECT seq FROM events
     WHERE payload_dropped_at IS NULL AND seq > ?1 AND seq <= ?2
     ORDER BY seq LIMIT ?3";
const DELETE_OLD_REJECTIONS: &str = "DELETE FROM rejections WHERE id IN
     (SELECT id FROM rejections WHERE at < ?1 ORDER BY at LIMIT ?2)";

pub(super) fn prune(
    tx: &Db,
    request: &PruneRequest,
    now_ms: i64,
) -> crate::store::db::Result<PruneReport> {
    let limit = request.limit.max(1);
    let mut report = PruneReport {
        cursor: request.cursor,
        ..PruneReport::default()
    };
    prune_deliveries(tx, request, limit, &mut report)?;
    let (events, after) = sweep_events(
        tx,
        request.delivered_before_ms,
        request.cursor.events_after_seq,
        limit,
    )?;
    report.events += events;
    report.cursor.events_after_seq = after;
    let (payloads, after) = drop_payloads(
        tx,
        request.payloads_before_ms,
        request.cursor.payloads_after_seq,
        limit,
        now_ms,
    )?;
    report.payloads = payloads;
    report.cursor.payloads_after_seq = after;
    report.rejections = tx
        .prepare_cached(DELETE_OLD_REJECTIONS)?
        .execute(params![request.rejections_before_ms, limit as i64])?;
    // The charts' history: sampled here (a step runs every `[retention] interval`) and
    // kept as long as the longer of the two delivery periods.
    super::rollup::sample_queue(tx, now_ms)?;
    let hours_before = request.delivered_before_ms.min(request.failed_before_ms);
    report.rollups = super::rollup::prune(tx, hours_before, now_ms, limit)?;
    // A sweep that stopped short of its boundary has more to look at; so does a kind that
    // used its whole allowance.
    report.more = report.rollups >= limit
        || report.deliveries == limit
        || report.rejections == limit
        || report.cursor.events_after_seq != 0
        || report.cursor.payloads_after_seq != 0;
    Ok(report)
}

/// Final deliveries past their period go with their attempts; an event whose last
/// delivery this was goes with it.
fn prune_deliveries(
    tx: &Db,
    request: &PruneRequest,
    limit: usize,
    report: &mut PruneReport,
) -> crate::store::db::Result<()> {
    let mut select = tx.prepare_cached(SELECT_FINAL_DELIVERIES)?;
    let mut doomed: Vec<(i64, i64)> = Vec::new();
    for (state, before) in [
        ("delivered", request.delivered_before_ms),
        ("dead", request.failed_before_ms),
        ("cancelled", request.failed_before_ms),
    ] {
        let room = limit - doomed.len();
        if room == 0 {
            break;
        }
        let rows = select.query_map(params![state, before, room as i64], |row| {
            Ok((row.get(0)?, row.get(1)?))
        })?;
        for row in rows {
            doomed.push(row?);
        }
    }
    let mut delete_attempts = tx.prepare_cached("DELETE FROM attempts WHERE delivery_id = ?1")?;
    let mut delete_delivery = tx.prepare_cached("DELETE FROM deliveries WHERE id = ?1")?;
    let mut delete_event = tx.prepare_cached(
        "DELETE FROM events WHERE seq = ?1
         AND NOT EXISTS (SELECT 1 FROM deliveries WHERE event_seq = ?1)",
    )?;
    for &(delivery, _) in &doomed {
        report.attempts += delete_attempts.execute(params![delivery])?;
        report.deliveries += delete_delivery.execute(params![delivery])?;
    }
    for &(_, event) in &doomed {
        report.events += delete_event.execute(params![event])?;
    }
    Ok(())
}

/// The newest event received before `before_ms` (by `seq`, which follows arrival): the
/// end of a sweep.
fn last_seq_before(tx: &Db, before_ms: i64) -> crate::store::db::Result<i64> {
    Ok(tx
        .prepare_cached(SELECT_LAST_SEQ_BEFORE)?
        .query_row(params![before_ms], |row| row.get(0))
        .optional()?
        .unwrap_or(0))
}

/// Deletes events received before `before_ms` that have no delivery left: those that
/// matched no subscription, and any whose deliveries went without them. Looks at up to
/// `limit` events after `after_seq`; returns how many went, and where to go on from (0
/// once the sweep reached its end).
fn sweep_events(
    tx: &Db,
    before_ms: i64,
    after_seq: i64,
    limit: usize,
) -> crate::store::db::Result<(usize, i64)> {
    let end = last_seq_before(tx, before_ms)?;
    let candidates: Vec<i64> = tx
        .prepare_cached(
            "SELECT seq FROM events WHERE seq > ?1 AND seq <= ?2 ORDER BY seq LIMIT ?3",
        )?
        .query_map(params![after_seq, end, limit as i64], |row| row.get(0))?
        .collect::<Result<_, _>>()?;
    let mut delete = tx.prepare_cached(
        "DELETE FROM events WHERE seq = ?1 AND received_at < ?2
         AND NOT EXISTS (SELECT 1 FROM deliveries WHERE event_seq = ?1)",
    )?;
    let mut deleted = 0;
    for &seq in &candidates {
        deleted += delete.execute(params![seq, before_ms])?;
    }
    Ok((deleted, next_cursor(&candidates, limit)))
}

/// Blanks the body of events received before `before_ms` whose every delivery is final
/// and became so before `before_ms`. Visits only events that still have a body.
fn drop_payloads(
    tx: &Db,
    before_ms: i64,
    after_seq: i64,
    limit: usize,
    now_ms: i64,
) -> crate::store::db::Result<(usize, i64)> {
    let end = last_seq_before(tx, before_ms)?;
    let candidates: Vec<i64> = tx
        .prepare_cached(SELECT_EVENTS_WITH_PAYLOAD)?
        .query_map(params![after_seq, end, limit as i64], |row| row.get(0))?
        .collect::<Result<_, _>>()?;
    let mut blank = tx.prepare_cached(
        "UPDATE events SET body = '', payload_dropped_at = ?3
         WHERE seq = ?1 AND received_at < ?2 AND NOT EXISTS (
             SELECT 1 FROM deliveries
             WHERE event_seq = ?1 AND (state = 'pending' OR updated_at >= ?2))",
    )?;
    let mut blanked = 0;
    for &seq in &candidates {
        blanked += blank.execute(params![seq, before_ms, now_ms])?;
    }
    Ok((blanked, next_cursor(&candidates, limit)))
}

/// Where a sweep goes on from: after the last row it looked at if it used its whole
/// allowance, else from the start next time.
fn next_cursor(candidates: &[i64], limit: usize) -> i64 {
    match candidates.last() {
        Some(&last) if candidates.len() == limit => last,
        _ => 0,
    }
}

impl PruneReport {
    /// Whether the step changed anything.
    pub fn pruned_anything(&self) -> bool {
        self.deliveries + self.attempts + self.events + self.payloads + self.rejections > 0
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::store::{schema, PruneCursor};

    fn store() -> Db {
        let mut conn = rusqlite::Connection::open_in_memory().unwrap();
        conn.pragma_update(None, "foreign_keys", true).unwrap();
        schema::migrate(&mut conn).unwrap();
        Db::sqlite(conn)
    }

    /// An event received at `at` with body `{"id":...}`; returns its seq.
    fn event(conn: &Db, id: &str, at: i64) -> i64 {
        conn.execute(
            "INSERT INTO events (id, type, received_at, source, body)
             VALUES (?1, 'conversation.started', ?2, 'test', ?3)",
            params![id, at, format!(r#"{{"id":"{id}"}}"#)],
        )
        .unwrap();
        conn.last_insert_rowid()
    }

    /// A delivery of `seq` in `state`, last changed at `at`, with one attempt; returns
    /// its id.
    fn delivery(conn: &Db, seq: i64, subscription: &str, state: &str, at: i64) -> i64 {
        let next = (state == "pending").then_some(at + 60_000);
        conn.execute(
            "INSERT INTO deliveries (event_seq, event_id, subscription, state, attempts,
                                     next_attempt_at, created_at, updated_at, event_type)
             SELECT seq, id, ?2, ?3, 1, ?4, received_at, ?5, type FROM events WHERE seq = ?1",
            params![seq, subscription, state, next, at],
        )
        .unwrap();
        let id = conn.last_insert_rowid();
        conn.execute(
            "INSERT INTO attempts (delivery_id, attempt, started_at, duration_ms, status)
             VALUES (?1, 1, ?2, 3, 500)",
            params![id, at],
        )
        .unwrap();
        id
    }

    fn count(conn: &Db, sql: &str) -> i64 {
        conn.query_row(sql, [], |row| row.get(0)).unwrap()
    }

    fn body(conn: &Db, seq: i64) -> Option<String> {
        conn.query_row("SELECT body FROM events WHERE seq = ?1", [seq], |row| {
            row.get(0)
        })
        .optional()
        .unwrap()
    }

    /// A request that prunes nothing unless a test moves a cutoff.
    fn keep_all() -> PruneRequest {
        PruneRequest {
            delivered_before_ms: 0,
            failed_before_ms: 0,
            payloads_before_ms: 0,
            rejections_before_ms: 0,
            limit: 100,
            cursor: PruneCursor::default(),
        }
    }

    fn prune_until_done(conn: &Db, mut request: PruneRequest) -> PruneReport {
        let mut total = PruneReport::default();
        for _ in 0..1000 {
            let step = prune(conn, &request, 9_999_999).unwrap();
            total.deliveries += step.deliveries;
            total.attempts += step.attempts;
            total.events += step.events;
            total.payloads += step.payloads;
            total.rejections += step.rejections;
            request.cursor = step.cursor;
            if !step.more {
                return total;
            }
        }
        panic!("pruning never reported that it was done");
    }

    #[test]
    fn old_final_deliveries_go_with_their_attempts_but_pending_ones_and_their_events_stay() {
        let conn = store();
        let done = event(&conn, "done", 1_000);
        delivery(&conn, done, "a", "delivered", 2_000);
        let half = event(&conn, "half", 1_000);
        let half_delivered = delivery(&conn, half, "a", "delivered", 2_000);
        let half_pending = delivery(&conn, half, "b", "pending", 2_000);
        let dead = event(&conn, "dead", 1_000);
        delivery(&conn, dead, "a", "dead", 2_000);
        let fresh = event(&conn, "fresh", 4_000);
        delivery(&conn, fresh, "a", "delivered", 4_500);

        let report = prune_until_done(
            &conn,
            PruneRequest {
                delivered_before_ms: 3_000,
                failed_before_ms: 1_500,
                ..keep_all()
            },
        );

        assert_eq!((report.deliveries, report.attempts), (2, 2), "{report:?}");
        assert_eq!(report.events, 1, "{report:?}");
        assert_eq!(body(&conn, done), None, "a fully delivered old event goes");
        assert_eq!(
            count(
                &conn,
                &format!("SELECT count(*) FROM deliveries WHERE id = {half_delivered}")
            ),
            0
        );
        assert_eq!(
            body(&conn, half).as_deref(),
            Some(r#"{"id":"half"}"#),
            "an event with a pending delivery keeps its row and its body"
        );
        assert_eq!(
            count(
                &conn,
                &format!("SELECT count(*) FROM attempts WHERE delivery_id = {half_pending}")
            ),
            1
        );
        assert!(
            body(&conn, dead).is_some(),
            "dead ones are kept for the longer period"
        );
        assert!(body(&conn, fresh).is_some(), "a recent delivery is kept");

        // Once the dead one is past `failed`, it and its event go too.
        let report = prune_until_done(
            &conn,
            PruneRequest {
                delivered_before_ms: 3_000,
                failed_before_ms: 3_000,
                ..keep_all()
            },
        );
        assert_eq!((report.deliveries, report.events), (1, 1), "{report:?}");
        assert_eq!(body(&conn, dead), None);
        assert_eq!(
            count(
                &conn,
                "SELECT count(*) FROM deliveries WHERE state = 'pending'"
            ),
            1
        );
    }

    #[test]
    fn payloads_are_blanked_once_every_delivery_is_final_and_old_and_metadata_stays() {
        let conn = store();
        let done = event(&conn, "done", 1_000);
        delivery(&conn, done, "a", "delivered", 2_000);
        delivery(&conn, done, "b", "dead", 2_500);
        let pending = event(&conn, "pending", 1_000);
        delivery(&conn, pending, "a", "delivered", 2_000);
        delivery(&conn, pending, "b", "pending", 2_000);
        let late = event(&conn, "late", 1_000);
        delivery(&conn, late, "a", "delivered", 3_500);
        let unmatched = event(&conn, "unmatched", 1_000);
        let young = event(&conn, "young", 3_500);

        let report = prune_until_done(
            &conn,
            PruneRequest {
                payloads_before_ms: 3_000,
                ..keep_all()
            },
        );

        assert_eq!(report.payloads, 2, "{report:?}");
        assert_eq!((report.deliveries, report.events), (0, 0), "{report:?}");
        assert_eq!(body(&conn, done).as_deref(), Some(""));
        assert_eq!(body(&conn, unmatched).as_deref(), Some(""));
        for kept in [pending, late, young] {
            assert_ne!(body(&conn, kept).as_deref(), Some(""), "event {kept}");
        }
        assert_eq!(
            count(
                &conn,
                "SELECT count(*) FROM events WHERE payload_dropped_at IS NOT NULL"
            ),
            2
        );
        // The metadata is all still there.
        assert_eq!(count(&conn, "SELECT count(*) FROM events"), 5);
        assert_eq!(count(&conn, "SELECT count(*) FROM deliveries"), 5);
        assert_eq!(count(&conn, "SELECT count(*) FROM attempts"), 5);
    }

    #[test]
    fn events_that_matched_nothing_and_old_rejections_age_out() {
        let conn = store();
        let old = event(&conn, "old", 1_000);
        let new = event(&conn, "new", 5_000);
        for at in [1_000, 2_000, 6_000] {
            conn.execute(
                "INSERT INTO rejections (at, source, reason) VALUES (?1, 'spool:x', 'bad')",
                [at],
            )
            .unwrap();
        }
        let report = prune_until_done(
            &conn,
            PruneRequest {
                delivered_before_ms: 3_000,
                rejections_before_ms: 3_000,
                ..keep_all()
            },
        );
        assert_eq!((report.events, report.rejections), (1, 2), "{report:?}");
        assert_eq!(body(&conn, old), None);
        assert!(body(&conn, new).is_some());
        assert_eq!(count(&conn, "SELECT min(at) FROM rejections"), 6_000);
    }

    #[test]
    fn a_step_changes_at_most_its_limit_and_says_when_there_is_more() {
        let conn = store();
        for n in 0..25 {
            let seq = event(&conn, &format!("d{n}"), 1_000 + n);
            delivery(&conn, seq, "a", "delivered", 2_000 + n);
        }
        for n in 0..25 {
            event(&conn, &format!("u{n}"), 1_000 + n);
        }
        let mut request = PruneRequest {
            delivered_before_ms: 9_000,
            payloads_before_ms: 9_000,
            limit: 10,
            ..keep_all()
        };
        let mut steps = Vec::new();
        loop {
            let step = prune(&conn, &request, 10_000).unwrap();
            assert!(step.deliveries <= 10 && step.payloads <= 10, "{step:?}");
            assert!(step.events <= 20, "{step:?}");
            request.cursor = step.cursor;
            let more = step.more;
            steps.push(step);
            if !more {
                break;
            }
            assert!(steps.len() < 20, "never finished: {steps:?}");
        }
        assert!(steps.len() >= 3, "25 rows with a limit of 10: {steps:?}");
        assert_eq!(steps.iter().map(|s| s.deliveries).sum::<usize>(), 25);
        assert_eq!(count(&conn, "SELECT count(*) FROM events"), 0);
        assert_eq!(count(&conn, "SELECT count(*) FROM attempts"), 0);
        assert_eq!(steps.last().unwrap().cursor, PruneCursor::default());
    }

    #[test]
    fn the_pruners_lookups_use_the_retention_indexes() {
        let conn = store();
        for (sql, index) in [
            (SELECT_FINAL_DELIVERIES, "deliveries_final"),
            (SELECT_LAST_SEQ_BEFORE, "events_received"),
            (SELECT_EVENTS_WITH_PAYLOAD, "events_with_payload"),
            (DELETE_OLD_REJECTIONS, "rejections_at"),
        ] {
            let mut stmt = conn.prepare(&format!("EXPLAIN QUERY PLAN {sql}")).unwrap();
            let plan: Vec<String> = stmt
                .query_map(
                    params![None::<i64>, None::<i64>, None::<i64>]
                        .get(..sql.matches('?').count())
                        .unwrap(),
                    |row| row.get::<String>(3),
                )
                .unwrap()
                .collect::<Result<_, _>>()
                .unwrap();
            let plan = plan.join("; ");
            assert!(plan.contains(index), "{sql}\nplan: {plan}");
            assert!(
                !plan.contains("SCAN events") && !plan.contains("TEMP B-TREE"),
                "{sql}\nplan: {plan}"
            );
        }
    }
}
