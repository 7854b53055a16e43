//! Egress: which addresses a delivery may reach. The decision is made on the addresses a
//! host name resolved to, every time a request is about to connect (a resolver wrapped
//! around the HTTP client's own), so a name that is rebound to an internal address is
//! refused on its next attempt, whatever it resolved to before.
//!
//! Public addresses are always reached. Loopback, private and other non-public ranges
//! are reached only when an `allow_networks` entry (in `[delivery]`, or the
//! subscription's own, which adds to it) holds the address. Link-local (where cloud
//! metadata services answer), metadata, unspecified, multicast, broadcast and reserved
//! addresses need an entry that lies inside that special range, so a broad entry such as
//! `0.0.0.0/0` or `10.0.0.0/8` never opens them by accident.

use std::collections::HashMap;
use std::fmt;
use std::net::{IpAddr, Ipv4Addr, Ipv6Addr};
use std::str::FromStr;
use std::sync::Mutex;

use ureq::http::Uri;
use ureq::unversioned::resolver::{ResolvedSocketAddrs, Resolver};
use ureq::unversioned::transport::NextTimeout;

/// A network written as `address/prefix` (a bare address is one host).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub struct Network {
    addr: IpAddr,
    prefix: u8,
}

impl Network {
    /// Whether `ip` is inside this network (an IPv4 network never holds an IPv6
    /// address and the reverse).
    pub fn contains(&self, ip: IpAddr) -> bool {
        match (self.addr, ip) {
            (IpAddr::V4(net), IpAddr::V4(ip)) => {
                mask_v4(u32::from(ip), self.prefix) == u32::from(net)
            }
            (IpAddr::V6(net), IpAddr::V6(ip)) => {
                mask_v6(u128::from(ip), self.prefix) == u128::from(net)
            }
            _ => false,
        }
    }

    /// Whether all of `other` lies inside this network.
    fn covers(&self, other: &Network) -> bool {
        other.prefix >= self.prefix && self.contains(other.addr)
    }

    const fn v4(a: u8, b: u8, c: u8, d: u8, prefix: u8) -> Network {
        Network {
            addr: IpAddr::V4(Ipv4Addr::new(a, b, c, d)),
            prefix,
        }
    }

    const fn v6(segments: [u16; 8], prefix: u8) -> Network {
        let [a, b, c, d, e, f, g, h] = segments;
        Network {
            addr: IpAddr::V6(Ipv6Addr::new(a, b, c, d, e, f, g, h)),
            prefix,
        }
    }
}

fn mask_v4(bits: u32, prefix: u8) -> u32 {
    if prefix == 0 {
        0
    } else {
        bits & (u32::MAX << (32 - u32::from(prefix)))
    }
}

fn mask_v6(bits: u128, prefix: u8) -> u128 {
    if prefix == 0 {
        0
    } else {
        bits & (u128::MAX << (128 - u32::from(prefix)))
    }
}

impl fmt::Display for Network {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{}/{}", self.addr, self.prefix)
    }
}

impl FromStr for Network {
    type Err = String;

    fn from_str(text: &str) -> Result<Network, String> {
        let (addr, prefix) = match text.split_once('/') {
            Some((addr, prefix)) => (addr, Some(prefix)),
            None => (text, None),
        };
        let addr: IpAddr = addr.trim().parse().map_err(|_| {
            format!(
                "{text:?} is not a network; write an address with a prefix length, like \
                 \"10.0.0.0/8\", \"192.168.1.20\" or \"fd12:3456::/48\""
            )
        })?;
        let max = if addr.is_ipv4() { 32 } else { 128 };
        let prefix = match prefix {
            None => max,
            Some(p) => p
                .trim()
                .parse::<u8>()
                .ok()
                .filter(|p| *p <= max)
                .ok_or_else(|| {
                    format!("{text:?}: the prefix length must be a number from 0 to {max}")
                })?,
        };
        let network = Network { addr, prefix };
        let base = match addr {
            IpAddr::V4(a) => IpAddr::V4(Ipv4Addr::from(mask_v4(u32::from(a), prefix))),
            IpAddr::V6(a) => IpAddr::V6(Ipv6Addr::from(mask_v6(u128::from(a), prefix))),
        };
        if base != addr {
            return Err(format!(
                "{text:?} has address bits set past its prefix; write \"{base}/{prefix}\""
            ));
        }
        Ok(network)
    }
}

/// A range of addresses that is not public.
struct Special {
    net: Network,
    what: &'static str,
    /// Reached only through an allow entry inside `net`.
    strict: bool,
}

const fn strict(net: Network, what: &'static str) -> Special {
    Special {
        net,
        what,
        strict: true,
    }
}

const fn allowable(net: Network, what: &'static str) -> Special {
    Special {
        net,
        what,
        strict: false,
    }
}

