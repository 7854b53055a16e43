//! Storage: the one SQLite file that holds events, deliveries, attempts, rejections,
//! spool positions and the audit log. Only this module speaks SQL.
//!
//! Writes have one owner, a writer thread fed by a channel (see `writer`), which commits
//! many requests in one transaction and answers each caller after the commit. Readers open
//! their own connections; WAL lets them run beside the writer.

mod admin;
mod charts;
mod claim;
mod claimer;
pub mod db;
mod due;
mod faults;
mod find;
mod forget;
mod health;
mod integrity;
mod line;
mod migrate_store;
pub mod nodes;
#[cfg(test)]
mod plans_pg_tests;
mod prune;
mod query;
mod rename;
mod rollup;
mod room;
mod schema;
pub(crate) mod schema_pg;
pub mod sessions;
pub mod side;
pub mod spool_head;
/// A real PostgreSQL for the tests, the same code the integration tests use.
#[cfg(test)]
#[path = "../../tests/common/pg.rs"]
pub(crate) mod test_pg;
#[cfg(test)]
pub(crate) mod test_support;
mod writer;
mod writes;

use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::time::Duration;

use anyhow::Context as _;
use rusqlite::config::DbConfig;
use rusqlite::{Connection, OpenFlags};

use db::{params, Db, OptionalExtension};

pub use charts::{
    ChartPoint, ChartRange, Charts, FailureGroup, QueuePoint, Rates, Trend, FAILURE_GROUPS,
};
pub use due::DueHints;
pub use faults::{FailingCommits, Faults, StoreUnavailable};
pub use find::{Found, StoredEvent, CONVERSATION_COUNT_CAP};
pub use forget::Forgotten;
pub use line::{HeldBehind, LineView};
pub use migrate_store::{migrate_store, Migrated, SchemaVersions, TableCount};
pub use query::{
    AttemptView, AuditRow, DeliveryDetail, DeliveryFilter, DeliveryRow, EventView, FailureRow,
    Overview, Page, QueryError, Queue, RejectionRow, StateCounts, SubscriptionHealth, TypeFilter,
    DEFAULT_PAGE, HEALTH_WINDOW, MAX_PAGE,
};
pub use writer::{now_ms, StoreHandle};

use crate::event::Event;

/// One batch of input, committed in a single transaction or not at all.
#[derive(Debug, Default)]
pub struct IngestBatch {
    /// Where the input came from, e.g. `spool:events.ndjson`.
    pub source: String,
    pub events: Vec<RoutedEvent>,
    pub rejections: Vec<Rejection>,
    /// The spool position to record with these events, so a restart resumes after them.
    pub position: Option<SpoolPosition>,
}

/// An event and the names of the subscriptions it fans out to.
#[derive(Debug)]
pub struct RoutedEvent {
    pub event: Event,
    pub subscriptions: Vec<String>,
}

/// An input that was refused, kept for the operator.
#[derive(Debug, Clone)]
pub struct Rejection {
    pub source: String,
    pub line: Option<u64>,
    pub reason: String,
    pub snippet: String,
}

/// How far a spool file has been read: byte offset and line count after the last
/// complete line taken.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct SpoolPosition {
    pub file_key: String,
    pub path: String,
    pub offset: u64,
    pub line: u64,
    /// A fingerprint of the file's first bytes (up to 1 KiB, never past `offset`), to
    /// recognise it: see `spool_head`.
    pub head: Vec<u8>,
}

/// What an ingest batch did.
#[derive(Debug, Default, Clone, PartialEq, Eq)]
pub struct IngestReport {
    pub stored: usize,
    pub duplicates: usize,
    pub deliveries: usize,
    /// The ids of the events that were already stored (the inlet reports them).
    pub duplicate_ids: Vec<String>,
}

/// One row of the audit log: an operator action and how it ended.
#[derive(Debug, Clone)]
pub struct AuditEntry {
    /// Who or what asked, e.g. `SIGHUP`.
    pub actor: String,
    /// What was asked, e.g. `config.reload`.
    pub action: String,
    /// What changed, or why it was refused. Never a secret.
    pub detail: String,
    /// `applied` or `refused`.
    pub result: String,
    /// Where the request came from (the client address); `None` for the machine itself.
    pub origin: Option<String>,
}

