//! `[oauth.dcr]`: Dynamic Client Registration. The keys keep the names of WSO2 Identity
//! Server's `deployment.toml`, so an existing section carries over.

use std::collections::BTreeMap;

use keyfort_core::jose::SigningAlg;
use keyfort_core::registration::{AuthMethod, RegistrationPolicy};
use keyfort_core::software_statement::SsaRules;
use keyfort_core::transport::{BindingLevel, BindingRules};
use serde::Deserialize;

use super::loader::{Paths, Section};
use super::origins::{Origin, Origins};
use super::sources::{parse_key_source, KeySource};

#[derive(Debug, Clone)]
pub struct DcrConfig {
    pub ssa_jwks: Vec<KeySource>,
    pub ssa_signing_algs: Vec<SigningAlg>,
    pub ssa_rules: SsaRules,
    pub policy: RegistrationPolicy,
    pub one_registration_per_software: bool,
    /// Origins (scheme, host, port) from which software JWKS (named in SSAs) may be
    /// fetched: `software_jwks_hosts`.
    pub software_jwks_origins: Origins,
    /// How long the `jti` of a registration request without `exp` is remembered.
    pub jti_without_exp_retention_seconds: i64,
    /// Registration needs a valid transport certificate.
    pub require_transport_certificate: bool,
    pub binding: BindingRules,
    /// Registration needs an administrator's HTTP Basic credentials (WSO2's setting).
    pub authentication_required: bool,
    /// Accept unsigned JSON registrations without a transport certificate or administrator
    /// (development only: the SSA alone proves nothing).
    pub allow_json_without_proof: bool,
}

/// The default role → scope map of the UK Open Banking profile.
pub fn default_role_scopes() -> BTreeMap<String, Vec<String>> {
    BTreeMap::from([
        ("AISP".to_owned(), vec!["accounts".to_owned()]),
        ("PISP".to_owned(), vec!["payments".to_owned()]),
        ("CBPII".to_owned(), vec!["fundsconfirmations".to_owned()]),
    ])
}

#[derive(Debug, Clone, Copy, Deserialize)]
#[serde(rename_all = "lowercase")]
enum CertificateBinding {
    Software,
    #[serde(alias = "organization")]
    Organisation,
    Off,
}

impl From<CertificateBinding> for BindingLevel {
    fn from(binding: CertificateBinding) -> Self {
        match binding {
            CertificateBinding::Software => BindingLevel::Software,
            CertificateBinding::Organisation => BindingLevel::Organisation,
            CertificateBinding::Off => BindingLevel::Off,
        }
    }
}

/// What `[oauth.dcr]` needs from the other sections.
pub(super) struct DcrContext<'a> {
    /// `[server] public_url`, the default audience; `None` when `[server]` has problems.
    pub public_url: Option<&'a str>,
    /// Whether transport certificates can reach Keyfort at all (a client CA or a gateway).
    pub certificates_possible: bool,
    pub allow_insecure_loopback: bool,
}

/// `[oauth.dcr]`; `None` when a required key is missing or wrong (the problem is recorded).
pub(super) fn read(mut s: Section<'_>, context: &DcrContext<'_>, paths: &Paths<'_>) -> Option<DcrConfig> {
    let ssa_jwks = read_ssa_jwks(&mut s, paths, context.allow_insecure_loopback);
    let fapi = s.take("enable_fapi_enforcement").unwrap_or(true);
    let mandate_ssa = s.take("mandate_ssa").unwrap_or(true);
    let authentication_required = s.take("authentication_required").unwrap_or(false);
    let allow_json_without_proof = s.take("allow_json_without_proof").unwrap_or(false);
    let one_registration_per_software = s.take("one_registration_per_software").unwrap_or(true);
    let check_psd2_roles = s.take("check_psd2_roles").unwrap_or(true);
    let software_environment = s.take::<String>("software_environment");

    let ssa_issuers = s.take::<Vec<String>>("ssa_issuers").unwrap_or_else(|| vec!["OpenBanking Ltd".into()]);
    if ssa_issuers.is_empty() {
        s.problem("ssa_issuers", "must list at least one issuer, e.g. \"OpenBanking Ltd\"");
    }
    let audiences = s.take_strings("audience").or_else(|| context.public_url.map(|url| vec![url.to_owned()]));
    if audiences.as_ref().is_some_and(Vec::is_empty) {
        s.problem("audience", "must list at least one value (the issuer TPPs put in aud)");
    }
    let allowed_algs =
        s.take::<Vec<SigningAlg>>("allowed_signing_algs").unwrap_or_else(|| vec![SigningAlg::PS256, SigningAlg::ES256]);
    if allowed_algs.is_empty() {
        s.problem("allowed_signing_algs", "must list at least one algorithm, e.g. [\"PS256\"]");
    }
    let auth_methods = read_auth_methods(&mut s, fapi);
    let clock_skew = s.take::<i64>("clock_skew_seconds").unwrap_or(60);
    if !(0..=600).contains(&clock_skew) {
        s.problem("clock_skew_seconds", "must be between 0 and 600");
    }
    let software_jwks_origins = match s.take::<Vec<String>>("software_jwks_hosts") {
        Some(entries) => {
            let mut origins = Origins::default();
            for entry in &entries {
                match Origin::parse(entry) {
                    Ok(origin) => origins.push(origin),
                    Err(why) => s.problem("software_jwks_hosts", why),
                }
            }
            origins
        }
        // The directory's own keystore: the origins of the ssa_jkws URLs.
        None => {
            let mut origins = Origins::default();
            for source in &ssa_jwks {
                if let Some(origin) = match source {
                    KeySource::Url(u) => Origin::of(u),
                    KeySource::File(_) => None,
                } {
                    origins.push(origin);
                }
            }
            origins
        }
    };
    let jti_without_exp_retention_seconds =
        s.take_in_range("jti_without_exp_retention_seconds", 30 * 86_400, 3600..=10 * 365 * 86_400);
    let role_scopes = s.take::<BTreeMap<String, Vec<String>>>("role_scopes").unwrap_or_else(default_role_scopes);
    let require_transport_certificate = match s.take::<bool>("require_transport_certificate") {
        Some(true) if !context.certificates_possible => {
            s.problem(
                "require_transport_certificate",
                "true needs [server.tls] client_ca_file with client_auth \"optional\" or \"required\", or a [mtls] gateway_header",
            );
            true
        }
        Some(value) => value,
        None => context.certificates_possible,
    };
    let binding_level = s.take("certificate_binding").unwrap_or(CertificateBinding::Software).into();

    Some(DcrConfig {
        ssa_jwks,
        ssa_signing_algs: allowed_algs.clone(),
        ssa_rules: SsaRules { issuers: ssa_issuers, software_environment, clock_skew },
        policy: RegistrationPolicy {
            fapi,
            mandate_ssa,
            audiences: audiences?,
            allowed_algs,
            auth_methods,
            role_scopes,
            clock_skew,
        },
        one_registration_per_software,
        software_jwks_origins,
        jti_without_exp_retention_seconds,
        require_transport_certificate,
        binding: BindingRules { level: binding_level, check_psd2_roles },
        authentication_required,
        allow_json_without_proof,
    })
}

