//! The scheduler: claims due deliveries from the store (a lease, so a crash cannot lose
//! one), hands them to the worker pool without exceeding a free worker or an endpoint's
//! in-flight cap, and writes finished attempts back in batches. Every turn of its loop
//! (at least one a second) stamps a heartbeat that `/healthz` checks.

use std::collections::HashMap;
use std::sync::Arc;
use std::time::{Duration, Instant};

use crossbeam_channel::{select, Receiver, Sender};

use crate::config::Subscription;
use crate::deliver::{Finished, Job};
use crate::receivers::Monitor;
use crate::reload::Live;
use crate::store::{ClaimRequest, StoreHandle};

/// Longest the scheduler sleeps without looking at the store, as a safety net.
const IDLE_POLL: Duration = Duration::from_secs(1);

pub struct Scheduler {
    store: StoreHandle,
    /// Read at each dispatch, so a reload applies from the next claim; attempts already
    /// handed out keep the subscription they were started with.
    live: Live,
    jobs: Sender<Job>,
    in_flight: usize,
    in_flight_by_endpoint: HashMap<String, usize>,
    /// Rotates which subscription is offered capacity first, for fairness.
    round: usize,
    /// Receiver health: breakers, 410 and auto-pause, the global switch.
    health: Monitor,
}

/// How the scheduler is told to stop: it stops claiming, waits up to `grace` for
/// in-flight attempts, records them, and returns.
pub struct Stop {
    pub grace: Duration,
}

impl Scheduler {
    pub fn new(store: StoreHandle, live: Live, jobs: Sender<Job>) -> Self {
        Scheduler {
            store: store.clone(),
            live: live.clone(),
            jobs,
            in_flight: 0,
            in_flight_by_endpoint: HashMap::new(),
            round: 0,
            health: Monitor::new(store.clone(), live.clone()),
        }
    }

    pub fn run(
        mut self,
        new_work: Receiver<()>,
        finished: Receiver<Finished>,
        stop: Receiver<Stop>,
    ) {
        let mut next_look = Instant::now();
        loop {
            self.store.metrics().liveness.scheduler_turned();
            let wait = next_look.saturating_duration_since(Instant::now());
            let mut records = Vec::new();
            select! {
                recv(new_work) -> _ => next_look = Instant::now(),
                recv(finished) -> done => if let Ok(done) = done {
                    self.release(&done);
                    records.push(done.record);
                },
                recv(stop) -> stop => {
                    let grace = stop.map(|s| s.grace).unwrap_or_default();
                    self.drain(&finished, grace);
                    return;
                },
                default(wait) => {},
            }
            records.extend(finished.try_iter().map(|done| {
                self.release(&done);
                done.record
            }));
            let freed = !records.is_empty();
            self.store.record(records);
            if freed || Instant::now() >= next_look {
                next_look = self.dispatch_due();
            }
        }
    }

    /// Claims as much due work as there is capacity for and returns when to look again.
    fn dispatch_due(&mut self) -> Instant {
        let now_ms = crate::store::now_ms();
        let settings = self.live.load();
        let config = &settings.delivery;
        // HEALTH HOOK (c): delivery switched off (config or "pause all"): claim nothing;
        // events are still taken in and stored.
        if !self.health.delivery_on(config) {
            return Instant::now() + IDLE_POLL;
        }
        // Disabled (config) and paused (admin page) subscriptions keep their pending
        // deliveries but get none sent.
        let subscriptions: Vec<&Arc<Subscription>> = settings
            .subscriptions
            .iter()
            .filter(|s| s.enabled && !self.store.is_paused(&s.name))
            .collect();
        // The lease covers the longest attempt any subscription may make.
        let longest =
            crate::config::longest_timeout(config, settings.subscriptions.iter().map(|s| &**s));
        let lease = longest * 2 + Duration::from_secs(30);
        let mut free = config.workers.saturating_sub(self.in_flight);
        let mut free_by_endpoint: HashMap<&str, usize> = HashMap::new();
        let mut requests = Vec::new();
        let count = subscriptions.len();
        for i in 0..count {
            let subscription = subscriptions[(self.round + i) % count];
            let endpoint_free = free_by_endpoint
                .entry(subscription.url.as_str())
                .or_insert_with(|| {
                    let used = self
                        .in_flight_by_endpoint
                        .get(&subscription.url)
                        .copied()
                        .unwrap_or(0);
                    // HEALTH HOOK (a): the breaker limits the endpoint's cap (0 while
                    // open, 1 probe while half-open).
                    let cap = self
                        .health
                        .endpoint_allowance(&subscription.url, config.max_in_flight_per_endpoint);
                    cap.saturating_sub(used)
                });
            let limit = free.min(*endpoint_free);
            *endpoint_free -= limit;
            free -= limit;
            if limit > 0 {
                requests.push(ClaimRequest {
                    subscription: subscription.name.clone(),
                    limit,
                });
            }
        }
        self.round = self.round.wrapping_add(1);
        if requests.is_empty() {
            // No capacity anywhere: a finishing attempt wakes us.
            return Instant::now() + IDLE_POLL;
        }

        let result = match self
            .store
            .claim(requests, now_ms, now_ms + lease.as_millis() as i64)
        {
            Ok(result) => result,
            Err(err) => {
                tracing::error!(%err, "could not claim due deliveries; trying again shortly");
                return Instant::now() + IDLE_POLL;
            }
        };
        let by_name: HashMap<&str, &Arc<Subscription>> = subscriptions
            .iter()
            .map(|s| (s.name.as_str(), *s))
            .collect();
        let mut jobs = Vec::with_capacity(result.claimed.len());
        for claimed in result.claimed {
            if let Some(subscription) = by_name.get(claimed.subscription.as_str()) {
                jobs.push(Job {
                    claimed,
                    subscription: Arc::clone(subscription),
                    schedule: Arc::clone(&settings.schedule),
                });
            }
        }
        for job in jobs {
            self.in_flight += 1;
            *self
                .in_flight_by_endpoint
                .entry(job.subscription.url.clone())
                .or_default() += 1;
            if self.jobs.send(job).is_err() {
                tracing::error!(
                    "the worker pool has stopped; the delivery stays leased until restart"
                );
            }
        }
        let next_due = result
            .next_due_ms
            .map(|at| Duration::from_millis(at.saturating_sub(now_ms).max(0) as u64))
            .unwrap_or(IDLE_POLL);
        Instant::now() + next_due.min(IDLE_POLL)
    }

    fn release(&mut self, done: &Finished) {
        // HEALTH HOOK (b): every finished attempt feeds breakers, 410 and auto-pause.
        self.health.observe(done);
        self.in_flight = self.in_flight.saturating_sub(1);
        if let Some(count) = self.in_flight_by_endpoint.get_mut(&done.endpoint) {
            *count = count.saturating_sub(1);
        }
    }

    /// Waits (bounded) for attempts already handed out, recording each as it finishes.
    fn drain(&mut self, finished: &Receiver<Finished>, grace: Duration) {
        let deadline = Instant::now() + grace;
        while self.in_flight > 0 {
            let left = deadline.saturating_duration_since(Instant::now());
            match finished.recv_timeout(left) {
                Ok(done) => {
                    self.release(&done);
                    self.store.record(vec![done.record]);
                }
                Err(_) => {
                    tracing::warn!(
                        in_flight = self.in_flight,
                        "stopping with attempts still in flight; they stay leased and are retried at the next start"
                    );
                    return;
                }
            }
        }
    }
}
