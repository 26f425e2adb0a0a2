//! Reading the identity out of an X.509 client certificate: the subject as RDNs, the PSD2
//! roles of an eIDAS QCStatement (ETSI TS 119 495), and the RFC 8705 thumbprint.

use keyfort_core::jose::b64url_encode;
use keyfort_core::subject_dn::SubjectDn;
use keyfort_core::transport::{ob_role_for_psd2, CertificateIdentity};
use x509_parser::prelude::*;

use super::CertificateRejected;

const OID_QC_STATEMENTS: &str = "1.3.6.1.5.5.7.1.3";
const OID_PSD2_QC_TYPE: &str = "0.4.0.19495.2";

pub fn identity(der: &[u8]) -> Result<CertificateIdentity, CertificateRejected> {
    let (_, cert) = X509Certificate::from_der(der)
        .map_err(|e| CertificateRejected(format!("the client certificate cannot be parsed ({e})")))?;
    // A certificate without any extended key usage (a QSealC, say) is not a TLS client
    // certificate here, although RFC 5280 would allow it for any purpose.
    match cert.extended_key_usage() {
        Ok(Some(eku)) if eku.value.client_auth => {}
        _ => {
            return Err(CertificateRejected(
                "the client certificate is not for TLS client authentication (extended key usage lacks clientAuth)"
                    .into(),
            ))
        }
    }
    if let Ok(Some(usage)) = cert.key_usage() {
        if !usage.value.digital_signature() {
            return Err(CertificateRejected(
                "the client certificate's key usage lacks digitalSignature, so it cannot authenticate a TLS client"
                    .into(),
            ));
        }
    }
    let rdns: Vec<Vec<(String, String)>> = cert
        .subject()
        .iter()
        .map(|rdn| {
            rdn.iter()
                .map(|attr| {
                    let value = attr
                        .as_str()
                        .map(str::to_owned)
                        .unwrap_or_else(|_| format!("#{}", keyfort_core::secret::hex(attr.attr_value().data)));
                    (attr.attr_type().to_id_string(), value)
                })
                .collect()
        })
        .collect();
    let printed = rfc4514(&rdns);
    let mut psd2_roles = None;
    for ext in cert.extensions() {
        if ext.oid.to_id_string() == OID_QC_STATEMENTS {
            psd2_roles = psd2_roles_from_qc_statements(ext.value).map_err(|why| {
                CertificateRejected(format!("the client certificate's QCStatements are malformed ({why})"))
            })?;
        }
    }
    Ok(CertificateIdentity {
        subject: SubjectDn::from_certificate_rdns(rdns, printed),
        thumbprint_s256: b64url_encode(keyfort_core::secret::sha256(der)),
        psd2_roles,
    })
}

/// The RFC 4514 string of a name given in ASN.1 order (most specific last).
fn rfc4514(rdns: &[Vec<(String, String)>]) -> String {
    rdns.iter()
        .rev()
        .map(|rdn| {
            rdn.iter().map(|(oid, value)| format!("{}={}", keyword(oid), escape(value))).collect::<Vec<_>>().join("+")
        })
        .collect::<Vec<_>>()
        .join(",")
}

fn keyword(oid: &str) -> &str {
    match oid {
        "2.5.4.3" => "CN",
        "2.5.4.6" => "C",
        "2.5.4.7" => "L",
        "2.5.4.8" => "ST",
        "2.5.4.10" => "O",
        "2.5.4.11" => "OU",
        "2.5.4.97" => "organizationIdentifier",
        "2.5.4.5" => "serialNumber",
        other => other,
    }
}

fn escape(value: &str) -> String {
    let mut out = String::with_capacity(value.len());
    for (i, c) in value.chars().enumerate() {
        let special = matches!(c, ',' | '+' | '"' | '\\' | '<' | '>' | ';' | '=')
            || (i == 0 && (c == '#' || c == ' '))
            || (i == value.chars().count() - 1 && c == ' ');
        if special {
            out.push('\\');
        }
        out.push(c);
    }
    out
}

