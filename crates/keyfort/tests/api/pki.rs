//! A public-key infrastructure made for each test: a root and an issuing CA standing in for
//! the Open Banking directory's, transport certificates in each OB profile, and a CRL.

use rcgen::{
    BasicConstraints, CertificateParams, CertificateRevocationListParams, CustomExtension, DnType,
    ExtendedKeyUsagePurpose, IsCa, KeyIdMethod, KeyPair, KeyUsagePurpose, RevokedCertParams, SerialNumber,
};
use rustls::pki_types::{CertificateDer, PrivateKeyDer};

pub struct Ca {
    pub cert: rcgen::Certificate,
    pub key: KeyPair,
}

impl Ca {
    fn root(name: &str) -> Self {
        let key = KeyPair::generate().unwrap();
        let mut params = CertificateParams::new(Vec::<String>::new()).unwrap();
        params.is_ca = IsCa::Ca(BasicConstraints::Unconstrained);
        params.key_usages =
            vec![KeyUsagePurpose::KeyCertSign, KeyUsagePurpose::CrlSign, KeyUsagePurpose::DigitalSignature];
        params.distinguished_name.push(DnType::CountryName, "GB");
        params.distinguished_name.push(DnType::OrganizationName, "OpenBanking");
        params.distinguished_name.push(DnType::CommonName, name);
        let cert = params.self_signed(&key).unwrap();
        Self { cert, key }
    }

    fn intermediate(name: &str, parent: &Ca) -> Self {
        let key = KeyPair::generate().unwrap();
        let mut params = CertificateParams::new(Vec::<String>::new()).unwrap();
        params.is_ca = IsCa::Ca(BasicConstraints::Constrained(0));
        params.key_usages =
            vec![KeyUsagePurpose::KeyCertSign, KeyUsagePurpose::CrlSign, KeyUsagePurpose::DigitalSignature];
        params.distinguished_name.push(DnType::CountryName, "GB");
        params.distinguished_name.push(DnType::OrganizationName, "OpenBanking");
        params.distinguished_name.push(DnType::CommonName, name);
        params.use_authority_key_identifier_extension = true;
        let cert = params.signed_by(&key, &parent.cert, &parent.key).unwrap();
        Self { cert, key }
    }
}

/// A client certificate with its key, and the chain to present (leaf, issuing CA).
pub struct ClientCert {
    pub chain: Vec<CertificateDer<'static>>,
    pub key_der: Vec<u8>,
    pub pem: String,
}

impl ClientCert {
    pub fn key(&self) -> PrivateKeyDer<'static> {
        PrivateKeyDer::Pkcs8(self.key_der.clone().into())
    }

    pub fn der(&self) -> &[u8] {
        self.chain[0].as_ref()
    }

    /// The certificate's subject as an RFC 4514 string (most specific RDN first), the way a
    /// TPP would copy it into `tls_client_auth_subject_dn`.
    pub fn subject_dn(&self) -> String {
        let (_, cert) = x509_parser::parse_x509_certificate(self.der()).unwrap();
        let rdns: Vec<String> = cert
            .subject()
            .iter()
            .map(|rdn| {
                rdn.iter()
                    .map(|attr| {
                        let name = match attr.attr_type().to_id_string().as_str() {
                            "2.5.4.3" => "CN".to_owned(),
                            "2.5.4.6" => "C".to_owned(),
                            "2.5.4.10" => "O".to_owned(),
                            "2.5.4.11" => "OU".to_owned(),
                            other => other.to_owned(),
                        };
                        format!("{name}={}", attr.as_str().unwrap())
                    })
                    .collect::<Vec<_>>()
                    .join("+")
            })
            .collect();
        rdns.into_iter().rev().collect::<Vec<_>>().join(",")
    }
}

/// What goes into a client certificate.
#[derive(Clone)]
pub struct Subject {
    pub attrs: Vec<(DnType, String)>,
    pub psd2_roles: Option<Vec<&'static str>>,
    pub eku: Vec<ExtendedKeyUsagePurpose>,
    pub expired: bool,
    pub serial: u64,
}

impl Subject {
    pub fn legacy_ob(org_id: &str, software_id: &str) -> Self {
        Self {
            attrs: vec![
                (DnType::CountryName, "GB".into()),
                (DnType::OrganizationName, "OpenBanking".into()),
                (DnType::OrganizationalUnitName, org_id.into()),
                (DnType::CommonName, software_id.into()),
            ],
            psd2_roles: None,
            eku: vec![ExtendedKeyUsagePurpose::ClientAuth],
            expired: false,
            serial: 1000,
        }
    }

