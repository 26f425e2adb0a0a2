//! Dynamic Client Registration (RFC 7591, OBIE DCR v3.3/v3.4): the request, the policy that
//! judges it, and the registered client with its response shape.

mod metadata;
mod policy;
mod request;
#[cfg(test)]
mod tests;

pub use metadata::{ApplicationType, AuthMethod, ClientMetadata, GrantType, ResponseType};
pub use policy::{Approved, RegistrationPolicy};
pub use request::{RegistrationRequest, RequestForm, MAX_SSA_CHARS};

use serde_json::{json, Map, Value};

use crate::clock::UnixTime;
use crate::secret::{IssuedSecret, SecretHash};

/// The longest `client_id` accepted anywhere: Keyfort issues 32 characters, and 36 leaves
/// room for a UUID from another server (a migration).
pub const MAX_CLIENT_ID_CHARS: usize = 36;

/// Whether `raw` has the shape of a client_id: 1 to [`MAX_CLIENT_ID_CHARS`] URL-safe
/// characters (letters, digits, `-`, `_`). Anything else names no client, and is refused
/// before any lookup: an anonymous caller must not make the server read or write the
/// database for an 8 KB path segment.
pub fn is_client_id(raw: &str) -> bool {
    !raw.is_empty()
        && raw.len() <= MAX_CLIENT_ID_CHARS
        && raw.bytes().all(|b| b.is_ascii_alphanumeric() || b == b'-' || b == b'_')
}

/// Why `raw` is not a client_id, for an error description (the value bounded and escaped).
pub fn not_a_client_id(raw: &str) -> String {
    format!(
        "{} is not a client_id of this server: a client_id has 1 to {MAX_CLIENT_ID_CHARS} letters, digits, '-' and '_'",
        crate::text::quote(raw)
    )
}

/// Lifetimes, in seconds, the bank grants the tokens of a registered client. They are
/// reported in the WSO2 `ext_*_lifetime` fields of the registration response.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct TokenLifetimes {
    pub application: i64,
    pub user: i64,
    pub refresh: i64,
    pub id_token: i64,
}

impl Default for TokenLifetimes {
    fn default() -> Self {
        Self { application: 3600, user: 3600, refresh: 86400, id_token: 3600 }
    }
}

/// Whether a registration is in force.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum ClientStatus {
    Active,
    /// Stopped by an operator: no tokens, no self-management, until reactivated.
    Suspended,
    Deleted,
}

impl ClientStatus {
    pub fn as_str(self) -> &'static str {
        match self {
            ClientStatus::Active => "active",
            ClientStatus::Suspended => "suspended",
            ClientStatus::Deleted => "deleted",
        }
    }

    pub fn parse(s: &str) -> Option<Self> {
        match s {
            "active" => Some(ClientStatus::Active),
            "suspended" => Some(ClientStatus::Suspended),
            "deleted" => Some(ClientStatus::Deleted),
            _ => None,
        }
    }
}

/// A client as it is stored: metadata plus the digests of its secrets, never the secrets.
#[derive(Debug, Clone, PartialEq)]
pub struct RegisteredClient {
    pub client_id: String,
    pub client_id_issued_at: UnixTime,
    pub status: ClientStatus,
    pub software_id: Option<String>,
    pub org_id: Option<String>,
    pub software_roles: Vec<String>,
    /// The SSA as received, echoed in responses as RFC 7591 §3.2.1 requires.
    pub software_statement: Option<String>,
    pub metadata: ClientMetadata,
    pub client_secret_hash: Option<SecretHash>,
    pub registration_access_token_hash: SecretHash,
    /// The transport certificate that authenticated the registration, remembered so tokens
    /// can be bound to it (RFC 8705) and `tls_client_auth` clients recognised.
    pub transport_certificate: Option<BoundCertificate>,
}

/// A certificate remembered with a client.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct BoundCertificate {
    /// base64url SHA-256 of the DER certificate (`x5t#S256`).
    pub thumbprint_s256: String,
    /// RFC 4514 subject.
    pub subject: String,
}

/// The secrets of a new registration, shown to the client once in the 201 response.
#[derive(Debug)]
pub struct IssuedCredentials {
    pub client_secret: Option<IssuedSecret>,
    pub registration_access_token: IssuedSecret,
}

