//! Classification of addresses as pure functions: no address here is ever connected to.

use super::*;

fn ip(text: &str) -> IpAddr {
    text.parse().unwrap()
}

fn net(text: &str) -> Network {
    text.parse().unwrap()
}

fn policy(allow: &[&str]) -> Policy {
    Policy::new(&allow.iter().map(|n| net(n)).collect::<Vec<_>>())
}

#[test]
fn networks_parse_with_and_without_a_prefix() {
    assert_eq!(net("10.0.0.0/8").to_string(), "10.0.0.0/8");
    assert_eq!(net("192.168.1.20").to_string(), "192.168.1.20/32");
    assert_eq!(net("::1").to_string(), "::1/128");
    assert_eq!(net("fd12:3456::/48").to_string(), "fd12:3456::/48");
    assert_eq!(net("0.0.0.0/0").to_string(), "0.0.0.0/0");
    for bad in ["", "ten", "10.0.0.0/33", "::/129", "10.0.0.0/x", "10.0.0/8"] {
        assert!(bad.parse::<Network>().is_err(), "{bad:?} parsed");
    }
    let err = "10.1.2.3/8".parse::<Network>().unwrap_err();
    assert!(err.contains("\"10.0.0.0/8\""), "{err}");
}

#[test]
fn networks_hold_their_addresses_only() {
    let ten = net("10.0.0.0/8");
    assert!(ten.contains(ip("10.255.1.2")));
    assert!(!ten.contains(ip("11.0.0.1")));
    assert!(!ten.contains(ip("::ffff:10.0.0.1")), "families never mix");
    assert!(net("0.0.0.0/0").contains(ip("203.0.113.9")));
    assert!(net("fc00::/7").contains(ip("fd00:ec2::254")));
    assert!(!net("fc00::/7").contains(ip("fe80::1")));
}

#[test]
fn public_addresses_are_always_reached() {
    let none = policy(&[]);
    for public in [
        "1.1.1.1",
        "93.184.216.34",
        "2606:4700::1111",
        "172.32.0.1",
        "11.0.0.1",
    ] {
        assert_eq!(none.check(ip(public)), Ok(()), "{public}");
    }
}

#[test]
fn loopback_and_private_ranges_need_an_allow_entry() {
    let none = policy(&[]);
    for (addr, says) in [
        ("127.0.0.1", "loopback"),
        ("127.8.9.10", "loopback"),
        ("::1", "loopback"),
        ("10.1.2.3", "private"),
        ("172.16.0.1", "private"),
        ("172.31.255.255", "private"),
        ("192.168.1.1", "private"),
        ("fd12:3456::1", "private"),
        ("100.64.0.1", "carrier-grade NAT"),
        ("198.18.0.1", "benchmarking"),
        ("192.0.2.1", "documentation"),
    ] {
        let refusal = none.check(ip(addr)).unwrap_err();
        let text = refusal.to_string();
        assert!(text.starts_with(&format!("refused: {addr} is ")), "{text}");
        assert!(text.contains(says), "{addr}: {text}");
        assert!(text.contains("allow_networks"), "{text}");
    }
    let lan = policy(&["10.0.0.0/8"]);
    assert_eq!(lan.check(ip("10.1.2.3")), Ok(()));
    assert!(lan.check(ip("192.168.1.1")).is_err());
    assert!(lan.check(ip("127.0.0.1")).is_err());
    let local = policy(&["127.0.0.1"]);
    assert_eq!(local.check(ip("127.0.0.1")), Ok(()));
    assert!(local.check(ip("127.0.0.2")).is_err());
    assert!(local.check(ip("::1")).is_err());
}

#[test]
fn the_refusal_says_the_range_and_the_fix() {
    let text = policy(&[]).check(ip("10.1.2.3")).unwrap_err().to_string();
    assert_eq!(
        text,
        "refused: 10.1.2.3 is in a private range (10.0.0.0/8); add it to allow_networks \
         (under [delivery], or in the subscription) to deliver there, e.g. \
         allow_networks = [\"10.1.2.3/32\"]"
    );
}

