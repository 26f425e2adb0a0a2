//! Bank customers (PSUs): who signs in on the login page, and which accounts they may
//! choose on the consent page.
//!
//! Both sit behind a small trait, so that a bank can plug in its own identity provider
//! ([`CustomerDirectory`]) and core-banking lookup ([`AccountLookup`]); Keyfort's built-in
//! implementations ([`StoreCustomerDirectory`], [`StoreAccountLookup`]) keep customers and
//! accounts in Keyfort's own database, for banks without their own login and for the
//! sandbox. [`manage`] adds customers and accounts to that store (`keyfort customers`).

mod directory;
pub mod manage;

use std::net::IpAddr;
use std::sync::Arc;
use std::time::Duration;

use async_trait::async_trait;

pub use directory::StoreCustomerDirectory;

use crate::error::ServiceError;
use crate::storage::Store;

/// A signed-in customer.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Customer {
    /// Stable and the same for every TPP: the ID token's `sub`.
    pub id: String,
    pub username: String,
    /// Signed in with two factors (a password and a one-time code): strong customer
    /// authentication (`urn:openbanking:psd2:sca`); one factor is `urn:openbanking:psd2:ca`.
    pub second_factor: bool,
}

/// Why a sign-in was refused. The login page says so (without telling which of username
/// and password was wrong) and, for `Locked`, `Throttled` and `Busy`, asks to come back
/// after `retry_after`.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum SignInRefused {
    #[error("the username or password is wrong")]
    WrongCredentials,
    /// The password was right, but the customer uses one-time codes and none was given,
    /// or it was wrong or already used.
    #[error("the one-time code is missing, wrong or already used")]
    OtpMissingOrWrong,
    /// Too many failed sign-ins for this username.
    #[error("too many failed sign-ins for this username; try again in {} seconds", retry_after.as_secs().max(1))]
    Locked { retry_after: Duration },
    /// Too many failed sign-ins from this address, or sign-ins at this server.
    #[error("too many sign-in attempts; try again in {} seconds", retry_after.as_secs().max(1))]
    Throttled { retry_after: Duration },
    /// Every password check is taken and the queue is full.
    #[error("sign-in is busy; try again in {} seconds", retry_after.as_secs().max(1))]
    Busy { retry_after: Duration },
    /// The directory (database, identity provider) cannot answer; the text says what.
    #[error("{0}")]
    Unavailable(String),
}

/// A refused sign-in as the customer is told it on a sign-in page.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct SignInRetry {
    /// What happened and what to do, in words for the customer.
    pub message: String,
    /// When the page may be tried again (429, or 503 when `busy`).
    pub retry_after: Option<Duration>,
    /// Every password check is taken: the bank, not the customer, is the reason.
    pub busy: bool,
}

impl SignInRefused {
    /// How the customer is told about this refusal; `Err` when the directory itself could
    /// not answer, which is the bank's outage, not the customer's mistake.
    pub fn for_customer(self) -> Result<SignInRetry, ServiceError> {
        let retry = |message: &str| SignInRetry { message: message.to_owned(), retry_after: None, busy: false };
        Ok(match self {
            SignInRefused::WrongCredentials => retry("The username or password is wrong. Check them and try again."),
            SignInRefused::OtpMissingOrWrong => retry(
                "Enter the current one-time code from your authenticator app: it was missing, wrong or already used.",
            ),
            SignInRefused::Locked { retry_after } | SignInRefused::Throttled { retry_after } => {
                let minutes = retry_after.as_secs().div_ceil(60).max(1);
                SignInRetry {
                    message: format!(
                        "Too many failed attempts. For your security, signing in is blocked for {minutes} minute{}.",
                        if minutes == 1 { "" } else { "s" }
                    ),
                    retry_after: Some(retry_after),
                    busy: false,
                }
            }
            SignInRefused::Busy { retry_after } => SignInRetry {
                message: "The bank is busy. Please try again in a moment.".to_owned(),
                retry_after: Some(retry_after),
                busy: true,
            },
            SignInRefused::Unavailable(what) => {
                return Err(ServiceError::unavailable("the bank's sign-in cannot answer now", what))
            }
        })
    }
}

/// Checks a customer's sign-in. A bank with its own identity provider implements this
/// (for example by calling the provider's API) and passes it to
/// [`crate::app::Application::build_with`] instead of the built-in store.
#[async_trait]
pub trait CustomerDirectory: Send + Sync {
    /// Checks a sign-in: `otp` is the one-time code, for customers who use one. `peer` is
    /// the customer's own address (behind trusted proxies, taken from their forwarded
    /// header), for per-address limits.
    async fn sign_in(
        &self,
        username: &str,
        password: &str,
        otp: Option<&str>,
        peer: IpAddr,
    ) -> Result<Customer, SignInRefused>;
}

/// An account a customer may choose on the consent page.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Account {
    /// Unique bank-wide; what an authorised consent records.
    pub id: String,
    pub name: String,
    /// The OBIE scheme of `identification`, e.g. `UK.OBIE.SortCodeAccountNumber`.
    pub scheme: String,
    pub identification: String,
    pub secondary_identification: Option<String>,
    pub currency: String,
}

/// The accounts of a customer. A bank implements this over its core-banking system; the
/// built-in [`StoreAccountLookup`] reads the accounts `keyfort customers add-account` added.
#[async_trait]
pub trait AccountLookup: Send + Sync {
    /// The customer's accounts (none for an unknown customer).
    async fn accounts(&self, customer_id: &str) -> Result<Vec<Account>, ServiceError>;
}

/// Accounts from Keyfort's database.
pub struct StoreAccountLookup {
    store: Arc<dyn Store>,
}

impl StoreAccountLookup {
    pub fn new(store: Arc<dyn Store>) -> Self {
        Self { store }
    }
}

#[async_trait]
impl AccountLookup for StoreAccountLookup {
    async fn accounts(&self, customer_id: &str) -> Result<Vec<Account>, ServiceError> {
        Ok(self
            .store
            .customer_accounts(customer_id)
            .await?
            .into_iter()
            .map(|a| Account {
                id: a.account_id,
                name: a.name,
                scheme: a.scheme,
                identification: a.identification,
                secondary_identification: a.secondary_identification,
                currency: a.currency,
            })
            .collect())
    }
}
