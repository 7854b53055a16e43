//! Who may use the admin page and the operator API: password login into a session
//! (an `HttpOnly`, `SameSite=Strict` cookie, with a CSRF token every POST must echo in
//! `X-CSRF-Token`), or a bearer API token for scripts. Handlers take an [`Operator`]
//! argument; its extractor refuses anyone else (401, or 403 for a missing CSRF token).
//!
//! Sessions and the wrong-password throttle live in the store (`store::sessions`), so
//! every node sharing it honours them: a login on one node works on the others, a logout
//! or an expiry ends the session on all of them at the next request (each request reads
//! its session by primary key; nothing is cached), and wrong passwords count against an
//! address whichever node they reach. Only a SHA-256 of each session id is kept, so the
//! table holds nothing a dump could replay. A session is tied to the password hash it
//! logged in with: changing `[admin] password_hash` ends every session.

use std::future::Future;
use std::net::IpAddr;
use std::pin::Pin;
use std::time::{Duration, Instant};

use actix_web::cookie::{Cookie, SameSite};
use actix_web::http::{header, Method, StatusCode};
use actix_web::{web, FromRequest, HttpRequest, HttpResponse};
use rand::Rng;
use serde::Deserialize;
use serde_json::json;
use sha2::{Digest, Sha256};

use super::guard::{self, Guard};
use super::limits;
use super::{ApiError, AppState};
use crate::config::{AdminConfig, Secret};
use crate::inlet::constant_time_eq;
use crate::store::now_ms;
use crate::store::sessions::{Failures, Sessions, StoredSession};

pub const SESSION_COOKIE: &str = "posthorn_session";
pub const CSRF_HEADER: &str = "x-csrf-token";
/// Longest password body read; argon2 work is bounded by it too.
const MAX_LOGIN_BODY: usize = 4096;

/// Credentials, and the store's sessions.
pub struct Auth {
    password_hash: String,
    /// SHA-256 of `password_hash`, kept with each session.
    password_digest: [u8; 32],
    api_token: Option<Secret>,
    session_ttl: Duration,
    secure_cookie: bool,
    sessions: Sessions,
}

/// Someone allowed in: how (`session` or `token`) and from where (the client address).
#[derive(Debug, Clone)]
pub struct Operator {
    pub via: &'static str,
    pub origin: String,
}

impl Auth {
    /// `password_hash` is `[admin] password_hash`, or the one kept in the store.
    pub fn new(config: &AdminConfig, password_hash: String, sessions: Sessions) -> Auth {
        Auth {
            password_digest: Sha256::digest(password_hash.as_bytes()).into(),
            password_hash,
            api_token: config.api_token.clone(),
            session_ttl: config.session_ttl,
            secure_cookie: config.secure_cookie,
            sessions,
        }
    }

    /// The operator behind a bearer token, if the request carries one.
    fn token_operator(
        &self,
        request: &HttpRequest,
        guard: &Guard,
    ) -> Option<Result<Operator, ApiError>> {
        let presented = bearer(request)?;
        let origin = client_address(request);
        let address = guard::client_ip(request).unwrap_or(UNKNOWN_ADDRESS);
        if let Err(wait) = guard.limits.tokens.check(address) {
            guard.refusals.count("api", "throttled");
            return Some(Err(too_many("wrong API tokens", address, wait)));
        }
        Some(match &self.api_token {
            Some(token) if constant_time_eq(presented.as_bytes(), token.expose().as_bytes()) => {
                Ok(Operator {
                    via: "token",
                    origin,
                })
            }
            _ => {
                guard.limits.tokens.fail(address);
                if guard.refusals.note("api", "wrong token", Instant::now()) {
                    tracing::warn!(%origin, "API request refused: wrong token (further ones this minute are counted, not logged)");
                }
                Err(unauthorized("the API token is wrong"))
            }
        })
    }

    /// The session a cookie names, if it is live: kept, not expired, and logged in with
    /// the password in force. Blocks (one primary-key read).
    fn live_session(&self, cookie: &str) -> Result<Option<StoredSession>, ApiError> {
        let found = self.sessions.find(&session_key(cookie)).map_err(|err| {
            tracing::error!("could not read the admin session: {err:#}");
            ApiError::internal()
        })?;
        Ok(found.filter(|s| {
            s.expires_at_ms > now_ms() && constant_time_eq(&s.password, &self.password_digest)
        }))
    }

