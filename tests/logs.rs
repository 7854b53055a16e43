//! Logs end to end, against the real binary: `--log-format json` writes one JSON object per
//! line with the level and the structured fields; the level comes from `[log] level`,
//! follows a reload, and `POSTHORN_LOG` wins over it; and no secret ever reaches the log,
//! whatever the level, the format, or what a reload did.

mod common;

use std::process::Command;
use std::time::Duration;

use common::{binary, hook, signal, spool_event, wait_for, Home, Receiver, Serve, SECRET};

const LONG: Duration = Duration::from_secs(15);

/// `posthorn serve` with `args` after the config, and `POSTHORN_LOG` as given (`None`:
/// unset, so the config decides).
fn serve(home: &Home, args: &[&str], env_level: Option<&str>) -> Serve {
    let mut command = Command::new(binary());
    command
        .args(["serve", "--config"])
        .arg(home.config_path())
        .args(args)
        .env_remove("JOURNAL_STREAM");
    match env_level {
        Some(level) => command.env("POSTHORN_LOG", level),
        None => command.env_remove("POSTHORN_LOG"),
    };
    Serve::start_with(home, command)
}

fn debug_lines(log: &str) -> usize {
    log.lines().filter(|l| l.contains(" DEBUG ")).count()
}

#[test]
fn json_log_lines_parse_with_level_and_fields() {
    let receiver = Receiver::start(500);
    let home = Home::new();
    home.write_config(&hook("s", &format!("{}/s", receiver.url)));
    let serve = serve(&home, &["--log-format", "json"], Some("info"));
    home.drop_json("one.json", &spool_event("evt_1"));
    wait_for("the failed attempt to be logged", LONG, || {
        serve.log().contains("delivery attempt failed")
    });

    let log = serve.log();
    let lines: Vec<serde_json::Value> = log
        .lines()
        .map(|line| {
            serde_json::from_str(line)
                .unwrap_or_else(|err| panic!("a log line is not JSON ({err}): {line}"))
        })
        .collect();
    assert!(lines.len() >= 3, "{log}");
    for line in &lines {
        let level = line["level"].as_str().unwrap_or_default();
        assert!(
            ["ERROR", "WARN", "INFO"].contains(&level),
            "level at info and above: {line}"
        );
        assert!(line["fields"]["message"].is_string(), "{line}");
        assert!(line["target"].as_str().is_some(), "{line}");
        assert!(line["timestamp"].as_str().is_some(), "{line}");
    }
    let failed = lines
        .iter()
        .find(|l| l["fields"]["message"] == "delivery attempt failed")
        .expect("the attempt's line");
    assert_eq!(failed["fields"]["subscription"], "s");
    assert_eq!(failed["fields"]["event"], "evt_1");
    assert_eq!(failed["fields"]["status"], 500);
    assert_eq!(failed["fields"]["attempt"], 1);
    assert!(lines
        .iter()
        .any(|l| l["fields"]["message"] == "posthorn is running" && l["level"] == "INFO"));
}

#[test]
fn plain_is_the_default_format() {
    let home = Home::new();
    home.write_config("");
    let serve = serve(&home, &[], Some("info"));
    let log = serve.log();
    let running = log
        .lines()
        .find(|l| l.contains("posthorn is running"))
        .unwrap();
    assert!(
        running.contains(" INFO posthorn::serve: posthorn is running"),
        "{running}"
    );
    assert!(serde_json::from_str::<serde_json::Value>(running).is_err());
    assert!(!log.contains('\u{1b}'), "no colour codes off a terminal");
}

#[test]
fn the_level_comes_from_the_config_and_follows_a_reload() {
    let receiver = Receiver::start(204);
    let home = Home::new();
    let sub = hook("s", &format!("{}/s", receiver.url));
    home.write_config(&format!("[log]\nlevel = \"info\"\n{sub}"));
    let serve = serve(&home, &[], None);
    home.drop_json("one.json", &spool_event("evt_1"));
    wait_for("evt_1", LONG, || receiver.count_of("evt_1") == 1);
    assert_eq!(debug_lines(&serve.log()), 0, "info hides debug lines");

    home.write_config(&format!("[log]\nlevel = \"posthorn=debug,info\"\n{sub}"));
    signal(serve.pid(), "HUP");
    wait_for("the reload", LONG, || {
        serve.log().contains("configuration reloaded")
    });
    home.drop_json("two.json", &spool_event("evt_2"));
    wait_for("a debug line after the reload", LONG, || {
        serve
            .log()
            .lines()
            .any(|l| l.contains(" DEBUG posthorn::spool: spool batch committed"))
    });
    assert!(serve.log().contains("settings changed: log.level"));
}

