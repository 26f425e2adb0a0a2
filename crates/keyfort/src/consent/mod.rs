//! The consent (intent) service: the TPP's API to create, read and revoke consents with its
//! client-credentials token, and the decisions of customers the authorization flow records
//! (authorise, reject).
//!
//! Every action is audited: a change commits with its audit line in one transaction; a read,
//! an idempotent repeat and every refusal are written on their own. Errors of the TPP's API
//! are answered in the OBIE shape ([`ServiceError::Obie`]), except the token's own problems,
//! which RFC 6750 answers (401 `invalid_token`, 403 `insufficient_scope`). Errors of the
//! authorization flow are OAuth `access_denied`, for the authorization endpoint to send back
//! to the TPP's redirect URI.

mod oversight;

use std::sync::Arc;

use keyfort_core::clock::{Clock, UnixTime};
use keyfort_core::consent::{
    transition_allowed, Consent, ConsentRequest, ConsentStatus, ConsentType, ObieCategory, ObieError, ObieErrorCode,
    RequestSignature, SignatureRules,
};
use keyfort_core::error::{ErrorCode, OAuthError};
use keyfort_core::jose::SigningAlg;
use keyfort_core::registration::{ClientStatus, RegisteredClient};

use crate::audit::{AuditAction, Auditor};
use crate::caller::Caller;
use crate::config::{Config, KeySource};
use crate::customers::AccountLookup;
use crate::directory::JwksCache;
use crate::error::ServiceError;
use crate::storage::{ConsentStatusChange, CreateConsentError, IdempotencyRecord, Store};
use crate::token::TokenService;

pub use oversight::{Withdrawer, Withdrawn};

/// OBIE: `x-idempotency-key` is at most 40 characters.
const MAX_IDEMPOTENCY_KEY_CHARS: usize = 40;
/// OBIE: a ConsentId is at most 128 characters; a longer one names nothing.
const MAX_CONSENT_ID_CHARS: usize = 128;
/// Most accounts one authorisation may select.
const MAX_ACCOUNTS: usize = 100;

/// A request header as the edge found it. Services take header values as text, never as
/// HTTP types; a value that is not visible ASCII is `Unreadable`.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum HeaderText<'a> {
    Absent,
    Text(&'a str),
    Unreadable,
}

impl<'a> HeaderText<'a> {
    fn text(self) -> Option<&'a str> {
        match self {
            HeaderText::Text(text) => Some(text),
            _ => None,
        }
    }
}

/// A consent POST, as the edge read it.
#[derive(Debug, Clone, Copy)]
pub struct CreateConsent<'a> {
    pub kind: ConsentType,
    /// The token of `Authorization: Bearer`.
    pub bearer: Option<&'a str>,
    pub content_type: HeaderText<'a>,
    pub idempotency_key: HeaderText<'a>,
    /// `x-jws-signature`.
    pub signature: HeaderText<'a>,
    /// The body, exactly as received (the signature covers these bytes).
    pub body: &'a [u8],
}

/// The answer to a consent POST.
#[derive(Debug, Clone)]
pub struct Created {
    pub consent: Consent,
    /// The request repeated an idempotency key with the same body: no consent was created,
    /// and this is the one the first request created (as it is now).
    pub replayed: bool,
}

/// A TPP whose client-credentials token was accepted for an endpoint.
struct Tpp {
    client: RegisteredClient,
}

pub struct ConsentService {
    config: Arc<Config>,
    store: Arc<dyn Store>,
    tokens: Arc<TokenService>,
    jwks: Arc<JwksCache>,
    accounts: Arc<dyn AccountLookup>,
    auditor: Arc<Auditor>,
    clock: Arc<dyn Clock>,
}

fn invalid_token(description: impl Into<String>) -> ServiceError {
    ServiceError::Refused(OAuthError::new(ErrorCode::InvalidToken, description))
}

fn access_denied(description: impl Into<String>) -> ServiceError {
    ServiceError::Refused(OAuthError::new(ErrorCode::AccessDenied, description))
}

