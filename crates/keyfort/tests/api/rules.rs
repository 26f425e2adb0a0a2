//! Every validation rule refuses the request it exists for, over HTTPS, with the status and
//! error code the issue names, and a description that says what to fix. No case may yield
//! a 5xx (the helper asserts that on every reply).

use serde_json::{json, Value};

use crate::helpers::*;

enum Send {
    Json(Value),
    Jws(String),
}

struct Case {
    name: &'static str,
    send: Send,
    status: u16,
    code: &'static str,
    needle: &'static str,
}

async fn run(app: &TestApp, cases: Vec<Case>) {
    for case in cases {
        let reply = match &case.send {
            Send::Json(v) => app.register_json(v).await,
            Send::Jws(t) => app.register_jws(t).await,
        };
        assert_eq!(reply.status, case.status, "{}: {}", case.name, reply.body);
        assert_eq!(reply.body["error"], case.code, "{}: {}", case.name, reply.body);
        let description = reply.body["error_description"].as_str().unwrap_or_default();
        assert!(
            description.contains(case.needle),
            "{}: error_description {description:?} should mention {:?}",
            case.name,
            case.needle
        );
    }
}

fn json_case(name: &'static str, send: Value, status: u16, code: &'static str, needle: &'static str) -> Case {
    Case { name, send: Send::Json(send), status, code, needle }
}

fn jws_case(name: &'static str, send: String, status: u16, code: &'static str, needle: &'static str) -> Case {
    Case { name, send: Send::Jws(send), status, code, needle }
}

/// The request with its SSA replaced by one signed from modified claims.
fn with_ssa(app: &TestApp, ssa_patch: Value) -> Value {
    let ssa = app.sign_ssa(&patch(app.ssa_claims(), ssa_patch));
    patch(app.request_claims(), json!({ "software_statement": ssa }))
}

fn with_raw_ssa(app: &TestApp, ssa: String) -> Value {
    patch(app.request_claims(), json!({ "software_statement": ssa }))
}

const BAD_SSA: &str = "invalid_software_statement";
const UNAPPROVED: &str = "unapproved_software_statement";
const BAD_META: &str = "invalid_client_metadata";
const BAD_REDIRECT: &str = "invalid_redirect_uri";

#[tokio::test]
async fn software_statement_rules() {
    let app = spawn_app().await;
    let keys = &app.keys;
    let claims = app.ssa_claims();
    let stranger = TestKey::generate(keyfort_core::jose::SigningAlg::PS256, "dir-ps256");
    let public_key_bytes = keys.directory_ps.jwk()["n"].as_str().unwrap().to_owned();

    let mut cases = vec![
        json_case(
            "missing SSA",
            patch(app.request_claims(), json!({"software_statement": null})),
            400,
            BAD_SSA,
            "software_statement is required",
        ),
        json_case("not a JWS", with_raw_ssa(&app, "not-a-jwt".into()), 400, BAD_SSA, "not a compact JWS"),
        json_case(
            "SSA of wrong JSON type",
            patch(app.request_claims(), json!({"software_statement": 42})),
            400,
            BAD_SSA,
            "must be a string",
        ),
        json_case(
            "alg none",
            with_raw_ssa(
                &app,
                format!("{}.", forge(&json!({"alg": "none", "kid": "dir-ps256"}), &claims, b"").trim_end_matches('.')),
            ),
            400,
            BAD_SSA,
            "none",
        ),
        json_case(
            "alg none with a signature",
            with_raw_ssa(&app, forge(&json!({"alg": "none", "kid": "dir-ps256"}), &claims, b"sig")),
            400,
            BAD_SSA,
            "\"none\"",
        ),
        json_case(
            "HMAC keyed with the directory's public key",
            with_raw_ssa(
                &app,
                hmac_token(&json!({"alg": "HS256", "kid": "dir-ps256"}), &claims, public_key_bytes.as_bytes()),
            ),
            400,
            BAD_SSA,
            "HMAC",
        ),
        json_case(
            "alg outside the allow-list",
            with_raw_ssa(
                &app,
                keys.directory_ps.sign_with(&claims, Some("dir-ps256"), Some(jsonwebtoken::Algorithm::RS256)),
            ),
            400,
            BAD_SSA,
            "RS256",
        ),
        json_case("no kid", with_raw_ssa(&app, keys.directory_ps.sign_with(&claims, None, None)), 400, BAD_SSA, "kid"),
        json_case(
            "unknown kid",
            with_raw_ssa(&app, keys.directory_ps.sign_with(&claims, Some("nobody"), None)),
            400,
            BAD_SSA,
            "\"nobody\"",
        ),
        json_case(
            "kid of a key that does not fit the alg",
            with_raw_ssa(&app, keys.directory_ps.sign_with(&claims, Some("dir-es256"), None)),
            400,
            BAD_SSA,
            "cannot verify PS256",
        ),
        json_case(
            "signature by another key",
            with_raw_ssa(&app, stranger.sign(&claims)),
            400,
            BAD_SSA,
            "does not verify",
        ),
        json_case(
            "untrusted issuer",
            with_ssa(&app, json!({"iss": "Mallory Directory"})),
            400,
            BAD_SSA,
            "Mallory Directory",
        ),
        json_case("iat in the future", with_ssa(&app, json!({"iat": app.now() + 3600})), 400, BAD_SSA, "future"),
        json_case("iat missing", with_ssa(&app, json!({"iat": null})), 400, BAD_SSA, "iat"),
        json_case("expired", with_ssa(&app, json!({"exp": app.now() - 3600})), 400, BAD_SSA, "expired"),
        json_case("org not active", with_ssa(&app, json!({"org_status": "Revoked"})), 400, UNAPPROVED, "org_status"),
        json_case(
            "software not active",
            with_ssa(&app, json!({"software_status": "Inactive"})),
            400,
            UNAPPROVED,
            "software_status",
        ),
        json_case(
            "other environment",
            with_ssa(&app, json!({"software_environment": "live"})),
            400,
            UNAPPROVED,
            "software_environment",
        ),
    ];
    for claim in ["software_id", "software_roles", "software_redirect_uris", "org_id", "software_jwks_endpoint"] {
        cases.push(Case {
            name: claim,
            send: Send::Json(with_ssa(&app, json!({ claim: null }))),
            status: 400,
            code: BAD_SSA,
            needle: claim,
        });
    }
    run(&app, cases).await;
}

