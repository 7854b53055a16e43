//! Receiver health against the real binary: 410 Gone pauses at once, a failing endpoint
//! is held back and probed one delivery at a time until it recovers, a subscription
//! failing too long pauses itself, and each change reaches an alert subscription as a
//! signed `posthorn.*` event, never through the subscription it is about. Receivers are
//! on 127.0.0.1; a "vanished" one is a port with nothing listening.

mod common;

use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::Arc;
use std::time::Duration;

use common::admin::{self, Api, API_TOKEN};
use common::*;

/// A subscription taking posthorn's own events only (no scope needed), at `<url>/<name>`.
fn pager(name: &str, url: &str) -> String {
    format!(
        "\n[[subscription]]\nname = {name:?}\nurl = \"{url}/{name}\"\nevents = [\"posthorn.*\"]\nsecret = {SECRET:?}\n"
    )
}

/// The alerts of type `kind` about `subject` that reached `receiver` at `path`.
fn alerts(receiver: &Receiver, path: &str, kind: &str, subject: &str) -> Vec<serde_json::Value> {
    receiver
        .at(path)
        .into_iter()
        .map(|r| r.json())
        .filter(|body| body["type"] == kind && body["data"]["subscription"] == subject)
        .collect()
}

fn send_events(home: &Home, ids: impl IntoIterator<Item = String>) {
    let mut lines = String::new();
    for id in ids {
        lines.push_str(&spool_event(&id));
        lines.push('\n');
    }
    home.append("events.ndjson", lines.as_bytes());
}

fn audit_actions(home: &Home, action: &str, subject: &str) -> i64 {
    home.count(&format!(
        "SELECT COUNT(*) FROM audit_log WHERE actor = 'posthorn' AND action = '{action}' \
         AND detail LIKE '%subscription {subject}%'"
    ))
}

fn metric(home: &Home, line_start: &str) -> Option<String> {
    let text = ureq::get(&format!("{}/metrics", home.inlet_url()))
        .call()
        .ok()?
        .body_mut()
        .read_to_string()
        .ok()?;
    text.lines()
        .find(|l| l.starts_with(line_start))
        .map(str::to_string)
}

#[test]
fn gone_410_pauses_at_once_keeps_the_deliveries_and_tells_the_pager() {
    let gone = Receiver::start(410);
    let alerts_to = Receiver::start(200);
    let home = Home::new();
    let _serve = admin::start(
        &home,
        &format!(
            "{}{}",
            hook("crm", &format!("{}/crm", gone.url)),
            pager("pager", &alerts_to.url)
        ),
    );
    send_events(&home, (0..20).map(|n| format!("evt_{n}")));

    let api = Api::token(&home, API_TOKEN);
    wait_for("crm to be paused", Duration::from_secs(20), || {
        api.get("/api/v1/subscriptions/crm").json()["paused"] == true
    });
    let view = api.get("/api/v1/subscriptions/crm").json();
    let reason = view["health"]["pause_reason"].as_str().unwrap_or_default();
    assert!(
        reason.contains("410 Gone") && reason.contains("`posthorn resume crm`"),
        "pause reason names the way out: {view:#}"
    );

    // Every delivery is kept, pending; none died of the 410, none burned its schedule
    // beyond the attempts that met the 410 before the pause took hold.
    wait_for(
        "the 410 attempts to be recorded",
        Duration::from_secs(10),
        || {
            home.count("SELECT COUNT(*) FROM attempts WHERE subscription = 'crm'")
                == gone.count() as i64
        },
    );
    assert_eq!(
        home.count(
            "SELECT COUNT(*) FROM deliveries WHERE subscription = 'crm' AND state = 'pending'"
        ),
        20
    );
    assert!(
        gone.count() <= 10,
        "at most one round of the endpoint's in-flight cap meets the 410, got {}",
        gone.count()
    );

    wait_for("the pager to hear of it", Duration::from_secs(20), || {
        !alerts(&alerts_to, "/pager", "posthorn.subscription.paused", "crm").is_empty()
    });
    let sent = alerts_to.at("/pager");
    let alert = sent
        .iter()
        .find(|r| r.json()["type"] == "posthorn.subscription.paused")
        .unwrap();
    alert.verify_standard(SECRET).expect("the alert is signed");
    let data = &alert.json()["data"];
    assert_eq!(data["cause"], "gone");
    assert!(
        data["reason"].as_str().unwrap().contains("410 Gone"),
        "{data}"
    );
    assert_eq!(
        alerts(&alerts_to, "/pager", "posthorn.subscription.paused", "crm").len(),
        1,
        "one pause, one alert"
    );
    assert_eq!(audit_actions(&home, "subscription.paused", "crm"), 1);
    assert_eq!(
        metric(
            &home,
            "posthorn_receiver_health_changes_total{change=\"paused_gone\",subscription=\"crm\"}"
        )
        .as_deref(),
        Some(
            "posthorn_receiver_health_changes_total{change=\"paused_gone\",subscription=\"crm\"} 1"
        )
    );

    // Resumed and answering again, the kept deliveries all arrive.
    gone.set_fallback(Answer::status(200));
    let resumed = api.post("/api/v1/subscriptions/crm/resume", None);
    assert_eq!(resumed.status, 200, "{}", resumed.body);
    wait_for(
        "every kept delivery to arrive",
        Duration::from_secs(30),
        || {
            home.count("SELECT COUNT(*) FROM deliveries WHERE subscription = 'crm' AND state = 'delivered'")
            == 20
        },
    );
    let view = api.get("/api/v1/subscriptions/crm").json();
    assert!(view["health"]["pause_reason"].is_null(), "{view:#}");
}

