//! `keyfort keys rotate` and `keyfort keys rewrap`.

use std::path::Path;

/// Adds the next key of every algorithm the server signs with (access tokens and each ID
/// token algorithm), and says when each is published and when it signs.
pub fn rotate(config: &Path, publish_ahead: Option<i64>) -> anyhow::Result<String> {
    let config = super::load_config(config)?;
    if config.token.signing_key_file.is_some() {
        anyhow::bail!("[oauth.token] signing_key_file is set: the signing key comes from that file, rotate it there");
    }
    let ahead = publish_ahead.unwrap_or(config.token.key_publish_ahead_seconds);
    if ahead < 0 {
        anyhow::bail!("--publish-ahead must not be negative");
    }
    // Every node re-reads the keys this often: a key that signed sooner would be unknown to
    // the nodes that have not re-read yet, and their verification would refuse its tokens.
    let reload = i64::try_from(config.token.key_reload_interval.as_secs()).unwrap_or(i64::MAX);
    if ahead < reload {
        anyhow::bail!(
            "--publish-ahead {ahead} is shorter than [oauth.token] key_reload_seconds ({reload}): running servers \
             re-read the keys every {reload} seconds, and each must publish the key before any signs with it"
        );
    }
    let runtime = tokio::runtime::Runtime::new()?;
    let created = runtime.block_on(async {
        let store = crate::storage::open(&config.storage).await?;
        let kek = crate::signing::kek::load_or_create(&config.storage)?;
        let mut created = Vec::new();
        for alg in config.token.ring_algorithms() {
            created.push((alg, crate::signing::rotate(store.as_ref(), alg, super::now(), ahead, &kek).await?));
        }
        anyhow::Ok(created)
    })?;
    Ok(created
        .iter()
        .map(|(alg, kid)| {
            format!(
                "new {alg} signing key {kid}: running servers publish it in /oauth2/jwks within {reload} seconds \
                 (their [oauth.token] key_reload_seconds), and it signs from {ahead} seconds from now"
            )
        })
        .collect::<Vec<_>>()
        .join("\n"))
}

/// Re-encrypts every signing key in the database under the key-encryption key in
/// `new_key_file` (created, owner-only, when it does not exist), from the configured one.
pub fn rewrap(config: &Path, new_key_file: &Path) -> anyhow::Result<String> {
    let config = super::load_config(config)?;
    let runtime = tokio::runtime::Runtime::new()?;
    runtime.block_on(async {
        let store = crate::storage::open(&config.storage).await?;
        let current = crate::signing::kek::load_or_create(&config.storage)?;
        let fresh = crate::signing::KeyEncryptionKey::generate();
        let created = crate::files::create_private_if_missing(new_key_file, fresh.to_text().as_bytes())
            .map_err(|e| anyhow::anyhow!("cannot create {}: {e}", new_key_file.display()))?;
        let text = std::fs::read_to_string(new_key_file)
            .map_err(|e| anyhow::anyhow!("{}: cannot be read ({e})", new_key_file.display()))?;
        let new = crate::signing::KeyEncryptionKey::from_text(&text)
            .map_err(|why| anyhow::anyhow!("{} {why}", new_key_file.display()))?;
        if new.id() == current.id() {
            anyhow::bail!("{} holds the key-encryption key already configured ({})", new_key_file.display(), current.id());
        }
        let report = crate::signing::rewrap(store.as_ref(), &current, &new).await?;
        let mut lines = Vec::new();
        if created {
            lines.push(format!("created the key-encryption key {} in {} (owner-only)", new.id(), new_key_file.display()));
        }
        lines.push(format!(
            "rewrapped {} signing key(s) from key-encryption key {} to {}{}",
            report.rewrapped.len(),
            current.id(),
            new.id(),
            if report.already.is_empty() { String::new() } else { format!(" ({} already were)", report.already.len()) }
        ));
        lines.push(format!(
            "next: point [storage] key_encryption_key_file (or KEYFORT_STORAGE__KEY_ENCRYPTION_KEY_FILE) at {} on every \
             node and restart them; running nodes keep the keys they have loaded, but cannot open a key rotated in \
             before they restart. Keep the old key-encryption key only as long as database backups taken before this \
             rewrap (they need it); backups taken from now on need the new one.",
            new_key_file.display()
        ));
        Ok(lines.join("\n"))
    })
}
