//! `renamed_from`: a subscription renamed in the config takes over the old name's
//! deliveries (pending ones keep their place in the queue), attempts and pause state, so
//! renaming loses neither queue nor history. Run by the writer in one savepoint, before
//! the removed names' pending deliveries are cancelled.

use crate::store::db::{params, Db};

use super::writer::{AdminCommand, Command};
use super::StoreHandle;

impl StoreHandle {
    /// Moves everything of each `(old, new)` pair's old name to the new one; returns how
    /// many deliveries moved. A pair whose old name holds nothing (renamed earlier, or
    /// never used) changes nothing, so `renamed_from` may stay in the config.
    pub fn rename_subscriptions(&self, renames: Vec<(String, String)>) -> anyhow::Result<usize> {
        if renames.is_empty() {
            return Ok(0);
        }
        // Paused before the commit: the scheduler, woken by the commit, must not claim
        // the moved deliveries of a paused subscription in between.
        let mut paused_early = Vec::new();
        for (old, new) in &renames {
            if self.is_paused(old) && self.paused_set().insert(new.clone()) {
                paused_early.push(new.clone());
            }
        }
        let moved = self.ask(|reply| {
            Command::Admin(AdminCommand::Rename {
                renames: renames.clone(),
                reply,
            })
        });
        if moved.is_err() {
            for new in &paused_early {
                self.paused_set().remove(new);
            }
            return moved;
        }
        for (old, new) in &renames {
            self.paused_set().remove(old);
            let since = self.failing_map().remove(old);
            if let Some(since) = since {
                self.failing_map().entry(new.clone()).or_insert(since);
            }
        }
        moved
    }
}

/// The SQL of [`StoreHandle::rename_subscriptions`]. A delivery of an event the new name
/// already has (`UNIQUE (event_seq, subscription)`) stays with the old name and is
/// cancelled with it: the new name's own delivery of that event stands. (`NOT EXISTS`
/// rather than SQLite's `UPDATE OR IGNORE`, which PostgreSQL does not have.)
pub(super) fn rename(tx: &Db, renames: &[(String, String)]) -> crate::store::db::Result<usize> {
    let mut moved = 0;
    for (old, new) in renames {
        moved += tx
            .prepare_cached(
                "UPDATE deliveries SET subscription = ?2 WHERE subscription = ?1
                 AND NOT EXISTS (SELECT 1 FROM deliveries taken
                                 WHERE taken.event_seq = deliveries.event_seq
                                   AND taken.subscription = ?2)",
            )?
            .execute(params![old, new])?;
        tx.prepare_cached("UPDATE attempts SET subscription = ?2 WHERE subscription = ?1")?
            .execute(params![old, new])?;
        // The pause flag and failing clock go along unless the new name has its own.
        tx.prepare_cached(
            "UPDATE subscription_state SET subscription = ?2 WHERE subscription = ?1
             AND NOT EXISTS (SELECT 1 FROM subscription_state own WHERE own.subscription = ?2)",
        )?
        .execute(params![old, new])?;
        tx.prepare_cached("DELETE FROM subscription_state WHERE subscription = ?1")?
            .execute(params![old])?;
    }
    Ok(moved)
}
