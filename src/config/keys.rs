//! The secret of `signature = "standard"` or `"ed25519"`: one or more keys, space
//! separated during rotation (`whsec_` secrets or `whsk_` private keys), each checked
//! here with a located error.

use std::fmt::Display;
use std::ops::Range;

use super::validate::Validator;

impl Validator<'_> {
    /// The keys of `parts`, each parsed by `parse`; an empty secret or an unusable key
    /// is a problem located at `span`, naming which key of a rotation and `signature`.
    pub(super) fn key_list<K, E: Display>(
        &mut self,
        parts: &[&str],
        span: Range<usize>,
        label: &str,
        signature: &str,
        parse: impl Fn(&str) -> Result<K, E>,
    ) -> Option<Vec<K>> {
        if parts.is_empty() {
            self.problem(span, format!("{label}: the secret is empty"));
            return None;
        }
        let mut keys = Vec::new();
        for (i, part) in parts.iter().enumerate() {
            match parse(part) {
                Ok(key) => keys.push(key),
                Err(err) => {
                    let which = if parts.len() > 1 {
                        format!(" (secret {} of {})", i + 1, parts.len())
                    } else {
                        String::new()
                    };
                    self.problem(
                        span.clone(),
                        format!(
                            "{label}: the secret{which} is not usable with signature = \"{signature}\": {err}"
                        ),
                    );
                }
            }
        }
        (keys.len() == parts.len()).then_some(keys)
    }
}

#[cfg(test)]
mod tests {
    use std::path::Path;

    use crate::config::Signing;
    use crate::sign::Ed25519Key;

    fn subscription(signature: &str, secret: &str) -> Result<Signing, String> {
        let text = format!(
            "[[subscription]]\nname = \"s\"\nurl = \"http://127.0.0.1:9000/hook\"\n\
             conversations = [\"c-1\"]\nevents = [\"*\"]\nsignature = {signature:?}\nsecret = {secret:?}\n"
        );
        super::super::parse(&text, Path::new("config.toml"))
            .map(|mut config| config.subscriptions.remove(0).signing)
            .map_err(|err| err.to_string())
    }

    #[test]
    fn ed25519_takes_whsk_keys_one_per_rotation_step() {
        let (a, b) = (Ed25519Key::generate(), Ed25519Key::generate());
        let both = format!("{} {}", a.secret_whsk(), b.secret_whsk());
        assert_eq!(
            subscription("ed25519", &both),
            Ok(Signing::Ed25519 { keys: vec![a, b] })
        );
    }

    #[test]
    fn a_whsec_secret_given_to_ed25519_is_refused_at_its_line() {
        let err = subscription("ed25519", "whsec_MfKQ9r8GKYqrTwjUPD8ILPZIo2LaLaSw").unwrap_err();
        assert!(err.contains("config.toml:7:"), "{err}");
        assert!(err.contains("takes a \"whsk_\" private key"), "{err}");
        assert!(!err.contains("MfKQ9r8G"), "the secret leaked: {err}");
    }

    #[test]
    fn a_whsk_key_given_to_standard_is_refused_and_points_at_ed25519() {
        let key = Ed25519Key::generate().secret_whsk();
        let err = subscription("standard", &key).unwrap_err();
        assert!(err.contains("set signature = \"ed25519\""), "{err}");
        assert!(!err.contains(&key[5..]), "the key leaked: {err}");
    }

    #[test]
    fn a_whpk_public_key_given_to_ed25519_is_refused() {
        let public = Ed25519Key::generate().public_whpk();
        let err = subscription("ed25519", &public).unwrap_err();
        assert!(err.contains("this is a \"whpk_\" public key"), "{err}");
    }

    #[test]
    fn one_bad_key_among_several_is_named_by_its_position() {
        let good = Ed25519Key::generate().secret_whsk();
        let err = subscription("ed25519", &format!("{good} whsk_AAAA")).unwrap_err();
        assert!(err.contains("(secret 2 of 2)"), "{err}");
    }
}
