use super::*;

const SECRET: &str = "whsec_MfKQ9r8GKYqrTwjUPD8ILPZIo2LaLaSw";

fn parse_text(text: &str) -> Result<Config, ConfigError> {
    parse(text, Path::new("/etc/posthorn/config.toml"))
}

/// The single problem a config has, as `line:column: message`.
fn only_problem(text: &str) -> String {
    let err = parse_text(text).expect_err("the config should be refused");
    assert_eq!(err.problems.len(), 1, "expected one problem, got: {err}");
    let p = &err.problems[0];
    format!(
        "{}:{}: {}",
        p.line.unwrap_or(0),
        p.column.unwrap_or(0),
        p.message
    )
}

fn with_subscription(extra: &str) -> String {
    format!(
        "[[subscription]]\nname = \"s\"\nurl = \"http://127.0.0.1:9000/hook\"\n\
         conversations = [\"c-1\"]\nevents = [\"*\"]\n{extra}"
    )
}

#[test]
fn the_example_config_parses_and_documents_the_defaults() {
    let path = Path::new(env!("CARGO_MANIFEST_DIR")).join("config.example.toml");
    let example = load(&path).unwrap_or_else(|err| panic!("config.example.toml: {err}"));
    let defaults = embedded_defaults();
    assert_eq!(example.delivery.schedule, defaults.delivery.schedule);
    assert_eq!(example.delivery.timeout, defaults.delivery.timeout);
    assert_eq!(example.delivery.workers, defaults.delivery.workers);
    assert_eq!(
        example.delivery.allow_networks,
        defaults.delivery.allow_networks
    );
    assert_eq!(
        example.delivery.max_in_flight_per_endpoint,
        defaults.delivery.max_in_flight_per_endpoint
    );
    assert_eq!(example.spool.keep_done, defaults.spool.keep_done);
    assert_eq!(
        example.spool.max_event_bytes,
        defaults.spool.max_event_bytes
    );
    assert_eq!(example.spool.max_file_bytes, defaults.spool.max_file_bytes);
    assert_eq!(example.retention, defaults.retention);
    assert_eq!(example.storage.max_size, defaults.storage.max_size);
    assert_eq!(example.log, defaults.log);
    assert_eq!(example.http, defaults.http);
    assert_eq!(example.inlet.max_body_bytes, defaults.inlet.max_body_bytes);
    assert_eq!(example.admin, defaults.admin);
    let sources: Vec<&str> = example
        .inlet
        .sources
        .iter()
        .map(|s| s.name.as_str())
        .collect();
    assert_eq!(sources, ["echo", "other-platform"]);
    assert_eq!(
        example.spool.rescan_interval,
        defaults.spool.rescan_interval
    );
    let names: Vec<&str> = example
        .subscriptions
        .iter()
        .map(|s| s.name.as_str())
        .collect();
    assert_eq!(
        names,
        ["north-crm", "south-dashboard", "ops-pager", "north-slack"]
    );
    assert_eq!(example.subscriptions[3].format.name(), "slack");
    assert_eq!(example.delivery.enabled, defaults.delivery.enabled);
    assert_eq!(
        example.delivery.auto_pause_after,
        defaults.delivery.auto_pause_after
    );
    assert_eq!(
        example.delivery.breaker_after,
        defaults.delivery.breaker_after
    );
    assert_eq!(
        example.delivery.breaker_backoff,
        defaults.delivery.breaker_backoff
    );
    assert!(matches!(
        example.subscriptions[1].signing,
        Signing::Hex { .. }
    ));
}

#[test]
fn an_empty_file_is_the_embedded_defaults_with_no_subscriptions() {
    let config = parse_text("").unwrap();
    let defaults = embedded_defaults();
    assert!(config.subscriptions.is_empty());
    assert_eq!(config.storage.path, defaults.storage.path);
    assert_eq!(config.delivery.schedule.len(), DEFAULT_SCHEDULE.len());
    assert_eq!(config.delivery.schedule[1], Duration::from_secs(300));
}

