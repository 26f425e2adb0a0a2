//! Who may read, update or delete a registration (RFC 7592, OBIE DCR): the holder of its
//! registration access token, or of a client-credentials access token of that same client
//! (with its certificate, if the token is certificate-bound).

use keyfort_core::error::{ErrorCode, OAuthError};
use keyfort_core::registration::{ClientStatus, RegisteredClient};
use keyfort_core::transport::CertificateIdentity;

use super::RegistrationService;
use crate::http::ApiError;
use crate::token::TokenService;

fn invalid_token(description: impl Into<String>) -> ApiError {
    OAuthError::new(ErrorCode::InvalidToken, description).into()
}

impl RegistrationService {
    pub async fn authorize_management(
        &self,
        tokens: &TokenService,
        client_id: &str,
        bearer: Option<&str>,
        certificate: Option<&CertificateIdentity>,
    ) -> Result<RegisteredClient, ApiError> {
        let bearer = bearer.filter(|b| !b.is_empty()).ok_or_else(|| {
            invalid_token("a Bearer token is required: the registration_access_token, or a client_credentials access token of this client")
        })?;
        let client = self.store.find_client(client_id).await.map_err(|e| ApiError::Internal(e.into()))?;
        if client.as_ref().is_some_and(|c| c.status == ClientStatus::Suspended) {
            return Err(invalid_token(format!(
                "client \"{client_id}\" is suspended by the bank and cannot manage its registration"
            )));
        }
        let Some(client) = client.filter(|c| c.status == ClientStatus::Active) else {
            // OBIE: a token presented for an unknown client is revoked.
            tokens.revoke_if_ours(bearer).await;
            return Err(invalid_token(format!("client \"{client_id}\" is not registered (or was deleted)")));
        };
        if client.registration_access_token_hash.matches(bearer) {
            return Ok(client);
        }
        match tokens.verify_access_token(bearer).await {
            Ok(claims) if claims.client_id == client.client_id => {
                if let Some(thumbprint) = &claims.certificate_thumbprint {
                    if certificate.map(|c| &c.thumbprint_s256) != Some(thumbprint) {
                        return Err(invalid_token(
                            "the access token is bound to a client certificate: present that certificate over mutual TLS",
                        ));
                    }
                }
                Ok(client)
            }
            Ok(_) => Err(invalid_token("the token was issued to another client")),
            Err(rejected) => Err(invalid_token(format!(
                "{}; use the registration_access_token or a client_credentials access token of this client",
                rejected.describe()
            ))),
        }
    }
}
