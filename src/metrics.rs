//! In-process metrics and the Prometheus text format they are served in (`GET /metrics`).
//! Counters and the attempt-latency histogram are counted by the store writer once the
//! commit that made them true has succeeded, so a counted event is a stored event and a
//! counted attempt is a recorded one. Gauges about the queue and the store are read from
//! the store at scrape time. The text format is written here by hand: it is small, and the
//! counting has to happen inside the writer's commit anyway.

use std::collections::BTreeMap;
use std::fmt::Write as _;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::Mutex;

use crate::health::Liveness;
use crate::store::{NextStep, Reader};

/// Upper bounds of the attempt-latency buckets, in milliseconds (5 ms to 30 s). Kept in
/// whole milliseconds, as attempts are measured, so a bucket never misses by rounding.
const LATENCY_BUCKETS_MS: [u64; 12] = [
    5, 10, 25, 50, 100, 250, 500, 1_000, 2_500, 5_000, 10_000, 30_000,
];

/// Sources counted at 0 from the start, so a first event is a visible increase.
const KNOWN_SOURCES: [&str; 2] = ["spool", "inlet"];

/// What one attempt led to: the delivery was delivered, waits for a retry, or is dead.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord)]
pub enum Outcome {
    Delivered,
    Retry,
    Dead,
}

impl Outcome {
    pub fn of(next: NextStep) -> Outcome {
        match next {
            NextStep::Delivered => Outcome::Delivered,
            NextStep::RetryAt(_) => Outcome::Retry,
            NextStep::Dead => Outcome::Dead,
        }
    }

    pub fn as_str(self) -> &'static str {
        match self {
            Outcome::Delivered => "delivered",
            Outcome::Retry => "retry",
            Outcome::Dead => "dead",
        }
    }
}

/// The `source` label of an input batch's source: one per kind of input, not per file.
/// `spool:/var/spool/posthorn/events.ndjson` is `spool`, an inlet source's
/// `source:echo` is `echo`, and a plain `inlet` or `admin` stays as it is.
pub fn source_label(source: &str) -> &str {
    match source.split_once(':') {
        Some(("source", name)) => name,
        Some((kind, _)) => kind,
        None => source,
    }
}

/// Attempt latencies of one subscription. `buckets[i]` counts the attempts that fell in
/// bucket `i` alone (made cumulative when rendered); slower ones count only in `count`.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
struct Histogram {
    buckets: [u64; LATENCY_BUCKETS_MS.len()],
    count: u64,
    sum_ms: u64,
}

impl Histogram {
    fn observe(&mut self, duration_ms: u64) {
        if let Some(i) = LATENCY_BUCKETS_MS.iter().position(|&le| duration_ms <= le) {
            self.buckets[i] += 1;
        }
        self.count += 1;
        self.sum_ms += duration_ms;
    }

    fn merge(&mut self, other: &Histogram) {
        for (mine, theirs) in self.buckets.iter_mut().zip(other.buckets) {
            *mine += theirs;
        }
        self.count += other.count;
        self.sum_ms += other.sum_ms;
    }
}

/// Counts gathered while a transaction runs, added to [`Metrics`] only once it has
/// committed (a batch that rolls back counts nothing).
#[derive(Debug, Default, Clone, PartialEq, Eq)]
pub struct Tally {
    ingested: BTreeMap<String, u64>,
    duplicates: BTreeMap<String, u64>,
    rejected: BTreeMap<String, u64>,
    attempts: BTreeMap<(String, Outcome), u64>,
    deliveries: BTreeMap<(String, Outcome), u64>,
    latency: BTreeMap<String, Histogram>,
}

impl Tally {
    /// One stored input batch from `source` (as `IngestBatch::source` names it).
    pub fn ingest(&mut self, source: &str, stored: usize, duplicates: usize, rejected: usize) {
        let label = source_label(source);
        for (map, n) in [
            (&mut self.ingested, stored),
            (&mut self.duplicates, duplicates),
            (&mut self.rejected, rejected),
        ] {
            if n > 0 {
                *map.entry(label.to_string()).or_default() += n as u64;
            }
        }
    }

