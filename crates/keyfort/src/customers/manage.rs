//! Adding customers and accounts to the built-in store, and listing them: the work of
//! `keyfort customers` (and of the demo). Each value is checked before anything is stored,
//! with a message that says what to change.

use keyfort_core::clock::UnixTime;
use keyfort_core::consent::{check_identification, Currency, SchemeName};
use keyfort_core::totp::TotpSecret;

use super::directory::MAX_USERNAME_CHARS;
use crate::config::CustomersConfig;
use crate::password::hash_password;
use crate::storage::{AddAccountError, CreateCustomerError, CustomerAccount, Store, StoredCustomer};

/// A customer just added: their id and, with `--totp`, the secret to show once.
#[derive(Debug)]
pub struct AddedCustomer {
    pub customer_id: String,
    pub totp: Option<TotpSecret>,
}

/// Checks a username: 1 to 256 characters, no control characters, no spaces around it.
/// Usernames are compared exactly as written.
pub fn check_username(username: &str) -> Result<(), String> {
    if username.is_empty() || username.chars().count() > MAX_USERNAME_CHARS {
        return Err(format!("the username must have 1 to {MAX_USERNAME_CHARS} characters"));
    }
    if username.trim() != username || username.chars().any(char::is_control) {
        return Err("the username must not start or end with spaces nor contain control characters".to_owned());
    }
    Ok(())
}

/// Adds a customer with `password` (hashed with Argon2id) and, with `with_totp`, a new
/// one-time-code secret. The customer id is random and stable: it is the ID token's `sub`.
pub async fn add_customer(
    store: &dyn Store,
    config: &CustomersConfig,
    username: &str,
    password: &str,
    with_totp: bool,
    now: UnixTime,
) -> anyhow::Result<AddedCustomer> {
    check_username(username).map_err(anyhow::Error::msg)?;
    let length = password.chars().count();
    if length < config.min_password_length {
        anyhow::bail!(
            "the password has {length} characters; at least {} are required ([customers] min_password_length)",
            config.min_password_length
        );
    }
    if password.len() > 1024 {
        anyhow::bail!("the password is longer than 1024 bytes");
    }
    let totp = with_totp.then(TotpSecret::generate);
    let customer = StoredCustomer {
        customer_id: keyfort_core::secret::new_client_id(),
        username: username.to_owned(),
        password_hash: hash_password(password)?,
        totp_secret: totp.as_ref().map(TotpSecret::to_base32),
        totp_last_step: None,
        failed_logins: 0,
        locked_until: None,
        created_at: now,
    };
    store.create_customer(&customer).await.map_err(|e| match e {
        CreateCustomerError::UsernameTaken => anyhow::anyhow!("a customer named \"{username}\" already exists"),
        CreateCustomerError::Store(e) => anyhow::anyhow!(e),
    })?;
    Ok(AddedCustomer { customer_id: customer.customer_id, totp })
}

/// An account to add, as given on the command line.
#[derive(Debug, Clone)]
pub struct NewAccount {
    pub account_id: String,
    pub name: String,
    pub scheme: String,
    pub identification: String,
    pub secondary_identification: Option<String>,
    pub currency: String,
}

impl NewAccount {
    /// Every problem with the account, as the OBIE v3.1.11 fields allow it.
    pub fn check(&self) -> Result<(), String> {
        let mut problems = Vec::new();
        let id_ok = (1..=40).contains(&self.account_id.len())
            && self.account_id.bytes().all(|b| b.is_ascii_alphanumeric() || b"-._".contains(&b));
        if !id_ok {
            problems.push("--account-id must be 1 to 40 letters, digits, '-', '.' or '_'".to_owned());
        }
        if self.name.trim().is_empty() || self.name.chars().count() > 350 {
            problems.push("--name must have 1 to 350 characters".to_owned());
        }
        if !SchemeName::VALUES.contains(&self.scheme.as_str()) {
            problems.push(format!("--scheme must be one of {}", SchemeName::VALUES.join(", ")));
        } else if self.identification.is_empty() || self.identification.chars().count() > 256 {
            problems.push("--identification must have 1 to 256 characters".to_owned());
        } else if let Err(why) = check_identification(&self.scheme, &self.identification) {
            problems.push(format!("--identification: {why}"));
        }
        if self.secondary_identification.as_ref().is_some_and(|s| s.is_empty() || s.chars().count() > 34) {
            problems.push("--secondary-identification must have 1 to 34 characters".to_owned());
        }
        if !Currency::is_valid(&self.currency) {
            problems.push("--currency must be an ISO 4217 code in capitals, e.g. GBP".to_owned());
        }
        if problems.is_empty() {
            Ok(())
        } else {
            Err(problems.join("; "))
        }
    }
}

/// Adds an account to the customer `username`.
pub async fn add_account(store: &dyn Store, username: &str, account: &NewAccount, now: UnixTime) -> anyhow::Result<()> {
    account.check().map_err(anyhow::Error::msg)?;
    let customer = store.find_customer_by_username(username).await?.ok_or_else(|| {
        anyhow::anyhow!("no customer named \"{username}\"; add them first with `keyfort customers add`")
    })?;
    let stored = CustomerAccount {
        account_id: account.account_id.clone(),
        customer_id: customer.customer_id,
        name: account.name.clone(),
        scheme: account.scheme.clone(),
        identification: account.identification.clone(),
        secondary_identification: account.secondary_identification.clone(),
        currency: account.currency.clone(),
    };
    store.add_customer_account(&stored, now).await.map_err(|e| match e {
        AddAccountError::AccountIdTaken => {
            anyhow::anyhow!(
                "an account with id \"{}\" already exists (account ids are unique bank-wide)",
                account.account_id
            )
        }
        AddAccountError::NoSuchCustomer => anyhow::anyhow!("no customer named \"{username}\""),
        AddAccountError::Store(e) => anyhow::anyhow!(e),
    })
}

/// Every customer with their accounts, for `keyfort customers list`: usernames, ids,
/// whether one-time codes are on, and accounts. Never a secret.
pub async fn list(store: &dyn Store) -> anyhow::Result<String> {
    let customers = store.list_customers().await?;
    if customers.is_empty() {
        return Ok("no customers yet; add one with `keyfort customers add`".to_owned());
    }
    let mut out = format!("{:<24} {:<34} {:<5} ACCOUNTS\n", "USERNAME", "CUSTOMER_ID", "TOTP");
    for customer in customers {
        let accounts = store.customer_accounts(&customer.customer_id).await?;
        let first = accounts.first().map(describe_account).unwrap_or_else(|| "-".to_owned());
        out.push_str(&format!(
            "{:<24} {:<34} {:<5} {first}\n",
            customer.username,
            customer.customer_id,
            if customer.totp_secret.is_some() { "on" } else { "off" },
        ));
        for account in accounts.iter().skip(1) {
            out.push_str(&format!("{:<24} {:<34} {:<5} {}\n", "", "", "", describe_account(account)));
        }
    }
    Ok(out)
}

fn describe_account(a: &CustomerAccount) -> String {
    let secondary = a.secondary_identification.as_deref().map(|s| format!(" ({s})")).unwrap_or_default();
    format!("{} \"{}\" {} {}{secondary} {}", a.account_id, a.name, a.scheme, a.identification, a.currency)
}
