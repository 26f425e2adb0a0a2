//! `keyfort serve`, and its development mode with an offline sandbox directory
//! (`--sandbox DIR --dev`).

use std::fmt;
use std::path::Path;

use keyfort_core::net::is_loopback_host;
use tokio::net::TcpListener;

use super::sandbox::KeystoreServer;
use crate::config::{ClientAuthMode, Config, ConfigError, KeySource};
use crate::sandbox::Sandbox;
use crate::Application;

/// Why `serve` stopped before serving: the configuration (exit status 2), or anything
/// else at start-up (exit status 1).
#[derive(Debug)]
pub enum ServeError {
    Config(ConfigError),
    Startup(anyhow::Error),
}

impl fmt::Display for ServeError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            // Already one `error: ...` line per problem.
            ServeError::Config(e) => write!(f, "{e}"),
            ServeError::Startup(e) => write!(f, "error: {e:#}"),
        }
    }
}

impl From<anyhow::Error> for ServeError {
    fn from(e: anyhow::Error) -> Self {
        match e.downcast::<ConfigError>() {
            Ok(config) => ServeError::Config(config),
            Err(other) => ServeError::Startup(other),
        }
    }
}

/// Serves with the configuration in `config_path` until SIGINT or SIGTERM; with
/// `sandbox_dir`, in development mode against that sandbox (see [`apply_sandbox`]).
pub fn run(config_path: &Path, sandbox_dir: Option<&Path>) -> Result<(), ServeError> {
    // The sandbox supplies the client CA a development configuration may lack, so whether
    // the configuration is safe is judged after it is applied.
    let config = match sandbox_dir {
        None => Config::load(config_path),
        Some(_) => Config::load_deferring_safety(config_path),
    }
    .map_err(ServeError::Config)?;
    let traces = crate::telemetry::init(&config.log, &config.telemetry);
    let (config, sandbox) = match sandbox_dir {
        None => (config, None),
        Some(dir) => {
            let sandbox = Sandbox::open(dir)?;
            tracing::warn!(
                dir = %sandbox.dir.display(),
                "!!! DEVELOPMENT MODE: trusting the sandbox directory {} as the Open Banking directory and its CA for \
                 transport certificates. Never use --sandbox with real TPPs. !!!",
                sandbox.dir.display()
            );
            let config = apply_sandbox(config, &sandbox)?;
            config.check_safety().map_err(ServeError::Config)?;
            (config, Some(sandbox))
        }
    };
    warn_about_development_switch(&config);
    let runtime = tokio::runtime::Runtime::new()
        .map_err(|e| ServeError::Startup(anyhow::anyhow!("cannot start the async runtime: {e}")))?;
    runtime.block_on(async {
        if let Some(sandbox) = &sandbox {
            start_sandbox_keystore(sandbox).await?;
        }
        // Every start-up error is printed once, by the command line, on standard error (one
        // line per configuration problem), not also logged: the log and standard error
        // usually end up in the same journal.
        let app = Application::build(config).await.map_err(ServeError::from)?;
        app.run_until(super::shutdown_signal()).await;
        tracing::info!("stopped");
        Ok::<(), ServeError>(())
    })?;
    // The spans of the last requests, before the process exits.
    if let Some(traces) = traces {
        traces.flush(std::time::Duration::from_secs(5));
    }
    Ok(())
}

/// Logs, at every start, that the development switch is set and what it lets through, so
/// a development configuration that reached production is noticed in its log.
fn warn_about_development_switch(config: &Config) {
    if !config.development.allow_unsafe_registration {
        return;
    }
    let settings = crate::config::unsafe_settings(config);
    if settings.is_empty() {
        tracing::warn!(
            "{} is set, though nothing in this configuration needs it; remove it",
            crate::config::DEVELOPMENT_SWITCH
        );
    }
    for setting in settings {
        tracing::warn!(
            key = setting.key,
            "!!! DEVELOPMENT SWITCH {}: starting with an unsafe setting: {} {} !!!",
            crate::config::DEVELOPMENT_SWITCH,
            setting.key,
            setting.why
        );
    }
}

/// The development overrides of `serve --sandbox DIR --dev`: the sandbox keystore's
/// directory JWKS is the only trusted directory, software JWKS are fetched from loopback
/// hosts, and the sandbox CA is trusted for transport certificates when the configuration
/// names no `client_ca_file`. A plain-http keystore needs `allow_insecure_loopback`; an
/// https one needs the sandbox CA as `[http_client] ca_file` to be fetched at all.
pub fn apply_sandbox(mut config: Config, sandbox: &Sandbox) -> anyhow::Result<Config> {
    let keystore_url = sandbox.keystore_url()?;
    let directory_jwks = url::Url::parse(&sandbox.directory_jwks_url())
        .map_err(|e| anyhow::anyhow!("sandbox directory JWKS URL {}: {e}", sandbox.directory_jwks_url()))?;
    config.dcr.ssa_jwks = vec![KeySource::Url(directory_jwks)];
    // The keystore's origin, under each name a software statement may give it (the sandbox
    // writes its keystore URL; a loopback one may be spelt 127.0.0.1 or localhost).
    let mut origins = crate::config::Origins::default();
    let scheme = keystore_url.url().scheme();
    let port = keystore_url.url().port_or_known_default().unwrap_or(443);
    for host in [keystore_url.url().host_str().unwrap_or("localhost"), "127.0.0.1", "localhost"] {
        let host = if host.contains(':') && !host.starts_with('[') { format!("[{host}]") } else { host.to_owned() };
        if let Ok(origin) = crate::config::Origin::parse(&format!("{scheme}://{host}:{port}")) {
            origins.push(origin);
        }
    }
    config.dcr.software_jwks_origins = origins;
    if keystore_url.is_https() {
        let bundle = sandbox.ca_bundle();
        if let Some(ca_file) = config.http_client.ca_file.as_ref().filter(|f| **f != bundle) {
            anyhow::bail!(
                "{}: [http_client] ca_file is {}, but serving the https sandbox keystore needs the sandbox CA ({}) \
                 there; remove ca_file from this development configuration",
                config.origin,
                ca_file.display(),
                bundle.display()
            );
        }
        config.http_client.ca_file = Some(bundle);
    } else if is_loopback_host(keystore_url.url()) {
        config.http_client.allow_insecure_loopback = true;
    } else {
        anyhow::bail!(
            "the sandbox keystore URL {keystore_url} is plain http to another machine, which Keyfort never fetches; \
             create the sandbox with an https:// (or loopback http://) --keystore-url"
        );
    }
    if config.server.client_ca_file.is_none() {
        config.server.client_ca_file = Some(sandbox.ca_bundle());
        config.server.client_auth = ClientAuthMode::Optional;
        config.dcr.require_transport_certificate = true;
    }
    Ok(config)
}