#[test]
fn relative_paths_are_taken_from_the_config_files_directory() {
    let config =
        parse_text("[storage]\npath = \"db/p.db\"\n[spool]\ndir = \"/srv/spool\"").unwrap();
    assert_eq!(config.storage.path, Path::new("/etc/posthorn/db/p.db"));
    assert_eq!(config.spool.dir, Path::new("/srv/spool"));
}

#[test]
fn a_full_subscription_resolves_every_key() {
    let config = parse_text(&with_subscription(&format!(
        "projects = [\"p-*\"]\nsecret = \"{SECRET} {SECRET}\"\nheaders = {{ \"X-Team\" = \"north\" }}\nenabled = false\n"
    )))
    .unwrap();
    let sub = &config.subscriptions[0];
    assert_eq!(sub.name, "s");
    assert_eq!(sub.conversations[0].as_str(), "c-1");
    assert_eq!(sub.projects[0].as_str(), "p-*");
    assert!(matches!(&sub.signing, Signing::Standard { keys } if keys.len() == 2));
    assert_eq!(sub.headers, [("X-Team".to_string(), "north".to_string())]);
    assert!(!sub.enabled);
}

#[test]
fn unknown_keys_are_named_with_their_line_and_column() {
    let problem = only_problem("[delivery]\ntimeout = \"5s\"\nretries = 3\n");
    assert!(
        problem.starts_with("3:1: unknown field `retries`"),
        "{problem}"
    );
    let problem = only_problem(&with_subscription("conversation = [\"c-2\"]\n"));
    assert!(
        problem.starts_with("6:1: unknown field `conversation`"),
        "{problem}"
    );
}

#[test]
fn bad_values_say_what_was_expected() {
    let cases = [
        (
            "[delivery]\ntimeout = \"5 s\"",
            "2:11: \"5 s\" is not a duration",
        ),
        ("[delivery]\ntimeout = 5", "2:11: 5 has no unit"),
        (
            "[delivery]\ntimeout = \"0s\"",
            "2:11: delivery.timeout must be longer than 0",
        ),
        (
            "[delivery]\nworkers = 0",
            "2:11: delivery.workers is 0; expected a whole number from 1",
        ),
        (
            "[delivery]\nschedule = [\"5s\", \"0s\"]",
            "2:19: delivery.schedule: each wait",
        ),
        (
            "[delivery]\nworkers = \"many\"",
            "2:11: invalid type: string \"many\"",
        ),
        (
            "[spool]\nmax_event_bytes = \"1MB\"",
            "2:19: \"1MB\" is not a size",
        ),
        (
            "[spool]\nmax_event_bytes = 0",
            "2:19: spool.max_event_bytes must be more than 0",
        ),
        ("[storage\npath = 1", "1:9: "),
    ];
    for (text, expected) in cases {
        let problem = only_problem(text);
        assert!(
            problem.starts_with(expected),
            "for {text:?}: expected {expected:?}, got {problem:?}"
        );
    }
}

