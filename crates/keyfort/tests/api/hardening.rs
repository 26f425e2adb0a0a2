//! The hardening issue's findings that have no better home: refused anonymous requests do
//! not amplify into the database.

use keyfort::storage::Store;
use serde_json::Value;

use crate::helpers::*;

/// The bytes of the SQLite database with its write-ahead log.
/// The database's size as SQLite sees it (pages in use in the latest commit, wherever they
/// are): the files' sizes would count a page twice while a background checkpoint has copied
/// it from the WAL into the database file and the WAL not yet been reused.
async fn database_bytes(app: &TestApp) -> u64 {
    use sqlx::Connection;
    let mut connection =
        sqlx::SqliteConnection::connect(&format!("sqlite://{}", app.database_path().display())).await.unwrap();
    let pages: i64 = sqlx::query_scalar("PRAGMA page_count").fetch_one(&mut connection).await.unwrap();
    let page_size: i64 = sqlx::query_scalar("PRAGMA page_size").fetch_one(&mut connection).await.unwrap();
    connection.close().await.unwrap();
    u64::try_from(pages * page_size).unwrap()
}

async fn audit_lines(app: &TestApp) -> Vec<keyfort::storage::AuditEvent> {
    let store =
        keyfort::storage::SqliteStore::open(&format!("sqlite://{}", app.database_path().display())).await.unwrap();
    store.audit_events(None, 1_000_000).await.unwrap()
}

/// Hardening issue, finding 2: 300 `GET /register/<8 KB id>` with a bad token wrote 300
/// audit rows and 5.2 MB, each its own synced commit. A client_id that cannot be one is
/// refused before any lookup, at every endpoint that takes one, and writes nothing.
#[tokio::test]
async fn refused_anonymous_requests_do_not_amplify_into_the_database() {
    let app = spawn_app().await;
    let huge = "k".repeat(8 * 1024);
    let lines_before = audit_lines(&app).await.len();
    let bytes_before = database_bytes(&app).await;
    let mut descriptions = Vec::new();
    for path in [format!("{REGISTER}/{huge}"), format!("/register/{huge}")] {
        for _ in 0..50 {
            let response =
                app.client.get(format!("{}{path}", app.base)).bearer_auth("not-a-token").send().await.unwrap();
            assert_eq!(response.status(), 401);
            let body: Value = response.json().await.unwrap();
            descriptions.push(body["error_description"].as_str().unwrap().to_owned());
        }
        let deleted = app.client.delete(format!("{}{path}", app.base)).bearer_auth("x").send().await.unwrap();
        assert_eq!(deleted.status(), 401);
        let put = app
            .client
            .put(format!("{}{path}", app.base))
            .bearer_auth("x")
            .header("content-type", "application/json")
            .body("{}")
            .send()
            .await
            .unwrap();
        assert_eq!(put.status(), 401);
    }
    // The token endpoint (tls_client_auth's client_id) looks nothing up either.
    let token = app
        .client
        .post(format!("{}/oauth2/token", app.base))
        .header("content-type", "application/x-www-form-urlencoded")
        .body(format!("grant_type=client_credentials&client_id={huge}"))
        .send()
        .await
        .unwrap();
    assert_eq!(token.status(), 401);
    // Nor does the admin API, for a signed-in administrator: 404 with the shape, no line.
    add_admin(&app).await;
    let admin = app.client.clone();
    let (status, body) = admin_get(&admin, format!("{}/admin/clients/{huge}", app.admin_base)).await;
    assert_eq!(status, 404, "{body}");
    descriptions.push(body["error_description"].as_str().unwrap().to_owned());
    for action in ["suspend", "reactivate"] {
        let response = admin
            .post(format!("{}/admin/clients/{huge}/{action}", app.admin_base))
            .basic_auth(ADMIN, Some(PASSWORD))
            .send()
            .await
            .unwrap();
        assert_eq!(response.status(), 404, "{action}");
    }
    assert_eq!(audit_lines(&app).await.len(), lines_before, "a malformed client_id writes no audit line");
    let grown = database_bytes(&app).await.saturating_sub(bytes_before);
    assert!(grown < 64 * 1024, "the database grew by {grown} bytes");
    for description in descriptions {
        assert!(description.contains("is not a client_id"), "{description}");
        assert!(description.len() < 400, "the id is quoted bounded: {description}");
    }

    // A well-formed client_id that names nobody is still audited, in a line of bounded size.
    let unknown = "ZZZZZZZZZZZZZZZZZZZZZZZZZZZZZZZZ";
    let reply = app.client.get(format!("{}{REGISTER}/{unknown}", app.base)).bearer_auth("x").send().await.unwrap();
    assert_eq!(reply.status(), 401);
    let lines = audit_lines(&app).await;
    assert_eq!(lines.len(), lines_before + 1);
    let line = &lines[0];
    assert_eq!(line.client_id.as_deref(), Some(unknown));
    let size: usize = [&line.client_id, &line.detail, &line.peer, &line.cert_subject]
        .iter()
        .map(|f| f.as_ref().map_or(0, String::len))
        .sum();
    assert!(size < 2048, "{line:?}");
}

