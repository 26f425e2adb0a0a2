//! Transport trust: who is on the other end of the mutual-TLS connection.
//!
//! Certificates are checked here, by the server, not assumed: the chain must reach a
//! configured anchor, the certificate must be valid at the time of the request, fit for
//! client authentication (extended and plain key usage), and not revoked according to the
//! configured CRLs. The same checks apply whether the certificate came in the TLS handshake
//! or, behind a TLS-terminating gateway, in a header from a trusted proxy.

mod certificate;
mod gateway;
mod revocation;
mod validated;
mod verifier;

use std::net::SocketAddr;
use std::path::Path;
use std::sync::Arc;

use keyfort_core::clock::UnixTime;
use keyfort_core::transport::{CertificateIdentity, CertificateProfile};
use rustls::pki_types::{CertificateDer, TrustAnchor};

use revocation::RevocationCheck;
pub use revocation::{crl_der, read_crl_file, CrlStore};
pub use verifier::client_cert_verifier;

use crate::config::Config;

/// What a DER certificate says (subject, PSD2 roles, thumbprint), checked for client
/// authentication usage but trusted for nothing: for the fuzz target of identity
/// extraction, which drives the same code as [`TransportTrust::validate`].
pub fn certificate_identity(der: &[u8]) -> Result<CertificateIdentity, CertificateRejected> {
    certificate::identity(der)
}

/// Why a presented certificate was refused; phrased for the TPP developer.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("{0}")]
pub struct CertificateRejected(pub String);

/// The trust anchors and intermediates for transport certificates, and their CRLs.
pub struct TransportTrust {
    anchors: Vec<TrustAnchor<'static>>,
    intermediates: Vec<CertificateDer<'static>>,
    /// Subjects of the anchors, sent in the TLS CertificateRequest so a client with several
    /// certificates picks the right one.
    anchor_subjects: Vec<rustls::DistinguishedName>,
    crls: Arc<CrlStore>,
    gateway: Option<gateway::Gateway>,
    validated: validated::ValidatedChains,
    /// The earliest `notAfter` of the configured intermediates: no cached validation
    /// outlives the CAs it went through.
    bundle_expiry: UnixTime,
    /// Which CAs may issue which certificate profile (`[mtls.profile_ca_files]`); `None`:
    /// every trusted CA may issue every profile.
    profile_issuers: Option<Vec<(CertificateProfile, Vec<CaKey>)>>,
}

/// A CA as a verified path names it: its subject (without the outer SEQUENCE) and its
/// SubjectPublicKeyInfo. A name alone would not do: anybody can make a CA with any name.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct CaKey {
    subject: Vec<u8>,
    spki: Vec<u8>,
}

impl CaKey {
    fn of_anchor(anchor: &TrustAnchor<'_>) -> Self {
        Self { subject: anchor.subject.to_vec(), spki: webpki::spki_for_anchor(anchor).as_ref().to_vec() }
    }

    fn of_certificate(cert: &webpki::Cert<'_>) -> Self {
        Self { subject: cert.subject().to_vec(), spki: cert.subject_public_key_info().as_ref().to_vec() }
    }
}

/// Reads a `[mtls.profile_ca_files]` bundle: the CAs (roots or issuing CAs) trusted to issue
/// one certificate profile. At least one certificate; errors name the file. The start-up and
/// `check-config` both read it here.
pub fn read_profile_bundle(path: &Path) -> Result<Vec<CaKey>, String> {
    let certs = crate::tls::read_certs(path)
        .map_err(|e| format!("{e}; it must be the PEM bundle of the CAs trusted to issue this certificate profile"))?;
    certs
        .iter()
        .enumerate()
        .map(|(i, cert)| {
            webpki::anchor_from_trusted_cert(cert)
                .map(|anchor| CaKey::of_anchor(&anchor))
                .map_err(|e| format!("{}: certificate {} cannot be parsed ({e:?})", path.display(), i + 1))
        })
        .collect()
}

/// How many validated chains are remembered (a few hundred bytes each).
const VALIDATED_CHAINS: usize = 10_000;

/// The trust anchors and intermediates of a `client_ca_file` bundle.
pub struct CaBundle {
    pub anchors: Vec<TrustAnchor<'static>>,
    pub intermediates: Vec<CertificateDer<'static>>,
    /// Subjects of the anchors, as sent in a TLS CertificateRequest.
    pub anchor_subjects: Vec<rustls::DistinguishedName>,
}

