//! The offline sandbox directory, the TPP command line and the demo, run as a user would:
//! the real `keyfort` binary, in separate processes, talking over loopback.

use std::path::Path;
use std::process::{Command, Output};
use std::time::Duration;

use serde_json::Value;

use crate::crash::free_port;
use crate::helpers::seed_ssa_claims;

pub(crate) fn keyfort(args: &[&str]) -> Output {
    Command::new(env!("CARGO_BIN_EXE_keyfort")).args(args).output().expect("keyfort runs")
}

pub(crate) fn ok(output: &Output) -> String {
    assert!(
        output.status.success(),
        "keyfort failed:\nstdout: {}\nstderr: {}",
        String::from_utf8_lossy(&output.stdout),
        String::from_utf8_lossy(&output.stderr)
    );
    String::from_utf8_lossy(&output.stdout).into_owned()
}

pub(crate) fn path(p: &Path) -> &str {
    p.to_str().unwrap()
}

/// The directory the demo announced it works in.
fn demo_dir(text: &str) -> std::path::PathBuf {
    text.lines().find_map(|l| l.strip_prefix("Working directory: ")).expect("the directory is named").into()
}

#[test]
fn the_demo_runs_every_step_and_teaches_what_keyfort_checks() {
    let output = keyfort(&["demo", "--no-wait"]);
    let text = ok(&output);
    const STEPS: usize = 16;
    for step in 1..=STEPS {
        assert!(text.contains(&format!("[{step}/{STEPS}]")), "step {step} missing:\n{text}");
    }
    let steps: Vec<&str> = text.split(&format!("/{STEPS}] ")).skip(1).collect();
    assert_eq!(steps.len(), STEPS, "{text}");
    for (i, step) in steps.iter().enumerate() {
        assert!(step.contains('✔'), "step {} succeeded:\n{step}", i + 1);
    }
    assert!(!text.contains('✘'), "{text}");
    // The SSA decoded, as the WSO2 guide shows it.
    for claim in
        ["\"alg\": \"PS256\"", "\"iss\": \"OpenBanking Ltd\"", "\"software_roles\": [", "\"org_jwks_endpoint\""]
    {
        assert!(text.contains(claim), "{claim} missing from the decoded SSA:\n{text}");
    }
    // Each check with its outcome.
    for check in [
        "✔ SSA signature: verified with the directory key",
        "✔ SSA issuer, dates and status",
        "✔ request signature",
        "✔ transport certificate: chains to the sandbox CA",
        "✔ certificate binding",
        "✔ roles to scopes: software_roles AISP, PISP allow the scopes",
        "✔ FAPI and registration rules",
    ] {
        assert!(text.contains(check), "{check} missing:\n{text}");
    }
    // One refusal, with its RFC 7591 error.
    assert!(text.contains("response status: 403"), "{text}");
    assert!(text.contains("\"error\": \"unapproved_software_statement\""), "{text}");
    assert!(text.contains("the transport certificate belongs to organisation"), "{text}");
    assert!(text.contains("cnf.x5t#S256 matches"), "{text}");
    // The demo customer, with its password and two accounts.
    assert!(text.contains("username: demo-customer"), "{text}");
    let password = text.lines().find_map(|l| l.trim().strip_prefix("password: ")).expect("the password is printed");
    assert!(password.len() >= 12, "{password}");
    assert_eq!(text.matches("    account: demo-").count(), 2, "{text}");
    journey_steps_of_the_demo(&steps[8..], &text, password);
    // The server has stopped: nothing is offered against it, and its keys are gone.
    assert!(!text.contains("Try it yourself") && !text.contains("curl "), "{text}");
    let dir = demo_dir(&text);
    assert!(!dir.exists(), "{} was left behind", dir.display());
    assert!(text.contains("were removed"), "{text}");
}

