//! Receiver health, as the scheduler sees it: one circuit breaker per endpoint (URL),
//! pausing a subscription whose receiver answers 410 Gone or has failed for longer than
//! `auto_pause_after`, and the global delivery switch. The scheduler calls three hooks
//! (marked `HEALTH HOOK` there): how many attempts an endpoint may have in flight, each
//! finished attempt, and whether delivery is on at all. Each change is logged, counted
//! in the [`Board`] that `/metrics` and the API read, and handed to the [`Alerter`],
//! which audits it and emits posthorn's own event.
//!
//! Breakers live in memory: they survive a reload (the scheduler keeps them) but not a
//! restart, after which a dead endpoint is found out again within `breaker_after`
//! failures. Pauses, their reasons and since when a subscription has been failing are in
//! the store and survive both.

use std::collections::{BTreeMap, HashMap};
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::Mutex;

use crate::alerts::{Alert, Alerter, PauseCause};
use crate::breaker::{Breaker, Change, Policy, State};
use crate::config::DeliveryConfig;
use crate::deliver::Finished;
use crate::reload::Live;
use crate::store::{now_ms, NextStep, StoreHandle};

/// Whether delivery runs: `[delivery] enabled` and the operator's "pause all".
#[derive(Debug, Clone, Copy, PartialEq, Eq, serde::Serialize)]
pub struct Switch {
    /// Delivery runs (both below allow it).
    pub enabled: bool,
    /// `[delivery] enabled` in the config in force.
    pub config_enabled: bool,
    /// "Pause all" from the admin page, API or CLI (kept across restarts).
    pub paused_by_operator: bool,
}

impl Switch {
    pub fn of(config: &DeliveryConfig, store: &StoreHandle) -> Switch {
        let paused_by_operator = store.delivery_paused();
        Switch {
            enabled: config.enabled && !paused_by_operator,
            config_enabled: config.enabled,
            paused_by_operator,
        }
    }

    /// Why delivery is off, for `/healthz` and the page; `None` while it runs.
    pub fn reason(&self) -> Option<&'static str> {
        match (self.config_enabled, self.paused_by_operator) {
            (true, false) => None,
            (false, _) => {
                Some("delivery is switched off in the config ([delivery] enabled = false)")
            }
            (true, true) => Some(
                "delivery is paused by an operator (pause all); `posthorn resume-all` or \
                     Resume all on the overview sends again",
            ),
        }
    }
}

/// What `/metrics` and the API read of receiver health.
#[derive(Debug, Default)]
pub struct Board {
    /// Changes so far, by (label, subscription); see [`Alert::label`].
    changes: Mutex<BTreeMap<(&'static str, String), u64>>,
    /// Endpoints whose breaker is not closed: `open` or `probing`.
    tripped: Mutex<HashMap<String, &'static str>>,
    /// Whether delivery was off at the scheduler's last look.
    off: AtomicBool,
}

impl Board {
    fn count(&self, alert: &Alert) {
        *lock(&self.changes)
            .entry((alert.label(), alert.subject().to_string()))
            .or_default() += 1;
    }

    fn set_breaker(&self, endpoint: &str, state: State) {
        let mut tripped = lock(&self.tripped);
        match state {
            State::Closed { .. } => tripped.remove(endpoint),
            State::Open { .. } => tripped.insert(endpoint.to_string(), "open"),
            State::HalfOpen => tripped.insert(endpoint.to_string(), "probing"),
        };
    }

    /// `open` or `probing` while `endpoint`'s breaker is not closed.
    pub fn breaker(&self, endpoint: &str) -> Option<&'static str> {
        lock(&self.tripped).get(endpoint).copied()
    }

