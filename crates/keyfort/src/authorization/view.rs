//! What the customer's pages show, built from the client, the consent and the customer's
//! accounts; and the forms they post back, typed.

use keyfort_core::consent::{Consent, ConsentType};
use keyfort_core::error::OAuthError;
use keyfort_core::registration::RegisteredClient;

use crate::customers::Account;
use crate::pages::{AccountChoice, AccountView, ConsentView, Fact, LoginView, TppView};

/// The login form.
#[derive(Debug, Clone)]
pub struct SignInForm {
    pub csrf_token: String,
    pub username: String,
    pub password: String,
    pub otp: Option<String>,
    /// The customer pressed Cancel.
    pub cancelled: bool,
}

/// The customer's answer on the consent page.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Decision {
    Approve,
    Deny,
}

/// The consent form.
#[derive(Debug, Clone)]
pub struct DecisionForm {
    pub csrf_token: String,
    pub decision: Decision,
    /// The `account` values: the chosen account ids.
    pub accounts: Vec<String>,
}

/// The TPP as the customer should recognise it: its registered name and the organisation
/// its software statement names (verified when it registered).
pub(crate) fn tpp(client: &RegisteredClient) -> TppView {
    let organisation = client
        .software_statement
        .as_deref()
        .and_then(|ssa| keyfort_core::jose::CompactJws::parse(ssa).ok()?.unverified_claims().ok())
        .and_then(|claims| claims.string("org_name").ok().flatten());
    TppView { name: client.metadata.client_name.clone(), organisation }
}

/// What the TPP is asking for, in a few words.
pub(crate) fn purpose(kind: ConsentType) -> &'static str {
    match kind {
        ConsentType::AccountAccess => "access to your account information",
        ConsentType::DomesticPayment => "your permission to make a payment from your account",
        ConsentType::FundsConfirmation => "permission to check whether your account can cover a payment",
    }
}

pub fn login(
    client: &RegisteredClient,
    consent: &Consent,
    csrf_token: String,
    message: Option<String>,
    username: String,
) -> LoginView {
    LoginView { tpp: tpp(client), purpose: purpose(consent.kind).to_owned(), csrf_token, message, username }
}

/// A sort code and account number as people write them: `60-30-45 60123456`.
pub(crate) fn account_in_words(scheme: &str, identification: &str) -> String {
    let digits: String = identification.chars().filter(char::is_ascii_alphanumeric).collect();
    if scheme.ends_with("SortCodeAccountNumber") && digits.len() == 14 {
        format!("Sort code {}-{}-{}, account {}", &digits[0..2], &digits[2..4], &digits[4..6], &digits[6..])
    } else if scheme.ends_with("IBAN") {
        let grouped: Vec<String> =
            digits.as_bytes().chunks(4).map(|c| String::from_utf8_lossy(c).into_owned()).collect();
        format!("IBAN {}", grouped.join(" "))
    } else {
        identification.to_owned()
    }
}

/// An ISO 8601 date-time as a customer reads it: `31 December 2027, 23:59 UTC`.
pub(crate) fn when(iso: &str) -> String {
    match time::OffsetDateTime::parse(iso, &time::format_description::well_known::Rfc3339) {
        Ok(at) => {
            let at = at.to_offset(time::UtcOffset::UTC);
            format!("{} {} {}, {:02}:{:02} UTC", at.day(), at.month(), at.year(), at.hour(), at.minute())
        }
        Err(_) => iso.to_owned(),
    }
}

pub(crate) fn account_view(account: &Account) -> AccountView {
    AccountView {
        id: account.id.clone(),
        name: account.name.clone(),
        detail: format!("{} · {}", account_in_words(&account.scheme, &account.identification), account.currency),
    }
}

/// The customer's accounts that a consent's named debtor account is.
fn named_account<'a>(consent: &Consent, accounts: &'a [Account]) -> Option<Result<&'a Account, OAuthError>> {
    let debtor = consent.debtor_account()?;
    Some(
        accounts
            .iter()
            .find(|a| debtor.names(&a.scheme, &a.identification))
            .ok_or_else(|| OAuthError::access_denied("the consent names a debtor account that is not this customer's")),
    )
}

