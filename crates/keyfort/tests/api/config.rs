//! `keyfort check-config` and `keyfort serve` refuse the same configurations, for the same
//! reasons, before a port is bound: the real binary, real files, real certificates.

use std::path::Path;
use std::process::{Command, Output};

use crate::crash::free_port;
use crate::pki::TestPki;

/// A configuration valid in every key, for a server on `port`; `extra` is appended. It has
/// no client CA unless `extra` sets one, so it names the development switch.
fn config_text(port: u16, extra: &str) -> String {
    format!(
        "[development]\nallow_unsafe_registration = true\n\n[server]\nlisten = \"127.0.0.1:{port}\"\npublic_url = \"https://localhost:{port}\"\n\n[admin]\nlisten = \"127.0.0.1:0\"\n\n\
         [oauth.dcr]\nssa_jkws = \"https://keystore.example/directory.jwks\"\n\n[log]\nlevel = \"warn\"\n\n{extra}"
    )
}

fn write_config(dir: &Path, extra: &str) -> std::path::PathBuf {
    let path = dir.join("keyfort.toml");
    std::fs::write(&path, config_text(free_port(), extra)).unwrap();
    path
}

fn keyfort(args: &[&str]) -> Output {
    Command::new(env!("CARGO_BIN_EXE_keyfort")).args(args).output().expect("keyfort runs")
}

fn check_config(config: &Path) -> Output {
    keyfort(&["check-config", "--config", config.to_str().unwrap()])
}

/// Asserts a refusal with exit status 2 whose standard error names every `needle`, and
/// returns that standard error.
#[track_caller]
fn refused(output: &Output, needles: &[&str]) -> String {
    let stderr = String::from_utf8_lossy(&output.stderr).into_owned();
    assert_eq!(output.status.code(), Some(2), "exit status 2 for a configuration error; stderr:\n{stderr}");
    for needle in needles {
        assert!(stderr.contains(needle), "{needle:?} is not named in:\n{stderr}");
    }
    stderr
}

fn pem(label: &str, der: &[u8]) -> String {
    use base64::Engine;
    let body = base64::engine::general_purpose::STANDARD.encode(der);
    let lines: Vec<&str> = body.as_bytes().chunks(64).map(|c| std::str::from_utf8(c).unwrap()).collect();
    format!("-----BEGIN {label}-----\n{}\n-----END {label}-----\n", lines.join("\n"))
}

/// A self-signed server certificate and its key, as PEM.
fn server_identity() -> (String, String) {
    let key = rcgen::KeyPair::generate().unwrap();
    let cert = rcgen::CertificateParams::new(vec!["localhost".to_owned()]).unwrap().self_signed(&key).unwrap();
    (cert.pem(), key.serialize_pem())
}

#[test]
fn a_configuration_whose_files_are_all_good_passes() {
    let dir = tempfile::tempdir().unwrap();
    let (cert, key) = server_identity();
    let pki = TestPki::generate();
    std::fs::write(dir.path().join("server.pem"), &cert).unwrap();
    std::fs::write(dir.path().join("server.key"), &key).unwrap();
    std::fs::write(dir.path().join("client-ca.pem"), pki.client_ca_pem()).unwrap();
    std::fs::write(dir.path().join("outbound-ca.pem"), &cert).unwrap();
    std::fs::write(dir.path().join("issuing.crl"), pki.crl_der()).unwrap();
    let signing = keyfort_core::jose::SigningKey::generate(keyfort_core::jose::SigningAlg::ES256, "k1").unwrap();
    std::fs::write(dir.path().join("signing.pem"), pem("PRIVATE KEY", &signing.to_pkcs8_der())).unwrap();
    let config = write_config(
        dir.path(),
        "[server.tls]\ncert_file = \"server.pem\"\nkey_file = \"server.key\"\nclient_ca_file = \"client-ca.pem\"\n\n\
         [http_client]\nca_file = \"outbound-ca.pem\"\n\n[mtls]\ncrl_files = [\"issuing.crl\"]\n\n\
         [oauth.token]\nsigning_alg = \"ES256\"\nsigning_key_file = \"signing.pem\"\nsigning_key_id = \"k1\"\n",
    );
    let output = check_config(&config);
    assert!(output.status.success(), "stderr:\n{}", String::from_utf8_lossy(&output.stderr));
    assert!(String::from_utf8_lossy(&output.stdout).contains(": OK"));
}

