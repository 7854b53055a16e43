//! The HTTP server: the only module that speaks HTTP-server. It runs on actix-web on its
//! own thread with a small tokio runtime, beside the blocking delivery pool. Handlers are
//! thin: read the request, call a domain function (`crate::inlet`), map the result to a
//! status and a JSON body. [`build_app`] is apart from the server so tests can mount the
//! real app; [`run`] serves on a listener bound by the caller and stops on a signal.

pub mod api;
pub mod auth;
pub mod guard;
mod inlet;
pub mod limits;
mod ops;
mod pages;
pub mod refusals;
mod sources;

use std::future::Future;
use std::net::TcpListener;
use std::sync::Arc;
use std::time::Duration;

use actix_web::body::MessageBody;
use actix_web::dev::{ServiceFactory, ServiceRequest, ServiceResponse};
use actix_web::http::{header, StatusCode};
use actix_web::{web, App, HttpResponse, HttpServer, ResponseError};
use serde_json::json;

use crate::config::InletConfig;
use crate::reload::Live;
use crate::store::{ReaderPool, StoreHandle};

/// Async workers serving HTTP. Storing blocks on the single writer off these threads
/// (`web::block`), so two are plenty: requests wait on commits, not on CPU.
const WORKERS: usize = 2;
/// How long a stop waits for requests in flight (each waits for one commit at most).
const SHUTDOWN_GRACE: Duration = Duration::from_secs(5);
/// What a 503 from a full store asks the client to wait.
const RETRY_AFTER_SECS: u64 = 30;
/// How long a closing connection may take to go.
const CLIENT_DISCONNECT: Duration = Duration::from_secs(1);
/// How often refusal summaries are looked for.
const SUMMARY_EVERY: Duration = Duration::from_secs(5);

/// Everything the handlers need. Cheap to clone.
#[derive(Clone)]
pub struct AppState {
    pub store: StoreHandle,
    /// Subscriptions in force, for routing.
    pub live: Live,
    /// Token, body limit and sources, as read at start.
    pub inlet: Arc<InletConfig>,
    /// Read connections for the admin page and the API.
    pub reader: ReaderPool,
    /// Login, sessions and the API token.
    pub auth: Arc<auth::Auth>,
    /// Host check, client address, limits and refusal counts (`[http]`).
    pub guard: Arc<guard::Guard>,
    /// This node's id and the list of nodes sharing the store (`/api/v1/nodes`).
    pub roster: Arc<crate::nodes::Roster>,
}

/// Mounts every route on an actix service config; for [`build_app`] and tests.
pub fn configure(state: AppState) -> impl Fn(&mut web::ServiceConfig) + Clone + Send + 'static {
    move |cfg: &mut web::ServiceConfig| {
        cfg.app_data(web::Data::new(state.clone()))
            .route("/v1/events", web::post().to(inlet::post_events))
            .route("/v1/sources/{name}", web::post().to(sources::post_source))
            .configure(auth::configure)
            .configure(api::configure)
            .configure(ops::configure)
            .configure(pages::configure)
            .default_service(web::to(not_found));
    }
}

/// The application with every route.
pub fn build_app(
    state: AppState,
) -> App<
    impl ServiceFactory<
        ServiceRequest,
        Config = (),
        Response = ServiceResponse<impl MessageBody>,
        Error = actix_web::Error,
        InitError = (),
    >,
> {
    App::new()
        .wrap(actix_web::middleware::from_fn(guard::check_host))
        .wrap(security_headers())
        .configure(configure(state))
}

/// Sent with every response unless a handler set its own: the admin page loads only its
/// own files (no inline script, no other origin), cannot be framed, and nothing an API
/// answers is cached.
fn security_headers() -> actix_web::middleware::DefaultHeaders {
    actix_web::middleware::DefaultHeaders::new()
        .add((
            header::CONTENT_SECURITY_POLICY,
            "default-src 'none'; script-src 'self'; style-src 'self'; img-src 'self' data:; \
             connect-src 'self'; base-uri 'none'; form-action 'self'; frame-ancestors 'none'",
        ))
        .add((header::X_CONTENT_TYPE_OPTIONS, "nosniff"))
        .add((header::X_FRAME_OPTIONS, "DENY"))
        .add((header::REFERRER_POLICY, "no-referrer"))
        .add((header::CACHE_CONTROL, "no-store"))
        .add(("Cross-Origin-Opener-Policy", "same-origin"))
        .add(("Cross-Origin-Resource-Policy", "same-origin"))
}

