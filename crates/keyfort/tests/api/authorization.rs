//! The customer's authorization over real TLS: a TPP onboarded as today creates a consent,
//! sends the customer to `/oauth2/authorize` with a signed request object, the customer signs
//! in and decides on the bank's pages (driven here over HTTP, as a browser would post the
//! forms; `browser.rs` drives a real browser), and the TPP exchanges the code for
//! consent-bound tokens. ID tokens and access tokens are checked with jsonwebtoken, a JWT
//! library Keyfort does not use.

use std::collections::HashMap;

use keyfort::customers::manage::{add_account, add_customer, NewAccount};
use keyfort_core::jose::b64url_encode;
use serde_json::{json, Value};

use crate::helpers::*;
use crate::tokens::{form, Tpp, TOKEN};

pub const ISSUER: &str = "https://localhost:9446";
pub const REDIRECT: &str = "https://www.google.com/redirects/redirect1";
pub const PASSWORD: &str = "correct horse battery";
pub const ALL_SCOPES: &str = "accounts payments fundsconfirmations";
/// The seed customer's current account and savings account.
pub const CURRENT: (&str, &str) = ("acc-current", "60304560123456");
pub const SAVINGS: (&str, &str) = ("acc-savings", "60304560999999");

/// A bank with a customer, and an onboarded TPP with its client-credentials token.
pub struct Journey {
    pub app: TestApp,
    pub tpp: Tpp,
    pub token: String,
    /// The customer's browser: trusts the bank, follows no redirect (the test reads them).
    pub browser: reqwest::Client,
}

pub fn browser_client(app: &TestApp) -> reqwest::Client {
    let mut roots = rustls::RootCertStore::empty();
    for cert in keyfort::pem::certificates_from_pem(app.server_ca_pem.as_bytes()).unwrap() {
        roots.add(cert).unwrap();
    }
    let tls = rustls::ClientConfig::builder_with_provider(keyfort::tls::crypto_provider())
        .with_safe_default_protocol_versions()
        .unwrap()
        .with_root_certificates(roots)
        .with_no_client_auth();
    reqwest::Client::builder().use_preconfigured_tls(tls).redirect(reqwest::redirect::Policy::none()).build().unwrap()
}

pub async fn add_bank_customer(app: &TestApp, username: &str, totp: bool, accounts: &[(&str, &str)]) -> Option<String> {
    let config = keyfort::config::Config::load(&app.config_path).unwrap();
    let store = keyfort::storage::SqliteStore::open(&config.storage.url).await.unwrap();
    let added = add_customer(&store, &config.customers, username, PASSWORD, totp, app.now()).await.unwrap();
    for (id, number) in accounts {
        let account = NewAccount {
            account_id: (*id).to_owned(),
            name: if *id == CURRENT.0 { "Current account".into() } else { "Savings account".into() },
            scheme: "UK.OBIE.SortCodeAccountNumber".into(),
            identification: (*number).to_owned(),
            secondary_identification: None,
            currency: "GBP".into(),
        };
        add_account(&store, username, &account, app.now()).await.unwrap();
    }
    added.totp.map(|t| t.to_base32())
}

pub async fn journey_with(options: Options) -> Journey {
    let app = spawn_app_with(options).await;
    let tpp = app.onboard_private_key_jwt(ALL_SCOPES).await;
    let reply = app.token_with_assertion(&tpp, app.assertion(&tpp.client_id, json!({})), Some(ALL_SCOPES)).await;
    assert_eq!(reply.status, 200, "{}", reply.body);
    let token = reply.body["access_token"].as_str().unwrap().to_owned();
    add_bank_customer(&app, "ann", false, &[CURRENT, SAVINGS]).await;
    let browser = browser_client(&app);
    Journey { app, tpp, token, browser }
}

pub async fn journey() -> Journey {
    journey_with(Options::mutual_tls()).await
}

/// The answer to a browser's request: status, headers, and the page or fragment.
pub struct Page {
    pub status: u16,
    pub headers: reqwest::header::HeaderMap,
    pub body: String,
}

impl Page {
    pub fn location(&self) -> &str {
        self.headers.get("location").map(|v| v.to_str().unwrap()).unwrap_or_default()
    }

    /// The parameters in the fragment of the redirect's location.
    pub fn fragment(&self) -> HashMap<String, String> {
        let (_, fragment) =
            self.location().split_once('#').unwrap_or_else(|| panic!("no fragment: {}", self.location()));
        url::form_urlencoded::parse(fragment.as_bytes()).into_owned().collect()
    }

    /// The value of the input named `name` in the page.
    pub fn input(&self, name: &str) -> String {
        let at =
            self.body.find(&format!("name=\"{name}\"")).unwrap_or_else(|| panic!("no input {name} in {}", self.body));
        let start = self.body[..at].rfind("<input").expect("an input tag");
        let tag = &self.body[start..start + self.body[start..].find('>').unwrap()];
        let value = tag.split("value=\"").nth(1).unwrap_or_default();
        value[..value.find('"').unwrap_or(0)].to_owned()
    }

    /// The session cookie the page set.
    pub fn session_cookie(&self) -> String {
        let set = self.headers.get("set-cookie").expect("a session cookie").to_str().unwrap();
        assert!(set.contains("Secure") && set.contains("HttpOnly") && set.contains("SameSite=Lax"), "{set}");
        set.split(';').next().unwrap().to_owned()
    }

