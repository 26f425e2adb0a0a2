//! What a resource server may do under a consent: each resource of the OBIE Read/Write API
//! v3.1.11 that a customer's token is used for, the consent type and permissions it needs,
//! and the consent statuses under which it may be called.
//!
//! A gateway names the call it is about to forward (method and path); [`Resource::of`]
//! recognises it, and [`Resource::allows`] says whether a given consent covers it. Calls a
//! TPP makes with its client-credentials token (the consents themselves, payment status
//! reads by payment id) are not listed: no customer's consent is involved.

use super::{Consent, ConsentStatus, ConsentType, Permission};
use crate::clock::UnixTime;

use Permission::*;

const ACCOUNTS: &[Permission] = &[ReadAccountsBasic, ReadAccountsDetail];
const BALANCES: &[Permission] = &[ReadBalances];
const TRANSACTIONS: &[Permission] = &[ReadTransactionsBasic, ReadTransactionsDetail];
const BENEFICIARIES: &[Permission] = &[ReadBeneficiariesBasic, ReadBeneficiariesDetail];
const DIRECT_DEBITS: &[Permission] = &[ReadDirectDebits];
const STANDING_ORDERS: &[Permission] = &[ReadStandingOrdersBasic, ReadStandingOrdersDetail];
const SCHEDULED_PAYMENTS: &[Permission] = &[ReadScheduledPaymentsBasic, ReadScheduledPaymentsDetail];
const STATEMENTS: &[Permission] = &[ReadStatementsBasic, ReadStatementsDetail];
const PRODUCTS: &[Permission] = &[ReadProducts];
const OFFERS: &[Permission] = &[ReadOffers];
const PARTY: &[Permission] = &[ReadParty];
const PARTY_PSU: &[Permission] = &[ReadPartyPSU];

const IN_FORCE: &[ConsentStatus] = &[ConsentStatus::Authorised];
/// A payment's own status may be read after the payment consumed its consent.
const IN_FORCE_OR_CONSUMED: &[ConsentStatus] = &[ConsentStatus::Authorised, ConsentStatus::Consumed];

/// The sub-resources of `/accounts/{AccountId}/...` and of the bulk `/...` endpoints, with
/// the permissions of which one must be granted.
const ACCOUNT_RESOURCES: &[(&str, &[Permission])] = &[
    ("balances", BALANCES),
    ("transactions", TRANSACTIONS),
    ("beneficiaries", BENEFICIARIES),
    ("direct-debits", DIRECT_DEBITS),
    ("standing-orders", STANDING_ORDERS),
    ("scheduled-payments", SCHEDULED_PAYMENTS),
    ("statements", STATEMENTS),
    ("product", PRODUCTS),
    ("products", PRODUCTS),
    ("offers", OFFERS),
    ("party", PARTY),
    ("parties", PARTY),
];

/// One call of the Read/Write API made with a customer's token.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Resource {
    pub consent_type: ConsentType,
    /// For account access: one of these must be granted.
    pub permissions_any_of: &'static [Permission],
    /// The account the path names (`/accounts/{AccountId}/...`), if any.
    pub account_in_path: Option<String>,
    pub statuses: &'static [ConsentStatus],
    /// `POST /domestic-payments`: the call that makes the payment and consumes the consent.
    pub submits_payment: bool,
}

impl Resource {
    fn read(permissions: &'static [Permission], account: Option<&str>) -> Self {
        Self {
            consent_type: ConsentType::AccountAccess,
            permissions_any_of: permissions,
            account_in_path: account.map(str::to_owned),
            statuses: IN_FORCE,
            submits_payment: false,
        }
    }

    fn of_kind(consent_type: ConsentType, statuses: &'static [ConsentStatus]) -> Self {
        Self { consent_type, permissions_any_of: &[], account_in_path: None, statuses, submits_payment: false }
    }

