//! Fixtures for the store's tests: a real SQLite file in a temporary directory, and rows
//! written straight into it with known timestamps.

use crate::store::db::{params, Db};

use super::{open_writer_connection, Reader};

pub struct TempStore {
    /// Held so the directory outlives the test.
    _dir: tempfile::TempDir,
    pub path: std::path::PathBuf,
}

impl TempStore {
    /// A fresh store file, migrated to the newest schema.
    pub fn new() -> TempStore {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("posthorn.db");
        drop(open_writer_connection(&path).unwrap());
        TempStore { _dir: dir, path }
    }

    /// A second writing connection, for fixtures.
    pub fn conn(&self) -> Db {
        open_writer_connection(&self.path).unwrap()
    }

    pub fn reader(&self) -> Reader {
        Reader::open(&self.path).unwrap()
    }
}

/// An event received at `at`; returns its seq.
pub fn event(conn: &Db, id: &str, kind: &str, conversation: Option<&str>, at: i64) -> i64 {
    conn.execute(
        "INSERT INTO events (id, type, conversation_id, project_id, received_at, source, body)
         VALUES (?1, ?2, ?3, 'p-1', ?4, 'test', ?5)",
        params![id, kind, conversation, at, format!(r#"{{"id":"{id}"}}"#)],
    )
    .unwrap();
    conn.last_insert_rowid()
}

/// A delivery of event `seq` created at `created_at`; returns its id.
pub fn delivery(conn: &Db, seq: i64, subscription: &str, state: &str, created_at: i64) -> i64 {
    let next = (state == "pending").then_some(created_at);
    conn.execute(
        "INSERT INTO deliveries (event_seq, event_id, subscription, state, next_attempt_at,
                                 created_at, updated_at, event_type)
         SELECT seq, id, ?2, ?3, ?4, ?5, ?5, type FROM events WHERE seq = ?1",
        params![seq, subscription, state, next, created_at],
    )
    .unwrap();
    conn.last_insert_rowid()
}

/// An attempt of `delivery` (numbered after its others, which it also counts).
pub fn attempt(conn: &Db, delivery: i64, started_at: i64, duration_ms: i64, status: Option<u16>) {
    conn.execute(
        "INSERT INTO attempts (delivery_id, attempt, started_at, duration_ms, status, error,
                               subscription)
         SELECT id, attempts + 1, ?2, ?3, ?4, CASE WHEN ?4 IS NULL THEN 'connection refused' END,
                subscription
         FROM deliveries WHERE id = ?1",
        params![delivery, started_at, duration_ms, status],
    )
    .unwrap();
    conn.execute(
        "UPDATE deliveries SET attempts = attempts + 1, last_status = ?2 WHERE id = ?1",
        params![delivery, status],
    )
    .unwrap();
}

/// The query plan of `sql` with `values` bound, one line per step.
pub fn plan(conn: &Db, sql: &str, values: Vec<crate::store::db::OwnedValue>) -> String {
    let mut stmt = conn.prepare(&format!("EXPLAIN QUERY PLAN {sql}")).unwrap();
    let lines: Vec<String> = stmt
        .query_map(values, |row| row.get(3))
        .unwrap()
        .collect::<Result<_, _>>()
        .unwrap();
    lines.join("; ")
}

/// A claim of up to 5 due deliveries of subscription `s`, alone on its endpoint (cap 10,
/// no rate limit), in any order: what the PostgreSQL claim tests start from.
pub fn claim_request() -> super::ClaimRequest {
    super::ClaimRequest {
        subscription: "s".into(),
        limit: 5,
        line: super::Line::Any,
        group: 0,
        cluster: super::ClusterLimits {
            endpoint: "http://127.0.0.1:9/hook".into(),
            endpoint_subscriptions: vec!["s".into()],
            endpoint_cap: 10,
            rate: None,
        },
    }
}
