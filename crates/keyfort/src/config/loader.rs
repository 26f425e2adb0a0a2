//! Reading a configuration table key by key, collecting every problem instead of stopping
//! at the first.
//!
//! The text is parsed into a [`toml::Table`] first (where environment overrides can later
//! be applied), then each section's reader takes the keys it knows, each deserialized into
//! its Rust type on its own. A value that does not fit is recorded as a problem and reading
//! goes on. When a section has been read, every key nobody took is reported as unknown:
//! a misspelt security setting must not be silently ignored.

use std::cell::RefCell;
use std::collections::HashMap;
use std::path::{Path, PathBuf};

use serde::de::DeserializeOwned;
use toml::{Table, Value};

use super::error::{ConfigError, Problem};

/// Parses configuration text. A syntax error names its line and column.
pub(super) fn parse(text: &str, origin: &str) -> Result<Table, ConfigError> {
    text.parse::<Table>().map_err(|e| {
        let at = e.span().map(|span| {
            let before = &text[..span.start.min(text.len())];
            let line = before.matches('\n').count() + 1;
            let column = before.rsplit('\n').next().map_or(0, |l| l.chars().count()) + 1;
            format!("line {line}, column {column}: ")
        });
        ConfigError::single(
            origin,
            None,
            format!("{}{} (this is not valid TOML)", at.unwrap_or_default(), e.message().trim_end()),
        )
    })
}

/// The problems found so far in one configuration file.
pub(super) struct Problems {
    file: String,
    found: RefCell<Vec<Problem>>,
    /// Keys (`[section] key`) whose value came from the environment, and from where: a
    /// problem with one names the variable, since the file does not hold that value.
    sources: HashMap<String, String>,
}

impl Problems {
    pub fn with_sources(file: &str, sources: HashMap<String, String>) -> Self {
        Self { file: file.to_owned(), found: RefCell::default(), sources }
    }

    pub fn add(&self, key: Option<String>, message: impl Into<String>) {
        let mut message = message.into();
        if let Some(source) = key.as_ref().and_then(|k| self.sources.get(k)) {
            if !message.contains(source.rsplit(' ').next().unwrap_or_default()) {
                message = format!("{message} ({source})");
            }
        }
        self.found.borrow_mut().push(Problem::new(self.file.clone(), key, message));
    }

    /// The configuration when no problem was found, else every problem. `value` is `None`
    /// only when a reader recorded a problem, so the last arm is a safety net, not a path.
    pub fn into_result<T>(self, value: Option<T>) -> Result<T, ConfigError> {
        let found = self.found.into_inner();
        match value {
            Some(value) if found.is_empty() => Ok(value),
            _ if !found.is_empty() => Err(ConfigError::new(found)),
            _ => Err(ConfigError::single(
                self.file,
                None,
                "the configuration could not be read completely, yet no problem was named (a Keyfort bug; please report it)",
            )),
        }
    }
}

/// Resolves the relative paths of a configuration file against its directory, so that the
/// server behaves the same from any working directory.
pub(super) struct Paths<'a> {
    base_dir: &'a Path,
}

impl<'a> Paths<'a> {
    pub fn new(base_dir: &'a Path) -> Self {
        Self { base_dir }
    }

    pub fn resolve(&self, path: PathBuf) -> PathBuf {
        if path.is_absolute() {
            path
        } else {
            self.base_dir.join(path)
        }
    }
}

/// One section of the file (`[server]`, `[oauth.dcr]`...), or the file's top level.
///
/// Dropping a section reports the keys that were not taken, so no reader can forget to.
pub(super) struct Section<'p> {
    problems: &'p Problems,
    /// Dotted path, e.g. `server.tls`; empty for the top level.
    path: String,
    table: Table,
    /// The keys the reader asked for, present or not: the candidates for a misspelling.
    known: Vec<&'static str>,
}

impl<'p> Section<'p> {
    pub fn root(problems: &'p Problems, table: Table) -> Self {
        Self { problems, path: String::new(), table, known: Vec::new() }
    }