/// A delivery handed to a worker, with everything needed to send it.
#[derive(Debug, Clone)]
pub struct Claimed {
    pub delivery_id: i64,
    pub subscription: String,
    /// 1 for the first attempt.
    pub attempt: u32,
    pub event_id: String,
    pub body: String,
}

/// How many due deliveries to claim for one subscription, and in what line.
#[derive(Debug, Clone)]
pub struct ClaimRequest {
    pub subscription: String,
    pub limit: usize,
    pub line: Line,
    /// Requests of one group (the scheduler's: one endpoint) share that group's budget.
    pub group: usize,
    /// The limits every node together must keep (see `claim/cluster.rs`).
    pub cluster: ClusterLimits,
}

/// The limits a claim on a store shared by several nodes (PostgreSQL) checks against
/// every node's leases, not only this node's. A SQLite store has one node, whose own
/// counting is exact, and ignores them.
#[derive(Debug, Clone, Default)]
pub struct ClusterLimits {
    /// The request's endpoint (its URL): the group it shares an in-flight cap with.
    pub endpoint: String,
    /// Every subscription that sends to the endpoint.
    pub endpoint_subscriptions: Vec<String>,
    /// Attempts in flight to the endpoint across all nodes, at most.
    pub endpoint_cap: usize,
    /// The subscription's `rate_limit`: at most `.0` attempts started per `.1` ms.
    pub rate: Option<(usize, i64)>,
}

/// Which of a subscription's due deliveries may go (see `store/claim.rs`).
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub enum Line {
    /// Any due delivery, oldest due first.
    #[default]
    Any,
    /// Only the head of each conversation's line; with `hold_dead`, a dead delivery
    /// keeps the later ones of its conversation waiting.
    Conversation { hold_dead: bool },
}

/// The answer to a claim: the deliveries, and for each subscription whose claim came
/// back short of its limit, when its next claimable delivery falls due (unix ms; `None`
/// when it has none waiting).
#[derive(Debug, Default)]
pub struct ClaimResult {
    pub claimed: Vec<Claimed>,
    pub short: Vec<(String, Option<i64>)>,
}

/// One finished attempt and what follows from it.
#[derive(Debug, Clone)]
pub struct AttemptRecord {
    pub delivery_id: i64,
    /// The delivery's subscription, for the metrics kept per subscription.
    pub subscription: String,
    pub attempt: u32,
    pub started_at_ms: i64,
    pub duration_ms: i64,
    pub status: Option<u16>,
    pub error: Option<String>,
    pub response_snippet: Option<String>,
    /// The fingerprint of the include/exclude that shaped the body sent; `None`: whole.
    pub shaping: Option<String>,
    pub next: NextStep,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum NextStep {
    Delivered,
    RetryAt(i64),
    Dead,
}

/// One bounded step of retention: rows older than the cutoffs (unix ms) go, at most
/// `limit` of each kind, and at most `limit` events are looked at by each sweep.
#[derive(Debug, Clone)]
pub struct PruneRequest {
    /// Delivered deliveries (and events that matched nothing) before this go.
    pub delivered_before_ms: i64,
    /// Dead and cancelled deliveries before this go.
    pub failed_before_ms: i64,
    /// Bodies of events whose deliveries all became final before this are blanked.
    pub payloads_before_ms: i64,
    pub rejections_before_ms: i64,
    pub limit: usize,
    pub cursor: PruneCursor,
}

/// Where the two event sweeps of the last step stopped (`seq`); 0 is the oldest event.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct PruneCursor {
    pub payloads_after_seq: i64,
    pub events_after_seq: i64,
}

/// What one prune step did, and where the next one goes on from.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct PruneReport {
    pub deliveries: usize,
    pub attempts: usize,
    pub events: usize,
    pub payloads: usize,
    pub rejections: usize,
    /// Rows of the charts' history past their time (`rollup.rs`).
    pub rollups: usize,
    pub cursor: PruneCursor,
    /// A kind used its whole allowance or a sweep stopped short: more to do now.
    pub more: bool,
}

