//! Anonymous callers cannot take the server down: silent connections are closed, one
//! address cannot hold the server's connections, sign-in failures cannot grow its memory,
//! oversized heads and bodies are refused at once, and every refusal reaches the client.
//!
//! The deadlines are set short for the tests and asserted with generous margins: these are
//! functional tests, not benchmarks.

use std::net::{IpAddr, Ipv4Addr, SocketAddr};
use std::sync::Arc;
use std::time::{Duration, Instant};

use base64::Engine;
use keyfort::storage::Store;
use serde_json::Value;
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::TcpSocket;
use tokio_rustls::client::TlsStream;

use crate::helpers::*;

/// A second loopback address, standing for an attacker's.
const ATTACKER: IpAddr = IpAddr::V4(Ipv4Addr::new(127, 0, 0, 2));

fn server_addr(app: &TestApp) -> SocketAddr {
    let port: u16 = app.base.rsplit(':').next().unwrap().parse().unwrap();
    SocketAddr::from(([127, 0, 0, 1], port))
}

/// A TLS connection to the test server from `from`, with `alpn`, that then does nothing.
async fn tls_connect(app: &TestApp, from: IpAddr, alpn: &[u8]) -> std::io::Result<TlsStream<tokio::net::TcpStream>> {
    let mut roots = rustls::RootCertStore::empty();
    for cert in keyfort::pem::certificates_from_pem(app.server_ca_pem.as_bytes()).unwrap() {
        roots.add(cert).unwrap();
    }
    let mut config = rustls::ClientConfig::builder_with_provider(keyfort::tls::crypto_provider())
        .with_safe_default_protocol_versions()
        .unwrap()
        .with_root_certificates(roots)
        .with_no_client_auth();
    config.alpn_protocols = vec![alpn.to_vec()];
    let socket = TcpSocket::new_v4()?;
    socket.bind(SocketAddr::new(from, 0))?;
    let tcp = socket.connect(server_addr(app)).await?;
    let connector = tokio_rustls::TlsConnector::from(Arc::new(config));
    connector.connect("localhost".try_into().unwrap(), tcp).await
}

/// Whether the server closed `stream` within `within`: a read that ends (EOF or error).
async fn closed_within(stream: &mut TlsStream<tokio::net::TcpStream>, within: Duration) -> bool {
    let mut buf = [0u8; 4096];
    let deadline = Instant::now() + within;
    loop {
        let left = deadline.saturating_duration_since(Instant::now());
        match tokio::time::timeout(left, stream.read(&mut buf)).await {
            Err(_) => return false,
            Ok(Ok(0)) | Ok(Err(_)) => return true,
            // HTTP/2 frames (SETTINGS, GOAWAY) may come first.
            Ok(Ok(_)) => continue,
        }
    }
}

async fn metric(app: &TestApp, needle: &str) -> u64 {
    // Plain HTTP on loopback: a raw request, as reqwest is built for TLS here.
    let mut tcp = tokio::net::TcpStream::connect(app.metrics_addr.unwrap()).await.unwrap();
    tcp.write_all(b"GET /metrics HTTP/1.1\r\nHost: localhost\r\nConnection: close\r\n\r\n").await.unwrap();
    let mut text = String::new();
    tcp.read_to_string(&mut text).await.unwrap();
    text.lines().find(|line| line.starts_with(needle)).and_then(|l| l.rsplit(' ').next()?.parse().ok()).unwrap_or(0)
}

