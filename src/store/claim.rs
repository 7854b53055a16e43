//! The claim: leasing due deliveries for the scheduler, per subscription, in the line the
//! subscription asks for. A lease moves `next_attempt_at` to the lease's end, so a leased
//! delivery is not due again unless its attempt is never recorded (a crash; see
//! `recover_leases`). With `ordering = "conversation"`, only the head of each
//! conversation's line may go: a delivery waits while an earlier one of its conversation
//! is still pending (leased, or waiting for a retry), or dead under `on_dead = "hold"`.
//!
//! On a store several nodes share (PostgreSQL) the claim also locks the rows it takes,
//! skipping rows another node's claim holds, so no two nodes lease one delivery; it leaves
//! paused subscriptions alone whichever node paused them; and it keeps the cluster-wide
//! limits of `cluster.rs`.

mod cluster;

use crate::store::db::{params, Db, Dialect, Statement, ToValue};

use super::{ClaimRequest, ClaimResult, Claimed, Line};

/// How a claim's transaction runs on PostgreSQL. Not durable: a claim lost in a server
/// crash leaves its deliveries pending, to be claimed again. A claim waits for other
/// nodes' claims of its endpoints (`cluster.rs`); one stalled while holding such a lock
/// fails this claim, not the node. And no sorting: a claim reads the first few rows of
/// the due index in order, but planned from statistics taken while the queue was empty
/// (as it is between bursts) PostgreSQL would rather sort every due row of a backlog.
pub(super) const SETTINGS: &str = "SET LOCAL synchronous_commit = off; \
     SET LOCAL lock_timeout = '2s'; SET LOCAL enable_sort = off";

/// On a shared store: what another node may have switched off since this one looked.
/// Both are tests of the claimed subscription (`?1`), not of each row, so PostgreSQL
/// checks them once; written as a join on `d.subscription` it guessed one row would
/// survive the join and sorted every due row of a backlog before taking the first few.
const SHARED_PAUSES: &str = "AND NOT EXISTS (
        SELECT 1 FROM subscription_state s WHERE s.subscription = ?1 AND s.paused = 1)
    AND NOT EXISTS (SELECT 1 FROM settings g WHERE g.key = 'delivery_paused' AND g.value = '1')";

/// The condition that a delivery `d` is at the head of its conversation's line. The
/// `IN` term is written exactly as in the `deliveries_line` index, so SQLite uses it.
const HEAD_CONTINUE: &str = "AND NOT EXISTS (
    SELECT 1 FROM deliveries p
    WHERE p.subscription = d.subscription AND p.conversation_id = d.conversation_id
      AND p.event_seq < d.event_seq AND p.state IN ('pending', 'dead') AND p.state = 'pending')";
const HEAD_HOLD: &str = "AND NOT EXISTS (
    SELECT 1 FROM deliveries p
    WHERE p.subscription = d.subscription AND p.conversation_id = d.conversation_id
      AND p.event_seq < d.event_seq AND p.state IN ('pending', 'dead'))";

fn head_condition(line: Line) -> &'static str {
    match line {
        Line::Any => "",
        Line::Conversation { hold_dead: false } => HEAD_CONTINUE,
        Line::Conversation { hold_dead: true } => HEAD_HOLD,
    }
}

