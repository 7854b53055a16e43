//! Requests refused before anyone proved who they are (a wrong signature on
//! `/v1/sources/{name}`, a wrong token, a wrong password, a foreign `Host`): anyone can send
//! them, as fast as they like, so none may cost a durable write each. Each is counted in
//! memory for `/metrics`; per route and reason only the first of each minute is kept
//! (rejections row, audit row or log line, as the caller decides), and the rest of that
//! minute becomes one summary with its count when the minute is over. The table has one
//! entry per route and reason, and routes are the configured ones, so it stays small.

use std::collections::{BTreeMap, HashMap};
use std::fmt::Write as _;
use std::sync::Mutex;
use std::time::{Duration, Instant};

/// How long refusals of one kind are gathered into one summary.
pub const WINDOW: Duration = Duration::from_secs(60);

type Key = (String, &'static str);

#[derive(Default)]
pub struct Refusals {
    /// Every refusal since start, for `/metrics`.
    counts: Mutex<BTreeMap<Key, u64>>,
    /// Open windows: since when, and how many came after the first.
    windows: Mutex<HashMap<Key, Window>>,
    /// Summaries of windows replaced before `closed` took them.
    late: Mutex<Vec<Summary>>,
}

struct Window {
    opened: Instant,
    opened_at_ms: i64,
    more: u64,
}

/// What a minute of refusals added up to after its first, which was kept on its own.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Summary {
    pub route: String,
    pub reason: &'static str,
    pub more: u64,
    /// When the window opened (unix ms).
    pub since_ms: i64,
}

impl Summary {
    pub fn describe(&self) -> String {
        let since =
            time::OffsetDateTime::from_unix_timestamp_nanos(i128::from(self.since_ms) * 1_000_000)
                .ok()
                .and_then(|t| {
                    t.format(&time::format_description::well_known::Rfc3339)
                        .ok()
                })
                .unwrap_or_else(|| self.since_ms.to_string());
        format!(
            "{} more requests refused ({}) in the minute from {since}; the first was kept on its own",
            self.more, self.reason
        )
    }
}

impl Refusals {
    /// Counts one refusal for `/metrics` only.
    pub fn count(&self, route: &str, reason: &'static str) {
        let mut counts = self.counts.lock().unwrap_or_else(|e| e.into_inner());
        *counts.entry((route.to_string(), reason)).or_default() += 1;
    }

    /// Counts one refusal; `true` when it is the first of its minute and should be kept
    /// (recorded, logged), `false` when it only adds to the minute's summary.
    pub fn note(&self, route: &str, reason: &'static str, now: Instant) -> bool {
        self.count(route, reason);
        let mut windows = self.windows.lock().unwrap_or_else(|e| e.into_inner());
        match windows.get_mut(&(route.to_string(), reason)) {
            Some(window) if now.duration_since(window.opened) < WINDOW => {
                window.more += 1;
                false
            }
            // A window past its minute that `closed` has not taken yet: its summary is
            // left for `closed`, and this one opens the next.
            _ => {
                let previous = windows.insert(
                    (route.to_string(), reason),
                    Window {
                        opened: now,
                        opened_at_ms: crate::store::now_ms(),
                        more: 0,
                    },
                );
                if let Some(previous) = previous.filter(|w| w.more > 0) {
                    let mut late = self.late.lock().unwrap_or_else(|e| e.into_inner());
                    late.push(Summary {
                        route: route.to_string(),
                        reason,
                        more: previous.more,
                        since_ms: previous.opened_at_ms,
                    });
                }
                true
            }
        }
    }

    /// Takes the windows whose minute is over; those that gathered more than their first
    /// come back as summaries.
    pub fn closed(&self, now: Instant) -> Vec<Summary> {
        let mut windows = self.windows.lock().unwrap_or_else(|e| e.into_inner());
        let mut done = Vec::new();
        windows.retain(|(route, reason), window| {
            let open = now.duration_since(window.opened) < WINDOW;
            if !open && window.more > 0 {
                done.push(Summary {
                    route: route.clone(),
                    reason,
                    more: window.more,
                    since_ms: window.opened_at_ms,
                });
            }
            open
        });
        drop(windows);
        let mut late = self.late.lock().unwrap_or_else(|e| e.into_inner());
        done.append(&mut late);
        done
    }

    /// The `posthorn_refused_requests_total` lines of `/metrics`.
    pub fn render(&self, out: &mut String) {
        let counts = self.counts.lock().unwrap_or_else(|e| e.into_inner());
        out.push_str(
            "# HELP posthorn_refused_requests_total Requests refused before authentication \
             (wrong signature, token or password, foreign Host, throttled), by route and reason.\n\
             # TYPE posthorn_refused_requests_total counter\n",
        );
        for ((route, reason), n) in counts.iter() {
            let _ = writeln!(
                out,
                "posthorn_refused_requests_total{{route=\"{}\",reason=\"{}\"}} {n}",
                escape(route),
                escape(reason)
            );
        }
    }
}

fn escape(label: &str) -> String {
    label
        .replace('\\', "\\\\")
        .replace('"', "\\\"")
        .replace('\n', "\\n")
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_flood_keeps_one_refusal_and_one_summary_per_minute() {
        let refusals = Refusals::default();
        let start = Instant::now();
        let kept = (0..1000)
            .filter(|_| refusals.note("source:echo", "unverified", start))
            .count();
        assert_eq!(kept, 1, "only the first of the minute is kept");
        assert!(
            refusals.closed(start).is_empty(),
            "the minute is still open"
        );
        let summaries = refusals.closed(start + WINDOW);
        assert_eq!(summaries.len(), 1);
        assert_eq!(summaries[0].more, 999);
        assert!(summaries[0]
            .describe()
            .starts_with("999 more requests refused (unverified)"));
        assert!(refusals.closed(start + WINDOW * 2).is_empty(), "taken once");
        assert!(refusals.note("source:echo", "unverified", start + WINDOW * 2));
        let mut metrics = String::new();
        refusals.render(&mut metrics);
        assert!(
            metrics.contains(
                "posthorn_refused_requests_total{route=\"source:echo\",reason=\"unverified\"} 1001"
            ),
            "{metrics}"
        );
    }

    #[test]
    fn each_route_and_reason_has_its_own_minute_and_a_late_summary_is_not_lost() {
        let refusals = Refusals::default();
        let start = Instant::now();
        assert!(refusals.note("inlet", "wrong token", start));
        assert!(refusals.note("inlet", "missing token", start));
        assert!(refusals.note("login", "wrong password", start));
        assert!(!refusals.note("inlet", "wrong token", start));
        // The next minute's first arrives before `closed` ran.
        assert!(refusals.note("inlet", "wrong token", start + WINDOW));
        let summaries = refusals.closed(start + WINDOW);
        assert_eq!(summaries.len(), 1, "{summaries:?}");
        assert_eq!((summaries[0].reason, summaries[0].more), ("wrong token", 1));
    }
}
