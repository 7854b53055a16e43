//! A real PostgreSQL for the tests: one throwaway cluster per target directory, shared by
//! every test process of a `cargo test` run, and a fresh empty database per test.
//!
//! The first test that asks starts the cluster (running `initdb` the first time) in
//! `<target>/tmp/pg`, listening on 127.0.0.1 at a free port and on a unix socket in its
//! own directory. A file lock there makes parallel test binaries start it once; the
//! others find it running and reuse it. It keeps running after the tests, for the next
//! run: `tests/pg.sh stop` stops it. PostgreSQL refuses to run as root, so when the
//! tests run as root the server runs as the `postgres` user (or `nobody`).
//!
//! Environment: `POSTHORN_TEST_PG_URL` (a superuser URL, e.g.
//! `postgres://postgres:pw@127.0.0.1:5432/postgres`) uses a server of your own instead;
//! `POSTHORN_TEST_PG_BIN` names the directory holding `initdb` and `pg_ctl` (default: the
//! newest `/usr/lib/postgresql/<version>/bin`, else `PATH`); `POSTHORN_TEST_PG_DIR` moves
//! the cluster's directory.
//!
//! The library's unit tests (`src/store/mod.rs`) and the integration tests
//! (`tests/common/mod.rs`) both include this file, so it uses only std, `postgres` and
//! `rustix`.
#![allow(dead_code)] // each includer uses a different part of it

use std::fs::{self, File};
use std::io::Read as _;
use std::path::{Path, PathBuf};
use std::process::{Command, Stdio};
use std::str::FromStr as _;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::OnceLock;
use std::time::{Duration, Instant, SystemTime, UNIX_EPOCH};

/// Longest wait for another test process that is starting the cluster (a first `initdb`
/// on a busy machine takes a while).
const LOCK_WAIT: Duration = Duration::from_secs(180);
/// Longest any one PostgreSQL tool may run.
const TOOL_WAIT: Duration = Duration::from_secs(120);
/// Longest wait for a connection.
const CONNECT_WAIT: Duration = Duration::from_secs(10);
/// Databases this file makes start with it, so leftovers of killed runs can be found.
const PREFIX: &str = "posthorn_test_";

/// An empty database of its own on the test cluster; dropped with it.
pub struct FreshDatabase {
    url: String,
    name: String,
    admin: &'static str,
}

impl FreshDatabase {
    /// `postgres://user:password@127.0.0.1:port/name`.
    pub fn url(&self) -> &str {
        &self.url
    }

    pub fn name(&self) -> &str {
        &self.name
    }

    /// A new connection to it.
    pub fn connect(&self) -> postgres::Client {
        connect(&self.url).unwrap_or_else(|err| panic!("connecting to {}: {err}", self.name))
    }
}

impl Drop for FreshDatabase {
    fn drop(&mut self) {
        // FORCE: a test that failed may have left a connection open.
        let dropped = connect(self.admin).and_then(|mut admin| {
            admin
                .batch_execute(&format!(
                    "DROP DATABASE IF EXISTS \"{}\" WITH (FORCE)",
                    self.name
                ))
                .map_err(|err| err.to_string())
        });
        if let Err(err) = dropped {
            eprintln!("tests/common/pg.rs: could not drop {}: {err}", self.name);
        }
    }
}

/// A new, empty, uniquely named database on the shared test cluster (started on first
/// use). Panics saying why when no PostgreSQL can be had.
pub fn fresh_database() -> FreshDatabase {
    static COUNTER: AtomicUsize = AtomicUsize::new(0);
    let admin = admin_url();
    let nanos = SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .map_or(0, |d| d.subsec_nanos());
    let name = format!(
        "{PREFIX}{}_{}_{nanos}",
        std::process::id(),
        COUNTER.fetch_add(1, Ordering::Relaxed)
    );
    let mut client =
        connect(admin).unwrap_or_else(|err| panic!("connecting to the test cluster: {err}"));
    client
        .batch_execute(&format!("CREATE DATABASE \"{name}\""))
        .unwrap_or_else(|err| panic!("CREATE DATABASE {name}: {err}"));
    FreshDatabase {
        url: with_database(admin, &name),
        name,
        admin,
    }
}

/// The superuser URL of the test cluster's `postgres` database, starting the cluster
/// the first time this process asks.
pub fn admin_url() -> &'static str {
    static CLUSTER: OnceLock<Result<String, String>> = OnceLock::new();
    let cluster = CLUSTER.get_or_init(|| match std::env::var("POSTHORN_TEST_PG_URL") {
        Ok(url) if !url.trim().is_empty() => Ok(url.trim().to_string()),
        _ => shared_cluster(),
    });
    match cluster {
        Ok(url) => url,
        Err(err) => panic!(
            "no PostgreSQL for the tests: {err}\n(run tests/setup.sh to install Debian's \
             postgresql package, or set POSTHORN_TEST_PG_URL to a superuser URL)"
        ),
    }
}

