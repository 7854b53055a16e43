//! Store faults against the real binary: a disk that fills up (a small tmpfs, as root),
//! a store with corrupt pages, the modes of the files posthorn creates, and a config file
//! holding secrets that others can read. Nothing acknowledged may be lost.

mod common;

use std::fs;
use std::os::unix::fs::PermissionsExt as _;
use std::path::{Path, PathBuf};
use std::process::Command;
use std::time::Duration;

use common::{catch_all, http_get, http_post, wait_for, Home, Receiver, Serve};

const TOKEN: &str = "inlet-token-0123456789";

/// A tmpfs of `size` mounted on a fresh directory; unmounted when dropped.
struct Tmpfs {
    dir: tempfile::TempDir,
}

impl Tmpfs {
    fn mount(size: &str) -> Tmpfs {
        let dir = tempfile::tempdir().unwrap();
        let status = Command::new("mount")
            .args(["-t", "tmpfs", "-o", &format!("size={size}"), "tmpfs"])
            .arg(dir.path())
            .status()
            .unwrap();
        assert!(status.success(), "mount a tmpfs");
        Tmpfs { dir }
    }

    fn path(&self) -> &Path {
        self.dir.path()
    }
}

impl Drop for Tmpfs {
    fn drop(&mut self) {
        let _ = Command::new("umount").arg(self.dir.path()).status();
    }
}

/// Writes zeros to `path` until the filesystem is full (bounded by `max` bytes).
fn fill(path: &Path, max: usize) {
    use std::io::Write as _;
    let mut file = fs::File::create(path).unwrap();
    let chunk = vec![0u8; 16 << 10];
    let mut written = 0;
    while written < max {
        match file.write(&chunk) {
            Ok(0) | Err(_) => break,
            Ok(n) => written += n,
        }
    }
    let _ = file.sync_all();
}

fn event(id: &str, filler: usize) -> String {
    format!(
        r#"{{"id":"{id}","type":"conversation.started","conversation_id":"c-1","data":{{"pad":"{}"}}}}"#,
        "x".repeat(filler)
    )
}

fn post(home: &Home, body: &str) -> common::Response {
    http_post(
        &format!("{}/v1/events", home.inlet_url()),
        &[
            ("Content-Type", "application/json"),
            ("Authorization", &format!("Bearer {TOKEN}")),
        ],
        body.as_bytes(),
        false,
    )
}

/// A config whose store lives at `db`, with the inlet on and a catch-all subscription.
fn write_config(home: &Home, db: &Path, receiver: &Receiver) {
    home.write_config(&format!(
        "[inlet]\ntoken = {TOKEN:?}\n{}",
        catch_all(&receiver.url)
    ));
    let text = fs::read_to_string(home.config_path()).unwrap();
    let text = text.replacen(
        &format!("path = {:?}", home.db().display().to_string()),
        &format!("path = {:?}", db.display().to_string()),
        1,
    );
    fs::write(home.config_path(), text).unwrap();
}

#[test]
fn a_full_disk_answers_503_fails_healthz_and_recovers_with_nothing_acknowledged_lost() {
    if common::sqlite_only(
        "a disk that fills up under the store (a tmpfs holding the database file)",
    ) {
        return;
    }
    if !common::is_root() {
        eprintln!("skipped: mounting a tmpfs needs root");
        return;
    }
    let tmpfs = Tmpfs::mount("8m");
    let receiver = Receiver::start(204);
    let home = Home::new();
    let db = tmpfs.path().join("posthorn.db");
    write_config(&home, &db, &receiver);
    let serve = Serve::start(&home);
    post(&home, &event("before", 10)).expect(202);
    http_get(&format!("{}/healthz", home.inlet_url())).expect(200);

    let filler = tmpfs.path().join("filler");
    fill(&filler, 16 << 20);
    let mut acknowledged = vec!["before".to_string()];
    let mut refused = Vec::new();
    for n in 0..60 {
        let id = format!("full-{n}");
        let response = post(&home, &event(&id, 60_000));
        match response.status {
            202 => acknowledged.push(id),
            503 => {
                assert_eq!(
                    response.header("Retry-After"),
                    Some("30"),
                    "a refusal says when to come back: {response:?}"
                );
                refused.push(id);
                break;
            }
            _ => panic!("a full disk must answer 202 or 503, got {response:?}"),
        }
    }
    assert!(
        !refused.is_empty(),
        "the disk never filled up; acknowledged {acknowledged:?}"
    );
    let health = http_get(&format!("{}/healthz", home.inlet_url())).expect(503);
    let json = health.json();
    let reason = json["checks"]["store"]["reason"]
        .as_str()
        .unwrap_or_default();
    assert!(
        reason.contains("commits of ingest fail"),
        "healthz names the failing commits: {json}"
    );

    fs::remove_file(&filler).unwrap();
    for id in &refused {
        post(&home, &event(id, 60_000)).expect(202);
        acknowledged.push(id.clone());
    }
    wait_for("healthz to recover", Duration::from_secs(10), || {
        http_get(&format!("{}/healthz", home.inlet_url())).status == 200
    });
    for id in &acknowledged {
        wait_for(
            &format!("{id} to be delivered"),
            Duration::from_secs(20),
            || receiver.count_of(id) >= 1,
        );
    }
    assert!(
        serve.log().contains("store commits succeed again"),
        "recovery is logged"
    );
    assert_eq!(serve.terminate(), Some(0));
}

