use std::time::Duration;

use crate::store::db::{params, Db};

use crate::store::test_support::{attempt, delivery, event, TempStore};
use crate::store::{AdminRefusal, AttemptRecord, NextStep, Store};

const T: i64 = 1_700_000_000_000;

fn open(store: &TempStore) -> Store {
    let (wake, _woken) = crossbeam_channel::bounded(1);
    Store::open(&store.path, wake).unwrap()
}

fn body(conn: &Db, id: &str) -> String {
    conn.query_row(
        "SELECT body FROM events WHERE id = ?1",
        params![id],
        |row| row.get(0),
    )
    .unwrap()
}

fn state(conn: &Db, id: i64) -> String {
    conn.query_row(
        "SELECT state FROM deliveries WHERE id = ?1",
        params![id],
        |row| row.get(0),
    )
    .unwrap()
}

fn snippets(conn: &Db, delivery: i64) -> Vec<Option<String>> {
    conn.prepare("SELECT response_snippet FROM attempts WHERE delivery_id = ?1 ORDER BY id")
        .unwrap()
        .query_map(params![delivery], |row| row.get(0))
        .unwrap()
        .collect::<Result<_, _>>()
        .unwrap()
}

fn with_snippets(conn: &Db) {
    conn.execute(
        "UPDATE attempts SET response_snippet = 'receiver said: ' || delivery_id",
        [],
    )
    .unwrap();
}

fn rejection(conn: &Db, snippet: &str) -> i64 {
    conn.execute(
        "INSERT INTO rejections (at, source, line, reason, snippet)
         VALUES (1, 'spool:x.ndjson', 3, 'not an event', ?1)",
        params![snippet],
    )
    .unwrap();
    conn.last_insert_rowid()
}

fn rejection_snippet(conn: &Db, id: i64) -> Option<String> {
    conn.query_row(
        "SELECT snippet FROM rejections WHERE id = ?1",
        params![id],
        |row| row.get(0),
    )
    .unwrap()
}

fn record(store: &Store, delivery_id: i64, next: NextStep) {
    let handle = store.handle();
    handle.record(vec![AttemptRecord {
        delivery_id,
        subscription: "crm".into(),
        attempt: 1,
        started_at_ms: T,
        duration_ms: 3,
        status: Some(if next == NextStep::Delivered {
            200
        } else {
            503
        }),
        error: None,
        response_snippet: Some("late answer about the conversation".into()),
        next,
        shaping: None,
    }]);
    handle.ping(Duration::from_secs(10)).unwrap();
}

