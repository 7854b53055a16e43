//! The command line, run as an operator runs it: `check-config` on good files (the
//! shipped `config.example.toml` included) and on each kind of bad file, where every
//! problem is named as `file:line:column: message` and no secret is ever printed;
//! `gen-secret`; and `serve` with no subscriptions, with a bad config, with the user's
//! config file, and on embedded defaults inside a temporary home.

mod common;

use std::path::{Path, PathBuf};
use std::process::{Command, Stdio};
use std::time::Duration;

use base64::engine::general_purpose::STANDARD as BASE64;
use base64::Engine as _;
use common::{subscription, wait_for, Home, Serve, SECRET};

/// A subscription that is valid on its own, appended to the bad configs so that their
/// output can be checked for its secret.
fn good_block() -> String {
    subscription(
        "good",
        "http://127.0.0.1:9/hook",
        r#"conversations = ["c-204", "c-2*"]"#,
        r#"["conversation.*"]"#,
    )
}

/// What a one-shot command did.
#[derive(Debug)]
struct Output {
    code: Option<i32>,
    stdout: String,
    stderr: String,
}

impl Output {
    fn all(&self) -> String {
        format!("{}{}", self.stdout, self.stderr)
    }
}

/// Runs `command` to completion (killed after 20 s, so a command that wrongly keeps
/// running fails the test instead of hanging it) and collects its output.
fn run_bounded(mut command: Command, scratch: &Path) -> Output {
    let stdout_path = scratch.join("stdout.txt");
    let stderr_path = scratch.join("stderr.txt");
    let mut child = command
        .stdin(Stdio::null())
        .stdout(std::fs::File::create(&stdout_path).expect("stdout file"))
        .stderr(std::fs::File::create(&stderr_path).expect("stderr file"))
        .spawn()
        .expect("run posthorn");
    let status =
        common::cli::wait_bounded(&mut child, Duration::from_secs(20), &format!("{command:?}"));
    Output {
        code: status.code(),
        stdout: std::fs::read_to_string(&stdout_path).unwrap_or_default(),
        stderr: std::fs::read_to_string(&stderr_path).unwrap_or_default(),
    }
}

/// `posthorn ARGS` with POSTHORN_CONFIG unset.
fn posthorn(args: &[&str]) -> Command {
    let mut command = Command::new(common::binary());
    command.args(args).env_remove("POSTHORN_CONFIG");
    command
}

/// Writes `text` as `name` in a fresh temp dir and runs `check-config` on it.
fn check(text: &str) -> (tempfile::TempDir, PathBuf, Output) {
    let dir = tempfile::tempdir().expect("a temp dir");
    let path = dir.path().join("config.toml");
    std::fs::write(&path, text).expect("write the config");
    let output = run_bounded(
        posthorn(&["check-config", "--config", &path.display().to_string()]),
        dir.path(),
    );
    (dir, path, output)
}

/// Asserts that `output` failed and names a problem at `line`:`column` of `path` whose
/// message contains `needle`.
fn assert_problem(output: &Output, path: &Path, line: usize, column: usize, needle: &str) {
    assert!(
        output.code.is_some_and(|c| c != 0),
        "expected a non-zero exit for a bad config; got {:?} with {output:?}",
        output.code
    );
    let prefix = format!("{}:{line}:{column}: ", path.display());
    let found = output
        .stderr
        .lines()
        .any(|l| l.starts_with(&prefix) && l.contains(needle));
    assert!(
        found,
        "expected a line starting {prefix:?} and containing {needle:?}; stderr was:\n{}",
        output.stderr
    );
}

/// Asserts that none of `secrets` (nor their base64 part) appears in the output.
fn assert_no_secret(output: &Output, secrets: &[&str]) {
    let all = output.all();
    for secret in secrets {
        let core = secret.strip_prefix("whsec_").unwrap_or(secret);
        assert!(
            !all.contains(core),
            "a secret ({} chars) appears in the output:\n{all}",
            secret.len()
        );
    }
}

