//! The crash test: `posthorn serve` is SIGKILLed several times, at random moments, while
//! a producer streams events into `.ndjson` files (some lines written in two pieces) and
//! `.json` files, and while deliveries to a receiver that fails every fifth request are
//! in flight. After the last restart, every event written must have reached the receiver
//! at least once, be stored exactly once, and no line may have been misread.

mod common;

use std::collections::{HashMap, HashSet};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use rand::rngs::StdRng;
use rand::{Rng as _, SeedableRng as _};

use common::{catch_all, spool_event, wait_for, Home, ProgrammableReceiver, Reply, Serve};

const EVENTS: usize = 2000;
const KILLS: usize = 5;
const DRAIN: Duration = Duration::from_secs(60);

/// Writes `EVENTS` events the way a platform would, in bursts, and returns their ids.
fn produce(home: &Home, seed: u64) -> Vec<String> {
    let mut rng = StdRng::seed_from_u64(seed);
    let mut written = Vec::with_capacity(EVENTS);
    while written.len() < EVENTS {
        let burst = rng.random_range(1..=20).min(EVENTS - written.len());
        let ids: Vec<String> = (written.len()..written.len() + burst)
            .map(|n| format!("crash-{n}"))
            .collect();
        if rng.random_range(0..10) < 7 {
            let file = if rng.random_bool(0.5) {
                "a.ndjson"
            } else {
                "b.ndjson"
            };
            let text: String = ids.iter().map(|id| spool_event(id) + "\n").collect();
            if rng.random_bool(0.3) {
                // A torn write: posthorn may look (or die) between the two halves.
                let cut = rng.random_range(1..text.len());
                home.append(file, &text.as_bytes()[..cut]);
                std::thread::sleep(Duration::from_millis(rng.random_range(1..5)));
                home.append(file, &text.as_bytes()[cut..]);
            } else {
                home.append(file, text.as_bytes());
            }
        } else {
            let items: Vec<String> = ids.iter().map(|id| spool_event(id)).collect();
            let content = if items.len() == 1 {
                items[0].clone()
            } else {
                format!("[{}]", items.join(",\n"))
            };
            home.drop_json(&format!("batch-{}.json", written.len()), &content);
        }
        written.extend(ids);
        std::thread::sleep(Duration::from_millis(rng.random_range(4..16)));
    }
    written
}

#[test]
fn every_event_is_delivered_and_stored_once_despite_repeated_sigkills() {
    let seed = std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map(|d| d.as_nanos() as u64)
        .unwrap_or(7);
    println!("crash test seed: {seed}");
    let mut rng = StdRng::seed_from_u64(seed ^ 0x5eed);

    // Event ids the receiver accepted (answered 2xx), and how often.
    let accepted: Arc<Mutex<HashMap<String, usize>>> = Arc::default();
    let receiver = {
        let accepted = Arc::clone(&accepted);
        ProgrammableReceiver::start(move |n, request| {
            // Every fifth request fails, and answers take a moment, so retries and
            // attempts are in flight whenever posthorn is killed.
            let delay = Duration::from_millis((n % 3) as u64);
            if n % 5 == 4 {
                return Reply::status(500).delay(delay);
            }
            let id = request.header("webhook-id").unwrap_or_default().to_string();
            *accepted.lock().unwrap().entry(id).or_default() += 1;
            Reply::status(200).delay(delay)
        })
    };

    let home = Home::new();
    // A long schedule of short waits: no delivery may go dead in this test.
    let schedule = vec!["\"50ms\""; 40].join(", ");
    let mut body = format!("[delivery]\nschedule = [{schedule}]\ntimeout = \"3s\"\n");
    body.push_str(&catch_all(&receiver.url));
    home.write_config(&body);

    let started = Instant::now();
    let mut logs = Vec::new();
    let (written, serve) = std::thread::scope(|scope| {
        let producer = scope.spawn(|| produce(&home, seed));
        let mut serve = Serve::start(&home);
        for _ in 0..KILLS {
            std::thread::sleep(Duration::from_millis(rng.random_range(150..700)));
            logs.push(serve.log());
            serve.kill();
            // Down for a moment while events keep coming.
            std::thread::sleep(Duration::from_millis(rng.random_range(0..150)));
            serve = Serve::start(&home);
        }
        let written = producer.join().expect("the producer finished");
        (written, serve)
    });
    println!(
        "{} events written and {KILLS} kills in {:?}",
        written.len(),
        started.elapsed()
    );
    assert_eq!(written.len(), EVENTS);

    wait_for(
        "every written event to be accepted by the receiver",
        DRAIN,
        || {
            let accepted = accepted.lock().unwrap();
            written.iter().all(|id| accepted.contains_key(id))
        },
    );
    wait_for("every delivery to be marked delivered", DRAIN, || {
        home.count("SELECT count(*) FROM deliveries WHERE state != 'delivered'") == 0
    });
    logs.push(serve.log());

    let stored: Vec<String> = home.query("SELECT id FROM events");
    assert_eq!(stored.len(), EVENTS, "events stored more or less than once");
    let stored: HashSet<String> = stored.into_iter().collect();
    let missing: Vec<&String> = written.iter().filter(|id| !stored.contains(*id)).collect();
    assert!(missing.is_empty(), "events never stored: {missing:?}");
    assert_eq!(
        home.count("SELECT count(*) FROM deliveries"),
        EVENTS as i64,
        "one delivery per event and subscription"
    );
    let rejections = home.rejections();
    assert!(
        rejections.is_empty(),
        "a line was read torn or from the wrong place: {:#?}",
        &rejections[..rejections.len().min(5)]
    );
    for (run, log) in logs.iter().enumerate() {
        assert!(!log.contains("panicked"), "run {run} panicked:\n{log}");
    }

    let accepted = accepted.lock().unwrap();
    let again = accepted.values().filter(|n| **n > 1).count();
    let recovered = logs
        .iter()
        .filter(|log| log.contains("returned deliveries leased before a crash"))
        .count();
    println!(
        "{} requests; {again} events accepted more than once; {recovered} restarts recovered leased deliveries; {:?} in all",
        receiver.count(),
        started.elapsed()
    );
}
