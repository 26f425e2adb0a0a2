//! Operating the database: `keyfort migrate` (and `serve` that does not migrate), the
//! database URL from the environment or a file, TLS to PostgreSQL, and `keys rotate`
//! refusing a rotation that would outrun the nodes' key reload.

use std::process::{Command, Output, Stdio};
use std::time::Duration;

use crate::helpers::*;

/// Runs the keyfort binary with `args` and `env`, to completion (at most 60 s).
async fn keyfort(args: &[&str], env: &[(&str, String)]) -> Output {
    let mut command = Command::new(env!("CARGO_BIN_EXE_keyfort"));
    command.args(args).stdin(Stdio::null());
    for (k, v) in env {
        command.env(k, v);
    }
    let child = command.stdout(Stdio::piped()).stderr(Stdio::piped()).spawn().unwrap();
    tokio::time::timeout(Duration::from_secs(60), tokio::task::spawn_blocking(move || child.wait_with_output()))
        .await
        .expect("keyfort finished within 60 s")
        .unwrap()
        .unwrap()
}

fn text(output: &Output) -> String {
    format!("{}{}", String::from_utf8_lossy(&output.stdout), String::from_utf8_lossy(&output.stderr))
}

/// The databases to migrate: a new SQLite file always, a new PostgreSQL database when the
/// server is configured.
async fn fresh_databases(app: &TestApp) -> Vec<String> {
    let mut urls = vec![format!("sqlite://{}", app.dir.path().join("migrate-me.db").display())];
    urls.extend(postgres_test_database().await);
    urls
}

/// The migrations this version ships (the same number for both databases).
fn migration_count() -> usize {
    let dir = std::path::Path::new(env!("CARGO_MANIFEST_DIR")).join("migrations/sqlite");
    std::fs::read_dir(dir)
        .unwrap()
        .filter(|e| e.as_ref().unwrap().path().extension().is_some_and(|x| x == "sql"))
        .count()
}

async fn add_newer_migration(url: &str) {
    let sql = "INSERT INTO _sqlx_migrations (version, description, success, checksum, execution_time) \
               VALUES (9999, 'from a newer keyfort', TRUE, X'00', 0)";
    let pg_sql = sql.replace("X'00'", "'\\x00'::bytea");
    if url.starts_with("sqlite:") {
        let pool = sqlx::SqlitePool::connect(url).await.unwrap();
        sqlx::query(sql).execute(&pool).await.unwrap();
    } else {
        let pool = sqlx::PgPool::connect(url).await.unwrap();
        sqlx::query(&pg_sql).execute(&pool).await.unwrap();
    }
}

#[tokio::test]
async fn migrate_lists_and_applies_and_serve_without_migrating_waits_for_it() {
    let app = spawn_app().await;
    let config = app.config_path.to_str().unwrap().to_owned();
    for url in fresh_databases(&app).await {
        // The URL comes from a file named in the environment, as a container secret would.
        let secret = app.dir.path().join("database-url");
        std::fs::write(&secret, format!("{url}\n")).unwrap();
        let env = [
            ("KEYFORT_STORAGE__URL_FILE", secret.to_str().unwrap().to_owned()),
            ("KEYFORT_STORAGE__MIGRATE_ON_START", "false".to_owned()),
        ];

        let serve = keyfort(&["serve", "--config", &config], &env).await;
        assert_eq!(serve.status.code(), Some(1), "{url}: {}", text(&serve));
        assert!(text(&serve).contains("keyfort migrate"), "{url}: the refusal says what to run: {}", text(&serve));

        for _ in 0..2 {
            let dry = keyfort(&["migrate", "--config", &config, "--dry-run"], &env).await;
            assert!(dry.status.success(), "{url}: {}", text(&dry));
            let out = text(&dry);
            assert!(out.contains("0001 registrations") && out.contains("pending (would be applied)"), "{out}");
            assert!(out.contains("0006 admin sign in failures"), "{out}");
            let expected = format!("dry run: {} migration(s) would be applied", migration_count());
            assert!(out.contains(&expected), "{url}: a dry run changes nothing: {out}");
        }
        let applied = keyfort(&["migrate", "--config", &config], &env).await;
        let expected = format!("applied {} migration(s)", migration_count());
        assert!(text(&applied).contains(&expected), "{url}: {}", text(&applied));
        assert!(text(&applied).contains("0006 admin sign in failures           applied now"), "{}", text(&applied));
        let again = keyfort(&["migrate", "--config", &config], &env).await;
        assert!(text(&again).contains("up to date: nothing to apply"), "{url}: {}", text(&again));

        // A newer version migrated first (a rolling upgrade): this one still serves.
        add_newer_migration(&url).await;
        let listed = keyfort(&["migrate", "--config", &config, "--dry-run"], &env).await;
        assert!(text(&listed).contains("9999") && text(&listed).contains("newer version"), "{}", text(&listed));
        let node = crate::cluster::start_node(&app, "migrated", &env).await;
        let ready = app.client.get(format!("{}/readyz", node.base)).send().await.unwrap();
        assert_eq!(ready.status(), 200, "{url}: {}", node.log_text());
    }
}