    #[track_caller]
    pub fn assert_redirected_with_error(&self, code: &str, needle: &str) {
        assert_eq!(self.status, 303, "a redirect to the TPP: {}", self.body);
        assert!(self.location().starts_with(&format!("{REDIRECT}#")), "{}", self.location());
        let fragment = self.fragment();
        assert_eq!(fragment.get("error").map(String::as_str), Some(code), "{fragment:?}");
        let description = fragment.get("error_description").cloned().unwrap_or_default();
        assert!(description.contains(needle), "{description:?} should mention {needle:?}");
        assert_eq!(fragment.get("state").map(String::as_str), Some("state-1"), "state comes back: {fragment:?}");
    }

    #[track_caller]
    pub fn assert_error_page(&self, status: u16, code: &str, needle: &str) {
        assert_eq!(self.status, status, "{}", self.body);
        assert!(self.headers.get("location").is_none(), "shown, not redirected: {}", self.location());
        assert!(self.body.contains(&format!("<code>{code}</code>")), "{code} not on the page: {}", self.body);
        let text = self.body.replace("&#x2f;", "/").replace("&quot;", "\"").replace("&#x27;", "'");
        assert!(text.contains(needle), "the page should say {needle:?}: {}", self.body);
    }
}

pub async fn page(response: reqwest::Response) -> Page {
    let status = response.status().as_u16();
    let headers = response.headers().clone();
    let body = response.text().await.unwrap();
    assert!(status < 500 || status == 503, "a 5xx: {status} {body}");
    Page { status, headers, body }
}

impl Journey {
    /// The claims of a request object for `consent_id`, before signing; `patch` changes them.
    pub fn request_claims(&self, consent_id: &str, scope: &str, patch_claims: Value) -> Value {
        let now = self.app.now();
        patch(
            json!({
                "iss": self.tpp.client_id, "client_id": self.tpp.client_id, "aud": self.app.public_url,
                "iat": now, "nbf": now, "exp": now + 300, "jti": keyfort_core::secret::random_b64url(12),
                "response_type": "code id_token", "scope": scope, "redirect_uri": REDIRECT,
                "state": "state-1", "nonce": "nonce-1",
                "claims": {"id_token": {
                    "openbanking_intent_id": {"value": consent_id, "essential": true},
                    "acr": {"essential": true, "values": ["urn:openbanking:psd2:sca", "urn:openbanking:psd2:ca"]}
                }}
            }),
            patch_claims,
        )
    }

    /// `GET /oauth2/authorize` with a request object signed by the TPP's software key.
    pub async fn authorize(&self, claims: &Value) -> Page {
        let request = self.app.keys.software_ps.sign(claims);
        let scope = claims["scope"].as_str().unwrap_or("openid").to_owned();
        self.authorize_raw(&[
            ("client_id", self.tpp.client_id.as_str()),
            ("response_type", "code id_token"),
            ("scope", &scope),
            ("request", &request),
        ])
        .await
    }

    pub async fn authorize_raw(&self, params: &[(&str, &str)]) -> Page {
        let url = format!("{}/oauth2/authorize?{}", self.app.base, form(params));
        page(self.browser.get(url).send().await.unwrap()).await
    }

    pub async fn post_form(&self, path: &str, cookie: &str, pairs: &[(&str, &str)]) -> Page {
        let response = self
            .browser
            .post(format!("{}{path}", self.app.base))
            .header("cookie", cookie)
            .header("origin", self.app.public_url.as_str())
            .header("content-type", "application/x-www-form-urlencoded")
            .body(form(pairs))
            .send()
            .await
            .unwrap();
        page(response).await
    }

    pub async fn consent_page(&self, cookie: &str) -> Page {
        let response = self
            .browser
            .get(format!("{}/oauth2/authorize/consent", self.app.base))
            .header("cookie", cookie)
            .send()
            .await;
        page(response.unwrap()).await
    }

    pub async fn create_consent(&self, path: &str, body: &Value) -> String {
        self.app.create_consent(&self.tpp.http, &self.token, path, body).await
    }

    pub async fn account_access_consent(&self) -> String {
        self.create_consent(ACCOUNT_ACCESS_CONSENTS, &account_access_consent_body(self.app.now() + 86_400 * 90)).await
    }

    /// The whole journey up to the redirect: authorize, sign in as `username` (with `otp`),
    /// then decide with `decision` and the `accounts` chosen.
    pub async fn authorize_and_decide(
        &self,
        claims: &Value,
        username: &str,
        otp: Option<&str>,
        decision: &str,
        accounts: &[&str],
    ) -> Page {
        let login = self.authorize(claims).await;
        assert_eq!(login.status, 200, "the login page: {}", login.body);
        let cookie = login.session_cookie();
        let csrf = login.input("csrf_token");
        let mut pairs = vec![("csrf_token", csrf.as_str()), ("username", username), ("password", PASSWORD)];
        if let Some(otp) = otp {
            pairs.push(("otp", otp));
        }
        pairs.push(("decision", "sign_in"));
        let signed_in = self.post_form("/oauth2/authorize/login", &cookie, &pairs).await;
        if signed_in.status != 303 || signed_in.location() != "/oauth2/authorize/consent" {
            return signed_in;
        }
        let consent = self.consent_page(&cookie).await;
        assert_eq!(consent.status, 200, "the consent page: {}", consent.body);
        let csrf = consent.input("csrf_token");
        let mut pairs = vec![("csrf_token", csrf.as_str()), ("decision", decision)];
        for account in accounts {
            pairs.push(("account", account));
        }
        self.post_form("/oauth2/authorize/consent", &cookie, &pairs).await
    }

