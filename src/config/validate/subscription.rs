//! Validation of one `[[subscription]]` block: its scope, signing, headers, pacing,
//! transport, format and shaping, each problem located at its key.

use super::*;
use crate::sign::Ed25519Key;

#[derive(Deserialize, Clone, Copy, PartialEq, Eq)]
#[serde(rename_all = "lowercase")]
pub(super) enum SignatureKind {
    Standard,
    Hex,
    Ed25519,
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
pub(super) struct RawSubscription {
    pub(super) name: Spanned<String>,
    pub(super) url: Spanned<String>,
    #[serde(default)]
    pub(super) conversations: Vec<Spanned<String>>,
    #[serde(default)]
    pub(super) projects: Vec<Spanned<String>>,
    pub(super) events: Option<Spanned<Vec<Spanned<String>>>>,
    pub(super) secret: Option<Spanned<String>>,
    pub(super) secret_file: Option<Spanned<PathBuf>>,
    pub(super) secret_env: Option<Spanned<String>>,
    pub(super) signature: Option<Spanned<SignatureKind>>,
    pub(super) signature_header: Option<Spanned<String>>,
    pub(super) signature_prefix: Option<Spanned<String>>,
    #[serde(default)]
    pub(super) headers: BTreeMap<Spanned<String>, Spanned<String>>,
    pub(super) enabled: Option<bool>,
    pub(super) allow_networks: Option<Vec<Spanned<String>>>,
    pub(super) timeout: Option<Spanned<HumanDuration>>,
    pub(super) auto_pause_after: Option<Spanned<HumanDuration>>,
    pub(super) rate_limit: Option<Spanned<super::pacing::RateLimit>>,
    pub(super) ordering: Option<Spanned<super::pacing::Ordering>>,
    pub(super) on_dead: Option<Spanned<super::pacing::OnDead>>,
    pub(super) renamed_from: Option<Spanned<String>>,
    pub(super) ca_file: Option<Spanned<PathBuf>>,
    pub(super) ca_only: Option<Spanned<bool>>,
    pub(super) client_cert_file: Option<Spanned<PathBuf>>,
    pub(super) client_key_file: Option<Spanned<PathBuf>>,
    pub(super) auth: Option<Spanned<super::auth::RawAuth>>,
    pub(super) format: Option<Spanned<super::format::FormatName>>,
    pub(super) template: Option<Spanned<String>>,
    pub(super) template_file: Option<Spanned<PathBuf>>,
    pub(super) content_type: Option<Spanned<String>>,
    pub(super) filter: Option<Vec<Spanned<super::shaping::RawCondition>>>,
    pub(super) include: Option<Vec<Spanned<String>>>,
    pub(super) exclude: Option<Vec<Spanned<String>>>,
}

impl Validator<'_> {
    pub(super) fn subscription(
        &mut self,
        raw: RawSubscription,
        delivery: &DeliveryConfig,
    ) -> Option<Subscription> {
        let global_networks = &delivery.allow_networks;
        let before = self.problems.len();
        let name = raw.name.get_ref().clone();
        let label = format!("subscription {name:?}");
        self.check_name(&raw.name, &label);
        self.check_url(&raw.url, &label);
        // Signing borrows the whole raw block, so it is resolved before the fields below
        // are moved out of it.
        let kind = raw
            .signature
            .as_ref()
            .map_or(SignatureKind::Standard, |s| *s.get_ref());
        let hex_header = raw.signature_header.clone();
        let signing = self.signing(&raw, kind, &label);

        let conversations = self.patterns(raw.conversations, &label, "conversations");
        let projects = self.patterns(raw.projects, &label, "projects");
        let name_span = raw.name.span();
        let events = match raw.events {
            Some(events) if !events.get_ref().is_empty() => {
                self.patterns(events.into_inner(), &label, "events")
            }
            Some(events) => {
                self.problem(
                    events.span(),
                    format!("{label}: events is empty; list event types or globs"),
                );
                Vec::new()
            }
            None => {
                self.problem(
                    raw.name.span(),
                    format!(
                        "{label} is missing events: list event types or globs, \
                         e.g. events = [\"conversation.*\"] (write [\"*\"] for all)"
                    ),
                );
                Vec::new()
            }
        };

        let own_networks = self.networks(raw.allow_networks, &format!("{label}: allow_networks"));
        // posthorn's own events belong to no conversation, so a subscription that takes
        // nothing else needs no scope (see `alerts.rs`).
        let only_own_events = !events.is_empty()
            && events
                .iter()
                .all(|p| p.as_str().starts_with(crate::alerts::OWN_EVENT_PREFIX));
        if conversations.is_empty() && projects.is_empty() && !only_own_events {
            self.problem(
                name_span.clone(),
                format!(
                    "{label} needs conversations or projects to scope it; \
                     write conversations = [\"*\"] to take every conversation \
                     (a subscription taking only posthorn.* events needs none)"
                ),
            );
        }
        let timeout = raw.timeout.map(|t| {
            self.positive_duration(Some(t), DEFAULT_TIMEOUT, &format!("{label}: timeout"))
        });
        let auto_pause_after = raw.auto_pause_after.map(|t| {
            self.positive_duration(
                Some(t),
                DEFAULT_AUTO_PAUSE_AFTER,
                &format!("{label}: auto_pause_after"),
            )
        });

        let headers = self.headers(
            raw.headers,
            hex_header.as_ref().map(|h| h.get_ref().as_str()),
            &label,
        );
        let pacing = self.pacing(raw.rate_limit, raw.ordering, raw.on_dead, &label);
        let tls = super::transport::RawTls {
            ca_file: raw.ca_file,
            ca_only: raw.ca_only,
            client_cert_file: raw.client_cert_file,
            client_key_file: raw.client_key_file,
        };
        let transport = Transport {
            tls: self.tls(tls, &delivery.transport.tls, &format!("{label}: ")),
            proxy: delivery.transport.proxy.clone(),
            auth: raw.auth.and_then(|auth| self.auth(auth, &label)),
        };
        if transport.auth.is_some() {
            if let Some((name, _)) = headers
                .iter()
                .find(|(name, _)| name.eq_ignore_ascii_case("authorization"))
            {
                let message =
                    format!("{label}: header {name:?} is set by auth; remove one of them");
                self.problem(name_span.clone(), message);
            }
        }
        let format = self.format(
            super::format::RawFormat {
                format: raw.format,
                template: raw.template,
                template_file: raw.template_file,
                content_type: raw.content_type,
            },
            raw.url.get_ref(),
            &events,
            &label,
        );
        let shaping = self.shaping(
            super::shaping::RawShaping {
                filter: raw.filter,
                include: raw.include,
                exclude: raw.exclude,
            },
            &label,
        );

        (self.problems.len() == before).then_some(Subscription {
            name,
            url: raw.url.into_inner(),
            conversations,
            projects,
            events,
            signing: signing?,
            headers,
            enabled: raw.enabled.unwrap_or(true),
            allow_networks: super::egress::combined(global_networks, own_networks),
            timeout,
            auto_pause_after,
            pacing,
            renamed_from: raw.renamed_from.map(Spanned::into_inner),
            transport,
            format,
            shaping,
        })
    }

