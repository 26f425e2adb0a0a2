//! The `keyfort` command: parses the command line, runs the command, turns the outcome into
//! an exit status (0 success, 2 configuration errors, 1 anything else). Commands and flags
//! are declared in `keyfort::cli::args`, their work is done in `keyfort::cli`.

use std::process::ExitCode;

use clap::Parser;
use keyfort::cli::args::{AdminCommand, Cli, Command, JwtCommand, KeysCommand};
use keyfort::cli::{self, serve::ServeError};
use keyfort::config::ConfigError;

/// The exit status of a configuration that is not valid (as `check-config` reports it).
const CONFIGURATION_ERROR: u8 = 2;

fn main() -> ExitCode {
    match Cli::parse().command {
        Command::CheckConfig { config } => match cli::check_config(&config) {
            Ok(_) => report(Ok(format!("{}: OK", config.display()))),
            Err(e) => config_error(&e),
        },
        Command::Serve { config, sandbox, dev: _ } => match cli::serve::run(&config, sandbox.as_deref()) {
            Ok(()) => ExitCode::SUCCESS,
            Err(ServeError::Config(e)) => config_error(&e),
            Err(startup) => {
                eprintln!("{startup}");
                ExitCode::FAILURE
            }
        },
        Command::Admin { command: AdminCommand::AddUser { config, username, password_stdin } } => report(
            cli::admin::add_user(&config, &username, password_stdin)
                .map(|()| format!("administrator \"{username}\" added")),
        ),
        Command::Admin { command: AdminCommand::Clients { connection, command } } => {
            report(cli::admin::clients(&connection.into(), command.into()))
        }
        Command::Admin { command: AdminCommand::Consents { connection, command } } => {
            report(cli::admin::consents(&connection.into(), command))
        }
        Command::Admin { command: AdminCommand::Audit { connection, command } } => {
            report(cli::admin::audit(&connection.into(), command))
        }
        Command::Customers { command } => report(cli::customers::run(command)),
        Command::Keys { command: KeysCommand::Rotate { config, publish_ahead } } => {
            report(cli::keys::rotate(&config, publish_ahead))
        }
        Command::Keys { command: KeysCommand::Rewrap { config, new_key_file } } => {
            report(cli::keys::rewrap(&config, &new_key_file))
        }
        Command::Migrate { config, dry_run } => report(cli::migrate::run(&config, dry_run)),
        Command::Demo { no_wait, keep } => report(cli::demo::run_blocking(!no_wait, keep).map(|()| String::new())),
        Command::Completions { shell } => report(cli::args::completions(shell)),
        Command::Man => report(cli::args::man_page()),
        Command::ImportWso2 { file, out, force } => report(cli::import_wso2::run(&file, &out, force)),
        Command::Sandbox { command } => report(cli::sandbox::run(command)),
        Command::Tpp { command } => report(cli::tpp::run(command)),
        Command::Jwt { command: JwtCommand::Decode { file } } => report(cli::tpp::decode_jwt_source(&file)),
    }
}

/// Prints the outcome of a command and turns it into an exit status.
fn report(result: anyhow::Result<String>) -> ExitCode {
    match result {
        Ok(message) => {
            if !message.is_empty() {
                println!("{}", message.trim_end());
            }
            ExitCode::SUCCESS
        }
        Err(e) => match e.downcast_ref::<ConfigError>() {
            Some(config) => config_error(config),
            None => {
                eprintln!("error: {e:#}");
                ExitCode::FAILURE
            }
        },
    }
}

fn config_error(e: &ConfigError) -> ExitCode {
    eprintln!("{e}");
    ExitCode::from(CONFIGURATION_ERROR)
}
