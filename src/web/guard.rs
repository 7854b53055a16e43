//! What stands between the network and the handlers: the `Host` check against DNS
//! rebinding (a page on another site whose name resolves to this machine must not reach
//! the routes that need no login), which address a request comes from (`X-Forwarded-For`
//! only from `[http] trusted_proxies`), and the limits and refusal counts of
//! [`limits`](super::limits) and [`refusals`](super::refusals) that keep an
//! unauthenticated client from costing anything durable.

use std::net::{IpAddr, SocketAddr};
use std::sync::atomic::Ordering;

use actix_web::body::{EitherBody, MessageBody};
use actix_web::dev::{ServiceRequest, ServiceResponse};
use actix_web::http::{header, StatusCode};
use actix_web::middleware::Next;
use actix_web::{web, HttpRequest, ResponseError};

use super::limits::Limits;
use super::refusals::Refusals;
use super::{ApiError, AppState};
use crate::config::{host_without_port, HttpConfig};
use crate::egress::Network;

/// The web layer's defences, built once from `[http]`.
pub struct Guard {
    hosts: Vec<String>,
    any_host: bool,
    any_ip: bool,
    proxies: Vec<Network>,
    /// Longest wait for a request's head (`[http] request_timeout`).
    pub request_timeout: std::time::Duration,
    /// Most open connections, from the descriptor budget and `[http] max_connections`.
    pub max_connections: usize,
    pub limits: Limits,
    pub refusals: Refusals,
}

impl Guard {
    /// `max_connections` as [`crate::fdlimit::connection_budget`] gives it.
    pub fn new(http: &HttpConfig, max_connections: usize) -> Guard {
        let any_ip = http
            .allowed_hosts
            .iter()
            .any(|h| h == "0.0.0.0" || h == "[::]");
        Guard {
            any_host: http.allowed_hosts.iter().any(|h| h == "*"),
            any_ip,
            hosts: http.allowed_hosts.clone(),
            proxies: http.trusted_proxies.clone(),
            request_timeout: http.request_timeout,
            max_connections,
            limits: Limits::new(http.body_timeout),
            refusals: Refusals::default(),
        }
    }

    /// Whether a `Host` header value names this server.
    pub fn host_allowed(&self, host: &str) -> bool {
        if self.any_host {
            return true;
        }
        let name = host_without_port(host).to_ascii_lowercase();
        if self.hosts.contains(&name) {
            return true;
        }
        self.any_ip && is_ip_literal(&name)
    }

    /// The client's address: the peer, or, when the peer is a trusted proxy, the nearest
    /// address in `X-Forwarded-For` that is not itself a trusted proxy. Entries a client
    /// wrote before reaching the first proxy are never reached, so it cannot choose
    /// whose failures count against it.
    pub fn client_ip(&self, peer: Option<SocketAddr>, forwarded: &[&str]) -> Option<IpAddr> {
        let peer = peer?.ip();
        if !self.trusted(peer) {
            return Some(peer);
        }
        let mut client = peer;
        for hop in forwarded.iter().rev().flat_map(|value| value.rsplit(',')) {
            match parse_hop(hop) {
                Some(address) => {
                    client = address;
                    if !self.trusted(address) {
                        break;
                    }
                }
                // A hop that is not an address: stop at the last one that was.
                None => break,
            }
        }
        Some(client)
    }

    /// This layer's lines of `/metrics`: refusals, argon2 verifications, the connection cap.
    pub fn render(&self, out: &mut String) {
        use std::fmt::Write as _;
        self.refusals.render(out);
        let verifications = self.limits.verifications.load(Ordering::Relaxed);
        let _ = write!(
            out,
            "# HELP posthorn_login_verifications_total Admin passwords checked with argon2 \
             (wrong and right; throttled and busy logins are not checked).\n\
             # TYPE posthorn_login_verifications_total counter\n\
             posthorn_login_verifications_total {verifications}\n\
             # HELP posthorn_http_max_connections Open HTTP connections allowed, below the open file limit.\n\
             # TYPE posthorn_http_max_connections gauge\n\
             posthorn_http_max_connections {}\n",
            self.max_connections
        );
    }

    /// A dual-stack listener reports an IPv4 peer as `::ffff:a.b.c.d`; it is judged
    /// as the IPv4 address it is.
    fn trusted(&self, address: IpAddr) -> bool {
        self.proxies
            .iter()
            .any(|net| net.contains(address.to_canonical()))
    }
}

fn is_ip_literal(name: &str) -> bool {
    let bare = name
        .strip_prefix('[')
        .and_then(|n| n.strip_suffix(']'))
        .unwrap_or(name);
    bare.parse::<IpAddr>().is_ok()
}

/// One `X-Forwarded-For` entry: an address, possibly with a port (`192.0.2.1:4711`,
/// `[2001:db8::1]:4711`).
fn parse_hop(hop: &str) -> Option<IpAddr> {
    let hop = hop.trim();
    hop.parse::<IpAddr>()
        .ok()
        .or_else(|| hop.parse::<SocketAddr>().ok().map(|a| a.ip()))
}

