//! `posthorn verify`: reads the secrets and a captured request (a raw HTTP dump from a
//! file or stdin, or `--header` flags and `--body`), hands them to [`crate::verify`] and
//! prints what it found. Exit 0 valid, 1 invalid, 2 the check could not be set up. It
//! needs no running posthorn and no config.

use std::io::Read as _;
use std::path::{Path, PathBuf};
use std::process::ExitCode;
use std::time::Duration;

use clap::{Args, ValueEnum};

use super::out;
use crate::client::time::parse_time_arg;
use crate::config::parse_duration;
use crate::sign::{Ed25519PublicKey, SigningKey};
use crate::verify::{self, Captured, Scheme};

/// Largest request or body read: posthorn's own limit for an event is 1 MiB, a source's
/// 16 MiB.
const MAX_INPUT: u64 = 32 << 20;

#[derive(Debug, Clone, Copy, PartialEq, Eq, ValueEnum)]
pub enum SchemeArg {
    /// Standard Webhooks: webhook-id, webhook-timestamp, webhook-signature: v1,<base64>
    /// checked with a whsec_ secret, or v1a,<base64> (ed25519) when the keys given are
    /// whpk_ public keys.
    Standard,
    /// A header holding a prefix and the hex HMAC-SHA256 of the raw body.
    Hex,
}

#[derive(Debug, Clone, Args)]
pub struct VerifyArgs {
    /// The secret (whsec_... for standard, or the whpk_... public key for ed25519-signed
    /// requests; any text for hex). Repeat it to check against
    /// each secret of a rotation.
    #[arg(long, value_name = "SECRET")]
    pub secret: Vec<String>,
    /// Read the secret from this environment variable.
    #[arg(long, value_name = "NAME")]
    pub secret_env: Option<String>,
    /// Read the secret from this file (one line; the line end is not part of it).
    #[arg(long, value_name = "PATH")]
    pub secret_file: Option<PathBuf>,
    /// The captured request as raw HTTP (request line, headers, empty line, body); `-`
    /// for stdin. Read from stdin when neither this nor --body is given.
    #[arg(long, value_name = "FILE", conflicts_with = "body")]
    pub request: Option<PathBuf>,
    /// A header of the request, "name: value"; repeat it. Used with --body.
    #[arg(
        long = "header",
        short = 'H',
        value_name = "NAME: VALUE",
        requires = "body"
    )]
    pub headers: Vec<String>,
    /// The request's body, byte for byte; `-` for stdin.
    #[arg(long, value_name = "FILE")]
    pub body: Option<PathBuf>,
    /// How the request is signed.
    #[arg(long, value_enum, default_value = "standard")]
    pub scheme: SchemeArg,
    /// With --scheme hex: the header holding the signature.
    #[arg(long, value_name = "NAME", default_value = "X-Webhook-Signature")]
    pub signature_header: String,
    /// With --scheme hex: the text before the hex digits (e.g. "sha256=").
    #[arg(long, value_name = "TEXT", default_value = "")]
    pub signature_prefix: String,
    /// How far webhook-timestamp may be from now, either way (Standard Webhooks: 5m).
    #[arg(long, value_name = "DURATION", default_value = "5m", value_parser = parse_duration)]
    pub tolerance: Duration,
    /// Check the timestamp against TIME instead of now (a request captured earlier):
    /// RFC 3339, unix ms, or 30m/1h/2d ago.
    #[arg(long, value_name = "TIME", value_parser = parse_time_arg)]
    pub at: Option<i64>,
    /// Print {"valid": true|false, "findings": ["..."]} instead of text.
    #[arg(long)]
    pub json: bool,
}