    /// Exchanges a code as the TPP, with `extra` parameters (redirect_uri, code_verifier...).
    pub async fn exchange(&self, code: &str, extra: &[(&str, &str)]) -> Reply {
        let assertion = self.app.assertion(&self.tpp.client_id, json!({}));
        let mut pairs = vec![
            ("grant_type", "authorization_code"),
            ("code", code),
            ("client_assertion_type", "urn:ietf:params:oauth:client-assertion-type:jwt-bearer"),
            ("client_assertion", assertion.as_str()),
        ];
        pairs.extend_from_slice(extra);
        self.app.form_post(&self.tpp.http, TOKEN, form(&pairs), &[]).await
    }

    pub async fn refresh(&self, refresh_token: &str) -> Reply {
        let assertion = self.app.assertion(&self.tpp.client_id, json!({}));
        let pairs = [
            ("grant_type", "refresh_token"),
            ("refresh_token", refresh_token),
            ("client_assertion_type", "urn:ietf:params:oauth:client-assertion-type:jwt-bearer"),
            ("client_assertion", assertion.as_str()),
        ];
        self.app.form_post(&self.tpp.http, TOKEN, form(&pairs), &[]).await
    }

    pub async fn consent_status(&self, path: &str, consent_id: &str) -> Value {
        let response = self
            .tpp
            .http
            .get(format!("{}{path}/{consent_id}", self.app.base))
            .bearer_auth(&self.token)
            .send()
            .await
            .unwrap();
        let body: Value = response.json().await.unwrap();
        body["Data"].clone()
    }

    /// The claims of an ID token, its signature checked with the published key of its kid.
    pub async fn id_token_claims(&self, id_token: &str) -> Value {
        let jwks: jsonwebtoken::jwk::JwkSet = serde_json::from_value(self.app.get("/oauth2/jwks").await.body).unwrap();
        let header = jsonwebtoken::decode_header(id_token).unwrap();
        let jwk = jwks.find(header.kid.as_deref().expect("a kid")).expect("the kid is published");
        let mut validation = jsonwebtoken::Validation::new(header.alg);
        validation.set_audience(&[self.tpp.client_id.as_str()]);
        validation.set_issuer(&[self.app.public_url.as_str()]);
        let key = jsonwebtoken::DecodingKey::from_jwk(jwk).unwrap();
        jsonwebtoken::decode::<Value>(id_token, &key, &validation).expect("the ID token verifies").claims
    }
}

/// A consent the customer approved, and the TPP's tokens for it.
pub struct Granted {
    pub consent_id: String,
    pub access_token: String,
    pub refresh_token: String,
}

/// Creates a consent at `path`, has the customer approve it with `accounts`, and exchanges
/// the code.
impl Journey {
    pub async fn granted(&self, path: &str, body: &Value, scope: &str, accounts: &[&str]) -> Granted {
        let consent_id = self.create_consent(path, body).await;
        let claims = self.request_claims(&consent_id, scope, json!({}));
        let redirected = self.authorize_and_decide(&claims, "ann", None, "approve", accounts).await;
        assert_eq!(redirected.status, 303, "{}", redirected.body);
        let tokens = self.exchange(&redirected.fragment()["code"], &[("redirect_uri", REDIRECT)]).await;
        assert_eq!(tokens.status, 200, "{}", tokens.body);
        Granted {
            consent_id,
            access_token: tokens.body["access_token"].as_str().unwrap().to_owned(),
            refresh_token: tokens.body["refresh_token"].as_str().unwrap().to_owned(),
        }
    }
}

/// The left half of SHA-256, base64url: `c_hash`, `s_hash`, `at_hash` of a PS256/ES256 token.
pub fn half_sha256(value: &str) -> String {
    b64url_encode(&keyfort_core::secret::sha256(value.as_bytes())[..16])
}

