//! Standard Webhooks asymmetric signatures (`v1a`): ed25519 over the same
//! `{id}.{timestamp}.{body}` content as `v1`. The private key is given as `whsk_` + base64
//! of the 32-byte RFC 8032 seed (the 64-byte libsodium form, seed then public key, is
//! taken too); receivers verify with `whpk_` + base64 of the 32-byte public key.

use std::fmt;

use base64::engine::general_purpose::STANDARD as BASE64;
use base64::Engine as _;
use ed25519_dalek::Signer as _;

const WHSK_PREFIX: &str = "whsk_";
const WHPK_PREFIX: &str = "whpk_";

/// An ed25519 private key. `Debug` shows only the public key.
#[derive(Clone)]
pub struct Ed25519Key(ed25519_dalek::SigningKey);

impl PartialEq for Ed25519Key {
    fn eq(&self, other: &Self) -> bool {
        self.0.verifying_key() == other.0.verifying_key()
    }
}

impl Eq for Ed25519Key {}

impl fmt::Debug for Ed25519Key {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "Ed25519Key([redacted], {})", self.public_whpk())
    }
}

/// Why a string is not a usable `whsk_` key.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum Ed25519KeyError {
    #[error(
        "a Standard Webhooks ed25519 private key starts with \"whsk_\" \
         (make a pair with `posthorn gen-secret --ed25519`)"
    )]
    MissingPrefix,
    #[error(
        "this is a \"whsec_\" (HMAC) secret; signature = \"ed25519\" takes a \"whsk_\" private \
         key (`posthorn gen-secret --ed25519`), or use signature = \"standard\""
    )]
    Symmetric,
    #[error(
        "this is a \"whpk_\" public key; posthorn signs with the \"whsk_\" private key of the \
         pair, and the receiver keeps the whpk_ one"
    )]
    Public,
    #[error("the part after \"whsk_\" is not valid base64")]
    NotBase64,
    #[error("the key decodes to {0} bytes; expected 32 (the seed) or 64 (seed and public key)")]
    BadLength(usize),
    #[error("the 64-byte key's second half is not the public key of its first half")]
    Mismatch,
}

impl Ed25519Key {
    /// Parses a `whsk_` private key.
    pub fn from_whsk(text: &str) -> Result<Self, Ed25519KeyError> {
        let Some(encoded) = text.strip_prefix(WHSK_PREFIX) else {
            return Err(if text.starts_with("whsec_") {
                Ed25519KeyError::Symmetric
            } else if text.starts_with(WHPK_PREFIX) {
                Ed25519KeyError::Public
            } else {
                Ed25519KeyError::MissingPrefix
            });
        };
        let bytes = BASE64
            .decode(encoded)
            .map_err(|_| Ed25519KeyError::NotBase64)?;
        if bytes.len() != 32 && bytes.len() != 64 {
            return Err(Ed25519KeyError::BadLength(bytes.len()));
        }
        let mut seed = [0u8; 32];
        seed.copy_from_slice(&bytes[..32]);
        let key = ed25519_dalek::SigningKey::from_bytes(&seed);
        if bytes.len() == 64 && key.verifying_key().as_bytes()[..] != bytes[32..] {
            return Err(Ed25519KeyError::Mismatch);
        }
        Ok(Self(key))
    }

    /// A fresh key from 32 random bytes.
    pub fn generate() -> Self {
        let seed: [u8; 32] = rand::random();
        Self(ed25519_dalek::SigningKey::from_bytes(&seed))
    }

    /// The private key in `whsk_` form (for `gen-secret` only: never log or show it).
    pub fn secret_whsk(&self) -> String {
        format!("{WHSK_PREFIX}{}", BASE64.encode(self.0.to_bytes()))
    }

    /// The public key in `whpk_` form, which receivers verify with.
    pub fn public_whpk(&self) -> String {
        format!(
            "{WHPK_PREFIX}{}",
            BASE64.encode(self.0.verifying_key().as_bytes())
        )
    }
}

/// An ed25519 public key (`whpk_`), as a receiver holds it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Ed25519PublicKey(ed25519_dalek::VerifyingKey);

