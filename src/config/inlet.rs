//! The `[inlet]` and `[admin]` sections as written, and their validation: the inlet's
//! bearer token, its body limit, the `[[inlet.source]]` blocks
//! (ECHO and generic profiles with their secrets and JSON pointers), and the admin
//! password hash and API token.

use std::collections::HashMap;
use std::ops::Range;

use serde::Deserialize;
use toml::Spanned;

use super::validate::{is_header_name, is_header_value, looks_like_secret, Validator};
use super::values::{ByteSize, HumanDuration};
use super::*;

/// Shortest bearer token taken (`[inlet] token`, `[admin] api_token`).
const MIN_TOKEN_CHARS: usize = 16;

#[derive(Deserialize, Default)]
#[serde(deny_unknown_fields)]
pub(super) struct RawInlet {
    token: Option<Spanned<String>>,
    token_env: Option<Spanned<String>>,
    token_file: Option<Spanned<PathBuf>>,
    max_body_bytes: Option<Spanned<ByteSize>>,
    #[serde(default)]
    source: Vec<RawSource>,
}

#[derive(Deserialize, Default)]
#[serde(deny_unknown_fields)]
pub(super) struct RawAdmin {
    password_hash: Option<Spanned<String>>,
    api_token: Option<Spanned<String>>,
    api_token_env: Option<Spanned<String>>,
    api_token_file: Option<Spanned<PathBuf>>,
    session_ttl: Option<Spanned<HumanDuration>>,
    secure_cookie: Option<bool>,
}

#[derive(Deserialize, Clone, Copy, PartialEq, Eq)]
#[serde(rename_all = "lowercase")]
enum Profile {
    Echo,
    Generic,
}

#[derive(Deserialize, Clone, Copy, PartialEq, Eq)]
#[serde(rename_all = "lowercase")]
enum VerifyKind {
    None,
    Standard,
    Hex,
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct RawSource {
    name: Spanned<String>,
    profile: Spanned<Profile>,
    secret: Option<Spanned<String>>,
    secret_env: Option<Spanned<String>>,
    secret_file: Option<Spanned<PathBuf>>,
    verify: Option<Spanned<VerifyKind>>,
    signature_header: Option<Spanned<String>>,
    signature_prefix: Option<Spanned<String>>,
    id: Option<Spanned<String>>,
    #[serde(rename = "type")]
    kind: Option<Spanned<String>>,
    type_value: Option<Spanned<String>>,
    conversation: Option<Spanned<String>>,
    project: Option<Spanned<String>>,
    occurred_at: Option<Spanned<String>>,
    max_body_bytes: Option<Spanned<ByteSize>>,
    replay_window: Option<Spanned<String>>,
}

/// One secret given as exactly one of an inline value, a file or an environment variable.
struct SecretKeys<'a> {
    inline: &'a Option<Spanned<String>>,
    file: &'a Option<Spanned<PathBuf>>,
    env: &'a Option<Spanned<String>>,
    /// The key names, e.g. `("secret", "secret_file", "secret_env")`.
    names: [&'static str; 3],
}

impl Validator<'_> {
    pub(super) fn inlet(&mut self, raw: RawInlet, defaults: InletConfig) -> InletConfig {
        let keys = SecretKeys {
            inline: &raw.token,
            file: &raw.token_file,
            env: &raw.token_env,
            names: ["token", "token_file", "token_env"],
        };
        let token = self.one_secret(&keys, "[inlet]", None);
        let token = self.bearer_token(token, "inlet.token");
        let max_body_bytes = self.positive_size(
            raw.max_body_bytes,
            defaults.max_body_bytes,
            "inlet.max_body_bytes",
        );
        let mut sources = Vec::new();
        let mut names = HashMap::new();
        for raw in raw.source {
            self.unique_name(&mut names, &raw.name, "inlet source");
            if let Some(source) = self.source(raw, max_body_bytes) {
                sources.push(source);
            }
        }
        InletConfig {
            token,
            max_body_bytes,
            sources,
        }
    }

