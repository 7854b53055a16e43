use std::collections::BTreeMap;

use rusqlite::Connection;

use super::*;
use crate::store::test_pg::{admin_url, fresh_database};

/// The recorded version, and the tables of the current schema.
fn state(client: &mut postgres::Client) -> (Option<i64>, Vec<String>) {
    let tables: Vec<String> = client
        .query(
            "SELECT table_name::text FROM information_schema.tables
              WHERE table_schema = current_schema() ORDER BY 1",
            &[],
        )
        .unwrap()
        .iter()
        .map(|row| row.get(0))
        .collect();
    let version = tables.iter().any(|t| t == "posthorn_schema").then(|| {
        client
            .query_one("SELECT version FROM posthorn_schema", &[])
            .unwrap()
            .get(0)
    });
    (version, tables)
}

fn known() -> i64 {
    MIGRATIONS.len() as i64
}

#[test]
fn a_fresh_database_gets_the_whole_schema() {
    let db = fresh_database();
    let mut client = connect(db.url()).unwrap();
    migrate(&mut client).unwrap();
    let (version, tables) = state(&mut client);
    assert_eq!(version, Some(known()));
    for table in ["events", "deliveries", "attempts", "queue_samples"] {
        assert!(tables.iter().any(|t| t == table), "{table} in {tables:?}");
    }
    // The rowid's stand-in numbers rows itself and hands the number back.
    let seq: i64 = client
        .query_one(
            "INSERT INTO events (id, type, received_at, source, body)
             VALUES ('evt_1', 'conversation.started', 1, 'spool:x', '{}') RETURNING seq",
            &[],
        )
        .unwrap()
        .get(0);
    assert_eq!(seq, 1);
    // The queue is vacuumed far more often than the server's default.
    let options: Vec<String> = client
        .query_one(
            "SELECT reloptions FROM pg_class WHERE relname = 'deliveries'",
            &[],
        )
        .unwrap()
        .get(0);
    assert!(
        options.contains(&"autovacuum_vacuum_scale_factor=0.01".to_string()),
        "{options:?}"
    );
}

