//! The delivery engine's phases of the benchmark, in the shape of real installs: many
//! subscriptions each on its own conversation (spool and inlet to receiver), fan-out to
//! ten subscriptions, sick receivers among healthy ones, a rate limit, and ordered
//! delivery under retries and a SIGKILL. Each phase starts its own posthorn on a fresh
//! store and returns its rows for the summary.

use std::fs::{self, File, OpenOptions};
use std::path::PathBuf;
use std::sync::atomic::{AtomicUsize, Ordering as AtomicOrdering};
use std::time::{Duration, Instant};

use super::receiver::{unix_us, Receiver};
use super::{append, free_port, kill_child, Latency, Posthorn, SECRET};

const TOKEN: &str = "bench-engine-token";
const P50_MS: f64 = 5.0;
const P99_MS: f64 = 25.0;
const FANOUT_DELIVERIES_PER_SEC: f64 = 15_000.0;
const FANOUT_STEADY_P50_MS: f64 = 2.0;
/// The tail of the fan-out burst: from the 99th percentile delivery to the last.
const FANOUT_TAIL_MS: f64 = 1_000.0;

/// One line of the summary.
pub struct Row {
    pub name: String,
    pub got: String,
    pub target: String,
    pub ok: bool,
}

fn row(name: impl Into<String>, got: String, target: impl Into<String>, ok: bool) -> Row {
    let row = Row {
        name: name.into(),
        got,
        target: target.into(),
        ok,
    };
    println!(
        "  {:<44} {:>22}   {:<14} {}",
        row.name,
        row.got,
        row.target,
        if row.ok { "ok" } else { "MISSED" }
    );
    row
}

pub struct EnginePlan {
    pub bin: PathBuf,
    pub quick: bool,
}

type Phase = fn(&EnginePlan) -> anyhow::Result<Vec<Row>>;

pub fn run(plan: &EnginePlan) -> Vec<Row> {
    let mut rows = Vec::new();
    let phases: [(&str, Phase); 5] = [
        ("many subscriptions", many_subscriptions),
        ("fan-out", fan_out),
        ("sick receivers", sick_receivers),
        ("rate limit", rate_limit),
        ("ordering", ordering),
    ];
    // `BENCH_ENGINE_ONLY=fan-out,ordering` runs those phases alone.
    let only = std::env::var("BENCH_ENGINE_ONLY").unwrap_or_default();
    let picked = |name: &str| {
        only.split(',').any(|p| p == name) || !only.contains(|c: char| c.is_alphabetic())
    };
    // A phase that cannot run (say, a binary without rate_limit) fails alone.
    for (name, phase) in phases.into_iter().filter(|(name, _)| picked(name)) {
        match phase(plan) {
            Ok(more) => rows.extend(more),
            Err(err) => {
                println!("  {name}: {err:#}");
                rows.push(row(name, "did not run".into(), "runs", false));
            }
        }
    }
    rows
}

// ---- a posthorn with a config of our making ----

struct Sub {
    name: String,
    url: String,
    conversations: String,
    extra: String,
}

struct Setup {
    dir: tempfile::TempDir,
    spool: File,
    config: PathBuf,
    inlet: String,
}

fn setup(subs: &[Sub], delivery: &str) -> anyhow::Result<Setup> {
    let dir = tempfile::Builder::new()
        .prefix("posthorn-bench-engine-")
        .tempdir()?;
    let spool_dir = dir.path().join("spool");
    fs::create_dir_all(&spool_dir)?;
    let port = free_port()?;
    let mut text = format!(
        "[storage]\npath = {:?}\n[spool]\ndir = {:?}\n[http]\nlisten = \"127.0.0.1:{port}\"\n\
         [inlet]\ntoken = \"{TOKEN}\"\n[delivery]\nallow_networks = [\"127.0.0.1\"]\n{delivery}\n",
        dir.path().join("posthorn.db").display().to_string(),
        spool_dir.display().to_string(),
    );
    for sub in subs {
        text.push_str(&format!(
            "\n[[subscription]]\nname = \"{}\"\nurl = \"{}\"\nconversations = {}\n\
             events = [\"*\"]\nsecret = \"{SECRET}\"\n{}\n",
            sub.name, sub.url, sub.conversations, sub.extra
        ));
    }
    // The config in a directory of its own, as in /etc: posthorn watches the config's
    // directory, and every write to the store beside it would wake that watcher.
    let config = dir.path().join("etc").join("config.toml");
    fs::create_dir_all(dir.path().join("etc"))?;
    fs::write(&config, text)?;
    let spool = OpenOptions::new()
        .create(true)
        .append(true)
        .open(spool_dir.join("bench.ndjson"))?;
    Ok(Setup {
        dir,
        spool,
        config,
        inlet: format!("http://127.0.0.1:{port}/v1/events"),
    })
}

