//! The test harness: a real Keyfort on port 0 over TLS with certificates generated here, a
//! real local HTTP server publishing the directory's and the TPP's JWKS, a real SQLite file,
//! and test tokens signed by an independent JWT library (jsonwebtoken), so the server's
//! verifier is checked against someone else's signer.

use std::collections::HashMap;
use std::net::SocketAddr;
use std::path::PathBuf;
use std::sync::{Arc, Mutex};

use axum::http::StatusCode;
use base64::engine::general_purpose::{STANDARD, URL_SAFE_NO_PAD};
use base64::Engine;
use keyfort::config::Config;
use keyfort::Application;
use keyfort_core::clock::{Clock, ManualClock, SystemClock};
use keyfort_core::jose::{SigningAlg, SigningKey};
use serde_json::{json, Value};
use tokio::sync::oneshot;

pub const SOFTWARE_ID: &str = "oQ4KoaavpOuoE7rvQsZEOV";
pub const ORG_ID: &str = "0015800001HQQrZAAX";
pub const AUDIENCE: &str = "https://localbank.com";
pub const REGISTER: &str = "/api/identity/oauth2/dcr/v1.1/register";

pub fn seed_request() -> Value {
    serde_json::from_str(include_str!("../fixtures/seed-registration-request.json")).unwrap()
}

pub fn seed_ssa_claims() -> Value {
    serde_json::from_str(include_str!("../fixtures/seed-ssa-claims.json")).unwrap()
}

fn pem(label: &str, der: &[u8]) -> String {
    let body = STANDARD.encode(der);
    let lines: Vec<&str> = body.as_bytes().chunks(64).map(|c| std::str::from_utf8(c).unwrap()).collect();
    format!("-----BEGIN {label}-----\n{}\n-----END {label}-----\n", lines.join("\n"))
}

/// A key pair generated for the test, usable by the independent signer.
pub struct TestKey {
    pub key: SigningKey,
    encoding: jsonwebtoken::EncodingKey,
}

impl TestKey {
    pub fn generate(alg: SigningAlg, kid: &str) -> Self {
        let key = SigningKey::generate(alg, kid).unwrap();
        let pem = pem("PRIVATE KEY", &key.to_pkcs8_der());
        let encoding = if alg.is_rsa() {
            jsonwebtoken::EncodingKey::from_rsa_pem(pem.as_bytes()).unwrap()
        } else {
            jsonwebtoken::EncodingKey::from_ec_pem(pem.as_bytes()).unwrap()
        };
        Self { key, encoding }
    }

    pub fn kid(&self) -> &str {
        self.key.kid()
    }

    pub fn jwk(&self) -> Value {
        self.key.public_jwk()
    }

    /// Signs with jsonwebtoken, with this key's alg and kid unless overridden.
    pub fn sign(&self, claims: &Value) -> String {
        self.sign_with(claims, Some(self.kid()), None)
    }

    pub fn sign_with(&self, claims: &Value, kid: Option<&str>, alg: Option<jsonwebtoken::Algorithm>) -> String {
        let alg = alg.unwrap_or(match self.key.alg() {
            SigningAlg::PS256 => jsonwebtoken::Algorithm::PS256,
            SigningAlg::ES256 => jsonwebtoken::Algorithm::ES256,
            SigningAlg::RS256 => jsonwebtoken::Algorithm::RS256,
            other => panic!("no test signer for {other}"),
        });
        let mut header = jsonwebtoken::Header::new(alg);
        header.kid = kid.map(str::to_owned);
        jsonwebtoken::encode(&header, claims, &self.encoding).unwrap()
    }
}

/// A token with an arbitrary header and signature bytes, for attacks no library will sign.
pub fn forge(header: &Value, claims: &Value, signature: &[u8]) -> String {
    format!(
        "{}.{}.{}",
        URL_SAFE_NO_PAD.encode(header.to_string()),
        URL_SAFE_NO_PAD.encode(claims.to_string()),
        URL_SAFE_NO_PAD.encode(signature)
    )
}

