//! Verification code for `signature = "ed25519"` (Standard Webhooks `v1a`). The receiver
//! needs only the public `whpk_` key, so the snippets name this subscription's keys
//! outright. Python has no ed25519 in its standard library: its snippet uses the
//! `cryptography` package; Node and Go use their standard libraries.

use super::Snippets;

pub(super) fn snippets(name: &str, public_keys: &[String]) -> Snippets {
    let listed = public_keys.join(" ");
    let fill = |template: &str| template.replace("{NAME}", name).replace("{KEYS}", &listed);
    Snippets {
        python: fill(PYTHON),
        node: fill(NODE),
        go: fill(GO),
    }
}

const PYTHON: &str = r#"# Verifies a posthorn delivery of subscription "{NAME}" (Standard Webhooks v1a, ed25519).
# headers: the request headers as a case-insensitive mapping (Flask, Django and Starlette
# give one); body: the raw request body as bytes, before any JSON parsing; public_key:
# the subscription's public key (not secret), currently {KEYS}
# Needs the cryptography package: pip install cryptography
import base64
import binascii
import time

from cryptography.exceptions import InvalidSignature
from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PublicKey

TOLERANCE_SECONDS = 5 * 60


def verify_posthorn(headers, body, public_key):
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
    key = Ed25519PublicKey.from_public_bytes(base64.b64decode(public_key.removeprefix("whpk_")))
    signed = f"{msg_id}.{timestamp}.".encode() + body
    for signature in signatures.split(" "):
        version, _, value = signature.partition(",")
        if version != "v1a":
            continue
        try:
            key.verify(base64.b64decode(value), signed)
            return True
        except (InvalidSignature, binascii.Error):
            continue
    return False
"#;

const NODE: &str = r#"// Verifies a posthorn delivery of subscription "{NAME}" (Standard Webhooks v1a, ed25519).
// headers: req.headers; body: the raw body as a Buffer (e.g. from
// express.raw({ type: "application/json" })); publicKey: the subscription's public key
// (not secret), currently {KEYS}
const crypto = require("node:crypto");

const TOLERANCE_SECONDS = 5 * 60;

function verifyPosthorn(headers, body, publicKey) {
  const id = headers["webhook-id"];
  const timestamp = headers["webhook-timestamp"];
  const signatures = headers["webhook-signature"];
  if (!id || !timestamp || !signatures) return false;
  const sentAt = Number(timestamp);
  if (!Number.isInteger(sentAt) || Math.abs(Date.now() / 1000 - sentAt) > TOLERANCE_SECONDS) {
    return false;
  }
  const raw = Buffer.from(publicKey.replace(/^whpk_/, ""), "base64");
  const key = crypto.createPublicKey({
    key: { kty: "OKP", crv: "Ed25519", x: raw.toString("base64url") },
    format: "jwk",
  });
  const signed = Buffer.concat([Buffer.from(`${id}.${timestamp}.`), body]);
  return signatures.split(" ").some((signature) => {
    const [version, value] = signature.split(",");
    if (version !== "v1a" || !value) return false;
    return crypto.verify(null, signed, key, Buffer.from(value, "base64"));
  });
}

module.exports = { verifyPosthorn };
"#;

const GO: &str = r#"// Package webhook verifies posthorn deliveries of subscription "{NAME}"
// (Standard Webhooks v1a, ed25519).
package webhook

import (
	"crypto/ed25519"
	"encoding/base64"
	"net/http"
	"strconv"
	"strings"
	"time"
)

const tolerance = 5 * time.Minute

// VerifyPosthorn reports whether a request carries a valid signature. body is the raw
// request body; publicKey is the subscription's public key (not secret), currently
// {KEYS}
func VerifyPosthorn(header http.Header, body []byte, publicKey string) bool {
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
	key, err := base64.StdEncoding.DecodeString(strings.TrimPrefix(publicKey, "whpk_"))
	if err != nil || len(key) != ed25519.PublicKeySize {
		return false
	}
	signed := append([]byte(id+"."+timestamp+"."), body...)
	for _, signature := range strings.Split(signatures, " ") {
		version, value, found := strings.Cut(signature, ",")
		if !found || version != "v1a" {
			continue
		}
		given, err := base64.StdEncoding.DecodeString(value)
		if err == nil && ed25519.Verify(ed25519.PublicKey(key), signed, given) {
			return true
		}
	}
	return false
}
"#;
