//! Finding things from a shell, against the real binary and real deliveries
//! (tests/find_fixture): `deliveries show` with an event id (it failed with "invalid
//! digit found in string"), with a number that is an event's id and no delivery's, and
//! with an unknown id; `deliveries list --event`; `events show` and its `--json`.

mod common;
mod find_fixture;

use common::cli::Output;
use find_fixture::{Fixture, ODD_ID};

/// The subscriptions named in the rows of the delivery table `out` printed.
fn table_subscriptions(out: &Output) -> Vec<String> {
    let mut names: Vec<String> = ["crm", "wiki", "bot"]
        .iter()
        .filter(|name| {
            out.stdout.lines().any(|line| {
                line.split_whitespace().any(|cell| cell == **name)
                    && line
                        .split_whitespace()
                        .next()
                        .is_some_and(|id| id.parse::<i64>().is_ok_and(|id| id > 0 && id < 1000))
            })
        })
        .map(|name| name.to_string())
        .collect();
    names.sort();
    names
}

/// `posthorn ARGS --config <home>/config.toml`, as `common::cli` runs commands.
fn posthorn(fx: &Fixture, args: &[&str]) -> Output {
    common::cli::with_config(&fx.home, args, &[])
}

#[test]
fn deliveries_show_takes_an_event_id_and_says_what_was_not_found() {
    let fx = find_fixture::start();

    let shown = posthorn(&fx, &["deliveries", "show", "evt_2"]).expect(0);
    assert!(
        shown.stdout.starts_with("event evt_2 (conversation.ended)"),
        "{shown:#?}"
    );
    assert_eq!(table_subscriptions(&shown), ["crm", "wiki"], "{shown:#?}");
    assert!(shown.stdout.contains(&fx.spool_source()), "{shown:#?}");

    // A delivery id still shows that delivery.
    let id = fx.delivery_id("evt_3", "bot");
    let shown = posthorn(&fx, &["deliveries", "show", &id.to_string()]).expect(0);
    assert!(
        shown
            .stdout
            .starts_with(&format!("delivery {id}: delivered")),
        "{shown:#?}"
    );

    // A number no delivery has, but an event has as its id.
    let shown = posthorn(&fx, &["deliveries", "show", "9999"]).expect(0);
    assert!(
        shown.stdout.starts_with("event 9999 (report.generated)"),
        "{shown:#?}"
    );
    assert_eq!(table_subscriptions(&shown), ["bot"], "{shown:#?}");

    // URL punctuation in an event id reaches the API as one path segment.
    let shown = posthorn(&fx, &["deliveries", "show", ODD_ID, "--json"]).expect(0);
    assert_eq!(shown.json()["event"]["id"], ODD_ID);

    let missing = posthorn(&fx, &["deliveries", "show", "evt_404"]).expect(1);
    assert!(
        missing.stderr.contains("there is no event \"evt_404\"")
            && missing.stderr.contains("whole number"),
        "{missing:#?}"
    );
    assert!(!missing.stderr.contains("invalid digit"), "{missing:#?}");
    let missing = posthorn(&fx, &["deliveries", "show", "8888"]).expect(1);
    assert!(
        missing
            .stderr
            .contains("there is no delivery 8888 and no event \"8888\""),
        "{missing:#?}"
    );
}

#[test]
fn deliveries_list_filters_by_event() {
    let fx = find_fixture::start();

    let listed = posthorn(&fx, &["deliveries", "list", "--event", "evt_2"]).expect(0);
    assert_eq!(table_subscriptions(&listed), ["crm", "wiki"], "{listed:#?}");
    let listed = posthorn(&fx, &["deliveries", "list", "--event", "evt_2", "--json"]).expect(0);
    let items = listed.json()["items"]
        .as_array()
        .cloned()
        .unwrap_or_default();
    assert_eq!(items.len(), 2, "{listed:#?}");
    assert!(
        items.iter().all(|d| d["event_id"] == "evt_2"),
        "{listed:#?}"
    );
    let listed = posthorn(&fx, &["deliveries", "list", "--event", "evt_5"]).expect(0);
    assert!(listed.stderr.contains("no deliveries match"), "{listed:#?}");
    // And the conversation filter takes a glob.
    let listed = posthorn(
        &fx,
        &["deliveries", "list", "--conversation", "c-2*", "--json"],
    )
    .expect(0);
    let items = listed.json()["items"]
        .as_array()
        .cloned()
        .unwrap_or_default();
    assert_eq!(items.len(), 3, "{listed:#?}");
}

#[test]
fn events_show_prints_the_event_as_received_and_its_deliveries() {
    let fx = find_fixture::start();

    let shown = posthorn(&fx, &["events", "show", "evt_1"]).expect(0);
    let text = &shown.stdout;
    assert!(
        text.starts_with("event evt_1 (conversation.started)"),
        "{shown:#?}"
    );
    assert!(text.contains("c-1") && text.contains("p-1"), "{shown:#?}");
    assert!(
        text.contains(&format!("{} (a spool file)", fx.spool_source())),
        "{shown:#?}"
    );
    assert!(text.contains("deliveries (1)"), "{shown:#?}");
    assert_eq!(table_subscriptions(&shown), ["crm"], "{shown:#?}");
    // The body, indented, with every value as the producer wrote it.
    for exact in [
        "\"score\": 1.0000000000000001",
        "\"big\": 12345678901234567890",
        "\"tag\": \"a\",",
        "\"tag\": \"b\"",
    ] {
        assert!(text.contains(exact), "{exact:?} in {shown:#?}");
    }

    let shown = posthorn(&fx, &["events", "show", "evt_5"]).expect(0);
    assert!(
        shown.stdout.contains("none: no subscription took it"),
        "{shown:#?}"
    );

    let json = posthorn(&fx, &["events", "show", "evt_2", "--json"])
        .expect(0)
        .json();
    assert_eq!(json["event"]["id"], "evt_2");
    assert_eq!(json["event"]["source"], fx.spool_source());
    assert_eq!(
        json["deliveries"]["items"].as_array().map(Vec::len),
        Some(2)
    );
    assert!(json["body_indented"]
        .as_str()
        .is_some_and(|b| b.contains('\n')));

    let missing = posthorn(&fx, &["events", "show", "evt_404"]).expect(1);
    assert!(
        missing.stderr.contains("there is no event \"evt_404\""),
        "{missing:#?}"
    );
}
