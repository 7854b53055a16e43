//! The database schema and its migrations. Each migration runs once, in order, inside a
//! transaction, and `PRAGMA user_version` records how far a database has come.

use rusqlite::Connection;

/// Migration `n` (1-based) is `MIGRATIONS[n - 1]`. Append only: never edit a shipped one.
const MIGRATIONS: &[&str] = &[r#"
CREATE TABLE events (
    seq             INTEGER PRIMARY KEY,
    id              TEXT NOT NULL UNIQUE,
    type            TEXT NOT NULL,
    conversation_id TEXT,
    project_id      TEXT,
    received_at     INTEGER NOT NULL,  -- unix milliseconds
    source          TEXT NOT NULL,
    body            TEXT NOT NULL      -- the exact delivery body
);

CREATE TABLE deliveries (
    id              INTEGER PRIMARY KEY,
    event_seq       INTEGER NOT NULL REFERENCES events(seq),
    event_id        TEXT NOT NULL,
    subscription    TEXT NOT NULL,
    state           TEXT NOT NULL CHECK (state IN ('pending', 'delivered', 'dead', 'cancelled')),
    attempts        INTEGER NOT NULL DEFAULT 0,
    next_attempt_at INTEGER,           -- unix ms; NULL once final
    leased_at       INTEGER,           -- unix ms; set while a worker holds it
    created_at      INTEGER NOT NULL,
    updated_at      INTEGER NOT NULL,
    last_status     INTEGER,
    last_error      TEXT,
    UNIQUE (event_seq, subscription)
);
-- The scheduler's only question: which pending deliveries of this subscription are due?
CREATE INDEX deliveries_due ON deliveries (subscription, next_attempt_at) WHERE state = 'pending';
CREATE INDEX deliveries_leased ON deliveries (leased_at) WHERE leased_at IS NOT NULL;

CREATE TABLE attempts (
    id               INTEGER PRIMARY KEY,
    delivery_id      INTEGER NOT NULL REFERENCES deliveries(id),
    attempt          INTEGER NOT NULL,
    started_at       INTEGER NOT NULL,
    duration_ms      INTEGER NOT NULL,
    status           INTEGER,
    error            TEXT,
    response_snippet TEXT
);
CREATE INDEX attempts_by_delivery ON attempts (delivery_id);

CREATE TABLE rejections (
    id      INTEGER PRIMARY KEY,
    at      INTEGER NOT NULL,
    source  TEXT NOT NULL,
    line    INTEGER,
    reason  TEXT NOT NULL,
    snippet TEXT
);

-- How far each spool .ndjson file has been read, keyed by device and inode so that a
-- renamed (rotated) file keeps its position; `head` holds its first bytes, so a new file
-- that reuses the inode is not mistaken for it.
CREATE TABLE spool_positions (
    file_key   TEXT PRIMARY KEY,
    path       TEXT NOT NULL,
    offset     INTEGER NOT NULL,
    line       INTEGER NOT NULL,
    head       BLOB NOT NULL,
    updated_at INTEGER NOT NULL
);
"#];

/// Brings the database up to the newest schema. Refuses a database written by a newer
/// posthorn rather than guessing at its layout.
pub fn migrate(conn: &mut Connection) -> rusqlite::Result<()> {
    let current: usize = conn.query_row("PRAGMA user_version", [], |row| row.get(0))?;
    if current > MIGRATIONS.len() {
        return Err(rusqlite::Error::SqliteFailure(
            rusqlite::ffi::Error::new(rusqlite::ffi::SQLITE_MISMATCH),
            Some(format!(
                "the database has schema version {current}, newer than this posthorn knows ({}); \
                 upgrade posthorn",
                MIGRATIONS.len()
            )),
        ));
    }
    for (index, sql) in MIGRATIONS.iter().enumerate().skip(current) {
        let tx = conn.transaction()?;
        tx.execute_batch(sql)?;
        tx.pragma_update(None, "user_version", index + 1)?;
        tx.commit()?;
    }
    Ok(())
}
