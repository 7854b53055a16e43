//! Warnings about a config that is valid but unsafe, printed by `check-config` (and
//! logged by `serve`): an inlet source that takes unsigned requests, and a secret or
//! token copied from `config.example.toml` or the README, which anyone can read.

use super::{Config, Signing, SourceProfile, Verify};
use crate::sign::SigningKey;

/// Texts whose `secret = "..."`, `token = "..."` and `api_token = "..."` values are
/// published.
const PUBLISHED: &[&str] = &[
    include_str!("../../config.example.toml"),
    include_str!("../../README.md"),
];

/// Each problem as one sentence, without any secret's value.
pub fn warnings(config: &Config) -> Vec<String> {
    let mut out = unsigned_sources(config);
    out.extend(copied_secrets(config));
    out
}

/// Inlet sources that take unsigned requests.
fn unsigned_sources(config: &Config) -> Vec<String> {
    config
        .inlet
        .sources
        .iter()
        .filter(|source| keys_of(source).is_empty())
        .map(|source| {
            format!(
                "inlet source {:?} has no secret: anyone who can reach the HTTP address can \
                 post events to /v1/sources/{} and they are delivered as the platform's; set \
                 secret, secret_file or secret_env on it",
                source.name, source.name
            )
        })
        .collect()
}

fn keys_of(source: &super::InletSource) -> Vec<&SigningKey> {
    match &source.profile {
        SourceProfile::Echo { secret } => secret.iter().collect(),
        SourceProfile::Generic(generic) => match &generic.verify {
            Verify::None => Vec::new(),
            Verify::Standard { keys } => keys.iter().collect(),
            Verify::Hex { key, .. } => vec![key],
        },
    }
}

/// Secrets and tokens that are published (`serve` logs these at start).
pub fn copied_secrets(config: &Config) -> Vec<String> {
    let published = published_values();
    let is_published = |key: &SigningKey| {
        published.iter().any(|value| {
            SigningKey::from_utf8(value) == *key
                || SigningKey::from_whsec(value).is_ok_and(|k| k == *key)
        })
    };
    let copied = |what: String| {
        format!(
            "{what} is the one printed in config.example.toml or the README, which anyone can \
             read; make your own (`posthorn gen-secret`) and give it to the other side too"
        )
    };
    let mut out = Vec::new();
    for source in &config.inlet.sources {
        if keys_of(source).into_iter().any(is_published) {
            out.push(copied(format!(
                "the secret of inlet source {:?}",
                source.name
            )));
        }
    }
    for subscription in &config.subscriptions {
        let published_key = match &subscription.signing {
            Signing::Standard { keys } => keys.iter().any(is_published),
            Signing::Hex { key, .. } => is_published(key),
            Signing::Ed25519 { keys } => keys.iter().any(|key| {
                published.iter().any(|value| {
                    crate::sign::Ed25519Key::from_whsk(value)
                        .is_ok_and(|k| k.public_whpk() == key.public_whpk())
                })
            }),
        };
        if published_key {
            out.push(copied(format!(
                "the secret of subscription {:?}",
                subscription.name
            )));
        }
    }
    let tokens = [
        ("[inlet] token", &config.inlet.token),
        ("[admin] api_token", &config.admin.api_token),
    ];
    for (what, token) in tokens {
        if token
            .as_ref()
            .is_some_and(|t| published.iter().any(|p| p == t.expose()))
        {
            out.push(copied(what.to_string()));
        }
    }
    out
}

/// Every quoted value of a `secret`, `token` or `api_token` key in the published texts,
/// commented out or not.
fn published_values() -> Vec<String> {
    let mut values = Vec::new();
    for text in PUBLISHED {
        for line in text.lines() {
            let line = line.trim_start_matches(|c: char| c == '#' || c.is_whitespace());
            let Some((key, value)) = line.split_once('=') else {
                continue;
            };
            if !matches!(key.trim(), "secret" | "token" | "api_token") {
                continue;
            }
            let value = value.trim();
            if let Some(inner) = value.strip_prefix('"').and_then(|v| v.strip_suffix('"')) {
                if !inner.is_empty() && !inner.contains('$') {
                    values.push(inner.to_string());
                }
            }
        }
    }
    values
}

#[cfg(test)]
mod tests {
    use std::path::Path;

    use super::*;

    fn warnings_of(text: &str) -> Vec<String> {
        warnings(&crate::config::parse(text, Path::new("/tmp/c.toml")).expect("valid"))
    }

    #[test]
    fn the_examples_own_secrets_are_found() {
        let values = published_values();
        assert!(
            values.iter().any(|v| v.starts_with("whsec_")),
            "{} values",
            values.len()
        );
    }

    #[test]
    fn an_unsigned_source_and_a_copied_secret_are_named_but_a_fresh_one_is_not() {
        let source = "[[inlet.source]]\nname = \"echo\"\nprofile = \"echo\"\n";
        let found = warnings_of(source);
        assert!(
            found.len() == 1 && found[0].contains("\"echo\" has no secret"),
            "{found:?}"
        );
        let example = std::fs::read_to_string(
            Path::new(env!("CARGO_MANIFEST_DIR")).join("config.example.toml"),
        )
        .unwrap();
        let copied = warnings_of(&example);
        assert!(
            copied
                .iter()
                .any(|w| w.contains("subscription \"north-crm\"")),
            "{copied:?}"
        );
        assert!(
            copied.iter().all(|w| !w.contains("has no secret")),
            "the example's sources are all signed: {copied:?}"
        );
        let fresh = crate::sign::generate_whsec();
        let own = format!(
            "[[subscription]]\nname = \"a\"\nurl = \"https://example.org/h\"\n\
             conversations = [\"*\"]\nevents = [\"*\"]\nsecret = {fresh:?}\n"
        );
        assert_eq!(warnings_of(&own), Vec::<String>::new());
    }
}
