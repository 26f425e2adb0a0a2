//! The customer's pages in a real browser: Debian's headless Chromium driven through
//! WebDriver by ChromeDriver (`apt-get install chromium chromium-driver`; `.ci/run`
//! installs them). The browser signs in, reads the consent, chooses accounts and allows,
//! and lands on the TPP's redirect URI with a code and an ID token in the fragment, which
//! the TPP then exchanges. Screenshots of the pages are written to `docs/screenshots/`.

use std::process::{Child, Command, Stdio};
use std::time::Duration;

use fantoccini::{Client, ClientBuilder};
use serde_json::json;

use crate::helpers::skip;

/// Where a program is, if it is installed.
fn executable(name: &str) -> Option<std::path::PathBuf> {
    let path = std::env::var_os("PATH")?;
    std::env::split_paths(&path).map(|dir| dir.join(name)).find(|candidate| candidate.is_file())
}

pub struct Browser {
    pub client: Client,
    driver: Child,
    _profile: tempfile::TempDir,
}

impl Drop for Browser {
    fn drop(&mut self) {
        let _ = self.driver.kill();
        let _ = self.driver.wait();
    }
}

impl Browser {
    /// Starts ChromeDriver and a headless Chromium that resolves each of `hosts` to
    /// 127.0.0.1 (a TPP's redirect host, so nothing leaves this machine) and accepts the
    /// test's certificates. `None` (reported as skipped, a failure under
    /// `KEYFORT_TEST_STRICT=1`) when Chromium or ChromeDriver is not installed.
    pub async fn start(hosts: &[&str]) -> Option<Self> {
        let (Some(chromium), Some(driver)) =
            (executable("chromium").or_else(|| executable("chromium-browser")), executable("chromedriver"))
        else {
            skip("Chromium and ChromeDriver are not installed (apt-get install chromium chromium-driver)");
            return None;
        };
        let port = crate::crash::free_port();
        let driver = Command::new(driver)
            .arg(format!("--port={port}"))
            .stdout(Stdio::null())
            .stderr(Stdio::null())
            .spawn()
            .expect("chromedriver starts");
        let profile = tempfile::tempdir().unwrap();
        let mut args = vec![
            "--headless=new".to_owned(),
            "--no-sandbox".to_owned(),
            "--disable-gpu".to_owned(),
            "--disable-dev-shm-usage".to_owned(),
            "--disable-quic".to_owned(),
            "--no-first-run".to_owned(),
            // This machine's network is closed; these keep Chromium from trying it.
            "--disable-background-networking".to_owned(),
            "--disable-component-update".to_owned(),
            "--disable-sync".to_owned(),
            "--ignore-certificate-errors".to_owned(),
            "--window-size=1280,1000".to_owned(),
            format!("--user-data-dir={}", profile.path().display()),
        ];
        if !hosts.is_empty() {
            let rules: Vec<String> = hosts.iter().map(|h| format!("MAP {h} 127.0.0.1")).collect();
            args.push(format!("--host-resolver-rules={}", rules.join(",")));
        }
        let mut capabilities = serde_json::Map::new();
        capabilities.insert("browserName".into(), json!("chrome"));
        capabilities
            .insert("goog:chromeOptions".into(), json!({"binary": chromium.display().to_string(), "args": args}));
        let connector = hyper_util::client::legacy::connect::HttpConnector::new();
        let mut last_error = String::new();
        for _ in 0..100 {
            match ClientBuilder::new(connector.clone())
                .capabilities(capabilities.clone())
                .connect(&format!("http://127.0.0.1:{port}"))
                .await
            {
                Ok(client) => return Some(Self { client, driver, _profile: profile }),
                Err(e) => last_error = e.to_string(),
            }
            tokio::time::sleep(Duration::from_millis(100)).await;
        }
        panic!("Chromium could not be started through ChromeDriver: {last_error}");
    }

    /// Clicks the button `selector` and waits until the browser has left the page it
    /// was on (a form post answers with a new document), so the next lookup cannot see
    /// the old page.
    pub async fn press(&self, selector: &str) {
        let old_page = self.client.find(fantoccini::Locator::Css("html")).await.unwrap();
        self.client.find(fantoccini::Locator::Css(selector)).await.unwrap().click().await.unwrap();
        for _ in 0..100 {
            if old_page.tag_name().await.is_err() {
                // The old document is gone; wait for the new one to finish loading.
                for _ in 0..100 {
                    let state = self.client.execute("return document.readyState", vec![]).await;
                    if state.is_ok_and(|s| s == "complete") {
                        return;
                    }
                    tokio::time::sleep(Duration::from_millis(50)).await;
                }
            }
            tokio::time::sleep(Duration::from_millis(50)).await;
        }
        panic!("pressing {selector} did not lead to a new page");
    }

