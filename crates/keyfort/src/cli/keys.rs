//! `keyfort keys rotate`.

use std::path::Path;

/// Creates the next key of every algorithm the server signs with (access tokens and each
/// ID token algorithm); returns what was created, one line per key.
pub fn rotate(config: &Path, publish_ahead: Option<i64>) -> anyhow::Result<String> {
    let config = super::load_config(config)?;
    if config.token.signing_key_file.is_some() {
        anyhow::bail!("[oauth.token] signing_key_file is set: the signing key comes from that file, rotate it there");
    }
    let ahead = publish_ahead.unwrap_or(config.token.key_publish_ahead_seconds);
    if ahead < 0 {
        anyhow::bail!("--publish-ahead must not be negative");
    }
    let runtime = tokio::runtime::Runtime::new()?;
    runtime.block_on(async {
        let store = crate::storage::open(&config.storage_url).await?;
        let mut created = Vec::new();
        for alg in config.token.ring_algorithms() {
            let kid = crate::signing::rotate(store.as_ref(), alg, super::now(), ahead).await?;
            created.push(format!("new {alg} signing key {kid} published; it signs from its activation time"));
        }
        Ok(created.join("\n"))
    })
}
