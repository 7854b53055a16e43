//! Finding things through the operator API, against the real binary and a store filled
//! by real deliveries (tests/find_fixture): the delivery log by event id and by a
//! conversation glob, one event with its source and deliveries, the search for an id of
//! any kind, and previews of what a configured or a pasted draft subscription matched.

mod common;
mod find_fixture;

use std::collections::BTreeSet;

use common::admin::{Api, PASSWORD};
use find_fixture::{NUMBER_ID, ODD_ID};
use serde_json::{json, Value};

/// `(event_id, subscription)` of each item of a delivery page.
fn pairs(page: &Value) -> BTreeSet<(String, String)> {
    page["items"]
        .as_array()
        .unwrap_or_else(|| panic!("no items in {page}"))
        .iter()
        .map(|d| {
            (
                d["event_id"].as_str().unwrap_or_default().to_string(),
                d["subscription"].as_str().unwrap_or_default().to_string(),
            )
        })
        .collect()
}

fn set(items: &[(&str, &str)]) -> BTreeSet<(String, String)> {
    items
        .iter()
        .map(|(a, b)| (a.to_string(), b.to_string()))
        .collect()
}

/// The ids of the events a preview lists for `subscription`, and its `matched` count.
fn previewed(preview: &Value, subscription: &str) -> (BTreeSet<String>, u64) {
    let sub = preview["subscriptions"]
        .as_array()
        .and_then(|subs| subs.iter().find(|s| s["name"] == subscription))
        .unwrap_or_else(|| panic!("no {subscription} in {preview}"));
    let ids = sub["events"]
        .as_array()
        .unwrap_or_else(|| panic!("no events in {sub}"))
        .iter()
        .map(|e| e["id"].as_str().unwrap_or_default().to_string())
        .collect();
    (ids, sub["matched"].as_u64().unwrap_or(u64::MAX))
}

fn ids(items: &[&str]) -> BTreeSet<String> {
    items.iter().map(|s| s.to_string()).collect()
}

#[test]
fn the_delivery_log_filters_by_event_id_and_by_a_conversation_glob() {
    let fx = find_fixture::start();
    let api = fx.api();

    let page = api
        .get("/api/v1/deliveries?event_id=evt_2")
        .expect(200)
        .json();
    assert_eq!(pairs(&page), set(&[("evt_2", "crm"), ("evt_2", "wiki")]));
    let page = api
        .get("/api/v1/deliveries?event_id=evt_2&subscription=wiki")
        .expect(200)
        .json();
    assert_eq!(pairs(&page), set(&[("evt_2", "wiki")]));
    let page = api
        .get(&format!(
            "/api/v1/deliveries?event_id={}",
            common_escape(ODD_ID)
        ))
        .expect(200)
        .json();
    assert_eq!(pairs(&page), set(&[(ODD_ID, "crm")]));
    let page = api
        .get("/api/v1/deliveries?event_id=evt_5")
        .expect(200)
        .json();
    assert!(pairs(&page).is_empty(), "evt_5 went nowhere: {page}");

    // A glob matched nothing before: the filter compared it as an exact id.
    let page = api
        .get("/api/v1/deliveries?conversation=c-2*")
        .expect(200)
        .json();
    assert_eq!(
        pairs(&page),
        set(&[("evt_2", "crm"), ("evt_2", "wiki"), ("evt_4", "wiki")])
    );
    let page = api
        .get("/api/v1/deliveries?conversation=c-2")
        .expect(200)
        .json();
    assert_eq!(pairs(&page), set(&[("evt_2", "crm"), ("evt_2", "wiki")]));
}

/// `text` escaped for a query string or a path segment.
fn common_escape(text: &str) -> String {
    text.bytes()
        .map(|b| {
            if b.is_ascii_alphanumeric() || b"-._~".contains(&b) {
                (b as char).to_string()
            } else {
                format!("%{b:02X}")
            }
        })
        .collect()
}

