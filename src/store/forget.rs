//! Forgetting a conversation (an erasure request): the SQL that blanks what the store
//! keeps of one conversation's content while keeping the metadata its delivery log needs.
//!
//! What goes: every stored event body of the conversation, the response snippet of
//! every attempt of its deliveries, and the snippet of every rejection whose text holds
//! the conversation id as a JSON string (rejected input is not parsed, so this is how
//! one is tied to a conversation; a snippet of another input that quotes the same id is
//! blanked too, which errs on the side of erasing). What stays: ids, types, times,
//! states, status codes, errors (posthorn's own words) and rejection reasons.
//!
//! Pending deliveries are cancelled, or with `let_pending_finish` left to run. An event
//! whose delivery is still pending (or in flight) keeps its body until that delivery is
//! final; the request is kept in `forgotten_conversations` with `done_at` NULL, and the
//! writer finishes it after recording attempts (see [`settle_waiting`]), so a restart
//! does not lose it. The writer runs all this with `secure_delete` on and truncates the
//! WAL after the commit, so the old bytes linger neither in free space nor in the WAL.
//! Events of the conversation taken in after the request are not affected (also while
//! it waits): only events received up to `requested_at` are cancelled and blanked.

use crate::store::db::{params, Db, OptionalExtension};
use serde::{Deserialize, Serialize};

use super::AdminRefusal;

/// What forgetting a conversation did, as the API answers and the CLI prints it.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct Forgotten {
    pub conversation_id: String,
    /// Event bodies blanked now.
    pub events: usize,
    /// Attempt response snippets blanked now.
    pub attempts: usize,
    /// Rejection snippets blanked now.
    pub rejections: usize,
    /// Pending deliveries cancelled.
    pub cancelled: usize,
    /// Deliveries still pending or being sent: their events are blanked once they are
    /// final (0 when the erasure is complete).
    pub waiting: usize,
    /// Whether the conversation had been forgotten before (this run then only erases
    /// what came since, or what was waiting).
    pub again: bool,
    /// Whether the WAL was truncated after the commit (so no old copy of an erased page
    /// is left in it); false when a reader held it, and the next checkpoint clears it.
    #[serde(default)]
    pub wal_truncated: bool,
}

/// How many rows one erasure pass blanked.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
struct Erased {
    events: usize,
    attempts: usize,
    waiting: usize,
}

impl Erased {
    fn any(&self) -> bool {
        self.events + self.attempts > 0
    }
}

/// Forgets `conversation`. Refused when the store holds nothing of it and never
/// forgot it.
pub(super) fn forget(
    tx: &Db,
    conversation: &str,
    let_pending_finish: bool,
    now: i64,
) -> crate::store::db::Result<Result<Forgotten, AdminRefusal>> {
    let needle = needle(conversation);
    let events: i64 = tx
        .prepare_cached("SELECT count(*) FROM events WHERE conversation_id = ?1")?
        .query_row(params![conversation], |row| row.get(0))?;
    let again = tx
        .prepare_cached("SELECT 1 FROM forgotten_conversations WHERE conversation_id = ?1")?
        .query_row(params![conversation], |_| Ok(()))
        .optional()?
        .is_some();
    let rejections: i64 = tx
        .prepare_cached(&format!(
            "SELECT count(*) FROM rejections WHERE snippet IS NOT NULL AND {}",
            tx.dialect().contains("snippet", "?1")
        ))?
        .query_row(params![needle], |row| row.get(0))?;
    if events == 0 && rejections == 0 && !again {
        return Ok(Err(AdminRefusal::UnknownConversation(
            conversation.to_string(),
        )));
    }
    tx.prepare_cached(
        "INSERT INTO forgotten_conversations (conversation_id, requested_at, let_pending_finish)
         VALUES (?1, ?2, ?3)
         ON CONFLICT (conversation_id) DO UPDATE SET requested_at = excluded.requested_at,
             let_pending_finish = excluded.let_pending_finish, done_at = NULL",
    )?
    .execute(params![conversation, now, let_pending_finish])?;
    let cancelled = if let_pending_finish {
        0
    } else {
        cancel_pending(tx, conversation, now, now)?
    };
    let erased = erase(tx, conversation, now, now)?;
    let rejections = blank_rejections(tx, conversation)?;
    Ok(Ok(Forgotten {
        conversation_id: conversation.to_string(),
        events: erased.events,
        attempts: erased.attempts,
        rejections,
        cancelled,
        waiting: erased.waiting,
        again,
        wal_truncated: false,
    }))
}

