//! Spool ingest: the directory the platform writes events into. `*.json` files (one event
//! or an array, written whole and renamed into place) are taken and removed; `*.ndjson`
//! files are tailed line by line, their read position committed in the same transaction
//! as the events read. Files are noticed through filesystem notifications, with a
//! periodic rescan as a safety net.

use std::collections::{HashMap, HashSet};
use std::fs::{self, File, Metadata};
use std::io::{Read, Seek, SeekFrom};
use std::os::unix::fs::MetadataExt as _;
use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::Arc;
use std::time::Duration;

use anyhow::Context as _;
use crossbeam_channel::{Receiver, Sender};
use notify::Watcher as _;
use serde_json::value::RawValue;
use time::OffsetDateTime;

pub mod lines;

use crate::config::SpoolConfig;
use crate::event::{self, Event, Invalid};
use crate::reload::{Live, Settings};
use crate::routing;
use crate::store::{IngestBatch, Rejection, RoutedEvent, SpoolPosition, StoreFull, StoreHandle};

const REJECTED_DIR: &str = "rejected";
const DONE_DIR: &str = "done";
/// How much of a tailed file's start is kept with its position, to tell the same file
/// from a new one that got its inode, or one rewritten past the old position.
const HEAD_BYTES: usize = 1024;
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
    /// Read positions of tailed files, by file key (device and inode).
    positions: HashMap<String, SpoolPosition>,
    stopping: Arc<AtomicBool>,
    /// While the store refuses input for `[storage] max_size`: when that was last logged.
    /// `None` while it takes input.
    full_since: Option<std::time::Instant>,
    /// The store refused input during this pass: the rest of the pass waits too.
    refused_this_pass: bool,
    wake: Receiver<()>,
    // Held so notifications keep flowing; dropped with the spool.
    _watcher: notify::RecommendedWatcher,
}

