//! The scheduler: claims due deliveries from the store (a lease, so a crash cannot lose
//! one), hands them to the worker pool without exceeding a free worker, an endpoint's
//! in-flight cap or a subscription's rate limit, and writes finished attempts back in
//! batches. Every turn of its loop (at least one a second) stamps a heartbeat that
//! `/healthz` checks.
//!
//! It is work-conserving: it keeps in memory when each subscription next has work due
//! (fed by the store's hints after each ingest, by the outcome of each attempt, and by
//! what each claim says is next), claims only for subscriptions with work due, and
//! claims again until the free capacity or the due work runs out. Free workers are
//! shared out in turn, so a busy subscription cannot starve the others, and a slow or
//! failing endpoint occupies at most its own cap.

mod batch;
mod rate;

use std::collections::{HashMap, HashSet};
use std::sync::Arc;
use std::time::{Duration, Instant};

use crossbeam_channel::{select, Receiver, Sender};

use crate::config::{OnDead, Ordering, Subscription};
use crate::deliver::{Finished, Job};
use crate::receivers::Monitor;
use crate::reload::{Live, Settings};
use crate::store::{
    AttemptRecord, ClaimRequest, ClusterLimits, Line, NextStep, ReaderPool, StoreHandle,
};
use rate::RateWindow;

/// Longest the scheduler sleeps without going round its loop (the heartbeat).
const IDLE_POLL: Duration = Duration::from_secs(1);
/// How often every subscription is looked at in the store, whatever the memory says: a
/// safety net should a change reach the store by a way that sends no hint.
const RESYNC_EVERY: Duration = Duration::from_secs(15);
/// The same on a store other nodes share: they add work and change pauses without a
/// hint reaching this node, and take over a dead node's work only when they look.
const SHARED_RESYNC_EVERY: Duration = Duration::from_secs(1);
/// Most claims in one dispatch; each claim that fills its limit may be followed by one
/// more while workers stay free.
const MAX_CLAIMS_PER_DISPATCH: usize = 8;
/// `due_at` of a subscription with nothing waiting: only a hint or an outcome wakes it.
const NEVER: i64 = i64::MAX;
/// Longest an outcome waits for company before it is written: outcomes that finish close
/// together share one commit (and one fsync) with each other or with a claim that needs
/// them. A crash in that window only means the attempt is made again (at least once).
/// Nothing waits on it: the next attempt is claimed without it (see `batch`).
const RECORD_DELAY: Duration = Duration::from_millis(25);
/// Outcomes written at once, whatever their age.
const RECORD_BATCH: usize = 256;

