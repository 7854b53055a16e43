//! The charts' routes: a delivery chart (and the queue chart) over a range, and each
//! subscription's 24 h trend for its row in the list. Both read the history the store
//! keeps for them (`store/rollup.rs`), never the attempts.

use actix_web::{web, HttpRequest, HttpResponse};

use super::params::Params;
use super::read::configured;
use super::read_store;
use crate::store::{now_ms, ChartRange};
use crate::web::auth::Operator;
use crate::web::{ApiError, AppState};

const CHART_PARAMS: &[&str] = &["range", "subscription"];

/// `GET /api/v1/charts?range=24h[&subscription=name]`.
pub(super) async fn charts(
    state: web::Data<AppState>,
    request: HttpRequest,
    _operator: Operator,
) -> Result<HttpResponse, ApiError> {
    let params = Params::parse(request.query_string(), CHART_PARAMS)?;
    let range = params.owned("range");
    let subscription = params.owned("subscription");
    if let Some(name) = &subscription {
        configured(&state, name)?;
    }
    let charts = read_store(&state, move |r| {
        let range = ChartRange::parse(range.as_deref().unwrap_or("24h"))?;
        r.charts(subscription.as_deref(), range, now_ms())
    })
    .await?;
    Ok(HttpResponse::Ok().json(charts))
}

/// `GET /api/v1/trends`: every configured subscription's last 24 h, hour by hour.
pub(super) async fn trends(
    state: web::Data<AppState>,
    request: HttpRequest,
    _operator: Operator,
) -> Result<HttpResponse, ApiError> {
    Params::parse(request.query_string(), &[])?;
    let names: Vec<String> = state
        .live
        .load()
        .subscriptions
        .iter()
        .map(|s| s.name.clone())
        .collect();
    let items = read_store(&state, move |r| r.trends(&names, now_ms())).await?;
    Ok(HttpResponse::Ok().json(serde_json::json!({ "items": items })))
}
