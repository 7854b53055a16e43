//! Request signing: Standard Webhooks (`webhook-signature: v1,<base64>`) and the
//! "hex HMAC of the raw body" recipe. Pure functions, no I/O. The asymmetric `v1a`
//! (ed25519) variant lives in `ed25519`.

mod ed25519;
pub use ed25519::{v1a_signature, Ed25519Key, Ed25519KeyError, Ed25519PublicKey};

use std::fmt;

use base64::engine::general_purpose::STANDARD as BASE64;
use base64::Engine as _;
use hmac::{Hmac, Mac};
use sha2::Sha256;

type HmacSha256 = Hmac<Sha256>;

const WHSEC_PREFIX: &str = "whsec_";

/// Key bytes used to sign requests. `Debug` never shows them.
#[derive(Clone, PartialEq, Eq)]
pub struct SigningKey(Vec<u8>);

impl SigningKey {
    /// A key made of the secret's own UTF-8 bytes (the hex recipe).
    pub fn from_utf8(secret: &str) -> Self {
        Self(secret.as_bytes().to_vec())
    }

    /// Parses a Standard Webhooks secret: `whsec_` followed by base64 of 24 to 64 bytes.
    pub fn from_whsec(secret: &str) -> Result<Self, KeyError> {
        if secret.starts_with("whsk_") || secret.starts_with("whpk_") {
            return Err(KeyError::Asymmetric);
        }
        let encoded = secret
            .strip_prefix(WHSEC_PREFIX)
            .ok_or(KeyError::MissingPrefix)?;
        let bytes = BASE64.decode(encoded).map_err(|_| KeyError::NotBase64)?;
        if !(24..=64).contains(&bytes.len()) {
            return Err(KeyError::BadLength(bytes.len()));
        }
        Ok(Self(bytes))
    }

    fn mac(&self) -> HmacSha256 {
        // HMAC accepts keys of any length; this cannot fail.
        HmacSha256::new_from_slice(&self.0).expect("HMAC takes keys of any length")
    }
}

impl fmt::Debug for SigningKey {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str("SigningKey([redacted])")
    }
}

/// Why a string is not a usable Standard Webhooks secret.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum KeyError {
    #[error(
        "a Standard Webhooks secret starts with \"whsec_\" (make one with `posthorn gen-secret`)"
    )]
    MissingPrefix,
    #[error(
        "this is an ed25519 key (whsk_/whpk_); set signature = \"ed25519\" and give posthorn \
         the whsk_ private key, or use a whsec_ secret (`posthorn gen-secret`)"
    )]
    Asymmetric,
    #[error("the part after \"whsec_\" is not valid base64")]
    NotBase64,
    #[error("the secret decodes to {0} bytes; expected 24 to 64")]
    BadLength(usize),
}

/// A fresh `whsec_` secret holding 32 random bytes.
pub fn generate_whsec() -> String {
    let bytes: [u8; 32] = rand::random();
    format!("{WHSEC_PREFIX}{}", BASE64.encode(bytes))
}

/// The `webhook-signature` header value: one `v1,<base64>` per key, space separated, so a
/// receiver mid-rotation accepts either secret.
pub fn standard_signature(
    keys: &[SigningKey],
    msg_id: &str,
    timestamp: i64,
    body: &[u8],
) -> String {
    let timestamp = timestamp.to_string();
    let mut header = String::new();
    for key in keys {
        let mut mac = key.mac();
        mac.update(msg_id.as_bytes());
        mac.update(b".");
        mac.update(timestamp.as_bytes());
        mac.update(b".");
        mac.update(body);
        if !header.is_empty() {
            header.push(' ');
        }
        header.push_str("v1,");
        header.push_str(&BASE64.encode(mac.finalize().into_bytes()));
    }
    header
}

/// Lower-case hex of HMAC-SHA256 over the raw body.
pub fn hex_signature(key: &SigningKey, body: &[u8]) -> String {
    let mut mac = key.mac();
    mac.update(body);
    to_hex(&mac.finalize().into_bytes())
}

fn to_hex(bytes: &[u8]) -> String {
    const DIGITS: &[u8; 16] = b"0123456789abcdef";
    let mut out = String::with_capacity(bytes.len() * 2);
    for byte in bytes {
        out.push(DIGITS[usize::from(byte >> 4)] as char);
        out.push(DIGITS[usize::from(byte & 0x0f)] as char);
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn standard_signature_matches_the_published_test_vector() {
        // The vector published with the Standard Webhooks reference libraries.
        let key = SigningKey::from_whsec("whsec_MfKQ9r8GKYqrTwjUPD8ILPZIo2LaLaSw").unwrap();
        let signature = standard_signature(
            &[key],
            "msg_p5jXN8AQM9LWM0D4loKWxJek",
            1614265330,
            br#"{"test": 2432232314}"#,
        );
        assert_eq!(signature, "v1,g0hM9SsE+OTPJTGt/tmIKtSyZlE3uFJELVlNIOLJ1OE=");
    }

    #[test]
    fn one_signature_per_key_during_rotation() {
        let old = SigningKey::from_whsec("whsec_MfKQ9r8GKYqrTwjUPD8ILPZIo2LaLaSw").unwrap();
        let new = SigningKey::from_whsec(&generate_whsec()).unwrap();
        let both = standard_signature(&[new.clone(), old.clone()], "m", 1, b"{}");
        let parts: Vec<&str> = both.split(' ').collect();
        assert_eq!(parts.len(), 2);
        assert_eq!(parts[0], standard_signature(&[new], "m", 1, b"{}"));
        assert_eq!(parts[1], standard_signature(&[old], "m", 1, b"{}"));
    }

    #[test]
    fn hex_signature_matches_rfc_4231_case_2() {
        // RFC 4231 test case 2: key "Jefe", data "what do ya want for nothing?".
        let key = SigningKey::from_utf8("Jefe");
        assert_eq!(
            hex_signature(&key, b"what do ya want for nothing?"),
            "5bdcc146bf60754e6a042426089575c75a003f089d2739839dec58b964ec3843"
        );
    }

    #[test]
    fn whsec_parsing_names_each_problem() {
        assert_eq!(SigningKey::from_whsec("abc"), Err(KeyError::MissingPrefix));
        assert_eq!(
            SigningKey::from_whsec("whsec_!!!"),
            Err(KeyError::NotBase64)
        );
        assert_eq!(
            SigningKey::from_whsec("whsec_AAAA"),
            Err(KeyError::BadLength(3))
        );
    }

    #[test]
    fn generated_secrets_parse_and_differ() {
        let a = generate_whsec();
        let b = generate_whsec();
        assert_ne!(a, b);
        assert!(SigningKey::from_whsec(&a).is_ok());
    }

    #[test]
    fn debug_never_shows_key_bytes() {
        let key = SigningKey::from_utf8("hunter2");
        assert_eq!(format!("{key:?}"), "SigningKey([redacted])");
    }
}
