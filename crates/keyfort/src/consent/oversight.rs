//! After the authorization: the customer and the bank's operators withdraw a TPP's access,
//! operators look consents up, and the payment a resource server makes consumes its
//! consent. Every change commits with its audit line; refusals are audited too.

use keyfort_core::consent::{Consent, ConsentStatus};
use keyfort_core::error::OAuthError;

use super::{shorten, ConsentService, MAX_CONSENT_ID_CHARS};
use crate::audit::AuditAction;
use crate::caller::{Caller, ResourceServer};
use crate::error::ServiceError;
use crate::storage::{AuditEvent, ConsentFilter, ConsentStatusChange};

/// How much of a consent's audit trail an operator is shown.
const SHOWN_AUDIT_EVENTS: i64 = 200;

/// Who withdraws a TPP's access to a consent.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Withdrawer<'a> {
    /// The customer who authorised it (by customer id), from their own page.
    Customer(&'a str),
    /// A signed-in administrator (named by the caller).
    Administrator,
}

/// What a withdrawal did.
#[derive(Debug, Clone)]
pub struct Withdrawn {
    /// The consent as it is now (Revoked, or a payment consent whose tokens were revoked).
    pub consent: Consent,
    /// Authorizations of a payment consent whose tokens were revoked by this withdrawal.
    pub grants_revoked: u64,
}

fn no_consent(consent_id: &str) -> ServiceError {
    ServiceError::NotFound(OAuthError::invalid_request(format!("there is no consent \"{}\"", shorten(consent_id))))
}

fn administrator(caller: &Caller) -> Result<&crate::admin::Administrator, ServiceError> {
    caller
        .administrator
        .as_ref()
        .ok_or_else(|| crate::admin::unauthorized("administrator credentials are required: send Authorization: Basic"))
}

impl ConsentService {
    /// Consents matching `filter`, newest first (operators).
    pub async fn list(&self, caller: &Caller, filter: &ConsentFilter) -> Result<Vec<Consent>, ServiceError> {
        administrator(caller)?;
        Ok(self.store.list_consents(filter).await?)
    }

    /// One consent with its latest audit lines (operators).
    pub async fn show(&self, caller: &Caller, consent_id: &str) -> Result<(Consent, Vec<AuditEvent>), ServiceError> {
        administrator(caller)?;
        let consent = self.find(consent_id).await?.ok_or_else(|| no_consent(consent_id))?;
        let audit = self.store.consent_audit_events(&consent.id, SHOWN_AUDIT_EVENTS).await?;
        Ok((consent, audit))
    }

    /// The consents a customer has authorised and whose TPP can still use them: the TPPs
    /// with access to the customer's accounts or a payment, for the customer's own page.
    pub async fn authorised_by(&self, customer_id: &str) -> Result<Vec<Consent>, ServiceError> {
        let filter = ConsentFilter {
            customer_id: Some(customer_id.to_owned()),
            status: Some(ConsentStatus::Authorised),
            with_live_grant: true,
            limit: 500,
            ..ConsentFilter::default()
        };
        let now = self.clock.now();
        Ok(self.store.list_consents(&filter).await?.into_iter().filter(|c| !c.expired(now)).collect())
    }

