use std::fmt;
use std::str::FromStr;

use aws_lc_rs::signature::{self, VerificationAlgorithm};

/// The JWS algorithms Keyfort can verify. `none` and the HMAC family are deliberately absent:
/// a registration or client assertion must be signed with a private key, and an HMAC "signed"
/// with a public key would be forgeable by anyone holding that public key.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub enum SigningAlg {
    PS256,
    PS384,
    PS512,
    ES256,
    ES384,
    RS256,
}

/// Why an `alg` value was refused.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum UnsupportedAlg {
    #[error("alg \"none\" (an unsigned JWT) is never accepted")]
    None,
    #[error("alg \"{0}\" is an HMAC algorithm; only public-key signatures are accepted")]
    Hmac(String),
    #[error("alg \"{0}\" is not a supported JWS signature algorithm")]
    Unknown(String),
}

impl SigningAlg {
    pub const ALL: [SigningAlg; 6] = [
        SigningAlg::PS256,
        SigningAlg::PS384,
        SigningAlg::PS512,
        SigningAlg::ES256,
        SigningAlg::ES384,
        SigningAlg::RS256,
    ];

    pub fn as_str(self) -> &'static str {
        match self {
            SigningAlg::PS256 => "PS256",
            SigningAlg::PS384 => "PS384",
            SigningAlg::PS512 => "PS512",
            SigningAlg::ES256 => "ES256",
            SigningAlg::ES384 => "ES384",
            SigningAlg::RS256 => "RS256",
        }
    }

    pub fn is_rsa(self) -> bool {
        matches!(self, SigningAlg::PS256 | SigningAlg::PS384 | SigningAlg::PS512 | SigningAlg::RS256)
    }

    /// The JWK `crv` an EC algorithm needs, or `None` for RSA algorithms.
    pub fn ec_curve(self) -> Option<&'static str> {
        match self {
            SigningAlg::ES256 => Some("P-256"),
            SigningAlg::ES384 => Some("P-384"),
            _ => None,
        }
    }

    pub(crate) fn verification_algorithm(self) -> &'static dyn VerificationAlgorithm {
        match self {
            SigningAlg::PS256 => &signature::RSA_PSS_2048_8192_SHA256,
            SigningAlg::PS384 => &signature::RSA_PSS_2048_8192_SHA384,
            SigningAlg::PS512 => &signature::RSA_PSS_2048_8192_SHA512,
            SigningAlg::RS256 => &signature::RSA_PKCS1_2048_8192_SHA256,
            SigningAlg::ES256 => &signature::ECDSA_P256_SHA256_FIXED,
            SigningAlg::ES384 => &signature::ECDSA_P384_SHA384_FIXED,
        }
    }

    pub(crate) fn rsa_parameters(self) -> Option<&'static signature::RsaParameters> {
        match self {
            SigningAlg::PS256 => Some(&signature::RSA_PSS_2048_8192_SHA256),
            SigningAlg::PS384 => Some(&signature::RSA_PSS_2048_8192_SHA384),
            SigningAlg::PS512 => Some(&signature::RSA_PSS_2048_8192_SHA512),
            SigningAlg::RS256 => Some(&signature::RSA_PKCS1_2048_8192_SHA256),
            _ => None,
        }
    }
}

impl FromStr for SigningAlg {
    type Err = UnsupportedAlg;

    fn from_str(s: &str) -> Result<Self, Self::Err> {
        if let Some(alg) = SigningAlg::ALL.iter().find(|a| a.as_str() == s) {
            return Ok(*alg);
        }
        if s.eq_ignore_ascii_case("none") {
            return Err(UnsupportedAlg::None);
        }
        if s.starts_with("HS") {
            return Err(UnsupportedAlg::Hmac(s.chars().take(32).collect()));
        }
        Err(UnsupportedAlg::Unknown(s.chars().take(32).collect()))
    }
}

impl fmt::Display for SigningAlg {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.as_str())
    }
}

impl serde::Serialize for SigningAlg {
    fn serialize<S: serde::Serializer>(&self, s: S) -> Result<S::Ok, S::Error> {
        s.serialize_str(self.as_str())
    }
}

impl<'de> serde::Deserialize<'de> for SigningAlg {
    fn deserialize<D: serde::Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
        let s = String::deserialize(d)?;
        s.parse().map_err(serde::de::Error::custom)
    }
}

/// Formats a list of algorithms for an error message: `PS256, ES256`.
pub(crate) fn list(algs: &[SigningAlg]) -> String {
    algs.iter().map(|a| a.as_str()).collect::<Vec<_>>().join(", ")
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn none_and_hmac_are_refused_by_name() {
        assert_eq!("none".parse::<SigningAlg>(), Err(UnsupportedAlg::None));
        assert_eq!("NONE".parse::<SigningAlg>(), Err(UnsupportedAlg::None));
        assert!(matches!("HS256".parse::<SigningAlg>(), Err(UnsupportedAlg::Hmac(_))));
        assert!(matches!("EdDSA".parse::<SigningAlg>(), Err(UnsupportedAlg::Unknown(_))));
        assert_eq!("PS256".parse::<SigningAlg>(), Ok(SigningAlg::PS256));
    }
}
