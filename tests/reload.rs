//! Live reload end to end, against the real binary: SIGHUP adds a subscription (new events
//! reach it), removes one (its pending deliveries are cancelled, with the reason), changes
//! a URL and secret (the next attempt uses them), pauses and resumes one; an invalid
//! config is refused with the same located messages as `check-config` while the old one
//! keeps delivering; replacing the file (temp file + rename) reloads without a signal; an
//! attempt in flight during a reload completes and is recorded; and each reload is in the
//! `audit_log` table.
//!
//! The SIGHUP tests reach the config through a symlink into another directory, so the
//! file watcher (which watches the link's directory) stays out of them: a reload there
//! can only come from the signal.

mod common;

use std::fs;
use std::time::Duration;

use common::{
    hook, signal, spool_event, wait_for, Home, ProgrammableReceiver, Receiver, Reply, Serve, SECRET,
};

/// A second Standard Webhooks secret (32 bytes 0..=31).
const NEW_SECRET: &str = "whsec_AAECAwQFBgcICQoLDA0ODxAREhMUFRYXGBkaGxwdHh8=";
const LONG: Duration = Duration::from_secs(15);

/// A home whose `config.toml` is a symlink to `real/config.toml`: writes go to the real
/// file, which the watcher on the home directory does not see.
fn linked_home() -> Home {
    let home = Home::new();
    fs::create_dir(home.path().join("real")).unwrap();
    std::os::unix::fs::symlink("real/config.toml", home.config_path()).unwrap();
    home
}

/// Sends SIGHUP and waits until the log shows one more reload (applied or refused) than
/// before.
fn reload(serve: &Serve) {
    let before = reloads(&serve.log());
    signal(serve.pid(), "HUP");
    wait_for("the reload to be logged", LONG, || {
        reloads(&serve.log()) > before
    });
}

fn reloads(log: &str) -> usize {
    log.matches("configuration reloaded").count() + log.matches("reload refused").count()
}

/// Every audit row as (actor, action, result, detail), oldest first.
fn audit(home: &Home) -> Vec<(String, String, String, String)> {
    home.rows(
        "SELECT actor, action, result, detail FROM audit_log ORDER BY id",
        &[],
    )
    .iter()
    .map(|row| (row.get(0), row.get(1), row.get(2), row.get(3)))
    .collect()
}

/// The state of the delivery of `event` to `subscription`, if there is one.
fn state(home: &Home, event: &str, subscription: &str) -> Option<String> {
    home.query::<String>(&format!(
        "SELECT state FROM deliveries WHERE event_id = '{event}' AND subscription = '{subscription}'"
    ))
    .into_iter()
    .next()
}

#[test]
fn sighup_adds_a_subscription_and_new_events_reach_it() {
    let receiver = Receiver::start(204);
    let home = linked_home();
    home.write_config(&hook("a", &format!("{}/a", receiver.url)));
    let serve = Serve::start(&home);

    home.drop_json("one.json", &spool_event("evt_1"));
    wait_for("evt_1 at /a", LONG, || receiver.at("/a").len() == 1);

    home.write_config(&format!(
        "{}{}",
        hook("a", &format!("{}/a", receiver.url)),
        hook("b", &format!("{}/b", receiver.url))
    ));
    reload(&serve);
    home.drop_json("two.json", &spool_event("evt_2"));
    wait_for("evt_2 at /a and /b", LONG, || {
        receiver.at("/a").len() == 2 && receiver.at("/b").len() == 1
    });
    let at_b = receiver.at("/b");
    assert_eq!(at_b[0].event_id(), "evt_2", "only the new event reaches b");
    at_b[0].verify_standard(SECRET).unwrap();

    let rows = audit(&home);
    assert_eq!(rows.len(), 1, "one reload, one audit row: {rows:?}");
    let (actor, action, result, detail) = &rows[0];
    assert_eq!(
        (actor.as_str(), action.as_str(), result.as_str()),
        ("SIGHUP", "config.reload", "applied")
    );
    assert_eq!(detail, "added b");
    assert!(serve.log().contains("configuration reloaded: added b"));
}

