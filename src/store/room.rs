//! `[storage] max_size`: whether the store has room for input, measured after each
//! commit as pages in use plus the WAL file. The WAL file keeps its size after a
//! checkpoint (up to `journal_size_limit`, 4 MiB), so a store whose data retention has
//! pruned could stay "full" on the WAL's size alone and refuse input until a restart.
//! While input is refused, the writer therefore checkpoints and truncates the WAL (at
//! most once a second, never waiting for a reader) and measures again.

use std::time::{Duration, Instant};

use crate::store::db::Db;

use super::{measure, IngestBatch, StoreFull, WAL_SIZE_LIMIT};

/// The smallest `max_size` the store can run under: the WAL it keeps between
/// checkpoints, and 1 MiB for the database itself (its schema and some rows).
pub const MIN_MAX_SIZE: u64 = WAL_SIZE_LIMIT as u64 + (1 << 20);

/// How often a refusing store tries to shrink its WAL.
const ROOM_EVERY: Duration = Duration::from_secs(1);

#[derive(Debug, Default)]
pub(super) struct Budget {
    /// `[storage] max_size`: input is refused while `used` is over it.
    pub max: Option<u64>,
    /// What the store held after the last commit; measured only under a max_size.
    pub used: u64,
    /// Input was refused since the last measure.
    refused: bool,
    last_truncate: Option<Instant>,
}

impl Budget {
    /// Whether this batch is refused: one that adds events or rejections while the
    /// store is over the limit. (A bare spool position adds nothing.)
    pub fn refusal(&mut self, batch: &IngestBatch) -> Option<StoreFull> {
        let max = self.max?;
        let adds_rows = !batch.events.is_empty() || !batch.rejections.is_empty();
        let refused = adds_rows && self.used > max;
        self.refused |= refused;
        refused.then_some(StoreFull {
            used: self.used,
            max,
        })
    }

    /// Measures after a commit; after a refusal, truncates the WAL first when it is what
    /// keeps the store over the limit.
    pub fn measure(&mut self, conn: &Db) {
        if self.max.is_none() {
            return;
        }
        let refused = std::mem::take(&mut self.refused);
        let due = self
            .last_truncate
            .is_none_or(|at| at.elapsed() >= ROOM_EVERY);
        if refused && due {
            self.last_truncate = Some(Instant::now());
            if let Err(err) = truncate_wal(conn) {
                tracing::debug!("could not truncate the WAL to make room: {err}");
            }
        }
        match measure(conn) {
            Ok(used) => self.used = used,
            Err(err) => tracing::warn!(%err, "could not measure the store's size"),
        }
    }
}

/// Copies the WAL into the database and truncates it to nothing, unless a reader holds
/// it: then nothing waits and the next refusal tries again.
fn truncate_wal(db: &Db) -> rusqlite::Result<()> {
    let Some(conn) = db.as_sqlite() else {
        return Ok(());
    };
    conn.busy_timeout(Duration::ZERO)?;
    let result = conn.query_row("PRAGMA wal_checkpoint(TRUNCATE)", [], |row| {
        row.get::<_, i64>(0)
    });
    conn.busy_timeout(Duration::from_secs(5))?;
    result.map(|_| ())
}
