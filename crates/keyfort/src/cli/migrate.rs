//! `keyfort migrate`: lists the database's migrations and applies the pending ones, so that
//! an operator can migrate before rolling out a new version (with `[storage]
//! migrate_on_start = false`, nodes then never change the schema themselves).

use std::fmt::Write;
use std::path::Path;

/// Applies the pending migrations (or, with `dry_run`, only lists them) and describes the
/// outcome, one line per migration.
pub fn run(config: &Path, dry_run: bool) -> anyhow::Result<String> {
    let config = super::load_config(config)?;
    let runtime = tokio::runtime::Runtime::new()?;
    let report = runtime.block_on(crate::storage::migrate(&config.storage, !dry_run))?;
    let mut out = format!("database {}\n", crate::config::redact_url(&config.storage.url));
    for m in &report.known {
        let state = match (m.applied, m.applied_now) {
            (true, true) => "applied now",
            (true, false) => "applied",
            (false, _) if dry_run => "pending (would be applied)",
            (false, _) => "pending",
        };
        let _ = writeln!(out, "{:04} {:<32} {state}", m.version, m.description);
    }
    for version in &report.newer {
        let _ = writeln!(out, "{version:04} {:<32} applied by a newer version of Keyfort", "(unknown to this version)");
    }
    let pending = report.pending().count();
    let applied_now = report.known.iter().filter(|m| m.applied_now).count();
    let _ = write!(
        out,
        "{}",
        match (dry_run, pending, applied_now) {
            (true, 0, _) => "up to date: nothing to apply".to_owned(),
            (true, n, _) => format!("dry run: {n} migration(s) would be applied"),
            (false, _, 0) => "up to date: nothing to apply".to_owned(),
            (false, _, n) => format!("applied {n} migration(s)"),
        }
    );
    Ok(out)
}
