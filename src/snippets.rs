//! What the admin page offers to copy for one subscription: its `[[subscription]]` block
//! (secrets and header values redacted) and receiver-side verification code in Python,
//! Node and Go that matches its signing settings. The code uses only each language's
//! standard library (but for Python's ed25519, see `ed25519`); tests run all three
//! against requests signed by `deliver`.

use serde::Serialize;

mod ed25519;

use crate::config::{Signing, Subscription};
use crate::logging::url_for_log;

/// Shown in place of anything secret.
const REDACTED: &str = "[redacted]";

/// Verification code for a receiver, one per language.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct Snippets {
    pub python: String,
    pub node: String,
    pub go: String,
}

/// The subscription as a config block. The secret, header values and any credentials or
/// query in the URL are redacted: the block documents the subscription, it does not leak it.
pub fn toml_block(subscription: &Subscription) -> String {
    let mut lines = vec![
        "[[subscription]]".to_string(),
        format!("name = {}", toml_string(&subscription.name)),
        format!("url = {}", toml_string(&url_for_log(&subscription.url))),
    ];
    let list = |patterns: &[crate::routing::Pattern]| {
        let items: Vec<String> = patterns.iter().map(|p| toml_string(p.as_str())).collect();
        format!("[{}]", items.join(", "))
    };
    if !subscription.conversations.is_empty() {
        lines.push(format!(
            "conversations = {}",
            list(&subscription.conversations)
        ));
    }
    if !subscription.projects.is_empty() {
        lines.push(format!("projects = {}", list(&subscription.projects)));
    }
    lines.push(format!("events = {}", list(&subscription.events)));
    lines.push(
        "# The secret is not shown: give it as secret, secret_file or secret_env.".to_string(),
    );
    lines.push(format!("secret = {}", toml_string(REDACTED)));
    match &subscription.signing {
        Signing::Standard { .. } => lines.push("signature = \"standard\"".to_string()),
        Signing::Ed25519 { .. } => lines.push("signature = \"ed25519\"".to_string()),
        Signing::Hex { header, prefix, .. } => {
            lines.push("signature = \"hex\"".to_string());
            lines.push(format!("signature_header = {}", toml_string(header)));
            lines.push(format!("signature_prefix = {}", toml_string(prefix)));
        }
    }
    if !subscription.headers.is_empty() {
        let headers: Vec<String> = subscription
            .headers
            .iter()
            .map(|(name, _)| format!("{} = {}", toml_string(name), toml_string(REDACTED)))
            .collect();
        lines.push(format!("headers = {{ {} }}", headers.join(", ")));
    }
    lines.extend(subscription.shaping.toml_lines());
    match &subscription.format {
        crate::format::Format::Envelope => {}
        crate::format::Format::Template(template) => {
            lines
                .push("# A template (template or template_file): see the config file.".to_string());
            lines.push(format!(
                "content_type = {}",
                toml_string(template.content_type())
            ));
        }
        other => lines.push(format!("format = {}", toml_string(other.name()))),
    }
    lines.push(format!("enabled = {}", subscription.enabled));
    lines.join("\n") + "\n"
}

/// Code a receiver runs to check that a request really came from this subscription.
pub fn verification_snippets(subscription: &Subscription) -> Snippets {
    let name = &subscription.name;
    match &subscription.signing {
        Signing::Standard { .. } => Snippets {
            python: PYTHON_STANDARD.replace("{NAME}", name),
            node: NODE_STANDARD.replace("{NAME}", name),
            go: GO_STANDARD.replace("{NAME}", name),
        },
        Signing::Ed25519 { keys } => {
            let public: Vec<String> = keys.iter().map(|k| k.public_whpk()).collect();
            ed25519::snippets(name, &public)
        }
        Signing::Hex { header, prefix, .. } => {
            let fill = |template: &str, header_name: &str| {
                template
                    .replace("{NAME}", name)
                    .replace("{HEADER}", &code_string(header_name))
                    .replace("{PREFIX}", &code_string(prefix))
            };
            Snippets {
                python: fill(PYTHON_HEX, header),
                // Node lower-cases the names in req.headers.
                node: fill(NODE_HEX, &header.to_ascii_lowercase()),
                go: fill(GO_HEX, header),
            }
        }
    }
}

