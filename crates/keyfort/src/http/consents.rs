//! The Open Banking intents API (Read/Write API v3.1.11): `POST`, `GET` and `DELETE` of
//! account-access, domestic-payment and funds-confirmation consents.
//!
//! The handlers read the token, headers and body into plain values, call the consent
//! service, and shape its answer. Every answer, error or not, carries
//! `x-fapi-interaction-id`: the one the TPP sent, or a new RFC 4122 UUID.

use axum::extract::{Path, State};
use axum::http::{header, HeaderMap, HeaderName, HeaderValue, StatusCode};
use axum::response::{IntoResponse, Response};
use keyfort_core::consent::ConsentType;

use super::extract::{bearer, RequestCaller};
use super::{ApiError, AppState};
use crate::consent::{CreateConsent, HeaderText};
use crate::error::ServiceError;

const INTERACTION_ID: HeaderName = HeaderName::from_static("x-fapi-interaction-id");
/// Longest `x-fapi-interaction-id` played back; a UUID has 36 characters.
const MAX_INTERACTION_ID_BYTES: usize = 64;

fn header_text<'a>(headers: &'a HeaderMap, name: &str) -> HeaderText<'a> {
    match headers.get(name) {
        None => HeaderText::Absent,
        Some(value) => value.to_str().map(HeaderText::Text).unwrap_or(HeaderText::Unreadable),
    }
}

/// A random (version 4) UUID, for interactions the TPP did not name.
fn new_interaction_id() -> String {
    let mut bytes = [0u8; 16];
    aws_lc_rs::rand::fill(&mut bytes).expect("the system random number generator failed");
    bytes[6] = (bytes[6] & 0x0f) | 0x40;
    bytes[8] = (bytes[8] & 0x3f) | 0x80;
    let hex = keyfort_core::secret::hex(&bytes);
    format!("{}-{}-{}-{}-{}", &hex[..8], &hex[8..12], &hex[12..16], &hex[16..20], &hex[20..])
}

/// Adds `x-fapi-interaction-id` to an answer, whatever it is.
fn answer(headers: &HeaderMap, state: &AppState, kind: ConsentType, result: Result<Response, ApiError>) -> Response {
    let error = match &result {
        Err(ApiError::Service(e)) => Some(e.audit_code()),
        Err(other) => Some(other.code().as_str()),
        Ok(_) => None,
    };
    let outcome = if error.is_some() { "refused" } else { "success" };
    state.metrics.inc(
        "keyfort_consent_requests_total",
        &[("type", kind.as_str()), ("outcome", outcome), ("error", error.unwrap_or(""))],
    );
    let mut response = result.unwrap_or_else(IntoResponse::into_response);
    let played_back = headers
        .get(&INTERACTION_ID)
        .filter(|v| v.len() <= MAX_INTERACTION_ID_BYTES && v.to_str().is_ok_and(|s| !s.trim().is_empty()))
        .cloned();
    let id =
        played_back.unwrap_or_else(|| HeaderValue::from_str(&new_interaction_id()).expect("a UUID is a header value"));
    response.headers_mut().insert(INTERACTION_ID, id);
    response
}

fn consent_body(status: StatusCode, body: serde_json::Value) -> Response {
    let mut response = (status, axum::Json(body)).into_response();
    // Consents describe a customer's money: no cache keeps them.
    response.headers_mut().insert(header::CACHE_CONTROL, HeaderValue::from_static("no-store"));
    response
}

async fn create(
    state: AppState,
    caller: crate::caller::Caller,
    headers: HeaderMap,
    body: bytes::Bytes,
    kind: ConsentType,
) -> Response {
    let request = CreateConsent {
        kind,
        bearer: bearer(&headers),
        content_type: header_text(&headers, header::CONTENT_TYPE.as_str()),
        idempotency_key: header_text(&headers, "x-idempotency-key"),
        signature: header_text(&headers, "x-jws-signature"),
        body: &body,
    };
    let result = state
        .consents
        .create(&caller, request)
        .await
        .map(|created| consent_body(StatusCode::CREATED, state.consents.response_body(&created.consent)))
        .map_err(ApiError::from);
    answer(&headers, &state, kind, result)
}

async fn read(
    state: AppState,
    caller: crate::caller::Caller,
    headers: HeaderMap,
    id: String,
    kind: ConsentType,
) -> Response {
    let result: Result<Response, ServiceError> = state
        .consents
        .read(&caller, kind, bearer(&headers), &id)
        .await
        .map(|consent| consent_body(StatusCode::OK, state.consents.response_body(&consent)));
    answer(&headers, &state, kind, result.map_err(ApiError::from))
}

async fn revoke(
    state: AppState,
    caller: crate::caller::Caller,
    headers: HeaderMap,
    id: String,
    kind: ConsentType,
) -> Response {
    let result = state.consents.revoke(&caller, kind, bearer(&headers), &id).await;
    answer(&headers, &state, kind, result.map(|()| StatusCode::NO_CONTENT.into_response()).map_err(ApiError::from))
}

pub async fn create_account_access(
    State(state): State<AppState>,
    RequestCaller(caller): RequestCaller,
    headers: HeaderMap,
    body: bytes::Bytes,
) -> Response {
    create(state, caller, headers, body, ConsentType::AccountAccess).await
}

pub async fn create_domestic_payment(
    State(state): State<AppState>,
    RequestCaller(caller): RequestCaller,
    headers: HeaderMap,
    body: bytes::Bytes,
) -> Response {
    create(state, caller, headers, body, ConsentType::DomesticPayment).await
}

pub async fn create_funds_confirmation(
    State(state): State<AppState>,
    RequestCaller(caller): RequestCaller,
    headers: HeaderMap,
    body: bytes::Bytes,
) -> Response {
    create(state, caller, headers, body, ConsentType::FundsConfirmation).await
}

pub async fn get_account_access(
    State(state): State<AppState>,
    RequestCaller(caller): RequestCaller,
    Path(id): Path<String>,
    headers: HeaderMap,
) -> Response {
    read(state, caller, headers, id, ConsentType::AccountAccess).await
}

pub async fn get_domestic_payment(
    State(state): State<AppState>,
    RequestCaller(caller): RequestCaller,
    Path(id): Path<String>,
    headers: HeaderMap,
) -> Response {
    read(state, caller, headers, id, ConsentType::DomesticPayment).await
}

pub async fn get_funds_confirmation(
    State(state): State<AppState>,
    RequestCaller(caller): RequestCaller,
    Path(id): Path<String>,
    headers: HeaderMap,
) -> Response {
    read(state, caller, headers, id, ConsentType::FundsConfirmation).await
}

pub async fn delete_account_access(
    State(state): State<AppState>,
    RequestCaller(caller): RequestCaller,
    Path(id): Path<String>,
    headers: HeaderMap,
) -> Response {
    revoke(state, caller, headers, id, ConsentType::AccountAccess).await
}

pub async fn delete_funds_confirmation(
    State(state): State<AppState>,
    RequestCaller(caller): RequestCaller,
    Path(id): Path<String>,
    headers: HeaderMap,
) -> Response {
    revoke(state, caller, headers, id, ConsentType::FundsConfirmation).await
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn interaction_ids_are_version_4_uuids() {
        let id = new_interaction_id();
        assert_eq!(id.len(), 36);
        assert_eq!(&id[14..15], "4");
        assert!(matches!(&id[19..20], "8" | "9" | "a" | "b"), "{id}");
        assert_ne!(id, new_interaction_id());
    }
}
