//! How the operator commands print the API's answers for people: the status overview,
//! the delivery table, one delivery in full, and an attempt's outcome. Times are UTC RFC
//! 3339; nothing here reads the network.

mod event;
mod nodes;

use std::fmt::Write as _;

use super::api::{Attempt, DeliveryDetail, DeliveryRow, Overview, Subscription};
use super::time::{format_age, format_ms, format_ms_seconds};

/// How much of an error or a response snippet fits in a table cell.
const CELL_CHARS: usize = 60;
/// How much of a response snippet the detail views show.
const SNIPPET_CHARS: usize = 300;
const NONE: &str = "-";

pub use event::event_detail;
pub use nodes::nodes;

/// `posthorn status`: the overview, then one line per subscription.
pub fn status(base: &str, overview: &Overview, subscriptions: &[Subscription]) -> String {
    let d = &overview.deliveries;
    let mut out = String::new();
    let _ = writeln!(out, "posthorn at {base}");
    let _ = writeln!(
        out,
        "events:      {} total, {} in the last 24 h",
        overview.events_total, overview.events_last_24h
    );
    let _ = writeln!(
        out,
        "deliveries:  {} pending ({} failing), {} delivered, {} dead, {} cancelled",
        d.pending, d.failing, d.delivered, d.dead, d.cancelled
    );
    let oldest = match overview.oldest_pending_age_ms {
        Some(age) => format!("oldest pending waiting {}", format_age(age)),
        None => "nothing pending".to_string(),
    };
    let _ = writeln!(out, "queue:       {} deep, {oldest}", overview.queue_depth);
    if let Some(reason) = overview.delivery.as_ref().and_then(|d| d.reason.as_deref()) {
        let _ = writeln!(out, "delivery:    OFF: {reason}");
    }
    let _ = writeln!(out);
    if subscriptions.is_empty() {
        let _ = writeln!(out, "no subscriptions");
        return out;
    }
    let mut table = Table::new(&[
        "SUBSCRIPTION",
        "STATE",
        "ATTEMPTS OK 24H",
        "DELIVERED 24H",
        "P95",
        "FAILING STREAK",
        "PENDING",
        "LAST ATTEMPT",
        "LAST RESULT",
    ]);
    for sub in subscriptions {
        let h = &sub.health;
        table.row(vec![
            sub.name.clone(),
            subscription_state(sub).to_string(),
            percent(h.success_rate),
            percent(h.delivery_success_rate),
            h.latency_p95_ms
                .map(|ms| format!("{ms}ms"))
                .unwrap_or_else(|| NONE.into()),
            h.failing_streak.to_string(),
            h.pending.to_string(),
            h.last_attempt_at
                .map(format_ms_seconds)
                .unwrap_or_else(|| NONE.into()),
            outcome(h.last_status, h.last_error.as_deref()),
        ]);
    }
    out.push_str(&table.render());
    for sub in subscriptions {
        if let Some(reason) = &sub.health.pause_reason {
            let _ = writeln!(out, "{} paused by posthorn: {reason}", sub.name);
        }
    }
    out
}

/// A rate as the status table shows it: per attempt and per delivery stand side by side,
/// so each is labelled by its column.
fn percent(rate: Option<f64>) -> String {
    rate.map(|rate| format!("{:.1}%", rate * 100.0))
        .unwrap_or_else(|| NONE.into())
}

fn subscription_state(sub: &Subscription) -> &'static str {
    match (sub.enabled, sub.paused, sub.health.breaker.as_deref()) {
        (false, _, _) => "disabled",
        (true, true, _) => "paused",
        (true, false, Some("open")) => "held back",
        (true, false, Some(_)) => "probing",
        (true, false, None) => "enabled",
    }
}

/// `posthorn deliveries list`: one row per delivery.
pub fn delivery_table(items: &[DeliveryRow]) -> String {
    let mut table = Table::new(&[
        "ID",
        "CREATED",
        "SUBSCRIPTION",
        "EVENT TYPE",
        "CONVERSATION",
        "STATE",
        "ATTEMPTS",
        "LAST RESULT",
    ]);
    for row in items {
        table.row(vec![
            row.id.to_string(),
            format_ms_seconds(row.created_at),
            row.subscription.clone(),
            row.event_type.clone(),
            row.conversation_id.clone().unwrap_or_else(|| NONE.into()),
            delivery_state(row),
            row.attempts.to_string(),
            outcome(row.last_status, row.last_error.as_deref()),
        ]);
    }
    table.render()
}

