//! Inlet sources through the real binary. ECHO: payloads and signatures made by Python's
//! own `json` and `hmac` modules (as ECHO makes them), accepted, routed by conversation,
//! refused when tampered with or signed with another secret, and stored once when ECHO
//! retries. Generic: Standard Webhooks and hex HMAC verification.

mod common;

use std::time::{Duration, SystemTime, UNIX_EPOCH};

use base64::engine::general_purpose::STANDARD as BASE64;
use base64::Engine as _;
use hmac::{Hmac, Mac};
use sha2::Sha256;

use common::{http_post, subscription, Home, Receiver, Serve, SECRET};

const ECHO_SECRET: &str = "echo-shared-sëcret";
const LONG: Duration = Duration::from_secs(15);

/// Python builds each payload, serialises the body the way an HTTP client's `json=` does
/// (`json.dumps` defaults: spaces, insertion order, ASCII escapes) and signs
/// `json.dumps(payload, separators=(",", ":"), sort_keys=True)` with HMAC-SHA256.
/// Timestamps are ECHO's (`datetime.now(timezone.utc).isoformat()`), made `argv[2]`
/// seconds ago.
const PYTHON: &str = r#"
import hashlib, hmac, json, sys
from datetime import datetime, timedelta, timezone
secret = sys.argv[1]
now = datetime.now(timezone.utc) - timedelta(seconds=int(sys.argv[2]))
stamp = lambda minutes: (now + timedelta(minutes=minutes)).isoformat()
payloads = [
    {"event": "conversation.started", "timestamp": stamp(0),
     "conversation": {"id": "conv-1", "title": "Noord — wijkavond", "tags": ["über", "ça"]},
     "project": {"name": "Städte", "id": "p-1", "language": "nl"},
     "dashboardUrl": "https://echo.example/p/p-1"},
    {"event": "conversation.transcribed", "timestamp": stamp(-1),
     "conversation": {"id": "conv-2", "duration": 1234.5, "score": 0.1, "tiny": 1e-07,
                      "big": 1e+16, "whole": 3.0, "neg": -0.25, "count": 42,
                      "zeta": {"b": [1, 2.5, {"y": None, "x": True}], "a": "😀 emoji"}},
     "project": {"id": "p-1", "name": "P", "language": "en"},
     "dashboardUrl": "https://echo.example/p/p-1"},
    {"event": "report.generated", "timestamp": stamp(-2),
     "report": {"id": "r-9", "summary": "日本語 and \"quotes\" and \\ and \n newline"},
     "project": {"id": "p-1", "name": "P", "language": "ja"},
     "dashboardUrl": "https://echo.example/p/p-1"},
    {"event": "webhook.test", "timestamp": stamp(-3),
     "project": {"id": "p-1", "name": "P", "language": "en"}, "dashboardUrl": None},
]
for payload in payloads:
    canonical = json.dumps(payload, separators=(",", ":"), sort_keys=True)
    signature = hmac.new(secret.encode("utf-8"), canonical.encode("utf-8"), hashlib.sha256).hexdigest()
    print(json.dumps({"event": payload["event"], "body": json.dumps(payload),
                      "timestamp": payload["timestamp"], "signature": "sha256=" + signature}))
"#;

struct Signed {
    event: String,
    body: String,
    timestamp: String,
    signature: String,
}

fn python_payloads(secret: &str) -> Vec<Signed> {
    python_payloads_made_ago(secret, 0)
}

/// The payloads as ECHO would have made them `age_secs` seconds ago.
fn python_payloads_made_ago(secret: &str, age_secs: u64) -> Vec<Signed> {
    common::python(PYTHON, &[secret, &age_secs.to_string()])
        .lines()
        .map(|line| {
            let v: serde_json::Value = serde_json::from_str(line).unwrap();
            Signed {
                event: v["event"].as_str().unwrap().to_string(),
                body: v["body"].as_str().unwrap().to_string(),
                timestamp: v["timestamp"].as_str().unwrap().to_string(),
                signature: v["signature"].as_str().unwrap().to_string(),
            }
        })
        .collect()
}

