//! Directory and software JWKS fetching: cached, refreshed on an unknown kid at a bounded
//! rate, last good keys kept, allow-listed hosts only, https unless the loopback switch is on.

use serde_json::json;

use crate::helpers::*;

fn distinct_software(app: &TestApp, n: usize) -> serde_json::Value {
    let software_id = format!("software-{n}");
    let mut ssa = app.ssa_claims();
    ssa["software_id"] = json!(software_id);
    patch(
        app.request_claims(),
        json!({"iss": software_id, "software_id": software_id, "software_statement": app.sign_ssa(&ssa)}),
    )
}

#[tokio::test]
async fn directory_keys_are_fetched_once_and_cached() {
    let app = spawn_app().await;
    for n in 0..3 {
        assert_eq!(app.register_json(&distinct_software(&app, n)).await.status, 201);
    }
    assert_eq!(app.key_server.hits(DIRECTORY_JWKS), 1);
}

#[tokio::test]
async fn an_unknown_kid_refreshes_at_a_bounded_rate() {
    let app = spawn_app_with(Options::default().http_client("jwks_min_refresh_seconds = 1")).await;
    assert_eq!(app.register_json(&distinct_software(&app, 0)).await.status, 201);
    assert_eq!(app.key_server.hits(DIRECTORY_JWKS), 1);
    tokio::time::sleep(std::time::Duration::from_millis(1100)).await;

    // Once the interval has passed, the first unknown kid causes one refresh; the rest of a
    // flood of unknown kids within the interval causes none, so an attacker cannot make
    // Keyfort hammer the directory.
    let rotated = TestKey::generate(keyfort_core::jose::SigningAlg::PS256, "dir-rotated");
    app.key_server.set(DIRECTORY_JWKS, Doc::Json(json!({"keys": [app.keys.directory_ps.jwk(), rotated.jwk()]})));
    for n in 0..5 {
        let claims = patch(
            app.request_claims(),
            json!({"software_statement": app.keys.directory_ps.sign_with(&app.ssa_claims(), Some(&format!("random-{n}")), None)}),
        );
        app.register_json(&claims).await.assert_error(400, "invalid_software_statement", "random-");
    }
    assert_eq!(app.key_server.hits(DIRECTORY_JWKS), 2, "one refresh for the first unknown kid, none after");
}

#[tokio::test]
async fn a_rotated_directory_key_is_picked_up() {
    let app = spawn_app_with(Options::default().http_client("jwks_min_refresh_seconds = 0")).await;
    assert_eq!(app.register_json(&distinct_software(&app, 0)).await.status, 201);
    let rotated = TestKey::generate(keyfort_core::jose::SigningAlg::PS256, "dir-rotated");
    app.key_server.set(DIRECTORY_JWKS, Doc::Json(json!({"keys": [rotated.jwk()]})));
    let mut ssa = app.ssa_claims();
    ssa["software_id"] = json!("rotated-software");
    let claims = patch(
        app.request_claims(),
        json!({"iss": "rotated-software", "software_id": "rotated-software", "software_statement": rotated.sign(&ssa)}),
    );
    let reply = app.register_json(&claims).await;
    assert_eq!(reply.status, 201, "{}", reply.body);
}

#[tokio::test]
async fn the_last_good_keys_survive_a_directory_outage() {
    let app = spawn_app_with(
        Options::default().http_client("jwks_cache_seconds = 0").http_client("jwks_min_refresh_seconds = 0"),
    )
    .await;
    assert_eq!(app.register_json(&distinct_software(&app, 0)).await.status, 201);
    app.key_server.set(DIRECTORY_JWKS, Doc::Status(503));
    let reply = app.register_json(&distinct_software(&app, 1)).await;
    assert_eq!(reply.status, 201, "{}", reply.body);
    assert!(app.key_server.hits(DIRECTORY_JWKS) >= 2, "the refresh was attempted");
}

/// A 503 says what is unavailable and what the caller can do; the internal URL and the
/// error chain go to the log (with the request id), never to the caller.
#[track_caller]
pub fn assert_unavailable_without_internals(reply: &Reply, what: &str) {
    reply.assert_error(503, "temporarily_unavailable", what);
    let description = reply.body["error_description"].as_str().unwrap_or_default();
    for internal in ["http://", "https://", "127.0.0.1", "localhost", "status", ".jwks", "error sending"] {
        assert!(!description.contains(internal), "the description shows {internal:?}: {description}");
    }
    assert!(description.contains("try again later") && description.contains("x-request-id"), "{description}");
    assert!(reply.headers.contains_key("x-request-id"));
}

