//! `[mtls]`: revocation lists and the TLS-terminating gateway.

use std::path::PathBuf;

use serde::Deserialize;
use url::Url;

use super::loader::{Paths, Section};
use super::server::{ClientAuthMode, TlsSettings};
use super::sources::{check_fetchable, KeySource};

/// What to do when a certificate's revocation status cannot be established (its CRL could
/// not be loaded, or has expired).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum RevocationUnavailable {
    FailClosed,
    FailOpen,
}

/// Mutual TLS trust: CRLs and the TLS-terminating gateway.
#[derive(Debug, Clone)]
pub struct MtlsConfig {
    pub crl_sources: Vec<KeySource>,
    pub crl_refresh_seconds: u64,
    pub revocation_unavailable: RevocationUnavailable,
    /// Header carrying the client certificate when a gateway terminates TLS.
    pub gateway_header: Option<String>,
    /// Peers allowed to set `gateway_header`.
    pub trusted_proxies: Vec<ipnet::IpNet>,
}

pub(super) fn read(
    mut s: Section<'_>,
    tls: &TlsSettings,
    allow_insecure_loopback: bool,
    paths: &Paths<'_>,
) -> MtlsConfig {
    let crl_files = s.take::<Vec<PathBuf>>("crl_files").unwrap_or_default();
    let crl_urls = s.take::<Vec<String>>("crl_urls").unwrap_or_default();
    let crl_refresh_seconds = s.take("crl_refresh_seconds").unwrap_or(3600);
    let revocation_unavailable = s.take("revocation_unavailable").unwrap_or(RevocationUnavailable::FailClosed);
    let gateway_header = s.take::<String>("gateway_header").map(|h| h.to_ascii_lowercase());
    let proxies = s.take::<Vec<String>>("trusted_proxies").unwrap_or_default();

    let mut crl_sources: Vec<KeySource> = crl_files.iter().map(|p| KeySource::File(paths.resolve(p.clone()))).collect();
    for raw in &crl_urls {
        let url = match Url::parse(raw) {
            Ok(url) => url,
            Err(e) => {
                s.problem("crl_urls", format!("\"{raw}\" is not a URL ({e})"));
                continue;
            }
        };
        // CAs mostly publish CRLs over plain http, hence the advice on what to do instead.
        let advice = " (download http CRLs with a cron job and list the files in crl_files)";
        match check_fetchable(&url, allow_insecure_loopback, advice) {
            Ok(()) => crl_sources.push(KeySource::Url(url)),
            Err(why) => s.problem("crl_urls", why),
        }
    }
    let mut trusted_proxies = Vec::new();
    for raw in &proxies {
        match raw.parse::<ipnet::IpNet>().or_else(|_| raw.parse::<std::net::IpAddr>().map(ipnet::IpNet::from)) {
            Ok(net) => trusted_proxies.push(net),
            Err(_) => s.problem(
                "trusted_proxies",
                format!("\"{raw}\" is not an IP address or CIDR block such as \"10.0.0.0/8\""),
            ),
        }
    }

    if gateway_header.is_some() && proxies.is_empty() {
        s.problem(
            "trusted_proxies",
            "is required with gateway_header: only the gateway's addresses may forward a client certificate",
        );
    }
    if gateway_header.is_some() && tls.client_ca_file.is_none() {
        s.problem("gateway_header", "needs [server.tls] client_ca_file: forwarded certificates are checked against it");
    }
    let has_crls = !crl_files.is_empty() || !crl_urls.is_empty();
    if has_crls && tls.client_auth == ClientAuthMode::Off && gateway_header.is_none() {
        let key = if crl_files.is_empty() { "crl_urls" } else { "crl_files" };
        s.problem(key, "CRLs need client certificates: set [server.tls] client_ca_file");
    }
    if crl_refresh_seconds < 10 {
        s.problem("crl_refresh_seconds", "must be at least 10");
    }
    MtlsConfig { crl_sources, crl_refresh_seconds, revocation_unavailable, gateway_header, trusted_proxies }
}
