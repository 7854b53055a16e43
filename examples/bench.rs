//! End-to-end benchmark: runs the release `posthorn` binary against an in-process HTTP
//! receiver on 127.0.0.1 and prints throughput, spool-to-receiver latency, RSS, and
//! pick-up latency with a backlog of 1,000,000 pending deliveries.
//!
//! ```sh
//! cargo build --release && cargo run --release --example bench [-- --quick]
//! ```
//!
//! It builds nothing: it runs `target/release/posthorn` (next to this example's own
//! executable), or the binary named by `--bin PATH` or `$POSTHORN_BIN`. Everything lives
//! in a temporary directory on the same filesystem as `$TMPDIR`, with posthorn's default
//! durability (`synchronous = FULL` for every commit that acknowledges input).
//!
//! Each event carries its write time in its id (`<phase>-<seq>-<unix µs>`); the receiver
//! (`bench/receiver.rs`) reads it back from the `webhook-id` header, so latency runs from
//! the moment the line was appended to the spool file to the moment the receiver had the
//! whole request. Phases: (a) idle, (b) a burst for throughput, (c) latency at a steady
//! 500 events/s and at phase d's rate, (d) the same after seeding the backlog, (e) a soak:
//! a fresh store with retention of seconds, fed a steady stream, its size printed over
//! time to show it levels off. Phases f-j (`bench/engine.rs`) are the shapes of real
//! installs: 1, 20 and 200 subscriptions each on its own conversation, fan-out to ten,
//! a dead and a hanging receiver among healthy ones, a rate limit, and ordered delivery
//! under retries and a SIGKILL. With `BENCH_ENGINE_ONLY=1` only phases f-j run. With
//! `BENCH_DUMP=DIR`, each paced phase's latencies are written there as CSV.

use std::fs::{self, File, OpenOptions};
use std::io::Write as _;
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::sync::atomic::{AtomicU32, Ordering};
use std::time::{Duration, Instant};

use anyhow::{bail, Context as _};

// The receiver lives beside this file; the path keeps Cargo from taking it for an example.
// bench.rs waits for its log line, not the port: it has no HTTP to wait for.
#[allow(dead_code)]
#[path = "bench/common.rs"]
mod common;
#[path = "bench/engine.rs"]
mod engine;
#[path = "bench/receiver.rs"]
mod receiver;
use receiver::{unix_us, PhaseStats, Receiver};

const SECRET: &str = "whsec_MfKQ9r8GKYqrTwjUPD8ILPZIo2LaLaSw";
const SUBSCRIPTION: &str = "bench";
const BACKLOG: usize = 1_000_000;

// Targets from the performance section of the issue.
const TARGET_EVENTS_PER_SEC: f64 = 8_000.0;
const TARGET_P50_MS: f64 = 10.0;
const TARGET_P99_MS: f64 = 50.0;
const TARGET_IDLE_RSS_MB: f64 = 20.0;
const TARGET_LOAD_RSS_MB: f64 = 60.0;

/// The posthorn child, for the watchdog: killed if the run overstays its bound.
static CHILD_PID: AtomicU32 = AtomicU32::new(0);

struct Plan {
    quick: bool,
    bin: PathBuf,
    throughput_events: usize,
    latency_secs: u64,
    backlog_rate: u64,
    backlog_secs: u64,
    soak: Soak,
    budget: Duration,
}

/// Phase e: a stream of `rate` events/s for `secs`, with `[retention]` of seconds.
struct Soak {
    rate: u64,
    secs: u64,
    sample_every: u64,
    delivered: u64,
    payloads: u64,
}

fn main() {
    let plan = match plan() {
        Ok(plan) => plan,
        Err(err) => {
            eprintln!("bench: {err:#}");
            std::process::exit(2);
        }
    };
    let budget = plan.budget;
    std::thread::spawn(move || {
        std::thread::sleep(budget);
        eprintln!("bench: the run took longer than {budget:?}; stopping");
        kill_child(CHILD_PID.load(Ordering::SeqCst), "KILL");
        std::process::exit(3);
    });
    match run(&plan) {
        Ok(true) => {}
        Ok(false) => std::process::exit(1),
        Err(err) => {
            eprintln!("bench: {err:#}");
            std::process::exit(2);
        }
    }
}