#[tokio::test]
async fn request_identity_and_freshness_rules() {
    let app = spawn_app().await;
    let now = app.now();
    let base = app.request_claims();
    let cases = vec![
        json_case(
            "iss is not the software_id",
            patch(base.clone(), json!({"iss": "someone-else"})),
            400,
            BAD_META,
            "iss",
        ),
        json_case("iss missing", patch(base.clone(), json!({"iss": null})), 400, BAD_META, "iss"),
        json_case(
            "software_id differs",
            patch(base.clone(), json!({"software_id": "other"})),
            400,
            BAD_META,
            "software_id",
        ),
        json_case(
            "aud of another bank",
            patch(base.clone(), json!({"aud": "https://otherbank.example"})),
            400,
            BAD_META,
            "otherbank",
        ),
        json_case("aud missing", patch(base.clone(), json!({"aud": null})), 400, BAD_META, "aud"),
        json_case(
            "expired request",
            patch(base.clone(), json!({"exp": now - 600, "iat": now - 900})),
            400,
            BAD_META,
            "expired",
        ),
        json_case(
            "iat in the future",
            patch(base.clone(), json!({"iat": now + 600, "exp": now + 900})),
            400,
            BAD_META,
            "future",
        ),
        json_case("jti missing", patch(base.clone(), json!({"jti": null})), 400, BAD_META, "jti"),
        jws_case(
            "signed request without exp",
            app.sign_request(&patch(app.request_claims(), json!({"exp": null}))),
            400,
            BAD_META,
            "exp",
        ),
        jws_case(
            "signed request without iat",
            app.sign_request(&patch(app.request_claims(), json!({"iat": null}))),
            400,
            BAD_META,
            "iat",
        ),
    ];
    run(&app, cases).await;
}

