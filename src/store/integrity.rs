//! The integrity check at start: `PRAGMA quick_check` (every page and b-tree is read and
//! checked, without the slower index-against-table comparison of `integrity_check`). It
//! runs beside the starting store on a read connection of its own, so it delays nothing,
//! and is stopped after [`CHECK_LIMIT`] so a huge store on a slow disk does not keep a
//! read transaction open (which holds back WAL checkpoints) for long.
//!
//! A corrupt store is reported, not refused: posthorn starts, logs the problem as an
//! error and `/healthz` answers 503 naming it, so the operator can still read what the
//! store holds (admin page, API) and what is intact keeps being delivered. Writes that
//! hit a damaged page fail like any failing commit (input gets 503, nothing is
//! acknowledged). Refusing to start would instead stop every delivery and every read,
//! with the same recovery ahead (`sqlite3 posthorn.db .recover`, or a backup).

use std::time::{Duration, Instant};

use rusqlite::Connection;

/// How long the check may run before it is stopped (and said to be skipped).
pub const CHECK_LIMIT: Duration = Duration::from_secs(60);
/// Most problems listed (SQLite stops there).
const MAX_PROBLEMS: usize = 10;

/// What the check found.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Integrity {
    Ok(Duration),
    /// SQLite's own words for each problem found, at most [`MAX_PROBLEMS`].
    Corrupt(Vec<String>),
    /// It ran out of time (or could not run) before it finished.
    Unfinished(String),
}

/// Runs `PRAGMA quick_check` on `conn`, interrupting it after `limit`.
pub fn quick_check(conn: &Connection, limit: Duration) -> Integrity {
    let started = Instant::now();
    let interrupt = conn.get_interrupt_handle();
    let (done, wait) = crossbeam_channel::bounded::<()>(0);
    let timer = std::thread::Builder::new()
        .name("store-check-timer".into())
        .spawn(move || {
            if let Err(crossbeam_channel::RecvTimeoutError::Timeout) = wait.recv_timeout(limit) {
                interrupt.interrupt();
            }
        });
    let rows = (|| -> rusqlite::Result<Vec<String>> {
        let mut stmt = conn.prepare(&format!("PRAGMA quick_check({MAX_PROBLEMS})"))?;
        let rows = stmt.query_map([], |row| row.get::<_, String>(0))?;
        rows.collect()
    })();
    drop(done);
    if let Ok(timer) = timer {
        let _ = timer.join();
    }
    match rows {
        Ok(rows) if rows.len() == 1 && rows[0] == "ok" => Integrity::Ok(started.elapsed()),
        Ok(rows) if rows.is_empty() => Integrity::Unfinished("it returned nothing".into()),
        Ok(rows) => Integrity::Corrupt(rows),
        Err(err) if err.sqlite_error_code() == Some(rusqlite::ErrorCode::OperationInterrupted) => {
            Integrity::Unfinished(format!("it did not finish within {} s", limit.as_secs()))
        }
        Err(err) if super::faults::is_sqlite_fault(&err) => {
            Integrity::Corrupt(vec![err.to_string()])
        }
        Err(err) => Integrity::Unfinished(err.to_string()),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_sound_store_checks_ok() {
        let conn = Connection::open_in_memory().unwrap();
        conn.execute_batch("CREATE TABLE t (x); INSERT INTO t VALUES (1), (2);")
            .unwrap();
        assert!(matches!(
            quick_check(&conn, Duration::from_secs(5)),
            Integrity::Ok(_)
        ));
    }
}
