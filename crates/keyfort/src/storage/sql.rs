//! One SQL implementation of [`Store`] for both databases. The statements use `$n`
//! placeholders, which SQLite and PostgreSQL both accept, and a macro instantiates the
//! implementation per driver so the two cannot drift apart.

use std::str::FromStr;
use std::time::Duration;

use async_trait::async_trait;
use keyfort_core::clock::UnixTime;
use keyfort_core::registration::{ClientMetadata, ClientStatus, RegisteredClient};
use keyfort_core::secret::SecretHash;
use sqlx::postgres::{PgConnectOptions, PgPoolOptions, PgSslMode};
use sqlx::sqlite::{SqliteConnectOptions, SqliteJournalMode, SqlitePoolOptions, SqliteSynchronous};
use sqlx::{Connection, Row};

use keyfort_core::consent::{Consent, ConsentRequest, ConsentStatus, ConsentType};

use super::group_commit::{BoxFuture, GroupCommit};
use super::{
    migrations, AddAccountError, AdminSignInState, AuditEvent, AuditFilter, ClientFilter, ConsentFilter,
    ConsentStatusChange, CreateAdminError, CreateClientError, CreateConsentError, CreateCustomerError, CustomerAccount,
    IdempotencyRecord, JtiError, MigrationReport, PoolStatus, ReplayRecord, Store, StoreError, StoredCustomer,
    StoredSigningKey,
};
use crate::config::{SslMode, StorageConfig};
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

const AUDIT_COLUMNS: &str =
    "at, action, outcome, client_id, software_id, org_id, cert_thumbprint, cert_subject, peer, detail, consent_id, customer_id";

fn audit_from_row<R: Row>(r: &R) -> Result<AuditEvent, StoreError>
where
    for<'a> &'a str: sqlx::ColumnIndex<R>,
    for<'a> String: sqlx::Decode<'a, R::Database> + sqlx::Type<R::Database>,
    for<'a> Option<String>: sqlx::Decode<'a, R::Database> + sqlx::Type<R::Database>,
    for<'a> i64: sqlx::Decode<'a, R::Database> + sqlx::Type<R::Database>,
{
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
        consent_id: r.try_get("consent_id")?,
        customer_id: r.try_get("customer_id")?,
    })
}

const CONSENT_COLUMNS: &str =
    "consent_id, consent_type, client_id, status, created_at, status_updated_at, expires_at, request, customer_id, account_ids";

fn consent_from_row<R: Row>(row: &R) -> Result<Consent, StoreError>
where
    for<'a> &'a str: sqlx::ColumnIndex<R>,
    for<'a> String: sqlx::Decode<'a, R::Database> + sqlx::Type<R::Database>,
    for<'a> Option<String>: sqlx::Decode<'a, R::Database> + sqlx::Type<R::Database>,
    for<'a> i64: sqlx::Decode<'a, R::Database> + sqlx::Type<R::Database>,
    for<'a> Option<i64>: sqlx::Decode<'a, R::Database> + sqlx::Type<R::Database>,
{
    let id: String = row.try_get("consent_id")?;
    let corrupt = |what: &str, e: String| StoreError(format!("consent {id}: stored {what} is unreadable: {e}"));
    let kind: String = row.try_get("consent_type")?;
    let kind = ConsentType::parse(&kind).ok_or_else(|| corrupt("type", kind.clone()))?;
    let status: String = row.try_get("status")?;
    let status = ConsentStatus::parse(&status).ok_or_else(|| corrupt("status", status.clone()))?;
    let request: String = row.try_get("request")?;
    // The request passed these checks when it was accepted; they hold for it still.
    let request = ConsentRequest::parse(kind, request.as_bytes()).map_err(|e| corrupt("request", e.describe()))?;
    let account_ids: String = row.try_get("account_ids")?;
    Ok(Consent {
        kind,
        client_id: row.try_get("client_id")?,
        status,
        created_at: row.try_get("created_at")?,
        status_updated_at: row.try_get("status_updated_at")?,
        expires_at: row.try_get("expires_at")?,
        request,
        customer_id: row.try_get("customer_id")?,
        account_ids: serde_json::from_str(&account_ids).map_err(|e| corrupt("account_ids", e.to_string()))?,
        id,
    })
}

const CUSTOMER_COLUMNS: &str =
    "customer_id, username, password_hash, totp_secret, totp_last_step, failed_logins, locked_until, created_at";

fn customer_from_row<R: Row>(r: &R) -> Result<StoredCustomer, StoreError>
where
    for<'a> &'a str: sqlx::ColumnIndex<R>,
    for<'a> String: sqlx::Decode<'a, R::Database> + sqlx::Type<R::Database>,
    for<'a> Option<String>: sqlx::Decode<'a, R::Database> + sqlx::Type<R::Database>,
    for<'a> i64: sqlx::Decode<'a, R::Database> + sqlx::Type<R::Database>,
    for<'a> Option<i64>: sqlx::Decode<'a, R::Database> + sqlx::Type<R::Database>,
{
    Ok(StoredCustomer {
        customer_id: r.try_get("customer_id")?,
        username: r.try_get("username")?,
        password_hash: r.try_get("password_hash")?,
        totp_secret: r.try_get("totp_secret")?,
        totp_last_step: r.try_get("totp_last_step")?,
        failed_logins: r.try_get("failed_logins")?,
        locked_until: r.try_get("locked_until")?,
        created_at: r.try_get("created_at")?,
    })
}

const ACCOUNT_COLUMNS: &str =
    "account_id, customer_id, name, scheme, identification, secondary_identification, currency";

