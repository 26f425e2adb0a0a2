//! The operator's side: the admin API and CLI (suspend, reactivate, list, show), metrics,
//! readiness, and logs that never carry secrets.

use base64::Engine;
use keyfort::storage::Store;
use serde_json::{json, Value};

use crate::helpers::*;
use crate::pki::Subject;

pub(crate) const ADMIN: &str = "ops@bank.example";
pub(crate) const PASSWORD: &str = "a long operator password";

pub(crate) fn basic() -> (&'static str, String) {
    (
        "authorization",
        format!("Basic {}", base64::engine::general_purpose::STANDARD.encode(format!("{ADMIN}:{PASSWORD}"))),
    )
}

pub(crate) async fn add_admin(app: &TestApp) {
    let store =
        keyfort::storage::SqliteStore::open(&format!("sqlite://{}", app.database_path().display())).await.unwrap();
    store.create_admin(ADMIN, &keyfort::admin::hash_password(PASSWORD).unwrap(), 0).await.unwrap();
}

pub(crate) async fn admin_call(app: &TestApp, method: reqwest::Method, path: &str) -> Reply {
    let (name, value) = basic();
    let response =
        app.client.request(method, format!("{}{path}", app.admin_base)).header(name, value).send().await.unwrap();
    let status = response.status().as_u16();
    let headers = response.headers().clone();
    let body = response.json().await.unwrap_or(Value::Null);
    Reply { status, body, headers }
}

async fn admin_cli(app: &TestApp, args: &[&str]) -> std::process::Output {
    let mut command = std::process::Command::new(env!("CARGO_BIN_EXE_keyfort"));
    command
        .args(["admin", "clients", "--server", &app.admin_base, "--user", ADMIN, "--cacert"])
        .arg(app.dir.path().join("ca.pem"))
        .args(args)
        .env("KEYFORT_ADMIN_PASSWORD", PASSWORD);
    tokio::task::spawn_blocking(move || command.output().unwrap()).await.unwrap()
}

async fn token(app: &TestApp, http: &reqwest::Client, client_id: &str) -> Reply {
    app.post_with(http, "/oauth2/token", Some("application/x-www-form-urlencoded"), token_form(client_id), &[]).await
}

fn token_form(client_id: &str) -> String {
    url::form_urlencoded::Serializer::new(String::new())
        .append_pair("grant_type", "client_credentials")
        .append_pair("client_id", client_id)
        .finish()
}

