//! The HTTP edge: routes, thin handlers, and the TLS listener. Handlers read the request,
//! call a service, and turn its result into a response; errors go through [`ApiError`].

mod discovery;
mod error;
mod listener;
mod registration;

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
use crate::config::Config;
use crate::registration::{RegistrationService, REGISTRATION_PATH};
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
    pub clock: Arc<dyn Clock>,
}

/// The application's routes, without a socket, so tests can also drive it in-process.
pub fn router(state: AppState) -> Router {
    let register = post(registration::register);
    Router::new()
        .route(REGISTRATION_PATH, register.clone())
        .route(&format!("{REGISTRATION_PATH}/"), register.clone())
        .route("/register", register)
        .route("/.well-known/openid-configuration", get(discovery::openid_configuration))
        .route("/healthz", get(|| async { "ok" }))
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
        OAuthError::invalid_request(format!(
            "no such endpoint; registration is POST {REGISTRATION_PATH} and discovery is GET /.well-known/openid-configuration"
        )),
    )
}

async fn method_not_allowed(method: Method) -> ApiError {
    ApiError::WithStatus(
        StatusCode::METHOD_NOT_ALLOWED,
        OAuthError::invalid_request(format!("method {method} is not allowed on this endpoint")),
    )
}