    /// Saves a screenshot of the current page as PNG.
    pub async fn screenshot(&self, path: &std::path::Path) {
        let png = self.client.screenshot().await.unwrap();
        if let Some(dir) = path.parent() {
            std::fs::create_dir_all(dir).unwrap();
        }
        std::fs::write(path, png).unwrap();
    }
}

/// Where the screenshots a reviewer looks at are kept.
fn screenshots() -> std::path::PathBuf {
    std::path::Path::new(env!("CARGO_MANIFEST_DIR")).join("../../docs/screenshots")
}

#[tokio::test]
async fn a_customer_authorizes_in_a_browser_and_the_tpp_gets_its_tokens() {
    use fantoccini::Locator;

    use crate::authorization::{journey_with, CURRENT, REDIRECT, SAVINGS};
    use crate::helpers::{account_access_consent_body, Options, ACCOUNT_ACCESS_CONSENTS};

    let Some(browser) = Browser::start(&["www.google.com"]).await else { return };
    let mut options = Options::mutual_tls();
    options.own_port = true;
    let j = journey_with(options.section("[branding]\nbank_name = \"Keyfort Demo Bank\"\n")).await;
    let consent_id =
        j.create_consent(ACCOUNT_ACCESS_CONSENTS, &account_access_consent_body(j.app.now() + 86_400 * 90)).await;
    let claims = j.request_claims(&consent_id, "openid accounts", serde_json::json!({}));
    let request = j.app.keys.software_ps.sign(&claims);
    let url = format!(
        "{}/oauth2/authorize?{}",
        j.app.base,
        crate::tokens::form(&[
            ("client_id", j.tpp.client_id.as_str()),
            ("response_type", "code id_token"),
            ("scope", "openid accounts"),
            ("request", &request),
        ])
    );
    let c = &browser.client;
    c.goto(&url).await.unwrap();
    assert_eq!(c.title().await.unwrap(), "Sign in · Keyfort Demo Bank");
    browser.screenshot(&screenshots().join("login.png")).await;

    // A wrong password first: the page comes back with a message, the name kept.
    c.find(Locator::Css("#username")).await.unwrap().send_keys("ann").await.unwrap();
    c.find(Locator::Css("#password")).await.unwrap().send_keys("not the password").await.unwrap();
    browser.press("button[name=decision][value=sign_in]").await;
    let alert = c.find(Locator::Css("[role=alert]")).await.unwrap().text().await.unwrap();
    assert!(alert.contains("wrong"), "{alert}");
    browser.screenshot(&screenshots().join("login-wrong-password.png")).await;
    let kept = c.find(Locator::Css("#username")).await.unwrap().prop("value").await.unwrap();
    assert_eq!(kept.as_deref(), Some("ann"));

    c.find(Locator::Css("#password")).await.unwrap().send_keys(crate::authorization::PASSWORD).await.unwrap();
    browser.press("button[name=decision][value=sign_in]").await;

    // The consent page: what is asked, in words, and the accounts to choose.
    assert_eq!(c.title().await.unwrap(), "Review the request · Keyfort Demo Bank");
    let text = c.find(Locator::Css("main")).await.unwrap().text().await.unwrap();
    for sentence in ["See your account balances", "Until", "Current account", "Savings account"] {
        assert!(text.contains(sentence), "{sentence:?} missing from the consent page:\n{text}");
    }
    c.set_window_size(1280, 1400).await.unwrap();
    browser.screenshot(&screenshots().join("consent.png")).await;
    // Allowing with no account chosen is refused, in words.
    browser.press("button[name=decision][value=approve]").await;
    let alert = c.find(Locator::Css("[role=alert]")).await.unwrap().text().await.unwrap();
    assert!(alert.contains("Choose at least one account"), "{alert}");
    c.find(Locator::Css(&format!("input[name=account][value={}]", CURRENT.0))).await.unwrap().click().await.unwrap();
    browser.press("button[name=decision][value=approve]").await;

    // The browser lands on the TPP's redirect URI, the response in the fragment.
    let mut landed = String::new();
    for _ in 0..50 {
        landed = c.current_url().await.unwrap().to_string();
        if landed.starts_with(REDIRECT) {
            break;
        }
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    assert!(landed.starts_with(&format!("{REDIRECT}#")), "the browser is at {landed}");
    let (_, fragment) = landed.split_once('#').unwrap();
    let fragment: std::collections::HashMap<String, String> =
        url::form_urlencoded::parse(fragment.as_bytes()).into_owned().collect();
    assert_eq!(fragment["state"], "state-1");
    let id_token = j.id_token_claims(&fragment["id_token"]).await;
    assert_eq!(id_token["openbanking_intent_id"], consent_id);
    assert_eq!(id_token["c_hash"], crate::authorization::half_sha256(&fragment["code"]));

    // The TPP exchanges the code, and its token carries the consent and the chosen account.
    let tokens = j.exchange(&fragment["code"], &[("redirect_uri", REDIRECT)]).await;
    assert_eq!(tokens.status, 200, "{}", tokens.body);
    let access = j.app.verify_independently(tokens.body["access_token"].as_str().unwrap()).await;
    assert_eq!(access["openbanking_intent_id"], consent_id);
    let consent = j.consent_status(ACCOUNT_ACCESS_CONSENTS, &consent_id).await;
    assert_eq!(consent["Status"], "Authorised");

    // The customer's own page: sign in, see the TPP in words, withdraw its access.
    c.goto(&format!("{}/customer", j.app.base)).await.unwrap();
    assert_eq!(c.title().await.unwrap(), "Your connected apps · Keyfort Demo Bank");
    c.find(Locator::Css("#username")).await.unwrap().send_keys("ann").await.unwrap();
    c.find(Locator::Css("#password")).await.unwrap().send_keys(crate::authorization::PASSWORD).await.unwrap();
    browser.press("form[action='/customer/sign-in'] button[type=submit]").await;
    let text = c.find(Locator::Css("main")).await.unwrap().text().await.unwrap();
    for expected in ["WSO2_Open_Banking_TPP2__Sandbox_", "See your account balances", "Current account"] {
        assert!(text.contains(expected), "{expected:?} is not on the customer's page:\n{text}");
    }
    assert!(!text.contains("Savings account"), "only the chosen account is shown:\n{text}");
    c.set_window_size(1280, 1100).await.unwrap();
    browser.screenshot(&screenshots().join("customer-page.png")).await;
    browser.press("form[action='/customer/withdraw'] button[type=submit]").await;
    let notice = c.find(Locator::Css("[role=status]")).await.unwrap().text().await.unwrap();
    assert!(notice.contains("can no longer use the access you gave it"), "{notice}");
    browser.screenshot(&screenshots().join("customer-page-withdrawn.png")).await;
    let refresh_token = tokens.body["refresh_token"].as_str().unwrap();
    j.refresh(refresh_token).await.assert_error(400, "invalid_grant", "Revoked");
    let _ = SAVINGS;

    // The pages fit a phone.
    let consent_id =
        j.create_consent(ACCOUNT_ACCESS_CONSENTS, &account_access_consent_body(j.app.now() + 86_400 * 90)).await;
    let claims = j.request_claims(&consent_id, "openid accounts", serde_json::json!({}));
    let request = j.app.keys.software_ps.sign(&claims);
    let url = format!(
        "{}/oauth2/authorize?{}",
        j.app.base,
        crate::tokens::form(&[
            ("client_id", j.tpp.client_id.as_str()),
            ("response_type", "code id_token"),
            ("scope", "openid accounts"),
            ("request", &request),
        ])
    );
    c.set_window_size(390, 844).await.unwrap();
    c.goto(&url).await.unwrap();
    c.find(Locator::Css("#username")).await.unwrap().send_keys("ann").await.unwrap();
    c.find(Locator::Css("#password")).await.unwrap().send_keys(crate::authorization::PASSWORD).await.unwrap();
    browser.press("button[name=decision][value=sign_in]").await;
    assert_eq!(c.title().await.unwrap(), "Review the request · Keyfort Demo Bank");
    browser.screenshot(&screenshots().join("consent-phone.png")).await;
    let overflow = c
        .execute("return document.documentElement.scrollWidth - document.documentElement.clientWidth", vec![])
        .await
        .unwrap();
    assert_eq!(overflow, 0, "the consent page is wider than a phone's screen by {overflow} pixels");
    browser.press("button[name=decision][value=deny]").await;
    let landed = c.current_url().await.unwrap().to_string();
    assert!(landed.contains("error=access_denied"), "{landed}");
    c.clone().close().await.unwrap();
}
