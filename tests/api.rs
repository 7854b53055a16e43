//! The operator API (`/api/v1`, docs/API.md) through the real binary: every route's
//! answer, bad input named, the three ways in (none, session with CSRF, bearer token),
//! the login throttle and the generated password, and each action end to end against a
//! real receiver, with its row in the audit log.

mod common;

use std::time::{Duration, SystemTime, UNIX_EPOCH};

use common::admin::{self, Api, API_TOKEN, PASSWORD};
use common::{http_post, subscription, wait_for, Answer, Home, Receiver, Serve, SECRET};
use serde_json::{json, Value};

const INLET_TOKEN: &str = "inlet-token-0123456789";
const SETTLE: Duration = Duration::from_secs(20);
const HEX_SECRET: &str = "hex secret with spaces";

/// Every route behind a login, with a concrete path.
const GUARDED: &[(&str, &str)] = &[
    ("get", "/api/v1/session"),
    ("post", "/api/v1/logout"),
    ("get", "/api/v1/overview"),
    ("get", "/api/v1/subscriptions"),
    ("get", "/api/v1/subscriptions/crm"),
    ("get", "/api/v1/deliveries"),
    ("get", "/api/v1/deliveries/1"),
    ("get", "/api/v1/rejections"),
    ("get", "/api/v1/audit"),
    ("post", "/api/v1/subscriptions/crm/test"),
    ("post", "/api/v1/subscriptions/crm/pause"),
    ("post", "/api/v1/subscriptions/crm/resume"),
    ("post", "/api/v1/subscriptions/crm/retry-failed"),
    ("post", "/api/v1/subscriptions/crm/replay"),
    ("post", "/api/v1/deliveries/1/retry"),
    ("post", "/api/v1/conversations/forget"),
];

fn now_ms() -> i64 {
    SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .map(|d| d.as_millis() as i64)
        .unwrap_or(0)
}

fn call(api: &Api, method: &str, path: &str) -> common::Response {
    match method {
        "get" => api.get(path),
        _ => api.post(path, None),
    }
}

/// `[inlet]` with a token, then `subscriptions`.
fn config(subscriptions: &str) -> String {
    format!("[inlet]\ntoken = {INLET_TOKEN:?}\n{subscriptions}")
}

/// A subscription `crm` taking every `conversation.*` event, at `<url>/crm`.
fn crm(url: &str) -> String {
    subscription(
        "crm",
        &format!("{url}/crm"),
        "conversations = [\"*\"]",
        r#"["conversation.*"]"#,
    )
}

fn event(id: &str, conversation: &str) -> String {
    format!(
        r#"{{"id":"{id}","type":"conversation.started","conversation_id":"{conversation}","data":{{"n":"{id}"}}}}"#
    )
}

