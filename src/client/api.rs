//! The operator API's answers as the CLI reads them (docs/API.md). Only the fields the
//! commands print are named; fields the API adds later are ignored.

use serde::Deserialize;

#[derive(Debug, Clone, Deserialize)]
pub struct Overview {
    pub events_total: u64,
    pub events_last_24h: u64,
    pub deliveries: StateCounts,
    pub queue_depth: u64,
    pub oldest_pending_age_ms: Option<i64>,
}

#[derive(Debug, Clone, Deserialize)]
pub struct StateCounts {
    pub pending: u64,
    pub delivered: u64,
    pub dead: u64,
    pub cancelled: u64,
    pub failing: u64,
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

/// How a subscription did over the last 24 h.
#[derive(Debug, Clone, Deserialize)]
pub struct Health {
    pub success_rate: Option<f64>,
    pub latency_p95_ms: Option<i64>,
    pub last_attempt_at: Option<i64>,
    pub last_status: Option<u16>,
    pub last_error: Option<String>,
    pub failing_streak: u64,
    pub pending: u64,
}

#[derive(Debug, Clone, Deserialize)]
pub struct DeliveryPage {
    pub items: Vec<DeliveryRow>,
    pub next_cursor: Option<String>,
}

#[derive(Debug, Clone, Deserialize)]
pub struct DeliveryRow {
    pub id: i64,
    pub event_id: String,
    pub event_type: String,
    pub conversation_id: Option<String>,
    pub subscription: String,
    pub state: String,
    pub attempts: u32,
    pub next_attempt_at: Option<i64>,
    pub in_flight: bool,
    pub created_at: i64,
    pub updated_at: i64,
    pub last_status: Option<u16>,
    pub last_error: Option<String>,
}

#[derive(Debug, Clone, Deserialize)]
pub struct DeliveryDetail {
    pub delivery: DeliveryRow,
    pub event: Event,
    pub attempts: Vec<Attempt>,
    pub request: Option<Request>,
}

#[derive(Debug, Clone, Deserialize)]
pub struct Event {
    pub id: String,
    pub event_type: String,
    pub conversation_id: Option<String>,
    pub project_id: Option<String>,
    pub received_at: i64,
    pub source: String,
    /// The delivery body: JSON text, or (depending on how the API carries it) the JSON
    /// itself; `null` once retention dropped it.
    pub body: Option<serde_json::Value>,
    pub payload_dropped_at: Option<i64>,
}

#[derive(Debug, Clone, Deserialize)]
pub struct Attempt {
    pub attempt: u32,
    pub started_at: i64,
    pub duration_ms: i64,
    pub status: Option<u16>,
    pub error: Option<String>,
    pub response_snippet: Option<String>,
}

impl Attempt {
    /// A 2xx answer.
    pub fn succeeded(&self) -> bool {
        matches!(self.status, Some(200..=299))
    }
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
