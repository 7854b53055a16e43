//! The limits all nodes on one shared store (PostgreSQL) keep together: the in-flight cap
//! of each endpoint and each subscription's rate limit. A claim counts the leases every
//! node holds (and, for a rate limit, the attempts recorded in its window) under a
//! transaction-level advisory lock per endpoint and per rate-limited subscription, so two
//! nodes never count the same free slot: the count is exact, not an estimate.
//!
//! A claim waits for those locks, taken in one order so claims never wait in a circle.
//! They are held only for the claim's own transaction: the writer commits outcomes and
//! everything else that must be durable first, and the claim after, on its own and
//! without waiting for the WAL flush (`writer.rs`), so a node waits for another's claim,
//! never for its disk. Holding no other lock a second node could want, a claim cannot
//! deadlock with the outcome writes of any node.

use std::collections::HashMap;

use crate::store::db::{params, Db, Result, ToValue};
use crate::store::ClaimRequest;

/// How soon a subscription whose endpoint other nodes fill is looked at again: their
/// finishing attempts wake no scheduler here.
const LOOK_AGAIN_MS: i64 = 1;

/// Active leases (attempts in flight or queued on some node) of each of
/// `subscriptions`, read from the `deliveries_leased` index in one statement for every
/// endpoint of a claim, less those of `finished` deliveries (attempts of this node whose
/// outcomes are not written yet). Each list is padded to a power of two by repeating an
/// entry, so claims of many sizes share a few statement texts.
fn count_leases(
    tx: &Db,
    subscriptions: &[&str],
    finished: &[i64],
    now_ms: i64,
) -> Result<HashMap<String, usize>> {
    let Some(last) = subscriptions.last() else {
        return Ok(HashMap::new());
    };
    let padded = subscriptions.len().next_power_of_two();
    let finished_padded = match finished.len() {
        0 => 0,
        n => n.next_power_of_two(),
    };
    let except = match finished_padded {
        0 => String::new(),
        n => format!("AND id NOT IN ({})", vec!["?"; n].join(", ")),
    };
    let sql = format!(
        "SELECT subscription, count(*) FROM deliveries
         WHERE subscription IN ({}) AND leased_at IS NOT NULL AND next_attempt_at > ?
           AND state = 'pending' {except}
         GROUP BY subscription",
        vec!["?"; padded].join(", ")
    );
    let mut values: Vec<&dyn ToValue> = Vec::with_capacity(padded + 1 + finished_padded);
    values.extend(subscriptions.iter().map(|name| name as &dyn ToValue));
    values.resize(padded, last as &dyn ToValue);
    values.push(&now_ms);
    if let Some(first) = finished.first() {
        values.extend(finished.iter().map(|id| id as &dyn ToValue));
        values.resize(padded + 1 + finished_padded, first as &dyn ToValue);
    }
    tx.prepare_cached(&sql)?
        .query_map(&values[..], |row| Ok((row.get(0)?, row.get(1)?)))?
        .collect()
}

/// Attempts of `?1` started after `?2`, leases of `?1` still active at `?3`, and the
/// first start in the window.
const RATE_WINDOW: &str = "SELECT
       (SELECT count(*) FROM attempts WHERE subscription = ?1 AND started_at > ?2),
       (SELECT count(*) FROM deliveries
        WHERE subscription = ?1 AND state = 'pending' AND leased_at IS NOT NULL
          AND next_attempt_at > ?3),
       (SELECT MIN(started_at) FROM attempts WHERE subscription = ?1 AND started_at > ?2)";

