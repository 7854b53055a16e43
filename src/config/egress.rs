//! `allow_networks` (under `[delivery]` and in each subscription): the networks beyond
//! the public internet that deliveries may reach, validated with their locations.

use toml::Spanned;

use super::validate::Validator;
use crate::egress::Network;

impl Validator<'_> {
    /// Parses a list of networks; each bad entry is a located problem. `key` names the
    /// list in messages.
    pub(super) fn networks(
        &mut self,
        raw: Option<Vec<Spanned<String>>>,
        key: &str,
    ) -> Vec<Network> {
        let mut networks = Vec::new();
        for entry in raw.unwrap_or_default() {
            match entry.get_ref().parse::<Network>() {
                Ok(network) if !networks.contains(&network) => networks.push(network),
                Ok(_) => {}
                Err(message) => self.problem(entry.span(), format!("{key}: {message}")),
            }
        }
        networks
    }
}

/// A subscription's networks: the global list, then its own entries not already in it.
pub(super) fn combined(global: &[Network], own: Vec<Network>) -> Vec<Network> {
    let mut all = global.to_vec();
    all.extend(own.into_iter().filter(|n| !global.contains(n)));
    all
}

#[cfg(test)]
mod tests {
    use std::path::Path;

    use crate::config::parse;

    const SECRET: &str = "whsec_MfKQ9r8GKYqrTwjUPD8ILPZIo2LaLaSw";

    fn config(delivery: &str, subscription: &str) -> String {
        format!(
            "[delivery]\n{delivery}\n[[subscription]]\nname = \"s\"\nurl = \"http://lan-host/hook\"\n\
             conversations = [\"*\"]\nevents = [\"*\"]\nsecret = \"{SECRET}\"\n{subscription}\n"
        )
    }

    fn problems(text: &str) -> String {
        parse(text, Path::new("/etc/posthorn/config.toml"))
            .expect_err("the config should be refused")
            .to_string()
    }

    #[test]
    fn a_subscription_adds_its_networks_to_the_global_ones() {
        let text = config(
            "allow_networks = [\"10.0.0.0/8\", \"127.0.0.1\"]",
            "allow_networks = [\"192.168.1.0/24\", \"10.0.0.0/8\"]",
        );
        let parsed = parse(&text, Path::new("/etc/posthorn/config.toml")).unwrap();
        let shown = |list: &[crate::egress::Network]| {
            list.iter().map(|n| n.to_string()).collect::<Vec<_>>()
        };
        assert_eq!(
            shown(&parsed.delivery.allow_networks),
            ["10.0.0.0/8", "127.0.0.1/32"]
        );
        assert_eq!(
            shown(&parsed.subscriptions[0].allow_networks),
            ["10.0.0.0/8", "127.0.0.1/32", "192.168.1.0/24"]
        );
        let none = parse(&config("", ""), Path::new("/etc/posthorn/config.toml")).unwrap();
        assert!(none.delivery.allow_networks.is_empty());
        assert!(none.subscriptions[0].allow_networks.is_empty());
    }

    #[test]
    fn bad_networks_are_located_and_say_the_form() {
        let err = problems(&config("allow_networks = [\"10.0.0.0/8\", \"lan\"]", ""));
        assert!(
            err.contains("config.toml:2:33: delivery.allow_networks: \"lan\" is not a network"),
            "{err}"
        );
        let err = problems(&config("", "allow_networks = [\"10.1.0.0/8\"]"));
        assert!(
            err.contains(
                "config.toml:9:19: subscription \"s\": allow_networks: \"10.1.0.0/8\" has \
                 address bits set past its prefix; write \"10.0.0.0/8\""
            ),
            "{err}"
        );
        let err = problems(&config("allow_networks = [\"::1/200\"]", ""));
        assert!(
            err.contains("prefix length must be a number from 0 to 128"),
            "{err}"
        );
    }
}
