//! Origins (scheme, host and port), for `[oauth.dcr] software_jwks_hosts`: the places TPP
//! key sets may be fetched from. Comparing the host alone would let a software statement
//! name another port (another service) on an allowed host, or plain http to it.

use std::fmt;

use url::Url;

/// One origin: `https://keystore.example:443`.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Origin {
    scheme: String,
    host: String,
    port: u16,
}

impl Origin {
    /// The origin of an http(s) URL; `None` for other schemes or a URL without a host.
    pub fn of(url: &Url) -> Option<Self> {
        if !matches!(url.scheme(), "http" | "https") {
            return None;
        }
        let host = match url.host()? {
            url::Host::Domain(domain) => domain.trim_end_matches('.').to_ascii_lowercase(),
            ip => keyfort_core::net::host_ip(&ip)?.to_string(),
        };
        Some(Self { scheme: url.scheme().to_owned(), host, port: url.port_or_known_default()? })
    }

    /// Parses an allow-list entry: an origin (`https://keystore.example:8443`,
    /// `http://127.0.0.1:8090`), or a bare host (`keystore.example`), which means its https
    /// origin on port 443.
    pub fn parse(entry: &str) -> Result<Self, String> {
        let text = entry.trim();
        let with_scheme = if text.contains("://") { text.to_owned() } else { format!("https://{text}") };
        let url = Url::parse(&with_scheme).map_err(|e| {
            format!("\"{entry}\" is not a host or an origin such as https://keystore.example:443 ({e})")
        })?;
        if url.path() != "/" || url.query().is_some() || url.fragment().is_some() || !url.username().is_empty() {
            return Err(format!(
                "\"{entry}\" must be an origin (scheme, host and port) with no path, e.g. https://keystore.example:443"
            ));
        }
        if !text.contains("://") && text.contains(':') && !text.starts_with('[') && url.port().is_none() {
            return Err(format!("\"{entry}\" is not a host or an origin"));
        }
        Self::of(&url)
            .ok_or_else(|| format!("\"{entry}\" must be an http or https origin, e.g. https://keystore.example:443"))
    }
}

impl fmt::Display for Origin {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        if self.host.contains(':') {
            write!(f, "{}://[{}]:{}", self.scheme, self.host, self.port)
        } else {
            write!(f, "{}://{}:{}", self.scheme, self.host, self.port)
        }
    }
}

/// The origins software JWKS may be fetched from.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct Origins(pub Vec<Origin>);

impl Origins {
    /// Whether `url` is at one of these origins (scheme, host and port all equal).
    pub fn allows(&self, url: &Url) -> bool {
        Origin::of(url).is_some_and(|origin| self.0.contains(&origin))
    }

    pub fn push(&mut self, origin: Origin) {
        if !self.0.contains(&origin) {
            self.0.push(origin);
        }
    }
}

impl fmt::Display for Origins {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let listed: Vec<String> = self.0.iter().map(ToString::to_string).collect();
        f.write_str(&listed.join(", "))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn url(u: &str) -> Url {
        Url::parse(u).unwrap()
    }

    #[test]
    fn a_bare_host_means_its_https_origin() {
        let origins = Origins(vec![Origin::parse("Keystore.Example").unwrap()]);
        assert_eq!(origins.to_string(), "https://keystore.example:443");
        assert!(origins.allows(&url("https://keystore.example/o/s.jwks")));
        assert!(origins.allows(&url("https://KEYSTORE.example:443/o/s.jwks")));
        assert!(!origins.allows(&url("https://keystore.example:8443/o/s.jwks")), "another port");
        assert!(!origins.allows(&url("http://keystore.example/o/s.jwks")), "another scheme");
        assert!(!origins.allows(&url("https://keystore.example.evil/o/s.jwks")));
    }

    #[test]
    fn origins_compare_scheme_host_and_port() {
        let origins = Origins(vec![
            Origin::parse("https://keystore.example:8443").unwrap(),
            Origin::parse("http://127.0.0.1:8090").unwrap(),
            Origin::parse("keystore.example:9443").unwrap(),
        ]);
        assert!(origins.allows(&url("https://keystore.example:8443/x.jwks")));
        assert!(!origins.allows(&url("https://keystore.example/x.jwks")));
        assert!(origins.allows(&url("http://127.0.0.1:8090/x.jwks")));
        assert!(origins.allows(&url("http://[::ffff:127.0.0.1]:8090/x.jwks")), "canonical addresses");
        assert!(!origins.allows(&url("http://127.0.0.1:8091/x.jwks")));
        assert!(origins.allows(&url("https://keystore.example:9443/x.jwks")));
        assert!(!origins.allows(&url("file:///etc/passwd")));
    }

    #[test]
    fn entries_with_a_path_or_another_scheme_are_refused() {
        for bad in ["https://keystore.example/keys", "ftp://keystore.example", "https://user@keystore.example", ""] {
            assert!(Origin::parse(bad).is_err(), "{bad}");
        }
    }
}