#[test]
fn check_config_accepts_a_good_file_and_counts_its_subscriptions() {
    let text = format!(
        "[storage]\npath = \"data/posthorn.db\"\n[spool]\ndir = \"spool\"\nkeep_done = true\n\
         max_event_bytes = \"512KiB\"\nrescan_interval = \"500ms\"\n\
         [delivery]\nschedule = [\"5s\", \"5m\", \"2h\"]\ntimeout = \"10s\"\nworkers = 4\n\
         max_in_flight_per_endpoint = 2\n{}\n[[subscription]]\nname = \"hex\"\n\
         url = \"https://example.org/hook\"\nprojects = [\"p-9\"]\nevents = [\"*\"]\n\
         secret = \"shared-hex-key\"\nsignature = \"hex\"\nsignature_header = \"X-Sig\"\n\
         signature_prefix = \"sha256=\"\nheaders = {{ \"X-Team\" = \"north\" }}\nenabled = false\n",
        good_block()
    );
    let (_dir, path, output) = check(&text);
    assert_eq!(
        output.code,
        Some(0),
        "a good config is accepted: {output:?}"
    );
    assert!(
        output
            .stdout
            .contains(&format!("{}: ok (2 subscriptions)", path.display())),
        "check-config says the file is ok and counts its subscriptions: {output:?}"
    );
    assert_no_secret(&output, &[SECRET, "shared-hex-key"]);
}

#[test]
fn check_config_accepts_the_shipped_example() {
    let example = Path::new(env!("CARGO_MANIFEST_DIR")).join("config.example.toml");
    assert!(
        example.is_file(),
        "config.example.toml should ship at the repo root ({})",
        example.display()
    );
    let scratch = tempfile::tempdir().expect("a temp dir");
    let output = run_bounded(
        posthorn(&["check-config", &example.display().to_string()]),
        scratch.path(),
    );
    assert_eq!(
        output.code,
        Some(0),
        "config.example.toml must stay valid: {output:?}"
    );
    assert!(output.stdout.contains(": ok ("), "{output:?}");
}

#[test]
fn check_config_reads_posthorn_config_when_no_path_is_given() {
    let dir = tempfile::tempdir().expect("a temp dir");
    let path = dir.path().join("from-env.toml");
    std::fs::write(&path, "[delivery]\ntimeout = \"soon\"\n").unwrap();
    let mut command = posthorn(&["check-config"]);
    command.env("POSTHORN_CONFIG", &path);
    let output = run_bounded(command, dir.path());
    assert_problem(&output, &path, 2, 11, "is not a duration");
}

#[test]
fn a_misspelt_key_is_named_with_its_line_column_and_the_keys_expected() {
    let (_dir, path, output) = check(&format!(
        "[[subscription]]\nname = \"north\"\nurl = \"http://127.0.0.1:9/hook\"\n\
         conversations = [\"c-204\"]\nevnets = [\"conversation.*\"]\nsecret = {SECRET:?}\n"
    ));
    assert_problem(&output, &path, 5, 1, "unknown field `evnets`");
    assert_problem(&output, &path, 5, 1, "`events`");
    assert_no_secret(&output, &[SECRET]);

    let (_dir, path, output) = check(&format!("[storage]\npth = \"x.db\"\n{}", good_block()));
    assert_problem(
        &output,
        &path,
        2,
        1,
        "unknown field `pth`, expected one of `path`",
    );
    assert_no_secret(&output, &[SECRET]);
}

#[test]
fn a_bad_duration_says_how_to_write_one() {
    let (_dir, path, output) = check(&format!(
        "[delivery]\nschedule = [\"5s\", \"5 minutes\"]\n{}",
        good_block()
    ));
    assert_problem(&output, &path, 2, 19, "\"5 minutes\" is not a duration");
    assert_problem(&output, &path, 2, 19, "like \"30s\"");
    assert_no_secret(&output, &[SECRET]);

    let (_dir, path, output) = check(&format!("[delivery]\ntimeout = 30\n{}", good_block()));
    assert_problem(&output, &path, 2, 11, "has no unit");
}

#[test]
fn a_value_of_the_wrong_type_names_the_type_expected() {
    let (_dir, path, output) = check(&format!("[delivery]\nworkers = \"many\"\n{}", good_block()));
    assert_problem(&output, &path, 2, 11, "invalid type: string \"many\"");
    assert_no_secret(&output, &[SECRET]);

    let (_dir, path, output) = check(&format!(
        "[[subscription]]\nname = \"north\"\nurl = \"http://127.0.0.1:9/hook\"\n\
         conversations = \"c-204\"\nevents = [\"conversation.*\"]\nsecret = {SECRET:?}\n"
    ));
    assert_problem(&output, &path, 4, 17, "expected a sequence");
    assert_no_secret(&output, &[SECRET]);
}