    /// One recorded attempt; `finished` when it made its delivery final (delivered or
    /// dead) rather than finding it already cancelled.
    pub fn attempt(
        &mut self,
        subscription: &str,
        next: NextStep,
        duration_ms: i64,
        finished: bool,
    ) {
        let outcome = Outcome::of(next);
        *self
            .attempts
            .entry((subscription.to_string(), outcome))
            .or_default() += 1;
        if finished && outcome != Outcome::Retry {
            *self
                .deliveries
                .entry((subscription.to_string(), outcome))
                .or_default() += 1;
        }
        self.latency
            .entry(subscription.to_string())
            .or_default()
            .observe(duration_ms.max(0) as u64);
    }

    pub fn is_empty(&self) -> bool {
        self == &Tally::default()
    }

    fn merge(&mut self, other: Tally) {
        fn add<K: Ord>(into: &mut BTreeMap<K, u64>, from: BTreeMap<K, u64>) {
            for (key, n) in from {
                *into.entry(key).or_default() += n;
            }
        }
        add(&mut self.ingested, other.ingested);
        add(&mut self.duplicates, other.duplicates);
        add(&mut self.rejected, other.rejected);
        add(&mut self.attempts, other.attempts);
        add(&mut self.deliveries, other.deliveries);
        for (subscription, histogram) in other.latency {
            self.latency
                .entry(subscription)
                .or_default()
                .merge(&histogram);
        }
    }
}

/// What the store holds right now, read at scrape time.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct StoreGauges {
    /// Pending deliveries, in flight included.
    pub queue_depth: u64,
    /// How long the oldest pending delivery has waited; `None` with none pending.
    pub oldest_pending_age_ms: Option<i64>,
    /// Configured subscriptions paused from the admin page.
    pub paused_subscriptions: usize,
    /// Pages in use plus the WAL, as `[storage] max_size` counts them.
    pub size_bytes: u64,
}

impl StoreGauges {
    /// Reads the gauges from the store as of `now_ms` (two index lookups and a few
    /// pragmas); `paused_subscriptions` is counted by the caller, who knows the config.
    pub fn read(
        reader: &Reader,
        paused_subscriptions: usize,
        now_ms: i64,
    ) -> anyhow::Result<StoreGauges> {
        let queue = reader.queue(now_ms)?;
        Ok(StoreGauges {
            queue_depth: queue.depth,
            oldest_pending_age_ms: queue.oldest_pending_age_ms,
            paused_subscriptions,
            size_bytes: reader.size_bytes()?,
        })
    }
}

/// Every metric posthorn keeps in memory. One per store, reached through
/// `StoreHandle::metrics`.
#[derive(Debug)]
pub struct Metrics {
    counts: Mutex<Tally>,
    /// `[storage] max_size` in force; 0 for none.
    max_size: AtomicU64,
    /// Transactions the store writer committed (each one a durable write, or a relaxed
    /// one for claims: see `store/writer.rs`).
    commits: AtomicU64,
    started_at_ms: i64,
    /// The scheduler's and the workers' signs of life, for `/healthz`.
    pub liveness: Liveness,
    /// Spool files set aside instead of taken.
    pub spool_aside: SpoolAside,
    /// Receiver health: breakers, pauses and deaths (`receivers.rs`).
    pub receivers: crate::receivers::Board,
}

impl Metrics {
    pub fn new(started_at_ms: i64) -> Metrics {
        let mut counts = Tally::default();
        for source in KNOWN_SOURCES {
            for map in [
                &mut counts.ingested,
                &mut counts.duplicates,
                &mut counts.rejected,
            ] {
                map.insert(source.to_string(), 0);
            }
        }
        Metrics {
            counts: Mutex::new(counts),
            max_size: AtomicU64::new(0),
            commits: AtomicU64::new(0),
            started_at_ms,
            liveness: Liveness::new(),
            spool_aside: SpoolAside::default(),
            receivers: Default::default(),
        }
    }

