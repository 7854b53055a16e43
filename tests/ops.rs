//! `GET /metrics` and `GET /healthz` through the real binary: events from the spool, the
//! inlet and an inlet source, a rejected line and a duplicate land in their counters; a
//! delivered, a failing and a waiting subscription show their attempts, outcomes and
//! latency histograms; the queue gauges see the waiting delivery; the whole exposition
//! parses; and /healthz turns 503 once the store grows over `[storage] max_size`.

mod common;

use std::collections::{BTreeMap, HashMap};
use std::time::Duration;

use common::{
    event_in, http_get, http_post, subscription, wait_for, wait_for_inlet, Home, Receiver, Serve,
};

const SETTLE: Duration = Duration::from_secs(20);
const INLET_TOKEN: &str = "ops-test-token-0123456789";

/// One sample of the exposition.
#[derive(Debug, Clone, PartialEq)]
struct Sample {
    name: String,
    labels: BTreeMap<String, String>,
    value: f64,
}

/// Checks `text` against the Prometheus text format (0.0.4) and returns its samples:
/// every line is a comment or `name{labels} value`; label values use only the escapes
/// `\\`, `\"` and `\n`; every family has exactly one HELP and one TYPE before its first
/// sample; counters end in `_total`; no sample repeats; each histogram's buckets grow,
/// end at `le="+Inf"` and agree with its `_count`, beside a `_sum`.
fn parse_exposition(text: &str) -> Result<Vec<Sample>, String> {
    if !text.ends_with('\n') {
        return Err("the exposition does not end with a newline".into());
    }
    let mut help: HashMap<String, usize> = HashMap::new();
    let mut kinds: HashMap<String, String> = HashMap::new();
    let mut samples = Vec::new();
    for (n, line) in text.lines().enumerate() {
        let at = |why: String| format!("line {}: {why}: {line:?}", n + 1);
        if let Some(rest) = line.strip_prefix("# HELP ") {
            let (name, _) = rest
                .split_once(' ')
                .ok_or_else(|| at("HELP without text".into()))?;
            *help.entry(name.to_string()).or_default() += 1;
            continue;
        }
        if let Some(rest) = line.strip_prefix("# TYPE ") {
            let (name, kind) = rest
                .split_once(' ')
                .ok_or_else(|| at("TYPE without a type".into()))?;
            if !["counter", "gauge", "histogram", "summary", "untyped"].contains(&kind) {
                return Err(at(format!("unknown type {kind}")));
            }
            if kinds.insert(name.to_string(), kind.to_string()).is_some() {
                return Err(at(format!("second TYPE for {name}")));
            }
            if !help.contains_key(name) {
                return Err(at(format!("TYPE of {name} before its HELP")));
            }
            continue;
        }
        if line.starts_with('#') || line.is_empty() {
            return Err(at(
                "a comment that is neither HELP nor TYPE, or an empty line".into(),
            ));
        }
        let sample = parse_sample(line).map_err(at)?;
        let family = ["_bucket", "_sum", "_count"]
            .iter()
            .filter_map(|suffix| sample.name.strip_suffix(suffix))
            .find(|base| kinds.get(*base).map(String::as_str) == Some("histogram"))
            .unwrap_or(&sample.name)
            .to_string();
        match kinds.get(&family).map(String::as_str) {
            None => return Err(at(format!("sample of {family} before its TYPE"))),
            Some("counter") if !family.ends_with("_total") => {
                return Err(at(format!("counter {family} does not end in _total")))
            }
            _ => {}
        }
        if samples.contains(&sample) {
            return Err(at("the same sample twice".into()));
        }
        samples.push(sample);
    }
    for (name, count) in &help {
        if *count != 1 {
            return Err(format!("{name} has {count} HELP lines"));
        }
        if !kinds.contains_key(name) {
            return Err(format!("{name} has HELP but no TYPE"));
        }
    }
    for (name, kind) in &kinds {
        if kind == "histogram" {
            check_histogram(name, &samples)?;
        }
    }
    Ok(samples)
}