/// What the writer says about the store when pinged (see `StoreHandle::ping`).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct StoreStatus {
    /// Bytes the store holds: pages in use plus the WAL, as `max_size` counts them.
    pub used_bytes: u64,
    /// `[storage] max_size` in force.
    pub max_size: Option<u64>,
}

/// New input refused: the store holds more than `[storage] max_size`.
#[derive(Debug, thiserror::Error)]
#[error(
    "the store holds {}, over [storage] max_size = {}; new input is refused and waits \
     (spool files stay where they are) until retention prunes the store under max_size; \
     deliveries go on",
    human_size(*used),
    human_size(*max)
)]
pub struct StoreFull {
    pub used: u64,
    pub max: u64,
}

/// An admin action the store refused; the caller finds it with `downcast_ref` and
/// shows it to the operator as it is (it names no internals).
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum AdminRefusal {
    #[error("there is no delivery {0}")]
    UnknownDelivery(i64),
    #[error("there is no event {0:?}")]
    UnknownEvent(String),
    #[error(
        "{what} cannot be sent again: its event body was dropped (by [retention] payloads, \
         or its conversation was forgotten)"
    )]
    PayloadDropped { what: String },
    #[error(
        "delivery {0} was delivered; replay its event to send it again (`posthorn replay \
         --delivery {0}`, or Replay an event on its subscription's page)"
    )]
    AlreadyDelivered(i64),
    #[error("delivery {0} is being sent right now; try again once the attempt has finished")]
    InFlight(i64),
    #[error(
        "the store holds nothing of conversation {0:?}: no event and no rejected input names it"
    )]
    UnknownConversation(String),
}

/// What a replay did: made the existing delivery of the event to the subscription due
/// again, or created one (`created`) where the subscription never had the event.
#[derive(Debug, Clone, PartialEq, Eq, serde::Serialize)]
pub struct Replayed {
    pub delivery_id: i64,
    pub created: bool,
}

fn human_size(bytes: u64) -> String {
    format!(
        "{:.1} MiB ({bytes} bytes)",
        bytes as f64 / (1u64 << 20) as f64
    )
}

/// Where a store's database is: a SQLite file, or a PostgreSQL database by its URL
/// (which holds the password: never shown, see [`Location`]'s `Debug`).
#[derive(Clone)]
pub enum Location {
    Sqlite(PathBuf),
    Postgres(String),
}

impl std::fmt::Debug for Location {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(&self.shown())
    }
}

impl Location {
    /// The file, or the URL without its password, for messages.
    pub fn shown(&self) -> String {
        match self {
            Location::Sqlite(path) => path.display().to_string(),
            Location::Postgres(url) => crate::config::redact_url(url),
        }
    }

    /// Where `[storage]` puts the store.
    pub fn from_config(storage: &crate::config::StorageConfig) -> Location {
        match &storage.backend {
            crate::config::Backend::Sqlite => Location::Sqlite(storage.path.clone()),
            crate::config::Backend::Postgres { url } => Location::Postgres(url.expose().to_owned()),
        }
    }
}

impl From<&Path> for Location {
    fn from(path: &Path) -> Location {
        Location::Sqlite(path.to_path_buf())
    }
}

impl From<&PathBuf> for Location {
    fn from(path: &PathBuf) -> Location {
        Location::Sqlite(path.clone())
    }
}

impl From<PathBuf> for Location {
    fn from(path: PathBuf) -> Location {
        Location::Sqlite(path)
    }
}

/// The store: owns the writer thread. Dropping it (or `close`) finishes every queued
/// write and stops the thread.
pub struct Store {
    location: Location,
    handle: StoreHandle,
    writer: Option<std::thread::JoinHandle<()>>,
    /// SQLite: held for the store's life; the OS releases it when the process dies, even
    /// by SIGKILL. PostgreSQL has none: any number of nodes share its database.
    _lock: Option<std::fs::File>,
}

