use std::collections::HashSet;

use crate::store::db::params;

use super::health::{nearest_rank, QUEUE_SQL};
use super::*;
use crate::store::test_support::{attempt, delivery, event, plan, TempStore};

const NOW: i64 = 1_800_000_000_000;
const HOUR: i64 = 60 * 60 * 1000;

#[test]
fn the_overview_counts_states_failures_and_the_oldest_pending() {
    let store = TempStore::new();
    let conn = store.conn();
    let old = event(
        &conn,
        "e-old",
        "conversation.started",
        Some("c-1"),
        NOW - 48 * HOUR,
    );
    let new = event(
        &conn,
        "e-new",
        "conversation.ended",
        Some("c-1"),
        NOW - HOUR,
    );
    event(
        &conn,
        "e-unrouted",
        "conversation.ended",
        None,
        NOW - 2 * HOUR,
    );
    let pending_old = delivery(&conn, old, "crm", "pending", NOW - 48 * HOUR);
    attempt(&conn, pending_old, NOW - 40 * HOUR, 10, Some(500));
    delivery(&conn, new, "crm", "pending", NOW - HOUR);
    let done = delivery(&conn, old, "wiki", "delivered", NOW - 48 * HOUR);
    attempt(&conn, done, NOW - 47 * HOUR, 5, Some(204));
    let dead = delivery(&conn, new, "wiki", "dead", NOW - HOUR);
    attempt(&conn, dead, NOW - 30 * 60_000, 7, None);
    attempt(&conn, dead, NOW - 20 * 60_000, 8, Some(404));

    let overview = store.reader().overview(NOW, 2).unwrap();

    assert_eq!(overview.events_total, 3);
    assert_eq!(overview.events_last_24h, 2);
    assert_eq!(
        overview.deliveries,
        StateCounts {
            pending: 2,
            delivered: 1,
            dead: 1,
            cancelled: 0,
            failing: 1,
        }
    );
    assert_eq!(overview.queue_depth, 2);
    assert_eq!(overview.oldest_pending_age_ms, Some(48 * HOUR));
    let failures: Vec<(i64, Option<u16>, u32)> = overview
        .recent_failures
        .iter()
        .map(|f| (f.delivery_id, f.status, f.attempt))
        .collect();
    assert_eq!(failures, [(dead, Some(404), 2), (dead, None, 1)]);
    assert_eq!(overview.recent_failures[1].subscription, "wiki");
    assert_eq!(overview.recent_failures[1].event_id, "e-new");
    assert_eq!(
        overview.recent_failures[1].error.as_deref(),
        Some("connection refused")
    );
}

#[test]
fn an_empty_store_has_an_overview_of_zeros() {
    let store = TempStore::new();
    let overview = store.reader().overview(NOW, 10).unwrap();
    assert_eq!(overview.events_total, 0);
    assert_eq!(overview.oldest_pending_age_ms, None);
    assert!(overview.recent_failures.is_empty());
}

