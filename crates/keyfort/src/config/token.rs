//! `[oauth.token]` and `[oauth.token_lifetimes]`: the token service and its signing keys.

use std::path::PathBuf;

use keyfort_core::jose::SigningAlg;
use keyfort_core::registration::TokenLifetimes;

use super::loader::{Paths, Section};

/// The token service: signing keys and client assertions.
#[derive(Debug, Clone)]
pub struct TokenConfig {
    pub signing_alg: SigningAlg,
    /// Algorithms ID tokens may be signed with (a client registers one as
    /// `id_token_signed_response_alg`); the key ring keeps an active key for each.
    pub id_token_signing_algs: Vec<SigningAlg>,
    /// A PEM key to sign with instead of database-kept keys, and its kid.
    pub signing_key_file: Option<(PathBuf, String)>,
    /// How long a rotated key is published before it signs.
    pub key_publish_ahead_seconds: i64,
    /// How often each node re-reads the signing keys from the database: the bound on how
    /// long a node may not yet know a key another node or `keyfort keys rotate` added.
    pub key_reload_interval: std::time::Duration,
    pub access_token_audience: Vec<String>,
    /// Longest accepted lifetime of a private_key_jwt client assertion.
    pub assertion_max_lifetime_seconds: i64,
}

const LIFETIME_SECONDS: std::ops::RangeInclusive<i64> = 60..=31_536_000;

pub(super) fn read_lifetimes(mut s: Section<'_>) -> TokenLifetimes {
    let mut lifetime = |key: &'static str, default: i64| {
        let seconds = s.take::<i64>(key).unwrap_or(default);
        if !LIFETIME_SECONDS.contains(&seconds) {
            s.problem(
                key,
                format!("must be between {} and {} seconds", LIFETIME_SECONDS.start(), LIFETIME_SECONDS.end()),
            );
        }
        seconds
    };
    TokenLifetimes {
        application: lifetime("application_seconds", 3600),
        user: lifetime("user_seconds", 3600),
        refresh: lifetime("refresh_seconds", 86400),
        id_token: lifetime("id_token_seconds", 3600),
    }
}

/// `[oauth.token]`; `None` when the default audience (`[server] public_url`) is needed but
/// `[server]` has problems.
pub(super) fn read(mut s: Section<'_>, public_url: Option<&str>, paths: &Paths<'_>) -> Option<TokenConfig> {
    let signing_alg = s.take::<SigningAlg>("signing_alg").unwrap_or(SigningAlg::PS256);
    let key_file = s.take::<PathBuf>("signing_key_file").map(|p| paths.resolve(p));
    let key_id = s.take::<String>("signing_key_id");
    let signing_key_file = match (key_file, key_id) {
        (Some(path), Some(kid)) => Some((path, kid)),
        (None, None) => None,
        (Some(_), None) => {
            s.problem("signing_key_id", "is required with signing_key_file: the kid published for that key");
            None
        }
        (None, Some(_)) => {
            s.problem("signing_key_file", "is required with signing_key_id: the PKCS#8 PEM key that kid names");
            None
        }
    };
    let key_publish_ahead_seconds = s.take::<i64>("key_publish_ahead_seconds").unwrap_or(3600);
    if !(0..=30 * 86400).contains(&key_publish_ahead_seconds) {
        s.problem("key_publish_ahead_seconds", "must be between 0 and 2592000");
    }
    let key_reload_seconds: u64 = s.take_in_range("key_reload_seconds", 30, 1..=3600);
    // A key must reach every node before any node signs with it, or tokens signed with it
    // fail verification on the nodes that have not loaded it yet.
    if (0..i64::try_from(key_reload_seconds).unwrap_or(i64::MAX)).contains(&key_publish_ahead_seconds) {
        s.problem(
            "key_publish_ahead_seconds",
            format!(
                "{key_publish_ahead_seconds} is shorter than key_reload_seconds ({key_reload_seconds}): a rotated key \
                 must be published on every node (which re-reads keys every key_reload_seconds) before it signs"
            ),
        );
    }
    let assertion_max_lifetime_seconds = s.take::<i64>("assertion_max_lifetime_seconds").unwrap_or(300);
    if !(10..=3600).contains(&assertion_max_lifetime_seconds) {
        s.problem("assertion_max_lifetime_seconds", "must be between 10 and 3600");
    }
    // With a key from a file, that key signs everything; otherwise both FAPI algorithms.
    let default_id_token_algs =
        if signing_key_file.is_some() { vec![signing_alg] } else { vec![SigningAlg::PS256, SigningAlg::ES256] };
    let id_token_signing_algs = s.take::<Vec<SigningAlg>>("id_token_signing_algs").unwrap_or(default_id_token_algs);
    if id_token_signing_algs.is_empty()
        || id_token_signing_algs.iter().any(|a| !matches!(a, SigningAlg::PS256 | SigningAlg::ES256))
    {
        s.problem("id_token_signing_algs", "must list PS256, ES256 or both: FAPI allows no others for ID tokens");
    }
    if signing_key_file.is_some() && id_token_signing_algs.iter().any(|a| *a != signing_alg) {
        s.problem(
            "id_token_signing_algs",
            format!("with signing_key_file, ID tokens can only be signed with that key: set id_token_signing_algs = [\"{signing_alg}\"]"),
        );
    }
    let access_token_audience =
        s.take_strings("access_token_audience").or_else(|| public_url.map(|url| vec![url.to_owned()]));
    if access_token_audience.as_ref().is_some_and(Vec::is_empty) {
        s.problem("access_token_audience", "must list at least one value");
    }
    Some(TokenConfig {
        signing_alg,
        id_token_signing_algs,
        signing_key_file,
        key_publish_ahead_seconds,
        key_reload_interval: std::time::Duration::from_secs(key_reload_seconds),
        access_token_audience: access_token_audience?,
        assertion_max_lifetime_seconds,
    })
}

impl TokenConfig {
    /// Every algorithm the key ring keeps a key for: the access tokens' first.
    pub fn ring_algorithms(&self) -> Vec<SigningAlg> {
        let mut algs = vec![self.signing_alg];
        for alg in &self.id_token_signing_algs {
            if !algs.contains(alg) {
                algs.push(*alg);
            }
        }
        algs
    }
}