#[test]
fn a_store_with_corrupt_pages_is_reported_in_the_log_and_healthz() {
    if common::sqlite_only("a database file with corrupt pages (SQLite's integrity check)") {
        return;
    }
    let receiver = Receiver::start(204);
    let home = Home::new();
    write_config(&home, &home.db(), &receiver);
    let serve = Serve::start(&home);
    post(&home, &event("stored", 10)).expect(202);
    receiver.wait_for_count(1, Duration::from_secs(10));
    wait_for("the integrity check", Duration::from_secs(20), || {
        serve.log().contains("store integrity check: ok")
    });
    assert_eq!(serve.terminate(), Some(0));

    // Damage the root page of a table posthorn does not touch at start.
    let (root, page_size) = {
        let conn = rusqlite::Connection::open(home.db()).unwrap();
        conn.query_row("PRAGMA wal_checkpoint(TRUNCATE)", [], |_| Ok(()))
            .unwrap();
        let root: u64 = conn
            .query_row(
                "SELECT rootpage FROM sqlite_schema WHERE name = 'rejections'",
                [],
                |r| r.get(0),
            )
            .unwrap();
        let size: u64 = conn
            .query_row("PRAGMA page_size", [], |r| r.get(0))
            .unwrap();
        (root, size)
    };
    let mut bytes = fs::read(home.db()).unwrap();
    let at = ((root - 1) * page_size) as usize;
    bytes[at..at + 16].copy_from_slice(&[0x55; 16]);
    fs::write(home.db(), bytes).unwrap();

    let serve = Serve::start(&home);
    wait_for(
        "the log to say the store is corrupt",
        Duration::from_secs(20),
        || {
            serve
                .log()
                .contains("is corrupt (integrity check at start:")
        },
    );
    let health = http_get(&format!("{}/healthz", home.inlet_url())).expect(503);
    let json = health.json();
    let reason = json["checks"]["store"]["reason"]
        .as_str()
        .unwrap_or_default();
    assert!(reason.contains("is corrupt"), "{json}");
    assert!(
        reason.contains(".recover"),
        "healthz says the way out: {json}"
    );
}

fn mode(path: &Path) -> u32 {
    fs::metadata(path)
        .unwrap_or_else(|e| panic!("{}: {e}", path.display()))
        .permissions()
        .mode()
        & 0o777
}

fn with_suffix(path: &Path, suffix: &str) -> PathBuf {
    let mut name = path.as_os_str().to_owned();
    name.push(suffix);
    PathBuf::from(name)
}

#[test]
fn the_store_and_its_wal_are_created_0600_whatever_the_umask() {
    if common::sqlite_only("the database file and its WAL") {
        return;
    }
    let receiver = Receiver::start(204);
    let home = Home::new();
    write_config(&home, &home.db(), &receiver);
    let mut command = Command::new("sh");
    command
        .arg("-c")
        .arg("umask 000; exec \"$0\" serve --config \"$1\"")
        .arg(common::binary())
        .arg(home.config_path())
        .env("POSTHORN_LOG", "posthorn=debug,info");
    let serve = Serve::start_with(&home, command);
    post(&home, &event("private", 10)).expect(202);
    for file in [
        home.db(),
        with_suffix(&home.db(), "-wal"),
        with_suffix(&home.db(), "-shm"),
    ] {
        assert_eq!(mode(&file), 0o600, "{} is private", file.display());
    }
    assert_eq!(serve.terminate(), Some(0));
}

#[test]
fn a_config_holding_secrets_that_others_can_read_is_warned_about() {
    let receiver = Receiver::start(204);
    let home = Home::new();
    home.write_config(&catch_all(&receiver.url));
    fs::set_permissions(home.config_path(), fs::Permissions::from_mode(0o644)).unwrap();
    let serve = Serve::start(&home);
    // On PostgreSQL the harness's storage URL holds a password too.
    let secrets = if common::on_postgres() {
        "storage.url, subscription.secret"
    } else {
        "subscription.secret"
    };
    assert!(
        serve.log().contains(&format!(
            "holds secrets ({secrets}) and every user can read it"
        )),
        "{}",
        serve.log()
    );
    assert_eq!(serve.terminate(), Some(0));

    fs::set_permissions(home.config_path(), fs::Permissions::from_mode(0o600)).unwrap();
    let serve = Serve::start(&home);
    assert!(!serve.log().contains("holds secrets"), "{}", serve.log());
    assert_eq!(serve.terminate(), Some(0));
}
