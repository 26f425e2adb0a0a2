//! What the customer's pages share: form decoding, the security headers of every page,
//! redirects, cookies, the same-origin check of form posts, the error page, and the
//! customer's own address behind trusted proxies.

use std::net::IpAddr;

use axum::http::{header, HeaderMap, HeaderValue, StatusCode};
use axum::response::{IntoResponse, Response};
use keyfort_core::error::OAuthError;

use super::error::{service_error_parts, ErrorParts};
use super::AppState;
use crate::error::ServiceError;
use crate::pages::ErrorView;

/// Form or query pairs; a parameter sent twice is refused (RFC 6749 §3.1), except the
/// consent page's `account`, which is a list.
pub(super) fn pairs(raw: &[u8], repeatable: &[&str]) -> Result<Vec<(String, String)>, OAuthError> {
    let mut seen: Vec<(String, String)> = Vec::new();
    for (name, value) in url::form_urlencoded::parse(raw) {
        if !repeatable.contains(&name.as_ref()) && seen.iter().any(|(n, _)| *n == name) {
            return Err(OAuthError::invalid_request(format!(
                "parameter \"{}\" is repeated; send each parameter once",
                name.chars().take(64).collect::<String>()
            )));
        }
        seen.push((name.into_owned(), value.into_owned()));
    }
    Ok(seen)
}

pub(super) fn take(pairs: &mut Vec<(String, String)>, name: &str) -> Option<String> {
    let at = pairs.iter().position(|(n, _)| n == name)?;
    Some(pairs.remove(at).1)
}

/// The security headers of every page. `form_target` is the TPP's origin: after a form is
/// posted the browser follows a redirect there, and Content-Security-Policy's
/// `form-action` governs that redirect too.
pub(super) fn html(status: StatusCode, body: String, form_target: Option<&str>) -> Response {
    let form_action = match form_target {
        Some(origin) => format!("'self' {origin}"),
        None => "'self'".to_owned(),
    };
    let csp = format!(
        "default-src 'none'; style-src 'self'; img-src 'self'; form-action {form_action}; frame-ancestors 'none'; base-uri 'none'"
    );
    let mut response = (status, body).into_response();
    let headers = response.headers_mut();
    headers.insert(header::CONTENT_TYPE, HeaderValue::from_static("text/html; charset=utf-8"));
    headers.insert(header::CACHE_CONTROL, HeaderValue::from_static("no-store"));
    headers.insert(header::PRAGMA, HeaderValue::from_static("no-cache"));
    headers.insert("referrer-policy", HeaderValue::from_static("no-referrer"));
    headers.insert("x-content-type-options", HeaderValue::from_static("nosniff"));
    headers.insert("x-frame-options", HeaderValue::from_static("DENY"));
    if let Ok(value) = HeaderValue::from_str(&csp) {
        headers.insert("content-security-policy", value);
    }
    response
}

pub(super) fn see_other(location: &str) -> Response {
    let mut response = StatusCode::SEE_OTHER.into_response();
    if let Ok(value) = HeaderValue::from_str(location) {
        response.headers_mut().insert(header::LOCATION, value);
    }
    response.headers_mut().insert(header::CACHE_CONTROL, HeaderValue::from_static("no-store"));
    response.headers_mut().insert("referrer-policy", HeaderValue::from_static("no-referrer"));
    response
}

/// The origin of a URL (`https://tpp.example:8443`), for `form-action`.
pub(super) fn origin_of(location: &str) -> Option<String> {
    let url = url::Url::parse(location).ok()?;
    Some(url.origin().ascii_serialization())
}

pub(super) fn error_page(state: &AppState, status: StatusCode, error: &OAuthError) -> Response {
    let view = ErrorView { message: error.description.clone(), code: error.code.as_str().to_owned() };
    match state.pages.error(&view) {
        Ok(body) => html(status, body, None),
        Err(e) => {
            tracing::error!(error = %e, "the error page could not be rendered");
            (StatusCode::INTERNAL_SERVER_ERROR, "the page could not be rendered").into_response()
        }
    }
}

/// The value of the cookie `name`.
pub(super) fn cookie(headers: &HeaderMap, name: &str) -> Option<String> {
    headers.get_all(header::COOKIE).iter().filter_map(|v| v.to_str().ok()).flat_map(|v| v.split(';')).find_map(|pair| {
        let (cookie, value) = pair.trim().split_once('=')?;
        (cookie == name).then(|| value.to_owned())
    })
}

/// Sets a `__Host-` session cookie (Secure, this host only, every path; not for scripts;
/// sent on top-level navigations from other sites, which the authorization needs).
pub(super) fn set_session_cookie(response: &mut Response, name: &str, value: &str, max_age: u64) {
    let cookie = format!("{name}={value}; Path=/; Secure; HttpOnly; SameSite=Lax; Max-Age={max_age}");
    if let Ok(value) = HeaderValue::from_str(&cookie) {
        response.headers_mut().append(header::SET_COOKIE, value);
    }
}

/// A form post must come from the bank's own page: `Origin` is this server's, or (browsers
/// send `Origin: null` under `Referrer-Policy: no-referrer`) the browser says the request
/// is same-origin. The CSRF token is checked besides.
pub(super) fn same_origin(state: &AppState, headers: &HeaderMap) -> bool {
    let ours = origin_of(&state.config.server.public_url).unwrap_or_default();
    match headers.get(header::ORIGIN).and_then(|v| v.to_str().ok()) {
        Some(origin) if origin != "null" => origin == ours,
        _ => headers.get("sec-fetch-site").and_then(|v| v.to_str().ok()) == Some("same-origin"),
    }
}

pub(super) fn cross_site(state: &AppState, what_to_do: &str) -> Response {
    error_page(
        state,
        StatusCode::FORBIDDEN,
        &OAuthError::access_denied(format!("this form was not sent from the bank's own page; {what_to_do}")),
    )
}

/// The customer's own address, for sign-in limits: behind trusted proxies, the last address
/// in `X-Forwarded-For` that is not one of them (so that one proxy is never throttled as
/// one customer).
pub(super) fn customer_address(state: &AppState, peer: IpAddr, headers: &HeaderMap) -> IpAddr {
    let trusted = |ip: &IpAddr| state.config.mtls.trusted_proxies.iter().any(|net| net.contains(ip));
    if !trusted(&peer) {
        return peer;
    }
    headers
        .get_all("x-forwarded-for")
        .iter()
        .filter_map(|v| v.to_str().ok())
        .flat_map(|v| v.split(','))
        .filter_map(|ip| ip.trim().parse::<IpAddr>().ok())
        .map(|ip| ip.to_canonical())
        .collect::<Vec<_>>()
        .into_iter()
        .rev()
        .find(|ip| !trusted(ip))
        .unwrap_or(peer)
}

/// A service error as the error page, with the status and `Retry-After` the JSON API would
/// answer.
pub(super) fn service_error_page(state: &AppState, e: ServiceError) -> Response {
    let ErrorParts { status, error, retry_after, .. } = service_error_parts(e);
    let mut response = error_page(state, status, &error);
    if let Some(seconds) = retry_after {
        response.headers_mut().insert(header::RETRY_AFTER, HeaderValue::from(seconds));
    }
    response
}

/// A page rendered with the security headers, or the error page when it could not be.
pub(super) fn page(
    state: &AppState,
    status: StatusCode,
    rendered: anyhow::Result<String>,
    form_target: Option<&str>,
) -> Response {
    match rendered {
        Ok(body) => html(status, body, form_target),
        Err(e) => service_error_page(state, ServiceError::Internal(e)),
    }
}