fn plan() -> anyhow::Result<Plan> {
    let common::Args { quick, bin } = common::args("bench")?;
    Ok(Plan {
        quick,
        bin,
        throughput_events: if quick { 10_000 } else { 50_000 },
        latency_secs: if quick { 5 } else { 10 },
        backlog_rate: 100,
        backlog_secs: if quick { 3 } else { 10 },
        soak: Soak {
            rate: 1_000,
            secs: if quick { 30 } else { 60 },
            sample_every: if quick { 3 } else { 5 },
            delivered: if quick { 5 } else { 10 },
            payloads: if quick { 2 } else { 5 },
        },
        budget: Duration::from_secs(if quick { 330 } else { 660 }),
    })
}

struct Figures {
    fsync_ms: f64,
    idle_rss_mb: f64,
    idle_cpu_ms: f64,
    throughput: Option<f64>,
    throughput_received: usize,
    load_rss_mb: f64,
    idle_after_load_rss_mb: f64,
    cpu_us_per_event: f64,
    cpu_us_at_500: f64,
    engine: Vec<engine::Row>,
    steady: Latency,
    quiet: Latency,
    restart_secs: f64,
    seed_secs: f64,
    backlog: Latency,
    soak: SoakFigures,
}

fn run(plan: &Plan) -> anyhow::Result<bool> {
    let started = Instant::now();
    // Phases f-j alone, e.g. to compare with a binary that cannot open a store this
    // benchmark's seeder migrated.
    if std::env::var_os("BENCH_ENGINE_ONLY").is_some() {
        println!("posthorn bench, phases f-j only: {}", plan.bin.display());
        let rows = engine::run(&engine::EnginePlan {
            bin: plan.bin.clone(),
            quick: plan.quick,
        });
        println!("\n== summary ({:.0} s) ==", started.elapsed().as_secs_f64());
        for r in &rows {
            println!(
                "  {:<48} {:>16}   {:<20} {}",
                r.name,
                r.got,
                r.target,
                if r.ok { "PASS" } else { "FAIL" }
            );
        }
        return Ok(rows.iter().all(|r| r.ok));
    }
    let dir = tempfile::Builder::new()
        .prefix("posthorn-bench-")
        .tempdir()?;
    let spool_dir = dir.path().join("spool");
    let db = dir.path().join("posthorn.db");
    fs::create_dir_all(&spool_dir)?;

    let receiver = Receiver::start()?;
    let config = dir.path().join("config.toml");
    fs::write(
        &config,
        format!(
            "[storage]\npath = {db:?}\n[spool]\ndir = {spool:?}\n[http]\nlisten = \"127.0.0.1:{http}\"\n\
             [delivery]\nallow_networks = [\"127.0.0.1\"]\n\n\
             [[subscription]]\nname = \"{SUBSCRIPTION}\"\nurl = \"http://127.0.0.1:{port}/hook\"\n\
             conversations = [\"*\"]\nevents = [\"*\"]\nsecret = \"{SECRET}\"\n",
            db = db.display().to_string(),
            spool = spool_dir.display().to_string(),
            port = receiver.port,
            http = free_port()?,
        ),
    )?;

    println!(
        "posthorn bench ({}): {} on {} cores, data in {}",
        if plan.quick { "quick" } else { "full" },
        plan.bin.display(),
        std::thread::available_parallelism().map_or(0, |n| n.get()),
        dir.path().display()
    );
    let fsync_ms = fsync_cost(dir.path())?;
    println!("  fsync of a small append on this filesystem: p50 {fsync_ms:.2} ms");

    let mut spool = OpenOptions::new()
        .create(true)
        .append(true)
        .open(spool_dir.join("bench.ndjson"))?;
    let mut posthorn = Posthorn::start(&plan.bin, &config, dir.path())?;

    // a. idle RSS, after one event has gone through and the process has settled.
    println!("\n[a] idle");
    append(&mut spool, &[event_line("warm", 0)])?;
    receiver.wait_for("warm", 1, Duration::from_secs(15))?;
    std::thread::sleep(Duration::from_secs(1));
    let cpu_idle_from = posthorn.cpu_secs()?;
    std::thread::sleep(Duration::from_secs(3));
    let idle_cpu_ms = (posthorn.cpu_secs()? - cpu_idle_from) * 1e3 / 3.0;
    let idle_rss_mb = posthorn.rss_mb("VmRSS")?;
    println!("  RSS idle: {idle_rss_mb:.1} MB; CPU idle: {idle_cpu_ms:.1} ms per second");

    // b. throughput: N events in large appends, as fast as the file takes them.
    let n = plan.throughput_events;
    println!("\n[b] throughput: {n} events to one subscription");
    let cpu_before = posthorn.cpu_secs()?;
    let first_write = Instant::now();
    for start in (0..n).step_by(1_000) {
        let lines: Vec<String> = (start..n.min(start + 1_000))
            .map(|seq| event_line("tp", seq))
            .collect();
        append(&mut spool, &lines)?;
    }
    let written = first_write.elapsed();
    let limit = Duration::from_secs(30 + n as u64 / 1_000);
    let done = receiver.wait_for("tp", n, limit);
    let tp = receiver.phase("tp");
    let throughput = match (&done, tp.last_at) {
        (Ok(()), Some(last)) => {
            Some(n as f64 / last.duration_since(first_write).as_secs_f64().max(1e-6))
        }
        _ => None,
    };
    let cpu_us_per_event = (posthorn.cpu_secs()? - cpu_before) * 1e6 / n as f64;
    let load_rss_mb = posthorn.rss_mb("VmHWM")?;
    match throughput {
        Some(rate) => println!(
            "  {n} events written in {:.0} ms, all received after {:.2} s: {rate:.0} events/s",
            written.as_secs_f64() * 1e3,
            n as f64 / rate
        ),
        None => println!(
            "  only {} of {n} events received within {limit:?}",
            tp.latencies_us.len()
        ),
    }
    println!(
        "  posthorn CPU: {cpu_us_per_event:.0} µs per event; duplicates: {}; peak RSS: {load_rss_mb:.1} MB; \
         receiver connections so far: {}",
        tp.duplicates,
        receiver.connections()
    );
    let tp_latency = Latency::of(&tp.latencies_us, n);
    println!(
        "  (write-to-receipt under this burst: {})",
        tp_latency.line()
    );
    std::thread::sleep(Duration::from_secs(2));
    let idle_after_load_rss_mb = posthorn.rss_mb("VmRSS")?;
    println!("  RSS idle again after the burst: {idle_after_load_rss_mb:.1} MB");

    // c. latency at a steady 500 events/s, one append per event.
    let count = 500 * plan.latency_secs as usize;
    println!(
        "\n[c] latency: 500 events/s for {} s, one append per event",
        plan.latency_secs
    );
    let cpu_from = posthorn.cpu_secs()?;
    let steady = paced(&mut spool, &receiver, "lat", 500, count)?;
    let cpu_us_at_500 = (posthorn.cpu_secs()? - cpu_from) * 1e6 / count as f64;
    println!("  {}", steady.line());
    println!(
        "  posthorn CPU: {cpu_us_at_500:.0} µs per delivery at 500 events/s          ({cpu_us_per_event:.0} µs at saturation in b)"
    );
    // The same low rate as phase d, without the backlog, so d compares like with like.
    let low_count = (plan.backlog_rate * plan.backlog_secs) as usize;
    println!(
        "  and at {} events/s for {} s, the rate of phase d:",
        plan.backlog_rate, plan.backlog_secs
    );
    let quiet = paced(&mut spool, &receiver, "low", plan.backlog_rate, low_count)?;
    println!("  {}", quiet.line());

    // d. backlog: stop, seed 1,000,000 deliveries due in 30 days, restart, measure again.
    println!(
        "\n[d] backlog: {BACKLOG} pending deliveries due in 30 days, then {} events/s for {} s",
        plan.backlog_rate, plan.backlog_secs
    );
    posthorn.stop()?;
    let seeding = Instant::now();
    let due = posthorn::store::now_ms() + 30 * 24 * 3_600_000;
    posthorn::store::seed_backlog(&db, SUBSCRIPTION, BACKLOG, due)
        .context("while seeding the backlog")?;
    // The seeder commits without syncing; put the backlog on disk first, as a backlog
    // that built up over time would be, so its write-back does not land in phase d.
    File::open(&db)?.sync_all()?;
    let seed_secs = seeding.elapsed().as_secs_f64();
    println!(
        "  seeded in {seed_secs:.1} s; database now {:.0} MB",
        fs::metadata(&db)?.len() as f64 / 1e6
    );
    let restarting = Instant::now();
    posthorn = Posthorn::start(&plan.bin, &config, dir.path())?;
    append(&mut spool, &[event_line("warm2", 0)])?;
    receiver.wait_for("warm2", 1, Duration::from_secs(60))?;
    let restart_secs = restarting.elapsed().as_secs_f64();
    println!("  restart to first delivery: {restart_secs:.2} s");
    let backlog = paced(&mut spool, &receiver, "bl", plan.backlog_rate, low_count)?;
    println!("  {}", backlog.line());
    println!(
        "  p50 {:.2}x and p99 {:.2}x those at the same rate without the backlog; p50 {:.2}x phase c's",
        backlog.p50 / quiet.p50,
        backlog.p99 / quiet.p99,
        backlog.p50 / steady.p50
    );
    posthorn.stop()?;

    let soak = soak(plan, dir.path(), &receiver)?;
    let engine = engine::run(&engine::EnginePlan {
        bin: plan.bin.clone(),
        quick: plan.quick,
    });

    let figures = Figures {
        fsync_ms,
        idle_rss_mb,
        idle_cpu_ms,
        throughput,
        throughput_received: tp.latencies_us.len(),
        load_rss_mb,
        idle_after_load_rss_mb,
        cpu_us_per_event,
        cpu_us_at_500,
        engine,
        steady,
        quiet,
        restart_secs,
        seed_secs,
        backlog,
        soak,
    };
    let passed = summary(plan, &figures, n, started.elapsed());
    Ok(passed)
}

