//! `posthorn verify`'s domain: reads a captured webhook request (a raw HTTP dump, or
//! headers and a body) and says whether its signature verifies against the secrets given,
//! and if not, why: a missing header, a timestamp outside the tolerance, a body changed
//! on the way (a newline added, CRLF line ends, JSON re-serialized), or a signature that
//! no secret makes (a wrong secret). Pure functions: the command reads the files.

use std::time::Duration;

use crate::inlet::constant_time_eq;
use crate::sign::{self, Ed25519PublicKey, SigningKey};

/// Standard Webhooks' default tolerance for `webhook-timestamp`, either way.
pub const DEFAULT_TOLERANCE: Duration = Duration::from_secs(5 * 60);

/// A captured request: its headers in order (names as written) and its body.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct Captured {
    pub headers: Vec<(String, String)>,
    pub body: Vec<u8>,
}

impl Captured {
    /// The first value of `name`, in any case.
    pub fn header(&self, name: &str) -> Option<&str> {
        self.headers
            .iter()
            .find(|(n, _)| n.eq_ignore_ascii_case(name))
            .map(|(_, v)| v.as_str())
    }
}

/// Parses a raw HTTP request as a capture tool prints it: an optional request line
/// (`POST /hook HTTP/1.1`), header lines, an empty line, the body. Line ends may be CRLF
/// or LF. The body is every byte after the empty line, exactly; a `Content-Length`
/// shorter than that is reported by [`check`] as bytes added after the body.
pub fn parse_http_dump(bytes: &[u8]) -> Result<Captured, String> {
    let (head_end, body_start) = find_head_end(bytes).ok_or(
        "no empty line ends the headers; a request dump is the headers, an empty line and the body",
    )?;
    let head = std::str::from_utf8(&bytes[..head_end])
        .map_err(|_| "the request's headers are not UTF-8 text".to_string())?;
    let mut lines = head.lines().map(|l| l.trim_end_matches('\r')).peekable();
    if let Some(first) = lines.peek() {
        if !first.contains(':') || first.contains(" HTTP/") {
            lines.next();
        }
    }
    let mut headers = Vec::new();
    for line in lines {
        headers.push(parse_header(line)?);
    }
    Ok(Captured {
        headers,
        body: bytes[body_start..].to_vec(),
    })
}

/// `name: value` (as given to `--header`).
pub fn parse_header(line: &str) -> Result<(String, String), String> {
    let (name, value) = line
        .split_once(':')
        .ok_or_else(|| format!("{line:?} is not a header line; write it as \"name: value\""))?;
    let name = name.trim();
    if name.is_empty() || name.contains(char::is_whitespace) {
        return Err(format!("{line:?} has no header name before the colon"));
    }
    Ok((name.to_string(), value.trim().to_string()))
}

/// Where the head ends and the body starts: after the first `\r\n\r\n` or `\n\n`.
fn find_head_end(bytes: &[u8]) -> Option<(usize, usize)> {
    let crlf = bytes.windows(4).position(|w| w == b"\r\n\r\n");
    let lf = bytes.windows(2).position(|w| w == b"\n\n");
    match (crlf, lf) {
        (Some(c), Some(l)) if l < c => Some((l, l + 2)),
        (Some(c), _) => Some((c, c + 4)),
        (None, Some(l)) => Some((l, l + 2)),
        (None, None) => None,
    }
}

/// How the request was signed.
pub enum Scheme {
    /// Standard Webhooks: `webhook-id`, `webhook-timestamp`, `webhook-signature`; one
    /// key per secret given (rotation).
    Standard { keys: Vec<SigningKey> },
    /// Standard Webhooks' asymmetric `v1a` signatures, checked with `whpk_` public keys.
    Ed25519 { keys: Vec<Ed25519PublicKey> },
    /// `header` holds `prefix` + hex HMAC-SHA256 of the raw body, keyed by the secret's
    /// UTF-8 bytes.
    Hex {
        keys: Vec<SigningKey>,
        header: String,
        prefix: String,
    },
}

/// What [`check`] found: valid, or the reasons it is not, each a sentence.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Report {
    pub valid: bool,
    /// Why the request verifies (valid), or what is wrong with it.
    pub findings: Vec<String>,
}

impl Report {
    fn invalid(finding: String) -> Report {
        Report {
            valid: false,
            findings: vec![finding],
        }
    }
}

/// Checks `captured` against `scheme`, as a receiver would at unix time `now`.
pub fn check(captured: &Captured, scheme: &Scheme, now: i64, tolerance: Duration) -> Report {
    match scheme {
        Scheme::Standard { keys } => {
            check_standard(captured, StandardKeys::Hmac(keys), now, tolerance)
        }
        Scheme::Ed25519 { keys } => {
            check_standard(captured, StandardKeys::Ed25519(keys), now, tolerance)
        }
        Scheme::Hex {
            keys,
            header,
            prefix,
        } => check_hex(captured, keys, header, prefix),
    }
}

