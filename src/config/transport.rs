//! How deliveries reach their receivers, as configured: TLS trust (`ca_file`, `ca_only`),
//! a client certificate (`client_cert_file` + `client_key_file`), under `[delivery]` or
//! per subscription (the subscription's own wins), and the egress proxy (`[delivery]
//! proxy`, `no_proxy`). Certificate and key files are read and checked here, at load, so
//! a bad file is a located config error, never a failed attempt; key bytes never show.

use std::fmt;
use std::hash::{Hash, Hasher};
use std::path::{Path, PathBuf};
use std::sync::Arc;

use sha2::{Digest as _, Sha256};
use toml::Spanned;

use super::auth::Auth;
use super::validate::Validator;
use super::Secret;
use crate::egress::Network;

/// How one subscription's deliveries (and its OAuth2 token requests) travel.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct Transport {
    pub tls: Tls,
    /// `[delivery] proxy`, with its `no_proxy` list.
    pub proxy: Option<Arc<Proxy>>,
    /// How the receiver is told who is calling, besides the signature.
    pub auth: Option<Auth>,
}

impl Transport {
    /// The proxy a request to `url` goes through: none when `no_proxy` covers its host.
    pub fn proxy_for(&self, url: &str) -> Option<&Arc<Proxy>> {
        let proxy = self.proxy.as_ref()?;
        let host = url_host(url)?;
        (!proxy.bypasses(host)).then_some(proxy)
    }
}

/// `[delivery]`'s transport settings: the TLS defaults and the proxy.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct DeliveryTransport {
    pub tls: Tls,
    pub proxy: Option<Arc<Proxy>>,
}

/// What a TLS connection trusts and presents. The default trusts the built-in Mozilla
/// roots and presents no certificate.
#[derive(Debug, Clone, Default, PartialEq, Eq, Hash)]
pub struct Tls {
    pub ca: Option<Arc<CaBundle>>,
    pub client: Option<Arc<ClientIdentity>>,
}

/// The certificates of `ca_file`.
pub struct CaBundle {
    pub path: PathBuf,
    /// DER, in file order.
    pub certs: Vec<Vec<u8>>,
    /// `ca_only`: trust these alone instead of adding them to the built-in roots.
    pub only: bool,
    fingerprint: [u8; 32],
}

/// `client_cert_file` + `client_key_file`, checked to belong together.
pub struct ClientIdentity {
    pub cert_path: PathBuf,
    /// DER, leaf first.
    pub chain: Vec<Vec<u8>>,
    /// The key file as read (PEM); for the TLS library only, never for printing.
    key_pem: Vec<u8>,
    fingerprint: [u8; 32],
}

impl ClientIdentity {
    /// The private key file's PEM text; for the TLS library only, never for printing.
    pub fn key_pem(&self) -> &[u8] {
        &self.key_pem
    }
}

// Equality and hashing go by a digest of the contents: the agent cache keys on them.
macro_rules! by_fingerprint {
    ($t:ty) => {
        impl PartialEq for $t {
            fn eq(&self, other: &Self) -> bool {
                self.fingerprint == other.fingerprint
            }
        }
        impl Eq for $t {}
        impl Hash for $t {
            fn hash<H: Hasher>(&self, state: &mut H) {
                self.fingerprint.hash(state)
            }
        }
    };
}
by_fingerprint!(CaBundle);
by_fingerprint!(ClientIdentity);

impl fmt::Debug for CaBundle {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("CaBundle")
            .field("path", &self.path)
            .field("certs", &self.certs.len())
            .field("only", &self.only)
            .finish()
    }
}

impl fmt::Debug for ClientIdentity {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("ClientIdentity")
            .field("cert_path", &self.cert_path)
            .field("chain", &self.chain.len())
            .field("key", &"[redacted]")
            .finish()
    }
}

/// An HTTP CONNECT proxy. Its password never shows; [`Proxy::shown`] has no credentials.
#[derive(Debug, Clone, PartialEq, Eq, Hash)]
pub struct Proxy {
    pub host: String,
    pub port: u16,
    pub username: Option<String>,
    pub password: Option<Secret>,
    pub no_proxy: Vec<NoProxy>,
}