#[tokio::test]
async fn signed_request_rules() {
    let app = spawn_app().await;
    let claims = app.request_claims();
    let stranger = TestKey::generate(keyfort_core::jose::SigningAlg::PS256, "soft-ps256");
    let cases = vec![
        jws_case("signed by another key", stranger.sign(&claims), 400, BAD_META, "does not verify"),
        jws_case("unknown kid", app.keys.software_ps.sign_with(&claims, Some("nope"), None), 400, BAD_META, "\"nope\""),
        jws_case("no kid", app.keys.software_ps.sign_with(&claims, None, None), 400, BAD_META, "kid"),
        jws_case(
            "alg outside the allow-list",
            app.keys.software_ps.sign_with(&claims, Some("soft-ps256"), Some(jsonwebtoken::Algorithm::RS256)),
            400,
            BAD_META,
            "RS256",
        ),
        jws_case("alg none", forge(&json!({"alg": "none"}), &claims, b"x"), 400, BAD_META, "none"),
        jws_case("not a JWS", "abc.def".into(), 400, BAD_META, "compact JWS"),
        jws_case(
            "payload not an object",
            forge(&json!({"alg": "PS256", "kid": "soft-ps256"}), &json!([1, 2]), b"x"),
            400,
            BAD_META,
            "not an object",
        ),
        jws_case(
            "signed request without SSA",
            app.sign_request(&patch(claims.clone(), json!({"software_statement": null}))),
            400,
            BAD_SSA,
            "software_statement",
        ),
    ];
    run(&app, cases).await;
}

#[tokio::test]
async fn redirect_uri_rules() {
    let app = spawn_app().await;
    let base = app.request_claims();
    let uris = |list: Value| patch(base.clone(), json!({ "redirect_uris": list }));
    let cases = vec![
        json_case("http", uris(json!(["http://www.google.com/redirects/redirect1"])), 400, BAD_REDIRECT, "https"),
        json_case("relative", uris(json!(["/redirects/redirect1"])), 400, BAD_REDIRECT, "absolute"),
        json_case(
            "fragment",
            uris(json!(["https://www.google.com/redirects/redirect1#x"])),
            400,
            BAD_REDIRECT,
            "fragment",
        ),
        json_case("localhost", uris(json!(["https://localhost/cb"])), 400, BAD_REDIRECT, "loopback"),
        json_case("loopback IP", uris(json!(["https://127.0.0.1/cb"])), 400, BAD_REDIRECT, "loopback"),
    ];
    run(&app, cases).await;
    // Other spellings of this machine, listed in the SSA too, so that only the loopback
    // rule can refuse them (hardening issue, finding 3).
    let spellings = [
        "https://[::ffff:127.0.0.1]/cb",
        "https://[::ffff:7f00:1]/cb",
        "https://[::]/cb",
        "https://0.0.0.0/cb",
        "https://127.1.2.3/cb",
        "https://2130706433/cb",
        "https://0x7f.0.0.1/cb",
        "https://localhost./cb",
    ];
    for uri in spellings {
        let request = patch(
            with_ssa(&app, json!({ "software_redirect_uris": [uri] })),
            json!({ "redirect_uris": [uri], "jti": keyfort_core::secret::random_b64url(12) }),
        );
        run(&app, vec![json_case("another spelling of this machine", request, 400, BAD_REDIRECT, "loopback")]).await;
    }
    let cases = vec![
        json_case(
            "not in the SSA",
            uris(json!(["https://www.google.com/other"])),
            400,
            BAD_REDIRECT,
            "software_redirect_uris",
        ),
        json_case("empty list", uris(json!([])), 400, BAD_REDIRECT, "empty"),
        json_case("not a list", uris(json!("https://www.google.com/redirects/redirect1")), 400, BAD_REDIRECT, "array"),
    ];
    run(&app, cases).await;
}