fn bad_request(code: ObieErrorCode, message: impl Into<String>, path: &str) -> ServiceError {
    ServiceError::Obie(ObieError::bad_request(code, message, Some(path)))
}

fn body_digest(body: &[u8]) -> String {
    keyfort_core::secret::hex(&keyfort_core::secret::sha256(body))
}

impl ConsentService {
    pub fn new(
        config: Arc<Config>,
        store: Arc<dyn Store>,
        tokens: Arc<TokenService>,
        jwks: Arc<JwksCache>,
        accounts: Arc<dyn AccountLookup>,
        auditor: Arc<Auditor>,
        clock: Arc<dyn Clock>,
    ) -> Self {
        Self { config, store, tokens, jwks, accounts, auditor, clock }
    }

    /// `Links.Self` of a consent.
    pub fn self_link(&self, consent: &Consent) -> String {
        format!("{}{}/{}", self.config.server.public_url, consent.kind.path(), consent.id)
    }

    /// The response body of a consent (`Data`, `Risk`, `Links`, `Meta`).
    pub fn response_body(&self, consent: &Consent) -> serde_json::Value {
        consent.response_body(&self.self_link(consent))
    }

    // ----- The TPP's API -----

    /// `POST` of a consent: the TPP's token, the headers, the signature, the idempotency
    /// key and the body are checked in that order; the consent and its audit line (and the
    /// key) commit together.
    #[tracing::instrument(skip_all, fields(consent_type = %request.kind, client_id, consent_id))]
    pub async fn create(&self, caller: &Caller, request: CreateConsent<'_>) -> Result<Created, ServiceError> {
        let mut client_id = None;
        let outcome = self.create_checked(caller, &request, &mut client_id).await;
        match &outcome {
            Ok(created) => {
                tracing::Span::current().record("consent_id", created.consent.id.as_str());
                tracing::info!(replayed = created.replayed, "consent created");
            }
            Err(error) => {
                self.auditor
                    .consent_refusal(AuditAction::ConsentCreate, caller, client_id.as_deref(), None, None, error)
                    .await
            }
        }
        outcome
    }

    async fn create_checked(
        &self,
        caller: &Caller,
        request: &CreateConsent<'_>,
        client_id: &mut Option<String>,
    ) -> Result<Created, ServiceError> {
        let kind = request.kind;
        let tpp = self.authenticate(caller, request.bearer, kind).await?;
        *client_id = Some(tpp.client.client_id.clone());
        tracing::Span::current().record("client_id", tpp.client.client_id.as_str());
        check_content_type(request.content_type)?;
        let key = idempotency_key(kind, request.idempotency_key)?;
        match request.signature {
            HeaderText::Text(value) => self.verify_signature(&tpp.client, value, request.body).await?,
            HeaderText::Unreadable => {
                return Err(ServiceError::Obie(ObieError::bad_request(
                    ObieErrorCode::SignatureMalformed,
                    "x-jws-signature is not visible ASCII; send the detached JWS as \"<header>..<signature>\"",
                    Some("x-jws-signature"),
                )))
            }
            HeaderText::Absent if kind == ConsentType::DomesticPayment && self.config.consents.require_request_signature => {
                return Err(ServiceError::Obie(ObieError::bad_request(
                    ObieErrorCode::SignatureMissing,
                    "a payment consent must be signed: send x-jws-signature, a detached JWS over the exact body (OBIE message signing v3.1.4 and later)",
                    Some("x-jws-signature"),
                )))
            }
            HeaderText::Absent => {}
        }
        let digest = body_digest(request.body);
        if let Some(key) = key {
            if let Some(created) = self.replay(caller, &tpp, kind, key, &digest).await? {
                return Ok(created);
            }
        }
        let now = self.clock.now();
        let parsed = ConsentRequest::parse(kind, request.body)?;
        parsed.check_times(now)?;
        let consent = Consent::new(&tpp.client.client_id, parsed, now);
        let audit = self.auditor.consent_success(
            AuditAction::ConsentCreate,
            caller,
            &tpp.client.client_id,
            Some(&tpp.client),
            &consent.id,
            None,
        );
        let record = key.map(|key| IdempotencyRecord {
            client_id: tpp.client.client_id.clone(),
            consent_type: kind,
            key: key.to_owned(),
            body_sha256: digest.clone(),
            consent_id: consent.id.clone(),
            created_at: now,
        });
        match self.store.create_consent(&consent, record.as_ref(), self.idempotency_not_before(now), &audit).await {
            Ok(()) => Ok(Created { consent, replayed: false }),
            // Another request with the same key won the race: it is answered like a repeat.
            Err(CreateConsentError::IdempotencyKeyTaken) => {
                let key = key.unwrap_or_default();
                self.replay(caller, &tpp, kind, key, &digest).await?.ok_or_else(|| {
                    ServiceError::Internal(anyhow::anyhow!("idempotency key {key} is taken but has no live record"))
                })
            }
            Err(CreateConsentError::Store(e)) => Err(e.into()),
        }
    }