    /// Counts one transaction the store writer committed.
    pub fn count_commit(&self) {
        self.commits.fetch_add(1, Ordering::Relaxed);
    }

    /// Adds what a committed transaction did.
    pub fn add(&self, tally: Tally) {
        if !tally.is_empty() {
            self.counts
                .lock()
                .unwrap_or_else(|e| e.into_inner())
                .merge(tally);
        }
    }

    pub fn set_max_size(&self, max_size: Option<u64>) {
        self.max_size
            .store(max_size.unwrap_or(0), Ordering::Relaxed);
    }

    /// Every metric in the Prometheus text format (version 0.0.4). `store` is `None` when
    /// the store could not be read; its gauges are left out then.
    pub fn render(&self, store: Option<&StoreGauges>) -> String {
        let counts = self
            .counts
            .lock()
            .unwrap_or_else(|e| e.into_inner())
            .clone();
        let mut text = Text::default();

        text.family("posthorn_up", "gauge", "1 while posthorn answers.");
        text.sample("posthorn_up", &[], 1);
        text.family(
            "posthorn_build_info",
            "gauge",
            "The running posthorn's version, as a label; always 1.",
        );
        text.sample(
            "posthorn_build_info",
            &[("version", env!("CARGO_PKG_VERSION"))],
            1,
        );
        text.family(
            "posthorn_start_time_seconds",
            "gauge",
            "When this posthorn started, in seconds since the Unix epoch.",
        );
        text.sample(
            "posthorn_start_time_seconds",
            &[],
            seconds(self.started_at_ms),
        );

        text.family(
            "posthorn_store_commits_total",
            "counter",
            "Transactions the store writer committed (many commands share one).",
        );
        text.sample(
            "posthorn_store_commits_total",
            &[],
            self.commits.load(Ordering::Relaxed),
        );

        let by_source = [
            (
                "posthorn_events_ingested_total",
                "Events stored (committed), by input source.",
                &counts.ingested,
            ),
            (
                "posthorn_events_duplicate_total",
                "Events taken in whose id was already stored, so they were not stored again, by input source.",
                &counts.duplicates,
            ),
            (
                "posthorn_events_rejected_total",
                "Inputs refused as invalid and kept in the rejections log, by input source.",
                &counts.rejected,
            ),
        ];
        for (name, help, map) in by_source {
            text.family(name, "counter", help);
            for (source, n) in map {
                text.sample(name, &[("source", source)], n);
            }
        }

        let by_outcome = [
            (
                "posthorn_attempts_total",
                "Delivery attempts recorded, by subscription and what followed (delivered, retry, dead).",
                &counts.attempts,
            ),
            (
                "posthorn_deliveries_total",
                "Deliveries that reached a final outcome (delivered, dead), by subscription.",
                &counts.deliveries,
            ),
        ];
        for (name, help, map) in by_outcome {
            text.family(name, "counter", help);
            for ((subscription, outcome), n) in map {
                text.sample(
                    name,
                    &[
                        ("subscription", subscription),
                        ("outcome", outcome.as_str()),
                    ],
                    n,
                );
            }
        }

        let name = "posthorn_attempt_duration_seconds";
        text.family(
            name,
            "histogram",
            "How long delivery attempts took, from sending the request to reading the answer, by subscription.",
        );
        for (subscription, histogram) in &counts.latency {
            let mut cumulative = 0;
            for (le, n) in LATENCY_BUCKETS_MS.iter().zip(histogram.buckets) {
                cumulative += n;
                let le = number(*le as f64 / 1000.0);
                text.sample(
                    &format!("{name}_bucket"),
                    &[("subscription", subscription), ("le", &le)],
                    cumulative,
                );
            }
            text.sample(
                &format!("{name}_bucket"),
                &[("subscription", subscription), ("le", "+Inf")],
                histogram.count,
            );
            text.sample(
                &format!("{name}_sum"),
                &[("subscription", subscription)],
                seconds(histogram.sum_ms as i64),
            );
            text.sample(
                &format!("{name}_count"),
                &[("subscription", subscription)],
                histogram.count,
            );
        }

        let (workers, busy) = self.liveness.workers();
        text.family(
            "posthorn_workers",
            "gauge",
            "Delivery worker threads ([delivery] workers).",
        );
        text.sample("posthorn_workers", &[], workers);
        text.family(
            "posthorn_workers_busy",
            "gauge",
            "Delivery workers in the middle of an attempt.",
        );
        text.sample("posthorn_workers_busy", &[], busy);

        self.render_receivers(&mut text);

        let max_size = self.max_size.load(Ordering::Relaxed);
        if max_size > 0 {
            text.family(
                "posthorn_store_max_size_bytes",
                "gauge",
                "[storage] max_size: over it, new input is refused.",
            );
            text.sample("posthorn_store_max_size_bytes", &[], max_size);
        }
        if let Some(store) = store {
            text.family(
                "posthorn_queue_depth",
                "gauge",
                "Pending deliveries (waiting, due or in flight).",
            );
            text.sample("posthorn_queue_depth", &[], store.queue_depth);
            text.family(
                "posthorn_oldest_pending_age_seconds",
                "gauge",
                "How long the oldest pending delivery has waited; 0 with none pending.",
            );
            text.sample(
                "posthorn_oldest_pending_age_seconds",
                &[],
                seconds(store.oldest_pending_age_ms.unwrap_or(0)),
            );
            text.family(
                "posthorn_paused_subscriptions",
                "gauge",
                "Configured subscriptions paused from the admin page.",
            );
            text.sample(
                "posthorn_paused_subscriptions",
                &[],
                store.paused_subscriptions,
            );
            text.family(
                "posthorn_store_size_bytes",
                "gauge",
                "Bytes the store holds (pages in use plus the WAL), as [storage] max_size counts them.",
            );
            text.sample("posthorn_store_size_bytes", &[], store.size_bytes);
        }
        self.spool_aside.render(&mut text);
        text.out
    }
}

