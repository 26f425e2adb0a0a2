use std::collections::BTreeMap;

use serde_json::{json, Value};

use super::*;
use crate::claims::Claims;
use crate::error::ErrorCode;
use crate::jose::SigningAlg;
use crate::software_statement::SoftwareStatement;

const NOW: i64 = 1_800_000_000;

fn policy() -> RegistrationPolicy {
    RegistrationPolicy {
        fapi: true,
        mandate_ssa: true,
        audiences: vec!["https://bank.example".into()],
        allowed_algs: vec![SigningAlg::PS256, SigningAlg::ES256],
        auth_methods: vec![AuthMethod::PrivateKeyJwt, AuthMethod::TlsClientAuth],
        role_scopes: BTreeMap::from([
            ("AISP".to_owned(), vec!["accounts".to_owned()]),
            ("PISP".to_owned(), vec!["payments".to_owned()]),
            ("CBPII".to_owned(), vec!["fundsconfirmations".to_owned()]),
        ]),
        clock_skew: 60,
    }
}

fn ssa() -> SoftwareStatement {
    SoftwareStatement {
        iss: "OpenBanking Ltd".into(),
        iat: NOW - 1000,
        exp: None,
        jti: None,
        software_id: "soft1".into(),
        software_roles: vec!["AISP".into(), "PISP".into()],
        software_redirect_uris: vec!["https://tpp.example/cb".into(), "https://tpp.example/cb2".into()],
        org_id: "org1".into(),
        org_name: None,
        software_jwks_endpoint: "https://keystore.example/org1/soft1.jwks".parse().unwrap(),
        software_client_name: Some("TPP App".into()),
        software_environment: None,
        software_mode: None,
        competent_authority_registration_id: Some("123456".into()),
    }
}

fn request(patch: Value) -> RegistrationRequest {
    let mut base = json!({
        "iss": "soft1", "aud": "https://bank.example", "iat": NOW - 5, "exp": NOW + 300, "jti": "j-1",
        "token_endpoint_auth_method": "private_key_jwt", "token_endpoint_auth_signing_alg": "PS256",
        "grant_types": ["client_credentials", "authorization_code"], "response_types": ["code id_token"],
        "scope": "accounts payments openid"
    });
    for (k, v) in patch.as_object().unwrap() {
        if v.is_null() {
            base.as_object_mut().unwrap().remove(k);
        } else {
            base[k] = v.clone();
        }
    }
    RegistrationRequest::from_claims(&Claims::from_map(base.as_object().unwrap().clone())).unwrap()
}

fn evaluate(patch: Value) -> Result<Approved, crate::error::OAuthError> {
    policy().evaluate(&request(patch), Some(&ssa()), RequestForm::SignedJwt, NOW)
}

#[test]
fn a_good_request_gets_the_ssa_defaults() {
    let ok = evaluate(json!({})).unwrap();
    assert_eq!(ok.software_id.as_deref(), Some("soft1"));
    assert_eq!(ok.metadata.redirect_uris.len(), 2, "missing redirect_uris default to the SSA's");
    assert_eq!(ok.metadata.client_name, "TPP App");
    assert!(ok.metadata.tls_client_certificate_bound_access_tokens);
    assert_eq!(ok.metadata.jwks_uri.unwrap().as_str(), "https://keystore.example/org1/soft1.jwks");
    assert_eq!(ok.jti_issuer, "soft1");
}

#[test]
fn each_rule_refuses_with_its_code() {
    use ErrorCode::*;
    let cases: Vec<(Value, ErrorCode, &str)> = vec![
        (json!({"iss": "other"}), InvalidClientMetadata, "iss"),
        (json!({"iss": null}), InvalidClientMetadata, "iss"),
        (json!({"software_id": "other"}), InvalidClientMetadata, "software_id"),
        (json!({"aud": "https://other.example"}), InvalidClientMetadata, "aud"),
        (json!({"aud": null}), InvalidClientMetadata, "aud"),
        (json!({"exp": NOW - 3600}), InvalidClientMetadata, "expired"),
        (json!({"exp": null}), InvalidClientMetadata, "exp"),
        (json!({"iat": NOW + 3600}), InvalidClientMetadata, "future"),
        (json!({"iat": null}), InvalidClientMetadata, "iat"),
        (json!({"jti": null}), InvalidClientMetadata, "jti"),
        (json!({"redirect_uris": ["http://tpp.example/cb"]}), InvalidRedirectUri, "https"),
        (json!({"redirect_uris": ["https://tpp.example/cb#x"]}), InvalidRedirectUri, "fragment"),
        (json!({"redirect_uris": ["https://localhost/cb"]}), InvalidRedirectUri, "loopback"),
        (json!({"redirect_uris": ["cb"]}), InvalidRedirectUri, "absolute"),
        (json!({"redirect_uris": ["https://evil.example/cb"]}), InvalidRedirectUri, "software_redirect_uris"),
        (json!({"redirect_uris": []}), InvalidRedirectUri, "empty"),
        (
            json!({"token_endpoint_auth_method": "client_secret_basic"}),
            InvalidClientMetadata,
            "token_endpoint_auth_method",
        ),
        (json!({"token_endpoint_auth_method": null}), InvalidClientMetadata, "token_endpoint_auth_method"),
        (json!({"token_endpoint_auth_signing_alg": null}), InvalidClientMetadata, "required with private_key_jwt"),
        (json!({"token_endpoint_auth_signing_alg": "HS256"}), InvalidClientMetadata, "token_endpoint_auth_signing_alg"),
        (json!({"token_endpoint_auth_method": "tls_client_auth"}), InvalidClientMetadata, "tls_client_auth_subject_dn"),
        (
            json!({"token_endpoint_auth_method": "tls_client_auth", "tls_client_auth_subject_dn": "nonsense"}),
            InvalidClientMetadata,
            "tls_client_auth_subject_dn",
        ),
        (json!({"id_token_signed_response_alg": "RS256"}), InvalidClientMetadata, "id_token_signed_response_alg"),
        (json!({"request_object_signing_alg": "none"}), InvalidClientMetadata, "request_object_signing_alg"),
        (json!({"grant_types": ["implicit"]}), InvalidClientMetadata, "grant_types"),
        (json!({"response_types": ["token"]}), InvalidClientMetadata, "response_types"),
        (json!({"application_type": "desktop"}), InvalidClientMetadata, "application_type"),
        (json!({"scope": "accounts fundsconfirmations"}), InvalidClientMetadata, "fundsconfirmations"),
        (json!({"require_signed_request_object": false}), InvalidClientMetadata, "require_signed_request_object"),
        (
            json!({"tls_client_certificate_bound_access_tokens": false}),
            InvalidClientMetadata,
            "tls_client_certificate_bound_access_tokens",
        ),
        (json!({"jwks_uri": "https://evil.example/keys"}), InvalidClientMetadata, "jwks_uri"),
        (json!({"id_token_encrypted_response_alg": "RSA-OAEP"}), InvalidClientMetadata, "encrypt"),
        (json!({"token_endpoint_allow_reuse_pvt_key_jwt": true}), InvalidClientMetadata, "reuse"),
    ];
    for (patch, code, needle) in cases {
        let err = evaluate(patch.clone()).expect_err(&format!("{patch} should be refused"));
        assert_eq!(err.code, code, "{patch}: {err}");
        assert!(err.description.contains(needle), "{patch}: description {:?} should mention {needle}", err.description);
    }
}

