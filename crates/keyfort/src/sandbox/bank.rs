//! The sandbox bank: a small resource server of the OBIE Read/Write API v3.1.11 (account
//! information), so that a TPP can spend the access token a customer's consent gave it.
//!
//! It stands where a bank's API gateway stands: it requires mutual TLS from the TPP (a
//! transport certificate of the sandbox CA), and it never verifies an access token itself.
//! Every request is put to Keyfort's validation API (`POST /oauth2/consent/validate`) with
//! the token, the method and path, and the thumbprint of the certificate the TPP presented;
//! the bank authenticates there with its own resource-server certificate. Keyfort answers
//! whether the request is allowed and which accounts the consent covers, and the bank
//! answers with those accounts only.
//!
//! Files, in the sandbox directory:
//! - `bank/resource-server.pem`, `.key`: the bank's certificate (for `localhost`, both TLS
//!   server and client), issued by the sandbox CA by `sandbox init`, or on first use for a
//!   sandbox made before the bank existed;
//! - `bank/accounts.json`: the bank's account data (names, identifications, balances),
//!   keyed by the same account ids as Keyfort's customer store. Read on every request, so
//!   an edit shows at once. `keyfort demo` writes it for its customer; its shape is
//!   [`BankData`].

use std::path::{Path, PathBuf};
use std::sync::Arc;

use anyhow::Context;
use axum::extract::{Path as UrlPath, State};
use axum::http::{header, HeaderMap, HeaderValue, StatusCode};
use axum::response::{IntoResponse, Response};
use axum::routing::get;
use axum::{Extension, Router};
use keyfort_core::clock::{Clock, SystemClock};
use keyfort_core::jose::b64url_encode;
use serde::{Deserialize, Serialize};
use serde_json::{json, Value};

use super::{pki, Authority, Sandbox};

/// Where the bank is served unless told otherwise (next to the keystore's default port).
pub const DEFAULT_BANK_LISTEN: &str = "127.0.0.1:8091";
/// The account-information API's root, as OBIE v3.1.11 names it.
pub const AISP_ROOT: &str = "/open-banking/v3.1/aisp";
/// Keyfort's validation API, where the bank asks about every token.
pub const VALIDATION_PATH: &str = "/oauth2/consent/validate";
const ACCOUNTS_FILE: &str = "bank/accounts.json";
const RESOURCE_SERVER_CERT: &str = "bank/resource-server.pem";
const RESOURCE_SERVER_KEY: &str = "bank/resource-server.key";
/// Longest `x-fapi-interaction-id` played back; a UUID has 36 characters.
const MAX_INTERACTION_ID: usize = 100;

/// The bank's resource-server certificate: its files and its subject, which Keyfort's
/// `[resource_server] client_subject_dns` must list.
#[derive(Debug, Clone)]
pub struct ResourceServerIdentity {
    pub cert: PathBuf,
    pub key: PathBuf,
    /// The subject as an RFC 4514 string (most specific first).
    pub subject_dn: String,
}

impl Sandbox {
    /// The bank's resource-server certificate, issued now by the sandbox CA when this
    /// sandbox has none yet (sandboxes made before the bank existed).
    pub fn resource_server(&self) -> anyhow::Result<ResourceServerIdentity> {
        let cert = self.dir.join(RESOURCE_SERVER_CERT);
        let key = self.dir.join(RESOURCE_SERVER_KEY);
        if !cert.exists() || !key.exists() {
            let issuing = Authority {
                cert_pem: std::fs::read_to_string(self.dir.join("ca/issuing.pem"))
                    .with_context(|| format!("reading the sandbox's issuing CA in {}", self.dir.display()))?,
                key_pem: std::fs::read_to_string(self.dir.join("ca/issuing.key"))
                    .with_context(|| format!("reading the sandbox's issuing CA key in {}", self.dir.display()))?,
            };
            let (chain, private_key) = pki::issue_resource_server(&issuing)?;
            write_private(&key, private_key.as_bytes())?;
            super::write(&cert, chain)?;
        }
        let subject_dn = subject_dn(&cert)?;
        Ok(ResourceServerIdentity { cert, key, subject_dn })
    }

    /// The bank's account data file.
    pub fn bank_accounts_file(&self) -> PathBuf {
        self.dir.join(ACCOUNTS_FILE)
    }
}

