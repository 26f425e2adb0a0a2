//! The client-credentials grant (RFC 6749 §4.4): an access token for the client itself,
//! bound to its certificate where it registered for that (RFC 8705).

use keyfort_core::error::ErrorCode;
use keyfort_core::registration::GrantType;
use keyfort_core::token::{select_scope, AccessTokenClaims};

use super::{AuthenticatedClient, TokenResponse, TokenService};
use crate::error::ServiceError;

/// The refusal when the client cannot be at fault: this server's configuration lets no
/// certificate reach it (a development server started with the development switch).
pub(super) const SERVER_TAKES_NO_CERTIFICATES: &str =
    "this server is not configured for mutual TLS (its operator set no [server.tls] client_ca_file), so it cannot \
     see any client certificate and cannot issue the certificate-bound tokens this client registered for; this is \
     the server's configuration, not your request: ask the bank's operator";

impl TokenService {
    pub(super) fn client_credentials(
        &self,
        authenticated: &AuthenticatedClient,
        requested_scope: Option<&str>,
    ) -> Result<TokenResponse, ServiceError> {
        let client = authenticated.client();
        if !client.metadata.grant_types.contains(&GrantType::ClientCredentials) {
            return Err(ServiceError::refused(
                ErrorCode::UnauthorizedClient,
                "this client did not register the client_credentials grant; update its registration's grant_types",
            ));
        }
        let scope = select_scope(requested_scope, &client.metadata.scope)?;
        let certificate_thumbprint = self.bound_thumbprint(authenticated)?;
        let now = self.clock.now();
        let lifetime = self.config.token_lifetimes.application;
        let claims = AccessTokenClaims {
            issuer: self.config.server.public_url.clone(),
            audience: self.config.token.access_token_audience.clone(),
            client_id: client.client_id.clone(),
            scope: scope.clone(),
            issued_at: now,
            expires_at: now + lifetime,
            jti: keyfort_core::secret::random_b64url(16),
            certificate_thumbprint,
            consent: None,
        };
        let token = self.ring.signing_key().sign_jwt(&claims.to_json(), "at+jwt");
        tracing::info!(bound = claims.certificate_thumbprint.is_some(), "access token issued");
        Ok(TokenResponse {
            access_token: token,
            token_type: "Bearer",
            expires_in: lifetime,
            scope: scope.join(" "),
            refresh_token: None,
            id_token: None,
        })
    }
}