fn delivery_state(row: &DeliveryRow) -> String {
    if row.in_flight {
        format!("{} (sending)", row.state)
    } else {
        row.state.clone()
    }
}

/// An attempt's result in a cell: the status, the error, both, or `-` before any.
fn outcome(status: Option<u16>, error: Option<&str>) -> String {
    match (status, error) {
        (Some(status), Some(error)) => cut(&format!("{status} {error}"), CELL_CHARS),
        (Some(status), None) => status.to_string(),
        (None, Some(error)) => cut(error, CELL_CHARS),
        (None, None) => NONE.into(),
    }
}

/// `posthorn deliveries show`: the delivery, its event, every attempt, the request.
pub fn delivery_detail(detail: &DeliveryDetail) -> String {
    let d = &detail.delivery;
    let e = &detail.event;
    let mut out = String::new();
    let _ = writeln!(
        out,
        "delivery {}: {} after {} attempt{}",
        d.id,
        delivery_state(d),
        d.attempts,
        if d.attempts == 1 { "" } else { "s" }
    );
    let mut fields = vec![
        ("subscription", d.subscription.clone()),
        ("event", format!("{} ({})", d.event_id, d.event_type)),
        (
            "conversation",
            d.conversation_id.clone().unwrap_or_else(|| NONE.into()),
        ),
        ("created", format_ms(d.created_at)),
        ("updated", format_ms(d.updated_at)),
    ];
    if let Some(next) = d.next_attempt_at.filter(|_| d.state == "pending") {
        fields.push(("next attempt", format_ms(next)));
    }
    push_fields(&mut out, &fields);

    let _ = writeln!(out, "\nevent {}", e.id);
    let body = match (&e.body, e.payload_dropped_at) {
        (Some(text), _) => text.clone(),
        (None, Some(at)) => format!("(dropped by retention or a forget at {})", format_ms(at)),
        (None, None) => "(none)".to_string(),
    };
    push_fields(
        &mut out,
        &[
            ("type", e.event_type.clone()),
            (
                "conversation",
                e.conversation_id.clone().unwrap_or_else(|| NONE.into()),
            ),
            (
                "project",
                e.project_id.clone().unwrap_or_else(|| NONE.into()),
            ),
            (
                "received",
                format!("{} from {}", format_ms(e.received_at), e.source),
            ),
            ("body", body),
        ],
    );

    let _ = writeln!(out, "\nattempts");
    if detail.attempts.is_empty() {
        let _ = writeln!(out, "  none yet");
    }
    for attempt in &detail.attempts {
        let _ = writeln!(
            out,
            "  #{} {}  {}",
            attempt.attempt,
            format_ms(attempt.started_at),
            attempt_line(attempt)
        );
    }

    if let Some(request) = &detail.request {
        let _ = writeln!(out, "\nrequest\n  {} {}", request.method, request.url);
        for (name, value) in &request.headers {
            let _ = writeln!(out, "  {name}: {value}");
        }
    }
    out
}

/// An attempt as one line: `200 in 12ms: ok`, `timed out after 2000ms`, ...
pub fn attempt_line(attempt: &Attempt) -> String {
    let mut line = match attempt.status {
        Some(status) => format!("{status} in {}ms", attempt.duration_ms),
        None => format!("no answer after {}ms", attempt.duration_ms),
    };
    if let Some(error) = &attempt.error {
        let _ = write!(line, ": {error}");
    }
    if let Some(snippet) = attempt.response_snippet.as_deref().map(str::trim) {
        if !snippet.is_empty() {
            let _ = write!(line, ": {}", one_line(&cut(snippet, SNIPPET_CHARS)));
        }
    }
    line
}

fn push_fields(out: &mut String, fields: &[(&str, String)]) {
    let width = fields.iter().map(|(name, _)| name.len()).max().unwrap_or(0);
    for (name, value) in fields {
        let _ = writeln!(out, "  {name:<width$}  {value}");
    }
}

/// `text` cut to `max` characters, with `…` where it was cut.
fn cut(text: &str, max: usize) -> String {
    if text.chars().count() <= max {
        return text.to_string();
    }
    let mut kept: String = text.chars().take(max.saturating_sub(1)).collect();
    kept.push('…');
    kept
}

