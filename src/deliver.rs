//! Delivery: the pool of blocking worker threads that sign and POST each claimed delivery
//! and classify what came back. It does not know where an event came from, and it never
//! touches the store: outcomes go back to the scheduler. Each worker stamps the start and
//! end of its attempts, so `/healthz` can tell a stuck pool.

use std::collections::HashMap;
use std::io::Read as _;
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant, SystemTime, UNIX_EPOCH};

use crossbeam_channel::{Receiver, Sender};
use ureq::http::Uri;
use ureq::unversioned::resolver::{DefaultResolver, ResolvedSocketAddrs, Resolver};
use ureq::unversioned::transport::{DefaultConnector, NextTimeout};

use crate::config::{DeliveryConfig, Signing, Subscription};
use crate::egress;
use crate::metrics::Metrics;
use crate::retry;
use crate::sign;
use crate::store::{AttemptRecord, Claimed, NextStep};

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
    let agent_config = config.clone();
    let agents = Arc::new(egress::Agents::new(move |policy| {
        build_agent(&agent_config, policy)
    }));
    metrics.liveness.workers_started(config.workers);
    (0..config.workers)
        .map(|n| {
            let (agents, jobs, finished) = (agents.clone(), jobs.clone(), finished.clone());
            let metrics = Arc::clone(&metrics);
            std::thread::Builder::new()
                .name(format!("deliver-{n}"))
                .spawn(move || {
                    for job in jobs {
                        metrics.liveness.attempt_started(n);
                        let agent = agents.for_networks(&job.subscription.allow_networks);
                        let record = attempt(&agent, &job);
                        metrics.liveness.attempt_finished(n);
                        let endpoint = job.subscription.url.clone();
                        let event_id = job.claimed.event_id.clone();
                        let done = Finished {
                            endpoint,
                            event_id,
                            record,
                        };
                        if finished.send(done).is_err() {
                            break;
                        }
                    }
                })
        })
        .collect()
}

/// One agent per allow list for the whole pool, so keep-alive connections are shared and
/// reused. Its resolver hands on only the addresses `policy` allows (see `egress`), and it
/// ignores `HTTP_PROXY`-style variables: through a proxy, the proxy would pick the
/// address and the guard could not see it.
fn build_agent(config: &DeliveryConfig, policy: egress::Policy) -> ureq::Agent {
    let config = ureq::Agent::config_builder()
        .timeout_global(Some(config.timeout))
        .max_redirects(0)
        .http_status_as_error(false)
        .user_agent(concat!("posthorn/", env!("CARGO_PKG_VERSION")))
        .max_idle_connections(config.workers.max(16))
        .max_idle_connections_per_host(config.max_in_flight_per_endpoint)
        .proxy(None)
        .build();
    ureq::Agent::with_parts(
        config,
        DefaultConnector::default(),
        egress::GuardedResolver::new(CachingResolver::default(), policy),
    )
}

/// How long a host's resolved addresses are reused before it is looked up again.
const RESOLVE_CACHE_TTL: Duration = Duration::from_secs(30);

/// Resolves each endpoint at most once per `RESOLVE_CACHE_TTL`. ureq asks its resolver
/// on every request, before it looks for a kept-alive connection, and its default
/// resolver spawns a thread per lookup when a timeout is set: without this cache every
/// attempt cost a thread and a `getaddrinfo` call, even on a reused connection.
/// (`Resolver` is in ureq's `unversioned` API, outside its semver promise: recheck this on
/// a ureq upgrade.)
#[derive(Debug, Default)]
struct CachingResolver {
    inner: DefaultResolver,
    cache: Mutex<HashMap<String, (Instant, ResolvedSocketAddrs)>>,
}

impl Resolver for CachingResolver {
    fn resolve(
        &self,
        uri: &Uri,
        config: &ureq::config::Config,
        timeout: NextTimeout,
    ) -> Result<ResolvedSocketAddrs, ureq::Error> {
        let Some(authority) = uri.authority() else {
            return self.inner.resolve(uri, config, timeout);
        };
        let key = format!("{}://{authority}", uri.scheme_str().unwrap_or_default());
        let cached = self.cache.lock().ok().and_then(|cache| {
            let (at, addrs) = cache.get(&key)?;
            (at.elapsed() < RESOLVE_CACHE_TTL).then(|| addrs.clone())
        });
        if let Some(addrs) = cached {
            return Ok(addrs);
        }
        // Failures are not cached: the next attempt looks the host up again.
        let addrs = self.inner.resolve(uri, config, timeout)?;
        if let Ok(mut cache) = self.cache.lock() {
            cache.retain(|_, (at, _)| at.elapsed() < RESOLVE_CACHE_TTL);
            cache.insert(key, (Instant::now(), addrs.clone()));
        }
        Ok(addrs)
    }
}

fn attempt(agent: &ureq::Agent, job: &Job) -> AttemptRecord {
    let started = SystemTime::now();
    let started_at_ms = unix_ms(started);
    let clock = Instant::now();
    let response = post(agent, job, unix_secs(started));
    let duration_ms = clock.elapsed().as_millis() as i64;
    let next = next_step(
        &response,
        &job.schedule,
        job.claimed.attempt,
        started_at_ms + duration_ms,
        rand::random::<f64>(),
    );
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
    AttemptRecord {
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
    }
}

fn post(agent: &ureq::Agent, job: &Job, timestamp: i64) -> Response {
    // What this subscription is sent of the stored body; the signature covers it.
    let body = match job.subscription.shaping.body(&job.claimed.body) {
        Ok(body) => body,
        Err(err) => return unsendable(format!("the body could not be shaped: {err}")),
    };
    let body = body.as_bytes();
    let mut request = agent.post(&job.subscription.url);
    if let Some(timeout) = job.subscription.timeout {
        // The subscription's own `timeout` replaces `[delivery] timeout` for its attempts.
        request = request.config().timeout_global(Some(timeout)).build();
    }
    for (name, value) in request_headers(&job.subscription, &job.claimed.event_id, timestamp, body)
    {
        request = request.header(name, value);
    }
    match request.send(body) {
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
        Err(err) => Response {
            status: None,
            error: Some(describe(&err)),
            snippet: None,
            retry_after: None,
        },
    }
}

/// An attempt that sent nothing: it fails (and is retried) like a network error.
fn unsendable(error: String) -> Response {
    Response {
        status: None,
        error: Some(error),
        snippet: None,
        retry_after: None,
    }
}

fn describe(err: &ureq::Error) -> String {
    if let Some(refusal) = egress::refusal(err) {
        return refusal.to_string();
    }
    match err {
        ureq::Error::Timeout(which) => format!("timed out ({which})"),
        ureq::Error::HostNotFound => "host not found (DNS lookup failed)".into(),
        ureq::Error::ConnectionFailed => "connection failed".into(),
        ureq::Error::Io(io) => format!("network error: {io}"),
        other => other.to_string(),
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
            pacing: Default::default(),
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

    #[test]
    fn resolved_addresses_are_reused_per_endpoint() {
        let resolver = CachingResolver::default();
        let config = ureq::config::Config::default();
        let timeout = NextTimeout::default();
        let uri: Uri = "http://127.0.0.1:9/hook".parse().unwrap();
        let first = resolver.resolve(&uri, &config, timeout).unwrap();
        let again = resolver.resolve(&uri, &config, timeout).unwrap();
        assert_eq!(&*first, &*again);
        assert_eq!(first.first().map(|a| a.port()), Some(9));
        assert_eq!(resolver.cache.lock().unwrap().len(), 1);
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
