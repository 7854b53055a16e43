//! Shared fixtures for the integration tests: a recording receiver on 127.0.0.1 that
//! checks signatures with its own HMAC code (not posthorn's), the real `posthorn` binary
//! run against a temporary data dir, and bounded waiting.
#![allow(dead_code)] // each test file uses a different part of this

pub mod admin;
pub mod cli;
mod http;
pub mod pg;
mod request;
mod store;
mod store_size;

#[allow(unused_imports)] // each test file uses a different part
pub use request::{http_get, http_post, http_request_with, Response};
#[allow(unused_imports)] // not every test file reads rows itself
pub use store::{FromVal, Param, Row, Val};
#[allow(unused_imports)] // only the store-size tests use it
pub use store_size::MIN_MAX_SIZE;

use std::collections::VecDeque;
use std::fs;
use std::io::Write as _;
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use base64::engine::general_purpose::STANDARD as BASE64;
use base64::Engine as _;
use hmac::{Hmac, Mac};
use sha2::Sha256;

/// A fixed Standard Webhooks secret for tests.
pub const SECRET: &str = "whsec_MfKQ9r8GKYqrTwjUPD8ILPZIo2LaLaSw";

/// Whether the tests run as root (root reads and mounts anything; some tests need it, or
/// must drop it for posthorn).
pub fn is_root() -> bool {
    rustix::process::geteuid().is_root()
}

/// Runs a Python 3 script with arguments and returns its stdout.
pub fn python(script: &str, args: &[&str]) -> String {
    let output = std::process::Command::new("python3")
        .arg("-c")
        .arg(script)
        .args(args)
        .output()
        .expect("python3 runs");
    assert!(
        output.status.success(),
        "python3 failed: {}",
        String::from_utf8_lossy(&output.stderr)
    );
    String::from_utf8(output.stdout).expect("python3 prints UTF-8")
}

/// A port that was free a moment ago on 127.0.0.1 (bound to port 0, then released).
pub fn free_port() -> u16 {
    std::net::TcpListener::bind("127.0.0.1:0")
        .and_then(|l| l.local_addr())
        .map(|a| a.port())
        .expect("a free port on 127.0.0.1")
}

/// Polls `check` every 20 ms until it holds or `limit` passes; panics with `what` then.
pub fn wait_for(what: &str, limit: Duration, mut check: impl FnMut() -> bool) {
    let deadline = Instant::now() + limit;
    while Instant::now() < deadline {
        if check() {
            return;
        }
        std::thread::sleep(Duration::from_millis(20));
    }
    panic!("timed out after {limit:?} waiting for {what}");
}

/// One request as the receiver saw it.
#[derive(Debug, Clone)]
pub struct Recorded {
    pub path: String,
    pub headers: Vec<(String, String)>,
    pub body: String,
    pub at: Instant,
}

/// Lower-case hex of HMAC-SHA256(key, body): the hex recipe, written independently of
/// posthorn's signer.
pub fn hex_hmac(key: &[u8], body: &[u8]) -> String {
    let mut mac = Hmac::<Sha256>::new_from_slice(key).expect("HMAC takes any key length");
    mac.update(body);
    mac.finalize()
        .into_bytes()
        .iter()
        .map(|b| format!("{b:02x}"))
        .collect()
}

/// The value of header `name` (any case) in `headers`.
fn find_header<'a>(headers: &'a [(String, String)], name: &str) -> Option<&'a str> {
    headers
        .iter()
        .find(|(n, _)| n.eq_ignore_ascii_case(name))
        .map(|(_, v)| v.as_str())
}

impl Recorded {
    pub fn header(&self, name: &str) -> Option<&str> {
        find_header(&self.headers, name)
    }

    pub fn json(&self) -> serde_json::Value {
        serde_json::from_str(&self.body).unwrap_or_else(|err| {
            panic!(
                "receiver got a body that is not JSON ({err}): {}",
                self.body
            )
        })
    }

    pub fn event_id(&self) -> String {
        self.json()["id"].as_str().unwrap_or_default().to_string()
    }