/// Where the shared cluster lives: `POSTHORN_TEST_PG_DIR`, else `<target>/tmp/pg` (test
/// binaries run from `<target>/<profile>/deps/`, for unit and integration tests alike).
pub fn cluster_dir() -> PathBuf {
    if let Some(dir) = std::env::var_os("POSTHORN_TEST_PG_DIR").filter(|d| !d.is_empty()) {
        return PathBuf::from(dir);
    }
    let exe = std::env::current_exe().unwrap_or_default();
    match exe.ancestors().nth(3) {
        Some(target) if !target.as_os_str().is_empty() => target.join("tmp").join("pg"),
        _ => PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("target/tmp/pg"),
    }
}

/// A client for `url`, bounded in time.
fn connect(url: &str) -> Result<postgres::Client, String> {
    postgres::Config::from_str(url)
        .map_err(|err| err.to_string())?
        .connect_timeout(CONNECT_WAIT)
        .connect(postgres::NoTls)
        .map_err(|err| err.to_string())
}

/// `url` with its database replaced by `name`.
fn with_database(url: &str, name: &str) -> String {
    let (base, query) = url
        .split_once('?')
        .map_or((url, None), |(b, q)| (b, Some(q)));
    let authority = base.rfind('@').or_else(|| base.find("://").map(|i| i + 2));
    let host_end = authority
        .and_then(|at| base[at..].find('/').map(|i| at + i))
        .unwrap_or(base.len());
    let mut out = format!("{}/{name}", &base[..host_end]);
    if let Some(query) = query {
        out.push('?');
        out.push_str(query);
    }
    out
}

/// Reuses the cluster another test process started, or starts it, under the file lock.
fn shared_cluster() -> Result<String, String> {
    let dir = cluster_dir();
    fs::create_dir_all(&dir).map_err(|err| format!("creating {}: {err}", dir.display()))?;
    let lock = File::options()
        .create(true)
        .truncate(false)
        .write(true)
        .open(dir.join("lock"))
        .map_err(|err| format!("opening {}/lock: {err}", dir.display()))?;
    let deadline = Instant::now() + LOCK_WAIT;
    while let Err(err) = lock.try_lock() {
        match err {
            fs::TryLockError::WouldBlock if Instant::now() < deadline => {
                std::thread::sleep(Duration::from_millis(50))
            }
            fs::TryLockError::WouldBlock => {
                return Err(format!(
                    "another test process held {}/lock for over {LOCK_WAIT:?}",
                    dir.display()
                ))
            }
            fs::TryLockError::Error(err) => {
                return Err(format!("locking {}: {err}", dir.display()))
            }
        }
    }
    let url = match running(&dir) {
        Some(url) => Ok(url),
        None => start(&dir),
    };
    drop(lock);
    url
}

/// The cluster's URL if it is up and answers.
fn running(dir: &Path) -> Option<String> {
    let port = fs::read_to_string(dir.join("port")).ok()?;
    let password = fs::read_to_string(dir.join("password")).ok()?;
    let url = url_for(port.trim(), password.trim());
    let mut client = connect(&url).ok()?;
    client.simple_query("SELECT 1").ok()?;
    Some(url)
}

fn url_for(port: &str, password: &str) -> String {
    format!("postgres://postgres:{password}@127.0.0.1:{port}/postgres")
}

