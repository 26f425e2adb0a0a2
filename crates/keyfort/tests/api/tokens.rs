//! The OBIE loop over mutual TLS: register, get tokens (private_key_jwt with and without
//! kid, tls_client_auth), read, update and delete the registration, and then be refused.
//! Access tokens are checked against /oauth2/jwks with jsonwebtoken, a JWT library Keyfort
//! does not use, including `cnf.x5t#S256` against the client certificate.

use serde_json::{json, Value};

use crate::helpers::*;
use crate::pki::{ClientCert, Subject};

pub(crate) const TOKEN: &str = "/oauth2/token";
const TLS_SOFTWARE: &str = "TlsClientSoftware";

pub(crate) fn form(pairs: &[(&str, &str)]) -> String {
    let mut serializer = url::form_urlencoded::Serializer::new(String::new());
    for (k, v) in pairs {
        serializer.append_pair(k, v);
    }
    serializer.finish()
}

/// An onboarded TPP: its client, registration token, transport certificate, and an HTTP
/// client presenting that certificate.
pub(crate) struct Tpp {
    pub(crate) client_id: String,
    pub(crate) registration_token: String,
    pub(crate) cert: ClientCert,
    pub(crate) http: reqwest::Client,
}

impl TestApp {
    pub(crate) async fn form_post(
        &self,
        http: &reqwest::Client,
        path: &str,
        body: String,
        headers: &[(&str, String)],
    ) -> Reply {
        self.post_with(http, path, Some("application/x-www-form-urlencoded"), body, headers).await
    }

    pub(crate) fn assertion(&self, client_id: &str, patch_claims: Value) -> String {
        let claims = patch(
            json!({
                "iss": client_id, "sub": client_id, "aud": format!("{}/oauth2/token", self.public_url),
                "iat": self.now(), "exp": self.now() + 60, "jti": keyfort_core::secret::random_b64url(12),
            }),
            patch_claims,
        );
        self.keys.software_ps.sign(&claims)
    }

    pub(crate) async fn token_with_assertion(&self, tpp: &Tpp, assertion: String, scope: Option<&str>) -> Reply {
        let mut pairs = vec![
            ("grant_type", "client_credentials"),
            ("client_assertion_type", "urn:ietf:params:oauth:client-assertion-type:jwt-bearer"),
            ("client_assertion", assertion.as_str()),
        ];
        if let Some(scope) = scope {
            pairs.push(("scope", scope));
        }
        self.form_post(&tpp.http, TOKEN, form(&pairs), &[]).await
    }

    pub(crate) async fn manage(&self, tpp: &Tpp, method: reqwest::Method, bearer: &str, body: Option<String>) -> Reply {
        let url = format!("{}{REGISTER}/{}", self.base, tpp.client_id);
        let mut request = tpp.http.request(method, url).bearer_auth(bearer);
        if let Some(body) = body {
            request = request.header("content-type", "application/jose").body(body);
        }
        let response = request.send().await.unwrap();
        let status = response.status().as_u16();
        let headers = response.headers().clone();
        let text = response.text().await.unwrap();
        let body = serde_json::from_str(&text).unwrap_or(Value::String(text));
        assert!(status < 500, "{status} {body}");
        Reply { status, body, headers }
    }

    /// Registers the seed's software (private_key_jwt, signed request) over mutual TLS.
    pub(crate) async fn onboard_private_key_jwt(&self, scope: &str) -> Tpp {
        let cert = self.pki.issue(&Subject::legacy_ob(ORG_ID, SOFTWARE_ID));
        let http = self.client_presenting(&cert);
        let claims = patch(self.request_claims(), json!({"scope": scope}));
        let reply = self.post_with(&http, REGISTER, Some("application/jose"), self.sign_request(&claims), &[]).await;
        assert_eq!(reply.status, 201, "{}", reply.body);
        Tpp {
            client_id: reply.body["client_id"].as_str().unwrap().to_owned(),
            registration_token: reply.body["registration_access_token"].as_str().unwrap().to_owned(),
            cert,
            http,
        }
    }