    /// Keeps a new session; returns its id and the login's answer. Blocks.
    fn start_session(&self) -> anyhow::Result<(String, serde_json::Value)> {
        let id = random_token();
        let csrf_token = random_token();
        let now = now_ms();
        let expires_at_ms = now + self.session_ttl.as_millis() as i64;
        let body = json!({ "csrf_token": csrf_token, "expires_at": expires_at_ms });
        self.sessions.start(
            &session_key(&id),
            &StoredSession {
                csrf_token,
                password: self.password_digest.to_vec(),
                expires_at_ms,
            },
            now,
        )?;
        Ok((id, body))
    }

    fn cookie(&self, value: String, max_age: Duration) -> Cookie<'static> {
        Cookie::build(SESSION_COOKIE, value)
            .path("/")
            .http_only(true)
            .same_site(SameSite::Strict)
            .secure(self.secure_cookie)
            .max_age(actix_web::cookie::time::Duration::seconds(
                max_age.as_secs() as i64,
            ))
            .finish()
    }
}

/// The operator behind `request`, if any. With a session cookie, a request that changes
/// something must carry the session's CSRF token.
async fn operator(state: web::Data<AppState>, request: HttpRequest) -> Result<Operator, ApiError> {
    if let Some(answer) = state.auth.token_operator(&request, &state.guard) {
        return answer;
    }
    let Some(cookie) = request.cookie(SESSION_COOKIE) else {
        return Err(unauthorized(
            "log in first (or send Authorization: Bearer <[admin] api_token>)",
        ));
    };
    let session = session_of(&state, cookie.value().to_owned()).await?;
    let Some(session) = session else {
        return Err(unauthorized(
            "the session has ended or expired; log in again",
        ));
    };
    if changes_something(request.method()) {
        let sent = request
            .headers()
            .get(CSRF_HEADER)
            .map(|v| v.as_bytes())
            .unwrap_or_default();
        if !constant_time_eq(sent, session.csrf_token.as_bytes()) {
            return Err(ApiError::new(
                StatusCode::FORBIDDEN,
                "missing or wrong CSRF token (send the session's csrf_token in X-CSRF-Token)",
            ));
        }
    }
    Ok(Operator {
        via: "session",
        origin: client_address(&request),
    })
}

/// The live session `cookie` names, read off the async threads.
async fn session_of(
    state: &web::Data<AppState>,
    cookie: String,
) -> Result<Option<StoredSession>, ApiError> {
    let state = state.clone();
    web::block(move || state.auth.live_session(&cookie))
        .await
        .map_err(|_| ApiError::internal())?
}

impl FromRequest for Operator {
    type Error = ApiError;
    type Future = Pin<Box<dyn Future<Output = Result<Operator, ApiError>>>>;

    fn from_request(request: &HttpRequest, _: &mut actix_web::dev::Payload) -> Self::Future {
        let request = request.clone();
        Box::pin(async move {
            match request.app_data::<web::Data<AppState>>().cloned() {
                Some(state) => operator(state, request).await,
                None => Err(ApiError::internal()),
            }
        })
    }
}

/// Mounts `login`, `logout` and `session` under `/api/v1`.
pub fn configure(cfg: &mut web::ServiceConfig) {
    cfg.route("/api/v1/login", web::post().to(login))
        .route("/api/v1/logout", web::post().to(logout))
        .route("/api/v1/session", web::get().to(session));
}

#[derive(Deserialize)]
struct Login {
    password: String,
}

