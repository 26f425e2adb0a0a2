//! The sandbox directory's certificate authority and the transport certificates it issues,
//! in the real Open Banking profiles: the legacy OB transport certificate and the OBWAC
//! with a PSD2 QCStatement (ETSI TS 119 495).

use rcgen::{
    BasicConstraints, CertificateParams, CustomExtension, DnType, ExtendedKeyUsagePurpose, IsCa, KeyPair,
    KeyUsagePurpose, SerialNumber,
};
use yasna::models::ObjectIdentifier;

/// A CA: its certificate and key, as PEM.
pub struct Authority {
    pub cert_pem: String,
    pub key_pem: String,
}

impl Authority {
    fn load(&self) -> anyhow::Result<(rcgen::Certificate, KeyPair)> {
        let key = KeyPair::from_pem(&self.key_pem)?;
        let params = CertificateParams::from_ca_cert_pem(&self.cert_pem)?;
        // Re-signing the parameters yields an issuer with the same name and key, which is all
        // that issuing needs.
        let cert = params.self_signed(&key)?;
        Ok((cert, key))
    }
}

/// Parameters with an empty subject: rcgen starts with a placeholder CN, which `push` would
/// replace in place, leaving the CN first in the name (and last in its RFC 4514 form).
fn blank_params(subject_alt_names: Vec<String>) -> anyhow::Result<CertificateParams> {
    let mut params = CertificateParams::new(subject_alt_names)?;
    params.distinguished_name = rcgen::DistinguishedName::new();
    Ok(params)
}

fn ca_params(name: &str, path_len: Option<u8>) -> anyhow::Result<CertificateParams> {
    let mut params = blank_params(Vec::new())?;
    params.is_ca = IsCa::Ca(match path_len {
        Some(n) => BasicConstraints::Constrained(n),
        None => BasicConstraints::Unconstrained,
    });
    params.key_usages = vec![KeyUsagePurpose::KeyCertSign, KeyUsagePurpose::CrlSign, KeyUsagePurpose::DigitalSignature];
    params.distinguished_name.push(DnType::CountryName, "GB");
    params.distinguished_name.push(DnType::OrganizationName, "Keyfort Sandbox Directory");
    params.distinguished_name.push(DnType::CommonName, name);
    Ok(params)
}

/// A root and an issuing CA, standing in for the Open Banking directory's.
pub fn new_directory_ca() -> anyhow::Result<(Authority, Authority)> {
    let root_key = KeyPair::generate()?;
    let root = ca_params("Keyfort Sandbox Root CA", None)?.self_signed(&root_key)?;
    let issuing_key = KeyPair::generate()?;
    let mut issuing_params = ca_params("Keyfort Sandbox Issuing CA", Some(0))?;
    issuing_params.use_authority_key_identifier_extension = true;
    let issuing = issuing_params.signed_by(&issuing_key, &root, &root_key)?;
    Ok((
        Authority { cert_pem: root.pem(), key_pem: root_key.serialize_pem() },
        Authority { cert_pem: issuing.pem(), key_pem: issuing_key.serialize_pem() },
    ))
}

/// Which Open Banking certificate profile to issue.
pub enum Profile<'a> {
    /// `C=GB, O=OpenBanking, OU=<org_id>, CN=<software_id>`.
    LegacyTransport,
    /// `organizationIdentifier=PSDGB-OB-<org_id>, CN=<software_id>` with PSD2 roles.
    Obwac { org_name: &'a str, roles: &'a [String] },
}