#[test]
fn health_computes_rate_median_p95_and_the_failing_streak() {
    let store = TempStore::new();
    let conn = store.conn();
    let seq = event(
        &conn,
        "e-1",
        "conversation.started",
        Some("c-1"),
        NOW - 30 * HOUR,
    );
    let d = delivery(&conn, seq, "crm", "pending", NOW - 30 * HOUR);
    // Outside the 24 h window: counts for the streak only if after the last success.
    attempt(&conn, d, NOW - 30 * HOUR, 9_999, Some(500));
    // 20 attempts in the window, durations 1..=20 ms: 1..=16 succeed, 17..=20 fail.
    for n in 1..=20 {
        let status = if n <= 16 { Some(200) } else { Some(503) };
        attempt(&conn, d, NOW - HOUR + n * 1000, n, status);
    }
    let other = delivery(&conn, seq, "wiki", "pending", NOW - 30 * HOUR);
    attempt(&conn, other, NOW - 2 * HOUR, 50, None);
    attempt(&conn, other, NOW - HOUR, 60, Some(500));
    conn.execute(
        "INSERT INTO subscription_state (subscription, paused, updated_at) VALUES ('wiki', 1, 0)",
        [],
    )
    .unwrap();

    let names = ["crm", "wiki", "new"].map(String::from);
    let health = store.reader().subscription_health(&names, NOW).unwrap();

    let crm = &health[0];
    assert_eq!(crm.subscription, "crm");
    assert!(!crm.paused);
    assert_eq!(crm.attempts_counted, 20);
    assert_eq!(crm.success_rate, Some(0.8));
    // Nearest rank: the 10th of 20 is 10 ms, the 19th is 19 ms.
    assert_eq!(crm.latency_median_ms, Some(10));
    assert_eq!(crm.latency_p95_ms, Some(19));
    assert_eq!(crm.last_attempt_at, Some(NOW - HOUR + 20_000));
    assert_eq!(crm.last_status, Some(503));
    assert_eq!(crm.failing_streak, 4);
    assert_eq!(crm.pending, 1);

    let wiki = &health[1];
    assert!(wiki.paused);
    assert_eq!(wiki.success_rate, Some(0.0));
    assert_eq!(
        wiki.failing_streak, 2,
        "never succeeded: every attempt counts"
    );
    assert_eq!(wiki.last_error, None);

    let new = &health[2];
    assert_eq!(new.subscription, "new");
    assert_eq!(
        (new.attempts_counted, new.success_rate, new.latency_p95_ms),
        (0, None, None)
    );
    assert_eq!(
        (new.last_attempt_at, new.failing_streak, new.pending),
        (None, 0, 0)
    );
}

#[test]
fn nearest_rank_percentiles_of_known_lists() {
    assert_eq!(nearest_rank(&[], 50), None);
    assert_eq!(nearest_rank(&[7], 95), Some(7));
    assert_eq!(nearest_rank(&[1, 2, 3, 4], 50), Some(2));
    assert_eq!(nearest_rank(&[1, 2, 3, 4], 95), Some(4));
    let hundred: Vec<i64> = (1..=100).collect();
    assert_eq!(nearest_rank(&hundred, 95), Some(95));
    assert_eq!(nearest_rank(&hundred, 50), Some(50));
}

/// A delivery of the list fixture: (id, subscription, state, conversation, type,
/// created_at).
type Listed = (i64, String, String, String, String, i64);
type Keep = Box<dyn Fn(&Listed) -> bool>;

/// The fixture of the list tests: 600 deliveries over 3 subscriptions, 4 states, 5
/// conversations and 4 types, created in only 12 distinct milliseconds, so pages cut
/// through runs of equal `created_at`.
struct Spread {
    store: TempStore,
    /// (id, subscription, state, conversation, type, created_at), as inserted.
    rows: Vec<Listed>,
}

fn spread() -> Spread {
    let store = TempStore::new();
    let conn = store.conn();
    let tx = conn.transaction().unwrap();
    let kinds = [
        "conversation.started",
        "conversation.ended",
        "conversation.transcribed",
        "report.generated",
    ];
    let states = ["pending", "delivered", "dead", "cancelled"];
    let mut rows = Vec::new();
    for n in 0..300i64 {
        let conversation = format!("c-{}", n % 5);
        let kind = kinds[(n % 4) as usize];
        let at = NOW - (n % 12) * HOUR;
        let seq = event(&tx, &format!("e-{n}"), kind, Some(&conversation), at);
        for (k, subscription) in ["crm", "wiki", "bot"].iter().enumerate() {
            if (n + k as i64) % 3 == 2 {
                continue;
            }
            let state = states[((n / 2 + k as i64) % 4) as usize];
            let id = delivery(&tx, seq, subscription, state, at);
            rows.push((
                id,
                subscription.to_string(),
                state.to_string(),
                conversation.clone(),
                kind.to_string(),
                at,
            ));
        }
    }
    tx.commit().unwrap();
    Spread { store, rows }
}

