//! What a client who has proven nothing can make posthorn do, against the real binary:
//! floods of badly signed webhooks and wrong tokens leave a bounded trace, wrong passwords
//! sent at once are counted before argon2 runs and never run more than two at a time,
//! tokens are throttled, the bearer scheme is read in any case, a foreign `Host` is
//! refused on every route, and `X-Forwarded-For` counts only from trusted proxies.

mod common;

use std::time::Duration;

use common::admin::{self, Api, API_TOKEN, PASSWORD};
use common::{http_get, http_post, Home, Response};

const SOURCE_SECRET: &str = "source-secret-0123456789";
const INLET_TOKEN: &str = "inlet-token-0123456789";

/// A generic source that checks a hex HMAC, and the inlet token.
fn sources() -> String {
    format!(
        "[inlet]\ntoken = {INLET_TOKEN:?}\n\
         [[inlet.source]]\nname = \"hooks\"\nprofile = \"generic\"\ntype_value = \"hook.received\"\n\
         verify = \"hex\"\nsecret = {SOURCE_SECRET:?}\n"
    )
}

/// The value of an unlabelled metric, or of the first line starting with `series`.
fn metric(home: &Home, series: &str) -> u64 {
    let text = http_get(&format!("{}/metrics", home.inlet_url()))
        .expect(200)
        .body;
    text.lines()
        .find(|line| line.starts_with(series))
        .and_then(|line| line.rsplit(' ').next())
        .and_then(|n| n.parse().ok())
        .unwrap_or_else(|| panic!("no {series} in /metrics:\n{text}"))
}

/// The store's size in pages: SQLite's page count, or the bytes of every table and
/// index on PostgreSQL.
fn page_count(home: &Home) -> i64 {
    if home.pg.is_none() {
        return home.count("PRAGMA page_count");
    }
    home.count(
        "SELECT CAST(COALESCE(SUM(pg_relation_size(c.oid)), 0) AS BIGINT) FROM pg_class c
         WHERE c.relnamespace = CAST(current_schema() AS regnamespace)
           AND c.relkind IN ('r', 'i', 't')",
    )
}

#[test]
fn a_flood_of_badly_signed_webhooks_leaves_one_row_and_the_store_does_not_grow() {
    let home = Home::new();
    let _serve = admin::start(&home, &sources());
    let url = format!("{}/v1/sources/hooks", home.inlet_url());
    let forged = |n: usize| {
        http_post(
            &url,
            &[
                ("Content-Type", "application/json"),
                ("X-Webhook-Signature", "00ff"),
            ],
            format!("{{\"n\": {n}, \"filler\": \"{}\"}}", "x".repeat(500)).as_bytes(),
            false,
        )
        .expect(401)
    };
    for n in 0..20 {
        forged(n);
    }
    let rows_after_20 = home.count("SELECT count(*) FROM rejections");
    let pages_after_20 = page_count(&home);
    for n in 20..600 {
        forged(n);
    }
    assert_eq!(
        home.count("SELECT count(*) FROM rejections WHERE source = 'source:hooks'"),
        1,
        "one row for the first refusal of the minute, not one per request"
    );
    assert_eq!(home.count("SELECT count(*) FROM rejections"), rows_after_20);
    assert_eq!(
        page_count(&home),
        pages_after_20,
        "580 more refusals did not grow the store"
    );
    assert_eq!(
        metric(
            &home,
            "posthorn_refused_requests_total{route=\"source:hooks\",reason=\"unverified\"}"
        ),
        600
    );
    // A rightly signed one still goes in.
    let body = br#"{"id": "evt-1"}"#;
    let signature = common::hex_hmac(SOURCE_SECRET.as_bytes(), body);
    http_post(
        &url,
        &[
            ("Content-Type", "application/json"),
            ("X-Webhook-Signature", &signature),
        ],
        body,
        false,
    )
    .expect(202);
}

#[test]
fn wrong_inlet_tokens_are_counted_throttled_per_address_and_never_stored() {
    let home = Home::new();
    let _serve = admin::start(&home, &sources());
    let url = format!("{}/v1/events", home.inlet_url());
    let event = br#"{"id": "e-1", "type": "x"}"#;
    let post = |authorization: &str| {
        http_post(
            &url,
            &[
                ("Content-Type", "application/json"),
                ("Authorization", authorization),
            ],
            event,
            false,
        )
    };
    // The scheme name in any case.
    post(&format!("bearer {INLET_TOKEN}")).expect(202);
    post(&format!("BEARER {INLET_TOKEN}")).expect(202);
    for _ in 0..10 {
        post("Bearer wrong-token-0123456789").expect(401);
    }
    let throttled = post("Bearer wrong-token-0123456789").expect(429);
    assert!(throttled.header("retry-after").is_some(), "{throttled:?}");
    // While it waits, this address is not even checked.
    post(&format!("Bearer {INLET_TOKEN}")).expect(429);
    assert_eq!(home.count("SELECT count(*) FROM rejections"), 0);
    assert_eq!(
        metric(
            &home,
            "posthorn_refused_requests_total{route=\"inlet\",reason=\"wrong token\"}"
        ),
        10
    );
}