/// A JWT "signed" with HMAC-SHA256 using `secret` as the key.
pub fn hmac_token(header: &Value, claims: &Value, secret: &[u8]) -> String {
    let input =
        format!("{}.{}", URL_SAFE_NO_PAD.encode(header.to_string()), URL_SAFE_NO_PAD.encode(claims.to_string()));
    let key = aws_lc_rs::hmac::Key::new(aws_lc_rs::hmac::HMAC_SHA256, secret);
    let tag = aws_lc_rs::hmac::sign(&key, input.as_bytes());
    format!("{input}.{}", URL_SAFE_NO_PAD.encode(tag.as_ref()))
}

/// What the key server answers for one path.
#[derive(Clone)]
pub enum Doc {
    Json(Value),
    Status(u16),
    Redirect(String),
    Raw(Vec<u8>),
}

/// A real HTTP server on 127.0.0.1 publishing JWKS documents, counting requests per path.
#[derive(Clone)]
pub struct KeyServer {
    pub addr: SocketAddr,
    docs: Arc<Mutex<HashMap<String, Doc>>>,
    hits: Arc<Mutex<HashMap<String, usize>>>,
}

impl KeyServer {
    pub async fn start() -> Self {
        let docs: Arc<Mutex<HashMap<String, Doc>>> = Arc::default();
        let hits: Arc<Mutex<HashMap<String, usize>>> = Arc::default();
        let (d, h) = (docs.clone(), hits.clone());
        let app = axum::Router::new().fallback(move |uri: axum::http::Uri| {
            let (docs, hits) = (d.clone(), h.clone());
            async move {
                use axum::response::IntoResponse;
                let path = uri.path().to_owned();
                *hits.lock().unwrap().entry(path.clone()).or_default() += 1;
                let doc = docs.lock().unwrap().get(&path).cloned();
                match doc {
                    Some(Doc::Json(v)) => axum::Json(v).into_response(),
                    Some(Doc::Raw(bytes)) => bytes.into_response(),
                    Some(Doc::Status(code)) => StatusCode::from_u16(code).unwrap().into_response(),
                    Some(Doc::Redirect(to)) => (StatusCode::FOUND, [("location", to)]).into_response(),
                    None => StatusCode::NOT_FOUND.into_response(),
                }
            }
        });
        let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
        let addr = listener.local_addr().unwrap();
        tokio::spawn(async move { axum::serve(listener, app).await.unwrap() });
        Self { addr, docs, hits }
    }

    pub fn url(&self, path: &str) -> String {
        format!("http://{}{path}", self.addr)
    }

    pub fn set(&self, path: &str, doc: Doc) {
        self.docs.lock().unwrap().insert(path.to_owned(), doc);
    }

    pub fn hits(&self, path: &str) -> usize {
        self.hits.lock().unwrap().get(path).copied().unwrap_or(0)
    }
}

pub const DIRECTORY_JWKS: &str = "/directory.jwks";
pub fn software_jwks_path() -> String {
    format!("/{ORG_ID}/{SOFTWARE_ID}.jwks")
}

/// The keys of the test world: the directory's (PS256 and ES256) and the TPP's software keys.
pub struct TestKeys {
    pub directory_ps: TestKey,
    pub directory_es: TestKey,
    pub software_ps: TestKey,
    pub software_es: TestKey,
}

impl TestKeys {
    fn generate() -> Self {
        Self {
            directory_ps: TestKey::generate(SigningAlg::PS256, "dir-ps256"),
            directory_es: TestKey::generate(SigningAlg::ES256, "dir-es256"),
            software_ps: TestKey::generate(SigningAlg::PS256, "soft-ps256"),
            software_es: TestKey::generate(SigningAlg::ES256, "soft-es256"),
        }
    }
}

/// The server's TLS certificate, issued by a CA made for the test.
struct ServerPki {
    ca_pem: String,
    cert_pem: String,
    key_pem: String,
}

impl ServerPki {
    fn generate() -> Self {
        let ca_key = rcgen::KeyPair::generate().unwrap();
        let mut ca_params = rcgen::CertificateParams::new(Vec::<String>::new()).unwrap();
        ca_params.is_ca = rcgen::IsCa::Ca(rcgen::BasicConstraints::Unconstrained);
        ca_params.distinguished_name.push(rcgen::DnType::CommonName, "Keyfort test CA");
        let ca = ca_params.self_signed(&ca_key).unwrap();
        let key = rcgen::KeyPair::generate().unwrap();
        let params = rcgen::CertificateParams::new(vec!["localhost".to_owned(), "127.0.0.1".to_owned()]).unwrap();
        let cert = params.signed_by(&key, &ca, &ca_key).unwrap();
        Self { ca_pem: ca.pem(), cert_pem: cert.pem(), key_pem: key.serialize_pem() }
    }
}

