//! Routing end to end: one `posthorn serve` with several subscriptions (each posting to
//! its own path on one receiver) and a set of events that exercise conversation ids,
//! conversation globs, project scope, event-type globs, a subscription scoped to both, a
//! disabled subscription, an event without a conversation id, and an event nobody takes.
//! Each path must receive exactly the events its subscription names, and nothing else.

mod common;

use std::collections::{BTreeMap, BTreeSet};
use std::time::Duration;

use common::{subscription, wait_for, Home, Receiver, Serve, SECRET};

/// The event ids the receiver got at each path, every request's signature checked.
fn ids_by_path(receiver: &Receiver) -> BTreeMap<String, BTreeSet<String>> {
    let mut by_path: BTreeMap<String, BTreeSet<String>> = BTreeMap::new();
    for request in receiver.requests() {
        if let Err(err) = request.verify_standard(SECRET) {
            panic!("request to {} has a bad signature: {err}", request.path);
        }
        by_path
            .entry(request.path.clone())
            .or_default()
            .insert(request.event_id());
    }
    by_path
}

fn set(ids: &[&str]) -> BTreeSet<String> {
    ids.iter().map(|id| id.to_string()).collect()
}

#[test]
fn each_subscription_receives_exactly_the_events_its_scope_and_patterns_name() {
    let receiver = Receiver::start(200);
    let url = |path: &str| format!("{}{path}", receiver.url);
    let home = Home::new();
    let subscriptions = [
        // A literal conversation id and an event-type glob.
        subscription(
            "by-id",
            &url("/by-id"),
            r#"conversations = ["c-204"]"#,
            r#"["conversation.*"]"#,
        ),
        // A conversation glob and one literal event type.
        subscription(
            "by-glob",
            &url("/by-glob"),
            r#"conversations = ["c-2*"]"#,
            r#"["conversation.ended"]"#,
        ),
        // Project scope only: takes events with or without a conversation id.
        subscription(
            "by-project",
            &url("/by-project"),
            r#"projects = ["p-9"]"#,
            r#"["*"]"#,
        ),
        // Every conversation, but only report events: one without a conversation id
        // must not match.
        subscription(
            "every-conversation",
            &url("/every-conversation"),
            r#"conversations = ["*"]"#,
            r#"["report.generated"]"#,
        ),
        // Both scopes: both must match.
        subscription(
            "both-scopes",
            &url("/both-scopes"),
            "conversations = [\"c-204\"]\nprojects = [\"p-1\"]",
            r#"["conversation.*"]"#,
        ),
        // Paused: would take everything if it were enabled.
        subscription(
            "paused",
            &url("/paused"),
            "conversations = [\"*\"]\nprojects = [\"*\"]\nenabled = false",
            r#"["*"]"#,
        ),
    ];
    home.write_config(&subscriptions.concat());
    let _serve = Serve::start(&home);

    // One file, so every event (the one nobody takes included) is stored in the same
    // transaction as the deliveries of the others.
    home.drop_json(
        "batch.json",
        r#"[
        {"id":"e-started-204","type":"conversation.started","conversation_id":"c-204","project_id":"p-9"},
        {"id":"e-ended-205","type":"conversation.ended","conversation_id":"c-205","project_id":"p-9"},
        {"id":"e-ended-204-p1","type":"conversation.ended","conversation_id":"c-204","project_id":"p-1"},
        {"id":"e-report-no-conversation","type":"report.generated","project_id":"p-9"},
        {"id":"e-nobody","type":"conversation.transcribed","conversation_id":"c-304","project_id":"p-2"},
        {"id":"e-report-204","type":"report.generated","conversation_id":"c-204","project_id":"p-2"}
    ]"#,
    );
    let expected: BTreeMap<String, BTreeSet<String>> = [
        ("/by-id", set(&["e-started-204", "e-ended-204-p1"])),
        ("/by-glob", set(&["e-ended-205", "e-ended-204-p1"])),
        (
            "/by-project",
            set(&["e-started-204", "e-ended-205", "e-report-no-conversation"]),
        ),
        ("/every-conversation", set(&["e-report-204"])),
        ("/both-scopes", set(&["e-ended-204-p1"])),
    ]
    .into_iter()
    .map(|(path, ids)| (path.to_string(), ids))
    .collect();
    let total: usize = expected.values().map(BTreeSet::len).sum();
    wait_for(
        &format!("all {total} deliveries of the first batch to be delivered"),
        Duration::from_secs(15),
        || home.count("SELECT count(*) FROM deliveries WHERE state = 'delivered'") == total as i64,
    );

    // A later event, in a later file, to the same receiver: once it has arrived, anything
    // the first batch wrongly produced would have arrived too.
    home.drop_json(
        "sentinel.json",
        r#"{"id":"e-sentinel","type":"conversation.ended","conversation_id":"c-204","project_id":"p-9"}"#,
    );
    wait_for(
        "the sentinel event to reach /by-id",
        Duration::from_secs(15),
        || {
            receiver
                .at("/by-id")
                .iter()
                .any(|r| r.event_id() == "e-sentinel")
        },
    );
    wait_for(
        "the sentinel's deliveries to be recorded",
        Duration::from_secs(15),
        || {
            home.count(
                "SELECT count(*) FROM deliveries WHERE event_id = 'e-sentinel' AND state = 'delivered'",
            ) == 3
        },
    );

    // The sentinel (c-204, p-9, conversation.ended) is for these three.
    let mut expected = expected;
    for path in ["/by-id", "/by-glob", "/by-project"] {
        if let Some(ids) = expected.get_mut(path) {
            ids.insert("e-sentinel".to_string());
        }
    }
    let got = ids_by_path(&receiver);
    assert_eq!(
        got, expected,
        "event ids per receiver path: expected on the right, got on the left"
    );
    let expected_requests: usize = expected.values().map(BTreeSet::len).sum();
    assert_eq!(
        receiver.count(),
        expected_requests,
        "each delivery is sent once to a receiver that answers 200; got {:?}",
        receiver
            .requests()
            .iter()
            .map(|r| (r.path.clone(), r.event_id()))
            .collect::<Vec<_>>()
    );

    // The event nobody takes is stored, with no delivery.
    assert_eq!(
        home.count("SELECT count(*) FROM events WHERE id = 'e-nobody'"),
        1,
        "the non-matching event is stored"
    );
    assert_eq!(
        home.count("SELECT count(*) FROM deliveries WHERE event_id = 'e-nobody'"),
        0,
        "the non-matching event has no delivery"
    );
    // The paused subscription got no delivery at all.
    assert_eq!(
        home.count("SELECT count(*) FROM deliveries WHERE subscription = 'paused'"),
        0,
        "a disabled subscription takes no new events"
    );
    // Every delivery row names the subscription whose path got the event.
    let rows: BTreeSet<String> = home
        .query::<String>("SELECT subscription || ':' || event_id FROM deliveries")
        .into_iter()
        .collect();
    let from_receiver: BTreeSet<String> = expected
        .iter()
        .flat_map(|(path, ids)| {
            ids.iter()
                .map(move |id| format!("{}:{id}", path.trim_start_matches('/')))
        })
        .collect();
    assert_eq!(
        rows, from_receiver,
        "deliveries in the store (left) match what each path expected (right)"
    );
}

