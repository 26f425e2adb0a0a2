//! `keyfort admin`: administrator accounts, and the operator's view of registrations and
//! customers' consents through the admin API.

use std::path::{Path, PathBuf};

use base64::Engine;
use serde_json::Value;

use crate::admin::{hash_password, MIN_PASSWORD_CHARS};
use crate::storage::CreateAdminError;

pub fn add_user(config: &Path, username: &str, password_stdin: bool) -> anyhow::Result<()> {
    let config = super::load_config(config)?;
    if username.is_empty() || username.contains(':') || username.chars().any(char::is_control) {
        anyhow::bail!("the administrator name must be non-empty and contain no ':' or control characters");
    }
    let password = super::read_password(&format!("Password for {username}: "), password_stdin, true)?;
    if password.chars().count() < MIN_PASSWORD_CHARS {
        anyhow::bail!("the password must have at least {MIN_PASSWORD_CHARS} characters");
    }
    let hash = hash_password(&password)?;
    let runtime = tokio::runtime::Runtime::new()?;
    runtime.block_on(async {
        let store = crate::storage::open(&config.storage).await?;
        store.create_admin(username, &hash, super::now()).await.map_err(|e| match e {
            CreateAdminError::AdminExists => anyhow::anyhow!("an administrator named \"{username}\" already exists"),
            other => anyhow::anyhow!(other),
        })
    })
}

/// How the admin CLI reaches and signs in to the server.
pub struct Connection {
    pub server: String,
    pub user: String,
    pub password_stdin: bool,
    pub cacert: Option<PathBuf>,
}

/// One admin API call.
pub enum ClientsCommand {
    List { query: Vec<(String, String)> },
    Show { client_id: String },
    Suspend { client_id: String },
    Reactivate { client_id: String },
    Delete { client_id: String },
}

impl From<super::args::AdminConnection> for Connection {
    fn from(args: super::args::AdminConnection) -> Self {
        Self { server: args.server, user: args.user, password_stdin: args.password_stdin, cacert: args.cacert }
    }
}

impl From<super::args::ClientsCommand> for ClientsCommand {
    fn from(args: super::args::ClientsCommand) -> Self {
        use super::args::ClientsCommand as Args;
        match args {
            Args::List { org_id, software_id, status, registered_after, registered_before, limit } => {
                let mut query = vec![("limit".to_owned(), limit.to_string())];
                let optional = [
                    ("org_id", org_id),
                    ("software_id", software_id),
                    ("status", status),
                    ("registered_after", registered_after.map(|t| t.to_string())),
                    ("registered_before", registered_before.map(|t| t.to_string())),
                ];
                query.extend(optional.into_iter().filter_map(|(k, v)| v.map(|v| (k.to_owned(), v))));
                ClientsCommand::List { query }
            }
            Args::Show { client_id } => ClientsCommand::Show { client_id },
            Args::Suspend { client_id } => ClientsCommand::Suspend { client_id },
            Args::Reactivate { client_id } => ClientsCommand::Reactivate { client_id },
            Args::Delete { client_id } => ClientsCommand::Delete { client_id },
        }
    }
}

pub fn clients(connection: &Connection, command: ClientsCommand) -> anyhow::Result<String> {
    let base = format!("{}/admin/clients", connection.server.trim_end_matches('/'));
    let text = call(connection, |http| match &command {
        ClientsCommand::List { query } => http.get(&base).query(query),
        ClientsCommand::Show { client_id } => http.get(format!("{base}/{client_id}")),
        ClientsCommand::Suspend { client_id } => http.post(format!("{base}/{client_id}/suspend")),
        ClientsCommand::Reactivate { client_id } => http.post(format!("{base}/{client_id}/reactivate")),
        ClientsCommand::Delete { client_id } => http.delete(format!("{base}/{client_id}")),
    })?;
    Ok(match command {
        ClientsCommand::List { .. } => table(&serde_json::from_str(&text)?),
        ClientsCommand::Delete { client_id } => format!("client {client_id} deleted"),
        _ => serde_json::to_string_pretty(&serde_json::from_str::<Value>(&text)?)?,
    })
}

