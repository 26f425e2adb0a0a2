//! Transport trust over real mutual TLS: each OB certificate profile, each way a certificate
//! can be unacceptable, binding to the software statement, gateway-forwarded certificates,
//! and administrator authentication.

use keyfort::storage::Store;
use percent_encoding::{utf8_percent_encode, NON_ALPHANUMERIC};

use crate::helpers::*;
use crate::pki::{Subject, REVOKED_SERIAL};

const REGISTRATION_ID: &str = "Unknown0015800001HQQrZAAX";
const ALL_ROLES: &[&str] = &["PSP_AI", "PSP_PI", "PSP_IC"];

async fn stored_certificate(app: &TestApp, client_id: &str) -> keyfort_core::registration::BoundCertificate {
    let store =
        keyfort::storage::SqliteStore::open(&format!("sqlite://{}", app.database_path().display())).await.unwrap();
    store.find_client(client_id).await.unwrap().unwrap().transport_certificate.expect("the certificate is remembered")
}

#[tokio::test]
async fn each_open_banking_certificate_profile_registers() {
    let app = spawn_app_with(Options::mutual_tls().dcr("one_registration_per_software = false")).await;
    let profiles = [
        ("legacy OB transport", Subject::legacy_ob(ORG_ID, SOFTWARE_ID)),
        ("OBWAC, CN = software", Subject::obwac(&format!("PSDGB-OB-{ORG_ID}"), SOFTWARE_ID, ALL_ROLES)),
        ("OBWAC, CN = organisation", Subject::obwac(&format!("PSDGB-OB-{ORG_ID}"), ORG_ID, ALL_ROLES)),
        ("eIDAS QWAC", Subject::obwac(&format!("PSDGB-FCA-{REGISTRATION_ID}"), SOFTWARE_ID, ALL_ROLES)),
    ];
    for (name, subject) in profiles {
        let cert = app.pki.issue(&subject);
        let reply = app.register_as(&app.client_presenting(&cert), &[]).await;
        assert_eq!(reply.status, 201, "{name}: {}", reply.body);
        let bound = stored_certificate(&app, reply.body["client_id"].as_str().unwrap()).await;
        let expected = keyfort_core::jose::b64url_encode(keyfort_core::secret::sha256(cert.der()));
        assert_eq!(bound.thumbprint_s256, expected, "{name}");
        assert!(bound.subject.contains(SOFTWARE_ID) || bound.subject.contains(ORG_ID), "{name}: {}", bound.subject);
    }
}

#[tokio::test]
async fn unacceptable_certificates_get_401_and_create_nothing() {
    let app = spawn_app_with(Options::mutual_tls()).await;
    let legacy = Subject::legacy_ob(ORG_ID, SOFTWARE_ID);
    let mut expired = legacy.clone().serial(11);
    expired.expired = true;
    let mut server_only = legacy.clone().serial(12);
    server_only.eku = vec![rcgen::ExtendedKeyUsagePurpose::ServerAuth];
    let mut no_eku = legacy.clone().serial(14);
    no_eku.eku = vec![];
    let cases = [
        ("expired", app.pki.issue(&expired), "expired"),
        ("no extended key usage", app.pki.issue(&no_eku), "clientAuth"),
        ("revoked", app.pki.issue(&legacy.clone().serial(REVOKED_SERIAL)), "revoked"),
        ("untrusted CA", app.pki.issue_untrusted(&legacy.clone().serial(13)), "not issued by a CA this bank trusts"),
        ("server certificate", app.pki.issue(&server_only), "clientAuth"),
    ];
    for (name, cert, needle) in cases {
        let reply = app.register_as(&app.client_presenting(&cert), &[]).await;
        assert_eq!(reply.status, 401, "{name}: {}", reply.body);
        reply.assert_error(401, "invalid_client", needle);
    }
    app.register_as(&app.client, &[]).await.assert_error(401, "invalid_client", "requires mutual TLS");
    // Nothing was registered: the software can still register with a good certificate.
    let good = app.pki.issue(&legacy);
    assert_eq!(app.register_as(&app.client_presenting(&good), &[]).await.status, 201);
}

