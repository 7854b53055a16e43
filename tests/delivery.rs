//! Delivery end to end, against receivers on 127.0.0.1: the Standard Webhooks signature
//! (checked by the receiver's own HMAC code), `webhook-id` stable across attempts while
//! the timestamp and signature are fresh per attempt, secret rotation, hex signatures with
//! a custom header and prefix, custom headers, retries after failures, dead deliveries
//! once the schedule is used up, `Retry-After` on 429 and 503, redirects not followed, a
//! receiver that is down, a receiver slower than the timeout, the per-endpoint in-flight
//! cap, the stored response snippet and its bound, and a clean exit on SIGTERM that lets
//! the attempt in flight finish.

mod common;

use std::collections::BTreeSet;
use std::time::Duration;

use common::{
    subscription, wait_for, Answer, Home, ProgrammableReceiver, Receiver, Recorded, Reply, Serve,
    SECRET,
};

/// A second valid Standard Webhooks secret (32 bytes 0..=31), for rotation.
const NEW_SECRET: &str = "whsec_AAECAwQFBgcICQoLDA0ODxAREhMUFRYXGBkaGxwdHh8=";

const LONG: Duration = Duration::from_secs(15);

fn event(id: &str) -> String {
    format!(
        r#"{{"id":"{id}","type":"conversation.started","conversation_id":"c-204","project_id":"p-9","data":{{"n":1}}}}"#
    )
}

/// A subscription taking every conversation event of c-204.
fn hook(name: &str, url: &str, extra: &str) -> String {
    subscription(
        name,
        url,
        &format!("conversations = [\"c-204\"]\n{extra}"),
        r#"["conversation.*"]"#,
    )
}

/// One row of the `attempts` table.
#[derive(Debug, Clone)]
struct Attempt {
    attempt: i64,
    started_at: i64,
    duration_ms: i64,
    status: Option<i64>,
    error: Option<String>,
    snippet: Option<String>,
}

/// One row of the `deliveries` table.
#[derive(Debug, Clone)]
struct Delivery {
    state: String,
    attempts: i64,
    next_attempt_at: Option<i64>,
    last_status: Option<i64>,
}

fn attempts(home: &Home, event_id: &str) -> Vec<Attempt> {
    home.rows(
        "SELECT a.attempt, a.started_at, a.duration_ms, a.status, a.error, a.response_snippet
         FROM attempts a JOIN deliveries d ON d.id = a.delivery_id
         WHERE d.event_id = ?1 ORDER BY a.attempt",
        &[&event_id],
    )
    .iter()
    .map(|row| Attempt {
        attempt: row.get(0),
        started_at: row.get(1),
        duration_ms: row.get(2),
        status: row.get(3),
        error: row.get(4),
        snippet: row.get(5),
    })
    .collect()
}

fn delivery(home: &Home, event_id: &str) -> Option<Delivery> {
    home.row(
        "SELECT state, attempts, next_attempt_at, last_status FROM deliveries WHERE event_id = ?1",
        &[&event_id],
    )
    .map(|row| Delivery {
        state: row.get(0),
        attempts: row.get(1),
        next_attempt_at: row.get(2),
        last_status: row.get(3),
    })
}

/// Waits until the delivery of `event_id` is in `state`, then returns it.
fn wait_for_state(home: &Home, event_id: &str, state: &str) -> Delivery {
    let mut last = None;
    let deadline = std::time::Instant::now() + LONG;
    while std::time::Instant::now() < deadline {
        last = delivery(home, event_id);
        if last.as_ref().is_some_and(|d| d.state == state) {
            return last.unwrap_or_else(|| unreachable!());
        }
        std::thread::sleep(Duration::from_millis(20));
    }
    panic!(
        "expected the delivery of {event_id} to become {state:?} within {LONG:?}; it is {last:?}"
    );
}

fn statuses(attempts: &[Attempt]) -> Vec<Option<i64>> {
    attempts.iter().map(|a| a.status).collect()
}

fn verify(request: &Recorded, secret: &str) {
    if let Err(err) = request.verify_standard(secret) {
        panic!(
            "the receiver could not verify request {} with the secret: {err}",
            request.path
        );
    }
}