/// Lowers each request's limit (`asked`) and each group's budget to what the whole
/// cluster leaves, and returns, for the requests it stopped, when to look again.
pub(super) fn restrict(
    tx: &Db,
    requests: &[ClaimRequest],
    asked: &mut [usize],
    groups: &mut [usize],
    finishing: &[(&str, i64)],
    now_ms: i64,
) -> Result<Vec<(String, Option<i64>)>> {
    lock_all(tx, requests)?;
    // Every endpoint's leases at once: one round trip while holding the locks.
    let mut endpoints: Vec<&str> = requests
        .iter()
        .flat_map(|r| &r.cluster.endpoint_subscriptions)
        .map(String::as_str)
        .collect();
    endpoints.sort_unstable();
    endpoints.dedup();
    let finished: Vec<i64> = finishing
        .iter()
        .filter(|(name, _)| endpoints.binary_search(name).is_ok())
        .map(|&(_, id)| id)
        .collect();
    let leases = count_leases(tx, &endpoints, &finished, now_ms)?;
    let mut short = Vec::new();
    // Per group: whether its endpoint's leases were taken from its budget.
    let mut counted = vec![false; groups.len()];
    for (request, asked) in requests.iter().zip(asked.iter_mut()) {
        let Some(budget) = groups.get_mut(request.group) else {
            continue;
        };
        let limits = &request.cluster;
        if !counted[request.group] {
            counted[request.group] = true;
            let in_flight: usize = limits
                .endpoint_subscriptions
                .iter()
                .filter_map(|name| leases.get(name))
                .sum();
            *budget = (*budget).min(limits.endpoint_cap.saturating_sub(in_flight));
        }
        if *budget == 0 {
            *asked = 0;
            short.push((request.subscription.clone(), Some(now_ms + LOOK_AGAIN_MS)));
            continue;
        }
        let Some((count, per_ms)) = limits.rate else {
            continue;
        };
        let since = now_ms - per_ms;
        let (started, leased, first): (usize, usize, Option<i64>) = tx.query_row(
            RATE_WINDOW,
            params![request.subscription, since, now_ms],
            |row| Ok((row.get(0)?, row.get(1)?, row.get(2)?)),
        )?;
        let allowed = count.saturating_sub(started + leased);
        if allowed == 0 {
            *asked = 0;
            // The window frees a slot when its first attempt leaves it; a lease that
            // has not become an attempt yet frees none before it does.
            let next = first.map_or(now_ms + LOOK_AGAIN_MS, |at| at + per_ms + 1);
            short.push((request.subscription.clone(), Some(next.max(now_ms + 1))));
            continue;
        }
        *asked = (*asked).min(allowed);
    }
    Ok(short)
}

/// Takes the transaction-level advisory locks of every endpoint and rate-limited
/// subscription in `requests`, waiting for a node that holds one to commit its claim
/// (a short transaction: outcomes commit before it). They are released at commit or
/// rollback. Taken in ascending key order, so two claims never wait on each other in a
/// circle; the writer's `lock_timeout` bounds the wait on a node that stalls holding
/// one. The server sees only a hash of each name: an endpoint's URL may hold a password.
fn lock_all(tx: &Db, requests: &[ClaimRequest]) -> Result<()> {
    let mut keys = std::collections::BTreeSet::new();
    for request in requests {
        keys.insert(lock_key(&format!(
            "posthorn.endpoint:{}",
            request.cluster.endpoint
        )));
        if request.cluster.rate.is_some() {
            keys.insert(lock_key(&format!("posthorn.rate:{}", request.subscription)));
        }
    }
    // One batch of literal keys (numbers: nothing to quote), so it travels with the
    // claim's BEGIN in one round trip (`Db::hold_batch`).
    let locks: Vec<String> = keys
        .iter()
        .map(|key| format!("SELECT pg_advisory_xact_lock({key})"))
        .collect();
    if locks.is_empty() {
        return Ok(());
    }
    tx.execute_batch(&locks.join("; "))
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
    use crate::store::{ClusterLimits, Line, Store};

    const ENDPOINT: &str = "http://127.0.0.1:9/hook";

    fn request() -> ClaimRequest {
        ClaimRequest {
            subscription: "s".into(),
            limit: 5,
            line: Line::Any,
            group: 0,
            cluster: ClusterLimits {
                endpoint: ENDPOINT.into(),
                endpoint_subscriptions: vec!["s".into()],
                endpoint_cap: 10,
                rate: None,
            },
        }
    }

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
            let tx = db.transaction_with(super::super::SETTINGS).unwrap();
            let mut groups = [10];
            let budgets = super::super::Budgets {
                total: 10,
                groups: &mut groups,
                finishing,
            };
            let result = super::super::claim(&tx, &[request()], budgets, 2_000, 32_000).unwrap();
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
        let mut shared = request();
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
        let tx = db.transaction_with(super::super::SETTINGS).unwrap();
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
        let key = lock_key(&format!("posthorn.endpoint:{ENDPOINT}"));
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
            .claim(vec![request()], 1_000, 31_000)
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
                .claim(vec![request()], 1_000, 31_000)
                .unwrap();
            assert_eq!(result.claimed.len(), 1);
        });
        assert_eq!(leased(&mut fixtures), 1);
    }
}