#[test]
fn sighup_removing_a_subscription_cancels_its_pending_deliveries_with_the_reason() {
    let ok = Receiver::start(204);
    let failing = Receiver::start(500);
    let home = linked_home();
    // One failure, then an hour's wait: the delivery stays pending.
    let delivery = "[delivery]\nschedule = [\"1h\"]\ntimeout = \"2s\"\n";
    home.write_config(&format!(
        "{delivery}{}{}",
        hook("stay", &format!("{}/stay", ok.url)),
        hook("gone", &format!("{}/gone", failing.url))
    ));
    let serve = Serve::start(&home);
    home.drop_json("one.json", &spool_event("evt_1"));
    wait_for("the first failed attempt to gone", LONG, || {
        home.count(
            "SELECT attempts FROM deliveries WHERE event_id = 'evt_1' AND subscription = 'gone'",
        ) == 1
    });
    assert_eq!(state(&home, "evt_1", "gone").as_deref(), Some("pending"));

    home.write_config(&format!(
        "{delivery}{}",
        hook("stay", &format!("{}/stay", ok.url))
    ));
    reload(&serve);
    wait_for("gone's delivery to be cancelled", LONG, || {
        state(&home, "evt_1", "gone").as_deref() == Some("cancelled")
    });
    let reason: Vec<String> = home.query(
        "SELECT last_error FROM deliveries WHERE event_id = 'evt_1' AND subscription = 'gone'",
    );
    assert_eq!(
        reason,
        ["cancelled: subscription \"gone\" was removed from the config at reload"]
    );
    // The other subscription is untouched: its delivery goes through (its outcome may be
    // recorded a moment after gone's first attempt, so wait rather than look once).
    wait_for("stay's delivery to be delivered", LONG, || {
        state(&home, "evt_1", "stay").as_deref() == Some("delivered")
    });

    // Nothing routes to it any more, and the scheduler does not send it.
    home.drop_json("two.json", &spool_event("evt_2"));
    wait_for("evt_2 at stay", LONG, || ok.count_of("evt_2") == 1);
    assert_eq!(state(&home, "evt_2", "gone"), None);
    assert_eq!(failing.count(), 1);

    let rows = audit(&home);
    assert_eq!(rows.len(), 1, "{rows:?}");
    assert_eq!(rows[0].2, "applied");
    assert_eq!(rows[0].3, "removed gone (1 pending delivery cancelled)");
}

#[test]
fn a_changed_url_and_secret_apply_from_the_next_attempt() {
    let old = Receiver::start(500);
    let new = Receiver::start(204);
    let home = linked_home();
    let delivery = "[delivery]\nschedule = [\"2s\", \"2s\"]\ntimeout = \"2s\"\n";
    home.write_config(&format!(
        "{delivery}{}",
        hook("s", &format!("{}/hook", old.url))
    ));
    let serve = Serve::start(&home);
    home.drop_json("one.json", &spool_event("evt_1"));
    wait_for("the first attempt at the old URL", LONG, || {
        old.count() == 1
    });
    old.requests()[0].verify_standard(SECRET).unwrap();

    home.write_config(&format!(
        "{delivery}{}",
        hook("s", &format!("{}/hook", new.url)).replace(SECRET, NEW_SECRET)
    ));
    reload(&serve);
    wait_for("the retry at the new URL", LONG, || {
        state(&home, "evt_1", "s").as_deref() == Some("delivered")
    });
    assert_eq!(
        old.count(),
        1,
        "no attempt goes to the old URL after the reload"
    );
    let retried = new.requests();
    assert_eq!(retried.len(), 1);
    assert_eq!(retried[0].header("webhook-id"), Some("evt_1"));
    retried[0].verify_standard(NEW_SECRET).unwrap();
    assert!(retried[0].verify_standard(SECRET).is_err());

    let rows = audit(&home);
    assert_eq!(rows[0].3, "changed s (url, secret or signature)");
    assert!(!serve
        .log()
        .contains(NEW_SECRET.trim_start_matches("whsec_")));
}