#[tokio::test]
async fn a_customer_authorizes_and_the_tpp_gets_consent_bound_tokens() {
    let j = journey().await;
    let consent_id = j.account_access_consent().await;
    let claims = j.request_claims(&consent_id, "openid accounts", json!({}));

    let login = j.authorize(&claims).await;
    assert_eq!(login.status, 200, "{}", login.body);
    assert!(login.body.contains("name=\"username\"") && login.body.contains("name=\"password\""));
    assert!(login.body.contains("name=\"otp\""), "customers with one-time codes enter them here");
    let csp = login.headers["content-security-policy"].to_str().unwrap();
    assert!(csp.contains("default-src 'none'") && csp.contains("frame-ancestors 'none'") && !csp.contains("script"));
    assert!(csp.contains("form-action 'self' https://www.google.com"), "{csp}");
    assert_eq!(login.headers["referrer-policy"], "no-referrer");
    assert_eq!(login.headers["cache-control"], "no-store");
    assert!(login.session_cookie().starts_with("__Host-"));

    let redirected = j.authorize_and_decide(&claims, "ann", None, "approve", &[CURRENT.0, SAVINGS.0]).await;
    assert_eq!(redirected.status, 303, "{}", redirected.body);
    assert!(redirected.location().starts_with(&format!("{REDIRECT}#")), "{}", redirected.location());
    let fragment = redirected.fragment();
    let code = fragment["code"].clone();
    assert_eq!(fragment["state"], "state-1");

    // The front-channel ID token signs the code and the state.
    let id_token = j.id_token_claims(&fragment["id_token"]).await;
    assert_eq!(id_token["nonce"], "nonce-1");
    assert_eq!(id_token["openbanking_intent_id"], consent_id);
    assert_eq!(id_token["c_hash"], half_sha256(&code));
    assert_eq!(id_token["s_hash"], half_sha256("state-1"));
    assert_eq!(id_token["acr"], "urn:openbanking:psd2:ca", "one factor: a password");
    assert!(id_token["auth_time"].as_i64().unwrap() <= j.app.now());
    let subject = id_token["sub"].as_str().unwrap().to_owned();

    // The consent is Authorised with the chosen accounts.
    let consent = j.consent_status(ACCOUNT_ACCESS_CONSENTS, &consent_id).await;
    assert_eq!(consent["Status"], "Authorised");

    // The TPP exchanges the code over mutual TLS.
    let tokens = j.exchange(&code, &[("redirect_uri", REDIRECT)]).await;
    assert_eq!(tokens.status, 200, "{}", tokens.body);
    let access_token = tokens.body["access_token"].as_str().unwrap();
    let access = j.app.verify_independently(access_token).await;
    assert_eq!(access["openbanking_intent_id"], consent_id);
    assert_eq!(access["consent_id"], consent_id);
    assert_eq!(access["sub"], subject, "the same subject as the ID token");
    assert_eq!(access["client_id"], j.tpp.client_id);
    assert_eq!(
        access["cnf"]["x5t#S256"],
        b64url_encode(keyfort_core::secret::sha256(j.tpp.cert.der())),
        "bound to the TPP's certificate"
    );
    let back_channel = j.id_token_claims(tokens.body["id_token"].as_str().unwrap()).await;
    assert_eq!(back_channel["at_hash"], half_sha256(access_token));
    assert_eq!(
        (back_channel["nonce"].as_str(), back_channel["sub"].as_str()),
        (Some("nonce-1"), Some(subject.as_str()))
    );
    assert!(back_channel.get("c_hash").is_none());
    assert!(tokens.body["scope"].as_str().unwrap().contains("accounts"));

    // A refresh token, stored only as a hash, gives new access tokens.
    let refresh_token = tokens.body["refresh_token"].as_str().expect("a refresh token");
    let db = std::fs::read(j.app.database_path()).unwrap();
    let wal = std::fs::read(j.app.database_path().with_extension("db-wal")).unwrap_or_default();
    for bytes in [&db, &wal] {
        let text = String::from_utf8_lossy(bytes);
        assert!(!text.contains(refresh_token) && !text.contains(&code), "codes and refresh tokens are stored hashed");
    }
    let refreshed = j.refresh(refresh_token).await;
    assert_eq!(refreshed.status, 200, "{}", refreshed.body);
    assert!(refreshed.body.get("refresh_token").is_none(), "no rotation by default");
    let again = j.app.verify_independently(refreshed.body["access_token"].as_str().unwrap()).await;
    assert_eq!(again["openbanking_intent_id"], consent_id);
    let introspected = j.app.introspect_as(&j.tpp, refreshed.body["access_token"].as_str().unwrap()).await;
    assert_eq!(introspected.body["active"], true, "{}", introspected.body);
}

