//! The client-credentials token service's rules: client assertions (RFC 7523, FAPI),
//! scope selection, and the claims of the JWT access tokens Keyfort issues.

use serde_json::{json, Value};

use crate::claims::Claims;
use crate::clock::UnixTime;
use crate::error::{ErrorCode, OAuthError};

/// `client_assertion_type` of a JWT client assertion (RFC 7523 §2.2).
pub const JWT_BEARER_ASSERTION: &str = "urn:ietf:params:oauth:client-assertion-type:jwt-bearer";

fn invalid_client(description: impl Into<String>) -> OAuthError {
    OAuthError::new(ErrorCode::InvalidClient, description)
}

/// What a client assertion must satisfy besides its signature.
#[derive(Debug, Clone)]
pub struct AssertionRules {
    /// Accepted `aud` values: the token endpoint URL and the issuer.
    pub audiences: Vec<String>,
    /// Longest accepted time from now to `exp`: assertions are meant for one request.
    pub max_lifetime: i64,
    pub clock_skew: i64,
}

/// An assertion that passed its claim checks; its `jti` must still be recorded as used.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct AcceptedAssertion {
    pub jti: String,
    pub exp: UnixTime,
}

/// Checks the claims of a `private_key_jwt` assertion whose signature has been verified
/// with a key of `client_id`.
pub fn check_client_assertion(
    claims: &Claims,
    client_id: &str,
    rules: &AssertionRules,
    now: UnixTime,
) -> Result<AcceptedAssertion, OAuthError> {
    let bad = |e: crate::claims::ClaimError| invalid_client(format!("client_assertion {e}"));
    let iss = claims.required_string("iss").map_err(bad)?;
    let sub = claims.required_string("sub").map_err(bad)?;
    if iss != client_id || sub != client_id {
        return Err(invalid_client(format!(
            "client_assertion iss and sub must both be the client_id \"{client_id}\" (got iss \"{iss}\", sub \"{sub}\")"
        )));
    }
    let aud = claims.string_or_list("aud").map_err(bad)?.unwrap_or_default();
    if !aud.iter().any(|a| rules.audiences.contains(a)) {
        return Err(invalid_client(format!(
            "client_assertion aud must be this server's token endpoint or issuer ({}); got {}",
            rules.audiences.join(" or "),
            if aud.is_empty() { "none".to_owned() } else { aud.join(", ") }
        )));
    }
    let exp = claims
        .numeric_date("exp")
        .map_err(bad)?
        .ok_or_else(|| invalid_client("client_assertion claim `exp` is required"))?;
    if exp + rules.clock_skew < now {
        return Err(invalid_client(format!(
            "client_assertion expired {} seconds ago; sign a new assertion for each token request",
            now - exp
        )));
    }
    if exp > now + rules.max_lifetime + rules.clock_skew {
        return Err(invalid_client(format!(
            "client_assertion exp is {} seconds away; at most {} seconds are accepted",
            exp - now,
            rules.max_lifetime
        )));
    }
    if let Some(iat) = claims.numeric_date("iat").map_err(bad)? {
        if iat > now + rules.clock_skew {
            return Err(invalid_client(format!("client_assertion iat is {} seconds in the future", iat - now)));
        }
    }
    if let Some(nbf) = claims.numeric_date("nbf").map_err(bad)? {
        if nbf > now + rules.clock_skew {
            return Err(invalid_client("client_assertion is not valid yet (nbf is in the future)"));
        }
    }
    let jti = claims.required_string("jti").map_err(bad)?;
    Ok(AcceptedAssertion { jti, exp })
}

/// The scopes to grant: those requested, each within the registered ones; all registered
/// scopes when none are requested.
pub fn select_scope(requested: Option<&str>, registered: &[String]) -> Result<Vec<String>, OAuthError> {
    let Some(requested) = requested.filter(|r| !r.trim().is_empty()) else {
        return Ok(registered.to_vec());
    };
    let mut granted = Vec::new();
    for scope in requested.split_whitespace() {
        if !registered.iter().any(|r| r == scope) {
            return Err(OAuthError::new(
                ErrorCode::InvalidScope,
                format!(
                    "scope \"{scope}\" is not registered for this client; registered scopes: {}",
                    registered.join(" ")
                ),
            ));
        }
        if !granted.iter().any(|g: &String| g == scope) {
            granted.push(scope.to_owned());
        }
    }
    Ok(granted)
}

/// The claims of an access token (RFC 9068 shape).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct AccessTokenClaims {
    pub issuer: String,
    pub audience: Vec<String>,
    pub client_id: String,
    pub scope: Vec<String>,
    pub issued_at: UnixTime,
    pub expires_at: UnixTime,
    pub jti: String,
    /// RFC 8705 `cnf.x5t#S256`: the client certificate the token is bound to.
    pub certificate_thumbprint: Option<String>,
    /// For a token a customer's consent granted: whom it acts for and under what.
    pub consent: Option<ConsentBinding>,
}

/// What ties an access token to a customer's consent.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ConsentBinding {
    /// The ID token's `sub`: the customer (or the consent, as configured).
    pub subject: String,
    /// `openbanking_intent_id` (also sent as `consent_id`).
    pub consent_id: String,
    /// The authorization the token came from, revoked as one (a reused code, a revoked
    /// consent).
    pub grant_id: String,
}

