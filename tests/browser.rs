//! The admin page in a real browser: headless Chromium driven over WebDriver against the
//! real binary, with one receiver that fails and one that takes everything. The test logs
//! in, opens every page and checks it shows the store's data, sends a test event, retries
//! a dead delivery once its receiver recovers, reads the audit log, and checks that the
//! browser console holds no CSP violation or script error and that a phone-sized window
//! does not scroll sideways.
//!
//! Needs Debian's `chromium` and `chromium-driver` (/usr/bin/chromium,
//! /usr/bin/chromedriver); without them the test fails and says so. With
//! `POSTHORN_SCREENSHOTS=DIR` set, it saves PNGs of the overview and a delivery at laptop
//! and phone size there.

mod common;
mod webdriver;

use std::time::Duration;

use common::{hook, signal, spool_event, wait_for, Answer, Home, Receiver, Serve};
use webdriver::{Browser, Element};

const PASSWORD: &str = "a long operator password";
/// Bound on anything the page shows after a request or two.
const SHOWN: Duration = Duration::from_secs(20);
/// Bound on a delivery's round trip through the queue.
const DELIVERED: Duration = Duration::from_secs(60);
const LAPTOP: (u32, u32) = (1280, 900);
const PHONE: (u32, u32) = (390, 844);

/// The selector of the element(s) with `data-test="name"`.
fn t(name: &str) -> String {
    format!("[data-test=\"{name}\"]")
}

struct Setup {
    failing: Receiver,
    healthy: Receiver,
    home: Home,
    serve: Serve,
}

/// posthorn with a password, a subscription whose receiver fails (`flaky-crm`, dead
/// after three quick attempts) and one whose receiver answers 200 (`north-crm`); one
/// event delivered to both, and one rejected spool line.
fn start_posthorn() -> Setup {
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
    home.drop_json("first.json", &spool_event("evt-browser-1"));
    // Markup in what the platform sends must show as text, never run or render.
    home.append(
        "bad.ndjson",
        b"{\"id\":\"evt-no-type\",\"conversation_id\":\"c-1\",\"note\":\"<img src=x id=injected>\"}\n",
    );
    // The receiver's answer is recorded a moment after it arrives: wait for the store.
    wait_for("north-crm's delivery to be delivered", DELIVERED, || {
        home.count(
            "SELECT count(*) FROM deliveries WHERE subscription = 'north-crm' AND state = 'delivered'",
        ) == 1
    });
    wait_for("flaky-crm's delivery to go dead", DELIVERED, || {
        home.count(
            "SELECT count(*) FROM deliveries WHERE subscription = 'flaky-crm' AND state = 'dead'",
        ) == 1
    });
    wait_for("the rejected spool line", SHOWN, || {
        home.count("SELECT count(*) FROM rejections") >= 1
    });
    // A reload, so the audit log has a config.reload row besides the page's actions.
    signal(serve.pid(), "HUP");
    wait_for("the reload in the audit log", SHOWN, || {
        home.count("SELECT count(*) FROM audit_log WHERE action = 'config.reload'") >= 1
    });
    Setup {
        failing,
        healthy,
        home,
        serve,
    }
}

#[test]
fn the_admin_page_shows_real_data_and_its_actions_work_in_a_real_browser() {
    let setup = start_posthorn();
    let base = setup.home.inlet_url();
    let browser = Browser::start(setup.home.path(), LAPTOP.0, LAPTOP.1);

    log_in(&browser, &base);
    check_overview(&browser);
    pause_and_resume_all(&browser);
    check_subscriptions(&browser);
    send_a_test_event(&browser, &setup);
    pause_resume_retry_and_replay(&browser, &setup);
    let dead = check_filtered_deliveries(&browser);
    retry_the_dead_delivery(&browser, &setup, &dead);
    check_rejections(&browser);
    check_audit(&browser);
    check_phone_layout(&browser, &base, &dead);
    check_console(&browser, true);
    log_out(&browser, &base);
    check_console(&browser, false);
    drop(setup.serve);
}

