//! `keyfort tpp`: the TPP's side of onboarding, so nobody has to hand-build JWTs. It builds
//! the registration request from the software statement, signs it, sends it over mutual TLS,
//! and keeps what the bank answered in a registration file for the later commands.

use std::path::{Path, PathBuf};

use anyhow::Context;
use keyfort_core::jose::{CompactJws, SigningKey};
use serde::{Deserialize, Serialize};
use serde_json::{json, Value};

/// What `tpp register` saves, and the other `tpp` commands read.
#[derive(Serialize, Deserialize, Clone, Debug)]
pub struct Registration {
    pub server: String,
    pub issuer: String,
    pub token_endpoint: String,
    pub client_id: String,
    pub registration_access_token: String,
    pub registration_client_uri: String,
    pub token_endpoint_auth_method: String,
    pub ssa: PathBuf,
    pub signing_key: PathBuf,
    pub kid: String,
    pub cert: PathBuf,
    pub key: PathBuf,
    pub cacert: Option<PathBuf>,
}

/// How to register.
#[derive(Clone, Debug)]
pub struct RegisterOptions {
    pub server: String,
    pub ssa: PathBuf,
    pub signing_key: PathBuf,
    pub kid: String,
    pub cert: PathBuf,
    pub key: PathBuf,
    pub cacert: Option<PathBuf>,
    /// Send the claims as JSON (the WSO2 sample) instead of a signed JWT (OBIE).
    pub json: bool,
    /// `private_key_jwt` or `tls_client_auth`.
    pub auth_method: String,
}

impl RegisterOptions {
    /// A signed private_key_jwt registration of a sandbox software, with its legacy OB
    /// transport certificate, against `server` (trusting `cacert`).
    pub fn for_sandbox_software(server: &str, files: &crate::sandbox::SoftwareFiles, cacert: &Path) -> Self {
        Self {
            server: server.to_owned(),
            ssa: files.ssa.clone(),
            signing_key: files.signing_key.clone(),
            kid: files.kid.clone(),
            cert: files.transport_cert.clone(),
            key: files.transport_key.clone(),
            cacert: Some(cacert.to_path_buf()),
            json: false,
            auth_method: "private_key_jwt".into(),
        }
    }
}

/// One HTTP exchange, for printing.
pub struct Exchange {
    pub request: Value,
    pub status: u16,
    pub response: Value,
}

fn load_signing_key(path: &Path, kid: &str) -> anyhow::Result<SigningKey> {
    crate::signing::load_pem_key(path, None, kid)
}

/// The claims of a JWT, without verifying it (the TPP reads its own SSA).
pub fn decode_claims(jwt: &str) -> anyhow::Result<Value> {
    let jws = CompactJws::parse(jwt).map_err(|e| anyhow::anyhow!("the token {e}"))?;
    Ok(Value::Object(jws.unverified_claims().map_err(|e| anyhow::anyhow!("the token {e}"))?.into_map()))
}

fn scopes_for(roles: &[Value]) -> String {
    let mut scopes = Vec::new();
    for role in roles.iter().filter_map(Value::as_str) {
        let scope = match role {
            "AISP" => "accounts",
            "PISP" => "payments",
            "CBPII" => "fundsconfirmations",
            _ => continue,
        };
        if !scopes.contains(&scope) {
            scopes.push(scope);
        }
    }
    scopes.join(" ")
}

fn subject_dn(cert_pem: &Path) -> anyhow::Result<String> {
    let der = crate::pem::read_certificate(cert_pem)?;
    let (_, cert) =
        x509_parser::parse_x509_certificate(&der).map_err(|e| anyhow::anyhow!("{}: {e}", cert_pem.display()))?;
    let rdns: Vec<String> = cert
        .subject()
        .iter()
        .map(|rdn| {
            rdn.iter()
                .map(|a| {
                    let name = match a.attr_type().to_id_string().as_str() {
                        "2.5.4.3" => "CN".to_owned(),
                        "2.5.4.6" => "C".to_owned(),
                        "2.5.4.10" => "O".to_owned(),
                        "2.5.4.11" => "OU".to_owned(),
                        "2.5.4.97" => "organizationIdentifier".to_owned(),
                        other => other.to_owned(),
                    };
                    format!("{name}={}", a.as_str().unwrap_or_default().replace(',', "\\,"))
                })
                .collect::<Vec<_>>()
                .join("+")
        })
        .collect();
    Ok(rdns.into_iter().rev().collect::<Vec<_>>().join(","))
}

