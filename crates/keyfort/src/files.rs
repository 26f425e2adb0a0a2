//! Files and directories that hold secrets, created readable by their owner only: the data
//! directory, the database, the key-encryption key, the development TLS key, and every key
//! file the command line writes (sandbox keys, `registration.json`). Files and directories
//! that already exist are left as they are: an operator may have set their own permissions.

use std::io::Write;
use std::path::Path;

/// Creates `dir` and any missing parents, each new one with mode 0700.
pub fn create_private_dir_all(dir: &Path) -> std::io::Result<()> {
    if dir.as_os_str().is_empty() || dir.is_dir() {
        return Ok(());
    }
    let mut builder = std::fs::DirBuilder::new();
    builder.recursive(true);
    #[cfg(unix)]
    {
        use std::os::unix::fs::DirBuilderExt;
        builder.mode(0o700);
    }
    builder.create(dir)
}

fn private_options() -> std::fs::OpenOptions {
    let mut options = std::fs::OpenOptions::new();
    options.write(true);
    #[cfg(unix)]
    {
        use std::os::unix::fs::OpenOptionsExt;
        options.mode(0o600);
    }
    options
}

/// Writes `bytes` to `path` (replacing what was there), creating the file with mode 0600
/// and its directory with mode 0700. A file that exists keeps its mode.
pub fn write_private(path: &Path, bytes: &[u8]) -> std::io::Result<()> {
    if let Some(parent) = path.parent() {
        create_private_dir_all(parent)?;
    }
    private_options().create(true).truncate(true).open(path)?.write_all(bytes)
}

/// Creates `path` with `bytes` only if it does not exist yet (mode 0600, directory 0700);
/// returns whether this call created it. Two processes racing here create it once.
pub fn create_private_if_missing(path: &Path, bytes: &[u8]) -> std::io::Result<bool> {
    if let Some(parent) = path.parent() {
        create_private_dir_all(parent)?;
    }
    match private_options().create_new(true).open(path) {
        Ok(mut file) => {
            file.write_all(bytes)?;
            file.sync_all()?;
            Ok(true)
        }
        Err(e) if e.kind() == std::io::ErrorKind::AlreadyExists => Ok(false),
        Err(e) => Err(e),
    }
}

/// Whether group or others may read `path` (always false off Unix).
pub fn readable_by_others(path: &Path) -> bool {
    #[cfg(unix)]
    {
        use std::os::unix::fs::PermissionsExt;
        std::fs::metadata(path).is_ok_and(|m| m.permissions().mode() & 0o077 != 0)
    }
    #[cfg(not(unix))]
    {
        let _ = path;
        false
    }
}

#[cfg(all(test, unix))]
mod tests {
    use std::os::unix::fs::PermissionsExt;

    use super::*;

    fn mode(path: &Path) -> u32 {
        std::fs::metadata(path).unwrap().permissions().mode() & 0o777
    }

    #[test]
    fn new_directories_and_files_are_owner_only() {
        let root = tempfile::tempdir().unwrap();
        let file = root.path().join("a/b/secret.key");
        write_private(&file, b"k").unwrap();
        assert_eq!(mode(&file), 0o600);
        assert_eq!(mode(&root.path().join("a")), 0o700);
        assert_eq!(mode(&root.path().join("a/b")), 0o700);
        assert!(!readable_by_others(&file));
        let other = root.path().join("kek");
        assert!(create_private_if_missing(&other, b"1").unwrap());
        assert!(!create_private_if_missing(&other, b"2").unwrap(), "created once");
        assert_eq!(std::fs::read(&other).unwrap(), b"1");
        assert_eq!(mode(&other), 0o600);
    }
}
