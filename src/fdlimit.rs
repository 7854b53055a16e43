//! File descriptors: raising the soft limit to the hard one at start (systemd's default
//! soft limit of 1,024 is far below what a server needs), and the share of it HTTP
//! connections may take, so that slow or many clients can never leave the store, the
//! spool and the delivery workers without descriptors ("Too many open files").

use rustix::process::{setrlimit, Resource, Rlimit};

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
    if let Some((Some(soft), Some(hard))) = read_limits() {
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
    read_limits().and_then(|(soft, _)| soft)
}

/// The soft and hard open file limits (`None` for unlimited), read from
/// `/proc/self/limits`. Not with getrlimit: the systemd unit's `SystemCallFilter` denies
/// the `prlimit64` call behind it, and rustix's `getrlimit` cannot report that failure.
fn read_limits() -> Option<(Option<u64>, Option<u64>)> {
    let text = std::fs::read_to_string("/proc/self/limits").ok()?;
    parse_limits(&text)
}

fn parse_limits(text: &str) -> Option<(Option<u64>, Option<u64>)> {
    let line = text.lines().find(|l| l.starts_with("Max open files"))?;
    let mut fields = line["Max open files".len()..].split_whitespace();
    let value = |field: Option<&str>| -> Option<Option<u64>> {
        match field? {
            "unlimited" => Some(None),
            n => n.parse().ok().map(Some),
        }
    };
    Some((value(fields.next())?, value(fields.next())?))
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
    fn limits_are_read_from_proc() {
        let text = "Limit                     Soft Limit           Hard Limit           Units\n\
                    Max cpu time              unlimited            unlimited            seconds\n\
                    Max open files            1024                 524288               files\n";
        assert_eq!(parse_limits(text), Some((Some(1024), Some(524288))));
        let unlimited =
            "Max open files            unlimited            unlimited            files\n";
        assert_eq!(parse_limits(unlimited), Some((None, None)));
        assert_eq!(parse_limits("Max processes 5 5\n"), None);
        assert!(read_limits().is_some(), "this process's own limits");
    }

    #[test]
    fn raising_leaves_the_soft_limit_at_the_hard_one() {
        let after = raise();
        let (soft, hard) = read_limits().unwrap();
        assert_eq!(after, soft);
        assert_eq!(
            soft, hard,
            "any process may raise its soft limit up to the hard one"
        );
    }
}
