//! `signature = "ed25519"` (Standard Webhooks v1a) end to end: a key pair from
//! `posthorn gen-secret --ed25519`, the private key from a file, every request to a
//! loopback receiver verified by an independent ed25519 implementation (Python's
//! `cryptography`, which the `standardwebhooks` package does not replace: it knows only
//! v1), the public key shown by the API and the private key nowhere in what posthorn
//! says. Needs `pip install -r tests/requirements.txt`.

mod common;

use std::time::Duration;

use common::admin::{self, Api};
use common::{Answer, Home, Receiver, Recorded};

/// The whsk_ and whpk_ lines of `gen-secret --ed25519`, checked for their labels.
fn gen_pair() -> (String, String) {
    let (code, stdout, stderr) = common::run(&["gen-secret", "--ed25519"]);
    assert_eq!(code, 0, "{stderr}");
    let keys: Vec<&str> = stdout.lines().filter(|l| !l.starts_with('#')).collect();
    assert_eq!(keys.len(), 2, "two keys, the rest comments: {stdout}");
    assert!(keys[0].starts_with("whsk_"), "{stdout}");
    assert!(keys[1].starts_with("whpk_"), "{stdout}");
    let labels: Vec<&str> = stdout.lines().filter(|l| l.starts_with('#')).collect();
    assert!(
        labels
            .iter()
            .any(|l| l.contains("Private key") && l.contains("posthorn's config")),
        "{stdout}"
    );
    assert!(
        labels
            .iter()
            .any(|l| l.contains("Public key") && l.contains("receiver")),
        "{stdout}"
    );
    (keys[0].to_string(), keys[1].to_string())
}

const VERIFY: &str = r#"
import base64, json, sys
from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PublicKey
request = json.loads(sys.argv[1])
key = Ed25519PublicKey.from_public_bytes(base64.b64decode(sys.argv[2].removeprefix("whpk_")))
signed = ("%s.%s.%s" % (request["id"], request["timestamp"], request["body"])).encode()
verified = 0
for signature in request["signature"].split(" "):
    version, _, value = signature.partition(",")
    if version == "v1a":
        key.verify(base64.b64decode(value), signed)  # raises InvalidSignature
        verified += 1
print(verified)
"#;

/// How many v1a signatures of `request` `public` verifies; Python raises (and the
/// test fails) on a v1a signature that does not verify with it.
fn python_verifies(request: &Recorded, public: &str) -> Result<usize, String> {
    let input = serde_json::json!({
        "id": request.header("webhook-id").ok_or("no webhook-id")?,
        "timestamp": request.header("webhook-timestamp").ok_or("no webhook-timestamp")?,
        "signature": request.header("webhook-signature").ok_or("no webhook-signature")?,
        "body": request.body,
    });
    let output = std::process::Command::new("python3")
        .args(["-c", VERIFY, &input.to_string(), public])
        .output()
        .map_err(|err| err.to_string())?;
    if !output.status.success() {
        return Err(String::from_utf8_lossy(&output.stderr).into_owned());
    }
    String::from_utf8_lossy(&output.stdout)
        .trim()
        .parse()
        .map_err(|err| format!("{err}"))
}

/// `posthorn verify --secret whpk_...` on a captured request: its exit code.
fn posthorn_verify(home: &Home, request: &Recorded, public: &str) -> i32 {
    let body = home.path().join("captured-body");
    std::fs::write(&body, &request.body).unwrap();
    let mut args = vec!["verify".to_string(), "--secret".into(), public.into()];
    for name in ["webhook-id", "webhook-timestamp", "webhook-signature"] {
        args.push("-H".into());
        args.push(format!(
            "{name}: {}",
            request.header(name).unwrap_or_default()
        ));
    }
    args.extend(["--body".into(), body.to_str().unwrap().into()]);
    let args: Vec<&str> = args.iter().map(String::as_str).collect();
    let (code, stdout, stderr) = common::run(&args);
    assert!(
        stdout.starts_with(if code == 0 { "valid" } else { "invalid" }),
        "{stdout}{stderr}"
    );
    code
}