fn parse_sample(line: &str) -> Result<Sample, String> {
    let name_end = line
        .find(['{', ' '])
        .ok_or("no value after the metric name")?;
    let name = &line[..name_end];
    let valid_name = name.chars().enumerate().all(|(i, c)| {
        c.is_ascii_alphabetic() || c == '_' || c == ':' || (i > 0 && c.is_ascii_digit())
    });
    if name.is_empty() || !valid_name {
        return Err(format!("bad metric name {name:?}"));
    }
    let mut rest = &line[name_end..];
    let mut labels = BTreeMap::new();
    if let Some(inner) = rest.strip_prefix('{') {
        let mut chars = inner.char_indices().peekable();
        loop {
            // label name
            let start = chars.peek().map(|(i, _)| *i).ok_or("unterminated labels")?;
            let mut end = start;
            while let Some(&(i, c)) = chars.peek() {
                if c == '=' {
                    end = i;
                    break;
                }
                if !(c.is_ascii_alphanumeric() || c == '_') {
                    return Err(format!("bad character {c:?} in a label name"));
                }
                chars.next();
            }
            let label = &inner[start..end];
            if label.is_empty() || label.starts_with(|c: char| c.is_ascii_digit()) {
                return Err(format!("bad label name {label:?}"));
            }
            chars.next(); // '='
            if chars.next().map(|(_, c)| c) != Some('"') {
                return Err(format!("label {label} has no quoted value"));
            }
            let mut value = String::new();
            loop {
                match chars.next().map(|(_, c)| c) {
                    None => return Err(format!("unterminated value of label {label}")),
                    Some('"') => break,
                    Some('\n') => return Err("a raw newline in a label value".into()),
                    Some('\\') => match chars.next().map(|(_, c)| c) {
                        Some('\\') => value.push('\\'),
                        Some('"') => value.push('"'),
                        Some('n') => value.push('\n'),
                        other => return Err(format!("bad escape \\{other:?} in label {label}")),
                    },
                    Some(c) => value.push(c),
                }
            }
            if labels.insert(label.to_string(), value).is_some() {
                return Err(format!("label {label} twice"));
            }
            match chars.next() {
                Some((_, ',')) => continue,
                Some((i, '}')) => {
                    rest = &inner[i + 1..];
                    break;
                }
                _ => return Err("labels not closed by }".into()),
            }
        }
    }
    let value = rest.strip_prefix(' ').ok_or("no space before the value")?;
    let value = match value {
        "+Inf" => f64::INFINITY,
        "-Inf" => f64::NEG_INFINITY,
        "NaN" => f64::NAN,
        v => v.parse::<f64>().map_err(|_| format!("bad value {v:?}"))?,
    };
    Ok(Sample {
        name: name.to_string(),
        labels,
        value,
    })
}

/// A sample's labels without `le`, in order: one histogram series.
type SeriesLabels = Vec<(String, String)>;

fn check_histogram(name: &str, samples: &[Sample]) -> Result<(), String> {
    let bucket = format!("{name}_bucket");
    let mut series: BTreeMap<SeriesLabels, Vec<(f64, f64)>> = BTreeMap::new();
    for s in samples.iter().filter(|s| s.name == bucket) {
        let le = s.labels.get("le").ok_or(format!("{bucket} without le"))?;
        let le = if le == "+Inf" {
            f64::INFINITY
        } else {
            le.parse().map_err(|_| format!("{bucket}: bad le {le:?}"))?
        };
        let key = s
            .labels
            .iter()
            .filter(|(k, _)| *k != "le")
            .map(|(k, v)| (k.clone(), v.clone()))
            .collect();
        series.entry(key).or_default().push((le, s.value));
    }
    for (labels, buckets) in series {
        let find = |suffix: &str| {
            samples
                .iter()
                .find(|s| {
                    s.name == format!("{name}{suffix}")
                        && s.labels
                            .iter()
                            .map(|(k, v)| (k.clone(), v.clone()))
                            .collect::<Vec<_>>()
                            == labels
                })
                .map(|s| s.value)
                .ok_or(format!("{name}{suffix} missing for {labels:?}"))
        };
        let count = find("_count")?;
        find("_sum")?;
        if !buckets
            .windows(2)
            .all(|w| w[0].0 < w[1].0 && w[0].1 <= w[1].1)
        {
            return Err(format!(
                "{name} {labels:?}: buckets not in order or not cumulative: {buckets:?}"
            ));
        }
        if buckets.last().map(|b| b.0) != Some(f64::INFINITY) {
            return Err(format!("{name} {labels:?}: no le=\"+Inf\" bucket last"));
        }
        if buckets.last().map(|b| b.1) != Some(count) {
            return Err(format!(
                "{name} {labels:?}: the +Inf bucket is not _count ({count})"
            ));
        }
    }
    Ok(())
}