/// Line breaks and tabs as spaces, so one value stays on one line.
fn one_line(text: &str) -> String {
    text.chars()
        .map(|c| if c.is_control() { ' ' } else { c })
        .collect()
}

/// A plain text table: a header, then rows, columns padded to the widest cell.
struct Table {
    header: Vec<String>,
    rows: Vec<Vec<String>>,
}

impl Table {
    fn new(header: &[&str]) -> Table {
        Table {
            header: header.iter().map(|h| h.to_string()).collect(),
            rows: Vec::new(),
        }
    }

    fn row(&mut self, cells: Vec<String>) {
        self.rows.push(cells.iter().map(|c| one_line(c)).collect());
    }

    fn render(&self) -> String {
        let mut widths: Vec<usize> = self.header.iter().map(|h| h.chars().count()).collect();
        for row in &self.rows {
            for (width, cell) in widths.iter_mut().zip(row) {
                *width = (*width).max(cell.chars().count());
            }
        }
        let mut out = String::new();
        for row in std::iter::once(&self.header).chain(&self.rows) {
            let last = row.len().saturating_sub(1);
            for (i, (cell, width)) in row.iter().zip(&widths).enumerate() {
                if i == last {
                    out.push_str(cell);
                } else {
                    let pad = width - cell.chars().count();
                    out.push_str(cell);
                    out.push_str(&" ".repeat(pad + 2));
                }
            }
            out.push('\n');
        }
        out
    }
}

#[cfg(test)]
mod tests {
    use super::super::api::{DeliverySwitch, Event, Health, StateCounts};
    use super::*;

    fn row(id: i64, state: &str, status: Option<u16>, error: Option<&str>) -> DeliveryRow {
        DeliveryRow {
            id,
            event_id: format!("evt-{id}"),
            event_type: "conversation.started".into(),
            conversation_id: Some("c-204".into()),
            subscription: "north-crm".into(),
            state: state.into(),
            attempts: 2,
            next_attempt_at: None,
            in_flight: false,
            created_at: 1_795_341_600_000,
            updated_at: 1_795_341_601_000,
            last_status: status,
            last_error: error.map(str::to_string),
        }
    }

    #[test]
    fn the_delivery_table_lines_up_and_shows_each_outcome() {
        let text = delivery_table(&[
            row(7, "delivered", Some(200), None),
            row(12, "dead", None, Some("connection failed")),
            row(13, "pending", Some(503), Some("x".repeat(100).as_str())),
        ]);
        let lines: Vec<&str> = text.lines().collect();
        assert_eq!(lines.len(), 4, "{text}");
        assert!(lines[0].starts_with("ID  CREATED"), "{text}");
        assert!(
            lines[1].starts_with("7   2026-11-22T10:00:00Z  north-crm"),
            "{text}"
        );
        assert!(lines[1].ends_with("delivered  2         200"), "{text}");
        assert!(
            lines[2].ends_with("dead       2         connection failed"),
            "{text}"
        );
        let col = lines[0].find("STATE").unwrap();
        assert_eq!(lines[3].find("pending"), Some(col), "{text}");
        assert_eq!(
            lines[3].chars().filter(|c| *c == 'x').count(),
            CELL_CHARS - 5
        );
        assert!(lines[3].ends_with('…'), "{text}");
    }