#[test]
fn duplicate_subscription_names_point_at_the_second_and_name_the_first() {
    let text = format!(
        "{}{}",
        subscription(
            "north",
            "http://127.0.0.1:9/a",
            r#"conversations = ["c-1"]"#,
            r#"["*"]"#
        ),
        subscription(
            "north",
            "http://127.0.0.1:9/b",
            r#"conversations = ["c-2"]"#,
            r#"["*"]"#
        )
    );
    // subscription() starts each block with an empty line: names on lines 3 and 10.
    let (_dir, path, output) = check(&text);
    assert_problem(
        &output,
        &path,
        10,
        8,
        "subscription name \"north\" is already used on line 3",
    );
    assert_no_secret(&output, &[SECRET]);
}

#[test]
fn a_subscription_without_conversations_or_projects_is_refused() {
    let (_dir, path, output) = check(&format!(
        "[[subscription]]\nname = \"everything\"\nurl = \"http://127.0.0.1:9/hook\"\n\
         events = [\"*\"]\nsecret = {SECRET:?}\n"
    ));
    assert_problem(&output, &path, 2, 8, "needs conversations or projects");
    assert_no_secret(&output, &[SECRET]);
}

#[test]
fn a_subscription_without_events_is_refused() {
    let (_dir, path, output) = check(&format!(
        "[[subscription]]\nname = \"north\"\nurl = \"http://127.0.0.1:9/hook\"\n\
         conversations = [\"c-204\"]\nsecret = {SECRET:?}\n"
    ));
    assert_problem(&output, &path, 2, 8, "is missing events");
    assert_no_secret(&output, &[SECRET]);

    let (_dir, path, output) = check(&format!(
        "[[subscription]]\nname = \"north\"\nurl = \"http://127.0.0.1:9/hook\"\n\
         conversations = [\"c-204\"]\nevents = []\nsecret = {SECRET:?}\n"
    ));
    assert_problem(&output, &path, 5, 10, "events is empty");
}

#[test]
fn a_standard_signature_with_a_secret_that_is_not_whsec_is_refused_without_showing_it() {
    let plain = "hunter2-correct-horse-battery";
    let (_dir, path, output) = check(&format!(
        "[[subscription]]\nname = \"north\"\nurl = \"http://127.0.0.1:9/hook\"\n\
         conversations = [\"c-204\"]\nevents = [\"*\"]\nsecret = {plain:?}\n{}",
        good_block()
    ));
    assert_problem(
        &output,
        &path,
        6,
        10,
        "not usable with signature = \"standard\"",
    );
    assert_no_secret(&output, &[plain, SECRET]);

    // The same through secret_env, and with one bad secret among two during rotation.
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("config.toml");
    std::fs::write(
        &path,
        "[[subscription]]\nname = \"north\"\nurl = \"http://127.0.0.1:9/hook\"\n\
         conversations = [\"c-204\"]\nevents = [\"*\"]\nsecret_env = \"POSTHORN_TEST_SECRET\"\n",
    )
    .unwrap();
    let rotating = format!("{SECRET} {plain}");
    let mut command = posthorn(&["check-config", "--config", &path.display().to_string()]);
    command.env("POSTHORN_TEST_SECRET", &rotating);
    let output = run_bounded(command, dir.path());
    assert_problem(&output, &path, 6, 14, "(secret 2 of 2) is not usable");
    assert_no_secret(&output, &[plain, SECRET]);
}

#[test]
fn secret_env_naming_an_unset_variable_names_the_variable_but_no_secret() {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("config.toml");
    std::fs::write(
        &path,
        format!(
            "[[subscription]]\nname = \"north\"\nurl = \"http://127.0.0.1:9/hook\"\n\
             conversations = [\"c-204\"]\nevents = [\"*\"]\nsecret_env = \"POSTHORN_TEST_UNSET\"\n{}",
            good_block()
        ),
    )
    .unwrap();
    let other = "whsec_c2VjcmV0LWluLWFub3RoZXItdmFyaWFibGUtMTIzNDU2";
    let mut command = posthorn(&["check-config", "--config", &path.display().to_string()]);
    command
        .env_remove("POSTHORN_TEST_UNSET")
        .env("POSTHORN_TEST_OTHER", other);
    let output = run_bounded(command, dir.path());
    assert_problem(
        &output,
        &path,
        6,
        14,
        "environment variable POSTHORN_TEST_UNSET named by secret_env is not set or empty",
    );
    assert_no_secret(&output, &[SECRET, other]);
}

