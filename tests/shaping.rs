//! What each subscription gets: `filter` conditions decide which events it is sent, and
//! `include`/`exclude` shape `data` before the body is signed. Run end to end: the real
//! binary, events dropped in the spool, a recording receiver on 127.0.0.1, signatures
//! checked by the receiver's own HMAC and by Python's `standardwebhooks`.

mod common;

use std::collections::BTreeMap;
use std::io::Write as _;
use std::process::{Command, Stdio};
use std::time::Duration;

use common::{Home, Receiver, Recorded, Serve};

const LONG: Duration = Duration::from_secs(30);

fn sub(name: &str, url: &str, extra: &str) -> String {
    format!(
        "\n[[subscription]]\nname = {name:?}\nurl = \"{url}/{name}\"\nconversations = [\"*\"]\n\
         events = [\"*\"]\nsecret = {:?}\n{extra}\n",
        common::SECRET
    )
}

/// The event ids each receiver path got, once `total` requests arrived.
fn ids_by_path(receiver: &Receiver, total: usize) -> BTreeMap<String, Vec<String>> {
    receiver.wait_for_count(total, LONG);
    let mut by_path: BTreeMap<String, Vec<String>> = BTreeMap::new();
    for request in receiver.requests() {
        by_path
            .entry(request.path.trim_start_matches('/').to_string())
            .or_default()
            .push(request.event_id());
    }
    for ids in by_path.values_mut() {
        ids.sort();
    }
    by_path
}

