//! The scheduler against the real binary: due work of many subscriptions is picked up
//! without waiting for a turn that comes once a second, `rate_limit` keeps every window
//! under its count (also across a restart) without spending retries, and
//! `ordering = "conversation"` delivers each conversation one at a time and in order,
//! under retries and a SIGKILL, holding back only the conversation of a retrying
//! delivery (which the API shows).

mod common;

use std::collections::HashMap;
use std::time::Duration;

use common::admin::{self, Api, API_TOKEN};
use common::{
    busiest_window, event_in, subscription, wait_for, Home, ProgrammableReceiver, Reply, Serve,
};

const LONG: Duration = Duration::from_secs(20);

/// The event ids a receiver answered 2xx, in the order it got them, duplicates included.
fn delivered_ids(receiver: &ProgrammableReceiver, answered_ok: &[bool]) -> Vec<String> {
    receiver
        .requests()
        .iter()
        .zip(answered_ok)
        .filter(|(_, ok)| **ok)
        .map(|(r, _)| r.event_id())
        .collect()
}

#[test]
fn due_work_of_the_last_of_many_subscriptions_is_not_left_waiting_for_its_turn() {
    // Two workers and 200 subscriptions posting to one receiver URL. The scheduler used
    // to offer its free workers to the next subscriptions in a rotation, due work or not,
    // and then sleep up to a second: an event for subscription 195 waited for the
    // rotation to come round, minutes. Later, with the endpoint's in-flight allowance
    // handed out before the claim, subscriptions without work used it up and the ones
    // with work waited a second per ten. Work due now is now claimed at once, whoever
    // has it.
    let receiver = ProgrammableReceiver::start(|_, _| Reply::status(204));
    let home = Home::new();
    let subscriptions: String = (0..200)
        .map(|n| {
            subscription(
                &format!("s{n}"),
                &format!("{}/hook", receiver.url),
                &format!("conversations = [\"c-{n}\"]"),
                "[\"*\"]",
            )
        })
        .collect();
    home.write_config(&format!(
        "[delivery]\nworkers = 2\nschedule = [\"100ms\"]\n{subscriptions}"
    ));
    let _serve = Serve::start(&home);
    let events: Vec<String> = (190..200)
        .map(|n| event_in(&format!("e{n}"), &format!("c-{n}")))
        .collect();
    home.drop_json("late.json", &format!("[{}]", events.join(",")));
    wait_for(
        "each of subscriptions 190-199 to get its event",
        Duration::from_secs(15),
        || receiver.count() >= 10,
    );
    let mut ids: Vec<String> = receiver.requests().iter().map(|r| r.event_id()).collect();
    ids.sort();
    let expected: Vec<String> = (190..200).map(|n| format!("e{n}")).collect();
    assert_eq!(ids, expected);
}

#[test]
fn rate_limit_keeps_every_window_under_its_count_and_waiting_spends_no_attempt() {
    let receiver = ProgrammableReceiver::start(|_, _| Reply::status(204));
    let other = ProgrammableReceiver::start(|_, _| Reply::status(204));
    let home = Home::new();
    home.write_config(&format!(
        "{}{}",
        subscription(
            "limited",
            &format!("{}/limited", receiver.url),
            "conversations = [\"c-1\"]\nrate_limit = \"4/s\"",
            "[\"*\"]",
        ),
        subscription(
            "free",
            &format!("{}/free", other.url),
            "conversations = [\"c-1\"]",
            "[\"*\"]",
        ),
    ));
    let _serve = Serve::start(&home);
    let events: Vec<String> = (0..14).map(|n| event_in(&format!("e{n}"), "c-1")).collect();
    home.drop_json("burst.json", &format!("[{}]", events.join(",")));

    // The other subscription of the same events is not slowed by the limit.
    other.wait_for_count(14, LONG);
    wait_for("all 14 limited deliveries", LONG, || {
        home.count("SELECT count(*) FROM deliveries WHERE subscription = 'limited' AND state = 'delivered'")
            == 14
    });
    let starts: Vec<i64> = home.query(
        "SELECT started_at FROM attempts WHERE subscription = 'limited' ORDER BY started_at",
    );
    assert_eq!(starts.len(), 14, "one attempt each: waiting is not failing");
    let busiest = busiest_window(&starts, 1_000);
    assert!(
        busiest <= 4,
        "at most 4 attempts may start in any second; one second held {busiest}: {starts:?}"
    );
    assert_eq!(
        home.count("SELECT max(attempts) FROM deliveries WHERE subscription = 'limited'"),
        1
    );
}

