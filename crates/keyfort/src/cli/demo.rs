//! `keyfort demo`: the whole onboarding on one machine with no network, told step by step.
//! It creates a sandbox directory, starts Keyfort on an embedded database trusting it, shows
//! the software statement decoded, onboards a demo TPP over mutual TLS with each check
//! Keyfort makes and its outcome, shows a registration Keyfort refuses (another
//! organisation's certificate) with its RFC 7591 error, gets a certificate-bound token with
//! private_key_jwt, reads the registration back, and creates a demo bank customer.
//!
//! The demo is a list of [`Step`]s run in order over one [`Demo`] state, so a later journey
//! (the customer's consent) is added by appending steps. Its directory holds private keys:
//! it is removed at exit unless `--keep`, and then readable by its owner only.

use std::io::IsTerminal;
use std::path::{Path, PathBuf};
use std::sync::Arc;

use keyfort_core::claims::Claims;
use keyfort_core::jose::{CompactJws, JwkSet};
use keyfort_core::registration::{RegistrationRequest, RequestForm};
use keyfort_core::software_statement::SoftwareStatement;
use serde_json::{json, Value};
use tokio::net::TcpListener;

use super::tpp::{self, Exchange, RegisterOptions, Registration};
use crate::config::Config;
use crate::sandbox::{Sandbox, Software, SoftwareFiles};

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

    /// A check Keyfort makes, with its outcome.
    fn check(&self, passed: bool, what: &str, outcome: &str) {
        let mark = if passed { self.paint("32", "✔") } else { self.paint("31", "✘") };
        println!("    {mark} {what}: {outcome}");
    }

    pub(super) fn fail(&self, text: &str) -> anyhow::Error {
        println!("  {} {text}", self.paint("31", "✘"));
        anyhow::anyhow!("{text}")
    }

    pub(super) fn detail(&self, label: &str, value: impl std::fmt::Display) {
        println!("    {} {value}", self.paint("2", &format!("{label}:")));
    }

    /// A JSON document, indented under its label.
    fn document(&self, label: &str, value: &Value) {
        println!("    {}", self.paint("2", &format!("{label}:")));
        for line in serde_json::to_string_pretty(value).unwrap_or_default().lines() {
            println!("      {line}");
        }
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

# The demo's server listens on loopback only; its admin API shares that port, so that a
# second demo (or a server on the default admin port 9447) does not clash with it.
[admin]
listen = "public"

[log]
level = "warn"
"#,
        data = data_dir.display(),
        bundle = sandbox.ca_bundle().display(),
        jwks = sandbox.directory_jwks_url(),
        bank = sandbox.resource_server()?.subject_dn.replace('\\', "\\\\").replace('"', "\\\""),
    ))
}

/// The demo's directory: removed when dropped (also when a step fails) unless kept.
struct DemoDir {
    path: PathBuf,
    keep: bool,
}

impl Drop for DemoDir {
    fn drop(&mut self) {
        if !self.keep {
            let _ = std::fs::remove_dir_all(&self.path);
        }
    }
}

/// Creates the demo's directory, readable by its owner only: it will hold private keys.
fn create_private_dir(path: &Path) -> anyhow::Result<()> {
    let mut builder = std::fs::DirBuilder::new();
    #[cfg(unix)]
    std::os::unix::fs::DirBuilderExt::mode(&mut builder, 0o700);
    builder.recursive(true).create(path)?;
    Ok(())
}

/// Everything the steps share. Fields are filled in by the step that makes them.
struct Demo {
    out: Printer,
    dir: DemoDir,
    wait: bool,
    sandbox: Option<Sandbox>,
    software: Option<Software>,
    files: Option<SoftwareFiles>,
    /// Another organisation's transport certificate, for the refused registration.
    other_files: Option<SoftwareFiles>,
    config: Option<Config>,
    config_file: PathBuf,
    server: String,
    cacert: PathBuf,
    stop: Option<tokio::sync::oneshot::Sender<()>>,
    serving: Option<tokio::task::JoinHandle<()>>,
    registration: Option<Registration>,
    registration_file: PathBuf,
    customer: Option<DemoCustomer>,
    /// The sandbox bank the customer's journey reads accounts from.
    bank: Option<super::demo_journey::RunningBank>,
}

