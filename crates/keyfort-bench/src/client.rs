//! HTTP/1.1 over TLS 1.3 with a client certificate, one hyper connection per task.
//!
//! hyper's connection-level client is used instead of a pooled client so that the number
//! of connections is exactly the concurrency, every connection is opened (TCP and TLS
//! handshake) before anything is timed, and a request never waits for a pool.

use std::net::{IpAddr, SocketAddr, ToSocketAddrs};
use std::path::Path;
use std::sync::Arc;
use std::time::Duration;

use anyhow::Context;
use bytes::Bytes;
use http_body_util::{BodyExt, Full};
use hyper::client::conn::http1::SendRequest;
use hyper_util::rt::TokioIo;
use rustls::pki_types::pem::PemObject;
use rustls::pki_types::{CertificateDer, PrivateKeyDer, ServerName};
use tokio::net::TcpStream;

/// Where and how to connect.
#[derive(Clone)]
pub struct Target {
    /// The base URL requests name (`Host`), e.g. `https://localhost:9446`.
    pub base_url: url::Url,
    /// The loopback address actually connected to.
    pub addr: SocketAddr,
    tls: Arc<rustls::ClientConfig>,
    server_name: ServerName<'static>,
    host_header: String,
}

/// The TLS 1.3 client configuration: the CA certificates in `cacert` trusted, and the
/// client certificate chain and key presented when given.
pub fn tls_config(cacert: &Path, identity: Option<(&Path, &Path)>) -> anyhow::Result<rustls::ClientConfig> {
    let mut roots = rustls::RootCertStore::empty();
    for cert in CertificateDer::pem_file_iter(cacert).with_context(|| format!("reading {}", cacert.display()))? {
        roots.add(cert.with_context(|| format!("a certificate in {}", cacert.display()))?)?;
    }
    let builder = rustls::ClientConfig::builder_with_provider(Arc::new(rustls::crypto::aws_lc_rs::default_provider()))
        .with_protocol_versions(&[&rustls::version::TLS13])?
        .with_root_certificates(roots);
    Ok(match identity {
        Some((cert, key)) => {
            let chain = CertificateDer::pem_file_iter(cert)
                .with_context(|| format!("reading {}", cert.display()))?
                .collect::<Result<Vec<_>, _>>()
                .with_context(|| format!("a certificate in {}", cert.display()))?;
            let key = PrivateKeyDer::from_pem_file(key).with_context(|| format!("reading {}", key.display()))?;
            builder.with_client_auth_cert(chain, key)?
        }
        None => builder.with_no_client_auth(),
    })
}

impl Target {
    /// A target at `base_url`, which must name a loopback address or `localhost`: the
    /// benchmark never sends load anywhere else.
    pub fn new(base_url: &str, tls: rustls::ClientConfig) -> anyhow::Result<Self> {
        let url = url::Url::parse(base_url).with_context(|| format!("{base_url} is not a URL"))?;
        if url.scheme() != "https" {
            anyhow::bail!("{base_url}: only https targets are supported");
        }
        let host = url.host_str().context("the target URL has no host")?.to_owned();
        let port = url.port_or_known_default().unwrap_or(443);
        let addr = loopback_address(&host, port)?;
        let server_name = ServerName::try_from(host.trim_start_matches('[').trim_end_matches(']').to_owned())
            .with_context(|| format!("{host} is not a TLS server name"))?;
        let host_header = match url.port() {
            Some(p) => format!("{host}:{p}"),
            None => host.clone(),
        };
        Ok(Self { base_url: url, addr, tls: Arc::new(tls), server_name, host_header })
    }

    pub fn host_header(&self) -> &str {
        &self.host_header
    }

