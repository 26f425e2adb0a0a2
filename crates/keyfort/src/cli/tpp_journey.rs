//! `keyfort tpp consent|authorize|callback|accounts|refresh`: the TPP's side of the
//! customer's journey, after `tpp register`. A consent is created with a client-credentials
//! token (signed, with an idempotency key); the customer is sent to the bank with a signed
//! request object; the address the browser comes back to is checked (the ID token's
//! signature and claims bind the code and the state to this TPP's request) before the code
//! is exchanged over mutual TLS; the tokens then read the customer's accounts at the bank.
//!
//! What must survive between these commands (the consent, the nonce, state and PKCE
//! verifier of the authorization under way, the tokens) is kept in the journey file next
//! to the registration file, created readable by its owner only: it holds secrets.

use std::path::{Path, PathBuf};

use anyhow::{bail, Context};
use keyfort_core::authorization::half_hash;
use keyfort_core::consent::{format_date_time, ConsentType};
use keyfort_core::jose::{b64url_encode, CompactJws, JwkSet, SigningAlg};
use keyfort_core::secret::random_b64url;
use serde::{Deserialize, Serialize};
use serde_json::{json, Value};

use super::args::{ConsentCommand, ConsentDetails, TppJourneyCommand};
use super::tpp::{self, Exchange, Registration};

/// The trust anchor OBIE request signatures name (`http://openbanking.org.uk/tan`).
const TRUST_ANCHOR: &str = "openbanking.org.uk";
/// How long a request object is valid: long enough for a customer to open the link.
const REQUEST_OBJECT_SECONDS: i64 = 300;
/// Tolerated clock difference when checking an ID token's times.
const CLOCK_SKEW_SECONDS: i64 = 60;
const ACR_SCA: &str = "urn:openbanking:psd2:sca";
const ACR_CA: &str = "urn:openbanking:psd2:ca";

/// What the journey commands remember between runs.
#[derive(Serialize, Deserialize, Default)]
pub struct Journey {
    /// The consent `tpp consent create` made last.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub consent: Option<ConsentRef>,
    /// The authorization `tpp authorize` started and `tpp callback` has not finished.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub pending: Option<PendingAuthorization>,
    /// The tokens of the last completed authorization.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub tokens: Option<Tokens>,
}

#[derive(Serialize, Deserialize, Clone, Debug, PartialEq, Eq)]
pub struct ConsentRef {
    pub id: String,
    /// `account-access`, `domestic-payment` or `funds-confirmation`.
    #[serde(rename = "type")]
    pub kind: String,
}

/// An authorization under way: what the response must match.
#[derive(Serialize, Deserialize, Clone)]
pub struct PendingAuthorization {
    pub consent_id: String,
    pub redirect_uri: String,
    pub state: String,
    pub nonce: String,
    /// The PKCE verifier; only its S256 hash went into the request object.
    pub code_verifier: String,
    pub created_at: i64,
}

/// The tokens of an authorized consent. No `Debug`: they are bearer secrets.
#[derive(Serialize, Deserialize, Clone)]
pub struct Tokens {
    pub consent_id: String,
    pub access_token: String,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub refresh_token: Option<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub scope: Option<String>,
    /// Unix time the access token expires.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub expires_at: Option<i64>,
    /// The customer, as the ID token names them (`sub`).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub subject: Option<String>,
}

/// The journey file of a registration file: `registration.json` → `registration.journey.json`.
pub fn journey_path(registration: &Path) -> PathBuf {
    registration.with_extension("journey.json")
}

impl Journey {
    /// The journey of a registration file; empty when none was saved yet.
    pub fn load(path: &Path) -> anyhow::Result<Self> {
        match std::fs::read_to_string(path) {
            Ok(text) => serde_json::from_str(&text).with_context(|| {
                format!("{} is not a journey file of keyfort tpp; remove it and start again", path.display())
            }),
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => Ok(Self::default()),
            Err(e) => Err(e).with_context(|| format!("reading {}", path.display())),
        }
    }

    /// Saves the journey readable and writable by its owner only (it holds tokens and the
    /// PKCE verifier), replacing the previous file in one step.
    pub fn save(&self, path: &Path) -> anyhow::Result<()> {
        use std::io::Write;
        let temporary = path.with_extension(format!("tmp-{}", std::process::id()));
        let mut options = std::fs::OpenOptions::new();
        options.write(true).create(true).truncate(true);
        #[cfg(unix)]
        {
            use std::os::unix::fs::OpenOptionsExt;
            options.mode(0o600);
        }
        let write = || -> std::io::Result<()> {
            let mut file = options.open(&temporary)?;
            file.write_all(serde_json::to_string_pretty(self)?.as_bytes())?;
            file.sync_all()?;
            std::fs::rename(&temporary, path)
        };
        write().with_context(|| format!("writing {}", path.display()))
    }
}

/// The server's discovery document, from the registration's server.
async fn discover(http: &reqwest::Client, reg: &Registration) -> anyhow::Result<Value> {
    let url = format!("{}/.well-known/openid-configuration", reg.server.trim_end_matches('/'));
    let response = http.get(&url).send().await.with_context(|| {
        format!("cannot reach the server at {url}; is it running? (the registration file names it)")
    })?;
    let text = response.text().await?;
    serde_json::from_str(&text).with_context(|| format!("{url} did not answer with a discovery document"))
}