/// Writes a private key readable by its owner only.
fn write_private(path: &Path, bytes: &[u8]) -> anyhow::Result<()> {
    use std::io::Write;
    if let Some(parent) = path.parent() {
        std::fs::create_dir_all(parent)?;
    }
    let mut options = std::fs::OpenOptions::new();
    options.write(true).create(true).truncate(true);
    #[cfg(unix)]
    {
        use std::os::unix::fs::OpenOptionsExt;
        options.mode(0o600);
    }
    options.open(path).and_then(|mut f| f.write_all(bytes)).with_context(|| format!("writing {}", path.display()))
}

/// The RFC 4514 subject of the first certificate in a PEM file, with the keywords Keyfort
/// reads (`CN`, `O`, `OU`, `C`, ...) and dotted OIDs for the others.
fn subject_dn(cert_pem: &Path) -> anyhow::Result<String> {
    let der = crate::pem::read_certificate(cert_pem)?;
    let (_, cert) =
        x509_parser::parse_x509_certificate(&der).map_err(|e| anyhow::anyhow!("{}: {e}", cert_pem.display()))?;
    let rdns: Vec<String> = cert
        .subject()
        .iter()
        .map(|rdn| {
            rdn.iter()
                .map(|attribute| {
                    let oid = attribute.attr_type().to_id_string();
                    let keyword = match oid.as_str() {
                        "2.5.4.3" => "CN",
                        "2.5.4.6" => "C",
                        "2.5.4.7" => "L",
                        "2.5.4.8" => "ST",
                        "2.5.4.10" => "O",
                        "2.5.4.11" => "OU",
                        other => other,
                    };
                    format!("{keyword}={}", escape_dn_value(attribute.as_str().unwrap_or_default()))
                })
                .collect::<Vec<_>>()
                .join("+")
        })
        .collect();
    Ok(rdns.into_iter().rev().collect::<Vec<_>>().join(","))
}

/// RFC 4514 §2.4 escaping of an attribute value.
fn escape_dn_value(value: &str) -> String {
    let mut escaped = String::with_capacity(value.len());
    let last = value.chars().count().saturating_sub(1);
    for (i, c) in value.chars().enumerate() {
        let special = matches!(c, ',' | '+' | '"' | '\\' | '<' | '>' | ';')
            || (i == 0 && (c == '#' || c == ' '))
            || (i == last && c == ' ');
        if special {
            escaped.push('\\');
        }
        escaped.push(c);
    }
    escaped
}

/// The bank's account data, as `bank/accounts.json` holds it. The field names are OBIE's,
/// so that the file reads like the answers it produces.
#[derive(Debug, Clone, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct BankData {
    pub accounts: Vec<BankAccount>,
}

/// One account (`OBAccount6`, with its balances).
#[derive(Debug, Clone, Serialize, Deserialize)]
#[serde(deny_unknown_fields, rename_all = "PascalCase")]
pub struct BankAccount {
    /// The same id as in Keyfort's customer store: what an authorised consent lists.
    pub account_id: String,
    pub currency: String,
    pub account_type: AccountType,
    pub account_sub_type: AccountSubType,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub nickname: Option<String>,
    /// The account's identifications (shown only with `ReadAccountsDetail`).
    pub account: Vec<AccountIdentification>,
    #[serde(default)]
    pub balances: Vec<Balance>,
}

#[derive(Debug, Clone, Copy, Serialize, Deserialize)]
pub enum AccountType {
    Business,
    Personal,
}

#[derive(Debug, Clone, Copy, Serialize, Deserialize)]
pub enum AccountSubType {
    ChargeCard,
    CreditCard,
    CurrentAccount,
    EMoney,
    Loan,
    Mortgage,
    PrePaidCard,
    Savings,
    Wallet,
}

#[derive(Debug, Clone, Serialize, Deserialize)]
#[serde(deny_unknown_fields, rename_all = "PascalCase")]
pub struct AccountIdentification {
    pub scheme_name: String,
    pub identification: String,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub name: Option<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub secondary_identification: Option<String>,
}

/// One balance of an account; its `DateTime` is the time of the answer.
#[derive(Debug, Clone, Serialize, Deserialize)]
#[serde(deny_unknown_fields, rename_all = "PascalCase")]
pub struct Balance {
    #[serde(rename = "Type")]
    pub kind: BalanceType,
    pub credit_debit_indicator: CreditDebit,
    pub amount: Amount,
}

