//! Moving from WSO2 Identity Server with the real binary: a pasted `deployment.toml` gets a
//! hint per WSO2 key, all at once; `keyfort import-wso2` converts the seed's snippet and a
//! fuller file into configurations that pass `check-config` once their PEM files exist.

use std::path::Path;
use std::process::{Command, Output};

use crate::pki::TestPki;

/// The seed's step 2, as the WSO2 guide prints it.
const SEED_SNIPPET: &str =
    "[oauth.dcr]\nssa_jkws= \"https://keystore.openbankingtest.org.uk/0015800001HQQrZAAX/0015800001HQQrZAAX.jwks\"\n";

fn fixture() -> String {
    std::fs::read_to_string(Path::new(env!("CARGO_MANIFEST_DIR")).join("tests/fixtures/wso2-deployment.toml")).unwrap()
}

fn keyfort(args: &[&str], dir: &Path) -> Output {
    Command::new(env!("CARGO_BIN_EXE_keyfort")).args(args).current_dir(dir).output().expect("keyfort runs")
}

fn stdout(output: &Output) -> String {
    String::from_utf8_lossy(&output.stdout).into_owned()
}

fn stderr(output: &Output) -> String {
    String::from_utf8_lossy(&output.stderr).into_owned()
}

/// Writes the PEM files an imported configuration names: a server certificate and key
/// from rcgen, and a transport CA bundle.
fn create_pem_files(dir: &Path, cert: &str, key: &str, bundle: &str) {
    let server_key = rcgen::KeyPair::generate().unwrap();
    let server = rcgen::CertificateParams::new(vec!["localhost".to_owned()]).unwrap().self_signed(&server_key).unwrap();
    std::fs::write(dir.join(cert), server.pem()).unwrap();
    std::fs::write(dir.join(key), server_key.serialize_pem()).unwrap();
    std::fs::write(dir.join(bundle), TestPki::generate().client_ca_pem()).unwrap();
}

#[test]
fn a_pasted_wso2_file_gets_every_hint_at_once() {
    let dir = tempfile::tempdir().unwrap();
    std::fs::write(dir.path().join("deployment.toml"), fixture()).unwrap();
    let output = keyfort(&["check-config", "--config", "deployment.toml"], dir.path());
    assert_eq!(output.status.code(), Some(2));
    let err = stderr(&output);
    for needle in [
        "[server] hostname: unknown key: WSO2 Identity Server's [server] hostname is Keyfort's [server] public_url",
        "[server] offset: unknown key",
        "[super_admin]: unknown section: WSO2's super administrator: create Keyfort's administrators with `keyfort admin add-user",
        "[keystore]: unknown section",
        "[server.tls] cert_file",
        "[truststore]: unknown section",
        "[oauth.token_validation]: unknown section: WSO2's token validity periods are Keyfort's [oauth.token_lifetimes]",
        "[oauth] timestamp_skew: unknown key: WSO2's [oauth] timestamp_skew is Keyfort's [oauth.dcr] clock_skew_seconds",
        "[user_store]: unknown section",
        "[[event_listener]]: unknown section: a WSO2 Identity Server section with no Keyfort equivalent",
        "keyfort import-wso2",
        "[server] listen: is required",
    ] {
        assert!(err.contains(needle), "{needle:?} missing from:\n{err}");
    }
    assert!(err.lines().all(|l| l.starts_with("error: deployment.toml: ")), "one line per problem:\n{err}");
    assert!(err.lines().count() >= 12, "{err}");
}

