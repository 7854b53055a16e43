//! The global delivery switch against the real binary: "pause all" (from the CLI and the
//! API) holds every delivery across a restart while events are still taken in and
//! stored, and `[delivery] enabled = false` in the config does the same until the config
//! says otherwise; `/healthz` says delivery is off without calling posthorn unhealthy.

mod common;

use std::process::Command;
use std::time::Duration;

use common::admin::{self, Api, API_TOKEN};
use common::*;

/// `posthorn delivery <verb>` against `home`'s posthorn; (exit code, stdout).
fn delivery_cli(home: &Home, verb: &str) -> (i32, String) {
    let out = Command::new(binary())
        .args(["delivery", verb, "--url", &home.inlet_url()])
        .env_remove("POSTHORN_CONFIG")
        .env("POSTHORN_API_TOKEN", API_TOKEN)
        .output()
        .expect("run posthorn delivery");
    (
        out.status.code().unwrap_or(-1),
        String::from_utf8_lossy(&out.stdout).into_owned(),
    )
}

fn send_events(home: &Home, ids: std::ops::Range<usize>) {
    let lines: String = ids
        .map(|n| spool_event(&format!("evt_{n}")) + "\n")
        .collect();
    home.append("events.ndjson", lines.as_bytes());
}

fn healthz(home: &Home) -> (u16, serde_json::Value) {
    let mut answer = ureq::get(&format!("{}/healthz", home.inlet_url()))
        .config()
        .http_status_as_error(false)
        .build()
        .call()
        .expect("GET /healthz");
    let status = answer.status().as_u16();
    let text = answer
        .body_mut()
        .read_to_string()
        .expect("a body from /healthz");
    let body = serde_json::from_str(&text).expect("JSON from /healthz");
    (status, body)
}

/// Waits until the scheduler has seen the switch off (`/metrics` says so), then lets it
/// go round its loop a few more times (it turns at least once a second) and checks that
/// the receiver still has nothing.
fn assert_nothing_sent(home: &Home, receiver: &Receiver) {
    wait_for(
        "the scheduler to see delivery off",
        Duration::from_secs(10),
        || {
            ureq::get(&format!("{}/metrics", home.inlet_url()))
                .call()
                .ok()
                .and_then(|mut r| r.body_mut().read_to_string().ok())
                .is_some_and(|text| text.contains("\nposthorn_delivery_enabled 0\n"))
        },
    );
    std::thread::sleep(Duration::from_millis(2500));
    assert_eq!(
        receiver.count(),
        0,
        "a delivery went out while delivery was off"
    );
}

#[test]
fn pause_all_holds_delivery_across_a_restart_while_intake_goes_on() {
    let receiver = Receiver::start(200);
    let home = Home::new();
    let config = hook("crm", &format!("{}/crm", receiver.url));
    let serve = admin::start(&home, &config);

    let (code, out) = delivery_cli(&home, "pause");
    assert_eq!(code, 0, "{out}");
    assert!(out.contains("delivery is off"), "{out}");
    let (status, health) = healthz(&home);
    assert_eq!(status, 200, "switched off is not unhealthy: {health:#}");
    assert_eq!(health["checks"]["delivery"]["enabled"], false, "{health:#}");
    assert!(health["checks"]["delivery"]["switched_off"]
        .as_str()
        .unwrap_or_default()
        .contains("pause all"));

    send_events(&home, 0..5);
    wait_for("the events to be stored", Duration::from_secs(10), || {
        home.count("SELECT COUNT(*) FROM deliveries WHERE state = 'pending'") == 5
    });
    assert_nothing_sent(&home, &receiver);

    assert_eq!(serve.terminate(), Some(0));
    let _serve = admin::start(&home, &config);
    let api = Api::token(&home, API_TOKEN);
    let switch = api.get("/api/v1/delivery").json();
    assert_eq!(switch["paused_by_operator"], true, "{switch:#}");
    assert_eq!(switch["enabled"], false, "{switch:#}");
    send_events(&home, 5..7);
    wait_for(
        "the new events to be stored",
        Duration::from_secs(10),
        || home.count("SELECT COUNT(*) FROM deliveries WHERE state = 'pending'") == 7,
    );
    assert_nothing_sent(&home, &receiver);

    let resumed = api.post("/api/v1/delivery/resume", None);
    assert_eq!(resumed.status, 200, "{}", resumed.body);
    assert_eq!(resumed.json()["enabled"], true);
    assert_eq!(resumed.json()["changed"], true);
    receiver.wait_for_count(7, Duration::from_secs(20));
    assert_eq!(
        home.count(
            "SELECT COUNT(*) FROM audit_log WHERE action IN ('delivery.pause_all', \
             'delivery.resume_all') AND result = 'applied'"
        ),
        2
    );
}