#[derive(Debug, Clone, Copy, Serialize, Deserialize)]
pub enum BalanceType {
    ClosingAvailable,
    ClosingBooked,
    ClosingCleared,
    Expected,
    ForwardAvailable,
    Information,
    InterimAvailable,
    InterimBooked,
    InterimCleared,
    OpeningAvailable,
    OpeningBooked,
    OpeningCleared,
    PreviouslyClosedBooked,
}

#[derive(Debug, Clone, Copy, Serialize, Deserialize)]
pub enum CreditDebit {
    Credit,
    Debit,
}

#[derive(Debug, Clone, Serialize, Deserialize)]
#[serde(deny_unknown_fields, rename_all = "PascalCase")]
pub struct Amount {
    pub amount: String,
    pub currency: String,
}

impl BankData {
    /// Reads and checks the account data; every error names the file and what to fix.
    pub fn load(path: &Path) -> anyhow::Result<Self> {
        let text = std::fs::read_to_string(path).with_context(|| {
            format!(
                "the sandbox bank has no account data: write {} (see \"The sandbox bank\" in docs/tpp-guide.md)",
                path.display()
            )
        })?;
        Self::parse(&text).map_err(|e| anyhow::anyhow!("{}: {e}", path.display()))
    }

    /// Parses and checks the file's text.
    pub fn parse(text: &str) -> Result<Self, String> {
        let data: BankData = serde_json::from_str(text).map_err(|e| format!("not the bank's account data ({e})"))?;
        let mut seen = std::collections::HashSet::new();
        for account in &data.accounts {
            let id = &account.account_id;
            if id.is_empty() || id.len() > 40 {
                return Err(format!("AccountId \"{id}\" must have 1 to 40 characters"));
            }
            if !seen.insert(id.as_str()) {
                return Err(format!("AccountId \"{id}\" appears twice; account ids are unique in the bank"));
            }
            check_currency(&account.currency).map_err(|e| format!("account {id}: Currency {e}"))?;
            for balance in &account.balances {
                check_currency(&balance.amount.currency)
                    .map_err(|e| format!("account {id}: a balance's Currency {e}"))?;
                if !is_obie_amount(&balance.amount.amount) {
                    return Err(format!(
                        "account {id}: a balance's Amount \"{}\" is not an OBIE amount (digits, a dot and up to 5 decimals, e.g. 1250.00)",
                        balance.amount.amount
                    ));
                }
            }
        }
        Ok(data)
    }
}

fn check_currency(code: &str) -> Result<(), String> {
    if code.len() == 3 && code.bytes().all(|b| b.is_ascii_uppercase()) {
        Ok(())
    } else {
        Err(format!("\"{code}\" is not an ISO 4217 code; use three capital letters, e.g. GBP"))
    }
}

/// `^\d{1,13}$|^\d{1,13}\.\d{1,5}$` (`OBActiveCurrencyAndAmount_SimpleType`).
fn is_obie_amount(amount: &str) -> bool {
    let (whole, fraction) = match amount.split_once('.') {
        Some((whole, fraction)) => (whole, Some(fraction)),
        None => (amount, None),
    };
    let digits = |s: &str, max: usize| !s.is_empty() && s.len() <= max && s.bytes().all(|b| b.is_ascii_digit());
    digits(whole, 13) && fraction.is_none_or(|f| digits(f, 5))
}

/// The leaf certificate the TPP presented in the TLS handshake (DER). Whoever serves the
/// bank's router puts it in each request's extensions.
#[derive(Clone)]
pub struct TppCertificate(pub Vec<u8>);

/// Keyfort's answer about one request (`POST /oauth2/consent/validate`).
#[derive(Debug, Clone, Deserialize)]
pub struct Validation {
    pub allowed: bool,
    #[serde(default)]
    pub reason: Option<String>,
    /// Absent when the token is not active at all.
    #[serde(default)]
    pub consent_id: Option<String>,
    #[serde(default)]
    pub consent_status: Option<String>,
    #[serde(default)]
    pub permissions: Vec<String>,
    #[serde(default)]
    pub account_ids: Vec<String>,
}