/// Options for one spawned server.
#[derive(Clone)]
pub struct Options {
    /// Lines appended to `[oauth.dcr]`.
    pub dcr: Vec<String>,
    /// `[oauth.dcr] ssa_jkws` instead of the key server's directory JWKS URL.
    pub ssa_jkws: Option<String>,
    /// Lines appended to `[http_client]`.
    pub http_client: Vec<String>,
    pub storage_url: Option<String>,
    pub configure_tls: bool,
    /// Lines appended to `[server.tls]`.
    pub tls: Vec<String>,
    /// Lines of an `[mtls]` section.
    pub mtls: Vec<String>,
    /// Serve /metrics on a separate loopback port.
    pub metrics: bool,
    /// Lines appended to `[server]`.
    pub server: Vec<String>,
    /// Listen on a port chosen before the start and make the public URL that port's, so a
    /// browser reaches the server at its issuer's origin (`https://localhost:9446` otherwise).
    pub own_port: bool,
    /// Lines of an `[admin]` section.
    pub admin: Vec<String>,
    /// `[admin] listen`: `"127.0.0.1:0"` (its own listener, on a free port) by default.
    pub admin_listen: String,
    /// Whole sections appended to the configuration (`"[consents]\nkey = value"`).
    pub sections: Vec<String>,
    /// Set `[development] allow_unsafe_registration` (the default, for the suites that
    /// register without certificates).
    pub unsafe_development: bool,
}

impl Default for Options {
    fn default() -> Self {
        Self {
            // Most suites exercise validation rules with the JSON form and no client
            // certificate; the refusal of unproven JSON requests has its own test.
            dcr: vec!["allow_json_without_proof = true".into()],
            ssa_jkws: None,
            http_client: vec!["allow_insecure_loopback = true".into()],
            storage_url: None,
            configure_tls: true,
            tls: vec![],
            mtls: vec![],
            metrics: false,
            server: vec![],
            own_port: false,
            admin: vec![],
            admin_listen: "127.0.0.1:0".into(),
            sections: vec![],
            unsafe_development: true,
        }
    }
}

impl Options {
    pub fn dcr(mut self, line: &str) -> Self {
        self.dcr.push(line.to_owned());
        self
    }

    pub fn http_client(mut self, line: &str) -> Self {
        self.http_client.push(line.to_owned());
        self
    }

    pub fn tls(mut self, line: &str) -> Self {
        self.tls.push(line.to_owned());
        self
    }

    pub fn mtls(mut self, line: &str) -> Self {
        self.mtls.push(line.to_owned());
        self
    }

    pub fn server(mut self, line: &str) -> Self {
        self.server.push(line.to_owned());
        self
    }

    pub fn admin(mut self, line: &str) -> Self {
        self.admin.push(line.to_owned());
        self
    }

    /// Serves `/admin/*` on the public listener (`[admin] listen = "public"`).
    pub fn admin_on_public(mut self) -> Self {
        self.admin_listen = "public".into();
        self
    }

    /// Appends a whole section, e.g. `"[consents]\nrequire_request_signature = false"`.
    pub fn section(mut self, text: &str) -> Self {
        self.sections.push(text.to_owned());
        self
    }

    pub fn with_metrics(mut self) -> Self {
        self.metrics = true;
        self
    }

    /// Mutual TLS with the test PKI's CAs, client certificates optional at the TLS layer,
    /// and the issuing CA's CRL served by the key server.
    pub fn mutual_tls() -> Self {
        Self::default()
            .tls("client_ca_file = \"client-ca.pem\"")
            .tls("client_auth = \"optional\"")
            .mtls("crl_urls = [\"{KEY_SERVER}/issuing.crl\"]")
    }
}

