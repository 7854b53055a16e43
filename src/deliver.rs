//! Delivery: the pool of blocking worker threads that sign and POST each claimed delivery
//! and classify what came back. It does not know where an event came from, and it never
//! touches the store: outcomes go back to the scheduler. Each worker stamps the start and
//! end of its attempts, so `/healthz` can tell a stuck pool.

use std::io::Read as _;
use std::sync::Arc;
use std::time::{Duration, Instant, SystemTime, UNIX_EPOCH};

use crossbeam_channel::{Receiver, Sender};

use crate::config::{DeliveryConfig, Signing, Subscription};
use crate::format::{self, Rendered};
use crate::metrics::Metrics;
use crate::retry;
use crate::sign;
use crate::store::{AttemptRecord, Claimed, NextStep};
use crate::transport::Reach;

/// How much of a receiver's answer is kept with the attempt.
pub const RESPONSE_SNIPPET_BYTES: usize = 4096;
/// How much of a response body is read (and thrown away past the snippet) so the
/// connection can be reused; a larger body closes the connection instead.
const RESPONSE_DRAIN_BYTES: u64 = 64 * 1024;

/// One delivery for a worker to attempt.
pub struct Job {
    pub claimed: Claimed,
    pub subscription: Arc<Subscription>,
    /// `delivery.schedule` when the job was handed out (it may change at a reload).
    pub schedule: Arc<[Duration]>,
}

/// A finished attempt, with the endpoint it occupied so the scheduler can free it.
pub struct Finished {
    pub endpoint: String,
    /// The delivered event's id (receiver health tells posthorn's own events apart).
    pub event_id: String,
    pub record: AttemptRecord,
    /// `false` when nothing was sent (the body could not be rendered): not the
    /// receiver's doing, so receiver health leaves it out.
    pub sent: bool,
}

/// What one HTTP attempt produced.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Response {
    pub status: Option<u16>,
    pub error: Option<String>,
    pub snippet: Option<String>,
    pub retry_after: Option<Duration>,
}

/// The headers of one attempt, signature included. `timestamp` is unix seconds and is
/// fresh for every attempt; `webhook-id` is the event id on every attempt.
pub fn request_headers(
    subscription: &Subscription,
    event_id: &str,
    timestamp: i64,
    body: &[u8],
) -> Vec<(String, String)> {
    let mut headers = vec![("Content-Type".to_string(), "application/json".to_string())];
    match &subscription.signing {
        Signing::Standard { keys } => {
            headers.push(("webhook-id".into(), event_id.into()));
            headers.push(("webhook-timestamp".into(), timestamp.to_string()));
            headers.push((
                "webhook-signature".into(),
                sign::standard_signature(keys, event_id, timestamp, body),
            ));
        }
        Signing::Ed25519 { keys } => {
            headers.push(("webhook-id".into(), event_id.into()));
            headers.push(("webhook-timestamp".into(), timestamp.to_string()));
            headers.push((
                "webhook-signature".into(),
                sign::v1a_signature(keys, event_id, timestamp, body),
            ));
        }
        Signing::Hex {
            key,
            header,
            prefix,
        } => {
            headers.push(("webhook-id".into(), event_id.into()));
            headers.push(("webhook-timestamp".into(), timestamp.to_string()));
            headers.push((
                header.clone(),
                format!("{prefix}{}", sign::hex_signature(key, body)),
            ));
        }
    }
    headers.extend(subscription.headers.iter().cloned());
    headers
}

/// [`request_headers`] for a rendered body, with its content type.
pub fn rendered_headers(
    subscription: &Subscription,
    event_id: &str,
    timestamp: i64,
    rendered: &Rendered,
) -> Vec<(String, String)> {
    let mut headers = request_headers(subscription, event_id, timestamp, &rendered.body);
    for (name, value) in headers.iter_mut() {
        if name == "Content-Type" {
            *value = rendered.content_type.to_string();
        }
    }
    headers
}

/// Decides what follows an attempt: 2xx is delivered; anything else retries per the
/// schedule, honouring `Retry-After` on 429 and 503, until the schedule is used up.
/// 410 Gone never kills a delivery: it pauses the subscription (`receivers.rs`), and the
/// delivery waits its next retry (the last wait once the schedule is used up), to be
/// sent once the subscription is resumed.
pub fn next_step(
    response: &Response,
    schedule: &[Duration],
    attempt: u32,
    finished_at_ms: i64,
    jitter: f64,
) -> NextStep {
    if response.status.is_some_and(|s| (200..300).contains(&s)) {
        return NextStep::Delivered;
    }
    let retry_after = match response.status {
        Some(429 | 503) => response.retry_after,
        _ => None,
    };
    let wait = retry::next_retry_delay(schedule, attempt, retry_after, jitter);
    let wait = match (wait, response.status) {
        (None, Some(410)) => Some(schedule.last().copied().unwrap_or_default()),
        (wait, _) => wait,
    };
    match wait {
        Some(wait) => NextStep::RetryAt(finished_at_ms + wait.as_millis() as i64),
        None => NextStep::Dead,
    }
}

