//! The audit trail of registrations: who (client, software, organisation), from which
//! certificate and address, did what, when, and how it ended.
//!
//! Services build the lines; a line that records a change is committed in the same
//! transaction as the change (the store takes it with the change), and a refusal is written
//! on its own where the service refuses.

use std::sync::{Arc, OnceLock};

use tokio::sync::{mpsc, OwnedSemaphorePermit};

use keyfort_core::clock::Clock;
use keyfort_core::registration::RegisteredClient;

use crate::caller::Caller;
use crate::error::ServiceError;
use crate::storage::{AuditEvent, Store};

/// What was attempted.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum AuditAction {
    Register,
    Read,
    Update,
    Delete,
    Suspend,
    Reactivate,
    /// A TPP creates a consent (or repeats a creation with the same idempotency key).
    ConsentCreate,
    ConsentRead,
    /// A TPP revokes (DELETEs) a consent, or its customer or an administrator withdraws
    /// the TPP's access (the detail says who).
    ConsentRevoke,
    /// A resource server reports the payment of a payment consent made.
    ConsentConsume,
    /// A customer authorises a consent.
    ConsentAuthorise,
    /// A customer rejects (denies or cancels) a consent.
    ConsentReject,
}

impl AuditAction {
    pub fn as_str(self) -> &'static str {
        match self {
            AuditAction::Register => "register",
            AuditAction::Read => "read",
            AuditAction::Update => "update",
            AuditAction::Delete => "delete",
            AuditAction::Suspend => "suspend",
            AuditAction::Reactivate => "reactivate",
            AuditAction::ConsentCreate => "consent_create",
            AuditAction::ConsentRead => "consent_read",
            AuditAction::ConsentRevoke => "consent_revoke",
            AuditAction::ConsentConsume => "consent_consume",
            AuditAction::ConsentAuthorise => "consent_authorise",
            AuditAction::ConsentReject => "consent_reject",
        }
    }
}

/// Writes the deferred lines as they come, those queued meanwhile together (one database
/// write, multi-row inserts, instead of one write with its own savepoint per line: what
/// bounded the rate of registration reads once their lines were deferred). Each line's
/// slot is given back once its write returned, so [`Auditor::flush`] waits for the write.
async fn write_deferred_lines(store: Arc<dyn Store>, mut queued: mpsc::UnboundedReceiver<DeferredLine>) {
    let mut batch: Vec<DeferredLine> = Vec::with_capacity(LINES_PER_WRITE);
    while queued.recv_many(&mut batch, LINES_PER_WRITE).await > 0 {
        let (events, slots): (Vec<AuditEvent>, Vec<OwnedSemaphorePermit>) = batch.drain(..).unzip();
        if let Err(e) = store.record_audit_lines(&events).await {
            tracing::error!(error = %e, lines = events.len(), "writing the audit trail failed");
        }
        drop(slots);
    }
}

/// The longest error description kept in an audit line.
const MAX_DETAIL_CHARS: usize = 1000;

/// How many audit lines of reads may be on their way to the database at once, unanswered:
/// what a crash may lose of them (a clean stop writes them first, see [`Auditor::flush`]).
/// A reader beyond that waits for a slot, so a burst cannot grow memory.
pub const DEFERRED_LINES: u32 = 1024;

/// The most deferred lines written in one database write.
const LINES_PER_WRITE: usize = 512;

/// A deferred line, with the slot it holds until it is written.
type DeferredLine = (AuditEvent, OwnedSemaphorePermit);

pub struct Auditor {
    store: Arc<dyn Store>,
    clock: Arc<dyn Clock>,
    /// One permit per deferred line in flight.
    deferred: Arc<tokio::sync::Semaphore>,
    /// To the task that writes the deferred lines, started with the first of them.
    deferred_lines: OnceLock<mpsc::UnboundedSender<DeferredLine>>,
}

impl Auditor {
    pub fn new(store: Arc<dyn Store>, clock: Arc<dyn Clock>) -> Self {
        Self {
            store,
            clock,
            deferred: Arc::new(tokio::sync::Semaphore::new(DEFERRED_LINES as usize)),
            deferred_lines: OnceLock::new(),
        }
    }

    /// The line of a successful `action` on `client`, for the store to commit with the change.
    pub fn success(&self, action: AuditAction, caller: &Caller, client: &RegisteredClient) -> AuditEvent {
        let mut event = self.line(action, caller, Some(&client.client_id));
        event.software_id = client.software_id.clone();
        event.org_id = client.org_id.clone();
        event
    }