pub struct TestApp {
    pub pki: Arc<crate::pki::TestPki>,
    /// Where /metrics is served (plain HTTP), if enabled.
    pub metrics_addr: Option<SocketAddr>,
    pub server_ca_pem: String,
    pub base: String,
    /// The issuer: `[server] public_url`.
    pub public_url: String,
    /// Where the admin API is served: its own listener, or `base` with `listen = "public"`.
    pub admin_base: String,
    pub client: reqwest::Client,
    pub keys: Arc<TestKeys>,
    pub key_server: KeyServer,
    pub clock: Arc<ManualClock>,
    pub dir: Arc<tempfile::TempDir>,
    pub config_path: PathBuf,
    /// The running application's consent service, to drive the customer's decisions the
    /// authorization flow makes.
    pub consents: Option<Arc<keyfort::consent::ConsentService>>,
    shutdown: Option<oneshot::Sender<()>>,
    task: Option<tokio::task::JoinHandle<()>>,
}

pub async fn spawn_app() -> TestApp {
    spawn_app_with(Options::default()).await
}

pub async fn spawn_app_with(options: Options) -> TestApp {
    spawn_app_with_files(options, |_, _| {}).await
}

/// Like [`spawn_app_with`], with `files` writing files of its own into the configuration's
/// directory (CA bundles made from the test PKI, say) before the server starts.
pub async fn spawn_app_with_files(
    options: Options,
    files: impl FnOnce(&std::path::Path, &crate::pki::TestPki),
) -> TestApp {
    let keys = Arc::new(TestKeys::generate());
    let key_server = KeyServer::start().await;
    key_server.set(DIRECTORY_JWKS, Doc::Json(json!({"keys": [keys.directory_ps.jwk(), keys.directory_es.jwk()]})));
    key_server.set(&software_jwks_path(), Doc::Json(json!({"keys": [keys.software_ps.jwk(), keys.software_es.jwk()]})));
    let dir = Arc::new(tempfile::tempdir().unwrap());
    let pki = ServerPki::generate();
    std::fs::write(dir.path().join("ca.pem"), &pki.ca_pem).unwrap();
    std::fs::write(dir.path().join("server.pem"), &pki.cert_pem).unwrap();
    std::fs::write(dir.path().join("server.key"), &pki.key_pem).unwrap();

    let test_pki = Arc::new(crate::pki::TestPki::generate());
    std::fs::write(dir.path().join("client-ca.pem"), test_pki.client_ca_pem()).unwrap();
    key_server.set("/issuing.crl", Doc::Raw(test_pki.crl_der()));
    files(dir.path(), &test_pki);
    let tls = if options.configure_tls || !options.tls.is_empty() {
        let files = if options.configure_tls { "cert_file = \"server.pem\"\nkey_file = \"server.key\"\n" } else { "" };
        format!("[server.tls]\n{files}{}\n", options.tls.join("\n"))
    } else {
        String::new()
    };
    let mtls = if options.mtls.is_empty() {
        String::new()
    } else {
        format!("[mtls]\n{}\n", options.mtls.join("\n").replace("{KEY_SERVER}", &format!("http://{}", key_server.addr)))
    };
    let storage = options.storage_url.clone().map(|u| format!("[storage]\nurl = \"{u}\"\n")).unwrap_or_default();
    let admin = format!("[admin]\nlisten = \"{}\"\n{}\n", options.admin_listen, options.admin.join("\n"));
    let (listen, public_url) = if options.own_port {
        let port = crate::crash::free_port();
        (format!("127.0.0.1:{port}"), format!("https://localhost:{port}"))
    } else {
        ("127.0.0.1:0".to_owned(), "https://localhost:9446".to_owned())
    };
    // Most suites register over plain TLS with unproven JSON (above), which a real server
    // refuses to start with; the refusal has its own tests (config.rs).
    let development =
        if options.unsafe_development { "[development]\nallow_unsafe_registration = true\n\n" } else { "" };
    let config = format!(
        "{development}[server]\nlisten = \"{listen}\"\npublic_url = \"{public_url}\"\ndata_dir = \"data\"\n{}\n{tls}\n{storage}\n{mtls}\n{admin}\n\
         [log]\nlevel = \"warn\"\n\n[http_client]\n{}\n\n[oauth.dcr]\nssa_jkws = \"{}\"\naudience = \"{AUDIENCE}\"\nsoftware_environment = \"sandbox\"\n{}\n",
        options.server.join("\n"),
        options.http_client.join("\n"),
        options.ssa_jkws.clone().unwrap_or_else(|| key_server.url(DIRECTORY_JWKS)),
        options.dcr.join("\n").replace("{KEY_SERVER}", &format!("http://{}", key_server.addr)),
    );
    let metrics = if options.metrics { "[metrics]\nlisten = \"127.0.0.1:0\"\n" } else { "" };
    let config = config.replace("[log]", &format!("{metrics}[log]"));
    let config = format!("{config}\n{}\n", options.sections.join("\n"));
    let config_path = dir.path().join("keyfort.toml");
    std::fs::write(&config_path, config).unwrap();
    let clock = Arc::new(ManualClock::new(SystemClock.now()));
    let mut app = TestApp {
        metrics_addr: None,
        pki: test_pki,
        server_ca_pem: pki.ca_pem.clone(),
        base: String::new(),
        public_url,
        admin_base: String::new(),
        client: test_client(Some(&pki.ca_pem)),
        keys,
        key_server,
        clock,
        dir,
        config_path,
        consents: None,
        shutdown: None,
        task: None,
    };
    app.start().await;
    app
}

