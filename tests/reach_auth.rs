//! Receiver authentication end to end, against loopback receivers and a loopback OAuth2
//! token endpoint: bearer and basic headers arrive as configured; an OAuth2 token is
//! fetched once (RFC 6749 4.4 form, client authentication by Basic or in the body) and
//! reused across many deliveries, fetched again after `expires_in`, replaced and retried
//! once within the same attempt when the receiver answers 401; a failing token endpoint
//! is a failed attempt with a clear error. No secret shows in the log, the store or the
//! operator API.

mod common;

use std::collections::HashSet;
use std::process::Command;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::{Arc, Mutex};
use std::time::Duration;

use base64::Engine as _;
use common::admin::{admin_block, Api, API_TOKEN};
use common::{
    binary, spool_event, subscription, wait_for, wait_for_inlet, Home, ProgrammableReceiver, Reply,
    Serve,
};

const CLIENT_SECRET: &str = "cl1ent-s3cret&=+";
const BEARER: &str = "bearer-t0ken-for-the-crm";
const BASIC_PASSWORD: &str = "ba5ic-passw0rd";

fn delivered(home: &Home, name: &str) -> i64 {
    home.count(&format!(
        "SELECT COUNT(*) FROM deliveries WHERE subscription = '{name}' AND state = 'delivered'"
    ))
}

fn attempts(home: &Home, name: &str, event: &str) -> Vec<(Option<i64>, Option<String>)> {
    let statuses = home.query::<Option<i64>>(&format!(
        "SELECT a.status FROM attempts a JOIN deliveries d ON d.id = a.delivery_id \
         WHERE d.subscription = '{name}' AND d.event_id = '{event}' ORDER BY a.id"
    ));
    let errors = home.query::<Option<String>>(&format!(
        "SELECT a.error FROM attempts a JOIN deliveries d ON d.id = a.delivery_id \
         WHERE d.subscription = '{name}' AND d.event_id = '{event}' ORDER BY a.id"
    ));
    statuses.into_iter().zip(errors).collect()
}

fn all(name: &str, url: &str, auth: &str) -> String {
    format!(
        "{}auth = {auth}\n",
        subscription(name, url, "conversations = [\"*\"]", "[\"*\"]")
    )
}

/// A token endpoint: `/token` gives `long-N` for an hour, `/token-short` `short-N` for one
/// second, `/token-fail` refuses the client (quoting its secret back, as a careless
/// server might).
fn token_endpoint() -> ProgrammableReceiver {
    let long = Arc::new(AtomicUsize::new(0));
    let short = Arc::new(AtomicUsize::new(0));
    ProgrammableReceiver::start(move |_, request| {
        let json = |body: String| {
            Reply::status(200)
                .header("Content-Type", "application/json")
                .body(body)
        };
        match request.path.as_str() {
            "/token" => {
                let n = long.fetch_add(1, Ordering::SeqCst) + 1;
                json(format!(
                    r#"{{"access_token":"long-{n}","token_type":"Bearer","expires_in":3600}}"#
                ))
            }
            "/token-short" => {
                let n = short.fetch_add(1, Ordering::SeqCst) + 1;
                json(format!(
                    r#"{{"access_token":"short-{n}","token_type":"bearer","expires_in":1}}"#
                ))
            }
            _ => Reply::status(401)
                .header("Content-Type", "application/json")
                .body(format!(
                    r#"{{"error":"invalid_client","error_description":"client secret {CLIENT_SECRET} is wrong"}}"#
                )),
        }
    })
}

