//! Readiness: whether this node can do its work now, for a load balancer's probe.

use std::sync::Arc;

use crate::registration::RegistrationService;
use crate::storage::Store;

pub struct Readiness {
    store: Arc<dyn Store>,
    registration: Arc<RegistrationService>,
}

impl Readiness {
    pub fn new(store: Arc<dyn Store>, registration: Arc<RegistrationService>) -> Self {
        Self { store, registration }
    }

    /// The components that are not ready, by name; empty when ready. The causes go to the
    /// log: a public probe answer names only the component.
    pub async fn problems(&self) -> Vec<&'static str> {
        let mut problems = Vec::new();
        if let Err(e) = self.store.ping().await {
            tracing::warn!(error = %e, "not ready: database");
            problems.push("database");
        }
        if let Err(e) = self.registration.directory_keys_ready().await {
            tracing::warn!(error = %e, "not ready: directory keys");
            problems.push("directory keys");
        }
        problems
    }
}
