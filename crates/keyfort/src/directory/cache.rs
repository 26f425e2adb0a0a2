use std::collections::HashMap;
use std::sync::{Arc, Mutex, RwLock};
use std::time::{Duration, Instant};

use keyfort_core::jose::JwkSet;

use super::fetch::HttpFetcher;
use crate::config::KeySource;
use crate::metrics::Metrics;

/// No usable keys could be had from a source, and none were cached.
#[derive(Debug, Clone, thiserror::Error)]
#[error("{0}")]
pub struct KeyLookupError(pub String);

#[derive(Clone)]
struct Loaded {
    keys: Arc<JwkSet>,
    fetched_at: Instant,
}

#[derive(Default)]
struct RefreshState {
    last_attempt: Option<Instant>,
    last_error: Option<String>,
}

#[derive(Default)]
struct Entry {
    current: RwLock<Option<Loaded>>,
    /// Held while fetching, so concurrent requests for one source cause one fetch.
    refresh: tokio::sync::Mutex<RefreshState>,
}

impl Entry {
    fn current(&self) -> Option<Loaded> {
        self.current.read().unwrap_or_else(|p| p.into_inner()).clone()
    }
}

/// Parsed JWKS per source, fetched on first use and kept fresh.
pub struct JwksCache {
    fetcher: HttpFetcher,
    metrics: Arc<Metrics>,
    ttl: Duration,
    min_refresh: Duration,
    entries: Mutex<HashMap<KeySource, Arc<Entry>>>,
}

impl JwksCache {
    pub fn new(fetcher: HttpFetcher, ttl: Duration, min_refresh: Duration, metrics: Arc<Metrics>) -> Self {
        Self { fetcher, metrics, ttl, min_refresh, entries: Mutex::new(HashMap::new()) }
    }

    pub fn fetcher(&self) -> &HttpFetcher {
        &self.fetcher
    }

    fn entry(&self, source: &KeySource) -> Arc<Entry> {
        let mut entries = self.entries.lock().unwrap_or_else(|p| p.into_inner());
        entries.entry(source.clone()).or_default().clone()
    }

    /// The keys of `source`. When `kid` is given and not among the cached keys, the source
    /// is fetched again, but at most once per `min_refresh`: a stream of requests with
    /// random kids cannot turn Keyfort into a hammer against the directory.
    pub async fn keys(&self, source: &KeySource, kid: Option<&str>) -> Result<Arc<JwkSet>, KeyLookupError> {
        let entry = self.entry(source);
        let usable = |loaded: &Option<Loaded>| {
            loaded
                .as_ref()
                .filter(|l| l.fetched_at.elapsed() < self.ttl && kid.is_none_or(|k| l.keys.has_kid(k)))
                .map(|l| l.keys.clone())
        };
        if let Some(keys) = usable(&entry.current()) {
            self.metrics.inc("keyfort_jwks_cache_lookups_total", &[("result", "hit")]);
            return Ok(keys);
        }
        self.metrics.inc("keyfort_jwks_cache_lookups_total", &[("result", "miss")]);
        let mut state = entry.refresh.lock().await;
        // Another request may have refreshed while this one waited for the lock.
        let current = entry.current();
        if let Some(keys) = usable(&current) {
            return Ok(keys);
        }
        let may_fetch = state.last_attempt.is_none_or(|t| t.elapsed() >= self.min_refresh);
        if !may_fetch {
            return match current {
                Some(loaded) => Ok(loaded.keys),
                None => Err(KeyLookupError(
                    state.last_error.clone().unwrap_or_else(|| format!("keys of {source} are not available")),
                )),
            };
        }
        state.last_attempt = Some(Instant::now());
        let loaded = self.load(source).await;
        let result = if loaded.is_ok() { "success" } else { "failure" };
        self.metrics.inc("keyfort_jwks_fetches_total", &[("result", result)]);
        match loaded {
            Ok(keys) => {
                let keys = Arc::new(keys);
                *entry.current.write().unwrap_or_else(|p| p.into_inner()) =
                    Some(Loaded { keys: keys.clone(), fetched_at: Instant::now() });
                state.last_error = None;
                tracing::info!(source = %source, keys = keys.keys().len(), "JWKS loaded");
                Ok(keys)
            }
            Err(why) => {
                // The same failure again (a directory down for an hour) is logged once, when
                // it starts, not at every attempt; the metric counts every attempt.
                let repeated = state.last_error.as_deref() == Some(why.as_str());
                state.last_error = Some(why.clone());
                match current {
                    Some(loaded) => {
                        if !repeated {
                            tracing::warn!(source = %source, error = %why, "JWKS refresh failed; keeping the last good keys");
                        }
                        Ok(loaded.keys)
                    }
                    None => {
                        if !repeated {
                            tracing::warn!(source = %source, error = %why, "JWKS could not be loaded");
                        }
                        Err(KeyLookupError(why))
                    }
                }
            }
        }
    }

    async fn load(&self, source: &KeySource) -> Result<JwkSet, String> {
        let bytes = match source {
            KeySource::Url(url) => self.fetcher.get(url).await.map_err(|e| e.to_string())?,
            KeySource::File(path) => {
                tokio::fs::read(path).await.map_err(|e| format!("reading {}: {e}", path.display()))?.into()
            }
        };
        JwkSet::from_json(&bytes).map_err(|e| format!("the JWKS at {source} {e}"))
    }
}
