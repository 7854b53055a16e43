//! Admin benchmark: seeds a store with 100,000 deliveries (20 subscriptions, 500
//! conversations, about 119,000 attempts over the last six days, and a year of the
//! charts' per-minute and per-hour history), runs the release
//! `posthorn` binary on it, and times every page's API call, the page's own files,
//! /metrics and /healthz over HTTP on 127.0.0.1, as the admin page and a scraper make them.
//! Prints the median, p95 and worst per route against the 100 ms target.
//!
//! ```sh
//! cargo build --release && cargo run --release --example bench_admin [-- --quick]
//! ```
//!
//! Runs `target/release/posthorn` (or `--bin PATH` / `$POSTHORN_BIN`). Exit code 0 means
//! every route's median and p95 were under the target.

use std::fs;
use std::path::Path;
use std::process::{Command, Stdio};
use std::time::{Duration, Instant};

use anyhow::{bail, Context as _};

#[path = "bench/common.rs"]
mod common;
use rusqlite::params;

const TOKEN: &str = "bench-admin-token-0123456789";
const DELIVERIES: usize = 100_000;
const SUBSCRIPTIONS: usize = 20;
const CONVERSATIONS: usize = 500;
const TARGET_MS: f64 = 100.0;
const DAY_MS: i64 = 24 * 60 * 60 * 1000;

fn main() {
    match run() {
        Ok(true) => {}
        Ok(false) => std::process::exit(1),
        Err(err) => {
            eprintln!("bench_admin: {err:#}");
            std::process::exit(2);
        }
    }
}

fn run() -> anyhow::Result<bool> {
    let common::Args { quick, bin } = common::args("bench_admin")?;
    let rounds = if quick { 20 } else { 100 };

    let dir = tempfile::tempdir()?;
    let db = dir.path().join("posthorn.db");
    let started = Instant::now();
    let sample_delivery = seed(&db)?;
    println!(
        "seeded {DELIVERIES} deliveries in {:.1} s ({:.1} MiB)",
        started.elapsed().as_secs_f64(),
        fs::metadata(&db)?.len() as f64 / (1 << 20) as f64
    );

    let port = std::net::TcpListener::bind("127.0.0.1:0")?
        .local_addr()?
        .port();
    let config = dir.path().join("config.toml");
    let mut text = format!(
        "[storage]\npath = {:?}\n[spool]\ndir = {:?}\n[http]\nlisten = \"127.0.0.1:{port}\"\n\
         [admin]\napi_token = \"{TOKEN}\"\n",
        db.display().to_string(),
        dir.path().join("spool").display().to_string(),
    );
    for s in 0..SUBSCRIPTIONS {
        // A closed port: nothing seeded is due, so nothing is sent while measuring.
        text.push_str(&format!(
            "[[subscription]]\nname = \"sub-{s:02}\"\nurl = \"http://127.0.0.1:9/hook\"\n\
             conversations = [\"*\"]\nevents = [\"*\"]\n\
             secret = \"whsec_MfKQ9r8GKYqrTwjUPD8ILPZIo2LaLaSw\"\n"
        ));
    }
    fs::write(&config, text)?;
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
        common::wait_listening(&mut child, port, Duration::from_secs(60))?;
        measure(port, rounds, sample_delivery)
    })();
    let _ = Command::new("kill").arg(child.id().to_string()).status();
    let _ = child.wait();
    let rows = outcome.inspect_err(|_| {
        eprintln!("{}", fs::read_to_string(&log).unwrap_or_default());
    })?;

    println!(
        "posthorn admin bench ({}): {rounds} requests per route, one keep-alive connection, {} cores",
        if quick { "quick" } else { "full" },
        std::thread::available_parallelism().map_or(0, |n| n.get())
    );
    println!("| route | median ms | p95 ms | worst ms | bytes |\n| --- | --- | --- | --- | --- |");
    let mut met = true;
    for row in &rows {
        println!(
            "| {} | {:.2} | {:.2} | {:.2} | {} |",
            row.label, row.median_ms, row.p95_ms, row.worst_ms, row.bytes
        );
        met &= row.median_ms < TARGET_MS && row.p95_ms < TARGET_MS;
    }
    println!(
        "{}",
        if met {
            format!("target met: every median and p95 under {TARGET_MS} ms")
        } else {
            "TARGET MISSED".to_string()
        }
    );
    Ok(met)
}