/// `/metrics`, checked against the format; panics with the text if it does not parse.
fn scrape(home: &Home) -> Vec<Sample> {
    let response = http_get(&format!("{}/metrics", home.inlet_url())).expect(200);
    assert_eq!(
        response.header("content-type"),
        Some("text/plain; version=0.0.4; charset=utf-8")
    );
    parse_exposition(&response.body)
        .unwrap_or_else(|why| panic!("/metrics is not valid: {why}\n{}", response.body))
}

/// The value of the sample `name` with exactly `labels`, if there is one.
fn value(samples: &[Sample], name: &str, labels: &[(&str, &str)]) -> Option<f64> {
    let labels: BTreeMap<String, String> = labels
        .iter()
        .map(|(k, v)| (k.to_string(), v.to_string()))
        .collect();
    samples
        .iter()
        .find(|s| s.name == name && s.labels == labels)
        .map(|s| s.value)
}

fn healthz(home: &Home) -> common::Response {
    http_get(&format!("{}/healthz", home.inlet_url()))
}

#[test]
fn metrics_count_input_by_source_attempts_by_outcome_and_see_the_queue() {
    let ok = Receiver::start(204);
    let failing = Receiver::start(500);
    // 503 with Retry-After of an hour: the delivery stays pending, the queue is not empty.
    let waiting = Receiver::holding_off();
    let home = Home::new();
    let mut config = format!(
        "[inlet]\ntoken = {INLET_TOKEN:?}\n\
         [[inlet.source]]\nname = \"platform\"\nprofile = \"generic\"\nid = \"/id\"\n\
         type = \"/type\"\nconversation = \"/conv\"\n"
    );
    for (name, receiver, conversation) in [
        ("ok", &ok, "c-ok"),
        ("failing", &failing, "c-fail"),
        ("waiting", &waiting, "c-wait"),
    ] {
        config.push_str(&subscription(
            name,
            &format!("{}/{name}", receiver.url),
            &format!("conversations = [{conversation:?}]"),
            "[\"*\"]",
        ));
    }
    home.write_config(&config);
    let _serve = Serve::start(&home);
    wait_for_inlet(&home);

    let health = healthz(&home).expect(200).json();
    assert_eq!(health["status"], "ok", "{health}");
    assert_eq!(health["checks"]["store"]["status"], "ok", "{health}");
    assert_eq!(health["checks"]["delivery"]["status"], "ok", "{health}");
    assert!(
        health["checks"]["delivery"]["workers"].as_u64() > Some(0),
        "{health}"
    );

    // The spool: three events and a line that is not JSON.
    let lines = [
        event_in("ok-1", "c-ok"),
        event_in("fail-1", "c-fail"),
        event_in("wait-1", "c-wait"),
        "{not json".to_string(),
    ];
    home.append("in.ndjson", format!("{}\n", lines.join("\n")).as_bytes());
    // The inlet: one event, then the same one again (a duplicate).
    let auth = format!("Bearer {INLET_TOKEN}");
    let headers = [
        ("Authorization", auth.as_str()),
        ("Content-Type", "application/json"),
    ];
    let posted = event_in("ok-2", "c-ok");
    for _ in 0..2 {
        http_post(
            &format!("{}/v1/events", home.inlet_url()),
            &headers,
            posted.as_bytes(),
            false,
        )
        .expect(202);
    }
    // An inlet source, in the platform's own shape.
    http_post(
        &format!("{}/v1/sources/platform", home.inlet_url()),
        &[("Content-Type", "application/json")],
        br#"{"id":"ok-3","type":"conversation.started","conv":"c-ok"}"#,
        false,
    )
    .expect(202);

    ok.wait_for_count(3, SETTLE);
    // Schedule 100ms, 200ms (the test default): three attempts, then dead.
    failing.wait_for_count(3, SETTLE);
    waiting.wait_for_count(1, SETTLE);
    // Attempts are counted when their record commits, a moment after the receiver saw
    // the request.
    let mut samples = Vec::new();
    wait_for("the last attempts to be counted", SETTLE, || {
        samples = scrape(&home);
        let attempts = |sub: &str, outcome: &str| {
            value(
                &samples,
                "posthorn_attempts_total",
                &[("subscription", sub), ("outcome", outcome)],
            )
        };
        attempts("ok", "delivered") == Some(3.0)
            && attempts("failing", "dead") == Some(1.0)
            && attempts("waiting", "retry") == Some(1.0)
    });

    let get = |name: &str, labels: &[(&str, &str)]| {
        value(&samples, name, labels)
            .unwrap_or_else(|| panic!("no {name} {labels:?} in {samples:#?}"))
    };
    for (source, ingested, duplicates, rejected) in [
        ("spool", 3.0, 0.0, 1.0),
        ("inlet", 1.0, 1.0, 0.0),
        ("platform", 1.0, 0.0, 0.0),
    ] {
        let labels = [("source", source)];
        assert_eq!(
            (
                get("posthorn_events_ingested_total", &labels),
                value(&samples, "posthorn_events_duplicate_total", &labels).unwrap_or(0.0),
                value(&samples, "posthorn_events_rejected_total", &labels).unwrap_or(0.0),
            ),
            (ingested, duplicates, rejected),
            "source {source}: (ingested, duplicates, rejected)"
        );
    }
    // No per-file or `source:` labels.
    assert!(
        !samples
            .iter()
            .any(|s| s.labels.get("source").is_some_and(|v| v.contains(':'))),
        "{samples:#?}"
    );

    for (subscription, outcome, attempts, finished) in [
        ("ok", "delivered", 3.0, Some(3.0)),
        ("failing", "retry", 2.0, None),
        ("failing", "dead", 1.0, Some(1.0)),
        ("waiting", "retry", 1.0, None),
    ] {
        let labels = [("subscription", subscription), ("outcome", outcome)];
        assert_eq!(
            get("posthorn_attempts_total", &labels),
            attempts,
            "{labels:?}"
        );
        assert_eq!(
            value(&samples, "posthorn_deliveries_total", &labels),
            finished,
            "deliveries {labels:?}"
        );
    }
    for (subscription, attempts) in [("ok", 3.0), ("failing", 3.0), ("waiting", 1.0)] {
        let labels = [("subscription", subscription)];
        assert_eq!(
            get("posthorn_attempt_duration_seconds_count", &labels),
            attempts,
            "{subscription}"
        );
        assert_eq!(
            get(
                "posthorn_attempt_duration_seconds_bucket",
                &[("subscription", subscription), ("le", "+Inf")]
            ),
            attempts
        );
        // A local receiver answers well within the 2 s timeout.
        assert_eq!(
            get(
                "posthorn_attempt_duration_seconds_bucket",
                &[("subscription", subscription), ("le", "30")]
            ),
            attempts
        );
        assert!(get("posthorn_attempt_duration_seconds_sum", &labels) >= 0.0);
    }

    // wait-1 is pending for an hour; everything else is final.
    assert_eq!(get("posthorn_queue_depth", &[]), 1.0);
    wait_for("the oldest pending age to be above 0", SETTLE, || {
        value(&scrape(&home), "posthorn_oldest_pending_age_seconds", &[]).is_some_and(|v| v > 0.0)
    });
    assert!(get("posthorn_store_size_bytes", &[]) > 0.0);
    assert_eq!(get("posthorn_paused_subscriptions", &[]), 0.0);
    assert_eq!(get("posthorn_up", &[]), 1.0);
    assert_eq!(
        get(
            "posthorn_build_info",
            &[("version", env!("CARGO_PKG_VERSION"))]
        ),
        1.0
    );
    assert!(get("posthorn_workers", &[]) > 0.0);
    assert_eq!(
        value(&samples, "posthorn_store_max_size_bytes", &[]),
        None,
        "no max_size configured"
    );

    // Neither endpoint asks for a login, and /healthz is still fine.
    let health = healthz(&home).expect(200).json();
    assert_eq!(health["status"], "ok", "{health}");
    assert_eq!(
        health["checks"]["store"]["max_size_bytes"],
        serde_json::Value::Null
    );
}

