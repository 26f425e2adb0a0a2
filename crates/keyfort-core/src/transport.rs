//! Who the transport certificate says the caller is, and whether that fits the software
//! statement. Certificates are parsed elsewhere (the server crate reads X.509); this module
//! only compares parsed identities, so the rules are testable with plain values.
//!
//! Open Banking certificate profiles understood here:
//! - the legacy OB transport certificate: `O=OpenBanking, OU=<org_id>, CN=<software_id>`;
//! - OBWAC / eIDAS QWAC: `organizationIdentifier=PSDGB-OB-<org_id>` (OB-issued) or
//!   `PSD<country>-<NCA>-<id>` (a QTSP's, `<id>` being the regulator's registration number),
//!   with `CN=<software_id>` or `CN=<org_id>`.

use crate::software_statement::SoftwareStatement;
use crate::subject_dn::SubjectDn;

pub const OID_CN: &str = "2.5.4.3";
pub const OID_O: &str = "2.5.4.10";
pub const OID_OU: &str = "2.5.4.11";
pub const OID_ORGANIZATION_IDENTIFIER: &str = "2.5.4.97";

/// A client certificate that has passed chain, date, usage and revocation checks.
#[derive(Debug, Clone, PartialEq)]
pub struct CertificateIdentity {
    pub subject: SubjectDn,
    /// base64url SHA-256 of the DER certificate, as in RFC 8705 `x5t#S256`.
    pub thumbprint_s256: String,
    /// PSD2 roles from the certificate's QCStatement, mapped to OB role names (AISP, PISP,
    /// CBPII, ASPSP); `None` when the certificate has no PSD2 QCStatement.
    pub psd2_roles: Option<Vec<String>>,
}

/// Maps an ETSI TS 119 495 role name to the Open Banking software role.
pub fn ob_role_for_psd2(role: &str) -> Option<&'static str> {
    match role {
        "PSP_AI" => Some("AISP"),
        "PSP_PI" => Some("PISP"),
        "PSP_IC" => Some("CBPII"),
        "PSP_AS" => Some("ASPSP"),
        _ => None,
    }
}

/// The organisation a certificate names.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum CertificateOrganisation {
    /// An Open Banking directory organisation id (legacy OU, or `PSDGB-OB-<org_id>`).
    OpenBanking(String),
    /// An eIDAS `PSD<country>-<NCA>-<id>` identifier: the regulator's registration id.
    Eidas { identifier: String, registration_id: String },
}

/// Which parts of the certificate must match the software statement.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum BindingLevel {
    /// No binding: any trusted certificate may register any software.
    Off,
    /// The certificate's organisation must be the SSA's.
    Organisation,
    /// The organisation must match, and a certificate that names a software (its CN is not
    /// the organisation) must name the SSA's software.
    Software,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct BindingRules {
    pub level: BindingLevel,
    /// Whether PSD2 roles in the certificate must cover the SSA's software_roles.
    pub check_psd2_roles: bool,
}

/// The identity a certificate is bound to: the software statement's organisation, software
/// and roles.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct BindingSubject<'a> {
    pub org_id: &'a str,
    pub software_id: &'a str,
    pub competent_authority_registration_id: Option<&'a str>,
    pub software_roles: &'a [String],
}

impl<'a> From<&'a SoftwareStatement> for BindingSubject<'a> {
    fn from(ssa: &'a SoftwareStatement) -> Self {
        Self {
            org_id: &ssa.org_id,
            software_id: &ssa.software_id,
            competent_authority_registration_id: ssa.competent_authority_registration_id.as_deref(),
            software_roles: &ssa.software_roles,
        }
    }
}

/// Why a certificate does not fit a software statement; says which field differed.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("{0}")]
pub struct BindingMismatch(pub String);

