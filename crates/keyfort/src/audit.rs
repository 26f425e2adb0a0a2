//! The audit trail of registrations: who (client, software, organisation), from which
//! certificate and address, did what, when, and how it ended, stored in the database.

use std::sync::Arc;

use keyfort_core::clock::Clock;
use keyfort_core::registration::RegisteredClient;
use keyfort_core::transport::CertificateIdentity;

use crate::http::ApiError;
use crate::storage::{AuditEvent, Store};

pub struct Auditor {
    store: Arc<dyn Store>,
    clock: Arc<dyn Clock>,
}

/// The facts of one attempt, gathered by the handler.
pub struct Attempt<'a> {
    pub action: &'static str,
    pub client_id: Option<&'a str>,
    pub certificate: Option<&'a CertificateIdentity>,
    pub peer: std::net::SocketAddr,
}

impl Auditor {
    pub fn new(store: Arc<dyn Store>, clock: Arc<dyn Clock>) -> Self {
        Self { store, clock }
    }

    /// Records the outcome of `attempt` (`error` is `None` on success). A failure to write is logged, not returned: the
    /// registration itself is already durable or already refused.
    pub async fn record(&self, attempt: Attempt<'_>, error: Option<&ApiError>, client: Option<&RegisteredClient>) {
        let event = self.event(attempt, error, client);
        if let Err(e) = self.store.record_audit(&event).await {
            tracing::error!(error = %e, action = event.action, "writing the audit trail failed");
        }
    }

    /// The audit line for `attempt`, for callers that write it themselves (a successful
    /// registration writes it in the same transaction as the client).
    pub fn event(
        &self,
        attempt: Attempt<'_>,
        error: Option<&ApiError>,
        client: Option<&RegisteredClient>,
    ) -> AuditEvent {
        let outcome = match error {
            None => "success".to_owned(),
            Some(e) => e.code().as_str().to_owned(),
        };
        AuditEvent {
            at: self.clock.now(),
            action: attempt.action.to_owned(),
            outcome,
            client_id: client.map(|c| c.client_id.clone()).or_else(|| attempt.client_id.map(str::to_owned)),
            software_id: client.and_then(|c| c.software_id.clone()),
            org_id: client.and_then(|c| c.org_id.clone()),
            cert_thumbprint: attempt.certificate.map(|c| c.thumbprint_s256.clone()),
            cert_subject: attempt.certificate.map(|c| c.subject.to_string()),
            peer: Some(attempt.peer.ip().to_string()),
            detail: error.map(|e| e.description().chars().take(1000).collect()),
        }
    }
}
