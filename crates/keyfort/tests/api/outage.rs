//! A database that fails under a running server: every endpoint answers 503
//! `temporarily_unavailable` with `Retry-After`, the log names the cause and the request
//! id, `/readyz` reports the database, and a token whose revocation cannot be checked is
//! neither active nor invalid: its check answers 503.

use serde_json::json;

use crate::cluster::start_node;
use crate::helpers::*;
use crate::tokens::form;

#[track_caller]
fn assert_storage_unavailable(reply: &Reply, what: &str) {
    reply.assert_error(503, "temporarily_unavailable", "database");
    let retry_after = reply.headers.get("retry-after").map(|v| v.to_str().unwrap().to_owned());
    assert_eq!(retry_after.as_deref(), Some("5"), "{what}: Retry-After");
}

async fn readiness(app: &TestApp) -> Reply {
    let reply = app.get("/readyz").await;
    assert_eq!(reply.status, 503, "{}", reply.body);
    assert!(reply.body["problems"].as_array().unwrap().contains(&json!("database")), "{}", reply.body);
    reply
}

#[tokio::test]
async fn a_sqlite_database_removed_under_the_server_answers_503_logged_with_the_request_id() {
    let mut app = spawn_app().await;
    let node = start_node(&app, "outage", &[]).await;
    app.base = node.base.clone();
    assert_eq!(app.register_json(&app.request_claims()).await.status, 201);

    // The disk goes away: the database file, its journal and its directory.
    std::fs::remove_dir_all(app.config_path.with_file_name("outage-data")).unwrap();
    let claims = app.request_claims();
    let response = app
        .client
        .post(format!("{}{REGISTER}", app.base))
        .header("content-type", "application/json")
        .body(claims.to_string())
        .send()
        .await
        .unwrap();
    let request_id = response.headers()["x-request-id"].to_str().unwrap().to_owned();
    let headers = response.headers().clone();
    let reply = Reply { status: response.status().as_u16(), body: response.json().await.unwrap(), headers };
    assert_storage_unavailable(&reply, "registration");
    readiness(&app).await;

    let log = node.log_text();
    let line = log
        .lines()
        .find(|l| l.contains("storage unavailable") && l.contains(&request_id))
        .unwrap_or_else(|| panic!("no log line names the failure with request id {request_id}:\n{log}"));
    // From a pooled connection SQLite says it cannot open the file; the writer, which
    // checks the file before each group commit, says it is gone.
    assert!(
        line.contains("unable to open database file") || line.contains("keyfort.db is gone or unreadable"),
        "the line names the cause: {line}"
    );
}

#[tokio::test]
async fn a_dropped_postgres_database_answers_503_and_fails_readiness() {
    let Some(url) = postgres_test_database().await else { return };
    let app = spawn_app_with(Options { storage_url: Some(url.clone()), ..Options::default() }).await;
    assert_eq!(app.register_json(&app.request_claims()).await.status, 201);
    assert_eq!(app.get("/readyz").await.status, 200);

    let name = url::Url::parse(&url).unwrap().path().trim_start_matches('/').to_owned();
    let admin_url = std::env::var("KEYFORT_TEST_POSTGRES_URL").unwrap();
    use sqlx::Connection;
    let mut admin = sqlx::PgConnection::connect(&admin_url).await.unwrap();
    sqlx::query(&format!("DROP DATABASE {name} WITH (FORCE)")).execute(&mut admin).await.unwrap();

    assert_storage_unavailable(&app.register_json(&app.request_claims()).await, "registration");
    let token = app
        .post(TOKEN_PATH, Some("application/x-www-form-urlencoded"), "grant_type=client_credentials&client_id=x")
        .await;
    assert_storage_unavailable(&token, "token");
    readiness(&app).await;
}

const TOKEN_PATH: &str = "/oauth2/token";

/// Breaks the revocation list of the database at `url` (a table that disappears is what a
/// half-applied restore or a bad manual change looks like).
async fn drop_revocations(url: &str) {
    if url.starts_with("sqlite:") {
        let pool = sqlx::SqlitePool::connect(url).await.unwrap();
        sqlx::query("DROP TABLE revoked_tokens").execute(&pool).await.unwrap();
        pool.close().await;
    } else {
        let pool = sqlx::PgPool::connect(url).await.unwrap();
        sqlx::query("DROP TABLE revoked_tokens").execute(&pool).await.unwrap();
        pool.close().await;
    }
}

#[tokio::test]
async fn a_token_whose_revocation_cannot_be_checked_is_neither_active_nor_invalid() {
    let postgres = postgres_test_database().await;
    for storage_url in [None, postgres] {
        let options = Options { storage_url: storage_url.clone(), ..Options::mutual_tls() };
        let app = spawn_app_with(options).await;
        let url = storage_url.unwrap_or_else(|| format!("sqlite://{}", app.database_path().display()));
        let tpp = app.onboard_tls_client_auth().await;
        let access_token = app.tls_token(&tpp).await;
        let introspect = || form(&[("token", &access_token), ("client_id", &tpp.client_id)]);
        assert_eq!(app.form_post(&tpp.http, "/oauth2/introspect", introspect(), &[]).await.body["active"], true);

        drop_revocations(&url).await;
        let seen = app.form_post(&tpp.http, "/oauth2/introspect", introspect(), &[]).await;
        assert_storage_unavailable(&seen, &format!("{url}: introspection"));
        let response = tpp
            .http
            .get(format!("{}{REGISTER}/{}", app.base, tpp.client_id))
            .bearer_auth(&access_token)
            .send()
            .await
            .unwrap();
        assert_eq!(response.status(), 503, "{url}: management with an access token: not 401");
        assert_eq!(response.headers()["retry-after"], "5");
        // The registration access token needs no revocation check: it still works.
        let response = tpp
            .http
            .get(format!("{}{REGISTER}/{}", app.base, tpp.client_id))
            .bearer_auth(&tpp.registration_token)
            .send()
            .await
            .unwrap();
        assert_eq!(response.status(), 200, "{url}");
    }
}
