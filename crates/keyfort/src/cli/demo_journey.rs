//! The second half of `keyfort demo`: the customer's journey, offline. The sandbox bank
//! starts; the demo TPP creates an account-access consent and sends the customer to the
//! bank; the customer signs in and allows one of their two accounts, on the bank's real
//! pages driven over HTTP as a browser would (cookie, CSRF token, `Origin`), with the
//! sentences a person would read printed; the TPP checks the ID token, exchanges the code,
//! reads the chosen account from the bank, revokes the consent, and sees the token refused.
//!
//! It calls the same code as `keyfort tpp consent|authorize|callback|accounts` and
//! `keyfort sandbox serve --bank`.

use std::path::Path;

use anyhow::Context;
use serde_json::{json, Value};
use tokio::net::TcpListener;

use super::demo::{shorten, Printer};
use super::sandbox_bank::BankServer;
use super::tpp::Registration;
use super::tpp_journey::{self, BankTarget, Journey};
use crate::config::Config;
use crate::sandbox::bank::{
    AccountIdentification, AccountSubType, AccountType, Amount, Balance, BalanceType, BankAccount, BankData,
    CreditDebit,
};
use crate::sandbox::Sandbox;
use keyfort_core::consent::ConsentType;

/// How many steps [`walk`] prints.
pub const STEPS: usize = 8;
/// The cookie of the customer's authorization session.
const SESSION_COOKIE: &str = "__Host-keyfort-authorization";

/// What the demo's first half made, for the journey.
pub struct DemoJourney<'a> {
    pub sandbox: &'a Sandbox,
    pub config: &'a Config,
    /// Keyfort's base URL (its issuer).
    pub server: &'a str,
    /// Keyfort's development certificate, which the browser and the bank trust.
    pub cacert: &'a Path,
    pub registration: &'a Registration,
    pub registration_file: &'a Path,
    pub customer_id: &'a str,
    pub username: &'a str,
    pub password: &'a str,
}

/// The sandbox bank, running in the demo's process.
pub struct RunningBank {
    pub url: String,
    stop: tokio::sync::oneshot::Sender<()>,
    serving: tokio::task::JoinHandle<()>,
}

impl RunningBank {
    pub async fn stop(self) {
        let _ = self.stop.send(());
        let _ = self.serving.await;
    }
}

/// A page as the customer's browser got it.
struct Page {
    status: u16,
    location: Option<String>,
    body: String,
}

/// The customer's browser: trusts Keyfort's certificate, presents none, follows no
/// redirect (the demo reads them), and keeps the one session cookie by hand.
struct Browser {
    http: reqwest::Client,
    origin: String,
    cookie: Option<String>,
}

impl Browser {
    fn new(server: &str, cacert: &Path) -> anyhow::Result<Self> {
        let mut roots = rustls::RootCertStore::empty();
        for cert in crate::tls::read_ca_certificates(cacert).map_err(anyhow::Error::msg)? {
            roots.add(cert)?;
        }
        let tls = rustls::ClientConfig::builder_with_provider(crate::tls::crypto_provider())
            .with_safe_default_protocol_versions()?
            .with_root_certificates(roots)
            .with_no_client_auth();
        let http = reqwest::Client::builder()
            .use_preconfigured_tls(tls)
            .redirect(reqwest::redirect::Policy::none())
            .build()?;
        Ok(Self { http, origin: server.trim_end_matches('/').to_owned(), cookie: None })
    }

    async fn read(&mut self, request: reqwest::RequestBuilder) -> anyhow::Result<Page> {
        let request = match &self.cookie {
            Some(cookie) => request.header("cookie", cookie),
            None => request,
        };
        let response = request.send().await?;
        let header = |name: &str| response.headers().get(name).and_then(|v| v.to_str().ok()).map(str::to_owned);
        let (location, set_cookie) = (header("location"), header("set-cookie"));
        let status = response.status().as_u16();
        let body = response.text().await?;
        if let Some(cookie) = set_cookie.as_deref().and_then(|c| c.split(';').next()) {
            if cookie.starts_with(SESSION_COOKIE) {
                self.cookie = Some(cookie.to_owned());
            }
        }
        Ok(Page { status, location, body })
    }

    async fn get(&mut self, url: &str) -> anyhow::Result<Page> {
        let request = self.http.get(url);
        self.read(request).await
    }