    /// Registers a second software of the organisation with tls_client_auth.
    pub(crate) async fn onboard_tls_client_auth(&self) -> Tpp {
        let cert = self.pki.issue(&Subject::legacy_ob(ORG_ID, TLS_SOFTWARE).serial(77));
        let http = self.client_presenting(&cert);
        let ssa = self.sign_ssa(&patch(self.ssa_claims(), json!({"software_id": TLS_SOFTWARE})));
        let claims = patch(
            self.request_claims(),
            json!({
                "iss": TLS_SOFTWARE, "software_id": TLS_SOFTWARE, "software_statement": ssa,
                "token_endpoint_auth_method": "tls_client_auth", "token_endpoint_auth_signing_alg": null,
                "tls_client_auth_subject_dn": cert.subject_dn(),
            }),
        );
        let reply = self.post_with(&http, REGISTER, Some("application/json"), claims.to_string(), &[]).await;
        assert_eq!(reply.status, 201, "{}", reply.body);
        Tpp {
            client_id: reply.body["client_id"].as_str().unwrap().to_owned(),
            registration_token: reply.body["registration_access_token"].as_str().unwrap().to_owned(),
            cert,
            http,
        }
    }

    /// Introspects `token` as the private_key_jwt client `tpp`.
    pub(crate) async fn introspect_as(&self, tpp: &Tpp, token: &str) -> Reply {
        let body = form(&[
            ("token", token),
            ("client_assertion_type", "urn:ietf:params:oauth:client-assertion-type:jwt-bearer"),
            ("client_assertion", &self.assertion(&tpp.client_id, json!({}))),
        ]);
        self.form_post(&tpp.http, "/oauth2/introspect", body, &[]).await
    }

    /// A client-credentials token for the tls_client_auth client `tpp`.
    pub(crate) async fn tls_token(&self, tpp: &Tpp) -> String {
        let reply = self
            .form_post(
                &tpp.http,
                TOKEN,
                form(&[("grant_type", "client_credentials"), ("client_id", &tpp.client_id)]),
                &[],
            )
            .await;
        assert_eq!(reply.status, 200, "{}", reply.body);
        reply.body["access_token"].as_str().unwrap().to_owned()
    }

    /// Verifies an access token with jsonwebtoken against the published JWKS.
    pub(crate) async fn verify_independently(&self, token: &str) -> Value {
        let jwks: jsonwebtoken::jwk::JwkSet = serde_json::from_value(self.get("/oauth2/jwks").await.body).unwrap();
        let header = jsonwebtoken::decode_header(token).unwrap();
        let jwk = jwks.find(header.kid.as_deref().expect("tokens carry a kid")).expect("the kid is published");
        let mut validation = jsonwebtoken::Validation::new(header.alg);
        validation.set_audience(&[self.public_url.as_str()]);
        validation.set_issuer(&[self.public_url.as_str()]);
        jsonwebtoken::decode::<Value>(token, &jsonwebtoken::DecodingKey::from_jwk(jwk).unwrap(), &validation)
            .expect("the access token verifies with an independent JWT library")
            .claims
    }
}

pub(crate) fn thumbprint(cert: &ClientCert) -> String {
    keyfort_core::jose::b64url_encode(keyfort_core::secret::sha256(cert.der()))
}

