//! `keyfort demo`: the whole onboarding on one machine with no network. It creates a
//! sandbox directory, starts Keyfort on an embedded database trusting it, onboards a demo
//! TPP over mutual TLS, gets a certificate-bound token with private_key_jwt, reads the
//! registration back, creates a demo bank customer with two accounts, and leaves the server
//! running with the commands to try next.

use std::io::IsTerminal;
use std::path::{Path, PathBuf};

use serde_json::{json, Value};
use tokio::net::TcpListener;

use super::tpp::{self, Exchange, RegisterOptions};
use crate::config::Config;
use crate::sandbox::Sandbox;

pub(super) struct Printer {
    colour: bool,
    steps: usize,
    step: usize,
}

impl Printer {
    pub(super) fn paint(&self, code: &str, text: &str) -> String {
        if self.colour {
            format!("\x1b[{code}m{text}\x1b[0m")
        } else {
            text.to_owned()
        }
    }

    pub(super) fn step(&mut self, title: &str) {
        self.step += 1;
        println!("\n{}", self.paint("1;36", &format!("[{}/{}] {title}", self.step, self.steps)));
    }

    pub(super) fn ok(&self, text: &str) {
        println!("  {} {text}", self.paint("32", "✔"));
    }

    pub(super) fn fail(&self, text: &str) -> anyhow::Error {
        println!("  {} {text}", self.paint("31", "✘"));
        anyhow::anyhow!("{text}")
    }

    pub(super) fn detail(&self, label: &str, value: impl std::fmt::Display) {
        println!("    {} {value}", self.paint("2", &format!("{label}:")));
    }

    pub(super) fn exchange(&self, what: &str, exchange: &Exchange, fields: &[&str]) {
        let pick = |v: &Value| -> Value {
            if fields.is_empty() || !v.is_object() {
                return v.clone();
            }
            json!(fields
                .iter()
                .filter_map(|f| v.get(*f).map(|x| (f.to_string(), shorten(x))))
                .collect::<serde_json::Map<_, _>>())
        };
        if !exchange.request.is_null() {
            self.detail(
                &format!("{what} request"),
                serde_json::to_string(&pick(&exchange.request)).unwrap_or_default(),
            );
        }
        self.detail("response status", exchange.status);
        self.detail("response", serde_json::to_string(&pick(&exchange.response)).unwrap_or_default());
    }
}

/// Long strings (JWTs) shortened for the screen; nothing secret is printed in full.
pub(super) fn shorten(v: &Value) -> Value {
    match v.as_str() {
        Some(s) if s.len() > 48 => json!(format!("{}…({} chars)", &s[..24], s.len())),
        _ => v.clone(),
    }
}

async fn free_port(preferred: u16) -> anyhow::Result<u16> {
    if let Ok(l) = TcpListener::bind(("127.0.0.1", preferred)).await {
        return Ok(l.local_addr()?.port());
    }
    Ok(TcpListener::bind("127.0.0.1:0").await?.local_addr()?.port())
}

/// Configuration for a server that trusts `sandbox` as its directory and CA.
pub fn sandbox_config(sandbox: &Sandbox, port: u16, data_dir: &Path) -> anyhow::Result<Config> {
    Ok(Config::from_toml(&sandbox_config_text(sandbox, port, data_dir)?, "demo configuration", data_dir)?)
}

/// The text of [`sandbox_config`], every path in it absolute. It trusts the sandbox bank's
/// resource-server certificate to validate tokens.
fn sandbox_config_text(sandbox: &Sandbox, port: u16, data_dir: &Path) -> anyhow::Result<String> {
    Ok(format!(
        r#"
[server]
listen = "127.0.0.1:{port}"
public_url = "https://localhost:{port}"
data_dir = "{data}"

[server.tls]
client_ca_file = "{bundle}"
client_auth = "optional"

[oauth.dcr]
ssa_jkws = "{jwks}"
software_environment = "sandbox"

[http_client]
allow_insecure_loopback = true

[resource_server]
client_subject_dns = ["{bank}"]

[log]
level = "warn"
"#,
        data = data_dir.display(),
        bundle = sandbox.ca_bundle().display(),
        jwks = sandbox.directory_jwks_url(),
        bank = sandbox.resource_server()?.subject_dn.replace('\\', "\\\\").replace('"', "\\\""),
    ))
}

