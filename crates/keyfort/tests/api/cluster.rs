//! Several Keyfort processes (the real binary) on one PostgreSQL database: what one node
//! does, the others see at once (registrations, replayed assertions, revocations,
//! deletions, administrator lockouts), rotated keys reach every node within
//! `key_reload_seconds`, and nodes started together on an empty database agree on one first
//! signing key.
//!
//! Each node runs the configuration file of an in-process test server (which provides the
//! directory's and the TPP's keys and the PKI) with what differs per node set in its
//! environment, the way an operator runs N nodes from one file.

use std::path::{Path, PathBuf};
use std::process::{Command, Stdio};
use std::time::{Duration, Instant};

use serde_json::{json, Value};

use crate::crash::{free_port, Server};
use crate::helpers::*;
use crate::tokens::{form, Tpp};

/// How often the cluster's nodes re-read the signing keys: the bound a rotation is checked
/// against.
const KEY_RELOAD_SECONDS: u64 = 1;

/// One `keyfort serve` process.
pub struct Node {
    pub base: String,
    /// Its admin API, on a listener of its own.
    pub admin_base: String,
    pub log: PathBuf,
    /// Stops the process when the node is dropped.
    pub _process: Server,
}

impl Node {
    pub fn log_text(&self) -> String {
        std::fs::read_to_string(&self.log).unwrap_or_default()
    }
}

/// Starts `keyfort serve --config config` with `env` added to its environment, without
/// waiting for it. Its admin API listens on `admin_port`.
pub fn spawn_node(config: &Path, name: &str, port: u16, admin_port: u16, env: &[(&str, String)]) -> (Server, PathBuf) {
    let log = config.with_file_name(format!("{name}.log"));
    let file = std::fs::File::create(&log).unwrap();
    let mut command = Command::new(env!("CARGO_BIN_EXE_keyfort"));
    command
        .args(["serve", "--config"])
        .arg(config)
        .env("KEYFORT_SERVER__LISTEN", format!("127.0.0.1:{port}"))
        .env("KEYFORT_SERVER__DATA_DIR", format!("{name}-data"))
        .env("KEYFORT_ADMIN__LISTEN", format!("127.0.0.1:{admin_port}"))
        // Every node of a cluster opens the signing keys in the database with one
        // key-encryption key, as docs/deployment.md says to set up.
        .env("KEYFORT_STORAGE__KEY_ENCRYPTION_KEY", cluster_key_encryption_key())
        .env("RUST_LOG", "info")
        .stdin(Stdio::null())
        .stdout(file.try_clone().unwrap())
        .stderr(file);
    for (key, value) in env {
        command.env(key, value);
    }
    (Server(command.spawn().expect("the keyfort binary starts")), log)
}

