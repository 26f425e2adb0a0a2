use std::path::PathBuf;
use std::process::ExitCode;

use clap::{Args, Parser, Subcommand};
use keyfort::cli;
use keyfort::config::Config;
use keyfort::Application;

/// Keyfort: an Open Banking identity server (Dynamic Client Registration with software
/// statements, FAPI client-credentials tokens, registration management).
#[derive(Parser)]
#[command(name = "keyfort", version, about)]
struct Cli {
    #[command(subcommand)]
    command: Command,
}

#[derive(Subcommand)]
enum Command {
    /// Serve HTTPS with the given configuration.
    Serve {
        #[arg(long, short, value_name = "FILE")]
        config: PathBuf,
        /// Development only: run this sandbox directory's keystore inside the server and
        /// trust it as the Open Banking directory (and its CA for transport certificates).
        #[arg(long, value_name = "DIR", requires = "dev")]
        sandbox: Option<PathBuf>,
        /// Allow development-only options such as --sandbox.
        #[arg(long)]
        dev: bool,
    },
    /// Run the whole onboarding offline: sandbox directory, server, a TPP registering over
    /// mutual TLS, a certificate-bound token, reading the registration back.
    Demo {
        /// Stop after the demo instead of keeping the server running until Ctrl-C.
        #[arg(long)]
        no_wait: bool,
    },
    /// An offline stand-in for the Open Banking directory.
    Sandbox {
        #[command(subcommand)]
        command: SandboxCommand,
    },
    /// The TPP's side: register, get tokens, read, update and delete the registration.
    Tpp {
        #[command(subcommand)]
        command: TppCommand,
    },
    /// JWT tools.
    Jwt {
        #[command(subcommand)]
        command: JwtCommand,
    },
    /// Check a configuration file and exit: 0 when it is valid.
    CheckConfig {
        #[arg(long, short, value_name = "FILE")]
        config: PathBuf,
    },
    /// Administrators, and the operator's view of registrations.
    Admin {
        #[command(subcommand)]
        command: AdminCommand,
    },
    /// Manage the access token signing keys (stored in the configured database).
    Keys {
        #[command(subcommand)]
        command: KeysCommand,
    },
}

#[derive(Subcommand)]
enum SandboxCommand {
    /// Create a sandbox directory: directory CA, SSA signing key, keystore.
    Init {
        dir: PathBuf,
        /// Where `sandbox serve` will publish the keystore; SSAs name URLs under it.
        #[arg(long, default_value = keyfort::sandbox::DEFAULT_KEYSTORE_URL)]
        keystore_url: String,
    },
    /// Add an organisation's software: signing key, transport certificates (legacy OB and
    /// OBWAC profiles) and a software statement.
    AddSoftware {
        dir: PathBuf,
        /// Organisation name (an existing one is reused).
        #[arg(long)]
        org: String,
        #[arg(long)]
        org_id: Option<String>,
        #[arg(long)]
        software_id: Option<String>,
        #[arg(long)]
        client_name: Option<String>,
        /// Comma-separated roles: AISP, PISP, CBPII.
        #[arg(long, value_delimiter = ',', required = true)]
        roles: Vec<String>,
        /// A redirect URI (repeat for several).
        #[arg(long = "redirect-uri", required = true)]
        redirect_uris: Vec<String>,
    },
    /// Publish the keystore (JWKS): over HTTP on a loopback address, or over HTTPS with a
    /// certificate from the sandbox CA (--https).
    Serve {
        dir: PathBuf,
        /// Address to listen on. Default: the host and port of the keystore URL. Plain HTTP
        /// only on loopback.
        #[arg(long)]
        listen: Option<String>,
        /// Serve HTTPS (trust ca/bundle.pem); needed for any non-loopback address.
        #[arg(long)]
        https: bool,
    },
}

#[derive(Args, Clone)]
struct TppFiles {
    /// The registration file written by `tpp register`.
    #[arg(long, value_name = "FILE", default_value = "registration.json")]
    registration: PathBuf,
}