impl Store {
    /// Opens (creating if needed) the database at `path`, brings its schema up to date,
    /// returns leased deliveries left by a crash to the queue, and starts the writer.
    /// `new_work` is signalled after each commit that created deliveries.
    pub fn open(path: &Path, new_work: crossbeam_channel::Sender<()>) -> anyhow::Result<Store> {
        let lock = lock_exclusively(path)?;
        let conn = open_writer_connection(path)
            .with_context(|| format!("while opening the store at {}", path.display()))?;
        let faults = Arc::new(Faults::default());
        let (handle, writer) = writer::spawn(conn, None, new_work, Arc::clone(&faults))?;
        spawn_integrity_check(path, faults);
        Ok(Store {
            location: Location::Sqlite(path.to_path_buf()),
            handle,
            writer: Some(writer),
            _lock: Some(lock),
        })
    }

    /// Opens the store wherever `location` says.
    pub fn open_at(
        location: &Location,
        new_work: crossbeam_channel::Sender<()>,
    ) -> anyhow::Result<Store> {
        match location {
            Location::Sqlite(path) => Store::open(path, new_work),
            Location::Postgres(url) => Store::open_postgres(url, new_work),
        }
    }

    /// Connects to the PostgreSQL database at `url`, brings its schema up to date and
    /// starts the writer. Leases of other nodes are left alone: a lease that is never
    /// answered falls due again when it ends (see `claim.rs`).
    pub fn open_postgres(
        url: &str,
        new_work: crossbeam_channel::Sender<()>,
    ) -> anyhow::Result<Store> {
        let mut client = schema_pg::connect(url)?;
        schema_pg::migrate(&mut client)?;
        let claims = Db::postgres(schema_pg::connect(url)?, url);
        let faults = Arc::new(Faults::default());
        let (handle, writer) =
            writer::spawn(Db::postgres(client, url), Some(claims), new_work, faults)?;
        Ok(Store {
            location: Location::Postgres(url.to_owned()),
            handle,
            writer: Some(writer),
            _lock: None,
        })
    }

    pub fn handle(&self) -> StoreHandle {
        self.handle.clone()
    }

    pub fn location(&self) -> &Location {
        &self.location
    }

    /// Waits for every write queued so far, then stops the writer.
    pub fn close(mut self) {
        self.stop();
    }

    fn stop(&mut self) {
        self.handle.shutdown();
        if let Some(writer) = self.writer.take() {
            let _ = writer.join();
        }
    }
}

impl Drop for Store {
    fn drop(&mut self) {
        self.stop();
    }
}

/// Runs the integrity check on a read-only connection of its own, beside the running
/// store (on a 1.4 GB store it took 4 s with the pages cached and 27 s from a cold disk),
/// logs what it found and hands a corruption to `faults` for `/healthz`.
fn spawn_integrity_check(path: &Path, faults: Arc<Faults>) {
    let path = path.to_path_buf();
    let spawned = std::thread::Builder::new()
        .name("store-check".into())
        .spawn(move || {
            let conn = match Connection::open_with_flags(&path, OpenFlags::SQLITE_OPEN_READ_ONLY) {
                Ok(conn) => conn,
                Err(err) => {
                    tracing::warn!("store integrity check skipped: {err}");
                    return;
                }
            };
            faults.set_integrity(check_integrity(&conn, &path));
        });
    if let Err(err) = spawned {
        tracing::warn!("store integrity check skipped: {err}");
    }
}

/// Runs the integrity check and logs what it found; returns the problem for `/healthz`
/// if the store is corrupt.
fn check_integrity(conn: &Connection, path: &Path) -> Option<String> {
    match integrity::quick_check(conn, integrity::CHECK_LIMIT) {
        integrity::Integrity::Ok(took) => {
            tracing::info!(
                took_ms = took.as_millis() as u64,
                "store integrity check: ok"
            );
            None
        }
        integrity::Integrity::Unfinished(why) => {
            tracing::warn!("store integrity check skipped: {why}");
            None
        }
        integrity::Integrity::Corrupt(problems) => {
            let problem = format!(
                "the store {} is corrupt (integrity check at start: {}); what it holds may \
                 be lost: stop posthorn and recover it (sqlite3 {} .recover) or restore a \
                 backup",
                path.display(),
                problems.join("; "),
                path.display()
            );
            tracing::error!("{problem}");
            Some(problem)
        }
    }
}

