//! A short fingerprint of the config in force, which nodes sharing a store compare to
//! find one running a different config. It covers what decides what is delivered where
//! and how (subscriptions, delivery, retention, inlet, admin, the HTTP limits), and leaves
//! out what is the node's own (the file's path, the store's location, the spool
//! directory, the listen address, the log level, the worker count). Secrets are never
//! part of it: they print as `[redacted]`, so two nodes differing only in a secret have
//! the same fingerprint. It is made from the resolved config's `Debug` text, which is
//! stable within one version of posthorn; nodes of different versions are warned about
//! by their versions.

use sha2::{Digest as _, Sha256};

use super::Config;

/// 16 hex digits of the SHA-256 of the config's shared part.
pub fn fingerprint(config: &Config) -> String {
    let mut shared = config.clone();
    shared.source = None;
    shared.storage.path = Default::default();
    shared.storage.backend = Default::default();
    shared.spool.dir = Default::default();
    shared.http.listen = ([0, 0, 0, 0], 0).into();
    shared.log.level = String::new();
    shared.delivery.workers = 0;
    let digest = Sha256::digest(format!("{shared:?}").as_bytes());
    digest[..8].iter().map(|b| format!("{b:02x}")).collect()
}

#[cfg(test)]
mod tests {
    use super::*;

    fn parsed(body: &str) -> Config {
        crate::config::parse(body, std::path::Path::new("t.toml")).unwrap()
    }

    #[test]
    fn node_local_settings_and_secrets_leave_the_fingerprint_alone() {
        let a = parsed(
            "[http]\nlisten = \"127.0.0.1:1\"\n[spool]\ndir = \"/a\"\n[admin]\napi_token = \"one-token-0123456789\"\n",
        );
        let b = parsed(
            "[http]\nlisten = \"127.0.0.1:2\"\n[spool]\ndir = \"/b\"\n[admin]\napi_token = \"two-token-0123456789\"\n",
        );
        assert_eq!(fingerprint(&a), fingerprint(&b));
        assert_eq!(fingerprint(&a).len(), 16);
    }

    #[test]
    fn a_different_subscription_changes_the_fingerprint() {
        let hook = |url: &str| {
            format!(
                "[[subscription]]\nname = \"crm\"\nurl = \"{url}\"\nconversations = [\"*\"]\n\
                 events = [\"*\"]\nsecret = \"whsec_MfKQ9r8GKYqrTwjUPD8ILPZIo2LaLaSw\"\n"
            )
        };
        let a = parsed(&hook("https://a.example/hook"));
        let b = parsed(&hook("https://b.example/hook"));
        assert_ne!(fingerprint(&a), fingerprint(&b));
        assert_eq!(
            fingerprint(&a),
            fingerprint(&parsed(&hook("https://a.example/hook")))
        );
    }
}
