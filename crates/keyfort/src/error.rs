//! What a service answers when it does not do what was asked.
//!
//! Services speak in these terms only: an OAuth refusal, a caller who must authenticate, a
//! certificate of the wrong organisation, a dependency that is down, a fault of ours. They
//! know nothing of HTTP; `http/error.rs` is the one place that turns each kind into a status,
//! a JSON body and the headers RFC 6749, 6750 and 7235 ask for.

use std::time::Duration;

use keyfort_core::consent::{ObieCategory, ObieError};
use keyfort_core::error::{ErrorCode, OAuthError};

use crate::storage::StoreError;

/// The authentication scheme a caller is asked to use when it must authenticate.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Challenge {
    /// HTTP Basic: an administrator, or a client with a secret (RFC 6749 §2.3.1).
    Basic,
}

#[derive(Debug, thiserror::Error)]
pub enum ServiceError {
    /// The request is refused; the code says why and decides the answer (RFC 6749 §5.2,
    /// RFC 7591 §3.2.2, RFC 6750 §3.1).
    #[error("{0}")]
    Refused(OAuthError),
    /// The caller is known and its proof valid, but it is not the party this action belongs
    /// to (a transport certificate of another organisation or software).
    #[error("{0}")]
    Forbidden(OAuthError),
    /// The caller must prove who it is with `Challenge` before anything else is considered.
    #[error("{0}")]
    Unauthenticated(OAuthError, Challenge),
    /// Too many failed attempts: the caller may try again after `retry_after`.
    #[error("{error}")]
    Throttled { error: OAuthError, retry_after: Duration },
    /// The named thing does not exist (operator API).
    #[error("{0}")]
    NotFound(OAuthError),
    /// The named thing is not in the state the action needs (operator API: suspending a
    /// client that is not active); nothing was changed.
    #[error("{0}")]
    Conflict(OAuthError),
    /// Refused by an Open Banking Read/Write API (the consents API), answered in the OBIE
    /// error shape; its category decides the status.
    #[error("{0}")]
    Obie(ObieError),
    /// This server has as much of this work queued as it takes (`what`): retry later.
    #[error("{what} is busy")]
    Overloaded { what: String, retry_after: Duration },
    /// A dependency (the directory, a TPP's key server) cannot be reached: retry later.
    /// `what` says, for the caller, what is unavailable (never a URL or an error chain);
    /// `cause` is why, for the log and the audit trail only.
    #[error("{what}: {cause}")]
    Unavailable { what: String, cause: String },
    /// The database failed or cannot be reached (an outage, a failover, a full disk): not
    /// the caller's fault, and worth retrying. The cause is logged, never shown.
    #[error("{0}")]
    StorageUnavailable(StoreError),
    /// A fault of this server; the cause is logged, never shown.
    #[error("{0:#}")]
    Internal(anyhow::Error),
}

impl From<OAuthError> for ServiceError {
    fn from(e: OAuthError) -> Self {
        ServiceError::Refused(e)
    }
}

impl From<ObieError> for ServiceError {
    fn from(e: ObieError) -> Self {
        ServiceError::Obie(e)
    }
}

impl From<StoreError> for ServiceError {
    fn from(e: StoreError) -> Self {
        ServiceError::StorageUnavailable(e)
    }
}

impl ServiceError {
    /// A dependency is unavailable: `what` is told to the caller, `cause` only logged.
    pub fn unavailable(what: impl Into<String>, cause: impl std::fmt::Display) -> Self {
        ServiceError::Unavailable { what: what.into(), cause: cause.to_string() }
    }

    pub fn refused(code: ErrorCode, description: impl Into<String>) -> Self {
        ServiceError::Refused(OAuthError::new(code, description))
    }

    /// The OAuth error code the caller will see.
    pub fn code(&self) -> ErrorCode {
        match self {
            ServiceError::Refused(e)
            | ServiceError::Forbidden(e)
            | ServiceError::Unauthenticated(e, _)
            | ServiceError::Throttled { error: e, .. }
            | ServiceError::NotFound(e)
            | ServiceError::Conflict(e) => e.code,
            ServiceError::Obie(e) => match e.category {
                ObieCategory::Forbidden => ErrorCode::AccessDenied,
                ObieCategory::BadRequest | ObieCategory::UnsupportedMediaType => ErrorCode::InvalidRequest,
            },
            ServiceError::Unavailable { .. }
            | ServiceError::Overloaded { .. }
            | ServiceError::StorageUnavailable(_) => ErrorCode::TemporarilyUnavailable,
            ServiceError::Internal(_) => ErrorCode::ServerError,
        }
    }

    /// The code the audit trail records for this refusal: the OBIE error code of an OBIE
    /// error (`UK.OBIE.Field.Invalid`), the OAuth code otherwise.
    pub fn audit_code(&self) -> &'static str {
        match self {
            ServiceError::Obie(e) => e.first_code().as_str(),
            other => other.code().as_str(),
        }
    }

    /// What the audit trail records: the description, and for an unavailable dependency its
    /// cause too (the audit trail is the operator's, not the caller's).
    pub fn audit_detail(&self) -> String {
        match self {
            ServiceError::Unavailable { cause, .. } => format!("{} (cause: {cause})", self.description()),
            other => other.description(),
        }
    }

    /// The description the caller will see; internal causes are not repeated.
    pub fn description(&self) -> String {
        match self {
            ServiceError::Refused(e)
            | ServiceError::Forbidden(e)
            | ServiceError::Unauthenticated(e, _)
            | ServiceError::Throttled { error: e, .. }
            | ServiceError::NotFound(e)
            | ServiceError::Conflict(e) => e.description.clone(),
            ServiceError::Obie(e) => e.describe(),
            ServiceError::Unavailable { what, .. } => {
                format!(
                    "{what}; this is not a fault of the request: try again later (if it lasts, quote this answer's \
                 x-request-id to the bank)"
                )
            }
            ServiceError::Overloaded { what, retry_after } => {
                format!("{what} is busy; try again in {} seconds", retry_after.as_secs().max(1))
            }
            ServiceError::StorageUnavailable(_) => "the server cannot reach its database; try again shortly".to_owned(),
            ServiceError::Internal(_) => "internal error".to_owned(),
        }
    }
}
