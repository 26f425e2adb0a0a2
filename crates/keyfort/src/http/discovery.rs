use axum::extract::State;
use axum::Json;
use serde_json::{json, Value};

use keyfort_core::authorization::Acr;

use super::AppState;
use crate::authorization::{AUTHORIZATION_PATH, REQUEST_OBJECT_ALGS};
use crate::registration::REGISTRATION_PATH;
use crate::token::{INTROSPECTION_PATH, JWKS_PATH, REVOCATION_PATH, TOKEN_PATH};

/// OpenID Provider metadata (OpenID Connect Discovery, RFC 8414) for what this server does:
/// registration, the customer's authorization (FAPI 1.0 Advanced hybrid flow), tokens,
/// introspection, revocation, and their policies.
pub async fn openid_configuration(State(state): State<AppState>) -> Json<Value> {
    let config = &state.config;
    let issuer = &config.server.public_url;
    let policy = &config.dcr.policy;
    let endpoint = |path: &str| format!("{issuer}{path}");
    // Every endpoint accepts mutual TLS on the same listener, so the aliases are the same URLs.
    let mtls_aliases = json!({
        "token_endpoint": endpoint(TOKEN_PATH),
        "registration_endpoint": endpoint(REGISTRATION_PATH),
        "introspection_endpoint": endpoint(INTROSPECTION_PATH),
        "revocation_endpoint": endpoint(REVOCATION_PATH),
    });
    Json(json!({
        "issuer": issuer,
        "authorization_endpoint": endpoint(AUTHORIZATION_PATH),
        "registration_endpoint": endpoint(REGISTRATION_PATH),
        "token_endpoint": endpoint(TOKEN_PATH),
        "jwks_uri": endpoint(JWKS_PATH),
        "introspection_endpoint": endpoint(INTROSPECTION_PATH),
        "revocation_endpoint": endpoint(REVOCATION_PATH),
        "mtls_endpoint_aliases": mtls_aliases,
        "grant_types_supported": ["authorization_code", "client_credentials", "refresh_token"],
        "response_types_supported": ["code id_token"],
        "response_modes_supported": ["fragment"],
        "request_parameter_supported": true,
        "request_uri_parameter_supported": false,
        "require_request_uri_registration": false,
        "claims_parameter_supported": true,
        "claims_supported": ["sub", "iss", "aud", "exp", "iat", "auth_time", "nonce", "acr", "openbanking_intent_id"],
        "acr_values_supported": Acr::ALL.iter().map(|a| a.as_str()).collect::<Vec<_>>(),
        "code_challenge_methods_supported": ["S256"],
        "token_endpoint_auth_methods_supported": policy.auth_methods,
        "token_endpoint_auth_signing_alg_values_supported": policy.allowed_algs,
        "introspection_endpoint_auth_methods_supported": policy.auth_methods,
        "revocation_endpoint_auth_methods_supported": policy.auth_methods,
        "request_object_signing_alg_values_supported": REQUEST_OBJECT_ALGS,
        "id_token_signing_alg_values_supported": config.token.id_token_signing_algs,
        "access_token_signing_alg_values_supported": [config.token.signing_alg],
        "scopes_supported": policy.scopes_for_roles(&policy.role_scopes.keys().cloned().collect::<Vec<_>>()),
        "subject_types_supported": ["public"],
        "tls_client_certificate_bound_access_tokens": true,
        "require_signed_request_object": true,
    }))
}