const ADMIN: &str = "ops@bank.example";
const PASSWORD: &str = "a long operator password";

async fn add_admin(app: &TestApp) {
    let store =
        keyfort::storage::SqliteStore::open(&format!("sqlite://{}", app.database_path().display())).await.unwrap();
    store.create_admin(ADMIN, &keyfort::admin::hash_password(PASSWORD).unwrap(), 0).await.unwrap();
}

async fn admin_get(client: &reqwest::Client, url: String) -> (u16, Value) {
    let response = client.get(url).basic_auth(ADMIN, Some(PASSWORD)).send().await.unwrap();
    let status = response.status().as_u16();
    (status, response.json().await.unwrap_or(Value::Null))
}

/// Hardening issue, finding 1: the admin API has a listener of its own (HTTPS with the
/// server's certificate, no client certificate asked even when the public port requires
/// one), and the public listener answers 404 for `/admin/*`, signed in or not.
#[tokio::test]
async fn the_admin_api_is_served_on_its_own_listener_only() {
    let app =
        spawn_app_with(Options::default().tls("client_ca_file = \"client-ca.pem\"").tls("client_auth = \"required\""))
            .await;
    add_admin(&app).await;
    assert_ne!(app.admin_base, app.base, "a listener of its own");
    // The public port: 404, before any sign-in (a client certificate is needed to get in
    // at all, since it requires one).
    let cert = app.pki.issue(&crate::pki::Subject::legacy_ob(ORG_ID, SOFTWARE_ID));
    let tpp = app.client_presenting(&cert);
    for (method, path) in [
        (reqwest::Method::GET, "/admin/clients"),
        (reqwest::Method::GET, "/admin/clients/abc"),
        (reqwest::Method::DELETE, "/admin/clients/abc"),
        (reqwest::Method::POST, "/admin/clients/abc/suspend"),
        (reqwest::Method::POST, "/admin/clients/abc/reactivate"),
    ] {
        let response = tpp
            .request(method.clone(), format!("{}{path}", app.base))
            .basic_auth(ADMIN, Some(PASSWORD))
            .send()
            .await
            .unwrap();
        assert_eq!(response.status(), 404, "{method} {path} on the public listener");
        let body: Value = response.json().await.unwrap();
        assert_eq!(body["error"], "invalid_request", "{body}");
    }
    // The admin listener: served, with the server's certificate and no client certificate.
    let (status, body) = admin_get(&app.client, format!("{}/admin/clients", app.admin_base)).await;
    assert_eq!(status, 200, "{body}");
    assert!(body["clients"].is_array(), "{body}");
    let anonymous = app.client.get(format!("{}/admin/clients", app.admin_base)).send().await.unwrap();
    assert_eq!(anonymous.status(), 401);
    // Only the admin API (and a health probe) lives there.
    assert_eq!(app.client.get(format!("{}/healthz", app.admin_base)).send().await.unwrap().status(), 200);
    let register = app.client.post(format!("{}{REGISTER}", app.admin_base)).send().await.unwrap();
    assert_eq!(register.status(), 404);
}

#[tokio::test]
async fn the_admin_api_can_stay_on_the_public_listener() {
    let app = spawn_app_with(Options::default().admin_on_public()).await;
    add_admin(&app).await;
    assert_eq!(app.admin_base, app.base);
    let (status, body) = admin_get(&app.client, format!("{}/admin/clients", app.base)).await;
    assert_eq!(status, 200, "{body}");
}

