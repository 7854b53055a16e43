//! `POST /v1/events` through the real binary: every status the inlet answers, the three
//! body layouts, all-or-nothing batches, and delivery end to end.

mod common;

use std::time::Duration;

use common::{catch_all, http_post, Home, Receiver, Serve};

const TOKEN: &str = "inlet-token-0123456789";
const JSON: (&str, &str) = ("Content-Type", "application/json");
const NDJSON: (&str, &str) = ("Content-Type", "application/x-ndjson");
const LONG: Duration = Duration::from_secs(15);

fn auth() -> (&'static str, String) {
    ("Authorization", format!("Bearer {TOKEN}"))
}

fn post(home: &Home, content_type: (&str, &str), body: &str) -> common::Response {
    let (name, value) = auth();
    http_post(
        &format!("{}/v1/events", home.inlet_url()),
        &[content_type, (name, &value)],
        body.as_bytes(),
        false,
    )
}

fn event(id: &str) -> String {
    format!(
        r#"{{"id":"{id}","type":"conversation.started","conversation_id":"c-1","data":{{"n":"{id}"}}}}"#
    )
}

/// A posthorn with a token, a small body limit and one catch-all subscription.
fn start(receiver: &Receiver, extra_inlet: &str) -> (Home, Serve) {
    let home = Home::new();
    home.write_config(&format!(
        "[inlet]\ntoken = {TOKEN:?}\n{extra_inlet}\n{}",
        catch_all(&receiver.url)
    ));
    let serve = Serve::start(&home);
    common::wait_for_inlet(&home);
    (home, serve)
}

fn ids(value: &serde_json::Value) -> Vec<String> {
    value
        .as_array()
        .unwrap_or_else(|| panic!("expected an array of ids, got {value}"))
        .iter()
        .map(|v| v.as_str().unwrap_or_default().to_string())
        .collect()
}

#[test]
fn one_event_an_array_and_ndjson_are_stored_and_delivered() {
    let receiver = Receiver::start(204);
    let (home, _serve) = start(&receiver, "");

    let one = post(&home, JSON, &event("e1")).expect(202).json();
    assert_eq!(ids(&one["accepted"]), ["e1"]);
    assert_eq!(ids(&one["duplicates"]), Vec::<String>::new());

    let array = format!("[{}, {}]", event("e2"), event("e3"));
    let got = post(
        &home,
        ("Content-Type", "application/json; charset=utf-8"),
        &array,
    )
    .expect(202)
    .json();
    assert_eq!(ids(&got["accepted"]), ["e2", "e3"]);

    let ndjson = format!("{}\n\n{}\n", event("e4"), event("e5"));
    let got = post(&home, NDJSON, &ndjson).expect(202).json();
    assert_eq!(ids(&got["accepted"]), ["e4", "e5"]);

    // Acknowledged means stored: the rows are there the moment 202 came back.
    assert_eq!(
        home.count("SELECT count(*) FROM events WHERE source = 'inlet'"),
        5
    );
    receiver.wait_for_count(5, LONG);
    let mut delivered: Vec<String> = receiver.requests().iter().map(|r| r.event_id()).collect();
    delivered.sort();
    assert_eq!(delivered, ["e1", "e2", "e3", "e4", "e5"]);
    receiver.requests()[0]
        .verify_standard(common::SECRET)
        .unwrap();
}

#[test]
fn duplicates_are_reported_and_stored_once() {
    let receiver = Receiver::start(204);
    let (home, _serve) = start(&receiver, "");
    post(&home, JSON, &event("d1")).expect(202);
    let got = post(&home, JSON, &format!("[{}, {}]", event("d1"), event("d2")))
        .expect(202)
        .json();
    assert_eq!(ids(&got["accepted"]), ["d2"]);
    assert_eq!(ids(&got["duplicates"]), ["d1"]);
    assert_eq!(home.count("SELECT count(*) FROM events"), 2);
    assert_eq!(home.count("SELECT count(*) FROM deliveries"), 2);
}

#[test]
fn a_batch_with_bad_items_names_each_by_index_and_stores_nothing() {
    let receiver = Receiver::start(204);
    let (home, _serve) = start(&receiver, "");
    let batch = format!(
        r#"[{}, {{"type":"x"}}, {}, {{"id":"z","type":"conversation.ended"}}]"#,
        event("ok1"),
        event("ok2")
    );
    let got = post(&home, JSON, &batch).expect(400).json();
    assert!(
        got["error"]
            .as_str()
            .unwrap()
            .contains("nothing was stored"),
        "{got}"
    );
    let items = got["items"].as_array().unwrap();
    let indexes: Vec<u64> = items.iter().map(|i| i["index"].as_u64().unwrap()).collect();
    assert_eq!(indexes, [1, 3], "{got}");
    assert!(
        items[0]["reason"]
            .as_str()
            .unwrap()
            .contains("\"id\" is missing"),
        "{got}"
    );
    assert!(
        items[1]["reason"]
            .as_str()
            .unwrap()
            .contains("conversation_id"),
        "{got}"
    );

    let ndjson = format!("{}\nnot json\n", event("ok3"));
    let got = post(&home, NDJSON, &ndjson).expect(400).json();
    assert_eq!(got["items"][0]["index"], 1);
    assert_eq!(got["items"][0]["line"], 2);

    post(&home, JSON, "{\"id\":").expect(400);
    post(&home, JSON, "[]").expect(400);
    assert_eq!(
        home.count("SELECT count(*) FROM events"),
        0,
        "nothing is stored"
    );
    // Each refused batch is kept for the operator, with what was wrong and its start.
    let reasons: Vec<String> =
        home.query("SELECT reason FROM rejections WHERE source = 'inlet' ORDER BY id");
    assert_eq!(reasons.len(), 4, "{reasons:?}");
    assert!(
        reasons[0].contains("item 1: ") && reasons[0].contains("item 3: "),
        "{reasons:?}"
    );
    assert!(reasons[1].contains("item 1 (line 2)"), "{reasons:?}");
    let snippets: Vec<String> =
        home.query("SELECT snippet FROM rejections WHERE source = 'inlet' ORDER BY id");
    assert!(snippets[1].contains("not json"), "{snippets:?}");
}

