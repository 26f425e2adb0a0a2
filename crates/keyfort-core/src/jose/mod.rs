//! The parts of JOSE that Keyfort needs: an allow-listed set of signature algorithms, public
//! JSON Web Keys parsed once into verification keys, and compact JWS verification that pins
//! the algorithm to the key chosen by `kid`.

pub(crate) mod alg;
mod jwk;
mod jws;
mod sign;

pub use alg::{SigningAlg, UnsupportedAlg};
pub use jwk::{JwkSet, JwksError, PublicJwk};
pub use jws::{verify_with_kid, CompactJws, JwsError, JwsHeader};
pub use sign::SigningKey;

/// The longest `kid` accepted, in a JWS header or a JWK: longer ones are refused, never
/// truncated (a truncated kid could name another key).
pub const MAX_KID_CHARS: usize = 128;

use base64::engine::general_purpose::URL_SAFE_NO_PAD;
use base64::Engine;

pub fn b64url_encode(bytes: impl AsRef<[u8]>) -> String {
    URL_SAFE_NO_PAD.encode(bytes)
}

/// Decodes base64url as JWS requires: no padding. Padding and the standard alphabet are
/// refused rather than tolerated, so one token has one encoding.
pub fn b64url_decode(text: &str) -> Option<Vec<u8>> {
    URL_SAFE_NO_PAD.decode(text).ok()
}