fn toml_string(text: &str) -> String {
    toml::Value::String(text.to_string()).to_string()
}

/// A string literal valid in Python, JavaScript and Go alike: JSON's escapes are a
/// subset of each language's.
fn code_string(text: &str) -> String {
    serde_json::to_string(text).expect("a string always serializes")
}

const PYTHON_STANDARD: &str = r#"# Verifies a posthorn delivery of subscription "{NAME}" (Standard Webhooks).
# headers: the request headers as a case-insensitive mapping (Flask, Django and Starlette
# give one); body: the raw request body as bytes, before any JSON parsing; secret: the
# subscription's whsec_ secret, e.g. os.environ["POSTHORN_WEBHOOK_SECRET"].
import base64
import hashlib
import hmac
import time

TOLERANCE_SECONDS = 5 * 60


def verify_posthorn(headers, body, secret):
    msg_id = headers.get("webhook-id")
    timestamp = headers.get("webhook-timestamp")
    signatures = headers.get("webhook-signature")
    if not (msg_id and timestamp and signatures):
        return False
    try:
        sent_at = int(timestamp)
    except ValueError:
        return False
    if abs(time.time() - sent_at) > TOLERANCE_SECONDS:
        return False
    key = base64.b64decode(secret.removeprefix("whsec_"))
    signed = f"{msg_id}.{timestamp}.".encode() + body
    expected = base64.b64encode(hmac.new(key, signed, hashlib.sha256).digest())
    for signature in signatures.split(" "):
        version, _, value = signature.partition(",")
        if version == "v1" and hmac.compare_digest(value.encode(), expected):
            return True
    return False
"#;

const PYTHON_HEX: &str = r#"# Verifies a posthorn delivery of subscription "{NAME}" (hex HMAC-SHA256 of the body).
# headers: the request headers as a case-insensitive mapping (Flask, Django and Starlette
# give one); body: the raw request body as bytes, before any JSON parsing; secret: the
# shared secret string, e.g. os.environ["POSTHORN_WEBHOOK_SECRET"].
import hashlib
import hmac

SIGNATURE_HEADER = {HEADER}
SIGNATURE_PREFIX = {PREFIX}


def verify_posthorn(headers, body, secret):
    sent = headers.get(SIGNATURE_HEADER) or ""
    if not sent.startswith(SIGNATURE_PREFIX):
        return False
    expected = hmac.new(secret.encode(), body, hashlib.sha256).hexdigest()
    return hmac.compare_digest(sent[len(SIGNATURE_PREFIX):].encode(), expected.encode())
"#;

const NODE_STANDARD: &str = r#"// Verifies a posthorn delivery of subscription "{NAME}" (Standard Webhooks).
// headers: req.headers; body: the raw body as a Buffer (e.g. from
// express.raw({ type: "application/json" })); secret: the subscription's whsec_ secret,
// e.g. process.env.POSTHORN_WEBHOOK_SECRET.
const crypto = require("node:crypto");

const TOLERANCE_SECONDS = 5 * 60;

function verifyPosthorn(headers, body, secret) {
  const id = headers["webhook-id"];
  const timestamp = headers["webhook-timestamp"];
  const signatures = headers["webhook-signature"];
  if (!id || !timestamp || !signatures) return false;
  const sentAt = Number(timestamp);
  if (!Number.isInteger(sentAt) || Math.abs(Date.now() / 1000 - sentAt) > TOLERANCE_SECONDS) {
    return false;
  }
  const key = Buffer.from(secret.replace(/^whsec_/, ""), "base64");
  const expected = crypto
    .createHmac("sha256", key)
    .update(`${id}.${timestamp}.`)
    .update(body)
    .digest();
  return signatures.split(" ").some((signature) => {
    const [version, value] = signature.split(",");
    if (version !== "v1" || !value) return false;
    const given = Buffer.from(value, "base64");
    return given.length === expected.length && crypto.timingSafeEqual(given, expected);
  });
}

