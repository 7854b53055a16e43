//! The snippets are run, not just read: each language's code checks requests signed by
//! `deliver::request_headers`, valid and tampered, through the real interpreter or
//! compiler (python3, node, go).

use std::io::Write as _;
use std::path::Path;
use std::process::{Command, Stdio};

use base64::Engine as _;
use serde_json::json;

use super::*;
use crate::config::{parse, Config};
use crate::deliver::request_headers;

const WHSEC_OLD: &str = "whsec_MfKQ9r8GKYqrTwjUPD8ILPZIo2LaLaSw";
const WHSEC_NEW: &str = "whsec_dGhpcyBpcyBhIG5ldyBzZWNyZXQgZm9yIHRoZSB0ZXN0";
const HEX_SECRET: &str = "a shared secret with spaces and ünïcode";

fn config(text: &str) -> Config {
    parse(text, Path::new("test.toml")).unwrap_or_else(|err| panic!("{err}"))
}

fn standard() -> Subscription {
    config(&format!(
        r#"[[subscription]]
name = "north-crm"
url = "https://user:pass@crm.example.org/hook?token=abc"
conversations = ["c-1", "c-2*"]
projects = ["p-9"]
events = ["conversation.*"]
secret = "{WHSEC_OLD} {WHSEC_NEW}"
headers = {{ "Authorization" = "Bearer very-secret", "X-Team" = "north" }}
"#
    ))
    .subscriptions
    .remove(0)
}

fn hex(prefix: &str) -> Subscription {
    config(&format!(
        r#"[[subscription]]
name = "south"
url = "https://dash.example.org/hook"
projects = ["p-9"]
events = ["report.generated"]
secret = "{HEX_SECRET}"
signature = "hex"
signature_header = "X-Dembrane-Signature"
signature_prefix = {prefix:?}
"#
    ))
    .subscriptions
    .remove(0)
}

fn now_secs() -> i64 {
    crate::store::now_ms() / 1000
}

/// A request as the receiver sees it, the secret it checks with, and the expected answer.
struct Case {
    what: &'static str,
    headers: Vec<(String, String)>,
    body: Vec<u8>,
    secret: String,
    valid: bool,
}

fn signed(subscription: &Subscription, timestamp: i64, body: &[u8]) -> Vec<(String, String)> {
    request_headers(subscription, "evt_123", timestamp, body)
}

fn standard_cases() -> Vec<Case> {
    let sub = standard();
    let body = br#"{"id":"evt_123","type":"conversation.ended","data":{"text":"h\u00e9"}}"#;
    let now = now_secs();
    let mut tampered = body.to_vec();
    tampered[10] ^= 1;
    vec![
        Case {
            what: "valid, old key",
            headers: signed(&sub, now, body),
            body: body.to_vec(),
            secret: WHSEC_OLD.into(),
            valid: true,
        },
        Case {
            what: "valid, new key during rotation",
            headers: signed(&sub, now, body),
            body: body.to_vec(),
            secret: WHSEC_NEW.into(),
            valid: true,
        },
        Case {
            what: "tampered body",
            headers: signed(&sub, now, body),
            body: tampered,
            secret: WHSEC_OLD.into(),
            valid: false,
        },
        Case {
            what: "another secret",
            headers: signed(&sub, now, body),
            body: body.to_vec(),
            secret: "whsec_c29tZW9uZSBlbHNlJ3Mgc2VjcmV0IGtleSBoZXJl".into(),
            valid: false,
        },
        Case {
            what: "ten minutes old",
            headers: signed(&sub, now - 600, body),
            body: body.to_vec(),
            secret: WHSEC_OLD.into(),
            valid: false,
        },
        Case {
            what: "no signature header",
            headers: signed(&sub, now, body)
                .into_iter()
                .filter(|(name, _)| name != "webhook-signature")
                .collect(),
            body: body.to_vec(),
            secret: WHSEC_OLD.into(),
            valid: false,
        },
    ]
}

