//! The claim on a store several nodes share (PostgreSQL), and the limits they keep
//! together: the in-flight cap of each endpoint and each subscription's rate limit. The
//! claim counts the leases every node holds (and, for a rate limit, the attempts recorded
//! in its window) under a transaction-level advisory lock per endpoint and per
//! rate-limited subscription, so two nodes never count the same free slot: the count is
//! exact, not an estimate.
//!
//! All of it runs in the server, in `posthorn_claim` (PostgreSQL migration 5), called as
//! one statement in a transaction of its own: one round trip, and the locks are held only
//! while the server works. Sent statement by statement, every claim held them across
//! three round trips (a fan-out claim across a dozen), and on a busy machine across the
//! moments its node waited for a CPU; the other nodes' claims queued behind it. A claim
//! waits for the locks (taken in ascending order, so never in a circle) at most
//! `lock_timeout` (2 s); past it the claim fails, and its node logs it and tries again.
//! The commit is not durable: a claim lost in a server crash leaves its deliveries
//! pending.

use std::collections::BTreeSet;

use serde_json::json;

use crate::store::db::{params, Db, Result};
use crate::store::{ClaimRequest, ClaimResult, Claimed, Line};

use super::Budgets;

/// How soon a subscription whose endpoint other nodes fill is looked at again: their
/// finishing attempts wake no scheduler here.
const LOOK_AGAIN_MS: i64 = 1;

/// Takes up to `budgets` of the due deliveries of `requests`, in order, within what the
/// whole cluster leaves them, and leases them until `lease_until_ms`; as the SQLite
/// claim in `claim.rs`, whose budgets and answers it keeps.
pub(super) fn claim(
    db: &Db,
    requests: &[ClaimRequest],
    budgets: Budgets<'_>,
    now_ms: i64,
    lease_until_ms: i64,
) -> Result<ClaimResult> {
    // Every subscription whose leases count against an endpoint of this claim.
    let counted: BTreeSet<&str> = requests
        .iter()
        .flat_map(|r| &r.cluster.endpoint_subscriptions)
        .map(String::as_str)
        .collect();
    let finishing: Vec<i64> = budgets
        .finishing
        .iter()
        .filter(|(name, _)| counted.contains(name))
        .map(|&(_, id)| id)
        .collect();
    let claim = json!({
        "requests": requests.iter().map(|r| json!({
            "subscription": r.subscription,
            "limit": r.limit,
            "group": r.group,
            "line": match r.line {
                Line::Any => "any",
                Line::Conversation { hold_dead: false } => "continue",
                Line::Conversation { hold_dead: true } => "hold",
            },
            "endpoint_subscriptions": r.cluster.endpoint_subscriptions,
            "endpoint_cap": r.cluster.endpoint_cap,
            "rate": r.cluster.rate.map(|(count, per_ms)| json!([count, per_ms])),
        })).collect::<Vec<_>>(),
        "locks": lock_keys(requests),
        "counted": counted,
        "finishing": finishing,
        "budgets": budgets.groups,
        "total": budgets.total,
        "look_again_ms": LOOK_AGAIN_MS,
    });
    let mut claimed: Vec<(usize, i64, Claimed)> = Vec::new();
    let mut short = Vec::new();
    let mut statement = db.prepare_cached(
        "SELECT claimed_request, claimed_id, claimed_attempts, claimed_event_id,
                claimed_body, claimed_due
         FROM posthorn_claim(?1, ?2, ?3)",
    )?;
    statement.for_each(params![claim.to_string(), now_ms, lease_until_ms], |row| {
        // Requests are numbered from 1, as the function's arrays.
        let request: usize = row.get(0)?;
        let Some(subscription) = request
            .checked_sub(1)
            .and_then(|index| requests.get(index))
            .map(|r| r.subscription.clone())
        else {
            return Ok(());
        };
        let due: Option<i64> = row.get(5)?;
        match row.get::<Option<i64>>(1)? {
            Some(delivery_id) => claimed.push((
                request,
                due.unwrap_or_default(),
                Claimed {
                    delivery_id,
                    subscription,
                    attempt: row.get::<u32>(2)? + 1,
                    event_id: row.get(3)?,
                    body: row.get(4)?,
                },
            )),
            // A request that got less than it asked: when its next delivery is due.
            None => short.push((subscription, due)),
        }
        Ok(())
    })?;
    // Rows of an UPDATE come back in no order: each request's go oldest due first.
    claimed.sort_by_key(|(request, due, c)| (*request, *due, c.delivery_id));
    Ok(ClaimResult {
        claimed: claimed.into_iter().map(|(_, _, c)| c).collect(),
        short,
    })
}