    /// Checks the Standard Webhooks signature against `secret`, the way a receiver would.
    pub fn verify_standard(&self, secret: &str) -> Result<(), String> {
        let id = self.header("webhook-id").ok_or("no webhook-id header")?;
        let timestamp = self
            .header("webhook-timestamp")
            .ok_or("no webhook-timestamp header")?;
        let signatures = self
            .header("webhook-signature")
            .ok_or("no webhook-signature header")?;
        let key = BASE64
            .decode(
                secret
                    .strip_prefix("whsec_")
                    .ok_or("secret without whsec_")?,
            )
            .map_err(|e| e.to_string())?;
        let mut mac = Hmac::<Sha256>::new_from_slice(&key).map_err(|e| e.to_string())?;
        mac.update(format!("{id}.{timestamp}.{}", self.body).as_bytes());
        let expected = format!("v1,{}", BASE64.encode(mac.finalize().into_bytes()));
        if signatures.split(' ').any(|s| s == expected) {
            Ok(())
        } else {
            Err(format!(
                "webhook-signature {signatures:?} does not contain {expected:?}"
            ))
        }
    }

    /// Checks a hex HMAC of the raw body in `header`, after `prefix`.
    pub fn verify_hex(&self, secret: &str, header: &str, prefix: &str) -> Result<(), String> {
        let got = self
            .header(header)
            .ok_or_else(|| format!("no {header} header"))?;
        let expected = format!(
            "{prefix}{}",
            hex_hmac(secret.as_bytes(), self.body.as_bytes())
        );
        if got == expected {
            Ok(())
        } else {
            Err(format!("{header} is {got:?}, expected {expected:?}"))
        }
    }
}

/// What the receiver answers: a fixed status, or a script of statuses (with optional
/// `Retry-After`) used in order, then a fallback.
#[derive(Clone)]
pub struct Answer {
    pub status: u16,
    pub retry_after: Option<String>,
    pub delay: Duration,
}

impl Answer {
    pub fn status(status: u16) -> Self {
        Answer {
            status,
            retry_after: None,
            delay: Duration::ZERO,
        }
    }

    fn reply(&self) -> Reply {
        let reply = Reply::status(self.status).delay(self.delay);
        match &self.retry_after {
            Some(value) => reply.header("Retry-After", value),
            None => reply,
        }
    }
}

struct Script {
    queued: VecDeque<Answer>,
    fallback: Answer,
}

/// A recording HTTP receiver on 127.0.0.1 with a port of its own, answering from a
/// script. Dropping it stops it.
pub struct Receiver {
    pub url: String,
    inner: ProgrammableReceiver,
    script: Arc<Mutex<Script>>,
}

impl Receiver {
    /// A receiver that answers every request with `status`.
    pub fn start(status: u16) -> Receiver {
        Receiver::with_script(Vec::new(), Answer::status(status))
    }

    /// A receiver that answers 503 with `Retry-After: 3600` forever: what it gets stays
    /// pending, waiting an hour for its next attempt.
    pub fn holding_off() -> Receiver {
        Receiver::with_script(
            Vec::new(),
            Answer {
                status: 503,
                retry_after: Some("3600".into()),
                delay: Duration::ZERO,
            },
        )
    }

    /// A receiver that answers with `queued` in order, then `fallback` forever.
    pub fn with_script(queued: Vec<Answer>, fallback: Answer) -> Receiver {
        let script = Arc::new(Mutex::new(Script {
            queued: queued.into(),
            fallback,
        }));
        let answers = Arc::clone(&script);
        let inner = ProgrammableReceiver::start(move |_, _| {
            let mut script = answers.lock().unwrap();
            script
                .queued
                .pop_front()
                .unwrap_or_else(|| script.fallback.clone())
                .reply()
        });
        Receiver {
            url: inner.url.clone(),
            inner,
            script,
        }
    }

    /// Changes what the receiver answers from now on.
    pub fn set_fallback(&self, answer: Answer) {
        self.script.lock().unwrap().fallback = answer;
    }

    pub fn requests(&self) -> Vec<Recorded> {
        self.inner.requests()
    }

    pub fn count(&self) -> usize {
        self.inner.count()
    }

    /// Requests whose path is `path` (each subscription in a test gets its own path).
    pub fn at(&self, path: &str) -> Vec<Recorded> {
        self.inner.at(path)
    }

