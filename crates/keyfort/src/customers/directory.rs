//! The built-in [`CustomerDirectory`]: customers in Keyfort's database, passwords checked
//! with Argon2id on bounded memory, optional RFC 6238 one-time codes, and failed sign-ins
//! bounded per username, per address and for the whole server.
//!
//! The lock of a known username is kept in the database, so that every node of a cluster
//! sees it; failures of unknown usernames and per-address counts are kept in bounded memory
//! only (an attacker cycling through names or addresses cannot grow either). An unknown
//! username is treated exactly like a known one (same password check time, same lock after
//! the same number of failures), so that sign-in does not tell which usernames exist.

use std::net::IpAddr;
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use async_trait::async_trait;
use keyfort_core::clock::Clock;
use keyfort_core::totp::TotpSecret;

use super::{Customer, CustomerDirectory, SignInRefused};
use crate::config::CustomersConfig;
use crate::password::PasswordVerifier;
use crate::storage::{Store, StoreError, StoredCustomer};
use crate::throttle::{BoundedMap, RateLimit, Window};

/// Longest username and password considered: anything longer is wrong without a check.
pub const MAX_USERNAME_CHARS: usize = 256;
const MAX_PASSWORD_BYTES: usize = 1024;
/// Unknown usernames and addresses tracked at most (older entries expire).
const TRACKED_ENTRIES: usize = 10_000;
/// Sign-in attempts per second for the whole server, and the burst allowed at once: each
/// attempt may cost an Argon2 check.
const ATTEMPTS_PER_SECOND: f64 = 20.0;
const ATTEMPTS_BURST: u32 = 40;

/// The failures of an unknown username, counted as the database counts a known one's.
#[derive(Debug, Default, Clone)]
struct UnknownFailures {
    count: u32,
    locked_until: Option<Instant>,
}

struct Attempts {
    unknown: BoundedMap<[u8; 32], UnknownFailures>,
    per_address: BoundedMap<IpAddr, Window>,
    global: RateLimit,
}

pub struct StoreCustomerDirectory {
    store: Arc<dyn Store>,
    clock: Arc<dyn Clock>,
    config: CustomersConfig,
    passwords: PasswordVerifier,
    attempts: Mutex<Attempts>,
}

fn unavailable(e: StoreError) -> SignInRefused {
    tracing::error!(error = %e, "the customer store failed during a sign-in");
    SignInRefused::Unavailable("the customer directory is unavailable".to_owned())
}

/// Rounds a wait up to whole seconds (a `Retry-After` of 0 would invite an immediate retry).
fn seconds(wait: Duration) -> Duration {
    Duration::from_secs(wait.as_secs_f64().ceil().max(1.0) as u64)
}

impl StoreCustomerDirectory {
    pub fn new(store: Arc<dyn Store>, clock: Arc<dyn Clock>, config: CustomersConfig) -> Self {
        let attempts = Attempts {
            unknown: BoundedMap::new(TRACKED_ENTRIES, config.lockout.max(config.failed_logins_window)),
            per_address: BoundedMap::new(TRACKED_ENTRIES, config.failed_logins_window),
            global: RateLimit::new(ATTEMPTS_PER_SECOND, ATTEMPTS_BURST),
        };
        Self {
            passwords: PasswordVerifier::new(config.concurrent_password_checks, config.password_check_queue),
            store,
            clock,
            config,
            attempts: Mutex::new(attempts),
        }
    }

    /// Whether this attempt may be checked at all: the address's failures, the lock of an
    /// unknown username, the server's rate. Nothing is counted for an attempt refused here.
    fn admit(&self, digest: &[u8; 32], peer: IpAddr) -> Result<(), SignInRefused> {
        let now = Instant::now();
        let mut attempts = self.attempts.lock().unwrap_or_else(|p| p.into_inner());
        if let Some(until) = attempts.unknown.get(digest, now).and_then(|f| f.locked_until) {
            if let Some(wait) = until.checked_duration_since(now).filter(|d| !d.is_zero()) {
                return Err(SignInRefused::Locked { retry_after: seconds(wait) });
            }
        }
        let (cap, window) = (self.config.failed_logins_per_address, self.config.failed_logins_window);
        if let Some(wait) = attempts.per_address.get(&peer, now).and_then(|w| w.clone().exhausted(cap, window, now)) {
            return Err(SignInRefused::Throttled { retry_after: seconds(wait) });
        }
        attempts.global.take(now).map_err(|wait| SignInRefused::Throttled { retry_after: seconds(wait) })
    }

    fn count_address_failure(&self, peer: IpAddr) {
        let now = Instant::now();
        let window = self.config.failed_logins_window;
        let mut attempts = self.attempts.lock().unwrap_or_else(|p| p.into_inner());
        if let Some(failures) = attempts.per_address.entry(peer, now, || Window::new(now)) {
            failures.exhausted(u32::MAX, window, now);
            failures.record();
        }
    }

