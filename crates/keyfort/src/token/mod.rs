//! The token service: client-credentials access tokens for onboarded TPPs (RFC 6749 §4.4),
//! bound to the client certificate where the client registered for it (RFC 8705), and
//! their introspection (RFC 7662) and revocation (RFC 7009).

mod authorization_code;
mod client_auth;
mod client_credentials;
mod request;

use std::sync::Arc;

use keyfort_core::clock::Clock;
use keyfort_core::error::{ErrorCode, OAuthError};
use keyfort_core::jose::{CompactJws, SigningAlg};
use keyfort_core::registration::{ClientStatus, RegisteredClient};
use keyfort_core::token::AccessTokenClaims;
use keyfort_core::transport::{BindingSubject, CertificateIdentity};
use serde_json::{json, Value};

pub use request::{AuthenticatedClient, ClientCredentials, Grant, TokenResponse};

use crate::config::Config;
use crate::directory::JwksCache;
use crate::error::ServiceError;
use crate::signing::KeyRing;
use crate::storage::Store;

pub const TOKEN_PATH: &str = "/oauth2/token";
pub const INTROSPECTION_PATH: &str = "/oauth2/introspect";
pub const REVOCATION_PATH: &str = "/oauth2/revoke";
pub const JWKS_PATH: &str = "/oauth2/jwks";

pub struct TokenService {
    config: Arc<Config>,
    store: Arc<dyn Store>,
    jwks: Arc<JwksCache>,
    ring: Arc<KeyRing>,
    clock: Arc<dyn Clock>,
}

/// Why a presented access token is not usable. Kept apart from error responses because
/// each endpoint answers differently (introspection says `active: false`).
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum TokenRejected {
    Malformed,
    Expired,
    Revoked,
    ClientGone,
    /// The consent the token acts under is no longer Authorised (revoked, expired, consumed),
    /// or the authorization it came from was revoked (a reused code).
    ConsentEnded,
}

impl TokenRejected {
    pub fn describe(&self) -> &'static str {
        match self {
            TokenRejected::Malformed => "the token is not an access token issued by this server",
            TokenRejected::Expired => "the access token has expired",
            TokenRejected::Revoked => "the access token has been revoked",
            TokenRejected::ClientGone => "the access token's client is no longer registered",
            TokenRejected::ConsentEnded => "the consent this access token acts under is no longer in force",
        }
    }
}

impl TokenService {
    pub fn new(
        config: Arc<Config>,
        store: Arc<dyn Store>,
        jwks: Arc<JwksCache>,
        ring: Arc<KeyRing>,
        clock: Arc<dyn Clock>,
    ) -> Self {
        Self { config, store, jwks, ring, clock }
    }

    pub fn token_endpoint(&self) -> String {
        format!("{}{TOKEN_PATH}", self.config.server.public_url)
    }

    fn assertion_audiences(&self) -> Vec<String> {
        let issuer = self.config.server.public_url.clone();
        vec![self.token_endpoint(), issuer.clone(), format!("{issuer}/")]
    }

    /// Issues what `grant` asks for to an authenticated client.
    #[tracing::instrument(skip_all, fields(client_id = %client.client().client_id))]
    pub async fn issue(&self, client: &AuthenticatedClient, grant: Grant) -> Result<TokenResponse, ServiceError> {
        match grant {
            Grant::ClientCredentials { scope } => self.client_credentials(client, scope.as_deref()),
            Grant::AuthorizationCode { code, redirect_uri, code_verifier } => {
                self.authorization_code(client, &code, redirect_uri.as_deref(), code_verifier.as_deref()).await
            }
            Grant::RefreshToken { refresh_token, scope } => {
                self.refresh_token(client, &refresh_token, scope.as_deref()).await
            }
        }
    }

    /// The thumbprint a token of `client` is bound to: its certificate of this call, which
    /// must be one of its own, when it registered for certificate-bound tokens.
    fn bound_thumbprint(&self, client: &AuthenticatedClient) -> Result<Option<String>, ServiceError> {
        let registered = client.client();
        if !registered.metadata.tls_client_certificate_bound_access_tokens {
            return Ok(None);
        }
        let cert = client.certificate().ok_or_else(|| {
            OAuthError::invalid_request(
                "this client is registered for certificate-bound access tokens: call the token endpoint over mutual TLS with your transport certificate",
            )
        })?;
        self.check_certificate_belongs_to(registered, cert)?;
        Ok(Some(cert.thumbprint_s256.clone()))
    }

    /// A token is bound only to a certificate of the client: the one it registered with, or
    /// another of its organisation (and software, per `certificate_binding`), so a stolen
    /// signing key alone cannot get tokens bound to somebody else's certificate.
    fn check_certificate_belongs_to(
        &self,
        client: &RegisteredClient,
        cert: &CertificateIdentity,
    ) -> Result<(), ServiceError> {
        if client.transport_certificate.as_ref().is_some_and(|bound| bound.thumbprint_s256 == cert.thumbprint_s256) {
            return Ok(());
        }
        let (Some(org_id), Some(software_id)) = (client.org_id.as_deref(), client.software_id.as_deref()) else {
            return Err(OAuthError::new(
                ErrorCode::InvalidClient,
                "this client has no organisation on record: call with the certificate it registered with",
            )
            .into());
        };
        let subject = BindingSubject {
            org_id,
            software_id,
            competent_authority_registration_id: None,
            software_roles: &client.software_roles,
        };
        cert.check_binding(subject, self.config.dcr.binding).map_err(|mismatch| {
            ServiceError::refused(
                ErrorCode::InvalidClient,
                format!("{mismatch}; call with a transport certificate of this client"),
            )
        })
    }