fn endpoint<'a>(discovery: &'a Value, name: &str) -> anyhow::Result<&'a str> {
    discovery[name].as_str().ok_or_else(|| anyhow::anyhow!("the server's discovery document has no {name}"))
}

/// An HTTPS client presenting the registration's transport certificate.
fn tpp_client(reg: &Registration) -> anyhow::Result<reqwest::Client> {
    super::https_client(reg.cacert.as_deref(), Some((&reg.cert, &reg.key))).with_context(|| {
        format!("loading the transport certificate {} and key {}", reg.cert.display(), reg.key.display())
    })
}

fn signing_key(reg: &Registration) -> anyhow::Result<keyfort_core::jose::SigningKey> {
    crate::signing::load_pem_key(&reg.signing_key, None, &reg.kid)
        .with_context(|| format!("loading the software signing key {}", reg.signing_key.display()))
}

/// The client authentication the client registered: a fresh `private_key_jwt` assertion for
/// the token endpoint, or `client_id` alone for `tls_client_auth`.
fn client_authentication(reg: &Registration) -> anyhow::Result<Vec<(String, String)>> {
    if reg.token_endpoint_auth_method != "private_key_jwt" {
        return Ok(vec![("client_id".into(), reg.client_id.clone())]);
    }
    let now = super::now();
    let assertion = signing_key(reg)?.sign_jwt(
        &json!({"iss": reg.client_id, "sub": reg.client_id, "aud": reg.token_endpoint, "iat": now,
                "exp": now + 60, "jti": random_b64url(16)}),
        "JWT",
    );
    Ok(vec![
        ("client_assertion_type".into(), keyfort_core::token::JWT_BEARER_ASSERTION.into()),
        ("client_assertion".into(), assertion),
    ])
}

/// Sends a request and reads the answer (JSON, or the text as a string).
async fn exchange(request: reqwest::RequestBuilder, shown: Value) -> anyhow::Result<Exchange> {
    let response = request.send().await?;
    let status = response.status().as_u16();
    let text = response.text().await?;
    let response =
        if text.is_empty() { Value::Null } else { serde_json::from_str(&text).unwrap_or(Value::String(text)) };
    Ok(Exchange { request: shown, status, response })
}

/// A form POST to an OAuth endpoint with the client's authentication.
async fn oauth_post(
    http: &reqwest::Client,
    reg: &Registration,
    url: &str,
    mut form: Vec<(String, String)>,
) -> anyhow::Result<Exchange> {
    let shown = json!({"grant_type": form.iter().find(|(k, _)| k == "grant_type").map(|(_, v)| v.clone())});
    form.extend(client_authentication(reg)?);
    let body = url::form_urlencoded::Serializer::new(String::new()).extend_pairs(form.iter()).finish();
    exchange(http.post(url).header("content-type", "application/x-www-form-urlencoded").body(body), shown)
        .await
        .with_context(|| format!("POST {url}"))
}

/// `error: error_description` of an OAuth error answer.
fn oauth_error(exchange: &Exchange) -> String {
    match (exchange.response["error"].as_str(), exchange.response["error_description"].as_str()) {
        (Some(error), Some(description)) => format!("HTTP {}, {error}: {description}", exchange.status),
        (Some(error), None) => format!("HTTP {}, {error}", exchange.status),
        _ => format!("HTTP {}: {}", exchange.status, exchange.response),
    }
}

/// `Message` of an OBIE error answer, with its entries.
fn obie_error(exchange: &Exchange) -> String {
    let body = &exchange.response;
    if let Some(error) = body["error"].as_str() {
        return format!("HTTP {}, {error}: {}", exchange.status, body["error_description"].as_str().unwrap_or(""));
    }
    let entries: Vec<String> = body["Errors"]
        .as_array()
        .map(|errors| {
            errors
                .iter()
                .map(|e| {
                    let path = e["Path"].as_str().map(|p| format!(" at {p}")).unwrap_or_default();
                    format!("{}{path}: {}", e["ErrorCode"].as_str().unwrap_or("?"), e["Message"].as_str().unwrap_or(""))
                })
                .collect()
        })
        .unwrap_or_default();
    if entries.is_empty() {
        format!("HTTP {}: {}", exchange.status, body)
    } else {
        format!("HTTP {}: {}", exchange.status, entries.join("; "))
    }
}

/// The SSA's claims the journey needs: redirect URIs, and `org_id/software_id` for request
/// signatures.
struct Software {
    redirect_uris: Vec<String>,
    signature_issuer: String,
}

fn software(reg: &Registration) -> anyhow::Result<Software> {
    let ssa = std::fs::read_to_string(&reg.ssa)
        .with_context(|| format!("reading the software statement {} the registration names", reg.ssa.display()))?;
    let claims = tpp::decode_claims(ssa.trim())?;
    let text = |name: &str| claims[name].as_str().map(str::to_owned);
    let (Some(org_id), Some(software_id)) = (text("org_id"), text("software_id")) else {
        bail!("the software statement {} has no org_id or software_id", reg.ssa.display());
    };
    let redirect_uris = claims["software_redirect_uris"]
        .as_array()
        .map(|uris| uris.iter().filter_map(|u| u.as_str().map(str::to_owned)).collect())
        .unwrap_or_default();
    Ok(Software { redirect_uris, signature_issuer: format!("{org_id}/{software_id}") })
}

