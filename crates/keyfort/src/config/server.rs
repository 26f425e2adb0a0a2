//! `[server]` and `[server.tls]`: where Keyfort listens, who it says it is, and its TLS.

use std::net::SocketAddr;
use std::path::PathBuf;
use std::time::Duration;

use serde::Deserialize;
use url::Url;

use super::loader::{Paths, Section};

#[derive(Debug, Clone)]
pub struct ServerConfig {
    pub listen: SocketAddr,
    /// Issuer and base of every advertised URL, without a trailing slash.
    pub public_url: String,
    pub data_dir: PathBuf,
    pub cert_file: Option<PathBuf>,
    pub key_file: Option<PathBuf>,
    /// PEM bundle of the roots and intermediates trusted for client (transport) certificates.
    pub client_ca_file: Option<PathBuf>,
    pub client_auth: ClientAuthMode,
    pub max_body_bytes: usize,
    /// The largest request line and headers accepted (431 beyond).
    pub max_header_bytes: usize,
    /// From a completed TLS handshake to the first request's headers.
    pub first_request_timeout: Duration,
    /// Between two requests on one connection (HTTP/1.1 keep-alive, HTTP/2).
    pub idle_timeout: Duration,
    /// From the first byte of a request's headers to the last.
    pub header_read_timeout: Duration,
    /// Connections served at once (also capped by the process's descriptor limit).
    pub max_connections: usize,
    /// Connections one client address may hold; `[mtls] trusted_proxies` are exempt.
    pub max_connections_per_ip: usize,
}

/// Whether the TLS listener asks for a client certificate.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum ClientAuthMode {
    /// No client certificates are requested.
    Off,
    /// Clients may present one; each endpoint decides whether it needs it.
    Optional,
    /// The TLS handshake fails without a client certificate.
    Required,
}

/// `[server.tls]`, read on its own because `[mtls]` and `[oauth.dcr]` depend on it even
/// when the rest of `[server]` has problems.
#[derive(Debug, Clone)]
pub(super) struct TlsSettings {
    pub cert_file: Option<PathBuf>,
    pub key_file: Option<PathBuf>,
    pub client_ca_file: Option<PathBuf>,
    pub client_auth: ClientAuthMode,
}

const MAX_BODY_BYTES: std::ops::RangeInclusive<usize> = 1024..=16 * 1024 * 1024;

pub(super) fn read_tls(mut s: Section<'_>, paths: &Paths<'_>) -> TlsSettings {
    let cert_file = s.take::<PathBuf>("cert_file").map(|p| paths.resolve(p));
    let key_file = s.take::<PathBuf>("key_file").map(|p| paths.resolve(p));
    let client_ca_file = s.take::<PathBuf>("client_ca_file").map(|p| paths.resolve(p));
    let client_auth_setting = s.take::<ClientAuthMode>("client_auth");
    match (&cert_file, &key_file) {
        (Some(_), None) => s.problem(
            "key_file",
            "is required with cert_file: set both, or neither to have a development certificate created",
        ),
        (None, Some(_)) => s.problem(
            "cert_file",
            "is required with key_file: set both, or neither to have a development certificate created",
        ),
        _ => {}
    }
    let client_auth = match (client_auth_setting, &client_ca_file) {
        (Some(ClientAuthMode::Off), _) | (None, None) => ClientAuthMode::Off,
        (Some(mode), Some(_)) => mode,
        (None, Some(_)) => ClientAuthMode::Optional,
        (Some(_), None) => {
            s.problem("client_auth", "needs client_ca_file: the CA bundle that transport certificates must chain to");
            ClientAuthMode::Off
        }
    };
    TlsSettings { cert_file, key_file, client_ca_file, client_auth }
}

/// `[server]`; `None` when a required key is missing or wrong (the problem is recorded).
pub(super) fn read(mut s: Section<'_>, tls: &TlsSettings, paths: &Paths<'_>) -> Option<ServerConfig> {
    let listen = s.take_required::<SocketAddr>(
        "listen",
        "an address:port such as \"127.0.0.1:9446\"",
        "the address and port to listen on, e.g. \"127.0.0.1:9446\"",
    );
    let public_url = s
        .take_required::<Url>(
            "public_url",
            "an absolute https URL such as \"https://bank.example\"",
            "the https URL clients reach Keyfort at; it is the issuer",
        )
        .and_then(|url| {
            if url.scheme() != "https" {
                s.problem("public_url", "must be an https URL: it is the issuer clients put in aud");
                None
            } else if url.query().is_some() || url.fragment().is_some() {
                s.problem("public_url", "must not have a query or fragment: it is the base of every advertised URL");
                None
            } else {
                Some(url.as_str().trim_end_matches('/').to_owned())
            }
        });
    let data_dir = paths.resolve(s.take::<PathBuf>("data_dir").unwrap_or_else(|| PathBuf::from("data")));
    let max_body_bytes = s.take::<usize>("max_body_bytes").unwrap_or(64 * 1024);
    if !MAX_BODY_BYTES.contains(&max_body_bytes) {
        s.problem("max_body_bytes", format!("must be between {} and {}", MAX_BODY_BYTES.start(), MAX_BODY_BYTES.end()));
    }
    let max_header_bytes = s.take_in_range("max_header_bytes", 16 * 1024, 4096..=1024 * 1024);
    let seconds = |s: &mut Section<'_>, key, default, max| Duration::from_secs(s.take_in_range(key, default, 1..=max));
    let first_request_timeout = seconds(&mut s, "first_request_timeout_seconds", 10, 300);
    let idle_timeout = seconds(&mut s, "idle_timeout_seconds", 60, 3600);
    let header_read_timeout = seconds(&mut s, "header_read_timeout_seconds", 10, 300);
    let max_connections = s.take_in_range("max_connections", 4096, 16..=1_000_000);
    let max_connections_per_ip = s.take_in_range("max_connections_per_ip", 512, 1..=1_000_000);
    if max_connections_per_ip > max_connections {
        s.problem(
            "max_connections_per_ip",
            format!("{max_connections_per_ip} is more than max_connections ({max_connections}); it must be below it"),
        );
    }
    Some(ServerConfig {
        listen: listen?,
        public_url: public_url?,
        data_dir,
        cert_file: tls.cert_file.clone(),
        key_file: tls.key_file.clone(),
        client_ca_file: tls.client_ca_file.clone(),
        client_auth: tls.client_auth,
        max_body_bytes,
        max_header_bytes,
        first_request_timeout,
        idle_timeout,
        header_read_timeout,
        max_connections,
        max_connections_per_ip,
    })
}
