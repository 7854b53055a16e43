use crate::store::db::{params, Db};

use super::*;
use crate::store::test_support::{attempt, delivery, event, TempStore};
use crate::store::{AdminRefusal, Claimed, NextStep, Reader, Store, StoreFull};

const T: i64 = 1_700_000_000_000;

fn open(store: &TempStore) -> (Store, crossbeam_channel::Receiver<()>) {
    let (wake, woken) = crossbeam_channel::bounded(1);
    (Store::open(&store.path, wake).unwrap(), woken)
}

/// (state, attempts, next_attempt_at, leased) of a delivery.
fn row(conn: &Db, id: i64) -> (String, u32, Option<i64>, bool) {
    conn.query_row(
        "SELECT state, attempts, next_attempt_at, leased_at IS NOT NULL FROM deliveries
         WHERE id = ?1",
        params![id],
        |row| Ok((row.get(0)?, row.get(1)?, row.get(2)?, row.get(3)?)),
    )
    .unwrap()
}

fn refusal(err: anyhow::Error) -> AdminRefusal {
    match err.downcast_ref::<AdminRefusal>() {
        Some(refusal) => refusal.clone(),
        None => panic!("expected an AdminRefusal, got: {err:#}"),
    }
}

fn drop_payload(conn: &Db, seq: i64) {
    conn.execute(
        "UPDATE events SET body = '', payload_dropped_at = 1 WHERE seq = ?1",
        params![seq],
    )
    .unwrap();
}

#[test]
fn retry_makes_a_dead_or_cancelled_delivery_due_now_and_keeps_its_attempts() {
    let fixture = TempStore::new();
    let conn = fixture.conn();
    let seq = event(&conn, "e-1", "conversation.ended", Some("c-1"), T);
    let dead = delivery(&conn, seq, "crm", "dead", T);
    attempt(&conn, dead, T, 5, Some(500));
    attempt(&conn, dead, T + 1, 5, Some(500));
    let cancelled = delivery(&conn, seq, "wiki", "cancelled", T);
    let (store, woken) = open(&fixture);
    let handle = store.handle();

    let before = now_ms();
    handle.retry_delivery(dead).unwrap();
    let (state, attempts, next, leased) = row(&conn, dead);
    assert_eq!((state.as_str(), attempts, leased), ("pending", 2, false));
    assert!(
        next.is_some_and(|at| at >= before && at <= now_ms()),
        "{next:?}"
    );
    // The wake follows the answer.
    assert!(
        woken
            .recv_timeout(std::time::Duration::from_secs(5))
            .is_ok(),
        "the scheduler is woken"
    );

    handle.retry_delivery(cancelled).unwrap();
    assert_eq!(row(&conn, cancelled).0, "pending");
    // A pending one can be hurried too.
    handle.retry_delivery(cancelled).unwrap();
}

#[test]
fn retry_refuses_unknown_delivered_in_flight_and_dropped_payloads() {
    let fixture = TempStore::new();
    let conn = fixture.conn();
    let seq = event(&conn, "e-1", "conversation.ended", Some("c-1"), T);
    let delivered = delivery(&conn, seq, "crm", "delivered", T);
    let leased = delivery(&conn, seq, "wiki", "pending", T);
    let gone = event(&conn, "e-2", "conversation.ended", Some("c-1"), T);
    let dropped = delivery(&conn, gone, "crm", "dead", T);
    drop_payload(&conn, gone);
    let (store, _woken) = open(&fixture);
    let handle = store.handle();
    // Leased after the store opened: opening returns leases left by a crash.
    conn.execute(
        "UPDATE deliveries SET leased_at = 1 WHERE id = ?1",
        [leased],
    )
    .unwrap();

    assert_eq!(
        refusal(handle.retry_delivery(999).unwrap_err()),
        AdminRefusal::UnknownDelivery(999)
    );
    assert_eq!(
        refusal(handle.retry_delivery(delivered).unwrap_err()),
        AdminRefusal::AlreadyDelivered(delivered)
    );
    assert_eq!(
        refusal(handle.retry_delivery(leased).unwrap_err()),
        AdminRefusal::InFlight(leased)
    );
    let err = handle.retry_delivery(dropped).unwrap_err();
    assert!(
        err.to_string()
            .contains("its event body was dropped (by [retention] payloads"),
        "{err}"
    );
    assert_eq!(row(&conn, dropped).0, "dead", "left as it was");
    assert_eq!(row(&conn, delivered).0, "delivered");
}

