//! Configuration: reads `config.toml` into raw types that mirror the file, then validates
//! them into the resolved [`Config`] the rest of the program uses. Every problem is
//! reported with the file, line and column it comes from; secrets never appear in errors
//! or in `Debug` output.

pub mod advice;
mod auth;
pub mod draft;
mod egress;
pub mod exposure;
mod fingerprint;
mod format;
mod http;
mod inlet;
mod keys;
mod pacing;
mod rename;
mod secret_url;
mod shaping;
mod storage;
mod transport;
mod validate;
mod values;

use std::fmt;
use std::path::{Path, PathBuf};
use std::time::Duration;

use crate::egress::Network;
use crate::routing::Pattern;
use crate::sign::SigningKey;

pub use auth::{Auth, ClientAuth, OAuth2};
pub use fingerprint::fingerprint;
pub use http::{default_allowed_hosts, host_without_port};
pub use pacing::{OnDead, Ordering, Pacing, RateLimit};
pub use secret_url::{redact_url, scrub as scrub_url, SecretUrl};
pub use transport::{CaBundle, ClientIdentity, DeliveryTransport, NoProxy, Proxy, Tls, Transport};
pub use values::{parse_duration, parse_size};

/// The resolved configuration.
#[derive(Debug, Clone)]
pub struct Config {
    /// The file it was loaded from; `None` for the embedded defaults.
    pub source: Option<PathBuf>,
    pub storage: StorageConfig,
    pub spool: SpoolConfig,
    pub retention: RetentionConfig,
    pub delivery: DeliveryConfig,
    pub log: LogConfig,
    pub http: HttpConfig,
    pub inlet: InletConfig,
    pub admin: AdminConfig,
    pub subscriptions: Vec<Subscription>,
}

/// The admin page and the operator API (`/api/v1`).
#[derive(Debug, Clone, PartialEq)]
pub struct AdminConfig {
    /// The argon2 PHC hash of the admin password; `None` uses the one generated at
    /// first start and kept in the store.
    pub password_hash: Option<String>,
    /// Bearer token for scripts and the CLI; `None` leaves the API to sessions only.
    pub api_token: Option<Secret>,
    /// How long a login lasts.
    pub session_ttl: Duration,
    /// Mark the session cookie `Secure` (set it when a TLS proxy fronts posthorn).
    pub secure_cookie: bool,
}

/// The HTTP server (the inlet, the admin page and the API).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct HttpConfig {
    pub listen: std::net::SocketAddr,
    /// `Host` names answered (lower case, no port); `"*"` answers any, `0.0.0.0` or
    /// `[::]` any IP address. Others get 421 (DNS rebinding).
    pub allowed_hosts: Vec<String>,
    /// Peers whose `X-Forwarded-For` names the client; empty: the peer is the client.
    pub trusted_proxies: Vec<Network>,
    /// Longest wait for a request's head.
    pub request_timeout: Duration,
    /// Longest wait for a whole request body.
    pub body_timeout: Duration,
    /// Most open connections; `None`: what the file descriptor limit leaves room for.
    pub max_connections: Option<usize>,
}

/// `POST /v1/events` and the inlet sources.
#[derive(Debug, Clone, PartialEq)]
pub struct InletConfig {
    /// The bearer token `POST /v1/events` requires; `None` refuses every request there.
    pub token: Option<Secret>,
    /// Largest request body taken, enforced while it is read.
    pub max_body_bytes: usize,
    pub sources: Vec<InletSource>,
}

/// A platform's own webhooks, taken at `POST /v1/sources/{name}`.
#[derive(Debug, Clone, PartialEq)]
pub struct InletSource {
    pub name: String,
    pub profile: SourceProfile,
    /// Largest request body this source takes (and so its largest event).
    pub max_body_bytes: usize,
    /// How far the payload's signed time may be from now; `None`: not checked.
    pub replay_window: Option<Duration>,
}

