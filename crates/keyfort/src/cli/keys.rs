//! `keyfort keys rotate`.

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
        let mut created = Vec::new();
        for alg in config.token.ring_algorithms() {
            created.push((alg, crate::signing::rotate(store.as_ref(), alg, super::now(), ahead).await?));
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
