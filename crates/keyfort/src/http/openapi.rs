//! `GET /openapi.json`: the OpenAPI 3.1 description of every endpoint, compiled in and
//! adapted, once at start-up, to the listener that serves it: `servers[0].url` is the
//! configured `[server] public_url` (not the file's placeholder), and the admin API's paths
//! are described where they are served (with `[admin] listen` separate, on the admin
//! listener only, whose own `/openapi.json` has them with its URL).

use axum::http::{header, HeaderValue};
use axum::response::IntoResponse;
use axum::routing::{get, MethodRouter};
use serde_json::{json, Value};

use super::AppState;
use crate::config::{AdminListen, Config};

const DOCUMENT: &str = include_str!("../../openapi/keyfort-openapi.json");

/// The document as written in `crates/keyfort/openapi/keyfort-openapi.json`.
pub fn file() -> Value {
    serde_json::from_str(DOCUMENT).expect("the compiled-in OpenAPI document is JSON (a test checks it)")
}

fn with_server(mut document: Value, url: &str, description: &str) -> Value {
    document["servers"] = json!([{ "url": url, "description": description }]);
    document
}

/// What the public listener serves: every path but the admin API's when that has a
/// listener of its own.
pub fn public_document(config: &Config) -> Value {
    let mut document = with_server(file(), &config.server.public_url, "This server ([server] public_url).");
    if let (AdminListen::Separate(_), Some(paths)) = (config.admin.listen, document["paths"].as_object_mut()) {
        paths.retain(|path, _| !path.starts_with("/admin/"));
    }
    document
}

/// What the separate admin listener serves at `url`: the admin API's paths only.
pub fn admin_document(url: &str) -> Value {
    let mut document = with_server(file(), url, "The admin API's own listener ([admin] listen).");
    if let Some(paths) = document["paths"].as_object_mut() {
        paths.retain(|path, _| path.starts_with("/admin/"));
    }
    document
}

/// A `GET` route answering `document`, serialised once.
pub fn route(document: Value) -> MethodRouter<AppState> {
    let body = bytes::Bytes::from(document.to_string());
    get(move || {
        let body = body.clone();
        async move { ([(header::CONTENT_TYPE, HeaderValue::from_static("application/json"))], body).into_response() }
    })
}
