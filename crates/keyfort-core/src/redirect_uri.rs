//! Redirect URIs that can only hold values a FAPI client may register.

use std::fmt;
use std::net::IpAddr;

use url::{Host, Url};

/// An absolute `https` URI without a fragment, whose host is not a loopback address.
///
/// Holding one is proof the checks passed; the original spelling is kept, because clients
/// compare redirect URIs as exact strings (RFC 6749 §3.1.2, OAuth 2.0 Security BCP §4.1).
#[derive(Debug, Clone, PartialEq, Eq, Hash)]
pub struct RedirectUri(String);

impl RedirectUri {
    pub fn parse(raw: &str) -> Result<Self, String> {
        let url = Url::parse(raw).map_err(|e| format!("redirect URI \"{raw}\" is not an absolute URI ({e})"))?;
        if url.scheme() != "https" {
            return Err(format!("redirect URI \"{raw}\" must use https, not {}", url.scheme()));
        }
        if url.fragment().is_some() {
            return Err(format!("redirect URI \"{raw}\" must not contain a fragment (#...)"));
        }
        let loopback = match url.host() {
            None => return Err(format!("redirect URI \"{raw}\" has no host")),
            Some(Host::Domain(d)) => {
                let d = d.trim_end_matches('.').to_ascii_lowercase();
                d == "localhost" || d.ends_with(".localhost")
            }
            Some(Host::Ipv4(ip)) => IpAddr::V4(ip).is_loopback() || ip.is_unspecified(),
            Some(Host::Ipv6(ip)) => IpAddr::V6(ip).is_loopback() || ip.is_unspecified(),
        };
        if loopback {
            return Err(format!(
                "redirect URI \"{raw}\" points at localhost/loopback, which is not allowed for a registered Open Banking client"
            ));
        }
        Ok(Self(raw.to_owned()))
    }

    pub fn as_str(&self) -> &str {
        &self.0
    }
}

impl fmt::Display for RedirectUri {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&self.0)
    }
}

impl serde::Serialize for RedirectUri {
    fn serialize<S: serde::Serializer>(&self, s: S) -> Result<S::Ok, S::Error> {
        s.serialize_str(&self.0)
    }
}

impl<'de> serde::Deserialize<'de> for RedirectUri {
    fn deserialize<D: serde::Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
        let s = String::deserialize(d)?;
        Self::parse(&s).map_err(serde::de::Error::custom)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn accepts_https_with_path_and_query() {
        assert!(RedirectUri::parse("https://tpp.example/cb?x=1").is_ok());
    }

    #[test]
    fn refuses_what_fapi_forbids() {
        for (uri, why) in [
            ("http://tpp.example/cb", "https"),
            ("/cb", "absolute"),
            ("https://tpp.example/cb#frag", "fragment"),
            ("https://localhost/cb", "loopback"),
            ("https://app.localhost/cb", "loopback"),
            ("https://127.0.0.1/cb", "loopback"),
            ("https://[::1]/cb", "loopback"),
            ("com.tpp.app:/cb", "https"),
        ] {
            let err = RedirectUri::parse(uri).unwrap_err();
            assert!(err.contains(why), "{uri}: {err}");
        }
    }

    #[test]
    fn keeps_the_exact_spelling() {
        assert_eq!(RedirectUri::parse("https://TPP.example/cb").unwrap().as_str(), "https://TPP.example/cb");
    }
}
