//! `posthorn migrate-store`: a SQLite store built by a real posthorn (delivered, retrying,
//! dead and in-flight deliveries) copied into PostgreSQL, then served by two nodes on
//! that database that finish the pending work; and the refusals (a target with rows, a
//! source in use), none of which shows the database password.

mod common;

use std::collections::{BTreeMap, HashMap};
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::Arc;
use std::time::Duration;

use common::cli::{self, Output};
use common::pg::{fresh_database, FreshDatabase};
use common::{ProgrammableReceiver, Reply, Serve};
use sha2::{Digest, Sha256};

/// Events the SQLite posthorn takes in.
const EVENTS: usize = 12;
/// Attempts the slow receiver holds open when the SQLite posthorn is killed.
const IN_FLIGHT: usize = 3;
/// Every table migrate-store copies.
const TABLES: &[&str] = &[
    "events",
    "deliveries",
    "attempts",
    "rejections",
    "audit_log",
    "subscription_state",
    "settings",
    "forgotten_conversations",
    "spool_positions",
    "delivery_rollups",
    "queue_samples",
];

/// A home whose store is a SQLite file, whatever backend the run puts stores on: the
/// source of a migration is SQLite by definition.
fn sqlite_home() -> common::Home {
    common::Home {
        dir: tempfile::tempdir().expect("a temp dir"),
        port: common::free_port(),
        pg: None,
    }
}

/// Five subscriptions taking every event: two whose receiver answers 200, one answered
/// 503 (Retry-After 5 s: it stays pending, retrying), one answered 500 until its retries
/// run out (dead), one answered slowly (in flight when posthorn is killed).
fn subscriptions(url: &str) -> String {
    ["ok-a", "ok-b", "failing", "dying", "slow"]
        .iter()
        .map(|name| {
            let mut block = common::subscription(
                name,
                &format!("{url}/{name}"),
                "conversations = [\"*\"]",
                "[\"*\"]",
            );
            if *name == "slow" {
                block.push_str("timeout = \"60s\"\n");
            }
            block
        })
        .collect()
}

/// `[delivery]`: three quick retries; a breaker that never opens (it would hold the
/// dying receiver's deliveries back instead of letting them die); a few at once per URL.
const DELIVERY: &str = "[delivery]\nschedule = [\"100ms\", \"100ms\", \"100ms\"]\n\
    timeout = \"5s\"\nbreaker_after = 10000\nmax_in_flight_per_endpoint = 3\n";

/// Writes a node's config: its store on the database at `url`, its own spool and port.
fn write_node_config(home: &common::Home, spool: &std::path::Path, url: &str, subs: &str) {
    let text = format!(
        "[storage]\nbackend = \"postgres\"\nurl = {url:?}\n[spool]\ndir = {:?}\n\
         rescan_interval = \"200ms\"\n[http]\nlisten = \"127.0.0.1:{}\"\n{}{subs}",
        spool.display().to_string(),
        home.port,
        common::allow_loopback(DELIVERY),
    );
    std::fs::write(home.config_path(), text).expect("write config");
}

/// The receiver: answers by path; once `healed`, 200 at once to everything.
fn receiver(healed: Arc<AtomicBool>) -> ProgrammableReceiver {
    ProgrammableReceiver::start(move |_, request| {
        if healed.load(Ordering::SeqCst) {
            return Reply::status(200);
        }
        match request.path.as_str() {
            "/failing" => Reply::status(503).header("Retry-After", "5"),
            "/dying" => Reply::status(500),
            "/slow" => Reply::status(200).delay(Duration::from_secs(20)),
            _ => Reply::status(200),
        }
    })
}

/// The test cluster's password, to look for in what posthorn prints.
fn password_of(db: &FreshDatabase) -> String {
    let url = db.url();
    let user_info = &url[url.find("://").unwrap() + 3..url.rfind('@').unwrap()];
    let password = user_info.split_once(':').unwrap().1.to_string();
    assert!(password.len() >= 8, "the test cluster has a real password");
    password
}

fn assert_no_password(out: &Output, password: &str) {
    assert!(
        !out.stdout.contains(password) && !out.stderr.contains(password),
        "the password was printed: {out:#?}"
    );
}

fn sqlite_count(home: &common::Home, table: &str) -> i64 {
    home.count(&format!("SELECT count(*) FROM {table}"))
}

fn pg_count(client: &mut postgres::Client, sql: &str) -> i64 {
    client
        .query_one(sql, &[])
        .unwrap_or_else(|e| panic!("{sql}: {e}"))
        .get(0)
}

