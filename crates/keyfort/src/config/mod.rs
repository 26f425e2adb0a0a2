//! Configuration: a TOML file, checked completely at start-up.
//!
//! Unknown keys are errors (a misspelt security setting must not be silently ignored), and
//! every problem in the file is reported in one run, each naming the file, the key and
//! what to do. The `[oauth.dcr]` keys keep the names of WSO2 Identity Server's
//! `deployment.toml` so an existing section carries over.
//!
//! Each section has one reader (a file here per concern) that takes its keys, each
//! deserialized into its type, and converts them into that section's part of [`Config`];
//! rules that span sections are checked where the later section is read. This module
//! depends on nothing else in the crate, so every other part may depend on it.

mod admin;
mod authorization;
mod branding;
mod consents;
mod customers;
mod dcr;
mod development;
mod environment;
mod error;
mod http_client;
mod loader;
mod mtls;
mod observability;
mod origins;
mod resource_server;
mod server;
mod sources;
mod storage;
mod telemetry;
mod token;
pub mod wso2;

#[cfg(test)]
mod tests;

use std::net::SocketAddr;
use std::path::Path;

use keyfort_core::registration::TokenLifetimes;

pub use admin::{AdminConfig, AdminListen, DEFAULT_ADMIN_LISTEN};
pub use authorization::{AuthorizationConfig, SubjectChoice};
pub use branding::{BrandingConfig, Colour};
pub use consents::ConsentsConfig;
pub use customers::CustomersConfig;
pub use dcr::{default_role_scopes, DcrConfig};
pub use development::{unsafe_settings, DevelopmentConfig, UnsafeSetting, SWITCH as DEVELOPMENT_SWITCH};
pub use error::{ConfigError, Problem};
pub use http_client::HttpClientConfig;
pub use mtls::{MtlsConfig, RevocationUnavailable};
pub use observability::{LogConfig, LogFormat};
pub use origins::{Origin, Origins};
pub use resource_server::ResourceServerConfig;
pub use server::{ClientAuthMode, ServerConfig};
pub use sources::KeySource;
pub use storage::{
    redact_url, KeyEncryptionSource, SecretText, SslMode, StorageConfig, DEFAULT_KEY_ENCRYPTION_KEY_FILE,
};
pub use telemetry::TelemetryConfig;
pub use token::TokenConfig;

use loader::{Paths, Problems, Section};

#[derive(Debug, Clone)]
pub struct Config {
    /// Where this configuration was read from (its file), named in every message about it.
    pub origin: String,
    pub server: ServerConfig,
    pub storage: StorageConfig,
    pub dcr: DcrConfig,
    pub token_lifetimes: TokenLifetimes,
    pub token: TokenConfig,
    pub http_client: HttpClientConfig,
    pub mtls: MtlsConfig,
    /// Where Prometheus metrics are served (plain HTTP); `None` disables them.
    pub metrics_listen: Option<SocketAddr>,
    pub log: LogConfig,
    pub admin: AdminConfig,
    pub authorization: AuthorizationConfig,
    pub branding: BrandingConfig,
    pub consents: ConsentsConfig,
    pub customers: CustomersConfig,
    pub resource_server: ResourceServerConfig,
    /// `[development]`: whether unsafe settings are meant (see [`unsafe_settings`]).
    pub development: DevelopmentConfig,
    /// `[telemetry]`: OpenTelemetry traces.
    pub telemetry: TelemetryConfig,
}

/// Whether the unsafe-settings rule ([`unsafe_settings`]) is checked while reading, or left
/// for later (after `serve --sandbox --dev` has applied its overrides).
#[derive(Clone, Copy, PartialEq, Eq)]
enum Safety {
    Check,
    Defer,
}

