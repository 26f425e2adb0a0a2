//! `POST /oauth2/token`, `/oauth2/introspect`, `/oauth2/revoke` and `GET /oauth2/jwks`.
//!
//! The form is decoded here into typed values (the client's credentials, the grant), so the
//! token service never sees form fields.

use std::collections::HashMap;

use axum::extract::State;
use axum::http::{header, HeaderMap, HeaderValue, StatusCode};
use axum::response::{IntoResponse, Response};
use axum::Json;
use base64::Engine;
use keyfort_core::error::{ErrorCode, OAuthError};

use super::extract::RequestCaller;
use super::{ApiError, AppState};
use crate::caller::{Caller, ResourceServer};
use crate::error::{Challenge, ServiceError};
use crate::token::{AuthenticatedClient, ClientCredentials, Grant, Introspector};

/// An `application/x-www-form-urlencoded` body in which every parameter appears once.
struct Form(HashMap<String, String>);

impl Form {
    fn take(&mut self, name: &str) -> Option<String> {
        self.0.remove(name)
    }
}

fn read_form(headers: &HeaderMap, body: &[u8]) -> Result<Form, ApiError> {
    let is_form = headers.get(header::CONTENT_TYPE).and_then(|v| v.to_str().ok()).is_some_and(|ct| {
        ct.split(';').next().unwrap_or_default().trim().eq_ignore_ascii_case("application/x-www-form-urlencoded")
    });
    if !is_form {
        return Err(OAuthError::invalid_request("send the parameters as application/x-www-form-urlencoded").into());
    }
    let mut form = HashMap::new();
    for (name, value) in url::form_urlencoded::parse(body) {
        if form.insert(name.to_string(), value.to_string()).is_some() {
            let name: String = name.chars().take(64).collect();
            return Err(OAuthError::invalid_request(format!(
                "parameter \"{name}\" is repeated; send each parameter once"
            ))
            .into());
        }
    }
    Ok(Form(form))
}

/// The token endpoint's reading of a form, as for a request with `authorization` as its
/// `Authorization` header (none when empty): the form, the grant, the client's credentials.
/// For the fuzzer (`keyfort::fuzzing`), which drives exactly this code with any bytes.
pub fn fuzz_token_form(authorization: &[u8], body: &[u8]) {
    let mut headers = HeaderMap::new();
    headers.insert(header::CONTENT_TYPE, HeaderValue::from_static("application/x-www-form-urlencoded"));
    if let Ok(value) = HeaderValue::from_bytes(authorization) {
        if !authorization.is_empty() {
            headers.insert(header::AUTHORIZATION, value);
        }
    }
    if let Ok(mut form) = read_form(&headers, body) {
        let _ = grant(&mut form);
        let _ = client_credentials(&mut form, &headers);
        let _ = form.take("token");
    }
}

/// The client authentication of a request: exactly one of a JWT assertion, HTTP Basic, a
/// posted secret, or a bare `client_id` (for `tls_client_auth`).
fn client_credentials(form: &mut Form, headers: &HeaderMap) -> Result<ClientCredentials, ServiceError> {
    let basic = basic_client_credentials(headers)?;
    let assertion = form.take("client_assertion");
    let secret = form.take("client_secret");
    let used = [assertion.is_some(), basic.is_some(), secret.is_some()];
    if used.iter().filter(|used| **used).count() > 1 {
        return Err(OAuthError::invalid_request(
            "more than one client authentication method was used; use exactly one",
        )
        .into());
    }
    let client_id = form.take("client_id");
    Ok(if let Some(assertion) = assertion {
        ClientCredentials::Assertion { assertion_type: form.take("client_assertion_type"), assertion, client_id }
    } else if let Some((client_id, secret)) = basic {
        ClientCredentials::SecretBasic { client_id, secret }
    } else if let Some(secret) = secret {
        let client_id = client_id
            .ok_or_else(|| ServiceError::refused(ErrorCode::InvalidClient, "client_secret needs client_id"))?;
        ClientCredentials::SecretPost { client_id, secret }
    } else if let Some(client_id) = client_id {
        ClientCredentials::ClientId(client_id)
    } else {
        ClientCredentials::None
    })
}

/// `Authorization: Basic` with a client_id and secret, each form-urlencoded (RFC 6749 §2.3.1).
fn basic_client_credentials(headers: &HeaderMap) -> Result<Option<(String, String)>, ServiceError> {
    let Some(value) = headers.get(header::AUTHORIZATION).and_then(|v| v.to_str().ok()) else { return Ok(None) };
    let Some(encoded) = value.strip_prefix("Basic ").or_else(|| value.strip_prefix("basic ")) else { return Ok(None) };
    let bad = || {
        ServiceError::Unauthenticated(
            OAuthError::new(
                ErrorCode::InvalidClient,
                "the Basic credentials are not base64 of \"client_id:client_secret\"",
            ),
            Challenge::Basic,
        )
    };
    let decoded = base64::engine::general_purpose::STANDARD.decode(encoded.trim()).map_err(|_| bad())?;
    let decoded = String::from_utf8(decoded).map_err(|_| bad())?;
    let (id, secret) = decoded.split_once(':').ok_or_else(bad)?;
    let unescape =
        |s: &str| percent_encoding::percent_decode_str(&s.replace('+', " ")).decode_utf8_lossy().into_owned();
    Ok(Some((unescape(id), unescape(secret))))
}