#[derive(Subcommand)]
enum TppCommand {
    /// Build, sign and send a registration request from a software statement.
    Register {
        #[arg(long)]
        server: String,
        #[arg(long, value_name = "FILE")]
        ssa: PathBuf,
        #[arg(long, value_name = "PEM")]
        signing_key: PathBuf,
        #[arg(long)]
        kid: String,
        /// Transport certificate (PEM chain).
        #[arg(long, value_name = "PEM")]
        cert: PathBuf,
        /// Transport key (PEM).
        #[arg(long, value_name = "PEM")]
        key: PathBuf,
        /// Extra CA (PEM) to trust for the server.
        #[arg(long, value_name = "PEM")]
        cacert: Option<PathBuf>,
        /// Send JSON (as the WSO2 sample) instead of a signed JWT.
        #[arg(long)]
        json: bool,
        #[arg(long, default_value = "private_key_jwt")]
        auth_method: String,
        /// Where to save the registration.
        #[arg(long, value_name = "FILE", default_value = "registration.json")]
        out: PathBuf,
    },
    /// Get a client-credentials access token.
    Token {
        #[command(flatten)]
        files: TppFiles,
        #[arg(long)]
        scope: Option<String>,
    },
    /// Read the registration.
    Get {
        #[command(flatten)]
        files: TppFiles,
    },
    /// Send the registration again (fresh request) as an update.
    Update {
        #[command(flatten)]
        files: TppFiles,
    },
    /// Delete the registration.
    Delete {
        #[command(flatten)]
        files: TppFiles,
    },
}

#[derive(Subcommand)]
enum JwtCommand {
    /// Print a JWT's header and claims (not verified). FILE or - for standard input.
    Decode { file: String },
}

#[derive(Subcommand)]
enum AdminCommand {
    /// Add an administrator. The password is asked for twice at a prompt, or read from the
    /// first line of standard input with --password-stdin; never from an argument.
    AddUser {
        #[arg(long, short, value_name = "FILE")]
        config: PathBuf,
        /// The administrator's name.
        username: String,
        /// Read the password from the first line of standard input.
        #[arg(long)]
        password_stdin: bool,
    },
    /// List, show, suspend, reactivate or delete registrations through the admin API.
    Clients {
        #[command(flatten)]
        connection: AdminConnection,
        #[command(subcommand)]
        command: ClientsCommand,
    },
}

#[derive(Args)]
struct AdminConnection {
    /// The server's base URL, e.g. https://localhost:9446.
    #[arg(long, global = true, default_value = "https://localhost:9446")]
    server: String,
    /// The administrator's name. The password comes from KEYFORT_ADMIN_PASSWORD, standard
    /// input (--password-stdin) or a prompt.
    #[arg(long, global = true, default_value = "admin")]
    user: String,
    #[arg(long, global = true)]
    password_stdin: bool,
    /// Extra CA certificate (PEM) to trust for the server, e.g. data/dev-tls/cert.pem.
    #[arg(long, global = true, value_name = "PEM")]
    cacert: Option<PathBuf>,
}

#[derive(Subcommand)]
enum ClientsCommand {
    /// List registrations, newest first.
    List {
        #[arg(long)]
        org_id: Option<String>,
        #[arg(long)]
        software_id: Option<String>,
        /// active, suspended or deleted.
        #[arg(long)]
        status: Option<String>,
        /// Only registrations after this Unix time.
        #[arg(long)]
        registered_after: Option<i64>,
        /// Only registrations before this Unix time.
        #[arg(long)]
        registered_before: Option<i64>,
        #[arg(long, default_value_t = 100)]
        limit: i64,
    },
    /// Show one registration with its audit trail.
    Show { client_id: String },
    /// Suspend a client: no tokens, no self-management, until reactivated.
    Suspend { client_id: String },
    /// Reactivate a suspended client.
    Reactivate { client_id: String },
    /// Delete a registration.
    Delete { client_id: String },
}