/// Creates the schema through posthorn itself, then fills it directly; returns a
/// delivery id with attempts, for the delivery page.
fn seed(db: &Path) -> anyhow::Result<i64> {
    let (new_work, _) = crossbeam_channel::bounded(1);
    posthorn::store::Store::open(db, new_work)?.close();
    let mut conn = rusqlite::Connection::open(db)?;
    conn.pragma_update(None, "synchronous", "OFF")?;
    let now = posthorn::store::now_ms();
    let tx = conn.transaction()?;
    {
        let mut event = tx.prepare(
            "INSERT INTO events (id, type, conversation_id, project_id, received_at, source, body)
             VALUES (?1, ?2, ?3, ?4, ?5, 'spool:bench.ndjson', ?6)",
        )?;
        let mut delivery = tx.prepare(
            "INSERT INTO deliveries (event_seq, event_id, subscription, state, attempts,
                 next_attempt_at, created_at, updated_at, last_status, last_error, event_type)
             VALUES (?1, ?2, ?3, ?4, ?5, ?6, ?7, ?8, ?9, ?10, ?11)",
        )?;
        let mut attempt = tx.prepare(
            "INSERT INTO attempts (delivery_id, attempt, started_at, duration_ms, status, error,
                                   response_snippet, subscription)
             VALUES (?1, ?2, ?3, ?4, ?5, ?6, ?7, ?8)",
        )?;
        let types = [
            "conversation.started",
            "conversation.transcribed",
            "conversation.ended",
            "conversation.analysis.completed",
            "report.generated",
        ];
        for n in 0..DELIVERIES {
            // Spread over six days, newest last; inside retention's defaults.
            let created = now - 6 * DAY_MS + (n as i64 * 6 * DAY_MS / DELIVERIES as i64);
            let id = format!("evt_bench_{n:06}");
            let kind = types[n % types.len()];
            let conversation = format!("c-{:03}", n % CONVERSATIONS);
            let subscription = format!("sub-{:02}", n % SUBSCRIPTIONS);
            let body = format!(
                r#"{{"id":"{id}","type":"{kind}","conversation_id":"{conversation}","project_id":"p-1","occurred_at":"2026-11-20T10:00:00Z","data":{{"text":"A transcript line of ordinary length for the benchmark."}}}}"#
            );
            event.execute(params![id, kind, conversation, "p-1", created, body])?;
            let seq = tx.last_insert_rowid();
            // 85 % delivered first time, 8 % dead after 3 failures, 5 % failing and
            // waiting (due tomorrow), 2 % cancelled.
            let (state, tries, next_at, status) = match n % 100 {
                0..=84 => ("delivered", 1, None, Some(200)),
                85..=92 => ("dead", 3, None, Some(500)),
                93..=97 => ("pending", 2, Some(now + DAY_MS), Some(503)),
                _ => ("cancelled", 0, None, None),
            };
            let error = (status == Some(500)).then_some("HTTP 500");
            delivery.execute(params![
                seq,
                id,
                subscription,
                state,
                tries,
                next_at,
                created,
                created + 1000 * tries as i64,
                status,
                error,
                kind
            ])?;
            let delivery_id = tx.last_insert_rowid();
            for a in 1..=tries {
                let ok = state == "delivered";
                attempt.execute(params![
                    delivery_id,
                    a,
                    created + 1000 * (a as i64 - 1),
                    5 + (n % 40) as i64,
                    status,
                    (!ok).then_some("HTTP error"),
                    Some(if ok { "ok" } else { "upstream busy" }),
                    subscription
                ])?;
            }
        }
        for n in 0..2000 {
            tx.execute(
                "INSERT INTO rejections (at, source, line, reason, snippet)
                 VALUES (?1, 'spool:bench.ndjson', ?2, 'line is not JSON', '{not json')",
                params![now - n * 60_000, n],
            )?;
            tx.execute(
                "INSERT INTO audit_log (at, actor, action, detail, result, origin)
                 VALUES (?1, 'session', 'delivery.retry', 'delivery 1', 'applied', '127.0.0.1')",
                params![now - n * 60_000],
            )?;
        }
    }
    seed_history(&tx, now)?;
    tx.commit()?;
    // The dead delivery of the newest events: three attempts to show.
    let sample = conn.query_row(
        "SELECT max(id) FROM deliveries WHERE state = 'dead'",
        [],
        |row| row.get(0),
    )?;
    conn.execute_batch("PRAGMA wal_checkpoint(TRUNCATE); ANALYZE;")?;
    Ok(sample)
}

