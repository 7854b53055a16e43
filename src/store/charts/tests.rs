//! The charts' history against a real SQLite file: attempts recorded through the
//! writer's own SQL (`writes::record`), read back as charts, trends, rates and groups.

use crate::store::db::Db;

use super::super::rollup::{self, Histogram, HOUR, MINUTE};
use super::super::test_support::{delivery, event, plan, TempStore};
use super::super::writes::record;
use super::super::{AttemptRecord, NextStep};
use super::*;

/// A fixed "now": 2026-11-25 14:30:20 UTC.
const NOW: i64 = 1_795_617_020_000;

fn attempt(
    id: i64,
    sub: &str,
    at: i64,
    ms: i64,
    status: Option<u16>,
    next: NextStep,
) -> AttemptRecord {
    AttemptRecord {
        delivery_id: id,
        subscription: sub.into(),
        attempt: 1,
        started_at_ms: at,
        duration_ms: ms,
        status,
        error: status.is_none().then(|| "connection refused".to_string()),
        response_snippet: None,
        next,
        shaping: None,
    }
}

fn pending(conn: &Db, n: usize, sub: &str, at: i64) -> Vec<i64> {
    (0..n)
        .map(|i| {
            let seq = event(
                conn,
                &format!("evt_{sub}_{i}_{at}"),
                "conversation.ended",
                Some("c-1"),
                at,
            );
            delivery(conn, seq, sub, "pending", at)
        })
        .collect()
}

#[test]
fn a_histogram_survives_its_blob_and_gives_bucket_bounds_capped_at_the_slowest() {
    let mut h = Histogram::default();
    for ms in [3, 3, 3, 90, 700] {
        h.add(ms);
    }
    let back = Histogram::from_blob(&h.to_blob());
    assert_eq!(back, h);
    assert_eq!(back.percentile(50, 700), Some(3));
    assert_eq!(back.percentile(95, 700), Some(700));
    // 90 ms lies in the bucket up to 100 ms; capped by the slowest seen.
    assert_eq!(back.percentile(80, 95), Some(95));
    assert_eq!(Histogram::default().percentile(50, 0), None);
    // A short or odd blob gives what it holds, never a panic.
    assert_eq!(Histogram::from_blob(&[1, 0, 0]).count(), 0);
    assert_eq!(Histogram::from_blob(&[2, 0, 0, 0]).count(), 2);
}

#[test]
fn retries_count_against_the_attempt_rate_but_not_the_delivery_rate() {
    let store = TempStore::new();
    let conn = store.conn();
    let ids = pending(&conn, 2, "crm", NOW - 10 * MINUTE);
    let at = NOW - 5 * MINUTE;
    // Delivery 1: two failures then a success. Delivery 2: fails for good.
    let records = vec![
        attempt(ids[0], "crm", at, 40, Some(503), NextStep::RetryAt(at + 1)),
        attempt(
            ids[0],
            "crm",
            at + 1000,
            50,
            None,
            NextStep::RetryAt(at + 2),
        ),
        attempt(ids[0], "crm", at + 2000, 20, Some(200), NextStep::Delivered),
        attempt(ids[1], "crm", at + 3000, 900, Some(500), NextStep::Dead),
    ];
    record(&conn, &records).unwrap();

    let reader = store.reader();
    let rates = reader.rates(Some("crm"), NOW).unwrap();
    assert_eq!(rates.attempts, 4);
    assert_eq!(rates.attempt_success_rate, Some(0.25));
    assert_eq!(rates.deliveries_finished, 2);
    assert_eq!(rates.delivery_success_rate, Some(0.5));
    assert_eq!(reader.rates(None, NOW).unwrap(), rates, "the sum row");
    assert_eq!(reader.rates(Some("other"), NOW).unwrap().attempts, 0);

    let health = reader.subscription_health(&["crm".into()], NOW).unwrap();
    assert_eq!(health[0].delivery_success_rate, Some(0.5));
    assert_eq!(health[0].success_rate, Some(0.25));

    let charts = reader.charts(Some("crm"), ChartRange::Hour, NOW).unwrap();
    assert_eq!(charts.points.len(), 60);
    assert_eq!(charts.step_ms, MINUTE);
    assert!(charts.queue.is_none());
    let point = charts
        .points
        .iter()
        .find(|p| p.attempts > 0)
        .expect("a point with the attempts");
    assert_eq!(point.at, at.div_euclid(MINUTE) * MINUTE);
    assert_eq!(
        (
            point.delivered,
            point.failed_attempts,
            point.dead,
            point.attempts
        ),
        (1, 3, 1, 4)
    );
    assert_eq!(point.latency_p50_ms, Some(40));
    assert_eq!(point.latency_p95_ms, Some(900));
    let total: u64 = charts.points.iter().map(|p| p.attempts).sum();
    assert_eq!(total, 4, "no attempt is counted twice");
}