fn hex_cases(prefix: &str) -> Vec<Case> {
    let sub = hex(prefix);
    let body = br#"{"id":"evt_123","type":"report.generated"}"#;
    let now = now_secs();
    vec![
        Case {
            what: "valid",
            headers: signed(&sub, now, body),
            body: body.to_vec(),
            secret: HEX_SECRET.into(),
            valid: true,
        },
        Case {
            what: "tampered body",
            headers: signed(&sub, now, body),
            body: br#"{"id":"evt_124","type":"report.generated"}"#.to_vec(),
            secret: HEX_SECRET.into(),
            valid: false,
        },
        Case {
            what: "another secret",
            headers: signed(&sub, now, body),
            body: body.to_vec(),
            secret: "not the secret".into(),
            valid: false,
        },
        Case {
            what: "no signature header",
            headers: vec![("webhook-id".into(), "evt_123".into())],
            body: body.to_vec(),
            secret: HEX_SECRET.into(),
            valid: false,
        },
    ]
}

fn cases_json(cases: &[Case]) -> String {
    let cases: Vec<serde_json::Value> = cases
        .iter()
        .map(|case| {
            json!({
                "headers": case.headers,
                "body": base64::engine::general_purpose::STANDARD.encode(&case.body),
                "secret": case.secret,
            })
        })
        .collect();
    serde_json::to_string(&cases).unwrap()
}

/// Runs `program` with the cases on stdin; it prints one `true`/`false` per case.
fn run(mut command: Command, cases: &[Case]) -> Vec<bool> {
    let program = format!("{command:?}");
    let mut child = command
        .stdin(Stdio::piped())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .unwrap_or_else(|err| panic!("could not run {program} ({err}); is it installed?"));
    child
        .stdin
        .take()
        .unwrap()
        .write_all(cases_json(cases).as_bytes())
        .unwrap();
    let output = child.wait_with_output().unwrap();
    let stdout = String::from_utf8_lossy(&output.stdout);
    assert!(
        output.status.success(),
        "{program} failed: {}\n{stdout}",
        String::from_utf8_lossy(&output.stderr)
    );
    stdout
        .split_whitespace()
        .map(|word| match word {
            "true" => true,
            "false" => false,
            other => panic!("{program} printed {other:?}"),
        })
        .collect()
}

fn check(language: &str, cases: &[Case], answers: Vec<bool>) {
    assert_eq!(
        answers.len(),
        cases.len(),
        "{language}: one answer per case"
    );
    for (case, answer) in cases.iter().zip(answers) {
        assert_eq!(answer, case.valid, "{language}: {}", case.what);
    }
}

const PYTHON_DRIVER: &str = r#"
import base64, json, sys

class Headers(dict):
    def get(self, name, default=None):
        return dict.get(self, name.lower(), default)

for case in json.load(sys.stdin):
    headers = Headers((k.lower(), v) for k, v in case["headers"])
    print("true" if verify_posthorn(headers, base64.b64decode(case["body"]), case["secret"]) else "false")
"#;

fn python(snippet: &str, cases: &[Case]) -> Vec<bool> {
    let dir = tempfile::tempdir().unwrap();
    let script = dir.path().join("check.py");
    std::fs::write(&script, format!("{snippet}\n{PYTHON_DRIVER}")).unwrap();
    let mut command = Command::new("python3");
    command.arg(&script);
    run(command, cases)
}

const NODE_DRIVER: &str = r#"
const { verifyPosthorn } = require("./snippet.js");
let input = "";
process.stdin.on("data", (chunk) => (input += chunk));
process.stdin.on("end", () => {
  for (const c of JSON.parse(input)) {
    const headers = Object.fromEntries(c.headers.map(([k, v]) => [k.toLowerCase(), v]));
    console.log(verifyPosthorn(headers, Buffer.from(c.body, "base64"), c.secret) ? "true" : "false");
  }
});
"#;

fn node(snippet: &str, cases: &[Case]) -> Vec<bool> {
    let dir = tempfile::tempdir().unwrap();
    std::fs::write(dir.path().join("snippet.js"), snippet).unwrap();
    std::fs::write(dir.path().join("check.js"), NODE_DRIVER).unwrap();
    let mut command = Command::new("node");
    command.arg(dir.path().join("check.js"));
    run(command, cases)
}

const GO_DRIVER: &str = r#"package main

