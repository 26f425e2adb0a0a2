//! The signed request object of an authorization request (RFC 9101, FAPI 1.0 Advanced
//! §5.2.2, UK Open Banking): which claims it must carry and how they are judged. Only what
//! is inside the verified request object is used; the outer parameters must merely agree.

use std::collections::BTreeSet;

use serde_json::{Map, Value};

use super::acr::AcrRequest;
use super::pkce::CodeChallenge;
use crate::claims::Claims;
use crate::clock::UnixTime;
use crate::error::{ErrorCode, OAuthError};
use crate::redirect_uri::RedirectUri;

/// The one response type this server issues: the hybrid flow, with an ID token as detached
/// signature (FAPI 1.0 Advanced without JARM).
pub const HYBRID_RESPONSE_TYPE: &str = "code id_token";

/// The longest `nonce` and `state` kept (they are echoed in tokens and redirects).
const MAX_ECHOED_CHARS: usize = 512;

/// What the bank requires of every request object.
#[derive(Debug, Clone)]
pub struct RequestObjectRules {
    /// This server's issuer: the request object's `aud` must be or contain it.
    pub issuer: String,
    /// FAPI: `exp` no more than this after `nbf` (60 minutes).
    pub max_lifetime: i64,
    /// FAPI: `nbf` no more than this in the past (60 minutes).
    pub max_age: i64,
    /// Tolerance for clock differences with the TPP.
    pub clock_skew: i64,
}

impl RequestObjectRules {
    pub fn fapi(issuer: impl Into<String>, clock_skew: i64) -> Self {
        Self { issuer: issuer.into(), max_lifetime: 3600, max_age: 3600, clock_skew }
    }
}

/// The parameters outside the request object, which OAuth 2.0 and OpenID Connect require
/// and which must agree with it.
#[derive(Debug, Clone, Default)]
pub struct OuterParameters {
    pub client_id: Option<String>,
    pub response_type: Option<String>,
    pub scope: Option<String>,
}

/// What the bank registered for the client that signed the request object.
#[derive(Debug, Clone)]
pub struct ClientFacts<'a> {
    pub client_id: &'a str,
    pub registered_scopes: &'a [String],
    /// WSO2's `ext_pkce_mandatory`: the client must send a PKCE challenge.
    pub pkce_mandatory: bool,
}

/// An authorization request that passed every rule, ready for the customer.
#[derive(Debug, Clone, PartialEq, Eq, serde::Serialize, serde::Deserialize)]
pub struct AuthorizationRequest {
    pub client_id: String,
    pub redirect_uri: RedirectUri,
    pub state: Option<String>,
    pub nonce: String,
    /// `openid` and the registered scopes asked for, in the request's order.
    pub scopes: Vec<String>,
    /// `claims.id_token.openbanking_intent_id`: the consent to authorise.
    pub intent_id: String,
    pub acr_essential: bool,
    pub acr_values: Vec<String>,
    pub code_challenge: Option<CodeChallenge>,
}

fn invalid(description: impl Into<String>) -> OAuthError {
    OAuthError::invalid_request_object(description)
}

impl AuthorizationRequest {
    /// The `redirect_uri` of the request object, if it is exactly one of the client's
    /// registered URIs. Until this passes, errors cannot be sent to the client (they are
    /// shown to the customer instead), so it is judged on its own, first.
    pub fn trusted_redirect_uri(claims: &Claims, registered: &[RedirectUri]) -> Result<RedirectUri, OAuthError> {
        let raw = claims.string("redirect_uri").map_err(|e| invalid(e.to_string()))?.ok_or_else(|| {
            invalid("the request object has no redirect_uri; it must name one of the client's registered redirect URIs")
        })?;
        registered.iter().find(|uri| uri.as_str() == raw).cloned().ok_or_else(|| {
            invalid(format!(
                "redirect_uri \"{}\" is not one of the client's registered redirect URIs",
                raw.chars().take(256).collect::<String>()
            ))
        })
    }

    /// The `state` of the request object, for the error redirects that may follow.
    pub fn state(claims: &Claims) -> Option<String> {
        claims.string("state").ok().flatten().map(|s| s.chars().take(MAX_ECHOED_CHARS).collect())
    }