    /// How a key of this section is named in messages: `[server] listen`.
    pub fn key_name(&self, key: &str) -> String {
        if self.path.is_empty() {
            key.to_owned()
        } else {
            format!("[{}] {key}", self.path)
        }
    }

    fn subsection_path(&self, name: &str) -> String {
        if self.path.is_empty() {
            name.to_owned()
        } else {
            format!("{}.{name}", self.path)
        }
    }

    /// Records a problem with `key` of this section.
    pub fn problem(&self, key: &str, message: impl Into<String>) {
        self.problems.add(Some(self.key_name(key)), message);
    }

    pub fn has(&self, key: &str) -> bool {
        self.table.contains_key(key)
    }

    /// Takes a sub-section (`[server.tls]` from `[server]`). An absent one reads as empty,
    /// so that its defaults apply.
    pub fn section(&mut self, name: &'static str) -> Section<'p> {
        self.known.push(name);
        let path = self.subsection_path(name);
        let table = match self.table.remove(name) {
            None => Table::new(),
            Some(Value::Table(table)) => table,
            Some(other) => {
                self.problems.add(
                    Some(format!("[{path}]")),
                    format!("must be a section (a [{path}] table), not a {}", other.type_str()),
                );
                Table::new()
            }
        };
        Section { problems: self.problems, path, table, known: Vec::new() }
    }

    fn remove(&mut self, key: &'static str) -> Option<Value> {
        self.known.push(key);
        self.table.remove(key)
    }

    /// Takes `key` as a `T`; `None` when it is absent or does not fit (then a problem is
    /// recorded, quoting serde's reason).
    pub fn take<T: DeserializeOwned>(&mut self, key: &'static str) -> Option<T> {
        let value = self.remove(key)?;
        match T::deserialize(value) {
            Ok(typed) => Some(typed),
            Err(e) => {
                self.problem(key, plain_reason(e.message()));
                None
            }
        }
    }

    /// Like [`Section::take`], for types whose serde errors do not say what is expected:
    /// the message quotes the value and describes a valid one (`expected`).
    pub fn take_described<T: DeserializeOwned>(&mut self, key: &'static str, expected: &str) -> Option<T> {
        let value = self.remove(key)?;
        let shown = show(&value);
        match T::deserialize(value) {
            Ok(typed) => Some(typed),
            Err(e) => {
                let reason = plain_reason(e.message());
                let message = if reason.starts_with("invalid type") {
                    format!("{shown} is not {expected}")
                } else {
                    format!("{shown} is not {expected} ({reason})")
                };
                self.problem(key, message);
                None
            }
        }
    }

    /// Like [`Section::take_described`] for a key that must be present; `purpose` says what
    /// the value is for, so the operator knows what to write.
    pub fn take_required<T: DeserializeOwned>(
        &mut self,
        key: &'static str,
        expected: &str,
        purpose: &str,
    ) -> Option<T> {
        if !self.has(key) {
            self.known.push(key);
            self.problem(key, format!("is required: {purpose}"));
            return None;
        }
        self.take_described(key, expected)
    }

    /// Takes a number that must lie in `range`, or `default` when absent. Out of range is a
    /// problem (and `default` is returned so that reading goes on).
    pub fn take_in_range<T>(&mut self, key: &'static str, default: T, range: std::ops::RangeInclusive<T>) -> T
    where
        T: DeserializeOwned + PartialOrd + std::fmt::Display + Copy,
    {
        match self.take::<T>(key) {
            None => default,
            Some(value) if range.contains(&value) => value,
            Some(value) => {
                self.problem(key, format!("{value} is not between {} and {}", range.start(), range.end()));
                default
            }
        }
    }

    /// Takes a key that holds one string or a list of strings (WSO2 writes either).
    pub fn take_strings(&mut self, key: &'static str) -> Option<Vec<String>> {
        let value = self.remove(key)?;
        let strings: Option<Vec<String>> = match &value {
            Value::String(one) => Some(vec![one.clone()]),
            Value::Array(items) => items.iter().map(|item| item.as_str().map(str::to_owned)).collect(),
            _ => None,
        };
        if strings.is_none() {
            self.problem(key, format!("{} is not a string or a list of strings", show(&value)));
        }
        strings
    }
}

impl Drop for Section<'_> {
    fn drop(&mut self) {
        for (key, value) in std::mem::take(&mut self.table) {
            let array_of_tables =
                value.as_array().is_some_and(|items| !items.is_empty() && items.iter().all(Value::is_table));
            let (name, message) = if array_of_tables {
                let message = unknown_entry_message("section", &self.path, &key, &self.known);
                (format!("[[{}]]", self.subsection_path(&key)), message)
            } else if value.is_table() {
                let message = unknown_entry_message("section", &self.path, &key, &self.known);
                (format!("[{}]", self.subsection_path(&key)), message)
            } else {
                (self.key_name(&key), unknown_entry_message("key", &self.path, &key, &self.known))
            };
            self.problems.add(Some(name), message);
        }
    }
}

/// What to say about a key (or section) `name` of the section `path` that no reader takes.
/// Every unknown entry goes through here: a WSO2 `deployment.toml` name gets its Keyfort
/// equivalent (or why there is none), anything else the closest known name.
fn unknown_entry_message(kind: &str, path: &str, name: &str, known: &[&'static str]) -> String {
    if let Some(hint) = super::wso2::hint(path, name) {
        return format!("unknown {kind}: {hint} (`keyfort import-wso2 deployment.toml` converts a whole WSO2 file)");
    }
    let closest = known
        .iter()
        .map(|candidate| (edit_distance(name, candidate), *candidate))
        .filter(|(distance, candidate)| *distance <= 2.max(candidate.len() / 4))
        .min();
    match closest {
        Some((_, candidate)) => format!("unknown {kind}: did you mean {candidate}?"),
        None => format!(
            "unknown {kind}: remove it or correct its name (keyfort.example.toml lists every {kind} with its meaning)"
        ),
    }
}

/// Levenshtein distance, to suggest the key an operator probably meant.
fn edit_distance(a: &str, b: &str) -> usize {
    let b: Vec<char> = b.chars().collect();
    let mut previous: Vec<usize> = (0..=b.len()).collect();
    for (i, ca) in a.chars().enumerate() {
        let mut current = vec![i + 1];
        for (j, cb) in b.iter().enumerate() {
            let substitution = previous[j] + usize::from(ca != *cb);
            current.push(substitution.min(previous[j + 1] + 1).min(current[j] + 1));
        }
        previous = current;
    }
    previous[b.len()]
}

/// serde's reason, with Rust type names put the way an operator writes numbers.
fn plain_reason(message: &str) -> String {
    let mut reason = message.trim_end().to_owned();
    for (rust, plain) in [
        ("expected usize", "expected a non-negative integer"),
        ("expected u64", "expected a non-negative integer"),
        ("expected u16", "expected a non-negative integer"),
        ("expected i64", "expected an integer"),
    ] {
        reason = reason.replace(rust, plain);
    }
    reason
}

/// A value as the operator wrote it, shortened for a one-line message.
fn show(value: &Value) -> String {
    let text = match value {
        Value::String(s) => format!("\"{s}\""),
        other => other.to_string(),
    };
    if text.chars().count() > 80 {
        format!("{}…", text.chars().take(80).collect::<String>())
    } else {
        text
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn misspellings_are_close() {
        assert_eq!(edit_distance("mandate_sas", "mandate_ssa"), 2);
        assert_eq!(edit_distance("", "abc"), 3);
        assert_eq!(edit_distance("listen", "listen"), 0);
        assert!(unknown_entry_message("key", "oauth.dcr", "mandate_sas", &["mandate_ssa", "audience"])
            .contains("mandate_ssa"));
        assert!(!unknown_entry_message("key", "", "colour", &["mandate_ssa"]).contains("did you mean"));
        let wso2 = unknown_entry_message("key", "server", "hostname", &["listen", "public_url"]);
        assert!(wso2.contains("[server] public_url") && wso2.contains("import-wso2"), "{wso2}");
    }

    #[test]
    fn syntax_errors_name_the_line() {
        let err = parse("[server]\nlisten = \n", "f.toml").unwrap_err().to_string();
        assert!(err.starts_with("error: f.toml: line 2, column"), "{err}");
    }
}
