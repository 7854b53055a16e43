//! Several nodes on one PostgreSQL database, each the real binary with its own config,
//! inlet and spool: every acknowledged event is delivered while one node is SIGKILLed
//! again and again; an endpoint's in-flight cap and a subscription's rate limit hold for
//! all nodes together; a conversation's deliveries keep their order across nodes.

mod common;

use std::collections::{BTreeSet, HashMap};
use std::fs;
use std::time::Duration;

use common::pg::{fresh_database, FreshDatabase};
use common::{
    busiest_window, event_in, http_post, subscription, wait_for, Home, ProgrammableReceiver, Reply,
    Serve,
};

const TOKEN: &str = "cluster-test-token-0123456789";
const LONG: Duration = Duration::from_secs(60);

/// A node's home whose store is the shared database `db`, with an inlet token, and
/// `body` as the rest of its config.
fn node(db: &FreshDatabase, body: &str) -> Home {
    let home = Home::new();
    home.write_config(&format!("[inlet]\ntoken = {TOKEN:?}\n{body}"));
    let config = fs::read_to_string(home.config_path()).expect("read the config");
    let storage = home.storage_config();
    assert!(
        config.starts_with(&storage),
        "the storage section comes first"
    );
    let shared = format!(
        "[storage]\nbackend = \"postgres\"\nurl = {:?}\n{}",
        db.url(),
        &config[storage.len()..]
    );
    fs::write(home.config_path(), shared).expect("write the config");
    home
}

/// Posts one event to a node's inlet; whether it was acknowledged (stored).
fn post(home: &Home, event: &str) -> bool {
    let auth = format!("Bearer {TOKEN}");
    let response = http_post(
        &format!("{}/v1/events", home.inlet_url()),
        &[
            ("Content-Type", "application/json"),
            ("Authorization", &auth),
        ],
        event.as_bytes(),
        false,
    );
    (200..=202).contains(&response.status)
}

#[test]
fn every_acknowledged_event_is_delivered_while_a_node_is_killed_again_and_again() {
    let db = fresh_database();
    let receiver =
        ProgrammableReceiver::start(|_, _| Reply::status(200).delay(Duration::from_millis(20)));
    let config = format!(
        "[delivery]\nschedule = [\"100ms\", \"200ms\"]\ntimeout = \"1s\"\n{}",
        subscription(
            "all",
            &format!("{}/hook", receiver.url),
            "conversations = [\"*\"]",
            "[\"*\"]"
        )
    );
    let homes: Vec<Home> = (0..3).map(|_| node(&db, &config)).collect();
    let steady = Serve::start(&homes[0]);
    let _third = Serve::start(&homes[2]);
    let mut victim = Some(Serve::start(&homes[1]));

    // Events go alternately to node 0 and node 1; node 1 is killed and started again
    // every 40 events. What a node acknowledged is stored; only that must arrive.
    let mut acknowledged = BTreeSet::new();
    for n in 0..400 {
        let id = format!("evt-{n}");
        let event = event_in(&id, &format!("c-{}", n % 7));
        // While node 1 is down its share goes to node 0 (a producer would fail over).
        let target = if n % 2 == 1 && victim.is_some() {
            &homes[1]
        } else {
            &homes[0]
        };
        if post(target, &event) {
            acknowledged.insert(id);
        }
        if n % 40 == 39 {
            match victim.take() {
                Some(serve) => serve.kill(),
                None => victim = Some(Serve::start(&homes[1])),
            }
        }
    }
    assert!(
        acknowledged.len() >= 200,
        "node 0 acknowledges every event sent to it: {} acknowledged",
        acknowledged.len()
    );

    // A lease of a killed node ends after twice the timeout and 30 s; another node then
    // takes its delivery.
    wait_for("every acknowledged event at the receiver", LONG, || {
        let got: BTreeSet<String> = receiver.requests().iter().map(|r| r.event_id()).collect();
        acknowledged.is_subset(&got)
    });
    let requests = receiver.requests();
    let mut seen: HashMap<String, usize> = HashMap::new();
    for request in &requests {
        *seen.entry(request.event_id()).or_default() += 1;
    }
    let repeated = seen.values().filter(|&&count| count > 1).count();
    eprintln!(
        "{} events acknowledged, {} requests, {} events sent more than once",
        acknowledged.len(),
        requests.len(),
        repeated
    );
    // At least once: a repeat is an attempt a killed node made and never recorded. Each
    // kill can leave at most the deliveries it held (its 32 workers and their queue).
    assert!(
        repeated <= 5 * 64,
        "{repeated} events sent more than once: more than five kills could explain"
    );
    wait_for("every delivery recorded as delivered", LONG, || {
        steady_count(&homes[0], &db) == acknowledged.len() as i64
    });
    drop(steady);
}

