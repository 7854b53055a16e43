//! TLS to receivers with a private CA and client certificates, end to end: the real
//! binary delivers to an HTTPS receiver on 127.0.0.1 whose certificate a test CA signed.
//! Without `ca_file` the attempt fails with a certificate error that says to set it; with
//! it the delivery arrives. A receiver that requires a client certificate refuses
//! posthorn without one and takes it with `client_cert_file` + `client_key_file`, from
//! `[delivery]` or the subscription's own (which wins). Bad files are config errors.

mod common;
mod reach_common;

use std::time::Duration;

use common::{run, spool_event, subscription, wait_for, Home, Serve};
use reach_common::{make_ca, make_leaf, TlsReceiver};

/// The errors recorded on the attempts of subscription `name`, oldest first.
fn attempt_errors(home: &Home, name: &str) -> Vec<String> {
    home.query::<Option<String>>(&format!(
        "SELECT a.error FROM attempts a JOIN deliveries d ON d.id = a.delivery_id \
         WHERE d.subscription = '{name}' ORDER BY a.id"
    ))
    .into_iter()
    .map(Option::unwrap_or_default)
    .collect()
}

fn delivered(home: &Home, name: &str) -> i64 {
    home.count(&format!(
        "SELECT COUNT(*) FROM deliveries WHERE subscription = '{name}' AND state = 'delivered'"
    ))
}

fn all(name: &str, url: &str, extra: &str) -> String {
    format!(
        "{}{extra}\n",
        subscription(name, url, "conversations = [\"*\"]", "[\"*\"]")
    )
}

#[test]
fn a_receiver_behind_a_private_ca_is_refused_without_ca_file_and_reached_with_it() {
    let home = Home::new();
    let dir = home.path();
    let ca = make_ca(dir, "ca");
    let (cert, key) = make_leaf(dir, "ca", "receiver", "serverAuth");
    let receiver = TlsReceiver::start(dir, &cert, &key, None);
    home.write_config(&format!(
        "{}{}{}",
        all("no-ca", &receiver.url("/no-ca"), ""),
        all(
            "with-ca",
            &receiver.url("/with-ca"),
            &format!("ca_file = {:?}", ca.display().to_string())
        ),
        all(
            "ca-only",
            &receiver.url("/ca-only"),
            &format!("ca_file = {:?}\nca_only = true", ca.display().to_string())
        ),
    ));
    let _serve = Serve::start(&home);
    home.drop_json("evt_tls.json", &spool_event("evt_tls"));

    wait_for(
        "the deliveries with ca_file",
        Duration::from_secs(20),
        || delivered(&home, "with-ca") == 1 && delivered(&home, "ca-only") == 1,
    );
    assert_eq!(
        receiver.at("/with-ca").len(),
        1,
        "{:?}",
        receiver.requests()
    );
    assert_eq!(
        receiver.at("/ca-only").len(),
        1,
        "{:?}",
        receiver.requests()
    );
    wait_for(
        "a failed attempt without ca_file",
        Duration::from_secs(20),
        || !attempt_errors(&home, "no-ca").is_empty(),
    );
    let errors = attempt_errors(&home, "no-ca");
    assert!(
        errors[0].contains("certificate was refused (UnknownIssuer)")
            && errors[0].contains("set ca_file"),
        "the attempt says why and what to set: {errors:?}"
    );
    assert!(receiver.at("/no-ca").is_empty());
    assert_eq!(delivered(&home, "no-ca"), 0);
}

#[test]
fn a_receiver_requiring_a_client_certificate_takes_the_configured_one() {
    let home = Home::new();
    let dir = home.path();
    let ca = make_ca(dir, "ca");
    make_ca(dir, "other-ca");
    let (server_cert, server_key) = make_leaf(dir, "ca", "receiver", "serverAuth");
    let (client_cert, client_key) = make_leaf(dir, "ca", "posthorn-client", "clientAuth");
    // Signed by a CA the receiver does not trust.
    let (stranger_cert, stranger_key) = make_leaf(dir, "other-ca", "stranger", "clientAuth");
    let receiver = TlsReceiver::start(dir, &server_cert, &server_key, Some(&ca));
    let path = |p: &std::path::Path| format!("{:?}", p.display().to_string());
    home.write_config(&format!(
        "[delivery]\nschedule = [\"200ms\", \"200ms\"]\ntimeout = \"5s\"\nca_file = {}\n\
         client_cert_file = {}\nclient_key_file = {}\n{}{}",
        path(&ca),
        path(&client_cert),
        path(&client_key),
        all("inherits", &receiver.url("/inherits"), ""),
        all(
            "own-stranger",
            &receiver.url("/own-stranger"),
            &format!(
                "client_cert_file = {}\nclient_key_file = {}",
                path(&stranger_cert),
                path(&stranger_key)
            )
        ),
    ));
    let _serve = Serve::start(&home);
    home.drop_json("evt_mtls.json", &spool_event("evt_mtls"));

    wait_for(
        "the delivery with [delivery]'s certificate",
        Duration::from_secs(20),
        || delivered(&home, "inherits") == 1,
    );
    let taken = receiver.at("/inherits");
    assert_eq!(taken.len(), 1);
    assert_eq!(taken[0]["client"], "posthorn-client", "{taken:?}");
    // The subscription's own certificate replaces [delivery]'s: the receiver refuses it.
    wait_for(
        "two failed attempts with the stranger's certificate",
        Duration::from_secs(20),
        || attempt_errors(&home, "own-stranger").len() >= 2,
    );
    assert!(
        receiver.at("/own-stranger").is_empty(),
        "{:?}",
        receiver.requests()
    );
    assert_eq!(delivered(&home, "own-stranger"), 0);

    // Without any client certificate the same receiver refuses posthorn.
    let bare = Home::new();
    bare.write_config(&all(
        "bare",
        &receiver.url("/bare"),
        &format!("ca_file = {}", path(&ca)),
    ));
    let _bare_serve = Serve::start(&bare);
    bare.drop_json("evt_bare.json", &spool_event("evt_bare"));
    wait_for(
        "a failed attempt without a client certificate",
        Duration::from_secs(20),
        || !attempt_errors(&bare, "bare").is_empty(),
    );
    assert!(receiver.at("/bare").is_empty());
}

