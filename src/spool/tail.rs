//! Tailing `*.ndjson` files: reading from the recorded position to the last complete line,
//! restarting a file that was truncated or replaced, and skipping a line over
//! `max_event_bytes`: refused once when its newline comes, each of its bytes searched
//! once however slowly it grows.

use std::fs::File;
use std::io::{Read, Seek, SeekFrom};

use anyhow::Context as _;
use time::OffsetDateTime;

use super::dir::Entry;
use super::Spool;
use crate::event::{self, Invalid};
use crate::store::{spool_head, IngestBatch, Rejection, SpoolPosition};

/// How much of a tailed file's start is kept with its position, to tell the same file
/// from a new one that got its inode, or one rewritten past the old position.
const HEAD_BYTES: usize = 1024;
/// How much of an overlong line is searched for its end per pass, so that a huge one (a
/// sparse file of zeros) does not hold up the other files; the next pass goes on at once.
const LONG_LINE_BUDGET: u64 = 64 << 20;
/// How much of an overlong line is kept for its rejection's snippet.
const LONG_LINE_SNIPPET: usize = 1024;

/// A line over `max_event_bytes` whose newline is being looked for.
#[derive(Debug, Clone, Copy)]
pub(super) struct LongLine {
    /// Where it starts: the file's recorded position while it is skipped.
    start: u64,
    /// How far the search for its newline has got.
    scanned: u64,
}

/// What a search for a newline found.
enum Search {
    Found(u64),
    /// No newline up to `scanned`; `spent` when the budget, not the file, ended the search.
    NotYet {
        scanned: u64,
        spent: bool,
    },
}

