//! The shell does what the admin page does, against a real `posthorn serve`: `replay`
//! (by event and by delivery), `pause` and `resume` one subscription, `pause-all` and
//! `resume-all` (and their alias `delivery pause|resume|status`) with `--json`, bulk retry
//! of cancelled deliveries, and `verify` on a request posthorn really sent.

mod common;

use std::time::Duration;

use common::cli::{run, Output};
use common::{hook, spool_event, wait_for, Home, Receiver, Serve, SECRET};

const TOKEN: &str = "cli-shell-token-8f3a1c6e2d";

/// `posthorn ARGS --config <home>/config.toml`.
fn admin(home: &Home, args: &[&str]) -> Output {
    common::cli::with_config(home, args, &[])
}

fn write_config(home: &Home, subscriptions: &str) {
    home.write_config(&format!("[admin]\napi_token = {TOKEN:?}\n{subscriptions}"));
}

fn state_of(home: &Home, event_id: &str, subscription: &str) -> String {
    home.query::<String>(&format!(
        "SELECT state FROM deliveries WHERE event_id = '{event_id}' AND subscription = '{subscription}'"
    ))
    .pop()
    .unwrap_or_default()
}

fn wait_for_state(home: &Home, event_id: &str, subscription: &str, state: &str) {
    wait_for(
        &format!("{event_id} to {subscription} {state}"),
        Duration::from_secs(20),
        || state_of(home, event_id, subscription) == state,
    );
}

#[test]
fn replay_pause_resume_and_the_delivery_switch_from_the_shell() {
    let home = Home::new();
    let receiver = Receiver::start(204);
    write_config(&home, &hook("crm", &format!("{}/crm", receiver.url)));
    let _serve = Serve::start(&home);
    home.drop_json("evt-1.json", &spool_event("evt-1"));
    wait_for_state(&home, "evt-1", "crm", "delivered");
    receiver.wait_for_count(1, Duration::from_secs(10));

    // Replay by event: the delivered delivery is due again and sent again.
    let out = admin(&home, &["replay", "evt-1", "--subscription", "crm"]).expect(0);
    let id = home.count("SELECT id FROM deliveries WHERE event_id = 'evt-1'");
    assert_eq!(
        out.stdout.trim(),
        format!("event evt-1 to crm: again as delivery {id}, due now"),
        "{out:#?}"
    );
    receiver.wait_for_count(2, Duration::from_secs(10));
    // Replay by delivery id.
    wait_for_state(&home, "evt-1", "crm", "delivered");
    admin(&home, &["replay", "--delivery", &id.to_string()]).expect(0);
    receiver.wait_for_count(3, Duration::from_secs(10));
    // An unknown event is refused by name; the exit says so.
    let out = admin(&home, &["replay", "evt-nope", "--subscription", "crm"]).expect(1);
    assert!(
        out.stderr
            .contains("event evt-nope to crm: refused: there is no event")
            && out.stderr.contains("1 of 1 replays refused"),
        "{out:#?}"
    );
    // A retry of a delivered delivery is refused with the command that does it.
    wait_for_state(&home, "evt-1", "crm", "delivered");
    let out = admin(&home, &["deliveries", "retry", &id.to_string()]).expect(1);
    assert!(
        out.stderr
            .contains(&format!("posthorn replay --delivery {id}")),
        "{out:#?}"
    );

    // Pause one subscription: new deliveries wait; a test event says how to resume.
    let out = admin(&home, &["pause", "crm"]).expect(0);
    assert!(out.stdout.starts_with("crm: paused"), "{out:#?}");
    let out = admin(&home, &["pause", "crm"]).expect(0);
    assert_eq!(out.stdout.trim(), "crm: already paused", "{out:#?}");
    let status = admin(&home, &["status", "--json"]).expect(0).json();
    assert_eq!(status["subscriptions"][0]["paused"], true, "{status:#}");
    let out = admin(&home, &["test", "crm", "--no-wait"]).expect(1);
    assert!(out.stderr.contains("`posthorn resume crm`"), "{out:#?}");
    home.drop_json("evt-2.json", &spool_event("evt-2"));
    wait_for_state(&home, "evt-2", "crm", "pending");
    let out = admin(&home, &["resume", "crm"]).expect(0);
    assert!(out.stdout.starts_with("crm: resumed"), "{out:#?}");
    wait_for_state(&home, "evt-2", "crm", "delivered");
    admin(&home, &["pause", "nope"]).expect(1);

    // The global switch, canonical and alias, in JSON.
    let paused = admin(&home, &["pause-all", "--json"]).expect(0).json();
    assert_eq!(paused["enabled"], false, "{paused:#}");
    assert_eq!(paused["paused_by_operator"], true, "{paused:#}");
    assert_eq!(paused["changed"], true, "{paused:#}");
    let shown = admin(&home, &["delivery", "status", "--json"])
        .expect(0)
        .json();
    assert_eq!(shown["enabled"], false, "{shown:#}");
    let text = admin(&home, &["delivery", "status"]).expect(0);
    assert!(
        text.stdout.contains("`posthorn resume-all`"),
        "the reason names the command: {text:#?}"
    );
    let resumed = admin(&home, &["resume-all", "--json"]).expect(0).json();
    assert_eq!(resumed["enabled"], true, "{resumed:#}");
    admin(&home, &["delivery", "pause"]).expect(0);
    let out = admin(&home, &["resume-all"]).expect(0);
    assert_eq!(out.stdout.trim(), "delivery is on", "{out:#?}");
}