/// A DER tag-length-value reader, enough for the QCStatements structure.
fn tlv(input: &[u8]) -> Result<(u8, &[u8], &[u8]), &'static str> {
    let (&tag, rest) = input.split_first().ok_or("truncated")?;
    let (&first, rest) = rest.split_first().ok_or("truncated")?;
    let (len, rest) = if first < 0x80 {
        (first as usize, rest)
    } else {
        let n = (first & 0x7f) as usize;
        if n == 0 || n > 4 || rest.len() < n {
            return Err("bad length");
        }
        (rest[..n].iter().fold(0usize, |acc, b| (acc << 8) | *b as usize), &rest[n..])
    };
    if rest.len() < len {
        return Err("truncated");
    }
    Ok((tag, &rest[..len], &rest[len..]))
}

fn oid_string(content: &[u8]) -> String {
    let mut parts = Vec::new();
    let mut value: u64 = 0;
    for (i, b) in content.iter().enumerate() {
        value = (value << 7) | (b & 0x7f) as u64;
        if b & 0x80 == 0 {
            if parts.is_empty() {
                let (first, second) = if value < 80 { (value / 40, value % 40) } else { (2, value - 80) };
                parts.push(first.to_string());
                parts.push(second.to_string());
            } else {
                parts.push(value.to_string());
            }
            value = 0;
        }
        let _ = i;
    }
    parts.join(".")
}

const SEQUENCE: u8 = 0x30;
const OID: u8 = 0x06;

/// Reads the PSD2 roles (`rolesOfPSP` names) from a QCStatements extension value, mapped to
/// Open Banking role names. `Ok(None)` when there is no PSD2 statement.
fn psd2_roles_from_qc_statements(value: &[u8]) -> Result<Option<Vec<String>>, &'static str> {
    let (tag, mut statements, _) = tlv(value)?;
    if tag != SEQUENCE {
        return Err("not a SEQUENCE");
    }
    while !statements.is_empty() {
        let (tag, statement, rest) = tlv(statements)?;
        statements = rest;
        if tag != SEQUENCE {
            return Err("statement is not a SEQUENCE");
        }
        let (tag, oid, info) = tlv(statement)?;
        if tag != OID || oid_string(oid) != OID_PSD2_QC_TYPE {
            continue;
        }
        // PSD2QcType ::= SEQUENCE { rolesOfPSP RolesOfPSP, nCAName, nCAId }
        let (_, psd2, _) = tlv(info)?;
        let (_, mut roles, _) = tlv(psd2)?;
        let mut names = Vec::new();
        while !roles.is_empty() {
            // RoleOfPSP ::= SEQUENCE { roleOfPspOid OID, roleOfPspName UTF8String }
            let (_, role, rest) = tlv(roles)?;
            roles = rest;
            let (_, _oid, after_oid) = tlv(role)?;
            let (_, name, _) = tlv(after_oid)?;
            let name = std::str::from_utf8(name).map_err(|_| "role name is not UTF-8")?;
            if let Some(ob) = ob_role_for_psd2(name) {
                names.push(ob.to_owned());
            }
        }
        return Ok(Some(names));
    }
    Ok(None)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn oids_decode() {
        assert_eq!(oid_string(&[0x04, 0x00, 0x81, 0x98, 0x27, 0x02]), "0.4.0.19495.2");
        assert_eq!(oid_string(&[0x2b, 0x06, 0x01]), "1.3.6.1");
    }

    #[test]
    fn truncated_der_is_an_error_not_a_panic() {
        assert!(psd2_roles_from_qc_statements(&[0x30, 0x05, 0x30]).is_err());
        assert!(psd2_roles_from_qc_statements(&[]).is_err());
        assert_eq!(psd2_roles_from_qc_statements(&[0x30, 0x00]), Ok(None));
    }

    #[test]
    fn printed_names_escape_specials() {
        let rdns = vec![vec![("2.5.4.6".to_owned(), "GB".to_owned())], vec![("2.5.4.3".to_owned(), "a,b".to_owned())]];
        assert_eq!(rfc4514(&rdns), "CN=a\\,b,C=GB");
    }
}
