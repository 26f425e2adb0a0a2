//! The server's TLS identity: configured PEM files, or, when none are configured, a
//! development certificate generated into the data directory (and announced loudly).

use std::path::Path;
use std::sync::Arc;

use anyhow::{anyhow, Context};
use rustls::crypto::CryptoProvider;
use rustls::pki_types::{CertificateDer, PrivateKeyDer};

use crate::config::ServerConfig;
use crate::pem;

/// The one crypto provider Keyfort uses for TLS, in and out.
pub fn crypto_provider() -> Arc<CryptoProvider> {
    Arc::new(rustls::crypto::aws_lc_rs::default_provider())
}

/// Builds the listener's TLS configuration. A configured certificate that cannot be read is
/// an error: silently serving a self-signed certificate instead would hide a broken deploy.
///
/// `client_verifier` asks clients for a certificate (mutual TLS); `None` asks for none.
pub fn server_config(
    server: &ServerConfig,
    client_verifier: Option<Arc<dyn rustls::server::danger::ClientCertVerifier>>,
) -> anyhow::Result<Arc<rustls::ServerConfig>> {
    let (certs, key) = match configured_identity(server) {
        Ok(Some(identity)) => identity,
        Ok(None) => development_certificate(server)?,
        Err(problems) => {
            let described: Vec<String> = problems.iter().map(|p| format!("{}: {}", p.key, p.message)).collect();
            return Err(anyhow!("{}", described.join("; ")));
        }
    };
    let builder =
        rustls::ServerConfig::builder_with_provider(crypto_provider()).with_safe_default_protocol_versions()?;
    let builder = match client_verifier {
        Some(verifier) => builder.with_client_cert_verifier(verifier),
        None => builder.with_no_client_auth(),
    };
    let mut config = builder
        .with_single_cert(certs, key)
        .context("[server.tls] the certificate and key do not form a usable pair")?;
    config.alpn_protocols = vec![b"h2".to_vec(), b"http/1.1".to_vec()];
    Ok(Arc::new(config))
}

/// The TLS of the admin listener: the public listener's certificate (the same resolver, so
/// a reloaded certificate serves both), and no client certificates: administrators sign in
/// with their password, and a `client_auth = "required"` public port must not lock them out.
pub fn admin_server_config(public: &rustls::ServerConfig) -> anyhow::Result<Arc<rustls::ServerConfig>> {
    let mut config = rustls::ServerConfig::builder_with_provider(crypto_provider())
        .with_safe_default_protocol_versions()?
        .with_no_client_auth()
        .with_cert_resolver(public.cert_resolver.clone());
    config.alpn_protocols = vec![b"h2".to_vec(), b"http/1.1".to_vec()];
    Ok(Arc::new(config))
}

/// A certificate chain, end-entity first, and its private key.
pub type ServerIdentity = (Vec<CertificateDer<'static>>, PrivateKeyDer<'static>);

/// A problem with the file a configuration key names.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct KeyProblem {
    /// The key, as `[section] key`.
    pub key: &'static str,
    pub message: String,
}

/// The configured certificate chain and key, read and checked to form a pair; `Ok(None)`
/// when none is configured (a development certificate is then used). The start-up and
/// `check-config` both come here, so they accept exactly the same files. Every problem is
/// returned, each with the `[server.tls]` key it concerns.
pub fn configured_identity(server: &ServerConfig) -> Result<Option<ServerIdentity>, Vec<KeyProblem>> {
    let (Some(cert_file), Some(key_file)) = (&server.cert_file, &server.key_file) else { return Ok(None) };
    match (read_certs(cert_file), read_key(key_file)) {
        (Ok(certs), Ok(key)) => match check_pair(&certs, &key) {
            Ok(()) => Ok(Some((certs, key))),
            Err(why) => Err(vec![KeyProblem {
                key: "[server.tls] key_file",
                message: format!("{}: {why}", key_file.display()),
            }]),
        },
        (certs, key) => Err([("[server.tls] cert_file", certs.err()), ("[server.tls] key_file", key.err())]
            .into_iter()
            .filter_map(|(key, problem)| problem.map(|message| KeyProblem { key, message }))
            .collect()),
    }
}

