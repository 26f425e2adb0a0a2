//! The customer's side of the authorization: `GET`/`POST /oauth2/authorize`, the login and
//! consent pages, and the stylesheet and logo they use. Every page carries a strict
//! Content-Security-Policy (no script at all), is never cached, never framed, and sends no
//! referrer.

use std::net::IpAddr;

use axum::extract::State;
use axum::http::{header, HeaderMap, HeaderValue, StatusCode};
use axum::response::{IntoResponse, Response};
use keyfort_core::error::{ErrorCode, OAuthError};

use super::error::{service_error_parts, ErrorParts};
use super::extract::RequestCaller;
use super::AppState;
use crate::authorization::{
    AuthorizationFailure, AuthorizeParams, Decision, DecisionForm, DecisionOutcome, SignInForm, SignInOutcome,
};
use crate::pages::ErrorView;

/// The session cookie: `__Host-` so that it is Secure, for this host only, on every path.
const SESSION_COOKIE: &str = "__Host-keyfort-authorization";

/// Form or query pairs; a parameter sent twice is refused (RFC 6749 §3.1), except the
/// consent page's `account`, which is a list.
fn pairs(raw: &[u8], repeatable: &[&str]) -> Result<Vec<(String, String)>, OAuthError> {
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

fn take(pairs: &mut Vec<(String, String)>, name: &str) -> Option<String> {
    let at = pairs.iter().position(|(n, _)| n == name)?;
    Some(pairs.remove(at).1)
}

fn authorize_params(raw: &[u8]) -> Result<AuthorizeParams, OAuthError> {
    let mut p = pairs(raw, &[])?;
    Ok(AuthorizeParams {
        client_id: take(&mut p, "client_id"),
        request: take(&mut p, "request"),
        request_uri: take(&mut p, "request_uri"),
        response_type: take(&mut p, "response_type"),
        scope: take(&mut p, "scope"),
    })
}

/// The security headers of every page. `form_target` is the TPP's origin: after a form is
/// posted the browser follows a redirect there, and Content-Security-Policy's
/// `form-action` governs that redirect too.
fn html(status: StatusCode, body: String, form_target: Option<&str>) -> Response {
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

fn see_other(location: &str) -> Response {
    let mut response = StatusCode::SEE_OTHER.into_response();
    if let Ok(value) = HeaderValue::from_str(location) {
        response.headers_mut().insert(header::LOCATION, value);
    }
    response.headers_mut().insert(header::CACHE_CONTROL, HeaderValue::from_static("no-store"));
    response.headers_mut().insert("referrer-policy", HeaderValue::from_static("no-referrer"));
    response
}

/// The origin of a URL (`https://tpp.example:8443`), for `form-action`.
fn origin_of(location: &str) -> Option<String> {
    let url = url::Url::parse(location).ok()?;
    Some(url.origin().ascii_serialization())
}

fn error_page(state: &AppState, status: StatusCode, error: &OAuthError) -> Response {
    let view = ErrorView { message: error.description.clone(), code: error.code.as_str().to_owned() };
    match state.pages.error(&view) {
        Ok(body) => html(status, body, None),
        Err(e) => {
            tracing::error!(error = %e, "the error page could not be rendered");
            (StatusCode::INTERNAL_SERVER_ERROR, "the page could not be rendered").into_response()
        }
    }
}

fn failure(state: &AppState, failure: AuthorizationFailure) -> Response {
    match failure {
        AuthorizationFailure::Page(error) => {
            tracing::info!(error = error.code.as_str(), reason = %error.description, "authorization refused on the error page");
            let status =
                if error.code == ErrorCode::AccessDenied { StatusCode::FORBIDDEN } else { StatusCode::BAD_REQUEST };
            error_page(state, status, &error)
        }
        AuthorizationFailure::Redirect { location, error } => {
            tracing::info!(error = error.code.as_str(), reason = %error.description, "authorization refused; back to the TPP");
            see_other(&location)
        }
        AuthorizationFailure::Service(e) => {
            let ErrorParts { status, error, retry_after, .. } = service_error_parts(e);
            let mut response = error_page(state, status, &error);
            if let Some(seconds) = retry_after {
                response.headers_mut().insert(header::RETRY_AFTER, HeaderValue::from(seconds));
            }
            response
        }
    }
}

fn render(
    state: &AppState,
    status: StatusCode,
    rendered: anyhow::Result<String>,
    form_target: Option<&str>,
) -> Response {
    match rendered {
        Ok(body) => html(status, body, form_target),
        Err(e) => failure(state, AuthorizationFailure::Service(crate::error::ServiceError::Internal(e))),
    }
}

fn session_cookie(headers: &HeaderMap) -> Option<String> {
    headers.get_all(header::COOKIE).iter().filter_map(|v| v.to_str().ok()).flat_map(|v| v.split(';')).find_map(|pair| {
        let (name, value) = pair.trim().split_once('=')?;
        (name == SESSION_COOKIE).then(|| value.to_owned())
    })
}

/// A form post must come from the bank's own page: `Origin` is this server's, or (browsers
/// send `Origin: null` under `Referrer-Policy: no-referrer`) the browser says the request
/// is same-origin. The CSRF token is checked besides.
fn same_origin(state: &AppState, headers: &HeaderMap) -> bool {
    let ours = origin_of(&state.config.server.public_url).unwrap_or_default();
    match headers.get(header::ORIGIN).and_then(|v| v.to_str().ok()) {
        Some(origin) if origin != "null" => origin == ours,
        _ => headers.get("sec-fetch-site").and_then(|v| v.to_str().ok()) == Some("same-origin"),
    }
}

fn cross_site(state: &AppState) -> Response {
    error_page(
        state,
        StatusCode::FORBIDDEN,
        &OAuthError::access_denied(
            "this form was not sent from the bank's own page; go back to the app you came from and start again",
        ),
    )
}

/// The customer's own address, for sign-in limits: behind trusted proxies, the last address
/// in `X-Forwarded-For` that is not one of them (so that one proxy is never throttled as
/// one customer).
fn customer_address(state: &AppState, peer: IpAddr, headers: &HeaderMap) -> IpAddr {
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

/// `GET /oauth2/authorize`.
pub async fn authorize_query(State(state): State<AppState>, query: axum::extract::RawQuery) -> Response {
    let raw = query.0.unwrap_or_default();
    authorize(&state, raw.as_bytes()).await
}

/// `POST /oauth2/authorize` (form-encoded, as OpenID Connect allows).
pub async fn authorize_form(State(state): State<AppState>, body: bytes::Bytes) -> Response {
    authorize(&state, &body).await
}

async fn authorize(state: &AppState, raw: &[u8]) -> Response {
    let params = match authorize_params(raw) {
        Ok(params) => params,
        Err(error) => return failure(state, AuthorizationFailure::Page(error)),
    };
    match state.authorization.begin(params).await {
        Ok(started) => {
            let target = origin_of(&started.redirect_uri);
            let mut response = render(state, StatusCode::OK, state.pages.login(&started.login), target.as_deref());
            let cookie = format!(
                "{SESSION_COOKIE}={}; Path=/; Secure; HttpOnly; SameSite=Lax; Max-Age={}",
                started.session,
                state.config.authorization.session_lifetime.as_secs()
            );
            if let Ok(value) = HeaderValue::from_str(&cookie) {
                response.headers_mut().insert(header::SET_COOKIE, value);
            }
            response
        }
        Err(e) => failure(state, e),
    }
}

/// `POST /oauth2/authorize/login`.
pub async fn login(
    State(state): State<AppState>,
    RequestCaller(caller): RequestCaller,
    headers: HeaderMap,
    body: bytes::Bytes,
) -> Response {
    if !same_origin(&state, &headers) {
        return cross_site(&state);
    }
    let mut p = match pairs(&body, &[]) {
        Ok(p) => p,
        Err(error) => return failure(&state, AuthorizationFailure::Page(error)),
    };
    let form = SignInForm {
        csrf_token: take(&mut p, "csrf_token").unwrap_or_default(),
        username: take(&mut p, "username").unwrap_or_default(),
        password: take(&mut p, "password").unwrap_or_default(),
        otp: take(&mut p, "otp"),
        cancelled: take(&mut p, "decision").as_deref() == Some("deny"),
    };
    let mut caller = caller;
    caller.peer = customer_address(&state, caller.peer, &headers);
    let cookie = session_cookie(&headers);
    match state.authorization.sign_in(&caller, cookie.as_deref(), form).await {
        Ok(SignInOutcome::Consent) => see_other("/oauth2/authorize/consent"),
        Ok(SignInOutcome::Cancelled { location }) => see_other(&location),
        Ok(SignInOutcome::Retry { login, retry_after, busy, redirect_uri }) => {
            let status = match (retry_after, busy) {
                (Some(_), true) => StatusCode::SERVICE_UNAVAILABLE,
                (Some(_), false) => StatusCode::TOO_MANY_REQUESTS,
                (None, _) => StatusCode::OK,
            };
            let target = origin_of(&redirect_uri);
            let mut response = render(&state, status, state.pages.login(&login), target.as_deref());
            if let Some(wait) = retry_after {
                response.headers_mut().insert(header::RETRY_AFTER, HeaderValue::from(wait.as_secs().max(1)));
            }
            response
        }
        Err(e) => failure(&state, e),
    }
}

/// `GET /oauth2/authorize/consent`.
pub async fn consent_page(State(state): State<AppState>, headers: HeaderMap) -> Response {
    let cookie = session_cookie(&headers);
    match state.authorization.consent_page(cookie.as_deref()).await {
        Ok((view, redirect_uri)) => {
            let target = origin_of(&redirect_uri);
            render(&state, StatusCode::OK, state.pages.consent(&view), target.as_deref())
        }
        Err(e) => failure(&state, e),
    }
}

/// `POST /oauth2/authorize/consent`.
pub async fn decide(
    State(state): State<AppState>,
    RequestCaller(caller): RequestCaller,
    headers: HeaderMap,
    body: bytes::Bytes,
) -> Response {
    if !same_origin(&state, &headers) {
        return cross_site(&state);
    }
    let mut p = match pairs(&body, &["account"]) {
        Ok(p) => p,
        Err(error) => return failure(&state, AuthorizationFailure::Page(error)),
    };
    let decision = match take(&mut p, "decision").as_deref() {
        Some("approve") => Decision::Approve,
        Some("deny") => Decision::Deny,
        _ => {
            return failure(
                &state,
                AuthorizationFailure::Page(OAuthError::invalid_request("the form's decision must be approve or deny")),
            )
        }
    };
    let form = DecisionForm {
        csrf_token: take(&mut p, "csrf_token").unwrap_or_default(),
        decision,
        accounts: p.into_iter().filter(|(n, _)| n == "account").map(|(_, v)| v).collect(),
    };
    let cookie = session_cookie(&headers);
    match state.authorization.decide(&caller, cookie.as_deref(), form).await {
        Ok(DecisionOutcome::Redirect { location }) => see_other(&location),
        Ok(DecisionOutcome::Retry { consent, redirect_uri }) => {
            let target = origin_of(&redirect_uri);
            render(&state, StatusCode::BAD_REQUEST, state.pages.consent(&consent), target.as_deref())
        }
        Err(e) => failure(&state, e),
    }
}

/// `GET /assets/keyfort.css`.
pub async fn stylesheet(State(state): State<AppState>) -> Response {
    let mut response = state.pages.stylesheet().to_owned().into_response();
    response.headers_mut().insert(header::CONTENT_TYPE, HeaderValue::from_static("text/css; charset=utf-8"));
    response.headers_mut().insert(header::CACHE_CONTROL, HeaderValue::from_static("public, max-age=3600"));
    response.headers_mut().insert("x-content-type-options", HeaderValue::from_static("nosniff"));
    response
}

/// `GET /assets/logo`.
pub async fn logo(State(state): State<AppState>) -> Response {
    match state.pages.logo() {
        Some((bytes, kind)) => {
            let mut response = bytes.to_vec().into_response();
            response.headers_mut().insert(header::CONTENT_TYPE, HeaderValue::from_static(kind));
            response.headers_mut().insert(header::CACHE_CONTROL, HeaderValue::from_static("public, max-age=3600"));
            response.headers_mut().insert("x-content-type-options", HeaderValue::from_static("nosniff"));
            // An SVG logo must not run script even if opened directly.
            response.headers_mut().insert(
                "content-security-policy",
                HeaderValue::from_static("default-src 'none'; style-src 'unsafe-inline'"),
            );
            response
        }
        None => StatusCode::NOT_FOUND.into_response(),
    }
}