    fn idempotency_not_before(&self, now: UnixTime) -> UnixTime {
        now - self.config.consents.idempotency_seconds
    }

    /// A repeat of `key` within the idempotency period: the same body gets the consent the
    /// first request created (as it is now, which OBIE asks for); another body is refused.
    async fn replay(
        &self,
        caller: &Caller,
        tpp: &Tpp,
        kind: ConsentType,
        key: &str,
        digest: &str,
    ) -> Result<Option<Created>, ServiceError> {
        let now = self.clock.now();
        let client_id = &tpp.client.client_id;
        let Some(record) =
            self.store.find_idempotency_record(client_id, kind, key, self.idempotency_not_before(now)).await?
        else {
            return Ok(None);
        };
        if record.body_sha256 != digest {
            return Err(bad_request(
                ObieErrorCode::HeaderInvalid,
                format!(
                    "x-idempotency-key \"{key}\" was used with another request body for consent {}; a repeated key must come with the same body. Use a new key for a new consent",
                    record.consent_id
                ),
                "x-idempotency-key",
            ));
        }
        let consent = self.store.find_consent(&record.consent_id).await?.ok_or_else(|| {
            ServiceError::Internal(anyhow::anyhow!(
                "idempotency key {key} names consent {} which is gone",
                record.consent_id
            ))
        })?;
        let mut line = self.auditor.consent_success(
            AuditAction::ConsentCreate,
            caller,
            client_id,
            Some(&tpp.client),
            &consent.id,
            None,
        );
        line.detail = Some(format!("repeated x-idempotency-key \"{key}\" with the same body: no new consent"));
        self.auditor.write(&line).await;
        Ok(Some(Created { consent, replayed: true }))
    }

    /// `GET` of a consent of the caller's client.
    #[tracing::instrument(skip_all, fields(consent_type = %kind, consent_id = %consent_id))]
    pub async fn read(
        &self,
        caller: &Caller,
        kind: ConsentType,
        bearer: Option<&str>,
        consent_id: &str,
    ) -> Result<Consent, ServiceError> {
        let mut client_id = None;
        let outcome = async {
            let tpp = self.authenticate(caller, bearer, kind).await?;
            client_id = Some(tpp.client.client_id.clone());
            let consent = self.owned(&tpp, kind, consent_id).await?;
            let line = self.auditor.consent_success(
                AuditAction::ConsentRead,
                caller,
                &tpp.client.client_id,
                Some(&tpp.client),
                &consent.id,
                None,
            );
            self.auditor.write(&line).await;
            Ok(consent)
        }
        .await;
        if let Err(error) = &outcome {
            self.auditor
                .consent_refusal(AuditAction::ConsentRead, caller, client_id.as_deref(), Some(consent_id), None, error)
                .await;
        }
        outcome
    }