#[test]
fn a_failing_endpoint_is_probed_one_delivery_at_a_time_then_recovers() {
    // Each answer takes a moment, so the receiver can see how many arrive at once.
    let healthy = Arc::new(AtomicBool::new(false));
    let receiver = {
        let healthy = Arc::clone(&healthy);
        ProgrammableReceiver::start(move |_, _| {
            let status = if healthy.load(Ordering::SeqCst) {
                200
            } else {
                500
            };
            Reply::status(status).delay(Duration::from_millis(200))
        })
    };
    let alerts_to = Receiver::start(200);
    let home = Home::new();
    // Retries every 100 ms, 40 of them: without a breaker every delivery would come back
    // several times a second and die within seconds.
    let schedule = vec!["\"100ms\""; 40].join(", ");
    let _serve = admin::start(
        &home,
        &format!(
            "[delivery]\nschedule = [{schedule}]\ntimeout = \"2s\"\nbreaker_after = 3\n\
             breaker_backoff = \"1s\"\n{}{}",
            hook("crm", &format!("{}/crm", receiver.url)),
            pager("pager", &alerts_to.url)
        ),
    );
    send_events(&home, (0..30).map(|n| format!("evt_{n}")));

    wait_for("the breaker to open", Duration::from_secs(20), || {
        audit_actions(&home, "subscription.failing", "crm") == 1
    });
    let opened_with = receiver.count();
    // Probes follow holds of 1 s, 2 s, 4 s. Attempts sent before the opening may still
    // arrive just after it, so concurrency is watched from the second probe on.
    wait_for("two probes", Duration::from_secs(30), || {
        receiver.count() >= opened_with + 2
    });
    let mut peak = 0;
    wait_for("a third probe", Duration::from_secs(30), || {
        peak = peak.max(receiver.active());
        receiver.count() >= opened_with + 3
    });
    assert!(peak <= 1, "one probe at a time, saw {peak} at once");
    let requests = receiver.requests();
    let last: Vec<_> = requests[requests.len() - 3..]
        .iter()
        .map(|r| r.at)
        .collect();
    for pair in last.windows(2) {
        let gap = pair[1] - pair[0];
        assert!(
            gap >= Duration::from_millis(900),
            "probes come a hold apart (1 s and more), not at the 100 ms retry pace; got \
             {gap:?} between two"
        );
    }
    let api = Api::token(&home, API_TOKEN);
    let breaker = api.get("/api/v1/subscriptions/crm").json()["health"]["breaker"].clone();
    assert!(
        breaker == "open" || breaker == "probing",
        "breaker: {breaker}"
    );
    assert_eq!(
        metric(&home, "posthorn_endpoints_tripped ").as_deref(),
        Some("posthorn_endpoints_tripped 1")
    );

    // The receiver comes back: the next probe closes the breaker and the queue drains.
    healthy.store(true, Ordering::SeqCst);
    wait_for("every delivery to arrive", Duration::from_secs(30), || {
        home.count(
            "SELECT COUNT(*) FROM deliveries WHERE subscription = 'crm' AND state = 'delivered'",
        ) == 30
    });
    assert_eq!(
        home.count("SELECT COUNT(*) FROM deliveries WHERE state = 'dead'"),
        0,
        "held-back deliveries burn no retries"
    );
    wait_for(
        "the pager to hear of the recovery",
        Duration::from_secs(20),
        || {
            !alerts(
                &alerts_to,
                "/pager",
                "posthorn.subscription.recovered",
                "crm",
            )
            .is_empty()
        },
    );
    assert_eq!(
        alerts(&alerts_to, "/pager", "posthorn.subscription.failing", "crm").len(),
        1
    );
    assert_eq!(audit_actions(&home, "subscription.recovered", "crm"), 1);
    assert!(api.get("/api/v1/subscriptions/crm").json()["health"]["breaker"].is_null());
}

