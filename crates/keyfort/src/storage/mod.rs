//! Storage behind one interface, with an embedded SQLite implementation (the default) and a
//! PostgreSQL one for several nodes. Both run the same SQL and the same contract tests.
//!
//! Everything several nodes must agree on lives here: clients, registration tokens, jti
//! replay records, revocations, signing keys, the audit trail, administrators and the
//! failed sign-ins of administrator names. Nothing that an anonymous caller can create in
//! unbounded numbers is written here (failed sign-ins of unknown names stay in memory).

mod authorization;
mod customer_area;
mod group_commit;
mod migrations;
mod sql;

use std::sync::Arc;

use async_trait::async_trait;
use keyfort_core::clock::UnixTime;
use keyfort_core::consent::{Consent, ConsentStatus, ConsentType};
use keyfort_core::registration::{ClientStatus, RegisteredClient};

pub use authorization::{
    AuthorizationSession, AuthorizationStore, CodeRecord, GrantRecord, RedeemError, RefreshTokenRecord,
};
pub use customer_area::{CustomerAreaStore, CustomerSession};
pub use migrations::{MigrationReport, MigrationState};
pub use sql::{PostgresStore, SqliteStore};

use crate::config::StorageConfig;

/// A storage failure: the database is unreachable or misbehaved. Not the caller's fault.
#[derive(Debug, thiserror::Error)]
#[error("storage: {0}")]
pub struct StoreError(pub String);

impl From<sqlx::Error> for StoreError {
    fn from(e: sqlx::Error) -> Self {
        StoreError(e.to_string())
    }
}

/// A request identifier (`jti`) to remember so the same request is never accepted twice.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ReplayRecord {
    pub issuer: String,
    pub jti: String,
    pub expires_at: Option<UnixTime>,
    pub recorded_at: UnixTime,
}

#[derive(Debug, thiserror::Error)]
pub enum CreateClientError {
    #[error("jti already used")]
    JtiReplayed,
    #[error("software already has an active registration")]
    SoftwareAlreadyRegistered,
    #[error(transparent)]
    Store(#[from] StoreError),
}

/// A signing key as stored: PKCS#8 DER wrapped by the key-encryption key (`kek1....`, see
/// `signing::kek`), or base64 in clear as versions before the envelope stored it.
#[derive(Clone, PartialEq, Eq)]
pub struct StoredSigningKey {
    pub kid: String,
    pub alg: String,
    pub private_key_pkcs8_b64: String,
    pub created_at: UnixTime,
    pub activates_at: UnixTime,
}

/// Written by hand so that a key printed in a log line or a failed assertion does not leak
/// its private half.
impl std::fmt::Debug for StoredSigningKey {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("StoredSigningKey")
            .field("kid", &self.kid)
            .field("alg", &self.alg)
            .field("private_key", &"<redacted>")
            .field("created_at", &self.created_at)
            .field("activates_at", &self.activates_at)
            .finish()
    }
}

/// Which clients an operator wants to see.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct ClientFilter {
    pub org_id: Option<String>,
    pub software_id: Option<String>,
    pub status: Option<ClientStatus>,
    pub registered_after: Option<UnixTime>,
    pub registered_before: Option<UnixTime>,
    pub limit: i64,
}

/// Which consents an operator (or a customer's own page) wants to see, newest first.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct ConsentFilter {
    pub client_id: Option<String>,
    pub customer_id: Option<String>,
    pub status: Option<ConsentStatus>,
    pub kind: Option<ConsentType>,
    pub created_after: Option<UnixTime>,
    pub created_before: Option<UnixTime>,
    /// Only consents with a grant that is not revoked: those whose TPP can still get tokens.
    pub with_live_grant: bool,
    pub limit: i64,
}

