//! One SQL implementation of [`Store`] for both databases. The statements use `$n`
//! placeholders, which SQLite and PostgreSQL both accept, and a macro instantiates the
//! implementation per driver so the two cannot drift apart.

use std::str::FromStr;
use std::time::Duration;

use async_trait::async_trait;
use keyfort_core::clock::UnixTime;
use keyfort_core::registration::{ClientMetadata, ClientStatus, RegisteredClient};
use keyfort_core::secret::SecretHash;
use sqlx::postgres::PgPoolOptions;
use sqlx::sqlite::{SqliteConnectOptions, SqliteJournalMode, SqlitePoolOptions, SqliteSynchronous};
use sqlx::Row;

use super::{
    AuditEvent, ClientFilter, CreateAdminError, CreateClientError, JtiError, ReplayRecord, Store, StoreError,
    StoredSigningKey,
};
use keyfort_core::registration::BoundCertificate;

const CLIENT_COLUMNS: &str = "client_id, status, issued_at, software_id, org_id, software_roles, \
     software_statement, metadata, client_secret_hash, registration_token_hash, transport_cert_thumbprint, \
     transport_cert_subject";

fn is_unique_violation(e: &sqlx::Error) -> bool {
    matches!(e, sqlx::Error::Database(db) if db.is_unique_violation())
}

fn client_from_row<R: Row>(row: &R) -> Result<RegisteredClient, StoreError>
where
    for<'a> &'a str: sqlx::ColumnIndex<R>,
    for<'a> String: sqlx::Decode<'a, R::Database> + sqlx::Type<R::Database>,
    for<'a> Option<String>: sqlx::Decode<'a, R::Database> + sqlx::Type<R::Database>,
    for<'a> i64: sqlx::Decode<'a, R::Database> + sqlx::Type<R::Database>,
{
    let client_id: String = row.try_get("client_id")?;
    let corrupt = |what: &str, e: String| StoreError(format!("client {client_id}: stored {what} is unreadable: {e}"));
    let status: String = row.try_get("status")?;
    let metadata: String = row.try_get("metadata")?;
    let roles: String = row.try_get("software_roles")?;
    Ok(RegisteredClient {
        status: ClientStatus::parse(&status).ok_or_else(|| corrupt("status", status.clone()))?,
        client_id_issued_at: row.try_get("issued_at")?,
        software_id: row.try_get("software_id")?,
        org_id: row.try_get("org_id")?,
        software_roles: serde_json::from_str(&roles).map_err(|e| corrupt("software_roles", e.to_string()))?,
        software_statement: row.try_get("software_statement")?,
        metadata: serde_json::from_str::<ClientMetadata>(&metadata).map_err(|e| corrupt("metadata", e.to_string()))?,
        client_secret_hash: row.try_get::<Option<String>, _>("client_secret_hash")?.map(SecretHash::from_stored),
        registration_access_token_hash: SecretHash::from_stored(row.try_get("registration_token_hash")?),
        transport_certificate: match (
            row.try_get::<Option<String>, _>("transport_cert_thumbprint")?,
            row.try_get::<Option<String>, _>("transport_cert_subject")?,
        ) {
            (Some(thumbprint_s256), Some(subject)) => Some(BoundCertificate { thumbprint_s256, subject }),
            _ => None,
        },
        client_id,
    })
}

/// Inserts a replay record; a duplicate (issuer, jti) is a replay. A macro rather than a
/// generic function because sqlx executors and `async_trait` lifetimes do not mix.
macro_rules! insert_jti {
    ($executor:expr, $replay:expr) => {
        sqlx::query("INSERT INTO used_jtis (issuer, jti, expires_at, recorded_at) VALUES ($1, $2, $3, $4)")
            .bind(&$replay.issuer)
            .bind(&$replay.jti)
            .bind($replay.expires_at)
            .bind($replay.recorded_at)
            .execute($executor)
            .await
            .map(|_| ())
            .map_err(|e| {
                if is_unique_violation(&e) {
                    CreateClientError::JtiReplayed
                } else {
                    CreateClientError::Store(StoreError::from(e))
                }
            })
    };
}

/// Inserts an audit line (a macro for the same reason as `insert_jti`).
macro_rules! insert_audit {
    ($executor:expr, $e:expr) => {
        sqlx::query(
            "INSERT INTO audit_events (at, action, outcome, client_id, software_id, org_id, cert_thumbprint, \
             cert_subject, peer, detail) VALUES ($1, $2, $3, $4, $5, $6, $7, $8, $9, $10)",
        )
        .bind($e.at)
        .bind(&$e.action)
        .bind(&$e.outcome)
        .bind(&$e.client_id)
        .bind(&$e.software_id)
        .bind(&$e.org_id)
        .bind(&$e.cert_thumbprint)
        .bind(&$e.cert_subject)
        .bind(&$e.peer)
        .bind(&$e.detail)
        .execute($executor)
        .await
        .map(|_| ())
        .map_err(StoreError::from)
    };
}

