//! A hostile or careless producer, through the real binary. The spool is group-writable
//! and not sticky, so a producer can add, rename and replace anything in it: links planted
//! in `rejected/`, `rejected/` and `done/` replaced by links or by its own directories,
//! files written with umask 077, FIFOs and links to `/dev/zero` or to a secret with an
//! input's name, files swapped for those between posthorn's listing and its open, and a
//! line that grows without a newline. posthorn must never read or write through any of
//! them, report each bad file once, and go on taking every other file.

mod common;

use std::fs;
use std::os::unix::fs::{symlink, PermissionsExt as _};
use std::os::unix::process::CommandExt as _;
use std::path::{Path, PathBuf};
use std::process::Command;
use std::time::Duration;

use common::{catch_all, http_get, spool_event, wait_for, Home, Receiver, RejectionRow, Serve};

const SETTLE: Duration = Duration::from_secs(15);
/// Long enough for several rescans (every 200 ms) and notifications to go by.
const PASSES: Duration = Duration::from_millis(1200);
/// The uid posthorn runs as when it must not be root (the tests run as root here and in
/// CI, and root reads anything).
const POSTHORN_UID: u32 = 65534;
/// A uid that is neither posthorn's nor root's: a producer's.
const PRODUCER_UID: u32 = 4242;
/// What posthorn's store holds in these tests' stand-in for it.
const STORE_BYTES: &[u8] = b"SQLite format 3\0 the operator's store, not to be touched";
/// A secret only posthorn may read.
const SECRET: &str = "SECRET-TOKEN-not-for-the-admin-page";

fn configure(home: &Home, receiver: &Receiver, spool: &str) {
    home.write_config_with_spool(spool, &catch_all(&receiver.url));
}

fn wait_received(receiver: &Receiver, ids: &[&str]) {
    wait_for(&format!("the receiver to get {ids:?}"), SETTLE, || {
        ids.iter().all(|id| receiver.count_of(id) >= 1)
    });
}

fn wait_rejections(home: &Home, count: usize) -> Vec<RejectionRow> {
    wait_for(&format!("{count} rejections recorded"), SETTLE, || {
        home.rejections().len() >= count
    });
    // Several more passes: nothing may be recorded again.
    std::thread::sleep(PASSES);
    let rows = home.rejections();
    assert_eq!(
        rows.len(),
        count,
        "expected {count} rejections, each recorded once; got {rows:#?}"
    );
    rows
}

/// A directory as a producer would make it: another uid's (or, when the test cannot
/// give it away, writable by anyone).
fn make_producers_dir(path: &Path) {
    fs::create_dir_all(path).unwrap();
    if common::is_root() {
        std::os::unix::fs::chown(path, Some(PRODUCER_UID), Some(PRODUCER_UID)).unwrap();
    } else {
        fs::set_permissions(path, fs::Permissions::from_mode(0o777)).unwrap();
    }
}

fn names_in(dir: &Path) -> Vec<String> {
    let mut names: Vec<String> = fs::read_dir(dir)
        .map(|entries| {
            entries
                .filter_map(Result::ok)
                .map(|e| e.file_name().to_string_lossy().into_owned())
                .collect()
        })
        .unwrap_or_default();
    names.sort();
    names
}

/// The value of a sample in `/metrics`, written exactly as `series` (name and labels).
fn metric(home: &Home, series: &str) -> Option<f64> {
    let body = http_get(&format!("{}/metrics", home.inlet_url()))
        .expect(200)
        .body;
    body.lines()
        .find_map(|line| line.strip_prefix(series)?.strip_prefix(' ')?.parse().ok())
}

fn set_aside_total(home: &Home, reason: &str) -> Option<f64> {
    metric(
        home,
        &format!("posthorn_spool_files_set_aside_total{{reason=\"{reason}\"}}"),
    )
}

fn set_aside_now(home: &Home) -> Option<f64> {
    metric(home, "posthorn_spool_files_set_aside")
}