/// One line of the audit trail.
#[derive(Debug, Clone, PartialEq, Eq, Default, serde::Serialize)]
pub struct AuditEvent {
    pub at: UnixTime,
    /// `register`, `read`, `update`, `delete`, `suspend`, `reactivate`.
    pub action: String,
    /// `success`, or the error code of a refusal.
    pub outcome: String,
    pub client_id: Option<String>,
    pub software_id: Option<String>,
    pub org_id: Option<String>,
    pub cert_thumbprint: Option<String>,
    pub cert_subject: Option<String>,
    pub peer: Option<String>,
    pub detail: Option<String>,
    /// The consent a consent action was about.
    pub consent_id: Option<String>,
    /// The customer (PSU) who acted, or whose consent it was.
    pub customer_id: Option<String>,
}

/// A database connection pool's state.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct PoolStatus {
    /// Connections open (idle or in use).
    pub open: u32,
    pub idle: u32,
    /// The most the pool will open (`[storage] pool_size`).
    pub max: u32,
}

/// Which audit events an operator wants: every field that is set must match.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct AuditFilter {
    /// At or after this time.
    pub since: Option<UnixTime>,
    /// Before this time.
    pub until: Option<UnixTime>,
    pub client_id: Option<String>,
    pub org_id: Option<String>,
    pub software_id: Option<String>,
    /// `register`, `token`... (see `AuditAction`).
    pub action: Option<String>,
    /// `success`, `refused` (any refusal), or one error code.
    pub outcome: Option<String>,
    /// Only events after this one (the `id` of the last event of the previous page).
    pub after_id: Option<i64>,
    pub limit: i64,
}

/// The most characters each audit field keeps. Every audit line is capped here, on its
/// way into the database, whoever built it: a line is a few hundred bytes at most, however
/// large the request that caused it.
pub mod audit_caps {
    pub const ACTION: usize = 32;
    pub const OUTCOME: usize = 64;
    pub const CLIENT_ID: usize = 64;
    pub const SOFTWARE_ID: usize = 128;
    pub const ORG_ID: usize = 128;
    pub const CERT_THUMBPRINT: usize = 64;
    pub const CERT_SUBJECT: usize = 512;
    pub const PEER: usize = 64;
    pub const DETAIL: usize = 1000;
    pub const CONSENT_ID: usize = 128;
    pub const CUSTOMER_ID: usize = 128;
}

fn cap(value: &str, max_chars: usize) -> String {
    match value.char_indices().nth(max_chars) {
        None => value.to_owned(),
        // One character of the budget goes to the ellipsis that says the value was cut.
        Some(_) => {
            let keep = value.char_indices().nth(max_chars - 1).map_or(value.len(), |(i, _)| i);
            format!("{}…", &value[..keep])
        }
    }
}

impl AuditEvent {
    /// This line with every text field cut to its cap in [`audit_caps`].
    pub fn capped(&self) -> AuditEvent {
        use audit_caps as c;
        let opt = |v: &Option<String>, max| v.as_deref().map(|v| cap(v, max));
        AuditEvent {
            at: self.at,
            action: cap(&self.action, c::ACTION),
            outcome: cap(&self.outcome, c::OUTCOME),
            client_id: opt(&self.client_id, c::CLIENT_ID),
            software_id: opt(&self.software_id, c::SOFTWARE_ID),
            org_id: opt(&self.org_id, c::ORG_ID),
            cert_thumbprint: opt(&self.cert_thumbprint, c::CERT_THUMBPRINT),
            cert_subject: opt(&self.cert_subject, c::CERT_SUBJECT),
            peer: opt(&self.peer, c::PEER),
            detail: opt(&self.detail, c::DETAIL),
            consent_id: opt(&self.consent_id, c::CONSENT_ID),
            customer_id: opt(&self.customer_id, c::CUSTOMER_ID),
        }
    }
}

