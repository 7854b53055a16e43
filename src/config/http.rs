//! The `[http]` section as written, and its validation: the listen address, which `Host`
//! names the server answers (against DNS rebinding), which peers may name the client in
//! `X-Forwarded-For`, and the limits that keep slow or many clients from taking the
//! server down (head and body timeouts, a connection cap).

use std::net::{IpAddr, SocketAddr};
use std::ops::Range;

use serde::Deserialize;
use toml::Spanned;

use super::validate::Validator;
use super::values::HumanDuration;
use super::*;
use crate::egress::Network;

/// How long a client may take to send a request's head; then 408 and the connection
/// closes.
pub const DEFAULT_REQUEST_TIMEOUT: Duration = Duration::from_secs(5);
/// How long a client may take to send a whole request body; then 408.
pub const DEFAULT_BODY_TIMEOUT: Duration = Duration::from_secs(30);
/// Host names the server always answers to, besides the listen address.
const LOCAL_HOSTS: [&str; 3] = ["localhost", "127.0.0.1", "[::1]"];
/// Most connections anyone may configure (actix's own default cap per worker times two).
const MAX_CONNECTIONS: usize = 50_000;

#[derive(Deserialize, Default)]
#[serde(deny_unknown_fields)]
pub(super) struct RawHttp {
    listen: Option<Spanned<String>>,
    allowed_hosts: Option<Spanned<Vec<Spanned<String>>>>,
    trusted_proxies: Option<Vec<Spanned<String>>>,
    request_timeout: Option<Spanned<HumanDuration>>,
    body_timeout: Option<Spanned<HumanDuration>>,
    max_connections: Option<Spanned<i64>>,
}

/// The `Host` names answered by default: the listen address and the local names. For a
/// server listening on every address that is `0.0.0.0` (or `[::]`), which the guard reads
/// as "any IP address": it cannot know its own addresses, and an IP literal has no DNS
/// name to rebind. Other names then need `allowed_hosts`.
pub fn default_allowed_hosts(listen: SocketAddr) -> Vec<String> {
    let mut hosts: Vec<String> = LOCAL_HOSTS.iter().map(|h| h.to_string()).collect();
    let own = match listen.ip() {
        IpAddr::V6(v6) => format!("[{v6}]"),
        v4 => v4.to_string(),
    };
    if !hosts.contains(&own) {
        hosts.push(own);
    }
    hosts
}

/// A `Host` pattern as the guard compares it: lower case, without a port.
pub fn host_without_port(host: &str) -> &str {
    let host = host.trim();
    if host.starts_with('[') {
        // [v6] or [v6]:port
        return host.find(']').map_or(host, |end| &host[..=end]);
    }
    match host.rsplit_once(':') {
        Some((name, port)) if port.bytes().all(|b| b.is_ascii_digit()) => name,
        _ => host,
    }
}

impl Validator<'_> {
    pub(super) fn http(&mut self, raw: RawHttp, defaults: HttpConfig) -> HttpConfig {
        let listen = match raw.listen {
            None => defaults.listen,
            Some(listen) => match listen.get_ref().parse() {
                Ok(listen) => listen,
                Err(_) => {
                    self.problem(
                        listen.span(),
                        format!(
                            "http.listen {:?} is not an address and port like \"{DEFAULT_LISTEN}\"",
                            listen.get_ref()
                        ),
                    );
                    defaults.listen
                }
            },
        };
        let allowed_hosts = match raw.allowed_hosts {
            None => default_allowed_hosts(listen),
            Some(hosts) if hosts.get_ref().is_empty() => {
                self.problem(
                    hosts.span(),
                    "http.allowed_hosts is empty; list the names clients use to reach posthorn, or [\"*\"] for any",
                );
                default_allowed_hosts(listen)
            }
            Some(hosts) => self.allowed_hosts(hosts.into_inner()),
        };
        let mut trusted_proxies = Vec::new();
        for proxy in raw.trusted_proxies.unwrap_or_default() {
            match proxy.get_ref().parse::<Network>() {
                Ok(network) => trusted_proxies.push(network),
                Err(reason) => {
                    self.problem(proxy.span(), format!("http.trusted_proxies: {reason}"))
                }
            }
        }
        let max_connections = raw.max_connections.and_then(|value| {
            let span: Range<usize> = value.span();
            match usize::try_from(*value.get_ref()) {
                Ok(n) if (1..=MAX_CONNECTIONS).contains(&n) => Some(n),
                _ => {
                    self.problem(
                        span,
                        format!(
                            "http.max_connections is {}; expected a whole number from 1 to {MAX_CONNECTIONS}",
                            value.get_ref()
                        ),
                    );
                    None
                }
            }
        });
        HttpConfig {
            listen,
            allowed_hosts,
            trusted_proxies,
            request_timeout: self.positive_duration(
                raw.request_timeout,
                defaults.request_timeout,
                "http.request_timeout",
            ),
            body_timeout: self.positive_duration(
                raw.body_timeout,
                defaults.body_timeout,
                "http.body_timeout",
            ),
            max_connections,
        }
    }

    /// Host names without a port, lower case; `"*"` alone answers any name.
    fn allowed_hosts(&mut self, hosts: Vec<Spanned<String>>) -> Vec<String> {
        let mut allowed = Vec::new();
        for host in hosts {
            let text = host.get_ref().trim().to_ascii_lowercase();
            let name = host_without_port(&text);
            let valid = name == "*"
                || (!name.is_empty()
                    && name
                        .bytes()
                        .all(|b| b.is_ascii_alphanumeric() || b".-_:[]".contains(&b)));
            if !valid {
                self.problem(
                    host.span(),
                    format!(
                        "http.allowed_hosts: {:?} is not a host name or address (like \"posthorn.example.org\" or \"[::1]\"), or \"*\" for any",
                        host.get_ref()
                    ),
                );
            } else if name != text {
                self.problem(
                    host.span(),
                    format!(
                        "http.allowed_hosts: write {:?} without a port; the port is not checked",
                        host.get_ref()
                    ),
                );
            } else {
                allowed.push(text);
            }
        }
        allowed
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn hosts_lose_their_port() {
        assert_eq!(host_without_port("localhost:8425"), "localhost");
        assert_eq!(host_without_port("[::1]:8425"), "[::1]");
        assert_eq!(host_without_port("[::1]"), "[::1]");
        assert_eq!(host_without_port("example.org"), "example.org");
    }

    #[test]
    fn the_default_hosts_are_the_listen_address_and_local_names() {
        let hosts = default_allowed_hosts("192.0.2.10:8425".parse().unwrap());
        assert_eq!(hosts, ["localhost", "127.0.0.1", "[::1]", "192.0.2.10"]);
        let hosts = default_allowed_hosts("127.0.0.1:8425".parse().unwrap());
        assert_eq!(hosts, ["localhost", "127.0.0.1", "[::1]"]);
    }
}