/// The customer's journey of `keyfort demo` (its steps 7 to 14).
fn journey_steps_of_the_demo(steps: &[&str], text: &str, password: &str) {
    let [bank, consent, authorize, sign_in, decide, exchange, accounts, revoke] = steps else {
        panic!("eight journey steps: {text}");
    };
    // The sandbox bank, trusted by Keyfort through its certificate's subject.
    assert!(bank.contains("listening on https://localhost:"), "{bank}");
    assert!(bank.contains("O=Keyfort Sandbox Bank"), "{bank}");
    assert_eq!(bank.matches("account at the bank: demo-").count(), 2, "{bank}");
    // The consent, created with the client-credentials token and a signed request.
    assert!(consent.contains("response status: 201"), "{consent}");
    assert!(consent.contains("✔ consent aac-") && consent.contains("is AwaitingAuthorisation"), "{consent}");
    // The bank's pages, as a person reads them.
    assert!(authorize.contains("\"openbanking_intent_id\":{\"essential\":true,\"value\":\"aac-"), "{authorize}");
    assert!(authorize.contains("page: Sign in to Keyfort Bank"), "{authorize}");
    assert!(authorize.contains("page: [Sign in]"), "{authorize}");
    assert!(!sign_in.contains(password), "the password is not echoed when the demo signs in: {sign_in}");
    for sentence in [
        "page: Demo TPP App is asking for access to your account information",
        "page: See your account names and numbers",
        "page: See your account balances",
        "page: Choose the accounts to share",
        "page: Current account Sort code 60-30-45, account 60123456",
        "page: Savings account Sort code 60-30-45, account 87654321",
        "page: [Allow]",
    ] {
        assert!(sign_in.contains(sentence), "{sentence:?} on the consent page:\n{sign_in}");
    }
    // The decision: one account, and the redirect read, not fetched.
    assert!(decide.contains("account=demo-current-account, decision=approve"), "{decide}");
    assert!(decide.contains("303 See Other to: https://tpp.example/callback#code=…&id_token=…&state=…"), "{decide}");
    // The code exchanged after the ID token's checks.
    assert!(exchange.contains("✔ ID token verified"), "{exchange}");
    assert!(exchange.contains("✔ code exchanged") && exchange.contains("and a refresh token"), "{exchange}");
    assert!(exchange.contains("\"consent_id\":\"aac-"), "{exchange}");
    // The chosen account only, from the bank.
    let listed: serde_json::Value = serde_json::from_str(
        accounts.lines().find_map(|l| l.trim().strip_prefix("response: ")).expect("the bank's answer is printed"),
    )
    .unwrap();
    let ids: Vec<&str> =
        listed["Data"]["Account"].as_array().unwrap().iter().map(|a| a["AccountId"].as_str().unwrap()).collect();
    assert_eq!(ids, ["demo-current-account"], "{accounts}");
    assert!(!accounts.contains("demo-savings-account"), "{accounts}");
    assert!(accounts.contains("\"Amount\":\"1250.00\""), "{accounts}");
    assert!(accounts.contains("the bank listed 1 of the customer's 2 accounts"), "{accounts}");
    // Revoked: the bank refuses the token and introspection says so.
    assert!(revoke.contains("response status: 204"), "{revoke}");
    assert!(
        revoke.contains("the bank, for the same token: HTTP 403")
            || revoke.contains("the bank, for the same token: HTTP 401"),
        "{revoke}"
    );
    assert!(revoke.contains("introspection: {\"active\":false}"), "{revoke}");
}