/// Whether some forgotten conversation still waits for deliveries to finish.
pub(super) fn any_waiting(conn: &Db) -> crate::store::db::Result<bool> {
    Ok(conn
        .prepare_cached("SELECT 1 FROM forgotten_conversations WHERE done_at IS NULL LIMIT 1")?
        .query_row([], |_| Ok(()))
        .optional()?
        .is_some())
}

/// Goes on with every forgotten conversation that waits: cancels what became due again
/// (unless it lets pending deliveries finish) and blanks what is final now. Returns
/// whether anything was blanked, and whether any conversation still waits.
pub(super) fn settle_waiting(tx: &Db, now: i64) -> crate::store::db::Result<(bool, bool)> {
    let waiting: Vec<(String, bool, i64)> = tx
        .prepare_cached(
            "SELECT conversation_id, let_pending_finish, requested_at FROM forgotten_conversations
             WHERE done_at IS NULL",
        )?
        .query_map([], |row| Ok((row.get(0)?, row.get(1)?, row.get(2)?)))?
        .collect::<Result<_, _>>()?;
    let (mut blanked, mut still) = (false, false);
    for (conversation, let_finish, requested_at) in waiting {
        if !let_finish {
            cancel_pending(tx, &conversation, requested_at, now)?;
        }
        let erased = erase(tx, &conversation, requested_at, now)?;
        blanked |= erased.any();
        still |= erased.waiting > 0;
        if erased.any() {
            tracing::info!(
                conversation = %conversation,
                events = erased.events,
                attempts = erased.attempts,
                waiting = erased.waiting,
                "erased a forgotten conversation's payloads as its deliveries finished"
            );
        }
    }
    Ok((blanked, still))
}

/// Runs `work` with `secure_delete` on, so the bytes it blanks are overwritten with zeros
/// in the pages (and freed overflow pages) rather than left as free space.
pub(super) fn erasing<T>(
    tx: &Db,
    work: impl FnOnce(&Db) -> crate::store::db::Result<T>,
) -> crate::store::db::Result<T> {
    let Some(conn) = tx.as_sqlite() else {
        return work(tx);
    };
    conn.pragma_update(None, "secure_delete", true)?;
    let result = work(tx);
    let off = conn.pragma_update(None, "secure_delete", false);
    let value = result?;
    off?;
    Ok(value)
}

/// At start, before anything is claimed: deliveries left in flight by a crash are
/// pending again, so conversations forgotten with cancelling have them cancelled, and
/// what is final is erased. Returns whether some conversation still waits.
pub(super) fn settle_at_start(conn: &mut Db) -> crate::store::db::Result<bool> {
    if !any_waiting(conn)? {
        return Ok(false);
    }
    let tx = conn.transaction()?;
    let (blanked, waiting) = erasing(&tx, |tx| settle_waiting(tx, super::now_ms()))?;
    tx.commit()?;
    if blanked {
        truncate_wal(conn);
    }
    Ok(waiting)
}

/// The conversation id as it appears in the JSON of a rejected input.
fn needle(conversation: &str) -> String {
    serde_json::Value::String(conversation.to_string()).to_string()
}