#[derive(Debug, Clone, PartialEq)]
pub enum SourceProfile {
    /// ECHO (dembrane): its payload shape, and `X-Webhook-Signature: sha256=<hex>` over
    /// Python's canonical `json.dumps` of the payload when a secret is set.
    Echo { secret: Option<SigningKey> },
    /// Any JSON, mapped to the envelope with JSON pointers.
    Generic(GenericSource),
}

#[derive(Debug, Clone, PartialEq)]
pub struct GenericSource {
    /// JSON pointer to the event id; `None`: derived from a hash of the body.
    pub id: Option<String>,
    pub kind: TypeFrom,
    pub conversation: Option<String>,
    pub project: Option<String>,
    pub occurred_at: Option<String>,
    pub verify: Verify,
}

/// Where a generic source's event type comes from.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum TypeFrom {
    Pointer(String),
    Fixed(String),
}

/// How a source's requests are verified before anything is stored.
#[derive(Debug, Clone, PartialEq)]
pub enum Verify {
    None,
    /// Standard Webhooks headers, any of the keys (rotation), 5 minutes of tolerance.
    Standard {
        keys: Vec<SigningKey>,
    },
    /// `header: prefix + hex(HMAC-SHA256(key, raw body))`.
    Hex {
        key: SigningKey,
        header: String,
        prefix: String,
    },
}

/// A secret from the config (a token). `Debug` and `Display` never show it.
#[derive(Clone, PartialEq, Eq, Hash)]
pub struct Secret(String);

impl Secret {
    pub fn new(value: impl Into<String>) -> Secret {
        Secret(value.into())
    }

    /// The secret itself, for comparing; never for printing.
    pub fn expose(&self) -> &str {
        &self.0
    }
}

impl fmt::Debug for Secret {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str("[redacted]")
    }
}

impl fmt::Display for Secret {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str("[redacted]")
    }
}

#[derive(Debug, Clone, PartialEq, Eq)]
pub struct LogConfig {
    /// A level or `tracing` filter; `POSTHORN_LOG` overrides it.
    pub level: String,
}

#[derive(Debug, Clone, PartialEq)]
pub struct StorageConfig {
    /// The SQLite file (backend `Sqlite` only).
    pub path: PathBuf,
    /// Refuse new input while the database and its WAL hold more than this many bytes
    /// (backend `Sqlite` only).
    pub max_size: Option<u64>,
    pub backend: Backend,
}

/// Which database holds the store (`[storage] backend`).
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub enum Backend {
    /// The SQLite file at [`StorageConfig::path`]: one node, nothing to set up.
    #[default]
    Sqlite,
    /// A PostgreSQL database that any number of nodes share.
    Postgres { url: SecretUrl },
}

impl StorageConfig {
    /// Where the store is, for logs and messages: the file, or the URL without its
    /// password.
    pub fn location(&self) -> String {
        match &self.backend {
            Backend::Sqlite => self.path.display().to_string(),
            Backend::Postgres { url } => url.redacted(),
        }
    }
}

/// How long finished work is kept (see `retention.rs`). Each period counts from the
/// moment a delivery became final (delivered, dead or cancelled), or for an event that
/// matched no subscription, from when it was received.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct RetentionConfig {
    /// Delivered deliveries, their attempts, and events that matched nothing.
    pub delivered: Duration,
    /// Dead and cancelled deliveries and their attempts.
    pub failed: Duration,
    /// Event bodies, once every delivery of the event is final and this old.
    pub payloads: Duration,
    pub rejections: Duration,
    /// How often the pruner looks for work when the last look found none.
    pub interval: Duration,
}

#[derive(Debug, Clone)]
pub struct SpoolConfig {
    pub dir: PathBuf,
    /// Move consumed `.json` files to `done/` instead of deleting them.
    pub keep_done: bool,
    pub max_event_bytes: usize,
    /// Largest `.json` file read whole.
    pub max_file_bytes: usize,
    /// Safety-net rescan when no filesystem notification arrives.
    pub rescan_interval: Duration,
}

