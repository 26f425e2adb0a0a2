//! The resource server's side of a customer's consent, over real mutual TLS: the bank's
//! gateway (a client certificate whose subject `[resource_server] client_subject_dns`
//! lists) introspects tokens and asks `POST /oauth2/consent/validate` whether a call is
//! covered; revocation by the TPP, the customer and an administrator ends every token of
//! the consent, refresh tokens included.

use keyfort_core::jose::b64url_encode;
use rcgen::{DnType, ExtendedKeyUsagePurpose};
use serde_json::{json, Value};

use crate::authorization::{journey_with, Journey, CURRENT, SAVINGS};
use crate::helpers::*;
use crate::operations::{add_admin, admin_call, ADMIN, PASSWORD as ADMIN_PASSWORD};
use crate::pki::Subject;

/// One attribute, so the subject reads the same in any RDN order a certificate library picks.
const GATEWAY_DN: &str = "CN=api-gateway.bank.test";
const ACCOUNTS: &str = "/open-banking/v3.1/aisp/accounts";

fn gateway_options() -> Options {
    Options::mutual_tls().section(&format!("[resource_server]\nclient_subject_dns = [\"{GATEWAY_DN}\"]\n"))
}

/// The bank's gateway: presents a certificate from the client CA with the listed subject.
fn gateway(j: &Journey) -> reqwest::Client {
    let cert = j.app.pki.issue(&Subject {
        attrs: vec![(DnType::CommonName, "api-gateway.bank.test".into())],
        psd2_roles: None,
        eku: vec![ExtendedKeyUsagePurpose::ClientAuth],
        expired: false,
        serial: 7_000,
    });
    assert_eq!(cert.subject_dn(), GATEWAY_DN);
    test_client_with_identity(Some(&j.app.server_ca_pem), Some(&cert))
}

fn thumbprint(j: &Journey) -> String {
    b64url_encode(keyfort_core::secret::sha256(j.tpp.cert.der()))
}

async fn validate(j: &Journey, http: &reqwest::Client, body: Value) -> Reply {
    let response = http
        .post(format!("{}/oauth2/consent/validate", j.app.base))
        .header("content-type", "application/json")
        .body(body.to_string())
        .send()
        .await
        .unwrap();
    let status = response.status().as_u16();
    let headers = response.headers().clone();
    Reply { status, body: response.json().await.unwrap_or(Value::Null), headers }
}

/// Asks about `method path` with the TPP's own certificate thumbprint.
async fn ask(j: &Journey, gw: &reqwest::Client, token: &str, method: &str, path: &str) -> Value {
    let reply =
        validate(j, gw, json!({"token": token, "method": method, "path": path, "x5t#S256": thumbprint(j)})).await;
    assert_eq!(reply.status, 200, "{}", reply.body);
    reply.body
}

#[track_caller]
fn assert_denied(answer: &Value, needle: &str) {
    assert_eq!(answer["allowed"], false, "{answer}");
    let reason = answer["reason"].as_str().unwrap();
    assert!(reason.contains(needle), "{needle:?} is not in the reason: {reason}");
}

async fn introspect_as_gateway(j: &Journey, gw: &reqwest::Client, token: &str) -> Reply {
    j.app.form_post(gw, "/oauth2/introspect", crate::tokens::form(&[("token", token)]), &[]).await
}