fn sha256_hex(text: &str) -> String {
    Sha256::digest(text.as_bytes())
        .iter()
        .map(|b| format!("{b:02x}"))
        .collect()
}

/// (path, webhook-id) of every request the receiver got from `from` on.
fn sent(receiver: &ProgrammableReceiver, from: usize) -> Vec<(String, String)> {
    receiver.requests()[from..]
        .iter()
        .map(|r| {
            let id = r.header("webhook-id").unwrap_or_default().to_string();
            (r.path.clone(), id)
        })
        .collect()
}

fn tally(requests: &[(String, String)]) -> BTreeMap<(String, String), usize> {
    let mut counts = BTreeMap::new();
    for request in requests {
        *counts.entry(request.clone()).or_insert(0) += 1;
    }
    counts
}

#[test]
fn a_sqlite_store_with_retrying_dead_and_leased_deliveries_is_finished_by_two_postgres_nodes() {
    let duplicates = migrate_then_serve_on_two_nodes();
    // What the claim allows today: reported, asserted by the test below.
    for (key, times) in &duplicates {
        eprintln!("{key:?}: sent {times} times by the two nodes");
    }
}

/// Two nodes claim each due delivery once: only a delivery in flight when SQLite's
/// posthorn was killed may arrive twice. Ignored until the claim takes row locks that
/// skip rows another node holds (issue 13, store/claim.rs): today both nodes can lease the
/// same row, and a few deliveries arrive twice.
#[test]
fn two_nodes_send_each_migrated_pending_delivery_once() {
    let duplicates = migrate_then_serve_on_two_nodes();
    assert!(
        duplicates.is_empty(),
        "sent more than once by the two nodes: {duplicates:?}"
    );
}

