//! Sample events for `check-config`: every format and template is rendered against one
//! before the config is accepted. They follow ECHO's payload shape (the whole ECHO
//! payload is `data`), with one sample per event type ECHO sends.

use crate::routing::Pattern;

/// The types a sample exists for, in the order they are tried.
pub const SAMPLE_TYPES: &[&str] = &[
    "conversation.summarized",
    "conversation.started",
    "conversation.transcribed",
    "conversation.ended",
    "report.generated",
];

const SUMMARY: &str = "Residents asked for safer crossings near the school and longer \
library hours; most agreed the market square needs more benches.";

/// The sample envelope for `kind` (one of [`SAMPLE_TYPES`], else the summarized one).
fn sample(kind: &str) -> String {
    let data = match kind {
        "report.generated" => serde_json::json!({
            "event": kind,
            "timestamp": "2026-11-22T10:00:00+00:00",
            "report": {"id": "r-9", "summary": SUMMARY},
            "project": {"id": "p-9", "name": "City consultation", "language": "en"},
            "dashboardUrl": "https://echo.example/p/p-9"
        }),
        _ => serde_json::json!({
            "event": kind,
            "timestamp": "2026-11-22T10:00:00+00:00",
            "conversation": {
                "id": "c-204",
                "title": "North district",
                "tags": ["mobility", "library"],
                "summary": SUMMARY,
                "duration": 1834.5
            },
            "project": {"id": "p-9", "name": "City consultation", "language": "en"},
            "dashboardUrl": "https://echo.example/p/p-9"
        }),
    };
    let conversation = (kind != "report.generated").then_some("c-204");
    serde_json::json!({
        "id": "sample_1",
        "type": kind,
        "conversation_id": conversation,
        "project_id": "p-9",
        "timestamp": "2026-11-22T10:00:00Z",
        "data": data,
    })
    .to_string()
}

/// A sample event of a type the subscription takes: the first of [`SAMPLE_TYPES`] its
/// `events` match, else a summarized conversation with the subscription's first
/// literal event type (so a template for `posthorn.*` events is checked too).
pub fn sample_for(events: &[Pattern]) -> String {
    if let Some(kind) = SAMPLE_TYPES
        .iter()
        .find(|kind| events.iter().any(|p| p.matches(kind)))
    {
        return sample(kind);
    }
    let kind = events
        .iter()
        .map(Pattern::as_str)
        .find(|p| !p.contains('*'))
        .unwrap_or(SAMPLE_TYPES[0]);
    let mut envelope: serde_json::Value =
        serde_json::from_str(&sample(SAMPLE_TYPES[0])).unwrap_or_default();
    envelope["type"] = kind.into();
    envelope.to_string()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_sample_follows_the_subscription_events() {
        let pick = |events: &[&str]| {
            let patterns: Vec<Pattern> = events.iter().map(|e| Pattern::new(*e)).collect();
            let v: serde_json::Value = serde_json::from_str(&sample_for(&patterns)).unwrap();
            v["type"].as_str().unwrap().to_string()
        };
        assert_eq!(pick(&["*"]), "conversation.summarized");
        assert_eq!(pick(&["report.*"]), "report.generated");
        assert_eq!(pick(&["posthorn.test"]), "posthorn.test");
    }
}