#[tokio::test]
async fn payment_and_funds_confirmation_consents_are_authorised_with_one_account() {
    let j = journey().await;
    // A payment without a named debtor account: the customer picks one (radio buttons).
    let payment = j.create_consent(DOMESTIC_PAYMENT_CONSENTS, &payment_consent_body("INV-1")).await;
    let claims = j.request_claims(&payment, "openid payments", json!({}));
    let login = j.authorize(&claims).await;
    let cookie = login.session_cookie();
    let csrf = login.input("csrf_token");
    let signed_in = j
        .post_form(
            "/oauth2/authorize/login",
            &cookie,
            &[("csrf_token", &csrf), ("username", "ann"), ("password", PASSWORD), ("decision", "sign_in")],
        )
        .await;
    assert_eq!(signed_in.status, 303, "{}", signed_in.body);
    let page = j.consent_page(&cookie).await;
    assert!(page.body.contains("165.88 GBP") && page.body.contains("ACME Inc"), "{}", page.body);
    assert!(page.body.contains("Sort code 08-08-00, account 21325698"), "the payee's account in words: {}", page.body);
    assert_eq!(page.body.matches("type=\"radio\"").count(), 2, "{}", page.body);
    // Two accounts for one payment are refused and the page comes back.
    let csrf = page.input("csrf_token");
    let two = j
        .post_form(
            "/oauth2/authorize/consent",
            &cookie,
            &[("csrf_token", &csrf), ("decision", "approve"), ("account", CURRENT.0), ("account", SAVINGS.0)],
        )
        .await;
    assert_eq!(two.status, 400, "{}", two.body);
    assert!(two.body.contains("Choose the one account to pay from"), "{}", two.body);
    let done = j
        .post_form(
            "/oauth2/authorize/consent",
            &cookie,
            &[("csrf_token", &csrf), ("decision", "approve"), ("account", SAVINGS.0)],
        )
        .await;
    assert_eq!(done.status, 303, "{}", done.body);
    assert!(done.fragment().contains_key("code"));
    assert_eq!(j.consent_status(DOMESTIC_PAYMENT_CONSENTS, &payment).await["Status"], "Authorised");

    // A funds confirmation names its debtor account: no choice, and it must be the customer's.
    let funds = j.create_consent(FUNDS_CONFIRMATION_CONSENTS, &funds_confirmation_consent_body()).await;
    let claims = j.request_claims(&funds, "openid fundsconfirmations", json!({}));
    let done = j.authorize_and_decide(&claims, "ann", None, "approve", &[]).await;
    assert_eq!(done.status, 303, "{}", done.body);
    assert!(done.fragment().contains_key("code"), "{}", done.location());
    assert_eq!(j.consent_status(FUNDS_CONFIRMATION_CONSENTS, &funds).await["Status"], "Authorised");

    // Someone else's debtor account cannot be authorised by this customer.
    add_bank_customer(&j.app, "bob", false, &[("acc-bob", "60304512345678")]).await;
    let funds = j.create_consent(FUNDS_CONFIRMATION_CONSENTS, &funds_confirmation_consent_body()).await;
    let claims = j.request_claims(&funds, "openid fundsconfirmations", json!({}));
    let login = j.authorize(&claims).await;
    let cookie = login.session_cookie();
    let csrf = login.input("csrf_token");
    j.post_form(
        "/oauth2/authorize/login",
        &cookie,
        &[("csrf_token", &csrf), ("username", "bob"), ("password", PASSWORD), ("decision", "sign_in")],
    )
    .await;
    j.consent_page(&cookie).await.assert_redirected_with_error("access_denied", "not this customer's");
}

#[tokio::test]
async fn a_reused_code_is_refused_and_revokes_what_it_issued() {
    let j = journey().await;
    let consent_id = j.account_access_consent().await;
    let claims = j.request_claims(&consent_id, "openid accounts", json!({}));
    let redirected = j.authorize_and_decide(&claims, "ann", None, "approve", &[CURRENT.0]).await;
    let code = redirected.fragment()["code"].clone();
    let first = j.exchange(&code, &[("redirect_uri", REDIRECT)]).await;
    assert_eq!(first.status, 200, "{}", first.body);
    let access_token = first.body["access_token"].as_str().unwrap();
    assert_eq!(j.app.introspect_as(&j.tpp, access_token).await.body["active"], true);

    j.exchange(&code, &[("redirect_uri", REDIRECT)]).await.assert_error(400, "invalid_grant", "already used");
    assert_eq!(j.app.introspect_as(&j.tpp, access_token).await.body["active"], false, "revoked with its code");
    j.refresh(first.body["refresh_token"].as_str().unwrap()).await.assert_error(400, "invalid_grant", "revoked");
}

#[tokio::test]
async fn a_code_is_bound_to_its_client_redirect_uri_and_verifier_and_expires() {
    let j = journey().await;
    let verifier = "dBjftJeZ4CVP-mB92K27uhbUJU1p1r_wW1gFWFOEjXk";
    let challenge = "E9Melhoa2OwvFrEMTJguCHaoeK1t8URWbuGJSstw-cM";
    let mut codes = Vec::new();
    for _ in 0..5 {
        let consent_id = j.account_access_consent().await;
        let claims = j.request_claims(
            &consent_id,
            "openid accounts",
            json!({"code_challenge": challenge, "code_challenge_method": "S256"}),
        );
        let redirected = j.authorize_and_decide(&claims, "ann", None, "approve", &[CURRENT.0]).await;
        codes.push(redirected.fragment()["code"].clone());
    }
    j.exchange(&codes[0], &[("code_verifier", verifier)]).await.assert_error(400, "invalid_grant", "redirect_uri");
    j.exchange(&codes[1], &[("redirect_uri", REDIRECT)]).await.assert_error(
        400,
        "invalid_grant",
        "code_verifier is required",
    );
    j.exchange(&codes[2], &[("redirect_uri", REDIRECT), ("code_verifier", &verifier.replace('d', "e"))])
        .await
        .assert_error(400, "invalid_grant", "does not match");
    // Another client of the bank cannot redeem it.
    let other = j.app.onboard_tls_client_auth().await;
    let stolen = j
        .app
        .form_post(
            &other.http,
            TOKEN,
            form(&[
                ("grant_type", "authorization_code"),
                ("code", &codes[3]),
                ("redirect_uri", REDIRECT),
                ("code_verifier", verifier),
                ("client_id", &other.client_id),
            ]),
            &[],
        )
        .await;
    stolen.assert_error(400, "invalid_grant", "another client");
    // Sixty seconds, at most.
    j.app.clock.advance(61);
    j.exchange(&codes[4], &[("redirect_uri", REDIRECT), ("code_verifier", verifier)]).await.assert_error(
        400,
        "invalid_grant",
        "expired",
    );
}

