//! ID tokens (OpenID Connect Core §2, §3.3.2.11): the claims Keyfort puts in them and the
//! left-half hashes that bind a code, an access token and `state` to the token.

use serde_json::{json, Value};

use crate::clock::UnixTime;
use crate::jose::{b64url_encode, SigningAlg};

/// The base64url left half of the hash of `value` with the hash function of `alg`
/// (`c_hash`, `at_hash`, `s_hash`).
pub fn half_hash(alg: SigningAlg, value: &str) -> String {
    use aws_lc_rs::digest;
    let algorithm = match alg {
        SigningAlg::PS384 | SigningAlg::ES384 => &digest::SHA384,
        SigningAlg::PS512 => &digest::SHA512,
        SigningAlg::PS256 | SigningAlg::ES256 | SigningAlg::RS256 => &digest::SHA256,
    };
    let hash = digest::digest(algorithm, value.as_bytes());
    let bytes = hash.as_ref();
    b64url_encode(&bytes[..bytes.len() / 2])
}

/// The claims of one ID token.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct IdTokenClaims {
    pub issuer: String,
    pub subject: String,
    pub audience: String,
    pub issued_at: UnixTime,
    pub expires_at: UnixTime,
    pub auth_time: UnixTime,
    pub nonce: String,
    pub acr: String,
    /// The consent the customer authorised (UK Open Banking).
    pub intent_id: String,
    pub c_hash: Option<String>,
    pub s_hash: Option<String>,
    pub at_hash: Option<String>,
}

impl IdTokenClaims {
    pub fn to_json(&self) -> Value {
        let mut claims = json!({
            "iss": self.issuer,
            "sub": self.subject,
            "aud": self.audience,
            "iat": self.issued_at,
            "exp": self.expires_at,
            "auth_time": self.auth_time,
            "nonce": self.nonce,
            "acr": self.acr,
            "openbanking_intent_id": self.intent_id,
        });
        for (name, hash) in [("c_hash", &self.c_hash), ("s_hash", &self.s_hash), ("at_hash", &self.at_hash)] {
            if let Some(hash) = hash {
                claims[name] = json!(hash);
            }
        }
        claims
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_openid_connect_example_at_hash() {
        // OpenID Connect Core, Appendix A.3: an RS256 ID token's at_hash for this token.
        assert_eq!(
            half_hash(SigningAlg::RS256, "jHkWEdUXMU1BwAsC4vtUsZwnNvTIxEl0z9K3vx5KF0Y"),
            "77QmUPtjPfzWtF2AnpK9RQ"
        );
    }
}
