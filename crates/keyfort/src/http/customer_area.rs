//! The customer's own page: `GET /customer` (the TPPs they authorised, or the sign-in
//! form), `POST /customer/sign-in`, `POST /customer/withdraw`, `POST /customer/sign-out`.
//! The same security headers, same-origin check and error page as the authorization's.

use axum::extract::State;
use axum::http::{header, HeaderMap, HeaderValue, StatusCode};
use axum::response::Response;

use super::extract::RequestCaller;
use super::page_support::{
    cookie, cross_site, customer_address, page, pairs, same_origin, see_other, service_error_page, set_session_cookie,
    take,
};
use super::AppState;
use crate::customer_area::{CustomerSignIn, SignInAnswer, Signed, CUSTOMER_AREA_PATH};
use crate::pages::CustomerSignInView;

/// The customer's session cookie, apart from the authorization's.
const SESSION_COOKIE: &str = "__Host-keyfort-customer";

const AGAIN: &str = "go back to your page and try again";

fn sign_in_page(state: &AppState, status: StatusCode, view: &CustomerSignInView) -> Response {
    page(state, status, state.pages.customer_sign_in(view), None)
}

async fn overview(state: &AppState, headers: &HeaderMap, notice: Option<String>) -> Response {
    let cookie = cookie(headers, SESSION_COOKIE);
    match state.customer_area.overview(cookie.as_deref(), notice).await {
        Ok(Signed::In(view)) => page(state, StatusCode::OK, state.pages.customer_access(&view), None),
        Ok(Signed::Out) => {
            sign_in_page(state, StatusCode::OK, &CustomerSignInView { message: None, username: String::new() })
        }
        Err(e) => service_error_page(state, e),
    }
}

/// `GET /customer`.
pub async fn show(State(state): State<AppState>, headers: HeaderMap) -> Response {
    overview(&state, &headers, None).await
}

/// `POST /customer/sign-in`.
pub async fn sign_in(
    State(state): State<AppState>,
    RequestCaller(mut caller): RequestCaller,
    headers: HeaderMap,
    body: bytes::Bytes,
) -> Response {
    if !same_origin(&state, &headers) {
        return cross_site(&state, AGAIN);
    }
    let mut form = match pairs(&body, &[]) {
        Ok(form) => form,
        Err(error) => return service_error_page(&state, error.into()),
    };
    let form = CustomerSignIn {
        username: take(&mut form, "username").unwrap_or_default(),
        password: take(&mut form, "password").unwrap_or_default(),
        otp: take(&mut form, "otp"),
    };
    caller.peer = customer_address(&state, caller.peer, &headers);
    match state.customer_area.sign_in(&caller, form).await {
        Ok(SignInAnswer::SignedIn { session, max_age }) => {
            let mut response = see_other(CUSTOMER_AREA_PATH);
            set_session_cookie(&mut response, SESSION_COOKIE, &session, max_age);
            response
        }
        Ok(SignInAnswer::Retry { page: view, retry }) => {
            let status = match (retry.retry_after, retry.busy) {
                (Some(_), true) => StatusCode::SERVICE_UNAVAILABLE,
                (Some(_), false) => StatusCode::TOO_MANY_REQUESTS,
                (None, _) => StatusCode::OK,
            };
            let mut response = sign_in_page(&state, status, &view);
            if let Some(wait) = retry.retry_after {
                response.headers_mut().insert(header::RETRY_AFTER, HeaderValue::from(wait.as_secs().max(1)));
            }
            response
        }
        Err(e) => service_error_page(&state, e),
    }
}

/// `POST /customer/withdraw`: `consent_id` and the page's `csrf_token`.
pub async fn withdraw(
    State(state): State<AppState>,
    RequestCaller(caller): RequestCaller,
    headers: HeaderMap,
    body: bytes::Bytes,
) -> Response {
    if !same_origin(&state, &headers) {
        return cross_site(&state, AGAIN);
    }
    let mut form = match pairs(&body, &[]) {
        Ok(form) => form,
        Err(error) => return service_error_page(&state, error.into()),
    };
    let csrf = take(&mut form, "csrf_token").unwrap_or_default();
    let consent_id = take(&mut form, "consent_id").unwrap_or_default();
    let cookie = cookie(&headers, SESSION_COOKIE);
    match state.customer_area.withdraw(&caller, cookie.as_deref(), &csrf, &consent_id).await {
        // The page again, saying what happened; reloading it repeats nothing harmful.
        Ok(Signed::In(notice)) => overview(&state, &headers, Some(notice)).await,
        Ok(Signed::Out) => see_other(CUSTOMER_AREA_PATH),
        Err(e) => service_error_page(&state, e),
    }
}

/// `POST /customer/sign-out`.
pub async fn sign_out(State(state): State<AppState>, headers: HeaderMap, body: bytes::Bytes) -> Response {
    if !same_origin(&state, &headers) {
        return cross_site(&state, AGAIN);
    }
    let mut form = match pairs(&body, &[]) {
        Ok(form) => form,
        Err(error) => return service_error_page(&state, error.into()),
    };
    let csrf = take(&mut form, "csrf_token").unwrap_or_default();
    let cookie = cookie(&headers, SESSION_COOKIE);
    if let Err(e) = state.customer_area.sign_out(cookie.as_deref(), &csrf).await {
        return service_error_page(&state, e);
    }
    let mut response = see_other(CUSTOMER_AREA_PATH);
    set_session_cookie(&mut response, SESSION_COOKIE, "", 0);
    response
}
