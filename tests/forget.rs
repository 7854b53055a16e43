//! Forgetting a conversation end to end, with the real binary: `posthorn forget` through
//! the API blanks the conversation's event bodies, attempt snippets and rejection
//! snippets in every table and leaves no copy of them in the raw database and WAL files
//! (a marker string is searched for in the bytes), keeps the delivery log's metadata,
//! cancels pending deliveries or lets them finish (across a restart), and is audited.

mod common;

use std::time::Duration;

use common::admin::{self, Api};
use common::{Home, ProgrammableReceiver, Reply, Serve};

/// In the forgotten conversation's payloads (and so in the receiver's echoed answers).
const MARKER: &str = "FORGET-ME-7Q4Z";
/// In another conversation's payload: must survive, and proves the scan can find text.
const KEEPER: &str = "KEEP-ME-3ZX9";

/// Answers `/ok` with 200 and `/slow` with 503 (Retry-After: `slow_retry` seconds) while
/// `slow` fails, each echoing the request body, so attempt snippets hold the payload.
fn echoing(
    slow_retry: &'static str,
) -> (
    ProgrammableReceiver,
    std::sync::Arc<std::sync::atomic::AtomicBool>,
) {
    let failing = std::sync::Arc::new(std::sync::atomic::AtomicBool::new(true));
    let flag = std::sync::Arc::clone(&failing);
    let receiver = ProgrammableReceiver::start(move |_, request| {
        let echo = format!("received: {}", request.body);
        if request.path == "/slow" && flag.load(std::sync::atomic::Ordering::SeqCst) {
            Reply::status(503)
                .header("Retry-After", slow_retry)
                .body(echo)
        } else {
            Reply::status(200).body(echo)
        }
    });
    (receiver, failing)
}

fn config(url: &str) -> String {
    format!(
        "[[subscription]]\nname = \"ok\"\nurl = \"{url}/ok\"\nconversations = [\"*\"]\n\
         events = [\"*\"]\nsecret = \"{secret}\"\n\n\
         [[subscription]]\nname = \"slow\"\nurl = \"{url}/slow\"\n\
         conversations = [\"c-forget\"]\nevents = [\"*\"]\nsecret = \"{secret}\"\n",
        secret = common::SECRET
    )
}

fn event(id: &str, conversation: &str, text: &str) -> String {
    format!(
        r#"{{"id":"{id}","type":"conversation.transcribed","conversation_id":"{conversation}","data":{{"transcript":"{text}"}}}}"#
    )
}

/// How often `needle` occurs in what the store keeps: on SQLite the bytes of the
/// database file and its WAL (free pages included), on PostgreSQL every row as text.
fn raw_count(home: &Home, needle: &str) -> usize {
    home.store_bytes()
        .windows(needle.len())
        .filter(|w| *w == needle.as_bytes())
        .count()
}

/// Where `needle` is in what the store keeps, with the bytes around it, for a failure
/// message.
fn context(home: &Home, needle: &str) -> String {
    let bytes = home.store_bytes();
    let mut found = String::new();
    for (at, _) in bytes
        .windows(needle.len())
        .enumerate()
        .filter(|(_, w)| *w == needle.as_bytes())
    {
        let around = &bytes[at.saturating_sub(80)..(at + needle.len() + 40).min(bytes.len())];
        found.push_str(&format!("\nat {at}: {}", String::from_utf8_lossy(around)));
    }
    found
}

fn forget_cli(home: &Home, args: &[&str]) -> (i32, String, String) {
    let config = home.config_path();
    let mut all = vec!["forget", "--config", config.to_str().expect("a UTF-8 path")];
    all.extend_from_slice(args);
    common::run(&all)
}

