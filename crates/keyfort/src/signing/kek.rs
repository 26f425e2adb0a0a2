//! Signing keys at rest: an AES-256-GCM envelope under a key-encryption key (KEK) that is
//! not in the database, so that a database backup alone cannot mint tokens.
//!
//! The KEK is 32 random bytes, written as base64 on one line. By default Keyfort creates it
//! as `<data_dir>/key-encryption.key` (owner-only) on first start and says so; an operator
//! may give it as a file (`[storage] key_encryption_key_file`, or the environment's
//! `KEYFORT_STORAGE__KEY_ENCRYPTION_KEY_FILE`) or as a value
//! (`KEYFORT_STORAGE__KEY_ENCRYPTION_KEY`). Every node of a cluster needs the same KEK.
//!
//! A wrapped key is stored in place of the base64 PKCS#8 as
//! `kek1.<kek id>.<nonce>.<ciphertext and tag>` (base64url parts). The KEK id is the first 8
//! bytes of its SHA-256, in hex: it names which KEK wrapped a key, so that a wrong KEK is
//! reported as such rather than as a corrupt key. The additional authenticated data binds
//! the ciphertext to its row's `kid` and `alg`: a wrapped key copied onto another row does
//! not open.

use std::path::Path;

use aws_lc_rs::aead::{Aad, LessSafeKey, Nonce, UnboundKey, AES_256_GCM, NONCE_LEN};
use base64::Engine;
use keyfort_core::jose::{b64url_decode, b64url_encode};

use crate::config::{KeyEncryptionSource, StorageConfig};

const PREFIX: &str = "kek1";

/// A key-encryption key. Its `Debug` shows only its id.
#[derive(Clone)]
pub struct KeyEncryptionKey {
    id: String,
    bytes: [u8; 32],
}

impl std::fmt::Debug for KeyEncryptionKey {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("KeyEncryptionKey").field("id", &self.id).field("key", &"<redacted>").finish()
    }
}

/// Why a stored signing key could not be opened.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum UnwrapError {
    #[error(
        "it is encrypted with key-encryption key {wrapped_with}, but this process has key-encryption key {have}: give every \
         node and command the same key ([storage] key_encryption_key_file), or rewrap the keys with `keyfort keys rewrap`"
    )]
    OtherKey { wrapped_with: String, have: String },
    #[error("its encryption does not verify (the stored value was altered, or belongs to another kid)")]
    Tampered,
    #[error("it is neither base64 PKCS#8 nor a kek1 envelope")]
    Malformed,
}

/// What a stored private key column holds.
#[derive(Debug, PartialEq, Eq)]
pub enum StoredForm<'a> {
    /// Base64 PKCS#8, as versions before the envelope stored it.
    Plain(&'a str),
    /// Wrapped by the KEK with this id.
    Wrapped { kek_id: &'a str },
}

/// Which form `stored` is in.
pub fn stored_form(stored: &str) -> StoredForm<'_> {
    match stored.split('.').collect::<Vec<_>>().as_slice() {
        [PREFIX, kek_id, _, _] => StoredForm::Wrapped { kek_id },
        _ => StoredForm::Plain(stored),
    }
}

fn aad(kid: &str, alg: &str) -> Vec<u8> {
    format!("keyfort signing key\0{kid}\0{alg}").into_bytes()
}

impl KeyEncryptionKey {
    pub fn generate() -> Self {
        let mut bytes = [0u8; 32];
        aws_lc_rs::rand::fill(&mut bytes).expect("the system random number generator failed");
        Self::from_bytes(bytes)
    }

    fn from_bytes(bytes: [u8; 32]) -> Self {
        let digest = keyfort_core::secret::sha256(&bytes);
        Self { id: keyfort_core::secret::hex(&digest[..8]), bytes }
    }

