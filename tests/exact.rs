//! Exact data: numbers, escapes and key order reach the receiver as the producer wrote
//! them on every ingest path, and ECHO's canonical JSON matches Python's `json` for a
//! corpus of hard numbers (17-digit floats, subnormals, -0.0, 1e308, integers past 2^64),
//! so ECHO-signed requests carrying them verify. Python 3 is the reference throughout.

mod common;

use std::collections::HashMap;
use std::time::Duration;

use serde_json::value::RawValue;

use common::{catch_all, http_post, Home, Receiver, Serve};
use posthorn::inlet::{canonical, json};

const LONG: Duration = Duration::from_secs(20);
const TOKEN: &str = "inlet-token-0123456789";
const ECHO_SECRET: &str = "echo-shared-sëcret";

/// Hard numbers written by hand, then random doubles (their shortest repr) and random
/// 16 to 20 digit decimals that are not any double's shortest form, so they must be
/// rounded correctly. Each with Python's canonical form of it.
const CORPUS: &str = r#"
import json, math, random, struct
random.seed(20261125)
texts = """1086.1140522564137 0.1 -0.0 0.0 -0 0 1e308 1E308 1.7976931348623157e308
5e-324 4.9e-324 2.2250738585072014e-308 2.225073858507201e-308 2.4703282292062328e-324
2.4703282292062327e-324 1e-7 1E-7 1e+16 1E+16 1.5E+300 123456789012345680000
18446744073709551615 18446744073709551616 -9223372036854775808 -9223372036854775809
-123456789012345678901234567890 340282366920938463463374607431768211457 1.0 1.50 100
1e5 1E+5 0.30000000000000004 9007199254740993 9007199254740993.0 2.5e-5 123456.789e3
0.000001 1e-5 0.0001 1e15 1e16 1e22 1e23 8.98846567431158e307 7.2057594037927933e16
-1.0e-400 0e0 -0E-0 1234.5 0.1e1 100e-2""".split()
for _ in range(3000):
    x = struct.unpack("<d", random.getrandbits(64).to_bytes(8, "little"))[0]
    if math.isfinite(x):
        texts.append(repr(x))
for _ in range(3000):
    digits = random.choice([16, 17, 18, 20])
    mantissa = str(random.randrange(10 ** (digits - 1), 10 ** digits))
    point = random.randint(1, digits - 1)
    sign = random.choice(["", "-"])
    texts.append(f"{sign}{mantissa[:point]}.{mantissa[point:]}")
    texts.append(f"{sign}{mantissa}e{random.randint(-330, 290)}")
for text in texts:
    value = json.loads(text)
    if isinstance(value, float) and not math.isfinite(value):
        continue
    canonical = json.dumps({"v": value, "k": [value]}, separators=(",", ":"), sort_keys=True)
    print(json.dumps({"text": text, "canonical": canonical}))
"#;

#[test]
fn canonical_json_matches_python_for_a_corpus_of_hard_numbers() {
    let mut checked = 0;
    let mut wrong = Vec::new();
    for line in common::python(CORPUS, &[]).lines() {
        let case: serde_json::Value = serde_json::from_str(line).unwrap();
        let text = case["text"].as_str().unwrap();
        let expected = case["canonical"].as_str().unwrap();
        let body = format!(r#"{{"v": {text}, "k": [{text}]}}"#);
        let tree = json::parse(body.as_bytes())
            .unwrap_or_else(|err| panic!("{text} is JSON Python reads, but: {err}"));
        let got = canonical::dumps(&tree);
        if got != expected {
            wrong.push(format!("{text}: python {expected}, posthorn {got}"));
        }
        checked += 1;
    }
    assert!(checked > 9000, "only {checked} cases");
    assert!(
        wrong.is_empty(),
        "{} of {checked} differ:\n{}",
        wrong.len(),
        wrong.join("\n")
    );
}

/// One ECHO payload per argument (a JSON list of number texts, or "transcript:N" for a
/// Cyrillic transcript of N words), made and signed now as ECHO does: the body is
/// `json.dumps(payload)` (what `requests`' `json=` sends), the signature HMAC-SHA256
/// over the canonical dump.
const ECHO: &str = r#"
import hashlib, hmac, json, sys
from datetime import datetime, timezone
secret = sys.argv[1]
for i, arg in enumerate(sys.argv[2:]):
    conversation = {"id": f"conv-{i}", "duration": 1086.1140522564137}
    if arg.startswith("transcript:"):
        words = ["привет", "Καλημέρα", "мир", "собрание", "γειά", "ратуша"]
        n = int(arg.split(":")[1])
        conversation["transcript"] = " ".join(words[w % len(words)] for w in range(n))
        event = "conversation.transcribed"
    else:
        conversation["numbers"] = [json.loads(t) for t in json.loads(arg)]
        event = "conversation.started"
    payload = {"event": event, "timestamp": datetime.now(timezone.utc).isoformat(),
               "conversation": conversation, "project": {"id": "p-1", "name": "Städte"}}
    canonical = json.dumps(payload, separators=(",", ":"), sort_keys=True)
    signature = hmac.new(secret.encode(), canonical.encode(), hashlib.sha256).hexdigest()
    print(json.dumps({"body": json.dumps(payload), "signature": "sha256=" + signature}))
"#;

fn echo_requests(args: &[&str]) -> Vec<(String, String)> {
    let mut all = vec![ECHO_SECRET];
    all.extend_from_slice(args);
    common::python(ECHO, &all)
        .lines()
        .map(|line| {
            let v: serde_json::Value = serde_json::from_str(line).unwrap();
            (
                v["body"].as_str().unwrap().to_string(),
                v["signature"].as_str().unwrap().to_string(),
            )
        })
        .collect()
}

fn post_echo(home: &Home, body: &str, signature: &str) -> common::Response {
    http_post(
        &format!("{}/v1/sources/echo", home.inlet_url()),
        &[
            ("Content-Type", "application/json"),
            ("X-Webhook-Signature", signature),
        ],
        body.as_bytes(),
        false,
    )
}

/// The raw text of `data` in a delivered body, and its id.
fn delivered_data(body: &str) -> (String, String) {
    #[derive(serde::Deserialize)]
    struct Delivered<'a> {
        id: String,
        #[serde(borrow)]
        data: &'a RawValue,
    }
    let delivered: Delivered = serde_json::from_str(body)
        .unwrap_or_else(|err| panic!("delivered body is not the envelope ({err}): {body}"));
    (delivered.id, delivered.data.get().to_string())
}