fn mkfifo(path: &Path) {
    rustix::fs::mkfifoat(
        rustix::fs::CWD,
        path,
        rustix::fs::Mode::from_raw_mode(0o666),
    )
    .unwrap_or_else(|err| panic!("mkfifo {}: {err}", path.display()));
}

/// A file only its owner may read, outside the spool: the config or the store.
fn secret_file(home: &Home) -> PathBuf {
    let path = home.path().join("secret.toml");
    fs::write(&path, format!("token = \"{SECRET}\"\n")).unwrap();
    fs::set_permissions(&path, fs::Permissions::from_mode(0o600)).unwrap();
    path
}

fn assert_secret_kept(home: &Home, serve: &Serve) {
    for row in home.rejections() {
        assert!(
            !row.reason.contains(SECRET) && !row.snippet.unwrap_or_default().contains(SECRET),
            "the secret reached the rejections: {}",
            row.reason
        );
    }
    assert!(!serve.log().contains(SECRET), "the secret reached the log");
}

#[test]
fn a_link_planted_in_a_rejected_dir_a_producer_put_in_place_of_posthorns_is_not_written_through() {
    let receiver = Receiver::start(204);
    let home = Home::new();
    configure(&home, &receiver, "");
    let store = home.path().join("fake-store.db");
    fs::write(&store, STORE_BYTES).unwrap();
    let _serve = Serve::start(&home);
    let rejected = home.spool().join("rejected");

    // posthorn makes its own rejected/ for a first broken file.
    home.drop_json("first.json", "{not json");
    wait_for("first.json to move to rejected/", SETTLE, || {
        rejected.join("first.json.reason.txt").exists()
    });

    // The producer renames it away and puts its own in its place, with a link to the store
    // where posthorn would write the note of the next rejected file.
    fs::rename(&rejected, home.spool().join("rejected.old")).unwrap();
    make_producers_dir(&rejected);
    symlink(&store, rejected.join("second.json.reason.txt")).unwrap();
    symlink(&store, rejected.join("second.json.1.reason.txt")).unwrap();
    home.drop_json("second.json", "{still not json");
    home.drop_json("third.json", &spool_event("p-1"));

    wait_received(&receiver, &["p-1"]);
    let rows = wait_rejections(&home, 2);
    assert_eq!(
        fs::read(&store).unwrap(),
        STORE_BYTES,
        "posthorn wrote through a link a producer planted"
    );
    assert_eq!(
        names_in(&rejected),
        ["second.json.1.reason.txt", "second.json.reason.txt"],
        "posthorn wrote into a producer's directory"
    );
    assert_eq!(
        fs::read_to_string(home.spool().join("second.json")).unwrap(),
        "{still not json",
        "the rejected file stays where it was"
    );
    assert!(rows[1].source.ends_with("second.json"), "{rows:#?}");
    assert!(
        rows[1].reason.contains("stays in the spool") && rows[1].reason.contains("uid"),
        "the reason says why the file stayed: {}",
        rows[1].reason
    );
    assert_eq!(set_aside_total(&home, "not_moved"), Some(1.0));
    assert_eq!(set_aside_now(&home), Some(1.0));
}