import (
	"encoding/base64"
	"encoding/json"
	"fmt"
	"net/http"
	"os"
)

func main() {
	var cases []struct {
		Headers [][2]string `json:"headers"`
		Body    string      `json:"body"`
		Secret  string      `json:"secret"`
	}
	if err := json.NewDecoder(os.Stdin).Decode(&cases); err != nil {
		panic(err)
	}
	for _, c := range cases {
		header := http.Header{}
		for _, h := range c.Headers {
			header.Add(h[0], h[1])
		}
		body, _ := base64.StdEncoding.DecodeString(c.Body)
		fmt.Println(VerifyPosthorn(header, body, c.Secret))
	}
}
"#;

fn go(snippet: &str, cases: &[Case]) -> Vec<bool> {
    let dir = tempfile::tempdir().unwrap();
    let snippet = snippet.replacen("package webhook", "package main", 1);
    std::fs::write(dir.path().join("snippet.go"), snippet).unwrap();
    std::fs::write(dir.path().join("main.go"), GO_DRIVER).unwrap();
    let mut command = Command::new("go");
    command
        .current_dir(dir.path())
        .args(["run", "snippet.go", "main.go"])
        .env("GO111MODULE", "off")
        .env("GOFLAGS", "-mod=mod")
        .env("GOTOOLCHAIN", "local");
    run(command, cases)
}

#[test]
fn python_snippets_verify_what_posthorn_signs() {
    let cases = standard_cases();
    check(
        "python",
        &cases,
        python(&verification_snippets(&standard()).python, &cases),
    );
    for prefix in ["sha256=", ""] {
        let cases = hex_cases(prefix);
        check(
            "python hex",
            &cases,
            python(&verification_snippets(&hex(prefix)).python, &cases),
        );
    }
}

#[test]
fn node_snippets_verify_what_posthorn_signs() {
    let cases = standard_cases();
    check(
        "node",
        &cases,
        node(&verification_snippets(&standard()).node, &cases),
    );
    for prefix in ["sha256=", ""] {
        let cases = hex_cases(prefix);
        check(
            "node hex",
            &cases,
            node(&verification_snippets(&hex(prefix)).node, &cases),
        );
    }
}

#[test]
fn go_snippets_verify_what_posthorn_signs() {
    let cases = standard_cases();
    check(
        "go",
        &cases,
        go(&verification_snippets(&standard()).go, &cases),
    );
    for prefix in ["sha256=", ""] {
        let cases = hex_cases(prefix);
        check(
            "go hex",
            &cases,
            go(&verification_snippets(&hex(prefix)).go, &cases),
        );
    }
}

#[test]
fn the_toml_block_reads_back_as_the_same_subscription_without_its_secrets() {
    let original = standard();
    let block = toml_block(&original);
    for secret in [
        "MfKQ9r8G",
        "dGhpcyBp",
        "very-secret",
        "north\"",
        "user:pass",
        "abc",
    ] {
        assert!(!block.contains(secret), "{secret} leaked:\n{block}");
    }
    assert!(
        block.contains("url = \"https://[redacted]@crm.example.org/hook?[redacted]\""),
        "{block}"
    );
    // With a real secret and URL put back, the block is a valid config for the same
    // subscription (header values stay redacted).
    let restored = block
        .replace(
            "secret = \"[redacted]\"",
            &format!("secret = \"{WHSEC_OLD} {WHSEC_NEW}\""),
        )
        .replace(
            "https://[redacted]@crm.example.org/hook?[redacted]",
            "https://user:pass@crm.example.org/hook?token=abc",
        );
    let parsed = config(&restored).subscriptions.remove(0);
    assert_eq!(parsed.name, original.name);
    assert_eq!(parsed.url, original.url);
    assert_eq!(parsed.conversations, original.conversations);
    assert_eq!(parsed.projects, original.projects);
    assert_eq!(parsed.events, original.events);
    assert_eq!(parsed.signing, original.signing);
    assert_eq!(parsed.enabled, original.enabled);
    let names = |s: &Subscription| s.headers.iter().map(|(n, _)| n.clone()).collect::<Vec<_>>();
    assert_eq!(names(&parsed), names(&original));

    let hex_block = toml_block(&hex("sha256="));
    assert!(!hex_block.contains("shared secret"), "{hex_block}");
    assert!(hex_block.contains("signature = \"hex\""), "{hex_block}");
    assert!(
        hex_block.contains("signature_header = \"X-Dembrane-Signature\""),
        "{hex_block}"
    );
    let parsed = config(&hex_block.replace("[redacted]", HEX_SECRET))
        .subscriptions
        .remove(0);
    assert_eq!(parsed.signing, hex("sha256=").signing);
}