#[derive(Subcommand)]
enum KeysCommand {
    /// Create the next signing key: published in /oauth2/jwks at once, signing after
    /// --publish-ahead seconds (default [oauth.token] key_publish_ahead_seconds). The
    /// previous key stays published until the tokens it signed have expired. Running
    /// servers pick the new key up within 30 seconds.
    Rotate {
        #[arg(long, short, value_name = "FILE")]
        config: PathBuf,
        #[arg(long, value_name = "SECONDS")]
        publish_ahead: Option<i64>,
    },
}

/// Prints the outcome of a one-off command and turns it into an exit code.
fn report(result: anyhow::Result<String>) -> ExitCode {
    match result {
        Ok(message) => {
            if !message.is_empty() {
                println!("{}", message.trim_end());
            }
            ExitCode::SUCCESS
        }
        Err(e) => {
            eprintln!("error: {e:#}");
            ExitCode::FAILURE
        }
    }
}

fn main() -> ExitCode {
    match Cli::parse().command {
        Command::CheckConfig { config } => match cli::check_config(&config) {
            Ok(_) => {
                println!("{}: OK", config.display());
                ExitCode::SUCCESS
            }
            Err(e) => {
                eprintln!("{e}");
                ExitCode::from(2)
            }
        },
        Command::Admin { command: AdminCommand::AddUser { config, username, password_stdin } } => report(
            cli::admin::add_user(&config, &username, password_stdin)
                .map(|()| format!("administrator \"{username}\" added")),
        ),
        Command::Admin { command: AdminCommand::Clients { connection, command } } => {
            let connection = cli::admin::Connection {
                server: connection.server,
                user: connection.user,
                password_stdin: connection.password_stdin,
                cacert: connection.cacert,
            };
            let command = match command {
                ClientsCommand::List { org_id, software_id, status, registered_after, registered_before, limit } => {
                    let mut query = vec![("limit".to_owned(), limit.to_string())];
                    let optional = [
                        ("org_id", org_id),
                        ("software_id", software_id),
                        ("status", status),
                        ("registered_after", registered_after.map(|t| t.to_string())),
                        ("registered_before", registered_before.map(|t| t.to_string())),
                    ];
                    query.extend(optional.into_iter().filter_map(|(k, v)| v.map(|v| (k.to_owned(), v))));
                    cli::admin::ClientsCommand::List { query }
                }
                ClientsCommand::Show { client_id } => cli::admin::ClientsCommand::Show { client_id },
                ClientsCommand::Suspend { client_id } => cli::admin::ClientsCommand::Suspend { client_id },
                ClientsCommand::Reactivate { client_id } => cli::admin::ClientsCommand::Reactivate { client_id },
                ClientsCommand::Delete { client_id } => cli::admin::ClientsCommand::Delete { client_id },
            };
            report(cli::admin::clients(&connection, command))
        }
        Command::Keys { command: KeysCommand::Rotate { config, publish_ahead } } => report(
            cli::keys::rotate(&config, publish_ahead)
                .map(|kid| format!("new signing key {kid} published; it signs from its activation time")),
        ),
        Command::Serve { config, sandbox, dev: _ } => {
            let config = match Config::load(&config) {
                Ok(c) => c,
                Err(e) => {
                    eprintln!("{e}");
                    return ExitCode::from(2);
                }
            };
            serve(config, sandbox)
        }
        Command::Demo { no_wait } => {
            let runtime = match tokio::runtime::Runtime::new() {
                Ok(rt) => rt,
                Err(e) => return report(Err(e.into())),
            };
            report(runtime.block_on(cli::demo::run(!no_wait)).map(|()| String::new()))
        }
        Command::Sandbox { command } => report(sandbox(command)),
        Command::Tpp { command } => report(tpp(command)),
        Command::Jwt { command: JwtCommand::Decode { file } } => report((|| {
            let text =
                if file == "-" { std::io::read_to_string(std::io::stdin())? } else { std::fs::read_to_string(&file)? };
            cli::tpp::decode_jwt(&text)
        })()),
    }
}

