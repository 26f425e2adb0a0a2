//! The intents API over real TLS and mutual TLS: a TPP onboarded as in `tokens.rs` creates,
//! reads and revokes account-access, domestic-payment and funds-confirmation consents with
//! its client-credentials token; every refusal the issue lists, with the OBIE error code
//! and path; idempotency keys; request signatures; the audit trail.

use keyfort::storage::{ConsentStatusChange, SqliteStore, Store};
use keyfort_core::consent::{format_date_time, ConsentStatus};
use reqwest::Method;
use serde_json::{json, Value};

use crate::helpers::*;
use crate::pki::Subject;
use crate::tokens::Tpp;

const ACCOUNTS: &str = ACCOUNT_ACCESS_CONSENTS;
const PAYMENTS: &str = DOMESTIC_PAYMENT_CONSENTS;
const FUNDS: &str = FUNDS_CONFIRMATION_CONSENTS;
const ALL_SCOPES: &str = "accounts payments fundsconfirmations";

fn account_access_body(app: &TestApp) -> Value {
    account_access_consent_body(app.now() + 30 * 86_400)
}

fn payment_body(reference: &str) -> Value {
    payment_consent_body(reference)
}

fn funds_body() -> Value {
    funds_confirmation_consent_body()
}

/// One call of the consents API.
struct Call<'a> {
    method: Method,
    path: String,
    http: &'a reqwest::Client,
    bearer: Option<String>,
    headers: Vec<(&'static str, String)>,
    body: Option<Vec<u8>>,
}

impl<'a> Call<'a> {
    fn new(method: Method, path: impl Into<String>, http: &'a reqwest::Client, bearer: Option<&str>) -> Self {
        Self { method, path: path.into(), http, bearer: bearer.map(str::to_owned), headers: vec![], body: None }
    }

    fn json(mut self, body: &Value) -> Self {
        self.body = Some(body.to_string().into_bytes());
        self.headers.push(("content-type", "application/json".into()));
        self
    }

    fn header(mut self, name: &'static str, value: impl Into<String>) -> Self {
        self.headers.push((name, value.into()));
        self
    }

    async fn send(self, app: &TestApp) -> Reply {
        let mut request = self.http.request(self.method, format!("{}{}", app.base, self.path));
        if let Some(bearer) = &self.bearer {
            request = request.bearer_auth(bearer);
        }
        for (name, value) in &self.headers {
            request = request.header(*name, value);
        }
        if let Some(body) = self.body {
            request = request.body(body);
        }
        let response = request.send().await.expect("the server answers");
        let status = response.status().as_u16();
        let headers = response.headers().clone();
        let text = response.text().await.unwrap();
        let body =
            if text.is_empty() { Value::Null } else { serde_json::from_str(&text).unwrap_or(Value::String(text)) };
        assert!(status < 500, "a 5xx for a client request: {status} {body}");
        Reply { status, body, headers }
    }
}

impl Reply {
    /// Asserts an OBIE error (`OBErrorResponse1`): this status, an entry with `code` at
    /// `path`, and the top-level fields.
    #[track_caller]
    fn assert_obie(&self, status: u16, code: &str, path: &str) {
        assert_eq!(self.status, status, "unexpected status; body: {}", self.body);
        let expected_code = match status {
            400 => "400 BadRequest",
            403 => "403 Forbidden",
            415 => "415 UnsupportedMediaType",
            other => panic!("no OBIE Code for {other}"),
        };
        assert_eq!(self.body["Code"], expected_code, "{}", self.body);
        assert!(self.body["Id"].as_str().is_some_and(|id| !id.is_empty()), "{}", self.body);
        assert!(self.body["Message"].as_str().is_some_and(|m| m.len() > 10), "{}", self.body);
        let errors = self.body["Errors"].as_array().expect("Errors");
        assert!(
            errors.iter().any(|e| e["ErrorCode"] == code && e["Path"] == path && e["Message"].as_str().is_some()),
            "{code} at {path} expected: {}",
            self.body
        );
        assert!(self.body.get("Data").is_none(), "an error carries no Data: {}", self.body);
        assert!(self.headers.contains_key("x-fapi-interaction-id"), "errors carry the interaction id too");
    }
}

struct World {
    app: TestApp,
    tpp: Tpp,
    token: String,
}

async fn world_with(options: Options) -> World {
    let app = spawn_app_with(options).await;
    let tpp = app.onboard_private_key_jwt(ALL_SCOPES).await;
    let token = token_for(&app, &tpp, ALL_SCOPES).await;
    World { app, tpp, token }
}

async fn world() -> World {
    world_with(Options::mutual_tls()).await
}

async fn token_for(app: &TestApp, tpp: &Tpp, scope: &str) -> String {
    let reply = app.token_with_assertion(tpp, app.assertion(&tpp.client_id, json!({})), Some(scope)).await;
    assert_eq!(reply.status, 200, "{}", reply.body);
    reply.body["access_token"].as_str().unwrap().to_owned()
}

impl World {
    fn call(&self, method: Method, path: impl Into<String>) -> Call<'_> {
        Call::new(method, path, &self.tpp.http, Some(&self.token))
    }

    async fn store(&self) -> SqliteStore {
        SqliteStore::open(&format!("sqlite://{}", self.app.database_path().display())).await.unwrap()
    }

    /// Records a customer's authorisation as the authorization flow does (its pages are the
    /// lead's part): AwaitingAuthorisation → Authorised.
    async fn authorise(&self, consent_id: &str) {
        let change = ConsentStatusChange {
            consent_id: consent_id.to_owned(),
            from: ConsentStatus::AwaitingAuthorisation,
            to: ConsentStatus::Authorised,
            at: self.app.now(),
            customer_id: Some("customer-1".into()),
            account_ids: Some(vec!["acc-1".into()]),
        };
        let line = keyfort::storage::AuditEvent {
            action: "consent_authorise".into(),
            outcome: "success".into(),
            consent_id: Some(consent_id.to_owned()),
            customer_id: Some("customer-1".into()),
            ..Default::default()
        };
        assert!(self.store().await.change_consent_status(&change, &line).await.unwrap());
    }
}

