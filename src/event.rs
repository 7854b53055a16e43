//! The event envelope: parsing and validating one event from raw bytes, and building the
//! exact body every delivery of it carries.

use serde::{Deserialize, Serialize};
use serde_json::value::RawValue;
use time::format_description::well_known::Rfc3339;
use time::OffsetDateTime;

/// Longest `id`, `type`, `conversation_id` or `project_id` accepted.
const MAX_FIELD_CHARS: usize = 256;
/// How much of a rejected input is kept to show the operator.
const SNIPPET_BYTES: usize = 256;

/// A validated event, ready to store and route.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Event {
    pub id: String,
    pub kind: String,
    pub conversation_id: Option<String>,
    pub project_id: Option<String>,
    /// The delivery body, built once so every attempt signs the same bytes.
    pub body: String,
}

/// Why an input is not a usable event. The text is what the operator reads.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum Invalid {
    #[error("event is {size} bytes, over the limit of {limit} bytes (spool.max_event_bytes)")]
    TooLarge { size: usize, limit: usize },
    #[error("not valid UTF-8 (first bad byte at offset {0})")]
    NotUtf8(usize),
    #[error("not valid JSON: {0}")]
    NotJson(String),
    #[error("an event must be a JSON object, found {0}")]
    NotObject(&'static str),
    #[error("\"{0}\" is missing or empty")]
    Missing(&'static str),
    #[error("\"{field}\" is longer than {MAX_FIELD_CHARS} characters")]
    TooLong { field: &'static str },
    #[error("\"{field}\" contains control characters or invisible formatting (bidi overrides, zero-width marks)")]
    ControlCharacters { field: &'static str },
    #[error("\"id\" {0} may only hold visible ASCII characters (letters, digits and punctuation from ! to ~, no spaces): it is sent as the webhook-id header")]
    BadId(String),
    #[error("\"type\" {0:?} may only hold letters, digits and . _ - :")]
    BadType(String),
    #[error("\"conversation_id\" is required for {0} events")]
    MissingConversation(String),
    #[error("\"occurred_at\" {0:?} is not an RFC 3339 time like 2026-11-22T10:00:00Z")]
    BadTime(String),
    #[error("\"type\" {0:?} is reserved: posthorn.* events are posthorn's own alerts")]
    Reserved(String),
}

#[derive(Deserialize)]
struct Envelope {
    id: Option<String>,
    #[serde(rename = "type")]
    kind: Option<String>,
    conversation_id: Option<String>,
    project_id: Option<String>,
    occurred_at: Option<String>,
    data: Option<Box<RawValue>>,
}

#[derive(Serialize)]
struct DeliveryBody<'a> {
    id: &'a str,
    #[serde(rename = "type")]
    kind: &'a str,
    conversation_id: Option<&'a str>,
    project_id: Option<&'a str>,
    timestamp: &'a str,
    data: Option<&'a RawValue>,
}

/// Parses one event from a producer (spool, inlet, inlet source): like [`parse_event`],
/// but refuses the `posthorn.` types, so nobody can forge posthorn's own alerts.
pub fn parse_producer_event(
    raw: &[u8],
    max_bytes: usize,
    received_at: OffsetDateTime,
) -> Result<Event, Invalid> {
    let event = parse_event(raw, max_bytes, received_at)?;
    if event.kind.starts_with(crate::alerts::OWN_EVENT_PREFIX) {
        return Err(Invalid::Reserved(event.kind));
    }
    Ok(event)
}

/// Parses one event. `received_at` stands in for `occurred_at` when the producer gave none.
pub fn parse_event(
    raw: &[u8],
    max_bytes: usize,
    received_at: OffsetDateTime,
) -> Result<Event, Invalid> {
    if raw.len() > max_bytes {
        return Err(Invalid::TooLarge {
            size: raw.len(),
            limit: max_bytes,
        });
    }
    let text = std::str::from_utf8(raw).map_err(|e| Invalid::NotUtf8(e.valid_up_to()))?;
    match text.trim_start().as_bytes().first() {
        Some(b'{') => {}
        Some(b'[') => return Err(Invalid::NotObject("an array")),
        Some(b'"') => return Err(Invalid::NotObject("a string")),
        None => return Err(Invalid::NotJson("the input is empty".into())),
        Some(_) => {
            // Let serde say precisely what is wrong with a non-object.
            if serde_json::from_str::<serde_json::Value>(text).is_ok() {
                return Err(Invalid::NotObject("a number, boolean or null"));
            }
        }
    }
    let envelope: Envelope =
        serde_json::from_str(text).map_err(|e| Invalid::NotJson(e.to_string()))?;

    let id = envelope
        .id
        .filter(|id| !id.is_empty())
        .ok_or(Invalid::Missing("id"))?;
    if id.chars().count() > MAX_FIELD_CHARS {
        return Err(Invalid::TooLong { field: "id" });
    }
    if !is_safe_id(&id) {
        return Err(Invalid::BadId(escape_for_reason(&id)));
    }
    let kind = required_field("type", envelope.kind)?;
    if !kind
        .bytes()
        .all(|b| b.is_ascii_alphanumeric() || b"._-:".contains(&b))
    {
        return Err(Invalid::BadType(kind));
    }
    let conversation_id = optional_field("conversation_id", envelope.conversation_id)?;
    let project_id = optional_field("project_id", envelope.project_id)?;
    if conversation_id.is_none() && kind.starts_with("conversation.") {
        return Err(Invalid::MissingConversation(kind));
    }
    let timestamp = match envelope.occurred_at {
        Some(given) => {
            OffsetDateTime::parse(&given, &Rfc3339).map_err(|_| Invalid::BadTime(given.clone()))?;
            given
        }
        // Whole milliseconds: nanosecond fractions trip some receivers' date parsers
        // (Python's before 3.11 takes at most six digits).
        None => received_at
            .replace_millisecond(received_at.millisecond())
            .unwrap_or(received_at)
            .format(&Rfc3339)
            .unwrap_or_default(),
    };

    let body = serde_json::to_string(&DeliveryBody {
        id: &id,
        kind: &kind,
        conversation_id: conversation_id.as_deref(),
        project_id: project_id.as_deref(),
        timestamp: &timestamp,
        data: envelope.data.as_deref(),
    })
    .map_err(|e| Invalid::NotJson(e.to_string()))?;

    Ok(Event {
        id,
        kind,
        conversation_id,
        project_id,
        body,
    })
}

fn required_field(name: &'static str, value: Option<String>) -> Result<String, Invalid> {
    optional_field(name, value)?.ok_or(Invalid::Missing(name))
}

/// Empty strings count as absent; overlong or control-character values are refused
/// because these fields end up in logs, headers and the admin page.
fn optional_field(name: &'static str, value: Option<String>) -> Result<Option<String>, Invalid> {
    let Some(value) = value.filter(|v| !v.is_empty()) else {
        return Ok(None);
    };
    if value.chars().count() > MAX_FIELD_CHARS {
        return Err(Invalid::TooLong { field: name });
    }
    if value
        .chars()
        .any(|c| c.is_control() || is_invisible_format(c))
    {
        return Err(Invalid::ControlCharacters { field: name });
    }
    Ok(Some(value))
}

/// The characters an event id may hold: visible ASCII, `!` to `~`. Ids go unchanged into
/// the `webhook-id` header (which receivers may read as Latin-1 before checking the
/// signature over it), logs and the admin page; UUIDs, ULIDs, `evt_...`, base64 and the
/// `echo_<hex>` ids of the ECHO source all fit.
pub fn is_safe_id(id: &str) -> bool {
    !id.is_empty() && id.bytes().all(|b| b.is_ascii_graphic())
}

/// Unicode format characters that reorder or hide text: bidi embeddings, overrides and
/// isolates, marks, zero-width characters and the BOM. They let a value show as other text.
fn is_invisible_format(c: char) -> bool {
    matches!(c,
        '\u{061c}' | '\u{200b}'..='\u{200f}' | '\u{202a}'..='\u{202e}'
        | '\u{2060}'..='\u{2069}' | '\u{feff}')
}

/// A refused value, quoted, with everything outside visible ASCII written as `\u{..}` so
/// the reason itself cannot carry the characters it refuses.
fn escape_for_reason(value: &str) -> String {
    let mut out = String::from("\"");
    for c in value.chars().take(MAX_FIELD_CHARS) {
        match c {
            '"' | '\\' => {
                out.push('\\');
                out.push(c);
            }
            ' '..='~' => out.push(c),
            _ => out.push_str(&format!("\\u{{{:04x}}}", c as u32)),
        }
    }
    out.push('"');
    out
}

/// The first bytes of a rejected input, as text, for the operator.
pub fn snippet(raw: &[u8]) -> String {
    let cut = raw.len().min(SNIPPET_BYTES);
    let mut text = String::from_utf8_lossy(&raw[..cut]).into_owned();
    if raw.len() > cut {
        text.push('…');
    }
    text
}

#[cfg(test)]
mod tests {
    use super::*;

    const LIMIT: usize = 1 << 20;

    fn now() -> OffsetDateTime {
        OffsetDateTime::from_unix_timestamp(1_795_000_000).unwrap()
    }

    fn parse(text: &str) -> Result<Event, Invalid> {
        parse_event(text.as_bytes(), LIMIT, now())
    }

    #[test]
    fn producers_cannot_send_posthorns_own_types() {
        let raw = br#"{"id":"e","type":"posthorn.subscription.paused","data":{}}"#;
        assert!(parse_event(raw, LIMIT, now()).is_ok());
        let err = parse_producer_event(raw, LIMIT, now()).unwrap_err();
        assert_eq!(
            err,
            Invalid::Reserved("posthorn.subscription.paused".into())
        );
        let fine = br#"{"id":"e","type":"posthornish.x","data":{}}"#;
        assert!(parse_producer_event(fine, LIMIT, now()).is_ok());
    }

    #[test]
    fn a_full_envelope_becomes_the_documented_body_with_data_untouched() {
        let event = parse(
            r#"{"id":"evt_1","type":"conversation.transcribed","conversation_id":"c-204",
                "project_id":"p-9","occurred_at":"2026-11-22T10:00:00Z",
                "data":{"z":1,  "a":[1.50,"ü"]}}"#,
        )
        .unwrap();
        assert_eq!(event.id, "evt_1");
        assert_eq!(event.conversation_id.as_deref(), Some("c-204"));
        assert_eq!(
            event.body,
            r#"{"id":"evt_1","type":"conversation.transcribed","conversation_id":"c-204","project_id":"p-9","timestamp":"2026-11-22T10:00:00Z","data":{"z":1,  "a":[1.50,"ü"]}}"#
        );
    }

    /// Found by the envelope fuzz target: a lone surrogate escape in `data` is passed on
    /// as written (Python and JavaScript read it; posthorn does not judge data).
    #[test]
    fn data_with_a_lone_surrogate_escape_passes_through_unchanged() {
        let event = parse(r#"{"id":"a","type":"x","data":{"s":"\ude00 \ud83d"}}"#).unwrap();
        assert!(
            event.body.ends_with(r#""data":{"s":"\ude00 \ud83d"}}"#),
            "{}",
            event.body
        );
    }

    #[test]
    fn missing_occurred_at_uses_the_receive_time_and_missing_data_is_null() {
        let received = now() + time::Duration::nanoseconds(123_456_789);
        let event = parse_event(
            br#"{"id":"r1","type":"report.generated","project_id":"p-9"}"#,
            LIMIT,
            received,
        )
        .unwrap();
        let body: serde_json::Value = serde_json::from_str(&event.body).unwrap();
        assert_eq!(body["timestamp"], "2026-11-18T11:06:40.123Z");
        assert!(body["data"].is_null());
        assert!(body["conversation_id"].is_null());
    }

    #[test]
    fn each_kind_of_bad_input_names_its_problem() {
        let cases: &[(&[u8], Invalid)] = &[
            (b"{\"id\":", Invalid::NotJson(String::new())),
            (b"\xff\xfe", Invalid::NotUtf8(0)),
            (b"[1,2]", Invalid::NotObject("an array")),
            (b"42", Invalid::NotObject("a number, boolean or null")),
            (b"{\"type\":\"x\"}", Invalid::Missing("id")),
            (b"{\"id\":\"\",\"type\":\"x\"}", Invalid::Missing("id")),
            (b"{\"id\":\"a\"}", Invalid::Missing("type")),
            (
                b"{\"id\":\"a\",\"type\":\"conversation.started\"}",
                Invalid::MissingConversation("conversation.started".into()),
            ),
            (
                b"{\"id\":\"a\",\"type\":\"a b\"}",
                Invalid::BadType("a b".into()),
            ),
            (
                b"{\"id\":\"a\\n\",\"type\":\"x\"}",
                Invalid::BadId("\"a\\u{000a}\"".into()),
            ),
            (
                b"{\"id\":\"a\",\"type\":\"x\",\"occurred_at\":\"yesterday\"}",
                Invalid::BadTime("yesterday".into()),
            ),
        ];
        for (input, expected) in cases {
            let got = parse_event(input, LIMIT, now()).unwrap_err();
            match (&got, expected) {
                (Invalid::NotJson(_), Invalid::NotJson(_)) => {}
                _ => assert_eq!(&got, expected, "input {:?}", String::from_utf8_lossy(input)),
            }
        }
    }

    /// Regression: ids with non-ASCII or bidi control characters went raw into the
    /// `webhook-id` header and onto the admin page.
    #[test]
    fn ids_outside_visible_ascii_are_refused_with_the_id_escaped() {
        for bad in [
            "evt\u{202e}fdp.exe",
            "évt_1",
            "evt 1",
            "evt\u{200b}1",
            "\u{feff}evt",
        ] {
            let text = format!(
                r#"{{"id":{},"type":"x"}}"#,
                serde_json::to_string(bad).unwrap()
            );
            let err = parse(&text).unwrap_err();
            assert!(matches!(err, Invalid::BadId(_)), "{bad:?}: {err}");
            let reason = err.to_string();
            assert!(reason.is_ascii(), "{reason}");
            assert!(reason.contains("webhook-id"), "{reason}");
        }
        let err = parse(r#"{"id":"a\u202eb","type":"x"}"#).unwrap_err();
        assert_eq!(err, Invalid::BadId(r#""a\u{202e}b""#.into()));
        for good in [
            "evt_7f3a",
            "0b9f6e2c-3f1d-4c1e-9a57-6d2f0c1e8b3a",
            "01J9ZQ4X8K6M2T3V5W7Y9A1B2C",
            "msg_2KWPBgLlAfxdpx2AI54pPJ85f4W",
            "echo_0123456789abcdef0123456789abcdef",
            "urn:uuid:x/1+2=3@host~!#$%&*?|()[]{}<>'`^\"\\",
        ] {
            let text = format!(
                r#"{{"id":{},"type":"x"}}"#,
                serde_json::to_string(good).unwrap()
            );
            assert_eq!(parse(&text).unwrap().id, good);
        }
    }

    #[test]
    fn bidi_overrides_in_conversation_and_project_ids_are_refused() {
        let err = parse(r#"{"id":"a","type":"x","conversation_id":"c-\u202e1"}"#).unwrap_err();
        assert_eq!(
            err,
            Invalid::ControlCharacters {
                field: "conversation_id"
            }
        );
        let err = parse(r#"{"id":"a","type":"x","project_id":"p\u2067-1"}"#).unwrap_err();
        assert_eq!(
            err,
            Invalid::ControlCharacters {
                field: "project_id"
            }
        );
        // Other non-ASCII text stays allowed there.
        assert!(parse(r#"{"id":"a","type":"x","conversation_id":"wijk-Zuid-ü"}"#).is_ok());
    }

    #[test]
    fn wrong_field_types_are_reported_by_serde_with_position() {
        let err = parse(r#"{"id": 5, "type": "x"}"#).unwrap_err();
        assert!(
            err.to_string().contains("invalid type: integer `5`"),
            "{err}"
        );
    }

    #[test]
    fn oversized_input_is_refused_before_parsing() {
        let big = format!(r#"{{"id":"a","type":"x","data":"{}"}}"#, "x".repeat(100));
        let err = parse_event(big.as_bytes(), 50, now()).unwrap_err();
        assert_eq!(
            err,
            Invalid::TooLarge {
                size: big.len(),
                limit: 50
            }
        );
    }

    /// A cheap stand-in for a fuzzer: thousands of corruptions of a valid envelope (flipped,
    /// dropped and inserted bytes, cuts) must each come back as an event or a reason,
    /// never a panic, and any event that does parse must carry a JSON body.
    #[test]
    fn corrupted_envelopes_never_panic() {
        let valid = br#"{"id":"evt_1","type":"conversation.transcribed","conversation_id":"c-204","project_id":"p-9","occurred_at":"2026-11-22T10:00:00Z","data":{"a":[1,{"b":"\u00fc"}]}}"#;
        let mut state: u64 = 0x2545_f491_4f6c_dd1d;
        let mut next = move || {
            state ^= state << 13;
            state ^= state >> 7;
            state ^= state << 17;
            state
        };
        for _ in 0..20_000 {
            let mut input = valid.to_vec();
            for _ in 0..=next() % 4 {
                let at = (next() as usize) % input.len().max(1);
                match next() % 4 {
                    0 => input[at] = next() as u8,
                    1 => {
                        input.remove(at);
                    }
                    2 => {
                        const TRICKY: &[u8] = b"{}[]\",:\\\xff\x00";
                        input.insert(at, TRICKY[(next() as usize) % TRICKY.len()]);
                    }
                    _ => input.truncate(at),
                }
                if input.is_empty() {
                    break;
                }
            }
            if let Ok(event) = parse_event(&input, LIMIT, now()) {
                let body: Result<serde_json::Value, _> = serde_json::from_str(&event.body);
                assert!(
                    body.is_ok(),
                    "parsed {input:?} into a body that is not JSON"
                );
            }
        }
    }

    #[test]
    fn snippets_are_bounded_and_marked_when_cut() {
        assert_eq!(snippet(b"short"), "short");
        let long = vec![b'a'; 1000];
        let cut = snippet(&long);
        assert!(cut.ends_with('…'));
        assert_eq!(cut.chars().count(), SNIPPET_BYTES + 1);
    }
}