#[test]
fn the_api_takes_the_bearer_scheme_in_any_case() {
    let home = Home::new();
    let _serve = admin::start(&home, "");
    for scheme in ["Bearer", "bearer", "BEARER"] {
        let response = http_get_with(
            &home,
            "/api/v1/session",
            &[("Authorization", &format!("{scheme} {API_TOKEN}"))],
        );
        assert_eq!(response.status, 200, "{scheme}: {response:?}");
    }
}

fn http_get_with(home: &Home, path: &str, headers: &[(&str, &str)]) -> Response {
    common::http_request_with("GET", &format!("{}{path}", home.inlet_url()), headers, b"")
}

fn login_with(home: &Home, password: &str, headers: &[(&str, &str)]) -> Response {
    let mut all = vec![("Content-Type", "application/json")];
    all.extend_from_slice(headers);
    http_post(
        &format!("{}/api/v1/login", home.inlet_url()),
        &all,
        serde_json::json!({ "password": password })
            .to_string()
            .as_bytes(),
        false,
    )
}

#[test]
fn a_foreign_host_is_refused_on_every_route() {
    let home = Home::new();
    let _serve = admin::start(&home, &sources());
    let rebound = [("Host", "rebound.attacker.example")];
    for (method, path) in [
        ("GET", "/healthz"),
        ("GET", "/metrics"),
        ("GET", "/admin/"),
        ("GET", "/api/v1/openapi.json"),
        ("GET", "/api/v1/overview"),
        ("POST", "/api/v1/login"),
        ("POST", "/v1/events"),
        ("POST", "/v1/sources/hooks"),
        ("GET", "/no/such/route"),
    ] {
        let url = format!("{}{path}", home.inlet_url());
        let response = common::http_request_with(method, &url, &rebound, b"{}");
        assert_eq!(response.status, 421, "{method} {path}: {response:?}");
    }
    for host in [
        format!("127.0.0.1:{}", home.port),
        format!("localhost:{}", home.port),
        "[::1]".to_string(),
    ] {
        let url = format!("{}/healthz", home.inlet_url());
        let response = common::http_request_with("GET", &url, &[("Host", &host)], b"");
        assert_eq!(response.status, 200, "{host}: {response:?}");
    }
}

#[test]
fn allowed_hosts_from_the_config_replace_the_defaults() {
    let home = Home::new();
    let _serve = admin::start(
        &home,
        &format!(
            "[http]\nlisten = \"127.0.0.1:{}\"\nallowed_hosts = [\"posthorn.internal\"]\n",
            home.port
        ),
    );
    let healthz = format!("{}/healthz", home.inlet_url());
    let named =
        common::http_request_with("GET", &healthz, &[("Host", "posthorn.internal:80")], b"");
    assert_eq!(named.status, 200, "{named:?}");
    let local = common::http_request_with("GET", &healthz, &[("Host", "localhost")], b"");
    assert_eq!(local.status, 421, "{local:?}");
}

#[test]
fn behind_a_trusted_proxy_one_clients_wrong_passwords_do_not_lock_out_another() {
    let home = Home::new();
    let _serve = admin::start(
        &home,
        &format!(
            "[http]\nlisten = \"127.0.0.1:{}\"\ntrusted_proxies = [\"127.0.0.1\"]\n",
            home.port
        ),
    );
    let mallory = [("X-Forwarded-For", "192.0.2.66")];
    for _ in 0..5 {
        assert_eq!(login_with(&home, "guess", &mallory).status, 401);
    }
    assert_eq!(login_with(&home, PASSWORD, &mallory).status, 429);
    // Another client behind the same proxy logs in.
    let alice = [("X-Forwarded-For", "198.51.100.7")];
    assert_eq!(login_with(&home, PASSWORD, &alice).status, 200);
    // A client cannot dodge the count by writing its own X-Forwarded-For first: the
    // proxy appends the address it saw, and that one counts.
    let dodge = [("X-Forwarded-For", "203.0.113.1, 192.0.2.66")];
    assert_eq!(login_with(&home, PASSWORD, &dodge).status, 429);
    // The audit names the client, not the proxy.
    let audit: Vec<String> =
        home.query("SELECT origin FROM audit_log WHERE action = 'login' ORDER BY id");
    assert_eq!(
        audit.first().map(String::as_str),
        Some("192.0.2.66"),
        "{audit:?}"
    );
}

#[test]
fn x_forwarded_for_from_an_untrusted_peer_is_ignored() {
    let home = Home::new();
    let _serve = admin::start(&home, "");
    for n in 0..5 {
        let spoofed = format!("192.0.2.{n}");
        assert_eq!(
            login_with(&home, "guess", &[("X-Forwarded-For", &spoofed)]).status,
            401
        );
    }
    let response = login_with(&home, PASSWORD, &[("X-Forwarded-For", "192.0.2.200")]);
    assert_eq!(
        response.status, 429,
        "every guess counted against the peer: {response:?}"
    );
}