#[tokio::test]
async fn an_account_access_consent_is_created_read_and_revoked() {
    let w = world().await;
    let body = account_access_body(&w.app);
    let created = w
        .call(Method::POST, ACCOUNTS)
        .json(&body)
        .header("x-fapi-interaction-id", "93bac548-d2de-4546-b106-880a5018460d")
        .send(&w.app)
        .await;
    assert_eq!(created.status, 201, "{}", created.body);
    assert_eq!(created.headers["x-fapi-interaction-id"], "93bac548-d2de-4546-b106-880a5018460d", "played back");
    assert_eq!(created.headers["cache-control"], "no-store");
    let data = &created.body["Data"];
    let id = data["ConsentId"].as_str().unwrap().to_owned();
    assert!(id.starts_with("aac-"), "{id}");
    assert_eq!(data["Status"], "AwaitingAuthorisation");
    assert_eq!(data["Permissions"], body["Data"]["Permissions"]);
    assert_eq!(data["ExpirationDateTime"], body["Data"]["ExpirationDateTime"]);
    assert_eq!(data["TransactionFromDateTime"], "2024-01-01T00:00:00+00:00");
    assert_eq!(data["CreationDateTime"], format_date_time(w.app.now()));
    assert_eq!(data["StatusUpdateDateTime"], data["CreationDateTime"]);
    assert_eq!(created.body["Risk"], json!({}));
    assert_eq!(created.body["Links"]["Self"], format!("https://localhost:9446{ACCOUNTS}/{id}"));
    assert_eq!(created.body["Meta"], json!({}));

    let read = w.call(Method::GET, format!("{ACCOUNTS}/{id}")).send(&w.app).await;
    assert_eq!(read.status, 200, "{}", read.body);
    assert_eq!(read.body, created.body);
    let generated = read.headers["x-fapi-interaction-id"].to_str().unwrap();
    assert_eq!(generated.len(), 36, "a new UUID when none was sent: {generated}");

    // Only an Authorised consent can be revoked.
    let early = w.call(Method::DELETE, format!("{ACCOUNTS}/{id}")).send(&w.app).await;
    early.assert_obie(400, "UK.OBIE.Resource.InvalidConsentStatus", "Data.Status");
    w.authorise(&id).await;
    w.app.clock.advance(60);
    let revoked = w.call(Method::DELETE, format!("{ACCOUNTS}/{id}")).send(&w.app).await;
    assert_eq!(revoked.status, 204, "{}", revoked.body);
    assert_eq!(revoked.body, Value::Null, "no body");
    let read = w.call(Method::GET, format!("{ACCOUNTS}/{id}")).send(&w.app).await;
    assert_eq!(read.body["Data"]["Status"], "Revoked");
    assert_eq!(read.body["Data"]["StatusUpdateDateTime"], format_date_time(w.app.now()));
    assert_eq!(read.body["Data"]["CreationDateTime"], created.body["Data"]["CreationDateTime"]);
    // DELETE again changes nothing and succeeds.
    assert_eq!(w.call(Method::DELETE, format!("{ACCOUNTS}/{id}")).send(&w.app).await.status, 204);
    let stored = w.store().await.find_consent(&id).await.unwrap().unwrap();
    assert_eq!(
        (stored.status, stored.customer_id.as_deref()),
        (ConsentStatus::Revoked, Some("customer-1")),
        "the row stays"
    );
}

#[tokio::test]
async fn a_domestic_payment_consent_honours_idempotency_keys() {
    let w = world().await;
    let body = payment_body("FRESCO-101");
    let bytes = body.to_string();
    let signature = w.app.jws_signature(bytes.as_bytes());
    let post = |key: &str, body: &Value, signature: &str| {
        w.call(Method::POST, PAYMENTS)
            .json(body)
            .header("x-idempotency-key", key.to_owned())
            .header("x-jws-signature", signature.to_owned())
    };
    let created = post("key-1", &body, &signature).send(&w.app).await;
    assert_eq!(created.status, 201, "{}", created.body);
    let id = created.body["Data"]["ConsentId"].as_str().unwrap().to_owned();
    assert!(id.starts_with("pdc-"));
    assert_eq!(created.body["Data"]["Status"], "AwaitingAuthorisation");
    assert_eq!(created.body["Data"]["Initiation"], body["Data"]["Initiation"]);
    assert_eq!(created.body["Risk"], body["Risk"]);
    assert_eq!(created.body["Links"]["Self"], format!("https://localhost:9446{PAYMENTS}/{id}"));

    // The same key and body: the same consent, no new one.
    w.app.clock.advance(5);
    let again = post("key-1", &body, &signature).send(&w.app).await;
    assert_eq!(again.status, 201, "{}", again.body);
    assert_eq!(again.body, created.body, "the first response's body");
    // The same key with another body is refused.
    let other = payment_body("FRESCO-102");
    let other_signature = w.app.jws_signature(other.to_string().as_bytes());
    post("key-1", &other, &other_signature).send(&w.app).await.assert_obie(
        400,
        "UK.OBIE.Header.Invalid",
        "x-idempotency-key",
    );
    // Another key is another consent.
    let second = post("key-2", &body, &signature).send(&w.app).await;
    assert_eq!(second.status, 201);
    assert_ne!(second.body["Data"]["ConsentId"], created.body["Data"]["ConsentId"]);
    // Keys are per client: another TPP's key-1 is its own.
    let tls = w.app.onboard_tls_client_auth().await;
    let tls_token = w.app.tls_token(&tls).await;
    let tls_signature = detached_jws(
        &w.app.keys.software_ps,
        &obie_signature_header(&w.app.keys.software_ps, &format!("{ORG_ID}/TlsClientSoftware"), w.app.now(), json!({})),
        bytes.as_bytes(),
    );
    let theirs = Call::new(Method::POST, PAYMENTS, &tls.http, Some(&tls_token))
        .json(&body)
        .header("x-idempotency-key", "key-1")
        .header("x-jws-signature", tls_signature)
        .send(&w.app)
        .await;
    assert_eq!(theirs.status, 201, "{}", theirs.body);
    assert_ne!(theirs.body["Data"]["ConsentId"], created.body["Data"]["ConsentId"]);

    // The key is required, and at most 40 characters.
    w.call(Method::POST, PAYMENTS)
        .json(&body)
        .header("x-jws-signature", signature.clone())
        .send(&w.app)
        .await
        .assert_obie(400, "UK.OBIE.Header.Missing", "x-idempotency-key");
    post(&"k".repeat(41), &body, &signature).send(&w.app).await.assert_obie(
        400,
        "UK.OBIE.Header.Invalid",
        "x-idempotency-key",
    );

    // GET, and no DELETE for payment consents (v3.1.11 has none).
    let read = w.call(Method::GET, format!("{PAYMENTS}/{id}")).send(&w.app).await;
    assert_eq!(read.status, 200);
    assert_eq!(read.body["Data"]["Initiation"]["InstructedAmount"], json!({"Amount": "165.88", "Currency": "GBP"}));
    assert_eq!(w.call(Method::DELETE, format!("{PAYMENTS}/{id}")).send(&w.app).await.status, 405);

    // (Past the idempotency period the key is free again: the storage contract tests show
    // it; a day on this test's clock would outlive its CRL.)
}

