//! `[resource_server]`: the bank's API gateways and resource servers, which ask Keyfort
//! whether a customer's token covers a call (`POST /oauth2/consent/validate`) and may
//! introspect any token. They authenticate by mutual TLS with a certificate whose subject
//! is listed here.

use keyfort_core::subject_dn::SubjectDn;

use super::loader::Section;

#[derive(Debug, Clone, Default)]
pub struct ResourceServerConfig {
    /// Subjects (RFC 4514) of the certificates resource servers present; compared as parsed
    /// RDNs, like `tls_client_auth_subject_dn`.
    pub client_subject_dns: Vec<SubjectDn>,
}

/// `certificates_possible`: whether this server can see client certificates at all (a
/// client CA, or a trusted gateway forwarding them).
pub(super) fn read(mut s: Section<'_>, certificates_possible: bool) -> ResourceServerConfig {
    let mut client_subject_dns = Vec::new();
    for raw in s.take_strings("client_subject_dns").unwrap_or_default() {
        match SubjectDn::parse(&raw) {
            Ok(dn) => client_subject_dns.push(dn),
            Err(why) => s.problem(
                "client_subject_dns",
                format!(
                    "\"{raw}\" is not an RFC 4514 distinguished name ({why}); write it as \"CN=gateway,O=Bank,C=GB\""
                ),
            ),
        }
    }
    if !client_subject_dns.is_empty() && !certificates_possible {
        s.problem(
            "client_subject_dns",
            "resource servers authenticate by mutual TLS: set [server.tls] client_ca_file (the CA that issues their certificates) or a trusted [mtls] gateway_header",
        );
    }
    ResourceServerConfig { client_subject_dns }
}
