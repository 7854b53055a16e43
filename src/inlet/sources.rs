//! Inlet sources: a platform's own webhooks, verified and mapped to the envelope. The
//! `echo` profile knows ECHO's payload and signature (HMAC-SHA256 over Python's canonical
//! `json.dumps` of the payload, see `canonical`); the `generic` profile maps any JSON with
//! JSON pointers and verifies Standard Webhooks or hex HMAC signatures. A signed time in
//! the payload must fall within the source's replay window. The payload is read into the
//! exact tree of `json` and passed on as the bytes the platform sent, so no number or
//! escape changes. Pure functions: headers come in through a lookup closure.

use std::time::Duration;

use serde::Serialize;
use serde_json::value::RawValue;
use time::format_description::well_known::Rfc3339;
use time::OffsetDateTime;

use super::json::{self, Json};
use super::{canonical, constant_time_eq, sha256_hex};
use crate::config::{GenericSource, InletSource, SourceProfile, TypeFrom, Verify};
use crate::event::{self, Event};
use crate::sign::{self, SigningKey};

/// How far a Standard Webhooks `webhook-timestamp` may be from now.
const TOLERANCE_SECS: i64 = 5 * 60;
/// ECHO's headers.
pub const ECHO_SIGNATURE_HEADER: &str = "X-Webhook-Signature";
pub const ECHO_EVENT_HEADER: &str = "X-Webhook-Event";
/// Hex characters of the body hash in a derived event id (128 bits).
const DERIVED_ID_CHARS: usize = 32;

/// Why a source request was refused. The text is safe to show: it never holds a secret.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum SourceError {
    /// Signature missing, malformed, stale or wrong: 401.
    #[error("{0}")]
    Unverified(String),
    /// The body cannot be mapped to an event: 400.
    #[error("{0}")]
    Invalid(String),
}

/// Verifies one request to `source` and maps it to an event.
pub fn take(
    source: &InletSource,
    header: &dyn Fn(&str) -> Option<String>,
    body: &[u8],
    max_event_bytes: usize,
    now: OffsetDateTime,
) -> Result<Event, SourceError> {
    match &source.profile {
        SourceProfile::Echo { secret } => {
            echo(source, secret.as_ref(), header, body, max_event_bytes, now)
        }
        SourceProfile::Generic(generic) => {
            verify(&generic.verify, header, body, now)?;
            map_generic(source, generic, body, max_event_bytes, now)
        }
    }
}

fn parse_object(body: &[u8]) -> Result<Json, SourceError> {
    let value = json::parse(body)
        .map_err(|e| SourceError::Invalid(format!("the body is not valid JSON: {e}")))?;
    if !value.is_object() {
        return Err(SourceError::Invalid(
            "the body must be a JSON object".into(),
        ));
    }
    Ok(value)
}

/// Refuses a request whose signed time is further than `window` from now: a captured
/// request replayed later, after retention has forgotten its id, would be delivered again.
pub fn check_replay_window(
    source: &str,
    window: Option<Duration>,
    field: &str,
    time: Option<&Json>,
    now: OffsetDateTime,
) -> Result<(), SourceError> {
    let Some(window) = window else {
        return Ok(());
    };
    let off = format!("(or set replay_window = \"off\" on inlet source {source:?})");
    let text = time.and_then(Json::as_str).ok_or_else(|| {
        SourceError::Unverified(format!(
            "the payload has no {field} to check the replay window against {off}"
        ))
    })?;
    let at = OffsetDateTime::parse(text, &Rfc3339).map_err(|_| {
        SourceError::Unverified(format!(
            "the payload's {field} {text:?} is not an RFC 3339 time, so the replay window cannot be checked {off}"
        ))
    })?;
    let distance = (now - at).abs();
    if distance > window {
        let side = if at < now { "old" } else { "in the future" };
        return Err(SourceError::Unverified(format!(
            "request outside the replay window: its {field} {text} is {}s {side}, more than replay_window = {}s allows (a replayed or long-delayed request)",
            distance.whole_seconds(),
            window.as_secs()
        )));
    }
    Ok(())
}