#[tokio::test]
async fn a_certificate_of_another_organisation_or_software_gets_403_naming_the_field() {
    let app = spawn_app_with(Options::mutual_tls()).await;
    let cases = [
        (Subject::legacy_ob("0015800001OTHERORG", SOFTWARE_ID), "organisation \"0015800001OTHERORG\""),
        (Subject::legacy_ob(ORG_ID, "SomeOtherSoftware"), "CN \"SomeOtherSoftware\""),
        (Subject::obwac("PSDGB-OB-0015800001OTHERORG", SOFTWARE_ID, ALL_ROLES), "organisation"),
        (Subject::obwac("PSDGB-FCA-999999", SOFTWARE_ID, ALL_ROLES), "organizationIdentifier"),
        (Subject::obwac(&format!("PSDGB-OB-{ORG_ID}"), SOFTWARE_ID, &["PSP_AI"]), "PSD2 roles"),
    ];
    for (subject, needle) in cases {
        let cert = app.pki.issue(&subject);
        app.register_as(&app.client_presenting(&cert), &[]).await.assert_error(
            403,
            "unapproved_software_statement",
            needle,
        );
    }
}

#[tokio::test]
async fn binding_and_role_checks_are_configurable() {
    let app = spawn_app_with(
        Options::mutual_tls().dcr("certificate_binding = \"organisation\"").dcr("check_psd2_roles = false"),
    )
    .await;
    let other_software =
        app.pki.issue(&Subject::obwac(&format!("PSDGB-OB-{ORG_ID}"), "SomeOtherSoftware", &["PSP_AI"]));
    let reply = app.register_as(&app.client_presenting(&other_software), &[]).await;
    assert_eq!(reply.status, 201, "{}", reply.body);
}

#[tokio::test]
async fn revocation_fails_closed_when_the_crl_cannot_be_had() {
    let options =
        Options::default().tls("client_ca_file = \"client-ca.pem\"").mtls("crl_urls = [\"{KEY_SERVER}/missing.crl\"]");
    let app = spawn_app_with(options).await;
    let cert = app.pki.issue(&Subject::legacy_ob(ORG_ID, SOFTWARE_ID));
    app.register_as(&app.client_presenting(&cert), &[]).await.assert_error(
        401,
        "invalid_client",
        "revocation status cannot be established",
    );

    let lenient = Options::default()
        .tls("client_ca_file = \"client-ca.pem\"")
        .mtls("crl_urls = [\"{KEY_SERVER}/missing.crl\"]")
        .mtls("revocation_unavailable = \"fail_open\"");
    let app = spawn_app_with(lenient).await;
    let cert = app.pki.issue(&Subject::legacy_ob(ORG_ID, SOFTWARE_ID));
    assert_eq!(app.register_as(&app.client_presenting(&cert), &[]).await.status, 201);
}

#[tokio::test]
async fn client_auth_required_refuses_the_handshake_without_a_certificate() {
    let app =
        spawn_app_with(Options::default().tls("client_ca_file = \"client-ca.pem\"").tls("client_auth = \"required\""))
            .await;
    let without = app.client.get(format!("{}/healthz", app.base)).send().await;
    assert!(without.is_err(), "the TLS handshake must fail without a client certificate");
    let cert = app.pki.issue(&Subject::legacy_ob(ORG_ID, SOFTWARE_ID));
    assert_eq!(app.register_as(&app.client_presenting(&cert), &[]).await.status, 201);
}

fn forwarded(cert: &crate::pki::ClientCert) -> (&'static str, String) {
    ("x-wso2-mutual-auth-cert", utf8_percent_encode(&cert.pem, NON_ALPHANUMERIC).to_string())
}

fn gateway(trusted: &str) -> Options {
    Options::default()
        .tls("client_ca_file = \"client-ca.pem\"")
        .tls("client_auth = \"off\"")
        .mtls("gateway_header = \"x-wso2-mutual-auth-cert\"")
        .mtls(&format!("trusted_proxies = [\"{trusted}\"]"))
        .mtls("crl_urls = [\"{KEY_SERVER}/issuing.crl\"]")
}

#[tokio::test]
async fn a_trusted_gateway_forwards_the_certificate_and_the_same_checks_apply() {
    let app = spawn_app_with(gateway("127.0.0.1/32")).await;
    let revoked = app.pki.issue(&Subject::legacy_ob(ORG_ID, SOFTWARE_ID).serial(REVOKED_SERIAL));
    app.register_as(&app.client, &[forwarded(&revoked)]).await.assert_error(401, "invalid_client", "revoked");
    let other_org = app.pki.issue(&Subject::legacy_ob("0015800001OTHERORG", SOFTWARE_ID).serial(5));
    app.register_as(&app.client, &[forwarded(&other_org)]).await.assert_error(
        403,
        "unapproved_software_statement",
        "organisation",
    );
    app.register_as(&app.client, &[("x-wso2-mutual-auth-cert", "not a certificate".into())]).await.assert_error(
        401,
        "invalid_client",
        "does not hold a certificate",
    );

    let good = app.pki.issue(&Subject::legacy_ob(ORG_ID, SOFTWARE_ID));
    let reply = app.register_as(&app.client, &[forwarded(&good)]).await;
    assert_eq!(reply.status, 201, "{}", reply.body);
    let bound = stored_certificate(&app, reply.body["client_id"].as_str().unwrap()).await;
    assert_eq!(bound.thumbprint_s256, keyfort_core::jose::b64url_encode(keyfort_core::secret::sha256(good.der())));
}