fn summary(plan: &Plan, f: &Figures, n: usize, took: Duration) -> bool {
    let mut all = true;
    let mut row = |name: &str, got: String, target: String, ok: bool| {
        all &= ok;
        println!(
            "  {name:<48} {got:>16}   {target:<20} {}",
            if ok { "PASS" } else { "FAIL" }
        );
    };
    println!(
        "\n== summary ({}, {:.0} s; fsync p50 {:.2} ms) ==",
        if plan.quick { "quick" } else { "full" },
        took.as_secs_f64(),
        f.fsync_ms
    );
    row(
        "idle RSS",
        format!("{:.1} MB", f.idle_rss_mb),
        format!("< {TARGET_IDLE_RSS_MB} MB"),
        f.idle_rss_mb < TARGET_IDLE_RSS_MB,
    );
    row(
        &format!("throughput, {n} events"),
        match f.throughput {
            Some(rate) => format!("{rate:.0} ev/s"),
            None => format!("{} received", f.throughput_received),
        },
        format!(">= {TARGET_EVENTS_PER_SEC} ev/s"),
        f.throughput.is_some_and(|r| r >= TARGET_EVENTS_PER_SEC),
    );
    row(
        "peak RSS under load",
        format!("{:.1} MB", f.load_rss_mb),
        format!("< {TARGET_LOAD_RSS_MB} MB"),
        f.load_rss_mb < TARGET_LOAD_RSS_MB,
    );
    for (label, latency) in [("at 500 ev/s", &f.steady), ("with 1M backlog", &f.backlog)] {
        row(
            &format!("latency {label}, p50"),
            format!("{:.2} ms", latency.p50),
            format!("< {TARGET_P50_MS} ms"),
            latency.p50 < TARGET_P50_MS,
        );
        row(
            &format!("latency {label}, p99"),
            format!("{:.2} ms", latency.p99),
            format!("< {TARGET_P99_MS} ms"),
            latency.p99 < TARGET_P99_MS,
        );
        row(
            &format!("latency {label}, received"),
            format!("{}/{}", latency.received, latency.sent),
            "all".into(),
            latency.received == latency.sent,
        );
    }
    row(
        "soak: store size, end / middle",
        format!("{:.2}x", f.soak.growth),
        "<= 1.25x (levels off)".into(),
        f.soak.growth <= 1.25,
    );
    row(
        "soak: latency while pruning, p99",
        format!("{:.2} ms", f.soak.latency.p99),
        format!("< {TARGET_P99_MS} ms"),
        f.soak.latency.p99 < TARGET_P99_MS && f.soak.latency.received == f.soak.latency.sent,
    );
    // "Does not slow pick-up": with the backlog, the median stays within noise of the
    // median at the same rate without it.
    let ratio = f.backlog.p50 / f.quiet.p50.max(1e-3);
    row(
        "backlog p50 / same rate without",
        format!("{ratio:.2}x"),
        "<= 1.5x (or +1 ms)".into(),
        f.backlog.p50 <= (1.5 * f.quiet.p50).max(f.quiet.p50 + 1.0),
    );
    println!(
        "  info: posthorn CPU {:.1} ms/s idle, {:.0} µs per event in the burst; \
         RSS {:.1} MB idle after the burst",
        f.idle_cpu_ms, f.cpu_us_per_event, f.idle_after_load_rss_mb
    );
    println!(
        "  info: at 500 ev/s p90 {:.2} ms, max {:.2} ms; at {} ev/s p50 {:.2} / p99 {:.2} ms \
         without the backlog, p90 {:.2} / max {:.2} ms with it",
        f.steady.p90,
        f.steady.max,
        plan.backlog_rate,
        f.quiet.p50,
        f.quiet.p99,
        f.backlog.p90,
        f.backlog.max
    );
    println!(
        "  info: backlog seeded in {:.1} s; restart with it to first delivery {:.2} s",
        f.seed_secs, f.restart_secs
    );
    println!(
        "  info: posthorn CPU per delivery at 500 ev/s {:.0} µs; at saturation {:.0} µs",
        f.cpu_us_at_500, f.cpu_us_per_event
    );
    println!("  -- delivery engine (phases f-j) --");
    for r in &f.engine {
        row(&r.name, r.got.clone(), r.target.clone(), r.ok);
    }
    println!("  overall: {}", if all { "PASS" } else { "FAIL" });
    all
}

