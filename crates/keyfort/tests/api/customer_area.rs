//! The customer's own page over real TLS, driven as a browser posts its forms: the customer
//! signs in, sees the TPPs they authorised in words, and withdraws one; every token of that
//! consent stops working. The browser test drives the same page in Chromium.

use crate::authorization::{journey, page, Journey, Page, CURRENT, PASSWORD, SAVINGS};
use crate::helpers::*;
use crate::tokens::form;

const COOKIE: &str = "__Host-keyfort-customer";

async fn get(j: &Journey, cookie: Option<&str>) -> Page {
    let mut request = j.browser.get(format!("{}/customer", j.app.base));
    if let Some(cookie) = cookie {
        request = request.header("cookie", cookie);
    }
    page(request.send().await.unwrap()).await
}

async fn post(j: &Journey, path: &str, cookie: Option<&str>, origin: Option<&str>, pairs: &[(&str, &str)]) -> Page {
    let mut request = j
        .browser
        .post(format!("{}{path}", j.app.base))
        .header("content-type", "application/x-www-form-urlencoded")
        .body(form(pairs));
    if let Some(cookie) = cookie {
        request = request.header("cookie", cookie);
    }
    if let Some(origin) = origin {
        request = request.header("origin", origin);
    }
    page(request.send().await.unwrap()).await
}

/// Signs in as ann and returns the session cookie (`name=value`).
async fn sign_in(j: &Journey) -> String {
    let origin = j.app.public_url.clone();
    let signed_in =
        post(j, "/customer/sign-in", None, Some(&origin), &[("username", "ann"), ("password", PASSWORD)]).await;
    assert_eq!((signed_in.status, signed_in.location()), (303, "/customer"), "{}", signed_in.body);
    let cookie = signed_in.session_cookie();
    assert!(cookie.starts_with(&format!("{COOKIE}=")), "{cookie}");
    cookie
}

#[tokio::test]
async fn a_customer_sees_the_tpps_they_authorised_and_withdraws_one() {
    let j = journey().await;
    let origin = j.app.public_url.clone();
    let accounts = j
        .granted(
            ACCOUNT_ACCESS_CONSENTS,
            &account_access_consent_body(j.app.now() + 86_400),
            "openid accounts",
            &[CURRENT.0],
        )
        .await;
    let payment =
        j.granted(DOMESTIC_PAYMENT_CONSENTS, &payment_consent_body("INV-5"), "openid payments", &[SAVINGS.0]).await;
    // A consent awaiting authorisation gives no access: it is not listed.
    j.account_access_consent().await;

    // Not signed in: the sign-in form, with the page's security headers.
    let form_page = get(&j, None).await;
    assert_eq!(form_page.status, 200, "{}", form_page.body);
    assert!(form_page.body.contains("action=\"/customer/sign-in\""), "{}", form_page.body);
    let csp = form_page.headers["content-security-policy"].to_str().unwrap();
    assert!(csp.contains("frame-ancestors 'none'") && !csp.contains("script"), "{csp}");

    // A post from elsewhere is refused; a wrong password comes back with a message.
    let cross = post(&j, "/customer/sign-in", None, Some("https://evil.example"), &[("username", "ann")]).await;
    assert_eq!(cross.status, 403, "{}", cross.body);
    let wrong =
        post(&j, "/customer/sign-in", None, Some(&origin), &[("username", "ann"), ("password", "nope nope")]).await;
    assert_eq!(wrong.status, 200);
    assert!(wrong.body.contains("The username or password is wrong"), "{}", wrong.body);
    assert!(wrong.headers.get("set-cookie").is_none(), "no session for a failed sign-in");

    let cookie = sign_in(&j).await;
    let listed = get(&j, Some(&cookie)).await;
    assert_eq!(listed.status, 200, "{}", listed.body);
    let text = listed.body.replace("&#x27;", "'");
    for expected in [
        "Apps connected to your accounts",
        "See your account balances",
        "Current account",
        "165.88 GBP",
        "ACME Inc",
        "Savings account",
        accounts.consent_id.as_str(),
        payment.consent_id.as_str(),
    ] {
        assert!(text.contains(expected), "{expected:?} is not on the page:\n{text}");
    }
    assert_eq!(text.matches("Withdraw access</button>").count(), 2, "two TPP grants, the awaiting consent not listed");

    // The forms carry the session's CSRF token; another is refused.
    let csrf = listed.input("csrf_token");
    let forged = post(
        &j,
        "/customer/withdraw",
        Some(&cookie),
        Some(&origin),
        &[("csrf_token", "forged"), ("consent_id", &accounts.consent_id)],
    )
    .await;
    assert_eq!(forged.status, 403, "{}", forged.body);
    assert_eq!(j.app.introspect_as(&j.tpp, &accounts.access_token).await.body["active"], true);

    for g in [&accounts, &payment] {
        let done = post(
            &j,
            "/customer/withdraw",
            Some(&cookie),
            Some(&origin),
            &[("csrf_token", &csrf), ("consent_id", &g.consent_id)],
        )
        .await;
        assert_eq!(done.status, 200, "{}", done.body);
        assert!(done.body.contains("can no longer use the access you gave it"), "{}", done.body);
        assert!(!done.body.contains(&g.consent_id), "no longer listed: {}", done.body);
        assert_eq!(j.app.introspect_as(&j.tpp, &g.access_token).await.body["active"], false);
        j.refresh(&g.refresh_token).await.assert_error(400, "invalid_grant", "evoked");
    }
    assert_eq!(j.consent_status(ACCOUNT_ACCESS_CONSENTS, &accounts.consent_id).await["Status"], "Revoked");
    assert!(get(&j, Some(&cookie)).await.body.contains("No app can see your accounts"));

    // Another customer's consent (or none) is not found for this customer.
    let unknown = post(
        &j,
        "/customer/withdraw",
        Some(&cookie),
        Some(&origin),
        &[("csrf_token", &csrf), ("consent_id", "aac-somebody-elses")],
    )
    .await;
    assert_eq!(unknown.status, 404, "{}", unknown.body);

    // Signing out ends the session on the server, not only in the browser.
    let out = post(&j, "/customer/sign-out", Some(&cookie), Some(&origin), &[("csrf_token", &csrf)]).await;
    assert_eq!((out.status, out.location()), (303, "/customer"));
    assert!(out.headers["set-cookie"].to_str().unwrap().contains("Max-Age=0"));
    assert!(get(&j, Some(&cookie)).await.body.contains("action=\"/customer/sign-in\""), "the old cookie is dead");
    let audit =
        keyfort::storage::SqliteStore::open(&format!("sqlite://{}", j.app.database_path().display())).await.unwrap();
    let lines = keyfort::storage::Store::consent_audit_events(&audit, &accounts.consent_id, 10).await.unwrap();
    let revoke = lines.iter().find(|l| l.action == "consent_revoke").expect("the withdrawal is audited");
    assert_eq!(revoke.detail.as_deref(), Some("by the customer"), "{revoke:?}");
    assert!(revoke.customer_id.is_some());
}
