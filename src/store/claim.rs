//! The claim: leasing due deliveries for the scheduler, per subscription, in the line the
//! subscription asks for. A lease moves `next_attempt_at` to the lease's end, so a leased
//! delivery is not due again unless its attempt is never recorded (a crash; see
//! `recover_leases`). With `ordering = "conversation"`, only the head of each
//! conversation's line may go: a delivery waits while an earlier one of its conversation
//! is still pending (leased, or waiting for a retry), or dead under `on_dead = "hold"`.
//!
//! This is the claim on SQLite, one node's store. On a store several nodes share
//! (PostgreSQL) the claim is `cluster.rs`: the same answers, but it also locks the rows it
//! takes, skipping rows another node's claim holds, so no two nodes lease one delivery;
//! it leaves paused subscriptions alone whichever node paused them; and it keeps the
//! cluster-wide limits.

mod cluster;

use crate::store::db::{params, Db, Dialect, Statement, ToValue};

use super::{ClaimRequest, ClaimResult, Claimed, Line};

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

/// The due deliveries of `?1` at `?2`, oldest first, at most `?3`; leased by [`lease`]
/// after.
fn due_sql(line: Line) -> String {
    let head = head_condition(line);
    format!(
        "SELECT d.id, d.attempts, d.event_id, e.body
         FROM deliveries d JOIN events e ON e.seq = d.event_seq
         WHERE d.state = 'pending' AND d.subscription = ?1 AND d.next_attempt_at <= ?2 {head}
         ORDER BY d.next_attempt_at, d.id
         LIMIT ?3"
    )
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
    let limit = limit as i64;
    let rows: Vec<Claimed> = tx
        .prepare_cached(&due_sql(request.line))?
        .query_map(params![request.subscription, now_ms, limit], |row| {
            Ok(Claimed {
                delivery_id: row.get(0)?,
                attempt: row.get::<u32>(1)? + 1,
                event_id: row.get(2)?,
                body: row.get(3)?,
                subscription: request.subscription.clone(),
            })
        })?
        .collect::<crate::store::db::Result<_>>()?;
    lease(tx, &rows, now_ms, lease_until_ms)?;
    Ok(rows)
}

/// When the subscription's next claimable delivery falls due. Leased ones are left
/// out: their attempt's outcome tells the scheduler what follows.
fn next_due_statement(tx: &Db, line: Line) -> crate::store::db::Result<Statement<'_>> {
    tx.prepare_cached(&format!(
        "SELECT d.next_attempt_at FROM deliveries d
         WHERE d.state = 'pending' AND d.subscription = ?1 AND d.leased_at IS NULL {}
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
    if tx.dialect() == Dialect::Postgres {
        return cluster::claim(tx, requests, budgets, now_ms, lease_until_ms);
    }
    let mut result = ClaimResult::default();
    for request in requests {
        if budgets.total == 0 {
            break;
        }
        let group = budgets.groups.get(request.group).copied().unwrap_or(0);
        let limit = request.limit.min(budgets.total).min(group);
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
    fn the_head_check_uses_the_line_index() {
        let store = TempStore::new();
        let conn = store.conn();
        for hold_dead in [false, true] {
            let sql = due_sql(Line::Conversation { hold_dead });
            let shown = plan(
                &conn,
                &sql,
                vec!["s".to_string().into(), 0.into(), 10.into()],
            );
            assert!(shown.contains("deliveries_line"), "{shown}");
        }
    }
}