/// The due deliveries of `?1` at `?2`, oldest first, at most `limit`. On SQLite a
/// SELECT, leased by [`lease`] after. On PostgreSQL one statement that locks them
/// (skipping rows another node's claim holds), leases them until `?3` and returns them
/// with when each was due, for the order (rows of an UPDATE come back in no order).
///
/// On PostgreSQL the limit is part of the text, not a parameter: a statement run five
/// times may be planned once for any parameters, and with an unknown limit the planner
/// expects a tenth of the due rows to be read, which favours sorting them all over
/// reading the first few from the index in order. SQLite takes it as `?3`, so its
/// statement cache holds one text, not one per limit.
fn due_sql(line: Line, dialect: Dialect, limit: usize) -> String {
    let head = head_condition(line);
    match dialect {
        Dialect::Sqlite => format!(
            "SELECT d.id, d.attempts, d.event_id, e.body
             FROM deliveries d JOIN events e ON e.seq = d.event_seq
             WHERE d.state = 'pending' AND d.subscription = ?1 AND d.next_attempt_at <= ?2 {head}
             ORDER BY d.next_attempt_at, d.id
             LIMIT ?3"
        ),
        Dialect::Postgres => format!(
            "WITH due AS (
                 SELECT d.id, d.next_attempt_at FROM deliveries d
                 WHERE d.state = 'pending' AND d.subscription = ?1 AND d.next_attempt_at <= ?2
                   {head} {SHARED_PAUSES}
                 ORDER BY d.next_attempt_at, d.id
                 LIMIT {limit} FOR UPDATE OF d SKIP LOCKED)
             UPDATE deliveries d SET leased_at = ?2, next_attempt_at = ?3
             FROM due, events e
             WHERE d.id = due.id AND e.seq = d.event_seq
             RETURNING d.id, d.attempts, d.event_id, e.body, due.next_attempt_at"
        ),
    }
}

/// Takes up to `limit` due deliveries of `request` and leases them until
/// `lease_until_ms`, oldest first.
fn take_due(
    tx: &Db,
    request: &ClaimRequest,
    limit: usize,
    now_ms: i64,
    lease_until_ms: i64,
) -> crate::store::db::Result<Vec<Claimed>> {
    let sql = due_sql(request.line, tx.dialect(), limit);
    let claimed = |row: &crate::store::db::Row<'_>| {
        Ok(Claimed {
            delivery_id: row.get(0)?,
            attempt: row.get::<u32>(1)? + 1,
            event_id: row.get(2)?,
            body: row.get(3)?,
            subscription: request.subscription.clone(),
        })
    };
    if tx.dialect() == Dialect::Postgres {
        let mut rows: Vec<(i64, Claimed)> = tx
            .prepare_cached(&sql)?
            .query_map(
                params![request.subscription, now_ms, lease_until_ms],
                |row| Ok((row.get(4)?, claimed(row)?)),
            )?
            .collect::<crate::store::db::Result<_>>()?;
        rows.sort_by_key(|(due, c)| (*due, c.delivery_id));
        return Ok(rows.into_iter().map(|(_, c)| c).collect());
    }
    let limit = limit as i64;
    let rows: Vec<Claimed> = tx
        .prepare_cached(&sql)?
        .query_map(params![request.subscription, now_ms, limit], claimed)?
        .collect::<crate::store::db::Result<_>>()?;
    lease(tx, &rows, now_ms, lease_until_ms)?;
    Ok(rows)
}

/// When the subscription's next claimable delivery falls due. This node's leased ones
/// are left out: their attempt's outcome tells the scheduler what follows. On a shared
/// store a lease may be another node's, which may die: there a lease counts as due when
/// it ends.
fn next_due_statement(tx: &Db, line: Line) -> crate::store::db::Result<Statement<'_>> {
    let (leases, shared) = match tx.dialect() {
        Dialect::Sqlite => ("AND d.leased_at IS NULL", ""),
        Dialect::Postgres => ("", SHARED_PAUSES),
    };
    tx.prepare_cached(&format!(
        "SELECT d.next_attempt_at FROM deliveries d
         WHERE d.state = 'pending' AND d.subscription = ?1 {leases} {} {shared}
         ORDER BY d.next_attempt_at LIMIT 1",
        head_condition(line)
    ))
}

/// How many deliveries a claim may lease: in all, and per group of requests.
pub(super) struct Budgets<'a> {
    pub total: usize,
    pub groups: &'a mut [usize],
    /// On a shared store: attempts of this node that have finished but whose outcomes
    /// commit after this claim (subscription, delivery id). Their leases are still in the
    /// store, but they hold no endpoint slot any more.
    pub finishing: &'a [(&'a str, i64)],
}