#[tokio::test]
async fn an_admin_can_suspend_a_client_and_its_next_token_request_is_refused() {
    let app = spawn_app_with(Options::mutual_tls()).await;
    add_admin(&app).await;
    let cert = app.pki.issue(&Subject::legacy_ob(ORG_ID, SOFTWARE_ID));
    let http = app.client_presenting(&cert);
    let claims = patch(
        app.request_claims(),
        json!({"token_endpoint_auth_method": "tls_client_auth", "token_endpoint_auth_signing_alg": null,
               "tls_client_auth_subject_dn": cert.subject_dn()}),
    );
    let registered = app.post_with(&http, REGISTER, Some("application/json"), claims.to_string(), &[]).await;
    assert_eq!(registered.status, 201, "{}", registered.body);
    let client_id = registered.body["client_id"].as_str().unwrap().to_owned();
    let registration_token = registered.body["registration_access_token"].as_str().unwrap().to_owned();
    assert_eq!(token(&app, &http, &client_id).await.status, 200);

    // Unauthenticated admin calls are refused.
    let anonymous =
        app.client.post(format!("{}/admin/clients/{client_id}/suspend", app.admin_base)).send().await.unwrap();
    assert_eq!(anonymous.status(), 401);

    let suspended = admin_call(&app, reqwest::Method::POST, &format!("/admin/clients/{client_id}/suspend")).await;
    assert_eq!(suspended.status, 200, "{}", suspended.body);
    assert_eq!(suspended.body["client"]["status"], "suspended");
    token(&app, &http, &client_id).await.assert_error(401, "invalid_client", "suspended");
    let managed = app
        .client
        .get(format!("{}{REGISTER}/{client_id}", app.base))
        .bearer_auth(&registration_token)
        .send()
        .await
        .unwrap();
    assert_eq!(managed.status(), 401);

    // Suspending again is refused as a conflict with the client's state (409, as the
    // OpenAPI document says), and the refusal is audited like the change was.
    admin_call(&app, reqwest::Method::POST, &format!("/admin/clients/{client_id}/suspend")).await.assert_error(
        409,
        "invalid_request",
        "is suspended, not active",
    );

    let shown = admin_call(&app, reqwest::Method::GET, &format!("/admin/clients/{client_id}")).await;
    assert_eq!(shown.body["client"]["status"], "suspended");
    let audit = shown.body["audit"].as_array().unwrap();
    let actions: Vec<&str> = audit.iter().map(|e| e["action"].as_str().unwrap()).collect();
    assert!(actions.contains(&"suspend") && actions.contains(&"register"), "{actions:?}");
    let suspensions: Vec<(&str, &str)> = audit
        .iter()
        .filter(|e| e["action"] == "suspend")
        .map(|e| (e["outcome"].as_str().unwrap(), e["detail"].as_str().unwrap_or_default()))
        .collect();
    assert_eq!(suspensions.len(), 2, "{suspensions:?}");
    assert!(suspensions.iter().any(|(outcome, detail)| *outcome == "success" && detail.contains(ADMIN)));
    assert!(suspensions.iter().any(|(outcome, detail)| *outcome == "invalid_request" && detail.contains(ADMIN)));

    let listed = admin_call(&app, reqwest::Method::GET, "/admin/clients?status=suspended").await;
    assert_eq!(listed.body["clients"].as_array().unwrap().len(), 1);
    let none = admin_call(&app, reqwest::Method::GET, "/admin/clients?org_id=someone-else").await;
    assert_eq!(none.body["clients"], json!([]));
    admin_call(&app, reqwest::Method::GET, "/admin/clients?status=sleepy").await.assert_error(
        400,
        "invalid_request",
        "sleepy",
    );

    let reactivated = admin_call(&app, reqwest::Method::POST, &format!("/admin/clients/{client_id}/reactivate")).await;
    assert_eq!(reactivated.body["client"]["status"], "active");
    assert_eq!(token(&app, &http, &client_id).await.status, 200);
    // Reactivating an active client is the same conflict, and changes nothing.
    admin_call(&app, reqwest::Method::POST, &format!("/admin/clients/{client_id}/reactivate")).await.assert_error(
        409,
        "invalid_request",
        "is active, not suspended",
    );
    assert_eq!(token(&app, &http, &client_id).await.status, 200);

    // The command line drives the same API. It runs off the test's runtime thread, which
    // also serves the requests it makes.
    let output = admin_cli(&app, &["list", "--software-id", SOFTWARE_ID]).await;
    assert!(output.status.success(), "{}", String::from_utf8_lossy(&output.stderr));
    let table = String::from_utf8_lossy(&output.stdout);
    assert!(table.contains(&client_id) && table.contains("active"), "{table}");
    let suspend = admin_cli(&app, &["suspend", &client_id]).await;
    assert!(suspend.status.success(), "{}", String::from_utf8_lossy(&suspend.stderr));
    token(&app, &http, &client_id).await.assert_error(401, "invalid_client", "suspended");
}

