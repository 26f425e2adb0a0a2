//! Client authentication at the token, introspection and revocation endpoints:
//! `private_key_jwt` (RFC 7523), `tls_client_auth` (RFC 8705), and the shared-secret methods
//! for clients registered with them where FAPI enforcement is off.

use keyfort_core::error::ErrorCode;
use keyfort_core::jose::CompactJws;
use keyfort_core::registration::{AuthMethod, ClientStatus, RegisteredClient};
use keyfort_core::subject_dn::SubjectDn;
use keyfort_core::token::{check_client_assertion, AssertionRules, JWT_BEARER_ASSERTION};
use keyfort_core::transport::CertificateIdentity;

use super::{AuthenticatedClient, ClientCredentials, TokenService};
use crate::config::KeySource;
use crate::error::ServiceError;
use crate::storage::{JtiError, ReplayRecord};

fn invalid_client(description: impl Into<String>) -> ServiceError {
    ServiceError::refused(ErrorCode::InvalidClient, description)
}

impl TokenService {
    /// Authenticates the calling client by the one method its request uses, and returns it
    /// with the certificate of the call.
    #[tracing::instrument(skip_all, fields(client_id))]
    pub async fn authenticate(
        &self,
        credentials: &ClientCredentials,
        certificate: Option<&CertificateIdentity>,
    ) -> Result<AuthenticatedClient, ServiceError> {
        let client = match credentials {
            ClientCredentials::Assertion { assertion_type, assertion, client_id } => {
                self.authenticate_private_key_jwt(assertion_type.as_deref(), assertion, client_id.as_deref()).await?
            }
            ClientCredentials::SecretBasic { client_id, secret } => {
                self.authenticate_secret(client_id, secret, AuthMethod::ClientSecretBasic).await?
            }
            ClientCredentials::SecretPost { client_id, secret } => {
                self.authenticate_secret(client_id, secret, AuthMethod::ClientSecretPost).await?
            }
            ClientCredentials::ClientId(client_id) => self.authenticate_tls_client(client_id, certificate).await?,
            ClientCredentials::None => {
                return Err(invalid_client(
                    "no client authentication: send a private_key_jwt client_assertion, or client_id over mutual TLS for tls_client_auth",
                ))
            }
        };
        tracing::Span::current().record("client_id", client.client_id.as_str());
        crate::telemetry::note_client(&client.client_id);
        crate::telemetry::note_software(client.software_id.as_deref(), client.org_id.as_deref());
        Ok(AuthenticatedClient { client, certificate: certificate.cloned() })
    }

    async fn active_client(&self, client_id: &str) -> Result<RegisteredClient, ServiceError> {
        if !keyfort_core::registration::is_client_id(client_id) {
            return Err(invalid_client(keyfort_core::registration::not_a_client_id(client_id)));
        }
        match self.store.find_client(client_id).await? {
            Some(client) if client.status == ClientStatus::Active => Ok(client),
            Some(client) if client.status == ClientStatus::Suspended => Err(invalid_client(format!(
                "client \"{client_id}\" is suspended by the bank; contact the bank's Open Banking support"
            ))),
            _ => Err(invalid_client(format!("client \"{client_id}\" is not registered (or was deleted)"))),
        }
    }

    fn require_method(client: &RegisteredClient, method: AuthMethod) -> Result<(), ServiceError> {
        let registered = client.metadata.token_endpoint_auth_method;
        if registered != method {
            return Err(invalid_client(format!(
                "client \"{}\" is registered for {registered}, not {method}",
                client.client_id
            )));
        }
        Ok(())
    }

