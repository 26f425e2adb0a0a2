//! The HTTP edge: routes, thin handlers, and the TLS listener. Handlers establish who the
//! caller is ([`extract`]), read the request into typed values, call a service, and turn
//! its result into a response; every error goes through [`ApiError`], mapped in one place.

mod admin;
mod authorize;
mod consents;
mod customer_area;
mod discovery;
mod error;
mod extract;
mod limits;
mod listener;
mod management;
pub mod openapi;
mod page_support;
mod registration;
mod resource_server;
mod token;

use std::sync::Arc;

use axum::http::{Method, StatusCode};
use axum::routing::{get, post};
use axum::Router;
use keyfort_core::consent::ConsentType;
use keyfort_core::error::OAuthError;
use tower_http::request_id::{MakeRequestUuid, PropagateRequestIdLayer, SetRequestIdLayer};
use tower_http::trace::TraceLayer;

pub use error::{status_for, ApiError};
pub use limits::RequestLimits;
pub use listener::{connections_that_fit, raise_descriptor_limit, serve, serve_with, ConnectionInfo, ConnectionLimits};
pub use token::fuzz_token_form;

use crate::admin::AdminAuthenticator;
use crate::authorization::{AuthorizationService, AUTHORIZATION_PATH};
use crate::config::{AdminListen, Config};
use crate::consent::ConsentService;
use crate::customer_area::{CustomerAreaService, CUSTOMER_AREA_PATH};
use crate::health::Readiness;
use crate::metrics::Metrics;
use crate::operator::OperatorService;
use crate::pages::Pages;
use crate::registration::{RegistrationService, REGISTRATION_PATH};
use crate::resource_server::{ResourceServerService, VALIDATION_PATH};
use crate::token::{TokenService, INTROSPECTION_PATH, JWKS_PATH, REVOCATION_PATH, TOKEN_PATH};
use crate::transport::TransportTrust;
use keyfort_core::clock::Clock;

/// What every handler may use: the services and what the edge itself needs. Built once
/// from the configuration; no globals. Shared behind one `Arc`: axum hands every request
/// its own clone of the state, which is then one reference count, not one per service.
#[derive(Clone)]
pub struct AppState(Arc<Services>);

impl AppState {
    pub fn new(services: Services) -> Self {
        Self(Arc::new(services))
    }
}

impl std::ops::Deref for AppState {
    type Target = Services;

    fn deref(&self) -> &Services {
        &self.0
    }
}

/// The services behind [`AppState`]. The store is deliberately not here: handlers reach
/// data only through services, which audit what they change.
pub struct Services {
    pub config: Arc<Config>,
    pub registration: Arc<RegistrationService>,
    pub tokens: Arc<TokenService>,
    pub operator: Arc<OperatorService>,
    /// The intents API.
    pub consents: Arc<ConsentService>,
    /// The customer's authorization: the authorization endpoint, sign-in and decision.
    pub authorization: Arc<AuthorizationService>,
    /// What the bank's gateways ask about customers' tokens.
    pub resource_server: Arc<ResourceServerService>,
    /// The customer's own page: the TPPs they authorised.
    pub customer_area: Arc<CustomerAreaService>,
    /// The customer's pages, rendered from templates.
    pub pages: Arc<Pages>,
    pub admins: Arc<AdminAuthenticator>,
    pub readiness: Arc<Readiness>,
    /// Transport certificate checks; `None` when no client CA is configured.
    pub transport: Option<Arc<TransportTrust>>,
    pub metrics: Arc<Metrics>,
    pub clock: Arc<dyn Clock>,
}

/// The application's public routes, without a socket, so tests can also drive it
/// in-process. With `[admin] listen = "public"` they include the admin API; otherwise
/// `/admin/*` answers 404 here and [`admin_router`] serves it on its own listener.
pub fn router(state: AppState, limits: RequestLimits) -> Router {
    let routes = public_routes().route("/openapi.json", openapi::route(openapi::public_document(&state.config)));
    let routes = match state.config.admin.listen {
        AdminListen::Public => routes.merge(admin_routes()),
        AdminListen::Separate(_) => routes,
    };
    with_edge_layers(routes, state, limits)
}

