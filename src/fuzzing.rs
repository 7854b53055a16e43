//! Entry points for the fuzz targets in `fuzz/` and for `tests/fuzz_corpora.rs`, which
//! replays their corpora on stable: one function per parser that reads outside input.
//! Each takes raw bytes, runs the real parser, and panics when one of its promises
//! breaks (a panic inside the parser counts too), so a crash the fuzzer finds stays a
//! regression test once its input is added to the corpus.

use std::path::Path;

use serde::Deserialize;
use serde_json::value::RawValue;
use time::OffsetDateTime;

use crate::config::{self, GenericSource, InletSource, SourceProfile, TypeFrom, Verify};
use crate::event::{self, Event};
use crate::inlet::sources::{self, SourceError, ECHO_SIGNATURE_HEADER};
use crate::inlet::{canonical, json};
use crate::sign::{self, SigningKey};
use crate::spool::lines;

const MAX_EVENT_BYTES: usize = 1 << 20;

fn now() -> OffsetDateTime {
    OffsetDateTime::from_unix_timestamp(1_795_000_000).unwrap_or(OffsetDateTime::UNIX_EPOCH)
}

/// The raw `data` of a JSON object, if it has one.
fn raw_data(text: &[u8]) -> Option<String> {
    #[derive(Deserialize)]
    struct WithData<'a> {
        #[serde(borrow)]
        data: Option<&'a RawValue>,
    }
    let parsed: WithData = serde_json::from_slice(text).ok()?;
    parsed.data.map(|d| d.get().to_string())
}

/// What every accepted event must be: a JSON body holding its own id (safe for a header)
/// and type, and the producer's `data` byte for byte. The body is read with a raw `data`:
/// data passes through as written, even an escape some parsers refuse (a lone surrogate,
/// which Python and JavaScript take).
fn check_event(event: &Event, data: Option<&str>) {
    #[derive(Deserialize)]
    struct Delivered<'a> {
        id: String,
        #[serde(rename = "type")]
        kind: String,
        #[serde(borrow)]
        data: &'a RawValue,
    }
    assert!(event::is_safe_id(&event.id), "unsafe id {:?}", event.id);
    let body: Delivered = match serde_json::from_str(&event.body) {
        Ok(body) => body,
        Err(err) => panic!("event body is not JSON ({err}): {}", event.body),
    };
    assert_eq!(body.id, event.id);
    assert_eq!(body.kind, event.kind);
    if let Some(data) = data {
        assert_eq!(body.data.get(), data);
    }
    check_indent(&event.body);
}

/// The event page's indented body (`crate::indent`) differs from the stored one only in
/// whitespace outside strings, and reads as the same JSON.
fn check_indent(body: &str) {
    let indented = crate::indent::indent(body);
    assert_eq!(
        crate::indent::squeezed(&indented),
        crate::indent::squeezed(body),
        "indenting changed more than whitespace"
    );
    let (a, b) = (
        serde_json::from_str::<serde_json::Value>(body),
        serde_json::from_str::<serde_json::Value>(&indented),
    );
    if let Ok(a) = a {
        assert_eq!(
            Some(a),
            b.ok(),
            "the indented body reads differently: {indented}"
        );
    }
}

/// The event envelope (`event::parse_event`): spool files and `/v1/events` items.
pub fn envelope(input: &[u8]) {
    if let Ok(event) = event::parse_event(input, MAX_EVENT_BYTES, now()) {
        check_event(&event, raw_data(input).as_deref());
    }
}

/// The `.ndjson` tailer: splitting a chunk into lines (`spool::lines`) and parsing each.
pub fn ndjson(input: &[u8]) {
    let Some(complete) = lines::complete_lines(input) else {
        assert!(!input.contains(&b'\n'), "a complete line was missed");
        return;
    };
    assert!(complete.consumed <= input.len());
    assert_eq!(input[complete.consumed - 1], b'\n');
    assert!(!input[complete.consumed..].contains(&b'\n'));
    let newlines = input[..complete.consumed]
        .iter()
        .filter(|&&b| b == b'\n')
        .count() as u64;
    assert_eq!(complete.lines, newlines);
    let mut last = 0;
    for (line, raw) in complete.events {
        assert!(line > last && line <= complete.lines);
        last = line;
        assert!(!raw.contains(&b'\n'));
        envelope(raw);
    }
}