#[derive(Debug, thiserror::Error)]
pub enum JtiError {
    #[error("jti already used")]
    Replayed,
    #[error(transparent)]
    Store(#[from] StoreError),
}

#[derive(Debug, thiserror::Error)]
pub enum CreateAdminError {
    #[error("an administrator with that name exists")]
    AdminExists,
    #[error(transparent)]
    Store(#[from] StoreError),
}

/// What an administrator's sign-in needs to know about the name: the password hash and the
/// failed sign-ins counted for it by every node.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct AdminSignInState {
    pub password_hash: String,
    /// Failed sign-ins since the last successful one.
    pub failures: u32,
    /// When the last of them happened; `None` when there was none.
    pub last_failure_at: Option<UnixTime>,
}

/// An `x-idempotency-key` as remembered: which body it was first sent with (SHA-256, hex)
/// and which consent that created.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct IdempotencyRecord {
    pub client_id: String,
    pub consent_type: ConsentType,
    pub key: String,
    pub body_sha256: String,
    pub consent_id: String,
    pub created_at: UnixTime,
}

#[derive(Debug, thiserror::Error)]
pub enum CreateConsentError {
    /// Another request of this client took the same idempotency key first.
    #[error("the idempotency key is already used")]
    IdempotencyKeyTaken,
    #[error(transparent)]
    Store(#[from] StoreError),
}

/// A status change of a consent, made only if the consent is still in `from` (so that two
/// decisions cannot both win). `customer_id` and `account_ids`, when given, are recorded
/// with it; when `None`, the stored values are kept.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ConsentStatusChange {
    pub consent_id: String,
    pub from: ConsentStatus,
    pub to: ConsentStatus,
    pub at: UnixTime,
    pub customer_id: Option<String>,
    pub account_ids: Option<Vec<String>>,
}

/// A customer (PSU) of the built-in store.
#[derive(Clone, PartialEq, Eq)]
pub struct StoredCustomer {
    /// Stable and random: the ID token's `sub`.
    pub customer_id: String,
    pub username: String,
    /// Argon2id, PHC string.
    pub password_hash: String,
    /// The RFC 6238 secret, base32, when the customer uses one-time codes.
    pub totp_secret: Option<String>,
    /// The last accepted TOTP time step: a code of this step or earlier is refused.
    pub totp_last_step: Option<i64>,
    pub failed_logins: i64,
    pub locked_until: Option<UnixTime>,
    pub created_at: UnixTime,
}

/// Written by hand so that neither the password hash nor the TOTP secret reaches a log.
impl std::fmt::Debug for StoredCustomer {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("StoredCustomer")
            .field("customer_id", &self.customer_id)
            .field("username", &self.username)
            .field("password_hash", &"<redacted>")
            .field("totp", &self.totp_secret.as_ref().map(|_| "<redacted>"))
            .field("totp_last_step", &self.totp_last_step)
            .field("failed_logins", &self.failed_logins)
            .field("locked_until", &self.locked_until)
            .field("created_at", &self.created_at)
            .finish()
    }
}

/// A customer's account.
#[derive(Debug, Clone, PartialEq, Eq, serde::Serialize)]
pub struct CustomerAccount {
    /// Unique bank-wide; what a consent records as chosen.
    pub account_id: String,
    pub customer_id: String,
    pub name: String,
    /// An OBIE scheme name, e.g. `UK.OBIE.SortCodeAccountNumber`.
    pub scheme: String,
    pub identification: String,
    pub secondary_identification: Option<String>,
    pub currency: String,
}

#[derive(Debug, thiserror::Error)]
pub enum CreateCustomerError {
    #[error("a customer with that username exists")]
    UsernameTaken,
    #[error(transparent)]
    Store(#[from] StoreError),
}

#[derive(Debug, thiserror::Error)]
pub enum AddAccountError {
    #[error("an account with that id exists")]
    AccountIdTaken,
    #[error("no such customer")]
    NoSuchCustomer,
    #[error(transparent)]
    Store(#[from] StoreError),
}

/// Everything Keyfort keeps. Concerns with many methods have their own trait (in their own
/// file), which every store implements too.
#[async_trait]
pub trait Store: AuthorizationStore + CustomerAreaStore + Send + Sync + 'static {
    /// Records the request's jti, creates the client and writes its audit line in one
    /// transaction (one commit, one fsync): all are durable when this returns `Ok`, or none
    /// happened.
    async fn create_client(
        &self,
        client: &RegisteredClient,
        replay: &ReplayRecord,
        one_per_software: bool,
        audit: &AuditEvent,
    ) -> Result<(), CreateClientError>;