#[test]
fn a_secret_pasted_into_secret_env_is_refused_without_showing_it() {
    // A realistic slip: the secret itself where the variable's name belongs.
    let (_dir, path, output) = check(&format!(
        "[[subscription]]\nname = \"north\"\nurl = \"http://127.0.0.1:9/hook\"\n\
         conversations = [\"c-204\"]\nevents = [\"*\"]\nsecret_env = {SECRET:?}\n"
    ));
    assert_problem(
        &output,
        &path,
        6,
        14,
        "secret_env must name an environment variable",
    );
    assert_no_secret(&output, &[SECRET]);

    let hex_key = "shared-key-for-the-hex-recipe";
    let (_dir, path, output) = check(&format!(
        "[[subscription]]\nname = \"south\"\nurl = \"http://127.0.0.1:9/hook\"\n\
         projects = [\"p-9\"]\nevents = [\"*\"]\nsignature = \"hex\"\nsecret_env = {hex_key:?}\n"
    ));
    assert_problem(
        &output,
        &path,
        7,
        14,
        "secret_env must name an environment variable",
    );
    assert_no_secret(&output, &[hex_key]);
}

#[test]
fn invalid_toml_syntax_is_located() {
    let (_dir, path, output) = check(&format!(
        "[spool]\ndir = \"/tmp/spool\nkeep_done = true\n{}",
        good_block()
    ));
    assert_problem(&output, &path, 2, 18, "invalid basic string");
    assert_no_secret(&output, &[SECRET]);

    let (_dir, path, output) = check("[delivery\nworkers = 4\n");
    assert_problem(&output, &path, 1, 10, "");
}

#[test]
fn a_config_file_that_does_not_exist_is_named() {
    let dir = tempfile::tempdir().unwrap();
    let missing = dir.path().join("nope.toml");
    let output = run_bounded(
        posthorn(&["check-config", &missing.display().to_string()]),
        dir.path(),
    );
    assert!(
        output.code.is_some_and(|c| c != 0),
        "a missing file fails: {output:?}"
    );
    assert!(
        output.stderr.contains(&format!(
            "{}: while reading the config file",
            missing.display()
        )),
        "the error names the file and what went wrong: {output:?}"
    );
}

#[test]
fn every_problem_in_a_file_is_named_not_just_the_first() {
    let text = format!(
        "{}\n[[subscription]]\nname = \"good\"\nurl = \"http://127.0.0.1:9/b\"\nevents = [\"*\"]\n\
         secret = \"not-a-whsec\"\n",
        good_block()
    );
    let (_dir, path, output) = check(&text);
    let lines = output.stderr.lines().count();
    assert!(
        lines >= 3,
        "three problems, three lines; got:\n{}",
        output.stderr
    );
    assert_problem(&output, &path, 10, 8, "already used on line 3");
    assert_problem(&output, &path, 10, 8, "needs conversations or projects");
    assert_problem(&output, &path, 13, 10, "not usable");
    assert_no_secret(&output, &[SECRET, "not-a-whsec"]);
}

#[test]
fn gen_secret_prints_a_fresh_32_byte_whsec_secret_that_check_config_accepts() {
    let scratch = tempfile::tempdir().unwrap();
    let mut secrets = Vec::new();
    for _ in 0..2 {
        let output = run_bounded(posthorn(&["gen-secret"]), scratch.path());
        assert_eq!(output.code, Some(0), "{output:?}");
        let secret = output.stdout.trim().to_string();
        let encoded = secret
            .strip_prefix("whsec_")
            .unwrap_or_else(|| panic!("expected a whsec_ secret, got {secret:?}"));
        let bytes = BASE64
            .decode(encoded)
            .unwrap_or_else(|err| panic!("{secret:?} is not whsec_<base64>: {err}"));
        assert_eq!(bytes.len(), 32, "{secret:?} holds {} bytes", bytes.len());
        secrets.push(secret);
    }
    assert_ne!(secrets[0], secrets[1], "each run makes a new secret");

    let (_dir, _path, output) = check(&good_block().replace(SECRET, &secrets[0]));
    assert_eq!(
        output.code,
        Some(0),
        "a generated secret is usable: {output:?}"
    );
}

#[test]
fn serve_with_no_subscriptions_starts_says_so_and_stores_events() {
    let home = Home::new();
    home.write_config("");
    let serve = Serve::start(&home);
    assert!(
        serve.log().contains("no subscriptions configured"),
        "the log says there are no subscriptions:\n{}",
        serve.log()
    );
    home.drop_json(
        "e.json",
        r#"{"id":"evt_lonely","type":"conversation.started","conversation_id":"c-1"}"#,
    );
    wait_for("the event to be stored", Duration::from_secs(10), || {
        home.count("SELECT count(*) FROM events WHERE id = 'evt_lonely'") == 1
    });
    assert_eq!(home.count("SELECT count(*) FROM deliveries"), 0);
    assert_eq!(serve.terminate(), Some(0), "serve exits 0 on SIGTERM");
}