#[test]
fn bad_certificate_files_are_located_config_errors_that_never_show_the_key() {
    let home = Home::new();
    let dir = home.path();
    make_ca(dir, "ca");
    let (cert, key) = make_leaf(dir, "ca", "client-a", "clientAuth");
    let (_, other_key) = make_leaf(dir, "ca", "client-b", "clientAuth");
    let key_text = std::fs::read_to_string(&key).unwrap();
    let key_body = key_text.lines().nth(1).unwrap().to_string();
    std::fs::write(dir.join("not-pem.txt"), "hello").unwrap();
    let path = |p: &std::path::Path| format!("{:?}", p.display().to_string());
    let cases = [
        (
            format!("ca_file = {}", path(&dir.join("missing.pem"))),
            "ca_file: while reading",
        ),
        (
            format!("ca_file = {}", path(&dir.join("not-pem.txt"))),
            "holds no PEM certificate",
        ),
        (
            // A key where a certificate belongs.
            format!(
                "client_cert_file = {}\nclient_key_file = {}",
                path(&key),
                path(&key)
            ),
            "holds no PEM certificate",
        ),
        (
            format!(
                "client_cert_file = {}\nclient_key_file = {}",
                path(&cert),
                path(&other_key)
            ),
            "client_key_file is not the private key of the certificate",
        ),
        (format!("client_cert_file = {}", path(&cert)), "go together"),
        (
            "ca_only = true".to_string(),
            "ca_only applies to the ca_file",
        ),
        (
            format!("ca_file = {}", path(std::path::Path::new("/dev/zero"))),
            "not a regular file",
        ),
    ];
    for (keys, expected) in cases {
        home.write_config(&all("s", "https://127.0.0.1:1/hook", &keys));
        let config = home.config_path().display().to_string();
        let (code, stdout, stderr) = run(&["check-config", "--config", &config]);
        let text = format!("{stdout}{stderr}");
        assert_ne!(code, 0, "{keys}: accepted:\n{text}");
        assert!(
            text.contains(expected),
            "{keys}: expected {expected:?} in:\n{text}"
        );
        assert!(
            text.contains("config.toml:"),
            "{keys}: the error is located:\n{text}"
        );
        assert!(!text.contains(&key_body), "{keys}: the key shows:\n{text}");
    }
}

/// Regression: a receiver with a self-signed certificate made the common way
/// (`openssl req -x509`, which marks it a CA) failed with `CaUsedAsEndEntity` even with
/// that very certificate in `ca_file`. Its name must still match.
#[test]
fn a_self_signed_receiver_certificate_named_in_ca_file_is_trusted_for_its_names() {
    let home = Home::new();
    let dir = home.path();
    let output = std::process::Command::new("openssl")
        .args([
            "req",
            "-x509",
            "-newkey",
            "ec",
            "-pkeyopt",
            "ec_paramgen_curve:P-256",
            "-nodes",
            "-keyout",
            "self.key",
            "-out",
            "self.pem",
            "-days",
            "2",
            "-subj",
            "/CN=127.0.0.1",
            "-addext",
            "subjectAltName=IP:127.0.0.1",
        ])
        .current_dir(dir)
        .output()
        .expect("openssl runs");
    assert!(
        output.status.success(),
        "{}",
        String::from_utf8_lossy(&output.stderr)
    );
    let (cert, key) = (dir.join("self.pem"), dir.join("self.key"));
    let receiver = TlsReceiver::start(dir, &cert, &key, None);
    let pinned = format!("ca_file = {:?}", cert.display().to_string());
    home.write_config(&format!(
        "{}{}",
        all("pinned", &receiver.url("/pinned"), &pinned),
        // The same receiver by a name the certificate does not hold.
        all(
            "wrong-name",
            &format!("https://localhost:{}/wrong-name", receiver.port),
            &pinned
        ),
    ));
    let _serve = Serve::start(&home);
    home.drop_json("evt_self.json", &spool_event("evt_self"));
    wait_for(
        "the delivery to the self-signed receiver",
        Duration::from_secs(20),
        || delivered(&home, "pinned") == 1,
    );
    assert_eq!(receiver.at("/pinned").len(), 1);
    wait_for(
        "a refused attempt by the wrong name",
        Duration::from_secs(20),
        || !attempt_errors(&home, "wrong-name").is_empty(),
    );
    assert!(receiver.at("/wrong-name").is_empty());
    assert_eq!(delivered(&home, "wrong-name"), 0);
}