/// Starts `config.workers` threads that take jobs until the channel closes.
pub fn spawn_workers(
    config: &DeliveryConfig,
    jobs: Receiver<Job>,
    finished: Sender<Finished>,
    metrics: Arc<Metrics>,
) -> std::io::Result<Vec<std::thread::JoinHandle<()>>> {
    // One agent per route for the whole pool, so keep-alive connections are shared (see
    // `transport`).
    let reach = Arc::new(Reach::new(config));
    let default_timeout = config.timeout;
    metrics.liveness.workers_started(config.workers);
    (0..config.workers)
        .map(|n| {
            let (reach, jobs, finished) = (reach.clone(), jobs.clone(), finished.clone());
            let metrics = Arc::clone(&metrics);
            std::thread::Builder::new()
                .name(format!("deliver-{n}"))
                .spawn(move || {
                    for job in jobs {
                        metrics.liveness.attempt_started(n);
                        let (record, sent) = attempt(&reach, &job, default_timeout);
                        metrics.liveness.attempt_finished(n);
                        let endpoint = job.subscription.url.clone();
                        let event_id = job.claimed.event_id.clone();
                        let done = Finished {
                            endpoint,
                            event_id,
                            record,
                            sent,
                        };
                        if finished.send(done).is_err() {
                            break;
                        }
                    }
                })
        })
        .collect()
}

fn attempt(reach: &Reach, job: &Job, default_timeout: Duration) -> (AttemptRecord, bool) {
    let started = SystemTime::now();
    let started_at_ms = unix_ms(started);
    let clock = Instant::now();
    let (response, sent) = match format::outgoing(&job.subscription, &job.claimed.body) {
        Ok(rendered) => (
            post(reach, job, &rendered, unix_secs(started), default_timeout),
            true,
        ),
        Err(err) => (
            Response {
                status: None,
                error: Some(err.to_string()),
                snippet: None,
                retry_after: None,
            },
            false,
        ),
    };
    let duration_ms = clock.elapsed().as_millis() as i64;
    // A body that cannot be shaped or rendered fails the same way every time: dead at
    // once.
    let next = match sent {
        true => next_step(
            &response,
            &job.schedule,
            job.claimed.attempt,
            started_at_ms + duration_ms,
            rand::random::<f64>(),
        ),
        false => NextStep::Dead,
    };
    match next {
        NextStep::Delivered => {}
        NextStep::RetryAt(_) | NextStep::Dead => tracing::info!(
            subscription = %job.subscription.name,
            event = %job.claimed.event_id,
            attempt = job.claimed.attempt,
            status = response.status,
            error = response.error.as_deref().unwrap_or(""),
            dead = next == NextStep::Dead,
            "delivery attempt failed"
        ),
    }
    let record = AttemptRecord {
        delivery_id: job.claimed.delivery_id,
        subscription: job.claimed.subscription.clone(),
        attempt: job.claimed.attempt,
        started_at_ms,
        duration_ms,
        status: response.status,
        error: response.error,
        response_snippet: response.snippet,
        shaping: job.subscription.shaping.fingerprint().map(String::from),
        next,
    };
    (record, sent)
}

fn post(
    reach: &Reach,
    job: &Job,
    rendered: &Rendered,
    timestamp: i64,
    default_timeout: Duration,
) -> Response {
    let body: &[u8] = &rendered.body;
    let headers = rendered_headers(
        &job.subscription,
        &job.claimed.event_id,
        timestamp,
        rendered,
    );
    // The subscription's own `timeout` replaces `[delivery] timeout` for its attempts.
    let timeout = job.subscription.timeout.unwrap_or(default_timeout);
    match reach.send(&job.subscription, rendered.url, &headers, body, timeout) {
        Ok(mut response) => {
            let status = response.status().as_u16();
            let retry_after = response
                .headers()
                .get("retry-after")
                .and_then(|v| v.to_str().ok())
                .and_then(|v| retry::parse_retry_after(v, SystemTime::now()));
            let mut bytes = Vec::new();
            let read = response
                .body_mut()
                .as_reader()
                .take(RESPONSE_DRAIN_BYTES)
                .read_to_end(&mut bytes);
            let error = match (read, status) {
                (Err(err), _) => Some(format!("reading the response body failed: {err}")),
                (Ok(_), 300..=399) => Some(format!(
                    "redirects are not followed (Location: {})",
                    response
                        .headers()
                        .get("location")
                        .and_then(|v| v.to_str().ok())
                        .unwrap_or("none")
                )),
                _ => None,
            };
            bytes.truncate(RESPONSE_SNIPPET_BYTES);
            let snippet = (!bytes.is_empty()).then(|| String::from_utf8_lossy(&bytes).into_owned());
            Response {
                status: Some(status),
                error,
                snippet,
                retry_after,
            }
        }
        Err(error) => Response {
            status: None,
            error: Some(error),
            snippet: None,
            retry_after: None,
        },
    }
}

