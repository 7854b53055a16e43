//! What ordered delivery (`ordering = "conversation"`) holds back, for the admin page and
//! API: the delivery a waiting one is held behind (the head of its conversation's line),
//! and how many wait behind a given one. The rule is the claim's (`store/claim.rs`).

use crate::store::db::{params, OptionalExtension};
use serde::{Deserialize, Serialize};

use super::{QueryError, Reader};

/// A delivery's place in its conversation's line.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct LineView {
    pub conversation_id: String,
    /// The earliest delivery of the conversation that is still pending (or dead, with
    /// `on_dead = "hold"`) and keeps this one waiting; `None` when this one may go.
    pub held_behind: Option<HeldBehind>,
    /// Later deliveries of the conversation waiting for this one.
    pub waiting_behind: u64,
}

#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct HeldBehind {
    pub delivery_id: i64,
    pub event_id: String,
    pub state: String,
    pub attempts: u32,
    /// When its next attempt falls due (unix ms; pending only).
    pub next_attempt_at: Option<i64>,
}

impl Reader {
    /// The line of delivery `id` under ordering by conversation; `None` when there is no
    /// such delivery or it has no conversation.
    pub fn delivery_line(&self, id: i64, hold_dead: bool) -> Result<Option<LineView>, QueryError> {
        let row: Option<(String, Option<String>, i64, String)> = self
            .conn
            .prepare_cached(
                "SELECT subscription, conversation_id, event_seq, state FROM deliveries WHERE id = ?1",
            )?
            .query_row(params![id], |row| {
                Ok((row.get(0)?, row.get(1)?, row.get(2)?, row.get(3)?))
            })
            .optional()?;
        let Some((subscription, Some(conversation), seq, state)) = row else {
            return Ok(None);
        };
        // The states that hold a line, written as in the `deliveries_line` index.
        let holding = if hold_dead {
            "state IN ('pending', 'dead')"
        } else {
            "state IN ('pending', 'dead') AND state = 'pending'"
        };
        let held_behind = if state == "pending" {
            self.conn
                .prepare_cached(&format!(
                    "SELECT id, event_id, state, attempts, next_attempt_at FROM deliveries
                     WHERE subscription = ?1 AND conversation_id = ?2 AND event_seq < ?3
                       AND {holding}
                     ORDER BY event_seq LIMIT 1"
                ))?
                .query_row(params![subscription, conversation, seq], |row| {
                    let state: String = row.get(2)?;
                    Ok(HeldBehind {
                        delivery_id: row.get(0)?,
                        event_id: row.get(1)?,
                        next_attempt_at: if state == "pending" {
                            row.get(4)?
                        } else {
                            None
                        },
                        state,
                        attempts: row.get(3)?,
                    })
                })
                .optional()?
        } else {
            None
        };
        let holds = state == "pending" || (hold_dead && state == "dead");
        let waiting_behind: u64 = if holds {
            self.conn
                .prepare_cached(
                    "SELECT count(*) FROM deliveries
                     WHERE subscription = ?1 AND conversation_id = ?2 AND event_seq > ?3
                       AND state IN ('pending', 'dead') AND state = 'pending'",
                )?
                .query_row(params![subscription, conversation, seq], |row| row.get(0))?
        } else {
            0
        };
        Ok(Some(LineView {
            conversation_id: conversation,
            held_behind,
            waiting_behind,
        }))
    }
}