    /// Judges a verified request object of `client` (signature and `redirect_uri` already
    /// checked) against the outer parameters, the client's registration and the rules, at
    /// `now`.
    pub fn from_request_object(
        claims: &Claims,
        redirect_uri: RedirectUri,
        outer: &OuterParameters,
        client: &ClientFacts<'_>,
        rules: &RequestObjectRules,
        now: UnixTime,
    ) -> Result<Self, OAuthError> {
        let (client_id, registered_scopes, pkce_mandatory) =
            (client.client_id, client.registered_scopes, client.pkce_mandatory);
        let text = |name: &str| claims.string(name).map_err(|e| invalid(e.to_string()));

        // Who: the client that signed it is the client that asks.
        let iss = text("iss")?.ok_or_else(|| invalid("the request object has no iss; set it to your client_id"))?;
        if iss != client_id {
            return Err(invalid(format!("the request object's iss \"{iss}\" is not the client_id \"{client_id}\"")));
        }
        if let Some(inner) = text("client_id")? {
            if inner != client_id {
                return Err(invalid("the request object's client_id differs from the client_id parameter"));
            }
        }
        let aud = claims.string_or_list("aud").map_err(|e| invalid(e.to_string()))?.unwrap_or_default();
        if !aud.iter().any(|a| a.trim_end_matches('/') == rules.issuer) {
            return Err(invalid(format!(
                "the request object's aud must be or contain this server's issuer {}",
                rules.issuer
            )));
        }

        // When: FAPI bounds the request object's lifetime and age.
        let date = |name: &str| claims.numeric_date(name).map_err(|e| invalid(e.to_string()));
        let exp = date("exp")?.ok_or_else(|| invalid("the request object has no exp; FAPI requires one"))?;
        let nbf = date("nbf")?.ok_or_else(|| invalid("the request object has no nbf; FAPI requires one"))?;
        if exp + rules.clock_skew <= now {
            return Err(invalid(format!("the request object expired {} seconds ago; sign a new one", now - exp)));
        }
        if nbf > now + rules.clock_skew {
            return Err(invalid("the request object is not valid yet (nbf is in the future)"));
        }
        if now - nbf > rules.max_age + rules.clock_skew {
            return Err(invalid(format!(
                "the request object's nbf is {} seconds in the past; FAPI allows at most {}",
                now - nbf,
                rules.max_age
            )));
        }
        if exp - nbf > rules.max_lifetime {
            return Err(invalid(format!(
                "the request object's exp is {} seconds after its nbf; FAPI allows at most {}",
                exp - nbf,
                rules.max_lifetime
            )));
        }

        // What: the hybrid flow, openid, registered scopes only.
        let response_type = text("response_type")?.ok_or_else(|| {
            invalid(format!("the request object has no response_type; use \"{HYBRID_RESPONSE_TYPE}\""))
        })?;
        if !same_words(&response_type, HYBRID_RESPONSE_TYPE) {
            return Err(OAuthError::new(
                ErrorCode::UnsupportedResponseType,
                format!(
                    "response_type \"{}\" is not supported: this server issues \"{HYBRID_RESPONSE_TYPE}\" (FAPI 1.0 Advanced without JARM)",
                    response_type.chars().take(64).collect::<String>()
                ),
            ));
        }
        match &outer.response_type {
            Some(outer) if same_words(outer, &response_type) => {}
            _ => {
                return Err(OAuthError::invalid_request(
                    "the response_type parameter must be present and equal the request object's",
                ))
            }
        }
        let scope = text("scope")?.ok_or_else(|| invalid("the request object has no scope; it must include openid"))?;
        match &outer.scope {
            Some(outer) if same_words(outer, &scope) => {}
            _ => {
                return Err(OAuthError::invalid_request(
                    "the scope parameter must be present and equal the request object's",
                ))
            }
        }
        let mut scopes: Vec<String> = Vec::new();
        for s in scope.split_whitespace() {
            if s != "openid" && !registered_scopes.iter().any(|r| r == s) {
                return Err(OAuthError::new(
                    ErrorCode::InvalidScope,
                    format!(
                        "scope \"{}\" is not registered for this client; registered: {}",
                        s.chars().take(64).collect::<String>(),
                        registered_scopes.join(" ")
                    ),
                ));
            }
            if !scopes.iter().any(|x| x == s) {
                scopes.push(s.to_owned());
            }
        }
        if !scopes.iter().any(|s| s == "openid") {
            return Err(invalid("scope must include openid"));
        }
        let nonce = text("nonce")?
            .filter(|n| !n.is_empty())
            .ok_or_else(|| invalid("the request object has no nonce; OpenID Connect's hybrid flow requires one"))?;
        if nonce.chars().count() > MAX_ECHOED_CHARS {
            return Err(invalid(format!("nonce is longer than {MAX_ECHOED_CHARS} characters")));
        }

        // Every authorization is a fresh sign-in and decision: there is no session a silent
        // (prompt=none) request could use.
        if text("prompt")?.is_some_and(|prompt| prompt.split(' ').any(|p| p == "none")) {
            return Err(OAuthError::new(
                ErrorCode::LoginRequired,
                "prompt=none cannot be met: the customer signs in and decides for every authorization",
            ));
        }

        // Which consent, at what level of authentication.
        let claims_request = claims.object("claims").map_err(|e| invalid(e.to_string()))?;
        let id_token_claims = claims_request.and_then(|c| c.get("id_token")).and_then(Value::as_object);
        let intent_id = intent_id(id_token_claims)?;
        let acr = AcrRequest::from_claims_request(id_token_claims)?;

        // PKCE, when the client sent a challenge, and always for clients that must.
        let code_challenge =
            match text("code_challenge")? {
                Some(challenge) => Some(CodeChallenge::parse(&challenge, text("code_challenge_method")?.as_deref())?),
                None if pkce_mandatory => return Err(invalid(
                    "this client registered ext_pkce_mandatory: send code_challenge with code_challenge_method S256",
                )),
                None => None,
            };

        Ok(Self {
            client_id: client_id.to_owned(),
            redirect_uri,
            state: Self::state(claims),
            nonce,
            scopes,
            intent_id,
            acr_essential: acr.essential,
            acr_values: acr.values.iter().map(|a| a.as_str().to_owned()).collect(),
            code_challenge,
        })
    }

