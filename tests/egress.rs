//! The egress guard against the real binary: a receiver on 127.0.0.1 is refused unless
//! `allow_networks` holds it, by address and by a name resolving to it, with the reason on
//! the attempt; an allow entry (global or the subscription's) opens it, also at reload;
//! proxies from the environment are not used. Every address here is 127.0.0.1.

mod common;

use std::time::Duration;

use common::{
    hook, signal, spool_event, subscription, wait_for, Home, ProgrammableReceiver, Receiver, Reply,
    Serve, SECRET,
};

/// `[delivery]` with no allow entry at all: loopback is refused.
const DENY_LOOPBACK: &str =
    "[delivery]\nschedule = [\"300ms\", \"300ms\", \"300ms\", \"300ms\", \"300ms\", \"300ms\", \"300ms\", \"300ms\", \"300ms\", \"300ms\"]\ntimeout = \"2s\"\nallow_networks = []\n";

/// The errors recorded on the attempts of event `id`, oldest first.
fn attempt_errors(home: &Home, id: &str) -> Vec<String> {
    home.query::<Option<String>>(&format!(
        "SELECT a.error FROM attempts a JOIN deliveries d ON d.id = a.delivery_id \
         WHERE d.event_id = '{id}' ORDER BY a.id"
    ))
    .into_iter()
    .map(Option::unwrap_or_default)
    .collect()
}

#[test]
fn a_receiver_on_loopback_is_refused_without_an_allow_entry_then_reached_once_allowed() {
    let receiver = Receiver::start(204);
    let home = Home::new();
    home.write_config(&format!(
        "{DENY_LOOPBACK}{}",
        hook("local", &format!("{}/hook", receiver.url))
    ));
    let serve = Serve::start(&home);
    assert!(
        serve.log().contains(
            "every delivery to this subscription will be refused: 127.0.0.1 is a loopback address"
        ),
        "the start warns about a url that will be refused:\n{}",
        serve.log()
    );
    home.drop_json("evt_local.json", &spool_event("evt_local"));

    wait_for("two refused attempts", Duration::from_secs(15), || {
        attempt_errors(&home, "evt_local").len() >= 2
    });
    let errors = attempt_errors(&home, "evt_local");
    for error in &errors {
        assert!(
            error.starts_with(
                "refused: 127.0.0.1 is a loopback address (127.0.0.0/8); add it to allow_networks"
            ),
            "the attempt says why: {error:?}"
        );
    }
    assert_eq!(
        receiver.count(),
        0,
        "nothing reached the receiver while refused"
    );
    assert!(
        serve
            .log()
            .contains("refused: 127.0.0.1 is a loopback address"),
        "the log says it too:\n{}",
        serve.log()
    );

    // Refused attempts retry per the schedule: opening loopback at a reload lets the next
    // attempt through.
    home.write_config(&format!(
        "{}{}",
        DENY_LOOPBACK.replace("allow_networks = []", "allow_networks = [\"127.0.0.1/32\"]"),
        hook("local", &format!("{}/hook", receiver.url))
    ));
    signal(serve.pid(), "HUP");
    receiver.wait_for_count(1, Duration::from_secs(15));
    receiver.requests()[0].verify_standard(SECRET).unwrap();
    wait_for(
        "the delivery to be delivered",
        Duration::from_secs(10),
        || {
            home.count("SELECT COUNT(*) FROM deliveries WHERE event_id = 'evt_local' AND state = 'delivered'") == 1
        },
    );
    assert_eq!(serve.terminate(), Some(0));
}

#[test]
fn a_name_resolving_to_loopback_is_refused() {
    let receiver = Receiver::start(204);
    let home = Home::new();
    let port = receiver.url.rsplit(':').next().unwrap().to_string();
    home.write_config(&format!(
        "{DENY_LOOPBACK}{}",
        hook("by-name", &format!("http://localhost:{port}/hook"))
    ));
    let _serve = Serve::start(&home);
    home.drop_json("evt_name.json", &spool_event("evt_name"));
    wait_for("a refused attempt", Duration::from_secs(15), || {
        !attempt_errors(&home, "evt_name").is_empty()
    });
    let error = &attempt_errors(&home, "evt_name")[0];
    // localhost may resolve to 127.0.0.1, ::1 or both; each is loopback.
    assert!(
        error.starts_with("refused: 127.0.0.1 is a loopback address")
            || error.starts_with("refused: ::1 is a loopback address"),
        "{error:?}"
    );
    assert_eq!(receiver.count(), 0);
}

#[test]
fn a_subscriptions_own_allow_entry_adds_to_the_global_list() {
    let receiver = Receiver::start(204);
    let home = Home::new();
    let allowed = subscription(
        "allowed",
        &format!("{}/allowed", receiver.url),
        "conversations = [\"c-1\"]",
        "[\"conversation.*\"]",
    ) + "allow_networks = [\"127.0.0.0/8\"]\n";
    let refused = hook("refused", &format!("{}/refused", receiver.url));
    home.write_config(&format!("{DENY_LOOPBACK}{allowed}{refused}"));
    let _serve = Serve::start(&home);
    home.drop_json("evt_both.json", &spool_event("evt_both"));
    receiver.wait_for_count(1, Duration::from_secs(15));
    wait_for(
        "a refused attempt for the other subscription",
        Duration::from_secs(15),
        || {
            home.count(
                "SELECT COUNT(*) FROM attempts WHERE subscription = 'refused' \
                 AND error LIKE 'refused: 127.0.0.1 is a loopback address%'",
            ) >= 1
        },
    );
    assert!(receiver.at("/refused").is_empty());
    assert_eq!(receiver.at("/allowed").len(), 1);
}

#[test]
fn proxies_from_the_environment_are_not_used() {
    let receiver = Receiver::start(204);
    let proxy = ProgrammableReceiver::start(|_, _| Reply::status(204));
    let home = Home::new();
    home.write_config(&hook("direct", &format!("{}/hook", receiver.url)));
    let mut command = std::process::Command::new(common::binary());
    command
        .args(["serve", "--config"])
        .arg(home.config_path())
        .env("POSTHORN_LOG", "posthorn=debug,info")
        .env("HTTP_PROXY", &proxy.url)
        .env("http_proxy", &proxy.url)
        .env("ALL_PROXY", &proxy.url)
        .env_remove("NO_PROXY")
        .env_remove("no_proxy");
    let _serve = Serve::start_with(&home, command);
    home.drop_json("evt_direct.json", &spool_event("evt_direct"));
    receiver.wait_for_count(1, Duration::from_secs(15));
    assert_eq!(proxy.count(), 0, "the proxy saw {:?}", proxy.requests());
}
