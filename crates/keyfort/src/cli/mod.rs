//! The command line's work, kept out of `main.rs` so it can be tested and reused (the demo
//! drives the same TPP and sandbox code a user runs by hand).

pub mod admin;
pub mod args;
pub mod customers;
pub mod demo;
mod demo_journey;
pub mod import_wso2;
pub mod keys;
pub mod migrate;
pub mod sandbox;
pub mod sandbox_bank;
pub mod serve;
pub mod tpp;
pub mod tpp_journey;

use std::path::Path;

use keyfort_core::clock::{Clock, SystemClock};

use crate::config::{Config, ConfigError};

/// Loads a configuration for a one-off command.
pub fn load_config(path: &Path) -> anyhow::Result<Config> {
    Ok(Config::load(path)?)
}

/// `keyfort check-config`: every check `serve` makes before it binds a port, the keys and
/// the files they name (see [`crate::app::preflight`]), with every problem reported.
pub fn check_config(path: &Path) -> Result<Config, ConfigError> {
    let config = Config::load(path)?;
    crate::app::preflight(&config)?;
    Ok(config)
}

/// A password from standard input (first line), or asked for at the terminal.
pub fn read_password(prompt: &str, from_stdin: bool, confirm: bool) -> anyhow::Result<String> {
    if from_stdin {
        let mut line = String::new();
        std::io::stdin().read_line(&mut line)?;
        return Ok(line.trim_end_matches(['\r', '\n']).to_owned());
    }
    // The prompt needs a terminal (rpassword opens /dev/tty); under cron, a pipe or a
    // container there is none, and the bare OS error ("No such device or address") says
    // nothing about what to do.
    let ask = |prompt: &str| {
        rpassword::prompt_password(prompt).map_err(|e| {
            anyhow::anyhow!(
                "there is no terminal to ask for the password on ({e}): pipe the password on standard input with --password-stdin"
            )
        })
    };
    let first = ask(prompt)?;
    if confirm {
        let second = ask("Repeat the password: ")?;
        if first != second {
            anyhow::bail!("the passwords differ");
        }
    }
    Ok(first)
}

pub fn now() -> i64 {
    SystemClock.now()
}

/// Completes on SIGINT (Ctrl-C) or SIGTERM.
pub async fn shutdown_signal() {
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

/// An HTTPS client with aws-lc-rs, trusting the system roots plus `ca_file`, optionally
/// presenting a client certificate.
pub fn https_client(ca_file: Option<&Path>, identity: Option<(&Path, &Path)>) -> anyhow::Result<reqwest::Client> {
    https_client_to(ca_file, identity, None)
}

/// [`https_client`] that connects to `connect_to`'s address whenever a URL names its host
/// (the certificate is still checked against that host name).
pub fn https_client_to(
    ca_file: Option<&Path>,
    identity: Option<(&Path, &Path)>,
    connect_to: Option<&(String, std::net::SocketAddr)>,
) -> anyhow::Result<reqwest::Client> {
    let mut roots = rustls::RootCertStore::empty();
    for cert in rustls_native_certs::load_native_certs().certs {
        let _ = roots.add(cert);
    }
    if let Some(path) = ca_file {
        for cert in crate::tls::read_ca_certificates(path).map_err(anyhow::Error::msg)? {
            roots.add(cert)?;
        }
    }
    let builder = rustls::ClientConfig::builder_with_provider(crate::tls::crypto_provider())
        .with_safe_default_protocol_versions()?
        .with_root_certificates(roots);
    let tls = match identity {
        Some((cert_path, key_path)) => {
            let chain = crate::pem::read_certificates(cert_path)?;
            let key = crate::pem::read_private_key(key_path)?;
            builder.with_client_auth_cert(chain, key)?
        }
        None => builder.with_no_client_auth(),
    };
    let mut client = reqwest::Client::builder().use_preconfigured_tls(tls);
    if let Some((host, address)) = connect_to {
        client = client.resolve(host, *address);
    }
    Ok(client.build()?)
}