#[test]
fn an_attempt_on_a_delivery_cancelled_meanwhile_ends_nothing() {
    let store = TempStore::new();
    let conn = store.conn();
    let ids = pending(&conn, 1, "crm", NOW - MINUTE);
    conn.execute("UPDATE deliveries SET state = 'cancelled'", [])
        .unwrap();
    record(
        &conn,
        &[attempt(
            ids[0],
            "crm",
            NOW - 1000,
            5,
            Some(200),
            NextStep::Delivered,
        )],
    )
    .unwrap();
    let rates = store.reader().rates(Some("crm"), NOW).unwrap();
    assert_eq!((rates.attempts, rates.deliveries_finished), (1, 0));
    assert_eq!(rates.delivery_success_rate, None);
}

#[test]
fn every_range_has_its_points_and_an_empty_history_gives_zeros() {
    let store = TempStore::new();
    let reader = store.reader();
    for (range, points, step) in [
        ("1h", 60, MINUTE),
        ("24h", 96, 15 * MINUTE),
        ("7d", 168, HOUR),
        ("30d", 120, 6 * HOUR),
    ] {
        let charts = reader
            .charts(None, ChartRange::parse(range).unwrap(), NOW)
            .unwrap();
        assert_eq!(
            (charts.points.len(), charts.step_ms),
            (points, step),
            "{range}"
        );
        assert!(charts
            .points
            .iter()
            .all(|p| p.attempts == 0 && p.latency_p95_ms.is_none()));
        let queue = charts.queue.expect("the overview has the queue");
        assert_eq!(queue.len(), points);
        assert!(
            queue.iter().all(|q| q.depth.is_none()),
            "unsampled is unknown, not 0"
        );
        assert!(charts.from_ms <= NOW && NOW < charts.to_ms, "{range}");
    }
    let err = ChartRange::parse("2w").unwrap_err().to_string();
    assert!(err.contains("1h, 24h, 7d or 30d"), "{err}");
}

#[test]
fn the_queue_is_sampled_once_a_minute_and_the_hour_keeps_the_worst() {
    let store = TempStore::new();
    let conn = store.conn();
    pending(&conn, 3, "crm", NOW - 2 * MINUTE);
    rollup::sample_queue(&conn, NOW).unwrap();
    pending(&conn, 2, "crm", NOW - MINUTE);
    // Same minute: not sampled again.
    rollup::sample_queue(&conn, NOW + 1000).unwrap();
    let charts = store.reader().charts(None, ChartRange::Hour, NOW).unwrap();
    let queue = charts.queue.unwrap();
    let sampled: Vec<_> = queue.iter().filter(|q| q.depth.is_some()).collect();
    assert_eq!(sampled.len(), 1);
    assert_eq!(sampled[0].depth, Some(3));
    assert_eq!(sampled[0].oldest_pending_age_ms, Some(2 * MINUTE));
    // The next minute sees five; the hour row keeps the most.
    rollup::sample_queue(&conn, NOW + MINUTE).unwrap();
    let week = store
        .reader()
        .charts(None, ChartRange::Week, NOW + MINUTE)
        .unwrap();
    let hour = week
        .queue
        .unwrap()
        .into_iter()
        .rev()
        .find(|q| q.depth.is_some())
        .unwrap();
    assert_eq!(hour.depth, Some(5));
}