/// Issues a transport certificate; returns (certificate chain PEM, key PEM). The subject is
/// written in the directory's order, C, O, OU (or organizationIdentifier), CN, so that its
/// RFC 4514 form starts with the CN, as OBIE's `tls_client_auth_subject_dn` pattern requires.
pub fn issue_transport(
    issuing: &Authority,
    org_id: &str,
    software_id: &str,
    profile: Profile<'_>,
) -> anyhow::Result<(String, String)> {
    let (ca, ca_key) = issuing.load()?;
    let key = KeyPair::generate()?;
    let mut params = blank_params(Vec::new())?;
    params.distinguished_name.push(DnType::CountryName, "GB");
    match &profile {
        Profile::LegacyTransport => {
            params.distinguished_name.push(DnType::OrganizationName, "OpenBanking");
            params.distinguished_name.push(DnType::OrganizationalUnitName, org_id);
        }
        Profile::Obwac { org_name, roles } => {
            params.distinguished_name.push(DnType::OrganizationName, *org_name);
            params.distinguished_name.push(DnType::CustomDnType(vec![2, 5, 4, 97]), format!("PSDGB-OB-{org_id}"));
            let psd2: Vec<&str> = roles.iter().filter_map(|r| psd2_role(r)).collect();
            params
                .custom_extensions
                .push(CustomExtension::from_oid_content(&[1, 3, 6, 1, 5, 5, 7, 1, 3], qc_statements(&psd2)?));
        }
    }
    params.distinguished_name.push(DnType::CommonName, software_id);
    let mut serial = [0u8; 16];
    aws_lc_rs::rand::fill(&mut serial).map_err(|_| anyhow::anyhow!("random serial"))?;
    serial[0] &= 0x7f;
    params.serial_number = Some(SerialNumber::from(serial.to_vec()));
    params.key_usages = vec![KeyUsagePurpose::DigitalSignature];
    params.extended_key_usages = vec![ExtendedKeyUsagePurpose::ClientAuth];
    params.use_authority_key_identifier_extension = true;
    let cert = params.signed_by(&key, &ca, &ca_key)?;
    Ok((format!("{}{}", cert.pem(), issuing.cert_pem), key.serialize_pem()))
}

/// A TLS server certificate for `localhost` issued by the sandbox CA (for `sandbox serve --https`).
pub fn issue_server(issuing: &Authority) -> anyhow::Result<(String, String)> {
    let (ca, ca_key) = issuing.load()?;
    let key = KeyPair::generate()?;
    let mut params = blank_params(vec!["localhost".to_owned(), "127.0.0.1".to_owned()])?;
    params.distinguished_name.push(DnType::CommonName, "localhost");
    params.extended_key_usages = vec![ExtendedKeyUsagePurpose::ServerAuth];
    params.use_authority_key_identifier_extension = true;
    let cert = params.signed_by(&key, &ca, &ca_key)?;
    Ok((format!("{}{}", cert.pem(), issuing.cert_pem), key.serialize_pem()))
}

/// The sandbox bank's resource-server certificate, issued by the sandbox CA: it serves the
/// bank's HTTPS (`serverAuth`, for `localhost`) and authenticates the bank to Keyfort's
/// validation API (`clientAuth`), whose `[resource_server] client_subject_dns` names its
/// subject. Returns (certificate chain PEM, key PEM).
pub fn issue_resource_server(issuing: &Authority) -> anyhow::Result<(String, String)> {
    let (ca, ca_key) = issuing.load()?;
    let key = KeyPair::generate()?;
    let mut params = CertificateParams::new(vec!["localhost".to_owned(), "127.0.0.1".to_owned()])?;
    params.distinguished_name.push(DnType::CountryName, "GB");
    params.distinguished_name.push(DnType::OrganizationName, "Keyfort Sandbox Bank");
    params.distinguished_name.push(DnType::CommonName, "Keyfort Sandbox Resource Server");
    params.key_usages = vec![KeyUsagePurpose::DigitalSignature];
    params.extended_key_usages = vec![ExtendedKeyUsagePurpose::ServerAuth, ExtendedKeyUsagePurpose::ClientAuth];
    params.use_authority_key_identifier_extension = true;
    let cert = params.signed_by(&key, &ca, &ca_key)?;
    Ok((format!("{}{}", cert.pem(), issuing.cert_pem), key.serialize_pem()))
}

/// Open Banking role, ETSI TS 119 495 `roleOfPspName`, and the last arc of its
/// `roleOfPspOid` (id-psd2-role, 0.4.0.19495.1).
const PSD2_ROLES: [(&str, &str, u64); 4] =
    [("ASPSP", "PSP_AS", 1), ("PISP", "PSP_PI", 2), ("AISP", "PSP_AI", 3), ("CBPII", "PSP_IC", 4)];

fn psd2_role(ob_role: &str) -> Option<&'static str> {
    PSD2_ROLES.iter().find(|(ob, _, _)| *ob == ob_role).map(|(_, etsi, _)| *etsi)
}

