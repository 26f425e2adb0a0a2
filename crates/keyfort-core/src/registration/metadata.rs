//! Client metadata values (RFC 7591 §2, OpenID Connect Registration §2, RFC 8705 §2), each a
//! closed enum so that a stored client can only hold values the policy accepted.

use std::fmt;
use std::str::FromStr;

use url::Url;

use crate::jose::SigningAlg;
use crate::redirect_uri::RedirectUri;
use crate::subject_dn::SubjectDn;

macro_rules! string_enum {
    ($(#[$meta:meta])* $name:ident { $($variant:ident => $text:literal),+ $(,)? }) => {
        $(#[$meta])*
        #[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord)]
        pub enum $name { $($variant),+ }

        impl $name {
            pub const ALL: &'static [$name] = &[$($name::$variant),+];

            pub fn as_str(self) -> &'static str {
                match self { $($name::$variant => $text),+ }
            }
        }

        impl FromStr for $name {
            type Err = String;
            fn from_str(s: &str) -> Result<Self, String> {
                match s {
                    $($text => Ok($name::$variant),)+
                    other => Err(other.chars().take(64).collect()),
                }
            }
        }

        impl fmt::Display for $name {
            fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result { f.write_str(self.as_str()) }
        }

        impl serde::Serialize for $name {
            fn serialize<S: serde::Serializer>(&self, s: S) -> Result<S::Ok, S::Error> {
                s.serialize_str(self.as_str())
            }
        }

        impl<'de> serde::Deserialize<'de> for $name {
            fn deserialize<D: serde::Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
                let s = String::deserialize(d)?;
                s.parse().map_err(|bad| serde::de::Error::custom(format!("unknown {} \"{bad}\"", stringify!($name))))
            }
        }
    };
}

string_enum!(
    /// How a client authenticates at the token endpoint. `client_secret_jwt` is deliberately
    /// absent: FAPI forbids it, and an HMAC assertion keyed with a secret the bank also
    /// holds proves less than `private_key_jwt`.
    AuthMethod {
        PrivateKeyJwt => "private_key_jwt",
        TlsClientAuth => "tls_client_auth",
        ClientSecretBasic => "client_secret_basic",
        ClientSecretPost => "client_secret_post",
    }
);

impl AuthMethod {
    /// Methods that authenticate with a shared secret the server must issue.
    pub fn uses_client_secret(self) -> bool {
        matches!(self, AuthMethod::ClientSecretBasic | AuthMethod::ClientSecretPost)
    }
}

string_enum!(
    GrantType {
        AuthorizationCode => "authorization_code",
        ClientCredentials => "client_credentials",
        RefreshToken => "refresh_token",
    }
);

string_enum!(
    ResponseType {
        Code => "code",
        CodeIdToken => "code id_token",
    }
);

string_enum!(
    /// `mobile` is OBIE DCR v3.3's spelling, `native` that of v3.4 and OpenID Connect.
    ApplicationType {
        Web => "web",
        Mobile => "mobile",
        Native => "native",
    }
);

/// The metadata of a registered client, every field already checked by the policy.
#[derive(Debug, Clone, PartialEq, serde::Serialize, serde::Deserialize)]
pub struct ClientMetadata {
    pub client_name: String,
    pub ext_application_display_name: Option<String>,
    pub redirect_uris: Vec<RedirectUri>,
    pub token_endpoint_auth_method: AuthMethod,
    pub token_endpoint_auth_signing_alg: Option<SigningAlg>,
    pub tls_client_auth_subject_dn: Option<SubjectDn>,
    pub grant_types: Vec<GrantType>,
    pub response_types: Vec<ResponseType>,
    pub application_type: ApplicationType,
    /// Registered scopes, in the order requested.
    pub scope: Vec<String>,
    pub id_token_signed_response_alg: Option<SigningAlg>,
    pub request_object_signing_alg: Option<SigningAlg>,
    pub require_signed_request_object: bool,
    pub tls_client_certificate_bound_access_tokens: bool,
    pub require_pushed_authorization_requests: bool,
    pub jwks_uri: Option<Url>,
    /// WSO2's `ext_pkce_mandatory`: the client's authorization requests must carry a PKCE
    /// (S256) challenge. Clients stored before it existed read as `false`.
    #[serde(default)]
    pub pkce_mandatory: bool,
}