#[derive(Debug, Clone)]
pub struct DeliveryConfig {
    /// The wait before each retry; its length is the number of retries.
    pub schedule: Vec<Duration>,
    pub timeout: Duration,
    pub workers: usize,
    pub max_in_flight_per_endpoint: usize,
    /// Networks beyond the public internet that every subscription may reach
    /// (see `crate::egress`).
    pub allow_networks: Vec<Network>,
    /// `false` stops all delivery (intake and storage go on); see `receivers.rs`.
    pub enabled: bool,
    /// A subscription failing this long without a success is paused.
    pub auto_pause_after: Duration,
    /// Consecutive failures that open an endpoint's circuit breaker.
    pub breaker_after: usize,
    /// How long an opened breaker holds back; doubled after each failed probe.
    pub breaker_backoff: Duration,
    /// TLS defaults (`ca_file`, client certificate) and the egress proxy.
    pub transport: DeliveryTransport,
}

#[derive(Debug, Clone, PartialEq)]
pub struct Subscription {
    pub name: String,
    pub url: String,
    pub conversations: Vec<Pattern>,
    pub projects: Vec<Pattern>,
    pub events: Vec<Pattern>,
    pub signing: Signing,
    pub headers: Vec<(String, String)>,
    pub enabled: bool,
    /// Networks beyond the public internet this subscription may reach: `[delivery]
    /// allow_networks` and the subscription's own, together.
    pub allow_networks: Vec<Network>,
    /// `rate_limit`, `ordering` and `on_dead`.
    pub pacing: Pacing,
    /// Overrides `[delivery] timeout` for this subscription's attempts.
    pub timeout: Option<Duration>,
    /// Overrides `[delivery] auto_pause_after`.
    pub auto_pause_after: Option<Duration>,
    /// The old name whose deliveries, attempts and pause state this subscription takes
    /// over at start and reload (see `store/rename.rs`).
    pub renamed_from: Option<String>,
    /// TLS (its own or `[delivery]`'s), the proxy, and receiver authentication.
    pub transport: Transport,
    /// The body it sends: the envelope, a chat tool's message or a template.
    pub format: crate::format::Format,
    /// `filter`, `include` and `exclude`: which events, and what of them is sent.
    pub shaping: crate::shape::Shaping,
}

impl Subscription {
    /// How long one attempt to this subscription may take.
    pub fn timeout(&self, delivery: &DeliveryConfig) -> Duration {
        self.timeout.unwrap_or(delivery.timeout)
    }
}

impl Config {
    /// The longest any attempt may take (`[delivery] timeout` or a subscription's own):
    /// leases and the shutdown grace must cover it.
    pub fn longest_timeout(&self) -> Duration {
        longest_timeout(&self.delivery, self.subscriptions.iter())
    }
}

/// The longest of `[delivery] timeout` and the `subscriptions`' own timeouts.
pub fn longest_timeout<'a>(
    delivery: &DeliveryConfig,
    subscriptions: impl Iterator<Item = &'a Subscription>,
) -> Duration {
    subscriptions
        .filter_map(|s| s.timeout)
        .fold(delivery.timeout, Duration::max)
}

/// How requests to a subscription are signed. Keys print as `[redacted]`.
#[derive(Debug, Clone, PartialEq)]
pub enum Signing {
    /// Standard Webhooks; one signature per key (several during rotation).
    Standard { keys: Vec<SigningKey> },
    /// Hex HMAC of the raw body in a header of the operator's choosing.
    Hex {
        key: SigningKey,
        header: String,
        prefix: String,
    },
    /// Standard Webhooks `v1a`: one ed25519 signature per key (several during rotation).
    Ed25519 { keys: Vec<crate::sign::Ed25519Key> },
}

