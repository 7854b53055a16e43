//! Validation: the config file as written (raw types that mirror the TOML, with spans),
//! and the checks that turn it into the resolved [`Config`], collecting every problem
//! with its line and column instead of stopping at the first.

use std::collections::{BTreeMap, HashMap};
use std::ops::Range;

use serde::Deserialize;
use toml::Spanned;

use super::http::RawHttp;
use super::inlet::{RawAdmin, RawInlet};
use super::storage::RawStorage;
use super::values::{ByteSize, HumanDuration};
use super::*;

mod subscription;
use subscription::RawSubscription;

/// Parses `text` and validates it into a [`Config`], or every problem found.
pub(super) fn validate(text: &str, origin: &Path) -> Result<Config, Vec<Problem>> {
    run(text, origin, false)
}

/// Validates a draft the way [`validate`] does a file, with `draft` set (see
/// [`Validator::draft`]).
pub(super) fn validate_draft(text: &str) -> Result<Config, Vec<Problem>> {
    run(text, Path::new("draft"), true)
}

fn run(text: &str, origin: &Path, draft: bool) -> Result<Config, Vec<Problem>> {
    let raw: RawConfig = toml::from_str(text).map_err(|err| {
        vec![locate(
            text,
            err.span(),
            err.message().trim_end().to_string(),
        )]
    })?;
    let base = origin.parent().map(Path::to_path_buf).unwrap_or_default();
    let mut validator = Validator {
        text,
        base,
        problems: Vec::new(),
        draft,
    };
    let config = validator.resolve(raw, origin);
    if validator.problems.is_empty() {
        Ok(config)
    } else {
        Err(validator.problems)
    }
}

// ---- the file as written ----

#[derive(Deserialize, Default)]
#[serde(deny_unknown_fields)]
struct RawConfig {
    #[serde(default)]
    storage: RawStorage,
    #[serde(default)]
    spool: RawSpool,
    #[serde(default)]
    retention: RawRetention,
    #[serde(default)]
    delivery: RawDelivery,
    #[serde(default)]
    log: RawLog,
    #[serde(default)]
    http: RawHttp,
    #[serde(default)]
    inlet: RawInlet,
    #[serde(default)]
    admin: RawAdmin,
    #[serde(default)]
    subscription: Vec<RawSubscription>,
}

#[derive(Deserialize, Default)]
#[serde(deny_unknown_fields)]
struct RawLog {
    level: Option<Spanned<String>>,
}

#[derive(Deserialize, Default)]
#[serde(deny_unknown_fields)]
struct RawRetention {
    delivered: Option<Spanned<HumanDuration>>,
    failed: Option<Spanned<HumanDuration>>,
    payloads: Option<Spanned<HumanDuration>>,
    rejections: Option<Spanned<HumanDuration>>,
    interval: Option<Spanned<HumanDuration>>,
}

#[derive(Deserialize, Default)]
#[serde(deny_unknown_fields)]
struct RawSpool {
    dir: Option<PathBuf>,
    keep_done: Option<bool>,
    max_event_bytes: Option<Spanned<ByteSize>>,
    max_file_bytes: Option<Spanned<ByteSize>>,
    rescan_interval: Option<Spanned<HumanDuration>>,
}

#[derive(Deserialize, Default)]
#[serde(deny_unknown_fields)]
struct RawDelivery {
    schedule: Option<Vec<Spanned<HumanDuration>>>,
    timeout: Option<Spanned<HumanDuration>>,
    workers: Option<Spanned<i64>>,
    max_in_flight_per_endpoint: Option<Spanned<i64>>,
    allow_networks: Option<Vec<Spanned<String>>>,
    enabled: Option<bool>,
    auto_pause_after: Option<Spanned<HumanDuration>>,
    breaker_after: Option<Spanned<i64>>,
    breaker_backoff: Option<Spanned<HumanDuration>>,
    ca_file: Option<Spanned<PathBuf>>,
    ca_only: Option<Spanned<bool>>,
    client_cert_file: Option<Spanned<PathBuf>>,
    client_key_file: Option<Spanned<PathBuf>>,
    proxy: Option<Spanned<String>>,
    proxy_password_env: Option<Spanned<String>>,
    proxy_password_file: Option<Spanned<PathBuf>>,
    no_proxy: Option<Vec<Spanned<String>>>,
}

// ---- validation ----

pub(super) struct Validator<'a> {
    pub(super) text: &'a str,
    pub(super) base: PathBuf,
    pub(super) problems: Vec<Problem>,
    /// A draft pasted into the admin page (`draft.rs`): its secrets are neither
    /// required nor read, a placeholder stands in.
    pub(super) draft: bool,
}

