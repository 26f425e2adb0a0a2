//! The entry points of the fuzz targets (`fuzz/`, cargo-fuzz): each takes arbitrary bytes
//! and drives one parser or check the way the server does, with fixed keys, rules and time.
//! They live here, in the library, so that an ordinary test replays every committed corpus
//! file through them (`tests/api/fuzz_corpus.rs`): CI checks the corpus without fuzzing.
//!
//! A target must never panic, whatever the input: a panic is a crash the fuzzer reports.
//! Where an input passes, the targets check a property too (a parsed DN equals itself, the
//! comparison of two is symmetric), so that a wrong answer is a crash as well.

use std::path::Path;
use std::sync::OnceLock;

use keyfort_core::claims::Claims;
use keyfort_core::consent::{ConsentRequest, ConsentType};
use keyfort_core::jose::{CompactJws, JwkSet, SigningAlg};
use keyfort_core::registration::{AuthMethod, RegistrationPolicy, RegistrationRequest, RequestForm};
use keyfort_core::software_statement::{SoftwareStatement, SsaRules};
use keyfort_core::subject_dn::{check_obie_pattern, SubjectDn};
use keyfort_core::transport::{BindingLevel, BindingRules, BindingSubject, CertificateIdentity};

/// The time every target judges at: 2023-11-14.
const NOW: i64 = 1_700_000_000;

/// The public keys JWS inputs are verified against: an RSA (PS256) and an EC (ES256) key,
/// whose signed examples are in the corpus.
const KEYS: &str = include_str!("fuzzing/keys.jwks");

fn keys() -> &'static JwkSet {
    static KEYS_PARSED: OnceLock<JwkSet> = OnceLock::new();
    KEYS_PARSED.get_or_init(|| JwkSet::from_json(KEYS.as_bytes()).expect("the fuzzing keys are a JWKS"))
}

fn policy() -> RegistrationPolicy {
    RegistrationPolicy {
        fapi: true,
        mandate_ssa: true,
        audiences: vec!["https://bank.example".into()],
        allowed_algs: vec![SigningAlg::PS256, SigningAlg::ES256],
        auth_methods: vec![AuthMethod::PrivateKeyJwt, AuthMethod::TlsClientAuth],
        role_scopes: crate::config::default_role_scopes(),
        clock_skew: 60,
    }
}

fn ssa_rules() -> SsaRules {
    SsaRules { issuers: vec!["OpenBanking Ltd".into()], software_environment: None, clock_skew: 60 }
}

/// A target's entry point.
pub type Target = fn(&[u8]);

/// Every target, by the name of its directory under `fuzz/corpus/`.
pub const TARGETS: &[(&str, Target)] = &[
    ("jws", jws),
    ("jwks", jwks),
    ("registration_request", registration_request),
    ("software_statement", software_statement),
    ("subject_dn", subject_dn),
    ("certificate_identity", certificate_identity),
    ("token_form", token_form),
    ("consent_request", consent_request),
    ("config", config),
];

/// Compact JWS parsing and verification, with and without a required kid.
pub fn jws(data: &[u8]) {
    let Ok(text) = std::str::from_utf8(data) else { return };
    let Ok(jws) = CompactJws::parse(text) else { return };
    let algs = [SigningAlg::PS256, SigningAlg::ES256];
    let _ = jws.check_alg(&algs);
    let _ = jws.unverified_claims();
    for require_kid in [true, false] {
        let _ = jws.verify(keys(), &algs, require_kid);
    }
    // A kid that passed parsing is within its bound.
    if let Some(kid) = &jws.header().kid {
        assert!(!kid.is_empty() && kid.chars().count() <= keyfort_core::jose::MAX_KID_CHARS);
    }
}

/// JWK set parsing.
pub fn jwks(data: &[u8]) {
    if let Ok(set) = JwkSet::from_json(data) {
        for key in set.keys() {
            if let Some(kid) = key.kid() {
                assert!(set.has_kid(kid));
            }
        }
    }
}

