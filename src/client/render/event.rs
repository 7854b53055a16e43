//! `posthorn events show` (and `deliveries show EVENT_ID`): one event as received, where
//! it came from, and the deliveries it produced.

use std::fmt::Write as _;

use super::super::api::EventDetail;
use super::super::time::format_ms;
use super::{delivery_table, push_fields, NONE};

/// The event, its deliveries, then its body (indented by the API, values as stored).
pub fn event_detail(detail: &EventDetail) -> String {
    let e = &detail.event;
    let mut out = String::new();
    let _ = writeln!(out, "event {} ({})", e.id, e.event_type);
    push_fields(
        &mut out,
        &[
            (
                "conversation",
                e.conversation_id.clone().unwrap_or_else(|| NONE.into()),
            ),
            (
                "project",
                e.project_id.clone().unwrap_or_else(|| NONE.into()),
            ),
            ("received", format_ms(e.received_at)),
            ("source", describe_source(&e.source)),
        ],
    );
    let items = &detail.deliveries.items;
    let more = if detail.deliveries.next_cursor.is_some() {
        "+"
    } else {
        ""
    };
    let _ = writeln!(out, "\ndeliveries ({}{more})", items.len());
    if items.is_empty() {
        let _ = writeln!(out, "  none: no subscription took it");
    } else {
        out.push_str(&delivery_table(items));
        let _ = writeln!(
            out,
            "one in full: posthorn deliveries show {}",
            items.first().map(|d| d.id).unwrap_or_default()
        );
        if !more.is_empty() {
            let _ = writeln!(
                out,
                "more: posthorn deliveries list --event {} --cursor {}",
                e.id,
                detail.deliveries.next_cursor.as_deref().unwrap_or_default()
            );
        }
    }
    let _ = writeln!(out, "\nbody");
    match (&detail.body_indented, e.payload_dropped_at) {
        (Some(body), _) => {
            for line in body.lines() {
                let _ = writeln!(out, "  {line}");
            }
        }
        (None, Some(at)) => {
            let _ = writeln!(out, "  (dropped by retention at {})", format_ms(at));
        }
        (None, None) => {
            let _ = writeln!(out, "  (none)");
        }
    }
    out
}

/// The stored `source` with what it means.
pub fn describe_source(source: &str) -> String {
    let meaning = if source.starts_with("spool:") {
        "a spool file".to_string()
    } else if let Some(name) = source.strip_prefix("source:") {
        format!("inlet source {name:?}")
    } else {
        match source {
            "inlet" => "the HTTP inlet (POST /v1/events)".to_string(),
            "admin" => "a test event sent from the admin page or `posthorn test`".to_string(),
            "posthorn" => "posthorn's own event".to_string(),
            _ => return source.to_string(),
        }
    };
    format!("{source} ({meaning})")
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn sources_say_where_an_event_came_from() {
        assert_eq!(
            describe_source("spool:a.ndjson"),
            "spool:a.ndjson (a spool file)"
        );
        assert_eq!(
            describe_source("source:echo"),
            "source:echo (inlet source \"echo\")"
        );
        assert!(describe_source("inlet").contains("HTTP inlet"));
        assert_eq!(describe_source("elsewhere"), "elsewhere");
    }
}
