//! The quick start, as a newcomer runs it: one subscription, one event dropped in the
//! spool, one signed POST at the receiver.

mod common;

use std::time::Duration;

use common::{subscription, Home, Receiver, Serve, SECRET};

#[test]
fn an_event_dropped_in_the_spool_reaches_the_receiver_signed() {
    let receiver = Receiver::start(204);
    let home = Home::new();
    home.write_config(&subscription(
        "north-crm",
        &format!("{}/hook", receiver.url),
        "conversations = [\"c-204\"]",
        "[\"conversation.*\"]",
    ));
    let _serve = Serve::start(&home);
    home.drop_json(
        "evt_1.json",
        r#"{"id":"evt_1","type":"conversation.started","conversation_id":"c-204","project_id":"p-9","occurred_at":"2026-11-22T10:00:00Z","data":{"language":"nl-NL"}}"#,
    );
    receiver.wait_for_count(1, Duration::from_secs(10));
    let got = &receiver.requests()[0];
    got.verify_standard(SECRET).unwrap();
    assert_eq!(got.header("webhook-id"), Some("evt_1"));
    assert_eq!(got.header("content-type"), Some("application/json"));
    assert_eq!(
        got.body,
        r#"{"id":"evt_1","type":"conversation.started","conversation_id":"c-204","project_id":"p-9","timestamp":"2026-11-22T10:00:00Z","data":{"language":"nl-NL"}}"#
    );
    common::wait_for(
        "the delivery to be marked delivered",
        Duration::from_secs(5),
        || home.count("SELECT count(*) FROM deliveries WHERE state = 'delivered'") == 1,
    );
    assert!(
        !home.spool().join("evt_1.json").exists(),
        "the consumed file is removed"
    );
}

#[test]
fn a_second_serve_on_the_same_store_refuses_to_start() {
    if common::sqlite_only("the store's .lock file (nodes may share one PostgreSQL)") {
        return;
    }
    let home = Home::new();
    home.write_config("");
    let _first = Serve::start(&home);
    let (code, _, stderr) =
        common::run(&["serve", "--config", home.config_path().to_str().unwrap()]);
    assert_ne!(
        code, 0,
        "a second posthorn on one store must not run: {stderr}"
    );
    assert!(
        stderr.contains("another posthorn is already running"),
        "{stderr}"
    );
}

/// `timeout` and a shell's job control signal the whole process group, so one stop can
/// arrive twice at once; that must still be a graceful stop, not "second signal: now".
#[test]
fn a_stop_signal_delivered_twice_at_once_still_exits_cleanly() {
    let home = Home::new();
    home.write_config("");
    let serve = Serve::start(&home);
    assert_eq!(serve.stop_with(&["TERM", "INT"]), Some(0));
}