#[test]
fn posthorn_log_wins_over_the_config_level() {
    let receiver = Receiver::start(204);
    let home = Home::new();
    home.write_config(&format!(
        "[log]\nlevel = \"debug\"\n{}",
        hook("s", &format!("{}/s", receiver.url))
    ));
    let by_env = serve(&home, &[], Some("info"));
    home.drop_json("one.json", &spool_event("evt_1"));
    wait_for("evt_1", LONG, || receiver.count_of("evt_1") == 1);
    assert_eq!(by_env.terminate(), Some(0));

    let by_config = serve(&home, &[], None);
    home.drop_json("two.json", &spool_event("evt_2"));
    wait_for("evt_2", LONG, || receiver.count_of("evt_2") == 1);
    wait_for("debug lines from [log] level", LONG, || {
        debug_lines(&by_config.log()) > 0
    });
    // The first run's log is its own file; it had none.
    let first_log: Vec<_> = std::fs::read_dir(home.path())
        .unwrap()
        .filter_map(Result::ok)
        .map(|e| e.path())
        .filter(|p| p.extension().is_some_and(|e| e == "log"))
        .map(|p| std::fs::read_to_string(p).unwrap())
        .filter(|text| debug_lines(text) == 0)
        .collect();
    assert_eq!(first_log.len(), 1, "POSTHORN_LOG=info kept debug lines out");
}

#[test]
fn secrets_never_appear_in_the_log() {
    const HEX_SECRET: &str = "hex-secret-from-the-environment-4711";
    const NEW_SECRET: &str = "whsec_AAECAwQFBgcICQoLDA0ODxAREhMUFRYXGBkaGxwdHh8=";
    let secrets = [
        SECRET,
        SECRET.trim_start_matches("whsec_"),
        NEW_SECRET.trim_start_matches("whsec_"),
        HEX_SECRET,
        "hunter2",
    ];
    for format in ["plain", "json"] {
        let receiver = Receiver::start(500);
        let home = Home::new();
        let hex = format!(
            "\n[[subscription]]\nname = \"hex\"\nurl = \"http://ops:hunter2@127.0.0.1:{}/hex?token=hunter2\"\n\
             conversations = [\"*\"]\nevents = [\"*\"]\nsignature = \"hex\"\nsecret_env = \"HEX_SECRET\"\n",
            receiver.url.rsplit(':').next().unwrap()
        );
        let standard = hook("std", &format!("{}/std", receiver.url));
        home.write_config(&format!("{standard}{hex}"));
        let mut command = Command::new(binary());
        command
            .args(["serve", "--log-format", format, "--config"])
            .arg(home.config_path())
            .env("POSTHORN_LOG", "trace")
            .env("HEX_SECRET", HEX_SECRET);
        let serve = Serve::start_with(&home, command);
        home.drop_json("one.json", &spool_event("evt_1"));
        wait_for("failed attempts to both", LONG, || {
            let hex = receiver
                .requests()
                .iter()
                .filter(|r| r.path.starts_with("/hex?"))
                .count();
            receiver.at("/std").len() >= 2 && hex >= 2
        });

        // A reload that rotates the secret, then one refused with the secret in the file
        // where a variable name belongs.
        home.write_config(&format!(
            "{}{hex}",
            standard.replace(SECRET, &format!("{SECRET} {NEW_SECRET}"))
        ));
        signal(serve.pid(), "HUP");
        wait_for("the reload", LONG, || {
            serve.log().contains("configuration reloaded")
        });
        home.write_config(&format!(
            "{}{}",
            standard.replace(
                &format!("secret = {SECRET:?}"),
                &format!("secret_env = {SECRET:?}")
            ),
            hex
        ));
        signal(serve.pid(), "HUP");
        wait_for("the refusal", LONG, || {
            serve.log().contains("reload refused")
        });
        wait_for("the refusal's reason", LONG, || {
            serve.log().contains("not hold the secret itself")
        });
        assert_eq!(serve.terminate(), Some(0));

        let log = std::fs::read_dir(home.path())
            .unwrap()
            .filter_map(Result::ok)
            .map(|e| e.path())
            .filter(|p| p.extension().is_some_and(|e| e == "log"))
            .map(|p| std::fs::read_to_string(p).unwrap())
            .collect::<String>();
        assert!(log.contains("delivery attempt failed"), "{format}: {log}");
        assert!(
            log.contains("[redacted]@127.0.0.1"),
            "{format}: the URL is logged, redacted"
        );
        for secret in secrets {
            let leaks: Vec<&str> = log.lines().filter(|l| l.contains(secret)).collect();
            assert!(
                leaks.is_empty(),
                "{format}: the log holds the secret {secret:?}:\n{}",
                leaks.join("\n")
            );
        }
    }
}
