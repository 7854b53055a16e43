//! Ingest from the spool directory, through the real binary: `.json` files (one event or
//! an array, temp names ignored, `keep_done`), `.ndjson` tailing (lines appended over
//! time, torn lines, restarts, rotation while running and while stopped, truncation),
//! duplicate ids, and pick-up by filesystem notification rather than by rescan.

mod common;

use std::collections::HashMap;
use std::fs;
use std::time::{Duration, Instant};

use common::{catch_all, spool_event, subscription, wait_for, Home, Receiver, Serve, SECRET};

const SETTLE: Duration = Duration::from_secs(15);

/// A fast retry schedule; the default number of connections per endpoint.
const DELIVERY: &str = "[delivery]\nschedule = [\"100ms\", \"200ms\"]\ntimeout = \"5s\"\n";

/// Writes a config with one subscription taking every event, at `<receiver>/hook`.
fn configure(home: &Home, receiver: &Receiver, spool: &str) {
    let mut body = DELIVERY.to_string();
    body.push_str(&catch_all(&receiver.url));
    home.write_config_with_spool(spool, &body);
}

/// Event ids `prefix-from` ..= `prefix-to`.
fn ids(prefix: &str, from: usize, to: usize) -> Vec<String> {
    (from..=to).map(|n| format!("{prefix}-{n}")).collect()
}

/// One `.ndjson` line per id, each ending in a newline.
fn lines(ids: &[String]) -> String {
    ids.iter().map(|id| spool_event(id) + "\n").collect()
}

fn wait_received(receiver: &Receiver, ids: &[String]) {
    wait_for(
        &format!("the receiver to get {} events", ids.len()),
        SETTLE,
        || {
            let got: HashMap<String, usize> = counts(receiver);
            ids.iter().all(|id| got.contains_key(id))
        },
    );
}

fn counts(receiver: &Receiver) -> HashMap<String, usize> {
    let mut counts = HashMap::new();
    for request in receiver.requests() {
        *counts
            .entry(request.header("webhook-id").unwrap_or_default().to_string())
            .or_default() += 1;
    }
    counts
}

/// Waits until `events` holds `stored` events and no delivery is still pending.
fn wait_settled(home: &Home, stored: i64) {
    wait_for(
        &format!("{stored} events stored and every delivery delivered"),
        SETTLE,
        || {
            home.count("SELECT count(*) FROM events") == stored
                && home.count("SELECT count(*) FROM deliveries WHERE state != 'delivered'") == 0
        },
    );
}

/// Asserts the receiver got exactly `ids`, each exactly once.
fn assert_each_once(receiver: &Receiver, ids: &[String]) {
    let got = counts(receiver);
    for id in ids {
        assert_eq!(
            got.get(id).copied(),
            Some(1),
            "expected {id} to be delivered exactly once; receiver counts: {got:?}"
        );
    }
    assert_eq!(
        got.len(),
        ids.len(),
        "the receiver got events nobody wrote: {got:?}"
    );
}

fn assert_no_rejections(home: &Home) {
    let rejections = home.rejections();
    assert!(
        rejections.is_empty(),
        "expected no rejections, got {rejections:#?}"
    );
}

#[test]
fn a_json_file_with_one_event_or_an_array_delivers_every_event_and_is_removed() {
    let receiver = Receiver::start(204);
    let home = Home::new();
    configure(&home, &receiver, "");
    let _serve = Serve::start(&home);

    home.drop_json("one.json", &spool_event("j-1"));
    let array = format!(
        "[{}, {},\n {}]",
        spool_event("j-2"),
        spool_event("j-3"),
        spool_event("j-4")
    );
    home.drop_json("array.json", &array);

    let all = ids("j", 1, 4);
    wait_received(&receiver, &all);
    wait_settled(&home, 4);
    assert_each_once(&receiver, &all);
    let third = receiver
        .requests()
        .into_iter()
        .find(|r| r.event_id() == "j-3")
        .expect("j-3 arrived");
    third.verify_standard(SECRET).unwrap();
    assert_eq!(
        third.body,
        r#"{"id":"j-3","type":"conversation.started","conversation_id":"c-1","project_id":null,"timestamp":"2026-11-22T10:00:00Z","data":{"n":"j-3"}}"#
    );
    wait_for("both files to be removed", SETTLE, || {
        !home.spool().join("one.json").exists() && !home.spool().join("array.json").exists()
    });
    assert!(
        !home.spool().join("done").exists(),
        "no done/ without keep_done"
    );
}

