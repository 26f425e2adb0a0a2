//! Building the application from a configuration, the `Application::build` pattern: it
//! opens storage, prepares keys and TLS, binds the listener, and exposes the bound port so
//! tests can start it on port 0.

use std::future::Future;
use std::net::SocketAddr;
use std::sync::Arc;
use std::time::Duration;

use keyfort_core::clock::{Clock, SystemClock};
use tokio::net::TcpListener;

use crate::admin::{AdminAuthenticator, SignInLimits};
use crate::audit::Auditor;
use crate::authorization::AuthorizationService;
use crate::config::{AdminListen, ClientAuthMode, Config, ConfigError, KeySource};
use crate::consent::ConsentService;
use crate::customers::{AccountLookup, CustomerDirectory, StoreAccountLookup, StoreCustomerDirectory};
use crate::directory::{HttpFetcher, JwksCache};
use crate::health::Readiness;
use crate::http::{self, AppState, Services};
use crate::metrics::Metrics;
use crate::operator::OperatorService;
use crate::pages::Pages;
use crate::registration::RegistrationService;
use crate::signing::KeyRing;
use crate::storage::{self, Store};
use crate::token::TokenService;
use crate::transport::{client_cert_verifier, CrlStore, TransportTrust};

/// How often expired replay records are purged.
const PURGE_INTERVAL: Duration = Duration::from_secs(3600);

/// The separate listener of the admin API.
struct AdminListener {
    listener: TcpListener,
    local_addr: SocketAddr,
    tls: Arc<rustls::ServerConfig>,
    router: axum::Router,
}

/// A bank's own implementations of what Keyfort otherwise keeps in its database: the
/// customer directory (sign-in) and the account lookup. `None` keeps the built-in one.
#[derive(Default, Clone)]
pub struct Integrations {
    pub customer_directory: Option<Arc<dyn CustomerDirectory>>,
    pub account_lookup: Option<Arc<dyn AccountLookup>>,
}

pub struct Application {
    listener: TcpListener,
    local_addr: SocketAddr,
    tls: Arc<rustls::ServerConfig>,
    router: axum::Router,
    store: Arc<dyn Store>,
    clock: Arc<dyn Clock>,
    crls: Arc<CrlStore>,
    fetcher: HttpFetcher,
    crl_refresh: Duration,
    ring: Arc<KeyRing>,
    /// How often the signing keys are re-read (`[oauth.token] key_reload_seconds`).
    key_reload: Duration,
    metrics: Arc<Metrics>,
    metrics_listener: Option<TcpListener>,
    /// The admin API's own listener (`[admin] listen`), its TLS and routes; `None` when
    /// `/admin/*` is served on the public listener.
    admin: Option<AdminListener>,
    connection_limits: http::ConnectionLimits,
    /// How long consent idempotency keys are kept.
    idempotency_seconds: i64,
    /// How long the jti of a registration request without `exp` is kept.
    jti_without_exp_retention_seconds: i64,
    consents: Arc<ConsentService>,
    /// Holds the audit lines written after their answers, flushed at shutdown.
    auditor: Arc<Auditor>,
}

impl Application {
    pub async fn build(config: Config) -> anyhow::Result<Self> {
        Self::build_with_clock(config, Arc::new(SystemClock)).await
    }

    /// Builds with a given clock, so tests can move time. Fails with a [`ConfigError`]
    /// (inside the `anyhow::Error`) when [`preflight`] finds a problem.
    pub async fn build_with_clock(config: Config, clock: Arc<dyn Clock>) -> anyhow::Result<Self> {
        Self::build_with(config, clock, Integrations::default()).await
    }