#[test]
fn retry_failed_takes_the_subscriptions_dead_and_failing_since_a_time() {
    let fixture = TempStore::new();
    let conn = fixture.conn();
    let mut ids = Vec::new();
    for (n, (subscription, state, updated_at, attempts)) in [
        ("crm", "dead", T + 10, 3),      // taken
        ("crm", "dead", T + 20, 3),      // taken
        ("crm", "dead", T - 10, 3),      // died before `since`
        ("crm", "pending", T + 30, 1),   // failing: taken
        ("crm", "pending", T + 30, 0),   // never tried
        ("crm", "delivered", T + 30, 1), // fine
        ("crm", "cancelled", T + 30, 1), // not failed
        ("wiki", "dead", T + 30, 3),     // another subscription
        ("crm", "dead", T + 40, 3),      // body dropped
    ]
    .into_iter()
    .enumerate()
    {
        let seq = event(&conn, &format!("e-{n}"), "conversation.ended", None, T);
        let id = delivery(&conn, seq, subscription, state, T - 100);
        conn.execute(
            "UPDATE deliveries SET updated_at = ?2, attempts = ?3 WHERE id = ?1",
            params![id, updated_at, attempts],
        )
        .unwrap();
        if n == 8 {
            drop_payload(&conn, seq);
        }
        ids.push(id);
    }
    let (store, _woken) = open(&fixture);

    let retried = store.handle().retry_failed("crm".into(), T, false).unwrap();

    assert_eq!(retried, 3);
    let states: Vec<String> = ids.iter().map(|&id| row(&conn, id).0).collect();
    assert_eq!(
        states,
        [
            "pending",
            "pending",
            "dead",
            "pending",
            "pending",
            "delivered",
            "cancelled",
            "dead",
            "dead"
        ]
    );
    let due: Vec<Option<i64>> = [ids[0], ids[1], ids[3]]
        .iter()
        .map(|&id| row(&conn, id).2)
        .collect();
    assert!(
        due.iter().all(|at| at.is_some_and(|at| at > T + 40)),
        "{due:?}"
    );
    assert_eq!(
        store
            .handle()
            .retry_failed("nobody".into(), 0, false)
            .unwrap(),
        0
    );
}

#[test]
fn retry_failed_takes_cancelled_deliveries_only_when_asked() {
    let fixture = TempStore::new();
    let conn = fixture.conn();
    let mut ids = Vec::new();
    for (n, (state, updated_at)) in [
        ("cancelled", T + 10), // taken when asked
        ("cancelled", T - 10), // cancelled before `since`
        ("dead", T + 10),      // taken either way
    ]
    .into_iter()
    .enumerate()
    {
        let seq = event(&conn, &format!("e-{n}"), "conversation.ended", None, T);
        let id = delivery(&conn, seq, "crm", state, T - 100);
        conn.execute(
            "UPDATE deliveries SET updated_at = ?2 WHERE id = ?1",
            params![id, updated_at],
        )
        .unwrap();
        ids.push(id);
    }
    let (store, _woken) = open(&fixture);

    assert_eq!(
        store.handle().retry_failed("crm".into(), T, false).unwrap(),
        1
    );
    assert_eq!(row(&conn, ids[0]).0, "cancelled", "not asked for");
    // The dead one, now pending and never tried again, is not failing: only the cancelled.
    assert_eq!(
        store.handle().retry_failed("crm".into(), T, true).unwrap(),
        1
    );
    let states: Vec<String> = ids.iter().map(|&id| row(&conn, id).0).collect();
    assert_eq!(states, ["pending", "cancelled", "pending"]);
}

#[test]
fn replay_resets_the_existing_delivery_or_creates_one() {
    let fixture = TempStore::new();
    let conn = fixture.conn();
    let seq = event(&conn, "e-1", "conversation.ended", Some("c-1"), T);
    let delivered = delivery(&conn, seq, "crm", "delivered", T);
    attempt(&conn, delivered, T, 5, Some(204));
    let gone = event(&conn, "e-old", "conversation.ended", Some("c-1"), T);
    drop_payload(&conn, gone);
    let (store, _woken) = open(&fixture);
    let handle = store.handle();

    let again = handle.replay("e-1".into(), "crm".into()).unwrap();
    assert_eq!(
        again,
        Replayed {
            delivery_id: delivered,
            created: false
        }
    );
    assert_eq!(row(&conn, delivered).0, "pending");
    assert_eq!(
        row(&conn, delivered).1,
        1,
        "attempts kept: the next one is #2"
    );

    let fresh = handle.replay("e-1".into(), "wiki".into()).unwrap();
    assert!(fresh.created);
    assert_eq!(row(&conn, fresh.delivery_id).0, "pending");

    assert_eq!(
        refusal(handle.replay("e-nope".into(), "crm".into()).unwrap_err()),
        AdminRefusal::UnknownEvent("e-nope".into())
    );
    assert!(matches!(
        refusal(handle.replay("e-old".into(), "crm".into()).unwrap_err()),
        AdminRefusal::PayloadDropped { .. }
    ));
}