#[test]
fn rejected_and_done_replaced_by_links_are_not_followed_and_files_wait_until_they_are_gone() {
    let receiver = Receiver::start(204);
    let home = Home::new();
    configure(&home, &receiver, "keep_done = true");
    // Directories posthorn may write (its state directory, say), outside the spool.
    let outside_rejected = home.path().join("outside-rejected");
    let outside_done = home.path().join("outside-done");
    fs::create_dir_all(&outside_rejected).unwrap();
    fs::create_dir_all(&outside_done).unwrap();
    fs::create_dir_all(home.spool()).unwrap();
    let (rejected, done) = (home.spool().join("rejected"), home.spool().join("done"));
    symlink(&outside_rejected, &rejected).unwrap();
    symlink(&outside_done, &done).unwrap();
    let _serve = Serve::start(&home);

    home.drop_json("bad.json", "{broken");
    home.drop_json("good.json", &spool_event("l-1"));
    wait_received(&receiver, &["l-1"]);
    let rows = wait_rejections(&home, 1);
    assert!(
        rows[0].reason.contains("stays in the spool") && rows[0].reason.contains("symbolic link"),
        "the reason says why the file stayed: {}",
        rows[0].reason
    );
    assert!(names_in(&outside_rejected).is_empty() && names_in(&outside_done).is_empty());
    assert!(home.spool().join("bad.json").exists() && home.spool().join("good.json").exists());
    assert_eq!(set_aside_total(&home, "not_moved"), Some(2.0));
    assert_eq!(set_aside_now(&home), Some(2.0));

    // The operator removes the links: posthorn makes its own directories and moves both
    // files there, without reading them again.
    fs::remove_file(&rejected).unwrap();
    fs::remove_file(&done).unwrap();
    wait_for(
        "both files to move to posthorn's own directories",
        SETTLE,
        || {
            rejected.join("bad.json.reason.txt").exists()
                && done.join("good.json").exists()
                && !home.spool().join("bad.json").exists()
        },
    );
    assert_eq!(
        fs::read_to_string(rejected.join("bad.json")).unwrap(),
        "{broken"
    );
    for dir in [&rejected, &done] {
        let meta = fs::symlink_metadata(dir).unwrap();
        assert!(meta.is_dir(), "{} is a directory", dir.display());
        assert_eq!(meta.permissions().mode() & 0o022, 0, "{}", dir.display());
    }
    assert!(names_in(&outside_rejected).is_empty() && names_in(&outside_done).is_empty());
    wait_for("nothing set aside any more", SETTLE, || {
        set_aside_now(&home) == Some(0.0)
    });
    assert_eq!(home.rejections().len(), 1, "bad.json was recorded again");
    assert_eq!(receiver.count_of("l-1"), 1, "good.json was read again");
}

#[test]
fn a_file_written_with_umask_077_is_skipped_once_the_others_go_on_and_it_is_taken_once_readable() {
    let receiver = Receiver::start(204);
    let home = Home::new();
    configure(&home, &receiver, "");
    fs::create_dir_all(home.spool()).unwrap();
    let mut command = Command::new(common::binary());
    command
        .args(["serve", "--config"])
        .arg(home.config_path())
        .env("POSTHORN_LOG", "posthorn=debug,info");
    if common::is_root() {
        // posthorn as its own user; the producer (root here) writes files only it can read.
        for dir in [home.path(), &home.spool()] {
            std::os::unix::fs::chown(dir, Some(POSTHORN_UID), Some(POSTHORN_UID)).unwrap();
        }
        command.uid(POSTHORN_UID).gid(POSTHORN_UID);
    }
    let _serve = Serve::start_with(&home, command);
    // Owner-only as a producer's umask 077 makes it; as the same user, nothing at all.
    let locked = if common::is_root() { 0o600 } else { 0o000 };
    let lock = |name: &str| {
        fs::set_permissions(home.spool().join(name), fs::Permissions::from_mode(locked)).unwrap()
    };

    // Named to come first: an unreadable file used to stop the whole pass.
    let temp = home.spool().join(".a-locked.json.tmp");
    fs::write(&temp, spool_event("u-1")).unwrap();
    fs::set_permissions(&temp, fs::Permissions::from_mode(locked)).unwrap();
    fs::rename(&temp, home.spool().join("a-locked.json")).unwrap();
    home.append(
        ".b-locked.ndjson",
        format!("{}\n{}\n", spool_event("u-2"), spool_event("u-3")).as_bytes(),
    );
    lock(".b-locked.ndjson");
    fs::rename(
        home.spool().join(".b-locked.ndjson"),
        home.spool().join("b-locked.ndjson"),
    )
    .unwrap();
    home.drop_json("c-open.json", &spool_event("u-4"));
    home.append(
        "d-open.ndjson",
        format!("{}\n", spool_event("u-5")).as_bytes(),
    );

    wait_received(&receiver, &["u-4", "u-5"]);
    let rows = wait_rejections(&home, 2);
    for (row, name) in rows.iter().zip(["a-locked.json", "b-locked.ndjson"]) {
        assert!(row.source.ends_with(name), "{rows:#?}");
        assert!(
            row.reason.contains("cannot read") && row.reason.contains("ermission denied"),
            "the reason names the problem: {}",
            row.reason
        );
    }
    assert_eq!(set_aside_total(&home, "unreadable"), Some(2.0));
    assert_eq!(set_aside_now(&home), Some(2.0));
    for id in ["u-1", "u-2", "u-3"] {
        assert_eq!(receiver.count_of(id), 0, "{id} was read from a locked file");
    }

    for name in ["a-locked.json", "b-locked.ndjson"] {
        fs::set_permissions(home.spool().join(name), fs::Permissions::from_mode(0o644)).unwrap();
    }
    wait_received(&receiver, &["u-1", "u-2", "u-3"]);
    wait_for("nothing set aside any more", SETTLE, || {
        set_aside_now(&home) == Some(0.0)
    });
    assert!(!home.spool().join("a-locked.json").exists());
    assert_eq!(home.rejections().len(), 2, "recorded again once readable");
    for id in ["u-1", "u-2", "u-3", "u-4", "u-5"] {
        assert_eq!(receiver.count_of(id), 1, "{id} delivered once");
    }
}