#[test]
fn bulk_retry_takes_cancelled_deliveries_only_with_include_cancelled() {
    let home = Home::new();
    let receiver = Receiver::start(204);
    let crm = hook("crm", &format!("{}/crm", receiver.url));
    let keep = hook("keep", &format!("{}/keep", receiver.url));
    write_config(&home, &format!("{crm}{keep}"));
    let serve = Serve::start(&home);
    admin(&home, &["pause", "crm"]).expect(0);
    home.drop_json("evt-1.json", &spool_event("evt-1"));
    wait_for_state(&home, "evt-1", "crm", "pending");

    // Removed at a reload: its pending delivery is cancelled.
    write_config(&home, &keep);
    common::signal(serve.pid(), "HUP");
    wait_for_state(&home, "evt-1", "crm", "cancelled");
    // Back again: plain bulk retry leaves the cancelled one alone.
    write_config(&home, &format!("{crm}{keep}"));
    common::signal(serve.pid(), "HUP");
    wait_for("crm back in the config", Duration::from_secs(20), || {
        admin(&home, &["resume", "crm"]).code == Some(0)
    });
    let out = admin(
        &home,
        &[
            "deliveries",
            "retry",
            "--subscription",
            "crm",
            "--since",
            "1h",
        ],
    )
    .expect(0);
    assert!(
        out.stdout.starts_with("crm: 0 failed deliveries"),
        "{out:#?}"
    );
    assert_eq!(state_of(&home, "evt-1", "crm"), "cancelled");
    let out = admin(
        &home,
        &[
            "deliveries",
            "retry",
            "--subscription",
            "crm",
            "--since",
            "1h",
            "--include-cancelled",
        ],
    )
    .expect(0);
    assert!(
        out.stdout
            .starts_with("crm: 1 failed or cancelled delivery since"),
        "{out:#?}"
    );
    wait_for_state(&home, "evt-1", "crm", "delivered");
    assert_eq!(receiver.at("/crm").len(), 1);
    // --include-cancelled needs --subscription.
    admin(&home, &["deliveries", "retry", "1", "--include-cancelled"]).expect(2);
}

/// `webhook-*` headers of the request posthorn sent, as `--header` flags.
fn header_flags(recorded: &common::Recorded) -> Vec<String> {
    ["webhook-id", "webhook-timestamp", "webhook-signature"]
        .iter()
        .map(|name| format!("{name}: {}", recorded.header(name).unwrap_or_default()))
        .collect()
}

