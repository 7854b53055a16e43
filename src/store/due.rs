//! Hints from the store writer to the scheduler: which subscriptions got work due now in
//! the commits since the scheduler last looked. The writer notes them after a commit and
//! then wakes the scheduler, which claims for those subscriptions only, instead of
//! asking the store about every subscription at every wake-up.

use std::collections::HashSet;
use std::sync::Mutex;

#[derive(Debug, Default)]
pub struct DueHints {
    noted: Mutex<Noted>,
}

/// What was noted since the last [`DueHints::take`].
#[derive(Debug, Default, PartialEq, Eq)]
pub struct Noted {
    pub subscriptions: HashSet<String>,
    /// An operator action made work due somewhere (retry, replay, resume): look at all.
    pub everything: bool,
}

impl DueHints {
    pub(super) fn note<'a>(&self, subscriptions: impl IntoIterator<Item = &'a String>) {
        let mut noted = self.noted.lock().unwrap_or_else(|e| e.into_inner());
        for name in subscriptions {
            if !noted.subscriptions.contains(name) {
                noted.subscriptions.insert(name.clone());
            }
        }
    }

    pub(super) fn note_everything(&self) {
        self.noted
            .lock()
            .unwrap_or_else(|e| e.into_inner())
            .everything = true;
    }

    /// Everything noted so far; the board starts empty again.
    pub fn take(&self) -> Noted {
        std::mem::take(&mut *self.noted.lock().unwrap_or_else(|e| e.into_inner()))
    }
}
