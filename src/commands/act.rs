//! `posthorn replay`, `pause SUB` and `resume SUB`: the admin page's actions on one
//! subscription, from a shell, through the same API routes (so they are audited alike).

use std::process::ExitCode;

use serde::Deserialize;
use serde_json::json;

use super::{connect, finish, out, Failure};
use crate::cli::ApiArgs;
use crate::client::api::DeliveryDetail;
use crate::client::{path_segment, Answer, Client, ClientError};

/// `POST /subscriptions/{name}/replay`.
#[derive(Debug, Deserialize)]
struct Replayed {
    delivery_id: i64,
    created: bool,
}

/// `POST /subscriptions/{name}/pause|resume`.
#[derive(Debug, Deserialize)]
struct Paused {
    changed: bool,
}

/// `posthorn replay`: the events named to `subscription`, or each delivery's event to its
/// own subscription. One refusal does not stop the others; exit 1 if any was refused.
pub fn replay(
    event_ids: &[String],
    subscription: Option<&str>,
    deliveries: &[i64],
    api: &ApiArgs,
) -> ExitCode {
    finish(replay_all(event_ids, subscription, deliveries, api))
}

fn replay_all(
    event_ids: &[String],
    subscription: Option<&str>,
    deliveries: &[i64],
    api: &ApiArgs,
) -> Result<ExitCode, Failure> {
    let client = connect(api)?.client;
    let mut asked = 0;
    let mut refused = 0;
    let mut tally = |result: Result<(), ClientError>, what: &str| -> Result<(), Failure> {
        asked += 1;
        match result {
            Ok(()) => Ok(()),
            Err(ClientError::Api { message, .. }) => {
                refused += 1;
                eprintln!("{what}: refused: {message}");
                Ok(())
            }
            // Not running, a refused token, ...: the same for every one.
            Err(err) => Err(err.into()),
        }
    };
    if let Some(subscription) = subscription {
        for event_id in event_ids {
            let what = format!("event {event_id} to {subscription}");
            tally(send_again(&client, event_id, subscription), &what)?;
        }
    }
    for id in deliveries {
        let result = client
            .get::<DeliveryDetail>(&format!("/deliveries/{id}"), &[])
            .and_then(|detail| {
                let row = detail.value.delivery;
                send_again(&client, &row.event_id, &row.subscription)
            });
        tally(result, &format!("delivery {id}"))?;
    }
    if refused > 0 {
        eprintln!("posthorn: {refused} of {asked} replays refused");
        return Ok(ExitCode::FAILURE);
    }
    Ok(ExitCode::SUCCESS)
}

fn send_again(client: &Client, event_id: &str, subscription: &str) -> Result<(), ClientError> {
    let answer: Answer<Replayed> = client.post(
        &format!("/subscriptions/{}/replay", path_segment(subscription)),
        Some(&json!({ "event_id": event_id })),
    )?;
    let Replayed {
        delivery_id,
        created,
    } = answer.value;
    out(&format!(
        "event {event_id} to {subscription}: {} delivery {delivery_id}, due now",
        if created { "new" } else { "again as" }
    ));
    Ok(())
}

/// `posthorn pause SUB` (`paused`) and `posthorn resume SUB`.
pub fn pause(subscription: &str, paused: bool, api: &ApiArgs) -> ExitCode {
    finish(set_paused(subscription, paused, api))
}

fn set_paused(subscription: &str, paused: bool, api: &ApiArgs) -> Result<ExitCode, Failure> {
    let client = connect(api)?.client;
    let verb = if paused { "pause" } else { "resume" };
    let answer: Answer<Paused> = client.post(
        &format!("/subscriptions/{}/{verb}", path_segment(subscription)),
        None,
    )?;
    let state = if paused { "paused" } else { "resumed" };
    out(&match (answer.value.changed, paused) {
        (true, true) => format!(
            "{subscription}: paused; its deliveries wait until `posthorn resume {subscription}`"
        ),
        (true, false) => format!("{subscription}: resumed; its waiting deliveries are sent"),
        (false, _) => format!("{subscription}: already {state}"),
    });
    Ok(ExitCode::SUCCESS)
}