#[tokio::test]
async fn an_idempotency_key_is_honoured_on_the_other_consents_too() {
    let w = world().await;
    let body = account_access_body(&w.app);
    let first = w.call(Method::POST, ACCOUNTS).json(&body).header("x-idempotency-key", "aisp-1").send(&w.app).await;
    let second = w.call(Method::POST, ACCOUNTS).json(&body).header("x-idempotency-key", "aisp-1").send(&w.app).await;
    assert_eq!((first.status, second.status), (201, 201));
    assert_eq!(first.body["Data"]["ConsentId"], second.body["Data"]["ConsentId"]);
    let without = w.call(Method::POST, ACCOUNTS).json(&body).send(&w.app).await;
    assert_ne!(without.body["Data"]["ConsentId"], first.body["Data"]["ConsentId"], "no key, no idempotency");
}

#[tokio::test]
async fn a_funds_confirmation_consent_is_created_read_and_revoked() {
    let w = world().await;
    let body = funds_body();
    let created = w.call(Method::POST, FUNDS).json(&body).send(&w.app).await;
    assert_eq!(created.status, 201, "{}", created.body);
    let id = created.body["Data"]["ConsentId"].as_str().unwrap().to_owned();
    assert!(id.starts_with("fcc-"));
    assert_eq!(created.body["Data"]["DebtorAccount"], body["Data"]["DebtorAccount"]);
    assert!(created.body.get("Risk").is_none(), "funds confirmation has no Risk");
    assert_eq!(created.body["Links"]["Self"], format!("https://localhost:9446{FUNDS}/{id}"));
    let read = w.call(Method::GET, format!("{FUNDS}/{id}")).send(&w.app).await;
    assert_eq!(read.body, created.body);
    w.authorise(&id).await;
    assert_eq!(w.call(Method::DELETE, format!("{FUNDS}/{id}")).send(&w.app).await.status, 204);
    assert_eq!(w.call(Method::GET, format!("{FUNDS}/{id}")).send(&w.app).await.body["Data"]["Status"], "Revoked");
}

