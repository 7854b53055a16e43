//! What the operator API shows of a subscription and of the request a delivery sends:
//! built from the config in force, with everything that could hold a credential
//! (user:password and query of a URL, signatures, custom header values) redacted.

use serde::Serialize;

use crate::config::{Auth, Signing, Subscription};
use crate::deliver;
use crate::format;
use crate::logging::url_for_log;
use crate::store::{AttemptView, EventView, SubscriptionHealth};

/// Shown instead of a value that is made fresh for every attempt.
pub const COMPUTED_AT_SEND: &str = "[computed at send time]";
/// Shown instead of a custom header's value: it may be a credential.
pub const REDACTED: &str = "[redacted]";

/// A subscription as `GET /api/v1/subscriptions` lists it.
#[derive(Debug, Serialize)]
pub struct SubscriptionView {
    pub name: String,
    pub url: String,
    pub enabled: bool,
    pub paused: bool,
    pub conversations: Vec<String>,
    pub projects: Vec<String>,
    pub events: Vec<String>,
    pub signing: &'static str,
    /// The `whpk_` public keys receivers verify `signature = "ed25519"` with (the
    /// private keys are never shown); empty for the HMAC kinds.
    #[serde(skip_serializing_if = "Vec::is_empty")]
    pub public_keys: Vec<String>,
    pub health: SubscriptionHealth,
}

pub fn subscription_view(
    subscription: &Subscription,
    paused: bool,
    health: SubscriptionHealth,
) -> SubscriptionView {
    let texts = |patterns: &[crate::routing::Pattern]| {
        patterns.iter().map(|p| p.as_str().to_string()).collect()
    };
    SubscriptionView {
        name: subscription.name.clone(),
        url: url_for_log(&subscription.url),
        enabled: subscription.enabled,
        paused,
        conversations: texts(&subscription.conversations),
        projects: texts(&subscription.projects),
        events: texts(&subscription.events),
        signing: match subscription.signing {
            Signing::Standard { .. } => "standard",
            Signing::Hex { .. } => "hex",
            Signing::Ed25519 { .. } => "ed25519",
        },
        public_keys: match &subscription.signing {
            Signing::Ed25519 { keys } => keys.iter().map(|k| k.public_whpk()).collect(),
            _ => Vec::new(),
        },
        health,
    }
}

/// The request a delivery sends, as the delivery page shows it.
#[derive(Debug, Serialize)]
pub struct RequestView {
    pub method: &'static str,
    pub url: String,
    /// `[name, value]` pairs in the order they are sent.
    pub headers: Vec<(String, String)>,
    /// The body as sent: the stored event body shaped by the subscription's
    /// `include`/`exclude`, then rendered in its format. `None` once retention dropped the
    /// event's body, or when it cannot be shaped or rendered.
    pub body: Option<String>,
    /// Why the body cannot be made for this event (see `crate::format`).
    #[serde(skip_serializing_if = "Option::is_none")]
    pub render_error: Option<String>,
    /// Whether `include`/`exclude` shape the body (it differs from the stored event).
    pub shaped: bool,
    /// Attempts whose body was shaped by another include/exclude than the config's now
    /// (the config changed since): what they sent differs from `body`.
    pub shaped_otherwise: Vec<u32>,
}

/// The request `subscription` (as configured now) sends for `event`. The signature and
/// its timestamp are made at each attempt, so they are shown as
/// [`COMPUTED_AT_SEND`]; custom header values as [`REDACTED`].
///
/// The body is shaped and rendered again here from the stored event and the
/// subscription's current config, by the same function the worker runs before signing:
/// so it is exactly what the next attempt sends. Keeping every sent body instead would
/// store a copy of each payload per subscription (and one more place a forgotten
/// conversation lives). An earlier attempt shaped by another config is named in
/// `shaped_otherwise`, from the fingerprint each attempt records.
pub fn request_view(
    subscription: &Subscription,
    event: &EventView,
    attempts: &[AttemptView],
) -> RequestView {
    let shaping = &subscription.shaping;
    let envelope = event.body.as_deref().unwrap_or_default();
    let rendered = format::outgoing(subscription, envelope);
    let (url, headers, render_error) = match &rendered {
        Ok(rendered) => (
            rendered.url,
            deliver::rendered_headers(subscription, &event.id, 0, rendered),
            None,
        ),
        Err(err) => (
            subscription.url.as_str(),
            deliver::request_headers(subscription, &event.id, 0, envelope.as_bytes()),
            event.body.as_ref().map(|_| err.to_string()),
        ),
    };
    let signature_header = match &subscription.signing {
        Signing::Standard { .. } | Signing::Ed25519 { .. } => "webhook-signature",
        Signing::Hex { header, .. } => header.as_str(),
    };
    let headers = headers
        .into_iter()
        .map(|(name, value)| {
            let shown = if name.eq_ignore_ascii_case(signature_header)
                || name.eq_ignore_ascii_case("webhook-timestamp")
            {
                COMPUTED_AT_SEND.to_string()
            } else if subscription
                .headers
                .iter()
                .any(|(custom, _)| custom.eq_ignore_ascii_case(&name))
            {
                REDACTED.to_string()
            } else {
                value
            };
            (name, shown)
        })
        .collect();

    let headers = with_authorization(headers, subscription);
    let body = match (&event.body, &rendered) {
        (Some(_), Ok(rendered)) => Some(String::from_utf8_lossy(&rendered.body).into_owned()),
        _ => None,
    };
    RequestView {
        method: "POST",
        url: url_for_log(url),
        headers,
        body,
        render_error,
        shaped: shaping.projects(),
        shaped_otherwise: attempts
            .iter()
            .filter(|a| a.shaping.as_deref() != shaping.fingerprint())
            .map(|a| a.attempt)
            .collect(),
    }
}