    pub(super) fn admin(&mut self, raw: RawAdmin, defaults: AdminConfig) -> AdminConfig {
        let password_hash = raw.password_hash.and_then(|hash| {
            match crate::password::check_hash(hash.get_ref()) {
                Ok(()) => Some(hash.into_inner()),
                Err(reason) => {
                    // Never quote it: a password pasted here by mistake must not be echoed.
                    self.problem(hash.span(), format!("admin.password_hash {reason}"));
                    None
                }
            }
        });
        let keys = SecretKeys {
            inline: &raw.api_token,
            file: &raw.api_token_file,
            env: &raw.api_token_env,
            names: ["api_token", "api_token_file", "api_token_env"],
        };
        let api_token = self.one_secret(&keys, "[admin]", None);
        let api_token = self.bearer_token(api_token, "admin.api_token");
        AdminConfig {
            password_hash,
            api_token,
            session_ttl: self.positive_duration(
                raw.session_ttl,
                defaults.session_ttl,
                "admin.session_ttl",
            ),
            secure_cookie: raw.secure_cookie.unwrap_or(defaults.secure_cookie),
        }
    }

    fn source(&mut self, raw: RawSource, inlet_max_body: usize) -> Option<InletSource> {
        let before = self.problems.len();
        let name = raw.name.get_ref().clone();
        let label = format!("inlet source {name:?}");
        self.check_name(&raw.name, &label);
        let keys = SecretKeys {
            inline: &raw.secret,
            file: &raw.secret_file,
            env: &raw.secret_env,
            names: ["secret", "secret_file", "secret_env"],
        };
        let secret = self.one_secret(&keys, &label, Some(raw.name.span()));
        let profile = match raw.profile.get_ref() {
            Profile::Echo => {
                let generic_only = [
                    &raw.id,
                    &raw.kind,
                    &raw.type_value,
                    &raw.conversation,
                    &raw.project,
                    &raw.occurred_at,
                    &raw.signature_header,
                    &raw.signature_prefix,
                ];
                for extra in generic_only.into_iter().flatten() {
                    self.problem(
                        extra.span(),
                        format!("{label}: profile = \"echo\" knows ECHO's fields and signature; this key is for profile = \"generic\" only"),
                    );
                }
                if let Some(verify) = &raw.verify {
                    self.problem(
                        verify.span(),
                        format!("{label}: profile = \"echo\" verifies ECHO's own signature when a secret is set; verify is for profile = \"generic\""),
                    );
                }
                SourceProfile::Echo {
                    secret: secret.map(|(s, _)| SigningKey::from_utf8(&s)),
                }
            }
            Profile::Generic => SourceProfile::Generic(self.generic(&raw, secret, &label)?),
        };
        let default_body = match profile {
            SourceProfile::Echo { .. } => DEFAULT_ECHO_MAX_BODY_BYTES.max(inlet_max_body),
            SourceProfile::Generic(_) => inlet_max_body,
        };
        let max_body_bytes = self.positive_size(
            raw.max_body_bytes.clone(),
            default_body,
            &format!("{label}: max_body_bytes"),
        );
        let replay_window = self.replay_window(&raw, &profile, &label);
        (self.problems.len() == before).then_some(InletSource {
            name,
            profile,
            max_body_bytes,
            replay_window,
        })
    }