/// The admin API with the edge's limits, logs and metrics, for the separate admin listener
/// (`[admin] listen`) reached at `url`; `/healthz` too, so that it can be probed, and its
/// own `/openapi.json`.
pub fn admin_router(state: AppState, limits: RequestLimits, url: &str) -> Router {
    let routes = admin_routes()
        .route("/healthz", get(|| async { "ok" }))
        .route("/openapi.json", openapi::route(openapi::admin_document(url)));
    with_edge_layers(routes, state, limits)
}

fn public_routes() -> Router<AppState> {
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
        .route(ConsentType::AccountAccess.path(), post(consents::create_account_access))
        .route(
            &format!("{}/{{ConsentId}}", ConsentType::AccountAccess.path()),
            get(consents::get_account_access).delete(consents::delete_account_access),
        )
        .route(ConsentType::DomesticPayment.path(), post(consents::create_domestic_payment))
        .route(&format!("{}/{{ConsentId}}", ConsentType::DomesticPayment.path()), get(consents::get_domestic_payment))
        .route(ConsentType::FundsConfirmation.path(), post(consents::create_funds_confirmation))
        .route(
            &format!("{}/{{ConsentId}}", ConsentType::FundsConfirmation.path()),
            get(consents::get_funds_confirmation).delete(consents::delete_funds_confirmation),
        )
        .route(AUTHORIZATION_PATH, get(authorize::authorize_query).post(authorize::authorize_form))
        .route("/oauth2/authorize/login", post(authorize::login))
        .route(VALIDATION_PATH, post(resource_server::validate))
        .route(CUSTOMER_AREA_PATH, get(customer_area::show))
        .route("/customer/sign-in", post(customer_area::sign_in))
        .route("/customer/withdraw", post(customer_area::withdraw))
        .route("/customer/sign-out", post(customer_area::sign_out))
        .route("/oauth2/authorize/consent", get(authorize::consent_page).post(authorize::decide))
        .route("/assets/keyfort.css", get(authorize::stylesheet))
        .route("/assets/logo", get(authorize::logo))
        .route("/healthz", get(|| async { "ok" }))
        .route("/readyz", get(readyz))
}

/// The operator's API (`/admin/*`), mounted on the public listener or on its own.
fn admin_routes() -> Router<AppState> {
    Router::new()
        .route("/admin/clients", get(admin::list))
        .route("/admin/clients/{client_id}", get(admin::show).delete(admin::delete))
        .route("/admin/clients/{client_id}/suspend", post(admin::suspend))
        .route("/admin/clients/{client_id}/reactivate", post(admin::reactivate))
        .route("/admin/consents", get(admin::list_consents))
        .route("/admin/consents/{consent_id}", get(admin::show_consent))
        .route("/admin/consents/{consent_id}/revoke", post(admin::revoke_consent))
        .route("/admin/audit", get(admin::audit))
}

/// What every listener's routes share: JSON 404 and 405, the request limits, metrics, the
/// access log, request ids and the request span.
fn with_edge_layers(routes: Router<AppState>, state: AppState, limits: RequestLimits) -> Router {
    routes
        .fallback(not_found)
        .method_not_allowed_fallback(method_not_allowed)
        // The limits middleware reads every body, bounded; the extractors' own limit would
        // only refuse what it already accepted.
        .layer(axum::extract::DefaultBodyLimit::disable())
        .layer(axum::middleware::from_fn(move |request, next| limits::enforce(limits, request, next)))
        .layer(axum::middleware::from_fn_with_state(state.clone(), record_http_metrics))
        .layer(axum::middleware::from_fn_with_state(state.clone(), access_log))
        .with_state(state)
        // The span every line of a request carries. TraceLayer's own lines are off: the
        // access log says how each request ended, and a 5xx's cause is logged where it
        // arose (its ERROR "response failed" per failing readiness probe said nothing more).
        .layer(
            TraceLayer::new_for_http()
                .make_span_with(|request: &axum::http::Request<_>| {
                    let request_id = request.headers().get("x-request-id").and_then(|v| v.to_str().ok()).unwrap_or("-");
                    // A caller's W3C trace context continues its trace (see crate::otlp); only
                    // a well-formed value is taken, so the header cannot put junk in the log.
                    let traceparent = request
                        .headers()
                        .get("traceparent")
                        .and_then(|v| v.to_str().ok())
                        .filter(|v| v.len() == 55 && v.bytes().all(|b| b.is_ascii_hexdigit() || b == b'-'));
                    let (method, path) = (request.method(), request.uri().path());
                    let empty = tracing::field::Empty;
                    match traceparent {
                        Some(traceparent) => tracing::info_span!(
                            "request", id = %request_id, method = %method, path = %path, traceparent = %traceparent,
                            route = empty, status = empty, error = empty
                        ),
                        None => tracing::info_span!(
                            "request", id = %request_id, method = %method, path = %path,
                            route = empty, status = empty, error = empty
                        ),
                    }
                })
                .on_request(())
                .on_response(())
                .on_failure(()),
        )
        .layer(PropagateRequestIdLayer::x_request_id())
        .layer(SetRequestIdLayer::x_request_id(MakeRequestUuid))
}