#[test]
fn healthz_turns_503_once_the_store_is_over_max_size() {
    if common::sqlite_only("[storage] max_size") {
        return;
    }
    let home = Home::new();
    home.write_config("");
    let config = std::fs::read_to_string(home.config_path()).unwrap();
    let config = config.replacen("[storage]\n", "[storage]\nmax_size = \"5MiB\"\n", 1);
    std::fs::write(home.config_path(), config).unwrap();
    let serve = Serve::start(&home);
    wait_for_inlet(&home);

    let health = healthz(&home).expect(200).json();
    assert_eq!(health["status"], "ok", "{health}");
    assert_eq!(
        health["checks"]["store"]["max_size_bytes"],
        5 << 20,
        "{health}"
    );
    assert!(
        health["checks"]["store"]["used_bytes"].as_u64() < Some(5 << 20),
        "{health}"
    );

    // 384 events of 16 KiB in one file: about 6 MiB, accepted while under the limit.
    let filler = "x".repeat(16 << 10);
    let big: Vec<String> = (0..384)
        .map(|n| {
            format!(
                r#"{{"id":"big-{n}","type":"conversation.started","conversation_id":"c-1","data":{{"text":"{filler}"}}}}"#
            )
        })
        .collect();
    home.drop_json("big.json", &format!("[{}]", big.join(",")));
    wait_for("big.json to be taken", SETTLE, || {
        !home.spool().join("big.json").exists()
    });

    let mut response = None;
    wait_for("/healthz to answer 503", SETTLE, || {
        let r = healthz(&home);
        let unhealthy = r.status == 503;
        response = Some(r);
        unhealthy
    });
    let health = response.unwrap().json();
    assert_eq!(health["status"], "unhealthy", "{health}");
    let store = &health["checks"]["store"];
    assert_eq!(store["status"], "unhealthy", "{health}");
    assert!(
        store["reason"].as_str().unwrap_or("").contains("max_size"),
        "{health}"
    );
    assert!(store["used_bytes"].as_u64() > Some(5 << 20), "{health}");
    assert_eq!(
        health["checks"]["delivery"]["status"], "ok",
        "delivery goes on: {health}"
    );

    let samples = scrape(&home);
    assert_eq!(
        value(&samples, "posthorn_store_max_size_bytes", &[]),
        Some((5 << 20) as f64)
    );
    assert!(
        value(&samples, "posthorn_store_size_bytes", &[]).is_some_and(|v| v > (5 << 20) as f64),
        "{samples:#?}"
    );
    assert_eq!(
        value(
            &samples,
            "posthorn_events_ingested_total",
            &[("source", "spool")]
        ),
        Some(384.0)
    );
    assert!(serve.log().contains("posthorn is running"));
}