/// ECHO's canonical JSON against its verifier: the canonical form is ASCII, reads back as
/// the same value, is its own canonical form, and a request signed over it verifies.
pub fn echo_canonical(input: &[u8]) {
    let Ok(tree) = json::parse(input) else {
        return;
    };
    let canonical = canonical::dumps(&tree);
    assert!(canonical.is_ascii(), "{canonical}");
    let again = match json::parse(canonical.as_bytes()) {
        Ok(again) => again,
        Err(err) => panic!("canonical form does not parse ({err}): {canonical}"),
    };
    assert_eq!(canonical::dumps(&again), canonical, "not idempotent");
    if let (Ok(original), Ok(printed)) = (
        serde_json::from_slice::<serde_json::Value>(input),
        serde_json::from_str::<serde_json::Value>(&canonical),
    ) {
        assert!(
            same_value(&original, &printed),
            "the canonical form changed a value: {canonical}"
        );
    }
    let key = SigningKey::from_utf8("fuzz-secret");
    let signature = format!("sha256={}", sign::hex_signature(&key, canonical.as_bytes()));
    let source = InletSource {
        name: "echo".into(),
        profile: SourceProfile::Echo { secret: Some(key) },
        max_body_bytes: MAX_EVENT_BYTES,
        replay_window: None,
    };
    let header = |name: &str| (name == ECHO_SIGNATURE_HEADER).then(|| signature.clone());
    match sources::take(&source, &header, input, MAX_EVENT_BYTES, now()) {
        Ok(event) => check_event(&event, Some(trimmed(input))),
        Err(SourceError::Unverified(why)) => {
            if tree.is_object() {
                panic!("a payload signed over its canonical form was refused: {why}")
            }
        }
        Err(SourceError::Invalid(_)) => {}
    }
}

/// Equal as values, numbers compared as doubles: Python reads `-0` as the integer 0 and
/// serde_json as the float -0.0, and the canonical form prints Python's reading.
fn same_value(a: &serde_json::Value, b: &serde_json::Value) -> bool {
    use serde_json::Value;
    match (a, b) {
        (Value::Number(x), Value::Number(y)) => x.as_f64() == y.as_f64(),
        (Value::Array(x), Value::Array(y)) => {
            x.len() == y.len() && x.iter().zip(y).all(|(x, y)| same_value(x, y))
        }
        (Value::Object(x), Value::Object(y)) => {
            x.len() == y.len()
                && x.iter()
                    .all(|(k, v)| y.get(k).is_some_and(|w| same_value(v, w)))
        }
        _ => a == b,
    }
}

fn trimmed(input: &[u8]) -> &str {
    std::str::from_utf8(input.trim_ascii()).unwrap_or_default()
}

/// The generic source's mapper. The first line of the input is the JSON pointer to the
/// conversation, the rest the body.
pub fn generic(input: &[u8]) {
    let (pointer, body) = match input.iter().position(|&b| b == b'\n') {
        Some(at) => (&input[..at], &input[at + 1..]),
        None => (&b""[..], input),
    };
    let pointer = String::from_utf8_lossy(pointer).into_owned();
    for id in [Some("/id".to_string()), None] {
        let source = InletSource {
            name: "fuzz".into(),
            profile: SourceProfile::Generic(GenericSource {
                id,
                kind: TypeFrom::Pointer("/type".into()),
                conversation: Some(pointer.clone()),
                project: Some("/project/id".into()),
                occurred_at: Some("/at".into()),
                verify: Verify::None,
            }),
            max_body_bytes: MAX_EVENT_BYTES,
            replay_window: None,
        };
        if let Ok(event) = sources::take(&source, &|_| None, body, MAX_EVENT_BYTES, now()) {
            check_event(&event, Some(trimmed(body)));
        }
    }
}

/// `config.toml`: any text gets a config or located problems, never a panic. Relative
/// secret files point into a directory that does not exist.
pub fn config(input: &[u8]) {
    let Ok(text) = std::str::from_utf8(input) else {
        return;
    };
    if let Err(err) = config::parse(text, Path::new("/nonexistent/posthorn-fuzz/config.toml")) {
        assert!(!err.problems.is_empty());
        let _ = err.to_string();
    }
}
