//! TLS for routes with a `ca_file`, made with rustls directly because it needs a verifier
//! ureq's settings cannot express: a receiver presenting a certificate that `ca_file`
//! names exactly (a self-signed certificate, which `openssl req -x509` marks as a CA) is
//! trusted for the names it holds. The standard check refuses such a certificate as
//! `CaUsedAsEndEntity` even when it is a trust root. Everything else is the standard
//! check against the built-in roots plus `ca_file` (or `ca_file` alone with `ca_only`).

use std::fmt;
use std::io::{Read as _, Write as _};
use std::sync::Arc;

use rustls::client::danger::{HandshakeSignatureValid, ServerCertVerified, ServerCertVerifier};
use rustls::client::WebPkiServerVerifier;
use rustls::pki_types::{CertificateDer, PrivateKeyDer, ServerName, UnixTime};
use rustls::{ClientConfig, ClientConnection, DigitallySignedStruct, RootCertStore, StreamOwned};
use ureq::unversioned::transport::{
    Buffers, ConnectionDetails, Connector, Either, LazyBuffers, NextTimeout, Transport,
    TransportAdapter,
};

use crate::config::Tls;

/// The rustls config for `tls`, or `None` when it has no `ca_file` (ureq's own TLS then
/// serves, with the built-in roots).
pub fn client_config(tls: &Tls) -> Option<Arc<ClientConfig>> {
    use rustls::pki_types::pem::PemObject as _;
    let ca = tls.ca.as_ref()?;
    let provider = Arc::new(rustls::crypto::ring::default_provider());
    let pinned: Vec<CertificateDer<'static>> = ca
        .certs
        .iter()
        .map(|der| CertificateDer::from(der.clone()))
        .collect();
    let roots = roots(&pinned, ca.only);
    let inner = WebPkiServerVerifier::builder_with_provider(Arc::new(roots), provider.clone())
        .build()
        .ok()?;
    let builder = ClientConfig::builder_with_provider(provider)
        .with_protocol_versions(rustls::ALL_VERSIONS)
        .ok()?
        .dangerous()
        .with_custom_certificate_verifier(Arc::new(CaFileVerifier { inner, pinned }));
    // The pair was parsed and matched at load; a failure here cannot happen, and would
    // leave the connection without a certificate rather than panic.
    let config = match &tls.client {
        Some(identity) => {
            let chain = identity
                .chain
                .iter()
                .map(|der| CertificateDer::from(der.clone()))
                .collect();
            let key = PrivateKeyDer::from_pem_slice(identity.key_pem()).ok()?;
            builder.with_client_auth_cert(chain, key).ok()?
        }
        None => builder.with_no_client_auth(),
    };
    Some(Arc::new(config))
}