/// Takes an exclusive lock on `<store>.lock`. Two posthorns on one store would each
/// lease and send the same deliveries, so the second one refuses to start.
fn lock_exclusively(store: &Path) -> anyhow::Result<std::fs::File> {
    try_lock_store(store)?.map_err(|path| {
        anyhow::anyhow!(
            "another posthorn is already running with the store {} (it holds {}); \
             stop it first, or give this one its own [storage] path",
            store.display(),
            path.display()
        )
    })
}

/// The lock `serve` holds on a SQLite store, taken; `Err(lock file)` when another process
/// holds it.
fn try_lock_store(store: &Path) -> anyhow::Result<Result<std::fs::File, PathBuf>> {
    let mut name = store.as_os_str().to_owned();
    name.push(".lock");
    let path = PathBuf::from(name);
    create_parent_dir(&path)?;
    let file = std::fs::OpenOptions::new()
        .create(true)
        .truncate(false)
        .write(true)
        .open(&path)
        .with_context(|| format!("while opening the lock file {}", path.display()))?;
    match file.try_lock() {
        Ok(()) => Ok(Ok(file)),
        Err(std::fs::TryLockError::WouldBlock) => Ok(Err(path)),
        Err(std::fs::TryLockError::Error(err)) => {
            Err(err).with_context(|| format!("while locking {}", path.display()))
        }
    }
}

fn create_parent_dir(path: &Path) -> anyhow::Result<()> {
    if let Some(parent) = path.parent().filter(|p| !p.as_os_str().is_empty()) {
        std::fs::create_dir_all(parent)
            .with_context(|| format!("while creating the directory {}", parent.display()))?;
    }
    Ok(())
}

/// Creates the database file readable by its owner only (0600), whatever the umask, so
/// SQLite, which gives the `-wal` and `-shm` files the database file's mode, creates
/// them 0600 too. An existing store keeps its mode (an operator may have widened it on
/// purpose), with a warning when others may read it.
fn create_private(path: &Path) -> anyhow::Result<()> {
    use std::os::unix::fs::{OpenOptionsExt as _, PermissionsExt as _};
    match std::fs::OpenOptions::new()
        .write(true)
        .create_new(true)
        .mode(0o600)
        .open(path)
    {
        Ok(file) => file
            .set_permissions(std::fs::Permissions::from_mode(0o600))
            .with_context(|| format!("while making {} private", path.display())),
        Err(err) if err.kind() == std::io::ErrorKind::AlreadyExists => {
            if let Ok(meta) = std::fs::metadata(path) {
                let mode = meta.permissions().mode() & 0o777;
                if mode & 0o077 != 0 {
                    tracing::warn!(
                        "the store {} has mode {mode:o}: other users may read the events it \
                         holds; chmod 600 it unless that is meant",
                        path.display()
                    );
                }
            }
            Ok(())
        }
        Err(err) => Err(err).with_context(|| format!("while creating {}", path.display())),
    }
}

/// Bytes a WAL file may keep after a checkpoint resets it (`journal_size_limit`).
const WAL_SIZE_LIMIT: i64 = 4 << 20;

pub use room::MIN_MAX_SIZE;