impl Proxy {
    /// `http://host:port`, for messages.
    pub fn shown(&self) -> String {
        format!("http://{}:{}", self.host, self.port)
    }

    /// Whether a request to `host` goes direct.
    pub fn bypasses(&self, host: &str) -> bool {
        let host = host
            .trim_start_matches('[')
            .trim_end_matches(']')
            .trim_end_matches('.')
            .to_ascii_lowercase();
        let ip = host.parse::<std::net::IpAddr>().ok();
        self.no_proxy.iter().any(|entry| match entry {
            NoProxy::All => true,
            NoProxy::Network(net) => ip.is_some_and(|ip| net.contains(ip)),
            NoProxy::Domain(domain) => {
                host == *domain
                    || host
                        .strip_suffix(domain.as_str())
                        .is_some_and(|rest| rest.ends_with('.'))
            }
        })
    }
}

/// One `no_proxy` entry.
#[derive(Debug, Clone, PartialEq, Eq, Hash)]
pub enum NoProxy {
    /// `"*"`: no request uses the proxy.
    All,
    /// A name, lower case: it and every name under it.
    Domain(String),
    /// An address or network: URLs whose host is an address in it.
    Network(Network),
}

/// The host of an `http(s)://` URL, without brackets or port.
pub(crate) fn url_host(url: &str) -> Option<&str> {
    let rest = url
        .strip_prefix("https://")
        .or_else(|| url.strip_prefix("http://"))?;
    let authority = rest.split(['/', '?', '#']).next()?;
    let host_port = authority.rsplit_once('@').map_or(authority, |(_, h)| h);
    if let Some(v6) = host_port.strip_prefix('[') {
        return v6.split(']').next();
    }
    host_port.split(':').next()
}

// ---- the file as written ----

/// The TLS keys, as written under `[delivery]` or in a subscription.
#[derive(Default)]
pub(super) struct RawTls {
    pub ca_file: Option<Spanned<PathBuf>>,
    pub ca_only: Option<Spanned<bool>>,
    pub client_cert_file: Option<Spanned<PathBuf>>,
    pub client_key_file: Option<Spanned<PathBuf>>,
}

/// The proxy keys under `[delivery]`.
#[derive(Default)]
pub(super) struct RawProxy {
    pub proxy: Option<Spanned<String>>,
    pub proxy_password_env: Option<Spanned<String>>,
    pub proxy_password_file: Option<Spanned<PathBuf>>,
    pub no_proxy: Option<Vec<Spanned<String>>>,
}

/// Longest certificate or key file read (a CA bundle of a few hundred roots fits).
const MAX_PEM_FILE_BYTES: u64 = 1 << 20;

/// Reads a PEM file: a regular file of at most 1 MiB (a FIFO or device would hang or fill
/// memory while the config loads).
fn read_pem_file(path: &Path) -> std::io::Result<Vec<u8>> {
    use std::io::{Error, ErrorKind, Read as _};
    if !std::fs::metadata(path)?.is_file() {
        return Err(Error::new(ErrorKind::InvalidInput, "not a regular file"));
    }
    let mut bytes = Vec::new();
    std::fs::File::open(path)?
        .take(MAX_PEM_FILE_BYTES + 1)
        .read_to_end(&mut bytes)?;
    if bytes.len() as u64 > MAX_PEM_FILE_BYTES {
        return Err(Error::new(ErrorKind::InvalidData, "over 1 MiB"));
    }
    Ok(bytes)
}