    pub fn wait_for_count(&self, count: usize, limit: Duration) {
        self.inner.wait_for_count(count, limit);
    }
}

/// Whether this run puts the stores on PostgreSQL: `POSTHORN_TEST_BACKEND=postgres`
/// runs the integration suite against a fresh database on the test cluster per [`Home`]
/// (see `pg.rs`); otherwise every store is a SQLite file.
pub fn on_postgres() -> bool {
    std::env::var("POSTHORN_TEST_BACKEND").is_ok_and(|b| b == "postgres")
}

/// For a test of something only the SQLite store has (its file, WAL, lock, size
/// budget): true, with a note, when this run is on PostgreSQL and the test should end.
pub fn sqlite_only(what: &str) -> bool {
    if on_postgres() {
        eprintln!("not run on PostgreSQL: {what} is SQLite's");
    }
    on_postgres()
}

/// A temporary home for one posthorn: config, store and spool.
pub struct Home {
    pub dir: tempfile::TempDir,
    /// The HTTP inlet's port, picked free at creation and kept across config rewrites.
    pub port: u16,
    /// The store's database when the run is on PostgreSQL.
    pub pg: Option<pg::FreshDatabase>,
}

impl Home {
    pub fn new() -> Home {
        Home {
            dir: tempfile::tempdir().expect("a temp dir"),
            port: free_port(),
            pg: on_postgres().then(pg::fresh_database),
        }
    }

    /// The `[storage]` lines that put this home's store where the run wants it.
    pub fn storage_config(&self) -> String {
        match &self.pg {
            Some(db) => format!("[storage]\nbackend = \"postgres\"\nurl = {:?}\n", db.url()),
            None => format!("[storage]\npath = {:?}\n", self.db().display().to_string()),
        }
    }

    pub fn path(&self) -> &Path {
        self.dir.path()
    }

    /// The inlet's base URL, e.g. `http://127.0.0.1:41234`.
    pub fn inlet_url(&self) -> String {
        format!("http://127.0.0.1:{}", self.port)
    }

    pub fn spool(&self) -> PathBuf {
        self.path().join("spool")
    }

    pub fn db(&self) -> PathBuf {
        self.path().join("posthorn.db")
    }

    pub fn config_path(&self) -> PathBuf {
        self.path().join("config.toml")
    }

    /// Writes `config.toml`: storage and spool inside this home, a fast test schedule
    /// unless `body` sets `[delivery]`, then `body`.
    pub fn write_config(&self, body: &str) -> PathBuf {
        self.write_config_with_spool("", body)
    }

    /// Drops a `.json` file into the spool the way a producer must: write, then rename.
    pub fn drop_json(&self, name: &str, content: &str) {
        fs::create_dir_all(self.spool()).unwrap();
        let temp = self.spool().join(format!(".{name}.tmp"));
        fs::write(&temp, content).unwrap();
        fs::rename(&temp, self.spool().join(name)).unwrap();
    }

    /// Appends raw bytes to a spool file (for `.ndjson` tailing).
    pub fn append(&self, name: &str, bytes: &[u8]) {
        fs::create_dir_all(self.spool()).unwrap();
        let mut file = fs::OpenOptions::new()
            .create(true)
            .append(true)
            .open(self.spool().join(name))
            .unwrap();
        file.write_all(bytes).unwrap();
        file.sync_data().unwrap();
    }

    /// Reads the first column of every row `sql` answers, on either backend (see
    /// [`Home::rows`] for more columns and parameters).
    pub fn query<T: FromVal>(&self, sql: &str) -> Vec<T> {
        self.rows(sql, &[]).iter().map(|row| row.get(0)).collect()
    }

    pub fn count(&self, sql: &str) -> i64 {
        self.query::<i64>(sql).first().copied().unwrap_or(0)
    }
}

/// The largest number of `starts` (unix ms) in any window of `window_ms`: what a rate
/// limit bounds.
pub fn busiest_window(starts: &[i64], window_ms: i64) -> usize {
    starts
        .iter()
        .map(|&from| {
            starts
                .iter()
                .filter(|&&at| at >= from && at < from + window_ms)
                .count()
        })
        .max()
        .unwrap_or(0)
}

