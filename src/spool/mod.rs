//! Spool ingest: the directory the platform writes events into. `*.json` files (one event
//! or an array, written whole and renamed into place) are taken and removed; `*.ndjson`
//! files are tailed line by line, their read position committed in the same transaction
//! as the events read. Files are noticed through filesystem notifications, with a
//! periodic rescan as a safety net. A producer may only add files: everything in the
//! spool is reached through [`dir`], which follows no link and writes only in posthorn's
//! own directories, and one file posthorn cannot take never holds up the others.

mod aside;
mod dir;
mod json;
pub mod lines;
mod tail;

use std::collections::{HashMap, HashSet};
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::Arc;
use std::time::Duration;

use anyhow::Context as _;
use crossbeam_channel::{Receiver, Sender};
use notify::Watcher as _;
use time::OffsetDateTime;

use crate::config::SpoolConfig;
use crate::event::{self, Event};
use crate::reload::{Live, Settings};
use crate::routing;
use crate::store::{IngestBatch, Rejection, RoutedEvent, SpoolPosition, StoreFull, StoreHandle};
use aside::{Aside, SetAside};
use dir::{Entry, SpoolDir};

const REJECTED_DIR: &str = "rejected";
const DONE_DIR: &str = "done";
/// Wait before trying again after the store refused a batch (disk full, say).
const STORE_RETRY: Duration = Duration::from_secs(1);
/// How often the error saying input waits for `[storage] max_size` is repeated.
const FULL_REMINDER: Duration = Duration::from_secs(60);

/// Tells a running spool to look again, or to stop.
#[derive(Clone)]
pub struct SpoolControl {
    wake: Sender<()>,
    stopping: Arc<AtomicBool>,
}

impl SpoolControl {
    /// Asks the spool to stop after the batch it is committing.
    pub fn stop(&self) {
        self.stopping.store(true, Ordering::SeqCst);
        let _ = self.wake.send(());
    }
}

pub struct Spool {
    /// Taken from `live` at each scan; `dir` stays the one the spool was opened on.
    config: SpoolConfig,
    live: Live,
    /// The settings the batch being built is routed with, held until the batch is
    /// committed so a reload can tell when no batch routed with old settings is left.
    routing: Option<Arc<Settings>>,
    store: StoreHandle,
    /// The spool directory, opened once.
    dir: SpoolDir,
    /// Read positions of tailed files, by file key (device and inode).
    positions: HashMap<String, SpoolPosition>,
    /// Tailed lines over `max_event_bytes` being skipped, by file key.
    long_lines: HashMap<String, tail::LongLine>,
    /// Files reported once and set aside instead of taken.
    aside: SetAside,
    /// A pass left work that the next one goes on with at once.
    more: bool,
    stopping: Arc<AtomicBool>,
    /// While the store refuses input for `[storage] max_size`: when that was last logged.
    /// `None` while it takes input.
    full_since: Option<std::time::Instant>,
    /// The store refused input during this pass: the rest of the pass waits too.
    refused_this_pass: bool,
    wake: Receiver<()>,
    /// Whose read positions this spool's are (see [`owner_of`]): empty on SQLite.
    owner: String,
    // Held so notifications keep flowing; dropped with the spool.
    _watcher: notify::RecommendedWatcher,
}

/// On a store several nodes share, each node's spool positions carry its own prefix, the
/// host name and the spool directory (`node-a/var/lib/posthorn/spool#`), so that two
/// machines' files with the same device and inode numbers are never confused, and a node
/// forgets only positions of its own. Empty on SQLite, whose store has one node.
fn owner_of(store: &StoreHandle, dir: &std::path::Path) -> String {
    if !store.is_shared() {
        return String::new();
    }
    let host = std::fs::read_to_string("/proc/sys/kernel/hostname")
        .map(|h| h.trim().to_owned())
        .ok()
        .filter(|h| !h.is_empty())
        .unwrap_or_else(|| "localhost".into());
    let dir = std::fs::canonicalize(dir).unwrap_or_else(|_| dir.to_path_buf());
    format!("{host}{}#", dir.display())
}

