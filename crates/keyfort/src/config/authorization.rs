//! `[authorization]`: the customer's authorization — how long its steps may take, what the
//! ID token's `sub` is, and whether refresh tokens rotate.

use std::time::Duration;

use serde::Deserialize;

use super::loader::Section;

/// What identifies the customer in ID tokens.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum SubjectChoice {
    /// The customer's stable identifier, the same for every client (`subject_type` public).
    Customer,
    /// The consent's id, as some UK banks do, so that no identifier links a customer's
    /// consents.
    Consent,
}

#[derive(Debug, Clone)]
pub struct AuthorizationConfig {
    /// How long an authorization code may wait to be redeemed (FAPI: short; at most 60 s).
    pub code_lifetime: Duration,
    /// How long a customer has to sign in and decide.
    pub session_lifetime: Duration,
    pub subject: SubjectChoice,
    /// Issue a new refresh token with every refresh (and revoke the old one). FAPI 2 advises
    /// against rotation for confidential, sender-constrained clients; off by default.
    pub refresh_token_rotation: bool,
}

pub(super) fn read(mut s: Section<'_>) -> AuthorizationConfig {
    AuthorizationConfig {
        code_lifetime: Duration::from_secs(s.take_in_range("code_lifetime_seconds", 60, 1..=60)),
        session_lifetime: Duration::from_secs(s.take_in_range("session_seconds", 600, 60..=3600)),
        subject: s.take_described("subject", "\"customer\" or \"consent\"").unwrap_or(SubjectChoice::Customer),
        refresh_token_rotation: s.take("refresh_token_rotation").unwrap_or(false),
    }
}