impl Config {
    /// Reads and checks a configuration file. Relative paths in it are taken relative to
    /// the file's own directory, so the server behaves the same from any working directory.
    pub fn load(path: &Path) -> Result<Self, ConfigError> {
        let origin = path.display().to_string();
        let text = std::fs::read_to_string(path)
            .map_err(|e| ConfigError::single(&origin, None, format!("cannot read the configuration file ({e})")))?;
        let base = path.parent().map(Path::to_path_buf).unwrap_or_default();
        Self::from_toml(&text, &origin, &base)
    }

    /// [`Config::load`] without the unsafe-settings rule, for a caller that changes the
    /// configuration first (`serve --sandbox --dev`) and then calls [`Config::check_safety`].
    pub fn load_deferring_safety(path: &Path) -> Result<Self, ConfigError> {
        let origin = path.display().to_string();
        let text = std::fs::read_to_string(path)
            .map_err(|e| ConfigError::single(&origin, None, format!("cannot read the configuration file ({e})")))?;
        let base = path.parent().map(Path::to_path_buf).unwrap_or_default();
        Self::from_toml_deferring_safety(&text, &origin, &base)
    }

    /// [`Config::from_toml`] without the unsafe-settings rule (see [`Config::load_deferring_safety`]).
    pub fn from_toml_deferring_safety(text: &str, origin: &str, base_dir: &Path) -> Result<Self, ConfigError> {
        let mut table = loader::parse(text, origin)?;
        let overrides = environment::apply(&mut table, process_environment());
        Self::read_table(table, origin, base_dir, overrides, Safety::Defer)
    }

    /// The unsafe-settings rule on its own: every [`unsafe_settings`] is a problem unless
    /// `[development] allow_unsafe_registration` is set.
    pub fn check_safety(&self) -> Result<(), ConfigError> {
        if self.development.allow_unsafe_registration {
            return Ok(());
        }
        let problems: Vec<Problem> =
            unsafe_settings(self).into_iter().map(|s| self.problem(s.key, unsafe_message(&s))).collect();
        if problems.is_empty() {
            Ok(())
        } else {
            Err(ConfigError::new(problems))
        }
    }

    /// Whether transport certificates can reach Keyfort at all: the TLS listener asks for
    /// them (a client CA), or a trusted gateway forwards them.
    pub fn certificates_possible(&self) -> bool {
        self.server.client_auth != ClientAuthMode::Off || self.mtls.gateway_header.is_some()
    }

    /// Parses and checks configuration text, with the overrides of this process's
    /// environment (`KEYFORT_SECTION__KEY`, see [`environment`]); `origin` names it in errors.
    pub fn from_toml(text: &str, origin: &str, base_dir: &Path) -> Result<Self, ConfigError> {
        Self::from_toml_with_env(text, origin, base_dir, process_environment())
    }

    /// [`Config::from_toml`] with the environment given as `(name, value)` pairs.
    pub fn from_toml_with_env(
        text: &str,
        origin: &str,
        base_dir: &Path,
        vars: impl IntoIterator<Item = (String, String)>,
    ) -> Result<Self, ConfigError> {
        let mut table = loader::parse(text, origin)?;
        // Applied to the table, overrides are then checked exactly like the file's own
        // values, and every problem about them names the variable.
        let overrides = environment::apply(&mut table, vars);
        Self::read_table(table, origin, base_dir, overrides, Safety::Check)
    }

    /// Checks a parsed configuration table and converts it, section by section, reporting
    /// every problem found.
    pub fn from_table(table: toml::Table, origin: &str, base_dir: &Path) -> Result<Self, ConfigError> {
        Self::read_table(table, origin, base_dir, environment::Overrides::default(), Safety::Check)
    }