/// The advisory lock keys of every endpoint and rate-limited subscription in
/// `requests`, ascending. The server sees only a hash of each name: an endpoint's URL
/// may hold a password.
fn lock_keys(requests: &[ClaimRequest]) -> BTreeSet<i64> {
    let mut keys = BTreeSet::new();
    for request in requests {
        keys.insert(lock_key(&format!(
            "posthorn.endpoint:{}",
            request.cluster.endpoint
        )));
        if request.cluster.rate.is_some() {
            keys.insert(lock_key(&format!("posthorn.rate:{}", request.subscription)));
        }
    }
    keys
}

fn lock_key(name: &str) -> i64 {
    use sha2::Digest as _;
    let digest = sha2::Sha256::digest(name.as_bytes());
    let mut first = [0u8; 8];
    first.copy_from_slice(&digest[..8]);
    i64::from_be_bytes(first)
}

#[cfg(test)]
mod tests {
    use std::sync::mpsc;
    use std::time::Duration;

    use super::*;
    use crate::store::test_pg::fresh_database;
    use crate::store::test_support::claim_request;
    use crate::store::Store;

    #[test]
    fn attempts_finished_but_not_yet_recorded_hold_no_endpoint_slot() {
        let database = fresh_database();
        let mut client = database.connect();
        crate::store::schema_pg::migrate(&mut client).unwrap();
        // Ten leased (the endpoint's whole cap), two due.
        client
            .batch_execute(
                "INSERT INTO events (id, type, received_at, source, body)
                     SELECT 'e' || n, 'conversation.ended', n, 'test', '{}'
                     FROM generate_series(1, 12) n;
                 INSERT INTO deliveries (event_seq, event_id, subscription, state,
                                         next_attempt_at, leased_at, created_at, updated_at)
                     SELECT seq, id, 's', 'pending',
                            CASE WHEN seq <= 10 THEN 31000 ELSE 1 END,
                            CASE WHEN seq <= 10 THEN 1000 END, 1, 1
                     FROM events;",
            )
            .unwrap();
        let db = Db::postgres(client, database.url());
        let claim = |finishing: &[(&str, i64)]| {
            let tx = db.transaction().unwrap();
            let mut groups = [10];
            let budgets = super::super::Budgets {
                total: 10,
                groups: &mut groups,
                finishing,
            };
            let result =
                super::super::claim(&tx, &[claim_request()], budgets, 2_000, 32_000).unwrap();
            // Rolled back: each claim starts from the same rows.
            drop(tx);
            result
        };

        let full = claim(&[]);
        assert!(full.claimed.is_empty());
        assert_eq!(full.short, [("s".to_string(), Some(2_000 + LOOK_AGAIN_MS))]);
        // Two of the ten have finished here: their slots are free, whatever the store
        // says until their outcomes are written. A finished attempt of another
        // endpoint's subscription frees none.
        let freed = claim(&[("s", 3), ("other", 11), ("s", 7)]);
        let ids: Vec<&str> = freed.claimed.iter().map(|c| c.event_id.as_str()).collect();
        assert_eq!(ids, ["e11", "e12"]);
        let one = claim(&[("s", 3), ("other", 11)]);
        assert_eq!(one.claimed.len(), 1);

        // Leases of another subscription to the same endpoint take its slots too.
        let mut shared = claim_request();
        shared.cluster.endpoint_subscriptions = vec!["s".into(), "t".into()];
        shared.cluster.endpoint_cap = 12;
        let mut fixtures = database.connect();
        fixtures
            .batch_execute(
                "INSERT INTO events (id, type, received_at, source, body)
                     VALUES ('t1', 'conversation.ended', 1, 'test', '{}'),
                            ('t2', 'conversation.ended', 1, 'test', '{}');
                 INSERT INTO deliveries (event_seq, event_id, subscription, state,
                                         next_attempt_at, leased_at, created_at, updated_at)
                     SELECT seq, id, 't', 'pending', 31000, 1000, 1, 1
                     FROM events WHERE id LIKE 't%';",
            )
            .unwrap();
        let tx = db.transaction().unwrap();
        let mut groups = [10];
        let budgets = super::super::Budgets {
            total: 10,
            groups: &mut groups,
            finishing: &[("t", 13)],
        };
        let result = super::super::claim(&tx, &[shared], budgets, 2_000, 32_000).unwrap();
        // 10 of s and 2 of t leased, one of t finished: one slot of twelve is free.
        assert_eq!(result.claimed.len(), 1);
    }

