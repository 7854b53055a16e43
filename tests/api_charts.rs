//! The charts' API (`/api/v1/charts`, `/api/v1/trends`) and the overview's grouped
//! failures and two success rates, through the real binary against a receiver that
//! fails the first tries: what the page draws comes from what really happened.

mod common;

use std::time::Duration;

use common::admin::{self, Api, API_TOKEN};
use common::{http_post, subscription, wait_for, Answer, Home, Receiver};
use serde_json::Value;

const INLET_TOKEN: &str = "inlet-token-0123456789";
const SETTLE: Duration = Duration::from_secs(30);

fn config(url: &str) -> String {
    format!(
        "[inlet]\ntoken = {INLET_TOKEN:?}\n[delivery]\nschedule = [\"100ms\", \"100ms\", \"100ms\"]\n{}{}",
        subscription("crm", &format!("{url}/crm"), "conversations = [\"*\"]", r#"["conversation.*"]"#),
        subscription("quiet", &format!("{url}/quiet"), "conversations = [\"nobody\"]", r#"["conversation.*"]"#),
    )
}

fn post_events(home: &Home, ids: &[&str]) {
    let body: String = ids
        .iter()
        .map(|id| {
            format!(
                "{{\"id\":\"{id}\",\"type\":\"conversation.started\",\"conversation_id\":\"c-1\",\"data\":{{}}}}\n"
            )
        })
        .collect();
    let authorization = format!("Bearer {INLET_TOKEN}");
    http_post(
        &format!("{}/v1/events", home.inlet_url()),
        &[
            ("Content-Type", "application/x-ndjson"),
            ("Authorization", &authorization),
        ],
        body.as_bytes(),
        false,
    )
    .expect(202);
}

fn sum(points: &Value, field: &str) -> u64 {
    points
        .as_array()
        .unwrap_or_else(|| panic!("not a list of points: {points}"))
        .iter()
        .map(|p| p[field].as_u64().unwrap_or(0))
        .sum()
}

/// posthorn with `crm` answered 500 twice, then 200: two events both arrive, each
/// after retries, so half the attempts failed but every delivery arrived.
fn started() -> (Receiver, Home, common::Serve, Api) {
    let receiver = Receiver::with_script(
        vec![Answer::status(500), Answer::status(500)],
        Answer::status(200),
    );
    let home = Home::new();
    let serve = admin::start(&home, &config(&receiver.url));
    let api = Api::token(&home, API_TOKEN);
    post_events(&home, &["evt-c1", "evt-c2"]);
    wait_for("both deliveries to arrive", SETTLE, || {
        home.count("SELECT count(*) FROM deliveries WHERE state = 'delivered'") == 2
    });
    (receiver, home, serve, api)
}

#[test]
fn retries_lower_the_rate_per_attempt_but_not_the_rate_per_delivery() {
    let (_receiver, _home, _serve, api) = started();
    let overview = api.get("/api/v1/overview").expect(200).json();
    let rates = &overview["rates"];
    assert_eq!(rates["attempts"], 4, "{overview}");
    assert_eq!(rates["attempt_success_rate"], 0.5, "{overview}");
    assert_eq!(rates["deliveries_finished"], 2, "{overview}");
    assert_eq!(rates["delivery_success_rate"], 1.0, "{overview}");

    let subs = api.get("/api/v1/subscriptions").expect(200).json();
    let crm = subs["items"]
        .as_array()
        .and_then(|items| items.iter().find(|s| s["name"] == "crm"))
        .unwrap_or_else(|| panic!("no crm in {subs}"));
    assert_eq!(crm["health"]["success_rate"], 0.5, "{crm}");
    assert_eq!(crm["health"]["delivery_success_rate"], 1.0, "{crm}");
    assert_eq!(crm["health"]["deliveries_finished"], 2, "{crm}");
}

#[test]
fn the_overview_groups_failures_by_subscription_and_reason_with_counts_and_times() {
    let (_receiver, _home, _serve, api) = started();
    let overview = api.get("/api/v1/overview").expect(200).json();
    let groups = overview["failure_groups"]
        .as_array()
        .unwrap_or_else(|| panic!("no failure_groups in {overview}"));
    assert_eq!(groups.len(), 1, "{groups:?}");
    let group = &groups[0];
    assert_eq!(group["subscription"], "crm");
    assert_eq!(group["reason"], "HTTP 500");
    assert_eq!(group["status"], 500);
    assert_eq!(group["count"], 2);
    let (first, last) = (group["first_at"].as_i64(), group["last_at"].as_i64());
    assert!(first.is_some() && first <= last, "{group}");
    let newest = group["last_delivery_id"].as_i64().unwrap_or(0);
    let detail = api
        .get(&format!("/api/v1/deliveries/{newest}"))
        .expect(200)
        .json();
    assert_eq!(detail["delivery"]["subscription"], "crm", "{detail}");
}

#[test]
fn the_charts_count_what_happened_in_every_range_and_for_one_subscription() {
    let (_receiver, _home, _serve, api) = started();
    for (range, points) in [("1h", 60), ("24h", 96), ("7d", 168), ("30d", 120)] {
        let charts = api
            .get(&format!("/api/v1/charts?range={range}"))
            .expect(200)
            .json();
        assert_eq!(charts["range"], range);
        assert_eq!(
            charts["points"].as_array().map(Vec::len),
            Some(points),
            "{range}"
        );
        assert_eq!(sum(&charts["points"], "delivered"), 2, "{range}: {charts}");
        assert_eq!(sum(&charts["points"], "failed_attempts"), 2, "{range}");
        assert_eq!(sum(&charts["points"], "attempts"), 4, "{range}");
        assert_eq!(sum(&charts["points"], "dead"), 0, "{range}");
        assert!(
            charts["points"]
                .as_array()
                .is_some_and(|p| p.iter().any(|p| p["latency_p95_ms"].is_i64())),
            "a latency where attempts were: {charts}"
        );
        let queue = charts["queue"]
            .as_array()
            .unwrap_or_else(|| panic!("no queue: {charts}"));
        assert_eq!(queue.len(), points);
    }
    // The queue is sampled at each retention step, the first at start.
    wait_for("a queue sample", SETTLE, || {
        let charts = api.get("/api/v1/charts?range=1h").expect(200).json();
        charts["queue"]
            .as_array()
            .is_some_and(|q| q.iter().any(|p| p["depth"].is_u64()))
    });

    let crm = api
        .get("/api/v1/charts?range=7d&subscription=crm")
        .expect(200)
        .json();
    assert_eq!(sum(&crm["points"], "delivered"), 2, "{crm}");
    assert!(
        crm.get("queue").is_none(),
        "the queue is not kept per subscription"
    );
    let quiet = api
        .get("/api/v1/charts?range=1h&subscription=quiet")
        .expect(200)
        .json();
    assert_eq!(sum(&quiet["points"], "attempts"), 0, "{quiet}");

    let trends = api.get("/api/v1/trends").expect(200).json();
    let items = trends["items"]
        .as_array()
        .unwrap_or_else(|| panic!("{trends}"));
    let names: Vec<&str> = items
        .iter()
        .filter_map(|t| t["subscription"].as_str())
        .collect();
    assert_eq!(names, ["crm", "quiet"]);
    assert_eq!(items[0]["delivered"].as_array().map(Vec::len), Some(24));
    let delivered: u64 = items[0]["delivered"]
        .as_array()
        .map(|v| v.iter().filter_map(Value::as_u64).sum())
        .unwrap_or(0);
    assert_eq!(delivered, 2, "{trends}");
}

#[test]
fn a_chart_of_an_unknown_range_or_subscription_is_refused_with_what_to_ask_instead() {
    let receiver = Receiver::start(200);
    let home = Home::new();
    let _serve = admin::start(&home, &config(&receiver.url));
    let api = Api::token(&home, API_TOKEN);
    let bad = api.get("/api/v1/charts?range=2w");
    assert_eq!(bad.status, 400, "{}", bad.body);
    assert!(bad.body.contains("1h, 24h, 7d or 30d"), "{}", bad.body);
    let unknown = api.get("/api/v1/charts?subscription=nope");
    assert_eq!(unknown.status, 404, "{}", unknown.body);
    let typo = api.get("/api/v1/charts?rnage=1h");
    assert_eq!(typo.status, 400, "{}", typo.body);
    // An empty history is zeros, not an error: the page shows its empty state.
    let empty = api.get("/api/v1/charts").expect(200).json();
    assert_eq!(empty["range"], "24h");
    assert_eq!(sum(&empty["points"], "attempts"), 0);
    for path in ["/api/v1/charts", "/api/v1/trends"] {
        let anonymous = Api::anonymous(&home).get(path);
        assert_eq!(anonymous.status, 401, "{path}: {}", anonymous.body);
    }
}
