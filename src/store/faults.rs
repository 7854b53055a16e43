//! Store faults that `/healthz` must tell: commits that fail (a full disk, an I/O error,
//! a store made read-only) and corruption found by the integrity check at start. The
//! writer notes each commit's outcome per kind of work; a kind counts as failing from its
//! first failed commit until a commit of the same kind succeeds again, so a small claim
//! that still fits on a full disk does not hide that input cannot be stored.

use std::collections::BTreeMap;
use std::sync::Mutex;

use rusqlite::ErrorCode;

use super::db;

/// Input (or an operator action) not stored because the store cannot write now. Callers
/// answer 503 with `Retry-After`: nothing was stored and the same request can be retried.
#[derive(Debug, thiserror::Error)]
#[error("the store cannot write: {0}; nothing was stored")]
pub struct StoreUnavailable(pub String);

/// Whether `err` is the storage failing (space, I/O, permissions, corruption) rather
/// than the request.
pub(crate) fn is_storage_fault(err: &db::Error) -> bool {
    match err {
        db::Error::Sqlite(err) => is_sqlite_fault(err),
        db::Error::Postgres(err) => is_postgres_fault(err),
        db::Error::NoRow | db::Error::Column { .. } => false,
    }
}

/// The server gone or out of resources: a lost connection, a full disk (class 53), an
/// I/O or system error (58), a shutdown (57P), a read-only server, corrupt data.
fn is_postgres_fault(err: &postgres::Error) -> bool {
    if err.is_closed() {
        return true;
    }
    match err.code() {
        Some(code) => {
            let code = code.code();
            ["53", "58", "08", "57P"]
                .iter()
                .any(|class| code.starts_with(class))
                || matches!(code, "25006" | "XX001" | "XX002")
        }
        // No SQLSTATE: the connection itself failed.
        None => err.as_db_error().is_none(),
    }
}

pub(super) fn is_sqlite_fault(err: &rusqlite::Error) -> bool {
    matches!(
        err.sqlite_error_code(),
        Some(
            ErrorCode::DiskFull
                | ErrorCode::SystemIoFailure
                | ErrorCode::ReadOnly
                | ErrorCode::CannotOpen
                | ErrorCode::DatabaseCorrupt
                | ErrorCode::NotADatabase
                | ErrorCode::PermissionDenied
                | ErrorCode::DatabaseBusy
                | ErrorCode::DatabaseLocked
        )
    )
}