fn sandbox(command: SandboxCommand) -> anyhow::Result<String> {
    use keyfort::sandbox::Sandbox;
    match command {
        SandboxCommand::Init { dir, keystore_url } => {
            let sandbox = Sandbox::init(&dir, &keystore_url)?;
            Ok(format!(
                "sandbox created in {}\n  directory JWKS (for [oauth.dcr] ssa_jkws): {}\n  CA bundle (for [server.tls] client_ca_file): {}",
                dir.display(),
                sandbox.directory_jwks_url(),
                sandbox.ca_bundle().display()
            ))
        }
        SandboxCommand::AddSoftware { dir, org, org_id, software_id, client_name, roles, redirect_uris } => {
            let mut sandbox = Sandbox::open(&dir)?;
            let s = sandbox.add_software(
                &org,
                org_id.as_deref(),
                software_id.as_deref(),
                client_name.as_deref(),
                &roles,
                &redirect_uris,
            )?;
            let f = sandbox.files(&s.software_id)?;
            Ok(format!(
                "software {} of {} ({})\n  SSA: {}\n  signing key: {} (kid {})\n  transport certificate (OB legacy): {} / {}\n  transport certificate (OBWAC): {} / {}",
                s.software_id,
                s.org_name,
                s.org_id,
                f.ssa.display(),
                f.signing_key.display(),
                f.kid,
                f.transport_cert.display(),
                f.transport_key.display(),
                f.obwac_cert.display(),
                f.obwac_key.display()
            ))
        }
        SandboxCommand::Serve { dir, listen, https } => {
            let sandbox = Sandbox::open(&dir)?;
            let default = sandbox.manifest.keystore_url.split("://").nth(1).unwrap_or_default().to_owned();
            let listen = listen.unwrap_or(default);
            let addr: std::net::SocketAddr =
                listen.parse().map_err(|_| anyhow::anyhow!("--listen {listen} is not an address:port"))?;
            if !https && !addr.ip().is_loopback() {
                anyhow::bail!("plain HTTP is served only on a loopback address; use --https for {addr}");
            }
            let runtime = tokio::runtime::Runtime::new()?;
            runtime.block_on(async {
                let listener = tokio::net::TcpListener::bind(addr).await?;
                if https {
                    println!(
                        "sandbox keystore at https://{addr} (trust {}; Ctrl-C to stop)",
                        sandbox.ca_bundle().display()
                    );
                    keyfort::http::serve(
                        listener,
                        sandbox.keystore_tls()?,
                        sandbox.keystore_router(),
                        shutdown_signal(),
                    )
                    .await;
                } else {
                    println!("sandbox keystore at http://{addr} (Ctrl-C to stop)");
                    axum::serve(listener, sandbox.keystore_router()).with_graceful_shutdown(shutdown_signal()).await?;
                }
                Ok(String::new())
            })
        }
    }
}

fn tpp(command: TppCommand) -> anyhow::Result<String> {
    use cli::tpp;
    let runtime = tokio::runtime::Runtime::new()?;
    let show = |what: &str, e: tpp::Exchange| -> anyhow::Result<String> {
        let body = serde_json::to_string_pretty(&e.response)?;
        if (200..300).contains(&e.status) {
            Ok(format!("{what}: HTTP {}\n{body}", e.status))
        } else {
            anyhow::bail!("{what} refused: HTTP {}\n{body}", e.status)
        }
    };
    match command {
        TppCommand::Register { server, ssa, signing_key, kid, cert, key, cacert, json, auth_method, out } => {
            let options = tpp::RegisterOptions { server, ssa, signing_key, kid, cert, key, cacert, json, auth_method };
            let (exchange, registration) = runtime.block_on(tpp::register(&options))?;
            let summary = show("registration", exchange)?;
            if let Some(registration) = registration {
                tpp::save(&registration, &out)?;
                return Ok(format!("{summary}\nregistration saved to {}", out.display()));
            }
            Ok(summary)
        }
        TppCommand::Token { files, scope } => {
            let registration = tpp::load(&files.registration)?;
            show("token", runtime.block_on(tpp::token(&registration, scope.as_deref()))?)
        }
        TppCommand::Get { files } => {
            let registration = tpp::load(&files.registration)?;
            show("read", runtime.block_on(tpp::manage(&registration, reqwest::Method::GET))?)
        }
        TppCommand::Update { files } => {
            let registration = tpp::load(&files.registration)?;
            show("update", runtime.block_on(tpp::manage(&registration, reqwest::Method::PUT))?)
        }
        TppCommand::Delete { files } => {
            let registration = tpp::load(&files.registration)?;
            show("delete", runtime.block_on(tpp::manage(&registration, reqwest::Method::DELETE))?)
        }
    }
}

