use std::path::Path;

use crate::config::{parse, Backend, Config};

const PASSWORD: &str = "hunter2-correct-horse";

fn parsed(text: &str) -> Result<Config, String> {
    parse(text, Path::new("/etc/posthorn/c.toml")).map_err(|e| e.to_string())
}

fn postgres(rest: &str) -> String {
    format!("[storage]\nbackend = \"postgres\"\n{rest}")
}

/// The one problem `text` has, which must not show the password.
fn refused(text: &str) -> String {
    let err = parse(text, Path::new("/etc/posthorn/c.toml")).expect_err("refused");
    assert_eq!(err.problems.len(), 1, "expected one problem, got: {err}");
    let shown = err.to_string();
    assert!(!shown.contains(PASSWORD), "the password is shown: {shown}");
    shown
}

fn check(size: &str) -> Result<Option<u64>, String> {
    parse(
        &format!("[storage]\nmax_size = {size:?}\n"),
        Path::new("/tmp/c.toml"),
    )
    .map(|c| c.storage.max_size)
    .map_err(|e| e.to_string())
}

#[test]
fn a_max_size_below_what_the_store_needs_is_refused_with_the_minimum() {
    let err = check("3MiB").unwrap_err();
    assert!(
        err.contains("/tmp/c.toml:2:12:") && err.contains("write at least \"5MiB\""),
        "{err}"
    );
    assert_eq!(check("5MiB"), Ok(Some(5 << 20)));
}

#[test]
fn sqlite_is_the_default_backend() {
    let config = parsed("").unwrap();
    assert_eq!(config.storage.backend, Backend::Sqlite);
    let config = parsed("[storage]\nbackend = \"sqlite\"\npath = \"p.db\"\n").unwrap();
    assert_eq!(config.storage.backend, Backend::Sqlite);
    assert_eq!(config.storage.location(), "/etc/posthorn/p.db");
}

#[test]
fn a_postgres_url_is_kept_whole_and_shown_without_its_password() {
    let url = format!("postgres://posthorn:{PASSWORD}@db.internal:5432/posthorn");
    let config = parsed(&postgres(&format!("url = {url:?}\n"))).unwrap();
    let Backend::Postgres { url: kept } = &config.storage.backend else {
        panic!("{:?}", config.storage.backend)
    };
    assert_eq!(kept.expose(), url);
    assert_eq!(
        config.storage.location(),
        "postgres://posthorn:[redacted]@db.internal:5432/posthorn"
    );
    let debug = format!("{config:?}");
    assert!(!debug.contains(PASSWORD), "{debug}");
    assert!(debug.contains("db.internal:5432/posthorn"), "{debug}");
}

#[test]
fn the_url_may_come_from_the_environment_or_a_file() {
    let url = format!("postgresql://posthorn:{PASSWORD}@db/posthorn");
    std::env::set_var("POSTHORN_TEST_STORAGE_URL", &url);
    let config = parsed(&postgres("url_env = \"POSTHORN_TEST_STORAGE_URL\"\n")).unwrap();
    assert!(matches!(&config.storage.backend, Backend::Postgres { url: u } if u.expose() == url));

    let dir = tempfile::tempdir().unwrap();
    let file = dir.path().join("db-url");
    std::fs::write(&file, format!("{url}\n")).unwrap();
    let config = parsed(&postgres(&format!("url_file = {file:?}\n"))).unwrap();
    assert!(matches!(&config.storage.backend, Backend::Postgres { url: u } if u.expose() == url));
}

#[test]
fn an_unknown_backend_is_refused_where_it_is_written() {
    let err = refused("[storage]\nbackend = \"mysql\"\n");
    assert!(
        err.contains("2:11: storage.backend = \"mysql\" is not known"),
        "{err}"
    );
}

#[test]
fn postgres_without_a_url_is_refused() {
    let err = refused(&postgres(""));
    assert!(
        err.contains("2:11: storage.backend = \"postgres\" needs the database: set one of url"),
        "{err}"
    );
}