/// Reads a PEM bundle of the roots and intermediates that transport certificates must
/// chain to. Each self-signed certificate is a trust anchor, the others intermediates; a
/// bundle without a root could never validate anything, so it is refused. Errors name the
/// file. The start-up and `check-config` both read the bundle here.
pub fn read_ca_bundle(path: &Path) -> Result<CaBundle, String> {
    let certs = crate::tls::read_certs(path)
        .map_err(|e| format!("{e}; it must be the PEM bundle of the transport certificates' root and issuing CAs"))?;
    let mut bundle = CaBundle { anchors: Vec::new(), intermediates: Vec::new(), anchor_subjects: Vec::new() };
    for (i, cert) in certs.into_iter().enumerate() {
        let (_, parsed) = x509_parser::parse_x509_certificate(&cert)
            .map_err(|e| format!("{}: certificate {} cannot be parsed ({e})", path.display(), i + 1))?;
        if parsed.subject().as_raw() == parsed.issuer().as_raw() {
            bundle.anchor_subjects.push(rustls::DistinguishedName::from(parsed.subject().as_raw().to_vec()));
            let anchor = webpki::anchor_from_trusted_cert(&cert)
                .map_err(|e| format!("{}: certificate {} cannot be a trust anchor ({e:?})", path.display(), i + 1))?
                .to_owned();
            bundle.anchors.push(anchor);
        } else {
            bundle.intermediates.push(cert);
        }
    }
    if bundle.anchors.is_empty() {
        return Err(format!(
            "{} holds no self-signed root; include the root CA of the transport certificates",
            path.display()
        ));
    }
    Ok(bundle)
}

impl TransportTrust {
    /// Builds the trust configuration, or `None` when no client CA is configured.
    pub fn from_config(config: &Config, crls: Arc<CrlStore>) -> anyhow::Result<Option<Self>> {
        let Some(path) = &config.server.client_ca_file else { return Ok(None) };
        let CaBundle { anchors, intermediates, anchor_subjects } =
            read_ca_bundle(path).map_err(|e| anyhow::anyhow!("[server.tls] client_ca_file: {e}"))?;
        let bundle_expiry = validated::earliest_expiry(&intermediates).unwrap_or(UnixTime::MAX);
        let profile_issuers = match &config.mtls.profile_ca_files {
            None => {
                tracing::warn!(
                    "no [mtls.profile_ca_files]: every CA of client_ca_file is trusted to issue every certificate \
                     profile, so a QTSP's certificate saying O=OpenBanking would be taken for a legacy Open Banking one"
                );
                None
            }
            Some(files) => Some(
                files
                    .iter()
                    .map(|(profile, path)| {
                        read_profile_bundle(path)
                            .map(|keys| (*profile, keys))
                            .map_err(|e| anyhow::anyhow!("[mtls.profile_ca_files] {}: {e}", profile.config_key()))
                    })
                    .collect::<anyhow::Result<Vec<_>>>()?,
            ),
        };
        Ok(Some(Self {
            anchors,
            intermediates,
            anchor_subjects,
            crls,
            gateway: gateway::Gateway::from_config(&config.mtls),
            validated: validated::ValidatedChains::new(VALIDATED_CHAINS),
            bundle_expiry,
            profile_issuers,
        }))
    }

    pub fn anchor_subjects(&self) -> &[rustls::DistinguishedName] {
        &self.anchor_subjects
    }

    /// The request header a trusted gateway forwards client certificates in, if configured.
    pub fn gateway_header(&self) -> Option<&str> {
        self.gateway.as_ref().map(gateway::Gateway::header)
    }

