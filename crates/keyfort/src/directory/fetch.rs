use std::time::Duration;

use bytes::{Bytes, BytesMut};
use keyfort_core::net::is_loopback_host;
use url::Url;

use crate::config::HttpClientConfig;

/// Why a document could not be fetched. Messages name the URL and the cause, never a body.
#[derive(Debug, Clone, thiserror::Error)]
pub enum FetchError {
    #[error("{url} is not allowed: {why}")]
    NotAllowed { url: String, why: String },
    #[error("fetching {url} failed: {why}")]
    Failed { url: String, why: String },
}

/// An HTTP client for keys and revocation lists that a bank can run.
#[derive(Clone)]
pub struct HttpFetcher {
    client: reqwest::Client,
    allow_insecure_loopback: bool,
    max_bytes: usize,
}

impl HttpFetcher {
    pub fn new(config: &HttpClientConfig) -> anyhow::Result<Self> {
        let mut roots = rustls::RootCertStore::empty();
        let native = rustls_native_certs::load_native_certs();
        for cert in native.certs {
            let _ = roots.add(cert);
        }
        if let Some(path) = &config.ca_file {
            let certs =
                crate::tls::read_ca_certificates(path).map_err(|e| anyhow::anyhow!("[http_client] ca_file: {e}"))?;
            for cert in certs {
                roots.add(cert)?;
            }
        }
        let tls = rustls::ClientConfig::builder_with_provider(crate::tls::crypto_provider())
            .with_safe_default_protocol_versions()?
            .with_root_certificates(roots)
            .with_no_client_auth();

        let allow_insecure_loopback = config.allow_insecure_loopback;
        // Redirects stay on the original host and scheme rules: a directory must not be able
        // to bounce Keyfort to an internal address.
        let redirect = reqwest::redirect::Policy::custom(move |attempt| {
            let origin = |u: &Url| (u.host_str().map(str::to_owned), u.port_or_known_default());
            let original = attempt.previous().first().map(origin);
            if attempt.previous().len() > 3 {
                attempt.error("too many redirects")
            } else if Some(origin(attempt.url())) != original {
                attempt.error("redirect to another host refused")
            } else if !scheme_allowed(attempt.url(), allow_insecure_loopback) {
                attempt.error("redirect to a non-https URL refused")
            } else {
                attempt.follow()
            }
        });
        let client = reqwest::Client::builder()
            .use_preconfigured_tls(tls)
            .connect_timeout(Duration::from_secs(config.connect_timeout_seconds))
            .timeout(Duration::from_secs(config.timeout_seconds))
            .redirect(redirect)
            .user_agent(concat!("keyfort/", env!("CARGO_PKG_VERSION")))
            .build()?;
        Ok(Self { client, allow_insecure_loopback, max_bytes: config.max_response_bytes })
    }

    /// Whether `url` may be fetched at all: https, or plain http to a loopback address when
    /// the development switch is on.
    pub fn check_url(&self, url: &Url) -> Result<(), FetchError> {
        if scheme_allowed(url, self.allow_insecure_loopback) {
            return Ok(());
        }
        let why = if url.scheme() == "http" && is_loopback_host(url) {
            "plain http is refused; set [http_client] allow_insecure_loopback = true for local development".to_owned()
        } else {
            format!("only https URLs are fetched (this is {})", url.scheme())
        };
        Err(FetchError::NotAllowed { url: url.to_string(), why })
    }

    /// GETs `url`, reading at most the configured number of bytes.
    pub async fn get(&self, url: &Url) -> Result<Bytes, FetchError> {
        self.check_url(url)?;
        let failed = |why: String| FetchError::Failed { url: url.to_string(), why };
        let mut response = self
            .client
            .get(url.clone())
            .header("accept", "application/json, application/jwk-set+json")
            .send()
            .await
            .map_err(|e| failed(error_chain(&e)))?;
        if !response.status().is_success() {
            return Err(failed(format!("HTTP status {}", response.status())));
        }
        if response.content_length().is_some_and(|len| len as usize > self.max_bytes) {
            return Err(failed(format!("response is larger than {} bytes", self.max_bytes)));
        }
        let mut body = BytesMut::new();
        while let Some(chunk) = response.chunk().await.map_err(|e| failed(error_chain(&e)))? {
            if body.len() + chunk.len() > self.max_bytes {
                return Err(failed(format!("response is larger than {} bytes", self.max_bytes)));
            }
            body.extend_from_slice(&chunk);
        }
        Ok(body.freeze())
    }
}

fn scheme_allowed(url: &Url, allow_insecure_loopback: bool) -> bool {
    match url.scheme() {
        "https" => true,
        "http" => allow_insecure_loopback && is_loopback_host(url),
        _ => false,
    }
}

fn error_chain(e: &dyn std::error::Error) -> String {
    let mut text = e.to_string();
    let mut source = e.source();
    while let Some(s) = source {
        text.push_str(": ");
        text.push_str(&s.to_string());
        source = s.source();
    }
    text
}