/// The whole move, checked on the way: a SQLite posthorn's store with delivered, dead,
/// retrying and leased deliveries; migrate-store; two nodes on PostgreSQL finishing the
/// pending work. Returns the deliveries the nodes sent more than once (beyond the
/// in-flight ones at-least-once allows), with how often.
fn migrate_then_serve_on_two_nodes() -> Vec<((String, String), usize)> {
    let healed = Arc::new(AtomicBool::new(false));
    let receiver = receiver(Arc::clone(&healed));
    let subs = subscriptions(&receiver.url);

    // 1. A posthorn on SQLite takes the events in and works on them.
    let source = sqlite_home();
    source.write_config(&format!("{DELIVERY}{subs}"));
    let serve = Serve::start(&source);
    let lines: String = (0..EVENTS)
        .map(|n| {
            // Values a copy could bend: long digits, escapes, text beyond ASCII.
            format!(
                "{{\"id\":\"evt-{n}\",\"type\":\"conversation.started\",\"conversation_id\":\
                 \"c-{}\",\"data\":{{\"n\":{n},\"big\":123456789012345678901234567890,\
                 \"x\":1.10,\"s\":\"Zoë \\u00e9\\n\\\"q\\\" 🎉\"}}}}\n",
                n % 3
            )
        })
        .collect();
    source.append("events.ndjson", lines.as_bytes());
    let n = EVENTS as i64;
    common::wait_for(
        "delivered, dead, retrying and in-flight deliveries on SQLite",
        Duration::from_secs(60),
        || {
            let delivered = source.count(
                "SELECT count(*) FROM deliveries WHERE state = 'delivered'
                   AND subscription IN ('ok-a', 'ok-b')",
            );
            let dead = source.count(
                "SELECT count(*) FROM deliveries WHERE state = 'dead' AND subscription = 'dying'",
            );
            let retrying = source.count(
                "SELECT count(*) FROM deliveries WHERE state = 'pending' AND attempts >= 1
                   AND subscription = 'failing'",
            );
            delivered == 2 * n
                && dead == n
                && retrying == n
                && receiver
                    .requests()
                    .iter()
                    .filter(|r| r.path == "/slow")
                    .count()
                    >= IN_FLIGHT
        },
    );
    // Killed mid-attempt: the slow receiver's deliveries stay leased in the file.
    serve.kill();
    let leased = source
        .count("SELECT count(*) FROM deliveries WHERE leased_at IS NOT NULL AND state = 'pending'");
    assert!(leased >= IN_FLIGHT as i64, "{leased} leased deliveries");
    let pending = source.count("SELECT count(*) FROM deliveries WHERE state = 'pending'");
    let before_sent = receiver.count();
    let sqlite_counts: BTreeMap<&str, i64> = TABLES
        .iter()
        .map(|t| (*t, sqlite_count(&source, t)))
        .collect();
    let sqlite_bodies: BTreeMap<String, String> = source
        .query::<String>("SELECT id || ' ' || body FROM events")
        .iter()
        .map(|row| {
            let (id, body) = row.split_once(' ').unwrap();
            (id.to_string(), sha256_hex(body))
        })
        .collect();
    assert_eq!(sqlite_bodies.len(), EVENTS);

    // 2. Moved up, the URL from the environment.
    let target = fresh_database();
    let password = password_of(&target);
    let out = cli::with_config(
        &source,
        &["migrate-store", "--to-env", "TARGET_URL", "--json"],
        &[("TARGET_URL", target.url())],
    );
    assert_no_password(&out, &password);
    let report = out.expect(0).json();
    let copied: BTreeMap<String, i64> = report["tables"]
        .as_array()
        .expect("tables")
        .iter()
        .map(|t| {
            (
                t["table"].as_str().unwrap().to_string(),
                t["rows"].as_i64().unwrap(),
            )
        })
        .collect();
    let mut client = target.connect();
    for (table, rows) in &sqlite_counts {
        assert_eq!(copied.get(*table), Some(rows), "rows of {table} copied");
        let in_pg = pg_count(&mut client, &format!("SELECT count(*) FROM {table}"));
        // The migration audits itself on top of the copied rows.
        let own = i64::from(*table == "audit_log");
        assert_eq!(in_pg, rows + own, "rows of {table} in PostgreSQL");
    }
    assert_eq!(report["leases_returned"].as_i64(), Some(leased));
    let pg_bodies: BTreeMap<String, String> = client
        .query("SELECT id, body FROM events", &[])
        .unwrap()
        .iter()
        .map(|row| (row.get::<_, String>(0), sha256_hex(row.get(1))))
        .collect();
    assert_eq!(pg_bodies, sqlite_bodies, "every event body byte for byte");
    let audit: String = client
        .query_one(
            "SELECT detail FROM audit_log WHERE action = 'store.migrate'",
            &[],
        )
        .unwrap()
        .get(0);
    assert!(
        audit.contains(&format!("deliveries {}", 5 * EVENTS)),
        "{audit}"
    );

    // 3. Two nodes on the database, the receiver well again. The first keeps the SQLite
    // posthorn's spool (its read position came along); the second has its own.
    healed.store(true, Ordering::SeqCst);
    let node_a = sqlite_home();
    let node_b = sqlite_home();
    write_node_config(&node_a, &source.spool(), target.url(), &subs);
    write_node_config(&node_b, &node_b.spool(), target.url(), &subs);
    let serve_a = Serve::start(&node_a);
    let serve_b = Serve::start(&node_b);
    // New events on a node take ids past the copied ones.
    node_b.append(
        "more.ndjson",
        format!(
            "{}\n{}\n",
            common::event_in("evt-new-1", "c-9"),
            common::event_in("evt-new-2", "c-9")
        )
        .as_bytes(),
    );
    common::wait_for(
        "the nodes to finish every pending delivery",
        Duration::from_secs(90),
        || {
            pg_count(
                &mut client,
                "SELECT count(*) FROM deliveries WHERE state = 'pending'",
            ) == 0
                && pg_count(&mut client, "SELECT count(*) FROM events") == n + 2
        },
    );
    drop(serve_a);
    drop(serve_b);

    // Every delivery is final: the 2 x 12 delivered before, the 12 dead, the pending ones
    // delivered now, and 5 for each new event.
    let states: HashMap<String, i64> = client
        .query("SELECT state, count(*) FROM deliveries GROUP BY state", &[])
        .unwrap()
        .iter()
        .map(|row| (row.get(0), row.get(1)))
        .collect();
    assert_eq!(states.get("dead"), Some(&n));
    assert_eq!(states.get("delivered"), Some(&(4 * n + 10)));
    assert_eq!(pending, 2 * n, "failing and slow were pending at the copy");
    // The history came along: the dead ones' four failed attempts each, never re-sent.
    assert_eq!(
        pg_count(
            &mut client,
            "SELECT count(*) FROM attempts a JOIN deliveries d ON d.id = a.delivery_id
              WHERE d.subscription = 'dying' AND a.status = 500",
        ),
        4 * n
    );

    let before = tally(&sent(&receiver, 0)[..before_sent]);
    let after = tally(&sent(&receiver, before_sent));
    // Nothing delivered or dead on SQLite was sent again.
    for path in ["/ok-a", "/ok-b", "/dying"] {
        let again: Vec<_> = after
            .keys()
            .filter(|(p, id)| p == path && !id.starts_with("evt-new"))
            .collect();
        assert!(again.is_empty(), "sent again after the move: {again:?}");
    }
    // Each pending delivery reached its receiver after the move; a second arrival is
    // only allowed for the deliveries in flight when SQLite's posthorn was killed (their
    // answer never reached it: at-least-once).
    let mut duplicates = Vec::new();
    for path in ["/failing", "/slow"] {
        for event in 0..EVENTS {
            let key = (path.to_string(), format!("evt-{event}"));
            let now = after.get(&key).copied().unwrap_or(0);
            assert!(now >= 1, "{key:?} was not sent after the move");
            if path == "/slow" && before.contains_key(&key) {
                eprintln!("{key:?}: in flight at the kill, sent again after the move (allowed)");
            }
            if now > 1 {
                duplicates.push((key, now));
            }
        }
    }
    duplicates
}

