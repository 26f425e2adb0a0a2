//! A registration request as the TPP sent it, typed claim by claim but not yet judged.

use crate::claims::{ClaimError, Claims};
use crate::clock::UnixTime;
use crate::error::OAuthError;

/// Longest `software_statement` accepted: real OB SSAs are 3–6 KB.
pub const MAX_SSA_CHARS: usize = 16 * 1024;

/// Which form the request arrived in: the OBIE signed JWT or the WSO2-style JSON object.
/// The signed form must carry `iat` and `exp`; in JSON they are checked when present.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum RequestForm {
    Json,
    SignedJwt,
}

#[derive(Debug, Clone, PartialEq, Default)]
pub struct RegistrationRequest {
    pub iss: Option<String>,
    pub aud: Option<Vec<String>>,
    pub iat: Option<UnixTime>,
    pub exp: Option<UnixTime>,
    pub jti: Option<String>,
    pub software_statement: Option<String>,
    pub software_id: Option<String>,
    pub client_name: Option<String>,
    pub ext_application_display_name: Option<String>,
    pub redirect_uris: Option<Vec<String>>,
    pub token_endpoint_auth_method: Option<String>,
    pub token_endpoint_auth_signing_alg: Option<String>,
    pub tls_client_auth_subject_dn: Option<String>,
    pub grant_types: Option<Vec<String>>,
    pub response_types: Option<Vec<String>>,
    pub application_type: Option<String>,
    pub scope: Option<String>,
    pub id_token_signed_response_alg: Option<String>,
    pub request_object_signing_alg: Option<String>,
    pub require_signed_request_object: Option<bool>,
    pub tls_client_certificate_bound_access_tokens: Option<bool>,
    pub require_pushed_authorization_requests: Option<bool>,
    pub token_endpoint_allow_reuse_pvt_key_jwt: Option<bool>,
    pub token_type_extension: Option<String>,
    pub jwks_uri: Option<String>,
    pub subject_type: Option<String>,
    /// WSO2's `ext_pkce_mandatory`: authorization requests must carry a PKCE challenge.
    pub ext_pkce_mandatory: Option<bool>,
    /// Encryption metadata Keyfort does not support, kept so the policy can say so.
    pub unsupported_encryption: Vec<&'static str>,
    /// Whether the request carried `jwks` (keys by value), which the policy refuses: a
    /// software's keys come from its SSA's `software_jwks_endpoint`, where the directory
    /// publishes (and revokes) them.
    pub jwks_by_value: bool,
}

fn metadata_error(e: ClaimError) -> OAuthError {
    OAuthError::invalid_client_metadata(e.to_string())
}

impl RegistrationRequest {
    /// Reads the claims RFC 7591, OIDC Registration and the OBIE profile define. Unknown
    /// claims are ignored, as RFC 7591 §2 requires; claims of the wrong JSON type are errors.
    pub fn from_claims(claims: &Claims) -> Result<Self, OAuthError> {
        let redirect_uris =
            claims.string_list("redirect_uris").map_err(|e| OAuthError::invalid_redirect_uri(e.to_string()))?;
        let software_statement = claims
            .long_string("software_statement", MAX_SSA_CHARS)
            .map_err(|e| OAuthError::invalid_software_statement(e.to_string()))?;
        let s = |name| claims.string(name).map_err(metadata_error);
        let b = |name| claims.bool(name).map_err(metadata_error);
        let l = |name| claims.string_list(name).map_err(metadata_error);
        let mut unsupported_encryption = Vec::new();
        for name in [
            "id_token_encrypted_response_alg",
            "id_token_encrypted_response_enc",
            "request_object_encryption_alg",
            "request_object_encryption_enc",
            "userinfo_encrypted_response_alg",
        ] {
            if claims.contains(name) {
                unsupported_encryption.push(name);
            }
        }
        Ok(Self {
            iss: s("iss")?,
            aud: claims.string_or_list("aud").map_err(metadata_error)?,
            iat: claims.numeric_date("iat").map_err(metadata_error)?,
            exp: claims.numeric_date("exp").map_err(metadata_error)?,
            jti: s("jti")?,
            software_statement,
            software_id: s("software_id")?,
            client_name: s("client_name")?,
            ext_application_display_name: s("ext_application_display_name")?,
            redirect_uris,
            token_endpoint_auth_method: s("token_endpoint_auth_method")?,
            token_endpoint_auth_signing_alg: s("token_endpoint_auth_signing_alg")?,
            tls_client_auth_subject_dn: s("tls_client_auth_subject_dn")?,
            grant_types: l("grant_types")?,
            response_types: l("response_types")?,
            application_type: s("application_type")?,
            scope: s("scope")?,
            id_token_signed_response_alg: s("id_token_signed_response_alg")?,
            request_object_signing_alg: s("request_object_signing_alg")?,
            require_signed_request_object: b("require_signed_request_object")?,
            tls_client_certificate_bound_access_tokens: b("tls_client_certificate_bound_access_tokens")?,
            require_pushed_authorization_requests: b("require_pushed_authorization_requests")?,
            token_endpoint_allow_reuse_pvt_key_jwt: b("token_endpoint_allow_reuse_pvt_key_jwt")?,
            token_type_extension: s("token_type_extension")?,
            jwks_uri: s("jwks_uri")?,
            subject_type: s("subject_type")?,
            ext_pkce_mandatory: b("ext_pkce_mandatory")?,
            unsupported_encryption,
            jwks_by_value: claims.contains("jwks"),
        })
    }
}
