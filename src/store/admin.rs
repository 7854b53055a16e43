//! The SQL of the operator's actions (retry, retry all failed, replay, pause), run by the
//! writer inside its transaction like any other command. A refusal (`AdminRefusal`)
//! changes nothing and is told apart from a database error, so the admin page can show
//! it as it is.

use crate::store::db::{params, Db, OptionalExtension};

use super::{AdminRefusal, Replayed};

/// Makes a delivery due now, keeping its attempts. See [`StoreHandle::retry_delivery`](super::StoreHandle::retry_delivery).
pub(super) fn retry_one(
    tx: &Db,
    delivery_id: i64,
    now: i64,
) -> crate::store::db::Result<Result<(), AdminRefusal>> {
    let row: Option<(String, bool, bool)> = tx
        .prepare_cached(
            "SELECT d.state, d.leased_at IS NOT NULL, e.payload_dropped_at IS NOT NULL
             FROM deliveries d JOIN events e ON e.seq = d.event_seq WHERE d.id = ?1",
        )?
        .query_row(params![delivery_id], |row| {
            Ok((row.get(0)?, row.get(1)?, row.get(2)?))
        })
        .optional()?;
    let Some((state, leased, dropped)) = row else {
        return Ok(Err(AdminRefusal::UnknownDelivery(delivery_id)));
    };
    if dropped {
        return Ok(Err(AdminRefusal::PayloadDropped {
            what: format!("delivery {delivery_id}"),
        }));
    }
    if state == "delivered" {
        return Ok(Err(AdminRefusal::AlreadyDelivered(delivery_id)));
    }
    if leased {
        return Ok(Err(AdminRefusal::InFlight(delivery_id)));
    }
    make_due(tx, delivery_id, now)?;
    Ok(Ok(()))
}

fn make_due(tx: &Db, delivery_id: i64, now: i64) -> crate::store::db::Result<()> {
    tx.prepare_cached(
        "UPDATE deliveries SET state = 'pending', next_attempt_at = ?2, leased_at = NULL,
                               updated_at = ?2
         WHERE id = ?1",
    )?
    .execute(params![delivery_id, now])?;
    Ok(())
}

/// See [`StoreHandle::retry_failed`](super::StoreHandle::retry_failed). Dead (and
/// cancelled) rows are found through `deliveries_final`, pending ones through
/// `deliveries_due`.
pub(super) fn retry_failed(
    tx: &Db,
    subscription: &str,
    since_ms: i64,
    include_cancelled: bool,
    now: i64,
) -> crate::store::db::Result<usize> {
    tx.prepare_cached(
        "UPDATE deliveries SET state = 'pending', next_attempt_at = ?3, updated_at = ?3
         WHERE id IN (
             SELECT id FROM deliveries
             WHERE state != 'pending' AND state = 'dead' AND updated_at >= ?2
               AND subscription = ?1
             UNION ALL
             SELECT id FROM deliveries
             WHERE ?4 AND state != 'pending' AND state = 'cancelled' AND updated_at >= ?2
               AND subscription = ?1
             UNION ALL
             SELECT id FROM deliveries
             WHERE state = 'pending' AND subscription = ?1 AND attempts > 0
               AND leased_at IS NULL AND updated_at >= ?2)
         AND NOT EXISTS (SELECT 1 FROM events e
                         WHERE e.seq = event_seq AND e.payload_dropped_at IS NOT NULL)",
    )?
    .execute(params![subscription, since_ms, now, include_cancelled])
}

/// Sends an event to a subscription again.
///
/// `UNIQUE (event_seq, subscription)` stays: one delivery per event and subscription, as
/// receivers see it too (`webhook-id` is the event id on every send, so a receiver that
/// deduplicates treats a replay exactly like a retry). A replay therefore makes the
/// existing delivery due again, keeping its attempts so the log shows every send in
/// order; only an event the subscription never had gets a new delivery. A second
/// delivery row per pair would need a table rebuild to drop the constraint, and two rows
/// with one `webhook-id` would only blur the log.
pub(super) fn replay(
    tx: &Db,
    event_id: &str,
    subscription: &str,
    now: i64,
) -> crate::store::db::Result<Result<Replayed, AdminRefusal>> {
    let event: Option<(i64, bool)> = tx
        .prepare_cached("SELECT seq, payload_dropped_at IS NOT NULL FROM events WHERE id = ?1")?
        .query_row(params![event_id], |row| Ok((row.get(0)?, row.get(1)?)))
        .optional()?;
    let Some((seq, dropped)) = event else {
        return Ok(Err(AdminRefusal::UnknownEvent(event_id.to_string())));
    };
    if dropped {
        return Ok(Err(AdminRefusal::PayloadDropped {
            what: format!("event {event_id}"),
        }));
    }
    let existing: Option<(i64, bool)> = tx
        .prepare_cached(
            "SELECT id, leased_at IS NOT NULL FROM deliveries
             WHERE event_seq = ?1 AND subscription = ?2",
        )?
        .query_row(params![seq, subscription], |row| {
            Ok((row.get(0)?, row.get(1)?))
        })
        .optional()?;
    match existing {
        Some((delivery_id, true)) => Ok(Err(AdminRefusal::InFlight(delivery_id))),
        Some((delivery_id, false)) => {
            make_due(tx, delivery_id, now)?;
            Ok(Ok(Replayed {
                delivery_id,
                created: false,
            }))
        }
        None => {
            let delivery_id = tx.query_row(
                "INSERT INTO deliveries (event_seq, event_id, subscription, state,
                                         next_attempt_at, created_at, updated_at, event_type,
                                         conversation_id)
                 SELECT ?1, ?2, ?3, 'pending', ?4, ?4, ?4, type, conversation_id
                 FROM events WHERE seq = ?1
                 RETURNING id",
                params![seq, event_id, subscription, now],
                |row| row.get(0),
            )?;
            Ok(Ok(Replayed {
                delivery_id,
                created: true,
            }))
        }
    }
}

/// Whether `subscription` is paused now, in the store.
pub(super) fn is_paused(tx: &Db, subscription: &str) -> crate::store::db::Result<bool> {
    Ok(tx
        .prepare_cached("SELECT paused FROM subscription_state WHERE subscription = ?1")?
        .query_row(params![subscription], |row| row.get(0))
        .optional()?
        .unwrap_or(false))
}

/// Stores the pause flag; a resume of a subscription never paused changes nothing.
pub(super) fn set_paused(
    tx: &Db,
    subscription: &str,
    paused: bool,
    now: i64,
) -> crate::store::db::Result<bool> {
    let was = is_paused(tx, subscription)?;
    if was == paused {
        return Ok(false);
    }
    // A resume clears why it was paused, and restarts the clock of auto-pause: the
    // operator gives the receiver a fresh chance.
    tx.prepare_cached(
        "INSERT INTO subscription_state (subscription, paused, updated_at) VALUES (?1, ?2, ?3)
         ON CONFLICT (subscription) DO UPDATE SET
             paused = excluded.paused, updated_at = excluded.updated_at,
             pause_reason = NULL, failing_since = NULL",
    )?
    .execute(params![subscription, paused, now])?;
    Ok(true)
}