#[test]
fn the_waiting_demo_hands_the_browser_part_to_a_person_then_stops_on_ctrl_c() {
    use std::io::{BufRead, BufReader};
    use std::process::{Command, Stdio};
    let mut demo = Command::new(env!("CARGO_BIN_EXE_keyfort"))
        .arg("demo")
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .expect("keyfort demo starts");
    let mut text = String::new();
    let mut lines = BufReader::new(demo.stdout.take().unwrap()).lines();
    let waiting = loop {
        match lines.next() {
            Some(Ok(line)) => {
                text.push_str(&line);
                text.push('\n');
                if line.contains("press Ctrl-C to stop it") {
                    break true;
                }
            }
            _ => break false,
        }
    };
    let interrupted = Command::new("kill").args(["-INT", &demo.id().to_string()]).status().unwrap();
    let status = demo.wait().unwrap();
    for line in lines.map_while(Result::ok) {
        text.push_str(&line);
        text.push('\n');
    }
    assert!(waiting, "the demo did not wait for Ctrl-C:\n{text}");
    assert!(interrupted.success() && status.success(), "the demo stops cleanly on Ctrl-C ({status}):\n{text}");
    let password = text.lines().find_map(|l| l.trim().strip_prefix("password: ")).expect("the password is printed");
    // Commands against the running server, and the browser part for a person.
    assert!(text.contains("Try it yourself") && text.contains("customers list --config"), "{text}");
    assert!(text.contains("Authorize a consent in your browser"), "{text}");
    assert!(
        text.lines().any(|l| l.trim().starts_with("https://localhost:") && l.contains("/oauth2/authorize?client_id=")),
        "{text}"
    );
    assert!(text.contains(&format!("Sign in as demo-customer with the password {password}")), "{text}");
    assert!(text.contains("tpp callback --registration") && text.contains("tpp accounts --registration"), "{text}");
    assert!(
        text.lines().any(|l| l.contains("https://localhost:") && l.trim_end().ends_with("/customer")),
        "the customer's own page is offered: {text}"
    );
    assert!(!demo_dir(&text).exists(), "the demo's files are removed when it stops");
}

#[test]
fn the_demo_keeps_its_files_for_their_owner_only_when_asked() {
    let text = ok(&keyfort(&["demo", "--no-wait", "--keep"]));
    let dir = demo_dir(&text);
    assert!(text.contains(&format!("kept in {}", dir.display())), "{text}");
    let kept = dir.join("sandbox/ca/root.key").exists() && dir.join("keyfort.toml").exists();
    #[cfg(unix)]
    let mode = {
        use std::os::unix::fs::PermissionsExt;
        std::fs::metadata(&dir).unwrap().permissions().mode() & 0o777
    };
    std::fs::remove_dir_all(&dir).unwrap();
    assert!(kept, "the sandbox keys and configuration are kept");
    #[cfg(unix)]
    assert_eq!(mode, 0o700, "only the owner may enter the directory");
}

#[test]
fn sandbox_software_statements_have_the_open_banking_claim_set() {
    let dir = tempfile::tempdir().unwrap();
    let sandbox = dir.path().join("sb");
    ok(&keyfort(&["sandbox", "init", path(&sandbox)]));
    let added = ok(&keyfort(&[
        "sandbox",
        "add-software",
        path(&sandbox),
        "--org",
        "Acme Payments Ltd",
        "--roles",
        "AISP,PISP",
        "--redirect-uri",
        "https://acme.example/cb",
        "--software-id",
        "AcmeSoftware01",
    ]));
    assert!(added.contains("AcmeSoftware01"), "{added}");
    let ssa_path = sandbox.join("software/AcmeSoftware01/ssa.jwt");
    let decoded = ok(&keyfort(&["jwt", "decode", path(&ssa_path)]));
    let claims: Value = serde_json::from_str(decoded.split("\n\n").nth(1).unwrap()).unwrap();
    let names = |v: &Value| -> Vec<String> {
        let mut keys: Vec<String> = v.as_object().unwrap().keys().cloned().collect();
        keys.sort();
        keys
    };
    assert_eq!(names(&claims), names(&seed_ssa_claims()), "the sandbox SSA has the seed's claim names");
    assert_eq!(claims["iss"], "OpenBanking Ltd");
    assert_eq!(claims["software_roles"], serde_json::json!(["AISP", "PISP"]));
    let header: Value = serde_json::from_str(decoded.split("\n\n").next().unwrap()).unwrap();
    assert_eq!(header["alg"], "PS256");
}

#[test]
fn serve_sandbox_needs_the_development_flag() {
    let dir = tempfile::tempdir().unwrap();
    let output = keyfort(&["serve", "--config", "keyfort.example.toml", "--sandbox", path(dir.path())]);
    assert!(!output.status.success());
    assert!(String::from_utf8_lossy(&output.stderr).contains("--dev"), "{}", String::from_utf8_lossy(&output.stderr));
}