/// The positions of the node `owner` among every position in the store. On a shared
/// store a position with no owner (copied by `migrate-store` from a one-node SQLite
/// store) is taken by the first node to start, under its own name; returns the keys it
/// took over, to forget.
fn own_positions(
    owner: &str,
    positions: Vec<SpoolPosition>,
) -> (HashMap<String, SpoolPosition>, Vec<String>) {
    let mut own = HashMap::new();
    let mut adopted = Vec::new();
    for mut position in positions {
        if owner.is_empty() || position.file_key.starts_with(owner) {
            own.insert(position.file_key.clone(), position);
        } else if !position.file_key.contains('#') {
            adopted.push(position.file_key.clone());
            position.file_key = format!("{owner}{}", position.file_key);
            own.insert(position.file_key.clone(), position);
        }
    }
    (own, adopted)
}

impl Spool {
    /// Creates the spool directory if needed and starts watching it.
    pub fn open(
        live: Live,
        store: StoreHandle,
        positions: Vec<SpoolPosition>,
    ) -> anyhow::Result<(Spool, SpoolControl)> {
        let config = live.load().spool.clone();
        std::fs::create_dir_all(&config.dir).with_context(|| {
            format!(
                "while creating the spool directory {}",
                config.dir.display()
            )
        })?;
        let spool_dir = SpoolDir::open(&config.dir)?;
        let (wake_tx, wake) = crossbeam_channel::unbounded();
        let notify_tx = wake_tx.clone();
        let mut watcher =
            notify::recommended_watcher(move |event: notify::Result<notify::Event>| {
                if event.is_ok_and(|event| !is_own_read(&event.kind)) {
                    let _ = notify_tx.send(());
                }
            })
            .context("while setting up filesystem notifications")?;
        watcher
            .watch(&config.dir, notify::RecursiveMode::NonRecursive)
            .with_context(|| {
                format!(
                    "while watching the spool directory {}",
                    config.dir.display()
                )
            })?;
        let stopping = Arc::new(AtomicBool::new(false));
        let owner = owner_of(&store, &config.dir);
        let (positions, adopted) = own_positions(&owner, positions);
        if !adopted.is_empty() {
            // Recorded under this node's name at once (a file read to its end sends no
            // more batches), then the unowned rows go.
            for position in positions.values().filter(|p| {
                adopted
                    .iter()
                    .any(|key| p.file_key.strip_prefix(&owner) == Some(key.as_str()))
            }) {
                let batch = IngestBatch {
                    source: "spool".into(),
                    position: Some(position.clone()),
                    ..Default::default()
                };
                if let Err(err) = store.ingest(batch) {
                    tracing::warn!(
                        "could not take over the spool positions of the SQLite store: {err:#}"
                    );
                }
            }
            tracing::info!(
                positions = adopted.len(),
                "took over the spool read positions copied from the SQLite store"
            );
            store.forget_positions(adopted);
        }
        let spool = Spool {
            config,
            live,
            routing: None,
            store,
            dir: spool_dir,
            positions,
            owner,
            long_lines: HashMap::new(),
            aside: SetAside::default(),
            more: false,
            stopping: Arc::clone(&stopping),
            full_since: None,
            refused_this_pass: false,
            wake,
            _watcher: watcher,
        };
        Ok((
            spool,
            SpoolControl {
                wake: wake_tx,
                stopping,
            },
        ))
    }

    /// Takes files until told to stop.
    pub fn run(mut self) {
        tracing::info!(dir = %self.config.dir.display(), "watching the spool directory");
        while !self.stopped() {
            if let Err(err) = self.scan() {
                tracing::error!("spool scan failed: {err:#}");
            }
            // Sleep until something changes in the directory, or the safety-net rescan;
            // not at all when the pass left work to go on with.
            let sleep = if self.more {
                Duration::ZERO
            } else {
                self.config.rescan_interval
            };
            if self.wake.recv_timeout(sleep).is_ok() {
                while self.wake.try_recv().is_ok() {}
            }
        }
    }

    fn stopped(&self) -> bool {
        self.stopping.load(Ordering::SeqCst)
    }

    /// One pass over the directory: every `.json` file taken, every tailed file read to
    /// its last complete line.
    pub fn scan(&mut self) -> anyhow::Result<()> {
        self.config = SpoolConfig {
            dir: self.config.dir.clone(),
            ..self.live.load().spool.clone()
        };
        self.refused_this_pass = false;
        self.more = false;
        let scanned = self.scan_dir();
        self.routing = None;
        scanned
    }

