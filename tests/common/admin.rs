//! The operator API from outside: a config block that sets the admin password (as an
//! argon2 hash made by posthorn's own `password::hash`) and an API token, and a small
//! client that calls `/api/v1` with no credentials, with the token, or with a session
//! (cookie and CSRF token from a real login).

use std::sync::OnceLock;
use std::time::Duration;

use super::{Home, Response, Serve};

/// The admin password the config's `password_hash` is made from.
pub const PASSWORD: &str = "correct horse battery staple";
/// `[admin] api_token`.
pub const API_TOKEN: &str = "api-token-for-tests-0123456789";

/// The hash of [`PASSWORD`], made once per test binary (argon2 is slow by design).
pub fn password_hash() -> &'static str {
    static HASH: OnceLock<String> = OnceLock::new();
    HASH.get_or_init(|| posthorn::password::hash(PASSWORD))
}

/// An `[admin]` block with the password hash and the API token.
pub fn admin_block() -> String {
    format!(
        "\n[admin]\npassword_hash = {:?}\napi_token = {API_TOKEN:?}\n",
        password_hash()
    )
}

/// Writes the config (`body` plus [`admin_block`]) and starts posthorn on it, waiting
/// until its HTTP server listens.
pub fn start(home: &Home, body: &str) -> Serve {
    home.write_config(&format!("{body}{}", admin_block()));
    let serve = Serve::start(home);
    super::wait_for_inlet(home);
    serve
}

#[derive(Clone)]
enum Credentials {
    None,
    Token(String),
    Session {
        cookie: String,
        csrf: Option<String>,
    },
}

/// A client of one posthorn's `/api/v1`.
#[derive(Clone)]
pub struct Api {
    base: String,
    agent: ureq::Agent,
    credentials: Credentials,
}

impl Api {
    /// No credentials at all.
    pub fn anonymous(home: &Home) -> Api {
        let agent: ureq::Agent = ureq::Agent::config_builder()
            .http_status_as_error(false)
            .timeout_global(Some(Duration::from_secs(20)))
            .max_redirects(0)
            .build()
            .into();
        Api {
            base: home.inlet_url(),
            agent,
            credentials: Credentials::None,
        }
    }

    /// `Authorization: Bearer <token>` on every request.
    pub fn token(home: &Home, token: &str) -> Api {
        Api {
            credentials: Credentials::Token(token.to_string()),
            ..Api::anonymous(home)
        }
    }

    /// Logs in with `password`; panics unless the login succeeds.
    pub fn login(home: &Home, password: &str) -> Api {
        let anonymous = Api::anonymous(home);
        let response = anonymous.login_response(password).expect(200);
        let cookie = response
            .header("set-cookie")
            .and_then(|value| value.split(';').next())
            .filter(|pair| pair.starts_with("posthorn_session="))
            .unwrap_or_else(|| panic!("login set no posthorn_session cookie: {response:?}"))
            .to_string();
        let csrf = response.json()["csrf_token"]
            .as_str()
            .unwrap_or_else(|| panic!("login answered no csrf_token: {response:?}"))
            .to_string();
        Api {
            credentials: Credentials::Session {
                cookie,
                csrf: Some(csrf),
            },
            ..anonymous
        }
    }

    /// The session cookie (`posthorn_session=...`), if this client logged in.
    pub fn cookie(&self) -> Option<&str> {
        match &self.credentials {
            Credentials::Session { cookie, .. } => Some(cookie),
            _ => None,
        }
    }

    /// The same credentials (cookie and CSRF token, or token) sent to another node.
    pub fn on(&self, home: &Home) -> Api {
        Api {
            base: home.inlet_url(),
            ..self.clone()
        }
    }

    /// `POST /api/v1/login` with `{"password": password}`, as it answers.
    pub fn login_response(&self, password: &str) -> Response {
        self.post_raw(
            "/api/v1/login",
            Some("application/json"),
            serde_json::json!({ "password": password })
                .to_string()
                .as_bytes(),
        )
    }

    /// The session's CSRF token, if this client logged in.
    pub fn csrf(&self) -> Option<&str> {
        match &self.credentials {
            Credentials::Session { csrf, .. } => csrf.as_deref(),
            _ => None,
        }
    }

    /// The same session cookie with another CSRF header (`None`: no header at all).
    pub fn with_csrf(&self, csrf: Option<&str>) -> Api {
        let Credentials::Session { cookie, .. } = &self.credentials else {
            panic!("with_csrf needs a logged-in client");
        };
        Api {
            credentials: Credentials::Session {
                cookie: cookie.clone(),
                csrf: csrf.map(str::to_string),
            },
            ..self.clone()
        }
    }

    pub fn get(&self, path: &str) -> Response {
        let request = self.agent.get(format!("{}{path}", self.base));
        let request = match &self.credentials {
            Credentials::None => request,
            Credentials::Token(token) => request.header("Authorization", format!("Bearer {token}")),
            Credentials::Session { cookie, .. } => request.header("Cookie", cookie),
        };
        answer(path, request.call())
    }

    /// POSTs `body` as JSON, or nothing.
    pub fn post(&self, path: &str, body: Option<serde_json::Value>) -> Response {
        match body {
            Some(body) => {
                self.post_raw(path, Some("application/json"), body.to_string().as_bytes())
            }
            None => self.post_raw(path, None, b""),
        }
    }

    /// POSTs raw bytes with `content_type` (or none).
    pub fn post_raw(&self, path: &str, content_type: Option<&str>, body: &[u8]) -> Response {
        let mut request = self.agent.post(format!("{}{path}", self.base));
        if let Some(content_type) = content_type {
            request = request.header("Content-Type", content_type);
        }
        match &self.credentials {
            Credentials::None => {}
            Credentials::Token(token) => {
                request = request.header("Authorization", format!("Bearer {token}"));
            }
            Credentials::Session { cookie, csrf } => {
                request = request.header("Cookie", cookie);
                if let Some(csrf) = csrf {
                    request = request.header("X-CSRF-Token", csrf);
                }
            }
        }
        answer(path, request.send(body))
    }
}

fn answer(path: &str, result: Result<ureq::http::Response<ureq::Body>, ureq::Error>) -> Response {
    let mut response = result.unwrap_or_else(|err| panic!("request to {path} failed: {err}"));
    let headers = response
        .headers()
        .iter()
        .map(|(name, value)| {
            (
                name.as_str().to_string(),
                String::from_utf8_lossy(value.as_bytes()).into_owned(),
            )
        })
        .collect();
    let body = response
        .body_mut()
        .read_to_string()
        .unwrap_or_else(|err| panic!("reading the answer of {path}: {err}"));
    Response {
        status: response.status().as_u16(),
        headers,
        body,
    }
}
