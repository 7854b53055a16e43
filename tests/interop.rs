//! Signatures checked by other people's code: every request posthorn sends is verified
//! with the published Python `standardwebhooks` library (Standard Webhooks) or Python's
//! own `hmac` (the hex recipe), as receivers in the wild do. Needs `python3` with
//! `standardwebhooks` installed (`pip install -r tests/requirements.txt`).

mod common;

use std::io::Write as _;
use std::process::{Command, Stdio};
use std::time::Duration;

use common::{Answer, Home, Receiver, Recorded, Serve};

const SECOND_SECRET: &str = "whsec_dGhpcyBpcyBhIHNlY29uZCBzZWNyZXQgb2YgMzI=";

/// Runs `tests/fixtures/verify_webhook.py` on one request; `Err` holds its complaint.
fn python_verifies(request: &Recorded, verify: serde_json::Value) -> Result<(), String> {
    let headers: serde_json::Map<String, serde_json::Value> = request
        .headers
        .iter()
        .map(|(name, value)| (name.clone(), value.clone().into()))
        .collect();
    let mut input = verify;
    input["headers"] = headers.into();
    input["body"] = request.body.clone().into();
    let script = concat!(
        env!("CARGO_MANIFEST_DIR"),
        "/tests/fixtures/verify_webhook.py"
    );
    let mut child = Command::new("python3")
        .arg(script)
        .stdin(Stdio::piped())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .map_err(|err| format!("cannot run python3: {err}"))?;
    child
        .stdin
        .take()
        .expect("piped stdin")
        .write_all(input.to_string().as_bytes())
        .map_err(|err| err.to_string())?;
    let output = child.wait_with_output().map_err(|err| err.to_string())?;
    if output.status.success() {
        return Ok(());
    }
    let stderr = String::from_utf8_lossy(&output.stderr);
    if stderr.contains("No module named 'standardwebhooks'") {
        panic!(
            "this test needs the standardwebhooks package: pip install -r tests/requirements.txt"
        );
    }
    Err(format!(
        "{}{stderr}",
        String::from_utf8_lossy(&output.stdout)
    ))
}

#[test]
fn the_standardwebhooks_library_accepts_every_attempt_and_every_rotated_secret() {
    // Fail once, so a retry with a fresh timestamp and signature is checked too.
    let receiver = Receiver::with_script(vec![Answer::status(500)], Answer::status(204));
    let home = Home::new();
    home.write_config(&format!(
        "[[subscription]]\nname = \"std\"\nurl = \"{}/std\"\nconversations = [\"c-204\"]\n\
         events = [\"conversation.*\"]\nsecret = \"{} {SECOND_SECRET}\"\n",
        receiver.url,
        common::SECRET
    ));
    let _serve = Serve::start(&home);
    home.drop_json(
        "e.json",
        r#"{"id":"evt_interop","type":"conversation.transcribed","conversation_id":"c-204","data":{"text":"Grüße, ünïcödé ✓","n":[1.50,2e3]}}"#,
    );
    receiver.wait_for_count(2, Duration::from_secs(15));

    for (n, request) in receiver.requests().iter().enumerate() {
        for secret in [common::SECRET, SECOND_SECRET] {
            let verify = serde_json::json!({"scheme": "standard", "secret": secret});
            python_verifies(request, verify).unwrap_or_else(|err| {
                panic!("attempt {}: standardwebhooks refused it: {err}", n + 1)
            });
        }
        let wrong = serde_json::json!({
            "scheme": "standard",
            "secret": "whsec_d3Jvbmcgc2VjcmV0IHdyb25nIHNlY3JldCB3cm9uZw=="
        });
        assert!(
            python_verifies(request, wrong).is_err(),
            "a secret that was never configured must not verify"
        );
    }
}

#[test]
fn python_hmac_accepts_the_hex_signature_of_the_raw_body() {
    let receiver = Receiver::start(204);
    let home = Home::new();
    home.write_config(&format!(
        "[[subscription]]\nname = \"hex\"\nurl = \"{}/hex\"\nconversations = [\"c-204\"]\n\
         events = [\"*\"]\nsecret = \"plain shared secret ✓\"\nsignature = \"hex\"\n\
         signature_header = \"X-Dembrane-Signature\"\nsignature_prefix = \"sha256=\"\n",
        receiver.url
    ));
    let _serve = Serve::start(&home);
    home.drop_json(
        "e.json",
        r#"{"id":"evt_hex","type":"conversation.ended","conversation_id":"c-204","data":{"ü":"✓"}}"#,
    );
    receiver.wait_for_count(1, Duration::from_secs(15));
    let request = &receiver.requests()[0];
    let verify = serde_json::json!({
        "scheme": "hex",
        "secret": "plain shared secret ✓",
        "header": "X-Dembrane-Signature",
        "prefix": "sha256=",
    });
    python_verifies(request, verify).unwrap_or_else(|err| panic!("python hmac refused it: {err}"));
    let tampered = Recorded {
        body: request.body.replace("✓", "x"),
        ..request.clone()
    };
    let verify = serde_json::json!({
        "scheme": "hex",
        "secret": "plain shared secret ✓",
        "header": "X-Dembrane-Signature",
        "prefix": "sha256=",
    });
    assert!(
        python_verifies(&tampered, verify).is_err(),
        "a changed body must not verify"
    );
}