    /// Reads a KEK written as base64 (standard or URL-safe, padded or not): 32 bytes.
    pub fn from_text(text: &str) -> Result<Self, String> {
        let text = text.trim();
        let decoded = base64::engine::general_purpose::STANDARD
            .decode(text)
            .ok()
            .or_else(|| base64::engine::general_purpose::URL_SAFE_NO_PAD.decode(text.trim_end_matches('=')).ok())
            .ok_or("is not base64 (a key-encryption key is 32 random bytes in base64, e.g. from `openssl rand -base64 32`)")?;
        let bytes: [u8; 32] = decoded.try_into().map_err(|bytes: Vec<u8>| {
            format!("holds {} bytes; a key-encryption key is 32 bytes (AES-256) in base64", bytes.len())
        })?;
        Ok(Self::from_bytes(bytes))
    }

    /// The KEK as its file holds it.
    pub fn to_text(&self) -> String {
        format!("{}\n", base64::engine::general_purpose::STANDARD.encode(self.bytes))
    }

    /// Names this KEK (not secret: 8 bytes of its SHA-256).
    pub fn id(&self) -> &str {
        &self.id
    }

    fn key(&self) -> LessSafeKey {
        LessSafeKey::new(UnboundKey::new(&AES_256_GCM, &self.bytes).expect("a 32-byte AES-256 key"))
    }

    /// Wraps the PKCS#8 DER of the signing key `kid` (algorithm `alg`) for storage.
    pub fn wrap(&self, kid: &str, alg: &str, pkcs8_der: &[u8]) -> String {
        let mut nonce = [0u8; NONCE_LEN];
        aws_lc_rs::rand::fill(&mut nonce).expect("the system random number generator failed");
        let mut sealed = pkcs8_der.to_vec();
        self.key()
            .seal_in_place_append_tag(Nonce::assume_unique_for_key(nonce), Aad::from(aad(kid, alg)), &mut sealed)
            .expect("AES-GCM sealing of a short key does not fail");
        format!("{PREFIX}.{}.{}.{}", self.id, b64url_encode(nonce), b64url_encode(&sealed))
    }

    /// The PKCS#8 DER of a stored key: unwrapped when it is an envelope, decoded when it is
    /// still plain base64 (stored by an earlier version, before it was encrypted).
    pub fn unwrap(&self, kid: &str, alg: &str, stored: &str) -> Result<Vec<u8>, UnwrapError> {
        match stored_form(stored) {
            StoredForm::Plain(text) => {
                base64::engine::general_purpose::STANDARD.decode(text).map_err(|_| UnwrapError::Malformed)
            }
            StoredForm::Wrapped { kek_id } if kek_id != self.id => {
                Err(UnwrapError::OtherKey { wrapped_with: kek_id.to_owned(), have: self.id.clone() })
            }
            StoredForm::Wrapped { .. } => {
                let parts: Vec<&str> = stored.split('.').collect();
                let nonce: [u8; NONCE_LEN] =
                    b64url_decode(parts[2]).and_then(|n| n.try_into().ok()).ok_or(UnwrapError::Malformed)?;
                let mut sealed = b64url_decode(parts[3]).ok_or(UnwrapError::Malformed)?;
                let opened = self
                    .key()
                    .open_in_place(Nonce::assume_unique_for_key(nonce), Aad::from(aad(kid, alg)), &mut sealed)
                    .map_err(|_| UnwrapError::Tampered)?;
                Ok(opened.to_vec())
            }
        }
    }
}

/// Reads a KEK file.
fn read_file(path: &Path) -> Result<KeyEncryptionKey, String> {
    let text = std::fs::read_to_string(path).map_err(|e| format!("{}: cannot be read ({e})", path.display()))?;
    KeyEncryptionKey::from_text(&text).map_err(|why| format!("{} {why}", path.display()))
}

/// Checks the configured KEK without creating anything (`check-config`, the preflight): a
/// configured file or value must hold a key; the default file must, if it exists already.
pub fn check(config: &StorageConfig) -> Result<(), String> {
    match &config.key_encryption {
        KeyEncryptionSource::Value(value) => {
            KeyEncryptionKey::from_text(&value.0).map(|_| ()).map_err(|why| format!("the value {why}"))
        }
        KeyEncryptionSource::File(path) => read_file(path).map(|_| ()),
        KeyEncryptionSource::DataDir(path) if path.exists() => read_file(path).map(|_| ()),
        KeyEncryptionSource::DataDir(_) => Ok(()),
    }
}