#[tokio::test]
async fn silent_connections_are_closed_by_their_deadline_while_others_are_served() {
    let app = spawn_app_with(
        Options::default()
            .server("first_request_timeout_seconds = 2")
            .server("idle_timeout_seconds = 2")
            .server("max_connections_per_ip = 1000"),
    )
    .await;
    // TLS completed, then nothing: over HTTP/1.1 and HTTP/2.
    let mut silent = Vec::new();
    for n in 0..300 {
        let alpn: &[u8] = if n % 3 == 0 { b"h2" } else { b"http/1.1" };
        silent.push(tls_connect(&app, ATTACKER, alpn).await.expect("the handshake completes"));
    }
    // An HTTP/2 client that sent its preface and settings, then went quiet.
    let mut h2 = tls_connect(&app, ATTACKER, b"h2").await.unwrap();
    h2.write_all(b"PRI * HTTP/2.0\r\n\r\nSM\r\n\r\n\x00\x00\x00\x04\x00\x00\x00\x00\x00").await.unwrap();
    // A keep-alive HTTP/1.1 connection after one request.
    let mut kept = tls_connect(&app, ATTACKER, b"http/1.1").await.unwrap();
    kept.write_all(b"GET /healthz HTTP/1.1\r\nHost: localhost\r\n\r\n").await.unwrap();
    let mut answer = [0u8; 256];
    let n = kept.read(&mut answer).await.unwrap();
    assert!(String::from_utf8_lossy(&answer[..n]).starts_with("HTTP/1.1 200"));

    // While they are held, a normal client is served.
    assert_eq!(app.get("/healthz").await.status, 200);
    assert_eq!(app.get("/.well-known/openid-configuration").await.status, 200);

    // Every silent one is closed by the server (2 s deadline, 20 s margin).
    let started = Instant::now();
    for (n, stream) in silent.iter_mut().enumerate() {
        let left = Duration::from_secs(20).saturating_sub(started.elapsed());
        assert!(closed_within(stream, left).await, "silent connection {n} is still open");
    }
    assert!(closed_within(&mut h2, Duration::from_secs(10)).await, "the quiet HTTP/2 connection is still open");
    assert!(closed_within(&mut kept, Duration::from_secs(10)).await, "the idle keep-alive connection is still open");
}

#[tokio::test]
async fn one_address_cannot_hold_more_than_its_share_of_connections() {
    let app = spawn_app_with(
        Options::default()
            .server("max_connections_per_ip = 20")
            .server("first_request_timeout_seconds = 30")
            .with_metrics(),
    )
    .await;
    let mut held = Vec::new();
    for _ in 0..40 {
        if let Ok(stream) = tls_connect(&app, ATTACKER, b"http/1.1").await {
            held.push(stream);
        }
    }
    let mut open = 0;
    for stream in held.iter_mut() {
        if !closed_within(stream, Duration::from_millis(300)).await {
            open += 1;
        }
    }
    assert_eq!(open, 20, "the address keeps exactly its 20 connections");
    // Another address is served meanwhile.
    assert_eq!(app.get("/healthz").await.status, 200);
    assert!(metric(&app, "keyfort_connections_shed_total{reason=\"per_address_limit\"}").await >= 20);
}

#[tokio::test]
async fn trusted_proxies_are_not_held_to_the_per_address_cap() {
    let app = spawn_app_with(
        Options::mutual_tls()
            .server("max_connections_per_ip = 5")
            .server("first_request_timeout_seconds = 30")
            .mtls("gateway_header = \"x-client-cert\"")
            .mtls("trusted_proxies = [\"127.0.0.2/32\"]"),
    )
    .await;
    let mut held = Vec::new();
    for _ in 0..15 {
        held.push(tls_connect(&app, ATTACKER, b"http/1.1").await.expect("a proxy may open many connections"));
    }
    for stream in held.iter_mut() {
        assert!(!closed_within(stream, Duration::from_millis(200)).await, "a proxy's connection was shed");
    }
}

