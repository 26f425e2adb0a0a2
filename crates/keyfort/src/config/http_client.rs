//! `[http_client]`: how Keyfort fetches keys and revocation lists.

use std::path::PathBuf;

use super::loader::{Paths, Section};

#[derive(Debug, Clone)]
pub struct HttpClientConfig {
    pub allow_insecure_loopback: bool,
    pub connect_timeout_seconds: u64,
    pub timeout_seconds: u64,
    pub max_response_bytes: usize,
    pub ca_file: Option<PathBuf>,
    pub jwks_cache_seconds: u64,
    pub jwks_min_refresh_seconds: u64,
}

pub(super) fn read(mut s: Section<'_>, paths: &Paths<'_>) -> HttpClientConfig {
    let config = HttpClientConfig {
        allow_insecure_loopback: s.take("allow_insecure_loopback").unwrap_or(false),
        connect_timeout_seconds: s.take("connect_timeout_seconds").unwrap_or(5),
        timeout_seconds: s.take("timeout_seconds").unwrap_or(10),
        max_response_bytes: s.take("max_response_bytes").unwrap_or(1024 * 1024),
        ca_file: s.take::<PathBuf>("ca_file").map(|p| paths.resolve(p)),
        jwks_cache_seconds: s.take("jwks_cache_seconds").unwrap_or(3600),
        jwks_min_refresh_seconds: s.take("jwks_min_refresh_seconds").unwrap_or(60),
    };
    // A zero timeout would make every fetch fail at once.
    for (key, value) in
        [("connect_timeout_seconds", config.connect_timeout_seconds), ("timeout_seconds", config.timeout_seconds)]
    {
        if value == 0 {
            s.problem(key, "must be at least 1 second");
        }
    }
    config
}