#[test]
fn a_missing_certificate_file_is_refused_by_check_config_and_serve() {
    let dir = tempfile::tempdir().unwrap();
    let (_, key) = server_identity();
    std::fs::write(dir.path().join("server.key"), key).unwrap();
    let config = write_config(dir.path(), "[server.tls]\ncert_file = \"missing.pem\"\nkey_file = \"server.key\"\n");

    let stderr = refused(&check_config(&config), &["keyfort.toml", "[server.tls] cert_file", "missing.pem"]);
    assert!(!stderr.contains("key_file"), "the key file is fine:\n{stderr}");
    let served = keyfort(&["serve", "--config", config.to_str().unwrap()]);
    let serve_stderr = refused(&served, &["[server.tls] cert_file", "missing.pem"]);
    assert_eq!(serve_stderr.trim_end(), stderr.trim_end(), "serve refuses with the same message");
    assert!(!dir.path().join("data").exists(), "no development certificate, no database was created");
}

#[test]
fn a_garbage_ca_bundle_is_refused() {
    let dir = tempfile::tempdir().unwrap();
    std::fs::write(dir.path().join("client-ca.pem"), "this is not a certificate bundle\n").unwrap();
    let config = write_config(dir.path(), "[server.tls]\nclient_ca_file = \"client-ca.pem\"\n");
    refused(&check_config(&config), &["[server.tls] client_ca_file", "client-ca.pem", "no PEM CERTIFICATE"]);
}

#[test]
fn a_missing_logo_and_a_broken_template_are_refused_before_any_customer_meets_them() {
    let dir = tempfile::tempdir().unwrap();
    std::fs::create_dir(dir.path().join("templates")).unwrap();
    std::fs::write(dir.path().join("templates/login.html"), "{% block content %}unclosed").unwrap();
    let config =
        write_config(dir.path(), "[branding]\nlogo_file = \"missing-logo.png\"\ntemplate_dir = \"templates\"\n");
    refused(&check_config(&config), &["[branding] template_dir", "login.html does not compile"]);

    std::fs::write(dir.path().join("templates/login.html"), "{% extends \"base.html\" %}").unwrap();
    refused(&check_config(&config), &["[branding] logo_file", "missing-logo.png"]);
    let served = keyfort(&["serve", "--config", config.to_str().unwrap()]);
    refused(&served, &["[branding] logo_file", "missing-logo.png"]);

    std::fs::write(dir.path().join("missing-logo.png"), b"\x89PNG\r\n\x1a\n").unwrap();
    let output = check_config(&config);
    assert!(output.status.success(), "stderr:\n{}", String::from_utf8_lossy(&output.stderr));
}

#[test]
fn a_plain_http_directory_jwks_on_another_host_is_refused_even_in_development() {
    let dir = tempfile::tempdir().unwrap();
    let config = dir.path().join("keyfort.toml");
    let text = config_text(free_port(), "[http_client]\nallow_insecure_loopback = true\n")
        .replace("https://keystore.example/directory.jwks", "http://keystore.example/directory.jwks");
    std::fs::write(&config, text).unwrap();
    refused(&check_config(&config), &["[oauth.dcr] ssa_jkws", "http://keystore.example/directory.jwks", "https"]);
}

#[test]
fn a_plain_http_loopback_jwks_needs_the_development_switch() {
    let dir = tempfile::tempdir().unwrap();
    let config = dir.path().join("keyfort.toml");
    let text = config_text(free_port(), "")
        .replace("https://keystore.example/directory.jwks", "http://127.0.0.1:8090/directory.jwks");
    std::fs::write(&config, &text).unwrap();
    refused(&check_config(&config), &["[oauth.dcr] ssa_jkws", "allow_insecure_loopback = true"]);
    std::fs::write(&config, format!("{text}[http_client]\nallow_insecure_loopback = true\n")).unwrap();
    assert!(check_config(&config).status.success());
}