#[tokio::test]
async fn oversized_heads_and_announced_bodies_are_refused_at_once() {
    let app = spawn_app().await;
    // A head over the 16 KiB default, but small enough for the edge to read: a JSON 431.
    let big = "a".repeat(20 * 1024);
    let reply = app.client.get(format!("{}/healthz", app.base)).header("x-big", &big).send().await.unwrap();
    assert_eq!(reply.status(), 431);
    let body: Value = reply.json().await.unwrap();
    assert_eq!(body["error"], "invalid_request");
    assert!(body["error_description"].as_str().unwrap().contains("16384"), "{body}");
    // A 200 KB header never reaches a handler either.
    let huge = "a".repeat(200 * 1024);
    let reply = app.client.get(format!("{}/healthz", app.base)).header("x-huge", &huge).send().await;
    assert!(reply.map(|r| r.status().as_u16()).unwrap_or(431) == 431);

    // A body announced larger than the limit is refused before it is sent.
    let mut stream = tls_connect(&app, IpAddr::V4(Ipv4Addr::LOCALHOST), b"http/1.1").await.unwrap();
    stream
        .write_all(
            format!(
                "POST {REGISTER} HTTP/1.1\r\nHost: localhost\r\nContent-Type: application/json\r\nContent-Length: 10000000\r\n\r\n{{"
            )
            .as_bytes(),
        )
        .await
        .unwrap();
    let started = Instant::now();
    let mut answer = vec![0u8; 4096];
    let n = tokio::time::timeout(Duration::from_secs(5), stream.read(&mut answer))
        .await
        .expect("answered at once")
        .unwrap();
    let text = String::from_utf8_lossy(&answer[..n]);
    assert!(text.starts_with("HTTP/1.1 413"), "{text}");
    assert!(text.to_ascii_lowercase().contains("connection: close"), "{text}");
    assert!(started.elapsed() < Duration::from_secs(3), "took {:?}", started.elapsed());
}

/// An HTTP/1.1-only client: HTTP/2 cancels a stream instead of closing the connection, so
/// the lost refusals are an HTTP/1.1 matter.
fn http1_client(app: &TestApp) -> reqwest::Client {
    let mut roots = rustls::RootCertStore::empty();
    for cert in keyfort::pem::certificates_from_pem(app.server_ca_pem.as_bytes()).unwrap() {
        roots.add(cert).unwrap();
    }
    let tls = rustls::ClientConfig::builder_with_provider(keyfort::tls::crypto_provider())
        .with_safe_default_protocol_versions()
        .unwrap()
        .with_root_certificates(roots)
        .with_no_client_auth();
    reqwest::Client::builder().use_preconfigured_tls(tls).http1_only().build().unwrap()
}

#[tokio::test]
async fn every_early_refusal_reaches_the_client() {
    let app = spawn_app().await;
    let registered = app.register_json(&app.request_claims()).await;
    let uri = registered.body["registration_client_uri"].as_str().unwrap().replace("https://localhost:9446", &app.base);
    let body = "x".repeat(17 * 1024);
    let oversized = "y".repeat(100 * 1024);
    let mut tasks = Vec::new();
    for _ in 0..4 {
        let (client, uri, body, oversized, base) =
            (http1_client(&app), uri.clone(), body.clone(), oversized.clone(), app.base.clone());
        tasks.push(tokio::spawn(async move {
            let mut statuses = Vec::new();
            for _ in 0..60 {
                // A bad token: refused before the body matters.
                let put = client
                    .put(&uri)
                    .bearer_auth("bogus")
                    .header("content-type", "application/json")
                    .body(body.clone())
                    .send()
                    .await;
                statuses.push(put.map(|r| r.status().as_u16()).map_err(|e| format!("{e:?}")));
                // Larger than the body limit.
                let post = client
                    .post(format!("{base}{REGISTER}"))
                    .header("content-type", "application/json")
                    .body(oversized.clone())
                    .send()
                    .await;
                statuses.push(post.map(|r| r.status().as_u16()).map_err(|e| format!("{e:?}")));
            }
            statuses
        }));
    }
    for task in tasks {
        for (n, status) in task.await.unwrap().into_iter().enumerate() {
            let expected = if n % 2 == 0 { 401 } else { 413 };
            assert_eq!(status, Ok(expected), "request {n}");
        }
    }
}

/// A client that sends its body slowly, so that it is still sending when a refusal comes:
/// the refusal must still be read, not lost to a reset.
async fn slow_request(app: &TestApp, head: &str, body_len: usize) -> String {
    let mut stream = tls_connect(app, IpAddr::V4(Ipv4Addr::LOCALHOST), b"http/1.1").await.unwrap();
    stream.write_all(head.as_bytes()).await.unwrap();
    let body = vec![b'x'; body_len];
    for chunk in body.chunks(16 * 1024) {
        tokio::time::sleep(Duration::from_millis(2)).await;
        if stream.write_all(chunk).await.is_err() {
            break;
        }
    }
    let mut answer = Vec::new();
    let _ = tokio::time::timeout(Duration::from_secs(10), stream.read_to_end(&mut answer)).await;
    String::from_utf8_lossy(&answer).into_owned()
}

