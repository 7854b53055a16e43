//! Who may use the admin page and the operator API: password login into a session
//! (an `HttpOnly`, `SameSite=Strict` cookie, with a CSRF token every POST must echo in
//! `X-CSRF-Token`), or a bearer API token for scripts. Handlers take an [`Operator`]
//! argument; its extractor refuses anyone else (401, or 403 for a missing CSRF token).
//!
//! Sessions live in memory: a restart logs operators out, which is the safe direction.
//! Only a SHA-256 of each session id is kept, so the table holds nothing a memory dump
//! could replay.

use std::collections::HashMap;
use std::future::{ready, Ready};
use std::net::IpAddr;
use std::sync::Mutex;
use std::time::{Duration, Instant};

use actix_web::cookie::{Cookie, SameSite};
use actix_web::http::{header, Method, StatusCode};
use actix_web::{web, FromRequest, HttpRequest, HttpResponse, ResponseError};
use rand::Rng;
use serde::Deserialize;
use serde_json::json;
use sha2::{Digest, Sha256};

use super::guard::{self, Guard};
use super::{ApiError, AppState};
use crate::config::{AdminConfig, Secret};
use crate::inlet::constant_time_eq;

pub const SESSION_COOKIE: &str = "posthorn_session";
pub const CSRF_HEADER: &str = "x-csrf-token";
/// Longest password body read; argon2 work is bounded by it too.
const MAX_LOGIN_BODY: usize = 4096;

/// Credentials and live sessions.
pub struct Auth {
    password_hash: String,
    api_token: Option<Secret>,
    session_ttl: Duration,
    secure_cookie: bool,
    sessions: Mutex<HashMap<[u8; 32], Session>>,
}

struct Session {
    csrf_token: String,
    expires: Instant,
    expires_at_ms: i64,
}

/// Someone allowed in: how (`session` or `token`) and from where (the client address).
#[derive(Debug, Clone)]
pub struct Operator {
    pub via: &'static str,
    pub origin: String,
}

impl Auth {
    /// `password_hash` is `[admin] password_hash`, or the one kept in the store.
    pub fn new(config: &AdminConfig, password_hash: String) -> Auth {
        Auth {
            password_hash,
            api_token: config.api_token.clone(),
            session_ttl: config.session_ttl,
            secure_cookie: config.secure_cookie,
            sessions: Mutex::new(HashMap::new()),
        }
    }

    /// The operator behind `request`, if any. With a session cookie, a request that
    /// changes something must carry the session's CSRF token.
    fn operator(&self, request: &HttpRequest, guard: &Guard) -> Result<Operator, ApiError> {
        let origin = client_address(request);
        if let Some(presented) = bearer(request) {
            let address = guard::client_ip(request).unwrap_or(UNKNOWN_ADDRESS);
            if let Err(wait) = guard.limits.tokens.check(address) {
                guard.refusals.count("api", "throttled");
                return Err(too_many("wrong API tokens", address, wait));
            }
            return match &self.api_token {
                Some(token)
                    if constant_time_eq(presented.as_bytes(), token.expose().as_bytes()) =>
                {
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
            };
        }
        let Some(cookie) = request.cookie(SESSION_COOKIE) else {
            return Err(unauthorized(
                "log in first (or send Authorization: Bearer <[admin] api_token>)",
            ));
        };
        let key = session_key(cookie.value());
        let mut sessions = self.sessions.lock().unwrap_or_else(|e| e.into_inner());
        let Some(session) = sessions.get(&key) else {
            return Err(unauthorized("the session has ended; log in again"));
        };
        if session.expires <= Instant::now() {
            sessions.remove(&key);
            return Err(unauthorized("the session has expired; log in again"));
        }
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
            origin,
        })
    }

    fn session_body(&self, request: &HttpRequest) -> Option<serde_json::Value> {
        let cookie = request.cookie(SESSION_COOKIE)?;
        let sessions = self.sessions.lock().unwrap_or_else(|e| e.into_inner());
        let session = sessions.get(&session_key(cookie.value()))?;
        Some(json!({
            "csrf_token": session.csrf_token,
            "expires_at": session.expires_at_ms,
            "via": "session",
        }))
    }

    fn start_session(&self) -> (String, serde_json::Value) {
        let id = random_token();
        let csrf_token = random_token();
        let expires_at_ms = crate::store::now_ms() + self.session_ttl.as_millis() as i64;
        let body = json!({ "csrf_token": csrf_token, "expires_at": expires_at_ms });
        let mut sessions = self.sessions.lock().unwrap_or_else(|e| e.into_inner());
        let now = Instant::now();
        sessions.retain(|_, s| s.expires > now);
        sessions.insert(
            session_key(&id),
            Session {
                csrf_token,
                expires: now + self.session_ttl,
                expires_at_ms,
            },
        );
        (id, body)
    }

    fn end_session(&self, request: &HttpRequest) {
        if let Some(cookie) = request.cookie(SESSION_COOKIE) {
            let mut sessions = self.sessions.lock().unwrap_or_else(|e| e.into_inner());
            sessions.remove(&session_key(cookie.value()));
        }
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

impl FromRequest for Operator {
    type Error = ApiError;
    type Future = Ready<Result<Operator, ApiError>>;

    fn from_request(request: &HttpRequest, _: &mut actix_web::dev::Payload) -> Self::Future {
        let result = match request.app_data::<web::Data<AppState>>() {
            Some(state) => state.auth.operator(request, &state.guard),
            None => Err(ApiError::internal()),
        };
        ready(result)
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
    if let Err(wait) = limits.logins.check(address) {
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
    // Counted as a failure before it is verified, so attempts sent at once cannot all
    // pass the check before any of them failed; taken back if the password is right.
    if let Err(wait) = limits.logins.attempt(address) {
        state.guard.refusals.count("login", "throttled");
        return Err(too_many("wrong passwords", address, wait));
    }
    let Some(slot) = limits.verification_slot() else {
        limits.logins.forgive(address);
        state.guard.refusals.count("login", "busy");
        return Err(ApiError::new(
            StatusCode::SERVICE_UNAVAILABLE,
            "other logins are being checked; try again in a second",
        )
        .header(header::RETRY_AFTER, "1"));
    };
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
    limits.logins.forgive(address);
    let (id, body) = state.auth.start_session();
    tracing::info!(origin = %operator.origin, "admin login");
    audit(&state, &operator, "login", "a session started", "applied").await;
    Ok(HttpResponse::Ok()
        .cookie(state.auth.cookie(id, state.auth.session_ttl))
        .json(body))
}

async fn logout(
    state: web::Data<AppState>,
    request: HttpRequest,
    _operator: Operator,
) -> HttpResponse {
    state.auth.end_session(&request);
    HttpResponse::NoContent()
        .cookie(state.auth.cookie(String::new(), Duration::ZERO))
        .finish()
}

async fn session(
    state: web::Data<AppState>,
    request: HttpRequest,
    operator: Operator,
) -> HttpResponse {
    match operator.via {
        "session" => match state.auth.session_body(&request) {
            Some(body) => HttpResponse::Ok().json(body),
            None => unauthorized("the session has ended; log in again").error_response(),
        },
        via => HttpResponse::Ok().json(json!({ "via": via })),
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
