//! The operator commands, run as an operator runs them against a real `posthorn serve`
//! with `[admin] api_token` and real receivers: `status`, `deliveries list|show|retry`
//! and `test`, each checked for the values it prints and its `--json`, each failure
//! (no token, a wrong token, posthorn not running, an unknown delivery or subscription,
//! a bad TIME) for its message and exit code; and `hash-password` from a pipe.

mod common;

use std::time::Duration;

use common::cli::{run, Output};
use common::{hook, spool_event, wait_for, Answer, Home, Receiver, Serve};

const TOKEN: &str = "cli-admin-token-5b0e7d1c9a";

/// `posthorn ARGS --config <home>/config.toml`.
fn admin(home: &Home, args: &[&str]) -> Output {
    admin_with(home, args, &[])
}

fn admin_with(home: &Home, args: &[&str], envs: &[(&str, &str)]) -> Output {
    common::cli::with_config(home, args, envs)
}

/// A config with the API token and `subscriptions`.
fn write_config(home: &Home, subscriptions: &str) {
    home.write_config(&format!("[admin]\napi_token = {TOKEN:?}\n{subscriptions}"));
}

/// Waits until `n` deliveries are in `state`.
fn wait_for_state(home: &Home, state: &str, n: i64) {
    wait_for(
        &format!("{n} {state} deliveries"),
        Duration::from_secs(20),
        || {
            home.count(&format!(
                "SELECT count(*) FROM deliveries WHERE state = '{state}'"
            )) == n
        },
    );
}

/// The id of the delivery of event `event_id` to `subscription`.
fn delivery_id(home: &Home, event_id: &str, subscription: &str) -> i64 {
    home.count(&format!(
        "SELECT id FROM deliveries WHERE event_id = '{event_id}' AND subscription = '{subscription}'"
    ))
}

/// Asserts that no output of `output` shows the API token.
fn assert_no_token(output: &Output) {
    assert!(
        !output.stdout.contains(TOKEN) && !output.stderr.contains(TOKEN),
        "the API token was printed: {output:#?}"
    );
}

#[test]
fn hash_password_from_a_pipe_prints_a_hash_that_verifies() {
    let home = Home::new();
    let password = "correct horse battery staple";
    let out = run(
        home.path(),
        &["hash-password"],
        &[],
        Some(format!("{password}\n").as_bytes()),
    )
    .expect(0);
    let hash = out.stdout.trim();
    assert_eq!(out.stdout.lines().count(), 1, "{out:#?}");
    assert!(hash.starts_with("$argon2id$"), "{out:#?}");
    assert!(posthorn::password::verify(hash, password), "{out:#?}");
    assert!(
        !posthorn::password::verify(hash, &format!("{password}\n")),
        "the line end is not part of the password"
    );
    assert!(
        out.stderr.contains("[admin]")
            && out.stderr.contains(&format!("password_hash = \"{hash}\"")),
        "the hint shows the TOML line: {out:#?}"
    );
    assert!(!out.stderr.contains(password), "{out:#?}");

    // Windows line ends and inner spaces: only the line end goes.
    let spaced = " two words and CRLF ";
    let out = run(
        home.path(),
        &["hash-password"],
        &[],
        Some(format!("{spaced}\r\nsecond line\n").as_bytes()),
    )
    .expect(0);
    assert!(
        posthorn::password::verify(out.stdout.trim(), spaced),
        "{out:#?}"
    );

    // The hash works as [admin] password_hash: check-config takes it.
    home.write_config(&format!(
        "[admin]\npassword_hash = {:?}\n",
        out.stdout.trim()
    ));
    let config = home.config_path();
    run(
        home.path(),
        &["check-config", config.to_str().unwrap()],
        &[],
        None,
    )
    .expect(0);
}

#[test]
fn hash_password_refuses_a_short_or_missing_password() {
    let home = Home::new();
    let short = "x".repeat(posthorn::password::MIN_LEN - 1);
    let out = run(
        home.path(),
        &["hash-password"],
        &[],
        Some(format!("{short}\n").as_bytes()),
    )
    .expect(2);
    assert_eq!(out.stdout, "", "{out:#?}");
    assert!(
        out.stderr
            .contains(&format!("use at least {}", posthorn::password::MIN_LEN)),
        "{out:#?}"
    );
    assert!(!out.stderr.contains(&short), "{out:#?}");
    let out = run(home.path(), &["hash-password"], &[], Some(b"")).expect(2);
    assert!(out.stderr.contains("0 characters"), "{out:#?}");
}