#[test]
fn a_url_with_the_sqlite_backend_is_refused() {
    for text in [
        format!("[storage]\nurl = \"postgres://u:{PASSWORD}@db/p\"\n"),
        "[storage]\nbackend = \"sqlite\"\nurl_env = \"DATABASE_URL\"\n".to_string(),
    ] {
        let err = refused(&text);
        assert!(
            err.contains("names a PostgreSQL database, but the backend is \"sqlite\""),
            "{err}"
        );
    }
}

#[test]
fn more_than_one_url_key_is_refused() {
    let err = refused(&postgres(&format!(
        "url = \"postgres://u:{PASSWORD}@db/p\"\nurl_env = \"DATABASE_URL\"\n"
    )));
    assert!(
        err.contains("4:11: storage: set only one of url, url_env and url_file"),
        "{err}"
    );
}

#[test]
fn a_url_that_is_not_postgres_is_refused_without_showing_it() {
    for url in [
        format!("mysql://root:{PASSWORD}@db/p"),
        format!("host=db password={PASSWORD}"),
    ] {
        let err = refused(&postgres(&format!("url = {url:?}\n")));
        assert!(
            err.contains("3:7: storage.url must start with postgres:// or postgresql://"),
            "{err}"
        );
    }
}

#[test]
fn a_url_that_does_not_parse_is_refused_without_its_password() {
    let err = refused(&postgres(&format!(
        "url = \"postgres://u:{PASSWORD}@db:notaport/p\"\n"
    )));
    assert!(
        err.contains("storage.url postgres://u:[redacted]@db:notaport/p does not parse"),
        "{err}"
    );
    let err = refused(&postgres(&format!(
        "url = \"postgres://u:{PASSWORD}@db/p?sslmode=require\"\n"
    )));
    assert!(err.contains("asks for TLS (sslmode=require)"), "{err}");
}

#[test]
fn a_url_in_a_variable_or_file_is_checked_and_named_by_where_it_came_from() {
    std::env::set_var(
        "POSTHORN_TEST_STORAGE_BAD_URL",
        format!("mysql://u:{PASSWORD}@db/p"),
    );
    let err = refused(&postgres("url_env = \"POSTHORN_TEST_STORAGE_BAD_URL\"\n"));
    assert!(
        err.contains("the URL in POSTHORN_TEST_STORAGE_BAD_URL (storage.url_env) must start"),
        "{err}"
    );
    let err = refused(&postgres("url_env = \"POSTHORN_TEST_STORAGE_UNSET\"\n"));
    assert!(err.contains("is not set or empty"), "{err}");
    let err = refused(&postgres("url_file = \"/nonexistent/db-url\"\n"));
    assert!(
        err.contains("storage.url_file: while reading /nonexistent/db-url"),
        "{err}"
    );
}

#[test]
fn sqlite_only_keys_with_postgres_are_refused() {
    let url = format!("url = \"postgres://u:{PASSWORD}@db/p\"\n");
    let err = refused(&postgres(&format!("{url}path = \"p.db\"\n")));
    assert!(
        err.contains("4:8: storage.path is the SQLite file; with backend = \"postgres\""),
        "{err}"
    );
    let err = refused(&postgres(&format!("{url}max_size = \"1GiB\"\n")));
    assert!(
        err.contains("4:12: storage.max_size is for the SQLite file only"),
        "{err}"
    );
}

#[test]
fn the_commented_postgres_example_parses_once_uncommented() {
    let example = include_str!("../../config.example.toml");
    let lines: Vec<&str> = ["# backend = \"postgres\"", "# url_env = "]
        .iter()
        .map(|start| {
            example
                .lines()
                .find(|line| line.starts_with(start))
                .unwrap_or_else(|| panic!("config.example.toml has no {start:?} line"))
                .trim_start_matches("# ")
        })
        .collect();
    let var = lines[1]
        .split('"')
        .nth(1)
        .expect("url_env names a variable");
    std::env::set_var(var, format!("postgres://posthorn:{PASSWORD}@db/posthorn"));
    let config = parsed(&format!("[storage]\n{}\n", lines.join("\n"))).unwrap();
    assert!(matches!(config.storage.backend, Backend::Postgres { .. }));
}