#[tokio::test]
async fn configuration_from_the_environment_is_checked_and_named() {
    let app = spawn_app().await;
    let config = app.config_path.to_str().unwrap().to_owned();
    let ok = keyfort(&["check-config", "--config", &config], &[("KEYFORT_STORAGE__POOL_SIZE", "8".into())]).await;
    assert!(ok.status.success(), "{}", text(&ok));

    let secret = app.dir.path().join("bad-url");
    std::fs::write(&secret, "mysql://u:hunter2@db/keyfort\n").unwrap();
    let bad = keyfort(
        &["check-config", "--config", &config],
        &[
            ("KEYFORT_SERVER__LISTN", "127.0.0.1:1".into()),
            ("KEYFORT_STORAGE__URL_FILE", secret.to_str().unwrap().into()),
            ("KEYFORT_OAUTH__TOKEN__KEY_RELOAD_SECONDS", "0".into()),
        ],
    )
    .await;
    assert_eq!(bad.status.code(), Some(2), "{}", text(&bad));
    let out = text(&bad);
    assert!(out.contains("[server] listn: unknown key: did you mean listen? (set by KEYFORT_SERVER__LISTN)"), "{out}");
    assert!(out.contains("[storage] url") && out.contains("named by KEYFORT_STORAGE__URL_FILE"), "{out}");
    assert!(!out.contains("hunter2"), "the password stays out of the message: {out}");
    assert!(
        out.contains("[oauth.token] key_reload_seconds") && out.contains("KEYFORT_OAUTH__TOKEN__KEY_RELOAD_SECONDS")
    );
}

#[tokio::test]
async fn keys_rotate_refuses_to_outrun_the_key_reload() {
    let app = spawn_app().await;
    let config = app.config_path.to_str().unwrap().to_owned();
    let env = [("KEYFORT_OAUTH__TOKEN__KEY_RELOAD_SECONDS", "30".to_owned())];
    let refused = keyfort(&["keys", "rotate", "--config", &config, "--publish-ahead", "10"], &env).await;
    assert_eq!(refused.status.code(), Some(1), "{}", text(&refused));
    assert!(text(&refused).contains("shorter than [oauth.token] key_reload_seconds (30)"), "{}", text(&refused));
    let accepted = keyfort(&["keys", "rotate", "--config", &config, "--publish-ahead", "30"], &env).await;
    assert!(accepted.status.success(), "{}", text(&accepted));
    assert!(text(&accepted).contains("within 30 seconds"), "{}", text(&accepted));
}

/// Whether the PostgreSQL server at `url` offers TLS, and the certificate file it uses.
async fn server_tls(url: &str) -> Option<String> {
    let pool = sqlx::PgPool::connect(url).await.unwrap();
    let ssl: String = sqlx::query_scalar("SHOW ssl").fetch_one(&pool).await.unwrap();
    let cert: String = sqlx::query_scalar("SHOW ssl_cert_file").fetch_one(&pool).await.unwrap();
    (ssl == "on").then_some(cert)
}

/// How many of the connections to `database` use TLS, and how many do not.
async fn tls_connections(admin_url: &str, database: &str) -> (i64, i64) {
    let pool = sqlx::PgPool::connect(admin_url).await.unwrap();
    sqlx::query_as(
        "SELECT COUNT(*) FILTER (WHERE s.ssl), COUNT(*) FILTER (WHERE NOT s.ssl) FROM pg_stat_ssl s \
         JOIN pg_stat_activity a ON a.pid = s.pid WHERE a.datname = $1",
    )
    .bind(database)
    .fetch_one(&pool)
    .await
    .unwrap()
}

