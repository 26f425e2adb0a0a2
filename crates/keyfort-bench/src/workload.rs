//! The workloads: what is set up on the server first (clients, tokens), and how each
//! measured request is made.

use std::fmt;
use std::str::FromStr;
use std::sync::Arc;

use anyhow::Context;
use bytes::Bytes;
use http_body_util::Full;
use serde_json::Value;

use crate::client::Target;
use crate::drive::{prepare_parallel, Expect, Prepared, RequestSet};
use crate::material::Material;

const FORM: &str = "application/x-www-form-urlencoded";
const JWT_BEARER: &str = "urn:ietf:params:oauth:client-assertion-type:jwt-bearer";

#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Workload {
    /// `POST /register`: an `application/jwt` registration request signed by the software
    /// key, carrying a fresh SSA signed by the directory key.
    Register,
    /// `POST /oauth2/token`: client_credentials with a PS256 `private_key_jwt`, over mutual
    /// TLS, for a client with certificate-bound tokens.
    TokenPkjwt,
    /// `POST /oauth2/token`: client_credentials with `tls_client_auth`.
    TokenTls,
    /// `GET /register/{client_id}` with the registration access token.
    GetRegistration,
    /// `POST /oauth2/introspect` of the caller's own access token (`tls_client_auth`).
    Introspect,
    /// `POST /open-banking/v3.1/aisp/account-access-consents` with a client-credentials
    /// token: one new consent (a database write) per request.
    Consent,
}

pub const ALL: &[Workload] = &[
    Workload::Register,
    Workload::TokenPkjwt,
    Workload::TokenTls,
    Workload::GetRegistration,
    Workload::Introspect,
    Workload::Consent,
];

const CONSENTS_PATH: &str = "/open-banking/v3.1/aisp/account-access-consents";

impl Workload {
    pub fn name(self) -> &'static str {
        match self {
            Workload::Register => "register",
            Workload::TokenPkjwt => "token-pkjwt",
            Workload::TokenTls => "token-tls",
            Workload::GetRegistration => "get-registration",
            Workload::Introspect => "introspect",
            Workload::Consent => "consent",
        }
    }

    /// Whether each request carries a `jti` and so is signed afresh and sent once.
    pub fn is_signed(self) -> bool {
        matches!(self, Workload::Register | Workload::TokenPkjwt)
    }
}

impl fmt::Display for Workload {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.name())
    }
}

impl FromStr for Workload {
    type Err = String;
    fn from_str(s: &str) -> Result<Self, Self::Err> {
        ALL.iter().copied().find(|w| w.name() == s).ok_or_else(|| {
            format!("unknown workload {s}; one of {}", ALL.iter().map(|w| w.name()).collect::<Vec<_>>().join(", "))
        })
    }
}

/// The endpoints the server advertises.
#[derive(Clone, Debug)]
pub struct Discovery {
    pub issuer: String,
    pub token_endpoint: String,
    pub registration_endpoint: String,
    pub introspection_endpoint: String,
}

fn path_of(url: &str) -> anyhow::Result<String> {
    Ok(url::Url::parse(url).with_context(|| format!("{url} is not a URL"))?.path().to_owned())
}

fn get(host: &str, path: &str) -> hyper::Request<Full<Bytes>> {
    hyper::Request::get(path).header("host", host).body(Full::default()).expect("a valid request")
}

/// A short description of a refusal, for set-up errors: the OAuth error fields only, so
/// nothing secret is printed.
fn refusal(status: u16, body: &[u8]) -> String {
    let v: Value = serde_json::from_slice(body).unwrap_or(Value::Null);
    format!(
        "HTTP {status}: {} {}",
        v["error"].as_str().unwrap_or("(no error code)"),
        v["error_description"].as_str().unwrap_or("")
    )
}

pub fn now() -> i64 {
    std::time::SystemTime::now().duration_since(std::time::UNIX_EPOCH).map(|d| d.as_secs() as i64).unwrap_or(0)
}

impl Discovery {
    pub async fn fetch(target: &Target) -> anyhow::Result<Self> {
        let (status, body) = target.once(get(target.host_header(), "/.well-known/openid-configuration")).await?;
        if status != 200 {
            anyhow::bail!("discovery answered HTTP {status}");
        }
        let v: Value = serde_json::from_slice(&body).context("discovery is not JSON")?;
        let field = |name: &str| -> anyhow::Result<String> {
            v[name].as_str().map(str::to_owned).with_context(|| format!("discovery has no {name}"))
        };
        Ok(Self {
            issuer: field("issuer")?,
            token_endpoint: field("token_endpoint")?,
            registration_endpoint: field("registration_endpoint")?,
            introspection_endpoint: field("introspection_endpoint")?,
        })
    }
}