    fn read_table(
        table: toml::Table,
        origin: &str,
        base_dir: &Path,
        overrides: environment::Overrides,
        safety: Safety,
    ) -> Result<Self, ConfigError> {
        let problems = Problems::with_sources(origin, overrides.sources);
        for (key, message) in overrides.problems {
            problems.add(key, message);
        }
        let paths = Paths::new(base_dir);
        let mut root = Section::root(&problems, table);

        let mut server_section = root.section("server");
        let tls = server::read_tls(server_section.section("tls"), &paths);
        let server = server::read(server_section, &tls, &paths);
        let public_url = server.as_ref().map(|s| s.public_url.as_str());
        let storage = storage::read(root.section("storage"), server.as_ref().map(|s| s.data_dir.as_path()), &paths);
        let http_client = http_client::read(root.section("http_client"), &paths);
        let mtls = mtls::read(root.section("mtls"), &tls, http_client.allow_insecure_loopback, &paths);

        let mut oauth = root.section("oauth");
        let dcr_context = dcr::DcrContext {
            public_url,
            certificates_possible: tls.client_auth != ClientAuthMode::Off || mtls.gateway_header.is_some(),
            allow_insecure_loopback: http_client.allow_insecure_loopback,
        };
        let certificates_possible = dcr_context.certificates_possible;
        let dcr = dcr::read(oauth.section("dcr"), &dcr_context, &paths);
        let token_lifetimes = token::read_lifetimes(oauth.section("token_lifetimes"));
        let token = token::read(oauth.section("token"), public_url, &paths);
        drop(oauth);

        let metrics_listen = observability::read_metrics(root.section("metrics"));
        let log = observability::read_log(root.section("log"));
        let admin = admin::read(root.section("admin"));
        if let (Some(server), AdminListen::Separate(address)) = (&server, admin.listen) {
            if address == server.listen && address.port() != 0 {
                problems.add(
                    Some("[admin] listen".to_owned()),
                    format!(
                        "{address} is [server] listen too: write \"public\" to serve /admin/* on the public listener, \
                         or give the admin API an address of its own"
                    ),
                );
            }
        }
        let authorization = authorization::read(root.section("authorization"));
        let branding = branding::read(root.section("branding"), &paths);
        let consents = consents::read(root.section("consents"));
        let customers = customers::read(root.section("customers"), public_url);
        let resource_server = resource_server::read(root.section("resource_server"), certificates_possible);
        let development = development::read(root.section("development"));
        let telemetry = telemetry::read(root.section("telemetry"));
        drop(root);

        let config = match (server, storage, dcr, token) {
            (Some(server), Some(storage), Some(dcr), Some(token)) => Some(Config {
                origin: origin.to_owned(),
                server,
                storage,
                dcr,
                token_lifetimes,
                token,
                http_client,
                mtls,
                metrics_listen,
                log,
                admin,
                authorization,
                branding,
                consents,
                customers,
                resource_server,
                development,
                telemetry,
            }),
            _ => None,
        };
        // Checked last, on the whole configuration: the rule spans sections, and a
        // configuration with other problems is refused anyway.
        if let Some(config) =
            config.as_ref().filter(|c| safety == Safety::Check && !c.development.allow_unsafe_registration)
        {
            for setting in unsafe_settings(config) {
                problems.add(Some(setting.key.to_owned()), unsafe_message(&setting));
            }
        }
        problems.into_result(config)
    }

    /// A problem with `key` of this configuration, found after it was loaded (by the
    /// preflight, which reads the files it names).
    pub fn problem(&self, key: &str, message: impl Into<String>) -> Problem {
        Problem::new(&self.origin, Some(key.to_owned()), message)
    }
}

/// The refusal of one unsafe setting, naming the development switch.
fn unsafe_message(setting: &UnsafeSetting) -> String {
    format!("{} (for a development server only, set {} to start anyway)", setting.why, development::SWITCH)
}

/// This process's `KEYFORT_*` configuration variables (and the others, filtered later).
fn process_environment() -> impl Iterator<Item = (String, String)> {
    std::env::vars_os().filter_map(|(name, value)| {
        let name = name.into_string().ok()?;
        Some((name, value.to_string_lossy().into_owned()))
    })
}
