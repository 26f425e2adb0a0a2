//! Administrators: stored with Argon2id hashes, created from the command line, and checked
//! on HTTP Basic credentials where the configuration asks for them (WSO2's
//! `[oauth.dcr] authentication_required`). Repeated failures for one name lock it for a
//! growing time, so passwords cannot be guessed at network speed.

use std::collections::HashMap;
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use argon2::password_hash::{rand_core::OsRng, PasswordHash, PasswordHasher, PasswordVerifier, SaltString};
use argon2::Argon2;
use keyfort_core::error::{ErrorCode, OAuthError};

use crate::error::{Challenge, ServiceError};
use crate::storage::Store;

/// Failures allowed before a name is locked.
const FREE_FAILURES: u32 = 5;
/// First lock; doubles with every further failure, up to `MAX_LOCK`.
const BASE_LOCK: Duration = Duration::from_secs(30);
const MAX_LOCK: Duration = Duration::from_secs(15 * 60);
/// Shortest password `keyfort admin add-user` accepts.
pub const MIN_PASSWORD_CHARS: usize = 12;

pub fn hash_password(password: &str) -> anyhow::Result<String> {
    let salt = SaltString::generate(&mut OsRng);
    Argon2::default()
        .hash_password(password.as_bytes(), &salt)
        .map(|h| h.to_string())
        .map_err(|e| anyhow::anyhow!("hashing the password failed: {e}"))
}

struct Failures {
    count: u32,
    last: Instant,
    locked_until: Option<Instant>,
}

/// Argon2 verifications allowed at once. Each takes ~19 MiB and tens of milliseconds, so a
/// flood of sign-in attempts must queue rather than exhaust memory and the blocking pool.
const CONCURRENT_VERIFICATIONS: usize = 4;

pub struct AdminAuthenticator {
    store: Arc<dyn Store>,
    failures: Mutex<HashMap<String, Failures>>,
    verifications: tokio::sync::Semaphore,
    /// Verified against when the name is unknown, so unknown and known names take as long.
    dummy_hash: String,
}

/// An administrator whose credentials the edge has checked. Only [`AdminAuthenticator`]
/// makes one, so holding one is proof of a successful sign-in.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Administrator {
    name: String,
}

impl Administrator {
    pub fn name(&self) -> &str {
        &self.name
    }
}

impl std::fmt::Display for Administrator {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(&self.name)
    }
}

/// A name and password from `Authorization: Basic`, not yet checked.
pub struct BasicCredentials {
    pub username: String,
    pub password: String,
}

impl std::fmt::Debug for BasicCredentials {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("BasicCredentials").field("username", &self.username).finish_non_exhaustive()
    }
}

/// The refusal of a sign-in: the caller must authenticate with Basic.
pub fn unauthorized(description: impl Into<String>) -> ServiceError {
    ServiceError::Unauthenticated(OAuthError::new(ErrorCode::InvalidClient, description), Challenge::Basic)
}

impl AdminAuthenticator {
    pub fn new(store: Arc<dyn Store>) -> anyhow::Result<Self> {
        Ok(Self {
            store,
            failures: Mutex::default(),
            verifications: tokio::sync::Semaphore::new(CONCURRENT_VERIFICATIONS),
            dummy_hash: hash_password("not a real password, only for timing")?,
        })
    }

    /// Checks an administrator's name and password.
    #[tracing::instrument(skip_all)]
    pub async fn authenticate(&self, credentials: BasicCredentials) -> Result<Administrator, ServiceError> {
        let BasicCredentials { username, password } = credentials;
        self.refuse_if_locked(&username)?;
        let _permit = self.verifications.acquire().await.map_err(|e| ServiceError::Internal(e.into()))?;
        // Checked again: attempts that queued behind the permit may have locked the name.
        self.refuse_if_locked(&username)?;
        let stored = self.store.admin_password_hash(&username).await?;
        let hash = stored.clone().unwrap_or_else(|| self.dummy_hash.clone());
        let ok = tokio::task::spawn_blocking(move || {
            PasswordHash::new(&hash)
                .is_ok_and(|parsed| Argon2::default().verify_password(password.as_bytes(), &parsed).is_ok())
        })
        .await
        .map_err(|e| ServiceError::Internal(e.into()))?;
        if ok && stored.is_some() {
            self.failures.lock().unwrap_or_else(|p| p.into_inner()).remove(&username);
            return Ok(Administrator { name: username });
        }
        self.record_failure(&username);
        // The attempted name is logged only when it is a real administrator: a password typed
        // into the name field must not end up in the log.
        match stored {
            Some(_) => tracing::warn!(username = %username, "administrator authentication failed"),
            None => tracing::warn!("administrator authentication failed for an unknown name"),
        }
        Err(unauthorized("the administrator name or password is wrong"))
    }

    fn refuse_if_locked(&self, username: &str) -> Result<(), ServiceError> {
        match self.locked_for(username) {
            None => Ok(()),
            Some(wait) => {
                let retry_after = Duration::from_secs(wait.as_secs().max(1));
                Err(ServiceError::Throttled {
                    error: OAuthError::new(
                        ErrorCode::InvalidClient,
                        format!(
                            "too many failed sign-ins for this administrator; try again in {} seconds",
                            retry_after.as_secs()
                        ),
                    ),
                    retry_after,
                })
            }
        }
    }

    fn locked_for(&self, username: &str) -> Option<Duration> {
        let failures = self.failures.lock().unwrap_or_else(|p| p.into_inner());
        let until = failures.get(username)?.locked_until?;
        until.checked_duration_since(Instant::now())
    }

    fn record_failure(&self, username: &str) {
        let mut failures = self.failures.lock().unwrap_or_else(|p| p.into_inner());
        // Bound the table: an attacker cycling through names must not grow it forever. Only
        // entries idle longer than the longest lock go, so a targeted name keeps its count.
        if failures.len() > 10_000 {
            failures.retain(|_, f| f.last.elapsed() < MAX_LOCK);
        }
        let entry = failures.entry(username.to_owned()).or_insert(Failures {
            count: 0,
            last: Instant::now(),
            locked_until: None,
        });
        entry.last = Instant::now();
        entry.count += 1;
        if entry.count >= FREE_FAILURES {
            let doublings = (entry.count - FREE_FAILURES).min(10);
            let lock = (BASE_LOCK * 2u32.pow(doublings)).min(MAX_LOCK);
            entry.locked_until = Some(Instant::now() + lock);
        }
    }
}
