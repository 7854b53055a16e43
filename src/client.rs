//! The operator commands' way in: a small blocking client of the operator API
//! (`/api/v1`, docs/API.md) with a base URL and a bearer token, and where those come
//! from: `--url` or the config's `[http] listen`, `POSTHORN_API_TOKEN` or the config's
//! `[admin] api_token`, the config found the way `serve` finds it.

pub mod api;
pub mod render;
pub mod time;

use std::fmt;
use std::net::{IpAddr, Ipv4Addr, Ipv6Addr, SocketAddr};
use std::path::Path;
use std::time::Duration;

use serde::de::DeserializeOwned;

use crate::config::{self, Config, Secret};

/// The environment variable that holds the API token, ahead of the config.
pub const TOKEN_ENV: &str = "POSTHORN_API_TOKEN";
/// How long to wait for posthorn to take the connection.
const CONNECT_TIMEOUT: Duration = Duration::from_secs(5);
/// How long one call may take in all; every call is one small query or one commit.
const CALL_TIMEOUT: Duration = Duration::from_secs(30);
/// How much of a non-JSON error body is shown.
const ERROR_BODY_CHARS: usize = 200;

/// A client of one posthorn's API.
pub struct Client {
    /// `http://host:port`, no trailing slash.
    base: String,
    token: Secret,
    agent: ureq::Agent,
}

/// The client and the config it was built from (when one was read).
pub struct Connection {
    pub client: Client,
    pub config: Option<Config>,
}

/// Why a call did not get a 2xx answer.
#[derive(Debug)]
pub enum ClientError {
    /// Nothing listens at the address.
    NotRunning { url: String },
    /// Connected, but no answer in time.
    Timeout { url: String },
    /// The API answered with a status outside 2xx; `message` is its `error` text.
    Api { status: u16, message: String },
    /// A 2xx answer this client cannot read.
    BadAnswer { what: String, reason: String },
    /// Any other network failure.
    Transport { url: String, reason: String },
}

impl ClientError {
    /// Whether the API refused the call with this status.
    pub fn is_status(&self, expected: u16) -> bool {
        matches!(self, ClientError::Api { status, .. } if *status == expected)
    }
}

impl fmt::Display for ClientError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            ClientError::NotRunning { url } => {
                write!(
                    f,
                    "posthorn is not running at {url} (is `posthorn serve` up?)"
                )
            }
            ClientError::Timeout { url } => write!(
                f,
                "posthorn at {url} did not answer within {} s",
                CALL_TIMEOUT.as_secs()
            ),
            ClientError::Api {
                status: 401,
                message,
            } => write!(
                f,
                "{message}\nthe API token was refused: check {TOKEN_ENV} and [admin] api_token \
                 in the config `posthorn serve` runs with"
            ),
            ClientError::Api { message, .. } => f.write_str(message),
            ClientError::BadAnswer { what, reason } => write!(
                f,
                "posthorn answered {what} with something this command cannot read ({reason}); \
                 is `posthorn serve` the same version as this binary?"
            ),
            ClientError::Transport { url, reason } => {
                write!(f, "could not reach posthorn at {url}: {reason}")
            }
        }
    }
}

impl std::error::Error for ClientError {}

/// A 2xx answer: its text as sent (for `--json`) and what it says.
pub struct Answer<T> {
    pub raw: String,
    pub value: T,
}

impl Client {
    /// A client of the API at `base` (`http://host:port`) that sends `token`.
    pub fn new(base: &str, token: Secret) -> Client {
        let config = ureq::Agent::config_builder()
            .timeout_connect(Some(CONNECT_TIMEOUT))
            .timeout_global(Some(CALL_TIMEOUT))
            .max_redirects(0)
            .http_status_as_error(false)
            .user_agent(concat!("posthorn-cli/", env!("CARGO_PKG_VERSION")))
            .build();
        Client {
            base: base.trim_end_matches('/').to_string(),
            token,
            agent: config.into(),
        }
    }

    /// The base URL, as messages name it.
    pub fn base(&self) -> &str {
        &self.base
    }