fn log_in(browser: &Browser, base: &str) {
    // `/` leads to the page, which finds no session and asks for the password.
    browser.goto(&format!("{base}/"));
    let password = browser.wait_for(&t("login-password"), SHOWN);
    assert!(
        browser.current_url().contains("/admin/#/login"),
        "not on the login page: {}",
        browser.current_url()
    );
    let nav = browser.execute(
        "return getComputedStyle(document.querySelector('.nav')).display",
        vec![],
    );
    assert_eq!(nav, "none", "the navigation shows before logging in");

    browser.type_into(&password, "not the password");
    browser.click(&browser.wait_for(&t("login-submit"), SHOWN));
    browser.wait_for_text(&t("login-error"), "wrong password", SHOWN);

    browser.type_into(&password, PASSWORD);
    browser.click(&browser.wait_for(&t("login-submit"), SHOWN));
    browser.wait_for(&t("view-overview"), SHOWN);
}

fn value_of(browser: &Browser, card: &str) -> String {
    let card = browser.wait_for(&t(card), SHOWN);
    let values = browser.find_in(&card, &t("value"));
    let value = values
        .first()
        .unwrap_or_else(|| panic!("the card has no value"));
    browser.text(value)
}

fn check_overview(browser: &Browser) {
    assert_eq!(value_of(browser, "stat-events"), "1", "events in");
    assert_eq!(value_of(browser, "stat-delivered"), "1", "succeeded");
    assert_eq!(value_of(browser, "stat-dead"), "1", "dead");
    assert_eq!(value_of(browser, "stat-failing"), "0", "failing");
    assert_eq!(
        value_of(browser, "stat-subscriptions"),
        "2",
        "subscriptions"
    );
    let failures = browser.texts(&t("failure-row"));
    assert_eq!(
        failures.len(),
        3,
        "three failed attempts of flaky-crm: {failures:?}"
    );
    assert!(
        failures.iter().all(|row| row.contains("flaky-crm")
            && row.contains("evt-browser-1")
            && row.contains("HTTP 500")),
        "{failures:?}"
    );
}

/// The overview's global switch: pause all says delivery is off, resume all undoes it.
fn pause_and_resume_all(browser: &Browser) {
    browser.wait_for(&t("delivery-on"), SHOWN);
    browser.click(&browser.wait_for(&t("toggle-delivery"), SHOWN));
    browser.wait_for_text(&t("delivery-off"), "paused by an operator", SHOWN);
    browser.wait_for_text(&t("toggle-delivery"), "Resume all", SHOWN);
    browser.click(&browser.wait_for(&t("toggle-delivery"), SHOWN));
    browser.wait_for_text(&t("flash"), "Delivery is on again", SHOWN);
    browser.wait_for(&t("delivery-on"), SHOWN);
}

fn check_subscriptions(browser: &Browser) {
    browser.click(&browser.wait_for(&t("nav-subscriptions"), SHOWN));
    browser.wait_for(&t("subscription-row"), SHOWN);
    let rows = browser.texts(&t("subscription-row"));
    assert_eq!(rows.len(), 2, "{rows:?}");
    let flaky = rows
        .iter()
        .find(|r| r.contains("flaky-crm"))
        .expect("a flaky-crm row");
    let north = rows
        .iter()
        .find(|r| r.contains("north-crm"))
        .expect("a north-crm row");
    assert!(
        flaky.contains("0 %") && flaky.contains("HTTP 500") && flaky.contains("c-1"),
        "{flaky}"
    );
    assert!(
        north.contains("100 %") && north.contains("HTTP 200") && north.contains("enabled"),
        "{north}"
    );

    let link = browser
        .find_all("[data-test=\"subscription-row\"][data-name=\"north-crm\"] a")
        .into_iter()
        .next()
        .expect("a link to north-crm");
    browser.click(&link);
    browser.wait_for_text(&t("subscription-name"), "north-crm", SHOWN);
    assert!(browser.current_url().ends_with("#/subscriptions/north-crm"));
    let toml = browser.text(&browser.wait_for(&t("toml"), SHOWN));
    assert!(toml.contains("name = \"north-crm\""), "{toml}");
    assert!(
        !toml.contains(common::SECRET),
        "the page shows the signing secret: {toml}"
    );
    for snippet in ["snippet-python", "snippet-node", "snippet-go"] {
        let code = browser.text(&browser.wait_for(&t(snippet), SHOWN));
        assert!(
            code.trim().len() > 40,
            "{snippet} is (nearly) empty: {code:?}"
        );
        browser.wait_for(&t(&format!("{snippet}-copy")), SHOWN);
    }
    // Copy works, through the clipboard or by selecting the text.
    browser.click(&browser.wait_for(&t("toml-copy"), SHOWN));
    let said = browser.wait_until("the copy button to answer", SHOWN, || {
        let status = browser.texts(&t("toml-copy-status")).join("");
        (!status.is_empty()).then_some(status)
    });
    assert!(said == "Copied" || said.starts_with("Selected"), "{said}");
    let page = browser.texts("main").join("\n");
    assert!(
        !page.contains(common::SECRET),
        "the page shows the signing secret"
    );
}