#[test]
fn hex_settings_with_quotes_are_escaped_in_every_language() {
    let mut sub = hex("sha256=");
    if let Signing::Hex { prefix, .. } = &mut sub.signing {
        *prefix = "v=\"1\"\\".into();
    }
    let snippets = verification_snippets(&sub);
    for code in [&snippets.python, &snippets.node, &snippets.go] {
        assert!(code.contains(r#""v=\"1\"\\""#), "{code}");
    }
}

const WHSK_OLD: &str = "whsk_TM0Imyj/ltqdtsNG7BFOD1uKMZ81q6Yk2oz27U+4pvs=";

fn ed25519_pair() -> (Subscription, crate::sign::Ed25519Key) {
    let new = crate::sign::Ed25519Key::generate();
    let sub = config(&format!(
        r#"[[subscription]]
name = "asym"
url = "https://crm.example.org/hook"
conversations = ["*"]
events = ["conversation.*"]
signature = "ed25519"
secret = "{} {WHSK_OLD}"
"#,
        new.secret_whsk()
    ))
    .subscriptions
    .remove(0);
    (sub, new)
}

fn ed25519_cases() -> (Subscription, Vec<Case>) {
    let (sub, new) = ed25519_pair();
    let old = crate::sign::Ed25519Key::from_whsk(WHSK_OLD).unwrap();
    let body = br#"{"id":"evt_123","type":"conversation.ended","data":{"text":"h\u00e9"}}"#;
    let now = now_secs();
    let mut tampered = body.to_vec();
    tampered[10] ^= 1;
    let case = |what, headers, body: &[u8], key: &crate::sign::Ed25519Key, valid| Case {
        what,
        headers,
        body: body.to_vec(),
        secret: key.public_whpk(),
        valid,
    };
    let cases = vec![
        case("valid, new key", signed(&sub, now, body), body, &new, true),
        case(
            "valid, old key during rotation",
            signed(&sub, now, body),
            body,
            &old,
            true,
        ),
        case(
            "tampered body",
            signed(&sub, now, body),
            &tampered,
            &new,
            false,
        ),
        case(
            "another key",
            signed(&sub, now, body),
            body,
            &crate::sign::Ed25519Key::generate(),
            false,
        ),
        case(
            "ten minutes old",
            signed(&sub, now - 600, body),
            body,
            &new,
            false,
        ),
        case(
            "a v1 (HMAC) signature only",
            signed(&standard(), now, body),
            body,
            &new,
            false,
        ),
    ];
    (sub, cases)
}

#[test]
fn ed25519_snippets_verify_v1a_with_the_public_key_in_every_language() {
    let (sub, cases) = ed25519_cases();
    let snippets = verification_snippets(&sub);
    check("python ed25519", &cases, python(&snippets.python, &cases));
    check("node ed25519", &cases, node(&snippets.node, &cases));
    check("go ed25519", &cases, go(&snippets.go, &cases));
}

#[test]
fn ed25519_snippets_and_block_name_the_public_keys_and_never_the_private_ones() {
    let (sub, new) = ed25519_pair();
    let snippets = verification_snippets(&sub);
    let block = toml_block(&sub);
    assert!(block.contains("signature = \"ed25519\""), "{block}");
    for code in [&snippets.python, &snippets.node, &snippets.go, &block] {
        assert!(!code.contains(&new.secret_whsk()[5..]), "{code}");
        assert!(!code.contains(&WHSK_OLD[5..]), "{code}");
    }
    for code in [&snippets.python, &snippets.node, &snippets.go] {
        assert!(code.contains(&new.public_whpk()), "{code}");
    }
}