#[test]
fn subscription_mistakes_are_each_reported() {
    let cases = [
        (
            with_subscription("").replace("conversations = [\"c-1\"]\n", ""),
            "needs conversations or projects",
        ),
        (
            with_subscription("").replace("events = [\"*\"]\n", "")
                + "secret = \"x\"\nsignature = \"hex\"\n",
            "is missing events",
        ),
        (
            with_subscription("secret = \"x\"\nsignature = \"hex\"\nevents2 = 1\n"),
            "unknown field `events2`",
        ),
        (
            with_subscription(&format!("secret = \"{SECRET}\"\n")).replace("\"*\"]", "]"),
            "events is empty",
        ),
        (with_subscription(""), "has no secret"),
        (
            with_subscription(&format!("secret = \"{SECRET}\"\nsecret_env = \"X\"\n")),
            "set only one of",
        ),
        (
            with_subscription("secret = \"plain\"\n"),
            "starts with \"whsec_\"",
        ),
        (
            with_subscription("secret = \"whsec_AAAA\"\n"),
            "decodes to 3 bytes",
        ),
        (
            with_subscription(
                "secret = \"x\"\nsignature = \"hex\"\nheaders = { \"webhook-id\" = \"1\" }\n",
            ),
            "cannot be overridden",
        ),
        (
            with_subscription(
                "secret = \"x\"\nsignature = \"hex\"\nheaders = { \"Bad Name\" = \"1\" }\n",
            ),
            "is not a valid header name",
        ),
        (
            with_subscription(&format!(
                "secret = \"{SECRET}\"\nsignature_header = \"X-Sig\"\n"
            )),
            "apply to signature = \"hex\" only",
        ),
        (
            with_subscription("secret = \"x\"\nsignature = \"rot13\"\n"),
            "unknown variant `rot13`",
        ),
        (
            with_subscription(&format!("secret = \"{SECRET}\"\n"))
                .replace("http://127.0.0.1:9000/hook", "ftp://x"),
            "is not an http:// or https:// URL",
        ),
        (
            with_subscription(&format!("secret = \"{SECRET}\"\n"))
                .replace("name = \"s\"", "name = \"a b\""),
            "a name may only hold",
        ),
        (
            with_subscription(&format!("secret = \"{SECRET}\"\n")).replace("[\"c-1\"]", "[\"\"]"),
            "holds an empty pattern",
        ),
        (
            with_subscription("secret_env = \"POSTHORN_TEST_SURELY_UNSET_VARIABLE\"\n"),
            "POSTHORN_TEST_SURELY_UNSET_VARIABLE named by secret_env is not set",
        ),
        (
            with_subscription("secret_file = \"/nonexistent/posthorn.secret\"\n"),
            "while reading secret_file /nonexistent/posthorn.secret",
        ),
    ];
    for (text, expected) in cases {
        let err = parse_text(&text).expect_err(expected);
        let shown = err.to_string();
        assert!(
            shown.contains(expected),
            "expected {expected:?} in:\n{shown}"
        );
        assert!(
            err.problems.iter().all(|p| p.line.is_some()),
            "every subscription problem has a line: {shown}"
        );
    }
}

#[test]
fn duplicate_subscription_names_point_at_the_first_use() {
    let block = with_subscription(&format!("secret = \"{SECRET}\"\n"));
    let problem = only_problem(&format!("{block}\n{block}"));
    assert!(
        problem.starts_with("9:8: subscription name \"s\" is already used on line 2"),
        "{problem}"
    );
}

#[test]
fn secrets_never_appear_in_errors_or_debug_output() {
    let config = parse_text(&with_subscription(&format!("secret = \"{SECRET}\"\n"))).unwrap();
    let shown = format!("{config:?}");
    assert!(
        !shown.contains("MfKQ9r8GKYqrTwjUPD8ILPZIo2LaLaSw"),
        "{shown}"
    );
    assert!(shown.contains("[redacted]"), "{shown}");

    let almost = "whsec_not!base64secretvalue";
    let err = parse_text(&with_subscription(&format!("secret = \"{almost}\"\n"))).unwrap_err();
    assert!(!err.to_string().contains("not!base64secretvalue"), "{err}");
}

#[test]
fn every_problem_in_a_file_is_reported_at_once() {
    let text = format!(
        "[delivery]\nworkers = 0\ntimeout = \"0s\"\n{}",
        with_subscription("secret = \"plain\"\n")
    );
    let err = parse_text(&text).unwrap_err();
    assert_eq!(err.problems.len(), 3, "{err}");
    let shown = err.to_string();
    assert!(shown.starts_with("/etc/posthorn/config.toml:"), "{shown}");
}

#[test]
fn a_missing_file_is_named() {
    let err = load(Path::new("/nonexistent/posthorn.toml")).unwrap_err();
    assert!(
        err.to_string()
            .starts_with("/nonexistent/posthorn.toml: while reading the config file"),
        "{err}"
    );
}