#[test]
fn a_subscription_failing_longer_than_auto_pause_after_pauses_itself() {
    let vanished = free_port();
    let alerts_to = Receiver::start(200);
    let home = Home::new();
    let schedule = vec!["\"100ms\""; 60].join(", ");
    let _serve = admin::start(
        &home,
        &format!(
            "[delivery]\nschedule = [{schedule}]\ntimeout = \"2s\"\nbreaker_after = 2\n\
             breaker_backoff = \"300ms\"\nauto_pause_after = \"2s\"\n{}{}",
            hook("crm", &format!("http://127.0.0.1:{vanished}/crm")),
            pager("pager", &alerts_to.url)
        ),
    );
    send_events(&home, ["evt_1".to_string()]);

    let api = Api::token(&home, API_TOKEN);
    wait_for("crm to pause itself", Duration::from_secs(30), || {
        api.get("/api/v1/subscriptions/crm").json()["paused"] == true
    });
    let view = api.get("/api/v1/subscriptions/crm").json();
    let reason = view["health"]["pause_reason"].as_str().unwrap_or_default();
    assert!(
        reason.contains("auto_pause_after = 2s") && reason.contains("`posthorn resume crm`"),
        "pause reason: {view:#}"
    );
    assert!(view["health"]["failing_since"].is_i64(), "{view:#}");
    assert_eq!(
        home.count(
            "SELECT COUNT(*) FROM deliveries WHERE subscription = 'crm' AND state = 'pending'"
        ),
        1,
        "the delivery is kept"
    );
    wait_for("the pager to hear of it", Duration::from_secs(20), || {
        alerts(&alerts_to, "/pager", "posthorn.subscription.paused", "crm")
            .iter()
            .any(|a| a["data"]["cause"] == "failing")
    });
    assert_eq!(audit_actions(&home, "subscription.paused", "crm"), 1);
}

#[test]
fn alerts_about_an_alert_subscription_never_go_through_it() {
    // crm fails; pager-a is gone too (nothing listens); pager-b is fine.
    let failing = Receiver::start(500);
    let vanished = free_port();
    let alerts_to = Receiver::start(200);
    let home = Home::new();
    let _serve = admin::start(
        &home,
        &format!(
            "[delivery]\nschedule = [\"100ms\", \"100ms\", \"100ms\"]\ntimeout = \"2s\"\n\
             breaker_after = 3\nbreaker_backoff = \"300ms\"\n{}{}{}",
            hook("crm", &format!("{}/crm", failing.url)),
            pager("pager-a", &format!("http://127.0.0.1:{vanished}")),
            pager("pager-b", &alerts_to.url)
        ),
    );
    send_events(&home, ["evt_1".to_string()]);

    // crm's alerts go to both pagers; pager-a cannot take them, fails, and its own
    // failing alert goes to pager-b only.
    wait_for(
        "pager-b to hear that crm's delivery died",
        Duration::from_secs(30),
        || alerts(&alerts_to, "/pager-b", "posthorn.delivery.dead", "crm").len() == 1,
    );
    wait_for(
        "pager-b to hear that pager-a fails",
        Duration::from_secs(30),
        || {
            !alerts(
                &alerts_to,
                "/pager-b",
                "posthorn.subscription.failing",
                "pager-a",
            )
            .is_empty()
        },
    );
    assert_eq!(
        alerts(
            &alerts_to,
            "/pager-b",
            "posthorn.subscription.failing",
            "crm"
        )
        .len(),
        1
    );
    // The alerts pager-a could not take die without raising alerts about themselves.
    wait_for(
        "the alerts to pager-a to die",
        Duration::from_secs(40),
        || {
            home.count(
            "SELECT COUNT(*) FROM deliveries WHERE subscription = 'pager-a' AND state = 'pending'",
        ) == 0
        },
    );
    let dead_alerts = home
        .count("SELECT COUNT(*) FROM deliveries WHERE subscription = 'pager-a' AND state = 'dead'");
    assert!(
        dead_alerts >= 2,
        "crm's two alerts died at pager-a: {dead_alerts}"
    );
    // The event's subject, read here rather than in SQL (JSON functions differ by backend).
    let subject = |body: &str| -> String {
        let event: serde_json::Value = serde_json::from_str(body).expect("a stored event is JSON");
        event["data"]["subscription"]
            .as_str()
            .unwrap_or_default()
            .to_owned()
    };
    let about_dead_alerts = home
        .query::<String>("SELECT body FROM events WHERE type = 'posthorn.delivery.dead'")
        .iter()
        .filter(|body| subject(body) == "pager-a")
        .count();
    assert_eq!(
        about_dead_alerts, 0,
        "dead alerts raised alerts of their own"
    );
    let through_subject = home
        .rows(
            "SELECT d.subscription, e.body FROM deliveries d JOIN events e ON e.seq = d.event_seq
             WHERE e.type LIKE 'posthorn.%'",
            &[],
        )
        .iter()
        .filter(|row| subject(&row.get::<String>(1)) == row.get::<String>(0))
        .count();
    assert_eq!(
        through_subject, 0,
        "an alert was queued through its own subject"
    );
    // crm, scoped to a conversation, never takes posthorn's events.
    assert!(failing
        .at("/crm")
        .iter()
        .all(|r| r.json()["type"] == "conversation.started"));
}