#[test]
fn failures_are_grouped_by_subscription_and_reason_so_a_noisy_one_does_not_drown_the_rest() {
    let store = TempStore::new();
    let conn = store.conn();
    let noisy = pending(&conn, 1, "noisy", NOW - HOUR);
    let quiet = pending(&conn, 1, "quiet", NOW - HOUR);
    let mut records: Vec<AttemptRecord> = (0..300)
        .map(|i| {
            attempt(
                noisy[0],
                "noisy",
                NOW - 50 * MINUTE + i * 1000,
                5,
                Some(503),
                NextStep::RetryAt(NOW),
            )
        })
        .collect();
    records.push(attempt(
        quiet[0],
        "quiet",
        NOW - 55 * MINUTE,
        5,
        None,
        NextStep::RetryAt(NOW),
    ));
    records.push(attempt(
        quiet[0],
        "quiet",
        NOW - 54 * MINUTE,
        5,
        None,
        NextStep::RetryAt(NOW),
    ));
    records.push(attempt(
        noisy[0],
        "noisy",
        NOW - 40 * MINUTE,
        5,
        Some(404),
        NextStep::RetryAt(NOW),
    ));
    // Older than a day: not in the groups.
    records.push(attempt(
        quiet[0],
        "quiet",
        NOW - 25 * HOUR,
        5,
        Some(500),
        NextStep::RetryAt(NOW),
    ));
    record(&conn, &records).unwrap();

    let groups = store.reader().failure_groups(NOW, 20).unwrap();
    let summary: Vec<(&str, &str, u64)> = groups
        .iter()
        .map(|g| (g.subscription.as_str(), g.reason.as_str(), g.count))
        .collect();
    assert_eq!(
        summary,
        [
            ("noisy", "HTTP 404", 1),
            ("noisy", "HTTP 503", 300),
            ("quiet", "connection refused", 2)
        ]
    );
    let quiet_group = &groups[2];
    assert_eq!(quiet_group.first_at, NOW - 55 * MINUTE);
    assert_eq!(quiet_group.last_at, NOW - 54 * MINUTE);
    assert_eq!(quiet_group.last_delivery_id, quiet[0]);
    assert_eq!(groups[1].first_at, NOW - 50 * MINUTE);
    assert_eq!(groups[1].last_at, NOW - 50 * MINUTE + 299_000);
}

#[test]
fn trends_hold_24_hours_of_each_subscription() {
    let store = TempStore::new();
    let conn = store.conn();
    let ids = pending(&conn, 2, "crm", NOW - 3 * HOUR);
    record(
        &conn,
        &[
            attempt(
                ids[0],
                "crm",
                NOW - 2 * HOUR,
                5,
                Some(200),
                NextStep::Delivered,
            ),
            attempt(
                ids[1],
                "crm",
                NOW - 1000,
                5,
                Some(500),
                NextStep::RetryAt(NOW),
            ),
        ],
    )
    .unwrap();
    let trends = store
        .reader()
        .trends(&["crm".into(), "none".into()], NOW)
        .unwrap();
    assert_eq!(trends[0].delivered.len(), 24);
    assert_eq!(trends[0].delivered[21], 1);
    assert_eq!(trends[0].failed_attempts[23], 1);
    assert_eq!(trends[0].delivered.iter().sum::<u64>(), 1);
    assert_eq!(trends[1].delivered, vec![0; 24]);
}

#[test]
fn minute_rows_go_after_two_days_and_hour_rows_with_retention() {
    let store = TempStore::new();
    let conn = store.conn();
    let ids = pending(&conn, 2, "crm", NOW - 400 * 24 * HOUR);
    record(
        &conn,
        &[
            attempt(
                ids[0],
                "crm",
                NOW - 3 * 24 * HOUR,
                5,
                Some(200),
                NextStep::Delivered,
            ),
            attempt(
                ids[1],
                "crm",
                NOW - 60 * 24 * HOUR,
                5,
                Some(200),
                NextStep::Delivered,
            ),
        ],
    )
    .unwrap();
    let count = |span: i64| -> i64 {
        conn.query_row(
            "SELECT COUNT(*) FROM delivery_rollups WHERE span = ?1",
            [span],
            |row| row.get(0),
        )
        .unwrap()
    };
    assert_eq!((count(MINUTE), count(HOUR)), (4, 4));
    // Retention keeps deliveries 90 days: hour rows stay, minute rows go.
    rollup::prune(&conn, NOW - 90 * 24 * HOUR, NOW, 200).unwrap();
    assert_eq!((count(MINUTE), count(HOUR)), (0, 4));
    // Retention of 7 days: hour rows stay 31 days for the 30 d chart, no longer.
    rollup::prune(&conn, NOW - 7 * 24 * HOUR, NOW, 200).unwrap();
    assert_eq!(count(HOUR), 2);
}

#[test]
fn a_chart_reads_only_its_own_rows() {
    let store = TempStore::new();
    let conn = store.conn();
    let sql = "SELECT start, attempts_ok, attempts_failed, delivered, dead, latency_max_ms, latency
               FROM delivery_rollups
               WHERE span = ?1 AND subscription = ?2 AND start >= ?3 AND start < ?4";
    let text = plan(
        &conn,
        sql,
        vec![
            HOUR.into(),
            "crm".to_string().into(),
            0i64.into(),
            NOW.into(),
        ],
    );
    assert!(
        text.contains("SEARCH delivery_rollups USING PRIMARY KEY"),
        "{text}"
    );
    let prune = "SELECT span, subscription, start FROM delivery_rollups
                 WHERE span = ?1 AND start < ?2 ORDER BY start LIMIT ?3";
    let text = plan(&conn, prune, vec![HOUR.into(), NOW.into(), 10i64.into()]);
    assert!(text.contains("delivery_rollups_age"), "{text}");
}