#[test]
fn files_starting_with_a_dot_or_not_ending_in_json_are_ignored_until_renamed() {
    let receiver = Receiver::start(204);
    let home = Home::new();
    configure(&home, &receiver, "");
    let _serve = Serve::start(&home);

    fs::create_dir_all(home.spool()).unwrap();
    let dot_json = home.spool().join(".t-1.json");
    let tmp_suffix = home.spool().join("t-2.json.tmp");
    let dot_ndjson = home.spool().join(".events.ndjson");
    fs::write(&dot_json, spool_event("t-1")).unwrap();
    fs::write(&tmp_suffix, spool_event("t-2")).unwrap();
    fs::write(&dot_ndjson, spool_event("t-3") + "\n").unwrap();

    // Several rescans (every 200 ms) and the notifications of the writes go by.
    std::thread::sleep(Duration::from_millis(1200));
    assert_eq!(receiver.count(), 0, "a temp file was delivered");
    assert_eq!(home.count("SELECT count(*) FROM events"), 0);
    assert!(dot_json.exists() && tmp_suffix.exists() && dot_ndjson.exists());

    fs::rename(&dot_json, home.spool().join("t-1.json")).unwrap();
    fs::rename(&tmp_suffix, home.spool().join("t-2.json")).unwrap();
    fs::rename(&dot_ndjson, home.spool().join("events.ndjson")).unwrap();
    let all = ids("t", 1, 3);
    wait_received(&receiver, &all);
    wait_settled(&home, 3);
    assert_each_once(&receiver, &all);
}

#[test]
fn keep_done_moves_consumed_json_files_to_done_instead_of_deleting_them() {
    let receiver = Receiver::start(204);
    let home = Home::new();
    configure(&home, &receiver, "keep_done = true");
    let _serve = Serve::start(&home);
    let done = home.spool().join("done");

    home.drop_json("batch.json", &spool_event("k-1"));
    wait_received(&receiver, &ids("k", 1, 1));
    wait_for("batch.json to move to done/", SETTLE, || {
        done.join("batch.json").exists() && !home.spool().join("batch.json").exists()
    });
    assert_eq!(
        fs::read_to_string(done.join("batch.json")).unwrap(),
        spool_event("k-1")
    );

    // A second file of the same name does not overwrite the first.
    home.drop_json("batch.json", &spool_event("k-2"));
    wait_received(&receiver, &ids("k", 1, 2));
    wait_for("the second batch.json to move to done/", SETTLE, || {
        done.join("batch.json.1").exists() && !home.spool().join("batch.json").exists()
    });
    assert_eq!(
        fs::read_to_string(done.join("batch.json.1")).unwrap(),
        spool_event("k-2")
    );
    assert_eq!(
        fs::read_to_string(done.join("batch.json")).unwrap(),
        spool_event("k-1")
    );
}

#[test]
fn ndjson_lines_appended_over_time_are_each_delivered_once() {
    let receiver = Receiver::start(204);
    let home = Home::new();
    configure(&home, &receiver, "");
    let _serve = Serve::start(&home);

    home.append("events.ndjson", lines(&ids("n", 1, 1)).as_bytes());
    wait_received(&receiver, &ids("n", 1, 1));
    home.append("events.ndjson", lines(&ids("n", 2, 4)).as_bytes());
    wait_received(&receiver, &ids("n", 1, 4));
    for n in 5..=12 {
        home.append("events.ndjson", lines(&ids("n", n, n)).as_bytes());
        std::thread::sleep(Duration::from_millis(30));
    }
    let all = ids("n", 1, 12);
    wait_received(&receiver, &all);
    wait_settled(&home, 12);
    std::thread::sleep(Duration::from_millis(300));
    assert_each_once(&receiver, &all);
    assert_no_rejections(&home);
    let size = fs::metadata(home.spool().join("events.ndjson"))
        .unwrap()
        .len() as i64;
    assert_eq!(
        home.count("SELECT \"offset\" FROM spool_positions"),
        size,
        "the recorded position is the end of the file"
    );
    assert_eq!(home.count("SELECT line FROM spool_positions"), 12);
    assert!(
        home.spool().join("events.ndjson").exists(),
        "posthorn never deletes .ndjson files"
    );
}