#[tokio::test]
async fn the_whole_obie_loop_over_mutual_tls() {
    let app = spawn_app_with(Options::mutual_tls()).await;
    let tpp = app.onboard_private_key_jwt("accounts payments").await;

    // Token with private_key_jwt, assertion with kid.
    let reply = app.token_with_assertion(&tpp, app.assertion(&tpp.client_id, json!({})), Some("accounts")).await;
    assert_eq!(reply.status, 200, "{}", reply.body);
    assert_eq!(reply.body["token_type"], "Bearer");
    assert_eq!(reply.body["expires_in"], 3600);
    assert_eq!(reply.body["scope"], "accounts");
    assert_eq!(reply.headers["cache-control"], "no-store");
    let access_token = reply.body["access_token"].as_str().unwrap().to_owned();
    let claims = app.verify_independently(&access_token).await;
    assert_eq!(claims["client_id"], tpp.client_id);
    assert_eq!(claims["sub"], tpp.client_id);
    assert_eq!(claims["scope"], "accounts");
    assert_eq!(claims["cnf"]["x5t#S256"], thumbprint(&tpp.cert));
    assert_eq!(claims["exp"].as_i64().unwrap() - claims["iat"].as_i64().unwrap(), 3600);

    // Without kid, and without scope (all registered scopes).
    let unkeyed = app.keys.software_ps.sign_with(
        &json!({"iss": tpp.client_id, "sub": tpp.client_id, "aud": "https://localhost:9446", "exp": app.now() + 60, "jti": "no-kid-1"}),
        None,
        None,
    );
    let reply = app.token_with_assertion(&tpp, unkeyed, None).await;
    assert_eq!(reply.status, 200, "{}", reply.body);
    assert_eq!(
        app.verify_independently(reply.body["access_token"].as_str().unwrap()).await["scope"],
        "accounts payments"
    );

    // tls_client_auth.
    let tls = app.onboard_tls_client_auth().await;
    let reply = app
        .form_post(&tls.http, TOKEN, form(&[("grant_type", "client_credentials"), ("client_id", &tls.client_id)]), &[])
        .await;
    assert_eq!(reply.status, 200, "{}", reply.body);
    let tls_claims = app.verify_independently(reply.body["access_token"].as_str().unwrap()).await;
    assert_eq!(tls_claims["cnf"]["x5t#S256"], thumbprint(&tls.cert));
    assert_eq!(tls_claims["client_id"], tls.client_id);

    // Introspection: the client sees its own token, and not another's.
    let own = app.introspect_as(&tpp, &access_token).await;
    assert_eq!(own.body["active"], true, "{}", own.body);
    assert_eq!(own.body["cnf"]["x5t#S256"], thumbprint(&tpp.cert));
    let tls_token = reply.body["access_token"].as_str().unwrap().to_owned();
    assert_eq!(app.introspect_as(&tpp, &tls_token).await.body["active"], false);

    // GET with the access token (bound: same certificate) and with the registration token.
    let got = app.manage(&tpp, reqwest::Method::GET, &access_token, None).await;
    assert_eq!(got.status, 200, "{}", got.body);
    assert_eq!(got.body["client_id"], tpp.client_id);
    assert!(got.body.get("registration_access_token").is_none());
    assert_eq!(app.manage(&tpp, reqwest::Method::GET, &tpp.registration_token, None).await.status, 200);

    // PUT the whole request again with a change; GET shows it.
    let update = patch(app.request_claims(), json!({"client_name": "Renamed TPP", "scope": "accounts payments"}));
    let put = app.manage(&tpp, reqwest::Method::PUT, &access_token, Some(app.sign_request(&update))).await;
    assert_eq!(put.status, 200, "{}", put.body);
    assert_eq!(put.body["client_id"], tpp.client_id);
    assert_eq!(put.body["client_name"], "Renamed TPP");
    let got = app.manage(&tpp, reqwest::Method::GET, &tpp.registration_token, None).await;
    assert_eq!(got.body["client_name"], "Renamed TPP");
    // The same PUT again is a replayed jti.
    app.manage(&tpp, reqwest::Method::PUT, &access_token, Some(app.sign_request(&update))).await.assert_error(
        400,
        "invalid_client_metadata",
        "already been used",
    );

    // DELETE, then GET, PUT, token and the registration token are refused.
    let deleted = app.manage(&tpp, reqwest::Method::DELETE, &tpp.registration_token, None).await;
    assert_eq!(deleted.status, 204, "{}", deleted.body);
    let gone = app.manage(&tpp, reqwest::Method::GET, &tpp.registration_token, None).await;
    gone.assert_error(401, "invalid_token", "not registered");
    assert!(gone.headers["www-authenticate"].to_str().unwrap().starts_with("Bearer"));
    let update = patch(app.request_claims(), json!({"client_name": "Too late"}));
    app.manage(&tpp, reqwest::Method::PUT, &access_token, Some(app.sign_request(&update))).await.assert_error(
        401,
        "invalid_token",
        "not registered",
    );
    app.token_with_assertion(&tpp, app.assertion(&tpp.client_id, json!({})), None).await.assert_error(
        401,
        "invalid_client",
        "not registered",
    );
    // Its access token is no longer active for anyone, and it was revoked on presentation.
    let store =
        keyfort::storage::SqliteStore::open(&format!("sqlite://{}", app.database_path().display())).await.unwrap();
    let jti = claims["jti"].as_str().unwrap();
    assert!(
        keyfort::storage::Store::is_token_revoked(&store, jti).await.unwrap(),
        "presented token of a deleted client is revoked"
    );

    // The audit trail has the story.
    let events = keyfort::storage::Store::audit_events(&store, Some(&tpp.client_id), 50).await.unwrap();
    let story: Vec<(String, String)> = events.iter().rev().map(|e| (e.action.clone(), e.outcome.clone())).collect();
    for step in [
        ("register", "success"),
        ("read", "success"),
        ("update", "success"),
        ("update", "invalid_client_metadata"),
        ("delete", "success"),
        ("read", "invalid_token"),
    ] {
        assert!(story.contains(&(step.0.to_owned(), step.1.to_owned())), "{step:?} missing from {story:?}");
    }
    let registered = events.iter().find(|e| e.action == "register").unwrap();
    assert_eq!(registered.cert_thumbprint.as_deref(), Some(thumbprint(&tpp.cert).as_str()));
}

