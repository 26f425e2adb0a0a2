//! Who may read, update or delete a registration (RFC 7592, OBIE DCR): the holder of its
//! registration access token, or of a client-credentials access token of that same client
//! (with its certificate, if the token is certificate-bound).

use keyfort_core::error::{ErrorCode, OAuthError};
use keyfort_core::registration::{is_client_id, not_a_client_id, ClientStatus, RegisteredClient};
use keyfort_core::transport::CertificateIdentity;

use super::{record_client_fields, RegistrationService};
use crate::audit::AuditAction;
use crate::caller::Caller;
use crate::error::ServiceError;

fn invalid_token(description: impl Into<String>) -> ServiceError {
    ServiceError::Refused(OAuthError::new(ErrorCode::InvalidToken, description))
}

/// A registration the caller has proved it may manage. Only
/// [`RegistrationService::authorize`] makes one, so an update cannot skip the check.
pub struct ManagedClient {
    client: RegisteredClient,
}

impl ManagedClient {
    pub fn client(&self) -> &RegisteredClient {
        &self.client
    }
}

impl RegistrationService {
    /// Checks the caller's token for managing `client_id` with `action`; a refusal is audited.
    #[tracing::instrument(skip_all, fields(client_id = %client_id, action = action.as_str()))]
    pub async fn authorize(
        &self,
        action: AuditAction,
        caller: &Caller,
        client_id: &str,
        bearer: Option<&str>,
    ) -> Result<ManagedClient, ServiceError> {
        // A path segment that cannot be a client_id is refused before anything else: no
        // lookup, no token check, no audit line. An anonymous caller must not turn a stream
        // of 8 KB ids into database reads and written, synced audit rows.
        if !is_client_id(client_id) {
            return Err(invalid_token(not_a_client_id(client_id)));
        }
        let outcome = match caller.certificate() {
            Ok(certificate) => self.check_management_token(client_id, bearer, certificate).await,
            Err(e) => Err(e),
        };
        match outcome {
            Ok(client) => {
                record_client_fields(&client);
                Ok(ManagedClient { client })
            }
            Err(error) => {
                self.auditor.refusal(action, caller, Some(client_id), &error).await;
                Err(error)
            }
        }
    }

    /// RFC 7592 read: the registration, after the caller's token was checked. Reads are
    /// audited too, their line written after the answer (see the durability table in
    /// docs/benchmark.md).
    #[tracing::instrument(skip_all, fields(client_id = %client_id))]
    pub async fn read(
        &self,
        caller: &Caller,
        client_id: &str,
        bearer: Option<&str>,
    ) -> Result<RegisteredClient, ServiceError> {
        let managed = self.authorize(AuditAction::Read, caller, client_id, bearer).await?;
        self.auditor.write_after_answer(self.auditor.success(AuditAction::Read, caller, &managed.client)).await;
        Ok(managed.client)
    }

    /// RFC 7592 DELETE. The client's tokens and registration access token stop working
    /// because every check of them requires an active client. The deletion and its audit
    /// line commit together.
    #[tracing::instrument(skip_all, fields(client_id = %client_id, software_id, org_id))]
    pub async fn delete(&self, caller: &Caller, client_id: &str, bearer: Option<&str>) -> Result<(), ServiceError> {
        let managed = self.authorize(AuditAction::Delete, caller, client_id, bearer).await?;
        record_client_fields(&managed.client);
        let audit = self.auditor.success(AuditAction::Delete, caller, &managed.client);
        match self.store.delete_client(client_id, self.clock.now(), &audit).await {
            Ok(_) => {
                tracing::info!("registration deleted");
                Ok(())
            }
            Err(e) => {
                let error = ServiceError::from(e);
                self.auditor.refusal(AuditAction::Delete, caller, Some(client_id), &error).await;
                Err(error)
            }
        }
    }

    async fn check_management_token(
        &self,
        client_id: &str,
        bearer: Option<&str>,
        certificate: Option<&CertificateIdentity>,
    ) -> Result<RegisteredClient, ServiceError> {
        let bearer = bearer.filter(|b| !b.is_empty()).ok_or_else(|| {
            invalid_token("a Bearer token is required: the registration_access_token, or a client_credentials access token of this client")
        })?;
        let client = self.store.find_client(client_id).await?;
        if client.as_ref().is_some_and(|c| c.status == ClientStatus::Suspended) {
            return Err(invalid_token(format!(
                "client \"{client_id}\" is suspended by the bank and cannot manage its registration"
            )));
        }
        let Some(client) = client.filter(|c| c.status == ClientStatus::Active) else {
            // OBIE: a token presented for an unknown client is revoked.
            self.tokens.revoke_if_ours(bearer).await;
            return Err(invalid_token(format!("client \"{client_id}\" is not registered (or was deleted)")));
        };
        if client.registration_access_token_hash.matches(bearer) {
            return Ok(client);
        }
        match self.tokens.verify_access_token(bearer).await? {
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
