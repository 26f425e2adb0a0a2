//! An offline stand-in for the Open Banking directory, for development, tests and the demo:
//! a directory CA, the directory's SSA signing key, organisations and software with their
//! signing keys, transport certificates and software statements, and a keystore that
//! publishes the JWKS at the same URL shapes as the real one.
//!
//! Layout of a sandbox directory:
//! - `sandbox.json`: the manifest (keystore URL, directory kid, organisations, software);
//! - `ca/`: root and issuing CA (`root.pem`, `issuing.pem`, their keys), `bundle.pem`;
//! - `directory/signing.key`: the SSA signing key;
//! - `keystore/`: what `sandbox serve` publishes (`openbanking.jwks`, `<org_id>/...jwks`);
//! - `software/<software_id>/`: `ssa.jwt`, `signing.key`, `transport.pem`/`.key` (legacy
//!   OB profile), `obwac.pem`/`.key` (OBWAC profile);
//! - `bank/`: the sandbox bank's resource-server certificate and account data ([`bank`]).

pub mod bank;
pub mod pki;

use std::net::{IpAddr, Ipv4Addr, SocketAddr};
use std::path::{Path, PathBuf};

use anyhow::Context;
use keyfort_core::clock::{Clock, SystemClock};
use keyfort_core::jose::{SigningAlg, SigningKey};
use serde::{Deserialize, Serialize};
use serde_json::{json, Value};
use url::{Host, Url};

pub use pki::Authority;

/// Where a sandbox's keystore is served by default.
pub const DEFAULT_KEYSTORE_URL: &str = "http://127.0.0.1:8090";
/// The `iss` of sandbox software statements, as the real directory's.
pub const SSA_ISSUER: &str = "OpenBanking Ltd";
const DIRECTORY_KID: &str = "sandbox-directory-ps256";

/// A keystore URL, parsed once for everything that serves it or names it: `sandbox
/// serve`, `serve --sandbox` and the software statements.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct KeystoreUrl(Url);

impl KeystoreUrl {
    /// Accepts an `http://` or `https://` URL with a host and no path: the keystore is
    /// served at the root, where the JWKS paths of its software statements start.
    pub fn parse(raw: &str) -> anyhow::Result<Self> {
        let url = Url::parse(raw).map_err(|e| anyhow::anyhow!("keystore URL \"{raw}\" is not a URL ({e})"))?;
        if !matches!(url.scheme(), "http" | "https") {
            anyhow::bail!("keystore URL \"{raw}\" must be http:// or https://");
        }
        if url.host().is_none() || url.port_or_known_default().is_none() {
            anyhow::bail!("keystore URL \"{raw}\" names no host");
        }
        if url.path() != "/" || url.query().is_some() || url.fragment().is_some() {
            anyhow::bail!("keystore URL \"{raw}\" must have no path: the keystore is served at the root of its host");
        }
        Ok(Self(url))
    }

    pub fn is_https(&self) -> bool {
        self.0.scheme() == "https"
    }

    pub fn url(&self) -> &Url {
        &self.0
    }

    /// The local address to serve the keystore on: the URL's IP address, or 127.0.0.1 for
    /// `localhost`, with its port. Any other host name could be any machine, so it needs an
    /// explicit address (`sandbox serve --listen`).
    pub fn listen_address(&self) -> anyhow::Result<SocketAddr> {
        let port = self.0.port_or_known_default().unwrap_or(80);
        let ip = match self.0.host() {
            Some(Host::Ipv4(ip)) => IpAddr::V4(ip),
            Some(Host::Ipv6(ip)) => IpAddr::V6(ip),
            Some(Host::Domain(name)) if name.eq_ignore_ascii_case("localhost") => IpAddr::V4(Ipv4Addr::LOCALHOST),
            _ => anyhow::bail!(
                "the keystore URL {} does not name an IP address or localhost, so the address to serve it on is unknown",
                self.0
            ),
        };
        Ok(SocketAddr::new(ip, port))
    }
}

impl std::fmt::Display for KeystoreUrl {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(self.0.as_str().trim_end_matches('/'))
    }
}

#[derive(Serialize, Deserialize, Clone)]
pub struct Manifest {
    pub keystore_url: String,
    pub directory_kid: String,
    pub software: Vec<Software>,
}