/// `keyfort admin consents`: the operator's view of customers' consents.
pub fn consents(connection: &Connection, command: super::args::ConsentsCommand) -> anyhow::Result<String> {
    use super::args::ConsentsCommand as Command;
    let base = format!("{}/admin/consents", connection.server.trim_end_matches('/'));
    let text = call(connection, |http| match &command {
        Command::List { client_id, customer, status, kind, created_after, created_before, limit } => {
            let optional = [
                ("client_id", client_id.clone()),
                ("customer", customer.clone()),
                ("status", status.clone()),
                ("type", kind.clone()),
                ("created_after", created_after.map(|t| t.to_string())),
                ("created_before", created_before.map(|t| t.to_string())),
            ];
            let mut query = vec![("limit".to_owned(), limit.to_string())];
            query.extend(optional.into_iter().filter_map(|(k, v)| v.map(|v| (k.to_owned(), v))));
            http.get(&base).query(&query)
        }
        Command::Show { consent_id } => http.get(format!("{base}/{consent_id}")),
        Command::Revoke { consent_id } => http.post(format!("{base}/{consent_id}/revoke")),
    })?;
    let body: Value = serde_json::from_str(&text)?;
    Ok(match command {
        Command::List { .. } => consent_table(&body),
        Command::Revoke { consent_id } => {
            let status = body["consent"]["status"].as_str().unwrap_or("?");
            match body["grants_revoked"].as_u64().unwrap_or(0) {
                0 => format!("consent {consent_id} is {status}: its tokens no longer work"),
                n => format!("consent {consent_id} is {status}: {n} authorization(s) and their tokens revoked"),
            }
        }
        Command::Show { .. } => serde_json::to_string_pretty(&body)?,
    })
}

/// Signs in as the administrator and makes the request `build` makes; the body of a
/// successful answer, or an error with the status and the server's error body.
fn call(
    connection: &Connection,
    build: impl FnOnce(&reqwest::Client) -> reqwest::RequestBuilder,
) -> anyhow::Result<String> {
    let password = match std::env::var("KEYFORT_ADMIN_PASSWORD") {
        Ok(p) if !connection.password_stdin => p,
        _ => super::read_password(&format!("Password for {}: ", connection.user), connection.password_stdin, false)?,
    };
    let auth = format!(
        "Basic {}",
        base64::engine::general_purpose::STANDARD.encode(format!("{}:{password}", connection.user))
    );
    let http = super::https_client(connection.cacert.as_deref(), None)?;
    let request = build(&http);
    let runtime = tokio::runtime::Runtime::new()?;
    runtime.block_on(async {
        let response = request.header("authorization", auth).send().await?;
        let status = response.status();
        let text = response.text().await?;
        if !status.is_success() {
            anyhow::bail!("{status}: {text}");
        }
        Ok(text)
    })
}

fn consent_table(body: &Value) -> String {
    let mut out =
        format!("{:<38} {:<19} {:<22} {:<34} {}\n", "CONSENT_ID", "TYPE", "STATUS", "CLIENT_ID", "CUSTOMER_ID");
    for c in body["consents"].as_array().into_iter().flatten() {
        let s = |k: &str| c[k].as_str().unwrap_or("-").to_owned();
        out.push_str(&format!(
            "{:<38} {:<19} {:<22} {:<34} {}\n",
            s("consent_id"),
            s("type"),
            s("status"),
            s("client_id"),
            s("customer_id")
        ));
    }
    out
}

fn table(body: &Value) -> String {
    let mut out = format!("{:<34} {:<10} {:<24} {:<20} {}\n", "CLIENT_ID", "STATUS", "SOFTWARE_ID", "ORG_ID", "NAME");
    for c in body["clients"].as_array().into_iter().flatten() {
        let s = |k: &str| c[k].as_str().unwrap_or("-").to_owned();
        out.push_str(&format!(
            "{:<34} {:<10} {:<24} {:<20} {}\n",
            s("client_id"),
            s("status"),
            s("software_id"),
            s("org_id"),
            s("client_name")
        ));
    }
    out
}
