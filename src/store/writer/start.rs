//! Starting the writer: what a crash left (leases, a deferred forget) is settled, the
//! pauses and health kept in the store are loaded into the handle, and the writer thread
//! starts with the connection.

use std::collections::HashSet;
use std::sync::atomic::AtomicBool;
use std::sync::{Arc, RwLock};

use crossbeam_channel::Sender;

use super::{now_ms, StoreHandle, Writer};
use crate::metrics::Metrics;
use crate::store::claimer::Claimer;
use crate::store::db::{Db, Dialect};
use crate::store::faults::Faults;
use crate::store::{forget, health, DueHints};

/// `claims`: on PostgreSQL, a second connection for the claims (see `claimer.rs`).
pub(in crate::store) fn spawn(
    mut conn: Db,
    claims: Option<Db>,
    new_work: Sender<()>,
    faults: Arc<Faults>,
) -> anyhow::Result<(StoreHandle, std::thread::JoinHandle<()>)> {
    let recovered = recover_leases(&mut conn)?;
    if recovered > 0 {
        tracing::info!(
            recovered,
            "returned deliveries leased before a crash to the queue"
        );
    }
    let forgetting = forget::settle_at_start(&mut conn)?;
    let paused = load_paused(&conn)?;
    let loaded = health::load(&conn)?;
    let metrics = Arc::new(Metrics::new(now_ms()));
    let (commands, inbox) = crossbeam_channel::unbounded();
    let writer_metrics = Arc::clone(&metrics);
    let writer_faults = Arc::clone(&faults);
    let hints = Arc::new(DueHints::default());
    let writer_hints = Arc::clone(&hints);
    let shared = conn.dialect() == Dialect::Postgres;
    let claimer =
        claims.map(|db| Arc::new(Claimer::new(db, Arc::clone(&metrics), Arc::clone(&faults))));
    let finishing = claimer.as_ref().map(|c| Arc::clone(&c.finishing));
    let thread = std::thread::Builder::new()
        .name("store-writer".into())
        .spawn(move || {
            Writer {
                conn,
                new_work,
                durable: true,
                budget: Default::default(),
                metrics: writer_metrics,
                faults: writer_faults,
                hints: writer_hints,
                ordered: HashSet::new(),
                forgetting,
                finishing,
            }
            .run(inbox)
        })?;
    let handle = StoreHandle {
        commands,
        paused: Arc::new(RwLock::new(paused)),
        failing: Arc::new(RwLock::new(loaded.failing)),
        delivery_paused: Arc::new(AtomicBool::new(loaded.delivery_paused)),
        metrics,
        faults,
        hints,
        shared,
        claimer,
    };
    Ok((handle, thread))
}

pub(in crate::store) fn load_paused(conn: &Db) -> crate::store::db::Result<HashSet<String>> {
    conn.prepare("SELECT subscription FROM subscription_state WHERE paused = 1")?
        .query_map([], |row| row.get(0))?
        .collect()
}

/// A delivery leased when the process died was never answered for: make it due now.
/// Only on SQLite, whose lock file makes this process the store's only user. On
/// PostgreSQL other nodes may hold live leases; one never answered falls due when it ends.
fn recover_leases(conn: &mut Db) -> crate::store::db::Result<usize> {
    if conn.dialect() == Dialect::Postgres {
        return Ok(0);
    }
    conn.execute(
        "UPDATE deliveries SET next_attempt_at = leased_at, leased_at = NULL
         WHERE leased_at IS NOT NULL AND state = 'pending'",
        [],
    )
}