/// ECHO: verify (when a secret is set), then map `event`, `conversation.id`,
/// `project.id` and `timestamp`; the id is derived from the canonical bytes, so ECHO's
/// retries of one payload dedupe.
fn echo(
    source: &InletSource,
    secret: Option<&SigningKey>,
    header: &dyn Fn(&str) -> Option<String>,
    body: &[u8],
    max_event_bytes: usize,
    now: OffsetDateTime,
) -> Result<Event, SourceError> {
    let payload = parse_object(body)?;
    let canonical = canonical::dumps(&payload);
    if let Some(key) = secret {
        let given = header(ECHO_SIGNATURE_HEADER).ok_or_else(|| {
            SourceError::Unverified(format!("missing {ECHO_SIGNATURE_HEADER} header"))
        })?;
        let expected = format!("sha256={}", sign::hex_signature(key, canonical.as_bytes()));
        if !constant_time_eq(
            given.trim().to_ascii_lowercase().as_bytes(),
            expected.as_bytes(),
        ) {
            return Err(SourceError::Unverified(format!(
                "{ECHO_SIGNATURE_HEADER} does not match the payload"
            )));
        }
    }
    check_replay_window(
        &source.name,
        source.replay_window,
        "timestamp",
        payload.get("timestamp"),
        now,
    )?;
    let kind = payload
        .get("event")
        .and_then(Json::as_str)
        .map(str::to_string)
        .or_else(|| header(ECHO_EVENT_HEADER))
        .unwrap_or_default();
    let id = format!(
        "echo_{}",
        sha256_hex(canonical.as_bytes(), DERIVED_ID_CHARS)
    );
    let conversation = scalar(payload.pointer("/conversation/id"));
    let project = scalar(payload.pointer("/project/id"));
    // ECHO's timestamp is Python's isoformat(); one that is not RFC 3339 is left in
    // `data` and the receive time stands in.
    let occurred_at = payload
        .get("timestamp")
        .and_then(Json::as_str)
        .filter(|t| OffsetDateTime::parse(t, &Rfc3339).is_ok())
        .map(str::to_string);
    envelope(
        Fields {
            id,
            kind,
            conversation,
            project,
            occurred_at,
        },
        body,
        max_event_bytes,
        now,
    )
}

fn map_generic(
    source: &InletSource,
    generic: &GenericSource,
    body: &[u8],
    max_event_bytes: usize,
    now: OffsetDateTime,
) -> Result<Event, SourceError> {
    let payload = parse_object(body)?;
    let at = |pointer: &Option<String>| pointer.as_deref().and_then(|p| scalar(payload.pointer(p)));
    let id = match &generic.id {
        Some(pointer) => at(&generic.id)
            .ok_or_else(|| SourceError::Invalid(format!("no id at {pointer:?} in the body")))?,
        None => format!("{}_{}", source.name, sha256_hex(body, DERIVED_ID_CHARS)),
    };
    let kind = match &generic.kind {
        TypeFrom::Fixed(kind) => kind.clone(),
        TypeFrom::Pointer(pointer) => scalar(payload.pointer(pointer)).ok_or_else(|| {
            SourceError::Invalid(format!("no event type at {pointer:?} in the body"))
        })?,
    };
    if let Some(pointer) = &generic.occurred_at {
        check_replay_window(
            &source.name,
            source.replay_window,
            pointer,
            payload.pointer(pointer),
            now,
        )?;
    }
    let conversation = at(&generic.conversation);
    let project = at(&generic.project);
    let occurred_at = at(&generic.occurred_at);
    envelope(
        Fields {
            id,
            kind,
            conversation,
            project,
            occurred_at,
        },
        body,
        max_event_bytes,
        now,
    )
}

/// The envelope fields a source maps from its payload.
#[derive(Serialize)]
struct Fields {
    id: String,
    #[serde(rename = "type")]
    kind: String,
    #[serde(rename = "conversation_id")]
    conversation: Option<String>,
    #[serde(rename = "project_id")]
    project: Option<String>,
    occurred_at: Option<String>,
}

/// Builds the envelope, with the body exactly as sent as its `data`, and runs it through
/// the same checks as any event.
fn envelope(
    fields: Fields,
    body: &[u8],
    max_event_bytes: usize,
    now: OffsetDateTime,
) -> Result<Event, SourceError> {
    #[derive(Serialize)]
    struct Envelope<'a> {
        #[serde(flatten)]
        fields: Fields,
        data: &'a RawValue,
    }
    // The body parsed as `Json` already, so it is JSON; this only borrows it as raw text
    // (without the whitespace around it).
    let data: &RawValue = serde_json::from_slice(body)
        .map_err(|e| SourceError::Invalid(format!("the body is not valid JSON: {e}")))?;
    let bytes = serde_json::to_vec(&Envelope { fields, data })
        .map_err(|e| SourceError::Invalid(e.to_string()))?;
    event::parse_producer_event(&bytes, max_event_bytes.saturating_mul(2), now)
        .map_err(|e| SourceError::Invalid(e.to_string()))
}