#[tokio::test]
async fn request_object_problems_before_the_client_is_trusted_are_shown_not_redirected() {
    let j = journey().await;
    let consent_id = j.account_access_consent().await;
    let claims = j.request_claims(&consent_id, "openid accounts", json!({}));
    let client_id = j.tpp.client_id.clone();
    let outer = |request: &str| {
        vec![
            ("client_id".to_owned(), client_id.clone()),
            ("response_type".to_owned(), "code id_token".to_owned()),
            ("scope".to_owned(), "openid accounts".to_owned()),
            ("request".to_owned(), request.to_owned()),
        ]
    };
    let rs256 = TestKey::generate(keyfort_core::jose::SigningAlg::RS256, "soft-rs256");
    let stranger = TestKey::generate(keyfort_core::jose::SigningAlg::PS256, "soft-ps256");
    let good = j.app.keys.software_ps.sign(&claims);
    let mut tampered: Vec<&str> = good.split('.').collect();
    let other_payload = b64url_encode(patch(claims.clone(), json!({"state": "other"})).to_string());
    tampered[1] = &other_payload;
    let cases: Vec<(&str, String, &str, &str)> = vec![
        ("bad signature", tampered.join("."), "invalid_request_object", "signature"),
        ("a key that is not the client's", stranger.sign(&claims), "invalid_request_object", "signature"),
        (
            "RS256",
            rs256.sign_with(&claims, Some("soft-ps256"), Some(jsonwebtoken::Algorithm::RS256)),
            "invalid_request_object",
            "RS256",
        ),
        (
            "alg none",
            forge(&json!({"alg": "none", "kid": "soft-ps256"}), &claims, b""),
            "invalid_request_object",
            "none",
        ),
        (
            "unregistered redirect_uri",
            j.app.keys.software_ps.sign(&patch(claims.clone(), json!({"redirect_uri": "https://evil.example/cb"}))),
            "invalid_request_object",
            "not one of the client's registered redirect URIs",
        ),
        (
            "no redirect_uri",
            j.app.keys.software_ps.sign(&patch(claims.clone(), json!({"redirect_uri": null}))),
            "invalid_request_object",
            "no redirect_uri",
        ),
        ("not a JWT", "garbage".to_owned(), "invalid_request_object", "compact JWS"),
    ];
    for (what, request, code, needle) in cases {
        let params = outer(&request);
        let pairs: Vec<(&str, &str)> = params.iter().map(|(k, v)| (k.as_str(), v.as_str())).collect();
        let page = j.authorize_raw(&pairs).await;
        eprintln!("case: {what}");
        page.assert_error_page(400, code, needle);
    }
    j.authorize_raw(&[("client_id", &client_id), ("request_uri", "urn:example:1")]).await.assert_error_page(
        400,
        "request_uri_not_supported",
        "request_uri",
    );
    j.authorize_raw(&[("client_id", &client_id), ("response_type", "code id_token")]).await.assert_error_page(
        400,
        "invalid_request",
        "request parameter is required",
    );
    j.authorize_raw(&[("client_id", "nobody"), ("request", &good)]).await.assert_error_page(
        400,
        "invalid_request",
        "not registered",
    );
    j.authorize_raw(&[("client_id", &client_id), ("client_id", &client_id), ("request", &good)])
        .await
        .assert_error_page(400, "invalid_request", "repeated");
}

#[tokio::test]
async fn request_object_rule_failures_go_back_to_the_redirect_uri_with_state() {
    let j = journey().await;
    let consent_id = j.account_access_consent().await;
    let now = j.app.now();
    let cases = [
        (json!({"exp": null}), "invalid_request_object", "no exp"),
        (json!({"nbf": null}), "invalid_request_object", "no nbf"),
        (json!({"exp": now + 3700}), "invalid_request_object", "at most 3600"),
        (json!({"nbf": now - 3700, "exp": now + 100}), "invalid_request_object", "in the past"),
        (json!({"aud": "https://other.example"}), "invalid_request_object", "aud"),
        (json!({"nonce": null}), "invalid_request_object", "nonce"),
        (json!({"iss": "someone-else"}), "invalid_request_object", "iss"),
        (json!({"response_type": "code"}), "unsupported_response_type", "not supported"),
        (json!({"claims": {"id_token": {}}}), "invalid_request_object", "openbanking_intent_id"),
        (
            json!({"claims": {"id_token": {"openbanking_intent_id": {"value": "aac-does-not-exist", "essential": true}}}}),
            "access_denied",
            "aac-does-not-exist",
        ),
        (
            json!({"code_challenge": "E9Melhoa2OwvFrEMTJguCHaoeK1t8URWbuGJSstw-cM", "code_challenge_method": "plain"}),
            "invalid_request_object",
            "S256",
        ),
        (
            json!({"acr_values": null, "claims": {"id_token": {"openbanking_intent_id": {"value": consent_id, "essential": true}, "acr": {"essential": true, "values": ["urn:example:loa9"]}}}}),
            "access_denied",
            "loa9",
        ),
    ];
    for (patch_claims, code, needle) in cases {
        let claims = j.request_claims(&consent_id, "openid accounts", patch_claims.clone());
        eprintln!("case: {patch_claims}");
        j.authorize(&claims).await.assert_redirected_with_error(code, needle);
    }
    // A scope the client did not register.
    let claims = j.request_claims(&consent_id, "openid accounts email", json!({}));
    j.authorize(&claims).await.assert_redirected_with_error("invalid_scope", "email");
    // The outer parameters must agree with the request object.
    let request = j.app.keys.software_ps.sign(&j.request_claims(&consent_id, "openid accounts", json!({})));
    j.authorize_raw(&[
        ("client_id", &j.tpp.client_id),
        ("response_type", "code"),
        ("scope", "openid accounts"),
        ("request", &request),
    ])
    .await
    .assert_redirected_with_error("invalid_request", "response_type");
    // A consent of the wrong kind for the scope.
    let claims = j.request_claims(&consent_id, "openid payments", json!({}));
    j.authorize(&claims).await.assert_redirected_with_error("invalid_scope", "scope accounts");
}

