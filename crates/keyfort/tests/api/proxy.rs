//! Behind a real proxy: nginx (Debian's package) terminates mutual TLS in front of two
//! Keyfort nodes on one PostgreSQL database, forwarding the TPP's certificate in the
//! gateway header. A TPP onboards and gets a certificate-bound token through it; the same
//! header sent straight to a node, or through nginx without a certificate, is refused.
//!
//! nginx runs `examples/nginx.conf` and the nodes `examples/behind-nginx.toml`, with only
//! paths and ports substituted (and the per-node values set in the environment, as the
//! example describes): the examples are what this test proves.

use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::time::Duration;

use percent_encoding::{utf8_percent_encode, NON_ALPHANUMERIC};
use serde_json::Value;

use crate::cluster::{spawn_node, wait_for, Node};
use crate::helpers::*;
use crate::pki::Subject;
use crate::tokens::{form, thumbprint};

/// An nginx process in the foreground, stopped when dropped.
struct Nginx(Child);

impl Drop for Nginx {
    fn drop(&mut self) {
        let _ = self.0.kill();
        let _ = self.0.wait();
    }
}

fn nginx_binary() -> Option<PathBuf> {
    let mut candidates: Vec<PathBuf> = std::env::var_os("PATH")
        .map(|p| std::env::split_paths(&p).map(|d| d.join("nginx")).collect())
        .unwrap_or_default();
    candidates.extend(["/usr/sbin/nginx", "/usr/local/sbin/nginx"].map(PathBuf::from));
    candidates.into_iter().find(|p| p.is_file())
}

fn example(name: &str) -> String {
    let path = Path::new(env!("CARGO_MANIFEST_DIR")).join("../../examples").join(name);
    std::fs::read_to_string(&path).unwrap_or_else(|e| panic!("{}: {e}", path.display()))
}

/// Replaces `from` in `text`, insisting it is there: a changed example must fail this test
/// loudly rather than run something else.
#[track_caller]
fn substitute(text: &str, from: &str, to: &str) -> String {
    assert!(text.contains(from), "the example no longer contains {from:?}");
    text.replace(from, to)
}

fn write(root: &Path, path: &str, contents: impl AsRef<[u8]>) {
    let path = root.join(path.trim_start_matches('/'));
    std::fs::create_dir_all(path.parent().unwrap()).unwrap();
    std::fs::write(path, contents).unwrap();
}

