//! The operator's API, behind administrator authentication: list and search registrations,
//! show one with its audit trail, suspend, reactivate and delete. `keyfort admin clients`
//! is a command-line client of these endpoints.

use axum::extract::{Path, Query, State};
use axum::http::{HeaderMap, StatusCode};
use axum::response::{IntoResponse, Response};
use axum::Json;
use keyfort_core::error::OAuthError;
use keyfort_core::registration::{ClientStatus, RegisteredClient};
use serde::Deserialize;
use serde_json::{json, Value};

use super::{ApiError, AppState};
use crate::storage::ClientFilter;

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
pub struct ListQuery {
    org_id: Option<String>,
    software_id: Option<String>,
    status: Option<String>,
    registered_after: Option<i64>,
    registered_before: Option<i64>,
    limit: Option<i64>,
}

fn summary(client: &RegisteredClient) -> Value {
    json!({
        "client_id": client.client_id,
        "client_name": client.metadata.client_name,
        "software_id": client.software_id,
        "org_id": client.org_id,
        "status": client.status.as_str(),
        "client_id_issued_at": client.client_id_issued_at,
        "token_endpoint_auth_method": client.metadata.token_endpoint_auth_method,
    })
}

fn internal(e: crate::storage::StoreError) -> ApiError {
    ApiError::Internal(e.into())
}

fn not_found(client_id: &str) -> ApiError {
    ApiError::WithStatus(StatusCode::NOT_FOUND, OAuthError::invalid_request(format!("no client \"{client_id}\"")))
}

pub async fn list(
    State(state): State<AppState>,
    headers: HeaderMap,
    query: Result<Query<ListQuery>, axum::extract::rejection::QueryRejection>,
) -> Result<Json<Value>, ApiError> {
    state.admins.authenticate(&headers).await?;
    let Query(q) = query.map_err(|e| OAuthError::invalid_request(format!("bad query: {}", e.body_text())))?;
    let status = match q.status.as_deref() {
        None => None,
        Some(s) => Some(ClientStatus::parse(s).ok_or_else(|| {
            OAuthError::invalid_request(format!("status \"{s}\" is not one of active, suspended, deleted"))
        })?),
    };
    let limit = q.limit.unwrap_or(100);
    if !(1..=500).contains(&limit) {
        return Err(OAuthError::invalid_request("limit must be between 1 and 500").into());
    }
    let filter = ClientFilter {
        org_id: q.org_id,
        software_id: q.software_id,
        status,
        registered_after: q.registered_after,
        registered_before: q.registered_before,
        limit,
    };
    let clients = state.store.list_clients(&filter).await.map_err(internal)?;
    Ok(Json(json!({ "clients": clients.iter().map(summary).collect::<Vec<_>>() })))
}

pub async fn show(
    State(state): State<AppState>,
    headers: HeaderMap,
    Path(client_id): Path<String>,
) -> Result<Json<Value>, ApiError> {
    state.admins.authenticate(&headers).await?;
    let client = state.store.find_client(&client_id).await.map_err(internal)?.ok_or_else(|| not_found(&client_id))?;
    let uri = state.registration.registration_client_uri(&client.client_id);
    let mut body = client.response_body(None, &state.config.token_lifetimes, &uri);
    body["status"] = json!(client.status.as_str());
    let audit = state.store.audit_events(Some(&client_id), 200).await.map_err(internal)?;
    Ok(Json(json!({ "client": body, "audit": audit })))
}

async fn change_status(
    state: &AppState,
    headers: &HeaderMap,
    client_id: &str,
    from: ClientStatus,
    to: ClientStatus,
) -> Result<Json<Value>, ApiError> {
    let admin = state.admins.authenticate(headers).await?;
    let client = state.store.find_client(client_id).await.map_err(internal)?.ok_or_else(|| not_found(client_id))?;
    if client.status != from {
        return Err(OAuthError::invalid_request(format!(
            "client \"{client_id}\" is {}, not {}",
            client.status.as_str(),
            from.as_str()
        ))
        .into());
    }
    state.store.set_client_status(client_id, from, to, state.clock.now()).await.map_err(internal)?;
    tracing::info!(client_id = %client_id, admin = %admin, status = to.as_str(), "client status changed by an administrator");
    let event = crate::storage::AuditEvent {
        at: state.clock.now(),
        action: if to == ClientStatus::Suspended { "suspend" } else { "reactivate" }.into(),
        outcome: "success".into(),
        client_id: Some(client_id.to_owned()),
        software_id: client.software_id.clone(),
        org_id: client.org_id.clone(),
        detail: Some(format!("by administrator {admin}")),
        ..Default::default()
    };
    if let Err(e) = state.store.record_audit(&event).await {
        tracing::error!(error = %e, "writing the audit trail failed");
    }
    let mut updated = client;
    updated.status = to;
    Ok(Json(json!({ "client": summary(&updated) })))
}

pub async fn suspend(
    State(state): State<AppState>,
    headers: HeaderMap,
    Path(client_id): Path<String>,
) -> Result<Json<Value>, ApiError> {
    change_status(&state, &headers, &client_id, ClientStatus::Active, ClientStatus::Suspended).await
}

pub async fn reactivate(
    State(state): State<AppState>,
    headers: HeaderMap,
    Path(client_id): Path<String>,
) -> Result<Json<Value>, ApiError> {
    change_status(&state, &headers, &client_id, ClientStatus::Suspended, ClientStatus::Active).await
}

pub async fn delete(
    State(state): State<AppState>,
    headers: HeaderMap,
    Path(client_id): Path<String>,
) -> Result<Response, ApiError> {
    let admin = state.admins.authenticate(&headers).await?;
    if !state.store.delete_client(&client_id, state.clock.now()).await.map_err(internal)? {
        return Err(not_found(&client_id));
    }
    let event = crate::storage::AuditEvent {
        at: state.clock.now(),
        action: "delete".into(),
        outcome: "success".into(),
        client_id: Some(client_id.clone()),
        detail: Some(format!("by administrator {admin}")),
        ..Default::default()
    };
    if let Err(e) = state.store.record_audit(&event).await {
        tracing::error!(error = %e, "writing the audit trail failed");
    }
    Ok(StatusCode::NO_CONTENT.into_response())
}