fn post_echo(home: &Home, signed: &Signed, signature: &str, body: &str) -> common::Response {
    http_post(
        &format!("{}/v1/sources/echo", home.inlet_url()),
        &[
            ("Content-Type", "application/json"),
            ("X-Webhook-Event", &signed.event),
            ("X-Webhook-Signature", signature),
        ],
        body.as_bytes(),
        false,
    )
}

/// posthorn with an ECHO source and two subscriptions, one per conversation, plus one
/// for reports and tests of the project.
fn start_echo(conv1: &Receiver, conv2: &Receiver, project: &Receiver) -> (Home, Serve) {
    let home = Home::new();
    home.write_config(&format!(
        "[[inlet.source]]\nname = \"echo\"\nprofile = \"echo\"\nsecret = {ECHO_SECRET:?}\n{}{}{}",
        subscription(
            "conv-1",
            &format!("{}/hook", conv1.url),
            "conversations = [\"conv-1\"]",
            "[\"conversation.*\"]"
        ),
        subscription(
            "conv-2",
            &format!("{}/hook", conv2.url),
            "conversations = [\"conv-2\"]",
            "[\"conversation.*\"]"
        ),
        subscription(
            "reports",
            &format!("{}/hook", project.url),
            "projects = [\"p-1\"]",
            "[\"report.generated\", \"webhook.test\"]"
        ),
    ));
    let serve = Serve::start(&home);
    common::wait_for_inlet(&home);
    (home, serve)
}

#[test]
fn echo_webhooks_signed_by_python_are_accepted_and_routed_by_conversation() {
    let (conv1, conv2, project) = (
        Receiver::start(204),
        Receiver::start(204),
        Receiver::start(204),
    );
    let (home, serve) = start_echo(&conv1, &conv2, &project);
    let payloads = python_payloads(ECHO_SECRET);
    assert!(
        payloads[0].timestamp.contains('.') && payloads[0].timestamp.ends_with("+00:00"),
        "ECHO's isoformat() with microseconds: {}",
        payloads[0].timestamp
    );
    for signed in &payloads {
        let got = post_echo(&home, signed, &signed.signature, &signed.body).expect(202);
        let accepted = got.json()["accepted"][0].as_str().unwrap().to_string();
        assert!(accepted.starts_with("echo_"), "{got:?}");
    }
    conv1.wait_for_count(1, LONG);
    conv2.wait_for_count(1, LONG);
    project.wait_for_count(2, LONG);

    let started = conv1.requests()[0].json();
    assert_eq!(started["type"], "conversation.started");
    assert_eq!(started["conversation_id"], "conv-1");
    assert_eq!(started["project_id"], "p-1");
    assert_eq!(started["timestamp"], payloads[0].timestamp.as_str());
    assert_eq!(started["data"]["project"]["name"], "Städte");
    let transcribed = conv2.requests()[0].json();
    assert_eq!(transcribed["data"]["conversation"]["zeta"]["a"], "😀 emoji");
    assert_eq!(transcribed["data"]["conversation"]["duration"], 1234.5);
    conv1.requests()[0].verify_standard(SECRET).unwrap();
    let mut kinds: Vec<String> = project
        .requests()
        .iter()
        .map(|r| r.json()["type"].as_str().unwrap().to_string())
        .collect();
    kinds.sort();
    assert_eq!(kinds, ["report.generated", "webhook.test"]);
    assert!(!serve.log().contains(ECHO_SECRET));
}