#[tokio::test]
async fn introspection_names_the_consent_of_each_type_to_the_client_and_the_gateway() {
    let j = journey_with(gateway_options()).await;
    let gw = gateway(&j);
    let accounts = j.account_access_granted(86_400, &[CURRENT.0]).await;
    let payment = j.payment_granted("INV-7", SAVINGS.0).await;
    let funds = j.funds_confirmation_granted().await;

    for (granted, kind, permissions, account) in [
        (
            &accounts,
            "account-access",
            json!(["ReadAccountsDetail", "ReadBalances", "ReadTransactionsDetail", "ReadTransactionsCredits"]),
            CURRENT.0,
        ),
        (&payment, "domestic-payment", json!([]), SAVINGS.0),
        (&funds, "funds-confirmation", json!([]), CURRENT.0),
    ] {
        let own = j.app.introspect_as(&j.tpp, &granted.access_token).await;
        let by_gateway = introspect_as_gateway(&j, &gw, &granted.access_token).await;
        for reply in [&own, &by_gateway] {
            let body = &reply.body;
            assert_eq!((reply.status, &body["active"]), (200, &json!(true)), "{body}");
            assert_eq!(body["consent_id"], granted.consent_id.as_str(), "{body}");
            assert_eq!(body["consent_type"], kind, "{body}");
            assert_eq!(body["consent_status"], "Authorised", "{body}");
            assert_eq!(body["permissions"], permissions, "{body}");
            assert_eq!(body["account_ids"], json!([account]), "{body}");
            assert_eq!(body["cnf"]["x5t#S256"], thumbprint(&j), "{body}");
            assert_ne!(body["sub"], j.tpp.client_id.as_str(), "a customer's token names the customer");
        }
    }

    // Anyone else must authenticate as a client, and sees only its own tokens.
    let stranger = test_client(Some(&j.app.server_ca_pem));
    let anonymous = j.app.form_post(
        &stranger,
        "/oauth2/introspect",
        crate::tokens::form(&[("token", &accounts.access_token)]),
        &[],
    );
    anonymous.await.assert_error(401, "invalid_client", "");
}

#[tokio::test]
async fn validation_allows_only_the_permissions_accounts_and_certificate_of_the_consent() {
    let j = journey_with(gateway_options()).await;
    let gw = gateway(&j);
    let g = j.account_access_granted(86_400, &[CURRENT.0]).await;
    let token = g.access_token.as_str();

    let list = ask(&j, &gw, token, "GET", ACCOUNTS).await;
    assert_eq!(list["allowed"], true, "{list}");
    assert_eq!(list["account_ids"], json!([CURRENT.0]), "the bank lists only the chosen accounts: {list}");
    assert_eq!((&list["consent_id"], &list["consent_status"]), (&json!(g.consent_id), &json!("Authorised")));
    assert_eq!(list["client_id"], j.tpp.client_id.as_str());
    let balances = ask(&j, &gw, token, "GET", &format!("{ACCOUNTS}/{}/balances", CURRENT.0)).await;
    assert_eq!(balances["allowed"], true, "{balances}");

    assert_denied(&ask(&j, &gw, token, "GET", &format!("{ACCOUNTS}/{}/balances", SAVINGS.0)).await, SAVINGS.0);
    let no_permission = ask(&j, &gw, token, "GET", &format!("{ACCOUNTS}/{}/beneficiaries", CURRENT.0)).await;
    assert_denied(&no_permission, "ReadBeneficiariesBasic or ReadBeneficiariesDetail");
    assert_eq!(no_permission["consent_id"], g.consent_id.as_str(), "a refusal still names the consent");
    assert_denied(&ask(&j, &gw, token, "POST", "/open-banking/v3.1/pisp/domestic-payments").await, "domestic-payment");
    assert_denied(&ask(&j, &gw, token, "GET", "/open-banking/v3.1/aisp/secrets").await, "not a resource");
    let bulk = validate(
        &j,
        &gw,
        json!({"token": token, "method": "GET", "path": "/open-banking/v3.1/aisp/balances", "x5t#S256": thumbprint(&j), "account_id": SAVINGS.0}),
    )
    .await;
    assert_denied(&bulk.body, SAVINGS.0);

    // RFC 8705: the call must come with the certificate the token is bound to.
    let path = format!("{ACCOUNTS}/{}/balances", CURRENT.0);
    let other = b64url_encode(keyfort_core::secret::sha256(b"another certificate"));
    let wrong = validate(&j, &gw, json!({"token": token, "method": "GET", "path": path, "x5t#S256": other})).await;
    assert_denied(&wrong.body, "another certificate");
    let missing = validate(&j, &gw, json!({"token": token, "method": "GET", "path": path})).await;
    assert_denied(&missing.body, "x5t#S256");

    // The TPP's own client-credentials token is not a customer's consent.
    assert_denied(&ask(&j, &gw, &j.token, "GET", ACCOUNTS).await, "client_credentials");
    assert_denied(&ask(&j, &gw, "not-a-token", "GET", ACCOUNTS).await, "not an access token");

    // Only the gateway may ask, and it must ask properly.
    let as_tpp = validate(&j, &j.tpp.http, json!({"token": token, "method": "GET", "path": ACCOUNTS})).await;
    as_tpp.assert_error(401, "invalid_client", "client_subject_dns");
    let garbled = validate(&j, &gw, json!({"token": token, "path": ACCOUNTS})).await;
    garbled.assert_error(400, "invalid_request", "method");
    let consume = validate(&j, &gw, json!({"token": token, "method": "GET", "path": ACCOUNTS, "consume": true})).await;
    consume.assert_error(400, "invalid_request", "domestic-payments");

    // Once the TPP revokes the consent, every call is refused, naming the status.
    let deleted = j
        .tpp
        .http
        .delete(format!("{}{ACCOUNT_ACCESS_CONSENTS}/{}", j.app.base, g.consent_id))
        .bearer_auth(&j.token)
        .send()
        .await
        .unwrap();
    assert_eq!(deleted.status(), 204);
    let revoked = ask(&j, &gw, token, "GET", ACCOUNTS).await;
    assert_denied(&revoked, "Revoked");
    assert_eq!(revoked["consent_status"], "Revoked");
    assert_eq!(introspect_as_gateway(&j, &gw, token).await.body["active"], false);
}

