//! The one place where errors become HTTP responses: status, RFC 6749/7591 JSON body,
//! `WWW-Authenticate` where RFC 6750 and 7235 ask for it, and `Retry-After`.

use axum::http::{header, HeaderValue, StatusCode};
use axum::response::{IntoResponse, Response};
use keyfort_core::error::{ErrorCode, OAuthError};
use serde_json::json;

use crate::error::{Challenge, ServiceError};

/// How long a caller is asked to wait when a dependency is unavailable.
const UNAVAILABLE_RETRY_AFTER_SECONDS: u64 = 30;

/// How long a caller is asked to wait when the database fails: a PostgreSQL failover or a
/// restart takes seconds, not minutes.
const STORAGE_RETRY_AFTER_SECONDS: u64 = 5;

#[derive(Debug)]
pub enum ApiError {
    /// A service's answer.
    Service(ServiceError),
    /// Refused by the HTTP edge before any service ran, with a status the code does not
    /// imply: unknown path (404), wrong method (405), a body too slow (408) or too large
    /// (413), a wrong content type (415).
    Edge(StatusCode, OAuthError),
}

impl From<ServiceError> for ApiError {
    fn from(e: ServiceError) -> Self {
        ApiError::Service(e)
    }
}

impl From<OAuthError> for ApiError {
    fn from(e: OAuthError) -> Self {
        ApiError::Service(ServiceError::Refused(e))
    }
}

impl ApiError {
    /// The OAuth error code the client will see.
    pub fn code(&self) -> ErrorCode {
        match self {
            ApiError::Service(e) => e.code(),
            ApiError::Edge(_, e) => e.code,
        }
    }

    /// The refusal as a service would have phrased it, for the audit trail of requests the
    /// edge refused before a service saw them.
    pub fn as_refusal(&self) -> Option<ServiceError> {
        match self {
            ApiError::Edge(_, e) => Some(ServiceError::Refused(e.clone())),
            ApiError::Service(_) => None,
        }
    }
}

/// The status an OAuth error code implies when nothing more specific is known.
pub fn status_for(code: ErrorCode) -> StatusCode {
    match code {
        ErrorCode::InvalidClient | ErrorCode::InvalidToken => StatusCode::UNAUTHORIZED,
        ErrorCode::AccessDenied | ErrorCode::InsufficientScope => StatusCode::FORBIDDEN,
        ErrorCode::ServerError => StatusCode::INTERNAL_SERVER_ERROR,
        ErrorCode::TemporarilyUnavailable => StatusCode::SERVICE_UNAVAILABLE,
        _ => StatusCode::BAD_REQUEST,
    }
}

fn challenge_header(challenge: Challenge) -> HeaderValue {
    match challenge {
        Challenge::Basic => HeaderValue::from_static("Basic realm=\"keyfort\", charset=\"UTF-8\""),
    }
}

/// What a service error means for an HTTP answer: its status, the error the caller sees,
/// the authentication challenge and the wait to ask for. The JSON answers of the APIs and
/// the HTML error page of the customer's pages both come from here. (An OBIE error has its
/// own body; as parts it is the OAuth error closest to it.)
pub struct ErrorParts {
    pub status: StatusCode,
    pub error: OAuthError,
    pub challenge: Option<HeaderValue>,
    pub retry_after: Option<u64>,
}