/// A connection error, with what to do when the server's certificate is not trusted: the
/// usual first failure against a development server.
pub fn explain_send_error(error: reqwest::Error, url: &str) -> anyhow::Error {
    let chain = format!("{:?}", anyhow::Error::from(error));
    let untrusted = ["UnknownIssuer", "invalid peer certificate", "certificate verify failed", "BadSignature"];
    let base = anyhow::anyhow!("{url}: {chain}");
    if untrusted.iter().any(|needle| chain.contains(needle)) {
        base.context(format!(
            "the server's TLS certificate at {url} is not trusted: pass --cacert with the CA (or the certificate \
             itself) that issued it, e.g. --cacert data/dev-tls/cert.pem for a server's development certificate"
        ))
    } else {
        base
    }
}

async fn discover(http: &reqwest::Client, server: &str) -> anyhow::Result<Value> {
    let url = format!("{}/.well-known/openid-configuration", server.trim_end_matches('/'));
    let response = http.get(&url).send().await.map_err(|e| explain_send_error(e, &url))?;
    Ok(serde_json::from_str(&response.text().await?)?)
}

/// The registration request claims for a software statement, fresh (iat, exp, jti).
pub fn request_claims(opts: &RegisterOptions, issuer: &str, ssa: &str) -> anyhow::Result<Value> {
    let ssa_claims = decode_claims(ssa)?;
    let software_id =
        ssa_claims["software_id"].as_str().ok_or_else(|| anyhow::anyhow!("the SSA has no software_id"))?;
    let key = load_signing_key(&opts.signing_key, &opts.kid)?;
    let now = super::now();
    let mut claims = json!({
        "iss": software_id,
        "aud": issuer,
        "iat": now,
        "exp": now + 300,
        "jti": keyfort_core::secret::random_b64url(16),
        "software_id": software_id,
        "software_statement": ssa,
        "redirect_uris": ssa_claims["software_redirect_uris"],
        "scope": scopes_for(ssa_claims["software_roles"].as_array().map(Vec::as_slice).unwrap_or_default()),
        "grant_types": ["client_credentials", "authorization_code", "refresh_token"],
        "response_types": ["code id_token"],
        "application_type": "web",
        "token_endpoint_auth_method": opts.auth_method,
        "id_token_signed_response_alg": key.alg(),
        "request_object_signing_alg": key.alg(),
        "require_signed_request_object": true,
        "tls_client_certificate_bound_access_tokens": true,
        "token_type_extension": "JWT",
        "jwks_uri": ssa_claims["software_jwks_endpoint"],
    });
    match opts.auth_method.as_str() {
        "private_key_jwt" => claims["token_endpoint_auth_signing_alg"] = json!(key.alg()),
        "tls_client_auth" => claims["tls_client_auth_subject_dn"] = json!(subject_dn(&opts.cert)?),
        other => anyhow::bail!("--auth-method {other}: use private_key_jwt or tls_client_auth"),
    }
    Ok(claims)
}

fn client(cacert: Option<&Path>, cert: &Path, key: &Path) -> anyhow::Result<reqwest::Client> {
    super::https_client(cacert, Some((cert, key)))
}

async fn send(request: reqwest::RequestBuilder, shown: Value) -> anyhow::Result<Exchange> {
    let url = request.try_clone().and_then(|r| r.build().ok()).map(|r| r.url().to_string()).unwrap_or_default();
    let response = request.send().await.map_err(|e| explain_send_error(e, &url))?;
    let status = response.status().as_u16();
    let text = response.text().await?;
    let response =
        if text.is_empty() { Value::Null } else { serde_json::from_str(&text).unwrap_or(Value::String(text)) };
    Ok(Exchange { request: shown, status, response })
}