    /// The resource `method path` is, or why it is not one a customer's token may call.
    /// `path` is as the TPP sent it: `/open-banking/v3.1/aisp/accounts/{AccountId}/balances`
    /// (any v3.1 minor version, a query string ignored).
    pub fn of(method: &str, path: &str) -> Result<Self, String> {
        let path = path.split(['?', '#']).next().unwrap_or_default();
        let rest = path.strip_prefix("/open-banking/").ok_or_else(|| {
            format!("\"{path}\" is not an Open Banking API path; expected /open-banking/v3.1/<aisp|pisp|cbpii>/...")
        })?;
        let (version, rest) = rest.split_once('/').unwrap_or((rest, ""));
        let v3_1 = version == "v3.1" || version.strip_prefix("v3.1.").is_some_and(|minor| minor.parse::<u8>().is_ok());
        if !v3_1 {
            return Err(format!("API version \"{version}\" is not served under these consents (v3.1)"));
        }
        let segments: Vec<&str> = rest.split('/').collect();
        if segments.iter().any(|s| s.is_empty()) {
            return Err(format!("\"{path}\" has an empty path segment"));
        }
        let method = method.to_ascii_uppercase();
        let unknown = || format!("{method} {path} is not a resource a customer's consent covers");
        match segments.as_slice() {
            ["aisp", rest @ ..] => {
                if method != "GET" {
                    return Err(format!("{method} {path}: the account information API is read-only (GET)"));
                }
                match rest {
                    ["accounts"] => Ok(Self::read(ACCOUNTS, None)),
                    ["accounts", account] => Ok(Self::read(ACCOUNTS, Some(account))),
                    ["accounts", account, sub, more @ ..] => {
                        let permissions = account_resource(sub, more).ok_or_else(unknown)?;
                        Ok(Self::read(permissions, Some(account)))
                    }
                    ["party"] => Ok(Self::read(PARTY_PSU, None)),
                    [sub] => Ok(Self::read(account_resource(sub, &[]).ok_or_else(unknown)?, None)),
                    _ => Err(unknown()),
                }
            }
            ["pisp", rest @ ..] => match (method.as_str(), rest) {
                ("POST", ["domestic-payments"]) => {
                    Ok(Self { submits_payment: true, ..Self::of_kind(ConsentType::DomesticPayment, IN_FORCE) })
                }
                ("GET", ["domestic-payments", _] | ["domestic-payments", _, "payment-details"]) => {
                    Ok(Self::of_kind(ConsentType::DomesticPayment, IN_FORCE_OR_CONSUMED))
                }
                ("GET", ["domestic-payment-consents", _, "funds-confirmation"]) => {
                    Ok(Self::of_kind(ConsentType::DomesticPayment, IN_FORCE))
                }
                _ => Err(unknown()),
            },
            ["cbpii", "funds-confirmations"] if method == "POST" => {
                Ok(Self::of_kind(ConsentType::FundsConfirmation, IN_FORCE))
            }
            _ => Err(unknown()),
        }
    }

    /// The account the call is about: the one in the path, or else the one the gateway
    /// named; both must agree when both are given.
    pub fn account<'a>(&'a self, named: Option<&'a str>) -> Result<Option<&'a str>, String> {
        match (self.account_in_path.as_deref(), named) {
            (Some(path), Some(named)) if path != named => {
                Err(format!("account_id \"{named}\" differs from the account \"{path}\" the path names"))
            }
            (Some(path), _) => Ok(Some(path)),
            (None, named) => Ok(named),
        }
    }

    /// Whether `consent` covers this call at `now` for `account` (see [`Resource::account`]);
    /// the reason when it does not, in words for the gateway's log and the TPP.
    pub fn allows(&self, consent: &Consent, account: Option<&str>, now: UnixTime) -> Result<(), String> {
        if consent.kind != self.consent_type {
            return Err(format!(
                "the token's consent is a {} consent; this call needs a {} consent",
                consent.kind, self.consent_type
            ));
        }
        if !self.statuses.contains(&consent.status) {
            return Err(format!("consent {} is {}", consent.id, consent.status));
        }
        if consent.expired(now) {
            return Err(format!("consent {} expired at {}", consent.id, consent.expiration_date_time().unwrap_or("?")));
        }
        if !self.permissions_any_of.is_empty() {
            let granted = consent.permissions();
            if !self.permissions_any_of.iter().any(|p| granted.contains(p)) {
                let wanted: Vec<&str> = self.permissions_any_of.iter().map(|p| p.as_str()).collect();
                return Err(format!("consent {} does not grant {}", consent.id, wanted.join(" or ")));
            }
        }
        if let Some(account) = account {
            if !consent.account_ids.iter().any(|a| a == account) {
                return Err(format!("account \"{account}\" is not one the customer chose for consent {}", consent.id));
            }
        }
        Ok(())
    }
}