#[tokio::test]
async fn tokens_are_checked_before_anything_else() {
    let w = world().await;
    let body = account_access_body(&w.app);
    // No token: 401 with a Bearer challenge.
    let anonymous = Call::new(Method::POST, ACCOUNTS, &w.tpp.http, None).json(&body).send(&w.app).await;
    anonymous.assert_error(401, "invalid_token", "Bearer");
    assert!(anonymous.headers["www-authenticate"].to_str().unwrap().starts_with("Bearer"));
    // A token this server did not issue.
    let garbage =
        Call::new(Method::GET, format!("{ACCOUNTS}/aac-x"), &w.tpp.http, Some("not-a-token")).send(&w.app).await;
    garbage.assert_error(401, "invalid_token", "not an access token");
    // A revoked token.
    let revoked = token_for(&w.app, &w.tpp, "accounts").await;
    w.app
        .form_post(
            &w.tpp.http,
            "/oauth2/revoke",
            crate::tokens::form(&[
                ("token", &revoked),
                ("client_assertion_type", "urn:ietf:params:oauth:client-assertion-type:jwt-bearer"),
                ("client_assertion", &w.app.assertion(&w.tpp.client_id, json!({}))),
            ]),
            &[],
        )
        .await;
    Call::new(Method::POST, ACCOUNTS, &w.tpp.http, Some(&revoked)).json(&body).send(&w.app).await.assert_error(
        401,
        "invalid_token",
        "revoked",
    );
    // An expired token.
    let soon_expired = token_for(&w.app, &w.tpp, "accounts").await;
    w.app.clock.advance(3601);
    Call::new(Method::POST, ACCOUNTS, &w.tpp.http, Some(&soon_expired)).json(&body).send(&w.app).await.assert_error(
        401,
        "invalid_token",
        "expired",
    );
    let token = token_for(&w.app, &w.tpp, "accounts").await;

    // A valid token without the endpoint's scope: 403 insufficient_scope.
    for (path, body) in [(PAYMENTS, payment_body("X")), (FUNDS, funds_body())] {
        let reply = Call::new(Method::POST, path, &w.tpp.http, Some(&token))
            .json(&body)
            .header("x-idempotency-key", "k")
            .send(&w.app)
            .await;
        reply.assert_error(403, "insufficient_scope", "scope");
        assert!(reply.headers["www-authenticate"].to_str().unwrap().contains("insufficient_scope"));
    }
    let created = Call::new(Method::POST, ACCOUNTS, &w.tpp.http, Some(&token)).json(&body).send(&w.app).await;
    assert_eq!(created.status, 201, "{}", created.body);
    let id = created.body["Data"]["ConsentId"].as_str().unwrap();
    let payments_only = token_for(&w.app, &w.tpp, "payments").await;
    Call::new(Method::GET, format!("{ACCOUNTS}/{id}"), &w.tpp.http, Some(&payments_only))
        .send(&w.app)
        .await
        .assert_error(403, "insufficient_scope", "accounts");

    // The token is bound to the TPP's certificate: refused without mutual TLS, and with
    // another certificate of the same organisation.
    Call::new(Method::GET, format!("{ACCOUNTS}/{id}"), &w.app.client, Some(&token)).send(&w.app).await.assert_error(
        401,
        "invalid_token",
        "mutual TLS",
    );
    let other_cert = w.app.pki.issue(&Subject::legacy_ob(ORG_ID, SOFTWARE_ID).serial(4242));
    let other_http = w.app.client_presenting(&other_cert);
    Call::new(Method::GET, format!("{ACCOUNTS}/{id}"), &other_http, Some(&token)).send(&w.app).await.assert_error(
        401,
        "invalid_token",
        "certificate",
    );
    assert_eq!(
        Call::new(Method::GET, format!("{ACCOUNTS}/{id}"), &w.tpp.http, Some(&token)).send(&w.app).await.status,
        200
    );
}

#[tokio::test]
async fn another_clients_consent_is_forbidden_and_unknown_ones_are_not_found() {
    let w = world().await;
    let created = w.call(Method::POST, ACCOUNTS).json(&account_access_body(&w.app)).send(&w.app).await;
    let id = created.body["Data"]["ConsentId"].as_str().unwrap().to_owned();
    let funds = w.call(Method::POST, FUNDS).json(&funds_body()).send(&w.app).await;
    let funds_id = funds.body["Data"]["ConsentId"].as_str().unwrap().to_owned();
    w.authorise(&id).await;

    let tls = w.app.onboard_tls_client_auth().await;
    let stranger = w.app.tls_token(&tls).await;
    for method in [Method::GET, Method::DELETE] {
        let reply = Call::new(method, format!("{ACCOUNTS}/{id}"), &tls.http, Some(&stranger)).send(&w.app).await;
        reply.assert_obie(403, "UK.OBIE.Resource.ConsentMismatch", "ConsentId");
        let text = reply.body.to_string();
        assert!(!text.contains("ReadBalances") && !text.contains("Authorised"), "nothing of the consent: {text}");
    }
    assert_eq!(
        w.call(Method::GET, format!("{ACCOUNTS}/{id}")).send(&w.app).await.body["Data"]["Status"],
        "Authorised",
        "the stranger's DELETE changed nothing"
    );

    // Unknown ids, and an id of another type, are a 400 with UK.OBIE.Resource.NotFound
    // (OBIE v3.1.11: 400 rather than 404 for an id that does not exist).
    for path in [
        format!("{ACCOUNTS}/aac-nothing"),
        format!("{ACCOUNTS}/{funds_id}"),
        format!("{FUNDS}/{id}"),
        format!("{ACCOUNTS}/{}", "x".repeat(300)),
    ] {
        w.call(Method::GET, path).send(&w.app).await.assert_obie(400, "UK.OBIE.Resource.NotFound", "ConsentId");
    }
    w.call(Method::DELETE, format!("{FUNDS}/fcc-nothing")).send(&w.app).await.assert_obie(
        400,
        "UK.OBIE.Resource.NotFound",
        "ConsentId",
    );
}

