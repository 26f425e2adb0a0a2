//! Onboarding succeeds: the seed's request, as JSON and as a signed JWT, on every path.

use serde_json::{json, Value};

use crate::helpers::*;

#[tokio::test]
async fn the_seed_request_registers_as_json() {
    let app = spawn_app().await;
    let claims = app.request_claims();
    let reply = app.register_json(&claims).await;
    assert_eq!(reply.status, 201, "{}", reply.body);
    let body = &reply.body;

    let client_id = body["client_id"].as_str().unwrap();
    assert!(client_id.len() <= 36 && !client_id.is_empty());
    assert!(client_id.chars().all(|c| c.is_ascii_alphanumeric() || c == '-' || c == '_'));
    assert!(body["client_id_issued_at"].as_i64().unwrap() >= app.now() - 1);
    assert!(body.get("client_secret").is_none(), "private_key_jwt clients get no secret");
    assert_eq!(body["software_id"], SOFTWARE_ID);
    assert_eq!(body["software_statement"], claims["software_statement"]);
    assert_eq!(body["client_name"], "WSO2_Open_Banking_TPP2__Sandbox_");
    assert_eq!(body["redirect_uris"], json!(["https://www.google.com/redirects/redirect1"]));
    assert_eq!(body["grant_types"], claims["grant_types"]);
    assert_eq!(body["response_types"], json!(["code id_token"]));
    assert_eq!(body["scope"], "accounts payments fundsconfirmations");
    assert_eq!(body["token_endpoint_auth_method"], "private_key_jwt");
    assert_eq!(body["token_endpoint_auth_signing_alg"], "PS256");
    assert_eq!(body["jwks_uri"], claims["jwks_uri"]);
    assert_eq!(body["tls_client_certificate_bound_access_tokens"], true);
    assert_eq!(body["require_signed_request_object"], true);
    for (field, value) in [
        ("ext_application_token_lifetime", json!(3600)),
        ("ext_user_token_lifetime", json!(3600)),
        ("ext_refresh_token_lifetime", json!(86400)),
        ("ext_id_token_lifetime", json!(3600)),
        ("ext_pkce_mandatory", json!(false)),
        ("ext_public_client", json!(false)),
        ("ext_token_type", json!("JWT")),
        ("ext_allowed_audience", json!("organization")),
    ] {
        assert_eq!(body[field], value, "{field}");
    }
    let token = body["registration_access_token"].as_str().unwrap();
    assert!(token.len() >= 43);
    let uri = body["registration_client_uri"].as_str().unwrap();
    assert_eq!(uri, format!("https://localhost:9446{REGISTER}/{client_id}"));
    assert_eq!(reply.headers["location"], uri);
    assert_eq!(reply.headers["cache-control"], "no-store");
}

#[tokio::test]
async fn the_seed_request_registers_as_a_signed_jwt() {
    let app = spawn_app().await;
    for content_type in ["application/jose", "application/jwt", "application/jose; charset=utf-8"] {
        // One active registration per software: use a distinct software per round.
        let software_id = format!("soft-{}", content_type.len());
        let mut ssa = app.ssa_claims();
        ssa["software_id"] = json!(software_id);
        let claims = patch(
            app.request_claims(),
            json!({"iss": software_id, "software_id": software_id, "software_statement": app.sign_ssa(&ssa)}),
        );
        let token = app.sign_request(&claims);
        let reply = app.post(REGISTER, Some(content_type), token).await;
        assert_eq!(reply.status, 201, "{content_type}: {}", reply.body);
        assert_eq!(reply.body["software_id"], software_id);
    }
}

#[tokio::test]
async fn es256_statements_and_requests_are_accepted() {
    let app = spawn_app().await;
    let ssa = app.keys.directory_es.sign(&app.ssa_claims());
    let claims =
        patch(app.request_claims(), json!({"software_statement": ssa, "token_endpoint_auth_signing_alg": "ES256"}));
    let reply = app.register_jws(&app.keys.software_es.sign(&claims)).await;
    assert_eq!(reply.status, 201, "{}", reply.body);
    assert_eq!(reply.body["token_endpoint_auth_signing_alg"], "ES256");
}

#[tokio::test]
async fn every_registration_path_works() {
    let app = spawn_app().await;
    for (i, path) in [REGISTER.to_owned(), format!("{REGISTER}/"), "/register".to_owned()].iter().enumerate() {
        let software_id = format!("path-soft-{i}");
        let mut ssa = app.ssa_claims();
        ssa["software_id"] = json!(software_id);
        let claims = patch(
            app.request_claims(),
            json!({"iss": software_id, "software_id": software_id, "software_statement": app.sign_ssa(&ssa)}),
        );
        let reply = app.post(path, Some("application/json"), claims.to_string()).await;
        assert_eq!(reply.status, 201, "{path}: {}", reply.body);
    }
}