#[test]
fn a_subscription_timeout_overrides_the_delivery_timeout() {
    let slow = Receiver::start(200);
    slow.set_fallback(Answer {
        status: 200,
        retry_after: None,
        delay: Duration::from_secs(3),
    });
    let home = Home::new();
    let _serve = admin::start(
        &home,
        &format!(
            "[delivery]\nschedule = [\"1h\"]\ntimeout = \"20s\"\n{}timeout = \"500ms\"\n",
            hook("crm", &format!("{}/crm", slow.url))
        ),
    );
    send_events(&home, ["evt_1".to_string()]);
    wait_for("the first attempt", Duration::from_secs(20), || {
        home.count("SELECT COUNT(*) FROM attempts") == 1
    });
    let errors: Vec<Option<String>> = home.query("SELECT error FROM attempts");
    let error = errors[0].clone().unwrap_or_default();
    assert!(
        error.contains("timed out"),
        "the attempt ends at the subscription's 500 ms, not the 20 s default: {errors:?}"
    );
}

#[test]
fn a_producer_cannot_forge_posthorns_alerts() {
    let alerts_to = Receiver::start(200);
    let home = Home::new();
    let _serve = admin::start(&home, &pager("pager", &alerts_to.url));
    home.append(
        "events.ndjson",
        b"{\"id\":\"forged\",\"type\":\"posthorn.subscription.paused\",\"data\":{\"subscription\":\"crm\"}}\n",
    );
    wait_for(
        "the forged alert to be refused",
        Duration::from_secs(10),
        || !home.rejections().is_empty(),
    );
    let rejections = home.rejections();
    assert!(rejections[0].reason.contains("reserved"), "{rejections:?}");
    assert_eq!(home.count("SELECT COUNT(*) FROM events"), 0);
}

#[test]
fn the_auto_pause_clock_keeps_counting_across_a_restart() {
    let vanished = free_port();
    let home = Home::new();
    let schedule = vec!["\"100ms\""; 200].join(", ");
    let config = format!(
        "[delivery]\nschedule = [{schedule}]\ntimeout = \"2s\"\nbreaker_after = 1\n\
         breaker_backoff = \"200ms\"\nauto_pause_after = \"4s\"\n{}",
        hook("crm", &format!("http://127.0.0.1:{vanished}/crm"))
    );
    let serve = admin::start(&home, &config);
    send_events(&home, ["evt_1".to_string()]);
    let failing_since = |home: &Home| {
        Api::token(home, API_TOKEN)
            .get("/api/v1/subscriptions/crm")
            .json()["health"]["failing_since"]
            .as_i64()
    };
    wait_for("crm to be failing", Duration::from_secs(20), || {
        failing_since(&home).is_some()
    });
    let since = failing_since(&home);
    assert_eq!(serve.terminate(), Some(0));

    let _serve = admin::start(&home, &config);
    let api = Api::token(&home, API_TOKEN);
    wait_for("crm to pause itself", Duration::from_secs(30), || {
        api.get("/api/v1/subscriptions/crm").json()["paused"] == true
    });
    assert_eq!(
        failing_since(&home),
        since,
        "the clock counted from the first failure before the restart"
    );
}