pub(crate) struct Child(pub(crate) std::process::Child);
impl Drop for Child {
    fn drop(&mut self) {
        let _ = self.0.kill();
        let _ = self.0.wait();
    }
}

#[test]
fn a_tpp_onboards_with_the_command_line_against_serve_with_sandbox() {
    let dir = tempfile::tempdir().unwrap();
    let sandbox = dir.path().join("sb");
    let keystore_port = free_port();
    ok(&keyfort(&["sandbox", "init", path(&sandbox), "--keystore-url", &format!("http://127.0.0.1:{keystore_port}")]));
    ok(&keyfort(&[
        "sandbox",
        "add-software",
        path(&sandbox),
        "--org",
        "Acme Payments Ltd",
        "--roles",
        "AISP,PISP,CBPII",
        "--redirect-uri",
        "https://acme.example/cb",
        "--software-id",
        "AcmeSoftware01",
    ]));
    let port = free_port();
    let config = dir.path().join("keyfort.toml");
    std::fs::write(
        &config,
        format!(
            "[server]\nlisten = \"127.0.0.1:{port}\"\npublic_url = \"https://localhost:{port}\"\n\n[admin]\nlisten = \"127.0.0.1:0\"\n\n[oauth.dcr]\nssa_jkws = \"https://unused.example/x.jwks\"\n\n[log]\nlevel = \"warn\"\n"
        ),
    )
    .unwrap();
    let server = Child(
        Command::new(env!("CARGO_BIN_EXE_keyfort"))
            .args(["serve", "--config", path(&config), "--sandbox", path(&sandbox), "--dev"])
            .stdout(std::process::Stdio::null())
            .stderr(std::process::Stdio::null())
            .spawn()
            .unwrap(),
    );
    let mut up = false;
    for _ in 0..100 {
        if std::net::TcpStream::connect(("127.0.0.1", port)).is_ok()
            && dir.path().join("data/dev-tls/cert.pem").exists()
        {
            up = true;
            break;
        }
        std::thread::sleep(Duration::from_millis(100));
    }
    assert!(up, "the server started");
    let software = sandbox.join("software/AcmeSoftware01");
    let kid = serde_json::from_str::<Value>(&std::fs::read_to_string(sandbox.join("sandbox.json")).unwrap()).unwrap()
        ["software"][0]["signing_kid"]
        .as_str()
        .unwrap()
        .to_owned();
    let registration = dir.path().join("registration.json");
    let cacert = dir.path().join("data/dev-tls/cert.pem");
    let registered = ok(&keyfort(&[
        "tpp",
        "register",
        "--server",
        &format!("https://localhost:{port}"),
        "--ssa",
        path(&software.join("ssa.jwt")),
        "--signing-key",
        path(&software.join("signing.key")),
        "--kid",
        &kid,
        "--cert",
        path(&software.join("obwac.pem")),
        "--key",
        path(&software.join("obwac.key")),
        "--cacert",
        path(&cacert),
        "--out",
        path(&registration),
    ]));
    assert!(registered.contains("HTTP 201"), "{registered}");
    // Every private key the command line wrote, and the registration (its access token),
    // are readable by their owner only.
    #[cfg(unix)]
    for secret in [
        sandbox.join("ca/root.key"),
        sandbox.join("ca/issuing.key"),
        sandbox.join("ca/keystore-server.key"),
        sandbox.join("directory/signing.key"),
        software.join("signing.key"),
        software.join("transport.key"),
        software.join("obwac.key"),
        registration.clone(),
    ] {
        use std::os::unix::fs::PermissionsExt;
        let mode = std::fs::metadata(&secret).unwrap().permissions().mode() & 0o777;
        assert_eq!(mode, 0o600, "{}", secret.display());
    }
    let token = ok(&keyfort(&["tpp", "token", "--registration", path(&registration), "--scope", "payments"]));
    assert!(
        std::fs::read_to_string(sandbox.join("software/AcmeSoftware01/software.json")).unwrap().contains(&kid),
        "the software directory names its kid"
    );
    assert!(token.contains("access_token") && token.contains("\"scope\": \"payments\""), "{token}");
    let read = ok(&keyfort(&["tpp", "get", "--registration", path(&registration)]));
    assert!(read.contains("AcmeSoftware01"), "{read}");
    let updated = ok(&keyfort(&["tpp", "update", "--registration", path(&registration)]));
    assert!(updated.contains("HTTP 200"), "{updated}");
    let deleted = ok(&keyfort(&["tpp", "delete", "--registration", path(&registration)]));
    assert!(deleted.contains("deleted (HTTP 204)") && !deleted.contains("null"), "{deleted}");
    let gone = keyfort(&["tpp", "get", "--registration", path(&registration)]);
    assert!(!gone.status.success());
    assert!(String::from_utf8_lossy(&gone.stderr).contains("invalid_token"));

    // Again with the software directory instead of five flags, from the sandbox's folder
    // with relative paths. Without --cacert the TLS failure says what to pass.
    let work = dir.path().join("work");
    std::fs::create_dir_all(&work).unwrap();
    let in_work =
        |args: &[&str]| Command::new(env!("CARGO_BIN_EXE_keyfort")).args(args).current_dir(&work).output().unwrap();
    let server_url = format!("https://localhost:{port}");
    let untrusted =
        in_work(&["tpp", "register", "--server", &server_url, "--software", "../sb/software/AcmeSoftware01"]);
    let stderr = String::from_utf8_lossy(&untrusted.stderr);
    assert!(!untrusted.status.success() && stderr.contains("--cacert") && stderr.contains("not trusted"), "{stderr}");
    let registered = in_work(&[
        "tpp",
        "register",
        "--server",
        &server_url,
        "--software",
        "../sb/software/AcmeSoftware01",
        "--cacert",
        "../data/dev-tls/cert.pem",
    ]);
    assert!(registered.status.success(), "{}", String::from_utf8_lossy(&registered.stderr));
    let saved: Value = serde_json::from_str(&std::fs::read_to_string(work.join("registration.json")).unwrap()).unwrap();
    for file in ["ssa", "signing_key", "cert", "key", "cacert"] {
        assert!(Path::new(saved[file].as_str().unwrap()).is_absolute(), "{file} is stored absolute: {saved}");
    }
    assert_eq!(saved["kid"], kid.as_str(), "the kid comes from the software directory");
    // From another folder, the saved registration still finds its files.
    let token = ok(&keyfort(&["tpp", "token", "--registration", path(&work.join("registration.json"))]));
    assert!(token.contains("access_token"), "{token}");
    let deleted = ok(&keyfort(&["tpp", "delete", "--registration", path(&work.join("registration.json"))]));
    assert!(deleted.contains("deleted (HTTP 204)"), "{deleted}");

    // tls_client_auth with the legacy transport certificate: its subject, in the directory's
    // order, has the RFC 4514 form OBIE requires (CN first), so the sandbox's own
    // tls_client_auth clients register and get tokens.
    let tls_registration = dir.path().join("tls-registration.json");
    let registered = ok(&keyfort(&[
        "tpp",
        "register",
        "--server",
        &format!("https://localhost:{port}"),
        "--ssa",
        path(&software.join("ssa.jwt")),
        "--signing-key",
        path(&software.join("signing.key")),
        "--kid",
        &kid,
        "--cert",
        path(&software.join("transport.pem")),
        "--key",
        path(&software.join("transport.key")),
        "--cacert",
        path(&cacert),
        "--auth-method",
        "tls_client_auth",
        "--out",
        path(&tls_registration),
    ]));
    assert!(registered.contains("HTTP 201"), "{registered}");
    assert!(registered.contains("CN=AcmeSoftware01,OU="), "{registered}");
    let token = ok(&keyfort(&["tpp", "token", "--registration", path(&tls_registration), "--scope", "accounts"]));
    assert!(token.contains("access_token"), "{token}");
    drop(server);
}

