//! What an operator sees with the real binary: an access line per request, each refusal
//! once at INFO with its reason, request id, software and organisation, readiness failures
//! when they start and end, and the audit trail through `GET /admin/audit` and `keyfort
//! admin audit export`, with RFC 3339 times.

use base64::Engine;
use serde_json::{json, Value};

use crate::crash::{free_port, start_binary_logging};
use crate::helpers::*;
use crate::pki::Subject;

const ADMIN: &str = "auditor@bank.example";
const PASSWORD: &str = "a long auditor password";

/// The log's JSON lines.
fn json_lines(log: &str) -> Vec<Value> {
    log.lines().filter_map(|l| serde_json::from_str::<Value>(l).ok()).collect()
}

/// An access log line: message "request", with the route template.
fn is_access(line: &Value) -> bool {
    line["fields"]["message"] == "request" && line["fields"]["route"].is_string()
}

/// A copy of the test app's configuration for the binary: a fixed port, its own data
/// directory, JSON logs, and `extra` appended.
fn binary_config(app: &TestApp, port: u16, name: &str, extra: &str) -> std::path::PathBuf {
    let text = std::fs::read_to_string(&app.config_path)
        .unwrap()
        // The admin API on the public listener: the test reads the audit trail there.
        .replace("[admin]\nlisten = \"127.0.0.1:0\"", "[admin]\nlisten = \"public\"")
        .replacen("listen = \"127.0.0.1:0\"", &format!("listen = \"127.0.0.1:{port}\""), 1)
        .replace("data_dir = \"data\"", &format!("data_dir = \"{name}-data\""))
        .replace("[log]\n", "[log]\nformat = \"json\"\n")
        .replace("[http_client]\n", "[http_client]\njwks_min_refresh_seconds = 0\n");
    let path = app.dir.path().join(format!("{name}.toml"));
    std::fs::write(&path, format!("{text}\n{extra}")).unwrap();
    path
}