/// `posthorn verify`.
pub fn run(args: &VerifyArgs) -> ExitCode {
    let (scheme, captured) = match setup(args) {
        Ok(set) => set,
        Err(message) => {
            eprintln!("posthorn: {message}");
            return ExitCode::from(2);
        }
    };
    let now = match args.at {
        Some(ms) => ms.div_euclid(1000),
        None => time::OffsetDateTime::now_utc().unix_timestamp(),
    };
    let report = verify::check(&captured, &scheme, now, args.tolerance);
    if args.json {
        let json = serde_json::json!({ "valid": report.valid, "findings": report.findings });
        out(&format!("{json:#}"));
    } else {
        out(if report.valid { "valid" } else { "invalid" });
        for finding in &report.findings {
            out(&format!("  {finding}"));
        }
    }
    if report.valid {
        ExitCode::SUCCESS
    } else {
        ExitCode::FAILURE
    }
}

fn setup(args: &VerifyArgs) -> Result<(Scheme, Captured), String> {
    let secrets = secrets(args)?;
    let scheme = match args.scheme {
        SchemeArg::Standard if secrets.iter().all(|s| s.starts_with("whpk_")) => Scheme::Ed25519 {
            keys: secrets
                .iter()
                .enumerate()
                .map(|(n, s)| {
                    Ed25519PublicKey::from_whpk(s)
                        .map_err(|err| format!("public key {}: {err}", n + 1))
                })
                .collect::<Result<_, _>>()?,
        },
        SchemeArg::Standard => Scheme::Standard {
            keys: secrets
                .iter()
                .enumerate()
                .map(|(n, s)| {
                    SigningKey::from_whsec(s).map_err(|err| {
                        format!(
                            "secret {}: {err} (for a hex-signed request add --scheme hex)",
                            n + 1
                        )
                    })
                })
                .collect::<Result<_, _>>()?,
        },
        SchemeArg::Hex => Scheme::Hex {
            keys: secrets.iter().map(|s| SigningKey::from_utf8(s)).collect(),
            header: args.signature_header.clone(),
            prefix: args.signature_prefix.clone(),
        },
    };
    let captured = match (&args.request, &args.body) {
        (_, Some(body)) => {
            let headers = args
                .headers
                .iter()
                .map(|h| verify::parse_header(h))
                .collect::<Result<_, _>>()?;
            Captured {
                headers,
                body: read_input(body, "the body")?,
            }
        }
        (Some(request), None) => verify::parse_http_dump(&read_input(request, "the request")?)?,
        (None, None) => verify::parse_http_dump(&read_input(Path::new("-"), "the request")?)?,
    };
    Ok((scheme, captured))
}

fn secrets(args: &VerifyArgs) -> Result<Vec<String>, String> {
    let mut secrets = args.secret.clone();
    if let Some(name) = &args.secret_env {
        let value = std::env::var(name)
            .map_err(|_| format!("--secret-env {name}: the variable is not set (or not UTF-8)"))?;
        secrets.push(value.trim().to_string());
    }
    if let Some(path) = &args.secret_file {
        let text = read_input(path, "the secret file")?;
        let text = String::from_utf8(text)
            .map_err(|_| format!("--secret-file {}: not UTF-8 text", path.display()))?;
        secrets.push(text.lines().next().unwrap_or_default().trim().to_string());
    }
    secrets.retain(|s| !s.is_empty());
    if secrets.is_empty() {
        return Err(
            "no secret to check with: give --secret, --secret-env NAME or --secret-file PATH"
                .into(),
        );
    }
    Ok(secrets)
}

/// Reads a file, or stdin for `-`, up to [`MAX_INPUT`] bytes.
fn read_input(path: &Path, what: &str) -> Result<Vec<u8>, String> {
    let mut bytes = Vec::new();
    let result = if path == Path::new("-") {
        std::io::stdin()
            .lock()
            .take(MAX_INPUT + 1)
            .read_to_end(&mut bytes)
    } else {
        std::fs::File::open(path).and_then(|f| f.take(MAX_INPUT + 1).read_to_end(&mut bytes))
    };
    let name = if path == Path::new("-") {
        "stdin".to_string()
    } else {
        path.display().to_string()
    };
    result.map_err(|err| format!("cannot read {what} from {name}: {err}"))?;
    if bytes.len() as u64 > MAX_INPUT {
        return Err(format!("{what} in {name} is over {} MiB", MAX_INPUT >> 20));
    }
    Ok(bytes)
}
