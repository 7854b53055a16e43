//! The operator API's answers as the CLI reads them (docs/API.md). Where the API sends a
//! store type as it is, that type is used; for the rest only the fields the commands
//! print are named, and fields the API adds later are ignored.

use serde::Deserialize;

// The API serializes these store types as they are; the CLI, shipped in the same binary,
// reads them back with the same definitions, so the two cannot drift apart.
/// `POST /conversations/forget`.
pub use crate::store::Forgotten;
pub use crate::store::{
    AttemptView as Attempt, DeliveryRow, EventView as Event, Page, StateCounts,
    SubscriptionHealth as Health,
};

/// `GET /nodes`.
pub use crate::nodes::NodeList;

/// `GET /deliveries`.
pub type DeliveryPage = Page<DeliveryRow>;

#[derive(Debug, Clone, Deserialize)]
pub struct Overview {
    pub events_total: u64,
    pub events_last_24h: u64,
    pub deliveries: StateCounts,
    pub queue_depth: u64,
    pub oldest_pending_age_ms: Option<i64>,
    /// The global switch; absent from a posthorn that predates it.
    #[serde(default)]
    pub delivery: Option<DeliverySwitch>,
}

/// `GET /delivery`, and the answer to pause and resume all.
#[derive(Debug, Clone, Deserialize)]
pub struct DeliverySwitch {
    pub enabled: bool,
    /// Why delivery is off; `None` while it runs.
    pub reason: Option<String>,
}

#[derive(Debug, Clone, Deserialize)]
pub struct SubscriptionList {
    pub items: Vec<Subscription>,
}

#[derive(Debug, Clone, Deserialize)]
pub struct Subscription {
    pub name: String,
    pub enabled: bool,
    pub paused: bool,
    pub health: Health,
}

#[derive(Debug, Clone, Deserialize)]
pub struct DeliveryDetail {
    pub delivery: DeliveryRow,
    pub event: Event,
    pub attempts: Vec<Attempt>,
    pub request: Option<Request>,
}

/// The request as posthorn sends it, secrets redacted by the API.
#[derive(Debug, Clone, Deserialize)]
pub struct Request {
    pub method: String,
    pub url: String,
    pub headers: Vec<(String, String)>,
}

/// `POST /subscriptions/{name}/test`.
#[derive(Debug, Clone, Deserialize)]
pub struct TestSent {
    pub event_id: String,
    pub delivery_id: i64,
}

/// `POST /deliveries/{id}/retry`.
#[derive(Debug, Clone, Deserialize)]
pub struct Retried {
    pub delivery_id: i64,
    pub state: String,
}

/// `POST /subscriptions/{name}/retry-failed`.
#[derive(Debug, Clone, Deserialize)]
pub struct RetriedFailed {
    pub retried: u64,
}

/// `GET /events/{id}`.
#[derive(Debug, Clone, Deserialize)]
pub struct EventDetail {
    pub event: Event,
    /// The body with a member per line, values as stored; `None` once dropped.
    pub body_indented: Option<String>,
    pub deliveries: DeliveryPage,
}
