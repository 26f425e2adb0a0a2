//! Configuration problems, collected so that one run names all of them.

use std::fmt;

/// One thing wrong with a configuration: the file, the key (`[section] key`) when the
/// problem belongs to one, and what is wrong and what to do about it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Problem {
    pub file: String,
    pub key: Option<String>,
    pub message: String,
}

impl Problem {
    pub fn new(file: impl Into<String>, key: Option<String>, message: impl Into<String>) -> Self {
        Self { file: file.into(), key, message: message.into() }
    }
}

impl fmt::Display for Problem {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match &self.key {
            Some(key) => write!(f, "error: {}: {key}: {}", self.file, self.message),
            None => write!(f, "error: {}: {}", self.file, self.message),
        }
    }
}

/// Every problem found in a configuration, already phrased for the operator. Printed one
/// per line, each line a complete `error: <file>: [section] key: what` message.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ConfigError {
    problems: Vec<Problem>,
}

impl ConfigError {
    /// A configuration error made of `problems`; an empty list still makes an error, since a
    /// caller that has none should not build one.
    pub fn new(problems: Vec<Problem>) -> Self {
        Self { problems }
    }

    pub fn single(file: impl Into<String>, key: Option<String>, message: impl Into<String>) -> Self {
        Self::new(vec![Problem::new(file, key, message)])
    }

    pub fn problems(&self) -> &[Problem] {
        &self.problems
    }
}

impl fmt::Display for ConfigError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        if self.problems.is_empty() {
            return f.write_str("error: the configuration is not valid");
        }
        for (i, problem) in self.problems.iter().enumerate() {
            if i > 0 {
                f.write_str("\n")?;
            }
            write!(f, "{problem}")?;
        }
        Ok(())
    }
}

impl std::error::Error for ConfigError {}
