use std::collections::BTreeMap;

use rusqlite::Connection;

use super::*;
use crate::store::test_pg::fresh_database;
use crate::store::test_support::TempStore;

/// Rows in every table, with the values a copy could get wrong: NULLs, blobs with every
/// kind of byte, text beyond ASCII, a NUL in a snippet, a delivery leased when its
/// posthorn stopped.
const FIXTURE: &str = r#"
INSERT INTO events (seq, id, type, conversation_id, project_id, received_at, source, body)
    VALUES (3, 'evt_a', 'conversation.started', 'c-1', 'p-1', 1000, 'spool:a.ndjson',
            '{"id":"evt_a","data":{"n":1.50,"big":12345678901234567890,"s":"é\u0000\\"x"}}'),
           (7, 'evt_b', 'report.generated', NULL, NULL, 2000, 'inlet', '{"id":"evt_b"}');
INSERT INTO events (seq, id, type, received_at, source, body, payload_dropped_at)
    VALUES (9, 'evt_c', 'conversation.ended', 3000, 'inlet', '', 4000);
INSERT INTO deliveries (id, event_seq, event_id, subscription, state, attempts,
                        next_attempt_at, leased_at, created_at, updated_at, last_status,
                        last_error, event_type, conversation_id)
    VALUES (11, 3, 'evt_a', 'crm', 'pending', 0, 1000, NULL, 1000, 1000, NULL, NULL,
            'conversation.started', 'c-1'),
           (12, 3, 'evt_a', 'slow', 'pending', 1, 999999, 5000, 1000, 5000, NULL, NULL,
            'conversation.started', NULL),
           (13, 7, 'evt_b', 'crm', 'delivered', 1, NULL, NULL, 2000, 2100, 200, NULL,
            'report.generated', NULL),
           (14, 7, 'evt_b', 'slow', 'dead', 3, NULL, NULL, 2000, 2900, 500, 'HTTP 500',
            'report.generated', NULL),
           (15, 9, 'evt_c', 'crm', 'cancelled', 0, NULL, NULL, 3000, 3000, NULL, NULL,
            'conversation.ended', NULL);
INSERT INTO attempts (id, delivery_id, attempt, started_at, duration_ms, status, error,
                      response_snippet, subscription, shaping)
    VALUES (21, 13, 1, 2050, 12, 200, NULL, 'ok', 'crm', NULL),
           (22, 14, 1, 2100, 30, 500, 'HTTP 500', 'bad' || char(0) || 'answer', 'slow',
            'sha256:ab'),
           (23, 14, 2, 2500, 10000, NULL, 'timed out', NULL, 'slow', NULL);
INSERT INTO rejections (id, at, source, line, reason, snippet)
    VALUES (31, 100, 'spool:a.ndjson', 4, 'not JSON', '{' || char(0) || '}'),
           (32, 200, 'inlet', NULL, 'no id', NULL);
INSERT INTO audit_log (id, at, actor, action, detail, result, origin)
    VALUES (41, 1200, 'session', 'delivery.retry', 'delivery 14', 'applied', '127.0.0.1'),
           (42, 1300, 'SIGHUP', 'config.reload', 'nothing changed', 'applied', NULL);
INSERT INTO subscription_state (subscription, paused, updated_at, pause_reason, failing_since)
    VALUES ('slow', 1, 2900, '410 Gone', 2100), ('crm', 0, 100, NULL, NULL);
INSERT INTO settings (key, value, updated_at) VALUES ('admin_password_hash', '$argon2id$x', 10);
INSERT INTO forgotten_conversations (conversation_id, requested_at, let_pending_finish, done_at)
    VALUES ('c-gone', 50, 1, NULL);
INSERT INTO delivery_rollups (span, subscription, start, attempts_ok, attempts_failed,
                              delivered, dead, latency_max_ms, latency)
    VALUES (60000, '', 0, 1, 2, 1, 1, 10000, x'0100000002000000');