#[test]
fn a_torn_ndjson_line_is_taken_only_once_complete_and_exactly_once() {
    let receiver = Receiver::start(204);
    let home = Home::new();
    configure(&home, &receiver, "");
    let _serve = Serve::start(&home);

    // The torn line is cut inside a two-byte UTF-8 character.
    let torn = r#"{"id":"torn-2","type":"conversation.started","conversation_id":"c-1","occurred_at":"2026-11-22T10:00:00Z","data":{"text":"Grüße aus Zürich"}}"#;
    let cut = torn.find('ü').unwrap() + 1;
    let mut first = lines(&ids("torn", 1, 1)).into_bytes();
    first.extend_from_slice(&torn.as_bytes()[..cut]);
    home.append("events.ndjson", &first);

    wait_received(&receiver, &ids("torn", 1, 1));
    // Notifications and several rescans go by; the half line must stay untouched.
    std::thread::sleep(Duration::from_millis(1000));
    assert_eq!(
        home.count("SELECT count(*) FROM events WHERE id = 'torn-2'"),
        0,
        "half a line was taken"
    );
    assert_eq!(receiver.count(), 1);
    assert_no_rejections(&home);

    let mut rest = torn.as_bytes()[cut..].to_vec();
    rest.push(b'\n');
    home.append("events.ndjson", &rest);
    let all = ids("torn", 1, 2);
    wait_received(&receiver, &all);
    wait_settled(&home, 2);
    std::thread::sleep(Duration::from_millis(300));
    assert_each_once(&receiver, &all);
    assert_no_rejections(&home);
    let delivered = receiver
        .requests()
        .into_iter()
        .find(|r| r.event_id() == "torn-2")
        .expect("torn-2 arrived");
    delivered.verify_standard(SECRET).unwrap();
    assert_eq!(delivered.json()["data"]["text"], "Grüße aus Zürich");
}

#[test]
fn a_restart_neither_skips_nor_rereads_ndjson_lines() {
    let receiver = Receiver::start(204);
    let home = Home::new();
    configure(&home, &receiver, "");
    let file = home.spool().join("events.ndjson");

    // Run 1: ten events and a bad line (line 11), whose rejection would be recorded
    // again if the line were ever read twice.
    let serve = Serve::start(&home);
    home.append("events.ndjson", lines(&ids("r", 1, 10)).as_bytes());
    home.append("events.ndjson", b"this is not json\n");
    wait_received(&receiver, &ids("r", 1, 10));
    wait_settled(&home, 10);
    wait_for("the bad line to be rejected", SETTLE, || {
        home.rejections().len() == 1
    });
    assert_eq!(serve.terminate(), Some(0), "SIGTERM exits cleanly");

    // While stopped: ten more lines and half of another.
    home.append("events.ndjson", lines(&ids("r", 11, 20)).as_bytes());
    let half = spool_event("r-21");
    let (head, tail) = half.split_at(half.len() / 2);
    home.append("events.ndjson", head.as_bytes());

    // Run 2 takes the ten lines, not the half; then it is killed outright.
    let serve = Serve::start(&home);
    wait_received(&receiver, &ids("r", 1, 20));
    wait_settled(&home, 20);
    serve.kill();

    home.append("events.ndjson", format!("{tail}\n").as_bytes());
    home.append("events.ndjson", lines(&ids("r", 22, 30)).as_bytes());

    // Run 3 resumes exactly at the half line.
    let serve = Serve::start(&home);
    let all = ids("r", 1, 30);
    wait_received(&receiver, &all);
    wait_settled(&home, 30);
    std::thread::sleep(Duration::from_millis(300));
    assert_each_once(&receiver, &all);
    let rejections = home.rejections();
    assert_eq!(
        rejections.len(),
        1,
        "a line was read twice or from the wrong place: {rejections:#?}"
    );
    assert_eq!(rejections[0].line, Some(11));
    let size = fs::metadata(&file).unwrap().len() as i64;
    assert_eq!(home.count("SELECT \"offset\" FROM spool_positions"), size);
    assert_eq!(home.count("SELECT line FROM spool_positions"), 31);
    assert!(!serve.log().contains("panicked"));
}

