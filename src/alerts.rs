//! posthorn's own events (`posthorn.subscription.failing`, `.recovered`, `.paused`,
//! `posthorn.delivery.dead`): what they carry, who gets them, and the thread that audits
//! and stores them. They are stored and routed like any other event, so a subscription
//! with `events = ["posthorn.*"]` gets them signed as usual, with two rules that keep
//! alerts from going round in circles:
//! - an alert about subscription S is never delivered through S;
//! - a delivery of posthorn's own event that dies raises no `posthorn.delivery.dead`.
//!
//! An alert no subscription takes is not stored as an event (the audit log, the log and
//! the metrics have it). The events belong to no conversation or project, so a subscription scoped to
//! conversations never takes them; one that takes only `posthorn.*` needs no scope.

use std::sync::Arc;

use crossbeam_channel::{Receiver, Sender};
use rand::Rng as _;
use serde_json::{json, Value};
use time::format_description::well_known::Rfc3339;
use time::OffsetDateTime;

use crate::config::Subscription;
use crate::event::{self, Event};
use crate::reload::Live;
use crate::store::{AuditEntry, IngestBatch, RoutedEvent, StoreHandle};

/// Every type of posthorn's own events starts with this.
pub const OWN_EVENT_PREFIX: &str = "posthorn.";
/// Every id of posthorn's own alert events starts with this.
pub const OWN_EVENT_ID_PREFIX: &str = "posthorn_";
/// The audit log's actor for what posthorn did by itself.
pub const ACTOR: &str = "posthorn";
/// The `source` alert events are stored with.
const SOURCE: &str = "posthorn";

/// Why posthorn paused a subscription.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum PauseCause {
    /// The receiver answered 410 Gone.
    Gone,
    /// It failed for longer than `auto_pause_after`.
    Failing,
}

impl PauseCause {
    pub fn as_str(self) -> &'static str {
        match self {
            PauseCause::Gone => "gone",
            PauseCause::Failing => "failing",
        }
    }
}

/// A change in a receiver's health, told to the operator.
#[derive(Debug, Clone, PartialEq)]
pub enum Alert {
    Failing {
        subscription: String,
        failures: usize,
        last_error: String,
        probe_after_ms: i64,
    },
    Recovered {
        subscription: String,
        failing_since_ms: Option<i64>,
    },
    Paused {
        subscription: String,
        cause: PauseCause,
        reason: String,
    },
    DeliveryDead {
        subscription: String,
        delivery_id: i64,
        event_id: String,
        attempts: u32,
        last_status: Option<u16>,
        last_error: Option<String>,
    },
}

impl Alert {
    /// The event type, which is also the audit log's action without the prefix.
    pub fn kind(&self) -> &'static str {
        match self {
            Alert::Failing { .. } => "posthorn.subscription.failing",
            Alert::Recovered { .. } => "posthorn.subscription.recovered",
            Alert::Paused { .. } => "posthorn.subscription.paused",
            Alert::DeliveryDead { .. } => "posthorn.delivery.dead",
        }
    }

    /// A short label for metrics: `failing`, `recovered`, `paused_gone`,
    /// `paused_failing`, `dead`.
    pub fn label(&self) -> &'static str {
        match self {
            Alert::Failing { .. } => "failing",
            Alert::Recovered { .. } => "recovered",
            Alert::Paused {
                cause: PauseCause::Gone,
                ..
            } => "paused_gone",
            Alert::Paused {
                cause: PauseCause::Failing,
                ..
            } => "paused_failing",
            Alert::DeliveryDead { .. } => "dead",
        }
    }

    /// The subscription the alert is about.
    pub fn subject(&self) -> &str {
        match self {
            Alert::Failing { subscription, .. }
            | Alert::Recovered { subscription, .. }
            | Alert::Paused { subscription, .. }
            | Alert::DeliveryDead { subscription, .. } => subscription,
        }
    }

    /// One sentence for the log and the audit log.
    pub fn describe(&self) -> String {
        match self {
            Alert::Failing {
                subscription,
                failures,
                last_error,
                probe_after_ms,
            } => format!(
                "subscription {subscription}: its endpoint failed {failures} times in a row \
                 (last: {last_error}); nothing is sent to it until {}, then one delivery at a \
                 time until one succeeds",
                rfc3339(*probe_after_ms)
            ),
            Alert::Recovered { subscription, .. } => {
                format!("subscription {subscription}: its endpoint answers again")
            }
            Alert::Paused {
                subscription,
                reason,
                ..
            } => format!("subscription {subscription} paused: {reason}"),
            Alert::DeliveryDead {
                subscription,
                delivery_id,
                event_id,
                attempts,
                ..
            } => format!(
                "delivery {delivery_id} (event {event_id}) to subscription {subscription} is \
                 dead after {attempts} attempts; once the receiver is back, retry it \
                 (`posthorn deliveries retry {delivery_id}`, or Retry on its page)"
            ),
        }
    }

    /// The event's `data` (README, "posthorn's own events").
    pub fn data(&self, at_ms: i64) -> Value {
        let mut data = match self {
            Alert::Failing {
                subscription,
                failures,
                last_error,
                probe_after_ms,
            } => json!({
                "subscription": subscription,
                "failures": failures,
                "last_error": last_error,
                "probe_after": rfc3339(*probe_after_ms),
            }),
            Alert::Recovered {
                subscription,
                failing_since_ms,
            } => json!({
                "subscription": subscription,
                "failing_since": failing_since_ms.map(rfc3339),
            }),
            Alert::Paused {
                subscription,
                cause,
                reason,
            } => json!({
                "subscription": subscription,
                "cause": cause.as_str(),
                "reason": reason,
            }),
            Alert::DeliveryDead {
                subscription,
                delivery_id,
                event_id,
                attempts,
                last_status,
                last_error,
            } => json!({
                "subscription": subscription,
                "delivery_id": delivery_id,
                "event_id": event_id,
                "attempts": attempts,
                "last_status": last_status,
                "last_error": last_error,
            }),
        };
        data["at"] = Value::String(rfc3339(at_ms));
        data
    }

    /// The alert as an event with the id `id`.
    pub fn event(&self, id: &str, at_ms: i64) -> Result<Event, event::Invalid> {
        let envelope = json!({ "id": id, "type": self.kind(), "data": self.data(at_ms) });
        event::parse_event(
            envelope.to_string().as_bytes(),
            usize::MAX,
            OffsetDateTime::now_utc(),
        )
    }
}

