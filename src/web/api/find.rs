//! The routes that find things: one event with every delivery it produced, a search for
//! an id of any kind, and the preview of what a subscription (configured, or a draft
//! pasted into the admin page) would have matched over the last day.

use actix_web::http::StatusCode;
use actix_web::{web, HttpRequest, HttpResponse};
use serde::{Deserialize, Serialize};
use serde_json::json;

use super::params::{bad_request, Params};
use super::read::configured;
use super::read_store;
use crate::config::draft::parse_draft;
use crate::store::{now_ms, DeliveryFilter, DeliveryRow, EventView, Page, MAX_PAGE};
use crate::web::auth::Operator;
use crate::web::{content_type, read_body, unsupported_type, ApiError, AppState};

/// Longest search term: no id posthorn keeps is longer (`event.rs`).
const MAX_TERM_CHARS: usize = 256;
/// Largest draft body: a few subscription blocks fit many times over.
const MAX_DRAFT_BODY: usize = 64 * 1024;

#[derive(Serialize)]
struct EventBody {
    event: EventView,
    /// The stored body with a member per line, every value as stored
    /// (`crate::indent`); `None` once retention dropped it.
    body_indented: Option<String>,
    /// Its deliveries, newest first; `next_cursor` continues in
    /// `GET /deliveries?event_id=`.
    deliveries: Page<DeliveryRow>,
}

pub(super) async fn event(
    state: web::Data<AppState>,
    id: web::Path<String>,
    _operator: Operator,
) -> Result<HttpResponse, ApiError> {
    let id = id.into_inner();
    let wanted = id.clone();
    let found = read_store(&state, move |r| {
        let Some(event) = r.event(&wanted)? else {
            return Ok(None);
        };
        let deliveries = r.deliveries(&DeliveryFilter {
            event_id: Some(event.id.clone()),
            limit: MAX_PAGE,
            ..Default::default()
        })?;
        Ok(Some((event, deliveries)))
    })
    .await?;
    let (event, deliveries) = found.ok_or_else(|| {
        ApiError::new(
            StatusCode::NOT_FOUND,
            format!("there is no event {id:?} (retention may have removed it)"),
        )
    })?;
    Ok(HttpResponse::Ok().json(EventBody {
        body_indented: event.body.as_deref().map(crate::indent::indent),
        event,
        deliveries,
    }))
}

pub(super) async fn search(
    state: web::Data<AppState>,
    request: HttpRequest,
    _operator: Operator,
) -> Result<HttpResponse, ApiError> {
    let params = Params::parse(request.query_string(), &["q"])?;
    let term = params
        .text("q")
        .map(str::trim)
        .filter(|t| !t.is_empty())
        .ok_or_else(|| {
            bad_request("q is required: an event id, a delivery id or a conversation id")
                .detail("parameter", "q")
        })?
        .to_string();
    if term.chars().count() > MAX_TERM_CHARS {
        return Err(bad_request(format!(
            "q is longer than {MAX_TERM_CHARS} characters; no id is"
        ))
        .detail("parameter", "q"));
    }
    let wanted = term.clone();
    let matches = read_store(&state, move |r| r.find(&wanted)).await?;
    Ok(HttpResponse::Ok().json(json!({ "query": term, "matches": matches })))
}

/// `GET /subscriptions/{name}/preview`: a configured subscription's last day.
pub(super) async fn subscription_preview(
    state: web::Data<AppState>,
    name: web::Path<String>,
    _operator: Operator,
) -> Result<HttpResponse, ApiError> {
    let subscription = configured(&state, &name)?;
    let subscriptions = vec![(*subscription).clone()];
    let preview = read_store(&state, move |r| {
        crate::preview::preview(r, &subscriptions, now_ms())
    })
    .await?;
    Ok(HttpResponse::Ok().json(preview))
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct Draft {
    toml: String,
}

/// `POST /preview`: the last day of each `[[subscription]]` in a pasted draft. The draft
/// is checked like a config file; it is never stored, and its secrets are not read.
pub(super) async fn draft_preview(
    state: web::Data<AppState>,
    request: HttpRequest,
    payload: web::Payload,
    _operator: Operator,
) -> Result<HttpResponse, ApiError> {
    let mime = content_type(&request);
    if mime != "application/json" {
        return Err(unsupported_type(&mime, "application/json"));
    }
    let body = read_body(&request, payload, MAX_DRAFT_BODY, "the limit for a draft").await?;
    let draft: Draft = serde_json::from_slice(&body).map_err(|err| {
        bad_request(format!(
            "the body must be {{\"toml\": \"[[subscription]] ...\"}}: {err}"
        ))
    })?;
    let subscriptions = parse_draft(&draft.toml).map_err(|problems| {
        let listed: Vec<serde_json::Value> = problems
            .iter()
            .map(|p| json!({ "line": p.line, "column": p.column, "message": p.message }))
            .collect();
        let first = problems
            .first()
            .map(|p| match (p.line, p.column) {
                (Some(line), Some(column)) => format!("draft:{line}:{column}: {}", p.message),
                _ => format!("draft: {}", p.message),
            })
            .unwrap_or_default();
        let more = match problems.len() {
            0 | 1 => String::new(),
            n => format!(" (and {} more)", n - 1),
        };
        ApiError::new(
            StatusCode::BAD_REQUEST,
            format!("the draft is not a valid subscription: {first}{more}"),
        )
        .detail("problems", listed)
    })?;
    let preview = read_store(&state, move |r| {
        crate::preview::preview(r, &subscriptions, now_ms())
    })
    .await?;
    Ok(HttpResponse::Ok().json(preview))
}