#[test]
fn attempts_are_recorded_even_when_the_charts_history_cannot_be_written() {
    let store = TempStore::new();
    let conn = store.conn();
    let ids = pending(&conn, 1, "crm", NOW - MINUTE);
    conn.execute_batch("DROP TABLE delivery_rollups").unwrap();
    let finished = record(
        &conn,
        &[attempt(
            ids[0],
            "crm",
            NOW - 1000,
            5,
            Some(200),
            NextStep::Delivered,
        )],
    )
    .unwrap();
    assert_eq!(finished, [true]);
    let state: String = conn
        .query_row("SELECT state FROM deliveries", [], |row| row.get(0))
        .unwrap();
    assert_eq!(state, "delivered");
    let attempts: i64 = conn
        .query_row("SELECT count(*) FROM attempts", [], |row| row.get(0))
        .unwrap();
    assert_eq!(attempts, 1);
}

#[test]
fn a_subscription_failing_in_many_ways_takes_at_most_five_groups() {
    let store = TempStore::new();
    let conn = store.conn();
    let noisy = pending(&conn, 1, "noisy", NOW - HOUR);
    let quiet = pending(&conn, 1, "quiet", NOW - HOUR);
    let mut records = vec![attempt(
        quiet[0],
        "quiet",
        NOW - 50 * MINUTE,
        5,
        Some(500),
        NextStep::RetryAt(NOW),
    )];
    // Thirty reasons, all newer than quiet's one failure.
    records.extend((0..30).map(|i| {
        attempt(
            noisy[0],
            "noisy",
            NOW - 40 * MINUTE + i * 1000,
            5,
            Some(400 + i as u16),
            NextStep::RetryAt(NOW),
        )
    }));
    record(&conn, &records).unwrap();
    let groups = store.reader().failure_groups(NOW, 20).unwrap();
    let noisy_groups = groups.iter().filter(|g| g.subscription == "noisy").count();
    assert_eq!(noisy_groups, 5, "{groups:?}");
    assert!(
        groups.iter().any(|g| g.subscription == "quiet"),
        "{groups:?}"
    );
}

#[test]
fn a_bucket_kept_by_several_nodes_reads_as_their_sum() {
    let store = TempStore::new();
    let conn = store.conn();
    let minute = (NOW - 5 * MINUTE).div_euclid(MINUTE) * MINUTE;
    let hour = NOW.div_euclid(HOUR) * HOUR;
    // Node a: two fast successes; node b: one slow failure that ended the delivery dead.
    let rows = [
        ("a", 2, 0, 2, 0, 30, [30, 30].as_slice()),
        ("b", 0, 1, 0, 1, 900, [900].as_slice()),
    ];
    for (node, ok, failed, delivered, dead, max_ms, latencies) in rows {
        let mut histogram = Histogram::default();
        for ms in latencies {
            histogram.add(*ms);
        }
        for (span, start) in [(MINUTE, minute), (HOUR, hour)] {
            conn.execute(
                "INSERT INTO delivery_rollups (span, subscription, start, attempts_ok,
                     attempts_failed, delivered, dead, latency_max_ms, latency, node)
                 VALUES (?1, 'crm', ?2, ?3, ?4, ?5, ?6, ?7, ?8, ?9)",
                crate::store::db::params![
                    span,
                    start,
                    ok,
                    failed,
                    delivered,
                    dead,
                    max_ms,
                    histogram.to_blob(),
                    node
                ],
            )
            .unwrap();
        }
    }
    let reader = store.reader();
    let charts = reader.charts(Some("crm"), ChartRange::Hour, NOW).unwrap();
    let point = charts.points.iter().find(|p| p.at == minute).unwrap();
    assert_eq!(
        (
            point.attempts,
            point.delivered,
            point.failed_attempts,
            point.dead
        ),
        (3, 2, 1, 1)
    );
    assert_eq!(point.latency_p50_ms, Some(30));
    assert_eq!(
        point.latency_p95_ms,
        Some(900),
        "node b's slow attempt counts"
    );
    let rates = reader.rates(Some("crm"), NOW).unwrap();
    assert_eq!((rates.attempts, rates.deliveries_finished), (3, 3));
    let trend = &reader.trends(&["crm".into()], NOW).unwrap()[0];
    assert_eq!(trend.delivered.iter().sum::<u64>(), 2);
    assert_eq!(trend.failed_attempts.iter().sum::<u64>(), 1);
}