pub const DEFAULT_SCHEDULE: [&str; 7] = ["5s", "5m", "30m", "2h", "5h", "10h", "10h"];
const DEFAULT_TIMEOUT: Duration = Duration::from_secs(30);
const DEFAULT_WORKERS: usize = 32;
const DEFAULT_MAX_IN_FLIGHT: usize = 10;
/// Five days failing pauses a subscription (Svix disables an endpoint after five days).
const DEFAULT_AUTO_PAUSE_AFTER: Duration = Duration::from_secs(5 * 86_400);
const DEFAULT_BREAKER_AFTER: usize = 5;
const DEFAULT_BREAKER_BACKOFF: Duration = Duration::from_secs(30);
const DEFAULT_MAX_EVENT_BYTES: usize = 1 << 20;
const DEFAULT_MAX_FILE_BYTES: usize = 64 << 20;
const DEFAULT_RESCAN: Duration = Duration::from_secs(2);
const DAY_SECS: u64 = 86_400;
const DEFAULT_RETENTION: RetentionConfig = RetentionConfig {
    delivered: Duration::from_secs(30 * DAY_SECS),
    failed: Duration::from_secs(90 * DAY_SECS),
    payloads: Duration::from_secs(7 * DAY_SECS),
    rejections: Duration::from_secs(30 * DAY_SECS),
    interval: Duration::from_secs(10),
};
const DEFAULT_LOG_LEVEL: &str = "info";
pub const DEFAULT_LISTEN: &str = "127.0.0.1:8425";
const DEFAULT_MAX_BODY_BYTES: usize = 1 << 20;
/// An ECHO source's body limit. ECHO escapes every non-ASCII character as `\uXXXX` (6
/// bytes) and caps a transcript at 2,000 chunks of 30 s (16.7 hours); spoken Cyrillic or
/// Greek at 180 words a minute is about 34 escaped bytes a word, so ECHO's own cap is
/// about 6.2 MB, and a 3-hour transcript about 1.1 MB. 16 MiB leaves room for the summary
/// and the rest of the payload.
pub const DEFAULT_ECHO_MAX_BODY_BYTES: usize = 16 << 20;
/// ECHO sets `timestamp` when it builds a payload and retries 3 times within about two
/// minutes (Dramatiq backoff 5-60 s, plus 40 s of timeouts per attempt).
pub const DEFAULT_REPLAY_WINDOW: Duration = Duration::from_secs(10 * 60);
const DEFAULT_SESSION_TTL: Duration = Duration::from_secs(12 * 3600);
const DEFAULT_HEX_HEADER: &str = "X-Webhook-Signature";
/// Headers posthorn sets itself; a subscription may not override them.
const RESERVED_HEADERS: &[&str] = &[
    "webhook-id",
    "webhook-timestamp",
    "webhook-signature",
    "content-type",
    "content-length",
    "host",
    "transfer-encoding",
    "connection",
];

/// Everything wrong with a config file.
#[derive(Debug)]
pub struct ConfigError {
    pub path: PathBuf,
    pub problems: Vec<Problem>,
}

/// One problem, located where the file allows it (1-based line and column).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Problem {
    pub line: Option<usize>,
    pub column: Option<usize>,
    pub message: String,
}

impl fmt::Display for ConfigError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        for (i, problem) in self.problems.iter().enumerate() {
            if i > 0 {
                writeln!(f)?;
            }
            match (problem.line, problem.column) {
                (Some(line), Some(column)) => write!(
                    f,
                    "{}:{line}:{column}: {}",
                    self.path.display(),
                    problem.message
                )?,
                _ => write!(f, "{}: {}", self.path.display(), problem.message)?,
            }
        }
        Ok(())
    }
}

impl std::error::Error for ConfigError {}

/// Reads, parses and validates a config file.
pub fn load(path: &Path) -> Result<Config, ConfigError> {
    let text = std::fs::read_to_string(path).map_err(|err| ConfigError {
        path: path.to_path_buf(),
        problems: vec![Problem {
            line: None,
            column: None,
            message: format!("while reading the config file: {err}"),
        }],
    })?;
    parse(&text, path)
}

