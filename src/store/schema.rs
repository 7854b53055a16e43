//! The database schema and its migrations. Each migration runs once, in order, inside a
//! transaction, and `PRAGMA user_version` records how far a database has come.

use rusqlite::Connection;

/// Migration `n` (1-based) is `MIGRATIONS[n - 1]`. Append only: never edit a shipped one.
const MIGRATIONS: &[&str] = &[
    r#"
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
"#,
    // 2: retention. Each index serves one question the pruner asks (store/prune.rs), so a
    // prune step reads only the rows it may change.
    r#"
-- When the body was blanked by [retention] payloads; NULL while it is kept.
ALTER TABLE events ADD COLUMN payload_dropped_at INTEGER;
-- The newest event older than a cutoff.
CREATE INDEX events_received ON events (received_at);
-- Events whose body is still kept, in arrival order: those the payload pruner visits.
CREATE INDEX events_with_payload ON events (seq) WHERE payload_dropped_at IS NULL;
-- Final deliveries by when they became final. Pending rows stay out of it, so retries
-- do not churn it.
CREATE INDEX deliveries_final ON deliveries (state, updated_at) WHERE state != 'pending';
CREATE INDEX rejections_at ON rejections (at);
"#,
    // 3: the audit log of operator actions (config reloads first; admin actions later).
    r#"
CREATE TABLE audit_log (
    id     INTEGER PRIMARY KEY,
    at     INTEGER NOT NULL,  -- unix milliseconds
    actor  TEXT NOT NULL,     -- who or what asked: 'SIGHUP', 'config file change', ...
    action TEXT NOT NULL,     -- e.g. 'config.reload'
    detail TEXT NOT NULL,     -- what changed, or why it was refused; never a secret
    result TEXT NOT NULL      -- 'applied' or 'refused'
);
CREATE INDEX audit_log_at ON audit_log (at);
"#,
    // 4: the admin page and API (store/query.rs). The delivery log is read newest first,
    // by keyset on (created_at, id); each index below serves one filter of it, so a page
    // reads only its own rows. The rowid rides at the end of every index, which gives the
    // (created_at, id) order for free.
    r#"
CREATE INDEX deliveries_created ON deliveries (created_at);
CREATE INDEX deliveries_subscription ON deliveries (subscription, created_at);
CREATE INDEX deliveries_state ON deliveries (state, created_at);
CREATE INDEX deliveries_subscription_state ON deliveries (subscription, state, created_at);
-- Conversation and event type filters start from the event.
CREATE INDEX events_conversation ON events (conversation_id);
CREATE INDEX events_type ON events (type);
-- Subscription health reads one subscription's attempts newest first; carrying the name
-- on the attempt (it never changes) saves a join per attempt.
ALTER TABLE attempts ADD COLUMN subscription TEXT;
UPDATE attempts SET subscription = (SELECT subscription FROM deliveries WHERE id = delivery_id);
CREATE INDEX attempts_subscription ON attempts (subscription, started_at);
-- The overview's recent failures: only failed attempts are in it.
CREATE INDEX attempts_failed ON attempts (started_at)
    WHERE status IS NULL OR status < 200 OR status > 299;
-- Pause and resume from the admin page, kept across restarts. A subscription without a
-- row is not paused.
CREATE TABLE subscription_state (
    subscription TEXT PRIMARY KEY,
    paused       INTEGER NOT NULL CHECK (paused IN (0, 1)),
    updated_at   INTEGER NOT NULL  -- unix milliseconds
);
"#,
    // 5: login and the audit of admin actions. The audit names where an action came from
    // (the client address; NULL for reloads, which come from the machine itself). Settings
    // posthorn makes for itself live here, e.g. the hash of the admin password generated
    // at first start when the config names none.
    r#"
ALTER TABLE audit_log ADD COLUMN origin TEXT;
CREATE TABLE settings (
    key        TEXT PRIMARY KEY,
    value      TEXT NOT NULL,
    updated_at INTEGER NOT NULL  -- unix milliseconds
);
"#,
    // 6: the delivery log filtered by event type. From the events' type index every
    // matching delivery had to be sorted by time (116 ms for `conversation.*` over 100,000
    // deliveries in examples/bench_admin.rs). The type on the delivery itself (it never
    // changes) gives an exact type an index in time order, and lets a glob be checked on
    // the delivery row while walking the log newest first, without a join per row.
    r#"
ALTER TABLE deliveries ADD COLUMN event_type TEXT;
UPDATE deliveries SET event_type = (SELECT type FROM events WHERE seq = event_seq);
CREATE INDEX deliveries_type ON deliveries (event_type, created_at);
-- Nothing reads events by type any more; each ingest paid for keeping it.
DROP INDEX events_type;
"#,
    // 7: receiver health (store/health.rs): why a subscription was paused (410 Gone,
    // failing too long; NULL when an operator paused it) and since when it has been
    // failing without a success, so auto-pause keeps counting across restarts.
    r#"
ALTER TABLE subscription_state ADD COLUMN pause_reason TEXT;
ALTER TABLE subscription_state ADD COLUMN failing_since INTEGER;
"#,
    // 8: ordered delivery (`ordering = "conversation"`, store/claim.rs). A delivery may go
    // only when no earlier delivery of its (subscription, conversation) is still pending
    // (or dead, with on_dead = "hold"); the conversation on the delivery and this index
    // answer that with one probe. Only deliveries of ordered subscriptions carry the
    // conversation, and final rows leave the index, so it holds just the ordered queue
    // and other deliveries pay nothing for it. Deliveries made before ordering was on
    // are not lined up.
    r#"
ALTER TABLE deliveries ADD COLUMN conversation_id TEXT;
CREATE INDEX deliveries_line ON deliveries (subscription, conversation_id, event_seq)
    WHERE state IN ('pending', 'dead') AND conversation_id IS NOT NULL;
"#,
    // Forgotten conversations (store/forget.rs): one row per conversation an operator had
    // erased. `done_at` stays NULL while some of its deliveries are pending (let finish,
    // or in flight when it was asked): the writer erases their events once they are final,
    // from this row, so a restart does not lose the request.
    r#"
CREATE TABLE forgotten_conversations (
    conversation_id    TEXT PRIMARY KEY,
    requested_at       INTEGER NOT NULL,  -- unix milliseconds
    let_pending_finish INTEGER NOT NULL CHECK (let_pending_finish IN (0, 1)),
    done_at            INTEGER            -- unix milliseconds; NULL while waiting
);
"#,
    // Which include/exclude shaped the body an attempt sent (a fingerprint; NULL: the
    // whole body), so the delivery page can tell attempts sent before a config change.
    r#"
ALTER TABLE attempts ADD COLUMN shaping TEXT;
"#,
    // Charts (store/rollup.rs writes, store/charts.rs reads): attempt outcomes and a
    // latency histogram per subscription and per minute and hour (subscription '' is the
    // sum), and the queue sampled each minute, so no chart scans the attempts. A store
    // from before this starts with an empty history: the attempts it holds are not
    // backfilled (a histogram cannot be built in SQL, and a one-off scan of a year of
    // attempts would hold the writer at start).
    r#"
CREATE TABLE delivery_rollups (
    span            INTEGER NOT NULL,  -- bucket width in ms: 60000 or 3600000
    subscription    TEXT NOT NULL,     -- '' for every subscription together
    start           INTEGER NOT NULL,  -- unix ms, a multiple of span
    attempts_ok     INTEGER NOT NULL,  -- 2xx answers
    attempts_failed INTEGER NOT NULL,
    delivered       INTEGER NOT NULL,  -- deliveries that ended delivered
    dead            INTEGER NOT NULL,  -- deliveries that ended dead
    latency_max_ms  INTEGER NOT NULL,
    latency         BLOB NOT NULL,     -- u32 LE count per bucket of rollup::LATENCY_BOUNDS
    PRIMARY KEY (span, subscription, start)
) WITHOUT ROWID;
-- Retention deletes the oldest rows of a span.
CREATE INDEX delivery_rollups_age ON delivery_rollups (span, start);
CREATE TABLE queue_samples (
    span                  INTEGER NOT NULL,
    start                 INTEGER NOT NULL,
    depth                 INTEGER NOT NULL,  -- the most pending deliveries sampled
    oldest_pending_age_ms INTEGER,           -- the longest wait sampled
    PRIMARY KEY (span, start)
) WITHOUT ROWID;
"#,
    r#"
-- Several nodes (issue 13): each one's heartbeat, admin sessions and the login throttle
-- live in the store, so whichever node a load balancer picks knows them.
CREATE TABLE nodes (
    id                 TEXT PRIMARY KEY,  -- hostname@listen (see src/nodes.rs)
    hostname           TEXT NOT NULL,
    listen             TEXT NOT NULL,
    version            TEXT NOT NULL,
    config_fingerprint TEXT NOT NULL,
    in_flight          INTEGER NOT NULL,
    workers            INTEGER NOT NULL,
    started_at         INTEGER NOT NULL,  -- unix milliseconds
    heartbeat_at       INTEGER NOT NULL,  -- unix milliseconds
    stopped_at         INTEGER            -- set by a clean stop; NULL while running
);
CREATE TABLE admin_sessions (
    key           BLOB PRIMARY KEY,  -- SHA-256 of the session id; the id itself is never kept
    csrf_token    TEXT NOT NULL,
    password      BLOB NOT NULL,     -- SHA-256 of the password hash it logged in with
    created_at    INTEGER NOT NULL,
    expires_at    INTEGER NOT NULL
);
CREATE TABLE login_throttle (
    address       TEXT PRIMARY KEY,  -- client address (an IPv6 client by its /64)
    window_start  INTEGER NOT NULL,  -- unix milliseconds
    failures      INTEGER NOT NULL
);
"#,
    // Several nodes, faster (issue 13): the live leases of an endpoint's subscriptions
    // are counted at every claim on PostgreSQL, so their index leads with the
    // subscription; and each node adds attempt outcomes to chart rows of its own
    // (`node`, '' on SQLite), so no two nodes' writers wait on one row.
    r#"
DROP INDEX deliveries_leased;
CREATE INDEX deliveries_leased ON deliveries (subscription, next_attempt_at)
    WHERE leased_at IS NOT NULL;
CREATE TABLE delivery_rollups_by_node (
    span            INTEGER NOT NULL,
    subscription    TEXT NOT NULL,
    start           INTEGER NOT NULL,
    attempts_ok     INTEGER NOT NULL,
    attempts_failed INTEGER NOT NULL,
    delivered       INTEGER NOT NULL,
    dead            INTEGER NOT NULL,
    latency_max_ms  INTEGER NOT NULL,
    latency         BLOB NOT NULL,
    node            TEXT NOT NULL DEFAULT '',  -- the writer that keeps the row (rollup.rs)
    PRIMARY KEY (span, subscription, start, node)
) WITHOUT ROWID;
INSERT INTO delivery_rollups_by_node
    SELECT span, subscription, start, attempts_ok, attempts_failed, delivered, dead,
           latency_max_ms, latency, ''
    FROM delivery_rollups;
DROP TABLE delivery_rollups;
ALTER TABLE delivery_rollups_by_node RENAME TO delivery_rollups;
CREATE INDEX delivery_rollups_age ON delivery_rollups (span, start);
"#,
];

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