/// `headers` with the `Authorization` header `auth` adds at send time, its secret hidden.
fn with_authorization(
    mut headers: Vec<(String, String)>,
    subscription: &Subscription,
) -> Vec<(String, String)> {
    let shown = match &subscription.transport.auth {
        None => return headers,
        Some(Auth::Bearer(_)) => format!("Bearer {REDACTED}"),
        Some(Auth::Basic { .. }) => format!("Basic {REDACTED}"),
        Some(Auth::OAuth2(oauth)) => format!(
            "Bearer [OAuth2 token from {}, fetched at send time]",
            url_for_log(&oauth.token_url)
        ),
    };
    headers.push(("Authorization".into(), shown));
    headers
}

#[cfg(test)]
mod tests {
    use std::path::Path;

    use super::*;

    const SECRET: &str = "whsec_MfKQ9r8GKYqrTwjUPD8ILPZIo2LaLaSw";

    fn subscription(extra: &str) -> Subscription {
        let text = format!(
            "[[subscription]]\nname = \"crm\"\nurl = \"https://bot:hunter2@crm.example.org/hook?key=k1\"\n\
             conversations = [\"c-2*\"]\nprojects = [\"p-9\"]\nevents = [\"conversation.*\"]\n{extra}\n"
        );
        crate::config::parse(&text, Path::new("/etc/posthorn/config.toml"))
            .unwrap_or_else(|err| panic!("{err}"))
            .subscriptions
            .remove(0)
    }

    fn event(body: Option<&str>) -> EventView {
        EventView {
            seq: 1,
            id: "evt_1".into(),
            event_type: "conversation.ended".into(),
            conversation_id: Some("c-204".into()),
            project_id: Some("p-9".into()),
            received_at: 1_795_000_000_000,
            source: "inlet".into(),
            body: body.map(Into::into),
            payload_dropped_at: body.is_none().then_some(1_795_000_000_001),
        }
    }

    fn health() -> SubscriptionHealth {
        SubscriptionHealth {
            subscription: "crm".into(),
            paused: false,
            attempts_counted: 4,
            success_rate: Some(0.75),
            latency_median_ms: Some(12),
            latency_p95_ms: Some(40),
            last_attempt_at: Some(1_795_000_000_000),
            last_status: Some(500),
            last_error: None,
            failing_streak: 1,
            pending: 2,
            ..SubscriptionHealth::default()
        }
    }

    #[test]
    fn a_subscription_shows_its_scope_and_a_redacted_url() {
        let sub = subscription(&format!("secret = {SECRET:?}"));
        let json = serde_json::to_value(subscription_view(&sub, true, health())).unwrap();
        assert_eq!(
            json["url"],
            "https://[redacted]@crm.example.org/hook?[redacted]"
        );
        assert_eq!(json["paused"], true);
        assert_eq!(json["enabled"], true);
        assert_eq!(json["conversations"], serde_json::json!(["c-2*"]));
        assert_eq!(json["projects"], serde_json::json!(["p-9"]));
        assert_eq!(json["events"], serde_json::json!(["conversation.*"]));
        assert_eq!(json["signing"], "standard");
        assert_eq!(json["health"]["success_rate"], 0.75);
        assert_eq!(json["health"]["pending"], 2);
        assert!(json["health"].get("subscription").is_none());
        assert!(!json.to_string().contains("hunter2"));
        assert!(!json.to_string().contains(SECRET));
    }