#[tokio::test]
async fn an_expired_consent_covers_nothing_though_its_token_lives() {
    let j = journey_with(gateway_options()).await;
    let gw = gateway(&j);
    let g = j.account_access_granted(120, &[CURRENT.0]).await;
    assert_eq!(ask(&j, &gw, &g.access_token, "GET", ACCOUNTS).await["allowed"], true);
    j.app.clock.advance(180);
    assert_denied(&ask(&j, &gw, &g.access_token, "GET", ACCOUNTS).await, "expired");
    assert_eq!(introspect_as_gateway(&j, &gw, &g.access_token).await.body["active"], false);
    j.refresh(&g.refresh_token).await.assert_error(400, "invalid_grant", "expired");
}

#[tokio::test]
async fn a_payment_consumes_its_consent_once_and_funds_confirmations_need_their_own_consent() {
    let j = journey_with(gateway_options()).await;
    let gw = gateway(&j);
    let g = j.payment_granted("INV-9", SAVINGS.0).await;
    let pay = json!({
        "token": g.access_token, "method": "POST", "path": "/open-banking/v3.1/pisp/domestic-payments",
        "x5t#S256": thumbprint(&j), "account_id": SAVINGS.0, "consume": true
    });
    let first = validate(&j, &gw, pay.clone()).await;
    assert_eq!((first.status, &first.body["allowed"]), (200, &json!(true)), "{}", first.body);
    assert_eq!(first.body["consent_status"], "Consumed");
    assert_eq!(j.consent_status(DOMESTIC_PAYMENT_CONSENTS, &g.consent_id).await["Status"], "Consumed");
    let second = validate(&j, &gw, pay).await;
    assert_denied(&second.body, "Consumed");
    // The payment's status can still be read with the token; nothing more is issued.
    let status = ask(&j, &gw, &g.access_token, "GET", "/open-banking/v3.1/pisp/domestic-payments/dp-1").await;
    assert_eq!(status["allowed"], true, "{status}");
    j.refresh(&g.refresh_token).await.assert_error(400, "invalid_grant", "Consumed");

    let funds = j.funds_confirmation_granted().await;
    let confirm = ask(&j, &gw, &funds.access_token, "POST", "/open-banking/v3.1/cbpii/funds-confirmations").await;
    assert_eq!(confirm["allowed"], true, "{confirm}");
    assert_denied(&ask(&j, &gw, &funds.access_token, "GET", ACCOUNTS).await, "account-access consent");
}