fn account_from_row<R: Row>(r: &R) -> Result<CustomerAccount, StoreError>
where
    for<'a> &'a str: sqlx::ColumnIndex<R>,
    for<'a> String: sqlx::Decode<'a, R::Database> + sqlx::Type<R::Database>,
    for<'a> Option<String>: sqlx::Decode<'a, R::Database> + sqlx::Type<R::Database>,
{
    Ok(CustomerAccount {
        account_id: r.try_get("account_id")?,
        customer_id: r.try_get("customer_id")?,
        name: r.try_get("name")?,
        scheme: r.try_get("scheme")?,
        identification: r.try_get("identification")?,
        secondary_identification: r.try_get("secondary_identification")?,
        currency: r.try_get("currency")?,
    })
}

fn json_text<T: serde::Serialize + ?Sized>(value: &T) -> Result<String, StoreError> {
    serde_json::to_string(value).map_err(|e| StoreError(e.to_string()))
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

/// Audit lines in one multi-row insert: 12 values each, far below the bound parameters
/// SQLite (32,766) and PostgreSQL (65,535) accept in one statement.
const AUDIT_LINES_PER_INSERT: usize = 128;

/// Inserts an audit line, every field capped (a macro for the same reason as `insert_jti`).
macro_rules! insert_audit {
    ($executor:expr, $e:expr) => {{
        let capped = $e.capped();
        let e = &capped;
        sqlx::query(
            "INSERT INTO audit_events (at, action, outcome, client_id, software_id, org_id, cert_thumbprint, \
             cert_subject, peer, detail, consent_id, customer_id) VALUES ($1, $2, $3, $4, $5, $6, $7, $8, $9, $10, $11, $12)",
        )
        .bind(e.at)
        .bind(&e.action)
        .bind(&e.outcome)
        .bind(&e.client_id)
        .bind(&e.software_id)
        .bind(&e.org_id)
        .bind(&e.cert_thumbprint)
        .bind(&e.cert_subject)
        .bind(&e.peer)
        .bind(&e.detail)
        .bind(&e.consent_id)
        .bind(&e.customer_id)
        .execute($executor)
        .await
        .map(|_| ())
        .map_err(StoreError::from)
    }};
}

/// `$store`'s `Store` implementation. `$first_key_lock` is a statement run first in the
/// transaction that creates the first signing key, when the database needs one to make
/// "insert only if the table is empty" atomic across connections (PostgreSQL: a table lock;
/// SQLite serialises writers already). `$migrator` makes the driver's migrations.
macro_rules! sql_store {
    ($store:ident, first_key_lock: $first_key_lock:expr, migrator: $migrator:expr) => {
        impl $store {
            /// Applies the pending migrations (`migrate`), or refuses a database that lacks
            /// one.
            pub(super) async fn prepare(&self, migrate: bool) -> anyhow::Result<()> {
                let migrator = migrations::prepared($migrator);
                if migrate {
                    migrations::run(&self.pool, &migrator).await
                } else {
                    migrations::require_current(&self.pool, &migrator).await
                }
            }

            pub(super) async fn migration_report(&self, apply: bool) -> anyhow::Result<MigrationReport> {
                migrations::report(&self.pool, &migrations::prepared($migrator), apply).await
            }

            /// Opens the database with the defaults of a configuration naming only `url`,
            /// and applies the migrations.
            pub async fn open(url: &str) -> anyhow::Result<Self> {
                let store = Self::connect(&StorageConfig::for_url(url)).await?;
                store.prepare(true).await?;
                Ok(store)
            }
        }

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

                let (client, replay, audit) = (client.clone(), replay.clone(), audit.clone());
                let active_software_id = active_software_id.map(str::to_owned);
                self.write(move |tx| Box::pin(async move {
                insert_jti!(&mut *tx, &replay)?;
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
                insert_audit!(&mut *tx, &audit)?;
                Ok(())
                })).await
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
                let (client, replay, audit) = (client.clone(), replay.clone(), audit.clone());
                self.write(move |tx| Box::pin(async move {
                insert_jti!(&mut *tx, &replay)?;
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
                insert_audit!(&mut *tx, &audit)?;
                Ok(())
                })).await
            }

            async fn delete_client(&self, client_id: &str, now: UnixTime, audit: &AuditEvent) -> Result<bool, StoreError> {
                let (client_id, audit) = (client_id.to_owned(), audit.clone());
                self.write(move |tx| Box::pin(async move {
                let done = sqlx::query(
                    "UPDATE clients SET status = 'deleted', active_software_id = NULL, updated_at = $2 \
                     WHERE client_id = $1 AND status IN ('active', 'suspended')",
                )
                .bind(&client_id)
                .bind(now)
                .execute(&mut *tx)
                .await?;
                if done.rows_affected() != 1 {
                    return Ok(false);
                }
                insert_audit!(&mut *tx, &audit)?;
                Ok(true)
                })).await
            }

            async fn set_client_status(
                &self,
                client_id: &str,
                from: ClientStatus,
                to: ClientStatus,
                now: UnixTime,
                audit: &AuditEvent,
            ) -> Result<bool, StoreError> {
                let (client_id, audit) = (client_id.to_owned(), audit.clone());
                self.write(move |tx| Box::pin(async move {
                let done = sqlx::query("UPDATE clients SET status = $3, updated_at = $4 WHERE client_id = $1 AND status = $2")
                    .bind(&client_id)
                    .bind(from.as_str())
                    .bind(to.as_str())
                    .bind(now)
                    .execute(&mut *tx)
                    .await?;
                if done.rows_affected() != 1 {
                    return Ok(false);
                }
                insert_audit!(&mut *tx, &audit)?;
                Ok(true)
                })).await
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
                let replay = replay.clone();
                let recorded: Result<(), CreateClientError> =
                    self.write(move |tx| Box::pin(async move { insert_jti!(&mut *tx, &replay) })).await;
                recorded.map_err(|e| match e {
                    CreateClientError::JtiReplayed => JtiError::Replayed,
                    CreateClientError::Store(s) => JtiError::Store(s),
                    CreateClientError::SoftwareAlreadyRegistered => JtiError::Store(StoreError("unexpected".into())),
                })
            }

            async fn revoke_token(&self, jti: &str, client_id: &str, expires_at: UnixTime) -> Result<(), StoreError> {
                let (jti, client_id) = (jti.to_owned(), client_id.to_owned());
                self.write(move |tx| Box::pin(async move {
                    sqlx::query(
                        "INSERT INTO revoked_tokens (jti, client_id, expires_at) VALUES ($1, $2, $3) ON CONFLICT (jti) DO NOTHING",
                    )
                    .bind(jti)
                    .bind(client_id)
                    .bind(expires_at)
                    .execute(&mut *tx)
                    .await?;
                    Ok(())
                }))
                .await
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

            async fn replace_signing_key_material(
                &self,
                kid: &str,
                expected: &str,
                replacement: &str,
            ) -> Result<bool, StoreError> {
                let done = sqlx::query("UPDATE signing_keys SET private_key = $3 WHERE kid = $1 AND private_key = $2")
                    .bind(kid)
                    .bind(expected)
                    .bind(replacement)
                    .execute(&self.pool)
                    .await?;
                Ok(done.rows_affected() == 1)
            }

            async fn create_first_signing_key(&self, key: &StoredSigningKey) -> Result<bool, StoreError> {
                let mut tx = self.pool.begin().await?;
                let lock: Option<&str> = $first_key_lock;
                if let Some(lock) = lock {
                    sqlx::query(lock).execute(&mut *tx).await?;
                }
                let done = sqlx::query(
                    "INSERT INTO signing_keys (kid, alg, private_key, created_at, activates_at) \
                     SELECT $1, $2, $3, $4, $5 WHERE NOT EXISTS (SELECT 1 FROM signing_keys WHERE alg = $2)",
                )
                .bind(&key.kid)
                .bind(&key.alg)
                .bind(&key.private_key_pkcs8_b64)
                .bind(key.created_at)
                .bind(key.activates_at)
                .execute(&mut *tx)
                .await?;
                tx.commit().await?;
                Ok(done.rows_affected() == 1)
            }

            async fn record_audit(&self, e: &AuditEvent) -> Result<(), StoreError> {
                let e = e.clone();
                self.write(move |tx| Box::pin(async move { insert_audit!(&mut *tx, &e) })).await
            }

            async fn record_audit_lines(&self, events: &[AuditEvent]) -> Result<(), StoreError> {
                let lines: Vec<AuditEvent> = events.iter().map(AuditEvent::capped).collect();
                self.write(move |tx| Box::pin(async move {
                    for chunk in lines.chunks(AUDIT_LINES_PER_INSERT) {
                        let mut insert = sqlx::QueryBuilder::new(
                            "INSERT INTO audit_events (at, action, outcome, client_id, software_id, org_id, \
                             cert_thumbprint, cert_subject, peer, detail, consent_id, customer_id) ",
                        );
                        insert.push_values(chunk, |mut row, e| {
                            row.push_bind(e.at)
                                .push_bind(&e.action)
                                .push_bind(&e.outcome)
                                .push_bind(&e.client_id)
                                .push_bind(&e.software_id)
                                .push_bind(&e.org_id)
                                .push_bind(&e.cert_thumbprint)
                                .push_bind(&e.cert_subject)
                                .push_bind(&e.peer)
                                .push_bind(&e.detail)
                                .push_bind(&e.consent_id)
                                .push_bind(&e.customer_id);
                        });
                        insert.build().execute(&mut *tx).await?;
                    }
                    Ok(())
                })).await
            }

            async fn pool_status(&self) -> PoolStatus {
                let idle = u32::try_from(self.pool.num_idle()).unwrap_or(u32::MAX);
                PoolStatus { open: self.pool.size(), idle, max: self.pool.options().get_max_connections() }
            }

            async fn search_audit_events(&self, f: &AuditFilter) -> Result<Vec<(i64, AuditEvent)>, StoreError> {
                // Every condition is switched off by a NULL parameter, so one statement
                // serves every combination of filters on both databases.
                let rows = sqlx::query(&format!(
                    "SELECT id, {AUDIT_COLUMNS} FROM audit_events \
                     WHERE ($1 IS NULL OR at >= $1) AND ($2 IS NULL OR at < $2) \
                     AND ($3 IS NULL OR client_id = $3) AND ($4 IS NULL OR org_id = $4) \
                     AND ($5 IS NULL OR software_id = $5) AND ($6 IS NULL OR action = $6) \
                     AND ($7 IS NULL OR outcome = $7 OR ($7 = 'refused' AND outcome <> 'success')) \
                     AND ($8 IS NULL OR id > $8) \
                     ORDER BY id LIMIT $9"
                ))
                .bind(f.since)
                .bind(f.until)
                .bind(f.client_id.as_deref())
                .bind(f.org_id.as_deref())
                .bind(f.software_id.as_deref())
                .bind(f.action.as_deref())
                .bind(f.outcome.as_deref())
                .bind(f.after_id)
                .bind(f.limit)
                .fetch_all(&self.pool)
                .await?;
                rows.iter().map(|row| Ok((row.try_get::<i64, _>("id")?, audit_from_row(row)?))).collect()
            }

            async fn audit_events(&self, client_id: Option<&str>, limit: i64) -> Result<Vec<AuditEvent>, StoreError> {
                let rows = sqlx::query(&format!(
                    "SELECT {AUDIT_COLUMNS} FROM audit_events WHERE ($1 IS NULL OR client_id = $1) ORDER BY id DESC LIMIT $2"
                ))
                .bind(client_id)
                .bind(limit)
                .fetch_all(&self.pool)
                .await?;
                rows.iter().map(audit_from_row).collect()
            }

            async fn purge_expired_jtis(
                &self,
                before: UnixTime,
                without_exp_recorded_before: UnixTime,
            ) -> Result<u64, StoreError> {
                let done = sqlx::query(
                    "DELETE FROM used_jtis WHERE (expires_at IS NOT NULL AND expires_at < $1) \
                     OR (expires_at IS NULL AND recorded_at < $2)",
                )
                .bind(before)
                .bind(without_exp_recorded_before)
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

            async fn admin_sign_in_state(&self, username: &str) -> Result<Option<AdminSignInState>, StoreError> {
                let row = sqlx::query(
                    "SELECT a.password_hash, f.failures, f.last_failure_at FROM admins a \
                     LEFT JOIN admin_sign_in_failures f ON f.username = a.username WHERE a.username = $1",
                )
                .bind(username)
                .fetch_optional(&self.pool)
                .await?;
                let Some(row) = row else { return Ok(None) };
                let failures: Option<i64> = row.try_get("failures")?;
                Ok(Some(AdminSignInState {
                    password_hash: row.try_get("password_hash")?,
                    failures: u32::try_from(failures.unwrap_or(0)).unwrap_or(u32::MAX),
                    last_failure_at: row.try_get("last_failure_at")?,
                }))
            }

            async fn record_admin_sign_in_failure(&self, username: &str, at: UnixTime) -> Result<u32, StoreError> {
                // One statement, so that nodes counting at once add up rather than overwrite.
                let row = sqlx::query(
                    "INSERT INTO admin_sign_in_failures (username, failures, last_failure_at) VALUES ($1, 1, $2) \
                     ON CONFLICT (username) DO UPDATE SET failures = admin_sign_in_failures.failures + 1, \
                     last_failure_at = $2 RETURNING failures",
                )
                .bind(username)
                .bind(at)
                .fetch_one(&self.pool)
                .await?;
                let failures: i64 = row.try_get("failures")?;
                Ok(u32::try_from(failures).unwrap_or(u32::MAX))
            }

            async fn clear_admin_sign_in_failures(&self, username: &str) -> Result<(), StoreError> {
                sqlx::query("DELETE FROM admin_sign_in_failures WHERE username = $1")
                    .bind(username)
                    .execute(&self.pool)
                    .await?;
                Ok(())
            }

            async fn ping(&self) -> Result<(), StoreError> {
                sqlx::query("SELECT 1").execute(&self.pool).await?;
                Ok(())
            }

            async fn create_consent(
                &self,
                consent: &Consent,
                idempotency: Option<&IdempotencyRecord>,
                idempotency_not_before: UnixTime,
                audit: &AuditEvent,
            ) -> Result<(), CreateConsentError> {
                let request = json_text(consent.request.json())?;
                let account_ids = json_text(&consent.account_ids)?;
                let (consent, idempotency, audit) = (consent.clone(), idempotency.cloned(), audit.clone());
                self.write(move |tx| Box::pin(async move {
                sqlx::query(&format!(
                    "INSERT INTO consents ({CONSENT_COLUMNS}) VALUES ($1, $2, $3, $4, $5, $6, $7, $8, $9, $10)"
                ))
                .bind(&consent.id)
                .bind(consent.kind.as_str())
                .bind(&consent.client_id)
                .bind(consent.status.as_str())
                .bind(consent.created_at)
                .bind(consent.status_updated_at)
                .bind(consent.expires_at)
                .bind(request)
                .bind(&consent.customer_id)
                .bind(account_ids)
                .execute(&mut *tx)
                .await
                .map_err(StoreError::from)?;
                if let Some(record) = &idempotency {
                    // An expired record of the same key gives way; a live one makes the
                    // insert below fail.
                    sqlx::query(
                        "DELETE FROM consent_idempotency WHERE client_id = $1 AND consent_type = $2 \
                         AND idempotency_key = $3 AND created_at < $4",
                    )
                    .bind(&record.client_id)
                    .bind(record.consent_type.as_str())
                    .bind(&record.key)
                    .bind(idempotency_not_before)
                    .execute(&mut *tx)
                    .await
                    .map_err(StoreError::from)?;
                    sqlx::query(
                        "INSERT INTO consent_idempotency (client_id, consent_type, idempotency_key, body_sha256, \
                         consent_id, created_at) VALUES ($1, $2, $3, $4, $5, $6)",
                    )
                    .bind(&record.client_id)
                    .bind(record.consent_type.as_str())
                    .bind(&record.key)
                    .bind(&record.body_sha256)
                    .bind(&record.consent_id)
                    .bind(record.created_at)
                    .execute(&mut *tx)
                    .await
                    .map_err(|e| {
                        if is_unique_violation(&e) {
                            CreateConsentError::IdempotencyKeyTaken
                        } else {
                            StoreError::from(e).into()
                        }
                    })?;
                }
                insert_audit!(&mut *tx, &audit)?;
                Ok(())
                })).await
            }

            async fn find_consent(&self, consent_id: &str) -> Result<Option<Consent>, StoreError> {
                let row = sqlx::query(&format!("SELECT {CONSENT_COLUMNS} FROM consents WHERE consent_id = $1"))
                    .bind(consent_id)
                    .fetch_optional(&self.pool)
                    .await?;
                row.as_ref().map(consent_from_row).transpose()
            }

            async fn list_consents(&self, f: &ConsentFilter) -> Result<Vec<Consent>, StoreError> {
                let rows = sqlx::query(&format!(
                    "SELECT {CONSENT_COLUMNS} FROM consents WHERE ($1 IS NULL OR client_id = $1) \
                     AND ($2 IS NULL OR customer_id = $2) AND ($3 IS NULL OR status = $3) \
                     AND ($4 IS NULL OR consent_type = $4) AND ($5 IS NULL OR created_at > $5) \
                     AND ($6 IS NULL OR created_at < $6) \
                     AND ($7 = 0 OR EXISTS (SELECT 1 FROM grants g WHERE g.consent_id = consents.consent_id AND g.revoked_at IS NULL)) \
                     ORDER BY created_at DESC, consent_id LIMIT $8"
                ))
                .bind(&f.client_id)
                .bind(&f.customer_id)
                .bind(f.status.map(ConsentStatus::as_str))
                .bind(f.kind.map(ConsentType::as_str))
                .bind(f.created_after)
                .bind(f.created_before)
                .bind(i64::from(f.with_live_grant))
                .bind(f.limit)
                .fetch_all(&self.pool)
                .await?;
                rows.iter().map(consent_from_row).collect()
            }

            async fn find_idempotency_record(
                &self,
                client_id: &str,
                consent_type: ConsentType,
                key: &str,
                not_before: UnixTime,
            ) -> Result<Option<IdempotencyRecord>, StoreError> {
                let row = sqlx::query(
                    "SELECT body_sha256, consent_id, created_at FROM consent_idempotency WHERE client_id = $1 \
                     AND consent_type = $2 AND idempotency_key = $3 AND created_at >= $4",
                )
                .bind(client_id)
                .bind(consent_type.as_str())
                .bind(key)
                .bind(not_before)
                .fetch_optional(&self.pool)
                .await?;
                row.map(|r| {
                    Ok(IdempotencyRecord {
                        client_id: client_id.to_owned(),
                        consent_type,
                        key: key.to_owned(),
                        body_sha256: r.try_get("body_sha256")?,
                        consent_id: r.try_get("consent_id")?,
                        created_at: r.try_get("created_at")?,
                    })
                })
                .transpose()
            }

            async fn change_consent_status(
                &self,
                change: &ConsentStatusChange,
                audit: &AuditEvent,
            ) -> Result<bool, StoreError> {
                let account_ids = change.account_ids.as_ref().map(json_text).transpose()?;
                let (change, audit) = (change.clone(), audit.clone());
                self.write(move |tx| Box::pin(async move {
                // Compare-and-set: a decision made meanwhile by another request (or node)
                // makes this one change nothing.
                let done = sqlx::query(
                    "UPDATE consents SET status = $3, status_updated_at = $4, \
                     customer_id = COALESCE(CAST($5 AS TEXT), customer_id), \
                     account_ids = COALESCE(CAST($6 AS TEXT), account_ids) \
                     WHERE consent_id = $1 AND status = $2",
                )
                .bind(&change.consent_id)
                .bind(change.from.as_str())
                .bind(change.to.as_str())
                .bind(change.at)
                .bind(&change.customer_id)
                .bind(account_ids)
                .execute(&mut *tx)
                .await?;
                if done.rows_affected() != 1 {
                    return Ok(false);
                }
                insert_audit!(&mut *tx, &audit)?;
                Ok(true)
                })).await
            }

            async fn purge_idempotency_records(&self, before: UnixTime) -> Result<u64, StoreError> {
                let done = sqlx::query("DELETE FROM consent_idempotency WHERE created_at < $1")
                    .bind(before)
                    .execute(&self.pool)
                    .await?;
                Ok(done.rows_affected())
            }

            async fn consent_audit_events(&self, consent_id: &str, limit: i64) -> Result<Vec<AuditEvent>, StoreError> {
                let rows = sqlx::query(&format!(
                    "SELECT {AUDIT_COLUMNS} FROM audit_events WHERE consent_id = $1 ORDER BY id DESC LIMIT $2"
                ))
                .bind(consent_id)
                .bind(limit)
                .fetch_all(&self.pool)
                .await?;
                rows.iter().map(audit_from_row).collect()
            }

            async fn create_customer(&self, c: &StoredCustomer) -> Result<(), CreateCustomerError> {
                sqlx::query(&format!("INSERT INTO customers ({CUSTOMER_COLUMNS}) VALUES ($1, $2, $3, $4, $5, $6, $7, $8)"))
                    .bind(&c.customer_id)
                    .bind(&c.username)
                    .bind(&c.password_hash)
                    .bind(&c.totp_secret)
                    .bind(c.totp_last_step)
                    .bind(c.failed_logins)
                    .bind(c.locked_until)
                    .bind(c.created_at)
                    .execute(&self.pool)
                    .await
                    .map_err(|e| {
                        if is_unique_violation(&e) {
                            CreateCustomerError::UsernameTaken
                        } else {
                            StoreError::from(e).into()
                        }
                    })?;
                Ok(())
            }

            async fn find_customer(&self, customer_id: &str) -> Result<Option<StoredCustomer>, StoreError> {
                let row = sqlx::query(&format!("SELECT {CUSTOMER_COLUMNS} FROM customers WHERE customer_id = $1"))
                    .bind(customer_id)
                    .fetch_optional(&self.pool)
                    .await?;
                row.as_ref().map(customer_from_row).transpose()
            }

            async fn find_customer_by_username(&self, username: &str) -> Result<Option<StoredCustomer>, StoreError> {
                let row = sqlx::query(&format!("SELECT {CUSTOMER_COLUMNS} FROM customers WHERE username = $1"))
                    .bind(username)
                    .fetch_optional(&self.pool)
                    .await?;
                row.as_ref().map(customer_from_row).transpose()
            }

            async fn list_customers(&self) -> Result<Vec<StoredCustomer>, StoreError> {
                let rows = sqlx::query(&format!("SELECT {CUSTOMER_COLUMNS} FROM customers ORDER BY username"))
                    .fetch_all(&self.pool)
                    .await?;
                rows.iter().map(customer_from_row).collect()
            }

            async fn add_customer_account(&self, a: &CustomerAccount, now: UnixTime) -> Result<(), AddAccountError> {
                let mut tx = self.pool.begin().await.map_err(StoreError::from)?;
                // Checked here rather than left to the foreign key, so the caller learns
                // which of the two went wrong on both databases.
                let customer = sqlx::query("SELECT 1 FROM customers WHERE customer_id = $1")
                    .bind(&a.customer_id)
                    .fetch_optional(&mut *tx)
                    .await
                    .map_err(StoreError::from)?;
                if customer.is_none() {
                    return Err(AddAccountError::NoSuchCustomer);
                }
                sqlx::query(&format!(
                    "INSERT INTO customer_accounts ({ACCOUNT_COLUMNS}, created_at) VALUES ($1, $2, $3, $4, $5, $6, $7, $8)"
                ))
                .bind(&a.account_id)
                .bind(&a.customer_id)
                .bind(&a.name)
                .bind(&a.scheme)
                .bind(&a.identification)
                .bind(&a.secondary_identification)
                .bind(&a.currency)
                .bind(now)
                .execute(&mut *tx)
                .await
                .map_err(|e| {
                    if is_unique_violation(&e) {
                        AddAccountError::AccountIdTaken
                    } else {
                        StoreError::from(e).into()
                    }
                })?;
                tx.commit().await.map_err(StoreError::from)?;
                Ok(())
            }

            async fn customer_accounts(&self, customer_id: &str) -> Result<Vec<CustomerAccount>, StoreError> {
                let rows = sqlx::query(&format!(
                    "SELECT {ACCOUNT_COLUMNS} FROM customer_accounts WHERE customer_id = $1 ORDER BY account_id"
                ))
                .bind(customer_id)
                .fetch_all(&self.pool)
                .await?;
                rows.iter().map(account_from_row).collect()
            }

            async fn record_customer_failure(
                &self,
                customer_id: &str,
                max_failures: u32,
                lock_until: UnixTime,
            ) -> Result<Option<UnixTime>, StoreError> {
                // One statement, so that failures counted at once on several nodes all count.
                // Both CASEs read the row as it was before the update.
                let row = sqlx::query(
                    "UPDATE customers SET \
                     locked_until = CASE WHEN failed_logins + 1 >= $2 THEN $3 ELSE locked_until END, \
                     failed_logins = CASE WHEN failed_logins + 1 >= $2 THEN 0 ELSE failed_logins + 1 END \
                     WHERE customer_id = $1 RETURNING failed_logins, locked_until",
                )
                .bind(customer_id)
                .bind(i64::from(max_failures))
                .bind(lock_until)
                .fetch_optional(&self.pool)
                .await?;
                let Some(row) = row else { return Ok(None) };
                let failures: i64 = row.try_get("failed_logins")?;
                let locked_until: Option<i64> = row.try_get("locked_until")?;
                // The count is back at zero only when this failure reached the limit.
                Ok(locked_until.filter(|_| failures == 0))
            }

            async fn record_customer_success(&self, customer_id: &str, totp_step: Option<i64>) -> Result<bool, StoreError> {
                let done = sqlx::query(
                    "UPDATE customers SET failed_logins = 0, locked_until = NULL, \
                     totp_last_step = COALESCE(CAST($2 AS BIGINT), totp_last_step) \
                     WHERE customer_id = $1 AND (CAST($2 AS BIGINT) IS NULL OR totp_last_step IS NULL \
                     OR totp_last_step < CAST($2 AS BIGINT))",
                )
                .bind(customer_id)
                .bind(totp_step)
                .execute(&self.pool)
                .await?;
                Ok(done.rows_affected() == 1)
            }
        }
    };
}

/// The embedded default: one SQLite file in WAL mode with `synchronous = FULL`, so a
/// committed registration survives a crash or power loss, not only a process exit.
pub struct SqliteStore {
    /// Reads, and the rare writes (signing keys, administrators, customers, purges).
    pool: sqlx::SqlitePool,
    /// Every write a TPP or a customer causes (registrations and their changes, replay
    /// records, audit lines, revocations, consents, authorization sessions, grants, codes,
    /// refresh tokens), committed in groups by one connection. A write on a pooled
    /// connection would take SQLite's single write lock away from the writer, whose next
    /// batch would then sleep in the busy handler: the long tails the pool once had.
    writer: GroupCommit,
    /// Connections the pool may hold.
    pool_size: u32,
    /// Copies the write-ahead log into the database file in the background (see
    /// [`checkpoint_in_background`]); stopped with the store.
    checkpointer: tokio::task::JoinHandle<()>,
}

impl Drop for SqliteStore {
    fn drop(&mut self) {
        self.checkpointer.abort();
    }
}

/// How often the background checkpoint runs.
const CHECKPOINT_EVERY: Duration = Duration::from_millis(500);
/// WAL pages (4 KiB each) past which the writer checkpoints by itself, should the
/// background checkpoint fall behind: bounds the WAL at about 40 MiB. (SQLite's default,
/// 1,000 pages, made the writer checkpoint every few hundred commits.)
const WRITER_CHECKPOINT_PAGES: i64 = 10_000;

/// Checkpoints the WAL every [`CHECKPOINT_EVERY`] on a pooled connection, `PASSIVE`: it
/// waits for no reader or writer. Why not let SQLite do it: its automatic checkpoint runs
/// inside the commit that crosses the threshold, on the group-commit writer, and holds
/// up every write queued behind it (copying pages and an fsync of the database file),
/// which was the writer's longest stall and the source of the long latency tails.
fn checkpoint_in_background(pool: sqlx::SqlitePool) -> tokio::task::JoinHandle<()> {
    tokio::spawn(async move {
        let mut every = tokio::time::interval(CHECKPOINT_EVERY);
        every.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
        loop {
            every.tick().await;
            if let Err(e) = sqlx::query("PRAGMA wal_checkpoint(PASSIVE)").execute(&pool).await {
                // The writer still checkpoints past its own threshold; nothing is lost.
                tracing::warn!(error = %e, "the background WAL checkpoint failed");
            }
        }
    })
}

/// What every pooled SQLite connection must run with: the write-ahead log, and a sync of it
/// at every commit. A commit is then on the disk, not only in the page cache, before the
/// answer that reports it is sent.
const REQUIRED_JOURNAL_MODE: &str = "wal";
const REQUIRED_SYNCHRONOUS: i64 = 2; // FULL

/// The journal mode and synchronous level a connection actually runs with.
async fn durability_settings(conn: &mut sqlx::SqliteConnection) -> Result<(String, i64), sqlx::Error> {
    let mode: String = sqlx::query_scalar("PRAGMA journal_mode").fetch_one(&mut *conn).await?;
    let synchronous: i64 = sqlx::query_scalar("PRAGMA synchronous").fetch_one(&mut *conn).await?;
    Ok((mode.to_ascii_lowercase(), synchronous))
}

/// Refuses a connection that does not run with WAL and FULL sync (a file system where WAL
/// cannot work, a pragma silently ignored): every 201 relies on its commit being synced.
async fn ensure_durable(conn: &mut sqlx::SqliteConnection) -> Result<(), sqlx::Error> {
    let (mode, synchronous) = durability_settings(conn).await?;
    if mode != REQUIRED_JOURNAL_MODE || synchronous != REQUIRED_SYNCHRONOUS {
        return Err(sqlx::Error::Protocol(format!(
            "the SQLite connection runs with journal_mode={mode} synchronous={synchronous}, not \
             journal_mode=wal synchronous=2 (FULL): commits would not be durable"
        )));
    }
    Ok(())
}

/// The identity of a file (device and inode), to notice that the database file was removed
/// or replaced under a running server.
#[cfg(unix)]
fn file_identity(path: &std::path::Path) -> std::io::Result<(u64, u64)> {
    use std::os::unix::fs::MetadataExt;
    let meta = std::fs::metadata(path)?;
    Ok((meta.dev(), meta.ino()))
}

#[cfg(not(unix))]
fn file_identity(path: &std::path::Path) -> std::io::Result<(u64, u64)> {
    std::fs::metadata(path).map(|_| (0, 0))
}

/// Whether `path` is still the database file that was opened (`identity`).
pub(super) fn still_the_file(path: &std::path::Path, identity: (u64, u64)) -> Result<(), sqlx::Error> {
    match file_identity(path) {
        Ok(now) if now == identity => Ok(()),
        Ok(_) => Err(sqlx::Error::Protocol(format!(
            "the database file {} was replaced since Keyfort opened it",
            path.display()
        ))),
        Err(e) => {
            Err(sqlx::Error::Protocol(format!("the database file {} is gone or unreadable: {e}", path.display())))
        }
    }
}

impl SqliteStore {
    /// Opens (creating it if needed) the database, without migrating it.
    pub async fn connect(config: &StorageConfig) -> anyhow::Result<Self> {
        let url = &config.url;
        let options = SqliteConnectOptions::from_str(url)?
            .journal_mode(SqliteJournalMode::Wal)
            .synchronous(SqliteSynchronous::Full)
            .busy_timeout(Duration::from_secs(5))
            .foreign_keys(true);
        let path = options.get_filename().to_path_buf();
        // A new database (and the directory it is created in) is readable by this user
        // only: it holds the registrations, digests of their tokens, and the audit trail.
        // The file is made here, empty, before SQLite opens it: SQLite gives its WAL and
        // shared-memory files the database file's permissions.
        if let Some(dir) = path.parent() {
            crate::files::create_private_dir_all(dir)
                .map_err(|e| anyhow::anyhow!("cannot create the database directory {}: {e}", dir.display()))?;
        }
        if path != std::path::Path::new(":memory:") && !path.as_os_str().is_empty() {
            crate::files::create_private_if_missing(&path, b"")
                .map_err(|e| anyhow::anyhow!("cannot create the SQLite database {}: {e}", path.display()))?;
        }
        // Only this first connection may create the file. Later connections must find it:
        // re-creating a database that disappeared under a running server would answer
        // from an empty file, and lose every write at the next restart.
        let first = sqlx::SqliteConnection::connect_with(&options.clone().create_if_missing(true))
            .await
            .map_err(|e| anyhow::anyhow!("cannot open the SQLite database {url}: {e}"))?;
        first.close().await?;
        let identity = file_identity(&path)
            .map_err(|e| anyhow::anyhow!("cannot read the SQLite database file {}: {e}", path.display()))?;
        // An open connection keeps writing to a file that was removed or replaced: its
        // commits would be lost. Check the file is still the one opened whenever a
        // connection is handed out (a stat, next to the fsync of every commit), so such a
        // failure answers 503 and fails readiness instead of losing data silently.
        // (Not checked when a connection is made: a failing connect hook is retried until
        // the acquire timeout. A removed file already fails there, since only the first
        // connection may create it.)
        let writing_path = path.clone();
        let pool_size = config.pool_size.unwrap_or(4);
        let pool = SqlitePoolOptions::new()
            .max_connections(pool_size)
            .acquire_timeout(config.acquire_timeout)
            // The options ask for WAL and FULL; a connection that does not get them is not used.
            .after_connect(|conn, _| Box::pin(ensure_durable(conn)))
            .before_acquire(move |_, _| {
                let path = path.clone();
                Box::pin(async move { still_the_file(&path, identity).map(|()| true) })
            })
            .connect_with(options.clone().create_if_missing(false))
            .await
            .map_err(|e| anyhow::anyhow!("cannot open the SQLite database {url}: {e}"))?;
        let mut writing = sqlx::SqliteConnection::connect_with(&options.create_if_missing(false))
            .await
            .map_err(|e| anyhow::anyhow!("cannot open the SQLite database {url}: {e}"))?;
        // The writer commits registrations, replay records and audit lines: the same rule.
        ensure_durable(&mut writing)
            .await
            .map_err(|e| anyhow::anyhow!("cannot open the SQLite database {url}: {e}"))?;
        sqlx::query(&format!("PRAGMA wal_autocheckpoint = {WRITER_CHECKPOINT_PAGES}"))
            .execute(&mut writing)
            .await
            .map_err(|e| anyhow::anyhow!("cannot open the SQLite database {url}: {e}"))?;
        let path = writing_path;
        Ok(Self {
            checkpointer: checkpoint_in_background(pool.clone()),
            pool,
            pool_size,
            writer: GroupCommit::start(writing, path, identity),
        })
    }

    /// Runs `op` in the writer's next group commit (see [`GroupCommit`]).
    async fn write<T, E, F>(&self, op: F) -> Result<T, E>
    where
        T: Send + 'static,
        E: From<StoreError> + Send + 'static,
        F: for<'c> FnOnce(&'c mut sqlx::SqliteConnection) -> BoxFuture<'c, Result<T, E>> + Send + 'static,
    {
        self.writer.write(op).await
    }

    /// The journal mode and synchronous level of every connection the pool may hold, each
    /// held at once (so that none is read twice), then the group-commit writer's: what the
    /// durability of a commit rests on.
    pub async fn connection_durability(&self) -> Result<Vec<(String, i64)>, StoreError> {
        let mut held = Vec::new();
        let mut settings = Vec::new();
        for _ in 0..self.pool_size {
            let mut conn = self.pool.acquire().await?;
            settings.push(durability_settings(&mut conn).await?);
            held.push(conn);
        }
        let writer: (String, i64) = self
            .writer
            .write(|conn| Box::pin(async move { Ok::<_, StoreError>(durability_settings(conn).await?) }))
            .await?;
        settings.push(writer);
        Ok(settings)
    }
}

