//! HTTP inlet, the domain side: turning a posted body into events (one object, a JSON
//! array, or NDJSON), checking the bearer token, and storing a batch all or nothing
//! through the single writer. The web module only reads the request and maps these
//! results to statuses; the source profiles (ECHO, generic) live in `sources`.

pub mod canonical;
pub mod json;
pub mod sources;

use std::collections::HashMap;

use serde_json::value::RawValue;
use sha2::{Digest as _, Sha256};
use time::OffsetDateTime;

use crate::config::Secret;
use crate::event::{self, Event};
use crate::reload::Live;
use crate::routing;
use crate::store::{IngestBatch, Rejection, RoutedEvent, StoreFull, StoreHandle, StoreUnavailable};

/// How the body of `POST /v1/events` is laid out, from its content type.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum BodyFormat {
    /// `application/json`: one event object or an array of them.
    Json,
    /// `application/x-ndjson`: one event object per line.
    Ndjson,
}

impl BodyFormat {
    /// The format for a content type's essence (no parameters), if it is one we take.
    pub fn from_mime(essence: &str) -> Option<BodyFormat> {
        match essence.to_ascii_lowercase().as_str() {
            "application/json" => Some(BodyFormat::Json),
            "application/x-ndjson" | "application/ndjson" | "application/jsonl" => {
                Some(BodyFormat::Ndjson)
            }
            _ => None,
        }
    }
}

/// One bad item of a batch: its 0-based index, its line for NDJSON, and why.
#[derive(Debug, Clone, PartialEq, Eq, serde::Serialize)]
pub struct ItemError {
    pub index: usize,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub line: Option<usize>,
    pub reason: String,
}

/// What a stored batch held: ids newly stored, and ids the store already had.
#[derive(Debug, Clone, Default, PartialEq, Eq, serde::Serialize)]
pub struct Accepted {
    pub accepted: Vec<String>,
    pub duplicates: Vec<String>,
}

