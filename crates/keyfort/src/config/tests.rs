use std::path::{Path, PathBuf};

use keyfort_core::jose::SigningAlg;
use keyfort_core::registration::AuthMethod;
use keyfort_core::transport::BindingLevel;

use super::*;

/// A configuration valid in every key. Without a client CA, FAPI's certificate-bound tokens
/// could never be had, so it names the development switch; the rule has its own tests in
/// `development.rs`.
const MINIMAL: &str = r#"
[development]
allow_unsafe_registration = true
[server]
listen = "127.0.0.1:9446"
public_url = "https://bank.example"
[oauth.dcr]
ssa_jkws = "https://keystore.example/dir.jwks"
"#;

/// Loads `text` with no environment overrides, whatever the test process's environment.
fn load(text: &str) -> Result<Config, ConfigError> {
    load_with_env(text, &[])
}

fn load_with_env(text: &str, vars: &[(&str, &str)]) -> Result<Config, ConfigError> {
    let vars = vars.iter().map(|(k, v)| (k.to_string(), v.to_string()));
    Config::from_toml_with_env(text, "test.toml", Path::new("/etc/keyfort"), vars)
}

/// The problems of a configuration that must be refused, as `(key, message)` pairs.
fn problems(text: &str) -> Vec<(String, String)> {
    let err = load(text).expect_err("the configuration must be refused");
    err.problems()
        .iter()
        .map(|p| {
            assert_eq!(p.file, "test.toml", "every problem names the file");
            (p.key.clone().unwrap_or_default(), p.message.clone())
        })
        .collect()
}

#[test]
fn defaults_follow_the_issue() {
    let c = load(MINIMAL).unwrap();
    assert!(c.dcr.policy.mandate_ssa && c.dcr.policy.fapi);
    assert_eq!(c.dcr.ssa_rules.issuers, vec!["OpenBanking Ltd"]);
    assert_eq!(c.dcr.policy.audiences, vec!["https://bank.example"]);
    assert_eq!(c.dcr.software_jwks_origins.to_string(), "https://keystore.example:443");
    assert_eq!(c.dcr.jti_without_exp_retention_seconds, 30 * 86_400);
    assert_eq!(c.storage.url, "sqlite:///etc/keyfort/data/keyfort.db");
    assert!(!c.http_client.allow_insecure_loopback);
}

#[test]
fn every_default_matches_the_documented_one() {
    let c = load(MINIMAL).unwrap();
    assert_eq!(c.origin, "test.toml");
    assert_eq!(c.server.data_dir, PathBuf::from("/etc/keyfort/data"));
    assert_eq!(c.server.max_body_bytes, 65536);
    assert_eq!(c.server.client_auth, ClientAuthMode::Off);
    assert!(c.server.cert_file.is_none() && c.server.key_file.is_none() && c.server.client_ca_file.is_none());
    assert_eq!(c.dcr.ssa_signing_algs, vec![SigningAlg::PS256, SigningAlg::ES256]);
    assert_eq!(c.dcr.policy.auth_methods, vec![AuthMethod::PrivateKeyJwt, AuthMethod::TlsClientAuth]);
    assert_eq!(c.dcr.policy.clock_skew, 60);
    assert_eq!(c.dcr.policy.role_scopes, default_role_scopes());
    assert!(c.dcr.one_registration_per_software && !c.dcr.require_transport_certificate);
    assert!(!c.dcr.authentication_required && !c.dcr.allow_json_without_proof);
    assert_eq!(c.dcr.binding.level, BindingLevel::Software);
    assert!(c.dcr.binding.check_psd2_roles);
    assert_eq!(
        (c.token_lifetimes.application, c.token_lifetimes.user, c.token_lifetimes.refresh, c.token_lifetimes.id_token),
        (3600, 3600, 86400, 3600)
    );
    assert_eq!(c.token.signing_alg, SigningAlg::PS256);
    assert!(c.token.signing_key_file.is_none());
    assert_eq!(c.token.key_publish_ahead_seconds, 3600);
    assert_eq!(c.token.access_token_audience, vec!["https://bank.example"]);
    assert_eq!(c.token.assertion_max_lifetime_seconds, 300);
    let h = &c.http_client;
    assert_eq!(
        (h.connect_timeout_seconds, h.timeout_seconds, h.max_response_bytes, h.jwks_cache_seconds),
        (5, 10, 1048576, 3600)
    );
    assert_eq!(h.jwks_min_refresh_seconds, 60);
    assert!(h.ca_file.is_none());
    assert!(c.mtls.crl_sources.is_empty() && c.mtls.gateway_header.is_none() && c.mtls.trusted_proxies.is_empty());
    assert_eq!(c.mtls.crl_refresh_seconds, 3600);
    assert_eq!(c.mtls.revocation_unavailable, RevocationUnavailable::FailClosed);
    assert!(c.metrics_listen.is_none());
    assert_eq!((c.log.format, c.log.level.as_str()), (LogFormat::Text, "info"));
}

