//! `keyfort admin`: administrator accounts, and the operator's view of registrations
//! through the admin API.

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
    let password = match std::env::var("KEYFORT_ADMIN_PASSWORD") {
        Ok(p) if !connection.password_stdin => p,
        _ => super::read_password(&format!("Password for {}: ", connection.user), connection.password_stdin, false)?,
    };
    let auth = format!(
        "Basic {}",
        base64::engine::general_purpose::STANDARD.encode(format!("{}:{password}", connection.user))
    );
    let http = super::https_client(connection.cacert.as_deref(), None)?;
    let base = format!("{}/admin/clients", connection.server.trim_end_matches('/'));
    let request = match &command {
        ClientsCommand::List { query } => http.get(&base).query(query),
        ClientsCommand::Show { client_id } => http.get(format!("{base}/{client_id}")),
        ClientsCommand::Suspend { client_id } => http.post(format!("{base}/{client_id}/suspend")),
        ClientsCommand::Reactivate { client_id } => http.post(format!("{base}/{client_id}/reactivate")),
        ClientsCommand::Delete { client_id } => http.delete(format!("{base}/{client_id}")),
    };
    let runtime = tokio::runtime::Runtime::new()?;
    runtime.block_on(async {
        let response = request.header("authorization", auth).send().await?;
        let status = response.status();
        let text = response.text().await?;
        if !status.is_success() {
            anyhow::bail!("{status}: {text}");
        }
        Ok(match command {
            ClientsCommand::List { .. } => table(&serde_json::from_str(&text)?),
            ClientsCommand::Delete { client_id } => format!("client {client_id} deleted"),
            _ => serde_json::to_string_pretty(&serde_json::from_str::<Value>(&text)?)?,
        })
    })
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
