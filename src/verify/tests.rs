use super::*;

const SECRET: &str = "whsec_MfKQ9r8GKYqrTwjUPD8ILPZIo2LaLaSw";
const TS: i64 = 1_764_000_000;
const BODY: &str =
    "{\"id\":\"evt_1\",\"type\":\"conversation.started\",\"data\":{\"b\":1,\"a\":[2,3]}}";

fn key() -> SigningKey {
    SigningKey::from_whsec(SECRET).unwrap()
}

fn standard() -> Scheme {
    Scheme::Standard { keys: vec![key()] }
}

/// A request signed over `signed`, carrying `sent` as its body.
fn captured(signed: &[u8], sent: &[u8]) -> Captured {
    let signature = sign::standard_signature(&[key()], "evt_1", TS, signed);
    Captured {
        headers: vec![
            ("Webhook-Id".into(), "evt_1".into()),
            ("webhook-timestamp".into(), TS.to_string()),
            ("webhook-signature".into(), signature),
        ],
        body: sent.to_vec(),
    }
}

fn run(captured: &Captured, now: i64) -> Report {
    check(captured, &standard(), now, DEFAULT_TOLERANCE)
}

#[test]
fn a_request_as_signed_is_valid_by_its_secret() {
    let report = run(&captured(BODY.as_bytes(), BODY.as_bytes()), TS + 10);
    assert!(report.valid, "{report:?}");
    assert!(
        report.findings[0].contains("matches secret 1"),
        "{report:?}"
    );
}

#[test]
fn the_second_secret_of_a_rotation_is_named() {
    let other = SigningKey::from_whsec(&sign::generate_whsec()).unwrap();
    let scheme = Scheme::Standard {
        keys: vec![other, key()],
    };
    let report = check(
        &captured(BODY.as_bytes(), BODY.as_bytes()),
        &scheme,
        TS,
        DEFAULT_TOLERANCE,
    );
    assert!(
        report.valid && report.findings[0].contains("secret 2"),
        "{report:?}"
    );
}

#[test]
fn a_stale_or_future_timestamp_is_named_and_the_signature_still_checked() {
    let request = captured(BODY.as_bytes(), BODY.as_bytes());
    let stale = run(&request, TS + 301);
    assert!(!stale.valid, "{stale:?}");
    assert!(
        stale
            .findings
            .iter()
            .any(|f| f.starts_with("stale timestamp") && f.contains("301 s")),
        "{stale:?}"
    );
    assert!(
        stale
            .findings
            .iter()
            .any(|f| f.contains("signature matches")),
        "{stale:?}"
    );
    assert!(run(&request, TS + 300).valid, "5 minutes is still inside");
    let future = run(&request, TS - 400);
    assert!(
        future
            .findings
            .iter()
            .any(|f| f.starts_with("future timestamp")),
        "{future:?}"
    );
    let wide = check(&request, &standard(), TS + 3600, Duration::from_secs(7200));
    assert!(wide.valid, "a configured tolerance: {wide:?}");
}

#[test]
fn a_wrong_secret_is_named() {
    let other = SigningKey::from_whsec(&sign::generate_whsec()).unwrap();
    let report = check(
        &captured(BODY.as_bytes(), BODY.as_bytes()),
        &Scheme::Standard { keys: vec![other] },
        TS,
        DEFAULT_TOLERANCE,
    );
    assert!(!report.valid);
    assert!(report.findings[0].starts_with("wrong secret"), "{report:?}");
}

#[test]
fn each_common_change_of_the_body_is_named() {
    let body = BODY.as_bytes();
    let pretty =
        serde_json::to_vec_pretty(&serde_json::from_str::<serde_json::Value>(BODY).unwrap())
            .unwrap();
    let crlf_signed = b"line one\r\nline two\r\n";
    let cases: Vec<(Vec<u8>, Vec<u8>, &str)> = vec![
        (body.to_vec(), [body, b"\n"].concat(), "trailing newline"),
        (
            crlf_signed.to_vec(),
            b"line one\r\nline two\r\n\r\n".to_vec(),
            "trailing CRLF",
        ),
        (b"a\nb".to_vec(), b"a\r\nb".to_vec(), "LF line ends"),
        (b"a\r\nb".to_vec(), b"a\nb".to_vec(), "CRLF line ends"),
        (
            body.to_vec(),
            body.iter()
                .flat_map(|&b| if b == b',' { vec![b',', b' '] } else { vec![b] })
                .collect(),
            "spaces between JSON tokens",
        ),
        // Signed compact and sorted; received pretty (serde_json sorts keys).
        (
            serde_json::from_slice::<serde_json::Value>(body)
                .unwrap()
                .to_string()
                .into_bytes(),
            pretty,
            "JSON tokens",
        ),
    ];
    for (signed, sent, what) in cases {
        let report = run(&captured(&signed, &sent), TS);
        assert!(!report.valid, "{what}: {report:?}");
        let finding = &report.findings[0];
        assert!(
            finding.starts_with("body changed") && finding.contains(what),
            "{what}: {report:?}"
        );
    }
}

#[test]
fn bytes_past_the_content_length_are_named() {
    let mut request = captured(BODY.as_bytes(), format!("{BODY}xx").as_bytes());
    request
        .headers
        .push(("Content-Length".into(), BODY.len().to_string()));
    let report = run(&request, TS);
    assert!(report.findings[0].contains("Content-Length"), "{report:?}");
}