#[test]
fn delivery_enabled_false_in_the_config_sends_nothing_until_the_config_says_otherwise() {
    let receiver = Receiver::start(200);
    let home = Home::new();
    let hook = hook("crm", &format!("{}/crm", receiver.url));
    let delivery = "[delivery]\nschedule = [\"100ms\"]\ntimeout = \"2s\"\n";
    let serve = admin::start(&home, &format!("{delivery}enabled = false\n{hook}"));

    send_events(&home, 0..3);
    wait_for("the events to be stored", Duration::from_secs(10), || {
        home.count("SELECT COUNT(*) FROM deliveries WHERE state = 'pending'") == 3
    });
    let (status, health) = healthz(&home);
    assert_eq!(status, 200);
    assert!(health["checks"]["delivery"]["switched_off"]
        .as_str()
        .unwrap_or_default()
        .contains("enabled = false"));
    assert_nothing_sent(&home, &receiver);
    // "Resume all" cannot override the config, and says so by its exit code.
    let (code, out) = delivery_cli(&home, "resume");
    assert_eq!(code, 1, "{out}");
    assert!(out.contains("enabled = false"), "{out}");

    home.write_config(&format!("{delivery}{hook}{}", admin::admin_block()));
    signal(serve.pid(), "HUP");
    receiver.wait_for_count(3, Duration::from_secs(20));
    let (code, out) = delivery_cli(&home, "status");
    assert_eq!((code, out.trim()), (0, "delivery is on"));
}

#[test]
fn time_switched_off_does_not_count_towards_auto_pause() {
    let vanished = free_port();
    let home = Home::new();
    let schedule = vec!["\"100ms\""; 200].join(", ");
    let _serve = admin::start(
        &home,
        &format!(
            "[delivery]\nschedule = [{schedule}]\ntimeout = \"2s\"\nbreaker_after = 1\n\
             breaker_backoff = \"200ms\"\nauto_pause_after = \"3s\"\n{}",
            hook("crm", &format!("http://127.0.0.1:{vanished}/crm"))
        ),
    );
    send_events(&home, 0..1);
    let api = Api::token(&home, API_TOKEN);
    let crm = || api.get("/api/v1/subscriptions/crm").json();
    wait_for("crm to be failing", Duration::from_secs(20), || {
        crm()["health"]["failing_since"].is_i64()
    });
    let first = crm()["health"]["failing_since"].as_i64();
    assert_eq!(api.post("/api/v1/delivery/pause", None).status, 200);
    // Switched off for longer than auto_pause_after.
    std::thread::sleep(Duration::from_millis(3500));
    assert_eq!(api.post("/api/v1/delivery/resume", None).status, 200);
    wait_for(
        "crm to fail again after the resume",
        Duration::from_secs(20),
        || {
            let since = crm()["health"]["failing_since"].as_i64();
            since.is_some() && since != first
        },
    );
    assert_eq!(
        crm()["paused"],
        false,
        "crm was paused at its first failure after delivery came back on"
    );
}