    async fn authenticate_private_key_jwt(
        &self,
        assertion_type: Option<&str>,
        assertion: &str,
        sent_client_id: Option<&str>,
    ) -> Result<RegisteredClient, ServiceError> {
        match assertion_type {
            Some(JWT_BEARER_ASSERTION) => {}
            other => {
                return Err(invalid_client(format!(
                    "client_assertion_type must be {JWT_BEARER_ASSERTION} (got {})",
                    other.unwrap_or("none")
                )))
            }
        }
        let jws = CompactJws::parse(assertion).map_err(|e| invalid_client(format!("client_assertion {e}")))?;
        let unverified = jws.unverified_claims().map_err(|e| invalid_client(format!("client_assertion {e}")))?;
        let client_id = unverified
            .string("iss")
            .ok()
            .flatten()
            .ok_or_else(|| invalid_client("client_assertion has no iss; set iss and sub to your client_id"))?;
        if let Some(sent) = sent_client_id {
            if sent != client_id {
                return Err(invalid_client("client_id differs from the client_assertion's iss"));
            }
        }
        let client = self.active_client(&client_id).await?;
        Self::require_method(&client, AuthMethod::PrivateKeyJwt)?;
        let alg = client
            .metadata
            .token_endpoint_auth_signing_alg
            .ok_or_else(|| invalid_client("the client has no registered token_endpoint_auth_signing_alg"))?;
        jws.check_alg(&[alg]).map_err(|e| {
            invalid_client(format!(
                "client_assertion {e} (the client registered token_endpoint_auth_signing_alg {alg})"
            ))
        })?;
        let jwks_uri =
            client.metadata.jwks_uri.clone().ok_or_else(|| invalid_client("the client has no registered jwks_uri"))?;
        if !self.config.dcr.software_jwks_origins.allows(&jwks_uri) {
            return Err(invalid_client(format!(
                "the client's jwks_uri {} is not at an allowed key origin of this bank ({})",
                keyfort_core::text::quote(jwks_uri.as_str()),
                self.config.dcr.software_jwks_origins
            )));
        }
        let keys = self.jwks.keys(&KeySource::Url(jwks_uri), jws.header().kid.as_deref()).await.map_err(|e| {
            ServiceError::unavailable("the client's registered JWKS (jwks_uri) cannot be fetched now", e)
        })?;
        let claims = jws.verify(&keys, &[alg], false).map_err(|e| invalid_client(format!("client_assertion {e}")))?;
        let rules = AssertionRules {
            audiences: self.assertion_audiences(),
            max_lifetime: self.config.token.assertion_max_lifetime_seconds,
            clock_skew: self.config.dcr.policy.clock_skew,
        };
        let now = self.clock.now();
        let accepted = check_client_assertion(&claims, &client.client_id, &rules, now)?;
        let replay = ReplayRecord {
            issuer: format!("client-assertion:{}", client.client_id),
            jti: accepted.jti.clone(),
            expires_at: Some(accepted.exp),
            recorded_at: now,
        };
        match self.store.record_jti(&replay).await {
            Ok(()) => Ok(client),
            Err(JtiError::Replayed) => Err(invalid_client(format!(
                "client_assertion jti \"{}\" was already used; sign a new assertion for every request",
                accepted.jti
            ))),
            Err(JtiError::Store(e)) => Err(e.into()),
        }
    }

    async fn authenticate_tls_client(
        &self,
        client_id: &str,
        certificate: Option<&CertificateIdentity>,
    ) -> Result<RegisteredClient, ServiceError> {
        let client = self.active_client(client_id).await?;
        Self::require_method(&client, AuthMethod::TlsClientAuth)?;
        let certificate = certificate.ok_or_else(|| {
            if self.config.certificates_possible() {
                invalid_client(
                    "tls_client_auth needs mutual TLS: connect with the certificate whose subject you registered",
                )
            } else {
                invalid_client(super::client_credentials::SERVER_TAKES_NO_CERTIFICATES)
            }
        })?;
        let registered: &SubjectDn = client
            .metadata
            .tls_client_auth_subject_dn
            .as_ref()
            .ok_or_else(|| invalid_client("the client has no registered tls_client_auth_subject_dn"))?;
        if *registered != certificate.subject {
            return Err(invalid_client(format!(
                "the certificate subject \"{}\" is not the registered tls_client_auth_subject_dn \"{registered}\"",
                certificate.subject
            )));
        }
        Ok(client)
    }

    async fn authenticate_secret(
        &self,
        client_id: &str,
        secret: &str,
        method: AuthMethod,
    ) -> Result<RegisteredClient, ServiceError> {
        if self.config.dcr.policy.fapi {
            return Err(invalid_client(format!(
                "{method} is not allowed under this server's FAPI profile; use private_key_jwt or tls_client_auth"
            )));
        }
        let client = self.active_client(client_id).await?;
        Self::require_method(&client, method)?;
        let matches = client.client_secret_hash.as_ref().is_some_and(|hash| hash.matches(secret));
        if !matches {
            return Err(invalid_client("the client secret is wrong"));
        }
        Ok(client)
    }
}