#[test]
fn filters_send_each_event_only_to_the_subscriptions_whose_conditions_hold() {
    let receiver = Receiver::start(204);
    let url = &receiver.url;
    let home = Home::new();
    let config = [
        sub("nl", url, r#"filter = [{ path = "/data/language", equals = "nl-NL" }]"#),
        sub("urgent", url, r#"filter = [{ path = "/data/tags", contains = "urgent" }]"#),
        sub("score", url, r#"filter = [{ path = "/data/score", gte = 0.5 }]"#),
        sub("kind", url, r#"filter = [{ path = "/data/kind", in = ["summary", "brief"] }]"#),
        sub("north", url, r#"filter = [{ path = "/data/title", glob = "North*" }]"#),
        sub("noemail", url, r#"filter = [{ path = "/data/email", exists = false }]"#),
        sub("big", url, r#"filter = [{ path = "/data/big", gt = "12345678901234567890" }]"#),
        sub(
            "both",
            url,
            r#"filter = [{ path = "/data/language", equals = "nl-NL" }, { path = "/type", glob = "*.summarized" }]"#,
        ),
        sub("all", url, ""),
    ]
    .concat();
    home.write_config(&config);
    let _serve = Serve::start(&home);

    // e1 meets every condition. e2 misses most; its score is below 0.5 by less than an
    // f64 can tell (read as a double it would be 0.5). e3 has the right values in the
    // wrong types, and its language written with an escape. e4 has no data at all.
    let events = [
        r#"{"id":"e1","type":"conversation.summarized","conversation_id":"c-1","data":{"language":"nl-NL","tags":["urgent","x"],"score":0.50,"kind":"summary","title":"North district","big":12345678901234567891}}"#,
        r#"{"id":"e2","type":"conversation.summarized","conversation_id":"c-1","data":{"language":"en-US","tags":["calm"],"score":0.49999999999999999999,"kind":"brief","title":"South","email":"a@example.org","big":-1}}"#,
        r#"{"id":"e3","type":"conversation.ended","conversation_id":"c-1","data":{"language":"nl\u002dNL","tags":"urgent","score":"0.9","kind":["summary"],"title":5,"email":null,"big":12345678901234567890}}"#,
        r#"{"id":"e4","type":"conversation.started","conversation_id":"c-1"}"#,
    ];
    for (n, event) in events.iter().enumerate() {
        home.drop_json(&format!("e{n}.json"), event);
    }
    let expected: BTreeMap<String, Vec<String>> = [
        ("nl", vec!["e1", "e3"]),
        ("urgent", vec!["e1"]),
        ("score", vec!["e1"]),
        ("kind", vec!["e1", "e2"]),
        ("north", vec!["e1"]),
        ("noemail", vec!["e1", "e4"]),
        ("big", vec!["e1"]),
        ("both", vec!["e1"]),
        ("all", vec!["e1", "e2", "e3", "e4"]),
    ]
    .into_iter()
    .map(|(path, ids)| {
        (
            path.to_string(),
            ids.into_iter().map(String::from).collect(),
        )
    })
    .collect();
    let total = expected.values().map(Vec::len).sum::<usize>();
    common::wait_for("all four events stored", LONG, || {
        home.count("SELECT count(*) FROM events") == 4
    });
    // Routing decided at intake: an event a filter refuses has no delivery at all.
    assert_eq!(
        home.count("SELECT count(*) FROM deliveries") as usize,
        total,
        "one delivery per (event, subscription whose filter holds)"
    );
    assert_eq!(ids_by_path(&receiver, total), expected);
}

/// Runs `tests/fixtures/verify_webhook.py`: Python's `standardwebhooks` checks the
/// signature over the body exactly as received.
fn python_verifies(request: &Recorded) -> Result<(), String> {
    let headers: serde_json::Map<String, serde_json::Value> = request
        .headers
        .iter()
        .map(|(name, value)| (name.clone(), value.clone().into()))
        .collect();
    let input = serde_json::json!({
        "scheme": "standard", "secret": common::SECRET,
        "headers": headers, "body": request.body,
    });
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
        .map_err(|e| e.to_string())?;
    child
        .stdin
        .take()
        .ok_or("no stdin")?
        .write_all(input.to_string().as_bytes())
        .map_err(|e| e.to_string())?;
    let output = child.wait_with_output().map_err(|e| e.to_string())?;
    if output.status.success() {
        Ok(())
    } else {
        Err(String::from_utf8_lossy(&output.stderr).into_owned())
    }
}

/// An ECHO-like report: exact numbers and escapes that must pass through untouched.
const DATA: &str = r#"{"summary":"Gr\u00fc\u00dfe \"north\" \ud83d\ude00","numbers":[1e400, 0.1000, 12345678901234567890],"participants":[{"name":"Ana","email":"ana@example.org"},{"name":"Bo","email":"bo@example.org","role":"host"}],"transcript":[{"t":0,"text":"hallo"},{"t":30,"text":"d\u00e1g"}]}"#;

fn body(data: &str) -> String {
    format!(
        r#"{{"id":"evt_shape","type":"report.generated","conversation_id":"c-1","project_id":null,"timestamp":"2026-11-22T10:00:00Z","data":{data}}}"#
    )
}

#[test]
fn include_and_exclude_shape_data_exactly_and_the_signature_covers_the_shaped_body() {
    let receiver = Receiver::start(204);
    let url = &receiver.url;
    let home = Home::new();
    let config = [
        sub(
            "crm",
            url,
            r#"include = ["/data/summary", "/data/numbers", "/data/participants/*/name"]"#,
        ),
        sub(
            "outside",
            url,
            r#"exclude = ["/data/participants/*/email", "/data/transcript"]"#,
        ),
        sub(
            "names",
            url,
            r#"include = ["/data/participants"]
exclude = ["/data/participants/*/email", "/data/participants/1"]"#,
        ),
        sub("nothing-to-drop", url, r#"exclude = ["/data/absent/*/x"]"#),
        sub("whole", url, ""),
    ]
    .concat();
    home.write_config(&config);
    let _serve = Serve::start(&home);
    home.drop_json(
        "r.json",
        &format!(
            r#"{{"id":"evt_shape","type":"report.generated","conversation_id":"c-1","occurred_at":"2026-11-22T10:00:00Z","data":{DATA}}}"#
        ),
    );
    receiver.wait_for_count(5, LONG);
    let got = |path: &str| {
        receiver
            .at(&format!("/{path}"))
            .into_iter()
            .next()
            .unwrap_or_else(|| panic!("nothing at /{path}"))
    };
    let expected = [
        (
            "crm",
            body(
                r#"{"summary":"Gr\u00fc\u00dfe \"north\" \ud83d\ude00","numbers":[1e400, 0.1000, 12345678901234567890],"participants":[{"name":"Ana"},{"name":"Bo"}]}"#,
            ),
        ),
        (
            "outside",
            body(
                r#"{"summary":"Gr\u00fc\u00dfe \"north\" \ud83d\ude00","numbers":[1e400, 0.1000, 12345678901234567890],"participants":[{"name":"Ana"},{"name":"Bo","role":"host"}]}"#,
            ),
        ),
        ("names", body(r#"{"participants":[{"name":"Ana"}]}"#)),
        ("nothing-to-drop", body(DATA)),
        ("whole", body(DATA)),
    ];
    for (path, want) in &expected {
        let request = got(path);
        assert_eq!(&request.body, want, "body sent to {path}");
        request
            .verify_standard(common::SECRET)
            .unwrap_or_else(|e| panic!("{path}: {e}"));
        python_verifies(&request)
            .unwrap_or_else(|e| panic!("{path}: standardwebhooks refused it: {e}"));
    }
    // The stored event stays whole.
    let stored: Vec<String> = home.query("SELECT body FROM events WHERE id = 'evt_shape'");
    assert_eq!(stored, [body(DATA)]);
}

#[test]
fn check_config_locates_bad_filters_and_paths() {
    let home = Home::new();
    // Written whole (not through write_config, which adds lines), so positions are known.
    let path = home.config_path();
    std::fs::write(
        &path,
        "[[subscription]]\nname = \"s\"\nurl = \"https://a.example/\"\nconversations = [\"*\"]\n\
         events = [\"*\"]\nsecret = \"whsec_MfKQ9r8GKYqrTwjUPD8ILPZIo2LaLaSw\"\n\
         filter = [\n  { path = \"/data/score\", gte = \"high\" },\n  { path = \"data/x\", equals = 1 },\n]\n\
         exclude = [\"/type\"]\n",
    )
    .unwrap();
    let path = path.display().to_string();
    let (code, _, stderr) = common::run(&["check-config", "--config", &path]);
    assert_ne!(code, 0, "check-config took a bad filter: {stderr}");
    let lines = common_lines(&stderr, &path);
    for (at, words) in [
        (":8:33:", "gte takes a finite number"),
        (":9:12:", "must start with '/'"),
        (":11:12:", "must point inside data"),
    ] {
        assert!(
            lines.iter().any(|l| l.contains(at) && l.contains(words)),
            "expected {at} {words:?} in:\n{stderr}"
        );
    }
}

fn common_lines(stderr: &str, path: &str) -> Vec<String> {
    stderr
        .lines()
        .filter(|l| l.contains(path))
        .map(String::from)
        .collect()
}

/// Signals posthorn to reload and waits until the log says it did.
fn reload(serve: &Serve) {
    let count = |log: &str| log.matches("configuration reloaded").count();
    let before = count(&serve.log());
    common::signal(serve.pid(), "HUP");
    common::wait_for("the reload to be logged", LONG, || {
        count(&serve.log()) > before
    });
}

#[test]
fn the_delivery_view_shows_the_shaped_body_and_names_attempts_shaped_by_an_earlier_config() {
    let receiver = Receiver::start(204);
    let home = Home::new();
    let config = |exclude: &str| {
        format!(
            "{}{}",
            sub("crm", &receiver.url, &format!("exclude = [{exclude:?}]")),
            common::admin::admin_block()
        )
    };
    home.write_config(&config("/data/participants/*/email"));
    let serve = Serve::start(&home);
    common::wait_for_inlet(&home);
    let api = common::admin::Api::token(&home, common::admin::API_TOKEN);
    home.drop_json(
        "r.json",
        &format!(
            r#"{{"id":"evt_shape","type":"report.generated","conversation_id":"c-1","occurred_at":"2026-11-22T10:00:00Z","data":{DATA}}}"#
        ),
    );
    receiver.wait_for_count(1, LONG);
    let sent = receiver.requests()[0].body.clone();
    let ids: Vec<i64> = home.query("SELECT id FROM deliveries");
    let id = ids[0];
    let view = |api: &common::admin::Api| -> serde_json::Value {
        api.get(&format!("/api/v1/deliveries/{id}"))
            .expect(200)
            .json()
    };
    common::wait_for("the attempt to be recorded", LONG, || {
        view(&api)["attempts"]
            .as_array()
            .is_some_and(|a| a.len() == 1)
    });
    let shown = view(&api);
    assert_eq!(shown["request"]["body"], sent.as_str(), "the body as sent");
    assert!(!sent.contains("ana@example.org"));
    assert_eq!(shown["request"]["shaped"], true);
    assert_eq!(shown["request"]["shaped_otherwise"], serde_json::json!([]));
    assert_eq!(
        shown["event"]["body"],
        body(DATA).as_str(),
        "the stored event"
    );

    // The config now drops the transcript instead: the view shows what the next attempt
    // would send, and says attempt 1 sent something else.
    home.write_config(&config("/data/transcript"));
    reload(&serve);
    let shown = view(&api);
    let now = shown["request"]["body"].as_str().unwrap_or_default();
    assert!(
        now.contains("ana@example.org") && !now.contains("hallo"),
        "{now}"
    );
    assert_eq!(shown["request"]["shaped_otherwise"], serde_json::json!([1]));
}

/// A replay never widens who gets an event: a filter narrows it as the scope does.
#[test]
fn a_replay_to_a_subscription_whose_filter_refuses_the_event_is_refused() {
    let receiver = Receiver::start(204);
    let home = Home::new();
    home.write_config(&format!(
        "{}{}{}",
        sub(
            "nl",
            &receiver.url,
            r#"filter = [{ path = "/data/language", equals = "nl-NL" }]"#
        ),
        sub("all", &receiver.url, ""),
        common::admin::admin_block()
    ));
    let _serve = Serve::start(&home);
    common::wait_for_inlet(&home);
    let api = common::admin::Api::token(&home, common::admin::API_TOKEN);
    for (id, language) in [("evt_en", "en-US"), ("evt_nl", "nl-NL")] {
        home.drop_json(
            &format!("{id}.json"),
            &format!(
                r#"{{"id":"{id}","type":"conversation.ended","conversation_id":"c-1","data":{{"language":"{language}"}}}}"#
            ),
        );
    }
    receiver.wait_for_count(3, LONG);
    // Outcomes are written a moment after the receiver answers; until then a replay is
    // refused as "being sent right now".
    common::wait_for("the three deliveries recorded", LONG, || {
        home.count("SELECT count(*) FROM deliveries WHERE state = 'delivered'") == 3
    });
    let replay = |event: &str| {
        api.post(
            "/api/v1/subscriptions/nl/replay",
            Some(serde_json::json!({ "event_id": event })),
        )
    };
    let refused = replay("evt_en");
    assert_eq!(refused.status, 409, "{}", refused.body);
    assert!(refused.body.contains("filter"), "{}", refused.body);
    assert_eq!(replay("evt_nl").status, 200);
}