/// The keys a Standard Webhooks request is checked with: `v1` entries need the shared
/// secret, `v1a` entries the public key.
#[derive(Clone, Copy)]
enum StandardKeys<'a> {
    Hmac(&'a [SigningKey]),
    Ed25519(&'a [Ed25519PublicKey]),
}

impl StandardKeys<'_> {
    fn len(&self) -> usize {
        match self {
            StandardKeys::Hmac(keys) => keys.len(),
            StandardKeys::Ed25519(keys) => keys.len(),
        }
    }

    fn noun(&self) -> &'static str {
        match self {
            StandardKeys::Hmac(_) => "secret",
            StandardKeys::Ed25519(_) => "public key",
        }
    }
}

fn check_standard(
    captured: &Captured,
    keys: StandardKeys<'_>,
    now: i64,
    tolerance: Duration,
) -> Report {
    let names = ["webhook-id", "webhook-timestamp", "webhook-signature"];
    let missing: Vec<&str> = names
        .iter()
        .copied()
        .filter(|n| captured.header(n).is_none())
        .collect();
    if !missing.is_empty() {
        let mut finding = format!(
            "missing header{}: {}",
            plural(missing.len()),
            missing.join(", ")
        );
        if captured.header("svix-id").is_some() {
            finding.push_str(" (the request carries svix-* headers: Svix names them svix-id, svix-timestamp, svix-signature; rename them to webhook-*)");
        }
        return Report::invalid(finding);
    }
    let (id, timestamp, signatures) = (
        captured.header("webhook-id").unwrap_or_default(),
        captured.header("webhook-timestamp").unwrap_or_default(),
        captured.header("webhook-signature").unwrap_or_default(),
    );
    let Ok(ts) = timestamp.trim().parse::<i64>() else {
        return Report::invalid(format!(
            "webhook-timestamp {timestamp:?} is not unix seconds"
        ));
    };
    let mut findings = Vec::new();
    let mut valid = true;
    let tolerance_s = i64::try_from(tolerance.as_secs()).unwrap_or(i64::MAX);
    let age = now.saturating_sub(ts);
    if age > tolerance_s {
        valid = false;
        findings.push(format!(
            "stale timestamp: webhook-timestamp {ts} is {} old, more than the tolerance of {} (a receiver refuses it as a possible replay; for a request captured earlier, check it --at the time it was sent)",
            seconds(age),
            seconds(tolerance_s)
        ));
    } else if -age > tolerance_s {
        valid = false;
        findings.push(format!(
            "future timestamp: webhook-timestamp {ts} is {} ahead, more than the tolerance of {} (is one clock wrong?)",
            seconds(-age),
            seconds(tolerance_s)
        ));
    }

    let mut given_v1 = Vec::new();
    let mut given_v1a = Vec::new();
    let mut found = Vec::new();
    for entry in signatures.split_whitespace() {
        match entry.split_once(',') {
            Some(("v1", sig)) => given_v1.push(sig),
            Some(("v1a", sig)) => given_v1a.push(sig),
            Some((version, _)) => found.push(version.to_string()),
            None => found.push(format!("{entry:?} (no version)")),
        }
    }
    let (wanted, given, other, what) = match keys {
        StandardKeys::Hmac(_) => (
            "v1",
            &given_v1,
            given_v1a.len(),
            "v1,<base64 HMAC-SHA256> is what a whsec_ secret checks",
        ),
        StandardKeys::Ed25519(_) => (
            "v1a",
            &given_v1a,
            given_v1.len(),
            "v1a,<base64 ed25519 signature> is what a whpk_ public key checks",
        ),
    };
    if given.is_empty() {
        let other_version = if wanted == "v1" { "v1a" } else { "v1" };
        found.extend(std::iter::repeat_n(other_version.to_string(), other));
        findings.push(format!(
            "webhook-signature holds no {wanted} signature (found: {}); {what}",
            if found.is_empty() {
                "nothing".to_string()
            } else {
                found.join(", ")
            }
        ));
        return Report {
            valid: false,
            findings,
        };
    }

    let signs = |body: &[u8]| -> Option<usize> {
        match keys {
            StandardKeys::Hmac(keys) => keys.iter().position(|key| {
                let expected = sign::standard_signature(std::slice::from_ref(key), id, ts, body);
                let expected = expected
                    .strip_prefix("v1,")
                    .unwrap_or(&expected)
                    .to_string();
                given_v1
                    .iter()
                    .any(|given| constant_time_eq(given.as_bytes(), expected.as_bytes()))
            }),
            StandardKeys::Ed25519(keys) => keys.iter().position(|key| {
                given_v1a
                    .iter()
                    .any(|given| key.verifies(id, ts, body, given))
            }),
        }
    };
    if let Some(n) = signs(&captured.body) {
        findings.insert(
            0,
            format!(
                "the signature matches {} {} over webhook-id {id:?}, webhook-timestamp {ts} and the {}-byte body",
                keys.noun(),
                n + 1,
                captured.body.len()
            ),
        );
        return Report { valid, findings };
    }
    findings.push(explain_mismatch(captured, &signs, keys.len(), keys.noun()));
    Report {
        valid: false,
        findings,
    }
}