#[test]
fn enabled_false_pauses_at_a_reload_and_true_resumes() {
    let receiver = Receiver::start(204);
    let home = linked_home();
    let url = format!("{}/s", receiver.url);
    home.write_config(&hook("s", &url));
    let serve = Serve::start(&home);

    home.write_config(&format!("{}enabled = false\n", hook("s", &url)));
    reload(&serve);
    home.drop_json("one.json", &spool_event("evt_1"));
    wait_for("evt_1 to be stored", LONG, || {
        home.count("SELECT COUNT(*) FROM events WHERE id = 'evt_1'") == 1
    });
    assert_eq!(
        state(&home, "evt_1", "s"),
        None,
        "a paused subscription takes nothing"
    );

    home.write_config(&hook("s", &url));
    reload(&serve);
    home.drop_json("two.json", &spool_event("evt_2"));
    wait_for("evt_2 at s", LONG, || receiver.count_of("evt_2") == 1);
    assert_eq!(receiver.count_of("evt_1"), 0);
    let details: Vec<String> = audit(&home).into_iter().map(|row| row.3).collect();
    assert_eq!(details, ["changed s (paused)", "changed s (resumed)"]);
}

#[test]
fn an_invalid_config_is_refused_with_located_messages_and_the_old_one_keeps_delivering() {
    let receiver = Receiver::start(204);
    let home = linked_home();
    let good = hook("s", &format!("{}/s", receiver.url));
    home.write_config(&good);
    let serve = Serve::start(&home);

    // Two problems found together: a bad URL and a missing scope.
    home.write_config(&format!(
        "{}{}",
        good.replace("http://", "ftp://"),
        "\n[[subscription]]\nname = \"t\"\nurl = \"http://127.0.0.1:1/\"\nevents = [\"*\"]\nsecret = \"whsec_MfKQ9r8GKYqrTwjUPD8ILPZIo2LaLaSw\"\n"
    ));
    let (code, _, expected) = common::run(&["check-config", home.config_path().to_str().unwrap()]);
    assert_eq!(code, 1, "check-config refuses it: {expected}");
    let expected: Vec<&str> = expected.lines().collect();
    assert_eq!(expected.len(), 2, "{expected:?}");
    reload(&serve);
    assert!(serve.log().contains("reload refused"));
    for line in &expected {
        assert!(
            line.contains(".toml:")
                && line
                    .split(':')
                    .nth(1)
                    .is_some_and(|n| n.parse::<u32>().is_ok()),
            "check-config gives line and column: {line}"
        );
        wait_for(&format!("the log to name {line:?}"), LONG, || {
            serve.log().contains(line)
        });
    }

    home.drop_json("one.json", &spool_event("evt_1"));
    wait_for("evt_1 delivered under the old config", LONG, || {
        receiver.count_of("evt_1") == 1
    });

    let rows = audit(&home);
    assert_eq!(rows.len(), 1, "{rows:?}");
    assert_eq!(rows[0].2, "refused");
    assert_eq!(rows[0].3, expected.join("\n"));

    // Fixing it applies, and reports no change against what was running.
    home.write_config(&good);
    reload(&serve);
    let rows = audit(&home);
    assert_eq!(rows[1].2, "applied");
    assert_eq!(rows[1].3, "no changes");
}

