//! Administrators: stored with Argon2id hashes, created from the command line, and checked
//! on HTTP Basic credentials where the configuration asks for them (WSO2's
//! `[oauth.dcr] authentication_required`). Repeated failures for one name lock it for a
//! growing time, so passwords cannot be guessed at network speed.
//!
//! The failures of administrators' names are counted in the database, so that every node
//! sees them: N nodes must not give an attacker N times the tries. Failures of names that
//! are not administrators are counted in each node's bounded memory and never written,
//! since anyone can make up names without end.

use std::net::IpAddr;
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use keyfort_core::clock::Clock;
use keyfort_core::error::{ErrorCode, OAuthError};

use crate::error::{Challenge, ServiceError};
use crate::password::PasswordVerifier;
use crate::storage::{AdminSignInState, Store};
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
    /// Failures of names that are not, keyed by a digest so a long name costs nothing.
    unknown: BoundedMap<[u8; 32], Failures>,
    per_address: BoundedMap<IpAddr, Window>,
    global: RateLimit,
}

pub struct AdminAuthenticator {
    store: Arc<dyn Store>,
    clock: Arc<dyn Clock>,
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
    pub fn new(store: Arc<dyn Store>, clock: Arc<dyn Clock>, limits: SignInLimits) -> Self {
        let attempts = Attempts {
            unknown: BoundedMap::new(limits.tracked_entries, LOCKOUT.max_lock),
            per_address: BoundedMap::new(limits.tracked_entries, limits.address_window),
            global: RateLimit::new(limits.attempts_per_second, limits.attempts_burst),
        };
        Self {
            store,
            clock,
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
        self.admit(&name_digest, peer)?;
        let state = self.store.admin_sign_in_state(&username).await?;
        if let Some(wait) = state.as_ref().and_then(|s| self.known_name_locked_for(s)) {
            return Err(throttled("too many failed sign-ins for this administrator", wait));
        }
        self.take_global_attempt()?;
        let stored = state.as_ref().map(|s| s.password_hash.as_str());
        let matches = self.passwords.verify(stored, &password).await.map_err(|busy| ServiceError::Overloaded {
            what: "administrator sign-in".into(),
            retry_after: busy.retry_after,
        })?;
        if matches {
            if state.as_ref().is_some_and(|s| s.failures > 0) {
                self.store.clear_admin_sign_in_failures(&username).await?;
            }
            return Ok(Administrator { name: username });
        }
        let now = Instant::now();
        {
            let mut attempts = self.attempts.lock().unwrap_or_else(|p| p.into_inner());
            if !self.exempt(peer) {
                let window = self.limits.address_window;
                if let Some(failures) = attempts.per_address.entry(peer, now, || Window::new(now)) {
                    failures.exhausted(u32::MAX, window, now);
                    failures.record();
                }
            }
            if state.is_none() {
                if let Some(failures) = attempts.unknown.entry(name_digest, now, Failures::default) {
                    failures.record(&LOCKOUT, now);
                }
            }
        }
        // The attempted name is logged only when it is a real administrator: a password
        // typed into the name field must not end up in the log.
        if state.is_some() {
            let failures = self.store.record_admin_sign_in_failure(&username, self.clock.now()).await?;
            tracing::warn!(username = %username, failures, "administrator authentication failed");
        } else {
            tracing::warn!("administrator authentication failed for an unknown name");
        }
        Err(unauthorized("the administrator name or password is wrong"))
    }

    /// How long an administrator's name stays locked by the failures every node counted.
    fn known_name_locked_for(&self, state: &AdminSignInState) -> Option<Duration> {
        let lock = LOCKOUT.lock_after(state.failures)?;
        let until = state.last_failure_at? + i64::try_from(lock.as_secs()).unwrap_or(i64::MAX);
        let wait = until - self.clock.now();
        (wait > 0).then(|| Duration::from_secs(wait.unsigned_abs()))
    }

    fn exempt(&self, peer: IpAddr) -> bool {
        self.limits.exempt.iter().any(|net| net.contains(&peer))
    }

    /// Whether this attempt may go on to the database: the lock of an unknown name and the
    /// address's failures. Nothing is stored for an attempt refused here.
    fn admit(&self, name_digest: &[u8; 32], peer: IpAddr) -> Result<(), ServiceError> {
        let now = Instant::now();
        let attempts = self.attempts.lock().unwrap_or_else(|p| p.into_inner());
        if let Some(wait) = attempts.unknown.get(name_digest, now).and_then(|f| f.locked_for(now)) {
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
        Ok(())
    }

    /// The server's rate of password checks, taken only by attempts that will be checked.
    fn take_global_attempt(&self) -> Result<(), ServiceError> {
        let mut attempts = self.attempts.lock().unwrap_or_else(|p| p.into_inner());
        attempts.global.take(Instant::now()).map_err(|wait| throttled("too many sign-in attempts at this server", wait))
    }
}
