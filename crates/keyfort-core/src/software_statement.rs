//! The software statement assertion (SSA): the directory's signed description of a TPP's
//! software, from which the registration takes its identity, redirect URIs, roles and keys.

use url::Url;

use crate::claims::{ClaimError, Claims};
use crate::clock::UnixTime;
use crate::error::OAuthError;

/// What an SSA must satisfy besides its signature.
#[derive(Debug, Clone)]
pub struct SsaRules {
    /// Accepted `iss` values, e.g. "OpenBanking Ltd".
    pub issuers: Vec<String>,
    /// Required `software_environment` ("sandbox", "live"), if the bank pins one.
    pub software_environment: Option<String>,
    /// Tolerance for clock differences with the directory, in seconds.
    pub clock_skew: i64,
}

/// A verified SSA's claims, typed. Only built from claims whose signature has been checked.
#[derive(Debug, Clone, PartialEq)]
pub struct SoftwareStatement {
    pub iss: String,
    pub iat: UnixTime,
    pub exp: Option<UnixTime>,
    pub jti: Option<String>,
    pub software_id: String,
    pub software_roles: Vec<String>,
    pub software_redirect_uris: Vec<String>,
    pub org_id: String,
    pub org_name: Option<String>,
    pub software_jwks_endpoint: Url,
    pub software_client_name: Option<String>,
    pub software_environment: Option<String>,
    pub software_mode: Option<String>,
    /// `organisation_competent_authority_claims.registration_id`: the organisation's number at
    /// its regulator, which eIDAS certificates carry in `organizationIdentifier`.
    pub competent_authority_registration_id: Option<String>,
}

fn invalid(e: ClaimError) -> OAuthError {
    OAuthError::invalid_software_statement(format!("software_statement {e}"))
}

impl SoftwareStatement {
    /// Types and checks the claims of an SSA whose signature has already been verified.
    pub fn from_verified_claims(claims: &Claims, rules: &SsaRules, now: UnixTime) -> Result<Self, OAuthError> {
        let iss = claims.required_string("iss").map_err(invalid)?;
        if !rules.issuers.contains(&iss) {
            return Err(OAuthError::invalid_software_statement(format!(
                "software_statement iss \"{iss}\" is not a trusted directory; accepted issuers: {}",
                rules.issuers.join(", ")
            )));
        }
        let iat = claims.numeric_date("iat").map_err(invalid)?.ok_or_else(|| {
            OAuthError::invalid_software_statement("software_statement claim `iat` is required but missing")
        })?;
        if iat > now + rules.clock_skew {
            return Err(OAuthError::invalid_software_statement(format!(
                "software_statement iat {iat} is {} seconds in the future; check the directory's or this server's clock",
                iat - now
            )));
        }
        let exp = claims.numeric_date("exp").map_err(invalid)?;
        if let Some(exp) = exp {
            if exp + rules.clock_skew < now {
                return Err(OAuthError::invalid_software_statement(format!(
                    "software_statement expired at {exp} ({} seconds ago); obtain a fresh SSA from the directory",
                    now - exp
                )));
            }
        }
        let software_id = claims.required_string("software_id").map_err(invalid)?;
        let software_roles = required_list(claims, "software_roles")?;
        let software_redirect_uris = required_list(claims, "software_redirect_uris")?;
        let org_id = claims.required_string("org_id").map_err(invalid)?;
        let endpoint = claims.required_string("software_jwks_endpoint").map_err(invalid)?;
        let software_jwks_endpoint = Url::parse(&endpoint).map_err(|e| {
            OAuthError::invalid_software_statement(format!(
                "software_statement software_jwks_endpoint \"{endpoint}\" is not an absolute URL ({e})"
            ))
        })?;

        for status_claim in ["org_status", "software_status"] {
            if let Some(status) = claims.string(status_claim).map_err(invalid)? {
                if !status.eq_ignore_ascii_case("active") {
                    return Err(OAuthError::unapproved_software_statement(format!(
                        "the directory reports {status_claim} \"{status}\"; only Active organisations and software may register"
                    )));
                }
            }
        }
        let authority = claims.object("organisation_competent_authority_claims").map_err(invalid)?;
        let competent_authority_registration_id =
            authority.and_then(|a| a.get("registration_id")).and_then(|v| v.as_str()).map(str::to_owned);
        if let Some(authority) = authority {
            if let Some(status) = authority.get("status").and_then(|s| s.as_str()) {
                if !status.eq_ignore_ascii_case("active") {
                    return Err(OAuthError::unapproved_software_statement(format!(
                        "the directory reports the organisation's competent authority status \"{status}\"; only Active organisations may register"
                    )));
                }
            }
        }
        let software_environment = claims.string("software_environment").map_err(invalid)?;
        if let Some(expected) = &rules.software_environment {
            if software_environment.as_deref() != Some(expected.as_str()) {
                return Err(OAuthError::unapproved_software_statement(format!(
                    "software_statement is for software_environment \"{}\", but this server accepts \"{expected}\" only",
                    software_environment.as_deref().unwrap_or("(none)")
                )));
            }
        }

        Ok(Self {
            iss,
            iat,
            exp,
            jti: claims.string("jti").map_err(invalid)?,
            software_id,
            software_roles,
            software_redirect_uris,
            org_id,
            org_name: claims.string("org_name").map_err(invalid)?,
            software_jwks_endpoint,
            software_client_name: claims.string("software_client_name").map_err(invalid)?,
            software_environment,
            software_mode: claims.string("software_mode").map_err(invalid)?,
            competent_authority_registration_id,
        })
    }
}

