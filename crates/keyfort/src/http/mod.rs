//! The HTTP edge: routes, thin handlers, and the TLS listener. Handlers read the request,
//! call a service, and turn its result into a response; errors go through [`ApiError`].

mod discovery;
mod error;
mod listener;
mod management;
mod openapi;
mod registration;
mod token;

use std::sync::Arc;

use axum::http::{Method, StatusCode};
use axum::routing::{get, post};
use axum::Router;
use keyfort_core::error::OAuthError;
use tower_http::request_id::{MakeRequestUuid, PropagateRequestIdLayer, SetRequestIdLayer};
use tower_http::trace::TraceLayer;

pub use error::{status_for, ApiError};
pub use listener::{serve, ConnectionInfo};

use crate::admin::AdminAuthenticator;
use crate::audit::Auditor;
use crate::config::Config;
use crate::registration::{RegistrationService, REGISTRATION_PATH};
use crate::token::{TokenService, INTROSPECTION_PATH, JWKS_PATH, REVOCATION_PATH, TOKEN_PATH};
use crate::transport::TransportTrust;
use keyfort_core::clock::Clock;

/// What every handler may use. Built once from the configuration; no globals.
#[derive(Clone)]
pub struct AppState {
    pub config: Arc<Config>,
    pub registration: Arc<RegistrationService>,
    /// Transport certificate checks; `None` when no client CA is configured.
    pub transport: Option<Arc<TransportTrust>>,
    pub admins: Arc<AdminAuthenticator>,
    pub tokens: Arc<TokenService>,
    pub audit: Arc<Auditor>,
    pub clock: Arc<dyn Clock>,
}

/// The application's routes, without a socket, so tests can also drive it in-process.
pub fn router(state: AppState) -> Router {
    let register = post(registration::register);
    let manage =
        get(management::get_registration).put(management::put_registration).delete(management::delete_registration);
    Router::new()
        .route(REGISTRATION_PATH, register.clone())
        .route(&format!("{REGISTRATION_PATH}/"), register.clone())
        .route("/register", register)
        .route(&format!("{REGISTRATION_PATH}/{{client_id}}"), manage.clone())
        .route("/register/{client_id}", manage)
        .route(TOKEN_PATH, post(token::token))
        .route(INTROSPECTION_PATH, post(token::introspect))
        .route(REVOCATION_PATH, post(token::revoke))
        .route(JWKS_PATH, get(token::jwks))
        .route("/.well-known/openid-configuration", get(discovery::openid_configuration))
        .route("/oauth2/token/.well-known/openid-configuration", get(discovery::openid_configuration))
        .route("/healthz", get(|| async { "ok" }))
        .route("/openapi.json", get(openapi::document))
        .fallback(not_found)
        .method_not_allowed_fallback(method_not_allowed)
        .with_state(state)
        .layer(TraceLayer::new_for_http().make_span_with(|request: &axum::http::Request<_>| {
            let request_id = request.headers().get("x-request-id").and_then(|v| v.to_str().ok()).unwrap_or("-");
            tracing::info_span!("request", id = %request_id, method = %request.method(), path = %request.uri().path())
        }))
        .layer(PropagateRequestIdLayer::x_request_id())
        .layer(SetRequestIdLayer::x_request_id(MakeRequestUuid))
}

async fn not_found() -> ApiError {
    ApiError::WithStatus(
        StatusCode::NOT_FOUND,
        OAuthError::invalid_request(
            "no such endpoint; see GET /.well-known/openid-configuration for this server's endpoints",
        ),
    )
}

async fn method_not_allowed(method: Method) -> ApiError {
    ApiError::WithStatus(
        StatusCode::METHOD_NOT_ALLOWED,
        OAuthError::invalid_request(format!("method {method} is not allowed on this endpoint")),
    )
}
