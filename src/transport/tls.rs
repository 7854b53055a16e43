//! ureq's TLS settings for a route without a `ca_file`: the built-in Mozilla roots and,
//! if configured, the client certificate. Routes with a `ca_file` get their TLS from
//! `pinned` (ureq's settings cannot trust a pinned self-signed certificate).

use ureq::tls::{Certificate, ClientCert, PrivateKey, RootCerts, TlsConfig};

use crate::config::Tls;

pub fn tls_config(tls: &Tls) -> TlsConfig {
    // The key was parsed and matched to the certificate when the config was loaded.
    let client = tls.client.as_ref().and_then(|identity| {
        let chain: Vec<Certificate<'static>> = identity
            .chain
            .iter()
            .map(|der| Certificate::from_der(der).to_owned())
            .collect();
        let key = PrivateKey::from_pem(identity.key_pem()).ok()?;
        Some(ClientCert::new_with_certs(&chain, key))
    });
    TlsConfig::builder()
        .root_certs(RootCerts::WebPki)
        .client_cert(client)
        .build()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn without_ca_file_the_builtin_roots_are_used() {
        let config = tls_config(&Tls::default());
        assert!(matches!(config.root_certs(), RootCerts::WebPki));
        assert!(config.client_cert().is_none());
    }
}