#[tokio::test]
async fn payment_consents_must_be_signed_by_default() {
    let w = world().await;
    let body = payment_body("SIG-1");
    let bytes = body.to_string();
    let key = || keyfort_core::secret::random_b64url(9);
    let post = |signature: Option<String>| {
        let mut call = w.call(Method::POST, PAYMENTS).json(&body).header("x-idempotency-key", key());
        if let Some(signature) = signature {
            call = call.header("x-jws-signature", signature);
        }
        call
    };
    post(None).send(&w.app).await.assert_obie(400, "UK.OBIE.Signature.Missing", "x-jws-signature");
    post(Some("not a jws".into())).send(&w.app).await.assert_obie(
        400,
        "UK.OBIE.Signature.Malformed",
        "x-jws-signature",
    );
    // A compact JWS with the body attached is not a detached one.
    let attached = w.app.jws_signature(bytes.as_bytes()).replacen(
        "..",
        &format!(".{}.", keyfort_core::jose::b64url_encode(&bytes)),
        1,
    );
    post(Some(attached)).send(&w.app).await.assert_obie(400, "UK.OBIE.Signature.Malformed", "x-jws-signature");
    for (patch, code, path) in [
        (
            json!({"http://openbanking.org.uk/iss": format!("{ORG_ID}/SomeoneElse")}),
            "UK.OBIE.Signature.InvalidClaim",
            "http://openbanking.org.uk/iss",
        ),
        (
            json!({"http://openbanking.org.uk/tan": "evil.example"}),
            "UK.OBIE.Signature.InvalidClaim",
            "http://openbanking.org.uk/tan",
        ),
        (
            json!({"http://openbanking.org.uk/iat": w.app.now() + 3600}),
            "UK.OBIE.Signature.InvalidClaim",
            "http://openbanking.org.uk/iat",
        ),
        (
            json!({"http://openbanking.org.uk/iat": null}),
            "UK.OBIE.Signature.MissingClaim",
            "http://openbanking.org.uk/iat",
        ),
        (json!({"crit": ["http://openbanking.org.uk/iat"]}), "UK.OBIE.Signature.InvalidClaim", "crit"),
        (json!({"crit": null}), "UK.OBIE.Signature.MissingClaim", "crit"),
        (json!({"b64": false}), "UK.OBIE.Signature.InvalidClaim", "b64"),
        (json!({"kid": "no-such-kid"}), "UK.OBIE.Signature.InvalidClaim", "kid"),
        (json!({"kid": null}), "UK.OBIE.Signature.MissingClaim", "kid"),
    ] {
        post(Some(w.app.jws_signature_with(bytes.as_bytes(), patch.clone())))
            .send(&w.app)
            .await
            .assert_obie(400, code, path);
    }
    // RS256 and ES256 (not registered by this client) are refused by name.
    let es = detached_jws(
        &w.app.keys.software_es,
        &obie_signature_header(&w.app.keys.software_es, &seed_signature_issuer(), w.app.now(), json!({})),
        bytes.as_bytes(),
    );
    post(Some(es)).send(&w.app).await.assert_obie(400, "UK.OBIE.Signature.InvalidClaim", "alg");
    // Signed over another body, or by a key that is not the TPP's.
    let other_body = w.app.jws_signature(payment_body("SIG-2").to_string().as_bytes());
    post(Some(other_body)).send(&w.app).await.assert_obie(400, "UK.OBIE.Signature.Invalid", "x-jws-signature");
    let impostor = TestKey::generate(keyfort_core::jose::SigningAlg::PS256, "soft-ps256");
    let forged = detached_jws(
        &impostor,
        &obie_signature_header(&impostor, &seed_signature_issuer(), w.app.now(), json!({})),
        bytes.as_bytes(),
    );
    post(Some(forged)).send(&w.app).await.assert_obie(400, "UK.OBIE.Signature.Invalid", "x-jws-signature");
    // A valid signature.
    assert_eq!(post(Some(w.app.jws_signature(bytes.as_bytes()))).send(&w.app).await.status, 201);
    // A signature sent on another consent POST is verified too.
    let accounts = account_access_body(&w.app);
    let wrong = w.app.jws_signature(b"{}");
    w.call(Method::POST, ACCOUNTS).json(&accounts).header("x-jws-signature", wrong).send(&w.app).await.assert_obie(
        400,
        "UK.OBIE.Signature.Invalid",
        "x-jws-signature",
    );
    let right = w.app.jws_signature(accounts.to_string().as_bytes());
    assert_eq!(
        w.call(Method::POST, ACCOUNTS).json(&accounts).header("x-jws-signature", right).send(&w.app).await.status,
        201
    );
}

#[tokio::test]
async fn without_required_signatures_a_sent_one_is_still_verified() {
    let w = world_with(Options::mutual_tls().section("[consents]\nrequire_request_signature = false")).await;
    let body = payment_body("NOSIG");
    let unsigned = w.call(Method::POST, PAYMENTS).json(&body).header("x-idempotency-key", "n1").send(&w.app).await;
    assert_eq!(unsigned.status, 201, "{}", unsigned.body);
    let bad = w
        .app
        .jws_signature_with(body.to_string().as_bytes(), json!({"http://openbanking.org.uk/tan": "other.example"}));
    w.call(Method::POST, PAYMENTS)
        .json(&body)
        .header("x-idempotency-key", "n2")
        .header("x-jws-signature", bad)
        .send(&w.app)
        .await
        .assert_obie(400, "UK.OBIE.Signature.InvalidClaim", "http://openbanking.org.uk/tan");
    let good = w.app.jws_signature(body.to_string().as_bytes());
    let signed = w
        .call(Method::POST, PAYMENTS)
        .json(&body)
        .header("x-idempotency-key", "n3")
        .header("x-jws-signature", good)
        .send(&w.app)
        .await;
    assert_eq!(signed.status, 201, "{}", signed.body);
}

#[tokio::test]
async fn the_trust_anchor_is_configurable() {
    let w =
        world_with(Options::mutual_tls().section("[consents]\nsignature_trust_anchor = \"directory.example\"")).await;
    let body = payment_body("TAN");
    let bytes = body.to_string();
    let ours =
        w.app.jws_signature_with(bytes.as_bytes(), json!({"http://openbanking.org.uk/tan": "directory.example"}));
    let reply = w
        .call(Method::POST, PAYMENTS)
        .json(&body)
        .header("x-idempotency-key", "tan-1")
        .header("x-jws-signature", ours)
        .send(&w.app)
        .await;
    assert_eq!(reply.status, 201, "{}", reply.body);
    let theirs = w.app.jws_signature(bytes.as_bytes());
    w.call(Method::POST, PAYMENTS)
        .json(&body)
        .header("x-idempotency-key", "tan-2")
        .header("x-jws-signature", theirs)
        .send(&w.app)
        .await
        .assert_obie(400, "UK.OBIE.Signature.InvalidClaim", "http://openbanking.org.uk/tan");
}

