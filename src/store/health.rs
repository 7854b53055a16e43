//! What the store keeps of receiver health and the global delivery switch: why a
//! subscription was paused (410 Gone, failing too long), since when it has been failing,
//! and whether an operator switched all delivery off. The scheduler reads these at every
//! claim, so the handle mirrors them in memory beside the durable rows.

use std::collections::HashMap;
use std::sync::atomic::Ordering;

use crate::store::db::{params, Db, OptionalExtension};

use super::writer::{Command, StoreHandle};

/// The `settings` key of the operator's "pause all".
pub(super) const DELIVERY_PAUSED_KEY: &str = "delivery_paused";

/// Receiver-health writes, run by the writer in its transaction.
pub(super) enum HealthCommand {
    /// Pause with a reason; answers whether it was running.
    PauseBecause {
        subscription: String,
        reason: String,
        reply: crossbeam_channel::Sender<anyhow::Result<bool>>,
    },
    /// Failing since (unix ms), or `None`: succeeding again.
    SetFailing {
        subscription: String,
        since_ms: Option<i64>,
    },
    /// Every subscription's failing clock starts again.
    ForgetFailing,
}

impl StoreHandle {
    /// Pauses `subscription` for `reason` (shown on the admin page), durably; returns
    /// whether it was running. Resuming it clears the reason.
    pub fn pause_because(&self, subscription: String, reason: String) -> anyhow::Result<bool> {
        let name = subscription.clone();
        let changed = self.ask(|reply| {
            Command::Health(HealthCommand::PauseBecause {
                subscription,
                reason,
                reply,
            })
        })?;
        self.paused_set().insert(name);
        Ok(changed)
    }

    /// Records that `subscription` has failed without a success since `since_ms`
    /// (`None`: it succeeded). Applied in memory at once; written with the next commit.
    pub fn set_failing_since(&self, subscription: &str, since_ms: Option<i64>) {
        {
            let mut failing = self.failing_map();
            match since_ms {
                Some(at) => failing.insert(subscription.to_string(), at),
                None => failing.remove(subscription),
            };
        }
        let _ = self.send(Command::Health(HealthCommand::SetFailing {
            subscription: subscription.to_string(),
            since_ms,
        }));
    }

    /// Starts every subscription's auto-pause clock again: while delivery was switched
    /// off nothing could fail, so that time does not count.
    pub fn forget_failing(&self) {
        self.failing_map().clear();
        let _ = self.send(Command::Health(HealthCommand::ForgetFailing));
    }

    /// Since when `subscription` has been failing without a success (kept across
    /// restarts; cleared by a success or a resume).
    pub fn failing_since(&self, subscription: &str) -> Option<i64> {
        self.failing_map().get(subscription).copied()
    }

    /// Switches all delivery off (`true`) or on again, durably; returns whether that
    /// changed anything. Intake goes on either way.
    pub fn set_delivery_paused(&self, paused: bool) -> anyhow::Result<bool> {
        let was = self.delivery_paused();
        self.put_setting(DELIVERY_PAUSED_KEY, if paused { "1" } else { "0" })?;
        self.delivery_paused_flag().store(paused, Ordering::Relaxed);
        Ok(was != paused)
    }

    /// Whether an operator switched all delivery off (kept across restarts).
    pub fn delivery_paused(&self) -> bool {
        self.delivery_paused_flag().load(Ordering::Relaxed)
    }
}

/// Runs one receiver-health command; `Some` carries the answer to send after the commit.
pub(super) fn run(
    tx: &Db,
    command: HealthCommand,
    now: i64,
) -> Option<(
    crossbeam_channel::Sender<anyhow::Result<bool>>,
    anyhow::Result<bool>,
)> {
    match command {
        HealthCommand::PauseBecause {
            subscription,
            reason,
            reply,
        } => {
            let result = pause_because(tx, &subscription, &reason, now).map_err(Into::into);
            Some((reply, result))
        }
        HealthCommand::SetFailing {
            subscription,
            since_ms,
        } => {
            if let Err(err) = set_failing(tx, &subscription, since_ms, now) {
                tracing::error!(%err, subscription, "could not record since when it fails");
            }
            None
        }
        HealthCommand::ForgetFailing => {
            if let Err(err) = tx.execute(
                "UPDATE subscription_state SET failing_since = NULL WHERE failing_since IS NOT NULL",
                [],
            ) {
                tracing::error!(%err, "could not restart the failing clocks");
            }
            None
        }
    }
}