    async fn find_client(&self, client_id: &str) -> Result<Option<RegisteredClient>, StoreError>;

    /// Records the request's jti, replaces the client's metadata, statement and bound
    /// certificate, and writes `audit`, in one transaction. The client must be active.
    async fn update_client(
        &self,
        client: &RegisteredClient,
        replay: &ReplayRecord,
        now: UnixTime,
        audit: &AuditEvent,
    ) -> Result<(), CreateClientError>;

    /// Moves a client from status `from` to `to` and writes `audit`, in one transaction;
    /// returns whether it was in `from` (when it was not, nothing is written).
    async fn set_client_status(
        &self,
        client_id: &str,
        from: ClientStatus,
        to: ClientStatus,
        now: UnixTime,
        audit: &AuditEvent,
    ) -> Result<bool, StoreError>;

    /// Clients matching `filter`, newest first.
    async fn list_clients(&self, filter: &ClientFilter) -> Result<Vec<RegisteredClient>, StoreError>;

    /// Marks an active or suspended client deleted and writes `audit`, in one transaction;
    /// returns whether there was one (when there was not, nothing is written).
    async fn delete_client(&self, client_id: &str, now: UnixTime, audit: &AuditEvent) -> Result<bool, StoreError>;

    /// Records a jti outside a registration (client assertions); refuses one seen before.
    async fn record_jti(&self, replay: &ReplayRecord) -> Result<(), JtiError>;

    async fn revoke_token(&self, jti: &str, client_id: &str, expires_at: UnixTime) -> Result<(), StoreError>;

    async fn is_token_revoked(&self, jti: &str) -> Result<bool, StoreError>;

    async fn signing_keys(&self) -> Result<Vec<StoredSigningKey>, StoreError>;

    async fn add_signing_key(&self, key: &StoredSigningKey) -> Result<(), StoreError>;

    /// Replaces the stored private key of `kid` (its encryption: the key itself does not
    /// change) if it is still `expected`; returns whether it was.
    async fn replace_signing_key_material(
        &self,
        kid: &str,
        expected: &str,
        replacement: &str,
    ) -> Result<bool, StoreError>;

    /// Adds `key` only if there is no signing key of its algorithm, atomically (nodes
    /// starting together on an empty database must not each create a "first" key); returns
    /// whether it was added.
    async fn create_first_signing_key(&self, key: &StoredSigningKey) -> Result<bool, StoreError>;

    /// Writes an audit line on its own, every field capped (see [`audit_caps`]); so do the
    /// methods that write one with a change.
    async fn record_audit(&self, event: &AuditEvent) -> Result<(), StoreError>;

    /// Writes `events` together, in one write and as few statements as the database
    /// allows: the deferred lines of reads, which come by the thousand per second.
    async fn record_audit_lines(&self, events: &[AuditEvent]) -> Result<(), StoreError>;

    /// Audit events, newest first, of one client or of all.
    async fn audit_events(&self, client_id: Option<&str>, limit: i64) -> Result<Vec<AuditEvent>, StoreError>;

    /// Audit events matching `filter`, oldest first, each with its id (a page ends at the
    /// last id, which the next page's `after_id` names).
    async fn search_audit_events(&self, filter: &AuditFilter) -> Result<Vec<(i64, AuditEvent)>, StoreError>;