#[tokio::test]
async fn token_endpoint_refusals() {
    let app = spawn_app_with(Options::mutual_tls()).await;
    let tpp = app.onboard_private_key_jwt("accounts payments").await;
    let id = tpp.client_id.clone();

    let used = app.assertion(&id, json!({}));
    assert_eq!(app.token_with_assertion(&tpp, used.clone(), None).await.status, 200);
    app.token_with_assertion(&tpp, used, None).await.assert_error(401, "invalid_client", "already used");
    app.token_with_assertion(&tpp, app.assertion(&id, json!({"aud": "https://otherbank.example/token"})), None)
        .await
        .assert_error(401, "invalid_client", "aud");
    app.token_with_assertion(&tpp, app.assertion(&id, json!({"exp": app.now() - 600, "iat": app.now() - 700})), None)
        .await
        .assert_error(401, "invalid_client", "expired");
    let es256 = app.keys.software_es.sign(&json!({"iss": id, "sub": id, "aud": "https://localhost:9446/oauth2/token", "exp": app.now() + 60, "jti": "es"}));
    app.token_with_assertion(&tpp, es256, None).await.assert_error(
        401,
        "invalid_client",
        "token_endpoint_auth_signing_alg PS256",
    );
    let unknown_kid = app.keys.software_ps.sign_with(
        &json!({"iss": id, "sub": id, "aud": "https://localhost:9446/oauth2/token", "exp": app.now() + 60, "jti": "k"}),
        Some("no-such-kid"),
        None,
    );
    app.token_with_assertion(&tpp, unknown_kid, None).await.assert_error(401, "invalid_client", "no-such-kid");
    let stranger = TestKey::generate(keyfort_core::jose::SigningAlg::PS256, "soft-ps256");
    let forged = stranger.sign(
        &json!({"iss": id, "sub": id, "aud": "https://localhost:9446/oauth2/token", "exp": app.now() + 60, "jti": "f"}),
    );
    app.token_with_assertion(&tpp, forged, None).await.assert_error(401, "invalid_client", "does not verify");
    app.token_with_assertion(&tpp, app.assertion(&id, json!({})), Some("accounts fundsconfirmations"))
        .await
        .assert_error(400, "invalid_scope", "fundsconfirmations");

    // A bound token only for a certificate of this client's organisation and software.
    let stranger_cert = app.pki.issue(&Subject::legacy_ob("0015800001OTHERORG", SOFTWARE_ID).serial(93));
    let stranger_http = app.client_presenting(&stranger_cert);
    let foreign = app
        .form_post(
            &stranger_http,
            TOKEN,
            form(&[
                ("grant_type", "client_credentials"),
                ("client_assertion_type", "urn:ietf:params:oauth:client-assertion-type:jwt-bearer"),
                ("client_assertion", &app.assertion(&id, json!({}))),
            ]),
            &[],
        )
        .await;
    foreign.assert_error(401, "invalid_client", "organisation");

    // FAPI: a client registered for bound tokens must call over mutual TLS.
    let no_cert = app
        .post(
            TOKEN,
            Some("application/x-www-form-urlencoded"),
            form(&[
                ("grant_type", "client_credentials"),
                ("client_assertion_type", "urn:ietf:params:oauth:client-assertion-type:jwt-bearer"),
                ("client_assertion", &app.assertion(&id, json!({}))),
            ]),
        )
        .await;
    no_cert.assert_error(400, "invalid_request", "mutual TLS");

    let grant = |g: &'static str| {
        form(&[
            ("grant_type", g),
            ("client_assertion_type", "urn:ietf:params:oauth:client-assertion-type:jwt-bearer"),
            ("client_assertion", &app.assertion(&id, json!({}))),
        ])
    };
    app.form_post(&tpp.http, TOKEN, grant("password"), &[]).await.assert_error(
        400,
        "unsupported_grant_type",
        "password",
    );
    app.form_post(&tpp.http, TOKEN, form(&[("grant_type", "client_credentials")]), &[]).await.assert_error(
        401,
        "invalid_client",
        "no client authentication",
    );
    app.post_with(&tpp.http, TOKEN, Some("application/json"), "{}", &[]).await.assert_error(
        400,
        "invalid_request",
        "x-www-form-urlencoded",
    );
    let basic = app
        .form_post(
            &tpp.http,
            TOKEN,
            form(&[("grant_type", "client_credentials")]),
            &[("authorization", "Basic YTpi".into())],
        )
        .await;
    basic.assert_error(401, "invalid_client", "FAPI");
    assert!(basic.headers["www-authenticate"].to_str().unwrap().starts_with("Basic"));

    // tls_client_auth with another certificate of the organisation.
    let tls = app.onboard_tls_client_auth().await;
    let other_cert = app.pki.issue(&Subject::legacy_ob(ORG_ID, "AnotherSoftware").serial(91));
    let other_http = app.client_presenting(&other_cert);
    app.form_post(
        &other_http,
        TOKEN,
        form(&[("grant_type", "client_credentials"), ("client_id", &tls.client_id)]),
        &[],
    )
    .await
    .assert_error(401, "invalid_client", "not the registered tls_client_auth_subject_dn");
    app.form_post(
        &app.client,
        TOKEN,
        form(&[("grant_type", "client_credentials"), ("client_id", &tls.client_id)]),
        &[],
    )
    .await
    .assert_error(401, "invalid_client", "mutual TLS");
}