#[tokio::test]
async fn an_unreachable_directory_is_a_503_not_a_client_error() {
    let app = spawn_app().await;
    app.key_server.set(DIRECTORY_JWKS, Doc::Status(500));
    let reply = app.register_json(&app.request_claims()).await;
    assert_unavailable_without_internals(&reply, "directory's keys that verify software statements");
    assert_eq!(reply.headers["retry-after"], "30");
    // The software JWKS alike.
    let app = spawn_app().await;
    app.key_server.set(&software_jwks_path(), Doc::Status(502));
    let reply = app.register_jws(&app.sign_request(&app.request_claims())).await;
    assert_unavailable_without_internals(&reply, "software JWKS");
}

#[tokio::test]
async fn plain_http_needs_the_loopback_switch() {
    // A plain-http directory URL is refused by the configuration itself (tests/api/config.rs);
    // a software statement can still name a plain-http software JWKS, which is not fetched.
    let mut options = Options { ssa_jkws: Some("directory.jwks".into()), ..Options::default() }
        .dcr("software_jwks_hosts = [\"{KEY_SERVER}\"]");
    options.http_client.clear();
    let app = spawn_app_with(options).await;
    let directory = json!({"keys": [app.keys.directory_ps.jwk(), app.keys.directory_es.jwk()]});
    std::fs::write(app.dir.path().join("directory.jwks"), directory.to_string()).unwrap();
    let reply = app.register_jws(&app.sign_request(&app.request_claims())).await;
    reply.assert_error(400, "invalid_software_statement", "allow_insecure_loopback");
    assert_eq!(app.key_server.hits(&software_jwks_path()), 0, "nothing was fetched over plain http");
}

#[tokio::test]
async fn redirects_to_another_host_are_not_followed() {
    let app = spawn_app().await;
    let elsewhere = format!("http://localhost:{}/moved.jwks", app.key_server.addr.port());
    app.key_server.set(DIRECTORY_JWKS, Doc::Redirect(elsewhere));
    app.key_server.set("/moved.jwks", Doc::Json(json!({"keys": [app.keys.directory_ps.jwk()]})));
    let reply = app.register_json(&app.request_claims()).await;
    assert_unavailable_without_internals(&reply, "directory's keys");
    assert_eq!(app.key_server.hits("/moved.jwks"), 0);
}

#[tokio::test]
async fn oversized_key_documents_are_refused() {
    let app = spawn_app_with(Options::default().http_client("max_response_bytes = 256")).await;
    let reply = app.register_json(&app.request_claims()).await;
    assert_unavailable_without_internals(&reply, "directory's keys");
}

/// The allow-list compares origins: the allowed host on another port (another service),
/// or over another scheme, is not allowed.
#[tokio::test]
async fn software_keys_come_only_from_allowed_origins() {
    let elsewhere = KeyServer::start().await;
    let app = spawn_app().await;
    let mut claims = app.ssa_claims();
    let moved = elsewhere.url(&software_jwks_path());
    claims["software_jwks_endpoint"] = json!(moved);
    elsewhere.set(&software_jwks_path(), Doc::Json(json!({"keys": [app.keys.software_ps.jwk()]})));
    let request = patch(app.request_claims(), json!({"software_statement": app.sign_ssa(&claims), "jwks_uri": moved}));
    app.register_jws(&app.sign_request(&request)).await.assert_error(
        400,
        "invalid_software_statement",
        "is not at an allowed key origin of this bank (http://127.0.0.1:",
    );
    assert_eq!(elsewhere.hits(&software_jwks_path()), 0, "same host, another port: nothing fetched");
}

#[tokio::test]
async fn software_keys_come_only_from_allowed_hosts() {
    let app =
        spawn_app_with(Options::default().dcr("software_jwks_hosts = [\"keystore.openbankingtest.org.uk\"]")).await;
    let claims = app.request_claims();
    app.register_jws(&app.sign_request(&claims)).await.assert_error(
        400,
        "invalid_software_statement",
        "not at an allowed key origin",
    );
    assert_eq!(app.key_server.hits(&software_jwks_path()), 0);
    // The JSON form needs no software keys and is unaffected.
    assert_eq!(app.register_json(&claims).await.status, 201);
}

#[tokio::test]
async fn directory_keys_can_come_from_a_file() {
    let app = spawn_app().await;
    let path = app.dir.path().join("directory.jwks");
    std::fs::write(&path, json!({"keys": [app.keys.directory_ps.jwk()]}).to_string()).unwrap();
    let config = std::fs::read_to_string(&app.config_path)
        .unwrap()
        .replace(&app.key_server.url(DIRECTORY_JWKS), "directory.jwks");
    std::fs::write(&app.config_path, config).unwrap();
    let mut app = app;
    app.restart().await;
    let reply = app.register_json(&app.request_claims()).await;
    assert_eq!(reply.status, 201, "{}", reply.body);
}

#[tokio::test]
async fn a_document_that_is_not_a_jwks_is_reported() {
    let app = spawn_app().await;
    app.key_server.set(DIRECTORY_JWKS, Doc::Raw(b"<html>maintenance</html>".to_vec()));
    let reply = app.register_json(&app.request_claims()).await;
    assert_unavailable_without_internals(&reply, "directory's keys");
}