    /// The authentication levels the TPP asked for.
    pub fn acr(&self) -> AcrRequest {
        AcrRequest {
            essential: self.acr_essential,
            values: self.acr_values.iter().filter_map(|v| super::acr::Acr::parse(v)).collect(),
        }
    }
}

/// `claims.id_token.openbanking_intent_id`: essential, with the consent id as its value.
fn intent_id(id_token: Option<&Map<String, Value>>) -> Result<String, OAuthError> {
    let missing = || {
        invalid(
            "the request object must ask for claims.id_token.openbanking_intent_id, essential, with the ConsentId as its value",
        )
    };
    let claim = id_token.and_then(|c| c.get("openbanking_intent_id")).and_then(Value::as_object).ok_or_else(missing)?;
    let value = claim.get("value").and_then(Value::as_str).filter(|v| !v.is_empty()).ok_or_else(missing)?;
    if claim.get("essential").and_then(Value::as_bool) != Some(true) {
        return Err(invalid("claims.id_token.openbanking_intent_id must be essential"));
    }
    if value.len() > 128 {
        return Err(invalid("openbanking_intent_id is longer than a ConsentId can be (128 characters)"));
    }
    Ok(value.to_owned())
}

/// Space-separated lists compared as sets (`code id_token` = `id_token code`).
fn same_words(a: &str, b: &str) -> bool {
    a.split_whitespace().collect::<BTreeSet<_>>() == b.split_whitespace().collect::<BTreeSet<_>>()
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    const NOW: i64 = 1_800_000_000;
    const ISSUER: &str = "https://bank.example";

    fn registered() -> Vec<RedirectUri> {
        vec![RedirectUri::parse("https://tpp.example/cb").unwrap()]
    }

    fn object(patch: Value) -> Claims {
        crate::claims::patched(
            json!({
                "iss": "client-1", "client_id": "client-1", "aud": ISSUER,
                "exp": NOW + 300, "nbf": NOW - 10, "iat": NOW - 10,
                "response_type": "code id_token", "scope": "openid accounts",
                "redirect_uri": "https://tpp.example/cb", "state": "s-1", "nonce": "n-1",
                "claims": {"id_token": {
                    "openbanking_intent_id": {"value": "aac-123", "essential": true},
                    "acr": {"essential": true, "values": ["urn:openbanking:psd2:sca", "urn:openbanking:psd2:ca"]}
                }}
            }),
            patch,
        )
    }

    fn outer() -> OuterParameters {
        OuterParameters {
            client_id: Some("client-1".into()),
            response_type: Some("code id_token".into()),
            scope: Some("openid accounts".into()),
        }
    }

    fn judge(claims: &Claims, outer: &OuterParameters, pkce: bool) -> Result<AuthorizationRequest, OAuthError> {
        let redirect = AuthorizationRequest::trusted_redirect_uri(claims, &registered())?;
        let scopes = ["accounts".to_owned(), "payments".to_owned()];
        let client = ClientFacts { client_id: "client-1", registered_scopes: &scopes, pkce_mandatory: pkce };
        AuthorizationRequest::from_request_object(
            claims,
            redirect,
            outer,
            &client,
            &RequestObjectRules::fapi(ISSUER, 10),
            NOW,
        )
    }

    #[test]
    fn a_fapi_request_object_passes() {
        let request = judge(&object(json!({})), &outer(), false).unwrap();
        assert_eq!(request.intent_id, "aac-123");
        assert_eq!(request.scopes, vec!["openid", "accounts"]);
        assert_eq!(request.state.as_deref(), Some("s-1"));
        assert!(request.acr().essential);
    }

    #[test]
    fn each_rule_refuses_what_it_exists_for() {
        use ErrorCode::*;
        for (patch, code, needle) in [
            (json!({"exp": null}), InvalidRequestObject, "no exp"),
            (json!({"nbf": null}), InvalidRequestObject, "no nbf"),
            (json!({"exp": NOW - 60}), InvalidRequestObject, "expired"),
            (json!({"exp": NOW + 3700, "nbf": NOW - 10}), InvalidRequestObject, "at most 3600"),
            (json!({"nbf": NOW - 3700, "exp": NOW + 60}), InvalidRequestObject, "in the past"),
            (json!({"nbf": NOW + 600}), InvalidRequestObject, "not valid yet"),
            (json!({"aud": "https://other.example"}), InvalidRequestObject, "aud"),
            (json!({"iss": "client-2"}), InvalidRequestObject, "iss"),
            (json!({"client_id": "client-2"}), InvalidRequestObject, "client_id"),
            (json!({"scope": null}), InvalidRequestObject, "no scope"),
            (json!({"nonce": null}), InvalidRequestObject, "nonce"),
            (json!({"response_type": "code"}), UnsupportedResponseType, "not supported"),
            (json!({"claims": null}), InvalidRequestObject, "openbanking_intent_id"),
            (
                json!({"claims": {"id_token": {"openbanking_intent_id": {"value": "x", "essential": false}}}}),
                InvalidRequestObject,
                "essential",
            ),
            (json!({"code_challenge": "abc", "code_challenge_method": "plain"}), InvalidRequestObject, "S256"),
            (json!({"prompt": "none"}), LoginRequired, "prompt=none"),
        ] {
            let err = judge(&object(patch.clone()), &OuterParameters { ..outer() }, false).unwrap_err();
            assert_eq!(err.code, code, "{patch}: {}", err.description);
            assert!(err.description.contains(needle), "{patch}: {}", err.description);
        }
    }

    #[test]
    fn scopes_must_be_openid_and_registered() {
        let outer_for = |scope: &str| OuterParameters { scope: Some(scope.into()), ..outer() };
        let err = judge(
            &object(json!({"scope": "openid fundsconfirmations"})),
            &outer_for("openid fundsconfirmations"),
            false,
        )
        .unwrap_err();
        assert_eq!(err.code, ErrorCode::InvalidScope);
        let err = judge(&object(json!({"scope": "accounts"})), &outer_for("accounts"), false).unwrap_err();
        assert!(err.description.contains("openid"), "{}", err.description);
    }

    #[test]
    fn the_outer_parameters_must_agree() {
        let err = judge(&object(json!({})), &OuterParameters { response_type: Some("code".into()), ..outer() }, false)
            .unwrap_err();
        assert_eq!(err.code, ErrorCode::InvalidRequest);
        let err = judge(&object(json!({})), &OuterParameters { scope: None, ..outer() }, false).unwrap_err();
        assert_eq!(err.code, ErrorCode::InvalidRequest);
        let reordered = OuterParameters { response_type: Some("id_token code".into()), ..outer() };
        assert!(judge(&object(json!({})), &reordered, false).is_ok());
    }

    #[test]
    fn redirect_uris_must_be_registered_exactly() {
        let other = object(json!({"redirect_uri": "https://tpp.example/cb/"}));
        assert!(AuthorizationRequest::trusted_redirect_uri(&other, &registered()).is_err());
        let none = object(json!({"redirect_uri": null}));
        assert!(AuthorizationRequest::trusted_redirect_uri(&none, &registered()).is_err());
    }

    #[test]
    fn pkce_is_required_when_registered_so() {
        let err = judge(&object(json!({})), &outer(), true).unwrap_err();
        assert!(err.description.contains("ext_pkce_mandatory"), "{}", err.description);
        let with = object(
            json!({"code_challenge": "E9Melhoa2OwvFrEMTJguCHaoeK1t8URWbuGJSstw-cM", "code_challenge_method": "S256"}),
        );
        assert!(judge(&with, &outer(), true).unwrap().code_challenge.is_some());
    }
}
