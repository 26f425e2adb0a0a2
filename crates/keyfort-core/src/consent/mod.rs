//! Open Banking intents (consents), OBIE Read/Write API v3.1.11: the three types Keyfort
//! hosts, their statuses and the transitions between them, the request bodies and their
//! checks, the OBIE error model, and the stored consent with its response body and what the
//! consent page shows.

mod access;
mod error;
mod fields;
mod permission;
mod request;
mod signature;

pub use access::Resource;
pub use error::{ObieCategory, ObieError, ObieErrorCode, ObieErrorItem};
pub use fields::{
    check_identification, format_date_time, normalise_identification, AccountIdentification, Amount, Currency,
    IsoDateTime, SchemeName, Text,
};
pub use permission::{check_combination, Permission};
pub use request::{
    ConsentBody, ConsentRequest, CreditorAccount, DomesticInitiation, OBFundsConfirmationConsent1, OBReadConsent1,
    OBWriteDomesticConsent4,
};
pub use signature::{RequestSignature, SignatureRules, CLAIM_IAT, CLAIM_ISS, CLAIM_TAN, CRITICAL_CLAIMS};

use serde_json::{json, Map, Value};

use crate::clock::UnixTime;

/// The three consent types, named as everywhere in Keyfort (CLI, introspection, admin API).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum ConsentType {
    AccountAccess,
    DomesticPayment,
    FundsConfirmation,
}

impl ConsentType {
    pub const ALL: [ConsentType; 3] =
        [ConsentType::AccountAccess, ConsentType::DomesticPayment, ConsentType::FundsConfirmation];

    pub fn as_str(self) -> &'static str {
        match self {
            ConsentType::AccountAccess => "account-access",
            ConsentType::DomesticPayment => "domestic-payment",
            ConsentType::FundsConfirmation => "funds-confirmation",
        }
    }

    pub fn parse(s: &str) -> Option<Self> {
        Self::ALL.iter().copied().find(|t| t.as_str() == s)
    }

    /// The OAuth scope a client-credentials token needs to create or read this type.
    pub fn scope(self) -> &'static str {
        match self {
            ConsentType::AccountAccess => "accounts",
            ConsentType::DomesticPayment => "payments",
            ConsentType::FundsConfirmation => "fundsconfirmations",
        }
    }

    /// The collection's path, from the API root: `/open-banking/v3.1/aisp/account-access-consents`.
    pub fn path(self) -> &'static str {
        match self {
            ConsentType::AccountAccess => "/open-banking/v3.1/aisp/account-access-consents",
            ConsentType::DomesticPayment => "/open-banking/v3.1/pisp/domestic-payment-consents",
            ConsentType::FundsConfirmation => "/open-banking/v3.1/cbpii/funds-confirmation-consents",
        }
    }

    /// The request schema's name in the specification, for error messages.
    pub fn schema_name(self) -> &'static str {
        match self {
            ConsentType::AccountAccess => "OBReadConsent1",
            ConsentType::DomesticPayment => "OBWriteDomesticConsent4",
            ConsentType::FundsConfirmation => "OBFundsConfirmationConsent1",
        }
    }

    /// A short prefix of this type's consent ids, so that support staff can tell the type
    /// of a consent from its id.
    fn id_prefix(self) -> &'static str {
        match self {
            ConsentType::AccountAccess => "aac",
            ConsentType::DomesticPayment => "pdc",
            ConsentType::FundsConfirmation => "fcc",
        }
    }

    /// Whether the TPP may revoke (DELETE) a consent of this type. v3.1.11 has no DELETE
    /// (and no Revoked) for payment consents.
    pub fn revocable(self) -> bool {
        !matches!(self, ConsentType::DomesticPayment)
    }
}

impl std::fmt::Display for ConsentType {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(self.as_str())
    }
}

/// A consent's status, with the OBIE names.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum ConsentStatus {
    AwaitingAuthorisation,
    Authorised,
    Rejected,
    Revoked,
    Consumed,
}

impl ConsentStatus {
    pub const ALL: [ConsentStatus; 5] = [
        ConsentStatus::AwaitingAuthorisation,
        ConsentStatus::Authorised,
        ConsentStatus::Rejected,
        ConsentStatus::Revoked,
        ConsentStatus::Consumed,
    ];

    pub fn as_str(self) -> &'static str {
        match self {
            ConsentStatus::AwaitingAuthorisation => "AwaitingAuthorisation",
            ConsentStatus::Authorised => "Authorised",
            ConsentStatus::Rejected => "Rejected",
            ConsentStatus::Revoked => "Revoked",
            ConsentStatus::Consumed => "Consumed",
        }
    }

    pub fn parse(s: &str) -> Option<Self> {
        Self::ALL.iter().copied().find(|t| t.as_str() == s)
    }
}

