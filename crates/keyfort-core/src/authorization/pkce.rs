//! PKCE (RFC 7636) with the S256 method only: `plain` would hand the verifier to anyone who
//! sees the authorization request.

use crate::error::OAuthError;
use crate::jose::b64url_encode;

/// A `code_challenge` sent with `code_challenge_method=S256`.
#[derive(Debug, Clone, PartialEq, Eq, serde::Serialize, serde::Deserialize)]
pub struct CodeChallenge(String);

impl CodeChallenge {
    /// The challenge and method from a request object. RFC 7636 §4.2: the S256 challenge is
    /// 43 base64url characters.
    pub fn parse(challenge: &str, method: Option<&str>) -> Result<Self, OAuthError> {
        match method {
            Some("S256") => {}
            None => {
                return Err(OAuthError::invalid_request_object(
                    "code_challenge_method is required with code_challenge: use S256",
                ))
            }
            Some(other) => {
                return Err(OAuthError::invalid_request_object(format!(
                    "code_challenge_method \"{}\" is not supported: use S256",
                    other.chars().take(32).collect::<String>()
                )))
            }
        }
        let well_formed =
            challenge.len() == 43 && challenge.bytes().all(|b| b.is_ascii_alphanumeric() || b == b'-' || b == b'_');
        if !well_formed {
            return Err(OAuthError::invalid_request_object(
                "code_challenge must be the base64url SHA-256 of the code_verifier (43 characters)",
            ));
        }
        Ok(Self(challenge.to_owned()))
    }

    /// Whether `verifier` (RFC 7636 §4.1: 43 to 128 unreserved characters) hashes to this
    /// challenge; compared in constant time.
    pub fn is_met_by(&self, verifier: &str) -> bool {
        let well_formed = (43..=128).contains(&verifier.len())
            && verifier.bytes().all(|b| b.is_ascii_alphanumeric() || matches!(b, b'-' | b'.' | b'_' | b'~'));
        let computed = b64url_encode(crate::secret::sha256(verifier.as_bytes()));
        well_formed && aws_lc_rs::constant_time::verify_slices_are_equal(computed.as_bytes(), self.0.as_bytes()).is_ok()
    }

    pub fn as_str(&self) -> &str {
        &self.0
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_rfc_7636_example_verifies() {
        // RFC 7636 Appendix B.
        let challenge = CodeChallenge::parse("E9Melhoa2OwvFrEMTJguCHaoeK1t8URWbuGJSstw-cM", Some("S256")).unwrap();
        assert!(challenge.is_met_by("dBjftJeZ4CVP-mB92K27uhbUJU1p1r_wW1gFWFOEjXk"));
        assert!(!challenge.is_met_by("dBjftJeZ4CVP-mB92K27uhbUJU1p1r_wW1gFWFOEjXj"));
        assert!(!challenge.is_met_by("short"));
    }

    #[test]
    fn only_s256_is_accepted() {
        let c = "E9Melhoa2OwvFrEMTJguCHaoeK1t8URWbuGJSstw-cM";
        assert!(CodeChallenge::parse(c, Some("plain")).is_err());
        assert!(CodeChallenge::parse(c, None).is_err());
        assert!(CodeChallenge::parse("not-a-challenge", Some("S256")).is_err());
    }
}