impl Setup {
    fn start(&self, plan: &EnginePlan) -> anyhow::Result<Posthorn> {
        Posthorn::start(&plan.bin, &self.config, self.dir.path())
    }
}

/// An event of `phase` number `seq` in conversation `conv`, stamped with the time now.
fn line(phase: &str, seq: usize, conv: usize) -> String {
    format!(
        concat!(
            r#"{{"id":"{phase}-{seq}-{us}","type":"conversation.transcribed","#,
            r#""conversation_id":"c-{conv}","project_id":"p-9","#,
            r#""occurred_at":"2026-11-22T10:00:00Z","data":{{"language":"nl-NL","#,
            r#""segment":{seq},"text":"De gemeente wil het plein autovrij maken."}}}}"#
        ),
        phase = phase,
        seq = seq,
        us = unix_us(),
        conv = conv,
    )
}

fn agent() -> ureq::Agent {
    ureq::Agent::config_builder()
        .http_status_as_error(false)
        .timeout_global(Some(Duration::from_secs(30)))
        .build()
        .into()
}

fn post(agent: &ureq::Agent, url: &str, body: &str) -> anyhow::Result<()> {
    let response = agent
        .post(url)
        .header("Authorization", format!("Bearer {TOKEN}"))
        .header("Content-Type", "application/json")
        .send(body)?;
    anyhow::ensure!(
        response.status() == 202,
        "the inlet answered {}",
        response.status()
    );
    Ok(())
}

/// Sends `count` events at `rate` per second, alternately appended to the spool (phase
/// `{phase}s`) and posted to the inlet (phase `{phase}i`), event `seq` to conversation
/// `conv(seq)`. Inlet posts run on their own threads so a slow answer does not hold the
/// spool's pace.
fn paced_both(
    setup: &mut Setup,
    phase: &str,
    rate: u64,
    count: usize,
    conv: impl Fn(usize) -> usize + Sync,
) -> anyhow::Result<()> {
    let interval = Duration::from_nanos(1_000_000_000 / rate);
    let start = Instant::now() + Duration::from_millis(20);
    let wait_until = |seq: usize| {
        let at = start + interval * seq as u32;
        if let Some(wait) = at.checked_duration_since(Instant::now()) {
            std::thread::sleep(wait);
        }
    };
    const POSTERS: usize = 4;
    let failures = AtomicUsize::new(0);
    std::thread::scope(|scope| {
        for poster in 0..POSTERS {
            let (inlet, conv, failures) = (&setup.inlet, &conv, &failures);
            scope.spawn(move || {
                let agent = agent();
                for seq in (0..count).filter(|s| s % 2 == 1 && (s / 2) % POSTERS == poster) {
                    wait_until(seq);
                    let body = line(&format!("{phase}i"), seq, conv(seq));
                    if post(&agent, inlet, &body).is_err() {
                        failures.fetch_add(1, AtomicOrdering::SeqCst);
                    }
                }
            });
        }
        for seq in (0..count).step_by(2) {
            wait_until(seq);
            append(
                &mut setup.spool,
                &[line(&format!("{phase}s"), seq, conv(seq))],
            )?;
        }
        Ok::<_, anyhow::Error>(())
    })?;
    let failed = failures.load(AtomicOrdering::SeqCst);
    anyhow::ensure!(failed == 0, "{failed} inlet posts failed");
    Ok(())
}

fn latency_rows(name: &str, receiver: &Receiver, phase: &str, sent: usize) -> Vec<Row> {
    let _ = receiver.wait_for(phase, sent, Duration::from_secs(20));
    let stats = receiver.phase(phase);
    super::dump(phase, &stats);
    let latency = Latency::of(&stats.latencies_us, sent);
    vec![
        row(
            format!("{name}, p50"),
            format!("{:.2} ms", latency.p50),
            format!("< {P50_MS} ms"),
            latency.p50 < P50_MS && latency.received == sent,
        ),
        row(
            format!("{name}, p99 ({}/{} recv)", latency.received, sent),
            format!("{:.2} ms", latency.p99),
            format!("< {P99_MS} ms"),
            latency.p99 < P99_MS && latency.received == sent,
        ),
    ]
}

