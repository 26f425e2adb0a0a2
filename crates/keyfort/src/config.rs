//! Configuration: a TOML file, checked completely at start-up.
//!
//! Unknown keys are errors (a misspelt security setting must not be silently ignored), and
//! every error names the file, the key and what is wrong. The `[oauth.dcr]` keys keep the
//! names of WSO2 Identity Server's `deployment.toml` so an existing section carries over.

use std::collections::BTreeMap;
use std::net::SocketAddr;
use std::path::{Path, PathBuf};

use keyfort_core::jose::SigningAlg;
use keyfort_core::registration::{AuthMethod, RegistrationPolicy, TokenLifetimes};
use keyfort_core::software_statement::SsaRules;
use keyfort_core::transport::{BindingLevel, BindingRules};
use serde::Deserialize;
use url::Url;

/// A configuration error, already phrased for the operator.
#[derive(Debug, thiserror::Error)]
#[error("{0}")]
pub struct ConfigError(String);

/// Where a JWKS comes from: an https URL (or loopback http in development), or a file.
#[derive(Debug, Clone, PartialEq, Eq, Hash)]
pub enum KeySource {
    Url(Url),
    File(PathBuf),
}

impl std::fmt::Display for KeySource {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            KeySource::Url(u) => write!(f, "{u}"),
            KeySource::File(p) => write!(f, "{}", p.display()),
        }
    }
}

#[derive(Debug, Clone)]
pub struct Config {
    pub server: ServerConfig,
    pub storage_url: String,
    pub dcr: DcrConfig,
    pub token_lifetimes: TokenLifetimes,
    pub token: TokenConfig,
    pub http_client: HttpClientConfig,
    pub mtls: MtlsConfig,
    /// Where Prometheus metrics are served (plain HTTP); `None` disables them.
    pub metrics_listen: Option<SocketAddr>,
    pub log: LogConfig,
}

/// The token service: signing keys and client assertions.
#[derive(Debug, Clone)]
pub struct TokenConfig {
    pub signing_alg: SigningAlg,
    /// A PEM key to sign with instead of database-kept keys, and its kid.
    pub signing_key_file: Option<(PathBuf, String)>,
    /// How long a rotated key is published before it signs.
    pub key_publish_ahead_seconds: i64,
    pub access_token_audience: Vec<String>,
    /// Longest accepted lifetime of a private_key_jwt client assertion.
    pub assertion_max_lifetime_seconds: i64,
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
}

#[derive(Debug, Clone)]
pub struct DcrConfig {
    pub ssa_jwks: Vec<KeySource>,
    pub ssa_signing_algs: Vec<SigningAlg>,
    pub ssa_rules: SsaRules,
    pub policy: RegistrationPolicy,
    pub one_registration_per_software: bool,
    /// Hosts from which software JWKS (named in SSAs) may be fetched.
    pub software_jwks_hosts: Vec<String>,
    /// Registration needs a valid transport certificate.
    pub require_transport_certificate: bool,
    pub binding: BindingRules,
    /// Registration needs an administrator's HTTP Basic credentials (WSO2's setting).
    pub authentication_required: bool,
    /// Accept unsigned JSON registrations without a transport certificate or administrator
    /// (development only: the SSA alone proves nothing).
    pub allow_json_without_proof: bool,
}

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

#[derive(Debug, Clone, Copy, PartialEq, Eq, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum LogFormat {
    Text,
    Json,
}

#[derive(Debug, Clone)]
pub struct LogConfig {
    pub format: LogFormat,
    pub level: String,
}

// ---- The file's shape. Every section denies unknown keys. ----

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct FileConfig {
    server: FileServer,
    #[serde(default)]
    storage: FileStorage,
    #[serde(default)]
    oauth: FileOauth,
    #[serde(default)]
    http_client: FileHttpClient,
    #[serde(default)]
    mtls: FileMtls,
    #[serde(default)]
    metrics: FileMetrics,
    #[serde(default)]
    log: FileLog,
}