/// Reads a PEM certificate chain, end-entity first. Errors name the file.
pub fn read_certs(path: &Path) -> Result<Vec<CertificateDer<'static>>, String> {
    pem::read_certificates(path).map_err(|e| e.to_string())
}

/// Reads a PEM private key (PKCS#8, PKCS#1 or SEC1). Errors name the file.
pub fn read_key(path: &Path) -> Result<PrivateKeyDer<'static>, String> {
    pem::read_private_key(path).map_err(|e| e.to_string())
}

/// Checks that `key` is usable and belongs to the first certificate of `chain`.
pub fn check_pair(chain: &[CertificateDer<'static>], key: &PrivateKeyDer<'static>) -> Result<(), String> {
    rustls::sign::CertifiedKey::from_der(chain.to_vec(), key.clone_key(), &crypto_provider()).map(|_| ()).map_err(|e| {
        match e {
            rustls::Error::InconsistentKeys(_) => {
                "is not the private key of the certificate in cert_file (the two files do not form a pair)".to_owned()
            }
            other => format!("cannot be used with the certificate in cert_file ({other})"),
        }
    })
}

/// Reads PEM CA certificates to trust for outbound https: at least one, each usable as a
/// trust anchor. An empty or garbled file is refused rather than trusting nothing extra,
/// which would only show later as failing fetches.
pub fn read_ca_certificates(path: &Path) -> Result<Vec<CertificateDer<'static>>, String> {
    let certs = read_certs(path)?;
    for (i, cert) in certs.iter().enumerate() {
        webpki::anchor_from_trusted_cert(cert)
            .map_err(|e| format!("{}: certificate {} cannot be parsed ({e:?})", path.display(), i + 1))?;
    }
    Ok(certs)
}

/// Loads, or creates on first start, `<data_dir>/dev-tls/{cert,key}.pem`: a self-signed
/// certificate for localhost, the loopback addresses and the public URL's host.
fn development_certificate(
    server: &ServerConfig,
) -> anyhow::Result<(Vec<CertificateDer<'static>>, PrivateKeyDer<'static>)> {
    let dir = server.data_dir.join("dev-tls");
    let cert_path = dir.join("cert.pem");
    let key_path = dir.join("key.pem");
    if !cert_path.exists() || !key_path.exists() {
        crate::files::create_private_dir_all(&dir).with_context(|| format!("creating {}", dir.display()))?;
        let mut names = vec!["localhost".to_owned(), "127.0.0.1".to_owned(), "::1".to_owned()];
        if let Some(host) = url::Url::parse(&server.public_url).ok().and_then(|u| u.host_str().map(str::to_owned)) {
            let host = host.trim_start_matches('[').trim_end_matches(']').to_owned();
            if !names.contains(&host) {
                names.push(host);
            }
        }
        let key = rcgen::KeyPair::generate()?;
        let mut params = rcgen::CertificateParams::new(names)?;
        params.distinguished_name.push(rcgen::DnType::CommonName, "Keyfort development certificate");
        let cert = params.self_signed(&key)?;
        std::fs::write(&cert_path, cert.pem())?;
        crate::files::write_private(&key_path, key.serialize_pem().as_bytes())?;
    }
    tracing::warn!(
        cert = %cert_path.display(),
        "!!! DEVELOPMENT TLS CERTIFICATE: no [server.tls] cert_file/key_file configured, so Keyfort is serving a \
         self-signed certificate. Clients will not trust it. Configure [server.tls] before any real use. !!!"
    );
    Ok((read_certs(&cert_path).map_err(|e| anyhow!(e))?, read_key(&key_path).map_err(|e| anyhow!(e))?))
}