    /// `GET /api/v1{path}?{query}`.
    pub fn get<T: DeserializeOwned>(
        &self,
        path: &str,
        query: &[(&str, String)],
    ) -> Result<Answer<T>, ClientError> {
        let url = self.url(path);
        let sent = self
            .agent
            .get(&url)
            .header("Authorization", self.bearer())
            .query_pairs(query.iter().map(|(k, v)| (*k, v.as_str())))
            .call();
        self.read(&format!("GET /api/v1{path}"), sent)
    }

    /// `POST /api/v1{path}` with `body` as JSON, or with no body.
    pub fn post<T: DeserializeOwned>(
        &self,
        path: &str,
        body: Option<&serde_json::Value>,
    ) -> Result<Answer<T>, ClientError> {
        let url = self.url(path);
        let request = self.agent.post(&url).header("Authorization", self.bearer());
        let sent = match body {
            Some(body) => request
                .content_type("application/json")
                .send(body.to_string().as_bytes()),
            None => request.send_empty(),
        };
        self.read(&format!("POST /api/v1{path}"), sent)
    }

    fn url(&self, path: &str) -> String {
        format!("{}/api/v1{path}", self.base)
    }

    fn bearer(&self) -> String {
        format!("Bearer {}", self.token.expose())
    }

    fn read<T: DeserializeOwned>(
        &self,
        what: &str,
        sent: Result<ureq::http::Response<ureq::Body>, ureq::Error>,
    ) -> Result<Answer<T>, ClientError> {
        let mut response = sent.map_err(|err| self.transport_error(err))?;
        let status = response.status().as_u16();
        let raw = response
            .body_mut()
            .read_to_string()
            .map_err(|err| self.transport_error(err))?;
        if !(200..300).contains(&status) {
            return Err(ClientError::Api {
                status,
                message: error_text(status, &raw),
            });
        }
        // A 2xx with no body (204) reads as JSON null.
        let text = if raw.trim().is_empty() { "null" } else { &raw };
        match serde_json::from_str(text) {
            Ok(value) => Ok(Answer { raw, value }),
            Err(err) => Err(ClientError::BadAnswer {
                what: what.to_string(),
                reason: err.to_string(),
            }),
        }
    }

    fn transport_error(&self, err: ureq::Error) -> ClientError {
        let url = self.base.clone();
        match err {
            ureq::Error::ConnectionFailed => ClientError::NotRunning { url },
            ureq::Error::Io(io) if io.kind() == std::io::ErrorKind::ConnectionRefused => {
                ClientError::NotRunning { url }
            }
            ureq::Error::Timeout(_) => ClientError::Timeout { url },
            ureq::Error::Io(io) if io.kind() == std::io::ErrorKind::TimedOut => {
                ClientError::Timeout { url }
            }
            ureq::Error::HostNotFound => ClientError::Transport {
                url,
                reason: "host not found".into(),
            },
            other => ClientError::Transport {
                url,
                reason: other.to_string(),
            },
        }
    }
}

/// The `error` text of an API error body, or what there is of the body.
fn error_text(status: u16, body: &str) -> String {
    let from_json = serde_json::from_str::<serde_json::Value>(body)
        .ok()
        .and_then(|v| v.get("error").and_then(|e| e.as_str()).map(str::to_string));
    match from_json {
        Some(message) => message,
        None if body.trim().is_empty() => format!("posthorn answered {status} with no body"),
        None => {
            let snippet: String = body.trim().chars().take(ERROR_BODY_CHARS).collect();
            format!("posthorn answered {status}: {snippet}")
        }
    }
}

/// `text` as one URL path segment (subscription names come from the command line).
pub fn path_segment(text: &str) -> String {
    text.bytes()
        .map(|b| {
            if b.is_ascii_alphanumeric() || b"-._~".contains(&b) {
                (b as char).to_string()
            } else {
                format!("%{b:02X}")
            }
        })
        .collect()
}