    /// Checks a presented chain (end-entity first) at time `now`; a chain that passed
    /// before is taken from the cache while that result still holds (see [`validated`]).
    pub fn validate(
        &self,
        chain: &[CertificateDer<'_>],
        now: UnixTime,
    ) -> Result<CertificateIdentity, CertificateRejected> {
        let key = validated::fingerprint(chain);
        let generation = self.crls.current().generation;
        if let Some(identity) = self.validated.get(&key, now, generation) {
            return Ok(identity);
        }
        let identity = self.validate_afresh(chain, now)?;
        if let Some(expiry) = validated::earliest_expiry(chain) {
            self.validated.insert(key, identity.clone(), now, expiry.min(self.bundle_expiry), generation);
        }
        Ok(identity)
    }

    fn validate_afresh(
        &self,
        chain: &[CertificateDer<'_>],
        now: UnixTime,
    ) -> Result<CertificateIdentity, CertificateRejected> {
        let Some(end_entity) = chain.first() else {
            return Err(CertificateRejected("no client certificate was presented".into()));
        };
        let ee = webpki::EndEntityCert::try_from(end_entity)
            .map_err(|e| CertificateRejected(format!("the client certificate cannot be parsed ({e:?})")))?;
        let mut intermediates: Vec<CertificateDer<'_>> = chain[1..].to_vec();
        intermediates.extend(self.intermediates.iter().cloned());
        let time = rustls::pki_types::UnixTime::since_unix_epoch(std::time::Duration::from_secs(now.max(0) as u64));
        let crls = self.crls.current();
        let crl_refs: Vec<&webpki::CertRevocationList<'_>> = crls.lists.iter().collect();
        let (revocation, unavailable) = match self.crls.check(&crl_refs) {
            RevocationCheck::Off => (None, false),
            RevocationCheck::Check(options) => (Some(options), false),
            RevocationCheck::Unavailable => (None, true),
        };
        let path = ee
            .verify_for_usage(
                rustls::crypto::aws_lc_rs::default_provider().signature_verification_algorithms.all,
                &self.anchors,
                &intermediates,
                time,
                // "If present" because webpki applies this to the CA certificates of the chain
                // too; the end-entity certificate must have it, checked in `certificate::identity`.
                webpki::KeyUsage::client_auth(),
                revocation,
                None,
            )
            .map_err(|e| CertificateRejected(describe_webpki_error(&e, crls.unavailable.as_deref())))?;
        let issuers: Vec<CaKey> = std::iter::once(CaKey::of_anchor(path.anchor()))
            .chain(path.intermediate_certificates().map(CaKey::of_certificate))
            .collect();
        if unavailable {
            // The chain is fine, but no CRL could be loaded and the policy is to fail closed.
            return Err(CertificateRejected(describe_webpki_error(
                &webpki::Error::UnknownRevocationStatus,
                crls.unavailable.as_deref(),
            )));
        }
        let identity = certificate::identity(end_entity)?;
        self.check_profile_issuers(&identity, &issuers)?;
        Ok(identity)
    }

    /// Refuses a certificate whose profile (legacy OB, OBWAC, eIDAS) its CAs are not trusted
    /// to issue: some CA of its verified path (`issuers`) must be in that profile's bundle.
    fn check_profile_issuers(
        &self,
        identity: &CertificateIdentity,
        issuers: &[CaKey],
    ) -> Result<(), CertificateRejected> {
        let Some(trusted) = &self.profile_issuers else { return Ok(()) };
        for profile in identity.claimed_profiles() {
            let allowed = trusted.iter().filter(|(p, _)| *p == profile).flat_map(|(_, keys)| keys);
            let mut allowed = allowed.peekable();
            let listed = allowed.peek().is_some();
            if !allowed.any(|key| issuers.contains(key)) {
                let why = if listed {
                    format!(
                        "none of the CAs it chains to is trusted for that profile ([mtls.profile_ca_files] {})",
                        profile.config_key()
                    )
                } else {
                    "this bank trusts no CA for that profile".to_owned()
                };
                return Err(CertificateRejected(format!(
                    "the client certificate has the {} profile, but {why}; present a certificate of that profile from a CA \
                     trusted for it",
                    profile.describe()
                )));
            }
        }
        Ok(())
    }

    /// The client certificate of a request: forwarded by a trusted gateway (`forwarded` is
    /// the value of [`Self::gateway_header`], if the request has one), or presented in this
    /// connection's TLS handshake. `Ok(None)` when there is none.
    pub fn identify(
        &self,
        peer: SocketAddr,
        tls_chain: Option<&[CertificateDer<'static>]>,
        forwarded: Option<&[u8]>,
        now: UnixTime,
    ) -> Result<Option<CertificateIdentity>, CertificateRejected> {
        if let Some(gateway) = &self.gateway {
            match gateway.forwarded_chain(peer, forwarded)? {
                gateway::Forwarded::Chain(chain) => return self.validate(&chain, now).map(Some),
                gateway::Forwarded::None => {}
            }
        }
        match tls_chain {
            Some(chain) if !chain.is_empty() => self.validate(chain, now).map(Some),
            _ => Ok(None),
        }
    }
}

fn describe_webpki_error(e: &webpki::Error, crl_problem: Option<&str>) -> String {
    use webpki::Error as E;
    let what = match e {
        E::CertExpired { .. } => "the client certificate has expired".to_owned(),
        E::CertNotValidYet { .. } => "the client certificate is not valid yet".to_owned(),
        E::UnknownIssuer => "the client certificate is not issued by a CA this bank trusts".to_owned(),
        E::CertRevoked => "the client certificate has been revoked".to_owned(),
        E::RequiredEkuNotFoundContext(_) => {
            "the client certificate is not for TLS client authentication (extended key usage lacks clientAuth)"
                .to_owned()
        }
        E::UnknownRevocationStatus => format!(
            "the client certificate's revocation status cannot be established{}",
            crl_problem.map(|p| format!(" ({p})")).unwrap_or_default()
        ),
        E::CrlExpired { .. } => format!(
            "the revocation list for the client certificate has expired{}",
            crl_problem.map(|p| format!(" ({p})")).unwrap_or_default()
        ),
        E::CaUsedAsEndEntity => "a CA certificate cannot be used as a client certificate".to_owned(),
        E::InvalidSignatureForPublicKey => "the client certificate's signature does not verify".to_owned(),
        other => format!("the client certificate chain is not acceptable ({other:?})"),
    };
    format!(
        "{what}; present a valid transport certificate issued by the Open Banking directory or a QTSP this bank trusts"
    )
}