impl Validator<'_> {
    pub(super) fn problem(&mut self, span: Range<usize>, message: impl Into<String>) {
        self.problems
            .push(locate(self.text, Some(span), message.into()));
    }

    /// A name deliveries and URLs refer to: letters, digits, '.', '_' and '-', not empty.
    pub(super) fn check_name(&mut self, name: &Spanned<String>, label: &str) {
        let text = name.get_ref();
        if text.is_empty()
            || !text
                .bytes()
                .all(|b| b.is_ascii_alphanumeric() || b"._-".contains(&b))
        {
            self.problem(
                name.span(),
                format!("{label}: a name may only hold letters, digits, '.', '_' and '-', and not be empty"),
            );
        }
    }

    /// Records `name` in `seen`, or a problem naming the line of its first use.
    pub(super) fn unique_name(
        &mut self,
        seen: &mut HashMap<String, Range<usize>>,
        name: &Spanned<String>,
        what: &str,
    ) {
        if let Some(first) = seen.get(name.get_ref()) {
            let (line, _) = line_column(self.text, first.start);
            let message = format!(
                "{what} name {:?} is already used on line {line}; names must be unique",
                name.get_ref()
            );
            self.problem(name.span(), message);
        } else {
            seen.insert(name.get_ref().clone(), name.span());
        }
    }

    fn resolve(&mut self, raw: RawConfig, origin: &Path) -> Config {
        let defaults = embedded_defaults();
        let spool = RawSpool { ..raw.spool };
        let storage = self.storage(raw.storage, defaults.storage);
        let retention = self.retention(raw.retention, defaults.retention);
        let spool = SpoolConfig {
            dir: spool.dir.map_or(defaults.spool.dir, |p| self.base.join(p)),
            keep_done: spool.keep_done.unwrap_or(false),
            max_event_bytes: self.positive_size(
                spool.max_event_bytes,
                DEFAULT_MAX_EVENT_BYTES,
                "spool.max_event_bytes",
            ),
            max_file_bytes: self.positive_size(
                spool.max_file_bytes,
                DEFAULT_MAX_FILE_BYTES,
                "spool.max_file_bytes",
            ),
            rescan_interval: self.positive_duration(
                spool.rescan_interval,
                DEFAULT_RESCAN,
                "spool.rescan_interval",
            ),
        };
        let delivery = self.delivery(raw.delivery, defaults.delivery);
        let log = self.log(raw.log, defaults.log);
        let http = self.http(raw.http, defaults.http);
        let inlet = self.inlet(raw.inlet, defaults.inlet);
        let admin = self.admin(raw.admin, defaults.admin);
        let mut subscriptions = Vec::new();
        let mut names = HashMap::new();
        let mut renames = Vec::new();
        for raw in raw.subscription {
            self.unique_name(&mut names, &raw.name, "subscription");
            if let Some(old) = &raw.renamed_from {
                renames.push(super::rename::Rename {
                    new: raw.name.get_ref().clone(),
                    old: old.clone(),
                });
            }
            if let Some(subscription) = self.subscription(raw, &delivery) {
                subscriptions.push(subscription);
            }
        }
        self.check_renames(&renames, &names);
        Config {
            source: Some(origin.to_path_buf()),
            storage,
            spool,
            retention,
            delivery,
            log,
            http,
            inlet,
            admin,
            subscriptions,
        }
    }

    fn log(&mut self, raw: RawLog, defaults: LogConfig) -> LogConfig {
        match raw.level {
            None => defaults,
            Some(level) => match crate::logging::check_level(level.get_ref()) {
                Ok(()) => LogConfig {
                    level: level.into_inner().trim().to_string(),
                },
                Err(message) => {
                    self.problem(level.span(), message);
                    defaults
                }
            },
        }
    }

    fn retention(&mut self, raw: RawRetention, d: RetentionConfig) -> RetentionConfig {
        RetentionConfig {
            delivered: self.positive_duration(raw.delivered, d.delivered, "retention.delivered"),
            failed: self.positive_duration(raw.failed, d.failed, "retention.failed"),
            payloads: self.positive_duration(raw.payloads, d.payloads, "retention.payloads"),
            rejections: self.positive_duration(
                raw.rejections,
                d.rejections,
                "retention.rejections",
            ),
            interval: self.positive_duration(raw.interval, d.interval, "retention.interval"),
        }
    }

    pub(super) fn positive_size(
        &mut self,
        value: Option<Spanned<ByteSize>>,
        default: usize,
        key: &str,
    ) -> usize {
        match value {
            None => default,
            Some(v) if v.get_ref().0 == 0 => {
                self.problem(v.span(), format!("{key} must be more than 0 bytes"));
                default
            }
            Some(v) => v.into_inner().0,
        }
    }

    pub(super) fn positive_duration(
        &mut self,
        value: Option<Spanned<HumanDuration>>,
        default: Duration,
        key: &str,
    ) -> Duration {
        match value {
            None => default,
            Some(v) if v.get_ref().0.is_zero() => {
                self.problem(v.span(), format!("{key} must be longer than 0"));
                default
            }
            Some(v) => v.into_inner().0,
        }
    }

    fn count(
        &mut self,
        value: Option<Spanned<i64>>,
        default: usize,
        range: Range<usize>,
        key: &str,
    ) -> usize {
        let Some(value) = value else { return default };
        match usize::try_from(*value.get_ref()) {
            Ok(n) if range.contains(&n) => n,
            _ => {
                let message = format!(
                    "{key} is {}; expected a whole number from {} to {}",
                    value.get_ref(),
                    range.start,
                    range.end - 1
                );
                self.problem(value.span(), message);
                default
            }
        }
    }

    fn delivery(&mut self, raw: RawDelivery, defaults: DeliveryConfig) -> DeliveryConfig {
        let schedule = match raw.schedule {
            None => defaults.schedule,
            Some(waits) => {
                let mut schedule = Vec::new();
                for wait in waits {
                    if wait.get_ref().0.is_zero() {
                        self.problem(
                            wait.span(),
                            "delivery.schedule: each wait must be longer than 0",
                        );
                    }
                    schedule.push(wait.into_inner().0);
                }
                schedule
            }
        };
        let allow_networks = self.networks(raw.allow_networks, "delivery.allow_networks");
        let tls = super::transport::RawTls {
            ca_file: raw.ca_file,
            ca_only: raw.ca_only,
            client_cert_file: raw.client_cert_file,
            client_key_file: raw.client_key_file,
        };
        let proxy = super::transport::RawProxy {
            proxy: raw.proxy,
            proxy_password_env: raw.proxy_password_env,
            proxy_password_file: raw.proxy_password_file,
            no_proxy: raw.no_proxy,
        };
        let transport = DeliveryTransport {
            tls: self.tls(tls, &defaults.transport.tls, "delivery."),
            proxy: self.proxy(proxy, &allow_networks),
        };
        DeliveryConfig {
            schedule,
            timeout: self.positive_duration(raw.timeout, DEFAULT_TIMEOUT, "delivery.timeout"),
            workers: self.count(raw.workers, DEFAULT_WORKERS, 1..1025, "delivery.workers"),
            max_in_flight_per_endpoint: self.count(
                raw.max_in_flight_per_endpoint,
                DEFAULT_MAX_IN_FLIGHT,
                1..1025,
                "delivery.max_in_flight_per_endpoint",
            ),
            allow_networks,
            enabled: raw.enabled.unwrap_or(true),
            auto_pause_after: self.positive_duration(
                raw.auto_pause_after,
                DEFAULT_AUTO_PAUSE_AFTER,
                "delivery.auto_pause_after",
            ),
            breaker_after: self.count(
                raw.breaker_after,
                DEFAULT_BREAKER_AFTER,
                1..10_001,
                "delivery.breaker_after",
            ),
            breaker_backoff: self.positive_duration(
                raw.breaker_backoff,
                DEFAULT_BREAKER_BACKOFF,
                "delivery.breaker_backoff",
            ),
            transport,
        }
    }
}