/// What a consent lets the TPP (named `tpp_name`) do, in words: a heading, one sentence
/// per permission or promise, and labelled facts (dates, the amount, the payee). The
/// consent page and the customer's page of authorised TPPs both show it.
pub(crate) fn what_is_asked(consent: &Consent, tpp_name: &str) -> (String, Vec<String>, Vec<Fact>) {
    let mut lines = Vec::new();
    let mut facts = Vec::new();
    let heading = match consent.kind {
        ConsentType::AccountAccess => {
            lines = consent.permissions().iter().map(|p| p.sentence().to_owned()).collect();
            if let Some(until) = consent.expiration_date_time() {
                facts.push(Fact { label: "Until".into(), value: when(until) });
            } else {
                facts.push(Fact { label: "Until".into(), value: "You withdraw it".into() });
            }
            let (from, to) = consent.transaction_period();
            if let Some(from) = from {
                facts.push(Fact { label: "Transactions from".into(), value: when(from) });
            }
            if let Some(to) = to {
                facts.push(Fact { label: "Transactions to".into(), value: when(to) });
            }
            format!("What {tpp_name} will be able to see")
        }
        ConsentType::DomesticPayment => {
            if let Some((amount, currency)) = consent.payment_amount() {
                facts.push(Fact { label: "Amount".into(), value: format!("{amount} {currency}") });
            }
            if let Some(creditor) = consent.creditor_account() {
                facts.push(Fact { label: "To".into(), value: creditor.name.as_str().to_owned() });
                facts.push(Fact {
                    label: "Their account".into(),
                    value: account_in_words(creditor.scheme_name.as_str(), creditor.identification.as_str()),
                });
            }
            if let Some(reference) = consent.payment_reference() {
                facts.push(Fact { label: "Reference".into(), value: reference.to_owned() });
            }
            lines.push(format!("{tpp_name} will ask the bank to make this payment once, from the account below."));
            "The payment".to_owned()
        }
        ConsentType::FundsConfirmation => {
            lines.push(format!(
                "{tpp_name} will be able to ask whether this account has enough money for a payment. It will only get a yes or no answer, never your balance."
            ));
            if let Some(until) = consent.expiration_date_time() {
                facts.push(Fact { label: "Until".into(), value: when(until) });
            }
            format!("What {tpp_name} will be able to check")
        }
    };
    (heading, lines, facts)
}

/// The consent page for `consent`, or the reason it cannot be shown (the customer has no
/// account it could apply to, or the account it names is not theirs).
pub fn consent(
    client: &RegisteredClient,
    consent: &Consent,
    customer: &str,
    accounts: &[Account],
    csrf_token: String,
    message: Option<String>,
) -> Result<ConsentView, OAuthError> {
    let tpp = tpp(client);
    let (heading, lines, facts) = what_is_asked(consent, &tpp.name);
    let (choice, shown): (AccountChoice, Vec<&Account>) = match consent.kind {
        ConsentType::AccountAccess => (AccountChoice::Several, accounts.iter().collect()),
        ConsentType::DomesticPayment => match named_account(consent, accounts) {
            Some(named) => (AccountChoice::Fixed, vec![named?]),
            None => (AccountChoice::One, accounts.iter().collect()),
        },
        ConsentType::FundsConfirmation => {
            let named = named_account(consent, accounts).unwrap_or_else(|| {
                Err(OAuthError::access_denied("a funds-confirmation consent must name its debtor account"))
            })?;
            (AccountChoice::Fixed, vec![named])
        }
    };
    if shown.is_empty() {
        return Err(OAuthError::access_denied("the customer has no account this consent could apply to"));
    }
    let mut view = ConsentView {
        tpp,
        purpose: purpose(consent.kind).to_owned(),
        customer: customer.to_owned(),
        heading,
        lines,
        facts,
        choice,
        accounts: shown.into_iter().map(account_view).collect(),
        csrf_token,
        message: None,
    };
    view.message = message;
    Ok(view)
}

/// The accounts the customer chose, checked against what the page offered: at least one of
/// theirs; exactly one for a payment; the named one where the consent names it.
pub fn chosen_accounts(consent: &Consent, accounts: &[Account], chosen: &[String]) -> Result<Vec<String>, String> {
    if let Some(named) = named_account(consent, accounts) {
        return named.map(|a| vec![a.id.clone()]).map_err(|e| e.description);
    }
    let mut ids: Vec<String> = Vec::new();
    for id in chosen {
        if !accounts.iter().any(|a| &a.id == id) {
            return Err("Choose from the accounts shown.".to_owned());
        }
        if !ids.contains(id) {
            ids.push(id.clone());
        }
    }
    match consent.kind {
        ConsentType::AccountAccess if ids.is_empty() => Err("Choose at least one account to share.".to_owned()),
        ConsentType::DomesticPayment if ids.len() != 1 => Err("Choose the one account to pay from.".to_owned()),
        _ => Ok(ids),
    }
}