macro_rules! sql_store {
    ($store:ident) => {
        #[async_trait]
        impl Store for $store {
            async fn create_client(
                &self,
                client: &RegisteredClient,
                replay: &ReplayRecord,
                one_per_software: bool,
                audit: &AuditEvent,
            ) -> Result<(), CreateClientError> {
                let metadata = serde_json::to_string(&client.metadata).map_err(|e| StoreError(e.to_string()))?;
                let roles = serde_json::to_string(&client.software_roles).map_err(|e| StoreError(e.to_string()))?;
                let active_software_id = client.software_id.as_deref().filter(|_| one_per_software);

                let mut tx = self.pool.begin().await.map_err(StoreError::from)?;
                insert_jti!(&mut *tx, replay)?;
                sqlx::query(
                    "INSERT INTO clients (client_id, status, issued_at, updated_at, software_id, org_id, \
                     active_software_id, software_roles, software_statement, metadata, client_secret_hash, \
                     registration_token_hash, transport_cert_thumbprint, transport_cert_subject) \
                     VALUES ($1, $2, $3, $3, $4, $5, $6, $7, $8, $9, $10, $11, $12, $13)",
                )
                .bind(&client.client_id)
                .bind(client.status.as_str())
                .bind(client.client_id_issued_at)
                .bind(&client.software_id)
                .bind(&client.org_id)
                .bind(active_software_id)
                .bind(roles)
                .bind(&client.software_statement)
                .bind(metadata)
                .bind(client.client_secret_hash.as_ref().map(|h| h.as_str()))
                .bind(client.registration_access_token_hash.as_str())
                .bind(client.transport_certificate.as_ref().map(|c| c.thumbprint_s256.as_str()))
                .bind(client.transport_certificate.as_ref().map(|c| c.subject.as_str()))
                .execute(&mut *tx)
                .await
                .map_err(|e| {
                    if is_unique_violation(&e) {
                        CreateClientError::SoftwareAlreadyRegistered
                    } else {
                        StoreError::from(e).into()
                    }
                })?;
                insert_audit!(&mut *tx, audit)?;
                tx.commit().await.map_err(StoreError::from)?;
                Ok(())
            }

            async fn find_client(&self, client_id: &str) -> Result<Option<RegisteredClient>, StoreError> {
                let row = sqlx::query(&format!("SELECT {CLIENT_COLUMNS} FROM clients WHERE client_id = $1"))
                    .bind(client_id)
                    .fetch_optional(&self.pool)
                    .await?;
                row.as_ref().map(client_from_row).transpose()
            }

            async fn update_client(
                &self,
                client: &RegisteredClient,
                replay: &ReplayRecord,
                now: UnixTime,
                audit: &AuditEvent,
            ) -> Result<(), CreateClientError> {
                let metadata = serde_json::to_string(&client.metadata).map_err(|e| StoreError(e.to_string()))?;
                let roles = serde_json::to_string(&client.software_roles).map_err(|e| StoreError(e.to_string()))?;
                let mut tx = self.pool.begin().await.map_err(StoreError::from)?;
                insert_jti!(&mut *tx, replay)?;
                let updated = sqlx::query(
                    "UPDATE clients SET updated_at = $2, software_roles = $3, software_statement = $4, metadata = $5, \
                     transport_cert_thumbprint = $6, transport_cert_subject = $7 WHERE client_id = $1 AND status = 'active'",
                )
                .bind(&client.client_id)
                .bind(now)
                .bind(roles)
                .bind(&client.software_statement)
                .bind(metadata)
                .bind(client.transport_certificate.as_ref().map(|c| c.thumbprint_s256.as_str()))
                .bind(client.transport_certificate.as_ref().map(|c| c.subject.as_str()))
                .execute(&mut *tx)
                .await
                .map_err(StoreError::from)?;
                if updated.rows_affected() != 1 {
                    return Err(StoreError(format!("client {} is not active", client.client_id)).into());
                }
                insert_audit!(&mut *tx, audit)?;
                tx.commit().await.map_err(StoreError::from)?;
                Ok(())
            }

            async fn delete_client(&self, client_id: &str, now: UnixTime, audit: &AuditEvent) -> Result<bool, StoreError> {
                let mut tx = self.pool.begin().await?;
                let done = sqlx::query(
                    "UPDATE clients SET status = 'deleted', active_software_id = NULL, updated_at = $2 \
                     WHERE client_id = $1 AND status IN ('active', 'suspended')",
                )
                .bind(client_id)
                .bind(now)
                .execute(&mut *tx)
                .await?;
                if done.rows_affected() != 1 {
                    return Ok(false);
                }
                insert_audit!(&mut *tx, audit)?;
                tx.commit().await?;
                Ok(true)
            }

            async fn set_client_status(
                &self,
                client_id: &str,
                from: ClientStatus,
                to: ClientStatus,
                now: UnixTime,
                audit: &AuditEvent,
            ) -> Result<bool, StoreError> {
                let mut tx = self.pool.begin().await?;
                let done = sqlx::query("UPDATE clients SET status = $3, updated_at = $4 WHERE client_id = $1 AND status = $2")
                    .bind(client_id)
                    .bind(from.as_str())
                    .bind(to.as_str())
                    .bind(now)
                    .execute(&mut *tx)
                    .await?;
                if done.rows_affected() != 1 {
                    return Ok(false);
                }
                insert_audit!(&mut *tx, audit)?;
                tx.commit().await?;
                Ok(true)
            }

            async fn list_clients(&self, f: &ClientFilter) -> Result<Vec<RegisteredClient>, StoreError> {
                let rows = sqlx::query(&format!(
                    "SELECT {CLIENT_COLUMNS} FROM clients WHERE ($1 IS NULL OR org_id = $1) AND ($2 IS NULL OR software_id = $2) \
                     AND ($3 IS NULL OR status = $3) AND ($4 IS NULL OR issued_at > $4) AND ($5 IS NULL OR issued_at < $5) \
                     ORDER BY issued_at DESC, client_id LIMIT $6"
                ))
                .bind(&f.org_id)
                .bind(&f.software_id)
                .bind(f.status.map(ClientStatus::as_str))
                .bind(f.registered_after)
                .bind(f.registered_before)
                .bind(f.limit)
                .fetch_all(&self.pool)
                .await?;
                rows.iter().map(client_from_row).collect()
            }

            async fn record_jti(&self, replay: &ReplayRecord) -> Result<(), JtiError> {
                insert_jti!(&self.pool, replay).map_err(|e| match e {
                    CreateClientError::JtiReplayed => JtiError::Replayed,
                    CreateClientError::Store(s) => JtiError::Store(s),
                    CreateClientError::SoftwareAlreadyRegistered => JtiError::Store(StoreError("unexpected".into())),
                })
            }

            async fn revoke_token(&self, jti: &str, client_id: &str, expires_at: UnixTime) -> Result<(), StoreError> {
                sqlx::query(
                    "INSERT INTO revoked_tokens (jti, client_id, expires_at) VALUES ($1, $2, $3) ON CONFLICT (jti) DO NOTHING",
                )
                .bind(jti)
                .bind(client_id)
                .bind(expires_at)
                .execute(&self.pool)
                .await?;
                Ok(())
            }

            async fn is_token_revoked(&self, jti: &str) -> Result<bool, StoreError> {
                let row = sqlx::query("SELECT 1 FROM revoked_tokens WHERE jti = $1").bind(jti).fetch_optional(&self.pool).await?;
                Ok(row.is_some())
            }

            async fn signing_keys(&self) -> Result<Vec<StoredSigningKey>, StoreError> {
                let rows = sqlx::query(
                    "SELECT kid, alg, private_key, created_at, activates_at FROM signing_keys ORDER BY activates_at, kid",
                )
                .fetch_all(&self.pool)
                .await?;
                rows.iter()
                    .map(|r| {
                        Ok(StoredSigningKey {
                            kid: r.try_get("kid")?,
                            alg: r.try_get("alg")?,
                            private_key_pkcs8_b64: r.try_get("private_key")?,
                            created_at: r.try_get("created_at")?,
                            activates_at: r.try_get("activates_at")?,
                        })
                    })
                    .collect()
            }

            async fn add_signing_key(&self, key: &StoredSigningKey) -> Result<(), StoreError> {
                sqlx::query(
                    "INSERT INTO signing_keys (kid, alg, private_key, created_at, activates_at) VALUES ($1, $2, $3, $4, $5)",
                )
                .bind(&key.kid)
                .bind(&key.alg)
                .bind(&key.private_key_pkcs8_b64)
                .bind(key.created_at)
                .bind(key.activates_at)
                .execute(&self.pool)
                .await?;
                Ok(())
            }

            async fn record_audit(&self, e: &AuditEvent) -> Result<(), StoreError> {
                insert_audit!(&self.pool, e)
            }

            async fn audit_events(&self, client_id: Option<&str>, limit: i64) -> Result<Vec<AuditEvent>, StoreError> {
                let rows = sqlx::query(
                    "SELECT at, action, outcome, client_id, software_id, org_id, cert_thumbprint, cert_subject, peer, detail \
                     FROM audit_events WHERE ($1 IS NULL OR client_id = $1) ORDER BY id DESC LIMIT $2",
                )
                .bind(client_id)
                .bind(limit)
                .fetch_all(&self.pool)
                .await?;
                rows.iter()
                    .map(|r| {
                        Ok(AuditEvent {
                            at: r.try_get("at")?,
                            action: r.try_get("action")?,
                            outcome: r.try_get("outcome")?,
                            client_id: r.try_get("client_id")?,
                            software_id: r.try_get("software_id")?,
                            org_id: r.try_get("org_id")?,
                            cert_thumbprint: r.try_get("cert_thumbprint")?,
                            cert_subject: r.try_get("cert_subject")?,
                            peer: r.try_get("peer")?,
                            detail: r.try_get("detail")?,
                        })
                    })
                    .collect()
            }

            async fn purge_expired_jtis(&self, before: UnixTime) -> Result<u64, StoreError> {
                let done = sqlx::query("DELETE FROM used_jtis WHERE expires_at IS NOT NULL AND expires_at < $1")
                    .bind(before)
                    .execute(&self.pool)
                    .await?;
                Ok(done.rows_affected())
            }

            async fn create_admin(
                &self,
                username: &str,
                password_hash: &str,
                now: UnixTime,
            ) -> Result<(), CreateAdminError> {
                sqlx::query("INSERT INTO admins (username, password_hash, created_at) VALUES ($1, $2, $3)")
                    .bind(username)
                    .bind(password_hash)
                    .bind(now)
                    .execute(&self.pool)
                    .await
                    .map_err(|e| {
                        if is_unique_violation(&e) {
                            CreateAdminError::AdminExists
                        } else {
                            StoreError::from(e).into()
                        }
                    })?;
                Ok(())
            }

            async fn admin_password_hash(&self, username: &str) -> Result<Option<String>, StoreError> {
                let row = sqlx::query("SELECT password_hash FROM admins WHERE username = $1")
                    .bind(username)
                    .fetch_optional(&self.pool)
                    .await?;
                Ok(row.map(|r| r.try_get("password_hash")).transpose()?)
            }

            async fn ping(&self) -> Result<(), StoreError> {
                sqlx::query("SELECT 1").execute(&self.pool).await?;
                Ok(())
            }
        }
    };
}