#[test]
fn without_fapi_the_secret_methods_are_allowed_by_default() {
    let c = load(&format!("{MINIMAL}enable_fapi_enforcement = false\n")).unwrap();
    assert_eq!(
        c.dcr.policy.auth_methods,
        vec![
            AuthMethod::PrivateKeyJwt,
            AuthMethod::TlsClientAuth,
            AuthMethod::ClientSecretBasic,
            AuthMethod::ClientSecretPost
        ]
    );
}

#[test]
fn wso2_spellings_carry_over() {
    let alt = MINIMAL.replace("ssa_jkws", "ssa_jwks");
    assert!(load(&alt).is_ok());
    let list =
        MINIMAL.replace("\"https://keystore.example/dir.jwks\"", "[\"https://a.example/1.jwks\", \"keys/dir.jwks\"]");
    let c = load(&list).unwrap();
    assert_eq!(c.dcr.ssa_jwks[1], KeySource::File(PathBuf::from("/etc/keyfort/keys/dir.jwks")));
    let organization = load(&format!("{MINIMAL}certificate_binding = \"organization\"\n")).unwrap();
    assert_eq!(organization.dcr.binding.level, BindingLevel::Organisation);
}

#[test]
fn errors_name_file_key_and_problem() {
    let unknown = load(&format!("{MINIMAL}mandate_sas = false\n")).unwrap_err().to_string();
    assert!(unknown.contains("test.toml") && unknown.contains("mandate_sas"), "{unknown}");
    let bad_url = load(&MINIMAL.replace("https://bank.example", "http://bank.example")).unwrap_err().to_string();
    assert!(bad_url.contains("[server] public_url") && bad_url.contains("https"), "{bad_url}");
    let no_jwks =
        load(&MINIMAL.replace("ssa_jkws = \"https://keystore.example/dir.jwks\"", "")).unwrap_err().to_string();
    assert!(no_jwks.contains("ssa_jkws") && no_jwks.contains("required"), "{no_jwks}");
    let half_tls = load(&format!("{MINIMAL}[server.tls]\ncert_file = \"c.pem\"\n")).unwrap_err().to_string();
    assert!(half_tls.contains("key_file"), "{half_tls}");
    let secret =
        load(&format!("{MINIMAL}token_endpoint_auth_methods = [\"client_secret_basic\"]\n")).unwrap_err().to_string();
    assert!(secret.contains("FAPI"), "{secret}");
    let hmac = load(&format!("{MINIMAL}allowed_signing_algs = [\"HS256\"]\n")).unwrap_err().to_string();
    assert!(hmac.contains("HMAC"), "{hmac}");
}

