//! Bad input in the spool, through the real binary: every kind (invalid JSON or UTF-8, a
//! missing `id` or `type`, a `conversation.*` event without `conversation_id`, a line
//! over `max_event_bytes`, a broken, oversized or partly bad `.json` file) is recorded in
//! the `rejections` table with its file, line, a reason naming the problem and a bounded
//! snippet, and logged; broken `.json` files move to `rejected/` beside a note. Nothing
//! after bad input is held up, and the process keeps running.

mod common;

use std::fs;
use std::path::PathBuf;
use std::time::Duration;

use common::{catch_all, spool_event, wait_for, Home, Receiver, RejectionRow, Serve};

const SETTLE: Duration = Duration::from_secs(15);
/// Small limits, so oversized input is cheap to write.
const SPOOL: &str = "max_event_bytes = \"1KiB\"\nmax_file_bytes = \"4KiB\"";
/// A fast retry schedule.
const DELIVERY: &str = "[delivery]\nschedule = [\"100ms\", \"200ms\"]\ntimeout = \"5s\"\n";
/// What `event::snippet` keeps: 256 bytes, plus a marker when it cut.
const SNIPPET_CHARS: usize = 257;

struct Running {
    receiver: Receiver,
    home: Home,
    serve: Serve,
}

fn start() -> Running {
    let receiver = Receiver::start(204);
    let home = Home::new();
    let mut body = DELIVERY.to_string();
    body.push_str(&catch_all(&receiver.url));
    home.write_config_with_spool(SPOOL, &body);
    let serve = Serve::start(&home);
    Running {
        receiver,
        home,
        serve,
    }
}

impl Running {
    fn spool_path(&self, name: &str) -> String {
        self.home.spool().join(name).display().to_string()
    }

    fn rejected(&self, name: &str) -> PathBuf {
        self.home.spool().join("rejected").join(name)
    }

    fn wait_delivered(&self, id: &str) {
        wait_for(&format!("{id} at the receiver"), SETTLE, || {
            self.receiver.count_of(id) >= 1
        });
    }

    fn wait_rejections(&self, count: usize) -> Vec<RejectionRow> {
        wait_for(&format!("{count} rejections recorded"), SETTLE, || {
            self.home.rejections().len() >= count
        });
        let rows = self.home.rejections();
        assert_eq!(rows.len(), count, "unexpected rejections: {rows:#?}");
        rows
    }

    /// The process survived: no panic in its log, and a good event dropped now arrives.
    fn assert_still_running(&self) {
        self.home.drop_json("later.json", &spool_event("later"));
        self.wait_delivered("later");
        let log = self.serve.log();
        assert!(!log.contains("panicked"), "posthorn panicked:\n{log}");
    }
}

fn assert_snippet_bounded(row: &RejectionRow) {
    let snippet = row.snippet.as_deref().unwrap_or_default();
    assert!(
        snippet.chars().count() <= SNIPPET_CHARS,
        "snippet of {} chars is not bounded: {row:?}",
        snippet.chars().count()
    );
}

/// Writes a good line, `bad` as line 2, and a good line; checks that line 2 is recorded
/// with a reason containing `reason` and a snippet starting with `snippet`, that the good
/// lines are delivered, and that posthorn keeps running.
fn assert_line_rejected(bad: &[u8], reason: &str, snippet: &str) -> RejectionRow {
    let run = start();
    let mut text = (spool_event("before") + "\n").into_bytes();
    text.extend_from_slice(bad);
    text.push(b'\n');
    text.extend_from_slice((spool_event("after") + "\n").as_bytes());
    run.home.append("events.ndjson", &text);

    run.wait_delivered("before");
    run.wait_delivered("after");
    let row = run.wait_rejections(1).remove(0);
    assert_eq!(row.source, run.spool_path("events.ndjson"));
    assert_eq!(row.line, Some(2));
    assert!(
        row.reason.contains(reason),
        "reason {:?} does not name the problem ({reason:?})",
        row.reason
    );
    assert!(
        row.snippet
            .as_deref()
            .unwrap_or_default()
            .starts_with(snippet),
        "snippet {:?} does not show the input ({snippet:?})",
        row.snippet
    );
    assert_snippet_bounded(&row);
    assert_eq!(
        run.home.count("SELECT count(*) FROM events"),
        2,
        "only the good lines are stored"
    );
    let log = run.serve.log();
    assert!(
        log.contains("events.ndjson:2"),
        "the log does not name the rejected line:\n{log}"
    );
    run.assert_still_running();
    row
}