impl std::fmt::Display for ConsentStatus {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(self.as_str())
    }
}

/// Whether a consent of `kind` may go from `from` to `to`, as v3.1.11 defines the flows:
///
/// - account-access and funds-confirmation: AwaitingAuthorisation → Authorised or Rejected;
///   Authorised → Revoked.
/// - domestic-payment: AwaitingAuthorisation → Authorised or Rejected; Authorised →
///   Consumed (when the payment is made, through the resource server).
///
/// Nothing else: Rejected, Revoked and Consumed are final, and a status never "changes" to
/// itself. Every status change in Keyfort goes through this function.
pub fn transition_allowed(kind: ConsentType, from: ConsentStatus, to: ConsentStatus) -> bool {
    use ConsentStatus::*;
    match (from, to) {
        (AwaitingAuthorisation, Authorised | Rejected) => true,
        (Authorised, Revoked) => kind.revocable(),
        (Authorised, Consumed) => kind == ConsentType::DomesticPayment,
        _ => false,
    }
}

/// A new consent id: the type's prefix and 32 random letters and digits (OBIE allows up
/// to 128 characters).
pub fn new_consent_id(kind: ConsentType) -> String {
    format!("{}-{}", kind.id_prefix(), crate::secret::new_client_id())
}

/// The stored intent.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Consent {
    pub id: String,
    pub kind: ConsentType,
    /// The TPP that created it; no other client may read, revoke or authorise it.
    pub client_id: String,
    pub status: ConsentStatus,
    pub created_at: UnixTime,
    pub status_updated_at: UnixTime,
    /// `ExpirationDateTime` (account-access, funds-confirmation), as a Unix time.
    pub expires_at: Option<UnixTime>,
    /// The request, as sent and as read.
    pub request: ConsentRequest,
    /// The customer who authorised or rejected it.
    pub customer_id: Option<String>,
    /// The accounts the customer chose when authorising it.
    pub account_ids: Vec<String>,
}

/// Why a consent cannot be authorised now, in words for the TPP (and its customer).
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum NotAuthorisable {
    #[error("the consent is {0}, not AwaitingAuthorisation; create a new consent")]
    Status(ConsentStatus),
    #[error("the consent expired at {0} (its ExpirationDateTime); create a new consent")]
    Expired(String),
    #[error("the payment's Authorisation.CompletionDateTime {0} has passed; create a new payment consent")]
    CompletionPassed(String),
}

impl Consent {
    /// A new consent of `client_id`, awaiting authorisation.
    pub fn new(client_id: &str, request: ConsentRequest, now: UnixTime) -> Self {
        let kind = request.kind();
        Self {
            id: new_consent_id(kind),
            kind,
            client_id: client_id.to_owned(),
            status: ConsentStatus::AwaitingAuthorisation,
            created_at: now,
            status_updated_at: now,
            expires_at: request.expires_at(),
            request,
            customer_id: None,
            account_ids: Vec::new(),
        }
    }

    /// Whether a customer may authorise (or reject) it now: it awaits authorisation, its
    /// ExpirationDateTime has not passed, nor a payment's Authorisation.CompletionDateTime.
    pub fn authorisable(&self, now: UnixTime) -> Result<(), NotAuthorisable> {
        if self.status != ConsentStatus::AwaitingAuthorisation {
            return Err(NotAuthorisable::Status(self.status));
        }
        if self.expired(now) {
            return Err(NotAuthorisable::Expired(self.expiration_date_time().unwrap_or_default().to_owned()));
        }
        if let Some(completion) = self.completion_date_time() {
            if completion.unix() <= now {
                return Err(NotAuthorisable::CompletionPassed(completion.as_str().to_owned()));
            }
        }
        Ok(())
    }

    /// Whether its ExpirationDateTime has passed.
    pub fn expired(&self, now: UnixTime) -> bool {
        self.expires_at.is_some_and(|at| at <= now)
    }

    /// The response body (`OBReadConsentResponse1`, `OBWriteDomesticConsentResponse5`,
    /// `OBFundsConfirmationConsentResponse1`): the request's `Data` with the consent's id,
    /// status and times; its `Risk` where the type has one; `Links.Self`; `Meta`.
    pub fn response_body(&self, self_link: &str) -> Value {
        let request = self.request.json();
        let mut data: Map<String, Value> = request.get("Data").and_then(Value::as_object).cloned().unwrap_or_default();
        data.insert("ConsentId".into(), json!(self.id));
        data.insert("CreationDateTime".into(), json!(format_date_time(self.created_at)));
        data.insert("Status".into(), json!(self.status.as_str()));
        data.insert("StatusUpdateDateTime".into(), json!(format_date_time(self.status_updated_at)));
        let mut body = json!({"Data": data, "Links": {"Self": self_link}, "Meta": {}});
        if let Some(risk) = request.get("Risk") {
            body["Risk"] = risk.clone();
        }
        body
    }