    /// Writes the line of a refused `action` (on `client_id`, when one was named). A failure
    /// to write is logged, not returned: the caller's answer is already decided.
    ///
    /// Refusals are the lines an anonymous caller can cause: on SQLite they go through the
    /// group-commit writer, so a burst of them shares one fsync per batch, and each field is
    /// capped (`storage::audit_caps`); malformed client_ids are refused before any lookup and
    /// write no line at all.
    pub async fn refusal(&self, action: AuditAction, caller: &Caller, client_id: Option<&str>, error: &ServiceError) {
        let mut event = self.line(action, caller, client_id);
        // What the service had established when it refused (a verified software statement,
        // a known client), so refusals can be found by organisation and software.
        let known = crate::telemetry::subject();
        event.client_id = event.client_id.or(known.client_id);
        event.software_id = known.software_id;
        event.org_id = known.org_id;
        event.outcome = error.audit_code().to_owned();
        let description = error.audit_detail();
        event.detail = Some(match &caller.administrator {
            Some(admin) => format!("by administrator {admin}: {description}"),
            None => description,
        });
        event.detail = event.detail.map(|d| d.chars().take(MAX_DETAIL_CHARS).collect());
        self.write(&event).await;
    }

    /// The line of a successful consent `action` on `consent_id` of the client `client_id`
    /// (with its software and organisation when `client` is known), for the store to commit
    /// with the change. The customer is the caller's, unless `customer_id` names one.
    pub fn consent_success(
        &self,
        action: AuditAction,
        caller: &Caller,
        client_id: &str,
        client: Option<&RegisteredClient>,
        consent_id: &str,
        customer_id: Option<&str>,
    ) -> AuditEvent {
        let mut event = self.line(action, caller, Some(client_id));
        event.software_id = client.and_then(|c| c.software_id.clone());
        event.org_id = client.and_then(|c| c.org_id.clone());
        event.consent_id = Some(consent_id.to_owned());
        if let Some(customer) = customer_id {
            event.customer_id = Some(customer.to_owned());
        }
        event
    }

    /// Writes the line of a refused consent `action`, naming what is known of the client,
    /// consent and customer. A failure to write is logged, not returned.
    pub async fn consent_refusal(
        &self,
        action: AuditAction,
        caller: &Caller,
        client_id: Option<&str>,
        consent_id: Option<&str>,
        customer_id: Option<&str>,
        error: &ServiceError,
    ) {
        let mut event = self.line(action, caller, client_id);
        let known = crate::telemetry::subject();
        event.software_id = known.software_id;
        event.org_id = known.org_id;
        event.outcome = error.audit_code().to_owned();
        event.detail = Some(error.audit_detail().chars().take(MAX_DETAIL_CHARS).collect());
        event.consent_id = consent_id.map(|c| c.chars().take(128).collect());
        if let Some(customer) = customer_id {
            event.customer_id = Some(customer.to_owned());
        }
        self.write(&event).await;
    }

    /// Writes the line of a read after the answer rather than before it: a read changes
    /// nothing, so its line is the one write whose loss in a crash harms no state, and
    /// waiting for its commit (an fsync) was what bounded the rate of registration reads.
    /// The line still goes through the store's group commit; at most [`DEFERRED_LINES`] are
    /// in flight, and [`Auditor::flush`] waits for them at shutdown.
    pub async fn write_after_answer(&self, event: AuditEvent) {
        let Ok(slot) = self.deferred.clone().acquire_owned().await else {
            // The semaphore is never closed; should it be, write the line the slow way.
            return self.write(&event).await;
        };
        let lines = self.deferred_lines.get_or_init(|| {
            let (lines, queued) = mpsc::unbounded_channel();
            tokio::spawn(write_deferred_lines(self.store.clone(), queued));
            lines
        });
        if let Err(mpsc::error::SendError((event, _slot))) = lines.send((event, slot)) {
            // The writing task is gone (only while the runtime shuts down).
            self.write(&event).await;
        }
    }

    /// Waits until every line handed to [`Auditor::write_after_answer`] is written.
    pub async fn flush(&self) {
        if let Ok(all) = self.deferred.acquire_many(DEFERRED_LINES).await {
            drop(all);
        }
    }

    /// Writes a line that records no change (a read), on its own.
    pub async fn write(&self, event: &AuditEvent) {
        if let Err(e) = self.store.record_audit(event).await {
            tracing::error!(error = %e, action = %event.action, "writing the audit trail failed");
        }
    }

    fn line(&self, action: AuditAction, caller: &Caller, client_id: Option<&str>) -> AuditEvent {
        let certificate = caller.audited_certificate();
        AuditEvent {
            at: self.clock.now(),
            action: action.as_str().to_owned(),
            outcome: "success".to_owned(),
            client_id: client_id.map(str::to_owned),
            software_id: None,
            org_id: None,
            cert_thumbprint: certificate.map(|c| c.thumbprint_s256.clone()),
            cert_subject: certificate.map(|c| c.subject.to_string()),
            peer: Some(caller.peer.to_string()),
            detail: caller.administrator.as_ref().map(|admin| format!("by administrator {admin}")),
            consent_id: None,
            customer_id: caller.customer.clone(),
        }
    }
}
