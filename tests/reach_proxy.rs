//! `[delivery] proxy` end to end: deliveries go through a CONNECT proxy on 127.0.0.1 (it
//! sees the tunnel and the credentials), `no_proxy` hosts go direct, proxies named in the
//! environment (`HTTPS_PROXY` and the like) are not used, the proxy password never shows,
//! and the egress guard still judges the receiver's name before the tunnel is asked for.

mod common;
mod reach_common;

use std::process::Command;
use std::time::Duration;

use base64::Engine as _;
use common::{binary, spool_event, subscription, wait_for, Home, Receiver, Serve};
use reach_common::ConnectProxy;

const PASSWORD: &str = "pr0xy-pa55word";

fn delivered(home: &Home, name: &str) -> i64 {
    home.count(&format!(
        "SELECT COUNT(*) FROM deliveries WHERE subscription = '{name}' AND state = 'delivered'"
    ))
}

fn attempt_errors(home: &Home, name: &str) -> Vec<String> {
    home.query::<Option<String>>(&format!(
        "SELECT a.error FROM attempts a JOIN deliveries d ON d.id = a.delivery_id \
         WHERE d.subscription = '{name}' ORDER BY a.id"
    ))
    .into_iter()
    .map(Option::unwrap_or_default)
    .collect()
}

fn all(name: &str, url: &str) -> String {
    subscription(name, url, "conversations = [\"*\"]", "[\"*\"]")
}

#[test]
fn deliveries_go_through_the_configured_proxy_and_no_proxy_hosts_go_direct() {
    let proxy = ConnectProxy::start();
    // A proxy named only in the environment, which posthorn must not use.
    let env_proxy = ConnectProxy::start();
    let receiver = Receiver::start(204);
    let port = receiver.url.rsplit(':').next().unwrap().to_string();
    let home = Home::new();
    home.write_config(&format!(
        "[delivery]\nschedule = [\"200ms\", \"200ms\"]\ntimeout = \"5s\"\n\
         allow_networks = [\"127.0.0.1/32\"]\nproxy = \"http://hooks@127.0.0.1:{}\"\n\
         proxy_password_env = \"TEST_PROXY_PASSWORD\"\nno_proxy = [\"localhost\"]\n{}{}",
        proxy.port,
        all("via-proxy", &format!("{}/via", receiver.url)),
        all("direct", &format!("http://localhost:{port}/direct")),
    ));
    let mut command = Command::new(binary());
    command
        .args(["serve", "--config"])
        .arg(home.config_path())
        .env("POSTHORN_LOG", "posthorn=debug,info")
        .env("TEST_PROXY_PASSWORD", PASSWORD)
        .env("HTTPS_PROXY", env_proxy.url())
        .env("https_proxy", env_proxy.url())
        .env("HTTP_PROXY", env_proxy.url())
        .env("ALL_PROXY", env_proxy.url())
        .env_remove("NO_PROXY")
        .env_remove("no_proxy");
    let serve = Serve::start_with(&home, command);
    home.drop_json("evt_proxy.json", &spool_event("evt_proxy"));

    wait_for("both deliveries", Duration::from_secs(20), || {
        delivered(&home, "via-proxy") == 1 && delivered(&home, "direct") == 1
    });
    assert_eq!(receiver.at("/via").len(), 1);
    assert_eq!(receiver.at("/direct").len(), 1);
    let tunnels = proxy.tunnels();
    assert_eq!(
        tunnels.len(),
        1,
        "one tunnel, for via-proxy only: {tunnels:?}"
    );
    assert_eq!(tunnels[0].target, format!("127.0.0.1:{port}"));
    let credentials = base64::engine::general_purpose::STANDARD.encode(format!("hooks:{PASSWORD}"));
    assert_eq!(
        tunnels[0].proxy_authorization.as_deref(),
        Some(format!("Basic {credentials}").as_str())
    );
    assert!(
        env_proxy.tunnels().is_empty(),
        "the environment's proxy was used: {:?}",
        env_proxy.tunnels()
    );
    let log = serve.log();
    assert!(
        !log.contains(PASSWORD) && !log.contains(&credentials),
        "{log}"
    );
}

