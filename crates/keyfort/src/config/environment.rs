//! Configuration from the environment: every key can be set as `KEYFORT_` followed by its
//! section path and name, upper-cased and joined by `__` (`[storage] url` is
//! `KEYFORT_STORAGE__URL`, `[oauth.dcr] ssa_jkws` is `KEYFORT_OAUTH__DCR__SSA_JKWS`). The
//! value is read as a TOML value (`true`, `30`, `["a", "b"]`, `{ AISP = ["accounts"] }`);
//! text that is not valid TOML is taken as a string, so URLs and paths need no quotes. The
//! same name with `_FILE` appended names a file holding the value (a container secret), so
//! a database password need not sit in the environment either.
//!
//! Overrides are applied to the parsed file before any key is checked, so a value from the
//! environment is checked exactly like one from the file, and every problem about it names
//! the variable. The environment wins over the file: one file can then serve every node,
//! each node setting what differs (its listen address) in its environment.
//!
//! Variables without `__` after the prefix (`KEYFORT_ADMIN_PASSWORD`, `KEYFORT_TEST_*`) are
//! not configuration: every key lives in a section.

use std::collections::BTreeMap;
use std::collections::HashMap;

use toml::{Table, Value};

pub const PREFIX: &str = "KEYFORT_";

/// Keys whose own name ends in `_file`: `KEYFORT_SERVER__TLS__CERT_FILE` sets `cert_file`,
/// it does not read a key `cert` from a file. A test checks that every such key the
/// readers take is listed here.
pub(super) const KEYS_ENDING_IN_FILE: &[&str] =
    &["cert_file", "key_file", "client_ca_file", "ca_file", "signing_key_file", "logo_file", "key_encryption_key_file"];

/// What the environment changed, to name the variable in any problem about those keys.
#[derive(Debug, Default)]
pub(super) struct Overrides {
    /// `[section] key` (or `[section]` for a section the environment created) → where the
    /// value came from, phrased for a message.
    pub sources: HashMap<String, String>,
    /// Problems with the variables themselves: `(key name or None, message)`.
    pub problems: Vec<(Option<String>, String)>,
}

/// How a key (or section) is named in messages, as `loader::Section::key_name` does.
fn key_name(sections: &[String], key: &str) -> String {
    if sections.is_empty() {
        key.to_owned()
    } else {
        format!("[{}] {key}", sections.join("."))
    }
}

/// A value from the environment: TOML if it parses as one value, else the text itself.
pub(super) fn parse_value(raw: &str) -> Value {
    match format!("value = {raw}").parse::<Table>() {
        Ok(mut table) if table.len() == 1 => table.remove("value").unwrap_or_else(|| Value::String(raw.to_owned())),
        _ => Value::String(raw.to_owned()),
    }
}

/// One variable that names a key: where it points and how its value is had.
struct Setting {
    variable: String,
    sections: Vec<String>,
    key: String,
    from_file: bool,
    raw: String,
}

/// Where a variable points: the section path, the key, and whether the value is read from
/// the file the variable names.
type Target = (Vec<String>, String, bool);

/// Splits `KEYFORT_OAUTH__DCR__SSA_JKWS` into `(["oauth", "dcr"], "ssa_jkws", false)`;
/// `None` for a variable that is not configuration (no `__`).
fn parse_name(variable: &str) -> Option<Result<Target, String>> {
    let rest = variable.strip_prefix(PREFIX)?;
    if !rest.contains("__") {
        return None;
    }
    let mut segments: Vec<String> = rest.split("__").map(str::to_ascii_lowercase).collect();
    if segments.iter().any(String::is_empty) {
        return Some(Err(format!(
            "{variable}: an empty name between two \"__\"; write KEYFORT_SECTION__KEY, e.g. KEYFORT_STORAGE__URL"
        )));
    }
    let mut key = segments.pop().unwrap_or_default();
    let mut from_file = false;
    if let Some(stripped) = key.strip_suffix("_file") {
        if !KEYS_ENDING_IN_FILE.contains(&key.as_str()) && !stripped.is_empty() {
            key = stripped.to_owned();
            from_file = true;
        }
    }
    Some(Ok((segments, key, from_file)))
}

