//! The server's own signing keys, for access tokens.
//!
//! Keys live in the database (created at first start) or come from a configured PEM file.
//! Rotation is two-phase so that resource servers never meet an unknown `kid`: a new key is
//! published in the JWKS when it is created and signs only from its activation time, and
//! the key it replaces stays published until every token it signed has expired. Keys are
//! parsed once per change, never per token.
//!
//! Keys in the database are encrypted at rest under a key-encryption key kept out of it
//! ([`kek`]); keys stored in clear by an earlier version are encrypted on first start.

pub mod kek;

use std::sync::{Arc, RwLock};

use keyfort_core::clock::{Clock, UnixTime};
use keyfort_core::jose::{JwkSet, SigningAlg, SigningKey};
use serde_json::{json, Value};

use crate::storage::{Store, StoredSigningKey};

pub use kek::KeyEncryptionKey;

#[derive(Clone)]
struct LoadedKey {
    key: Arc<SigningKey>,
    activates_at: UnixTime,
}

#[derive(Default)]
struct Snapshot {
    kids: Vec<String>,
    keys: Vec<LoadedKey>,
}

pub struct KeyRing {
    store: Arc<dyn Store>,
    clock: Arc<dyn Clock>,
    /// The algorithm of access tokens; the ring also keeps an active key for every other
    /// algorithm it offers (ID tokens are signed with the client's registered one).
    access_token_alg: SigningAlg,
    /// How long a retired key stays published: the longest access token lifetime.
    retire_after: i64,
    /// Set when the key comes from a file: the database is then not consulted.
    fixed: bool,
    /// Opens the keys stored in the database (`None` with a fixed key).
    kek: Option<KeyEncryptionKey>,
    snapshot: RwLock<Arc<Snapshot>>,
    /// The published keys as verification keys, rebuilt only when the published set changes.
    verifiers: RwLock<Option<(Vec<String>, Arc<JwkSet>)>>,
}

fn new_kid(now: UnixTime) -> String {
    format!("{now}-{}", keyfort_core::secret::random_b64url(6))
}

/// Loads a PKCS#8 PEM private key. With `alg` the key must fit it; without, RSA keys are
/// taken as PS256 and P-256 keys as ES256.
pub fn load_pem_key(path: &std::path::Path, alg: Option<SigningAlg>, kid: &str) -> anyhow::Result<SigningKey> {
    let der = match crate::pem::read_private_key(path)? {
        rustls::pki_types::PrivateKeyDer::Pkcs8(der) => der.secret_pkcs8_der().to_vec(),
        _ => anyhow::bail!("{}: expected a PKCS#8 PRIVATE KEY", path.display()),
    };
    let attempt = |alg: SigningAlg| SigningKey::from_pkcs8_der(alg, kid, &der);
    match alg {
        Some(alg) => attempt(alg),
        None => attempt(SigningAlg::PS256).or_else(|_| attempt(SigningAlg::ES256)),
    }
    .map_err(|e| anyhow::anyhow!("{}: {e}", path.display()))
}

/// A new key, to be published from `now` and to sign from `now + publish_ahead`, wrapped
/// by `kek` for storage.
fn generate(
    alg: SigningAlg,
    now: UnixTime,
    publish_ahead: i64,
    kek: &KeyEncryptionKey,
) -> anyhow::Result<StoredSigningKey> {
    let kid = new_kid(now);
    let key = SigningKey::generate(alg, &kid).map_err(anyhow::Error::msg)?;
    Ok(StoredSigningKey {
        private_key_pkcs8_b64: kek.wrap(&kid, alg.as_str(), &key.to_pkcs8_der()),
        kid,
        alg: alg.as_str().to_owned(),
        created_at: now,
        activates_at: now + publish_ahead,
    })
}

/// Opens a stored key with `kek`.
fn open_stored(stored: &StoredSigningKey, kek: &KeyEncryptionKey) -> anyhow::Result<SigningKey> {
    let alg: SigningAlg = stored.alg.parse().map_err(|e| anyhow::anyhow!("signing key {}: {e}", stored.kid))?;
    let der = kek
        .unwrap(&stored.kid, &stored.alg, &stored.private_key_pkcs8_b64)
        .map_err(|e| anyhow::anyhow!("signing key {} cannot be opened: {e}", stored.kid))?;
    SigningKey::from_pkcs8_der(alg, &stored.kid, &der).map_err(|e| anyhow::anyhow!("signing key {}: {e}", stored.kid))
}

/// Encrypts, under `kek`, every signing key an earlier version stored in clear; returns how
/// many. Compare-and-set per key, so nodes upgrading together encrypt each key once.
pub async fn encrypt_plain_keys(store: &dyn Store, kek: &KeyEncryptionKey) -> anyhow::Result<usize> {
    let mut encrypted = 0;
    for stored in store.signing_keys().await? {
        if kek::stored_form(&stored.private_key_pkcs8_b64) != kek::StoredForm::Plain(&stored.private_key_pkcs8_b64) {
            continue;
        }
        let der = kek
            .unwrap(&stored.kid, &stored.alg, &stored.private_key_pkcs8_b64)
            .map_err(|e| anyhow::anyhow!("signing key {}: {e}", stored.kid))?;
        let wrapped = kek.wrap(&stored.kid, &stored.alg, &der);
        if store.replace_signing_key_material(&stored.kid, &stored.private_key_pkcs8_b64, &wrapped).await? {
            encrypted += 1;
        }
    }
    Ok(encrypted)
}

