//! Certificate revocation lists: loaded from files and URLs, refreshed periodically, the
//! last good copy kept when a source fails. What happens when a certificate's revocation
//! status cannot be established is the operator's choice (`[mtls] revocation_unavailable`):
//! fail closed (refuse) by default.

use std::collections::HashMap;
use std::sync::{Arc, Mutex, RwLock};

use webpki::{CertRevocationList, ExpirationPolicy, RevocationCheckDepth, RevocationOptions, UnknownStatusPolicy};

use crate::config::{KeySource, RevocationUnavailable};
use crate::directory::HttpFetcher;
use crate::metrics::Metrics;

/// The CRLs in force, and what went wrong loading the others.
pub struct CrlSnapshot {
    pub lists: Vec<CertRevocationList<'static>>,
    pub unavailable: Option<String>,
    /// Counts the loads: a validation made under another generation may be out of date.
    pub generation: u64,
}

pub struct CrlStore {
    metrics: Arc<Metrics>,
    sources: Vec<KeySource>,
    policy: RevocationUnavailable,
    last_good: Mutex<HashMap<KeySource, Vec<u8>>>,
    current: RwLock<Arc<CrlSnapshot>>,
}

/// How a validation should treat revocation.
pub enum RevocationCheck<'a> {
    /// No CRLs configured: revocation is not checked.
    Off,
    Check(RevocationOptions<'a>),
    /// CRLs are configured but none could be loaded, and the policy is to fail closed.
    Unavailable,
}

impl CrlStore {
    pub fn new(sources: Vec<KeySource>, policy: RevocationUnavailable, metrics: Arc<Metrics>) -> Self {
        Self {
            metrics,
            sources,
            policy,
            last_good: Mutex::default(),
            current: RwLock::new(Arc::new(CrlSnapshot { lists: vec![], unavailable: None, generation: 0 })),
        }
    }

    pub fn is_configured(&self) -> bool {
        !self.sources.is_empty()
    }

    pub fn current(&self) -> Arc<CrlSnapshot> {
        self.current.read().unwrap_or_else(|p| p.into_inner()).clone()
    }

    pub fn check<'a>(&self, lists: &'a [&'a CertRevocationList<'a>]) -> RevocationCheck<'a> {
        if !self.is_configured() {
            return RevocationCheck::Off;
        }
        let (status, expiration) = match self.policy {
            RevocationUnavailable::FailClosed => (UnknownStatusPolicy::Deny, ExpirationPolicy::Enforce),
            RevocationUnavailable::FailOpen => (UnknownStatusPolicy::Allow, ExpirationPolicy::Ignore),
        };
        match webpki::RevocationOptionsBuilder::new(lists) {
            Ok(builder) => RevocationCheck::Check(
                builder
                    .with_depth(RevocationCheckDepth::EndEntity)
                    .with_status_policy(status)
                    .with_expiration_policy(expiration)
                    .build(),
            ),
            Err(_) if self.policy == RevocationUnavailable::FailClosed => RevocationCheck::Unavailable,
            Err(_) => RevocationCheck::Off,
        }
    }

    /// Loads every source again. A source that fails keeps its last good CRL, and the
    /// failure is recorded so refusals can say why.
    pub async fn refresh(&self, fetcher: &HttpFetcher) {
        let mut problems = Vec::new();
        let mut fresh: Vec<(KeySource, Vec<u8>)> = Vec::new();
        for source in &self.sources {
            let loaded = match source {
                KeySource::Url(url) => fetcher.get(url).await.map(|b| b.to_vec()).map_err(|e| e.to_string()),
                KeySource::File(path) => {
                    tokio::fs::read(path).await.map_err(|e| format!("reading {}: {e}", path.display()))
                }
            };
            let loaded = loaded.and_then(|bytes| crl_der(&bytes).map_err(|e| format!("the CRL at {source} {e}")));
            let result = if loaded.is_ok() { "success" } else { "failure" };
            self.metrics.inc("keyfort_crl_fetches_total", &[("result", result)]);
            match loaded {
                Ok(der) => fresh.push((source.clone(), der)),
                Err(why) => {
                    tracing::warn!(source = %source, error = %why, "CRL could not be loaded; keeping the last good copy if any");
                    problems.push(why);
                }
            }
        }
        let lists = {
            let mut last_good = self.last_good.lock().unwrap_or_else(|p| p.into_inner());
            for (source, der) in fresh {
                last_good.insert(source, der);
            }
            last_good
                .values()
                .filter_map(|der| webpki::OwnedCertRevocationList::from_der(der).ok().map(CertRevocationList::from))
                .collect()
        };
        let mut current = self.current.write().unwrap_or_else(|p| p.into_inner());
        let generation = current.generation + 1;
        let unavailable = (!problems.is_empty()).then(|| problems.join("; "));
        *current = Arc::new(CrlSnapshot { lists, unavailable, generation });
    }
}

/// Reads a CRL file (DER or PEM), checking it parses; errors name the file. `check-config`
/// reads `crl_files` here; the running server reads them with the same parsing.
pub fn read_crl_file(path: &std::path::Path) -> Result<Vec<u8>, String> {
    let bytes = std::fs::read(path).map_err(|e| format!("{}: cannot read it ({e})", path.display()))?;
    crl_der(&bytes).map_err(|e| format!("{} {e}", path.display()))
}

/// Accepts a CRL as DER or PEM (`-----BEGIN X509 CRL-----`), checking it parses.
pub fn crl_der(bytes: &[u8]) -> Result<Vec<u8>, String> {
    let der = if bytes.starts_with(b"-----") {
        crate::pem::crl_from_pem(bytes).map_err(|e| e.to_string())?.to_vec()
    } else {
        bytes.to_vec()
    };
    webpki::OwnedCertRevocationList::from_der(&der).map_err(|e| format!("is not a valid CRL ({e:?})"))?;
    Ok(der)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn crl() -> (rcgen::CertificateRevocationList, String) {
        let key = rcgen::KeyPair::generate().unwrap();
        let mut params = rcgen::CertificateParams::new(Vec::<String>::new()).unwrap();
        params.is_ca = rcgen::IsCa::Ca(rcgen::BasicConstraints::Unconstrained);
        params.key_usages = vec![rcgen::KeyUsagePurpose::KeyCertSign, rcgen::KeyUsagePurpose::CrlSign];
        let ca = params.self_signed(&key).unwrap();
        let now = time::OffsetDateTime::now_utc();
        let crl = rcgen::CertificateRevocationListParams {
            this_update: now,
            next_update: now + std::time::Duration::from_secs(3600),
            crl_number: rcgen::SerialNumber::from(vec![1]),
            issuing_distribution_point: None,
            revoked_certs: vec![],
            key_identifier_method: rcgen::KeyIdMethod::Sha256,
        }
        .signed_by(&ca, &key)
        .unwrap();
        (crl, ca.pem())
    }

    #[test]
    fn crls_are_read_as_der_or_pem() {
        let (crl, ca_pem) = crl();
        assert_eq!(crl_der(crl.der()).unwrap(), crl.der().to_vec());
        assert_eq!(crl_der(crl.pem().unwrap().as_bytes()).unwrap(), crl.der().to_vec());
        assert_eq!(crl_der(ca_pem.as_bytes()).unwrap_err(), "holds no PEM X509 CRL block");
        assert!(crl_der(b"-----BEGIN X509 CRL-----\nAAAA\n").unwrap_err().contains("not valid PEM"));
        assert!(crl_der(b"not a CRL").unwrap_err().contains("is not a valid CRL"));
    }
}