/// `keyfort admin clients --config FILE` finds the admin listener from the configuration.
#[tokio::test]
async fn the_admin_cli_finds_the_admin_listener_from_the_configuration() {
    let app = spawn_app().await;
    let (port, admin_port) = (crate::crash::free_port(), crate::crash::free_port());
    let config = std::fs::read_to_string(&app.config_path)
        .unwrap()
        .replacen("listen = \"127.0.0.1:0\"", &format!("listen = \"127.0.0.1:{port}\""), 1)
        .replacen("listen = \"127.0.0.1:0\"", &format!("listen = \"127.0.0.1:{admin_port}\""), 1)
        .replace("data_dir = \"data\"", "data_dir = \"cli-data\"");
    let config_path = app.dir.path().join("cli.toml");
    std::fs::write(&config_path, config).unwrap();
    let _server = crate::crash::start_binary(&config_path, port, &app.client).await;
    let store = keyfort::storage::SqliteStore::open(&format!(
        "sqlite://{}",
        app.dir.path().join("cli-data").join("keyfort.db").display()
    ))
    .await
    .unwrap();
    store.create_admin(ADMIN, &keyfort::admin::hash_password(PASSWORD).unwrap(), 0).await.unwrap();
    let cli = |args: Vec<String>| {
        let mut command = std::process::Command::new(env!("CARGO_BIN_EXE_keyfort"));
        command.args(["admin", "clients", "--user", ADMIN]).args(args).env("KEYFORT_ADMIN_PASSWORD", PASSWORD);
        command.output().unwrap()
    };
    let ca = app.dir.path().join("ca.pem").display().to_string();
    let listed =
        cli(vec!["--config".into(), config_path.display().to_string(), "--cacert".into(), ca.clone(), "list".into()]);
    let stdout = String::from_utf8_lossy(&listed.stdout);
    assert!(listed.status.success(), "{stdout}{}", String::from_utf8_lossy(&listed.stderr));
    assert!(stdout.contains("CLIENT_ID"), "{stdout}");
    // The public port is not the admin API.
    let public =
        cli(vec!["--server".into(), format!("https://localhost:{port}"), "--cacert".into(), ca, "list".into()]);
    assert!(!public.status.success());
    assert!(String::from_utf8_lossy(&public.stderr).contains("404"), "{}", String::from_utf8_lossy(&public.stderr));
}

#[cfg(unix)]
fn mode(path: &std::path::Path) -> u32 {
    use std::os::unix::fs::PermissionsExt;
    std::fs::metadata(path).unwrap_or_else(|e| panic!("{}: {e}", path.display())).permissions().mode() & 0o777
}

async fn stored_keys(database: &std::path::Path) -> Vec<keyfort::storage::StoredSigningKey> {
    let store = keyfort::storage::SqliteStore::open(&format!("sqlite://{}", database.display())).await.unwrap();
    store.signing_keys().await.unwrap()
}

/// Whether a stored value is a usable private key without any other secret: what a
/// database backup would give away.
fn usable_without_the_kek(stored: &keyfort::storage::StoredSigningKey) -> bool {
    use base64::Engine;
    let alg: keyfort_core::jose::SigningAlg = stored.alg.parse().unwrap();
    base64::engine::general_purpose::STANDARD
        .decode(&stored.private_key_pkcs8_b64)
        .ok()
        .is_some_and(|der| keyfort_core::jose::SigningKey::from_pkcs8_der(alg, &stored.kid, &der).is_ok())
}

/// Signing keys at rest: encrypted under a key-encryption key created owner-only in the
/// data directory (which, with the database, is owner-only too); a database copy alone
/// holds no usable key.
#[cfg(unix)]
#[tokio::test]
async fn signing_keys_are_encrypted_at_rest_and_secrets_are_owner_only() {
    let app = spawn_app().await;
    let data = app.dir.path().join("data");
    let keys = stored_keys(&app.database_path()).await;
    assert!(!keys.is_empty());
    for key in &keys {
        assert!(key.private_key_pkcs8_b64.starts_with("kek1."), "{key:?}");
        assert!(!usable_without_the_kek(key), "{}: a database backup could mint tokens", key.kid);
    }
    let kek = data.join("key-encryption.key");
    assert_eq!(mode(&data), 0o700, "the data directory");
    assert_eq!(mode(&kek), 0o600, "the key-encryption key");
    assert_eq!(mode(&app.database_path()), 0o600, "the database");
    assert_eq!(mode(&app.database_path().with_extension("db-wal")), 0o600, "its write-ahead log");
    // The keys still sign: a token verifies with the published keys.
    assert_eq!(app.get("/oauth2/jwks").await.body["keys"].as_array().unwrap().len(), keys.len());
}

