//! `keyfort customers`: the built-in customer store. Each command opens (and, on first use,
//! creates and migrates) the configured database, so it works before the first `serve` and
//! while servers run.

use std::path::Path;

use super::args::CustomersCommand;
use crate::customers::manage::{self, NewAccount};

pub fn run(command: CustomersCommand) -> anyhow::Result<String> {
    match command {
        CustomersCommand::Add { config, username, password_stdin, totp } => {
            add(&config, &username, password_stdin, totp)
        }
        CustomersCommand::AddAccount {
            config,
            username,
            account_id,
            name,
            scheme,
            identification,
            currency,
            secondary_identification,
        } => {
            let account = NewAccount { account_id, name, scheme, identification, secondary_identification, currency };
            add_account(&config, &username, &account)
        }
        CustomersCommand::List { config } => list(&config),
    }
}

fn add(config: &Path, username: &str, password_stdin: bool, totp: bool) -> anyhow::Result<String> {
    let config = super::load_config(config)?;
    // Checked before the password is asked for, so a bad name does not cost a typed password.
    manage::check_username(username).map_err(anyhow::Error::msg)?;
    let password = super::read_password(&format!("Password for {username}: "), password_stdin, true)?;
    let runtime = tokio::runtime::Runtime::new()?;
    let added = runtime.block_on(async {
        let store = crate::storage::open(&config.storage).await?;
        manage::add_customer(store.as_ref(), &config.customers, username, &password, totp, super::now()).await
    })?;
    let mut out = format!("customer \"{username}\" added (customer id {})\n", added.customer_id);
    if let Some(secret) = added.totp {
        out.push_str(&format!(
            "one-time code secret (base32): {}\n{}\nThis secret is shown once: add it to the customer's authenticator app now (the URI is what a QR code would hold).\n",
            secret.to_base32(),
            secret.otpauth_uri(&config.customers.totp_issuer, username)
        ));
    }
    Ok(out)
}

fn add_account(config: &Path, username: &str, account: &NewAccount) -> anyhow::Result<String> {
    let config = super::load_config(config)?;
    account.check().map_err(anyhow::Error::msg)?;
    let runtime = tokio::runtime::Runtime::new()?;
    runtime.block_on(async {
        let store = crate::storage::open(&config.storage).await?;
        manage::add_account(store.as_ref(), username, account, super::now()).await
    })?;
    Ok(format!("account \"{}\" added to customer \"{username}\"", account.account_id))
}

fn list(config: &Path) -> anyhow::Result<String> {
    let config = super::load_config(config)?;
    let runtime = tokio::runtime::Runtime::new()?;
    runtime.block_on(async {
        let store = crate::storage::open(&config.storage).await?;
        manage::list(store.as_ref()).await
    })
}