    /// Ends a TPP's access under a consent. An account-access or funds-confirmation consent
    /// becomes Revoked, which ends every token issued under it (access and refresh); a
    /// payment consent has no Revoked status in v3.1.11, so every authorization of it is
    /// revoked instead, with its tokens. Withdrawing what is already withdrawn succeeds and
    /// changes nothing. A customer may only withdraw their own consents; any other is "not
    /// found" to them, so they learn nothing of it.
    #[tracing::instrument(skip_all, fields(consent_id = %consent_id))]
    pub async fn withdraw(
        &self,
        caller: &Caller,
        consent_id: &str,
        by: Withdrawer<'_>,
    ) -> Result<Withdrawn, ServiceError> {
        let mut client_id = None;
        let outcome = async {
            if by == Withdrawer::Administrator {
                administrator(caller)?;
            }
            if consent_id.is_empty() || consent_id.chars().count() > MAX_CONSENT_ID_CHARS {
                return Err(no_consent(consent_id));
            }
            let consent = self.store.find_consent(consent_id).await?.ok_or_else(|| no_consent(consent_id))?;
            if let Withdrawer::Customer(customer_id) = by {
                if consent.customer_id.as_deref() != Some(customer_id) {
                    return Err(no_consent(consent_id));
                }
            }
            client_id = Some(consent.client_id.clone());
            let client = self.store.find_client(&consent.client_id).await?;
            let mut line = self.auditor.consent_success(
                AuditAction::ConsentRevoke,
                caller,
                &consent.client_id,
                client.as_ref(),
                &consent.id,
                consent.customer_id.as_deref(),
            );
            let who = match (by, &caller.administrator) {
                (Withdrawer::Customer(_), _) => "by the customer".to_owned(),
                (Withdrawer::Administrator, Some(admin)) => format!("by administrator {admin}"),
                (Withdrawer::Administrator, None) => "by an administrator".to_owned(),
            };
            if consent.kind.revocable() {
                if consent.status == ConsentStatus::Revoked {
                    line.detail = Some(format!("{who}: already revoked, nothing changed"));
                    self.auditor.write(&line).await;
                    return Ok(Withdrawn { consent, grants_revoked: 0 });
                }
                if consent.status != ConsentStatus::Authorised {
                    return Err(ServiceError::Refused(OAuthError::invalid_request(format!(
                        "consent {} is {}: only an Authorised consent gives access that can be withdrawn",
                        consent.id, consent.status
                    ))));
                }
                line.detail = Some(who);
                self.change_status(&consent, ConsentStatus::Revoked, None, None, &line).await?;
                let consent = self.store.find_consent(&consent.id).await?.ok_or_else(|| no_consent(consent_id))?;
                return Ok(Withdrawn { consent, grants_revoked: 0 });
            }
            if !matches!(consent.status, ConsentStatus::Authorised | ConsentStatus::Consumed) {
                return Err(ServiceError::Refused(OAuthError::invalid_request(format!(
                    "payment consent {} is {}: it has given no access to withdraw",
                    consent.id, consent.status
                ))));
            }
            line.detail = Some(format!("{who}: the payment consent's tokens are revoked"));
            let grants_revoked = self.store.revoke_grants_of_consent(&consent.id, self.clock.now(), &line).await?;
            Ok(Withdrawn { consent, grants_revoked })
        }
        .await;
        match &outcome {
            Ok(withdrawn) => tracing::info!(grants_revoked = withdrawn.grants_revoked, "consent access withdrawn"),
            Err(error) => {
                let customer = match by {
                    Withdrawer::Customer(id) => Some(id),
                    Withdrawer::Administrator => None,
                };
                self.auditor
                    .consent_refusal(
                        AuditAction::ConsentRevoke,
                        caller,
                        client_id.as_deref(),
                        Some(consent_id),
                        customer,
                        error,
                    )
                    .await
            }
        }
        outcome
    }

    /// The payment under `consent` was made: Authorised → Consumed, audited with the
    /// resource server that reported it. `Ok(false)` when the consent was no longer
    /// Authorised (another payment consumed it first): that payment must not be made.
    #[tracing::instrument(skip_all, fields(consent_id = %consent.id))]
    pub async fn consume(
        &self,
        caller: &Caller,
        resource_server: &ResourceServer,
        consent: &Consent,
    ) -> Result<bool, ServiceError> {
        let client = self.store.find_client(&consent.client_id).await?;
        let mut line = self.auditor.consent_success(
            AuditAction::ConsentConsume,
            caller,
            &consent.client_id,
            client.as_ref(),
            &consent.id,
            consent.customer_id.as_deref(),
        );
        line.detail = Some(format!("reported by resource server {}", resource_server.subject));
        let change = ConsentStatusChange {
            consent_id: consent.id.clone(),
            from: ConsentStatus::Authorised,
            to: ConsentStatus::Consumed,
            at: self.clock.now(),
            customer_id: None,
            account_ids: None,
        };
        let consumed = self.store.change_consent_status(&change, &line).await?;
        if consumed {
            tracing::info!("payment consent consumed");
        }
        Ok(consumed)
    }
}