impl AccessTokenClaims {
    pub fn to_json(&self) -> Value {
        let subject = self.consent.as_ref().map_or(&self.client_id, |c| &c.subject);
        let mut claims = json!({
            "iss": self.issuer,
            "sub": subject,
            "aud": if self.audience.len() == 1 { json!(self.audience[0]) } else { json!(self.audience) },
            "client_id": self.client_id,
            "scope": self.scope.join(" "),
            "iat": self.issued_at,
            "nbf": self.issued_at,
            "exp": self.expires_at,
            "jti": self.jti,
        });
        if let Some(thumbprint) = &self.certificate_thumbprint {
            claims["cnf"] = json!({ "x5t#S256": thumbprint });
        }
        if let Some(consent) = &self.consent {
            claims["openbanking_intent_id"] = json!(consent.consent_id);
            claims["consent_id"] = json!(consent.consent_id);
            claims["grant_id"] = json!(consent.grant_id);
        }
        claims
    }

    /// Reads back the claims of a token this server signed (after verifying it).
    pub fn from_claims(claims: &Claims) -> Option<Self> {
        Some(Self {
            issuer: claims.string("iss").ok()??,
            audience: claims.string_or_list("aud").ok()?.unwrap_or_default(),
            client_id: claims.string("client_id").ok()??,
            scope: claims.string("scope").ok()?.unwrap_or_default().split_whitespace().map(str::to_owned).collect(),
            issued_at: claims.numeric_date("iat").ok()??,
            expires_at: claims.numeric_date("exp").ok()??,
            jti: claims.string("jti").ok()??,
            certificate_thumbprint: claims
                .object("cnf")
                .ok()?
                .and_then(|cnf| cnf.get("x5t#S256"))
                .and_then(|v| v.as_str())
                .map(str::to_owned),
            consent: match (claims.string("consent_id").ok()?, claims.string("grant_id").ok()?) {
                (Some(consent_id), Some(grant_id)) => {
                    Some(ConsentBinding { subject: claims.string("sub").ok()??, consent_id, grant_id })
                }
                _ => None,
            },
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    const NOW: i64 = 1_800_000_000;

    fn rules() -> AssertionRules {
        AssertionRules { audiences: vec!["https://as.example/oauth2/token".into()], max_lifetime: 600, clock_skew: 30 }
    }

    fn assertion(patch: Value) -> Claims {
        crate::claims::patched(
            json!({"iss": "c1", "sub": "c1", "aud": "https://as.example/oauth2/token", "exp": NOW + 60, "iat": NOW, "jti": "j"}),
            patch,
        )
    }

    #[test]
    fn assertion_rules() {
        assert!(check_client_assertion(&assertion(json!({})), "c1", &rules(), NOW).is_ok());
        for (patch, needle) in [
            (json!({"iss": "c2"}), "iss and sub"),
            (json!({"sub": "c2"}), "iss and sub"),
            (json!({"aud": "https://other.example"}), "aud"),
            (json!({"aud": null}), "aud"),
            (json!({"exp": NOW - 120}), "expired"),
            (json!({"exp": null}), "exp"),
            (json!({"exp": NOW + 7200}), "at most 600"),
            (json!({"iat": NOW + 600}), "future"),
            (json!({"nbf": NOW + 600}), "not valid yet"),
            (json!({"jti": null}), "jti"),
        ] {
            let err = check_client_assertion(&assertion(patch.clone()), "c1", &rules(), NOW).unwrap_err();
            assert_eq!(err.code, ErrorCode::InvalidClient, "{patch}");
            assert!(err.description.contains(needle), "{patch}: {}", err.description);
        }
    }

    #[test]
    fn scope_selection() {
        let registered = vec!["accounts".to_owned(), "payments".to_owned()];
        assert_eq!(select_scope(None, &registered).unwrap(), registered);
        assert_eq!(select_scope(Some("payments"), &registered).unwrap(), vec!["payments"]);
        assert_eq!(select_scope(Some("fundsconfirmations"), &registered).unwrap_err().code, ErrorCode::InvalidScope);
    }

    #[test]
    fn claims_round_trip() {
        let claims = AccessTokenClaims {
            issuer: "https://as".into(),
            audience: vec!["https://as".into()],
            client_id: "c".into(),
            scope: vec!["accounts".into()],
            issued_at: NOW,
            expires_at: NOW + 3600,
            jti: "j".into(),
            certificate_thumbprint: Some("t".into()),
            consent: None,
        };
        let json = claims.to_json();
        assert_eq!(json["cnf"]["x5t#S256"], "t");
        assert_eq!(json["sub"], "c", "a client's own token is about the client");
        let back = AccessTokenClaims::from_claims(&Claims::from_map(json.as_object().unwrap().clone())).unwrap();
        assert_eq!(back, claims);

        let bound = AccessTokenClaims {
            consent: Some(ConsentBinding {
                subject: "cust-1".into(),
                consent_id: "aac-1".into(),
                grant_id: "g".into(),
            }),
            ..claims
        };
        let json = bound.to_json();
        assert_eq!((json["sub"].as_str(), json["openbanking_intent_id"].as_str()), (Some("cust-1"), Some("aac-1")));
        let back = AccessTokenClaims::from_claims(&Claims::from_map(json.as_object().unwrap().clone())).unwrap();
        assert_eq!(back, bound);
    }
}