#[derive(Serialize, Deserialize, Clone)]
pub struct Software {
    pub org_id: String,
    pub org_name: String,
    pub software_id: String,
    pub client_name: String,
    pub roles: Vec<String>,
    pub redirect_uris: Vec<String>,
    pub signing_kid: String,
}

/// The files of one software statement's holder, as `keyfort tpp` needs them.
pub struct SoftwareFiles {
    pub ssa: PathBuf,
    pub signing_key: PathBuf,
    pub kid: String,
    pub transport_cert: PathBuf,
    pub transport_key: PathBuf,
    pub obwac_cert: PathBuf,
    pub obwac_key: PathBuf,
}

pub struct Sandbox {
    pub dir: PathBuf,
    pub manifest: Manifest,
}

fn write(path: &Path, contents: impl AsRef<[u8]>) -> anyhow::Result<()> {
    if let Some(parent) = path.parent() {
        std::fs::create_dir_all(parent)?;
    }
    std::fs::write(path, contents).with_context(|| format!("writing {}", path.display()))
}

/// Writes a private key: owner-only (the file and any directory made for it).
fn write_key(path: &Path, contents: impl AsRef<[u8]>) -> anyhow::Result<()> {
    crate::files::write_private(path, contents.as_ref()).with_context(|| format!("writing {}", path.display()))
}

fn pem(label: &str, der: &[u8]) -> String {
    use base64::Engine;
    let body = base64::engine::general_purpose::STANDARD.encode(der);
    let lines: Vec<&str> = body.as_bytes().chunks(64).map(|c| std::str::from_utf8(c).unwrap_or_default()).collect();
    format!("-----BEGIN {label}-----\n{}\n-----END {label}-----\n", lines.join("\n"))
}

/// A random identifier of `len` characters from `alphabet`-like base64url output.
fn random_id(prefix: &str, len: usize) -> String {
    let raw: String =
        keyfort_core::secret::random_b64url(len * 2).chars().filter(char::is_ascii_alphanumeric).take(len).collect();
    format!("{prefix}{raw}")
}

impl SoftwareFiles {
    /// The files of the software directory `dir` (`<sandbox>/software/<software_id>`), with
    /// the kid from its `software.json` (or, for a sandbox made before that file, from the
    /// sandbox's manifest two levels up).
    pub fn from_dir(dir: &Path) -> anyhow::Result<Self> {
        let described: Option<Software> = match std::fs::read_to_string(dir.join("software.json")) {
            Ok(text) => Some(serde_json::from_str(&text).with_context(|| format!("{}/software.json", dir.display()))?),
            Err(_) => None,
        };
        let kid = match described {
            Some(software) => software.signing_kid,
            None => {
                let software_id = dir.file_name().and_then(|n| n.to_str()).unwrap_or_default().to_owned();
                let sandbox = dir.parent().and_then(Path::parent).map(Sandbox::open).transpose().ok().flatten();
                let files = sandbox.and_then(|s| s.files(&software_id).ok());
                files.map(|f| f.kid).ok_or_else(|| {
                    anyhow::anyhow!(
                        "{} is not a sandbox software directory (no software.json, and no sandbox holds a software {software_id}); \
                         name the files with --ssa, --signing-key, --kid, --cert and --key",
                        dir.display()
                    )
                })?
            }
        };
        if !dir.join("ssa.jwt").exists() {
            anyhow::bail!("{} holds no ssa.jwt: give the directory `sandbox add-software` printed", dir.display());
        }
        Ok(Self {
            ssa: dir.join("ssa.jwt"),
            signing_key: dir.join("signing.key"),
            kid,
            transport_cert: dir.join("transport.pem"),
            transport_key: dir.join("transport.key"),
            obwac_cert: dir.join("obwac.pem"),
            obwac_key: dir.join("obwac.key"),
        })
    }
}

