//! `posthorn migrate-store --to URL`: copies the config's SQLite store into an empty
//! PostgreSQL database (see `store/migrate_store.rs`) and prints what it copied. The URL
//! comes from `--to`, `--to-env` or `--to-file`, so its password need not be on the
//! command line; it is never printed. Exit 0 copied, 1 refused or failed (nothing
//! copied), 2 the command could not be set up (arguments, config).

use std::io::Read as _;
use std::path::{Path, PathBuf};
use std::process::ExitCode;

use clap::{ArgGroup, Args};

use super::out;
use crate::config::{self, redact_url, scrub_url, Backend};
use crate::store::{self, Migrated};

/// Longest URL file read: a URL is short; anything longer is not one.
const MAX_URL_FILE: u64 = 64 << 10;

#[derive(Debug, Clone, Args)]
#[command(group(ArgGroup::new("target").required(true).args(["to", "to_env", "to_file"])))]
pub struct MigrateStoreArgs {
    /// Config file naming the SQLite store to copy, [storage] path (same default as
    /// `serve`).
    #[arg(long, value_name = "PATH")]
    pub config: Option<PathBuf>,
    /// The PostgreSQL database to copy into, postgres://user:password@host/database.
    /// Other users of this machine can read a command line: prefer --to-env or
    /// --to-file for a URL holding a password.
    #[arg(long, value_name = "URL")]
    pub to: Option<String>,
    /// Read the URL from this environment variable.
    #[arg(long, value_name = "NAME")]
    pub to_env: Option<String>,
    /// Read the URL from this file (one line; the line end is not part of it).
    #[arg(long, value_name = "PATH")]
    pub to_file: Option<PathBuf>,
    /// Print {"source", "target", "source_schema", "tables": [{"table", "rows"}],
    /// "leases_returned", "nul_replaced"} instead of text.
    #[arg(long)]
    pub json: bool,
}

/// `posthorn migrate-store`.
pub fn run(args: &MigrateStoreArgs) -> ExitCode {
    let (source, url) = match setup(args) {
        Ok(found) => found,
        Err(message) => {
            eprintln!("posthorn: {message}");
            return ExitCode::from(2);
        }
    };
    match store::migrate_store(&source, &url) {
        Ok(migrated) => {
            if args.json {
                out(&serde_json::to_string_pretty(&migrated).unwrap_or_default());
            } else {
                out(&describe(&migrated));
            }
            ExitCode::SUCCESS
        }
        Err(err) => {
            // Errors name the URL redacted; scrubbed again in case a server quoted it.
            eprintln!(
                "posthorn: migrate-store: {}",
                scrub_url(&format!("{err:#}"), &url)
            );
            ExitCode::FAILURE
        }
    }
}

/// The SQLite file to copy and the target URL.
fn setup(args: &MigrateStoreArgs) -> Result<(PathBuf, String), String> {
    let url = target_url(args)?;
    let config = match config::resolve_config_path(args.config.as_deref()) {
        Some(path) => {
            config::load(&path).map_err(|err| format!("the configuration is not valid:\n{err}"))?
        }
        None => config::embedded_defaults(),
    };
    match &config.storage.backend {
        Backend::Sqlite => Ok((config.storage.path.clone(), url)),
        Backend::Postgres { url } => Err(format!(
            "the config's store is already on PostgreSQL ({url}); migrate-store copies the \
             SQLite store named by [storage] path: give --config the config that names it"
        )),
    }
}

fn target_url(args: &MigrateStoreArgs) -> Result<String, String> {
    let (url, from) = if let Some(url) = &args.to {
        (url.trim().to_string(), "--to".to_string())
    } else if let Some(name) = &args.to_env {
        let value = std::env::var(name).map_err(|err| {
            format!("--to-env {name}: the environment variable cannot be used: {err}")
        })?;
        (value.trim().to_string(), format!("the URL in ${name}"))
    } else if let Some(path) = &args.to_file {
        (
            read_url_file(path)?,
            format!("the URL in {}", path.display()),
        )
    } else {
        return Err("name the database to copy into: --to, --to-env or --to-file".into());
    };
    if url.is_empty() {
        return Err(format!("{from} is empty"));
    }
    if !(url.starts_with("postgres://") || url.starts_with("postgresql://")) {
        return Err(format!(
            "{from} must start with postgres:// or postgresql:// (its value is not shown)"
        ));
    }
    Ok(url)
}