/// Why the bank could not get an answer from Keyfort: the bank's problem, not the TPP's.
#[derive(Debug, thiserror::Error)]
pub enum ValidationUnavailable {
    #[error("Keyfort at {url} cannot be reached ({cause}); start it, or give the bank its address with --keyfort")]
    Unreachable { url: String, cause: String },
    #[error(
        "Keyfort refused the bank's resource-server certificate (HTTP {status}: {body}); add its subject \"{subject_dn}\" to Keyfort's [resource_server] client_subject_dns, and the sandbox CA bundle to [server.tls] client_ca_file"
    )]
    BankRefused { status: u16, body: String, subject_dn: String },
    #[error("Keyfort answered the validation request with HTTP {status}: {body}")]
    Unexpected { status: u16, body: String },
}

/// The bank's client of Keyfort's validation API: mutual TLS with the resource-server
/// certificate.
pub struct ValidationClient {
    http: reqwest::Client,
    url: String,
    subject_dn: String,
}

impl ValidationClient {
    /// A client of Keyfort at `keyfort_url`, trusting the system's roots and `keyfort_ca`.
    pub fn new(
        keyfort_url: &str,
        keyfort_ca: Option<&Path>,
        identity: &ResourceServerIdentity,
    ) -> anyhow::Result<Self> {
        let base = url::Url::parse(keyfort_url).map_err(|e| {
            anyhow::anyhow!("--keyfort {keyfort_url} is not a URL ({e}); give Keyfort's https base URL")
        })?;
        if base.scheme() != "https" {
            anyhow::bail!("--keyfort {keyfort_url} must be an https URL: Keyfort serves HTTPS only");
        }
        let mut roots = rustls::RootCertStore::empty();
        for cert in rustls_native_certs::load_native_certs().certs {
            let _ = roots.add(cert);
        }
        if let Some(path) = keyfort_ca {
            for cert in crate::tls::read_ca_certificates(path).map_err(anyhow::Error::msg)? {
                roots.add(cert)?;
            }
        }
        let chain = crate::pem::read_certificates(&identity.cert)?;
        let key = crate::pem::read_private_key(&identity.key)?;
        let tls = rustls::ClientConfig::builder_with_provider(crate::tls::crypto_provider())
            .with_safe_default_protocol_versions()?
            .with_root_certificates(roots)
            .with_client_auth_cert(chain, key)?;
        let http = reqwest::Client::builder()
            .use_preconfigured_tls(tls)
            // The token goes to Keyfort's validation API and nowhere else.
            .redirect(reqwest::redirect::Policy::none())
            .timeout(std::time::Duration::from_secs(10))
            .build()?;
        Ok(Self {
            http,
            url: format!("{}{VALIDATION_PATH}", keyfort_url.trim_end_matches('/')),
            subject_dn: identity.subject_dn.clone(),
        })
    }

    /// Asks Keyfort whether `token`, presented over a connection with the certificate of
    /// thumbprint `x5t_s256`, may make this request.
    pub async fn validate(
        &self,
        token: &str,
        path: &str,
        x5t_s256: &str,
        account_id: Option<&str>,
    ) -> Result<Validation, ValidationUnavailable> {
        let mut body = json!({"token": token, "method": "GET", "path": path, "x5t#S256": x5t_s256});
        if let Some(account_id) = account_id {
            body["account_id"] = json!(account_id);
        }
        let unreachable =
            |e: reqwest::Error| ValidationUnavailable::Unreachable { url: self.url.clone(), cause: error_chain(&e) };
        let request = self.http.post(&self.url).header("content-type", "application/json").body(body.to_string());
        let response = request.send().await.map_err(unreachable)?;
        let status = response.status().as_u16();
        let text = response.text().await.map_err(unreachable)?;
        match status {
            200 => serde_json::from_str(&text)
                .map_err(|e| ValidationUnavailable::Unexpected { status, body: format!("{} ({e})", clip(&text)) }),
            401 | 403 => Err(ValidationUnavailable::BankRefused {
                status,
                body: clip(&text),
                subject_dn: self.subject_dn.clone(),
            }),
            _ => Err(ValidationUnavailable::Unexpected { status, body: clip(&text) }),
        }
    }
}

