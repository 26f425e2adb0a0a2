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

/// The Open Banking certificate profiles, each recognised by what its subject carries.
/// Which CAs may issue which profile is configuration (`[mtls.profile_ca_files]`): the
/// legacy profile is only an `O=OpenBanking` in the subject, which any CA could write.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub enum CertificateProfile {
    /// The legacy OB transport certificate: `O=OpenBanking, OU=<org_id>, CN=<software_id>`.
    LegacyOpenBanking,
    /// An OBWAC: `organizationIdentifier=PSDGB-OB-<org_id>`.
    Obwac,
    /// An eIDAS QWAC of a QTSP: `organizationIdentifier=PSD<CC>-<NCA>-<id>`.
    Eidas,
}

impl CertificateProfile {
    pub const ALL: [CertificateProfile; 3] =
        [CertificateProfile::LegacyOpenBanking, CertificateProfile::Obwac, CertificateProfile::Eidas];

    /// Its key in `[mtls.profile_ca_files]`.
    pub fn config_key(self) -> &'static str {
        match self {
            CertificateProfile::LegacyOpenBanking => "legacy_ob",
            CertificateProfile::Obwac => "obwac",
            CertificateProfile::Eidas => "eidas",
        }
    }

    pub fn from_config_key(key: &str) -> Option<Self> {
        Self::ALL.into_iter().find(|p| p.config_key() == key)
    }

    /// How a TPP developer would recognise it.
    pub fn describe(self) -> &'static str {
        match self {
            CertificateProfile::LegacyOpenBanking => "legacy Open Banking transport (O=OpenBanking, OU=<org_id>)",
            CertificateProfile::Obwac => "OBWAC (organizationIdentifier=PSDGB-OB-<org_id>)",
            CertificateProfile::Eidas => "eIDAS QWAC (organizationIdentifier=PSD<country>-<NCA>-<id>)",
        }
    }
}

/// Whether an organizationIdentifier has the eIDAS shape `PSD<2 letters>-<NCA>-<id>`;
/// returns the registration id.
fn eidas_registration_id(identifier: &str) -> Option<&str> {
    let mut parts = identifier.splitn(3, '-');
    match (parts.next(), parts.next(), parts.next()) {
        (Some(psd), Some(nca), Some(id))
            if psd.len() == 5 && psd.starts_with("PSD") && !nca.is_empty() && !id.is_empty() =>
        {
            Some(id)
        }
        _ => None,
    }
}

fn is_open_banking_o(value: &str) -> bool {
    value.eq_ignore_ascii_case("OpenBanking")
}

impl CertificateIdentity {
    /// Every profile this subject could be taken for, however ambiguous it is: an issuer
    /// must be trusted for each of them (a subject that claims two profiles needs both).
    pub fn claimed_profiles(&self) -> Vec<CertificateProfile> {
        let mut profiles = Vec::new();
        let identifiers = self.subject.values(OID_ORGANIZATION_IDENTIFIER);
        if identifiers.iter().any(|id| id.starts_with("PSDGB-OB-")) {
            profiles.push(CertificateProfile::Obwac);
        }
        if identifiers.iter().any(|id| !id.starts_with("PSDGB-OB-") && eidas_registration_id(id).is_some()) {
            profiles.push(CertificateProfile::Eidas);
        }
        if identifiers.is_empty() && self.subject.values(OID_O).into_iter().any(is_open_banking_o) {
            profiles.push(CertificateProfile::LegacyOpenBanking);
        }
        profiles
    }

    /// The one value of an attribute the binding reads; several values make the subject
    /// ambiguous, and it is refused rather than bound by whichever value comes first.
    fn single(&self, oid: &str, name: &str) -> Result<Option<&str>, BindingMismatch> {
        self.subject.single(oid).map_err(|values| {
            BindingMismatch(format!(
                "the transport certificate's subject ({}) has {} values of {name} ({}); a certificate is bound to an \
                 organisation and software only when its subject has exactly one {name}",
                self.subject,
                values.len(),
                values.iter().map(|v| format!("\"{v}\"")).collect::<Vec<_>>().join(", ")
            ))
        })
    }