impl Spool {
    /// Creates the spool directory if needed and starts watching it.
    pub fn open(
        live: Live,
        store: StoreHandle,
        positions: Vec<SpoolPosition>,
    ) -> anyhow::Result<(Spool, SpoolControl)> {
        let config = live.load().spool.clone();
        fs::create_dir_all(&config.dir).with_context(|| {
            format!(
                "while creating the spool directory {}",
                config.dir.display()
            )
        })?;
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
        let spool = Spool {
            config,
            live,
            routing: None,
            store,
            positions: positions
                .into_iter()
                .map(|p| (p.file_key.clone(), p))
                .collect(),
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
            // Sleep until something changes in the directory, or the safety-net rescan.
            if self.wake.recv_timeout(self.config.rescan_interval).is_ok() {
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
        let scanned = self.scan_dir();
        self.routing = None;
        scanned
    }

    fn scan_dir(&mut self) -> anyhow::Result<()> {
        let mut entries: Vec<(PathBuf, Metadata)> = fs::read_dir(&self.config.dir)
            .with_context(|| format!("while listing {}", self.config.dir.display()))?
            .filter_map(Result::ok)
            .filter_map(|entry| Some((entry.path(), entry.metadata().ok()?)))
            .filter(|(_, meta)| meta.is_file())
            .collect();
        entries.sort_by(|a, b| a.0.cmp(&b.0));

        let mut seen = HashSet::new();
        for (path, meta) in entries {
            if self.stopped() || self.refused_this_pass {
                return Ok(());
            }
            let Some(name) = path.file_name().and_then(|n| n.to_str()) else {
                continue;
            };
            if name.starts_with('.') {
                continue; // a producer's temp file, not ready yet
            }
            let key = file_key(&meta);
            if name.ends_with(".json") {
                self.take_json(&path, &meta)?;
            } else if is_ndjson(name) || self.positions.contains_key(&key) {
                // A tracked file keeps being read after a rename (rotation), whatever
                // its new name.
                seen.insert(key.clone());
                self.tail(&path, key, &meta)?;
            }
        }
        let gone: Vec<String> = self
            .positions
            .keys()
            .filter(|key| !seen.contains(*key))
            .cloned()
            .collect();
        for key in &gone {
            self.positions.remove(key);
        }
        self.store.forget_positions(gone);
        Ok(())
    }

    /// Reads a tailed file from its recorded position to its last complete line,
    /// committing a batch per chunk.
    fn tail(&mut self, path: &Path, key: String, meta: &Metadata) -> anyhow::Result<()> {
        let source = path.display().to_string();
        let mut position = self.positions.get(&key).cloned().unwrap_or(SpoolPosition {
            file_key: key.clone(),
            path: source.clone(),
            offset: 0,
            line: 0,
            head: Vec::new(),
        });
        position.path = source.clone();
        if meta.len() == position.offset {
            return Ok(());
        }
        let mut file = match File::open(path) {
            Ok(file) => file,
            Err(err) if err.kind() == std::io::ErrorKind::NotFound => return Ok(()),
            Err(err) => return Err(err).with_context(|| format!("while opening {source}")),
        };
        // Since the listing, the name may have passed to a new file (rotation); reading
        // that one from this file's position would skip or garble lines.
        let opened = file
            .metadata()
            .with_context(|| format!("while reading the metadata of {source}"))?;
        if file_key(&opened) != key {
            return Ok(());
        }
        if position.offset > 0 {
            let restart = if opened.len() < position.offset {
                Some("spool file shrank (truncated)")
            } else if read_head(&mut file, position.head.len())? != position.head {
                // An inode reused by a new file, or a file truncated and refilled past
                // the old position between two looks: the size alone cannot tell.
                Some("spool file was replaced or rewritten (its first bytes changed)")
            } else {
                None
            };
            if let Some(why) = restart {
                tracing::warn!(file = %source, "{why}; reading it again from the start");
                position = SpoolPosition {
                    offset: 0,
                    line: 0,
                    head: Vec::new(),
                    ..position
                };
                // Record the restart now: once the producer writes past the old position,
                // the truncation can no longer be seen, and the file would be read from
                // there.
                let reset = IngestBatch {
                    source: format!("spool:{source}"),
                    position: Some(position.clone()),
                    ..Default::default()
                };
                if !self.commit(reset)? {
                    return Ok(());
                }
                self.positions.insert(key.clone(), position.clone());
            }
        }
        let chunk_size = self.config.max_event_bytes + 64 * 1024;
        let mut buf = Vec::with_capacity(chunk_size);
        while !self.stopped() {
            buf.clear();
            file.seek(SeekFrom::Start(position.offset))?;
            (&mut file).take(chunk_size as u64).read_to_end(&mut buf)?;
            if buf.is_empty() {
                break;
            }
            let mut batch = IngestBatch {
                source: format!("spool:{source}"),
                ..Default::default()
            };
            let mut next = position.clone();
            match lines::complete_lines(&buf) {
                Some(complete) => {
                    let now = OffsetDateTime::now_utc();
                    for (line, raw) in complete.events {
                        let line = Some(next.line + line);
                        self.take_event(&mut batch, raw, now, &source, line, None);
                    }
                    next.line += complete.lines;
                    next.offset += complete.consumed as u64;
                }
                None if buf.len() > self.config.max_event_bytes => {
                    // A line already too long to ever take: skip it once it ends.
                    let Some(end) = find_newline(&mut file, position.offset + buf.len() as u64)?
                    else {
                        break;
                    };
                    next.line += 1;
                    let reason = Invalid::TooLarge {
                        size: (end - position.offset) as usize,
                        limit: self.config.max_event_bytes,
                    }
                    .to_string();
                    tracing::warn!(source = %format!("{source}:{}", next.line), %reason, "rejected an event");
                    batch.rejections.push(Rejection {
                        source: source.clone(),
                        line: Some(next.line),
                        reason,
                        snippet: event::snippet(&buf),
                    });
                    next.offset = end + 1;
                }
                // An incomplete last line: wait for the producer to finish it.
                None => break,
            }
            let head_len = HEAD_BYTES.min(next.offset as usize);
            if next.head.len() < head_len {
                next.head = read_head(&mut file, head_len)?;
            }
            batch.position = Some(next.clone());
            if !self.commit(batch)? {
                return Ok(());
            }
            position = next;
            self.positions.insert(key.clone(), position.clone());
            if buf.len() < chunk_size {
                break;
            }
        }
        Ok(())
    }

    /// Takes a whole `.json` file: one event or an array of them. A file that is not
    /// usable as a whole is moved to `rejected/` with a note; bad items of a good array
    /// are rejected one by one.
    fn take_json(&mut self, path: &Path, meta: &Metadata) -> anyhow::Result<()> {
        let source = path.display().to_string();
        if meta.len() > self.config.max_file_bytes as u64 {
            let reason = format!(
                "file is {} bytes, over the limit of {} bytes (spool.max_file_bytes)",
                meta.len(),
                self.config.max_file_bytes
            );
            // Only the start is read, for the operator's snippet.
            let mut head = Vec::new();
            if let Ok(file) = File::open(path) {
                let _ = file.take(1024).read_to_end(&mut head);
            }
            return self.reject_file(path, &reason, &head);
        }
        let bytes = match fs::read(path) {
            Ok(bytes) => bytes,
            Err(err) if err.kind() == std::io::ErrorKind::NotFound => return Ok(()),
            Err(err) => return Err(err).with_context(|| format!("while reading {source}")),
        };
        let now = OffsetDateTime::now_utc();
        let mut batch = IngestBatch {
            source: format!("spool:{source}"),
            ..Default::default()
        };
        match bytes.iter().find(|b| !b.is_ascii_whitespace()) {
            Some(b'[') => {
                let items = std::str::from_utf8(&bytes)
                    .map_err(|e| Invalid::NotUtf8(e.valid_up_to()).to_string())
                    .and_then(|text| {
                        serde_json::from_str::<Vec<Box<RawValue>>>(text)
                            .map_err(|e| format!("not a valid JSON array: {e}"))
                    });
                let items = match items {
                    Ok(items) => items,
                    Err(reason) => return self.reject_file(path, &reason, &bytes),
                };
                for (index, item) in items.iter().enumerate() {
                    let item_label = format!("item {index}");
                    self.take_event(
                        &mut batch,
                        item.get().as_bytes(),
                        now,
                        &source,
                        None,
                        Some(&item_label),
                    );
                }
            }
            _ => match event::parse_event(&bytes, self.config.max_event_bytes, now) {
                Ok(event) => batch.events.push(self.route(event)),
                Err(invalid) => return self.reject_file(path, &invalid.to_string(), &bytes),
            },
        }
        if !self.commit(batch)? {
            return Ok(());
        }
        if self.config.keep_done {
            move_aside(path, &self.config.dir.join(DONE_DIR))?;
        } else if let Err(err) = fs::remove_file(path) {
            if err.kind() != std::io::ErrorKind::NotFound {
                return Err(err)
                    .with_context(|| format!("while removing the consumed file {source}"));
            }
        }
        Ok(())
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
        match event::parse_event(raw, self.config.max_event_bytes, now) {
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

    /// Records a whole file as rejected, then moves it to `rejected/` beside a note.
    fn reject_file(&mut self, path: &Path, reason: &str, bytes: &[u8]) -> anyhow::Result<()> {
        let source = path.display().to_string();
        tracing::warn!(file = %source, %reason, "rejected a spool file");
        let batch = IngestBatch {
            source: format!("spool:{source}"),
            rejections: vec![Rejection {
                source: source.clone(),
                line: None,
                reason: reason.to_string(),
                snippet: event::snippet(bytes),
            }],
            ..Default::default()
        };
        if !self.commit(batch)? {
            return Ok(());
        }
        let moved = move_aside(path, &self.config.dir.join(REJECTED_DIR))?;
        let mut note = moved.clone().into_os_string();
        note.push(".reason.txt");
        fs::write(&note, format!("{source}\nrejected: {reason}\n"))
            .with_context(|| format!("while writing {}", Path::new(&note).display()))?;
        Ok(())
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

/// Identifies a file across renames: device and inode.
fn file_key(meta: &Metadata) -> String {
    format!("{}:{}", meta.dev(), meta.ino())
}

/// The first `len` bytes of a file (fewer if it is shorter).
fn read_head(file: &mut File, len: usize) -> std::io::Result<Vec<u8>> {
    file.seek(SeekFrom::Start(0))?;
    let mut head = Vec::with_capacity(len);
    file.take(len as u64).read_to_end(&mut head)?;
    Ok(head)
}

/// Finds the next newline at or after `from`, without holding the line in memory.
fn find_newline(file: &mut File, from: u64) -> std::io::Result<Option<u64>> {
    file.seek(SeekFrom::Start(from))?;
    let mut block = vec![0; 64 * 1024];
    let mut at = from;
    loop {
        let read = file.read(&mut block)?;
        if read == 0 {
            return Ok(None);
        }
        if let Some(i) = block[..read].iter().position(|&b| b == b'\n') {
            return Ok(Some(at + i as u64));
        }
        at += read as u64;
    }
}

/// Moves `path` into `dir` under its own name, or a numbered one if that is taken.
fn move_aside(path: &Path, dir: &Path) -> anyhow::Result<PathBuf> {
    fs::create_dir_all(dir).with_context(|| format!("while creating {}", dir.display()))?;
    let name = path
        .file_name()
        .unwrap_or_default()
        .to_string_lossy()
        .into_owned();
    let mut target = dir.join(&name);
    let mut n = 1;
    while target.exists() {
        target = dir.join(format!("{name}.{n}"));
        n += 1;
    }
    fs::rename(path, &target)
        .with_context(|| format!("while moving {} to {}", path.display(), target.display()))?;
    Ok(target)
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