    /// Builds with a given clock and the bank's own customer directory and account lookup
    /// (see [`Integrations`]).
    pub async fn build_with(config: Config, clock: Arc<dyn Clock>, integrations: Integrations) -> anyhow::Result<Self> {
        preflight(&config)?;
        let config = Arc::new(config);
        let store = storage::open(&config.storage).await?;
        let fetcher = HttpFetcher::new(&config.http_client)?;
        let metrics = Arc::new(Metrics::default());
        let crls = Arc::new(CrlStore::new(
            config.mtls.crl_sources.clone(),
            config.mtls.revocation_unavailable,
            metrics.clone(),
        ));
        crls.refresh(&fetcher).await;
        let transport = TransportTrust::from_config(&config, crls.clone())?.map(Arc::new);
        let verifier = match (&transport, config.server.client_auth) {
            (Some(trust), ClientAuthMode::Optional | ClientAuthMode::Required) => Some(client_cert_verifier(
                trust.anchor_subjects().to_vec(),
                config.server.client_auth == ClientAuthMode::Required,
            )),
            _ => None,
        };
        let tls = crate::tls::server_config(&config.server, verifier)?;
        let jwks = Arc::new(JwksCache::new(
            fetcher.clone(),
            Duration::from_secs(config.http_client.jwks_cache_seconds),
            Duration::from_secs(config.http_client.jwks_min_refresh_seconds),
            metrics.clone(),
        ));
        let sign_in = SignInLimits {
            attempts_per_second: f64::from(config.admin.sign_in_attempts_per_second),
            attempts_burst: config.admin.sign_in_burst,
            failures_per_address: config.admin.failed_sign_ins_per_address,
            address_window: config.admin.failed_sign_ins_window,
            concurrent_checks: config.admin.concurrent_password_checks,
            max_waiting: config.admin.password_check_queue,
            exempt: config.mtls.trusted_proxies.clone(),
            ..SignInLimits::default()
        };
        let admins = Arc::new(AdminAuthenticator::new(store.clone(), clock.clone(), sign_in));
        let longest_token = config.token_lifetimes.application.max(config.token_lifetimes.user);
        // A fixed signing key file needs no key-encryption key: nothing is stored.
        let kek = match config.token.signing_key_file {
            Some(_) => None,
            None => Some(crate::signing::kek::load_or_create(&config.storage)?),
        };
        let ring = Arc::new(
            KeyRing::open(
                store.clone(),
                clock.clone(),
                &config.token.ring_algorithms(),
                config.token.signing_key_file.as_ref().map(|(p, kid)| (p.as_path(), kid.as_str())),
                longest_token,
                kek,
            )
            .await?,
        );
        let tokens =
            Arc::new(TokenService::new(config.clone(), store.clone(), jwks.clone(), ring.clone(), clock.clone()));
        let auditor = Arc::new(Auditor::new(store.clone(), clock.clone()));
        let registration = Arc::new(RegistrationService::new(
            config.clone(),
            store.clone(),
            jwks.clone(),
            clock.clone(),
            auditor.clone(),
            tokens.clone(),
        ));
        let customers: Arc<dyn CustomerDirectory> = match integrations.customer_directory {
            Some(directory) => directory,
            None => Arc::new(StoreCustomerDirectory::new(store.clone(), clock.clone(), config.customers.clone())),
        };
        let accounts: Arc<dyn AccountLookup> = match integrations.account_lookup {
            Some(lookup) => lookup,
            None => Arc::new(StoreAccountLookup::new(store.clone())),
        };
        let jwks_for_authorization = jwks.clone();
        let consents = Arc::new(ConsentService::new(
            config.clone(),
            store.clone(),
            tokens.clone(),
            jwks,
            accounts.clone(),
            auditor.clone(),
            clock.clone(),
        ));
        let resource_server = Arc::new(crate::resource_server::ResourceServerService::new(
            config.clone(),
            tokens.clone(),
            consents.clone(),
            clock.clone(),
        ));
        let customer_area = Arc::new(crate::customer_area::CustomerAreaService::new(
            config.clone(),
            store.clone(),
            customers.clone(),
            accounts.clone(),
            consents.clone(),
            clock.clone(),
        ));
        let pages = Arc::new(Pages::new(&config.branding)?);
        let authorization = Arc::new(AuthorizationService::new(
            config.clone(),
            store.clone(),
            jwks_for_authorization,
            ring.clone(),
            consents.clone(),
            customers,
            accounts,
            clock.clone(),
        ));
        let request_limits = http::RequestLimits {
            max_header_bytes: config.server.max_header_bytes,
            max_body_bytes: config.server.max_body_bytes,
        };
        let state = AppState::new(Services {
            config: config.clone(),
            operator: Arc::new(OperatorService::new(store.clone(), auditor.clone(), clock.clone())),
            consents: consents.clone(),
            authorization,
            resource_server,
            customer_area,
            pages,
            readiness: Arc::new(Readiness::new(store.clone(), registration.clone())),
            registration,
            tokens,
            admins,
            transport,
            metrics: metrics.clone(),
            clock: clock.clone(),
        });
        let admin = match config.admin.listen {
            AdminListen::Public => None,
            AdminListen::Separate(address) => {
                let listener = TcpListener::bind(address)
                    .await
                    .map_err(|e| anyhow::anyhow!("[admin] listen {address}: cannot bind: {e}"))?;
                let local_addr = listener.local_addr()?;
                // Its certificate is the server's: the URL names the public host, at the
                // admin listener's port.
                let host = url::Url::parse(&config.server.public_url)
                    .ok()
                    .and_then(|u| u.host_str().map(str::to_owned))
                    .unwrap_or_else(|| local_addr.ip().to_string());
                let url = format!("https://{host}:{}", local_addr.port());
                Some(AdminListener {
                    local_addr,
                    listener,
                    tls: crate::tls::admin_server_config(&tls)?,
                    router: http::admin_router(state.clone(), request_limits, &url),
                })
            }
        };
        let router = http::router(state, request_limits);
        let descriptors = http::raise_descriptor_limit();
        let server = &config.server;
        let connection_limits = http::ConnectionLimits {
            first_request_timeout: server.first_request_timeout,
            idle_timeout: server.idle_timeout,
            header_read_timeout: server.header_read_timeout,
            max_connections: http::connections_that_fit(server.max_connections, descriptors),
            max_connections_per_ip: server.max_connections_per_ip,
            per_ip_exempt: config.mtls.trusted_proxies.clone(),
            max_header_bytes: server.max_header_bytes,
            ..http::ConnectionLimits::default()
        };
        let listener = TcpListener::bind(config.server.listen)
            .await
            .map_err(|e| anyhow::anyhow!("[server] listen {}: cannot bind: {e}", config.server.listen))?;
        let local_addr = listener.local_addr()?;
        let metrics_listener = match config.metrics_listen {
            Some(addr) => Some(
                TcpListener::bind(addr)
                    .await
                    .map_err(|e| anyhow::anyhow!("[metrics] listen {addr}: cannot bind: {e}"))?,
            ),
            None => None,
        };
        let crl_refresh = Duration::from_secs(config.mtls.crl_refresh_seconds);
        Ok(Self {
            listener,
            local_addr,
            tls,
            router,
            store,
            clock,
            crls,
            fetcher,
            crl_refresh,
            ring,
            key_reload: config.token.key_reload_interval,
            metrics,
            metrics_listener,
            admin,
            connection_limits,
            idempotency_seconds: config.consents.idempotency_seconds,
            jti_without_exp_retention_seconds: config.dcr.jti_without_exp_retention_seconds,
            consents,
            auditor,
        })
    }

