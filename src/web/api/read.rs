//! The reading routes: overview, subscriptions, the delivery log, one delivery,
//! rejections and the audit log.

use std::sync::Arc;

use actix_web::http::StatusCode;
use actix_web::{web, HttpRequest, HttpResponse};
use serde::Serialize;

use super::params::{self, Params};
use super::views::{self, RequestView, SubscriptionView};
use super::{read_store, unknown_subscription};
use crate::config::Subscription;
use crate::config::{OnDead, Ordering};
use crate::snippets::{self, Snippets};
use crate::store::{
    now_ms, DeliveryDetail, DeliveryFilter, FailureGroup, LineView, Overview, Rates, FAILURE_GROUPS,
};
use crate::web::auth::Operator;
use crate::web::{ApiError, AppState};

/// Failed attempts the overview lists.
const RECENT_FAILURES: usize = 10;

#[derive(Serialize)]
struct OverviewBody {
    #[serde(flatten)]
    overview: Overview,
    /// Subscriptions in the config in force.
    subscriptions: usize,
    /// Whether delivery runs (the global switch).
    delivery: super::switch::SwitchView,
    /// Failed attempts of the last 24 h by subscription and reason (`store/charts.rs`).
    failure_groups: Vec<FailureGroup>,
    /// Success per attempt and per delivery over about the last 24 h.
    rates: Rates,
}

pub(super) async fn overview(
    state: web::Data<AppState>,
    _operator: Operator,
) -> Result<HttpResponse, ApiError> {
    let subscriptions = state.live.load().subscriptions.len();
    let (overview, failure_groups, rates) = read_store(&state, |r| {
        let now = now_ms();
        Ok((
            r.overview(now, RECENT_FAILURES)?,
            r.failure_groups(now, FAILURE_GROUPS)?,
            r.rates(None, now)?,
        ))
    })
    .await?;
    Ok(HttpResponse::Ok().json(OverviewBody {
        overview,
        subscriptions,
        delivery: super::switch::view(&state),
        failure_groups,
        rates,
    }))
}

pub(super) async fn subscriptions(
    state: web::Data<AppState>,
    _operator: Operator,
) -> Result<HttpResponse, ApiError> {
    let configured = state.live.load().subscriptions.clone();
    let items = views_of(&state, configured).await?;
    Ok(HttpResponse::Ok().json(serde_json::json!({ "items": items })))
}

/// One subscription, with its config block and receiver-side verification code.
#[derive(Serialize)]
struct SubscriptionDetail {
    #[serde(flatten)]
    view: SubscriptionView,
    /// Its `[[subscription]]` block, secrets shown as `[redacted]`.
    toml: String,
    snippets: Snippets,
}

pub(super) async fn subscription(
    state: web::Data<AppState>,
    name: web::Path<String>,
    _operator: Operator,
) -> Result<HttpResponse, ApiError> {
    let subscription = configured(&state, &name)?;
    let view = views_of(&state, vec![Arc::clone(&subscription)])
        .await?
        .pop()
        .ok_or_else(ApiError::internal)?;
    Ok(HttpResponse::Ok().json(SubscriptionDetail {
        view,
        toml: snippets::toml_block(&subscription),
        snippets: snippets::verification_snippets(&subscription),
    }))
}

/// The subscription called `name` in the config in force, or a 404.
pub(super) fn configured(state: &AppState, name: &str) -> Result<Arc<Subscription>, ApiError> {
    state
        .live
        .load()
        .subscriptions
        .iter()
        .find(|s| s.name == name)
        .cloned()
        .ok_or_else(|| unknown_subscription(name))
}

