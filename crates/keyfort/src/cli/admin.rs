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

/// Where `keyfort admin clients` goes without --server or --config: the default
/// `[admin] listen` on this machine.
pub const DEFAULT_ADMIN_SERVER: &str = "https://127.0.0.1:9447";

/// How the admin CLI reaches and signs in to the server.
pub struct Connection {
    /// The admin API's base URL; `None`: from `config`, else [`DEFAULT_ADMIN_SERVER`].
    pub server: Option<String>,
    pub config: Option<PathBuf>,
    pub user: String,
    pub password_stdin: bool,
    pub cacert: Option<PathBuf>,
}

/// Where and how to reach the admin API: its URL, the address to connect to when that
/// differs from the URL's host (the listen address of a separate admin listener, reached
/// under the public host name so that the server certificate's name is checked), and
/// the CA file to trust.
#[derive(Debug, PartialEq, Eq)]
pub struct AdminTarget {
    pub url: String,
    pub connect_to: Option<(String, std::net::SocketAddr)>,
    pub cacert: Option<PathBuf>,
}

impl Connection {
    /// The target: --server when given, else what --config says (`[admin] listen`), else
    /// [`DEFAULT_ADMIN_SERVER`].
    pub fn target(&self) -> anyhow::Result<AdminTarget> {
        let configured = match &self.config {
            Some(path) => Some(super::load_config(path)?),
            None => None,
        };
        let mut target = match (&self.server, &configured) {
            (Some(server), _) => AdminTarget { url: server.clone(), connect_to: None, cacert: None },
            (None, Some(config)) => target_from_config(config)?,
            (None, None) => AdminTarget { url: DEFAULT_ADMIN_SERVER.to_owned(), connect_to: None, cacert: None },
        };
        // --cacert wins; without it, a server with no [server.tls] files serves its
        // development certificate, which is then the one to trust.
        target.cacert = self.cacert.clone().or(target.cacert);
        Ok(target)
    }
}

/// The admin API of the server configured in `config`.
pub fn target_from_config(config: &crate::config::Config) -> anyhow::Result<AdminTarget> {
    use crate::config::AdminListen;
    let development_cert = config
        .server
        .cert_file
        .is_none()
        .then(|| config.server.data_dir.join("dev-tls/cert.pem"))
        .filter(|cert| cert.exists());
    let public = url::Url::parse(&config.server.public_url)?;
    let host = public.host_str().unwrap_or("localhost").to_owned();
    Ok(match config.admin.listen {
        AdminListen::Public => {
            AdminTarget { url: config.server.public_url.clone(), connect_to: None, cacert: development_cert }
        }
        AdminListen::Separate(address) => {
            if address.port() == 0 {
                anyhow::bail!(
                    "{}: [admin] listen {address} has port 0 (a free port picked at start-up): give --server with the \
                     address the server logged (\"the admin API is served at ...\")",
                    config.origin
                );
            }
            // An unspecified address listens on every interface: connect over loopback.
            let ip = match address.ip() {
                ip if ip.is_unspecified() && ip.is_ipv4() => std::net::Ipv4Addr::LOCALHOST.into(),
                ip if ip.is_unspecified() => std::net::Ipv6Addr::LOCALHOST.into(),
                ip => ip,
            };
            let connect = std::net::SocketAddr::new(ip, address.port());
            // The certificate is the server's: its name is the public host's, so the URL
            // names that host and the connection goes to the admin address.
            let url = format!(
                "https://{}:{}",
                if host.contains(':') { format!("[{host}]") } else { host.clone() },
                address.port()
            );
            AdminTarget { url, connect_to: Some((host, connect)), cacert: development_cert }
        }
    })
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
        Self {
            server: args.server,
            config: args.config,
            user: args.user,
            password_stdin: args.password_stdin,
            cacert: args.cacert,
        }
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
        let target = connection.target()?;
        let password = match std::env::var("KEYFORT_ADMIN_PASSWORD") {
            Ok(p) if !connection.password_stdin => p,
            _ => super::read_password(&format!("Password for {}: ", connection.user), connection.password_stdin, false)
                .map_err(|e| e.context("or set KEYFORT_ADMIN_PASSWORD"))?,
        };
        let auth = format!(
            "Basic {}",
            base64::engine::general_purpose::STANDARD.encode(format!("{}:{password}", connection.user))
        );
        let http = super::https_client_to(target.cacert.as_deref(), None, target.connect_to.as_ref())?;
        Ok(Self { http, auth, base: target.url.trim_end_matches('/').to_owned() })
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