fn read_url_file(path: &Path) -> Result<String, String> {
    let file =
        std::fs::File::open(path).map_err(|err| format!("--to-file {}: {err}", path.display()))?;
    let mut text = String::new();
    file.take(MAX_URL_FILE + 1)
        .read_to_string(&mut text)
        .map_err(|err| format!("--to-file {}: {err}", path.display()))?;
    if text.len() as u64 > MAX_URL_FILE {
        return Err(format!(
            "--to-file {} is over {} KiB: not a URL",
            path.display(),
            MAX_URL_FILE >> 10
        ));
    }
    Ok(text.trim().to_string())
}

/// The text report: where from and to, rows per table, what changed on the way.
fn describe(m: &Migrated) -> String {
    let mut text = format!(
        "copied the SQLite store {} into {}\n",
        m.source.display(),
        redact_url(&m.target)
    );
    let width = m.tables.iter().map(|t| t.table.len()).max().unwrap_or(0);
    for t in &m.tables {
        text.push_str(&format!("  {:<width$}  {:>10}\n", t.table, t.rows));
    }
    let total: u64 = m.tables.iter().map(|t| t.rows).sum();
    text.push_str(&format!("  {:<width$}  {:>10}\n", "total rows", total));
    if m.leases_returned > 0 {
        text.push_str(&format!(
            "{} deliver{} in flight when posthorn stopped {} due again (at-least-once: the \
             receiver may see {} twice)\n",
            m.leases_returned,
            if m.leases_returned == 1 { "y" } else { "ies" },
            if m.leases_returned == 1 { "is" } else { "are" },
            if m.leases_returned == 1 { "it" } else { "them" },
        ));
    }
    if m.nul_replaced > 0 {
        text.push_str(&format!(
            "{} NUL character(s) in attempt and rejection snippets became U+FFFD (PostgreSQL \
             text cannot hold NUL)\n",
            m.nul_replaced
        ));
    }
    if m.source_schema.before != m.source_schema.after {
        text.push_str(&format!(
            "the SQLite store was brought from schema version {} to {} first, as serve \
             would have\n",
            m.source_schema.before, m.source_schema.after
        ));
    }
    text.push_str(
        "the SQLite store is left as it was. Next: in config.toml set [storage] backend = \
         \"postgres\" with url_env or url_file (and remove path), then start posthorn on each \
         node",
    );
    text
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::store::{SchemaVersions, TableCount};

    fn args(to: &str) -> MigrateStoreArgs {
        MigrateStoreArgs {
            config: None,
            to: Some(to.into()),
            to_env: None,
            to_file: None,
            json: false,
        }
    }

    #[test]
    fn a_target_that_is_not_a_postgres_url_is_refused_without_showing_it() {
        let err = target_url(&args("mysql://root:hunter2@db/posthorn")).unwrap_err();
        assert_eq!(
            err,
            "--to must start with postgres:// or postgresql:// (its value is not shown)"
        );
        assert_eq!(target_url(&args("  ")).unwrap_err(), "--to is empty");
        assert_eq!(
            target_url(&args(" postgresql://u:p@h/db\n")).unwrap(),
            "postgresql://u:p@h/db"
        );
    }

    #[test]
    fn the_report_counts_each_table_and_never_shows_the_password() {
        let m = Migrated {
            source: "/var/lib/posthorn/posthorn.db".into(),
            target: redact_url("postgres://posthorn:hunter2@db/posthorn"),
            source_schema: SchemaVersions {
                before: 9,
                after: 11,
            },
            tables: vec![
                TableCount {
                    table: "events".into(),
                    rows: 12,
                },
                TableCount {
                    table: "deliveries".into(),
                    rows: 30,
                },
            ],
            leases_returned: 2,
            nul_replaced: 0,
        };
        let text = describe(&m);
        assert!(!text.contains("hunter2"), "{text}");
        assert!(text.starts_with(
            "copied the SQLite store /var/lib/posthorn/posthorn.db into \
             postgres://posthorn:[redacted]@db/posthorn\n  events              12\n  \
             deliveries          30\n  total rows          42\n2 deliveries in flight"
        ));
        assert!(text.contains("from schema version 9 to 11"), "{text}");
    }
}