#[test]
fn one_file_with_three_mistakes_gives_three_errors() {
    let text = r#"
[server]
listen = "localhost"
public_url = "https://bank.example"
max_body_bytes = "64k"
[oauth.dcr]
ssa_jkws = "https://keystore.example/dir.jwks"
mandate_sas = false
"#;
    let found = problems(text);
    let keys: Vec<&str> = found.iter().map(|(key, _)| key.as_str()).collect();
    assert_eq!(keys, ["[server] listen", "[server] max_body_bytes", "[oauth.dcr] mandate_sas"], "{found:?}");
    assert!(found[0].1.contains("\"localhost\"") && found[0].1.contains("127.0.0.1:9446"), "{found:?}");
    assert!(found[1].1.contains("integer"), "says what type is expected: {found:?}");
    assert!(found[2].1.contains("did you mean mandate_ssa"), "{found:?}");

    let printed = load(text).unwrap_err().to_string();
    let lines: Vec<&str> = printed.lines().collect();
    assert_eq!(lines.len(), 3, "{printed}");
    assert!(lines.iter().all(|l| l.starts_with("error: test.toml: [")), "{printed}");
}

#[test]
fn problems_in_every_section_are_reported_together() {
    let text = r#"
colour = "blue"
[development]
allow_unsafe_registration = true
[server]
listen = "127.0.0.1:9446"
public_url = "https://bank.example"
[server.tsl]
cert_file = "x.pem"
[http_client]
timeout_seconds = 0
[mtls]
revocation_unavailable = "fail_sometimes"
[oauth.dcr]
ssa_jkws = "https://keystore.example/dir.jwks"
clock_skew_seconds = 9000
[oauth.token]
signing_alg = "none"
[oauth.token_lifetimes]
user_seconds = 1
[metrics]
listen = "everywhere"
[log]
format = "xml"
"#;
    let keys: Vec<String> = problems(text).into_iter().map(|(key, _)| key).collect();
    for expected in [
        "colour",
        "[server.tsl]",
        "[http_client] timeout_seconds",
        "[mtls] revocation_unavailable",
        "[oauth.dcr] clock_skew_seconds",
        "[oauth.token] signing_alg",
        "[oauth.token_lifetimes] user_seconds",
        "[metrics] listen",
        "[log] format",
    ] {
        assert!(keys.iter().any(|k| k == expected), "{expected} missing from {keys:?}");
    }
    assert_eq!(keys.len(), 9, "{keys:?}");
}

#[test]
fn a_missing_server_section_names_its_required_keys() {
    let keys: Vec<String> = problems("[oauth.dcr]\nssa_jkws = \"https://keystore.example/dir.jwks\"\n")
        .into_iter()
        .map(|(k, _)| k)
        .collect();
    assert_eq!(keys, ["[server] listen", "[server] public_url"]);
}

#[test]
fn a_value_where_a_section_belongs_is_refused() {
    let found =
        problems(&format!("{MINIMAL}[oauth.token]\n[http_client]\n").replace("[http_client]", "http_client = 1"));
    // `http_client = 1` lands in [oauth.token], where it is an unknown key.
    assert_eq!(found[0].0, "[oauth.token] http_client", "{found:?}");
    let found = problems(&format!("mtls = true\n{MINIMAL}"));
    assert_eq!(found[0].0, "[mtls]", "{found:?}");
    assert!(found[0].1.contains("must be a section"), "{found:?}");
}

#[test]
fn client_secret_jwt_is_refused_with_the_reason() {
    let text =
        format!("{MINIMAL}enable_fapi_enforcement = false\ntoken_endpoint_auth_methods = [\"client_secret_jwt\"]\n");
    let found = problems(&text);
    let (key, message) = &found[0];
    assert_eq!(key, "[oauth.dcr] token_endpoint_auth_methods");
    assert!(message.contains("not supported") && message.contains("FAPI"), "{message}");
}