fn pause_because(
    tx: &Db,
    subscription: &str,
    reason: &str,
    now: i64,
) -> crate::store::db::Result<bool> {
    let was = super::admin::is_paused(tx, subscription)?;
    tx.prepare_cached(
        "INSERT INTO subscription_state (subscription, paused, updated_at, pause_reason)
         VALUES (?1, 1, ?2, ?3)
         ON CONFLICT (subscription) DO UPDATE SET
             paused = 1, updated_at = excluded.updated_at,
             pause_reason = excluded.pause_reason",
    )?
    .execute(params![subscription, now, reason])?;
    Ok(!was)
}

fn set_failing(
    tx: &Db,
    subscription: &str,
    since_ms: Option<i64>,
    now: i64,
) -> crate::store::db::Result<()> {
    tx.prepare_cached(
        "INSERT INTO subscription_state (subscription, paused, updated_at, failing_since)
         VALUES (?1, 0, ?2, ?3)
         ON CONFLICT (subscription) DO UPDATE SET
             failing_since = excluded.failing_since, updated_at = excluded.updated_at",
    )?
    .execute(params![subscription, now, since_ms])?;
    Ok(())
}

/// What the handle mirrors, read once when the store opens.
pub(super) struct Loaded {
    pub failing: HashMap<String, i64>,
    pub delivery_paused: bool,
}

pub(super) fn load(conn: &Db) -> crate::store::db::Result<Loaded> {
    let failing = conn
        .prepare(
            "SELECT subscription, failing_since FROM subscription_state
             WHERE failing_since IS NOT NULL",
        )?
        .query_map([], |row| Ok((row.get(0)?, row.get(1)?)))?
        .collect::<crate::store::db::Result<_>>()?;
    let delivery_paused = conn
        .query_row(
            "SELECT value FROM settings WHERE key = ?1",
            [DELIVERY_PAUSED_KEY],
            |row| row.get::<String>(0),
        )
        .optional()?
        .is_some_and(|v| v == "1");
    Ok(Loaded {
        failing,
        delivery_paused,
    })
}

#[cfg(test)]
mod tests {
    use super::super::{Reader, Store};
    use super::*;

    fn open(path: &std::path::Path) -> (Store, StoreHandle) {
        let (tx, _rx) = crossbeam_channel::bounded(1);
        let store = Store::open(path, tx).unwrap();
        let handle = store.handle();
        (store, handle)
    }

    #[test]
    fn pause_reasons_failing_times_and_the_switch_survive_a_reopen() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("s.db");
        {
            let (store, handle) = open(&path);
            assert!(handle
                .pause_because("crm".into(), "410 Gone".into())
                .unwrap());
            assert!(!handle.pause_because("crm".into(), "again".into()).unwrap());
            handle.set_failing_since("wiki", Some(42));
            handle.set_failing_since("bot", Some(7));
            handle.set_failing_since("bot", None);
            assert!(handle.set_delivery_paused(true).unwrap());
            assert!(!handle.set_delivery_paused(true).unwrap());
            store.close();
        }
        let (_store, handle) = open(&path);
        assert!(handle.is_paused("crm"));
        assert_eq!(handle.failing_since("wiki"), Some(42));
        assert_eq!(handle.failing_since("bot"), None);
        assert!(handle.delivery_paused());
        let reader = Reader::open(&path).unwrap();
        let health = reader
            .subscription_health(&["crm".into(), "wiki".into()], 100)
            .unwrap();
        assert_eq!(health[0].pause_reason.as_deref(), Some("again"));
        assert_eq!(health[1].failing_since, Some(42));

        // A resume clears the reason and the failing clock.
        assert!(handle.set_paused("crm".into(), false).unwrap());
        handle.set_failing_since("crm", Some(5));
        assert!(handle.set_paused("crm".into(), true).unwrap());
        assert!(handle.set_paused("crm".into(), false).unwrap());
        assert_eq!(handle.failing_since("crm"), None);
        let health = reader.subscription_health(&["crm".into()], 100).unwrap();
        assert_eq!(health[0].pause_reason, None);
        assert_eq!(health[0].failing_since, None);

        handle.forget_failing();
        assert_eq!(handle.failing_since("wiki"), None);
        // A round trip through the writer: everything queued before it is committed.
        handle.ping(std::time::Duration::from_secs(5)).unwrap();
        let health = reader.subscription_health(&["wiki".into()], 100).unwrap();
        assert_eq!(health[0].failing_since, None);
    }
}
