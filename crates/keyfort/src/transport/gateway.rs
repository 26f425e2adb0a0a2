//! Client certificates forwarded by a TLS-terminating gateway (nginx, a cloud load
//! balancer, WSO2 API Manager's `x-wso2-mutual-auth-cert`). The header is believed only
//! when the connection comes from a configured proxy address; from anyone else it is
//! ignored and logged, because anyone can send a header.

use std::net::SocketAddr;

use base64::Engine;
use rustls::pki_types::CertificateDer;

use super::CertificateRejected;
use crate::config::MtlsConfig;

pub struct Gateway {
    header: String,
    trusted: Vec<ipnet::IpNet>,
}

pub enum Forwarded {
    Chain(Vec<CertificateDer<'static>>),
    None,
}

impl Gateway {
    pub fn from_config(config: &MtlsConfig) -> Option<Self> {
        config
            .gateway_header
            .as_ref()
            .map(|header| Self { header: header.clone(), trusted: config.trusted_proxies.clone() })
    }

    pub fn header(&self) -> &str {
        &self.header
    }

    /// The chain in the gateway header's `value`, if the request came from a trusted proxy.
    pub fn forwarded_chain(&self, peer: SocketAddr, value: Option<&[u8]>) -> Result<Forwarded, CertificateRejected> {
        let Some(value) = value else { return Ok(Forwarded::None) };
        let ip = canonical(peer.ip());
        if !self.trusted.iter().any(|net| net.contains(&ip)) {
            tracing::warn!(%peer, header = %self.header, "ignored a forwarded client certificate from a peer that is not a trusted proxy");
            return Ok(Forwarded::None);
        }
        let text = std::str::from_utf8(value)
            .ok()
            .filter(|text| text.is_ascii())
            .ok_or_else(|| CertificateRejected(format!("the {} header is not ASCII", self.header)))?;
        parse_forwarded(text).map(Forwarded::Chain).map_err(|why| {
            CertificateRejected(format!("the {} header does not hold a certificate: {why}", self.header))
        })
    }
}

/// An IPv4 peer may arrive as an IPv4-mapped IPv6 address on a dual-stack socket.
fn canonical(ip: std::net::IpAddr) -> std::net::IpAddr {
    match ip {
        std::net::IpAddr::V6(v6) => v6.to_ipv4_mapped().map(std::net::IpAddr::V4).unwrap_or(ip),
        v4 => v4,
    }
}

/// Accepts a URL-encoded PEM chain (nginx `$ssl_client_escaped_cert`, AWS ALB), a raw PEM
/// with spaces for newlines, or base64 DER (optionally colon-wrapped, as Google Cloud sends).
pub fn parse_forwarded(value: &str) -> Result<Vec<CertificateDer<'static>>, String> {
    let decoded = percent_encoding::percent_decode_str(value).decode_utf8_lossy().into_owned();
    if decoded.contains("-----BEGIN CERTIFICATE-----") {
        return crate::pem::certificates_from_pem(normalise_pem(&decoded).as_bytes())
            .map_err(|e| format!("the value {e}"));
    }
    let compact: String = decoded.chars().filter(|c| !c.is_whitespace() && *c != ':').collect();
    let der = base64::engine::general_purpose::STANDARD
        .decode(&compact)
        .or_else(|_| base64::engine::general_purpose::URL_SAFE_NO_PAD.decode(compact.trim_end_matches('=')))
        .map_err(|_| "neither PEM nor base64 DER".to_owned())?;
    Ok(vec![CertificateDer::from(der)])
}

/// Some proxies replace newlines in PEM with spaces; put them back so the PEM parser can
/// read the base64 body.
fn normalise_pem(pem: &str) -> String {
    let mut out = String::with_capacity(pem.len());
    let mut rest = pem;
    while let Some(begin) = rest.find("-----BEGIN CERTIFICATE-----") {
        let after_begin = &rest[begin + 27..];
        let Some(end) = after_begin.find("-----END CERTIFICATE-----") else { break };
        let body: String = after_begin[..end].chars().filter(|c| !c.is_whitespace()).collect();
        out.push_str("-----BEGIN CERTIFICATE-----\n");
        for chunk in body.as_bytes().chunks(64) {
            out.push_str(std::str::from_utf8(chunk).unwrap_or_default());
            out.push('\n');
        }
        out.push_str("-----END CERTIFICATE-----\n");
        rest = &after_begin[end + 25..];
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    fn sample_der() -> Vec<u8> {
        let key = rcgen::KeyPair::generate().unwrap();
        rcgen::CertificateParams::new(vec!["a.example".to_owned()]).unwrap().self_signed(&key).unwrap().der().to_vec()
    }

    #[test]
    fn every_forwarding_format_reads_the_same_certificate() {
        let der = sample_der();
        let b64 = base64::engine::general_purpose::STANDARD.encode(&der);
        let pem = format!("-----BEGIN CERTIFICATE-----\n{b64}\n-----END CERTIFICATE-----\n");
        let url_encoded: String =
            percent_encoding::utf8_percent_encode(&pem, percent_encoding::NON_ALPHANUMERIC).to_string();
        let spaced = pem.replace('\n', " ");
        for value in [url_encoded, spaced, b64.clone(), format!(":{b64}:")] {
            assert_eq!(parse_forwarded(&value).unwrap()[0].as_ref(), &der[..], "{value}");
        }
        assert!(parse_forwarded("garbage!").is_err());
    }

    #[test]
    fn mapped_ipv4_peers_are_recognised() {
        let mapped: std::net::IpAddr = "::ffff:10.1.2.3".parse().unwrap();
        assert_eq!(canonical(mapped), "10.1.2.3".parse::<std::net::IpAddr>().unwrap());
    }
}
