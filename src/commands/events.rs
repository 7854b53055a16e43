//! `posthorn events show ID`, and `posthorn deliveries show ID`, which takes a delivery
//! id or an event id (operators often hold the event id from the producer's log).

use std::process::ExitCode;

use super::{connect, finish, out, Failure};
use crate::cli::{ApiArgs, EventsCommand};
use crate::client::api::{DeliveryDetail, EventDetail};
use crate::client::{path_segment, render, Answer, Client, ClientError, Connection};

/// `posthorn events ...`.
pub fn events(command: &EventsCommand) -> ExitCode {
    finish(match command {
        EventsCommand::Show { id, api, json } => show_event(id, api, *json),
    })
}

fn show_event(id: &str, api: &ApiArgs, as_json: bool) -> Result<ExitCode, Failure> {
    let Connection { client, .. } = connect(api)?;
    let event = get_event(&client, id)?;
    print_event(&event, as_json);
    Ok(ExitCode::SUCCESS)
}

/// `posthorn deliveries show ID`: a whole number is a delivery id first; anything else,
/// or a number no delivery has, is looked up as an event id.
pub fn show_delivery_or_event(id: &str, api: &ApiArgs, as_json: bool) -> Result<ExitCode, Failure> {
    let Connection { client, .. } = connect(api)?;
    let number = id.trim().parse::<i64>().ok().filter(|n| *n > 0);
    if let Some(number) = number {
        match client.get::<DeliveryDetail>(&format!("/deliveries/{number}"), &[]) {
            Ok(detail) => {
                if as_json {
                    out(&detail.raw);
                } else {
                    out(&render::delivery_detail(&detail.value));
                }
                return Ok(ExitCode::SUCCESS);
            }
            Err(err) if err.is_status(404) => {}
            Err(err) => return Err(err.into()),
        }
    }
    match get_event(&client, id) {
        Ok(event) => {
            print_event(&event, as_json);
            Ok(ExitCode::SUCCESS)
        }
        Err(err) if err.is_status(404) => {
            let message = match number {
                Some(n) => format!("there is no delivery {n} and no event {id:?}"),
                None => format!(
                    "there is no event {id:?} (and it is not a delivery id, which is a whole \
                     number); retention may have removed it"
                ),
            };
            Err(ClientError::Api {
                status: 404,
                message,
            }
            .into())
        }
        Err(err) => Err(err.into()),
    }
}

fn get_event(client: &Client, id: &str) -> Result<Answer<EventDetail>, ClientError> {
    client.get(&format!("/events/{}", path_segment(id)), &[])
}

fn print_event(event: &Answer<EventDetail>, as_json: bool) {
    if as_json {
        out(&event.raw);
    } else {
        out(&render::event_detail(&event.value));
    }
}