#[test]
fn an_event_shows_as_received_with_its_source_and_every_delivery() {
    let fx = find_fixture::start();
    let api = fx.api();

    let event = api.get("/api/v1/events/evt_2").expect(200).json();
    assert_eq!(event["event"]["id"], "evt_2");
    assert_eq!(event["event"]["source"], fx.spool_source());
    assert!(
        event["event"]["received_at"].as_i64().unwrap_or(0) > 0,
        "{event}"
    );
    assert_eq!(
        pairs(&event["deliveries"]),
        set(&[("evt_2", "crm"), ("evt_2", "wiki")])
    );
    for delivery in event["deliveries"]["items"].as_array().unwrap() {
        assert_eq!(delivery["state"], "delivered", "{delivery}");
    }

    // Indented, but every value as stored: what a parse and reprint would have changed.
    let event = api.get("/api/v1/events/evt_1").expect(200).json();
    let stored = event["event"]["body"]
        .as_str()
        .unwrap_or_default()
        .to_string();
    assert!(stored.contains(find_fixture::EVT_1_DATA), "{stored}");
    let indented = event["body_indented"].as_str().unwrap_or_default();
    for exact in [
        "\"score\": 1.0000000000000001",
        "\"big\": 12345678901234567890",
        "\"tag\": \"a\",\n    \"tag\": \"b\"",
    ] {
        assert!(indented.contains(exact), "{exact:?} in\n{indented}");
    }
    let squeezed: String = indented.chars().filter(|c| !c.is_whitespace()).collect();
    let stored_squeezed: String = stored.chars().filter(|c| !c.is_whitespace()).collect();
    assert_eq!(squeezed, stored_squeezed);
    assert_eq!(pairs(&event["deliveries"]), set(&[("evt_1", "crm")]));

    let event = api.get("/api/v1/events/evt_5").expect(200).json();
    assert_eq!(event["deliveries"]["items"], json!([]));
    let event = api
        .get(&format!("/api/v1/events/{}", common_escape(ODD_ID)))
        .expect(200)
        .json();
    assert_eq!(event["event"]["id"], ODD_ID);

    // A test event from the API is stored with its own source.
    let sent = api
        .post("/api/v1/subscriptions/bot/test", None)
        .expect(202)
        .json();
    let test_id = sent["event_id"].as_str().unwrap_or_default().to_string();
    let event = api
        .get(&format!("/api/v1/events/{test_id}"))
        .expect(200)
        .json();
    assert_eq!(event["event"]["source"], "admin");
    assert_eq!(event["deliveries"]["items"][0]["subscription"], "bot");

    let missing = api.get("/api/v1/events/evt_nope").expect(404).json();
    assert!(
        missing["error"]
            .as_str()
            .unwrap_or_default()
            .contains("evt_nope"),
        "{missing}"
    );
    Api::anonymous(&fx.home)
        .get("/api/v1/events/evt_1")
        .expect(401);
}

#[test]
fn search_finds_events_deliveries_and_conversations_by_exact_id() {
    let fx = find_fixture::start();
    let api = fx.api();
    let kinds = |q: &str| -> Vec<(String, Value)> {
        let answer = api
            .get(&format!("/api/v1/search?q={}", common_escape(q)))
            .expect(200)
            .json();
        assert_eq!(answer["query"], q);
        answer["matches"]
            .as_array()
            .unwrap_or_else(|| panic!("no matches in {answer}"))
            .iter()
            .map(|m| {
                (
                    m["kind"].as_str().unwrap_or_default().to_string(),
                    m["id"].clone(),
                )
            })
            .collect()
    };
    assert_eq!(kinds("evt_3"), [("event".to_string(), json!("evt_3"))]);
    assert_eq!(kinds(ODD_ID), [("event".to_string(), json!(ODD_ID))]);
    let delivery = fx.delivery_id("evt_4", "wiki");
    assert_eq!(
        kinds(&delivery.to_string()),
        [("delivery".to_string(), json!(delivery))]
    );
    // "9999" is an event id; no delivery has that number.
    assert_eq!(kinds("9999"), [("event".to_string(), json!("9999"))]);
    assert_eq!(kinds("c-20"), [("conversation".to_string(), json!("c-20"))]);
    // An id that names an event and a delivery: both.
    assert_eq!(
        kinds(NUMBER_ID),
        [
            ("event".to_string(), json!(NUMBER_ID)),
            ("delivery".to_string(), json!(3))
        ]
    );
    let answer = api.get("/api/v1/search?q=c-3").expect(200).json();
    assert_eq!(answer["matches"][0]["events"], 2, "{answer}");
    assert!(kinds("nothing-has-this-id").is_empty());
    // Ids are exact: a glob finds nothing, it is not a pattern here.
    assert!(kinds("c-2*").is_empty());

    api.get("/api/v1/search").expect(400);
    api.get("/api/v1/search?q=%20").expect(400);
    api.get(&format!("/api/v1/search?q={}", "x".repeat(257)))
        .expect(400);
    api.get("/api/v1/search?query=evt_1").expect(400);
}

#[test]
fn a_configured_subscription_previews_the_events_of_its_last_day() {
    let fx = find_fixture::start();
    let api = fx.api();

    let preview = api
        .get("/api/v1/subscriptions/wiki/preview")
        .expect(200)
        .json();
    assert_eq!(previewed(&preview, "wiki"), (ids(&["evt_2", "evt_4"]), 2));
    assert_eq!(preview["scanned"], 8, "{preview}");
    assert_eq!(preview["truncated"], false);
    let preview = api
        .get("/api/v1/subscriptions/crm/preview")
        .expect(200)
        .json();
    assert_eq!(
        previewed(&preview, "crm"),
        (ids(&["evt_1", "evt_2", ODD_ID]), 3)
    );
    let preview = api
        .get("/api/v1/subscriptions/bot/preview")
        .expect(200)
        .json();
    assert_eq!(previewed(&preview, "bot"), (ids(&["evt_3", "9999"]), 2));
    let first = &preview["subscriptions"][0]["events"][0];
    assert_eq!(first["source"], fx.spool_source(), "{first}");

    api.get("/api/v1/subscriptions/nope/preview").expect(404);
}