#[test]
fn webhook_id_is_the_event_id_on_every_attempt_while_timestamp_and_signature_are_fresh() {
    // The retry waits 1.5 s (±10 %), so the two attempts fall in different unix seconds.
    let receiver = Receiver::with_script(vec![Answer::status(500)], Answer::status(200));
    let home = Home::new();
    home.write_config(&format!(
        "[delivery]\nschedule = [\"1500ms\"]\ntimeout = \"2s\"\n{}",
        hook("north", &format!("{}/hook", receiver.url), "")
    ));
    let _serve = Serve::start(&home);
    home.drop_json("e.json", &event("evt_stable"));
    receiver.wait_for_count(2, LONG);
    wait_for_state(&home, "evt_stable", "delivered");

    let requests = receiver.requests();
    let now = std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map(|d| d.as_secs() as i64)
        .unwrap_or(0);
    let mut timestamps = Vec::new();
    for request in &requests {
        verify(request, SECRET);
        assert_eq!(
            request.header("webhook-id"),
            Some("evt_stable"),
            "webhook-id on every attempt"
        );
        assert_eq!(request.header("content-type"), Some("application/json"));
        let timestamp: i64 = request
            .header("webhook-timestamp")
            .and_then(|t| t.parse().ok())
            .unwrap_or_else(|| panic!("webhook-timestamp is not unix seconds: {request:?}"));
        assert!(
            (now - 300..=now + 5).contains(&timestamp),
            "webhook-timestamp {timestamp} should be the time of the attempt (now is {now})"
        );
        timestamps.push(timestamp);
    }
    assert!(
        timestamps[1] > timestamps[0],
        "each attempt carries its own timestamp; got {timestamps:?}"
    );
    assert_ne!(
        requests[0].header("webhook-signature"),
        requests[1].header("webhook-signature"),
        "a fresh timestamp means a fresh signature"
    );
    assert_eq!(
        requests[0].body, requests[1].body,
        "every attempt sends the same body"
    );
    let body = requests[0].json();
    assert_eq!(body["id"], "evt_stable");
    assert_eq!(body["type"], "conversation.started");
    assert_eq!(body["conversation_id"], "c-204");
    assert_eq!(body["project_id"], "p-9");
    assert_eq!(body["data"], serde_json::json!({"n": 1}));
    assert!(
        body["timestamp"].is_string(),
        "timestamp is the receive time when occurred_at is absent: {body}"
    );
}

#[test]
fn during_rotation_each_secret_gets_its_own_signature_and_each_verifies() {
    let receiver = Receiver::start(200);
    let home = Home::new();
    let rotating = subscription(
        "rotating",
        &format!("{}/hook", receiver.url),
        r#"conversations = ["c-204"]"#,
        r#"["conversation.*"]"#,
    )
    .replace(
        &format!("secret = {SECRET:?}"),
        &format!("secret = \"{NEW_SECRET} {SECRET}\""),
    );
    assert!(rotating.contains(NEW_SECRET), "the test config rotates");
    home.write_config(&rotating);
    let _serve = Serve::start(&home);
    home.drop_json("e.json", &event("evt_rotate"));
    receiver.wait_for_count(1, LONG);

    let request = &receiver.requests()[0];
    let header = request.header("webhook-signature").unwrap_or_default();
    let parts: Vec<&str> = header.split(' ').collect();
    assert_eq!(
        parts.len(),
        2,
        "one signature per secret, space separated; got {header:?}"
    );
    assert!(
        parts.iter().all(|p| p.starts_with("v1,")),
        "each signature is v1,<base64>; got {header:?}"
    );
    verify(request, NEW_SECRET);
    verify(request, SECRET);
    assert!(
        request
            .verify_standard("whsec_c2VjcmV0LXRoYXQtd2FzLW5ldmVyLWNvbmZpZ3VyZWQ=")
            .is_err(),
        "a secret that was not configured must not verify"
    );
}