pub fn test_client(ca_pem: Option<&str>) -> reqwest::Client {
    test_client_with_identity(ca_pem, None)
}

/// A client that trusts `ca_pem` and, if given, presents a client certificate.
pub fn test_client_with_identity(ca_pem: Option<&str>, identity: Option<&crate::pki::ClientCert>) -> reqwest::Client {
    let mut roots = rustls::RootCertStore::empty();
    if let Some(pem) = ca_pem {
        for cert in keyfort::pem::certificates_from_pem(pem.as_bytes()).unwrap() {
            roots.add(cert).unwrap();
        }
    }
    let tls = rustls::ClientConfig::builder_with_provider(keyfort::tls::crypto_provider())
        .with_safe_default_protocol_versions()
        .unwrap()
        .with_root_certificates(roots);
    let tls = match identity {
        Some(cert) => tls.with_client_auth_cert(cert.chain.clone(), cert.key()).unwrap(),
        None => tls.with_no_client_auth(),
    };
    reqwest::Client::builder().use_preconfigured_tls(tls).build().unwrap()
}

/// A server response: status and JSON body (or the raw text wrapped as a JSON string).
#[derive(Debug)]
pub struct Reply {
    pub status: u16,
    pub body: Value,
    pub headers: reqwest::header::HeaderMap,
}

impl Reply {
    /// Asserts an RFC 7591/6749 error with this status and code, whose description
    /// mentions `needle`.
    #[track_caller]
    pub fn assert_error(&self, status: u16, code: &str, needle: &str) {
        assert_eq!(self.status, status, "unexpected status; body: {}", self.body);
        assert_eq!(self.body["error"], code, "unexpected error code; body: {}", self.body);
        let description = self.body["error_description"].as_str().unwrap_or_default();
        assert!(description.contains(needle), "error_description {description:?} should mention {needle:?}");
    }
}

impl TestApp {
    async fn start(&mut self) {
        let config = Config::load(&self.config_path).unwrap();
        let app = Application::build_with_clock(config, self.clock.clone()).await.unwrap();
        self.base = format!("https://localhost:{}", app.port());
        self.admin_base = match app.admin_addr() {
            Some(admin) => format!("https://localhost:{}", admin.port()),
            None => self.base.clone(),
        };
        self.metrics_addr = app.metrics_addr();
        self.consents = Some(app.consents());
        let (tx, rx) = oneshot::channel::<()>();
        self.shutdown = Some(tx);
        self.task = Some(tokio::spawn(app.run_until(async {
            let _ = rx.await;
        })));
    }

    /// Stops the server and starts a new one on the same configuration and database.
    pub async fn restart(&mut self) {
        if let Some(tx) = self.shutdown.take() {
            let _ = tx.send(());
        }
        if let Some(task) = self.task.take() {
            task.await.unwrap();
        }
        self.start().await;
    }

    pub fn now(&self) -> i64 {
        self.clock.now()
    }

    pub fn database_path(&self) -> PathBuf {
        self.dir.path().join("data").join("keyfort.db")
    }

    /// The seed's decoded SSA, fresh, with its key URLs pointing at the test key server.
    pub fn ssa_claims(&self) -> Value {
        let mut claims = seed_ssa_claims();
        claims["iat"] = json!(self.now() - 60);
        claims["software_jwks_endpoint"] = json!(self.key_server.url(&software_jwks_path()));
        claims["org_jwks_endpoint"] = json!(self.key_server.url(&format!("/{ORG_ID}/{ORG_ID}.jwks")));
        claims
    }

