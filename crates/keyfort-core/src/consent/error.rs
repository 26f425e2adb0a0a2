//! The OBIE error model (`OBErrorResponse1` of the Read/Write API v3.1.11): a high-level
//! `Code` ("400 BadRequest"), a unique `Id`, a `Message`, and one or more `Errors`, each with
//! a low-level `ErrorCode` such as `UK.OBIE.Field.Missing`, a `Message` and the JSON `Path`
//! (or header name) it is about.
//!
//! The HTTP status is carried as a category, not as an HTTP type: the edge turns it into a
//! status code in one place.

use serde_json::{json, Value};

/// The OBIE limit on `Message` fields (`Max500Text`).
const MAX_MESSAGE_CHARS: usize = 500;

/// The low-level error codes Keyfort uses (`OBErrorResponseError1Code`).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum ObieErrorCode {
    FieldExpected,
    FieldInvalid,
    FieldInvalidDate,
    FieldMissing,
    FieldUnexpected,
    HeaderInvalid,
    HeaderMissing,
    ResourceConsentMismatch,
    ResourceInvalidConsentStatus,
    ResourceInvalidFormat,
    ResourceNotFound,
    SignatureInvalid,
    SignatureInvalidClaim,
    SignatureMalformed,
    SignatureMissing,
    SignatureMissingClaim,
    UnsupportedAccountIdentifier,
    UnsupportedAccountSecondaryIdentifier,
    UnsupportedCurrency,
    UnsupportedLocalInstrument,
    UnsupportedScheme,
    UnexpectedError,
}

impl ObieErrorCode {
    pub const ALL: [ObieErrorCode; 22] = [
        ObieErrorCode::FieldExpected,
        ObieErrorCode::FieldInvalid,
        ObieErrorCode::FieldInvalidDate,
        ObieErrorCode::FieldMissing,
        ObieErrorCode::FieldUnexpected,
        ObieErrorCode::HeaderInvalid,
        ObieErrorCode::HeaderMissing,
        ObieErrorCode::ResourceConsentMismatch,
        ObieErrorCode::ResourceInvalidConsentStatus,
        ObieErrorCode::ResourceInvalidFormat,
        ObieErrorCode::ResourceNotFound,
        ObieErrorCode::SignatureInvalid,
        ObieErrorCode::SignatureInvalidClaim,
        ObieErrorCode::SignatureMalformed,
        ObieErrorCode::SignatureMissing,
        ObieErrorCode::SignatureMissingClaim,
        ObieErrorCode::UnsupportedAccountIdentifier,
        ObieErrorCode::UnsupportedAccountSecondaryIdentifier,
        ObieErrorCode::UnsupportedCurrency,
        ObieErrorCode::UnsupportedLocalInstrument,
        ObieErrorCode::UnsupportedScheme,
        ObieErrorCode::UnexpectedError,
    ];

    pub fn as_str(self) -> &'static str {
        match self {
            ObieErrorCode::FieldExpected => "UK.OBIE.Field.Expected",
            ObieErrorCode::FieldInvalid => "UK.OBIE.Field.Invalid",
            ObieErrorCode::FieldInvalidDate => "UK.OBIE.Field.InvalidDate",
            ObieErrorCode::FieldMissing => "UK.OBIE.Field.Missing",
            ObieErrorCode::FieldUnexpected => "UK.OBIE.Field.Unexpected",
            ObieErrorCode::HeaderInvalid => "UK.OBIE.Header.Invalid",
            ObieErrorCode::HeaderMissing => "UK.OBIE.Header.Missing",
            ObieErrorCode::ResourceConsentMismatch => "UK.OBIE.Resource.ConsentMismatch",
            ObieErrorCode::ResourceInvalidConsentStatus => "UK.OBIE.Resource.InvalidConsentStatus",
            ObieErrorCode::ResourceInvalidFormat => "UK.OBIE.Resource.InvalidFormat",
            ObieErrorCode::ResourceNotFound => "UK.OBIE.Resource.NotFound",
            ObieErrorCode::SignatureInvalid => "UK.OBIE.Signature.Invalid",
            ObieErrorCode::SignatureInvalidClaim => "UK.OBIE.Signature.InvalidClaim",
            ObieErrorCode::SignatureMalformed => "UK.OBIE.Signature.Malformed",
            ObieErrorCode::SignatureMissing => "UK.OBIE.Signature.Missing",
            ObieErrorCode::SignatureMissingClaim => "UK.OBIE.Signature.MissingClaim",
            ObieErrorCode::UnsupportedAccountIdentifier => "UK.OBIE.Unsupported.AccountIdentifier",
            ObieErrorCode::UnsupportedAccountSecondaryIdentifier => "UK.OBIE.Unsupported.AccountSecondaryIdentifier",
            ObieErrorCode::UnsupportedCurrency => "UK.OBIE.Unsupported.Currency",
            ObieErrorCode::UnsupportedLocalInstrument => "UK.OBIE.Unsupported.LocalInstrument",
            ObieErrorCode::UnsupportedScheme => "UK.OBIE.Unsupported.Scheme",
            ObieErrorCode::UnexpectedError => "UK.OBIE.UnexpectedError",
        }
    }

    pub fn parse(s: &str) -> Option<Self> {
        Self::ALL.iter().copied().find(|c| c.as_str() == s)
    }
}