#[tokio::test]
async fn registration_management_refusals() {
    let app = spawn_app_with(Options::mutual_tls()).await;
    let tpp = app.onboard_private_key_jwt("accounts").await;
    let tls = app.onboard_tls_client_auth().await;
    let tls_token = app
        .form_post(&tls.http, TOKEN, form(&[("grant_type", "client_credentials"), ("client_id", &tls.client_id)]), &[])
        .await
        .body["access_token"]
        .as_str()
        .unwrap()
        .to_owned();

    // A token of another client.
    app.manage(&tpp, reqwest::Method::GET, &tls_token, None).await.assert_error(401, "invalid_token", "another client");
    // No token, a garbage token, another client's registration token.
    let anonymous = tpp.http.get(format!("{}{REGISTER}/{}", app.base, tpp.client_id)).send().await.unwrap();
    assert_eq!(anonymous.status(), 401);
    assert!(anonymous.headers()["www-authenticate"].to_str().unwrap().starts_with("Bearer"));
    app.manage(&tpp, reqwest::Method::GET, "garbage", None).await.assert_error(
        401,
        "invalid_token",
        "not an access token",
    );
    app.manage(&tpp, reqwest::Method::GET, &tls.registration_token, None).await.assert_error(401, "invalid_token", "");
    // A certificate-bound token without its certificate.
    let tpp_token = app.token_with_assertion(&tpp, app.assertion(&tpp.client_id, json!({})), None).await.body
        ["access_token"]
        .as_str()
        .unwrap()
        .to_owned();
    let reply = app.post_with(&app.client, &format!("{REGISTER}/{}", tpp.client_id), None, "", &[]).await;
    assert_eq!(reply.status, 405);
    let unbound = app
        .client
        .get(format!("{}{REGISTER}/{}", app.base, tpp.client_id))
        .bearer_auth(&tpp_token)
        .send()
        .await
        .unwrap();
    assert_eq!(unbound.status(), 401);
    // An unknown client_id: the presented (valid) token is revoked, per the OBIE specification.
    let stranger = Tpp {
        client_id: "no-such-client".into(),
        registration_token: String::new(),
        cert: tls.cert,
        http: tls.http.clone(),
    };
    app.manage(&stranger, reqwest::Method::GET, &tls_token, None).await.assert_error(
        401,
        "invalid_token",
        "not registered",
    );
    let introspected = app
        .form_post(&tls.http, "/oauth2/introspect", form(&[("token", &tls_token), ("client_id", &tls.client_id)]), &[])
        .await;
    assert_eq!(introspected.body["active"], false, "{}", introspected.body);
}