pub(super) fn claim(
    tx: &Db,
    requests: &[ClaimRequest],
    mut budgets: Budgets<'_>,
    now_ms: i64,
    lease_until_ms: i64,
) -> crate::store::db::Result<ClaimResult> {
    let mut result = ClaimResult::default();
    let mut asked: Vec<usize> = requests.iter().map(|r| r.limit).collect();
    if tx.dialect() == Dialect::Postgres {
        result.short = cluster::restrict(
            tx,
            requests,
            &mut asked,
            budgets.groups,
            budgets.finishing,
            now_ms,
        )?;
    }
    for (request, &asked) in requests.iter().zip(&asked) {
        if budgets.total == 0 {
            break;
        }
        let group = budgets.groups.get(request.group).copied().unwrap_or(0);
        let limit = asked.min(budgets.total).min(group);
        if limit == 0 {
            continue;
        }
        let before = result.claimed.len();
        let rows = take_due(tx, request, limit, now_ms, lease_until_ms)?;
        result.claimed.extend(rows);
        // One that filled its limit may have more due at once: the scheduler asks again
        // when it has capacity. Only a short one says when to look next.
        let got = result.claimed.len() - before;
        budgets.total -= got;
        if let Some(group) = budgets.groups.get_mut(request.group) {
            *group -= got;
        }
        if got == limit {
            continue;
        }
        let next: Option<i64> = next_due_statement(tx, request.line)?
            .query_map(params![request.subscription], |row| row.get(0))?
            .next()
            .transpose()?;
        result.short.push((request.subscription.clone(), next));
    }
    Ok(result)
}