#[tokio::test]
async fn bodies_are_validated_with_obie_codes_and_paths() {
    let w = world().await;
    let post = |path: &str, body: Value| {
        let call = w.call(Method::POST, path.to_owned()).json(&body);
        if path == PAYMENTS {
            let signature = w.app.jws_signature(body.to_string().as_bytes());
            call.header("x-idempotency-key", keyfort_core::secret::random_b64url(9))
                .header("x-jws-signature", signature)
        } else {
            call
        }
    };
    let past = format_date_time(w.app.now() - 60);
    let cases = [
        (ACCOUNTS, json!({"Data": {}, "Risk": {}}), "UK.OBIE.Field.Missing", "Data.Permissions"),
        (
            ACCOUNTS,
            json!({"Data": {"Permissions": ["ReadAccountsBasic", "ReadTransactionsBasic"]}, "Risk": {}}),
            "UK.OBIE.Field.Expected",
            "Data.Permissions",
        ),
        (
            ACCOUNTS,
            json!({"Data": {"Permissions": ["ReadAccountsBasic", "ReadEverything"]}, "Risk": {}}),
            "UK.OBIE.Field.Invalid",
            "Data.Permissions[1]",
        ),
        (
            ACCOUNTS,
            json!({"Data": {"Permissions": ["ReadAccountsBasic"], "ExpirationDateTime": past}, "Risk": {}}),
            "UK.OBIE.Field.InvalidDate",
            "Data.ExpirationDateTime",
        ),
        (
            ACCOUNTS,
            json!({"Data": {"Permissions": ["ReadAccountsBasic"], "ExpirationDateTime": "2099-01-01T00:00:00"}, "Risk": {}}),
            "UK.OBIE.Field.InvalidDate",
            "Data.ExpirationDateTime",
        ),
        (
            ACCOUNTS,
            json!({"Data": {"Permissions": ["ReadAccountsBasic"]}, "Risk": {}, "Extra": 1}),
            "UK.OBIE.Field.Unexpected",
            "Extra",
        ),
        (ACCOUNTS, json!({"Data": {"Permissions": ["ReadAccountsBasic"]}}), "UK.OBIE.Field.Missing", "Risk"),
        (
            FUNDS,
            json!({"Data": {"DebtorAccount": {"SchemeName": "UK.OBIE.SortCodeAccountNumber"}}}),
            "UK.OBIE.Field.Missing",
            "Data.DebtorAccount.Identification",
        ),
        (
            FUNDS,
            json!({"Data": {"DebtorAccount": {"SchemeName": "UK.OBIE.SortCodeAccountNumber", "Identification": "60304560123456"}, "ExpirationDateTime": past}}),
            "UK.OBIE.Field.InvalidDate",
            "Data.ExpirationDateTime",
        ),
        (
            FUNDS,
            json!({"Data": {"DebtorAccount": {"SchemeName": "UK.Bank.Secret", "Identification": "1"}}}),
            "UK.OBIE.Unsupported.Scheme",
            "Data.DebtorAccount.SchemeName",
        ),
    ];
    for (path, body, code, field) in cases {
        post(path, body).send(&w.app).await.assert_obie(400, code, field);
    }
    let mut bad_amount = payment_body("A");
    bad_amount["Data"]["Initiation"]["InstructedAmount"]["Amount"] = json!("12.345678");
    post(PAYMENTS, bad_amount).send(&w.app).await.assert_obie(
        400,
        "UK.OBIE.Field.Invalid",
        "Data.Initiation.InstructedAmount.Amount",
    );
    let mut bad_currency = payment_body("A");
    bad_currency["Data"]["Initiation"]["InstructedAmount"]["Currency"] = json!("pounds");
    post(PAYMENTS, bad_currency).send(&w.app).await.assert_obie(
        400,
        "UK.OBIE.Field.Invalid",
        "Data.Initiation.InstructedAmount.Currency",
    );
    let mut late = payment_body("A");
    late["Data"]["Authorisation"] = json!({"AuthorisationType": "Single", "CompletionDateTime": past});
    post(PAYMENTS, late).send(&w.app).await.assert_obie(
        400,
        "UK.OBIE.Field.InvalidDate",
        "Data.Authorisation.CompletionDateTime",
    );
    let mut no_creditor = payment_body("A");
    no_creditor["Data"]["Initiation"].as_object_mut().unwrap().remove("CreditorAccount");
    post(PAYMENTS, no_creditor).send(&w.app).await.assert_obie(
        400,
        "UK.OBIE.Field.Missing",
        "Data.Initiation.CreditorAccount",
    );

    // Not JSON, and not application/json.
    let garbage = w.call(Method::POST, ACCOUNTS).header("content-type", "application/json");
    let garbage = Call { body: Some(b"{\"Data\":".to_vec()), ..garbage };
    let reply = garbage.send(&w.app).await;
    assert_eq!(reply.status, 400);
    assert_eq!(reply.body["Errors"][0]["ErrorCode"], "UK.OBIE.Resource.InvalidFormat", "{}", reply.body);
    let text = Call {
        body: Some(account_access_body(&w.app).to_string().into_bytes()),
        ..w.call(Method::POST, ACCOUNTS).header("content-type", "text/plain")
    };
    text.send(&w.app).await.assert_obie(415, "UK.OBIE.Header.Invalid", "Content-Type");
}

