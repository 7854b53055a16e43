//! "What would this subscription get?": the stored events of the last day that a
//! subscription (configured, or a draft pasted into the admin page) matches, found with
//! the same matcher that routes live events (`routing::route`: scope, then `filter`), so
//! a scope is checked before it is saved. The walk is bounded: at most [`SCAN_LIMIT`] events and
//! [`BODY_BUDGET`] bytes of their bodies are read (one body held at a time, since the
//! matcher may look into it), and at most [`SHOW_LIMIT`] matches per subscription are
//! listed.

use serde::Serialize;

use crate::config::Subscription;
use crate::event::Event;
use crate::routing;
use crate::store::{QueryError, Reader, StoredEvent};

/// How far back a preview looks.
pub const WINDOW_MS: i64 = 24 * 60 * 60 * 1000;
/// Most events one preview looks at (newest first).
pub const SCAN_LIMIT: usize = 20_000;
/// Most matching events listed per subscription (all are counted).
pub const SHOW_LIMIT: usize = 100;
/// Bytes of event bodies one preview reads at most (a day of 16 MiB ECHO transcripts
/// must not read gigabytes).
pub const BODY_BUDGET: u64 = 256 << 20;
/// Events read per page of the walk (without bodies).
const PAGE: usize = 500;

/// What a preview found.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct Preview {
    /// Events received at or after this time (unix ms) were looked at.
    pub since: i64,
    /// Events looked at.
    pub scanned: u64,
    /// The window held more events than [`SCAN_LIMIT`] (or their bodies more than
    /// [`BODY_BUDGET`] bytes): older ones were not looked at.
    pub truncated: bool,
    pub scan_limit: usize,
    pub subscriptions: Vec<SubscriptionPreview>,
}

/// One subscription's matches.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct SubscriptionPreview {
    pub name: String,
    /// `enabled = false` in the config; the events are those it would take enabled.
    pub enabled: bool,
    /// Events it matches among those looked at.
    pub matched: u64,
    /// The newest of them, at most [`SHOW_LIMIT`].
    pub events: Vec<PreviewEvent>,
}

#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct PreviewEvent {
    pub id: String,
    pub event_type: String,
    pub conversation_id: Option<String>,
    pub project_id: Option<String>,
    pub received_at: i64,
    pub source: String,
}

/// The events of the [`WINDOW_MS`] before `now_ms` each of `subscriptions` matches.
pub fn preview(
    reader: &Reader,
    subscriptions: &[Subscription],
    now_ms: i64,
) -> Result<Preview, QueryError> {
    walk(reader, subscriptions, now_ms, BODY_BUDGET)
}

fn walk(
    reader: &Reader,
    subscriptions: &[Subscription],
    now_ms: i64,
    body_budget: u64,
) -> Result<Preview, QueryError> {
    // Matched as if enabled: the question is the scope, not whether it is switched on.
    let candidates: Vec<Subscription> = subscriptions
        .iter()
        .map(|s| Subscription {
            enabled: true,
            ..s.clone()
        })
        .collect();
    let mut found: Vec<SubscriptionPreview> = subscriptions
        .iter()
        .map(|s| SubscriptionPreview {
            name: s.name.clone(),
            enabled: s.enabled,
            matched: 0,
            events: Vec::new(),
        })
        .collect();
    let since = now_ms - WINDOW_MS;
    let mut scanned = 0usize;
    let mut body_bytes = 0u64;
    let mut after = None;
    let mut truncated = false;
    'walk: loop {
        let room = SCAN_LIMIT - scanned;
        if room == 0 {
            // One more row would say whether anything was left unread.
            truncated = !reader.recent_events(since, after, 1)?.is_empty();
            break;
        }
        let page = reader.recent_events(since, after, PAGE.min(room))?;
        let Some(last) = page.last() else { break };
        after = Some((last.received_at, last.seq));
        for stored in page {
            body_bytes += stored.body_bytes;
            if body_bytes > body_budget {
                truncated = true;
                break 'walk;
            }
            scanned += 1;
            let body = match stored.body_bytes {
                0 => None,
                _ => reader.event_body(stored.seq)?,
            };
            let event = as_event(&stored, body);
            // Scope and each subscription's `filter` on the body, as live routing does.
            let taken = routing::route(&candidates, &event);
            for (subscription, seen) in candidates.iter().zip(found.iter_mut()) {
                if taken.contains(&subscription.name) {
                    seen.matched += 1;
                    if seen.events.len() < SHOW_LIMIT {
                        seen.events.push(shown(&stored));
                    }
                }
            }
        }
    }
    Ok(Preview {
        since,
        scanned: scanned as u64,
        truncated,
        scan_limit: SCAN_LIMIT,
        subscriptions: found,
    })
}

/// The stored event as the router saw it when it came in: the same fields and the same
/// body (empty once retention dropped it).
fn as_event(stored: &StoredEvent, body: Option<String>) -> Event {
    Event {
        id: stored.id.clone(),
        kind: stored.event_type.clone(),
        conversation_id: stored.conversation_id.clone(),
        project_id: stored.project_id.clone(),
        body: body.unwrap_or_default(),
    }
}