/// The client address of `request` as [`Guard::client_ip`] decides it; `None` when the
/// request has no peer (tests calling the app directly).
pub fn client_ip(request: &HttpRequest) -> Option<IpAddr> {
    let state = request.app_data::<web::Data<AppState>>()?;
    let forwarded: Vec<&str> = request
        .headers()
        .get_all("x-forwarded-for")
        .filter_map(|v| v.to_str().ok())
        .collect();
    state.guard.client_ip(request.peer_addr(), &forwarded)
}

/// Middleware: every route answers only requests whose `Host` names this server; others
/// get 421 before any handler runs. A request without a `Host` passes: browsers, which a
/// rebinding page drives, always send one.
pub async fn check_host(
    request: ServiceRequest,
    next: Next<impl MessageBody + 'static>,
) -> Result<ServiceResponse<EitherBody<impl MessageBody>>, actix_web::Error> {
    let verdict = match request.app_data::<web::Data<AppState>>() {
        None => Ok(()),
        Some(state) => {
            let host = request
                .headers()
                .get(header::HOST)
                .and_then(|v| v.to_str().ok())
                .map(str::to_string)
                // HTTP/2 and absolute-form requests carry it in the URI.
                .or_else(|| request.uri().authority().map(|a| a.to_string()));
            match host {
                Some(host) if state.guard.host_allowed(&host) => Ok(()),
                Some(_) => {
                    state.guard.refusals.count("host", "not allowed");
                    Err(ApiError::new(
                        StatusCode::MISDIRECTED_REQUEST,
                        "this Host is not one posthorn answers to ([http] allowed_hosts)",
                    ))
                }
                // HTTP/1.0 may omit it; a browser (the rebinding attack) never does.
                None => Ok(()),
            }
        }
    };
    match verdict {
        Ok(()) => next
            .call(request)
            .await
            .map(ServiceResponse::map_into_left_body),
        Err(refusal) => {
            let (request, _) = request.into_parts();
            let response = refusal.error_response().map_into_right_body();
            Ok(ServiceResponse::new(request, response))
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn guard_for(body: &str) -> Guard {
        let config = crate::config::parse(body, std::path::Path::new("t.toml")).unwrap();
        Guard::new(&config.http, 100)
    }

    fn peer(text: &str) -> Option<SocketAddr> {
        Some(SocketAddr::new(text.parse().unwrap(), 4711))
    }

    #[test]
    fn only_the_listen_address_and_local_names_are_answered_by_default() {
        let guard = guard_for("");
        for host in ["127.0.0.1:8425", "localhost", "LOCALHOST:1", "[::1]:8425"] {
            assert!(guard.host_allowed(host), "{host}");
        }
        for host in [
            "evil.example",
            "evil.example:8425",
            "127.0.0.2",
            "localhost.evil",
        ] {
            assert!(!guard.host_allowed(host), "{host}");
        }
    }

    #[test]
    fn listening_everywhere_answers_ip_literals_but_no_other_names() {
        let guard = guard_for("[http]\nlisten = \"0.0.0.0:8425\"\n");
        assert!(guard.host_allowed("192.0.2.4:8425"));
        assert!(guard.host_allowed("[2001:db8::1]:8425"));
        assert!(!guard.host_allowed("rebound.example:8425"));
        let any = guard_for("[http]\nallowed_hosts = [\"*\"]\n");
        assert!(any.host_allowed("rebound.example"));
    }

    #[test]
    fn forwarded_for_counts_only_from_trusted_proxies() {
        let direct = guard_for("");
        assert_eq!(
            direct.client_ip(peer("127.0.0.1"), &["192.0.2.9"]),
            Some("127.0.0.1".parse().unwrap()),
            "no trusted proxies: the header is ignored"
        );
        let proxied = guard_for("[http]\ntrusted_proxies = [\"127.0.0.1\", \"10.0.0.0/8\"]\n");
        assert_eq!(
            proxied.client_ip(peer("127.0.0.1"), &["198.51.100.7, 192.0.2.9, 10.1.1.1"]),
            Some("192.0.2.9".parse().unwrap()),
            "the nearest untrusted hop, not what the client wrote first"
        );
        assert_eq!(
            proxied.client_ip(peer("192.0.2.50"), &["198.51.100.7"]),
            Some("192.0.2.50".parse().unwrap()),
            "an untrusted peer cannot name another client"
        );
        assert_eq!(
            proxied.client_ip(peer("127.0.0.1"), &["[2001:db8::5]:4711"]),
            Some("2001:db8::5".parse().unwrap())
        );
        assert_eq!(
            proxied.client_ip(peer("127.0.0.1"), &["garbage"]),
            Some("127.0.0.1".parse().unwrap())
        );
        assert_eq!(
            proxied.client_ip(peer("127.0.0.1"), &[]),
            Some("127.0.0.1".parse().unwrap())
        );
    }
}
