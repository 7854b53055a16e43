//! `GET /metrics` (Prometheus text format) and `GET /healthz`, without login, for the
//! operator's monitoring. The handlers gather (blocking work off the async threads) and
//! leave rendering to `crate::metrics` and judging to `crate::health`.

use std::time::Duration;

use actix_web::http::StatusCode;
use actix_web::{web, HttpResponse};

use super::{ApiError, AppState};
use crate::health::{self, Health, Thresholds};
use crate::metrics::StoreGauges;
use crate::receivers::Switch;
use crate::store::now_ms;

/// How long `/healthz` waits for the store writer's answer. A commit normally takes
/// milliseconds; a writer this late is as good as stuck for the input waiting on it.
const PING_WAIT: Duration = Duration::from_secs(3);

/// The content type of the Prometheus text format.
const PROMETHEUS_TEXT: &str = "text/plain; version=0.0.4; charset=utf-8";

pub fn configure(cfg: &mut web::ServiceConfig) {
    cfg.route("/metrics", web::get().to(metrics))
        .route("/healthz", web::get().to(healthz));
}

async fn metrics(state: web::Data<AppState>) -> Result<HttpResponse, ApiError> {
    let state = state.into_inner();
    let text = web::block(move || {
        let paused = state
            .live
            .load()
            .subscriptions
            .iter()
            .filter(|s| state.store.is_paused(&s.name))
            .count();
        let gauges = state
            .reader
            .with(|reader| StoreGauges::read(reader, paused, now_ms()))
            .and_then(|gauges| gauges)
            .inspect_err(|err| {
                tracing::warn!(
                    "/metrics: could not read the store, its gauges are left out: {err:#}"
                )
            })
            .ok();
        let mut text = state.store.metrics().render(gauges.as_ref());
        state.guard.render(&mut text);
        text
    })
    .await
    .map_err(|err| {
        tracing::error!("/metrics could not run: {err}");
        ApiError::internal()
    })?;
    Ok(HttpResponse::Ok().content_type(PROMETHEUS_TEXT).body(text))
}

async fn healthz(state: web::Data<AppState>) -> Result<HttpResponse, ApiError> {
    let state = state.into_inner();
    let health = web::block(move || {
        let store = health::store_check(
            state.store.ping(PING_WAIT).map_err(|err| {
                tracing::warn!("/healthz: {err:#}");
                format!("{err:#}")
            }),
            state.store.faults().problems(),
        );
        let settings = state.live.load();
        let timeout = crate::config::longest_timeout(
            &settings.delivery,
            settings.subscriptions.iter().map(|s| &**s),
        );
        let mut delivery = state
            .store
            .metrics()
            .liveness
            .delivery_check(Thresholds::for_timeout(timeout));
        // Switched off is a choice, not a fault: /healthz stays 200 and says so.
        let switch = Switch::of(&settings.delivery, &state.store);
        delivery.enabled = switch.enabled;
        delivery.switched_off = switch.reason();
        Health::new(store, delivery)
    })
    .await
    .map_err(|err| {
        tracing::error!("/healthz could not run: {err}");
        ApiError::internal()
    })?;
    let status = if health.ok() {
        StatusCode::OK
    } else {
        StatusCode::SERVICE_UNAVAILABLE
    };
    Ok(HttpResponse::build(status).json(health))
}