    /// Posts a form of the bank's pages, from the bank's origin, as a browser does.
    async fn post_form(&mut self, path: &str, pairs: &[(&str, &str)]) -> anyhow::Result<Page> {
        let body = url::form_urlencoded::Serializer::new(String::new()).extend_pairs(pairs).finish();
        let request = self
            .http
            .post(format!("{}{path}", self.origin))
            .header("origin", &self.origin)
            .header("content-type", "application/x-www-form-urlencoded")
            .body(body);
        self.read(request).await
    }
}

/// The text a person reads on a page, in order: headings, paragraphs, list items, facts
/// (`label: value`), form legends and labels, and buttons (`[Allow]`).
pub fn page_sentences(html: &str) -> Vec<String> {
    const READ: [&str; 10] = ["h1", "h2", "p", "li", "dt", "dd", "legend", "label", "button", "code"];
    let main = match (html.find("<main"), html.find("</main>")) {
        (Some(start), Some(end)) if start < end => &html[start..end],
        _ => html,
    };
    let mut sentences: Vec<String> = Vec::new();
    let mut rest = main;
    while let Some(open) = rest.find('<') {
        rest = &rest[open + 1..];
        let name: String = rest.chars().take_while(|c| c.is_ascii_alphanumeric()).collect();
        let Some(tag) = READ.iter().find(|t| **t == name) else { continue };
        let Some(start) = rest.find('>') else { break };
        let close = format!("</{tag}>");
        let Some(end) = rest[start..].find(&close) else { break };
        let text = visible_text(&rest[start + 1..start + end]);
        rest = &rest[start + end + close.len()..];
        if text.is_empty() {
            continue;
        }
        match *tag {
            "dd" if sentences.last().is_some_and(|s| s.ends_with(':')) => {
                if let Some(last) = sentences.last_mut() {
                    last.push(' ');
                    last.push_str(&text);
                }
            }
            "dt" => sentences.push(format!("{text}:")),
            "button" => sentences.push(format!("[{text}]")),
            _ => sentences.push(text),
        }
    }
    sentences
}

/// The text of an HTML fragment: tags dropped, entities decoded, white space folded.
fn visible_text(fragment: &str) -> String {
    let mut text = String::new();
    let mut in_tag = false;
    for c in fragment.chars() {
        match c {
            '<' => in_tag = true,
            '>' if in_tag => {
                in_tag = false;
                text.push(' ');
            }
            _ if !in_tag => text.push(c),
            _ => {}
        }
    }
    let decoded = decode_entities(&text);
    let folded = decoded.split_whitespace().collect::<Vec<_>>().join(" ");
    // Tags between words and punctuation leave a space before it.
    folded.replace(" .", ".").replace(" ,", ",")
}

/// Decodes the entities an HTML-escaping template engine writes.
fn decode_entities(text: &str) -> String {
    let mut out = String::with_capacity(text.len());
    let mut rest = text;
    while let Some(at) = rest.find('&') {
        out.push_str(&rest[..at]);
        rest = &rest[at..];
        let decoded = rest.find(';').filter(|end| *end <= 10).and_then(|end| {
            let entity = &rest[1..end];
            let c = match entity {
                "amp" => Some('&'),
                "lt" => Some('<'),
                "gt" => Some('>'),
                "quot" => Some('"'),
                "apos" => Some('\''),
                "nbsp" => Some(' '),
                _ => entity
                    .strip_prefix("#x")
                    .or_else(|| entity.strip_prefix("#X"))
                    .and_then(|hex| u32::from_str_radix(hex, 16).ok())
                    .or_else(|| entity.strip_prefix('#').and_then(|dec| dec.parse().ok()))
                    .and_then(char::from_u32),
            };
            c.map(|c| (c, end))
        });
        match decoded {
            Some((c, end)) => {
                out.push(c);
                rest = &rest[end + 1..];
            }
            None => {
                out.push('&');
                rest = &rest[1..];
            }
        }
    }
    out.push_str(rest);
    out
}

/// The value of the hidden input `name` of a page.
fn hidden_input(html: &str, name: &str) -> Option<String> {
    let at = html.find(&format!("name=\"{name}\""))?;
    let tag_start = html[..at].rfind('<')?;
    let tag = &html[tag_start..at + html[at..].find('>')?];
    let value = tag.split("value=\"").nth(1)?;
    Some(decode_entities(&value[..value.find('"')?]))
}

