//! The admin page's charts, grouped failures, labelled rates, zoned times, date entry and
//! phone layout in a real browser (headless Chromium over WebDriver, as tests/browser.rs)
//! against the real binary: one receiver that fails for good and one that takes
//! everything.
//!
//! Needs Debian's `chromium` and `chromium-driver`; without them the test fails and says
//! so. With `POSTHORN_SCREENSHOTS=DIR` set, it saves PNGs of each page at laptop and
//! phone size there.

mod common;
mod webdriver;

use std::time::Duration;

use common::{hook, spool_event, wait_for, Home, Receiver, Serve};
use webdriver::Browser;

const PASSWORD: &str = "a long operator password";
const SHOWN: Duration = Duration::from_secs(20);
const DELIVERED: Duration = Duration::from_secs(60);
const LAPTOP: (u32, u32) = (1280, 900);
const PHONE: (u32, u32) = (390, 844);

fn t(name: &str) -> String {
    format!("[data-test=\"{name}\"]")
}

/// posthorn with `flaky-crm` (500, dead after three quick attempts) and `north-crm`
/// (200); with `events`, one event goes to both and one spool line is rejected.
fn start(events: bool) -> (Receiver, Receiver, Home, Serve) {
    let failing = Receiver::start(500);
    let healthy = Receiver::start(200);
    let home = Home::new();
    home.write_config(&format!(
        "[admin]\npassword_hash = {:?}\n\
         [delivery]\nschedule = [\"100ms\", \"100ms\"]\ntimeout = \"2s\"\n{}{}",
        posthorn::password::hash(PASSWORD),
        hook("flaky-crm", &format!("{}/hook", failing.url)),
        hook("north-crm", &format!("{}/hook", healthy.url)),
    ));
    let serve = Serve::start(&home);
    if events {
        home.drop_json("first.json", &spool_event("evt-chart-1"));
        home.append(
            "platform-export-of-the-north-district-consultation-2026-11-25.ndjson",
            b"{\"id\":\"evt-no-type\",\"conversation_id\":\"c-1\"}\n",
        );
        wait_for("one delivered and one dead", DELIVERED, || {
            home.count("SELECT count(*) FROM deliveries WHERE state IN ('delivered', 'dead')") == 2
        });
    }
    (failing, healthy, home, serve)
}

fn log_in(browser: &Browser, base: &str) {
    browser.goto(&format!("{base}/"));
    let password = browser.wait_for(&t("login-password"), SHOWN);
    browser.type_into(&password, PASSWORD);
    browser.click(&browser.wait_for(&t("login-submit"), SHOWN));
    browser.wait_for(&t("view-overview"), SHOWN);
}

fn card_value(browser: &Browser, card: &str) -> (String, String) {
    let card = browser.wait_for(&t(card), SHOWN);
    (
        browser.text(&browser.find_in(&card, &t("value"))[0]),
        browser.text(&card),
    )
}

/// How many rows the numbers table of `chart` holds once the chart shows `range`.
fn rows_after_switching(browser: &Browser, range: &str, chart: &str) -> u64 {
    browser.click(&browser.wait_for(&t(&format!("range-{range}")), SHOWN));
    browser.wait_until(&format!("the {range} chart"), SHOWN, || {
        let shown = browser.execute(
            "const body = document.querySelector('[data-test=chart-body]');
             const table = document.querySelector(`[data-test=${arguments[1]}-table]`);
             return body && body.getAttribute('data-range') === arguments[0] && table
                 ? table.querySelectorAll('tbody tr').length : null;",
            vec![range.into(), chart.into()],
        );
        shown.as_u64()
    })
}

