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

const CN: &str = "2.5.4.3";
const O: &str = "2.5.4.10";
const OU: &str = "2.5.4.11";
const C: &str = "2.5.4.6";
const ORGANIZATION_IDENTIFIER: &str = "2.5.4.97";

/// A subject name in ASN.1 order: RDNs of (OID, value) attributes.
type Rdns<'a> = Vec<Vec<(&'a str, &'a str)>>;

/// Hardening issue, finding 4: a subject with two values of an attribute the profile reads
/// is refused with the reason, whichever order the values come in, over real mutual TLS.
#[tokio::test]
async fn ambiguous_certificate_subjects_are_refused_with_the_reason() {
    let app = spawn_app_with(Options::mutual_tls().dcr("one_registration_per_software = false")).await;
    let other = "0015800001ZZZZZZZZ";
    let org_a = [(OU, ORG_ID)];
    let multi_ou_first = [(OU, ORG_ID), (OU, other)];
    let legacy = |middle: &[&[(&'static str, &'static str)]]| -> Rdns<'static> {
        let mut rdns: Rdns<'static> = vec![vec![(C, "GB")], vec![(O, "OpenBanking")]];
        rdns.extend(middle.iter().map(|rdn| rdn.to_vec()));
        rdns.push(vec![(CN, SOFTWARE_ID)]);
        rdns
    };
    let org_identifier = format!("PSDGB-OB-{ORG_ID}");
    let other_identifier = format!("PSDGB-OB-{other}");
    let cases: Vec<(&str, Rdns<'_>, &str)> = vec![
        ("OU=<org>+OU=<other>", legacy(&[&multi_ou_first]), "2 values of OU"),
        ("OU=<other>+OU=<org>", legacy(&[&[(OU, other), (OU, ORG_ID)]]), "2 values of OU"),
        ("two OU RDNs", legacy(&[&org_a, &[(OU, other)]]), "2 values of OU"),
        ("two OU RDNs, the other first", legacy(&[&[(OU, other)], &org_a]), "2 values of OU"),
        (
            "two CNs",
            vec![
                vec![(C, "GB")],
                vec![(O, "OpenBanking")],
                vec![(OU, ORG_ID)],
                vec![(CN, SOFTWARE_ID)],
                vec![(CN, "x")],
            ],
            "2 values of CN",
        ),
        (
            "two O values",
            vec![
                vec![(C, "GB")],
                vec![(O, "OpenBanking"), (O, "Another Ltd")],
                vec![(OU, ORG_ID)],
                vec![(CN, SOFTWARE_ID)],
            ],
            "2 values of O",
        ),
        (
            "two organizationIdentifiers",
            vec![
                vec![(C, "GB")],
                vec![
                    (ORGANIZATION_IDENTIFIER, org_identifier.as_str()),
                    (ORGANIZATION_IDENTIFIER, other_identifier.as_str()),
                ],
                vec![(CN, SOFTWARE_ID)],
            ],
            "2 values of organizationIdentifier",
        ),
    ];
    let template = Subject::legacy_ob(ORG_ID, SOFTWARE_ID);
    for (i, (name, rdns, needle)) in cases.into_iter().enumerate() {
        let rdns: Vec<&[(&str, &str)]> = rdns.iter().map(Vec::as_slice).collect();
        let cert = app.pki.issue_with_rdns(&template.clone().serial(3000 + i as u64), &rdns);
        let reply = app.register_as(&app.client_presenting(&cert), &[]).await;
        assert_eq!(reply.status, 403, "{name}: {}", reply.body);
        reply.assert_error(403, "unapproved_software_statement", needle);
    }
    // The same crafted certificate with one value each registers: the test's certificates
    // are otherwise sound.
    let rdns = legacy(&[&org_a]);
    let rdns: Vec<&[(&str, &str)]> = rdns.iter().map(Vec::as_slice).collect();
    let sound = app.pki.issue_with_rdns(&template.serial(3100), &rdns);
    let reply = app.register_as(&app.client_presenting(&sound), &[]).await;
    assert_eq!(reply.status, 201, "{}", reply.body);
}

/// Open Banking identifiers are case-sensitive: a certificate for "oq4k..." is not one for
/// "oQ4K...".
#[tokio::test]
async fn certificate_identifiers_are_compared_with_their_case() {
    let app = spawn_app_with(Options::mutual_tls()).await;
    for (subject, needle) in [
        (Subject::legacy_ob(ORG_ID, &SOFTWARE_ID.to_lowercase()), "CN"),
        (Subject::legacy_ob(&ORG_ID.to_lowercase(), SOFTWARE_ID), "organisation"),
        (Subject::obwac(&format!("PSDGB-OB-{}", ORG_ID.to_uppercase()), SOFTWARE_ID, ALL_ROLES), "organisation"),
    ] {
        let cert = app.pki.issue(&subject);
        app.register_as(&app.client_presenting(&cert), &[]).await.assert_error(
            403,
            "unapproved_software_statement",
            needle,
        );
    }
}