fn open_writer_connection(path: &Path) -> anyhow::Result<Db> {
    create_parent_dir(path)?;
    create_private(path)?;
    let mut conn = Connection::open(path)?;
    conn.busy_timeout(Duration::from_secs(5))?;
    let mode: String = conn.query_row("PRAGMA journal_mode = WAL", [], |row| row.get(0))?;
    anyhow::ensure!(
        mode.eq_ignore_ascii_case("wal"),
        "the database refused WAL mode (got {mode})"
    );
    // FULL: a commit is on disk before the caller is answered. The writer relaxes this
    // for batches that acknowledge nothing (claims); see writer.rs.
    conn.pragma_update(None, "synchronous", "FULL")?;
    conn.pragma_update(None, "foreign_keys", true)?;
    // SQLite reuses a WAL file rather than shrinking it; cap what a burst leaves behind,
    // so the files on disk settle once retention keeps the data steady.
    conn.pragma_update(None, "journal_size_limit", WAL_SIZE_LIMIT)?;
    // Each writer command runs in a savepoint, and a savepoint keeps the pages it changes
    // in a statement journal, a temporary file by default: per commit one file created,
    // written page by page, and deleted, as many page writes as the WAL itself took. In
    // memory it costs a copy. It exists only to undo a failed command; recovery after a
    // crash never reads it.
    conn.pragma_update(None, "temp_store", "MEMORY")?;
    // Plan each statement once. Otherwise SQLite re-plans a statement whenever a bound
    // value its planner looked at changes (the claim's `LIMIT ?` does on nearly every
    // call): a full re-parse on the writer's hottest path.
    conn.set_db_config(DbConfig::SQLITE_DBCONFIG_ENABLE_QPSG, true)?;
    schema::migrate(&mut conn)?;
    let db = Db::sqlite(conn);
    let tx = db.transaction()?;
    spool_head::convert_raw_heads(&tx)?;
    tx.commit()?;
    Ok(db)
}

/// Bytes a store holds. SQLite: pages in use (pages freed by pruning are reused before
/// the file grows, so they do not count) plus the WAL file. PostgreSQL: the database's
/// size as the server counts it.
fn measure(db: &Db) -> anyhow::Result<u64> {
    let Some(conn) = db.as_sqlite() else {
        return Ok(db.query_row(
            "SELECT pg_database_size(current_database())",
            params![],
            |row| row.get(0),
        )?);
    };
    let pragma = |name: &str| -> rusqlite::Result<u64> {
        conn.query_row(&format!("PRAGMA {name}"), [], |row| row.get(0))
    };
    let pages = pragma("page_count")?.saturating_sub(pragma("freelist_count")?);
    let used = pages * pragma("page_size")?;
    let wal = match conn.path().filter(|p| !p.is_empty()) {
        Some(db) => std::fs::metadata(format!("{db}-wal")).map_or(0, |m| m.len()),
        None => 0,
    };
    Ok(used + wal)
}

/// A read-only connection for queries that must not queue behind writes.
pub struct Reader {
    conn: Db,
}

impl Reader {
    pub fn open(location: impl Into<Location>) -> anyhow::Result<Reader> {
        let path = match location.into() {
            Location::Sqlite(path) => path,
            Location::Postgres(url) => {
                let client = schema_pg::connect(&url)?;
                return Ok(Reader {
                    conn: Db::postgres(client, &url),
                });
            }
        };
        let conn = Connection::open_with_flags(
            &path,
            OpenFlags::SQLITE_OPEN_READ_ONLY | OpenFlags::SQLITE_OPEN_NO_MUTEX,
        )
        .with_context(|| format!("while opening the store at {} for reading", path.display()))?;
        conn.busy_timeout(Duration::from_secs(5))?;
        Ok(Reader {
            conn: Db::sqlite(conn),
        })
    }

    /// A setting posthorn keeps for itself (see [`StoreHandle::put_setting`]).
    pub fn setting(&self, key: &str) -> anyhow::Result<Option<String>> {
        Ok(self
            .conn
            .query_row("SELECT value FROM settings WHERE key = ?1", [key], |row| {
                row.get(0)
            })
            .optional()?)
    }

    /// When the newest `limit` attempts of `subscription` since `since_ms` started (unix
    /// ms), newest first: what its rate limit counted before a restart.
    pub fn attempt_starts(
        &self,
        subscription: &str,
        since_ms: i64,
        limit: usize,
    ) -> anyhow::Result<Vec<i64>> {
        let mut stmt = self.conn.prepare(
            "SELECT started_at FROM attempts WHERE subscription = ?1 AND started_at > ?2
             ORDER BY started_at DESC LIMIT ?3",
        )?;
        let rows = stmt.query_map(params![subscription, since_ms, limit as i64], |row| {
            row.get(0)
        })?;
        Ok(rows.collect::<Result<_, _>>()?)
    }