/// Starts serving the sandbox keystore at its URL's address, in the background.
async fn start_sandbox_keystore(sandbox: &Sandbox) -> anyhow::Result<()> {
    let keystore_url = sandbox.keystore_url()?;
    let address = keystore_url.listen_address()?;
    let keystore = KeystoreServer::new(sandbox, keystore_url.is_https())?;
    let listener = TcpListener::bind(address)
        .await
        .map_err(|e| anyhow::anyhow!("the sandbox keystore ({keystore_url}) cannot listen on {address}: {e}"))?;
    tokio::spawn(async move {
        if let Err(e) = keystore.serve(listener, std::future::pending()).await {
            tracing::error!(error = %e, "the sandbox keystore stopped");
        }
    });
    Ok(())
}

#[cfg(test)]
mod tests {
    use std::path::PathBuf;

    use super::*;

    const CONFIG: &str = r#"
[server]
listen = "127.0.0.1:9446"
public_url = "https://localhost:9446"
[oauth.dcr]
ssa_jkws = "https://keystore.example/dir.jwks"
"#;

    fn config(extra: &str) -> Config {
        Config::from_toml_deferring_safety(&format!("{CONFIG}{extra}"), "dev.toml", Path::new("/etc/keyfort")).unwrap()
    }

    fn sandbox(keystore_url: &str) -> (tempfile::TempDir, Sandbox) {
        let dir = tempfile::tempdir().unwrap();
        let sandbox = Sandbox::init(&dir.path().join("sb"), keystore_url).unwrap();
        (dir, sandbox)
    }

    #[test]
    fn an_http_keystore_is_trusted_over_loopback_http() {
        let (_dir, sandbox) = sandbox("http://127.0.0.1:18090");
        let c = apply_sandbox(config(""), &sandbox).unwrap();
        assert_eq!(c.dcr.ssa_jwks, vec![KeySource::Url("http://127.0.0.1:18090/openbanking.jwks".parse().unwrap())]);
        assert_eq!(c.dcr.software_jwks_origins.to_string(), "http://127.0.0.1:18090, http://localhost:18090");
        assert!(c.http_client.allow_insecure_loopback);
        assert_eq!(c.http_client.ca_file, None);
        assert_eq!(c.server.client_ca_file, Some(sandbox.ca_bundle()));
        assert_eq!(c.server.client_auth, ClientAuthMode::Optional);
        assert!(c.dcr.require_transport_certificate);
    }

    #[test]
    fn an_https_keystore_is_fetched_trusting_the_sandbox_ca() {
        let (_dir, sandbox) = sandbox("https://localhost:18443");
        let c = apply_sandbox(config(""), &sandbox).unwrap();
        assert_eq!(c.dcr.ssa_jwks, vec![KeySource::Url("https://localhost:18443/openbanking.jwks".parse().unwrap())]);
        assert!(!c.http_client.allow_insecure_loopback, "nothing is fetched over plain http");
        assert_eq!(c.http_client.ca_file, Some(sandbox.ca_bundle()));
        assert_eq!(c.dcr.software_jwks_origins.to_string(), "https://localhost:18443, https://127.0.0.1:18443");
    }

    #[test]
    fn a_configured_client_ca_is_kept() {
        let (_dir, sandbox) = sandbox("http://127.0.0.1:18090");
        let c = apply_sandbox(
            config("[server.tls]\nclient_ca_file = \"ob-ca.pem\"\nclient_auth = \"required\"\n"),
            &sandbox,
        )
        .unwrap();
        assert_eq!(c.server.client_ca_file, Some(PathBuf::from("/etc/keyfort/ob-ca.pem")));
        assert_eq!(c.server.client_auth, ClientAuthMode::Required);
    }

    #[test]
    fn another_outbound_ca_conflicts_with_an_https_keystore() {
        let (_dir, sandbox) = sandbox("https://127.0.0.1:18443");
        let err = apply_sandbox(config("[http_client]\nca_file = \"corporate-ca.pem\"\n"), &sandbox).unwrap_err();
        let message = err.to_string();
        assert!(message.contains("[http_client] ca_file") && message.contains("corporate-ca.pem"), "{message}");
    }

    #[test]
    fn a_plain_http_keystore_elsewhere_is_refused() {
        let (_dir, sandbox) = sandbox("http://192.0.2.10:8090");
        let message = apply_sandbox(config(""), &sandbox).unwrap_err().to_string();
        assert!(message.contains("https"), "{message}");
    }
}