#[tokio::test]
async fn a_refusal_reaches_a_client_that_is_still_sending() {
    let app = spawn_app().await;
    let registered = app.register_json(&app.request_claims()).await;
    let id = registered.body["client_id"].as_str().unwrap().to_owned();
    for _ in 0..10 {
        let len = 60 * 1024;
        let head = format!(
            "PUT {REGISTER}/{id} HTTP/1.1\r\nHost: localhost\r\nAuthorization: Bearer bogus\r\nContent-Type: application/json\r\nContent-Length: {len}\r\nConnection: close\r\n\r\n"
        );
        let answer = slow_request(&app, &head, len).await;
        assert!(answer.starts_with("HTTP/1.1 401"), "{answer}");
        let len = 600 * 1024;
        let head = format!(
            "POST {REGISTER} HTTP/1.1\r\nHost: localhost\r\nContent-Type: application/json\r\nContent-Length: {len}\r\n\r\n"
        );
        let answer = slow_request(&app, &head, len).await;
        assert!(answer.starts_with("HTTP/1.1 413"), "{answer}");
    }
}

const ADMIN: &str = "ops@bank.example";
const PASSWORD: &str = "a long operator password";

async fn add_admin(app: &TestApp) {
    let store =
        keyfort::storage::SqliteStore::open(&format!("sqlite://{}", app.database_path().display())).await.unwrap();
    store.create_admin(ADMIN, &keyfort::admin::hash_password(PASSWORD).unwrap(), 0).await.unwrap();
}

fn basic(name: &str, password: &str) -> String {
    format!("Basic {}", base64::engine::general_purpose::STANDARD.encode(format!("{name}:{password}")))
}

async fn sign_in(client: &reqwest::Client, base: &str, name: &str, password: &str) -> (u16, Option<String>) {
    let response = client
        .get(format!("{base}/admin/clients"))
        .header("authorization", basic(name, password))
        .send()
        .await
        .unwrap();
    let retry_after = response.headers().get("retry-after").map(|v| v.to_str().unwrap().to_owned());
    (response.status().as_u16(), retry_after)
}

#[tokio::test]
async fn sign_in_attempts_are_limited_per_address_and_for_the_server() {
    let app = spawn_app_with(
        Options::default().admin("failed_sign_ins_per_address = 3").admin("sign_in_attempts_per_second = 100"),
    )
    .await;
    add_admin(&app).await;
    for n in 0..3 {
        assert_eq!(sign_in(&app.client, &app.admin_base, &format!("guess{n}"), "wrong").await.0, 401);
    }
    let (status, retry_after) = sign_in(&app.client, &app.admin_base, ADMIN, PASSWORD).await;
    assert_eq!(status, 429, "the address spent its failures, even for the right password");
    assert!(retry_after.is_some());
    // Another address still signs in.
    let mut roots = rustls::RootCertStore::empty();
    for cert in keyfort::pem::certificates_from_pem(app.server_ca_pem.as_bytes()).unwrap() {
        roots.add(cert).unwrap();
    }
    let tls = rustls::ClientConfig::builder_with_provider(keyfort::tls::crypto_provider())
        .with_safe_default_protocol_versions()
        .unwrap()
        .with_root_certificates(roots)
        .with_no_client_auth();
    let elsewhere = reqwest::Client::builder().use_preconfigured_tls(tls).local_address(ATTACKER).build().unwrap();
    assert_eq!(sign_in(&elsewhere, &app.admin_base, ADMIN, PASSWORD).await.0, 200);

    // The server as a whole: a burst beyond the global rate is refused before any check.
    let app =
        spawn_app_with(Options::default().admin("sign_in_attempts_per_second = 1").admin("sign_in_burst = 2")).await;
    let mut statuses = Vec::new();
    for n in 0..4 {
        statuses.push(sign_in(&app.client, &app.admin_base, &format!("someone{n}"), "wrong").await.0);
    }
    assert_eq!(&statuses[..2], &[401, 401]);
    assert!(statuses[2..].contains(&429), "{statuses:?}");
}

