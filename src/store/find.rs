//! Finding things by what an operator has in hand: an id that may be an event's, a
//! delivery's or a conversation's (the admin page's search box), and the recent events a
//! subscription's scope is checked against before it is saved (`crate::preview`).

use crate::store::db::{params, OptionalExtension};
use serde::{Deserialize, Serialize};

use super::query::QueryError;
use super::Reader;

/// Events of one conversation counted at most, so a search stays an index probe.
pub const CONVERSATION_COUNT_CAP: u64 = 1000;

/// One thing a search term names.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(tag = "kind", rename_all = "snake_case")]
pub enum Found {
    /// An event with this id.
    Event {
        id: String,
        event_type: String,
        conversation_id: Option<String>,
        received_at: i64,
    },
    /// A delivery with this (numeric) id.
    Delivery {
        id: i64,
        event_id: String,
        subscription: String,
        state: String,
    },
    /// A conversation some stored event belongs to; `events` is capped at
    /// [`CONVERSATION_COUNT_CAP`].
    Conversation { id: String, events: u64 },
}

/// A stored event as the subscription matcher sees it, without its body (read one at a
/// time with [`Reader::event_body`], so a walk holds one body at most).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct StoredEvent {
    pub seq: i64,
    pub id: String,
    pub event_type: String,
    pub conversation_id: Option<String>,
    pub project_id: Option<String>,
    pub received_at: i64,
    pub source: String,
    /// The body's length in bytes; 0 once retention dropped it.
    pub body_bytes: u64,
}

impl Reader {
    /// Everything `term` is the exact id of: an event, a delivery (when it is a whole
    /// number), a conversation. Each is one probe of a unique or covering index.
    pub fn find(&self, term: &str) -> Result<Vec<Found>, QueryError> {
        let conn = &self.conn;
        let mut found = Vec::new();
        let event = conn
            .prepare_cached(
                "SELECT id, type, conversation_id, received_at FROM events WHERE id = ?1",
            )?
            .query_row(params![term], |row| {
                Ok(Found::Event {
                    id: row.get(0)?,
                    event_type: row.get(1)?,
                    conversation_id: row.get(2)?,
                    received_at: row.get(3)?,
                })
            })
            .optional()?;
        found.extend(event);
        if let Some(id) = term.parse::<i64>().ok().filter(|id| *id > 0) {
            let delivery = conn
                .prepare_cached(
                    "SELECT id, event_id, subscription, state FROM deliveries WHERE id = ?1",
                )?
                .query_row(params![id], |row| {
                    Ok(Found::Delivery {
                        id: row.get(0)?,
                        event_id: row.get(1)?,
                        subscription: row.get(2)?,
                        state: row.get(3)?,
                    })
                })
                .optional()?;
            found.extend(delivery);
        }
        let events: u64 = conn
            .prepare_cached(
                "SELECT COUNT(*) FROM
                     (SELECT 1 FROM events WHERE conversation_id = ?1 LIMIT ?2) AS capped",
            )?
            .query_row(params![term, CONVERSATION_COUNT_CAP as i64], |row| {
                row.get(0)
            })?;
        if events > 0 {
            found.push(Found::Conversation {
                id: term.to_string(),
                events,
            });
        }
        Ok(found)
    }

    /// Up to `limit` events received at or after `since_ms`, newest first, starting after
    /// `after` (the `(received_at, seq)` of the last event of the previous call). Read
    /// through `events_received`, so the walk stops at `since_ms` however long the
    /// history behind it.
    pub fn recent_events(
        &self,
        since_ms: i64,
        after: Option<(i64, i64)>,
        limit: usize,
    ) -> Result<Vec<StoredEvent>, QueryError> {
        let (at, seq) = after.unwrap_or((i64::MAX, i64::MAX));
        Ok(self
            .conn
            .prepare_cached(
                "SELECT seq, id, type, conversation_id, project_id, received_at, source,
                        CASE WHEN payload_dropped_at IS NULL THEN octet_length(body)
                             ELSE 0 END
                 FROM events
                 WHERE received_at >= ?1 AND received_at <= ?2
                       AND (received_at < ?2 OR seq < ?3)
                 ORDER BY received_at DESC, seq DESC LIMIT ?4",
            )?
            .query_map(params![since_ms, at, seq, limit as i64], |row| {
                Ok(StoredEvent {
                    seq: row.get(0)?,
                    id: row.get(1)?,
                    event_type: row.get(2)?,
                    conversation_id: row.get(3)?,
                    project_id: row.get(4)?,
                    received_at: row.get(5)?,
                    source: row.get(6)?,
                    body_bytes: row.get(7)?,
                })
            })?
            .collect::<Result<_, _>>()?)
    }

