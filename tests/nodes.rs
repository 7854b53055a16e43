//! Several nodes on one PostgreSQL database (issue 13), as an operator meets them: a login
//! made on one node works on another (cookie, CSRF token, the audit log), a logout there
//! ends it everywhere, wrong passwords count across nodes; every node lists every node
//! with its version, config fingerprint and heartbeat, warns when their configs differ,
//! and shows a SIGKILLed node stale. On SQLite the one node lists itself, and its
//! sessions and throttle live in the store too (they outlast a restart).
mod common;

use std::time::Duration;

use common::admin::{admin_block, Api, PASSWORD};
use common::{catch_all, hook, pg, wait_for, wait_for_inlet, Home, Serve};
use sha2::{Digest as _, Sha256};

/// Writes `home`'s config for the store at `url` (PostgreSQL), with `body` and the admin
/// block, listening on `home`'s own port with its own spool.
fn node_config(home: &Home, url: &str, body: &str) {
    let text = format!(
        "[storage]\nbackend = \"postgres\"\nurl = {url:?}\n\
         [spool]\ndir = {:?}\nrescan_interval = \"200ms\"\n\
         [http]\nlisten = \"127.0.0.1:{}\"\n{body}{}",
        home.spool().display().to_string(),
        home.port,
        admin_block()
    );
    std::fs::write(home.config_path(), text).expect("write config");
}

fn start_node(home: &Home) -> Serve {
    let serve = Serve::start(home);
    wait_for_inlet(home);
    serve
}

/// Two homes whose nodes share one fresh database, both started on `body`.
fn two_nodes(body: &str) -> (pg::FreshDatabase, Home, Serve, Home, Serve) {
    let db = pg::fresh_database();
    let a = Home::new();
    let b = Home::new();
    node_config(&a, db.url(), body);
    node_config(&b, db.url(), body);
    let serve_a = start_node(&a);
    let serve_b = start_node(&b);
    (db, a, serve_a, b, serve_b)
}

fn nodes(api: &Api) -> serde_json::Value {
    api.get("/api/v1/nodes").expect(200).json()
}

/// The listed node whose id ends with `@127.0.0.1:<port>` (the id is hostname@listen).
fn node_on<'a>(list: &'a serde_json::Value, home: &Home) -> Option<&'a serde_json::Value> {
    let suffix = format!("@127.0.0.1:{}", home.port);
    list["items"]
        .as_array()?
        .iter()
        .find(|n| n["id"].as_str().is_some_and(|id| id.ends_with(&suffix)))
}

/// `posthorn status ARGS --config <home's config>`: exit code and stdout.
fn status(home: &Home, args: &[&str]) -> (i32, String) {
    let config = home.config_path().display().to_string();
    let mut all = vec!["status"];
    all.extend(args);
    all.extend(["--config", &config]);
    let (code, stdout, stderr) = common::run(&all);
    assert_eq!(code, 0, "posthorn status failed: {stderr}");
    (code, stdout)
}

#[test]
fn a_login_on_one_node_works_on_another_and_a_logout_there_ends_it_on_both() {
    let body = hook("crm", "http://127.0.0.1:9/hook");
    let (_db, a, _serve_a, b, _serve_b) = two_nodes(&body);
    let on_a = Api::login(&a, PASSWORD);
    let on_b = on_a.on(&b);

    on_b.get("/api/v1/delivery").expect(200);
    let session = on_b.get("/api/v1/session").expect(200).json();
    assert_eq!(
        session["csrf_token"].as_str(),
        on_a.csrf(),
        "node B gives the CSRF token node A gave"
    );
    on_b.with_csrf(Some("not-the-token"))
        .post("/api/v1/subscriptions/crm/pause", None)
        .expect(403);
    on_b.post("/api/v1/subscriptions/crm/pause", None)
        .expect(200);
    // The action done on B is in the audit log A reads.
    let audit = on_a.get("/api/v1/audit").expect(200).json();
    assert!(
        audit["items"]
            .as_array()
            .unwrap()
            .iter()
            .any(|row| row["action"] == "subscription.pause" && row["actor"] == "session"),
        "{audit:#}"
    );

    on_b.post("/api/v1/logout", None).expect(204);
    on_a.get("/api/v1/delivery").expect(401);
    on_b.get("/api/v1/delivery").expect(401);
}