/// Registers; on success returns the registration to save.
pub async fn register(opts: &RegisterOptions) -> anyhow::Result<(Exchange, Option<Registration>)> {
    let http = client(opts.cacert.as_deref(), &opts.cert, &opts.key)?;
    let discovery = discover(&http, &opts.server).await?;
    let issuer = discovery["issuer"].as_str().unwrap_or(&opts.server).to_owned();
    let endpoint = discovery["registration_endpoint"].as_str().unwrap_or_default().to_owned();
    let ssa = std::fs::read_to_string(&opts.ssa).with_context(|| format!("reading {}", opts.ssa.display()))?;
    let claims = request_claims(opts, &issuer, ssa.trim())?;
    let request = if opts.json {
        http.post(&endpoint).header("content-type", "application/json").body(claims.to_string())
    } else {
        let key = load_signing_key(&opts.signing_key, &opts.kid)?;
        http.post(&endpoint).header("content-type", "application/jose").body(key.sign_jwt(&claims, "JWT"))
    };
    let exchange = send(request, claims).await?;
    // Absolute, so that `tpp token`, `get`, ... work from any directory.
    let absolute = |path: &Path| std::path::absolute(path).unwrap_or_else(|_| path.to_path_buf());
    let registration = (exchange.status == 201).then(|| Registration {
        server: opts.server.clone(),
        issuer,
        token_endpoint: discovery["token_endpoint"].as_str().unwrap_or_default().to_owned(),
        client_id: exchange.response["client_id"].as_str().unwrap_or_default().to_owned(),
        registration_access_token: exchange.response["registration_access_token"]
            .as_str()
            .unwrap_or_default()
            .to_owned(),
        registration_client_uri: exchange.response["registration_client_uri"].as_str().unwrap_or_default().to_owned(),
        token_endpoint_auth_method: opts.auth_method.clone(),
        ssa: absolute(&opts.ssa),
        signing_key: absolute(&opts.signing_key),
        kid: opts.kid.clone(),
        cert: absolute(&opts.cert),
        key: absolute(&opts.key),
        cacert: opts.cacert.as_deref().map(absolute),
    });
    Ok((exchange, registration))
}

/// A client-credentials token over mutual TLS, authenticated as registered.
pub async fn token(reg: &Registration, scope: Option<&str>) -> anyhow::Result<Exchange> {
    let http = client(reg.cacert.as_deref(), &reg.cert, &reg.key)?;
    let mut form: Vec<(String, String)> = vec![("grant_type".into(), "client_credentials".into())];
    if let Some(scope) = scope {
        form.push(("scope".into(), scope.into()));
    }
    if reg.token_endpoint_auth_method == "private_key_jwt" {
        let key = load_signing_key(&reg.signing_key, &reg.kid)?;
        let now = super::now();
        let assertion = key.sign_jwt(
            &json!({"iss": reg.client_id, "sub": reg.client_id, "aud": reg.token_endpoint, "iat": now,
                    "exp": now + 60, "jti": keyfort_core::secret::random_b64url(16)}),
            "JWT",
        );
        form.push(("client_assertion_type".into(), keyfort_core::token::JWT_BEARER_ASSERTION.into()));
        form.push(("client_assertion".into(), assertion));
    } else {
        form.push(("client_id".into(), reg.client_id.clone()));
    }
    let shown = json!(form.iter().map(|(k, v)| (k.clone(), json!(v))).collect::<serde_json::Map<_, _>>());
    let body = url::form_urlencoded::Serializer::new(String::new()).extend_pairs(form.iter()).finish();
    send(http.post(&reg.token_endpoint).header("content-type", "application/x-www-form-urlencoded").body(body), shown)
        .await
}

/// `GET`, `PUT` (a fresh request built from the same files) or `DELETE` the registration.
pub async fn manage(reg: &Registration, method: reqwest::Method) -> anyhow::Result<Exchange> {
    let http = client(reg.cacert.as_deref(), &reg.cert, &reg.key)?;
    let mut request =
        http.request(method.clone(), &reg.registration_client_uri).bearer_auth(&reg.registration_access_token);
    let mut shown = Value::Null;
    if method == reqwest::Method::PUT {
        let opts = RegisterOptions {
            server: reg.server.clone(),
            ssa: reg.ssa.clone(),
            signing_key: reg.signing_key.clone(),
            kid: reg.kid.clone(),
            cert: reg.cert.clone(),
            key: reg.key.clone(),
            cacert: reg.cacert.clone(),
            json: false,
            auth_method: reg.token_endpoint_auth_method.clone(),
        };
        let ssa = std::fs::read_to_string(&reg.ssa)?;
        let claims = request_claims(&opts, &reg.issuer, ssa.trim())?;
        let key = load_signing_key(&reg.signing_key, &reg.kid)?;
        request = request.header("content-type", "application/jose").body(key.sign_jwt(&claims, "JWT"));
        shown = claims;
    }
    send(request, shown).await
}

pub fn save(reg: &Registration, path: &Path) -> anyhow::Result<()> {
    // It holds the registration access token: owner-only.
    crate::files::write_private(path, serde_json::to_string_pretty(reg)?.as_bytes())
        .with_context(|| format!("writing {}", path.display()))
}