    /// `DELETE` of an account-access or funds-confirmation consent: an Authorised consent
    /// becomes Revoked (the record stays, and reads show it Revoked). Revoking a Revoked
    /// consent changes nothing and succeeds (DELETE is idempotent); any other status is
    /// refused with `UK.OBIE.Resource.InvalidConsentStatus`.
    #[tracing::instrument(skip_all, fields(consent_type = %kind, consent_id = %consent_id))]
    pub async fn revoke(
        &self,
        caller: &Caller,
        kind: ConsentType,
        bearer: Option<&str>,
        consent_id: &str,
    ) -> Result<(), ServiceError> {
        let mut client_id = None;
        let outcome = async {
            let tpp = self.authenticate(caller, bearer, kind).await?;
            client_id = Some(tpp.client.client_id.clone());
            let consent = self.owned(&tpp, kind, consent_id).await?;
            let line = |detail: Option<String>| {
                let mut line = self.auditor.consent_success(
                    AuditAction::ConsentRevoke,
                    caller,
                    &tpp.client.client_id,
                    Some(&tpp.client),
                    &consent.id,
                    consent.customer_id.as_deref(),
                );
                line.detail = detail;
                line
            };
            if consent.status == ConsentStatus::Revoked {
                self.auditor.write(&line(Some("already revoked: nothing changed".into()))).await;
                return Ok(());
            }
            self.change_status(&consent, ConsentStatus::Revoked, None, None, &line(None)).await
        }
        .await;
        match &outcome {
            Ok(()) => tracing::info!("consent revoked"),
            Err(error) => {
                self.auditor
                    .consent_refusal(
                        AuditAction::ConsentRevoke,
                        caller,
                        client_id.as_deref(),
                        Some(consent_id),
                        None,
                        error,
                    )
                    .await
            }
        }
        outcome
    }

    /// Checks the caller's token for an endpoint of `kind`: a client-credentials access token
    /// of this server, not expired or revoked, of an active client, with the endpoint's scope,
    /// presented with its certificate when it is certificate-bound (RFC 8705, always
    /// enforced, as FAPI requires).
    async fn authenticate(
        &self,
        caller: &Caller,
        bearer: Option<&str>,
        kind: ConsentType,
    ) -> Result<Tpp, ServiceError> {
        let certificate = caller.certificate()?;
        let scope = kind.scope();
        let bearer = bearer.filter(|b| !b.is_empty()).ok_or_else(|| {
            invalid_token(format!(
                "an access token is required: send Authorization: Bearer with a client_credentials token of your client with scope {scope}"
            ))
        })?;
        let claims = self.tokens.verify_access_token(bearer).await?.map_err(|rejected| {
            invalid_token(format!("{}; get a new client_credentials token with scope {scope}", rejected.describe()))
        })?;
        // OBIE has the TPP call the consent endpoints with its own client-credentials token,
        // never with one a customer's consent granted.
        if claims.consent.is_some() {
            return Err(invalid_token(format!(
                "this access token was granted by a customer's consent; call the consent endpoints with a client_credentials token with scope {scope}"
            )));
        }
        if let Some(thumbprint) = &claims.certificate_thumbprint {
            if certificate.map(|c| &c.thumbprint_s256) != Some(thumbprint) {
                return Err(invalid_token(
                    "the access token is bound to a client certificate (cnf.x5t#S256): call over mutual TLS with that certificate",
                ));
            }
        }
        if !claims.scope.iter().any(|s| s == scope) {
            return Err(ServiceError::Refused(OAuthError::new(
                ErrorCode::InsufficientScope,
                format!(
                    "{kind} consents need scope {scope}, which the access token does not have (it has \"{}\"); get a client_credentials token with scope {scope}",
                    claims.scope.join(" ")
                ),
            )));
        }
        match self.store.find_client(&claims.client_id).await? {
            Some(client) if client.status == ClientStatus::Active => Ok(Tpp { client }),
            _ => Err(invalid_token("the access token's client is no longer registered")),
        }
    }