    /// Changes so far, as ((label, subscription), count), sorted.
    pub fn changes(&self) -> Vec<((&'static str, String), u64)> {
        lock(&self.changes)
            .iter()
            .map(|(k, v)| (k.clone(), *v))
            .collect()
    }

    /// How many endpoints are held back or probed.
    pub fn tripped_endpoints(&self) -> usize {
        lock(&self.tripped).len()
    }

    /// Whether delivery was switched off at the scheduler's last look.
    pub fn delivery_off(&self) -> bool {
        self.off.load(Ordering::Relaxed)
    }
}

fn lock<T>(mutex: &Mutex<T>) -> std::sync::MutexGuard<'_, T> {
    mutex.lock().unwrap_or_else(|e| e.into_inner())
}

/// Kept by the scheduler; see the module comment.
pub struct Monitor {
    store: StoreHandle,
    live: Live,
    breakers: HashMap<String, Breaker>,
    alerter: Alerter,
    /// Whether delivery was on at the last look, to log the switch once.
    was_on: bool,
}

impl Monitor {
    pub fn new(store: StoreHandle, live: Live) -> Monitor {
        let alerter = Alerter::spawn(store.clone(), live.clone());
        Monitor {
            store,
            live,
            breakers: HashMap::new(),
            alerter,
            was_on: true,
        }
    }

    /// HEALTH HOOK (c): whether the scheduler may claim anything at all.
    pub fn delivery_on(&mut self, config: &DeliveryConfig) -> bool {
        let switch = Switch::of(config, &self.store);
        self.store
            .metrics()
            .receivers
            .off
            .store(!switch.enabled, Ordering::Relaxed);
        if switch.enabled != self.was_on {
            match switch.reason() {
                Some(reason) => tracing::warn!("{reason}; events are still taken in and stored"),
                None => {
                    tracing::warn!("delivery is switched on again");
                    // Nothing could fail while it was off: that time does not count
                    // towards auto-pause.
                    self.store.forget_failing();
                }
            }
            self.was_on = switch.enabled;
        }
        switch.enabled
    }

    /// HEALTH HOOK (a): how many attempts `endpoint` may have in flight now, given its
    /// normal cap: the cap while its breaker is closed, none while open, one probe when
    /// half-open.
    pub fn endpoint_allowance(&mut self, endpoint: &str, cap: usize) -> usize {
        let Some(breaker) = self.breakers.get_mut(endpoint) else {
            return cap;
        };
        let before = breaker.state();
        let allowance = breaker.allowance(now_ms(), cap);
        if breaker.state() != before {
            self.store
                .metrics()
                .receivers
                .set_breaker(endpoint, breaker.state());
        }
        allowance
    }