#[test]
fn the_seed_snippet_is_imported_into_a_safe_configuration() {
    let dir = tempfile::tempdir().unwrap();
    std::fs::write(dir.path().join("deployment.toml"), SEED_SNIPPET).unwrap();
    // As pasted, it names what is missing rather than a parser's "missing field".
    let pasted = keyfort(&["check-config", "--config", "deployment.toml"], dir.path());
    assert!(stderr(&pasted).contains("[server] listen: is required"), "{}", stderr(&pasted));

    let output = keyfort(&["import-wso2", "deployment.toml"], dir.path());
    assert!(output.status.success(), "{}", stderr(&output));
    let report = stdout(&output);
    assert!(report.contains("[oauth.dcr] ssa_jkws: [oauth.dcr] ssa_jkws, unchanged"), "{report}");
    assert!(report.contains("WSO2's default localhost"), "{report}");
    assert!(report.contains("keytool -importkeystore -srckeystore wso2carbon.jks"), "{report}");
    let config = std::fs::read_to_string(dir.path().join("keyfort.toml")).unwrap();
    assert!(config.contains("0015800001HQQrZAAX.jwks") && config.contains("listen = \"0.0.0.0:9443\""), "{config}");
    assert!(!config.contains("[development]"), "no development switch: {config}");

    // Until the keystores are converted, check-config names exactly the missing PEM files.
    let check = keyfort(&["check-config", "--config", "keyfort.toml"], dir.path());
    let err = stderr(&check);
    assert_eq!(check.status.code(), Some(2), "{err}");
    assert!(err.contains("wso2carbon.pem") && err.contains("client-truststore.pem"), "{err}");
    assert!(err.lines().all(|l| l.contains("[server.tls]")), "only the files: {err}");

    create_pem_files(dir.path(), "wso2carbon.pem", "wso2carbon.key", "client-truststore.pem");
    let check = keyfort(&["check-config", "--config", "keyfort.toml"], dir.path());
    assert!(check.status.success(), "{}", stderr(&check));

    // An existing file is not replaced without --force.
    let again = keyfort(&["import-wso2", "deployment.toml"], dir.path());
    assert!(!again.status.success() && stderr(&again).contains("--force"), "{}", stderr(&again));
}

#[test]
fn a_fuller_wso2_file_is_imported_with_what_could_not_be_carried_and_why() {
    let dir = tempfile::tempdir().unwrap();
    std::fs::write(dir.path().join("deployment.toml"), fixture()).unwrap();
    let output = keyfort(&["import-wso2", "deployment.toml", "--out", "-"], dir.path());
    assert!(output.status.success(), "{}", stderr(&output));
    let config = stdout(&output);
    let report = stderr(&output);
    for secret in ["wso2123", "wso2is-db-secret", "tls-keystore-secret", "wso2carbon\""] {
        assert!(!config.contains(secret) && !report.contains(secret), "{secret} leaked:\n{config}\n{report}");
    }
    for line in [
        "listen = \"10.1.2.3:9446\"",
        "public_url = \"https://obiam.bank.example\"",
        "cert_file = \"obiam-tls.pem\"",
        "key_file = \"obiam-tls.key\"",
        "client_ca_file = \"client-truststore.pem\"",
        "url = \"postgres://wso2is@db.bank.example:5432/wso2_identity\"",
        "authentication_required = true",
        "clock_skew_seconds = 120",
        "application_seconds = 1800",
        "user_seconds = 900",
        "refresh_seconds = 43200",
        "id_token_seconds = 900",
    ] {
        assert!(config.contains(line), "{line:?} missing from:\n{config}");
    }
    for line in [
        "[super_admin]: WSO2's super administrator: create Keyfort's administrators with `keyfort admin add-user",
        "[user_store]: WSO2's user store has no Keyfort section",
        "[database.identity_db] password: not carried over into the file: give the URL with its password in a secret file named by KEYFORT_STORAGE__URL_FILE",
        "[keystore.tls] password: not carried over",
        "[oauth.dcr] client_id_validation_regex: no Keyfort equivalent",
        "[account_recovery]: a WSO2 Identity Server section with no Keyfort equivalent",
        "[event_listener]: a WSO2 Identity Server section with no Keyfort equivalent",
        "[transport.https.properties] proxyPort: the port in public_url (443)",
    ] {
        assert!(report.contains(line), "{line:?} missing from:\n{report}");
    }
    let not_carried = report.split("Not carried over:").nth(1).unwrap_or_default();
    assert!(not_carried.contains("[super_admin]") && !not_carried.contains("ssa_jkws"), "{report}");

    // The result is a valid configuration: once its files exist (and the database URL
    // points at SQLite, since no PostgreSQL is reached here) check-config passes.
    std::fs::write(dir.path().join("keyfort.toml"), &config).unwrap();
    create_pem_files(dir.path(), "obiam-tls.pem", "obiam-tls.key", "client-truststore.pem");
    let check = keyfort(&["check-config", "--config", "keyfort.toml"], dir.path());
    assert!(check.status.success(), "{}", stderr(&check));
    let loaded = keyfort::config::Config::load(&dir.path().join("keyfort.toml")).unwrap();
    assert_eq!(loaded.token_lifetimes.application, 1800);
    assert!(loaded.dcr.authentication_required && loaded.dcr.require_transport_certificate);
}
