//! The customer's journey with the TPP command line, run as a user would: the real
//! `keyfort` binary serving Keyfort, `keyfort sandbox serve --bank` serving the keystore and
//! the sandbox bank, and the `keyfort tpp` commands, in separate processes over loopback.
//! The customer's browser is played by reqwest, posting the bank's forms as a browser does.

use std::collections::HashMap;
use std::path::Path;
use std::process::{Command, Output, Stdio};
use std::time::Duration;

use serde_json::{json, Value};

use crate::crash::free_port;
use crate::sandbox::{keyfort, ok, path, Child};

const PASSWORD: &str = "correct horse battery";
const REDIRECT: &str = "https://acme.example/cb";

fn keyfort_with_stdin(args: &[&str], stdin: &str) -> Output {
    use std::io::Write;
    let mut child = Command::new(env!("CARGO_BIN_EXE_keyfort"))
        .args(args)
        .stdin(Stdio::piped())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .unwrap();
    child.stdin.take().unwrap().write_all(stdin.as_bytes()).unwrap();
    child.wait_with_output().unwrap()
}

/// A command that must fail; its standard error.
fn refused(output: &Output) -> String {
    assert!(
        !output.status.success(),
        "keyfort should have failed:\nstdout: {}",
        String::from_utf8_lossy(&output.stdout)
    );
    String::from_utf8_lossy(&output.stderr).into_owned()
}

/// The customer's browser: trusts Keyfort's certificate, follows no redirect (the test reads
/// them, and the TPP's redirect URI is not on this machine).
fn browser(server_cert: &Path) -> reqwest::Client {
    let mut roots = rustls::RootCertStore::empty();
    for cert in keyfort::pem::read_certificates(server_cert).unwrap() {
        roots.add(cert).unwrap();
    }
    let tls = rustls::ClientConfig::builder_with_provider(keyfort::tls::crypto_provider())
        .with_safe_default_protocol_versions()
        .unwrap()
        .with_root_certificates(roots)
        .with_no_client_auth();
    reqwest::Client::builder().use_preconfigured_tls(tls).redirect(reqwest::redirect::Policy::none()).build().unwrap()
}

fn hidden_input(html: &str, name: &str) -> String {
    let at = html.find(&format!("name=\"{name}\"")).unwrap_or_else(|| panic!("no {name} in {html}"));
    let start = html[..at].rfind("<input").unwrap();
    let tag = &html[start..at + html[at..].find('>').unwrap()];
    let value = tag.split("value=\"").nth(1).unwrap();
    value[..value.find('"').unwrap()].to_owned()
}

/// Signs in as ann and allows `accounts` on the bank's pages, starting at the authorization
/// URL; returns where the bank sends the browser.
async fn customer_allows(browser: &reqwest::Client, origin: &str, url: &str, accounts: &[&str]) -> String {
    let login = browser.get(url).send().await.unwrap();
    assert_eq!(login.status(), 200);
    let cookie = login.headers()["set-cookie"].to_str().unwrap().split(';').next().unwrap().to_owned();
    assert!(cookie.starts_with("__Host-keyfort-authorization="), "{cookie}");
    let page = login.text().await.unwrap();
    let post = |path: &str, form: Vec<(&str, String)>| {
        browser
            .post(format!("{origin}{path}"))
            .header("cookie", &cookie)
            .header("origin", origin)
            .header("content-type", "application/x-www-form-urlencoded")
            .body(url::form_urlencoded::Serializer::new(String::new()).extend_pairs(form).finish())
            .send()
    };
    let signed_in = post(
        "/oauth2/authorize/login",
        vec![
            ("csrf_token", hidden_input(&page, "csrf_token")),
            ("username", "ann".into()),
            ("password", PASSWORD.into()),
            ("decision", "sign_in".into()),
        ],
    )
    .await
    .unwrap();
    assert_eq!(signed_in.status(), 303, "{}", signed_in.text().await.unwrap());
    let consent =
        browser.get(format!("{origin}/oauth2/authorize/consent")).header("cookie", &cookie).send().await.unwrap();
    let page = consent.text().await.unwrap();
    assert!(page.contains("See your account balances"), "{page}");
    let mut form = vec![("csrf_token", hidden_input(&page, "csrf_token")), ("decision", "approve".into())];
    form.extend(accounts.iter().map(|a| ("account", (*a).to_owned())));
    let decided = post("/oauth2/authorize/consent", form).await.unwrap();
    assert_eq!(decided.status(), 303, "{}", decided.text().await.unwrap());
    decided.headers()["location"].to_str().unwrap().to_owned()
}