#[test]
fn a_target_that_holds_rows_is_refused_and_left_unchanged() {
    let source = sqlite_home();
    source.write_config("");
    let serve = Serve::start(&source);
    source.append(
        "e.ndjson",
        format!("{}\n", common::spool_event("evt-1")).as_bytes(),
    );
    common::wait_for("the event stored", Duration::from_secs(20), || {
        source.count("SELECT count(*) FROM events") == 1
    });
    serve.terminate();
    let target = fresh_database();
    let password = password_of(&target);
    let url = target.url();
    cli::with_config(&source, &["migrate-store", "--to", url], &[]).expect(0);
    let mut client = target.connect();
    let snapshot = |client: &mut postgres::Client| -> Vec<i64> {
        TABLES
            .iter()
            .map(|t| pg_count(client, &format!("SELECT count(*) FROM {t}")))
            .collect()
    };
    let first = snapshot(&mut client);

    let again = cli::with_config(&source, &["migrate-store", "--to", url], &[]);

    assert_no_password(&again, &password);
    let again = again.expect(1);
    assert!(
        again.stderr.contains("is not empty: its tables events, "),
        "{again:#?}"
    );
    assert!(
        again.stderr.contains("postgres:[redacted]@127.0.0.1"),
        "{again:#?}"
    );
    assert_eq!(snapshot(&mut client), first, "the target is unchanged");
}

#[test]
fn migrate_store_refuses_while_posthorn_serves_the_source() {
    let source = sqlite_home();
    source.write_config("");
    let serve = Serve::start(&source);
    let target = fresh_database();

    let out = cli::with_config(&source, &["migrate-store", "--to", target.url()], &[]);

    let out = out.expect(1);
    assert!(
        out.stderr.contains("posthorn is running on the store")
            && out.stderr.contains("stop it first"),
        "{out:#?}"
    );
    let tables = pg_count(
        &mut target.connect(),
        "SELECT count(*) FROM information_schema.tables WHERE table_schema = current_schema()",
    );
    assert_eq!(tables, 0, "the target was not touched");
    drop(serve);
}

#[test]
fn the_password_is_never_shown_when_the_server_is_unreachable_or_refuses_it() {
    let source = sqlite_home();
    source.write_config("");
    drop(Serve::start(&source)); // a store file to copy
    let secret = "s3cret-Pa55word";

    // Nothing listens on this port.
    let unreachable = format!(
        "postgres://posthorn:{secret}@127.0.0.1:{}/posthorn",
        common::free_port()
    );
    let out = cli::with_config(&source, &["migrate-store", "--to", &unreachable], &[]);
    assert!(!format!("{out:?}").contains(secret), "{out:#?}");
    let out = out.expect(1);
    assert!(
        out.stderr
            .contains("postgres://posthorn:[redacted]@127.0.0.1:"),
        "names the server: {out:#?}"
    );

    // The real server, a wrong password, given in a file and as a parameter.
    let target = fresh_database();
    let real = target.url();
    let wrong = format!(
        "{}?password={secret}",
        real.replacen(&password_of(&target), "not-the-password", 1)
    );
    let file = source.path().join("target-url");
    std::fs::write(&file, format!("{wrong}\n")).unwrap();
    let out = cli::with_config(
        &source,
        &["migrate-store", "--to-file", file.to_str().unwrap()],
        &[],
    );
    assert!(!format!("{out:?}").contains(secret), "{out:#?}");
    assert!(!format!("{out:?}").contains("not-the-password"), "{out:#?}");
    let out = out.expect(1);
    assert!(
        out.stderr.contains("password"),
        "says what failed: {out:#?}"
    );

    // And the report of a copy that works.
    let out = cli::with_config(&source, &["migrate-store", "--to", real], &[]);
    assert_no_password(&out, &password_of(&target));
    let out = out.expect(0);
    assert!(out.stdout.contains("copied the SQLite store"), "{out:#?}");
    assert!(out.stdout.contains(":[redacted]@127.0.0.1"), "{out:#?}");
}
