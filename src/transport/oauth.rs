//! OAuth2 client credentials (RFC 6749 section 4.4): fetching a token from a
//! subscription's `token_url`, and the cache that shares it between workers. One fetch
//! at a time per subscription: a worker that finds the token missing or stale fetches it,
//! the others wait for that fetch (bounded by their own deadline) and take its result,
//! token or error, instead of all asking at once. A token is refreshed shortly before its
//! `expires_in` runs out, and dropped at once when a receiver answers 401 to it.

use std::collections::HashMap;
use std::io::Read as _;
use std::sync::{Arc, Condvar, Mutex, MutexGuard, PoisonError};
use std::time::{Duration, Instant};

use base64::Engine as _;

use crate::config::{ClientAuth, OAuth2, Secret};
use crate::logging::url_for_log;

/// Largest token response read.
const MAX_TOKEN_RESPONSE_BYTES: u64 = 64 << 10;
/// How long a token without `expires_in` is used before it is fetched again (a 401
/// replaces it sooner).
const DEFAULT_LIFETIME: Duration = Duration::from_secs(3600);
/// Refresh this long before expiry at most (a tenth of the lifetime for short ones).
const REFRESH_MARGIN: Duration = Duration::from_secs(60);
/// Most token slots kept; past it the cache starts again (each reload that changes a
/// subscription's OAuth2 settings makes a new slot).
const MAX_SLOTS: usize = 1024;

/// A token as the endpoint gave it.
pub struct Fetched {
    pub token: Secret,
    pub lifetime: Option<Duration>,
}

#[derive(Default)]
struct State {
    token: Option<(Secret, Instant)>,
    fetching: bool,
    /// Counts finished fetches, so a waiter can tell that the one it waited for ended.
    generation: u64,
    last_error: Option<String>,
}

#[derive(Default)]
struct Slot {
    state: Mutex<State>,
    changed: Condvar,
}

/// The tokens of every OAuth2 subscription, shared by the worker pool.
#[derive(Default)]
pub struct Tokens {
    slots: Mutex<HashMap<SlotKey, Arc<Slot>>>,
}

/// A subscription's name and the fingerprint of its OAuth2 settings.
type SlotKey = (String, [u8; 32]);

impl Tokens {
    fn slot(&self, subscription: &str, oauth: &OAuth2) -> Arc<Slot> {
        let mut slots = self.slots.lock().unwrap_or_else(PoisonError::into_inner);
        let key = (subscription.to_string(), oauth.fingerprint);
        if !slots.contains_key(&key) && slots.len() >= MAX_SLOTS {
            slots.clear();
        }
        Arc::clone(slots.entry(key).or_default())
    }

    /// A fresh token for `subscription`: the cached one, or the result of one fetch by
    /// `fetch` (given the time left before `deadline`), shared with every worker that
    /// asked meanwhile.
    pub fn token(
        &self,
        subscription: &str,
        oauth: &OAuth2,
        deadline: Instant,
        fetch: impl FnOnce(Duration) -> Result<Fetched, String>,
    ) -> Result<Secret, String> {
        let slot = self.slot(subscription, oauth);
        let mut state = lock(&slot.state);
        let waited_from = state.generation;
        loop {
            if let Some((token, refresh_at)) = &state.token {
                if Instant::now() < *refresh_at {
                    return Ok(token.clone());
                }
            }
            if state.generation != waited_from {
                // The fetch this worker waited for failed: share its error.
                if let Some(err) = &state.last_error {
                    return Err(err.clone());
                }
            }
            if !state.fetching {
                break;
            }
            let left = deadline.saturating_duration_since(Instant::now());
            if left.is_zero() {
                return Err(format!(
                    "timed out waiting for the OAuth2 token another attempt is fetching from {}",
                    url_for_log(&oauth.token_url)
                ));
            }
            state = slot
                .changed
                .wait_timeout(state, left)
                .unwrap_or_else(PoisonError::into_inner)
                .0;
        }
        state.fetching = true;
        drop(state);
        let left = deadline.saturating_duration_since(Instant::now());
        let fetched = if left.is_zero() {
            Err("timed out before the OAuth2 token could be fetched".to_string())
        } else {
            fetch(left)
        };
        let mut state = lock(&slot.state);
        state.fetching = false;
        state.generation += 1;
        let result = match fetched {
            Ok(Fetched { token, lifetime }) => {
                let lifetime = lifetime.unwrap_or(DEFAULT_LIFETIME);
                let margin = REFRESH_MARGIN.min(lifetime / 10);
                state.token = Some((token.clone(), Instant::now() + lifetime - margin));
                state.last_error = None;
                Ok(token)
            }
            Err(err) => {
                state.token = None;
                state.last_error = Some(err.clone());
                Err(err)
            }
        };
        drop(state);
        slot.changed.notify_all();
        result
    }