    #[test]
    fn a_claim_waits_for_a_node_holding_its_endpoint_lock_and_fails_alone_on_one_that_stalls() {
        let database = fresh_database();
        let (wake, _woken) = crossbeam_channel::bounded(1);
        let store = Store::open_postgres(database.url(), wake).unwrap();
        let mut fixtures = database.connect();
        fixtures
            .batch_execute(
                "INSERT INTO events (id, type, received_at, source, body)
                     VALUES ('evt_1', 'conversation.ended', 1, 'test', '{}');
                 INSERT INTO deliveries (event_seq, event_id, subscription, state,
                                         next_attempt_at, created_at, updated_at)
                     SELECT seq, id, 's', 'pending', 1, 1, 1 FROM events;",
            )
            .unwrap();
        let key = lock_key(&format!(
            "posthorn.endpoint:{}",
            claim_request().cluster.endpoint
        ));
        let leased = |client: &mut postgres::Client| -> i64 {
            client
                .query_one(
                    "SELECT count(*) FROM deliveries WHERE leased_at IS NOT NULL",
                    &[],
                )
                .unwrap()
                .get(0)
        };

        // Another node stalls holding the lock: the claim gives up after lock_timeout,
        // as an error, leasing nothing.
        let mut stalled = database.connect();
        let mut held = stalled.transaction().unwrap();
        held.execute("SELECT pg_advisory_xact_lock($1)", &[&key])
            .unwrap();
        let err = store
            .handle()
            .claim(vec![claim_request()], 1_000, 31_000)
            .unwrap_err();
        assert!(format!("{err:#}").contains("lock timeout"), "{err:#}");
        assert_eq!(leased(&mut fixtures), 0);
        held.rollback().unwrap();

        // A node holding it for a moment: the claim waits for its commit, then leases.
        let (taken, take) = mpsc::channel();
        std::thread::scope(|scope| {
            scope.spawn(|| {
                let mut other = database.connect();
                let mut held = other.transaction().unwrap();
                held.execute("SELECT pg_advisory_xact_lock($1)", &[&key])
                    .unwrap();
                taken.send(()).unwrap();
                std::thread::sleep(Duration::from_millis(300));
                held.commit().unwrap();
            });
            take.recv_timeout(Duration::from_secs(10)).unwrap();
            let result = store
                .handle()
                .claim(vec![claim_request()], 1_000, 31_000)
                .unwrap();
            assert_eq!(result.claimed.len(), 1);
        });
        assert_eq!(leased(&mut fixtures), 1);
    }
}