fn start(receiver: &Receiver, sources: &str) -> (Home, Serve) {
    let home = Home::new();
    home.write_config(&format!(
        "[inlet]\ntoken = {TOKEN:?}\n{sources}\n{}",
        catch_all(&receiver.url)
    ));
    let serve = Serve::start(&home);
    common::wait_for_inlet(&home);
    (home, serve)
}

/// Regression: ECHO requests whose payload held a 17-digit float (about 6-9 % of them) or
/// an integer past 2^64 failed verification with 401, and the delivered payload carried
/// the altered number.
#[test]
fn echo_requests_with_hard_numbers_verify_and_arrive_unchanged() {
    let receiver = Receiver::start(204);
    let (home, _serve) = start(
        &receiver,
        &format!(
            "[[inlet.source]]\nname = \"echo\"\nprofile = \"echo\"\nsecret = {ECHO_SECRET:?}\n"
        ),
    );
    let sets = [
        r#"["1086.1140522564137", "0.30000000000000004", "5e-324", "1e308", "-0.0"]"#,
        r#"["18446744073709551616", "-123456789012345678901234567890", "2.2250738585072014e-308"]"#,
        r#"["0.1", "1.7976931348623157e308", "123456789012345680000", "9007199254740993"]"#,
    ];
    let requests = echo_requests(&sets);
    for (body, signature) in &requests {
        post_echo(&home, body, signature).expect(202);
    }
    receiver.wait_for_count(requests.len(), LONG);
    let mut got: Vec<String> = receiver
        .requests()
        .iter()
        .map(|r| delivered_data(&r.body).1)
        .collect();
    let mut sent: Vec<String> = requests.into_iter().map(|(body, _)| body).collect();
    got.sort();
    sent.sort();
    assert_eq!(
        got, sent,
        "the receiver gets the payload exactly as ECHO sent it"
    );
}

/// Regression: ECHO escapes every non-ASCII character as \uXXXX, so a long Cyrillic or
/// Greek transcript passed the 1 MiB inlet limit and got 413, which ECHO never retries.
#[test]
fn a_long_cyrillic_echo_transcript_is_taken() {
    let receiver = Receiver::start(204);
    let (home, _serve) = start(
        &receiver,
        &format!(
            "[[inlet.source]]\nname = \"echo\"\nprofile = \"echo\"\nsecret = {ECHO_SECRET:?}\n"
        ),
    );
    // Three hours of speech at 180 words a minute.
    let requests = echo_requests(&["transcript:32400"]);
    let (body, signature) = &requests[0];
    assert!(body.len() > 1 << 20, "the body is {} bytes", body.len());
    post_echo(&home, body, signature).expect(202);
    receiver.wait_for_count(1, LONG);
    assert_eq!(&delivered_data(&receiver.requests()[0].body).1, body);
}

/// Data with hard numbers, escapes that decode to the same text, and keys out of order.
const DATA: &str = r#"{"z": 1086.1140522564137, "a": [18446744073709551616, -0.0, 1E+5, 5e-324, 1e308, -123456789012345678901234567890, 1.50, 0.1e1], "s": "\u00e9\ud83d\ude00\/\"é", "é": {"y": 2.2250738585072014e-308, "x": -0}}"#;

#[test]
fn every_ingest_path_delivers_numbers_escapes_and_key_order_unchanged() {
    let receiver = Receiver::start(204);
    let (home, _serve) = start(
        &receiver,
        "[[inlet.source]]\nname = \"gen\"\nprofile = \"generic\"\nid = \"/id\"\ntype = \"/type\"\nconversation = \"/c\"\n",
    );
    let envelope = |id: &str| {
        format!(r#"{{"id":"{id}","type":"x.made","conversation_id":"c-1","data":{DATA}}}"#)
    };
    home.drop_json("one.json", &envelope("spool-json"));
    home.append(
        "feed.ndjson",
        format!("{}\n", envelope("spool-ndjson")).as_bytes(),
    );
    http_post(
        &format!("{}/v1/events", home.inlet_url()),
        &[
            ("Content-Type", "application/json"),
            ("Authorization", &format!("Bearer {TOKEN}")),
        ],
        envelope("inlet").as_bytes(),
        false,
    )
    .expect(202);
    let generic_body = format!(
        r#"{{"id": "generic", "type": "x.made", "c": "c-1", "payload": {DATA}, "n": 18446744073709551617}}"#
    );
    http_post(
        &format!("{}/v1/sources/gen", home.inlet_url()),
        &[("Content-Type", "application/json")],
        generic_body.as_bytes(),
        false,
    )
    .expect(202);
    receiver.wait_for_count(4, LONG);
    let got: HashMap<String, String> = receiver
        .requests()
        .iter()
        .map(|r| delivered_data(&r.body))
        .collect();
    for id in ["spool-json", "spool-ndjson", "inlet"] {
        assert_eq!(got.get(id).map(String::as_str), Some(DATA), "{id}");
    }
    assert_eq!(got.get("generic"), Some(&generic_body));
}