INSERT INTO queue_samples (span, start, depth, oldest_pending_age_ms)
    VALUES (60000, 0, 2, NULL), (60000, 60000, 0, 12);
"#;

fn sqlite(store: &TempStore) -> Connection {
    Connection::open(&store.path).unwrap()
}

fn filled() -> TempStore {
    let store = TempStore::new();
    let conn = sqlite(&store);
    conn.execute_batch(FIXTURE).unwrap();
    // A fingerprint as the store keeps it (a raw head would be converted at open): bytes
    // of every kind, NUL and high ones too.
    let head = crate::store::spool_head::print(b"{\"id\":\"evt_a\"}\n");
    conn.execute(
        r#"INSERT INTO spool_positions (file_key, path, "offset", line, head, updated_at)
           VALUES ('2049:77', '/spool/a.ndjson', 4096, 12, ?1, 1500)"#,
        [head],
    )
    .unwrap();
    store
}

/// One value as text that tells kinds apart.
fn sqlite_cell(value: ValueRef<'_>) -> String {
    match value {
        ValueRef::Null => "NULL".into(),
        ValueRef::Integer(n) => format!("i{n}"),
        ValueRef::Real(x) => format!("r{x}"),
        ValueRef::Text(t) => format!("t{}", String::from_utf8(t.to_vec()).unwrap()),
        ValueRef::Blob(b) => format!("b{b:?}"),
    }
}

fn pg_cell(row: &postgres::Row, index: usize) -> String {
    let ty = row.columns()[index].type_().clone();
    let shown = match ty {
        Type::INT8 => row.get::<_, Option<i64>>(index).map(|n| format!("i{n}")),
        Type::FLOAT8 => row.get::<_, Option<f64>>(index).map(|x| format!("r{x}")),
        Type::TEXT => row.get::<_, Option<String>>(index).map(|t| format!("t{t}")),
        Type::BYTEA => row
            .get::<_, Option<Vec<u8>>>(index)
            .map(|b| format!("b{b:?}")),
        other => panic!("a column of type {other}"),
    };
    shown.unwrap_or_else(|| "NULL".into())
}

/// Every row of every copied table, by column name, sorted.
type Rows = BTreeMap<String, Vec<BTreeMap<String, String>>>;

fn sqlite_rows(conn: &Connection) -> Rows {
    let mut out = Rows::new();
    for table in COPIED {
        let mut stmt = conn
            .prepare(&format!("SELECT * FROM {}", quoted(table)))
            .unwrap();
        let names: Vec<String> = stmt.column_names().iter().map(|s| s.to_string()).collect();
        let mut rows = stmt.query([]).unwrap();
        let mut all = Vec::new();
        while let Some(row) = rows.next().unwrap() {
            let cells = (0..names.len()).map(|i| sqlite_cell(row.get_ref(i).unwrap()));
            all.push(names.iter().cloned().zip(cells).collect());
        }
        all.sort();
        out.insert(table.to_string(), all);
    }
    out
}

fn pg_rows(client: &mut postgres::Client) -> Rows {
    let mut out = Rows::new();
    for table in COPIED {
        let rows = client
            .query(&format!("SELECT * FROM {}", quoted(table)), &[])
            .unwrap();
        let mut all: Vec<BTreeMap<String, String>> = rows
            .iter()
            .map(|row| {
                (0..row.len())
                    .map(|i| (row.columns()[i].name().to_string(), pg_cell(row, i)))
                    .collect()
            })
            .collect();
        all.sort();
        out.insert(table.to_string(), all);
    }
    out
}

fn pg_total(client: &mut postgres::Client) -> i64 {
    COPIED
        .iter()
        .map(|t| -> i64 {
            client
                .query_one(&format!("SELECT count(*) FROM {}", quoted(t)), &[])
                .unwrap()
                .get(0)
        })
        .sum()
}