/// The demo's steps, in order. A step is a variant here, a title and an arm in
/// [`Step::run`]; the consent journey is appended the same way.
#[derive(Debug, Clone, Copy)]
enum Step {
    Directory,
    Server,
    Statement,
    Register,
    Refusal,
    Token,
    Read,
    Customer,
}

const STEPS: &[Step] = &[
    Step::Directory,
    Step::Server,
    Step::Statement,
    Step::Register,
    Step::Refusal,
    Step::Token,
    Step::Read,
    Step::Customer,
];

impl Step {
    fn title(self) -> &'static str {
        match self {
            Step::Directory => "An offline Open Banking directory (sandbox)",
            Step::Server => "Keyfort, trusting the sandbox, on an embedded SQLite database",
            Step::Statement => "The TPP's software statement (SSA), decoded",
            Step::Register => "The TPP registers: signed request with its SSA, over mutual TLS",
            Step::Refusal => "A registration Keyfort refuses: the same SSA with another organisation's certificate",
            Step::Token => "The TPP gets an access token: private_key_jwt, bound to its certificate",
            Step::Read => "The TPP reads its registration back (RFC 7592)",
            Step::Customer => "A bank customer (PSU) with two accounts, for the consent journey",
        }
    }

    async fn run(self, demo: &mut Demo) -> anyhow::Result<()> {
        match self {
            Step::Directory => demo.directory().await,
            Step::Server => demo.start_server().await,
            Step::Statement => demo.statement(),
            Step::Register => demo.register().await,
            Step::Refusal => demo.refusal().await,
            Step::Token => demo.token().await,
            Step::Read => demo.read().await,
            Step::Customer => demo.customer().await,
        }
    }
}

/// Runs the demo on its own runtime (for the command line).
pub fn run_blocking(wait: bool, keep: bool) -> anyhow::Result<()> {
    tokio::runtime::Runtime::new()?.block_on(run(wait, keep))
}

pub async fn run(wait: bool, keep: bool) -> anyhow::Result<()> {
    let path: PathBuf = std::env::temp_dir().join(format!(
        "keyfort-demo-{}-{}",
        super::now(),
        keyfort_core::secret::random_b64url(4).replace(['-', '_'], "x")
    ));
    create_private_dir(&path)?;
    let mut demo = Demo {
        out: Printer {
            colour: std::io::stdout().is_terminal(),
            steps: STEPS.len() + super::demo_journey::STEPS,
            step: 0,
        },
        config_file: path.join("keyfort.toml"),
        registration_file: path.join("registration.json"),
        dir: DemoDir { path, keep },
        wait,
        sandbox: None,
        software: None,
        files: None,
        other_files: None,
        config: None,
        server: String::new(),
        cacert: PathBuf::new(),
        stop: None,
        serving: None,
        registration: None,
        customer: None,
        bank: None,
    };
    println!("{}", demo.out.paint("1", "Keyfort demo: Dynamic Client Registration, offline"));
    println!("Working directory: {}", demo.dir.path.display());
    let mut outcome = Ok(());
    for step in STEPS {
        demo.out.step(step.title());
        outcome = step.run(&mut demo).await;
        if outcome.is_err() {
            break;
        }
    }
    if outcome.is_ok() {
        outcome = demo.journey().await;
    }
    if outcome.is_ok() {
        outcome = demo.finish().await;
    }
    demo.stop_server().await;
    if keep {
        println!(
            "\nThe demo's files (sandbox keys, database, keyfort.toml) are kept in {} (readable by you only); \
             remove the directory when done.",
            demo.dir.path.display()
        );
    } else {
        println!("\nThe demo's temporary keys and database were removed (keep them with --keep).");
    }
    outcome
}

impl Demo {
    fn sandbox(&self) -> anyhow::Result<&Sandbox> {
        self.sandbox.as_ref().ok_or_else(|| anyhow::anyhow!("the sandbox step has not run"))
    }