/// Cancels the pending deliveries that no worker holds of the conversation's events taken
/// in up to `upto` (when the forget was asked: later events are not affected). One being
/// sent keeps going; its outcome is recorded and then settled by [`settle_waiting`].
fn cancel_pending(
    tx: &Db,
    conversation: &str,
    upto: i64,
    now: i64,
) -> crate::store::db::Result<usize> {
    tx.prepare_cached(
        "UPDATE deliveries
         SET state = 'cancelled', next_attempt_at = NULL, updated_at = ?2,
             last_error = 'cancelled: its conversation was forgotten'
         WHERE state = 'pending' AND leased_at IS NULL
           AND event_seq IN (SELECT seq FROM events
                             WHERE conversation_id = ?1 AND received_at <= ?3)",
    )?
    .execute(params![conversation, now, upto])
}

/// Blanks what may be blanked now of the conversation's events taken in up to `upto`, and
/// marks the request done once none of their deliveries is pending. (Rejections are
/// blanked once, by [`forget`]: later ones are later input.)
fn erase(tx: &Db, conversation: &str, upto: i64, now: i64) -> crate::store::db::Result<Erased> {
    let events = tx
        .prepare_cached(
            "UPDATE events SET body = '', payload_dropped_at = coalesce(payload_dropped_at, ?2)
             WHERE conversation_id = ?1 AND received_at <= ?3 AND body != ''
               AND NOT EXISTS (SELECT 1 FROM deliveries
                               WHERE event_seq = events.seq AND state = 'pending')",
        )?
        .execute(params![conversation, now, upto])?;
    let attempts = tx
        .prepare_cached(
            "UPDATE attempts SET response_snippet = NULL
             WHERE response_snippet IS NOT NULL AND delivery_id IN (
                 SELECT d.id FROM events e JOIN deliveries d ON d.event_seq = e.seq
                 WHERE e.conversation_id = ?1 AND e.received_at <= ?2)",
        )?
        .execute(params![conversation, upto])?;
    let waiting: i64 = tx
        .prepare_cached(
            "SELECT count(*) FROM events e JOIN deliveries d ON d.event_seq = e.seq
             WHERE e.conversation_id = ?1 AND e.received_at <= ?2 AND d.state = 'pending'",
        )?
        .query_row(params![conversation, upto], |row| row.get(0))?;
    if waiting == 0 {
        tx.prepare_cached(
            "UPDATE forgotten_conversations SET done_at = ?2
             WHERE conversation_id = ?1 AND done_at IS NULL",
        )?
        .execute(params![conversation, now])?;
    }
    Ok(Erased {
        events,
        attempts,
        waiting: waiting as usize,
    })
}

/// Blanks the snippet of every rejection that quotes the conversation id.
fn blank_rejections(tx: &Db, conversation: &str) -> crate::store::db::Result<usize> {
    tx.prepare_cached(&format!(
        "UPDATE rejections SET snippet = NULL WHERE snippet IS NOT NULL AND {}",
        tx.dialect().contains("snippet", "?1")
    ))?
    .execute(params![needle(conversation)])
}

/// After a commit that erased something: moves every page into the database file and
/// empties the WAL, so the frames holding the old bytes are gone. Returns whether it
/// got through (a reader on an old snapshot makes it give up after the busy timeout).
pub(super) fn truncate_wal(conn: &Db) -> bool {
    if conn.as_sqlite().is_none() {
        // PostgreSQL has no WAL of ours to empty: its own WAL and dead row versions are
        // the server's to recycle (VACUUM, checkpoints).
        return true;
    }
    match conn.query_row("PRAGMA wal_checkpoint(TRUNCATE)", [], |row| {
        row.get::<i64>(0)
    }) {
        Ok(0) => true,
        Ok(_) => {
            tracing::warn!(
                "the WAL could not be truncated after forgetting a conversation (a reader \
                 held it); the next checkpoint overwrites the erased pages"
            );
            false
        }
        Err(err) => {
            tracing::warn!(%err, "could not truncate the WAL after forgetting a conversation");
            false
        }
    }
}

#[cfg(test)]
mod tests;