#[test]
fn without_a_token_the_commands_say_how_to_set_one() {
    let home = Home::new();
    home.write_config("");
    for args in [
        &["status"][..],
        &["deliveries", "list"],
        &["deliveries", "show", "1"],
        &["deliveries", "retry", "1"],
        &["test", "anything"],
    ] {
        let out = admin(&home, args).expect(2);
        assert!(
            out.stderr.contains("no API token")
                && out.stderr.contains("[admin]")
                && out.stderr.contains("api_token = ")
                && out.stderr.contains("POSTHORN_API_TOKEN")
                && out.stderr.contains(home.config_path().to_str().unwrap()),
            "{args:?}: {out:#?}"
        );
    }
    // No config file at all: the message says that none was found.
    let out = run(home.path(), &["status"], &[], None).expect(2);
    assert!(
        out.stderr.contains("none was found") && out.stderr.contains("--config"),
        "{out:#?}"
    );
}

#[test]
fn when_posthorn_is_not_running_the_commands_say_so() {
    let home = Home::new();
    write_config(&home, "");
    let expected = format!(
        "posthorn is not running at http://127.0.0.1:{} (is `posthorn serve` up?)",
        home.port
    );
    for args in [
        &["status"][..],
        &["deliveries", "list"],
        &["deliveries", "show", "1"],
        &["deliveries", "retry", "1"],
        &[
            "deliveries",
            "retry",
            "--subscription",
            "s",
            "--since",
            "1h",
        ],
        &["test", "anything"],
    ] {
        let out = admin(&home, args).expect(1);
        assert!(out.stderr.contains(&expected), "{args:?}: {out:#?}");
        assert_no_token(&out);
    }
    // --url and the token from the environment need no config at all.
    let url = format!("http://127.0.0.1:{}", home.port);
    let out = run(
        home.path(),
        &["status", "--url", &url],
        &[("POSTHORN_API_TOKEN", TOKEN)],
        None,
    )
    .expect(1);
    assert!(out.stderr.contains(&expected), "{out:#?}");
}

#[test]
fn a_bad_time_is_refused_with_the_forms_a_time_may_take() {
    let home = Home::new();
    write_config(&home, "");
    for args in [
        &["deliveries", "list", "--since", "yesterday"][..],
        &["deliveries", "list", "--until", "2026-11-22 10:00"],
        &[
            "deliveries",
            "retry",
            "--subscription",
            "s",
            "--since",
            "5x",
        ],
    ] {
        let out = admin(&home, args).expect(2);
        let bad = args[args.len() - 1];
        assert!(
            out.stderr.contains(&format!("{bad:?} is not a time"))
                && out.stderr.contains("RFC 3339")
                && out.stderr.contains("unix milliseconds"),
            "{args:?}: {out:#?}"
        );
    }
}

/// posthorn with two subscriptions to conversation c-1: `ok` at a receiver that answers
/// 200 and `flaky` at one that answers 500 (until told otherwise), and event `evt-1`
/// delivered to the first and dead at the second.
struct Scene {
    home: Home,
    good: Receiver,
    bad: Receiver,
    _serve: Serve,
}

impl Scene {
    fn start() -> Scene {
        let good = Receiver::start(200);
        let bad = Receiver::start(500);
        let home = Home::new();
        write_config(
            &home,
            &format!(
                "{}{}",
                hook("ok", &format!("{}/hook", good.url)),
                hook("flaky", &format!("{}/hook", bad.url))
            ),
        );
        let serve = Serve::start(&home);
        home.drop_json("evt-1.json", &spool_event("evt-1"));
        wait_for_state(&home, "delivered", 1);
        wait_for_state(&home, "dead", 1);
        Scene {
            home,
            good,
            bad,
            _serve: serve,
        }
    }
}