#[tokio::test]
async fn nginx_terminates_mutual_tls_for_two_nodes() {
    let Some(nginx) = nginx_binary() else {
        skip("nginx is not installed (apt-get install nginx; .ci/run installs it)");
        return;
    };
    let Some(url) = postgres_test_database().await else { return };
    let mut app = spawn_app().await;
    let root = app.dir.path().join("proxy");
    let rooted = |path: &str| root.join(path.trim_start_matches('/')).display().to_string();

    // The files the examples name, made by the test: Keyfort's TLS identity and its CA, the
    // transport CA bundle and its CRL, and nginx's certificate (the test CA's localhost
    // certificate stands in for api.bank.example's).
    let read = |name: &str| std::fs::read(app.dir.path().join(name)).unwrap();
    write(&root, "/etc/keyfort/tls/keyfort.pem", read("server.pem"));
    write(&root, "/etc/keyfort/tls/keyfort.key", read("server.key"));
    write(&root, "/etc/keyfort/tls/keyfort-ca.pem", &app.server_ca_pem);
    write(&root, "/etc/keyfort/trust/ob-transport-ca-bundle.pem", app.pki.client_ca_pem());
    write(&root, "/var/lib/keyfort/crl/ob-issuing-ca.crl", app.pki.crl_der());
    write(&root, "/etc/nginx/tls/api.bank.example.pem", read("server.pem"));
    write(&root, "/etc/nginx/tls/api.bank.example.key", read("server.key"));
    write(&root, "/etc/nginx/trust/ob-transport-ca-bundle.pem", app.pki.client_ca_pem());

    let (port_a, port_b, nginx_port) =
        (crate::crash::free_port(), crate::crash::free_port(), crate::crash::free_port());
    let keyfort_toml = ["/etc/keyfort/", "/var/lib/keyfort"]
        .iter()
        .fold(example("behind-nginx.toml"), |text, path| substitute(&text, path, &rooted(path)));
    let config = root.join("behind-nginx.toml");
    std::fs::write(&config, keyfort_toml).unwrap();
    let site = ["/etc/keyfort/", "/etc/nginx/"]
        .iter()
        .fold(example("nginx.conf"), |text, path| substitute(&text, path, &format!("{}/", rooted(path))));
    let site = substitute(&site, "listen 443 ssl;", &format!("listen 127.0.0.1:{nginx_port} ssl;"));
    let site = substitute(&site, "server 127.0.0.1:9446;", &format!("server 127.0.0.1:{port_a};"));
    let site = substitute(&site, "server 127.0.0.1:9448;", &format!("server 127.0.0.1:{port_b};"));
    write(&root, "/etc/nginx/keyfort.conf", &site);
    // The main file a Debian nginx.conf would be: here, a process in the foreground whose
    // files all live in the test's directory.
    let user = if rustix::process::geteuid().is_root() { "user root;" } else { "" };
    let main = format!(
        "{user}\ndaemon off;\nmaster_process off;\npid {root}/nginx.pid;\nerror_log {root}/nginx-error.log info;\n\
         events {{ worker_connections 64; }}\nhttp {{\n  log_format upstreams '$request $status $upstream_addr';\n  \
         access_log {root}/nginx-access.log upstreams;\n  client_body_temp_path {root}/tmp/body;\n  \
         proxy_temp_path {root}/tmp/proxy;\n  fastcgi_temp_path {root}/tmp/fastcgi;\n  uwsgi_temp_path {root}/tmp/uwsgi;\n  \
         scgi_temp_path {root}/tmp/scgi;\n  include {root}/etc/nginx/keyfort.conf;\n}}\n",
        root = root.display()
    );
    std::fs::create_dir_all(root.join("tmp")).unwrap();
    std::fs::write(root.join("nginx.conf"), main).unwrap();

    // The two nodes: the example file, with what differs per deployment in the environment.
    let env = [
        ("KEYFORT_STORAGE__URL", url.clone()),
        ("KEYFORT_OAUTH__DCR__SSA_JKWS", app.key_server.url(DIRECTORY_JWKS)),
        ("KEYFORT_OAUTH__DCR__AUDIENCE", AUDIENCE.to_owned()),
        ("KEYFORT_HTTP_CLIENT__ALLOW_INSECURE_LOOPBACK", "true".to_owned()),
    ];
    let (admin_a, admin_b) = (crate::crash::free_port(), crate::crash::free_port());
    let (server_a, log_a) = spawn_node(&config, "proxied-a", port_a, admin_a, &env);
    let (server_b, log_b) = spawn_node(&config, "proxied-b", port_b, admin_b, &env);
    wait_for(&app.client, port_a, &log_a).await;
    wait_for(&app.client, port_b, &log_b).await;
    let a = Node {
        base: format!("https://localhost:{port_a}"),
        admin_base: format!("https://localhost:{admin_a}"),
        log: log_a,
        _process: server_a,
    };
    let _b = Node {
        base: format!("https://localhost:{port_b}"),
        admin_base: format!("https://localhost:{admin_b}"),
        log: log_b,
        _process: server_b,
    };

    let test = Command::new(&nginx).args(["-t", "-c"]).arg(root.join("nginx.conf")).output().unwrap();
    assert!(test.status.success(), "nginx -t: {}", String::from_utf8_lossy(&test.stderr));
    let error_log = std::fs::File::create(root.join("nginx-stderr.log")).unwrap();
    let _nginx = Nginx(
        Command::new(&nginx)
            .arg("-c")
            .arg(root.join("nginx.conf"))
            .stdin(Stdio::null())
            .stdout(Stdio::null())
            .stderr(error_log)
            .spawn()
            .unwrap(),
    );
    let mut listening = false;
    for _ in 0..100 {
        if tokio::net::TcpStream::connect(("127.0.0.1", nginx_port)).await.is_ok() {
            listening = true;
            break;
        }
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    assert!(
        listening,
        "nginx did not listen: {}",
        std::fs::read_to_string(root.join("nginx-error.log")).unwrap_or_default()
    );

    // Through nginx: a TPP onboards over mutual TLS and gets certificate-bound tokens,
    // served by both nodes.
    app.base = format!("https://localhost:{nginx_port}");
    let tpp = app.onboard_tls_client_auth().await;
    for _ in 0..4 {
        let token = app.tls_token(&tpp).await;
        let claims: Value = serde_json::from_slice(
            &base64::Engine::decode(
                &base64::engine::general_purpose::URL_SAFE_NO_PAD,
                token.split('.').nth(1).unwrap(),
            )
            .unwrap(),
        )
        .unwrap();
        assert_eq!(claims["cnf"]["x5t#S256"], thumbprint(&tpp.cert), "bound to the certificate nginx forwarded");
        assert_eq!(claims["iss"], "https://api.bank.example");
    }
    let access = std::fs::read_to_string(root.join("nginx-access.log")).unwrap();
    for port in [port_a, port_b] {
        assert!(access.contains(&format!("127.0.0.1:{port}")), "node {port} served requests:\n{access}");
    }

    // A TPP-supplied certificate header through nginx without a certificate: replaced.
    let cert = app.pki.issue(&Subject::legacy_ob(ORG_ID, SOFTWARE_ID).serial(91));
    let forged = ("x-wso2-mutual-auth-cert", utf8_percent_encode(&cert.pem, NON_ALPHANUMERIC).to_string());
    app.register_as(&app.client, std::slice::from_ref(&forged)).await.assert_error(
        401,
        "invalid_client",
        "must come over mutual TLS",
    );

    // Straight to a node, from an address that is not nginx's: ignored, and logged.
    app.base = a.base.clone();
    app.register_as(&app.client, std::slice::from_ref(&forged)).await.assert_error(
        401,
        "invalid_client",
        "must come over mutual TLS",
    );
    let token = app
        .form_post(
            &app.client,
            "/oauth2/token",
            form(&[("grant_type", "client_credentials"), ("client_id", &tpp.client_id)]),
            &[(forged.0, utf8_percent_encode(&tpp.cert.pem, NON_ALPHANUMERIC).to_string())],
        )
        .await;
    token.assert_error(401, "invalid_client", "");
    assert!(a.log_text().contains("not a trusted proxy"), "the forged header is logged");
}