/// A `[[subscription]]` block with a Standard Webhooks secret, posting to `url`.
pub fn subscription(name: &str, url: &str, scope: &str, events: &str) -> String {
    format!(
        "\n[[subscription]]\nname = {name:?}\nurl = {url:?}\n{scope}\nevents = {events}\nsecret = {SECRET:?}\n"
    )
}

/// A subscription named `all` taking every event of every conversation, at `<url>/hook`.
pub fn catch_all(url: &str) -> String {
    subscription(
        "all",
        &format!("{url}/hook"),
        "conversations = [\"*\"]",
        "[\"*\"]",
    )
}

/// A subscription to every `conversation.*` event of conversation `c-1` (what
/// `spool_event` makes), at `url`.
pub fn hook(name: &str, url: &str) -> String {
    subscription(
        name,
        url,
        "conversations = [\"c-1\"]",
        r#"["conversation.*"]"#,
    )
}

/// The path to the real binary under test.
pub fn binary() -> &'static str {
    env!("CARGO_BIN_EXE_posthorn")
}

/// Runs `posthorn ARGS` to completion and returns (exit code, stdout, stderr).
pub fn run(args: &[&str]) -> (i32, String, String) {
    let output = Command::new(binary())
        .args(args)
        .env_remove("POSTHORN_CONFIG")
        .output()
        .expect("run posthorn");
    (
        output.status.code().unwrap_or(-1),
        String::from_utf8_lossy(&output.stdout).into_owned(),
        String::from_utf8_lossy(&output.stderr).into_owned(),
    )
}

/// `posthorn serve` running in the background. Dropping it kills it.
pub struct Serve {
    child: Child,
    log: PathBuf,
}

impl Serve {
    /// Starts `posthorn serve --config <home>/config.toml` and waits until it runs.
    pub fn start(home: &Home) -> Serve {
        let mut command = Command::new(binary());
        command
            .args(["serve", "--config"])
            .arg(home.config_path())
            .env("POSTHORN_LOG", "posthorn=debug,info");
        Serve::start_with(home, command)
    }

    pub fn log(&self) -> String {
        fs::read_to_string(&self.log).unwrap_or_default()
    }

    pub fn pid(&self) -> i32 {
        self.child.id() as i32
    }

    /// SIGKILL: the crash a power cut or OOM killer would cause.
    pub fn kill(mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }

    /// SIGTERM, then the exit code once it exits (bounded).
    pub fn terminate(self) -> Option<i32> {
        self.stop_with(&["TERM"])
    }

    /// Sends each signal in `names` back to back, then the exit code once it exits
    /// (bounded).
    pub fn stop_with(mut self, names: &[&str]) -> Option<i32> {
        for name in names {
            signal(self.pid(), name);
        }
        let deadline = Instant::now() + Duration::from_secs(30);
        while Instant::now() < deadline {
            if let Ok(Some(status)) = self.child.try_wait() {
                return status.code();
            }
            std::thread::sleep(Duration::from_millis(20));
        }
        None
    }
}

impl Drop for Serve {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
        if std::thread::panicking() {
            // A failed test's 500s and store errors are only in posthorn's log.
            let log = self.log();
            let problems: Vec<&str> = log
                .lines()
                .filter(|l| l.contains("WARN") || l.contains("ERROR"))
                .collect();
            let shown = &problems[problems.len().saturating_sub(40)..];
            eprintln!(
                "posthorn serve's last warnings and errors:\n{}",
                shown.join("\n")
            );
        }
    }
}

/// Sends a signal by name with the system's `kill`, so tests need no libc bindings.
pub fn signal(pid: i32, name: &str) {
    let _ = Command::new("kill")
        .arg(format!("-{name}"))
        .arg(pid.to_string())
        .status();
}

fn unique() -> u128 {
    std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map(|d| d.as_nanos())
        .unwrap_or(0)
}

/// What a [`ProgrammableReceiver`] answers to one request.
#[derive(Debug, Clone)]
pub struct Reply {
    pub status: u16,
    pub headers: Vec<(String, String)>,
    pub body: String,
    pub delay: Duration,
}

impl Reply {
    pub fn status(status: u16) -> Reply {
        Reply {
            status,
            headers: Vec::new(),
            body: "ok".to_string(),
            delay: Duration::ZERO,
        }
    }

