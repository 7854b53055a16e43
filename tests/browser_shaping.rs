//! The delivery page in a real browser (headless Chromium over WebDriver, as
//! `tests/browser.rs`) for a subscription with `exclude`: the request body shown is the
//! shaped one, labelled so, beside the whole stored event; after a config change the page
//! says the earlier attempt sent a differently shaped body.
//!
//! Needs Debian's `chromium` and `chromium-driver`.

mod common;
mod webdriver;

use std::time::Duration;

use common::admin::{admin_block, PASSWORD};
use common::{signal, wait_for, Home, Receiver, Serve};
use webdriver::Browser;

const SHOWN: Duration = Duration::from_secs(20);
const LONG: Duration = Duration::from_secs(30);

fn t(name: &str) -> String {
    format!("[data-test=\"{name}\"]")
}

fn config(url: &str, exclude: &str) -> String {
    format!(
        "[[subscription]]\nname = \"crm\"\nurl = \"{url}/crm\"\nconversations = [\"*\"]\n\
         events = [\"*\"]\nsecret = {:?}\nexclude = [{exclude:?}]\n{}",
        common::SECRET,
        admin_block()
    )
}

#[test]
fn the_delivery_page_shows_the_shaped_body_and_a_config_change_since_an_attempt() {
    let receiver = Receiver::start(204);
    let home = Home::new();
    home.write_config(&config(&receiver.url, "/data/participants/*/email"));
    let serve = Serve::start(&home);
    common::wait_for_inlet(&home);
    home.drop_json(
        "r.json",
        r#"{"id":"evt_page","type":"report.generated","conversation_id":"c-1","data":{"summary":"s","participants":[{"name":"Ana","email":"ana@example.org"}],"transcript":[{"text":"hallo"}]}}"#,
    );
    receiver.wait_for_count(1, LONG);
    wait_for("the attempt to be recorded", LONG, || {
        home.count("SELECT count(*) FROM attempts") == 1
    });
    let ids: Vec<i64> = home.query("SELECT id FROM deliveries");
    let base = home.inlet_url();

    let browser = Browser::start(home.path(), 1280, 900);
    browser.goto(&format!("{base}/"));
    let password = browser.wait_for(&t("login-password"), SHOWN);
    browser.type_into(&password, PASSWORD);
    browser.click(&browser.wait_for(&t("login-submit"), SHOWN));
    browser.wait_for(&t("view-overview"), SHOWN);

    browser.goto(&format!("{base}/admin/#/deliveries/{}", ids[0]));
    browser.wait_for_text(&t("request-body-title"), "Body as sent", SHOWN);
    let sent = browser.text(&browser.wait_for_text(&t("request-body"), "Ana", SHOWN));
    assert!(!sent.contains("ana@example.org"), "{sent}");
    browser.wait_for_text(&t("event-body"), "ana@example.org", SHOWN);
    assert!(browser.find_all(&t("request-shaped-otherwise")).is_empty());

    // Now the transcript goes instead: attempt 1 sent something else, and the page says so.
    home.write_config(&config(&receiver.url, "/data/transcript"));
    let reloads = |log: &str| log.matches("configuration reloaded").count();
    let before = reloads(&serve.log());
    signal(serve.pid(), "HUP");
    wait_for("the reload", LONG, || reloads(&serve.log()) > before);
    browser.click(&browser.wait_for(&t("refresh"), SHOWN));
    browser.wait_for_text(&t("request-shaped-otherwise"), "Attempt 1", SHOWN);
    browser.wait_for_text(&t("request-body"), "ana@example.org", SHOWN);
}
