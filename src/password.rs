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
/// The argon2 costs a hash may ask for. Below them a stolen hash is cheap to guess (OWASP
/// asks for at least 7 MiB with 5 passes, or 19 MiB with 2); above them one login attempt
/// costs the server more memory or time than it should spend on an unauthenticated
/// request. The default (19 MiB, 2 passes, 1 lane) sits inside.
pub const MEMORY_KIB: std::ops::RangeInclusive<u32> = 7 * 1024..=256 * 1024;
pub const PASSES: std::ops::RangeInclusive<u32> = 1..=10;
pub const LANES: std::ops::RangeInclusive<u32> = 1..=8;

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

/// Whether `password` matches `hash`. Argon2's own comparison is constant-time. A hash
/// whose costs are out of bounds never verifies (`check_hash` refuses it at start).
pub fn verify(hash: &str, password: &str) -> bool {
    match PasswordHash::new(hash) {
        Ok(parsed) if check_costs(&parsed).is_ok() => Argon2::default()
            .verify_password(password.as_bytes(), &parsed)
            .is_ok(),
        _ => false,
    }
}

/// Whether the hash's argon2 costs are within [`MEMORY_KIB`], [`PASSES`] and [`LANES`].
fn check_costs(parsed: &PasswordHash<'_>) -> Result<(), String> {
    let params = argon2::Params::try_from(parsed)
        .map_err(|err| format!("has argon2 parameters this build cannot use ({err})"))?;
    let (m, t, p) = (params.m_cost(), params.t_cost(), params.p_cost());
    if MEMORY_KIB.contains(&m) && PASSES.contains(&t) && LANES.contains(&p) {
        return Ok(());
    }
    Err(format!(
        "asks for m={m},t={t},p={p}; allowed are m (memory, KiB) from {} to {}, t (passes) \
         from {} to {} and p (lanes) from {} to {} (`posthorn hash-password` makes m=19456,t=2,p=1)",
        MEMORY_KIB.start(),
        MEMORY_KIB.end(),
        PASSES.start(),
        PASSES.end(),
        LANES.start(),
        LANES.end()
    ))
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
    check_costs(&parsed)
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
    fn hashes_too_cheap_or_too_costly_are_refused_with_the_allowed_range() {
        let with = |params: argon2::Params| {
            let salt = SaltString::encode_b64(&[7u8; 16]).unwrap();
            Argon2::new(argon2::Algorithm::Argon2id, argon2::Version::V0x13, params)
                .hash_password(b"pw", &salt)
                .unwrap()
                .to_string()
        };
        let weak = with(argon2::Params::new(8, 1, 1, None).unwrap());
        let err = check_hash(&weak).unwrap_err();
        assert!(
            err.contains("m=8,t=1,p=1") && err.contains("from 7168 to 262144"),
            "{err}"
        );
        assert!(!verify(&weak, "pw"), "an out-of-bounds hash never verifies");
        // 4 GiB and 50 passes: written by hand, as computing it would take that memory.
        let costly = weak.replace("m=8,t=1", "m=4194304,t=50");
        let err = check_hash(&costly).unwrap_err();
        assert!(err.contains("m=4194304,t=50"), "{err}");
        assert!(!verify(&costly, "pw"), "refused before any argon2 work");
        assert!(check_hash(&with(argon2::Params::new(7 * 1024, 5, 1, None).unwrap())).is_ok());
    }

    #[test]
    fn generated_passwords_are_long_and_differ() {
        let one = generate();
        assert_eq!(one.len(), GENERATED_LEN);
        assert!(one.bytes().all(|b| GENERATED_ALPHABET.contains(&b)));
        assert_ne!(one, generate());
    }
}
