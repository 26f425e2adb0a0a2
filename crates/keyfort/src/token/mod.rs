//! The token service: client-credentials access tokens for onboarded TPPs (RFC 6749 §4.4),
//! bound to the client certificate where the client registered for it (RFC 8705), and
//! their introspection (RFC 7662) and revocation (RFC 7009); and the customer's grants
//! (authorization code, refresh token) whose tokens act under a consent.

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

use keyfort_core::consent::{Consent, ConsentStatus, ConsentType};

use crate::caller::ResourceServer;

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

/// An access token that passed [`TokenService::inspect_access_token`], with the consent it
/// acts under (a customer's token) as it is now.
#[derive(Debug, Clone)]
pub struct InspectedToken {
    pub claims: AccessTokenClaims,
    pub consent: Option<Consent>,
}

/// Who asks what a token is (RFC 7662).
#[derive(Debug, Clone, Copy)]
pub enum Introspector<'a> {
    /// A client, about its own tokens.
    Client(&'a AuthenticatedClient),
    /// The bank's gateway or resource server, about any token.
    ResourceServer(&'a ResourceServer),
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
            if self.config.certificates_possible() {
                OAuthError::invalid_request(
                    "this client is registered for certificate-bound access tokens: call the token endpoint over mutual TLS with your transport certificate",
                )
            } else {
                OAuthError::invalid_request(client_credentials::SERVER_TAKES_NO_CERTIFICATES)
            }
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

    /// The claims of `token` if it is an access token of this server, not expired or
    /// revoked, of an active client, and — for a token of a customer's consent — its grant
    /// is not revoked and its consent is Authorised and not expired.
    pub async fn verify_access_token(
        &self,
        token: &str,
    ) -> Result<Result<AccessTokenClaims, TokenRejected>, ServiceError> {
        Ok(self.inspect_access_token(token).await?.and_then(|inspected| match &inspected.consent {
            Some(consent) if !self.in_force(consent) => Err(TokenRejected::ConsentEnded),
            _ => Ok(inspected.claims),
        }))
    }

    /// [`TokenService::verify_access_token`] without the consent's status: a resource
    /// server is told the consent's status, not only that the token stopped working. A
    /// revoked grant (a reused code, a customer stopping a payment's access) still ends
    /// the token here, and a consent that no longer exists too.
    pub async fn inspect_access_token(
        &self,
        token: &str,
    ) -> Result<Result<InspectedToken, TokenRejected>, ServiceError> {
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
        let consent = match &claims.consent {
            None => None,
            Some(binding) => {
                let granted = self.store.find_grant(&binding.grant_id).await?;
                if !granted.is_some_and(|grant| grant.revoked_at.is_none() && grant.consent_id == binding.consent_id) {
                    return Ok(Err(TokenRejected::ConsentEnded));
                }
                match self.store.find_consent(&binding.consent_id).await? {
                    Some(consent) => Some(consent),
                    None => return Ok(Err(TokenRejected::ConsentEnded)),
                }
            }
        };
        Ok(Ok(InspectedToken { claims, consent }))
    }

    /// Whether a customer's token still works under `consent`: Authorised and not expired,
    /// or a payment consent its payment consumed (the payment's status is still read with
    /// the token; no new token is issued under it).
    fn in_force(&self, consent: &Consent) -> bool {
        let live = match consent.status {
            ConsentStatus::Authorised => true,
            ConsentStatus::Consumed => consent.kind == ConsentType::DomesticPayment,
            _ => false,
        };
        live && !consent.expired(self.clock.now())
    }

    /// RFC 7662: what `asker` may know about `token`. A client sees only its own tokens
    /// (another's are reported inactive, so it learns nothing about them); a resource
    /// server sees every token. A token of a customer's consent also names the consent, its
    /// type and status, the permissions and the accounts the customer chose, for a gateway
    /// to enforce them.
    #[tracing::instrument(skip_all)]
    pub async fn introspect(&self, asker: Introspector<'_>, token: &str) -> Result<Value, ServiceError> {
        let inactive = json!({ "active": false });
        let Ok(inspected) = self.inspect_access_token(token).await? else { return Ok(inactive) };
        if inspected.consent.as_ref().is_some_and(|consent| !self.in_force(consent)) {
            return Ok(inactive);
        }
        let claims = &inspected.claims;
        if let Introspector::Client(client) = asker {
            if claims.client_id != client.client().client_id {
                return Ok(inactive);
            }
        }
        let subject = claims.consent.as_ref().map_or(&claims.client_id, |binding| &binding.subject);
        let mut body = json!({
            "active": true,
            "token_type": "Bearer",
            "client_id": claims.client_id,
            "sub": subject,
            "scope": claims.scope.join(" "),
            "iss": claims.issuer,
            "aud": claims.audience,
            "iat": claims.issued_at,
            "exp": claims.expires_at,
            "jti": claims.jti,
        });
        if let Some(thumbprint) = &claims.certificate_thumbprint {
            body["cnf"] = json!({ "x5t#S256": thumbprint });
        }
        if let Some(consent) = &inspected.consent {
            body["consent_id"] = json!(consent.id);
            body["openbanking_intent_id"] = json!(consent.id);
            body["consent_type"] = json!(consent.kind.as_str());
            body["consent_status"] = json!(consent.status.as_str());
            body["permissions"] = json!(consent.permissions().iter().map(|p| p.as_str()).collect::<Vec<_>>());
            body["account_ids"] = json!(consent.account_ids);
        }
        Ok(body)
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
