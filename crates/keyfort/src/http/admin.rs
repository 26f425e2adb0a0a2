//! The operator's API, behind administrator authentication: list and search registrations,
//! show one with its audit trail, suspend, reactivate and delete; list and search consents,
//! show one with its audit trail, revoke one. `keyfort admin clients` and `keyfort admin
//! consents` are command-line clients of these endpoints.

use axum::extract::{Path, Query, State};
use axum::http::StatusCode;
use axum::response::{IntoResponse, Response};
use axum::Json;
use keyfort_core::error::OAuthError;
use keyfort_core::registration::{ClientStatus, RegisteredClient};
use serde::Deserialize;
use serde_json::{json, Value};

use super::extract::AdminCaller;
use super::{ApiError, AppState};
use keyfort_core::consent::{Consent, ConsentStatus, ConsentType};

use crate::consent::Withdrawer;
use crate::storage::{AuditEvent, AuditFilter, ClientFilter, ConsentFilter};

/// The most clients one list answer holds.
const MAX_LIST_LIMIT: i64 = 500;
const DEFAULT_LIST_LIMIT: i64 = 100;

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

impl ListQuery {
    fn into_filter(self) -> Result<ClientFilter, OAuthError> {
        let status = match self.status.as_deref() {
            None => None,
            Some(s) => Some(ClientStatus::parse(s).ok_or_else(|| {
                OAuthError::invalid_request(format!(
                    "status \"{}\" is not one of active, suspended, deleted",
                    s.chars().take(64).collect::<String>()
                ))
            })?),
        };
        let limit = self.limit.unwrap_or(DEFAULT_LIST_LIMIT);
        if !(1..=MAX_LIST_LIMIT).contains(&limit) {
            return Err(OAuthError::invalid_request(format!("limit must be between 1 and {MAX_LIST_LIMIT}")));
        }
        Ok(ClientFilter {
            org_id: self.org_id,
            software_id: self.software_id,
            status,
            registered_after: self.registered_after,
            registered_before: self.registered_before,
            limit,
        })
    }
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

pub async fn list(
    State(state): State<AppState>,
    AdminCaller(caller): AdminCaller,
    query: Result<Query<ListQuery>, axum::extract::rejection::QueryRejection>,
) -> Result<Json<Value>, ApiError> {
    let Query(query) = query.map_err(|e| OAuthError::invalid_request(format!("bad query: {}", e.body_text())))?;
    let clients = state.operator.list(&caller, &query.into_filter()?).await?;
    Ok(Json(json!({ "clients": clients.iter().map(summary).collect::<Vec<_>>() })))
}

pub async fn show(
    State(state): State<AppState>,
    AdminCaller(caller): AdminCaller,
    Path(client_id): Path<String>,
) -> Result<Json<Value>, ApiError> {
    let (client, audit) = state.operator.show(&caller, &client_id).await?;
    let uri = state.registration.registration_client_uri(&client.client_id);
    let mut body = client.response_body(None, &state.config.token_lifetimes, &uri);
    body["status"] = json!(client.status.as_str());
    Ok(Json(json!({ "client": body, "audit": audit })))
}

pub async fn suspend(
    State(state): State<AppState>,
    AdminCaller(caller): AdminCaller,
    Path(client_id): Path<String>,
) -> Result<Json<Value>, ApiError> {
    let client = state.operator.suspend(&caller, &client_id).await?;
    Ok(Json(json!({ "client": summary(&client) })))
}

pub async fn reactivate(
    State(state): State<AppState>,
    AdminCaller(caller): AdminCaller,
    Path(client_id): Path<String>,
) -> Result<Json<Value>, ApiError> {
    let client = state.operator.reactivate(&caller, &client_id).await?;
    Ok(Json(json!({ "client": summary(&client) })))
}

pub async fn delete(
    State(state): State<AppState>,
    AdminCaller(caller): AdminCaller,
    Path(client_id): Path<String>,
) -> Result<Response, ApiError> {
    state.operator.delete(&caller, &client_id).await?;
    Ok(StatusCode::NO_CONTENT.into_response())
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
pub struct ConsentListQuery {
    client_id: Option<String>,
    customer: Option<String>,
    status: Option<String>,
    #[serde(rename = "type")]
    kind: Option<String>,
    created_after: Option<i64>,
    created_before: Option<i64>,
    limit: Option<i64>,
}

impl ConsentListQuery {
    fn into_filter(self) -> Result<ConsentFilter, OAuthError> {
        let shown = |s: &str| s.chars().take(64).collect::<String>();
        let status = match self.status.as_deref() {
            None => None,
            Some(s) => Some(ConsentStatus::parse(s).ok_or_else(|| {
                OAuthError::invalid_request(format!(
                    "status \"{}\" is not one of AwaitingAuthorisation, Authorised, Rejected, Revoked, Consumed",
                    shown(s)
                ))
            })?),
        };
        let kind = match self.kind.as_deref() {
            None => None,
            Some(s) => Some(ConsentType::parse(s).ok_or_else(|| {
                OAuthError::invalid_request(format!(
                    "type \"{}\" is not one of account-access, domestic-payment, funds-confirmation",
                    shown(s)
                ))
            })?),
        };
        let limit = self.limit.unwrap_or(DEFAULT_LIST_LIMIT);
        if !(1..=MAX_LIST_LIMIT).contains(&limit) {
            return Err(OAuthError::invalid_request(format!("limit must be between 1 and {MAX_LIST_LIMIT}")));
        }
        Ok(ConsentFilter {
            client_id: self.client_id,
            customer_id: self.customer,
            status,
            kind,
            created_after: self.created_after,
            created_before: self.created_before,
            with_live_grant: false,
            limit,
        })
    }
}

/// The most audit events one answer holds; an export pages through the rest.
const MAX_AUDIT_LIMIT: i64 = 1000;

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
pub struct AuditQuery {
    /// RFC 3339 (or a date): events at or after it.
    since: Option<String>,
    /// RFC 3339 (or a date): events before it.
    until: Option<String>,
    client_id: Option<String>,
    org_id: Option<String>,
    software_id: Option<String>,
    action: Option<String>,
    /// `success`, `refused`, or an error code.
    outcome: Option<String>,
    /// The `next` of the previous answer.
    after: Option<i64>,
    limit: Option<i64>,
}

impl AuditQuery {
    fn into_filter(self) -> Result<AuditFilter, OAuthError> {
        let time = |name: &str, text: Option<String>| {
            text.map(|t| {
                keyfort_core::clock::parse_rfc3339(&t)
                    .map_err(|why| OAuthError::invalid_request(format!("{name}: {why}")))
            })
            .transpose()
        };
        let limit = self.limit.unwrap_or(DEFAULT_LIST_LIMIT);
        if !(1..=MAX_AUDIT_LIMIT).contains(&limit) {
            return Err(OAuthError::invalid_request(format!("limit must be between 1 and {MAX_AUDIT_LIMIT}")));
        }
        Ok(AuditFilter {
            since: time("since", self.since)?,
            until: time("until", self.until)?,
            client_id: self.client_id,
            org_id: self.org_id,
            software_id: self.software_id,
            action: self.action,
            outcome: self.outcome,
            after_id: self.after,
            limit,
        })
    }
}

fn consent_summary(consent: &Consent) -> Value {
    json!({
        "consent_id": consent.id,
        "type": consent.kind.as_str(),
        "status": consent.status.as_str(),
        "client_id": consent.client_id,
        "customer_id": consent.customer_id,
        "created_at": consent.created_at,
        "status_updated_at": consent.status_updated_at,
        "expires_at": consent.expires_at,
        "permissions": consent.permissions().iter().map(|p| p.as_str()).collect::<Vec<_>>(),
        "account_ids": consent.account_ids,
    })
}

pub async fn list_consents(
    State(state): State<AppState>,
    AdminCaller(caller): AdminCaller,
    query: Result<Query<ConsentListQuery>, axum::extract::rejection::QueryRejection>,
) -> Result<Json<Value>, ApiError> {
    let Query(query) = query.map_err(|e| OAuthError::invalid_request(format!("bad query: {}", e.body_text())))?;
    let consents = state.consents.list(&caller, &query.into_filter()?).await?;
    Ok(Json(json!({ "consents": consents.iter().map(consent_summary).collect::<Vec<_>>() })))
}

/// One consent: the summary, the body the TPP sees, and its audit trail.
pub async fn show_consent(
    State(state): State<AppState>,
    AdminCaller(caller): AdminCaller,
    Path(consent_id): Path<String>,
) -> Result<Json<Value>, ApiError> {
    let (consent, audit) = state.consents.show(&caller, &consent_id).await?;
    let mut body = consent_summary(&consent);
    body["body"] = state.consents.response_body(&consent);
    Ok(Json(json!({ "consent": body, "audit": audit })))
}

pub async fn revoke_consent(
    State(state): State<AppState>,
    AdminCaller(caller): AdminCaller,
    Path(consent_id): Path<String>,
) -> Result<Json<Value>, ApiError> {
    let withdrawn = state.consents.withdraw(&caller, &consent_id, Withdrawer::Administrator).await?;
    Ok(Json(json!({
        "consent": consent_summary(&withdrawn.consent),
        "grants_revoked": withdrawn.grants_revoked,
    })))
}

/// One audit event as the API shows it: its id, and its time in RFC 3339.
pub fn audit_json(id: i64, event: &AuditEvent) -> Value {
    let mut body = serde_json::to_value(event).unwrap_or_default();
    body["id"] = json!(id);
    body["at"] = json!(keyfort_core::clock::format_rfc3339(event.at));
    body
}

/// `GET /admin/audit`: the audit trail, filtered, oldest first, a page at a time (`next`
/// is the `after` of the next page, `null` on the last).
pub async fn audit(
    State(state): State<AppState>,
    AdminCaller(caller): AdminCaller,
    query: Result<Query<AuditQuery>, axum::extract::rejection::QueryRejection>,
) -> Result<Json<Value>, ApiError> {
    let Query(query) = query.map_err(|e| OAuthError::invalid_request(format!("bad query: {}", e.body_text())))?;
    let filter = query.into_filter()?;
    let events = state.operator.audit(&caller, &filter).await?;
    let next = if events.len() as i64 == filter.limit { events.last().map(|(id, _)| *id) } else { None };
    Ok(Json(json!({
        "events": events.iter().map(|(id, e)| audit_json(*id, e)).collect::<Vec<_>>(),
        "next": next,
    })))
}