impl RegisteredClient {
    /// Builds the client record for an approved request, generating its identifier and
    /// secrets. The caller persists the record and shows the credentials once.
    pub fn new(approved: Approved, software_statement: Option<String>, now: UnixTime) -> (Self, IssuedCredentials) {
        let client_secret =
            approved.metadata.token_endpoint_auth_method.uses_client_secret().then(IssuedSecret::generate);
        let registration_access_token = IssuedSecret::generate();
        let client = Self {
            client_id: crate::secret::new_client_id(),
            client_id_issued_at: now,
            status: ClientStatus::Active,
            software_id: approved.software_id,
            org_id: approved.org_id,
            software_roles: approved.software_roles,
            software_statement,
            metadata: approved.metadata,
            client_secret_hash: client_secret.as_ref().map(IssuedSecret::hash),
            registration_access_token_hash: registration_access_token.hash(),
            transport_certificate: None,
        };
        (client, IssuedCredentials { client_secret, registration_access_token })
    }

    /// The registration response body (RFC 7591 §3.2.1, RFC 7592 §3, OBIE DCR and the WSO2
    /// `ext_*` fields). `credentials` is present only in the answer to the registration itself.
    pub fn response_body(
        &self,
        credentials: Option<&IssuedCredentials>,
        lifetimes: &TokenLifetimes,
        registration_client_uri: &str,
    ) -> Value {
        let m = &self.metadata;
        let mut body = Map::new();
        let mut put = |k: &str, v: Value| {
            body.insert(k.to_owned(), v);
        };
        put("client_id", json!(self.client_id));
        put("client_id_issued_at", json!(self.client_id_issued_at));
        if let Some(creds) = credentials {
            if let Some(secret) = &creds.client_secret {
                put("client_secret", json!(secret.expose()));
            }
            put("registration_access_token", json!(creds.registration_access_token.expose()));
        }
        if self.client_secret_hash.is_some() {
            put("client_secret_expires_at", json!(0));
        }
        put("registration_client_uri", json!(registration_client_uri));
        put("redirect_uris", json!(m.redirect_uris));
        put("grant_types", json!(m.grant_types));
        put("response_types", json!(m.response_types));
        put("application_type", json!(m.application_type));
        put("client_name", json!(m.client_name));
        put("ext_application_display_name", json!(m.ext_application_display_name.as_deref().unwrap_or(&m.client_name)));
        put("ext_application_token_lifetime", json!(lifetimes.application));
        put("ext_user_token_lifetime", json!(lifetimes.user));
        put("ext_refresh_token_lifetime", json!(lifetimes.refresh));
        put("ext_id_token_lifetime", json!(lifetimes.id_token));
        put("ext_pkce_mandatory", json!(m.pkce_mandatory));
        put("ext_pkce_support_plain", json!(false));
        put("ext_public_client", json!(false));
        put("ext_token_type", json!("JWT"));
        put("token_type_extension", json!("JWT"));
        put("ext_allowed_audience", json!("organization"));
        put("jwks_uri", json!(m.jwks_uri.as_ref().map(|u| u.as_str())));
        put("token_endpoint_auth_method", json!(m.token_endpoint_auth_method));
        put("token_endpoint_auth_signing_alg", json!(m.token_endpoint_auth_signing_alg));
        put("token_endpoint_allow_reuse_pvt_key_jwt", json!(false));
        put("tls_client_auth_subject_dn", json!(m.tls_client_auth_subject_dn));
        put("id_token_signed_response_alg", json!(m.id_token_signed_response_alg));
        put("request_object_signing_alg", json!(m.request_object_signing_alg));
        put("require_signed_request_object", json!(m.require_signed_request_object));
        put("tls_client_certificate_bound_access_tokens", json!(m.tls_client_certificate_bound_access_tokens));
        put("require_pushed_authorization_requests", json!(m.require_pushed_authorization_requests));
        put("subject_type", json!("public"));
        put("scope", json!(m.scope.join(" ")));
        put("software_id", json!(self.software_id));
        put("software_statement", json!(self.software_statement));
        Value::Object(body)
    }
}