/// Leases `rows` until `lease_until_ms`: one statement per run of rows, not per row.
fn lease(
    tx: &Db,
    rows: &[Claimed],
    now_ms: i64,
    lease_until_ms: i64,
) -> crate::store::db::Result<()> {
    for chunk in super::writes::chunks(rows) {
        let sql = format!(
            "UPDATE deliveries SET leased_at = ?, next_attempt_at = ? WHERE id IN ({})",
            vec!["?"; chunk.len()].join(", ")
        );
        let mut values: Vec<&dyn ToValue> = vec![&now_ms, &lease_until_ms];
        values.extend(chunk.iter().map(|c| &c.delivery_id as &dyn ToValue));
        tx.prepare_cached(&sql)?.execute(&values[..])?;
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::store::test_support::{event, plan, TempStore};

    /// A pending (due at 1) or dead delivery of a new event in `conversation`.
    fn queued(conn: &Db, id: &str, conversation: &str, state: &str) -> i64 {
        let seq = event(conn, id, "conversation.started", Some(conversation), 1);
        conn.execute(
            "INSERT INTO deliveries (event_seq, event_id, subscription, state, next_attempt_at,
                                     created_at, updated_at, event_type, conversation_id)
             VALUES (?1, ?2, 's', ?3, CASE WHEN ?3 = 'pending' THEN 1 END, 1, 1,
                     'conversation.started', ?4)",
            params![seq, id, state, conversation],
        )
        .unwrap();
        conn.last_insert_rowid()
    }

    fn claimed_ids(conn: &Db, line: Line) -> Vec<String> {
        let request = ClaimRequest {
            subscription: "s".into(),
            limit: 10,
            line,
            group: 0,
            cluster: Default::default(),
        };
        let mut groups = [10];
        let budgets = Budgets {
            total: 10,
            groups: &mut groups,
            finishing: &[],
        };
        let tx = conn.transaction().unwrap();
        let result = claim(&tx, &[request], budgets, 5, 1_000).unwrap();
        // Rolled back: each line reads the same rows.
        drop(tx);
        let mut ids: Vec<String> = result.claimed.into_iter().map(|c| c.event_id).collect();
        ids.sort();
        ids
    }

    #[test]
    fn only_the_head_of_each_conversation_is_claimed_and_hold_keeps_a_dead_one_in_front() {
        let store = TempStore::new();
        let conn = store.conn();
        queued(&conn, "a-0", "a", "dead");
        queued(&conn, "a-1", "a", "pending");
        queued(&conn, "a-2", "a", "pending");
        queued(&conn, "b-0", "b", "pending");
        queued(&conn, "b-1", "b", "pending");

        assert_eq!(claimed_ids(&conn, Line::Any), ["a-1", "a-2", "b-0", "b-1"]);
        assert_eq!(
            claimed_ids(&conn, Line::Conversation { hold_dead: false }),
            ["a-1", "b-0"]
        );
        assert_eq!(
            claimed_ids(&conn, Line::Conversation { hold_dead: true }),
            ["b-0"]
        );
    }

    #[test]
    fn on_postgres_a_claim_reads_the_due_index_in_order_though_statistics_saw_no_queue() {
        let database = crate::store::test_pg::fresh_database();
        let mut client = database.connect();
        crate::store::schema_pg::migrate(&mut client).unwrap();
        // A queue that went through 50,000 deliveries, so its due index spans many
        // pages, and statistics from the quiet moment after: five retries waiting, the
        // rest delivered. Then a backlog of 20,000 arrives before the server looks again.
        client
            .batch_execute(
                "INSERT INTO events (id, type, conversation_id, received_at, source, body)
                     SELECT 'e' || n, 'conversation.started', 'c' || (n % 50), n, 'test', '{}'
                     FROM generate_series(1, 70000) n;
                 INSERT INTO deliveries (event_seq, event_id, subscription, state,
                                         next_attempt_at, created_at, updated_at,
                                         conversation_id)
                     SELECT seq, id, 's', 'pending', seq, seq, seq, conversation_id
                     FROM events WHERE seq <= 50000;
                 UPDATE deliveries SET state = 'delivered', next_attempt_at = NULL
                     WHERE event_seq > 5;
                 UPDATE deliveries SET next_attempt_at = 1e12 WHERE event_seq <= 5;",
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
        let db = Db::postgres(client, database.url());
        let tx = db.transaction_with(SETTINGS).unwrap();
        // As after the first five runs of a statement: one plan for any parameters.
        tx.execute_batch("SET LOCAL plan_cache_mode = force_generic_plan")
            .unwrap();
        for (n, line) in [Line::Any, Line::Conversation { hold_dead: true }]
            .into_iter()
            .enumerate()
        {
            let sql = crate::store::db::placeholders(&due_sql(line, Dialect::Postgres, 10));
            tx.execute_batch(&format!("PREPARE due_{n} AS {sql}"))
                .unwrap();
            let plan: Vec<String> = tx
                .prepare(&format!("EXPLAIN EXECUTE due_{n}('s', 60000, 90000)"))
                .unwrap()
                .query_map(params![], |row| row.get(0))
                .unwrap()
                .collect::<Result<_, _>>()
                .unwrap();
            let plan = plan.join("\n");
            assert!(plan.contains("using deliveries_due"), "{plan}");
            assert!(!plan.contains("Sort"), "{plan}");
        }
        drop(tx);
        // And the claim itself takes the oldest, in order.
        let request = ClaimRequest {
            subscription: "s".into(),
            limit: 4,
            line: Line::Any,
            group: 0,
            cluster: crate::store::ClusterLimits {
                endpoint: "http://127.0.0.1:9/hook".into(),
                endpoint_subscriptions: vec!["s".into()],
                endpoint_cap: 10,
                rate: None,
            },
        };
        let tx = db.transaction_with(SETTINGS).unwrap();
        let mut groups = [4];
        let budgets = Budgets {
            total: 4,
            groups: &mut groups,
            finishing: &[],
        };
        let result = claim(&tx, &[request], budgets, 60_000, 90_000).unwrap();
        let ids: Vec<&str> = result.claimed.iter().map(|c| c.event_id.as_str()).collect();
        assert_eq!(ids, ["e50001", "e50002", "e50003", "e50004"]);
    }

    #[test]
    fn the_head_check_uses_the_line_index() {
        let store = TempStore::new();
        let conn = store.conn();
        for hold_dead in [false, true] {
            let sql = due_sql(Line::Conversation { hold_dead }, Dialect::Sqlite, 10);
            let shown = plan(
                &conn,
                &sql,
                vec!["s".to_string().into(), 0.into(), 10.into()],
            );
            assert!(shown.contains("deliveries_line"), "{shown}");
        }
    }
}
