//! The one place where errors become HTTP responses: status, RFC 6749/7591 JSON body, and
//! `WWW-Authenticate` where RFC 6750 asks for it.

use axum::http::{header, HeaderValue, StatusCode};
use axum::response::{IntoResponse, Response};
use keyfort_core::error::{ErrorCode, OAuthError};
use serde_json::json;

#[derive(Debug)]
pub enum ApiError {
    /// A client error whose status follows from its code.
    OAuth(OAuthError),
    /// A client error with a status its code does not imply (404, 405, 413, 415).
    WithStatus(StatusCode, OAuthError),
    /// A client error answered with a `WWW-Authenticate` challenge (RFC 7235).
    Challenge(OAuthError, String),
    /// A dependency (the directory, a TPP's key server) cannot be reached: retry later.
    Unavailable(String),
    /// A fault of this server. The cause is logged; the client gets a reference to quote.
    Internal(anyhow::Error),
}

impl From<OAuthError> for ApiError {
    fn from(e: OAuthError) -> Self {
        ApiError::OAuth(e)
    }
}

impl ApiError {
    /// The OAuth error code the client will see.
    pub fn code(&self) -> ErrorCode {
        match self {
            ApiError::OAuth(e) | ApiError::WithStatus(_, e) | ApiError::Challenge(e, _) => e.code,
            ApiError::Unavailable(_) => ErrorCode::TemporarilyUnavailable,
            ApiError::Internal(_) => ErrorCode::ServerError,
        }
    }

    /// The description the client will see (internal causes are not repeated).
    pub fn description(&self) -> String {
        match self {
            ApiError::OAuth(e) | ApiError::WithStatus(_, e) | ApiError::Challenge(e, _) => e.description.clone(),
            ApiError::Unavailable(why) => why.clone(),
            ApiError::Internal(_) => "internal error".to_owned(),
        }
    }
}

pub fn status_for(code: ErrorCode) -> StatusCode {
    match code {
        ErrorCode::InvalidClient | ErrorCode::InvalidToken => StatusCode::UNAUTHORIZED,
        ErrorCode::AccessDenied => StatusCode::FORBIDDEN,
        ErrorCode::ServerError => StatusCode::INTERNAL_SERVER_ERROR,
        ErrorCode::TemporarilyUnavailable => StatusCode::SERVICE_UNAVAILABLE,
        _ => StatusCode::BAD_REQUEST,
    }
}

impl IntoResponse for ApiError {
    fn into_response(self) -> Response {
        let mut challenge = None;
        let (status, error) = match self {
            ApiError::OAuth(e) => (status_for(e.code), e),
            ApiError::Challenge(e, c) => {
                challenge = Some(c);
                (StatusCode::UNAUTHORIZED, e)
            }
            ApiError::WithStatus(status, e) => (status, e),
            ApiError::Unavailable(why) => {
                tracing::warn!(error = %why, "dependency unavailable");
                (
                    StatusCode::SERVICE_UNAVAILABLE,
                    OAuthError::new(ErrorCode::TemporarilyUnavailable, format!("{why}; try again later")),
                )
            }
            ApiError::Internal(cause) => {
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
        let body = json!({"error": error.code.as_str(), "error_description": error.description});
        let mut response = (status, axum::Json(body)).into_response();
        let headers = response.headers_mut();
        headers.insert(header::CACHE_CONTROL, HeaderValue::from_static("no-store"));
        headers.insert(header::PRAGMA, HeaderValue::from_static("no-cache"));
        if let Some(value) = challenge.and_then(|c| HeaderValue::from_str(&c).ok()) {
            headers.insert(header::WWW_AUTHENTICATE, value);
        }
        if error.code == ErrorCode::InvalidToken {
            let challenge = format!(
                "Bearer error=\"invalid_token\", error_description=\"{}\"",
                error.description.replace(['"', '\\'], "'")
            );
            if let Ok(value) = HeaderValue::from_str(&challenge) {
                headers.insert(header::WWW_AUTHENTICATE, value);
            }
        }
        if status == StatusCode::SERVICE_UNAVAILABLE || status == StatusCode::TOO_MANY_REQUESTS {
            headers.insert(header::RETRY_AFTER, HeaderValue::from_static("30"));
        }
        response
    }
}
