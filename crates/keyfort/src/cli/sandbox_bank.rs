//! Serving the sandbox bank (`keyfort sandbox serve DIR --bank`, and the demo): its routes
//! from [`crate::sandbox::bank`] on Keyfort's own TLS listener, which hands every request
//! the client certificate of its connection.

use std::future::Future;
use std::net::SocketAddr;
use std::path::Path;
use std::sync::Arc;

use tokio::net::TcpListener;

use crate::http::ConnectionInfo;
use crate::sandbox::bank::{self, Bank, ResourceServerIdentity, TppCertificate, ValidationClient};
use crate::sandbox::Sandbox;

/// The sandbox bank, ready to be served.
pub struct BankServer {
    router: axum::Router,
    tls: Arc<rustls::ServerConfig>,
    pub identity: ResourceServerIdentity,
}

impl BankServer {
    /// The bank of `sandbox`, asking Keyfort at `keyfort_url` (trusting `keyfort_ca`) about
    /// every token, reachable by TPPs at `public_url`.
    pub fn new(
        sandbox: &Sandbox,
        keyfort_url: &str,
        keyfort_ca: Option<&Path>,
        public_url: &str,
    ) -> anyhow::Result<Self> {
        let identity = sandbox.resource_server()?;
        let validation = ValidationClient::new(keyfort_url, keyfort_ca, &identity)?;
        let bank = Arc::new(Bank::new(sandbox, validation, public_url));
        let router =
            bank.router().layer(axum::middleware::map_request(|mut request: axum::extract::Request| async move {
                let leaf = request
                    .extensions()
                    .get::<ConnectionInfo>()
                    .and_then(|info| info.client_chain.as_ref())
                    .and_then(|chain| chain.first())
                    .map(|cert| TppCertificate(cert.to_vec()));
                if let Some(leaf) = leaf {
                    request.extensions_mut().insert(leaf);
                }
                request
            }));
        let tls = bank::tls_config(sandbox, &identity)?;
        Ok(Self { router, tls, identity })
    }

    /// Serves until `shutdown` completes.
    pub async fn serve(self, listener: TcpListener, shutdown: impl Future<Output = ()> + Send) {
        crate::http::serve(listener, self.tls, self.router, shutdown).await
    }
}

/// Checks the bank's listen address: loopback only, since its certificate names only
/// `localhost` and `127.0.0.1`. Returns the bank's URL for TPPs.
pub fn public_url(address: SocketAddr) -> anyhow::Result<String> {
    if !address.ip().is_loopback() {
        anyhow::bail!(
            "--bank-listen {address}: the sandbox bank listens on a loopback address only (its certificate names localhost)"
        );
    }
    Ok(format!("https://localhost:{}", address.port()))
}

/// `keyfort sandbox serve DIR --bank`: the keystore at `keystore_address` and the bank at
/// `--bank-listen`, until Ctrl-C or SIGTERM.
pub async fn serve_with_keystore(
    sandbox: &Sandbox,
    keystore: super::sandbox::KeystoreServer,
    keystore_address: SocketAddr,
    args: &super::args::BankArgs,
) -> anyhow::Result<String> {
    let keyfort = args.keyfort.as_deref().ok_or_else(|| {
        anyhow::anyhow!("--bank needs --keyfort URL: the Keyfort server the bank asks to validate access tokens")
    })?;
    let bank_address: SocketAddr = args
        .bank_listen
        .parse()
        .map_err(|_| anyhow::anyhow!("--bank-listen {} is not an address:port", args.bank_listen))?;
    let bank_url = public_url(bank_address)?;
    let bank = BankServer::new(sandbox, keyfort, args.keyfort_cacert.as_deref(), &bank_url)?;
    let keystore_listener = TcpListener::bind(keystore_address)
        .await
        .map_err(|e| anyhow::anyhow!("the sandbox keystore cannot listen on {keystore_address}: {e}"))?;
    let bank_listener = TcpListener::bind(bank_address).await.map_err(|e| {
        anyhow::anyhow!("the sandbox bank cannot listen on {bank_address}: {e}; choose another --bank-listen")
    })?;
    println!("sandbox keystore on {keystore_address} (its URL: {})", sandbox.manifest.keystore_url);
    println!(
        "sandbox bank at {bank_url}{} (TPPs trust {} and present a sandbox transport certificate)",
        bank::AISP_ROOT,
        sandbox.ca_bundle().display()
    );
    println!("  it validates tokens at {keyfort}{}", bank::VALIDATION_PATH);
    println!("  its subject, for Keyfort's [resource_server] client_subject_dns: {}", bank.identity.subject_dn);
    println!("  its accounts: {}", sandbox.bank_accounts_file().display());
    println!("Ctrl-C to stop");
    let (stop, stopped) = tokio::sync::watch::channel(false);
    tokio::spawn(async move {
        super::shutdown_signal().await;
        let _ = stop.send(true);
    });
    let until_stopped = |mut stopped: tokio::sync::watch::Receiver<bool>| async move {
        let _ = stopped.wait_for(|stop| *stop).await;
    };
    let (keystore_served, ()) = tokio::join!(
        keystore.serve(keystore_listener, until_stopped(stopped.clone())),
        bank.serve(bank_listener, until_stopped(stopped)),
    );
    keystore_served?;
    Ok(String::new())
}
