//! Upgrades, through the real binary: a database made by the first schema (as posthorn
//! 0.1 shipped it, `fixtures/schema-v1.sql`) is migrated in place at start, keeps its
//! rows, gains the new columns and indexes, and its pending delivery is sent. A database
//! from a newer posthorn is refused with a message that says so, and left untouched.

mod common;

use std::process::{Command, Stdio};
use std::time::{Duration, Instant};

use common::{binary, subscription, wait_for, Home, Receiver, Serve};

const SCHEMA_V1: &str = include_str!("fixtures/schema-v1.sql");

fn user_version(home: &Home) -> i64 {
    home.count("PRAGMA user_version")
}

#[test]
fn a_database_of_the_first_schema_is_migrated_keeping_its_rows_and_its_pending_delivery() {
    if common::sqlite_only("upgrading a database file of the first SQLite schema") {
        return;
    }
    let receiver = Receiver::start(204);
    let home = Home::new();
    {
        let conn = rusqlite::Connection::open(home.db()).unwrap();
        conn.execute_batch(SCHEMA_V1).unwrap();
        conn.pragma_update(None, "user_version", 1).unwrap();
        conn.execute_batch(
            r#"INSERT INTO events (id, type, conversation_id, received_at, source, body)
                   VALUES ('evt-v1', 'conversation.started', 'c-1', 1700000000000, 'spool:old',
                           '{"id":"evt-v1","type":"conversation.started","conversation_id":"c-1","project_id":null,"timestamp":"2023-11-14T22:13:20Z","data":{"from":"v1"}}');
               INSERT INTO deliveries (event_seq, event_id, subscription, state, next_attempt_at,
                                       created_at, updated_at)
                   VALUES (1, 'evt-v1', 'crm', 'pending', 1700000000000, 1700000000000, 1700000000000);
               INSERT INTO rejections (at, source, line, reason, snippet)
                   VALUES (4102444800000, 'spool:old.ndjson', 3, 'not JSON', '{oops');"#,
        )
        .unwrap();
    }
    home.write_config(&subscription(
        "crm",
        &format!("{}/hook", receiver.url),
        "conversations = [\"c-1\"]",
        "[\"*\"]",
    ));

    let serve = Serve::start(&home);
    wait_for(
        "the v1 delivery at the receiver",
        Duration::from_secs(20),
        || receiver.count_of("evt-v1") == 1,
    );
    let request = &receiver.requests()[0];
    assert_eq!(request.json()["data"]["from"], "v1", "{}", request.body);
    wait_for(
        "the v1 delivery to be recorded",
        Duration::from_secs(20),
        || home.count("SELECT count(*) FROM deliveries WHERE state = 'delivered'") == 1,
    );
    drop(serve);

    assert!(user_version(&home) >= 2, "the schema was migrated");
    assert_eq!(
        home.query::<String>("SELECT reason FROM rejections"),
        ["not JSON"],
        "an old rejection survives"
    );
    assert_eq!(
        home.count("SELECT count(*) FROM events WHERE payload_dropped_at IS NULL"),
        1,
        "the new column exists and is empty for old rows"
    );
    let indexes = home.query::<String>("SELECT name FROM sqlite_master WHERE type = 'index'");
    for index in ["events_with_payload", "deliveries_final", "rejections_at"] {
        assert!(indexes.iter().any(|i| i == index), "{index} in {indexes:?}");
    }
}

#[test]
fn a_database_from_a_newer_posthorn_is_refused_with_a_clear_message() {
    if common::sqlite_only("a database file whose user_version a newer posthorn wrote") {
        return;
    }
    let home = Home::new();
    {
        let conn = rusqlite::Connection::open(home.db()).unwrap();
        conn.execute_batch("CREATE TABLE from_the_future (x INTEGER);")
            .unwrap();
        conn.pragma_update(None, "user_version", 999).unwrap();
    }
    home.write_config("");
    let mut child = Command::new(binary())
        .args(["serve", "--config"])
        .arg(home.config_path())
        .stdin(Stdio::null())
        .stdout(Stdio::null())
        .stderr(Stdio::piped())
        .spawn()
        .unwrap();
    let deadline = Instant::now() + Duration::from_secs(20);
    let status = loop {
        if let Some(status) = child.try_wait().unwrap() {
            break status;
        }
        if Instant::now() > deadline {
            let _ = child.kill();
            panic!("posthorn kept running on a database from a newer version");
        }
        std::thread::sleep(Duration::from_millis(20));
    };
    let mut stderr = String::new();
    std::io::Read::read_to_string(&mut child.stderr.take().unwrap(), &mut stderr).unwrap();
    assert!(!status.success(), "{status}: {stderr}");
    assert!(
        stderr.contains(&format!(
            "while opening the store at {}",
            home.db().display()
        )) && stderr.contains("schema version 999, newer than this posthorn knows")
            && stderr.contains("upgrade posthorn"),
        "{stderr}"
    );
    assert_eq!(user_version(&home), 999, "the database is left as it was");
    assert_eq!(
        home.count("SELECT count(*) FROM sqlite_master WHERE name = 'events'"),
        0
    );
}