#[test]
fn the_log_level_is_a_level_or_a_filter_and_a_stray_word_is_located() {
    assert_eq!(parse_text("").unwrap().log.level, "info");
    let config = parse_text("[log]\nlevel = \"posthorn=debug,warn\"").unwrap();
    assert_eq!(config.log.level, "posthorn=debug,warn");
    let problem = only_problem("[log]\nlevel = \"loud\"");
    assert!(
        problem.starts_with("2:9: log.level \"loud\" is not a level"),
        "{problem}"
    );
    let problem = only_problem("[log]\nformat = \"json\"");
    assert!(
        problem.starts_with("2:1: unknown field `format`"),
        "{problem}"
    );
}

#[test]
fn retention_and_max_size_are_read_and_checked() {
    let defaults = parse_text("").unwrap();
    assert_eq!(
        defaults.retention.delivered,
        Duration::from_secs(30 * 86_400)
    );
    assert_eq!(defaults.retention.failed, Duration::from_secs(90 * 86_400));
    assert_eq!(defaults.retention.payloads, Duration::from_secs(7 * 86_400));
    assert_eq!(defaults.storage.max_size, None);
    let config = parse_text(
        "[storage]\nmax_size = \"10GiB\"\n[retention]\ndelivered = \"2d\"\nfailed = \"3d\"\n\
         payloads = \"1h\"\nrejections = \"5m\"\ninterval = \"250ms\"",
    )
    .unwrap();
    assert_eq!(config.storage.max_size, Some(10 << 30));
    assert_eq!(
        config.retention,
        RetentionConfig {
            delivered: Duration::from_secs(2 * 86_400),
            failed: Duration::from_secs(3 * 86_400),
            payloads: Duration::from_secs(3600),
            rejections: Duration::from_secs(300),
            interval: Duration::from_millis(250),
        }
    );
    assert_eq!(
        only_problem("[retention]\npayloads = \"0s\""),
        "2:12: retention.payloads must be longer than 0"
    );
    assert_eq!(
        only_problem("[storage]\nmax_size = 0"),
        "2:12: storage.max_size = 0 bytes is below the 5 MiB the store needs to run (its WAL \
         alone keeps up to 4 MiB between checkpoints); write at least \"5MiB\", or leave \
         max_size out for no limit"
    );
    let problem = only_problem("[retention]\nevents = \"1d\"");
    assert!(
        problem.starts_with("2:1: unknown field `events`"),
        "{problem}"
    );
}

#[test]
fn inlet_token_and_sources_resolve_and_secrets_stay_hidden() {
    let config = parse_text(
        "[http]\nlisten = \"127.0.0.1:9999\"\n[inlet]\ntoken = \"tok-123-0123456789\"\n\
         [[inlet.source]]\nname = \"echo\"\nprofile = \"echo\"\nsecret = \"echo-secret\"\n\
         [[inlet.source]]\nname = \"g\"\nprofile = \"generic\"\ntype_value = \"x\"\n\
         verify = \"standard\"\nsecret = \"whsec_MfKQ9r8GKYqrTwjUPD8ILPZIo2LaLaSw\"\n",
    )
    .unwrap();
    assert_eq!(config.http.listen.port(), 9999);
    assert_eq!(
        config.inlet.token.as_ref().map(Secret::expose),
        Some("tok-123-0123456789")
    );
    assert_eq!(config.inlet.sources.len(), 2);
    let debug = format!("{:?}", config.inlet);
    assert!(
        !debug.contains("tok-123-0123456789") && !debug.contains("echo-secret"),
        "{debug}"
    );
}