#[test]
fn through_a_proxy_the_receivers_name_is_still_judged_by_the_egress_guard() {
    let proxy = ConnectProxy::start();
    let home = Home::new();
    // The proxy's own address is allowed; 127.0.0.2 (loopback, not allowed) is not.
    home.write_config(&format!(
        "[delivery]\nschedule = [\"200ms\", \"200ms\"]\ntimeout = \"5s\"\n\
         allow_networks = [\"127.0.0.1/32\"]\nproxy = \"http://127.0.0.1:{}\"\n{}",
        proxy.port,
        all("private", "http://127.0.0.2:9/hook"),
    ));
    let _serve = Serve::start(&home);
    home.drop_json("evt_guard.json", &spool_event("evt_guard"));
    wait_for("a refused attempt", Duration::from_secs(20), || {
        !attempt_errors(&home, "private").is_empty()
    });
    let errors = attempt_errors(&home, "private");
    assert!(
        errors[0].starts_with("refused: 127.0.0.2 is a loopback address")
            && errors[0].contains(&format!(
                "(through the proxy http://127.0.0.1:{})",
                proxy.port
            )),
        "{errors:?}"
    );
    assert!(
        proxy.tunnels().is_empty(),
        "the proxy was asked: {:?}",
        proxy.tunnels()
    );
}

#[test]
fn a_proxy_whose_address_is_not_allowed_is_a_config_error() {
    let home = Home::new();
    home.write_config(&format!(
        "[delivery]\nallow_networks = []\nproxy = \"http://user:secret-in-url@10.0.0.5:3128\"\n\
         no_proxy = [\"crm.lan\", \"10.1.0.0/16\", \"bad host!\"]\n{}",
        all("s", "https://example.org/hook"),
    ));
    let (code, stdout, stderr) = common::run(&[
        "check-config",
        "--config",
        &home.config_path().display().to_string(),
    ]);
    let text = format!("{stdout}{stderr}");
    assert_ne!(code, 0, "{text}");
    assert!(
        text.contains(
            "delivery.proxy at http://10.0.0.5:3128: refused: 10.0.0.5 is in a private range"
        ),
        "{text}"
    );
    assert!(
        text.contains("delivery.no_proxy: \"bad host!\" is not a host"),
        "{text}"
    );
    assert!(!text.contains("secret-in-url"), "{text}");
}

#[test]
fn an_https_receiver_with_a_private_ca_is_reached_through_the_tunnel() {
    let proxy = ConnectProxy::start();
    let home = Home::new();
    let dir = home.path();
    let ca = reach_common::make_ca(dir, "ca");
    let (cert, key) = reach_common::make_leaf(dir, "ca", "receiver", "serverAuth");
    let receiver = reach_common::TlsReceiver::start(dir, &cert, &key, None);
    home.write_config(&format!(
        "[delivery]\nschedule = [\"200ms\", \"200ms\"]\ntimeout = \"5s\"\n\
         allow_networks = [\"127.0.0.1/32\"]\nproxy = \"{}\"\nca_file = {:?}\n{}",
        proxy.url(),
        ca.display().to_string(),
        all("tls-via-proxy", &receiver.url("/tunnelled")),
    ));
    let _serve = Serve::start(&home);
    home.drop_json("evt_tunnel.json", &spool_event("evt_tunnel"));
    wait_for(
        "the delivery through the tunnel",
        Duration::from_secs(20),
        || delivered(&home, "tls-via-proxy") == 1,
    );
    assert_eq!(receiver.at("/tunnelled").len(), 1);
    let targets: Vec<String> = proxy.tunnels().into_iter().map(|t| t.target).collect();
    assert_eq!(targets, [format!("127.0.0.1:{}", receiver.port)]);
}
