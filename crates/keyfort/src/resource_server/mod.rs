//! The resource server's side of a customer's consent: the bank's API gateway asks, for
//! each call a TPP makes with a customer's token, whether the token's consent covers it
//! (`POST /oauth2/consent/validate`), and reports the payment it makes so the payment
//! consent is consumed. The gateway is recognised by its certificate
//! (`[resource_server] client_subject_dns`).
//!
//! The answer is a decision with its reason, never an error, whenever the question was
//! well formed: a refusal is the normal outcome for a revoked consent or another account,
//! and the gateway turns it into the API's own 403.

use std::sync::Arc;

use keyfort_core::clock::Clock;
use keyfort_core::consent::{Consent, Resource};
use keyfort_core::error::{ErrorCode, OAuthError};

use crate::caller::{Caller, ResourceServer};
use crate::config::Config;
use crate::consent::ConsentService;
use crate::error::ServiceError;
use crate::token::TokenService;

pub const VALIDATION_PATH: &str = "/oauth2/consent/validate";

/// The longest path a gateway may ask about; OBIE paths are far shorter.
const MAX_PATH_CHARS: usize = 2048;

/// A gateway's question: may the call `method path` be made with `token`, presented over
/// mutual TLS with the certificate whose SHA-256 thumbprint is `certificate_thumbprint`?
#[derive(Debug, Clone, Default)]
pub struct ValidationRequest {
    pub token: String,
    pub method: String,
    pub path: String,
    /// `x5t#S256` of the TPP's certificate as the gateway saw it.
    pub certificate_thumbprint: Option<String>,
    /// The account the call is about, when the path does not name it (bulk endpoints).
    pub account_id: Option<String>,
    /// The call makes the payment (`POST /domestic-payments`): consume the consent.
    pub consume: bool,
}

/// The answer: whether the call is allowed and why, with the consent as it is now (when
/// the token is a live customer's token).
#[derive(Debug, Clone, serde::Serialize)]
pub struct Validation {
    pub allowed: bool,
    pub reason: String,
    #[serde(flatten, skip_serializing_if = "Option::is_none")]
    pub consent: Option<ConsentFacts>,
}

/// What a gateway enforces: the consent, its status, its permissions and chosen accounts.
#[derive(Debug, Clone, serde::Serialize)]
pub struct ConsentFacts {
    pub consent_id: String,
    pub consent_type: &'static str,
    pub consent_status: &'static str,
    pub client_id: String,
    /// The customer the token acts for (the access token's `sub`).
    pub subject: String,
    pub permissions: Vec<&'static str>,
    pub account_ids: Vec<String>,
}

impl ConsentFacts {
    fn of(consent: &Consent, subject: &str) -> Self {
        Self {
            consent_id: consent.id.clone(),
            consent_type: consent.kind.as_str(),
            consent_status: consent.status.as_str(),
            client_id: consent.client_id.clone(),
            subject: subject.to_owned(),
            permissions: consent.permissions().iter().map(|p| p.as_str()).collect(),
            account_ids: consent.account_ids.clone(),
        }
    }
}

fn deny(reason: impl Into<String>, consent: Option<ConsentFacts>) -> Validation {
    Validation { allowed: false, reason: reason.into(), consent }
}

pub struct ResourceServerService {
    config: Arc<Config>,
    tokens: Arc<TokenService>,
    consents: Arc<ConsentService>,
    clock: Arc<dyn Clock>,
}

impl ResourceServerService {
    pub fn new(
        config: Arc<Config>,
        tokens: Arc<TokenService>,
        consents: Arc<ConsentService>,
        clock: Arc<dyn Clock>,
    ) -> Self {
        Self { config, tokens, consents, clock }
    }

    /// The resource server `caller` is; anyone else is refused with 401.
    pub fn recognise(&self, caller: &Caller) -> Result<ResourceServer, ServiceError> {
        caller.certificate()?;
        ResourceServer::recognise(caller, &self.config.resource_server).ok_or_else(|| {
            ServiceError::refused(
                ErrorCode::InvalidClient,
                "only the bank's resource servers may validate tokens: call over mutual TLS with a certificate whose subject is listed in [resource_server] client_subject_dns",
            )
        })
    }

    /// Answers a gateway's question (see [`ValidationRequest`]).
    #[tracing::instrument(skip_all, fields(method = %request.method))]
    pub async fn validate(&self, caller: &Caller, request: &ValidationRequest) -> Result<Validation, ServiceError> {
        let resource_server = self.recognise(caller)?;
        if request.token.is_empty() || request.method.is_empty() || request.path.is_empty() {
            return Err(OAuthError::invalid_request("token, method and path are required").into());
        }
        if request.path.chars().count() > MAX_PATH_CHARS {
            return Err(OAuthError::invalid_request(format!("path is longer than {MAX_PATH_CHARS} characters")).into());
        }
        let resource = match Resource::of(&request.method, &request.path) {
            Ok(resource) => resource,
            Err(why) => return Ok(deny(why, None)),
        };
        if request.consume && !resource.submits_payment {
            return Err(OAuthError::invalid_request(
                "consume is only for the call that makes a payment: POST /open-banking/v3.1/pisp/domestic-payments",
            )
            .into());
        }
        let inspected = match self.tokens.inspect_access_token(&request.token).await? {
            Ok(inspected) => inspected,
            Err(rejected) => return Ok(deny(rejected.describe(), None)),
        };
        let claims = &inspected.claims;
        let (Some(binding), Some(consent)) = (&claims.consent, &inspected.consent) else {
            return Ok(deny(
                "the token is a client_credentials token: this call needs a token the customer's consent granted",
                None,
            ));
        };
        let facts = ConsentFacts::of(consent, &binding.subject);
        // RFC 8705 §3: a certificate-bound token is used only with its certificate.
        if let Some(bound) = &claims.certificate_thumbprint {
            match &request.certificate_thumbprint {
                None => return Ok(deny(
                    "the token is bound to a certificate: send the x5t#S256 of the TPP certificate the call came with",
                    Some(facts),
                )),
                Some(seen)
                    if aws_lc_rs::constant_time::verify_slices_are_equal(seen.as_bytes(), bound.as_bytes())
                        .is_err() =>
                {
                    return Ok(deny(
                        "the call came with another certificate than the one the token is bound to",
                        Some(facts),
                    ))
                }
                Some(_) => {}
            }
        }
        let account = match resource.account(request.account_id.as_deref()) {
            Ok(account) => account,
            Err(why) => return Ok(deny(why, Some(facts))),
        };
        if let Err(why) = resource.allows(consent, account, self.clock.now()) {
            return Ok(deny(why, Some(facts)));
        }
        if request.consume {
            if !self.consents.consume(caller, &resource_server, consent).await? {
                let now = self.consents.find(&consent.id).await?;
                let status = now.as_ref().map_or("gone", |c| c.status.as_str());
                return Ok(deny(format!("consent {} is {status}: the payment was already made", consent.id), {
                    let mut facts = facts;
                    facts.consent_status = status;
                    Some(facts)
                }));
            }
            let mut facts = facts;
            facts.consent_status = keyfort_core::consent::ConsentStatus::Consumed.as_str();
            return Ok(Validation {
                allowed: true,
                reason: "the consent covers this payment, and is now Consumed".into(),
                consent: Some(facts),
            });
        }
        Ok(Validation { allowed: true, reason: "the consent covers this call".into(), consent: Some(facts) })
    }
}