#[tokio::test]
async fn another_clients_or_a_decided_consent_cannot_be_authorised() {
    let j = journey().await;
    let consent_id = j.account_access_consent().await;
    // A second software of the same bank (tls_client_auth, with its own SSA) may not use it.
    let other = j.app.onboard_tls_client_auth().await;
    let now = j.app.now();
    let claims = json!({
        "iss": other.client_id, "aud": ISSUER, "nbf": now, "exp": now + 300, "response_type": "code id_token",
        "scope": "openid accounts", "redirect_uri": REDIRECT, "state": "state-1", "nonce": "n",
        "claims": {"id_token": {"openbanking_intent_id": {"value": consent_id, "essential": true}}}
    });
    let request = j.app.keys.software_ps.sign(&claims);
    j.authorize_raw(&[
        ("client_id", &other.client_id),
        ("response_type", "code id_token"),
        ("scope", "openid accounts"),
        ("request", &request),
    ])
    .await
    .assert_redirected_with_error("access_denied", "");

    // Once decided, a consent cannot be authorised again.
    let claims = j.request_claims(&consent_id, "openid accounts", json!({}));
    let redirected = j.authorize_and_decide(&claims, "ann", None, "deny", &[]).await;
    redirected.assert_redirected_with_error("access_denied", "did not give their consent");
    assert_eq!(j.consent_status(ACCOUNT_ACCESS_CONSENTS, &consent_id).await["Status"], "Rejected");
    j.authorize(&claims).await.assert_redirected_with_error("access_denied", "Rejected");
}

#[tokio::test]
async fn cancelling_at_sign_in_rejects_the_consent() {
    let j = journey().await;
    let consent_id = j.account_access_consent().await;
    let login = j.authorize(&j.request_claims(&consent_id, "openid accounts", json!({}))).await;
    let cookie = login.session_cookie();
    let csrf = login.input("csrf_token");
    let cancelled =
        j.post_form("/oauth2/authorize/login", &cookie, &[("csrf_token", &csrf), ("decision", "deny")]).await;
    cancelled.assert_redirected_with_error("access_denied", "did not give their consent");
    assert_eq!(j.consent_status(ACCOUNT_ACCESS_CONSENTS, &consent_id).await["Status"], "Rejected");
    // The session is spent.
    j.consent_page(&cookie).await.assert_error_page(400, "login_required", "expired or was already completed");
}

#[tokio::test]
async fn wrong_passwords_come_back_with_a_message_then_lock_the_customer() {
    let j = journey_with(Options::mutual_tls().section("[customers]\nmax_failed_logins = 3\nlockout_seconds = 120\n"))
        .await;
    let consent_id = j.account_access_consent().await;
    let login = j.authorize(&j.request_claims(&consent_id, "openid accounts", json!({}))).await;
    let cookie = login.session_cookie();
    let csrf = login.input("csrf_token");
    for _ in 0..3 {
        let again = j
            .post_form(
                "/oauth2/authorize/login",
                &cookie,
                &[("csrf_token", &csrf), ("username", "ann"), ("password", "wrong password"), ("decision", "sign_in")],
            )
            .await;
        assert!(again.status == 200 || again.status == 429, "{}", again.body);
        assert!(again.body.contains("role=\"alert\""), "a message: {}", again.body);
        assert_eq!(again.input("username"), "ann", "the name is kept");
    }
    let locked = j
        .post_form(
            "/oauth2/authorize/login",
            &cookie,
            &[("csrf_token", &csrf), ("username", "ann"), ("password", PASSWORD), ("decision", "sign_in")],
        )
        .await;
    assert_eq!(locked.status, 429, "locked even with the right password: {}", locked.body);
    assert!(locked.headers.get("retry-after").is_some());
    assert!(locked.body.contains("blocked"), "{}", locked.body);
}

