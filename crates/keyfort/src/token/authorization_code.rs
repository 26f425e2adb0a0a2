//! The customer's grants: `authorization_code` (RFC 6749 §4.1.3, OpenID Connect §3.3.3)
//! and `refresh_token` (RFC 6749 §6). The tokens carry the consent; a code is redeemed once,
//! and a second redemption revokes everything issued from it (RFC 6749 §4.1.2).

use keyfort_core::authorization::{half_hash, CodeChallenge, IdTokenClaims};
use keyfort_core::consent::{Consent, ConsentStatus};
use keyfort_core::error::ErrorCode;
use keyfort_core::jose::SigningAlg;
use keyfort_core::registration::GrantType;
use keyfort_core::secret::lookup_digest as digest;
use keyfort_core::token::{select_scope, AccessTokenClaims, ConsentBinding};

use super::{AuthenticatedClient, TokenResponse, TokenService};
use crate::config::SubjectChoice;
use crate::error::ServiceError;
use crate::storage::{GrantRecord, RedeemError, RefreshTokenRecord};

fn invalid_grant(description: impl Into<String>) -> ServiceError {
    ServiceError::refused(ErrorCode::InvalidGrant, description)
}

/// What a code or refresh token is redeemed with.
pub(super) struct Issuance<'a> {
    pub grant: &'a GrantRecord,
    pub consent: &'a Consent,
    pub scope: Vec<String>,
    /// For the ID token of a code: nonce, acr, auth_time.
    pub id_token: Option<(&'a str, &'a str, i64)>,
    /// Issue a new refresh token (a code always; a refresh when rotating).
    pub new_refresh_token: bool,
}

impl TokenService {
    /// `grant_type=authorization_code`.
    pub(super) async fn authorization_code(
        &self,
        client: &AuthenticatedClient,
        code: &str,
        redirect_uri: Option<&str>,
        code_verifier: Option<&str>,
    ) -> Result<TokenResponse, ServiceError> {
        let registered = client.client();
        if !registered.metadata.grant_types.contains(&GrantType::AuthorizationCode) {
            return Err(ServiceError::refused(
                ErrorCode::UnauthorizedClient,
                "this client did not register the authorization_code grant",
            ));
        }
        let now = self.clock.now();
        let record = match self.store.redeem_code(&digest(code), now).await {
            Ok(record) => record,
            Err(RedeemError::Unknown) => return Err(invalid_grant("the authorization code is unknown or has expired")),
            Err(RedeemError::AlreadyRedeemed { grant_id }) => {
                // Someone has the code twice: whatever it got is revoked.
                let revoked = self.store.revoke_grant(&grant_id, now).await?;
                tracing::warn!(grant_id = %grant_id, revoked, "an authorization code was presented twice; its grant is revoked");
                return Err(invalid_grant(
                    "the authorization code was already used; every token issued from it has been revoked",
                ));
            }
            Err(RedeemError::Store(e)) => return Err(e.into()),
        };
        if record.expires_at <= now {
            return Err(invalid_grant("the authorization code has expired; authorize again"));
        }
        let grant = self
            .store
            .find_grant(&record.grant_id)
            .await?
            .ok_or_else(|| invalid_grant("the authorization code is unknown"))?;
        if grant.client_id != registered.client_id {
            return Err(invalid_grant("the authorization code was issued to another client"));
        }
        if grant.revoked_at.is_some() {
            return Err(invalid_grant("the authorization behind this code has been revoked"));
        }
        if redirect_uri != Some(record.redirect_uri.as_str()) {
            return Err(invalid_grant("redirect_uri must be sent and equal the authorization request's"));
        }
        match (&record.code_challenge, code_verifier) {
            (Some(challenge), Some(verifier)) => {
                let challenge = CodeChallenge::parse(challenge, Some("S256"))
                    .map_err(|_| invalid_grant("the stored challenge is unreadable"))?;
                if !challenge.is_met_by(verifier) {
                    return Err(invalid_grant(
                        "code_verifier does not match the authorization request's code_challenge",
                    ));
                }
            }
            (Some(_), None) => {
                return Err(invalid_grant("code_verifier is required: the authorization request had a code_challenge"))
            }
            (None, Some(_)) => {
                return Err(invalid_grant(
                    "code_verifier was sent, but the authorization request had no code_challenge",
                ))
            }
            (None, None) => {}
        }
        let consent = self.consent_in_force(&grant.consent_id).await?;
        let scope = grant.scope.split_whitespace().map(str::to_owned).collect();
        self.issue_for_consent(
            client,
            Issuance {
                grant: &grant,
                consent: &consent,
                scope,
                id_token: Some((&record.nonce, &record.acr, record.auth_time)),
                new_refresh_token: registered.metadata.grant_types.contains(&GrantType::RefreshToken),
            },
        )
        .await
    }