pub(super) fn is_header_name(name: &str) -> bool {
    !name.is_empty()
        && name
            .bytes()
            .all(|b| b.is_ascii_alphanumeric() || b"!#$%&'*+-.^_`|~".contains(&b))
}

/// Whether a `secret_env` value is more likely a secret than a variable name: a `whsec_`
/// secret, or anything but letters, digits and `_` not starting with a digit.
pub(super) fn looks_like_secret(name: &str) -> bool {
    name.starts_with("whsec_")
        || name.starts_with(|c: char| c.is_ascii_digit())
        || !name.bytes().all(|b| b.is_ascii_alphanumeric() || b == b'_')
}

pub(super) fn is_header_value(value: &str) -> bool {
    !value.chars().any(|c| c.is_control() && c != '\t')
}

fn locate(text: &str, span: Option<Range<usize>>, message: String) -> Problem {
    match span {
        Some(span) => {
            let (line, column) = line_column(text, span.start);
            Problem {
                line: Some(line),
                column: Some(column),
                message,
            }
        }
        None => Problem {
            line: None,
            column: None,
            message,
        },
    }
}

/// 1-based line and column (in characters) of a byte offset.
pub(super) fn line_column(text: &str, offset: usize) -> (usize, usize) {
    let mut end = offset.min(text.len());
    while !text.is_char_boundary(end) {
        end -= 1;
    }
    let before = &text[..end];
    let line = before.matches('\n').count() + 1;
    let line_start = before.rfind('\n').map_or(0, |i| i + 1);
    (line, before[line_start..].chars().count() + 1)
}