enum Pem {
    Certs(Vec<Vec<u8>>),
    /// The file's bytes and the first key in it.
    Key(Vec<u8>, rustls::pki_types::PrivateKeyDer<'static>),
}

/// The certificates, or the first private key, in PEM text; an error names what is
/// missing without quoting the file.
fn parse_pem(bytes: &[u8], want_key: bool) -> Result<Pem, String> {
    use rustls::pki_types::pem::PemObject as _;
    if want_key {
        if let Ok(key) = rustls::pki_types::PrivateKeyDer::from_pem_slice(bytes) {
            return Ok(Pem::Key(bytes.to_vec(), key));
        }
    }
    let mut certs = Vec::new();
    for cert in rustls::pki_types::CertificateDer::pem_slice_iter(bytes) {
        match cert {
            Ok(cert) => certs.push(cert.to_vec()),
            Err(_) => return Err("it is not valid PEM".into()),
        }
    }
    let text = String::from_utf8_lossy(bytes);
    if want_key {
        Err(if text.contains("ENCRYPTED") {
            "it holds an encrypted key; posthorn reads unencrypted PEM keys only \
             (openssl pkey -in KEY -out PLAIN writes one)"
                .into()
        } else {
            "it holds no PEM private key (-----BEGIN PRIVATE KEY-----, RSA PRIVATE KEY or \
             EC PRIVATE KEY)"
                .into()
        })
    } else if certs.is_empty() {
        Err("it holds no PEM certificate (-----BEGIN CERTIFICATE-----)".into())
    } else {
        Ok(Pem::Certs(certs))
    }
}

fn fingerprint(parts: &[&[u8]]) -> [u8; 32] {
    let mut hash = Sha256::new();
    for part in parts {
        hash.update((part.len() as u64).to_be_bytes());
        hash.update(part);
    }
    hash.finalize().into()
}

impl Validator<'_> {
    /// Reads a PEM file named at `key`, or records a located problem.
    fn pem(&mut self, file: &Spanned<PathBuf>, want_key: bool, what: &str) -> Option<Pem> {
        let path = self.base.join(file.get_ref());
        let parsed = read_pem_file(&path)
            .map_err(|err| err.to_string())
            .and_then(|bytes| parse_pem(&bytes, want_key));
        match parsed {
            Ok(pem) => Some(pem),
            Err(err) => {
                self.problem(
                    file.span(),
                    format!("{what}: while reading {}: {err}", path.display()),
                );
                None
            }
        }
    }

    /// Resolves TLS keys over `inherited` (the `[delivery]` ones, or the defaults): a
    /// subscription's `ca_file` replaces the inherited one, and its certificate and key
    /// pair the inherited pair.
    pub(super) fn tls(&mut self, raw: RawTls, inherited: &Tls, label: &str) -> Tls {
        let mut tls = inherited.clone();
        if let Some(only) = &raw.ca_only {
            if raw.ca_file.is_none() {
                self.problem(
                    only.span(),
                    format!("{label}ca_only applies to the ca_file set beside it; set ca_file"),
                );
            }
        }
        if let Some(file) = &raw.ca_file {
            let what = format!("{label}ca_file");
            if let Some(Pem::Certs(certs)) = self.pem(file, false, &what) {
                let mut store = rustls::RootCertStore::empty();
                for (i, der) in certs.iter().enumerate() {
                    if let Err(err) = store.add(der.clone().into()) {
                        self.problem(
                            file.span(),
                            format!(
                                "{what}: certificate {} of {} in {} is not usable as a trust \
                                 root: {err}",
                                i + 1,
                                certs.len(),
                                file.get_ref().display()
                            ),
                        );
                    }
                }
                let only = raw.ca_only.as_ref().is_some_and(|o| *o.get_ref());
                let parts: Vec<&[u8]> = certs.iter().map(Vec::as_slice).collect();
                let mut digest = fingerprint(&parts);
                digest[0] ^= u8::from(only);
                tls.ca = Some(Arc::new(CaBundle {
                    path: self.base.join(file.get_ref()),
                    certs,
                    only,
                    fingerprint: digest,
                }));
            }
        }
        match (&raw.client_cert_file, &raw.client_key_file) {
            (None, None) => {}
            (Some(cert), Some(key)) => tls.client = self.client_identity(cert, key, label),
            (Some(one), None) | (None, Some(one)) => self.problem(
                one.span(),
                format!(
                    "{label}client_cert_file and client_key_file go together; set both \
                     (the certificate and its private key)"
                ),
            ),
        }
        tls
    }

