//! Who is calling, established once per request at the edge: the peer, the validated
//! transport certificate (from the TLS handshake or a trusted gateway's header), and, where
//! an endpoint asks for it, the administrator behind `Authorization: Basic`. Every handler
//! gets the caller from these extractors, never from headers of its own.

use std::net::{Ipv4Addr, SocketAddr};

use axum::extract::FromRequestParts;
use axum::http::request::Parts;
use axum::http::{header, HeaderMap};
use base64::Engine;

use super::{ApiError, AppState, ConnectionInfo};
use crate::admin::{unauthorized, BasicCredentials};
use crate::caller::{Caller, PresentedCertificate};
use crate::error::ServiceError;

/// The caller of a request: peer and transport certificate, no administrator.
pub struct RequestCaller(pub Caller);

impl FromRequestParts<AppState> for RequestCaller {
    type Rejection = std::convert::Infallible;

    async fn from_request_parts(parts: &mut Parts, state: &AppState) -> Result<Self, Self::Rejection> {
        Ok(Self(caller(state, parts)))
    }
}

/// The caller of an operator endpoint: an authenticated administrator, or a refusal.
pub struct AdminCaller(pub Caller);

impl FromRequestParts<AppState> for AdminCaller {
    type Rejection = ApiError;

    async fn from_request_parts(parts: &mut Parts, state: &AppState) -> Result<Self, Self::Rejection> {
        let caller = caller(state, parts);
        let administrator = authenticate_administrator(state, caller.peer, &parts.headers).await?;
        Ok(Self(caller.with_administrator(administrator)))
    }
}

fn caller(state: &AppState, parts: &Parts) -> Caller {
    // Every connection the listener accepts carries its facts; a request without them (an
    // in-process test) is treated as an anonymous peer without a certificate.
    let (peer, chain) = match parts.extensions.get::<ConnectionInfo>() {
        Some(connection) => (connection.peer, connection.client_chain.clone()),
        None => (SocketAddr::from((Ipv4Addr::UNSPECIFIED, 0)), None),
    };
    let certificate = match &state.transport {
        None => PresentedCertificate::None,
        Some(trust) => {
            let forwarded =
                trust.gateway_header().and_then(|name| parts.headers.get(name)).map(|value| value.as_bytes());
            match trust.identify(peer, chain.as_deref().map(Vec::as_slice), forwarded, state.clock.now()) {
                Ok(Some(identity)) => PresentedCertificate::Valid(identity),
                Ok(None) => PresentedCertificate::None,
                Err(rejected) => {
                    tracing::info!(%peer, reason = %rejected, "transport certificate refused");
                    PresentedCertificate::Rejected(rejected)
                }
            }
        }
    };
    // An IPv4 peer may arrive as an IPv4-mapped IPv6 address on a dual-stack socket.
    Caller::new(peer.ip().to_canonical(), certificate)
}

/// Checks `Authorization: Basic` against the administrators.
pub async fn authenticate_administrator(
    state: &AppState,
    peer: std::net::IpAddr,
    headers: &HeaderMap,
) -> Result<crate::admin::Administrator, ApiError> {
    let credentials = administrator_credentials(headers)?;
    Ok(state.admins.authenticate(credentials, peer).await?)
}

/// The longest `Authorization` header worth decoding: a 256-character name and a
/// 1024-byte password in base64, with room to spare.
const MAX_AUTHORIZATION_BYTES: usize = 2048;

/// An administrator's name and password from `Authorization: Basic` (RFC 7617: the
/// decoded text is `name:password`, UTF-8).
fn administrator_credentials(headers: &HeaderMap) -> Result<BasicCredentials, ServiceError> {
    let Some(value) = headers.get(header::AUTHORIZATION) else {
        return Err(unauthorized("administrator credentials are required: send Authorization: Basic"));
    };
    // Refused before decoding: nothing about an absurd header is worth computing.
    if value.len() > MAX_AUTHORIZATION_BYTES {
        return Err(unauthorized(format!("the Authorization header is longer than {MAX_AUTHORIZATION_BYTES} bytes")));
    }
    let value = value.to_str().map_err(|_| unauthorized("the Authorization header is not ASCII"))?;
    let Some((scheme, encoded)) = value.split_once(' ') else {
        return Err(unauthorized("the Authorization header must be \"Basic <base64(name:password)>\""));
    };
    if !scheme.eq_ignore_ascii_case("basic") {
        return Err(unauthorized(format!(
            "the Authorization scheme must be Basic, not {}",
            scheme.chars().take(32).collect::<String>()
        )));
    }
    let decoded = base64::engine::general_purpose::STANDARD
        .decode(encoded.trim())
        .ok()
        .and_then(|b| String::from_utf8(b).ok())
        .ok_or_else(|| unauthorized("the Basic credentials are not base64 of UTF-8 \"name:password\""))?;
    let (name, password) =
        decoded.split_once(':').ok_or_else(|| unauthorized("the Basic credentials must be \"name:password\""))?;
    Ok(BasicCredentials { username: name.to_owned(), password: password.to_owned() })
}

/// The token of `Authorization: Bearer`, if the request has one.
pub fn bearer(headers: &HeaderMap) -> Option<&str> {
    let value = headers.get(header::AUTHORIZATION)?.to_str().ok()?;
    let (scheme, token) = value.split_once(' ')?;
    scheme.eq_ignore_ascii_case("bearer").then_some(token.trim())
}