async fn login(
    state: web::Data<AppState>,
    request: HttpRequest,
    payload: web::Payload,
) -> Result<HttpResponse, ApiError> {
    let limits = &state.guard.limits;
    let address = guard::client_ip(&request).unwrap_or(UNKNOWN_ADDRESS);
    let throttle_key = limits::key(address).to_string();
    let sessions = state.auth.sessions.clone();
    let key = throttle_key.clone();
    let failures = blocking(move || {
        let now = now_ms();
        sessions.failures(&key, now - limits::WINDOW.as_millis() as i64)
    })
    .await?;
    if let Some(wait) = failures.and_then(|f| throttled(f, now_ms(), true)) {
        state.guard.refusals.count("login", "throttled");
        return Err(too_many("wrong passwords", address, wait));
    }
    if super::content_type(&request) != "application/json" {
        return Err(super::unsupported_type(
            &super::content_type(&request),
            "application/json",
        ));
    }
    let body =
        super::read_body(&request, payload, MAX_LOGIN_BODY, "the login form's limit").await?;
    let login: Login = serde_json::from_slice(&body).map_err(|err| {
        ApiError::new(
            StatusCode::BAD_REQUEST,
            format!("the body must be {{\"password\": \"...\"}}: {err}"),
        )
    })?;
    // A slot first: a login refused as busy costs the store nothing, so the throttle's
    // writes are bounded by the argon2 verifications that follow them.
    let Some(slot) = limits.verification_slot() else {
        state.guard.refusals.count("login", "busy");
        return Err(ApiError::new(
            StatusCode::SERVICE_UNAVAILABLE,
            "other logins are being checked; try again in a second",
        )
        .header(header::RETRY_AFTER, "1"));
    };
    // Counted as a failure before it is verified (in one statement, whichever node runs
    // it), so attempts sent at once cannot all pass the check before any of them failed;
    // taken back if the password is right.
    let sessions = state.auth.sessions.clone();
    let key = throttle_key.clone();
    let counted = blocking(move || {
        let now = now_ms();
        sessions.count_failure(&key, now, now - limits::WINDOW.as_millis() as i64)
    })
    .await?;
    if let Some(wait) = throttled(counted, now_ms(), false) {
        drop(slot);
        state.guard.refusals.count("login", "throttled");
        return Err(too_many("wrong passwords", address, wait));
    }
    limits.count_verification();
    let auth = state.clone();
    let matches = web::block(move || {
        let matches = crate::password::verify(&auth.auth.password_hash, &login.password);
        drop(slot);
        matches
    })
    .await
    .map_err(|_| ApiError::internal())?;
    let operator = Operator {
        via: "password",
        origin: client_address(&request),
    };
    if !matches {
        // One audit row per minute for wrong passwords, and one summing up the rest of
        // that minute: anyone can send them.
        if state
            .guard
            .refusals
            .note("login", "wrong password", Instant::now())
        {
            tracing::warn!(origin = %operator.origin, "admin login refused: wrong password");
            audit(&state, &operator, "login", "wrong password", "refused").await;
        }
        return Err(unauthorized("wrong password"));
    }
    let auth = state.clone();
    let (id, body) = blocking(move || {
        auth.auth.sessions.forgive(&throttle_key)?;
        auth.auth.start_session()
    })
    .await?;
    tracing::info!(origin = %operator.origin, "admin login");
    audit(&state, &operator, "login", "a session started", "applied").await;
    Ok(HttpResponse::Ok()
        .cookie(state.auth.cookie(id, state.auth.session_ttl))
        .json(body))
}

/// `Some(seconds to wait)` when `failures` used up the address's allowance: with
/// `before` (a check before an attempt) at the limit already, else past it (the attempt
/// itself was counted).
fn throttled(failures: Failures, now_ms: i64, before: bool) -> Option<u64> {
    let used = if before {
        failures.count >= limits::LOGIN_FAILURES as u64
    } else {
        failures.count > limits::LOGIN_FAILURES as u64
    };
    let ends = failures.window_start_ms + limits::WINDOW.as_millis() as i64;
    (used && ends > now_ms).then(|| (((ends - now_ms) as u64).div_ceil(1000)).max(1))
}

/// Runs a store call for the login on a blocking thread; a failure is logged and a 500.
async fn blocking<T: Send + 'static>(
    work: impl FnOnce() -> anyhow::Result<T> + Send + 'static,
) -> Result<T, ApiError> {
    match web::block(work).await {
        Ok(Ok(value)) => Ok(value),
        Ok(Err(err)) => {
            tracing::error!("admin login: the store failed: {err:#}");
            Err(ApiError::internal())
        }
        Err(_) => Err(ApiError::internal()),
    }
}