/// Whether `event_id` is one of posthorn's own alert events.
pub fn is_own_event_id(event_id: &str) -> bool {
    event_id.starts_with(OWN_EVENT_ID_PREFIX)
}

/// The subscriptions an alert goes to: every one whose scope takes the event, except the
/// subscription the alert is about.
pub fn recipients(subscriptions: &[Arc<Subscription>], about: &str, event: &Event) -> Vec<String> {
    crate::routing::route(subscriptions, event)
        .into_iter()
        .filter(|name| name != about)
        .collect()
}

/// Unix ms as RFC 3339 (UTC).
pub fn rfc3339(ms: i64) -> String {
    OffsetDateTime::from_unix_timestamp_nanos(i128::from(ms) * 1_000_000)
        .ok()
        .and_then(|at| at.format(&Rfc3339).ok())
        .unwrap_or_else(|| ms.to_string())
}

/// `posthorn_` and 16 random hex digits.
fn alert_id() -> String {
    let bytes: [u8; 8] = rand::rng().random();
    let hex: String = bytes.iter().map(|b| format!("{b:02x}")).collect();
    format!("{OWN_EVENT_ID_PREFIX}{hex}")
}

/// A thread that audits each alert and stores it as an event, off the scheduler's
/// thread (both wait for a commit). Dropping it lets the queued alerts through first.
pub struct Alerter {
    queue: Option<Sender<(Alert, i64)>>,
    thread: Option<std::thread::JoinHandle<()>>,
}

impl Alerter {
    pub fn spawn(store: StoreHandle, live: Live) -> Alerter {
        let (queue, inbox) = crossbeam_channel::unbounded();
        let thread = std::thread::Builder::new()
            .name("alerts".into())
            .spawn(move || run(store, live, inbox))
            .inspect_err(|err| tracing::error!(%err, "could not start the alerts thread"))
            .ok();
        Alerter {
            queue: Some(queue),
            thread,
        }
    }

    /// Queues `alert`, which happened at `at_ms`.
    pub fn send(&self, alert: Alert, at_ms: i64) {
        if let Some(queue) = &self.queue {
            let _ = queue.send((alert, at_ms));
        }
    }
}

impl Drop for Alerter {
    fn drop(&mut self) {
        self.queue.take();
        if let Some(thread) = self.thread.take() {
            let _ = thread.join();
        }
    }
}