/// Deliveries the store records as delivered (read through node 0's database).
fn steady_count(_home: &Home, db: &FreshDatabase) -> i64 {
    let mut client = db.connect();
    client
        .query_one(
            "SELECT count(*) FROM deliveries WHERE state = 'delivered'",
            &[],
        )
        .map(|row| row.get::<_, i64>(0))
        .unwrap_or(0)
}

#[test]
fn the_in_flight_cap_and_the_rate_limit_hold_for_all_nodes_together() {
    let db = fresh_database();
    let slow =
        ProgrammableReceiver::start(|_, _| Reply::status(200).delay(Duration::from_millis(300)));
    let limited = ProgrammableReceiver::start(|_, _| Reply::status(204));
    let config = format!(
        "[delivery]\nschedule = [\"100ms\"]\ntimeout = \"5s\"\nworkers = 8\n\
         max_in_flight_per_endpoint = 2\n{}{}",
        subscription(
            "slow",
            &format!("{}/slow", slow.url),
            "conversations = [\"c-slow\"]",
            "[\"*\"]"
        ),
        subscription(
            "limited",
            &format!("{}/limited", limited.url),
            "conversations = [\"c-limited\"]\nrate_limit = \"5/s\"",
            "[\"*\"]"
        ),
    );
    let homes: Vec<Home> = (0..3).map(|_| node(&db, &config)).collect();
    let _serves: Vec<Serve> = homes.iter().map(Serve::start).collect();
    for n in 0..18 {
        assert!(post(
            &homes[n % 3],
            &event_in(&format!("slow-{n}"), "c-slow")
        ));
        assert!(post(
            &homes[n % 3],
            &event_in(&format!("lim-{n}"), "c-limited")
        ));
    }
    slow.wait_for_count(18, LONG);
    limited.wait_for_count(18, LONG);
    assert_eq!(
        slow.peak_concurrency(),
        2,
        "three nodes together keep max_in_flight_per_endpoint = 2 at the endpoint"
    );
    // As a single node's rate limit is checked: by when each attempt started.
    let starts: Vec<i64> = db
        .connect()
        .query(
            "SELECT started_at FROM attempts WHERE subscription = 'limited' ORDER BY started_at",
            &[],
        )
        .expect("read the attempts")
        .iter()
        .map(|row| row.get(0))
        .collect();
    assert_eq!(starts.len(), 18, "one attempt each: waiting is not failing");
    let busiest = busiest_window(&starts, 1_000);
    assert!(
        busiest <= 5,
        "rate_limit = \"5/s\" for all nodes together, yet one second held {busiest}: {starts:?}"
    );
}

#[test]
fn a_conversation_is_delivered_in_order_across_nodes() {
    let db = fresh_database();
    // Every first attempt fails: each event is retried, on whichever node claims it.
    let seen: std::sync::Arc<std::sync::Mutex<BTreeSet<String>>> = Default::default();
    let receiver = ProgrammableReceiver::start(move |_, request| {
        let first = seen.lock().unwrap().insert(request.event_id());
        Reply::status(if first { 500 } else { 200 })
    });
    let config = format!(
        "[delivery]\nschedule = [\"50ms\", \"50ms\", \"50ms\"]\ntimeout = \"2s\"\n{}",
        subscription(
            "ordered",
            &format!("{}/hook", receiver.url),
            "conversations = [\"*\"]\nordering = \"conversation\"",
            "[\"*\"]"
        )
    );
    let homes: Vec<Home> = (0..3).map(|_| node(&db, &config)).collect();
    let _serves: Vec<Serve> = homes.iter().map(Serve::start).collect();
    let conversations = 4;
    let per_conversation = 8;
    for n in 0..per_conversation {
        for c in 0..conversations {
            let event = event_in(&format!("c{c}-{n:02}"), &format!("conv-{c}"));
            assert!(post(&homes[(n + c) % 2], &event));
        }
    }
    let total = conversations * per_conversation;
    wait_for("every event delivered", LONG, || {
        receiver.requests().len() >= 2 * total
    });
    // Per conversation, every attempt in the order the receiver got them: an event's
    // attempts (the failed one, then the delivered one) all come before the next
    // event's first, whichever node sent them.
    let mut attempts: HashMap<String, Vec<String>> = HashMap::new();
    for request in receiver.requests() {
        let id = request.event_id();
        let conversation = id.split('-').next().unwrap_or_default().to_owned();
        attempts.entry(conversation).or_default().push(id);
    }
    assert_eq!(attempts.len(), conversations);
    for (conversation, ids) in &attempts {
        let mut sorted = ids.clone();
        sorted.sort();
        assert_eq!(
            ids, &sorted,
            "conversation {conversation} went out of order"
        );
        let distinct: BTreeSet<&String> = ids.iter().collect();
        assert_eq!(distinct.len(), per_conversation, "{conversation}: {ids:?}");
    }
}

