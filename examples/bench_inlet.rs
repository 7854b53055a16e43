//! Inlet benchmark: runs the release `posthorn` binary and drives `POST /v1/events` from
//! 32 keep-alive connections on 127.0.0.1 (std threads, ureq), first with batches of 100
//! events, then with one event per request, and prints events/s and requests/s against
//! the targets. Every 202 means the batch was committed with `synchronous = FULL`.
//!
//! ```sh
//! cargo build --release && cargo run --release --example bench_inlet [-- --quick]
//! ```
//!
//! It runs `target/release/posthorn` (or `--bin PATH` / `$POSTHORN_BIN`), with no
//! subscriptions, so what is measured is the inlet and the store: parse, route, commit.
//! Exit code 0 means both targets were met.

use std::fs;
use std::process::{Command, Stdio};
use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::Arc;
use std::time::{Duration, Instant};

use anyhow::{bail, Context as _};

#[path = "bench/common.rs"]
mod common;

const TOKEN: &str = "bench-inlet-token";
const CONNECTIONS: usize = 32;
const BATCH: usize = 100;
const TARGET_EVENTS_PER_SEC: f64 = 20_000.0;
const TARGET_REQUESTS_PER_SEC: f64 = 3_000.0;

fn main() {
    match run() {
        Ok(true) => {}
        Ok(false) => std::process::exit(1),
        Err(err) => {
            eprintln!("bench_inlet: {err:#}");
            std::process::exit(2);
        }
    }
}

fn run() -> anyhow::Result<bool> {
    let common::Args { quick, bin } = common::args("bench_inlet")?;
    let (batched_requests, single_requests) = if quick { (500, 5_000) } else { (3_000, 30_000) };

    let dir = tempfile::tempdir()?;
    let port = std::net::TcpListener::bind("127.0.0.1:0")?
        .local_addr()?
        .port();
    let config = dir.path().join("config.toml");
    fs::write(
        &config,
        format!(
            "[storage]\npath = {:?}\n[spool]\ndir = {:?}\n[http]\nlisten = \"127.0.0.1:{port}\"\n\
             [inlet]\ntoken = \"{TOKEN}\"\n",
            dir.path().join("posthorn.db").display().to_string(),
            dir.path().join("spool").display().to_string(),
        ),
    )?;
    let log = dir.path().join("posthorn.log");
    let mut child = Command::new(&bin)
        .args(["serve", "--config"])
        .arg(&config)
        .env("POSTHORN_LOG", "warn")
        .stdin(Stdio::null())
        .stdout(Stdio::null())
        .stderr(fs::File::create(&log)?)
        .spawn()
        .with_context(|| format!("while starting {}", bin.display()))?;
    let outcome = (|| {
        common::wait_listening(&mut child, port, Duration::from_secs(30))?;
        let url = format!("http://127.0.0.1:{port}/v1/events");
        println!(
            "posthorn inlet bench ({}): {CONNECTIONS} connections, {} cores",
            if quick { "quick" } else { "full" },
            std::thread::available_parallelism().map_or(0, |n| n.get())
        );
        let batched = drive(&url, batched_requests, BATCH, "b")?;
        let single = drive(&url, single_requests, 1, "s")?;
        Ok::<_, anyhow::Error>((batched, single))
    })();
    let _ = Command::new("kill").arg(child.id().to_string()).status();
    let _ = child.wait();
    let (batched, single) = outcome.inspect_err(|_| {
        eprintln!("{}", fs::read_to_string(&log).unwrap_or_default());
    })?;

    let events_per_sec = batched.events as f64 / batched.took.as_secs_f64();
    let requests_per_sec = single.requests as f64 / single.took.as_secs_f64();
    println!("| what | measured | target |\n| --- | --- | --- |");
    println!(
        "| batches of {BATCH}: {} events in {:.2} s | {events_per_sec:.0} events/s ({:.0} requests/s, p50 {:.1} ms, p99 {:.1} ms) | >= {TARGET_EVENTS_PER_SEC:.0} events/s |",
        batched.events,
        batched.took.as_secs_f64(),
        batched.requests as f64 / batched.took.as_secs_f64(),
        batched.p50_ms,
        batched.p99_ms,
    );
    println!(
        "| single events: {} requests in {:.2} s | {requests_per_sec:.0} requests/s (p50 {:.1} ms, p99 {:.1} ms) | >= {TARGET_REQUESTS_PER_SEC:.0} requests/s |",
        single.requests,
        single.took.as_secs_f64(),
        single.p50_ms,
        single.p99_ms,
    );
    let met =
        events_per_sec >= TARGET_EVENTS_PER_SEC && requests_per_sec >= TARGET_REQUESTS_PER_SEC;
    println!("{}", if met { "targets met" } else { "TARGETS MISSED" });
    Ok(met)
}

struct Run {
    requests: usize,
    events: usize,
    took: Duration,
    p50_ms: f64,
    p99_ms: f64,
}

/// Sends `requests` requests of `per_request` events from [`CONNECTIONS`] threads, each
/// with its own keep-alive connection; every answer must be 202.
fn drive(url: &str, requests: usize, per_request: usize, phase: &str) -> anyhow::Result<Run> {
    let next = Arc::new(AtomicUsize::new(0));
    let started = Instant::now();
    let threads: Vec<_> = (0..CONNECTIONS)
        .map(|_| {
            let (next, url, phase) = (Arc::clone(&next), url.to_string(), phase.to_string());
            std::thread::spawn(move || -> anyhow::Result<Vec<f64>> {
                let agent: ureq::Agent = ureq::Agent::config_builder()
                    .http_status_as_error(false)
                    .timeout_global(Some(Duration::from_secs(30)))
                    .build()
                    .into();
                let mut latencies = Vec::new();
                loop {
                    let n = next.fetch_add(1, Ordering::Relaxed);
                    if n >= requests {
                        return Ok(latencies);
                    }
                    let body = body(&phase, n, per_request);
                    let sent = Instant::now();
                    let mut response = agent
                        .post(&url)
                        .header("Authorization", &format!("Bearer {TOKEN}"))
                        .content_type("application/json")
                        .send(body.as_bytes())?;
                    let status = response.status().as_u16();
                    let text = response.body_mut().read_to_string()?;
                    if status != 202 {
                        bail!("request {n} answered {status}: {text}");
                    }
                    latencies.push(sent.elapsed().as_secs_f64() * 1e3);
                }
            })
        })
        .collect();
    let mut latencies = Vec::new();
    for thread in threads {
        latencies.extend(
            thread
                .join()
                .map_err(|_| anyhow::anyhow!("a client thread panicked"))??,
        );
    }
    let took = started.elapsed();
    latencies.sort_by(f64::total_cmp);
    let at = |q: f64| latencies[((latencies.len() as f64 * q) as usize).min(latencies.len() - 1)];
    Ok(Run {
        requests,
        events: requests * per_request,
        took,
        p50_ms: at(0.5),
        p99_ms: at(0.99),
    })
}

/// One request's body: a single envelope, or an array of `count` of them.
fn body(phase: &str, n: usize, count: usize) -> String {
    let event = |i: usize| {
        format!(
            r#"{{"id":"{phase}-{n}-{i}","type":"conversation.transcribed","conversation_id":"c-{}","project_id":"p-9","data":{{"language":"nl-NL","text":"Goedemorgen, welkom bij de wijkavond."}}}}"#,
            n % 50
        )
    };
    if count == 1 {
        return event(0);
    }
    let items: Vec<String> = (0..count).map(event).collect();
    format!("[{}]", items.join(","))
}
