//! Logs: where they go, in which format, and at which level. Plain lines on stderr by
//! default, which journald reads well; one JSON object per line with `--log-format json`.
//! The level comes from `POSTHORN_LOG` when it is set (it wins), else from `[log] level`,
//! and follows a config reload unless `POSTHORN_LOG` pinned it.

use std::io::IsTerminal as _;

use tracing_subscriber::layer::SubscriberExt as _;
use tracing_subscriber::util::SubscriberInitExt as _;
use tracing_subscriber::{reload, EnvFilter, Registry};

/// The environment variable that sets the level, over the config file.
pub const LEVEL_ENV: &str = "POSTHORN_LOG";

/// How log lines are written.
#[derive(Debug, Clone, Copy, PartialEq, Eq, clap::ValueEnum)]
pub enum LogFormat {
    /// Plain text lines: colour only on a terminal, no timestamp of our own under systemd.
    Plain,
    /// One JSON object per line: `timestamp`, `level`, `target` and `fields` (the message
    /// and each structured field).
    Json,
}

/// Changes the level of the running logger (on a config reload).
pub struct LogControl {
    handle: reload::Handle<EnvFilter, Registry>,
    /// Set when `POSTHORN_LOG` chose the level: the config file then does not.
    pinned_by_env: bool,
}

impl LogControl {
    /// Applies the config file's level, unless `POSTHORN_LOG` pinned it. Returns whether
    /// the level changed.
    pub fn set_config_level(&self, level: &str) -> Result<bool, String> {
        if self.pinned_by_env {
            return Ok(false);
        }
        let filter = EnvFilter::builder()
            .parse(level)
            .map_err(|err| format!("log level {level:?} is not valid: {err}"))?;
        let filter = quiet_http_client(filter, level);
        self.handle
            .reload(filter)
            .map_err(|err| format!("could not change the log level: {err}"))?;
        Ok(true)
    }

    /// Whether `POSTHORN_LOG` chose the level.
    pub fn pinned_by_env(&self) -> bool {
        self.pinned_by_env
    }
}

/// Installs the global logger. `config_level` is `[log] level` (already validated);
/// `POSTHORN_LOG`, when set to a valid filter, wins over it.
pub fn init(format: LogFormat, config_level: &str) -> LogControl {
    let from_env = std::env::var(LEVEL_ENV)
        .ok()
        .filter(|value| !value.trim().is_empty());
    let env_filter = from_env.as_deref().map(|value| {
        EnvFilter::builder()
            .parse(value)
            .map(|filter| quiet_http_client(filter, value))
    });
    let (filter, pinned_by_env, bad_env) = match env_filter {
        Some(Ok(filter)) => (filter, true, None),
        Some(Err(err)) => (config_filter(config_level), false, Some(err.to_string())),
        None => (config_filter(config_level), false, None),
    };
    let (filter, handle) = reload::Layer::new(filter);
    let registry = tracing_subscriber::registry().with(filter);
    let under_journald = std::env::var_os("JOURNAL_STREAM").is_some();
    match format {
        LogFormat::Json => registry
            .with(
                tracing_subscriber::fmt::layer()
                    .json()
                    .with_writer(std::io::stderr)
                    .with_current_span(false)
                    .with_span_list(false),
            )
            .init(),
        // journald stamps each line itself, so a timestamp of ours would be said twice.
        LogFormat::Plain if under_journald => registry
            .with(
                tracing_subscriber::fmt::layer()
                    .with_writer(std::io::stderr)
                    .with_ansi(std::io::stderr().is_terminal())
                    .without_time(),
            )
            .init(),
        LogFormat::Plain => registry
            .with(
                tracing_subscriber::fmt::layer()
                    .with_writer(std::io::stderr)
                    .with_ansi(std::io::stderr().is_terminal()),
            )
            .init(),
    }
    if let Some(err) = bad_env {
        tracing::warn!(
            "{LEVEL_ENV} is not a valid log filter ({err}); using [log] level {config_level:?}"
        );
    }
    LogControl {
        handle,
        pinned_by_env,
    }
}