/// The grant the form asks for.
fn grant(form: &mut Form) -> Result<Grant, OAuthError> {
    let required = |form: &mut Form, name: &str| {
        form.take(name)
            .filter(|v| !v.is_empty())
            .ok_or_else(|| OAuthError::invalid_request(format!("{name} is required with this grant_type")))
    };
    match form.take("grant_type").as_deref() {
        Some("client_credentials") => Ok(Grant::ClientCredentials { scope: form.take("scope") }),
        Some("authorization_code") => Ok(Grant::AuthorizationCode {
            code: required(form, "code")?,
            redirect_uri: form.take("redirect_uri"),
            code_verifier: form.take("code_verifier"),
        }),
        Some("refresh_token") => {
            Ok(Grant::RefreshToken { refresh_token: required(form, "refresh_token")?, scope: form.take("scope") })
        }
        Some(other) => Err(OAuthError::new(
            ErrorCode::UnsupportedGrantType,
            format!(
                "grant_type \"{}\" is not supported here; use client_credentials, authorization_code or refresh_token",
                other.chars().take(64).collect::<String>()
            ),
        )),
        None => Err(OAuthError::invalid_request("grant_type is required")),
    }
}

/// Authenticates the client of a form request. RFC 6749 §5.2: a client that tried
/// `Authorization` and failed gets a matching challenge.
async fn authenticate(
    state: &AppState,
    caller: &Caller,
    form: &mut Form,
    headers: &HeaderMap,
) -> Result<AuthenticatedClient, ApiError> {
    let credentials = client_credentials(form, headers)?;
    let certificate = caller.certificate()?;
    let used_basic = matches!(credentials, ClientCredentials::SecretBasic { .. });
    state.tokens.authenticate(&credentials, certificate).await.map_err(|e| match e {
        ServiceError::Refused(error) if error.code == ErrorCode::InvalidClient && used_basic => {
            ServiceError::Unauthenticated(error, Challenge::Basic).into()
        }
        other => other.into(),
    })
}

fn no_store(body: impl serde::Serialize) -> Response {
    let mut response = Json(body).into_response();
    response.headers_mut().insert(header::CACHE_CONTROL, HeaderValue::from_static("no-store"));
    response.headers_mut().insert(header::PRAGMA, HeaderValue::from_static("no-cache"));
    response
}

pub async fn token(
    State(state): State<AppState>,
    RequestCaller(caller): RequestCaller,
    headers: HeaderMap,
    body: bytes::Bytes,
) -> Result<Response, ApiError> {
    let outcome = async {
        let mut form = read_form(&headers, &body)?;
        // The client is authenticated before its grant is judged, so an unauthenticated
        // caller learns nothing about what the server supports beyond discovery.
        let grant = grant(&mut form);
        let client = authenticate(&state, &caller, &mut form, &headers).await?;
        Ok::<_, ApiError>(state.tokens.issue(&client, grant?).await?)
    }
    .await;
    state.metrics.outcome("keyfort_token_requests_total", outcome.as_ref().err().map(|e| e.code().as_str()));
    Ok(no_store(outcome?))
}

/// The authenticated caller and the `token` parameter of an introspection or revocation.
async fn caller_and_token(
    state: &AppState,
    caller: &Caller,
    headers: &HeaderMap,
    body: &[u8],
) -> Result<(AuthenticatedClient, String), ApiError> {
    let mut form = read_form(headers, body)?;
    let client = authenticate(state, caller, &mut form, headers).await?;
    let token = form.take("token").ok_or_else(|| OAuthError::invalid_request("the token parameter is required"))?;
    Ok((client, token))
}

/// A resource server (recognised by its certificate) introspects any token without client
/// credentials; everyone else authenticates as a client and sees only its own tokens.
pub async fn introspect(
    State(state): State<AppState>,
    RequestCaller(caller): RequestCaller,
    headers: HeaderMap,
    body: bytes::Bytes,
) -> Result<Response, ApiError> {
    let resource_server = ResourceServer::recognise(&caller, &state.config.resource_server);
    if let Some(resource_server) = resource_server.filter(|_| !has_client_credentials(&headers, &body)) {
        let mut form = read_form(&headers, &body)?;
        let token = form.take("token").ok_or_else(|| OAuthError::invalid_request("the token parameter is required"))?;
        let answer = state.tokens.introspect(Introspector::ResourceServer(&resource_server), &token).await?;
        return Ok(no_store(answer));
    }
    let (client, token) = caller_and_token(&state, &caller, &headers, &body).await?;
    Ok(no_store(state.tokens.introspect(Introspector::Client(&client), &token).await?))
}

/// Whether a request carries any client authentication (which then must succeed).
fn has_client_credentials(headers: &HeaderMap, body: &[u8]) -> bool {
    headers.contains_key(header::AUTHORIZATION)
        || url::form_urlencoded::parse(body)
            .any(|(name, _)| matches!(name.as_ref(), "client_id" | "client_assertion" | "client_secret"))
}

pub async fn revoke(
    State(state): State<AppState>,
    RequestCaller(caller): RequestCaller,
    headers: HeaderMap,
    body: bytes::Bytes,
) -> Result<Response, ApiError> {
    let (client, token) = caller_and_token(&state, &caller, &headers, &body).await?;
    state.tokens.revoke(&client, &token).await?;
    Ok(StatusCode::OK.into_response())
}

pub async fn jwks(State(state): State<AppState>) -> Response {
    let mut response = Json(state.tokens.ring().jwks()).into_response();
    response.headers_mut().insert(header::CACHE_CONTROL, HeaderValue::from_static("public, max-age=300"));
    response
}