#[test]
fn rotation_while_running_delivers_every_line_of_both_files_exactly_once() {
    let receiver = Receiver::start(204);
    let home = Home::new();
    configure(&home, &receiver, "");
    let _serve = Serve::start(&home);

    home.append("events.ndjson", lines(&ids("rot", 1, 1)).as_bytes());
    wait_received(&receiver, &ids("rot", 1, 1));

    // Lines posthorn may not have read yet, then the rename at once; the producer's last
    // writes still go to the old file under its new name.
    home.append("events.ndjson", lines(&ids("rot", 2, 20)).as_bytes());
    fs::rename(
        home.spool().join("events.ndjson"),
        home.spool().join("events.ndjson.1"),
    )
    .unwrap();
    home.append("events.ndjson.1", lines(&ids("rot", 21, 25)).as_bytes());
    home.append("events.ndjson", lines(&ids("rot", 26, 40)).as_bytes());

    // A second rotation: .1 moves on to .2, the current file to .1.
    wait_received(&receiver, &ids("rot", 1, 40));
    home.append("events.ndjson", lines(&ids("rot", 41, 45)).as_bytes());
    fs::rename(
        home.spool().join("events.ndjson.1"),
        home.spool().join("events.ndjson.2"),
    )
    .unwrap();
    fs::rename(
        home.spool().join("events.ndjson"),
        home.spool().join("events.ndjson.1"),
    )
    .unwrap();
    home.append("events.ndjson.1", lines(&ids("rot", 46, 50)).as_bytes());
    home.append("events.ndjson", lines(&ids("rot", 51, 60)).as_bytes());

    let all = ids("rot", 1, 60);
    wait_received(&receiver, &all);
    wait_settled(&home, 60);
    std::thread::sleep(Duration::from_millis(300));
    assert_each_once(&receiver, &all);
    assert_no_rejections(&home);
}

#[test]
fn rotation_while_stopped_delivers_every_line_of_both_files_exactly_once() {
    let receiver = Receiver::start(204);
    let home = Home::new();
    configure(&home, &receiver, "");

    let serve = Serve::start(&home);
    home.append("events.ndjson", lines(&ids("st", 1, 10)).as_bytes());
    wait_received(&receiver, &ids("st", 1, 10));
    wait_settled(&home, 10);
    assert_eq!(serve.terminate(), Some(0));

    home.append("events.ndjson", lines(&ids("st", 11, 20)).as_bytes());
    fs::rename(
        home.spool().join("events.ndjson"),
        home.spool().join("events.ndjson.1"),
    )
    .unwrap();
    home.append("events.ndjson", lines(&ids("st", 21, 30)).as_bytes());

    let _serve = Serve::start(&home);
    let all = ids("st", 1, 30);
    wait_received(&receiver, &all);
    wait_settled(&home, 30);
    std::thread::sleep(Duration::from_millis(300));
    assert_each_once(&receiver, &all);
    assert_no_rejections(&home);
}

#[test]
fn a_file_rotated_before_posthorn_ever_read_it_is_still_delivered() {
    let receiver = Receiver::start(204);
    let home = Home::new();
    configure(&home, &receiver, "");
    // The producer writes and rotates while posthorn is not running at all.
    home.append("events.ndjson", lines(&ids("nr", 1, 10)).as_bytes());
    fs::rename(
        home.spool().join("events.ndjson"),
        home.spool().join("events.ndjson.1"),
    )
    .unwrap();
    home.append("events.ndjson", lines(&ids("nr", 11, 20)).as_bytes());

    let _serve = Serve::start(&home);
    let all = ids("nr", 1, 20);
    wait_received(&receiver, &all);
    wait_settled(&home, 20);
    std::thread::sleep(Duration::from_millis(300));
    assert_each_once(&receiver, &all);
}

