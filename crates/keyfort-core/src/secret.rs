//! Secrets Keyfort hands out (client secrets, registration access tokens) and how they are
//! kept: generated from the system CSPRNG, shown to the client once, stored only as a
//! SHA-256 digest, and compared in constant time.
//!
//! SHA-256 without a salt is sound here because every secret is 256 random bits: there is
//! no dictionary to precompute. Passwords chosen by people need a slow hash instead.

use std::fmt;

use aws_lc_rs::{constant_time, digest, rand};

use crate::jose::b64url_encode;

/// A freshly generated secret. Its `Debug` output is redacted so it cannot reach a log by
/// accident; [`IssuedSecret::expose`] is the one deliberate way to read it.
#[derive(Clone, PartialEq, Eq)]
pub struct IssuedSecret(String);

impl IssuedSecret {
    /// 32 random bytes, base64url: 43 characters.
    pub fn generate() -> Self {
        Self(random_b64url(32))
    }

    pub fn expose(&self) -> &str {
        &self.0
    }

    pub fn hash(&self) -> SecretHash {
        SecretHash::of(&self.0)
    }
}

impl fmt::Debug for IssuedSecret {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str("IssuedSecret(<redacted>)")
    }
}

/// The stored form of a secret: lowercase hex SHA-256.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct SecretHash(String);

impl SecretHash {
    pub fn of(secret: &str) -> Self {
        let d = digest::digest(&digest::SHA256, secret.as_bytes());
        Self(hex(d.as_ref()))
    }

    /// Wraps a digest read back from storage.
    pub fn from_stored(hex: String) -> Self {
        Self(hex)
    }

    pub fn as_str(&self) -> &str {
        &self.0
    }

    /// Whether `presented` is the secret this digest was made from, in time independent of
    /// where the two differ.
    pub fn matches(&self, presented: &str) -> bool {
        let candidate = Self::of(presented);
        constant_time::verify_slices_are_equal(candidate.0.as_bytes(), self.0.as_bytes()).is_ok()
    }
}

/// `bytes` random bytes from the system CSPRNG, base64url without padding.
pub fn random_b64url(bytes: usize) -> String {
    let mut buf = vec![0u8; bytes];
    rand::fill(&mut buf).expect("the system random number generator failed");
    b64url_encode(buf)
}

/// A new client identifier: 32 random letters and digits (about 190 bits; OBIE allows up to
/// 36 characters). Letters and digits only, so an identifier never starts with `-` (which a
/// command line would take for an option) nor needs escaping anywhere.
pub fn new_client_id() -> String {
    const ALPHABET: &[u8] = b"ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789";
    const LENGTH: usize = 32;
    let mut id = String::with_capacity(LENGTH);
    let mut buf = [0u8; 64];
    while id.len() < LENGTH {
        rand::fill(&mut buf).expect("the system random number generator failed");
        // Rejection sampling keeps every character equally likely: 248 = 4 × 62.
        id.extend(
            buf.iter().filter(|b| **b < 248).map(|b| ALPHABET[(*b % 62) as usize] as char).take(LENGTH - id.len()),
        );
    }
    id
}

pub fn sha256(data: &[u8]) -> [u8; 32] {
    let d = digest::digest(&digest::SHA256, data);
    let mut out = [0u8; 32];
    out.copy_from_slice(d.as_ref());
    out
}

/// How a secret that is looked up (a session cookie, a code, a refresh token, a CSRF
/// token) is stored: SHA-256, base64url. The secret is random and long, so a plain hash is
/// enough, and a database leak reveals nothing usable.
pub fn lookup_digest(secret: &str) -> String {
    crate::jose::b64url_encode(sha256(secret.as_bytes()))
}

/// A CSRF token for the forms of session `session`, separated by `purpose` so that the
/// token of one kind of page never works on another: only a holder of the session cookie
/// can compute it, and the server recomputes rather than stores it.
pub fn csrf_token(purpose: &str, session: &str) -> String {
    lookup_digest(&format!("keyfort-{purpose}-csrf:{session}"))
}

pub fn hex(bytes: &[u8]) -> String {
    use std::fmt::Write;
    bytes.iter().fold(String::with_capacity(bytes.len() * 2), |mut s, b| {
        let _ = write!(s, "{b:02x}");
        s
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_secret_matches_only_its_own_hash() {
        let secret = IssuedSecret::generate();
        let hash = secret.hash();
        assert!(hash.matches(secret.expose()));
        assert!(!hash.matches("something else"));
        assert_eq!(secret.expose().len(), 43);
        assert!(!format!("{secret:?}").contains(secret.expose()));
    }

    #[test]
    fn client_ids_are_letters_and_digits_and_short() {
        // Enough draws that a leading '-' or '_' of the old base64url ids would show up.
        for _ in 0..2000 {
            let id = new_client_id();
            assert_eq!(id.len(), 32);
            assert!(id.chars().all(|c| c.is_ascii_alphanumeric()), "{id}");
        }
        assert_ne!(new_client_id(), new_client_id());
    }
}
