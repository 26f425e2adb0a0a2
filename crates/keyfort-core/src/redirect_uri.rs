//! Redirect URIs that can only hold values a FAPI client may register.

use std::fmt;

use url::Url;

use crate::net::names_this_machine;

/// An absolute `https` URI without a fragment, whose host is not this machine (`localhost`,
/// a loopback or unspecified address, in any spelling: see [`crate::net`]).
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
        if url.host().is_none() {
            return Err(format!("redirect URI \"{raw}\" has no host"));
        }
        if names_this_machine(&url) {
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

    /// Finding 3 of the hardening issue: every spelling of this machine that a URL parser
    /// accepts is refused, not only the canonical ones.
    #[test]
    fn refuses_every_spelling_of_this_machine() {
        for uri in [
            "https://[::ffff:127.0.0.1]/cb",
            "https://[::ffff:7f00:1]/cb",
            "https://[0:0:0:0:0:ffff:7f00:1]/cb",
            "https://[::ffff:127.9.8.7]/cb",
            "https://[::ffff:0.0.0.0]/cb",
            "https://[::127.0.0.1]/cb",
            "https://[::]/cb",
            "https://[::1]:8443/cb",
            "https://0.0.0.0/cb",
            "https://0/cb",
            "https://127.0.0.1/cb",
            "https://127.255.255.254/cb",
            "https://127.1/cb",
            "https://2130706433/cb",
            "https://0x7f000001/cb",
            "https://0x7f.0.0.1/cb",
            "https://0177.0.0.1/cb",
            "https://localhost./cb",
            "https://LOCALHOST/cb",
            "https://app.localhost./cb",
        ] {
            let err = RedirectUri::parse(uri).expect_err(uri);
            assert!(err.contains("loopback"), "{uri}: {err}");
        }
    }

    #[test]
    fn addresses_that_merely_look_local_are_accepted() {
        for uri in ["https://128.0.0.1/cb", "https://[::ffff:8.8.8.8]/cb", "https://localhost.example/cb"] {
            assert!(RedirectUri::parse(uri).is_ok(), "{uri}");
        }
    }

    #[test]
    fn keeps_the_exact_spelling() {
        assert_eq!(RedirectUri::parse("https://TPP.example/cb").unwrap().as_str(), "https://TPP.example/cb");
    }
}
