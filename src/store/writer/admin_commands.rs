//! The operator's actions as the writer runs them: each in its own savepoint, answered
//! after the commit like any other command.

use crate::store::db::Transaction;

use super::{in_savepoint, now_ms, AdminCommand, Pending};
use crate::store::admin::{replay, retry_failed, retry_one, set_paused};
use crate::store::forget;
use crate::store::AdminRefusal;

/// Runs one admin command in its own savepoint; also says whether it queued deliveries
/// (so the scheduler is woken after the commit).
pub(super) fn admin(tx: &mut Transaction<'_>, command: AdminCommand) -> (Pending, bool) {
    let now = now_ms();
    match command {
        AdminCommand::Retry { delivery_id, reply } => {
            let result = refusable(in_savepoint(tx, |tx| retry_one(tx, delivery_id, now)));
            let queued = result.is_ok();
            (Pending::Unit(reply, result), queued)
        }
        AdminCommand::RetryFailed {
            subscription,
            since_ms,
            include_cancelled,
            reply,
        } => {
            let result = in_savepoint(tx, |tx| {
                retry_failed(tx, &subscription, since_ms, include_cancelled, now)
            });
            let queued = matches!(result, Ok(n) if n > 0);
            (Pending::Count(reply, result), queued)
        }
        AdminCommand::Replay {
            event_id,
            subscription,
            reply,
        } => {
            let result = refusable(in_savepoint(tx, |tx| {
                replay(tx, &event_id, &subscription, now)
            }));
            let queued = result.is_ok();
            (Pending::Replay(reply, result), queued)
        }
        AdminCommand::Forget {
            conversation,
            let_pending_finish,
            reply,
        } => {
            let result = refusable(in_savepoint(tx, |tx| {
                forget::erasing(tx, |tx| {
                    forget::forget(tx, &conversation, let_pending_finish, now)
                })
            }));
            (Pending::Forget(reply, result), false)
        }
        AdminCommand::SetPaused {
            subscription,
            paused,
            reply,
        } => {
            let result = in_savepoint(tx, |tx| set_paused(tx, &subscription, paused, now));
            // A resumed subscription may have work due: wake the scheduler for it.
            let resumed = !paused && matches!(result, Ok(true));
            (Pending::Flag(reply, result), resumed)
        }
        AdminCommand::Rename { renames, reply } => {
            let result = in_savepoint(tx, |tx| crate::store::rename::rename(tx, &renames));
            let moved = matches!(result, Ok(n) if n > 0);
            (Pending::Count(reply, result), moved)
        }
    }
}

/// Flattens a refusal into the command's error, where callers can `downcast_ref` it.
fn refusable<T>(result: anyhow::Result<Result<T, AdminRefusal>>) -> anyhow::Result<T> {
    result.and_then(|inner| inner.map_err(anyhow::Error::from))
}