impl Sandbox {
    /// Creates a sandbox directory: CA, directory signing key, empty keystore.
    pub fn init(dir: &Path, keystore_url: &str) -> anyhow::Result<Self> {
        if dir.join("sandbox.json").exists() {
            anyhow::bail!("{} already holds a sandbox", dir.display());
        }
        KeystoreUrl::parse(keystore_url)?;
        let (root, issuing) = pki::new_directory_ca()?;
        write(&dir.join("ca/root.pem"), &root.cert_pem)?;
        write_key(&dir.join("ca/root.key"), &root.key_pem)?;
        write(&dir.join("ca/issuing.pem"), &issuing.cert_pem)?;
        write_key(&dir.join("ca/issuing.key"), &issuing.key_pem)?;
        write(&dir.join("ca/bundle.pem"), format!("{}{}", root.cert_pem, issuing.cert_pem))?;
        let directory_key = SigningKey::generate(SigningAlg::PS256, DIRECTORY_KID).map_err(anyhow::Error::msg)?;
        write_key(&dir.join("directory/signing.key"), pem("PRIVATE KEY", &directory_key.to_pkcs8_der()))?;
        write(&dir.join("keystore/openbanking.jwks"), json!({"keys": [directory_key.public_jwk()]}).to_string())?;
        let (server_cert, server_key) = pki::issue_server(&issuing)?;
        write(&dir.join("ca/keystore-server.pem"), server_cert)?;
        write_key(&dir.join("ca/keystore-server.key"), server_key)?;
        let manifest = Manifest {
            keystore_url: keystore_url.trim_end_matches('/').to_owned(),
            directory_kid: DIRECTORY_KID.into(),
            software: vec![],
        };
        write(&dir.join("sandbox.json"), serde_json::to_string_pretty(&manifest)?)?;
        let sandbox = Self { dir: dir.to_path_buf(), manifest };
        sandbox.resource_server()?;
        Ok(sandbox)
    }

    pub fn open(dir: &Path) -> anyhow::Result<Self> {
        let text = std::fs::read_to_string(dir.join("sandbox.json"))
            .with_context(|| format!("{} is not a sandbox (run `keyfort sandbox init` first)", dir.display()))?;
        Ok(Self { dir: dir.to_path_buf(), manifest: serde_json::from_str(&text)? })
    }

    /// The keystore's URL, parsed.
    pub fn keystore_url(&self) -> anyhow::Result<KeystoreUrl> {
        KeystoreUrl::parse(&self.manifest.keystore_url)
    }

    pub fn ca_bundle(&self) -> PathBuf {
        self.dir.join("ca/bundle.pem")
    }

    /// The URL of the JWKS that signs this sandbox's software statements.
    pub fn directory_jwks_url(&self) -> String {
        format!("{}/openbanking.jwks", self.manifest.keystore_url)
    }

    fn save(&self) -> anyhow::Result<()> {
        write(&self.dir.join("sandbox.json"), serde_json::to_string_pretty(&self.manifest)?)
    }

    pub fn files(&self, software_id: &str) -> anyhow::Result<SoftwareFiles> {
        let s = self
            .manifest
            .software
            .iter()
            .find(|s| s.software_id == software_id)
            .ok_or_else(|| anyhow::anyhow!("no software {software_id} in this sandbox"))?;
        let dir = self.dir.join("software").join(software_id);
        Ok(SoftwareFiles {
            ssa: dir.join("ssa.jwt"),
            signing_key: dir.join("signing.key"),
            kid: s.signing_kid.clone(),
            transport_cert: dir.join("transport.pem"),
            transport_key: dir.join("transport.key"),
            obwac_cert: dir.join("obwac.pem"),
            obwac_key: dir.join("obwac.key"),
        })
    }