/// `ca_file`'s certificates, after the built-in Mozilla roots unless `only`.
fn roots(ca: &[CertificateDer<'static>], only: bool) -> RootCertStore {
    let mut roots = RootCertStore::empty();
    if !only {
        roots.add_parsable_certificates(webpki_root_certs::TLS_SERVER_ROOT_CERTS.iter().cloned());
    }
    roots.add_parsable_certificates(ca.iter().cloned());
    roots
}

#[derive(Debug)]
struct CaFileVerifier {
    inner: Arc<WebPkiServerVerifier>,
    pinned: Vec<CertificateDer<'static>>,
}

impl ServerCertVerifier for CaFileVerifier {
    fn verify_server_cert(
        &self,
        end_entity: &CertificateDer<'_>,
        intermediates: &[CertificateDer<'_>],
        server_name: &ServerName<'_>,
        ocsp_response: &[u8],
        now: UnixTime,
    ) -> Result<ServerCertVerified, rustls::Error> {
        let err = match self.inner.verify_server_cert(
            end_entity,
            intermediates,
            server_name,
            ocsp_response,
            now,
        ) {
            Ok(verified) => return Ok(verified),
            Err(err) => err,
        };
        // webpki's reason arrives as an opaque error; its name is in the Debug text.
        let ca_as_leaf = format!("{err:?}").contains("CaUsedAsEndEntity");
        if ca_as_leaf
            && self
                .pinned
                .iter()
                .any(|p| p.as_ref() == end_entity.as_ref())
        {
            let parsed = rustls::server::ParsedCertificate::try_from(end_entity)?;
            rustls::client::verify_server_name(&parsed, server_name)?;
            return Ok(ServerCertVerified::assertion());
        }
        Err(err)
    }

    fn verify_tls12_signature(
        &self,
        message: &[u8],
        cert: &CertificateDer<'_>,
        dss: &DigitallySignedStruct,
    ) -> Result<HandshakeSignatureValid, rustls::Error> {
        self.inner.verify_tls12_signature(message, cert, dss)
    }

    fn verify_tls13_signature(
        &self,
        message: &[u8],
        cert: &CertificateDer<'_>,
        dss: &DigitallySignedStruct,
    ) -> Result<HandshakeSignatureValid, rustls::Error> {
        self.inner.verify_tls13_signature(message, cert, dss)
    }

    fn supported_verify_schemes(&self) -> Vec<rustls::SignatureScheme> {
        self.inner.supported_verify_schemes()
    }
}

/// Wraps an https connection in TLS with a [`client_config`].
pub struct CaFileTls(pub Arc<ClientConfig>);

impl fmt::Debug for CaFileTls {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str("CaFileTls")
    }
}

impl<In: Transport> Connector<In> for CaFileTls {
    type Out = Either<In, CaFileTransport>;

    fn connect(
        &self,
        details: &ConnectionDetails,
        chained: Option<In>,
    ) -> Result<Option<Self::Out>, ureq::Error> {
        let Some(transport) = chained else {
            return Ok(None);
        };
        if !details.needs_tls() || transport.is_tls() {
            return Ok(Some(Either::A(transport)));
        }
        let host = details
            .uri
            .host()
            .unwrap_or_default()
            .trim_start_matches('[')
            .trim_end_matches(']');
        let name = ServerName::try_from(host.to_string())
            .map_err(|_| ureq::Error::Tls("the receiver's host is not a valid TLS name"))?;
        let mut connection = ClientConnection::new(Arc::clone(&self.0), name)?;
        let mut socket = TransportAdapter::new(transport.boxed(), details.current_time.clone());
        socket.set_timeout(details.timeout);
        connection.complete_io(&mut socket)?;
        Ok(Some(Either::B(CaFileTransport {
            buffers: LazyBuffers::new(
                details.config.input_buffer_size(),
                details.config.output_buffer_size(),
            ),
            stream: StreamOwned::new(connection, socket),
        })))
    }
}

/// A TLS connection made by [`CaFileTls`].
pub struct CaFileTransport {
    buffers: LazyBuffers,
    stream: StreamOwned<ClientConnection, TransportAdapter>,
}

impl fmt::Debug for CaFileTransport {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str("CaFileTransport")
    }
}

impl Transport for CaFileTransport {
    fn buffers(&mut self) -> &mut dyn Buffers {
        &mut self.buffers
    }

    fn transmit_output(&mut self, amount: usize, timeout: NextTimeout) -> Result<(), ureq::Error> {
        self.stream.get_mut().set_timeout(timeout);
        let output = &self.buffers.output()[..amount];
        self.stream.write_all(output)?;
        Ok(())
    }

    fn await_input(&mut self, timeout: NextTimeout) -> Result<bool, ureq::Error> {
        self.stream.get_mut().set_timeout(timeout);
        let input = self.buffers.input_append_buf();
        let read = self.stream.read(input)?;
        self.buffers.input_appended(read);
        Ok(read > 0)
    }

    fn is_open(&mut self) -> bool {
        self.stream.get_mut().get_mut().is_open()
    }

    fn is_tls(&self) -> bool {
        true
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn ca_file_adds_to_the_builtin_roots_and_ca_only_replaces_them() {
        use rustls::pki_types::pem::PemObject as _;
        let pem = include_bytes!("../../tests/fixtures/tls/ca.pem");
        let ca = [CertificateDer::from_pem_slice(pem).unwrap()];
        let builtin = webpki_root_certs::TLS_SERVER_ROOT_CERTS.len();
        assert!(builtin > 100);
        assert_eq!(roots(&ca, false).len(), builtin + 1);
        assert_eq!(roots(&ca, true).len(), 1);
    }
}