const DRAFT_SECRET: &str = "whsec_ZHJhZnQtc2VjcmV0LW5ldmVyLXN0b3JlZC0xMjM0NTY=";

#[test]
fn a_draft_previews_without_a_secret_and_its_problems_are_located_in_it() {
    let fx = find_fixture::start();
    let api = fx.api();
    let draft = |toml: &str| api.post("/api/v1/preview", Some(json!({ "toml": toml })));

    // No secret at all, and a scope no configured subscription has.
    let text = format!(
        "[[subscription]]\nname = \"starts\"\nurl = \"https://crm.example.org/hook\"\n\
         conversations = [\"c-*\"]\nevents = [\"conversation.started\"]\n\n\
         [[subscription]]\nname = \"reports\"\nurl = \"https://crm.example.org/r\"\n\
         projects = [\"p-1\"]\nevents = [\"report.*\"]\nenabled = false\n\
         secret = \"{DRAFT_SECRET}\"\n"
    );
    let preview = draft(&text);
    let preview = preview.expect(200).json();
    assert_eq!(
        previewed(&preview, "starts"),
        (ids(&["evt_1", "evt_5", ODD_ID, NUMBER_ID]), 4)
    );
    assert_eq!(previewed(&preview, "reports"), (ids(&["evt_3", "9999"]), 2));
    assert_eq!(preview["subscriptions"][1]["enabled"], false);

    // Never stored: not in the database, nor in the audit log.
    assert!(
        !fx.home
            .store_bytes()
            .windows(DRAFT_SECRET.len())
            .any(|w| w == DRAFT_SECRET.as_bytes()),
        "the draft's secret is in the store"
    );
    assert_eq!(
        fx.home
            .count("SELECT count(*) FROM audit_log WHERE detail LIKE '%starts%'"),
        0
    );

    // Problems, located by line and column within the draft.
    let refused = draft(
        "[[subscription]]\nname = \"bad name\"\nurl = \"https://a.example.org/\"\n\
         conversations = [\"*\"]\n",
    )
    .expect(400)
    .json();
    let problems = refused["problems"].as_array().cloned().unwrap_or_default();
    assert!(
        problems.iter().any(|p| p["line"] == 2
            && p["column"] == 8
            && p["message"]
                .as_str()
                .unwrap_or_default()
                .contains("a name may only")),
        "{refused}"
    );
    assert!(
        problems.iter().any(|p| p["message"]
            .as_str()
            .unwrap_or_default()
            .contains("missing events")),
        "{refused}"
    );
    assert!(
        refused["error"]
            .as_str()
            .unwrap_or_default()
            .starts_with("the draft is not a valid subscription: draft:"),
        "{refused}"
    );
    let refused = draft("[[subscription]]\nname = \n").expect(400).json();
    assert_eq!(refused["problems"][0]["line"], 2, "{refused}");
    // Only subscriptions: another section could make the server read a file.
    let refused = draft("[admin]\napi_token_file = \"/etc/shadow\"\n")
        .expect(400)
        .json();
    assert_eq!(refused["problems"][0]["line"], 1, "{refused}");
    let refused = draft(
        "[[subscription]]\nname = \"f\"\nurl = \"https://a.example.org/\"\n\
         conversations = [\"*\"]\nevents = [\"*\"]\nsecret_file = \"/etc/shadow\"\n",
    );
    assert_eq!(
        refused.status, 200,
        "a named secret file is ignored, not read: {refused:?}"
    );
    draft("").expect(400);

    // Bounded, JSON only, and a session must send its CSRF token like every POST.
    let big = "#".repeat(70 * 1024);
    draft(&big).expect(413);
    api.post_raw("/api/v1/preview", Some("text/plain"), b"[[subscription]]")
        .expect(415);
    api.post("/api/v1/preview", Some(json!({ "draft": "x" })))
        .expect(400);
    let session = Api::login(&fx.home, PASSWORD);
    let body = json!({ "toml": "[[subscription]]\nname = \"s\"\nurl = \"https://a.example.org/\"\nconversations = [\"c-3\"]\nevents = [\"*\"]\n" });
    session
        .with_csrf(None)
        .post("/api/v1/preview", Some(body.clone()))
        .expect(403);
    let preview = session
        .post("/api/v1/preview", Some(body))
        .expect(200)
        .json();
    assert_eq!(previewed(&preview, "s"), (ids(&["evt_3", "9999"]), 2));
    Api::anonymous(&fx.home)
        .post("/api/v1/preview", Some(json!({ "toml": "" })))
        .expect(401);
}