#[tokio::test]
async fn forms_need_their_session_csrf_token_and_origin() {
    let j = journey().await;
    let consent_id = j.account_access_consent().await;
    let login = j.authorize(&j.request_claims(&consent_id, "openid accounts", json!({}))).await;
    let cookie = login.session_cookie();
    let csrf = login.input("csrf_token");
    let sign_in = [("username", "ann"), ("password", PASSWORD), ("decision", "sign_in")];
    let mut forged = vec![("csrf_token", "forged")];
    forged.extend_from_slice(&sign_in);
    j.post_form("/oauth2/authorize/login", &cookie, &forged).await.assert_error_page(
        403,
        "access_denied",
        "not sent from",
    );
    let mut good = vec![("csrf_token", csrf.as_str())];
    good.extend_from_slice(&sign_in);
    // Another site's form.
    let cross_site = j
        .browser
        .post(format!("{}/oauth2/authorize/login", j.app.base))
        .header("cookie", &cookie)
        .header("origin", "https://evil.example")
        .header("content-type", "application/x-www-form-urlencoded")
        .body(form(&good))
        .send()
        .await
        .unwrap();
    page(cross_site).await.assert_error_page(403, "access_denied", "not sent from the bank's own page");
    // No session cookie.
    j.post_form("/oauth2/authorize/login", "other=1", &good).await.assert_error_page(400, "login_required", "expired");
    // The consent page needs a signed-in session.
    j.consent_page(&cookie).await.assert_error_page(400, "login_required", "sign in first");
    // The right form works.
    assert_eq!(j.post_form("/oauth2/authorize/login", &cookie, &good).await.status, 303);
}

#[tokio::test]
async fn strong_authentication_takes_a_one_time_code() {
    let j = journey().await;
    let secret = add_bank_customer(&j.app, "tess", true, &[("acc-tess", "60304511111111")]).await.unwrap();
    let totp = keyfort_core::totp::TotpSecret::from_base32(&secret).unwrap();
    let sca_only = json!({"claims": {"id_token": {
        "openbanking_intent_id": {"value": "@", "essential": true},
        "acr": {"essential": true, "values": ["urn:openbanking:psd2:sca"]}
    }}});
    let with_intent = |consent_id: &str| {
        let mut claims = sca_only.clone();
        claims["claims"]["id_token"]["openbanking_intent_id"]["value"] = json!(consent_id);
        claims
    };
    // A customer with a one-time code is strongly authenticated.
    let consent_id = j.account_access_consent().await;
    let claims = j.request_claims(&consent_id, "openid accounts", with_intent(&consent_id));
    let without_code = j.authorize_and_decide(&claims, "tess", None, "approve", &["acc-tess"]).await;
    assert_eq!(without_code.status, 200, "the code is asked for: {}", without_code.body);
    assert!(without_code.body.contains("one-time code"), "{}", without_code.body);
    let code = totp.code(keyfort_core::totp::TotpSecret::step_at(j.app.now()));
    let done = j.authorize_and_decide(&claims, "tess", Some(&code), "approve", &["acc-tess"]).await;
    assert_eq!(done.status, 303, "{}", done.body);
    let id_token = j.id_token_claims(&done.fragment()["id_token"]).await;
    assert_eq!(id_token["acr"], "urn:openbanking:psd2:sca");
    // A customer with only a password cannot meet an essential request for SCA.
    let consent_id = j.account_access_consent().await;
    let claims = j.request_claims(&consent_id, "openid accounts", with_intent(&consent_id));
    j.authorize_and_decide(&claims, "ann", None, "approve", &[CURRENT.0])
        .await
        .assert_redirected_with_error("access_denied", "urn:openbanking:psd2:sca");
}

#[tokio::test]
async fn revoking_the_consent_ends_its_tokens() {
    let j = journey().await;
    let consent_id = j.account_access_consent().await;
    let claims = j.request_claims(&consent_id, "openid accounts", json!({}));
    let redirected = j.authorize_and_decide(&claims, "ann", None, "approve", &[CURRENT.0]).await;
    let tokens = j.exchange(&redirected.fragment()["code"], &[("redirect_uri", REDIRECT)]).await;
    let access_token = tokens.body["access_token"].as_str().unwrap().to_owned();
    let refresh_token = tokens.body["refresh_token"].as_str().unwrap().to_owned();
    // The TPP deletes (revokes) the consent.
    let deleted = j
        .tpp
        .http
        .delete(format!("{}{ACCOUNT_ACCESS_CONSENTS}/{consent_id}", j.app.base))
        .bearer_auth(&j.token)
        .send()
        .await
        .unwrap();
    assert_eq!(deleted.status(), 204);
    assert_eq!(j.app.introspect_as(&j.tpp, &access_token).await.body["active"], false);
    j.refresh(&refresh_token).await.assert_error(400, "invalid_grant", "Revoked");
}

#[tokio::test]
async fn consent_bound_tokens_cannot_create_consents() {
    let j = journey().await;
    let consent_id = j.account_access_consent().await;
    let claims = j.request_claims(&consent_id, "openid accounts", json!({}));
    let redirected = j.authorize_and_decide(&claims, "ann", None, "approve", &[CURRENT.0]).await;
    let tokens = j.exchange(&redirected.fragment()["code"], &[("redirect_uri", REDIRECT)]).await;
    let access_token = tokens.body["access_token"].as_str().unwrap();
    let response = j
        .tpp
        .http
        .post(format!("{}{ACCOUNT_ACCESS_CONSENTS}", j.app.base))
        .bearer_auth(access_token)
        .header("content-type", "application/json")
        .body(account_access_consent_body(j.app.now() + 86_400).to_string())
        .send()
        .await
        .unwrap();
    assert_eq!(response.status(), 401);
}
