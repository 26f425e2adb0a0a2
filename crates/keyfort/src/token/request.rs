//! A token endpoint request, typed: how the client authenticates and which grant it asks
//! for. The HTTP edge decodes the form into these; the service never sees form fields.

use keyfort_core::registration::RegisteredClient;
use keyfort_core::transport::CertificateIdentity;

/// The client authentication a request carries, before it is checked (RFC 6749 §2.3,
/// RFC 7523 §2.2, RFC 8705 §2). Exactly one method per request.
pub enum ClientCredentials {
    /// `private_key_jwt`: a JWT signed with a key of the client's JWKS.
    Assertion {
        /// `client_assertion_type` as sent; it must be the JWT bearer type.
        assertion_type: Option<String>,
        assertion: String,
        /// `client_id`, optional next to an assertion; when sent it must match the `iss`.
        client_id: Option<String>,
    },
    /// `client_secret_basic`: the `Authorization: Basic` header.
    SecretBasic { client_id: String, secret: String },
    /// `client_secret_post`: `client_id` and `client_secret` in the form.
    SecretPost { client_id: String, secret: String },
    /// `client_id` alone: `tls_client_auth`, proven by the TLS client certificate.
    ClientId(String),
    /// No authentication at all.
    None,
}

impl std::fmt::Debug for ClientCredentials {
    // Never print an assertion or a secret.
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            ClientCredentials::Assertion { client_id, .. } => {
                f.debug_struct("Assertion").field("client_id", client_id).finish_non_exhaustive()
            }
            ClientCredentials::SecretBasic { client_id, .. } => {
                f.debug_struct("SecretBasic").field("client_id", client_id).finish_non_exhaustive()
            }
            ClientCredentials::SecretPost { client_id, .. } => {
                f.debug_struct("SecretPost").field("client_id", client_id).finish_non_exhaustive()
            }
            ClientCredentials::ClientId(id) => f.debug_tuple("ClientId").field(id).finish(),
            ClientCredentials::None => f.write_str("None"),
        }
    }
}

/// The grant a client asks for, one variant per `grant_type` this server issues.
#[derive(Clone, PartialEq, Eq)]
pub enum Grant {
    /// RFC 6749 §4.4, with the requested `scope` (none means every registered scope).
    ClientCredentials { scope: Option<String> },
    /// RFC 6749 §4.1.3: a code from the customer's authorization, with the redirect URI of
    /// that request and the PKCE verifier (RFC 7636) when the request had a challenge.
    AuthorizationCode { code: String, redirect_uri: Option<String>, code_verifier: Option<String> },
    /// RFC 6749 §6, optionally narrowing the scope.
    RefreshToken { refresh_token: String, scope: Option<String> },
}

impl std::fmt::Debug for Grant {
    // Never print a code, a refresh token or a verifier.
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            Grant::ClientCredentials { scope } => f.debug_struct("ClientCredentials").field("scope", scope).finish(),
            Grant::AuthorizationCode { redirect_uri, .. } => {
                f.debug_struct("AuthorizationCode").field("redirect_uri", redirect_uri).finish_non_exhaustive()
            }
            Grant::RefreshToken { scope, .. } => {
                f.debug_struct("RefreshToken").field("scope", scope).finish_non_exhaustive()
            }
        }
    }
}

/// A client whose authentication at the token endpoint succeeded, with the certificate of
/// the call. Only [`super::TokenService::authenticate`] makes one.
#[derive(Debug)]
pub struct AuthenticatedClient {
    pub(super) client: RegisteredClient,
    pub(super) certificate: Option<CertificateIdentity>,
}

impl AuthenticatedClient {
    pub fn client(&self) -> &RegisteredClient {
        &self.client
    }

    pub fn certificate(&self) -> Option<&CertificateIdentity> {
        self.certificate.as_ref()
    }
}

/// A successful token response (RFC 6749 §5.1).
#[derive(Debug, Clone, serde::Serialize)]
pub struct TokenResponse {
    pub access_token: String,
    pub token_type: &'static str,
    pub expires_in: i64,
    pub scope: String,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub refresh_token: Option<String>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub id_token: Option<String>,
}
