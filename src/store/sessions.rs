//! Admin sessions and the login throttle, kept in the store so that every node sharing
//! it knows them: a login on one node works on the next, a logout ends the session on
//! all of them at once, and wrong passwords count against an address whichever node
//! they reach. Sessions are found by the SHA-256 of their id (the primary key); the id
//! itself is never stored. Reads and writes go through [`SidePool`] connections, never
//! the writer.

use super::db::{params, Db};
use super::side::SidePool;

/// A session as the store keeps it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct StoredSession {
    pub csrf_token: String,
    /// SHA-256 of the admin password hash the session logged in with: a session outlives
    /// no change of password.
    pub password: Vec<u8>,
    /// Unix milliseconds.
    pub expires_at_ms: i64,
}

/// An address's failures in its current throttle window.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Failures {
    /// Unix milliseconds.
    pub window_start_ms: i64,
    pub count: u64,
}

/// Sessions and the login throttle of one store. Cheap to clone.
#[derive(Clone)]
pub struct Sessions {
    pool: SidePool,
}

impl Sessions {
    pub fn new(pool: SidePool) -> Sessions {
        Sessions { pool }
    }

    /// Keeps a new session under `key` (the SHA-256 of its id). Blocks.
    pub fn start(
        &self,
        key: &[u8; 32],
        session: &StoredSession,
        now_ms: i64,
    ) -> anyhow::Result<()> {
        self.pool.with(|db| {
            db.execute(
                "INSERT INTO admin_sessions (key, csrf_token, password, created_at, expires_at)
                 VALUES (?1, ?2, ?3, ?4, ?5)",
                params![
                    key.as_slice(),
                    session.csrf_token,
                    session.password,
                    now_ms,
                    session.expires_at_ms
                ],
            )?;
            Ok(())
        })
    }

    /// The session kept under `key`, expired or not. Blocks; one primary-key read.
    pub fn find(&self, key: &[u8; 32]) -> anyhow::Result<Option<StoredSession>> {
        self.pool.with(|db| {
            Ok(db.query_opt(
                "SELECT csrf_token, password, expires_at FROM admin_sessions WHERE key = ?1",
                params![key.as_slice()],
                |row| {
                    Ok(StoredSession {
                        csrf_token: row.get(0)?,
                        password: row.get(1)?,
                        expires_at_ms: row.get(2)?,
                    })
                },
            )?)
        })
    }

    /// Ends the session kept under `key` (on every node). Blocks.
    pub fn end(&self, key: &[u8; 32]) -> anyhow::Result<()> {
        self.pool.with(|db| {
            db.execute(
                "DELETE FROM admin_sessions WHERE key = ?1",
                params![key.as_slice()],
            )?;
            Ok(())
        })
    }

    /// `address`'s failures in its window, if it has any since `window_from_ms`.
    pub fn failures(&self, address: &str, window_from_ms: i64) -> anyhow::Result<Option<Failures>> {
        self.pool.with(|db| {
            Ok(db.query_opt(
                "SELECT window_start, failures FROM login_throttle
                  WHERE address = ?1 AND window_start > ?2",
                params![address, window_from_ms],
                read_failures,
            )?)
        })
    }

    /// Counts one failure of `address` now, starting a new window at `now_ms` when its
    /// window began at or before `window_from_ms`; returns the count after it. One
    /// statement, so nodes counting at once each see their own count.
    pub fn count_failure(
        &self,
        address: &str,
        now_ms: i64,
        window_from_ms: i64,
    ) -> anyhow::Result<Failures> {
        self.pool
            .with(|db| Ok(count_failure(db, address, now_ms, window_from_ms)?))
    }

    /// Takes back one failure of `address` (a login that turned out right).
    pub fn forgive(&self, address: &str) -> anyhow::Result<()> {
        self.pool.with(|db| {
            db.execute(
                "UPDATE login_throttle SET failures = failures - 1
                  WHERE address = ?1 AND failures > 0",
                params![address],
            )?;
            Ok(())
        })
    }

    /// Deletes expired sessions and throttle windows that began before `window_from_ms`;
    /// returns how many rows went.
    pub fn sweep(&self, now_ms: i64, window_from_ms: i64) -> anyhow::Result<usize> {
        self.pool.with(|db| {
            let sessions = db.execute(
                "DELETE FROM admin_sessions WHERE expires_at <= ?1",
                params![now_ms],
            )?;
            let windows = db.execute(
                "DELETE FROM login_throttle WHERE window_start <= ?1",
                params![window_from_ms],
            )?;
            Ok(sessions + windows)
        })
    }
}

fn count_failure(
    db: &Db,
    address: &str,
    now_ms: i64,
    window_from_ms: i64,
) -> super::db::Result<Failures> {
    db.query_row(
        "INSERT INTO login_throttle (address, window_start, failures) VALUES (?1, ?2, 1)
         ON CONFLICT (address) DO UPDATE SET
            window_start = CASE WHEN login_throttle.window_start <= ?3
                                THEN ?2 ELSE login_throttle.window_start END,
            failures = CASE WHEN login_throttle.window_start <= ?3
                            THEN 1 ELSE login_throttle.failures + 1 END
         RETURNING window_start, failures",
        params![address, now_ms, window_from_ms],
        read_failures,
    )
}

fn read_failures(row: &super::db::Row<'_>) -> super::db::Result<Failures> {
    Ok(Failures {
        window_start_ms: row.get(0)?,
        count: row.get(1)?,
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    fn memory() -> Db {
        let mut conn = rusqlite::Connection::open_in_memory().unwrap();
        crate::store::schema::migrate(&mut conn).unwrap();
        Db::sqlite(conn)
    }

    #[test]
    fn failures_count_up_within_a_window_and_start_over_after_it() {
        let db = memory();
        let counts: Vec<u64> = (0..3)
            .map(|n| count_failure(&db, "192.0.2.1", 1_000 + n, 0).unwrap().count)
            .collect();
        assert_eq!(counts, [1, 2, 3]);
        let other = count_failure(&db, "192.0.2.2", 1_005, 0).unwrap();
        assert_eq!(other.count, 1, "another address counts on its own");
        // The window that began at 1000 is over once window_from reaches it.
        let fresh = count_failure(&db, "192.0.2.1", 70_000, 1_000).unwrap();
        assert_eq!(
            fresh,
            Failures {
                window_start_ms: 70_000,
                count: 1
            }
        );
    }
}
