use axum::extract::State;
use axum::Json;
use serde_json::{json, Value};

use super::AppState;
use crate::registration::REGISTRATION_PATH;

/// OpenID Provider metadata for what exists so far: the issuer and the registration endpoint
/// with the registration policy a TPP needs to know before building its request.
pub async fn openid_configuration(State(state): State<AppState>) -> Json<Value> {
    let config = &state.config;
    let issuer = &config.server.public_url;
    let policy = &config.dcr.policy;
    Json(json!({
        "issuer": issuer,
        "registration_endpoint": format!("{issuer}{REGISTRATION_PATH}"),
        "token_endpoint_auth_methods_supported": policy.auth_methods,
        "token_endpoint_auth_signing_alg_values_supported": policy.allowed_algs,
        "request_object_signing_alg_values_supported": policy.allowed_algs,
        "id_token_signing_alg_values_supported": policy.allowed_algs,
        "scopes_supported": policy.scopes_for_roles(&policy.role_scopes.keys().cloned().collect::<Vec<_>>()),
        "tls_client_certificate_bound_access_tokens": policy.fapi,
        "require_signed_request_object": policy.fapi,
    }))
}