struct SoakFigures {
    /// Store size (file plus WAL) at the end over that at the middle of the stream.
    growth: f64,
    latency: Latency,
}

/// Phase e: a fresh store whose `[retention]` keeps seconds, not days, fed a steady
/// stream; prints the size of the database file and its WAL over time.
fn soak(plan: &Plan, dir: &Path, receiver: &Receiver) -> anyhow::Result<SoakFigures> {
    let s = &plan.soak;
    println!(
        "\n[e] soak: {} events/s for {} s into a fresh store keeping delivered rows {} s and \
         payloads {} s",
        s.rate, s.secs, s.delivered, s.payloads
    );
    let home = dir.join("soak");
    let spool_dir = home.join("spool");
    fs::create_dir_all(&spool_dir)?;
    let db = home.join("posthorn.db");
    let config = home.join("config.toml");
    fs::write(
        &config,
        format!(
            "[storage]\npath = {db:?}\n[spool]\ndir = {spool:?}\n[http]\nlisten = \"127.0.0.1:{http}\"\n\
             [retention]\ndelivered = \"{delivered}s\"\nfailed = \"{delivered}s\"\n\
             payloads = \"{payloads}s\"\nrejections = \"{delivered}s\"\ninterval = \"1s\"\n\
             [delivery]\nallow_networks = [\"127.0.0.1\"]\n\n\
             [[subscription]]\nname = \"{SUBSCRIPTION}\"\nurl = \"http://127.0.0.1:{port}/hook\"\n\
             conversations = [\"*\"]\nevents = [\"*\"]\nsecret = \"{SECRET}\"\n",
            db = db.display().to_string(),
            spool = spool_dir.display().to_string(),
            delivered = s.delivered,
            payloads = s.payloads,
            port = receiver.port,
            http = free_port()?,
        ),
    )?;
    let mut spool = OpenOptions::new()
        .create(true)
        .append(true)
        .open(spool_dir.join("soak.ndjson"))?;
    let mut posthorn = Posthorn::start(&plan.bin, &config, &home)?;
    println!(
        "  {:>5}  {:>8}  {:>11}  {:>8}  {:>8}  {:>9}",
        "t (s)", "sent", "rows kept", "db MB", "wal MB", "in use MB"
    );
    let interval = Duration::from_nanos(1_000_000_000 / s.rate);
    let count = (s.rate * s.secs) as usize;
    let start = Instant::now();
    let mut next_sample = Duration::ZERO;
    let mut sizes = Vec::new();
    for seq in 0..=count {
        let due = interval * seq as u32;
        if due >= next_sample {
            let (db_mb, wal_mb, used_mb, rows) = store_size(&db)?;
            println!(
                "  {:>5}  {seq:>8}  {rows:>11}  {db_mb:>8.1}  {wal_mb:>8.1}  {used_mb:>9.1}",
                next_sample.as_secs()
            );
            sizes.push(db_mb + wal_mb);
            next_sample += Duration::from_secs(s.sample_every);
        }
        if seq == count {
            break;
        }
        if let Some(wait) = (start + due).checked_duration_since(Instant::now()) {
            std::thread::sleep(wait);
        }
        append(&mut spool, &[event_line("soak", seq)])?;
    }
    if let Err(err) = receiver.wait_for("soak", count, Duration::from_secs(30)) {
        println!("  {err:#}");
    }
    let latency = Latency::of(&receiver.phase("soak").latencies_us, count);
    println!("  latency while pruning: {}", latency.line());
    posthorn.stop()?;
    let middle = sizes[sizes.len() / 2];
    let end = sizes[sizes.len() - 1];
    let growth = end / middle.max(1e-6);
    println!(
        "  store (file + WAL) {middle:.1} MB at the middle, {end:.1} MB at the end: {growth:.2}x"
    );
    Ok(SoakFigures { growth, latency })
}