#[test]
fn pause_and_resume_are_kept_across_restarts() {
    let fixture = TempStore::new();
    let (store, _woken) = open(&fixture);
    let handle = store.handle();
    assert!(handle.set_paused("crm".into(), true).unwrap());
    assert!(
        !handle.set_paused("crm".into(), true).unwrap(),
        "already paused"
    );
    assert!(handle.set_paused("wiki".into(), true).unwrap());
    assert!(
        !handle.set_paused("bot".into(), false).unwrap(),
        "never paused"
    );
    store.close();

    let (store, _woken) = open(&fixture);
    let reader = Reader::open(&fixture.path).unwrap();
    assert_eq!(reader.paused_subscriptions().unwrap(), ["crm", "wiki"]);
    // The scheduler's in-memory view is loaded at start and follows each change.
    let handle = store.handle();
    assert!(handle.is_paused("crm") && handle.is_paused("wiki") && !handle.is_paused("bot"));
    assert!(handle.set_paused("crm".into(), false).unwrap());
    assert_eq!(reader.paused_subscriptions().unwrap(), ["wiki"]);
    assert!(!handle.is_paused("crm") && handle.is_paused("wiki"));
}

#[test]
fn settings_are_kept_and_replaced() {
    let fixture = TempStore::new();
    let (store, _woken) = open(&fixture);
    let handle = store.handle();
    let reader = Reader::open(&fixture.path).unwrap();
    assert_eq!(reader.setting("admin_password_hash").unwrap(), None);
    handle.put_setting("admin_password_hash", "one").unwrap();
    handle.put_setting("admin_password_hash", "two").unwrap();
    assert_eq!(
        reader.setting("admin_password_hash").unwrap().as_deref(),
        Some("two")
    );
}

#[test]
fn audit_rows_and_recorded_attempts_reach_the_admin_queries() {
    let fixture = TempStore::new();
    let conn = fixture.conn();
    let seq = event(&conn, "e-1", "conversation.ended", Some("c-1"), T);
    let id = delivery(&conn, seq, "crm", "pending", T);
    let (store, _woken) = open(&fixture);
    let handle = store.handle();
    handle
        .audit(AuditEntry {
            actor: "session".into(),
            action: "delivery.retry".into(),
            detail: format!("delivery {id}"),
            result: "applied".into(),
            origin: Some("127.0.0.1".into()),
        })
        .unwrap();
    handle.record(vec![AttemptRecord {
        delivery_id: id,
        subscription: "crm".into(),
        attempt: 1,
        started_at_ms: now_ms(),
        duration_ms: 12,
        status: Some(503),
        error: None,
        response_snippet: Some("busy".into()),
        shaping: None,
        next: NextStep::RetryAt(now_ms() + 1000),
    }]);
    // Commands are committed in order: once the pause is answered, the record is in.
    handle.set_paused("x".into(), true).unwrap();

    let reader = Reader::open(&fixture.path).unwrap();
    let audit = reader.audit_log(None, 10).unwrap();
    assert_eq!(audit.items.len(), 1);
    assert_eq!(audit.items[0].actor, "session");
    assert_eq!(audit.items[0].origin.as_deref(), Some("127.0.0.1"));
    assert_eq!(audit.items[0].action, "delivery.retry");
    let health = reader
        .subscription_health(&["crm".to_string()], now_ms())
        .unwrap();
    assert_eq!(health[0].last_status, Some(503));
    assert_eq!(health[0].failing_streak, 1);
    assert_eq!(health[0].latency_p95_ms, Some(12));
}