#[tokio::test]
async fn revocation_is_per_client() {
    let app = spawn_app_with(Options::mutual_tls()).await;
    let tls = app.onboard_tls_client_auth().await;
    let tpp = app.onboard_private_key_jwt("accounts").await;
    let token = app.tls_token(&tls).await;
    let as_tls = |extra: &[(&str, &str)]| {
        let mut pairs = vec![("client_id", tls.client_id.as_str())];
        pairs.extend_from_slice(extra);
        form(&pairs)
    };
    // Another client cannot revoke it.
    let by_other = app
        .form_post(
            &tpp.http,
            "/oauth2/revoke",
            form(&[
                ("token", &token),
                ("client_assertion_type", "urn:ietf:params:oauth:client-assertion-type:jwt-bearer"),
                ("client_assertion", &app.assertion(&tpp.client_id, json!({}))),
            ]),
            &[],
        )
        .await;
    by_other.assert_error(400, "unauthorized_client", "not issued to this client");
    assert_eq!(
        app.form_post(&tls.http, "/oauth2/introspect", as_tls(&[("token", &token)]), &[]).await.body["active"],
        true
    );
    // Its own client can; unknown tokens are not an error.
    assert_eq!(app.form_post(&tls.http, "/oauth2/revoke", as_tls(&[("token", &token)]), &[]).await.status, 200);
    assert_eq!(app.form_post(&tls.http, "/oauth2/revoke", as_tls(&[("token", "nonsense")]), &[]).await.status, 200);
    assert_eq!(
        app.form_post(&tls.http, "/oauth2/introspect", as_tls(&[("token", &token)]), &[]).await.body["active"],
        false
    );
    app.form_post(&tls.http, "/oauth2/introspect", as_tls(&[]), &[]).await.assert_error(
        400,
        "invalid_request",
        "token",
    );
}

#[tokio::test]
async fn signing_keys_rotate_without_breaking_verification() {
    let mut app = spawn_app_with(Options::mutual_tls()).await;
    let tls = app.onboard_tls_client_auth().await;
    let kid_of = |t: &str| jsonwebtoken::decode_header(t).unwrap().kid.unwrap();
    // The access-token keys (PS256); the ring also keeps ES256 keys for ID tokens.
    let published = |jwks: Value| -> Vec<String> {
        let keys = jwks["keys"].as_array().unwrap();
        assert!(keys.iter().any(|k| k["alg"] == "ES256"), "an ID token key of the other algorithm is published too");
        keys.iter().filter(|k| k["alg"] == "PS256").map(|k| k["kid"].as_str().unwrap().to_owned()).collect()
    };
    let first = app.tls_token(&tls).await;
    let old_kid = kid_of(&first);
    assert_eq!(published(app.get("/oauth2/jwks").await.body), vec![old_kid.clone()]);

    // The operator rotates, publishing the next key an hour ahead.
    let status = std::process::Command::new(env!("CARGO_BIN_EXE_keyfort"))
        .args(["keys", "rotate", "--config"])
        .arg(&app.config_path)
        .args(["--publish-ahead", "3600"])
        .status()
        .unwrap();
    assert!(status.success());
    app.restart().await;
    let keys = published(app.get("/oauth2/jwks").await.body);
    assert_eq!(keys.len(), 2, "the next key is published before it signs");
    let new_kid = keys.iter().find(|k| **k != old_kid).unwrap().clone();
    assert_eq!(kid_of(&app.tls_token(&tls).await), old_kid, "the old key still signs");

    // A little past the hour: the rotation command ran on the wall clock a moment after the
    // test's clock was set.
    app.clock.advance(3700);
    let second = app.tls_token(&tls).await;
    assert_eq!(kid_of(&second), new_kid, "the new key signs after its activation");
    assert_eq!(published(app.get("/oauth2/jwks").await.body).len(), 2, "the old key stays while its tokens live");
    app.verify_independently(&second).await;

    app.clock.advance(3700);
    assert_eq!(published(app.get("/oauth2/jwks").await.body), vec![new_kid], "the old key is retired");
}