#[test]
fn hex_signatures_use_the_configured_header_and_prefix() {
    let receiver = Receiver::start(200);
    let home = Home::new();
    let hex = |name: &str, extra: &str| {
        format!(
            "\n[[subscription]]\nname = {name:?}\nurl = \"{}/{name}\"\nconversations = [\"c-204\"]\n\
             events = [\"conversation.*\"]\nsecret = \"plain-shared-secret\"\nsignature = \"hex\"\n{extra}",
            receiver.url
        )
    };
    home.write_config(
        &(hex(
            "custom",
            "signature_header = \"X-Dembrane-Signature\"\nsignature_prefix = \"sha256=\"\n",
        ) + &hex("default", "")),
    );
    let _serve = Serve::start(&home);
    home.drop_json("e.json", &event("evt_hex"));
    receiver.wait_for_count(2, LONG);

    let custom = &receiver.at("/custom")[0];
    if let Err(err) = custom.verify_hex("plain-shared-secret", "X-Dembrane-Signature", "sha256=") {
        panic!("hex signature under the configured header and prefix: {err}");
    }
    assert_eq!(
        custom.header("webhook-signature"),
        None,
        "a hex subscription sends no Standard Webhooks signature"
    );
    let default = &receiver.at("/default")[0];
    if let Err(err) = default.verify_hex("plain-shared-secret", "X-Webhook-Signature", "") {
        panic!("hex signature under the default header with no prefix: {err}");
    }
    assert_eq!(default.header("webhook-id"), Some("evt_hex"));
}

#[test]
fn configured_headers_are_sent_with_every_request() {
    let receiver = Receiver::start(200);
    let home = Home::new();
    home.write_config(&hook(
        "north",
        &format!("{}/hook", receiver.url),
        r#"headers = { "X-Team" = "north", "Authorization" = "Bearer not-a-secret" }"#,
    ));
    let _serve = Serve::start(&home);
    home.drop_json("e.json", &event("evt_headers"));
    receiver.wait_for_count(1, LONG);
    let request = &receiver.requests()[0];
    assert_eq!(request.header("x-team"), Some("north"));
    assert_eq!(request.header("authorization"), Some("Bearer not-a-secret"));
    verify(request, SECRET);
}

#[test]
fn a_receiver_that_fails_twice_gets_the_event_on_the_third_attempt() {
    let receiver = Receiver::with_script(
        vec![Answer::status(500), Answer::status(500)],
        Answer::status(200),
    );
    let home = Home::new();
    home.write_config(&hook("north", &format!("{}/hook", receiver.url), ""));
    let _serve = Serve::start(&home);
    home.drop_json("e.json", &event("evt_retry"));

    let delivered = wait_for_state(&home, "evt_retry", "delivered");
    assert_eq!(
        delivered.attempts, 3,
        "delivered on attempt 3: {delivered:?}"
    );
    assert_eq!(delivered.last_status, Some(200));
    assert_eq!(
        delivered.next_attempt_at, None,
        "a delivered delivery is final"
    );
    let attempts = attempts(&home, "evt_retry");
    assert_eq!(
        attempts.iter().map(|a| a.attempt).collect::<Vec<_>>(),
        vec![1, 2, 3],
        "every attempt is kept: {attempts:?}"
    );
    assert_eq!(
        statuses(&attempts),
        vec![Some(500), Some(500), Some(200)],
        "each attempt records the status it got"
    );
    assert_eq!(receiver.count(), 3, "three requests reached the receiver");
    for request in receiver.requests() {
        verify(&request, SECRET);
    }
}