#[test]
fn inlet_mistakes_are_located() {
    assert_eq!(
        only_problem("[inlet]\ntoken = \"a\"\ntoken_env = \"B\"\n"),
        "3:13: [inlet]: set only one of token, token_file and token_env"
    );
    assert_eq!(
        only_problem("[http]\nlisten = \"localhost\"\n"),
        "2:10: http.listen \"localhost\" is not an address and port like \"127.0.0.1:8425\""
    );
    assert_eq!(
        only_problem("[[inlet.source]]\nname = \"g\"\nprofile = \"generic\"\ntype = \"type\"\n"),
        "4:8: inlet source \"g\": type \"type\" is not a JSON pointer; write it like \"/data/id\""
    );
    let err = only_problem(
        "[[inlet.source]]\nname = \"g\"\nprofile = \"generic\"\ntype = \"/t\"\nverify = \"hex\"\n",
    );
    assert!(
        err.starts_with("2:8: ") && err.contains("verify needs a secret"),
        "{err}"
    );
    let err = only_problem("[[inlet.source]]\nname = \"e\"\nprofile = \"echo\"\nid = \"/id\"\n");
    assert!(err.starts_with("4:6: ") && err.contains("generic"), "{err}");
    let err = only_problem("[[inlet.source]]\nname = \"e\"\nprofile = \"echoo\"\n");
    assert!(
        err.starts_with("3:11: ") && err.contains("unknown variant"),
        "{err}"
    );
}

#[test]
fn admin_settings_are_read_and_a_bad_hash_is_named_without_quoting_it() {
    let hash = crate::password::hash("a long enough password");
    let config = parse_text(&format!(
        "[admin]\npassword_hash = \"{hash}\"\napi_token = \"tok-123-01234567894567890abcdef\"\n\
         session_ttl = \"30m\"\nsecure_cookie = true\n"
    ))
    .unwrap();
    assert_eq!(config.admin.password_hash.as_deref(), Some(hash.as_str()));
    assert_eq!(
        config.admin.api_token.as_ref().map(|t| t.expose()),
        Some("tok-123-01234567894567890abcdef")
    );
    assert_eq!(config.admin.session_ttl, Duration::from_secs(1800));
    assert!(config.admin.secure_cookie);

    let err = parse_text("[admin]\npassword_hash = \"hunter2-my-password\"\n")
        .unwrap_err()
        .to_string();
    assert!(
        err.contains("admin.password_hash is not a PHC password hash"),
        "{err}"
    );
    assert!(err.contains(":2:"), "located: {err}");
    assert!(!err.contains("hunter2"), "the value is never echoed: {err}");
}

#[test]
fn short_bearer_tokens_are_refused_where_they_are_written_without_echoing_them() {
    let problem = only_problem("[inlet]\ntoken = \"short-token\"\n");
    assert!(
        problem.starts_with("2:9: inlet.token is 11 characters long; use at least 16"),
        "{problem}"
    );
    assert!(!problem.contains("short-token"), "{problem}");
    let problem = only_problem("[admin]\napi_token = \"0123456789abcde\"\n");
    assert!(
        problem.starts_with("2:13: admin.api_token is 15 characters long"),
        "{problem}"
    );
    assert!(parse_text("[admin]\napi_token = \"0123456789abcdef\"\n").is_ok());
}

#[test]
fn argon2_costs_out_of_bounds_are_refused_where_the_hash_is_written() {
    let hash = "$argon2id$v=19$m=8,t=1,p=1$c2FsdHNhbHRzYWx0$\
                O4RlRU7AUWXn3/BwC8Cw2ZtrE/mM/A3MYLj23xRwPSw";
    let problem = only_problem(&format!("[admin]\npassword_hash = \"{hash}\"\n"));
    assert!(
        problem.starts_with("2:17: admin.password_hash asks for m=8,t=1,p=1; allowed are m"),
        "{problem}"
    );
}