    fn pacing(
        &mut self,
        rate_limit: Option<Spanned<super::pacing::RateLimit>>,
        ordering: Option<Spanned<super::pacing::Ordering>>,
        on_dead: Option<Spanned<super::pacing::OnDead>>,
        label: &str,
    ) -> super::pacing::Pacing {
        let ordering = ordering.map(Spanned::into_inner).unwrap_or_default();
        if let Some(on_dead) = &on_dead {
            if ordering != super::pacing::Ordering::Conversation {
                self.problem(
                    on_dead.span(),
                    format!(
                        "{label}: on_dead only applies with ordering = \"conversation\"; \
                         set that or remove on_dead"
                    ),
                );
            }
        }
        super::pacing::Pacing {
            rate_limit: rate_limit.map(Spanned::into_inner),
            ordering,
            on_dead: on_dead.map(Spanned::into_inner).unwrap_or_default(),
        }
    }

    pub(in crate::config) fn check_url(&mut self, url: &Spanned<String>, label: &str) {
        let text = url.get_ref();
        let rest = text
            .strip_prefix("https://")
            .or_else(|| text.strip_prefix("http://"));
        let host = rest.map(|r| r.split(['/', '?', '#']).next().unwrap_or(""));
        let ok = matches!(host, Some(h) if !h.is_empty() && !h.starts_with(':'))
            && !text.chars().any(|c| c.is_whitespace() || c.is_control());
        if !ok {
            self.problem(
                url.span(),
                format!("{label}: url {text:?} is not an http:// or https:// URL with a host"),
            );
        }
    }

    fn patterns(&mut self, raw: Vec<Spanned<String>>, label: &str, key: &str) -> Vec<Pattern> {
        let mut patterns = Vec::new();
        for pattern in raw {
            if pattern.get_ref().is_empty() {
                self.problem(
                    pattern.span(),
                    format!("{label}: {key} holds an empty pattern"),
                );
            } else {
                patterns.push(Pattern::new(pattern.into_inner()));
            }
        }
        patterns
    }

