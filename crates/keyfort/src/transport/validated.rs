//! Chains that passed validation, remembered by their fingerprint so that a TPP calling
//! many times does not pay for the chain's signature checks on every request.
//!
//! Keyed by the certificates, never by the connection: behind a gateway one connection
//! carries many TPPs' certificates. An entry holds until the earliest `notAfter` of the
//! chain, the CRLs change, or [`MAX_AGE`] passes (a bound on anything else that depends
//! on time, such as a CRL's own expiry), whichever comes first. Only successes are kept:
//! a refused chain is checked again each time, so its refusal always says why.

use std::collections::HashMap;
use std::sync::Mutex;

use keyfort_core::clock::UnixTime;
use keyfort_core::transport::CertificateIdentity;
use rustls::pki_types::CertificateDer;

/// The longest an entry is trusted without a fresh check.
const MAX_AGE: i64 = 300;

struct Validated {
    identity: CertificateIdentity,
    /// The entry is good until then (exclusive).
    until: UnixTime,
    crl_generation: u64,
}

pub(super) struct ValidatedChains {
    entries: Mutex<HashMap<[u8; 32], Validated>>,
    capacity: usize,
}

/// The fingerprint of a presented chain: every certificate, in order.
pub(super) fn fingerprint(chain: &[CertificateDer<'_>]) -> [u8; 32] {
    let mut context = aws_lc_rs::digest::Context::new(&aws_lc_rs::digest::SHA256);
    for cert in chain {
        context.update(&(cert.len() as u64).to_be_bytes());
        context.update(cert);
    }
    let mut out = [0u8; 32];
    out.copy_from_slice(context.finish().as_ref());
    out
}

/// The earliest `notAfter` of `chain`, or `None` if a certificate cannot be read.
pub(super) fn earliest_expiry(chain: &[CertificateDer<'_>]) -> Option<UnixTime> {
    chain
        .iter()
        .map(|cert| x509_parser::parse_x509_certificate(cert).ok().map(|(_, c)| c.validity().not_after.timestamp()))
        .collect::<Option<Vec<_>>>()?
        .into_iter()
        .min()
}

impl ValidatedChains {
    pub(super) fn new(capacity: usize) -> Self {
        Self { entries: Mutex::new(HashMap::new()), capacity }
    }

    /// The identity of a chain validated before, if that still holds at `now`.
    pub(super) fn get(&self, key: &[u8; 32], now: UnixTime, crl_generation: u64) -> Option<CertificateIdentity> {
        let entries = self.entries.lock().unwrap_or_else(|p| p.into_inner());
        let entry = entries.get(key)?;
        (now < entry.until && entry.crl_generation == crl_generation).then(|| entry.identity.clone())
    }

    /// Remembers a chain validated at `now`, valid until `not_after`.
    pub(super) fn insert(
        &self,
        key: [u8; 32],
        identity: CertificateIdentity,
        now: UnixTime,
        not_after: UnixTime,
        crl_generation: u64,
    ) {
        let mut entries = self.entries.lock().unwrap_or_else(|p| p.into_inner());
        if entries.len() >= self.capacity {
            entries.retain(|_, e| now < e.until && e.crl_generation == crl_generation);
            if entries.len() >= self.capacity {
                // Full of live entries: start again rather than grow (they are only a cache).
                entries.clear();
            }
        }
        let until = not_after.min(now + MAX_AGE);
        entries.insert(key, Validated { identity, until, crl_generation });
    }

    #[cfg(test)]
    fn len(&self) -> usize {
        self.entries.lock().unwrap().len()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn identity(thumbprint: &str) -> CertificateIdentity {
        CertificateIdentity {
            subject: keyfort_core::subject_dn::SubjectDn::parse("CN=tpp").unwrap(),
            thumbprint_s256: thumbprint.into(),
            psd2_roles: None,
        }
    }

    #[test]
    fn an_entry_holds_until_expiry_a_crl_change_or_its_age() {
        let cache = ValidatedChains::new(10);
        cache.insert([1; 32], identity("a"), 1_000, 1_100, 7);
        assert_eq!(cache.get(&[1; 32], 1_050, 7).map(|i| i.thumbprint_s256), Some("a".into()));
        assert!(cache.get(&[1; 32], 1_100, 7).is_none(), "the certificate has expired");
        assert!(cache.get(&[1; 32], 1_050, 8).is_none(), "the CRLs changed");
        assert!(cache.get(&[2; 32], 1_050, 7).is_none(), "another chain");
        cache.insert([3; 32], identity("b"), 1_000, 9_999, 7);
        assert!(cache.get(&[3; 32], 1_000 + MAX_AGE - 1, 7).is_some());
        assert!(cache.get(&[3; 32], 1_000 + MAX_AGE, 7).is_none(), "checked again after MAX_AGE");
    }

    #[test]
    fn the_cache_never_grows_past_its_capacity() {
        let cache = ValidatedChains::new(3);
        for i in 0..10u8 {
            cache.insert([i; 32], identity("x"), 1_000, 2_000, 1);
            assert!(cache.len() <= 3);
        }
    }

    #[test]
    fn fingerprints_cover_every_certificate_in_order() {
        let a = CertificateDer::from(vec![1u8, 2, 3]);
        let b = CertificateDer::from(vec![4u8, 5]);
        assert_ne!(fingerprint(&[a.clone(), b.clone()]), fingerprint(&[b.clone(), a.clone()]));
        assert_ne!(fingerprint(std::slice::from_ref(&a)), fingerprint(&[a.clone(), b.clone()]));
        assert_eq!(fingerprint(&[a.clone(), b.clone()]), fingerprint(&[a, b]));
    }
}