#[test]
fn http_guard_keys_resolve_and_mistakes_are_located() {
    let config = parse_text(
        "[http]\nlisten = \"0.0.0.0:8425\"\nallowed_hosts = [\"Posthorn.Example.org\", \"[::1]\"]\n\
         trusted_proxies = [\"127.0.0.1\", \"10.0.0.0/8\"]\nrequest_timeout = \"2s\"\n\
         body_timeout = \"10s\"\nmax_connections = 300\n",
    )
    .unwrap();
    assert_eq!(config.http.allowed_hosts, ["posthorn.example.org", "[::1]"]);
    assert_eq!(config.http.trusted_proxies.len(), 2);
    assert_eq!(config.http.request_timeout, Duration::from_secs(2));
    assert_eq!(config.http.body_timeout, Duration::from_secs(10));
    assert_eq!(config.http.max_connections, Some(300));
    let defaults = parse_text("[http]\nlisten = \"0.0.0.0:8425\"\n").unwrap();
    assert!(defaults.http.allowed_hosts.contains(&"0.0.0.0".to_string()));

    assert_eq!(
        only_problem("[http]\nallowed_hosts = [\"example.org:8425\"]\n"),
        "2:18: http.allowed_hosts: write \"example.org:8425\" without a port; the port is not checked"
    );
    assert!(only_problem("[http]\nallowed_hosts = []\n")
        .starts_with("2:17: http.allowed_hosts is empty"));
    assert!(only_problem("[http]\ntrusted_proxies = [\"proxy\"]\n")
        .starts_with("2:20: http.trusted_proxies: \"proxy\" is not a network"));
    assert!(only_problem("[http]\nmax_connections = 0\n")
        .starts_with("2:19: http.max_connections is 0; expected a whole number from 1"));
}

#[test]
fn receiver_health_keys_are_read_and_checked() {
    let config = parse_text(&format!(
        "[delivery]\nenabled = false\nauto_pause_after = \"2h\"\nbreaker_after = 3\n\
         breaker_backoff = \"10s\"\n{}",
        with_subscription(&format!(
            "secret = \"{SECRET}\"\ntimeout = \"5s\"\nauto_pause_after = \"1d\"\n"
        ))
    ))
    .unwrap();
    assert!(!config.delivery.enabled);
    assert_eq!(config.delivery.auto_pause_after, Duration::from_secs(7200));
    assert_eq!(config.delivery.breaker_after, 3);
    assert_eq!(config.delivery.breaker_backoff, Duration::from_secs(10));
    let sub = &config.subscriptions[0];
    assert_eq!(sub.timeout, Some(Duration::from_secs(5)));
    assert_eq!(sub.auto_pause_after, Some(Duration::from_secs(86_400)));
    // Leases and the shutdown grace cover the longest timeout.
    assert_eq!(config.longest_timeout(), Duration::from_secs(30));

    assert_eq!(
        only_problem("[delivery]\nbreaker_after = 0\n"),
        "2:17: delivery.breaker_after is 0; expected a whole number from 1 to 10000"
    );
    assert!(only_problem(&with_subscription(&format!(
        "secret = \"{SECRET}\"\ntimeout = \"0s\"\n"
    )))
    .contains("subscription \"s\": timeout must be longer than 0"),);
}

#[test]
fn a_subscription_taking_only_posthorns_own_events_needs_no_scope() {
    let alerts = format!(
        "[[subscription]]\nname = \"pager\"\nurl = \"http://127.0.0.1:9000/a\"\n\
         events = [\"posthorn.*\"]\nsecret = \"{SECRET}\"\n"
    );
    let config = parse_text(&alerts).unwrap();
    assert!(config.subscriptions[0].conversations.is_empty());
    // Anything else beside posthorn.* still needs a scope.
    let mixed = alerts.replace("[\"posthorn.*\"]", "[\"posthorn.*\", \"report.*\"]");
    assert!(only_problem(&mixed).contains("needs conversations or projects"));
    let everything = alerts.replace("[\"posthorn.*\"]", "[\"*\"]");
    assert!(only_problem(&everything).contains("needs conversations or projects"));
}