#[test]
fn the_charts_draw_the_store_and_switch_ranges_and_the_overview_groups_failures() {
    let (_failing, _healthy, home, _serve) = start(true);
    let base = home.inlet_url();
    let browser = Browser::start(home.path(), LAPTOP.0, LAPTOP.1);
    log_in(&browser, &base);

    // The deliveries chart is drawn with lines, labelled for screen readers.
    let svg = browser.wait_for(&t("chart-deliveries-svg"), SHOWN);
    let label = browser.attribute(&svg, "aria-label").unwrap_or_default();
    assert!(
        label.starts_with("Deliveries, last 24 hours (UTC"),
        "{label}"
    );
    assert!(label.contains("delivered: highest 1"), "{label}");
    assert!(label.contains("dead: highest 1"), "{label}");
    let lines = browser.execute(
        "return document.querySelectorAll('[data-test=chart-deliveries-svg] .series').length",
        vec![],
    );
    assert!(
        lines.as_u64().is_some_and(|n| n >= 3),
        "lines drawn: {lines}"
    );
    browser.wait_for(&t("chart-latency-svg"), SHOWN);
    browser.wait_for(&t("chart-queue-svg"), SHOWN);

    browser.save_screenshot("charts-overview-laptop");

    // Ranges: one row per minute for an hour, per hour for a week.
    assert_eq!(rows_after_switching(&browser, "1h", "chart-deliveries"), 60);
    assert_eq!(
        rows_after_switching(&browser, "7d", "chart-deliveries"),
        168
    );
    assert_eq!(
        rows_after_switching(&browser, "30d", "chart-deliveries"),
        120
    );
    let pressed = browser.attribute(&browser.wait_for(&t("range-30d"), SHOWN), "aria-pressed");
    assert_eq!(pressed.as_deref(), Some("true"));

    // Failures grouped: flaky-crm's three 500s are one row with its count.
    let groups = browser.texts(&t("failure-group"));
    assert_eq!(groups.len(), 1, "{groups:?}");
    assert!(
        groups[0].contains("flaky-crm") && groups[0].contains("HTTP 500"),
        "{groups:?}"
    );
    assert_eq!(browser.texts(&t("failure-count")), ["3"]);

    // Both rates, each saying what it counts: 1 of 2 deliveries, 1 of 4 attempts.
    let (value, text) = card_value(&browser, "stat-delivery-rate");
    assert_eq!(value, "50.0 %", "{text}");
    assert!(text.contains("per delivery"), "{text}");
    let (value, text) = card_value(&browser, "stat-attempt-rate");
    assert_eq!(value, "25.0 %", "{text}");
    assert!(
        text.contains("per attempt") && text.contains("retries"),
        "{text}"
    );

    // Times carry their zone.
    let times = browser.texts("[data-test=failure-group] time");
    assert!(times.iter().all(|t| t.contains("UTC")), "{times:?}");

    // Subscriptions: the trend line and both rates per row.
    browser.goto(&format!("{base}/admin/#/subscriptions"));
    let trend = browser.wait_for("[data-name=\"north-crm\"] [data-test=trend]", SHOWN);
    assert_eq!(
        browser.attribute(&trend, "data-delivered").as_deref(),
        Some("1")
    );
    let label = browser.attribute(&trend, "aria-label").unwrap_or_default();
    assert!(label.contains("1 delivered"), "{label}");
    let flaky = browser.wait_for("[data-name=\"flaky-crm\"]", SHOWN);
    let rates: Vec<String> = ["delivery-rate", "attempt-rate"]
        .iter()
        .map(|name| browser.text(&browser.find_in(&flaky, &t(name))[0]))
        .collect();
    assert_eq!(rates, ["0 %", "0 %"]);
    let head = browser.texts("[data-test=subscriptions] th");
    assert!(
        head.iter().any(|h| h == "Delivered") && head.iter().any(|h| h == "Attempts OK"),
        "{head:?}"
    );

    // A subscription's own history chart.
    browser.goto(&format!("{base}/admin/#/subscriptions/flaky-crm"));
    let svg = browser.wait_for(&t("chart-deliveries-svg"), SHOWN);
    let label = browser.attribute(&svg, "aria-label").unwrap_or_default();
    assert!(label.contains("dead: highest 1"), "{label}");
    assert!(
        browser.find_all(&t("chart-queue-svg")).is_empty(),
        "no queue per subscription"
    );

    // Date entry: 24-hour text; a US 12-hour time is refused with what to write.
    let since = browser.wait_for(&t("retry-since"), SHOWN);
    let shown = browser.property(&since, "value");
    assert!(
        shown
            .as_str()
            .is_some_and(|v| v.len() == 16 && v.as_bytes()[10] == b' '),
        "YYYY-MM-DD HH:MM: {shown}"
    );
    browser.type_into(&since, "11/25/2026 2:30 PM");
    browser.click(&browser.wait_for(&t("retry-failed"), SHOWN));
    browser.wait_for_text(&t("error"), "2026-11-25 14:30", SHOWN);
    browser.type_into(&since, "2h");
    browser.click(&browser.wait_for(&t("retry-failed"), SHOWN));
    browser.wait_for_text(&t("confirm-text"), "changed since", SHOWN);
    browser.click(&browser.wait_for(&t("confirm-cancel"), SHOWN));

    // The delivery filter takes a time typed as how long ago, and refuses nonsense.
    browser.goto(&format!("{base}/admin/#/deliveries"));
    browser.wait_for(&t("delivery-row"), SHOWN);
    browser.click(&browser.wait_for("[data-test=\"filter-state\"] option[value=\"dead\"]", SHOWN));
    browser.type_into(&browser.wait_for(&t("filter-from"), SHOWN), "1d");
    browser.click(&browser.wait_for(&t("filter-apply"), SHOWN));
    browser.wait_until("the filter in the address", SHOWN, || {
        let url = browser.current_url();
        (url.contains("state=dead") && url.contains("from=")).then_some(())
    });
    browser.wait_until("only the dead delivery listed", SHOWN, || {
        let rows = browser.texts(&t("delivery-row"));
        (rows.len() == 1 && rows[0].contains("flaky-crm")).then_some(())
    });
    let from = browser.wait_for(&t("filter-from"), SHOWN);
    let shown = browser.property(&from, "value");
    assert!(
        shown.as_str().is_some_and(|v| v.len() == 16),
        "shown as YYYY-MM-DD HH:MM: {shown}"
    );
    browser.type_into(&from, "yesterday-ish");
    browser.click(&browser.wait_for(&t("filter-apply"), SHOWN));
    let invalid = browser.execute(
        "return document.querySelector('[data-test=filter-from]').validationMessage",
        vec![],
    );
    assert!(
        invalid
            .as_str()
            .is_some_and(|m| m.contains("2026-11-25 14:30")),
        "the field says what to write: {invalid}"
    );

    // Every page at phone width: nothing wider than the window, no table clipped.
    browser.set_window_size(PHONE.0, PHONE.1);
    for (hash, ready) in [
        ("#/", "failure-group"),
        ("#/subscriptions", "subscription-row"),
        ("#/subscriptions/north-crm", "chart-deliveries-svg"),
        ("#/deliveries", "delivery-row"),
        ("#/rejections", "rejection-row"),
        ("#/audit", "audit-row"),
    ] {
        browser.goto(&format!("{base}/admin/{hash}"));
        browser.wait_for(&t(ready), SHOWN);
        assert_nothing_clipped(&browser, hash);
        browser.save_screenshot(&format!("charts-phone-{}", hash.replace(['#', '/'], "_")));
    }
    // A delivery's own page.
    browser.goto(&format!("{base}/admin/#/deliveries"));
    let link = browser.wait_for("[data-test=delivery-row] a[href^=\"#/deliveries/\"]", SHOWN);
    browser.click(&link);
    browser.wait_for(&t("attempt-row"), SHOWN);
    assert_nothing_clipped(&browser, "a delivery");
}