/// The consent type of a Keyfort ConsentId, from its prefix.
fn kind_of(consent_id: &str) -> anyhow::Result<ConsentType> {
    let kind = match consent_id.split_once('-').map(|(prefix, _)| prefix) {
        Some("aac") => ConsentType::AccountAccess,
        Some("pdc") => ConsentType::DomesticPayment,
        Some("fcc") => ConsentType::FundsConfirmation,
        _ => bail!(
            "\"{consent_id}\" is not a Keyfort ConsentId (they start with aac-, pdc- or fcc-); give the ConsentId `tpp consent create` printed"
        ),
    };
    Ok(kind)
}

/// The request body of a consent, from the command's flags.
pub fn consent_body(kind: ConsentType, details: &ConsentDetails, now: i64) -> anyhow::Result<Value> {
    let expires = format_date_time(now + i64::from(details.expires_in_days) * 86_400);
    Ok(match kind {
        ConsentType::AccountAccess => json!({
            "Data": {"Permissions": details.permissions, "ExpirationDateTime": expires},
            "Risk": {}
        }),
        ConsentType::DomesticPayment => {
            let (Some(amount), Some(name), Some(account)) =
                (&details.amount, &details.creditor_name, &details.creditor_account)
            else {
                bail!("a domestic-payment consent needs --amount, --creditor-name and --creditor-account (or --body FILE)");
            };
            let mut initiation = json!({
                "InstructionIdentification": random_b64url(12),
                "EndToEndIdentification": random_b64url(12),
                "InstructedAmount": {"Amount": amount, "Currency": details.currency},
                "CreditorAccount": {"SchemeName": details.scheme, "Identification": account, "Name": name},
            });
            if let Some(reference) = &details.reference {
                initiation["RemittanceInformation"] = json!({"Reference": reference});
            }
            json!({"Data": {"Initiation": initiation}, "Risk": {}})
        }
        ConsentType::FundsConfirmation => {
            let Some(account) = &details.debtor_account else {
                bail!("a funds-confirmation consent needs --debtor-account (the customer's account), or --body FILE");
            };
            json!({"Data": {"DebtorAccount": {"SchemeName": details.scheme, "Identification": account},
                            "ExpirationDateTime": expires}})
        }
    })
}

/// The OBIE request signature (`x-jws-signature`) of `body`: a detached JWS with the
/// software's key, whose header carries the OBIE claims.
fn request_signature(reg: &Registration, software: &Software, body: &[u8]) -> anyhow::Result<String> {
    let key = signing_key(reg)?;
    let header = json!({
        "alg": key.alg(),
        "kid": key.kid(),
        "typ": "JOSE",
        "cty": "application/json",
        "http://openbanking.org.uk/iat": super::now(),
        "http://openbanking.org.uk/iss": software.signature_issuer,
        "http://openbanking.org.uk/tan": TRUST_ANCHOR,
        "crit": ["http://openbanking.org.uk/iat", "http://openbanking.org.uk/iss", "http://openbanking.org.uk/tan"],
    });
    Ok(key.sign_detached(&header, body))
}

/// A client-credentials access token with the consent type's scope.
async fn consent_api_token(reg: &Registration, kind: ConsentType) -> anyhow::Result<String> {
    let answer = tpp::token(reg, Some(kind.scope())).await?;
    match answer.response["access_token"].as_str() {
        Some(token) => Ok(token.to_owned()),
        None => bail!(
            "the client-credentials token (scope {}) was refused ({}); check that the software has the role for {} consents (`keyfort tpp get` shows the registered scope)",
            kind.scope(),
            oauth_error(&answer),
            kind
        ),
    }
}

/// Creates a consent: POST with a client-credentials token, an `x-idempotency-key` and an
/// `x-jws-signature` over the exact body.
pub async fn create_consent(
    reg: &Registration,
    kind: ConsentType,
    body: &[u8],
    idempotency_key: &str,
) -> anyhow::Result<Exchange> {
    let software = software(reg)?;
    let token = consent_api_token(reg, kind).await?;
    let signature = request_signature(reg, &software, body)?;
    let url = format!("{}{}", reg.server.trim_end_matches('/'), kind.path());
    let shown = serde_json::from_slice(body).unwrap_or(Value::Null);
    let request = tpp_client(reg)?
        .post(&url)
        .bearer_auth(token)
        .header("content-type", "application/json")
        .header("x-idempotency-key", idempotency_key)
        .header("x-jws-signature", signature)
        .body(body.to_vec());
    exchange(request, shown).await.with_context(|| format!("POST {url}"))
}

/// Reads (`GET`) or revokes (`DELETE`) a consent with a client-credentials token.
pub async fn consent_call(reg: &Registration, method: reqwest::Method, consent_id: &str) -> anyhow::Result<Exchange> {
    let kind = kind_of(consent_id)?;
    let token = consent_api_token(reg, kind).await?;
    let url = format!("{}{}/{consent_id}", reg.server.trim_end_matches('/'), kind.path());
    exchange(tpp_client(reg)?.request(method.clone(), &url).bearer_auth(token), Value::Null)
        .await
        .with_context(|| format!("{method} {url}"))
}