    fn files(&self) -> anyhow::Result<&SoftwareFiles> {
        self.files.as_ref().ok_or_else(|| anyhow::anyhow!("the sandbox step has not run"))
    }

    fn config(&self) -> anyhow::Result<&Config> {
        self.config.as_ref().ok_or_else(|| anyhow::anyhow!("the server step has not run"))
    }

    async fn directory(&mut self) -> anyhow::Result<()> {
        let keystore = TcpListener::bind("127.0.0.1:0").await?;
        let keystore_url = format!("http://{}", keystore.local_addr()?);
        let mut sandbox = Sandbox::init(&self.dir.path.join("sandbox"), &keystore_url)?;
        let software = sandbox.add_software(
            "Demo TPP Ltd",
            None,
            None,
            Some("Demo TPP App"),
            &["AISP".to_owned(), "PISP".to_owned()],
            &["https://tpp.example/callback".to_owned()],
        )?;
        let other = sandbox.add_software(
            "Other TPP Ltd",
            None,
            None,
            Some("Other TPP App"),
            &["AISP".to_owned()],
            &["https://other.example/callback".to_owned()],
        )?;
        let router = sandbox.keystore_router();
        tokio::spawn(async move {
            let _ = axum::serve(keystore, router).await;
        });
        let files = sandbox.files(&software.software_id)?;
        self.out.ok("directory CA, SSA signing key and keystore created");
        self.out.detail("keystore", &keystore_url);
        self.out.detail("organisation", format!("{} ({})", software.org_name, software.org_id));
        self.out.detail(
            "software",
            format!("{} ({}), roles {}", software.client_name, software.software_id, software.roles.join(", ")),
        );
        self.out.detail("transport certificate", files.transport_cert.display());
        self.out.detail("another organisation", format!("{} ({})", other.org_name, other.org_id));
        self.other_files = Some(sandbox.files(&other.software_id)?);
        self.files = Some(files);
        self.software = Some(software);
        self.sandbox = Some(sandbox);
        Ok(())
    }

    async fn start_server(&mut self) -> anyhow::Result<()> {
        let data = self.dir.path.join("data");
        let sandbox = self.sandbox()?;
        // The port is in the issuer, so it is chosen before the server binds it; another
        // process (another demo) may take it in between, and then the next one is tried.
        let mut attempt = 0;
        let (app, config, port) = loop {
            let port = free_port(if attempt == 0 { 9446 } else { 0 }).await?;
            let config = sandbox_config(sandbox, port, &data)?;
            match crate::Application::build(config.clone()).await {
                Ok(app) => break (app, config, port),
                Err(e) if attempt < 5 && e.to_string().contains("cannot bind") => attempt += 1,
                Err(e) => return Err(e),
            }
        };
        // Written out too, so that the commands printed at the end can name it.
        std::fs::write(&self.config_file, sandbox_config_text(sandbox, port, &data)?)?;
        self.server = format!("https://localhost:{}", app.port());
        let (stop, stopped) = tokio::sync::oneshot::channel::<()>();
        self.serving = Some(tokio::spawn(app.run_until(async {
            let _ = stopped.await;
        })));
        self.stop = Some(stop);
        self.cacert = data.join("dev-tls/cert.pem");
        self.out
            .ok(&format!("listening on {} (mutual TLS optional; registration requires a certificate)", self.server));
        self.out.detail("database", data.join("keyfort.db").display());
        self.config = Some(config);
        Ok(())
    }

    fn statement(&mut self) -> anyhow::Result<()> {
        let ssa = std::fs::read_to_string(&self.files()?.ssa)?;
        let decoded = tpp::decode_jwt(&ssa)?;
        let (header, claims) = decoded.split_once("\n\n").unwrap_or((&decoded, ""));
        self.out.detail("SSA", shorten(&json!(ssa.trim())));
        self.out.document("header", &serde_json::from_str(header)?);
        self.out.document("claims", &serde_json::from_str(claims)?);
        self.out.ok("signed by the directory (OpenBanking Ltd); the TPP sends it inside its registration request");
        Ok(())
    }