/// DER of a QCStatements extension value holding a PSD2 statement for `roles` (ETSI role
/// names: PSP_AS, PSP_PI, PSP_AI, PSP_IC). Encoded with yasna rather than by hand, so the
/// server's reader (`transport/certificate.rs`, asn1-rs) is tested against an independent
/// encoder.
pub fn qc_statements(roles: &[&str]) -> anyhow::Result<Vec<u8>> {
    let arcs = roles
        .iter()
        .map(|name| match PSD2_ROLES.iter().find(|(_, etsi, _)| etsi == name) {
            Some((_, _, arc)) => Ok((*name, *arc)),
            None => Err(anyhow::anyhow!("{name} is not a PSD2 role; expected one of PSP_AS, PSP_PI, PSP_AI, PSP_IC")),
        })
        .collect::<anyhow::Result<Vec<_>>>()?;
    Ok(yasna::construct_der(|w| {
        // QCStatements ::= SEQUENCE OF QCStatement
        w.write_sequence_of(|w| {
            // QCStatement ::= SEQUENCE { statementId, statementInfo }
            w.next().write_sequence(|w| {
                w.next().write_oid(&ObjectIdentifier::from_slice(&[0, 4, 0, 19495, 2]));
                // PSD2QcType ::= SEQUENCE { rolesOfPSP, nCAName, nCAId }
                w.next().write_sequence(|w| {
                    w.next().write_sequence_of(|w| {
                        for (name, arc) in &arcs {
                            // RoleOfPSP ::= SEQUENCE { roleOfPspOid, roleOfPspName }
                            w.next().write_sequence(|w| {
                                w.next().write_oid(&ObjectIdentifier::from_slice(&[0, 4, 0, 19495, 1, *arc]));
                                w.next().write_utf8_string(name);
                            });
                        }
                    });
                    w.next().write_utf8_string("Keyfort Sandbox Authority");
                    w.next().write_utf8_string("GB-SBX");
                });
            });
        });
    }))
}

#[cfg(test)]
mod tests {
    use super::*;

    /// The attribute types of a PEM certificate's subject, in ASN.1 order.
    fn subject_order(chain_pem: &str) -> Vec<String> {
        let der = crate::pem::certificates_from_pem(chain_pem.as_bytes()).unwrap().remove(0);
        let (_, cert) = x509_parser::parse_x509_certificate(&der).unwrap();
        cert.subject().iter_attributes().map(|a| a.attr_type().to_id_string()).collect()
    }

    #[test]
    fn transport_certificates_follow_the_directory_subject_order() {
        let (_, issuing) = new_directory_ca().unwrap();
        let (legacy, _) =
            issue_transport(&issuing, "0015800001ABCDEFGH", "SoftwareId123", Profile::LegacyTransport).unwrap();
        // C, O, OU, CN: the RFC 4514 form (most specific first) starts with CN=.
        assert_eq!(subject_order(&legacy), ["2.5.4.6", "2.5.4.10", "2.5.4.11", "2.5.4.3"]);
        let roles = ["AISP".to_owned()];
        let (obwac, _) = issue_transport(
            &issuing,
            "0015800001ABCDEFGH",
            "SoftwareId123",
            Profile::Obwac { org_name: "TPP Ltd", roles: &roles },
        )
        .unwrap();
        assert_eq!(subject_order(&obwac), ["2.5.4.6", "2.5.4.10", "2.5.4.97", "2.5.4.3"]);
        assert_eq!(subject_order(&issuing.cert_pem), ["2.5.4.6", "2.5.4.10", "2.5.4.3"]);
        // The RFC 4514 form, most specific first, as a TPP copies it into tls_client_auth_subject_dn.
        let der = crate::pem::certificates_from_pem(legacy.as_bytes()).unwrap().remove(0);
        let (_, cert) = x509_parser::parse_x509_certificate(&der).unwrap();
        let printed: Vec<String> = cert
            .subject()
            .iter_attributes()
            .map(|a| a.as_str().unwrap().to_owned())
            .collect::<Vec<_>>()
            .into_iter()
            .rev()
            .collect();
        assert_eq!(printed, ["SoftwareId123", "0015800001ABCDEFGH", "OpenBanking", "GB"]);
    }

    #[test]
    fn unknown_psd2_roles_are_refused() {
        let err = qc_statements(&["PSP_AI", "AISP"]).unwrap_err().to_string();
        assert!(err.starts_with("AISP is not a PSD2 role"), "{err}");
    }
}