#[test]
fn replacing_the_config_file_reloads_it_without_a_signal() {
    let receiver = Receiver::start(204);
    let home = Home::new();
    let a = hook("a", &format!("{}/a", receiver.url));
    home.write_config(&a);
    let serve = Serve::start(&home);
    let text = fs::read_to_string(home.config_path()).unwrap();

    // The way editors and config managers save: write a temp file, rename it over.
    let temp = home.path().join(".config.toml.swp");
    fs::write(
        &temp,
        format!("{text}{}", hook("b", &format!("{}/b", receiver.url))),
    )
    .unwrap();
    fs::rename(&temp, home.config_path()).unwrap();
    wait_for("the file change to be reloaded", LONG, || {
        serve.log().contains("configuration reloaded")
    });
    home.drop_json("one.json", &spool_event("evt_1"));
    wait_for("evt_1 at /b", LONG, || receiver.at("/b").len() == 1);

    // Touching it without changing it does nothing; the one save was one reload.
    std::thread::sleep(Duration::from_millis(400));
    let file = fs::OpenOptions::new()
        .append(true)
        .open(home.config_path())
        .unwrap();
    file.sync_all().unwrap();
    drop(file);
    std::thread::sleep(Duration::from_millis(600));
    let rows = audit(&home);
    assert_eq!(rows.len(), 1, "{rows:?}");
    assert_eq!(rows[0].0, "config file change");
    assert_eq!(rows[0].3, "added b");
}

#[test]
fn an_attempt_in_flight_during_a_reload_completes_and_is_recorded() {
    let slow =
        ProgrammableReceiver::start(|_, _| Reply::status(200).delay(Duration::from_millis(1500)));
    let fast = Receiver::start(204);
    let home = linked_home();
    // A timeout well past the receiver's delay, and no retry within the test.
    let delivery = "[delivery]\nschedule = [\"1h\"]\ntimeout = \"10s\"\n";
    home.write_config(&format!(
        "{delivery}{}",
        hook("s", &format!("{}/s", slow.url))
    ));
    let serve = Serve::start(&home);
    home.drop_json("one.json", &spool_event("evt_1"));
    wait_for("the attempt to be in flight", LONG, || slow.active() == 1);

    home.write_config(&format!(
        "{delivery}{}",
        hook("s", &format!("{}/s", fast.url))
    ));
    reload(&serve);
    assert_eq!(slow.active(), 1, "the reload did not wait for the attempt");
    wait_for("the in-flight attempt to be recorded", LONG, || {
        state(&home, "evt_1", "s").as_deref() == Some("delivered")
    });
    let statuses: Vec<i64> = home.query(
        "SELECT a.status FROM attempts a JOIN deliveries d ON d.id = a.delivery_id
         WHERE d.event_id = 'evt_1'",
    );
    assert_eq!(
        statuses,
        [200],
        "one attempt, the one in flight, at the old URL"
    );
    assert_eq!(fast.count(), 0);

    home.drop_json("two.json", &spool_event("evt_2"));
    wait_for("evt_2 at the new URL", LONG, || fast.count_of("evt_2") == 1);
    assert_eq!(slow.count(), 1);
    assert_eq!(audit(&home)[0].3, "changed s (url)");
}

#[test]
fn settings_that_need_a_restart_are_reported_and_the_rest_applies() {
    let receiver = Receiver::start(204);
    let home = linked_home();
    let sub = hook("s", &format!("{}/s", receiver.url));
    home.write_config(&format!(
        "[delivery]\nworkers = 4\nschedule = [\"1s\"]\n{sub}"
    ));
    let serve = Serve::start(&home);
    home.write_config(&format!(
        "[delivery]\nworkers = 8\nschedule = [\"2s\"]\n{sub}"
    ));
    reload(&serve);
    wait_for("the restart notice", LONG, || {
        serve
            .log()
            .contains("changed settings that need a restart to apply (the running values stay): delivery.workers")
    });
    assert_eq!(
        audit(&home)[0].3,
        "settings changed: delivery.schedule; needs a restart: delivery.workers"
    );
    // Still running, still delivering.
    home.drop_json("one.json", &spool_event("evt_1"));
    wait_for("evt_1", LONG, || receiver.count_of("evt_1") == 1);
}