    /// Forgets replay records that expired before `before`, and those without an expiry
    /// (registration requests without `exp`) recorded before `without_exp_recorded_before`;
    /// returns how many.
    async fn purge_expired_jtis(
        &self,
        before: UnixTime,
        without_exp_recorded_before: UnixTime,
    ) -> Result<u64, StoreError>;

    /// Adds an administrator; fails with `AdminExists` if the name is taken.
    async fn create_admin(&self, username: &str, password_hash: &str, now: UnixTime) -> Result<(), CreateAdminError>;

    /// The stored password hash of an administrator.
    async fn admin_password_hash(&self, username: &str) -> Result<Option<String>, StoreError>;

    /// An administrator's password hash with the failed sign-ins counted for the name;
    /// `None` when no administrator has that name.
    async fn admin_sign_in_state(&self, username: &str) -> Result<Option<AdminSignInState>, StoreError>;

    /// Counts one more failed sign-in of the administrator `username` at `at`, atomically
    /// (several nodes may count at once); returns the failures counted so far. Only for
    /// names that are administrators.
    async fn record_admin_sign_in_failure(&self, username: &str, at: UnixTime) -> Result<u32, StoreError>;

    /// Forgets the failed sign-ins of `username` (after a successful one).
    async fn clear_admin_sign_in_failures(&self, username: &str) -> Result<(), StoreError>;

    /// Whether the database answers.
    async fn ping(&self) -> Result<(), StoreError>;

    /// The connection pool now, for the metrics.
    async fn pool_status(&self) -> PoolStatus;

    /// Creates a consent, remembers its idempotency key (if any) and writes `audit`, in one
    /// transaction. A key record of the same client, type and key created before
    /// `idempotency_not_before` has expired and is replaced; a live one fails with
    /// `IdempotencyKeyTaken` and nothing is written.
    async fn create_consent(
        &self,
        consent: &Consent,
        idempotency: Option<&IdempotencyRecord>,
        idempotency_not_before: UnixTime,
        audit: &AuditEvent,
    ) -> Result<(), CreateConsentError>;

    async fn find_consent(&self, consent_id: &str) -> Result<Option<Consent>, StoreError>;

    /// Consents matching `filter`, newest first, at most `filter.limit`.
    async fn list_consents(&self, filter: &ConsentFilter) -> Result<Vec<Consent>, StoreError>;

    /// The live record of an idempotency key: created at or after `not_before`.
    async fn find_idempotency_record(
        &self,
        client_id: &str,
        consent_type: ConsentType,
        key: &str,
        not_before: UnixTime,
    ) -> Result<Option<IdempotencyRecord>, StoreError>;

    /// Applies `change` and writes `audit`, in one transaction, if the consent is still in
    /// `change.from`; returns whether it was (when it was not, nothing is written).
    async fn change_consent_status(&self, change: &ConsentStatusChange, audit: &AuditEvent)
        -> Result<bool, StoreError>;

    /// Forgets idempotency keys created before `before`; returns how many.
    async fn purge_idempotency_records(&self, before: UnixTime) -> Result<u64, StoreError>;

    /// Audit events about one consent, newest first.
    async fn consent_audit_events(&self, consent_id: &str, limit: i64) -> Result<Vec<AuditEvent>, StoreError>;

    /// Adds a customer; fails with `UsernameTaken` if the username is.
    async fn create_customer(&self, customer: &StoredCustomer) -> Result<(), CreateCustomerError>;

    async fn find_customer(&self, customer_id: &str) -> Result<Option<StoredCustomer>, StoreError>;

    async fn find_customer_by_username(&self, username: &str) -> Result<Option<StoredCustomer>, StoreError>;

    /// Every customer, by username.
    async fn list_customers(&self) -> Result<Vec<StoredCustomer>, StoreError>;

    /// Adds an account to its customer.
    async fn add_customer_account(&self, account: &CustomerAccount, now: UnixTime) -> Result<(), AddAccountError>;