/// Whether `path` names a table (section) in `table`.
fn has_table(table: &Table, path: &[String]) -> bool {
    match path.split_first() {
        None => true,
        Some((first, rest)) => match table.get(first) {
            Some(Value::Table(inner)) => has_table(inner, rest),
            _ => false,
        },
    }
}

/// Sets `key` in the section `path` of `table`, creating sections as needed; `Err(i)` when
/// `path[i]` is a value, not a section.
fn place(table: &mut Table, path: &[String], key: String, value: Value) -> Result<(), usize> {
    let Some((first, rest)) = path.split_first() else {
        table.insert(key, value);
        return Ok(());
    };
    match table.entry(first.clone()).or_insert_with(|| Value::Table(Table::new())) {
        Value::Table(inner) => place(inner, rest, key, value).map_err(|i| i + 1),
        _ => Err(0),
    }
}

/// Applies the `KEYFORT_*` variables among `vars` to `table`.
pub(super) fn apply(table: &mut Table, vars: impl IntoIterator<Item = (String, String)>) -> Overrides {
    let mut overrides = Overrides::default();
    // Sorted, so that what is reported does not depend on the environment's order.
    let vars: BTreeMap<String, String> = vars.into_iter().filter(|(name, _)| name.starts_with(PREFIX)).collect();
    let mut settings: BTreeMap<String, Setting> = BTreeMap::new();
    for (variable, raw) in vars {
        let (sections, key, from_file) = match parse_name(&variable) {
            None => continue,
            Some(Err(message)) => {
                overrides.problems.push((None, message));
                continue;
            }
            Some(Ok(parsed)) => parsed,
        };
        let name = key_name(&sections, &key);
        if let Some(other) = settings.get(&name) {
            overrides
                .problems
                .push((Some(name.clone()), format!("both {} and {variable} set it; set only one", other.variable)));
            continue;
        }
        settings.insert(name, Setting { variable, sections, key, from_file, raw });
    }
    for (name, setting) in settings {
        let Setting { variable, sections, key, from_file, raw } = setting;
        let (value, source) = if from_file {
            match std::fs::read_to_string(&raw) {
                Ok(text) => {
                    // Secret files usually end with a newline that is not part of the value.
                    let text = text.strip_suffix('\n').map(|t| t.strip_suffix('\r').unwrap_or(t)).unwrap_or(&text);
                    (parse_value(text), format!("read from {raw}, named by {variable}"))
                }
                Err(e) => {
                    overrides.problems.push((Some(name), format!("{variable}: cannot read {raw}: {e}")));
                    continue;
                }
            }
        } else {
            (parse_value(&raw), format!("set by {variable}"))
        };
        for depth in 1..=sections.len() {
            if !has_table(table, &sections[..depth]) {
                let here = format!("[{}]", sections[..depth].join("."));
                overrides.sources.entry(here).or_insert_with(|| format!("set by {variable}"));
            }
        }
        if let Err(depth) = place(table, &sections, key, value) {
            let here = format!("[{}]", sections[..=depth].join("."));
            overrides
                .problems
                .push((Some(name), format!("{variable}: {here} is not a section in the configuration file")));
            continue;
        }
        overrides.sources.insert(name, source);
    }
    overrides
}

#[cfg(test)]
mod tests {
    use super::*;

    fn env(pairs: &[(&str, &str)]) -> Vec<(String, String)> {
        pairs.iter().map(|(k, v)| (k.to_string(), v.to_string())).collect()
    }