    /// The checks Keyfort makes on this registration, made here with the same code and the
    /// same configuration, each printed with its outcome; the server's answer follows.
    fn explain_checks(&self, claims: &Value) -> anyhow::Result<()> {
        let config = self.config()?;
        let files = self.files()?;
        let sandbox = self.sandbox()?;
        let ssa_text = std::fs::read_to_string(&files.ssa)?;
        let now = super::now();
        let dcr = &config.dcr;

        let directory_keys = JwkSet::from_json(&std::fs::read(sandbox.dir.join("keystore/openbanking.jwks"))?)
            .map_err(|e| anyhow::anyhow!("the directory JWKS: {e}"))?;
        let ssa_jws = CompactJws::parse(ssa_text.trim()).map_err(|e| anyhow::anyhow!("the SSA {e}"))?;
        let verified = ssa_jws.verify(&directory_keys, &dcr.ssa_signing_algs, true);
        let kid = ssa_jws.header().kid.clone().unwrap_or_default();
        self.out.check(
            verified.is_ok(),
            "SSA signature",
            &format!("verified with the directory key \"{kid}\" of {}", sandbox.directory_jwks_url()),
        );
        let ssa_claims = verified.map_err(|e| anyhow::anyhow!("the SSA {e}"))?;
        let ssa = SoftwareStatement::from_verified_claims(&ssa_claims, &dcr.ssa_rules, now);
        self.out.check(
            ssa.is_ok(),
            "SSA issuer, dates and status",
            &match &ssa {
                Ok(_) => format!(
                    "iss \"{}\" is in ssa_issuers, issued in the past, software_environment \"sandbox\" as configured, organisation and software Active",
                    ssa_claims.string("iss").ok().flatten().unwrap_or_default()
                ),
                Err(e) => e.description.clone(),
            },
        );
        let ssa = ssa?;

        let software_keys = JwkSet::from_json(&std::fs::read(
            sandbox.dir.join("keystore").join(&ssa.org_id).join(format!("{}.jwks", ssa.software_id)),
        )?)
        .map_err(|e| anyhow::anyhow!("the software JWKS: {e}"))?;
        let request_jwt = crate::signing::load_pem_key(&files.signing_key, None, &files.kid)?.sign_jwt(claims, "JWT");
        let request_jws = CompactJws::parse(&request_jwt).map_err(|e| anyhow::anyhow!("the request {e}"))?;
        let signed = request_jws.verify(&software_keys, &dcr.policy.allowed_algs, true);
        self.out.check(
            signed.is_ok(),
            "request signature",
            &format!("verified with the software key \"{}\" of the SSA's software_jwks_endpoint", files.kid),
        );

        let trust = crate::transport::TransportTrust::from_config(
            config,
            Arc::new(crate::transport::CrlStore::new(
                vec![],
                config.mtls.revocation_unavailable,
                Arc::new(crate::metrics::Metrics::default()),
            )),
        )?
        .ok_or_else(|| anyhow::anyhow!("the demo configuration trusts no CA"))?;
        let chain = crate::pem::read_certificates(&files.transport_cert)?;
        let identity = trust.validate(&chain, now);
        self.out.check(
            identity.is_ok(),
            "transport certificate",
            &match &identity {
                Ok(id) => format!(
                    "chains to the sandbox CA (client_ca_file), valid now, for client authentication: {}",
                    id.subject
                ),
                Err(e) => e.0.clone(),
            },
        );
        let identity = identity.map_err(|e| anyhow::anyhow!(e.0))?;
        let binding = identity.check_binding(&ssa, dcr.binding);
        self.out.check(
            binding.is_ok(),
            "certificate binding",
            &match &binding {
                Ok(()) => format!(
                    "the certificate's OU is the SSA's org_id {} and its CN the SSA's software_id {}",
                    ssa.org_id, ssa.software_id
                ),
                Err(e) => e.0.clone(),
            },
        );

        let request = RegistrationRequest::from_claims(
            &Claims::from_json_object(claims.to_string().as_bytes()).map_err(anyhow::Error::msg)?,
        )?;
        let allowed = dcr.policy.scopes_for_roles(&ssa.software_roles);
        self.out.check(
            true,
            "roles to scopes",
            &format!(
                "software_roles {} allow the scopes {}; the request asks for \"{}\"",
                ssa.software_roles.join(", "),
                allowed.join(" "),
                claims["scope"].as_str().unwrap_or_default()
            ),
        );
        let approved = dcr.policy.evaluate(&request, Some(&ssa), RequestForm::SignedJwt, now);
        self.out.check(
            approved.is_ok(),
            "FAPI and registration rules",
            &match &approved {
                Ok(a) => format!(
                    "aud is this bank, jti fresh, redirect URIs https and in the SSA, {} with {}, certificate-bound tokens, signed request objects",
                    a.metadata.token_endpoint_auth_method,
                    claims["token_endpoint_auth_signing_alg"].as_str().unwrap_or_default()
                ),
                Err(e) => format!("{}: {}", e.code.as_str(), e.description),
            },
        );
        Ok(())
    }