/// Serves `state` on `listener` until `shutdown` resolves, then stops taking
/// connections and lets requests in flight finish (bounded).
pub async fn run(
    listener: TcpListener,
    state: AppState,
    shutdown: impl Future<Output = ()>,
) -> std::io::Result<()> {
    let connections = state.guard.max_connections;
    let summaries = actix_web::rt::spawn(keep_summaries(state.clone()));
    let request_timeout = state.guard.request_timeout;
    let server = HttpServer::new(move || build_app(state.clone()))
        .workers(WORKERS)
        // Past the cap a worker stops accepting: new connections wait in the kernel's
        // queue instead of taking descriptors the store and the spool need.
        .max_connections(connections.div_ceil(WORKERS).max(1))
        .client_request_timeout(request_timeout)
        .client_disconnect_timeout(CLIENT_DISCONNECT)
        .disable_signals()
        .shutdown_timeout(SHUTDOWN_GRACE.as_secs())
        .listen(listener)?
        .run();
    let handle = server.handle();
    let stopper = async move {
        shutdown.await;
        handle.stop(true).await;
    };
    // The server future ends once the stopper has stopped it.
    let (served, ()) = tokio::join!(server, stopper);
    summaries.abort();
    served
}

/// Every few seconds, keeps the summaries of refusal minutes that are over (see
/// [`refusals`]): a rejections row for a source, an audit row for logins, a log line for
/// the rest.
async fn keep_summaries(state: AppState) {
    let mut tick = tokio::time::interval(SUMMARY_EVERY);
    loop {
        tick.tick().await;
        for summary in state.guard.refusals.closed(std::time::Instant::now()) {
            let description = summary.describe();
            tracing::warn!(route = %summary.route, "{description}");
            let store = state.store.clone();
            if summary.route.starts_with("source:") {
                let route = summary.route.clone();
                let _ = web::block(move || {
                    crate::inlet::record_refusal(&store, &route, description, b"")
                })
                .await;
            } else if summary.route == "login" {
                let operator = auth::Operator {
                    via: "password",
                    origin: "various".into(),
                };
                auth::audit(&state, &operator, "login", &description, "refused").await;
            }
        }
    }
}

/// The running server, on its own thread.
pub struct Running {
    stop: Option<tokio::sync::oneshot::Sender<()>>,
    thread: Option<std::thread::JoinHandle<()>>,
}

impl Running {
    /// Stops taking requests, waits for those in flight, and joins the thread.
    pub fn stop(mut self) {
        if let Some(stop) = self.stop.take() {
            let _ = stop.send(());
        }
        if let Some(thread) = self.thread.take() {
            let _ = thread.join();
        }
    }
}

/// Starts [`run`] on a thread named `http` with its own actix system.
pub fn spawn(listener: TcpListener, state: AppState) -> std::io::Result<Running> {
    let (stop, stopped) = tokio::sync::oneshot::channel::<()>();
    let thread = std::thread::Builder::new()
        .name("http".into())
        .spawn(move || {
            let shutdown = async move {
                let _ = stopped.await;
            };
            if let Err(err) = actix_web::rt::System::new().block_on(run(listener, state, shutdown))
            {
                tracing::error!("the HTTP server stopped: {err}");
            }
        })?;
    Ok(Running {
        stop: Some(stop),
        thread: Some(thread),
    })
}

/// A request error: a status and a JSON body `{"error": message, ...details}`. Never
/// carries internals; those are logged where they happen.
#[derive(Debug)]
pub struct ApiError {
    status: StatusCode,
    message: String,
    details: serde_json::Map<String, serde_json::Value>,
    headers: Vec<(header::HeaderName, String)>,
}

impl ApiError {
    pub fn new(status: StatusCode, message: impl Into<String>) -> ApiError {
        ApiError {
            status,
            message: message.into(),
            details: serde_json::Map::new(),
            headers: Vec::new(),
        }
    }

    pub fn detail(mut self, key: &str, value: impl serde::Serialize) -> ApiError {
        self.details.insert(
            key.to_string(),
            serde_json::to_value(value).unwrap_or_default(),
        );
        self
    }

