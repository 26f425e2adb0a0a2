//! What the customer's authorization keeps: sessions through the login and consent pages,
//! grants, authorization codes and refresh tokens. Secrets (session cookies, CSRF tokens,
//! codes, refresh tokens) are stored only as digests.

use async_trait::async_trait;
use keyfort_core::clock::UnixTime;

use super::StoreError;

/// An authorization in progress.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct AuthorizationSession {
    /// SHA-256 of the session cookie's value.
    pub session_hash: String,
    /// The validated authorization request, as JSON.
    pub request: String,
    /// SHA-256 of the CSRF token of its forms.
    pub csrf_hash: String,
    /// Set once the customer signed in: who, and the name they signed in with (shown on
    /// the consent page).
    pub customer_id: Option<String>,
    pub customer_name: Option<String>,
    pub auth_time: Option<UnixTime>,
    pub acr: Option<String>,
    pub created_at: UnixTime,
    pub expires_at: UnixTime,
    /// Set by the customer's decision; a session decides once.
    pub completed_at: Option<UnixTime>,
}

/// What one authorization granted.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct GrantRecord {
    pub grant_id: String,
    pub client_id: String,
    pub consent_id: String,
    pub customer_id: String,
    /// Space-separated scopes.
    pub scope: String,
    pub created_at: UnixTime,
    pub revoked_at: Option<UnixTime>,
}

/// An authorization code, by digest.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct CodeRecord {
    pub code_hash: String,
    pub grant_id: String,
    pub redirect_uri: String,
    pub nonce: String,
    pub acr: String,
    pub auth_time: UnixTime,
    pub code_challenge: Option<String>,
    pub expires_at: UnixTime,
    pub redeemed_at: Option<UnixTime>,
}

/// A refresh token, by digest.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct RefreshTokenRecord {
    pub token_hash: String,
    pub grant_id: String,
    /// `x5t#S256` of the certificate the token is bound to.
    pub cert_thumbprint: Option<String>,
    pub created_at: UnixTime,
    pub expires_at: UnixTime,
    pub revoked_at: Option<UnixTime>,
}

/// Why a code could not be redeemed.
#[derive(Debug, thiserror::Error)]
pub enum RedeemError {
    #[error("no such authorization code")]
    Unknown,
    /// Redeemed before: whatever its grant issued must be revoked (RFC 6749 §4.1.2).
    #[error("the authorization code was already redeemed")]
    AlreadyRedeemed { grant_id: String },
    #[error(transparent)]
    Store(#[from] StoreError),
}

#[async_trait]
pub trait AuthorizationStore: Send + Sync {
    async fn create_authorization_session(&self, session: &AuthorizationSession) -> Result<(), StoreError>;

    async fn find_authorization_session(&self, session_hash: &str) -> Result<Option<AuthorizationSession>, StoreError>;

    /// Records the signed-in customer of an open (not completed, not expired) session;
    /// returns whether there was one.
    #[allow(clippy::too_many_arguments)]
    async fn sign_in_authorization_session(
        &self,
        session_hash: &str,
        customer_id: &str,
        customer_name: &str,
        auth_time: UnixTime,
        acr: &str,
        now: UnixTime,
    ) -> Result<bool, StoreError>;

    /// Completes an open session (its decision is taken); returns whether it was open, so
    /// that one session decides once even when two requests race.
    async fn complete_authorization_session(&self, session_hash: &str, now: UnixTime) -> Result<bool, StoreError>;

    /// Creates a grant and its authorization code in one transaction.
    async fn create_grant_with_code(&self, grant: &GrantRecord, code: &CodeRecord) -> Result<(), StoreError>;

    async fn find_grant(&self, grant_id: &str) -> Result<Option<GrantRecord>, StoreError>;

    /// Marks a code redeemed and returns it, once; a second redemption reports the grant.
    async fn redeem_code(&self, code_hash: &str, now: UnixTime) -> Result<CodeRecord, RedeemError>;

    /// Revokes a grant and its refresh tokens; returns whether it was not revoked before.
    async fn revoke_grant(&self, grant_id: &str, now: UnixTime) -> Result<bool, StoreError>;

    /// Revokes every grant of a consent and their refresh tokens, and writes `audit`, in
    /// one transaction; returns how many grants were live. (A payment consent has no
    /// Revoked status: this is how its customer or an operator stops its tokens.)
    async fn revoke_grants_of_consent(
        &self,
        consent_id: &str,
        now: UnixTime,
        audit: &super::AuditEvent,
    ) -> Result<u64, StoreError>;

