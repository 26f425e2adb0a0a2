//! `POST /oauth2/token`, `/oauth2/introspect`, `/oauth2/revoke` and `GET /oauth2/jwks`.

use std::collections::HashMap;

use axum::body::Body;
use axum::extract::State;
use axum::http::{header, HeaderMap, HeaderValue, StatusCode};
use axum::response::{IntoResponse, Response};
use axum::{Extension, Json};
use base64::Engine;
use keyfort_core::error::{ErrorCode, OAuthError};
use keyfort_core::registration::RegisteredClient;
use keyfort_core::transport::CertificateIdentity;
use serde_json::Value;

use super::registration::transport_certificate;
use super::{ApiError, AppState, ConnectionInfo};
use crate::token::ClientCredentials;

/// A parsed `application/x-www-form-urlencoded` request with its client's credentials.
struct FormRequest {
    form: HashMap<String, String>,
    basic: Option<(String, String)>,
    certificate: Option<CertificateIdentity>,
}

async fn read_form(
    state: &AppState,
    connection: &ConnectionInfo,
    headers: &HeaderMap,
    body: Body,
) -> Result<FormRequest, ApiError> {
    let is_form = headers.get(header::CONTENT_TYPE).and_then(|v| v.to_str().ok()).is_some_and(|ct| {
        ct.split(';').next().unwrap_or_default().trim().eq_ignore_ascii_case("application/x-www-form-urlencoded")
    });
    if !is_form {
        return Err(OAuthError::invalid_request("send the parameters as application/x-www-form-urlencoded").into());
    }
    let limit = state.config.server.max_body_bytes;
    let bytes = super::read_body(body, limit).await?;
    let mut form = HashMap::new();
    for (name, value) in url::form_urlencoded::parse(&bytes) {
        if form.insert(name.to_string(), value.to_string()).is_some() {
            return Err(OAuthError::invalid_request(format!(
                "parameter \"{name}\" is repeated; send each parameter once"
            ))
            .into());
        }
    }
    let basic = basic_client_credentials(headers)?;
    let certificate = transport_certificate(state, connection, headers)?;
    Ok(FormRequest { form, basic, certificate })
}

/// `Authorization: Basic` with a client_id and secret, each form-urlencoded (RFC 6749 §2.3.1).
fn basic_client_credentials(headers: &HeaderMap) -> Result<Option<(String, String)>, ApiError> {
    let Some(value) = headers.get(header::AUTHORIZATION).and_then(|v| v.to_str().ok()) else { return Ok(None) };
    let Some(encoded) = value.strip_prefix("Basic ").or_else(|| value.strip_prefix("basic ")) else { return Ok(None) };
    let bad = || {
        ApiError::Challenge(
            OAuthError::new(
                ErrorCode::InvalidClient,
                "the Basic credentials are not base64 of \"client_id:client_secret\"",
            ),
            "Basic realm=\"keyfort\"".into(),
        )
    };
    let decoded = base64::engine::general_purpose::STANDARD.decode(encoded.trim()).map_err(|_| bad())?;
    let decoded = String::from_utf8(decoded).map_err(|_| bad())?;
    let (id, secret) = decoded.split_once(':').ok_or_else(bad)?;
    let unescape =
        |s: &str| percent_encoding::percent_decode_str(&s.replace('+', " ")).decode_utf8_lossy().into_owned();
    Ok(Some((unescape(id), unescape(secret))))
}

async fn authenticated(state: &AppState, request: &FormRequest) -> Result<RegisteredClient, ApiError> {
    let credentials = ClientCredentials {
        form: &request.form,
        basic: request.basic.clone(),
        certificate: request.certificate.as_ref(),
    };
    state.tokens.authenticate(&credentials).await.map_err(|e| match e {
        // RFC 6749 §5.2: a client that tried Authorization gets a matching challenge.
        ApiError::OAuth(err) if err.code == ErrorCode::InvalidClient && request.basic.is_some() => {
            ApiError::Challenge(err, "Basic realm=\"keyfort\"".into())
        }
        other => other,
    })
}

fn no_store(body: Value) -> Response {
    let mut response = Json(body).into_response();
    response.headers_mut().insert(header::CACHE_CONTROL, HeaderValue::from_static("no-store"));
    response.headers_mut().insert(header::PRAGMA, HeaderValue::from_static("no-cache"));
    response
}

pub async fn token(
    State(state): State<AppState>,
    Extension(connection): Extension<ConnectionInfo>,
    headers: HeaderMap,
    body: Body,
) -> Result<Response, ApiError> {
    let outcome = async {
        let request = read_form(&state, &connection, &headers, body).await?;
        let client = authenticated(&state, &request).await?;
        state.tokens.client_credentials(&client, &request.form, request.certificate.as_ref()).await
    }
    .await;
    state.metrics.outcome("keyfort_token_requests_total", outcome.as_ref().err().map(|e| e.code().as_str()));
    Ok(no_store(outcome?))
}

/// The authenticated caller and the `token` parameter of an introspection or revocation.
async fn caller_and_token(
    state: &AppState,
    connection: &ConnectionInfo,
    headers: &HeaderMap,
    body: Body,
) -> Result<(RegisteredClient, String), ApiError> {
    let mut request = read_form(state, connection, headers, body).await?;
    let client = authenticated(state, &request).await?;
    let token =
        request.form.remove("token").ok_or_else(|| OAuthError::invalid_request("the token parameter is required"))?;
    Ok((client, token))
}

pub async fn introspect(
    State(state): State<AppState>,
    Extension(connection): Extension<ConnectionInfo>,
    headers: HeaderMap,
    body: Body,
) -> Result<Response, ApiError> {
    let (client, token) = caller_and_token(&state, &connection, &headers, body).await?;
    Ok(no_store(state.tokens.introspect(&client, &token).await))
}

pub async fn revoke(
    State(state): State<AppState>,
    Extension(connection): Extension<ConnectionInfo>,
    headers: HeaderMap,
    body: Body,
) -> Result<Response, ApiError> {
    let (client, token) = caller_and_token(&state, &connection, &headers, body).await?;
    state.tokens.revoke(&client, &token).await?;
    Ok(StatusCode::OK.into_response())
}

pub async fn jwks(State(state): State<AppState>) -> Response {
    let mut response = Json(state.tokens.ring().jwks()).into_response();
    response.headers_mut().insert(header::CACHE_CONTROL, HeaderValue::from_static("public, max-age=300"));
    response
}