    fn client_identity(
        &mut self,
        cert: &Spanned<PathBuf>,
        key: &Spanned<PathBuf>,
        label: &str,
    ) -> Option<Arc<ClientIdentity>> {
        let chain = self.pem(cert, false, &format!("{label}client_cert_file"));
        let key_pem = self.pem(key, true, &format!("{label}client_key_file"));
        let (Some(Pem::Certs(chain)), Some(Pem::Key(key_pem, key_der))) = (chain, key_pem) else {
            return None;
        };
        let der = key_der.secret_der().to_vec();
        // The check rustls makes when the connection is set up, made here so a bad pair
        // is a config error (and never a panic in a worker).
        let provider = rustls::crypto::ring::default_provider();
        let certs = chain.iter().map(|c| c.clone().into()).collect();
        if let Err(err) = rustls::sign::CertifiedKey::from_der(certs, key_der, &provider) {
            let message = match err {
                rustls::Error::InconsistentKeys(_) => format!(
                    "{label}client_key_file is not the private key of the certificate in \
                     client_cert_file ({})",
                    cert.get_ref().display()
                ),
                rustls::Error::General(_) => format!(
                    "{label}client_key_file holds a key posthorn cannot use (RSA, ECDSA \
                     P-256/P-384 and Ed25519 keys work)"
                ),
                other => format!("{label}client_cert_file and client_key_file: {other}"),
            };
            self.problem(key.span(), message);
            return None;
        }
        let mut parts: Vec<&[u8]> = chain.iter().map(Vec::as_slice).collect();
        parts.push(&der);
        let fingerprint = fingerprint(&parts);
        Some(Arc::new(ClientIdentity {
            cert_path: self.base.join(cert.get_ref()),
            chain,
            key_pem,
            fingerprint,
        }))
    }

    /// `[delivery] proxy`, its password and `no_proxy`.
    pub(super) fn proxy(&mut self, raw: RawProxy, allow: &[Network]) -> Option<Arc<Proxy>> {
        let Some(url) = raw.proxy else {
            let spans = [
                raw.proxy_password_env.map(|k| k.span()),
                raw.proxy_password_file.map(|k| k.span()),
                raw.no_proxy.and_then(|list| list.first().map(|k| k.span())),
            ];
            for key in spans.into_iter().flatten() {
                self.problem(
                    key,
                    "delivery: proxy_password_env, proxy_password_file and no_proxy apply to \
                     a proxy; set delivery.proxy",
                );
            }
            return None;
        };
        let problems = self.problems.len();
        let no_proxy = self.no_proxy(raw.no_proxy.unwrap_or_default());
        let text = url.get_ref().trim();
        let Some(rest) = text.strip_prefix("http://") else {
            self.problem(
                url.span(),
                "delivery.proxy must be an http:// URL of an HTTP CONNECT proxy, like \
                 \"http://proxy.lan:3128\" (the tunnel to an https receiver is still TLS end \
                 to end)",
            );
            return None;
        };
        // Only the host and port are ever echoed: the text may hold a password.
        let parsed = ureq::Proxy::new(text).ok().filter(|p| {
            p.protocol() == ureq::ProxyProtocol::Http
                && !p.host().is_empty()
                && rest.trim_end_matches('/').split('/').count() == 1
        });
        let Some(parsed) = parsed else {
            self.problem(
                url.span(),
                "delivery.proxy is not a proxy URL; write http://[user[:password]@]host:port \
                 (its value is not shown)",
            );
            return None;
        };
        let mut password = parsed.password().map(Secret::new);
        let from_elsewhere = [
            raw.proxy_password_env.as_ref().map(|e| e.span()),
            raw.proxy_password_file.as_ref().map(|f| f.span()),
        ];
        if from_elsewhere.iter().flatten().count() > 1
            || (password.is_some() && from_elsewhere.iter().any(Option::is_some))
        {
            self.problem(
                url.span(),
                "delivery: give the proxy password once: in the proxy URL, \
                 proxy_password_env or proxy_password_file",
            );
        }
        if let Some(env) = &raw.proxy_password_env {
            password = self.secret_env(env, "delivery.proxy_password_env");
        }
        if let Some(file) = &raw.proxy_password_file {
            password = self.secret_file(file, "delivery.proxy_password_file");
        }
        if password.is_some() && parsed.username().is_none() {
            self.problem(
                url.span(),
                "delivery.proxy has a password but no user name; write \
                 http://user@host:port",
            );
        }
        let proxy = Proxy {
            host: parsed
                .host()
                .trim_start_matches('[')
                .trim_end_matches(']')
                .to_string(),
            port: parsed.port(),
            username: parsed.username().map(str::to_string),
            password,
            no_proxy,
        };
        // The proxy is reached through the same guard as any receiver.
        if let Some(refusal) = crate::egress::refused_literal(&proxy.shown(), allow) {
            self.problem(
                url.span(),
                format!(
                    "delivery.proxy at {}: {refusal} (the proxy's own address must be allowed \
                     under [delivery])",
                    proxy.shown()
                ),
            );
        }
        (self.problems.len() == problems).then(|| Arc::new(proxy))
    }