fn print_page(out: &Printer, page: &Page) {
    for sentence in page_sentences(&page.body) {
        out.detail("page", sentence);
    }
}

/// Fails the demo with what a page said, when it is not what the journey expected.
fn unexpected(out: &Printer, what: &str, page: &Page) -> anyhow::Error {
    let said = page_sentences(&page.body).join(" / ");
    out.fail(&format!("{what}: HTTP {} {}", page.status, if said.is_empty() { page.body.clone() } else { said }))
}

/// The customer's accounts as the bank holds them, with the ids of Keyfort's customer store
/// and made-up balances.
async fn bank_data_for(config: &Config, customer_id: &str, holder: &str) -> anyhow::Result<BankData> {
    let store = crate::storage::open(&config.storage).await?;
    let accounts = store.customer_accounts(customer_id).await?;
    let balances = ["1250.00", "8400.50", "310.75"];
    Ok(BankData {
        accounts: accounts
            .into_iter()
            .enumerate()
            .map(|(i, account)| BankAccount {
                account_sub_type: if account.name.to_lowercase().contains("saving") {
                    AccountSubType::Savings
                } else {
                    AccountSubType::CurrentAccount
                },
                account_id: account.account_id,
                currency: account.currency.clone(),
                account_type: AccountType::Personal,
                nickname: Some(account.name),
                account: vec![AccountIdentification {
                    scheme_name: account.scheme,
                    identification: account.identification,
                    name: Some(holder.to_owned()),
                    secondary_identification: account.secondary_identification,
                }],
                balances: vec![Balance {
                    kind: BalanceType::InterimAvailable,
                    credit_debit_indicator: CreditDebit::Credit,
                    amount: Amount { amount: balances[i % balances.len()].to_owned(), currency: account.currency },
                }],
            })
            .collect(),
    })
}

async fn free_port(preferred: u16) -> anyhow::Result<TcpListener> {
    if let Ok(listener) = TcpListener::bind(("127.0.0.1", preferred)).await {
        return Ok(listener);
    }
    Ok(TcpListener::bind("127.0.0.1:0").await?)
}

/// The account ids of an OBIE accounts answer.
fn listed_accounts(body: &Value) -> Vec<String> {
    body["Data"]["Account"]
        .as_array()
        .map(|accounts| accounts.iter().filter_map(|a| a["AccountId"].as_str().map(str::to_owned)).collect())
        .unwrap_or_default()
}

