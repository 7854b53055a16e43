//! `POST /v1/events`: bearer token, content type, bounded body, then
//! `inlet::parse_batch` and `inlet::store_batch`; 202 only after the durable commit. A
//! batch refused for its content is kept in `rejections`; a request without the right
//! token is counted, throttled per client address, and logged once a minute (anyone can
//! send one).

use std::time::Instant;

use actix_web::http::{header, StatusCode};
use actix_web::{web, HttpRequest, HttpResponse};
use time::OffsetDateTime;

use super::guard;
use super::{content_type, read_body, unsupported_type, ApiError, AppState};
use crate::inlet::{self, AuthError, BodyFormat, StoreError};

pub(super) async fn post_events(
    state: web::Data<AppState>,
    request: HttpRequest,
    payload: web::Payload,
) -> Result<HttpResponse, ApiError> {
    let authorization = request
        .headers()
        .get(header::AUTHORIZATION)
        .and_then(|v| v.to_str().ok());
    let guard = &state.guard;
    let address = guard::client_ip(&request);
    if let Some(address) = address {
        if let Err(wait) = guard.limits.tokens.check(address) {
            guard.refusals.count("inlet", "throttled");
            return Err(super::auth::too_many("wrong tokens", address, wait));
        }
    }
    inlet::check_token(state.inlet.token.as_ref(), authorization).map_err(|err| match err {
        AuthError::NotConfigured => ApiError::new(StatusCode::SERVICE_UNAVAILABLE, err.to_string()),
        AuthError::Missing | AuthError::Wrong => {
            if let (AuthError::Wrong, Some(address)) = (err, address) {
                guard.limits.tokens.fail(address);
            }
            let reason = if err == AuthError::Wrong { "wrong token" } else { "missing token" };
            // Anyone can send these: the first of each minute is logged, the rest summed.
            if guard.refusals.note("inlet", reason, Instant::now()) {
                tracing::warn!(?address, reason = %err, "inlet request refused (further ones this minute are counted, not logged)");
            }
            ApiError::new(StatusCode::UNAUTHORIZED, err.to_string())
                .header(header::WWW_AUTHENTICATE, "Bearer realm=\"posthorn\"")
        }
    })?;
    let mime = content_type(&request);
    let format = BodyFormat::from_mime(&mime).ok_or_else(|| {
        unsupported_type(
            &mime,
            "application/json (an event or an array) or application/x-ndjson",
        )
    })?;
    let limit = state.inlet.max_body_bytes;
    let body = read_body(&request, payload, limit, "[inlet] max_body_bytes").await?;

    let state = state.into_inner();
    let outcome = web::block(move || {
        let events = inlet::parse_batch(&body, format, limit, OffsetDateTime::now_utc()).map_err(
            |items| {
                inlet::record_refusal(&state.store, "inlet", inlet::describe_items(&items), &body);
                Err(items)
            },
        )?;
        inlet::store_batch(&state.store, &state.live, "inlet", events).map_err(Ok)
    })
    .await
    .map_err(|err| {
        tracing::error!("inlet request could not run: {err}");
        ApiError::internal()
    })?;
    match outcome {
        Ok(accepted) => Ok(HttpResponse::Accepted().json(accepted)),
        Err(Err(items)) => {
            tracing::warn!(
                bad_items = items.len(),
                "inlet batch refused; nothing stored"
            );
            Err(ApiError::new(
                StatusCode::BAD_REQUEST,
                "the batch has invalid events; nothing was stored",
            )
            .detail("items", items))
        }
        Err(Ok(StoreError::Full(full))) => {
            tracing::warn!("inlet batch refused: {full}");
            Err(ApiError::store_full())
        }
        Err(Ok(StoreError::Unavailable(err))) => {
            tracing::error!("inlet batch not stored: {err}");
            Err(ApiError::store_unavailable())
        }
        Err(Ok(StoreError::Internal(err))) => {
            tracing::error!("inlet batch not stored: {err:#}");
            Err(ApiError::internal())
        }
    }
}