/// The redirect with one fragment parameter replaced.
fn with_fragment_param(location: &str, name: &str, value: &str) -> String {
    let (base, fragment) = location.split_once('#').unwrap();
    let mut params: Vec<(String, String)> = url::form_urlencoded::parse(fragment.as_bytes()).into_owned().collect();
    for (k, v) in &mut params {
        if k == name {
            *v = value.to_owned();
        }
    }
    format!("{base}#{}", url::form_urlencoded::Serializer::new(String::new()).extend_pairs(params).finish())
}

fn fragment(location: &str) -> HashMap<String, String> {
    url::form_urlencoded::parse(location.split_once('#').unwrap().1.as_bytes()).into_owned().collect()
}

fn serve(config: &str) -> Child {
    Child(
        Command::new(env!("CARGO_BIN_EXE_keyfort"))
            .args(["serve", "--config", config])
            .stdout(Stdio::null())
            .stderr(Stdio::null())
            .spawn()
            .unwrap(),
    )
}

async fn wait_until_ready(server_cert: &Path, port: u16, server: &mut Child) {
    for _ in 0..200 {
        if let Ok(Some(status)) = server.0.try_wait() {
            panic!("keyfort serve exited: {status}");
        }
        if server_cert.exists() {
            let client = keyfort::cli::https_client(Some(server_cert), None).unwrap();
            if let Ok(response) = client.get(format!("https://localhost:{port}/readyz")).send().await {
                if response.status() == 200 {
                    return;
                }
            }
        }
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    panic!("keyfort never became ready");
}

#[tokio::test(flavor = "multi_thread")]
async fn a_tpp_walks_the_customers_journey_with_the_command_line_and_the_sandbox_bank() {
    let dir = tempfile::tempdir().unwrap();
    let sandbox = dir.path().join("sb");
    let (keystore_port, port, bank_port) = (free_port(), free_port(), free_port());
    let created = ok(&keyfort(&[
        "sandbox",
        "init",
        path(&sandbox),
        "--keystore-url",
        &format!("http://127.0.0.1:{keystore_port}"),
    ]));
    let bank_subject = created
        .lines()
        .find_map(|l| l.split_once("(for [resource_server] client_subject_dns): ").map(|(_, dn)| dn.trim().to_owned()))
        .unwrap_or_else(|| panic!("sandbox init names the bank's subject: {created}"));
    ok(&keyfort(&[
        "sandbox",
        "add-software",
        path(&sandbox),
        "--org",
        "Acme Payments Ltd",
        "--roles",
        "AISP,PISP,CBPII",
        "--redirect-uri",
        REDIRECT,
        "--software-id",
        "AcmeSoftware01",
    ]));
    let config = dir.path().join("keyfort.toml");
    // First without trusting the bank, to see what the bank then says.
    let configure = |resource_servers: &str| {
        std::fs::write(
            &config,
            format!(
                "[server]\nlisten = \"127.0.0.1:{port}\"\npublic_url = \"https://localhost:{port}\"\n\n\
                 [server.tls]\nclient_ca_file = \"{bundle}\"\n\n\
                 [oauth.dcr]\nssa_jkws = \"http://127.0.0.1:{keystore_port}/openbanking.jwks\"\nsoftware_environment = \"sandbox\"\n\n\
                 [http_client]\nallow_insecure_loopback = true\n\n\
                 [resource_server]\nclient_subject_dns = [{resource_servers}]\n\n[log]\nlevel = \"warn\"\n",
                bundle = sandbox.join("ca/bundle.pem").display(),
            ),
        )
        .unwrap()
    };
    configure("");
    let config = path(&config).to_owned();
    ok(&keyfort_with_stdin(
        &["customers", "add", "--config", &config, "ann", "--password-stdin"],
        &format!("{PASSWORD}\n"),
    ));
    for (id, name, number) in
        [("acc-current", "Current account", "60304560123456"), ("acc-savings", "Savings", "60304560999999")]
    {
        ok(&keyfort(&[
            "customers",
            "add-account",
            "--config",
            &config,
            "ann",
            "--account-id",
            id,
            "--name",
            name,
            "--scheme",
            "UK.OBIE.SortCodeAccountNumber",
            "--identification",
            number,
            "--currency",
            "GBP",
        ]));
    }
    // The bank's data, as a sandbox user writes it: the same account ids as Keyfort's store.
    let account = |id: &str, number: &str, balance: &str| {
        json!({"AccountId": id, "Currency": "GBP", "AccountType": "Personal", "AccountSubType": "CurrentAccount",
               "Account": [{"SchemeName": "UK.OBIE.SortCodeAccountNumber", "Identification": number, "Name": "Ann"}],
               "Balances": [{"Type": "InterimAvailable", "CreditDebitIndicator": "Credit",
                             "Amount": {"Amount": balance, "Currency": "GBP"}}]})
    };
    std::fs::write(
        sandbox.join("bank/accounts.json"),
        json!({"accounts": [account("acc-current", "60304560123456", "10.00"), account("acc-savings", "60304560999999", "99.00")]})
            .to_string(),
    )
    .unwrap();

    let mut server = serve(&config);
    let server_cert = dir.path().join("data/dev-tls/cert.pem");
    for _ in 0..200 {
        if server_cert.exists() {
            break;
        }
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    let server_url = format!("https://localhost:{port}");
    let bank_url = format!("https://localhost:{bank_port}");
    let _bank = Child(
        Command::new(env!("CARGO_BIN_EXE_keyfort"))
            .args([
                "sandbox",
                "serve",
                path(&sandbox),
                "--bank",
                "--keyfort",
                &server_url,
                "--keyfort-cacert",
                path(&server_cert),
                "--bank-listen",
                &format!("127.0.0.1:{bank_port}"),
            ])
            .stdout(Stdio::null())
            .stderr(Stdio::null())
            .spawn()
            .unwrap(),
    );
    wait_until_ready(&server_cert, port, &mut server).await;

    let software = sandbox.join("software/AcmeSoftware01");
    let kid = serde_json::from_str::<Value>(&std::fs::read_to_string(sandbox.join("sandbox.json")).unwrap()).unwrap()
        ["software"][0]["signing_kid"]
        .as_str()
        .unwrap()
        .to_owned();
    let registration = dir.path().join("registration.json");
    let reg = path(&registration).to_owned();
    ok(&keyfort(&[
        "tpp",
        "register",
        "--server",
        &server_url,
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
        path(&server_cert),
        "--out",
        &reg,
    ]));

    // Nothing to authorize before a consent exists; the error says what to do.
    let early = refused(&keyfort(&["tpp", "authorize", "--registration", &reg]));
    assert!(early.contains("tpp consent create"), "{early}");
    let created = ok(&keyfort(&["tpp", "consent", "create", "--registration", &reg, "--type", "account-access"]));
    assert!(created.contains("\"Status\": \"AwaitingAuthorisation\""), "{created}");
    let consent_id = created.split("ConsentId ").nth(1).unwrap().split_whitespace().next().unwrap().to_owned();
    assert!(consent_id.starts_with("aac-"), "{created}");
    // A payment consent needs its amount and payee; the error names the flags.
    let payment =
        refused(&keyfort(&["tpp", "consent", "create", "--registration", &reg, "--type", "domestic-payment"]));
    assert!(payment.contains("--amount, --creditor-name and --creditor-account"), "{payment}");
    let payment = ok(&keyfort(&[
        "tpp",
        "consent",
        "create",
        "--registration",
        &reg,
        "--type",
        "domestic-payment",
        "--amount",
        "12.50",
        "--creditor-name",
        "ACME Inc",
        "--creditor-account",
        "08080021325698",
        "--reference",
        "INV-7",
    ]));
    assert!(payment.contains("ConsentId pdc-"), "signed, with an idempotency key: {payment}");

    let authorize = ok(&keyfort(&["tpp", "authorize", "--registration", &reg, "--consent", &consent_id]));
    let url = authorize.lines().find(|l| l.starts_with("https://")).expect("the authorization URL").to_owned();
    assert!(url.starts_with(&format!("{server_url}/oauth2/authorize?client_id=")), "{url}");
    let journey = registration.with_extension("journey.json");
    #[cfg(unix)]
    {
        use std::os::unix::fs::PermissionsExt;
        assert_eq!(std::fs::metadata(&journey).unwrap().permissions().mode() & 0o777, 0o600);
    }

    let browser = browser(&server_cert);
    let location = customer_allows(&browser, &server_url, &url, &["acc-current"]).await;
    assert!(location.starts_with(&format!("{REDIRECT}#")), "{location}");
    let params = fragment(&location);

    // Answers that are not this authorization's are refused before the code is used.
    for (tampered, needle) in [
        (with_fragment_param(&location, "state", "someone-elses-state"), "state"),
        (with_fragment_param(&location, "code", &format!("{}x", params["code"])), "c_hash"),
        (with_fragment_param(&location, "id_token", &format!("{}AAAA", params["id_token"])), "signature"),
        (location.replace(REDIRECT, "https://evil.example/cb"), "redirect URI"),
        (location.split('#').next().unwrap().to_owned(), "#fragment"),
    ] {
        let error = refused(&keyfort(&["tpp", "callback", "--registration", &reg, &tampered]));
        assert!(error.contains(needle), "{needle:?} in {error}");
    }

    let called_back = ok(&keyfort(&["tpp", "callback", "--registration", &reg, &location]));
    assert!(called_back.contains("ID token verified"), "{called_back}");
    assert!(called_back.contains(&format!("access token for consent {consent_id}")), "{called_back}");
    #[cfg(unix)]
    {
        use std::os::unix::fs::PermissionsExt;
        let mode = std::fs::metadata(&journey).unwrap().permissions().mode() & 0o777;
        assert_eq!(mode, 0o600, "the tokens are readable by their owner only");
    }
    let saved: Value = serde_json::from_str(&std::fs::read_to_string(&journey).unwrap()).unwrap();
    assert!(saved["tokens"]["access_token"].as_str().is_some_and(|t| t.len() > 100), "{saved}");
    assert!(saved.get("pending").is_none(), "the authorization is finished: {saved}");
    let again = refused(&keyfort(&["tpp", "callback", "--registration", &reg, &location]));
    assert!(again.contains("no authorization is under way"), "{again}");

    let bundle = path(&sandbox.join("ca/bundle.pem")).to_owned();
    let bank = ["--registration", &reg, "--bank", &bank_url, "--bank-cacert", &bundle];
    let plain = refused(&keyfort(&[
        "tpp",
        "accounts",
        "--registration",
        &reg,
        "--bank",
        &format!("http://localhost:{bank_port}"),
    ]));
    assert!(plain.contains("must be an https URL"), "{plain}");
    // Keyfort does not know the bank yet: the bank says which setting to fix.
    let untrusted = refused(&keyfort(&[&["tpp", "accounts"][..], &bank].concat()));
    assert!(untrusted.contains("UK.OBIE.UnexpectedError"), "{untrusted}");
    assert!(
        untrusted
            .contains(&format!("add its subject \"{bank_subject}\" to Keyfort's [resource_server] client_subject_dns")),
        "{untrusted}"
    );
    drop(server);
    configure(&format!("\"{bank_subject}\""));
    let mut server = serve(&config);
    wait_until_ready(&server_cert, port, &mut server).await;

    // The bank answers with the chosen account only.
    let accounts = ok(&keyfort(&[&["tpp", "accounts"][..], &bank].concat()));
    let body: Value = serde_json::from_str(accounts.split_once('\n').unwrap().1).unwrap();
    let ids: Vec<&str> =
        body["Data"]["Account"].as_array().unwrap().iter().map(|a| a["AccountId"].as_str().unwrap()).collect();
    assert_eq!(ids, ["acc-current"], "{accounts}");
    assert_eq!(body["Data"]["Account"][0]["Account"][0]["Identification"], "60304560123456", "ReadAccountsDetail");
    assert_eq!(body["Links"]["Self"], format!("{bank_url}/open-banking/v3.1/aisp/accounts"));
    let balances = ok(&keyfort(&[&["tpp", "accounts", "--account", "acc-current", "--balances"][..], &bank].concat()));
    assert!(balances.contains("\"Amount\": \"10.00\""), "{balances}");
    let other = refused(&keyfort(&[&["tpp", "accounts", "--account", "acc-savings"][..], &bank].concat()));
    assert!(other.contains("403") && other.contains("UK.OBIE.Resource.ConsentMismatch"), "{other}");

    // The token is bound to the transport certificate: the same software's other
    // certificate does not carry it.
    let token = saved["tokens"]["access_token"].as_str().unwrap().to_owned();
    let obwac = keyfort::cli::https_client(
        Some(&sandbox.join("ca/bundle.pem")),
        Some((&software.join("obwac.pem"), &software.join("obwac.key"))),
    )
    .unwrap();
    let stolen =
        obwac.get(format!("{bank_url}/open-banking/v3.1/aisp/accounts")).bearer_auth(&token).send().await.unwrap();
    assert_eq!(stolen.status(), 403);
    assert!(stolen.headers().contains_key("x-fapi-interaction-id"));
    let refusal: Value = stolen.json().await.unwrap();
    assert_eq!(refusal["Code"], "403 Forbidden", "{refusal}");
    assert!(refusal["Message"].as_str().unwrap().contains("another certificate"), "{refusal}");
    // Without a client certificate there is no connection at all.
    let anonymous = keyfort::cli::https_client(Some(&sandbox.join("ca/bundle.pem")), None).unwrap();
    assert!(anonymous.get(format!("{bank_url}/open-banking/v3.1/aisp/accounts")).send().await.is_err());

    // A refresh gives a new access token, which the bank accepts.
    let refreshed = ok(&keyfort(&["tpp", "refresh", "--registration", &reg]));
    assert!(refreshed.contains("new access token saved"), "{refreshed}");
    let renewed: Value = serde_json::from_str(&std::fs::read_to_string(&journey).unwrap()).unwrap();
    assert_ne!(renewed["tokens"]["access_token"], saved["tokens"]["access_token"]);
    ok(&keyfort(&[&["tpp", "accounts"][..], &bank].concat()));

    // Revoked: the bank refuses the token, and the refresh token is refused too.
    let revoked = ok(&keyfort(&["tpp", "consent", "delete", "--registration", &reg, &consent_id]));
    assert!(revoked.contains("revoked"), "{revoked}");
    let after = refused(&keyfort(&[&["tpp", "accounts"][..], &bank].concat()));
    assert!(after.contains("HTTP 401") || after.contains("HTTP 403"), "{after}");
    let refresh_after = refused(&keyfort(&["tpp", "refresh", "--registration", &reg]));
    assert!(refresh_after.contains("invalid_grant"), "{refresh_after}");
    drop(server);
}
