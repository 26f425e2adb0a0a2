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
    let (certs, key) = match (&server.cert_file, &server.key_file) {
        (Some(cert), Some(key)) => (
            pem::read_certificates(cert).map_err(|e| anyhow!("[server.tls] cert_file {e}"))?,
            pem::read_private_key(key).map_err(|e| anyhow!("[server.tls] key_file {e}"))?,
        ),
        _ => development_certificate(server)?,
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

/// Loads, or creates on first start, `<data_dir>/dev-tls/{cert,key}.pem`: a self-signed
/// certificate for localhost, the loopback addresses and the public URL's host.
fn development_certificate(
    server: &ServerConfig,
) -> anyhow::Result<(Vec<CertificateDer<'static>>, PrivateKeyDer<'static>)> {
    let dir = server.data_dir.join("dev-tls");
    let cert_path = dir.join("cert.pem");
    let key_path = dir.join("key.pem");
    if !cert_path.exists() || !key_path.exists() {
        std::fs::create_dir_all(&dir).with_context(|| format!("creating {}", dir.display()))?;
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
        write_private(&key_path, key.serialize_pem().as_bytes())?;
    }
    tracing::warn!(
        cert = %cert_path.display(),
        "!!! DEVELOPMENT TLS CERTIFICATE: no [server.tls] cert_file/key_file configured, so Keyfort is serving a \
         self-signed certificate. Clients will not trust it. Configure [server.tls] before any real use. !!!"
    );
    Ok((pem::read_certificates(&cert_path)?, pem::read_private_key(&key_path)?))
}

fn write_private(path: &Path, bytes: &[u8]) -> std::io::Result<()> {
    use std::io::Write;
    let mut options = std::fs::OpenOptions::new();
    options.write(true).create(true).truncate(true);
    #[cfg(unix)]
    {
        use std::os::unix::fs::OpenOptionsExt;
        options.mode(0o600);
    }
    options.open(path)?.write_all(bytes)
}