#[test]
fn every_row_of_every_table_arrives_with_its_values_and_leases_come_out_due() {
    let store = filled();
    let before = sqlite_rows(&sqlite(&store));
    let db = fresh_database();

    let migrated = migrate_store(&store.path, db.url()).unwrap();

    let mut client = db.connect();
    let mut after = pg_rows(&mut client);
    // What the copy changes on purpose: the lease, and NUL in snippets.
    let mut expected = before.clone();
    for row in expected.get_mut("deliveries").unwrap() {
        if row["state"] == "tpending" && row["leased_at"] != "NULL" {
            let leased = row["leased_at"].clone();
            row.insert("next_attempt_at".into(), leased);
            row.insert("leased_at".into(), "NULL".into());
        }
    }
    for (table, column) in LOSSY_TEXT {
        for row in expected.get_mut(*table).unwrap() {
            let cell = row.get_mut(*column).unwrap();
            *cell = cell.replace('\0', "\u{fffd}");
        }
    }
    for rows in expected.values_mut() {
        rows.sort();
    }
    // The migration's own audit row comes on top of the copied ones.
    let audit = after.get_mut("audit_log").unwrap();
    let own = audit
        .iter()
        .position(|row| row["action"] == "tstore.migrate")
        .expect("the migration is audited");
    let own = audit.remove(own);
    assert_eq!(own["actor"], "tmigrate-store");
    assert!(own["detail"].contains("deliveries 5"), "{own:?}");
    assert!(own["detail"].contains(&store.path.display().to_string()));
    assert_eq!(after, expected);

    let counts: Vec<(String, u64)> = migrated
        .tables
        .iter()
        .map(|t| (t.table.clone(), t.rows))
        .collect();
    let want: Vec<(String, u64)> = COPIED
        .iter()
        .map(|t| (t.to_string(), before[*t].len() as u64))
        .collect();
    assert_eq!(counts, want);
    assert_eq!(migrated.leases_returned, 1);
    assert_eq!(migrated.nul_replaced, 2);
    assert_eq!(migrated.source_schema.before, migrated.source_schema.after);
    // The source is read, not changed: its lease is still there.
    assert_eq!(sqlite_rows(&sqlite(&store)), before);

    // New rows take ids past the copied ones.
    let seq: i64 = client
        .query_one(
            "INSERT INTO events (id, type, received_at, source, body)
             VALUES ('evt_new', 'x', 1, 'inlet', '{}') RETURNING seq",
            &[],
        )
        .unwrap()
        .get(0);
    assert_eq!(seq, 10);
    let attempt: i64 = client
        .query_one(
            "INSERT INTO attempts (delivery_id, attempt, started_at, duration_ms)
             VALUES (11, 1, 1, 1) RETURNING id",
            &[],
        )
        .unwrap()
        .get(0);
    assert_eq!(attempt, 24);
}

#[test]
fn a_target_holding_rows_is_refused_and_left_as_it_was() {
    let store = filled();
    let db = fresh_database();
    let mut client = db.connect();
    crate::store::schema_pg::migrate(&mut client).unwrap();
    client
        .batch_execute("INSERT INTO settings (key, value, updated_at) VALUES ('mine', 'v', 1)")
        .unwrap();

    let err = format!("{:#}", migrate_store(&store.path, db.url()).unwrap_err());

    assert!(
        err.contains("is not empty: its table settings holds rows"),
        "{err}"
    );
    assert_eq!(pg_total(&mut client), 1);
}

#[test]
fn a_table_the_copy_does_not_know_is_an_error_naming_it_and_nothing_is_copied() {
    let store = filled();
    sqlite(&store)
        .execute_batch("CREATE TABLE node_notes (id INTEGER PRIMARY KEY, note TEXT)")
        .unwrap();
    let db = fresh_database();

    let err = format!("{:#}", migrate_store(&store.path, db.url()).unwrap_err());

    assert!(err.contains("table \"node_notes\""), "{err}");
    assert_eq!(pg_total(&mut db.connect()), 0);
}