/// A registered benchmark client.
#[derive(Clone, Debug)]
pub struct Client {
    pub client_id: String,
    pub registration_access_token: String,
    pub registration_path: String,
}

/// The server-side state a workload needs, and how it makes its requests.
pub struct Plan {
    pub workload: Workload,
    pub expect: Expect,
    source: Source,
}

enum Source {
    /// Requests that may be repeated.
    Fixed(Vec<Prepared>),
    /// A maker of fresh, signed requests.
    Signed(Arc<dyn Fn() -> Prepared + Send + Sync>),
}

impl Plan {
    /// The requests for a phase: `n` freshly signed ones, or the fixed ones to cycle.
    pub fn requests(&self, n: usize) -> RequestSet {
        match &self.source {
            Source::Fixed(requests) => RequestSet::cycled(requests.clone()),
            Source::Signed(make) => RequestSet::once(prepare_parallel(n, make.as_ref())),
        }
    }
}

/// Sets up the workload on the server: registers `clients` clients (and gets tokens for
/// `introspect`).
pub async fn plan(
    workload: Workload,
    target: &Target,
    material: Arc<Material>,
    discovery: &Discovery,
    clients: usize,
) -> anyhow::Result<Plan> {
    let clients = clients.max(1);
    let registration_path = path_of(&discovery.registration_endpoint)?;
    let token_path = path_of(&discovery.token_endpoint)?;
    Ok(match workload {
        Workload::Register => {
            let (m, issuer) = (material.clone(), discovery.issuer.clone());
            let path = registration_path.clone();
            Plan {
                workload,
                expect: Expect::status(201),
                source: Source::Signed(Arc::new(move || {
                    Prepared::post(&path, "application/jwt", m.registration_request(&issuer, "private_key_jwt", now()))
                })),
            }
        }
        Workload::TokenPkjwt => {
            let registered = register(target, &material, discovery, "private_key_jwt", clients).await?;
            let ids: Vec<String> = registered.into_iter().map(|c| c.client_id).collect();
            let audience = discovery.token_endpoint.clone();
            let scope = material.scopes();
            let next = std::sync::atomic::AtomicUsize::new(0);
            let m = material.clone();
            let path = token_path.clone();
            let make = move || {
                let i = next.fetch_add(1, std::sync::atomic::Ordering::Relaxed);
                let client_id = &ids[i % ids.len()];
                let body = form(&[
                    ("grant_type", "client_credentials"),
                    ("scope", &scope),
                    ("client_assertion_type", JWT_BEARER),
                    ("client_assertion", &m.client_assertion(client_id, &audience, now())),
                ]);
                Prepared::post(&path, FORM, body)
            };
            // One token first: set-up fails here, with the server's reason, rather than
            // as a run of errors; and the token must be bound to the certificate.
            let (status, body) = target.once(make().to_request(target.host_header())).await?;
            if status != 200 {
                anyhow::bail!("token-pkjwt set-up: the token request was refused: {}", refusal(status, &body));
            }
            check_bound(&body)?;
            Plan { workload, expect: Expect::status(200), source: Source::Signed(Arc::new(make)) }
        }
        Workload::TokenTls => {
            let registered = register(target, &material, discovery, "tls_client_auth", clients).await?;
            let requests: Vec<Prepared> = registered
                .iter()
                .map(|c| {
                    let body = form(&[
                        ("grant_type", "client_credentials"),
                        ("scope", &material.scopes()),
                        ("client_id", &c.client_id),
                    ]);
                    Prepared::post(&token_path, FORM, body)
                })
                .collect();
            let (status, body) = target.once(requests[0].to_request(target.host_header())).await?;
            if status != 200 {
                anyhow::bail!("token-tls set-up: the token request was refused: {}", refusal(status, &body));
            }
            check_bound(&body)?;
            Plan { workload, expect: Expect::status(200), source: Source::Fixed(requests) }
        }
        Workload::GetRegistration => {
            let registered = register(target, &material, discovery, "private_key_jwt", clients).await?;
            let requests = registered
                .iter()
                .map(|c| Prepared {
                    method: hyper::Method::GET,
                    path: c.registration_path.clone(),
                    content_type: None,
                    authorization: Some(format!("Bearer {}", c.registration_access_token)),
                    body: Bytes::new(),
                })
                .collect();
            Plan { workload, expect: Expect::status(200), source: Source::Fixed(requests) }
        }
        Workload::Introspect => {
            let registered = register(target, &material, discovery, "tls_client_auth", clients).await?;
            let introspection_path = path_of(&discovery.introspection_endpoint)?;
            let mut requests = Vec::new();
            for (client, token) in tokens(target, &material, &token_path, &registered).await? {
                let body = form(&[("token", &token), ("client_id", &client.client_id)]);
                requests.push(Prepared::post(&introspection_path, FORM, body));
            }
            Plan {
                workload,
                expect: Expect { status: 200, body_contains: Some("\"active\":true") },
                source: Source::Fixed(requests),
            }
        }
        Workload::Consent => {
            let registered = register(target, &material, discovery, "tls_client_auth", clients).await?;
            // A day ahead: consents must expire in the future for as long as the run lasts.
            let expires = time_rfc3339(now() + 86_400);
            let body = serde_json::json!({
                "Data": {"Permissions": ["ReadAccountsBasic", "ReadBalances"], "ExpirationDateTime": expires},
                "Risk": {},
            })
            .to_string();
            let requests = tokens(target, &material, &token_path, &registered)
                .await?
                .into_iter()
                .map(|(_, token)| Prepared {
                    method: hyper::Method::POST,
                    path: CONSENTS_PATH.to_owned(),
                    content_type: Some("application/json"),
                    authorization: Some(format!("Bearer {token}")),
                    body: Bytes::from(body.clone()),
                })
                .collect();
            Plan { workload, expect: Expect::status(201), source: Source::Fixed(requests) }
        }
    })
}