/// Runs the demo on its own runtime (for the command line).
pub fn run_blocking(wait: bool) -> anyhow::Result<()> {
    tokio::runtime::Runtime::new()?.block_on(run(wait))
}

pub async fn run(wait: bool) -> anyhow::Result<()> {
    let mut out = Printer { colour: std::io::stdout().is_terminal(), steps: 6 + super::demo_journey::STEPS, step: 0 };
    let dir: PathBuf = std::env::temp_dir().join(format!(
        "keyfort-demo-{}-{}",
        super::now(),
        keyfort_core::secret::random_b64url(4).replace(['-', '_'], "x")
    ));
    println!("{}", out.paint("1", "Keyfort demo: Dynamic Client Registration, offline"));
    println!("Working directory: {}", dir.display());

    out.step("An offline Open Banking directory (sandbox)");
    let keystore = TcpListener::bind("127.0.0.1:0").await?;
    let keystore_url = format!("http://{}", keystore.local_addr()?);
    let mut sandbox = Sandbox::init(&dir.join("sandbox"), &keystore_url)?;
    let software = sandbox.add_software(
        "Demo TPP Ltd",
        None,
        None,
        Some("Demo TPP App"),
        &["AISP".to_owned(), "PISP".to_owned()],
        &["https://tpp.example/callback".to_owned()],
    )?;
    let files = sandbox.files(&software.software_id)?;
    let router = sandbox.keystore_router();
    tokio::spawn(async move {
        let _ = axum::serve(keystore, router).await;
    });
    out.ok("directory CA, SSA signing key and keystore created");
    out.detail("keystore", &keystore_url);
    out.detail("organisation", format!("{} ({})", software.org_name, software.org_id));
    out.detail(
        "software",
        format!("{} ({}), roles {}", software.client_name, software.software_id, software.roles.join(", ")),
    );
    out.detail("transport certificate", files.transport_cert.display());

    out.step("Keyfort, trusting the sandbox, on an embedded SQLite database");
    let port = free_port(9446).await?;
    let data = dir.join("data");
    let config = sandbox_config(&sandbox, port, &data)?;
    // Written out too, so that the commands printed at the end can name it.
    let config_file = dir.join("keyfort.toml");
    std::fs::write(&config_file, sandbox_config_text(&sandbox, port, &data)?)?;
    let app = crate::Application::build(config.clone()).await?;
    let server = format!("https://localhost:{}", app.port());
    let (stop, stopped) = tokio::sync::oneshot::channel::<()>();
    let serving = tokio::spawn(app.run_until(async {
        let _ = stopped.await;
    }));
    let cacert = data.join("dev-tls/cert.pem");
    out.ok(&format!("listening on {server} (mutual TLS optional; registration requires a certificate)"));
    out.detail("database", data.join("keyfort.db").display());

    out.step("The TPP registers: signed request with its SSA, over mutual TLS");
    let options = RegisterOptions::for_sandbox_software(&server, &files, &cacert);
    let (exchange, registration) = tpp::register(&options).await?;
    out.exchange(
        "registration",
        &exchange,
        &[
            "iss",
            "aud",
            "software_id",
            "redirect_uris",
            "scope",
            "token_endpoint_auth_method",
            "software_statement",
            "client_id",
            "client_name",
            "registration_client_uri",
            "registration_access_token",
            "error",
            "error_description",
        ],
    );
    let registration = registration.ok_or_else(|| out.fail(&format!("registration refused: {}", exchange.response)))?;
    let registration_file = dir.join("registration.json");
    tpp::save(&registration, &registration_file)?;
    out.ok(&format!("registered as client {}", registration.client_id));

    out.step("The TPP gets an access token: private_key_jwt, bound to its certificate");
    let exchange = tpp::token(&registration, Some("accounts")).await?;
    out.exchange(
        "token",
        &exchange,
        &[
            "grant_type",
            "client_assertion_type",
            "client_assertion",
            "scope",
            "access_token",
            "token_type",
            "expires_in",
            "error",
            "error_description",
        ],
    );
    let access_token = exchange.response["access_token"]
        .as_str()
        .ok_or_else(|| out.fail(&format!("token refused: {}", exchange.response)))?;
    let claims = tpp::decode_claims(access_token)?;
    let cert_der = crate::pem::read_certificate(&files.transport_cert)?;
    let thumbprint = keyfort_core::jose::b64url_encode(keyfort_core::secret::sha256(&cert_der));
    if claims["cnf"]["x5t#S256"] != json!(thumbprint) {
        return Err(out.fail("the access token is not bound to the transport certificate"));
    }
    out.detail("access token claims", serde_json::to_string(&claims)?);
    out.ok("certificate-bound access token (cnf.x5t#S256 matches the transport certificate)");

    out.step("The TPP reads its registration back (RFC 7592)");
    let exchange = tpp::manage(&registration, reqwest::Method::GET).await?;
    out.exchange(
        "read",
        &exchange,
        &[
            "client_id",
            "client_name",
            "software_id",
            "scope",
            "token_endpoint_auth_method",
            "tls_client_certificate_bound_access_tokens",
        ],
    );
    if exchange.status != 200 {
        return Err(out.fail("reading the registration failed"));
    }
    out.ok("registration read with the registration access token");

    out.step("A bank customer (PSU) with two accounts, for the consent journey");
    let customer = demo_customer(&config).await?;
    out.ok(&format!("customer \"{}\" created with two accounts", customer.username));
    out.detail("username", &customer.username);
    out.detail("password", &customer.password);
    out.detail("customer id (the ID token's sub)", &customer.customer_id);
    for account in &customer.accounts {
        out.detail("account", account);
    }

    let journey = super::demo_journey::DemoJourney {
        sandbox: &sandbox,
        config: &config,
        server: &server,
        cacert: &cacert,
        registration: &registration,
        registration_file: &registration_file,
        customer_id: &customer.customer_id,
        username: &customer.username,
        password: &customer.password,
    };
    let bank = super::demo_journey::walk(&mut out, &journey).await?;

    println!("\n{}", out.paint("1", "Try it yourself against the running server:"));
    let curl = format!(
        "curl --cacert {} --cert {} --key {}",
        cacert.display(),
        files.transport_cert.display(),
        files.transport_key.display()
    );
    println!("  {curl} {server}/.well-known/openid-configuration");
    println!(
        "  {curl} -H 'Authorization: Bearer {}' {}",
        registration.registration_access_token, registration.registration_client_uri
    );
    let exe = std::env::current_exe().map(|p| p.display().to_string()).unwrap_or_else(|_| "keyfort".into());
    println!("  {exe} tpp token --registration {}", registration_file.display());
    println!("  {exe} jwt decode {}", files.ssa.display());
    println!("  {exe} customers list --config {}", config_file.display());
    super::demo_journey::try_it_yourself(&out, &journey, &bank, &exe).await?;
    println!("\nThis demo printed the registration access token and the customer's password so you can try them; real ones are secrets.");

    if wait {
        println!("{}", out.paint("1", "\nThe server keeps running; press Ctrl-C to stop it."));
        tokio::signal::ctrl_c().await?;
    }
    bank.stop().await;
    let _ = stop.send(());
    let _ = serving.await;
    println!("Demo finished.");
    Ok(())
}