/// An authorization request ready to send the customer's browser to.
pub struct AuthorizationRequest {
    pub url: String,
    /// The request object's claims, as signed.
    pub claims: Value,
    pub pending: PendingAuthorization,
}

/// Builds the authorization URL for a consent: a request object (RFC 9101) signed with the
/// software's key, naming the consent in `openbanking_intent_id`, with a fresh state, nonce
/// and PKCE (S256) challenge.
pub async fn authorization_request(
    reg: &Registration,
    consent_id: &str,
    redirect_uri: Option<&str>,
) -> anyhow::Result<AuthorizationRequest> {
    let kind = kind_of(consent_id)?;
    let software = software(reg)?;
    let redirect_uri = match redirect_uri {
        Some(uri) if software.redirect_uris.iter().any(|r| r == uri) => uri.to_owned(),
        Some(uri) => bail!(
            "--redirect-uri {uri} is not one of the software's redirect URIs ({}); use one of them",
            software.redirect_uris.join(", ")
        ),
        None => software
            .redirect_uris
            .first()
            .cloned()
            .ok_or_else(|| anyhow::anyhow!("the software statement {} names no redirect URI", reg.ssa.display()))?,
    };
    let discovery = discover(&tpp_client(reg)?, reg).await?;
    let authorization_endpoint = endpoint(&discovery, "authorization_endpoint")?;
    let now = super::now();
    let pending = PendingAuthorization {
        consent_id: consent_id.to_owned(),
        redirect_uri: redirect_uri.clone(),
        state: random_b64url(16),
        nonce: random_b64url(16),
        code_verifier: random_b64url(32),
        created_at: now,
    };
    let scope = format!("openid {}", kind.scope());
    let claims = json!({
        "iss": reg.client_id, "client_id": reg.client_id, "aud": reg.issuer,
        "response_type": "code id_token", "scope": scope, "redirect_uri": redirect_uri,
        "state": pending.state, "nonce": pending.nonce,
        "iat": now, "nbf": now, "exp": now + REQUEST_OBJECT_SECONDS, "jti": random_b64url(16),
        "code_challenge": b64url_encode(keyfort_core::secret::sha256(pending.code_verifier.as_bytes())),
        "code_challenge_method": "S256",
        "claims": {"id_token": {
            "openbanking_intent_id": {"value": consent_id, "essential": true},
            "acr": {"essential": true, "values": [ACR_SCA, ACR_CA]},
        }},
    });
    let request_object = signing_key(reg)?.sign_jwt(&claims, "oauth-authz-req+jwt");
    let mut url = url::Url::parse(authorization_endpoint)
        .with_context(|| format!("the server's authorization_endpoint {authorization_endpoint} is not a URL"))?;
    url.query_pairs_mut()
        .append_pair("client_id", &reg.client_id)
        .append_pair("response_type", "code id_token")
        .append_pair("scope", &scope)
        .append_pair("request", &request_object);
    Ok(AuthorizationRequest { url: url.to_string(), claims, pending })
}

/// What the bank's answer carried and what the exchange gave.
pub struct Authorized {
    /// The front-channel ID token's claims, verified.
    pub id_token: Value,
    pub tokens: Tokens,
    /// The access token's claims (read, not verified: the TPP is not its audience).
    pub access_token_claims: Value,
}

/// The checks an ID token must pass for this authorization.
struct IdTokenExpectations<'a> {
    issuer: &'a str,
    client_id: &'a str,
    nonce: &'a str,
    consent_id: &'a str,
}

/// Verifies an ID token's signature with the server's published keys (the key its `kid`
/// names, PS256 or ES256 only), then `iss`, `aud`, the times, `nonce` and
/// `openbanking_intent_id`. Returns the claims and the algorithm (for the hashes).
fn verify_id_token(
    id_token: &str,
    keys: &JwkSet,
    expected: &IdTokenExpectations<'_>,
    now: i64,
) -> anyhow::Result<(Value, SigningAlg)> {
    let jws = CompactJws::parse(id_token).map_err(|e| anyhow::anyhow!("the ID token {e}"))?;
    let alg = jws.header().alg;
    let claims = jws.verify(keys, &[SigningAlg::PS256, SigningAlg::ES256], true).map_err(|e| {
        anyhow::anyhow!("the ID token {e}; it was not signed by this server: do not trust this response")
    })?;
    let claims = Value::Object(claims.into_map());
    let text = |name: &str| claims[name].as_str().unwrap_or_default().to_owned();
    if text("iss") != expected.issuer {
        bail!(
            "the ID token's iss is \"{}\", not the server's issuer {}; do not trust this response",
            text("iss"),
            expected.issuer
        );
    }
    let audience_ok = match &claims["aud"] {
        Value::String(aud) => aud == expected.client_id,
        Value::Array(auds) => auds.iter().any(|a| a == expected.client_id),
        _ => false,
    };
    if !audience_ok {
        bail!(
            "the ID token's aud {} does not name this client ({}); it was issued to another client",
            claims["aud"],
            expected.client_id
        );
    }
    let exp = claims["exp"].as_i64().unwrap_or(0);
    if exp + CLOCK_SKEW_SECONDS < now {
        bail!("the ID token expired at {exp} (now {now}); authorize again (`keyfort tpp authorize`)");
    }
    if claims["iat"].as_i64().unwrap_or(i64::MAX) > now + CLOCK_SKEW_SECONDS {
        bail!("the ID token's iat is in the future; check this machine's clock");
    }
    if !same_secret(&text("nonce"), expected.nonce) {
        bail!("the ID token's nonce is not the one this TPP sent; the response belongs to another authorization (or was replayed): authorize again");
    }
    if text("openbanking_intent_id") != expected.consent_id {
        bail!(
            "the ID token's openbanking_intent_id is \"{}\", not the consent {} this authorization asked for",
            text("openbanking_intent_id"),
            expected.consent_id
        );
    }
    Ok((claims, alg))
}