/// What `keyfort keys rewrap` did.
#[derive(Debug, Default, PartialEq, Eq)]
pub struct Rewrapped {
    /// Keys now under the new KEK.
    pub rewrapped: Vec<String>,
    /// Keys that were already.
    pub already: Vec<String>,
}

/// Re-encrypts every stored signing key from `from` (or from clear) to `to`. Keys already
/// under `to` are left as they are, so an interrupted rewrap can be run again.
pub async fn rewrap(store: &dyn Store, from: &KeyEncryptionKey, to: &KeyEncryptionKey) -> anyhow::Result<Rewrapped> {
    let mut report = Rewrapped::default();
    for stored in store.signing_keys().await? {
        if kek::stored_form(&stored.private_key_pkcs8_b64) == (kek::StoredForm::Wrapped { kek_id: to.id() }) {
            report.already.push(stored.kid);
            continue;
        }
        let der = from
            .unwrap(&stored.kid, &stored.alg, &stored.private_key_pkcs8_b64)
            .map_err(|e| anyhow::anyhow!("signing key {}: {e}", stored.kid))?;
        let wrapped = to.wrap(&stored.kid, &stored.alg, &der);
        if !store.replace_signing_key_material(&stored.kid, &stored.private_key_pkcs8_b64, &wrapped).await? {
            anyhow::bail!("signing key {} changed while it was rewrapped; run keys rewrap again", stored.kid);
        }
        report.rewrapped.push(stored.kid);
    }
    Ok(report)
}

/// Creates a signing key that is published now and signs from `now + publish_ahead`.
///
/// Running nodes learn of it when they next re-read the keys (`[oauth.token]
/// key_reload_seconds`), so `publish_ahead` must be at least that long for every node to
/// publish (and accept) the key before any node signs with it; `keyfort keys rotate`
/// refuses less.
pub async fn rotate(
    store: &dyn Store,
    alg: SigningAlg,
    now: UnixTime,
    publish_ahead: i64,
    kek: &KeyEncryptionKey,
) -> anyhow::Result<String> {
    let key = generate(alg, now, publish_ahead, kek)?;
    store.add_signing_key(&key).await?;
    Ok(key.kid)
}

impl KeyRing {
    /// Loads the keys, creating the first one of each algorithm in `algs` (the first is the
    /// access tokens') that the database has none of. Keys of the database are opened with
    /// `kek` (and any an earlier version stored in clear are encrypted with it first).
    pub async fn open(
        store: Arc<dyn Store>,
        clock: Arc<dyn Clock>,
        algs: &[SigningAlg],
        key_file: Option<(&std::path::Path, &str)>,
        retire_after: i64,
        kek: Option<KeyEncryptionKey>,
    ) -> anyhow::Result<Self> {
        let alg = *algs.first().ok_or_else(|| anyhow::anyhow!("the key ring needs at least one algorithm"))?;
        if let Some((path, kid)) = key_file {
            let key = load_pem_key(path, Some(alg), kid)
                .map_err(|e| anyhow::anyhow!("[oauth.token] signing_key_file {e}"))?;
            let snapshot =
                Snapshot { kids: vec![kid.to_owned()], keys: vec![LoadedKey { key: Arc::new(key), activates_at: 0 }] };
            return Ok(Self {
                store,
                clock,
                access_token_alg: alg,
                retire_after,
                fixed: true,
                kek: None,
                snapshot: RwLock::new(Arc::new(snapshot)),
                verifiers: RwLock::default(),
            });
        }
        let kek = kek.ok_or_else(|| anyhow::anyhow!("the signing keys in the database need a key-encryption key"))?;
        let encrypted = encrypt_plain_keys(store.as_ref(), &kek).await?;
        if encrypted > 0 {
            tracing::warn!(
                encrypted,
                kek_id = %kek.id(),
                "signing keys stored in clear by an earlier version are now encrypted with the key-encryption key; \
                 database backups taken before this still hold them in clear"
            );
        }
        let stored = store.signing_keys().await?;
        for wanted in algs {
            if !stored.iter().any(|k| k.alg == wanted.as_str()) {
                // Nodes starting together on an empty database race here: the store adds the
                // key only while there is none of its algorithm, atomically, so exactly one
                // first key of each exists and every node loads that one below.
                let key = generate(*wanted, clock.now(), 0, &kek)?;
                if store.create_first_signing_key(&key).await? {
                    tracing::info!(kid = %key.kid, alg = %wanted, "created the first signing key of its algorithm");
                } else {
                    tracing::info!(alg = %wanted, "another node created the first key of this algorithm at the same moment: this node uses that one");
                }
            }
        }
        let ring = Self {
            store,
            clock,
            access_token_alg: alg,
            retire_after,
            fixed: false,
            kek: Some(kek),
            snapshot: RwLock::default(),
            verifiers: RwLock::default(),
        };
        ring.reload().await?;
        Ok(ring)
    }

