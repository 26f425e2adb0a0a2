//! `keyfort import-wso2 deployment.toml`: writes a Keyfort configuration from a WSO2 Identity
//! Server `deployment.toml`, and says what it carried over and what it could not, and why.

use std::fmt::Write;
use std::path::Path;

use anyhow::Context;

use crate::config::wso2;

/// Converts `source` and writes the configuration to `out` (`-`: standard output, the notes
/// then go to standard error). An existing `out` is kept unless `force`. Returns the notes.
pub fn run(source: &Path, out: &Path, force: bool) -> anyhow::Result<String> {
    let text = std::fs::read_to_string(source).with_context(|| format!("reading {}", source.display()))?;
    let imported = wso2::import(&text, &source.display().to_string())?;
    let mut report = String::new();
    for (carried, title) in [(true, "Carried over:"), (false, "Not carried over:")] {
        let notes: Vec<_> = imported.notes.iter().filter(|n| n.carried == carried).collect();
        if notes.is_empty() {
            continue;
        }
        let _ = writeln!(report, "{title}");
        for note in notes {
            let _ = writeln!(report, "  {}: {}", note.wso2, note.what);
        }
    }
    if out == Path::new("-") {
        print!("{}", imported.toml);
        eprint!("{report}");
        return Ok(String::new());
    }
    if out.exists() && !force {
        anyhow::bail!("{} exists; choose another --out, or add --force to replace it", out.display());
    }
    std::fs::write(out, &imported.toml).with_context(|| format!("writing {}", out.display()))?;
    let _ = write!(
        report,
        "Wrote {out}. Convert the keystores as noted above, then: keyfort check-config --config {out}",
        out = out.display()
    );
    Ok(report)
}