pub struct Scheduler {
    store: StoreHandle,
    /// Read at each dispatch, so a reload applies from the next claim; attempts already
    /// handed out keep the subscription they were started with.
    live: Live,
    jobs: Sender<Job>,
    /// The store, to read back recent attempt starts for rate limits.
    store_reader: Option<ReaderPool>,
    in_flight: usize,
    in_flight_by_endpoint: HashMap<String, usize>,
    /// When each subscription may next have work due (unix ms); a subscription missing
    /// here is looked at in the store at once.
    due_at: HashMap<String, i64>,
    /// The recent starts of each subscription with a rate limit.
    windows: HashMap<String, RateWindow>,
    /// Rotates which subscription is offered capacity first, for fairness.
    round: usize,
    last_resync: Instant,
    /// Finished attempts not yet sent to the store, and when the oldest finished.
    unrecorded: Vec<AttemptRecord>,
    unrecorded_since: Option<Instant>,
    /// The ordered subscriptions the store was last told of (serve tells it at start),
    /// and the settings they were taken from.
    ordered: Option<HashSet<String>>,
    ordered_from: Option<Arc<Settings>>,
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
            health: Monitor::new(store.clone(), live.clone()),
            store,
            live,
            jobs,
            store_reader: None,
            in_flight: 0,
            in_flight_by_endpoint: HashMap::new(),
            due_at: HashMap::new(),
            windows: HashMap::new(),
            round: 0,
            last_resync: Instant::now(),
            unrecorded: Vec::new(),
            unrecorded_since: None,
            ordered: None,
            ordered_from: None,
        }
    }

    /// Seeds rate-limit windows from the attempts kept in the store, so a restart does
    /// not start a subscription's window empty.
    pub fn with_store_reader(mut self, reader: ReaderPool) -> Self {
        self.store_reader = Some(reader);
        self
    }

    pub fn run(
        mut self,
        new_work: Receiver<()>,
        finished: Receiver<Finished>,
        stop: Receiver<Stop>,
    ) {
        let mut wake_at = Instant::now();
        loop {
            self.store.metrics().liveness.scheduler_turned();
            let wait = wake_at
                .saturating_duration_since(Instant::now())
                .min(IDLE_POLL);
            let mut records = Vec::new();
            select! {
                recv(new_work) -> _ => {},
                recv(finished) -> done => if let Ok(done) = done {
                    records.push(done);
                },
                recv(stop) -> stop => {
                    let grace = stop.map(|s| s.grace).unwrap_or_default();
                    self.flush_records();
                    self.drain(&finished, grace);
                    return;
                },
                default(wait) => {},
            }
            records.extend(finished.try_iter());
            self.take_hints();
            let records = self.finish(records);
            if !records.is_empty() {
                self.unrecorded_since.get_or_insert_with(Instant::now);
                self.unrecorded.extend(records);
            }
            let resync_every = if self.store.is_shared() {
                SHARED_RESYNC_EVERY
            } else {
                RESYNC_EVERY
            };
            if self.last_resync.elapsed() >= resync_every {
                self.last_resync = Instant::now();
                self.due_at.clear();
                self.adopt_shared_switches();
            }
            wake_at = self.dispatch();
            match self.unrecorded_since {
                Some(since)
                    if since.elapsed() >= RECORD_DELAY || self.unrecorded.len() >= RECORD_BATCH =>
                {
                    self.flush_records()
                }
                Some(since) => wake_at = wake_at.min(since + RECORD_DELAY),
                None => {}
            }
        }
    }

    /// Outcomes the next claim depends on go with it, sharing its commit; the rest wait
    /// for company (see `batch::claim_needs`). On a shared store every outcome goes: the
    /// claim counts each node's unanswered leases as attempts in flight, and a finished
    /// attempt's lease holds its endpoint slot until its outcome reaches the store
    /// (which counts it as finished from then on, before the commit: `claimer.rs`).
    fn flush_records_before_claim(&mut self) {
        let shared = self.store.is_shared() && !self.unrecorded.is_empty();
        if shared || batch::claim_needs(&self.unrecorded, self.ordered.as_ref()) {
            self.flush_records();
        }
    }

    /// Sends the outcomes held so far to the store (it writes them before any command
    /// sent after them, so on SQLite a claim sent next shares their commit and sees
    /// them).
    fn flush_records(&mut self) {
        self.unrecorded_since = None;
        self.store.record(std::mem::take(&mut self.unrecorded));
    }

    /// Marks the subscriptions the store says got work as due now.
    fn take_hints(&mut self) {
        let noted = self.store.due_hints().take();
        let now = crate::store::now_ms();
        if noted.everything {
            self.due_at.clear();
        }
        for name in noted.subscriptions {
            self.due_at.insert(name, now);
        }
    }

    /// A reload may switch ordering on or off: tells the store, which lines up the new
    /// deliveries of ordered subscriptions.
    fn note_ordering(&mut self, settings: &Arc<Settings>) {
        if self
            .ordered_from
            .as_ref()
            .is_some_and(|seen| Arc::ptr_eq(seen, settings))
        {
            return;
        }
        self.ordered_from = Some(Arc::clone(settings));
        let ordered = ordered_subscriptions(&settings.subscriptions);
        if self.ordered.as_ref() != Some(&ordered) {
            if self.ordered.is_some() {
                self.store.set_ordered(ordered.clone());
            }
            self.ordered = Some(ordered);
        }
    }

    /// Frees the capacity finished attempts held and notes what their outcome makes due.
    fn finish(&mut self, done: Vec<Finished>) -> Vec<AttemptRecord> {
        if done.is_empty() {
            return Vec::new();
        }
        let now = crate::store::now_ms();
        self.note_ordering(&self.live.load());
        let ordered = self.ordered.take().unwrap_or_default();
        let records = done
            .into_iter()
            .map(|done| {
                self.release(&done);
                let record = done.record;
                let due = match record.next {
                    NextStep::RetryAt(at) => Some(at),
                    // The next delivery of the conversation may go now.
                    NextStep::Delivered | NextStep::Dead
                        if ordered.contains(&record.subscription) =>
                    {
                        Some(now)
                    }
                    NextStep::Delivered | NextStep::Dead => None,
                };
                // A subscription missing from `due_at` is looked at now anyway.
                if let (Some(at), Some(entry)) = (due, self.due_at.get_mut(&record.subscription)) {
                    *entry = (*entry).min(at);
                }
                record
            })
            .collect();
        self.ordered = Some(ordered);
        records
    }

    /// The subscriptions that may be dispatched at all: enabled in the config and not
    /// paused from the admin page (paused ones keep their pending deliveries). The one
    /// place to add a reason to send nothing.
    fn dispatchable<'a>(&self, settings: &'a Settings) -> Vec<&'a Arc<Subscription>> {
        settings
            .subscriptions
            .iter()
            .filter(|s| s.enabled && !self.store.is_paused(&s.name))
            .collect()
    }

    /// The in-flight cap of `url` (narrowed by its circuit breaker: none while open, one
    /// probe while half-open), and how many more attempts it may take now from this node:
    /// the cap less what it holds. The one place that decides an endpoint's share.
    fn endpoint_allowance(&mut self, url: &str, cap: usize) -> (usize, usize) {
        let cap = self.health.endpoint_allowance(url, cap);
        let used = self.in_flight_by_endpoint.get(url).copied().unwrap_or(0);
        (cap, cap.saturating_sub(used))
    }

    /// How many attempts of `subscription` its rate limit lets start at `now_ms`
    /// (`usize::MAX` without a limit); when it lets none, notes when it will.
    fn rate_allowance(&mut self, subscription: &Subscription, now_ms: i64) -> usize {
        let Some(limit) = subscription.pacing.rate_limit else {
            return usize::MAX;
        };
        let window = match self.windows.get_mut(&subscription.name) {
            Some(window) => window,
            None => {
                let seeded = self.seed_window(subscription, limit, now_ms);
                self.windows
                    .entry(subscription.name.clone())
                    .or_insert(seeded)
            }
        };
        let allowed = window.allowance(limit, now_ms);
        if allowed == 0 {
            let slot = window.next_slot(limit, now_ms);
            self.due_at.insert(subscription.name.clone(), slot);
        }
        allowed
    }

    fn seed_window(
        &self,
        subscription: &Subscription,
        limit: crate::config::RateLimit,
        now_ms: i64,
    ) -> RateWindow {
        let Some(store) = &self.store_reader else {
            return RateWindow::default();
        };
        let since = now_ms - limit.per.as_millis() as i64 - 1_000;
        let starts = store
            .with(|reader| reader.attempt_starts(&subscription.name, since, limit.count as usize))
            .and_then(|starts| starts);
        match starts {
            Ok(starts) => RateWindow::seeded(starts),
            Err(err) => {
                tracing::warn!(
                    subscription = %subscription.name,
                    "could not read recent attempts for the rate limit; its window starts empty: {err:#}"
                );
                RateWindow::default()
            }
        }
    }

    /// On a shared store: takes the pauses and the global switch other nodes may have
    /// changed. (The claim itself skips what is paused; this keeps the page, the metrics
    /// and the switch's own idling in step.)
    fn adopt_shared_switches(&self) {
        let (true, Some(store)) = (self.store.is_shared(), &self.store_reader) else {
            return;
        };
        match store.with(|reader| reader.switches()).and_then(|read| read) {
            Ok((paused, delivery_paused)) => self.store.adopt_switches(paused, delivery_paused),
            Err(err) => tracing::warn!("could not read the pauses other nodes set: {err:#}"),
        }
    }

    /// Claims as much due work as there is capacity for, and returns when to look again.
    fn dispatch(&mut self) -> Instant {
        let settings = self.live.load();
        let config = &settings.delivery;
        self.note_ordering(&settings);
        // Delivery switched off (config or "pause all"): claim nothing; events are still
        // taken in and stored.
        if !self.health.delivery_on(config) {
            return Instant::now() + IDLE_POLL;
        }
        let subscriptions = self.dispatchable(&settings);
        // The lease covers the longest attempt any subscription may make.
        let longest =
            crate::config::longest_timeout(config, settings.subscriptions.iter().map(|s| &**s));
        let lease = longest * 2 + Duration::from_secs(30);
        for claims in 1.. {
            if claims > MAX_CLAIMS_PER_DISPATCH {
                // More may be due: go round again at once (after the heartbeat and any
                // finished attempts) rather than wait.
                return Instant::now();
            }
            let now_ms = crate::store::now_ms();
            // A rate limit counts an attempt as started when it is handed out: while one
            // has work due, nothing waits in the queue, so that it starts at once.
            let queue = !self.rate_limited_due(&subscriptions, now_ms);
            let Some(free) = batch::claim_room(config.workers, self.in_flight, queue) else {
                break;
            };
            let (order, requests, endpoint_budgets) = self.share_out(&subscriptions, free, now_ms);
            if requests.is_empty() {
                break;
            }
            let asked: Vec<String> = requests.iter().map(|r| r.subscription.clone()).collect();
            let lease_until = now_ms + lease.as_millis() as i64;
            self.flush_records_before_claim();
            let result = match self.store.claim_within(
                requests,
                free,
                endpoint_budgets,
                now_ms,
                lease_until,
            ) {
                Ok(result) => result,
                Err(err) => {
                    tracing::error!(%err, "could not claim due deliveries; trying again shortly");
                    return Instant::now() + IDLE_POLL;
                }
            };
            let handed_at = crate::store::now_ms();
            for (name, next) in &result.short {
                self.due_at.insert(name.clone(), next.unwrap_or(NEVER));
            }
            let by_name: HashMap<&str, &Arc<Subscription>> = subscriptions
                .iter()
                .map(|s| (s.name.as_str(), *s))
                .collect();
            let mut got: HashMap<&str, usize> = HashMap::new();
            for claimed in result.claimed {
                let Some(subscription) = by_name.get(claimed.subscription.as_str()) else {
                    continue;
                };
                *got.entry(subscription.name.as_str()).or_default() += 1;
                self.hand_out(Job {
                    claimed,
                    subscription: Arc::clone(subscription),
                    schedule: Arc::clone(&settings.schedule),
                });
            }
            // The next turn starts after the last subscription this claim looked at, so
            // every subscription with work comes first in its turn.
            let short: HashSet<&str> = result.short.iter().map(|(n, _)| n.as_str()).collect();
            let looked_at =
                |name: &String| got.contains_key(name.as_str()) || short.contains(name.as_str());
            if let Some(last) = asked.iter().rposition(looked_at) {
                self.round = order[last] + 1;
            }
            for (name, count) in got {
                if let Some(window) = self.windows.get_mut(name) {
                    window.started(handed_at, count);
                }
            }
            // Claim again only while some subscription filled what it was offered: it
            // may have more due, and the others are done.
            if result.short.len() == asked.len() {
                break;
            }
        }
        self.next_wake(&subscriptions)
    }

    /// Offers the free workers to the subscriptions with work due, in turn: each gets up
    /// to an even share, within its rate limit. Every one due is asked, in the turn's
    /// order (from `self.round`, an index into `subscriptions`), with its endpoint as its
    /// group; the claim stops giving to an endpoint once its allowance is spent, and
    /// stops altogether once the free workers are, so the first ones with work take them
    /// and the ones without work are found out in the same claim. Returns each request's
    /// subscription index, the requests, and each endpoint's allowance.
    fn share_out(
        &mut self,
        subscriptions: &[&Arc<Subscription>],
        free: usize,
        now_ms: i64,
    ) -> (Vec<usize>, Vec<ClaimRequest>, Vec<usize>) {
        let count = subscriptions.len();
        let due: Vec<usize> = (0..count)
            .map(|i| (self.round + i) % count)
            .filter(|&i| {
                self.due_at
                    .get(&subscriptions[i].name)
                    .is_none_or(|&at| at <= now_ms)
            })
            .collect();
        let mut order = Vec::new();
        let mut requests = Vec::new();
        let mut budgets = Vec::new();
        if due.is_empty() {
            return (order, requests, budgets);
        }
        let cap = self.live.load().delivery.max_in_flight_per_endpoint;
        let share = free.div_ceil(due.len()).max(1);
        let mut groups: HashMap<&str, usize> = HashMap::new();
        // Per group: the endpoint's cap as its breaker allows it, for every node together.
        let mut caps = Vec::new();
        for index in due {
            let subscription = subscriptions[index];
            let group = match groups.get(subscription.url.as_str()) {
                Some(&group) => group,
                None => {
                    let (allowed, free) = self.endpoint_allowance(&subscription.url, cap);
                    budgets.push(free);
                    caps.push(allowed);
                    groups.insert(subscription.url.as_str(), budgets.len() - 1);
                    budgets.len() - 1
                }
            };
            if budgets[group] == 0 {
                // Its endpoint is full: a finishing attempt there wakes the scheduler.
                continue;
            }
            let limit = share
                .min(budgets[group])
                .min(self.rate_allowance(subscription, now_ms));
            if limit == 0 {
                continue;
            }
            order.push(index);
            requests.push(ClaimRequest {
                subscription: subscription.name.clone(),
                limit,
                line: line_of(subscription),
                group,
                cluster: ClusterLimits {
                    endpoint: subscription.url.clone(),
                    endpoint_subscriptions: subscriptions
                        .iter()
                        .filter(|s| s.url == subscription.url)
                        .map(|s| s.name.clone())
                        .collect(),
                    endpoint_cap: caps[group],
                    rate: subscription
                        .pacing
                        .rate_limit
                        .map(|r| (r.count as usize, r.per.as_millis() as i64)),
                },
            });
        }
        (order, requests, budgets)
    }

    /// Whether a subscription with a rate limit has work due at `now_ms`.
    fn rate_limited_due(&self, subscriptions: &[&Arc<Subscription>], now_ms: i64) -> bool {
        subscriptions.iter().any(|s| {
            s.pacing.rate_limit.is_some() && self.due_at.get(&s.name).is_none_or(|&at| at <= now_ms)
        })
    }

    /// When to go round again: the earliest future due time. A subscription due now but
    /// held by capacity is woken by the attempt that frees it.
    fn next_wake(&self, subscriptions: &[&Arc<Subscription>]) -> Instant {
        let now_ms = crate::store::now_ms();
        let next = subscriptions
            .iter()
            .filter_map(|s| self.due_at.get(&s.name).copied())
            .filter(|&at| at > now_ms)
            .min();
        match next {
            Some(at) => Instant::now() + Duration::from_millis((at - now_ms) as u64).min(IDLE_POLL),
            None => Instant::now() + IDLE_POLL,
        }
    }

    fn hand_out(&mut self, job: Job) {
        self.in_flight += 1;
        *self
            .in_flight_by_endpoint
            .entry(job.subscription.url.clone())
            .or_default() += 1;
        if self.jobs.send(job).is_err() {
            tracing::error!("the worker pool has stopped; the delivery stays leased until restart");
        }
    }

    fn release(&mut self, done: &Finished) {
        // Every finished attempt feeds breakers, 410 and auto-pause.
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

/// The names of the subscriptions with `ordering = "conversation"`.
pub fn ordered_subscriptions<S: std::borrow::Borrow<Subscription>>(
    subscriptions: &[S],
) -> HashSet<String> {
    subscriptions
        .iter()
        .map(std::borrow::Borrow::borrow)
        .filter(|s| s.pacing.ordering == Ordering::Conversation)
        .map(|s| s.name.clone())
        .collect()
}

fn line_of(subscription: &Subscription) -> Line {
    match subscription.pacing.ordering {
        Ordering::None => Line::Any,
        Ordering::Conversation => Line::Conversation {
            hold_dead: subscription.pacing.on_dead == OnDead::Hold,
        },
    }
}