/// Non-public IPv4 ranges, the most specific first.
const SPECIAL_V4: &[Special] = &[
    strict(
        Network::v4(100, 100, 100, 200, 32),
        "is a cloud metadata address (Alibaba Cloud)",
    ),
    strict(
        Network::v4(168, 63, 129, 16, 32),
        "is a cloud host address (Azure's platform services)",
    ),
    strict(
        Network::v4(255, 255, 255, 255, 32),
        "is the broadcast address",
    ),
    strict(
        Network::v4(0, 0, 0, 0, 8),
        "is an unspecified address (0.0.0.0 reaches this machine)",
    ),
    strict(
        Network::v4(169, 254, 0, 0, 16),
        "is a link-local address (cloud metadata services answer at 169.254.169.254)",
    ),
    strict(Network::v4(224, 0, 0, 0, 4), "is a multicast address"),
    strict(Network::v4(240, 0, 0, 0, 4), "is a reserved address"),
    allowable(Network::v4(127, 0, 0, 0, 8), "is a loopback address"),
    allowable(Network::v4(10, 0, 0, 0, 8), "is in a private range"),
    allowable(Network::v4(172, 16, 0, 0, 12), "is in a private range"),
    allowable(Network::v4(192, 168, 0, 0, 16), "is in a private range"),
    allowable(
        Network::v4(100, 64, 0, 0, 10),
        "is in the shared range of carrier-grade NAT",
    ),
    allowable(
        Network::v4(192, 0, 0, 0, 24),
        "is in the IETF protocol assignments range",
    ),
    allowable(Network::v4(192, 0, 2, 0, 24), "is in a documentation range"),
    allowable(
        Network::v4(198, 51, 100, 0, 24),
        "is in a documentation range",
    ),
    allowable(
        Network::v4(203, 0, 113, 0, 24),
        "is in a documentation range",
    ),
    allowable(
        Network::v4(198, 18, 0, 0, 15),
        "is in the benchmarking range",
    ),
];

/// Non-public IPv6 ranges, the most specific first. Addresses that carry an IPv4
/// address (mapped, compatible, NAT64, 6to4) are judged by that address instead.
const SPECIAL_V6: &[Special] = &[
    strict(Network::v6([0; 8], 128), "is the unspecified address"),
    strict(
        Network::v6([0xfd00, 0xec2, 0, 0, 0, 0, 0, 0x254], 128),
        "is a cloud metadata address (AWS)",
    ),
    strict(
        Network::v6([0xfe80, 0, 0, 0, 0, 0, 0, 0], 10),
        "is a link-local address",
    ),
    strict(
        Network::v6([0xff00, 0, 0, 0, 0, 0, 0, 0], 8),
        "is a multicast address",
    ),
    allowable(
        Network::v6([0, 0, 0, 0, 0, 0, 0, 1], 128),
        "is a loopback address",
    ),
    allowable(
        Network::v6([0xfc00, 0, 0, 0, 0, 0, 0, 0], 7),
        "is in a private range (unique local)",
    ),
    allowable(
        Network::v6([0xfec0, 0, 0, 0, 0, 0, 0, 0], 10),
        "is in a private range (site-local)",
    ),
    allowable(
        Network::v6([0x2001, 0xdb8, 0, 0, 0, 0, 0, 0], 32),
        "is in a documentation range",
    ),
    allowable(
        Network::v6([0x100, 0, 0, 0, 0, 0, 0, 0], 64),
        "is in the discard range",
    ),
];

/// The IPv4 address an IPv6 address stands for, where it carries one: IPv4-mapped
/// (`::ffff:a.b.c.d`), IPv4-compatible (`::a.b.c.d`), NAT64 (`64:ff9b::a.b.c.d`) and
/// 6to4 (`2002:AABB:CCDD::`).
fn embedded_v4(ip: Ipv6Addr) -> Option<Ipv4Addr> {
    let bits = u128::from(ip);
    let low = Ipv4Addr::from(bits as u32);
    let s = ip.segments();
    match s {
        [0, 0, 0, 0, 0, 0xffff, _, _] => Some(low),
        // `::` and `::1` are IPv6's own.
        [0, 0, 0, 0, 0, 0, _, _] if bits > 1 => Some(low),
        [0x64, 0xff9b, 0, 0, 0, 0, _, _] => Some(low),
        [0x2002, hi, lo, ..] => Some(Ipv4Addr::from((u32::from(hi) << 16) | u32::from(lo))),
        _ => None,
    }
}

/// The special range `ip` falls in, judged by its embedded IPv4 address where it has
/// one; `None` for a public address.
fn special(ip: IpAddr) -> Option<(IpAddr, &'static Special)> {
    let (ip, table) = match ip {
        IpAddr::V4(v4) => (IpAddr::V4(v4), SPECIAL_V4),
        IpAddr::V6(v6) => match embedded_v4(v6) {
            Some(v4) => (IpAddr::V4(v4), SPECIAL_V4),
            None => (IpAddr::V6(v6), SPECIAL_V6),
        },
    };
    table
        .iter()
        .find(|s| s.net.contains(ip))
        .map(|range| (ip, range))
}

/// Why an address was not reached. Its text is what the attempt records.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Refusal {
    pub ip: IpAddr,
    what: &'static str,
    range: Network,
    strict: bool,
}