#[tokio::test]
async fn ssa_values_fill_in_what_the_request_leaves_out() {
    let app = spawn_app().await;
    let claims = patch(
        app.request_claims(),
        json!({"redirect_uris": null, "client_name": null, "software_id": null, "scope": null, "jwks_uri": null,
               "grant_types": null, "response_types": null, "application_type": null}),
    );
    let reply = app.register_json(&claims).await;
    assert_eq!(reply.status, 201, "{}", reply.body);
    let body = &reply.body;
    assert_eq!(body["redirect_uris"], json!(["https://www.google.com/redirects/redirect1"]));
    assert_eq!(body["client_name"], "WSO2 Open Banking TPP2 (Sandbox)");
    assert_eq!(body["software_id"], SOFTWARE_ID);
    assert_eq!(body["jwks_uri"], json!(app.key_server.url(&software_jwks_path())));
    assert_eq!(body["grant_types"], json!(["authorization_code"]));
    assert_eq!(body["response_types"], json!(["code"]));
    assert_eq!(body["application_type"], "web");
    // PISP, AISP and CBPII roles allow all three OB scopes.
    let scopes: Vec<&str> = body["scope"].as_str().unwrap().split(' ').collect();
    assert_eq!(scopes, vec!["payments", "accounts", "fundsconfirmations"]);
}

#[tokio::test]
async fn secret_based_clients_get_a_secret_that_is_stored_only_as_a_hash() {
    let app = spawn_app_with(Options::default().dcr("enable_fapi_enforcement = false")).await;
    let claims = patch(
        app.request_claims(),
        json!({"token_endpoint_auth_method": "client_secret_basic", "tls_client_certificate_bound_access_tokens": false}),
    );
    let reply = app.register_json(&claims).await;
    assert_eq!(reply.status, 201, "{}", reply.body);
    let secret = reply.body["client_secret"].as_str().unwrap().to_owned();
    let registration_token = reply.body["registration_access_token"].as_str().unwrap().to_owned();
    assert_eq!(reply.body["client_secret_expires_at"], 0);
    assert_eq!(reply.body["tls_client_certificate_bound_access_tokens"], false);

    let db = std::fs::read(app.database_path()).unwrap();
    let wal = std::fs::read(app.database_path().with_extension("db-wal")).unwrap_or_default();
    for bytes in [&db, &wal] {
        let text = String::from_utf8_lossy(bytes);
        assert!(!text.contains(&secret), "the client secret must not be stored");
        assert!(!text.contains(&registration_token), "the registration token must not be stored");
    }
    let hash = keyfort_core::secret::SecretHash::of(&secret);
    let stored =
        String::from_utf8_lossy(&db).contains(hash.as_str()) || String::from_utf8_lossy(&wal).contains(hash.as_str());
    assert!(stored, "the secret's SHA-256 is what is stored");
}

#[tokio::test]
async fn discovery_advertises_issuer_and_registration_endpoint() {
    let app = spawn_app().await;
    let reply = app.get("/.well-known/openid-configuration").await;
    assert_eq!(reply.status, 200);
    assert_eq!(reply.body["issuer"], "https://localhost:9446");
    assert_eq!(reply.body["registration_endpoint"], format!("https://localhost:9446{REGISTER}"));
    assert_eq!(reply.body["token_endpoint_auth_methods_supported"], json!(["private_key_jwt", "tls_client_auth"]));
    let algs: Vec<Value> = reply.body["token_endpoint_auth_signing_alg_values_supported"].as_array().unwrap().clone();
    assert_eq!(algs, vec![json!("PS256"), json!("ES256")]);
}

#[tokio::test]
async fn client_secret_jwt_cannot_be_registered_even_without_fapi() {
    // FAPI forbids it and no code would ever verify its assertions: such a client could
    // never get a token, so it must not be registered at all.
    let app = spawn_app_with(Options::default().dcr("enable_fapi_enforcement = false")).await;
    let claims = patch(
        app.request_claims(),
        json!({"token_endpoint_auth_method": "client_secret_jwt", "tls_client_certificate_bound_access_tokens": false}),
    );
    app.register_json(&claims).await.assert_error(400, "invalid_client_metadata", "client_secret_jwt");
}