/// The demo's customer, as created.
struct DemoCustomer {
    username: String,
    password: String,
    customer_id: String,
    accounts: Vec<String>,
}

/// Adds the demo customer, with a random password and two accounts, to the demo's database.
async fn demo_customer(config: &Config) -> anyhow::Result<DemoCustomer> {
    use crate::customers::manage::{add_account, add_customer, NewAccount};
    let store = crate::storage::open(&config.storage).await?;
    let username = "demo-customer".to_owned();
    let password = keyfort_core::secret::random_b64url(12);
    let added = add_customer(store.as_ref(), &config.customers, &username, &password, false, super::now()).await?;
    let accounts = [
        ("demo-current-account", "Current account", "60304560123456"),
        ("demo-savings-account", "Savings account", "60304587654321"),
    ];
    let mut shown = Vec::new();
    for (id, name, number) in accounts {
        let account = NewAccount {
            account_id: id.to_owned(),
            name: name.to_owned(),
            scheme: "UK.OBIE.SortCodeAccountNumber".to_owned(),
            identification: number.to_owned(),
            secondary_identification: None,
            currency: "GBP".to_owned(),
        };
        add_account(store.as_ref(), &username, &account, super::now()).await?;
        shown.push(format!("{id}: {name}, sort code and account number {number}, GBP"));
    }
    Ok(DemoCustomer { username, password, customer_id: added.customer_id, accounts: shown })
}