impl Ed25519PublicKey {
    /// Parses a `whpk_` public key.
    pub fn from_whpk(text: &str) -> Result<Self, String> {
        let encoded = text.strip_prefix(WHPK_PREFIX).ok_or_else(|| {
            if text.starts_with(WHSK_PREFIX) {
                "this is the whsk_ private key; a receiver verifies with the whpk_ public key of the pair".to_string()
            } else {
                "a Standard Webhooks ed25519 public key starts with \"whpk_\"".to_string()
            }
        })?;
        let bytes = BASE64
            .decode(encoded)
            .map_err(|_| "the part after \"whpk_\" is not valid base64".to_string())?;
        let bytes: [u8; 32] = bytes
            .as_slice()
            .try_into()
            .map_err(|_| format!("the key decodes to {} bytes; expected 32", bytes.len()))?;
        ed25519_dalek::VerifyingKey::from_bytes(&bytes)
            .map(Self)
            .map_err(|_| "the 32 bytes are not an ed25519 public key".to_string())
    }

    /// Whether `signature` (the base64 after `v1a,`) signs `{msg_id}.{timestamp}.{body}`.
    pub fn verifies(&self, msg_id: &str, timestamp: i64, body: &[u8], signature: &str) -> bool {
        let Ok(bytes) = BASE64.decode(signature) else {
            return false;
        };
        let Ok(signature) = ed25519_dalek::Signature::from_slice(&bytes) else {
            return false;
        };
        let mut content = format!("{msg_id}.{timestamp}.").into_bytes();
        content.extend_from_slice(body);
        self.0.verify_strict(&content, &signature).is_ok()
    }
}

/// The `webhook-signature` header value: one `v1a,<base64>` per key, space separated, so a
/// receiver mid-rotation accepts either key.
pub fn v1a_signature(keys: &[Ed25519Key], msg_id: &str, timestamp: i64, body: &[u8]) -> String {
    let prefix = format!("{msg_id}.{timestamp}.");
    let mut content = Vec::with_capacity(prefix.len() + body.len());
    content.extend_from_slice(prefix.as_bytes());
    content.extend_from_slice(body);
    let mut header = String::new();
    for key in keys {
        if !header.is_empty() {
            header.push(' ');
        }
        header.push_str("v1a,");
        header.push_str(&BASE64.encode(key.0.sign(&content).to_bytes()));
    }
    header
}

#[cfg(test)]
mod tests {
    use super::*;

    // RFC 8032 section 7.1, TEST 2: its secret key (seed) and public key.
    const RFC_SEED: &str = "4ccd089b28ff96da9db6c346ec114e0f5b8a319f35aba624da8cf6ed4fb8a6fb";
    const RFC_PUBLIC: &str = "3d4017c3e843895a92b70aa74d1b7ebc9c982ccf2ec4968cc0cd55f12af4660c";
    const RFC_MESSAGE: &[u8] = &[0x72];
    const RFC_SIGNATURE: &str = "92a009a9f0d4cab8720e820b5f642540a2b27b5416503f8fb3762223ebdb69da\
                                 085ac1e43e15996e458f3613d0f11d8c387b2eaeb4302aeeb00d291612bb0c00";

    fn unhex(text: &str) -> Vec<u8> {
        (0..text.len())
            .step_by(2)
            .map(|i| u8::from_str_radix(&text[i..i + 2], 16).unwrap())
            .collect()
    }

    fn rfc_key() -> Ed25519Key {
        Ed25519Key::from_whsk(&format!("whsk_{}", BASE64.encode(unhex(RFC_SEED)))).unwrap()
    }

    #[test]
    fn a_v1a_signature_verifies_with_the_public_key_only() {
        let key = Ed25519Key::generate();
        let public = Ed25519PublicKey::from_whpk(&key.public_whpk()).unwrap();
        let header = v1a_signature(std::slice::from_ref(&key), "evt_1", 1_700_000_000, b"{}");
        let signature = header.strip_prefix("v1a,").unwrap();
        assert!(public.verifies("evt_1", 1_700_000_000, b"{}", signature));
        assert!(!public.verifies("evt_1", 1_700_000_001, b"{}", signature));
        assert!(!public.verifies("evt_1", 1_700_000_000, b"{} ", signature));
        let other = Ed25519PublicKey::from_whpk(&Ed25519Key::generate().public_whpk()).unwrap();
        assert!(!other.verifies("evt_1", 1_700_000_000, b"{}", signature));
        assert!(Ed25519PublicKey::from_whpk(&key.secret_whsk()).is_err());
    }

