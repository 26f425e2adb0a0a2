//! The customer's side of the authorization: `GET`/`POST /oauth2/authorize`, the login and
//! consent pages, and the stylesheet and logo they use. Every page carries a strict
//! Content-Security-Policy (no script at all), is never cached, never framed, and sends no
//! referrer.

use axum::extract::State;
use axum::http::{header, HeaderMap, HeaderValue, StatusCode};
use axum::response::{IntoResponse, Response};
use keyfort_core::error::{ErrorCode, OAuthError};

use super::extract::RequestCaller;
use super::page_support::{
    cookie, cross_site, customer_address, error_page, origin_of, page, pairs, same_origin, see_other,
    service_error_page, set_session_cookie, take,
};
use super::AppState;
use crate::authorization::{
    AuthorizationFailure, AuthorizeParams, Decision, DecisionForm, DecisionOutcome, SignInForm, SignInOutcome,
};

/// The session cookie: `__Host-` so that it is Secure, for this host only, on every path.
const SESSION_COOKIE: &str = "__Host-keyfort-authorization";

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
        AuthorizationFailure::Service(e) => service_error_page(state, e),
    }
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
            let mut response = page(state, StatusCode::OK, state.pages.login(&started.login), target.as_deref());
            let max_age = state.config.authorization.session_lifetime.as_secs();
            set_session_cookie(&mut response, SESSION_COOKIE, &started.session, max_age);
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
        return cross_site(&state, "go back to the app you came from and start again");
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
    let cookie = cookie(&headers, SESSION_COOKIE);
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
            let mut response = page(&state, status, state.pages.login(&login), target.as_deref());
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
    let cookie = cookie(&headers, SESSION_COOKIE);
    match state.authorization.consent_page(cookie.as_deref()).await {
        Ok((view, redirect_uri)) => {
            let target = origin_of(&redirect_uri);
            page(&state, StatusCode::OK, state.pages.consent(&view), target.as_deref())
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
        return cross_site(&state, "go back to the app you came from and start again");
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
    let cookie = cookie(&headers, SESSION_COOKIE);
    match state.authorization.decide(&caller, cookie.as_deref(), form).await {
        Ok(DecisionOutcome::Redirect { location }) => see_other(&location),
        Ok(DecisionOutcome::Retry { consent, redirect_uri }) => {
            let target = origin_of(&redirect_uri);
            page(&state, StatusCode::BAD_REQUEST, state.pages.consent(&consent), target.as_deref())
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