    /// Forgets `used` after a receiver refused it, unless another worker has already
    /// replaced it.
    pub fn invalidate(&self, subscription: &str, oauth: &OAuth2, used: &Secret) {
        let slot = self.slot(subscription, oauth);
        let mut state = lock(&slot.state);
        if state.token.as_ref().is_some_and(|(token, _)| token == used) {
            state.token = None;
        }
    }
}

fn lock<T>(mutex: &Mutex<T>) -> MutexGuard<'_, T> {
    mutex.lock().unwrap_or_else(PoisonError::into_inner)
}

/// `application/x-www-form-urlencoded` encoding of one value (RFC 6749 appendix B).
pub fn form_encode(value: &str) -> String {
    let mut out = String::with_capacity(value.len());
    for byte in value.bytes() {
        match byte {
            b'A'..=b'Z' | b'a'..=b'z' | b'0'..=b'9' | b'-' | b'.' | b'_' | b'*' => {
                out.push(byte as char)
            }
            b' ' => out.push('+'),
            _ => out.push_str(&format!("%{byte:02X}")),
        }
    }
    out
}

/// The form body and the `Authorization` header (if any) of a token request.
pub fn token_request(oauth: &OAuth2) -> (String, Option<String>) {
    let mut form = vec![("grant_type", "client_credentials")];
    if let Some(scope) = &oauth.scope {
        form.push(("scope", scope));
    }
    if let Some(audience) = &oauth.audience {
        form.push(("audience", audience));
    }
    let header = match oauth.client_auth {
        ClientAuth::Basic => {
            let pair = format!(
                "{}:{}",
                form_encode(&oauth.client_id),
                form_encode(oauth.client_secret.expose())
            );
            Some(format!(
                "Basic {}",
                base64::engine::general_purpose::STANDARD.encode(pair)
            ))
        }
        ClientAuth::Post => {
            form.push(("client_id", &oauth.client_id));
            form.push(("client_secret", oauth.client_secret.expose()));
            None
        }
    };
    let body = form
        .iter()
        .map(|(k, v)| format!("{k}={}", form_encode(v)))
        .collect::<Vec<_>>()
        .join("&");
    (body, header)
}

/// POSTs the token request with `agent` (the subscription's route: its egress guard,
/// TLS settings and proxy) and reads the token. Errors name the endpoint and what went
/// wrong, never a secret.
pub fn fetch(agent: &ureq::Agent, oauth: &OAuth2, timeout: Duration) -> Result<Fetched, String> {
    let shown = url_for_log(&oauth.token_url);
    let (body, authorization) = token_request(oauth);
    let mut request = agent
        .post(&oauth.token_url)
        .config()
        .timeout_global(Some(timeout))
        .build()
        .header("Content-Type", "application/x-www-form-urlencoded")
        .header("Accept", "application/json");
    if let Some(value) = authorization {
        request = request.header("Authorization", value);
    }
    let mut response = request.send(body.as_bytes()).map_err(|err| {
        format!(
            "fetching the OAuth2 token from {shown} failed: {}",
            super::describe(&err)
        )
    })?;
    let status = response.status().as_u16();
    let mut bytes = Vec::new();
    response
        .body_mut()
        .as_reader()
        .take(MAX_TOKEN_RESPONSE_BYTES + 1)
        .read_to_end(&mut bytes)
        .map_err(|err| format!("reading the OAuth2 token response from {shown} failed: {err}"))?;
    let scrub = |text: &str| scrub(text, oauth.client_secret.expose());
    if bytes.len() as u64 > MAX_TOKEN_RESPONSE_BYTES {
        return Err(format!(
            "the OAuth2 token response from {shown} is over 64 KiB; not read"
        ));
    }
    let json: Option<serde_json::Value> = serde_json::from_slice(&bytes).ok();
    if !(200..300).contains(&status) {
        let reason = json
            .as_ref()
            .and_then(|j| j.get("error").and_then(|e| e.as_str()))
            .map(|error| {
                let description = json
                    .as_ref()
                    .and_then(|j| j.get("error_description").and_then(|d| d.as_str()))
                    .map(|d| format!(": {d}"))
                    .unwrap_or_default();
                format!(" ({})", scrub(&format!("{error}{description}")))
            })
            .unwrap_or_default();
        return Err(format!(
            "the OAuth2 token endpoint {shown} answered {status}{reason}"
        ));
    }
    let Some(json) = json else {
        return Err(format!(
            "the OAuth2 token endpoint {shown} answered {status} without a JSON body"
        ));
    };
    let token = json
        .get("access_token")
        .and_then(|t| t.as_str())
        .filter(|t| !t.is_empty() && !t.chars().any(|c| c.is_control()))
        .ok_or_else(|| {
            format!(
                "the OAuth2 token endpoint {shown} answered {status} without a usable access_token"
            )
        })?;
    if let Some(kind) = json.get("token_type").and_then(|t| t.as_str()) {
        if !kind.eq_ignore_ascii_case("bearer") {
            return Err(format!(
                "the OAuth2 token endpoint {shown} gave a {:?} token; posthorn sends bearer tokens only",
                scrub(kind)
            ));
        }
    }
    let lifetime = match json.get("expires_in") {
        Some(serde_json::Value::Number(n)) => n.as_u64(),
        Some(serde_json::Value::String(s)) => s.trim().parse().ok(),
        _ => None,
    }
    .map(Duration::from_secs);
    Ok(Fetched {
        token: Secret::new(token),
        lifetime,
    })
}