impl Spool {
    /// Reads a tailed file from its recorded position to its last complete line,
    /// committing a batch per chunk.
    pub(super) fn tail(&mut self, entry: &Entry, key: String) -> anyhow::Result<()> {
        let source = self.dir.display(&entry.name);
        let mut position = self.positions.get(&key).cloned().unwrap_or(SpoolPosition {
            file_key: key.clone(),
            path: source.clone(),
            offset: 0,
            line: 0,
            head: Vec::new(),
        });
        position.path = source.clone();
        if entry.info.size == position.offset && !self.aside.is_unreadable(entry.info.id) {
            return Ok(());
        }
        // Not followed if a link, never waited on if a FIFO, and the file that was listed:
        // since the listing the name may have passed to a new file (rotation), and reading
        // that one from this file's position would skip or garble lines.
        let Some((mut file, opened)) = self
            .dir
            .open_listed(entry)
            .with_context(|| format!("while opening {source}"))?
        else {
            return Ok(());
        };
        if position.offset > 0 {
            let restart = if opened.size < position.offset {
                Some("spool file shrank (truncated)")
            } else if spool_head::print(&read_head(&mut file, spool_head::covered(&position.head))?)
                != position.head
            {
                // An inode reused by a new file, or a file truncated and refilled past
                // the old position between two looks: the size alone cannot tell.
                Some("spool file was replaced or rewritten (its first bytes changed)")
            } else {
                None
            };
            if let Some(why) = restart {
                tracing::warn!(file = %source, "{why}; reading it again from the start");
                self.long_lines.remove(&key);
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
        let mut buf = Vec::new();
        while !self.stopped() {
            let mut batch = IngestBatch {
                source: format!("spool:{source}"),
                ..Default::default()
            };
            let mut next = position.clone();
            let long_line = self
                .long_lines
                .get(&key)
                .copied()
                .filter(|long| long.start == position.offset);
            let more_in_file = match long_line {
                Some(long) => match find_newline(&mut file, long.scanned, LONG_LINE_BUDGET)? {
                    Search::Found(end) => {
                        self.long_lines.remove(&key);
                        next.line += 1;
                        let reason = Invalid::TooLarge {
                            size: (end - long.start) as usize,
                            limit: self.config.max_event_bytes,
                        }
                        .to_string();
                        tracing::warn!(source = %format!("{source}:{}", next.line), %reason, "rejected an event");
                        let start = read_at(&mut file, long.start, LONG_LINE_SNIPPET)?;
                        batch.rejections.push(Rejection {
                            source: source.clone(),
                            line: Some(next.line),
                            reason,
                            snippet: event::snippet(&start),
                        });
                        next.offset = end + 1;
                        true
                    }
                    Search::NotYet { scanned, spent } => {
                        self.long_lines
                            .insert(key.clone(), LongLine { scanned, ..long });
                        // The budget ran out before the file did: the next pass goes on
                        // without waiting.
                        self.more |= spent;
                        break;
                    }
                },
                None => {
                    buf.clear();
                    file.seek(SeekFrom::Start(position.offset))?;
                    (&mut file).take(chunk_size as u64).read_to_end(&mut buf)?;
                    if buf.is_empty() {
                        break;
                    }
                    match super::lines::complete_lines(&buf) {
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
                            // Already too long to ever take: look for its end from here on,
                            // remembering how far the search got, and refuse it once there.
                            tracing::warn!(
                                source = %format!("{source}:{}", position.line + 1),
                                limit = self.config.max_event_bytes,
                                "a line is over spool.max_event_bytes; skipping it up to its newline"
                            );
                            self.long_lines.insert(
                                key.clone(),
                                LongLine {
                                    start: position.offset,
                                    scanned: position.offset + buf.len() as u64,
                                },
                            );
                            continue;
                        }
                        // An incomplete last line: wait for the producer to finish it.
                        None => break,
                    }
                    buf.len() == chunk_size
                }
            };
            let head_len = HEAD_BYTES.min(next.offset as usize);
            if spool_head::covered(&next.head) < head_len {
                next.head = spool_head::print(&read_head(&mut file, head_len)?);
            }
            batch.position = Some(next.clone());
            if !self.commit(batch)? {
                return Ok(());
            }
            position = next;
            self.positions.insert(key.clone(), position.clone());
            if !more_in_file {
                break;
            }
        }
        Ok(())
    }
}

/// The first `len` bytes of a file (fewer if it is shorter).
fn read_head(file: &mut File, len: usize) -> std::io::Result<Vec<u8>> {
    read_at(file, 0, len)
}

/// Up to `len` bytes from `offset`.
fn read_at(file: &mut File, offset: u64, len: usize) -> std::io::Result<Vec<u8>> {
    file.seek(SeekFrom::Start(offset))?;
    let mut bytes = Vec::with_capacity(len);
    file.take(len as u64).read_to_end(&mut bytes)?;
    Ok(bytes)
}

/// Looks for the next newline at or after `from`, reading at most `budget` bytes and
/// never holding more than a block in memory.
fn find_newline(file: &mut File, from: u64, budget: u64) -> std::io::Result<Search> {
    file.seek(SeekFrom::Start(from))?;
    let mut block = vec![0; 64 * 1024];
    let mut at = from;
    while at - from < budget {
        let want = block.len().min((budget - (at - from)) as usize);
        let read = file.read(&mut block[..want])?;
        if read == 0 {
            return Ok(Search::NotYet {
                scanned: at,
                spent: false,
            });
        }
        if let Some(i) = block[..read].iter().position(|&b| b == b'\n') {
            return Ok(Search::Found(at + i as u64));
        }
        at += read as u64;
    }
    Ok(Search::NotYet {
        scanned: at,
        spent: true,
    })
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::io::Write as _;

    #[test]
    fn the_search_for_a_newline_stops_at_its_budget_and_goes_on_from_there() {
        let mut file = tempfile::tempfile().unwrap();
        file.write_all(&[b'x'; 300_000]).unwrap();
        file.write_all(b"\nnext\n").unwrap();
        let Search::NotYet { scanned, spent } = find_newline(&mut file, 0, 100_000).unwrap() else {
            panic!("found a newline within the first 100000 bytes");
        };
        assert_eq!((scanned, spent), (100_000, true));
        let Search::Found(end) = find_newline(&mut file, scanned, 1 << 20).unwrap() else {
            panic!("no newline found");
        };
        assert_eq!(end, 300_000);
        let Search::NotYet { scanned, spent } = find_newline(&mut file, 300_006, 1 << 20).unwrap()
        else {
            panic!("a newline past the end");
        };
        assert_eq!((scanned, spent), (300_006, false));
    }
}