fn routed(id: &str, subscriptions: &[&str]) -> crate::store::RoutedEvent {
    crate::store::RoutedEvent {
        event: crate::event::Event {
            id: id.into(),
            kind: "conversation.started".into(),
            conversation_id: Some("c-1".into()),
            project_id: None,
            body: format!(r#"{{"id":"{id}"}}"#),
        },
        subscriptions: subscriptions.iter().map(|s| s.to_string()).collect(),
    }
}

/// The sample lines of `metric` (with its labels) in a rendering of `handle`'s metrics.
fn samples(handle: &StoreHandle, metric: &str) -> Vec<String> {
    handle
        .metrics()
        .render(None)
        .lines()
        .filter(|l| l.starts_with(metric))
        .map(str::to_string)
        .collect()
}

#[test]
fn metrics_count_what_was_committed_by_source_and_subscription() {
    let fixture = TempStore::new();
    let (store, _woken) = open(&fixture);
    let handle = store.handle();
    let rejection = crate::store::Rejection {
        source: "/srv/spool/in.ndjson".into(),
        line: Some(3),
        reason: "not valid JSON".into(),
        snippet: "{".into(),
    };
    handle
        .ingest(IngestBatch {
            source: "spool:/srv/spool/in.ndjson".into(),
            events: vec![routed("e-1", &["crm"]), routed("e-2", &["crm"])],
            rejections: vec![rejection],
            position: None,
        })
        .unwrap();
    handle
        .ingest(IngestBatch {
            source: "source:echo".into(),
            events: vec![routed("e-2", &["crm"]), routed("e-3", &[])],
            ..Default::default()
        })
        .unwrap();
    assert_eq!(
        samples(&handle, "posthorn_events_ingested_total{"),
        [
            r#"posthorn_events_ingested_total{source="echo"} 1"#,
            r#"posthorn_events_ingested_total{source="inlet"} 0"#,
            r#"posthorn_events_ingested_total{source="spool"} 2"#,
        ]
    );
    assert_eq!(
        samples(&handle, "posthorn_events_duplicate_total{source=\"echo\"}"),
        [r#"posthorn_events_duplicate_total{source="echo"} 1"#]
    );
    assert_eq!(
        samples(&handle, "posthorn_events_rejected_total{source=\"spool\"}"),
        [r#"posthorn_events_rejected_total{source="spool"} 1"#]
    );

    let claimed = handle
        .claim(
            vec![ClaimRequest {
                subscription: "crm".into(),
                limit: 10,
                line: Default::default(),
                group: 0,
                cluster: Default::default(),
            }],
            now_ms() + 1,
            now_ms() + 60_000,
        )
        .unwrap()
        .claimed;
    assert_eq!(claimed.len(), 2);
    let record = |c: &Claimed, next, duration_ms| AttemptRecord {
        delivery_id: c.delivery_id,
        subscription: c.subscription.clone(),
        attempt: c.attempt,
        started_at_ms: now_ms(),
        duration_ms,
        status: Some(if next == NextStep::Delivered {
            204
        } else {
            500
        }),
        error: None,
        response_snippet: None,
        shaping: None,
        next,
    };
    handle.record(vec![
        record(&claimed[0], NextStep::Delivered, 3),
        record(&claimed[1], NextStep::RetryAt(now_ms() + 60_000), 700),
    ]);
    // Records are queued without an answer; a ping comes back after they are committed.
    handle.ping(Duration::from_secs(10)).unwrap();
    assert_eq!(
        samples(&handle, "posthorn_attempts_total{"),
        [
            r#"posthorn_attempts_total{subscription="crm",outcome="delivered"} 1"#,
            r#"posthorn_attempts_total{subscription="crm",outcome="retry"} 1"#,
        ]
    );
    assert_eq!(
        samples(&handle, "posthorn_deliveries_total{"),
        [r#"posthorn_deliveries_total{subscription="crm",outcome="delivered"} 1"#]
    );
    assert_eq!(
        samples(&handle, "posthorn_attempt_duration_seconds_count"),
        [r#"posthorn_attempt_duration_seconds_count{subscription="crm"} 2"#]
    );
    assert_eq!(
        samples(&handle, "posthorn_attempt_duration_seconds_sum"),
        [r#"posthorn_attempt_duration_seconds_sum{subscription="crm"} 0.703"#]
    );
}

#[test]
fn input_refused_over_max_size_counts_nothing_and_the_ping_says_why() {
    let fixture = TempStore::new();
    let (store, _woken) = open(&fixture);
    let handle = store.handle();
    let unlimited = handle.ping(Duration::from_secs(10)).unwrap();
    assert_eq!(unlimited.max_size, None);
    assert!(unlimited.used_bytes > 0, "{unlimited:?}");

    handle.set_max_size(Some(1));
    let full = handle.ping(Duration::from_secs(10)).unwrap();
    assert_eq!(full.max_size, Some(1));
    assert!(full.used_bytes > 1, "{full:?}");
    let refused = handle.ingest(IngestBatch {
        source: "inlet".into(),
        events: vec![routed("e-1", &[])],
        ..Default::default()
    });
    assert!(refused.unwrap_err().downcast_ref::<StoreFull>().is_some());
    assert_eq!(
        samples(&handle, "posthorn_events_ingested_total{source=\"inlet\"}"),
        [r#"posthorn_events_ingested_total{source="inlet"} 0"#]
    );
}

/// The WAL file keeps its size after a checkpoint: a store that refused input on its WAL's
/// size stayed "full" after everything was pruned, until a restart.
#[test]
fn a_store_full_on_its_wal_takes_input_again_once_pruned() {
    let fixture = TempStore::new();
    let (store, _woken) = open(&fixture);
    let handle = store.handle();
    handle.set_max_size(Some(2 << 20));
    let big = |id: String| crate::store::RoutedEvent {
        event: crate::event::Event {
            body: format!(r#"{{"id":"{id}","data":"{}"}}"#, "x".repeat(64 << 10)),
            ..routed(&id, &[]).event
        },
        subscriptions: Vec::new(),
    };
    // One batch of 5 MiB, taken while the store is under the limit: the WAL grows past
    // 4 MiB and its file keeps that size after the checkpoint.
    let first = IngestBatch {
        source: "spool".into(),
        events: (0..80).map(|n| big(format!("big-{n}"))).collect(),
        ..Default::default()
    };
    handle.ingest(first).unwrap();
    let refused = handle.ingest(IngestBatch {
        source: "spool".into(),
        events: vec![routed("one-more", &[])],
        ..Default::default()
    });
    assert!(refused.unwrap_err().downcast_ref::<StoreFull>().is_some());

    // Retention's work, done at once: every row goes.
    let conn = fixture.conn();
    conn.execute("DELETE FROM events", []).unwrap();
    drop(conn);

    let deadline = std::time::Instant::now() + Duration::from_secs(20);
    let mut tries = 0;
    loop {
        tries += 1;
        let batch = IngestBatch {
            source: "spool".into(),
            events: vec![routed(&format!("small-{tries}"), &[])],
            ..Default::default()
        };
        match handle.ingest(batch) {
            Ok(_) => break,
            Err(err) if err.downcast_ref::<StoreFull>().is_some() => {
                assert!(
                    std::time::Instant::now() < deadline,
                    "input is still refused after pruning: {err:#} (WAL {} bytes)",
                    std::fs::metadata(format!("{}-wal", fixture.path.display()))
                        .map_or(0, |m| m.len())
                );
                std::thread::sleep(Duration::from_millis(100));
            }
            Err(err) => panic!("{err:#}"),
        }
    }
}

#[test]
fn a_ping_after_shutdown_says_the_writer_stopped() {
    let fixture = TempStore::new();
    let (store, _woken) = open(&fixture);
    let handle = store.handle();
    store.close();
    let err = handle.ping(Duration::from_secs(10)).unwrap_err();
    assert!(err.to_string().contains("stopped"), "{err:#}");
}

#[test]
fn an_attempt_on_a_delivery_cancelled_meanwhile_is_counted_but_not_as_finished() {
    let fixture = TempStore::new();
    let conn = fixture.conn();
    let seq = event(&conn, "e-1", "conversation.ended", Some("c-1"), T);
    let id = delivery(&conn, seq, "crm", "pending", T);
    let (store, _woken) = open(&fixture);
    let handle = store.handle();
    // The subscription left the config while the attempt was out.
    handle
        .cancel_removed_subscriptions(Vec::new(), "removed from the config at reload")
        .unwrap();
    handle.record(vec![AttemptRecord {
        delivery_id: id,
        subscription: "crm".into(),
        attempt: 1,
        started_at_ms: now_ms(),
        duration_ms: 4,
        status: Some(204),
        error: None,
        response_snippet: None,
        shaping: None,
        next: NextStep::Delivered,
    }]);
    handle.ping(Duration::from_secs(10)).unwrap();
    assert_eq!(
        samples(&handle, "posthorn_attempts_total{"),
        [r#"posthorn_attempts_total{subscription="crm",outcome="delivered"} 1"#]
    );
    assert!(
        samples(&handle, "posthorn_deliveries_total{").is_empty(),
        "{}",
        handle.metrics().render(None)
    );
    assert_eq!(row(&conn, id).0, "cancelled");
}

/// Every writer command runs in a savepoint; with statement journals in temporary files,
/// each commit created, wrote page by page and deleted one (as many page writes as the WAL
/// took, on the writer's hottest path).
#[test]
fn savepoint_journals_of_the_writer_stay_in_memory() {
    let store = TempStore::new();
    let conn = store.conn();
    let temp_store: i64 = conn
        .query_row("PRAGMA temp_store", [], |row| row.get(0))
        .unwrap();
    // 2 is MEMORY (0 DEFAULT, 1 FILE).
    assert_eq!(temp_store, 2);
}
