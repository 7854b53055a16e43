//! The plans PostgreSQL picks for the statements every delivery goes through, under the
//! statistics that mislead it most: taken in a quiet moment (the queue empty, nothing
//! leased), then a backlog arrives before the server looks again. The share of pending
//! and leased rows swings from nothing to most of the table within seconds, so each
//! statement is written so that no such estimate makes it read the whole backlog.
//! `auto_explain` reports the plan of every statement, those inside `posthorn_claim`
//! too, as notices to the connection that runs them.

use std::str::FromStr as _;
use std::sync::{Arc, Mutex};

use crate::store::db::Db;
use crate::store::test_pg::{fresh_database, FreshDatabase};
use crate::store::test_support::claim_request;
use crate::store::{AttemptRecord, ClaimRequest, ClusterLimits, Line, NextStep};

/// A queue that went through 50,000 deliveries, each leased then delivered, so its due
/// and lease indexes span many pages, and statistics from the quiet moment after: five
/// retries waiting, the rest delivered, nothing leased. Then a backlog of 20,000.
fn quiet_statistics_then_a_backlog() -> FreshDatabase {
    let database = fresh_database();
    let mut client = database.connect();
    crate::store::schema_pg::migrate(&mut client).unwrap();
    client
        .batch_execute(
            "INSERT INTO events (id, type, conversation_id, received_at, source, body)
                 SELECT 'e' || n, 'conversation.started', 'c' || n, n, 'test', '{}'
                 FROM generate_series(1, 70000) n;
             INSERT INTO deliveries (event_seq, event_id, subscription, state,
                                     next_attempt_at, created_at, updated_at,
                                     conversation_id)
                 SELECT seq, id, 's', 'pending', seq, seq, seq, conversation_id
                 FROM events WHERE seq <= 50000;
             UPDATE deliveries SET leased_at = event_seq, next_attempt_at = 1e12;
             UPDATE deliveries SET state = 'delivered', next_attempt_at = NULL,
                                   leased_at = NULL
                 WHERE event_seq > 5;
             UPDATE deliveries SET leased_at = NULL WHERE event_seq <= 5;",
        )
        .unwrap();
    client.batch_execute("VACUUM ANALYZE deliveries").unwrap();
    client
        .batch_execute(
            "INSERT INTO deliveries (event_seq, event_id, subscription, state,
                                     next_attempt_at, created_at, updated_at,
                                     conversation_id)
                 SELECT seq, id, 's', 'pending', seq, seq, seq, conversation_id
                 FROM events WHERE seq > 50000;",
        )
        .unwrap();
    database
}

/// A store connection that hears the plan of every statement it runs, each planned
/// once for any parameters (as after a statement's first five runs).
fn listening(database: &FreshDatabase) -> (Db, Arc<Mutex<Vec<String>>>) {
    let plans = Arc::new(Mutex::new(Vec::new()));
    let heard = Arc::clone(&plans);
    let client = postgres::Config::from_str(database.url())
        .unwrap()
        .notice_callback(move |notice| heard.lock().unwrap().push(notice.message().to_string()))
        .connect(postgres::NoTls)
        .unwrap();
    let db = Db::postgres(client, database.url());
    db.execute_batch(
        "LOAD 'auto_explain';
         SET auto_explain.log_min_duration = 0;
         SET auto_explain.log_nested_statements = on;
         SET auto_explain.log_level = notice;
         SET plan_cache_mode = force_generic_plan;",
    )
    .unwrap();
    (db, plans)
}

/// Four deliveries in `line`, under a rate limit that lets them all go: the rate
/// limit's lease count runs too.
fn request(line: Line) -> ClaimRequest {
    ClaimRequest {
        limit: 4,
        line,
        cluster: ClusterLimits {
            rate: Some((1_000, 1_000)),
            ..claim_request().cluster
        },
        ..claim_request()
    }
}

fn delivered(delivery_id: i64) -> AttemptRecord {
    AttemptRecord {
        delivery_id,
        subscription: "s".into(),
        attempt: 1,
        started_at_ms: 60_000,
        duration_ms: 3,
        status: Some(200),
        error: None,
        response_snippet: None,
        shaping: None,
        next: NextStep::Delivered,
    }
}

/// The plans heard whose statement text contains `text`.
fn plans_of(plans: &Mutex<Vec<String>>, text: &str) -> Vec<String> {
    let plans = plans.lock().unwrap();
    plans.iter().filter(|p| p.contains(text)).cloned().collect()
}

#[test]
fn a_claim_and_its_outcomes_read_only_the_rows_they_need_though_statistics_saw_no_queue() {
    let database = quiet_statistics_then_a_backlog();
    let (db, plans) = listening(&database);
    for line in [Line::Any, Line::Conversation { hold_dead: true }] {
        plans.lock().unwrap().clear();
        let tx = db.transaction().unwrap();
        let mut groups = [4];
        let budgets = super::claim::Budgets {
            total: 4,
            groups: &mut groups,
            finishing: &[],
        };
        let result = super::claim::claim(&tx, &[request(line)], budgets, 60_000, 90_000).unwrap();
        let ids: Vec<&str> = result.claimed.iter().map(|c| c.event_id.as_str()).collect();
        assert_eq!(ids, ["e50001", "e50002", "e50003", "e50004"]);

        // The leases: the first rows of the due index, in order, no sort.
        let take = plans_of(&plans, "LockRows");
        assert_eq!(take.len(), 1, "{:#?}", plans.lock().unwrap());
        assert!(take[0].contains("using deliveries_due"), "{}", take[0]);
        assert!(!take[0].contains("Sort"), "{}", take[0]);
        // The endpoint's and the rate limit's lease counts: the few leased rows, by
        // index scans that mark ended leases for the next count to pass over.
        let counts = plans_of(&plans, "leased_at IS NOT NULL AND");
        assert_eq!(counts.len(), 2, "{:#?}", plans.lock().unwrap());
        for count in counts {
            assert!(count.contains("Scan using deliveries_leased"), "{count}");
        }

        // The outcomes: each delivery by its id.
        let records: Vec<AttemptRecord> = result
            .claimed
            .iter()
            .map(|c| delivered(c.delivery_id))
            .collect();
        let updated = super::writes::record(&tx, &records).unwrap();
        assert_eq!(updated, [true; 4]);
        let outcome = plans_of(&plans, "UPDATE deliveries AS d");
        assert_eq!(outcome.len(), 1, "{:#?}", plans.lock().unwrap());
        assert!(
            outcome[0].contains("using deliveries_pkey"),
            "{}",
            outcome[0]
        );
        // Rolled back: the second line claims the same rows.
        drop(tx);
    }
}