    /// The organisation the certificate names, by its profile. A subject with several
    /// values of an attribute the profile reads (organizationIdentifier; O and OU of the
    /// legacy profile) is refused.
    pub fn organisation(&self) -> Result<Option<CertificateOrganisation>, BindingMismatch> {
        if let Some(identifier) = self.single(OID_ORGANIZATION_IDENTIFIER, "organizationIdentifier")? {
            if let Some(org_id) = identifier.strip_prefix("PSDGB-OB-") {
                return Ok(Some(CertificateOrganisation::OpenBanking(org_id.to_owned())));
            }
            return Ok(eidas_registration_id(identifier).map(|registration_id| CertificateOrganisation::Eidas {
                identifier: identifier.to_owned(),
                registration_id: registration_id.to_owned(),
            }));
        }
        if !self.subject.values(OID_O).into_iter().any(is_open_banking_o) {
            return Ok(None);
        }
        // The legacy profile: O=OpenBanking marks it, OU names the organisation.
        self.single(OID_O, "O")?;
        Ok(self.single(OID_OU, "OU")?.map(|ou| CertificateOrganisation::OpenBanking(ou.to_owned())))
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

    // Identifiers are compared exactly: Open Banking organisation and software ids are
    // case-sensitive base62, so "abc" and "ABC" are two different parties.
    fn check_organisation(&self, ssa: &BindingSubject<'_>) -> Result<(), BindingMismatch> {
        match self.organisation()? {
            Some(CertificateOrganisation::OpenBanking(org)) if org == ssa.org_id => Ok(()),
            Some(CertificateOrganisation::OpenBanking(org)) => Err(BindingMismatch(format!(
                "the transport certificate belongs to organisation \"{org}\" but the software statement's org_id is \"{}\" (compared exactly, case included)",
                ssa.org_id
            ))),
            Some(CertificateOrganisation::Eidas { identifier, registration_id }) => {
                match ssa.competent_authority_registration_id {
                    Some(expected) if expected == registration_id => Ok(()),
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
        let Some(cn) = self.single(OID_CN, "CN")? else {
            return Err(BindingMismatch(format!(
                "the transport certificate ({}) has no CN, so it names no software; expected CN=<software_id> or CN=<org_id>",
                self.subject
            )));
        };
        // A CN equal to the organisation marks an organisation-level certificate.
        let names_organisation = cn == ssa.org_id || ssa.competent_authority_registration_id == Some(cn);
        if names_organisation || cn == ssa.software_id {
            return Ok(());
        }
        Err(BindingMismatch(format!(
            "the transport certificate's CN \"{cn}\" is neither the software statement's software_id \"{}\" nor its org_id (compared exactly, case included)",
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

    /// Finding 4 of the hardening issue: a subject with two values of an attribute the
    /// profile reads is not bound by whichever value comes first.
    #[test]
    fn ambiguous_subjects_are_refused_naming_the_attribute() {
        for (dn, attribute) in [
            ("CN=soft1,OU=org1+OU=org2,O=OpenBanking,C=GB", "2 values of OU"),
            ("CN=soft1,OU=org2+OU=org1,O=OpenBanking,C=GB", "2 values of OU"),
            ("CN=soft1,OU=org1,OU=org2,O=OpenBanking,C=GB", "2 values of OU"),
            ("CN=soft1,CN=soft2,OU=org1,O=OpenBanking,C=GB", "2 values of CN"),
            ("CN=soft1+CN=other,OU=org1,O=OpenBanking,C=GB", "2 values of CN"),
            ("CN=soft1,OU=org1,O=OpenBanking+O=Other,C=GB", "2 values of O"),
            ("CN=soft1,OU=org1,O=Other,O=OpenBanking,C=GB", "2 values of O"),
            (
                "CN=soft1,organizationIdentifier=PSDGB-OB-org1+organizationIdentifier=PSDGB-OB-org2,O=TPP",
                "2 values of organizationIdentifier",
            ),
        ] {
            let err = cert(dn, None).check_binding(&ssa(), SOFTWARE).expect_err(dn);
            assert!(err.0.contains(attribute) && err.0.contains("exactly one"), "{dn}: {err}");
        }
        // The organisation-level check reads no CN: two CNs do not matter there.
        let org_only = BindingRules { level: BindingLevel::Organisation, check_psd2_roles: true };
        assert!(cert("CN=a,CN=b,OU=org1,O=OpenBanking", None).check_binding(&ssa(), org_only).is_ok());
    }

    #[test]
    fn identifiers_are_compared_with_their_case() {
        for dn in [
            "CN=SOFT1,OU=org1,O=OpenBanking,C=GB",
            "CN=soft1,OU=ORG1,O=OpenBanking,C=GB",
            "CN=soft1,organizationIdentifier=PSDGB-OB-ORG1,O=TPP",
        ] {
            assert!(cert(dn, None).check_binding(&ssa(), SOFTWARE).is_err(), "{dn}");
        }
    }

    #[test]
    fn profiles_are_recognised_by_the_subject() {
        let profiles = |dn: &str| cert(dn, None).claimed_profiles();
        assert_eq!(profiles("CN=s,OU=o,O=OpenBanking,C=GB"), vec![CertificateProfile::LegacyOpenBanking]);
        assert_eq!(profiles("CN=s,organizationIdentifier=PSDGB-OB-o,O=TPP"), vec![CertificateProfile::Obwac]);
        assert_eq!(profiles("CN=s,organizationIdentifier=PSDDE-BAFIN-123,O=TPP"), vec![CertificateProfile::Eidas]);
        assert_eq!(
            profiles("CN=s,organizationIdentifier=PSDGB-OB-o+organizationIdentifier=PSDDE-BAFIN-1,O=OpenBanking"),
            vec![CertificateProfile::Obwac, CertificateProfile::Eidas]
        );
        assert!(profiles("CN=s,O=Somebody").is_empty());
    }

    #[test]
    fn software_binding_needs_a_cn() {
        let err = cert("OU=org1,O=OpenBanking", None).check_binding(&ssa(), SOFTWARE).unwrap_err();
        assert!(err.0.contains("no CN"), "{err}");
    }
}