fn required_list(claims: &Claims, claim: &str) -> Result<Vec<String>, OAuthError> {
    match claims.string_list(claim).map_err(invalid)? {
        Some(list) if !list.is_empty() => Ok(list),
        Some(_) => {
            Err(OAuthError::invalid_software_statement(format!("software_statement claim `{claim}` must not be empty")))
        }
        None => Err(OAuthError::invalid_software_statement(format!(
            "software_statement claim `{claim}` is required but missing"
        ))),
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::error::ErrorCode;
    use serde_json::{json, Value};

    const NOW: UnixTime = 1_800_000_000;

    fn rules() -> SsaRules {
        SsaRules { issuers: vec!["OpenBanking Ltd".into()], software_environment: None, clock_skew: 60 }
    }

    fn ssa(patch: Value) -> Claims {
        crate::claims::patched(
            json!({
                "iss": "OpenBanking Ltd", "iat": NOW - 100, "jti": "j1",
                "software_id": "s1", "software_roles": ["AISP"], "org_id": "o1",
                "software_redirect_uris": ["https://tpp.example/cb"],
                "software_jwks_endpoint": "https://keystore.example/o1/s1.jwks",
                "org_status": "Active", "software_environment": "sandbox"
            }),
            patch,
        )
    }

    fn code(patch: Value, rules: &SsaRules) -> ErrorCode {
        SoftwareStatement::from_verified_claims(&ssa(patch), rules, NOW).unwrap_err().code
    }

    #[test]
    fn a_good_ssa_is_typed() {
        let s = SoftwareStatement::from_verified_claims(&ssa(json!({})), &rules(), NOW).unwrap();
        assert_eq!(s.software_id, "s1");
        assert_eq!(s.org_id, "o1");
    }

    #[test]
    fn each_rule_refuses_with_its_code() {
        use ErrorCode::*;
        let r = rules();
        assert_eq!(code(json!({"iss": "Someone"}), &r), InvalidSoftwareStatement);
        assert_eq!(code(json!({"iat": NOW + 3600}), &r), InvalidSoftwareStatement);
        assert_eq!(code(json!({"exp": NOW - 3600}), &r), InvalidSoftwareStatement);
        for missing in ["software_id", "software_roles", "software_redirect_uris", "org_id", "software_jwks_endpoint"] {
            assert_eq!(code(json!({ missing: null }), &r), InvalidSoftwareStatement, "{missing}");
        }
        assert_eq!(code(json!({"org_status": "Revoked"}), &r), UnapprovedSoftwareStatement);
        assert_eq!(code(json!({"software_status": "Inactive"}), &r), UnapprovedSoftwareStatement);
        let live = SsaRules { software_environment: Some("live".into()), ..rules() };
        assert_eq!(code(json!({}), &live), UnapprovedSoftwareStatement);
    }

    #[test]
    fn clock_skew_is_tolerated() {
        assert!(SoftwareStatement::from_verified_claims(&ssa(json!({"iat": NOW + 30})), &rules(), NOW).is_ok());
    }
}