fn error_chain(e: &dyn std::error::Error) -> String {
    let mut text = e.to_string();
    let mut source = e.source();
    while let Some(cause) = source {
        text.push_str(": ");
        text.push_str(&cause.to_string());
        source = cause.source();
    }
    text
}

fn clip(text: &str) -> String {
    text.chars().take(300).collect()
}

/// The bank: its account data, Keyfort's validation API, and where TPPs reach it.
pub struct Bank {
    accounts_file: PathBuf,
    validation: ValidationClient,
    /// The bank's base URL, for `Links.Self`.
    public_url: String,
}

/// What a request asks for.
enum Resource {
    Accounts,
    Account(String),
    Balances(String),
}

impl Resource {
    fn account_id(&self) -> Option<&str> {
        match self {
            Resource::Accounts => None,
            Resource::Account(id) | Resource::Balances(id) => Some(id),
        }
    }
}

impl Bank {
    pub fn new(sandbox: &Sandbox, validation: ValidationClient, public_url: &str) -> Self {
        Self {
            accounts_file: sandbox.bank_accounts_file(),
            validation,
            public_url: public_url.trim_end_matches('/').to_owned(),
        }
    }

    /// The bank's routes. The serving code must put each request's [`TppCertificate`] in
    /// its extensions; a request without one is refused.
    pub fn router(self: Arc<Self>) -> Router {
        Router::new()
            .route(&format!("{AISP_ROOT}/accounts"), get(list_accounts))
            .route(&format!("{AISP_ROOT}/accounts/{{AccountId}}"), get(one_account))
            .route(&format!("{AISP_ROOT}/accounts/{{AccountId}}/balances"), get(balances))
            .fallback(|headers: HeaderMap| async move {
                ObieFailure::new(
                    StatusCode::NOT_FOUND,
                    "UK.OBIE.Resource.NotFound",
                    format!(
                        "the sandbox bank serves only GET {AISP_ROOT}/accounts, {AISP_ROOT}/accounts/{{AccountId}} and {AISP_ROOT}/accounts/{{AccountId}}/balances"
                    ),
                )
                .into_response_for(&headers)
            })
            .with_state(self)
    }

    async fn answer(
        &self,
        headers: &HeaderMap,
        certificate: Option<TppCertificate>,
        path: &str,
        resource: Resource,
    ) -> Result<Value, ObieFailure> {
        let certificate = certificate.ok_or_else(|| {
            ObieFailure::unauthorized(
                "no TPP certificate: call the bank over mutual TLS with your transport certificate",
            )
        })?;
        let token = bearer(headers).ok_or_else(|| {
            ObieFailure::unauthorized(
                "no access token: send Authorization: Bearer with the token of the customer's consent",
            )
        })?;
        let thumbprint = b64url_encode(keyfort_core::secret::sha256(&certificate.0));
        let validation =
            self.validation.validate(token, path, &thumbprint, resource.account_id()).await.map_err(|e| {
                tracing::warn!(error = %e, "the sandbox bank cannot validate tokens");
                let status = match e {
                    ValidationUnavailable::Unreachable { .. } => StatusCode::SERVICE_UNAVAILABLE,
                    _ => StatusCode::INTERNAL_SERVER_ERROR,
                };
                ObieFailure::new(status, "UK.OBIE.UnexpectedError", format!("the bank cannot check the token now: {e}"))
            })?;
        if !validation.allowed {
            return Err(refusal(&validation));
        }
        let data = BankData::load(&self.accounts_file).map_err(|e| {
            ObieFailure::new(StatusCode::INTERNAL_SERVER_ERROR, "UK.OBIE.UnexpectedError", format!("{e:#}"))
        })?;
        let chosen = |id: &str| validation.account_ids.iter().any(|a| a == id);
        let detail = validation.permissions.iter().any(|p| p == "ReadAccountsDetail");
        let self_link = format!("{}{path}", self.public_url);
        let find = |id: &str| -> Result<&BankAccount, ObieFailure> {
            // Keyfort allowed the request, so the consent covers this account; the bank
            // checks once more that it answers for the consent's accounts only.
            if !chosen(id) {
                return Err(ObieFailure::new(
                    StatusCode::FORBIDDEN,
                    "UK.OBIE.Resource.ConsentMismatch",
                    format!("account {id} is not one the customer chose for this consent"),
                ));
            }
            data.accounts.iter().find(|a| a.account_id == id).ok_or_else(|| {
                ObieFailure::new(
                    StatusCode::BAD_REQUEST,
                    "UK.OBIE.Resource.NotFound",
                    format!("the bank has no data for account {id}; add it to {}", self.accounts_file.display()),
                )
            })
        };
        Ok(match resource {
            Resource::Accounts => {
                let accounts: Vec<Value> =
                    data.accounts.iter().filter(|a| chosen(&a.account_id)).map(|a| account_json(a, detail)).collect();
                json!({"Data": {"Account": accounts}, "Links": {"Self": self_link}, "Meta": {"TotalPages": 1}})
            }
            Resource::Account(id) => {
                let account = find(&id)?;
                json!({"Data": {"Account": [account_json(account, detail)]}, "Links": {"Self": self_link}, "Meta": {"TotalPages": 1}})
            }
            Resource::Balances(id) => {
                let account = find(&id)?;
                let now = keyfort_core::consent::format_date_time(SystemClock.now());
                let balances: Vec<Value> = account
                    .balances
                    .iter()
                    .map(|b| {
                        json!({"AccountId": account.account_id, "CreditDebitIndicator": b.credit_debit_indicator,
                               "Type": b.kind, "DateTime": now, "Amount": b.amount})
                    })
                    .collect();
                if balances.is_empty() {
                    return Err(ObieFailure::new(
                        StatusCode::BAD_REQUEST,
                        "UK.OBIE.Resource.NotFound",
                        format!(
                            "the bank has no balance for account {id}; add Balances to it in {}",
                            self.accounts_file.display()
                        ),
                    ));
                }
                json!({"Data": {"Balance": balances}, "Links": {"Self": self_link}, "Meta": {"TotalPages": 1}})
            }
        })
    }
}

