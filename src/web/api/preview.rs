//! `GET /api/v1/subscriptions/{name}/render`: the body a subscription sends (its format
//! or template, as configured now) for a stored event, without sending anything: the
//! event given by `event_id`, else the most recent event the subscription had whose body
//! is still stored.

use actix_web::http::StatusCode;
use actix_web::{web, HttpRequest, HttpResponse};
use serde::Serialize;

use super::params::Params;
use super::read::configured;
use super::read_store;
use crate::format;
use crate::logging::url_for_log;
use crate::store::{DeliveryFilter, EventView};
use crate::web::auth::Operator;
use crate::web::{ApiError, AppState};

/// How many of a subscription's latest deliveries are looked through for one whose
/// event body is still stored.
const RECENT: usize = 50;

#[derive(Debug, Serialize)]
pub struct Preview {
    pub subscription: String,
    /// `envelope`, a chat tool's name, or `template`.
    pub format: String,
    pub event_id: String,
    pub event_type: String,
    pub content_type: Option<String>,
    /// Where the body is POSTed (redacted like a subscription's url).
    pub url: String,
    /// The rendered body (lossy UTF-8); null when rendering failed.
    pub body: Option<String>,
    /// Why the body could not be rendered for this event (a delivery of it is dead at
    /// once with this reason).
    pub error: Option<String>,
}

pub(super) async fn preview(
    state: web::Data<AppState>,
    name: web::Path<String>,
    request: HttpRequest,
    _operator: Operator,
) -> Result<HttpResponse, ApiError> {
    let params = Params::parse(request.query_string(), &["event_id"])?;
    let subscription = configured(&state, &name)?;
    let wanted = params.owned("event_id");
    let owner = subscription.name.clone();
    let event = read_store(&state, move |r| match wanted {
        Some(id) => r.event(&id),
        None => {
            let filter = DeliveryFilter {
                subscription: Some(owner),
                limit: RECENT,
                ..Default::default()
            };
            for row in r.deliveries(&filter)?.items {
                if let Some(event) = r.event(&row.event_id)?.filter(|e| e.body.is_some()) {
                    return Ok(Some(event));
                }
            }
            Ok(None)
        }
    })
    .await?;
    let event = event.ok_or_else(|| match params.owned("event_id") {
        Some(id) => ApiError::new(StatusCode::NOT_FOUND, format!("there is no event {id:?}")),
        None => ApiError::new(
            StatusCode::NOT_FOUND,
            format!(
                "subscription {:?} has no recent event with a stored body to preview; \
                 send a test event or name one with event_id",
                subscription.name
            ),
        ),
    })?;
    Ok(HttpResponse::Ok().json(render(&subscription, &event)?))
}

fn render(
    subscription: &crate::config::Subscription,
    event: &EventView,
) -> Result<Preview, ApiError> {
    let Some(envelope) = event.body.as_deref() else {
        return Err(ApiError::new(
            StatusCode::CONFLICT,
            format!(
                "the body of event {:?} was dropped by retention; pick a more recent event",
                event.id
            ),
        ));
    };
    let mut preview = Preview {
        subscription: subscription.name.clone(),
        format: subscription.format.name().to_string(),
        event_id: event.id.clone(),
        event_type: event.event_type.clone(),
        content_type: None,
        url: url_for_log(&subscription.url),
        body: None,
        error: None,
    };
    match format::outgoing(subscription, envelope) {
        Ok(rendered) => {
            preview.content_type = Some(rendered.content_type.to_string());
            preview.url = url_for_log(rendered.url);
            preview.body = Some(String::from_utf8_lossy(&rendered.body).into_owned());
        }
        Err(err) => preview.error = Some(err.to_string()),
    }
    Ok(preview)
}
