//! OAuth 2.0 and Dynamic Client Registration error codes.
//!
//! The codes are those of RFC 6749 §5.2, RFC 6750 §3.1 and RFC 7591 §3.2.2. The HTTP status
//! and `WWW-Authenticate` header for each are decided once, at the HTTP edge, from the code.

use std::fmt;

#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum ErrorCode {
    // RFC 7591 §3.2.2
    InvalidRedirectUri,
    InvalidClientMetadata,
    InvalidSoftwareStatement,
    UnapprovedSoftwareStatement,
    // RFC 6749 §5.2 and §4.1.2.1
    InvalidRequest,
    InvalidClient,
    InvalidGrant,
    UnauthorizedClient,
    UnsupportedGrantType,
    InvalidScope,
    AccessDenied,
    UnsupportedResponseType,
    // OpenID Connect Core §3.1.2.6
    InvalidRequestObject,
    RequestUriNotSupported,
    LoginRequired,
    // RFC 6750 §3.1
    InvalidToken,
    InsufficientScope,
    // Conditions that are not the caller's fault.
    ServerError,
    TemporarilyUnavailable,
}

impl ErrorCode {
    pub fn as_str(self) -> &'static str {
        match self {
            ErrorCode::InvalidRedirectUri => "invalid_redirect_uri",
            ErrorCode::InvalidClientMetadata => "invalid_client_metadata",
            ErrorCode::InvalidSoftwareStatement => "invalid_software_statement",
            ErrorCode::UnapprovedSoftwareStatement => "unapproved_software_statement",
            ErrorCode::InvalidRequest => "invalid_request",
            ErrorCode::InvalidClient => "invalid_client",
            ErrorCode::InvalidGrant => "invalid_grant",
            ErrorCode::UnauthorizedClient => "unauthorized_client",
            ErrorCode::UnsupportedGrantType => "unsupported_grant_type",
            ErrorCode::InvalidScope => "invalid_scope",
            ErrorCode::AccessDenied => "access_denied",
            ErrorCode::UnsupportedResponseType => "unsupported_response_type",
            ErrorCode::InvalidRequestObject => "invalid_request_object",
            ErrorCode::RequestUriNotSupported => "request_uri_not_supported",
            ErrorCode::LoginRequired => "login_required",
            ErrorCode::InvalidToken => "invalid_token",
            ErrorCode::InsufficientScope => "insufficient_scope",
            ErrorCode::ServerError => "server_error",
            ErrorCode::TemporarilyUnavailable => "temporarily_unavailable",
        }
    }
}

impl fmt::Display for ErrorCode {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.as_str())
    }
}

/// An error a client is told about: a code from the RFCs and a description that says what
/// was wrong and how to fix it. Descriptions never echo secrets or whole assertions.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("{code}: {description}")]
pub struct OAuthError {
    pub code: ErrorCode,
    pub description: String,
}

/// The longest `error_description` sent; descriptions quote values of the request, which
/// are bounded one by one where they are quoted, and here as a whole.
pub const MAX_DESCRIPTION_CHARS: usize = 2048;

impl OAuthError {
    /// An error whose description is escaped (no control characters, line or paragraph
    /// separators, or bidirectional overrides: it is logged, audited and may go into a
    /// `WWW-Authenticate` header) and bounded to [`MAX_DESCRIPTION_CHARS`].
    pub fn new(code: ErrorCode, description: impl Into<String>) -> Self {
        let description = description.into();
        let description = match crate::text::safe_message(&description, MAX_DESCRIPTION_CHARS) {
            std::borrow::Cow::Borrowed(_) => description,
            std::borrow::Cow::Owned(safe) => safe,
        };
        Self { code, description }
    }

    pub fn invalid_client_metadata(description: impl Into<String>) -> Self {
        Self::new(ErrorCode::InvalidClientMetadata, description)
    }

    pub fn invalid_redirect_uri(description: impl Into<String>) -> Self {
        Self::new(ErrorCode::InvalidRedirectUri, description)
    }

    pub fn invalid_software_statement(description: impl Into<String>) -> Self {
        Self::new(ErrorCode::InvalidSoftwareStatement, description)
    }

    pub fn unapproved_software_statement(description: impl Into<String>) -> Self {
        Self::new(ErrorCode::UnapprovedSoftwareStatement, description)
    }

    pub fn invalid_request(description: impl Into<String>) -> Self {
        Self::new(ErrorCode::InvalidRequest, description)
    }

    pub fn invalid_request_object(description: impl Into<String>) -> Self {
        Self::new(ErrorCode::InvalidRequestObject, description)
    }

    pub fn access_denied(description: impl Into<String>) -> Self {
        Self::new(ErrorCode::AccessDenied, description)
    }
}