#[test]
fn forget_blanks_the_conversation_everywhere_including_the_raw_files_and_keeps_the_log() {
    let (receiver, _failing) = echoing("3600");
    let home = Home::new();
    let _serve = admin::start(&home, &config(&receiver.url));
    // Big enough to spill into overflow pages.
    let long = MARKER.repeat(600);
    home.drop_json("f1.json", &event("evt_f1", "c-forget", &long));
    home.drop_json("f2.json", &event("evt_f2", "c-forget", MARKER));
    home.drop_json("k1.json", &event("evt_k1", "c-keep", KEEPER));
    // Not an event (no type): rejected, its snippet quoting the conversation. It is the
    // file's first line, inside the first KiB the spool recognises the file by: the store
    // keeps only a fingerprint of those bytes, so the scan must not find it there either.
    let filler = format!("{}\n", event("evt_k2", "c-keep", &"k".repeat(1100)));
    home.append(
        "bad.ndjson",
        format!(
            "{{\"id\":\"evt_bad\",\"conversation_id\":\"c-forget\",\"data\":\"{MARKER}\"}}\n{filler}"
        )
        .as_bytes(),
    );
    common::wait_for(
        "every first attempt and the rejection",
        Duration::from_secs(20),
        || {
            home.count("SELECT count(*) FROM attempts WHERE response_snippet IS NOT NULL") >= 6
                && home.count("SELECT count(*) FROM rejections") == 1
        },
    );
    assert!(
        raw_count(&home, MARKER) > 0,
        "the scan finds the marker before"
    );

    let (code, stdout, stderr) = forget_cli(&home, &["--conversation", "c-forget"]);
    assert_eq!(code, 0, "{stdout}{stderr}");
    assert!(
        stdout.contains(
            "forgot conversation \"c-forget\": blanked 2 event bodies, 4 attempt snippets and \
             1 rejection snippet; cancelled 2 pending deliveries"
        ),
        "{stdout}"
    );

    // Gone from every table...
    for sql in [
        "SELECT count(*) FROM events WHERE conversation_id = 'c-forget' AND body != ''",
        "SELECT count(*) FROM attempts a JOIN deliveries d ON d.id = a.delivery_id
         WHERE d.event_id IN ('evt_f1', 'evt_f2') AND a.response_snippet IS NOT NULL",
        "SELECT count(*) FROM rejections WHERE snippet IS NOT NULL",
    ] {
        assert_eq!(home.count(sql), 0, "{sql}");
    }
    // ... and from the bytes of the database and its WAL, while the other conversation
    // is still there.
    assert_eq!(
        raw_count(&home, MARKER),
        0,
        "the marker lingers in the raw files: {}",
        context(&home, MARKER)
    );
    assert!(raw_count(&home, KEEPER) > 0);
    assert_eq!(
        home.count("SELECT count(*) FROM events WHERE body LIKE '%KEEP-ME%'"),
        1
    );

    // The delivery log keeps ids, types, states and statuses.
    let states: Vec<String> = home.query(
        "SELECT subscription || ':' || event_id || ':' || state || ':' || last_status
         FROM deliveries WHERE event_id IN ('evt_f1', 'evt_f2') ORDER BY subscription, event_id",
    );
    assert_eq!(
        states,
        [
            "ok:evt_f1:delivered:200",
            "ok:evt_f2:delivered:200",
            "slow:evt_f1:cancelled:503",
            "slow:evt_f2:cancelled:503"
        ]
    );
    assert_eq!(
        home.count("SELECT count(*) FROM events WHERE conversation_id = 'c-forget' AND type = 'conversation.transcribed'"),
        2
    );

    // Audited: who, when, what, how many rows.
    let api = Api::token(&home, admin::API_TOKEN);
    let audit = api.get("/api/v1/audit").expect(200).json();
    let row = audit["items"]
        .as_array()
        .and_then(|rows| rows.iter().find(|r| r["action"] == "conversation.forget"))
        .unwrap_or_else(|| panic!("no audit row: {audit:#}"))
        .clone();
    assert_eq!(row["actor"], "token", "{row}");
    assert_eq!(row["result"], "applied", "{row}");
    assert!(row["at"].as_i64().is_some(), "{row}");
    let detail = row["detail"].as_str().unwrap_or_default();
    assert!(
        detail.contains("\"c-forget\": blanked 2 event bodies, 4 attempt snippets, 1 rejection snippets; cancelled 2 pending deliveries"),
        "{detail}"
    );

    // Again: nothing more to blank, and it says so; JSON for scripts.
    let (code, stdout, stderr) = forget_cli(&home, &["--conversation", "c-forget", "--json"]);
    assert_eq!(code, 0, "{stderr}");
    let again: serde_json::Value = serde_json::from_str(&stdout).unwrap();
    assert_eq!(
        (&again["again"], &again["events"], &again["cancelled"]),
        (
            &serde_json::json!(true),
            &serde_json::json!(0),
            &serde_json::json!(0)
        ),
        "{again}"
    );

    // An unknown conversation is refused with exit 1 and a sentence.
    let (code, stdout, stderr) = forget_cli(&home, &["--conversation", "c-never"]);
    assert_eq!(code, 1, "{stdout}");
    assert!(
        stderr.contains("holds nothing of conversation \"c-never\""),
        "{stderr}"
    );
}