#[derive(Deserialize, Default)]
#[serde(deny_unknown_fields)]
struct FileMetrics {
    listen: Option<String>,
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct FileMtls {
    #[serde(default)]
    crl_files: Vec<PathBuf>,
    #[serde(default)]
    crl_urls: Vec<String>,
    #[serde(default = "hour_u")]
    crl_refresh_seconds: u64,
    #[serde(default = "fail_closed")]
    revocation_unavailable: RevocationUnavailable,
    gateway_header: Option<String>,
    #[serde(default)]
    trusted_proxies: Vec<String>,
}

impl Default for FileMtls {
    fn default() -> Self {
        toml::from_str("").expect("every [mtls] key has a default")
    }
}

fn fail_closed() -> RevocationUnavailable {
    RevocationUnavailable::FailClosed
}

fn software_binding() -> String {
    "software".into()
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct FileServer {
    listen: String,
    public_url: String,
    #[serde(default = "default_data_dir")]
    data_dir: PathBuf,
    #[serde(default = "default_max_body")]
    max_body_bytes: usize,
    #[serde(default)]
    tls: FileTls,
}

#[derive(Deserialize, Default)]
#[serde(deny_unknown_fields)]
struct FileTls {
    cert_file: Option<PathBuf>,
    key_file: Option<PathBuf>,
    client_ca_file: Option<PathBuf>,
    client_auth: Option<ClientAuthMode>,
}

#[derive(Deserialize, Default)]
#[serde(deny_unknown_fields)]
struct FileStorage {
    url: Option<String>,
}

#[derive(Deserialize, Default)]
#[serde(deny_unknown_fields)]
struct FileOauth {
    #[serde(default)]
    dcr: FileDcr,
    #[serde(default)]
    token_lifetimes: FileLifetimes,
    #[serde(default)]
    token: FileToken,
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct FileToken {
    #[serde(default = "ps256")]
    signing_alg: String,
    signing_key_file: Option<PathBuf>,
    signing_key_id: Option<String>,
    #[serde(default = "hour")]
    key_publish_ahead_seconds: i64,
    access_token_audience: Option<OneOrMany>,
    #[serde(default = "five_minutes")]
    assertion_max_lifetime_seconds: i64,
}

impl Default for FileToken {
    fn default() -> Self {
        toml::from_str("").expect("every [oauth.token] key has a default")
    }
}

fn ps256() -> String {
    "PS256".into()
}

fn five_minutes() -> i64 {
    300
}

#[derive(Deserialize)]
#[serde(untagged)]
enum OneOrMany {
    One(String),
    Many(Vec<String>),
}

impl OneOrMany {
    fn into_vec(self) -> Vec<String> {
        match self {
            OneOrMany::One(s) => vec![s],
            OneOrMany::Many(v) => v,
        }
    }
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct FileDcr {
    #[serde(alias = "ssa_jwks")]
    ssa_jkws: Option<OneOrMany>,
    #[serde(default = "yes")]
    mandate_ssa: bool,
    #[serde(default = "yes")]
    enable_fapi_enforcement: bool,
    #[serde(default)]
    authentication_required: bool,
    #[serde(default = "default_issuers")]
    ssa_issuers: Vec<String>,
    audience: Option<OneOrMany>,
    software_environment: Option<String>,
    #[serde(default = "default_algs")]
    allowed_signing_algs: Vec<String>,
    token_endpoint_auth_methods: Option<Vec<String>>,
    #[serde(default = "default_skew")]
    clock_skew_seconds: i64,
    #[serde(default = "yes")]
    one_registration_per_software: bool,
    software_jwks_hosts: Option<Vec<String>>,
    role_scopes: Option<BTreeMap<String, Vec<String>>>,
    require_transport_certificate: Option<bool>,
    #[serde(default = "software_binding")]
    certificate_binding: String,
    #[serde(default = "yes")]
    check_psd2_roles: bool,
    #[serde(default)]
    allow_json_without_proof: bool,
}

impl Default for FileDcr {
    fn default() -> Self {
        toml::from_str("").expect("every [oauth.dcr] key has a default")
    }
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct FileLifetimes {
    #[serde(default = "hour")]
    application_seconds: i64,
    #[serde(default = "hour")]
    user_seconds: i64,
    #[serde(default = "day")]
    refresh_seconds: i64,
    #[serde(default = "hour")]
    id_token_seconds: i64,
}

impl Default for FileLifetimes {
    fn default() -> Self {
        toml::from_str("").expect("every lifetime has a default")
    }
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct FileHttpClient {
    #[serde(default)]
    allow_insecure_loopback: bool,
    #[serde(default = "five")]
    connect_timeout_seconds: u64,
    #[serde(default = "ten")]
    timeout_seconds: u64,
    #[serde(default = "mebibyte")]
    max_response_bytes: usize,
    ca_file: Option<PathBuf>,
    #[serde(default = "hour_u")]
    jwks_cache_seconds: u64,
    #[serde(default = "minute")]
    jwks_min_refresh_seconds: u64,
}

impl Default for FileHttpClient {
    fn default() -> Self {
        toml::from_str("").expect("every [http_client] key has a default")
    }
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct FileLog {
    #[serde(default = "text")]
    format: LogFormat,
    #[serde(default = "info")]
    level: String,
}

impl Default for FileLog {
    fn default() -> Self {
        toml::from_str("").expect("every [log] key has a default")
    }
}

fn yes() -> bool {
    true
}
fn default_data_dir() -> PathBuf {
    PathBuf::from("data")
}
fn default_max_body() -> usize {
    64 * 1024
}
fn default_issuers() -> Vec<String> {
    vec!["OpenBanking Ltd".into()]
}
fn default_algs() -> Vec<String> {
    vec!["PS256".into(), "ES256".into()]
}
fn default_skew() -> i64 {
    60
}
fn hour() -> i64 {
    3600
}
fn hour_u() -> u64 {
    3600
}
fn day() -> i64 {
    86400
}
fn five() -> u64 {
    5
}
fn ten() -> u64 {
    10
}
fn minute() -> u64 {
    60
}
fn mebibyte() -> usize {
    1024 * 1024
}
fn text() -> LogFormat {
    LogFormat::Text
}
fn info() -> String {
    "info".into()
}

/// The default role → scope map of the UK Open Banking profile.
pub fn default_role_scopes() -> BTreeMap<String, Vec<String>> {
    BTreeMap::from([
        ("AISP".to_owned(), vec!["accounts".to_owned()]),
        ("PISP".to_owned(), vec!["payments".to_owned()]),
        ("CBPII".to_owned(), vec!["fundsconfirmations".to_owned()]),
    ])
}

impl Config {
    /// Reads and checks a configuration file. Relative paths in it are taken relative to
    /// the file's own directory, so the server behaves the same from any working directory.
    pub fn load(path: &Path) -> Result<Self, ConfigError> {
        let text = std::fs::read_to_string(path)
            .map_err(|e| ConfigError(format!("{}: cannot read the configuration file: {e}", path.display())))?;
        let base = path.parent().map(Path::to_path_buf).unwrap_or_default();
        Self::from_toml(&text, &path.display().to_string(), &base)
    }

    /// Parses and checks configuration text; `origin` names it in errors.
    pub fn from_toml(text: &str, origin: &str, base_dir: &Path) -> Result<Self, ConfigError> {
        let file: FileConfig =
            toml::from_str(text).map_err(|e| ConfigError(format!("{origin}: {}", e.to_string().trim_end())))?;
        let err = |key: &str, what: String| ConfigError(format!("{origin}: {key}: {what}"));
        let resolve = |p: PathBuf| if p.is_absolute() { p } else { base_dir.join(p) };

        // [server]
        let listen: SocketAddr = file.server.listen.parse().map_err(|_| {
            err(
                "[server] listen",
                format!("\"{}\" is not an address:port such as \"127.0.0.1:9446\"", file.server.listen),
            )
        })?;
        let public_url = Url::parse(&file.server.public_url).map_err(|e| {
            err("[server] public_url", format!("\"{}\" is not an absolute URL ({e})", file.server.public_url))
        })?;
        if public_url.scheme() != "https" {
            return Err(err("[server] public_url", "must be an https URL: it is the issuer clients put in aud".into()));
        }
        if public_url.query().is_some() || public_url.fragment().is_some() {
            return Err(err("[server] public_url", "must not have a query or fragment".into()));
        }
        let public_url = public_url.as_str().trim_end_matches('/').to_owned();
        let data_dir = resolve(file.server.data_dir);
        let tls = file.server.tls;
        if tls.cert_file.is_some() != tls.key_file.is_some() {
            return Err(err(
                "[server.tls]",
                "set both cert_file and key_file, or neither (for a development certificate)".into(),
            ));
        }
        if !(1024..=16 * 1024 * 1024).contains(&file.server.max_body_bytes) {
            return Err(err("[server] max_body_bytes", "must be between 1024 and 16777216".into()));
        }

        // [storage]
        let storage_url = match file.storage.url {
            Some(url) => {
                if !(url.starts_with("sqlite:") || url.starts_with("postgres://") || url.starts_with("postgresql://")) {
                    return Err(err(
                        "[storage] url",
                        format!("\"{}\" must start with sqlite:// or postgres://", redact_url(&url)),
                    ));
                }
                url
            }
            None => format!("sqlite://{}", data_dir.join("keyfort.db").display()),
        };

        // [oauth.dcr]
        let dcr = file.oauth.dcr;
        let ssa_jwks: Vec<KeySource> = dcr
            .ssa_jkws
            .map(OneOrMany::into_vec)
            .unwrap_or_default()
            .into_iter()
            .map(|s| parse_key_source(&s, &resolve).map_err(|e| err("[oauth.dcr] ssa_jkws", e)))
            .collect::<Result<_, _>>()?;
        if ssa_jwks.is_empty() {
            return Err(err(
                "[oauth.dcr] ssa_jkws",
                "is required: the URL (or file) of the Open Banking directory's JWKS that signs software statements"
                    .into(),
            ));
        }
        let allowed_algs: Vec<SigningAlg> = dcr
            .allowed_signing_algs
            .iter()
            .map(|a| a.parse::<SigningAlg>().map_err(|e| err("[oauth.dcr] allowed_signing_algs", e.to_string())))
            .collect::<Result<_, _>>()?;
        if allowed_algs.is_empty() {
            return Err(err("[oauth.dcr] allowed_signing_algs", "must list at least one algorithm".into()));
        }
        let fapi = dcr.enable_fapi_enforcement;
        let auth_methods: Vec<AuthMethod> = match dcr.token_endpoint_auth_methods {
            None if fapi => vec![AuthMethod::PrivateKeyJwt, AuthMethod::TlsClientAuth],
            None => vec![
                AuthMethod::PrivateKeyJwt,
                AuthMethod::TlsClientAuth,
                AuthMethod::ClientSecretBasic,
                AuthMethod::ClientSecretPost,
            ],
            Some(list) => list
                .iter()
                .map(|m| {
                    let method: AuthMethod = m.parse().map_err(|bad| {
                        err("[oauth.dcr] token_endpoint_auth_methods", format!("\"{bad}\" is not a token endpoint authentication method"))
                    })?;
                    if fapi && !matches!(method, AuthMethod::PrivateKeyJwt | AuthMethod::TlsClientAuth) {
                        return Err(err(
                            "[oauth.dcr] token_endpoint_auth_methods",
                            format!("\"{m}\" is not allowed under FAPI enforcement (only private_key_jwt and tls_client_auth)"),
                        ));
                    }
                    Ok(method)
                })
                .collect::<Result<_, _>>()?,
        };
        if auth_methods.is_empty() {
            return Err(err("[oauth.dcr] token_endpoint_auth_methods", "must list at least one method".into()));
        }
        if !(0..=600).contains(&dcr.clock_skew_seconds) {
            return Err(err("[oauth.dcr] clock_skew_seconds", "must be between 0 and 600".into()));
        }
        if dcr.ssa_issuers.is_empty() {
            return Err(err("[oauth.dcr] ssa_issuers", "must list at least one issuer".into()));
        }
        let audiences = dcr.audience.map(OneOrMany::into_vec).unwrap_or_else(|| vec![public_url.clone()]);
        if audiences.is_empty() {
            return Err(err("[oauth.dcr] audience", "must list at least one value".into()));
        }
        let software_jwks_hosts = match dcr.software_jwks_hosts {
            Some(hosts) => hosts.into_iter().map(|h| h.to_ascii_lowercase()).collect(),
            None => ssa_jwks
                .iter()
                .filter_map(|s| match s {
                    KeySource::Url(u) => u.host_str().map(str::to_ascii_lowercase),
                    KeySource::File(_) => None,
                })
                .collect(),
        };

        let client_auth = match (tls.client_auth, &tls.client_ca_file) {
            (Some(ClientAuthMode::Off), _) | (None, None) => ClientAuthMode::Off,
            (Some(mode), Some(_)) => mode,
            (None, Some(_)) => ClientAuthMode::Optional,
            (Some(_), None) => {
                return Err(err(
                    "[server.tls] client_auth",
                    "needs client_ca_file: the CA bundle that transport certificates must chain to".into(),
                ))
            }
        };
        let binding_level = match dcr.certificate_binding.as_str() {
            "off" => BindingLevel::Off,
            "organisation" | "organization" => BindingLevel::Organisation,
            "software" => BindingLevel::Software,
            other => {
                return Err(err(
                    "[oauth.dcr] certificate_binding",
                    format!("\"{other}\" is not one of \"software\", \"organisation\", \"off\""),
                ))
            }
        };

        // [mtls]
        let m = file.mtls;
        let mut crl_sources: Vec<KeySource> = m.crl_files.into_iter().map(|p| KeySource::File(resolve(p))).collect();
        for raw in &m.crl_urls {
            let url = Url::parse(raw).map_err(|e| err("[mtls] crl_urls", format!("\"{raw}\" is not a URL ({e})")))?;
            let loopback_dev = url.scheme() == "http"
                && file.http_client.allow_insecure_loopback
                && crate::directory::is_loopback_url(&url);
            if url.scheme() != "https" && !loopback_dev {
                return Err(err(
                    "[mtls] crl_urls",
                    format!(
                        "\"{raw}\" must be https (download http CRLs with a cron job and list the files in crl_files)"
                    ),
                ));
            }
            crl_sources.push(KeySource::Url(url));
        }
        let trusted_proxies = m
            .trusted_proxies
            .iter()
            .map(|p| {
                p.parse::<ipnet::IpNet>()
                    .or_else(|_| p.parse::<std::net::IpAddr>().map(ipnet::IpNet::from))
                    .map_err(|_| err("[mtls] trusted_proxies", format!("\"{p}\" is not an IP address or CIDR block")))
            })
            .collect::<Result<Vec<_>, _>>()?;
        if m.gateway_header.is_some() && trusted_proxies.is_empty() {
            return Err(err(
                "[mtls] trusted_proxies",
                "is required with gateway_header: only the gateway's addresses may forward a client certificate".into(),
            ));
        }
        if client_auth == ClientAuthMode::Off && m.gateway_header.is_none() && !crl_sources.is_empty() {
            return Err(err(
                "[mtls] crl_files",
                "CRLs need client certificates: set [server.tls] client_ca_file".into(),
            ));
        }
        if m.gateway_header.is_some() && tls.client_ca_file.is_none() {
            return Err(err(
                "[mtls] gateway_header",
                "needs [server.tls] client_ca_file: forwarded certificates are checked against it".into(),
            ));
        }
        if m.crl_refresh_seconds < 10 {
            return Err(err("[mtls] crl_refresh_seconds", "must be at least 10".into()));
        }
        let certificates_possible = client_auth != ClientAuthMode::Off || m.gateway_header.is_some();
        let require_transport_certificate = match dcr.require_transport_certificate {
            Some(true) if !certificates_possible => {
                return Err(err(
                    "[oauth.dcr] require_transport_certificate",
                    "true needs [server.tls] client_ca_file with client_auth \"optional\" or \"required\", or a [mtls] gateway_header".into(),
                ))
            }
            Some(value) => value,
            None => certificates_possible,
        };

        // [oauth.token_lifetimes]
        let l = file.oauth.token_lifetimes;
        for (key, v) in [
            ("application_seconds", l.application_seconds),
            ("user_seconds", l.user_seconds),
            ("refresh_seconds", l.refresh_seconds),
            ("id_token_seconds", l.id_token_seconds),
        ] {
            if !(60..=31_536_000).contains(&v) {
                return Err(err(
                    &format!("[oauth.token_lifetimes] {key}"),
                    "must be between 60 and 31536000 seconds".into(),
                ));
            }
        }

        // [oauth.token]
        let t = file.oauth.token;
        let signing_alg: SigningAlg = t
            .signing_alg
            .parse()
            .map_err(|e: keyfort_core::jose::UnsupportedAlg| err("[oauth.token] signing_alg", e.to_string()))?;
        let signing_key_file = match (t.signing_key_file, t.signing_key_id) {
            (Some(path), Some(kid)) => Some((resolve(path), kid)),
            (None, None) => None,
            _ => {
                return Err(err(
                    "[oauth.token] signing_key_file",
                    "set both signing_key_file and signing_key_id, or neither".into(),
                ))
            }
        };
        if !(0..=30 * 86400).contains(&t.key_publish_ahead_seconds) {
            return Err(err("[oauth.token] key_publish_ahead_seconds", "must be between 0 and 2592000".into()));
        }
        if !(10..=3600).contains(&t.assertion_max_lifetime_seconds) {
            return Err(err("[oauth.token] assertion_max_lifetime_seconds", "must be between 10 and 3600".into()));
        }
        let access_token_audience =
            t.access_token_audience.map(OneOrMany::into_vec).unwrap_or_else(|| vec![public_url.clone()]);

        // [http_client]
        let h = file.http_client;
        if h.timeout_seconds == 0 || h.connect_timeout_seconds == 0 {
            return Err(err("[http_client] timeout_seconds", "timeouts must be at least 1 second".into()));
        }

        let metrics_listen = match file.metrics.listen {
            None => None,
            Some(raw) => Some(raw.parse::<SocketAddr>().map_err(|_| {
                err("[metrics] listen", format!("\"{raw}\" is not an address:port such as \"127.0.0.1:9464\""))
            })?),
        };

        Ok(Config {
            server: ServerConfig {
                listen,
                public_url,
                data_dir,
                cert_file: tls.cert_file.map(resolve),
                key_file: tls.key_file.map(resolve),
                client_ca_file: tls.client_ca_file.map(resolve),
                client_auth,
                max_body_bytes: file.server.max_body_bytes,
            },
            storage_url,
            dcr: DcrConfig {
                ssa_jwks,
                ssa_signing_algs: allowed_algs.clone(),
                ssa_rules: SsaRules {
                    issuers: dcr.ssa_issuers,
                    software_environment: dcr.software_environment,
                    clock_skew: dcr.clock_skew_seconds,
                },
                policy: RegistrationPolicy {
                    fapi,
                    mandate_ssa: dcr.mandate_ssa,
                    audiences,
                    allowed_algs,
                    auth_methods,
                    role_scopes: dcr.role_scopes.unwrap_or_else(default_role_scopes),
                    clock_skew: dcr.clock_skew_seconds,
                },
                one_registration_per_software: dcr.one_registration_per_software,
                software_jwks_hosts,
                require_transport_certificate,
                binding: BindingRules { level: binding_level, check_psd2_roles: dcr.check_psd2_roles },
                authentication_required: dcr.authentication_required,
                allow_json_without_proof: dcr.allow_json_without_proof,
            },
            token_lifetimes: TokenLifetimes {
                application: l.application_seconds,
                user: l.user_seconds,
                refresh: l.refresh_seconds,
                id_token: l.id_token_seconds,
            },
            token: TokenConfig {
                signing_alg,
                signing_key_file,
                key_publish_ahead_seconds: t.key_publish_ahead_seconds,
                access_token_audience,
                assertion_max_lifetime_seconds: t.assertion_max_lifetime_seconds,
            },
            http_client: HttpClientConfig {
                allow_insecure_loopback: h.allow_insecure_loopback,
                connect_timeout_seconds: h.connect_timeout_seconds,
                timeout_seconds: h.timeout_seconds,
                max_response_bytes: h.max_response_bytes,
                ca_file: h.ca_file.map(resolve),
                jwks_cache_seconds: h.jwks_cache_seconds,
                jwks_min_refresh_seconds: h.jwks_min_refresh_seconds,
            },
            mtls: MtlsConfig {
                crl_sources,
                crl_refresh_seconds: m.crl_refresh_seconds,
                revocation_unavailable: m.revocation_unavailable,
                gateway_header: m.gateway_header.map(|h| h.to_ascii_lowercase()),
                trusted_proxies,
            },
            metrics_listen,
            log: LogConfig { format: file.log.format, level: file.log.level },
        })
    }
}

fn parse_key_source(raw: &str, resolve: &dyn Fn(PathBuf) -> PathBuf) -> Result<KeySource, String> {
    if raw.contains("://") {
        let url = Url::parse(raw).map_err(|e| format!("\"{raw}\" is not a valid URL ({e})"))?;
        return match url.scheme() {
            "https" | "http" => Ok(KeySource::Url(url)),
            "file" => {
                url.to_file_path().map(KeySource::File).map_err(|()| format!("\"{raw}\" is not a usable file URL"))
            }
            other => Err(format!("\"{raw}\" uses scheme {other}; use https:// or a file path")),
        };
    }
    Ok(KeySource::File(resolve(PathBuf::from(raw))))
}

/// Hides the password of a database URL in messages.
pub fn redact_url(url: &str) -> String {
    match Url::parse(url) {
        Ok(mut u) if u.password().is_some() => {
            let _ = u.set_password(Some("***"));
            u.to_string()
        }
        _ => url.to_owned(),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    const MINIMAL: &str = r#"
[server]
listen = "127.0.0.1:9446"
public_url = "https://bank.example"
[oauth.dcr]
ssa_jkws = "https://keystore.example/dir.jwks"
"#;

    fn load(text: &str) -> Result<Config, ConfigError> {
        Config::from_toml(text, "test.toml", Path::new("/etc/keyfort"))
    }

    #[test]
    fn defaults_follow_the_issue() {
        let c = load(MINIMAL).unwrap();
        assert!(c.dcr.policy.mandate_ssa && c.dcr.policy.fapi);
        assert_eq!(c.dcr.ssa_rules.issuers, vec!["OpenBanking Ltd"]);
        assert_eq!(c.dcr.policy.audiences, vec!["https://bank.example"]);
        assert_eq!(c.dcr.software_jwks_hosts, vec!["keystore.example"]);
        assert_eq!(c.storage_url, "sqlite:///etc/keyfort/data/keyfort.db");
        assert!(!c.http_client.allow_insecure_loopback);
    }

    #[test]
    fn wso2_spellings_carry_over() {
        let alt = MINIMAL.replace("ssa_jkws", "ssa_jwks");
        assert!(load(&alt).is_ok());
        let list = MINIMAL
            .replace("\"https://keystore.example/dir.jwks\"", "[\"https://a.example/1.jwks\", \"keys/dir.jwks\"]");
        let c = load(&list).unwrap();
        assert_eq!(c.dcr.ssa_jwks[1], KeySource::File(PathBuf::from("/etc/keyfort/keys/dir.jwks")));
    }

    #[test]
    fn errors_name_file_key_and_problem() {
        let unknown = load(&format!("{MINIMAL}mandate_sas = false\n")).unwrap_err().to_string();
        assert!(unknown.contains("test.toml") && unknown.contains("mandate_sas"), "{unknown}");
        let bad_url = load(&MINIMAL.replace("https://bank.example", "http://bank.example")).unwrap_err().to_string();
        assert!(bad_url.contains("[server] public_url") && bad_url.contains("https"), "{bad_url}");
        let no_jwks =
            load(&MINIMAL.replace("ssa_jkws = \"https://keystore.example/dir.jwks\"", "")).unwrap_err().to_string();
        assert!(no_jwks.contains("ssa_jkws") && no_jwks.contains("required"), "{no_jwks}");
        let half_tls = load(&format!("{MINIMAL}[server.tls]\ncert_file = \"c.pem\"\n")).unwrap_err().to_string();
        assert!(half_tls.contains("key_file"), "{half_tls}");
        let secret = load(&format!("{MINIMAL}token_endpoint_auth_methods = [\"client_secret_basic\"]\n"))
            .unwrap_err()
            .to_string();
        assert!(secret.contains("FAPI"), "{secret}");
        let hmac = load(&format!("{MINIMAL}allowed_signing_algs = [\"HS256\"]\n")).unwrap_err().to_string();
        assert!(hmac.contains("HMAC"), "{hmac}");
    }

    #[test]
    fn database_passwords_are_redacted() {
        assert_eq!(redact_url("postgres://u:pw@h/db"), "postgres://u:***@h/db");
    }
}