fn same_secret(a: &str, b: &str) -> bool {
    aws_lc_rs::constant_time::verify_slices_are_equal(a.as_bytes(), b.as_bytes()).is_ok()
}

/// The redirect URI without its query or fragment, for comparing where the browser landed
/// with where the request said to go.
fn without_fragment(url: &url::Url) -> String {
    let mut bare = url.clone();
    bare.set_fragment(None);
    bare.set_query(None);
    bare.to_string()
}

/// Finishes an authorization with the address the browser landed on: reads the fragment,
/// checks the state and the ID token (signature, iss, aud, nonce, c_hash, s_hash,
/// openbanking_intent_id), exchanges the code over mutual TLS with the PKCE verifier, and
/// checks the token endpoint's ID token too.
pub async fn complete_authorization(
    reg: &Registration,
    pending: &PendingAuthorization,
    landed_on: &str,
) -> anyhow::Result<Authorized> {
    let landed = url::Url::parse(landed_on.trim()).map_err(|e| {
        anyhow::anyhow!(
            "\"{}\" is not a URL ({e}); copy the whole address from the browser's address bar, in quotes",
            clip(landed_on)
        )
    })?;
    let expected_uri = url::Url::parse(&pending.redirect_uri)?;
    if without_fragment(&landed) != without_fragment(&expected_uri) {
        bail!(
            "the address is {}, not the redirect URI this authorization used ({}); paste the address the bank sent the browser to",
            without_fragment(&landed),
            pending.redirect_uri
        );
    }
    let Some(fragment) = landed.fragment() else {
        bail!("the address has no #fragment: the bank answers after '#'; copy the whole address, including everything after '#'");
    };
    let params: std::collections::HashMap<String, String> =
        url::form_urlencoded::parse(fragment.as_bytes()).into_owned().collect();
    let state_matches = params.get("state").is_some_and(|state| same_secret(state, &pending.state));
    if let Some(error) = params.get("error") {
        let description = params.get("error_description").map(String::as_str).unwrap_or("");
        let whose = if state_matches { "" } else { " (and its state is not this TPP's)" };
        bail!("the bank did not authorise the consent{whose}: {error}: {description}. Create a new consent (`keyfort tpp consent create`) and authorize again");
    }
    if !state_matches {
        bail!("the state in the address is not the one this TPP sent: the response belongs to another authorization, or was changed; start again with `keyfort tpp authorize`");
    }
    let (Some(code), Some(id_token)) = (params.get("code"), params.get("id_token")) else {
        bail!(
            "the address has no code or id_token in its fragment; copy the whole address the bank sent the browser to"
        );
    };
    let http = tpp_client(reg)?;
    let discovery = discover(&http, reg).await?;
    let jwks_uri = endpoint(&discovery, "jwks_uri")?;
    let jwks_text = http
        .get(jwks_uri)
        .send()
        .await
        .with_context(|| format!("fetching the server's keys from {jwks_uri}"))?
        .text()
        .await?;
    let keys = JwkSet::from_json(jwks_text.as_bytes())
        .map_err(|e| anyhow::anyhow!("the server's JWKS at {jwks_uri} cannot be read ({e})"))?;
    let issuer = endpoint(&discovery, "issuer")?;
    let expected = IdTokenExpectations {
        issuer,
        client_id: &reg.client_id,
        nonce: &pending.nonce,
        consent_id: &pending.consent_id,
    };
    let now = super::now();
    let (claims, alg) = verify_id_token(id_token, &keys, &expected, now)?;
    if !same_secret(claims["c_hash"].as_str().unwrap_or_default(), &half_hash(alg, code)) {
        bail!("the ID token's c_hash does not match the code in the address: the code was changed; do not use it, authorize again");
    }
    if !same_secret(claims["s_hash"].as_str().unwrap_or_default(), &half_hash(alg, &pending.state)) {
        bail!("the ID token's s_hash does not match this TPP's state: the response was changed; authorize again");
    }

    let form = vec![
        ("grant_type".to_owned(), "authorization_code".to_owned()),
        ("code".to_owned(), code.clone()),
        ("redirect_uri".to_owned(), pending.redirect_uri.clone()),
        ("code_verifier".to_owned(), pending.code_verifier.clone()),
    ];
    let answer = oauth_post(&http, reg, endpoint(&discovery, "token_endpoint")?, form).await?;
    let Some(access_token) = answer.response["access_token"].as_str() else {
        bail!(
            "the token endpoint refused the code ({}); a code lasts at most 60 seconds and works once: authorize again (`keyfort tpp authorize`)",
            oauth_error(&answer)
        );
    };
    if let Some(back_channel) = answer.response["id_token"].as_str() {
        let (back, alg) = verify_id_token(back_channel, &keys, &expected, now)?;
        if back["sub"] != claims["sub"] {
            bail!("the token endpoint's ID token names another customer than the front channel's; do not use these tokens");
        }
        if !same_secret(back["at_hash"].as_str().unwrap_or_default(), &half_hash(alg, access_token)) {
            bail!("the token endpoint's ID token has an at_hash that does not match the access token; do not use these tokens");
        }
    }
    let tokens = Tokens {
        consent_id: pending.consent_id.clone(),
        access_token: access_token.to_owned(),
        refresh_token: answer.response["refresh_token"].as_str().map(str::to_owned),
        scope: answer.response["scope"].as_str().map(str::to_owned),
        expires_at: answer.response["expires_in"].as_i64().map(|seconds| now + seconds),
        subject: claims["sub"].as_str().map(str::to_owned),
    };
    let access_token_claims = tpp::decode_claims(access_token).unwrap_or(Value::Null);
    Ok(Authorized { id_token: claims, tokens, access_token_claims })
}