#[test]
fn link_local_metadata_and_the_like_need_an_entry_inside_their_range() {
    let strict_ones = [
        "169.254.169.254",
        "169.254.170.2",
        "fd00:ec2::254",
        "100.100.100.200",
        "168.63.129.16",
        "fe80::1",
        "0.0.0.0",
        "0.1.2.3",
        "::",
        "224.0.0.1",
        "239.255.255.250",
        "ff02::1",
        "255.255.255.255",
        "240.0.0.1",
    ];
    // Broad entries, even "everything", do not open them.
    let broad = policy(&[
        "0.0.0.0/0",
        "::/0",
        "100.64.0.0/10",
        "fc00::/7",
        "168.0.0.0/8",
    ]);
    for addr in strict_ones {
        let refusal = broad.check(ip(addr)).unwrap_err();
        assert!(
            refusal.to_string().contains("names a network inside"),
            "{addr}: {refusal}"
        );
    }
    // But broad entries open every allowable range.
    assert_eq!(broad.check(ip("10.9.9.9")), Ok(()));
    assert_eq!(broad.check(ip("fd12::1")), Ok(()));
    assert_eq!(broad.check(ip("100.64.1.1")), Ok(()));
    // An entry inside the special range opens what it holds.
    let metadata = policy(&["169.254.169.254/32", "fe80::/64"]);
    assert_eq!(metadata.check(ip("169.254.169.254")), Ok(()));
    assert!(metadata.check(ip("169.254.169.253")).is_err());
    assert_eq!(metadata.check(ip("fe80::1")), Ok(()));
    assert_eq!(
        policy(&["100.100.100.200"]).check(ip("100.100.100.200")),
        Ok(())
    );
}

#[test]
fn ipv6_forms_of_ipv4_addresses_are_judged_as_ipv4() {
    let none = policy(&[]);
    for (addr, v4) in [
        ("::ffff:127.0.0.1", "127.0.0.1"),
        ("::ffff:169.254.169.254", "169.254.169.254"),
        ("::10.0.0.1", "10.0.0.1"),
        ("64:ff9b::a9fe:a9fe", "169.254.169.254"),
        ("2002:a00:1::", "10.0.0.1"),
    ] {
        let refusal = none.check(ip(addr)).unwrap_err();
        assert_eq!(refusal.ip, ip(v4), "{addr}");
    }
    assert_eq!(none.check(ip("::ffff:1.1.1.1")), Ok(()));
    // An IPv4 entry opens the mapped form too, within the same rules.
    assert_eq!(
        policy(&["127.0.0.0/8"]).check(ip("::ffff:127.0.0.1")),
        Ok(())
    );
    assert!(policy(&["0.0.0.0/0"])
        .check(ip("::ffff:169.254.169.254"))
        .is_err());
}

#[test]
fn literal_urls_that_will_be_refused_are_found_before_any_lookup() {
    let none: &[Network] = &[];
    let refused = |url: &str, allow: &[Network]| refused_literal(url, allow).map(|r| r.ip);
    assert_eq!(
        refused("http://127.0.0.1:9000/hook", none),
        Some(ip("127.0.0.1"))
    );
    assert_eq!(
        refused("http://localhost:9000/hook", none),
        Some(ip("127.0.0.1"))
    );
    assert_eq!(refused("https://[::1]/hook", none), Some(ip("::1")));
    assert_eq!(
        refused("http://user:pw@169.254.169.254/latest", none),
        Some(ip("169.254.169.254"))
    );
    assert_eq!(
        refused("http://127.0.0.1:9000/hook", &[net("127.0.0.1")]),
        None
    );
    assert_eq!(refused("https://crm.example.org/hook", none), None);
    assert_eq!(refused("https://1.1.1.1/hook", none), None);
}

#[test]
fn a_guarded_resolver_refuses_when_no_address_is_allowed() {
    use ureq::unversioned::resolver::DefaultResolver;
    let config = ureq::config::Config::default();
    let uri: Uri = "http://127.0.0.1:9/hook".parse().unwrap();
    let denied = GuardedResolver::new(DefaultResolver::default(), policy(&[]));
    let err = denied
        .resolve(&uri, &config, NextTimeout::default())
        .unwrap_err();
    let refusal = refusal(&err).expect("a refusal inside the error");
    assert_eq!(refusal.ip, ip("127.0.0.1"));
    let allowed = GuardedResolver::new(DefaultResolver::default(), policy(&["127.0.0.1/32"]));
    let addrs = allowed
        .resolve(&uri, &config, NextTimeout::default())
        .unwrap();
    assert_eq!(addrs.len(), 1);
    assert_eq!(addrs[0].port(), 9);
}

#[test]
fn agents_are_made_once_per_allow_list() {
    let made = std::sync::Arc::new(std::sync::atomic::AtomicUsize::new(0));
    let counter = std::sync::Arc::clone(&made);
    let agents = Agents::new(move |_| {
        counter.fetch_add(1, std::sync::atomic::Ordering::SeqCst);
        ureq::Agent::new_with_defaults()
    });
    let lan = [net("10.0.0.0/8")];
    agents.get(&lan.to_vec());
    agents.get(&lan.to_vec());
    agents.get(&Vec::new());
    assert_eq!(made.load(std::sync::atomic::Ordering::SeqCst), 2);
}
