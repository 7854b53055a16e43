//! What the spool set aside instead of taking, remembered so that each such file is
//! reported once (a log line, a rejections row or a count in `/metrics`) rather than at
//! every pass: files posthorn may not read, entries with an input's name that are not
//! regular files, and files whose content is done with (stored or rejected) but which could
//! not be removed or moved to `done/` or `rejected/`. A file leaves the list when it is
//! taken after all or when it leaves the spool. The list lives in memory: after a restart
//! each file still set aside is reported once more.

use std::collections::{HashMap, HashSet};

use super::dir::{Entry, FileId};

/// Why a file is set aside.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Aside {
    /// It could not be opened or read; tried again at every pass.
    Unreadable,
    /// A link, FIFO, directory or the like; never opened.
    NotRegular,
    /// Its content is done with; what is left is getting it out of the way, tried again
    /// quietly at every pass. The size and time tell a rewritten file from the one read.
    DoneWith {
        size: u64,
        mtime_ns: i128,
        then: Then,
    },
}

impl Aside {
    /// The `reason` label of `posthorn_spool_files_set_aside_total`.
    pub fn label(&self) -> &'static str {
        match self {
            Aside::Unreadable => "unreadable",
            Aside::NotRegular => "not_regular",
            Aside::DoneWith { .. } => "not_moved",
        }
    }
}

/// What becomes of a `.json` file once its content is done with.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Then {
    Remove,
    MoveToDone,
    /// Into `rejected/`, beside a note holding `note`.
    MoveToRejected {
        note: String,
    },
}

#[derive(Debug, Default)]
pub struct SetAside {
    files: HashMap<FileId, Aside>,
}

impl SetAside {
    /// Records why `id` is set aside; `true` when that was not known yet (report it).
    pub fn note(&mut self, id: FileId, aside: Aside) -> bool {
        self.files.insert(id, aside.clone()).as_ref() != Some(&aside)
    }

    pub fn forget(&mut self, id: FileId) {
        self.files.remove(&id);
    }

    pub fn is_unreadable(&self, id: FileId) -> bool {
        self.files.get(&id) == Some(&Aside::Unreadable)
    }

    /// For a file whose content was done with before and which has not changed since:
    /// what is left to do with it. A file that changed is forgotten (and read again).
    pub fn done_with(&mut self, entry: &Entry) -> Option<Then> {
        match self.files.get(&entry.info.id) {
            Some(Aside::DoneWith {
                size,
                mtime_ns,
                then,
            }) => {
                if *size == entry.info.size && *mtime_ns == entry.info.mtime_ns {
                    Some(then.clone())
                } else {
                    self.files.remove(&entry.info.id);
                    None
                }
            }
            _ => None,
        }
    }

    /// Forgets every file no longer in the spool.
    pub fn keep_only(&mut self, listed: &HashSet<FileId>) {
        self.files.retain(|id, _| listed.contains(id));
    }

    pub fn len(&self) -> usize {
        self.files.len()
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::spool::dir::Info;

    fn entry(ino: u64, size: u64) -> Entry {
        Entry {
            name: "x.json".into(),
            info: Info {
                id: FileId { dev: 1, ino },
                kind: rustix::fs::FileType::RegularFile,
                mode: 0o644,
                uid: 0,
                size,
                mtime_ns: 5,
            },
        }
    }

    #[test]
    fn a_problem_is_new_once_until_it_is_forgotten() {
        let mut aside = SetAside::default();
        let id = entry(1, 0).info.id;
        assert!(aside.note(id, Aside::Unreadable));
        assert!(!aside.note(id, Aside::Unreadable));
        assert!(aside.is_unreadable(id));
        aside.forget(id);
        assert!(aside.note(id, Aside::Unreadable));
        aside.keep_only(&HashSet::new());
        assert_eq!(aside.len(), 0);
    }

    #[test]
    fn a_file_done_with_is_read_again_only_once_it_changed() {
        let mut aside = SetAside::default();
        let done = Aside::DoneWith {
            size: 10,
            mtime_ns: 5,
            then: Then::Remove,
        };
        aside.note(entry(1, 10).info.id, done);
        assert_eq!(aside.done_with(&entry(1, 10)), Some(Then::Remove));
        assert_eq!(aside.done_with(&entry(1, 11)), None);
        assert_eq!(aside.len(), 0, "a changed file is forgotten");
    }
}