/// A year of the charts' history (store/rollup.rs), as a year of traffic leaves it for
/// every subscription and their sum: an hour row for each of 365 days' hours, a minute
/// row for each minute of the last two days, and a queue sample per minute and hour. The
/// chart routes must read only their range's rows of it.
fn seed_history(tx: &rusqlite::Transaction<'_>, now: i64) -> anyhow::Result<()> {
    const MINUTE: i64 = 60_000;
    const HOUR: i64 = 60 * MINUTE;
    let mut row = tx.prepare(
        "INSERT INTO delivery_rollups (span, subscription, start, attempts_ok, attempts_failed,
                                       delivered, dead, latency_max_ms, latency)
         VALUES (?1, ?2, ?3, ?4, ?5, ?6, ?7, ?8, ?9)",
    )?;
    let mut sample = tx.prepare(
        "INSERT INTO queue_samples (span, start, depth, oldest_pending_age_ms)
         VALUES (?1, ?2, ?3, ?4)",
    )?;
    // Latencies spread over the histogram's buckets (47 u32 counts).
    let blob: Vec<u8> = (0..47u32)
        .flat_map(|i| (if (10..30).contains(&i) { i } else { 0 }).to_le_bytes())
        .collect();
    let names: Vec<String> = std::iter::once(String::new())
        .chain((0..SUBSCRIPTIONS).map(|s| format!("sub-{s:02}")))
        .collect();
    for (span, count) in [(HOUR, 365 * 24), (MINUTE, 2 * 24 * 60)] {
        let newest = now.div_euclid(span) * span;
        for i in 0..count {
            let start = newest - i as i64 * span;
            for name in &names {
                row.execute(params![span, name, start, 40, 3, 38, 1, 900, blob])?;
            }
            sample.execute(params![span, start, (i % 50) as i64, 60_000 + i as i64])?;
        }
    }
    Ok(())
}

struct Row {
    label: String,
    median_ms: f64,
    p95_ms: f64,
    worst_ms: f64,
    bytes: usize,
}

