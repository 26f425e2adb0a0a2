//! `POST /oauth2/consent/validate`: the bank's gateway asks whether a customer's token
//! covers a call. The question is JSON; the answer is the decision with its reason.

use axum::extract::State;
use axum::Json;
use keyfort_core::error::OAuthError;
use serde::Deserialize;

use super::extract::RequestCaller;
use super::{ApiError, AppState};
use crate::resource_server::{Validation, ValidationRequest};

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct ValidateBody {
    token: String,
    method: String,
    path: String,
    #[serde(rename = "x5t#S256")]
    certificate_thumbprint: Option<String>,
    account_id: Option<String>,
    #[serde(default)]
    consume: bool,
}

pub async fn validate(
    State(state): State<AppState>,
    RequestCaller(caller): RequestCaller,
    body: bytes::Bytes,
) -> Result<Json<Validation>, ApiError> {
    // Who asks comes first: anyone else learns nothing, not even how to ask.
    state.resource_server.recognise(&caller)?;
    let body: ValidateBody = serde_json::from_slice(&body).map_err(|e| {
        OAuthError::invalid_request(format!(
            "the body must be a JSON object with token, method, path, and optionally x5t#S256, account_id and consume: {e}"
        ))
    })?;
    let request = ValidationRequest {
        token: body.token,
        method: body.method,
        path: body.path,
        certificate_thumbprint: body.certificate_thumbprint,
        account_id: body.account_id,
        consume: body.consume,
    };
    Ok(Json(state.resource_server.validate(&caller, &request).await?))
}