#[test]
fn wrong_passwords_count_against_an_address_whichever_node_they_reach() {
    let (_db, a, _serve_a, b, _serve_b) = two_nodes("");
    for home in [&a, &a, &a, &b, &b] {
        Api::anonymous(home)
            .login_response("wrong password")
            .expect(401);
    }
    // Five wrong in the minute, across both nodes: the sixth is refused on either.
    for home in [&a, &b] {
        let refused = Api::anonymous(home).login_response(PASSWORD).expect(429);
        assert!(refused.header("retry-after").is_some(), "{refused:?}");
    }
}

#[test]
fn every_node_lists_both_and_warns_once_their_configs_differ() {
    let body = hook("crm", "http://127.0.0.1:9/hook");
    let (db, a, _serve_a, b, serve_b) = two_nodes(&body);
    let on_a = Api::token(&a, common::admin::API_TOKEN);
    let on_b = on_a.on(&b);
    wait_for("both nodes to list both", Duration::from_secs(30), || {
        [&on_a, &on_b].iter().all(|api| {
            let list = nodes(api);
            node_on(&list, &a).is_some() && node_on(&list, &b).is_some()
        })
    });
    let list = nodes(&on_b);
    assert!(list["this_node"]
        .as_str()
        .unwrap()
        .ends_with(&format!(":{}", b.port)));
    let (node_a, node_b) = (node_on(&list, &a).unwrap(), node_on(&list, &b).unwrap());
    for node in [node_a, node_b] {
        assert_eq!(node["version"], env!("CARGO_PKG_VERSION"), "{node:#}");
        assert_eq!(node["state"], "up", "{node:#}");
        assert!(node["heartbeat_at"].as_i64().unwrap() > 0, "{node:#}");
        assert_eq!(node["config_fingerprint"].as_str().unwrap().len(), 16);
    }
    assert_eq!(
        node_a["config_fingerprint"], node_b["config_fingerprint"],
        "the same config on both, though each listens on its own port"
    );
    assert_eq!(list["warnings"], serde_json::json!([]), "{list:#}");

    // B reloads a config with another subscription: its fingerprint changes.
    let before = node_b["config_fingerprint"].clone();
    node_config(
        &b,
        db.url(),
        &format!("{body}{}", catch_all("http://127.0.0.1:9/other")),
    );
    common::signal(serve_b.pid(), "HUP");
    wait_for("B's new fingerprint on A", Duration::from_secs(30), || {
        let list = nodes(&on_a);
        node_on(&list, &b).is_some_and(|n| n["config_fingerprint"] != before)
    });
    let list = nodes(&on_a);
    let warnings = list["warnings"].to_string();
    assert!(warnings.contains("nodes run different configs"), "{list:#}");
}

#[test]
fn a_sigkilled_node_is_shown_stale_and_a_stopped_one_stopped() {
    let (_db, a, _serve_a, b, serve_b) = two_nodes("");
    let on_a = Api::token(&a, common::admin::API_TOKEN);
    wait_for("A to list B up", Duration::from_secs(30), || {
        node_on(&nodes(&on_a), &b).is_some_and(|n| n["state"] == "up")
    });
    serve_b.kill();
    wait_for("A to show B stale", Duration::from_secs(60), || {
        node_on(&nodes(&on_a), &b).is_some_and(|n| n["state"] == "stale")
    });
    let list = nodes(&on_a);
    let id = node_on(&list, &b).unwrap()["id"]
        .as_str()
        .unwrap()
        .to_string();
    assert!(
        list["warnings"].as_array().unwrap().iter().any(|w| w
            .as_str()
            .unwrap()
            .contains(&format!("node {id} has not been heard from"))),
        "{list:#}"
    );
    // Restarted, it takes its row back (same id, no second row); stopped cleanly, it
    // is shown stopped.
    let serve_b = start_node(&b);
    wait_for("B up again", Duration::from_secs(30), || {
        node_on(&nodes(&on_a), &b).is_some_and(|n| n["state"] == "up")
    });
    assert_eq!(nodes(&on_a)["items"].as_array().unwrap().len(), 2);
    assert_eq!(serve_b.terminate(), Some(0));
    let list = nodes(&on_a);
    assert_eq!(node_on(&list, &b).unwrap()["state"], "stopped", "{list:#}");
}

