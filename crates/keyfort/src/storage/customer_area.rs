//! What the customer's own pages keep: their signed-in sessions, found by the digest of
//! the session cookie (the cookie's value is never stored).

use async_trait::async_trait;
use keyfort_core::clock::UnixTime;

use super::StoreError;

/// A customer signed in to their own pages.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct CustomerSession {
    /// SHA-256 of the session cookie's value.
    pub session_hash: String,
    pub customer_id: String,
    /// The name they signed in with, shown on the pages.
    pub customer_name: String,
    /// SHA-256 of the CSRF token of the pages' forms.
    pub csrf_hash: String,
    pub created_at: UnixTime,
    pub expires_at: UnixTime,
}

#[async_trait]
pub trait CustomerAreaStore: Send + Sync {
    async fn create_customer_session(&self, session: &CustomerSession) -> Result<(), StoreError>;

    /// The session of a cookie digest, if it has not expired at `now`.
    async fn find_customer_session(
        &self,
        session_hash: &str,
        now: UnixTime,
    ) -> Result<Option<CustomerSession>, StoreError>;

    /// Signs out: forgets the session; returns whether there was one.
    async fn end_customer_session(&self, session_hash: &str) -> Result<bool, StoreError>;

    /// Forgets sessions that expired before `before`; returns how many.
    async fn purge_expired_customer_sessions(&self, before: UnixTime) -> Result<u64, StoreError>;
}

/// The SQL of [`CustomerAreaStore`], shared by SQLite and PostgreSQL.
macro_rules! sql_customer_area_store {
    ($store:ident) => {
        #[async_trait::async_trait]
        impl $crate::storage::CustomerAreaStore for $store {
            async fn create_customer_session(
                &self,
                s: &$crate::storage::CustomerSession,
            ) -> Result<(), StoreError> {
                sqlx::query(
                    "INSERT INTO customer_sessions (session_hash, customer_id, customer_name, csrf_hash, created_at, expires_at) \
                     VALUES ($1, $2, $3, $4, $5, $6)",
                )
                .bind(&s.session_hash)
                .bind(&s.customer_id)
                .bind(&s.customer_name)
                .bind(&s.csrf_hash)
                .bind(s.created_at)
                .bind(s.expires_at)
                .execute(&self.pool)
                .await?;
                Ok(())
            }

            async fn find_customer_session(
                &self,
                session_hash: &str,
                now: UnixTime,
            ) -> Result<Option<$crate::storage::CustomerSession>, StoreError> {
                let row = sqlx::query(
                    "SELECT session_hash, customer_id, customer_name, csrf_hash, created_at, expires_at \
                     FROM customer_sessions WHERE session_hash = $1 AND expires_at > $2",
                )
                .bind(session_hash)
                .bind(now)
                .fetch_optional(&self.pool)
                .await?;
                row.map(|r| {
                    Ok($crate::storage::CustomerSession {
                        session_hash: r.try_get("session_hash")?,
                        customer_id: r.try_get("customer_id")?,
                        customer_name: r.try_get("customer_name")?,
                        csrf_hash: r.try_get("csrf_hash")?,
                        created_at: r.try_get("created_at")?,
                        expires_at: r.try_get("expires_at")?,
                    })
                })
                .transpose()
                .map_err(|e: sqlx::Error| StoreError::from(e))
            }

            async fn end_customer_session(&self, session_hash: &str) -> Result<bool, StoreError> {
                let done = sqlx::query("DELETE FROM customer_sessions WHERE session_hash = $1")
                    .bind(session_hash)
                    .execute(&self.pool)
                    .await?;
                Ok(done.rows_affected() == 1)
            }

            async fn purge_expired_customer_sessions(&self, before: UnixTime) -> Result<u64, StoreError> {
                let done = sqlx::query("DELETE FROM customer_sessions WHERE expires_at < $1")
                    .bind(before)
                    .execute(&self.pool)
                    .await?;
                Ok(done.rows_affected())
            }
        }
    };
}

pub(super) use sql_customer_area_store;
