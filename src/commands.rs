//! The operator commands run from a shell against a running `posthorn serve`: `status`,
//! `deliveries list|show|retry`, `replay`, `pause`/`resume` (one subscription),
//! `pause-all`/`resume-all` (alias `delivery pause|resume|status`), `events show`, `forget`
//! and `test`, each one or a few calls of the operator API
//! through [`crate::client`], printed by [`crate::client::render`] (or as the API's JSON
//! with `--json`). Exit codes: 0 done, 1 the API refused or could not be reached, 2 the
//! command could not be set up (no token, a bad config). `verify` and `migrate-store`
//! need no running posthorn (the second refuses to run beside one).

mod act;
mod delivery;
mod events;
mod forget;
mod hash_password;
pub mod migrate_store;
pub mod verify;

use std::io::Write as _;
use std::process::ExitCode;
use std::time::{Duration, Instant};

use serde_json::json;

use crate::cli::{ApiArgs, DeliveriesCommand, DeliveryFilterArgs};
use crate::client::api::{
    DeliveryDetail, DeliveryPage, NodeList, Overview, Retried, RetriedFailed, SubscriptionList,
    TestSent,
};
use crate::client::{self, path_segment, render, Answer, ClientError, Connection};
use crate::config;

pub use act::{pause, replay};
pub use delivery::{delivery, switch_all};
pub use events::events;
pub use forget::forget;
pub use hash_password::hash_password;

/// How often `posthorn test` looks at its delivery.
const TEST_POLL: Duration = Duration::from_millis(250);
/// How much longer than `[delivery] timeout` `posthorn test` waits for the attempt.
const TEST_GRACE: Duration = Duration::from_secs(10);

/// Why a command stopped.
enum Failure {
    /// It could not start: exit 2.
    Setup(String),
    /// The API refused or could not be reached: exit 1.
    Client(ClientError),
}

impl From<ClientError> for Failure {
    fn from(err: ClientError) -> Failure {
        Failure::Client(err)
    }
}

/// Prints the reason a command failed and picks its exit code.
fn finish(result: Result<ExitCode, Failure>) -> ExitCode {
    match result {
        Ok(code) => code,
        Err(Failure::Setup(message)) => {
            eprintln!("posthorn: {message}");
            ExitCode::from(2)
        }
        // Its message starts with "posthorn is not running".
        Err(Failure::Client(err @ ClientError::NotRunning { .. })) => {
            eprintln!("{err}");
            ExitCode::FAILURE
        }
        Err(Failure::Client(err)) => {
            eprintln!("posthorn: {err}");
            ExitCode::FAILURE
        }
    }
}

/// Writes `text` and a line end to stdout. A reader that went away
/// (`posthorn deliveries list | head -3`) ends the output quietly, where `println!` would
/// panic.
fn out(text: &str) {
    let mut stdout = std::io::stdout().lock();
    let _ = stdout.write_all(text.as_bytes());
    if !text.ends_with('\n') {
        let _ = stdout.write_all(b"\n");
    }
    let _ = stdout.flush();
}

fn connect(api: &ApiArgs) -> Result<Connection, Failure> {
    client::connect(api.config.as_deref(), api.url.as_deref()).map_err(Failure::Setup)
}

/// `posthorn status`.
pub fn status(api: &ApiArgs, as_json: bool) -> ExitCode {
    finish(show_status(api, as_json))
}

fn show_status(api: &ApiArgs, as_json: bool) -> Result<ExitCode, Failure> {
    let Connection { client, .. } = connect(api)?;
    let overview: Answer<Overview> = client.get("/overview", &[])?;
    let subscriptions: Answer<SubscriptionList> = client.get("/subscriptions", &[])?;
    // A posthorn from before the list of nodes answers 404: status goes on without it.
    let nodes: Option<Answer<NodeList>> = match client.get("/nodes", &[]) {
        Ok(nodes) => Some(nodes),
        Err(err) if err.is_status(404) => None,
        Err(err) => return Err(err.into()),
    };
    if as_json {
        let raw_overview: serde_json::Value = raw_json(&overview.raw);
        let raw_subscriptions: serde_json::Value = raw_json(&subscriptions.raw);
        let combined = json!({
            "overview": raw_overview,
            "subscriptions": raw_subscriptions.get("items").cloned().unwrap_or_default(),
            "nodes": nodes.as_ref().map(|n| raw_json(&n.raw)),
        });
        out(&format!("{combined:#}"));
    } else {
        let mut text = render::status(client.base(), &overview.value, &subscriptions.value.items);
        if let Some(nodes) = &nodes {
            text.push('\n');
            text.push_str(&render::nodes(&nodes.value));
        }
        out(&text);
    }
    Ok(ExitCode::SUCCESS)
}

/// The API's answer as a JSON value; it parsed once already, so this cannot fail.
fn raw_json(raw: &str) -> serde_json::Value {
    serde_json::from_str(raw).unwrap_or_default()
}

/// `posthorn deliveries ...`.
pub fn deliveries(command: &DeliveriesCommand) -> ExitCode {
    finish(match command {
        DeliveriesCommand::List { filter, api, json } => list(filter, api, *json),
        DeliveriesCommand::Show { id, api, json } => events::show_delivery_or_event(id, api, *json),
        DeliveriesCommand::Retry {
            ids,
            subscription,
            since,
            include_cancelled,
            api,
        } => match (subscription, since) {
            (Some(subscription), Some(since)) => {
                retry_failed(subscription, *since, *include_cancelled, api)
            }
            _ => retry(ids, api),
        },
    })
}