    pub fn local_addr(&self) -> SocketAddr {
        self.local_addr
    }

    pub fn port(&self) -> u16 {
        self.local_addr.port()
    }

    /// The consent service this application serves, for code that runs beside the HTTP
    /// edge (tests, an embedding bank application).
    pub fn consents(&self) -> Arc<ConsentService> {
        self.consents.clone()
    }

    /// Where the admin API is served on its own listener (`[admin] listen`); `None` with
    /// `listen = "public"`, when it is on [`Application::local_addr`].
    pub fn admin_addr(&self) -> Option<SocketAddr> {
        self.admin.as_ref().map(|admin| admin.local_addr)
    }

    /// Where `/metrics` is served, if configured.
    pub fn metrics_addr(&self) -> Option<SocketAddr> {
        self.metrics_listener.as_ref().and_then(|l| l.local_addr().ok())
    }

    /// Serves until `shutdown` completes, then lets in-flight requests finish.
    pub async fn run_until(self, shutdown: impl Future<Output = ()> + Send) {
        let purge = tokio::spawn(purge_expired_records(
            self.store.clone(),
            self.clock.clone(),
            self.idempotency_seconds,
            self.jti_without_exp_retention_seconds,
        ));
        // Another node or `keyfort keys rotate` may add keys: pick them up. The interval bounds
        // how long this node may not know a new key, so a rotation must publish keys at
        // least this long before they sign (the configuration and `keys rotate` insist).
        let ring = self.ring.clone();
        let every = self.key_reload;
        let key_reload = tokio::spawn(async move {
            let mut interval = tokio::time::interval(every);
            interval.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
            loop {
                interval.tick().await;
                if let Err(e) = ring.reload().await {
                    tracing::warn!(error = %e, "reloading signing keys failed");
                }
            }
        });
        let crl_refresh = self.crls.is_configured().then(|| {
            let (crls, fetcher, every) = (self.crls.clone(), self.fetcher.clone(), self.crl_refresh);
            tokio::spawn(async move {
                let mut interval = tokio::time::interval(every);
                interval.tick().await;
                loop {
                    interval.tick().await;
                    crls.refresh(&fetcher).await;
                }
            })
        });
        let metrics_server = self.metrics_listener.map(|listener| {
            let metrics = self.metrics.clone();
            let (store, ring) = (self.store.clone(), self.ring.clone());
            tracing::info!(address = %listener.local_addr().map(|a| a.to_string()).unwrap_or_default(), "metrics are served at /metrics (HTTP)");
            let router = axum::Router::new().route(
                "/metrics",
                axum::routing::get(move || {
                    let (metrics, store, ring) = (metrics.clone(), store.clone(), ring.clone());
                    async move {
                        let gauges = crate::metrics::Gauges {
                            pool: store.pool_status().await,
                            signing_keys: ring
                                .signing_key_ages()
                                .into_iter()
                                .map(|(alg, kid, age)| (alg.to_string(), kid, age))
                                .collect(),
                        };
                        let text = format!("{}{}", metrics.render(), gauges.render());
                        ([("content-type", "text/plain; version=0.0.4")], text)
                    }
                }),
            );
            tokio::spawn(async move {
                if let Err(e) = axum::serve(listener, router).await {
                    tracing::error!(error = %e, "the metrics listener failed");
                }
            })
        });
        let (admin_stop, admin_stopped) = tokio::sync::watch::channel(false);
        let admin_server = self.admin.map(|admin| {
            tracing::info!(address = %admin.local_addr, "the admin API is served at /admin/* (HTTPS, its own listener)");
            let (limits, metrics) = (self.connection_limits.clone(), self.metrics.clone());
            let mut stopped = admin_stopped;
            tokio::spawn(http::serve_with(admin.listener, admin.tls, admin.router, limits, metrics, async move {
                let _ = stopped.wait_for(|stop| *stop).await;
            }))
        });
        tracing::info!(address = %self.local_addr, "Keyfort is listening (HTTPS)");
        tracing::info!(
            max_connections = self.connection_limits.max_connections,
            max_connections_per_ip = self.connection_limits.max_connections_per_ip,
            "connection limits"
        );
        http::serve_with(self.listener, self.tls, self.router, self.connection_limits, self.metrics.clone(), shutdown)
            .await;
        // The admin listener drains like the public one.
        let _ = admin_stop.send(true);
        if let Some(task) = admin_server {
            let _ = task.await;
        }
        // Every request is answered: write the audit lines of reads still on their way.
        self.auditor.flush().await;
        purge.abort();
        key_reload.abort();
        if let Some(task) = metrics_server {
            task.abort();
        }
        if let Some(task) = crl_refresh {
            task.abort();
        }
    }
}