/// The embedded default: one SQLite file in WAL mode with `synchronous = FULL`, so a
/// committed registration survives a crash or power loss, not only a process exit.
pub struct SqliteStore {
    pool: sqlx::SqlitePool,
}

impl SqliteStore {
    pub async fn open(url: &str) -> anyhow::Result<Self> {
        let options = SqliteConnectOptions::from_str(url)?
            .create_if_missing(true)
            .journal_mode(SqliteJournalMode::Wal)
            .synchronous(SqliteSynchronous::Full)
            .busy_timeout(Duration::from_secs(5))
            .foreign_keys(true);
        if let Some(dir) = options.get_filename().parent() {
            if !dir.as_os_str().is_empty() {
                std::fs::create_dir_all(dir)
                    .map_err(|e| anyhow::anyhow!("cannot create the database directory {}: {e}", dir.display()))?;
            }
        }
        let pool = SqlitePoolOptions::new()
            .max_connections(4)
            .connect_with(options)
            .await
            .map_err(|e| anyhow::anyhow!("cannot open the SQLite database {url}: {e}"))?;
        sqlx::migrate!("./migrations/sqlite").run(&pool).await?;
        Ok(Self { pool })
    }
}

sql_store!(SqliteStore);
super::authorization::sql_authorization_store!(SqliteStore);

/// PostgreSQL, for deployments with several Keyfort nodes sharing one database.
pub struct PostgresStore {
    pool: sqlx::PgPool,
}

impl PostgresStore {
    pub async fn open(url: &str) -> anyhow::Result<Self> {
        let pool = PgPoolOptions::new()
            .max_connections(16)
            .acquire_timeout(Duration::from_secs(5))
            .connect(url)
            .await
            .map_err(|e| anyhow::anyhow!("cannot connect to PostgreSQL at {}: {e}", crate::config::redact_url(url)))?;
        sqlx::migrate!("./migrations/postgres").run(&pool).await?;
        Ok(Self { pool })
    }
}

sql_store!(PostgresStore);
super::authorization::sql_authorization_store!(PostgresStore);