    /// The consent `consent_id` of type `kind`, if it belongs to the TPP. OBIE v3.1.11 asks
    /// for a 400 with `UK.OBIE.Resource.NotFound` for an id that does not exist (not a 404:
    /// "400 (Bad Request) v/s 404 (Not Found)"), and a 403 for another TPP's resource; the
    /// 403 carries no Data, so the TPP learns nothing of the consent.
    async fn owned(&self, tpp: &Tpp, kind: ConsentType, consent_id: &str) -> Result<Consent, ServiceError> {
        let not_found = || {
            let shown: String = consent_id.chars().take(MAX_CONSENT_ID_CHARS).collect();
            bad_request(
                ObieErrorCode::ResourceNotFound,
                format!(
                    "there is no {kind} consent \"{shown}\"; use the ConsentId returned when the consent was created"
                ),
                "ConsentId",
            )
        };
        if consent_id.is_empty() || consent_id.chars().count() > MAX_CONSENT_ID_CHARS {
            return Err(not_found());
        }
        let consent = self.store.find_consent(consent_id).await?.filter(|c| c.kind == kind).ok_or_else(not_found)?;
        if consent.client_id != tpp.client.client_id {
            return Err(ServiceError::Obie(ObieError::new(
                ObieCategory::Forbidden,
                ObieErrorCode::ResourceConsentMismatch,
                "this consent was not created by your client; a TPP may only use the consents it created",
                Some("ConsentId"),
            )));
        }
        Ok(consent)
    }

    /// Verifies `x-jws-signature` over `body` with a key of the client's software JWKS (its
    /// registered `jwks_uri`, on an allowed key host), as `private_key_jwt` does.
    async fn verify_signature(&self, client: &RegisteredClient, value: &str, body: &[u8]) -> Result<(), ServiceError> {
        let claim_error = |path: &str, message: String| {
            ServiceError::Obie(ObieError::bad_request(ObieErrorCode::SignatureInvalidClaim, message, Some(path)))
        };
        let (Some(org_id), Some(software_id)) = (client.org_id.as_deref(), client.software_id.as_deref()) else {
            return Err(claim_error(
                "http://openbanking.org.uk/iss",
                "this client has no organisation or software on record, so its request signatures cannot be checked; register with a software statement".into(),
            ));
        };
        let issuer = format!("{org_id}/{software_id}");
        let algs = signature_algs(client);
        let rules = SignatureRules {
            expected_issuer: &issuer,
            trust_anchor: &self.config.consents.signature_trust_anchor,
            allowed_algs: &algs,
            clock_skew: self.config.dcr.policy.clock_skew,
        };
        let signature = RequestSignature::parse(value, &rules, self.clock.now())?;
        let jwks_uri = client.metadata.jwks_uri.clone().ok_or_else(|| {
            claim_error("kid", "this client has no registered jwks_uri to take its signing keys from".into())
        })?;
        if !self.config.dcr.software_jwks_origins.allows(&jwks_uri) {
            return Err(claim_error(
                "kid",
                format!(
                    "the client's jwks_uri {} is not at an allowed key origin of this bank",
                    keyfort_core::text::quote(jwks_uri.as_str())
                ),
            ));
        }
        let keys = self.jwks.keys(&KeySource::Url(jwks_uri), Some(signature.kid())).await.map_err(|e| {
            ServiceError::unavailable("the client's registered JWKS (jwks_uri) cannot be fetched now", e)
        })?;
        Ok(signature.verify(body, &keys)?)
    }

    // ----- The authorization flow's interface -----

    /// The consent `consent_id`, whatever its client and status.
    pub async fn find(&self, consent_id: &str) -> Result<Option<Consent>, ServiceError> {
        if consent_id.is_empty() || consent_id.chars().count() > MAX_CONSENT_ID_CHARS {
            return Ok(None);
        }
        Ok(self.store.find_consent(consent_id).await?)
    }

    /// The consent an authorization request names (`openbanking_intent_id`), if the client
    /// `client_id` may have it authorised at `now`: it exists, that client created it, it
    /// awaits authorisation and has not expired. Otherwise an `access_denied` refusal whose
    /// description says why, for the TPP's redirect URI. Nothing is written: the
    /// authorization endpoint audits its own refusals.
    pub async fn for_authorization(
        &self,
        client_id: &str,
        consent_id: &str,
        now: UnixTime,
    ) -> Result<Consent, ServiceError> {
        let consent = self
            .find(consent_id)
            .await?
            .ok_or_else(|| access_denied(format!("there is no consent \"{}\"", shorten(consent_id))))?;
        if consent.client_id != client_id {
            return Err(access_denied(format!(
                "consent \"{}\" was not created by this client; a client may only have its own consents authorised",
                consent.id
            )));
        }
        consent.authorisable(now).map_err(|why| access_denied(why.to_string()))?;
        Ok(consent)
    }