module.exports = { verifyPosthorn };
"#;

const NODE_HEX: &str = r#"// Verifies a posthorn delivery of subscription "{NAME}" (hex HMAC-SHA256 of the body).
// headers: req.headers; body: the raw body as a Buffer (e.g. from
// express.raw({ type: "application/json" })); secret: the shared secret string,
// e.g. process.env.POSTHORN_WEBHOOK_SECRET.
const crypto = require("node:crypto");

const SIGNATURE_HEADER = {HEADER};
const SIGNATURE_PREFIX = {PREFIX};

function verifyPosthorn(headers, body, secret) {
  const sent = headers[SIGNATURE_HEADER] || "";
  if (!sent.startsWith(SIGNATURE_PREFIX)) return false;
  const given = Buffer.from(sent.slice(SIGNATURE_PREFIX.length), "utf8");
  const expected = Buffer.from(
    crypto.createHmac("sha256", Buffer.from(secret, "utf8")).update(body).digest("hex"),
    "utf8",
  );
  return given.length === expected.length && crypto.timingSafeEqual(given, expected);
}

module.exports = { verifyPosthorn };
"#;

const GO_STANDARD: &str = r#"// Package webhook verifies posthorn deliveries of subscription "{NAME}"
// (Standard Webhooks).
package webhook

import (
	"crypto/hmac"
	"crypto/sha256"
	"encoding/base64"
	"net/http"
	"strconv"
	"strings"
	"time"
)

const tolerance = 5 * time.Minute

// VerifyPosthorn reports whether a request carries a valid signature. body is the raw
// request body; secret is the subscription's whsec_ secret, e.g.
// os.Getenv("POSTHORN_WEBHOOK_SECRET").
func VerifyPosthorn(header http.Header, body []byte, secret string) bool {
	id := header.Get("webhook-id")
	timestamp := header.Get("webhook-timestamp")
	signatures := header.Get("webhook-signature")
	if id == "" || timestamp == "" || signatures == "" {
		return false
	}
	sentAt, err := strconv.ParseInt(timestamp, 10, 64)
	if err != nil {
		return false
	}
	if age := time.Since(time.Unix(sentAt, 0)); age > tolerance || age < -tolerance {
		return false
	}
	key, err := base64.StdEncoding.DecodeString(strings.TrimPrefix(secret, "whsec_"))
	if err != nil {
		return false
	}
	mac := hmac.New(sha256.New, key)
	mac.Write([]byte(id + "." + timestamp + "."))
	mac.Write(body)
	expected := mac.Sum(nil)
	for _, signature := range strings.Split(signatures, " ") {
		version, value, found := strings.Cut(signature, ",")
		if !found || version != "v1" {
			continue
		}
		given, err := base64.StdEncoding.DecodeString(value)
		if err == nil && hmac.Equal(given, expected) {
			return true
		}
	}
	return false
}
"#;

const GO_HEX: &str = r#"// Package webhook verifies posthorn deliveries of subscription "{NAME}"
// (hex HMAC-SHA256 of the body).
package webhook

import (
	"crypto/hmac"
	"crypto/sha256"
	"encoding/hex"
	"net/http"
	"strings"
)

const (
	signatureHeader = {HEADER}
	signaturePrefix = {PREFIX}
)

// VerifyPosthorn reports whether a request carries a valid signature. body is the raw
// request body; secret is the shared secret string, e.g.
// os.Getenv("POSTHORN_WEBHOOK_SECRET").
func VerifyPosthorn(header http.Header, body []byte, secret string) bool {
	sent := header.Get(signatureHeader)
	if !strings.HasPrefix(sent, signaturePrefix) {
		return false
	}
	given, err := hex.DecodeString(strings.TrimPrefix(sent, signaturePrefix))
	if err != nil {
		return false
	}
	mac := hmac.New(sha256.New, []byte(secret))
	mac.Write(body)
	return hmac.Equal(given, mac.Sum(nil))
}
"#;

#[cfg(test)]
mod tests;