fn run(store: StoreHandle, live: Live, inbox: Receiver<(Alert, i64)>) {
    for (alert, at_ms) in inbox {
        let audit = AuditEntry {
            actor: ACTOR.into(),
            action: alert.kind().trim_start_matches(OWN_EVENT_PREFIX).into(),
            detail: alert.describe(),
            result: "applied".into(),
            origin: None,
        };
        if let Err(err) = store.audit(audit) {
            tracing::error!("could not audit {}: {err:#}", alert.kind());
        }
        if let Alert::DeliveryDead { event_id, .. } = &alert {
            if is_own_event_id(event_id) {
                // An alert that could not be delivered raises no alert about itself.
                continue;
            }
        }
        let event = match alert.event(&alert_id(), at_ms) {
            Ok(event) => event,
            Err(err) => {
                tracing::error!("could not build the {} event: {err}", alert.kind());
                continue;
            }
        };
        // Held until the commit, like the inlet's batches, so a reload cannot cancel the
        // deliveries of a subscription between routing and storing.
        let settings = live.load();
        let subscriptions = recipients(&settings.subscriptions, alert.subject(), &event);
        if subscriptions.is_empty() {
            // Nobody takes it: the log, the audit log and the metrics have it already,
            // and the event log is left to the producers' events.
            continue;
        }
        let batch = IngestBatch {
            source: SOURCE.into(),
            events: vec![RoutedEvent {
                event,
                subscriptions,
            }],
            ..Default::default()
        };
        if let Err(err) = store.ingest(batch) {
            tracing::error!("could not store the {} event: {err:#}", alert.kind());
        }
        drop(settings);
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::config::Signing;
    use crate::routing::Pattern;
    use crate::sign::SigningKey;

    fn subscription(name: &str, conversations: &[&str], events: &[&str]) -> Arc<Subscription> {
        Arc::new(Subscription {
            name: name.into(),
            url: "http://127.0.0.1/".into(),
            conversations: conversations.iter().map(|p| Pattern::new(*p)).collect(),
            projects: vec![],
            events: events.iter().map(|p| Pattern::new(*p)).collect(),
            signing: Signing::Hex {
                key: SigningKey::from_utf8("k"),
                header: "X-Sig".into(),
                prefix: String::new(),
            },
            headers: vec![],
            enabled: true,
            allow_networks: Vec::new(),
            pacing: Default::default(),
            transport: Default::default(),
            format: Default::default(),
            shaping: Default::default(),
            timeout: None,
            auto_pause_after: None,
            renamed_from: None,
        })
    }

    const AT: i64 = 1_795_867_200_000; // 2026-11-28T12:00:00Z

    #[test]
    fn alerts_go_to_alert_subscriptions_but_never_through_their_subject() {
        let subs = vec![
            subscription("crm", &["*"], &["*"]),
            subscription("pager", &[], &["posthorn.*"]),
            subscription("chat", &[], &["posthorn.subscription.paused"]),
        ];
        let paused = Alert::Paused {
            subscription: "crm".into(),
            cause: PauseCause::Gone,
            reason: "410 Gone".into(),
        };
        let event = paused.event("posthorn_1", AT).unwrap();
        // crm is scoped to conversations, which posthorn's events do not belong to.
        assert_eq!(recipients(&subs, "crm", &event), ["pager", "chat"]);
        // About the pager itself: only the chat hears of it.
        assert_eq!(recipients(&subs, "pager", &event), ["chat"]);
        let failing = Alert::Failing {
            subscription: "chat".into(),
            failures: 5,
            last_error: "connection refused".into(),
            probe_after_ms: AT,
        };
        let event = failing.event("posthorn_2", AT).unwrap();
        assert_eq!(recipients(&subs, "chat", &event), ["pager"]);
    }

    #[test]
    fn event_shapes() {
        let dead = Alert::DeliveryDead {
            subscription: "crm".into(),
            delivery_id: 7,
            event_id: "evt_1".into(),
            attempts: 8,
            last_status: Some(500),
            last_error: None,
        };
        let event = dead.event("posthorn_3", AT).unwrap();
        assert_eq!(event.kind, "posthorn.delivery.dead");
        assert_eq!(event.conversation_id, None);
        let body: Value = serde_json::from_str(&event.body).unwrap();
        assert_eq!(
            body["data"],
            json!({"subscription": "crm", "delivery_id": 7, "event_id": "evt_1",
                   "attempts": 8, "last_status": 500, "last_error": null,
                   "at": "2026-11-28T12:00:00Z"})
        );
        let recovered = Alert::Recovered {
            subscription: "crm".into(),
            failing_since_ms: Some(AT - 60_000),
        };
        assert_eq!(
            recovered.data(AT),
            json!({"subscription": "crm", "failing_since": "2026-11-28T11:59:00Z",
                   "at": "2026-11-28T12:00:00Z"})
        );
        assert!(is_own_event_id(&alert_id()));
        assert!(!is_own_event_id("evt_1"));
    }
}