/// A string, or a number as the producer wrote it; anything else counts as absent.
fn scalar(value: Option<&Json>) -> Option<String> {
    match value? {
        Json::String(s) => Some(s.clone()),
        Json::Number(n) => Some(n.clone()),
        _ => None,
    }
}

/// Checks a generic source's signature over the raw body.
pub fn verify(
    verify: &Verify,
    header: &dyn Fn(&str) -> Option<String>,
    body: &[u8],
    now: OffsetDateTime,
) -> Result<(), SourceError> {
    let missing = |name: &str| SourceError::Unverified(format!("missing {name} header"));
    match verify {
        Verify::None => Ok(()),
        Verify::Hex {
            key,
            header: name,
            prefix,
        } => {
            let given = header(name).ok_or_else(|| missing(name))?;
            let given = given.trim();
            let hex = given.strip_prefix(prefix.as_str()).ok_or_else(|| {
                SourceError::Unverified(format!("{name} does not start with the configured prefix"))
            })?;
            let expected = sign::hex_signature(key, body);
            if constant_time_eq(hex.to_ascii_lowercase().as_bytes(), expected.as_bytes()) {
                Ok(())
            } else {
                Err(SourceError::Unverified(format!(
                    "{name} does not match the body"
                )))
            }
        }
        Verify::Standard { keys } => {
            let id = header("webhook-id").ok_or_else(|| missing("webhook-id"))?;
            let timestamp =
                header("webhook-timestamp").ok_or_else(|| missing("webhook-timestamp"))?;
            let signatures =
                header("webhook-signature").ok_or_else(|| missing("webhook-signature"))?;
            let ts: i64 = timestamp.trim().parse().map_err(|_| {
                SourceError::Unverified("webhook-timestamp is not unix seconds".into())
            })?;
            if (now.unix_timestamp() - ts).abs() > TOLERANCE_SECS {
                return Err(SourceError::Unverified(format!(
                    "webhook-timestamp is more than {TOLERANCE_SECS} seconds from now"
                )));
            }
            let expected: Vec<String> = keys
                .iter()
                .map(|key| sign::standard_signature(std::slice::from_ref(key), &id, ts, body))
                .collect();
            let matched = signatures.split_whitespace().any(|given| {
                expected
                    .iter()
                    .any(|e| constant_time_eq(given.as_bytes(), e.as_bytes()))
            });
            if matched {
                Ok(())
            } else {
                Err(SourceError::Unverified(
                    "webhook-signature does not match".into(),
                ))
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    const SECRET: &str = "whsec_MfKQ9r8GKYqrTwjUPD8ILPZIo2LaLaSw";

    fn now() -> OffsetDateTime {
        OffsetDateTime::from_unix_timestamp(1_795_000_000).unwrap()
    }

    fn headers<'a>(pairs: &'a [(&str, String)]) -> impl Fn(&str) -> Option<String> + 'a {
        move |name| {
            pairs
                .iter()
                .find(|(n, _)| n.eq_ignore_ascii_case(name))
                .map(|(_, v)| v.clone())
        }
    }

    fn echo_source(secret: Option<&str>) -> InletSource {
        InletSource {
            name: "echo".into(),
            profile: SourceProfile::Echo {
                secret: secret.map(SigningKey::from_utf8),
            },
            max_body_bytes: 1 << 20,
            replay_window: None,
        }
    }

    #[test]
    fn echo_maps_its_fields_and_derives_a_stable_id() {
        let body = br#"{"event":"conversation.transcribed","timestamp":"2026-11-22T10:00:00+00:00","conversation":{"id":"c-1","title":"x"},"project":{"id":"p-1","name":"P","language":"nl"},"dashboardUrl":"https://e/x"}"#;
        let source = echo_source(None);
        let event = take(&source, &headers(&[]), body, 1 << 20, now()).unwrap();
        assert_eq!(event.kind, "conversation.transcribed");
        assert_eq!(event.conversation_id.as_deref(), Some("c-1"));
        assert_eq!(event.project_id.as_deref(), Some("p-1"));
        assert!(
            event.id.starts_with("echo_") && event.id.len() == 37,
            "{}",
            event.id
        );
        // The same payload with keys in another order and other spacing: the same id.
        let reordered = br#"{ "project":{"language":"nl","name":"P","id":"p-1"}, "dashboardUrl":"https://e/x","conversation":{"title":"x","id":"c-1"},"timestamp":"2026-11-22T10:00:00+00:00","event":"conversation.transcribed"}"#;
        let again = take(&source, &headers(&[]), reordered, 1 << 20, now()).unwrap();
        assert_eq!(again.id, event.id);
    }

    #[test]
    fn echo_signatures_are_checked_over_the_canonical_bytes() {
        let body = br#"{"event":"webhook.test","timestamp":"2026-11-22T10:00:00Z","project":{"id":"p-1"}}"#;
        let canonical = canonical::dumps(&json::parse(body).unwrap());
        let good = format!(
            "sha256={}",
            sign::hex_signature(&SigningKey::from_utf8("k"), canonical.as_bytes())
        );
        let source = echo_source(Some("k"));
        let ok = [(ECHO_SIGNATURE_HEADER, good.clone())];
        assert!(take(&source, &headers(&ok), body, 1 << 20, now()).is_ok());
        let wrong = [(ECHO_SIGNATURE_HEADER, good.replace("sha256=", "sha256=0"))];
        assert!(matches!(
            take(&source, &headers(&wrong), body, 1 << 20, now()),
            Err(SourceError::Unverified(_))
        ));
        assert!(matches!(
            take(&source, &headers(&[]), body, 1 << 20, now()),
            Err(SourceError::Unverified(_))
        ));
    }

    #[test]
    fn standard_verification_checks_signature_and_tolerance() {
        let key = SigningKey::from_whsec(SECRET).unwrap();
        let verify_with = Verify::Standard {
            keys: vec![key.clone()],
        };
        let body = br#"{"a":1}"#;
        let ts = now().unix_timestamp();
        let sig = sign::standard_signature(std::slice::from_ref(&key), "msg_1", ts, body);
        let good = [
            ("webhook-id", "msg_1".to_string()),
            ("webhook-timestamp", ts.to_string()),
            ("webhook-signature", format!("v1,bogus {sig}")),
        ];
        assert_eq!(verify(&verify_with, &headers(&good), body, now()), Ok(()));
        let stale = [
            ("webhook-id", "msg_1".to_string()),
            ("webhook-timestamp", (ts - 301).to_string()),
            (
                "webhook-signature",
                sign::standard_signature(&[key], "msg_1", ts - 301, body),
            ),
        ];
        assert!(verify(&verify_with, &headers(&stale), body, now()).is_err());
        assert!(verify(&verify_with, &headers(&good), b"{\"a\":2}", now()).is_err());
    }

    #[test]
    fn generic_maps_pointers_and_derives_an_id_without_one() {
        let generic = GenericSource {
            id: None,
            kind: TypeFrom::Fixed("conversation.ended".into()),
            conversation: Some("/session/id".into()),
            project: Some("/org".into()),
            occurred_at: None,
            verify: Verify::Hex {
                key: SigningKey::from_utf8("k"),
                header: "X-Sig".into(),
                prefix: "sha256=".into(),
            },
        };
        let source = InletSource {
            name: "other".into(),
            profile: SourceProfile::Generic(generic),
            max_body_bytes: 1 << 20,
            replay_window: None,
        };
        let body = br#"{"session":{"id":42},"org":"o-1"}"#;
        let sig = format!(
            "sha256={}",
            sign::hex_signature(&SigningKey::from_utf8("k"), body)
        );
        let event = take(&source, &headers(&[("x-sig", sig)]), body, 1 << 20, now()).unwrap();
        assert_eq!(event.conversation_id.as_deref(), Some("42"));
        assert_eq!(event.project_id.as_deref(), Some("o-1"));
        assert!(event.id.starts_with("other_"));
        assert!(take(
            &source,
            &headers(&[("x-sig", "sha256=00".into())]),
            body,
            1 << 20,
            now()
        )
        .is_err());
    }
}