fn serve(mut config: Config, sandbox: Option<PathBuf>) -> ExitCode {
    keyfort::telemetry::init(&config.log);
    let sandbox = match sandbox.map(|dir| keyfort::sandbox::Sandbox::open(&dir)) {
        None => None,
        Some(Ok(sandbox)) => {
            tracing::warn!(
                dir = %sandbox.dir.display(),
                "!!! DEVELOPMENT MODE: trusting the sandbox directory {} as the Open Banking directory and its CA for \
                 transport certificates. Never use --sandbox with real TPPs. !!!",
                sandbox.dir.display()
            );
            config.dcr.ssa_jwks = vec![keyfort::config::KeySource::Url(match sandbox.directory_jwks_url().parse() {
                Ok(url) => url,
                Err(e) => return report(Err(anyhow::anyhow!("sandbox keystore URL: {e}"))),
            })];
            config.dcr.software_jwks_hosts = vec!["127.0.0.1".into(), "localhost".into()];
            config.http_client.allow_insecure_loopback = true;
            if config.server.client_ca_file.is_none() {
                config.server.client_ca_file = Some(sandbox.ca_bundle());
                config.server.client_auth = keyfort::config::ClientAuthMode::Optional;
                config.dcr.require_transport_certificate = true;
            }
            Some(sandbox)
        }
        Some(Err(e)) => return report(Err(e)),
    };
    let runtime = match tokio::runtime::Runtime::new() {
        Ok(rt) => rt,
        Err(e) => {
            eprintln!("error: cannot start the async runtime: {e}");
            return ExitCode::FAILURE;
        }
    };
    runtime.block_on(async {
        if let Some(sandbox) = &sandbox {
            let addr = sandbox.manifest.keystore_url.trim_start_matches("http://").to_owned();
            match tokio::net::TcpListener::bind(&addr).await {
                Ok(listener) => {
                    let router = sandbox.keystore_router();
                    tokio::spawn(async move { axum::serve(listener, router).await });
                }
                Err(e) => {
                    eprintln!("error: the sandbox keystore cannot listen on {addr}: {e}");
                    return ExitCode::FAILURE;
                }
            }
        }
        match Application::build(config).await {
            Ok(app) => {
                app.run_until(shutdown_signal()).await;
                tracing::info!("stopped");
                ExitCode::SUCCESS
            }
            // The files the configuration names are configuration errors, as in check-config.
            Err(e) => match e.downcast_ref::<keyfort::config::ConfigError>() {
                Some(config_error) => {
                    eprintln!("{config_error}");
                    ExitCode::from(2)
                }
                None => {
                    tracing::error!("start-up failed: {e:#}");
                    eprintln!("error: {e:#}");
                    ExitCode::FAILURE
                }
            },
        }
    })
}

async fn shutdown_signal() {
    let ctrl_c = tokio::signal::ctrl_c();
    #[cfg(unix)]
    {
        let mut term = match tokio::signal::unix::signal(tokio::signal::unix::SignalKind::terminate()) {
            Ok(s) => s,
            Err(_) => return ctrl_c.await.unwrap_or(()),
        };
        tokio::select! {
            _ = ctrl_c => {},
            _ = term.recv() => {},
        }
    }
    #[cfg(not(unix))]
    let _ = ctrl_c.await;
    tracing::info!("shutting down");
}
