//! Shaping benchmark: what a `filter` plus an `include`/`exclude` plus a `format`
//! (a template or a chat format) cost per delivery next to the plain path, on an
//! ECHO-like `conversation.summarized` event (a summary, participants with emails and a
//! transcript) at three sizes: no transcript (about 2 KB), 30 chunks (about 9 KB) and
//! 400 chunks (about 100 KB). In process, no network.
//!
//! One delivery here is everything posthorn does for it besides the HTTP exchange:
//! routing the event (the filter is checked there), then in the worker
//! `format::outgoing` (the projection and the render) and the Standard Webhooks HMAC
//! over the body sent. Nothing is cached between deliveries: each one pays the whole
//! cost, as a real delivery does.
//!
//! ```sh
//! cargo run --release --example bench_shaping
//! ```
//!
//! Prints the median of 9 runs of each case in microseconds per delivery and the
//! difference to the plain path. Exit code 0 means filter + exclude + template stayed
//! within 5 us of the plain path on the 2 KB and 9 KB events.

use std::hint::black_box;
use std::path::Path;
use std::time::Instant;

use posthorn::config::Subscription;
use posthorn::deliver::rendered_headers;
use posthorn::event::{parse_event, Event};
use posthorn::format::outgoing;
use posthorn::routing::route;

const RUNS: usize = 9;
/// Deliveries per run: about 20 ms of work per run at every size.
const WORK_US_PER_RUN: f64 = 20_000.0;
/// What "within a few microseconds" means here.
const TARGET_EXTRA_US: f64 = 5.0;
/// Events up to this size must meet the target (the 100 KB one is reported).
const TARGET_UP_TO_BYTES: usize = 16 << 10;

const FILTER: &str = r#"filter = [{ path = "/data/project/language", equals = "nl-NL" }, { path = "/data/score", gte = 0.5 }, { path = "/data/conversation/tags", contains = "urgent" }]"#;
const EXCLUDE: &str = r#"exclude = ["/data/conversation/participants/*/email"]"#;
const INCLUDE: &str = r#"include = ["/data/conversation/title", "/data/conversation/summary", "/data/conversation/tags", "/data/project/name", "/data/conversation/participants/*/name"]"#;
const TEMPLATE: &str = r#"template = '{"text": {{ "Conversation *" ~ (data.conversation.title | slack) ~ "* was summarized" }}, "blocks": [{"type": "section", "text": {"type": "mrkdwn", "text": {{ data.conversation.summary | slack | limit(3000) }}}}, {"type": "context", "elements": [{"type": "mrkdwn", "text": {{ data.project.name ~ ": " ~ (data.conversation.tags | join(", ")) }}}]}]}'"#;