    /// Resolves the secret and checks it fits the signature kind. Error messages name
    /// where the secret came from, never its value.
    fn signing(
        &mut self,
        raw: &RawSubscription,
        kind: SignatureKind,
        label: &str,
    ) -> Option<Signing> {
        if kind != SignatureKind::Hex {
            for extra in [&raw.signature_header, &raw.signature_prefix]
                .into_iter()
                .flatten()
            {
                self.problem(
                    extra.span(),
                    format!("{label}: signature_header and signature_prefix apply to signature = \"hex\" only"),
                );
            }
        }
        let given = [
            raw.secret.is_some(),
            raw.secret_file.is_some(),
            raw.secret_env.is_some(),
        ];
        let (secret, span) = match given.iter().filter(|g| **g).count() {
            _ if self.draft => (
                super::draft::PLACEHOLDER_SECRET.to_string(),
                raw.name.span(),
            ),
            1 => self.read_secret(raw, label)?,
            0 => {
                self.problem(
                    raw.name.span(),
                    format!("{label} has no secret: set one of secret, secret_file or secret_env"),
                );
                return None;
            }
            _ => {
                self.problem(
                    raw.name.span(),
                    format!("{label}: set only one of secret, secret_file and secret_env"),
                );
                return None;
            }
        };
        let parts: Vec<&str> = secret.split_whitespace().collect();
        match kind {
            SignatureKind::Ed25519 => self
                .key_list(&parts, span, label, "ed25519", Ed25519Key::from_whsk)
                .map(|keys| Signing::Ed25519 { keys }),
            SignatureKind::Standard => self
                .key_list(&parts, span, label, "standard", SigningKey::from_whsec)
                .map(|keys| Signing::Standard { keys }),
            SignatureKind::Hex => {
                // One secret, taken whole: the hex recipe has no rotation, so spaces are
                // part of the secret rather than separators.
                if secret.trim().is_empty() {
                    self.problem(span, format!("{label}: the secret is empty"));
                    return None;
                }
                let header = raw
                    .signature_header
                    .as_ref()
                    .map_or(DEFAULT_HEX_HEADER.to_string(), |h| h.get_ref().clone());
                if !is_header_name(&header) {
                    if let Some(h) = &raw.signature_header {
                        self.problem(
                            h.span(),
                            format!(
                                "{label}: signature_header {header:?} is not a valid header name"
                            ),
                        );
                    }
                }
                let prefix = raw
                    .signature_prefix
                    .as_ref()
                    .map_or(String::new(), |p| p.get_ref().clone());
                if !is_header_value(&prefix) {
                    if let Some(p) = &raw.signature_prefix {
                        self.problem(
                            p.span(),
                            format!("{label}: signature_prefix may not hold control characters"),
                        );
                    }
                }
                Some(Signing::Hex {
                    key: SigningKey::from_utf8(&secret),
                    header,
                    prefix,
                })
            }
        }
    }

    fn read_secret(
        &mut self,
        raw: &RawSubscription,
        label: &str,
    ) -> Option<(String, Range<usize>)> {
        if let Some(secret) = &raw.secret {
            return Some((secret.get_ref().clone(), secret.span()));
        }
        if let Some(file) = &raw.secret_file {
            let path = self.base.join(file.get_ref());
            return match super::values::read_secret_file(&path) {
                Ok(text) => Some((text.trim().to_string(), file.span())),
                Err(err) => {
                    self.problem(
                        file.span(),
                        format!(
                            "{label}: while reading secret_file {}: {err}",
                            path.display()
                        ),
                    );
                    None
                }
            };
        }
        let var = raw.secret_env.as_ref()?;
        match std::env::var(var.get_ref()) {
            Ok(value) if !value.trim().is_empty() => Some((value.trim().to_string(), var.span())),
            // Only echo what looks like a variable name: a secret pasted here by mistake
            // must not end up in the output.
            _ if looks_like_secret(var.get_ref()) => {
                self.problem(
                    var.span(),
                    format!("{label}: secret_env must name an environment variable (letters, digits and _), \
                             not hold the secret itself; its value is not shown"),
                );
                None
            }
            _ => {
                self.problem(
                    var.span(),
                    format!("{label}: the environment variable {} named by secret_env is not set or empty", var.get_ref()),
                );
                None
            }
        }
    }

    fn headers(
        &mut self,
        raw: BTreeMap<Spanned<String>, Spanned<String>>,
        hex_header: Option<&str>,
        label: &str,
    ) -> Vec<(String, String)> {
        let mut headers = Vec::new();
        for (name, value) in raw {
            let lower = name.get_ref().to_ascii_lowercase();
            if !is_header_name(name.get_ref()) {
                self.problem(
                    name.span(),
                    format!("{label}: {:?} is not a valid header name", name.get_ref()),
                );
            } else if RESERVED_HEADERS.contains(&lower.as_str())
                || hex_header.is_some_and(|h| h.eq_ignore_ascii_case(&lower))
            {
                self.problem(
                    name.span(),
                    format!(
                        "{label}: header {:?} is set by posthorn and cannot be overridden",
                        name.get_ref()
                    ),
                );
            } else if !is_header_value(value.get_ref()) {
                self.problem(
                    value.span(),
                    format!(
                        "{label}: the value of header {:?} may not hold control characters",
                        name.get_ref()
                    ),
                );
            } else {
                headers.push((name.into_inner(), value.into_inner()));
            }
        }
        headers
    }
}