    /// Adds a software statement: organisation (new or existing), signing key, transport
    /// certificates in both OB profiles, the keystore's JWKS, and the signed SSA.
    pub fn add_software(
        &mut self,
        org_name: &str,
        org_id: Option<&str>,
        software_id: Option<&str>,
        client_name: Option<&str>,
        roles: &[String],
        redirect_uris: &[String],
    ) -> anyhow::Result<Software> {
        for role in roles {
            if !["AISP", "PISP", "CBPII", "ASPSP"].contains(&role.as_str()) {
                anyhow::bail!("role {role} is not one of AISP, PISP, CBPII, ASPSP");
            }
        }
        if roles.is_empty() || redirect_uris.is_empty() {
            anyhow::bail!("give at least one --roles value and one --redirect-uri");
        }
        for uri in redirect_uris {
            keyfort_core::redirect_uri::RedirectUri::parse(uri).map_err(anyhow::Error::msg)?;
        }
        let existing_org = self.manifest.software.iter().find(|s| s.org_name == org_name).map(|s| s.org_id.clone());
        let org_id = org_id.map(str::to_owned).or(existing_org).unwrap_or_else(|| random_id("0015800001", 8));
        let software_id = software_id.map(str::to_owned).unwrap_or_else(|| random_id("", 22));
        if self.manifest.software.iter().any(|s| s.software_id == software_id) {
            anyhow::bail!("software {software_id} already exists in this sandbox");
        }
        let software = Software {
            org_id: org_id.clone(),
            org_name: org_name.to_owned(),
            software_id: software_id.clone(),
            client_name: client_name.map(str::to_owned).unwrap_or_else(|| format!("{org_name} App")),
            roles: roles.to_vec(),
            redirect_uris: redirect_uris.to_vec(),
            signing_kid: random_id("", 27),
        };
        let dir = self.dir.join("software").join(&software_id);
        let signing = SigningKey::generate(SigningAlg::PS256, &software.signing_kid).map_err(anyhow::Error::msg)?;
        write_key(&dir.join("signing.key"), pem("PRIVATE KEY", &signing.to_pkcs8_der()))?;
        let issuing = Authority {
            cert_pem: std::fs::read_to_string(self.dir.join("ca/issuing.pem"))?,
            key_pem: std::fs::read_to_string(self.dir.join("ca/issuing.key"))?,
        };
        let (cert, key) = pki::issue_transport(&issuing, &org_id, &software_id, pki::Profile::LegacyTransport)?;
        write(&dir.join("transport.pem"), cert)?;
        write_key(&dir.join("transport.key"), key)?;
        let (cert, key) =
            pki::issue_transport(&issuing, &org_id, &software_id, pki::Profile::Obwac { org_name, roles })?;
        write(&dir.join("obwac.pem"), cert)?;
        write_key(&dir.join("obwac.key"), key)?;

        let keystore = self.dir.join("keystore").join(&org_id);
        write(&keystore.join(format!("{software_id}.jwks")), json!({"keys": [signing.public_jwk()]}).to_string())?;
        write(&keystore.join("revoked").join(format!("{software_id}.jwks")), json!({"keys": []}).to_string())?;
        if !keystore.join(format!("{org_id}.jwks")).exists() {
            let org_key = SigningKey::generate(SigningAlg::PS256, random_id("", 27)).map_err(anyhow::Error::msg)?;
            write(&keystore.join(format!("{org_id}.jwks")), json!({"keys": [org_key.public_jwk()]}).to_string())?;
            write(&keystore.join("revoked").join(format!("{org_id}.jwks")), json!({"keys": []}).to_string())?;
        }
        // What `tpp register --software DIR` needs beside the files: the signing key's kid.
        write(&dir.join("software.json"), serde_json::to_string_pretty(&software)?)?;
        self.manifest.software.push(software.clone());
        self.save()?;
        self.write_ssa(&software)?;
        Ok(software)
    }

    /// The software statement's claims: the Open Banking directory's claim set.
    pub fn ssa_claims(&self, s: &Software, now: i64) -> Value {
        let ks = &self.manifest.keystore_url;
        let (org, sw) = (&s.org_id, &s.software_id);
        json!({
            "iss": SSA_ISSUER,
            "iat": now,
            "jti": keyfort_core::secret::random_b64url(12),
            "software_environment": "sandbox",
            "software_mode": "Test",
            "software_id": sw,
            "software_client_id": sw,
            "software_client_name": s.client_name,
            "software_client_description": format!("{} (Keyfort sandbox)", s.client_name),
            "software_version": "1.0",
            "software_client_uri": s.redirect_uris[0],
            "software_redirect_uris": s.redirect_uris,
            "software_roles": s.roles,
            "organisation_competent_authority_claims": {
                "authority_id": "OBGBR",
                "registration_id": format!("Unknown{org}"),
                "status": "Active",
                "authorisations": [{"member_state": "GB", "roles": s.roles}],
            },
            "software_logo_uri": s.redirect_uris[0],
            "org_status": "Active",
            "org_id": org,
            "org_name": s.org_name,
            "org_contacts": [{"name": "Technical", "email": "tech@tpp.example", "phone": "+440000000000", "type": "Technical"}],
            "org_jwks_endpoint": format!("{ks}/{org}/{org}.jwks"),
            "org_jwks_revoked_endpoint": format!("{ks}/{org}/revoked/{org}.jwks"),
            "software_jwks_endpoint": format!("{ks}/{org}/{sw}.jwks"),
            "software_jwks_revoked_endpoint": format!("{ks}/{org}/revoked/{sw}.jwks"),
            "software_policy_uri": s.redirect_uris[0],
            "software_tos_uri": s.redirect_uris[0],
            "software_on_behalf_of_org": s.org_name,
        })
    }