/// Eight client-credentials access tokens for each client (`tls_client_auth`), so that the
/// server cannot answer from one cached entry.
async fn tokens(
    target: &Target,
    material: &Material,
    token_path: &str,
    clients: &[Client],
) -> anyhow::Result<Vec<(Client, String)>> {
    let mut tokens = Vec::new();
    for c in clients {
        for _ in 0..8 {
            let body = form(&[
                ("grant_type", "client_credentials"),
                ("scope", &material.scopes()),
                ("client_id", &c.client_id),
            ]);
            let request = Prepared::post(token_path, FORM, body);
            let (status, body) = target.once(request.to_request(target.host_header())).await?;
            if status != 200 {
                anyhow::bail!("the token request was refused: {}", refusal(status, &body));
            }
            let v: Value = serde_json::from_slice(&body)?;
            let token = v["access_token"].as_str().context("the token answer has no access_token")?;
            tokens.push((c.clone(), token.to_owned()));
        }
    }
    Ok(tokens)
}

/// `unix` seconds as an RFC 3339 date-time in UTC with `+00:00`, as OBIE writes them.
pub fn time_rfc3339(unix: i64) -> String {
    let days = unix.div_euclid(86_400);
    let secs = unix.rem_euclid(86_400);
    // Howard Hinnant's civil-from-days.
    let z = days + 719_468;
    let era = z.div_euclid(146_097);
    let doe = z.rem_euclid(146_097);
    let yoe = (doe - doe / 1460 + doe / 36_524 - doe / 146_096) / 365;
    let doy = doe - (365 * yoe + yoe / 4 - yoe / 100);
    let mp = (5 * doy + 2) / 153;
    let day = doy - (153 * mp + 2) / 5 + 1;
    let month = if mp < 10 { mp + 3 } else { mp - 9 };
    let year = yoe + era * 400 + i64::from(month <= 2);
    format!("{year:04}-{month:02}-{day:02}T{:02}:{:02}:{:02}+00:00", secs / 3600, secs % 3600 / 60, secs % 60)
}

fn form(pairs: &[(&str, &str)]) -> String {
    url::form_urlencoded::Serializer::new(String::new()).extend_pairs(pairs).finish()
}

/// The access token in a token answer must carry `cnf.x5t#S256` (RFC 8705).
fn check_bound(answer: &[u8]) -> anyhow::Result<()> {
    let v: Value = serde_json::from_slice(answer).context("the token answer is not JSON")?;
    let token = v["access_token"].as_str().context("the token answer has no access_token")?;
    let claims = crate::material::jwt_claims(token).context("the access token is not a JWT")?;
    if claims["cnf"]["x5t#S256"].as_str().is_none() {
        anyhow::bail!("the access token is not bound to the client certificate (no cnf.x5t#S256)");
    }
    Ok(())
}