/// Waits until the node on `port` answers; panics with its log if it does not.
pub async fn wait_for(client: &reqwest::Client, port: u16, log: &Path) {
    for _ in 0..150 {
        if client.get(format!("https://localhost:{port}/healthz")).send().await.is_ok() {
            return;
        }
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    panic!("the node on {port} did not start: {}", std::fs::read_to_string(log).unwrap_or_default());
}

/// Starts a node and waits for it.
pub async fn start_node(app: &TestApp, name: &str, env: &[(&str, String)]) -> Node {
    let (port, admin_port) = (free_port(), free_port());
    let (server, log) = spawn_node(&app.config_path, name, port, admin_port, env);
    wait_for(&app.client, port, &log).await;
    Node {
        base: format!("https://localhost:{port}"),
        admin_base: format!("https://localhost:{admin_port}"),
        log,
        _process: server,
    }
}

/// The key-encryption key every node (and `keyfort keys` command) of the test clusters
/// shares: the signing keys in the database open only with it.
pub fn cluster_key_encryption_key() -> String {
    static KEK: std::sync::OnceLock<String> = std::sync::OnceLock::new();
    KEK.get_or_init(|| keyfort::signing::KeyEncryptionKey::generate().to_text().trim().to_owned()).clone()
}

/// The environment of a cluster node on the database `url`.
fn cluster_env(url: &str) -> Vec<(&'static str, String)> {
    vec![
        ("KEYFORT_STORAGE__URL", url.to_owned()),
        ("KEYFORT_STORAGE__KEY_ENCRYPTION_KEY", cluster_key_encryption_key()),
        ("KEYFORT_OAUTH__TOKEN__KEY_RELOAD_SECONDS", KEY_RELOAD_SECONDS.to_string()),
    ]
}

fn kids(jwks: &Value) -> Vec<String> {
    let mut kids: Vec<String> =
        jwks["keys"].as_array().unwrap().iter().map(|k| k["kid"].as_str().unwrap().to_owned()).collect();
    kids.sort();
    kids
}

fn kid_of(token: &str) -> String {
    jsonwebtoken::decode_header(token).unwrap().kid.unwrap()
}

/// The requests of the test, sent to one node or another: `TestApp`'s helpers address
/// `app.base`, so pointing it at a node sends the next request there.
fn at(app: &mut TestApp, node: &Node) {
    app.base = node.base.clone();
}

async fn token(app: &TestApp, tpp: &Tpp, assertion: String) -> Reply {
    app.token_with_assertion(tpp, assertion, None).await
}

fn basic(name: &str, password: &str) -> String {
    use base64::Engine;
    format!("Basic {}", base64::engine::general_purpose::STANDARD.encode(format!("{name}:{password}")))
}

async fn admin_sign_in(app: &TestApp, node: &Node, name: &str, password: &str) -> u16 {
    let response = app
        .client
        .get(format!("{}/admin/clients", node.admin_base))
        .header("authorization", basic(name, password))
        .send()
        .await
        .unwrap();
    response.status().as_u16()
}

async fn jwks(app: &TestApp, node: &Node) -> Value {
    app.client.get(format!("{}/oauth2/jwks", node.base)).send().await.unwrap().json().await.unwrap()
}

#[tokio::test]
async fn two_nodes_on_one_database_act_as_one_server() {
    let Some(url) = postgres_test_database().await else { return };
    let mut app = spawn_app_with(Options::mutual_tls()).await;
    let env = cluster_env(&url);
    let a = start_node(&app, "node-a", &env).await;
    let b = start_node(&app, "node-b", &env).await;

    // Registered on A, a token on B.
    at(&mut app, &a);
    let tpp = app.onboard_private_key_jwt("accounts").await;
    at(&mut app, &b);
    let assertion = app.assertion(&tpp.client_id, json!({}));
    let issued = token(&app, &tpp, assertion.clone()).await;
    assert_eq!(issued.status, 200, "node B issues a token to a client registered on A: {}", issued.body);
    let access_token = issued.body["access_token"].as_str().unwrap().to_owned();

    // The same client assertion again, on B and on A: refused (the jti is shared).
    token(&app, &tpp, assertion.clone()).await.assert_error(401, "invalid_client", "");
    at(&mut app, &a);
    let replayed = token(&app, &tpp, assertion).await;
    replayed.assert_error(401, "invalid_client", "");
    assert!(replayed.body.to_string().contains("jti"), "refused as a replay: {}", replayed.body);

    // A token issued by B introspects active on A; revoked on A, inactive on B.
    assert_eq!(app.introspect_as(&tpp, &access_token).await.body["active"], true);
    let revoke = form(&[
        ("token", &access_token),
        ("client_assertion_type", "urn:ietf:params:oauth:client-assertion-type:jwt-bearer"),
        ("client_assertion", &app.assertion(&tpp.client_id, json!({}))),
    ]);
    assert_eq!(app.form_post(&tpp.http, "/oauth2/revoke", revoke, &[]).await.status, 200);
    at(&mut app, &b);
    assert_eq!(app.introspect_as(&tpp, &access_token).await.body["active"], false, "revoked on A, seen on B");

    // Deleted on A: B refuses it a token.
    at(&mut app, &a);
    let deleted = app.manage(&tpp, reqwest::Method::DELETE, &tpp.registration_token, None).await;
    assert_eq!(deleted.status, 204, "{}", deleted.body);
    at(&mut app, &b);
    token(&app, &tpp, app.assertion(&tpp.client_id, json!({}))).await.assert_error(
        401,
        "invalid_client",
        "not registered",
    );

    // Five failed sign-ins spread over A and B lock the administrator on both.
    let store = keyfort::storage::PostgresStore::open(&url).await.unwrap();
    let password = "a long operator password";
    keyfort::storage::Store::create_admin(&store, "ops", &keyfort::admin::hash_password(password).unwrap(), 0)
        .await
        .unwrap();
    assert_eq!(admin_sign_in(&app, &a, "ops", password).await, 200);
    for (n, node) in [&a, &b, &a, &b, &a].into_iter().enumerate() {
        assert_eq!(admin_sign_in(&app, node, "ops", "wrong guess").await, 401, "failure {n}");
    }
    assert_eq!(admin_sign_in(&app, &a, "ops", password).await, 429, "locked on A");
    assert_eq!(admin_sign_in(&app, &b, "ops", password).await, 429, "locked on B, which saw only two failures");
    // Unknown names are counted in each node's memory, never in the database.
    for node in [&a, &b] {
        assert_eq!(admin_sign_in(&app, node, "nobody", "wrong").await, 401);
    }
    let failures: i64 = sqlx::query_scalar("SELECT COUNT(*) FROM admin_sign_in_failures")
        .fetch_one(&pg_pool(&url).await)
        .await
        .unwrap();
    assert_eq!(failures, 1, "one row: the administrator's");

    // Rotation on A (by the command line, as an operator would): both nodes publish the key
    // within key_reload_seconds, and both sign with it once it is active.
    let tls = {
        at(&mut app, &a);
        app.onboard_tls_client_auth().await
    };
    let before = kids(&jwks(&app, &a).await);
    assert_eq!(before, kids(&jwks(&app, &b).await));
    let publish_ahead = 2 * KEY_RELOAD_SECONDS;
    let rotate = Command::new(env!("CARGO_BIN_EXE_keyfort"))
        .args(["keys", "rotate", "--config"])
        .arg(&app.config_path)
        .args(["--publish-ahead", &publish_ahead.to_string()])
        .envs(env.iter().map(|(k, v)| (*k, v.as_str())))
        .output()
        .unwrap();
    assert!(rotate.status.success(), "{}", String::from_utf8_lossy(&rotate.stderr));
    let rotated_at = Instant::now();
    let stored = keyfort::storage::Store::signing_keys(&store).await.unwrap();
    // The rotation adds a key of each algorithm; access tokens are signed with PS256.
    let new_kid = stored
        .into_iter()
        .filter(|k| k.alg == "PS256")
        .map(|k| k.kid)
        .find(|k| !before.contains(k))
        .expect("the rotation stored a key");
    for node in [&a, &b] {
        loop {
            if kids(&jwks(&app, node).await).contains(&new_kid) {
                break;
            }
            // The bound, with a second for the requests themselves.
            assert!(
                rotated_at.elapsed() < Duration::from_secs(KEY_RELOAD_SECONDS + 1),
                "{} did not publish {new_kid} within key_reload_seconds",
                node.base
            );
            tokio::time::sleep(Duration::from_millis(50)).await;
        }
    }
    tokio::time::sleep(Duration::from_secs(publish_ahead).saturating_sub(rotated_at.elapsed())).await;
    tokio::time::sleep(Duration::from_millis(200)).await;
    for (signer, verifier) in [(&a, &b), (&b, &a)] {
        at(&mut app, signer);
        let signed = app.tls_token(&tls).await;
        assert_eq!(kid_of(&signed), new_kid, "{} signs with the rotated key once it is active", signer.base);
        at(&mut app, verifier);
        let seen = app
            .form_post(&tls.http, "/oauth2/introspect", form(&[("token", &signed), ("client_id", &tls.client_id)]), &[])
            .await;
        assert_eq!(seen.body["active"], true, "{} accepts the token of {}: {}", verifier.base, signer.base, seen.body);
    }
    drop((a, b));
}

async fn pg_pool(url: &str) -> sqlx::PgPool {
    sqlx::postgres::PgPoolOptions::new().max_connections(1).connect(url).await.unwrap()
}

#[tokio::test]
async fn nodes_started_together_on_an_empty_database_share_one_first_key() {
    let Some(_) = postgres_test_database().await else { return };
    let mut app = spawn_app_with(Options::mutual_tls()).await;
    let admin_url = std::env::var("KEYFORT_TEST_POSTGRES_URL").unwrap();
    for round in 0..3 {
        let url = create_postgres_database(&admin_url).await;
        let env = cluster_env(&url);
        // Both processes are started before either is waited for.
        let (port_a, port_b) = (free_port(), free_port());
        let (admin_a, admin_b) = (free_port(), free_port());
        let (server_a, log_a) = spawn_node(&app.config_path, &format!("first-a{round}"), port_a, admin_a, &env);
        let (server_b, log_b) = spawn_node(&app.config_path, &format!("first-b{round}"), port_b, admin_b, &env);
        wait_for(&app.client, port_a, &log_a).await;
        wait_for(&app.client, port_b, &log_b).await;
        let a = Node {
            base: format!("https://localhost:{port_a}"),
            admin_base: format!("https://localhost:{admin_a}"),
            log: log_a,
            _process: server_a,
        };
        let b = Node {
            base: format!("https://localhost:{port_b}"),
            admin_base: format!("https://localhost:{admin_b}"),
            log: log_b,
            _process: server_b,
        };

        let rows: Vec<(String, String)> = sqlx::query_as("SELECT alg, kid FROM signing_keys ORDER BY kid")
            .fetch_all(&pg_pool(&url).await)
            .await
            .unwrap();
        let mut algs: Vec<&str> = rows.iter().map(|(alg, _)| alg.as_str()).collect();
        algs.sort();
        assert_eq!(algs, ["ES256", "PS256"], "round {round}: exactly one first key of each algorithm: {rows:?}");
        let access_kid = rows.iter().find(|(alg, _)| alg == "PS256").map(|(_, kid)| kid.clone()).unwrap();
        let mut keys: Vec<String> = rows.into_iter().map(|(_, kid)| kid).collect();
        keys.sort();
        // From their first requests, both publish it and sign with it, and each accepts the
        // other's tokens.
        assert_eq!(kids(&jwks(&app, &a).await), keys, "round {round}: A publishes the one key");
        assert_eq!(kids(&jwks(&app, &b).await), keys, "round {round}: B publishes the one key");
        at(&mut app, &a);
        let tls = app.onboard_tls_client_auth().await;
        let from_a = app.tls_token(&tls).await;
        at(&mut app, &b);
        let from_b = app.tls_token(&tls).await;
        assert_eq!((kid_of(&from_a), kid_of(&from_b)), (access_kid.clone(), access_kid.clone()));
        let introspect = |token: &str| form(&[("token", token), ("client_id", &tls.client_id)]);
        assert_eq!(app.form_post(&tls.http, "/oauth2/introspect", introspect(&from_a), &[]).await.body["active"], true);
        at(&mut app, &a);
        assert_eq!(app.form_post(&tls.http, "/oauth2/introspect", introspect(&from_b), &[]).await.body["active"], true);
        for alg in ["PS256", "ES256"] {
            let created = [&a, &b]
                .iter()
                .filter(|n| {
                    n.log_text()
                        .lines()
                        .any(|l| l.contains("created the first signing key of its algorithm") && l.contains(alg))
                })
                .count();
            assert_eq!(created, 1, "round {round}: one node created the first {alg} key, the other used it");
        }
    }
}