#[test]
fn verify_checks_a_request_posthorn_sent_and_names_what_is_wrong() {
    let home = Home::new();
    let receiver = Receiver::start(204);
    write_config(&home, &hook("crm", &format!("{}/crm", receiver.url)));
    let serve = Serve::start(&home);
    home.drop_json("evt-1.json", &spool_event("evt-1"));
    receiver.wait_for_count(1, Duration::from_secs(20));
    drop(serve);
    let sent = receiver.requests().remove(0);
    let dir = home.path();
    let body = dir.join("body.json");
    std::fs::write(&body, &sent.body).unwrap();
    let body_arg = body.to_str().unwrap();
    let flags = header_flags(&sent);
    let with_headers = |extra: &[&str]| -> Vec<String> {
        let mut args: Vec<String> = vec!["verify".into()];
        for flag in &flags {
            args.extend(["-H".into(), flag.clone()]);
        }
        args.extend(extra.iter().map(|s| s.to_string()));
        args
    };
    let verify = |args: Vec<String>, envs: &[(&str, &str)], stdin: Option<&[u8]>| {
        let args: Vec<&str> = args.iter().map(String::as_str).collect();
        run(dir, &args, envs, stdin)
    };

    // Valid, with the secret inline, from the environment or from a file.
    let out = verify(
        with_headers(&["--secret", SECRET, "--body", body_arg]),
        &[],
        None,
    )
    .expect(0);
    assert!(out.stdout.starts_with("valid\n"), "{out:#?}");
    verify(
        with_headers(&["--secret-env", "CRM_SECRET", "--body", body_arg]),
        &[("CRM_SECRET", SECRET)],
        None,
    )
    .expect(0);
    let secret_file = dir.join("secret");
    std::fs::write(&secret_file, format!("{SECRET}\n")).unwrap();
    verify(
        with_headers(&[
            "--secret-file",
            secret_file.to_str().unwrap(),
            "--body",
            body_arg,
        ]),
        &[],
        None,
    )
    .expect(0);

    // The same request as a raw HTTP dump on stdin.
    let mut dump = String::from("POST /crm HTTP/1.1\r\n");
    for (name, value) in &sent.headers {
        dump.push_str(&format!("{name}: {value}\r\n"));
    }
    dump.push_str("\r\n");
    dump.push_str(&sent.body);
    verify(
        vec!["verify".into(), "--secret".into(), SECRET.into()],
        &[],
        Some(dump.as_bytes()),
    )
    .expect(0);
    // A newline added after the body (as `echo` or an editor does): named.
    let with_newline = format!("{dump}\n");
    let out = verify(
        vec!["verify".into(), "--secret".into(), SECRET.into()],
        &[],
        Some(with_newline.as_bytes()),
    )
    .expect(1);
    assert!(out.stdout.starts_with("invalid\n"), "{out:#?}");
    assert!(out.stdout.contains("body changed"), "{out:#?}");

    // A wrong secret.
    let other = run(dir, &["gen-secret"], &[], None).expect(0).stdout;
    let out = verify(
        with_headers(&["--secret", other.trim(), "--body", body_arg]),
        &[],
        None,
    )
    .expect(1);
    assert!(out.stdout.contains("wrong secret"), "{out:#?}");
    let json = verify(
        with_headers(&["--secret", other.trim(), "--body", body_arg, "--json"]),
        &[],
        None,
    )
    .expect(1)
    .json();
    assert_eq!(json["valid"], false, "{json:#}");
    assert!(
        json["findings"][0]
            .as_str()
            .unwrap_or_default()
            .starts_with("wrong secret"),
        "{json:#}"
    );
    // Checked an hour later: stale; with a tolerance of two hours: valid.
    let later = (std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .unwrap()
        .as_millis()
        + 3_600_000)
        .to_string();
    let out = verify(
        with_headers(&["--secret", SECRET, "--body", body_arg, "--at", &later]),
        &[],
        None,
    )
    .expect(1);
    assert!(out.stdout.contains("stale timestamp"), "{out:#?}");
    assert!(out.stdout.contains("the signature matches"), "{out:#?}");
    verify(
        with_headers(&[
            "--secret",
            SECRET,
            "--body",
            body_arg,
            "--at",
            &later,
            "--tolerance",
            "2h",
        ]),
        &[],
        None,
    )
    .expect(0);

    // Usage errors: exit 2.
    let out = verify(with_headers(&["--body", body_arg]), &[], None).expect(2);
    assert!(out.stderr.contains("no secret"), "{out:#?}");
    let out = verify(
        with_headers(&["--secret", "not-whsec", "--body", body_arg]),
        &[],
        None,
    )
    .expect(2);
    assert!(out.stderr.contains("whsec_"), "{out:#?}");
}

#[test]
fn verify_checks_the_hex_recipe() {
    let home = Home::new();
    let body = br#"{"id":"evt-9","type":"conversation.ended"}"#;
    let path = home.path().join("body.json");
    std::fs::write(&path, body).unwrap();
    let signature = format!("sha256={}", common::hex_hmac(b"plain-key", body));
    let args = |key: &str| {
        vec![
            "verify".to_string(),
            "--scheme".into(),
            "hex".into(),
            "--signature-prefix".into(),
            "sha256=".into(),
            "--secret".into(),
            key.into(),
            "-H".into(),
            format!("X-Webhook-Signature: {signature}"),
            "--body".into(),
            path.to_str().unwrap().into(),
        ]
    };
    let call = |a: Vec<String>| {
        let a: Vec<&str> = a.iter().map(String::as_str).collect();
        run(home.path(), &a, &[], None)
    };
    call(args("plain-key")).expect(0);
    let out = call(args("other-key")).expect(1);
    assert!(out.stdout.contains("wrong secret"), "{out:#?}");
}
