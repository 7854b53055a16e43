//! `POST /api/v1/conversations/forget`: an erasure request for one conversation (see
//! `store/forget.rs` for what is blanked and what is kept). The conversation id travels
//! in the JSON body, not the path, so any id a producer used can be named. Applied or
//! refused, it is audited with who asked, from where, and how many rows it blanked.

use actix_web::{web, HttpRequest, HttpResponse};
use serde::Deserialize;

use super::act::{audited, json_body};
use super::params::bad_request;
use super::write_store;
use crate::store::Forgotten;
use crate::web::auth::Operator;
use crate::web::{ApiError, AppState};

/// Longest conversation id taken: far beyond any real id, short enough for the audit row.
const MAX_ID: usize = 1024;

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct ForgetRequest {
    conversation_id: String,
    /// Let pending deliveries finish (their events are blanked once they are final)
    /// instead of cancelling them.
    #[serde(default)]
    let_pending_finish: bool,
}

pub(super) async fn forget(
    state: web::Data<AppState>,
    operator: Operator,
    request: HttpRequest,
    payload: web::Payload,
) -> Result<HttpResponse, ApiError> {
    let mut detail = "conversation (unreadable request)".to_string();
    let outcome = async {
        let body: ForgetRequest = json_body(
            &request,
            payload,
            r#"{"conversation_id": "...", "let_pending_finish": false}"#,
        )
        .await?;
        let id = body.conversation_id;
        if id.is_empty() || id.len() > MAX_ID || id.chars().any(char::is_control) {
            return Err(bad_request(format!(
                "conversation_id must be 1 to {MAX_ID} bytes without control characters"
            )));
        }
        detail = format!("conversation {id:?}");
        let (store, let_finish) = (state.store.clone(), body.let_pending_finish);
        let forgotten = write_store(move || store.forget_conversation(id, let_finish)).await?;
        detail = describe(&forgotten, let_finish);
        Ok(forgotten)
    }
    .await;
    let forgotten = audited(&state, &operator, "conversation.forget", &detail, outcome).await?;
    Ok(HttpResponse::Ok().json(forgotten))
}

/// The audit row's detail: what was asked and how many rows it changed.
fn describe(f: &Forgotten, let_pending_finish: bool) -> String {
    format!(
        "conversation {:?}{}: blanked {} event bodies, {} attempt snippets, {} rejection \
         snippets; cancelled {} pending deliveries; {} still pending{}",
        f.conversation_id,
        if f.again { " (forgotten before)" } else { "" },
        f.events,
        f.attempts,
        f.rejections,
        f.cancelled,
        f.waiting,
        if let_pending_finish {
            " (let finish: their events are blanked once they are final)"
        } else {
            ""
        },
    )
}