#[cfg(test)]
mod tests {
    use super::*;

    fn names(conn: &Connection, kind: &str) -> Vec<String> {
        let mut stmt = conn
            .prepare("SELECT name FROM sqlite_master WHERE type = ?1 ORDER BY name")
            .unwrap();
        stmt.query_map([kind], |row| row.get(0))
            .unwrap()
            .collect::<Result<_, _>>()
            .unwrap()
    }

    #[test]
    fn the_first_migration_is_still_the_one_that_shipped() {
        // Editing a shipped migration would leave existing databases behind; append one.
        let shipped = include_str!("../../tests/fixtures/schema-v1.sql");
        let shipped = shipped
            .split_once("\nCREATE")
            .map(|(_, rest)| format!("CREATE{rest}"))
            .unwrap();
        assert_eq!(MIGRATIONS[0].trim(), shipped.trim());
    }

    #[test]
    fn a_database_of_schema_1_is_brought_up_to_date_with_its_rows() {
        let mut conn = Connection::open_in_memory().unwrap();
        conn.execute_batch(MIGRATIONS[0]).unwrap();
        conn.pragma_update(None, "user_version", 1).unwrap();
        conn.execute_batch(
            "INSERT INTO events (id, type, received_at, source, body)
                 VALUES ('evt_old', 'conversation.started', 1, 'spool:x', '{\"id\":\"evt_old\"}');
             INSERT INTO deliveries (event_seq, event_id, subscription, state, next_attempt_at,
                                     created_at, updated_at)
                 VALUES (1, 'evt_old', 'crm', 'pending', 5, 1, 1);
             INSERT INTO rejections (at, source, reason) VALUES (2, 'spool:x', 'bad');",
        )
        .unwrap();

        migrate(&mut conn).unwrap();

        let version: usize = conn
            .query_row("PRAGMA user_version", [], |row| row.get(0))
            .unwrap();
        assert_eq!(version, MIGRATIONS.len());
        let (body, dropped): (String, Option<i64>) = conn
            .query_row(
                "SELECT body, payload_dropped_at FROM events WHERE id = 'evt_old'",
                [],
                |row| Ok((row.get(0)?, row.get(1)?)),
            )
            .unwrap();
        assert_eq!((body.as_str(), dropped), ("{\"id\":\"evt_old\"}", None));
        let state: String = conn
            .query_row("SELECT state FROM deliveries", [], |row| row.get(0))
            .unwrap();
        assert_eq!(state, "pending");
        let indexes = names(&conn, "index");
        for index in [
            "events_received",
            "events_with_payload",
            "deliveries_final",
            "rejections_at",
        ] {
            assert!(indexes.iter().any(|i| i == index), "{index} in {indexes:?}");
        }
        // Migrating again is a no-op.
        migrate(&mut conn).unwrap();
    }