#[test]
fn fifos_links_and_directories_with_an_inputs_name_are_reported_once_and_never_read() {
    let receiver = Receiver::start(204);
    let home = Home::new();
    configure(&home, &receiver, "");
    let secret = secret_file(&home);
    let spool = home.spool();
    fs::create_dir_all(&spool).unwrap();
    mkfifo(&spool.join("fifo.json"));
    mkfifo(&spool.join("fifo.ndjson"));
    symlink("/dev/zero", spool.join("zero.json")).unwrap();
    symlink("/dev/zero", spool.join("zero.ndjson")).unwrap();
    symlink(&secret, spool.join("secret.json")).unwrap();
    symlink(&secret, spool.join("secret.ndjson")).unwrap();
    make_producers_dir(&spool.join("dir.json"));
    let serve = Serve::start(&home);

    home.drop_json("z-good.json", &spool_event("h-1"));
    wait_received(&receiver, &["h-1"]);
    let rows = wait_rejections(&home, 7);
    for row in &rows {
        assert!(
            row.reason.contains("not a regular file"),
            "{}: {}",
            row.source,
            row.reason
        );
    }
    assert_secret_kept(&home, &serve);
    assert_eq!(set_aside_total(&home, "not_regular"), Some(7.0));

    // Still taking input, and what the producer planted is left as it was.
    home.append(
        "later.ndjson",
        format!("{}\n", spool_event("h-2")).as_bytes(),
    );
    wait_received(&receiver, &["h-2"]);
    assert_eq!(home.rejections().len(), 7);
    assert_eq!(
        names_in(&spool),
        [
            "dir.json",
            "fifo.json",
            "fifo.ndjson",
            "later.ndjson",
            "secret.json",
            "secret.ndjson",
            "zero.json",
            "zero.ndjson"
        ]
    );
}