#[test]
fn re_enabling_a_paused_subscription_takes_only_new_events() {
    // `enabled = false` pauses: events that arrive meanwhile do not match it, so turning
    // it back on delivers only what arrives afterwards.
    let receiver = Receiver::start(204);
    let home = Home::new();
    let block = |enabled: bool| {
        subscription(
            "north",
            &format!("{}/north", receiver.url),
            &format!("conversations = [\"c-204\"]\nenabled = {enabled}"),
            r#"["conversation.*"]"#,
        ) + &subscription(
            "witness",
            &format!("{}/witness", receiver.url),
            r#"conversations = ["c-204"]"#,
            r#"["conversation.*"]"#,
        )
    };
    home.write_config(&block(false));
    let serve = Serve::start(&home);
    home.drop_json(
        "while-paused.json",
        r#"{"id":"e-while-paused","type":"conversation.started","conversation_id":"c-204"}"#,
    );
    wait_for(
        "the event to reach the enabled witness subscription",
        Duration::from_secs(15),
        || !receiver.at("/witness").is_empty(),
    );
    assert_eq!(
        serve.terminate(),
        Some(0),
        "serve exits 0 on SIGTERM between the two runs"
    );

    home.write_config(&block(true));
    let _serve = Serve::start(&home);
    home.drop_json(
        "after.json",
        r#"{"id":"e-after","type":"conversation.ended","conversation_id":"c-204"}"#,
    );
    wait_for(
        "the new event to reach the re-enabled subscription",
        Duration::from_secs(15),
        || !receiver.at("/north").is_empty(),
    );
    wait_for(
        "the new event to reach the witness too",
        Duration::from_secs(15),
        || receiver.at("/witness").len() == 2,
    );
    let north: Vec<String> = receiver
        .at("/north")
        .iter()
        .map(common::Recorded::event_id)
        .collect();
    assert_eq!(
        north,
        vec!["e-after".to_string()],
        "the re-enabled subscription gets only the event that arrived after it was enabled"
    );
}