    pub fn sign_ssa(&self, claims: &Value) -> String {
        self.keys.directory_ps.sign(claims)
    }

    pub fn ssa(&self) -> String {
        self.sign_ssa(&self.ssa_claims())
    }

    /// The seed's registration request with fresh times, a unique jti and a test-signed SSA.
    pub fn request_claims(&self) -> Value {
        let mut claims = seed_request();
        let now = self.now();
        claims["iat"] = json!(now);
        claims["exp"] = json!(now + 300);
        claims["jti"] = json!(keyfort_core::secret::random_b64url(12));
        claims["jwks_uri"] = json!(self.key_server.url(&software_jwks_path()));
        claims["software_statement"] = json!(self.ssa());
        claims
    }

    pub fn sign_request(&self, claims: &Value) -> String {
        self.keys.software_ps.sign(claims)
    }

    pub async fn post(&self, path: &str, content_type: Option<&str>, body: impl Into<reqwest::Body>) -> Reply {
        self.post_with(&self.client, path, content_type, body, &[]).await
    }

    /// A client of this server presenting `cert` in the TLS handshake.
    pub fn client_presenting(&self, cert: &crate::pki::ClientCert) -> reqwest::Client {
        test_client_with_identity(Some(&self.server_ca_pem), Some(cert))
    }

    /// Registers the seed request (JSON form) through `client` with extra headers.
    pub async fn register_as(&self, client: &reqwest::Client, headers: &[(&str, String)]) -> Reply {
        self.post_with(client, REGISTER, Some("application/json"), self.request_claims().to_string(), headers).await
    }

    pub async fn post_with(
        &self,
        client: &reqwest::Client,
        path: &str,
        content_type: Option<&str>,
        body: impl Into<reqwest::Body>,
        headers: &[(&str, String)],
    ) -> Reply {
        let mut request = client.post(format!("{}{path}", self.base)).body(body);
        if let Some(ct) = content_type {
            request = request.header("content-type", ct);
        }
        for (name, value) in headers {
            request = request.header(*name, value);
        }
        let response = request.send().await.expect("the server answers");
        let status = response.status().as_u16();
        let headers = response.headers().clone();
        let text = response.text().await.unwrap();
        let body = serde_json::from_str(&text).unwrap_or(Value::String(text));
        assert!(status < 500 || status == 503, "a 5xx for a client request: {status} {body}");
        Reply { status, body, headers }
    }

    pub async fn register_json(&self, claims: &Value) -> Reply {
        self.post(REGISTER, Some("application/json"), claims.to_string()).await
    }

    pub async fn register_jws(&self, token: &str) -> Reply {
        self.post(REGISTER, Some("application/jose"), token.to_owned()).await
    }

    pub async fn get(&self, path: &str) -> Reply {
        let response = self.client.get(format!("{}{path}", self.base)).send().await.unwrap();
        let status = response.status().as_u16();
        let headers = response.headers().clone();
        let body = response.json().await.unwrap_or(Value::Null);
        Reply { status, body, headers }
    }
}

/// Applies a JSON merge patch where `null` deletes a key.
pub fn patch(mut base: Value, changes: Value) -> Value {
    for (k, v) in changes.as_object().unwrap() {
        if v.is_null() {
            base.as_object_mut().unwrap().remove(k);
        } else {
            base[k] = v.clone();
        }
    }
    base
}

/// Whether a test that cannot run here must fail instead of skipping (`.ci/run` sets
/// `KEYFORT_TEST_STRICT=1`, so CI never passes on tests that did not run).
pub fn strict() -> bool {
    std::env::var("KEYFORT_TEST_STRICT").is_ok_and(|v| v == "1")
}

/// The running test's name (libtest names each test's thread after it).
pub fn test_name() -> String {
    std::thread::current().name().unwrap_or("<unnamed test>").to_owned()
}

/// Reports that the running test cannot run here because `what` is missing: prints
/// `SKIPPED <test>: <what>` where the test output is not captured, or fails the test under
/// `KEYFORT_TEST_STRICT=1`.
#[track_caller]
pub fn skip(what: &str) {
    let test = test_name();
    assert!(!strict(), "{test} cannot run, and KEYFORT_TEST_STRICT=1 forbids skipping it: {what}");
    use std::io::Write;
    // Written to the process's stderr directly: libtest captures eprintln!, and a skip
    // must be seen in CI's log.
    let _ = writeln!(std::io::stderr(), "SKIPPED {test}: {what}");
}