#[test]
fn a_file_swapped_for_a_fifo_or_a_link_to_a_secret_after_the_listing_is_never_read() {
    // Whatever posthorn listed, what it opens must be the regular file it listed, opened
    // without blocking and without following links. Regression: a file swapped for a FIFO
    // between the listing and the open hung the spool thread for good, and one swapped for
    // a link to a secret put the secret's first bytes into the rejections. A long file that
    // sorts first, put in place together with the one to swap, keeps posthorn busy between
    // its listing and its open of the swapped one.
    let receiver = Receiver::start(204);
    let home = Home::new();
    // Only c-1 is subscribed: the long files' events are stored, not delivered.
    home.write_config_with_spool("", &common::hook("c1", &format!("{}/hook", receiver.url)));
    let secret = secret_file(&home);
    let serve = Serve::start(&home);
    let spool = home.spool();
    fs::create_dir_all(&spool).unwrap();
    let bulk = 5000;
    for round in 0..6 {
        let long: String = (0..bulk)
            .map(|i| {
                format!(
                    "{}\n",
                    common::event_in(&format!("bulk-{round}-{i}"), "c-bulk")
                )
            })
            .collect();
        let (long_temp, long_name) = (
            spool.join(".long.tmp"),
            spool.join(format!("a-{round}.ndjson")),
        );
        fs::write(&long_temp, long).unwrap();
        let (swap_temp, swapped) = (
            spool.join(".swap.tmp"),
            spool.join(format!("z-{round}.json")),
        );
        fs::write(&swap_temp, format!("{{\"id\": \"sw-{round}\", broken")).unwrap();
        fs::rename(&swap_temp, &swapped).unwrap();
        fs::rename(&long_temp, &long_name).unwrap();
        std::thread::sleep(Duration::from_millis(10));
        if round % 2 == 0 {
            mkfifo(&swap_temp);
        } else {
            symlink(&secret, &swap_temp).unwrap();
        }
        fs::rename(&swap_temp, &swapped).unwrap();
        wait_for(
            &format!("round {round}'s long file to be read"),
            SETTLE,
            || {
                home.count(&format!(
                    "SELECT count(*) FROM events WHERE id LIKE 'bulk-{round}-%'"
                )) == bulk
            },
        );
    }
    home.drop_json("final.json", &spool_event("sw-final"));
    wait_received(&receiver, &["sw-final"]);
    assert_secret_kept(&home, &serve);
}

/// Bytes the process's thread named `name` has asked to read, from `/proc`.
fn thread_rchar(pid: i32, name: &str) -> Option<u64> {
    for task in fs::read_dir(format!("/proc/{pid}/task")).ok()? {
        let task = task.ok()?.path();
        if fs::read_to_string(task.join("comm")).ok()?.trim() == name {
            let io = fs::read_to_string(task.join("io")).ok()?;
            return io
                .lines()
                .find_map(|line| line.strip_prefix("rchar: "))?
                .parse()
                .ok();
        }
    }
    None
}

#[test]
fn a_line_growing_without_a_newline_is_searched_once_not_from_its_start_at_every_append() {
    // Regression: a line over max_event_bytes was searched for its newline from its start
    // at every pass, so each append to a 200 MiB line cost 200 MiB of reading.
    let receiver = Receiver::start(204);
    let home = Home::new();
    configure(&home, &receiver, "max_event_bytes = \"1KiB\"");
    let serve = Serve::start(&home);
    home.append(
        "events.ndjson",
        format!("{}\n", spool_event("g-1")).as_bytes(),
    );
    wait_received(&receiver, &["g-1"]);
    let Some(before) = thread_rchar(serve.pid(), "spool") else {
        eprintln!("no per-thread I/O counts in /proc here; skipping");
        return;
    };
    let read = || thread_rchar(serve.pid(), "spool").unwrap_or(0);

    let piece = vec![b'x'; 256 << 10];
    let pieces = 32;
    home.append("events.ndjson", br#"{"id":"long","type":"t","data":""#);
    for _ in 0..pieces {
        let at = read();
        home.append("events.ndjson", &piece);
        // Each append is seen by a pass before the next one comes.
        wait_for("the spool to read the appended piece", SETTLE, || {
            read() >= at + piece.len() as u64
        });
    }
    let line = (pieces * piece.len()) as u64;
    home.append(
        "events.ndjson",
        format!("\"}}\n{}\n", spool_event("g-2")).as_bytes(),
    );
    wait_received(&receiver, &["g-2"]);

    let spent = read() - before;
    assert!(
        spent < 3 * line,
        "the spool read {spent} bytes for a line of {line}: it searched the line from its start again"
    );
    let rows = wait_rejections(&home, 1);
    assert_eq!(rows[0].line, Some(2));
    assert!(
        rows[0].reason.contains("over the limit of 1024 bytes"),
        "{}",
        rows[0].reason
    );
    assert!(rows[0]
        .snippet
        .as_deref()
        .unwrap_or_default()
        .starts_with(r#"{"id":"long""#));
    assert_eq!(receiver.count_of("g-1"), 1);
    assert_eq!(receiver.count_of("g-2"), 1);
}