    /// Counts a failure of an unknown username; `Locked` when it reaches the limit.
    fn fail_unknown(&self, digest: [u8; 32], peer: IpAddr) -> SignInRefused {
        self.count_address_failure(peer);
        let now = Instant::now();
        let mut attempts = self.attempts.lock().unwrap_or_else(|p| p.into_inner());
        let (max, lockout) = (self.config.max_failed_logins, self.config.lockout);
        if let Some(failures) = attempts.unknown.entry(digest, now, UnknownFailures::default) {
            failures.count += 1;
            if failures.count >= max {
                *failures = UnknownFailures { count: 0, locked_until: Some(now + lockout) };
                return SignInRefused::Locked { retry_after: seconds(lockout) };
            }
        }
        SignInRefused::WrongCredentials
    }

    /// Counts a failure of a known customer in the database; `Locked` when it reaches the
    /// limit, `refusal` otherwise.
    async fn fail_known(&self, customer: &StoredCustomer, peer: IpAddr, refusal: SignInRefused) -> SignInRefused {
        self.count_address_failure(peer);
        let lock_until = self.clock.now() + self.config.lockout.as_secs() as i64;
        match self.store.record_customer_failure(&customer.customer_id, self.config.max_failed_logins, lock_until).await
        {
            Ok(Some(_)) => {
                tracing::warn!(customer_id = %customer.customer_id, "customer locked after repeated failed sign-ins");
                SignInRefused::Locked { retry_after: seconds(self.config.lockout) }
            }
            Ok(None) => refusal,
            Err(e) => unavailable(e),
        }
    }
}

#[async_trait]
impl CustomerDirectory for StoreCustomerDirectory {
    #[tracing::instrument(skip_all)]
    async fn sign_in(
        &self,
        username: &str,
        password: &str,
        otp: Option<&str>,
        peer: IpAddr,
    ) -> Result<Customer, SignInRefused> {
        if username.is_empty() || username.chars().count() > MAX_USERNAME_CHARS || password.len() > MAX_PASSWORD_BYTES {
            return Err(SignInRefused::WrongCredentials);
        }
        // Keyed by digest: a long name costs the bounded table nothing.
        let digest = keyfort_core::secret::sha256(username.as_bytes());
        self.admit(&digest, peer)?;
        let now = self.clock.now();
        let stored = self.store.find_customer_by_username(username).await.map_err(unavailable)?;
        if let Some(until) = stored.as_ref().and_then(|c| c.locked_until).filter(|until| *until > now) {
            return Err(SignInRefused::Locked { retry_after: Duration::from_secs((until - now) as u64) });
        }
        let matches = self
            .passwords
            .verify(stored.as_ref().map(|c| c.password_hash.as_str()), password)
            .await
            .map_err(|busy| SignInRefused::Busy { retry_after: busy.retry_after })?;
        // The attempted username is logged only when it is a customer's: a password typed
        // into the username field must not end up in the log.
        let Some(customer) = stored else {
            tracing::info!("customer sign-in failed for an unknown username");
            return Err(self.fail_unknown(digest, peer));
        };
        if !matches {
            tracing::info!(customer_id = %customer.customer_id, "customer sign-in failed: wrong password");
            return Err(self.fail_known(&customer, peer, SignInRefused::WrongCredentials).await);
        }
        let step = match &customer.totp_secret {
            None => None,
            Some(secret) => {
                // A missing code is not counted: a login page may ask for it after the
                // password. Every wrong code is.
                let Some(code) = otp.filter(|c| !c.trim().is_empty()) else {
                    return Err(SignInRefused::OtpMissingOrWrong);
                };
                let Some(secret) = TotpSecret::from_base32(secret) else {
                    tracing::error!(customer_id = %customer.customer_id, "the stored TOTP secret is unreadable");
                    return Err(SignInRefused::Unavailable("the customer's one-time code cannot be checked".into()));
                };
                match secret.verify(code, now, customer.totp_last_step) {
                    Some(step) => Some(step),
                    None => {
                        tracing::info!(customer_id = %customer.customer_id, "customer sign-in failed: wrong one-time code");
                        return Err(self.fail_known(&customer, peer, SignInRefused::OtpMissingOrWrong).await);
                    }
                }
            }
        };
        // Stores the code's step only if no sign-in used it meanwhile (another node, a
        // replayed form): a code is good for one sign-in.
        if !self.store.record_customer_success(&customer.customer_id, step).await.map_err(unavailable)? {
            tracing::info!(customer_id = %customer.customer_id, "customer sign-in failed: one-time code used twice");
            return Err(self.fail_known(&customer, peer, SignInRefused::OtpMissingOrWrong).await);
        }
        tracing::info!(customer_id = %customer.customer_id, "customer signed in");
        Ok(Customer { id: customer.customer_id, username: customer.username, second_factor: step.is_some() })
    }
}
