//! `renamed_from`: renaming a subscription keeps its queue, history and pause state,
//! across a reload (SIGHUP) and across a restart; without it the old name's pending
//! deliveries are cancelled as before.

mod common;

use std::process::Command;
use std::time::Duration;

use common::{hook, spool_event, wait_for, Home, Receiver, Serve};

const TOKEN: &str = "rename-token-3c9d7e1f0a";

fn write_config(home: &Home, subscriptions: &str) {
    home.write_config(&format!("[admin]\napi_token = {TOKEN:?}\n{subscriptions}"));
}

/// `posthorn ARGS --config ...`, which must exit 0.
fn admin(home: &Home, args: &[&str]) -> String {
    let output = Command::new(common::binary())
        .args(args)
        .arg("--config")
        .arg(home.config_path())
        .env_remove("POSTHORN_API_TOKEN")
        .env("HOME", home.path())
        .output()
        .expect("run posthorn");
    assert!(output.status.success(), "posthorn {args:?}: {output:?}");
    String::from_utf8_lossy(&output.stdout).into_owned()
}

fn states(home: &Home, subscription: &str) -> Vec<String> {
    home.query(&format!(
        "SELECT state FROM deliveries WHERE subscription = '{subscription}' ORDER BY event_id"
    ))
}

fn renamed(name: &str, url: &str, old: &str) -> String {
    format!("{}renamed_from = {old:?}\n", hook(name, url))
}

/// Old name: evt-0 delivered, then paused with evt-1 and evt-2 waiting.
fn old_name_with_a_queue(home: &Home, receiver: &Receiver) {
    home.drop_json("evt-0.json", &spool_event("evt-0"));
    receiver.wait_for_count(1, Duration::from_secs(20));
    wait_for("evt-0 delivered", Duration::from_secs(20), || {
        states(home, "old-crm") == ["delivered"]
    });
    admin(home, &["pause", "old-crm"]);
    home.drop_json("evt-1.json", &spool_event("evt-1"));
    home.drop_json("evt-2.json", &spool_event("evt-2"));
    wait_for("two waiting", Duration::from_secs(20), || {
        states(home, "old-crm") == ["delivered", "pending", "pending"]
    });
}

/// The new name has the queue and the history; resumed, it sends the waiting two.
fn new_name_took_over(home: &Home, receiver: &Receiver) {
    assert_eq!(states(home, "old-crm"), Vec::<String>::new());
    assert_eq!(
        home.count("SELECT count(*) FROM attempts WHERE subscription = 'new-crm'"),
        1,
        "the attempt history moved along"
    );
    let status: serde_json::Value =
        serde_json::from_str(&admin(home, &["status", "--json"])).unwrap();
    assert_eq!(
        status["subscriptions"][0]["paused"], true,
        "the pause moved along: {status:#}"
    );
    assert_eq!(receiver.count(), 1, "nothing sent while paused");
    admin(home, &["resume", "new-crm"]);
    receiver.wait_for_count(3, Duration::from_secs(20));
    wait_for("all delivered", Duration::from_secs(20), || {
        states(home, "new-crm") == ["delivered", "delivered", "delivered"]
    });
    let ids: Vec<String> = receiver.requests()[1..]
        .iter()
        .map(|r| r.header("webhook-id").unwrap_or_default().to_string())
        .collect();
    let mut sorted = ids.clone();
    sorted.sort();
    assert_eq!(sorted, ["evt-1", "evt-2"], "{ids:?}");
    assert!(
        receiver.requests()[1..].iter().all(|r| r.path == "/new"),
        "sent to the new subscription's url"
    );
}

#[test]
fn renaming_with_renamed_from_at_a_reload_keeps_pending_deliveries_and_history() {
    let home = Home::new();
    let receiver = Receiver::start(204);
    write_config(&home, &hook("old-crm", &format!("{}/old", receiver.url)));
    let serve = Serve::start(&home);
    old_name_with_a_queue(&home, &receiver);

    write_config(
        &home,
        &renamed("new-crm", &format!("{}/new", receiver.url), "old-crm"),
    );
    common::signal(serve.pid(), "HUP");
    wait_for("the rename", Duration::from_secs(20), || {
        states(&home, "new-crm") == ["delivered", "pending", "pending"]
    });
    let detail: Vec<String> =
        home.query("SELECT detail FROM audit_log WHERE action = 'config.reload'");
    assert!(
        detail
            .iter()
            .any(|d| d.contains("renamed old-crm to new-crm (3 deliveries carried over)")),
        "{detail:?}"
    );
    new_name_took_over(&home, &receiver);
    assert!(
        serve.log().contains("renamed old-crm to new-crm"),
        "{}",
        serve.log()
    );
}

#[test]
fn renaming_with_renamed_from_while_stopped_keeps_pending_deliveries() {
    let home = Home::new();
    let receiver = Receiver::start(204);
    write_config(&home, &hook("old-crm", &format!("{}/old", receiver.url)));
    let serve = Serve::start(&home);
    old_name_with_a_queue(&home, &receiver);
    assert_eq!(serve.terminate(), Some(0));

    write_config(
        &home,
        &renamed("new-crm", &format!("{}/new", receiver.url), "old-crm"),
    );
    let _serve = Serve::start(&home);
    wait_for("the rename", Duration::from_secs(20), || {
        states(&home, "new-crm") == ["delivered", "pending", "pending"]
    });
    new_name_took_over(&home, &receiver);
}

#[test]
fn renaming_without_renamed_from_cancels_the_old_queue() {
    let home = Home::new();
    let receiver = Receiver::start(204);
    write_config(&home, &hook("old-crm", &format!("{}/old", receiver.url)));
    let serve = Serve::start(&home);
    old_name_with_a_queue(&home, &receiver);
    write_config(&home, &hook("new-crm", &format!("{}/new", receiver.url)));
    common::signal(serve.pid(), "HUP");
    wait_for("cancelled", Duration::from_secs(20), || {
        states(&home, "old-crm") == ["delivered", "cancelled", "cancelled"]
    });
    assert!(states(&home, "new-crm").is_empty());
}
