//! The overview's "Nodes" block in a real browser (headless Chromium over WebDriver, see
//! tests/webdriver): the node serving the page is listed with its version, config
//! fingerprint and heartbeat, a node gone silent is shown stale with the API's warning,
//! and the console holds no CSP violation or script error (nodes.js is a file of its own).
//!
//! Needs Debian's `chromium` and `chromium-driver`, like tests/browser.rs.

mod common;
mod webdriver;

use std::time::Duration;

use common::{Home, Serve};
use webdriver::Browser;

const PASSWORD: &str = "a long operator password";
const SHOWN: Duration = Duration::from_secs(20);

fn t(name: &str) -> String {
    format!("[data-test=\"{name}\"]")
}

#[test]
fn the_overview_lists_the_nodes_and_warns_about_a_silent_one() {
    if common::sqlite_only("a second node's row written into the SQLite file") {
        return;
    }
    let home = Home::new();
    home.write_config(&format!(
        "[admin]\npassword_hash = {:?}\n",
        posthorn::password::hash(PASSWORD)
    ));
    let _serve = Serve::start(&home);
    common::wait_for_inlet(&home);
    // Another node that stopped writing heartbeats a minute ago (a SQLite store drops
    // such rows at its next sweep, a minute away; the page is read before that).
    let conn = rusqlite::Connection::open(home.db()).unwrap();
    conn.busy_timeout(Duration::from_secs(5)).unwrap();
    let now = std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .unwrap()
        .as_millis() as i64;
    conn.execute(
        "INSERT INTO nodes (id, hostname, listen, version, config_fingerprint, in_flight,
                            workers, started_at, heartbeat_at)
         VALUES ('ghost@10.0.0.9:8425', 'ghost', '10.0.0.9:8425', '0.0.9',
                 '0123456789abcdef', 0, 4, ?1, ?1)",
        [now - 60_000],
    )
    .unwrap();

    let base = home.inlet_url();
    let browser = Browser::start(home.path(), 1280, 900);
    browser.goto(&format!("{base}/admin/#/"));
    let password = browser.wait_for(&t("login-password"), SHOWN);
    browser.type_into(&password, PASSWORD);
    browser.click(&browser.wait_for(&t("login-submit"), SHOWN));
    browser.wait_for(&t("nodes-table"), SHOWN);

    let rows = browser.texts(&t("node-row"));
    assert_eq!(rows.len(), 2, "{rows:#?}");
    let this = rows
        .iter()
        .find(|r| r.contains(&format!("@127.0.0.1:{}", home.port)))
        .unwrap_or_else(|| panic!("this node is not listed: {rows:#?}"));
    assert!(this.contains("this node") && this.contains("up"), "{this}");
    assert!(this.contains(env!("CARGO_PKG_VERSION")), "{this}");
    let ghost = rows.iter().find(|r| r.contains("ghost@")).unwrap();
    assert!(
        ghost.contains("stale") && ghost.contains("0123456789abcdef"),
        "{ghost}"
    );
    let warnings = browser.texts(&t("node-warning"));
    assert!(
        warnings
            .iter()
            .any(|w| w.contains("node ghost@10.0.0.9:8425 has not been heard from")),
        "{warnings:#?}"
    );

    let problems: Vec<(String, String)> = browser
        .browser_log()
        .into_iter()
        .filter(|(level, message)| {
            let csp = message.contains("Content Security Policy") || message.contains("Refused to");
            // The session check before login (401) is expected.
            csp || (level == "SEVERE" && !message.contains("status of 401"))
        })
        .collect();
    assert!(
        problems.is_empty(),
        "the browser console has problems: {problems:#?}"
    );
}
