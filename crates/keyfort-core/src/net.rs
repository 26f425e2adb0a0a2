//! Rules about network addresses that the configuration and the key fetcher must agree on.

use std::net::IpAddr;

use url::{Host, Url};

/// Whether `url` names this machine: `localhost`, an address in 127.0.0.0/8, or `::1`.
///
/// Plain-http fetches are tolerated only towards such hosts (behind a development switch),
/// because traffic that never leaves the machine cannot be read or altered on the network.
pub fn is_loopback_host(url: &Url) -> bool {
    match url.host() {
        Some(Host::Ipv4(ip)) => IpAddr::V4(ip).is_loopback(),
        Some(Host::Ipv6(ip)) => IpAddr::V6(ip).is_loopback(),
        Some(Host::Domain(d)) => d.eq_ignore_ascii_case("localhost"),
        None => false,
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn loopback(url: &str) -> bool {
        is_loopback_host(&Url::parse(url).unwrap())
    }

    #[test]
    fn only_this_machine_is_loopback() {
        for url in [
            "http://localhost:8090/x",
            "http://LOCALHOST/",
            "http://127.0.0.1/",
            "http://127.8.9.10:1/",
            "http://[::1]:80/",
        ] {
            assert!(loopback(url), "{url}");
        }
        for url in [
            "http://keystore.example/",
            "http://localhost.example/",
            "http://10.0.0.1/",
            "http://0.0.0.0/",
            "http://[::]/",
            "http://128.0.0.1/",
            "file:///etc/keys.jwks",
        ] {
            assert!(!loopback(url), "{url}");
        }
    }
}
