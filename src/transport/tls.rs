//! TLS settings for one route: which roots a receiver's certificate must chain to, and
//! which client certificate posthorn presents. `ca_file` adds its certificates to the
//! built-in Mozilla roots (what "also trust my LAN CA" means); `ca_only = true` trusts
//! them alone.

use ureq::tls::{Certificate, ClientCert, PrivateKey, RootCerts, TlsConfig};

use crate::config::Tls;

pub fn tls_config(tls: &Tls) -> TlsConfig {
    let roots = match &tls.ca {
        None => RootCerts::WebPki,
        Some(ca) => {
            let builtin: &[_] = if ca.only {
                &[]
            } else {
                webpki_root_certs::TLS_SERVER_ROOT_CERTS
            };
            let certs = builtin
                .iter()
                .map(|der| Certificate::from_der(der.as_ref()))
                .chain(
                    ca.certs
                        .iter()
                        .map(|der| Certificate::from_der(der).to_owned()),
                );
            RootCerts::from(certs)
        }
    };
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
        .root_certs(roots)
        .client_cert(client)
        .build()
}

#[cfg(test)]
mod tests {
    use super::*;

    fn tls_with(keys: &str) -> Tls {
        let ca = concat!(env!("CARGO_MANIFEST_DIR"), "/tests/fixtures/tls/ca.pem");
        let text = format!(
            "[delivery]\nca_file = {ca:?}\n{keys}\n[[subscription]]\nname = \"s\"\n\
             url = \"https://crm.lan/\"\nconversations = [\"*\"]\nevents = [\"*\"]\n\
             secret = \"whsec_MfKQ9r8GKYqrTwjUPD8ILPZIo2LaLaSw\"\n"
        );
        crate::config::parse(&text, std::path::Path::new("/etc/posthorn/config.toml"))
            .unwrap()
            .delivery
            .transport
            .tls
    }

    fn roots(config: &TlsConfig) -> usize {
        match config.root_certs() {
            RootCerts::Specific(certs) => certs.len(),
            other => panic!("specific roots expected, got {other:?}"),
        }
    }

    #[test]
    fn ca_file_adds_to_the_builtin_roots_and_ca_only_replaces_them() {
        let added = roots(&tls_config(&tls_with("")));
        assert_eq!(added, webpki_root_certs::TLS_SERVER_ROOT_CERTS.len() + 1);
        assert!(added > 100);
        assert_eq!(roots(&tls_config(&tls_with("ca_only = true"))), 1);
    }

    #[test]
    fn without_ca_file_the_builtin_roots_are_used() {
        let config = tls_config(&Tls::default());
        assert!(matches!(config.root_certs(), RootCerts::WebPki));
        assert!(config.client_cert().is_none());
    }
}
