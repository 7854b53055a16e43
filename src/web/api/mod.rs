//! The operator API under `/api/v1` (docs/API.md), which the admin page and the CLI use:
//! reads of the store (`read`), operator actions (`act`) and the global delivery switch (`switch`), every one behind an
//! [`Operator`](super::auth::Operator). Handlers parse (`params`), call the store on a
//! blocking thread, and map the result to a status; `views` shapes what is shown of the
//! config. Login, logout and the session are `auth`'s.
//!
//! [`ROUTES`] is the one list of what this module mounts; a test holds it and
//! `assets/openapi.json` to each other.

mod act;
mod charts;
mod find;
mod forget;
mod nodes;
mod params;
mod preview;
mod read;
mod switch;
mod views;

#[cfg(test)]
mod tests;

use actix_web::http::StatusCode;
use actix_web::{web, HttpResponse};

use super::{ApiError, AppState};
use crate::store::{AdminRefusal, QueryError, Reader, StoreFull};

/// The OpenAPI description of every route, served as it is.
const OPENAPI: &str = include_str!("../../../assets/openapi.json");

/// Mounts every route of `$table` and lists them in `ROUTES`, so the list cannot drift
/// from what is mounted.
macro_rules! routes {
    ($($method:ident $path:literal => $handler:path,)*) => {
        /// Every route this module mounts, as (lower-case method, path template).
        pub const ROUTES: &[(&str, &str)] = &[$((stringify!($method), $path),)*];

        /// Mounts the operator API (the reads, the actions and the OpenAPI file).
        pub fn configure(cfg: &mut web::ServiceConfig) {
            $(cfg.route($path, web::$method().to($handler));)*
        }
    };
}

routes! {
    get "/api/v1/openapi.json" => openapi,
    get "/api/v1/overview" => read::overview,
    get "/api/v1/subscriptions" => read::subscriptions,
    get "/api/v1/subscriptions/{name}" => read::subscription,
    get "/api/v1/subscriptions/{name}/render" => preview::preview,
    get "/api/v1/deliveries" => read::deliveries,
    get "/api/v1/deliveries/{id}" => read::delivery,
    get "/api/v1/rejections" => read::rejections,
    get "/api/v1/audit" => read::audit,
    get "/api/v1/events/{id}" => find::event,
    get "/api/v1/search" => find::search,
    get "/api/v1/subscriptions/{name}/preview" => find::subscription_preview,
    post "/api/v1/preview" => find::draft_preview,
    get "/api/v1/charts" => charts::charts,
    get "/api/v1/trends" => charts::trends,
    post "/api/v1/subscriptions/{name}/test" => act::test,
    post "/api/v1/subscriptions/{name}/pause" => act::pause,
    post "/api/v1/subscriptions/{name}/resume" => act::resume,
    post "/api/v1/subscriptions/{name}/retry-failed" => act::retry_failed,
    post "/api/v1/subscriptions/{name}/replay" => act::replay,
    post "/api/v1/deliveries/{id}/retry" => act::retry,
    post "/api/v1/conversations/forget" => forget::forget,
    get "/api/v1/delivery" => switch::show,
    get "/api/v1/nodes" => nodes::list,
    post "/api/v1/delivery/pause" => switch::pause_all,
    post "/api/v1/delivery/resume" => switch::resume_all,
}

/// No login needed: it describes the API, nothing of the store.
async fn openapi() -> HttpResponse {
    HttpResponse::Ok()
        .content_type("application/json")
        .body(OPENAPI)
}

/// Runs `query` with a read connection on a blocking thread. Bad input is a 400 with the
/// store's sentence; anything else is logged and a 500.
async fn read_store<T, F>(state: &AppState, query: F) -> Result<T, ApiError>
where
    T: Send + 'static,
    F: FnOnce(&Reader) -> Result<T, QueryError> + Send + 'static,
{
    let reader = state.reader.clone();
    match web::block(move || reader.with(query)).await {
        Ok(Ok(Ok(value))) => Ok(value),
        Ok(Ok(Err(QueryError::BadInput(message)))) => {
            Err(ApiError::new(StatusCode::BAD_REQUEST, message))
        }
        Ok(Ok(Err(err))) => {
            tracing::error!("an API read failed: {err}");
            Err(ApiError::internal())
        }
        Ok(Err(err)) => {
            tracing::error!("an API read could not start: {err:#}");
            Err(ApiError::internal())
        }
        Err(err) => {
            tracing::error!("an API read could not run: {err}");
            Err(ApiError::internal())
        }
    }
}

/// Runs a store write on a blocking thread and maps its error: a refusal of an unknown
/// delivery or event is a 404, any other refusal a 409, a full store a 503, the rest a
/// logged 500.
async fn write_store<T, F>(write: F) -> Result<T, ApiError>
where
    T: Send + 'static,
    F: FnOnce() -> anyhow::Result<T> + Send + 'static,
{
    match web::block(write).await {
        Ok(Ok(value)) => Ok(value),
        Ok(Err(err)) => Err(store_error(err)),
        Err(err) => {
            tracing::error!("an API action could not run: {err}");
            Err(ApiError::internal())
        }
    }
}

fn store_error(err: anyhow::Error) -> ApiError {
    if let Some(refusal) = err.downcast_ref::<AdminRefusal>() {
        let status = match refusal {
            AdminRefusal::UnknownDelivery(_)
            | AdminRefusal::UnknownEvent(_)
            | AdminRefusal::UnknownConversation(_) => StatusCode::NOT_FOUND,
            _ => StatusCode::CONFLICT,
        };
        return ApiError::new(status, refusal.to_string());
    }
    if let Some(full) = err.downcast_ref::<StoreFull>() {
        tracing::warn!("an API action was refused: {full}");
        return ApiError::store_full();
    }
    if let Some(unavailable) = err.downcast_ref::<crate::store::StoreUnavailable>() {
        tracing::error!("an API action failed: {unavailable}");
        return ApiError::store_unavailable();
    }
    tracing::error!("an API action failed: {err:#}");
    ApiError::internal()
}

fn unknown_subscription(name: &str) -> ApiError {
    ApiError::new(
        StatusCode::NOT_FOUND,
        format!("there is no subscription {name:?} in the config in force"),
    )
}
