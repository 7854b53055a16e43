//! Shaping benchmark: the cost per delivery of a `filter` plus an `include`/`exclude`
//! next to the plain path, on an ECHO-like report (a transcript of 400 chunks, a summary,
//! participants with emails; about 100 KB), then on the same report without its
//! transcript (about 3 KB). In process, no network: what is timed is the
//! work posthorn adds per delivery, routing the event (the filter) and, in the worker,
//! shaping the body and signing it (Standard Webhooks HMAC over the body sent).
//!
//! ```sh
//! cargo run --release --example bench_shaping
//! ```
//!
//! Prints the median of 9 runs of each case in microseconds per delivery. Exit code 0
//! means the filter plus exclude case stayed within 5 us of the plain path.

use std::hint::black_box;
use std::path::Path;
use std::time::Instant;

use posthorn::config::Subscription;
use posthorn::deliver::request_headers;
use posthorn::event::{parse_event, Event};
use posthorn::routing::route;

const RUNS: usize = 9;
const ITERATIONS: usize = 2_000;
/// What "within a few microseconds" means here.
const TARGET_EXTRA_US: f64 = 5.0;

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
        r#"{{"id":"evt_bench","type":"conversation.summarized","conversation_id":"c-204","project_id":"p-9","occurred_at":"2026-11-22T10:00:00Z","data":{{"language":"nl-NL","kind":"summary","tags":["mobility","urgent"],"score":0.87,"title":"North district town hall","summary":"Residents of the north district asked for a sheltered stop near the school, safer crossings and a later last bus. {}","participants":[{}],"transcript":[{transcript}],"duration_s":12345678901234567890}}}}"#,
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

/// One delivery's work: route the event, shape the body, sign it. Returns the body size.
fn deliver(subscriptions: &[Subscription], event: &Event) -> usize {
    let routed = route(subscriptions, event);
    assert_eq!(routed.len(), 1, "the benchmark event must match");
    let subscription = &subscriptions[0];
    let body = subscription
        .shaping
        .body(&event.body)
        .unwrap_or_else(|err| panic!("{err}"));
    let headers = request_headers(subscription, &event.id, 1_795_000_000, body.as_bytes());
    black_box(headers);
    body.len()
}

/// Median over runs of the microseconds one call of `work` takes.
fn median_us(mut work: impl FnMut()) -> f64 {
    let mut runs: Vec<f64> = (0..RUNS)
        .map(|_| {
            let start = Instant::now();
            for _ in 0..ITERATIONS {
                work();
            }
            start.elapsed().as_secs_f64() * 1e6 / ITERATIONS as f64
        })
        .collect();
    runs.sort_by(f64::total_cmp);
    runs[RUNS / 2]
}

/// Median over runs of the microseconds per delivery, and the body size sent.
fn measure(subscription: &Subscription, event: &Event) -> (f64, usize) {
    let subscriptions = [subscription.clone()];
    let size = deliver(&subscriptions, event);
    let mut runs: Vec<f64> = (0..RUNS)
        .map(|_| {
            let start = Instant::now();
            for _ in 0..ITERATIONS {
                black_box(deliver(&subscriptions, black_box(event)));
            }
            start.elapsed().as_secs_f64() * 1e6 / ITERATIONS as f64
        })
        .collect();
    runs.sort_by(f64::total_cmp);
    (runs[RUNS / 2], size)
}

fn main() {
    let mut met = true;
    // The full report, and the same without its transcript (what most events are).
    for chunks in [400, 0] {
        met &= compare(&event(chunks));
    }
    println!(
        "target: filter + exclude within {TARGET_EXTRA_US} us of plain: {}",
        if met { "met" } else { "NOT met" }
    );
    if !met {
        std::process::exit(1);
    }
}

/// Prints each case for `event`; whether filter + exclude stayed within the target.
fn compare(event: &Event) -> bool {
    const FILTER: &str = r#"filter = [{ path = "/data/language", equals = "nl-NL" }, { path = "/data/score", gte = 0.5 }, { path = "/data/tags", contains = "urgent" }]"#;
    let cases = [
        ("plain (whole body, no filter)", subscription("")),
        (
            "filter + exclude participant emails",
            subscription(&format!(
                "{FILTER}\nexclude = [\"/data/participants/*/email\"]"
            )),
        ),
        (
            "filter + include summary and names",
            subscription(&format!(
                "{FILTER}\ninclude = [\"/data/summary\", \"/data/participants/*/name\"]"
            )),
        ),
        (
            "filter + exclude transcript and emails",
            subscription(&format!(
                "{FILTER}\nexclude = [\"/data/transcript\", \"/data/participants/*/email\"]"
            )),
        ),
    ];
    println!(
        "\nstored body {} bytes; median of {RUNS} runs of {ITERATIONS} deliveries",
        event.body.len()
    );
    let mut plain = None;
    let mut met = true;
    for (name, subscription) in &cases {
        let (us, size) = measure(subscription, event);
        let base = *plain.get_or_insert(us);
        let extra = us - base;
        let subscriptions = [subscription.clone()];
        let routing = median_us(|| {
            black_box(route(&subscriptions, black_box(event)));
        });
        let shaping = median_us(|| {
            black_box(subscription.shaping.body(black_box(&event.body)).ok());
        });
        println!(
            "{name:<42} {us:>8.2} us/delivery  ({size} bytes sent, {extra:+.2} us; \
             routing {routing:.2} us, shaping {shaping:.2} us)"
        );
        if name.starts_with("filter + exclude participant") && extra > TARGET_EXTRA_US {
            met = false;
        }
    }
    met
}