#[tokio::test]
async fn a_forged_header_from_an_untrusted_address_is_ignored() {
    // Only 10.0.0.0/8 may forward certificates; the test connects from 127.0.0.1.
    let app = spawn_app_with(gateway("10.0.0.0/8")).await;
    let good = app.pki.issue(&Subject::legacy_ob(ORG_ID, SOFTWARE_ID));
    app.register_as(&app.client, &[forwarded(&good)]).await.assert_error(401, "invalid_client", "requires mutual TLS");
}

#[tokio::test]
async fn administrators_authenticate_registration_when_configured() {
    let app = spawn_app_with(Options::default().dcr("authentication_required = true")).await;
    // The administrator is created by the real command line, password on standard input.
    let mut child = std::process::Command::new(env!("CARGO_BIN_EXE_keyfort"))
        .args(["admin", "add-user", "--config"])
        .arg(&app.config_path)
        .args(["is_admin@wso2.com", "--password-stdin"])
        .stdin(std::process::Stdio::piped())
        .spawn()
        .unwrap();
    use std::io::Write;
    child.stdin.take().unwrap().write_all(b"correct horse battery staple\n").unwrap();
    assert!(child.wait().unwrap().success());

    let basic = |user: &str, password: &str| {
        use base64::Engine;
        (
            "authorization",
            format!("Basic {}", base64::engine::general_purpose::STANDARD.encode(format!("{user}:{password}"))),
        )
    };
    let missing = app.register_as(&app.client, &[]).await;
    missing.assert_error(401, "invalid_client", "administrator credentials are required");
    assert!(missing.headers["www-authenticate"].to_str().unwrap().starts_with("Basic"));
    app.register_as(&app.client, &[basic("is_admin@wso2.com", "wrong")]).await.assert_error(
        401,
        "invalid_client",
        "wrong",
    );
    app.register_as(&app.client, &[basic("nobody", "wrong")]).await.assert_error(401, "invalid_client", "wrong");
    let ok = app.register_as(&app.client, &[basic("is_admin@wso2.com", "correct horse battery staple")]).await;
    assert_eq!(ok.status, 201, "{}", ok.body);

    // Repeated failures lock the name, even for the right password.
    for _ in 0..5 {
        app.register_as(&app.client, &[basic("is_admin@wso2.com", "guess")]).await;
    }
    let locked = app.register_as(&app.client, &[basic("is_admin@wso2.com", "correct horse battery staple")]).await;
    locked.assert_error(429, "invalid_client", "too many failed sign-ins");
}

#[tokio::test]
async fn a_certificate_accepted_before_is_refused_once_the_crl_revokes_it() {
    // Validated chains are remembered; a new CRL must end that at once.
    let app = spawn_app_with(gateway("127.0.0.1/32").mtls("crl_refresh_seconds = 10")).await;
    let cert = app.pki.issue(&Subject::legacy_ob(ORG_ID, SOFTWARE_ID).serial(77));
    let first = app.register_as(&app.client, &[forwarded(&cert)]).await;
    assert_eq!(first.status, 201, "{}", first.body);
    // Accepted again (from the cache): refused only because the software is registered.
    let again = app.register_as(&app.client, &[forwarded(&cert)]).await;
    again.assert_error(400, "invalid_client_metadata", "active registration");

    app.key_server.set("/issuing.crl", Doc::Raw(app.pki.crl_der_revoking(&[REVOKED_SERIAL, 77], 2)));
    let mut last = None;
    for _ in 0..40 {
        tokio::time::sleep(std::time::Duration::from_millis(500)).await;
        let reply = app.register_as(&app.client, &[forwarded(&cert)]).await;
        if reply.status == 401 {
            reply.assert_error(401, "invalid_client", "revoked");
            return;
        }
        last = Some(reply);
    }
    panic!("the revoked certificate was still accepted after the CRL reload: {:?}", last.map(|r| r.body));
}
