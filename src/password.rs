//! The admin password: argon2id hashes in PHC string form (`$argon2id$v=19$...`), as
//! `posthorn hash-password` prints them and `[admin] password_hash` holds them, and the
//! password generated at first start when the config names none.

use argon2::password_hash::{PasswordHash, PasswordHasher, PasswordVerifier, SaltString};
use argon2::Argon2;
use rand::Rng;

/// Characters of a generated password: no look-alikes (0/O, 1/l/I), so it can be read
/// off a log line and typed.
const GENERATED_ALPHABET: &[u8] = b"abcdefghijkmnopqrstuvwxyzABCDEFGHJKLMNPQRSTUVWXYZ23456789";
/// 20 characters of 57: about 117 bits.
const GENERATED_LEN: usize = 20;
/// Shorter passwords are refused by `hash-password`.
pub const MIN_LEN: usize = 12;

/// Hashes `password` with argon2id at the crate's default cost (19 MiB, 2 passes) and a
/// fresh salt.
pub fn hash(password: &str) -> String {
    let salt_bytes: [u8; 16] = rand::rng().random();
    let salt = SaltString::encode_b64(&salt_bytes).expect("16 bytes is a valid salt length");
    Argon2::default()
        .hash_password(password.as_bytes(), &salt)
        .expect("argon2 with default parameters and a generated salt cannot fail")
        .to_string()
}

/// Whether `password` matches `hash`. Argon2's own comparison is constant-time.
pub fn verify(hash: &str, password: &str) -> bool {
    match PasswordHash::new(hash) {
        Ok(parsed) => Argon2::default()
            .verify_password(password.as_bytes(), &parsed)
            .is_ok(),
        Err(_) => false,
    }
}

/// Checks that `hash` is an argon2 PHC string this build can verify; the reason if not.
pub fn check_hash(hash: &str) -> Result<(), String> {
    let parsed = PasswordHash::new(hash).map_err(|err| {
        format!("is not a PHC password hash ({err}); make one with `posthorn hash-password`")
    })?;
    match parsed.algorithm.as_str() {
        "argon2id" | "argon2i" | "argon2d" => {}
        other => {
            return Err(format!(
                "uses {other:?}; posthorn verifies argon2 hashes only (make one with `posthorn hash-password`)"
            ))
        }
    }
    if parsed.hash.is_none() || parsed.salt.is_none() {
        return Err("has no salt or no hash part; make one with `posthorn hash-password`".into());
    }
    Ok(())
}

/// A fresh random password for the first start.
pub fn generate() -> String {
    let mut rng = rand::rng();
    (0..GENERATED_LEN)
        .map(|_| GENERATED_ALPHABET[rng.random_range(0..GENERATED_ALPHABET.len())] as char)
        .collect()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_hash_verifies_its_password_only() {
        let hashed = hash("correct horse battery");
        assert!(hashed.starts_with("$argon2id$v=19$"), "{hashed}");
        assert!(check_hash(&hashed).is_ok());
        assert!(verify(&hashed, "correct horse battery"));
        assert!(!verify(&hashed, "correct horse batterY"));
        assert!(!verify(&hashed, ""));
        assert_ne!(hashed, hash("correct horse battery"), "salted");
    }

    #[test]
    fn bad_hashes_are_named_and_never_verify() {
        for bad in [
            "",
            "hunter2",
            "$argon2id$v=19$m=19456,t=2,p=1$",
            "$2b$12$abcdefghijklmnopqrstuv",
        ] {
            assert!(check_hash(bad).is_err(), "{bad:?}");
            assert!(!verify(bad, "hunter2"));
        }
        let sha = "$pbkdf2-sha256$i=1000$c2FsdHNhbHQ$aGFzaGhhc2hoYXNoaGFzaA";
        let err = check_hash(sha).unwrap_err();
        assert!(err.contains("pbkdf2-sha256"), "{err}");
    }

    #[test]
    fn generated_passwords_are_long_and_differ() {
        let one = generate();
        assert_eq!(one.len(), GENERATED_LEN);
        assert!(one.bytes().all(|b| GENERATED_ALPHABET.contains(&b)));
        assert_ne!(one, generate());
    }
}