/// A fresh database on the PostgreSQL server named by `KEYFORT_TEST_POSTGRES_URL`; `None`
/// (reported by [`skip`]) when the variable is not set. A set variable naming a server that
/// cannot be reached fails the test.
pub async fn postgres_test_database() -> Option<String> {
    let Ok(admin_url) = std::env::var("KEYFORT_TEST_POSTGRES_URL") else {
        skip("KEYFORT_TEST_POSTGRES_URL is not set");
        return None;
    };
    Some(create_postgres_database(&admin_url).await)
}

/// Creates a database with a random name on the server of `admin_url`; its URL.
pub async fn create_postgres_database(admin_url: &str) -> String {
    use sqlx::Connection;
    let mut admin = sqlx::PgConnection::connect(admin_url).await.unwrap_or_else(|e| {
        panic!("KEYFORT_TEST_POSTGRES_URL is set to {admin_url}, but the server cannot be reached: {e}")
    });
    let name =
        format!("keyfort_test_{}", keyfort_core::secret::random_b64url(8).to_lowercase().replace(['-', '_'], "x"));
    sqlx::query(&format!("CREATE DATABASE {name}")).execute(&mut admin).await.unwrap();
    let mut url = url::Url::parse(admin_url).unwrap();
    url.set_path(&format!("/{name}"));
    url.to_string()
}

/// The issuer (`http://openbanking.org.uk/iss`) of the seed TPP's request signatures.
pub fn seed_signature_issuer() -> String {
    format!("{ORG_ID}/{SOFTWARE_ID}")
}

/// The JOSE header of an OBIE request signature (OBIE message signing v3.1.4 and later) by
/// `key` for the TPP `issuer` (`org_id/software_id`), with `patch` applied (`null` removes
/// a parameter).
pub fn obie_signature_header(key: &TestKey, issuer: &str, iat: i64, patch: Value) -> Value {
    patch_header(
        json!({
            "alg": key.key.alg(),
            "kid": key.kid(),
            "typ": "JOSE",
            "cty": "application/json",
            "http://openbanking.org.uk/iat": iat,
            "http://openbanking.org.uk/iss": issuer,
            "http://openbanking.org.uk/tan": "openbanking.org.uk",
            "crit": ["http://openbanking.org.uk/iat", "http://openbanking.org.uk/iss", "http://openbanking.org.uk/tan"],
        }),
        patch,
    )
}

fn patch_header(mut header: Value, patch: Value) -> Value {
    for (k, v) in patch.as_object().unwrap() {
        if v.is_null() {
            header.as_object_mut().unwrap().remove(k);
        } else {
            header[k] = v.clone();
        }
    }
    header
}

/// A detached JWS (`header..signature`, RFC 7515 Appendix F) over `body` with `header`,
/// signed here with aws-lc-rs directly rather than with Keyfort's signer, so that the
/// server's verifier is checked against an independent construction of the signing input:
/// `base64url(header) + "." + base64url(body)`.
pub fn detached_jws(key: &TestKey, header: &Value, body: &[u8]) -> String {
    use aws_lc_rs::signature::{EcdsaKeyPair, RsaKeyPair, ECDSA_P256_SHA256_FIXED_SIGNING, RSA_PSS_SHA256};
    let protected = URL_SAFE_NO_PAD.encode(header.to_string());
    let input = format!("{protected}.{}", URL_SAFE_NO_PAD.encode(body));
    let der = key.key.to_pkcs8_der();
    let rng = aws_lc_rs::rand::SystemRandom::new();
    let signature = match key.key.alg() {
        SigningAlg::ES256 => EcdsaKeyPair::from_pkcs8(&ECDSA_P256_SHA256_FIXED_SIGNING, &der)
            .unwrap()
            .sign(&rng, input.as_bytes())
            .unwrap()
            .as_ref()
            .to_vec(),
        SigningAlg::PS256 => {
            let pair = RsaKeyPair::from_pkcs8(&der).unwrap();
            let mut signature = vec![0u8; pair.public_modulus_len()];
            pair.sign(&RSA_PSS_SHA256, &rng, input.as_bytes(), &mut signature).unwrap();
            signature
        }
        other => panic!("no detached signer for {other}"),
    };
    format!("{protected}..{}", URL_SAFE_NO_PAD.encode(signature))
}