#[test]
fn status_and_deliveries_show_what_happened() {
    let scene = Scene::start();
    let home = &scene.home;
    let ok_id = delivery_id(home, "evt-1", "ok");
    let dead_id = delivery_id(home, "evt-1", "flaky");

    let out = admin(home, &["status"]).expect(0);
    assert!(
        out.stdout
            .contains(&format!("posthorn at http://127.0.0.1:{}", home.port)),
        "{out:#?}"
    );
    assert!(
        out.stdout.contains("1 total, 1 in the last 24 h"),
        "{out:#?}"
    );
    assert!(
        out.stdout
            .contains("0 pending (0 failing), 1 delivered, 1 dead, 0 cancelled"),
        "{out:#?}"
    );
    assert!(out.stdout.contains("nothing pending"), "{out:#?}");
    let ok = out.row("ok ");
    // Success per attempt, then per delivery.
    assert_eq!(ok[..4], ["ok", "enabled", "100.0%", "100.0%"], "{out:#?}");
    assert_eq!(ok[5..7], ["0", "0"], "streak and pending: {out:#?}");
    assert_eq!(ok.last().map(String::as_str), Some("200"), "{out:#?}");
    let flaky = out.row("flaky ");
    assert_eq!(flaky[..4], ["flaky", "enabled", "0.0%", "0.0%"], "{out:#?}");
    assert_eq!(flaky[5], "3", "three failed attempts in a row: {out:#?}");
    assert_eq!(flaky.last().map(String::as_str), Some("500"), "{out:#?}");
    assert_no_token(&out);

    let out = admin(home, &["status", "--json"]).expect(0);
    let json = out.json();
    assert_eq!(json["overview"]["events_total"], 1, "{json:#}");
    assert_eq!(json["overview"]["deliveries"]["dead"], 1, "{json:#}");
    assert_eq!(json["overview"]["deliveries"]["delivered"], 1, "{json:#}");
    let names: Vec<&str> = json["subscriptions"]
        .as_array()
        .expect("subscriptions is a list")
        .iter()
        .filter_map(|s| s["name"].as_str())
        .collect();
    assert_eq!(names, ["ok", "flaky"], "{json:#}");
    assert_eq!(json["subscriptions"][1]["health"]["failing_streak"], 3);

    // The table: both deliveries, with their state, attempts and last result.
    let out = admin(home, &["deliveries", "list"]).expect(0);
    assert!(out.stdout.starts_with("ID "), "{out:#?}");
    let row = out.row(&format!("{dead_id} "));
    assert_eq!(
        row[2..],
        ["flaky", "conversation.started", "c-1", "dead", "3", "500"],
        "{out:#?}"
    );
    assert!(
        row[1].ends_with('Z') && row[1].contains('T'),
        "UTC RFC 3339: {row:?}"
    );
    let row = out.row(&format!("{ok_id} "));
    assert_eq!(
        row[2..],
        ["ok", "conversation.started", "c-1", "delivered", "1", "200"]
    );
    assert!(!out.stderr.contains("--cursor"), "one page only: {out:#?}");

    // Filters reach the API.
    let dead = admin(home, &["deliveries", "list", "--state", "dead", "--json"]).expect(0);
    let ids: Vec<i64> = dead.json()["items"]
        .as_array()
        .unwrap()
        .iter()
        .filter_map(|d| d["id"].as_i64())
        .collect();
    assert_eq!(ids, [dead_id], "{dead:#?}");
    let ok_only = admin(
        home,
        &[
            "deliveries",
            "list",
            "--subscription",
            "ok",
            "--event-type",
            "conversation.*",
            "--conversation",
            "c-1",
            "--since",
            "1h",
            "--json",
        ],
    )
    .expect(0);
    let json = ok_only.json();
    assert_eq!(json["items"].as_array().map(Vec::len), Some(1), "{json:#}");
    assert_eq!(json["items"][0]["id"], ok_id, "{json:#}");
    assert_eq!(json["items"][0]["state"], "delivered", "{json:#}");
    let none = admin(
        home,
        &["deliveries", "list", "--until", "2000-01-01T00:00:00Z"],
    )
    .expect(0);
    assert_eq!(none.stdout, "", "{none:#?}");
    assert!(none.stderr.contains("no deliveries match"), "{none:#?}");
    let none = admin(home, &["deliveries", "list", "--conversation", "c-2"]).expect(0);
    assert!(none.stderr.contains("no deliveries match"), "{none:#?}");

    // Pages: the first names its cursor on stderr; the cursor gives the second.
    let first = admin(home, &["deliveries", "list", "--limit", "1"]).expect(0);
    assert_eq!(
        first.stdout.lines().count(),
        2,
        "header and one row: {first:#?}"
    );
    let cursor = first
        .stderr
        .split("--cursor ")
        .nth(1)
        .and_then(|rest| rest.split_whitespace().next())
        .unwrap_or_else(|| panic!("no cursor hint: {first:#?}"))
        .to_string();
    let second = admin(
        home,
        &["deliveries", "list", "--limit", "1", "--cursor", &cursor],
    )
    .expect(0);
    assert_eq!(second.stdout.lines().count(), 2, "{second:#?}");
    let first_id = first
        .stdout
        .lines()
        .nth(1)
        .unwrap()
        .split_whitespace()
        .next();
    let second_id = second
        .stdout
        .lines()
        .nth(1)
        .unwrap()
        .split_whitespace()
        .next();
    assert_ne!(first_id, second_id, "{first:#?} {second:#?}");
    let mut both = [first_id, second_id].map(|id| id.unwrap().parse::<i64>().unwrap());
    both.sort();
    let mut expected = [ok_id, dead_id];
    expected.sort();
    assert_eq!(both, expected);

    // One delivery in full.
    let out = admin(home, &["deliveries", "show", &dead_id.to_string()]).expect(0);
    assert!(
        out.stdout
            .starts_with(&format!("delivery {dead_id}: dead after 3 attempts\n")),
        "{out:#?}"
    );
    assert!(
        out.stdout.contains("evt-1 (conversation.started)"),
        "{out:#?}"
    );
    assert!(out.stdout.contains(r#""n":"evt-1""#), "the body: {out:#?}");
    for n in 1..=3 {
        assert!(
            out.stdout.contains(&format!("  #{n} ")),
            "attempt {n}: {out:#?}"
        );
    }
    assert_eq!(out.stdout.matches(" 500 in ").count(), 3, "{out:#?}");
    let out = admin(
        home,
        &["deliveries", "show", &dead_id.to_string(), "--json"],
    )
    .expect(0);
    let json = out.json();
    assert_eq!(json["delivery"]["id"], dead_id, "{json:#}");
    assert_eq!(json["event"]["id"], "evt-1", "{json:#}");
    assert_eq!(
        json["attempts"].as_array().map(Vec::len),
        Some(3),
        "{json:#}"
    );
    assert_eq!(json["attempts"][0]["status"], 500, "{json:#}");

    // Failures: an unknown delivery, a wrong token.
    let out = admin(home, &["deliveries", "show", "987654"]).expect(1);
    assert!(
        out.stderr.starts_with("posthorn: ") && out.stderr.contains("987654"),
        "{out:#?}"
    );
    assert_eq!(out.stdout, "", "{out:#?}");
    let wrong = "not-the-token-at-all";
    let out = admin_with(home, &["status"], &[("POSTHORN_API_TOKEN", wrong)]).expect(1);
    assert!(
        out.stderr.contains("the API token was refused")
            && out.stderr.contains("POSTHORN_API_TOKEN"),
        "{out:#?}"
    );
    assert!(!out.stderr.contains(wrong), "{out:#?}");
    assert_eq!(out.stdout, "", "{out:#?}");
    // The right token from the environment, with --url, works without the config.
    let url = format!("http://127.0.0.1:{}", home.port);
    let out = run(
        home.path(),
        &["deliveries", "list", "--url", &url, "--json"],
        &[("POSTHORN_API_TOKEN", TOKEN)],
        None,
    )
    .expect(0);
    assert_eq!(
        out.json()["items"].as_array().map(Vec::len),
        Some(2),
        "{out:#?}"
    );
    assert_eq!(scene.good.count(), 1);
}

#[test]
fn test_sends_an_event_and_reports_its_first_attempt() {
    let scene = Scene::start();
    let home = &scene.home;

    let out = admin(home, &["test", "ok"]).expect(0);
    let first = out.stdout.lines().next().unwrap_or_default();
    assert!(
        first.starts_with("sent test event ") && first.contains(" to ok as delivery "),
        "{out:#?}"
    );
    let second = out.stdout.lines().nth(1).unwrap_or_default();
    assert!(
        second.starts_with("200 in ") && second.ends_with(": ok"),
        "{out:#?}"
    );
    assert_eq!(scene.good.count(), 2, "evt-1 and the test event");
    let test = &scene.good.requests()[1];
    assert_eq!(test.json()["type"], "posthorn.test", "{test:?}");
    let delivery: i64 = first.rsplit(' ').next().unwrap().parse().unwrap();
    assert_eq!(
        home.count(&format!(
            "SELECT state = 'delivered' FROM deliveries WHERE id = {delivery}"
        )),
        1
    );

    let out = admin(home, &["test", "flaky"]).expect(1);
    assert!(
        out.stdout
            .lines()
            .nth(1)
            .unwrap_or_default()
            .starts_with("500 in "),
        "{out:#?}"
    );

    // Paused from the API: the test is refused with the API's reason.
    common::http_post(
        &format!("{}/api/v1/subscriptions/flaky/pause", home.inlet_url()),
        &[("Authorization", &format!("Bearer {TOKEN}"))],
        b"",
        false,
    )
    .expect(200);
    let out = admin(home, &["test", "flaky"]).expect(1);
    assert!(
        out.stderr.starts_with("posthorn: ") && out.stderr.contains("paused"),
        "{out:#?}"
    );

    let before = scene.good.count();
    let out = admin(home, &["test", "ok", "--no-wait"]).expect(0);
    assert_eq!(out.stdout.lines().count(), 1, "{out:#?}");
    assert!(out.stdout.starts_with("sent test event "), "{out:#?}");
    assert!(out.stderr.contains("posthorn deliveries show "), "{out:#?}");
    scene
        .good
        .wait_for_count(before + 1, Duration::from_secs(10));

    let out = admin(home, &["test", "no-such-subscription"]).expect(1);
    assert!(
        out.stderr.starts_with("posthorn: ") && out.stderr.contains("no-such-subscription"),
        "{out:#?}"
    );
    assert_eq!(out.stdout, "", "{out:#?}");
}

#[test]
fn retry_delivers_a_dead_delivery_once_the_receiver_recovers() {
    let scene = Scene::start();
    let home = &scene.home;
    let ok_id = delivery_id(home, "evt-1", "ok");
    let dead_id = delivery_id(home, "evt-1", "flaky");
    scene.bad.set_fallback(Answer::status(200));

    // One retried, one refused (already delivered), one unknown: exit 1, each named.
    let out = admin(
        home,
        &[
            "deliveries",
            "retry",
            &dead_id.to_string(),
            &ok_id.to_string(),
            "987654",
        ],
    )
    .expect(1);
    assert!(
        out.stdout
            .contains(&format!("delivery {dead_id}: retried, pending now")),
        "{out:#?}"
    );
    assert!(
        out.stderr.contains(&format!("delivery {ok_id}: refused: ")),
        "{out:#?}"
    );
    assert!(
        out.stderr.contains("delivery 987654: refused: "),
        "{out:#?}"
    );
    assert!(
        out.stderr.contains("2 of 3 retries were refused"),
        "{out:#?}"
    );
    wait_for_state(home, "delivered", 2);
    let out = admin(
        home,
        &["deliveries", "show", &dead_id.to_string(), "--json"],
    )
    .expect(0);
    let json = out.json();
    assert_eq!(json["delivery"]["state"], "delivered", "{json:#}");
    assert_eq!(json["attempts"][3]["status"], 200, "{json:#}");

    // retry-failed: a second event dies at flaky, then all its failures since 1h go.
    scene.bad.set_fallback(Answer::status(500));
    home.drop_json("evt-2.json", &spool_event("evt-2"));
    wait_for_state(home, "dead", 1);
    scene.bad.set_fallback(Answer::status(200));
    let out = admin(
        home,
        &[
            "deliveries",
            "retry",
            "--subscription",
            "flaky",
            "--since",
            "1h",
        ],
    )
    .expect(0);
    assert!(
        out.stdout.starts_with("flaky: 1 failed delivery since ")
            && out.stdout.trim_end().ends_with(" retried"),
        "{out:#?}"
    );
    wait_for_state(home, "delivered", 4);
    assert_eq!(
        scene.bad.count_of("evt-2"),
        4,
        "three failures and the retry"
    );

    // Nothing failed since: nothing retried, still a success.
    let out = admin(
        home,
        &[
            "deliveries",
            "retry",
            "--subscription",
            "flaky",
            "--since",
            "1h",
        ],
    )
    .expect(0);
    assert!(
        out.stdout.starts_with("flaky: 0 failed deliveries"),
        "{out:#?}"
    );
    let out = admin(
        home,
        &[
            "deliveries",
            "retry",
            "--subscription",
            "nope",
            "--since",
            "1h",
        ],
    )
    .expect(1);
    assert!(out.stderr.contains("nope"), "{out:#?}");
}