    fn no_proxy(&mut self, raw: Vec<Spanned<String>>) -> Vec<NoProxy> {
        let mut entries = Vec::new();
        for entry in raw {
            let text = entry.get_ref().trim().to_ascii_lowercase();
            let parsed = if text == "*" {
                Ok(NoProxy::All)
            } else if text.contains('/') || text.parse::<std::net::IpAddr>().is_ok() {
                text.parse::<Network>().map(NoProxy::Network)
            } else {
                let name = text.trim_start_matches("*.").trim_start_matches('.');
                let ok = !name.is_empty()
                    && name
                        .bytes()
                        .all(|b| b.is_ascii_alphanumeric() || b"-._".contains(&b));
                if ok {
                    Ok(NoProxy::Domain(name.trim_end_matches('.').to_string()))
                } else {
                    Err(format!(
                        "{:?} is not a host, domain or network; write \"crm.lan\", \
                         \".example.org\", \"10.0.0.0/8\" or \"*\"",
                        entry.get_ref()
                    ))
                }
            };
            match parsed {
                Ok(parsed) if !entries.contains(&parsed) => entries.push(parsed),
                Ok(_) => {}
                Err(message) => self.problem(entry.span(), format!("delivery.no_proxy: {message}")),
            }
        }
        entries
    }

    /// A secret from the environment variable named at `var`.
    pub(super) fn secret_env(&mut self, var: &Spanned<String>, key: &str) -> Option<Secret> {
        match std::env::var(var.get_ref()) {
            Ok(value) if !value.trim().is_empty() => Some(Secret::new(value.trim())),
            _ if super::validate::looks_like_secret(var.get_ref()) => {
                self.problem(
                    var.span(),
                    format!(
                        "{key} must name an environment variable (letters, digits and _), \
                         not hold the secret itself; its value is not shown"
                    ),
                );
                None
            }
            _ => {
                self.problem(
                    var.span(),
                    format!(
                        "the environment variable {} named by {key} is not set or empty",
                        var.get_ref()
                    ),
                );
                None
            }
        }
    }

    /// A secret read from the file named at `file`.
    pub(super) fn secret_file(&mut self, file: &Spanned<PathBuf>, key: &str) -> Option<Secret> {
        let path = self.base.join(file.get_ref());
        match super::values::read_secret_file(&path) {
            Ok(text) if !text.trim().is_empty() => Some(Secret::new(text.trim())),
            Ok(_) => {
                self.problem(file.span(), format!("{key}: {} is empty", path.display()));
                None
            }
            Err(err) => {
                self.problem(
                    file.span(),
                    format!("{key}: while reading {}: {err}", path.display()),
                );
                None
            }
        }
    }
}

#[cfg(test)]
#[path = "transport_tests.rs"]
mod tests;