impl TestApp {
    /// The seed TPP's `x-jws-signature` over `body`: PS256 with its software key, now.
    pub fn jws_signature(&self, body: &[u8]) -> String {
        self.jws_signature_with(body, json!({}))
    }

    /// Like [`TestApp::jws_signature`], with the header patched.
    pub fn jws_signature_with(&self, body: &[u8], patch: Value) -> String {
        let header = obie_signature_header(&self.keys.software_ps, &seed_signature_issuer(), self.now(), patch);
        detached_jws(&self.keys.software_ps, &header, body)
    }
}

pub const ACCOUNT_ACCESS_CONSENTS: &str = "/open-banking/v3.1/aisp/account-access-consents";
pub const DOMESTIC_PAYMENT_CONSENTS: &str = "/open-banking/v3.1/pisp/domestic-payment-consents";
pub const FUNDS_CONFIRMATION_CONSENTS: &str = "/open-banking/v3.1/cbpii/funds-confirmation-consents";

/// An account-access consent (`OBReadConsent1`) expiring at `expires_at`.
pub fn account_access_consent_body(expires_at: i64) -> Value {
    json!({
        "Data": {
            "Permissions": ["ReadAccountsDetail", "ReadBalances", "ReadTransactionsDetail", "ReadTransactionsCredits"],
            "ExpirationDateTime": keyfort_core::consent::format_date_time(expires_at),
            "TransactionFromDateTime": "2024-01-01T00:00:00+00:00"
        },
        "Risk": {}
    })
}

/// A domestic-payment consent (`OBWriteDomesticConsent4`) of 165.88 GBP to ACME Inc.
pub fn payment_consent_body(reference: &str) -> Value {
    json!({
        "Data": {
            "Initiation": {
                "InstructionIdentification": "ACME412",
                "EndToEndIdentification": "FRESCO.21302.GFX.20",
                "LocalInstrument": "UK.OBIE.FPS",
                "InstructedAmount": {"Amount": "165.88", "Currency": "GBP"},
                "CreditorAccount": {
                    "SchemeName": "UK.OBIE.SortCodeAccountNumber",
                    "Identification": "08080021325698",
                    "Name": "ACME Inc",
                    "SecondaryIdentification": "0002"
                },
                "RemittanceInformation": {"Reference": reference, "Unstructured": "Internal ops code 5120101"}
            }
        },
        "Risk": {"PaymentContextCode": "EcommerceGoods", "MerchantCategoryCode": "5967"}
    })
}

/// A funds-confirmation consent (`OBFundsConfirmationConsent1`) naming the debtor account
/// 60304560123456 (sort code and account number).
pub fn funds_confirmation_consent_body() -> Value {
    json!({
        "Data": {
            "DebtorAccount": {"SchemeName": "UK.OBIE.SortCodeAccountNumber", "Identification": "60304560123456", "Name": "Ann"}
        }
    })
}

impl TestApp {
    /// Creates a consent at `path` as the seed TPP (its `http` client presents the TPP's
    /// certificate, `token` is its client-credentials token): a payment consent gets an
    /// idempotency key and the TPP's `x-jws-signature`. Asserts 201 and returns the
    /// ConsentId.
    pub async fn create_consent(&self, http: &reqwest::Client, token: &str, path: &str, body: &Value) -> String {
        let text = body.to_string();
        let mut request = http
            .post(format!("{}{path}", self.base))
            .bearer_auth(token)
            .header("content-type", "application/json")
            .body(text.clone());
        if path == DOMESTIC_PAYMENT_CONSENTS {
            request = request
                .header("x-idempotency-key", keyfort_core::secret::random_b64url(9))
                .header("x-jws-signature", self.jws_signature(text.as_bytes()));
        }
        let response = request.send().await.expect("the server answers");
        let status = response.status().as_u16();
        let body: Value = response.json().await.unwrap_or(Value::Null);
        assert_eq!(status, 201, "the consent was not created: {body}");
        body["Data"]["ConsentId"].as_str().expect("a ConsentId").to_owned()
    }
}