#[tokio::test]
async fn metrics_count_a_refused_registration_under_its_error_code() {
    let app = spawn_app_with(Options { metrics: true, ..Default::default() }).await;
    let bad = patch(app.request_claims(), json!({"redirect_uris": ["http://insecure.example/cb"]}));
    app.register_json(&bad).await.assert_error(400, "invalid_redirect_uri", "https");
    assert_eq!(app.register_json(&app.request_claims()).await.status, 201);
    let addr = app.metrics_addr.expect("metrics listener");
    // Plain HTTP on loopback: read it with a raw request to avoid a TLS-less reqwest build.
    use tokio::io::{AsyncReadExt, AsyncWriteExt};
    let mut tcp = tokio::net::TcpStream::connect(addr).await.unwrap();
    tcp.write_all(b"GET /metrics HTTP/1.1\r\nHost: localhost\r\nConnection: close\r\n\r\n").await.unwrap();
    let mut raw = Vec::new();
    tcp.read_to_end(&mut raw).await.unwrap();
    let body = String::from_utf8_lossy(&raw);
    assert!(
        body.contains("keyfort_registrations_total{outcome=\"refused\",error=\"invalid_redirect_uri\"} 1"),
        "{body}"
    );
    assert!(body.contains("keyfort_registrations_total{outcome=\"success\",error=\"\"} 1"), "{body}");
    assert!(body.contains("keyfort_jwks_fetches_total{result=\"success\"}"), "{body}");
    // The process, the build, the pool and the signing keys, read at each scrape.
    for line in [
        "process_cpu_seconds_total ",
        "process_resident_memory_bytes ",
        "process_open_fds ",
        "process_max_fds ",
        "process_start_time_seconds ",
        "keyfort_build_info{version=\"0.1.0\"} 1",
        "keyfort_db_pool_connections{state=\"idle\"} ",
        "keyfort_db_pool_connections{state=\"in_use\"} ",
        "keyfort_db_pool_max_connections 4",
        "keyfort_signing_key_age_seconds{alg=\"PS256\",kid=\"",
    ] {
        assert!(body.contains(line), "{line} missing from:\n{body}");
    }
    assert!(
        body.contains("keyfort_http_request_duration_seconds_bucket{route=\"/api/identity/oauth2/dcr/v1.1/register\""),
        "{body}"
    );
    // Metrics are not on the public port.
    assert_eq!(app.get("/metrics").await.status, 404);
}

#[tokio::test]
async fn readiness_follows_the_database_and_the_directory() {
    let app = spawn_app().await;
    assert_eq!(app.get("/healthz").await.status, 200);
    let ready = app.get("/readyz").await;
    assert_eq!(ready.status, 200, "{}", ready.body);
    let down = spawn_app().await;
    down.key_server.set(DIRECTORY_JWKS, Doc::Status(500));
    let not_ready = down.get("/readyz").await;
    assert_eq!(not_ready.status, 503);
    assert!(not_ready.body["problems"][0].as_str().unwrap().contains("directory keys"), "{}", not_ready.body);
}

#[tokio::test]
async fn logs_of_a_registration_and_token_request_carry_no_secret() {
    let app = spawn_app_with(Options::default().dcr("enable_fapi_enforcement = false")).await;
    let port = crate::crash::free_port();
    let config = std::fs::read_to_string(&app.config_path)
        .unwrap()
        .replacen("listen = \"127.0.0.1:0\"", &format!("listen = \"127.0.0.1:{port}\""), 1)
        .replace("data_dir = \"data\"", "data_dir = \"log-data\"")
        .replace("level = \"warn\"", "level = \"debug\"");
    let config_path = app.dir.path().join("logging.toml");
    std::fs::write(&config_path, config).unwrap();
    let log_path = app.dir.path().join("keyfort.log");
    let server = crate::crash::start_binary_logging(&config_path, port, &app.client, Some((&log_path, "debug"))).await;

    let base = format!("https://localhost:{port}");
    let claims = patch(
        app.request_claims(),
        json!({"token_endpoint_auth_method": "client_secret_basic", "tls_client_certificate_bound_access_tokens": false}),
    );
    let response = app
        .client
        .post(format!("{base}{REGISTER}"))
        .header("content-type", "application/json")
        .body(claims.to_string())
        .send()
        .await
        .unwrap();
    assert_eq!(response.status(), 201);
    let body: Value = response.json().await.unwrap();
    let client_id = body["client_id"].as_str().unwrap();
    let secret = body["client_secret"].as_str().unwrap();
    let registration_token = body["registration_access_token"].as_str().unwrap();
    let token_response = app
        .client
        .post(format!("{base}/oauth2/token"))
        .basic_auth(client_id, Some(secret))
        .header("content-type", "application/x-www-form-urlencoded")
        .body("grant_type=client_credentials")
        .send()
        .await
        .unwrap();
    assert_eq!(token_response.status(), 200);
    let access_token: Value = token_response.json().await.unwrap();
    let access_token = access_token["access_token"].as_str().unwrap().to_owned();
    let failed = app
        .client
        .post(format!("{base}/oauth2/token"))
        .basic_auth(client_id, Some("wrong-secret-value"))
        .header("content-type", "application/x-www-form-urlencoded")
        .body("grant_type=client_credentials")
        .send()
        .await
        .unwrap();
    assert_eq!(failed.status(), 401);
    drop(server);

    let log = std::fs::read_to_string(&log_path).unwrap();
    assert!(log.contains("client registered"), "the log was captured: {log}");
    let ssa = claims["software_statement"].as_str().unwrap();
    for (what, secret_value) in [
        ("software statement", ssa),
        ("software statement signature", ssa.rsplit('.').next().unwrap()),
        ("client secret", secret),
        ("wrong client secret", "wrong-secret-value"),
        ("registration access token", registration_token),
        ("access token", access_token.as_str()),
        ("access token signature", access_token.rsplit('.').next().unwrap()),
    ] {
        assert!(!log.contains(secret_value), "the log contains the {what}");
    }
}