#[test]
fn missing_headers_are_named_together() {
    let mut request = captured(BODY.as_bytes(), BODY.as_bytes());
    request.headers.retain(|(n, _)| n == "webhook-signature");
    let report = run(&request, TS);
    assert_eq!(
        report.findings,
        ["missing headers: webhook-id, webhook-timestamp"],
        "{report:?}"
    );
}

#[test]
fn a_signature_header_without_v1_says_what_it_holds() {
    let mut request = captured(BODY.as_bytes(), BODY.as_bytes());
    request.headers[2].1 = "v1a,AAAA".into();
    let report = run(&request, TS);
    assert!(
        report.findings[0].contains("no v1 signature (found: v1a)"),
        "{report:?}"
    );
}

#[test]
fn a_raw_http_dump_is_read_with_crlf_or_lf() {
    let signature = sign::standard_signature(&[key()], "evt_1", TS, BODY.as_bytes());
    for end in ["\r\n", "\n"] {
        let dump = format!(
            "POST /hook HTTP/1.1{end}Host: 127.0.0.1:9000{end}webhook-id: evt_1{end}webhook-timestamp: {TS}{end}webhook-signature: {signature}{end}{end}{BODY}"
        );
        let request = parse_http_dump(dump.as_bytes()).unwrap();
        assert_eq!(request.body, BODY.as_bytes());
        assert_eq!(
            request.header("Webhook-Timestamp"),
            Some(TS.to_string().as_str())
        );
        assert!(run(&request, TS).valid, "{end:?}");
    }
    assert!(parse_http_dump(b"webhook-id: x").is_err());
    assert!(parse_header("no colon").is_err());
}

#[test]
fn the_hex_recipe_checks_the_raw_body() {
    let key = SigningKey::from_utf8("plain-secret");
    let hex = sign::hex_signature(&key, BODY.as_bytes());
    let scheme = Scheme::Hex {
        keys: vec![key],
        header: "X-Signature".into(),
        prefix: "sha256=".into(),
    };
    let mut request = Captured {
        headers: vec![("x-signature".into(), format!("sha256={hex}"))],
        body: BODY.as_bytes().to_vec(),
    };
    assert!(check(&request, &scheme, 0, DEFAULT_TOLERANCE).valid);
    request.body.push(b'\n');
    let report = check(&request, &scheme, 0, DEFAULT_TOLERANCE);
    assert!(
        report.findings[0].contains("trailing newline"),
        "{report:?}"
    );
    request.headers[0].1 = hex;
    let report = check(&request, &scheme, 0, DEFAULT_TOLERANCE);
    assert!(report.findings[0].contains("prefix"), "{report:?}");
}

/// A request signed with ed25519 (`v1a`) over `signed`, carrying `sent` as its body.
fn captured_v1a(key: &sign::Ed25519Key, signed: &[u8], sent: &[u8]) -> Captured {
    let signature = sign::v1a_signature(std::slice::from_ref(key), "evt_1", TS, signed);
    Captured {
        headers: vec![
            ("webhook-id".into(), "evt_1".into()),
            ("webhook-timestamp".into(), TS.to_string()),
            ("webhook-signature".into(), signature),
        ],
        body: sent.to_vec(),
    }
}

fn public(key: &sign::Ed25519Key) -> Ed25519PublicKey {
    Ed25519PublicKey::from_whpk(&key.public_whpk()).unwrap()
}

#[test]
fn a_v1a_request_is_checked_with_the_public_key_and_a_changed_body_is_named() {
    let key = sign::Ed25519Key::generate();
    let scheme = Scheme::Ed25519 {
        keys: vec![public(&key)],
    };
    let as_sent = captured_v1a(&key, BODY.as_bytes(), BODY.as_bytes());
    let report = check(&as_sent, &scheme, TS, DEFAULT_TOLERANCE);
    assert!(report.valid, "{report:?}");
    assert!(
        report.findings[0].contains("matches public key 1"),
        "{report:?}"
    );

    let newline_added = captured_v1a(&key, BODY.as_bytes(), format!("{BODY}\n").as_bytes());
    let report = check(&newline_added, &scheme, TS, DEFAULT_TOLERANCE);
    assert!(!report.valid, "{report:?}");
    assert!(report.findings[0].starts_with("body changed"), "{report:?}");

    let other = Scheme::Ed25519 {
        keys: vec![public(&sign::Ed25519Key::generate())],
    };
    let report = check(&as_sent, &other, TS, DEFAULT_TOLERANCE);
    assert!(!report.valid, "{report:?}");
    assert!(
        report.findings[0].starts_with("wrong public key"),
        "{report:?}"
    );
}

#[test]
fn a_v1_request_checked_with_a_public_key_says_which_signature_is_missing() {
    let scheme = Scheme::Ed25519 {
        keys: vec![public(&sign::Ed25519Key::generate())],
    };
    let report = check(
        &captured(BODY.as_bytes(), BODY.as_bytes()),
        &scheme,
        TS,
        DEFAULT_TOLERANCE,
    );
    assert!(!report.valid);
    assert!(
        report.findings[0].contains("no v1a signature (found: v1)"),
        "{report:?}"
    );
}