fn clip(text: &str) -> String {
    let clipped: String = text.chars().take(80).collect();
    if clipped.len() < text.len() {
        format!("{clipped}…")
    } else {
        clipped
    }
}

/// A new access token from the refresh token; the refresh token is replaced when the
/// server rotates it.
pub async fn refresh(reg: &Registration, tokens: &Tokens) -> anyhow::Result<Tokens> {
    let Some(refresh_token) = &tokens.refresh_token else {
        bail!("no refresh token was saved; authorize again (`keyfort tpp authorize`)");
    };
    let http = tpp_client(reg)?;
    let form = vec![
        ("grant_type".to_owned(), "refresh_token".to_owned()),
        ("refresh_token".to_owned(), refresh_token.clone()),
    ];
    let answer = oauth_post(&http, reg, &reg.token_endpoint, form).await?;
    let Some(access_token) = answer.response["access_token"].as_str() else {
        bail!(
            "the refresh was refused ({}); once the consent is revoked or expired, the customer must authorise a new one",
            oauth_error(&answer)
        );
    };
    let now = super::now();
    Ok(Tokens {
        consent_id: tokens.consent_id.clone(),
        access_token: access_token.to_owned(),
        refresh_token: answer.response["refresh_token"]
            .as_str()
            .map(str::to_owned)
            .or_else(|| tokens.refresh_token.clone()),
        scope: answer.response["scope"].as_str().map(str::to_owned).or_else(|| tokens.scope.clone()),
        expires_at: answer.response["expires_in"].as_i64().map(|seconds| now + seconds),
        subject: tokens.subject.clone(),
    })
}

/// RFC 7662 introspection of a token of this client.
pub async fn introspect(reg: &Registration, token: &str) -> anyhow::Result<Exchange> {
    let http = tpp_client(reg)?;
    let discovery = discover(&http, reg).await?;
    let url = endpoint(&discovery, "introspection_endpoint")?;
    oauth_post(&http, reg, url, vec![("token".to_owned(), token.to_owned())]).await
}

/// Where the bank is and how to trust it.
pub struct BankTarget<'a> {
    pub url: &'a str,
    pub cacert: Option<&'a Path>,
}

/// `GET` a path of the bank's account-information API with the access token, over mutual
/// TLS with the transport certificate the token is bound to.
pub async fn read_bank(
    reg: &Registration,
    access_token: &str,
    bank: &BankTarget<'_>,
    path: &str,
) -> anyhow::Result<Exchange> {
    if !bank.url.starts_with("https://") {
        bail!("--bank {} must be an https URL: the access token is sent only over TLS", bank.url);
    }
    let http = super::https_client(bank.cacert, Some((&reg.cert, &reg.key)))?;
    let url = format!("{}{path}", bank.url.trim_end_matches('/'));
    exchange(http.get(&url).bearer_auth(access_token), Value::Null).await.with_context(|| {
        format!(
            "cannot reach the bank at {url}; is `keyfort sandbox serve --bank` running, and is --bank-cacert its CA?"
        )
    })
}

/// The bank path of `tpp accounts`.
pub fn accounts_path(account: Option<&str>, balances: bool) -> String {
    let root = crate::sandbox::bank::AISP_ROOT;
    match (account, balances) {
        (None, _) => format!("{root}/accounts"),
        (Some(id), false) => format!("{root}/accounts/{}", path_segment(id)),
        (Some(id), true) => format!("{root}/accounts/{}/balances", path_segment(id)),
    }
}

/// What a path segment keeps as it is: RFC 3986 unreserved characters.
const SEGMENT: &percent_encoding::AsciiSet =
    &percent_encoding::NON_ALPHANUMERIC.remove(b'-').remove(b'.').remove(b'_').remove(b'~');

fn path_segment(text: &str) -> String {
    percent_encoding::utf8_percent_encode(text, SEGMENT).to_string()
}