// ---- f. many subscriptions, each on its own conversation ----

fn many_subscriptions(plan: &EnginePlan) -> anyhow::Result<Vec<Row>> {
    println!("\n[f] 1, 20 and 200 subscriptions, each on its own conversation");
    let receiver = Receiver::start()?;
    let mut rows = Vec::new();
    for subs in [1usize, 20, 200] {
        let list: Vec<Sub> = (0..subs)
            .map(|n| Sub {
                name: format!("s{n}"),
                url: format!("http://127.0.0.1:{}/hook", receiver.port),
                conversations: format!("[\"c-{n}\"]"),
                extra: String::new(),
            })
            .collect();
        let mut setup = setup(&list, "")?;
        let mut posthorn = setup.start(plan)?;
        for (rate, secs) in [(5u64, 16u64), (100, 4), (1_000, 3)] {
            let secs = if plan.quick { secs.div_ceil(2) } else { secs };
            let count = (rate * secs) as usize;
            let phase = format!("m{subs}r{rate}");
            let conv = |seq: usize| (seq * 7919) % subs;
            paced_both(&mut setup, &phase, rate, count, conv)?;
            let (spool, inlet) = (count.div_ceil(2), count / 2);
            rows.extend(latency_rows(
                &format!("{subs} subs at {rate} ev/s, spool"),
                &receiver,
                &format!("{phase}s"),
                spool,
            ));
            rows.extend(latency_rows(
                &format!("{subs} subs at {rate} ev/s, inlet"),
                &receiver,
                &format!("{phase}i"),
                inlet,
            ));
        }
        posthorn.stop()?;
    }
    Ok(rows)
}

// ---- g. fan-out to ten subscriptions ----

fn fan_out(plan: &EnginePlan) -> anyhow::Result<Vec<Row>> {
    const SUBS: usize = 10;
    let events = if plan.quick { 2_000 } else { 5_000 };
    println!("\n[g] fan-out: {SUBS} subscriptions take every event; {events} events posted in batches of 100");
    let receivers: Vec<Receiver> = (0..SUBS)
        .map(|_| Receiver::start())
        .collect::<anyhow::Result<_>>()?;
    let list: Vec<Sub> = receivers
        .iter()
        .enumerate()
        .map(|(n, r)| Sub {
            name: format!("f{n}"),
            url: format!("http://127.0.0.1:{}/hook", r.port),
            conversations: "[\"*\"]".into(),
            extra: String::new(),
        })
        .collect();
    let setup = setup(&list, "")?;
    let mut posthorn = setup.start(plan)?;

    let agent = agent();
    let cpu_from = posthorn.cpu_secs()?;
    let first = unix_us();
    for batch in 0..events / 100 {
        let items: Vec<String> = (batch * 100..batch * 100 + 100)
            .map(|seq| line("fo", seq, seq % 50))
            .collect();
        post(&agent, &setup.inlet, &format!("[{}]", items.join(",")))?;
    }
    let mut arrivals = Vec::with_capacity(events * SUBS);
    for receiver in &receivers {
        let _ = receiver.wait_for("fo", events, Duration::from_secs(60));
        arrivals.extend(receiver.phase("fo").arrivals_us);
    }
    let cpu_us = (posthorn.cpu_secs()? - cpu_from) * 1e6 / (events * SUBS) as f64;
    arrivals.sort_unstable();
    let received = arrivals.len();
    let last = arrivals.last().copied().unwrap_or(first);
    let p99 = arrivals
        .get((received * 99 / 100).saturating_sub(1))
        .copied()
        .unwrap_or(first);
    let rate = received as f64 / ((last - first) as f64 / 1e6).max(1e-6);
    let tail_ms = (last - p99) as f64 / 1e3;
    println!(
        "  {received}/{} deliveries in {:.2} s: {rate:.0}/s; last 1 % took {tail_ms:.0} ms; \
         posthorn CPU {cpu_us:.0} µs per delivery",
        events * SUBS,
        (last - first) as f64 / 1e6
    );
    let mut rows = vec![
        row(
            format!("fan-out {SUBS}x{events}, deliveries/s"),
            format!("{rate:.0}/s"),
            format!(">= {FANOUT_DELIVERIES_PER_SEC:.0}/s"),
            rate >= FANOUT_DELIVERIES_PER_SEC && received == events * SUBS,
        ),
        row(
            "fan-out burst, last 1 % of deliveries (stragglers)",
            format!("{tail_ms:.0} ms"),
            format!("< {FANOUT_TAIL_MS:.0} ms"),
            tail_ms < FANOUT_TAIL_MS && received == events * SUBS,
        ),
    ];

    // Steady 100 events/s, each to all ten.
    let secs = if plan.quick { 3 } else { 5 };
    let count = 100 * secs;
    let start = Instant::now();
    for seq in 0..count {
        let at = start + Duration::from_millis(10) * seq as u32;
        if let Some(wait) = at.checked_duration_since(Instant::now()) {
            std::thread::sleep(wait);
        }
        post(&agent, &setup.inlet, &line("fs", seq, seq % 50))?;
    }
    let mut latencies = Vec::new();
    for receiver in &receivers {
        let _ = receiver.wait_for("fs", count, Duration::from_secs(20));
        latencies.extend(receiver.phase("fs").latencies_us);
    }
    let steady = Latency::of(&latencies, count * SUBS);
    println!("  steady 100 ev/s to {SUBS}: {}", steady.line());
    rows.push(row(
        format!("fan-out 100 ev/s to {SUBS}, inlet, p50"),
        format!("{:.2} ms", steady.p50),
        format!("< {FANOUT_STEADY_P50_MS} ms"),
        steady.p50 < FANOUT_STEADY_P50_MS && steady.received == steady.sent,
    ));
    posthorn.stop()?;
    Ok(rows)
}

