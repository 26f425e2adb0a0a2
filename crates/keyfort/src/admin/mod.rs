//! Administrators: stored with Argon2id hashes, created from the command line, and checked
//! on HTTP Basic credentials where the configuration asks for them (WSO2's
//! `[oauth.dcr] authentication_required`). Repeated failures for one name lock it for a
//! growing time, so passwords cannot be guessed at network speed.

use std::collections::HashMap;
use std::net::IpAddr;
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use keyfort_core::error::{ErrorCode, OAuthError};

use crate::error::{Challenge, ServiceError};
use crate::password::PasswordVerifier;
use crate::storage::Store;
use crate::throttle::{BoundedMap, Failures, LockoutPolicy, RateLimit, Window};

pub use crate::password::hash_password;

/// Shortest password `keyfort admin add-user` accepts.
pub const MIN_PASSWORD_CHARS: usize = 12;
/// Longest administrator name: checked before anything about a sign-in is stored.
pub const MAX_NAME_CHARS: usize = 256;
/// Longest password accepted for checking.
const MAX_PASSWORD_BYTES: usize = 1024;

/// Repeated failures for one name lock it: 5 free, then 30 s, doubling up to 15 min.
const LOCKOUT: LockoutPolicy =
    LockoutPolicy { free_failures: 5, first_lock: Duration::from_secs(30), max_lock: Duration::from_secs(15 * 60) };

/// How sign-in attempts are bounded, per name, per address and for the whole server.
#[derive(Debug, Clone)]
pub struct SignInLimits {
    /// Attempts per second for the whole server (each costs an Argon2 check), and the burst.
    pub attempts_per_second: f64,
    pub attempts_burst: u32,
    /// Failed attempts one address may make per `address_window`.
    pub failures_per_address: u32,
    pub address_window: Duration,
    /// Password checks at once, and callers allowed to wait for one.
    pub concurrent_checks: usize,
    pub max_waiting: usize,
    /// Unknown names and addresses tracked at most (older entries expire).
    pub tracked_entries: usize,
    /// Addresses not limited per address: proxies, behind which every client shares one
    /// address (the global limit still applies).
    pub exempt: Vec<ipnet::IpNet>,
}

impl Default for SignInLimits {
    fn default() -> Self {
        Self {
            attempts_per_second: 10.0,
            attempts_burst: 20,
            failures_per_address: 30,
            address_window: Duration::from_secs(15 * 60),
            concurrent_checks: 2,
            max_waiting: 32,
            tracked_entries: 10_000,
            exempt: Vec::new(),
        }
    }
}

/// What the authenticator remembers between attempts; every part is bounded.
struct Attempts {
    /// Failures of names that are administrators: bounded by the administrators there are.
    known: HashMap<String, Failures>,
    /// Failures of names that are not, keyed by a digest so a long name costs nothing.
    unknown: BoundedMap<[u8; 32], Failures>,
    per_address: BoundedMap<IpAddr, Window>,
    global: RateLimit,
}

pub struct AdminAuthenticator {
    store: Arc<dyn Store>,
    limits: SignInLimits,
    attempts: Mutex<Attempts>,
    passwords: PasswordVerifier,
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

fn throttled(what: &str, wait: Duration) -> ServiceError {
    let retry_after = Duration::from_secs(wait.as_secs_f64().ceil().max(1.0) as u64);
    ServiceError::Throttled {
        error: OAuthError::new(
            ErrorCode::InvalidClient,
            format!("{what}; try again in {} seconds", retry_after.as_secs()),
        ),
        retry_after,
    }
}

impl AdminAuthenticator {
    pub fn new(store: Arc<dyn Store>, limits: SignInLimits) -> Self {
        let attempts = Attempts {
            known: HashMap::new(),
            unknown: BoundedMap::new(limits.tracked_entries, LOCKOUT.max_lock),
            per_address: BoundedMap::new(limits.tracked_entries, limits.address_window),
            global: RateLimit::new(limits.attempts_per_second, limits.attempts_burst),
        };
        Self {
            store,
            passwords: PasswordVerifier::new(limits.concurrent_checks, limits.max_waiting),
            attempts: Mutex::new(attempts),
            limits,
        }
    }

    /// Checks an administrator's name and password, sent from `peer`.
    #[tracing::instrument(skip_all)]
    pub async fn authenticate(
        &self,
        credentials: BasicCredentials,
        peer: IpAddr,
    ) -> Result<Administrator, ServiceError> {
        let BasicCredentials { username, password } = credentials;
        if username.chars().count() > MAX_NAME_CHARS || password.len() > MAX_PASSWORD_BYTES {
            return Err(unauthorized(format!(
                "the administrator name (at most {MAX_NAME_CHARS} characters) or password (at most {MAX_PASSWORD_BYTES} bytes) is too long"
            )));
        }
        let name_digest = keyfort_core::secret::sha256(username.as_bytes());
        self.admit(&username, &name_digest, peer)?;
        let stored = self.store.admin_password_hash(&username).await?;
        let matches = self.passwords.verify(stored.as_deref(), &password).await.map_err(|busy| {
            ServiceError::Overloaded { what: "administrator sign-in".into(), retry_after: busy.retry_after }
        })?;
        let mut attempts = self.attempts.lock().unwrap_or_else(|p| p.into_inner());
        if matches {
            attempts.known.remove(&username);
            return Ok(Administrator { name: username });
        }
        let now = Instant::now();
        if !self.exempt(peer) {
            let window = self.limits.address_window;
            if let Some(failures) = attempts.per_address.entry(peer, now, || Window::new(now)) {
                failures.exhausted(u32::MAX, window, now);
                failures.record();
            }
        }
        // The attempted name is logged only when it is a real administrator: a password
        // typed into the name field must not end up in the log.
        if stored.is_some() {
            attempts.known.entry(username.clone()).or_default().record(&LOCKOUT, now);
            tracing::warn!(username = %username, "administrator authentication failed");
        } else {
            if let Some(failures) = attempts.unknown.entry(name_digest, now, Failures::default) {
                failures.record(&LOCKOUT, now);
            }
            tracing::warn!("administrator authentication failed for an unknown name");
        }
        Err(unauthorized("the administrator name or password is wrong"))
    }

    fn exempt(&self, peer: IpAddr) -> bool {
        self.limits.exempt.iter().any(|net| net.contains(&peer))
    }

    /// Whether this attempt may be checked at all: the server's rate, the address's failures
    /// and the name's lock. Nothing is stored for an attempt refused here.
    fn admit(&self, username: &str, name_digest: &[u8; 32], peer: IpAddr) -> Result<(), ServiceError> {
        let now = Instant::now();
        let mut attempts = self.attempts.lock().unwrap_or_else(|p| p.into_inner());
        let locked = match attempts.known.get(username) {
            Some(failures) => failures.locked_for(now),
            None => attempts.unknown.get(name_digest, now).and_then(|f| f.locked_for(now)),
        };
        if let Some(wait) = locked {
            return Err(throttled("too many failed sign-ins for this administrator", wait));
        }
        if !self.exempt(peer) {
            let (cap, window) = (self.limits.failures_per_address, self.limits.address_window);
            let exhausted = match attempts.per_address.get(&peer, now) {
                Some(failures) => failures.clone().exhausted(cap, window, now),
                None => None,
            };
            if let Some(wait) = exhausted {
                return Err(throttled("too many failed sign-ins from this address", wait));
            }
        }
        attempts.global.take(now).map_err(|wait| throttled("too many sign-in attempts at this server", wait))
    }
}