#[test]
fn json_form_checks_times_only_when_present() {
    let req = request(json!({"iat": null, "exp": null}));
    assert!(policy().evaluate(&req, Some(&ssa()), RequestForm::Json, NOW).is_ok());
    assert!(policy().evaluate(&req, Some(&ssa()), RequestForm::SignedJwt, NOW).is_err());
}

#[test]
fn without_fapi_flags_may_be_false_and_secrets_issued() {
    let mut p = policy();
    p.fapi = false;
    p.auth_methods.push(AuthMethod::ClientSecretBasic);
    let req = request(
        json!({"tls_client_certificate_bound_access_tokens": false, "token_endpoint_auth_method": "client_secret_basic"}),
    );
    let ok = p.evaluate(&req, Some(&ssa()), RequestForm::SignedJwt, NOW).unwrap();
    assert!(!ok.metadata.tls_client_certificate_bound_access_tokens);
    let (client, creds) = RegisteredClient::new(ok, None, NOW);
    let secret = creds.client_secret.expect("secret-based methods get a secret");
    assert!(client.client_secret_hash.unwrap().matches(secret.expose()));
}

#[test]
fn the_response_never_shows_a_secret_twice() {
    let (client, creds) = RegisteredClient::new(evaluate(json!({})).unwrap(), Some("ssa".into()), NOW);
    let lifetimes = TokenLifetimes::default();
    let first = client.response_body(Some(&creds), &lifetimes, "https://bank.example/register/x");
    assert_eq!(first["registration_access_token"], creds.registration_access_token.expose());
    assert!(first.get("client_secret").is_none(), "private_key_jwt clients get no secret");
    let later = client.response_body(None, &lifetimes, "https://bank.example/register/x");
    assert!(later.get("registration_access_token").is_none());
    assert_eq!(later["scope"], "accounts payments openid");
    assert_eq!(later["ext_application_token_lifetime"], 3600);
}

#[test]
fn client_ids_have_a_bounded_url_safe_shape() {
    for good in ["IbUdeMD47MdKiioOxYP6GjmIIX8hw2dr", "a", "3f2504e0-4f89-11d3-9a0c-0305e82c3301", "x_y-Z"] {
        assert!(is_client_id(good), "{good}");
    }
    for bad in ["", "a/b", "a b", "é", "a%2F", &"a".repeat(37), &"k".repeat(8192), "a\nb", "a.b"] {
        assert!(!is_client_id(bad), "{bad:?}");
    }
    let message = not_a_client_id(&format!("{}\n", "k".repeat(8192)));
    assert!(message.chars().count() < 300 && !message.contains('\n'), "{message}");
}

#[test]
fn keys_by_value_are_refused() {
    let mut claims = serde_json::Map::new();
    claims.insert("jwks".into(), json!({"keys": []}));
    let request = RegistrationRequest::from_claims(&Claims::from_map(claims)).unwrap();
    assert!(request.jwks_by_value);
    let err = policy().evaluate(&request, None, RequestForm::Json, NOW).unwrap_err();
    assert_eq!(err.code, ErrorCode::InvalidClientMetadata);
    assert!(err.description.contains("software_jwks_endpoint"), "{}", err.description);
    let mut null = serde_json::Map::new();
    null.insert("jwks".into(), Value::Null);
    assert!(!RegistrationRequest::from_claims(&Claims::from_map(null)).unwrap().jwks_by_value);
}