/// Walks the customer's journey; the bank keeps running for [`try_it_yourself`].
pub async fn walk(out: &mut Printer, demo: &DemoJourney<'_>) -> anyhow::Result<RunningBank> {
    let reg = demo.registration;

    out.step("The sandbox bank: an OBIE resource server that asks Keyfort about every token");
    let data = bank_data_for(demo.config, demo.customer_id, "Demo Customer").await?;
    data.save(demo.sandbox)?;
    let listener = free_port(8091).await?;
    let bank_url = super::sandbox_bank::public_url(listener.local_addr()?)?;
    let bank = BankServer::new(demo.sandbox, demo.server, Some(demo.cacert), &bank_url)?;
    let subject = bank.identity.subject_dn.clone();
    let (stop, stopped) = tokio::sync::oneshot::channel::<()>();
    let serving = tokio::spawn(bank.serve(listener, async {
        let _ = stopped.await;
    }));
    let running = RunningBank { url: bank_url.clone(), stop, serving };
    out.ok(&format!("listening on {bank_url} (mutual TLS required: a sandbox transport certificate)"));
    out.detail("accounts file", demo.sandbox.bank_accounts_file().display());
    for account in &data.accounts {
        out.detail(
            "account at the bank",
            format!(
                "{}: {}, balance {} {}",
                account.account_id,
                account.nickname.as_deref().unwrap_or(""),
                account.balances.first().map(|b| b.amount.amount.as_str()).unwrap_or("-"),
                account.currency
            ),
        );
    }
    out.detail("its certificate's subject (Keyfort's [resource_server] client_subject_dns)", &subject);
    out.detail("it validates tokens at", format!("{}{}", demo.server, crate::sandbox::bank::VALIDATION_PATH));

    out.step("The TPP creates an account-access consent: client-credentials token, signed request");
    let body = json!({
        "Data": {
            "Permissions": ["ReadAccountsDetail", "ReadBalances"],
            "ExpirationDateTime": keyfort_core::consent::format_date_time(super::now() + 90 * 86_400),
        },
        "Risk": {}
    });
    let created = tpp_journey::create_consent(
        reg,
        ConsentType::AccountAccess,
        body.to_string().as_bytes(),
        &keyfort_core::secret::random_b64url(18),
    )
    .await?;
    out.detail("request", format!("POST {} {}", ConsentType::AccountAccess.path(), body));
    out.detail(
        "headers",
        "Authorization: Bearer <client-credentials token>, x-idempotency-key, x-jws-signature (detached JWS, PS256)",
    );
    out.detail("response status", created.status);
    let consent_id = created.response["Data"]["ConsentId"]
        .as_str()
        .ok_or_else(|| out.fail(&format!("the consent was refused: {}", created.response)))?
        .to_owned();
    out.detail("response Data", serde_json::to_string(&created.response["Data"])?);
    out.ok(&format!("consent {consent_id} is {}", created.response["Data"]["Status"].as_str().unwrap_or("?")));

    out.step("The TPP sends the customer to the bank: a signed request object naming the consent");
    let request = tpp_journey::authorization_request(reg, &consent_id, None).await?;
    let shown: serde_json::Map<String, Value> =
        request.claims.as_object().cloned().unwrap_or_default().into_iter().map(|(k, v)| (k, shorten(&v))).collect();
    out.detail("request object claims (signed PS256 with the software key)", Value::Object(shown));
    out.detail("authorization URL", shorten(&json!(request.url)).as_str().unwrap_or_default());
    let mut browser = Browser::new(demo.server, demo.cacert)?;
    let login = browser.get(&request.url).await?;
    if login.status != 200 || browser.cookie.is_none() {
        return Err(unexpected(out, "the login page did not open", &login));
    }
    print_page(out, &login);
    out.ok(&format!(
        "the bank checked the request object and the consent, and shows its login page (session cookie {SESSION_COOKIE})"
    ));

    out.step("The customer signs in");
    let csrf = hidden_input(&login.body, "csrf_token").ok_or_else(|| out.fail("the login page has no csrf_token"))?;
    out.detail(
        "POST /oauth2/authorize/login",
        format!(
            "username={}, password=…, csrf_token=…, decision=sign_in, with the cookie and Origin {}",
            demo.username, browser.origin
        ),
    );
    let signed_in = browser
        .post_form(
            "/oauth2/authorize/login",
            &[("csrf_token", &csrf), ("username", demo.username), ("password", demo.password), ("decision", "sign_in")],
        )
        .await?;
    if signed_in.status != 303 || signed_in.location.as_deref() != Some("/oauth2/authorize/consent") {
        return Err(unexpected(out, "signing in failed", &signed_in));
    }
    let consent_page = browser.get(&format!("{}/oauth2/authorize/consent", browser.origin)).await?;
    if consent_page.status != 200 {
        return Err(unexpected(out, "the consent page did not open", &consent_page));
    }
    out.ok("signed in; the consent page says:");
    print_page(out, &consent_page);

    out.step("The customer allows access to one of their two accounts");
    let chosen =
        data.accounts.first().map(|a| a.account_id.clone()).ok_or_else(|| out.fail("the customer has no account"))?;
    let csrf =
        hidden_input(&consent_page.body, "csrf_token").ok_or_else(|| out.fail("the consent page has no csrf_token"))?;
    out.detail("POST /oauth2/authorize/consent", format!("account={chosen}, decision=approve, csrf_token=…"));
    let decided = browser
        .post_form("/oauth2/authorize/consent", &[("csrf_token", &csrf), ("account", &chosen), ("decision", "approve")])
        .await?;
    let redirect = match (&decided.status, &decided.location) {
        (303, Some(location)) if location.starts_with(&request.pending.redirect_uri) => location.clone(),
        _ => return Err(unexpected(out, "the decision was not accepted", &decided)),
    };
    let (target, fragment) = redirect.split_once('#').unwrap_or((&redirect, ""));
    let names: Vec<&str> = fragment.split('&').filter_map(|p| p.split('=').next()).collect();
    out.detail(
        "303 See Other to",
        format!("{target}#{}", names.iter().map(|n| format!("{n}=…")).collect::<Vec<_>>().join("&")),
    );
    out.ok("the browser is sent back to the TPP with the code in the fragment (the demo reads it and does not fetch the page)");

    out.step("The TPP checks the ID token and exchanges the code over mutual TLS");
    let authorized = tpp_journey::complete_authorization(reg, &request.pending, &redirect).await?;
    let pick = |claims: &Value, names: &[&str]| -> Value {
        json!(names
            .iter()
            .filter_map(|n| claims.get(*n).map(|v| (n.to_string(), shorten(v))))
            .collect::<serde_json::Map<_, _>>())
    };
    out.detail(
        "ID token (signature checked with /oauth2/jwks)",
        pick(&authorized.id_token, &["iss", "aud", "sub", "nonce", "acr", "openbanking_intent_id", "c_hash", "s_hash"]),
    );
    out.ok("ID token verified: iss, aud, nonce, c_hash (the code), s_hash (the state), openbanking_intent_id (the consent)");
    out.detail(
        "access token claims",
        pick(&authorized.access_token_claims, &["sub", "client_id", "scope", "consent_id", "grant_id", "cnf", "exp"]),
    );
    let thumbprint =
        keyfort_core::jose::b64url_encode(keyfort_core::secret::sha256(&crate::pem::read_certificate(&reg.cert)?));
    if authorized.access_token_claims["consent_id"] != json!(consent_id)
        || authorized.access_token_claims["cnf"]["x5t#S256"] != json!(thumbprint)
    {
        return Err(out.fail("the access token is not bound to the consent and the TPP's certificate"));
    }
    out.ok(&format!(
        "code exchanged (private_key_jwt, PKCE verifier): an access token for consent {consent_id}, bound to the TPP's certificate{}",
        if authorized.tokens.refresh_token.is_some() { ", and a refresh token" } else { "" }
    ));

    out.step("The TPP reads the customer's accounts from the sandbox bank");
    let target = BankTarget { url: &bank_url, cacert: Some(&demo.sandbox.ca_bundle()) };
    let accounts_path = tpp_journey::accounts_path(None, false);
    let accounts = tpp_journey::read_bank(reg, &authorized.tokens.access_token, &target, &accounts_path).await?;
    out.detail("request", format!("GET {bank_url}{accounts_path} (mutual TLS, Authorization: Bearer <access token>)"));
    out.detail("response status", accounts.status);
    out.detail("response", serde_json::to_string(&accounts.response)?);
    let listed = listed_accounts(&accounts.response);
    if accounts.status != 200 || listed != [chosen.clone()] {
        return Err(
            out.fail(&format!("the bank should list exactly the chosen account {chosen}: {}", accounts.response))
        );
    }
    let balances_path = tpp_journey::accounts_path(Some(&chosen), true);
    let balances = tpp_journey::read_bank(reg, &authorized.tokens.access_token, &target, &balances_path).await?;
    out.detail("request", format!("GET {bank_url}{balances_path}"));
    out.detail("response status", balances.status);
    out.detail("response", serde_json::to_string(&balances.response["Data"])?);
    if balances.status != 200 {
        return Err(out.fail(&format!("the balances were refused: {}", balances.response)));
    }
    out.ok(&format!(
        "the bank listed {} of the customer's {} accounts: the one the customer chose ({chosen}), and its balance",
        listed.len(),
        data.accounts.len()
    ));

    out.step("The TPP revokes the consent; its token is refused from then on");
    let revoked = tpp_journey::consent_call(reg, reqwest::Method::DELETE, &consent_id).await?;
    out.detail("request", format!("DELETE {}/{consent_id}", ConsentType::AccountAccess.path()));
    out.detail("response status", revoked.status);
    if revoked.status != 204 {
        return Err(out.fail(&format!("revoking the consent failed: {}", revoked.response)));
    }
    let after = tpp_journey::read_bank(reg, &authorized.tokens.access_token, &target, &accounts_path).await?;
    out.detail(
        "the bank, for the same token",
        format!("HTTP {} {}", after.status, after.response["Message"].as_str().unwrap_or("")),
    );
    let introspected = tpp_journey::introspect(reg, &authorized.tokens.access_token).await?;
    out.detail("introspection", serde_json::to_string(&introspected.response)?);
    if !matches!(after.status, 401 | 403) || introspected.response["active"] != json!(false) {
        return Err(out.fail("the token still works after the consent was revoked"));
    }
    out.ok(&format!(
        "consent revoked: the bank refuses the token (HTTP {}) and introspection says active: false",
        after.status
    ));
    Ok(running)
}