    pub fn header(mut self, name: &str, value: &str) -> Reply {
        self.headers.push((name.to_string(), value.to_string()));
        self
    }

    pub fn body(mut self, body: impl Into<String>) -> Reply {
        self.body = body.into();
        self
    }

    pub fn delay(mut self, delay: Duration) -> Reply {
        self.delay = delay;
        self
    }
}

/// A recording receiver on 127.0.0.1 whose answer to each request comes from a function
/// of the request's number (from 0) and the request itself, for answers [`Receiver`]
/// cannot give (a `Location` header, a large body). It records each request as it
/// arrives, before any delay, and counts how many requests it is answering at once.
/// Dropping it stops it.
pub struct ProgrammableReceiver {
    pub url: String,
    requests: Arc<Mutex<Vec<Recorded>>>,
    active: Arc<AtomicUsize>,
    peak: Arc<AtomicUsize>,
    server: http::Server,
}

impl ProgrammableReceiver {
    /// Starts on a free port.
    pub fn start(
        answer: impl Fn(usize, &Recorded) -> Reply + Send + Sync + 'static,
    ) -> ProgrammableReceiver {
        ProgrammableReceiver::start_at("127.0.0.1:0", answer)
            .unwrap_or_else(|err| panic!("could not bind a receiver on 127.0.0.1:0: {err}"))
    }

    /// Starts on `addr` (e.g. a port a test chose earlier), or says why it cannot.
    pub fn start_at(
        addr: &str,
        answer: impl Fn(usize, &Recorded) -> Reply + Send + Sync + 'static,
    ) -> Result<ProgrammableReceiver, String> {
        let requests = Arc::new(Mutex::new(Vec::new()));
        let active = Arc::new(AtomicUsize::new(0));
        let peak = Arc::new(AtomicUsize::new(0));
        let handler: Arc<http::Handler> = {
            let (requests, active, peak) = (
                Arc::clone(&requests),
                Arc::clone(&active),
                Arc::clone(&peak),
            );
            Arc::new(move |recorded: Recorded| {
                let now = active.fetch_add(1, Ordering::SeqCst) + 1;
                peak.fetch_max(now, Ordering::SeqCst);
                let number = {
                    let mut requests = requests.lock().unwrap();
                    requests.push(recorded.clone());
                    requests.len() - 1
                };
                let reply = answer(number, &recorded);
                std::thread::sleep(reply.delay);
                active.fetch_sub(1, Ordering::SeqCst);
                reply
            })
        };
        let server = http::Server::bind(addr, handler).map_err(|e| e.to_string())?;
        Ok(ProgrammableReceiver {
            url: format!("http://127.0.0.1:{}", server.port),
            requests,
            active,
            peak,
            server,
        })
    }

    pub fn requests(&self) -> Vec<Recorded> {
        self.requests.lock().unwrap().clone()
    }

    pub fn count(&self) -> usize {
        self.requests.lock().unwrap().len()
    }

    /// Requests whose path is `path`.
    pub fn at(&self, path: &str) -> Vec<Recorded> {
        self.requests()
            .into_iter()
            .filter(|r| r.path == path)
            .collect()
    }

    pub fn wait_for_count(&self, count: usize, limit: Duration) {
        wait_for(&format!("{count} requests at the receiver"), limit, || {
            self.count() >= count
        });
    }

    /// How many requests it is answering right now.
    pub fn active(&self) -> usize {
        self.active.load(Ordering::SeqCst)
    }

    /// The most requests it has answered at once.
    pub fn peak_concurrency(&self) -> usize {
        self.peak.load(Ordering::SeqCst)
    }

    /// How many TCP connections clients have opened to it.
    pub fn connections(&self) -> usize {
        self.server.accepted.load(Ordering::SeqCst)
    }
}