    /// Re-reads the keys when another process (a rotation, another node) changed them.
    pub async fn reload(&self) -> anyhow::Result<()> {
        if self.fixed {
            return Ok(());
        }
        let stored = self.store.signing_keys().await?;
        if stored.is_empty() {
            // Keep signing with what is loaded rather than with nothing.
            anyhow::bail!("the database holds no access token signing key");
        }
        let kids: Vec<String> = stored.iter().map(|k| k.kid.clone()).collect();
        if kids == self.current().kids {
            return Ok(());
        }
        let Some(kek) = &self.kek else { anyhow::bail!("the key ring has no key-encryption key") };
        let current = self.current();
        let mut keys = Vec::with_capacity(stored.len());
        for k in stored {
            // A key already loaded is not opened again: only new keys cost a decryption.
            if let Some(loaded) = current.keys.iter().find(|l| l.key.kid() == k.kid) {
                keys.push(loaded.clone());
                continue;
            }
            keys.push(LoadedKey { key: Arc::new(open_stored(&k, kek)?), activates_at: k.activates_at });
        }
        keys.sort_by_key(|k| k.activates_at);
        *self.snapshot.write().unwrap_or_else(|p| p.into_inner()) = Arc::new(Snapshot { kids, keys });
        Ok(())
    }

    fn current(&self) -> Arc<Snapshot> {
        self.snapshot.read().unwrap_or_else(|p| p.into_inner()).clone()
    }

    /// For each algorithm, the key signing now and for how long it has signed, in seconds
    /// (for the signing-key age metric: a key never rotated shows up growing); `None` for a
    /// key from a file, whose age Keyfort does not know.
    pub fn signing_key_ages(&self) -> Vec<(SigningAlg, String, Option<i64>)> {
        let now = self.clock.now();
        let snapshot = self.current();
        let mut algs: Vec<SigningAlg> = snapshot.keys.iter().map(|k| k.key.alg()).collect();
        algs.dedup();
        let mut ages = Vec::new();
        for alg in algs {
            let of_alg = snapshot.keys.iter().filter(|k| k.key.alg() == alg);
            if let Some(current) = of_alg.clone().rfind(|k| k.activates_at <= now).or(of_alg.clone().next()) {
                let age = (!self.fixed).then(|| (now - current.activates_at).max(0));
                ages.push((alg, current.key.kid().to_owned(), age));
            }
        }
        ages
    }

    /// The key that signs access tokens now.
    pub fn signing_key(&self) -> Arc<SigningKey> {
        self.signing_key_for(self.access_token_alg).expect("the key ring always holds an access token key")
    }

    /// The key of `alg` that signs now: the most recently activated one (or, before any has
    /// activated, the first). `None` when the ring offers no key of `alg`.
    pub fn signing_key_for(&self, alg: SigningAlg) -> Option<Arc<SigningKey>> {
        let now = self.clock.now();
        let snapshot = self.current();
        let mut of_alg = snapshot.keys.iter().filter(|k| k.key.alg() == alg);
        let first = of_alg.clone().next();
        of_alg.rfind(|k| k.activates_at <= now).or(first).map(|k| k.key.clone())
    }

    /// The keys to publish: every key not yet retired, including keys that do not sign yet
    /// (publishing early is harmless, and robust to clock differences between nodes). A key
    /// retires `retire_after` seconds after its successor of the same algorithm started
    /// signing.
    fn published(&self) -> Vec<Arc<SigningKey>> {
        let now = self.clock.now();
        let snapshot = self.current();
        snapshot
            .keys
            .iter()
            .enumerate()
            .filter(|(i, key)| {
                let alg = key.key.alg();
                match snapshot.keys[i + 1..].iter().find(|later| later.key.alg() == alg) {
                    Some(successor) => now < successor.activates_at + self.retire_after,
                    None => true,
                }
            })
            .map(|(_, k)| k.key.clone())
            .collect()
    }

    /// The public JWKS (`/oauth2/jwks`).
    pub fn jwks(&self) -> Value {
        json!({ "keys": self.published().iter().map(|k| k.public_jwk()).collect::<Vec<_>>() })
    }

    /// The published keys as verification keys, for introspection and management.
    pub fn verification_keys(&self) -> Arc<JwkSet> {
        let published = self.published();
        let kids: Vec<String> = published.iter().map(|k| k.kid().to_owned()).collect();
        if let Some((cached_kids, set)) = self.verifiers.read().unwrap_or_else(|p| p.into_inner()).as_ref() {
            if *cached_kids == kids {
                return set.clone();
            }
        }
        let doc = json!({ "keys": published.iter().map(|k| k.public_jwk()).collect::<Vec<_>>() });
        let set = Arc::new(JwkSet::from_json(doc.to_string().as_bytes()).unwrap_or_default());
        *self.verifiers.write().unwrap_or_else(|p| p.into_inner()) = Some((kids, set.clone()));
        set
    }
}
