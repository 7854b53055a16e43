//! The global delivery switch from a shell (`/api/v1/delivery`): `posthorn pause-all`,
//! `resume-all`, and their older spelling `delivery pause|resume|status`. While delivery
//! is paused, events are still taken in and stored.

use std::process::ExitCode;

use super::{connect, finish, out, Failure};
use crate::cli::{ApiArgs, DeliveryCommand};
use crate::client::api::DeliverySwitch;
use crate::client::Answer;

/// `posthorn delivery ...`.
pub fn delivery(command: &DeliveryCommand) -> ExitCode {
    finish(match command {
        DeliveryCommand::Pause { api, json } => switch(api, Some(true), *json),
        DeliveryCommand::Resume { api, json } => switch(api, Some(false), *json),
        DeliveryCommand::Status { api, json } => switch(api, None, *json),
    })
}

/// `posthorn pause-all` (`Some(true)`), `resume-all` (`Some(false)`).
pub fn switch_all(api: &ApiArgs, pause: Option<bool>, as_json: bool) -> ExitCode {
    finish(switch(api, pause, as_json))
}

fn switch(api: &ApiArgs, pause: Option<bool>, as_json: bool) -> Result<ExitCode, Failure> {
    let connection = connect(api)?;
    let answer: Answer<DeliverySwitch> = match pause {
        Some(true) => connection.client.post("/delivery/pause", None)?,
        Some(false) => connection.client.post("/delivery/resume", None)?,
        None => connection.client.get("/delivery", &[])?,
    };
    let switch = answer.value;
    if as_json {
        out(&answer.raw);
    } else {
        match &switch.reason {
            None => out("delivery is on"),
            Some(reason) => out(&format!("delivery is off: {reason}")),
        }
    }
    // "Resume all" cannot override `[delivery] enabled = false`: say so by the exit code.
    Ok(match pause {
        Some(false) if !switch.enabled => ExitCode::FAILURE,
        _ => ExitCode::SUCCESS,
    })
}