#[test]
fn rate_limit_window_is_kept_across_a_restart() {
    let receiver = ProgrammableReceiver::start(|_, _| Reply::status(204));
    let home = Home::new();
    home.write_config(&subscription(
        "limited",
        &format!("{}/limited", receiver.url),
        "conversations = [\"c-1\"]\nrate_limit = \"2/h\"",
        "[\"*\"]",
    ));
    let serve = Serve::start(&home);
    let events: Vec<String> = (0..4).map(|n| event_in(&format!("e{n}"), "c-1")).collect();
    home.drop_json("burst.json", &format!("[{}]", events.join(",")));
    receiver.wait_for_count(2, LONG);
    assert_eq!(serve.terminate(), Some(0));

    let serve = Serve::start(&home);
    // Proof that the restarted posthorn is delivering: a new event of another, unlimited
    // subscription would do, but the same one is simpler: wait until its scheduler has
    // turned (the pending two are due now) and has had its chance to send.
    wait_for("the restarted posthorn to log that it runs", LONG, || {
        serve.log().contains("posthorn is running")
    });
    std::thread::sleep(Duration::from_secs(2));
    assert_eq!(
        receiver.count(),
        2,
        "the hour's allowance was used before the restart; nothing more may go"
    );
    assert_eq!(
        home.count("SELECT count(*) FROM deliveries WHERE state = 'pending' AND attempts = 0"),
        2,
        "the two held back wait, with no attempt spent"
    );
}

/// For each conversation, the delivered event numbers in receipt order never go down
/// (a duplicate after a crash repeats one, it never goes back past a later one).
fn assert_in_order(delivered: &[String]) {
    let mut by_conversation: HashMap<String, Vec<usize>> = HashMap::new();
    for id in delivered {
        // ids are "<conversation>-<n>"
        let (conversation, n) = id.rsplit_once('-').expect("an id of the form c-n");
        by_conversation
            .entry(conversation.to_string())
            .or_default()
            .push(n.parse().expect("a number"));
    }
    for (conversation, seen) in by_conversation {
        assert!(
            seen.windows(2).all(|w| w[0] <= w[1]),
            "conversation {conversation} was delivered out of order: {seen:?}"
        );
    }
}

/// Whether the ordering test's receiver answers its request number `n` with a 2xx.
fn answered_ok(n: usize) -> bool {
    n % 3 != 2
}

