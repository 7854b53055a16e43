//! `GET /api/v1/nodes`: the nodes sharing the store, with their heartbeats and the
//! warnings of `crate::nodes::judge`.

use actix_web::{web, HttpResponse};

use super::write_store;
use crate::web::auth::Operator;
use crate::web::{ApiError, AppState};

pub(super) async fn list(
    state: web::Data<AppState>,
    _operator: Operator,
) -> Result<HttpResponse, ApiError> {
    let roster = state.roster.clone();
    let list = write_store(move || roster.list()).await?;
    Ok(HttpResponse::Ok().json(list))
}