/// Reads every file the configuration names, with the functions the start-up uses, and
/// reports every problem: the server certificate chain and key (and that they form a pair),
/// the `client_ca_file` bundle (which must hold a root), the `[mtls.profile_ca_files]`
/// bundles, `[storage] ssl_root_cert`,
/// `[http_client] ca_file`, the
/// `[mtls] crl_files`, `[oauth.token] signing_key_file`, and `[branding] logo_file` and the
/// templates of `template_dir` (which must compile). `keyfort check-config` runs it,
/// and so does [`Application::build`] before anything else, so a configuration that passes
/// the check does not fail on these files at start-up.
///
/// Nothing is created: without `cert_file` the development certificate is left for `serve`.
pub fn preflight(config: &Config) -> Result<(), ConfigError> {
    let mut problems = Vec::new();
    if let Err(identity_problems) = crate::tls::configured_identity(&config.server) {
        problems.extend(identity_problems.into_iter().map(|p| config.problem(p.key, p.message)));
    }
    if let Some(path) = &config.server.client_ca_file {
        if let Err(what) = crate::transport::read_ca_bundle(path) {
            problems.push(config.problem("[server.tls] client_ca_file", what));
        }
    }
    for (profile, path) in config.mtls.profile_ca_files.iter().flatten() {
        if let Err(what) = crate::transport::read_profile_bundle(path) {
            problems.push(config.problem(&format!("[mtls.profile_ca_files] {}", profile.config_key()), what));
        }
    }
    if let Err(what) = crate::signing::kek::check(&config.storage) {
        let key = match config.storage.key_encryption {
            crate::config::KeyEncryptionSource::Value(_) => "[storage] key_encryption_key",
            _ => "[storage] key_encryption_key_file",
        };
        problems.push(config.problem(key, what));
    }
    if let Some(path) = &config.storage.ssl_root_cert {
        if let Err(what) = crate::tls::read_ca_certificates(path) {
            problems.push(config.problem("[storage] ssl_root_cert", what));
        }
    }
    if let Some(path) = &config.http_client.ca_file {
        if let Err(what) = crate::tls::read_ca_certificates(path) {
            problems.push(config.problem("[http_client] ca_file", what));
        }
    }
    for source in &config.mtls.crl_sources {
        if let KeySource::File(path) = source {
            if let Err(what) = crate::transport::read_crl_file(path) {
                problems.push(config.problem("[mtls] crl_files", what));
            }
        }
    }
    if let Some((path, kid)) = &config.token.signing_key_file {
        if let Err(e) = crate::signing::load_pem_key(path, Some(config.token.signing_alg), kid) {
            problems.push(config.problem(
                "[oauth.token] signing_key_file",
                format!("{e} (it must be a PKCS#8 PEM key for signing_alg {})", config.token.signing_alg),
            ));
        }
    }
    if let Err(problem) = crate::pages::Pages::new(&config.branding) {
        problems.push(config.problem(&format!("[branding] {}", problem.key), problem.message));
    }
    if problems.is_empty() {
        Ok(())
    } else {
        Err(ConfigError::new(problems))
    }
}