/// Regression: ECHO's `\uXXXX`-escaped transcripts passed the 1 MiB inlet default and got
/// 413, which ECHO never retries.
#[test]
fn an_echo_source_takes_long_transcripts_by_default() {
    let config = parse_text(
        "[[inlet.source]]\nname = \"e\"\nprofile = \"echo\"\n\
         [[inlet.source]]\nname = \"g\"\nprofile = \"generic\"\ntype = \"/t\"\n\
         [[inlet.source]]\nname = \"small\"\nprofile = \"echo\"\nmax_body_bytes = \"2MiB\"\n",
    )
    .unwrap();
    let limits: Vec<usize> = config
        .inlet
        .sources
        .iter()
        .map(|s| s.max_body_bytes)
        .collect();
    assert_eq!(limits, [DEFAULT_ECHO_MAX_BODY_BYTES, 1 << 20, 2 << 20]);
    // A 3-hour Cyrillic transcript as ECHO sends it: 32,400 words of 5.5 letters, each
    // letter escaped to 6 bytes.
    let transcript = "\\u043f".repeat(32_400 * 11 / 2) + &" ".repeat(32_400);
    assert!(transcript.len() > 1 << 20 && transcript.len() < DEFAULT_ECHO_MAX_BODY_BYTES / 8);
}

#[test]
fn replay_windows_default_where_a_signed_time_exists_and_can_be_turned_off() {
    let config = parse_text(
        "[[inlet.source]]\nname = \"e\"\nprofile = \"echo\"\n\
         [[inlet.source]]\nname = \"e2\"\nprofile = \"echo\"\nreplay_window = \"off\"\n\
         [[inlet.source]]\nname = \"e3\"\nprofile = \"echo\"\nreplay_window = \"90s\"\n\
         [[inlet.source]]\nname = \"h\"\nprofile = \"generic\"\ntype = \"/t\"\noccurred_at = \"/at\"\nverify = \"hex\"\nsecret = \"k\"\n\
         [[inlet.source]]\nname = \"h2\"\nprofile = \"generic\"\ntype = \"/t\"\nverify = \"hex\"\nsecret = \"k\"\n\
         [[inlet.source]]\nname = \"n\"\nprofile = \"generic\"\ntype = \"/t\"\noccurred_at = \"/at\"\n",
    )
    .unwrap();
    let windows: Vec<Option<Duration>> = config
        .inlet
        .sources
        .iter()
        .map(|s| s.replay_window)
        .collect();
    assert_eq!(
        windows,
        [
            Some(DEFAULT_REPLAY_WINDOW),
            None,
            Some(Duration::from_secs(90)),
            Some(DEFAULT_REPLAY_WINDOW),
            None,
            None
        ]
    );
}

#[test]
fn replay_window_mistakes_are_located() {
    let err = only_problem(
        "[[inlet.source]]\nname = \"e\"\nprofile = \"echo\"\nreplay_window = \"soon\"\n",
    );
    assert!(
        err.starts_with("4:17: ") && err.contains("\"off\""),
        "{err}"
    );
    let err = only_problem(
        "[[inlet.source]]\nname = \"e\"\nprofile = \"echo\"\nreplay_window = \"0s\"\n",
    );
    assert!(
        err.starts_with("4:17: ") && err.contains("longer than 0"),
        "{err}"
    );
    let err = only_problem(
        "[[inlet.source]]\nname = \"h\"\nprofile = \"generic\"\ntype = \"/t\"\nverify = \"hex\"\nsecret = \"k\"\nreplay_window = \"5m\"\n",
    );
    assert!(
        err.starts_with("7:17: ") && err.contains("occurred_at"),
        "{err}"
    );
    let err = only_problem(&format!(
        "[[inlet.source]]\nname = \"s\"\nprofile = \"generic\"\ntype = \"/t\"\noccurred_at = \"/at\"\nverify = \"standard\"\nsecret = {SECRET:?}\nreplay_window = \"5m\"\n"
    ));
    assert!(
        err.starts_with("8:17: ") && err.contains("webhook-timestamp"),
        "{err}"
    );
}
