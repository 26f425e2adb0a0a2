//! Moving from WSO2 Identity Server: what its `deployment.toml` keys are called here, and
//! the conversion of a whole `deployment.toml` (`keyfort import-wso2`).
//!
//! The `[oauth.dcr]` keys already carry the WSO2 names. Everything else differs: WSO2 is a
//! Java server with JKS keystores, JDBC data sources and a user store, Keyfort a single
//! binary with PEM files, SQLite or PostgreSQL, and a customer directory. A pasted WSO2 key
//! is therefore answered with its Keyfort equivalent, or with why there is none, and the
//! importer carries over what maps and says what it could not carry and why.

use std::fmt::Write;

use toml::{Table, Value};

use super::error::ConfigError;

/// WSO2's default HTTPS port; `[server] offset` is added to it.
const WSO2_HTTPS_PORT: i64 = 9443;

/// What to say about a WSO2 key or section (`path` is the section's dotted path, empty at
/// the top) that Keyfort does not read; `None` when the name is not a WSO2 one.
pub(super) fn hint(path: &str, name: &str) -> Option<&'static str> {
    let hint = match (path, name) {
        ("server", "hostname") | ("server", "base_path") => {
            "WSO2 Identity Server's [server] hostname is Keyfort's [server] public_url (\"https://HOST:PORT\")"
        }
        ("server", "offset") => {
            "WSO2's port offset: Keyfort listens on exactly the port of [server] listen (WSO2's 9443 + offset)"
        }
        ("server", "node_ip") => "WSO2's [server] node_ip is the address part of Keyfort's [server] listen",
        ("", "super_admin") => {
            "WSO2's super administrator: create Keyfort's administrators with `keyfort admin add-user --config FILE NAME`"
        }
        ("", "user_store") => {
            "WSO2's user store has no Keyfort section: bank customers live in the built-in store (`keyfort customers add`) or behind the bank's own CustomerDirectory"
        }
        ("", "database") => {
            "WSO2's JDBC data sources: Keyfort's database is [storage] url (sqlite://PATH or postgres://USER@HOST/DB)"
        }
        ("", "keystore") => {
            "WSO2's JKS keystore: Keyfort reads PEM files, [server.tls] cert_file and key_file"
        }
        ("", "truststore") => {
            "WSO2's JKS truststore: Keyfort's trusted transport CAs are the PEM bundle [server.tls] client_ca_file"
        }
        ("oauth", "token_validation") => {
            "WSO2's token validity periods are Keyfort's [oauth.token_lifetimes] (application_seconds, user_seconds, refresh_seconds, id_token_seconds)"
        }
        ("oauth", "timestamp_skew") => "WSO2's [oauth] timestamp_skew is Keyfort's [oauth.dcr] clock_skew_seconds",
        ("", "transport") => {
            "WSO2's transport (Tomcat) settings: Keyfort's listener is [server] listen and its limits are the other [server] keys"
        }
        ("", "authentication" | "account_recovery" | "identity" | "event_listener" | "identity_mgt" | "admin_service"
        | "system_applications" | "tenant_mgt" | "recaptcha" | "carbon" | "catalina" | "open_banking") => {
            "a WSO2 Identity Server section with no Keyfort equivalent: remove it"
        }
        _ => return None,
    };
    Some(hint)
}

/// One thing the importer did or could not do.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Note {
    /// The WSO2 key or section (`[server] hostname`).
    pub wso2: String,
    /// Carried over (`true`) or not.
    pub carried: bool,
    /// Where it went, or why it did not, and what to do.
    pub what: String,
}

/// A Keyfort configuration made from a WSO2 `deployment.toml`, with notes.
#[derive(Debug, Clone)]
pub struct Imported {
    /// The configuration file's text, commented.
    pub toml: String,
    pub notes: Vec<Note>,
}

/// A TOML value written the way a configuration file writes it.
fn literal(value: &Value) -> String {
    value.to_string()
}

fn quoted(text: &str) -> String {
    Value::String(text.to_owned()).to_string()
}

/// A PEM file name next to a WSO2 JKS file (`wso2carbon.jks` → `wso2carbon.pem`).
fn pem_beside(jks: &str, extension: &str) -> String {
    let stem = jks.rsplit_once('.').map_or(jks, |(stem, _)| stem);
    format!("{stem}.{extension}")
}

