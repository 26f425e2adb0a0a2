//! Readiness: whether this node can do its work now, for a load balancer's probe.

use std::collections::BTreeMap;
use std::sync::{Arc, Mutex};

use crate::registration::RegistrationService;
use crate::storage::Store;

pub struct Readiness {
    store: Arc<dyn Store>,
    registration: Arc<RegistrationService>,
    /// The failing components at the last probe, with their causes: a probe every few
    /// seconds would otherwise log the same failure thousands of times an hour.
    last: Mutex<BTreeMap<&'static str, String>>,
}

impl Readiness {
    pub fn new(store: Arc<dyn Store>, registration: Arc<RegistrationService>) -> Self {
        Self { store, registration, last: Mutex::default() }
    }

    /// The components that are not ready, by name; empty when ready. The causes go to the
    /// log when a component starts failing (or fails differently) and when it recovers; a
    /// public probe answer names only the component.
    pub async fn problems(&self) -> Vec<&'static str> {
        let mut failing = BTreeMap::new();
        if let Err(e) = self.store.ping().await {
            failing.insert("database", e.to_string());
        }
        if let Err(e) = self.registration.directory_keys_ready().await {
            failing.insert("directory keys", e);
        }
        self.log_changes(&failing);
        failing.into_keys().collect()
    }

    fn log_changes(&self, now: &BTreeMap<&'static str, String>) {
        let mut last = self.last.lock().unwrap_or_else(|p| p.into_inner());
        for (component, cause) in now {
            if last.get(component) != Some(cause) {
                tracing::warn!(component = *component, error = %cause, "not ready: {component}");
            }
        }
        for component in last.keys().filter(|c| !now.contains_key(*c)) {
            tracing::info!(component = *component, "ready again: {component}");
        }
        *last = now.clone();
    }
}
