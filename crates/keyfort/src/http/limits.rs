//! Request limits enforced before any handler runs: the size of the request head, and the
//! body, which is read here, whole and bounded, for every request.
//!
//! Reading the body before the handler is what lets every refusal reach the client: a
//! handler that refuses early (a bad token, missing credentials) would otherwise leave the
//! body unread, and a connection closed with unread data is reset by the kernel, so the
//! client sees a reset instead of the 4xx. A body over the limit is answered 413 with
//! `Connection: close` and drained up to a bound.

use std::time::Duration;

use axum::body::Body;
use axum::extract::Request;
use axum::http::{header, HeaderValue, StatusCode};
use axum::middleware::Next;
use axum::response::{IntoResponse, Response};
use http_body_util::BodyExt;
use keyfort_core::error::OAuthError;

use super::ApiError;

/// A body that trickles in slower than this is abandoned (it would hold a connection).
pub const BODY_READ_TIMEOUT: Duration = Duration::from_secs(30);
/// How long an oversized body is drained before its 413 is sent.
const DRAIN_TIMEOUT: Duration = Duration::from_secs(5);

/// What the edge accepts of a request.
#[derive(Debug, Clone, Copy)]
pub struct RequestLimits {
    /// The request line and headers, in bytes.
    pub max_header_bytes: usize,
    /// The body, in bytes.
    pub max_body_bytes: usize,
}

enum BodyRead {
    Complete,
    TooLarge,
}

/// The size of the request head as it arrived: request line and header lines.
fn head_size(request: &Request) -> usize {
    let line = request.method().as_str().len() + request.uri().to_string().len() + 12;
    line + request.headers().iter().map(|(name, value)| name.as_str().len() + value.len() + 4).sum::<usize>()
}

fn closing(error: ApiError) -> Response {
    let mut response = error.into_response();
    // The rest of the request is not read: the connection cannot carry another one.
    response.headers_mut().insert(header::CONNECTION, HeaderValue::from_static("close"));
    response
}

fn too_large(limit: usize) -> ApiError {
    ApiError::Edge(
        StatusCode::PAYLOAD_TOO_LARGE,
        OAuthError::invalid_request(format!("the request body is larger than the {limit} bytes accepted")),
    )
}

/// Discards up to `bound` more bytes of `body`, so that the answer sent next is read by a
/// client that is still sending, rather than lost to a reset.
async fn drain(mut body: Body, bound: usize) {
    let mut seen = 0usize;
    let _ = tokio::time::timeout(DRAIN_TIMEOUT, async {
        while seen < bound {
            match body.frame().await {
                Some(Ok(frame)) => seen += frame.data_ref().map_or(0, |data| data.len()),
                _ => break,
            }
        }
    })
    .await;
}

/// The middleware: checks the head, reads the whole body within the limits, and hands the
/// handler a request whose body is already in memory.
pub async fn enforce(limits: RequestLimits, request: Request, next: Next) -> Response {
    if head_size(&request) > limits.max_header_bytes {
        return closing(ApiError::Edge(
            StatusCode::REQUEST_HEADER_FIELDS_TOO_LARGE,
            OAuthError::invalid_request(format!(
                "the request line and headers are larger than the {} bytes accepted",
                limits.max_header_bytes
            )),
        ));
    }
    let (parts, body) = request.into_parts();
    // Drained at most this much: a client announcing gigabytes is not read to the end.
    let drain_bound = limits.max_body_bytes.saturating_mul(4).max(1 << 20);
    let declared = parts
        .headers
        .get(header::CONTENT_LENGTH)
        .and_then(|v| v.to_str().ok())
        .and_then(|v| v.trim().parse::<u64>().ok());
    if declared.is_some_and(|length| length > limits.max_body_bytes as u64) {
        // Answered at once; what the client is still sending is read and discarded behind
        // the answer, so that closing the connection does not reset it before it is read.
        tokio::spawn(drain(body, drain_bound));
        return closing(too_large(limits.max_body_bytes));
    }
    let mut body = body;
    let mut collected = bytes::BytesMut::new();
    let read = tokio::time::timeout(BODY_READ_TIMEOUT, async {
        while let Some(frame) = body.frame().await {
            let Some(data) = frame?.into_data().ok() else { continue };
            if collected.len() + data.len() > limits.max_body_bytes {
                return Ok(BodyRead::TooLarge);
            }
            collected.extend_from_slice(&data);
        }
        Ok::<_, axum::Error>(BodyRead::Complete)
    })
    .await;
    match read {
        Ok(Ok(BodyRead::Complete)) => {}
        Ok(Ok(BodyRead::TooLarge)) => {
            drain(body, drain_bound).await;
            return closing(too_large(limits.max_body_bytes));
        }
        Ok(Err(_)) => {
            // The client broke off the body; whatever it still reads gets a clear answer.
            return closing(ApiError::Edge(
                StatusCode::BAD_REQUEST,
                OAuthError::invalid_request("the request body could not be read"),
            ));
        }
        Err(_) => {
            return closing(ApiError::Edge(
                StatusCode::REQUEST_TIMEOUT,
                OAuthError::invalid_request(format!(
                    "the request body was not received within {} seconds",
                    BODY_READ_TIMEOUT.as_secs()
                )),
            ))
        }
    }
    next.run(Request::from_parts(parts, Body::from(collected.freeze()))).await
}
