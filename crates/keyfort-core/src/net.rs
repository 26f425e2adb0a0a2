//! Rules about network addresses that the configuration, the key fetcher and the redirect
//! URI checks must agree on.
//!
//! An address has many spellings: `[::ffff:127.0.0.1]` and `[::ffff:7f00:1]` are 127.0.0.1
//! as an IPv4-mapped IPv6 address, `[::127.0.0.1]` the deprecated IPv4-compatible form, and
//! the URL parser already turns `127.1`, `2130706433`, `0x7f.0.0.1` and `0177.0.0.1` into
//! 127.0.0.1. Every check here looks at the canonical address, so no spelling slips past.

use std::net::{IpAddr, Ipv6Addr};

use url::{Host, Url};

/// The address an IP literal really names: IPv4-mapped (`::ffff:a.b.c.d`) and
/// IPv4-compatible (`::a.b.c.d`, deprecated by RFC 4291 but still parsed) IPv6 addresses
/// are their IPv4 address. `::` and `::1` stay IPv6 (they are not IPv4-compatible).
pub fn canonical_ip(ip: IpAddr) -> IpAddr {
    match ip.to_canonical() {
        IpAddr::V6(v6) => match v6.segments() {
            [0, 0, 0, 0, 0, 0, hi, lo] if v6 != Ipv6Addr::UNSPECIFIED && v6 != Ipv6Addr::LOCALHOST => {
                IpAddr::V4(std::net::Ipv4Addr::from((u32::from(hi) << 16) | u32::from(lo)))
            }
            _ => IpAddr::V6(v6),
        },
        v4 => v4,
    }
}

/// The canonical IP address of a URL host, if it is an IP literal.
pub fn host_ip<S: AsRef<str>>(host: &Host<S>) -> Option<IpAddr> {
    match host {
        Host::Ipv4(ip) => Some(canonical_ip(IpAddr::V4(*ip))),
        Host::Ipv6(ip) => Some(canonical_ip(IpAddr::V6(*ip))),
        Host::Domain(_) => None,
    }
}

/// Whether a host name is `localhost` or under it (RFC 6761 §6.3), with or without the
/// trailing dot of a fully qualified name.
fn is_localhost_name(name: &str) -> bool {
    let name = name.trim_end_matches('.').to_ascii_lowercase();
    name == "localhost" || name.ends_with(".localhost")
}

/// Whether `url` names this machine: `localhost` (or a name under it), any address of
/// 127.0.0.0/8, `::1`, however spelt.
///
/// Plain-http fetches are tolerated only towards such hosts (behind a development switch),
/// because traffic that never leaves the machine cannot be read or altered on the network.
pub fn is_loopback_host(url: &Url) -> bool {
    match url.host() {
        Some(Host::Domain(d)) => is_localhost_name(d),
        Some(host) => host_ip(&host).is_some_and(|ip| ip.is_loopback()),
        None => false,
    }
}

/// Whether `url` names this machine or "any address": [`is_loopback_host`], or the
/// unspecified address (`0.0.0.0`, `::`), which a browser or client connects to as this
/// machine.
pub fn names_this_machine(url: &Url) -> bool {
    match url.host() {
        Some(Host::Domain(d)) => is_localhost_name(d),
        Some(host) => host_ip(&host).is_some_and(|ip| ip.is_loopback() || ip.is_unspecified()),
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
            "http://[::ffff:127.0.0.1]/",
            "http://[::ffff:7f00:1]/",
            "http://127.1/",
            "http://2130706433/",
            "http://localhost./",
        ] {
            assert!(loopback(url), "{url}");
        }
        for url in [
            "http://keystore.example/",
            "http://localhost.example/",
            "http://[::ffff:10.0.0.1]/",
            "http://10.0.0.1/",
            "http://0.0.0.0/",
            "http://[::]/",
            "http://128.0.0.1/",
            "file:///etc/keys.jwks",
        ] {
            assert!(!loopback(url), "{url}");
        }
    }

    #[test]
    fn mapped_and_compatible_addresses_are_their_ipv4_address() {
        let v4 = |s: &str| IpAddr::V4(s.parse().unwrap());
        let v6 = |s: &str| IpAddr::V6(s.parse().unwrap());
        assert_eq!(canonical_ip(v6("::ffff:127.0.0.1")), v4("127.0.0.1"));
        assert_eq!(canonical_ip(v6("::ffff:7f00:1")), v4("127.0.0.1"));
        assert_eq!(canonical_ip(v6("::127.0.0.1")), v4("127.0.0.1"));
        assert_eq!(canonical_ip(v6("::1")), v6("::1"));
        assert_eq!(canonical_ip(v6("::")), v6("::"));
        assert_eq!(canonical_ip(v6("2001:db8::1")), v6("2001:db8::1"));
        let any = |u: &str| names_this_machine(&Url::parse(u).unwrap());
        assert!(any("https://0.0.0.0/") && any("https://[::]/") && any("https://[::ffff:0:0]/"));
        assert!(!any("https://192.0.2.1/"));
    }
}
