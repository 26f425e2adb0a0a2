//! `GET`, `PUT` and `DELETE` on `/register/{client_id}` (RFC 7592, OBIE DCR).

use axum::extract::{Path, State};
use axum::http::{header, HeaderMap, HeaderValue, StatusCode};
use axum::response::{IntoResponse, Response};
use keyfort_core::registration::RegisteredClient;

use super::extract::{bearer, RequestCaller};
use super::registration::{refused_at_edge, request_form};
use super::{ApiError, AppState};
use crate::audit::AuditAction;
use crate::registration::Submission;

fn registration_response(state: &AppState, client: &RegisteredClient) -> Response {
    let uri = state.registration.registration_client_uri(&client.client_id);
    let body = client.response_body(None, &state.config.token_lifetimes, &uri);
    let mut response = (StatusCode::OK, axum::Json(body)).into_response();
    response.headers_mut().insert(header::CACHE_CONTROL, HeaderValue::from_static("no-store"));
    response
}

pub async fn get_registration(
    State(state): State<AppState>,
    RequestCaller(caller): RequestCaller,
    Path(client_id): Path<String>,
    headers: HeaderMap,
) -> Result<Response, ApiError> {
    let client = state.registration.read(&caller, &client_id, bearer(&headers)).await?;
    Ok(registration_response(&state, &client))
}

pub async fn put_registration(
    State(state): State<AppState>,
    RequestCaller(caller): RequestCaller,
    Path(client_id): Path<String>,
    headers: HeaderMap,
    body: bytes::Bytes,
) -> Result<Response, ApiError> {
    let managed = state.registration.authorize(AuditAction::Update, &caller, &client_id, bearer(&headers)).await?;
    let form = match request_form(&headers) {
        Ok(form) => form,
        Err(error) => return Err(refused_at_edge(&state, AuditAction::Update, &caller, Some(&client_id), error).await),
    };
    let updated = state.registration.update(&caller, managed, Submission { form, body: &body }).await?;
    Ok(registration_response(&state, &updated))
}

pub async fn delete_registration(
    State(state): State<AppState>,
    RequestCaller(caller): RequestCaller,
    Path(client_id): Path<String>,
    headers: HeaderMap,
) -> Result<Response, ApiError> {
    state.registration.delete(&caller, &client_id, bearer(&headers)).await?;
    Ok(StatusCode::NO_CONTENT.into_response())
}
