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

/// An HTTPS client of the admin API, signed in as the connection's administrator.
struct AdminApi {
    http: reqwest::Client,
    auth: String,
    base: String,
}

impl AdminApi {
    fn connect(connection: &Connection) -> anyhow::Result<Self> {
        let password = match std::env::var("KEYFORT_ADMIN_PASSWORD") {
            Ok(p) if !connection.password_stdin => p,
            _ => super::read_password(&format!("Password for {}: ", connection.user), connection.password_stdin, false)
                .map_err(|e| e.context("or set KEYFORT_ADMIN_PASSWORD"))?,
        };
        let auth = format!(
            "Basic {}",
            base64::engine::general_purpose::STANDARD.encode(format!("{}:{password}", connection.user))
        );
        let http = super::https_client(connection.cacert.as_deref(), None)?;
        Ok(Self { http, auth, base: connection.server.trim_end_matches('/').to_owned() })
    }

    /// Sends `request` signed in; the body of a 2xx answer, else an error with the answer.
    async fn send(&self, request: reqwest::RequestBuilder) -> anyhow::Result<String> {
        let built = request.header("authorization", &self.auth).build()?;
        let url = built.url().to_string();
        let response = self.http.execute(built).await.map_err(|e| super::tpp::explain_send_error(e, &url))?;
        let status = response.status();
        let text = response.text().await?;
        if !status.is_success() {
            anyhow::bail!("{status}: {text}");
        }
        Ok(text)
    }
}

/// `keyfort admin audit export`: every matching event, page by page, one JSON object per
/// line; returns what to print (the events, or where they were written).
pub fn audit(connection: &Connection, command: super::args::AuditCommand) -> anyhow::Result<String> {
    use std::io::Write;
    let super::args::AuditCommand::Export {
        since,
        until,
        client_id,
        org_id,
        software_id,
        action,
        outcome,
        format: super::args::AuditFormat::Jsonl,
        out,
    } = command;
    let mut query: Vec<(&str, String)> = vec![("limit", "1000".to_owned())];
    let filters = [
        ("since", since),
        ("until", until),
        ("client_id", client_id),
        ("org_id", org_id),
        ("software_id", software_id),
        ("action", action),
        ("outcome", outcome),
    ];
    query.extend(filters.into_iter().filter_map(|(k, v)| v.map(|v| (k, v))));
    let api = AdminApi::connect(connection)?;
    let mut writer: Box<dyn Write> = match &out {
        Some(path) => Box::new(std::io::BufWriter::new(
            std::fs::File::create(path).map_err(|e| anyhow::anyhow!("{}: {e}", path.display()))?,
        )),
        None => Box::new(std::io::BufWriter::new(std::io::stdout())),
    };
    let runtime = tokio::runtime::Runtime::new()?;
    let mut written = 0usize;
    let mut after: Option<i64> = None;
    loop {
        let mut page_query = query.clone();
        if let Some(id) = after {
            page_query.push(("after", id.to_string()));
        }
        let text = runtime.block_on(api.send(api.http.get(format!("{}/admin/audit", api.base)).query(&page_query)))?;
        let page: Value = serde_json::from_str(&text)?;
        for event in page["events"].as_array().into_iter().flatten() {
            writeln!(writer, "{event}")?;
            written += 1;
        }
        match page["next"].as_i64() {
            Some(next) => after = Some(next),
            None => break,
        }
    }
    writer.flush()?;
    Ok(match out {
        Some(path) => format!("{written} audit events written to {}", path.display()),
        None => String::new(),
    })
}

pub fn clients(connection: &Connection, command: ClientsCommand) -> anyhow::Result<String> {
    let api = AdminApi::connect(connection)?;
    let (http, base) = (&api.http, format!("{}/admin/clients", api.base));
    let request = match &command {
        ClientsCommand::List { query } => http.get(&base).query(query),
        ClientsCommand::Show { client_id } => http.get(format!("{base}/{client_id}")),
        ClientsCommand::Suspend { client_id } => http.post(format!("{base}/{client_id}/suspend")),
        ClientsCommand::Reactivate { client_id } => http.post(format!("{base}/{client_id}/reactivate")),
        ClientsCommand::Delete { client_id } => http.delete(format!("{base}/{client_id}")),
    };
    let runtime = tokio::runtime::Runtime::new()?;
    runtime.block_on(async {
        let text = api.send(request).await?;
        Ok(match command {
            ClientsCommand::List { .. } => table(&serde_json::from_str(&text)?),
            ClientsCommand::Delete { client_id } => format!("client {client_id} deleted"),
            _ => serde_json::to_string_pretty(&serde_json::from_str::<Value>(&text)?)?,
        })
    })
}

/// `keyfort admin consents`: the operator's view of customers' consents.
pub fn consents(connection: &Connection, command: super::args::ConsentsCommand) -> anyhow::Result<String> {
    use super::args::ConsentsCommand as Command;
    let api = AdminApi::connect(connection)?;
    let (http, base) = (&api.http, format!("{}/admin/consents", api.base));
    let request = match &command {
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
    };
    let text = tokio::runtime::Runtime::new()?.block_on(api.send(request))?;
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