/// Spool files set aside instead of taken (unreadable, not regular files, or done with
/// but impossible to move away): each counted once when first reported, by why, and how
/// many are set aside right now.
#[derive(Debug, Default)]
pub struct SpoolAside {
    reported: Mutex<BTreeMap<&'static str, u64>>,
    now: AtomicU64,
}

impl SpoolAside {
    /// The reasons, each shown from the start so a first one is a visible increase.
    const REASONS: [&'static str; 3] = ["unreadable", "not_regular", "not_moved"];

    pub fn reported(&self, reason: &'static str) {
        *self
            .reported
            .lock()
            .unwrap_or_else(|e| e.into_inner())
            .entry(reason)
            .or_default() += 1;
    }

    pub fn set_now(&self, files: u64) {
        self.now.store(files, Ordering::Relaxed);
    }

    fn render(&self, text: &mut Text) {
        let mut reported = self
            .reported
            .lock()
            .unwrap_or_else(|e| e.into_inner())
            .clone();
        for reason in Self::REASONS {
            reported.entry(reason).or_default();
        }
        let name = "posthorn_spool_files_set_aside_total";
        text.family(
            name,
            "counter",
            "Spool files set aside instead of taken, each counted once when first reported, by reason (unreadable, not_regular, not_moved).",
        );
        for (reason, n) in reported {
            text.sample(name, &[("reason", reason)], n);
        }
        let name = "posthorn_spool_files_set_aside";
        text.family(
            name,
            "gauge",
            "Spool files set aside right now: skipped until they can be read, or left where they are.",
        );
        text.sample(name, &[], self.now.load(Ordering::Relaxed));
    }
}

impl Metrics {
    fn render_receivers(&self, text: &mut Text) {
        let board = &self.receivers;
        text.family(
            "posthorn_delivery_enabled",
            "gauge",
            "1 while delivery runs; 0 while it is switched off ([delivery] enabled = false or pause all).",
        );
        text.sample(
            "posthorn_delivery_enabled",
            &[],
            u8::from(!board.delivery_off()),
        );
        text.family(
            "posthorn_endpoints_tripped",
            "gauge",
            "Endpoints whose circuit breaker is open or probing.",
        );
        text.sample("posthorn_endpoints_tripped", &[], board.tripped_endpoints());
        let name = "posthorn_receiver_health_changes_total";
        text.family(
            name,
            "counter",
            "Receiver health changes by kind: failing (breaker opened), recovered, paused_gone (410), paused_failing (auto-pause), dead (a delivery died).",
        );
        for ((change, subscription), count) in board.changes() {
            text.sample(
                name,
                &[("change", change), ("subscription", &subscription)],
                count,
            );
        }
    }
}

/// Milliseconds as seconds, in the text format's number syntax.
fn seconds(ms: i64) -> String {
    number(ms as f64 / 1000.0)
}

/// A float as the text format writes it (`+Inf`, `-Inf`, `NaN` for the special values;
/// Rust's shortest round-trip form, never an exponent, for the rest).
fn number(value: f64) -> String {
    if value.is_nan() {
        "NaN".into()
    } else if value.is_infinite() {
        if value > 0.0 { "+Inf" } else { "-Inf" }.into()
    } else {
        value.to_string()
    }
}

/// The Prometheus text exposition format, written family by family.
#[derive(Default)]
struct Text {
    out: String,
}

impl Text {
    fn family(&mut self, name: &str, kind: &str, help: &str) {
        let _ = writeln!(self.out, "# HELP {name} {}", escape_help(help));
        let _ = writeln!(self.out, "# TYPE {name} {kind}");
    }