#[test]
fn ordered_subscription_delivers_each_conversation_in_order_under_retries_and_sigkill() {
    // Every third request fails: retries would let later events overtake earlier ones.
    let receiver =
        ProgrammableReceiver::start(|n, _| Reply::status(if answered_ok(n) { 204 } else { 500 }));
    let home = Home::new();
    let config = format!(
        "[delivery]\nschedule = [\"50ms\", \"50ms\", \"100ms\", \"100ms\", \"200ms\", \"200ms\", \
         \"200ms\", \"200ms\"]\ntimeout = \"2s\"\n{}",
        subscription(
            "ordered",
            &format!("{}/ordered", receiver.url),
            "conversations = [\"*\"]\nordering = \"conversation\"",
            "[\"*\"]",
        )
    );
    home.write_config(&config);
    let serve = Serve::start(&home);
    let mut lines = String::new();
    for n in 0..12 {
        for conversation in ["ca", "cb", "cc"] {
            lines.push_str(&event_in(&format!("{conversation}-{n}"), conversation));
            lines.push('\n');
        }
    }
    home.append("stream.ndjson", lines.as_bytes());
    wait_for("a third of the events to arrive", LONG, || {
        receiver.count() >= 12
    });
    serve.kill();
    let _serve = Serve::start(&home);
    // On PostgreSQL a start does not take back the leases a killed node held (other nodes
    // may hold live ones): such a delivery, and its conversation, wait until the lease
    // ends, twice the 2 s timeout plus 30 s after the claim.
    let after_kill = match home.pg {
        Some(_) => LONG + Duration::from_secs(2 * 2 + 30),
        None => LONG,
    };
    wait_for("all 36 deliveries to be delivered", after_kill, || {
        home.count("SELECT count(*) FROM deliveries WHERE state = 'delivered'") == 36
    });
    let answered: Vec<bool> = (0..receiver.count()).map(answered_ok).collect();
    let delivered = delivered_ids(&receiver, &answered);
    assert!(
        answered.iter().any(|ok| !ok),
        "the receiver failed some requests"
    );
    assert_in_order(&delivered);
    // One at a time: no request for an event went out while an earlier event of its
    // conversation was still unanswered with a 2xx, except repeats of delivered ones.
    let mut done: HashMap<String, usize> = HashMap::new();
    for (request, ok) in receiver.requests().iter().zip(&answered) {
        let id = request.event_id();
        let (conversation, n) = id.rsplit_once('-').unwrap();
        let n: usize = n.parse().unwrap();
        let next = done.get(conversation).map_or(0, |d| d + 1);
        assert!(
            n <= next,
            "{id} was sent while event {next} of its conversation was not yet delivered"
        );
        if *ok && n == next {
            done.insert(conversation.to_string(), n);
        }
    }
}

#[test]
fn a_retrying_delivery_holds_back_only_its_own_conversation_and_the_api_says_behind_what() {
    // The first event of conversation "stuck" is answered 503 with Retry-After: an hour.
    let receiver = ProgrammableReceiver::start(|_, recorded| {
        if recorded.event_id() == "stuck-0" {
            Reply::status(503).header("Retry-After", "3600")
        } else {
            Reply::status(204)
        }
    });
    let home = Home::new();
    let _serve = admin::start(
        &home,
        &subscription(
            "ordered",
            &format!("{}/ordered", receiver.url),
            "conversations = [\"*\"]\nordering = \"conversation\"",
            "[\"*\"]",
        ),
    );
    let mut lines = String::new();
    for n in 0..3 {
        for conversation in ["stuck", "free"] {
            lines.push_str(&event_in(&format!("{conversation}-{n}"), conversation));
            lines.push('\n');
        }
    }
    home.append("stream.ndjson", lines.as_bytes());
    wait_for("the free conversation to be delivered", LONG, || {
        home.count(
            "SELECT count(*) FROM deliveries WHERE event_id LIKE 'free-%' AND state = 'delivered'",
        ) == 3
    });
    wait_for("stuck-0 to have failed once", LONG, || {
        home.count("SELECT attempts FROM deliveries WHERE event_id = 'stuck-0'") == 1
    });
    let sent: Vec<String> = receiver.requests().iter().map(|r| r.event_id()).collect();
    assert!(
        !sent.iter().any(|id| id == "stuck-1" || id == "stuck-2"),
        "the later events of the retrying conversation wait: {sent:?}"
    );

    let api = Api::token(&home, API_TOKEN);
    let id_of = |event: &str| {
        home.count(&format!(
            "SELECT id FROM deliveries WHERE event_id = '{event}'"
        ))
    };
    let head = api
        .get(&format!("/api/v1/deliveries/{}", id_of("stuck-0")))
        .expect(200)
        .json();
    assert_eq!(head["line"]["held_behind"], serde_json::Value::Null);
    assert_eq!(head["line"]["waiting_behind"], 2);
    let held = api
        .get(&format!("/api/v1/deliveries/{}", id_of("stuck-2")))
        .expect(200)
        .json();
    assert_eq!(held["line"]["conversation_id"], "stuck");
    assert_eq!(held["line"]["held_behind"]["delivery_id"], id_of("stuck-0"));
    assert_eq!(held["line"]["held_behind"]["event_id"], "stuck-0");
    assert_eq!(held["line"]["held_behind"]["state"], "pending");
}
