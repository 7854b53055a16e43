//! The global delivery switch: `GET /api/v1/delivery` says whether delivery runs and why
//! not; "pause all" and "resume all" switch it, kept across restarts, audited like every
//! action. Intake and storage go on while it is off. `[delivery] enabled = false` in the
//! config switches it off too and is not overridden by "resume all".

use actix_web::{web, HttpResponse};
use serde::Serialize;

use super::act::audited;
use super::write_store;
use crate::receivers::Switch;
use crate::web::auth::Operator;
use crate::web::{ApiError, AppState};

/// What the delivery switch says, with the sentence the page shows while it is off.
#[derive(Serialize)]
pub(super) struct SwitchView {
    #[serde(flatten)]
    switch: Switch,
    reason: Option<&'static str>,
}

pub(super) fn view(state: &AppState) -> SwitchView {
    let switch = Switch::of(&state.live.load().delivery, &state.store);
    SwitchView {
        switch,
        reason: switch.reason(),
    }
}

pub(super) async fn show(
    state: web::Data<AppState>,
    _operator: Operator,
) -> Result<HttpResponse, ApiError> {
    Ok(HttpResponse::Ok().json(view(&state)))
}

pub(super) async fn pause_all(
    state: web::Data<AppState>,
    operator: Operator,
) -> Result<HttpResponse, ApiError> {
    set(&state, true, &operator).await
}

pub(super) async fn resume_all(
    state: web::Data<AppState>,
    operator: Operator,
) -> Result<HttpResponse, ApiError> {
    set(&state, false, &operator).await
}

/// The scheduler reads the switch at every turn (at least once a second), so nothing
/// needs waking.
async fn set(
    state: &AppState,
    paused: bool,
    operator: &Operator,
) -> Result<HttpResponse, ApiError> {
    let store = state.store.clone();
    let outcome = write_store(move || store.set_delivery_paused(paused)).await;
    let action = if paused {
        "delivery.pause_all"
    } else {
        "delivery.resume_all"
    };
    let changed = audited(state, operator, action, "all subscriptions", outcome).await?;
    let mut body = serde_json::to_value(view(state)).map_err(|_| ApiError::internal())?;
    body["changed"] = serde_json::Value::Bool(changed);
    Ok(HttpResponse::Ok().json(body))
}