    #[test]
    fn migration_4_names_the_subscription_on_attempts_recorded_before_it() {
        let mut conn = Connection::open_in_memory().unwrap();
        for sql in &MIGRATIONS[..3] {
            conn.execute_batch(sql).unwrap();
        }
        conn.pragma_update(None, "user_version", 3).unwrap();
        conn.execute_batch(
            "INSERT INTO events (id, type, received_at, source, body)
                 VALUES ('evt_old', 'conversation.started', 1, 'spool:x', '{}');
             INSERT INTO deliveries (event_seq, event_id, subscription, state, created_at,
                                     updated_at)
                 VALUES (1, 'evt_old', 'crm', 'dead', 1, 1);
             INSERT INTO attempts (delivery_id, attempt, started_at, duration_ms, status)
                 VALUES (1, 1, 2, 3, 500);",
        )
        .unwrap();

        migrate(&mut conn).unwrap();

        let subscription: String = conn
            .query_row("SELECT subscription FROM attempts", [], |row| row.get(0))
            .unwrap();
        assert_eq!(subscription, "crm");
        assert!(names(&conn, "table")
            .iter()
            .any(|t| t == "subscription_state"));
    }

    #[test]
    fn migration_6_puts_the_event_type_on_deliveries_made_before_it() {
        let mut conn = Connection::open_in_memory().unwrap();
        for sql in &MIGRATIONS[..5] {
            conn.execute_batch(sql).unwrap();
        }
        conn.pragma_update(None, "user_version", 5).unwrap();
        conn.execute_batch(
            "INSERT INTO events (id, type, received_at, source, body)
                 VALUES ('evt_old', 'report.generated', 1, 'spool:x', '{}');
             INSERT INTO deliveries (event_seq, event_id, subscription, state, created_at,
                                     updated_at)
                 VALUES (1, 'evt_old', 'crm', 'delivered', 1, 1);",
        )
        .unwrap();

        migrate(&mut conn).unwrap();

        let kind: String = conn
            .query_row("SELECT event_type FROM deliveries", [], |row| row.get(0))
            .unwrap();
        assert_eq!(kind, "report.generated");
        let indexes = names(&conn, "index");
        assert!(
            indexes.iter().any(|i| i == "deliveries_type"),
            "{indexes:?}"
        );
        assert!(!indexes.iter().any(|i| i == "events_type"), "{indexes:?}");
    }