#[test]
fn with_no_history_the_charts_say_so_instead_of_drawing_nothing() {
    let (_failing, _healthy, home, _serve) = start(false);
    let base = home.inlet_url();
    let browser = Browser::start(home.path(), LAPTOP.0, LAPTOP.1);
    log_in(&browser, &base);
    browser.wait_for_text(
        &t("chart-empty"),
        "No delivery attempts in the last 24 hours",
        SHOWN,
    );
    assert!(browser.find_all(&t("chart-deliveries-svg")).is_empty());
    browser.wait_for(&t("failure-groups-empty"), SHOWN);
    browser.click(&browser.wait_for(&t("range-1h"), SHOWN));
    browser.wait_for_text(&t("chart-empty"), "last hour", SHOWN);
    let (value, _) = card_value(&browser, "stat-delivery-rate");
    assert_eq!(value, "—");
}

/// The document is no wider than the window, and every table fits its container (rows
/// are stacked on phones, so no container has to scroll sideways).
fn assert_nothing_clipped(browser: &Browser, page: &str) {
    let found = browser.execute(
        "const out = [];
         const win = window.innerWidth;
         const doc = document.documentElement.scrollWidth;
         if (doc > win) out.push(`document ${doc} px in a ${win} px window`);
         for (const wrap of document.querySelectorAll('.table-wrap')) {
           if (!wrap.offsetParent) continue;
           if (wrap.scrollWidth > wrap.clientWidth + 1) {
             const name = wrap.querySelector('table')?.getAttribute('data-test');
             out.push(`table ${name}: ${wrap.scrollWidth} px in ${wrap.clientWidth} px`);
           }
           for (const cell of wrap.querySelectorAll('td, th')) {
             // Column names hidden for screen readers (rows stacked on phones) are not shown.
             const head = cell.closest('thead');
             if (head && head.getBoundingClientRect().width <= 1) continue;
             const r = cell.getBoundingClientRect();
             if (r.width > 0 && r.right > win + 1) out.push(`a cell of ${wrap.querySelector('table')?.getAttribute('data-test')} ends at ${r.right}`);
           }
         }
         return out;",
        vec![],
    );
    let problems = found.as_array().cloned().unwrap_or_default();
    assert!(problems.is_empty(), "{page} at 390 px: {problems:#?}");
}