// ---- h. a dead and a hanging receiver among twenty healthy ones ----

fn sick_receivers(plan: &EnginePlan) -> anyhow::Result<Vec<Row>> {
    println!("\n[h] one dead (connection refused) and one hanging receiver among 20 healthy ones");
    let receiver = Receiver::start()?;
    let dead_port = free_port()?; // bound a moment ago, now closed: connection refused
    let hanging = std::net::TcpListener::bind("127.0.0.1:0")?;
    let hanging_port = hanging.local_addr()?.port();
    // Accept and hold every connection, never answering.
    std::thread::spawn(move || {
        let mut held = Vec::new();
        for stream in hanging.incoming().flatten() {
            held.push(stream);
        }
    });
    let mut list: Vec<Sub> = (0..20)
        .map(|n| Sub {
            name: format!("h{n}"),
            url: format!("http://127.0.0.1:{}/hook", receiver.port),
            conversations: format!("[\"c-{n}\"]"),
            extra: String::new(),
        })
        .collect();
    for (name, port) in [("dead", dead_port), ("hanging", hanging_port)] {
        list.push(Sub {
            name: name.into(),
            url: format!("http://127.0.0.1:{port}/hook"),
            conversations: "[\"*\"]".into(),
            extra: String::new(),
        });
    }
    let mut setup = setup(&list, "")?;
    let posthorn = setup.start(plan)?;
    let secs = if plan.quick { 3 } else { 6 };
    let count = 100 * secs;
    paced_both(&mut setup, "sick", 100, count, |seq| (seq * 7919) % 20)?;
    let mut rows = latency_rows(
        "20 healthy beside dead+hanging, 100 ev/s, spool",
        &receiver,
        "sicks",
        count.div_ceil(2),
    );
    rows.extend(latency_rows(
        "20 healthy beside dead+hanging, 100 ev/s, inlet",
        &receiver,
        "sicki",
        count / 2,
    ));
    // The hanging receiver holds its attempts until the timeout: do not wait for them.
    kill_child(posthorn.pid(), "KILL");
    drop(posthorn);
    Ok(rows)
}

// ---- i. rate limit ----