/// Connections that register clients at once during set-up: enough to keep the server's
/// group commit batching (a million clients take minutes, not an hour), few enough that
/// set-up does not starve the server of the CPU its signature checks need.
const REGISTERING_CONNECTIONS: usize = 16;

/// Registers `n` clients of the benchmark software with `auth_method`, over mutual TLS:
/// each of up to [`REGISTERING_CONNECTIONS`] keep-alive connections registers its share in
/// turn, every request with a fresh SSA. The clients come back in no particular order.
pub async fn register(
    target: &Target,
    material: &Arc<Material>,
    discovery: &Discovery,
    auth_method: &str,
    n: usize,
) -> anyhow::Result<Vec<Client>> {
    let path = path_of(&discovery.registration_endpoint)?;
    let connections = REGISTERING_CONNECTIONS.min(n).max(1);
    let mut tasks = tokio::task::JoinSet::new();
    for share in 0..connections {
        let count = n / connections + usize::from(share < n % connections);
        let (target, material, path) = (target.clone(), material.clone(), path.clone());
        let (issuer, auth_method) = (discovery.issuer.clone(), auth_method.to_owned());
        tasks.spawn(async move {
            let mut connection = target.connect().await?;
            let mut clients = Vec::with_capacity(count);
            for _ in 0..count {
                if connection.is_closed() {
                    connection = target.connect().await?;
                }
                let body = material.registration_request(&issuer, &auth_method, now());
                let request = Prepared::post(&path, "application/jwt", body).to_request(target.host_header());
                let (status, body) = connection
                    .send(request, std::time::Duration::from_secs(30))
                    .await
                    .map_err(|e| anyhow::anyhow!("registering a {auth_method} client: {e}"))?;
                if status != 201 {
                    anyhow::bail!("registering a {auth_method} client was refused: {}", refusal(status, &body));
                }
                clients.push(registered_client(&body)?);
            }
            Ok::<_, anyhow::Error>(clients)
        });
    }
    let mut clients = Vec::with_capacity(n);
    while let Some(done) = tasks.join_next().await {
        clients.extend(done.context("a registering task panicked")??);
    }
    Ok(clients)
}

/// The client a registration answer describes.
fn registered_client(answer: &[u8]) -> anyhow::Result<Client> {
    let v: Value = serde_json::from_slice(answer).context("the registration answer is not JSON")?;
    let text = |name: &str| -> anyhow::Result<String> {
        v[name].as_str().map(str::to_owned).with_context(|| format!("the registration answer has no {name}"))
    };
    Ok(Client {
        client_id: text("client_id")?,
        registration_access_token: text("registration_access_token")?,
        registration_path: path_of(&text("registration_client_uri")?)?,
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn workloads_parse_by_name() {
        for w in ALL {
            assert_eq!(w.name().parse::<Workload>().unwrap(), *w);
        }
        assert!("token".parse::<Workload>().unwrap_err().contains("token-pkjwt"));
        assert!(Workload::Register.is_signed() && !Workload::Introspect.is_signed());
    }

    #[test]
    fn date_times_are_rfc3339_utc() {
        assert_eq!(time_rfc3339(0), "1970-01-01T00:00:00+00:00");
        assert_eq!(time_rfc3339(951_782_400), "2000-02-29T00:00:00+00:00");
        assert_eq!(time_rfc3339(1_798_761_599), "2026-12-31T23:59:59+00:00");
    }

    #[test]
    fn refusals_show_only_the_oauth_error() {
        let shown = refusal(400, br#"{"error":"invalid_client","error_description":"no","access_token":"secret"}"#);
        assert_eq!(shown, "HTTP 400: invalid_client no");
        assert!(!shown.contains("secret"));
    }

    #[test]
    fn a_token_must_be_certificate_bound() {
        let key = keyfort_core::jose::SigningKey::generate(keyfort_core::jose::SigningAlg::ES256, "k").unwrap();
        let bound = key.sign_jwt(&serde_json::json!({"cnf": {"x5t#S256": "abc"}}), "at+jwt");
        let unbound = key.sign_jwt(&serde_json::json!({"sub": "x"}), "at+jwt");
        assert!(check_bound(serde_json::json!({ "access_token": bound }).to_string().as_bytes()).is_ok());
        assert!(check_bound(serde_json::json!({ "access_token": unbound }).to_string().as_bytes()).is_err());
        assert!(check_bound(b"{}").is_err());
    }
}