    /// `grant_type=refresh_token`.
    pub(super) async fn refresh_token(
        &self,
        client: &AuthenticatedClient,
        refresh_token: &str,
        requested_scope: Option<&str>,
    ) -> Result<TokenResponse, ServiceError> {
        let registered = client.client();
        if !registered.metadata.grant_types.contains(&GrantType::RefreshToken) {
            return Err(ServiceError::refused(
                ErrorCode::UnauthorizedClient,
                "this client did not register the refresh_token grant",
            ));
        }
        let now = self.clock.now();
        let hash = digest(refresh_token);
        let record =
            self.store.find_refresh_token(&hash).await?.ok_or_else(|| invalid_grant("the refresh token is unknown"))?;
        if record.revoked_at.is_some() {
            return Err(invalid_grant("the refresh token has been revoked"));
        }
        if record.expires_at <= now {
            return Err(invalid_grant("the refresh token has expired; authorize again"));
        }
        let grant = self
            .store
            .find_grant(&record.grant_id)
            .await?
            .ok_or_else(|| invalid_grant("the refresh token is unknown"))?;
        if grant.client_id != registered.client_id {
            return Err(invalid_grant("the refresh token was issued to another client"));
        }
        if grant.revoked_at.is_some() {
            return Err(invalid_grant("the authorization behind this refresh token has been revoked"));
        }
        if let Some(bound) = &record.cert_thumbprint {
            if client.certificate().map(|c| &c.thumbprint_s256) != Some(bound) {
                return Err(invalid_grant(
                    "the refresh token is bound to the certificate it was issued over: present that certificate",
                ));
            }
        }
        let consent = self.consent_in_force(&grant.consent_id).await?;
        let granted: Vec<String> = grant.scope.split_whitespace().map(str::to_owned).collect();
        let scope = select_scope(requested_scope, &granted)?;
        let rotate = self.config.authorization.refresh_token_rotation;
        if rotate {
            self.store.revoke_refresh_token(&hash, now).await?;
        }
        let mut response = self
            .issue_for_consent(
                client,
                Issuance { grant: &grant, consent: &consent, scope, id_token: None, new_refresh_token: rotate },
            )
            .await?;
        if !rotate {
            response.refresh_token = None;
        }
        Ok(response)
    }

    /// The consent of a grant, if tokens may still be issued under it: Authorised and not
    /// expired (a Rejected, Revoked or Consumed consent issues nothing more).
    async fn consent_in_force(&self, consent_id: &str) -> Result<Consent, ServiceError> {
        let consent =
            self.store.find_consent(consent_id).await?.ok_or_else(|| invalid_grant("the consent no longer exists"))?;
        if consent.status != ConsentStatus::Authorised {
            return Err(invalid_grant(format!(
                "consent {} is {}: no more tokens are issued under it",
                consent.id,
                consent.status.as_str()
            )));
        }
        if consent.expired(self.clock.now()) {
            return Err(invalid_grant(format!("consent {} has expired", consent.id)));
        }
        Ok(consent)
    }

    async fn issue_for_consent(
        &self,
        client: &AuthenticatedClient,
        issuance: Issuance<'_>,
    ) -> Result<TokenResponse, ServiceError> {
        let registered = client.client();
        let now = self.clock.now();
        let certificate_thumbprint = self.bound_thumbprint(client)?;
        let subject = match self.config.authorization.subject {
            SubjectChoice::Customer => issuance.grant.customer_id.clone(),
            SubjectChoice::Consent => issuance.consent.id.clone(),
        };
        let lifetime = self.config.token_lifetimes.user;
        let claims = AccessTokenClaims {
            issuer: self.config.server.public_url.clone(),
            audience: self.config.token.access_token_audience.clone(),
            client_id: registered.client_id.clone(),
            scope: issuance.scope.clone(),
            issued_at: now,
            expires_at: now + lifetime,
            jti: keyfort_core::secret::random_b64url(16),
            certificate_thumbprint: certificate_thumbprint.clone(),
            consent: Some(ConsentBinding {
                subject: subject.clone(),
                consent_id: issuance.consent.id.clone(),
                grant_id: issuance.grant.grant_id.clone(),
            }),
        };
        let access_token = self.ring.signing_key().sign_jwt(&claims.to_json(), "at+jwt");
        let refresh_token = if issuance.new_refresh_token {
            let token = keyfort_core::secret::random_b64url(32);
            let longest = now + self.config.token_lifetimes.refresh;
            let record = RefreshTokenRecord {
                token_hash: digest(&token),
                grant_id: issuance.grant.grant_id.clone(),
                cert_thumbprint: certificate_thumbprint,
                created_at: now,
                // Never longer than the consent it acts under.
                expires_at: issuance.consent.expires_at.map_or(longest, |until| until.min(longest)),
                revoked_at: None,
            };
            self.store.create_refresh_token(&record).await?;
            Some(token)
        } else {
            None
        };
        let id_token = match issuance.id_token {
            None => None,
            Some((nonce, acr, auth_time)) => {
                let alg = registered.metadata.id_token_signed_response_alg.unwrap_or(SigningAlg::PS256);
                let key = self.ring.signing_key_for(alg).ok_or_else(|| {
                    ServiceError::Internal(anyhow::anyhow!("no signing key for ID tokens with {alg}"))
                })?;
                let claims = IdTokenClaims {
                    issuer: self.config.server.public_url.clone(),
                    subject,
                    audience: registered.client_id.clone(),
                    issued_at: now,
                    expires_at: now + self.config.token_lifetimes.id_token,
                    auth_time,
                    nonce: nonce.to_owned(),
                    acr: acr.to_owned(),
                    intent_id: issuance.consent.id.clone(),
                    c_hash: None,
                    s_hash: None,
                    at_hash: Some(half_hash(alg, &access_token)),
                };
                Some(key.sign_jwt(&claims.to_json(), "JWT"))
            }
        };
        tracing::info!(consent_id = %issuance.consent.id, refresh = refresh_token.is_some(), "consent-bound token issued");
        Ok(TokenResponse {
            access_token,
            token_type: "Bearer",
            expires_in: lifetime,
            scope: issuance.scope.join(" "),
            refresh_token,
            id_token,
        })
    }
}
