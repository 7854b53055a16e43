//! How a delivery reaches its receiver: the agent for its route (egress guard, TLS
//! settings, proxy; see `agents`), the receiver authentication a subscription asks for
//! (bearer, basic, or an OAuth2 token from `oauth`), and the one retry with a fresh token
//! when a receiver answers 401 to the cached one. Signing and the body are the delivery
//! module's; this module only carries them.

mod agents;
pub mod oauth;
mod pinned;
mod tls;

use std::time::{Duration, Instant};

use base64::Engine as _;
use ureq::http::Response;
use ureq::Body;

use crate::config::{Auth, DeliveryConfig, Subscription};
use crate::egress;

pub use agents::Route;

/// The agents and OAuth2 tokens of the worker pool.
pub struct Reach {
    agents: egress::Agents<Route>,
    tokens: oauth::Tokens,
}

impl Reach {
    pub fn new(config: &DeliveryConfig) -> Reach {
        let config = config.clone();
        Reach {
            agents: egress::Agents::new(move |route| agents::build_agent(&config, route)),
            tokens: oauth::Tokens::default(),
        }
    }

    /// The agent a request from `subscription` to `url` uses.
    fn agent(&self, subscription: &Subscription, url: &str) -> ureq::Agent {
        self.agents.get(&Route {
            allow: subscription.allow_networks.clone(),
            tls: subscription.transport.tls.clone(),
            proxy: subscription.transport.proxy_for(url).cloned(),
        })
    }

    /// POSTs `body` with `headers` to `url` (the subscription's, or where its format
    /// publishes), with its authentication,
    /// all within `timeout`. An OAuth2 token the receiver answers 401 to is replaced by a
    /// fresh one and the request sent once more. The error is the text the attempt keeps.
    pub fn send(
        &self,
        subscription: &Subscription,
        url: &str,
        headers: &[(String, String)],
        body: &[u8],
        timeout: Duration,
    ) -> Result<Response<Body>, String> {
        let deadline = Instant::now() + timeout;
        let agent = self.agent(subscription, url);
        let mut fetched_token = false;
        let mut retried = false;
        loop {
            let (authorization, token) = match &subscription.transport.auth {
                None => (None, None),
                Some(Auth::Bearer(token)) => (Some(format!("Bearer {}", token.expose())), None),
                Some(Auth::Basic { username, password }) => {
                    let pair = format!("{username}:{}", password.expose());
                    let encoded = base64::engine::general_purpose::STANDARD.encode(pair);
                    (Some(format!("Basic {encoded}")), None)
                }
                Some(Auth::OAuth2(oauth)) => {
                    let token_agent = self.agent(subscription, &oauth.token_url);
                    let token = self
                        .tokens
                        .token(&subscription.name, oauth, deadline, |left| {
                            fetched_token = true;
                            oauth::fetch(&token_agent, oauth, left)
                        })?;
                    (Some(format!("Bearer {}", token.expose())), Some(token))
                }
            };
            let mut request = agent.post(url);
            // The agent's timeout is `[delivery] timeout`; a subscription's own, or the
            // time a token fetch or first try used, shortens it for this request.
            if subscription.timeout.is_some() || fetched_token || retried {
                let left = deadline.saturating_duration_since(Instant::now());
                if left.is_zero() {
                    return Err("timed out (the attempt's timeout ran out)".into());
                }
                request = request.config().timeout_global(Some(left)).build();
            }
            for (name, value) in headers {
                request = request.header(name, value);
            }
            if let Some(value) = authorization {
                request = request.header("Authorization", value);
            }
            let response = request
                .send(body)
                .map_err(|err| self.describe_for(subscription, &err))?;
            match (&subscription.transport.auth, token) {
                (Some(Auth::OAuth2(oauth)), Some(token))
                    if response.status().as_u16() == 401 && !retried =>
                {
                    self.tokens.invalidate(&subscription.name, oauth, &token);
                    tracing::info!(
                        subscription = %subscription.name,
                        "the receiver answered 401 to the OAuth2 token; fetching a fresh one and sending again"
                    );
                    retried = true;
                }
                _ => return Ok(response),
            }
        }
    }

    fn describe_for(&self, subscription: &Subscription, err: &ureq::Error) -> String {
        match subscription.transport.proxy_for(&subscription.url) {
            Some(proxy) => format!("{} (through the proxy {})", describe(err), proxy.shown()),
            None => describe(err),
        }
    }
}

/// The text an attempt keeps for a failed request.
pub fn describe(err: &ureq::Error) -> String {
    if let Some(refusal) = egress::refusal(err) {
        return refusal.to_string();
    }
    // rustls errors reach us inside an I/O error from the handshake, or on their own.
    let tls = match err {
        ureq::Error::Rustls(tls) => Some(tls),
        ureq::Error::Io(io) => io.get_ref().and_then(|e| e.downcast_ref::<rustls::Error>()),
        _ => None,
    };
    if let Some(rustls::Error::AlertReceived(alert)) = tls {
        use rustls::AlertDescription as Alert;
        if matches!(
            alert,
            Alert::CertificateRequired
                | Alert::BadCertificate
                | Alert::UnknownCA
                | Alert::CertificateUnknown
                | Alert::AccessDenied
        ) {
            return format!(
                "TLS: the receiver refused the connection ({alert:?}): it wants a client \
                 certificate it trusts (client_cert_file and client_key_file)"
            );
        }
    }
    if let Some(rustls::Error::InvalidCertificate(cert)) = tls {
        // webpki's reason arrives as an opaque "other" error; its name is in the Debug text.
        if format!("{cert:?}").contains("CaUsedAsEndEntity") {
            return "TLS: the receiver presents a CA certificate as its own \
                    (CaUsedAsEndEntity, e.g. a self-signed certificate made with openssl req \
                    -x509); give the receiver a certificate signed by that CA and put the CA \
                    in ca_file"
                .into();
        }
        return format!(
            "TLS: the receiver's certificate was refused ({cert:?}); for a private CA set \
             ca_file (under [delivery] or in the subscription)"
        );
    }
    match err {
        ureq::Error::Timeout(which) => format!("timed out ({which})"),
        ureq::Error::HostNotFound => "host not found (DNS lookup failed)".into(),
        ureq::Error::ConnectionFailed => "connection failed".into(),
        ureq::Error::Io(io) => format!("network error: {io}"),
        other => other.to_string(),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_refused_certificate_says_to_set_ca_file() {
        let err = ureq::Error::Rustls(rustls::Error::InvalidCertificate(
            rustls::CertificateError::UnknownIssuer,
        ));
        let text = describe(&err);
        assert!(
            text.contains("UnknownIssuer") && text.contains("ca_file"),
            "{text}"
        );
    }
}