#[tokio::test]
async fn every_consent_action_is_audited() {
    let w = world().await;
    let body = account_access_body(&w.app);
    let created = w.call(Method::POST, ACCOUNTS).json(&body).header("x-idempotency-key", "audit-1").send(&w.app).await;
    let id = created.body["Data"]["ConsentId"].as_str().unwrap().to_owned();
    w.call(Method::POST, ACCOUNTS).json(&body).header("x-idempotency-key", "audit-1").send(&w.app).await;
    w.call(Method::GET, format!("{ACCOUNTS}/{id}")).send(&w.app).await;
    w.call(Method::DELETE, format!("{ACCOUNTS}/{id}")).send(&w.app).await; // refused: not Authorised
    w.authorise(&id).await;
    w.call(Method::DELETE, format!("{ACCOUNTS}/{id}")).send(&w.app).await;
    w.call(Method::POST, ACCOUNTS).json(&json!({"Data": {}, "Risk": {}})).send(&w.app).await;
    let tls = w.app.onboard_tls_client_auth().await;
    let stranger = w.app.tls_token(&tls).await;
    Call::new(Method::GET, format!("{ACCOUNTS}/{id}"), &tls.http, Some(&stranger)).send(&w.app).await;
    Call::new(Method::POST, ACCOUNTS, &w.tpp.http, None).json(&body).send(&w.app).await;

    let store = w.store().await;
    let lines = store.consent_audit_events(&id, 50).await.unwrap();
    let story: Vec<(String, String, Option<String>)> =
        lines.iter().rev().map(|e| (e.action.clone(), e.outcome.clone(), e.client_id.clone())).collect();
    let own = Some(w.tpp.client_id.clone());
    for step in [
        ("consent_create", "success", own.clone()),
        ("consent_read", "success", own.clone()),
        ("consent_revoke", "UK.OBIE.Resource.InvalidConsentStatus", own.clone()),
        ("consent_authorise", "success", None),
        ("consent_revoke", "success", own.clone()),
        ("consent_read", "UK.OBIE.Resource.ConsentMismatch", Some(tls.client_id.clone())),
    ] {
        let step = (step.0.to_owned(), step.1.to_owned(), step.2);
        assert!(story.contains(&step), "{step:?} missing from {story:?}");
    }
    let created_line = lines.iter().find(|e| e.action == "consent_create" && e.detail.is_none()).unwrap();
    assert_eq!(created_line.software_id.as_deref(), Some(SOFTWARE_ID));
    assert_eq!(created_line.org_id.as_deref(), Some(ORG_ID));
    assert!(created_line.cert_thumbprint.is_some(), "the certificate of the call");
    let replay =
        lines.iter().find(|e| e.action == "consent_create" && e.detail.is_some()).expect("the repeat is audited");
    assert!(replay.detail.as_deref().unwrap().contains("audit-1"), "{replay:?}");
    let revoked = lines.iter().find(|e| e.action == "consent_revoke" && e.outcome == "success").unwrap();
    assert_eq!(revoked.customer_id.as_deref(), Some("customer-1"), "the customer whose consent it was");

    let client_lines = store.audit_events(Some(&w.tpp.client_id), 100).await.unwrap();
    assert!(client_lines.iter().any(|e| e.action == "consent_create" && e.outcome == "UK.OBIE.Field.Missing"));
    let anonymous = store.audit_events(None, 200).await.unwrap();
    assert!(anonymous
        .iter()
        .any(|e| e.action == "consent_create" && e.outcome == "invalid_token" && e.client_id.is_none()));
}

/// The authorization flow's interface: `for_authorization`, `authorise`, `reject`.
mod decisions {
    use std::net::{IpAddr, Ipv4Addr};

    use keyfort::caller::{Caller, PresentedCertificate};
    use keyfort::customers::manage::{add_account, add_customer, NewAccount};
    use keyfort::error::ServiceError;
    use keyfort_core::error::ErrorCode;

    use super::*;

    fn browser(customer_id: &str) -> Caller {
        Caller::new(IpAddr::V4(Ipv4Addr::new(192, 0, 2, 7)), PresentedCertificate::None).with_customer(customer_id)
    }

    #[track_caller]
    fn denied<T: std::fmt::Debug>(result: Result<T, ServiceError>, needle: &str) {
        match result {
            Err(ServiceError::Refused(e)) => {
                assert_eq!(e.code, ErrorCode::AccessDenied, "{e}");
                assert!(e.description.contains(needle), "{:?} should mention {needle:?}", e.description);
            }
            other => panic!("access_denied expected, got {other:?}"),
        }
    }

    async fn customer(w: &World, username: &str, accounts: &[(&str, &str)]) -> String {
        let config = keyfort::config::Config::load(&w.app.config_path).unwrap();
        let store = w.store().await;
        let added = add_customer(&store, &config.customers, username, "correct horse battery", false, w.app.now())
            .await
            .unwrap();
        for (id, number) in accounts {
            let account = NewAccount {
                account_id: (*id).to_owned(),
                name: format!("{username}'s {id}"),
                scheme: "UK.OBIE.SortCodeAccountNumber".into(),
                identification: (*number).to_owned(),
                secondary_identification: None,
                currency: "GBP".into(),
            };
            add_account(&store, username, &account, w.app.now()).await.unwrap();
        }
        added.customer_id
    }

    async fn create(w: &World, path: &str, body: &Value) -> String {
        w.app.create_consent(&w.tpp.http, &w.token, path, body).await
    }

    #[tokio::test]
    async fn an_authorization_request_finds_only_its_clients_authorisable_consents() {
        let w = world().await;
        let consents = w.app.consents.clone().unwrap();
        let id = create(&w, ACCOUNTS, &account_access_body(&w.app)).await;
        let now = w.app.now();
        let consent = consents.for_authorization(&w.tpp.client_id, &id, now).await.unwrap();
        assert_eq!(consent.id, id);
        // What the consent page shows.
        let sentences: Vec<&str> = consent.permissions().iter().map(|p| p.sentence()).collect();
        assert!(sentences.contains(&"See your account balances"), "{sentences:?}");
        assert!(consent.expiration_date_time().is_some());
        denied(consents.for_authorization("another-client", &id, now).await, "not created by this client");
        denied(consents.for_authorization(&w.tpp.client_id, "aac-nothing", now).await, "no consent");
        denied(consents.for_authorization(&w.tpp.client_id, &id, now + 31 * 86_400).await, "expired");
        w.authorise(&id).await;
        denied(consents.for_authorization(&w.tpp.client_id, &id, now).await, "Authorised, not AwaitingAuthorisation");
        assert_eq!(consents.find(&id).await.unwrap().unwrap().status, ConsentStatus::Authorised);
        assert!(consents.find("aac-nothing").await.unwrap().is_none());
    }