#[tokio::test]
async fn client_metadata_rules() {
    let app = spawn_app().await;
    let base = app.request_claims();
    let with = |changes: Value| patch(base.clone(), changes);
    let aisp_only = with_ssa(&app, json!({"software_roles": ["AISP"]}));
    let cases = vec![
        json_case(
            "secret auth under FAPI",
            with(json!({"token_endpoint_auth_method": "client_secret_basic"})),
            400,
            BAD_META,
            "token_endpoint_auth_method",
        ),
        json_case("unknown auth method", with(json!({"token_endpoint_auth_method": "magic"})), 400, BAD_META, "magic"),
        json_case(
            "auth method missing",
            with(json!({"token_endpoint_auth_method": null})),
            400,
            BAD_META,
            "token_endpoint_auth_method",
        ),
        json_case(
            "private_key_jwt without alg",
            with(json!({"token_endpoint_auth_signing_alg": null})),
            400,
            BAD_META,
            "token_endpoint_auth_signing_alg",
        ),
        json_case(
            "token endpoint alg not allowed",
            with(json!({"token_endpoint_auth_signing_alg": "RS256"})),
            400,
            BAD_META,
            "token_endpoint_auth_signing_alg",
        ),
        json_case(
            "tls_client_auth without DN",
            with(json!({"token_endpoint_auth_method": "tls_client_auth"})),
            400,
            BAD_META,
            "tls_client_auth_subject_dn",
        ),
        json_case(
            "tls_client_auth with a malformed DN",
            with(json!({"token_endpoint_auth_method": "tls_client_auth", "tls_client_auth_subject_dn": "not a dn"})),
            400,
            BAD_META,
            "tls_client_auth_subject_dn",
        ),
        json_case(
            "id token alg not allowed",
            with(json!({"id_token_signed_response_alg": "HS256"})),
            400,
            BAD_META,
            "id_token_signed_response_alg",
        ),
        json_case(
            "request object alg not allowed",
            with(json!({"request_object_signing_alg": "none"})),
            400,
            BAD_META,
            "request_object_signing_alg",
        ),
        json_case("grant type", with(json!({"grant_types": ["password"]})), 400, BAD_META, "password"),
        json_case("response type", with(json!({"response_types": ["token"]})), 400, BAD_META, "token"),
        json_case("application type", with(json!({"application_type": "desktop"})), 400, BAD_META, "desktop"),
        json_case(
            "scope beyond the roles",
            patch(aisp_only, json!({"scope": "accounts payments"})),
            400,
            BAD_META,
            "payments",
        ),
        json_case(
            "unsigned request objects under FAPI",
            with(json!({"require_signed_request_object": false})),
            400,
            BAD_META,
            "require_signed_request_object",
        ),
        json_case(
            "bearer tokens under FAPI",
            with(json!({"tls_client_certificate_bound_access_tokens": false})),
            400,
            BAD_META,
            "tls_client_certificate_bound_access_tokens",
        ),
        json_case(
            "jwks_uri not the SSA's",
            with(json!({"jwks_uri": "https://evil.example/keys.jwks"})),
            400,
            BAD_META,
            "software_jwks_endpoint",
        ),
        json_case(
            "keys by value",
            with(json!({"jwks": {"keys": [app.keys.software_ps.jwk()]}})),
            400,
            BAD_META,
            "software_jwks_endpoint",
        ),
        json_case(
            "encrypted ID tokens",
            with(json!({"id_token_encrypted_response_alg": "RSA-OAEP"})),
            400,
            BAD_META,
            "encrypt",
        ),
    ];
    run(&app, cases).await;

    // The tls_client_auth path itself works with a well-formed DN.
    let ok = app
        .register_json(&with(json!({
            "token_endpoint_auth_method": "tls_client_auth",
            "tls_client_auth_subject_dn": format!("CN={SOFTWARE_ID},OU={ORG_ID},O=OpenBanking,C=GB"),
        })))
        .await;
    assert_eq!(ok.status, 201, "{}", ok.body);
    assert_eq!(ok.body["tls_client_auth_subject_dn"], format!("CN={SOFTWARE_ID},OU={ORG_ID},O=OpenBanking,C=GB"));
}