#[test]
fn one_sqlite_node_lists_itself_and_keeps_sessions_and_the_throttle_in_its_store() {
    if common::on_postgres() {
        eprintln!("SQLite's own test");
        return;
    }
    let home = Home::new();
    let serve = common::admin::start(&home, "");
    let api = Api::login(&home, PASSWORD);
    let list = nodes(&api);
    assert_eq!(list["items"].as_array().unwrap().len(), 1, "{list:#}");
    assert_eq!(list["items"][0]["id"], list["this_node"]);
    assert_eq!(list["items"][0]["state"], "up");
    let (_, text) = status(&home, &[]);
    assert!(text.contains("(this one)"), "{text}");

    // Only the SHA-256 of the session id is kept.
    let cookie = api
        .cookie()
        .unwrap()
        .trim_start_matches("posthorn_session=")
        .to_string();
    let keys: Vec<String> = home.query("SELECT hex(key) FROM admin_sessions");
    let digest: String = Sha256::digest(cookie.as_bytes())
        .iter()
        .map(|b| format!("{b:02X}"))
        .collect();
    assert_eq!(keys, [digest]);

    for _ in 0..5 {
        Api::anonymous(&home)
            .login_response("wrong password")
            .expect(401);
    }
    assert_eq!(serve.terminate(), Some(0));
    let _serve = Serve::start(&home);
    wait_for_inlet(&home);
    // The session and the five failures outlast the restart: they are in the store.
    api.get("/api/v1/overview").expect(200);
    Api::anonymous(&home).login_response(PASSWORD).expect(429);
    let list = nodes(&api);
    assert_eq!(list["items"].as_array().unwrap().len(), 1, "{list:#}");
}

#[test]
fn posthorn_status_on_either_node_lists_both_and_warns_when_configs_differ() {
    let body = hook("crm", "http://127.0.0.1:9/hook");
    let (db, a, _serve_a, b, serve_b) = two_nodes(&body);
    let on_a = Api::token(&a, common::admin::API_TOKEN);
    wait_for("A to list both", Duration::from_secs(30), || {
        let list = nodes(&on_a);
        node_on(&list, &a).is_some() && node_on(&list, &b).is_some()
    });
    let (_, text) = status(&a, &[]);
    for home in [&a, &b] {
        assert!(
            text.contains(&format!("@127.0.0.1:{}", home.port)),
            "{text}"
        );
    }
    assert!(!text.contains("warning:"), "{text}");
    let (_, json) = status(&b, &["--json"]);
    let json: serde_json::Value = serde_json::from_str(&json).unwrap();
    assert_eq!(
        json["nodes"]["items"].as_array().unwrap().len(),
        2,
        "{json:#}"
    );

    // B restarts on another config: the status of either node warns.
    node_config(
        &b,
        db.url(),
        &format!("{body}{}", catch_all("http://127.0.0.1:9/other")),
    );
    assert_eq!(serve_b.terminate(), Some(0));
    let _serve_b = start_node(&b);
    wait_for("the configs to differ", Duration::from_secs(30), || {
        nodes(&on_a)["warnings"]
            .to_string()
            .contains("different configs")
    });
    for home in [&a, &b] {
        let (_, text) = status(home, &[]);
        assert!(
            text.contains("warning: nodes run different configs"),
            "{text}"
        );
    }
}