    /// The body of event `seq`; `None` if retention dropped it (or the event is gone).
    pub fn event_body(&self, seq: i64) -> Result<Option<String>, QueryError> {
        Ok(self
            .conn
            .prepare_cached(
                "SELECT body FROM events WHERE seq = ?1 AND payload_dropped_at IS NULL",
            )?
            .query_row(params![seq], |row| row.get(0))
            .optional()?)
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::store::test_support::{delivery, event, plan, TempStore};

    const NOW: i64 = 1_795_000_000_000;

    #[test]
    fn a_term_finds_the_event_delivery_and_conversation_it_names() {
        let store = TempStore::new();
        let conn = store.conn();
        let seq = event(&conn, "evt_4", "conversation.started", Some("c-9"), NOW);
        let first = delivery(&conn, seq, "crm", "pending", NOW);
        event(&conn, "evt_5", "conversation.ended", Some("c-9"), NOW + 1);
        // An event whose id is also a conversation's and a delivery's.
        let seq = event(
            &conn,
            &first.to_string(),
            "report.generated",
            Some("c-9"),
            NOW,
        );
        delivery(&conn, seq, "wiki", "dead", NOW);
        event(
            &conn,
            "evt_6",
            "report.generated",
            Some(&first.to_string()),
            NOW,
        );
        let reader = store.reader();

        let kinds = |term: &str| -> Vec<String> {
            reader
                .find(term)
                .unwrap()
                .iter()
                .map(|f| serde_json::to_value(f).unwrap()["kind"].to_string())
                .collect()
        };
        assert_eq!(kinds("evt_4"), ["\"event\""]);
        assert_eq!(
            reader.find("c-9").unwrap(),
            [Found::Conversation {
                id: "c-9".into(),
                events: 3
            }]
        );
        assert_eq!(
            kinds(&first.to_string()),
            ["\"event\"", "\"delivery\"", "\"conversation\""]
        );
        assert!(reader.find("evt_404").unwrap().is_empty());
        assert!(reader.find("99").unwrap().is_empty());
        // A glob character is taken as it is written.
        assert!(reader.find("c-*").unwrap().is_empty());
    }

    #[test]
    fn the_event_filter_lists_exactly_that_events_deliveries() {
        use crate::store::DeliveryFilter;
        let store = TempStore::new();
        let conn = store.conn();
        let mut want = Vec::new();
        for n in 0..40i64 {
            // Many deliveries per millisecond, so pages cut through equal times.
            let seq = event(&conn, &format!("e-{n}"), "x.y", Some("c-1"), NOW + n % 3);
            for subscription in ["crm", "wiki", "bot"].iter().take(1 + (n % 3) as usize) {
                let id = delivery(&conn, seq, subscription, "pending", NOW + n % 3);
                if n == 7 || n == 8 {
                    want.push((n, id));
                }
            }
        }
        let reader = store.reader();
        for n in [7, 8] {
            let mut expected: Vec<i64> = want
                .iter()
                .filter(|(m, _)| *m == n)
                .map(|(_, id)| *id)
                .collect();
            expected.sort_by(|a, b| b.cmp(a));
            let mut filter = DeliveryFilter {
                event_id: Some(format!("e-{n}")),
                limit: 1,
                ..Default::default()
            };
            let mut got = Vec::new();
            for _ in 0..10 {
                let page = reader.deliveries(&filter).unwrap();
                got.extend(page.items.iter().map(|d| d.id));
                match page.next_cursor {
                    Some(cursor) => filter.cursor = Some(cursor),
                    None => break,
                }
            }
            assert_eq!(got, expected, "e-{n}");
        }
        let none = DeliveryFilter {
            event_id: Some("e-nope".into()),
            ..Default::default()
        };
        assert!(reader.deliveries(&none).unwrap().items.is_empty());
    }

    #[test]
    fn recent_events_walk_newest_first_and_stop_at_the_window() {
        let store = TempStore::new();
        let conn = store.conn();
        for n in 0..30i64 {
            // Three events per millisecond, so pages cut through equal times.
            event(&conn, &format!("e-{n}"), "x.y", Some("c-1"), NOW - n / 3);
        }
        let reader = store.reader();
        let since = NOW - 7;
        let mut seen = Vec::new();
        let mut after = None;
        for _ in 0..100 {
            let page = reader.recent_events(since, after, 4).unwrap();
            let Some(last) = page.last() else { break };
            after = Some((last.received_at, last.seq));
            seen.extend(page.into_iter().map(|e| (e.received_at, e.seq)));
        }
        let mut expected: Vec<(i64, i64)> = (0..30i64)
            .map(|n| (NOW - n / 3, n + 1))
            .filter(|(at, _)| *at >= since)
            .collect();
        expected.sort_by(|a, b| b.cmp(a));
        assert_eq!(seen, expected);

        let (sql, values) = (
            "SELECT seq FROM events WHERE received_at >= ?1 AND received_at <= ?2
                   AND (received_at < ?2 OR seq < ?3)
             ORDER BY received_at DESC, seq DESC LIMIT ?4",
            vec![
                crate::store::db::OwnedValue::Integer(since),
                crate::store::db::OwnedValue::Integer(NOW),
                crate::store::db::OwnedValue::Integer(5),
                crate::store::db::OwnedValue::Integer(4),
            ],
        );
        let plan = plan(&conn, sql, values);
        assert!(plan.contains("events_received"), "{plan}");
        assert!(!plan.contains("TEMP B-TREE"), "{plan}");
    }
}