/// Clicks `button`, then OK in the confirmation dialog.
fn confirm(browser: &Browser, button: &Element) {
    browser.click(button);
    let ok = browser.wait_until("the confirmation dialog", SHOWN, || {
        let open = browser.execute("return document.getElementById('confirm').open", vec![]);
        (open == true).then(|| browser.wait_for(&t("confirm-ok"), SHOWN))
    });
    browser.click(&ok);
    browser.wait_until("the dialog to close", SHOWN, || {
        (browser.execute("return document.getElementById('confirm').open", vec![]) == false)
            .then_some(())
    });
}

fn send_a_test_event(browser: &Browser, setup: &Setup) {
    // Cancelling the dialog sends nothing.
    browser.click(&browser.wait_for(&t("send-test"), SHOWN));
    browser.click(&browser.wait_for(&t("confirm-cancel"), SHOWN));
    assert!(
        browser.find_all(&t("test-waiting")).is_empty(),
        "a cancelled test was sent"
    );

    confirm(browser, &browser.wait_for(&t("send-test"), SHOWN));
    let result = browser.wait_for(&format!("{}[data-outcome]", t("test-result")), DELIVERED);
    assert_eq!(
        browser.attribute(&result, "data-outcome").as_deref(),
        Some("delivered"),
        "{}",
        browser.text(&result)
    );
    assert!(
        browser.text(&result).contains("HTTP 200"),
        "{}",
        browser.text(&result)
    );
    wait_for("the test event at north-crm's receiver", SHOWN, || {
        setup
            .healthy
            .requests()
            .iter()
            .any(|r| r.json()["type"] == "posthorn.test")
    });
    assert!(
        setup
            .failing
            .requests()
            .iter()
            .all(|r| r.json()["type"] != "posthorn.test"),
        "the test event went to flaky-crm too"
    );
}

fn pause_resume_retry_and_replay(browser: &Browser, setup: &Setup) {
    // Pausing shows at once and holds the test button; resuming undoes both.
    browser.click(&browser.wait_for(&t("toggle-pause"), SHOWN));
    browser.wait_for_text(&t("flash"), "paused", SHOWN);
    browser.wait_for_text(
        &format!("{} {}", t("subscription-name"), t("paused")),
        "paused",
        SHOWN,
    );
    let send = browser.wait_for(&t("send-test"), SHOWN);
    assert_eq!(
        browser.property(&send, "disabled"),
        true,
        "a paused subscription takes a test"
    );
    browser.wait_for_text(&t("toggle-pause"), "Resume", SHOWN);
    browser.click(&browser.wait_for(&t("toggle-pause"), SHOWN));
    browser.wait_for_text(&t("flash"), "running again", SHOWN);
    browser.wait_for_text(&t("toggle-pause"), "Pause", SHOWN);
    assert!(
        browser.find_all(&t("paused")).is_empty(),
        "still marked paused"
    );

    // north-crm has nothing failed to retry.
    confirm(browser, &browser.wait_for(&t("retry-failed"), SHOWN));
    browser.wait_for_text(&t("retry-failed-result"), "0 deliveries are due now", SHOWN);

    // Replaying the first event sends it to north-crm again.
    let before = setup.healthy.count_of("evt-browser-1");
    browser.type_into(
        &browser.wait_for(&t("replay-event-id"), SHOWN),
        "evt-browser-1",
    );
    confirm(browser, &browser.wait_for(&t("replay"), SHOWN));
    browser.wait_for_text(&t("replay-result"), "delivery #", SHOWN);
    wait_for(
        "the replayed event at north-crm's receiver",
        DELIVERED,
        || setup.healthy.count_of("evt-browser-1") == before + 1,
    );
}

