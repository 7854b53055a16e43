//! Finding things on the admin page in a real browser (headless Chromium over WebDriver)
//! against the real binary and real deliveries (tests/find_fixture): the search box with
//! an event id, a delivery id, a conversation id and an unknown id; the event page (body
//! with every value as stored, source, deliveries, links both ways); the scope preview of
//! a configured subscription and of a pasted draft, valid and invalid; the event page at
//! phone width; and a console without CSP violations or script errors.
//!
//! Needs Debian's `chromium` and `chromium-driver`, like tests/browser.rs. With
//! `POSTHORN_SCREENSHOTS=DIR` set, it saves PNGs of the event page and the previews there.

mod common;
mod find_fixture;
mod webdriver;

use std::time::Duration;

use common::admin::PASSWORD;
use find_fixture::Fixture;
use webdriver::Browser;

const SHOWN: Duration = Duration::from_secs(20);
const PHONE: (u32, u32) = (390, 844);
/// WebDriver's Enter key.
const ENTER: &str = "\u{E007}";

fn t(name: &str) -> String {
    format!("[data-test=\"{name}\"]")
}

fn log_in(browser: &Browser, base: &str) {
    browser.goto(&format!("{base}/"));
    let password = browser.wait_for(&t("login-password"), SHOWN);
    // The search box is part of the logged-in page only.
    let shown = browser.execute(
        "return getComputedStyle(document.querySelector('[data-test=\"search-form\"]')).display",
        vec![],
    );
    assert_eq!(shown, "none", "the search box shows before logging in");
    browser.type_into(&password, PASSWORD);
    browser.click(&browser.wait_for(&t("login-submit"), SHOWN));
    browser.wait_for(&t("view-overview"), SHOWN);
}

fn search(browser: &Browser, term: &str) {
    let input = browser.wait_for(&t("search-input"), SHOWN);
    browser.type_into(&input, &format!("{term}{ENTER}"));
}

fn hash(browser: &Browser) -> String {
    let url = browser.current_url();
    url.split_once('#')
        .map(|(_, h)| format!("#{h}"))
        .unwrap_or_default()
}

#[test]
fn the_search_box_event_page_and_scope_preview_work_in_a_real_browser() {
    let fx = find_fixture::start();
    let base = fx.home.inlet_url();
    let browser = Browser::start(fx.home.path(), 1280, 900);
    log_in(&browser, &base);

    search_for_each_kind(&browser, &fx);
    check_the_event_page(&browser, &fx);
    preview_a_configured_subscription(&browser);
    preview_drafts(&browser);
    check_phone_width(&browser, &base);
    check_console(&browser);
}

fn search_for_each_kind(browser: &Browser, fx: &Fixture) {
    // An event id: its page.
    search(browser, "evt_2");
    browser.wait_for_text(&t("event-title"), "evt_2", SHOWN);
    assert!(
        hash(browser).starts_with("#/events/evt_2"),
        "{}",
        hash(browser)
    );

    // A delivery id: that delivery.
    let delivery = fx.delivery_id("evt_4", "wiki");
    search(browser, &delivery.to_string());
    browser.wait_for_text(
        &t("delivery-title"),
        &format!("Delivery #{delivery}"),
        SHOWN,
    );

    // A conversation id: the delivery log of that conversation.
    search(browser, "c-20");
    browser.wait_for(&t("view-deliveries"), SHOWN);
    browser.wait_until("the deliveries of c-20", SHOWN, || {
        let rows = browser.texts(&t("delivery-row"));
        (rows.len() == 1 && rows[0].contains("wiki") && rows[0].contains("c-20")).then_some(())
    });
    assert!(
        hash(browser).contains("conversation=c-20"),
        "{}",
        hash(browser)
    );

    // An id nothing has: said so.
    search(browser, "nothing-has-this-id");
    browser.wait_for_text(
        &t("search-none"),
        "Nothing has the id \"nothing-has-this-id\"",
        SHOWN,
    );

    // An id that names an event and a delivery: a list of both, each a link.
    search(browser, find_fixture::NUMBER_ID);
    browser.wait_for(&t("search-results"), SHOWN);
    let kinds: Vec<String> = browser
        .find_all(&t("search-result"))
        .iter()
        .filter_map(|item| browser.attribute(item, "data-kind"))
        .collect();
    assert_eq!(kinds, ["event", "delivery"]);
    browser.click(&browser.wait_for(&format!("{} a", t("search-result")), SHOWN));
    browser.wait_for(&t("event-page-body"), SHOWN);
    assert_eq!(hash(browser), "#/events/3");
    let title = browser.text(&browser.wait_for(&t("event-title"), SHOWN));
    assert!(title.ends_with('3'), "{title}");

    // An id with URL punctuation reaches its event.
    search(browser, find_fixture::ODD_ID);
    browser.wait_for_text(&t("event-title"), find_fixture::ODD_ID, SHOWN);
}

