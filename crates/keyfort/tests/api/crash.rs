//! Durability: the real `keyfort` binary is killed with SIGKILL right after answering 201,
//! and the registration is still there when it starts again.

use std::process::{Child, Command, Stdio};
use std::time::Duration;

use crate::helpers::*;

pub struct Server(pub Child);

impl Drop for Server {
    fn drop(&mut self) {
        let _ = self.0.kill();
        let _ = self.0.wait();
    }
}

pub fn free_port() -> u16 {
    std::net::TcpListener::bind("127.0.0.1:0").unwrap().local_addr().unwrap().port()
}

pub async fn start_binary(config: &std::path::Path, port: u16, client: &reqwest::Client) -> Server {
    start_binary_logging(config, port, client, None).await
}

/// Starts `keyfort serve`, with its log (stdout and stderr) written to `log` if given.
pub async fn start_binary_logging(
    config: &std::path::Path,
    port: u16,
    client: &reqwest::Client,
    log: Option<(&std::path::Path, &str)>,
) -> Server {
    let mut command = Command::new(env!("CARGO_BIN_EXE_keyfort"));
    command.args(["serve", "--config"]).arg(config);
    match log {
        Some((path, filter)) => {
            let file = std::fs::File::create(path).unwrap();
            command.env("RUST_LOG", filter).stdout(file.try_clone().unwrap()).stderr(file);
        }
        None => {
            command.stdout(Stdio::null()).stderr(Stdio::null());
        }
    }
    let child = command.spawn().expect("the keyfort binary starts");
    let server = Server(child);
    for _ in 0..100 {
        if client.get(format!("https://localhost:{port}/healthz")).send().await.is_ok() {
            return server;
        }
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    panic!("keyfort did not start listening on {port}");
}

#[tokio::test]
async fn a_201_survives_sigkill() {
    // The in-process app provides keys, a key server and a configuration; the binary gets a
    // copy of that configuration on a fixed port.
    let app = spawn_app_with(Options::default().dcr("one_registration_per_software = false")).await;
    let port = free_port();
    let config = std::fs::read_to_string(&app.config_path)
        .unwrap()
        .replacen("listen = \"127.0.0.1:0\"", &format!("listen = \"127.0.0.1:{port}\""), 1)
        .replace("data_dir = \"data\"", "data_dir = \"binary-data\"");
    let config_path = app.dir.path().join("binary.toml");
    std::fs::write(&config_path, config).unwrap();

    let mut server = start_binary(&config_path, port, &app.client).await;
    let claims = app.request_claims();
    let url = format!("https://localhost:{port}{REGISTER}");
    let response =
        app.client.post(&url).header("content-type", "application/json").body(claims.to_string()).send().await.unwrap();
    assert_eq!(response.status(), 201);
    server.0.kill().unwrap(); // SIGKILL: no shutdown hooks, no flush.
    server.0.wait().unwrap();

    let _server = start_binary(&config_path, port, &app.client).await;
    let again =
        app.client.post(&url).header("content-type", "application/json").body(claims.to_string()).send().await.unwrap();
    assert_eq!(again.status(), 400, "the replayed jti proves the first registration was kept");
    let body: serde_json::Value = again.json().await.unwrap();
    assert!(body["error_description"].as_str().unwrap().contains("already been used"), "{body}");
}

/// A registration read's audit line is written after its answer (see the durability table
/// in docs/benchmark.md); a clean stop (SIGTERM) still writes every one of them before the
/// process exits.
#[tokio::test]
async fn a_clean_stop_writes_the_audit_lines_of_every_read_it_answered() {
    let app = spawn_app().await;
    let port = free_port();
    let config = std::fs::read_to_string(&app.config_path)
        .unwrap()
        .replacen("listen = \"127.0.0.1:0\"", &format!("listen = \"127.0.0.1:{port}\""), 1)
        .replace("data_dir = \"data\"", "data_dir = \"reads-data\"");
    let config_path = app.dir.path().join("reads.toml");
    std::fs::write(&config_path, config).unwrap();
    let mut server = start_binary(&config_path, port, &app.client).await;
    let registered: serde_json::Value = app
        .client
        .post(format!("https://localhost:{port}{REGISTER}"))
        .header("content-type", "application/json")
        .body(app.request_claims().to_string())
        .send()
        .await
        .unwrap()
        .json()
        .await
        .unwrap();
    let client_id = registered["client_id"].as_str().unwrap().to_owned();
    let token = registered["registration_access_token"].as_str().unwrap().to_owned();

    const READS: usize = 400;
    let url = format!("https://localhost:{port}{REGISTER}/{client_id}");
    let mut reads = tokio::task::JoinSet::new();
    for _ in 0..READS {
        let (client, url, token) = (app.client.clone(), url.clone(), token.clone());
        reads.spawn(async move { client.get(url).bearer_auth(token).send().await.unwrap().status().as_u16() });
    }
    let statuses = reads.join_all().await;
    assert!(statuses.iter().all(|s| *s == 200), "{statuses:?}");
    // Stop at once, while the last lines may still be on their way.
    let stopped = Command::new("kill").args(["-TERM", &server.0.id().to_string()]).status().unwrap();
    assert!(stopped.success());
    assert!(server.0.wait().unwrap().success(), "keyfort exits cleanly on SIGTERM");

    let db = app.dir.path().join("reads-data").join("keyfort.db");
    let store = keyfort::storage::SqliteStore::open(&format!("sqlite://{}", db.display())).await.unwrap();
    let events = keyfort::storage::Store::audit_events(&store, Some(&client_id), 1000).await.unwrap();
    let reads = events.iter().filter(|e| e.action == "read" && e.outcome == "success").count();
    assert_eq!(reads, READS, "every answered read has its audit line");
}

/// The flush at shutdown is what writes the lines still on their way: on a single-threaded
/// runtime none of the spawned writes has run before the flush, so without it none would
/// be in the database.
#[tokio::test(flavor = "current_thread")]
async fn flushing_writes_every_audit_line_handed_over_after_its_answer() {
    let dir = tempfile::tempdir().unwrap();
    let url = format!("sqlite://{}", dir.path().join("flush.db").display());
    let store: std::sync::Arc<dyn keyfort::storage::Store> =
        std::sync::Arc::new(keyfort::storage::SqliteStore::open(&url).await.unwrap());
    let auditor = keyfort::audit::Auditor::new(store.clone(), std::sync::Arc::new(keyfort_core::clock::SystemClock));
    const LINES: usize = 300;
    for i in 0..LINES {
        let event = keyfort::storage::AuditEvent {
            at: 1_800_000_000,
            action: "read".into(),
            outcome: "success".into(),
            client_id: Some("flushed-client".into()),
            detail: Some(format!("read {i}")),
            ..Default::default()
        };
        auditor.write_after_answer(event).await;
    }
    auditor.flush().await;
    let written = store.audit_events(Some("flushed-client"), 1000).await.unwrap();
    assert_eq!(written.len(), LINES);
}

/// One system call of an strace log (`strace -f -ttt -T -yy`), as far as this test needs.
#[derive(Debug)]
struct Call {
    at: f64,
    name: String,
    /// The first argument as strace decoded it: an fd with its file or socket.
    target: String,
    /// When it returned: its entry plus its duration, or the time it was resumed.
    returned: Option<f64>,
}

/// Parses an strace log, joining "<unfinished ...>" calls with their "resumed" lines.
fn parse_strace(log: &str) -> Vec<Call> {
    let mut calls: Vec<Call> = Vec::new();
    let mut pending: std::collections::HashMap<String, usize> = std::collections::HashMap::new();
    for line in log.lines() {
        // "PID   SECONDS.MICROS call(...)": strace pads the pid with spaces.
        let Some((pid, rest)) = line.trim_start().split_once(' ') else { continue };
        let Some((at, rest)) = rest.trim_start().split_once(' ') else { continue };
        let Ok(at) = at.parse::<f64>() else { continue };
        let duration = |text: &str| {
            text.rsplit_once('<').and_then(|(_, d)| d.trim_end_matches('>').parse::<f64>().ok()).unwrap_or(0.0)
        };
        if let Some(resumed) = rest.strip_prefix("<... ") {
            if let Some(index) = pending.remove(pid) {
                calls[index].returned = Some(at.max(calls[index].at + duration(resumed)));
            }
            continue;
        }
        let Some((name, args)) = rest.split_once('(') else { continue };
        let target = args.split([',', ')']).next().unwrap_or_default().to_owned();
        let unfinished = rest.ends_with("<unfinished ...>");
        calls.push(Call { at, name: name.to_owned(), target, returned: (!unfinished).then(|| at + duration(rest)) });
        if unfinished {
            pending.insert(pid.to_owned(), calls.len() - 1);
        }
    }
    calls
}

/// The children of process `pid` (Linux).
fn children(pid: u32) -> Vec<u32> {
    std::fs::read_to_string(format!("/proc/{pid}/task/{pid}/children"))
        .unwrap_or_default()
        .split_whitespace()
        .filter_map(|c| c.parse().ok())
        .collect()
}

/// Today's SIGKILL test proves the commit happens before the 201, not that it reached the
/// disk (the page cache survives a process kill). This one shows the sync: the real binary
/// runs under strace, and a sync of the database's files, started after the request was
/// sent, has returned before the first byte of the answer is written to that connection.
#[tokio::test]
async fn the_database_is_synced_before_the_201_is_written() {
    use std::sync::Arc;
    use tokio::io::{AsyncReadExt, AsyncWriteExt};

    let strace_works = Command::new("strace").args(["-o", "/dev/null", "true"]).status().is_ok_and(|s| s.success());
    if !strace_works {
        skip("strace is not installed or cannot trace here (apt-get install strace; .ci/run installs it)");
        return;
    }
    let app = spawn_app().await;
    let port = free_port();
    let config = std::fs::read_to_string(&app.config_path)
        .unwrap()
        .replacen("listen = \"127.0.0.1:0\"", &format!("listen = \"127.0.0.1:{port}\""), 1)
        .replace("data_dir = \"data\"", "data_dir = \"strace-data\"");
    let config_path = app.dir.path().join("strace.toml");
    std::fs::write(&config_path, config).unwrap();
    let trace = app.dir.path().join("strace.log");
    let child = Command::new("strace")
        .args(["-f", "-ttt", "-T", "-yy", "-s", "0"])
        .args(["-e", "trace=fsync,fdatasync,write,writev,sendto,sendmsg", "-o"])
        .arg(&trace)
        .arg(env!("CARGO_BIN_EXE_keyfort"))
        .args(["serve", "--config"])
        .arg(&config_path)
        .stdout(Stdio::null())
        .stderr(Stdio::null())
        .spawn()
        .unwrap();
    let strace_pid = child.id();
    let server = Server(child);
    let mut up = false;
    for _ in 0..300 {
        if app.client.get(format!("https://localhost:{port}/healthz")).send().await.is_ok() {
            up = true;
            break;
        }
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    assert!(up, "keyfort did not start under strace");

    // A connection of our own, so that its port names it in the trace; the handshake (and
    // anything the server sends after it) is over before the request is sent.
    let mut roots = rustls::RootCertStore::empty();
    for cert in keyfort::pem::certificates_from_pem(app.server_ca_pem.as_bytes()).unwrap() {
        roots.add(cert).unwrap();
    }
    let tls = rustls::ClientConfig::builder_with_provider(keyfort::tls::crypto_provider())
        .with_safe_default_protocol_versions()
        .unwrap()
        .with_root_certificates(roots)
        .with_no_client_auth();
    let tcp = tokio::net::TcpStream::connect(("127.0.0.1", port)).await.unwrap();
    let client_port = tcp.local_addr().unwrap().port();
    let mut stream =
        tokio_rustls::TlsConnector::from(Arc::new(tls)).connect("localhost".try_into().unwrap(), tcp).await.unwrap();
    tokio::time::sleep(Duration::from_millis(500)).await;
    let body = app.request_claims().to_string();
    let request = format!(
        "POST {REGISTER} HTTP/1.1\r\nHost: localhost\r\nContent-Type: application/json\r\nContent-Length: {}\r\nConnection: close\r\n\r\n{body}",
        body.len()
    );
    let sent_at = std::time::SystemTime::now().duration_since(std::time::UNIX_EPOCH).unwrap().as_secs_f64();
    stream.write_all(request.as_bytes()).await.unwrap();
    let mut answer = Vec::new();
    let _ = tokio::time::timeout(Duration::from_secs(30), stream.read_to_end(&mut answer)).await;
    let answer = String::from_utf8_lossy(&answer);
    assert!(answer.starts_with("HTTP/1.1 201"), "{answer}");

    // Stop keyfort, then strace, so the log is complete.
    for pid in children(strace_pid) {
        let _ = Command::new("kill").arg(pid.to_string()).status();
    }
    tokio::time::sleep(Duration::from_millis(500)).await;
    drop(server);
    let log = std::fs::read_to_string(&trace).unwrap();
    let calls = parse_strace(&log);
    let connection = format!(":{client_port}]");
    let first_answer_write = calls
        .iter()
        .filter(|c| matches!(c.name.as_str(), "write" | "writev" | "sendto" | "sendmsg"))
        .filter(|c| c.target.contains("TCP:") && c.target.contains(&connection) && c.at >= sent_at)
        .map(|c| c.at)
        .fold(f64::INFINITY, f64::min);
    assert!(first_answer_write.is_finite(), "no write to the connection (port {client_port}) in the trace:\n{log}");
    let syncs: Vec<&Call> = calls
        .iter()
        .filter(|c| matches!(c.name.as_str(), "fsync" | "fdatasync") && c.target.contains("keyfort.db"))
        .filter(|c| c.at >= sent_at)
        .collect();
    let synced_before = syncs.iter().filter(|c| c.returned.is_some_and(|r| r <= first_answer_write)).count();
    assert!(
        synced_before >= 1,
        "no sync of the database returned between the request ({sent_at:.6}) and the first byte of the 201 \
         ({first_answer_write:.6}); syncs after the request: {syncs:#?}"
    );
    // The sync is of the write-ahead log, where the commit is (WAL mode).
    assert!(syncs.iter().any(|c| c.target.contains("keyfort.db-wal")), "{syncs:#?}");
}

/// Every connection of the SQLite pool runs with the write-ahead log and a sync per commit:
/// what the test above observes for one commit holds for every connection that may commit.
#[tokio::test]
async fn every_pool_connection_and_the_writer_run_with_wal_and_full_sync() {
    let dir = tempfile::tempdir().unwrap();
    let url = format!("sqlite://{}", dir.path().join("pragmas.db").display());
    let mut config = keyfort::config::StorageConfig::for_url(&url);
    config.pool_size = Some(6);
    let store = keyfort::storage::SqliteStore::connect(&config).await.unwrap();
    let settings = store.connection_durability().await.unwrap();
    assert_eq!(settings.len(), 7, "the six pooled connections and the group-commit writer's");
    for (mode, synchronous) in settings {
        assert_eq!((mode.as_str(), synchronous), ("wal", 2), "journal_mode and synchronous (2 = FULL)");
    }
}

/// The write-ahead log is copied into the database file in the background, not by the
/// group-commit writer inside a commit (which would stall every write queued behind it):
/// writes far below the writer's own threshold still reach the database file soon.
#[tokio::test]
async fn the_write_ahead_log_is_checkpointed_in_the_background() {
    let dir = tempfile::tempdir().unwrap();
    let file = dir.path().join("checkpoint.db");
    let store = keyfort::storage::SqliteStore::open(&format!("sqlite://{}", file.display())).await.unwrap();
    use keyfort::storage::Store;
    for i in 0..500 {
        let line = keyfort::storage::AuditEvent {
            at: i,
            action: "read".into(),
            outcome: "success".into(),
            detail: Some("x".repeat(200)),
            ..Default::default()
        };
        store.record_audit(&line).await.unwrap();
    }
    // 500 lines of 200 bytes fill ~30 pages of the WAL; nothing else but a checkpoint
    // moves them into the database file while the store is open.
    let deadline = std::time::Instant::now() + Duration::from_secs(10);
    loop {
        let size = std::fs::metadata(&file).unwrap().len();
        if size > 100 * 1024 {
            break;
        }
        assert!(
            std::time::Instant::now() < deadline,
            "the database file is still {size} bytes 10 s after the writes: the WAL was not checkpointed"
        );
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    assert_eq!(store.audit_events(None, 1000).await.unwrap().len(), 500);
}
