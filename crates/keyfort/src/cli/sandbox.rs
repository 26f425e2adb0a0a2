//! `keyfort sandbox`: create an offline directory, add software to it, publish its keystore.

use std::future::Future;
use std::net::SocketAddr;
use std::sync::Arc;

use tokio::net::TcpListener;

use super::args::SandboxCommand;
use crate::sandbox::Sandbox;

pub fn run(command: SandboxCommand) -> anyhow::Result<String> {
    match command {
        SandboxCommand::Init { dir, keystore_url } => {
            let sandbox = Sandbox::init(&dir, &keystore_url)?;
            Ok(format!(
                "sandbox created in {}\n  directory JWKS (for [oauth.dcr] ssa_jkws): {}\n  CA bundle (for [server.tls] client_ca_file): {}\n  sandbox bank's subject (for [resource_server] client_subject_dns): {}",
                dir.display(),
                sandbox.directory_jwks_url(),
                sandbox.ca_bundle().display(),
                sandbox.resource_server()?.subject_dn
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
            let software_dir = f.ssa.parent().map(|d| d.display().to_string()).unwrap_or_default();
            Ok(format!(
                "software {} of {} ({})\n  directory: {software_dir} (register with: keyfort tpp register --server URL --software {software_dir})\n  SSA: {}\n  signing key: {} (kid {})\n  transport certificate (OB legacy): {} / {}\n  transport certificate (OBWAC): {} / {}",
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
        SandboxCommand::Serve { dir, listen, https, bank } => {
            let sandbox = Sandbox::open(&dir)?;
            let keystore_url = sandbox.keystore_url()?;
            let address: SocketAddr = match listen {
                Some(listen) => {
                    listen.parse().map_err(|_| anyhow::anyhow!("--listen {listen} is not an address:port"))?
                }
                None => keystore_url.listen_address()?,
            };
            if !https && !address.ip().is_loopback() {
                anyhow::bail!("plain HTTP is served only on a loopback address; use --https for {address}");
            }
            let keystore = KeystoreServer::new(&sandbox, https)?;
            let runtime = tokio::runtime::Runtime::new()?;
            if bank.bank {
                return runtime.block_on(super::sandbox_bank::serve_with_keystore(&sandbox, keystore, address, &bank));
            }
            runtime.block_on(async {
                let listener = TcpListener::bind(address)
                    .await
                    .map_err(|e| anyhow::anyhow!("the sandbox keystore cannot listen on {address}: {e}"))?;
                if https {
                    println!(
                        "sandbox keystore at https://{address} (trust {}; Ctrl-C to stop)",
                        sandbox.ca_bundle().display()
                    );
                } else {
                    println!("sandbox keystore at http://{address} (Ctrl-C to stop)");
                }
                keystore.serve(listener, super::shutdown_signal()).await?;
                Ok(String::new())
            })
        }
    }
}

/// A sandbox's keystore, ready to be served: its routes, and the TLS configuration with the
/// sandbox's keystore certificate when it is served over HTTPS.
pub struct KeystoreServer {
    router: axum::Router,
    tls: Option<Arc<rustls::ServerConfig>>,
}

impl KeystoreServer {
    pub fn new(sandbox: &Sandbox, https: bool) -> anyhow::Result<Self> {
        let tls = if https { Some(sandbox.keystore_tls()?) } else { None };
        Ok(Self { router: sandbox.keystore_router(), tls })
    }

    /// Serves until `shutdown` completes.
    pub async fn serve(
        self,
        listener: TcpListener,
        shutdown: impl Future<Output = ()> + Send + 'static,
    ) -> std::io::Result<()> {
        match self.tls {
            Some(tls) => {
                crate::http::serve(listener, tls, self.router, shutdown).await;
                Ok(())
            }
            None => axum::serve(listener, self.router).with_graceful_shutdown(shutdown).await,
        }
    }
}