/// Runs a journey command; the text to print on success.
pub fn run(runtime: &tokio::runtime::Runtime, command: TppJourneyCommand) -> anyhow::Result<String> {
    match command {
        TppJourneyCommand::Consent { command } => runtime.block_on(run_consent(command)),
        TppJourneyCommand::Authorize { files, consent, redirect_uri } => {
            let reg = tpp::load(&files.registration)?;
            let path = journey_path(&files.registration);
            let mut journey = Journey::load(&path)?;
            let consent_id = match consent.or_else(|| journey.consent.as_ref().map(|c| c.id.clone())) {
                Some(id) => id,
                None => bail!("no consent to authorize: create one with `keyfort tpp consent create --type account-access`, or name one with --consent"),
            };
            let request = runtime.block_on(authorization_request(&reg, &consent_id, redirect_uri.as_deref()))?;
            journey.pending = Some(request.pending.clone());
            journey.save(&path)?;
            Ok(format!(
                "authorization of consent {consent_id} (state, nonce and PKCE verifier saved to {}):\n\n{}\n\nOpen it in a browser, sign in as the bank's customer and allow. The bank then sends the browser to {}#code=...; that page may not load, which does not matter: copy the whole address from the address bar and run\n  keyfort tpp callback --registration {} '<the address>'\nThe request object is valid for {} minutes.",
                path.display(),
                request.url,
                request.pending.redirect_uri,
                files.registration.display(),
                REQUEST_OBJECT_SECONDS / 60
            ))
        }
        TppJourneyCommand::Callback { files, url } => {
            let reg = tpp::load(&files.registration)?;
            let path = journey_path(&files.registration);
            let mut journey = Journey::load(&path)?;
            let Some(pending) = journey.pending.clone() else {
                bail!("no authorization is under way for {}: run `keyfort tpp authorize` first, then use the address the browser lands on", files.registration.display());
            };
            let authorized = runtime.block_on(complete_authorization(&reg, &pending, &url))?;
            // A response is used once: a second callback with it must start again.
            journey.pending = None;
            journey.tokens = Some(authorized.tokens.clone());
            journey.save(&path)?;
            Ok(format!(
                "ID token verified (signature, iss, aud, nonce, c_hash, s_hash, openbanking_intent_id {}), customer {}\ncode exchanged: access token for consent {}, scope {}, expires in {} s{}\ntokens saved to {} (readable by you only)",
                pending.consent_id,
                authorized.id_token["sub"].as_str().unwrap_or("?"),
                authorized.tokens.consent_id,
                authorized.tokens.scope.as_deref().unwrap_or("?"),
                authorized.tokens.expires_at.map(|at| at - super::now()).unwrap_or(0),
                if authorized.tokens.refresh_token.is_some() { ", with a refresh token" } else { "" },
                path.display()
            ))
        }
        TppJourneyCommand::Accounts { files, bank, bank_cacert, account, balances } => {
            let reg = tpp::load(&files.registration)?;
            let journey = Journey::load(&journey_path(&files.registration))?;
            let Some(tokens) = journey.tokens else {
                bail!("no access token saved: authorize a consent first (`keyfort tpp authorize`, then `keyfort tpp callback`)");
            };
            let target = BankTarget { url: &bank, cacert: bank_cacert.as_deref() };
            let path = accounts_path(account.as_deref(), balances);
            let answer = runtime.block_on(read_bank(&reg, &tokens.access_token, &target, &path))?;
            let body = serde_json::to_string_pretty(&answer.response)?;
            match answer.status {
                200 => Ok(format!("GET {path}: HTTP 200\n{body}")),
                401 => bail!(
                    "the bank refused the access token ({}); if it expired run `keyfort tpp refresh`, if the consent was revoked the customer must authorise a new one",
                    obie_error(&answer)
                ),
                _ => bail!("the bank refused GET {path} ({})", obie_error(&answer)),
            }
        }
        TppJourneyCommand::Refresh { files } => {
            let reg = tpp::load(&files.registration)?;
            let path = journey_path(&files.registration);
            let mut journey = Journey::load(&path)?;
            let Some(tokens) = journey.tokens.as_ref() else {
                bail!(
                    "no tokens saved: authorize a consent first (`keyfort tpp authorize`, then `keyfort tpp callback`)"
                );
            };
            let refreshed = runtime.block_on(refresh(&reg, tokens))?;
            let expires_in = refreshed.expires_at.map(|at| at - super::now()).unwrap_or(0);
            journey.tokens = Some(refreshed);
            journey.save(&path)?;
            Ok(format!("new access token saved to {} (expires in {expires_in} s)", path.display()))
        }
    }
}

