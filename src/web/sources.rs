//! `POST /v1/sources/{name}`: a platform's own webhooks (ECHO, or a generic mapping).
//! Reads the body within the limit, hands it with the headers to
//! `inlet::sources::take` (verification and mapping), and stores the one event. A
//! refused request (bad signature or unusable body) is kept in `rejections` with its
//! reason: a secret that differs between the platform and posthorn shows up there. Only
//! the first of each minute is kept whole; the rest of that minute is one summary row
//! with its count (`web::refusals`), so a flood cannot fill the store.

use std::time::Instant;

use actix_web::http::StatusCode;
use actix_web::{web, HttpRequest, HttpResponse};
use time::OffsetDateTime;

use super::{content_type, read_body, unsupported_type, ApiError, AppState};
use crate::inlet::sources::{self, SourceError};
use crate::inlet::{self, StoreError};

pub(super) async fn post_source(
    state: web::Data<AppState>,
    name: web::Path<String>,
    request: HttpRequest,
    payload: web::Payload,
) -> Result<HttpResponse, ApiError> {
    let name = name.into_inner();
    let Some(limit) = state
        .inlet
        .sources
        .iter()
        .find(|s| s.name == name)
        .map(|s| s.max_body_bytes)
    else {
        return Err(ApiError::new(
            StatusCode::NOT_FOUND,
            format!("no inlet source named {name:?}; add an [[inlet.source]] block"),
        ));
    };
    let mime = content_type(&request);
    if mime != "application/json" {
        return Err(unsupported_type(&mime, "application/json"));
    }
    let setting = format!("max_body_bytes of the [[inlet.source]] named {name:?}");
    let body = read_body(&request, payload, limit, &setting).await?;
    let headers = request.headers().clone();
    let peer = request.peer_addr();

    let state = state.into_inner();
    let now = Instant::now();
    let outcome = web::block(move || {
        let Some(source) = state.inlet.sources.iter().find(|s| s.name == name) else {
            return Err(Err(SourceError::Invalid("unknown source".into())));
        };
        let header = |n: &str| {
            headers
                .get(n)
                .and_then(|v| v.to_str().ok())
                .map(str::to_string)
        };
        let event = sources::take(source, &header, &body, limit, OffsetDateTime::now_utc())
            .map_err(|err| {
                // Anyone can send these, as fast as they like: only the first of each
                // minute per source and kind is kept, the rest is summed (web::refusals).
                let route = format!("source:{name}");
                let (kind, reason) = match &err {
                    SourceError::Unverified(why) => {
                        ("unverified", format!("signature verification failed: {why}"))
                    }
                    SourceError::Invalid(why) => ("invalid", format!("not a usable event: {why}")),
                };
                if state.guard.refusals.note(&route, kind, now) {
                    // The reason names headers and pointers, never the secret.
                    tracing::warn!(source = %name, ?peer, reason = %err, "inlet source request refused (further ones this minute are counted and summed up)");
                    inlet::record_refusal(&state.store, &route, reason, &body);
                }
                Err(err)
            })?;
        inlet::store_batch(&state.store, &state.live, &format!("source:{name}"), vec![event])
            .map_err(Ok)
    })
    .await
    .map_err(|err| {
        tracing::error!("inlet source request could not run: {err}");
        ApiError::internal()
    })?;
    match outcome {
        Ok(accepted) => Ok(HttpResponse::Accepted().json(accepted)),
        Err(Err(SourceError::Unverified(reason))) => Err(ApiError::new(
            StatusCode::UNAUTHORIZED,
            format!("signature verification failed: {reason}"),
        )),
        Err(Err(SourceError::Invalid(reason))) => Err(ApiError::new(
            StatusCode::BAD_REQUEST,
            format!("the request is not a usable event; nothing was stored: {reason}"),
        )),
        Err(Ok(StoreError::Full(full))) => {
            tracing::warn!("inlet source request refused: {full}");
            Err(ApiError::store_full())
        }
        Err(Ok(StoreError::Unavailable(err))) => {
            tracing::error!("inlet source event not stored: {err}");
            Err(ApiError::store_unavailable())
        }
        Err(Ok(StoreError::Internal(err))) => {
            tracing::error!("inlet source event not stored: {err:#}");
            Err(ApiError::internal())
        }
    }
}