/// An account as `OBAccount6`; its identifications only with `ReadAccountsDetail`.
fn account_json(account: &BankAccount, detail: bool) -> Value {
    let mut value = json!({
        "AccountId": account.account_id,
        "Status": "Enabled",
        "Currency": account.currency,
        "AccountType": account.account_type,
        "AccountSubType": account.account_sub_type,
    });
    if let Some(nickname) = &account.nickname {
        value["Nickname"] = json!(nickname);
    }
    if detail {
        value["Account"] = json!(account.account);
    }
    value
}

/// The bank's answer when Keyfort does not allow a request: 401 when the token is not
/// active at all (RFC 6750 `invalid_token`), 403 when it is but the consent does not allow
/// this request.
fn refusal(validation: &Validation) -> ObieFailure {
    let reason = validation.reason.clone().unwrap_or_else(|| "Keyfort did not allow the request".into());
    match (&validation.consent_id, validation.consent_status.as_deref()) {
        (None, _) => ObieFailure::unauthorized(format!("the access token is not accepted: {reason}")),
        (Some(_), Some(status)) if status != "Authorised" => ObieFailure::new(
            StatusCode::FORBIDDEN,
            "UK.OBIE.Resource.InvalidConsentStatus",
            format!("{reason}; the consent is {status}, so the customer must authorise a new one"),
        ),
        (Some(consent), _) => ObieFailure::new(
            StatusCode::FORBIDDEN,
            "UK.OBIE.Resource.ConsentMismatch",
            format!("consent {consent} does not allow this request: {reason}"),
        ),
    }
}

fn bearer(headers: &HeaderMap) -> Option<&str> {
    let value = headers.get(header::AUTHORIZATION)?.to_str().ok()?;
    let (scheme, token) = value.split_once(' ')?;
    let token = token.trim();
    (scheme.eq_ignore_ascii_case("bearer") && !token.is_empty()).then_some(token)
}

async fn list_accounts(
    State(bank): State<Arc<Bank>>,
    certificate: Option<Extension<TppCertificate>>,
    headers: HeaderMap,
) -> Response {
    let path = format!("{AISP_ROOT}/accounts");
    respond(&headers, bank.answer(&headers, certificate.map(|c| c.0), &path, Resource::Accounts).await)
}