/// A database whose signing keys an earlier version stored in clear: they are encrypted on
/// the first start after the upgrade, keep their kids, and keep signing.
#[tokio::test]
async fn keys_stored_in_clear_are_encrypted_on_the_first_start_after_an_upgrade() {
    use base64::Engine;
    let dir = tempfile::tempdir().unwrap();
    let database = dir.path().join("upgraded.db");
    let url = format!("sqlite://{}", database.display());
    let old =
        keyfort_core::jose::SigningKey::generate(keyfort_core::jose::SigningAlg::PS256, "1700000000-old").unwrap();
    {
        let store = keyfort::storage::SqliteStore::open(&url).await.unwrap();
        store
            .add_signing_key(&keyfort::storage::StoredSigningKey {
                kid: "1700000000-old".into(),
                alg: "PS256".into(),
                private_key_pkcs8_b64: base64::engine::general_purpose::STANDARD.encode(old.to_pkcs8_der()),
                created_at: 1_700_000_000,
                activates_at: 1_700_000_000,
            })
            .await
            .unwrap();
    }
    let app = spawn_app_with(Options { storage_url: Some(url), ..Options::default() }).await;
    let keys = stored_keys(&database).await;
    let upgraded = keys.iter().find(|k| k.kid == "1700000000-old").expect("the old key is kept");
    assert!(upgraded.private_key_pkcs8_b64.starts_with("kek1."), "{upgraded:?}");
    assert!(keys.iter().all(|k| !usable_without_the_kek(k)), "{keys:?}");
    let jwks = app.get("/oauth2/jwks").await.body;
    assert!(jwks["keys"].as_array().unwrap().iter().any(|k| k["kid"] == "1700000000-old"), "{jwks}");
}

/// `keyfort keys rewrap` moves every key to a new key-encryption key; the server then
/// starts with the new key, and no longer with the old one, which names the mismatch.
#[tokio::test]
async fn keys_are_rewrapped_under_a_new_key_encryption_key() {
    let mut app = spawn_app().await;
    let before: Vec<String> = stored_keys(&app.database_path()).await.into_iter().map(|k| k.kid).collect();
    let new_kek = app.dir.path().join("secrets/kek-2");
    let output = std::process::Command::new(env!("CARGO_BIN_EXE_keyfort"))
        .args(["keys", "rewrap", "--config"])
        .arg(&app.config_path)
        .arg("--new-key-file")
        .arg(&new_kek)
        .output()
        .unwrap();
    let stdout = String::from_utf8_lossy(&output.stdout);
    assert!(output.status.success(), "{stdout}{}", String::from_utf8_lossy(&output.stderr));
    assert!(stdout.contains(&format!("rewrapped {} signing key(s)", before.len())), "{stdout}");
    #[cfg(unix)]
    assert_eq!(mode(&new_kek), 0o600);
    let new_id = keyfort::signing::KeyEncryptionKey::from_text(&std::fs::read_to_string(&new_kek).unwrap())
        .unwrap()
        .id()
        .to_owned();
    let keys = stored_keys(&app.database_path()).await;
    assert!(keys.iter().all(|k| k.private_key_pkcs8_b64.starts_with(&format!("kek1.{new_id}."))), "{keys:?}");

    // The old key-encryption key (still configured) no longer opens them: named clearly.
    let config = keyfort::config::Config::load(&app.config_path).unwrap();
    let refused = keyfort::Application::build(config).await.err().expect("the old key cannot open the keys");
    let message = format!("{refused:#}");
    assert!(message.contains(&format!("encrypted with key-encryption key {new_id}")), "{message}");
    // Configured with the new one, the server starts and publishes the same keys.
    let text = std::fs::read_to_string(&app.config_path).unwrap();
    std::fs::write(
        &app.config_path,
        format!("{text}\n[storage]\nkey_encryption_key_file = \"{}\"\n", new_kek.display()),
    )
    .unwrap();
    app.restart().await;
    let jwks = app.get("/oauth2/jwks").await.body;
    let mut published: Vec<String> =
        jwks["keys"].as_array().unwrap().iter().map(|k| k["kid"].as_str().unwrap().to_owned()).collect();
    let mut before = before;
    published.sort();
    before.sort();
    assert_eq!(published, before);
    // Running it again changes nothing.
    let again = std::process::Command::new(env!("CARGO_BIN_EXE_keyfort"))
        .args(["keys", "rewrap", "--config"])
        .arg(&app.config_path)
        .arg("--new-key-file")
        .arg(&new_kek)
        .output()
        .unwrap();
    assert!(!again.status.success(), "the new key is the configured one already");
}