/// Filters the deliveries to the dead one, checks a reload keeps the filter, and returns
/// the dead delivery's row link.
fn check_filtered_deliveries(browser: &Browser) -> String {
    browser.click(&browser.wait_for(&t("nav-deliveries"), SHOWN));
    browser.wait_for(&t("delivery-row"), SHOWN);
    let all = browser.texts(&t("delivery-row"));
    assert_eq!(
        all.len(),
        3,
        "the event to both subscriptions and the test event (the replay sent north-crm's \
         delivery again): {all:?}"
    );

    browser.click(&browser.wait_for("[data-test=\"filter-state\"] option[value=\"dead\"]", SHOWN));
    browser.type_into(&browser.wait_for(&t("filter-conversation"), SHOWN), "c-1");
    browser.click(&browser.wait_for(&t("filter-apply"), SHOWN));
    browser.wait_until("the filter in the address", SHOWN, || {
        let url = browser.current_url();
        (url.contains("state=dead") && url.contains("conversation=c-1")).then_some(())
    });
    let only_dead = |browser: &Browser| {
        browser.wait_until("only the dead delivery listed", SHOWN, || {
            let rows = browser.texts(&t("delivery-row"));
            (rows.len() == 1 && rows[0].contains("flaky-crm") && rows[0].contains("dead"))
                .then_some(())
        });
    };
    only_dead(browser);

    browser.execute("location.reload()", vec![]);
    browser.wait_for(&t("filters"), SHOWN);
    only_dead(browser);
    let state = browser.wait_for(&t("filter-state"), SHOWN);
    assert_eq!(
        browser.property(&state, "value"),
        "dead",
        "the reload lost the state filter"
    );
    let conversation = browser.wait_for(&t("filter-conversation"), SHOWN);
    assert_eq!(browser.property(&conversation, "value"), "c-1");

    let link = browser.wait_for(
        &format!("{} {}", t("delivery-row"), t("delivery-link")),
        SHOWN,
    );
    let href = browser.attribute(&link, "href").expect("a delivery link");
    browser.click(&link);
    href
}

fn retry_the_dead_delivery(browser: &Browser, setup: &Setup, href: &str) {
    browser.wait_for(&t("delivery-title"), SHOWN);
    assert!(
        browser.current_url().ends_with(href),
        "{} is not {href}",
        browser.current_url()
    );
    let attempts = browser.texts(&t("attempt-row"));
    assert_eq!(attempts.len(), 3, "{attempts:?}");
    assert!(
        attempts.iter().all(|a| a.contains("HTTP 500")),
        "{attempts:?}"
    );
    browser.wait_for_text(&t("state"), "dead", SHOWN);
    browser.wait_for_text(&t("request-line"), "POST", SHOWN);
    browser.wait_for_text(&t("request-line"), &setup.failing.url, SHOWN);
    browser.wait_for_text(&t("request-headers"), "[computed at send time]", SHOWN);
    browser.wait_for_text(&t("event-body"), "evt-browser-1", SHOWN);
    browser.wait_for_text(&t("request-body"), "evt-browser-1", SHOWN);

    let before = setup.failing.count();
    setup.failing.set_fallback(Answer::status(200));
    confirm(browser, &browser.wait_for(&t("retry-delivery"), SHOWN));
    browser.wait_until("a fourth attempt, successful", DELIVERED, || {
        let rows = browser.texts(&t("attempt-row"));
        (rows.len() == 4 && rows[3].contains("HTTP 200")).then_some(())
    });
    browser.wait_for_text(
        &format!("{} {}", t("delivery-title"), t("state")),
        "delivered",
        SHOWN,
    );
    assert_eq!(
        setup.failing.count(),
        before + 1,
        "the retry reached the receiver once"
    );
}

fn check_rejections(browser: &Browser) {
    browser.click(&browser.wait_for(&t("nav-rejections"), SHOWN));
    let row = browser.wait_for(&t("rejection-row"), SHOWN);
    let text = browser.text(&row);
    assert!(
        text.contains("bad.ndjson") && text.contains("evt-no-type"),
        "{text}"
    );
    assert!(
        text.contains("<img src=x id=injected>"),
        "the markup is not shown as text: {text}"
    );
    let injected = browser.execute(
        "return document.getElementById('injected') !== null",
        vec![],
    );
    assert_eq!(
        injected, false,
        "markup from a rejected line became an element"
    );
}