/// Hardening issue, finding 5: a TPP's software JWKS whose `kid` holds a line break (and a
/// terminal escape, a Unicode line separator and a bidirectional override) cannot forge a
/// log line, in the text or the JSON format, when Keyfort logs the failure to use it.
#[tokio::test]
async fn outside_values_cannot_forge_log_lines() {
    const FORGED: &str = "2026-01-01T00:00:00.000000Z  INFO administrator ops@bank.example signed in";
    let app = spawn_app().await;
    // Short enough (under 128 characters) to be a kid the parser reads, so that the key
    // itself is what fails: an RSA key too small to accept. The failure names the key, and
    // is logged.
    let hostile_kid = format!("soft-ps256\n{FORGED}\u{2028}x\u{1b}[2K\u{85}\u{202e}");
    assert!(hostile_kid.chars().count() <= 128);
    app.key_server.set(
        &software_jwks_path(),
        Doc::Json(json!({"keys": [{"kty": "RSA", "kid": hostile_kid, "n": "AQAB", "e": "AQAB"}]})),
    );
    for format in ["text", "json"] {
        let port = crate::crash::free_port();
        let config = std::fs::read_to_string(&app.config_path)
            .unwrap()
            .replacen("listen = \"127.0.0.1:0\"", &format!("listen = \"127.0.0.1:{port}\""), 1)
            .replace("data_dir = \"data\"", &format!("data_dir = \"forge-{format}\""))
            .replace("level = \"warn\"", &format!("level = \"debug\"\nformat = \"{format}\""));
        let config_path = app.dir.path().join(format!("forge-{format}.toml"));
        std::fs::write(&config_path, config).unwrap();
        let log_path = app.dir.path().join(format!("forge-{format}.log"));
        let server =
            crate::crash::start_binary_logging(&config_path, port, &app.client, Some((&log_path, "debug"))).await;
        let response = app
            .client
            .post(format!("https://localhost:{port}{REGISTER}"))
            .header("content-type", "application/jose")
            .body(app.sign_request(&app.request_claims()))
            .send()
            .await
            .unwrap();
        let status = response.status().as_u16();
        let body: Value = response.json().await.unwrap();
        assert_eq!(status, 503, "{format}: {body}");
        drop(server);

        let log = std::fs::read_to_string(&log_path).unwrap();
        assert!(log.contains("administrator ops@bank.example signed in"), "{format}: the value was logged: {log}");
        for line in log.lines() {
            assert!(!line.starts_with("2026-01-01T00:00:00"), "{format}: a forged line: {line:?}\n{log}");
            assert!(
                !line.chars().any(|c| c.is_control() || matches!(c, '\u{2028}' | '\u{2029}' | '\u{202e}')),
                "{format}: a raw control or separator: {line:?}"
            );
            if format == "json" {
                let parsed: Result<Value, _> = serde_json::from_str(line);
                assert!(parsed.is_ok(), "json: not one JSON object per line: {line:?}");
            }
        }
        // Line-splitting that also honours NEL and U+2028 (as many viewers do) finds no
        // forged line either.
        let forged =
            log.split(['\n', '\u{85}', '\u{2028}', '\u{2029}']).filter(|l| l.starts_with("2026-01-01")).count();
        assert_eq!(forged, 0, "{format}: {log}");
    }
}