fn rate_limit(plan: &EnginePlan) -> anyhow::Result<Vec<Row>> {
    const PER_SECOND: usize = 20;
    let events = if plan.quick { 60 } else { 120 };
    println!(
        "\n[i] rate_limit = \"{PER_SECOND}/s\" (a one-second window, to keep the run short): \
         {events} events at once"
    );
    let receiver = Receiver::start()?;
    let list = [Sub {
        name: "limited".into(),
        url: format!("http://127.0.0.1:{}/hook", receiver.port),
        conversations: "[\"*\"]".into(),
        extra: format!("rate_limit = \"{PER_SECOND}/s\""),
    }];
    let mut setup = setup(&list, "")?;
    let mut posthorn = setup.start(plan)?;
    let lines: Vec<String> = (0..events).map(|seq| line("rl", seq, seq % 10)).collect();
    let first = Instant::now();
    append(&mut setup.spool, &lines)?;
    let limit = Duration::from_secs((events / PER_SECOND) as u64 + 15);
    let done = receiver.wait_for("rl", events, limit);
    let took = first.elapsed().as_secs_f64();
    let arrivals = receiver.phase("rl").arrivals_us;
    let busiest = arrivals
        .iter()
        .map(|&from| {
            arrivals
                .iter()
                .filter(|&&at| at >= from && at < from + 1_000_000)
                .count()
        })
        .max()
        .unwrap_or(0);
    println!(
        "  {} delivered in {took:.1} s ({:.1}/s); busiest one-second window: {busiest}",
        arrivals.len(),
        arrivals.len() as f64 / took
    );
    posthorn.stop()?;
    Ok(vec![
        row(
            format!("rate_limit {PER_SECOND}/s: busiest 1 s window"),
            format!("{busiest}"),
            format!("<= {PER_SECOND}"),
            busiest <= PER_SECOND && done.is_ok(),
        ),
        row(
            format!("rate_limit {PER_SECOND}/s: {events} delivered in"),
            format!("{took:.1} s"),
            format!("~{} s", events / PER_SECOND),
            done.is_ok(),
        ),
    ])
}

// ---- j. ordering under retries and a SIGKILL ----

fn ordering(plan: &EnginePlan) -> anyhow::Result<Vec<Row>> {
    const CONVERSATIONS: usize = 20;
    let per = if plan.quick { 10 } else { 25 };
    let events = CONVERSATIONS * per;
    println!(
        "\n[j] ordering = \"conversation\": {events} events in {CONVERSATIONS} conversations, \
         the receiver fails 1 request in 5, posthorn is SIGKILLed once midway"
    );
    let receiver = Receiver::start_failing(5)?;
    let list = [Sub {
        name: "ordered".into(),
        url: format!("http://127.0.0.1:{}/hook", receiver.port),
        conversations: "[\"*\"]".into(),
        extra: "ordering = \"conversation\"".into(),
    }];
    let delivery = "schedule = [\"20ms\", \"50ms\", \"100ms\", \"200ms\", \"300ms\", \"500ms\", \
                    \"500ms\", \"500ms\", \"500ms\", \"500ms\", \"500ms\", \"500ms\"]";
    let mut setup = setup(&list, delivery)?;
    let mut posthorn = setup.start(plan)?;
    let lines: Vec<String> = (0..events)
        .map(|seq| line("or", seq, seq % CONVERSATIONS))
        .collect();
    append(&mut setup.spool, &lines)?;
    let _ = receiver.wait_for("or", events / 3, Duration::from_secs(30));
    kill_child(posthorn.pid(), "KILL");
    drop(posthorn);
    let at_kill = receiver.phase("or").order.len();
    posthorn = setup.start(plan)?;
    let done = receiver.wait_for("or", events, Duration::from_secs(60));
    posthorn.stop()?;
    let every = receiver.phase("or").every;
    let mut in_order = 0;
    for conv in 0..CONVERSATIONS {
        let seen: Vec<u64> = every
            .iter()
            .copied()
            .filter(|seq| *seq as usize % CONVERSATIONS == conv)
            .collect();
        if seen.windows(2).all(|w| w[0] <= w[1]) {
            in_order += 1;
        }
    }
    let stats = receiver.phase("or");
    println!(
        "  {at_kill} delivered before the kill; {}/{events} in the end, {} duplicates (at least once); \
         {in_order}/{CONVERSATIONS} conversations in order",
        stats.order.len(),
        stats.duplicates
    );
    Ok(vec![row(
        "ordering: conversations seen in order",
        format!("{in_order}/{CONVERSATIONS}"),
        format!("{CONVERSATIONS}/{CONVERSATIONS}"),
        in_order == CONVERSATIONS && done.is_ok(),
    )])
}