#[tokio::test]
async fn a_flood_of_sign_ins_waits_in_a_bounded_queue() {
    let app = spawn_app_with(
        Options::default()
            .admin("sign_in_attempts_per_second = 10000")
            .admin("sign_in_burst = 10000")
            .admin("failed_sign_ins_per_address = 100000")
            .admin("concurrent_password_checks = 1")
            .admin("password_check_queue = 2"),
    )
    .await;
    let mut tasks = Vec::new();
    for n in 0..40 {
        let (client, base) = (app.client.clone(), app.admin_base.clone());
        tasks.push(tokio::spawn(async move { sign_in(&client, &base, &format!("flood{n}"), "wrong").await }));
    }
    let mut busy = 0;
    for task in tasks {
        let (status, retry_after) = task.await.unwrap();
        match status {
            401 => {}
            503 => {
                assert!(retry_after.is_some(), "a busy answer says when to come back");
                busy += 1;
            }
            other => panic!("unexpected {other}"),
        }
    }
    assert!(busy > 0, "with one check running and two waiting, some of 40 at once are told to come back");
}

/// The resident memory of a process, in KiB.
fn rss_kib(pid: u32) -> u64 {
    let status = std::fs::read_to_string(format!("/proc/{pid}/status")).unwrap();
    status.lines().find_map(|l| l.strip_prefix("VmRSS:")).unwrap().split_whitespace().next().unwrap().parse().unwrap()
}

#[tokio::test]
async fn failed_sign_ins_do_not_grow_the_process() {
    // The release of the bound: after 500 failed sign-ins (each one a full Argon2 check) and
    // 200 with absurd names, the server's resident memory stays under 160 MiB. Before the
    // bound, 200 failures took a server from 134 to 719 MiB.
    const BOUND_KIB: u64 = 160 * 1024;
    let app = spawn_app_with(
        Options::default()
            .admin("sign_in_attempts_per_second = 10000")
            .admin("sign_in_burst = 10000")
            .admin("failed_sign_ins_per_address = 100000")
            .admin("password_check_queue = 1000")
            .admin_on_public(),
    )
    .await;
    let port = crate::crash::free_port();
    let config = std::fs::read_to_string(&app.config_path)
        .unwrap()
        .replacen("listen = \"127.0.0.1:0\"", &format!("listen = \"127.0.0.1:{port}\""), 1)
        .replace("data_dir = \"data\"", "data_dir = \"rss-data\"");
    let config_path = app.dir.path().join("rss.toml");
    std::fs::write(&config_path, config).unwrap();
    let server = crate::crash::start_binary(&config_path, port, &app.client).await;
    let base = format!("https://localhost:{port}");
    let before = rss_kib(server.0.id());

    let mut tasks = Vec::new();
    for worker in 0..8 {
        let (client, base) = (app.client.clone(), base.clone());
        tasks.push(tokio::spawn(async move {
            for n in 0..(500 / 8 + 1) {
                let (status, _) = sign_in(&client, &base, &format!("intruder-{worker}-{n}"), "wrong").await;
                assert_eq!(status, 401);
            }
            for n in 0..25 {
                let name = format!("{n}{}", "n".repeat(4096));
                let (status, _) = sign_in(&client, &base, &name, "wrong").await;
                assert_eq!(status, 401, "an absurd name is refused");
            }
        }));
    }
    for task in tasks {
        task.await.unwrap();
    }
    let after = rss_kib(server.0.id());
    assert!(after < BOUND_KIB, "RSS went from {before} KiB to {after} KiB (bound {BOUND_KIB} KiB)");
    eprintln!("sign-in flood: RSS {before} KiB before, {after} KiB after 500 + 200 failures");
}