    /// The account-access permissions (empty for other types).
    pub fn permissions(&self) -> Vec<Permission> {
        match self.request.body() {
            ConsentBody::AccountAccess(r) => r.data.permissions.clone(),
            _ => Vec::new(),
        }
    }

    /// `ExpirationDateTime`, as sent.
    pub fn expiration_date_time(&self) -> Option<&str> {
        match self.request.body() {
            ConsentBody::AccountAccess(r) => r.data.expiration_date_time.as_ref().map(IsoDateTime::as_str),
            ConsentBody::FundsConfirmation(r) => r.data.expiration_date_time.as_ref().map(IsoDateTime::as_str),
            ConsentBody::DomesticPayment(_) => None,
        }
    }

    /// `TransactionFromDateTime` and `TransactionToDateTime` of an account-access consent.
    pub fn transaction_period(&self) -> (Option<&str>, Option<&str>) {
        match self.request.body() {
            ConsentBody::AccountAccess(r) => (
                r.data.transaction_from_date_time.as_ref().map(IsoDateTime::as_str),
                r.data.transaction_to_date_time.as_ref().map(IsoDateTime::as_str),
            ),
            _ => (None, None),
        }
    }

    /// A payment's `Authorisation.CompletionDateTime`.
    pub fn completion_date_time(&self) -> Option<&IsoDateTime> {
        self.initiation_and_data().and_then(|(_, p)| p.data.authorisation.as_ref()?.completion_date_time.as_ref())
    }

    /// A payment's amount and currency: `("165.88", "GBP")`.
    pub fn payment_amount(&self) -> Option<(&str, &str)> {
        self.initiation().map(|i| (i.instructed_amount.amount.as_str(), i.instructed_amount.currency.as_str()))
    }

    /// A payment's creditor account (with its required `Name`).
    pub fn creditor_account(&self) -> Option<&CreditorAccount> {
        self.initiation().map(|i| &i.creditor_account)
    }

    /// A payment's remittance reference, if any, to show the customer what the payment is for.
    pub fn payment_reference(&self) -> Option<&str> {
        let remittance = self.initiation()?.remittance_information.as_ref()?;
        remittance.reference.as_ref().map(Text::as_str).or_else(|| remittance.unstructured.as_ref().map(Text::as_str))
    }

    /// The debtor account the consent names: a funds-confirmation consent always names
    /// one; a payment consent may.
    pub fn debtor_account(&self) -> Option<&AccountIdentification> {
        match self.request.body() {
            ConsentBody::FundsConfirmation(r) => Some(&r.data.debtor_account),
            ConsentBody::DomesticPayment(r) => r.data.initiation.debtor_account.as_ref(),
            ConsentBody::AccountAccess(_) => None,
        }
    }

    fn initiation(&self) -> Option<&DomesticInitiation> {
        self.initiation_and_data().map(|(i, _)| i)
    }