#[test]
fn forgetting_blanks_the_conversations_content_and_keeps_its_metadata() {
    let fixture = TempStore::new();
    let conn = fixture.conn();
    let one = event(&conn, "e-1", "conversation.ended", Some("c-1"), T);
    let two = event(&conn, "e-2", "conversation.summarized", Some("c-1"), T);
    let other = event(&conn, "e-3", "conversation.ended", Some("c-10"), T);
    let delivered = delivery(&conn, one, "crm", "delivered", T);
    attempt(&conn, delivered, T, 5, Some(200));
    let pending = delivery(&conn, two, "crm", "pending", T);
    attempt(&conn, pending, T, 5, Some(500));
    let untouched = delivery(&conn, other, "crm", "delivered", T);
    attempt(&conn, untouched, T, 5, Some(200));
    with_snippets(&conn);
    let quoted = rejection(&conn, r#"{"id":"e-9","conversation_id":"c-1","data":"#);
    let longer_id = rejection(&conn, r#"{"conversation_id":"c-10"}"#);
    let store = open(&fixture);

    let forgotten = store
        .handle()
        .forget_conversation("c-1".into(), false)
        .unwrap();

    assert_eq!(
        (
            forgotten.events,
            forgotten.attempts,
            forgotten.rejections,
            forgotten.cancelled,
            forgotten.waiting,
            forgotten.again
        ),
        (2, 2, 1, 1, 0, false),
        "{forgotten:?}"
    );
    assert_eq!(body(&conn, "e-1"), "");
    assert_eq!(body(&conn, "e-2"), "");
    assert_eq!(body(&conn, "e-3"), r#"{"id":"e-3"}"#);
    assert_eq!(snippets(&conn, delivered), [None]);
    assert_eq!(snippets(&conn, pending), [None]);
    assert_eq!(
        snippets(&conn, untouched),
        [Some(format!("receiver said: {untouched}"))]
    );
    assert_eq!(rejection_snippet(&conn, quoted), None);
    assert!(rejection_snippet(&conn, longer_id).is_some());
    // The delivery log keeps its rows: states, types, statuses, times.
    assert_eq!(state(&conn, delivered), "delivered");
    assert_eq!(state(&conn, pending), "cancelled");
    let (kind, status, dropped): (String, i64, Option<i64>) = conn
        .query_row(
            "SELECT e.type, a.status, e.payload_dropped_at FROM events e
             JOIN deliveries d ON d.event_seq = e.seq JOIN attempts a ON a.delivery_id = d.id
             WHERE e.id = 'e-2'",
            [],
            |row| Ok((row.get(0)?, row.get(1)?, row.get(2)?)),
        )
        .unwrap();
    assert_eq!((kind.as_str(), status), ("conversation.summarized", 500));
    assert!(dropped.is_some());
    let done: Option<i64> = conn
        .query_row(
            "SELECT done_at FROM forgotten_conversations WHERE conversation_id = 'c-1'",
            [],
            |row| row.get(0),
        )
        .unwrap();
    assert!(done.is_some());
}

#[test]
fn forgetting_twice_erases_nothing_more_and_an_unknown_conversation_is_refused() {
    let fixture = TempStore::new();
    let conn = fixture.conn();
    let seq = event(&conn, "e-1", "conversation.ended", Some("c-1"), T);
    delivery(&conn, seq, "crm", "delivered", T);
    let store = open(&fixture);
    let handle = store.handle();

    let first = handle.forget_conversation("c-1".into(), false).unwrap();
    assert_eq!((first.events, first.again), (1, false));
    let second = handle.forget_conversation("c-1".into(), false).unwrap();
    assert_eq!(
        (
            second.events,
            second.attempts,
            second.rejections,
            second.again
        ),
        (0, 0, 0, true)
    );

    let err = handle
        .forget_conversation("c-unknown".into(), false)
        .unwrap_err();
    assert_eq!(
        err.downcast_ref::<AdminRefusal>(),
        Some(&AdminRefusal::UnknownConversation("c-unknown".into()))
    );
}

#[test]
fn let_pending_finish_blanks_the_event_when_its_delivery_is_final_even_after_a_restart() {
    let fixture = TempStore::new();
    let conn = fixture.conn();
    let seq = event(&conn, "e-1", "conversation.ended", Some("c-1"), T);
    let pending = delivery(&conn, seq, "crm", "pending", T);
    let store = open(&fixture);

    let forgotten = store
        .handle()
        .forget_conversation("c-1".into(), true)
        .unwrap();
    assert_eq!(
        (forgotten.events, forgotten.cancelled, forgotten.waiting),
        (0, 0, 1)
    );
    assert_eq!(state(&conn, pending), "pending");
    assert_eq!(
        body(&conn, "e-1"),
        r#"{"id":"e-1"}"#,
        "kept until it is sent"
    );

    // The request survives a restart: the new writer knows it still waits.
    store.close();
    let store = open(&fixture);
    record(&store, pending, NextStep::RetryAt(T + 1));
    assert_eq!(
        state(&conn, pending),
        "pending",
        "let finish: not cancelled"
    );
    assert_eq!(body(&conn, "e-1"), r#"{"id":"e-1"}"#);
    assert_eq!(
        snippets(&conn, pending),
        [None],
        "the recorded snippet is blanked"
    );
    record(&store, pending, NextStep::Delivered);
    assert_eq!(state(&conn, pending), "delivered");
    assert_eq!(body(&conn, "e-1"), "");
}

#[test]
fn a_delivery_in_flight_when_its_conversation_is_forgotten_is_cancelled_when_it_comes_back() {
    let fixture = TempStore::new();
    let conn = fixture.conn();
    let seq = event(&conn, "e-1", "conversation.ended", Some("c-1"), T);
    let in_flight = delivery(&conn, seq, "crm", "pending", T);
    conn.execute(
        "UPDATE deliveries SET leased_at = ?2 WHERE id = ?1",
        params![in_flight, T],
    )
    .unwrap();
    let store = open(&fixture);
    // Open returned the lease to the queue (as after a crash); take it again.
    conn.execute(
        "UPDATE deliveries SET leased_at = ?2 WHERE id = ?1",
        params![in_flight, T],
    )
    .unwrap();

    let forgotten = store
        .handle()
        .forget_conversation("c-1".into(), false)
        .unwrap();
    assert_eq!((forgotten.cancelled, forgotten.waiting), (0, 1));
    // An event of the conversation taken in after the request, while it still waits.
    let later = event(
        &conn,
        "e-later",
        "conversation.ended",
        Some("c-1"),
        crate::store::now_ms() + 60_000,
    );
    let later_delivery = delivery(&conn, later, "crm", "pending", T);

    record(&store, in_flight, NextStep::RetryAt(T + 1));
    assert_eq!(state(&conn, in_flight), "cancelled");
    assert_eq!(body(&conn, "e-1"), "");
    assert_eq!(snippets(&conn, in_flight), [None]);
    assert_eq!(
        state(&conn, later_delivery),
        "pending",
        "a later event is not affected"
    );
    assert_eq!(body(&conn, "e-later"), r#"{"id":"e-later"}"#);
}