#[test]
fn the_keystore_is_served_over_https_with_the_sandbox_ca() {
    let dir = tempfile::tempdir().unwrap();
    let sandbox = dir.path().join("sb");
    let port = free_port();
    ok(&keyfort(&["sandbox", "init", path(&sandbox), "--keystore-url", &format!("https://localhost:{port}")]));
    let _server = Child(
        Command::new(env!("CARGO_BIN_EXE_keyfort"))
            .args(["sandbox", "serve", path(&sandbox), "--https", "--listen", &format!("127.0.0.1:{port}")])
            .stdout(std::process::Stdio::null())
            .spawn()
            .unwrap(),
    );
    let client = keyfort::cli::https_client(Some(&sandbox.join("ca/bundle.pem")), None).unwrap();
    let runtime = tokio::runtime::Runtime::new().unwrap();
    let jwks: Value = runtime.block_on(async {
        for _ in 0..100 {
            if let Ok(response) = client.get(format!("https://localhost:{port}/openbanking.jwks")).send().await {
                return serde_json::from_str(&response.text().await.unwrap()).unwrap();
            }
            tokio::time::sleep(Duration::from_millis(100)).await;
        }
        panic!("the keystore did not answer over https");
    });
    assert_eq!(jwks["keys"][0]["alg"], "PS256");
    let plain_elsewhere = keyfort(&["sandbox", "serve", path(&sandbox), "--listen", "0.0.0.0:0"]);
    assert!(!plain_elsewhere.status.success(), "plain HTTP off loopback is refused");
}