/// Turns a storage failure inside one command into [`StoreUnavailable`] and notes it
/// against `kind` in `noted`; any other error passes unchanged.
pub(super) fn storage_fault(
    err: anyhow::Error,
    kind: &'static str,
    noted: &mut Vec<(&'static str, String)>,
) -> anyhow::Error {
    match err.downcast_ref::<db::Error>() {
        Some(fault) if is_storage_fault(fault) => {
            noted.push((kind, fault.to_string()));
            StoreUnavailable(fault.to_string()).into()
        }
        _ => err,
    }
}

/// Kinds of work posthorn itself tries again (the spool its batch, the scheduler its
/// claims, the workers' outcomes, the pruner): each stays failing until it succeeds. The
/// others (an audit row, an operator action, a setting) are not repeated once their
/// caller has its error, so any later successful commit clears them.
const RETRIED: &[&str] = &["ingest", "claim", "record", "prune"];

/// One kind of work whose commits fail.
#[derive(Debug, Clone, PartialEq, Eq, serde::Serialize)]
pub struct FailingCommits {
    /// `ingest`, `claim`, `record`, ...
    pub kind: &'static str,
    /// Unix ms of the first failure since the last success.
    pub since_ms: i64,
    pub failures: u64,
    pub last_error: String,
}

impl FailingCommits {
    pub fn describe(&self) -> String {
        format!(
            "commits of {} fail ({} in a row, the first {} s ago): {}",
            self.kind,
            self.failures,
            (super::now_ms() - self.since_ms).max(0) / 1000,
            self.last_error
        )
    }
}

/// What the writer and the start-up check found, shared with `/healthz`.
#[derive(Debug, Default)]
pub struct Faults {
    failing: Mutex<BTreeMap<&'static str, FailingCommits>>,
    integrity: Mutex<Option<String>>,
}

impl Faults {
    /// A commit holding work of `kind` failed with `error` at `now_ms`.
    pub(super) fn failed(&self, kind: &'static str, error: &str, now_ms: i64) {
        let mut failing = self.failing.lock().unwrap_or_else(|e| e.into_inner());
        let entry = failing.entry(kind).or_insert_with(|| FailingCommits {
            kind,
            since_ms: now_ms,
            failures: 0,
            last_error: String::new(),
        });
        entry.failures += 1;
        entry.last_error = error.to_string();
    }

    /// A commit holding work of `kind` succeeded: returns whether it had been failing.
    pub(super) fn succeeded(&self, kind: &'static str) -> bool {
        self.failing
            .lock()
            .unwrap_or_else(|e| e.into_inner())
            .remove(kind)
            .is_some()
    }

    /// Every kind of work whose commits fail now.
    pub fn failing(&self) -> Vec<FailingCommits> {
        self.failing
            .lock()
            .unwrap_or_else(|e| e.into_inner())
            .values()
            .cloned()
            .collect()
    }

    /// What the integrity check at start found wrong, if anything.
    pub fn integrity(&self) -> Option<String> {
        self.integrity
            .lock()
            .unwrap_or_else(|e| e.into_inner())
            .clone()
    }

    pub(super) fn set_integrity(&self, problem: Option<String>) {
        *self.integrity.lock().unwrap_or_else(|e| e.into_inner()) = problem;
    }

    /// Notes a batch's outcome: `kinds` is the work it held, `own_faults` the kinds whose
    /// own work failed for a storage reason although the batch committed. Logs when a
    /// failing kind commits again.
    pub(super) fn note(
        &self,
        kinds: &[&'static str],
        outcome: &db::Result<()>,
        own_faults: &[(&'static str, String)],
        now_ms: i64,
    ) {
        match outcome {
            Err(err) => {
                let error = err.to_string();
                for kind in kinds {
                    self.failed(kind, &error, now_ms);
                }
            }
            Ok(()) => {
                for kind in kinds {
                    match own_faults.iter().find(|(k, _)| k == kind) {
                        Some((_, error)) => self.failed(kind, error, now_ms),
                        None if self.succeeded(kind) => {
                            tracing::info!(kind, "store commits succeed again")
                        }
                        None => {}
                    }
                }
                if !kinds.is_empty() {
                    self.failing
                        .lock()
                        .unwrap_or_else(|e| e.into_inner())
                        .retain(|kind, _| RETRIED.contains(kind) || !own_faults.is_empty());
                }
            }
        }
    }

    /// Every problem, in words, for `/healthz`.
    pub fn problems(&self) -> Vec<String> {
        let mut problems: Vec<String> = self.integrity().into_iter().collect();
        problems.extend(self.failing().iter().map(FailingCommits::describe));
        problems
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_kind_fails_until_its_own_commit_succeeds() {
        let faults = Faults::default();
        assert!(faults.problems().is_empty());
        faults.failed("ingest", "database or disk is full", 1_000);
        faults.failed("ingest", "disk I/O error", 2_000);
        faults.failed("claim", "database or disk is full", 2_000);
        let failing = faults.failing();
        assert_eq!(failing.len(), 2);
        let ingest = failing.iter().find(|f| f.kind == "ingest").unwrap();
        assert_eq!(
            (ingest.since_ms, ingest.failures, ingest.last_error.as_str()),
            (1_000, 2, "disk I/O error")
        );
        // A claim that fits does not clear the ingest.
        assert!(faults.succeeded("claim"));
        assert!(!faults.succeeded("claim"));
        let problems = faults.problems();
        assert_eq!(problems.len(), 1, "{problems:?}");
        assert!(
            problems[0].starts_with("commits of ingest fail (2 in a row"),
            "{problems:?}"
        );
        assert!(faults.succeeded("ingest"));
        assert!(faults.problems().is_empty());
    }

    #[test]
    fn one_off_writes_are_cleared_by_any_later_commit_retried_ones_by_their_own() {
        let faults = Faults::default();
        let full: db::Result<()> = Err(db::Error::Sqlite(rusqlite::Error::SqliteFailure(
            rusqlite::ffi::Error::new(rusqlite::ffi::SQLITE_FULL),
            None,
        )));
        faults.note(&["audit", "ingest"], &full, &[], 1);
        assert_eq!(faults.failing().len(), 2);
        // A claim commits: the audit row is not coming back, the ingest is.
        faults.note(&["claim"], &Ok(()), &[], 2);
        let kinds: Vec<_> = faults.failing().iter().map(|f| f.kind).collect();
        assert_eq!(kinds, ["ingest"]);
        faults.note(&["ingest"], &Ok(()), &[], 3);
        assert!(faults.failing().is_empty());
    }

    #[test]
    fn integrity_problems_come_first() {
        let faults = Faults::default();
        faults.failed("record", "disk I/O error", 0);
        faults.set_integrity(Some("the store is corrupt".into()));
        assert_eq!(faults.problems()[0], "the store is corrupt");
        assert_eq!(faults.problems().len(), 2);
    }

    #[test]
    fn storage_faults_are_told_from_request_errors() {
        let fault = |code| {
            rusqlite::Error::SqliteFailure(rusqlite::ffi::Error::new(code), Some("x".into()))
        };
        assert!(is_sqlite_fault(&fault(rusqlite::ffi::SQLITE_FULL)));
        assert!(is_sqlite_fault(&fault(rusqlite::ffi::SQLITE_IOERR)));
        assert!(is_sqlite_fault(&fault(rusqlite::ffi::SQLITE_READONLY)));
        assert!(is_sqlite_fault(&fault(rusqlite::ffi::SQLITE_CORRUPT)));
        assert!(!is_sqlite_fault(&fault(rusqlite::ffi::SQLITE_CONSTRAINT)));
        assert!(!is_sqlite_fault(&rusqlite::Error::QueryReturnedNoRows));
    }
}