/// The journey's lines of "try it yourself": a fresh consent and its authorization URL for
/// a person's browser, with the demo customer's credentials and the commands that follow.
pub async fn try_it_yourself(
    out: &Printer,
    demo: &DemoJourney<'_>,
    bank: &RunningBank,
    exe: &str,
) -> anyhow::Result<()> {
    let reg = demo.registration;
    let body = json!({
        "Data": {
            "Permissions": ["ReadAccountsDetail", "ReadBalances"],
            "ExpirationDateTime": keyfort_core::consent::format_date_time(super::now() + 90 * 86_400),
        },
        "Risk": {}
    });
    let created = tpp_journey::create_consent(
        reg,
        ConsentType::AccountAccess,
        body.to_string().as_bytes(),
        &keyfort_core::secret::random_b64url(18),
    )
    .await?;
    let consent_id = created.response["Data"]["ConsentId"]
        .as_str()
        .with_context(|| format!("a consent for you to authorize was refused: {}", created.response))?
        .to_owned();
    let request = tpp_journey::authorization_request(reg, &consent_id, None).await?;
    let path = tpp_journey::journey_path(demo.registration_file);
    let journey = Journey {
        consent: Some(tpp_journey::ConsentRef {
            id: consent_id.clone(),
            kind: ConsentType::AccountAccess.as_str().into(),
        }),
        pending: Some(request.pending.clone()),
        tokens: None,
    };
    journey.save(&path)?;
    let registration = demo.registration_file.display();
    println!("\n{}", out.paint("1", "Authorize a consent in your browser:"));
    println!("  1. Open this address (your browser will warn about the demo's development certificate):");
    println!("     {}", request.url);
    println!("  2. Sign in as {} with the password {}, and allow.", demo.username, demo.password);
    println!(
        "  3. The browser lands on {}#code=...; that page does not load. Copy the whole address and run:",
        request.pending.redirect_uri
    );
    println!("     {exe} tpp callback --registration {registration} '<the address>'");
    println!(
        "  4. {exe} tpp accounts --registration {registration} --bank {} --bank-cacert {}",
        bank.url,
        demo.sandbox.ca_bundle().display()
    );
    println!("     {exe} tpp refresh --registration {registration}");
    println!(
        "  The address is valid for 5 minutes; `{exe} tpp authorize --registration {registration}` makes a new one, and `{exe} tpp consent create --registration {registration} --type account-access` a new consent."
    );
    println!(
        "  5. The customer's own page, where {} sees the TPPs they allowed and withdraws them: {}/customer",
        demo.username, demo.server
    );
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_sentences_of_a_page_in_order() {
        let html = r#"<header>Bank</header><main id="main"><h1>Demo TPP is asking for access to your accounts</h1>
            <p class="context">You are signed in as <strong>ann</strong>. Read it&#x27;s request.</p>
            <form><input type="hidden" name="csrf_token" value="a&#x2f;b"><section><h2 id="what">What it can see</h2>
            <ul class="lines"><li>See your account balances</li></ul>
            <dl class="facts"><div><dt>Until</dt><dd>2 May 2027</dd></div></dl></section>
            <fieldset><legend>Choose the accounts to share</legend><div class="choice"><input type="checkbox" name="account" value="acc-1">
            <label for="account-1"><span class="name">Current account</span> <span class="detail">Sort code 60-30-45</span></label></div></fieldset>
            <button type="submit" name="decision" value="approve">Allow</button></form></main><footer><p>never</p></footer>"#;
        assert_eq!(
            page_sentences(html),
            [
                "Demo TPP is asking for access to your accounts",
                "You are signed in as ann. Read it's request.",
                "What it can see",
                "See your account balances",
                "Until: 2 May 2027",
                "Choose the accounts to share",
                "Current account Sort code 60-30-45",
                "[Allow]",
            ]
        );
        assert_eq!(hidden_input(html, "csrf_token").as_deref(), Some("a/b"));
        assert_eq!(hidden_input(html, "nothing"), None);
    }

    #[test]
    fn entities_are_decoded_and_stray_ampersands_kept() {
        assert_eq!(decode_entities("a &amp; b &lt;c&gt; &#39;d&#x27; &unknown; & e"), "a & b <c> 'd' &unknown; & e");
    }
}