#[test]
fn both_spellings_of_the_directory_jwks_are_one_too_many() {
    let found = problems(&format!("{MINIMAL}ssa_jwks = \"https://other.example/x.jwks\"\n"));
    assert_eq!(found[0].0, "[oauth.dcr] ssa_jwks");
    assert!(found[0].1.contains("alias"), "{found:?}");
}

#[test]
fn key_urls_must_be_https_or_loopback_http_with_the_switch() {
    let with = |jwks: &str, crl: &str, switch: bool| {
        format!(
            "{}[http_client]\nallow_insecure_loopback = {switch}\n[server.tls]\nclient_ca_file = \"ca.pem\"\n[mtls]\ncrl_urls = [\"{crl}\"]\n",
            MINIMAL.replace("https://keystore.example/dir.jwks", jwks)
        )
    };
    let loopback_jwks = "http://127.0.0.1:8090/dir.jwks";
    let loopback_crl = "http://localhost:8090/ca.crl";
    let c = load(&with(loopback_jwks, loopback_crl, true)).unwrap();
    assert_eq!(c.dcr.software_jwks_origins.to_string(), "http://127.0.0.1:8090");
    assert_eq!(c.mtls.crl_sources.len(), 1);

    let found = problems(&with(loopback_jwks, loopback_crl, false));
    assert_eq!(found.len(), 2, "{found:?}");
    assert_eq!(found[0].0, "[mtls] crl_urls");
    assert_eq!(found[1].0, "[oauth.dcr] ssa_jkws");
    assert!(found.iter().all(|(_, m)| m.contains("allow_insecure_loopback = true")), "{found:?}");

    for switch in [true, false] {
        let found = problems(&with("http://keystore.example/dir.jwks", "http://crl.example/ca.crl", switch));
        assert_eq!(found.len(), 2, "{found:?}");
        assert!(found.iter().all(|(_, m)| m.contains("never fetched")), "{found:?}");
        assert!(found[0].1.contains("crl_files"), "CRL advice: {found:?}");
        assert!(found[1].1.contains("http://keystore.example/dir.jwks"), "{found:?}");
    }
    let ftp = problems(&MINIMAL.replace("https://keystore.example/dir.jwks", "ftp://keystore.example/dir.jwks"));
    assert!(ftp[0].1.contains("ftp"), "{ftp:?}");
}

#[test]
fn typed_values_are_converted() {
    let text = format!(
        "{}[server.tls]\ncert_file = \"tls/server.pem\"\nkey_file = \"/abs/server.key\"\nclient_ca_file = \"ca.pem\"\nclient_auth = \"required\"\n\
         [mtls]\ntrusted_proxies = [\"10.0.0.0/8\", \"127.0.0.1\"]\ngateway_header = \"X-Client-Cert\"\ncrl_files = [\"crl/a.crl\"]\n\
         [oauth.token]\nsigning_alg = \"ES256\"\nsigning_key_file = \"k.pem\"\nsigning_key_id = \"k1\"\naccess_token_audience = \"https://api.example\"\n\
         [metrics]\nlisten = \"127.0.0.1:9464\"\n[log]\nformat = \"json\"\n",
        MINIMAL
    );
    let c = load(&text).unwrap();
    assert_eq!(c.server.cert_file, Some(PathBuf::from("/etc/keyfort/tls/server.pem")));
    assert_eq!(c.server.key_file, Some(PathBuf::from("/abs/server.key")));
    assert_eq!(c.server.client_auth, ClientAuthMode::Required);
    assert!(c.dcr.require_transport_certificate, "certificates can be had, so registration requires one");
    assert_eq!(c.mtls.trusted_proxies.len(), 2);
    assert_eq!(c.mtls.gateway_header.as_deref(), Some("x-client-cert"));
    assert_eq!(c.mtls.crl_sources, vec![KeySource::File(PathBuf::from("/etc/keyfort/crl/a.crl"))]);
    assert_eq!(c.token.signing_alg, SigningAlg::ES256);
    assert_eq!(c.token.signing_key_file, Some((PathBuf::from("/etc/keyfort/k.pem"), "k1".to_owned())));
    assert_eq!(c.token.access_token_audience, vec!["https://api.example"]);
    assert_eq!(c.metrics_listen, Some("127.0.0.1:9464".parse().unwrap()));
    assert_eq!(c.log.format, LogFormat::Json);
}

