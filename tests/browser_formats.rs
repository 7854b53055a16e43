//! The subscription page's "Preview the body for a recent event" in a real browser
//! (headless Chromium over WebDriver, see tests/webdriver): a Slack subscription shows
//! the Slack message posthorn made of the latest event, with the producer's markup shown
//! as text; a named event and a template that fails for it show their own answers; and
//! the console holds no CSP violation or script error (preview.js is a file of its own).
//!
//! Needs Debian's `chromium` and `chromium-driver`, like tests/browser.rs.

mod common;
mod webdriver;

use std::time::Duration;

use common::{subscription, wait_for, Home, Receiver, Serve};
use webdriver::Browser;

const PASSWORD: &str = "a long operator password";
const SHOWN: Duration = Duration::from_secs(20);
const DELIVERED: Duration = Duration::from_secs(60);

fn t(name: &str) -> String {
    format!("[data-test=\"{name}\"]")
}

fn event(id: &str, title: &str) -> String {
    serde_json::json!({
        "id": id,
        "type": "conversation.summarized",
        "conversation_id": "c-204",
        "data": {"conversation": {"title": title, "summary": "Benches <img src=x id=injected> & more"}},
    })
    .to_string()
}

#[test]
fn the_subscription_page_previews_the_body_for_a_recent_event() {
    let receiver = Receiver::start(200);
    let home = Home::new();
    let scope = "conversations = [\"c-204\"]";
    home.write_config(&format!(
        "[admin]\npassword_hash = {:?}\n{}format = \"slack\"\n{}template = '{{\"t\": {{{{ data.conversation.title }}}}}}'\n",
        posthorn::password::hash(PASSWORD),
        subscription("team-slack", &format!("{}/slack", receiver.url), scope, "[\"*\"]"),
        subscription("titled", &format!("{}/titled", receiver.url), scope, "[\"*\"]"),
    ));
    let _serve = Serve::start(&home);
    home.drop_json("a.json", &event("evt-old", "Old hall"));
    home.drop_json(
        "b.json",
        r#"{"id":"evt-untitled","type":"conversation.summarized","conversation_id":"c-204","data":{}}"#,
    );
    home.drop_json("c.json", &event("evt-new", "North district"));
    wait_for("every delivery final", DELIVERED, || {
        home.count("SELECT count(*) FROM deliveries WHERE state IN ('delivered', 'dead')") == 6
    });

    let base = home.inlet_url();
    let browser = Browser::start(home.path(), 1280, 900);
    browser.goto(&format!("{base}/admin/#/subscriptions/team-slack"));
    let password = browser.wait_for(&t("login-password"), SHOWN);
    browser.type_into(&password, PASSWORD);
    browser.click(&browser.wait_for(&t("login-submit"), SHOWN));
    browser.wait_for_text(&t("subscription-name"), "team-slack", SHOWN);

    // The latest event, as Slack gets it.
    browser.click(&browser.wait_for(&t("render-button"), SHOWN));
    let body = browser.text(&browser.wait_for(&t("render-body"), SHOWN));
    assert!(
        body.contains("\"text\": \"Conversation *North district* was summarized\""),
        "{body}"
    );
    assert!(
        body.contains("Benches &lt;img src=x id=injected&gt; &amp; more"),
        "{body}"
    );
    let about = browser.text(&browser.wait_for(&t("render-about"), SHOWN));
    assert!(
        about.contains("evt-new") && about.contains("format slack"),
        "{about}"
    );
    assert!(
        browser.find_all("#injected").is_empty(),
        "producer markup was rendered as HTML"
    );

    // A named event.
    browser.type_into(&browser.wait_for(&t("render-event"), SHOWN), "evt-old");
    browser.click(&browser.wait_for(&t("render-button"), SHOWN));
    browser.wait_for_text(&t("render-body"), "Old hall", SHOWN);

    // A template that fails for an event says why instead of a body.
    browser.goto(&format!("{base}/admin/#/subscriptions/titled"));
    browser.wait_for_text(&t("subscription-name"), "titled", SHOWN);
    browser.type_into(&browser.wait_for(&t("render-event"), SHOWN), "evt-untitled");
    browser.click(&browser.wait_for(&t("render-button"), SHOWN));
    browser.wait_for_text(&t("render-error"), "the template failed", SHOWN);

    // An unknown event is the API's sentence.
    browser.type_into(&browser.wait_for(&t("render-event"), SHOWN), "nope");
    browser.click(&browser.wait_for(&t("render-button"), SHOWN));
    browser.wait_for_text(&t("error"), "there is no event", SHOWN);

    let problems: Vec<(String, String)> = browser
        .browser_log()
        .into_iter()
        .filter(|(level, message)| {
            let csp = message.contains("Content Security Policy") || message.contains("Refused to");
            // The session check before login (401) and the unknown event (404) are
            // expected.
            let expected = message.contains("status of 401") || message.contains("status of 404");
            csp || (level == "SEVERE" && !expected)
        })
        .collect();
    assert!(
        problems.is_empty(),
        "the browser console has problems: {problems:#?}"
    );
}