#[test]
fn ed25519_deliveries_verify_with_the_generated_public_key_and_the_private_key_never_shows() {
    let (private, public) = gen_pair();
    let receiver = Receiver::with_script(vec![Answer::status(500)], Answer::status(204));
    let home = Home::new();
    std::fs::write(home.path().join("signing.key"), format!("{private}\n")).unwrap();
    let serve = admin::start(
        &home,
        &format!(
            "[[subscription]]\nname = \"asym\"\nurl = \"{}/asym\"\nconversations = [\"c-1\"]\n\
             events = [\"*\"]\nsignature = \"ed25519\"\nsecret_file = \"signing.key\"\n",
            receiver.url
        ),
    );
    home.drop_json(
        "e.json",
        r#"{"id":"evt_asym","type":"conversation.ended","conversation_id":"c-1","data":{"t":"ünï ✓","n":1.50}}"#,
    );
    // A failed first attempt, so the retry's fresh timestamp and signature are checked too.
    receiver.wait_for_count(2, Duration::from_secs(20));
    for request in receiver.requests() {
        let signature = request.header("webhook-signature").unwrap_or_default();
        assert!(signature.starts_with("v1a,"), "{signature}");
        assert_eq!(python_verifies(&request, &public), Ok(1), "{signature}");
        // Another public key refuses it.
        let (_, other) = gen_pair();
        assert!(python_verifies(&request, &other).is_err());
        // `posthorn verify` takes the whpk_ key and checks v1a the same way.
        assert_eq!(posthorn_verify(&home, &request, &public), 0);
        assert_eq!(posthorn_verify(&home, &request, &other), 1);
    }

    let api = Api::token(&home, admin::API_TOKEN);
    let list = api.get("/api/v1/subscriptions");
    assert_eq!(list.status, 200, "{}", list.body);
    let listed: serde_json::Value = serde_json::from_str(&list.body).unwrap();
    let shown = listed["items"]
        .as_array()
        .and_then(|subs| subs.iter().find(|s| s["name"] == "asym"))
        .unwrap_or_else(|| panic!("{}", list.body));
    assert_eq!(shown["signing"], "ed25519", "{shown}");
    assert_eq!(shown["public_keys"], serde_json::json!([public]), "{shown}");
    let one = api.get("/api/v1/subscriptions/asym");
    assert_eq!(one.status, 200, "{}", one.body);
    assert!(one.body.contains(&public), "{}", one.body);
    let deliveries = api.get("/api/v1/deliveries");
    let id = serde_json::from_str::<serde_json::Value>(&deliveries.body).unwrap()["items"][0]["id"]
        .as_i64()
        .unwrap_or_else(|| panic!("{}", deliveries.body));
    let detail = api.get(&format!("/api/v1/deliveries/{id}"));
    assert_eq!(detail.status, 200, "{}", detail.body);

    let secret_part = &private["whsk_".len()..];
    for (what, text) in [
        ("the subscription list", list.body),
        ("the subscription", one.body),
        ("the delivery", detail.body),
        ("the log", serve.log()),
    ] {
        assert!(
            !text.contains(secret_part),
            "{what} shows the private key:\n{text}"
        );
    }
}

#[test]
fn check_config_refuses_a_whsec_secret_for_ed25519_and_a_whsk_key_for_standard() {
    let (private, _) = gen_pair();
    for (signature, secret, expected) in [
        ("ed25519", common::SECRET, "takes a \"whsk_\" private key"),
        ("standard", private.as_str(), "set signature = \"ed25519\""),
    ] {
        let home = Home::new();
        let path = home.write_config(&format!(
            "[[subscription]]\nname = \"s\"\nurl = \"http://127.0.0.1:9/h\"\n\
             conversations = [\"c-1\"]\nevents = [\"*\"]\nsignature = {signature:?}\n\
             secret = {secret:?}\n"
        ));
        let (code, stdout, stderr) =
            common::run(&["check-config", path.to_str().expect("a UTF-8 path")]);
        assert_ne!(code, 0, "{stdout}");
        let located = stderr
            .split_once("config.toml:")
            .and_then(|(_, rest)| rest.split(':').next())
            .and_then(|line| line.parse::<u32>().ok());
        assert!(located.is_some(), "located at a line: {stderr}");
        assert!(stderr.contains(expected), "{stderr}");
        assert!(
            !stderr.contains(&secret[6..]),
            "the secret leaked: {stderr}"
        );
    }
}