#[test]
fn an_invalid_json_line_is_rejected_and_the_next_line_delivered() {
    assert_line_rejected(
        br#"{"id":"bad-1","type":"conversation.started","#,
        "not valid JSON",
        r#"{"id":"bad-1""#,
    );
}

#[test]
fn an_invalid_utf8_line_is_rejected_and_the_next_line_delivered() {
    let row = assert_line_rejected(
        b"{\"id\":\"bad-\xff\xfe\",\"type\":\"report.generated\"}",
        "not valid UTF-8",
        "{\"id\":\"bad-",
    );
    assert!(
        row.snippet.unwrap_or_default().contains('\u{FFFD}'),
        "the bad bytes are shown as replacement characters"
    );
}

#[test]
fn a_line_without_id_is_rejected_and_the_next_line_delivered() {
    assert_line_rejected(
        br#"{"type":"conversation.started","conversation_id":"c-1"}"#,
        "\"id\" is missing",
        r#"{"type":"conversation.started""#,
    );
}

#[test]
fn a_line_without_type_is_rejected_and_the_next_line_delivered() {
    assert_line_rejected(
        br#"{"id":"bad-4","conversation_id":"c-1"}"#,
        "\"type\" is missing",
        r#"{"id":"bad-4""#,
    );
}

#[test]
fn a_conversation_event_without_conversation_id_is_rejected_and_the_next_line_delivered() {
    assert_line_rejected(
        br#"{"id":"bad-5","type":"conversation.ended","project_id":"p-9"}"#,
        "\"conversation_id\" is required for conversation.ended events",
        r#"{"id":"bad-5""#,
    );
}

#[test]
fn a_line_over_max_event_bytes_is_rejected_and_the_next_line_delivered() {
    let big = format!(
        r#"{{"id":"bad-6","type":"report.generated","data":"{}"}}"#,
        "x".repeat(2000)
    );
    let row = assert_line_rejected(
        big.as_bytes(),
        &format!(
            "event is {} bytes, over the limit of 1024 bytes (spool.max_event_bytes)",
            big.len()
        ),
        r#"{"id":"bad-6""#,
    );
    assert!(row.snippet.unwrap_or_default().ends_with('…'));
}