#[tokio::test]
async fn an_administrator_withdraws_access_and_every_token_of_the_consent_ends() {
    let j = journey_with(gateway_options()).await;
    add_admin(&j.app).await;
    let accounts = j.account_access_granted(86_400, &[CURRENT.0]).await;
    let payment = j.payment_granted("INV-3", SAVINGS.0).await;

    // The operator finds them by client, type and status.
    let listed = admin_call(
        &j.app,
        reqwest::Method::GET,
        &format!("/admin/consents?client_id={}&type=domestic-payment&status=Authorised", j.tpp.client_id),
    )
    .await;
    assert_eq!(listed.status, 200, "{}", listed.body);
    let ids: Vec<&str> =
        listed.body["consents"].as_array().unwrap().iter().map(|c| c["consent_id"].as_str().unwrap()).collect();
    assert_eq!(ids, vec![payment.consent_id.as_str()]);
    admin_call(&j.app, reqwest::Method::GET, "/admin/consents?type=loan").await.assert_error(
        400,
        "invalid_request",
        "type",
    );
    let shown = admin_call(&j.app, reqwest::Method::GET, &format!("/admin/consents/{}", accounts.consent_id)).await;
    assert_eq!(shown.body["consent"]["account_ids"], json!([CURRENT.0]), "{}", shown.body);
    assert_eq!(shown.body["consent"]["body"]["Data"]["Status"], "Authorised");
    let actions: Vec<&str> =
        shown.body["audit"].as_array().unwrap().iter().map(|e| e["action"].as_str().unwrap()).collect();
    assert!(actions.contains(&"consent_create") && actions.contains(&"consent_authorise"), "{actions:?}");
    admin_call(&j.app, reqwest::Method::GET, "/admin/consents/aac-nobody").await.assert_error(
        404,
        "invalid_request",
        "aac-nobody",
    );

    // The command line lists them and revokes the account-access consent; the API the payment's.
    let listed = admin_consents_cli(&j.app, &["list", "--client-id", &j.tpp.client_id]).await;
    assert!(listed.status.success(), "{}", String::from_utf8_lossy(&listed.stderr));
    let table = String::from_utf8_lossy(&listed.stdout).into_owned();
    assert!(table.starts_with("CONSENT_ID"), "{table}");
    for (g, kind) in [(&accounts, "account-access"), (&payment, "domestic-payment")] {
        let line = table.lines().find(|l| l.starts_with(&g.consent_id)).unwrap_or_else(|| panic!("{table}"));
        assert!(line.contains(kind) && line.contains("Authorised"), "{line}");
    }
    let revoked = admin_consents_cli(&j.app, &["revoke", &accounts.consent_id]).await;
    assert!(revoked.status.success(), "{}", String::from_utf8_lossy(&revoked.stderr));
    assert!(String::from_utf8_lossy(&revoked.stdout).contains("Revoked"), "{revoked:?}");
    let revoked =
        admin_call(&j.app, reqwest::Method::POST, &format!("/admin/consents/{}/revoke", payment.consent_id)).await;
    assert_eq!((revoked.status, &revoked.body["grants_revoked"]), (200, &json!(1)), "{}", revoked.body);
    for g in [&accounts, &payment] {
        assert_eq!(j.app.introspect_as(&j.tpp, &g.access_token).await.body["active"], false);
        j.refresh(&g.refresh_token).await.assert_error(400, "invalid_grant", "evoked");
    }
    let unknown = admin_consents_cli(&j.app, &["revoke", "aac-nobody"]).await;
    assert!(!unknown.status.success() && String::from_utf8_lossy(&unknown.stderr).contains("aac-nobody"));
    let shown = admin_call(&j.app, reqwest::Method::GET, &format!("/admin/consents/{}", accounts.consent_id)).await;
    assert_eq!(shown.body["consent"]["status"], "Revoked");
    let revocation = shown.body["audit"].as_array().unwrap().iter().find(|e| e["action"] == "consent_revoke").unwrap();
    assert!(revocation["detail"].as_str().unwrap().contains("by administrator"), "{revocation}");
    // A payment consent has no Revoked status: it stays Authorised, with no live token.
    let shown = admin_call(&j.app, reqwest::Method::GET, &format!("/admin/consents/{}", payment.consent_id)).await;
    assert_eq!(shown.body["consent"]["status"], "Authorised");

    // Without administrator credentials, nothing.
    let anonymous = j.app.client.get(format!("{}/admin/consents", j.app.admin_base)).send().await.unwrap();
    assert_eq!(anonymous.status(), 401);
    // And nothing of the admin API on the public listener.
    let public = j.app.client.get(format!("{}/admin/consents", j.app.base)).send().await.unwrap();
    assert_eq!(public.status(), 404);
}

async fn admin_consents_cli(app: &TestApp, args: &[&str]) -> std::process::Output {
    let mut command = std::process::Command::new(env!("CARGO_BIN_EXE_keyfort"));
    command
        .args(["admin", "consents", "--server", &app.admin_base, "--user", ADMIN, "--cacert"])
        .arg(app.dir.path().join("ca.pem"))
        .args(args)
        .env("KEYFORT_ADMIN_PASSWORD", ADMIN_PASSWORD);
    tokio::task::spawn_blocking(move || command.output().unwrap()).await.unwrap()
}