    #[test]
    fn the_rfc_8032_seed_gives_the_published_public_key_and_signature() {
        let key = rfc_key();
        assert_eq!(
            key.public_whpk(),
            format!("whpk_{}", BASE64.encode(unhex(RFC_PUBLIC)))
        );
        assert_eq!(
            key.0.sign(RFC_MESSAGE).to_bytes().to_vec(),
            unhex(RFC_SIGNATURE)
        );
    }

    #[test]
    fn the_signature_covers_id_timestamp_and_body() {
        let key = rfc_key();
        let header = v1a_signature(
            std::slice::from_ref(&key),
            "msg_1",
            1614265330,
            b"{\"a\":1}",
        );
        let encoded = header.strip_prefix("v1a,").unwrap();
        let bytes: [u8; 64] = BASE64.decode(encoded).unwrap().try_into().unwrap();
        let signature = ed25519_dalek::Signature::from_bytes(&bytes);
        let public = key.0.verifying_key();
        assert!(public
            .verify_strict(b"msg_1.1614265330.{\"a\":1}", &signature)
            .is_ok());
        assert!(public
            .verify_strict(b"msg_1.1614265331.{\"a\":1}", &signature)
            .is_err());
    }

    #[test]
    fn one_v1a_signature_per_key_during_rotation() {
        let (new, old) = (Ed25519Key::generate(), Ed25519Key::generate());
        let both = v1a_signature(&[new.clone(), old.clone()], "m", 1, b"{}");
        let parts: Vec<&str> = both.split(' ').collect();
        assert_eq!(
            parts,
            [
                v1a_signature(&[new], "m", 1, b"{}"),
                v1a_signature(&[old], "m", 1, b"{}")
            ]
        );
    }

    #[test]
    fn whsk_round_trips_in_both_lengths() {
        let key = Ed25519Key::generate();
        assert_eq!(Ed25519Key::from_whsk(&key.secret_whsk()).unwrap(), key);
        let mut long = key.0.to_bytes().to_vec();
        long.extend_from_slice(key.0.verifying_key().as_bytes());
        let long = format!("whsk_{}", BASE64.encode(&long));
        assert_eq!(Ed25519Key::from_whsk(&long).unwrap(), key);
        let mut wrong = key.0.to_bytes().to_vec();
        wrong.extend_from_slice(Ed25519Key::generate().0.verifying_key().as_bytes());
        assert_eq!(
            Ed25519Key::from_whsk(&format!("whsk_{}", BASE64.encode(&wrong))),
            Err(Ed25519KeyError::Mismatch)
        );
    }

    #[test]
    fn whsk_parsing_names_each_problem() {
        assert_eq!(
            Ed25519Key::from_whsk("abc"),
            Err(Ed25519KeyError::MissingPrefix)
        );
        assert_eq!(
            Ed25519Key::from_whsk("whsec_MfKQ9r8GKYqrTwjUPD8ILPZIo2LaLaSw"),
            Err(Ed25519KeyError::Symmetric)
        );
        let public = Ed25519Key::generate().public_whpk();
        assert_eq!(Ed25519Key::from_whsk(&public), Err(Ed25519KeyError::Public));
        assert_eq!(
            Ed25519Key::from_whsk("whsk_!!"),
            Err(Ed25519KeyError::NotBase64)
        );
        assert_eq!(
            Ed25519Key::from_whsk("whsk_AAAA"),
            Err(Ed25519KeyError::BadLength(3))
        );
    }

    #[test]
    fn debug_shows_the_public_key_only() {
        let key = Ed25519Key::generate();
        let shown = format!("{key:?}");
        assert!(shown.contains(&key.public_whpk()), "{shown}");
        assert!(!shown.contains(&key.secret_whsk()[5..]), "{shown}");
    }
}