    pub fn obwac(organization_identifier: &str, cn: &str, roles: &[&'static str]) -> Self {
        Self {
            attrs: vec![
                (DnType::CountryName, "GB".into()),
                (DnType::OrganizationName, "WSO2 (UK) LIMITED".into()),
                (DnType::CustomDnType(vec![2, 5, 4, 97]), organization_identifier.into()),
                (DnType::CommonName, cn.into()),
            ],
            psd2_roles: Some(roles.to_vec()),
            eku: vec![ExtendedKeyUsagePurpose::ClientAuth, ExtendedKeyUsagePurpose::ServerAuth],
            expired: false,
            serial: 2000,
        }
    }

    pub fn serial(mut self, serial: u64) -> Self {
        self.serial = serial;
        self
    }
}

pub struct TestPki {
    pub root: Ca,
    pub issuing: Ca,
    pub untrusted: Ca,
}

/// Serial number of the certificate the CRL lists as revoked.
pub const REVOKED_SERIAL: u64 = 666;

impl TestPki {
    pub fn generate() -> Self {
        let root = Ca::root("Test OB Root CA");
        let issuing = Ca::intermediate("Test OB Issuing CA", &root);
        let untrusted = Ca::root("Somebody Else's CA");
        Self { root, issuing, untrusted }
    }

    /// The bundle a bank configures as `client_ca_file`: root and issuing CA.
    pub fn client_ca_pem(&self) -> String {
        format!("{}{}", self.root.cert.pem(), self.issuing.cert.pem())
    }

    pub fn issue(&self, subject: &Subject) -> ClientCert {
        self.issue_by(subject, &self.issuing)
    }

    pub fn issue_untrusted(&self, subject: &Subject) -> ClientCert {
        self.issue_by(subject, &self.untrusted)
    }

    fn issue_by(&self, subject: &Subject, ca: &Ca) -> ClientCert {
        let key = KeyPair::generate().unwrap();
        let mut params = CertificateParams::new(Vec::<String>::new()).unwrap();
        // rcgen starts with a placeholder CN; a directory writes C, O, OU, CN in this order.
        params.distinguished_name = rcgen::DistinguishedName::new();
        for (kind, value) in &subject.attrs {
            params.distinguished_name.push(kind.clone(), value.clone());
        }
        params.serial_number = Some(SerialNumber::from(subject.serial.to_be_bytes().to_vec()));
        params.extended_key_usages = subject.eku.clone();
        params.key_usages = vec![KeyUsagePurpose::DigitalSignature];
        params.use_authority_key_identifier_extension = true;
        if subject.expired {
            params.not_before = rcgen::date_time_ymd(2019, 1, 1);
            params.not_after = rcgen::date_time_ymd(2020, 1, 1);
        }
        if let Some(roles) = &subject.psd2_roles {
            params
                .custom_extensions
                .push(CustomExtension::from_oid_content(&[1, 3, 6, 1, 5, 5, 7, 1, 3], qc_statements(roles)));
        }
        let cert = params.signed_by(&key, &ca.cert, &ca.key).unwrap();
        ClientCert {
            chain: vec![cert.der().clone(), ca.cert.der().clone()],
            key_der: key.serialize_der(),
            pem: cert.pem(),
        }
    }

