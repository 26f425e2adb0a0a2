//! The operator's actions on registrations, behind administrator authentication: list and
//! search, show one with its audit trail, suspend, reactivate and delete. Every change
//! commits with its audit line, which names the administrator; refusals are audited too.

use std::sync::Arc;

use keyfort_core::clock::Clock;
use keyfort_core::error::OAuthError;
use keyfort_core::registration::{is_client_id, not_a_client_id, ClientStatus, RegisteredClient};

use crate::audit::{AuditAction, Auditor};
use crate::caller::Caller;
use crate::error::ServiceError;
use crate::storage::{AuditEvent, AuditFilter, ClientFilter, Store};

/// How much of a client's audit trail `show` returns.
const SHOWN_AUDIT_EVENTS: i64 = 200;

pub struct OperatorService {
    store: Arc<dyn Store>,
    auditor: Arc<Auditor>,
    clock: Arc<dyn Clock>,
}

/// 409: the client is not in the status the action needs.
fn wrong_state(client_id: &str, current: ClientStatus, expected: ClientStatus) -> ServiceError {
    ServiceError::Conflict(OAuthError::invalid_request(format!(
        "client \"{client_id}\" is {}, not {}",
        current.as_str(),
        expected.as_str()
    )))
}

fn not_found(client_id: &str) -> ServiceError {
    ServiceError::NotFound(OAuthError::invalid_request(format!("no client \"{client_id}\"")))
}

/// A path segment that cannot be a client_id names nothing: refused before any lookup
/// or audit line.
fn check_shape(client_id: &str) -> Result<(), ServiceError> {
    if is_client_id(client_id) {
        Ok(())
    } else {
        Err(ServiceError::NotFound(OAuthError::invalid_request(not_a_client_id(client_id))))
    }
}

/// The caller must be a signed-in administrator; the edge makes sure of it, and the service
/// does not rely on that.
fn administrator(caller: &Caller) -> Result<&crate::admin::Administrator, ServiceError> {
    caller
        .administrator
        .as_ref()
        .ok_or_else(|| crate::admin::unauthorized("administrator credentials are required: send Authorization: Basic"))
}

impl OperatorService {
    pub fn new(store: Arc<dyn Store>, auditor: Arc<Auditor>, clock: Arc<dyn Clock>) -> Self {
        Self { store, auditor, clock }
    }

    /// Clients matching `filter`, newest first.
    pub async fn list(&self, caller: &Caller, filter: &ClientFilter) -> Result<Vec<RegisteredClient>, ServiceError> {
        administrator(caller)?;
        Ok(self.store.list_clients(filter).await?)
    }

    /// One client, whatever its status, with its latest audit events.
    pub async fn show(
        &self,
        caller: &Caller,
        client_id: &str,
    ) -> Result<(RegisteredClient, Vec<AuditEvent>), ServiceError> {
        administrator(caller)?;
        check_shape(client_id)?;
        let client = self.store.find_client(client_id).await?.ok_or_else(|| not_found(client_id))?;
        let audit = self.store.audit_events(Some(client_id), SHOWN_AUDIT_EVENTS).await?;
        Ok((client, audit))
    }

    /// Audit events matching `filter`, oldest first, with their ids (the cursor of the next
    /// page). Reading the trail is not itself audited: it changes nothing, and an export
    /// would otherwise grow the trail it reads.
    pub async fn audit(&self, caller: &Caller, filter: &AuditFilter) -> Result<Vec<(i64, AuditEvent)>, ServiceError> {
        administrator(caller)?;
        Ok(self.store.search_audit_events(filter).await?)
    }

    /// Stops an active client: no tokens, no self-management, until reactivated.
    #[tracing::instrument(skip_all, fields(client_id = %client_id))]
    pub async fn suspend(&self, caller: &Caller, client_id: &str) -> Result<RegisteredClient, ServiceError> {
        self.change_status(caller, client_id, ClientStatus::Active, ClientStatus::Suspended, AuditAction::Suspend).await
    }

    #[tracing::instrument(skip_all, fields(client_id = %client_id))]
    pub async fn reactivate(&self, caller: &Caller, client_id: &str) -> Result<RegisteredClient, ServiceError> {
        self.change_status(caller, client_id, ClientStatus::Suspended, ClientStatus::Active, AuditAction::Reactivate)
            .await
    }

    /// Deletes an active or suspended registration.
    #[tracing::instrument(skip_all, fields(client_id = %client_id))]
    pub async fn delete(&self, caller: &Caller, client_id: &str) -> Result<(), ServiceError> {
        administrator(caller)?;
        check_shape(client_id)?;
        let outcome = self.delete_checked(caller, client_id).await;
        if let Err(error) = &outcome {
            self.auditor.refusal(AuditAction::Delete, caller, Some(client_id), error).await;
        }
        outcome
    }

    async fn delete_checked(&self, caller: &Caller, client_id: &str) -> Result<(), ServiceError> {
        let admin = administrator(caller)?;
        let client = self.store.find_client(client_id).await?.ok_or_else(|| not_found(client_id))?;
        let audit = self.auditor.success(AuditAction::Delete, caller, &client);
        if !self.store.delete_client(client_id, self.clock.now(), &audit).await? {
            return Err(not_found(client_id));
        }
        tracing::info!(admin = %admin, "registration deleted by an administrator");
        Ok(())
    }

    async fn change_status(
        &self,
        caller: &Caller,
        client_id: &str,
        from: ClientStatus,
        to: ClientStatus,
        action: AuditAction,
    ) -> Result<RegisteredClient, ServiceError> {
        administrator(caller)?;
        check_shape(client_id)?;
        let outcome = self.change_status_checked(caller, client_id, from, to, action).await;
        if let Err(error) = &outcome {
            self.auditor.refusal(action, caller, Some(client_id), error).await;
        }
        outcome
    }

    async fn change_status_checked(
        &self,
        caller: &Caller,
        client_id: &str,
        from: ClientStatus,
        to: ClientStatus,
        action: AuditAction,
    ) -> Result<RegisteredClient, ServiceError> {
        let admin = administrator(caller)?;
        let mut client = self.store.find_client(client_id).await?.ok_or_else(|| not_found(client_id))?;
        if client.status != from {
            return Err(wrong_state(client_id, client.status, from));
        }
        let audit = self.auditor.success(action, caller, &client);
        // The status is compared again inside the transaction: another administrator may
        // have changed it since it was read.
        if !self.store.set_client_status(client_id, from, to, self.clock.now(), &audit).await? {
            let current = self.store.find_client(client_id).await?.map(|c| c.status).unwrap_or(ClientStatus::Deleted);
            return Err(wrong_state(client_id, current, from));
        }
        tracing::info!(admin = %admin, status = to.as_str(), "client status changed by an administrator");
        client.status = to;
        Ok(client)
    }
}