#[test]
fn cross_section_rules_hold() {
    let gateway_without_ca = problems(&format!("{MINIMAL}[mtls]\ngateway_header = \"x-cert\"\n"))
        .into_iter()
        .map(|(k, _)| k)
        .collect::<Vec<_>>();
    assert_eq!(gateway_without_ca, ["[mtls] trusted_proxies", "[mtls] gateway_header"]);
    let crl_without_certificates = problems(&format!("{MINIMAL}[mtls]\ncrl_files = [\"a.crl\"]\n"));
    assert_eq!(crl_without_certificates[0].0, "[mtls] crl_files");
    let client_auth_without_ca = problems(&format!("{MINIMAL}[server.tls]\nclient_auth = \"optional\"\n"));
    assert_eq!(client_auth_without_ca[0].0, "[server.tls] client_auth");
    let impossible = problems(&format!("{MINIMAL}require_transport_certificate = true\n"));
    assert_eq!(impossible[0].0, "[oauth.dcr] require_transport_certificate");
}

#[test]
fn syntax_errors_are_reported_with_their_line() {
    let err = load("[server]\nlisten = \"127.0.0.1:9446\"\nlisten = \"x\"\n").unwrap_err();
    assert_eq!(err.problems().len(), 1);
    assert!(err.to_string().starts_with("error: test.toml: line 3"), "{err}");
}

#[test]
fn database_passwords_are_redacted() {
    assert_eq!(redact_url("postgres://u:pw@h/db"), "postgres://u:***@h/db");
    let found = problems(&format!("[storage]\nurl = \"mysql://u:pw@h/db\"\n{MINIMAL}"));
    assert_eq!(found[0].0, "[storage] url");
    assert!(!found[0].1.contains("pw"), "{found:?}");
}