impl Serve {
    /// Starts `command`, a `posthorn serve` the caller set up (its own arguments and
    /// environment), with its log in `home`, and waits until it runs.
    pub fn start_with(home: &Home, mut command: Command) -> Serve {
        let log = home.path().join(format!("serve-{}.log", unique()));
        let child = command
            .stdin(Stdio::null())
            .stdout(Stdio::null())
            .stderr(fs::File::create(&log).expect("log file"))
            .spawn()
            .expect("spawn posthorn serve");
        let mut serve = Serve { child, log };
        wait_for(
            "posthorn to report it is running",
            Duration::from_secs(20),
            || {
                if let Ok(Some(status)) = serve.child.try_wait() {
                    panic!(
                        "posthorn serve exited ({status}) instead of running:\n{}",
                        serve.log()
                    );
                }
                serve.log().contains("posthorn is running")
            },
        );
        serve
    }
}

/// A `conversation.started` event for conversation `c-1` as one JSON line (no newline),
/// carrying its id in `data` too so a delivered body can be checked against it.
/// An event of `conversation`, with `id` also in its data.
pub fn event_in(id: &str, conversation: &str) -> String {
    format!(
        r#"{{"id":"{id}","type":"conversation.started","conversation_id":"{conversation}","data":{{"n":"{id}"}}}}"#
    )
}

pub fn spool_event(id: &str) -> String {
    format!(
        r#"{{"id":"{id}","type":"conversation.started","conversation_id":"c-1","occurred_at":"2026-11-22T10:00:00Z","data":{{"n":"{id}"}}}}"#
    )
}

/// Every receiver in these tests is on 127.0.0.1, which posthorn reaches only when
/// `allow_networks` holds it; [`Home::write_config`] adds this line to `[delivery]`
/// unless the test's config says `allow_networks` itself.
pub const ALLOW_LOOPBACK: &str = "allow_networks = [\"127.0.0.0/8\"]\n";

/// `body` with [`ALLOW_LOOPBACK`] under its `[delivery]` header, if it has one and sets
/// no `allow_networks` of its own.
pub fn allow_loopback(body: &str) -> String {
    if body.contains("allow_networks") {
        return body.to_string();
    }
    body.replacen("[delivery]\n", &format!("[delivery]\n{ALLOW_LOOPBACK}"), 1)
}

/// One row of the `rejections` table.
#[derive(Debug, Clone)]
pub struct RejectionRow {
    pub source: String,
    pub line: Option<i64>,
    pub reason: String,
    pub snippet: Option<String>,
}

impl Home {
    /// Like [`Home::write_config`], with `spool` lines (e.g. `keep_done = true`) added to
    /// `[spool]`; a `rescan_interval` there replaces the fast default.
    pub fn write_config_with_spool(&self, spool: &str, body: &str) -> PathBuf {
        let mut text = format!(
            "{}[spool]\ndir = {:?}\n{spool}\n",
            self.storage_config(),
            self.spool().display().to_string()
        );
        if !spool.contains("rescan_interval") {
            text.push_str("rescan_interval = \"200ms\"\n");
        }
        if !body.contains("[http]") {
            text.push_str(&format!("[http]\nlisten = \"127.0.0.1:{}\"\n", self.port));
        }
        if !body.contains("[delivery]") {
            text.push_str("[delivery]\nschedule = [\"100ms\", \"200ms\"]\ntimeout = \"2s\"\n");
            text.push_str(ALLOW_LOOPBACK);
        }
        text.push_str(&allow_loopback(body));
        fs::write(self.config_path(), text).expect("write config");
        self.config_path()
    }

    /// Every row of the `rejections` table, oldest first.
    pub fn rejections(&self) -> Vec<RejectionRow> {
        self.rows(
            "SELECT source, line, reason, snippet FROM rejections ORDER BY id",
            &[],
        )
        .iter()
        .map(|row| RejectionRow {
            source: row.get(0),
            line: row.get(1),
            reason: row.get(2),
            snippet: row.get(3),
        })
        .collect()
    }
}

impl Receiver {
    /// How many requests carried the event `id`, at any path.
    pub fn count_of(&self, id: &str) -> usize {
        self.requests()
            .iter()
            .filter(|r| r.header("webhook-id") == Some(id))
            .count()
    }
}

/// Waits until posthorn's inlet at `home` accepts connections.
pub fn wait_for_inlet(home: &Home) {
    wait_for("the HTTP inlet to listen", Duration::from_secs(10), || {
        std::net::TcpStream::connect(("127.0.0.1", home.port)).is_ok()
    });
}