#[test]
fn a_delivery_is_dead_once_the_schedule_is_used_up_and_stays_in_the_store() {
    let receiver = Receiver::start(500);
    let home = Home::new();
    // The default test schedule: two retries, so three attempts.
    home.write_config(&hook("north", &format!("{}/hook", receiver.url), ""));
    let _serve = Serve::start(&home);
    home.drop_json("e.json", &event("evt_dead"));

    let dead = wait_for_state(&home, "evt_dead", "dead");
    assert_eq!(
        dead.attempts, 3,
        "schedule of 2 waits means 3 attempts: {dead:?}"
    );
    assert_eq!(
        dead.next_attempt_at, None,
        "a dead delivery is not scheduled again"
    );
    assert_eq!(dead.last_status, Some(500));
    assert_eq!(
        statuses(&attempts(&home, "evt_dead")),
        vec![Some(500); 3],
        "every attempt is kept with its status"
    );
    assert_eq!(
        home.count("SELECT count(*) FROM events WHERE id = 'evt_dead'"),
        1,
        "the event stays in the store"
    );
    // Longer than any wait in the schedule: no fourth attempt comes.
    std::thread::sleep(Duration::from_secs(1));
    assert_eq!(
        receiver.count(),
        3,
        "a dead delivery is not attempted again"
    );
    assert_eq!(
        delivery(&home, "evt_dead").map(|d| d.state),
        Some("dead".to_string())
    );
}

#[test]
fn retry_after_on_429_and_503_replaces_the_scheduled_wait() {
    // The schedule says 30 s; the receivers ask for 1 s. Without Retry-After the second
    // attempt could not come within the test's limit at all.
    let home = Home::new();
    let receivers: Vec<(u16, Receiver)> = [429, 503]
        .into_iter()
        .map(|status| {
            let answer = Answer {
                status,
                retry_after: Some("1".to_string()),
                delay: Duration::ZERO,
            };
            (
                status,
                Receiver::with_script(vec![answer], Answer::status(200)),
            )
        })
        .collect();
    let mut config = "[delivery]\nschedule = [\"30s\", \"30s\"]\ntimeout = \"2s\"\n".to_string();
    for (status, receiver) in &receivers {
        config.push_str(&subscription(
            &format!("s{status}"),
            &format!("{}/hook", receiver.url),
            &format!("conversations = [\"c-{status}\"]"),
            r#"["conversation.*"]"#,
        ));
    }
    home.write_config(&config);
    let _serve = Serve::start(&home);
    home.drop_json(
        "e.json",
        r#"[{"id":"evt_429","type":"conversation.started","conversation_id":"c-429"},
            {"id":"evt_503","type":"conversation.started","conversation_id":"c-503"}]"#,
    );
    for (status, _receiver) in &receivers {
        let id = format!("evt_{status}");
        wait_for_state(&home, &id, "delivered");
        let attempts = attempts(&home, &id);
        assert_eq!(
            statuses(&attempts),
            vec![Some(i64::from(*status)), Some(200)],
            "{id}: refused once, then taken"
        );
        let first_ended = attempts[0].started_at + attempts[0].duration_ms;
        let gap = attempts[1].started_at - first_ended;
        assert!(
            (900..10_000).contains(&gap),
            "{id}: the retry should come about 1 s after the {status} (Retry-After: 1), \
             not after the scheduled 30 s; it came {gap} ms later"
        );
    }
}

#[test]
fn redirects_are_not_followed_and_count_as_failures() {
    let receiver = ProgrammableReceiver::start(|_, request| {
        if request.path == "/hook" {
            Reply::status(302).header("Location", "/moved")
        } else {
            Reply::status(200)
        }
    });
    let home = Home::new();
    home.write_config(&format!(
        "[delivery]\nschedule = [\"100ms\"]\ntimeout = \"2s\"\n{}",
        hook("north", &format!("{}/hook", receiver.url), "")
    ));
    let _serve = Serve::start(&home);
    home.drop_json("e.json", &event("evt_redirect"));

    let dead = wait_for_state(&home, "evt_redirect", "dead");
    assert_eq!(dead.attempts, 2, "a 302 is a failed attempt: {dead:?}");
    let attempts = attempts(&home, "evt_redirect");
    assert_eq!(statuses(&attempts), vec![Some(302), Some(302)]);
    assert!(
        attempts
            .iter()
            .all(|a| a.error.as_deref().is_some_and(|e| e.contains("redirect"))),
        "each attempt says the redirect was not followed: {attempts:?}"
    );
    let paths: Vec<String> = receiver.requests().into_iter().map(|r| r.path).collect();
    assert_eq!(
        paths,
        vec!["/hook".to_string(), "/hook".to_string()],
        "the Location was never requested"
    );
}