/// The database file and WAL sizes, the part of the file in use (not on SQLite's free
/// list), in MB, and how many events the store holds.
fn store_size(db: &Path) -> anyhow::Result<(f64, f64, f64, i64)> {
    let mb = |path: &Path| fs::metadata(path).map_or(0.0, |m| m.len() as f64 / 1e6);
    let mut wal = db.as_os_str().to_owned();
    wal.push("-wal");
    let conn =
        rusqlite::Connection::open_with_flags(db, rusqlite::OpenFlags::SQLITE_OPEN_READ_ONLY)?;
    conn.busy_timeout(Duration::from_secs(5))?;
    let pragma = |name: &str| -> anyhow::Result<i64> {
        Ok(conn.query_row(&format!("PRAGMA {name}"), [], |row| row.get(0))?)
    };
    let used = (pragma("page_count")? - pragma("freelist_count")?) * pragma("page_size")?;
    let rows = conn.query_row("SELECT count(*) FROM events", [], |row| row.get(0))?;
    Ok((mb(db), mb(Path::new(&wal)), used as f64 / 1e6, rows))
}

/// Writes `count` events at `rate` per second, one append each, and measures each one's
/// write-to-receipt latency.
fn paced(
    spool: &mut File,
    receiver: &Receiver,
    phase: &str,
    rate: u64,
    count: usize,
) -> anyhow::Result<Latency> {
    let interval = Duration::from_nanos(1_000_000_000 / rate);
    let start = Instant::now();
    for seq in 0..count {
        let at = start + interval * seq as u32;
        if let Some(wait) = at.checked_duration_since(Instant::now()) {
            std::thread::sleep(wait);
        }
        append(spool, &[event_line(phase, seq)])?;
    }
    if let Err(err) = receiver.wait_for(phase, count, Duration::from_secs(30)) {
        println!("  {err:#}");
    }
    let got = receiver.phase(phase);
    dump(phase, &got);
    Ok(Latency::of(&got.latencies_us, count))
}