/// Posts events to the inlet; they are stored when this returns.
fn post_events(home: &Home, body: &str) {
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

fn delivery(api: &Api, id: i64) -> Value {
    api.get(&format!("/api/v1/deliveries/{id}"))
        .expect(200)
        .json()
}

fn wait_for_state(api: &Api, id: i64, state: &str) -> Value {
    let mut last = Value::Null;
    wait_for(&format!("delivery {id} to be {state}"), SETTLE, || {
        last = delivery(api, id);
        last["delivery"]["state"] == state
    });
    last
}

/// The ids of the deliveries `query` lists (one page).
fn listed(api: &Api, query: &str) -> Vec<i64> {
    let page = api
        .get(&format!("/api/v1/deliveries?{query}"))
        .expect(200)
        .json();
    ids(&page["items"])
}

fn ids(items: &Value) -> Vec<i64> {
    items
        .as_array()
        .unwrap_or_else(|| panic!("expected an array, got {items}"))
        .iter()
        .map(|item| item["id"].as_i64().unwrap_or_default())
        .collect()
}

/// The delivery of event `event_id`, once it is listed.
fn delivery_of(api: &Api, event_id: &str) -> Value {
    let mut found = Value::Null;
    wait_for(&format!("a delivery of {event_id}"), SETTLE, || {
        let page = api.get("/api/v1/deliveries?limit=200").expect(200).json();
        found = page["items"]
            .as_array()
            .and_then(|items| items.iter().find(|d| d["event_id"] == event_id))
            .cloned()
            .unwrap_or(Value::Null);
        !found.is_null()
    });
    found
}

/// A 4xx with a JSON error whose sentence contains `words`.
fn refused(response: common::Response, status: u16, words: &str) -> Value {
    let body = response.expect(status).json();
    let error = body["error"].as_str().unwrap_or_default();
    assert!(
        error.contains(words),
        "expected an error about {words:?}, got {body}"
    );
    body
}

/// The audit row of `action` whose detail contains `detail`, newest first; asserts it
/// came from 127.0.0.1 and its result starts with `result`.
fn audited(api: &Api, action: &str, detail: &str, result: &str) -> Value {
    let rows = api.get("/api/v1/audit?limit=200").expect(200).json();
    let row = rows["items"]
        .as_array()
        .and_then(|items| {
            items.iter().find(|row| {
                row["action"] == action
                    && row["detail"].as_str().unwrap_or_default().contains(detail)
                    && row["result"]
                        .as_str()
                        .unwrap_or_default()
                        .starts_with(result)
            })
        })
        .cloned()
        .unwrap_or_else(|| panic!("no audit row {action} / {detail} / {result}... in {rows:#}"));
    assert_eq!(row["origin"], "127.0.0.1", "{row}");
    row
}

#[test]
fn every_route_needs_a_session_or_the_token_and_posts_with_the_cookie_need_the_csrf_token() {
    let receiver = Receiver::start(204);
    let home = Home::new();
    let _serve = admin::start(&home, &config(&crm(&receiver.url)));
    let anonymous = Api::anonymous(&home);
    let wrong_token = Api::token(&home, "not-the-token");

    for (method, path) in GUARDED {
        refused(call(&anonymous, method, path), 401, "log in first");
    }
    // Described without login.
    let openapi = anonymous.get("/api/v1/openapi.json").expect(200).json();
    assert!(openapi["paths"]["/api/v1/deliveries"].is_object());

    let session = Api::login(&home, PASSWORD);
    let csrf = session.csrf().unwrap().to_string();
    for (_, path) in GUARDED.iter().filter(|(m, _)| *m == "post") {
        refused(session.with_csrf(None).post(path, None), 403, "CSRF token");
        refused(
            session.with_csrf(Some("forged")).post(path, None),
            403,
            "CSRF token",
        );
    }
    // Reads need no CSRF token; the session answers with its own.
    let body = session
        .with_csrf(None)
        .get("/api/v1/session")
        .expect(200)
        .json();
    assert_eq!(
        (body["via"].as_str(), body["csrf_token"].as_str()),
        (Some("session"), Some(csrf.as_str()))
    );
    assert!(body["expires_at"].as_i64().unwrap() > now_ms());
    // With the right token, the action goes through.
    session
        .post("/api/v1/subscriptions/crm/pause", None)
        .expect(200);

    // The bearer token needs no CSRF header.
    let token = Api::token(&home, API_TOKEN);
    assert_eq!(
        token.get("/api/v1/session").expect(200).json(),
        json!({"via": "token"})
    );
    let resumed = token
        .post("/api/v1/subscriptions/crm/resume", None)
        .expect(200)
        .json();
    assert_eq!(
        resumed,
        json!({"name": "crm", "paused": false, "changed": true})
    );
    audited(&token, "subscription.pause", "subscription crm", "applied");
    let row = audited(&token, "subscription.resume", "subscription crm", "applied");
    assert_eq!(row["actor"], "token");

    // Logout ends the session and clears the cookie.
    let logout = session.post("/api/v1/logout", None).expect(204);
    assert!(logout
        .header("set-cookie")
        .is_some_and(|c| c.starts_with("posthorn_session=;") || c.contains("Max-Age=0")));
    refused(session.get("/api/v1/overview"), 401, "session has ended");

    // A wrong password is a 401, and a garbled login a 400.
    refused(
        anonymous.login_response("wrong password"),
        401,
        "wrong password",
    );
    refused(
        anonymous.post_raw("/api/v1/login", Some("application/json"), b"{\"pass\":"),
        400,
        "password",
    );
    audited(&token, "login", "wrong password", "refused");

    // A wrong token is refused on every route; ten a minute from one address, then that
    // address must wait, even with the right token (so guessing is slowed down).
    for (i, (method, path)) in GUARDED.iter().enumerate() {
        if i < 10 {
            refused(call(&wrong_token, method, path), 401, "API token is wrong");
        } else {
            refused(
                call(&wrong_token, method, path),
                429,
                "too many wrong API tokens",
            );
        }
    }
    refused(
        token.get("/api/v1/session"),
        429,
        "too many wrong API tokens",
    );
    assert!(GUARDED.len() > 10, "the throttle was reached");
}

#[test]
fn login_is_throttled_after_five_wrong_passwords() {
    let home = Home::new();
    let _serve = admin::start(&home, "");
    let api = Api::anonymous(&home);
    for _ in 0..5 {
        refused(api.login_response("guess"), 401, "wrong password");
    }
    // Even the right password waits now.
    let response = api.login_response(PASSWORD);
    let wait: u64 = response
        .header("retry-after")
        .and_then(|v| v.parse().ok())
        .unwrap_or_else(|| panic!("a 429 names the wait in Retry-After: {response:?}"));
    assert!((1..=60).contains(&wait), "Retry-After {wait}");
    refused(response, 429, "too many wrong passwords");
    // The token is not throttled.
    Api::token(&home, API_TOKEN)
        .get("/api/v1/overview")
        .expect(200);
}

#[test]
fn a_generated_password_is_logged_once_and_still_works_after_a_restart() {
    let home = Home::new();
    home.write_config("");
    let serve = Serve::start(&home);
    common::wait_for_inlet(&home);
    let log = serve.log();
    let password = log
        .split("Password: ")
        .nth(1)
        .and_then(|rest| rest.split(|c: char| c == '"' || c.is_whitespace()).next())
        .unwrap_or_else(|| panic!("no generated password in the log:\n{log}"))
        .to_string();
    assert!(password.len() >= 12, "{password:?}");
    Api::login(&home, &password)
        .get("/api/v1/overview")
        .expect(200);
    refused(
        Api::anonymous(&home).login_response("not it"),
        401,
        "wrong password",
    );
    assert_eq!(serve.terminate(), Some(0));

    let serve = Serve::start(&home);
    common::wait_for_inlet(&home);
    assert!(
        !serve.log().contains("Password: "),
        "the password is shown only at the first start:\n{}",
        serve.log()
    );
    Api::login(&home, &password)
        .get("/api/v1/overview")
        .expect(200);
}

#[test]
fn reads_answer_with_filters_pages_and_redaction_and_bad_input_names_the_parameter() {
    let receiver = Receiver::start(204);
    let home = Home::new();
    let subscriptions = format!(
        "{}headers = {{ \"X-Api-Key\" = \"crm-key-123\" }}\n\n[[subscription]]\nname = \"reports\"\n\
         url = \"{}/reports?key=secret-in-query\"\nprojects = [\"p-9\"]\nevents = [\"report.generated\"]\n\
         secret = {HEX_SECRET:?}\nsignature = \"hex\"\nsignature_header = \"X-Sig\"\n",
        crm(&receiver.url),
        receiver.url
    );
    let _serve = admin::start(&home, &config(&subscriptions));
    let api = Api::token(&home, API_TOKEN);
    let before = now_ms();
    post_events(
        &home,
        &format!(
            "{}\n{}\n{}\n",
            event("e1", "c-1"),
            event("e2", "c-2"),
            r#"{"id":"e3","type":"report.generated","project_id":"p-9"}"#
        ),
    );
    receiver.wait_for_count(3, SETTLE);
    home.append("bad.ndjson", b"{not json\n");

    // Overview.
    let mut overview = Value::Null;
    wait_for("three delivered in the overview", SETTLE, || {
        overview = api.get("/api/v1/overview").expect(200).json();
        overview["deliveries"]["delivered"] == 3
    });
    assert_eq!(overview["events_total"], 3);
    assert_eq!(overview["subscriptions"], 2);
    assert_eq!(overview["queue_depth"], 0);
    assert_eq!(overview["recent_failures"], json!([]));

    // Subscriptions, in config order, the URL's query redacted.
    let list = api.get("/api/v1/subscriptions").expect(200).json();
    let items = list["items"].as_array().unwrap();
    let names: Vec<&str> = items.iter().map(|s| s["name"].as_str().unwrap()).collect();
    assert_eq!(names, ["crm", "reports"]);
    assert_eq!(items[0]["signing"], "standard");
    assert_eq!(items[0]["events"], json!(["conversation.*"]));
    assert_eq!(items[0]["health"]["attempts_counted"], 2);
    assert_eq!(items[0]["health"]["success_rate"], 1.0);
    assert_eq!(items[1]["signing"], "hex");
    assert_eq!(items[1]["projects"], json!(["p-9"]));
    assert_eq!(
        items[1]["url"],
        format!("{}/reports?[redacted]", receiver.url)
    );
    assert!(!list.to_string().contains("secret-in-query"));
    assert!(!list.to_string().contains(SECRET));
    let one = api.get("/api/v1/subscriptions/reports").expect(200).json();
    assert_eq!(one["name"], "reports");
    assert_eq!(one["paused"], false);
    let toml = one["toml"].as_str().unwrap();
    assert!(toml.contains("name = \"reports\""), "{toml}");
    assert!(toml.contains("[redacted]"), "{toml}");
    for language in ["python", "node", "go"] {
        let code = one["snippets"][language].as_str().unwrap_or_default();
        assert!(
            code.to_ascii_lowercase().contains("x-sig"),
            "the {language} snippet checks X-Sig: {code}"
        );
    }
    assert!(!one.to_string().contains(HEX_SECRET));
    assert!(!one.to_string().contains("secret-in-query"));
    refused(
        api.get("/api/v1/subscriptions/nope"),
        404,
        "no subscription \"nope\"",
    );

    // The delivery log and its filters.
    let all = listed(&api, "");
    assert_eq!(all.len(), 3);
    assert_eq!(listed(&api, "subscription=crm").len(), 2);
    assert_eq!(
        listed(&api, "subscription=reports&state=delivered").len(),
        1
    );
    assert_eq!(listed(&api, "state=pending"), Vec::<i64>::new());
    assert_eq!(
        listed(&api, "state=").len(),
        3,
        "an empty value filters nothing"
    );
    let c1 = listed(&api, "conversation=c-1");
    assert_eq!(c1.len(), 1);
    assert_eq!(listed(&api, "event_type=conversation.*").len(), 2);
    assert_eq!(listed(&api, "event_type=report.generated").len(), 1);
    assert_eq!(
        listed(&api, "event_type=conversation.started&conversation=c-2").len(),
        1
    );
    assert_eq!(listed(&api, &format!("from={}", before - 60_000)).len(), 3);
    assert_eq!(
        listed(&api, &format!("from={}", now_ms() + 60_000)).len(),
        0
    );
    assert_eq!(listed(&api, "to=2020-01-01T00:00:00Z").len(), 0);
    assert_eq!(
        listed(
            &api,
            "from=2020-01-01T00:00:00Z&to=2999-01-01T00:00:00%2B02:00"
        )
        .len(),
        3
    );
    // Pages of one: every row once, then no cursor.
    let mut paged = Vec::new();
    let mut query = "limit=1".to_string();
    loop {
        let page = api
            .get(&format!("/api/v1/deliveries?{query}"))
            .expect(200)
            .json();
        paged.extend(ids(&page["items"]));
        match page["next_cursor"].as_str() {
            Some(cursor) => query = format!("limit=1&cursor={cursor}"),
            None => break,
        }
        assert!(paged.len() <= 3, "pages repeat rows: {paged:?}");
    }
    assert_eq!(paged, all);
    for (query, parameter, words) in [
        ("cursor=garbage", None, "cursor"),
        ("limit=0", Some("limit"), "limit must be"),
        ("limit=201", Some("limit"), "limit must be"),
        ("limit=many", Some("limit"), "limit must be"),
        ("from=yesterday", Some("from"), "from must be"),
        ("to=2026-13-01T00:00:00Z", Some("to"), "to must be"),
        ("state=lost", None, "state"),
        (
            "subscriptoin=crm",
            Some("subscriptoin"),
            "unknown parameter",
        ),
        ("state=dead&state=pending", Some("state"), "more than once"),
    ] {
        let body = refused(api.get(&format!("/api/v1/deliveries?{query}")), 400, words);
        if let Some(parameter) = parameter {
            assert_eq!(body["parameter"], parameter, "{query}: {body}");
        }
    }

    // One delivery: its event, attempts and the request, secrets hidden.
    let detail = delivery(&api, c1[0]);
    assert_eq!(detail["delivery"]["event_id"], "e1");
    assert_eq!(detail["delivery"]["state"], "delivered");
    assert_eq!(detail["event"]["conversation_id"], "c-1");
    assert_eq!(detail["event"]["source"], "inlet");
    let body: Value = serde_json::from_str(detail["event"]["body"].as_str().unwrap()).unwrap();
    assert_eq!(body["data"], json!({"n": "e1"}));
    assert_eq!(detail["attempts"].as_array().unwrap().len(), 1);
    assert_eq!(detail["attempts"][0]["status"], 204);
    let request = &detail["request"];
    assert_eq!(request["method"], "POST");
    assert_eq!(request["url"], format!("{}/crm", receiver.url));
    assert_eq!(request["body"], detail["event"]["body"]);
    let header = |name: &str| {
        request["headers"]
            .as_array()
            .unwrap()
            .iter()
            .find(|pair| pair[0].as_str().unwrap().eq_ignore_ascii_case(name))
            .map(|pair| pair[1].as_str().unwrap().to_string())
            .unwrap_or_else(|| panic!("no {name} in {request}"))
    };
    assert_eq!(header("webhook-id"), "e1");
    assert_eq!(header("webhook-signature"), "[computed at send time]");
    assert_eq!(header("x-api-key"), "[redacted]");
    assert!(!detail.to_string().contains("crm-key-123"));
    // What was really sent carried the header.
    assert_eq!(
        receiver.at("/crm")[0].header("X-Api-Key"),
        Some("crm-key-123")
    );
    let reports = listed(&api, "subscription=reports");
    let hex = delivery(&api, reports[0]);
    let request = &hex["request"];
    assert!(request["headers"]
        .as_array()
        .unwrap()
        .contains(&json!(["X-Sig", "[computed at send time]"])));
    assert_eq!(
        request["url"],
        format!("{}/reports?[redacted]", receiver.url)
    );
    refused(
        api.get("/api/v1/deliveries/999999"),
        404,
        "no delivery 999999",
    );
    let body = refused(api.get("/api/v1/deliveries/abc"), 400, "delivery id");
    assert_eq!(body["parameter"], "id");

    // Rejections.
    let mut rejections = Value::Null;
    wait_for("the bad spool line in the rejections", SETTLE, || {
        rejections = api.get("/api/v1/rejections").expect(200).json();
        rejections["items"]
            .as_array()
            .is_some_and(|i| !i.is_empty())
    });
    let rejection = &rejections["items"][0];
    assert_eq!(rejection["line"], 1);
    assert!(
        rejection["source"].as_str().unwrap().contains("bad.ndjson"),
        "{rejection}"
    );
    assert!(
        rejection["reason"]
            .as_str()
            .unwrap()
            .contains("not valid JSON"),
        "{rejection}"
    );
    assert_eq!(rejections["next_cursor"], Value::Null);
    refused(api.get("/api/v1/rejections?cursor=x"), 400, "cursor");
    refused(api.get("/api/v1/rejections?limit=0"), 400, "limit must be");
    refused(
        api.get("/api/v1/rejections?since=1"),
        400,
        "unknown parameter",
    );

    // The audit log pages like the others.
    Api::login(&home, PASSWORD);
    let audit = api.get("/api/v1/audit?limit=1").expect(200).json();
    assert_eq!(audit["items"].as_array().unwrap().len(), 1);
    assert_eq!(audit["items"][0]["action"], "login");
    assert_eq!(audit["items"][0]["origin"], "127.0.0.1");
    refused(api.get("/api/v1/audit?cursor=-"), 400, "cursor");
    refused(api.get("/api/v1/audit?limit=500"), 400, "limit must be");
}

#[test]
fn a_dead_delivery_is_retried_through_the_api_once_the_receiver_recovers() {
    let receiver = Receiver::start(500);
    let home = Home::new();
    let _serve = admin::start(
        &home,
        &format!(
            "[delivery]\nschedule = [\"100ms\"]\ntimeout = \"2s\"\n{}",
            config(&crm(&receiver.url))
        ),
    );
    let api = Api::login(&home, PASSWORD);
    post_events(&home, &format!("{}\n", event("e-dead", "c-1")));
    let id = delivery_of(&api, "e-dead")["id"].as_i64().unwrap();
    let dead = wait_for_state(&api, id, "dead");
    assert_eq!(dead["attempts"].as_array().unwrap().len(), 2);

    receiver.set_fallback(Answer::status(200));
    let retried = api
        .post(&format!("/api/v1/deliveries/{id}/retry"), None)
        .expect(200)
        .json();
    assert_eq!(retried, json!({"delivery_id": id, "state": "pending"}));
    let delivered = wait_for_state(&api, id, "delivered");
    let attempts = delivered["attempts"].as_array().unwrap();
    assert_eq!(attempts.len(), 3, "{delivered:#}");
    assert_eq!(
        (
            attempts[2]["attempt"].as_i64(),
            attempts[2]["status"].as_i64()
        ),
        (Some(3), Some(200))
    );
    assert_eq!(receiver.count_of("e-dead"), 3);

    // A delivered one is refused, unknown ids are 404 and bad ids 400; all audited.
    refused(
        api.post(&format!("/api/v1/deliveries/{id}/retry"), None),
        409,
        "was delivered",
    );
    refused(
        api.post("/api/v1/deliveries/424242/retry", None),
        404,
        "no delivery 424242",
    );
    refused(
        api.post("/api/v1/deliveries/x/retry", None),
        400,
        "delivery id",
    );
    let row = audited(&api, "delivery.retry", &format!("delivery {id}"), "applied");
    assert_eq!(row["actor"], "session");
    audited(
        &api,
        "delivery.retry",
        &format!("delivery {id}"),
        "refused: delivery",
    );
    audited(
        &api,
        "delivery.retry",
        "delivery 424242",
        "refused: there is no delivery",
    );
}

#[test]
fn pause_keeps_a_test_event_pending_across_a_restart_and_resume_delivers_it() {
    let receiver = Receiver::start(503);
    let home = Home::new();
    let body = format!(
        "[delivery]\nschedule = [{}]\ntimeout = \"2s\"\n{}",
        vec!["\"1s\""; 30].join(", "),
        config(&crm(&receiver.url))
    );
    let serve = admin::start(&home, &body);
    let api = Api::token(&home, API_TOKEN);
    let sent = api
        .post("/api/v1/subscriptions/crm/test", None)
        .expect(202)
        .json();
    let id = sent["delivery_id"].as_i64().unwrap();
    let event_id = sent["event_id"].as_str().unwrap().to_string();
    receiver.wait_for_count(1, SETTLE);

    let paused = api
        .post("/api/v1/subscriptions/crm/pause", None)
        .expect(200)
        .json();
    assert_eq!(
        paused,
        json!({"name": "crm", "paused": true, "changed": true})
    );
    let again = api
        .post("/api/v1/subscriptions/crm/pause", None)
        .expect(200)
        .json();
    assert_eq!(again["changed"], false);
    refused(
        api.post("/api/v1/subscriptions/crm/test", None),
        409,
        "paused",
    );
    audited(
        &api,
        "subscription.test",
        "subscription crm",
        "refused: subscription \"crm\" is paused",
    );
    // From here on the receiver would take it: only the pause holds it back.
    let sent_before_pause = receiver.count();
    receiver.set_fallback(Answer::status(200));
    assert_eq!(serve.terminate(), Some(0));

    let _serve = Serve::start(&home);
    common::wait_for_inlet(&home);
    let listed = api.get("/api/v1/subscriptions/crm").expect(200).json();
    assert_eq!(listed["paused"], true, "the pause is kept across a restart");
    // Wait until its retry has been due for a while, with the scheduler running.
    let due_at = delivery(&api, id)["delivery"]["next_attempt_at"]
        .as_i64()
        .expect("a pending delivery has a next attempt");
    wait_for("the retry to be long due", SETTLE, || {
        now_ms() > due_at + 3_000
    });
    let held = delivery(&api, id);
    assert_eq!(held["delivery"]["state"], "pending", "{held:#}");
    assert_eq!(
        receiver.count(),
        sent_before_pause,
        "nothing is sent while paused"
    );

    let resumed = api
        .post("/api/v1/subscriptions/crm/resume", None)
        .expect(200)
        .json();
    assert_eq!(
        resumed,
        json!({"name": "crm", "paused": false, "changed": true})
    );
    wait_for_state(&api, id, "delivered");
    let delivered = receiver.at("/crm");
    let last = delivered.last().unwrap();
    assert_eq!(last.event_id(), event_id);
    last.verify_standard(SECRET).unwrap();
    audited(&api, "subscription.pause", "subscription crm", "applied");
    audited(&api, "subscription.resume", "subscription crm", "applied");
    refused(
        api.post("/api/v1/subscriptions/nope/pause", None),
        404,
        "no subscription",
    );
    refused(
        api.post("/api/v1/subscriptions/nope/resume", None),
        404,
        "no subscription",
    );
    audited(
        &api,
        "subscription.pause",
        "subscription nope",
        "refused: there is no subscription",
    );
}

#[test]
fn retry_failed_makes_every_delivery_that_failed_since_a_time_due_again() {
    let receiver = Receiver::start(500);
    let home = Home::new();
    let _serve = admin::start(
        &home,
        &format!(
            "[delivery]\nschedule = [\"100ms\"]\ntimeout = \"2s\"\n{}",
            config(&crm(&receiver.url))
        ),
    );
    let api = Api::login(&home, PASSWORD);
    let start = now_ms() - 1_000;
    post_events(
        &home,
        &format!("{}\n{}\n", event("f1", "c-1"), event("f2", "c-2")),
    );
    for event_id in ["f1", "f2"] {
        let id = delivery_of(&api, event_id)["id"].as_i64().unwrap();
        wait_for_state(&api, id, "dead");
    }
    receiver.set_fallback(Answer::status(204));
    let path = "/api/v1/subscriptions/crm/retry-failed";

    // Nothing died after a time in the future.
    let none = api
        .post(path, Some(json!({"since": now_ms() + 3_600_000})))
        .expect(200)
        .json();
    assert_eq!(none, json!({"retried": 0}));
    let since = rfc3339(start);
    let retried = api
        .post(path, Some(json!({ "since": since })))
        .expect(200)
        .json();
    assert_eq!(retried, json!({"retried": 2}));
    wait_for("both at the receiver a third time", SETTLE, || {
        receiver.count_of("f1") == 3 && receiver.count_of("f2") == 3
    });
    for event_id in ["f1", "f2"] {
        let id = delivery_of(&api, event_id)["id"].as_i64().unwrap();
        wait_for_state(&api, id, "delivered");
    }
    audited(
        &api,
        "subscription.retry_failed",
        &format!("subscription crm since {since}"),
        "applied",
    );

    // Bad bodies are named; an unknown subscription is a 404.
    let body = refused(
        api.post(path, Some(json!({"since": "last week"}))),
        400,
        "since must be",
    );
    assert_eq!(body["parameter"], "since");
    refused(
        api.post(path, Some(json!({"since": -5}))),
        400,
        "since must be",
    );
    refused(
        api.post(path, Some(json!({}))),
        400,
        "missing field `since`",
    );
    refused(
        api.post(path, Some(json!({"since": 1, "until": 2}))),
        400,
        "unknown field `until`",
    );
    refused(
        api.post_raw(path, Some("application/json"), b"{\"since\":"),
        400,
        "the body must be",
    );
    refused(api.post(path, None), 415, "application/json");
    refused(
        api.post(
            "/api/v1/subscriptions/nope/retry-failed",
            Some(json!({"since": 0})),
        ),
        404,
        "no subscription \"nope\"",
    );
    audited(
        &api,
        "subscription.retry_failed",
        "subscription crm",
        "refused: since must be",
    );
}

/// Unix ms as RFC 3339 with whole seconds (rounded down), the way an operator types it.
fn rfc3339(ms: i64) -> String {
    time::OffsetDateTime::from_unix_timestamp(ms.div_euclid(1000))
        .unwrap()
        .format(&time::format_description::well_known::Rfc3339)
        .unwrap()
}

#[test]
fn replay_sends_an_event_again_and_never_outside_a_subscriptions_scope() {
    let receiver = Receiver::start(204);
    let home = Home::new();
    let wiki = subscription(
        "wiki",
        &format!("{}/wiki", receiver.url),
        "conversations = [\"c-2\"]",
        r#"["conversation.*"]"#,
    );
    let serve = admin::start(&home, &config(&format!("{}{wiki}", crm(&receiver.url))));
    let api = Api::token(&home, API_TOKEN);
    post_events(&home, &format!("{}\n", event("r1", "c-1")));
    let first = delivery_of(&api, "r1")["id"].as_i64().unwrap();
    wait_for_state(&api, first, "delivered");

    // To the subscription that had it: the same delivery, due again.
    let replayed = api
        .post(
            "/api/v1/subscriptions/crm/replay",
            Some(json!({"event_id": "r1"})),
        )
        .expect(200)
        .json();
    assert_eq!(replayed, json!({"delivery_id": first, "created": false}));
    wait_for("r1 at crm twice", SETTLE, || receiver.at("/crm").len() == 2);
    audited(
        &api,
        "subscription.replay",
        "event r1 to subscription crm",
        "applied",
    );

    // Not to a subscription whose scope does not take it.
    refused(
        api.post(
            "/api/v1/subscriptions/wiki/replay",
            Some(json!({"event_id": "r1"})),
        ),
        409,
        "outside the scope of subscription \"wiki\"",
    );
    audited(
        &api,
        "subscription.replay",
        "event r1 to subscription wiki",
        "refused: event",
    );
    refused(
        api.post(
            "/api/v1/subscriptions/crm/replay",
            Some(json!({"event_id": "nope"})),
        ),
        404,
        "no event \"nope\"",
    );
    refused(
        api.post(
            "/api/v1/subscriptions/nope/replay",
            Some(json!({"event_id": "r1"})),
        ),
        404,
        "no subscription \"nope\"",
    );
    refused(
        api.post(
            "/api/v1/subscriptions/crm/replay",
            Some(json!({"event": "r1"})),
        ),
        400,
        "the body must be",
    );
    refused(
        api.post_raw(
            "/api/v1/subscriptions/crm/replay",
            Some("text/plain"),
            b"r1",
        ),
        415,
        "application/json",
    );

    // A subscription added later, whose scope takes the event, gets a new delivery.
    assert_eq!(serve.terminate(), Some(0));
    let late = subscription(
        "late",
        &format!("{}/late", receiver.url),
        "conversations = [\"c-1\"]",
        r#"["*"]"#,
    );
    home.write_config(&format!(
        "{}{}",
        config(&format!("{}{wiki}{late}", crm(&receiver.url))),
        admin::admin_block()
    ));
    let _serve = Serve::start(&home);
    common::wait_for_inlet(&home);
    let created = api
        .post(
            "/api/v1/subscriptions/late/replay",
            Some(json!({"event_id": "r1"})),
        )
        .expect(200)
        .json();
    assert_eq!(created["created"], true);
    let id = created["delivery_id"].as_i64().unwrap();
    assert_ne!(id, first);
    wait_for_state(&api, id, "delivered");
    let got = receiver.at("/late");
    assert_eq!(got.len(), 1);
    assert_eq!(got[0].event_id(), "r1");
    got[0].verify_standard(SECRET).unwrap();
}

#[test]
fn the_test_action_reaches_a_real_receiver_signed_and_is_refused_when_disabled() {
    let receiver = Receiver::start(204);
    let home = Home::new();
    let hex = format!(
        "\n[[subscription]]\nname = \"hexed\"\nurl = \"{}/hexed\"\nconversations = [\"*\"]\n\
         events = [\"*\"]\nsecret = {HEX_SECRET:?}\nsignature = \"hex\"\n\
         signature_header = \"X-Sig\"\nsignature_prefix = \"sha256=\"\n",
        receiver.url
    );
    let off = subscription(
        "off",
        &format!("{}/off", receiver.url),
        "conversations = [\"*\"]",
        r#"["*"]"#,
    ) + "enabled = false\n";
    let _serve = admin::start(&home, &config(&format!("{}{hex}{off}", crm(&receiver.url))));
    let api = Api::login(&home, PASSWORD);

    let sent = api
        .post("/api/v1/subscriptions/crm/test", None)
        .expect(202)
        .json();
    let event_id = sent["event_id"].as_str().unwrap().to_string();
    assert!(event_id.starts_with("test_"), "{sent}");
    let id = sent["delivery_id"].as_i64().unwrap();
    let delivered = wait_for_state(&api, id, "delivered");
    assert_eq!(delivered["event"]["event_type"], "posthorn.test");
    assert_eq!(delivered["event"]["source"], "admin");
    assert_eq!(delivered["attempts"][0]["status"], 204);
    let got = receiver.at("/crm");
    assert_eq!(got.len(), 1, "sent to crm only");
    got[0].verify_standard(SECRET).unwrap();
    let body = got[0].json();
    assert_eq!(body["type"], "posthorn.test");
    assert_eq!(body["id"], event_id.as_str());
    assert!(
        body["data"]["message"]
            .as_str()
            .unwrap()
            .contains("test event"),
        "{body}"
    );

    let second = api
        .post("/api/v1/subscriptions/hexed/test", None)
        .expect(202)
        .json();
    assert_ne!(
        second["event_id"], sent["event_id"],
        "each test event is new"
    );
    wait_for_state(&api, second["delivery_id"].as_i64().unwrap(), "delivered");
    let got = receiver.at("/hexed");
    assert_eq!(got.len(), 1);
    got[0].verify_hex(HEX_SECRET, "X-Sig", "sha256=").unwrap();
    assert_eq!(
        receiver.at("/crm").len(),
        1,
        "the second test went to hexed only"
    );

    refused(
        api.post("/api/v1/subscriptions/off/test", None),
        409,
        "disabled",
    );
    refused(
        api.post("/api/v1/subscriptions/nope/test", None),
        404,
        "no subscription \"nope\"",
    );
    let row = audited(
        &api,
        "subscription.test",
        &format!("subscription crm: test event {event_id}"),
        "applied",
    );
    assert_eq!(row["actor"], "session");
    audited(
        &api,
        "subscription.test",
        "subscription off",
        "refused: subscription \"off\" is disabled",
    );
    audited(
        &api,
        "subscription.test",
        "subscription nope",
        "refused: there is no subscription",
    );
    assert_eq!(receiver.at("/off").len(), 0);
}

#[test]
fn the_test_action_is_a_503_with_retry_after_while_the_store_is_full() {
    if common::sqlite_only("a store full at [storage] max_size") {
        return;
    }
    let receiver = Receiver::start(204);
    let home = Home::new();
    home.write_config(&format!(
        "{}{}",
        config(&crm(&receiver.url)),
        admin::admin_block()
    ));
    // The smallest limit, and 6 MiB of events to take the store over it.
    home.set_max_size(common::MIN_MAX_SIZE);
    home.drop_filler(6);
    let _serve = Serve::start(&home);
    common::wait_for_inlet(&home);
    home.wait_for_filler();
    let api = Api::token(&home, API_TOKEN);

    let response = api.post("/api/v1/subscriptions/crm/test", None);
    assert!(response.header("retry-after").is_some(), "{response:?}");
    refused(response, 503, "the store is full");
    audited(
        &api,
        "subscription.test",
        "subscription crm",
        "failed: the store is full",
    );
    assert_eq!(
        api.get("/api/v1/deliveries").expect(200).json()["items"],
        json!([])
    );
}
