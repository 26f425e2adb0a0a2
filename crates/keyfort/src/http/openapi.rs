//! `GET /openapi.json`: the OpenAPI 3.1 description of every endpoint, compiled in.

use axum::http::{header, HeaderValue};
use axum::response::{IntoResponse, Response};

const DOCUMENT: &str = include_str!("../../openapi/keyfort-openapi.json");

/// The hand-written document in `crates/keyfort/openapi/keyfort-openapi.json`, as it is.
pub async fn document() -> Response {
    ([(header::CONTENT_TYPE, HeaderValue::from_static("application/json"))], DOCUMENT).into_response()
}