impl std::fmt::Display for ObieErrorCode {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(self.as_str())
    }
}

/// The high-level category of an error, which decides the HTTP status and the `Code` text.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum ObieCategory {
    /// 400: the request is malformed, or asks for something the consent's state forbids.
    BadRequest,
    /// 403: the resource belongs to another TPP.
    Forbidden,
    /// 415: the body is not `application/json`.
    UnsupportedMediaType,
}

impl ObieCategory {
    /// The HTTP status this category is answered with.
    pub fn status(self) -> u16 {
        match self {
            ObieCategory::BadRequest => 400,
            ObieCategory::Forbidden => 403,
            ObieCategory::UnsupportedMediaType => 415,
        }
    }

    /// The top-level `Code`, in the form the OBIE examples use.
    pub fn code(self) -> &'static str {
        match self {
            ObieCategory::BadRequest => "400 BadRequest",
            ObieCategory::Forbidden => "403 Forbidden",
            ObieCategory::UnsupportedMediaType => "415 UnsupportedMediaType",
        }
    }
}

/// One entry of `Errors`.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ObieErrorItem {
    pub code: ObieErrorCode,
    pub message: String,
    /// The JSON path (`Data.Initiation.InstructedAmount.Currency`), header name
    /// (`x-idempotency-key`) or JOSE header parameter the error is about.
    pub path: Option<String>,
}

impl ObieErrorItem {
    pub fn new(code: ObieErrorCode, message: impl Into<String>, path: Option<&str>) -> Self {
        Self { code, message: clip(message.into()), path: path.filter(|p| !p.is_empty()).map(|p| clip(p.to_owned())) }
    }
}

/// An error answered in the OBIE shape. Every message says what was wrong and what to do.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("{}: {message}", category.code())]
pub struct ObieError {
    pub category: ObieCategory,
    /// A unique reference of this error instance, for the TPP to quote and the audit trail.
    pub id: String,
    pub message: String,
    /// Never empty (OBIE: `Errors` is 1..n).
    pub errors: Vec<ObieErrorItem>,
}

impl ObieError {
    /// An error with one entry.
    pub fn new(category: ObieCategory, code: ObieErrorCode, message: impl Into<String>, path: Option<&str>) -> Self {
        let item = ObieErrorItem::new(code, message, path);
        Self::with_items(category, summary(category, std::slice::from_ref(&item)), vec![item])
    }

    /// A 400 with one entry: the common case.
    pub fn bad_request(code: ObieErrorCode, message: impl Into<String>, path: Option<&str>) -> Self {
        Self::new(ObieCategory::BadRequest, code, message, path)
    }

    /// An error with several entries (a request with several problems). `items` must not be
    /// empty; an empty list is given a generic entry rather than an invalid body.
    pub fn with_items(category: ObieCategory, message: impl Into<String>, mut items: Vec<ObieErrorItem>) -> Self {
        if items.is_empty() {
            items.push(ObieErrorItem::new(ObieErrorCode::UnexpectedError, "the request was refused", None));
        }
        Self { category, id: crate::secret::random_b64url(12), message: clip(message.into()), errors: items }
    }