fn unix_ms(at: SystemTime) -> i64 {
    at.duration_since(UNIX_EPOCH)
        .map(|d| d.as_millis() as i64)
        .unwrap_or(0)
}

fn unix_secs(at: SystemTime) -> i64 {
    at.duration_since(UNIX_EPOCH)
        .map(|d| d.as_secs() as i64)
        .unwrap_or(0)
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::routing::Pattern;
    use crate::sign::SigningKey;

    fn subscription(signing: Signing) -> Subscription {
        Subscription {
            name: "s".into(),
            url: "http://127.0.0.1/".into(),
            conversations: vec![Pattern::new("*")],
            projects: vec![],
            events: vec![Pattern::new("*")],
            signing,
            headers: vec![("X-Team".into(), "north".into())],
            enabled: true,
            allow_networks: Vec::new(),
            timeout: None,
            auto_pause_after: None,
            renamed_from: None,
            pacing: Default::default(),
            transport: Default::default(),
            format: Default::default(),
            shaping: Default::default(),
        }
    }

    #[test]
    fn standard_headers_carry_id_timestamp_and_signature() {
        let key = SigningKey::from_whsec("whsec_MfKQ9r8GKYqrTwjUPD8ILPZIo2LaLaSw").unwrap();
        let sub = subscription(Signing::Standard { keys: vec![key] });
        let headers = request_headers(
            &sub,
            "msg_p5jXN8AQM9LWM0D4loKWxJek",
            1614265330,
            br#"{"test": 2432232314}"#,
        );
        let get = |name: &str| {
            headers
                .iter()
                .find(|(n, _)| n == name)
                .map(|(_, v)| v.as_str())
        };
        assert_eq!(get("webhook-id"), Some("msg_p5jXN8AQM9LWM0D4loKWxJek"));
        assert_eq!(get("webhook-timestamp"), Some("1614265330"));
        assert_eq!(
            get("webhook-signature"),
            Some("v1,g0hM9SsE+OTPJTGt/tmIKtSyZlE3uFJELVlNIOLJ1OE=")
        );
        assert_eq!(get("Content-Type"), Some("application/json"));
        assert_eq!(get("X-Team"), Some("north"));
    }

    #[test]
    fn hex_headers_use_the_configured_name_and_prefix() {
        let sub = subscription(Signing::Hex {
            key: SigningKey::from_utf8("Jefe"),
            header: "X-Dembrane-Signature".into(),
            prefix: "sha256=".into(),
        });
        let headers = request_headers(&sub, "e", 1, b"what do ya want for nothing?");
        assert!(headers.contains(&(
            "X-Dembrane-Signature".into(),
            "sha256=5bdcc146bf60754e6a042426089575c75a003f089d2739839dec58b964ec3843".into()
        )));
    }

    fn response(status: Option<u16>, retry_after: Option<Duration>) -> Response {
        Response {
            status,
            error: None,
            snippet: None,
            retry_after,
        }
    }

    #[test]
    fn outcomes_are_classified() {
        let schedule = [Duration::from_secs(10), Duration::from_secs(20)];
        assert_eq!(
            next_step(&response(Some(204), None), &schedule, 1, 0, 0.5),
            NextStep::Delivered
        );
        assert_eq!(
            next_step(&response(Some(500), None), &schedule, 1, 0, 0.5),
            NextStep::RetryAt(10_000)
        );
        assert_eq!(
            next_step(&response(None, None), &schedule, 2, 0, 0.5),
            NextStep::RetryAt(20_000)
        );
        assert_eq!(
            next_step(&response(Some(302), None), &schedule, 3, 0, 0.5),
            NextStep::Dead
        );
        let later = Some(Duration::from_secs(2));
        assert_eq!(
            next_step(&response(Some(429), later), &schedule, 1, 0, 0.5),
            NextStep::RetryAt(2_000)
        );
        assert_eq!(
            next_step(&response(Some(503), later), &schedule, 1, 0, 0.5),
            NextStep::RetryAt(2_000)
        );
        // Retry-After only counts on 429 and 503.
        assert_eq!(
            next_step(&response(Some(500), later), &schedule, 1, 0, 0.5),
            NextStep::RetryAt(10_000)
        );
        // 410 Gone pauses the subscription instead of killing the delivery.
        assert_eq!(
            next_step(&response(Some(410), None), &schedule, 1, 0, 0.5),
            NextStep::RetryAt(10_000)
        );
        assert_eq!(
            next_step(&response(Some(410), None), &schedule, 3, 5, 0.5),
            NextStep::RetryAt(20_005)
        );
        assert_eq!(
            next_step(&response(Some(410), None), &[], 1, 5, 0.5),
            NextStep::RetryAt(5)
        );
    }
}