impl CertificateIdentity {
    pub fn organisation(&self) -> Option<CertificateOrganisation> {
        if let Some(identifier) = self.subject.attribute(OID_ORGANIZATION_IDENTIFIER) {
            if let Some(org_id) = identifier.strip_prefix("PSDGB-OB-") {
                return Some(CertificateOrganisation::OpenBanking(org_id.to_owned()));
            }
            // PSD<2-letter country>-<NCA id>-<registration id>
            let mut parts = identifier.splitn(3, '-');
            if let (Some(psd), Some(nca), Some(id)) = (parts.next(), parts.next(), parts.next()) {
                if psd.len() == 5 && psd.starts_with("PSD") && !nca.is_empty() && !id.is_empty() {
                    return Some(CertificateOrganisation::Eidas {
                        identifier: identifier.to_owned(),
                        registration_id: id.to_owned(),
                    });
                }
            }
            return None;
        }
        let is_ob = self.subject.attribute(OID_O).is_some_and(|o| o.eq_ignore_ascii_case("OpenBanking"));
        match (is_ob, self.subject.attribute(OID_OU)) {
            (true, Some(ou)) => Some(CertificateOrganisation::OpenBanking(ou.to_owned())),
            _ => None,
        }
    }

    /// Checks this certificate against the software statement it is presented with.
    pub fn check_binding<'a>(
        &self,
        ssa: impl Into<BindingSubject<'a>>,
        rules: BindingRules,
    ) -> Result<(), BindingMismatch> {
        let ssa: BindingSubject<'a> = ssa.into();
        let ssa = &ssa;
        if rules.level != BindingLevel::Off {
            self.check_organisation(ssa)?;
            if rules.level == BindingLevel::Software {
                self.check_software(ssa)?;
            }
        }
        if rules.check_psd2_roles {
            if let Some(roles) = &self.psd2_roles {
                let missing: Vec<&str> =
                    ssa.software_roles.iter().filter(|r| !roles.contains(r)).map(String::as_str).collect();
                if !missing.is_empty() {
                    return Err(BindingMismatch(format!(
                        "the transport certificate's PSD2 roles [{}] do not cover the software statement's software_roles {}: missing {}",
                        roles.join(", "),
                        ssa.software_roles.join(", "),
                        missing.join(", ")
                    )));
                }
            }
        }
        Ok(())
    }

    fn check_organisation(&self, ssa: &BindingSubject<'_>) -> Result<(), BindingMismatch> {
        match self.organisation() {
            Some(CertificateOrganisation::OpenBanking(org)) if org.eq_ignore_ascii_case(ssa.org_id) => Ok(()),
            Some(CertificateOrganisation::OpenBanking(org)) => Err(BindingMismatch(format!(
                "the transport certificate belongs to organisation \"{org}\" but the software statement's org_id is \"{}\"",
                ssa.org_id
            ))),
            Some(CertificateOrganisation::Eidas { identifier, registration_id }) => {
                match ssa.competent_authority_registration_id {
                    Some(expected) if expected.eq_ignore_ascii_case(&registration_id) => Ok(()),
                    expected => Err(BindingMismatch(format!(
                        "the transport certificate's organizationIdentifier \"{identifier}\" does not match the software statement's competent authority registration_id \"{}\"",
                        expected.unwrap_or("(none)")
                    ))),
                }
            }
            None => Err(BindingMismatch(format!(
                "the transport certificate ({}) names no Open Banking organisation: expected OU=<org_id> with O=OpenBanking, or organizationIdentifier=PSDGB-OB-<org_id>",
                self.subject
            ))),
        }
    }

    fn check_software(&self, ssa: &BindingSubject<'_>) -> Result<(), BindingMismatch> {
        let Some(cn) = self.subject.attribute(OID_CN) else {
            return Err(BindingMismatch(format!(
                "the transport certificate ({}) has no CN, so it names no software; expected CN=<software_id> or CN=<org_id>",
                self.subject
            )));
        };
        // A CN equal to the organisation marks an organisation-level certificate.
        let names_organisation = cn.eq_ignore_ascii_case(ssa.org_id)
            || ssa.competent_authority_registration_id.is_some_and(|id| cn.eq_ignore_ascii_case(id));
        if names_organisation || cn.eq_ignore_ascii_case(ssa.software_id) {
            return Ok(());
        }
        Err(BindingMismatch(format!(
            "the transport certificate's CN \"{cn}\" is neither the software statement's software_id \"{}\" nor its org_id",
            ssa.software_id
        )))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn ssa() -> SoftwareStatement {
        SoftwareStatement {
            iss: "OpenBanking Ltd".into(),
            iat: 0,
            exp: None,
            jti: None,
            software_id: "soft1".into(),
            software_roles: vec!["AISP".into(), "PISP".into()],
            software_redirect_uris: vec![],
            org_id: "org1".into(),
            org_name: None,
            software_jwks_endpoint: "https://k.example/x".parse().unwrap(),
            software_client_name: None,
            software_environment: None,
            software_mode: None,
            competent_authority_registration_id: Some("123456".into()),
        }
    }

    fn cert(dn: &str, roles: Option<&[&str]>) -> CertificateIdentity {
        CertificateIdentity {
            subject: SubjectDn::parse(dn).unwrap(),
            thumbprint_s256: "t".into(),
            psd2_roles: roles.map(|r| r.iter().map(|s| s.to_string()).collect()),
        }
    }

    const SOFTWARE: BindingRules = BindingRules { level: BindingLevel::Software, check_psd2_roles: true };

    #[test]
    fn legacy_ob_certificates_bind_org_and_software() {
        assert!(cert("CN=soft1,OU=org1,O=OpenBanking,C=GB", None).check_binding(&ssa(), SOFTWARE).is_ok());
        let other_org = cert("CN=soft1,OU=org2,O=OpenBanking,C=GB", None).check_binding(&ssa(), SOFTWARE);
        assert!(other_org.unwrap_err().0.contains("\"org2\""));
        let other_software = cert("CN=soft2,OU=org1,O=OpenBanking,C=GB", None).check_binding(&ssa(), SOFTWARE);
        assert!(other_software.unwrap_err().0.contains("CN \"soft2\""));
        let org_only = BindingRules { level: BindingLevel::Organisation, check_psd2_roles: true };
        assert!(cert("CN=soft2,OU=org1,O=OpenBanking,C=GB", None).check_binding(&ssa(), org_only).is_ok());
    }

    #[test]
    fn obwac_and_eidas_certificates_bind_by_organization_identifier() {
        let roles =
            Some(&["PSP_AI", "PSP_PI"][..]).map(|r| r.iter().map(|x| ob_role_for_psd2(x).unwrap()).collect::<Vec<_>>());
        let roles = roles.as_deref();
        assert!(cert("CN=soft1,organizationIdentifier=PSDGB-OB-org1,O=TPP Ltd,C=GB", roles)
            .check_binding(&ssa(), SOFTWARE)
            .is_ok());
        assert!(cert("CN=org1,organizationIdentifier=PSDGB-OB-org1,O=TPP Ltd,C=GB", roles)
            .check_binding(&ssa(), SOFTWARE)
            .is_ok());
        assert!(cert("CN=x,organizationIdentifier=PSDGB-FCA-123456,O=TPP Ltd", roles)
            .check_binding(&ssa(), BindingRules { level: BindingLevel::Organisation, check_psd2_roles: true })
            .is_ok());
        assert!(cert("CN=soft1,organizationIdentifier=PSDGB-FCA-999,O=TPP Ltd", roles)
            .check_binding(&ssa(), SOFTWARE)
            .is_err());
        assert!(cert("CN=soft1,O=Somebody", None)
            .check_binding(&ssa(), SOFTWARE)
            .unwrap_err()
            .0
            .contains("names no Open Banking organisation"));
    }

    #[test]
    fn psd2_roles_must_cover_the_software_roles() {
        let aisp_only = cert("CN=soft1,organizationIdentifier=PSDGB-OB-org1", Some(&["AISP"]));
        let err = aisp_only.check_binding(&ssa(), SOFTWARE).unwrap_err();
        assert!(err.0.contains("missing PISP"), "{err}");
        assert!(aisp_only
            .check_binding(&ssa(), BindingRules { level: BindingLevel::Software, check_psd2_roles: false })
            .is_ok());
    }

    #[test]
    fn software_binding_needs_a_cn() {
        let err = cert("OU=org1,O=OpenBanking", None).check_binding(&ssa(), SOFTWARE).unwrap_err();
        assert!(err.0.contains("no CN"), "{err}");
    }
}
