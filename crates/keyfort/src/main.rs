use std::path::PathBuf;
use std::process::ExitCode;

use clap::{Parser, Subcommand};
use keyfort::config::Config;
use keyfort::Application;

/// Keyfort: an Open Banking identity server (Dynamic Client Registration with software statements).
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
    /// Manage administrators (stored in the configured database).
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
}

fn main() -> ExitCode {
    let cli = Cli::parse();
    match cli.command {
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
        Command::Admin { command: AdminCommand::AddUser { config, username, password_stdin } } => {
            match add_admin(&config, &username, password_stdin) {
                Ok(()) => {
                    println!("administrator \"{username}\" added");
                    ExitCode::SUCCESS
                }
                Err(e) => {
                    eprintln!("error: {e:#}");
                    ExitCode::FAILURE
                }
            }
        }
        Command::Keys { command: KeysCommand::Rotate { config, publish_ahead } } => {
            match rotate_keys(&config, publish_ahead) {
                Ok(kid) => {
                    println!("new signing key {kid} published; it signs from its activation time");
                    ExitCode::SUCCESS
                }
                Err(e) => {
                    eprintln!("error: {e:#}");
                    ExitCode::FAILURE
                }
            }
        }
        Command::Serve { config } => {
            let config = match Config::load(&config) {
                Ok(c) => c,
                Err(e) => {
                    eprintln!("error: {e}");
                    return ExitCode::from(2);
                }
            };
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
    }
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

fn add_admin(config: &std::path::Path, username: &str, password_stdin: bool) -> anyhow::Result<()> {
    use keyfort::admin::{hash_password, MIN_PASSWORD_CHARS};
    let config = Config::load(config)?;
    if username.is_empty() || username.contains(':') || username.chars().any(char::is_control) {
        anyhow::bail!("the administrator name must be non-empty and contain no ':' or control characters");
    }
    let password = if password_stdin {
        let mut line = String::new();
        std::io::stdin().read_line(&mut line)?;
        line.trim_end_matches(['\r', '\n']).to_owned()
    } else {
        let first = rpassword::prompt_password(format!("Password for {username}: "))?;
        let second = rpassword::prompt_password("Repeat the password: ")?;
        if first != second {
            anyhow::bail!("the passwords differ");
        }
        first
    };
    if password.chars().count() < MIN_PASSWORD_CHARS {
        anyhow::bail!("the password must have at least {MIN_PASSWORD_CHARS} characters");
    }
    let hash = hash_password(&password)?;
    let runtime = tokio::runtime::Runtime::new()?;
    runtime.block_on(async {
        let store = keyfort::storage::open(&config.storage_url).await?;
        let now = std::time::SystemTime::now().duration_since(std::time::UNIX_EPOCH)?.as_secs() as i64;
        store.create_admin(username, &hash, now).await.map_err(|e| match e {
            keyfort::storage::CreateAdminError::AdminExists => {
                anyhow::anyhow!("an administrator named \"{username}\" already exists")
            }
            other => anyhow::anyhow!(other),
        })
    })
}

fn rotate_keys(config: &std::path::Path, publish_ahead: Option<i64>) -> anyhow::Result<String> {
    let config = Config::load(config)?;
    if config.token.signing_key_file.is_some() {
        anyhow::bail!("[oauth.token] signing_key_file is set: the signing key comes from that file, rotate it there");
    }
    let ahead = publish_ahead.unwrap_or(config.token.key_publish_ahead_seconds);
    if ahead < 0 {
        anyhow::bail!("--publish-ahead must not be negative");
    }
    let runtime = tokio::runtime::Runtime::new()?;
    runtime.block_on(async {
        let store = keyfort::storage::open(&config.storage_url).await?;
        let now = std::time::SystemTime::now().duration_since(std::time::UNIX_EPOCH)?.as_secs() as i64;
        keyfort::signing::rotate(store.as_ref(), config.token.signing_alg, now, ahead).await
    })
}