    #[test]
    fn status_names_states_rates_and_the_queue() {
        let overview = Overview {
            events_total: 120,
            events_last_24h: 15,
            deliveries: StateCounts {
                pending: 3,
                delivered: 100,
                dead: 2,
                cancelled: 1,
                failing: 1,
            },
            queue_depth: 3,
            oldest_pending_age_ms: Some(125_000),
            delivery: None,
        };
        let health = Health {
            attempts_counted: 8,
            success_rate: Some(0.875),
            delivery_success_rate: Some(1.0),
            latency_median_ms: Some(20),
            latency_p95_ms: Some(42),
            last_attempt_at: Some(1_795_341_600_000),
            last_status: Some(500),
            last_error: None,
            failing_streak: 2,
            pending: 1,
            ..Health::default()
        };
        let subs = vec![
            Subscription {
                name: "north-crm".into(),
                enabled: true,
                paused: true,
                health: health.clone(),
            },
            Subscription {
                name: "idle".into(),
                enabled: false,
                paused: false,
                health: Health {
                    attempts_counted: 0,
                    success_rate: None,
                    latency_median_ms: None,
                    latency_p95_ms: None,
                    last_attempt_at: None,
                    last_status: None,
                    last_error: None,
                    failing_streak: 0,
                    pending: 0,
                    ..Health::default()
                },
            },
        ];
        let text = status("http://127.0.0.1:8425", &overview, &subs);
        assert!(text.contains("120 total, 15 in the last 24 h"), "{text}");
        assert!(
            text.contains("3 pending (1 failing), 100 delivered, 2 dead, 1 cancelled"),
            "{text}"
        );
        assert!(
            text.contains("3 deep, oldest pending waiting 2m05s"),
            "{text}"
        );
        let north = text.lines().find(|l| l.starts_with("north-crm")).unwrap();
        let words: Vec<&str> = north.split_whitespace().collect();
        assert_eq!(
            words,
            [
                "north-crm",
                "paused",
                "87.5%",
                "100.0%",
                "42ms",
                "2",
                "1",
                "2026-11-22T10:00:00Z",
                "500"
            ]
        );
        let idle = text.lines().find(|l| l.starts_with("idle")).unwrap();
        let words: Vec<&str> = idle.split_whitespace().collect();
        assert_eq!(
            words,
            ["idle", "disabled", "-", "-", "-", "0", "0", "-", "-"]
        );
        assert!(!text.contains("delivery:"), "{text}");
    }

    #[test]
    fn status_says_why_delivery_is_off_and_why_posthorn_paused_or_holds_back() {
        let overview = Overview {
            events_total: 0,
            events_last_24h: 0,
            deliveries: StateCounts::default(),
            queue_depth: 0,
            oldest_pending_age_ms: None,
            delivery: Some(DeliverySwitch {
                enabled: false,
                reason: Some("delivery is paused by an operator (pause all)".into()),
            }),
        };
        let subs = vec![
            Subscription {
                name: "gone".into(),
                enabled: true,
                paused: true,
                health: Health {
                    pause_reason: Some("the receiver answered 410 Gone".into()),
                    ..Health::default()
                },
            },
            Subscription {
                name: "sick".into(),
                enabled: true,
                paused: false,
                health: Health {
                    breaker: Some("open".into()),
                    ..Health::default()
                },
            },
        ];
        let text = status("http://127.0.0.1:8425", &overview, &subs);
        assert!(
            text.contains("delivery:    OFF: delivery is paused by an operator (pause all)"),
            "{text}"
        );
        assert!(
            text.contains("gone paused by posthorn: the receiver answered 410 Gone"),
            "{text}"
        );
        let sick = text.lines().find(|l| l.starts_with("sick")).unwrap();
        assert!(sick.contains("held back"), "{text}");
    }

    #[test]
    fn a_delivery_shows_its_event_and_attempts() {
        let detail = DeliveryDetail {
            delivery: row(12, "dead", Some(500), None),
            event: Event {
                seq: 12,
                id: "evt-12".into(),
                event_type: "conversation.started".into(),
                conversation_id: Some("c-204".into()),
                project_id: None,
                received_at: 1_795_341_600_000,
                source: "spool:a.ndjson".into(),
                body: Some(r#"{"id":"evt-12"}"#.into()),
                payload_dropped_at: None,
            },
            attempts: vec![
                Attempt {
                    attempt: 1,
                    started_at: 1_795_341_600_500,
                    duration_ms: 2000,
                    status: None,
                    error: Some("timed out".into()),
                    response_snippet: None,
                    shaping: None,
                },
                Attempt {
                    attempt: 2,
                    started_at: 1_795_341_605_000,
                    duration_ms: 12,
                    status: Some(500),
                    error: None,
                    response_snippet: Some("boom\nline two".into()),
                    shaping: None,
                },
            ],
            request: None,
        };
        let text = delivery_detail(&detail);
        assert!(
            text.starts_with("delivery 12: dead after 2 attempts\n"),
            "{text}"
        );
        assert!(
            text.contains("  event         evt-12 (conversation.started)"),
            "{text}"
        );
        assert!(
            text.contains(r#"  body          {"id":"evt-12"}"#),
            "{text}"
        );
        assert!(
            text.contains("  #1 2026-11-22T10:00:00.5Z  no answer after 2000ms: timed out"),
            "{text}"
        );
        assert!(
            text.contains("  #2 2026-11-22T10:00:05Z  500 in 12ms: boom line two"),
            "{text}"
        );
    }
}