#[test]
fn missing_or_wrong_tokens_are_401_with_www_authenticate() {
    let receiver = Receiver::start(204);
    let (home, serve) = start(&receiver, "");
    let url = format!("{}/v1/events", home.inlet_url());
    let body = event("t1");
    for headers in [
        vec![JSON],
        vec![JSON, ("Authorization", "Bearer wrong-token")],
        vec![JSON, ("Authorization", TOKEN)],
    ] {
        let got = http_post(&url, &headers, body.as_bytes(), false).expect(401);
        assert!(
            got.header("www-authenticate")
                .is_some_and(|v| v.starts_with("Bearer")),
            "{got:?}"
        );
        assert!(got.json()["error"].is_string());
    }
    assert_eq!(home.count("SELECT count(*) FROM events"), 0);
    assert_eq!(
        home.count("SELECT count(*) FROM rejections"),
        0,
        "requests without the token are logged, not stored"
    );
    assert!(!serve.log().contains(TOKEN), "the token is never logged");
}

#[test]
fn without_a_token_the_inlet_says_how_to_set_one() {
    let home = Home::new();
    home.write_config("");
    let serve = Serve::start(&home);
    common::wait_for_inlet(&home);
    let got = post(&home, JSON, &event("n1")).expect(503).json();
    let message = got["error"].as_str().unwrap();
    assert!(
        message.contains("token_env") && message.contains("[inlet]"),
        "{message}"
    );
    assert!(
        serve.log().contains("no [inlet] token configured"),
        "{}",
        serve.log()
    );
}

#[test]
fn bodies_over_the_limit_are_413_even_without_a_content_length() {
    let receiver = Receiver::start(204);
    let (home, _serve) = start(&receiver, "max_body_bytes = \"64KiB\"");
    let big = format!(
        r#"{{"id":"big","type":"x","data":"{}"}}"#,
        "x".repeat(200 << 10)
    );
    let (name, value) = auth();
    let url = format!("{}/v1/events", home.inlet_url());
    let headers = [JSON, (name, value.as_str())];
    let got = http_post(&url, &headers, big.as_bytes(), false).expect(413);
    assert_eq!(got.json()["limit"], 65536);
    // Streamed: the limit is enforced while reading, not from a declared length.
    http_post(&url, &headers, big.as_bytes(), true).expect(413);
    // Just under the limit is fine.
    let small = format!(
        r#"{{"id":"small","type":"x","data":"{}"}}"#,
        "x".repeat(60 << 10)
    );
    http_post(&url, &headers, small.as_bytes(), true).expect(202);
    assert_eq!(home.count("SELECT count(*) FROM events"), 1);
}

#[test]
fn other_content_types_are_415() {
    let receiver = Receiver::start(204);
    let (home, _serve) = start(&receiver, "");
    for content_type in ["text/plain", "application/x-www-form-urlencoded"] {
        let got = post(&home, ("Content-Type", content_type), &event("c1")).expect(415);
        assert!(got.json()["error"]
            .as_str()
            .unwrap()
            .contains("application/x-ndjson"));
    }
    let (name, value) = auth();
    http_post(
        &format!("{}/v1/events", home.inlet_url()),
        &[(name, &value)],
        event("c1").as_bytes(),
        false,
    )
    .expect(415);
    assert_eq!(home.count("SELECT count(*) FROM events"), 0);
}

#[test]
fn a_full_store_is_503_with_retry_after() {
    if common::sqlite_only("a store full at [storage] max_size") {
        return;
    }
    let receiver = Receiver::start(204);
    let home = Home::new();
    let config = home.write_config(&format!(
        "[inlet]\ntoken = {TOKEN:?}\n{}",
        catch_all(&receiver.url)
    ));
    // The smallest limit, and 6 MiB of events to take the store over it.
    let _ = config;
    home.set_max_size(common::MIN_MAX_SIZE);
    home.drop_filler(6);
    let _serve = Serve::start(&home);
    common::wait_for_inlet(&home);
    home.wait_for_filler();
    // The writer measures the store after its first commit; keep posting until refused.
    let mut last = post(&home, JSON, &event("f0"));
    for n in 1..50 {
        if last.status == 503 {
            break;
        }
        std::thread::sleep(Duration::from_millis(50));
        last = post(&home, JSON, &event(&format!("f{n}")));
    }
    let got = last.expect(503);
    assert!(got.header("retry-after").is_some(), "{got:?}");
    assert!(got.json()["error"].as_str().unwrap().contains("max_size"));
}

#[test]
fn unknown_routes_answer_json_404() {
    let receiver = Receiver::start(204);
    let (home, _serve) = start(&receiver, "");
    let got = http_post(
        &format!("{}/v1/nope", home.inlet_url()),
        &[JSON],
        b"{}",
        false,
    )
    .expect(404);
    assert!(got.json()["error"].is_string());
}

#[test]
fn sigterm_stops_the_inlet_and_exits_cleanly() {
    let receiver = Receiver::start(204);
    let (home, serve) = start(&receiver, "");
    post(&home, JSON, &event("s1")).expect(202);
    assert_eq!(serve.terminate(), Some(0));
    assert!(
        std::net::TcpStream::connect(("127.0.0.1", home.port)).is_err(),
        "the port is released"
    );
}
