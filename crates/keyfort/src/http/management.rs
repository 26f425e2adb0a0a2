//! `GET`, `PUT` and `DELETE` on `/register/{client_id}` (RFC 7592, OBIE DCR).

use axum::body::Body;
use axum::extract::{Path, State};
use axum::http::{header, HeaderMap, HeaderValue, StatusCode};
use axum::response::{IntoResponse, Response};
use axum::Extension;
use keyfort_core::registration::RegisteredClient;
use keyfort_core::transport::CertificateIdentity;

use super::registration::{request_form, transport_certificate};
use super::{ApiError, AppState, ConnectionInfo};
use crate::audit::Attempt;

fn bearer(headers: &HeaderMap) -> Option<&str> {
    let value = headers.get(header::AUTHORIZATION)?.to_str().ok()?;
    let (scheme, token) = value.split_once(' ')?;
    scheme.eq_ignore_ascii_case("bearer").then_some(token.trim())
}

fn registration_response(state: &AppState, client: &RegisteredClient, status: StatusCode) -> Response {
    let uri = state.registration.registration_client_uri(&client.client_id);
    let body = client.response_body(None, &state.config.token_lifetimes, &uri);
    let mut response = (status, axum::Json(body)).into_response();
    response.headers_mut().insert(header::CACHE_CONTROL, HeaderValue::from_static("no-store"));
    response
}

/// The caller's certificate (if valid) and, if authorised, the client to manage.
async fn authorise(
    state: &AppState,
    connection: &ConnectionInfo,
    headers: &HeaderMap,
    client_id: &str,
) -> (Option<CertificateIdentity>, Result<RegisteredClient, ApiError>) {
    match transport_certificate(state, connection, headers) {
        Err(e) => (None, Err(e)),
        Ok(certificate) => {
            let client = state
                .registration
                .authorize_management(&state.tokens, client_id, bearer(headers), certificate.as_ref())
                .await;
            (certificate, client)
        }
    }
}

/// Records the attempt in the audit trail and returns its response.
async fn audited(
    state: &AppState,
    connection: &ConnectionInfo,
    action: &'static str,
    client_id: &str,
    certificate: Option<&CertificateIdentity>,
    outcome: Result<(Response, RegisteredClient), ApiError>,
) -> Result<Response, ApiError> {
    let attempt = Attempt { action, client_id: Some(client_id), certificate, peer: connection.peer };
    let client = outcome.as_ref().ok().map(|(_, c)| c.clone());
    state.audit.record(attempt, outcome.as_ref().err(), client.as_ref()).await;
    outcome.map(|(response, _)| response)
}

pub async fn get_registration(
    State(state): State<AppState>,
    Extension(connection): Extension<ConnectionInfo>,
    Path(client_id): Path<String>,
    headers: HeaderMap,
) -> Result<Response, ApiError> {
    let (certificate, client) = authorise(&state, &connection, &headers, &client_id).await;
    let outcome = client.map(|client| (registration_response(&state, &client, StatusCode::OK), client));
    audited(&state, &connection, "read", &client_id, certificate.as_ref(), outcome).await
}

pub async fn put_registration(
    State(state): State<AppState>,
    Extension(connection): Extension<ConnectionInfo>,
    Path(client_id): Path<String>,
    headers: HeaderMap,
    body: Body,
) -> Result<Response, ApiError> {
    let (certificate, client) = authorise(&state, &connection, &headers, &client_id).await;
    let outcome = match client {
        Err(e) => Err(e),
        Ok(client) => update(&state, &headers, body, &client, certificate.clone()).await,
    };
    audited(&state, &connection, "update", &client_id, certificate.as_ref(), outcome).await
}

async fn update(
    state: &AppState,
    headers: &HeaderMap,
    body: Body,
    client: &RegisteredClient,
    certificate: Option<CertificateIdentity>,
) -> Result<(Response, RegisteredClient), ApiError> {
    let form = request_form(headers)?;
    let limit = state.config.server.max_body_bytes;
    let bytes = super::read_body(body, limit).await?;
    let updated = state.registration.update(client, form, &bytes, certificate).await?;
    Ok((registration_response(state, &updated, StatusCode::OK), updated))
}

pub async fn delete_registration(
    State(state): State<AppState>,
    Extension(connection): Extension<ConnectionInfo>,
    Path(client_id): Path<String>,
    headers: HeaderMap,
) -> Result<Response, ApiError> {
    let (certificate, client) = authorise(&state, &connection, &headers, &client_id).await;
    let outcome = match client {
        Err(e) => Err(e),
        Ok(client) => state
            .registration
            .delete(&client.client_id)
            .await
            .map(|()| (StatusCode::NO_CONTENT.into_response(), client)),
    };
    audited(&state, &connection, "delete", &client_id, certificate.as_ref(), outcome).await
}