#[test]
fn serve_with_a_bad_config_exits_non_zero_naming_the_problem_and_touches_nothing() {
    let home = Home::new();
    let path = home.write_config(&format!(
        "{}\n[[subscription]]\nname = \"typo\"\nurl = \"http://127.0.0.1:9/\"\n\
         conversations = [\"*\"]\nevents = [\"*\"]\nsecret = {SECRET:?}\nenabeld = false\n",
        good_block()
    ));
    let output = run_bounded(
        posthorn(&["serve", "--config", &path.display().to_string()]),
        home.path(),
    );
    assert!(
        output.code.is_some_and(|c| c != 0),
        "serve refuses a bad config: {output:?}"
    );
    assert!(
        output.stderr.contains(&format!("{}:", path.display()))
            && output.stderr.contains("unknown field `enabeld`"),
        "serve names the file and the problem: {output:?}"
    );
    assert_no_secret(&output, &[SECRET]);
    assert!(
        !home.db().exists(),
        "nothing is created when the config is bad"
    );
}

/// `posthorn serve` with no --config, POSTHORN_CONFIG unset, and HOME and the XDG dirs
/// inside `root`, so nothing touches the real home.
fn serve_in_temp_home(root: &Path) -> Command {
    let mut command = posthorn(&["serve"]);
    command
        .env("HOME", root)
        .env("XDG_CONFIG_HOME", root.join("config"))
        .env("XDG_DATA_HOME", root.join("data"))
        .env("POSTHORN_LOG", "info");
    command
}

#[test]
fn serve_without_any_config_runs_on_embedded_defaults_under_the_data_dir() {
    let home = Home::new();
    let serve = Serve::start_with(&home, serve_in_temp_home(home.path()));
    assert!(
        serve.log().contains("embedded defaults"),
        "the log says it runs on embedded defaults:\n{}",
        serve.log()
    );
    let data = home.path().join("data").join("posthorn");
    let db = data.join("posthorn.db");
    assert!(db.is_file(), "the store is created at {}", db.display());
    assert!(data.join("spool").is_dir(), "the spool dir is created");

    // It works: an event dropped in the default spool is stored in the default store.
    let temp = data.join("spool").join(".e.tmp");
    std::fs::write(
        &temp,
        r#"{"id":"evt_default","type":"conversation.started","conversation_id":"c-1"}"#,
    )
    .unwrap();
    std::fs::rename(&temp, data.join("spool").join("e.json")).unwrap();
    wait_for(
        "the event to be stored in the default store",
        Duration::from_secs(10),
        || {
            rusqlite::Connection::open_with_flags(&db, rusqlite::OpenFlags::SQLITE_OPEN_READ_ONLY)
                .and_then(|c| {
                    c.query_row(
                        "SELECT count(*) FROM events WHERE id = 'evt_default'",
                        [],
                        |r| r.get::<_, i64>(0),
                    )
                })
                .is_ok_and(|n| n == 1)
        },
    );
    assert_eq!(serve.terminate(), Some(0));
}

#[test]
fn serve_without_config_flag_reads_the_users_config_file() {
    let home = Home::new();
    let user_config = home
        .path()
        .join("config")
        .join("posthorn")
        .join("config.toml");
    std::fs::create_dir_all(user_config.parent().unwrap()).unwrap();
    let db = home.path().join("from-user-config.db");
    std::fs::write(
        &user_config,
        format!(
            "[storage]\npath = {:?}\n[spool]\ndir = {:?}\n[http]\nlisten = \"127.0.0.1:{}\"\n",
            db.display().to_string(),
            home.spool().display().to_string(),
            home.port
        ),
    )
    .unwrap();
    let serve = Serve::start_with(&home, serve_in_temp_home(home.path()));
    assert!(
        serve.log().contains(&user_config.display().to_string()),
        "the log names the user's config file {}:\n{}",
        user_config.display(),
        serve.log()
    );
    assert!(db.is_file(), "the store is where the user's config says");
    assert!(
        !home
            .path()
            .join("data")
            .join("posthorn")
            .join("posthorn.db")
            .exists(),
        "the default store is not used"
    );
    assert_eq!(serve.terminate(), Some(0));
}
