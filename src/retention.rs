//! Retention: the pruner thread that keeps the store to the periods in `[retention]`, so
//! the database stops growing once traffic is steady.
//!
//! Pruning shares the single writer with ingest and delivery, so it goes in small steps:
//! each prune command changes at most [`STEP_ROWS`] rows of a kind (see `store/prune.rs`)
//! and is one of many commands in a group commit, never a long delete that input would
//! queue behind. While a step reports more to do, the next follows after [`STEP_PAUSE`];
//! otherwise the pruner sleeps for `[retention] interval`.
//!
//! Space: SQLite puts the pages of deleted rows on its free list and fills them before
//! it grows the file, so once the oldest rows go as fast as new ones come, the file stays
//! the size of the retention window. posthorn does not use `auto_vacuum`: it can only be
//! switched on for an existing database by a full `VACUUM` (a rewrite of the whole file
//! that needs as much free disk again and holds the writer for its duration), and in a
//! steady state handing pages back to the filesystem only to take them again would be
//! wasted work. To shrink the file after a one-off spike, stop posthorn and run
//! `sqlite3 posthorn.db VACUUM`.

use std::thread::JoinHandle;
use std::time::{Duration, Instant};

use crossbeam_channel::{Receiver, RecvTimeoutError, Sender};

use crate::config::RetentionConfig;
use crate::store::{now_ms, PruneCursor, PruneReport, PruneRequest, StoreHandle};

/// Most rows of each kind one prune step changes: small enough that a step costs the
/// writer about a millisecond.
pub const STEP_ROWS: usize = 200;
/// Pause between steps while there is a backlog to prune, so ingest and delivery commands
/// get the writer between them.
pub const STEP_PAUSE: Duration = Duration::from_millis(20);
/// Least time between two info lines saying what was pruned (journald reads them; a
/// busy store prunes something at every interval).
const SUMMARY_EVERY: Duration = Duration::from_secs(300);

/// The running pruner. `stop` (or dropping it) ends the thread after its current step.
pub struct Pruner {
    stop: Option<Sender<()>>,
    thread: Option<JoinHandle<()>>,
}

impl Pruner {
    pub fn start(store: StoreHandle, config: RetentionConfig) -> anyhow::Result<Pruner> {
        let (stop, stopped) = crossbeam_channel::bounded(1);
        let thread = std::thread::Builder::new()
            .name("pruner".into())
            .spawn(move || run(&store, &config, &stopped))?;
        Ok(Pruner {
            stop: Some(stop),
            thread: Some(thread),
        })
    }

    pub fn stop(mut self) {
        self.halt();
    }

    fn halt(&mut self) {
        // Dropping the sender wakes the thread from its sleep.
        self.stop.take();
        if let Some(thread) = self.thread.take() {
            let _ = thread.join();
        }
    }
}

impl Drop for Pruner {
    fn drop(&mut self) {
        self.halt();
    }
}

/// The cutoffs of one step at `now_ms`.
pub fn request(config: &RetentionConfig, now_ms: i64, cursor: PruneCursor) -> PruneRequest {
    let before = |period: Duration| now_ms.saturating_sub(period.as_millis() as i64);
    PruneRequest {
        delivered_before_ms: before(config.delivered),
        failed_before_ms: before(config.failed),
        payloads_before_ms: before(config.payloads),
        rejections_before_ms: before(config.rejections),
        limit: STEP_ROWS,
        cursor,
    }
}

fn run(store: &StoreHandle, config: &RetentionConfig, stopped: &Receiver<()>) {
    let mut cursor = PruneCursor::default();
    // What was pruned since the last info line; the first comes once the first run of
    // steps has caught up.
    let mut total = PruneReport::default();
    let mut said_at: Option<Instant> = None;
    loop {
        let wait = match store.prune(request(config, now_ms(), cursor)) {
            Ok(report) => {
                if report.pruned_anything() {
                    tracing::debug!(?report, "prune step");
                }
                cursor = report.cursor;
                add(&mut total, &report);
                let due = said_at.is_none_or(|at| at.elapsed() >= SUMMARY_EVERY);
                if !report.more && due && total.pruned_anything() {
                    tracing::info!(
                        deliveries = total.deliveries,
                        attempts = total.attempts,
                        events = total.events,
                        payloads_dropped = total.payloads,
                        rejections = total.rejections,
                        "pruned what [retention] no longer keeps"
                    );
                    total = PruneReport::default();
                    said_at = Some(Instant::now());
                }
                if report.more {
                    STEP_PAUSE
                } else {
                    config.interval
                }
            }
            Err(err) => {
                tracing::warn!("pruning failed; will try again: {err:#}");
                config.interval
            }
        };
        match stopped.recv_timeout(wait) {
            Err(RecvTimeoutError::Timeout) => {}
            Ok(()) | Err(RecvTimeoutError::Disconnected) => return,
        }
    }
}

fn add(total: &mut PruneReport, step: &PruneReport) {
    total.deliveries += step.deliveries;
    total.attempts += step.attempts;
    total.events += step.events;
    total.payloads += step.payloads;
    total.rejections += step.rejections;
}
