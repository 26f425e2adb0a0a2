//! Reading the identity out of an X.509 client certificate: the subject as RDNs, the PSD2
//! roles of an eIDAS QCStatement (ETSI TS 119 495), and the RFC 8705 thumbprint.

use asn1_rs::{oid, Any, Class, FromDer, Oid, Tag, Utf8String};
use keyfort_core::jose::b64url_encode;
use keyfort_core::subject_dn::SubjectDn;
use keyfort_core::transport::{ob_role_for_psd2, CertificateIdentity};
use x509_parser::prelude::*;

use super::CertificateRejected;

const OID_QC_STATEMENTS: &str = "1.3.6.1.5.5.7.1.3";
/// etsi-psd2-qcStatement (ETSI TS 119 495).
const OID_PSD2_QC_TYPE: Oid<'static> = oid! {0.4.0.19495.2};

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

/// Reads the PSD2 roles (`rolesOfPSP` names) from a QCStatements extension value, mapped to
/// Open Banking role names. `Ok(None)` when there is no PSD2 statement.
///
/// ```text
/// QCStatements ::= SEQUENCE OF QCStatement                           (RFC 3739)
/// QCStatement  ::= SEQUENCE { statementId OID, statementInfo ANY OPTIONAL }
/// PSD2QcType   ::= SEQUENCE { rolesOfPSP RolesOfPSP, nCAName UTF8String, nCAId UTF8String }
/// RolesOfPSP   ::= SEQUENCE OF RoleOfPSP                             (ETSI TS 119 495)
/// RoleOfPSP    ::= SEQUENCE { roleOfPspOid OID, roleOfPspName UTF8String }
/// ```
fn psd2_roles_from_qc_statements(value: &[u8]) -> Result<Option<Vec<String>>, String> {
    let (rest, statements) = element(value, Tag::Sequence, "QCStatements")?;
    if !rest.is_empty() {
        return Err("trailing bytes after the QCStatements".into());
    }
    let mut statements = statements.data;
    while !statements.is_empty() {
        let (next, statement) = element(statements, Tag::Sequence, "a QCStatement")?;
        statements = next;
        let (info, id) = element(statement.data, Tag::Oid, "a statementId")?;
        if Oid::try_from(id).map_err(|e| describe("a statementId", e))? != OID_PSD2_QC_TYPE {
            continue;
        }
        let (_, psd2) = element(info, Tag::Sequence, "the PSD2QcType")?;
        // Only the roles are read: the competent authority's name and id are not checked
        // here, so an unusual encoding of them must not cost a TPP its certificate.
        let (_, roles) = element(psd2.data, Tag::Sequence, "rolesOfPSP")?;
        let mut roles = roles.data;
        let mut names = Vec::new();
        while !roles.is_empty() {
            let (next, role) = element(roles, Tag::Sequence, "a RoleOfPSP")?;
            roles = next;
            let (after_oid, _) = element(role.data, Tag::Oid, "a roleOfPspOid")?;
            let (_, name) = element(after_oid, Tag::Utf8String, "a roleOfPspName")?;
            let name = Utf8String::try_from(name).map_err(|e| describe("a roleOfPspName", e))?;
            if let Some(ob) = ob_role_for_psd2(name.as_ref()) {
                names.push(ob.to_owned());
            }
        }
        return Ok(Some(names));
    }
    Ok(None)
}

/// The DER element at the start of `input`, which must be of the universal type `tag`, and
/// the bytes after it. The type is checked here because asn1-rs 0.6 checks neither the class
/// of an element nor, when reading an OID, its tag.
fn element<'a>(input: &'a [u8], tag: Tag, what: &str) -> Result<(&'a [u8], Any<'a>), String> {
    let (rest, any) = Any::from_der(input).map_err(|e| describe(what, e))?;
    let constructed = tag == Tag::Sequence;
    if any.class() != Class::Universal || any.tag() != tag || any.header.is_constructed() != constructed {
        let expected = match tag {
            Tag::Sequence => "a SEQUENCE",
            Tag::Oid => "an OBJECT IDENTIFIER",
            Tag::Utf8String => "a UTF8String",
            _ => "of the expected type",
        };
        return Err(format!(
            "{what} is not {expected} (found a {} {} element with tag number {})",
            any.class(),
            if any.header.is_constructed() { "constructed" } else { "primitive" },
            any.tag().0,
        ));
    }
    Ok((rest, any))
}