impl fmt::Display for Refusal {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        if self.strict {
            write!(
                f,
                "refused: {} {} ({}); posthorn reaches it only when allow_networks \
                 (under [delivery] or in the subscription) names a network inside {}",
                self.ip, self.what, self.range, self.range
            )
        } else {
            write!(
                f,
                "refused: {} {} ({}); add it to allow_networks (under [delivery], or \
                 in the subscription) to deliver there, e.g. allow_networks = [\"{}\"]",
                self.ip,
                self.what,
                self.range,
                host_network(self.ip)
            )
        }
    }
}

impl std::error::Error for Refusal {}

fn host_network(ip: IpAddr) -> Network {
    Network {
        addr: ip,
        prefix: if ip.is_ipv4() { 32 } else { 128 },
    }
}

/// The networks one subscription may reach beyond the public internet.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct Policy {
    allow: Vec<Network>,
}

impl Policy {
    pub fn new(allow: &[Network]) -> Policy {
        Policy {
            allow: allow.to_vec(),
        }
    }

    /// Whether a delivery may connect to `ip`.
    pub fn check(&self, ip: IpAddr) -> Result<(), Refusal> {
        let Some((judged, range)) = special(ip) else {
            return Ok(());
        };
        let opened = self.allow.iter().any(|entry| {
            let holds = entry.contains(ip) || entry.contains(judged);
            holds && (!range.strict || range.net.covers(entry))
        });
        if opened {
            Ok(())
        } else {
            Err(Refusal {
                ip: judged,
                what: range.what,
                range: range.net,
                strict: range.strict,
            })
        }
    }
}

/// The refusal a subscription's `url` meets before any lookup, for a warning at start:
/// its host is an address (or `localhost`) that `allow` does not open. Host names are
/// judged only when they resolve, at each connection.
pub fn refused_literal(url: &str, allow: &[Network]) -> Option<Refusal> {
    let uri: Uri = url.parse().ok()?;
    let host = uri.host()?.trim_start_matches('[').trim_end_matches(']');
    let ip = if host.eq_ignore_ascii_case("localhost") {
        IpAddr::V4(Ipv4Addr::LOCALHOST)
    } else {
        host.parse().ok()?
    };
    Policy::new(allow).check(ip).err()
}

/// A resolver that hands on only the addresses its policy allows, refusing the request
/// (with the [`Refusal`] inside `ureq::Error::Other`) when none is left.
#[derive(Debug)]
pub struct GuardedResolver<R> {
    inner: R,
    policy: Policy,
}

impl<R: Resolver> GuardedResolver<R> {
    pub fn new(inner: R, policy: Policy) -> GuardedResolver<R> {
        GuardedResolver { inner, policy }
    }
}

impl<R: Resolver> Resolver for GuardedResolver<R> {
    fn resolve(
        &self,
        uri: &Uri,
        config: &ureq::config::Config,
        timeout: NextTimeout,
    ) -> Result<ResolvedSocketAddrs, ureq::Error> {
        let resolved = self.inner.resolve(uri, config, timeout)?;
        let mut allowed = self.inner.empty();
        let mut first_refusal = None;
        for addr in resolved.iter() {
            match self.policy.check(addr.ip()) {
                Ok(()) => allowed.push(*addr),
                Err(refusal) => {
                    first_refusal.get_or_insert(refusal);
                }
            }
        }
        match first_refusal {
            Some(refusal) if allowed.is_empty() => Err(ureq::Error::Other(Box::new(refusal))),
            _ => Ok(allowed),
        }
    }
}

/// The refusal inside an error a guarded agent returned, if that is what it is.
pub fn refusal(err: &ureq::Error) -> Option<&Refusal> {
    match err {
        ureq::Error::Other(inner) => inner.downcast_ref::<Refusal>(),
        _ => None,
    }
}

/// Most agents kept, one per distinct route; past it the cache starts again.
const MAX_AGENTS: usize = 64;

/// One HTTP agent per route (an allow list, and whatever else changes how a connection
/// is made), made on first use. Each agent's connection pool holds only connections its
/// own policy allowed, so a kept-alive connection opened for one subscription is never
/// reused by another with a narrower list.
pub struct Agents<K> {
    make: Box<dyn Fn(&K) -> ureq::Agent + Send + Sync>,
    by_route: Mutex<HashMap<K, ureq::Agent>>,
}

impl<K: std::hash::Hash + Eq + Clone> Agents<K> {
    /// `make` builds an agent whose resolver enforces the policy of the route it is given.
    pub fn new(make: impl Fn(&K) -> ureq::Agent + Send + Sync + 'static) -> Agents<K> {
        Agents {
            make: Box::new(make),
            by_route: Mutex::new(HashMap::new()),
        }
    }

    /// The agent for `route`.
    pub fn get(&self, route: &K) -> ureq::Agent {
        let mut agents = self.by_route.lock().unwrap_or_else(|e| e.into_inner());
        if let Some(agent) = agents.get(route) {
            return agent.clone();
        }
        if agents.len() >= MAX_AGENTS {
            agents.clear();
        }
        let agent = (self.make)(route);
        agents.insert(route.clone(), agent.clone());
        agent
    }
}

#[cfg(test)]
mod tests;