#[test]
fn a_receiver_that_is_down_is_retried_until_it_comes_up() {
    // A port nobody listens on: bind it, note it, let it go.
    let port = std::net::TcpListener::bind("127.0.0.1:0")
        .and_then(|l| l.local_addr())
        .map(|a| a.port())
        .expect("a free port");
    let home = Home::new();
    home.write_config(&format!(
        "[delivery]\nschedule = [{}]\ntimeout = \"2s\"\n{}",
        vec!["\"200ms\""; 40].join(", "),
        hook("north", &format!("http://127.0.0.1:{port}/hook"), "")
    ));
    let _serve = Serve::start(&home);
    home.drop_json("e.json", &event("evt_down"));

    wait_for("two failed attempts against the closed port", LONG, || {
        attempts(&home, "evt_down").len() >= 2
    });
    let failed = attempts(&home, "evt_down");
    for attempt in &failed {
        assert_eq!(attempt.status, None, "no HTTP status when nothing answers");
        let error = attempt.error.as_deref().unwrap_or_default().to_lowercase();
        assert!(
            error.contains("connect"),
            "the attempt names the connection problem; got {attempt:?}"
        );
    }
    assert_eq!(
        delivery(&home, "evt_down").map(|d| d.state),
        Some("pending".to_string()),
        "still pending while retries remain"
    );

    let receiver =
        ProgrammableReceiver::start_at(&format!("127.0.0.1:{port}"), |_, _| Reply::status(200))
            .unwrap_or_else(|err| panic!("could not bring the receiver up on port {port}: {err}"));
    let delivered = wait_for_state(&home, "evt_down", "delivered");
    assert!(
        delivered.attempts >= 3,
        "delivered after the failed attempts: {delivered:?}"
    );
    assert_eq!(receiver.count(), 1, "the receiver got the event once");
    verify(&receiver.requests()[0], SECRET);
}

#[test]
fn a_receiver_slower_than_the_timeout_is_cut_off_and_the_attempt_says_timed_out() {
    let receiver = ProgrammableReceiver::start(|n, _| {
        if n == 0 {
            Reply::status(200).delay(Duration::from_secs(3))
        } else {
            Reply::status(200)
        }
    });
    let home = Home::new();
    home.write_config(&format!(
        "[delivery]\nschedule = [\"100ms\", \"100ms\"]\ntimeout = \"1s\"\n{}",
        hook("north", &format!("{}/hook", receiver.url), "")
    ));
    let _serve = Serve::start(&home);
    home.drop_json("e.json", &event("evt_slow"));

    let delivered = wait_for_state(&home, "evt_slow", "delivered");
    assert_eq!(delivered.attempts, 2, "{delivered:?}");
    let attempts = attempts(&home, "evt_slow");
    let first = &attempts[0];
    assert_eq!(
        first.status, None,
        "no status from an attempt cut off: {first:?}"
    );
    assert!(
        first
            .error
            .as_deref()
            .is_some_and(|e| e.contains("timed out")),
        "the first attempt records a timeout: {first:?}"
    );
    assert!(
        first.duration_ms < 2_500,
        "the attempt ends at the 1 s timeout, not when the receiver answers after 3 s: {first:?}"
    );
    assert_eq!(attempts[1].status, Some(200));
}

