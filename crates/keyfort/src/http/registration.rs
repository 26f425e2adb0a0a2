use axum::body::Body;
use axum::extract::State;
use axum::http::{header, HeaderMap, HeaderValue, StatusCode};
use axum::response::{IntoResponse, Response};
use keyfort_core::error::OAuthError;
use keyfort_core::registration::RequestForm;

use super::{ApiError, AppState, ConnectionInfo};
use crate::audit::Attempt;
use crate::registration::Registered;
use axum::Extension;
use keyfort_core::error::ErrorCode;
use keyfort_core::transport::CertificateIdentity;

/// `POST /register`: the body is the registration request as JSON, or as a compact JWS
/// (`application/jose` or `application/jwt`, the OBIE form).
pub async fn register(
    State(state): State<AppState>,
    Extension(connection): Extension<ConnectionInfo>,
    headers: HeaderMap,
    body: Body,
) -> Result<Response, ApiError> {
    let (certificate, outcome) = match transport_certificate(&state, &connection, &headers) {
        Err(e) => (None, Err(e)),
        Ok(certificate) => {
            let attempt = Attempt {
                action: "register",
                client_id: None,
                certificate: certificate.as_ref(),
                peer: connection.peer,
            };
            let audit = state.audit.event(attempt, None, None);
            let outcome = register_checked(&state, &headers, body, certificate.clone(), audit).await;
            (certificate, outcome)
        }
    };
    state.metrics.outcome("keyfort_registrations_total", outcome.as_ref().err().map(|e| e.code().as_str()));
    // A success was audited in the registration's own transaction; a refusal is audited here.
    if let Err(error) = &outcome {
        let attempt =
            Attempt { action: "register", client_id: None, certificate: certificate.as_ref(), peer: connection.peer };
        state.audit.record(attempt, Some(error), None).await;
    }
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
    headers: &HeaderMap,
    body: Body,
    certificate: Option<CertificateIdentity>,
    audit: crate::storage::AuditEvent,
) -> Result<Registered, ApiError> {
    if state.config.dcr.authentication_required {
        state.admins.authenticate(headers).await?;
    }
    let form = request_form(headers)?;
    let limit = state.config.server.max_body_bytes;
    let bytes = super::read_body(body, limit).await?;
    state.registration.register(form, &bytes, certificate, audit).await
}

pub(super) fn request_form(headers: &HeaderMap) -> Result<RequestForm, ApiError> {
    let unsupported = |what: String| {
        ApiError::WithStatus(
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

/// The caller's validated transport certificate, if it presented one. A certificate that is
/// presented but fails the checks is refused here, whether or not the endpoint needs one.
pub fn transport_certificate(
    state: &AppState,
    connection: &ConnectionInfo,
    headers: &HeaderMap,
) -> Result<Option<CertificateIdentity>, ApiError> {
    let Some(trust) = &state.transport else { return Ok(None) };
    trust
        .identify(connection.peer, connection.client_chain.as_deref().map(Vec::as_slice), headers, state.clock.now())
        .map_err(|rejected| {
            tracing::info!(peer = %connection.peer, reason = %rejected, "transport certificate refused");
            ApiError::OAuth(OAuthError::new(ErrorCode::InvalidClient, rejected.0))
        })
}