/// Builds the client from `--config`, `--url` and the environment. The config is read
/// the way `serve` finds it (`--config`, `$POSTHORN_CONFIG`, the user's config file, the
/// embedded defaults); it is needed only for what `--url` and `POSTHORN_API_TOKEN` do
/// not give. The error is a message for the operator.
pub fn connect(config_path: Option<&Path>, url: Option<&str>) -> Result<Connection, String> {
    let env_token = std::env::var(TOKEN_ENV)
        .ok()
        .filter(|t| !t.trim().is_empty())
        .map(|t| Secret::new(t.trim()));
    let loaded = match config::resolve_config_path(config_path) {
        Some(path) => config::load(&path),
        None => Ok(config::embedded_defaults()),
    };
    let (config, base, token) = match (url, env_token) {
        // Nothing is needed from the config: one this user cannot read does not matter.
        (Some(url), Some(token)) => (loaded.ok(), check_url(url)?, token),
        (url, env_token) => {
            let config = loaded.map_err(|err| {
                format!(
                    "the configuration is not valid (or pass --url and set {TOKEN_ENV} to do \
                     without it):\n{err}"
                )
            })?;
            let base = match url {
                Some(url) => check_url(url)?,
                None => format!("http://{}", reachable(config.http.listen)),
            };
            let token = match (env_token, &config.admin.api_token) {
                (Some(token), _) => token,
                (None, Some(token)) => token.clone(),
                (None, None) => return Err(no_token(&config)),
            };
            (Some(config), base, token)
        }
    };
    Ok(Connection {
        client: Client::new(&base, token),
        config,
    })
}

fn check_url(url: &str) -> Result<String, String> {
    let url = url.trim().trim_end_matches('/');
    if url.starts_with("http://") || url.starts_with("https://") {
        Ok(url.to_string())
    } else {
        Err(format!(
            "--url {url:?} must start with http:// or https://, like http://127.0.0.1:8425"
        ))
    }
}

/// Where to connect for a listen address: an address that listens on every interface
/// is reached on loopback.
fn reachable(listen: SocketAddr) -> SocketAddr {
    match listen.ip() {
        IpAddr::V4(ip) if ip.is_unspecified() => {
            SocketAddr::new(Ipv4Addr::LOCALHOST.into(), listen.port())
        }
        IpAddr::V6(ip) if ip.is_unspecified() => {
            SocketAddr::new(Ipv6Addr::LOCALHOST.into(), listen.port())
        }
        _ => listen,
    }
}

fn no_token(config: &Config) -> String {
    let place = match &config.source {
        Some(path) => format!("in {}", path.display()),
        None => "in the config file (none was found: pass --config PATH or set \
                 POSTHORN_CONFIG)"
            .to_string(),
    };
    format!(
        "no API token: set one under [admin] {place}, for example\n\n    [admin]\n    \
         api_token = \"a-long-random-string\"   # or api_token_env / api_token_file\n\n\
         and restart `posthorn serve`; or put the token in {TOKEN_ENV}"
    )
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn path_segments_are_escaped() {
        assert_eq!(path_segment("north-crm_1.v2"), "north-crm_1.v2");
        assert_eq!(path_segment("a/b c?"), "a%2Fb%20c%3F");
        assert_eq!(path_segment("ü"), "%C3%BC");
    }

    #[test]
    fn error_bodies_give_their_error_text() {
        assert_eq!(
            error_text(404, r#"{"error":"no delivery 9","id":9}"#),
            "no delivery 9"
        );
        assert_eq!(
            error_text(502, "<html>bad gateway</html>"),
            "posthorn answered 502: <html>bad gateway</html>"
        );
        assert_eq!(error_text(500, ""), "posthorn answered 500 with no body");
    }

    #[test]
    fn a_wildcard_listen_address_is_reached_on_loopback() {
        let any: SocketAddr = "0.0.0.0:8425".parse().unwrap();
        assert_eq!(reachable(any).to_string(), "127.0.0.1:8425");
        let any6: SocketAddr = "[::]:8425".parse().unwrap();
        assert_eq!(reachable(any6).to_string(), "[::1]:8425");
        let one: SocketAddr = "10.1.2.3:9000".parse().unwrap();
        assert_eq!(reachable(one), one);
    }

    #[test]
    fn urls_need_a_scheme() {
        assert_eq!(
            check_url("http://127.0.0.1:8425/").as_deref(),
            Ok("http://127.0.0.1:8425")
        );
        assert!(check_url("127.0.0.1:8425").unwrap_err().contains("http://"));
    }

    #[test]
    fn a_refused_token_says_where_tokens_come_from() {
        let err = ClientError::Api {
            status: 401,
            message: "log in first".into(),
        };
        let text = err.to_string();
        assert!(
            text.contains(TOKEN_ENV) && text.contains("api_token"),
            "{text}"
        );
    }
}