/// Initializes the cluster where needed and starts it on a free port.
fn start(dir: &Path) -> Result<String, String> {
    let bin = bin_dir()?;
    let owner = server_user()?;
    let server = dir.join("server");
    let data = server.join("data");
    let password_file = dir.join("password");
    // Stop a server of ours left running on a port that no longer answers, before
    // touching its directory; a stale pid file whose pid now belongs to another process
    // is left for the server's own start-up check.
    if ours_running(&data) {
        let _ = tool(&bin, "pg_ctl", owner, dir)
            .args(["stop", "-m", "immediate", "-t", "30", "-D"])
            .arg(&data)
            .status_within(TOOL_WAIT);
    }
    let password = match fs::read_to_string(&password_file) {
        Ok(password) if data.join("PG_VERSION").exists() => password.trim().to_string(),
        _ => init(&bin, owner, dir, &server, &password_file)?,
    };
    let sock = server.join("sock");
    let log = server.join("server.log");
    let mut last = String::new();
    // The port may be taken between choosing and binding it, and the processes of a
    // server that was killed take a moment to go: a few tries, each on a new port.
    for attempt in 0..5 {
        if attempt > 0 {
            std::thread::sleep(Duration::from_secs(1));
        }
        let port = std::net::TcpListener::bind("127.0.0.1:0")
            .and_then(|l| l.local_addr())
            .map(|a| a.port())
            .map_err(|err| format!("finding a free port: {err}"))?;
        let options = format!(
            "-p {port} -k {} -c listen_addresses=127.0.0.1 -c fsync=off \
             -c synchronous_commit=off -c full_page_writes=off -c max_connections=200",
            sock.display()
        );
        let started = tool(&bin, "pg_ctl", owner, dir)
            .args(["start", "-w", "-t", "60", "-D"])
            .arg(&data)
            .arg("-l")
            .arg(&log)
            .arg("-o")
            .arg(&options)
            .status_within(TOOL_WAIT);
        match started {
            Ok(()) => {
                fs::write(dir.join("port"), port.to_string())
                    .map_err(|err| format!("writing {}/port: {err}", dir.display()))?;
                let url = url_for(&port.to_string(), &password);
                drop_leftovers(&url);
                return Ok(url);
            }
            Err(err) => last = err,
        }
    }
    let tail = fs::read_to_string(&log).unwrap_or_default();
    let tail: Vec<&str> = tail.lines().rev().take(15).collect();
    Err(format!(
        "pg_ctl start failed five times: {last}\nlast lines of {}:\n{}",
        log.display(),
        tail.into_iter().rev().collect::<Vec<_>>().join("\n")
    ))
}

/// Whether the pid in `data/postmaster.pid` is a server running on `data`.
fn ours_running(data: &Path) -> bool {
    let Ok(pid_file) = fs::read_to_string(data.join("postmaster.pid")) else {
        return false;
    };
    let Some(pid) = pid_file.lines().next().map(str::trim) else {
        return false;
    };
    fs::read(format!("/proc/{pid}/cmdline")).is_ok_and(|cmdline| {
        let wanted = data.as_os_str().as_encoded_bytes();
        cmdline.windows(wanted.len()).any(|w| w == wanted)
    })
}

/// A new cluster in `server/data` with a random password for the `postgres` superuser
/// (kept in `password_file`, readable by the tests' user only); returns the password.
fn init(
    bin: &Path,
    owner: Option<(u32, u32)>,
    dir: &Path,
    server: &Path,
    password_file: &Path,
) -> Result<String, String> {
    if server.exists() {
        fs::remove_dir_all(server)
            .map_err(|err| format!("removing the old {}: {err}", server.display()))?;
    }
    let data = server.join("data");
    let sock = server.join("sock");
    for made in [server, &data, &sock] {
        fs::create_dir(made).map_err(|err| format!("creating {}: {err}", made.display()))?;
        chown(made, owner)?;
    }
    let password = random_hex()?;
    // initdb reads the password from a file the server's user can read; gone after.
    let handover = server.join("initdb-password");
    fs::write(&handover, &password).map_err(|err| format!("writing the password: {err}"))?;
    chown(&handover, owner)?;
    let made = tool(bin, "initdb", owner, dir)
        .args(["-U", "postgres", "-E", "UTF8", "--no-locale", "--no-sync"])
        .args(["--auth-local=trust", "--auth-host=scram-sha-256"])
        .arg(format!("--pwfile={}", handover.display()))
        .arg("-D")
        .arg(&data)
        .status_within(TOOL_WAIT);
    let _ = fs::remove_file(&handover);
    made?;
    {
        use std::io::Write as _;
        use std::os::unix::fs::OpenOptionsExt as _;
        let mut file = File::options()
            .create(true)
            .truncate(true)
            .write(true)
            .mode(0o600)
            .open(password_file)
            .map_err(|err| format!("writing {}: {err}", password_file.display()))?;
        file.write_all(password.as_bytes())
            .map_err(|err| format!("writing {}: {err}", password_file.display()))?;
    }
    Ok(password)
}

/// Drops the databases of test processes that were killed before dropping theirs. Only
/// run when the cluster was just started, so no test is using one.
fn drop_leftovers(url: &str) {
    let Ok(mut client) = connect(url) else { return };
    let names: Vec<String> = client
        .query(
            "SELECT datname FROM pg_database WHERE starts_with(datname, $1)",
            &[&PREFIX],
        )
        .map(|rows| rows.iter().map(|row| row.get(0)).collect())
        .unwrap_or_default();
    for name in names {
        let _ = client.batch_execute(&format!("DROP DATABASE IF EXISTS \"{name}\" WITH (FORCE)"));
    }
}

