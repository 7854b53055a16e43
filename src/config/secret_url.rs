//! A database URL that may hold a password (`[storage] url`): kept whole for connecting,
//! shown only redacted. The password may sit in the user info (`user:pw@host`) or in a
//! `password=` parameter; both are hidden, and so is anything a parser could read as
//! either, since over-hiding costs nothing and under-hiding leaks the password.

use std::fmt;

/// What stands in for a hidden value.
const HIDDEN: &str = "[redacted]";

/// A `postgres://` URL from the config. `Debug` and `Display` show [`SecretUrl::redacted`].
#[derive(Clone, PartialEq, Eq)]
pub struct SecretUrl(String);

impl SecretUrl {
    pub fn new(url: impl Into<String>) -> SecretUrl {
        SecretUrl(url.into())
    }

    /// The URL itself, for connecting; never for printing.
    pub fn expose(&self) -> &str {
        &self.0
    }

    /// The URL with its password replaced by `[redacted]`.
    pub fn redacted(&self) -> String {
        redact_url(&self.0)
    }
}

impl fmt::Debug for SecretUrl {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "SecretUrl({:?})", self.redacted())
    }
}

impl fmt::Display for SecretUrl {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&self.redacted())
    }
}

/// `url` with every password it may hold replaced by `[redacted]`; a text that is not a
/// URL (no `://`) is hidden whole.
pub fn redact_url(url: &str) -> String {
    let Some(start) = url.find("://").map(|at| at + 3) else {
        return HIDDEN.to_string();
    };
    let (scheme, rest) = url.split_at(start);
    let mut out = scheme.to_string();
    // The user info ends at an '@'; taking the last one hides a password holding an
    // unencoded '@' or '/' too.
    match rest.rfind('@') {
        Some(at) => {
            match rest[..at].split_once(':') {
                Some((user, _)) => {
                    out.push_str(user);
                    out.push(':');
                    out.push_str(HIDDEN);
                }
                None => out.push_str(&rest[..at]),
            }
            out.push_str(&rest[at..]);
        }
        None => out.push_str(rest),
    }
    let Some((path, query)) = out.split_once('?') else {
        return out;
    };
    let params: Vec<String> = query
        .split('&')
        .map(|param| {
            let key = param.split_once('=').map_or(param, |(key, _)| key);
            if percent_decoded(key).eq_ignore_ascii_case("password") {
                format!("{key}={HIDDEN}")
            } else {
                param.to_string()
            }
        })
        .collect();
    format!("{path}?{}", params.join("&"))
}

/// `text` (an error about `url`) with any password of `url` in it replaced, as written
/// and percent-decoded, for errors from code that may quote what it parsed.
pub fn scrub(text: &str, url: &str) -> String {
    let mut secrets: Vec<String> = Vec::new();
    if let Some(rest) = url.find("://").map(|at| &url[at + 3..]) {
        if let Some(at) = rest.rfind('@') {
            if let Some((_, password)) = rest[..at].split_once(':') {
                secrets.push(password.to_string());
            }
        }
        if let Some((_, query)) = rest.split_once('?') {
            for param in query.split('&') {
                if let Some((key, value)) = param.split_once('=') {
                    if percent_decoded(key).eq_ignore_ascii_case("password") {
                        secrets.push(value.to_string());
                    }
                }
            }
        }
    }
    let decoded: Vec<String> = secrets.iter().map(|s| percent_decoded(s)).collect();
    secrets.extend(decoded);
    // Longest first, so a password that contains another is replaced whole.
    secrets.sort_by_key(|s| std::cmp::Reverse(s.len()));
    let mut out = text.to_string();
    for secret in secrets.iter().filter(|s| !s.is_empty()) {
        out = out.replace(secret.as_str(), HIDDEN);
    }
    out
}

/// `%XX` escapes decoded (invalid ones and non-UTF-8 results kept as written).
fn percent_decoded(text: &str) -> String {
    let bytes = text.as_bytes();
    let mut out = Vec::with_capacity(bytes.len());
    let mut i = 0;
    while i < bytes.len() {
        let hex = bytes
            .get(i + 1..i + 3)
            .and_then(|h| std::str::from_utf8(h).ok())
            .and_then(|h| u8::from_str_radix(h, 16).ok());
        match (bytes[i], hex) {
            (b'%', Some(byte)) => {
                out.push(byte);
                i += 3;
            }
            (byte, _) => {
                out.push(byte);
                i += 1;
            }
        }
    }
    String::from_utf8(out).unwrap_or_else(|_| text.to_string())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_password_in_the_user_info_is_hidden() {
        assert_eq!(
            redact_url("postgres://posthorn:hunter2@db.example.org:5432/posthorn"),
            "postgres://posthorn:[redacted]@db.example.org:5432/posthorn"
        );
        // An unencoded '@' or '/' in the password: still hidden, whichever '@' a parser
        // takes as the end of the user info.
        assert_eq!(
            redact_url("postgresql://u:p@ss/w@host/db"),
            "postgresql://u:[redacted]@host/db"
        );
    }

    #[test]
    fn a_password_parameter_is_hidden_however_its_key_is_written() {
        assert_eq!(
            redact_url("postgres://u@h/db?sslmode=disable&password=hunter2"),
            "postgres://u@h/db?sslmode=disable&password=[redacted]"
        );
        assert_eq!(
            redact_url("postgres://h/db?PASSWORD=hunter2&x=a@b"),
            "postgres://h/db?PASSWORD=[redacted]&x=a@b"
        );
        assert_eq!(
            redact_url("postgres://h/db?passw%6Frd=hunter2"),
            "postgres://h/db?passw%6Frd=[redacted]"
        );
    }

    #[test]
    fn a_url_without_a_password_is_shown_whole() {
        for url in [
            "postgres://posthorn@db.example.org/posthorn",
            "postgres://db.example.org:5432/posthorn?sslmode=disable",
            "postgresql:///posthorn?host=/run/postgresql",
        ] {
            assert_eq!(redact_url(url), url);
        }
    }

    #[test]
    fn a_text_that_is_not_a_url_is_hidden_whole() {
        assert_eq!(
            redact_url("host=db password=hunter2"),
            "[redacted]".to_string()
        );
    }

    #[test]
    fn debug_and_display_never_show_the_password() {
        let url = SecretUrl::new("postgres://posthorn:hunter2@db/posthorn?password=tiger");
        for shown in [format!("{url:?}"), url.to_string(), url.redacted()] {
            assert!(!shown.contains("hunter2"), "{shown}");
            assert!(!shown.contains("tiger"), "{shown}");
            assert!(shown.contains("db/posthorn"), "{shown}");
        }
        assert_eq!(
            url.expose(),
            "postgres://posthorn:hunter2@db/posthorn?password=tiger"
        );
    }

    #[test]
    fn an_error_quoting_the_password_is_scrubbed() {
        let url = "postgres://u:p%40ss@h/db?password=tiger";
        let err = "bad value p@ss, p%40ss and tiger near h";
        assert_eq!(
            scrub(err, url),
            "bad value [redacted], [redacted] and [redacted] near h"
        );
    }
}