#[test]
fn tampered_or_wrongly_signed_echo_webhooks_are_401_and_nothing_is_stored() {
    let (conv1, conv2, project) = (
        Receiver::start(204),
        Receiver::start(204),
        Receiver::start(204),
    );
    let (home, serve) = start_echo(&conv1, &conv2, &project);
    let signed = &python_payloads(ECHO_SECRET)[0];
    let tampered = signed.body.replace("conv-1", "conv-2");
    let got = post_echo(&home, signed, &signed.signature, &tampered).expect(401);
    assert!(
        got.json()["error"].as_str().unwrap().contains("signature"),
        "{got:?}"
    );
    let other = &python_payloads("another-secret")[0];
    post_echo(&home, signed, &other.signature, &signed.body).expect(401);
    http_post(
        &format!("{}/v1/sources/echo", home.inlet_url()),
        &[("Content-Type", "application/json")],
        signed.body.as_bytes(),
        false,
    )
    .expect(401);
    assert_eq!(home.count("SELECT count(*) FROM events"), 0);
    // The first refusal of the minute is kept for the operator, without the secret; the
    // others are counted (and summed up in one row once the minute is over).
    let reasons: Vec<String> =
        home.query("SELECT reason FROM rejections WHERE source = 'source:echo' ORDER BY id");
    assert_eq!(reasons.len(), 1, "{reasons:?}");
    let metrics = common::http_get(&format!("{}/metrics", home.inlet_url())).body;
    assert!(
        metrics.contains(
            "posthorn_refused_requests_total{route=\"source:echo\",reason=\"unverified\"} 3"
        ),
        "{metrics}"
    );
    assert!(
        reasons
            .iter()
            .all(|r| r.starts_with("signature verification failed")),
        "{reasons:?}"
    );
    assert!(!reasons.iter().any(|r| r.contains(ECHO_SECRET)));
    assert!(
        serve.log().contains("inlet source request refused"),
        "{}",
        serve.log()
    );
    assert!(!serve.log().contains(ECHO_SECRET));
}

#[test]
fn an_echo_retry_of_the_same_payload_is_stored_once() {
    let (conv1, conv2, project) = (
        Receiver::start(204),
        Receiver::start(204),
        Receiver::start(204),
    );
    let (home, _serve) = start_echo(&conv1, &conv2, &project);
    let signed = &python_payloads(ECHO_SECRET)[1];
    let first = post_echo(&home, signed, &signed.signature, &signed.body)
        .expect(202)
        .json();
    let again = post_echo(&home, signed, &signed.signature, &signed.body)
        .expect(202)
        .json();
    let id = first["accepted"][0].as_str().unwrap();
    assert_eq!(again["duplicates"][0].as_str(), Some(id), "{again}");
    assert_eq!(home.count("SELECT count(*) FROM events"), 1);
    conv2.wait_for_count(1, LONG);
    std::thread::sleep(Duration::from_millis(300));
    assert_eq!(conv2.count(), 1, "delivered once");
}

#[test]
fn unknown_sources_are_404() {
    let receiver = Receiver::start(204);
    let (home, _serve) = start_echo(&receiver, &receiver, &receiver);
    http_post(
        &format!("{}/v1/sources/nope", home.inlet_url()),
        &[("Content-Type", "application/json")],
        b"{}",
        false,
    )
    .expect(404);
}

fn generic_home(receiver: &Receiver) -> (Home, Serve) {
    let home = Home::new();
    home.write_config(&format!(
        "[[inlet.source]]\nname = \"std\"\nprofile = \"generic\"\nid = \"/msg/id\"\n\
         type = \"/kind\"\nconversation = \"/msg/conversation\"\nproject = \"/org\"\n\
         occurred_at = \"/at\"\nverify = \"standard\"\nsecret = {SECRET:?}\n\
         [[inlet.source]]\nname = \"hex\"\nprofile = \"generic\"\n\
         type_value = \"conversation.ended\"\nconversation = \"/session\"\nverify = \"hex\"\n\
         secret = \"hex-key\"\nsignature_header = \"X-Sig\"\nsignature_prefix = \"sha256=\"\n{}",
        common::catch_all(&receiver.url)
    ));
    let serve = Serve::start(&home);
    common::wait_for_inlet(&home);
    (home, serve)
}

fn standard_headers(id: &str, ts: i64, body: &str) -> String {
    let key = BASE64
        .decode(SECRET.strip_prefix("whsec_").unwrap())
        .unwrap();
    let mut mac = Hmac::<Sha256>::new_from_slice(&key).unwrap();
    mac.update(format!("{id}.{ts}.{body}").as_bytes());
    format!("v1,{}", BASE64.encode(mac.finalize().into_bytes()))
}