    /// `replay_window`: a duration or "off". ECHO's `timestamp` is checked by default; a
    /// generic source's time is its `occurred_at`, checked by default when `verify =
    /// "hex"` signs it (Standard Webhooks has its own signed `webhook-timestamp`).
    fn replay_window(
        &mut self,
        raw: &RawSource,
        profile: &SourceProfile,
        label: &str,
    ) -> Option<Duration> {
        let given = match &raw.replay_window {
            None => None,
            Some(text) if text.get_ref().trim() == "off" => return None,
            Some(text) => match parse_duration(text.get_ref()) {
                Ok(window) if !window.is_zero() => Some((window, text.span())),
                Ok(_) => {
                    self.problem(
                        text.span(),
                        format!("{label}: replay_window must be longer than 0; write \"off\" to turn it off"),
                    );
                    return None;
                }
                Err(err) => {
                    self.problem(
                        text.span(),
                        format!("{label}: replay_window {:?}: {err}; write a duration like \"10m\" or \"off\"", text.get_ref()),
                    );
                    return None;
                }
            },
        };
        match profile {
            SourceProfile::Echo { .. } => {
                Some(given.map_or(DEFAULT_REPLAY_WINDOW, |(window, _)| window))
            }
            SourceProfile::Generic(generic) => match (&generic.verify, &generic.occurred_at) {
                (Verify::Standard { .. }, _) => {
                    if let Some((_, span)) = given {
                        self.problem(
                            span,
                            format!("{label}: verify = \"standard\" already refuses a webhook-timestamp more than 5 minutes from now; replay_window is for \"echo\" and verify = \"hex\""),
                        );
                    }
                    None
                }
                (_, None) => {
                    if let Some((_, span)) = given {
                        self.problem(
                            span,
                            format!("{label}: replay_window checks the time at occurred_at, and this source has none; set occurred_at to a pointer to the time the platform sends (and signs)"),
                        );
                    }
                    None
                }
                (Verify::Hex { .. }, Some(_)) => {
                    Some(given.map_or(DEFAULT_REPLAY_WINDOW, |(window, _)| window))
                }
                (Verify::None, Some(_)) => given.map(|(window, _)| window),
            },
        }
    }

    fn generic(
        &mut self,
        raw: &RawSource,
        secret: Option<(String, Range<usize>)>,
        label: &str,
    ) -> Option<GenericSource> {
        let pointer = |v: &mut Self, value: &Option<Spanned<String>>, key: &str| {
            let value = value.as_ref()?;
            let text = value.get_ref();
            if !(text.is_empty() || text.starts_with('/')) {
                v.problem(
                    value.span(),
                    format!(
                        "{label}: {key} {text:?} is not a JSON pointer; write it like \"/data/id\""
                    ),
                );
            }
            Some(text.clone())
        };
        let id = pointer(self, &raw.id, "id");
        let conversation = pointer(self, &raw.conversation, "conversation");
        let project = pointer(self, &raw.project, "project");
        let occurred_at = pointer(self, &raw.occurred_at, "occurred_at");
        let kind = match (&raw.kind, &raw.type_value) {
            (Some(_), Some(fixed)) => {
                self.problem(
                    fixed.span(),
                    format!("{label}: set only one of type (a JSON pointer) and type_value (a fixed type)"),
                );
                return None;
            }
            (Some(_), None) => TypeFrom::Pointer(pointer(self, &raw.kind, "type")?),
            (None, Some(fixed)) => TypeFrom::Fixed(fixed.get_ref().clone()),
            (None, None) => {
                self.problem(
                    raw.name.span(),
                    format!("{label} needs type (a JSON pointer to the event type, like \"/type\") or type_value (a fixed type)"),
                );
                return None;
            }
        };
        let kind_given = raw
            .verify
            .as_ref()
            .map_or(VerifyKind::None, |v| *v.get_ref());
        if kind_given != VerifyKind::Hex {
            for extra in [&raw.signature_header, &raw.signature_prefix]
                .into_iter()
                .flatten()
            {
                self.problem(
                    extra.span(),
                    format!("{label}: signature_header and signature_prefix apply to verify = \"hex\" only"),
                );
            }
        }
        let verify = match (kind_given, secret) {
            (VerifyKind::None, None) => Verify::None,
            (VerifyKind::None, Some((_, span))) => {
                self.problem(
                    span,
                    format!("{label}: a secret is set but verify is not; set verify = \"standard\" or \"hex\""),
                );
                return None;
            }
            (_, None) => {
                self.problem(
                    raw.name.span(),
                    format!("{label}: verify needs a secret: set one of secret, secret_file or secret_env"),
                );
                return None;
            }
            (VerifyKind::Standard, Some((secret, span))) => {
                let mut keys = Vec::new();
                for part in secret.split_whitespace() {
                    match SigningKey::from_whsec(part) {
                        Ok(key) => keys.push(key),
                        Err(err) => self.problem(
                            span.clone(),
                            format!("{label}: the secret is not usable with verify = \"standard\": {err}"),
                        ),
                    }
                }
                if keys.is_empty() {
                    self.problem(span, format!("{label}: the secret is empty"));
                    return None;
                }
                Verify::Standard { keys }
            }
            (VerifyKind::Hex, Some((secret, _))) => {
                let header = raw
                    .signature_header
                    .as_ref()
                    .map_or(DEFAULT_HEX_HEADER.to_string(), |h| h.get_ref().clone());
                if let Some(h) = raw
                    .signature_header
                    .as_ref()
                    .filter(|_| !is_header_name(&header))
                {
                    self.problem(
                        h.span(),
                        format!("{label}: signature_header {header:?} is not a valid header name"),
                    );
                }
                let prefix = raw
                    .signature_prefix
                    .as_ref()
                    .map_or(String::new(), |p| p.get_ref().clone());
                if let Some(p) = raw
                    .signature_prefix
                    .as_ref()
                    .filter(|_| !is_header_value(&prefix))
                {
                    self.problem(
                        p.span(),
                        format!("{label}: signature_prefix may not hold control characters"),
                    );
                }
                Verify::Hex {
                    key: SigningKey::from_utf8(&secret),
                    header,
                    prefix,
                }
            }
        };
        Some(GenericSource {
            id,
            kind,
            conversation,
            project,
            occurred_at,
            verify,
        })
    }