#[test]
fn receivers_get_bearer_basic_and_oauth2_tokens_that_are_reused_refreshed_and_retried() {
    let tokens = token_endpoint();
    let revoked: Arc<Mutex<HashSet<String>>> = Arc::default();
    let refused = Arc::clone(&revoked);
    let receiver = ProgrammableReceiver::start(move |_, request| {
        let authorization = request.header("authorization").unwrap_or_default();
        match authorization.strip_prefix("Bearer ") {
            Some(token) if refused.lock().unwrap().contains(token) => Reply::status(401),
            _ => Reply::status(204),
        }
    });
    let home = Home::new();
    std::fs::write(
        home.path().join("client-secret"),
        format!("{CLIENT_SECRET}\n"),
    )
    .unwrap();
    std::fs::write(home.path().join("basic-password"), BASIC_PASSWORD).unwrap();
    let token_url = |path: &str| format!("{}{path}", tokens.url);
    home.write_config(&format!(
        "{}{}{}{}{}{}",
        all(
            "oauth",
            &format!("{}/oauth", receiver.url),
            &format!(
                "{{ token_url = {:?}, client_id = \"posthorn\", client_secret_env = \"TEST_CLIENT_SECRET\", scope = \"hooks:write\" }}",
                token_url("/token")
            ),
        ),
        all(
            "short",
            &format!("{}/short", receiver.url),
            &format!(
                "{{ token_url = {:?}, client_id = \"posthorn\", client_secret_file = \"client-secret\", client_auth = \"post\", audience = \"https://crm.example.org\" }}",
                token_url("/token-short")
            ),
        ),
        all(
            "failing",
            &format!("{}/failing", receiver.url),
            &format!(
                "{{ token_url = {:?}, client_id = \"posthorn\", client_secret_env = \"TEST_CLIENT_SECRET\" }}",
                token_url("/token-fail")
            ),
        ),
        all(
            "bearer",
            &format!("{}/bearer", receiver.url),
            "{ bearer_env = \"TEST_BEARER\" }",
        ),
        all(
            "basic",
            &format!("{}/basic", receiver.url),
            "{ username = \"posthorn\", password_file = \"basic-password\" }",
        ),
        admin_block(),
    ));
    let mut command = Command::new(binary());
    command
        .args(["serve", "--config"])
        .arg(home.config_path())
        .env("POSTHORN_LOG", "posthorn=debug,info")
        .env("TEST_CLIENT_SECRET", CLIENT_SECRET)
        .env("TEST_BEARER", BEARER);
    let serve = Serve::start_with(&home, command);
    wait_for_inlet(&home);

    // Many deliveries, one token.
    for n in 1..=5 {
        home.drop_json(&format!("evt_{n}.json"), &spool_event(&format!("evt_{n}")));
    }
    wait_for("the first five deliveries", Duration::from_secs(30), || {
        ["oauth", "short", "bearer", "basic"]
            .iter()
            .all(|name| delivered(&home, name) == 5)
    });
    assert_eq!(
        tokens.at("/token").len(),
        1,
        "one token for five deliveries"
    );
    for request in receiver.at("/oauth") {
        assert_eq!(request.header("authorization"), Some("Bearer long-1"));
    }
    let token_request = &tokens.at("/token")[0];
    assert_eq!(
        token_request.body,
        "grant_type=client_credentials&scope=hooks%3Awrite"
    );
    assert_eq!(
        token_request.header("content-type"),
        Some("application/x-www-form-urlencoded")
    );
    let client_basic =
        base64::engine::general_purpose::STANDARD.encode("posthorn:cl1ent-s3cret%26%3D%2B");
    assert_eq!(
        token_request.header("authorization"),
        Some(format!("Basic {client_basic}").as_str())
    );
    assert_eq!(
        tokens.at("/token-short")[0].body,
        "grant_type=client_credentials&audience=https%3A%2F%2Fcrm.example.org\
         &client_id=posthorn&client_secret=cl1ent-s3cret%26%3D%2B"
    );
    let basic =
        base64::engine::general_purpose::STANDARD.encode(format!("posthorn:{BASIC_PASSWORD}"));
    for request in receiver.at("/basic") {
        assert_eq!(
            request.header("authorization"),
            Some(format!("Basic {basic}").as_str())
        );
    }
    for request in receiver.at("/bearer") {
        assert_eq!(
            request.header("authorization"),
            Some(format!("Bearer {BEARER}").as_str())
        );
    }

    // A failing token endpoint: the attempt fails with the endpoint's reason, secret cut.
    wait_for("a failed token fetch", Duration::from_secs(20), || {
        !attempts(&home, "failing", "evt_1").is_empty()
    });
    let (status, error) = attempts(&home, "failing", "evt_1").remove(0);
    assert_eq!(status, None);
    assert_eq!(
        error.as_deref(),
        Some(
            format!(
                "the OAuth2 token endpoint {}/token-fail answered 401 (invalid_client: client \
                 secret [redacted] is wrong)",
                tokens.url
            )
            .as_str()
        )
    );
    assert!(receiver.at("/failing").is_empty());

    // The receiver stops taking long-1: one attempt fetches long-2 and sends again.
    let short_fetches = tokens.at("/token-short").len();
    revoked.lock().unwrap().insert("long-1".into());
    // Past the short token's one-second life.
    std::thread::sleep(Duration::from_millis(1500));
    home.drop_json("evt_6.json", &spool_event("evt_6"));
    wait_for("the sixth deliveries", Duration::from_secs(30), || {
        delivered(&home, "oauth") == 6 && delivered(&home, "short") == 6
    });
    assert_eq!(
        attempts(&home, "oauth", "evt_6"),
        [(Some(204), None)],
        "one attempt, delivered"
    );
    let sixth: Vec<_> = receiver
        .at("/oauth")
        .into_iter()
        .filter(|r| r.body.contains("\"evt_6\""))
        .map(|r| r.header("authorization").unwrap_or_default().to_string())
        .collect();
    assert_eq!(sixth, ["Bearer long-1", "Bearer long-2"]);
    assert_eq!(tokens.at("/token").len(), 2);
    assert!(
        tokens.at("/token-short").len() > short_fetches,
        "the expired short token was fetched again"
    );

    // No secret shows: not in the log, the store, or the API.
    let api = Api::token(&home, API_TOKEN);
    let mut shown = serve.log();
    for path in [
        "/api/v1/subscriptions".to_string(),
        "/api/v1/subscriptions/oauth".to_string(),
        "/api/v1/subscriptions/failing".to_string(),
        "/api/v1/deliveries?subscription=failing".to_string(),
    ] {
        let response = api.get(&path);
        assert_eq!(response.status, 200, "{path}: {}", response.body);
        shown.push_str(&response.body);
    }
    for id in home.query::<i64>("SELECT id FROM deliveries") {
        shown.push_str(&api.get(&format!("/api/v1/deliveries/{id}")).body);
    }
    shown.push_str(&String::from_utf8_lossy(&home.store_bytes()));
    for secret in [
        CLIENT_SECRET,
        BEARER,
        BASIC_PASSWORD,
        "long-1",
        "long-2",
        &basic,
        &client_basic,
    ] {
        assert!(!shown.contains(secret), "{secret:?} shows");
    }
}