/// Why a batch was not stored.
#[derive(Debug, thiserror::Error)]
pub enum StoreError {
    /// `[storage] max_size` refuses input for now.
    #[error(transparent)]
    Full(#[from] StoreFull),
    /// The store cannot write now (disk full, I/O error, read-only): retry later.
    #[error(transparent)]
    Unavailable(#[from] StoreUnavailable),
    /// Anything else (logged by the caller, never shown).
    #[error("{0:#}")]
    Internal(anyhow::Error),
}

/// Parses every item of a body. Any bad item fails the whole body, naming every bad one.
pub fn parse_batch(
    body: &[u8],
    format: BodyFormat,
    max_event_bytes: usize,
    received_at: OffsetDateTime,
) -> Result<Vec<Event>, Vec<ItemError>> {
    let body_problem = |reason: String| {
        vec![ItemError {
            index: 0,
            line: None,
            reason,
        }]
    };
    let items: Vec<(Option<usize>, &[u8])> = match format {
        BodyFormat::Json => {
            let first = body.iter().find(|b| !b.is_ascii_whitespace());
            if first == Some(&b'[') {
                let text = std::str::from_utf8(body).map_err(|e| {
                    body_problem(event::Invalid::NotUtf8(e.valid_up_to()).to_string())
                })?;
                let raw: Vec<&RawValue> = serde_json::from_str(text).map_err(|e| {
                    body_problem(format!("the body is not a JSON array of events: {e}"))
                })?;
                raw.into_iter()
                    .map(|r| (None, r.get().as_bytes()))
                    .collect()
            } else {
                vec![(None, body)]
            }
        }
        BodyFormat::Ndjson => body
            .split(|&b| b == b'\n')
            .enumerate()
            .filter(|(_, line)| !line.trim_ascii().is_empty())
            .map(|(i, line)| (Some(i + 1), line))
            .collect(),
    };
    if items.is_empty() {
        return Err(body_problem("the body holds no events".into()));
    }
    let mut events = Vec::with_capacity(items.len());
    let mut problems = Vec::new();
    for (index, (line, raw)) in items.into_iter().enumerate() {
        match event::parse_producer_event(raw, max_event_bytes, received_at) {
            Ok(event) => events.push(event),
            Err(invalid) => problems.push(ItemError {
                index,
                line,
                reason: invalid.to_string(),
            }),
        }
    }
    if problems.is_empty() {
        Ok(events)
    } else {
        Err(problems)
    }
}

/// Routes `events` with the settings in force and stores them in one transaction;
/// returns once the commit is durable. Blocks: call it off the async runtime.
pub fn store_batch(
    store: &StoreHandle,
    live: &Live,
    source: &str,
    events: Vec<Event>,
) -> Result<Accepted, StoreError> {
    let ids: Vec<String> = events.iter().map(|e| e.id.clone()).collect();
    // Held until the commit, like the spool's batches: a reload that removes a
    // subscription waits for it before cancelling that subscription's deliveries.
    let settings = live.load();
    let routed = events
        .into_iter()
        .map(|event| RoutedEvent {
            subscriptions: routing::route(&settings.subscriptions, &event),
            event,
        })
        .collect();
    let batch = IngestBatch {
        source: source.to_string(),
        events: routed,
        ..Default::default()
    };
    let report = store
        .ingest(batch)
        .map_err(|err| match err.downcast::<StoreFull>() {
            Ok(full) => StoreError::Full(full),
            Err(err) => match err.downcast::<StoreUnavailable>() {
                Ok(unavailable) => StoreError::Unavailable(unavailable),
                Err(err) => StoreError::Internal(err),
            },
        })?;
    drop(settings);
    let mut duplicates: HashMap<&str, usize> = HashMap::new();
    for id in &report.duplicate_ids {
        *duplicates.entry(id.as_str()).or_default() += 1;
    }
    let mut accepted = Accepted::default();
    for id in ids {
        match duplicates.get_mut(id.as_str()) {
            Some(left) if *left > 0 => {
                *left -= 1;
                accepted.duplicates.push(id);
            }
            _ => accepted.accepted.push(id),
        }
    }
    Ok(accepted)
}

/// Keeps a refused request in `rejections`, where the admin page shows it: its source,
/// why, and the start of its body. Refusals are the operator's business (a platform
/// sending a shape posthorn cannot take, a secret that differs on both sides), so they
/// are stored, not only logged; a failure to store one is logged and goes no further.
/// Blocks: call it off the async runtime.
pub fn record_refusal(store: &StoreHandle, source: &str, reason: String, body: &[u8]) {
    let batch = IngestBatch {
        source: source.to_string(),
        rejections: vec![Rejection {
            source: source.to_string(),
            line: None,
            reason,
            snippet: event::snippet(body),
        }],
        ..Default::default()
    };
    if let Err(err) = store.ingest(batch) {
        tracing::warn!(
            source,
            "could not keep the refused request in rejections: {err:#}"
        );
    }
}

/// One line naming a batch's bad items (the first few; the 400 answer has them all).
pub fn describe_items(items: &[ItemError]) -> String {
    const SHOWN: usize = 5;
    let mut parts: Vec<String> = items
        .iter()
        .take(SHOWN)
        .map(|item| match item.line {
            Some(line) => format!("item {} (line {line}): {}", item.index, item.reason),
            None => format!("item {}: {}", item.index, item.reason),
        })
        .collect();
    if items.len() > SHOWN {
        parts.push(format!("and {} more", items.len() - SHOWN));
    }
    format!("batch refused, nothing stored: {}", parts.join("; "))
}

/// Why a request to `POST /v1/events` is not authorised.
#[derive(Debug, Clone, Copy, PartialEq, Eq, thiserror::Error)]
pub enum AuthError {
    #[error(
        "the inlet has no token configured, so it refuses every request; set one of token, \
         token_env or token_file under [inlet] in the config and restart posthorn"
    )]
    NotConfigured,
    #[error("missing bearer token: send Authorization: Bearer <[inlet] token>")]
    Missing,
    #[error("wrong bearer token")]
    Wrong,
}

/// Checks an `Authorization` header against the configured token, in constant time.
pub fn check_token(token: Option<&Secret>, authorization: Option<&str>) -> Result<(), AuthError> {
    let token = token.ok_or(AuthError::NotConfigured)?;
    let given = authorization
        .and_then(|value| {
            let (scheme, rest) = value.trim().split_once(' ')?;
            scheme.eq_ignore_ascii_case("bearer").then(|| rest.trim())
        })
        .ok_or(AuthError::Missing)?;
    if constant_time_eq(given.as_bytes(), token.expose().as_bytes()) {
        Ok(())
    } else {
        Err(AuthError::Wrong)
    }
}