    /// The customer `customer_id` authorises the consent, choosing `account_ids`:
    /// AwaitingAuthorisation → Authorised, with the customer and the accounts recorded, in
    /// one transaction with its audit line. Refused (`access_denied`) when the consent is no
    /// longer authorisable (also when another decision was recorded meanwhile: the change is
    /// a compare-and-set), when an account is not the customer's (per the [`AccountLookup`]),
    /// when a payment or funds-confirmation consent gets other than one account, or when the
    /// consent names a debtor account and the chosen one is not it.
    #[tracing::instrument(skip_all, fields(consent_id = %consent_id))]
    pub async fn authorise(
        &self,
        caller: &Caller,
        consent_id: &str,
        customer_id: &str,
        account_ids: &[String],
    ) -> Result<Consent, ServiceError> {
        let mut client_id = None;
        let outcome = self.authorise_checked(caller, consent_id, customer_id, account_ids, &mut client_id).await;
        match &outcome {
            Ok(_) => tracing::info!("consent authorised"),
            Err(error) => {
                self.auditor
                    .consent_refusal(
                        AuditAction::ConsentAuthorise,
                        caller,
                        client_id.as_deref(),
                        Some(consent_id),
                        Some(customer_id),
                        error,
                    )
                    .await
            }
        }
        outcome
    }

    async fn authorise_checked(
        &self,
        caller: &Caller,
        consent_id: &str,
        customer_id: &str,
        account_ids: &[String],
        client_id: &mut Option<String>,
    ) -> Result<Consent, ServiceError> {
        let consent = self
            .find(consent_id)
            .await?
            .ok_or_else(|| access_denied(format!("there is no consent \"{}\"", shorten(consent_id))))?;
        *client_id = Some(consent.client_id.clone());
        let now = self.clock.now();
        consent.authorisable(now).map_err(|why| access_denied(why.to_string()))?;
        let mut chosen: Vec<String> = Vec::with_capacity(account_ids.len());
        for id in account_ids {
            if !chosen.contains(id) {
                chosen.push(id.clone());
            }
        }
        let single = consent.kind != ConsentType::AccountAccess;
        if chosen.is_empty() || chosen.len() > MAX_ACCOUNTS || (single && chosen.len() != 1) {
            return Err(access_denied(if single {
                format!("a {} consent is authorised for exactly one account", consent.kind)
            } else {
                format!("an account-access consent is authorised for 1 to {MAX_ACCOUNTS} accounts")
            }));
        }
        let owned = self.accounts.accounts(customer_id).await?;
        for id in &chosen {
            if !owned.iter().any(|a| &a.id == id) {
                return Err(access_denied(format!(
                    "account \"{}\" is not one of the customer's accounts",
                    shorten(id)
                )));
            }
        }
        if let Some(debtor) = consent.debtor_account() {
            // One account was chosen, and it is the customer's (both checked above).
            let account = owned.iter().find(|a| a.id == chosen[0]);
            if !account.is_some_and(|a| debtor.names(&a.scheme, &a.identification)) {
                return Err(access_denied(format!(
                    "the consent names debtor account {} {}, and the chosen account is not it (or it is not one of the customer's accounts)",
                    debtor.scheme(),
                    debtor.identification()
                )));
            }
        }
        let client = self.store.find_client(&consent.client_id).await?;
        let line = self.auditor.consent_success(
            AuditAction::ConsentAuthorise,
            caller,
            &consent.client_id,
            client.as_ref(),
            &consent.id,
            Some(customer_id),
        );
        let mut updated = consent.clone();
        self.change_status(&consent, ConsentStatus::Authorised, Some(customer_id), Some(chosen.clone()), &line).await?;
        updated.status = ConsentStatus::Authorised;
        updated.status_updated_at = now;
        updated.customer_id = Some(customer_id.to_owned());
        updated.account_ids = chosen;
        Ok(updated)
    }

