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
        Command::CheckConfig { config } => match Config::load(&config) {
            Ok(_) => {
                println!("{}: OK", config.display());
                ExitCode::SUCCESS
            }
            Err(e) => {
                eprintln!("error: {e}");
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
        Command::Serve { config } => {
            let config = match Config::load(&config) {
                Ok(c) => c,
                Err(e) => {
                    eprintln!("error: {e}");
                    return ExitCode::from(2);
                }
            };
            serve(config)
        }
    }
}

fn serve(config: Config) -> ExitCode {
    keyfort::telemetry::init(&config.log);
    let runtime = match tokio::runtime::Runtime::new() {
        Ok(rt) => rt,
        Err(e) => {
            eprintln!("error: cannot start the async runtime: {e}");
            return ExitCode::FAILURE;
        }
    };
    runtime.block_on(async {
        match Application::build(config).await {
            Ok(app) => {
                app.run_until(shutdown_signal()).await;
                tracing::info!("stopped");
                ExitCode::SUCCESS
            }
            Err(e) => {
                tracing::error!("start-up failed: {e:#}");
                eprintln!("error: {e:#}");
                ExitCode::FAILURE
            }
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
