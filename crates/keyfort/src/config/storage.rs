//! `[storage]`: the database.

use std::path::Path;

use url::Url;

use super::loader::Section;

/// `[storage] url`, or the embedded SQLite database in `data_dir` (unknown when `[server]`
/// could not be read, and then `None`).
pub(super) fn read(mut s: Section<'_>, data_dir: Option<&Path>) -> Option<String> {
    match s.take::<String>("url") {
        Some(url) => {
            if !(url.starts_with("sqlite:") || url.starts_with("postgres://") || url.starts_with("postgresql://")) {
                s.problem("url", format!("\"{}\" must start with sqlite:// or postgres://", redact_url(&url)));
            }
            Some(url)
        }
        None => data_dir.map(|dir| format!("sqlite://{}", dir.join("keyfort.db").display())),
    }
}

/// Hides the password of a database URL in messages.
pub fn redact_url(url: &str) -> String {
    match Url::parse(url) {
        Ok(mut u) if u.password().is_some() => {
            let _ = u.set_password(Some("***"));
            u.to_string()
        }
        _ => url.to_owned(),
    }
}