#[test]
fn every_file_problem_is_reported_in_one_run() {
    let dir = tempfile::tempdir().unwrap();
    let (cert, _) = server_identity();
    let (_, other_key) = server_identity();
    std::fs::write(dir.path().join("server.pem"), cert).unwrap();
    std::fs::write(dir.path().join("server.key"), other_key).unwrap();
    std::fs::write(dir.path().join("outbound-ca.pem"), "").unwrap();
    std::fs::write(dir.path().join("issuing.crl"), "-----BEGIN X509 CRL-----\nAAAA\n-----END X509 CRL-----\n").unwrap();
    let rsa = keyfort_core::jose::SigningKey::generate(keyfort_core::jose::SigningAlg::PS256, "k1").unwrap();
    std::fs::write(dir.path().join("signing.pem"), pem("PRIVATE KEY", &rsa.to_pkcs8_der())).unwrap();
    let pki = TestPki::generate();
    std::fs::write(dir.path().join("client-ca.pem"), pki.client_ca_pem()).unwrap();
    let config = write_config(
        dir.path(),
        "[server.tls]\ncert_file = \"server.pem\"\nkey_file = \"server.key\"\nclient_ca_file = \"client-ca.pem\"\n\n\
         [http_client]\nca_file = \"outbound-ca.pem\"\n\n[mtls]\ncrl_files = [\"issuing.crl\", \"absent.crl\"]\n\n\
         [oauth.token]\nsigning_alg = \"ES256\"\nsigning_key_file = \"signing.pem\"\nsigning_key_id = \"k1\"\n",
    );
    let stderr = refused(
        &check_config(&config),
        &[
            "[server.tls] key_file",
            "do not form a pair",
            "[http_client] ca_file",
            "outbound-ca.pem",
            "issuing.crl",
            "absent.crl",
            "[oauth.token] signing_key_file",
            "ES256",
        ],
    );
    assert_eq!(stderr.lines().count(), 5, "one line per problem:\n{stderr}");
    assert!(stderr.lines().all(|l| l.starts_with("error: ") && l.contains("keyfort.toml: [")), "{stderr}");
    assert_eq!(stderr.matches("[mtls] crl_files").count(), 2, "{stderr}");
}

#[test]
fn several_mistakes_in_the_file_are_all_reported() {
    let dir = tempfile::tempdir().unwrap();
    let config =
        write_config(dir.path(), "[oauth.token]\nsigning_alg = \"HS256\"\n\n[mtls]\ncrl_refresh_seconds = 1\n");
    let text = std::fs::read_to_string(&config).unwrap().replace("[log]\n", "[log]\nformat = \"xml\"\n");
    std::fs::write(&config, text).unwrap();
    let stderr =
        refused(&check_config(&config), &["[oauth.token] signing_alg", "[mtls] crl_refresh_seconds", "[log] format"]);
    assert_eq!(stderr.lines().count(), 3, "{stderr}");
}

/// The repository's root, where the shipped configurations are.
fn repository() -> std::path::PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).join("../..")
}