#[test]
fn a_file_truncated_and_refilled_past_its_old_position_while_stopped_is_read_from_the_top() {
    let receiver = Receiver::start(204);
    let home = Home::new();
    configure(&home, &receiver, "");
    let file = home.spool().join("events.ndjson");

    let serve = Serve::start(&home);
    home.append("events.ndjson", lines(&ids("rf", 1, 5)).as_bytes());
    wait_received(&receiver, &ids("rf", 1, 5));
    wait_settled(&home, 5);
    assert_eq!(serve.terminate(), Some(0));
    let old_position = home.count("SELECT \"offset\" FROM spool_positions");

    // Same inode, more bytes than before: the size alone cannot show the file is new.
    fs::write(&file, lines(&ids("rf", 6, 20))).unwrap();
    assert!(fs::metadata(&file).unwrap().len() as i64 > old_position);

    let _serve = Serve::start(&home);
    let all = ids("rf", 1, 20);
    wait_received(&receiver, &all);
    wait_settled(&home, 20);
    std::thread::sleep(Duration::from_millis(300));
    assert_each_once(&receiver, &all);
    assert_no_rejections(&home);
}

#[test]
fn a_truncated_ndjson_file_is_read_again_from_the_top() {
    let receiver = Receiver::start(204);
    let home = Home::new();
    configure(&home, &receiver, "");
    let _serve = Serve::start(&home);
    let file = home.spool().join("events.ndjson");

    home.append("events.ndjson", lines(&ids("tr", 1, 5)).as_bytes());
    wait_received(&receiver, &ids("tr", 1, 5));
    wait_settled(&home, 5);

    fs::OpenOptions::new()
        .write(true)
        .truncate(true)
        .open(&file)
        .unwrap();
    // Posthorn notices the file shrank, and records that, before the producer writes again.
    wait_for("the truncation to be recorded", SETTLE, || {
        home.count("SELECT \"offset\" FROM spool_positions") == 0
    });
    // More than was there before, so a stale position would land inside the new text.
    home.append("events.ndjson", lines(&ids("tr", 6, 20)).as_bytes());

    let all = ids("tr", 1, 20);
    wait_received(&receiver, &all);
    wait_settled(&home, 20);
    std::thread::sleep(Duration::from_millis(300));
    assert_each_once(&receiver, &all);
    assert_no_rejections(&home);
    assert_eq!(
        home.count("SELECT \"offset\" FROM spool_positions"),
        fs::metadata(&file).unwrap().len() as i64
    );
}

#[test]
fn duplicate_ids_are_stored_once_and_delivered_once_per_subscription() {
    let receiver = Receiver::start(204);
    let home = Home::new();
    let mut body = DELIVERY.to_string();
    body.push_str(&subscription(
        "a",
        &format!("{}/a", receiver.url),
        "conversations = [\"c-*\"]",
        "[\"conversation.*\"]",
    ));
    body.push_str(&subscription(
        "b",
        &format!("{}/b", receiver.url),
        "conversations = [\"*\"]",
        "[\"*\"]",
    ));
    home.write_config_with_spool("", &body);
    let _serve = Serve::start(&home);

    // The same id twice in one file, again in another file, and again in a .json file.
    home.append(
        "one.ndjson",
        lines(&["dup".into(), "dup".into(), "x-1".into()]).as_bytes(),
    );
    home.append(
        "two.ndjson",
        lines(&["dup".into(), "x-2".into()]).as_bytes(),
    );
    home.drop_json(
        "three.json",
        &format!("[{}, {}]", spool_event("dup"), spool_event("x-3")),
    );
    let all: Vec<String> = vec!["dup".into(), "x-1".into(), "x-2".into(), "x-3".into()];
    wait_for("every event at both subscriptions", SETTLE, || {
        let at = |path: &str| -> Vec<String> {
            receiver.at(path).iter().map(|r| r.event_id()).collect()
        };
        let (a, b) = (at("/a"), at("/b"));
        all.iter().all(|id| a.contains(id) && b.contains(id))
    });
    wait_settled(&home, 4);

    // Once more, long after the first copy was delivered.
    home.drop_json("four.json", &spool_event("dup"));
    wait_for("four.json to be taken", SETTLE, || {
        !home.spool().join("four.json").exists()
    });
    std::thread::sleep(Duration::from_millis(500));

    assert_eq!(home.count("SELECT count(*) FROM events"), 4);
    assert_eq!(
        home.count("SELECT count(*) FROM deliveries WHERE event_id = 'dup'"),
        2
    );
    for path in ["/a", "/b"] {
        let got: Vec<String> = receiver.at(path).iter().map(|r| r.event_id()).collect();
        for id in &all {
            assert_eq!(
                got.iter().filter(|g| *g == id).count(),
                1,
                "{id} at {path}: {got:?}"
            );
        }
    }
    assert_eq!(receiver.count(), 8);
    assert_no_rejections(&home);
}

