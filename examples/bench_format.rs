//! What a subscription's `format` costs per delivery: renders one realistic event (an
//! ECHO `conversation.summarized` payload with a 1.5 KB summary and a 40-chunk, 8 KB
//! transcript excerpt) with each built-in chat format and two templates, the way the
//! worker does just before signing, and prints the median and 99th percentile in
//! microseconds per render next to the default envelope (which is borrowed, not copied).
//!
//! ```sh
//! cargo run --release --example bench_format [-- --quick]
//! ```
//!
//! Exit code 0 means every format's median stayed under the target.

use std::path::Path;
use std::time::Instant;

const RENDERS: usize = 5_000;
const QUICK_RENDERS: usize = 500;
/// A render should cost no more than a few microseconds next to a network round trip
/// of milliseconds.
const TARGET_MEDIAN_US: f64 = 100.0;

const SLACK_TEMPLATE: &str = r#"{"text": {{ "Conversation *" ~ (data.conversation.title | slack) ~ "* was summarized" }}, "blocks": [{"type": "section", "text": {"type": "mrkdwn", "text": {{ data.conversation.summary | slack | limit(3000) }}}}]}"#;
const TEXT_TEMPLATE: &str = "{{ type }} in {{ data.conversation.title }} ({{ data.project.name }}): {{ data.conversation.summary | limit(500) }}{% for tag in data.conversation.tags %} #{{ tag }}{% endfor %}";

fn event() -> String {
    let summary = "Residents of the north district discussed safer crossings near the \
        primary school, longer opening hours for the library and more benches on the \
        market square. Several asked for a pedestrian zone on Saturdays; shop owners \
        worried about deliveries. "
        .repeat(6);
    let transcript: Vec<serde_json::Value> = (0..40)
        .map(|i| {
            serde_json::json!({
                "start": i * 30,
                "speaker": format!("participant-{}", i % 7),
                "text": "I think the crossing at the school is the most urgent point, \
                         the cars come around the corner far too fast in the morning.",
            })
        })
        .collect();
    serde_json::json!({
        "id": "echo_6f1c9a0b2d3e4f5a6b7c8d9e0f1a2b3c",
        "type": "conversation.summarized",
        "conversation_id": "c-204",
        "project_id": "p-9",
        "timestamp": "2026-11-22T10:00:00Z",
        "data": {
            "event": "conversation.summarized",
            "timestamp": "2026-11-22T10:00:00.123456+00:00",
            "conversation": {
                "id": "c-204",
                "title": "North district — evening session",
                "tags": ["mobility", "library", "market"],
                "duration": 5434.5,
                "summary": summary,
                "transcript": transcript,
            },
            "project": {"id": "p-9", "name": "City consultation 2026", "language": "en"},
            "dashboardUrl": "https://echo.example/p/p-9/c/c-204",
        },
    })
    .to_string()
}

fn subscription(extra: &str) -> posthorn::config::Subscription {
    let text = format!(
        "[[subscription]]\nname = \"s\"\nurl = \"https://hooks.example.org/alerts\"\n\
         conversations = [\"*\"]\nevents = [\"*\"]\n\
         secret = \"whsec_MfKQ9r8GKYqrTwjUPD8ILPZIo2LaLaSw\"\n{extra}\n"
    );
    match posthorn::config::parse(&text, Path::new("bench.toml")) {
        Ok(mut config) => config.subscriptions.remove(0),
        Err(err) => panic!("bench config: {err}"),
    }
}

fn main() {
    let quick = std::env::args().any(|a| a == "--quick");
    let renders = if quick { QUICK_RENDERS } else { RENDERS };
    let envelope = event();
    let cases = [
        ("envelope (default)", String::new()),
        ("slack", "format = \"slack\"".to_string()),
        ("discord", "format = \"discord\"".to_string()),
        ("teams", "format = \"teams\"".to_string()),
        ("matrix", "format = \"matrix\"".to_string()),
        ("mattermost", "format = \"mattermost\"".to_string()),
        ("ntfy", "format = \"ntfy\"".to_string()),
        ("template, JSON", format!("template = '{SLACK_TEMPLATE}'")),
        (
            "template, text",
            format!("template = '{TEXT_TEMPLATE}'\ncontent_type = \"text/plain\""),
        ),
    ];
    println!(
        "per-delivery render cost, {} byte event, {renders} renders each",
        envelope.len()
    );
    println!(
        "{:<20} {:>12} {:>12} {:>12}",
        "format", "median µs", "p99 µs", "body bytes"
    );
    let mut ok = true;
    for (name, extra) in cases {
        let subscription = subscription(&extra);
        let mut took = Vec::with_capacity(renders);
        let mut size = 0;
        for _ in 0..renders {
            let start = Instant::now();
            let rendered = posthorn::format::render(&subscription, envelope.as_bytes())
                .unwrap_or_else(|err| panic!("{name}: {err}"));
            size = std::hint::black_box(rendered.body.len());
            took.push(start.elapsed().as_secs_f64() * 1e6);
        }
        took.sort_by(f64::total_cmp);
        let median = took[took.len() / 2];
        let p99 = took[took.len() * 99 / 100];
        ok &= median <= TARGET_MEDIAN_US;
        println!("{name:<20} {median:>12.2} {p99:>12.2} {size:>12}");
    }
    println!("target: median at most {TARGET_MEDIAN_US} µs per render");
    if !ok {
        std::process::exit(1);
    }
}