#[test]
fn the_checker_refuses_what_prometheus_would() {
    let good = "# HELP a_total A.\n# TYPE a_total counter\na_total{x=\"q\\\"\\\\\\n\"} 1\n";
    let samples = parse_exposition(good).unwrap();
    assert_eq!(samples[0].labels["x"], "q\"\\\n");
    for (bad, why) in [
        ("a_total 1\n", "no TYPE"),
        ("# HELP a_total A.\n# TYPE a_total counter\na_total{x=\"\\t\"} 1\n", "bad escape"),
        ("# HELP a A.\n# TYPE a counter\na 1\n", "counter without _total"),
        ("# HELP a A.\n# TYPE a gauge\na{x=\"1\"} one\n", "bad value"),
        ("# HELP a A.\n# TYPE a gauge\na 1", "no final newline"),
        ("# HELP a A.\n# TYPE a gauge\na 1\na 1\n", "a repeat"),
        (
            "# HELP h H.\n# TYPE h histogram\nh_bucket{le=\"1\"} 2\nh_bucket{le=\"+Inf\"} 1\nh_sum 1\nh_count 1\n",
            "not cumulative",
        ),
        (
            "# HELP h H.\n# TYPE h histogram\nh_bucket{le=\"1\"} 1\nh_sum 1\nh_count 1\n",
            "no +Inf",
        ),
    ] {
        assert!(parse_exposition(bad).is_err(), "accepted ({why}): {bad:?}");
    }
}