/// `ssa_jkws` (WSO2's spelling) or its alias `ssa_jwks`: one source or a list.
fn read_ssa_jwks(s: &mut Section<'_>, paths: &Paths<'_>, allow_insecure_loopback: bool) -> Vec<KeySource> {
    let written = (s.has("ssa_jkws"), s.has("ssa_jwks"));
    let raw = match (s.take_strings("ssa_jkws"), s.take_strings("ssa_jwks")) {
        (Some(_), Some(_)) => {
            s.problem("ssa_jwks", "is an alias of ssa_jkws: set one of them, not both");
            return Vec::new();
        }
        (Some(list), None) | (None, Some(list)) => list,
        (None, None) => {
            if written == (false, false) {
                s.problem(
                    "ssa_jkws",
                    "is required: the URL (or file) of the Open Banking directory's JWKS that signs software statements",
                );
            }
            return Vec::new();
        }
    };
    let key = if written.0 { "ssa_jkws" } else { "ssa_jwks" };
    if raw.is_empty() {
        s.problem(key, "must list at least one URL (or file) of the directory's JWKS");
    }
    raw.iter()
        .filter_map(|entry| match parse_key_source(entry, paths, allow_insecure_loopback) {
            Ok(source) => Some(source),
            Err(why) => {
                s.problem(key, why);
                None
            }
        })
        .collect()
}

/// The methods a client may register. `client_secret_jwt` is refused by name: FAPI
/// forbids it, and Keyfort has no verifier for its HMAC-signed assertions.
fn read_auth_methods(s: &mut Section<'_>, fapi: bool) -> Vec<AuthMethod> {
    const KEY: &str = "token_endpoint_auth_methods";
    let Some(names) = s.take::<Vec<String>>(KEY) else {
        let mut defaults = vec![AuthMethod::PrivateKeyJwt, AuthMethod::TlsClientAuth];
        if !fapi {
            defaults.extend([AuthMethod::ClientSecretBasic, AuthMethod::ClientSecretPost]);
        }
        return defaults;
    };
    if names.is_empty() {
        s.problem(KEY, "must list at least one method, e.g. [\"private_key_jwt\", \"tls_client_auth\"]");
    }
    let mut methods = Vec::new();
    for name in &names {
        if name == "client_secret_jwt" {
            s.problem(
                KEY,
                "\"client_secret_jwt\" is not supported: FAPI forbids it and Keyfort does not verify HMAC client \
                 assertions; use private_key_jwt or tls_client_auth",
            );
            continue;
        }
        let method = match name.parse::<AuthMethod>() {
            Ok(method) => method,
            Err(bad) => {
                s.problem(
                    KEY,
                    format!(
                        "\"{bad}\" is not a token endpoint authentication method (private_key_jwt, tls_client_auth, \
                         client_secret_basic, client_secret_post)"
                    ),
                );
                continue;
            }
        };
        if fapi && !matches!(method, AuthMethod::PrivateKeyJwt | AuthMethod::TlsClientAuth) {
            s.problem(
                KEY,
                format!("\"{name}\" is not allowed under FAPI enforcement (only private_key_jwt and tls_client_auth)"),
            );
            continue;
        }
        methods.push(method);
    }
    methods
}
