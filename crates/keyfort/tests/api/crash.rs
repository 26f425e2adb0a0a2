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
        .replace("listen = \"127.0.0.1:0\"", &format!("listen = \"127.0.0.1:{port}\""))
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