/// The section at `path` of `table`, if it is one.
fn section<'a>(table: &'a Table, path: &[&str]) -> Option<&'a Table> {
    let mut current = table;
    for name in path {
        current = current.get(*name)?.as_table()?;
    }
    Some(current)
}

fn text_of(table: Option<&Table>, key: &str) -> Option<String> {
    match table?.get(key)? {
        Value::String(s) => Some(s.clone()),
        other => Some(other.to_string()),
    }
}

fn integer_of(table: Option<&Table>, key: &str) -> Option<i64> {
    match table?.get(key)? {
        Value::Integer(i) => Some(*i),
        Value::String(s) => s.trim().parse().ok(),
        _ => None,
    }
}

/// A JDBC PostgreSQL URL as a `postgres://` one, with the user and without a password.
fn postgres_url(jdbc: &str, username: Option<&str>) -> Option<String> {
    let rest = jdbc.strip_prefix("jdbc:postgresql://")?;
    let rest = rest.split(['?', ';']).next().unwrap_or(rest);
    Some(match username {
        Some(user) => format!("postgres://{user}@{rest}"),
        None => format!("postgres://{rest}"),
    })
}

/// Converts a WSO2 Identity Server `deployment.toml` (its text; `origin` names it in errors).
pub fn import(text: &str, origin: &str) -> Result<Imported, ConfigError> {
    let wso2 = super::loader::parse(text, origin)?;
    let mut notes = Vec::new();
    let mut note = |wso2: &str, carried: bool, what: String| notes.push(Note { wso2: wso2.to_owned(), carried, what });
    let mut out = String::new();
    let _ = writeln!(
        out,
        "# Keyfort configuration imported from the WSO2 Identity Server file {origin} by `keyfort import-wso2`.\n\
         # Check it (and the files it names) with: keyfort check-config --config <this file>\n\
         # Every key and its meaning: keyfort.example.toml. Relative paths are relative to this file.\n"
    );

    // [server]: WSO2 serves HTTPS on 9443 + offset at hostname.
    let server = section(&wso2, &["server"]);
    let hostname = text_of(server, "hostname");
    let offset = integer_of(server, "offset").unwrap_or(0);
    let port = WSO2_HTTPS_PORT + offset;
    let node_ip = text_of(server, "node_ip");
    let proxy_port = integer_of(section(&wso2, &["transport", "https", "properties"]), "proxyPort");
    let host = hostname.clone().unwrap_or_else(|| "localhost".to_owned());
    let public_port = proxy_port.unwrap_or(port);
    let public_url =
        if public_port == 443 { format!("https://{host}") } else { format!("https://{host}:{public_port}") };
    let listen = format!("{}:{port}", node_ip.clone().unwrap_or_else(|| "0.0.0.0".to_owned()));
    let _ = writeln!(out, "[server]\nlisten = {}\npublic_url = {}\n", quoted(&listen), quoted(&public_url));
    match &hostname {
        Some(h) => note("[server] hostname", true, format!("[server] public_url = \"{public_url}\" (from {h})")),
        None => note(
            "[server] hostname",
            true,
            format!("not set: WSO2's default localhost gives [server] public_url = \"{public_url}\"; set the name TPPs reach"),
        ),
    }
    note("[server] offset", true, format!("[server] listen = \"{listen}\": WSO2's HTTPS port 9443 + offset {offset}"));
    if proxy_port.is_some() {
        note(
            "[transport.https.properties] proxyPort",
            true,
            format!("the port in public_url ({public_port}), which clients reach through the proxy"),
        );
    }

    // [server.tls]: JKS keystores become PEM files, which Keyfort reads without a password.
    let keystore = section(&wso2, &["keystore", "tls"]).or_else(|| section(&wso2, &["keystore", "primary"]));
    let keystore_file = text_of(keystore, "file_name").unwrap_or_else(|| "wso2carbon.jks".to_owned());
    let truststore_file =
        text_of(section(&wso2, &["truststore"]), "file_name").unwrap_or_else(|| "client-truststore.jks".to_owned());
    let (cert, key, bundle) =
        (pem_beside(&keystore_file, "pem"), pem_beside(&keystore_file, "key"), pem_beside(&truststore_file, "pem"));
    let _ = writeln!(
        out,
        "[server.tls]\n# Converted from the WSO2 keystore {keystore_file} (see the import's notes).\ncert_file = {}\nkey_file = {}\n\
         # The CAs that issue TPPs' transport certificates, from the WSO2 truststore {truststore_file}:\n\
         # keep only those (the Open Banking directory's and your QTSPs' CAs).\nclient_ca_file = {}\nclient_auth = \"optional\"\n",
        quoted(&cert),
        quoted(&key),
        quoted(&bundle),
    );
    let stem = pem_beside(&keystore_file, "p12");
    note(
        "[keystore] file_name",
        true,
        format!(
            "{keystore_file} → [server.tls] cert_file \"{cert}\" and key_file \"{key}\": Keyfort reads PEM, so convert it \
             (keytool -importkeystore -srckeystore {keystore_file} -destkeystore {stem} -deststoretype PKCS12; \
             openssl pkcs12 -in {stem} -nokeys -out {cert}; openssl pkcs12 -in {stem} -nocerts -nodes -out {key}) \
             and make the key readable by Keyfort's user only"
        ),
    );
    let trust_p12 = pem_beside(&truststore_file, "p12");
    note(
        "[truststore] file_name",
        true,
        format!(
            "{truststore_file} → [server.tls] client_ca_file \"{bundle}\" (keytool -importkeystore -srckeystore \
             {truststore_file} -destkeystore {trust_p12} -deststoretype PKCS12; openssl pkcs12 -in {trust_p12} -nokeys \
             -out {bundle}); WSO2's truststore also holds CAs for its outbound calls: keep only the CAs of transport \
             certificates in this bundle"
        ),
    );
    for (path, name) in [
        (&["keystore", "primary"][..], "[keystore.primary]"),
        (&["keystore", "tls"][..], "[keystore.tls]"),
        (&["truststore"][..], "[truststore]"),
    ] {
        if section(&wso2, path).is_some_and(|s| s.contains_key("password") || s.contains_key("key_password")) {
            note(
                &format!("{name} password"),
                false,
                "not carried over: PEM files are read without a password; protect them with file permissions instead"
                    .to_owned(),
            );
        }
    }

    // [storage]
    let database = section(&wso2, &["database", "identity_db"]).or_else(|| section(&wso2, &["database", "shared_db"]));
    let db_type = text_of(database, "type").map(|t| t.to_ascii_lowercase());
    match (db_type.as_deref(), text_of(database, "url")) {
        (None, _) => note(
            "[database]",
            true,
            "not set: Keyfort keeps its data in its embedded SQLite database (<data_dir>/keyfort.db)".to_owned(),
        ),
        (Some("postgre" | "postgres" | "postgresql"), Some(jdbc)) => {
            match postgres_url(&jdbc, text_of(database, "username").as_deref()) {
                Some(url) => {
                    let _ = writeln!(
                        out,
                        "[storage]\n# The password is not written here: set KEYFORT_STORAGE__URL_FILE to a file holding\n\
                         # the whole URL with it (postgres://user:password@host:5432/db).\nurl = {}\n",
                        quoted(&url)
                    );
                    note(
                        "[database.identity_db] url",
                        true,
                        format!(
                            "[storage] url = \"{url}\"; Keyfort creates its own tables there (use a database of its own, \
                             not WSO2's); WSO2's registrations are not moved: TPPs register again"
                        ),
                    );
                    note(
                        "[database.identity_db] password",
                        false,
                        "not carried over into the file: give the URL with its password in a secret file named by KEYFORT_STORAGE__URL_FILE".to_owned(),
                    );
                }
                None => note("[database.identity_db] url", false, format!("\"{jdbc}\" is not a jdbc:postgresql:// URL")),
            }
        }
        (Some(other), _) => note(
            "[database.identity_db] type",
            false,
            format!(
                "\"{other}\" is not supported: Keyfort stores its data in its embedded SQLite database (the default, used \
                 here) or in PostgreSQL ([storage] url); WSO2's registrations are not moved: TPPs register again"
            ),
        ),
    }

    // [oauth.dcr]: WSO2's own key names.
    let dcr = section(&wso2, &["oauth", "dcr"]);
    let _ = writeln!(out, "[oauth.dcr]");
    let carried_dcr = ["ssa_jkws", "ssa_jwks", "mandate_ssa", "enable_fapi_enforcement", "authentication_required"];
    let mut has_jwks = false;
    for key in carried_dcr {
        if let Some(value) = dcr.and_then(|d| d.get(key)) {
            let _ = writeln!(out, "{key} = {}", literal(value));
            note(&format!("[oauth.dcr] {key}"), true, format!("[oauth.dcr] {key}, unchanged"));
            has_jwks |= key.starts_with("ssa_j");
        }
    }
    if !has_jwks {
        let _ = writeln!(
            out,
            "# Required: the Open Banking directory's JWKS that signs software statements.\n\
             ssa_jkws = \"https://keystore.openbankingtest.org.uk/0015800001HQQrZAAX/0015800001HQQrZAAX.jwks\""
        );
        note(
            "[oauth.dcr] ssa_jkws",
            false,
            "not set in the WSO2 file: the UK sandbox directory's JWKS is written instead; set your directory's"
                .to_owned(),
        );
    }
    if let Some(skew) = section(&wso2, &["oauth"]).and_then(|o| o.get("timestamp_skew")) {
        let _ = writeln!(out, "clock_skew_seconds = {}", literal(skew));
        note("[oauth] timestamp_skew", true, "[oauth.dcr] clock_skew_seconds".to_owned());
    }
    for key in
        dcr.map(|d| d.keys().filter(|k| !carried_dcr.contains(&k.as_str())).collect::<Vec<_>>()).unwrap_or_default()
    {
        note(
            &format!("[oauth.dcr] {key}"),
            false,
            "no Keyfort equivalent (keyfort.example.toml lists the [oauth.dcr] keys Keyfort reads)".to_owned(),
        );
    }
    let _ = writeln!(out);

    // [oauth.token_lifetimes]
    let validation = section(&wso2, &["oauth", "token_validation"]);
    let lifetimes = [
        ("app_access_token_validity", "application_seconds"),
        ("user_access_token_validity", "user_seconds"),
        ("refresh_token_validity", "refresh_seconds"),
        ("id_token_validity", "id_token_seconds"),
    ];
    let mut lifetime_lines = String::new();
    for (wso2_key, keyfort_key) in lifetimes {
        if let Some(seconds) = integer_of(validation, wso2_key) {
            let _ = writeln!(lifetime_lines, "{keyfort_key} = {seconds}");
            note(
                &format!("[oauth.token_validation] {wso2_key}"),
                true,
                format!("[oauth.token_lifetimes] {keyfort_key} = {seconds}"),
            );
        }
    }
    if !lifetime_lines.is_empty() {
        let _ = writeln!(out, "[oauth.token_lifetimes]\n{lifetime_lines}");
    }

    // Everything else, section by section, with the reason.
    let handled_top = ["server", "keystore", "truststore", "database", "oauth", "transport"];
    if let Some(server) = server {
        for key in server.keys().filter(|k| !["hostname", "offset", "node_ip", "base_path"].contains(&k.as_str())) {
            note(&format!("[server] {key}"), false, "no Keyfort equivalent".to_owned());
        }
    }
    for (name, value) in &wso2 {
        if handled_top.contains(&name.as_str()) {
            continue;
        }
        let what = hint("", name).unwrap_or("no Keyfort equivalent").to_owned();
        let label = if value.is_table() || value.is_array() { format!("[{name}]") } else { name.clone() };
        note(&label, false, what);
    }
    if let Some(oauth) = section(&wso2, &["oauth"]) {
        for key in oauth.keys().filter(|k| !["dcr", "token_validation", "timestamp_skew"].contains(&k.as_str())) {
            note(&format!("[oauth] {key}"), false, "no Keyfort equivalent".to_owned());
        }
    }
    Ok(Imported { toml: out, notes })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn jdbc_urls_become_postgres_urls_without_password() {
        assert_eq!(
            postgres_url("jdbc:postgresql://db.bank:5432/wso2?sslmode=require", Some("wso2")),
            Some("postgres://wso2@db.bank:5432/wso2".to_owned())
        );
        assert_eq!(postgres_url("jdbc:h2:./repository/database/WSO2IDENTITY_DB", None), None);
    }

    #[test]
    fn hints_name_the_keyfort_equivalent_or_say_there_is_none() {
        assert!(hint("server", "hostname").unwrap().contains("public_url"));
        assert!(hint("", "super_admin").unwrap().contains("admin add-user"));
        assert!(hint("", "authentication").unwrap().contains("no Keyfort equivalent"));
        assert!(hint("oauth.dcr", "listen").is_none());
    }
}