#[tokio::test]
async fn refusals_and_requests_are_logged_and_the_audit_trail_can_be_read_and_exported() {
    let app = spawn_app_with(Options::mutual_tls()).await;
    let port = free_port();
    let config = binary_config(&app, port, "logged", "");
    app.key_server.set(DIRECTORY_JWKS, Doc::Status(500));
    let log_path = app.dir.path().join("keyfort.log");
    let server = start_binary_logging(&config, port, &app.client, Some((&log_path, "info"))).await;
    let base = format!("https://localhost:{port}");

    // Readiness: the directory fails for three probes, then recovers.
    for _ in 0..3 {
        let probe = app.client.get(format!("{base}/readyz")).send().await.unwrap();
        assert_eq!(probe.status(), 503);
    }
    app.key_server
        .set(DIRECTORY_JWKS, Doc::Json(json!({"keys": [app.keys.directory_ps.jwk(), app.keys.directory_es.jwk()]})));
    assert_eq!(app.client.get(format!("{base}/readyz")).send().await.unwrap().status(), 200);

    // A registration with another organisation's certificate: 403.
    let stranger = app.pki.issue(&Subject::legacy_ob("0015800001OTHERORG", SOFTWARE_ID));
    let refused = app
        .client_presenting(&stranger)
        .post(format!("{base}{REGISTER}"))
        .header("content-type", "application/jose")
        .header("x-request-id", "refused-request-1")
        .body(app.sign_request(&app.request_claims()))
        .send()
        .await
        .unwrap();
    assert_eq!(refused.status(), 403);
    // The same software with its own certificate: 201.
    let own = app.pki.issue(&Subject::legacy_ob(ORG_ID, SOFTWARE_ID));
    let registered = app
        .client_presenting(&own)
        .post(format!("{base}{REGISTER}"))
        .header("content-type", "application/jose")
        .body(app.sign_request(&app.request_claims()))
        .send()
        .await
        .unwrap();
    assert_eq!(registered.status(), 201);
    let client_id = registered.json::<Value>().await.unwrap()["client_id"].as_str().unwrap().to_owned();

    // The audit trail, through the API and the command line.
    add_admin(&app, "logged-data").await;
    let auth = format!("Basic {}", base64::engine::general_purpose::STANDARD.encode(format!("{ADMIN}:{PASSWORD}")));
    let page: Value = app
        .client
        .get(format!("{base}/admin/audit?outcome=refused&action=register&since=2020-01-01"))
        .header("authorization", &auth)
        .send()
        .await
        .unwrap()
        .json()
        .await
        .unwrap();
    let events = page["events"].as_array().unwrap();
    assert_eq!(events.len(), 1, "{page}");
    let event = &events[0];
    assert_eq!(event["outcome"], "unapproved_software_statement", "{event}");
    assert_eq!((event["software_id"].as_str(), event["org_id"].as_str()), (Some(SOFTWARE_ID), Some(ORG_ID)), "{event}");
    assert!(event["at"].as_str().unwrap().ends_with('Z') && event["at"].as_str().unwrap().contains('T'), "{event}");
    assert!(page["next"].is_null(), "{page}");
    let bad = app
        .client
        .get(format!("{base}/admin/audit?since=yesterday"))
        .header("authorization", &auth)
        .send()
        .await
        .unwrap();
    assert_eq!(bad.status(), 400);
    assert!(bad.text().await.unwrap().contains("RFC 3339"));
    let anonymous = app.client.get(format!("{base}/admin/audit")).send().await.unwrap();
    assert_eq!(anonymous.status(), 401);

    let export_file = app.dir.path().join("audit.jsonl");
    let mut command = std::process::Command::new(env!("CARGO_BIN_EXE_keyfort"));
    command
        .args(["admin", "audit", "--server", &base, "--user", ADMIN, "--cacert"])
        .arg(app.dir.path().join("ca.pem"))
        .args(["export", "--since", "2020-01-01T00:00:00Z", "--format", "jsonl", "--out"])
        .arg(&export_file)
        .env("KEYFORT_ADMIN_PASSWORD", PASSWORD);
    let exported = tokio::task::spawn_blocking(move || command.output().unwrap()).await.unwrap();
    assert!(exported.status.success(), "{}", String::from_utf8_lossy(&exported.stderr));
    let lines: Vec<Value> = std::fs::read_to_string(&export_file)
        .unwrap()
        .lines()
        .map(|l| serde_json::from_str(l).expect("one JSON object per line"))
        .collect();
    let register: Vec<&Value> = lines.iter().filter(|l| l["action"] == "register").collect();
    assert_eq!(register.len(), 2, "{lines:#?}");
    assert_eq!(register[1]["outcome"], "success");
    assert_eq!(register[1]["client_id"], client_id.as_str());
    assert!(lines.iter().all(|l| l["at"].as_str().is_some_and(|t| t.len() == 20 && t.ends_with('Z'))), "{lines:#?}");
    drop(server);

    let log = std::fs::read_to_string(&log_path).unwrap();
    assert!(!log.contains('\u{1b}'), "no colour escapes in a log file");
    let lines = json_lines(&log);
    assert!(lines.len() > 5, "the log is JSON lines: {log}");
    let message = |l: &Value| l["fields"]["message"].as_str().unwrap_or_default().to_owned();

    let refusals: Vec<&Value> = lines.iter().filter(|l| message(l) == "request refused").collect();
    let refusal =
        refusals.iter().find(|l| l["fields"]["status"] == 403).unwrap_or_else(|| panic!("the 403 is logged: {log}"));
    assert_eq!(refusals.iter().filter(|l| l["fields"]["status"] == 403).count(), 1, "logged once: {log}");
    assert_eq!(refusal["level"], "INFO");
    assert_eq!(refusal["fields"]["error"], "unapproved_software_statement");
    assert!(refusal["fields"]["reason"].as_str().unwrap().contains("organisation"), "{refusal}");
    assert_eq!(refusal["fields"]["software_id"], SOFTWARE_ID);
    assert_eq!(refusal["fields"]["org_id"], ORG_ID);
    assert_eq!(refusal["span"]["id"], "refused-request-1", "the request id: {refusal}");

    let access: Vec<&Value> = lines.iter().filter(|l| is_access(l)).collect();
    let refused_access = access
        .iter()
        .find(|l| l["fields"]["request_id"] == "refused-request-1")
        .unwrap_or_else(|| panic!("access line: {log}"));
    assert_eq!(refused_access["fields"]["status"], 403);
    assert_eq!(refused_access["fields"]["method"], "POST");
    assert_eq!(refused_access["fields"]["route"], REGISTER);
    assert!(refused_access["fields"]["duration_ms"].as_f64().is_some(), "{refused_access}");
    let registered_access =
        access.iter().find(|l| l["fields"]["status"] == 201).unwrap_or_else(|| panic!("the 201 is logged: {log}"));
    assert_eq!(registered_access["fields"]["client_id"], client_id.as_str());
    let audit_access = access.iter().find(|l| l["fields"]["route"] == "/admin/audit").expect("admin calls too");
    assert!(audit_access["fields"]["status"].is_number());

    let not_ready: Vec<&Value> = lines.iter().filter(|l| message(l).starts_with("not ready")).collect();
    assert_eq!(not_ready.len(), 1, "logged when it starts failing, not per probe: {not_ready:#?}");
    assert_eq!(not_ready[0]["level"], "WARN");
    assert_eq!(lines.iter().filter(|l| message(l).starts_with("ready again")).count(), 1, "{log}");
    let load_failures = lines
        .iter()
        .filter(|l| message(l) == "JWKS could not be loaded" || message(l).contains("refresh failed"))
        .count();
    assert!(load_failures <= 1, "a lasting directory failure is logged once: {log}");
    assert!(!lines.iter().any(|l| l["level"] == "ERROR"), "{log}");
}

#[tokio::test]
async fn the_access_log_can_be_turned_off() {
    let app = spawn_app().await;
    let port = free_port();
    let config = binary_config(&app, port, "quiet", "");
    let text = std::fs::read_to_string(&config).unwrap().replace("[log]\n", "[log]\naccess_log = false\n");
    std::fs::write(&config, text).unwrap();
    let log_path = app.dir.path().join("quiet.log");
    let server = start_binary_logging(&config, port, &app.client, Some((&log_path, "info"))).await;
    let missing = app.client.get(format!("https://localhost:{port}/no-such-path")).send().await.unwrap();
    assert_eq!(missing.status(), 404);
    drop(server);
    let log = std::fs::read_to_string(&log_path).unwrap();
    let lines = json_lines(&log);
    assert!(lines.iter().any(|l| l["fields"]["message"] == "request refused"), "refusals are still logged: {log}");
    assert!(!lines.iter().any(is_access), "{log}");
}

async fn add_admin(app: &TestApp, data_dir: &str) {
    use keyfort::storage::Store;
    let path = app.dir.path().join(data_dir).join("keyfort.db");
    let store = keyfort::storage::SqliteStore::open(&format!("sqlite://{}", path.display())).await.unwrap();
    store.create_admin(ADMIN, &keyfort::admin::hash_password(PASSWORD).unwrap(), 0).await.unwrap();
}