/// Says which part of the structure is malformed, and how, for the TPP developer.
fn describe(what: &str, e: impl Into<asn1_rs::Error>) -> String {
    match e.into() {
        asn1_rs::Error::Incomplete(_) => format!("{what} is truncated"),
        e => format!("{what} is not valid DER ({e})"),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// QCStatements made by OpenSSL 3.0, not by Keyfort: a QcCompliance statement, a QcType
    /// statement (web) and a PSD2 statement with the roles PSP_PI and PSP_AI, produced with
    /// `openssl asn1parse -genconf qc.cnf -out qc.der` and `xxd -p qc.der` from this qc.cnf:
    ///
    /// ```text
    /// asn1 = SEQUENCE:statements
    /// [statements]
    /// compliance = SEQUENCE:compliance
    /// qctype = SEQUENCE:qctype
    /// psd2 = SEQUENCE:psd2
    /// [compliance]
    /// id = OID:0.4.0.1862.1.1
    /// [qctype]
    /// id = OID:0.4.0.1862.1.6
    /// types = SEQUENCE:qctypes
    /// [qctypes]
    /// web = OID:0.4.0.1862.1.6.3
    /// [psd2]
    /// id = OID:0.4.0.19495.2
    /// info = SEQUENCE:psd2info
    /// [psd2info]
    /// roles = SEQUENCE:roles
    /// ncaname = UTF8String:Financial Conduct Authority
    /// ncaid = UTF8String:GB-FCA
    /// [roles]
    /// pi = SEQUENCE:role_pi
    /// ai = SEQUENCE:role_ai
    /// [role_pi]
    /// oid = OID:0.4.0.19495.1.2
    /// name = UTF8String:PSP_PI
    /// [role_ai]
    /// oid = OID:0.4.0.19495.1.3
    /// name = UTF8String:PSP_AI
    /// ```
    const OPENSSL_QC_STATEMENTS: &str =
        "30783008060604008e4601013013060604008e4601063009060704008e4601060330570606040081\
        982702304d302630110607040081982701020c065053505f504930110607040081982701030c065053505f41490c1b46696e616e63\
        69616c20436f6e6475637420417574686f726974790c0647422d464341";

    /// The QcCompliance statement alone, from the same OpenSSL output (bytes 2 to 11).
    const COMPLIANCE_ONLY: &[u8] = &[0x30, 0x0a, 0x30, 0x08, 0x06, 0x06, 0x04, 0x00, 0x8e, 0x46, 0x01, 0x01];

    fn unhex(hex: &str) -> Vec<u8> {
        let digits: Vec<u8> = hex.bytes().filter(u8::is_ascii_hexdigit).collect();
        digits.chunks(2).map(|pair| u8::from_str_radix(std::str::from_utf8(pair).unwrap(), 16).unwrap()).collect()
    }

    fn roles(list: &[&str]) -> Option<Vec<String>> {
        Some(list.iter().map(|r| (*r).to_owned()).collect())
    }

    #[test]
    fn der_made_by_openssl_is_read() {
        let der = unhex(OPENSSL_QC_STATEMENTS);
        assert_eq!(der.len(), 122);
        assert_eq!(psd2_roles_from_qc_statements(&der), Ok(roles(&["PISP", "AISP"])));
    }

    #[test]
    fn roles_encoded_by_the_sandbox_are_read_back() {
        let der = crate::sandbox::pki::qc_statements(&["PSP_AS", "PSP_PI", "PSP_AI", "PSP_IC"]).unwrap();
        assert_eq!(psd2_roles_from_qc_statements(&der), Ok(roles(&["ASPSP", "PISP", "AISP", "CBPII"])));
        let none = crate::sandbox::pki::qc_statements(&[]).unwrap();
        assert_eq!(psd2_roles_from_qc_statements(&none), Ok(roles(&[])));
    }

    #[test]
    fn a_statement_without_psd2_type_has_no_roles() {
        assert_eq!(psd2_roles_from_qc_statements(COMPLIANCE_ONLY), Ok(None));
        assert_eq!(psd2_roles_from_qc_statements(&[0x30, 0x00]), Ok(None));
    }

    #[test]
    fn truncated_der_is_an_error_not_a_panic() {
        assert_eq!(psd2_roles_from_qc_statements(&[]), Err("QCStatements is truncated".into()));
        assert_eq!(psd2_roles_from_qc_statements(&[0x30, 0x05, 0x30]), Err("QCStatements is truncated".into()));
        let der = unhex(OPENSSL_QC_STATEMENTS);
        for len in 0..der.len() {
            assert!(psd2_roles_from_qc_statements(&der[..len]).is_err(), "{len} bytes");
        }
    }

    #[test]
    fn malformed_der_is_an_error_not_a_panic() {
        let not_a_sequence = psd2_roles_from_qc_statements(&[0x04, 0x00]).unwrap_err();
        assert!(not_a_sequence.starts_with("QCStatements is not a SEQUENCE"), "{not_a_sequence}");
        let trailing = [COMPLIANCE_ONLY, &[0x00]].concat();
        assert_eq!(psd2_roles_from_qc_statements(&trailing), Err("trailing bytes after the QCStatements".into()));
        // A statementId that is an INTEGER, not an OID.
        let bad_id = psd2_roles_from_qc_statements(&[0x30, 0x05, 0x30, 0x03, 0x02, 0x01, 0x01]).unwrap_err();
        assert!(bad_id.starts_with("a statementId is not an OBJECT IDENTIFIER"), "{bad_id}");
        // A context-specific [16] is not a SEQUENCE, though its tag number is the same.
        let context_specific = psd2_roles_from_qc_statements(&[0x30, 0x02, 0xb0, 0x00]).unwrap_err();
        assert!(context_specific.starts_with("a QCStatement is not a SEQUENCE"), "{context_specific}");
        // The OpenSSL DER with PSP_AI's name as a PrintableString (tag 0x13) instead of a UTF8String.
        let mut printable = unhex(OPENSSL_QC_STATEMENTS);
        assert_eq!(printable[77], 0x0c);
        printable[77] = 0x13;
        let printable = psd2_roles_from_qc_statements(&printable).unwrap_err();
        assert!(printable.starts_with("a roleOfPspName is not a UTF8String"), "{printable}");
        // Every single-byte corruption of real DER is either read or refused, never a panic.
        let der = unhex(OPENSSL_QC_STATEMENTS);
        for i in 0..der.len() {
            for byte in [0x00, 0x01, 0x05, 0x06, 0x0c, 0x30, 0x7f, 0x80, 0x81, 0x84, 0xff] {
                let mut corrupt = der.clone();
                corrupt[i] = byte;
                let _ = psd2_roles_from_qc_statements(&corrupt);
            }
        }
    }

    #[test]
    fn printed_names_escape_specials() {
        let rdns = vec![vec![("2.5.4.6".to_owned(), "GB".to_owned())], vec![("2.5.4.3".to_owned(), "a,b".to_owned())]];
        assert_eq!(rfc4514(&rdns), "CN=a\\,b,C=GB");
    }
}
