//! Whole `*.json` files: one event or an array of them, read in one bounded read, then
//! removed (or moved to `done/`); a file not usable as a whole is moved to `rejected/`
//! beside a note. A file whose content is done with but which cannot be got out of the
//! way stays where it is, set aside, and is not read again.

use std::io::Read as _;

use anyhow::Context as _;
use serde_json::value::RawValue;
use time::OffsetDateTime;

use super::aside::{Aside, Then};
use super::dir::Entry;
use super::{Spool, DONE_DIR, REJECTED_DIR};
use crate::event::{self, Invalid};
use crate::store::{IngestBatch, Rejection};

/// How much of a file over `max_file_bytes` is read, for the operator's snippet.
const OVERSIZED_HEAD: usize = 1024;

impl Spool {
    /// Takes a whole `.json` file: one event or an array of them. Bad items of a good
    /// array are rejected one by one.
    pub(super) fn take_json(&mut self, entry: &Entry) -> anyhow::Result<()> {
        if let Some(then) = self.aside.done_with(entry) {
            self.dispose(entry, then, true);
            return Ok(());
        }
        let source = self.dir.display(&entry.name);
        let Some((file, opened)) = self
            .dir
            .open_listed(entry)
            .with_context(|| format!("while opening {source}"))?
        else {
            return Ok(());
        };
        let limit = self.config.max_file_bytes;
        // Bounded whatever the file does after it was looked at: it may still grow.
        let read_limit = if opened.size > limit as u64 {
            OVERSIZED_HEAD
        } else {
            limit + 1
        };
        let mut bytes = Vec::new();
        file.take(read_limit as u64)
            .read_to_end(&mut bytes)
            .with_context(|| format!("while reading {source}"))?;
        if opened.size > limit as u64 || bytes.len() > limit {
            let reason = format!(
                "file is {} bytes, over the limit of {limit} bytes (spool.max_file_bytes)",
                opened.size.max(bytes.len() as u64),
            );
            bytes.truncate(OVERSIZED_HEAD);
            return self.reject_file(entry, &reason, &bytes);
        }
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
                    Err(reason) => return self.reject_file(entry, &reason, &bytes),
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
            _ => match event::parse_producer_event(&bytes, self.config.max_event_bytes, now) {
                Ok(event) => batch.events.push(self.route(event)),
                Err(invalid) => return self.reject_file(entry, &invalid.to_string(), &bytes),
            },
        }
        if !self.commit(batch)? {
            return Ok(());
        }
        let then = if self.config.keep_done {
            Then::MoveToDone
        } else {
            Then::Remove
        };
        self.dispose(entry, then, false);
        Ok(())
    }

    /// Records a whole file as rejected, then moves it to `rejected/` beside a note; if
    /// `rejected/` cannot be used, the recorded reason says the file stays in the spool.
    fn reject_file(&mut self, entry: &Entry, reason: &str, bytes: &[u8]) -> anyhow::Result<()> {
        let source = self.dir.display(&entry.name);
        let mut recorded = reason.to_string();
        if let Err(why) = self.dir.own_dir(REJECTED_DIR) {
            recorded.push_str(&format!("; the file stays in the spool: {why}"));
        }
        tracing::warn!(file = %source, reason = %recorded, "rejected a spool file");
        let batch = IngestBatch {
            source: format!("spool:{source}"),
            rejections: vec![Rejection {
                source: source.clone(),
                line: None,
                reason: recorded,
                snippet: event::snippet(bytes),
            }],
            ..Default::default()
        };
        if !self.commit(batch)? {
            return Ok(());
        }
        let note = format!("{source}\nrejected: {reason}\n");
        self.dispose(entry, Then::MoveToRejected { note }, false);
        Ok(())
    }

    /// Gets a file whose content is done with out of the way. When that fails the first
    /// time, it is logged and counted once and the file is set aside, not read again;
    /// `again` is a later, quiet try.
    pub(super) fn dispose(&mut self, entry: &Entry, then: Then, again: bool) {
        let source = self.dir.display(&entry.name);
        let done = match &then {
            Then::Remove => self
                .dir
                .remove_listed(entry)
                .map(|()| None)
                .map_err(|err| format!("cannot remove it: {err}")),
            Then::MoveToDone => self.dir.own_dir(DONE_DIR).and_then(|done| {
                self.dir
                    .move_listed(entry, &done)
                    .map_err(|err| format!("cannot move it to {DONE_DIR}/: {err}"))
            }),
            Then::MoveToRejected { note } => self.dir.own_dir(REJECTED_DIR).and_then(|rejected| {
                let moved = self
                    .dir
                    .move_listed(entry, &rejected)
                    .map_err(|err| format!("cannot move it to {REJECTED_DIR}/: {err}"))?;
                if let Some(moved) = &moved {
                    let note_name = format!("{moved}.reason.txt");
                    // Only posthorn writes in its own rejected/, and never over a name.
                    if let Err(err) = rejected.write_new(&note_name, note) {
                        tracing::warn!(file = %source, "could not write {REJECTED_DIR}/{note_name}: {err}");
                    }
                }
                Ok(moved)
            }),
        };
        match done {
            Ok(moved) => {
                if again {
                    match moved {
                        Some(to) => {
                            tracing::info!(file = %source, "moved a file set aside, now as {to}")
                        }
                        None => {
                            tracing::info!(file = %source, "a file set aside is out of the way now")
                        }
                    }
                }
                self.aside.forget(entry.info.id);
            }
            Err(why) if !again => {
                tracing::error!(file = %source, "{why}; it stays in the spool and is not read again");
                let aside = Aside::DoneWith {
                    size: entry.info.size,
                    mtime_ns: entry.info.mtime_ns,
                    then,
                };
                self.set_aside(entry, aside);
            }
            Err(why) => tracing::debug!(file = %source, "{why}; still set aside"),
        }
    }
}