fn list(filter: &DeliveryFilterArgs, api: &ApiArgs, as_json: bool) -> Result<ExitCode, Failure> {
    let Connection { client, .. } = connect(api)?;
    let mut query: Vec<(&str, String)> = Vec::new();
    let texts = [
        ("subscription", &filter.subscription),
        ("state", &filter.state),
        ("conversation", &filter.conversation),
        ("event_id", &filter.event_id),
        ("event_type", &filter.event_type),
        ("cursor", &filter.cursor),
    ];
    for (name, value) in texts {
        if let Some(value) = value {
            query.push((name, value.clone()));
        }
    }
    let numbers = [
        ("from", filter.since),
        ("to", filter.until),
        ("limit", filter.limit.map(i64::from)),
    ];
    for (name, value) in numbers {
        if let Some(value) = value {
            query.push((name, value.to_string()));
        }
    }
    let page: Answer<DeliveryPage> = client.get("/deliveries", &query)?;
    if as_json {
        out(&page.raw);
        return Ok(ExitCode::SUCCESS);
    }
    if page.value.items.is_empty() {
        eprintln!("no deliveries match");
    } else {
        out(&render::delivery_table(&page.value.items));
    }
    if let Some(cursor) = &page.value.next_cursor {
        eprintln!("more: add --cursor {cursor} for the next page");
    }
    Ok(ExitCode::SUCCESS)
}

/// Retries each delivery named; one refusal does not stop the others.
fn retry(ids: &[i64], api: &ApiArgs) -> Result<ExitCode, Failure> {
    let Connection { client, .. } = connect(api)?;
    let mut refused = 0;
    for id in ids {
        match client.post::<Retried>(&format!("/deliveries/{id}/retry"), None) {
            Ok(answer) => out(&format!(
                "delivery {}: retried, {} now",
                answer.value.delivery_id, answer.value.state
            )),
            Err(ClientError::Api { message, .. }) => {
                refused += 1;
                eprintln!("delivery {id}: refused: {message}");
            }
            // Not running, a refused token, ...: the same for every id.
            Err(err) => return Err(err.into()),
        }
    }
    if refused > 0 {
        eprintln!(
            "posthorn: {refused} of {} retr{} refused",
            ids.len(),
            if ids.len() == 1 { "y was" } else { "ies were" }
        );
        return Ok(ExitCode::FAILURE);
    }
    Ok(ExitCode::SUCCESS)
}

fn retry_failed(
    subscription: &str,
    since: i64,
    include_cancelled: bool,
    api: &ApiArgs,
) -> Result<ExitCode, Failure> {
    let Connection { client, .. } = connect(api)?;
    let body = if include_cancelled {
        json!({ "since": since, "include_cancelled": true })
    } else {
        json!({ "since": since })
    };
    let answer: Answer<RetriedFailed> = client.post(
        &format!("/subscriptions/{}/retry-failed", path_segment(subscription)),
        Some(&body),
    )?;
    let n = answer.value.retried;
    out(&format!(
        "{subscription}: {n} failed{} deliver{} since {} retried",
        if include_cancelled {
            " or cancelled"
        } else {
            ""
        },
        if n == 1 { "y" } else { "ies" },
        client::time::format_ms(since)
    ));
    Ok(ExitCode::SUCCESS)
}

/// `posthorn test`.
pub fn test(subscription: &str, no_wait: bool, api: &ApiArgs) -> ExitCode {
    finish(send_test(subscription, no_wait, api))
}

fn send_test(subscription: &str, no_wait: bool, api: &ApiArgs) -> Result<ExitCode, Failure> {
    let Connection { client, config } = connect(api)?;
    let sent: Answer<TestSent> = client.post(
        &format!("/subscriptions/{}/test", path_segment(subscription)),
        None,
    )?;
    let TestSent {
        event_id,
        delivery_id,
    } = sent.value;
    out(&format!(
        "sent test event {event_id} to {subscription} as delivery {delivery_id}"
    ));
    if no_wait {
        eprintln!("follow it with: posthorn deliveries show {delivery_id}");
        return Ok(ExitCode::SUCCESS);
    }
    let timeout = config
        .map(|c| c.delivery.timeout)
        .unwrap_or_else(|| config::embedded_defaults().delivery.timeout);
    let limit = timeout + TEST_GRACE;
    let deadline = Instant::now() + limit;
    loop {
        let detail: Answer<DeliveryDetail> =
            client.get(&format!("/deliveries/{delivery_id}"), &[])?;
        if let Some(first) = detail.value.attempts.first() {
            out(&render::attempt_line(first));
            return Ok(if first.succeeded() {
                ExitCode::SUCCESS
            } else {
                ExitCode::FAILURE
            });
        }
        if Instant::now() >= deadline {
            eprintln!(
                "posthorn: no attempt finished within {} s (delivery {delivery_id} is {}); \
                     follow it with: posthorn deliveries show {delivery_id}",
                limit.as_secs(),
                detail.value.delivery.state
            );
            return Ok(ExitCode::FAILURE);
        }
        std::thread::sleep(TEST_POLL);
    }
}