async fn views_of(
    state: &AppState,
    subscriptions: Vec<Arc<Subscription>>,
) -> Result<Vec<SubscriptionView>, ApiError> {
    let names: Vec<String> = subscriptions.iter().map(|s| s.name.clone()).collect();
    let health = read_store(state, move |r| r.subscription_health(&names, now_ms())).await?;
    Ok(subscriptions
        .iter()
        .zip(health)
        .map(|(subscription, mut health)| {
            health.breaker = state
                .store
                .metrics()
                .receivers
                .breaker(&subscription.url)
                .map(Into::into);
            views::subscription_view(
                subscription,
                state.store.is_paused(&subscription.name),
                health,
            )
        })
        .collect())
}

const DELIVERY_PARAMS: &[&str] = &[
    "subscription",
    "state",
    "conversation",
    "event_id",
    "event_type",
    "from",
    "to",
    "cursor",
    "limit",
];

pub(super) async fn deliveries(
    state: web::Data<AppState>,
    request: HttpRequest,
    _operator: Operator,
) -> Result<HttpResponse, ApiError> {
    let params = Params::parse(request.query_string(), DELIVERY_PARAMS)?;
    let filter = DeliveryFilter {
        subscription: params.owned("subscription"),
        state: params.owned("state"),
        conversation_id: params.owned("conversation"),
        event_id: params.owned("event_id"),
        event_type: params.owned("event_type"),
        from_ms: params.time("from")?,
        to_ms: params.time("to")?,
        cursor: params.owned("cursor"),
        limit: params.limit()?,
    };
    let page = read_store(&state, move |r| r.deliveries(&filter)).await?;
    Ok(HttpResponse::Ok().json(page))
}

#[derive(Serialize)]
struct DeliveryBody {
    #[serde(flatten)]
    detail: DeliveryDetail,
    /// `None` when the subscription is no longer configured.
    request: Option<RequestView>,
    /// With `ordering = "conversation"`: what this delivery waits behind, and how many
    /// wait behind it. Absent for subscriptions without ordering.
    #[serde(skip_serializing_if = "Option::is_none")]
    line: Option<LineView>,
}

pub(super) async fn delivery(
    state: web::Data<AppState>,
    id: web::Path<String>,
    _operator: Operator,
) -> Result<HttpResponse, ApiError> {
    let id = params::delivery_id(&id)?;
    let detail = read_store(&state, move |r| r.delivery(id))
        .await?
        .ok_or_else(|| {
            ApiError::new(StatusCode::NOT_FOUND, format!("there is no delivery {id}"))
        })?;
    let subscription = configured(&state, &detail.delivery.subscription).ok();
    let request = subscription
        .as_ref()
        .map(|subscription| views::request_view(subscription, &detail.event, &detail.attempts));
    let ordered = subscription
        .filter(|s| s.pacing.ordering == Ordering::Conversation)
        .map(|s| s.pacing.on_dead == OnDead::Hold);
    let line = match ordered {
        Some(hold_dead) => read_store(&state, move |r| r.delivery_line(id, hold_dead)).await?,
        None => None,
    };
    Ok(HttpResponse::Ok().json(DeliveryBody {
        detail,
        request,
        line,
    }))
}

const PAGE_PARAMS: &[&str] = &["cursor", "limit"];

pub(super) async fn rejections(
    state: web::Data<AppState>,
    request: HttpRequest,
    _operator: Operator,
) -> Result<HttpResponse, ApiError> {
    let params = Params::parse(request.query_string(), PAGE_PARAMS)?;
    let (cursor, limit) = (params.owned("cursor"), params.limit()?);
    let page = read_store(&state, move |r| r.rejections(cursor.as_deref(), limit)).await?;
    Ok(HttpResponse::Ok().json(page))
}

pub(super) async fn audit(
    state: web::Data<AppState>,
    request: HttpRequest,
    _operator: Operator,
) -> Result<HttpResponse, ApiError> {
    let params = Params::parse(request.query_string(), PAGE_PARAMS)?;
    let (cursor, limit) = (params.owned("cursor"), params.limit()?);
    let page = read_store(&state, move |r| r.audit_log(cursor.as_deref(), limit)).await?;
    Ok(HttpResponse::Ok().json(page))
}