#[test]
fn forget_needs_a_token_or_it_exits_2() {
    let home = Home::new();
    let path = home.write_config("");
    let (code, stdout, stderr) = common::run(&[
        "forget",
        "--conversation",
        "c-1",
        "--config",
        path.to_str().expect("a UTF-8 path"),
    ]);
    assert_eq!(code, 2, "{stdout}{stderr}");
    assert!(stderr.contains("token"), "{stderr}");
}

#[test]
fn let_pending_finish_sends_first_then_blanks_even_across_a_restart() {
    let (receiver, failing) = echoing("1");
    let home = Home::new();
    let serve = admin::start(&home, &config(&receiver.url));
    home.drop_json("f1.json", &event("evt_f1", "c-forget", MARKER));
    common::wait_for(
        "the slow delivery's first attempt",
        Duration::from_secs(20),
        || {
            home.count("SELECT count(*) FROM attempts WHERE subscription = 'slow'") >= 1
                && home.count("SELECT count(*) FROM deliveries WHERE state = 'delivered'") == 1
        },
    );

    let (code, stdout, stderr) = forget_cli(
        &home,
        &[
            "--conversation",
            "c-forget",
            "--let-pending-finish",
            "--json",
        ],
    );
    assert_eq!(code, 0, "{stderr}");
    let answer: serde_json::Value = serde_json::from_str(&stdout).unwrap();
    assert_eq!(
        (&answer["events"], &answer["cancelled"], &answer["waiting"]),
        (
            &serde_json::json!(0),
            &serde_json::json!(0),
            &serde_json::json!(1)
        ),
        "{answer}"
    );
    assert_eq!(
        home.count("SELECT count(*) FROM events WHERE id = 'evt_f1' AND body != ''"),
        1,
        "kept while its delivery is pending"
    );

    // A crash does not lose the deferred erasure.
    serve.kill();
    let _serve = Serve::start(&home);
    common::wait_for_inlet(&home);
    failing.store(false, std::sync::atomic::Ordering::SeqCst);
    common::wait_for(
        "the event blanked once delivered",
        Duration::from_secs(30),
        || home.count("SELECT count(*) FROM events WHERE id = 'evt_f1' AND body = ''") == 1,
    );
    assert_eq!(
        home.query::<String>("SELECT state FROM deliveries WHERE subscription = 'slow'"),
        ["delivered"],
        "let finish: sent, not cancelled"
    );
    assert!(
        receiver
            .requests()
            .iter()
            .any(|r| r.path == "/slow" && r.body.contains(MARKER)),
        "the receiver got the payload"
    );
    assert_eq!(
        home.count("SELECT count(*) FROM attempts WHERE response_snippet IS NOT NULL AND subscription = 'slow'"),
        0
    );
    common::wait_for(
        "no copy left in the raw files",
        Duration::from_secs(10),
        || raw_count(&home, MARKER) == 0,
    );
}
