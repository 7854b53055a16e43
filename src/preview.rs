//! "What would this subscription get?": the stored events of the last day that a
//! subscription (configured, or a draft pasted into the admin page) matches, found with
//! the same matcher that routes live events (`routing::matches`), so a scope is checked
//! before it is saved. The walk is bounded: at most [`SCAN_LIMIT`] events are looked at,
//! read a page at a time, and at most [`SHOW_LIMIT`] matches per subscription are listed.

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
/// Events read per page of the walk, so only one page of bodies is held at a time.
const PAGE: usize = 500;

/// What a preview found.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct Preview {
    /// Events received at or after this time (unix ms) were looked at.
    pub since: i64,
    /// Events looked at.
    pub scanned: u64,
    /// The window held more events than [`SCAN_LIMIT`]: older ones were not looked at.
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
    let mut after = None;
    let mut truncated = false;
    loop {
        let room = SCAN_LIMIT - scanned;
        if room == 0 {
            // One more row would say whether anything was left unread.
            truncated = !reader.recent_events(since, after, 1)?.is_empty();
            break;
        }
        let page = reader.recent_events(since, after, PAGE.min(room))?;
        let Some(last) = page.last() else { break };
        after = Some((last.received_at, last.seq));
        scanned += page.len();
        for stored in page {
            let event = as_event(&stored);
            for (subscription, seen) in candidates.iter().zip(found.iter_mut()) {
                if routing::matches(subscription, &event) {
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
fn as_event(stored: &StoredEvent) -> Event {
    Event {
        id: stored.id.clone(),
        kind: stored.event_type.clone(),
        conversation_id: stored.conversation_id.clone(),
        project_id: stored.project_id.clone(),
        body: stored.body.clone().unwrap_or_default(),
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