    async fn create_refresh_token(&self, token: &RefreshTokenRecord) -> Result<(), StoreError>;

    async fn find_refresh_token(&self, token_hash: &str) -> Result<Option<RefreshTokenRecord>, StoreError>;

    /// Revokes one refresh token (rotation); returns whether it was live.
    async fn revoke_refresh_token(&self, token_hash: &str, now: UnixTime) -> Result<bool, StoreError>;

    /// Forgets sessions and codes that expired before `before`; returns how many.
    async fn purge_expired_authorizations(&self, before: UnixTime) -> Result<u64, StoreError>;
}

/// The SQL of [`AuthorizationStore`], shared by SQLite and PostgreSQL.
macro_rules! sql_authorization_store {
    ($store:ident) => {
        #[async_trait::async_trait]
        impl $crate::storage::AuthorizationStore for $store {
            async fn create_authorization_session(
                &self,
                s: &$crate::storage::AuthorizationSession,
            ) -> Result<(), StoreError> {
                let s = s.clone();
                self.write(move |tx| Box::pin(async move {
                sqlx::query(
                    "INSERT INTO authorization_sessions (session_hash, request, csrf_hash, customer_id, customer_name, \
                     auth_time, acr, created_at, expires_at, completed_at) VALUES ($1, $2, $3, $4, $10, $5, $6, $7, $8, $9)",
                )
                .bind(&s.session_hash)
                .bind(&s.request)
                .bind(&s.csrf_hash)
                .bind(&s.customer_id)
                .bind(s.auth_time)
                .bind(&s.acr)
                .bind(s.created_at)
                .bind(s.expires_at)
                .bind(s.completed_at)
                .bind(&s.customer_name)
                .execute(&mut *tx)
                .await?;
                Ok(())
                })).await
            }

            async fn find_authorization_session(
                &self,
                session_hash: &str,
            ) -> Result<Option<$crate::storage::AuthorizationSession>, StoreError> {
                let row = sqlx::query(
                    "SELECT session_hash, request, csrf_hash, customer_id, customer_name, auth_time, acr, created_at, \
                     expires_at, completed_at FROM authorization_sessions WHERE session_hash = $1",
                )
                .bind(session_hash)
                .fetch_optional(&self.pool)
                .await?;
                row.map(|r| {
                    Ok($crate::storage::AuthorizationSession {
                        session_hash: r.try_get("session_hash")?,
                        request: r.try_get("request")?,
                        csrf_hash: r.try_get("csrf_hash")?,
                        customer_id: r.try_get("customer_id")?,
                        customer_name: r.try_get("customer_name")?,
                        auth_time: r.try_get("auth_time")?,
                        acr: r.try_get("acr")?,
                        created_at: r.try_get("created_at")?,
                        expires_at: r.try_get("expires_at")?,
                        completed_at: r.try_get("completed_at")?,
                    })
                })
                .transpose()
            }

            async fn sign_in_authorization_session(
                &self,
                session_hash: &str,
                customer_id: &str,
                customer_name: &str,
                auth_time: UnixTime,
                acr: &str,
                now: UnixTime,
            ) -> Result<bool, StoreError> {
                let (session_hash, customer_id) = (session_hash.to_owned(), customer_id.to_owned());
                let (customer_name, acr) = (customer_name.to_owned(), acr.to_owned());
                self.write(move |tx| Box::pin(async move {
                let done = sqlx::query(
                    "UPDATE authorization_sessions SET customer_id = $2, auth_time = $3, acr = $4, customer_name = $6 \
                     WHERE session_hash = $1 AND completed_at IS NULL AND expires_at > $5",
                )
                .bind(&session_hash)
                .bind(&customer_id)
                .bind(auth_time)
                .bind(&acr)
                .bind(now)
                .bind(&customer_name)
                .execute(&mut *tx)
                .await?;
                Ok(done.rows_affected() == 1)
                })).await
            }

            async fn complete_authorization_session(&self, session_hash: &str, now: UnixTime) -> Result<bool, StoreError> {
                let session_hash = session_hash.to_owned();
                self.write(move |tx| Box::pin(async move {
                let done = sqlx::query(
                    "UPDATE authorization_sessions SET completed_at = $2 \
                     WHERE session_hash = $1 AND completed_at IS NULL AND expires_at > $2",
                )
                .bind(&session_hash)
                .bind(now)
                .execute(&mut *tx)
                .await?;
                Ok(done.rows_affected() == 1)
                })).await
            }

            async fn create_grant_with_code(
                &self,
                g: &$crate::storage::GrantRecord,
                c: &$crate::storage::CodeRecord,
            ) -> Result<(), StoreError> {
                let (g, c) = (g.clone(), c.clone());
                self.write(move |tx| Box::pin(async move {
                sqlx::query(
                    "INSERT INTO grants (grant_id, client_id, consent_id, customer_id, scope, created_at, revoked_at) \
                     VALUES ($1, $2, $3, $4, $5, $6, $7)",
                )
                .bind(&g.grant_id)
                .bind(&g.client_id)
                .bind(&g.consent_id)
                .bind(&g.customer_id)
                .bind(&g.scope)
                .bind(g.created_at)
                .bind(g.revoked_at)
                .execute(&mut *tx)
                .await?;
                sqlx::query(
                    "INSERT INTO authorization_codes (code_hash, grant_id, redirect_uri, nonce, acr, auth_time, \
                     code_challenge, expires_at, redeemed_at) VALUES ($1, $2, $3, $4, $5, $6, $7, $8, $9)",
                )
                .bind(&c.code_hash)
                .bind(&c.grant_id)
                .bind(&c.redirect_uri)
                .bind(&c.nonce)
                .bind(&c.acr)
                .bind(c.auth_time)
                .bind(&c.code_challenge)
                .bind(c.expires_at)
                .bind(c.redeemed_at)
                .execute(&mut *tx)
                .await?;
                Ok(())
                })).await
            }

            async fn find_grant(&self, grant_id: &str) -> Result<Option<$crate::storage::GrantRecord>, StoreError> {
                let row = sqlx::query(
                    "SELECT grant_id, client_id, consent_id, customer_id, scope, created_at, revoked_at \
                     FROM grants WHERE grant_id = $1",
                )
                .bind(grant_id)
                .fetch_optional(&self.pool)
                .await?;
                row.map(|r| {
                    Ok($crate::storage::GrantRecord {
                        grant_id: r.try_get("grant_id")?,
                        client_id: r.try_get("client_id")?,
                        consent_id: r.try_get("consent_id")?,
                        customer_id: r.try_get("customer_id")?,
                        scope: r.try_get("scope")?,
                        created_at: r.try_get("created_at")?,
                        revoked_at: r.try_get("revoked_at")?,
                    })
                })
                .transpose()
            }

            async fn redeem_code(
                &self,
                code_hash: &str,
                now: UnixTime,
            ) -> Result<$crate::storage::CodeRecord, $crate::storage::RedeemError> {
                let code_hash = code_hash.to_owned();
                self.write(move |tx| Box::pin(async move {
                let row = sqlx::query(
                    "SELECT code_hash, grant_id, redirect_uri, nonce, acr, auth_time, code_challenge, expires_at, \
                     redeemed_at FROM authorization_codes WHERE code_hash = $1",
                )
                .bind(&code_hash)
                .fetch_optional(&mut *tx)
                .await
                .map_err(StoreError::from)?;
                let Some(r) = row else { return Err($crate::storage::RedeemError::Unknown) };
                let code = $crate::storage::CodeRecord {
                    code_hash: r.try_get("code_hash").map_err(StoreError::from)?,
                    grant_id: r.try_get("grant_id").map_err(StoreError::from)?,
                    redirect_uri: r.try_get("redirect_uri").map_err(StoreError::from)?,
                    nonce: r.try_get("nonce").map_err(StoreError::from)?,
                    acr: r.try_get("acr").map_err(StoreError::from)?,
                    auth_time: r.try_get("auth_time").map_err(StoreError::from)?,
                    code_challenge: r.try_get("code_challenge").map_err(StoreError::from)?,
                    expires_at: r.try_get("expires_at").map_err(StoreError::from)?,
                    redeemed_at: Some(now),
                };
                // The compare-and-set decides between two concurrent redemptions.
                let done = sqlx::query(
                    "UPDATE authorization_codes SET redeemed_at = $2 WHERE code_hash = $1 AND redeemed_at IS NULL",
                )
                .bind(&code_hash)
                .bind(now)
                .execute(&mut *tx)
                .await
                .map_err(StoreError::from)?;
                if done.rows_affected() != 1 {
                    return Err($crate::storage::RedeemError::AlreadyRedeemed { grant_id: code.grant_id });
                }
                Ok(code)
                })).await
            }

            async fn revoke_grant(&self, grant_id: &str, now: UnixTime) -> Result<bool, StoreError> {
                let grant_id = grant_id.to_owned();
                self.write(move |tx| Box::pin(async move {
                let done = sqlx::query("UPDATE grants SET revoked_at = $2 WHERE grant_id = $1 AND revoked_at IS NULL")
                    .bind(&grant_id)
                    .bind(now)
                    .execute(&mut *tx)
                    .await?;
                sqlx::query(
                    "UPDATE refresh_tokens SET revoked_at = $2 WHERE grant_id = $1 AND revoked_at IS NULL",
                )
                .bind(&grant_id)
                .bind(now)
                .execute(&mut *tx)
                .await?;
                Ok(done.rows_affected() == 1)
                })).await
            }

            async fn revoke_grants_of_consent(
                &self,
                consent_id: &str,
                now: UnixTime,
                audit: &$crate::storage::AuditEvent,
            ) -> Result<u64, StoreError> {
                let (consent_id, audit) = (consent_id.to_owned(), audit.clone());
                self.write(move |tx| Box::pin(async move {
                sqlx::query(
                    "UPDATE refresh_tokens SET revoked_at = $2 WHERE revoked_at IS NULL \
                     AND grant_id IN (SELECT grant_id FROM grants WHERE consent_id = $1)",
                )
                .bind(&consent_id)
                .bind(now)
                .execute(&mut *tx)
                .await?;
                let done =
                    sqlx::query("UPDATE grants SET revoked_at = $2 WHERE consent_id = $1 AND revoked_at IS NULL")
                        .bind(&consent_id)
                        .bind(now)
                        .execute(&mut *tx)
                        .await?;
                insert_audit!(&mut *tx, &audit)?;
                Ok(done.rows_affected())
                })).await
            }

            async fn create_refresh_token(&self, t: &$crate::storage::RefreshTokenRecord) -> Result<(), StoreError> {
                let t = t.clone();
                self.write(move |tx| Box::pin(async move {
                sqlx::query(
                    "INSERT INTO refresh_tokens (token_hash, grant_id, cert_thumbprint, created_at, expires_at, \
                     revoked_at) VALUES ($1, $2, $3, $4, $5, $6)",
                )
                .bind(&t.token_hash)
                .bind(&t.grant_id)
                .bind(&t.cert_thumbprint)
                .bind(t.created_at)
                .bind(t.expires_at)
                .bind(t.revoked_at)
                .execute(&mut *tx)
                .await?;
                Ok(())
                })).await
            }

            async fn find_refresh_token(
                &self,
                token_hash: &str,
            ) -> Result<Option<$crate::storage::RefreshTokenRecord>, StoreError> {
                let row = sqlx::query(
                    "SELECT token_hash, grant_id, cert_thumbprint, created_at, expires_at, revoked_at \
                     FROM refresh_tokens WHERE token_hash = $1",
                )
                .bind(token_hash)
                .fetch_optional(&self.pool)
                .await?;
                row.map(|r| {
                    Ok($crate::storage::RefreshTokenRecord {
                        token_hash: r.try_get("token_hash")?,
                        grant_id: r.try_get("grant_id")?,
                        cert_thumbprint: r.try_get("cert_thumbprint")?,
                        created_at: r.try_get("created_at")?,
                        expires_at: r.try_get("expires_at")?,
                        revoked_at: r.try_get("revoked_at")?,
                    })
                })
                .transpose()
            }

            async fn revoke_refresh_token(&self, token_hash: &str, now: UnixTime) -> Result<bool, StoreError> {
                let token_hash = token_hash.to_owned();
                self.write(move |tx| Box::pin(async move {
                let done = sqlx::query(
                    "UPDATE refresh_tokens SET revoked_at = $2 WHERE token_hash = $1 AND revoked_at IS NULL",
                )
                .bind(&token_hash)
                .bind(now)
                .execute(&mut *tx)
                .await?;
                Ok(done.rows_affected() == 1)
                })).await
            }

            async fn purge_expired_authorizations(&self, before: UnixTime) -> Result<u64, StoreError> {
                let mut tx = self.pool.begin().await?;
                let sessions = sqlx::query("DELETE FROM authorization_sessions WHERE expires_at < $1")
                    .bind(before)
                    .execute(&mut *tx)
                    .await?;
                // A redeemed code is kept while its grant may still be asked about: until the
                // grant is revoked or the code far expired, the same bound as sessions.
                let codes = sqlx::query("DELETE FROM authorization_codes WHERE expires_at < $1")
                    .bind(before)
                    .execute(&mut *tx)
                    .await?;
                tx.commit().await?;
                Ok(sessions.rows_affected() + codes.rows_affected())
            }
        }
    };
}

pub(super) use sql_authorization_store;