    #[test]
    fn names_map_to_section_paths_and_keys() {
        let mut table = Table::new();
        let o = apply(
            &mut table,
            env(&[
                ("KEYFORT_OAUTH__DCR__SSA_JKWS", "https://keystore.example/a.jwks"),
                ("KEYFORT_STORAGE__URL", "postgres://k@db/keyfort"),
                ("KEYFORT_SERVER__TLS__CERT_FILE", "/etc/keyfort/tls.pem"),
                ("KEYFORT_ADMIN_PASSWORD", "not configuration"),
                ("OTHER__THING", "ignored"),
            ]),
        );
        assert!(o.problems.is_empty(), "{:?}", o.problems);
        assert_eq!(table["oauth"]["dcr"]["ssa_jkws"].as_str(), Some("https://keystore.example/a.jwks"));
        assert_eq!(table["storage"]["url"].as_str(), Some("postgres://k@db/keyfort"));
        assert_eq!(table["server"]["tls"]["cert_file"].as_str(), Some("/etc/keyfort/tls.pem"));
        assert!(!table.contains_key("admin_password") && !table.contains_key("admin"));
        assert_eq!(o.sources["[storage] url"], "set by KEYFORT_STORAGE__URL");
    }

    #[test]
    fn values_are_toml_or_else_strings() {
        assert_eq!(parse_value("true"), Value::Boolean(true));
        assert_eq!(parse_value("30"), Value::Integer(30));
        assert_eq!(parse_value("\"30\""), Value::String("30".into()));
        assert_eq!(parse_value("[\"a\", \"b\"]").as_array().map(Vec::len), Some(2));
        assert_eq!(parse_value("{ AISP = [\"accounts\"] }")["AISP"][0].as_str(), Some("accounts"));
        assert_eq!(parse_value("127.0.0.1:9446"), Value::String("127.0.0.1:9446".into()));
        assert_eq!(parse_value("postgres://u:p@h/db"), Value::String("postgres://u:p@h/db".into()));
        // Text that would smuggle a second key is one string, not two keys.
        assert_eq!(parse_value("1\nother = 2"), Value::String("1\nother = 2".into()));
    }

    #[test]
    fn a_file_variable_reads_its_value_from_the_file() {
        let dir = tempfile::tempdir().unwrap();
        let secret = dir.path().join("db-url");
        std::fs::write(&secret, "postgres://k:s3cret@db/keyfort\n").unwrap();
        let mut table: Table = "[storage]\nurl = \"sqlite://x.db\"\n".parse().unwrap();
        let o = apply(&mut table, env(&[("KEYFORT_STORAGE__URL_FILE", secret.to_str().unwrap())]));
        assert!(o.problems.is_empty(), "{:?}", o.problems);
        assert_eq!(table["storage"]["url"].as_str(), Some("postgres://k:s3cret@db/keyfort"), "environment over file");
        assert!(o.sources["[storage] url"].contains("KEYFORT_STORAGE__URL_FILE"));

        let o = apply(&mut Table::new(), env(&[("KEYFORT_STORAGE__URL_FILE", "/nonexistent/db-url")]));
        assert_eq!(o.problems.len(), 1);
        assert!(
            o.problems[0].1.contains("KEYFORT_STORAGE__URL_FILE") && o.problems[0].1.contains("/nonexistent/db-url")
        );
    }

    #[test]
    fn conflicts_and_bad_names_are_problems_naming_the_variable() {
        let mut table: Table = "[server]\ntls = 5\n".parse().unwrap();
        let o = apply(
            &mut table,
            env(&[
                ("KEYFORT_STORAGE__URL", "sqlite://a.db"),
                ("KEYFORT_STORAGE__URL_FILE", "/run/secrets/url"),
                ("KEYFORT_SERVER__TLS__KEY_FILE", "/k.pem"),
                ("KEYFORT_SERVER____LISTEN", "x"),
            ]),
        );
        let text = format!("{:?}", o.problems);
        assert_eq!(o.problems.len(), 3, "{text}");
        assert!(text.contains("KEYFORT_STORAGE__URL and KEYFORT_STORAGE__URL_FILE"), "{text}");
        assert!(text.contains("KEYFORT_SERVER__TLS__KEY_FILE: [server.tls] is not a section"), "{text}");
        assert!(text.contains("KEYFORT_SERVER____LISTEN: an empty name"), "{text}");
    }
}
