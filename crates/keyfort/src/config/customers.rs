//! `[customers]`: the built-in customer (PSU) store, its passwords and how failed sign-ins
//! are bounded.

use std::time::Duration;

use super::loader::Section;

#[derive(Debug, Clone)]
pub struct CustomersConfig {
    /// Shortest password `keyfort customers add` accepts.
    pub min_password_length: usize,
    /// Failed sign-ins (wrong password or one-time code) after which a customer is locked.
    pub max_failed_logins: u32,
    /// How long such a lock lasts.
    pub lockout: Duration,
    /// Failed sign-ins one client address may make per window, whatever the usernames.
    pub failed_logins_per_address: u32,
    pub failed_logins_window: Duration,
    /// Password checks (Argon2, 19 MiB each) at once, and callers allowed to wait for one.
    pub concurrent_password_checks: usize,
    pub password_check_queue: usize,
    /// The issuer authenticator apps show for the bank's one-time codes.
    pub totp_issuer: String,
    /// How long a customer stays signed in to their own page (the TPPs they authorised).
    pub session: Duration,
}

/// `public_url` gives the default TOTP issuer (its host), when `[server]` could be read.
pub(super) fn read(mut s: Section<'_>, public_url: Option<&str>) -> CustomersConfig {
    let default_issuer = public_url
        .and_then(|u| url::Url::parse(u).ok())
        .and_then(|u| u.host_str().map(str::to_owned))
        .unwrap_or_else(|| "Keyfort".to_owned());
    let totp_issuer = s.take::<String>("totp_issuer").unwrap_or(default_issuer);
    if totp_issuer.trim().is_empty() || totp_issuer.contains(':') || totp_issuer.chars().count() > 64 {
        s.problem(
            "totp_issuer",
            "must be 1 to 64 characters without ':' (authenticator apps show it as the bank's name)",
        );
    }
    CustomersConfig {
        min_password_length: s.take_in_range("min_password_length", 8, 8..=256),
        max_failed_logins: s.take_in_range("max_failed_logins", 5, 1..=100),
        lockout: Duration::from_secs(s.take_in_range("lockout_seconds", 300, 1..=86_400)),
        failed_logins_per_address: s.take_in_range("failed_logins_per_address", 30, 1..=1_000_000),
        failed_logins_window: Duration::from_secs(s.take_in_range("failed_logins_window_seconds", 900, 60..=86_400)),
        concurrent_password_checks: s.take_in_range("concurrent_password_checks", 2, 1..=64),
        password_check_queue: s.take_in_range("password_check_queue", 32, 0..=100_000),
        totp_issuer,
        session: Duration::from_secs(s.take_in_range("session_seconds", 900, 60..=86_400)),
    }
}