pub fn load(path: &Path) -> anyhow::Result<Registration> {
    let text = std::fs::read_to_string(path).with_context(|| format!("reading {}", path.display()))?;
    Ok(serde_json::from_str(&text)?)
}

/// Pretty-prints a JWT's header and claims (`keyfort jwt decode`).
pub fn decode_jwt(token: &str) -> anyhow::Result<String> {
    let token = token.trim();
    let mut parts = token.split('.');
    let header =
        parts.next().and_then(keyfort_core::jose::b64url_decode).ok_or_else(|| anyhow::anyhow!("not a JWT"))?;
    let header: Value = serde_json::from_slice(&header).context("the header is not JSON")?;
    let claims = decode_claims(token).or_else(|_| {
        parts
            .next()
            .and_then(keyfort_core::jose::b64url_decode)
            .and_then(|p| serde_json::from_slice(&p).ok())
            .ok_or_else(|| anyhow::anyhow!("the payload is not JSON"))
    })?;
    Ok(format!("{}\n\n{}", serde_json::to_string_pretty(&header)?, serde_json::to_string_pretty(&claims)?))
}

/// Runs a `keyfort tpp` command; the text to print on success.
pub fn run(command: super::args::TppCommand) -> anyhow::Result<String> {
    use super::args::TppCommand;
    let runtime = tokio::runtime::Runtime::new()?;
    let show = |what: &str, e: Exchange| -> anyhow::Result<String> {
        let body = serde_json::to_string_pretty(&e.response)?;
        if (200..300).contains(&e.status) {
            Ok(format!("{what}: HTTP {}\n{body}", e.status))
        } else {
            anyhow::bail!("{what} refused: HTTP {}\n{body}", e.status)
        }
    };
    match command {
        TppCommand::Register { server, software, ssa, signing_key, kid, cert, key, cacert, json, auth_method, out } => {
            let options = match software {
                Some(dir) => {
                    let files = crate::sandbox::SoftwareFiles::from_dir(&dir)?;
                    let mut options = RegisterOptions::for_sandbox_software(
                        &server,
                        &files,
                        cacert.as_deref().unwrap_or(Path::new("")),
                    );
                    options.cacert = cacert;
                    options.json = json;
                    options.auth_method = auth_method;
                    options
                }
                None => {
                    // clap requires each of these without --software.
                    let missing =
                        || anyhow::anyhow!("give --software DIR, or --ssa, --signing-key, --kid, --cert and --key");
                    RegisterOptions {
                        server,
                        ssa: ssa.ok_or_else(missing)?,
                        signing_key: signing_key.ok_or_else(missing)?,
                        kid: kid.ok_or_else(missing)?,
                        cert: cert.ok_or_else(missing)?,
                        key: key.ok_or_else(missing)?,
                        cacert,
                        json,
                        auth_method,
                    }
                }
            };
            let (exchange, registration) = runtime.block_on(register(&options))?;
            let summary = show("registration", exchange)?;
            if let Some(registration) = registration {
                save(&registration, &out)?;
                return Ok(format!("{summary}\nregistration saved to {}", out.display()));
            }
            Ok(summary)
        }
        TppCommand::Token { files, scope } => {
            let registration = load(&files.registration)?;
            show("token", runtime.block_on(token(&registration, scope.as_deref()))?)
        }
        TppCommand::Get { files } => {
            let registration = load(&files.registration)?;
            show("read", runtime.block_on(manage(&registration, reqwest::Method::GET))?)
        }
        TppCommand::Update { files } => {
            let registration = load(&files.registration)?;
            show("update", runtime.block_on(manage(&registration, reqwest::Method::PUT))?)
        }
        TppCommand::Delete { files } => {
            let registration = load(&files.registration)?;
            let exchange = runtime.block_on(manage(&registration, reqwest::Method::DELETE))?;
            if exchange.status == 204 {
                return Ok(format!(
                    "registration of client {} deleted (HTTP 204): its tokens and registration access token no longer work; {} can be removed",
                    registration.client_id,
                    files.registration.display()
                ));
            }
            show("delete", exchange)
        }
        TppCommand::Journey(command) => super::tpp_journey::run(&runtime, command),
    }
}

/// `keyfort jwt decode FILE|-`: the JWT in a file, or on standard input for `-`.
pub fn decode_jwt_source(source: &str) -> anyhow::Result<String> {
    let text = if source == "-" {
        std::io::read_to_string(std::io::stdin())?
    } else {
        std::fs::read_to_string(source).with_context(|| format!("reading {source}"))?
    };
    decode_jwt(&text)
}