fn check_audit(browser: &Browser) {
    browser.click(&browser.wait_for(&t("nav-audit"), SHOWN));
    browser.wait_for(&t("audit-row"), SHOWN);
    let rows = browser.texts(&t("audit-row"));
    let has = |what: &[&str]| rows.iter().any(|row| what.iter().all(|w| row.contains(w)));
    assert!(
        has(&["login", "refused", "127.0.0.1"]),
        "the wrong password: {rows:#?}"
    );
    assert!(has(&["login", "applied"]), "the login: {rows:#?}");
    for action in [
        "subscription.test",
        "subscription.pause",
        "subscription.resume",
        "subscription.retry_failed",
        "subscription.replay",
    ] {
        assert!(
            has(&[action, "north-crm", "applied"]),
            "{action}: {rows:#?}"
        );
    }
    assert!(has(&["delivery.retry", "applied"]), "the retry: {rows:#?}");
    for action in ["delivery.pause_all", "delivery.resume_all"] {
        assert!(has(&[action, "applied"]), "{action}: {rows:#?}");
    }
    assert!(has(&["config.reload", "applied"]), "the reload: {rows:#?}");
}

/// The page fits the window's width: nothing makes the body scroll sideways.
fn assert_no_horizontal_overflow(browser: &Browser, page: &str) {
    let sizes = browser.execute(
        "return [document.documentElement.scrollWidth, document.body.scrollWidth, window.innerWidth]",
        vec![],
    );
    let [document, body, window] = [0, 1, 2].map(|i| sizes[i].as_i64().unwrap_or(i64::MAX));
    assert!(
        document <= window && body <= window,
        "{page} is wider than the {window} px window: document {document} px, body {body} px"
    );
}

fn check_phone_layout(browser: &Browser, base: &str, delivery: &str) {
    let delivery = delivery.rsplit('#').next().unwrap_or_default();
    for (size, label) in [(LAPTOP, "laptop"), (PHONE, "phone")] {
        browser.set_window_size(size.0, size.1);
        browser.goto(&format!("{base}/admin/#/"));
        browser.wait_for(&t("view-overview"), SHOWN);
        let width = browser.execute("return window.innerWidth", vec![]);
        assert!(
            width.as_u64().is_some_and(|w| w <= u64::from(size.0)),
            "window width {width}"
        );
        assert_no_horizontal_overflow(browser, &format!("the overview at {label} size"));
        browser.save_screenshot(&format!("overview-{label}"));

        browser.goto(&format!("{base}/admin/#{delivery}"));
        browser.wait_for(&t("attempt-row"), SHOWN);
        assert_no_horizontal_overflow(browser, &format!("a delivery at {label} size"));
        browser.save_screenshot(&format!("delivery-{label}"));

        for page in ["#/subscriptions/north-crm", "#/deliveries", "#/audit"] {
            browser.goto(&format!("{base}/admin/{page}"));
            browser.wait_for(
                &t(&format!(
                    "view-{}",
                    page.split('/').nth(1).unwrap_or_default()
                )),
                SHOWN,
            );
            assert_no_horizontal_overflow(browser, &format!("{page} at {label} size"));
        }
    }
    browser.set_window_size(LAPTOP.0, LAPTOP.1);
}

fn log_out(browser: &Browser, base: &str) {
    browser.goto(&format!("{base}/admin/#/"));
    browser.click(&browser.wait_for(&t("logout"), SHOWN));
    browser.wait_for(&t("login-password"), SHOWN);
    // The session is over on the server too: the overview asks for the password again.
    browser.execute("location.reload()", vec![]);
    browser.wait_for(&t("login-password"), SHOWN);
    assert!(
        browser.current_url().contains("#/login"),
        "{}",
        browser.current_url()
    );
}

/// The browser console holds no CSP violation and no script error. The 401s a login
/// page meets (no session yet, a wrong password) are expected and not errors; with
/// `saw_401`, one must be there, which shows the log is really read.
fn check_console(browser: &Browser, saw_401: bool) {
    let log = browser.browser_log();
    if saw_401 {
        assert!(
            log.iter()
                .any(|(_, message)| message.contains("status of 401")),
            "the browser log does not show the wrong password's 401: {log:#?}"
        );
    }
    let problems: Vec<(String, String)> = log
        .into_iter()
        .filter(|(level, message)| {
            let csp = message.contains("Content Security Policy") || message.contains("Refused to");
            let expected_401 = message.contains("status of 401");
            csp || (level == "SEVERE" && !expected_401)
        })
        .collect();
    assert!(
        problems.is_empty(),
        "the browser console has problems: {problems:#?}"
    );
}
