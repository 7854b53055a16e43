//! File descriptors: raising the soft limit to the hard one at start (systemd's default
//! soft limit of 1,024 is far below what a server needs), and the share of it HTTP
//! connections may take, so that slow or many clients can never leave the store, the
//! spool and the delivery workers without descriptors ("Too many open files").

use rustix::process::{getrlimit, setrlimit, Resource, Rlimit};

/// Descriptors kept back from HTTP connections for everything else: the store (a few per
/// SQLite connection, readers included), the spool (its directory, its watch, the files
/// it reads), logging, the runtimes' own.
const RESERVED: u64 = 256;
/// Kept back per delivery worker: its connection to a receiver, and one being replaced.
const PER_DELIVERY_WORKER: u64 = 2;
/// Fewest connections the server is left with, however low the limit.
const MIN_CONNECTIONS: usize = 16;
/// Most connections whatever the limit: actix's own default per worker, times two.
const MAX_CONNECTIONS: usize = 50_000;

/// Raises the soft `RLIMIT_NOFILE` to the hard limit and returns the soft limit in force
/// afterwards (`None` if it cannot be read or is unlimited). Failing to raise it is not
/// fatal (a sandbox may forbid it; systemd sets it with `LimitNOFILE=`): the connection cap
/// then follows the lower limit.
pub fn raise() -> Option<u64> {
    let limit = getrlimit(Resource::Nofile);
    if let (Some(soft), Some(hard)) = (limit.current, limit.maximum) {
        if soft < hard {
            let raised = Rlimit {
                current: Some(hard),
                maximum: Some(hard),
            };
            if let Err(err) = setrlimit(Resource::Nofile, raised) {
                tracing::warn!(
                    soft,
                    hard,
                    "could not raise the open file limit to the hard limit: {err}"
                );
            }
        }
    }
    getrlimit(Resource::Nofile).current
}

/// How many HTTP connections fit in `limit` descriptors beside everything else, or
/// `configured` if that is lower.
pub fn connection_budget(
    limit: Option<u64>,
    delivery_workers: usize,
    configured: Option<usize>,
) -> usize {
    let reserved = RESERVED + PER_DELIVERY_WORKER * delivery_workers as u64;
    let fits = limit.map_or(MAX_CONNECTIONS, |limit| {
        usize::try_from(limit.saturating_sub(reserved)).unwrap_or(MAX_CONNECTIONS)
    });
    let budget = fits.clamp(MIN_CONNECTIONS, MAX_CONNECTIONS);
    configured.map_or(budget, |c| c.min(budget))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn connections_leave_room_for_the_rest() {
        // systemd's default soft limit with the default 32 delivery workers.
        assert_eq!(connection_budget(Some(1024), 32, None), 1024 - 256 - 64);
        assert_eq!(connection_budget(Some(1024), 32, Some(100)), 100);
        assert_eq!(
            connection_budget(Some(1024), 32, Some(5000)),
            704,
            "never above the fd budget"
        );
        assert_eq!(connection_budget(Some(100), 32, None), MIN_CONNECTIONS);
        assert_eq!(connection_budget(Some(1 << 20), 32, None), MAX_CONNECTIONS);
        assert_eq!(connection_budget(None, 32, None), MAX_CONNECTIONS);
    }

    #[test]
    fn raising_keeps_a_limit_in_force() {
        let before = getrlimit(Resource::Nofile);
        let after = raise();
        assert!(after >= before.current, "{after:?} < {:?}", before.current);
    }
}