fn measure(port: u16, rounds: usize, delivery: i64) -> anyhow::Result<Vec<Row>> {
    let base = format!("http://127.0.0.1:{port}");
    let agent: ureq::Agent = ureq::Agent::config_builder()
        .http_status_as_error(false)
        .timeout_global(Some(Duration::from_secs(30)))
        .build()
        .into();
    // A cursor deep into the log: 100 pages in.
    let mut cursor = String::new();
    for _ in 0..100 {
        let page: serde_json::Value =
            get(&agent, &format!("{base}/api/v1/deliveries?cursor={cursor}"))?.1;
        cursor = page["next_cursor"]
            .as_str()
            .context("no next_cursor")?
            .to_string();
    }
    let from = posthorn::store::now_ms() - 2 * DAY_MS;
    let routes = [
        ("overview", "/api/v1/overview".to_string()),
        (
            "subscriptions (20, with health)",
            "/api/v1/subscriptions".to_string(),
        ),
        (
            "one subscription",
            "/api/v1/subscriptions/sub-07".to_string(),
        ),
        ("deliveries, newest", "/api/v1/deliveries".to_string()),
        (
            "deliveries, page 101",
            format!("/api/v1/deliveries?cursor={cursor}"),
        ),
        (
            "deliveries by subscription",
            "/api/v1/deliveries?subscription=sub-03".to_string(),
        ),
        (
            "deliveries dead",
            "/api/v1/deliveries?state=dead".to_string(),
        ),
        (
            "deliveries by subscription + state",
            "/api/v1/deliveries?subscription=sub-05&state=dead".to_string(),
        ),
        (
            "deliveries by conversation",
            "/api/v1/deliveries?conversation=c-042".to_string(),
        ),
        (
            "deliveries by type glob",
            "/api/v1/deliveries?event_type=conversation.*".to_string(),
        ),
        (
            "deliveries by a glob nothing matches (walks the whole log)",
            "/api/v1/deliveries?event_type=nothing.*".to_string(),
        ),
        (
            "deliveries by exact type",
            "/api/v1/deliveries?event_type=report.generated".to_string(),
        ),
        (
            "deliveries since 2 days, one type",
            format!("/api/v1/deliveries?from={from}&event_type=report.generated"),
        ),
        ("one delivery", format!("/api/v1/deliveries/{delivery}")),
        (
            "charts 1h (a year of history)",
            "/api/v1/charts?range=1h".to_string(),
        ),
        ("charts 24h", "/api/v1/charts?range=24h".to_string()),
        ("charts 7d", "/api/v1/charts?range=7d".to_string()),
        ("charts 30d", "/api/v1/charts?range=30d".to_string()),
        (
            "charts 30d, one subscription",
            "/api/v1/charts?range=30d&subscription=sub-04".to_string(),
        ),
        ("trends (20 subscriptions)", "/api/v1/trends".to_string()),
        ("rejections", "/api/v1/rejections".to_string()),
        ("audit", "/api/v1/audit".to_string()),
        ("page: /admin/", "/admin/".to_string()),
        ("page: app.js", "/admin/app.js".to_string()),
        ("/metrics", "/metrics".to_string()),
        ("/healthz", "/healthz".to_string()),
    ];
    let mut rows = Vec::new();
    for (label, path) in routes {
        let url = format!("{base}{path}");
        let mut times = Vec::with_capacity(rounds);
        let mut bytes = 0;
        for _ in 0..rounds {
            let started = Instant::now();
            let (len, _) = get(&agent, &url).with_context(|| format!("GET {path}"))?;
            times.push(started.elapsed().as_secs_f64() * 1000.0);
            bytes = len;
        }
        times.sort_by(f64::total_cmp);
        rows.push(Row {
            label: label.to_string(),
            median_ms: times[times.len() / 2],
            p95_ms: times[(times.len() * 95).div_ceil(100) - 1],
            worst_ms: times[times.len() - 1],
            bytes,
        });
    }
    Ok(rows)
}

/// GETs `url` with the API token; the body's length and, for JSON, its value.
fn get(agent: &ureq::Agent, url: &str) -> anyhow::Result<(usize, serde_json::Value)> {
    let mut response = agent
        .get(url)
        .header("Authorization", &format!("Bearer {TOKEN}"))
        .call()?;
    let status = response.status().as_u16();
    let body = response.body_mut().read_to_string()?;
    if status != 200 {
        bail!("{url} answered {status}: {body}");
    }
    let json = serde_json::from_str(&body).unwrap_or(serde_json::Value::Null);
    Ok((body.len(), json))
}