#[test]
fn a_value_that_fails_midway_leaves_the_target_empty() {
    let store = filled();
    // SQLite keeps text in an INTEGER column; PostgreSQL's BIGINT cannot take it.
    sqlite(&store)
        .execute_batch("UPDATE attempts SET attempt = 'two' WHERE id = 23")
        .unwrap();
    let db = fresh_database();

    let err = format!("{:#}", migrate_store(&store.path, db.url()).unwrap_err());

    assert!(
        err.contains(
            "attempts row id = 23: column attempt: holds text, but the PostgreSQL column is int8"
        ),
        "{err}"
    );
    // events and deliveries went first; the one transaction takes them back.
    assert_eq!(pg_total(&mut db.connect()), 0);
}

#[test]
fn a_nul_outside_the_snippets_is_an_error() {
    let store = filled();
    sqlite(&store)
        .execute_batch("UPDATE settings SET value = 'a' || char(0)")
        .unwrap();
    let db = fresh_database();

    let err = format!("{:#}", migrate_store(&store.path, db.url()).unwrap_err());

    assert!(
        err.contains("settings row key = \"admin_password_hash\": column value holds a NUL"),
        "{err}"
    );
    assert_eq!(pg_total(&mut db.connect()), 0);
}

#[test]
fn a_store_in_use_is_refused_before_the_target_is_touched() {
    let store = filled();
    let _serving = crate::store::try_lock_store(&store.path).unwrap().unwrap();
    let db = fresh_database();

    let err = format!("{:#}", migrate_store(&store.path, db.url()).unwrap_err());

    assert!(err.contains("posthorn is running on the store"), "{err}");
    let tables: i64 = db
        .connect()
        .query_one(
            "SELECT count(*) FROM information_schema.tables WHERE table_schema = current_schema()",
            &[],
        )
        .unwrap()
        .get(0);
    assert_eq!(tables, 0, "the target was not even migrated");
}

#[test]
fn a_store_of_an_older_schema_is_brought_up_to_date_and_copied_unless_the_target_is_refused() {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("old.db");
    {
        let conn = Connection::open(&path).unwrap();
        conn.execute_batch(include_str!("../../../tests/fixtures/schema-v1.sql"))
            .unwrap();
        conn.pragma_update(None, "user_version", 1).unwrap();
        conn.execute_batch(
            "INSERT INTO events (id, type, received_at, source, body)
                 VALUES ('evt_old', 'conversation.started', 1, 'spool:x', '{\"id\":\"evt_old\"}');
             INSERT INTO deliveries (event_seq, event_id, subscription, state, next_attempt_at,
                                     created_at, updated_at)
                 VALUES (1, 'evt_old', 'crm', 'pending', 5, 1, 1);",
        )
        .unwrap();
    }
    // A refused target leaves the source as it was, schema and all.
    let full = fresh_database();
    let mut client = full.connect();
    crate::store::schema_pg::migrate(&mut client).unwrap();
    client
        .batch_execute("INSERT INTO settings (key, value, updated_at) VALUES ('k', 'v', 1)")
        .unwrap();
    assert!(migrate_store(&path, full.url()).is_err());
    assert_eq!(user_version(&path).unwrap(), 1);
    let db = fresh_database();

    let migrated = migrate_store(&path, db.url()).unwrap();

    assert_eq!(migrated.source_schema.before, 1);
    assert!(migrated.source_schema.after > 1);
    let (body, kind): (String, Option<String>) = {
        let row = db
            .connect()
            .query_one(
                "SELECT e.body, d.event_type FROM events e JOIN deliveries d ON d.event_seq = e.seq",
                &[],
            )
            .unwrap();
        (row.get(0), row.get(1))
    };
    assert_eq!(body, "{\"id\":\"evt_old\"}");
    // Filled in by the SQLite migration that added the column, before the copy.
    assert_eq!(kind.as_deref(), Some("conversation.started"));
}

#[test]
fn a_missing_source_is_named_and_not_created() {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("nothing.db");
    let err = format!(
        "{:#}",
        migrate_store(&path, "postgres://u:pw@127.0.0.1:1/x").unwrap_err()
    );
    assert!(err.contains("there is no SQLite store to copy at"), "{err}");
    assert!(!path.exists());
}