#[test]
fn a_generic_source_verifies_standard_webhooks_and_maps_pointers() {
    let receiver = Receiver::start(204);
    let (home, _serve) = generic_home(&receiver);
    let body = r#"{"kind":"conversation.summarized","msg":{"id":"m-7","conversation":"c-77"},"org":"o-1","at":"2026-11-22T10:00:00Z"}"#;
    let now = SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .unwrap()
        .as_secs() as i64;
    let url = format!("{}/v1/sources/std", home.inlet_url());
    let post = |ts: i64, signature: &str, body: &str| {
        let ts = ts.to_string();
        http_post(
            &url,
            &[
                ("Content-Type", "application/json"),
                ("webhook-id", "msg_1"),
                ("webhook-timestamp", &ts),
                ("webhook-signature", signature),
            ],
            body.as_bytes(),
            false,
        )
    };
    let got = post(now, &standard_headers("msg_1", now, body), body)
        .expect(202)
        .json();
    assert_eq!(got["accepted"][0], "m-7");
    // Stale, tampered, or signed for another id: refused.
    let stale = now - 400;
    post(stale, &standard_headers("msg_1", stale, body), body).expect(401);
    post(
        now,
        &standard_headers("msg_1", now, body),
        &body.replace("c-77", "c-78"),
    )
    .expect(401);
    post(now, &standard_headers("msg_2", now, body), body).expect(401);
    receiver.wait_for_count(1, LONG);
    let delivered = receiver.requests()[0].json();
    assert_eq!(delivered["id"], "m-7");
    assert_eq!(delivered["type"], "conversation.summarized");
    assert_eq!(delivered["conversation_id"], "c-77");
    assert_eq!(delivered["project_id"], "o-1");
    assert_eq!(delivered["timestamp"], "2026-11-22T10:00:00Z");
}

#[test]
fn a_generic_source_verifies_hex_signatures_and_derives_ids() {
    let receiver = Receiver::start(204);
    let (home, _serve) = generic_home(&receiver);
    let body = r#"{"session":"c-5","text":"hallo"}"#;
    let hex = common::hex_hmac(b"hex-key", body.as_bytes());
    let url = format!("{}/v1/sources/hex", home.inlet_url());
    let post = |signature: &str| {
        http_post(
            &url,
            &[("Content-Type", "application/json"), ("X-Sig", signature)],
            body.as_bytes(),
            false,
        )
    };
    let first = post(&format!("sha256={hex}")).expect(202).json();
    let id = first["accepted"][0].as_str().unwrap().to_string();
    assert!(id.starts_with("hex_"), "{first}");
    // The same body again: the derived id dedupes it.
    let again = post(&format!("sha256={hex}")).expect(202).json();
    assert_eq!(again["duplicates"][0].as_str(), Some(id.as_str()));
    post(&hex).expect(401);
    post("sha256=00").expect(401);
    receiver.wait_for_count(1, LONG);
    assert_eq!(receiver.requests()[0].json()["conversation_id"], "c-5");
}

/// posthorn with one ECHO source (`extra` goes into its block) and a catch-all.
fn start_echo_with(receiver: &Receiver, extra: &str) -> (Home, Serve) {
    let home = Home::new();
    home.write_config(&format!(
        "[[inlet.source]]\nname = \"echo\"\nprofile = \"echo\"\nsecret = {ECHO_SECRET:?}\n{extra}\n{}",
        common::catch_all(&receiver.url)
    ));
    let serve = Serve::start(&home);
    common::wait_for_inlet(&home);
    (home, serve)
}