/// Every page of `filter`, walked by cursor; asserts each page is newest first.
fn walk(reader: &Reader, filter: &DeliveryFilter) -> Vec<i64> {
    let mut filter = filter.clone();
    let mut ids = Vec::new();
    let mut pages = 0;
    loop {
        let page = reader.deliveries(&filter).unwrap();
        pages += 1;
        assert!(pages < 1000, "the walk does not end");
        let keys: Vec<(i64, i64)> = page.items.iter().map(|r| (r.created_at, r.id)).collect();
        let mut sorted = keys.clone();
        sorted.sort_by(|a, b| b.cmp(a));
        assert_eq!(keys, sorted, "a page is newest first");
        ids.extend(page.items.iter().map(|r| r.id));
        match page.next_cursor {
            Some(cursor) => filter.cursor = Some(cursor),
            None => break,
        }
    }
    ids
}

/// The ids `filter` should list, newest first, computed from the fixture in Rust.
fn expected(spread: &Spread, keep: impl Fn(&Listed) -> bool) -> Vec<i64> {
    let mut rows: Vec<_> = spread.rows.iter().filter(|r| keep(r)).collect();
    rows.sort_by_key(|r| std::cmp::Reverse((r.5, r.0)));
    rows.iter().map(|r| r.0).collect()
}

#[test]
fn pages_of_the_delivery_log_neither_repeat_nor_skip_rows_with_equal_created_at() {
    let spread = spread();
    let reader = spread.store.reader();
    for limit in [1, 7, 50, 200] {
        let ids = walk(
            &reader,
            &DeliveryFilter {
                limit,
                ..DeliveryFilter::default()
            },
        );
        let unique: HashSet<i64> = ids.iter().copied().collect();
        assert_eq!(unique.len(), ids.len(), "no duplicates at limit {limit}");
        assert_eq!(ids, expected(&spread, |_| true), "limit {limit}");
    }
}

#[test]
fn the_limit_is_capped_and_zero_means_the_default() {
    let spread = spread();
    let reader = spread.store.reader();
    let page = reader
        .deliveries(&DeliveryFilter {
            limit: 10_000,
            ..DeliveryFilter::default()
        })
        .unwrap();
    assert_eq!(page.items.len(), MAX_PAGE);
    assert!(page.next_cursor.is_some());
    let page = reader.deliveries(&DeliveryFilter::default()).unwrap();
    assert_eq!(page.items.len(), DEFAULT_PAGE);
}

#[test]
fn filters_combine_and_match_what_rust_computes() {
    let spread = spread();
    let reader = spread.store.reader();
    let s = |v: &str| Some(v.to_string());
    let cases: Vec<(DeliveryFilter, Keep)> = vec![
        (
            DeliveryFilter {
                subscription: s("crm"),
                ..Default::default()
            },
            Box::new(|r| r.1 == "crm"),
        ),
        (
            DeliveryFilter {
                state: s("dead"),
                ..Default::default()
            },
            Box::new(|r| r.2 == "dead"),
        ),
        (
            DeliveryFilter {
                subscription: s("wiki"),
                state: s("pending"),
                ..Default::default()
            },
            Box::new(|r| r.1 == "wiki" && r.2 == "pending"),
        ),
        (
            DeliveryFilter {
                conversation_id: s("c-3"),
                state: s("delivered"),
                ..Default::default()
            },
            Box::new(|r| r.3 == "c-3" && r.2 == "delivered"),
        ),
        (
            DeliveryFilter {
                event_type: s("conversation.ended"),
                subscription: s("bot"),
                ..Default::default()
            },
            Box::new(|r| r.4 == "conversation.ended" && r.1 == "bot"),
        ),
        (
            DeliveryFilter {
                event_type: s("conversation.*"),
                conversation_id: s("c-1"),
                ..Default::default()
            },
            Box::new(|r| r.4.starts_with("conversation.") && r.3 == "c-1"),
        ),
        (
            DeliveryFilter {
                conversation_id: s("*-3"),
                ..Default::default()
            },
            Box::new(|r| r.3 == "c-3"),
        ),
        (
            DeliveryFilter {
                conversation_id: s("c-*"),
                state: s("dead"),
                ..Default::default()
            },
            Box::new(|r| r.2 == "dead"),
        ),
        (
            // Only `*` is a wildcard, as in the type filter.
            DeliveryFilter {
                conversation_id: s("c-?"),
                ..Default::default()
            },
            Box::new(|_| false),
        ),
        (
            DeliveryFilter {
                event_type: s("*.generated"),
                ..Default::default()
            },
            Box::new(|r| r.4 == "report.generated"),
        ),
        (
            DeliveryFilter {
                event_type: s("conversation.?nded"),
                ..Default::default()
            },
            Box::new(|_| false),
        ),
        (
            DeliveryFilter {
                subscription: s("crm"),
                state: s("dead"),
                from_ms: Some(NOW - 5 * HOUR),
                to_ms: Some(NOW - HOUR),
                ..Default::default()
            },
            Box::new(|r| {
                r.1 == "crm" && r.2 == "dead" && r.5 >= NOW - 5 * HOUR && r.5 < NOW - HOUR
            }),
        ),
        (
            DeliveryFilter {
                subscription: s("wiki"),
                state: s("cancelled"),
                conversation_id: s("c-0"),
                event_type: s("conversation.*"),
                from_ms: Some(NOW - 8 * HOUR),
                ..Default::default()
            },
            Box::new(|r| {
                r.1 == "wiki"
                    && r.2 == "cancelled"
                    && r.3 == "c-0"
                    && r.4.starts_with("conversation.")
                    && r.5 >= NOW - 8 * HOUR
            }),
        ),
    ];
    for (mut filter, keep) in cases {
        filter.limit = 9;
        let want = expected(&spread, keep);
        assert_eq!(walk(&reader, &filter), want, "{filter:?}");
        let empty_on_purpose = filter.event_type.as_deref() == Some("conversation.?nded")
            || filter.conversation_id.as_deref() == Some("c-?");
        assert!(!want.is_empty() || empty_on_purpose, "{filter:?}");
    }
}