/// Parses and validates config text; `origin` names it in messages and anchors relative
/// paths.
pub fn parse(text: &str, origin: &Path) -> Result<Config, ConfigError> {
    validate::validate(text, origin).map_err(|problems| ConfigError {
        path: origin.to_path_buf(),
        problems,
    })
}

/// The configuration with no file: defaults and no subscriptions.
pub fn embedded_defaults() -> Config {
    let data = data_dir();
    Config {
        source: None,
        storage: StorageConfig {
            path: data.join("posthorn.db"),
            max_size: None,
            backend: Backend::Sqlite,
        },
        retention: DEFAULT_RETENTION,
        spool: SpoolConfig {
            dir: data.join("spool"),
            keep_done: false,
            max_event_bytes: DEFAULT_MAX_EVENT_BYTES,
            max_file_bytes: DEFAULT_MAX_FILE_BYTES,
            rescan_interval: DEFAULT_RESCAN,
        },
        delivery: DeliveryConfig {
            schedule: DEFAULT_SCHEDULE
                .iter()
                .filter_map(|text| parse_duration(text).ok())
                .collect(),
            timeout: DEFAULT_TIMEOUT,
            workers: DEFAULT_WORKERS,
            max_in_flight_per_endpoint: DEFAULT_MAX_IN_FLIGHT,
            allow_networks: Vec::new(),
            enabled: true,
            auto_pause_after: DEFAULT_AUTO_PAUSE_AFTER,
            breaker_after: DEFAULT_BREAKER_AFTER,
            breaker_backoff: DEFAULT_BREAKER_BACKOFF,
            transport: DeliveryTransport::default(),
        },
        log: LogConfig {
            level: DEFAULT_LOG_LEVEL.to_string(),
        },
        http: {
            let listen = std::net::SocketAddr::from(([127, 0, 0, 1], 8425));
            HttpConfig {
                listen,
                allowed_hosts: default_allowed_hosts(listen),
                trusted_proxies: Vec::new(),
                request_timeout: http::DEFAULT_REQUEST_TIMEOUT,
                body_timeout: http::DEFAULT_BODY_TIMEOUT,
                max_connections: None,
            }
        },
        inlet: InletConfig {
            token: None,
            max_body_bytes: DEFAULT_MAX_BODY_BYTES,
            sources: Vec::new(),
        },
        admin: AdminConfig {
            password_hash: None,
            api_token: None,
            session_ttl: DEFAULT_SESSION_TTL,
            secure_cookie: false,
        },
        subscriptions: Vec::new(),
    }
}

fn project_dirs() -> Option<directories::ProjectDirs> {
    directories::ProjectDirs::from("", "", "posthorn")
}

/// `~/.local/share/posthorn` on Linux; `./posthorn-data` when there is no home directory.
fn data_dir() -> PathBuf {
    project_dirs()
        .map(|dirs| dirs.data_dir().to_path_buf())
        .unwrap_or_else(|| PathBuf::from("posthorn-data"))
}

/// The user's config file: `~/.config/posthorn/config.toml` on Linux.
pub fn default_config_path() -> Option<PathBuf> {
    project_dirs().map(|dirs| dirs.config_dir().join("config.toml"))
}

/// Which file to load: `--config`, else `$POSTHORN_CONFIG`, else the user's config file
/// if it exists. `None` means the embedded defaults.
pub fn resolve_config_path(cli: Option<&Path>) -> Option<PathBuf> {
    if let Some(path) = cli {
        return Some(path.to_path_buf());
    }
    if let Some(path) = std::env::var_os("POSTHORN_CONFIG").filter(|p| !p.is_empty()) {
        return Some(PathBuf::from(path));
    }
    default_config_path().filter(|path| path.is_file())
}

#[cfg(test)]
mod tests;