pub fn service_error_parts(e: ServiceError) -> ErrorParts {
    let mut challenge = None;
    let mut retry_after = None;
    let (status, error) = match e {
        ServiceError::Obie(e) => (
            StatusCode::from_u16(e.category.status()).unwrap_or(StatusCode::BAD_REQUEST),
            OAuthError::new(ServiceError::Obie(e.clone()).code(), e.describe()),
        ),
        ServiceError::Refused(e) => (status_for(e.code), e),
        ServiceError::Forbidden(e) => (StatusCode::FORBIDDEN, e),
        ServiceError::NotFound(e) => (StatusCode::NOT_FOUND, e),
        ServiceError::Conflict(e) => (StatusCode::CONFLICT, e),
        ServiceError::Unauthenticated(e, scheme) => {
            challenge = Some(challenge_header(scheme));
            (StatusCode::UNAUTHORIZED, e)
        }
        ServiceError::Throttled { error, retry_after: wait } => {
            retry_after = Some(wait.as_secs().max(1));
            (StatusCode::TOO_MANY_REQUESTS, error)
        }
        overloaded @ ServiceError::Overloaded { .. } => {
            if let ServiceError::Overloaded { retry_after: wait, .. } = &overloaded {
                retry_after = Some(wait.as_secs().max(1));
            }
            tracing::info!(reason = %overloaded.description(), "request refused: busy (503)");
            (
                StatusCode::SERVICE_UNAVAILABLE,
                OAuthError::new(ErrorCode::TemporarilyUnavailable, overloaded.description()),
            )
        }
        unavailable @ ServiceError::Unavailable { .. } => {
            // Inside the request's span, so the line carries its request id; the caller is
            // told what is unavailable and what to do, never the URL or the chain.
            if let ServiceError::Unavailable { what, cause } = &unavailable {
                tracing::warn!(unavailable = %what, error = %cause, "dependency unavailable: answered 503");
            }
            retry_after = Some(UNAVAILABLE_RETRY_AFTER_SECONDS);
            (
                StatusCode::SERVICE_UNAVAILABLE,
                OAuthError::new(ErrorCode::TemporarilyUnavailable, unavailable.description()),
            )
        }
        storage @ ServiceError::StorageUnavailable(_) => {
            // Inside the request's span, so the line carries its request id.
            if let ServiceError::StorageUnavailable(cause) = &storage {
                tracing::error!(error = %cause, "storage unavailable: answered 503");
            }
            retry_after = Some(STORAGE_RETRY_AFTER_SECONDS);
            (StatusCode::SERVICE_UNAVAILABLE, OAuthError::new(ErrorCode::TemporarilyUnavailable, storage.description()))
        }
        ServiceError::Internal(cause) => {
            let reference = keyfort_core::secret::random_b64url(9);
            tracing::error!(reference = %reference, error = format!("{cause:#}"), "internal error");
            (
                StatusCode::INTERNAL_SERVER_ERROR,
                OAuthError::new(
                    ErrorCode::ServerError,
                    format!("the server failed to handle the request; quote reference {reference} to the operator"),
                ),
            )
        }
    };
    ErrorParts { status, error, challenge, retry_after }
}

impl IntoResponse for ApiError {
    fn into_response(self) -> Response {
        let ErrorParts { status, error, challenge, retry_after } = match self {
            ApiError::Service(ServiceError::Obie(e)) => return obie_response(&e),
            ApiError::Edge(status, error) => ErrorParts { status, error, challenge: None, retry_after: None },
            ApiError::Service(e) => service_error_parts(e),
        };
        // Every refusal once, at INFO, inside the request's span (so with its request id),
        // with what the service knew of whom it refused. 5xx answers are logged above, at
        // WARN or ERROR, with their causes.
        // On the request's span too, so a trace shows why it failed.
        tracing::Span::current().record("error", error.code.as_str());
        if status.is_client_error() {
            let subject = crate::telemetry::subject();
            tracing::info!(
                status = status.as_u16(),
                error = error.code.as_str(),
                reason = %error.description,
                client_id = subject.client_id.as_deref().unwrap_or("-"),
                software_id = subject.software_id.as_deref().unwrap_or("-"),
                org_id = subject.org_id.as_deref().unwrap_or("-"),
                "request refused"
            );
        }
        let body = json!({"error": error.code.as_str(), "error_description": error.description});
        let mut response = (status, axum::Json(body)).into_response();
        let headers = response.headers_mut();
        headers.insert(header::CACHE_CONTROL, HeaderValue::from_static("no-store"));
        headers.insert(header::PRAGMA, HeaderValue::from_static("no-cache"));
        if let Some(value) = challenge {
            headers.insert(header::WWW_AUTHENTICATE, value);
        }
        if matches!(error.code, ErrorCode::InvalidToken | ErrorCode::InsufficientScope) {
            // RFC 6750 §3: the Bearer challenge carries the error.
            let challenge = format!(
                "Bearer error=\"{}\", error_description=\"{}\"",
                error.code.as_str(),
                error.description.replace(['"', '\\'], "'")
            );
            if let Ok(value) = HeaderValue::from_str(&challenge) {
                headers.insert(header::WWW_AUTHENTICATE, value);
            }
        }
        if let Some(seconds) = retry_after {
            headers.insert(header::RETRY_AFTER, HeaderValue::from(seconds));
        }
        response
    }
}

/// An OBIE error (`OBErrorResponse1`): the category's status and the OBIE body. The error's
/// `Id` is logged with it, so a TPP quoting it can be helped.
fn obie_response(error: &keyfort_core::consent::ObieError) -> Response {
    let status = StatusCode::from_u16(error.category.status()).unwrap_or(StatusCode::BAD_REQUEST);
    tracing::info!(error_id = %error.id, status = status.as_u16(), error = %error.describe(), "request refused");
    let mut response = (status, axum::Json(error.to_json())).into_response();
    let headers = response.headers_mut();
    headers.insert(header::CACHE_CONTROL, HeaderValue::from_static("no-store"));
    headers.insert(header::PRAGMA, HeaderValue::from_static("no-cache"));
    response
}