    fn sample(&mut self, name: &str, labels: &[(&str, &str)], value: impl std::fmt::Display) {
        self.out.push_str(name);
        if !labels.is_empty() {
            self.out.push('{');
            for (i, (label, value)) in labels.iter().enumerate() {
                if i > 0 {
                    self.out.push(',');
                }
                let _ = write!(self.out, "{label}=\"{}\"", escape_label(value));
            }
            self.out.push('}');
        }
        let _ = writeln!(self.out, " {value}");
    }
}

/// A label value: backslash, double quote and line feed are escaped.
fn escape_label(value: &str) -> String {
    let mut out = String::with_capacity(value.len());
    for c in value.chars() {
        match c {
            '\\' => out.push_str("\\\\"),
            '"' => out.push_str("\\\""),
            '\n' => out.push_str("\\n"),
            c => out.push(c),
        }
    }
    out
}

/// HELP text: backslash and line feed are escaped (a quote is fine there).
fn escape_help(help: &str) -> String {
    help.replace('\\', "\\\\").replace('\n', "\\n")
}

#[cfg(test)]
mod tests {
    use super::*;

    fn lines_of<'a>(text: &'a str, prefix: &str) -> Vec<&'a str> {
        text.lines().filter(|l| l.starts_with(prefix)).collect()
    }

    #[test]
    fn sources_collapse_to_their_kind() {
        assert_eq!(
            source_label("spool:/var/spool/posthorn/events.ndjson"),
            "spool"
        );
        assert_eq!(source_label("spool:C:\\odd:name.json"), "spool");
        assert_eq!(source_label("source:echo"), "echo");
        assert_eq!(source_label("inlet"), "inlet");
        assert_eq!(source_label("admin"), "admin");
    }

    #[test]
    fn label_values_escape_backslash_quote_and_newline() {
        assert_eq!(escape_label(r#"a\b"c"#), r#"a\\b\"c"#);
        assert_eq!(escape_label("two\nlines"), "two\\nlines");
        assert_eq!(escape_label("plain-name"), "plain-name");
        let mut text = Text::default();
        text.sample("m", &[("subscription", "x\"y\\z\n")], 3);
        assert_eq!(text.out, "m{subscription=\"x\\\"y\\\\z\\n\"} 3\n");
        assert_eq!(escape_help("a\\b\nc \"q\""), "a\\\\b\\nc \"q\"");
    }

    #[test]
    fn histogram_buckets_are_cumulative_and_end_with_inf_sum_and_count() {
        let metrics = Metrics::new(0);
        let mut tally = Tally::default();
        // 5 ms sits on a bound (le is inclusive); 40 s is past the last bucket.
        for ms in [5, 7, 120, 40_000] {
            tally.attempt("crm", NextStep::Delivered, ms, true);
        }
        metrics.add(tally);
        let text = metrics.render(None);
        let buckets = lines_of(&text, "posthorn_attempt_duration_seconds_bucket");
        assert_eq!(
            buckets,
            [
                r#"posthorn_attempt_duration_seconds_bucket{subscription="crm",le="0.005"} 1"#,
                r#"posthorn_attempt_duration_seconds_bucket{subscription="crm",le="0.01"} 2"#,
                r#"posthorn_attempt_duration_seconds_bucket{subscription="crm",le="0.025"} 2"#,
                r#"posthorn_attempt_duration_seconds_bucket{subscription="crm",le="0.05"} 2"#,
                r#"posthorn_attempt_duration_seconds_bucket{subscription="crm",le="0.1"} 2"#,
                r#"posthorn_attempt_duration_seconds_bucket{subscription="crm",le="0.25"} 3"#,
                r#"posthorn_attempt_duration_seconds_bucket{subscription="crm",le="0.5"} 3"#,
                r#"posthorn_attempt_duration_seconds_bucket{subscription="crm",le="1"} 3"#,
                r#"posthorn_attempt_duration_seconds_bucket{subscription="crm",le="2.5"} 3"#,
                r#"posthorn_attempt_duration_seconds_bucket{subscription="crm",le="5"} 3"#,
                r#"posthorn_attempt_duration_seconds_bucket{subscription="crm",le="10"} 3"#,
                r#"posthorn_attempt_duration_seconds_bucket{subscription="crm",le="30"} 3"#,
                r#"posthorn_attempt_duration_seconds_bucket{subscription="crm",le="+Inf"} 4"#,
            ]
        );
        assert_eq!(
            lines_of(&text, "posthorn_attempt_duration_seconds_sum"),
            [r#"posthorn_attempt_duration_seconds_sum{subscription="crm"} 40.132"#]
        );
        assert_eq!(
            lines_of(&text, "posthorn_attempt_duration_seconds_count"),
            [r#"posthorn_attempt_duration_seconds_count{subscription="crm"} 4"#]
        );
        assert!(text.contains("# TYPE posthorn_attempt_duration_seconds histogram\n"));
    }

    #[test]
    fn attempts_count_every_outcome_and_deliveries_only_final_ones() {
        let metrics = Metrics::new(0);
        let mut tally = Tally::default();
        tally.attempt("crm", NextStep::RetryAt(10), 3, true);
        tally.attempt("crm", NextStep::RetryAt(20), 3, true);
        tally.attempt("crm", NextStep::Dead, 3, true);
        tally.attempt("wiki", NextStep::Delivered, 3, true);
        // The delivery was cancelled before the attempt came back: not finished here.
        tally.attempt("wiki", NextStep::Delivered, 3, false);
        metrics.add(tally);
        let text = metrics.render(None);
        assert_eq!(
            lines_of(&text, "posthorn_attempts_total{"),
            [
                r#"posthorn_attempts_total{subscription="crm",outcome="retry"} 2"#,
                r#"posthorn_attempts_total{subscription="crm",outcome="dead"} 1"#,
                r#"posthorn_attempts_total{subscription="wiki",outcome="delivered"} 2"#,
            ]
        );
        assert_eq!(
            lines_of(&text, "posthorn_deliveries_total{"),
            [
                r#"posthorn_deliveries_total{subscription="crm",outcome="dead"} 1"#,
                r#"posthorn_deliveries_total{subscription="wiki",outcome="delivered"} 1"#,
            ]
        );
    }

    #[test]
    fn ingest_counts_add_up_by_source_kind() {
        let metrics = Metrics::new(0);
        let mut tally = Tally::default();
        tally.ingest("spool:/srv/spool/a.ndjson", 3, 1, 2);
        tally.ingest("spool:/srv/spool/b.json", 1, 0, 0);
        tally.ingest("source:echo", 1, 0, 0);
        metrics.add(tally);
        let mut more = Tally::default();
        more.ingest("inlet", 2, 2, 0);
        metrics.add(more);
        let text = metrics.render(None);
        assert_eq!(
            lines_of(&text, "posthorn_events_ingested_total{"),
            [
                r#"posthorn_events_ingested_total{source="echo"} 1"#,
                r#"posthorn_events_ingested_total{source="inlet"} 2"#,
                r#"posthorn_events_ingested_total{source="spool"} 4"#,
            ]
        );
        assert_eq!(
            lines_of(&text, "posthorn_events_duplicate_total{"),
            [
                r#"posthorn_events_duplicate_total{source="inlet"} 2"#,
                r#"posthorn_events_duplicate_total{source="spool"} 1"#,
            ]
        );
        assert_eq!(
            lines_of(&text, "posthorn_events_rejected_total{"),
            [
                r#"posthorn_events_rejected_total{source="inlet"} 0"#,
                r#"posthorn_events_rejected_total{source="spool"} 2"#,
            ]
        );
    }

    #[test]
    fn store_gauges_appear_only_when_the_store_was_read() {
        let metrics = Metrics::new(1_700_000_000_500);
        metrics.set_max_size(Some(8 << 20));
        let without = metrics.render(None);
        assert!(!without.contains("posthorn_queue_depth"), "{without}");
        assert!(without.contains("\nposthorn_store_max_size_bytes 8388608\n"));
        assert!(without.contains("\nposthorn_start_time_seconds 1700000000.5\n"));
        let with = metrics.render(Some(&StoreGauges {
            queue_depth: 7,
            oldest_pending_age_ms: Some(1_250),
            paused_subscriptions: 1,
            size_bytes: 4096,
        }));
        for line in [
            "posthorn_queue_depth 7",
            "posthorn_oldest_pending_age_seconds 1.25",
            "posthorn_paused_subscriptions 1",
            "posthorn_store_size_bytes 4096",
            "posthorn_up 1",
        ] {
            assert!(with.lines().any(|l| l == line), "no {line:?} in:\n{with}");
        }
        metrics.set_max_size(None);
        assert!(!metrics.render(None).contains("max_size_bytes"));
    }

    #[test]
    fn every_family_has_help_and_type_before_its_samples() {
        let metrics = Metrics::new(0);
        let mut tally = Tally::default();
        tally.ingest("inlet", 1, 0, 0);
        tally.attempt("crm", NextStep::Delivered, 12, true);
        metrics.add(tally);
        let text = metrics.render(Some(&StoreGauges::default()));
        let mut described = Vec::new();
        for line in text.lines() {
            if let Some(rest) = line.strip_prefix("# TYPE ") {
                described.push(rest.split(' ').next().unwrap().to_string());
                continue;
            }
            if line.starts_with('#') {
                continue;
            }
            let name = line.split(['{', ' ']).next().unwrap();
            let family = ["_bucket", "_sum", "_count"]
                .iter()
                .find_map(|s| name.strip_suffix(s))
                .filter(|base| described.iter().any(|d| d == base))
                .unwrap_or(name);
            assert!(
                described.last().map(String::as_str) == Some(family),
                "sample {line:?} is not under its own TYPE line"
            );
        }
    }
}
