//! `POST /register` (and WSO2's path): the body is the registration request as JSON, or as
//! a compact JWS (`application/jose` or `application/jwt`, the OBIE form).

use axum::extract::State;
use axum::http::{header, HeaderMap, HeaderValue, StatusCode};
use axum::response::{IntoResponse, Response};
use keyfort_core::error::OAuthError;
use keyfort_core::registration::RequestForm;

use super::extract::{authenticate_administrator, RequestCaller};
use super::{ApiError, AppState};
use crate::audit::AuditAction;
use crate::caller::Caller;
use crate::registration::Submission;

pub async fn register(
    State(state): State<AppState>,
    RequestCaller(caller): RequestCaller,
    headers: HeaderMap,
    body: bytes::Bytes,
) -> Result<Response, ApiError> {
    let outcome = register_checked(&state, caller, &headers, &body).await;
    state.metrics.outcome("keyfort_registrations_total", outcome.as_ref().err().map(|e| e.code().as_str()));
    let registered = outcome?;
    let uri = state.registration.registration_client_uri(&registered.client.client_id);
    let body = registered.client.response_body(Some(&registered.credentials), &state.config.token_lifetimes, &uri);
    let mut response = (StatusCode::CREATED, axum::Json(body)).into_response();
    let headers = response.headers_mut();
    headers.insert(header::CACHE_CONTROL, HeaderValue::from_static("no-store"));
    headers.insert(header::PRAGMA, HeaderValue::from_static("no-cache"));
    if let Ok(location) = HeaderValue::from_str(&uri) {
        headers.insert(header::LOCATION, location);
    }
    Ok(response)
}

async fn register_checked(
    state: &AppState,
    caller: Caller,
    headers: &HeaderMap,
    body: &[u8],
) -> Result<crate::registration::Registered, ApiError> {
    // WSO2's `authentication_required`: the administrator is part of who the caller is.
    let caller = if state.config.dcr.authentication_required {
        match authenticate_administrator(state, caller.peer, headers).await {
            Ok(administrator) => caller.with_administrator(administrator),
            Err(error) => return Err(refused_at_edge(state, AuditAction::Register, &caller, None, error).await),
        }
    } else {
        caller
    };
    let form = match request_form(headers) {
        Ok(form) => form,
        Err(error) => return Err(refused_at_edge(state, AuditAction::Register, &caller, None, error).await),
    };
    Ok(state.registration.register(&caller, Submission { form, body }).await?)
}

/// Has the registration service audit a request the edge refused, and returns the refusal.
pub(super) async fn refused_at_edge(
    state: &AppState,
    action: AuditAction,
    caller: &Caller,
    client_id: Option<&str>,
    error: ApiError,
) -> ApiError {
    match &error {
        ApiError::Service(service) => state.registration.refused_at_edge(action, caller, client_id, service).await,
        edge => {
            if let Some(refusal) = edge.as_refusal() {
                state.registration.refused_at_edge(action, caller, client_id, &refusal).await;
            }
        }
    }
    error
}

/// The request's form, from `Content-Type`.
pub(super) fn request_form(headers: &HeaderMap) -> Result<RequestForm, ApiError> {
    let unsupported = |what: String| {
        ApiError::Edge(
            StatusCode::UNSUPPORTED_MEDIA_TYPE,
            OAuthError::invalid_request(format!(
                "{what}; send the request as application/json (a JSON object) or application/jose (a signed JWT)"
            )),
        )
    };
    let Some(value) = headers.get(header::CONTENT_TYPE) else {
        return Err(unsupported("the request has no Content-Type".into()));
    };
    let mime = value.to_str().unwrap_or_default().split(';').next().unwrap_or_default().trim().to_ascii_lowercase();
    match mime.as_str() {
        "application/json" => Ok(RequestForm::Json),
        "application/jose" | "application/jwt" => Ok(RequestForm::SignedJwt),
        other => {
            Err(unsupported(format!("Content-Type \"{}\" is not accepted", other.chars().take(64).collect::<String>())))
        }
    }
}