    fn scan_dir(&mut self) -> anyhow::Result<()> {
        let entries = self.dir.list()?;
        // Tailed files and every file looked at, to forget what left the spool.
        let mut seen = HashSet::new();
        let mut listed = HashSet::new();
        for entry in entries {
            if self.stopped() || self.refused_this_pass {
                return Ok(());
            }
            let key = format!("{}{}", self.owner, entry.info.id.key());
            let json = entry.name.ends_with(".json");
            // A tracked file keeps being read after a rename (rotation), whatever its new
            // name.
            let tailed = !json && (is_ndjson(&entry.name) || self.positions.contains_key(&key));
            if !json && !tailed {
                continue;
            }
            listed.insert(entry.info.id);
            if tailed {
                seen.insert(key.clone());
            }
            if !entry.info.is_file() {
                let reason = format!(
                    "not a regular file but {}; posthorn reads only regular files and follows no links",
                    entry.info.kind_name()
                );
                self.report(&entry, Aside::NotRegular, reason);
                continue;
            }
            let taken = if json {
                self.take_json(&entry)
            } else {
                self.tail(&entry, key)
            };
            match taken {
                Ok(()) => {
                    if self.aside.is_unreadable(entry.info.id) {
                        tracing::info!(file = %self.dir.display(&entry.name), "a spool file set aside as unreadable could be read now");
                        self.aside.forget(entry.info.id);
                    }
                }
                // One file's trouble is that file's: reported once, the others go on, and
                // it is tried again at every pass.
                Err(err) => {
                    let reason = format!(
                        "posthorn cannot read this file ({err:#}); it is skipped until it can"
                    );
                    self.report(&entry, Aside::Unreadable, reason);
                }
            }
        }
        self.aside.keep_only(&listed);
        self.store
            .metrics()
            .spool_aside
            .set_now(self.aside.len() as u64);
        let gone: Vec<String> = self
            .positions
            .keys()
            .filter(|key| !seen.contains(*key))
            .cloned()
            .collect();
        for key in &gone {
            self.positions.remove(key);
        }
        self.long_lines.retain(|key, _| seen.contains(key));
        self.store.forget_positions(gone);
        Ok(())
    }

    /// Reports a file set aside once: logged, kept in the rejections table and counted.
    /// If the store refuses the row, it is reported again at the next pass.
    fn report(&mut self, entry: &Entry, aside: Aside, reason: String) {
        if !self.aside.note(entry.info.id, aside.clone()) {
            return;
        }
        let source = self.dir.display(&entry.name);
        tracing::warn!(file = %source, %reason, "set a spool file aside");
        let batch = IngestBatch {
            source: format!("spool:{source}"),
            rejections: vec![Rejection {
                source,
                line: None,
                reason,
                snippet: String::new(),
            }],
            ..Default::default()
        };
        if matches!(self.commit(batch), Ok(true)) {
            self.store.metrics().spool_aside.reported(aside.label());
        } else {
            self.aside.forget(entry.info.id);
        }
    }

    /// Sets a file aside without a rejections row (logged by the caller), counted once.
    fn set_aside(&mut self, entry: &Entry, aside: Aside) {
        let label = aside.label();
        if self.aside.note(entry.info.id, aside) {
            self.store.metrics().spool_aside.reported(label);
        }
    }

    fn take_event(
        &mut self,
        batch: &mut IngestBatch,
        raw: &[u8],
        now: OffsetDateTime,
        source: &str,
        line: Option<u64>,
        item: Option<&str>,
    ) {
        match event::parse_producer_event(raw, self.config.max_event_bytes, now) {
            Ok(event) => batch.events.push(self.route(event)),
            Err(invalid) => {
                let reason = match item {
                    Some(item) => format!("{item}: {invalid}"),
                    None => invalid.to_string(),
                };
                let at = line.map(|l| format!(":{l}")).unwrap_or_default();
                tracing::warn!(source = %format!("{source}{at}"), %reason, "rejected an event");
                batch.rejections.push(Rejection {
                    source: source.to_string(),
                    line,
                    reason,
                    snippet: event::snippet(raw),
                });
            }
        }
    }

