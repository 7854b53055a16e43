//! The SQL each write command runs inside the writer's transaction (see `writer`): storing
//! an ingest batch with its deliveries, recording attempts, and the small bookkeeping
//! writes. Each function sees only a connection; committing is the writer's business.

use std::collections::HashSet;

use crate::store::db::{params, Db, OptionalExtension};

use super::writer::now_ms;
use super::{AttemptRecord, AuditEntry, IngestBatch, IngestReport, NextStep};

pub(super) fn ingest_batch(
    tx: &Db,
    batch: &IngestBatch,
    ordered: &HashSet<String>,
) -> crate::store::db::Result<IngestReport> {
    let now = now_ms();
    let mut report = IngestReport::default();
    let mut insert_event = tx.prepare_cached(
        "INSERT INTO events (id, type, conversation_id, project_id, received_at, source, body)
         VALUES (?1, ?2, ?3, ?4, ?5, ?6, ?7) ON CONFLICT (id) DO NOTHING
         RETURNING seq",
    )?;
    let mut insert_delivery = tx.prepare_cached(
        "INSERT INTO deliveries (event_seq, event_id, subscription, state, next_attempt_at,
                                 created_at, updated_at, event_type, conversation_id)
         VALUES (?1, ?2, ?3, 'pending', ?4, ?4, ?4, ?5, ?6)",
    )?;
    for routed in &batch.events {
        let event = &routed.event;
        let inserted: Option<i64> = insert_event
            .query_row(
                params![
                    event.id,
                    event.kind,
                    event.conversation_id,
                    event.project_id,
                    now,
                    batch.source,
                    event.body,
                ],
                |row| row.get(0),
            )
            .optional()?;
        let Some(seq) = inserted else {
            report.duplicates += 1;
            report.duplicate_ids.push(event.id.clone());
            continue;
        };
        report.stored += 1;
        for subscription in &routed.subscriptions {
            let line = ordered
                .contains(subscription)
                .then_some(&event.conversation_id);
            insert_delivery.execute(params![
                seq,
                event.id,
                subscription,
                now,
                event.kind,
                line.cloned().flatten()
            ])?;
            report.deliveries += 1;
        }
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
    let mut insert_attempt = tx.prepare_cached(
        "INSERT INTO attempts (delivery_id, attempt, started_at, duration_ms, status, error,
                               response_snippet, subscription, shaping)
         VALUES (?1, ?2, ?3, ?4, ?5, ?6, ?7, (SELECT subscription FROM deliveries WHERE id = ?1),
                 ?8)",
    )?;
    let mut update = tx.prepare_cached(
        "UPDATE deliveries SET state = ?2, attempts = ?3, next_attempt_at = ?4, leased_at = NULL,
                               last_status = ?5, last_error = ?6, updated_at = ?7
         WHERE id = ?1 AND state = 'pending'",
    )?;
    let mut updated = Vec::with_capacity(records.len());
    for r in records {
        insert_attempt.execute(params![
            r.delivery_id,
            r.attempt,
            r.started_at_ms,
            r.duration_ms,
            r.status,
            r.error,
            r.response_snippet,
            r.shaping
        ])?;
        let (state, next_attempt_at) = match r.next {
            NextStep::Delivered => ("delivered", None),
            NextStep::RetryAt(at) => ("pending", Some(at)),
            NextStep::Dead => ("dead", None),
        };
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
    super::rollup::add_attempts_apart(tx, records, &updated);
    Ok(updated)
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

pub(super) fn put_setting(tx: &Db, key: &str, value: &str) -> crate::store::db::Result<()> {
    tx.prepare_cached(
        "INSERT INTO settings (key, value, updated_at) VALUES (?1, ?2, ?3)
         ON CONFLICT (key) DO UPDATE SET value = excluded.value, updated_at = excluded.updated_at",
    )?
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