async fn logout(
    state: web::Data<AppState>,
    request: HttpRequest,
    _operator: Operator,
) -> Result<HttpResponse, ApiError> {
    if let Some(cookie) = request.cookie(SESSION_COOKIE) {
        let key = session_key(cookie.value());
        let sessions = state.auth.sessions.clone();
        blocking(move || sessions.end(&key)).await?;
    }
    Ok(HttpResponse::NoContent()
        .cookie(state.auth.cookie(String::new(), Duration::ZERO))
        .finish())
}

async fn session(
    state: web::Data<AppState>,
    request: HttpRequest,
    operator: Operator,
) -> Result<HttpResponse, ApiError> {
    if operator.via != "session" {
        return Ok(HttpResponse::Ok().json(json!({ "via": operator.via })));
    }
    let cookie = request
        .cookie(SESSION_COOKIE)
        .map(|c| c.value().to_owned())
        .unwrap_or_default();
    match session_of(&state, cookie).await? {
        Some(session) => Ok(HttpResponse::Ok().json(json!({
            "csrf_token": session.csrf_token,
            "expires_at": session.expires_at_ms,
            "via": "session",
        }))),
        None => Err(unauthorized("the session has ended; log in again")),
    }
}

/// Writes an audit row for an operator action (login included); a failure to write is
/// logged, never shown as the action's failure.
pub async fn audit(
    state: &AppState,
    operator: &Operator,
    action: &str,
    detail: &str,
    result: &str,
) {
    let entry = crate::store::AuditEntry {
        actor: operator.via.into(),
        action: action.into(),
        detail: detail.into(),
        result: result.into(),
        origin: Some(operator.origin.clone()),
    };
    let store = state.store.clone();
    match web::block(move || store.audit(entry)).await {
        Ok(Ok(())) => {}
        Ok(Err(err)) => tracing::error!("could not write the audit log: {err:#}"),
        Err(err) => tracing::error!("could not write the audit log: {err}"),
    }
}

fn unauthorized(message: &str) -> ApiError {
    ApiError::new(StatusCode::UNAUTHORIZED, message)
}

/// Counted against when a request has no peer address (only tests calling the app).
const UNKNOWN_ADDRESS: IpAddr = IpAddr::V4(std::net::Ipv4Addr::UNSPECIFIED);

/// 429 for an address that used up its failures.
pub(super) fn too_many(what: &str, address: IpAddr, wait: u64) -> ApiError {
    ApiError::new(
        StatusCode::TOO_MANY_REQUESTS,
        format!("too many {what} from {address}; try again in {wait} s"),
    )
    .header(header::RETRY_AFTER, wait.to_string())
}

fn changes_something(method: &Method) -> bool {
    !matches!(*method, Method::GET | Method::HEAD | Method::OPTIONS)
}

/// The token of an `Authorization: Bearer <token>` header; the scheme name in any case
/// (RFC 9110 makes it case-insensitive).
fn bearer(request: &HttpRequest) -> Option<&str> {
    let value = request
        .headers()
        .get(header::AUTHORIZATION)?
        .to_str()
        .ok()?;
    let (scheme, token) = value.trim().split_once(' ')?;
    scheme.eq_ignore_ascii_case("bearer").then(|| token.trim())
}

/// The client address, as the audit shows it: the peer, or behind a proxy listed in
/// `[http] trusted_proxies`, the client it names in `X-Forwarded-For`.
pub fn client_address(request: &HttpRequest) -> String {
    guard::client_ip(request)
        .or_else(|| request.peer_addr().map(|a| a.ip()))
        .map(|ip| ip.to_string())
        .unwrap_or_else(|| "unknown".into())
}

fn session_key(id: &str) -> [u8; 32] {
    Sha256::digest(id.as_bytes()).into()
}

/// 32 random bytes, base64url: session ids and CSRF tokens.
fn random_token() -> String {
    use base64::Engine as _;
    let bytes: [u8; 32] = rand::rng().random();
    base64::engine::general_purpose::URL_SAFE_NO_PAD.encode(bytes)
}