    fn write_ssa(&self, s: &Software) -> anyhow::Result<()> {
        let key =
            crate::signing::load_pem_key(&self.dir.join("directory/signing.key"), None, &self.manifest.directory_kid)?;
        let ssa = key.sign_jwt(&self.ssa_claims(s, SystemClock.now()), "JWT");
        write(&self.dir.join("software").join(&s.software_id).join("ssa.jwt"), ssa)
    }

    /// TLS for serving the keystore over HTTPS, with the certificate `init` issued for
    /// localhost from the sandbox CA (clients trust `ca/bundle.pem`).
    pub fn keystore_tls(&self) -> anyhow::Result<std::sync::Arc<rustls::ServerConfig>> {
        let chain = crate::pem::read_certificates(&self.dir.join("ca/keystore-server.pem"))?;
        let key = crate::pem::read_private_key(&self.dir.join("ca/keystore-server.key"))?;
        let config = rustls::ServerConfig::builder_with_provider(crate::tls::crypto_provider())
            .with_safe_default_protocol_versions()?
            .with_no_client_auth()
            .with_single_cert(chain, key)?;
        Ok(std::sync::Arc::new(config))
    }

    /// The keystore as routes: every file under `keystore/` at its relative path.
    pub fn keystore_router(&self) -> axum::Router {
        let root = self.dir.join("keystore");
        axum::Router::new().fallback(move |uri: axum::http::Uri| {
            let root = root.clone();
            async move {
                use axum::response::IntoResponse;
                let relative = uri.path().trim_start_matches('/');
                let safe = !relative.is_empty()
                    && relative.ends_with(".jwks")
                    && relative.split('/').all(|seg| !seg.is_empty() && seg != ".." && seg != ".");
                if !safe {
                    return axum::http::StatusCode::NOT_FOUND.into_response();
                }
                match tokio::fs::read(root.join(relative)).await {
                    Ok(bytes) => ([("content-type", "application/jwk-set+json")], bytes).into_response(),
                    Err(_) => axum::http::StatusCode::NOT_FOUND.into_response(),
                }
            }
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_keystore_url_gives_its_scheme_and_listen_address() {
        let https = KeystoreUrl::parse("https://127.0.0.1:18443").unwrap();
        assert!(https.is_https());
        assert_eq!(https.listen_address().unwrap(), "127.0.0.1:18443".parse().unwrap());
        assert_eq!(https.to_string(), "https://127.0.0.1:18443");
        let localhost = KeystoreUrl::parse("http://localhost:8090/").unwrap();
        assert!(!localhost.is_https());
        assert_eq!(localhost.listen_address().unwrap(), "127.0.0.1:8090".parse().unwrap());
        let ipv6 = KeystoreUrl::parse("https://[::1]").unwrap();
        assert_eq!(ipv6.listen_address().unwrap(), "[::1]:443".parse().unwrap());
        let named = KeystoreUrl::parse("https://keystore.test:8443").unwrap();
        assert!(named.listen_address().unwrap_err().to_string().contains("keystore.test"));
    }

    #[test]
    fn unusable_keystore_urls_are_refused() {
        for bad in ["127.0.0.1:8090", "ftp://127.0.0.1:21", "http://127.0.0.1:8090/keystore", "http://127.0.0.1:1/?x=1"]
        {
            assert!(KeystoreUrl::parse(bad).is_err(), "{bad}");
        }
        let dir = tempfile::tempdir().unwrap();
        assert!(Sandbox::init(&dir.path().join("sb"), "localhost:8090").is_err());
        assert!(!dir.path().join("sb").exists(), "nothing is created for a bad URL");
    }
}