#[test]
fn no_two_nodes_send_the_same_delivery() {
    let db = fresh_database();
    let receiver = ProgrammableReceiver::start(|_, _| Reply::status(204));
    let config = format!(
        "[delivery]\nschedule = [\"100ms\"]\ntimeout = \"2s\"\n{}{}",
        subscription(
            "a",
            &format!("{}/a", receiver.url),
            "conversations = [\"*\"]",
            "[\"*\"]"
        ),
        subscription(
            "b",
            &format!("{}/b", receiver.url),
            "conversations = [\"*\"]",
            "[\"*\"]"
        ),
    );
    let homes: Vec<Home> = (0..3).map(|_| node(&db, &config)).collect();
    let _serves: Vec<Serve> = homes.iter().map(Serve::start).collect();
    let events = 300;
    for n in 0..events {
        assert!(post(
            &homes[n % 3],
            &event_in(&format!("e{n}"), &format!("c{}", n % 11))
        ));
    }
    receiver.wait_for_count(2 * events, LONG);
    // Every node keeps claiming for a second more: nothing may come twice.
    std::thread::sleep(Duration::from_millis(1500));
    let mut seen: HashMap<(String, String), usize> = HashMap::new();
    for request in receiver.requests() {
        *seen
            .entry((request.path.clone(), request.event_id()))
            .or_default() += 1;
    }
    let twice: Vec<_> = seen.iter().filter(|(_, &count)| count > 1).collect();
    assert!(twice.is_empty(), "sent more than once: {twice:?}");
    assert_eq!(seen.len(), 2 * events);
}

#[test]
fn each_node_keeps_its_own_spool_positions() {
    let db = fresh_database();
    let receiver = ProgrammableReceiver::start(|_, _| Reply::status(204));
    let config = subscription(
        "all",
        &format!("{}/hook", receiver.url),
        "conversations = [\"*\"]",
        "[\"*\"]",
    );
    let homes: Vec<Home> = (0..2).map(|_| node(&db, &config)).collect();
    let mut serves: Vec<Serve> = homes.iter().map(Serve::start).collect();
    for (n, home) in homes.iter().enumerate() {
        let line = format!("{}\n", event_in(&format!("tail-{n}"), "c-1"));
        home.append("events.ndjson", line.as_bytes());
    }
    receiver.wait_for_count(2, LONG);
    let positions = || -> Vec<String> {
        db.connect()
            .query(
                "SELECT file_key FROM spool_positions ORDER BY file_key",
                &[],
            )
            .expect("read the positions")
            .iter()
            .map(|row| row.get(0))
            .collect()
    };
    wait_for("a position per node", LONG, || positions().len() == 2);
    let before = positions();
    // A node that starts again sees the other's file nowhere in its own spool: it must
    // neither drop that position nor take it.
    serves.remove(0).kill();
    serves.insert(0, Serve::start(&homes[0]));
    let line = format!("{}\n", event_in("tail-again", "c-1"));
    homes[0].append("events.ndjson", line.as_bytes());
    receiver.wait_for_count(3, LONG);
    std::thread::sleep(Duration::from_millis(500));
    assert_eq!(positions(), before, "each node's position is its own");
    assert_eq!(receiver.count(), 3, "nothing read twice");
}
