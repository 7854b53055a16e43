use std::path::{Path, PathBuf};

use crate::config::{parse, Auth, ClientAuth, Config, NoProxy};

const SECRET: &str = "whsec_MfKQ9r8GKYqrTwjUPD8ILPZIo2LaLaSw";

fn fixture(name: &str) -> String {
    let path: PathBuf = [env!("CARGO_MANIFEST_DIR"), "tests", "fixtures", "tls", name]
        .iter()
        .collect();
    format!("{:?}", path.display().to_string())
}

fn config(delivery: &str, subscription: &str) -> String {
    format!(
        "[delivery]\n{delivery}\n[[subscription]]\nname = \"s\"\nurl = \"https://crm.lan/hook\"\n\
         conversations = [\"*\"]\nevents = [\"*\"]\nsecret = \"{SECRET}\"\n{subscription}\n"
    )
}

fn ok(text: &str) -> Config {
    parse(text, Path::new("/etc/posthorn/config.toml")).unwrap_or_else(|err| panic!("{err}"))
}

fn problems(text: &str) -> String {
    parse(text, Path::new("/etc/posthorn/config.toml"))
        .expect_err("the config should be refused")
        .to_string()
}

#[test]
fn a_subscription_inherits_delivery_tls_and_its_own_ca_file_wins() {
    let delivery = format!(
        "ca_file = {}\nclient_cert_file = {}\nclient_key_file = {}",
        fixture("ca.pem"),
        fixture("client.pem"),
        fixture("client.key")
    );
    let inherited = ok(&config(&delivery, ""));
    let tls = &inherited.subscriptions[0].transport.tls;
    assert_eq!(tls, &inherited.delivery.transport.tls);
    let ca = tls.ca.as_ref().expect("the delivery's ca_file");
    assert_eq!((ca.certs.len(), ca.only), (1, false));
    assert_eq!(tls.client.as_ref().map(|c| c.chain.len()), Some(1));

    let own = ok(&config(
        &delivery,
        &format!("ca_file = {}\nca_only = true", fixture("ca.pem")),
    ));
    let tls = &own.subscriptions[0].transport.tls;
    assert!(tls.ca.as_ref().is_some_and(|ca| ca.only));
    assert_ne!(
        tls, &own.delivery.transport.tls,
        "its own ca_file replaced the delivery's"
    );
    assert!(
        tls.client.is_some(),
        "the client certificate is still the delivery's"
    );
    assert!(
        !format!("{own:?}").contains("BEGIN"),
        "Debug shows no key material"
    );
}

#[test]
fn a_key_that_is_not_the_certificates_is_refused_at_its_key() {
    let err = problems(&config(
        "",
        &format!(
            "client_cert_file = {}\nclient_key_file = {}",
            fixture("client.pem"),
            fixture("other.key")
        ),
    ));
    assert!(
        err.contains("config.toml:10:19: subscription \"s\": client_key_file is not the private key of the certificate"),
        "{err}"
    );
}

#[test]
fn proxy_settings_resolve_with_no_proxy_and_keep_the_password_hidden() {
    std::env::set_var("POSTHORN_TEST_PROXY_PASSWORD_A", "hunter2-proxy");
    let parsed = ok(&config(
        "allow_networks = [\"10.0.0.5\"]\nproxy = \"http://hooks@10.0.0.5:3128\"\n\
         proxy_password_env = \"POSTHORN_TEST_PROXY_PASSWORD_A\"\n\
         no_proxy = [\"crm.lan\", \".Internal.Example\", \"192.168.0.0/16\", \"::1\"]",
        "",
    ));
    let transport = &parsed.subscriptions[0].transport;
    let proxy = transport.proxy.as_ref().expect("a proxy");
    assert_eq!(proxy.shown(), "http://10.0.0.5:3128");
    assert_eq!(proxy.username.as_deref(), Some("hooks"));
    assert_eq!(
        proxy.password.as_ref().map(|p| p.expose()),
        Some("hunter2-proxy")
    );
    assert_eq!(
        proxy.no_proxy[1],
        NoProxy::Domain("internal.example".into())
    );
    assert!(!format!("{parsed:?}").contains("hunter2"));
    for (url, proxied) in [
        ("https://crm.lan/hook", false),
        ("https://a.crm.lan/hook", false),
        ("https://notcrm.lan/hook", true),
        ("https://x.internal.example:8443/", false),
        ("https://internal.example/", false),
        ("http://192.168.4.2:80/", false),
        ("http://[::1]:80/", false),
        ("http://10.1.2.3/", true),
        ("https://example.org/", true),
    ] {
        assert_eq!(transport.proxy_for(url).is_some(), proxied, "{url}");
    }
    let all = ok(&config(
        "allow_networks = [\"10.0.0.5\"]\nproxy = \"http://10.0.0.5:3128\"\nno_proxy = [\"*\"]",
        "",
    ));
    assert!(all.subscriptions[0]
        .transport
        .proxy_for("https://example.org/")
        .is_none());
    let none = ok(&config("", ""));
    assert!(none.subscriptions[0].transport.proxy.is_none());
}

