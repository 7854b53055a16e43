//! The `[storage]` section: which backend holds the store (the SQLite file at `path`, the
//! default, or a PostgreSQL database at `url` / `url_env` / `url_file`), and `max_size`
//! checked against what the SQLite store needs to run: below it, input would be refused
//! on the size of the WAL alone (see `store/room.rs`).

use std::path::PathBuf;
use std::str::FromStr as _;

use serde::Deserialize;
use toml::Spanned;

use super::secret_url::{scrub, SecretUrl};
use super::validate::Validator;
use super::values::ByteSize;
use super::{Backend, StorageConfig};

#[derive(Deserialize, Default)]
#[serde(deny_unknown_fields)]
pub(super) struct RawStorage {
    path: Option<Spanned<PathBuf>>,
    max_size: Option<Spanned<ByteSize>>,
    backend: Option<Spanned<String>>,
    url: Option<Spanned<String>>,
    url_env: Option<Spanned<String>>,
    url_file: Option<Spanned<PathBuf>>,
}

impl Validator<'_> {
    pub(super) fn storage(&mut self, raw: RawStorage, defaults: StorageConfig) -> StorageConfig {
        let backend = self.backend(&raw);
        if matches!(backend, Backend::Postgres { .. }) {
            // Keys of the SQLite file only: an error rather than silently ignored, so
            // nobody believes a limit holds that does not.
            if let Some(path) = &raw.path {
                self.problem(
                    path.span(),
                    "storage.path is the SQLite file; with backend = \"postgres\" the store is \
                     the database at url: remove path",
                );
            }
            if let Some(size) = &raw.max_size {
                self.problem(
                    size.span(),
                    "storage.max_size is for the SQLite file only; with backend = \"postgres\" \
                     the database server's own limits apply: remove max_size",
                );
            }
        }
        StorageConfig {
            path: raw
                .path
                .map_or(defaults.path, |p| self.base.join(p.into_inner())),
            max_size: raw.max_size.map(|size| self.max_size(size)),
            backend,
        }
    }

    fn backend(&mut self, raw: &RawStorage) -> Backend {
        let url_keys = [
            raw.url.as_ref().map(|k| ("url", k.span())),
            raw.url_env.as_ref().map(|k| ("url_env", k.span())),
            raw.url_file.as_ref().map(|k| ("url_file", k.span())),
        ];
        let given: Vec<(&str, std::ops::Range<usize>)> = url_keys.into_iter().flatten().collect();
        let postgres = match &raw.backend {
            None => false,
            Some(name) => match name.get_ref().as_str() {
                "sqlite" => false,
                "postgres" => true,
                other => {
                    self.problem(
                        name.span(),
                        format!(
                            "storage.backend = {other:?} is not known; write \"sqlite\" (the \
                             default, one file on this machine) or \"postgres\""
                        ),
                    );
                    return Backend::Sqlite;
                }
            },
        };
        if !postgres {
            for (key, span) in given {
                self.problem(
                    span,
                    format!(
                        "storage.{key} names a PostgreSQL database, but the backend is \
                         \"sqlite\" (the file at storage.path): set backend = \"postgres\", or \
                         remove {key}"
                    ),
                );
            }
            return Backend::Sqlite;
        }
        let url = match given.as_slice() {
            [] => {
                let at = raw.backend.as_ref().map(Spanned::span);
                self.problem(
                    at.unwrap_or(0..0),
                    "storage.backend = \"postgres\" needs the database: set one of url, \
                     url_env or url_file",
                );
                return Backend::Sqlite;
            }
            [_] => self.database_url(raw),
            [_, (_, second), ..] => {
                self.problem(
                    second.clone(),
                    "storage: set only one of url, url_env and url_file",
                );
                return Backend::Sqlite;
            }
        };
        url.map_or(Backend::Sqlite, |url| Backend::Postgres { url })
    }

    /// The one URL given, read and checked; problems never quote its password.
    fn database_url(&mut self, raw: &RawStorage) -> Option<SecretUrl> {
        let (text, span, key) = if let Some(url) = &raw.url {
            (
                url.get_ref().trim().to_string(),
                url.span(),
                "storage.url".to_string(),
            )
        } else if let Some(var) = &raw.url_env {
            let secret = self.secret_env(var, "storage.url_env")?;
            let key = format!("the URL in {} (storage.url_env)", var.get_ref());
            (secret.expose().to_string(), var.span(), key)
        } else {
            let file = raw.url_file.as_ref()?;
            let secret = self.secret_file(file, "storage.url_file")?;
            let key = format!(
                "the URL in {} (storage.url_file)",
                self.base.join(file.get_ref()).display()
            );
            (secret.expose().to_string(), file.span(), key)
        };
        if text.is_empty() {
            self.problem(span, format!("{key} is empty"));
            return None;
        }
        if !(text.starts_with("postgres://") || text.starts_with("postgresql://")) {
            self.problem(
                span,
                format!(
                    "{key} must start with postgres:// or postgresql:// (its value is not \
                     shown)"
                ),
            );
            return None;
        }
        let url = SecretUrl::new(text);
        let parsed = match postgres::Config::from_str(url.expose()) {
            Ok(parsed) => parsed,
            Err(err) => {
                let reason = scrub(&err.to_string(), url.expose());
                self.problem(span, format!("{key} {url} does not parse: {reason}"));
                return None;
            }
        };
        if parsed.get_hosts().is_empty() {
            self.problem(
                span,
                format!("{key} {url} names no host (write postgres://user@host/database)"),
            );
            return None;
        }
        if parsed.get_ssl_mode() == postgres::config::SslMode::Require {
            self.problem(
                span,
                format!(
                    "{key} {url} asks for TLS (sslmode=require), which posthorn does not speak \
                     to PostgreSQL yet: reach the database over a trusted network or a local \
                     socket, with sslmode=disable or prefer"
                ),
            );
            return None;
        }
        Some(url)
    }

    /// `[storage] max_size`: at least what the store needs to run, else input would be
    /// refused on the WAL's size alone.
    pub(super) fn max_size(&mut self, size: Spanned<ByteSize>) -> u64 {
        let bytes = size.get_ref().0 as u64;
        let min = crate::store::MIN_MAX_SIZE;
        if bytes < min {
            self.problem(
                size.span(),
                format!(
                    "storage.max_size = {bytes} bytes is below the {} MiB the store needs to \
                     run (its WAL alone keeps up to {} MiB between checkpoints); write at least \
                     \"{}MiB\", or leave max_size out for no limit",
                    min >> 20,
                    (min >> 20) - 1,
                    min >> 20
                ),
            );
        }
        bytes
    }
}

#[cfg(test)]
#[path = "storage_tests.rs"]
mod tests;