#[test]
fn a_server_that_could_never_issue_a_token_is_refused_unless_the_development_switch_is_set() {
    let dir = tempfile::tempdir().unwrap();
    let config = dir.path().join("keyfort.toml");
    let port = free_port();
    let unsafe_text = config_text(port, "").replace("[development]\nallow_unsafe_registration = true\n\n", "");
    std::fs::write(&config, &unsafe_text).unwrap();
    let stderr = refused(
        &check_config(&config),
        &["[server.tls] client_ca_file", "never get a token", "[development] allow_unsafe_registration = true"],
    );
    assert_eq!(stderr.lines().count(), 1, "{stderr}");
    let served = keyfort(&["serve", "--config", config.to_str().unwrap()]);
    assert_eq!(refused(&served, &[]).trim_end(), stderr.trim_end(), "serve refuses with the same message");

    // With the switch the same configuration passes check-config, and serve warns at start.
    let switched = format!("[development]\nallow_unsafe_registration = true\n\n{unsafe_text}");
    std::fs::write(&config, switched.replace("level = \"warn\"", "level = \"info\"")).unwrap();
    assert!(check_config(&config).status.success());
    let mut server = std::process::Command::new(env!("CARGO_BIN_EXE_keyfort"))
        .args(["serve", "--config", config.to_str().unwrap()])
        .stdout(std::process::Stdio::piped())
        .stderr(std::process::Stdio::piped())
        .spawn()
        .unwrap();
    let mut up = false;
    for _ in 0..200 {
        if std::net::TcpStream::connect(("127.0.0.1", port)).is_ok() {
            up = true;
            break;
        }
        std::thread::sleep(std::time::Duration::from_millis(50));
    }
    let _ = server.kill();
    let output = server.wait_with_output().unwrap();
    let log = String::from_utf8_lossy(&output.stdout);
    assert!(up, "the server started: {log}{}", String::from_utf8_lossy(&output.stderr));
    assert!(
        log.contains("DEVELOPMENT SWITCH") && log.contains("[server.tls] client_ca_file") && log.contains("WARN"),
        "the start is logged as a development one: {log}"
    );
}

#[test]
fn registrations_without_proof_of_the_sender_are_refused_each_named() {
    let dir = tempfile::tempdir().unwrap();
    let pki = TestPki::generate();
    std::fs::write(dir.path().join("client-ca.pem"), pki.client_ca_pem()).unwrap();
    let config = dir.path().join("keyfort.toml");
    let text = config_text(free_port(), "[server.tls]\nclient_ca_file = \"client-ca.pem\"\n")
        .replace("[development]\nallow_unsafe_registration = true\n\n", "")
        .replace("[log]", "allow_json_without_proof = true\ncertificate_binding = \"off\"\n\n[log]");
    std::fs::write(&config, &text).unwrap();
    let stderr = refused(
        &check_config(&config),
        &["[oauth.dcr] allow_json_without_proof", "[oauth.dcr] certificate_binding", "allow_unsafe_registration"],
    );
    assert_eq!(stderr.lines().count(), 2, "{stderr}");
    // The environment can set the switch like any key.
    let output = std::process::Command::new(env!("CARGO_BIN_EXE_keyfort"))
        .args(["check-config", "--config", config.to_str().unwrap()])
        .env("KEYFORT_DEVELOPMENT__ALLOW_UNSAFE_REGISTRATION", "true")
        .output()
        .unwrap();
    assert!(output.status.success(), "{}", String::from_utf8_lossy(&output.stderr));
}

#[test]
fn the_production_example_passes_check_config_once_its_files_exist() {
    let text = std::fs::read_to_string(repository().join("examples/production.toml")).unwrap();
    assert!(!text.contains("[development]") && !text.contains("allow_json_without_proof = true"), "{text}");
    let dir = tempfile::tempdir().unwrap();
    let root = dir.path();
    // Every absolute path of the example, under the test's directory instead.
    let text = text
        .replace("\"/etc/keyfort/", &format!("\"{}/etc/", root.display()))
        .replace("\"/var/lib/keyfort", &format!("\"{}/var", root.display()));
    let config = root.join("production.toml");
    std::fs::write(&config, &text).unwrap();
    let stderr = refused(&check_config(&config), &["server.pem", "ob-transport-ca-bundle.pem", "ob-issuing-ca.crl"]);
    assert!(!stderr.contains("allow_unsafe_registration"), "nothing unsafe: {stderr}");

    let (cert, key) = server_identity();
    let pki = TestPki::generate();
    for (file, contents) in [
        ("etc/tls/server.pem", cert.into_bytes()),
        ("etc/tls/server.key", key.into_bytes()),
        ("etc/trust/ob-transport-ca-bundle.pem", pki.client_ca_pem().into_bytes()),
        ("var/crl/ob-issuing-ca.crl", pki.crl_der()),
    ] {
        let path = root.join(file);
        std::fs::create_dir_all(path.parent().unwrap()).unwrap();
        std::fs::write(path, contents).unwrap();
    }
    let output = check_config(&config);
    assert!(output.status.success(), "stderr:\n{}", String::from_utf8_lossy(&output.stderr));
}