/// `[mtls.profile_ca_files]`: the legacy OB profile is only accepted from the CAs listed
/// for it; a profile not listed is accepted from no CA.
#[tokio::test]
async fn certificate_profiles_are_tied_to_their_issuers() {
    // The issuing CA may issue OBWACs only.
    let options = Options::mutual_tls()
        .dcr("one_registration_per_software = false")
        .section("[mtls.profile_ca_files]\nobwac = \"obwac-issuers.pem\"");
    let app = spawn_app_with_files(options, |dir, pki| {
        std::fs::write(dir.join("obwac-issuers.pem"), pki.issuing.cert.pem()).unwrap();
    })
    .await;
    let legacy = app.pki.issue(&Subject::legacy_ob(ORG_ID, SOFTWARE_ID));
    app.register_as(&app.client_presenting(&legacy), &[]).await.assert_error(
        401,
        "invalid_client",
        "legacy Open Banking transport (O=OpenBanking, OU=<org_id>) profile, but this bank trusts no CA for that profile",
    );
    let obwac = app.pki.issue(&Subject::obwac(&format!("PSDGB-OB-{ORG_ID}"), SOFTWARE_ID, ALL_ROLES));
    let reply = app.register_as(&app.client_presenting(&obwac), &[]).await;
    assert_eq!(reply.status, 201, "{}", reply.body);

    // Listed for the legacy profile, but with another CA than the one that issued it.
    let options = Options::mutual_tls().section("[mtls.profile_ca_files]\nlegacy_ob = \"legacy-issuers.pem\"");
    let app = spawn_app_with_files(options, |dir, pki| {
        std::fs::write(dir.join("legacy-issuers.pem"), pki.untrusted.cert.pem()).unwrap();
    })
    .await;
    let legacy = app.pki.issue(&Subject::legacy_ob(ORG_ID, SOFTWARE_ID));
    app.register_as(&app.client_presenting(&legacy), &[]).await.assert_error(
        401,
        "invalid_client",
        "none of the CAs it chains to is trusted for that profile ([mtls.profile_ca_files] legacy_ob)",
    );

    // The root, rather than the issuing CA, may be named too.
    let options = Options::mutual_tls().section("[mtls.profile_ca_files]\nlegacy_ob = \"legacy-issuers.pem\"");
    let app = spawn_app_with_files(options, |dir, pki| {
        std::fs::write(dir.join("legacy-issuers.pem"), pki.root.cert.pem()).unwrap();
    })
    .await;
    let legacy = app.pki.issue(&Subject::legacy_ob(ORG_ID, SOFTWARE_ID));
    assert_eq!(app.register_as(&app.client_presenting(&legacy), &[]).await.status, 201);
}

/// A tls_client_auth registration must name the subject of the certificate it comes with,
/// in OBIE's form (CN first).
#[tokio::test]
async fn a_tls_client_auth_subject_dn_must_be_the_presented_certificate() {
    let app = spawn_app_with(Options::mutual_tls().dcr("one_registration_per_software = false")).await;
    let cert = app.pki.issue(&Subject::legacy_ob(ORG_ID, SOFTWARE_ID));
    let http = app.client_presenting(&cert);
    let register = |dn: String| {
        let claims = patch(
            app.request_claims(),
            serde_json::json!({"token_endpoint_auth_method": "tls_client_auth", "token_endpoint_auth_signing_alg": null,
                               "tls_client_auth_subject_dn": dn}),
        );
        let http = http.clone();
        let app = &app;
        async move { app.post_with(&http, REGISTER, Some("application/json"), claims.to_string(), &[]).await }
    };
    register(format!("CN={SOFTWARE_ID},OU={ORG_ID},O=OpenBanking,C=FR")).await.assert_error(
        400,
        "invalid_client_metadata",
        "is not the subject of the transport certificate presented with this registration",
    );
    register(format!("OU={ORG_ID},O=OpenBanking,C=GB,CN={SOFTWARE_ID}")).await.assert_error(
        400,
        "invalid_client_metadata",
        "must start with the CN",
    );
    assert_eq!(cert.subject_dn(), format!("CN={SOFTWARE_ID},OU={ORG_ID},O=OpenBanking,C=GB"));
    let reply = register(cert.subject_dn()).await;
    assert_eq!(reply.status, 201, "{}", reply.body);
}