/// With `BENCH_DUMP=DIR`, writes `<phase>.csv` (receipt order, seq, latency µs) there,
/// to see when in a phase the slow ones happened.
fn dump(phase: &str, stats: &PhaseStats) {
    let Some(dir) = std::env::var_os("BENCH_DUMP") else {
        return;
    };
    let rows: String = stats
        .order
        .iter()
        .zip(&stats.latencies_us)
        .enumerate()
        .map(|(i, (seq, us))| format!("{i},{seq},{us}\n"))
        .collect();
    let _ = fs::write(Path::new(&dir).join(format!("{phase}.csv")), rows);
}

struct Latency {
    sent: usize,
    received: usize,
    p50: f64,
    p90: f64,
    p99: f64,
    max: f64,
}

impl Latency {
    fn of(latencies_us: &[u64], sent: usize) -> Latency {
        let mut sorted = latencies_us.to_vec();
        sorted.sort_unstable();
        // Nearest rank; an empty phase reads as infinitely slow.
        let pick = |q: f64| {
            if sorted.is_empty() {
                return f64::INFINITY;
            }
            let rank = ((q * sorted.len() as f64).ceil() as usize).clamp(1, sorted.len());
            sorted[rank - 1] as f64 / 1e3
        };
        Latency {
            sent,
            received: sorted.len(),
            p50: pick(0.50),
            p90: pick(0.90),
            p99: pick(0.99),
            max: pick(1.0),
        }
    }