fn account_resource(sub: &str, more: &[&str]) -> Option<&'static [Permission]> {
    let permissions = ACCOUNT_RESOURCES.iter().find(|(name, _)| *name == sub).map(|(_, p)| *p)?;
    match (sub, more) {
        (_, []) => Some(permissions),
        // A statement, its file, and its transactions.
        ("statements", [_]) | ("statements", [_, "file"]) => Some(permissions),
        ("statements", [_, "transactions"]) => Some(TRANSACTIONS),
        _ => None,
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::consent::ConsentRequest;
    use serde_json::json;

    const NOW: UnixTime = 1_800_000_000;

    fn accounts_consent(permissions: &[&str]) -> Consent {
        let body = json!({
            "Data": {"Permissions": permissions, "ExpirationDateTime": "2099-01-01T00:00:00+00:00"},
            "Risk": {}
        });
        let request = ConsentRequest::parse(ConsentType::AccountAccess, body.to_string().as_bytes()).unwrap();
        let mut consent = Consent::new("client-1", request, NOW);
        consent.status = ConsentStatus::Authorised;
        consent.account_ids = vec!["acc-1".into()];
        consent
    }

    #[test]
    fn paths_are_recognised_with_their_permissions_and_account() {
        let balances = Resource::of("GET", "/open-banking/v3.1/aisp/accounts/acc-1/balances").unwrap();
        assert_eq!(balances.permissions_any_of, BALANCES);
        assert_eq!(balances.account_in_path.as_deref(), Some("acc-1"));
        let list = Resource::of("get", "/open-banking/v3.1.11/aisp/accounts?page=2").unwrap();
        assert_eq!((list.permissions_any_of, list.account_in_path), (ACCOUNTS, None));
        let statement = Resource::of("GET", "/open-banking/v3.1/aisp/accounts/a/statements/s-1/transactions").unwrap();
        assert_eq!(statement.permissions_any_of, TRANSACTIONS);
        assert!(Resource::of("POST", "/open-banking/v3.1/pisp/domestic-payments").unwrap().submits_payment);
        assert_eq!(
            Resource::of("POST", "/open-banking/v3.1/cbpii/funds-confirmations").unwrap().consent_type,
            ConsentType::FundsConfirmation
        );
        for (method, path) in [
            ("DELETE", "/open-banking/v3.1/aisp/accounts/acc-1"),
            ("GET", "/open-banking/v3.1/aisp/accounts/acc-1/secrets"),
            ("GET", "/open-banking/v4.0/aisp/accounts"),
            ("GET", "/open-banking/v3.1/aisp//accounts"),
            ("GET", "/accounts"),
            ("POST", "/open-banking/v3.1/pisp/domestic-payment-consents"),
        ] {
            assert!(Resource::of(method, path).is_err(), "{method} {path} is refused");
        }
    }

    #[test]
    fn a_consent_covers_only_its_permissions_accounts_and_status() {
        let consent = accounts_consent(&["ReadAccountsDetail", "ReadBalances"]);
        let balances = Resource::of("GET", "/open-banking/v3.1/aisp/accounts/acc-1/balances").unwrap();
        assert_eq!(balances.allows(&consent, Some("acc-1"), NOW), Ok(()));
        let other = balances.allows(&consent, Some("acc-2"), NOW).unwrap_err();
        assert!(other.contains("acc-2"), "{other}");
        let transactions = Resource::of("GET", "/open-banking/v3.1/aisp/accounts/acc-1/transactions").unwrap();
        let missing = transactions.allows(&consent, Some("acc-1"), NOW).unwrap_err();
        assert!(missing.contains("ReadTransactionsBasic or ReadTransactionsDetail"), "{missing}");
        let payment = Resource::of("POST", "/open-banking/v3.1/pisp/domestic-payments").unwrap();
        assert!(payment.allows(&consent, None, NOW).unwrap_err().contains("domestic-payment consent"));

        let mut revoked = consent.clone();
        revoked.status = ConsentStatus::Revoked;
        assert!(balances.allows(&revoked, Some("acc-1"), NOW).unwrap_err().contains("Revoked"));
        assert!(balances.allows(&consent, Some("acc-1"), 4_102_444_800).unwrap_err().contains("expired"));
    }

    #[test]
    fn the_path_and_the_named_account_must_agree() {
        let balances = Resource::of("GET", "/open-banking/v3.1/aisp/accounts/acc-1/balances").unwrap();
        assert_eq!(balances.account(None), Ok(Some("acc-1")));
        assert_eq!(balances.account(Some("acc-1")), Ok(Some("acc-1")));
        assert!(balances.account(Some("acc-2")).is_err());
        let bulk = Resource::of("GET", "/open-banking/v3.1/aisp/balances").unwrap();
        assert_eq!(bulk.account(Some("acc-9")), Ok(Some("acc-9")));
    }
}