    /// The customer rejects (denies or cancels) the consent: AwaitingAuthorisation →
    /// Rejected, audited in the same transaction. `customer_id` is `None` when the customer
    /// cancelled before signing in. Refused (`access_denied`) when the consent no longer
    /// awaits authorisation.
    #[tracing::instrument(skip_all, fields(consent_id = %consent_id))]
    pub async fn reject(
        &self,
        caller: &Caller,
        consent_id: &str,
        customer_id: Option<&str>,
    ) -> Result<(), ServiceError> {
        let mut client_id = None;
        let outcome = async {
            let consent = self
                .find(consent_id)
                .await?
                .ok_or_else(|| access_denied(format!("there is no consent \"{}\"", shorten(consent_id))))?;
            client_id = Some(consent.client_id.clone());
            if consent.status != ConsentStatus::AwaitingAuthorisation {
                return Err(access_denied(format!("the consent is {}, not AwaitingAuthorisation", consent.status)));
            }
            let customer = customer_id.or(caller.customer.as_deref());
            let client = self.store.find_client(&consent.client_id).await?;
            let line = self.auditor.consent_success(
                AuditAction::ConsentReject,
                caller,
                &consent.client_id,
                client.as_ref(),
                &consent.id,
                customer,
            );
            self.change_status(&consent, ConsentStatus::Rejected, customer, None, &line).await
        }
        .await;
        match &outcome {
            Ok(()) => tracing::info!("consent rejected"),
            Err(error) => {
                self.auditor
                    .consent_refusal(
                        AuditAction::ConsentReject,
                        caller,
                        client_id.as_deref(),
                        Some(consent_id),
                        customer_id,
                        error,
                    )
                    .await
            }
        }
        outcome
    }

    /// Moves `consent` to `to` if the transition is allowed and the consent is still as it
    /// was read (compare-and-set in the store), committing `audit` with it.
    async fn change_status(
        &self,
        consent: &Consent,
        to: ConsentStatus,
        customer_id: Option<&str>,
        account_ids: Option<Vec<String>>,
        audit: &crate::storage::AuditEvent,
    ) -> Result<(), ServiceError> {
        let refused = |status: ConsentStatus| -> ServiceError {
            let message = format!("the consent is {status}; it cannot become {to}");
            match to {
                // The customer's decisions are refused to the authorization flow in OAuth terms.
                ConsentStatus::Authorised | ConsentStatus::Rejected => access_denied(message),
                _ => bad_request(
                    ObieErrorCode::ResourceInvalidConsentStatus,
                    format!("{message}: only an Authorised consent can be revoked"),
                    "Data.Status",
                ),
            }
        };
        if !transition_allowed(consent.kind, consent.status, to) {
            return Err(refused(consent.status));
        }
        let change = ConsentStatusChange {
            consent_id: consent.id.clone(),
            from: consent.status,
            to,
            at: self.clock.now(),
            customer_id: customer_id.map(str::to_owned),
            account_ids,
        };
        if !self.store.change_consent_status(&change, audit).await? {
            let current = self.store.find_consent(&consent.id).await?.map(|c| c.status).unwrap_or(consent.status);
            return Err(refused(current));
        }
        Ok(())
    }
}

/// The algorithms a client's request signatures may use: PS256, as the OBIE profile
/// requires, and ES256 when the client registered it for its request objects or client
/// assertions.
fn signature_algs(client: &RegisteredClient) -> Vec<SigningAlg> {
    let registered = [client.metadata.request_object_signing_alg, client.metadata.token_endpoint_auth_signing_alg];
    let mut algs = vec![SigningAlg::PS256];
    if registered.contains(&Some(SigningAlg::ES256)) {
        algs.push(SigningAlg::ES256);
    }
    algs
}

