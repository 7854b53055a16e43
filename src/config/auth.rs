//! A subscription's `auth`: how the receiver is told who is calling, besides the
//! signature. A bearer token, basic auth, or OAuth2 client credentials (posthorn fetches
//! the token; see `crate::transport::oauth`). Secrets come inline, from a file or from the
//! environment, and never appear in messages or `Debug` output.

use std::path::PathBuf;
use std::sync::Arc;

use serde::Deserialize;
use sha2::{Digest as _, Sha256};
use toml::Spanned;

use super::validate::Validator;
use super::Secret;

#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Auth {
    /// `Authorization: Bearer <token>`.
    Bearer(Secret),
    /// `Authorization: Basic base64(username:password)`.
    Basic { username: String, password: Secret },
    /// A token fetched from `token_url` (RFC 6749 section 4.4), cached and refreshed.
    OAuth2(Arc<OAuth2>),
}

/// OAuth2 client credentials.
#[derive(Debug, PartialEq, Eq)]
pub struct OAuth2 {
    pub token_url: String,
    pub client_id: String,
    pub client_secret: Secret,
    pub scope: Option<String>,
    pub audience: Option<String>,
    pub client_auth: ClientAuth,
    /// A digest of every setting above (the secret included), so a cached token is
    /// reused only for the settings it was fetched with.
    pub fingerprint: [u8; 32],
}

/// How the client authenticates at the token endpoint.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum ClientAuth {
    /// HTTP Basic with the form-encoded id and secret (`client_secret_basic`, which RFC
    /// 6749 section 2.3.1 requires every server to take).
    #[default]
    Basic,
    /// `client_id` and `client_secret` in the form body (`client_secret_post`).
    Post,
}

/// `auth = { ... }` as written.
#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
pub(super) struct RawAuth {
    bearer: Option<Spanned<String>>,
    bearer_env: Option<Spanned<String>>,
    bearer_file: Option<Spanned<PathBuf>>,
    username: Option<Spanned<String>>,
    password: Option<Spanned<String>>,
    password_env: Option<Spanned<String>>,
    password_file: Option<Spanned<PathBuf>>,
    token_url: Option<Spanned<String>>,
    client_id: Option<Spanned<String>>,
    client_secret: Option<Spanned<String>>,
    client_secret_env: Option<Spanned<String>>,
    client_secret_file: Option<Spanned<PathBuf>>,
    scope: Option<Spanned<String>>,
    audience: Option<Spanned<String>>,
    client_auth: Option<Spanned<ClientAuth>>,
}

/// Where one secret of `auth` may come from: `NAME`, `NAME_env`, `NAME_file`.
struct SecretKeys<'a> {
    name: &'a str,
    inline: &'a Option<Spanned<String>>,
    env: &'a Option<Spanned<String>>,
    file: &'a Option<Spanned<PathBuf>>,
}

impl SecretKeys<'_> {
    fn given(&self) -> bool {
        self.inline.is_some() || self.env.is_some() || self.file.is_some()
    }
}