#[test]
fn bad_filters_and_cursors_are_bad_input() {
    let store = TempStore::new();
    let reader = store.reader();
    for filter in [
        DeliveryFilter {
            state: Some("lost".into()),
            ..Default::default()
        },
        DeliveryFilter {
            cursor: Some("yesterday".into()),
            ..Default::default()
        },
        DeliveryFilter {
            cursor: Some("12.x".into()),
            ..Default::default()
        },
    ] {
        let err = reader.deliveries(&filter).unwrap_err();
        assert!(matches!(err, QueryError::BadInput(_)), "{filter:?}: {err}");
    }
    assert!(matches!(
        reader.rejections(Some("x"), 5),
        Err(QueryError::BadInput(_))
    ));
    assert!(matches!(
        reader.audit_log(Some("-"), 5),
        Err(QueryError::BadInput(_))
    ));
}

#[test]
fn a_delivery_shows_its_event_and_every_attempt_or_marks_a_dropped_body() {
    let store = TempStore::new();
    let conn = store.conn();
    let seq = event(&conn, "e-1", "conversation.ended", Some("c-9"), NOW - HOUR);
    let id = delivery(&conn, seq, "crm", "dead", NOW - HOUR);
    attempt(&conn, id, NOW - 50 * 60_000, 30, None);
    attempt(&conn, id, NOW - 40 * 60_000, 40, Some(502));
    conn.execute(
        "UPDATE attempts SET response_snippet = 'bad gateway' WHERE status = 502",
        [],
    )
    .unwrap();
    let reader = store.reader();

    let detail = reader.delivery(id).unwrap().unwrap();
    assert_eq!(detail.delivery.state, "dead");
    assert_eq!(detail.delivery.subscription, "crm");
    assert_eq!(detail.event.id, "e-1");
    assert_eq!(detail.event.conversation_id.as_deref(), Some("c-9"));
    assert_eq!(detail.event.project_id.as_deref(), Some("p-1"));
    assert_eq!(detail.event.body.as_deref(), Some(r#"{"id":"e-1"}"#));
    assert_eq!(detail.event.payload_dropped_at, None);
    let attempts: Vec<(u32, Option<u16>, i64)> = detail
        .attempts
        .iter()
        .map(|a| (a.attempt, a.status, a.duration_ms))
        .collect();
    assert_eq!(attempts, [(1, None, 30), (2, Some(502), 40)]);
    assert_eq!(
        detail.attempts[0].error.as_deref(),
        Some("connection refused")
    );
    assert_eq!(
        detail.attempts[1].response_snippet.as_deref(),
        Some("bad gateway")
    );

    conn.execute(
        "UPDATE events SET body = '', payload_dropped_at = ?1 WHERE seq = ?2",
        params![NOW, seq],
    )
    .unwrap();
    let detail = reader.delivery(id).unwrap().unwrap();
    assert_eq!(
        (detail.event.body, detail.event.payload_dropped_at),
        (None, Some(NOW))
    );

    assert_eq!(reader.delivery(id + 1).unwrap(), None);
    // The API returns it as JSON.
    let json = serde_json::to_value(reader.delivery(id).unwrap()).unwrap();
    assert_eq!(json["event"]["body"], serde_json::Value::Null);
    assert_eq!(json["attempts"][1]["status"], 502);
}

#[test]
fn an_event_and_its_delivery_to_one_subscription_are_found_by_id() {
    let store = TempStore::new();
    let conn = store.conn();
    let seq = event(&conn, "e-1", "conversation.ended", Some("c-9"), NOW - HOUR);
    let other = event(&conn, "e-2", "conversation.ended", Some("c-9"), NOW - HOUR);
    delivery(&conn, seq, "crm", "pending", NOW - HOUR);
    let wiki = delivery(&conn, seq, "wiki", "pending", NOW - HOUR);
    delivery(&conn, other, "wiki", "pending", NOW - HOUR);
    let reader = store.reader();

    let found = reader.event("e-1").unwrap().unwrap();
    assert_eq!(
        (
            found.seq,
            found.event_type.as_str(),
            found.conversation_id.as_deref()
        ),
        (seq, "conversation.ended", Some("c-9"))
    );
    assert_eq!(found.body.as_deref(), Some(r#"{"id":"e-1"}"#));
    assert_eq!(reader.event("e-3").unwrap(), None);

    assert_eq!(reader.delivery_of("e-1", "wiki").unwrap(), Some(wiki));
    assert_eq!(reader.delivery_of("e-1", "other").unwrap(), None);
    assert_eq!(reader.delivery_of("e-3", "wiki").unwrap(), None);
}

#[test]
fn rejections_and_the_audit_log_page_newest_first_without_gaps() {
    let store = TempStore::new();
    let conn = store.conn();
    for n in 0..23 {
        conn.execute(
            "INSERT INTO rejections (at, source, line, reason, snippet)
             VALUES (?1, 'spool:a.ndjson', ?2, 'missing \"type\"', '{}')",
            params![NOW - n % 3, n],
        )
        .unwrap();
        conn.execute(
            "INSERT INTO audit_log (at, actor, action, detail, result)
             VALUES (?1, 'admin', 'delivery.retry', ?2, 'applied')",
            params![NOW, format!("delivery {n}")],
        )
        .unwrap();
    }
    let reader = store.reader();

    let mut lines = Vec::new();
    let mut cursor: Option<String> = None;
    loop {
        let page = reader.rejections(cursor.as_deref(), 5).unwrap();
        assert!(page.items.len() <= 5);
        lines.extend(page.items.iter().map(|r| r.line));
        cursor = page.next_cursor;
        if cursor.is_none() {
            break;
        }
    }
    let want: Vec<Option<u64>> = (0..23).rev().map(Some).collect();
    assert_eq!(lines, want);

    let mut details = Vec::new();
    let mut cursor: Option<String> = None;
    loop {
        let page = reader.audit_log(cursor.as_deref(), 10).unwrap();
        details.extend(page.items.into_iter().map(|r| r.detail));
        cursor = page.next_cursor;
        if cursor.is_none() {
            break;
        }
    }
    let want: Vec<String> = (0..23).rev().map(|n| format!("delivery {n}")).collect();
    assert_eq!(details, want);
}

#[test]
fn type_patterns_escape_everything_but_the_star() {
    assert_eq!(
        TypeFilter::parse("conversation.ended"),
        TypeFilter::Exact("conversation.ended".into())
    );
    assert_eq!(
        TypeFilter::parse("a?[b*"),
        TypeFilter::Glob("a[?][[]b*".into())
    );
}

/// 100,000 deliveries, and the plans of the list queries over them: each reads through
/// an index and none scans `deliveries` whole. Plans, not timings, so the test holds on
/// any machine.
#[test]
fn list_queries_use_indexes_over_100000_deliveries() {
    let store = TempStore::new();
    let conn = store.conn();
    conn.execute_batch("PRAGMA synchronous = OFF").unwrap();
    let tx = conn.transaction().unwrap();
    {
        let mut insert_event = tx
            .prepare(
                "INSERT INTO events (id, type, conversation_id, received_at, source, body)
                 VALUES (?1, ?2, ?3, ?4, 'seed', '{}')",
            )
            .unwrap();
        let mut insert_delivery = tx
            .prepare(
                "INSERT INTO deliveries (event_seq, event_id, subscription, state,
                                         created_at, updated_at, event_type)
                 VALUES (?1, ?2, ?3, ?4, ?5, ?5, ?6)",
            )
            .unwrap();
        let states = ["pending", "delivered", "dead", "cancelled"];
        for n in 0..50_000i64 {
            let id = format!("e-{n}");
            let kind = if n % 2 == 0 {
                "conversation.ended"
            } else {
                "report.generated"
            };
            insert_event
                .execute(params![id, kind, format!("c-{}", n % 500), NOW + n / 10])
                .unwrap();
            let seq = tx.last_insert_rowid();
            for subscription in ["crm", "wiki"] {
                let state = states[(n % 4) as usize];
                insert_delivery
                    .execute(params![seq, id, subscription, state, NOW + n / 10, kind])
                    .unwrap();
            }
        }
    }
    tx.commit().unwrap();
    let count: i64 = conn
        .query_row("SELECT COUNT(*) FROM deliveries", [], |row| row.get(0))
        .unwrap();
    assert_eq!(count, 100_000);

    let s = |v: &str| Some(v.to_string());
    let cursor = s(&format!("{}.{}", NOW + 2_000, 40_000));
    let filters = [
        DeliveryFilter::default(),
        DeliveryFilter {
            cursor: cursor.clone(),
            ..Default::default()
        },
        DeliveryFilter {
            subscription: s("crm"),
            cursor: cursor.clone(),
            ..Default::default()
        },
        DeliveryFilter {
            state: s("dead"),
            ..Default::default()
        },
        DeliveryFilter {
            subscription: s("crm"),
            state: s("dead"),
            cursor,
            ..Default::default()
        },
        DeliveryFilter {
            from_ms: Some(NOW + 100),
            to_ms: Some(NOW + 200),
            ..Default::default()
        },
        DeliveryFilter {
            conversation_id: s("c-7"),
            ..Default::default()
        },
        DeliveryFilter {
            conversation_id: s("c-6"),
            subscription: s("wiki"),
            state: s("dead"),
            ..Default::default()
        },
        DeliveryFilter {
            event_type: s("report.generated"),
            state: s("delivered"),
            ..Default::default()
        },
        DeliveryFilter {
            event_type: s("conversation.*"),
            ..Default::default()
        },
        DeliveryFilter {
            event_id: s("e-77"),
            ..Default::default()
        },
        DeliveryFilter {
            conversation_id: s("c-*"),
            ..Default::default()
        },
    ];
    for filter in &filters {
        let (sql, values) = delivery_list_sql(filter, DEFAULT_PAGE, Dialect::Sqlite).unwrap();
        let plan = plan(&conn, &sql, values);
        let full_scan = plan.split("; ").any(|step| {
            step == "SCAN d"
                || step == "SCAN e"
                || step.starts_with("SCAN d USING") && filter.subscription.is_some()
        });
        assert!(!full_scan, "{filter:?}\nplan: {plan}");
        assert!(plan.contains("INDEX"), "{filter:?}\nplan: {plan}");
        let events_first = filter.event_id.is_some()
            || filter
                .conversation_id
                .as_deref()
                .is_some_and(|c| !c.contains('*'));
        if events_first {
            // Each event's deliveries through UNIQUE (event_seq, subscription), not a
            // scan of an index on some delivery column per event.
            assert!(
                plan.contains("SEARCH d USING INDEX sqlite_autoindex_deliveries_1 (event_seq=?"),
                "{filter:?}\nplan: {plan}"
            );
        } else {
            // Walked in order through the index: a page reads a page of rows.
            assert!(!plan.contains("TEMP B-TREE"), "{filter:?}\nplan: {plan}");
        }
        let page = store.reader().deliveries(filter).unwrap();
        assert!(!page.items.is_empty(), "{filter:?} finds rows");
    }
    for (filter, index) in [
        (&filters[0], "deliveries_created"),
        (&filters[2], "deliveries_subscription "),
        (&filters[3], "deliveries_state "),
        (&filters[4], "deliveries_subscription_state"),
        (&filters[6], "events_conversation"),
        (&filters[8], "deliveries_"),
        (&filters[9], "deliveries_created"),
    ] {
        let (sql, values) = delivery_list_sql(filter, DEFAULT_PAGE, Dialect::Sqlite).unwrap();
        let plan = plan(&conn, &sql, values);
        assert!(
            plan.contains(index),
            "{filter:?} uses {index}\nplan: {plan}"
        );
    }

    // The overview and health questions read through indexes too.
    for (sql, index) in [
        (
            format!(
                "SELECT a.id FROM attempts a JOIN deliveries d ON d.id = a.delivery_id
                 WHERE {FAILED} ORDER BY a.started_at DESC, a.id DESC LIMIT 10"
            ),
            "attempts_failed",
        ),
        (
            "SELECT MIN(created_at) FROM deliveries WHERE state = 'pending'".to_string(),
            "deliveries_",
        ),
        (
            "SELECT duration_ms FROM attempts WHERE subscription = 'crm' AND started_at >= 0
             ORDER BY started_at DESC, id DESC LIMIT 10"
                .to_string(),
            "attempts_subscription",
        ),
        (
            "SELECT COUNT(*) FROM deliveries WHERE state = 'pending' AND subscription = 'crm'"
                .to_string(),
            "deliveries_",
        ),
    ] {
        let plan = plan(&conn, &sql, Vec::new());
        assert!(plan.contains(index), "{sql}\nplan: {plan}");
        assert!(
            !plan.split("; ").any(|s| s == "SCAN d"
                || s == "SCAN a"
                || s == "SCAN deliveries"
                || s == "SCAN attempts"),
            "{sql}\nplan: {plan}"
        );
    }
}

#[test]
fn the_queue_gauge_agrees_with_the_overview_and_reads_only_an_index() {
    let store = TempStore::new();
    assert_eq!(
        store.reader().queue(NOW).unwrap(),
        Queue {
            depth: 0,
            oldest_pending_age_ms: None
        }
    );
    let conn = store.conn();
    let seq = event(&conn, "e-1", "conversation.started", Some("c-1"), NOW);
    delivery(&conn, seq, "crm", "pending", NOW - 3 * HOUR);
    delivery(&conn, seq, "wiki", "pending", NOW - HOUR);
    delivery(&conn, seq, "old", "delivered", NOW - 9 * HOUR);
    delivery(&conn, seq, "gone", "dead", NOW - 9 * HOUR);

    let queue = store.reader().queue(NOW).unwrap();
    assert_eq!(
        queue,
        Queue {
            depth: 2,
            oldest_pending_age_ms: Some(3 * HOUR)
        }
    );
    let overview = store.reader().overview(NOW, 0).unwrap();
    assert_eq!(
        (queue.depth, queue.oldest_pending_age_ms),
        (overview.queue_depth, overview.oldest_pending_age_ms)
    );
    let plan = plan(&conn, QUEUE_SQL, Vec::new());
    assert!(
        plan.contains("USING COVERING INDEX deliveries_state"),
        "plan: {plan}"
    );
}