/// `Content-Type` of a consent POST: `application/json`, parameters (charset) allowed.
fn check_content_type(content_type: HeaderText<'_>) -> Result<(), ServiceError> {
    let mime = match content_type {
        HeaderText::Unreadable => Some("(not ASCII)".to_owned()),
        other => other.text().map(|ct| ct.split(';').next().unwrap_or_default().trim().to_ascii_lowercase()),
    };
    match mime.as_deref() {
        Some("application/json") => Ok(()),
        None => Err(ServiceError::Obie(ObieError::new(
            ObieCategory::UnsupportedMediaType,
            ObieErrorCode::HeaderMissing,
            "Content-Type is required: send the consent as application/json",
            Some("Content-Type"),
        ))),
        Some(other) => Err(ServiceError::Obie(ObieError::new(
            ObieCategory::UnsupportedMediaType,
            ObieErrorCode::HeaderInvalid,
            format!("Content-Type \"{}\" is not accepted: send the consent as application/json", shorten(other)),
            Some("Content-Type"),
        ))),
    }
}

/// `x-idempotency-key`: required for payment consents, optional (and honoured) for the
/// others; at most 40 characters, no white space at either end (the OBIE pattern
/// `^(?!\s)(.*)(\S)$`).
fn idempotency_key(kind: ConsentType, header: HeaderText<'_>) -> Result<Option<&str>, ServiceError> {
    let invalid = |message: String| bad_request(ObieErrorCode::HeaderInvalid, message, "x-idempotency-key");
    match header {
        HeaderText::Absent if kind == ConsentType::DomesticPayment => Err(bad_request(
            ObieErrorCode::HeaderMissing,
            "x-idempotency-key is required for payment consents: send a unique key (at most 40 characters) per consent, and the same key when you retry",
            "x-idempotency-key",
        )),
        HeaderText::Absent => Ok(None),
        HeaderText::Unreadable => Err(invalid("x-idempotency-key must be visible ASCII text".into())),
        HeaderText::Text(key) => {
            let length = key.chars().count();
            if length == 0 || key.starts_with(char::is_whitespace) || key.ends_with(char::is_whitespace) {
                return Err(invalid("x-idempotency-key must not be empty nor start or end with white space".into()));
            }
            if length > MAX_IDEMPOTENCY_KEY_CHARS {
                return Err(invalid(format!(
                    "x-idempotency-key has {length} characters; at most {MAX_IDEMPOTENCY_KEY_CHARS} are allowed"
                )));
            }
            Ok(Some(key))
        }
    }
}

fn shorten(text: &str) -> String {
    text.chars().take(MAX_CONSENT_ID_CHARS).collect()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn idempotency_keys_follow_the_obie_rules() {
        let payment = ConsentType::DomesticPayment;
        assert_eq!(idempotency_key(payment, HeaderText::Text("abc-123")).unwrap(), Some("abc-123"));
        assert_eq!(idempotency_key(ConsentType::AccountAccess, HeaderText::Absent).unwrap(), None);
        let code = |h: HeaderText<'_>| match idempotency_key(payment, h) {
            Err(ServiceError::Obie(e)) => e.errors[0].code,
            other => panic!("{other:?}"),
        };
        assert_eq!(code(HeaderText::Absent), ObieErrorCode::HeaderMissing);
        assert_eq!(code(HeaderText::Text("")), ObieErrorCode::HeaderInvalid);
        assert_eq!(code(HeaderText::Text(" a")), ObieErrorCode::HeaderInvalid);
        assert_eq!(code(HeaderText::Text("a ")), ObieErrorCode::HeaderInvalid);
        let long = "k".repeat(41);
        assert_eq!(code(HeaderText::Text(&long)), ObieErrorCode::HeaderInvalid);
        assert_eq!(code(HeaderText::Unreadable), ObieErrorCode::HeaderInvalid);
        assert!(idempotency_key(payment, HeaderText::Text(&"k".repeat(40))).is_ok());
    }

    #[test]
    fn content_types() {
        assert!(check_content_type(HeaderText::Text("application/json")).is_ok());
        assert!(check_content_type(HeaderText::Text("Application/JSON; charset=utf-8")).is_ok());
        for bad in [HeaderText::Absent, HeaderText::Text("text/plain"), HeaderText::Text("application/jose")] {
            match check_content_type(bad) {
                Err(ServiceError::Obie(e)) => assert_eq!(e.category, ObieCategory::UnsupportedMediaType),
                other => panic!("{other:?}"),
            }
        }
    }
}