#[test]
fn serve_with_a_sandbox_whose_keystore_is_https_becomes_ready() {
    let dir = tempfile::tempdir().unwrap();
    let sandbox = dir.path().join("sb");
    let keystore_url = format!("https://127.0.0.1:{}", free_port());
    ok(&keyfort(&["sandbox", "init", path(&sandbox), "--keystore-url", &keystore_url]));
    ok(&keyfort(&[
        "sandbox",
        "add-software",
        path(&sandbox),
        "--org",
        "Acme Payments Ltd",
        "--roles",
        "AISP",
        "--redirect-uri",
        "https://acme.example/cb",
    ]));
    let port = free_port();
    let config = dir.path().join("keyfort.toml");
    std::fs::write(
        &config,
        format!(
            "[server]\nlisten = \"127.0.0.1:{port}\"\npublic_url = \"https://localhost:{port}\"\n\n[admin]\nlisten = \"127.0.0.1:0\"\n\n[oauth.dcr]\nssa_jkws = \"https://unused.example/x.jwks\"\n\n[log]\nlevel = \"info\"\n"
        ),
    )
    .unwrap();
    let log_path = dir.path().join("serve.log");
    let log = std::fs::File::create(&log_path).unwrap();
    let mut server = Child(
        Command::new(env!("CARGO_BIN_EXE_keyfort"))
            .args(["serve", "--config", path(&config), "--sandbox", path(&sandbox), "--dev"])
            .stdout(log.try_clone().unwrap())
            .stderr(log)
            .spawn()
            .unwrap(),
    );
    let server_cert = dir.path().join("data/dev-tls/cert.pem");
    let runtime = tokio::runtime::Runtime::new().unwrap();
    let ready = runtime.block_on(async {
        let mut client = None;
        for _ in 0..150 {
            if let Ok(Some(status)) = server.0.try_wait() {
                panic!("serve exited ({status}):\n{}", std::fs::read_to_string(&log_path).unwrap_or_default());
            }
            if client.is_none() && server_cert.exists() {
                client = keyfort::cli::https_client(Some(&server_cert), None).ok();
            }
            if let Some(client) = &client {
                // Ready means the directory keys were fetched from the keystore, over https.
                if let Ok(response) = client.get(format!("https://localhost:{port}/readyz")).send().await {
                    if response.status() == 200 {
                        return true;
                    }
                }
            }
            tokio::time::sleep(Duration::from_millis(100)).await;
        }
        false
    });
    assert!(ready, "/readyz never answered 200:\n{}", std::fs::read_to_string(&log_path).unwrap_or_default());
    drop(server);
}