#[test]
fn no_endpoint_gets_more_than_max_in_flight_per_endpoint_attempts_at_once() {
    let slow =
        ProgrammableReceiver::start(|_, _| Reply::status(200).delay(Duration::from_millis(700)));
    let fast = ProgrammableReceiver::start(|_, _| Reply::status(200));
    let home = Home::new();
    home.write_config(&format!(
        "[delivery]\nschedule = [\"100ms\"]\ntimeout = \"5s\"\nworkers = 4\nmax_in_flight_per_endpoint = 2\n{}{}",
        subscription(
            "slow",
            &format!("{}/slow", slow.url),
            r#"conversations = ["c-slow"]"#,
            r#"["conversation.*"]"#
        ),
        subscription(
            "fast",
            &format!("{}/fast", fast.url),
            r#"conversations = ["c-fast"]"#,
            r#"["conversation.*"]"#
        ),
    ));
    let _serve = Serve::start(&home);
    let slow_events: Vec<String> = (0..8)
        .map(|n| {
            format!(
                r#"{{"id":"slow-{n}","type":"conversation.started","conversation_id":"c-slow"}}"#
            )
        })
        .collect();
    home.drop_json("slow.json", &format!("[{}]", slow_events.join(",")));
    wait_for("the slow receiver to be busy", LONG, || slow.active() > 0);
    home.drop_json(
        "fast.json",
        r#"{"id":"fast-1","type":"conversation.started","conversation_id":"c-fast"}"#,
    );
    fast.wait_for_count(1, LONG);
    let slow_done_when_fast_arrived = home.count(
        "SELECT count(*) FROM deliveries WHERE subscription = 'slow' AND state = 'delivered'",
    );
    assert!(
        slow_done_when_fast_arrived < 8,
        "a slow endpoint must not hold back another: the fast one waited for all 8 slow ones"
    );

    wait_for("all 8 slow deliveries to be delivered", LONG, || {
        home.count(
            "SELECT count(*) FROM deliveries WHERE subscription = 'slow' AND state = 'delivered'",
        ) == 8
    });
    assert_eq!(
        slow.peak_concurrency(),
        2,
        "the slow endpoint should see exactly max_in_flight_per_endpoint = 2 requests at once"
    );
    let ids: BTreeSet<String> = slow.requests().iter().map(Recorded::event_id).collect();
    assert_eq!(ids.len(), 8, "every slow event arrived: {ids:?}");
    assert!(
        (1..=2).contains(&slow.connections()),
        "8 requests, at most 2 at once, should reuse kept-alive connections; the receiver \
         accepted {} connections",
        slow.connections()
    );
}

#[test]
fn the_response_snippet_is_stored_and_cut_at_4_kib() {
    let big: String = "0123456789".repeat(1000);
    let answer_big = big.clone();
    let receiver = ProgrammableReceiver::start(move |n, _| {
        if n == 0 {
            Reply::status(500).body(answer_big.clone())
        } else {
            Reply::status(200).body("thanks")
        }
    });
    let home = Home::new();
    home.write_config(&hook("north", &format!("{}/hook", receiver.url), ""));
    let _serve = Serve::start(&home);
    home.drop_json("e.json", &event("evt_snippet"));

    wait_for_state(&home, "evt_snippet", "delivered");
    let attempts = attempts(&home, "evt_snippet");
    let first = attempts[0].snippet.clone().unwrap_or_default();
    assert_eq!(
        first.len(),
        4096,
        "a 10,000-byte answer is kept as its first 4 KiB"
    );
    assert_eq!(first, big[..4096], "the snippet is the start of the answer");
    assert_eq!(attempts[0].status, Some(500));
    assert_eq!(attempts[1].snippet.as_deref(), Some("thanks"));
}

#[test]
fn sigterm_lets_the_attempt_in_flight_finish_and_exits_0() {
    let receiver =
        ProgrammableReceiver::start(|_, _| Reply::status(200).delay(Duration::from_secs(1)));
    let home = Home::new();
    home.write_config(&hook("north", &format!("{}/hook", receiver.url), ""));
    let serve = Serve::start(&home);
    home.drop_json("e.json", &event("evt_shutdown"));
    receiver.wait_for_count(1, LONG);
    assert_eq!(receiver.active(), 1, "the attempt is in flight at SIGTERM");

    assert_eq!(serve.terminate(), Some(0), "serve exits 0 on SIGTERM");
    let after = delivery(&home, "evt_shutdown");
    assert_eq!(
        after.as_ref().map(|d| (d.state.as_str(), d.attempts)),
        Some(("delivered", 1)),
        "the attempt in flight finished and was recorded before exit: {after:?}"
    );
    assert_eq!(statuses(&attempts(&home, "evt_shutdown")), vec![Some(200)]);
}
