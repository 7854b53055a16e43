//! The acting routes: send a test event, pause, resume, retry every failed delivery since
//! a time, replay an event, retry one delivery. Each one, applied or refused, is written
//! to the audit log with who asked, from where, what, and how it ended.

use actix_web::http::StatusCode;
use actix_web::{web, HttpRequest, HttpResponse};
use rand::Rng as _;
use serde::de::DeserializeOwned;
use serde::Deserialize;
use serde_json::json;
use time::OffsetDateTime;

use super::params::{self, bad_request};
use super::read::configured;
use super::{read_store, unknown_subscription, write_store};
use crate::config::Subscription;
use crate::event::{self, Event};
use crate::store::{IngestBatch, RoutedEvent};
use crate::web::auth::{self, Operator};
use crate::web::{content_type, read_body, unsupported_type, ApiError, AppState};

/// The type of the event `test` sends.
pub const TEST_EVENT_TYPE: &str = "posthorn.test";
/// The `source` a test event is stored with.
const TEST_SOURCE: &str = "admin";
/// Largest action body read; every action body is a line of JSON.
const MAX_ACTION_BODY: usize = 16 * 1024;

/// Writes the audit row for an action and passes its outcome on. `detail` names what was
/// acted on; the result is `applied`, `refused: <the error's sentence>`, or `failed` for
/// an internal error (whose details are only in the log).
pub(super) async fn audited<T>(
    state: &AppState,
    operator: &Operator,
    action: &str,
    detail: &str,
    outcome: Result<T, ApiError>,
) -> Result<T, ApiError> {
    let result = match &outcome {
        Ok(_) => "applied".to_string(),
        Err(err) if err.status.is_server_error() => format!("failed: {}", err.message),
        Err(err) => format!("refused: {}", err.message),
    };
    auth::audit(state, operator, action, detail, &result).await;
    outcome
}

pub(super) async fn test(
    state: web::Data<AppState>,
    name: web::Path<String>,
    operator: Operator,
) -> Result<HttpResponse, ApiError> {
    let name = name.into_inner();
    let event_id = test_event_id();
    let outcome = send_test(&state, &name, &event_id).await;
    let detail = format!("subscription {name}: test event {event_id}");
    let delivery_id = audited(&state, &operator, "subscription.test", &detail, outcome).await?;
    Ok(HttpResponse::Accepted().json(json!({ "event_id": event_id, "delivery_id": delivery_id })))
}

/// Stores a `posthorn.test` event routed to `name` only; returns its delivery's id.
async fn send_test(state: &AppState, name: &str, event_id: &str) -> Result<i64, ApiError> {
    // Held until the commit, like the inlet's batches: a reload that removes the
    // subscription waits for it before it cancels the subscription's deliveries.
    let settings = state.live.load();
    let subscription = settings
        .subscriptions
        .iter()
        .find(|s| s.name == name)
        .ok_or_else(|| unknown_subscription(name))?;
    if !subscription.enabled {
        return Err(conflict(format!(
            "subscription {name:?} is disabled in the config (enabled = false); a test event \
             would wait until it is enabled"
        )));
    }
    if state.store.is_paused(name) {
        return Err(conflict(format!(
            "subscription {name:?} is paused; resume it (`posthorn resume {name}`, or Resume \
             on its page) to send a test event"
        )));
    }
    let event = test_event(name, event_id).map_err(|err| {
        tracing::error!("could not build a test event: {err}");
        ApiError::internal()
    })?;
    let batch = IngestBatch {
        source: TEST_SOURCE.into(),
        events: vec![RoutedEvent {
            event,
            subscriptions: vec![name.to_string()],
        }],
        ..Default::default()
    };
    let store = state.store.clone();
    write_store(move || {
        let report = store.ingest(batch);
        drop(settings);
        report
    })
    .await?;
    let (event_id, name) = (event_id.to_string(), name.to_string());
    read_store(state, move |r| r.delivery_of(&event_id, &name))
        .await?
        .ok_or_else(|| {
            tracing::error!("a test event was stored without its delivery");
            ApiError::internal()
        })
}