sql_store!(SqliteStore, first_key_lock: None, migrator: sqlx::migrate!("./migrations/sqlite"));
super::authorization::sql_authorization_store!(SqliteStore);
super::customer_area::sql_customer_area_store!(SqliteStore);

/// PostgreSQL, for deployments with several Keyfort nodes sharing one database.
pub struct PostgresStore {
    pool: sqlx::PgPool,
}

impl PostgresStore {
    /// Connects with the configured pool, timeouts and TLS, without migrating.
    pub async fn connect(config: &StorageConfig) -> anyhow::Result<Self> {
        let shown = crate::config::redact_url(&config.url);
        let mut options = PgConnectOptions::from_str(&config.url)
            .map_err(|e| anyhow::anyhow!("[storage] url {shown} is not a PostgreSQL URL: {e}"))?;
        if let Some(mode) = config.sslmode {
            options = options.ssl_mode(match mode {
                SslMode::Disable => PgSslMode::Disable,
                SslMode::Prefer => PgSslMode::Prefer,
                SslMode::Require => PgSslMode::Require,
                SslMode::VerifyCa => PgSslMode::VerifyCa,
                SslMode::VerifyFull => PgSslMode::VerifyFull,
            });
        }
        if let Some(ca) = &config.ssl_root_cert {
            options = options.ssl_root_cert(ca);
        }
        if let Some(timeout) = config.statement_timeout {
            // A statement stuck behind a lock or a failing disk is cancelled, so that the
            // request answers 503 instead of holding its connection for ever.
            options = options.options([("statement_timeout", format!("{}ms", timeout.as_millis()))]);
        }
        let pool = PgPoolOptions::new()
            .max_connections(config.pool_size.unwrap_or(16))
            .acquire_timeout(config.acquire_timeout)
            .connect_with(options)
            .await
            .map_err(|e| anyhow::anyhow!("cannot connect to PostgreSQL at {shown}: {e}"))?;
        Ok(Self { pool })
    }

    /// Runs `op` in a transaction of its own; PostgreSQL groups concurrent commits itself.
    async fn write<T, E, F>(&self, op: F) -> Result<T, E>
    where
        T: Send + 'static,
        E: From<StoreError> + Send + 'static,
        F: for<'c> FnOnce(&'c mut sqlx::PgConnection) -> BoxFuture<'c, Result<T, E>> + Send + 'static,
    {
        let mut tx = self.pool.begin().await.map_err(|e| E::from(StoreError::from(e)))?;
        let done = op(&mut tx).await?;
        tx.commit().await.map_err(|e| E::from(StoreError::from(e)))?;
        Ok(done)
    }
}

// A table lock that conflicts with itself and with inserts: two nodes creating the first
// key at once take turns, and the second sees the first's key.
sql_store!(
    PostgresStore,
    first_key_lock: Some("LOCK TABLE signing_keys IN SHARE ROW EXCLUSIVE MODE"),
    migrator: sqlx::migrate!("./migrations/postgres")
);
super::authorization::sql_authorization_store!(PostgresStore);
super::customer_area::sql_customer_area_store!(PostgresStore);