    /// The paused subscriptions and whether an operator paused all delivery, as the
    /// store holds them now.
    pub fn switches(&self) -> anyhow::Result<(std::collections::HashSet<String>, bool)> {
        let paused = writer::load_paused(&self.conn)?;
        Ok((paused, health::load(&self.conn)?.delivery_paused))
    }

    /// Bytes the store holds, counted as `[storage] max_size` counts them.
    pub fn size_bytes(&self) -> anyhow::Result<u64> {
        measure(&self.conn)
    }

    /// Every recorded spool position.
    pub fn spool_positions(&self) -> anyhow::Result<Vec<SpoolPosition>> {
        let mut stmt = self
            .conn
            .prepare(r#"SELECT file_key, path, "offset", line, head FROM spool_positions"#)?;
        let rows = stmt.query_map([], |row| {
            Ok(SpoolPosition {
                file_key: row.get(0)?,
                path: row.get(1)?,
                offset: row.get(2)?,
                line: row.get(3)?,
                head: row.get(4)?,
            })
        })?;
        Ok(rows.collect::<Result<_, _>>()?)
    }
}

/// Read connections for the HTTP handlers. A [`Reader`] is not `Sync`; each request
/// borrows one for the length of its query (on a blocking thread) and gives it back.
/// Connections are opened on demand and at most [`ReaderPool::KEEP`] are kept idle.
#[derive(Clone)]
pub struct ReaderPool {
    location: Location,
    idle: std::sync::Arc<std::sync::Mutex<Vec<Reader>>>,
}

impl ReaderPool {
    const KEEP: usize = 4;

    pub fn new(location: impl Into<Location>) -> ReaderPool {
        ReaderPool {
            location: location.into(),
            idle: Default::default(),
        }
    }

    /// Runs `read` with a connection. Blocks: call it off the async threads.
    pub fn with<T>(&self, read: impl FnOnce(&Reader) -> T) -> anyhow::Result<T> {
        let taken = self.idle.lock().unwrap_or_else(|e| e.into_inner()).pop();
        let reader = match taken {
            Some(reader) => reader,
            None => Reader::open(self.location.clone())?,
        };
        let answer = read(&reader);
        let mut idle = self.idle.lock().unwrap_or_else(|e| e.into_inner());
        if idle.len() < Self::KEEP && !reader.conn.is_closed() {
            idle.push(reader);
        }
        Ok(answer)
    }
}

/// Fills a fresh or existing database with `count` pending deliveries to `subscription`
/// that fall due at `due_at_ms`. For the benchmark's backlog; never called by `serve`.
pub fn seed_backlog(
    path: &Path,
    subscription: &str,
    count: usize,
    due_at_ms: i64,
) -> anyhow::Result<()> {
    let db = open_writer_connection(path)?;
    db.execute_batch("PRAGMA synchronous = OFF")?;
    let tx = db.transaction()?;
    {
        let mut event = tx.prepare_cached(
            "INSERT INTO events (id, type, conversation_id, received_at, source, body)
             VALUES (?1, 'backlog.seeded', 'c-backlog', ?2, 'seed', ?3) RETURNING seq",
        )?;
        let mut delivery = tx.prepare_cached(
            "INSERT INTO deliveries (event_seq, event_id, subscription, state, next_attempt_at,
                                     created_at, updated_at, event_type)
             VALUES (?1, ?2, ?3, 'pending', ?4, ?5, ?5, 'backlog.seeded')",
        )?;
        let now = now_ms();
        for n in 0..count {
            let id = format!("seed-{n}");
            let body = format!(r#"{{"id":"{id}","type":"backlog.seeded"}}"#);
            let seq: i64 = event.query_row(params![id, now, body], |row| row.get(0))?;
            delivery.execute(params![seq, id, subscription, due_at_ms, now])?;
        }
    }
    tx.commit()?;
    Ok(())
}
