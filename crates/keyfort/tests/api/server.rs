//! The server as an operator meets it: TLS set-up, durability across restarts, and
//! start-up errors.

use crate::helpers::*;

#[tokio::test]
async fn a_restart_keeps_clients_and_still_refuses_a_replayed_jti() {
    let mut app = spawn_app_with(Options::default().dcr("one_registration_per_software = false")).await;
    let claims = app.request_claims();
    let reply = app.register_json(&claims).await;
    assert_eq!(reply.status, 201);
    let client_id = reply.body["client_id"].as_str().unwrap().to_owned();

    app.restart().await;

    app.register_json(&claims).await.assert_error(400, "invalid_client_metadata", "already been used");
    let store =
        keyfort::storage::SqliteStore::open(&format!("sqlite://{}", app.database_path().display())).await.unwrap();
    use keyfort::storage::Store;
    let stored = store.find_client(&client_id).await.unwrap().expect("the client survived the restart");
    assert_eq!(stored.software_id.as_deref(), Some(SOFTWARE_ID));
    assert_eq!(stored.org_id.as_deref(), Some(ORG_ID));
    assert_eq!(stored.software_statement.as_deref(), claims["software_statement"].as_str());
}

#[tokio::test]
async fn one_registration_per_software_holds_across_restarts() {
    let mut app = spawn_app().await;
    assert_eq!(app.register_json(&app.request_claims()).await.status, 201);
    app.restart().await;
    app.register_json(&app.request_claims()).await.assert_error(
        400,
        "invalid_client_metadata",
        "already has an active registration",
    );
}

#[tokio::test]
async fn without_tls_files_a_development_certificate_is_created_and_reused() {
    let mut app = spawn_app_with(Options { configure_tls: false, ..Default::default() }).await;
    let cert_path = app.dir.path().join("data/dev-tls/cert.pem");
    let first = std::fs::read_to_string(&cert_path).expect("a development certificate was written");
    app.client = test_client(Some(&first));
    assert_eq!(app.get("/healthz").await.status, 200);

    app.restart().await;
    let second = std::fs::read_to_string(&cert_path).unwrap();
    assert_eq!(first, second, "the development certificate is reused, not regenerated");
    assert_eq!(app.get("/healthz").await.status, 200);
}

#[tokio::test]
async fn a_configured_but_missing_certificate_is_a_startup_error() {
    let app = spawn_app().await;
    std::fs::remove_file(app.dir.path().join("server.pem")).unwrap();
    let config = keyfort::config::Config::load(&app.config_path).unwrap();
    let err = keyfort::Application::build(config).await.err().expect("start-up must fail");
    let message = format!("{err:#}");
    assert!(message.contains("cert_file") && message.contains("server.pem"), "{message}");
    assert!(!app.dir.path().join("data/dev-tls").exists(), "no self-signed fallback");
}

#[tokio::test]
async fn plain_http_to_the_tls_port_gets_no_service() {
    use tokio::io::{AsyncReadExt, AsyncWriteExt};
    let app = spawn_app().await;
    let port = app.base.rsplit(':').next().unwrap();
    let mut tcp = tokio::net::TcpStream::connect(format!("127.0.0.1:{port}")).await.unwrap();
    tcp.write_all(b"GET /healthz HTTP/1.1\r\nHost: localhost\r\n\r\n").await.unwrap();
    let mut answer = Vec::new();
    let _ = tcp.read_to_end(&mut answer).await;
    assert!(!String::from_utf8_lossy(&answer).contains("200 OK"), "plain HTTP must not be served");
}

#[tokio::test]
async fn config_errors_name_the_file_and_key() {
    let app = spawn_app().await;
    let text = std::fs::read_to_string(&app.config_path).unwrap() + "mandate_sas = true\n";
    std::fs::write(&app.config_path, text).unwrap();
    let err = keyfort::config::Config::load(&app.config_path).unwrap_err().to_string();
    assert!(err.contains("keyfort.toml") && err.contains("mandate_sas"), "{err}");
}

#[test]
fn the_shipped_example_configurations_are_valid() {
    let root = std::path::Path::new(env!("CARGO_MANIFEST_DIR")).join("../..");
    for file in ["keyfort.example.toml", "examples/behind-nginx.toml", "examples/production.toml"] {
        if let Err(e) = keyfort::config::Config::load(&root.join(file)) {
            panic!("{file}: {e}");
        }
    }
}