async fn run_consent(command: ConsentCommand) -> anyhow::Result<String> {
    match command {
        ConsentCommand::Create { files, kind, details, body, idempotency_key } => {
            let reg = tpp::load(&files.registration)?;
            let Some(kind) = ConsentType::parse(&kind) else {
                bail!("--type {kind}: use account-access, domestic-payment or funds-confirmation");
            };
            let body = match body {
                Some(file) => std::fs::read(&file).with_context(|| format!("reading --body {}", file.display()))?,
                None => consent_body(kind, &details, super::now())?.to_string().into_bytes(),
            };
            let key = idempotency_key.unwrap_or_else(|| random_b64url(18));
            let answer = create_consent(&reg, kind, &body, &key).await?;
            let Some(consent_id) = answer.response["Data"]["ConsentId"].as_str() else {
                bail!("the consent was refused ({})", obie_error(&answer));
            };
            let path = journey_path(&files.registration);
            let mut journey = Journey::load(&path)?;
            journey.consent = Some(ConsentRef { id: consent_id.to_owned(), kind: kind.as_str().to_owned() });
            journey.save(&path)?;
            Ok(format!(
                "consent created: HTTP {}\n{}\nConsentId {consent_id} saved to {}; next: `keyfort tpp authorize --registration {}`",
                answer.status,
                serde_json::to_string_pretty(&answer.response)?,
                path.display(),
                files.registration.display()
            ))
        }
        ConsentCommand::Get { files, consent } => {
            let (reg, consent_id) = consent_of(&files.registration, consent)?;
            let answer = consent_call(&reg, reqwest::Method::GET, &consent_id).await?;
            if answer.status != 200 {
                bail!("reading consent {consent_id} was refused ({})", obie_error(&answer));
            }
            Ok(format!("consent {consent_id}: HTTP 200\n{}", serde_json::to_string_pretty(&answer.response)?))
        }
        ConsentCommand::Delete { files, consent } => {
            let (reg, consent_id) = consent_of(&files.registration, consent)?;
            let answer = consent_call(&reg, reqwest::Method::DELETE, &consent_id).await?;
            if answer.status != 204 {
                bail!("revoking consent {consent_id} was refused ({})", obie_error(&answer));
            }
            Ok(format!("consent {consent_id} revoked (HTTP 204): its tokens no longer work"))
        }
    }
}

/// The registration, and the consent named or else the one created last.
fn consent_of(registration: &Path, named: Option<String>) -> anyhow::Result<(Registration, String)> {
    let reg = tpp::load(registration)?;
    let journey = Journey::load(&journey_path(registration))?;
    match named.or_else(|| journey.consent.map(|c| c.id)) {
        Some(id) => Ok((reg, id)),
        None => bail!("no consent named and none created yet: give its ConsentId, or create one with `keyfort tpp consent create`"),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_journey_file_sits_next_to_the_registration_and_is_private() {
        assert_eq!(journey_path(Path::new("/x/registration.json")), Path::new("/x/registration.journey.json"));
        let dir = tempfile::tempdir().unwrap();
        let path = journey_path(&dir.path().join("registration.json"));
        assert!(Journey::load(&path).unwrap().tokens.is_none(), "no file: an empty journey");
        let journey = Journey {
            consent: Some(ConsentRef { id: "aac-1".into(), kind: "account-access".into() }),
            pending: None,
            tokens: Some(Tokens {
                consent_id: "aac-1".into(),
                access_token: "at".into(),
                refresh_token: Some("rt".into()),
                scope: None,
                expires_at: Some(1),
                subject: None,
            }),
        };
        journey.save(&path).unwrap();
        journey.save(&path).unwrap();
        #[cfg(unix)]
        {
            use std::os::unix::fs::PermissionsExt;
            assert_eq!(std::fs::metadata(&path).unwrap().permissions().mode() & 0o777, 0o600);
        }
        let read = Journey::load(&path).unwrap();
        assert_eq!(read.consent, journey.consent);
        assert_eq!(read.tokens.unwrap().refresh_token.as_deref(), Some("rt"));
        assert_eq!(std::fs::read_dir(dir.path()).unwrap().count(), 1, "no temporary file left behind");
        std::fs::write(&path, r#"{"tokens": 1}"#).unwrap();
        assert!(Journey::load(&path).err().unwrap().to_string().contains("not a journey file"));
    }

    #[test]
    fn consent_types_come_from_keyfort_ids() {
        assert_eq!(kind_of("aac-abc").unwrap(), ConsentType::AccountAccess);
        assert_eq!(kind_of("pdc-abc").unwrap(), ConsentType::DomesticPayment);
        assert_eq!(kind_of("fcc-abc").unwrap(), ConsentType::FundsConfirmation);
        assert!(kind_of("urn-other").unwrap_err().to_string().contains("aac-, pdc- or fcc-"));
    }

    #[test]
    fn consent_bodies_need_their_fields() {
        let details = ConsentDetails {
            permissions: vec!["ReadAccountsBasic".into()],
            expires_in_days: 1,
            amount: None,
            currency: "GBP".into(),
            creditor_name: None,
            creditor_account: None,
            reference: None,
            debtor_account: None,
            scheme: "UK.OBIE.SortCodeAccountNumber".into(),
        };
        let accounts = consent_body(ConsentType::AccountAccess, &details, 0).unwrap();
        assert_eq!(accounts["Data"]["Permissions"], json!(["ReadAccountsBasic"]));
        assert_eq!(accounts["Data"]["ExpirationDateTime"], "1970-01-02T00:00:00+00:00");
        let error = consent_body(ConsentType::DomesticPayment, &details, 0).unwrap_err().to_string();
        assert!(error.contains("--amount, --creditor-name and --creditor-account"), "{error}");
        assert!(consent_body(ConsentType::FundsConfirmation, &details, 0)
            .unwrap_err()
            .to_string()
            .contains("--debtor-account"));
    }

    #[test]
    fn account_ids_are_one_path_segment() {
        assert_eq!(accounts_path(None, false), "/open-banking/v3.1/aisp/accounts");
        assert_eq!(accounts_path(Some("acc-1.x_y~z"), false), "/open-banking/v3.1/aisp/accounts/acc-1.x_y~z");
        assert_eq!(accounts_path(Some("a/b"), true), "/open-banking/v3.1/aisp/accounts/a%2Fb/balances");
    }
}