fn check_the_event_page(browser: &Browser, fx: &Fixture) {
    search(browser, "evt_1");
    browser.wait_for_text(&t("event-title"), "evt_1", SHOWN);
    let body = browser.text(&browser.wait_for(&t("event-page-body"), SHOWN));
    for exact in [
        "\"score\": 1.0000000000000001",
        "\"big\": 12345678901234567890",
        "\"tag\": \"a\",",
        "\"tag\": \"b\"",
    ] {
        assert!(body.contains(exact), "{exact:?} in\n{body}");
    }
    let source = browser.text(&browser.wait_for(&t("event-page-source"), SHOWN));
    assert!(
        source.contains(&fx.spool_source()) && source.contains("a spool file"),
        "{source}"
    );
    let rows = browser.texts(&t("event-delivery-row"));
    assert_eq!(rows.len(), 1, "{rows:?}");
    browser.save_screenshot("find-event");
    assert!(
        rows[0].contains("crm") && rows[0].contains("delivered"),
        "{rows:?}"
    );

    // To the delivery and back to the event.
    browser.click(&browser.wait_for(&t("event-delivery-link"), SHOWN));
    browser.wait_for(&t("delivery-title"), SHOWN);
    browser.click(&browser.wait_for(&t("delivery-event-link"), SHOWN));
    browser.wait_for_text(&t("event-title"), "evt_1", SHOWN);

    // The delivery page shows the request body with the stored values too (it went
    // through JSON.parse before, which rounded them).
    browser.click(&browser.wait_for(&t("event-delivery-link"), SHOWN));
    let request = browser.text(&browser.wait_for(&t("request-body"), SHOWN));
    assert!(request.contains("1.0000000000000001"), "{request}");

    // An event no subscription took.
    search(browser, "evt_5");
    browser.wait_for(&t("event-deliveries-empty"), SHOWN);
}

fn preview_a_configured_subscription(browser: &Browser) {
    browser.goto(&format!("{}#/subscriptions/wiki", base_of(browser)));
    browser.click(&browser.wait_for(&t("subscription-preview"), SHOWN));
    browser.wait_for_text(&t("preview-matched"), "Matched 2 events", SHOWN);
    let mut ids: Vec<String> = browser
        .find_all(&t("preview-event-row"))
        .iter()
        .filter_map(|row| browser.attribute(row, "data-id"))
        .collect();
    ids.sort();
    assert_eq!(ids, ["evt_2", "evt_4"]);
    browser.save_screenshot("find-preview-configured");
}

/// `http://host:port/admin/` of the page the browser shows.
fn base_of(browser: &Browser) -> String {
    let url = browser.current_url();
    url.split_once('#')
        .map(|(b, _)| b.to_string())
        .unwrap_or(url)
}

fn preview_drafts(browser: &Browser) {
    browser.goto(&format!("{}#/subscriptions", base_of(browser)));
    browser.click(&browser.wait_for(&t("preview-draft-link"), SHOWN));
    let area = browser.wait_for(&t("preview-draft"), SHOWN);

    // No secret in it: not needed.
    browser.type_into(
        &area,
        "[[subscription]]\nname = \"starts\"\nurl = \"https://crm.example.org/hook\"\n\
         conversations = [\"c-*\"]\nevents = [\"conversation.started\"]\n",
    );
    browser.click(&browser.wait_for(&t("preview-run"), SHOWN));
    browser.wait_for_text(&t("preview-matched"), "Matched 4 events", SHOWN);
    let mut ids: Vec<String> = browser
        .find_all(&t("preview-event-row"))
        .iter()
        .filter_map(|row| browser.attribute(row, "data-id"))
        .collect();
    ids.sort();
    assert_eq!(
        ids,
        [
            find_fixture::NUMBER_ID,
            find_fixture::ODD_ID,
            "evt_1",
            "evt_5"
        ]
    );

    // A bad name on line 2 and no events: both named, the first with its line.
    let area = browser.wait_for(&t("preview-draft"), SHOWN);
    browser.type_into(
        &area,
        "[[subscription]]\nname = \"bad name\"\nurl = \"https://a.example.org/\"\n\
         conversations = [\"*\"]\n",
    );
    browser.click(&browser.wait_for(&t("preview-run"), SHOWN));
    let problem = browser.wait_for_text(&t("preview-problem"), "a name may only", SHOWN);
    assert_eq!(
        browser.attribute(&problem, "data-line").as_deref(),
        Some("2")
    );
    assert!(
        browser.text(&problem).starts_with("line 2, column 8:"),
        "{}",
        browser.text(&problem)
    );
    browser.wait_for_text(&t("preview-problem"), "missing events", SHOWN);
    browser.save_screenshot("find-preview-draft-problems");
    assert!(
        browser.find_all(&t("preview-result")).is_empty(),
        "no result for a bad draft"
    );
}

fn check_phone_width(browser: &Browser, base: &str) {
    browser.set_window_size(PHONE.0, PHONE.1);
    for page in ["#/events/evt_1", "#/preview?subscription=crm"] {
        browser.goto(&format!("{base}/admin/{page}"));
        let view = if page.starts_with("#/events") {
            "view-events"
        } else {
            "view-preview"
        };
        browser.wait_for(&t(view), SHOWN);
        let sizes = browser.execute(
            "return [document.documentElement.scrollWidth, document.body.scrollWidth, window.innerWidth]",
            vec![],
        );
        let [document, body, window] = [0, 1, 2].map(|i| sizes[i].as_i64().unwrap_or(i64::MAX));
        browser.save_screenshot(&format!("find-phone-{view}"));
        assert!(
            document <= window && body <= window,
            "{page} is wider than the {window} px window: document {document} px, body {body} px"
        );
    }
    // The search box is there and usable at phone width.
    search(browser, "evt_3");
    browser.wait_for_text(&t("event-title"), "evt_3", SHOWN);
}

fn check_console(browser: &Browser) {
    let problems: Vec<(String, String)> = browser
        .browser_log()
        .into_iter()
        .filter(|(level, message)| {
            let csp = message.contains("Content Security Policy") || message.contains("Refused to");
            // The invalid draft's 400 and the session check's 401 before logging in are
            // answers the test asked for.
            let expected = message.contains("status of 400")
                || message.contains("/api/v1/session") && message.contains("status of 401");
            csp || (level == "SEVERE" && !expected)
        })
        .collect();
    assert!(
        problems.is_empty(),
        "the browser console has problems: {problems:#?}"
    );
}