#[tokio::test]
async fn tls_to_postgres_is_used_and_verified_as_configured() {
    let Some(url) = postgres_test_database().await else { return };
    let admin_url = std::env::var("KEYFORT_TEST_POSTGRES_URL").unwrap();
    let Some(cert_file) = server_tls(&url).await else {
        skip("the PostgreSQL server does not offer TLS (ssl = off)");
        return;
    };
    let database = url::Url::parse(&url).unwrap().path().trim_start_matches('/').to_owned();
    let config_at = |url: &str, sslmode: &str, root: Option<&std::path::Path>| {
        let mut text = format!("[storage]\nurl = \"{url}\"\nsslmode = \"{sslmode}\"\n");
        if let Some(root) = root {
            text.push_str(&format!("ssl_root_cert = \"{}\"\n", root.display()));
        }
        // Only [storage] matters here; the server has no client CA, hence the switch.
        text.push_str("[development]\nallow_unsafe_registration = true\n");
        text.push_str("[server]\nlisten = \"127.0.0.1:0\"\npublic_url = \"https://bank.example\"\n");
        text.push_str("[oauth.dcr]\nssa_jkws = \"https://keystore.example/d.jwks\"\n");
        keyfort::config::Config::from_toml_with_env(&text, "tls.toml", std::path::Path::new("/"), []).unwrap().storage
    };

    let encrypted = keyfort::storage::open(&config_at(&url, "require", None)).await.unwrap();
    encrypted.ping().await.unwrap();
    let (with_tls, without) = tls_connections(&admin_url, &database).await;
    assert!(with_tls >= 1 && without == 0, "sslmode require: {with_tls} TLS and {without} plain connections");
    drop(encrypted);

    // The server's certificate as the trust anchor, at a name it is issued for: verified.
    // (With rustls, verify-ca checks the name too, as verify-full does.)
    let server_cert = std::path::PathBuf::from(&cert_file);
    let names = std::fs::read(&server_cert).ok().map(|pem| certificate_names(&pem)).unwrap_or_default();
    let mut at_localhost = url::Url::parse(&url).unwrap();
    at_localhost.set_host(Some("localhost")).unwrap();
    let at_localhost = at_localhost.to_string();
    if names.iter().any(|n| n == "localhost") {
        let verified = keyfort::storage::open(&config_at(&at_localhost, "verify-full", Some(&server_cert))).await;
        assert!(verified.is_ok(), "verify-full with the server's own certificate: {:?}", verified.err());
    } else {
        skip(&format!("the server's certificate {cert_file} is unreadable or not issued for localhost ({names:?})"));
    }
    let other_ca = app_ca_file();
    let refused = keyfort::storage::open(&config_at(&at_localhost, "verify-full", Some(other_ca.path()))).await;
    let message = format!("{:#}", refused.err().expect("a server certificate from another CA is refused"));
    assert!(
        message.contains("cannot connect to PostgreSQL") && message.to_lowercase().contains("certificate"),
        "{message}"
    );
}

/// A CA certificate unrelated to the database server's, in a file.
fn app_ca_file() -> tempfile::NamedTempFile {
    let key = rcgen::KeyPair::generate().unwrap();
    let mut params = rcgen::CertificateParams::new(Vec::<String>::new()).unwrap();
    params.is_ca = rcgen::IsCa::Ca(rcgen::BasicConstraints::Unconstrained);
    params.distinguished_name.push(rcgen::DnType::CommonName, "Not the database's CA");
    let file = tempfile::NamedTempFile::new().unwrap();
    std::fs::write(file.path(), params.self_signed(&key).unwrap().pem()).unwrap();
    file
}

/// The DNS names a PEM certificate is issued for.
fn certificate_names(pem: &[u8]) -> Vec<String> {
    let Ok(certs) = keyfort::pem::certificates_from_pem(pem) else { return Vec::new() };
    let Some(der) = certs.first() else { return Vec::new() };
    let Ok((_, cert)) = x509_parser::parse_x509_certificate(der.as_ref()) else { return Vec::new() };
    let mut names = Vec::new();
    if let Ok(Some(san)) = cert.subject_alternative_name() {
        for name in &san.value.general_names {
            if let x509_parser::extensions::GeneralName::DNSName(dns) = name {
                names.push((*dns).to_owned());
            }
        }
    }
    names
}