    fn line(&self) -> String {
        format!(
            "received {}/{}; p50 {:.2} ms, p90 {:.2} ms, p99 {:.2} ms, max {:.2} ms",
            self.received, self.sent, self.p50, self.p90, self.p99, self.max
        )
    }
}

/// One spool line, stamped with its write time. About 400 bytes, like a transcript event.
fn event_line(phase: &str, seq: usize) -> String {
    format!(
        concat!(
            r#"{{"id":"{phase}-{seq}-{us}","type":"conversation.transcribed","#,
            r#""conversation_id":"c-{conv}","project_id":"p-9","#,
            r#""occurred_at":"2026-11-22T10:00:00Z","data":{{"language":"nl-NL","#,
            r#""segment":{seq},"text":"De gemeente wil het plein autovrij maken en vraagt "#,
            r#"bewoners om hun mening over bomen, bankjes en fietsparkeren.","#,
            r#""translations":{{"en-US":"The council wants a car-free square and asks "#,
            r#"residents about trees, benches and bike parking."}}}}}}"#
        ),
        phase = phase,
        seq = seq,
        us = unix_us(),
        conv = 200 + seq % 50,
    )
}

/// One `write` for all of `lines`, stamped just before it.
fn append(spool: &mut File, lines: &[String]) -> anyhow::Result<()> {
    let mut buf = String::with_capacity(lines.iter().map(|l| l.len() + 1).sum());
    for line in lines {
        buf.push_str(line);
        buf.push('\n');
    }
    spool.write_all(buf.as_bytes())?;
    Ok(())
}

/// Median cost of appending a line and `fdatasync`ing it: the floor under every durable
/// commit, printed so figures from different disks can be compared.
fn fsync_cost(dir: &Path) -> anyhow::Result<f64> {
    let path = dir.join("fsync-probe");
    let mut file = File::create(&path)?;
    let mut costs: Vec<f64> = (0..50)
        .map(|_| {
            let t = Instant::now();
            file.write_all(b"probe line\n")?;
            file.sync_data()?;
            Ok(t.elapsed().as_secs_f64() * 1e3)
        })
        .collect::<std::io::Result<_>>()?;
    fs::remove_file(&path)?;
    costs.sort_by(f64::total_cmp);
    Ok(costs[costs.len() / 2])
}

// ---- the posthorn process ----

struct Posthorn {
    child: Child,
    log: PathBuf,
}

impl Posthorn {
    fn start(bin: &Path, config: &Path, dir: &Path) -> anyhow::Result<Posthorn> {
        let log = dir.join("posthorn.log");
        let stderr = OpenOptions::new().create(true).append(true).open(&log)?;
        // The log is appended across restarts: only what this start writes counts.
        let log_from = stderr.metadata()?.len() as usize;
        let child = Command::new(bin)
            .args(["serve", "--config"])
            .arg(config)
            .env_remove("POSTHORN_LOG")
            .stdin(Stdio::null())
            .stdout(Stdio::null())
            .stderr(stderr)
            .spawn()
            .with_context(|| format!("while starting {}", bin.display()))?;
        CHILD_PID.store(child.id(), Ordering::SeqCst);
        let mut posthorn = Posthorn { child, log };
        posthorn.wait_running(log_from, Duration::from_secs(60))?;
        Ok(posthorn)
    }