fn shown(stored: &StoredEvent) -> PreviewEvent {
    PreviewEvent {
        id: stored.id.clone(),
        event_type: stored.event_type.clone(),
        conversation_id: stored.conversation_id.clone(),
        project_id: stored.project_id.clone(),
        received_at: stored.received_at,
        source: stored.source.clone(),
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::config::draft::parse_draft;
    use crate::store::test_support::{event, TempStore};

    const NOW: i64 = 1_795_000_000_000;

    fn subscription(name: &str, scope: &str, events: &str) -> Subscription {
        let text = format!(
            "[[subscription]]\nname = {name:?}\nurl = \"https://a.example.org/\"\n{scope}\nevents = {events}\n"
        );
        parse_draft(&text)
            .unwrap_or_else(|p| panic!("{p:?}"))
            .remove(0)
    }

    #[test]
    fn a_preview_counts_the_last_day_lists_the_newest_and_stops_at_its_bounds() {
        let store = TempStore::new();
        let conn = store.conn();
        let tx = conn.transaction().unwrap();
        // Older than the window: never looked at.
        event(&tx, "old", "x.y", Some("c-1"), NOW - WINDOW_MS - 1);
        // More events in the window than one preview looks at, the newest last.
        let total = SCAN_LIMIT as i64 + 5;
        for n in 0..total {
            let conversation = if n % 100 == 0 { "c-1" } else { "c-2" };
            event(
                &tx,
                &format!("e-{n}"),
                "x.y",
                Some(conversation),
                NOW - total + n,
            );
        }
        tx.commit().unwrap();
        let reader = store.reader();
        let subscriptions = [
            subscription("one", "conversations = [\"c-1\"]", "[\"x.*\"]"),
            subscription("none", "conversations = [\"c-1\"]", "[\"report.*\"]"),
        ];

        let preview = preview(&reader, &subscriptions, NOW).unwrap();
        assert_eq!(preview.scanned, SCAN_LIMIT as u64);
        assert!(preview.truncated);
        assert_eq!(preview.since, NOW - WINDOW_MS);
        // The newest SCAN_LIMIT events: e-5 .. e-20004; c-1 holds every hundredth.
        let one = &preview.subscriptions[0];
        let expected = (5..total).filter(|n| n % 100 == 0).count() as u64;
        assert_eq!(one.matched, expected);
        assert_eq!(one.events.len(), SHOW_LIMIT);
        assert_eq!(one.events[0].id, format!("e-{}", (total - 1) / 100 * 100));
        assert!(one
            .events
            .iter()
            .all(|e| e.conversation_id.as_deref() == Some("c-1")));
        assert_eq!(preview.subscriptions[1].matched, 0);
        assert!(preview.subscriptions[1].events.is_empty());
    }

    #[test]
    fn a_preview_stops_at_its_budget_of_body_bytes() {
        let store = TempStore::new();
        let conn = store.conn();
        // Bodies of 12 bytes (`{"id":"e-N"}`), newest first e-9 .. e-0.
        for n in 0..10 {
            event(&conn, &format!("e-{n}"), "x.y", Some("c-1"), NOW - 100 + n);
        }
        let all = subscription("all", "conversations = [\"*\"]", "[\"*\"]");
        let reader = store.reader();
        let preview = walk(&reader, std::slice::from_ref(&all), NOW, 5 * 12).unwrap();
        assert!(preview.truncated);
        assert_eq!(preview.scanned, 5);
        let ids: Vec<&str> = preview.subscriptions[0]
            .events
            .iter()
            .map(|e| e.id.as_str())
            .collect();
        assert_eq!(ids, ["e-9", "e-8", "e-7", "e-6", "e-5"]);
        let preview = walk(&reader, &[all], NOW, 10 * 12).unwrap();
        assert!(!preview.truncated);
        assert_eq!(preview.scanned, 10);
    }

    #[test]
    fn a_disabled_subscription_is_matched_as_if_enabled() {
        let store = TempStore::new();
        let conn = store.conn();
        event(&conn, "e-1", "x.y", Some("c-1"), NOW - 10);
        let mut off = subscription("off", "conversations = [\"*\"]", "[\"*\"]");
        off.enabled = false;
        let preview = preview(&store.reader(), &[off], NOW).unwrap();
        assert!(!preview.truncated);
        assert_eq!(preview.scanned, 1);
        let off = &preview.subscriptions[0];
        assert_eq!((off.enabled, off.matched), (false, 1));
    }

    #[test]
    fn a_preview_applies_the_subscriptions_filter_on_the_body() {
        let store = TempStore::new();
        let conn = store.conn();
        for n in 0..4 {
            event(&conn, &format!("e-{n}"), "x.y", Some("c-1"), NOW - 10 + n);
        }
        let filtered = subscription(
            "filtered",
            "conversations = [\"*\"]\nfilter = [{ path = \"/id\", in = [\"e-1\", \"e-3\"] }]",
            "[\"*\"]",
        );
        let preview = preview(&store.reader(), &[filtered], NOW).unwrap();
        assert_eq!(preview.scanned, 4);
        let ids: Vec<&str> = preview.subscriptions[0]
            .events
            .iter()
            .map(|e| e.id.as_str())
            .collect();
        assert_eq!(ids, ["e-3", "e-1"]);
    }
}