#[test]
fn a_line_far_over_max_event_bytes_written_in_pieces_is_rejected_once_it_ends() {
    let run = start();
    run.home
        .append("events.ndjson", (spool_event("before") + "\n").as_bytes());
    run.wait_delivered("before");

    // Longer than posthorn reads at once, and still growing while it looks.
    let huge = format!(
        r#"{{"id":"bad-7","type":"report.generated","data":"{}"}}"#,
        "y".repeat(200 * 1024)
    );
    let (head, tail) = huge.as_bytes().split_at(150 * 1024);
    run.home.append("events.ndjson", head);
    std::thread::sleep(Duration::from_millis(600));
    assert!(
        run.home.rejections().is_empty(),
        "an unfinished line was rejected before it ended"
    );
    let mut rest = tail.to_vec();
    rest.push(b'\n');
    rest.extend_from_slice((spool_event("after") + "\n").as_bytes());
    run.home.append("events.ndjson", &rest);

    run.wait_delivered("after");
    let row = run.wait_rejections(1).remove(0);
    assert_eq!(row.source, run.spool_path("events.ndjson"));
    assert_eq!(row.line, Some(2));
    assert!(
        row.reason.contains(&format!(
            "event is {} bytes, over the limit of 1024 bytes",
            huge.len()
        )),
        "{row:?}"
    );
    assert!(row
        .snippet
        .as_deref()
        .unwrap_or_default()
        .starts_with(r#"{"id":"bad-7""#));
    assert_snippet_bounded(&row);
    assert_eq!(run.home.count("SELECT line FROM spool_positions"), 3);
    let log = run.serve.log();
    assert!(
        log.contains("events.ndjson:2"),
        "the log does not name the rejected line:\n{log}"
    );
    run.assert_still_running();
}

#[test]
fn many_bad_lines_in_one_file_are_each_recorded_with_their_own_line_number() {
    let run = start();
    let mut text = Vec::new();
    let mut push = |line: &[u8]| {
        text.extend_from_slice(line);
        text.push(b'\n');
    };
    push(spool_event("m-1").as_bytes()); // 1
    push(b"not json at all"); // 2
    push(b"\xc3\x28"); // 3: invalid UTF-8
    push(b""); // 4: blank lines are skipped, but counted
    push(spool_event("m-2").as_bytes()); // 5
    push(br#"{"type":"report.generated"}"#); // 6
    push(br#"{"id":"m-x"}"#); // 7
    push(br#"{"id":"m-y","type":"conversation.started"}"#); // 8
    push(format!(r#"{{"id":"m-z","type":"a","data":"{}"}}"#, "z".repeat(1100)).as_bytes()); // 9
    push(br#"[1, 2, 3]"#); // 10
    push(spool_event("m-3").as_bytes()); // 11
    run.home.append("events.ndjson", &text);

    for id in ["m-1", "m-2", "m-3"] {
        run.wait_delivered(id);
    }
    let rows = run.wait_rejections(7);
    let got: Vec<(Option<i64>, &str)> = rows.iter().map(|r| (r.line, r.reason.as_str())).collect();
    let expected = [
        (2, "not valid JSON"),
        (3, "not valid UTF-8"),
        (6, "\"id\" is missing"),
        (7, "\"type\" is missing"),
        (8, "\"conversation_id\" is required"),
        (9, "over the limit of 1024 bytes"),
        (10, "must be a JSON object"),
    ];
    for ((line, reason), (want_line, want_reason)) in got.iter().zip(expected) {
        assert_eq!(*line, Some(want_line), "rejections: {got:#?}");
        assert!(
            reason.contains(want_reason),
            "line {want_line}: {reason:?} does not contain {want_reason:?}"
        );
    }
    for row in &rows {
        assert_eq!(row.source, run.spool_path("events.ndjson"));
        assert_snippet_bounded(row);
    }
    assert_eq!(run.home.count("SELECT count(*) FROM events"), 3);
    run.assert_still_running();
}

#[test]
fn a_broken_json_file_is_moved_to_rejected_beside_a_note_naming_the_reason() {
    let run = start();
    let broken = r#"{"id":"b-1","type":"conversation.started","#;
    run.home.drop_json("broken.json", broken);
    run.home.drop_json("good.json", &spool_event("good"));
    run.wait_delivered("good");

    wait_for("broken.json to move to rejected/", SETTLE, || {
        run.rejected("broken.json.reason.txt").exists()
    });
    assert!(!run.home.spool().join("broken.json").exists());
    assert_eq!(
        fs::read_to_string(run.rejected("broken.json")).unwrap(),
        broken,
        "the rejected file is kept as written"
    );
    let note = fs::read_to_string(run.rejected("broken.json.reason.txt")).unwrap();
    assert!(note.contains("not valid JSON"), "note: {note}");

    let row = run.wait_rejections(1).remove(0);
    assert_eq!(row.source, run.spool_path("broken.json"));
    assert_eq!(row.line, None);
    assert!(row.reason.contains("not valid JSON"), "{row:?}");
    assert_eq!(row.snippet.as_deref(), Some(broken));

    // A second broken file of the same name does not overwrite the first.
    run.home.drop_json("broken.json", "not json");
    wait_for(
        "the second broken.json to move to rejected/",
        SETTLE,
        || run.rejected("broken.json.1.reason.txt").exists(),
    );
    assert_eq!(
        fs::read_to_string(run.rejected("broken.json.1")).unwrap(),
        "not json"
    );
    assert_eq!(
        fs::read_to_string(run.rejected("broken.json")).unwrap(),
        broken
    );
    run.wait_rejections(2);
    run.assert_still_running();
}

#[test]
fn a_json_file_holding_one_invalid_event_is_rejected_whole() {
    let run = start();
    run.home
        .drop_json("no-type.json", r#"{"id":"nt-1","conversation_id":"c-1"}"#);
    fs::write(
        run.home.spool().join(".raw.tmp"),
        b"{\"id\":\"nu-\xff\",\"type\":\"report.generated\"}",
    )
    .unwrap();
    fs::rename(
        run.home.spool().join(".raw.tmp"),
        run.home.spool().join("raw.json"),
    )
    .unwrap();

    wait_for("both files to move to rejected/", SETTLE, || {
        ["no-type.json", "raw.json"]
            .iter()
            .all(|name| run.rejected(&format!("{name}.reason.txt")).exists())
    });
    let rows = run.wait_rejections(2);
    let reason_of = |name: &str| -> String {
        rows.iter()
            .find(|r| r.source == run.spool_path(name))
            .unwrap_or_else(|| panic!("no rejection for {name}: {rows:#?}"))
            .reason
            .clone()
    };
    assert!(reason_of("no-type.json").contains("\"type\" is missing"));
    assert!(reason_of("raw.json").contains("not valid UTF-8"));
    let note = fs::read_to_string(run.rejected("raw.json.reason.txt")).unwrap();
    assert!(note.contains("not valid UTF-8"), "note: {note}");
    assert_eq!(run.home.count("SELECT count(*) FROM events"), 0);
    run.assert_still_running();
}

#[test]
fn a_json_array_with_bad_items_takes_the_good_items_and_rejects_each_bad_one_by_index() {
    let run = start();
    let array = format!(
        "[{}, {}, {}, {}]",
        spool_event("a-0"),
        r#"{"type":"conversation.started","conversation_id":"c-1"}"#,
        spool_event("a-2"),
        r#"{"id":"a-3","type":"conversation.ended"}"#,
    );
    run.home.drop_json("array.json", &array);
    run.wait_delivered("a-0");
    run.wait_delivered("a-2");

    let rows = run.wait_rejections(2);
    for row in &rows {
        assert_eq!(row.source, run.spool_path("array.json"));
        assert_eq!(row.line, None);
        assert_snippet_bounded(row);
    }
    assert!(
        rows[0].reason.starts_with("item 1:") && rows[0].reason.contains("\"id\" is missing"),
        "{:?}",
        rows[0]
    );
    assert!(
        rows[1].reason.starts_with("item 3:")
            && rows[1].reason.contains("\"conversation_id\" is required"),
        "{:?}",
        rows[1]
    );
    assert_eq!(
        rows[1].snippet.as_deref(),
        Some(r#"{"id":"a-3","type":"conversation.ended"}"#)
    );
    wait_for("array.json to be removed", SETTLE, || {
        !run.home.spool().join("array.json").exists()
    });
    assert!(
        !run.rejected("array.json").exists(),
        "a good array with bad items is taken, not rejected whole"
    );
    assert_eq!(run.home.count("SELECT count(*) FROM events"), 2);
    run.assert_still_running();
}

#[test]
fn a_json_array_that_does_not_parse_is_rejected_whole() {
    let run = start();
    let text = format!("[{}, {{\"id\":", spool_event("p-0"));
    run.home.drop_json("cut.json", &text);
    wait_for("cut.json to move to rejected/", SETTLE, || {
        run.rejected("cut.json.reason.txt").exists()
    });
    let row = run.wait_rejections(1).remove(0);
    assert!(row.reason.contains("not a valid JSON array"), "{row:?}");
    assert_eq!(
        run.home.count("SELECT count(*) FROM events"),
        0,
        "no item of a broken array is taken"
    );
    run.assert_still_running();
}

#[test]
fn an_oversized_json_file_is_rejected_whole_and_none_of_its_events_taken() {
    let run = start();
    // Every event is small, but the file is over max_file_bytes (4 KiB).
    let items: Vec<String> = (0..60).map(|n| spool_event(&format!("o-{n}"))).collect();
    let big = format!("[{}]", items.join(",\n"));
    assert!(big.len() > 4096);
    run.home.drop_json("big.json", &big);
    // One event over max_event_bytes (1 KiB) in a file under the file limit.
    let fat = format!(
        r#"{{"id":"fat","type":"report.generated","data":"{}"}}"#,
        "f".repeat(2000)
    );
    run.home.drop_json("fat.json", &fat);

    wait_for("both files to move to rejected/", SETTLE, || {
        run.rejected("big.json.reason.txt").exists() && run.rejected("fat.json.reason.txt").exists()
    });
    let rows = run.wait_rejections(2);
    let big_row = rows
        .iter()
        .find(|r| r.source == run.spool_path("big.json"))
        .expect("a rejection for big.json");
    assert!(
        big_row.reason.contains(&format!(
            "file is {} bytes, over the limit of 4096 bytes (spool.max_file_bytes)",
            big.len()
        )),
        "{big_row:?}"
    );
    assert!(
        big_row
            .snippet
            .as_deref()
            .unwrap_or_default()
            .starts_with(r#"[{"id":"o-0""#),
        "the snippet shows the start of the file: {big_row:?}"
    );
    assert_snippet_bounded(big_row);
    let fat_row = rows
        .iter()
        .find(|r| r.source == run.spool_path("fat.json"))
        .expect("a rejection for fat.json");
    assert!(
        fat_row
            .reason
            .contains("over the limit of 1024 bytes (spool.max_event_bytes)"),
        "{fat_row:?}"
    );
    assert_snippet_bounded(fat_row);
    let note = fs::read_to_string(run.rejected("big.json.reason.txt")).unwrap();
    assert!(note.contains("spool.max_file_bytes"), "note: {note}");
    assert_eq!(fs::read_to_string(run.rejected("big.json")).unwrap(), big);
    assert_eq!(run.home.count("SELECT count(*) FROM events"), 0);
    run.assert_still_running();
}