    #[test]
    fn a_store_from_before_the_charts_gets_an_empty_history_and_keeps_its_attempts() {
        let charts = MIGRATIONS
            .iter()
            .position(|sql| sql.contains("CREATE TABLE delivery_rollups"))
            .unwrap();
        let mut conn = Connection::open_in_memory().unwrap();
        for sql in &MIGRATIONS[..charts] {
            conn.execute_batch(sql).unwrap();
        }
        conn.pragma_update(None, "user_version", charts).unwrap();
        conn.execute_batch(
            "INSERT INTO events (id, type, received_at, source, body)
                 VALUES ('evt_old', 'report.generated', 1, 'spool:x', '{}');
             INSERT INTO deliveries (event_seq, event_id, subscription, state, created_at,
                                     updated_at)
                 VALUES (1, 'evt_old', 'crm', 'delivered', 1, 1);
             INSERT INTO attempts (delivery_id, attempt, started_at, duration_ms, status,
                                   subscription)
                 VALUES (1, 1, 2, 3, 200, 'crm');",
        )
        .unwrap();

        migrate(&mut conn).unwrap();

        let count = |sql: &str| -> i64 { conn.query_row(sql, [], |row| row.get(0)).unwrap() };
        assert_eq!(count("SELECT count(*) FROM delivery_rollups"), 0);
        assert_eq!(count("SELECT count(*) FROM queue_samples"), 0);
        assert_eq!(count("SELECT count(*) FROM attempts"), 1);
    }

    #[test]
    fn a_database_from_a_newer_posthorn_is_refused_and_left_alone() {
        let mut conn = Connection::open_in_memory().unwrap();
        let newer = MIGRATIONS.len() + 1;
        conn.pragma_update(None, "user_version", newer).unwrap();
        let err = migrate(&mut conn).unwrap_err().to_string();
        assert!(
            err.contains(&format!(
                "schema version {newer}, newer than this posthorn knows"
            )),
            "{err}"
        );
        assert!(names(&conn, "table").is_empty(), "nothing was created");
    }
}