#[test]
fn a_captured_echo_request_replayed_an_hour_later_is_401_and_not_stored() {
    let receiver = Receiver::start(204);
    let (home, serve) = start_echo_with(&receiver, "");
    let captured = &python_payloads_made_ago(ECHO_SECRET, 3600)[0];
    let got = post_echo(&home, captured, &captured.signature, &captured.body).expect(401);
    let error = got.json()["error"].as_str().unwrap().to_string();
    assert!(error.contains("replay window"), "{error}");
    assert!(error.contains(&captured.timestamp), "{error}");
    assert_eq!(home.count("SELECT count(*) FROM events"), 0);
    assert!(serve.log().contains("replay window"), "{}", serve.log());
    // A request ECHO makes now (or retried within minutes) still goes through.
    let fresh = &python_payloads_made_ago(ECHO_SECRET, 150)[0];
    post_echo(&home, fresh, &fresh.signature, &fresh.body).expect(202);
    receiver.wait_for_count(1, LONG);
}

#[test]
fn an_echo_source_with_replay_window_off_takes_old_requests() {
    let receiver = Receiver::start(204);
    let (home, _serve) = start_echo_with(&receiver, "replay_window = \"off\"");
    let old = &python_payloads_made_ago(ECHO_SECRET, 3 * 86_400)[0];
    post_echo(&home, old, &old.signature, &old.body).expect(202);
    receiver.wait_for_count(1, LONG);
}

#[test]
fn a_generic_hex_source_refuses_a_replay_outside_its_window() {
    let receiver = Receiver::start(204);
    let home = Home::new();
    home.write_config(&format!(
        "[[inlet.source]]\nname = \"hex\"\nprofile = \"generic\"\n\
         type_value = \"conversation.ended\"\nconversation = \"/session\"\noccurred_at = \"/sent_at\"\n\
         verify = \"hex\"\nsecret = \"hex-key\"\nreplay_window = \"2m\"\n{}",
        common::catch_all(&receiver.url)
    ));
    let _serve = Serve::start(&home);
    common::wait_for_inlet(&home);
    let now = SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .unwrap()
        .as_secs() as i64;
    let at = |secs: i64| {
        time::OffsetDateTime::from_unix_timestamp(secs)
            .unwrap()
            .format(&time::format_description::well_known::Rfc3339)
            .unwrap()
    };
    let post = |body: &str| {
        let hex = common::hex_hmac(b"hex-key", body.as_bytes());
        http_post(
            &format!("{}/v1/sources/hex", home.inlet_url()),
            &[
                ("Content-Type", "application/json"),
                ("X-Webhook-Signature", &hex),
            ],
            body.as_bytes(),
            false,
        )
    };
    let old = format!(r#"{{"session":"c-5","sent_at":"{}"}}"#, at(now - 600));
    let got = post(&old).expect(401);
    assert!(got.body.contains("replay window"), "{got:?}");
    let future = format!(r#"{{"session":"c-5","sent_at":"{}"}}"#, at(now + 600));
    post(&future).expect(401);
    let missing = r#"{"session":"c-5"}"#;
    post(missing).expect(401);
    assert_eq!(home.count("SELECT count(*) FROM events"), 0);
    let fresh = format!(r#"{{"session":"c-5","sent_at":"{}"}}"#, at(now - 30));
    post(&fresh).expect(202);
    receiver.wait_for_count(1, LONG);
}

/// Regression: a source's 413 named `[inlet] max_body_bytes` even when the source's own
/// limit had refused the body, sending the operator to the wrong key.
#[test]
fn a_body_over_a_sources_own_limit_is_413_naming_that_limit() {
    let receiver = Receiver::start(204);
    let (home, _serve) = start_echo_with(&receiver, "max_body_bytes = \"2MiB\"");
    let signed = &python_payloads(ECHO_SECRET)[0];
    let big = format!("{{\"pad\":\"{}\"}}", "x".repeat(3 << 20));
    let got = post_echo(&home, signed, &signed.signature, &big).expect(413);
    let error = got.json()["error"].as_str().unwrap().to_string();
    assert!(
        error.contains("max_body_bytes of the [[inlet.source]] named \"echo\""),
        "{error}"
    );
    assert_eq!(got.json()["limit"], 2 << 20);
    assert_eq!(home.count("SELECT count(*) FROM events"), 0);
}