/// Server text for an error message: one line, bounded, with the secret cut out.
fn scrub(text: &str, secret: &str) -> String {
    let mut text: String = text
        .chars()
        .map(|c| if c.is_control() { ' ' } else { c })
        .take(200)
        .collect();
    if !secret.is_empty() {
        text = text.replace(secret, "[redacted]");
    }
    text
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::sync::atomic::{AtomicUsize, Ordering};

    fn oauth(client_auth: ClientAuth) -> OAuth2 {
        OAuth2 {
            token_url: "https://auth.example.org/token".into(),
            client_id: "posthorn client".into(),
            client_secret: Secret::new("s3cr&t:+"),
            scope: Some("hooks:write read".into()),
            audience: None,
            client_auth,
            fingerprint: [7; 32],
        }
    }

    #[test]
    fn the_token_request_is_form_encoded_with_basic_client_auth() {
        let (body, header) = token_request(&oauth(ClientAuth::Basic));
        assert_eq!(
            body,
            "grant_type=client_credentials&scope=hooks%3Awrite+read"
        );
        // RFC 6749 2.3.1: id and secret are form-encoded, then joined and base64'd.
        let expected =
            base64::engine::general_purpose::STANDARD.encode("posthorn+client:s3cr%26t%3A%2B");
        assert_eq!(header, Some(format!("Basic {expected}")));
        let (body, header) = token_request(&oauth(ClientAuth::Post));
        assert_eq!(header, None);
        assert!(body.ends_with("&client_id=posthorn+client&client_secret=s3cr%26t%3A%2B"));
    }

    #[test]
    fn workers_share_one_fetch_and_its_error() {
        let tokens = Arc::new(Tokens::default());
        let settings = Arc::new(oauth(ClientAuth::Basic));
        let fetches = Arc::new(AtomicUsize::new(0));
        let deadline = Instant::now() + Duration::from_secs(10);
        let workers: Vec<_> = (0..8)
            .map(|_| {
                let (tokens, settings, fetches) = (
                    Arc::clone(&tokens),
                    Arc::clone(&settings),
                    Arc::clone(&fetches),
                );
                std::thread::spawn(move || {
                    tokens.token("s", &settings, deadline, |_| {
                        fetches.fetch_add(1, Ordering::SeqCst);
                        std::thread::sleep(Duration::from_millis(200));
                        Ok(Fetched {
                            token: Secret::new("t1"),
                            lifetime: Some(Duration::from_secs(3600)),
                        })
                    })
                })
            })
            .collect();
        for worker in workers {
            assert_eq!(worker.join().unwrap().unwrap().expose(), "t1");
        }
        assert_eq!(fetches.load(Ordering::SeqCst), 1);

        // A 401 drops the token; the next ask fetches, and a failure is reported.
        tokens.invalidate("s", &settings, &Secret::new("t1"));
        let err = tokens
            .token("s", &settings, deadline, |_| Err("endpoint down".into()))
            .unwrap_err();
        assert_eq!(err, "endpoint down");
    }

    #[test]
    fn an_expired_token_is_fetched_again() {
        let tokens = Tokens::default();
        let settings = oauth(ClientAuth::Basic);
        let deadline = Instant::now() + Duration::from_secs(10);
        let zero = |name: &'static str| {
            move |_| {
                Ok(Fetched {
                    token: Secret::new(name),
                    lifetime: Some(Duration::ZERO),
                })
            }
        };
        assert_eq!(
            tokens
                .token("s", &settings, deadline, zero("a"))
                .unwrap()
                .expose(),
            "a"
        );
        assert_eq!(
            tokens
                .token("s", &settings, deadline, zero("b"))
                .unwrap()
                .expose(),
            "b"
        );
    }

    #[test]
    fn server_text_loses_the_secret() {
        assert_eq!(
            scrub("bad secret s3cr&t:+\nfor you", "s3cr&t:+"),
            "bad secret [redacted] for you"
        );
    }
}