    /// A certificate of `subject` whose subject name is replaced by `rdns` (ASN.1 order,
    /// least specific first; each inner list one RDN, several entries a multi-valued RDN),
    /// re-signed by the issuing CA: rcgen cannot write a repeated or multi-valued
    /// attribute, which is exactly what an ambiguous subject needs.
    pub fn issue_with_rdns(&self, subject: &Subject, rdns: &[&[(&str, &str)]]) -> ClientCert {
        let template = self.issue(subject);
        let (_, parsed) = x509_parser::parse_x509_certificate(template.der()).unwrap();
        let tbs = parsed.tbs_certificate.as_ref().to_vec();
        let old_subject = parsed.tbs_certificate.subject.as_raw().to_vec();
        let name = yasna::construct_der(|w| {
            w.write_sequence_of(|w| {
                for rdn in rdns {
                    w.next().write_set_of(|w| {
                        for (oid, value) in rdn.iter() {
                            w.next().write_sequence(|w| {
                                let arcs: Vec<u64> = oid.split('.').map(|a| a.parse().unwrap()).collect();
                                w.next().write_oid(&yasna::models::ObjectIdentifier::from_slice(&arcs));
                                w.next().write_utf8_string(value);
                            });
                        }
                    });
                }
            });
        });
        // The subject follows the issuer and validity; the issuer differs from it, so the
        // first occurrence after the issuer is the subject.
        let issuer_end = tbs
            .windows(parsed.tbs_certificate.issuer.as_raw().len())
            .position(|w| w == parsed.tbs_certificate.issuer.as_raw())
            .unwrap()
            + parsed.tbs_certificate.issuer.as_raw().len();
        let at = issuer_end
            + tbs[issuer_end..].windows(old_subject.len()).position(|w| w == old_subject.as_slice()).unwrap();
        let header_len = der_header_len(&tbs);
        let mut inner = tbs[header_len..at].to_vec();
        inner.extend_from_slice(&name);
        inner.extend_from_slice(&tbs[at + old_subject.len()..]);
        let new_tbs = yasna::construct_der(|w| w.write_sequence(|w| w.next().write_der(&inner)));
        let ca_key = aws_lc_rs::signature::EcdsaKeyPair::from_pkcs8(
            &aws_lc_rs::signature::ECDSA_P256_SHA256_ASN1_SIGNING,
            &self.issuing.key.serialize_der(),
        )
        .unwrap();
        let signature = ca_key.sign(&aws_lc_rs::rand::SystemRandom::new(), &new_tbs).unwrap();
        let der = yasna::construct_der(|w| {
            w.write_sequence(|w| {
                w.next().write_der(&new_tbs);
                // ecdsa-with-SHA256, no parameters (RFC 5758).
                w.next().write_sequence(|w| {
                    w.next().write_oid(&yasna::models::ObjectIdentifier::from_slice(&[1, 2, 840, 10045, 4, 3, 2]))
                });
                w.next().write_bitvec_bytes(signature.as_ref(), signature.as_ref().len() * 8);
            })
        });
        let pem = {
            use base64::Engine;
            let body = base64::engine::general_purpose::STANDARD.encode(&der);
            let lines: Vec<&str> = body.as_bytes().chunks(64).map(|c| std::str::from_utf8(c).unwrap()).collect();
            format!("-----BEGIN CERTIFICATE-----\n{}\n-----END CERTIFICATE-----\n", lines.join("\n"))
        };
        ClientCert { chain: vec![CertificateDer::from(der), template.chain[1].clone()], key_der: template.key_der, pem }
    }

    /// The issuing CA's CRL, listing [`REVOKED_SERIAL`].
    pub fn crl_der(&self) -> Vec<u8> {
        self.crl_der_revoking(&[REVOKED_SERIAL], 1)
    }

    /// The issuing CA's CRL number `number`, listing `serials`.
    pub fn crl_der_revoking(&self, serials: &[u64], number: u8) -> Vec<u8> {
        let now = time_now();
        let params = CertificateRevocationListParams {
            this_update: now - std::time::Duration::from_secs(3600),
            next_update: now + std::time::Duration::from_secs(86400),
            crl_number: SerialNumber::from(vec![number]),
            issuing_distribution_point: None,
            revoked_certs: serials
                .iter()
                .map(|serial| RevokedCertParams {
                    serial_number: SerialNumber::from(serial.to_be_bytes().to_vec()),
                    revocation_time: now - std::time::Duration::from_secs(600),
                    reason_code: Some(rcgen::RevocationReason::KeyCompromise),
                    invalidity_date: None,
                })
                .collect(),
            key_identifier_method: KeyIdMethod::Sha256,
        };
        params.signed_by(&self.issuing.cert, &self.issuing.key).unwrap().der().to_vec()
    }
}

/// The length of a DER element's tag and length octets.
fn der_header_len(der: &[u8]) -> usize {
    match der[1] {
        len if len < 0x80 => 2,
        long => 2 + usize::from(long & 0x7f),
    }
}

fn time_now() -> time::OffsetDateTime {
    time::OffsetDateTime::now_utc()
}

/// DER of a QCStatements extension with a PSD2 statement for `roles`. The sandbox encodes it
/// with yasna; the server decodes it with asn1-rs (transport/certificate.rs).
fn qc_statements(roles: &[&str]) -> Vec<u8> {
    keyfort::sandbox::pki::qc_statements(roles).unwrap()
}
