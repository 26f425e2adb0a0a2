//! `[storage]`: the database, its connection pool, and TLS to PostgreSQL.

use std::path::{Path, PathBuf};
use std::time::Duration;

use serde::Deserialize;
use url::Url;

use super::loader::{Paths, Section};

/// How Keyfort reaches its database.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct StorageConfig {
    /// `sqlite://PATH` or `postgres://...`.
    pub url: String,
    /// Whether `serve` applies pending migrations at start; when not, it refuses to start
    /// until `keyfort migrate` has applied them.
    pub migrate_on_start: bool,
    /// Connections in the pool; `None`: 4 for SQLite (one writer at a time anyway), 16 for
    /// PostgreSQL.
    pub pool_size: Option<u32>,
    /// How long a request waits for a pooled connection before it fails (503).
    pub acquire_timeout: Duration,
    /// PostgreSQL `statement_timeout`: a statement running longer is cancelled. `None`: no
    /// limit.
    pub statement_timeout: Option<Duration>,
    /// PostgreSQL TLS mode; `None` keeps what the URL says (libpq's default, `prefer`).
    pub sslmode: Option<SslMode>,
    /// PEM file of the CA(s) the PostgreSQL server's certificate must chain to.
    pub ssl_root_cert: Option<PathBuf>,
    /// Where the key-encryption key of the signing keys at rest comes from.
    pub key_encryption: KeyEncryptionSource,
}

/// The key-encryption key (AES-256, base64) that wraps the signing keys stored in the
/// database, so that a database backup alone cannot mint tokens.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum KeyEncryptionSource {
    /// The default: `<data_dir>/key-encryption.key`, created (owner-only) on first start.
    DataDir(PathBuf),
    /// `[storage] key_encryption_key_file`: a file the operator provides; never created.
    File(PathBuf),
    /// `[storage] key_encryption_key` (in practice `KEYFORT_STORAGE__KEY_ENCRYPTION_KEY`).
    Value(SecretText),
}

/// Text that must not be printed: its `Debug` says only that it is there.
#[derive(Clone, PartialEq, Eq)]
pub struct SecretText(pub String);

impl std::fmt::Debug for SecretText {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str("SecretText(<redacted>)")
    }
}

/// The key-encryption key's file name in the data directory.
pub const DEFAULT_KEY_ENCRYPTION_KEY_FILE: &str = "key-encryption.key";

impl StorageConfig {
    /// Defaults for `url`, as a configuration without other `[storage]` keys gives them.
    pub fn for_url(url: impl Into<String>) -> Self {
        Self {
            url: url.into(),
            migrate_on_start: true,
            pool_size: None,
            acquire_timeout: Duration::from_secs(5),
            statement_timeout: Some(Duration::from_secs(30)),
            sslmode: None,
            ssl_root_cert: None,
            key_encryption: KeyEncryptionSource::DataDir(PathBuf::from("data").join(DEFAULT_KEY_ENCRYPTION_KEY_FILE)),
        }
    }

    pub fn is_postgres(&self) -> bool {
        self.url.starts_with("postgres://") || self.url.starts_with("postgresql://")
    }
}

/// libpq's `sslmode` values.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Deserialize)]
#[serde(rename_all = "kebab-case")]
pub enum SslMode {
    Disable,
    Prefer,
    Require,
    VerifyCa,
    VerifyFull,
}

/// `[storage]`; `None` when the URL is left to its default but `[server]` (its `data_dir`)
/// could not be read.
pub(super) fn read(mut s: Section<'_>, data_dir: Option<&Path>, paths: &Paths<'_>) -> Option<StorageConfig> {
    let url = match s.take::<String>("url") {
        Some(url) => {
            if !(url.starts_with("sqlite:") || url.starts_with("postgres://") || url.starts_with("postgresql://")) {
                s.problem("url", format!("\"{}\" must start with sqlite:// or postgres://", redact_url(&url)));
            }
            Some(url)
        }
        None => data_dir.map(|dir| format!("sqlite://{}", dir.join("keyfort.db").display())),
    };
    let defaults = StorageConfig::for_url("");
    let migrate_on_start = s.take::<bool>("migrate_on_start").unwrap_or(defaults.migrate_on_start);
    let pool_size = s.has("pool_size").then(|| s.take_in_range("pool_size", 16, 1..=1000));
    let acquire_timeout = Duration::from_secs(s.take_in_range("acquire_timeout_seconds", 5, 1..=300));
    let statement_timeout = match s.take_in_range("statement_timeout_seconds", 30, 0..=86_400) {
        0 => None,
        seconds => Some(Duration::from_secs(seconds)),
    };
    let sslmode = s.take_described::<SslMode>(
        "sslmode",
        "a PostgreSQL sslmode: \"disable\", \"prefer\", \"require\", \"verify-ca\" or \"verify-full\"",
    );
    let ssl_root_cert = s.take::<PathBuf>("ssl_root_cert").map(|p| paths.resolve(p));
    let kek_file = s.take::<PathBuf>("key_encryption_key_file").map(|p| paths.resolve(p));
    let kek_value = s.take::<String>("key_encryption_key");
    let key_encryption = match (kek_file, kek_value) {
        (Some(_), Some(value)) => {
            s.problem(
                "key_encryption_key",
                "and key_encryption_key_file are both set: give the key-encryption key one way (a file is better: \
                 it keeps the key out of the environment)",
            );
            KeyEncryptionSource::Value(SecretText(value))
        }
        (Some(path), None) => KeyEncryptionSource::File(path),
        (None, Some(value)) => KeyEncryptionSource::Value(SecretText(value)),
        (None, None) => KeyEncryptionSource::DataDir(
            data_dir
                .map(Path::to_path_buf)
                .unwrap_or_else(|| PathBuf::from("data"))
                .join(DEFAULT_KEY_ENCRYPTION_KEY_FILE),
        ),
    };
    let url = url?;
    let config = StorageConfig {
        url,
        migrate_on_start,
        pool_size,
        acquire_timeout,
        statement_timeout,
        sslmode,
        ssl_root_cert,
        key_encryption,
    };
    if !config.is_postgres() {
        for key in ["sslmode", "ssl_root_cert"] {
            let set = match key {
                "sslmode" => config.sslmode.is_some(),
                _ => config.ssl_root_cert.is_some(),
            };
            if set {
                s.problem(key, "applies to PostgreSQL only; the configured url is SQLite");
            }
        }
    }
    if config.ssl_root_cert.is_some()
        && matches!(config.sslmode, Some(SslMode::Disable | SslMode::Prefer | SslMode::Require))
    {
        s.problem(
            "ssl_root_cert",
            "is only used to verify the server: set sslmode = \"verify-full\" (or \"verify-ca\") with it",
        );
    }
    Some(config)
}

/// Hides the password of a database URL in messages.
pub fn redact_url(url: &str) -> String {
    match Url::parse(url) {
        Ok(mut u) if u.password().is_some() => {
            let _ = u.set_password(Some("***"));
            u.to_string()
        }
        _ => url.to_owned(),
    }
}