#[test]
fn storage_keys_have_documented_defaults_and_bounds() {
    let c = load(MINIMAL).unwrap();
    assert_eq!(
        c.storage,
        StorageConfig {
            key_encryption: KeyEncryptionSource::DataDir(PathBuf::from("/etc/keyfort/data/key-encryption.key")),
            ..StorageConfig::for_url("sqlite:///etc/keyfort/data/keyfort.db")
        }
    );
    assert!(c.storage.migrate_on_start);
    assert_eq!(c.storage.pool_size, None);
    assert_eq!(c.storage.acquire_timeout, std::time::Duration::from_secs(5));
    assert_eq!(c.storage.statement_timeout, Some(std::time::Duration::from_secs(30)));
    assert_eq!(c.token.key_reload_interval, std::time::Duration::from_secs(30));

    let pg = load(&format!(
        "[storage]\nurl = \"postgres://k@db/keyfort\"\nmigrate_on_start = false\npool_size = 40\n\
         acquire_timeout_seconds = 2\nstatement_timeout_seconds = 0\nsslmode = \"verify-full\"\n\
         ssl_root_cert = \"tls/db-ca.pem\"\n{MINIMAL}"
    ))
    .unwrap();
    let s = &pg.storage;
    assert!(!s.migrate_on_start && s.is_postgres());
    assert_eq!((s.pool_size, s.acquire_timeout.as_secs(), s.statement_timeout), (Some(40), 2, None));
    assert_eq!(s.sslmode, Some(SslMode::VerifyFull));
    assert_eq!(s.ssl_root_cert, Some(PathBuf::from("/etc/keyfort/tls/db-ca.pem")));

    let found = problems(&format!(
        "[storage]\nurl = \"sqlite://k.db\"\npool_size = 0\nsslmode = \"always\"\nssl_root_cert = \"ca.pem\"\n{MINIMAL}"
    ));
    let has = |key: &str, needle: &str| found.iter().any(|(k, m)| k == key && m.contains(needle));
    assert!(has("[storage] pool_size", "between 1 and 1000"), "{found:?}");
    assert!(has("[storage] sslmode", "\"always\" is not a PostgreSQL sslmode"), "{found:?}");
    assert!(has("[storage] ssl_root_cert", "applies to PostgreSQL only"), "{found:?}");

    // The key-encryption key: a file, or a value (from the environment), never both.
    let file = load(&format!("[storage]\nkey_encryption_key_file = \"secrets/kek\"\n{MINIMAL}")).unwrap();
    assert_eq!(file.storage.key_encryption, KeyEncryptionSource::File(PathBuf::from("/etc/keyfort/secrets/kek")));
    let from_env = load_with_env(MINIMAL, &[("KEYFORT_STORAGE__KEY_ENCRYPTION_KEY_FILE", "/run/secrets/kek")]).unwrap();
    assert_eq!(from_env.storage.key_encryption, KeyEncryptionSource::File(PathBuf::from("/run/secrets/kek")));
    let value = load_with_env(MINIMAL, &[("KEYFORT_STORAGE__KEY_ENCRYPTION_KEY", "c2VjcmV0")]).unwrap();
    assert_eq!(value.storage.key_encryption, KeyEncryptionSource::Value(SecretText("c2VjcmV0".into())));
    assert!(!format!("{:?}", value.storage).contains("c2VjcmV0"), "the value is never printed");
    let both = problems(&format!("[storage]\nkey_encryption_key_file = \"k\"\nkey_encryption_key = \"v\"\n{MINIMAL}"));
    assert!(both.iter().any(|(k, m)| k == "[storage] key_encryption_key" && m.contains("both")), "{both:?}");
}

#[test]
fn a_publish_ahead_shorter_than_the_key_reload_is_refused() {
    let c = load(&format!("{MINIMAL}[oauth.token]\nkey_reload_seconds = 2\nkey_publish_ahead_seconds = 2\n")).unwrap();
    assert_eq!(c.token.key_reload_interval, std::time::Duration::from_secs(2));
    let found = problems(&format!("{MINIMAL}[oauth.token]\nkey_reload_seconds = 60\nkey_publish_ahead_seconds = 30\n"));
    assert_eq!(found.len(), 1, "{found:?}");
    assert_eq!(found[0].0, "[oauth.token] key_publish_ahead_seconds");
    assert!(found[0].1.contains("shorter than key_reload_seconds (60)"), "{found:?}");
}

#[test]
fn the_environment_overrides_the_file_and_problems_name_the_variable() {
    let c = load_with_env(
        &format!("[storage]\nurl = \"sqlite://file.db\"\n{MINIMAL}"),
        &[
            ("KEYFORT_STORAGE__URL", "postgres://k@db/keyfort"),
            ("KEYFORT_SERVER__LISTEN", "127.0.0.1:9500"),
            ("KEYFORT_OAUTH__DCR__MANDATE_SSA", "false"),
            ("KEYFORT_STORAGE__POOL_SIZE", "7"),
            ("KEYFORT_TEST_POSTGRES_URL", "postgres://not-configuration"),
        ],
    )
    .unwrap();
    assert_eq!(c.storage.url, "postgres://k@db/keyfort", "environment over file");
    assert_eq!(c.server.listen.port(), 9500);
    assert!(!c.dcr.policy.mandate_ssa);
    assert_eq!(c.storage.pool_size, Some(7));

    let err = load_with_env(
        MINIMAL,
        &[("KEYFORT_SERVER__LISTN", "127.0.0.1:1"), ("KEYFORT_STORAGE__POOL_SIZE", "many"), ("KEYFORT_NOPE__KEY", "1")],
    )
    .unwrap_err();
    let lines: Vec<String> = err.problems().iter().map(ToString::to_string).collect();
    assert_eq!(lines.len(), 3, "{lines:#?}");
    let has = |needle: &str| lines.iter().any(|l| l.contains(needle));
    assert!(has("[server] listn: unknown key: did you mean listen? (set by KEYFORT_SERVER__LISTN)"), "{lines:#?}");
    assert!(has("[storage] pool_size") && has("(set by KEYFORT_STORAGE__POOL_SIZE)"), "{lines:#?}");
    assert!(has("[nope]: unknown section") && has("(set by KEYFORT_NOPE__KEY)"), "{lines:#?}");
}