async fn one_account(
    State(bank): State<Arc<Bank>>,
    UrlPath(account_id): UrlPath<String>,
    certificate: Option<Extension<TppCertificate>>,
    headers: HeaderMap,
) -> Response {
    let path = format!("{AISP_ROOT}/accounts/{account_id}");
    respond(&headers, bank.answer(&headers, certificate.map(|c| c.0), &path, Resource::Account(account_id)).await)
}

async fn balances(
    State(bank): State<Arc<Bank>>,
    UrlPath(account_id): UrlPath<String>,
    certificate: Option<Extension<TppCertificate>>,
    headers: HeaderMap,
) -> Response {
    let path = format!("{AISP_ROOT}/accounts/{account_id}/balances");
    respond(&headers, bank.answer(&headers, certificate.map(|c| c.0), &path, Resource::Balances(account_id)).await)
}

fn respond(headers: &HeaderMap, outcome: Result<Value, ObieFailure>) -> Response {
    match outcome {
        Ok(body) => with_common_headers(headers, (StatusCode::OK, axum::Json(body)).into_response()),
        Err(failure) => failure.into_response_for(headers),
    }
}

/// `x-fapi-interaction-id` (the TPP's, or a new one) and `Cache-Control: no-store` on every
/// answer, as the OBIE API asks.
fn with_common_headers(request: &HeaderMap, mut response: Response) -> Response {
    let played_back = request
        .get("x-fapi-interaction-id")
        .filter(|v| v.len() <= MAX_INTERACTION_ID && v.to_str().is_ok_and(|s| !s.trim().is_empty()))
        .cloned();
    let id = played_back.or_else(|| HeaderValue::from_str(&new_interaction_id()).ok());
    if let Some(id) = id {
        response.headers_mut().insert("x-fapi-interaction-id", id);
    }
    response.headers_mut().insert(header::CACHE_CONTROL, HeaderValue::from_static("no-store"));
    response
}

/// A random (version 4) UUID.
fn new_interaction_id() -> String {
    let mut bytes = [0u8; 16];
    let _ = aws_lc_rs::rand::fill(&mut bytes);
    bytes[6] = (bytes[6] & 0x0f) | 0x40;
    bytes[8] = (bytes[8] & 0x3f) | 0x80;
    let hex = keyfort_core::secret::hex(&bytes);
    format!("{}-{}-{}-{}-{}", &hex[..8], &hex[8..12], &hex[12..16], &hex[16..20], &hex[20..])
}

/// A refusal in the OBIE error shape (`OBErrorResponse1`).
#[derive(Debug)]
struct ObieFailure {
    status: StatusCode,
    error_code: &'static str,
    message: String,
}

impl ObieFailure {
    fn new(status: StatusCode, error_code: &'static str, message: impl Into<String>) -> Self {
        Self { status, error_code, message: message.into() }
    }

    fn unauthorized(message: impl Into<String>) -> Self {
        Self::new(StatusCode::UNAUTHORIZED, "UK.OBIE.Reauthenticate", message)
    }

    fn into_response_for(self, request: &HeaderMap) -> Response {
        let code =
            format!("{} {}", self.status.as_u16(), self.status.canonical_reason().unwrap_or("Error").replace(' ', ""));
        let message: String = self.message.chars().take(500).collect();
        let body = json!({
            "Code": code,
            "Id": keyfort_core::secret::random_b64url(12),
            "Message": message,
            "Errors": [{"ErrorCode": self.error_code, "Message": message}],
        });
        let mut response = (self.status, axum::Json(body)).into_response();
        if self.status == StatusCode::UNAUTHORIZED {
            response
                .headers_mut()
                .insert(header::WWW_AUTHENTICATE, HeaderValue::from_static("Bearer error=\"invalid_token\""));
        }
        with_common_headers(request, response)
    }
}

/// TLS for the bank: its resource-server certificate, and a client certificate from the
/// sandbox CA required of every TPP (the handshake fails without one).
pub fn tls_config(sandbox: &Sandbox, identity: &ResourceServerIdentity) -> anyhow::Result<Arc<rustls::ServerConfig>> {
    let mut roots = rustls::RootCertStore::empty();
    for cert in crate::pem::read_certificates(&sandbox.ca_bundle())? {
        roots.add(cert)?;
    }
    let verifier =
        rustls::server::WebPkiClientVerifier::builder_with_provider(Arc::new(roots), crate::tls::crypto_provider())
            .build()
            .map_err(|e| anyhow::anyhow!("the sandbox CA bundle cannot verify client certificates ({e})"))?;
    let chain = crate::pem::read_certificates(&identity.cert)?;
    let key = crate::pem::read_private_key(&identity.key)?;
    let mut config = rustls::ServerConfig::builder_with_provider(crate::tls::crypto_provider())
        .with_safe_default_protocol_versions()?
        .with_client_cert_verifier(verifier)
        .with_single_cert(chain, key)
        .with_context(|| format!("{} and its key do not form a pair", identity.cert.display()))?;
    config.alpn_protocols = vec![b"h2".to_vec(), b"http/1.1".to_vec()];
    Ok(Arc::new(config))
}