    /// A 400 listing every problem found in a request.
    pub fn from_items(items: Vec<ObieErrorItem>) -> Self {
        let message = summary(ObieCategory::BadRequest, &items);
        Self::with_items(ObieCategory::BadRequest, message, items)
    }

    /// The code of the first entry: the one the audit trail records.
    pub fn first_code(&self) -> ObieErrorCode {
        self.errors[0].code
    }

    /// The response body.
    pub fn to_json(&self) -> Value {
        let errors: Vec<Value> = self
            .errors
            .iter()
            .map(|e| {
                let mut item = json!({"ErrorCode": e.code.as_str(), "Message": e.message});
                if let Some(path) = &e.path {
                    item["Path"] = json!(path);
                }
                item
            })
            .collect();
        json!({"Code": self.category.code(), "Id": self.id, "Message": self.message, "Errors": errors})
    }

    /// One line for logs and the audit trail.
    pub fn describe(&self) -> String {
        let details: Vec<String> = self
            .errors
            .iter()
            .map(|e| match &e.path {
                Some(path) => format!("{} at {path}: {}", e.code, e.message),
                None => format!("{}: {}", e.code, e.message),
            })
            .collect();
        format!("{} (error id {})", details.join("; "), self.id)
    }
}

/// The top-level `Message`: the first problem, with a count when there are more.
fn summary(category: ObieCategory, items: &[ObieErrorItem]) -> String {
    match (category, items) {
        (ObieCategory::Forbidden, _) => "the request was refused; see Errors".to_owned(),
        (_, [one]) => one.message.clone(),
        (_, [first, rest @ ..]) => format!("{} (and {} more problem(s); see Errors)", first.message, rest.len()),
        (_, []) => "the request was refused".to_owned(),
    }
}

fn clip(text: String) -> String {
    // Messages quote fields of the request: control characters are escaped so that a
    // message cannot break a log line or a header.
    let text = match crate::text::escape_controls(&text) {
        std::borrow::Cow::Borrowed(_) => text,
        std::borrow::Cow::Owned(escaped) => escaped,
    };
    if text.chars().count() <= MAX_MESSAGE_CHARS {
        return text;
    }
    let mut clipped: String = text.chars().take(MAX_MESSAGE_CHARS - 1).collect();
    clipped.push('…');
    clipped
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_body_has_the_obie_shape() {
        let e = ObieError::bad_request(
            ObieErrorCode::FieldMissing,
            "Data.Permissions is required",
            Some("Data.Permissions"),
        );
        let body = e.to_json();
        assert_eq!(body["Code"], "400 BadRequest");
        assert_eq!(body["Errors"][0]["ErrorCode"], "UK.OBIE.Field.Missing");
        assert_eq!(body["Errors"][0]["Path"], "Data.Permissions");
        assert_eq!(body["Message"], "Data.Permissions is required");
        assert_eq!(body["Id"].as_str().unwrap().len(), 16);
        assert_ne!(e.id, ObieError::bad_request(ObieErrorCode::FieldMissing, "x", None).id, "ids are unique");
        let no_path = ObieError::new(ObieCategory::Forbidden, ObieErrorCode::ResourceNotFound, "no", None).to_json();
        assert!(no_path["Errors"][0].get("Path").is_none());
        assert_eq!(no_path["Code"], "403 Forbidden");
    }

    #[test]
    fn messages_fit_the_obie_limit_and_codes_round_trip() {
        let long = "x".repeat(2000);
        let e = ObieError::bad_request(ObieErrorCode::FieldInvalid, long, None);
        assert_eq!(e.errors[0].message.chars().count(), 500);
        assert!(e.message.chars().count() <= 500);
        for code in ObieErrorCode::ALL {
            assert_eq!(ObieErrorCode::parse(code.as_str()), Some(code));
        }
        let many = ObieError::from_items(vec![
            ObieErrorItem::new(ObieErrorCode::FieldInvalid, "first", Some("a")),
            ObieErrorItem::new(ObieErrorCode::FieldInvalid, "second", Some("b")),
        ]);
        assert!(many.message.contains("first") && many.message.contains("1 more"), "{}", many.message);
        assert!(many.describe().contains("second"));
    }
}
