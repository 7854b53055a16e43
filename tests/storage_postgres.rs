//! `[storage] backend = "postgres"` as an operator meets it: `check-config` takes it and
//! never shows the password, `serve` refuses it rather than quietly using SQLite (until
//! the store runs on PostgreSQL), and the shared test cluster (tests/common/pg.rs) hands
//! integration tests empty databases of their own.
mod common;

use common::cli::{run, Output};

const PASSWORD: &str = "hunter2-correct-horse";

/// Writes `config` in a fresh home and runs `posthorn ARGS --config PATH` there.
fn posthorn(args: &[&str], config: &str, envs: &[(&str, &str)]) -> (tempfile::TempDir, Output) {
    let home = tempfile::tempdir().expect("a temp dir");
    let path = home.path().join("config.toml");
    std::fs::write(&path, config).expect("write the config");
    let mut args = args.to_vec();
    let path = path.display().to_string();
    args.extend(["--config", &path]);
    let output = run(home.path(), &args, envs, None);
    (home, output)
}

fn assert_no_password(output: &Output) {
    for printed in [&output.stdout, &output.stderr] {
        assert!(
            !printed.contains(PASSWORD),
            "the password is printed: {output:#?}"
        );
    }
}

#[test]
fn check_config_takes_a_postgres_url_and_never_shows_its_password() {
    let url = format!("postgres://posthorn:{PASSWORD}@db.internal:5432/posthorn");
    let inline = format!("[storage]\nbackend = \"postgres\"\nurl = {url:?}\n");
    let (_home, output) = posthorn(&["check-config"], &inline, &[]);
    assert_no_password(&output);
    let output = output.expect(0);
    assert!(output.stdout.contains(": ok"), "{output:#?}");

    let from_env = "[storage]\nbackend = \"postgres\"\nurl_env = \"POSTHORN_DATABASE_URL\"\n";
    let (_home, output) = posthorn(
        &["check-config"],
        from_env,
        &[("POSTHORN_DATABASE_URL", &url)],
    );
    assert_no_password(&output);
    output.expect(0);

    let bad = format!(
        "[storage]\nbackend = \"postgres\"\nurl = \"postgres://posthorn:{PASSWORD}@db:notaport/p\"\n"
    );
    let (_home, output) = posthorn(&["check-config"], &bad, &[]);
    assert_no_password(&output);
    let output = output.expect(1);
    assert!(
        output.stderr.contains(
            "3:7: storage.url postgres://posthorn:[redacted]@db:notaport/p does not parse"
        ),
        "{output:#?}"
    );
}

#[test]
fn serve_on_an_unreachable_postgres_says_so_and_never_falls_back_to_sqlite() {
    let config = format!(
        "[storage]\nbackend = \"postgres\"\nurl = \"postgres://posthorn:{PASSWORD}@127.0.0.1:1/p\"\n\
         [http]\nlisten = \"127.0.0.1:{}\"\n",
        common::free_port()
    );
    let (home, output) = posthorn(&["serve"], &config, &[]);
    assert_no_password(&output);
    let output = output.expect(1);
    assert!(
        output.stderr.contains(
            "while connecting to PostgreSQL at postgres://posthorn:[redacted]@127.0.0.1:1/p"
        ),
        "{output:#?}"
    );
    let sqlite = walk(home.path())
        .into_iter()
        .filter(|p| p.extension().is_some_and(|e| e == "db"))
        .collect::<Vec<_>>();
    assert!(sqlite.is_empty(), "a SQLite store was made: {sqlite:?}");
}

fn walk(dir: &std::path::Path) -> Vec<std::path::PathBuf> {
    let mut found = Vec::new();
    for entry in std::fs::read_dir(dir).into_iter().flatten().flatten() {
        let path = entry.path();
        if path.is_dir() {
            found.extend(walk(&path));
        } else {
            found.push(path);
        }
    }
    found
}

#[test]
fn the_test_cluster_hands_out_empty_databases_of_their_own_and_drops_them() {
    let one = common::pg::fresh_database();
    let two = common::pg::fresh_database();
    assert_ne!(one.name(), two.name());
    assert!(
        one.url().contains(&format!("/{}", one.name())),
        "{}",
        one.url()
    );
    let tables = |db: &common::pg::FreshDatabase| -> i64 {
        db.connect()
            .query_one(
                "SELECT count(*) FROM information_schema.tables
                  WHERE table_schema NOT IN ('pg_catalog', 'information_schema')",
                &[],
            )
            .expect("count tables")
            .get(0)
    };
    one.connect()
        .batch_execute("CREATE TABLE mine (id BIGINT)")
        .expect("create a table");
    assert_eq!((tables(&one), tables(&two)), (1, 0));

    let name = one.name().to_string();
    drop(one);
    let mut admin = postgres::Client::connect(common::pg::admin_url(), postgres::NoTls)
        .expect("connect to the cluster");
    let left: i64 = admin
        .query_one(
            "SELECT count(*) FROM pg_database WHERE datname = $1",
            &[&name],
        )
        .expect("look the database up")
        .get(0);
    assert_eq!(left, 0, "{name} was dropped");
}