impl BankData {
    /// Writes the account data where the bank reads it.
    pub fn save(&self, sandbox: &Sandbox) -> anyhow::Result<()> {
        super::write(&sandbox.bank_accounts_file(), serde_json::to_string_pretty(self)?)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn account_data_is_checked_and_errors_name_the_problem() {
        let good = r#"{"accounts": [{"AccountId": "acc-1", "Currency": "GBP", "AccountType": "Personal",
            "AccountSubType": "CurrentAccount", "Account": [{"SchemeName": "UK.OBIE.SortCodeAccountNumber",
            "Identification": "60304560123456"}], "Balances": [{"Type": "InterimAvailable",
            "CreditDebitIndicator": "Credit", "Amount": {"Amount": "10.50", "Currency": "GBP"}}]}]}"#;
        assert_eq!(BankData::parse(good).unwrap().accounts[0].account_id, "acc-1");
        for (bad, needle) in [
            (good.replace("\"GBP\", \"AccountType\"", "\"gbp\", \"AccountType\""), "ISO 4217"),
            (good.replace("10.50", "10,50"), "not an OBIE amount"),
            (good.replace("CurrentAccount", "Chequing"), "unknown variant"),
            (good.replace("\"Nickname\"", "x").replace("\"AccountId\"", "\"AccountID\""), "unknown field"),
            (good.replace("]}]}", "]}, {\"AccountId\": \"acc-1\", \"Currency\": \"GBP\", \"AccountType\": \"Personal\", \"AccountSubType\": \"Savings\", \"Account\": []}]}"), "appears twice"),
        ] {
            let error = BankData::parse(&bad).unwrap_err();
            assert!(error.contains(needle), "{needle:?} not in {error:?}");
        }
    }

    #[test]
    fn obie_amounts() {
        for ok in ["0", "1250.00", "1234567890123.12345"] {
            assert!(is_obie_amount(ok), "{ok}");
        }
        for bad in ["", ".5", "1.", "12345678901234", "1.123456", "-1", "1e3"] {
            assert!(!is_obie_amount(bad), "{bad}");
        }
    }

    #[test]
    fn dn_values_are_escaped() {
        assert_eq!(escape_dn_value("Bank, Ltd"), "Bank\\, Ltd");
        assert_eq!(escape_dn_value(" #x "), "\\ #x\\ ");
        assert_eq!(escape_dn_value("#x"), "\\#x");
    }

    #[test]
    fn the_resource_server_certificate_is_made_once_with_its_subject() {
        let dir = tempfile::tempdir().unwrap();
        let sandbox = Sandbox::init(&dir.path().join("sb"), super::super::DEFAULT_KEYSTORE_URL).unwrap();
        let identity = sandbox.resource_server().unwrap();
        // rcgen writes the attributes in this order; `openssl x509 -subject -nameopt RFC2253` prints the same.
        assert_eq!(identity.subject_dn, "O=Keyfort Sandbox Bank,C=GB,CN=Keyfort Sandbox Resource Server");
        let first = std::fs::read(&identity.cert).unwrap();
        // A sandbox made before the bank existed gets one on first use.
        std::fs::remove_file(&identity.cert).unwrap();
        let again = sandbox.resource_server().unwrap();
        assert_ne!(std::fs::read(&again.cert).unwrap(), first);
        assert_eq!(sandbox.resource_server().unwrap().subject_dn, again.subject_dn);
        #[cfg(unix)]
        {
            use std::os::unix::fs::PermissionsExt;
            assert_eq!(std::fs::metadata(&again.key).unwrap().permissions().mode() & 0o777, 0o600);
        }
    }
}
