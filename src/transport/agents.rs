//! The HTTP agents deliveries use, one per route: the allow list, the TLS settings and
//! the proxy (if any) a request travels with. Requests on one route share one agent, so
//! its keep-alive connections are reused; requests on different routes never share a
//! connection. Every connection passes the egress guard (`crate::egress`): the direct
//! receiver's addresses, or through a proxy the proxy's addresses and the receiver's name
//! as resolved here.

use std::collections::HashMap;
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use ureq::http::Uri;
use ureq::unversioned::resolver::{DefaultResolver, ResolvedSocketAddrs, Resolver};
use ureq::unversioned::transport::{
    ConnectProxyConnector, ConnectionDetails, Connector, DefaultConnector, NextTimeout,
    TcpConnector,
};

use crate::config::{DeliveryConfig, Proxy, Tls};
use crate::egress::{self, Network};

/// Everything that decides how a connection is made.
#[derive(Debug, Clone, PartialEq, Eq, Hash)]
pub struct Route {
    pub allow: Vec<Network>,
    pub tls: Tls,
    pub proxy: Option<Arc<Proxy>>,
}

/// An agent for `route`: the delivery timeouts, no redirects, no proxy from the
/// environment (`HTTP_PROXY` and the like are ignored: only `[delivery] proxy` is used,
/// so what the guard checks is what is reached), the route's TLS settings and proxy.
pub fn build_agent(config: &DeliveryConfig, route: &Route) -> ureq::Agent {
    let proxy = route.proxy.as_deref().and_then(ureq_proxy);
    let agent_config = ureq::Agent::config_builder()
        .timeout_global(Some(config.timeout))
        .max_redirects(0)
        .http_status_as_error(false)
        .user_agent(concat!("posthorn/", env!("CARGO_PKG_VERSION")))
        .max_idle_connections(config.workers.max(16))
        .max_idle_connections_per_host(config.max_in_flight_per_endpoint)
        .proxy(proxy)
        .tls_config(super::tls::tls_config(&route.tls))
        .build();
    let resolver = egress::GuardedResolver::new(
        CachingResolver::default(),
        egress::Policy::new(&route.allow),
    );
    // With a ca_file, TLS is ours (see `pinned`); otherwise ureq's, with the built-in roots.
    match super::pinned::client_config(&route.tls) {
        Some(tls) => {
            let connector =
                ().chain(ConnectProxyConnector::default())
                    .chain(TcpConnector::default())
                    .chain(super::pinned::CaFileTls(tls));
            ureq::Agent::with_parts(agent_config, ProxiedTargetGuard(connector), resolver)
        }
        None => ureq::Agent::with_parts(
            agent_config,
            ProxiedTargetGuard(DefaultConnector::default()),
            resolver,
        ),
    }
}

/// The ureq proxy for our settings; `None` only if they cannot form one, which the
/// config check rules out.
fn ureq_proxy(proxy: &Proxy) -> Option<ureq::Proxy> {
    let host = if proxy.host.contains(':') {
        format!("[{}]", proxy.host)
    } else {
        proxy.host.clone()
    };
    let mut builder = ureq::Proxy::builder(ureq::ProxyProtocol::Http)
        .host(&host)
        .port(proxy.port);
    if let Some(username) = &proxy.username {
        builder = builder.username(username);
    }
    if let Some(password) = &proxy.password {
        builder = builder.password(password.expose());
    }
    builder.build().ok()
}

/// Through a CONNECT proxy the proxy resolves the receiver's name, so the resolver never
/// sees it. This connector looks the name up here first and refuses the connection when
/// every address it resolves to is one the allow list does not open. A name that does
/// not resolve here (split DNS) is left to the proxy. The proxy may still resolve it
/// differently; the README says so.
#[derive(Debug)]
struct ProxiedTargetGuard<C>(C);

impl<C: Connector<()>> Connector<()> for ProxiedTargetGuard<C> {
    type Out = C::Out;

    fn connect(
        &self,
        details: &ConnectionDetails,
        chained: Option<()>,
    ) -> Result<Option<Self::Out>, ureq::Error> {
        // The connection to the proxy itself is made with a config without the proxy,
        // and its address goes through the guarded resolver as usual.
        if details.config.proxy().is_some() {
            if let Err(err) = details
                .resolver
                .resolve(details.uri, details.config, details.timeout)
            {
                if egress::refusal(&err).is_some() {
                    return Err(err);
                }
            }
        }
        self.0.connect(details, chained)
    }
}

/// How long a host's resolved addresses are reused before it is looked up again.
const RESOLVE_CACHE_TTL: Duration = Duration::from_secs(30);

/// Resolves each endpoint at most once per `RESOLVE_CACHE_TTL`. ureq asks its resolver
/// on every request, before it looks for a kept-alive connection, and its default
/// resolver spawns a thread per lookup when a timeout is set: without this cache every
/// attempt cost a thread and a `getaddrinfo` call, even on a reused connection.
/// (`Resolver` is in ureq's `unversioned` API, outside its semver promise: recheck this on
/// a ureq upgrade.)
#[derive(Debug, Default)]
struct CachingResolver {
    inner: DefaultResolver,
    cache: Mutex<HashMap<String, (Instant, ResolvedSocketAddrs)>>,
}

impl Resolver for CachingResolver {
    fn resolve(
        &self,
        uri: &Uri,
        config: &ureq::config::Config,
        timeout: NextTimeout,
    ) -> Result<ResolvedSocketAddrs, ureq::Error> {
        let Some(authority) = uri.authority() else {
            return self.inner.resolve(uri, config, timeout);
        };
        let key = format!("{}://{authority}", uri.scheme_str().unwrap_or_default());
        let cached = self.cache.lock().ok().and_then(|cache| {
            let (at, addrs) = cache.get(&key)?;
            (at.elapsed() < RESOLVE_CACHE_TTL).then(|| addrs.clone())
        });
        if let Some(addrs) = cached {
            return Ok(addrs);
        }
        // Failures are not cached: the next attempt looks the host up again.
        let addrs = self.inner.resolve(uri, config, timeout)?;
        if let Ok(mut cache) = self.cache.lock() {
            cache.retain(|_, (at, _)| at.elapsed() < RESOLVE_CACHE_TTL);
            cache.insert(key, (Instant::now(), addrs.clone()));
        }
        Ok(addrs)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn resolved_addresses_are_reused_per_endpoint() {
        let resolver = CachingResolver::default();
        let config = ureq::config::Config::default();
        let timeout = NextTimeout::default();
        let uri: Uri = "http://127.0.0.1:9/hook".parse().unwrap();
        let first = resolver.resolve(&uri, &config, timeout).unwrap();
        let again = resolver.resolve(&uri, &config, timeout).unwrap();
        assert_eq!(&*first, &*again);
        assert_eq!(first.first().map(|a| a.port()), Some(9));
        assert_eq!(resolver.cache.lock().unwrap().len(), 1);
    }

    #[test]
    fn routes_differ_by_tls_and_proxy() {
        let plain = Route {
            allow: Vec::new(),
            tls: Tls::default(),
            proxy: None,
        };
        let proxied = Route {
            proxy: Some(Arc::new(Proxy {
                host: "127.0.0.1".into(),
                port: 3128,
                username: None,
                password: None,
                no_proxy: Vec::new(),
            })),
            ..plain.clone()
        };
        assert_ne!(plain, proxied);
        assert_eq!(proxied, proxied.clone());
        let agent = ureq_proxy(proxied.proxy.as_deref().unwrap()).unwrap();
        assert_eq!((agent.host(), agent.port()), ("127.0.0.1", 3128));
    }
}