#[tokio::test]
async fn malformed_input_gets_a_clear_4xx() {
    let app = spawn_app().await;
    let base = app.request_claims();
    // (name, content type, body, status, error, needle)
    type RawCase<'a> = (&'a str, Option<&'a str>, Vec<u8>, u16, &'a str, &'a str);
    let cases: Vec<RawCase> = vec![
        ("broken JSON", Some("application/json"), b"{\"iss\": ".to_vec(), 400, BAD_META, "not valid JSON"),
        ("JSON array", Some("application/json"), b"[1,2,3]".to_vec(), 400, BAD_META, "not an object"),
        ("JSON string", Some("application/json"), b"\"hello\"".to_vec(), 400, BAD_META, "not an object"),
        ("empty body", Some("application/json"), vec![], 400, BAD_META, "not valid JSON"),
        ("binary", Some("application/jose"), vec![0xff, 0xfe, 0x00], 400, BAD_META, "UTF-8"),
        ("no content type", None, base.to_string().into_bytes(), 415, "invalid_request", "Content-Type"),
        (
            "form content type",
            Some("application/x-www-form-urlencoded"),
            b"a=b".to_vec(),
            415,
            "invalid_request",
            "application/json",
        ),
        ("too large", Some("application/json"), vec![b' '; 70 * 1024], 413, "invalid_request", "65536"),
        (
            "wrong claim type",
            Some("application/json"),
            patch(base.clone(), json!({"grant_types": "client_credentials"})).to_string().into_bytes(),
            400,
            BAD_META,
            "grant_types",
        ),
        (
            "numeric iat as string",
            Some("application/json"),
            patch(base.clone(), json!({"iat": "yesterday"})).to_string().into_bytes(),
            400,
            BAD_META,
            "iat",
        ),
        (
            "absurdly long name",
            Some("application/json"),
            patch(base.clone(), json!({"client_name": "x".repeat(5000)})).to_string().into_bytes(),
            400,
            BAD_META,
            "client_name",
        ),
        (
            "too many redirect URIs",
            Some("application/json"),
            patch(base.clone(), json!({"redirect_uris": vec!["https://a.example/cb"; 100]})).to_string().into_bytes(),
            400,
            BAD_REDIRECT,
            "redirect_uris",
        ),
        (
            "deep nesting",
            Some("application/json"),
            format!("{}{}", "[".repeat(10_000), "]".repeat(10_000)).into_bytes(),
            400,
            BAD_META,
            "not valid JSON",
        ),
    ];
    for (name, content_type, body, status, code, needle) in cases {
        let reply = app.post(REGISTER, content_type, body).await;
        assert_eq!(reply.status, status, "{name}: {}", reply.body);
        assert_eq!(reply.body["error"], code, "{name}: {}", reply.body);
        let description = reply.body["error_description"].as_str().unwrap_or_default();
        assert!(description.contains(needle), "{name}: {description:?} should mention {needle:?}");
    }

    let unknown = app.get("/no/such/endpoint").await;
    unknown.assert_error(404, "invalid_request", "no such endpoint");
    let wrong_method = app.get(REGISTER).await;
    wrong_method.assert_error(405, "invalid_request", "GET");
}

#[tokio::test]
async fn a_replayed_jti_is_refused() {
    let app = spawn_app_with(Options::default().dcr("one_registration_per_software = false")).await;
    let claims = app.request_claims();
    assert_eq!(app.register_json(&claims).await.status, 201);
    app.register_json(&claims).await.assert_error(400, BAD_META, "already been used");
    // The same jti in the signed form is the same request again.
    app.register_jws(&app.sign_request(&claims)).await.assert_error(400, BAD_META, "already been used");
}

#[tokio::test]
async fn one_active_registration_per_software() {
    let app = spawn_app().await;
    assert_eq!(app.register_json(&app.request_claims()).await.status, 201);
    app.register_json(&app.request_claims()).await.assert_error(400, BAD_META, "already has an active registration");

    let lenient = spawn_app_with(Options::default().dcr("one_registration_per_software = false")).await;
    assert_eq!(lenient.register_json(&lenient.request_claims()).await.status, 201);
    assert_eq!(lenient.register_json(&lenient.request_claims()).await.status, 201);
}

#[tokio::test]
async fn without_a_mandated_ssa_the_request_alone_is_judged() {
    let app = spawn_app_with(Options::default().dcr("mandate_ssa = false")).await;
    let claims = patch(
        app.request_claims(),
        json!({"software_statement": null, "jwks_uri": "https://keys.tpp.example/app.jwks"}),
    );
    let reply = app.register_json(&claims).await;
    assert_eq!(reply.status, 201, "{}", reply.body);
    assert_eq!(reply.body["software_statement"], Value::Null);
    // Redirect URIs are still held to the FAPI rules.
    let bad = patch(claims, json!({"jti": "other", "redirect_uris": ["http://tpp.example/cb"]}));
    app.register_json(&bad).await.assert_error(400, BAD_REDIRECT, "https");
}

#[tokio::test]
async fn an_unsigned_request_without_proof_of_the_sender_is_refused() {
    let mut options = Options::default();
    options.dcr.clear();
    let app = spawn_app_with(options).await;
    // Anyone may hold a software statement: sent as bare JSON it proves nothing.
    app.register_json(&app.request_claims()).await.assert_error(
        401,
        "invalid_client",
        "signed with the software's key",
    );
    // Signed with the software's key, the same request is accepted.
    let reply = app.register_jws(&app.sign_request(&app.request_claims())).await;
    assert_eq!(reply.status, 201, "{}", reply.body);
}