    fn route(&mut self, event: Event) -> RoutedEvent {
        let settings = self.routing.get_or_insert_with(|| self.live.load());
        let subscriptions = routing::route(&settings.subscriptions, &event);
        RoutedEvent {
            event,
            subscriptions,
        }
    }

    /// Commits a batch. `Ok(false)` means the store refused it (logged); the input stays
    /// where it is and is taken again on a later scan.
    fn commit(&mut self, batch: IngestBatch) -> anyhow::Result<bool> {
        if batch.events.is_empty() && batch.rejections.is_empty() && batch.position.is_none() {
            return Ok(true);
        }
        let adds_rows = !batch.events.is_empty() || !batch.rejections.is_empty();
        let stored = self.store.ingest(batch);
        // Stored or refused, the batch is done with the settings it was routed with.
        self.routing = None;
        match stored {
            Ok(report) => {
                tracing::debug!(?report, "spool batch committed");
                if adds_rows && self.full_since.take().is_some() {
                    tracing::info!("the store is under [storage] max_size again; taking input");
                }
                Ok(true)
            }
            Err(err) => {
                match err.downcast_ref::<StoreFull>() {
                    // Said when it starts and every minute after, not at every retry.
                    Some(full) => {
                        self.refused_this_pass = true;
                        if self
                            .full_since
                            .is_none_or(|at| at.elapsed() >= FULL_REMINDER)
                        {
                            tracing::error!("spool input waits: {full}");
                            self.full_since = Some(std::time::Instant::now());
                        }
                    }
                    None => {
                        tracing::error!("could not store spool input; will try again: {err:#}")
                    }
                }
                std::thread::sleep(STORE_RETRY);
                Ok(false)
            }
        }
    }
}

/// Whether a notification is only someone opening or reading: the spool's own scan opens
/// the directory and the files it tails, and waking on that would rescan in a busy loop.
/// A writer closing a file (`Close(Write)`) still counts.
fn is_own_read(kind: &notify::EventKind) -> bool {
    use notify::event::{AccessKind, AccessMode};
    matches!(kind, notify::EventKind::Access(access) if *access != AccessKind::Close(AccessMode::Write))
}

/// Whether a file is tailed by its name: `*.ndjson`, or a rotated `*.ndjson.N`, which
/// may have been rotated while posthorn was not running and so never been read.
fn is_ndjson(name: &str) -> bool {
    match name.rsplit_once(".ndjson") {
        Some((stem, "")) => !stem.is_empty(),
        Some((stem, suffix)) => {
            !stem.is_empty()
                && suffix.len() > 1
                && suffix.starts_with('.')
                && suffix[1..].bytes().all(|b| b.is_ascii_digit())
        }
        None => false,
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn ndjson_files_and_their_numbered_rotations_are_tailed_by_name() {
        for tailed in [
            "events.ndjson",
            "a.b.ndjson",
            "events.ndjson.1",
            "events.ndjson.12",
        ] {
            assert!(is_ndjson(tailed), "{tailed} should be tailed");
        }
        for ignored in [
            ".ndjson",
            "events.ndjson.1.gz",
            "events.ndjson.",
            "events.ndjson.old",
            "x.json",
        ] {
            assert!(!is_ndjson(ignored), "{ignored} should not be tailed");
        }
    }
}

#[cfg(test)]
mod owner_tests {
    use super::*;

    fn at(key: &str) -> SpoolPosition {
        SpoolPosition {
            file_key: key.into(),
            path: "events.ndjson".into(),
            offset: 10,
            line: 1,
            head: Vec::new(),
        }
    }

    #[test]
    fn a_node_takes_its_own_positions_and_the_unowned_ones_but_never_another_nodes() {
        let all = vec![at("a/spool#1:2"), at("b/spool#1:2"), at("1:3")];
        let (own, adopted) = own_positions("a/spool#", all.clone());
        let mut keys: Vec<_> = own.keys().cloned().collect();
        keys.sort();
        assert_eq!(keys, ["a/spool#1:2", "a/spool#1:3"]);
        assert_eq!(adopted, ["1:3"]);
        // On SQLite (no owner) every position is the one node's, as it was.
        let (own, adopted) = own_positions("", all);
        assert_eq!(own.len(), 3);
        assert!(adopted.is_empty());
    }
}