#[test]
fn new_input_is_picked_up_by_notification_long_before_the_rescan() {
    let receiver = Receiver::start(204);
    let home = Home::new();
    // A rescan only every minute: anything sooner came from a notification.
    configure(&home, &receiver, "rescan_interval = \"60s\"");
    let _serve = Serve::start(&home);
    // Let the first scan finish so the spool is asleep waiting.
    std::thread::sleep(Duration::from_millis(500));

    let bound = Duration::from_secs(3);
    let started = Instant::now();
    home.drop_json("fast.json", &spool_event("f-1"));
    wait_for("a dropped .json file to arrive", bound, || {
        receiver.count_of("f-1") == 1
    });

    home.append("events.ndjson", lines(&ids("f", 2, 2)).as_bytes());
    wait_for("a new .ndjson file's line to arrive", bound, || {
        receiver.count_of("f-2") == 1
    });

    std::thread::sleep(Duration::from_millis(200));
    home.append("events.ndjson", lines(&ids("f", 3, 3)).as_bytes());
    wait_for("a line appended to a tailed file to arrive", bound, || {
        receiver.count_of("f-3") == 1
    });
    assert!(
        started.elapsed() < Duration::from_secs(30),
        "everything arrived before any rescan could have run"
    );
}

/// CPU time (user + system, in clock ticks) the process has used, from `/proc`.
fn cpu_ticks(pid: i32) -> Option<u64> {
    let stat = fs::read_to_string(format!("/proc/{pid}/stat")).ok()?;
    // Fields after the command name (which may hold spaces): state is the first, utime
    // the 12th, stime the 13th.
    let fields: Vec<&str> = stat.rsplit_once(')')?.1.split_whitespace().collect();
    Some(fields.get(11)?.parse::<u64>().ok()? + fields.get(12)?.parse::<u64>().ok()?)
}

#[test]
fn an_idle_spool_does_not_wake_itself_in_a_busy_loop() {
    // Regression: the spool's own reads (opening the directory to list it, opening a
    // tailed file) came back as notifications and woke it at once, so an idle posthorn
    // rescanned without pause and kept a CPU busy.
    let receiver = Receiver::start(204);
    let home = Home::new();
    configure(&home, &receiver, "rescan_interval = \"60s\"");
    let serve = Serve::start(&home);
    home.append("events.ndjson", lines(&ids("idle", 1, 1)).as_bytes());
    home.drop_json("idle.json", &spool_event("idle-2"));
    wait_received(&receiver, &ids("idle", 1, 2));
    std::thread::sleep(Duration::from_millis(500));

    let Some(before) = cpu_ticks(serve.pid()) else {
        eprintln!("no /proc here; skipping the CPU check");
        return;
    };
    std::thread::sleep(Duration::from_secs(2));
    let used = cpu_ticks(serve.pid()).unwrap_or(before) - before;
    // Clock ticks are usually 1/100 s: a spinning spool uses well over 100 in 2 s.
    assert!(
        used < 50,
        "an idle posthorn used {used} clock ticks of CPU in 2 s"
    );
}