/// Compares two secrets without an early exit: both are hashed to 32 bytes first, so
/// neither where they differ nor (beyond the hashing) their lengths show in the time.
pub fn constant_time_eq(a: &[u8], b: &[u8]) -> bool {
    let (a, b) = (Sha256::digest(a), Sha256::digest(b));
    a.iter()
        .zip(b.iter())
        .fold(0u8, |acc, (x, y)| acc | (x ^ y))
        == 0
}

/// Lower-case hex of `sha256(bytes)`, cut to `chars` characters: derived event ids.
pub fn sha256_hex(bytes: &[u8], chars: usize) -> String {
    let mut out = String::with_capacity(64);
    for byte in Sha256::digest(bytes) {
        out.push_str(&format!("{byte:02x}"));
    }
    out.truncate(chars);
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    fn now() -> OffsetDateTime {
        OffsetDateTime::from_unix_timestamp(1_795_000_000).unwrap()
    }

    #[test]
    fn one_object_an_array_and_ndjson_all_parse() {
        let one = br#"{"id":"a","type":"x"}"#;
        assert_eq!(
            parse_batch(one, BodyFormat::Json, 1 << 20, now())
                .unwrap()
                .len(),
            1
        );
        let array = br#" [{"id":"a","type":"x"}, {"id":"b","type":"x"}]"#;
        assert_eq!(
            parse_batch(array, BodyFormat::Json, 1 << 20, now())
                .unwrap()
                .len(),
            2
        );
        let ndjson = b"{\"id\":\"a\",\"type\":\"x\"}\n\n{\"id\":\"b\",\"type\":\"x\"}\n";
        let events = parse_batch(ndjson, BodyFormat::Ndjson, 1 << 20, now()).unwrap();
        assert_eq!(events[1].id, "b");
    }

    #[test]
    fn every_bad_item_is_named_by_index() {
        let body = br#"[{"id":"a","type":"x"}, {"type":"x"}, 5, {"id":"d","type":"conversation.started"}]"#;
        let errors = parse_batch(body, BodyFormat::Json, 1 << 20, now()).unwrap_err();
        let indexes: Vec<usize> = errors.iter().map(|e| e.index).collect();
        assert_eq!(indexes, [1, 2, 3]);
        assert!(errors[0].reason.contains("\"id\" is missing"), "{errors:?}");
        let ndjson = b"{\"id\":\"a\",\"type\":\"x\"}\n\nnot json\n";
        let errors = parse_batch(ndjson, BodyFormat::Ndjson, 1 << 20, now()).unwrap_err();
        assert_eq!((errors[0].index, errors[0].line), (1, Some(3)));
        assert!(parse_batch(b"[]", BodyFormat::Json, 1 << 20, now()).is_err());
        assert!(parse_batch(b"\n\n", BodyFormat::Ndjson, 1 << 20, now()).is_err());
    }

    #[test]
    fn tokens_need_the_bearer_scheme_and_the_exact_value() {
        let token = Secret::new("s3cret-token");
        assert_eq!(
            check_token(None, Some("Bearer x")),
            Err(AuthError::NotConfigured)
        );
        assert_eq!(check_token(Some(&token), None), Err(AuthError::Missing));
        assert_eq!(
            check_token(Some(&token), Some("s3cret-token")),
            Err(AuthError::Missing)
        );
        assert_eq!(
            check_token(Some(&token), Some("Bearer s3cret-tokeN")),
            Err(AuthError::Wrong)
        );
        assert_eq!(
            check_token(Some(&token), Some("Bearer s3cret")),
            Err(AuthError::Wrong)
        );
        assert_eq!(
            check_token(Some(&token), Some("bearer s3cret-token")),
            Ok(())
        );
    }

    #[test]
    fn secrets_print_redacted() {
        let token = Secret::new("s3cret-token");
        assert_eq!(format!("{token}"), "[redacted]");
        assert_eq!(format!("{token:?}"), "[redacted]");
    }
}
