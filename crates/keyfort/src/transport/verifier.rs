//! The TLS layer's part of client authentication: ask for a certificate, check that the
//! client holds its private key (the handshake signature), and hand the chain to the
//! application. Chain, dates, usage, revocation and binding are checked per request by
//! [`super::TransportTrust::validate`], so that with `client_auth = "optional"` a bad
//! certificate gets a JSON 401 that explains it instead of a bare handshake failure.

use std::sync::Arc;

use rustls::client::danger::HandshakeSignatureValid;
use rustls::crypto::{verify_tls12_signature, verify_tls13_signature, WebPkiSupportedAlgorithms};
use rustls::pki_types::{CertificateDer, UnixTime};
use rustls::server::danger::{ClientCertVerified, ClientCertVerifier};
use rustls::{DigitallySignedStruct, DistinguishedName, SignatureScheme};

#[derive(Debug)]
struct DeferredClientCertVerifier {
    hints: Vec<DistinguishedName>,
    mandatory: bool,
    algorithms: WebPkiSupportedAlgorithms,
}

/// A verifier that requests a client certificate (`mandatory` for `client_auth =
/// "required"`), proves possession, and defers trust decisions to the application.
pub fn client_cert_verifier(hints: Vec<DistinguishedName>, mandatory: bool) -> Arc<dyn ClientCertVerifier> {
    Arc::new(DeferredClientCertVerifier {
        hints,
        mandatory,
        algorithms: rustls::crypto::aws_lc_rs::default_provider().signature_verification_algorithms,
    })
}

impl ClientCertVerifier for DeferredClientCertVerifier {
    fn root_hint_subjects(&self) -> &[DistinguishedName] {
        &self.hints
    }

    fn verify_client_cert(
        &self,
        _end_entity: &CertificateDer<'_>,
        _intermediates: &[CertificateDer<'_>],
        _now: UnixTime,
    ) -> Result<ClientCertVerified, rustls::Error> {
        Ok(ClientCertVerified::assertion())
    }

    fn client_auth_mandatory(&self) -> bool {
        self.mandatory
    }

    fn verify_tls12_signature(
        &self,
        message: &[u8],
        cert: &CertificateDer<'_>,
        dss: &DigitallySignedStruct,
    ) -> Result<HandshakeSignatureValid, rustls::Error> {
        verify_tls12_signature(message, cert, dss, &self.algorithms)
    }

    fn verify_tls13_signature(
        &self,
        message: &[u8],
        cert: &CertificateDer<'_>,
        dss: &DigitallySignedStruct,
    ) -> Result<HandshakeSignatureValid, rustls::Error> {
        verify_tls13_signature(message, cert, dss, &self.algorithms)
    }

    fn supported_verify_schemes(&self) -> Vec<SignatureScheme> {
        self.algorithms.supported_schemes()
    }
}