    pub fn header(mut self, name: header::HeaderName, value: impl Into<String>) -> ApiError {
        self.headers.push((name, value.into()));
        self
    }

    pub fn internal() -> ApiError {
        ApiError::new(
            StatusCode::INTERNAL_SERVER_ERROR,
            "internal error; the posthorn log has the details",
        )
    }

    /// The store cannot write now (see `/healthz`); the same request may be retried.
    pub fn store_unavailable() -> ApiError {
        ApiError::new(
            StatusCode::SERVICE_UNAVAILABLE,
            "the store cannot write now (see /healthz); nothing was stored, try again later",
        )
        .header(header::RETRY_AFTER, RETRY_AFTER_SECS.to_string())
    }

    pub fn store_full() -> ApiError {
        ApiError::new(
            StatusCode::SERVICE_UNAVAILABLE,
            "the store is full ([storage] max_size); nothing was stored, try again later",
        )
        .header(header::RETRY_AFTER, RETRY_AFTER_SECS.to_string())
    }
}

impl std::fmt::Display for ApiError {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "{}: {}", self.status, self.message)
    }
}

impl ResponseError for ApiError {
    fn status_code(&self) -> StatusCode {
        self.status
    }

    fn error_response(&self) -> HttpResponse {
        let mut body = serde_json::Map::new();
        body.insert("error".into(), json!(self.message));
        body.extend(self.details.clone());
        let mut response = HttpResponse::build(self.status);
        for (name, value) in &self.headers {
            response.insert_header((name.clone(), value.clone()));
        }
        response.json(body)
    }
}

/// Reads a body, refusing it with 413 as soon as it passes `limit` (by its
/// Content-Length, or while it streams in); `setting` names where the limit is set.
pub(crate) async fn read_body(
    request: &actix_web::HttpRequest,
    payload: web::Payload,
    limit: usize,
    setting: &str,
) -> Result<web::Bytes, ApiError> {
    let too_large = || {
        ApiError::new(
            StatusCode::PAYLOAD_TOO_LARGE,
            format!("the body is over {limit} bytes ({setting})"),
        )
        .detail("limit", limit)
    };
    let declared = request
        .headers()
        .get(header::CONTENT_LENGTH)
        .and_then(|v| v.to_str().ok())
        .and_then(|v| v.parse::<u64>().ok());
    if declared.is_some_and(|len| len > limit as u64) {
        return Err(too_large());
    }
    let deadline = request
        .app_data::<web::Data<AppState>>()
        .map_or(limits::DEFAULT_BODY_TIMEOUT, |state| {
            state.guard.limits.body_timeout
        });
    let read = tokio::time::timeout(deadline, payload.to_bytes_limited(limit));
    match read.await {
        Ok(Ok(Ok(bytes))) => Ok(bytes),
        Ok(Ok(Err(err))) => Err(ApiError::new(
            StatusCode::BAD_REQUEST,
            format!("could not read the body: {err}"),
        )),
        Ok(Err(_)) => Err(too_large()),
        Err(_) => Err(ApiError::new(
            StatusCode::REQUEST_TIMEOUT,
            format!(
                "the body did not arrive within {} s ([http] body_timeout)",
                deadline.as_secs_f64()
            ),
        )
        .header(header::CONNECTION, "close")),
    }
}

/// The content type's essence, lower-cased (`application/json; charset=utf-8` gives
/// `application/json`).
pub(crate) fn content_type(request: &actix_web::HttpRequest) -> String {
    request
        .headers()
        .get(header::CONTENT_TYPE)
        .and_then(|v| v.to_str().ok())
        .map(|v| {
            v.split(';')
                .next()
                .unwrap_or("")
                .trim()
                .to_ascii_lowercase()
        })
        .unwrap_or_default()
}

pub(crate) fn unsupported_type(found: &str, expected: &str) -> ApiError {
    let found = if found.is_empty() { "none" } else { found };
    ApiError::new(
        StatusCode::UNSUPPORTED_MEDIA_TYPE,
        format!("content type {found:?} is not taken here; send {expected}"),
    )
}

async fn not_found() -> HttpResponse {
    ApiError::new(StatusCode::NOT_FOUND, "no such route").error_response()
}