/// `test_` and 16 random hex digits: unique without asking the store.
fn test_event_id() -> String {
    let bytes: [u8; 8] = rand::rng().random();
    let hex: String = bytes.iter().map(|b| format!("{b:02x}")).collect();
    format!("test_{hex}")
}

fn test_event(subscription: &str, event_id: &str) -> Result<Event, event::Invalid> {
    let envelope = json!({
        "id": event_id,
        "type": TEST_EVENT_TYPE,
        "data": {
            "message": "This is a test event sent from the posthorn admin page.",
            "subscription": subscription,
        },
    });
    event::parse_event(
        envelope.to_string().as_bytes(),
        usize::MAX,
        OffsetDateTime::now_utc(),
    )
}

pub(super) async fn pause(
    state: web::Data<AppState>,
    name: web::Path<String>,
    operator: Operator,
) -> Result<HttpResponse, ApiError> {
    set_paused(&state, &name, true, &operator).await
}

pub(super) async fn resume(
    state: web::Data<AppState>,
    name: web::Path<String>,
    operator: Operator,
) -> Result<HttpResponse, ApiError> {
    set_paused(&state, &name, false, &operator).await
}

/// Nothing is woken: the scheduler looks at the paused set at every claim, and polls.
async fn set_paused(
    state: &AppState,
    name: &str,
    paused: bool,
    operator: &Operator,
) -> Result<HttpResponse, ApiError> {
    let outcome = async {
        configured(state, name)?;
        let (store, owned) = (state.store.clone(), name.to_string());
        write_store(move || store.set_paused(owned, paused)).await
    }
    .await;
    let action = if paused {
        "subscription.pause"
    } else {
        "subscription.resume"
    };
    let detail = format!("subscription {name}");
    let changed = audited(state, operator, action, &detail, outcome).await?;
    Ok(HttpResponse::Ok().json(json!({ "name": name, "paused": paused, "changed": changed })))
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct RetryFailed {
    /// Unix ms, or an RFC 3339 string.
    since: serde_json::Value,
    /// Cancelled deliveries too (cancelled when the subscription left the config).
    #[serde(default)]
    include_cancelled: bool,
}

pub(super) async fn retry_failed(
    state: web::Data<AppState>,
    name: web::Path<String>,
    operator: Operator,
    request: HttpRequest,
    payload: web::Payload,
) -> Result<HttpResponse, ApiError> {
    let name = name.into_inner();
    let mut detail = format!("subscription {name}");
    let outcome = async {
        configured(&state, &name)?;
        let body: RetryFailed = json_body(
            &request,
            payload,
            r#"{"since": ms or RFC 3339, "include_cancelled": false}"#,
        )
        .await?;
        let since_ms = match &body.since {
            serde_json::Value::String(text) => params::parse_time("since", text)?,
            // A whole number prints as its digits; anything else is refused by name.
            other => params::parse_time("since", &other.to_string())?,
        };
        detail = format!(
            "subscription {name} since {}{}",
            params::format_time(since_ms),
            if body.include_cancelled {
                ", cancelled ones included"
            } else {
                ""
            }
        );
        let (store, owned, cancelled) = (state.store.clone(), name.clone(), body.include_cancelled);
        write_store(move || store.retry_failed(owned, since_ms, cancelled)).await
    }
    .await;
    let retried = audited(
        &state,
        &operator,
        "subscription.retry_failed",
        &detail,
        outcome,
    )
    .await?;
    Ok(HttpResponse::Ok().json(json!({ "retried": retried })))
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct Replay {
    event_id: String,
}

pub(super) async fn replay(
    state: web::Data<AppState>,
    name: web::Path<String>,
    operator: Operator,
    request: HttpRequest,
    payload: web::Payload,
) -> Result<HttpResponse, ApiError> {
    let name = name.into_inner();
    let mut detail = format!("subscription {name}");
    let outcome = async {
        let subscription = configured(&state, &name)?;
        let body: Replay = json_body(&request, payload, r#"{"event_id": "..."}"#).await?;
        let event_id = body.event_id;
        detail = format!("event {event_id} to subscription {name}");
        may_receive(&state, &subscription, &event_id).await?;
        let (store, owned) = (state.store.clone(), name.clone());
        write_store(move || store.replay(event_id, owned)).await
    }
    .await;
    let replayed = audited(&state, &operator, "subscription.replay", &detail, outcome).await?;
    Ok(HttpResponse::Ok().json(replayed))
}

/// A replay sends an event again; it never widens who gets it. The event must go to a
/// subscription that already had it, or whose scope takes it: the scope is what keeps
/// one conversation's data from another's receivers. `enabled` is left out of the
/// match: a disabled subscription's delivery waits, like a paused one's.
async fn may_receive(
    state: &AppState,
    subscription: &Subscription,
    event_id: &str,
) -> Result<(), ApiError> {
    let (wanted, name) = (event_id.to_string(), subscription.name.clone());
    let (event, had_it) = read_store(state, move |r| {
        Ok((r.event(&wanted)?, r.delivery_of(&wanted, &name)?))
    })
    .await?;
    let event = event.ok_or_else(|| {
        ApiError::new(
            StatusCode::NOT_FOUND,
            format!("there is no event {event_id:?}"),
        )
    })?;
    let body = event.body.clone().unwrap_or_default();
    // The filter narrows who gets an event as much as the scope does.
    let in_scope = crate::routing::matches(
        &Subscription {
            enabled: true,
            ..subscription.clone()
        },
        &Event {
            id: event.id.clone(),
            kind: event.event_type.clone(),
            conversation_id: event.conversation_id.clone(),
            project_id: event.project_id.clone(),
            body: String::new(),
        },
    ) && subscription.shaping.admits(&crate::shape::Doc::new(&body));
    if had_it.is_some() || in_scope {
        return Ok(());
    }
    Err(conflict(format!(
        "event {event_id:?} ({}{}) is outside the scope of subscription {:?} (its events, \
         conversations, projects and filter); a replay sends an event only to a subscription \
         that had it or whose scope takes it",
        event.event_type,
        event
            .conversation_id
            .as_deref()
            .map(|c| format!(", conversation {c}"))
            .unwrap_or_default(),
        subscription.name,
    )))
}

pub(super) async fn retry(
    state: web::Data<AppState>,
    id: web::Path<String>,
    operator: Operator,
) -> Result<HttpResponse, ApiError> {
    let detail = format!("delivery {id}");
    let outcome = async {
        let id = params::delivery_id(&id)?;
        // A delivery of a subscription no longer configured would wait forever (and be
        // cancelled again at the next start).
        if let Some(found) = read_store(&state, move |r| r.delivery(id)).await? {
            let subscription = found.delivery.subscription;
            if configured(&state, &subscription).is_err() {
                return Err(conflict(format!(
                    "delivery {id} belongs to subscription {subscription:?}, which is no \
                     longer in the config"
                )));
            }
        }
        let store = state.store.clone();
        write_store(move || store.retry_delivery(id)).await?;
        Ok(id)
    }
    .await;
    let id = audited(&state, &operator, "delivery.retry", &detail, outcome).await?;
    Ok(HttpResponse::Ok().json(json!({ "delivery_id": id, "state": "pending" })))
}

/// Reads an action's JSON body: `application/json`, at most [`MAX_ACTION_BODY`] bytes,
/// exactly the fields of `T`. `shape` is shown in the error.
pub(super) async fn json_body<T: DeserializeOwned>(
    request: &HttpRequest,
    payload: web::Payload,
    shape: &str,
) -> Result<T, ApiError> {
    let mime = content_type(request);
    if mime != "application/json" {
        return Err(unsupported_type(&mime, "application/json"));
    }
    let body = read_body(
        request,
        payload,
        MAX_ACTION_BODY,
        "the API's limit for an action",
    )
    .await
    .map_err(|err| match err.status {
        StatusCode::PAYLOAD_TOO_LARGE => ApiError::new(
            StatusCode::PAYLOAD_TOO_LARGE,
            format!("the body is over {MAX_ACTION_BODY} bytes; {shape} is all it takes"),
        ),
        _ => err,
    })?;
    serde_json::from_slice(&body)
        .map_err(|err| bad_request(format!("the body must be {shape}: {err}")))
}

fn conflict(message: String) -> ApiError {
    ApiError::new(StatusCode::CONFLICT, message)
}
