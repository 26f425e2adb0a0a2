//! `[mtls]`: revocation lists and the TLS-terminating gateway.

use std::path::PathBuf;

use keyfort_core::transport::CertificateProfile;
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
    /// `[mtls.profile_ca_files]`: which CA bundle may issue which certificate profile.
    /// `None` (no such section): every CA of `client_ca_file` may issue every profile. With
    /// the section, a profile not listed is trusted from no CA.
    pub profile_ca_files: Option<Vec<(CertificateProfile, PathBuf)>>,
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
    let profile_ca_files = read_profile_ca_files(&mut s, tls, paths);

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
    MtlsConfig {
        crl_sources,
        crl_refresh_seconds,
        revocation_unavailable,
        gateway_header,
        trusted_proxies,
        profile_ca_files,
    }
}

/// `[mtls.profile_ca_files]`: `legacy_ob`, `obwac`, `eidas`, each the PEM bundle of the CAs
/// (roots or issuing CAs) trusted to issue that profile. The legacy profile is nothing but
/// `O=OpenBanking` in a subject, so without this mapping any trusted CA (a QTSP's, say)
/// could issue a certificate that binds to an Open Banking organisation.
fn read_profile_ca_files(
    s: &mut Section<'_>,
    tls: &TlsSettings,
    paths: &Paths<'_>,
) -> Option<Vec<(CertificateProfile, PathBuf)>> {
    let present = s.has("profile_ca_files");
    let mut section = s.section("profile_ca_files");
    let files: Vec<(CertificateProfile, PathBuf)> = CertificateProfile::ALL
        .into_iter()
        .filter_map(|profile| section.take::<PathBuf>(profile.config_key()).map(|p| (profile, paths.resolve(p))))
        .collect();
    if !present {
        return None;
    }
    if files.is_empty() {
        section.problem(
            "legacy_ob",
            "[mtls.profile_ca_files] lists no profile, so no certificate could be bound: give legacy_ob, obwac and/or \
             eidas the CA bundle trusted for each, or remove the section",
        );
    }
    if tls.client_ca_file.is_none() {
        section
            .problem("legacy_ob", "profile CA files need [server.tls] client_ca_file, the CAs certificates chain to");
    }
    Some(files)
}
