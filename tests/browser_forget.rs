//! The admin page's "Forget a conversation" page in a real browser (headless Chromium
//! over WebDriver, as tests/browser.rs): the button stays disabled until the id is typed
//! twice alike, Cancel in the confirmation changes nothing, OK erases and shows the
//! counts, and the audit log names the session. The same run checks that a subscription
//! with `signature = "ed25519"` shows its whpk_ public key and never the private key.
//!
//! Needs Debian's `chromium` and `chromium-driver`.

mod common;
mod webdriver;

use std::time::Duration;

use common::admin::{self, PASSWORD};
use common::{wait_for, Home, Receiver};
use webdriver::Browser;

const SHOWN: Duration = Duration::from_secs(20);
const MARKER: &str = "FORGET-IN-BROWSER-5K";

fn t(name: &str) -> String {
    format!("[data-test=\"{name}\"]")
}

fn gen_pair() -> (String, String) {
    let (code, stdout, stderr) = common::run(&["gen-secret", "--ed25519"]);
    assert_eq!(code, 0, "{stderr}");
    let keys: Vec<&str> = stdout.lines().filter(|l| !l.starts_with('#')).collect();
    (keys[0].to_string(), keys[1].to_string())
}

#[test]
fn the_forget_button_erases_a_conversation_only_once_typed_twice_and_confirmed() {
    let receiver = Receiver::start(200);
    let (private, public) = gen_pair();
    let home = Home::new();
    let serve = admin::start(
        &home,
        &format!(
            "[[subscription]]\nname = \"asym\"\nurl = \"{}/hook\"\nconversations = [\"*\"]\n\
             events = [\"*\"]\nsignature = \"ed25519\"\nsecret = \"{private}\"\n",
            receiver.url
        ),
    );
    home.drop_json(
        "e.json",
        &format!(
            r#"{{"id":"evt_b1","type":"conversation.ended","conversation_id":"c-browser","data":{{"t":"{MARKER}"}}}}"#
        ),
    );
    wait_for("the delivery", SHOWN, || {
        home.count("SELECT count(*) FROM deliveries WHERE state = 'delivered'") == 1
    });
    let kept = || home.count("SELECT count(*) FROM events WHERE id = 'evt_b1' AND body != ''");

    let base = home.inlet_url();
    let browser = Browser::start(home.path(), 1280, 900);
    browser.goto(&format!("{base}/"));
    let password = browser.wait_for(&t("login-password"), SHOWN);
    browser.type_into(&password, PASSWORD);
    browser.click(&browser.wait_for(&t("login-submit"), SHOWN));
    browser.wait_for(&t("view-overview"), SHOWN);

    // The public key, and only it, on the subscription's page.
    browser.goto(&format!("{base}/admin/#/subscriptions/asym"));
    browser.wait_for_text(&t("public-keys"), &public, SHOWN);
    let page = browser.text(&browser.wait_for(&t("view-subscriptions"), SHOWN));
    assert!(
        !page.contains(&private["whsk_".len()..]),
        "the private key shows"
    );

    browser.click(&browser.wait_for(&t("nav-forget"), SHOWN));
    browser.wait_for(&t("view-forget"), SHOWN);
    let button = browser.wait_for(&t("forget-button"), SHOWN);
    let disabled =
        |browser: &Browser| browser.property(&button, "disabled") == serde_json::json!(true);
    assert!(disabled(&browser), "enabled before anything is typed");
    browser.type_into(
        &browser.wait_for(&t("forget-conversation"), SHOWN),
        "c-browser",
    );
    browser.type_into(&browser.wait_for(&t("forget-again"), SHOWN), "c-browsr");
    assert!(disabled(&browser), "enabled with two different ids");
    browser.type_into(&browser.wait_for(&t("forget-again"), SHOWN), "c-browser");
    assert!(!disabled(&browser), "disabled with the id typed twice");

    // Cancel in the confirmation: nothing happens.
    browser.click(&button);
    browser.wait_for_text(&t("confirm-text"), "c-browser", SHOWN);
    browser.click(&browser.wait_for(&t("confirm-cancel"), SHOWN));
    assert!(browser.find_all(&t("forget-result")).is_empty());
    assert_eq!(kept(), 1, "cancelled, yet erased");

    browser.click(&button);
    browser.wait_for_text(&t("confirm-text"), "erased for good", SHOWN);
    browser.click(&browser.wait_for(&t("confirm-ok"), SHOWN));
    browser.wait_for_text(
        &t("forget-result"),
        "blanked 1 event body, 1 attempt snippet and 0 rejection snippets",
        SHOWN,
    );
    assert_eq!(kept(), 0, "the page said it forgot, yet the body is kept");

    // Audited as the session's action.
    let actor: Vec<String> = home
        .query("SELECT actor || ' ' || result FROM audit_log WHERE action = 'conversation.forget'");
    assert_eq!(actor, ["session applied"]);

    let problems: Vec<(String, String)> = browser
        .browser_log()
        .into_iter()
        .filter(|(level, message)| {
            // The first look for a session, before logging in, is a 401 by design.
            let expected_401 = message.contains("status of 401");
            message.contains("Content Security Policy")
                || message.contains("Refused to")
                || (level == "SEVERE" && !expected_401)
        })
        .collect();
    assert!(
        problems.is_empty(),
        "the browser console has problems: {problems:#?}"
    );
    assert!(
        !serve.log().contains(&private["whsk_".len()..]),
        "the log shows the private key"
    );
}