impl Validator<'_> {
    pub(super) fn auth(&mut self, raw: Spanned<RawAuth>, label: &str) -> Option<Auth> {
        let span = raw.span();
        let raw = raw.into_inner();
        let bearer = SecretKeys {
            name: "bearer",
            inline: &raw.bearer,
            env: &raw.bearer_env,
            file: &raw.bearer_file,
        };
        let password = SecretKeys {
            name: "password",
            inline: &raw.password,
            env: &raw.password_env,
            file: &raw.password_file,
        };
        let client_secret = SecretKeys {
            name: "client_secret",
            inline: &raw.client_secret,
            env: &raw.client_secret_env,
            file: &raw.client_secret_file,
        };
        let is_basic = raw.username.is_some() || password.given();
        let is_oauth = raw.token_url.is_some()
            || raw.client_id.is_some()
            || client_secret.given()
            || raw.scope.is_some()
            || raw.audience.is_some()
            || raw.client_auth.is_some();
        let label = format!("{label}: auth");
        match (bearer.given(), is_basic, is_oauth) {
            (true, false, false) => self.auth_secret(&bearer, &label).map(Auth::Bearer),
            (false, true, false) => {
                let Some(username) = &raw.username else {
                    self.problem(span, format!("{label}: basic auth needs username"));
                    return None;
                };
                if username.get_ref().contains(':')
                    || !super::validate::is_header_value(username.get_ref())
                {
                    self.problem(
                        username.span(),
                        format!("{label}: username may not hold ':' or control characters"),
                    );
                }
                let password = self.auth_secret(&password, &label)?;
                Some(Auth::Basic {
                    username: username.get_ref().clone(),
                    password,
                })
            }
            (false, false, true) => self.oauth(&raw, &client_secret, span, &label),
            (false, false, false) => {
                self.problem(
                    span,
                    format!(
                        "{label} is empty; set bearer_env (or bearer, bearer_file), username \
                         and password_env, or token_url, client_id and client_secret_env"
                    ),
                );
                None
            }
            _ => {
                self.problem(
                    span,
                    format!(
                        "{label} mixes kinds; use one of a bearer token (bearer*), basic auth \
                         (username, password*) or OAuth2 (token_url, client_id, \
                         client_secret*, scope, audience)"
                    ),
                );
                None
            }
        }
    }

    fn oauth(
        &mut self,
        raw: &RawAuth,
        client_secret: &SecretKeys,
        span: std::ops::Range<usize>,
        label: &str,
    ) -> Option<Auth> {
        let (Some(token_url), Some(client_id)) = (&raw.token_url, &raw.client_id) else {
            self.problem(
                span,
                format!("{label}: OAuth2 needs token_url, client_id and a client_secret"),
            );
            return None;
        };
        self.check_url(token_url, &format!("{label}: token_url"));
        for text in [Some(client_id), raw.scope.as_ref(), raw.audience.as_ref()]
            .into_iter()
            .flatten()
        {
            if text.get_ref().is_empty() || text.get_ref().chars().any(char::is_control) {
                self.problem(
                    text.span(),
                    format!("{label}: client_id, scope and audience may not be empty or hold control characters"),
                );
            }
        }
        let secret = self.auth_secret(client_secret, label)?;
        let client_auth = raw
            .client_auth
            .as_ref()
            .map_or(ClientAuth::default(), |c| *c.get_ref());
        let mut hash = Sha256::new();
        for part in [
            token_url.get_ref().as_str(),
            client_id.get_ref(),
            secret.expose(),
            raw.scope.as_ref().map_or("", |s| s.get_ref()),
            raw.audience.as_ref().map_or("", |s| s.get_ref()),
            if client_auth == ClientAuth::Basic {
                "basic"
            } else {
                "post"
            },
        ] {
            hash.update((part.len() as u64).to_be_bytes());
            hash.update(part);
        }
        Some(Auth::OAuth2(Arc::new(OAuth2 {
            token_url: token_url.get_ref().clone(),
            client_id: client_id.get_ref().clone(),
            client_secret: secret,
            scope: raw.scope.as_ref().map(|s| s.get_ref().clone()),
            audience: raw.audience.as_ref().map(|s| s.get_ref().clone()),
            client_auth,
            fingerprint: hash.finalize().into(),
        })))
    }

    /// The one secret `keys` names, or a located problem; never echoes a value.
    fn auth_secret(&mut self, keys: &SecretKeys, label: &str) -> Option<Secret> {
        let name = keys.name;
        let given = [
            keys.inline.is_some(),
            keys.env.is_some(),
            keys.file.is_some(),
        ];
        let spans = [
            keys.inline.as_ref().map(|k| k.span()),
            keys.env.as_ref().map(|k| k.span()),
            keys.file.as_ref().map(|k| k.span()),
        ];
        match given.iter().filter(|g| **g).count() {
            0 => {
                let at = spans.iter().flatten().next().cloned().unwrap_or(0..0);
                self.problem(
                    at,
                    format!("{label}: set one of {name}, {name}_env or {name}_file"),
                );
                return None;
            }
            1 => {}
            _ => {
                let at = spans.iter().flatten().next().cloned().unwrap_or(0..0);
                self.problem(
                    at,
                    format!("{label}: set only one of {name}, {name}_env and {name}_file"),
                );
                return None;
            }
        }
        let secret = if let Some(inline) = keys.inline {
            if inline.get_ref().trim().is_empty() {
                self.problem(inline.span(), format!("{label}: {name} is empty"));
                return None;
            }
            Some(Secret::new(inline.get_ref().trim()))
        } else if let Some(env) = keys.env {
            self.secret_env(env, &format!("{label}: {name}_env"))
        } else {
            let file = keys.file.as_ref()?;
            self.secret_file(file, &format!("{label}: {name}_file"))
        }?;
        if !super::validate::is_header_value(secret.expose()) {
            let at = spans.iter().flatten().next().cloned().unwrap_or(0..0);
            self.problem(
                at,
                format!("{label}: {name} may not hold control characters (its value is not shown)"),
            );
            return None;
        }
        Some(secret)
    }
}