#[test]
fn migrating_again_is_a_no_op_that_keeps_the_rows() {
    let db = fresh_database();
    let mut client = connect(db.url()).unwrap();
    migrate(&mut client).unwrap();
    client
        .batch_execute(
            "INSERT INTO settings (key, value, updated_at) VALUES ('k', 'v', 1);
             INSERT INTO spool_positions (file_key, path, \"offset\", line, head, updated_at)
                 VALUES ('1:2', 'a.ndjson', 10, 2, '\\x7b', 3);",
        )
        .unwrap();
    migrate(&mut client).unwrap();
    migrate(&mut connect(db.url()).unwrap()).unwrap();
    assert_eq!(state(&mut client).0, Some(known()));
    let value: String = client
        .query_one("SELECT value FROM settings WHERE key = 'k'", &[])
        .unwrap()
        .get(0);
    assert_eq!(value, "v");
    let rows: i64 = client
        .query_one("SELECT count(*) FROM posthorn_schema", &[])
        .unwrap()
        .get(0);
    assert_eq!(rows, 1);
}

/// A database as an older posthorn left it, at `version`, with a pending delivery.
fn database_at(version: usize) -> crate::store::test_pg::FreshDatabase {
    let db = fresh_database();
    let mut client = connect(db.url()).unwrap();
    client
        .batch_execute("CREATE TABLE posthorn_schema (version BIGINT NOT NULL)")
        .unwrap();
    for migration in &MIGRATIONS[..version] {
        client.batch_execute(migration).unwrap();
    }
    client
        .execute(
            "INSERT INTO posthorn_schema (version) VALUES ($1)",
            &[&(version as i64)],
        )
        .unwrap();
    client
        .batch_execute(
            "INSERT INTO events (id, type, received_at, source, body)
                 VALUES ('evt_1', 'conversation.ended', 1, 'test', '{\"n\":1.10}');
             INSERT INTO deliveries (event_seq, event_id, subscription, state,
                                     next_attempt_at, created_at, updated_at)
                 SELECT seq, id, 's', 'pending', 1, 1, 1 FROM events;",
        )
        .unwrap();
    db
}

#[test]
fn a_database_of_every_older_version_is_migrated_and_its_queue_claimed() {
    for version in 1..MIGRATIONS.len() {
        let db = database_at(version);
        let (wake, _woken) = crossbeam_channel::bounded(1);
        let store = crate::store::Store::open_postgres(db.url(), wake).unwrap();
        assert_eq!(
            state(&mut connect(db.url()).unwrap()).0,
            Some(known()),
            "from version {version}"
        );
        let request = crate::store::test_support::claim_request();
        let claimed = store.handle().claim(vec![request], 1_000, 31_000).unwrap();
        let bodies: Vec<&str> = claimed.claimed.iter().map(|c| c.body.as_str()).collect();
        assert_eq!(bodies, [r#"{"n":1.10}"#], "from version {version}");
    }
}

#[test]
fn a_database_from_a_newer_posthorn_is_refused_and_left_alone() {
    let db = fresh_database();
    let mut client = connect(db.url()).unwrap();
    let newer = known() + 1;
    client
        .batch_execute(&format!(
            "CREATE TABLE posthorn_schema (version BIGINT NOT NULL);
             INSERT INTO posthorn_schema VALUES ({newer});"
        ))
        .unwrap();
    let err = migrate(&mut client).unwrap_err().to_string();
    assert!(
        err.contains(&format!(
            "schema version {newer}, newer than this posthorn knows ({})",
            known()
        )),
        "{err}"
    );
    assert_eq!(
        state(&mut client),
        (Some(newer), vec!["posthorn_schema".to_string()]),
        "nothing was created or changed"
    );
}

#[test]
fn a_database_holding_other_tables_is_refused_and_left_alone() {
    let db = fresh_database();
    let mut client = connect(db.url()).unwrap();
    client
        .batch_execute(
            "CREATE TABLE invoices (id BIGINT);
             CREATE SCHEMA billing; CREATE TABLE billing.customers (id BIGINT);",
        )
        .unwrap();
    let err = migrate(&mut client).unwrap_err().to_string();
    assert!(
        err.contains(&format!(
            "the database {:?} holds tables (billing.customers, public.invoices) but no \
             posthorn schema",
            db.name()
        )),
        "{err}"
    );
    assert_eq!(state(&mut client), (None, vec!["invoices".to_string()]));
}

#[test]
fn nodes_migrating_at_once_make_one_schema() {
    let db = fresh_database();
    let nodes = 4;
    let barrier = std::sync::Barrier::new(nodes);
    let results: Vec<anyhow::Result<()>> = std::thread::scope(|scope| {
        let handles: Vec<_> = (0..nodes)
            .map(|_| {
                scope.spawn(|| {
                    let mut client = connect(db.url())?;
                    barrier.wait();
                    migrate(&mut client)
                })
            })
            .collect();
        handles.into_iter().map(|h| h.join().unwrap()).collect()
    });
    for result in results {
        result.unwrap();
    }
    let mut client = connect(db.url()).unwrap();
    assert_eq!(state(&mut client).0, Some(known()));
    let rows: i64 = client
        .query_one("SELECT count(*) FROM posthorn_schema", &[])
        .unwrap()
        .get(0);
    assert_eq!(rows, 1);
}

#[test]
fn a_server_older_than_13_is_refused_by_its_version() {
    let err = check_server(120_017).unwrap_err().to_string();
    assert_eq!(
        err,
        "the database server runs PostgreSQL 12, older than posthorn supports; use \
         PostgreSQL 13 or newer"
    );
    check_server(130_000).unwrap();
    check_server(170_002).unwrap();
}

#[test]
fn sessions_are_named_posthorn_unless_the_url_names_them() {
    let db = fresh_database();
    let name = |url: &str| -> String {
        connect(url)
            .unwrap()
            .query_one("SELECT current_setting('application_name')", &[])
            .unwrap()
            .get(0)
    };
    assert_eq!(name(db.url()), "posthorn");
    assert_eq!(
        name(&format!("{}?application_name=node-b", db.url())),
        "node-b"
    );
}

#[test]
fn a_connection_error_names_the_url_and_cause_but_not_the_password() {
    let port = std::net::TcpListener::bind("127.0.0.1:0")
        .and_then(|l| l.local_addr())
        .unwrap()
        .port();
    let err = connect(&format!(
        "postgres://posthorn:hunter2-secret@127.0.0.1:{port}/posthorn"
    ))
    .err()
    .unwrap()
    .to_string();
    assert!(
        err.starts_with(&format!(
            "while connecting to PostgreSQL at postgres://posthorn:[redacted]@127.0.0.1:{port}/posthorn: "
        )) && err.contains("refused"),
        "{err}"
    );
    assert!(!err.contains("hunter2"), "{err}");

    // A wrong password is told as such, and not shown either.
    let admin = admin_url();
    let at = admin.rfind('@').unwrap();
    let wrong = format!("postgres://postgres:hunter2-wrong{}", &admin[at..]);
    let err = connect(&wrong).err().unwrap().to_string();
    assert!(err.contains("password authentication failed"), "{err}");
    assert!(!err.contains("hunter2"), "{err}");
}

// ---- parity with the SQLite schema ----

/// A column as both schemas can tell it: name, type (in PostgreSQL's words), NOT NULL,
/// default.
type Column = (String, String, bool, Option<String>);
/// An index: name, table, unique, partial, columns.
type Index = (String, String, bool, bool, Vec<String>);

/// What the parity test compares.
#[derive(Debug, Default)]
struct Schema {
    tables: BTreeMap<String, Vec<Column>>,
    /// Made by CREATE INDEX (not those behind a key), by name.
    indexes: Vec<Index>,
    /// Primary keys ("p") and UNIQUE constraints ("u"): table, kind, columns.
    keys: Vec<(String, String, Vec<String>)>,
    /// Table, columns, referenced table, referenced columns.
    foreign_keys: Vec<(String, Vec<String>, String, Vec<String>)>,
    /// CHECK constraints per table.
    checks: BTreeMap<String, usize>,
}

fn sqlite_schema() -> Schema {
    let mut conn = Connection::open_in_memory().unwrap();
    crate::store::schema::migrate(&mut conn).unwrap();
    let strings = |sql: &str, arg: &str| -> Vec<String> {
        let mut stmt = conn.prepare(sql).unwrap();
        stmt.query_map([arg], |row| row.get(0))
            .unwrap()
            .collect::<Result<_, _>>()
            .unwrap()
    };
    let mut schema = Schema::default();
    let names = strings(
        "SELECT name FROM sqlite_master WHERE type = 'table' AND name NOT LIKE ?1",
        "sqlite\\_%",
    );
    for table in &names {
        let mut stmt = conn
            .prepare(
                "SELECT name, type, \"notnull\", pk, dflt_value FROM pragma_table_info(?1)
                  ORDER BY cid",
            )
            .unwrap();
        let columns: Vec<(Column, i64)> = stmt
            .query_map([table], |row| {
                let kind: String = row.get(1)?;
                let kind = match kind.as_str() {
                    "INTEGER" => "bigint",
                    "TEXT" => "text",
                    "BLOB" => "bytea",
                    "REAL" => "double precision",
                    other => panic!("no PostgreSQL type for SQLite's {other}"),
                };
                let pk: i64 = row.get(3)?;
                // A primary key column is NOT NULL in PostgreSQL (and a rowid always is).
                let not_null = row.get::<_, bool>(2)? || pk > 0;
                Ok(((row.get(0)?, kind.to_string(), not_null, row.get(4)?), pk))
            })
            .unwrap()
            .collect::<Result<_, _>>()
            .unwrap();
        let mut primary: Vec<&(Column, i64)> = columns.iter().filter(|(_, pk)| *pk > 0).collect();
        primary.sort_by_key(|(_, pk)| *pk);
        if !primary.is_empty() {
            let primary = primary.iter().map(|(c, _)| c.0.clone()).collect();
            schema.keys.push((table.clone(), "p".into(), primary));
        }
        schema
            .tables
            .insert(table.clone(), columns.into_iter().map(|(c, _)| c).collect());

        let sql: String = conn
            .query_row(
                "SELECT sql FROM sqlite_master WHERE type = 'table' AND name = ?1",
                [table],
                |row| row.get(0),
            )
            .unwrap();
        schema
            .checks
            .insert(table.clone(), sql.matches("CHECK (").count());

        let mut stmt = conn
            .prepare(
                "SELECT id, \"table\", \"from\", \"to\" FROM pragma_foreign_key_list(?1)
                  ORDER BY id, seq",
            )
            .unwrap();
        let links: Vec<(i64, String, String, String)> = stmt
            .query_map([table], |row| {
                Ok((row.get(0)?, row.get(1)?, row.get(2)?, row.get(3)?))
            })
            .unwrap()
            .collect::<Result<_, _>>()
            .unwrap();
        let mut ids: Vec<i64> = links.iter().map(|l| l.0).collect();
        ids.dedup();
        for id in ids {
            let parts: Vec<_> = links.iter().filter(|l| l.0 == id).collect();
            schema.foreign_keys.push((
                table.clone(),
                parts.iter().map(|l| l.2.clone()).collect(),
                parts[0].1.clone(),
                parts.iter().map(|l| l.3.clone()).collect(),
            ));
        }

        let mut stmt = conn
            .prepare("SELECT name, \"unique\", partial, origin FROM pragma_index_list(?1)")
            .unwrap();
        let listed: Vec<(String, bool, bool, String)> = stmt
            .query_map([table], |row| {
                Ok((row.get(0)?, row.get(1)?, row.get(2)?, row.get(3)?))
            })
            .unwrap()
            .collect::<Result<_, _>>()
            .unwrap();
        for (name, unique, partial, origin) in listed {
            let columns = strings(
                "SELECT name FROM pragma_index_info(?1) ORDER BY seqno",
                &name,
            );
            match origin.as_str() {
                "c" => schema
                    .indexes
                    .push((name, table.clone(), unique, partial, columns)),
                "u" => schema.keys.push((table.clone(), "u".into(), columns)),
                // The primary key of a WITHOUT ROWID table or a TEXT one: counted above.
                _ => {}
            }
        }
    }
    schema.indexes.sort();
    schema.keys.sort();
    schema.foreign_keys.sort();
    schema
}

fn postgres_schema(client: &mut postgres::Client) -> Schema {
    let mut schema = Schema::default();
    let names: Vec<String> = client
        .query(
            "SELECT table_name::text FROM information_schema.tables
              WHERE table_schema = current_schema() AND table_name != 'posthorn_schema'",
            &[],
        )
        .unwrap()
        .iter()
        .map(|row| row.get(0))
        .collect();
    for table in names {
        let columns = client
            .query(
                "SELECT column_name::text, data_type::text, is_nullable = 'NO',
                        column_default::text
                   FROM information_schema.columns
                  WHERE table_schema = current_schema() AND table_name = $1
                  ORDER BY ordinal_position",
                &[&table],
            )
            .unwrap()
            .iter()
            .map(|row| {
                // PostgreSQL spells a text default with its type: `''::text`.
                let default = row
                    .get::<_, Option<String>>(3)
                    .map(|d| d.trim_end_matches("::text").to_owned());
                (row.get(0), row.get(1), row.get(2), default)
            })
            .collect();
        schema.tables.insert(table.clone(), columns);
        schema.checks.insert(table, 0);
    }
    // Column names of an attribute-number array of a table.
    const COLUMNS: &str = "array(SELECT a.attname::text
                                  FROM unnest(%KEYS%::int2[]) WITH ORDINALITY AS k(attnum, ord)
                                  JOIN pg_attribute a
                                    ON a.attrelid = %TABLE% AND a.attnum = k.attnum
                                 ORDER BY k.ord)";
    let columns =
        |keys: &str, table: &str| COLUMNS.replace("%KEYS%", keys).replace("%TABLE%", table);
    let constraints = client
        .query(
            &format!(
                "SELECT c.contype::text, t.relname::text, {}, r.relname::text, {}
                   FROM pg_constraint c
                   JOIN pg_class t ON t.oid = c.conrelid
                   JOIN pg_namespace n ON n.oid = t.relnamespace
                   LEFT JOIN pg_class r ON r.oid = c.confrelid
                  WHERE n.nspname = current_schema() AND t.relname != 'posthorn_schema'",
                columns("c.conkey", "c.conrelid"),
                columns("c.confkey", "c.confrelid"),
            ),
            &[],
        )
        .unwrap();
    for row in constraints {
        let kind: String = row.get(0);
        let table: String = row.get(1);
        let own: Vec<String> = row.get(2);
        match kind.as_str() {
            "p" | "u" => schema.keys.push((table, kind, own)),
            "f" => schema
                .foreign_keys
                .push((table, own, row.get(3), row.get(4))),
            "c" => *schema.checks.entry(table).or_default() += 1,
            other => panic!("a constraint of kind {other} on {table}"),
        }
    }
    // Indexes made by CREATE INDEX, not those behind a primary key or UNIQUE constraint
    // (SQLite's automatic ones are left out the same way).
    schema.indexes = client
        .query(
            &format!(
                "SELECT i.relname::text, t.relname::text, x.indisunique, x.indpred IS NOT NULL, {}
                   FROM pg_index x
                   JOIN pg_class i ON i.oid = x.indexrelid
                   JOIN pg_class t ON t.oid = x.indrelid
                   JOIN pg_namespace n ON n.oid = t.relnamespace
                  WHERE n.nspname = current_schema()
                    AND NOT EXISTS (SELECT 1 FROM pg_constraint c WHERE c.conindid = x.indexrelid)",
                columns("x.indkey", "x.indrelid"),
            ),
            &[],
        )
        .unwrap()
        .iter()
        .map(|row| (row.get(0), row.get(1), row.get(2), row.get(3), row.get(4)))
        .collect();
    schema.indexes.sort();
    schema.keys.sort();
    schema.foreign_keys.sort();
    schema
}

#[test]
fn the_postgres_schema_has_the_sqlite_tables_columns_keys_and_indexes() {
    let db = fresh_database();
    let mut client = connect(db.url()).unwrap();
    migrate(&mut client).unwrap();
    let sqlite = sqlite_schema();
    let pg = postgres_schema(&mut client);

    assert_eq!(
        sqlite.tables.keys().collect::<Vec<_>>(),
        pg.tables.keys().collect::<Vec<_>>(),
        "the same tables"
    );
    for (table, columns) in &sqlite.tables {
        assert_eq!(
            Some(columns),
            pg.tables.get(table),
            "the columns of {table}"
        );
    }
    assert_eq!(sqlite.keys, pg.keys, "primary keys and UNIQUE constraints");
    assert_eq!(sqlite.foreign_keys, pg.foreign_keys, "foreign keys");
    assert_eq!(sqlite.checks, pg.checks, "CHECK constraints per table");

    let names = |indexes: &[Index]| indexes.iter().map(|i| i.0.clone()).collect::<Vec<_>>();
    assert_eq!(
        names(&sqlite.indexes),
        names(&pg.indexes),
        "the same index names"
    );
    for (sqlite, pg) in sqlite.indexes.iter().zip(&pg.indexes) {
        assert_eq!(
            (&sqlite.1, sqlite.2, sqlite.3),
            (&pg.1, pg.2, pg.3),
            "index {}: table, unique and partial alike",
            sqlite.0
        );
        // SQLite ends each index of a rowid table with the rowid, unseen; PostgreSQL's
        // name that column at the end.
        let rowid = match pg.1.as_str() {
            "events" => Some("seq"),
            "delivery_rollups" | "queue_samples" => None,
            _ => Some("id"),
        };
        let mut expected = sqlite.4.clone();
        if let Some(rowid) = rowid.filter(|r| expected.last().map(String::as_str) != Some(r)) {
            expected.push(rowid.to_string());
        }
        assert_eq!(pg.4, expected, "the columns of index {}", sqlite.0);
    }
}