fn check_hex(captured: &Captured, keys: &[SigningKey], header: &str, prefix: &str) -> Report {
    let Some(given) = captured.header(header) else {
        return Report::invalid(format!("missing header: {header}"));
    };
    let given = given.trim();
    let Some(hex) = given.strip_prefix(prefix) else {
        return Report::invalid(format!(
            "{header} does not start with the prefix {prefix:?} (it starts {:?})",
            given.chars().take(8).collect::<String>()
        ));
    };
    let hex = hex.to_ascii_lowercase();
    let signs = |body: &[u8]| -> Option<usize> {
        keys.iter().position(|key| {
            constant_time_eq(hex.as_bytes(), sign::hex_signature(key, body).as_bytes())
        })
    };
    if let Some(n) = signs(&captured.body) {
        return Report {
            valid: true,
            findings: vec![format!(
                "{header} matches secret {} over the {}-byte body",
                n + 1,
                captured.body.len()
            )],
        };
    }
    Report::invalid(explain_mismatch(captured, &signs, keys.len(), "secret"))
}

/// The signature matches nothing: find a change of the body that explains it, else
/// blame the secret.
fn explain_mismatch(
    captured: &Captured,
    signs: &dyn Fn(&[u8]) -> Option<usize>,
    secrets: usize,
    noun: &str,
) -> String {
    for (what, body) in body_mutations(captured) {
        if signs(&body).is_some() {
            return format!(
                "body changed: the signature matches the body {what}; the receiver must check the raw bytes it was sent, before any parsing or re-encoding"
            );
        }
    }
    format!(
        "wrong {noun}, or the body changed: no {} given makes this signature over the {}-byte body, nor over it without a trailing newline, with LF or CRLF line ends, or as re-serialized JSON",
        if secrets == 1 { noun.to_string() } else { format!("one of the {secrets} {noun}s") },
        captured.body.len()
    )
}

/// Bodies the sender may have signed, for the body as received, each with what changed.
fn body_mutations(captured: &Captured) -> Vec<(String, Vec<u8>)> {
    let body = &captured.body;
    let mut out: Vec<(String, Vec<u8>)> = Vec::new();
    if let Some(length) = captured
        .header("content-length")
        .and_then(|v| v.trim().parse::<usize>().ok())
    {
        if length < body.len() {
            out.push((
                format!(
                    "cut at its Content-Length of {length} bytes: {} bytes were added after it (a trailing newline from the capture?)",
                    body.len() - length
                ),
                body[..length].to_vec(),
            ));
        }
    }
    for ending in [&b"\r\n"[..], b"\n"] {
        if let Some(stripped) = body.strip_suffix(ending) {
            out.push((
                format!(
                    "without its trailing {}: a line end was added to it",
                    if ending.len() == 2 { "CRLF" } else { "newline" }
                ),
                stripped.to_vec(),
            ));
        }
    }
    if body.windows(2).any(|w| w == b"\r\n") {
        out.push((
            "with LF line ends: CRLF line ends were put in on the way".into(),
            replace(body, b"\r\n", b"\n"),
        ));
    } else if body.contains(&b'\n') {
        out.push((
            "with CRLF line ends: LF line ends were changed on the way".into(),
            replace(body, b"\n", b"\r\n"),
        ));
    }
    if let Ok(value) = serde_json::from_slice::<serde_json::Value>(body) {
        if let Some(compact) = minify_json(body) {
            out.push((
                "with the spaces between JSON tokens removed: the JSON was re-serialized (pretty-printed?)".into(),
                compact,
            ));
        }
        out.push((
            "re-serialized with keys sorted: the JSON was parsed and written again".into(),
            value.to_string().into_bytes(),
        ));
    }
    out
}

/// The JSON text without the whitespace outside strings, keys and numbers as written.
fn minify_json(body: &[u8]) -> Option<Vec<u8>> {
    let mut out = Vec::with_capacity(body.len());
    let (mut in_string, mut escaped) = (false, false);
    for &b in body {
        if in_string {
            out.push(b);
            match (escaped, b) {
                (true, _) => escaped = false,
                (false, b'\\') => escaped = true,
                (false, b'"') => in_string = false,
                _ => {}
            }
        } else if !matches!(b, b' ' | b'\t' | b'\r' | b'\n') {
            in_string = b == b'"';
            out.push(b);
        }
    }
    (out != body).then_some(out)
}

fn replace(body: &[u8], from: &[u8], to: &[u8]) -> Vec<u8> {
    let mut out = Vec::with_capacity(body.len() + body.len() / 16);
    let mut i = 0;
    while i < body.len() {
        if body[i..].starts_with(from) {
            out.extend_from_slice(to);
            i += from.len();
        } else {
            out.push(body[i]);
            i += 1;
        }
    }
    out
}

fn plural(n: usize) -> &'static str {
    if n == 1 {
        ""
    } else {
        "s"
    }
}

fn seconds(s: i64) -> String {
    if s >= 120 {
        format!("{s} s ({} min)", s / 60)
    } else {
        format!("{s} s")
    }
}

#[cfg(test)]
mod tests;