#[test]
fn proxy_mistakes_are_located_and_never_echo_the_url() {
    for (delivery, expected) in [
        (
            "proxy = \"https://user:pw-secret@proxy.example.org:3128\"",
            "config.toml:2:9: delivery.proxy must be an http:// URL",
        ),
        (
            "proxy = \"http://user:pw-secret@proxy.example.org:3128/path\"",
            "delivery.proxy is not a proxy URL",
        ),
        (
            "proxy = \"http://user:pw-secret@proxy.example.org:3128\"\nproxy_password_file = \"x\"",
            "give the proxy password once",
        ),
        (
            "no_proxy = [\"crm.lan\"]",
            "apply to a proxy; set delivery.proxy",
        ),
        (
            "proxy = \"http://proxy.example.org:3128\"\nproxy_password_env = \"pw-secret\"",
            "must name an environment variable",
        ),
    ] {
        let err = problems(&config(delivery, ""));
        assert!(err.contains(expected), "{delivery}: {err}");
        assert!(!err.contains("pw-secret"), "{delivery}: {err}");
    }
}

#[test]
fn each_kind_of_auth_resolves() {
    std::env::set_var("POSTHORN_TEST_BEARER_A", "bearer-secret");
    let bearer = ok(&config(
        "",
        "auth = { bearer_env = \"POSTHORN_TEST_BEARER_A\" }",
    ));
    assert!(matches!(
        &bearer.subscriptions[0].transport.auth,
        Some(Auth::Bearer(token)) if token.expose() == "bearer-secret"
    ));
    let basic = ok(&config(
        "",
        "auth = { username = \"u\", password = \"basic-secret\" }",
    ));
    assert!(matches!(
        &basic.subscriptions[0].transport.auth,
        Some(Auth::Basic { username, password }) if username == "u" && password.expose() == "basic-secret"
    ));
    let oauth = ok(&config(
        "",
        "auth = { token_url = \"https://auth.example.org/token\", client_id = \"c\", \
         client_secret = \"oauth-secret\", scope = \"hooks\", client_auth = \"post\" }",
    ));
    let Some(Auth::OAuth2(settings)) = &oauth.subscriptions[0].transport.auth else {
        panic!("OAuth2 expected");
    };
    assert_eq!(settings.client_auth, ClientAuth::Post);
    assert_eq!(settings.scope.as_deref(), Some("hooks"));
    for config in [&bearer, &basic, &oauth] {
        let debug = format!("{config:?}");
        assert!(!debug.contains("-secret"), "{debug}");
    }
}

#[test]
fn auth_mistakes_are_located_and_never_echo_a_secret() {
    for (auth, expected) in [
        (
            "auth = { bearer = \"b-secret\", username = \"u\", password = \"p-secret\" }",
            "config.toml:9:8: subscription \"s\": auth mixes kinds",
        ),
        ("auth = { }", "auth is empty"),
        (
            "auth = { username = \"u\" }",
            "set one of password, password_env or password_file",
        ),
        (
            "auth = { username = \"u\", password = \"p-secret\", password_env = \"X\" }",
            "set only one of password, password_env and password_file",
        ),
        (
            "auth = { token_url = \"https://a/t\", client_secret = \"c-secret\" }",
            "OAuth2 needs token_url, client_id and a client_secret",
        ),
        (
            "auth = { token_url = \"ftp://a/t\", client_id = \"c\", client_secret = \"c-secret\" }",
            "auth: token_url: url \"ftp://a/t\" is not an http:// or https:// URL",
        ),
        (
            "auth = { bearer_env = \"b-secret!\" }",
            "must name an environment variable",
        ),
        (
            "auth = { bearer_env = \"POSTHORN_TEST_UNSET_VARIABLE\" }",
            "is not set or empty",
        ),
        (
            "auth = { bearer = \"b\", colour = \"red\" }",
            "unknown field `colour`",
        ),
        (
            "auth = { bearer = \"b-secret\" }\nheaders = { authorization = \"x\" }",
            "header \"authorization\" is set by auth",
        ),
    ] {
        let err = problems(&config("", auth));
        assert!(err.contains(expected), "{auth}: {err}");
        assert!(!err.contains("-secret"), "{auth}: {err}");
    }
}