fn config_filter(level: &str) -> EnvFilter {
    let filter = EnvFilter::builder()
        .parse(level)
        .unwrap_or_else(|_| EnvFilter::new("info"));
    quiet_http_client(filter, level)
}

/// The HTTP client's own crates log each request's URL (query strings, where services put
/// tokens) at debug, and the raw bytes on the wire at trace; the PostgreSQL client logs
/// every statement's parameters at debug (event bodies, snippets, hashes). A general
/// `debug` or `trace` must not turn that on. A filter that names them (`ureq=debug`,
/// `tokio_postgres=debug`) still can.
fn quiet_http_client(filter: EnvFilter, text: &str) -> EnvFilter {
    [
        ("ureq", "ureq=info"),
        ("ureq", "ureq_proto=info"),
        ("postgres", "tokio_postgres=info"),
        ("postgres", "postgres=info"),
    ]
    .into_iter()
    .filter(|(named, _)| !text.contains(named))
    .filter_map(|(_, directive)| directive.parse().ok())
    .fold(filter, EnvFilter::add_directive)
}

/// Whether `text` is a usable `[log] level`: a level name, or a `tracing` filter with
/// targets such as `posthorn=debug,info`. A bare word that is not a level would be taken
/// by `tracing` as a target name and silence everything else, so it is refused.
pub fn check_level(text: &str) -> Result<(), String> {
    const LEVELS: [&str; 6] = ["error", "warn", "info", "debug", "trace", "off"];
    let expected = || {
        format!(
            "log.level {text:?} is not a level; write one of error, warn, info, debug, trace \
             or off, or a filter like \"posthorn=debug,info\""
        )
    };
    let trimmed = text.trim();
    if !trimmed.contains(['=', ',']) {
        return if LEVELS.contains(&trimmed.to_ascii_lowercase().as_str()) {
            Ok(())
        } else {
            Err(expected())
        };
    }
    EnvFilter::builder()
        .parse(trimmed)
        .map(drop)
        .map_err(|err| format!("{}: {err}", expected()))
}

/// A URL as it may appear in a log: credentials (`user:password@`) and the query string
/// (where services often put tokens) are replaced by `[redacted]`.
pub fn url_for_log(url: &str) -> String {
    let (scheme, rest) = match url.split_once("://") {
        Some((scheme, rest)) => (format!("{scheme}://"), rest),
        None => (String::new(), url),
    };
    let authority_end = rest.find(['/', '?', '#']).unwrap_or(rest.len());
    let (authority, tail) = rest.split_at(authority_end);
    let authority = match authority.rsplit_once('@') {
        Some((_, host)) => format!("[redacted]@{host}"),
        None => authority.to_string(),
    };
    let tail = match tail.split_once('?') {
        Some((path, _)) => format!("{path}?[redacted]"),
        None => tail.to_string(),
    };
    format!("{scheme}{authority}{tail}")
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn levels_and_filters_are_accepted_and_stray_words_refused() {
        for good in [
            "info",
            "DEBUG",
            "off",
            "posthorn=debug,info",
            "warn,posthorn=trace",
        ] {
            assert_eq!(check_level(good), Ok(()), "{good}");
        }
        for bad in ["loud", "", "verbose"] {
            let err = check_level(bad).unwrap_err();
            assert!(err.contains("not a level"), "{bad}: {err}");
        }
    }

    #[test]
    fn credentials_and_queries_are_kept_out_of_logged_urls() {
        assert_eq!(
            url_for_log("https://user:hunter2@crm.example.org/hook?token=abc#x"),
            "https://[redacted]@crm.example.org/hook?[redacted]"
        );
        assert_eq!(
            url_for_log("http://127.0.0.1:9000/hook"),
            "http://127.0.0.1:9000/hook"
        );
    }
}