/// The registration request in both forms: the first byte chooses JSON (even) or a signed
/// JWT (odd), the rest is the body. Judged by the policy alone and with the SSA its own
/// claims would make.
pub fn registration_request(data: &[u8]) {
    let Some((form, body)) = data.split_first() else { return };
    let (form, claims) = if form & 1 == 0 {
        (RequestForm::Json, Claims::from_json_object(body).ok())
    } else {
        let claims = std::str::from_utf8(body)
            .ok()
            .and_then(|text| CompactJws::parse(text).ok())
            .and_then(|jws| jws.unverified_claims().ok());
        (RequestForm::SignedJwt, claims)
    };
    let Some(claims) = claims else { return };
    let Ok(request) = RegistrationRequest::from_claims(&claims) else { return };
    let _ = policy().evaluate(&request, None, form, NOW);
    if let Ok(ssa) = SoftwareStatement::from_verified_claims(&claims, &ssa_rules(), NOW) {
        if let Ok(approved) = policy().evaluate(&request, Some(&ssa), form, NOW) {
            // What is approved fits what was checked.
            assert!(approved
                .metadata
                .redirect_uris
                .iter()
                .all(|uri| ssa.software_redirect_uris.iter().any(|s| s == uri.as_str())));
        }
    }
}

/// The software statement's claims.
pub fn software_statement(data: &[u8]) {
    let Ok(claims) = Claims::from_json_object(data) else { return };
    let _ = SoftwareStatement::from_verified_claims(&claims, &ssa_rules(), NOW);
}

/// Subject DN parsing and comparison: two DNs separated by a line feed. A DN equals itself,
/// equality is symmetric, and a DN bound to a certificate identity is checked against a
/// software statement without panicking.
pub fn subject_dn(data: &[u8]) {
    let text = String::from_utf8_lossy(data);
    let (first, second) = text.split_once('\n').unwrap_or((&text, ""));
    let _ = check_obie_pattern(first);
    let (Ok(a), b) = (SubjectDn::parse(first), SubjectDn::parse(second)) else { return };
    assert_eq!(a, a.clone());
    if let Ok(b) = b {
        let (forward, backward) = (a.eq(&b), b.eq(&a));
        assert_eq!(forward, backward, "equality of subject DNs is symmetric");
    }
    for oid in ["2.5.4.3", "2.5.4.10", "2.5.4.11", "2.5.4.97"] {
        let _ = a.single(oid);
    }
    let identity = CertificateIdentity { subject: a, thumbprint_s256: String::new(), psd2_roles: None };
    let _ = identity.claimed_profiles();
    let roles = vec!["AISP".to_owned()];
    let subject = BindingSubject {
        org_id: "0015800001HQQrZAAX",
        software_id: "oQ4KoaavpOuoE7rvQsZEOV",
        competent_authority_registration_id: Some("123456"),
        software_roles: &roles,
    };
    for level in [BindingLevel::Software, BindingLevel::Organisation] {
        let _ = identity.check_binding(subject.clone(), BindingRules { level, check_psd2_roles: true });
    }
}

/// Certificate identity extraction from DER: subject, usage, PSD2 roles.
pub fn certificate_identity(data: &[u8]) {
    if let Ok(identity) = crate::transport::certificate_identity(data) {
        let _ = identity.claimed_profiles();
        let _ = identity.organisation();
    }
}

/// The token endpoint's form: the first line is an `Authorization` header value (empty for
/// none), the rest the form body.
pub fn token_form(data: &[u8]) {
    let (authorization, body) = match data.iter().position(|b| *b == b'\n') {
        Some(at) => (&data[..at], &data[at + 1..]),
        None => (&data[..0], data),
    };
    crate::http::fuzz_token_form(authorization, body);
}

/// The consent request bodies: the first byte chooses the consent type.
pub fn consent_request(data: &[u8]) {
    let Some((kind, body)) = data.split_first() else { return };
    let kind = match kind % 3 {
        0 => ConsentType::AccountAccess,
        1 => ConsentType::DomesticPayment,
        _ => ConsentType::FundsConfirmation,
    };
    if let Ok(request) = ConsentRequest::parse(kind, body) {
        assert_eq!(request.kind(), kind);
        let _ = request.check_times(NOW);
        let _ = request.expires_at();
    }
}

/// The configuration file, without the environment.
pub fn config(data: &[u8]) {
    let Ok(text) = std::str::from_utf8(data) else { return };
    let _ = crate::config::Config::from_toml_with_env(text, "fuzz.toml", Path::new("/nonexistent"), std::iter::empty());
}