    #[tokio::test]
    async fn a_customer_authorises_with_their_own_accounts() {
        let w = world().await;
        let consents = w.app.consents.clone().unwrap();
        let ann = customer(&w, "ann", &[("ann-current", "60304560123456"), ("ann-savings", "60304587654321")]).await;
        let bob = customer(&w, "bob", &[("bob-current", "11111122222222")]).await;

        // Account access: one or more of the customer's accounts.
        let id = create(&w, ACCOUNTS, &account_access_body(&w.app)).await;
        denied(
            consents.authorise(&browser(&ann), &id, &ann, &["bob-current".into()]).await,
            "not one of the customer's accounts",
        );
        denied(consents.authorise(&browser(&ann), &id, &ann, &[]).await, "1 to 100 accounts");
        let authorised = consents
            .authorise(&browser(&ann), &id, &ann, &["ann-current".into(), "ann-savings".into(), "ann-current".into()])
            .await
            .unwrap();
        assert_eq!(authorised.status, ConsentStatus::Authorised);
        assert_eq!(authorised.account_ids, vec!["ann-current", "ann-savings"], "each account once");
        let stored = consents.find(&id).await.unwrap().unwrap();
        assert_eq!((stored.customer_id.as_deref(), stored.account_ids.len()), (Some(ann.as_str()), 2));
        let read = w.call(Method::GET, format!("{ACCOUNTS}/{id}")).send(&w.app).await;
        assert_eq!(read.body["Data"]["Status"], "Authorised");
        // A second decision is refused: the consent no longer awaits one.
        denied(
            consents.authorise(&browser(&bob), &id, &bob, &["bob-current".into()]).await,
            "not AwaitingAuthorisation",
        );
        denied(consents.reject(&browser(&bob), &id, Some(&bob)).await, "not AwaitingAuthorisation");

        // Funds confirmation: exactly the debtor account the consent names, the customer's own.
        let funds = create(&w, FUNDS, &funds_body()).await;
        denied(
            consents.authorise(&browser(&ann), &funds, &ann, &["ann-current".into(), "ann-savings".into()]).await,
            "exactly one account",
        );
        denied(consents.authorise(&browser(&ann), &funds, &ann, &["ann-savings".into()]).await, "debtor account");
        denied(consents.authorise(&browser(&bob), &funds, &bob, &["bob-current".into()]).await, "debtor account");
        assert_eq!(
            consents.authorise(&browser(&ann), &funds, &ann, &["ann-current".into()]).await.unwrap().account_ids,
            vec!["ann-current"]
        );

        // A payment without a named debtor account: any one account of the customer.
        let payment = create(&w, PAYMENTS, &payment_body("DEC-1")).await;
        assert!(consents.authorise(&browser(&bob), &payment, &bob, &["bob-current".into()]).await.is_ok());

        // Audited with the customer, in the same transaction as the change.
        let lines = w.store().await.consent_audit_events(&id, 20).await.unwrap();
        let done = lines.iter().find(|e| e.action == "consent_authorise" && e.outcome == "success").unwrap();
        assert_eq!(done.customer_id.as_deref(), Some(ann.as_str()));
        assert_eq!(done.client_id.as_deref(), Some(w.tpp.client_id.as_str()));
        assert_eq!(done.software_id.as_deref(), Some(SOFTWARE_ID));
        assert_eq!(done.peer.as_deref(), Some("192.0.2.7"));
        let refused = lines.iter().filter(|e| e.action == "consent_authorise" && e.outcome == "access_denied").count();
        assert_eq!(refused, 3, "{lines:?}");
    }

    #[tokio::test]
    async fn a_customer_rejects_and_concurrent_decisions_have_one_winner() {
        let w = world().await;
        let consents = w.app.consents.clone().unwrap();
        let ann = customer(&w, "ann", &[("ann-current", "60304560123456")]).await;
        let id = create(&w, ACCOUNTS, &account_access_body(&w.app)).await;
        consents.reject(&browser(&ann), &id, Some(&ann)).await.unwrap();
        assert_eq!(consents.find(&id).await.unwrap().unwrap().status, ConsentStatus::Rejected);
        denied(consents.authorise(&browser(&ann), &id, &ann, &["ann-current".into()]).await, "Rejected");
        // Cancelled before signing in: no customer.
        let anonymous = Caller::new(IpAddr::V4(Ipv4Addr::LOCALHOST), PresentedCertificate::None);
        let cancelled = create(&w, ACCOUNTS, &account_access_body(&w.app)).await;
        consents.reject(&anonymous, &cancelled, None).await.unwrap();
        let line = w.store().await.consent_audit_events(&cancelled, 5).await.unwrap();
        assert_eq!((line[0].action.as_str(), line[0].customer_id.as_deref()), ("consent_reject", None));

        for _ in 0..3 {
            let id = create(&w, ACCOUNTS, &account_access_body(&w.app)).await;
            let (a, b) = (consents.clone(), consents.clone());
            let (id_a, id_b, ann_a, ann_b) = (id.clone(), id.clone(), ann.clone(), ann.clone());
            let authorise = tokio::spawn(async move {
                a.authorise(&browser(&ann_a), &id_a, &ann_a, &["ann-current".into()]).await.is_ok()
            });
            let reject = tokio::spawn(async move { b.reject(&browser(&ann_b), &id_b, Some(&ann_b)).await.is_ok() });
            let (authorised, rejected) = (authorise.await.unwrap(), reject.await.unwrap());
            assert!(authorised ^ rejected, "exactly one decision wins ({authorised}, {rejected})");
            let status = consents.find(&id).await.unwrap().unwrap().status;
            assert_eq!(status, if authorised { ConsentStatus::Authorised } else { ConsentStatus::Rejected });
        }
    }
}