    /// Opens a connection: TCP, TLS handshake, HTTP/1.1.
    pub async fn connect(&self) -> anyhow::Result<Connection> {
        let tcp = TcpStream::connect(self.addr).await.with_context(|| format!("connecting to {}", self.addr))?;
        // Requests are small and answered at once; Nagle would add delay to each.
        tcp.set_nodelay(true)?;
        let tls = tokio_rustls::TlsConnector::from(self.tls.clone())
            .connect(self.server_name.clone(), tcp)
            .await
            .context("TLS handshake")?;
        let (sender, connection) = hyper::client::conn::http1::handshake(TokioIo::new(tls)).await?;
        tokio::spawn(async move {
            let _ = connection.await;
        });
        Ok(Connection { sender })
    }

    /// One request on a new connection, for set-up: status and body.
    pub async fn once(&self, request: hyper::Request<Full<Bytes>>) -> anyhow::Result<(u16, Bytes)> {
        let mut connection = self.connect().await?;
        let (status, body) = connection.send(request, Duration::from_secs(30)).await?;
        Ok((status, body))
    }
}

/// `host` resolved to a loopback address, or an error: load goes nowhere else.
fn loopback_address(host: &str, port: u16) -> anyhow::Result<SocketAddr> {
    let bare = host.trim_start_matches('[').trim_end_matches(']');
    if let Ok(ip) = bare.parse::<IpAddr>() {
        if !ip.is_loopback() {
            anyhow::bail!("{host} is not a loopback address; keyfort-bench only loads servers on this machine");
        }
        return Ok(SocketAddr::new(ip, port));
    }
    if bare.eq_ignore_ascii_case("localhost") {
        // Keyfort's sandbox configuration listens on 127.0.0.1; prefer it over ::1.
        let addrs: Vec<SocketAddr> = (bare, port).to_socket_addrs()?.filter(|a| a.ip().is_loopback()).collect();
        return addrs
            .iter()
            .find(|a| a.is_ipv4())
            .or(addrs.first())
            .copied()
            .context("localhost resolves to no loopback address");
    }
    anyhow::bail!("{host} is not localhost or a loopback address; keyfort-bench only loads servers on this machine")
}

/// Why one exchange failed.
#[derive(Debug)]
pub enum ExchangeError {
    Timeout,
    Connection(anyhow::Error),
}

impl std::fmt::Display for ExchangeError {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            ExchangeError::Timeout => write!(f, "no answer in time"),
            ExchangeError::Connection(e) => write!(f, "{e:#}"),
        }
    }
}

impl std::error::Error for ExchangeError {}

/// One keep-alive HTTP/1.1 connection.
pub struct Connection {
    sender: SendRequest<Full<Bytes>>,
}

impl Connection {
    /// Whether the server has closed this connection (so it cannot carry another request).
    pub fn is_closed(&self) -> bool {
        self.sender.is_closed()
    }

    /// Sends `request` and reads the whole answer, within `timeout`.
    pub async fn send(
        &mut self,
        request: hyper::Request<Full<Bytes>>,
        timeout: Duration,
    ) -> Result<(u16, Bytes), ExchangeError> {
        let exchange = async {
            self.sender.ready().await?;
            let response = self.sender.send_request(request).await?;
            let status = response.status().as_u16();
            let body = response.into_body().collect().await?.to_bytes();
            Ok::<_, hyper::Error>((status, body))
        };
        match tokio::time::timeout(timeout, exchange).await {
            Err(_) => Err(ExchangeError::Timeout),
            Ok(Err(e)) => Err(ExchangeError::Connection(e.into())),
            Ok(Ok(answer)) => Ok(answer),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn only_loopback_targets_are_accepted() {
        assert_eq!(loopback_address("127.0.0.1", 9).unwrap(), "127.0.0.1:9".parse().unwrap());
        assert_eq!(loopback_address("[::1]", 9).unwrap(), "[::1]:9".parse().unwrap());
        assert!(loopback_address("localhost", 9).unwrap().ip().is_loopback());
        for other in ["10.0.0.1", "192.168.1.1", "8.8.8.8", "example.com", "[2001:db8::1]"] {
            assert!(loopback_address(other, 9).is_err(), "{other}");
        }
    }
}