/// Where `initdb` and `pg_ctl` are.
fn bin_dir() -> Result<PathBuf, String> {
    if let Some(dir) = std::env::var_os("POSTHORN_TEST_PG_BIN").filter(|d| !d.is_empty()) {
        return Ok(PathBuf::from(dir));
    }
    let newest = fs::read_dir("/usr/lib/postgresql")
        .into_iter()
        .flatten()
        .flatten()
        .filter_map(|entry| {
            let version: u32 = entry.file_name().to_str()?.parse().ok()?;
            let bin = entry.path().join("bin");
            bin.join("initdb").exists().then_some((version, bin))
        })
        .max();
    if let Some((_, bin)) = newest {
        return Ok(bin);
    }
    let on_path = std::env::var_os("PATH")
        .map(|path| std::env::split_paths(&path).collect::<Vec<_>>())
        .unwrap_or_default()
        .into_iter()
        .find(|dir| dir.join("initdb").exists() && dir.join("pg_ctl").exists());
    on_path.ok_or_else(|| {
        "initdb and pg_ctl were not found (in /usr/lib/postgresql/*/bin, on PATH, or in \
         POSTHORN_TEST_PG_BIN)"
            .to_string()
    })
}

/// The uid and gid to run the server as: `None` (ourselves) unless we are root.
fn server_user() -> Result<Option<(u32, u32)>, String> {
    if !rustix::process::geteuid().is_root() {
        return Ok(None);
    }
    let passwd = fs::read_to_string("/etc/passwd").map_err(|err| format!("/etc/passwd: {err}"))?;
    for wanted in ["postgres", "nobody"] {
        for line in passwd.lines() {
            let fields: Vec<&str> = line.split(':').collect();
            if fields.len() > 3 && fields[0] == wanted {
                if let (Ok(uid), Ok(gid)) = (fields[2].parse(), fields[3].parse()) {
                    return Ok(Some((uid, gid)));
                }
            }
        }
    }
    Err("running as root, and neither a postgres nor a nobody user to run the server as".into())
}

fn chown(path: &Path, owner: Option<(u32, u32)>) -> Result<(), String> {
    match owner {
        None => Ok(()),
        Some((uid, gid)) => std::os::unix::fs::chown(path, Some(uid), Some(gid))
            .map_err(|err| format!("chown {}: {err}", path.display())),
    }
}

fn random_hex() -> Result<String, String> {
    let mut bytes = [0u8; 16];
    File::open("/dev/urandom")
        .and_then(|mut f| f.read_exact(&mut bytes))
        .map_err(|err| format!("/dev/urandom: {err}"))?;
    Ok(bytes.iter().map(|b| format!("{b:02x}")).collect())
}

/// A PostgreSQL tool, run as `owner`, from `dir`.
fn tool(bin: &Path, name: &str, owner: Option<(u32, u32)>, dir: &Path) -> Tool {
    use std::os::unix::process::CommandExt as _;
    let mut command = Command::new(bin.join(name));
    command.current_dir(dir).stdin(Stdio::null());
    if let Some((uid, gid)) = owner {
        command.uid(uid).gid(gid);
    }
    Tool {
        command,
        name: name.to_string(),
        out: dir.join(format!("{name}.out")),
    }
}

struct Tool {
    command: Command,
    name: String,
    /// Its output goes to a file, not a pipe: `pg_ctl start` leaves the server running,
    /// which would hold a pipe open.
    out: PathBuf,
}

impl Tool {
    fn args<I: IntoIterator<Item = S>, S: AsRef<std::ffi::OsStr>>(mut self, args: I) -> Tool {
        self.command.args(args);
        self
    }

    fn arg(mut self, arg: impl AsRef<std::ffi::OsStr>) -> Tool {
        self.command.arg(arg);
        self
    }

    /// Runs it to the end within `limit` (killed after); an error holds its output.
    fn status_within(mut self, limit: Duration) -> Result<(), String> {
        let out = File::create(&self.out).map_err(|err| format!("{}: {err}", self.name))?;
        let err = out
            .try_clone()
            .map_err(|err| format!("{}: {err}", self.name))?;
        let mut child = self
            .command
            .stdout(out)
            .stderr(err)
            .spawn()
            .map_err(|err| format!("running {}: {err}", self.name))?;
        let deadline = Instant::now() + limit;
        let status = loop {
            match child.try_wait() {
                Ok(Some(status)) => break status,
                Ok(None) if Instant::now() < deadline => {
                    std::thread::sleep(Duration::from_millis(50))
                }
                Ok(None) => {
                    let _ = child.kill();
                    let _ = child.wait();
                    return Err(format!("{} took over {limit:?}; killed", self.name));
                }
                Err(err) => return Err(format!("waiting for {}: {err}", self.name)),
            }
        };
        if status.success() {
            Ok(())
        } else {
            let output = fs::read_to_string(&self.out).unwrap_or_default();
            Err(format!(
                "{} failed ({status}): {}",
                self.name,
                output.trim()
            ))
        }
    }
}