fn event(chunks: usize) -> Event {
    let mut transcript = String::new();
    for i in 0..chunks {
        if i > 0 {
            transcript.push(',');
        }
        transcript.push_str(&format!(
            r#"{{"id":"chunk-{i}","timestamp":"2026-11-22T10:{:02}:{:02}Z","speaker":"participant-{}","text":"We talked about the bus line on the north side and whether the new stop near the school should get a shelter, {i} people said y\u00e9s \u2014 \"urgent\"","confidence":0.9{}}}"#,
            i / 60 % 60,
            i % 60,
            i % 5,
            i % 10
        ));
    }
    let participants: Vec<String> = (0..12)
        .map(|i| {
            format!(r#"{{"id":"p-{i}","name":"Participant {i}","email":"p{i}@example.org","role":"resident"}}"#)
        })
        .collect();
    let raw = format!(
        r#"{{"id":"evt_bench","type":"conversation.summarized","conversation_id":"c-204","project_id":"p-9","occurred_at":"2026-11-22T10:00:00Z","data":{{"event":"conversation.summarized","timestamp":"2026-11-22T10:00:00.123456+00:00","score":0.87,"conversation":{{"id":"c-204","title":"North district \u2014 town hall","tags":["mobility","urgent"],"duration":12345678901234567890,"summary":"Residents of the north district asked for a sheltered stop near the school, safer crossings and a later last bus. {}","participants":[{}],"transcript":[{transcript}]}},"project":{{"id":"p-9","name":"City consultation 2026","language":"nl-NL"}},"dashboardUrl":"https://echo.example/p/p-9/c/c-204"}}}}"#,
        "More detail. ".repeat(40),
        participants.join(",")
    );
    parse_event(raw.as_bytes(), 1 << 24, time::OffsetDateTime::UNIX_EPOCH)
        .unwrap_or_else(|err| panic!("the benchmark event is invalid: {err}"))
}

fn subscription(extra: &str) -> Subscription {
    let text = format!(
        "[[subscription]]\nname = \"s\"\nurl = \"https://crm.example.org/hook\"\n\
         conversations = [\"c-*\"]\nevents = [\"conversation.*\"]\n\
         secret = \"whsec_MfKQ9r8GKYqrTwjUPD8ILPZIo2LaLaSw\"\n{extra}\n"
    );
    posthorn::config::parse(&text, Path::new("bench.toml"))
        .unwrap_or_else(|err| panic!("{err}"))
        .subscriptions
        .remove(0)
}

/// One delivery's work: route the event (the filter), shape and render the body, sign
/// it. Returns the size of the body sent.
fn deliver(subscriptions: &[Subscription], event: &Event) -> usize {
    let routed = route(subscriptions, event);
    assert_eq!(routed.len(), 1, "the benchmark event must match");
    let subscription = &subscriptions[0];
    let rendered = outgoing(subscription, &event.body).unwrap_or_else(|err| panic!("{err}"));
    let headers = rendered_headers(subscription, &event.id, 1_795_000_000, &rendered);
    black_box(headers);
    rendered.body.len()
}

/// Median over runs of the microseconds per delivery, and the body size sent.
fn measure(subscription: &Subscription, event: &Event) -> (f64, usize) {
    let subscriptions = [subscription.clone()];
    let size = deliver(&subscriptions, event);
    let start = Instant::now();
    for _ in 0..20 {
        black_box(deliver(&subscriptions, black_box(event)));
    }
    let guess = start.elapsed().as_secs_f64() * 1e6 / 20.0;
    let iterations = ((WORK_US_PER_RUN / guess.max(0.01)) as usize).clamp(50, 20_000);
    let mut runs: Vec<f64> = (0..RUNS)
        .map(|_| {
            let start = Instant::now();
            for _ in 0..iterations {
                black_box(deliver(&subscriptions, black_box(event)));
            }
            start.elapsed().as_secs_f64() * 1e6 / iterations as f64
        })
        .collect();
    runs.sort_by(f64::total_cmp);
    (runs[RUNS / 2], size)
}

fn main() {
    let cases = [
        ("plain (whole body, envelope)", String::new()),
        ("filter + exclude emails", format!("{FILTER}\n{EXCLUDE}")),
        (
            "filter + exclude emails + template",
            format!("{FILTER}\n{EXCLUDE}\n{TEMPLATE}"),
        ),
        (
            "filter + include summary + template",
            format!("{FILTER}\n{INCLUDE}\n{TEMPLATE}"),
        ),
        (
            "filter + exclude emails + slack",
            format!("{FILTER}\n{EXCLUDE}\nformat = \"slack\""),
        ),
    ];
    let subscriptions: Vec<(&str, Subscription)> = cases
        .iter()
        .map(|(name, extra)| (*name, subscription(extra)))
        .collect();
    let mut met = true;
    for chunks in [0, 30, 400] {
        let event = event(chunks);
        println!(
            "\nevent of {} bytes; median of {RUNS} runs, us per delivery (route + shape + render + sign)",
            event.body.len()
        );
        let mut plain = None;
        for (name, subscription) in &subscriptions {
            let (us, size) = measure(subscription, &event);
            let base = *plain.get_or_insert(us);
            let extra = us - base;
            println!("{name:<38} {us:>9.2} us  {extra:>+8.2} us  ({size} bytes sent)");
            if name.ends_with("emails + template")
                && event.body.len() <= TARGET_UP_TO_BYTES
                && extra > TARGET_EXTRA_US
            {
                met = false;
            }
        }
    }
    println!(
        "\ntarget: filter + exclude + template within {TARGET_EXTRA_US} us of plain \
         up to {} KB: {}",
        TARGET_UP_TO_BYTES >> 10,
        if met { "met" } else { "NOT met" }
    );
    if !met {
        std::process::exit(1);
    }
}