    /// A customer's accounts, by account id.
    async fn customer_accounts(&self, customer_id: &str) -> Result<Vec<CustomerAccount>, StoreError>;

    /// Counts a failed sign-in of a customer, atomically (several nodes may count at once).
    /// The failure that reaches `max_failures` locks the customer until `lock_until` and
    /// starts the count again; returns that time when this failure locked.
    async fn record_customer_failure(
        &self,
        customer_id: &str,
        max_failures: u32,
        lock_until: UnixTime,
    ) -> Result<Option<UnixTime>, StoreError>;

    /// Records a successful sign-in: clears failures and lock, and stores `totp_step` as the
    /// last used one, only if it is later than the stored one. Returns false (and changes
    /// nothing) when that step was already used: the one-time code was replayed.
    async fn record_customer_success(&self, customer_id: &str, totp_step: Option<i64>) -> Result<bool, StoreError>;
}

/// Opens the configured store (`sqlite://...` or `postgres://...`). With
/// `migrate_on_start` its pending migrations are applied; without, a database that lacks
/// one of this version's migrations is refused, naming `keyfort migrate`.
pub async fn open(config: &StorageConfig) -> anyhow::Result<Arc<dyn Store>> {
    if config.is_postgres() {
        let store = PostgresStore::connect(config).await?;
        store.prepare(config.migrate_on_start).await?;
        Ok(Arc::new(store))
    } else {
        let store = SqliteStore::connect(config).await?;
        store.prepare(config.migrate_on_start).await?;
        Ok(Arc::new(store))
    }
}

/// `keyfort migrate`: the migrations and which are applied; with `apply`, applies the
/// pending ones first.
pub async fn migrate(config: &StorageConfig, apply: bool) -> anyhow::Result<MigrationReport> {
    if config.is_postgres() {
        PostgresStore::connect(config).await?.migration_report(apply).await
    } else {
        SqliteStore::connect(config).await?.migration_report(apply).await
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn audit_lines_are_capped_field_by_field() {
        let huge = "k".repeat(8192);
        let event = AuditEvent {
            at: 1,
            action: "read".into(),
            outcome: "invalid_token".into(),
            client_id: Some(huge.clone()),
            detail: Some(format!("client \"{huge}\" is not registered")),
            cert_subject: Some("é".repeat(600)),
            ..AuditEvent::default()
        };
        let capped = event.capped();
        assert_eq!(capped.client_id.as_deref().map(|c| c.chars().count()), Some(audit_caps::CLIENT_ID));
        assert!(capped.client_id.as_deref().unwrap().ends_with('…'));
        assert_eq!(capped.detail.as_deref().map(|d| d.chars().count()), Some(audit_caps::DETAIL));
        assert_eq!(capped.cert_subject.as_deref().map(|d| d.chars().count()), Some(audit_caps::CERT_SUBJECT));
        assert_eq!(capped.action, "read");
        let short = AuditEvent { client_id: Some("abc".into()), ..AuditEvent::default() };
        assert_eq!(short.capped(), short);
    }

    #[test]
    fn debug_output_hides_the_private_key() {
        let key = StoredSigningKey {
            kid: "kid-1".into(),
            alg: "PS256".into(),
            private_key_pkcs8_b64: "TUlJRXZRSUJBREFOQmdrcWhraUc5dzBCQVFFRkFBU0NCS2N3Z2dTakFnRUFBb0lCQVFD".into(),
            created_at: 1_700_000_000,
            activates_at: 1_700_000_600,
        };
        for printed in [format!("{key:?}"), format!("{key:#?}")] {
            assert!(!printed.contains(&key.private_key_pkcs8_b64), "{printed}");
            assert!(!printed.contains("TUlJ"), "{printed}");
            for shown in ["kid-1", "PS256", "<redacted>", "1700000000", "1700000600"] {
                assert!(printed.contains(shown), "{shown} missing from {printed}");
            }
        }
    }
}