/// Highest resident memory of a process so far, in KiB.
fn peak_memory_kib(pid: i32) -> u64 {
    let status = std::fs::read_to_string(format!("/proc/{pid}/status")).unwrap();
    status
        .lines()
        .find_map(|l| l.strip_prefix("VmHWM:"))
        .and_then(|v| v.trim().trim_end_matches("kB").trim().parse().ok())
        .unwrap_or_else(|| panic!("no VmHWM in {status}"))
}

/// Sends `count` wrong passwords at once, each from the address `header(i)` names.
fn parallel_wrong_passwords(
    home: &Home,
    count: usize,
    header: impl Fn(usize) -> Option<String> + Sync,
) -> Vec<u16> {
    let barrier = std::sync::Barrier::new(count);
    std::thread::scope(|scope| {
        let handles: Vec<_> = (0..count)
            .map(|i| {
                let (barrier, header) = (&barrier, &header);
                scope.spawn(move || {
                    let forwarded = header(i);
                    let headers: Vec<(&str, &str)> = forwarded
                        .as_deref()
                        .map(|f| vec![("X-Forwarded-For", f)])
                        .unwrap_or_default();
                    barrier.wait();
                    login_with(home, &format!("wrong guess {i}"), &headers).status
                })
            })
            .collect();
        handles.into_iter().map(|h| h.join().unwrap()).collect()
    })
}

#[test]
fn thirty_parallel_wrong_passwords_verify_at_most_the_limit_and_the_right_one_works_after() {
    let home = Home::new();
    let serve = admin::start(&home, "");
    let statuses = parallel_wrong_passwords(&home, 30, |_| None);
    assert!(
        statuses.iter().all(|s| [401, 429, 503].contains(s)),
        "{statuses:?}"
    );
    let verified = metric(&home, "posthorn_login_verifications_total");
    assert!(
        (1..=5).contains(&verified),
        "30 at once from one address: at most the 5 a minute are verified, got {verified}"
    );
    assert_eq!(
        statuses.iter().filter(|s| **s == 401).count() as u64,
        verified,
        "{statuses:?}"
    );
    // One audit row for the wrong passwords of the minute, not one per guess.
    assert_eq!(
        home.count("SELECT count(*) FROM audit_log WHERE action = 'login' AND result = 'refused'"),
        1
    );
    // A peak of 30 argon2 runs would be 30 x 19 MiB.
    let peak = peak_memory_kib(serve.pid());
    eprintln!("peak memory after 30 parallel wrong passwords: {peak} KiB");
    assert!(peak < 200 * 1024, "peak memory {peak} KiB");
    // Use up the rest of the minute's five; then even the right password waits.
    let api = Api::anonymous(&home);
    let mut refused = 0;
    while refused < 10 && api.login_response("another guess").status == 401 {
        refused += 1;
    }
    assert_eq!(
        verified + refused,
        5,
        "five wrong passwords a minute in all, parallel or not"
    );
    assert_eq!(api.login_response(PASSWORD).status, 429);
    // After the window (one minute) the right password works from the same address.
    common::wait_for("the login window to pass", Duration::from_secs(90), || {
        std::thread::sleep(Duration::from_millis(500));
        api.login_response(PASSWORD).status == 200
    });
    // The minute's other four wrong passwords are summed up in one audit row.
    let refused_logins =
        "SELECT count(*) FROM audit_log WHERE action = 'login' AND result = 'refused'";
    common::wait_for(
        "the summary of the minute's wrong passwords",
        Duration::from_secs(30),
        || {
            std::thread::sleep(Duration::from_millis(200));
            home.count(&format!(
                "{refused_logins} AND detail LIKE '4 more requests refused (wrong password)%'"
            )) == 1
        },
    );
    assert_eq!(home.count(refused_logins), 2);
}

#[test]
fn parallel_wrong_passwords_from_many_clients_run_at_most_two_argon2_at_once() {
    let home = Home::new();
    let serve = admin::start(
        &home,
        &format!(
            "[http]\nlisten = \"127.0.0.1:{}\"\ntrusted_proxies = [\"127.0.0.1\"]\n",
            home.port
        ),
    );
    let statuses = parallel_wrong_passwords(&home, 30, |i| Some(format!("192.0.2.{}", i + 1)));
    assert!(
        statuses.iter().all(|s| [401, 503].contains(s)),
        "{statuses:?}"
    );
    let busy = statuses.iter().filter(|s| **s == 503).count();
    assert_eq!(
        metric(&home, "posthorn_login_verifications_total"),
        (30 - busy) as u64
    );
    let peak = peak_memory_kib(serve.pid());
    eprintln!("peak memory after 30 parallel wrong passwords from 30 clients: {peak} KiB");
    assert!(peak < 200 * 1024, "peak memory {peak} KiB");
    // Told to come back, a client gets in.
    assert_eq!(
        login_with(&home, PASSWORD, &[("X-Forwarded-For", "198.51.100.1")]).status,
        200
    );
}