    fn initiation_and_data(&self) -> Option<(&DomesticInitiation, &OBWriteDomesticConsent4)> {
        match self.request.body() {
            ConsentBody::DomesticPayment(r) => Some((&r.data.initiation, r)),
            _ => None,
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    const NOW: i64 = 1_800_000_000;

    fn consent(kind: ConsentType, body: Value) -> Consent {
        Consent::new("client-1", ConsentRequest::parse(kind, body.to_string().as_bytes()).unwrap(), NOW)
    }

    #[test]
    fn names_and_transitions() {
        use ConsentStatus::*;
        for t in ConsentType::ALL {
            assert_eq!(ConsentType::parse(t.as_str()), Some(t));
        }
        for s in ConsentStatus::ALL {
            assert_eq!(ConsentStatus::parse(s.as_str()), Some(s));
        }
        for kind in [ConsentType::AccountAccess, ConsentType::FundsConfirmation] {
            assert!(transition_allowed(kind, AwaitingAuthorisation, Authorised));
            assert!(transition_allowed(kind, AwaitingAuthorisation, Rejected));
            assert!(transition_allowed(kind, Authorised, Revoked));
            assert!(!transition_allowed(kind, Authorised, Consumed));
        }
        let payment = ConsentType::DomesticPayment;
        assert!(transition_allowed(payment, AwaitingAuthorisation, Authorised));
        assert!(transition_allowed(payment, AwaitingAuthorisation, Rejected));
        assert!(transition_allowed(payment, Authorised, Consumed));
        assert!(!transition_allowed(payment, Authorised, Revoked), "v3.1.11 has no Revoked for payments");
        for kind in ConsentType::ALL {
            for to in ConsentStatus::ALL {
                for from in [Rejected, Revoked, Consumed] {
                    assert!(!transition_allowed(kind, from, to), "{from} is final");
                }
                assert!(!transition_allowed(kind, to, to), "no change to itself");
                assert!(!transition_allowed(kind, to, AwaitingAuthorisation));
            }
            assert!(!transition_allowed(kind, AwaitingAuthorisation, Revoked));
        }
        let id = new_consent_id(ConsentType::AccountAccess);
        assert!(id.starts_with("aac-") && id.len() == 36, "{id}");
    }

    #[test]
    fn account_access_response_and_page_helpers() {
        let c = consent(
            ConsentType::AccountAccess,
            json!({"Data": {"Permissions": ["ReadAccountsDetail", "ReadBalances"], "ExpirationDateTime": "2027-01-01T00:00:00+00:00", "TransactionFromDateTime": "2020-01-01T00:00:00Z"}, "Risk": {}}),
        );
        let body = c.response_body("https://bank/open-banking/v3.1/aisp/account-access-consents/x");
        assert_eq!(body["Data"]["ConsentId"], c.id);
        assert_eq!(body["Data"]["Status"], "AwaitingAuthorisation");
        assert_eq!(body["Data"]["CreationDateTime"], "2027-01-15T08:00:00+00:00");
        assert_eq!(body["Data"]["Permissions"], json!(["ReadAccountsDetail", "ReadBalances"]));
        assert_eq!(body["Data"]["ExpirationDateTime"], "2027-01-01T00:00:00+00:00");
        assert_eq!(body["Risk"], json!({}));
        assert_eq!(body["Links"]["Self"], "https://bank/open-banking/v3.1/aisp/account-access-consents/x");
        assert_eq!(body["Meta"], json!({}));
        assert_eq!(c.permissions(), vec![Permission::ReadAccountsDetail, Permission::ReadBalances]);
        assert_eq!(c.transaction_period(), (Some("2020-01-01T00:00:00Z"), None));
        assert_eq!(c.expiration_date_time(), Some("2027-01-01T00:00:00+00:00"));
        // NOW is 2027-01-15: the consent parsed, but has expired since.
        assert!(matches!(c.authorisable(NOW), Err(NotAuthorisable::Expired(_))));
        assert!(c.authorisable(NOW - 30 * 86_400).is_ok());
        let mut authorised = c.clone();
        authorised.status = ConsentStatus::Authorised;
        assert_eq!(authorised.authorisable(NOW - 30 * 86_400), Err(NotAuthorisable::Status(ConsentStatus::Authorised)));
    }

    #[test]
    fn payment_helpers() {
        let c = consent(ConsentType::DomesticPayment, super::request::tests::payment());
        assert_eq!(c.payment_amount(), Some(("165.88", "GBP")));
        assert_eq!(c.creditor_account().unwrap().name.as_str(), "ACME Inc");
        assert_eq!(c.payment_reference(), Some("FRESCO-101"));
        assert!(c.debtor_account().is_none());
        assert!(c.expires_at.is_none());
        assert!(c.authorisable(NOW).is_ok());
        assert!(matches!(c.authorisable(4_200_000_000), Err(NotAuthorisable::CompletionPassed(_))));
        let body = c.response_body("self");
        assert_eq!(body["Risk"]["MerchantCategoryCode"], "5967");
        assert_eq!(body["Data"]["Initiation"]["InstructedAmount"]["Amount"], "165.88");
        assert_eq!(body["Data"]["ReadRefundAccount"], "Yes");
    }

    #[test]
    fn funds_confirmation_helpers() {
        let c = consent(
            ConsentType::FundsConfirmation,
            json!({"Data": {"DebtorAccount": {"SchemeName": "UK.OBIE.SortCodeAccountNumber", "Identification": "60304560123456"}}}),
        );
        assert_eq!(c.debtor_account().unwrap().identification(), "60304560123456");
        let body = c.response_body("self");
        assert!(body.get("Risk").is_none(), "funds confirmation has no Risk");
        assert_eq!(body["Data"]["DebtorAccount"]["SchemeName"], "UK.OBIE.SortCodeAccountNumber");
        assert!(c.permissions().is_empty());
    }
}