    async fn register(&mut self) -> anyhow::Result<()> {
        let options = RegisterOptions::for_sandbox_software(&self.server, self.files()?, &self.cacert);
        let ssa = std::fs::read_to_string(&options.ssa)?;
        let claims = tpp::request_claims(&options, &self.server, ssa.trim())?;
        println!("    Keyfort's checks, in the order it makes them:");
        self.explain_checks(&claims)?;
        let (exchange, registration) = tpp::register(&options).await?;
        self.out.exchange(
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
        let registration =
            registration.ok_or_else(|| self.out.fail(&format!("registration refused: {}", exchange.response)))?;
        tpp::save(&registration, &self.registration_file)?;
        self.out.ok(&format!("registered as client {} (HTTP 201)", registration.client_id));
        self.registration = Some(registration);
        Ok(())
    }

    async fn refusal(&mut self) -> anyhow::Result<()> {
        let other = self.other_files.as_ref().ok_or_else(|| anyhow::anyhow!("the sandbox step has not run"))?;
        let mut options = RegisterOptions::for_sandbox_software(&self.server, self.files()?, &self.cacert);
        options.cert = other.transport_cert.clone();
        options.key = other.transport_key.clone();
        self.out.detail("transport certificate", options.cert.display());
        let (exchange, registration) = tpp::register(&options).await?;
        self.out.detail("response status", exchange.status);
        self.out.document("response (RFC 7591 error)", &exchange.response);
        if registration.is_some() || exchange.status != 403 {
            return Err(self.out.fail("Keyfort should have refused a certificate of another organisation"));
        }
        self.out.ok(&format!(
            "refused with {} {}: a stolen or borrowed SSA is useless without its organisation's certificate",
            exchange.status,
            exchange.response["error"].as_str().unwrap_or_default()
        ));
        Ok(())
    }

    async fn token(&mut self) -> anyhow::Result<()> {
        let registration = self.registration.as_ref().ok_or_else(|| anyhow::anyhow!("no registration"))?;
        let exchange = tpp::token(registration, Some("accounts")).await?;
        self.out.exchange(
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
            .ok_or_else(|| self.out.fail(&format!("token refused: {}", exchange.response)))?;
        let claims = tpp::decode_claims(access_token)?;
        let cert_der = crate::pem::read_certificate(&self.files()?.transport_cert)?;
        let thumbprint = keyfort_core::jose::b64url_encode(keyfort_core::secret::sha256(&cert_der));
        if claims["cnf"]["x5t#S256"] != json!(thumbprint) {
            return Err(self.out.fail("the access token is not bound to the transport certificate"));
        }
        self.out.detail("access token claims", serde_json::to_string(&claims)?);
        self.out.ok("certificate-bound access token (cnf.x5t#S256 matches the transport certificate)");
        Ok(())
    }

    async fn read(&mut self) -> anyhow::Result<()> {
        let registration = self.registration.as_ref().ok_or_else(|| anyhow::anyhow!("no registration"))?;
        let exchange = tpp::manage(registration, reqwest::Method::GET).await?;
        self.out.exchange(
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
            return Err(self.out.fail("reading the registration failed"));
        }
        self.out.ok("registration read with the registration access token");
        Ok(())
    }

    async fn customer(&mut self) -> anyhow::Result<()> {
        let customer = demo_customer(self.config()?).await?;
        self.out.ok(&format!("customer \"{}\" created with two accounts", customer.username));
        self.out.detail("username", &customer.username);
        self.out.detail("password", &customer.password);
        self.out.detail("customer id (the ID token's sub)", &customer.customer_id);
        for account in &customer.accounts {
            self.out.detail("account", account);
        }
        self.customer = Some(customer);
        Ok(())
    }

    /// What the customer's journey needs from the steps before it.
    fn journey_parts(&self) -> anyhow::Result<super::demo_journey::DemoJourney<'_>> {
        let customer = self.customer.as_ref().ok_or_else(|| anyhow::anyhow!("the customer step has not run"))?;
        Ok(super::demo_journey::DemoJourney {
            sandbox: self.sandbox()?,
            config: self.config()?,
            server: &self.server,
            cacert: &self.cacert,
            registration: self.registration.as_ref().ok_or_else(|| anyhow::anyhow!("no registration"))?,
            registration_file: &self.registration_file,
            customer_id: &customer.customer_id,
            username: &customer.username,
            password: &customer.password,
        })
    }

    /// The customer's journey (its own numbered steps): consent, authorization, tokens,
    /// accounts from the sandbox bank, revocation.
    async fn journey(&mut self) -> anyhow::Result<()> {
        let mut out = Printer { colour: self.out.colour, steps: self.out.steps, step: self.out.step };
        let bank = super::demo_journey::walk(&mut out, &self.journey_parts()?).await?;
        self.out.step = out.step;
        self.bank = Some(bank);
        Ok(())
    }

    /// With a server left running, the commands to try against it, then waits for Ctrl-C.
    /// Without (`--no-wait`), no command is offered: the server is about to stop.
    async fn finish(&mut self) -> anyhow::Result<()> {
        if !self.wait {
            println!(
                "\nThe demo printed the registration access token and the customer's password; real ones are secrets."
            );
            return Ok(());
        }
        let files = self.files()?;
        let registration = self.registration.as_ref().ok_or_else(|| anyhow::anyhow!("no registration"))?;
        println!("\n{}", self.out.paint("1", "Try it yourself against the running server:"));
        let curl = format!(
            "curl --cacert {} --cert {} --key {}",
            self.cacert.display(),
            files.transport_cert.display(),
            files.transport_key.display()
        );
        println!("  {curl} {}/.well-known/openid-configuration", self.server);
        println!(
            "  {curl} -H 'Authorization: Bearer {}' {}",
            registration.registration_access_token, registration.registration_client_uri
        );
        let exe = std::env::current_exe().map(|p| p.display().to_string()).unwrap_or_else(|_| "keyfort".into());
        println!("  {exe} tpp token --registration {}", self.registration_file.display());
        println!("  {exe} jwt decode {}", files.ssa.display());
        println!("  {exe} customers list --config {}", self.config_file.display());
        if let Some(bank) = &self.bank {
            super::demo_journey::try_it_yourself(&self.out, &self.journey_parts()?, bank, &exe).await?;
        }
        println!("\nThis demo printed the registration access token and the customer's password so you can try them; real ones are secrets.");
        println!("{}", self.out.paint("1", "\nThe server keeps running; press Ctrl-C to stop it."));
        tokio::signal::ctrl_c().await?;
        Ok(())
    }

    async fn stop_server(&mut self) {
        if let Some(bank) = self.bank.take() {
            bank.stop().await;
        }
        if let Some(stop) = self.stop.take() {
            let _ = stop.send(());
        }
        if let Some(serving) = self.serving.take() {
            let _ = serving.await;
        }
        println!("Demo finished.");
    }
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