    /// HEALTH HOOK (b): takes every finished attempt. A success to a healthy endpoint
    /// (the common case) costs two map lookups and nothing else.
    pub fn observe(&mut self, done: &Finished) {
        let record = &done.record;
        let name = record.subscription.as_str();
        let succeeded = record.next == NextStep::Delivered;
        if succeeded {
            if let Some(mut breaker) = self.breakers.remove(&done.endpoint) {
                // A closed breaker with no failures counted is the same as none.
                let policy = self.policy();
                if breaker.observe(true, now_ms(), &policy) == Some(Change::Recovered) {
                    self.store
                        .metrics()
                        .receivers
                        .set_breaker(&done.endpoint, breaker.state());
                    self.recovered(&done.endpoint);
                }
            }
            if self.store.failing_since(name).is_some() {
                self.store.set_failing_since(name, None);
            }
            return;
        }

        let now = now_ms();
        if record.next == NextStep::Dead {
            self.tell(
                Alert::DeliveryDead {
                    subscription: name.to_string(),
                    delivery_id: record.delivery_id,
                    event_id: done.event_id.clone(),
                    attempts: record.attempt,
                    last_status: record.status,
                    last_error: record.error.clone(),
                },
                now,
            );
        }
        if !done.sent {
            // Nothing reached the receiver (the body could not be rendered): its
            // breaker and failing clock are not this delivery's business.
            return;
        }
        if record.status == Some(410) {
            // The receiver says the endpoint is gone for good: no breaker, no retries.
            let reason = format!(
                "the receiver answered 410 Gone at {}; its pending deliveries are kept \
                 until it is resumed (`posthorn resume {name}`, or Resume on its page)",
                crate::alerts::rfc3339(record.started_at_ms)
            );
            self.pause(name, PauseCause::Gone, reason, now);
            return;
        }

        let policy = self.policy();
        let breaker = self
            .breakers
            .entry(done.endpoint.clone())
            .or_insert_with(|| Breaker::new(&policy));
        let before = breaker.state();
        let change = breaker.observe(false, now, &policy);
        let after = breaker.state();
        if after != before {
            self.store
                .metrics()
                .receivers
                .set_breaker(&done.endpoint, after);
        }
        if let Some(Change::Opened { failures, until_ms }) = change {
            let last_error = describe_failure(record.status, record.error.as_deref());
            for sharing in self.sharing(&done.endpoint) {
                self.tell(
                    Alert::Failing {
                        subscription: sharing,
                        failures,
                        last_error: last_error.clone(),
                        probe_after_ms: until_ms,
                    },
                    now,
                );
            }
        }

        // The auto-pause clock runs per subscription, from its first failure after a
        // success.
        let since = match self.store.failing_since(name) {
            Some(since) => since,
            None => {
                self.store
                    .set_failing_since(name, Some(record.started_at_ms));
                record.started_at_ms
            }
        };
        let settings = self.live.load();
        let Some(subscription) = settings.subscriptions.iter().find(|s| s.name == name) else {
            return;
        };
        let limit = subscription
            .auto_pause_after
            .unwrap_or(settings.delivery.auto_pause_after);
        if now.saturating_sub(since) >= limit.as_millis() as i64 {
            let reason = format!(
                "failing without a success since {} (auto_pause_after = {}); last: {}; its \
                 pending deliveries are kept until it is resumed (`posthorn resume {name}`, or \
                 Resume on its page)",
                crate::alerts::rfc3339(since),
                humantime_secs(limit),
                describe_failure(record.status, record.error.as_deref())
            );
            self.pause(name, PauseCause::Failing, reason, now);
        }
    }

    fn policy(&self) -> Policy {
        let settings = self.live.load();
        Policy {
            after: settings.delivery.breaker_after,
            backoff: settings.delivery.breaker_backoff,
        }
    }

    /// The running subscriptions that send to `endpoint`: they share its breaker.
    fn sharing(&self, endpoint: &str) -> Vec<String> {
        self.live
            .load()
            .subscriptions
            .iter()
            .filter(|s| s.url == endpoint && s.enabled && !self.store.is_paused(&s.name))
            .map(|s| s.name.clone())
            .collect()
    }

    fn recovered(&self, endpoint: &str) {
        let now = now_ms();
        for name in self.sharing(endpoint) {
            let failing_since_ms = self.store.failing_since(&name);
            self.tell(
                Alert::Recovered {
                    subscription: name,
                    failing_since_ms,
                },
                now,
            );
        }
    }

    fn pause(&mut self, name: &str, cause: PauseCause, reason: String, now: i64) {
        match self.store.pause_because(name.to_string(), reason.clone()) {
            Ok(true) => self.tell(
                Alert::Paused {
                    subscription: name.to_string(),
                    cause,
                    reason,
                },
                now,
            ),
            Ok(false) => {}
            Err(err) => tracing::error!(subscription = name, "could not pause: {err:#}"),
        }
    }

    fn tell(&self, alert: Alert, now: i64) {
        match alert {
            Alert::Recovered { .. } => tracing::warn!("{}", alert.describe()),
            _ => tracing::error!("{}", alert.describe()),
        }
        self.store.metrics().receivers.count(&alert);
        self.alerter.send(alert, now);
    }
}

fn describe_failure(status: Option<u16>, error: Option<&str>) -> String {
    match (status, error) {
        (Some(status), Some(error)) => format!("HTTP {status}, {error}"),
        (Some(status), None) => format!("HTTP {status}"),
        (None, Some(error)) => error.to_string(),
        (None, None) => "no answer".into(),
    }
}

/// A duration as the config writes it, in whole seconds.
fn humantime_secs(duration: std::time::Duration) -> String {
    format!("{}s", duration.as_secs())
}