/// Every key whose name ends in `_file` must be listed for the environment mapping, or
/// `KEYFORT_..._FILE` would read it from a file instead of setting it.
#[test]
fn every_key_ending_in_file_is_known_to_the_environment_mapping() {
    let dir = Path::new(env!("CARGO_MANIFEST_DIR")).join("src/config");
    let mut found = Vec::new();
    for entry in std::fs::read_dir(dir).unwrap() {
        let text = std::fs::read_to_string(entry.unwrap().path()).unwrap();
        for piece in text.split("take").skip(1) {
            let Some(start) = piece.find('"') else { continue };
            let rest = &piece[start + 1..];
            let key = &rest[..rest.find('"').unwrap_or(0)];
            if key.ends_with("_file") && piece[..start].len() < 40 {
                found.push(key.to_owned());
            }
        }
    }
    assert!(found.contains(&"cert_file".to_owned()), "the scan finds the keys: {found:?}");
    for key in found {
        assert!(super::environment::KEYS_ENDING_IN_FILE.contains(&key.as_str()), "{key} is missing");
    }
}

#[test]
fn consents_and_customers_defaults_and_limits() {
    let c = load(MINIMAL).unwrap();
    assert!(c.consents.require_request_signature);
    assert_eq!(c.consents.signature_trust_anchor, "openbanking.org.uk");
    assert_eq!(c.consents.idempotency_seconds, 86_400);
    let k = &c.customers;
    assert_eq!((k.min_password_length, k.max_failed_logins, k.lockout.as_secs()), (8, 5, 300));
    assert_eq!((k.failed_logins_per_address, k.failed_logins_window.as_secs()), (30, 900));
    assert_eq!((k.concurrent_password_checks, k.password_check_queue), (2, 32));
    assert_eq!(k.totp_issuer, "bank.example", "the public URL's host");

    let set = load(&format!(
        "{MINIMAL}[consents]\nrequire_request_signature = false\nsignature_trust_anchor = \"directory.example\"\nidempotency_seconds = 172800\n\
         [customers]\nmin_password_length = 12\nmax_failed_logins = 3\nlockout_seconds = 60\ntotp_issuer = \"Acme Bank\"\n"
    ))
    .unwrap();
    assert!(!set.consents.require_request_signature);
    assert_eq!(set.consents.signature_trust_anchor, "directory.example");
    assert_eq!(set.consents.idempotency_seconds, 172_800);
    assert_eq!((set.customers.min_password_length, set.customers.max_failed_logins), (12, 3));
    assert_eq!((set.customers.lockout.as_secs(), set.customers.totp_issuer.as_str()), (60, "Acme Bank"));

    let found = problems(&format!(
        "{MINIMAL}[consents]\nidempotency_seconds = 60\nsignature_trust_anchor = \"\"\nrequire_request_signatures = true\n\
         [customers]\nmin_password_length = 4\nmax_failed_logins = 0\ntotp_issuer = \"a:b\"\n"
    ));
    for key in [
        "[consents] idempotency_seconds",
        "[consents] signature_trust_anchor",
        "[consents] require_request_signatures",
        "[customers] min_password_length",
        "[customers] max_failed_logins",
        "[customers] totp_issuer",
    ] {
        assert!(found.iter().any(|(k, _)| k == key), "{key} missing from {found:?}");
    }
}