async fn purge_expired_records(
    store: Arc<dyn Store>,
    clock: Arc<dyn Clock>,
    idempotency_seconds: i64,
    jti_without_exp_retention_seconds: i64,
) {
    let mut interval = tokio::time::interval(PURGE_INTERVAL);
    loop {
        interval.tick().await;
        match store.purge_idempotency_records(clock.now() - idempotency_seconds).await {
            Ok(0) => {}
            Ok(n) => tracing::info!(purged = n, "expired consent idempotency keys purged"),
            Err(e) => tracing::warn!(error = %e, "purging consent idempotency keys failed"),
        }
        // Keep a day of margin beyond exp: clock skew is tolerated on exp checks. A request
        // without exp could be replayed at any time, so its jti is kept for the configured
        // retention, not for ever.
        match store.purge_expired_jtis(clock.now() - 86_400, clock.now() - jti_without_exp_retention_seconds).await {
            Ok(0) => {}
            Ok(n) => tracing::info!(purged = n, "expired replay records purged"),
            Err(e) => tracing::warn!(error = %e, "purging replay records failed"),
        }
        // Sessions and codes are useless once expired; an hour of margin keeps a code that
        // was just reused traceable to its grant while the reuse is investigated.
        match store.purge_expired_authorizations(clock.now() - 3_600).await {
            Ok(0) => {}
            Ok(n) => tracing::info!(purged = n, "expired authorization sessions and codes purged"),
            Err(e) => tracing::warn!(error = %e, "purging authorization sessions failed"),
        }
        match store.purge_expired_customer_sessions(clock.now()).await {
            Ok(0) => {}
            Ok(n) => tracing::info!(purged = n, "expired customer sessions purged"),
            Err(e) => tracing::warn!(error = %e, "purging customer sessions failed"),
        }
    }
}