    /// A bearer token long enough that guessing it is hopeless, even unthrottled.
    fn bearer_token(&mut self, found: Option<(String, Range<usize>)>, key: &str) -> Option<Secret> {
        let (token, span) = found?;
        let length = token.chars().count();
        if length < MIN_TOKEN_CHARS {
            // The length only, never the token.
            self.problem(
                span,
                format!("{key} is {length} characters long; use at least {MIN_TOKEN_CHARS} random characters (e.g. `openssl rand -hex 24`)"),
            );
            return None;
        }
        Some(Secret::new(token))
    }

    /// Reads a secret given as at most one of its three keys. `None` when none is given
    /// or it could not be read (a problem is then recorded). Messages name where the
    /// secret came from, never its value.
    fn one_secret(
        &mut self,
        keys: &SecretKeys<'_>,
        label: &str,
        anchor: Option<Range<usize>>,
    ) -> Option<(String, Range<usize>)> {
        let [inline_key, file_key, env_key] = keys.names;
        let spans: Vec<Range<usize>> = [
            keys.inline.as_ref().map(Spanned::span),
            keys.file.as_ref().map(Spanned::span),
            keys.env.as_ref().map(Spanned::span),
        ]
        .into_iter()
        .flatten()
        .collect();
        if spans.len() > 1 {
            let span = anchor.unwrap_or_else(|| spans[1].clone());
            self.problem(
                span,
                format!("{label}: set only one of {inline_key}, {file_key} and {env_key}"),
            );
            return None;
        }
        let found = if let Some(inline) = keys.inline {
            Some((inline.get_ref().trim().to_string(), inline.span()))
        } else if let Some(file) = keys.file {
            let path = self.base.join(file.get_ref());
            match super::values::read_secret_file(&path) {
                Ok(text) => Some((text.trim().to_string(), file.span())),
                Err(err) => {
                    self.problem(
                        file.span(),
                        format!(
                            "{label}: while reading {file_key} {}: {err}",
                            path.display()
                        ),
                    );
                    return None;
                }
            }
        } else if let Some(var) = keys.env {
            match std::env::var(var.get_ref()) {
                Ok(value) if !value.trim().is_empty() => {
                    Some((value.trim().to_string(), var.span()))
                }
                _ if looks_like_secret(var.get_ref()) => {
                    self.problem(
                        var.span(),
                        format!("{label}: {env_key} must name an environment variable (letters, digits and _), \
                                 not hold the secret itself; its value is not shown"),
                    );
                    return None;
                }
                _ => {
                    self.problem(
                        var.span(),
                        format!(
                            "{label}: the environment variable {} named by {env_key} is not set or empty",
                            var.get_ref()
                        ),
                    );
                    return None;
                }
            }
        } else {
            None
        };
        match found {
            Some((value, span)) if value.is_empty() => {
                self.problem(span, format!("{label}: the {inline_key} is empty"));
                None
            }
            other => other,
        }
    }
}