#[test]
fn resource_servers_need_readable_subjects_and_client_certificates() {
    let listed = format!(
        "{MINIMAL}[server.tls]\nclient_ca_file = \"ca.pem\"\n[resource_server]\nclient_subject_dns = [\"CN=gw,O=Bank,C=GB\"]\n"
    );
    let config = load(&listed).unwrap();
    assert_eq!(config.resource_server.client_subject_dns.len(), 1);
    assert!(load(MINIMAL).unwrap().resource_server.client_subject_dns.is_empty(), "none by default");

    let found = problems(&listed.replace("CN=gw,O=Bank,C=GB", "not a distinguished name"));
    assert!(
        found.iter().any(|(k, m)| k == "[resource_server] client_subject_dns" && m.contains("RFC 4514")),
        "{found:?}"
    );
    let found = problems(&format!("{MINIMAL}[resource_server]\nclient_subject_dns = [\"CN=gw\"]\n"));
    assert!(found.iter().any(|(_, m)| m.contains("client_ca_file")), "{found:?}");
}

#[test]
fn the_admin_api_has_its_own_loopback_listener_by_default() {
    let c = load(MINIMAL).unwrap();
    assert_eq!(c.admin.listen, AdminListen::Separate("127.0.0.1:9447".parse().unwrap()));
    let public = load(&format!("{MINIMAL}[admin]\nlisten = \"public\"\n")).unwrap();
    assert_eq!(public.admin.listen, AdminListen::Public);
    let any_port = load(&format!("{MINIMAL}[admin]\nlisten = \"[::1]:0\"\n")).unwrap();
    assert_eq!(any_port.admin.listen, AdminListen::Separate("[::1]:0".parse().unwrap()));
    let from_env = load_with_env(MINIMAL, &[("KEYFORT_ADMIN__LISTEN", "10.0.0.5:9999")]).unwrap();
    assert_eq!(from_env.admin.listen, AdminListen::Separate("10.0.0.5:9999".parse().unwrap()));
    let bad = problems(&format!("{MINIMAL}[admin]\nlisten = \"private\"\n"));
    assert!(bad.iter().any(|(k, m)| k == "[admin] listen" && m.contains("\"public\"")), "{bad:?}");
    let clash = problems(&format!("{MINIMAL}[admin]\nlisten = \"127.0.0.1:9446\"\n"));
    assert!(clash.iter().any(|(k, m)| k == "[admin] listen" && m.contains("[server] listen too")), "{clash:?}");
}

#[test]
fn profile_ca_files_map_bundles_to_profiles() {
    use keyfort_core::transport::CertificateProfile;
    let base = format!("{MINIMAL}[server.tls]\nclient_ca_file = \"ca.pem\"\n");
    assert_eq!(load(&base).unwrap().mtls.profile_ca_files, None);
    let c =
        load(&format!("{base}[mtls.profile_ca_files]\nlegacy_ob = \"ob.pem\"\neidas = \"/trust/qtsp.pem\"\n")).unwrap();
    assert_eq!(
        c.mtls.profile_ca_files,
        Some(vec![
            (CertificateProfile::LegacyOpenBanking, PathBuf::from("/etc/keyfort/ob.pem")),
            (CertificateProfile::Eidas, PathBuf::from("/trust/qtsp.pem")),
        ])
    );
    let unknown = problems(&format!("{base}[mtls.profile_ca_files]\nqwac = \"q.pem\"\n"));
    assert!(unknown.iter().any(|(k, _)| k == "[mtls.profile_ca_files] qwac"), "{unknown:?}");
    let without_ca = problems(&format!("{MINIMAL}[mtls.profile_ca_files]\nobwac = \"o.pem\"\n"));
    assert!(without_ca.iter().any(|(_, m)| m.contains("client_ca_file")), "{without_ca:?}");
}