    /// Verifies an access token this server issued: signature by a published key, issuer,
    /// expiry, revocation, and that its client is still registered. The outer error is a
    /// storage failure: the token's fate is then unknown, and must not be reported as a bad
    /// token (a database outage would look like every token being revoked).
    pub async fn verify_access_token(
        &self,
        token: &str,
    ) -> Result<Result<AccessTokenClaims, TokenRejected>, ServiceError> {
        let Some(claims) = self.signed_claims(token) else { return Ok(Err(TokenRejected::Malformed)) };
        if claims.expires_at <= self.clock.now() {
            return Ok(Err(TokenRejected::Expired));
        }
        if self.store.is_token_revoked(&claims.jti).await? {
            return Ok(Err(TokenRejected::Revoked));
        }
        match self.store.find_client(&claims.client_id).await? {
            Some(client) if client.status == ClientStatus::Active => {}
            _ => return Ok(Err(TokenRejected::ClientGone)),
        }
        if let Some(binding) = &claims.consent {
            let granted = self.store.find_grant(&binding.grant_id).await?;
            if !granted.is_some_and(|grant| grant.revoked_at.is_none() && grant.consent_id == binding.consent_id) {
                return Ok(Err(TokenRejected::ConsentEnded));
            }
            let consent = self.store.find_consent(&binding.consent_id).await?;
            let in_force = consent.is_some_and(|c| {
                c.status == keyfort_core::consent::ConsentStatus::Authorised && !c.expired(self.clock.now())
            });
            if !in_force {
                return Ok(Err(TokenRejected::ConsentEnded));
            }
        }
        Ok(Ok(claims))
    }

    /// RFC 7662: what `caller` may know about `token`. Tokens of other clients are reported
    /// inactive, so a client learns nothing about another's tokens.
    #[tracing::instrument(skip_all, fields(client_id = %caller.client().client_id))]
    pub async fn introspect(&self, caller: &AuthenticatedClient, token: &str) -> Result<Value, ServiceError> {
        Ok(match self.verify_access_token(token).await? {
            Ok(claims) if claims.client_id == caller.client().client_id => {
                let mut body = json!({
                    "active": true,
                    "token_type": "Bearer",
                    "client_id": claims.client_id,
                    "sub": claims.client_id,
                    "scope": claims.scope.join(" "),
                    "iss": claims.issuer,
                    "aud": claims.audience,
                    "iat": claims.issued_at,
                    "exp": claims.expires_at,
                    "jti": claims.jti,
                });
                if let Some(thumbprint) = claims.certificate_thumbprint {
                    body["cnf"] = json!({ "x5t#S256": thumbprint });
                }
                body
            }
            _ => json!({ "active": false }),
        })
    }

    /// RFC 7009: revokes `token` if it is `caller`'s. Unknown and invalid tokens are not an
    /// error (§2.2); another client's token is refused.
    #[tracing::instrument(skip_all, fields(client_id = %caller.client().client_id))]
    pub async fn revoke(&self, caller: &AuthenticatedClient, token: &str) -> Result<(), ServiceError> {
        let Some(claims) = self.signed_claims(token) else { return Ok(()) };
        if claims.client_id != caller.client().client_id {
            return Err(ServiceError::Refused(OAuthError::new(
                ErrorCode::UnauthorizedClient,
                "the token was not issued to this client",
            )));
        }
        self.revoke_claims(&claims).await
    }

    /// Revokes an access token whatever its client (used when a token is presented for a
    /// client that no longer exists, as the OBIE DCR specification asks).
    pub async fn revoke_if_ours(&self, token: &str) {
        if let Some(claims) = self.signed_claims(token) {
            if let Err(e) = self.revoke_claims(&claims).await {
                tracing::warn!(error = ?e, "revoking a presented token failed");
            }
        }
    }

    async fn revoke_claims(&self, claims: &AccessTokenClaims) -> Result<(), ServiceError> {
        Ok(self.store.revoke_token(&claims.jti, &claims.client_id, claims.expires_at).await?)
    }

    /// The claims of a token signed by one of this server's published keys, without the
    /// expiry and revocation checks.
    fn signed_claims(&self, token: &str) -> Option<AccessTokenClaims> {
        let jws = CompactJws::parse(token).ok()?;
        let claims = jws.verify(&self.ring.verification_keys(), &SigningAlg::ALL, true).ok()?;
        AccessTokenClaims::from_claims(&claims).filter(|c| c.issuer == self.config.server.public_url)
    }

    pub fn ring(&self) -> &KeyRing {
        &self.ring
    }
}