    #[test]
    fn a_standard_request_hides_signature_timestamp_and_custom_header_values() {
        let sub = subscription(&format!(
            "secret = {SECRET:?}\nheaders = {{ \"Authorization\" = \"Bearer crm-token\", \"X-Team\" = \"north\" }}"
        ));
        let view = request_view(&sub, &event(Some(r#"{"id":"evt_1"}"#)), &[]);
        let json = serde_json::to_value(&view).unwrap();
        assert_eq!(json["method"], "POST");
        assert_eq!(
            json["url"],
            "https://[redacted]@crm.example.org/hook?[redacted]"
        );
        assert_eq!(json["body"], r#"{"id":"evt_1"}"#);
        let headers: Vec<(String, String)> = view.headers.clone();
        let value = |name: &str| {
            headers
                .iter()
                .find(|(n, _)| n.eq_ignore_ascii_case(name))
                .map(|(_, v)| v.as_str())
                .unwrap_or_else(|| panic!("no {name} in {headers:?}"))
        };
        assert_eq!(value("content-type"), "application/json");
        assert_eq!(value("webhook-id"), "evt_1");
        assert_eq!(value("webhook-timestamp"), COMPUTED_AT_SEND);
        assert_eq!(value("webhook-signature"), COMPUTED_AT_SEND);
        assert_eq!(value("authorization"), REDACTED);
        assert_eq!(value("x-team"), REDACTED);
        assert!(!json.to_string().contains("crm-token"));
        assert_eq!(
            json["headers"][0],
            serde_json::json!(["Content-Type", "application/json"])
        );
    }

    fn attempt(n: u32, shaping: Option<&str>) -> AttemptView {
        AttemptView {
            attempt: n,
            started_at: 1_795_000_000_000,
            duration_ms: 3,
            status: Some(500),
            error: None,
            response_snippet: None,
            shaping: shaping.map(Into::into),
        }
    }

    #[test]
    fn the_body_shown_is_shaped_and_attempts_shaped_otherwise_are_named() {
        let sub = subscription(&format!(
            "secret = {SECRET:?}\nexclude = [\"/data/participants/*/email\"]"
        ));
        let stored =
            r#"{"id":"evt_1","data":{"participants":[{"name":"A","email":"a@x"}],"n":1e400}}"#;
        let now = sub.shaping.fingerprint().map(str::to_string);
        let view = request_view(
            &sub,
            &event(Some(stored)),
            &[
                attempt(1, None),
                attempt(2, Some("0123456789abcdef")),
                attempt(3, now.as_deref()),
            ],
        );
        assert_eq!(
            view.body.as_deref(),
            Some(r#"{"id":"evt_1","data":{"participants":[{"name":"A"}],"n":1e400}}"#)
        );
        assert!(view.shaped);
        assert_eq!(view.shaped_otherwise, [1, 2]);

        let plain = subscription(&format!("secret = {SECRET:?}"));
        let view = request_view(&plain, &event(Some(stored)), &[attempt(1, None)]);
        assert_eq!(view.body.as_deref(), Some(stored));
        assert!(!view.shaped);
        assert!(view.shaped_otherwise.is_empty());
    }

    #[test]
    fn a_request_with_auth_shows_its_authorization_header_without_the_secret() {
        let sub = subscription(&format!(
            "secret = {SECRET:?}\nauth = {{ username = \"u\", password = \"basic-secret\" }}"
        ));
        let view = request_view(&sub, &event(None), &[]);
        let json = serde_json::to_value(&view).unwrap().to_string();
        assert!(
            json.contains(r#"["Authorization","Basic [redacted]"]"#),
            "{json}"
        );
        assert!(!json.contains("basic-secret"), "{json}");
    }

    #[test]
    fn a_hex_request_hides_its_own_signature_header_and_a_dropped_body_is_null() {
        let sub = subscription(
            "secret = \"plain-secret\"\nsignature = \"hex\"\nsignature_header = \"X-Sig\"\nsignature_prefix = \"sha256=\"",
        );
        let view = request_view(&sub, &event(None), &[]);
        let sig = view
            .headers
            .iter()
            .find(|(n, _)| n == "X-Sig")
            .map(|(_, v)| v.as_str());
        assert_eq!(sig, Some(COMPUTED_AT_SEND));
        assert_eq!(view.body, None);
        let json = serde_json::to_value(subscription_view(&sub, false, health())).unwrap();
        assert_eq!(json["signing"], "hex");
    }
}