async fn not_found() -> ApiError {
    ApiError::Edge(
        StatusCode::NOT_FOUND,
        OAuthError::invalid_request(
            "no such endpoint; see GET /.well-known/openid-configuration for this server's endpoints",
        ),
    )
}

async fn method_not_allowed(method: Method) -> ApiError {
    ApiError::Edge(
        StatusCode::METHOD_NOT_ALLOWED,
        OAuthError::invalid_request(format!("method {method} is not allowed on this endpoint")),
    )
}

/// The route template a request matched (`/register/{client_id}`), never its concrete
/// path, so that no client_id or consent id of a URL reaches a metric label or a log line.
fn route_template(request: &axum::extract::Request) -> String {
    request
        .extensions()
        .get::<axum::extract::MatchedPath>()
        .map_or_else(|| "unmatched".to_owned(), |p| p.as_str().to_owned())
}

/// Counts requests and their latency per route template (never per concrete path, so a
/// client_id cannot blow up the label set).
async fn record_http_metrics(
    axum::extract::State(state): axum::extract::State<AppState>,
    request: axum::extract::Request,
    next: axum::middleware::Next,
) -> axum::response::Response {
    let route = route_template(&request);
    let method = request.method().to_string();
    let started = std::time::Instant::now();
    let response = next.run(request).await;
    let labels = [("route", route.as_str()), ("method", method.as_str())];
    state.metrics.observe("keyfort_http_request_duration_seconds", &labels, started.elapsed().as_secs_f64());
    let status = response.status().as_u16().to_string();
    state.metrics.inc("keyfort_http_requests_total", &[labels[0], labels[1], ("status", status.as_str())]);
    response
}

/// Runs the request with its [`crate::telemetry::RequestSubject`] (which the services fill
/// in and refusals are logged and audited with), then writes its access log line: one INFO
/// line per request (`[log] access_log`), inside the request's span, so it carries the
/// request id in JSON and text alike. The route is the template, never the path, so no
/// client_id or consent id of the URL reaches it unvetted.
async fn access_log(
    axum::extract::State(state): axum::extract::State<AppState>,
    request: axum::extract::Request,
    next: axum::middleware::Next,
) -> axum::response::Response {
    let route = route_template(&request);
    let method = request.method().clone();
    let request_id = request.headers().get("x-request-id").and_then(|v| v.to_str().ok()).unwrap_or("-").to_owned();
    let started = std::time::Instant::now();
    let (response, subject) = crate::telemetry::with_request_subject(async {
        let response = next.run(request).await;
        (response, crate::telemetry::subject())
    })
    .await;
    let span = tracing::Span::current();
    span.record("route", route.as_str());
    span.record("status", response.status().as_u16());
    if state.config.log.access_log {
        tracing::info!(
            target: "keyfort::access",
            method = %method,
            route = %route,
            status = response.status().as_u16(),
            duration_ms = started.elapsed().as_secs_f64() * 1000.0,
            client_id = subject.client_id.as_deref().unwrap_or("-"),
            request_id = %request_id,
            "request"
        );
    }
    response
}

/// Ready when the database answers and the directory keys can be had.
async fn readyz(axum::extract::State(state): axum::extract::State<AppState>) -> axum::response::Response {
    use axum::response::IntoResponse;
    let problems = state.readiness.problems().await;
    if problems.is_empty() {
        (StatusCode::OK, axum::Json(serde_json::json!({"status": "ready"}))).into_response()
    } else {
        (StatusCode::SERVICE_UNAVAILABLE, axum::Json(serde_json::json!({"status": "not ready", "problems": problems})))
            .into_response()
    }
}
