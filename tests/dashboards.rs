//! The Grafana dashboard (`packaging/grafana/posthorn.json`) and the example Prometheus
//! alert rules (`packaging/prometheus/posthorn-alerts.yml`) name only series that exist:
//! every `posthorn_*` name in their queries is in a real `/metrics` scrape of the running
//! binary (a histogram's family counts with its `_bucket`, `_sum` and `_count`).

mod common;

use std::collections::BTreeSet;
use std::path::Path;
use std::time::Duration;

use common::{hook, spool_event, Home, Receiver, Serve};

fn packaging(path: &str) -> String {
    let full = Path::new(env!("CARGO_MANIFEST_DIR"))
        .join("packaging")
        .join(path);
    std::fs::read_to_string(&full).unwrap_or_else(|e| panic!("{}: {e}", full.display()))
}

/// Every `posthorn_...` name in a query.
fn names_in(query: &str) -> BTreeSet<String> {
    let mut names = BTreeSet::new();
    for (i, _) in query.match_indices("posthorn_") {
        let before = query[..i].chars().next_back();
        if before.is_some_and(|c| c.is_ascii_alphanumeric() || c == '_') {
            continue;
        }
        let name: String = query[i..]
            .chars()
            .take_while(|c| c.is_ascii_alphanumeric() || *c == '_')
            .collect();
        names.insert(name);
    }
    names
}

/// The dashboard's queries: every `expr` of every panel, and the variables' queries.
fn dashboard_queries() -> Vec<String> {
    let dashboard: serde_json::Value =
        serde_json::from_str(&packaging("grafana/posthorn.json")).expect("the dashboard is JSON");
    assert_eq!(dashboard["title"], "posthorn");
    let panels = dashboard["panels"].as_array().expect("panels");
    assert!(panels.len() >= 10, "{} panels", panels.len());
    let mut queries = Vec::new();
    for panel in panels {
        let targets = panel["targets"].as_array().expect("each panel has targets");
        assert!(!targets.is_empty(), "{panel}");
        for target in targets {
            let expr = target["expr"].as_str().expect("each target has an expr");
            queries.push(expr.to_string());
        }
    }
    for variable in dashboard["templating"]["list"]
        .as_array()
        .expect("templating")
    {
        queries.push(
            variable["definition"]
                .as_str()
                .unwrap_or_default()
                .to_string(),
        );
    }
    queries
}

/// The rule file's `expr:` values (one line, or a `|` block), with a check of its shape.
fn rule_queries() -> Vec<String> {
    let text = packaging("prometheus/posthorn-alerts.yml");
    assert!(
        text.contains("groups:\n") && text.contains("    rules:\n"),
        "{text}"
    );
    let lines: Vec<&str> = text.lines().collect();
    let mut queries = Vec::new();
    let mut alerts = 0;
    for (i, line) in lines.iter().enumerate() {
        let trimmed = line.trim_start();
        if trimmed.starts_with("- alert: ") {
            alerts += 1;
        }
        let Some(expr) = trimmed.strip_prefix("expr: ") else {
            continue;
        };
        if expr.trim() != "|" {
            queries.push(expr.to_string());
            continue;
        }
        let indent = line.len() - trimmed.len();
        let block: Vec<&str> = lines[i + 1..]
            .iter()
            .take_while(|l| l.len() - l.trim_start().len() > indent)
            .copied()
            .collect();
        queries.push(block.join("\n"));
    }
    assert_eq!(queries.len(), alerts, "one expr per alert");
    assert!(alerts >= 5, "{alerts} alerts");
    queries
}

/// The series families a scrape shows: each `# TYPE` name, plus `_bucket`, `_sum` and
/// `_count` for histograms, plus every sample's name.
fn scraped(home: &Home) -> BTreeSet<String> {
    let text = common::http_get(&format!("{}/metrics", home.inlet_url())).body;
    let mut names = BTreeSet::new();
    for line in text.lines() {
        if let Some(rest) = line.strip_prefix("# TYPE ") {
            let mut parts = rest.split_whitespace();
            let (Some(name), Some(kind)) = (parts.next(), parts.next()) else {
                continue;
            };
            names.insert(name.to_string());
            if kind == "histogram" {
                for suffix in ["_bucket", "_sum", "_count"] {
                    names.insert(format!("{name}{suffix}"));
                }
            }
        } else if !line.starts_with('#') {
            let name: String = line
                .chars()
                .take_while(|c| c.is_ascii_alphanumeric() || *c == '_')
                .collect();
            names.insert(name);
        }
    }
    names
}

#[test]
fn the_dashboard_and_alert_rules_name_only_series_posthorn_exports() {
    let receiver = Receiver::start(204);
    let home = Home::new();
    home.write_config(&hook("crm", &format!("{}/crm", receiver.url)));
    // max_size, so its gauge is exported too (a SQLite store's only: PostgreSQL has none).
    if home.pg.is_none() {
        home.set_max_size(common::MIN_MAX_SIZE);
    }
    let _serve = Serve::start(&home);
    common::wait_for_inlet(&home);
    home.drop_json("evt-1.json", &spool_event("evt-1"));
    receiver.wait_for_count(1, Duration::from_secs(20));
    // The attempt is counted once its outcome is committed.
    let mut exported = BTreeSet::new();
    common::wait_for("the attempt in /metrics", Duration::from_secs(20), || {
        exported = scraped(&home);
        let text = common::http_get(&format!("{}/metrics", home.inlet_url())).body;
        text.contains("posthorn_attempts_total{subscription=\"crm\"")
    });
    if home.pg.is_some() {
        // Checked in the SQLite run, where max_size can be set.
        exported.insert("posthorn_store_max_size_bytes".to_string());
    }

    let mut missing = Vec::new();
    let mut used = BTreeSet::new();
    for (file, queries) in [
        ("grafana/posthorn.json", dashboard_queries()),
        ("prometheus/posthorn-alerts.yml", rule_queries()),
    ] {
        for query in queries {
            for name in names_in(&query) {
                if !exported.contains(&name) {
                    missing.push(format!("{file}: {name} in {query}"));
                }
                used.insert(name);
            }
        }
    }
    assert!(
        missing.is_empty(),
        "series not in /metrics:\n{}\n\nexported: {exported:?}",
        missing.join("\n")
    );
    // The dashboard covers the main families.
    for family in [
        "posthorn_events_ingested_total",
        "posthorn_deliveries_total",
        "posthorn_attempt_duration_seconds_bucket",
        "posthorn_queue_depth",
        "posthorn_oldest_pending_age_seconds",
        "posthorn_store_size_bytes",
    ] {
        assert!(used.contains(family), "{family} is not charted");
    }
}

#[test]
fn names_are_taken_whole_from_a_query() {
    let names = names_in(
        "sum(rate(posthorn_a_total{x=\"posthorn_label\"}[5m])) / my_posthorn_b + posthorn_c",
    );
    let expected: BTreeSet<String> = ["posthorn_a_total", "posthorn_label", "posthorn_c"]
        .iter()
        .map(|s| s.to_string())
        .collect();
    assert_eq!(names, expected);
}