/// The KEK for `config`, creating the default file on first use (owner-only, logged).
pub fn load_or_create(config: &StorageConfig) -> anyhow::Result<KeyEncryptionKey> {
    let path = match &config.key_encryption {
        KeyEncryptionSource::Value(value) => {
            return KeyEncryptionKey::from_text(&value.0)
                .map_err(|why| anyhow::anyhow!("[storage] key_encryption_key: the value {why}"));
        }
        KeyEncryptionSource::File(path) => {
            return read_file(path).map_err(|why| anyhow::anyhow!("[storage] key_encryption_key_file {why}"));
        }
        KeyEncryptionSource::DataDir(path) => path,
    };
    let fresh = KeyEncryptionKey::generate();
    let created = crate::files::create_private_if_missing(path, fresh.to_text().as_bytes())
        .map_err(|e| anyhow::anyhow!("cannot create the key-encryption key {}: {e}", path.display()))?;
    let kek = read_file(path).map_err(|why| anyhow::anyhow!("the key-encryption key {why}"))?;
    if created {
        tracing::warn!(
            file = %path.display(),
            kek_id = %kek.id(),
            "created the key-encryption key that encrypts the signing keys in the database. Keep it out of database \
             backups (a backup together with this file can mint tokens), back it up separately, and give every node \
             the same key ([storage] key_encryption_key_file)"
        );
    }
    if crate::files::readable_by_others(path) {
        tracing::warn!(file = %path.display(), "the key-encryption key is readable by other users: chmod 600 it");
    }
    if config.is_postgres() {
        tracing::info!(
            file = %path.display(),
            "the key-encryption key is this node's own default file: every node on this PostgreSQL database must use \
             the same key ([storage] key_encryption_key_file)"
        );
    }
    Ok(kek)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_wrapped_key_opens_only_with_its_kek_kid_and_alg() {
        let kek = KeyEncryptionKey::generate();
        let der = b"pkcs8 der bytes".to_vec();
        let stored = kek.wrap("kid-1", "PS256", &der);
        assert!(stored.starts_with(&format!("kek1.{}.", kek.id())), "{stored}");
        assert!(!stored.contains(&b64url_encode(&der)), "the key is not stored in clear");
        assert_eq!(kek.unwrap("kid-1", "PS256", &stored), Ok(der.clone()));
        assert_eq!(kek.unwrap("kid-2", "PS256", &stored), Err(UnwrapError::Tampered), "another row");
        assert_eq!(kek.unwrap("kid-1", "ES256", &stored), Err(UnwrapError::Tampered));
        let other = KeyEncryptionKey::generate();
        assert!(matches!(other.unwrap("kid-1", "PS256", &stored), Err(UnwrapError::OtherKey { .. })));
        // A character well inside the ciphertext, so the base64 stays canonical and only the
        // authentication tag can notice.
        let mut altered = stored.clone().into_bytes();
        let inside = altered.len() - 8;
        altered[inside] = if altered[inside] == b'A' { b'B' } else { b'A' };
        let altered = String::from_utf8(altered).unwrap();
        assert_eq!(kek.unwrap("kid-1", "PS256", &altered), Err(UnwrapError::Tampered));
        // An earlier version's plain base64 still opens (to be wrapped on first start).
        let plain = base64::engine::general_purpose::STANDARD.encode(&der);
        assert_eq!(stored_form(&plain), StoredForm::Plain(&plain));
        assert_eq!(kek.unwrap("kid-1", "PS256", &plain), Ok(der));
    }

    #[test]
    fn a_kek_is_32_bytes_of_base64_and_never_printed() {
        let kek = KeyEncryptionKey::generate();
        let again = KeyEncryptionKey::from_text(&kek.to_text()).unwrap();
        assert_eq!(again.id(), kek.id());
        assert!(KeyEncryptionKey::from_text("c2hvcnQ=").unwrap_err().contains("5 bytes"));
        assert!(KeyEncryptionKey::from_text("not base64!").is_err());
        let printed = format!("{kek:?}");
        assert!(!printed.contains(kek.to_text().trim()) && printed.contains(kek.id()), "{printed}");
    }
}