#[tokio::test]
async fn discovery_is_complete_for_what_exists() {
    let app = spawn_app().await;
    for path in ["/.well-known/openid-configuration", "/oauth2/token/.well-known/openid-configuration"] {
        let d = app.get(path).await.body;
        for (field, value) in [
            ("token_endpoint", json!("https://localhost:9446/oauth2/token")),
            ("jwks_uri", json!("https://localhost:9446/oauth2/jwks")),
            ("introspection_endpoint", json!("https://localhost:9446/oauth2/introspect")),
            ("revocation_endpoint", json!("https://localhost:9446/oauth2/revoke")),
            ("grant_types_supported", json!(["authorization_code", "client_credentials", "refresh_token"])),
            ("authorization_endpoint", json!("https://localhost:9446/oauth2/authorize")),
            ("response_types_supported", json!(["code id_token"])),
            ("request_parameter_supported", json!(true)),
            ("request_uri_parameter_supported", json!(false)),
            ("claims_parameter_supported", json!(true)),
            ("code_challenge_methods_supported", json!(["S256"])),
            ("request_object_signing_alg_values_supported", json!(["PS256", "ES256"])),
            ("id_token_signing_alg_values_supported", json!(["PS256", "ES256"])),
            ("acr_values_supported", json!(["urn:openbanking:psd2:sca", "urn:openbanking:psd2:ca"])),
            ("subject_types_supported", json!(["public"])),
            ("tls_client_certificate_bound_access_tokens", json!(true)),
            ("access_token_signing_alg_values_supported", json!(["PS256"])),
        ] {
            assert_eq!(d[field], value, "{path}: {field}");
        }
        assert_eq!(d["mtls_endpoint_aliases"]["token_endpoint"], "https://localhost:9446/oauth2/token");
        for scope in ["openid", "accounts", "payments", "fundsconfirmations"] {
            assert!(d["scopes_supported"].as_array().unwrap().contains(&json!(scope)), "{scope}");
        }
        for claim in ["acr", "openbanking_intent_id", "nonce", "auth_time"] {
            assert!(d["claims_supported"].as_array().unwrap().contains(&json!(claim)), "{claim}");
        }
    }
}

/// A development server without a client CA (started with the development switch) cannot
/// see certificates: the refusal says it is the server's configuration, not the TPP's call.
#[tokio::test]
async fn a_refusal_caused_by_the_server_configuration_says_so() {
    let app = spawn_app().await;
    let reply = app.post(REGISTER, Some("application/jose"), app.sign_request(&app.request_claims())).await;
    assert_eq!(reply.status, 201, "{}", reply.body);
    let client_id = reply.body["client_id"].as_str().unwrap();
    let token = app
        .post(
            TOKEN,
            Some("application/x-www-form-urlencoded"),
            form(&[
                ("grant_type", "client_credentials"),
                ("client_assertion_type", "urn:ietf:params:oauth:client-assertion-type:jwt-bearer"),
                ("client_assertion", &app.assertion(client_id, json!({}))),
            ]),
        )
        .await;
    token.assert_error(400, "invalid_request", "not configured for mutual TLS");
    let description = token.body["error_description"].as_str().unwrap();
    assert!(description.contains("server's configuration, not your request"), "{description}");
}