    /// Waits for the log line that says every part is up.
    fn wait_running(&mut self, log_from: usize, limit: Duration) -> anyhow::Result<()> {
        let deadline = Instant::now() + limit;
        while Instant::now() < deadline {
            if let Some(status) = self.child.try_wait()? {
                bail!("posthorn exited at start ({status}):\n{}", self.log_tail());
            }
            let log = fs::read(&self.log).unwrap_or_default();
            let ours = String::from_utf8_lossy(log.get(log_from..).unwrap_or_default());
            if ours.contains("posthorn is running") {
                return Ok(());
            }
            std::thread::sleep(Duration::from_millis(10));
        }
        bail!(
            "posthorn did not start within {limit:?}:\n{}",
            self.log_tail()
        )
    }

    fn log_tail(&self) -> String {
        let log = fs::read_to_string(&self.log).unwrap_or_default();
        let lines: Vec<&str> = log.lines().collect();
        lines[lines.len().saturating_sub(20)..].join("\n")
    }

    fn status_field(&self, field: &str) -> anyhow::Result<u64> {
        let status = fs::read_to_string(format!("/proc/{}/status", self.child.id()))?;
        status
            .lines()
            .find_map(|l| l.strip_prefix(field)?.strip_prefix(':'))
            .and_then(|v| v.split_whitespace().next()?.parse().ok())
            .with_context(|| format!("no {field} in /proc/{}/status", self.child.id()))
    }

    fn pid(&self) -> u32 {
        self.child.id()
    }

    fn rss_mb(&self, field: &str) -> anyhow::Result<f64> {
        Ok(self.status_field(field)? as f64 / 1024.0)
    }

    /// User plus system CPU seconds so far (`/proc/PID/stat`, in USER_HZ = 100 ticks).
    fn cpu_secs(&self) -> anyhow::Result<f64> {
        let stat = fs::read_to_string(format!("/proc/{}/stat", self.child.id()))?;
        let after_name = stat.rsplit_once(')').map_or("", |(_, rest)| rest);
        let fields: Vec<&str> = after_name.split_whitespace().collect();
        let ticks = |i: usize| {
            fields
                .get(i)
                .and_then(|v| v.parse::<u64>().ok())
                .unwrap_or(0)
        };
        // Fields after the name start at "state" (field 3); utime is 14, stime 15.
        Ok((ticks(11) + ticks(12)) as f64 / 100.0)
    }

    /// SIGTERM, then wait (bounded) for a clean exit.
    fn stop(&mut self) -> anyhow::Result<()> {
        kill_child(self.child.id(), "TERM");
        let deadline = Instant::now() + Duration::from_secs(45);
        while Instant::now() < deadline {
            if let Some(status) = self.child.try_wait()? {
                CHILD_PID.store(0, Ordering::SeqCst);
                if !status.success() {
                    bail!("posthorn exited with {status}:\n{}", self.log_tail());
                }
                return Ok(());
            }
            std::thread::sleep(Duration::from_millis(20));
        }
        let _ = self.child.kill();
        bail!("posthorn did not stop within 45 s of SIGTERM")
    }
}

impl Drop for Posthorn {
    fn drop(&mut self) {
        if self.child.try_wait().ok().flatten().is_none() {
            let _ = self.child.kill();
            let _ = self.child.wait();
        }
    }
}

fn kill_child(pid: u32, signal: &str) {
    if pid != 0 {
        let _ = Command::new("kill")
            .arg(format!("-{signal}"))
            .arg(pid.to_string())
            .status();
    }
}

/// A port free a moment ago on 127.0.0.1, for posthorn's HTTP inlet.
fn free_port() -> std::io::Result<u16> {
    Ok(std::net::TcpListener::bind("127.0.0.1:0")?
        .local_addr()?
        .port())
}
