use std::fmt;

use aws_lc_rs::signature::{ParsedPublicKey, RsaPublicKeyComponents};
use serde_json::Value;

use super::{alg::SigningAlg, b64url_decode, MAX_KID_CHARS};
use crate::text::quote;

/// The smallest RSA modulus accepted, as FAPI and the OB security profile require.
const MIN_RSA_BITS: usize = 2048;

/// Why a JWKS document could not be used at all.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum JwksError {
    #[error("is not a JWK Set: {0}")]
    NotAJwkSet(String),
    #[error("holds no public signature key Keyfort can use ({0})")]
    NoUsableKeys(String),
}

/// One public signature key, parsed once into ready-to-use verification keys, one for each
/// algorithm the key may be used with. Parsing here rather than per token keeps RSA and EC
/// key decoding off the verification path.
pub struct PublicJwk {
    kid: Option<String>,
    kty: &'static str,
    declared_alg: Option<SigningAlg>,
    verifiers: Vec<(SigningAlg, ParsedPublicKey)>,
}

impl fmt::Debug for PublicJwk {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("PublicJwk")
            .field("kid", &self.kid)
            .field("kty", &self.kty)
            .field("alg", &self.declared_alg)
            .finish()
    }
}

impl PublicJwk {
    pub fn kid(&self) -> Option<&str> {
        self.kid.as_deref()
    }

    pub fn kty(&self) -> &'static str {
        self.kty
    }

    /// The verification key for `alg`, if this key may be used with it: the key type must fit
    /// the algorithm, and a key that declares an `alg` is used with that one only.
    pub fn verifier_for(&self, alg: SigningAlg) -> Option<&ParsedPublicKey> {
        self.verifiers.iter().find(|(a, _)| *a == alg).map(|(_, key)| key)
    }

    /// Parses one JWK. `Ok(None)` means the key is valid but not for signature verification
    /// (an encryption or TLS key, a symmetric key, a curve Keyfort does not support).
    fn parse(value: &Value) -> Result<Option<Self>, String> {
        let obj = value.as_object().ok_or("a key is not a JSON object")?;
        let text = |name: &str| obj.get(name).and_then(Value::as_str);
        let kid = text("kid").map(str::to_owned);
        // The kid is quoted (bounded, escaped) wherever it is shown: a JWKS is a document of
        // the TPP's, and its text reaches error descriptions and the log.
        let label = kid.as_deref().map(|k| format!("key {}", quote(k))).unwrap_or_else(|| "a key without kid".into());
        if let Some(k) = &kid {
            let chars = k.chars().count();
            if chars == 0 || chars > MAX_KID_CHARS {
                return Err(format!("{label} has a kid of {chars} characters; a kid must have 1 to {MAX_KID_CHARS}"));
            }
        }

        if text("use").is_some_and(|u| u != "sig") {
            return Ok(None);
        }
        if let Some(ops) = obj.get("key_ops").and_then(Value::as_array) {
            if !ops.iter().any(|op| op.as_str() == Some("verify")) {
                return Ok(None);
            }
        }
        if obj.contains_key("d") {
            return Err(format!(
                "{label} contains private key material (\"d\"); a published JWKS must hold public keys only"
            ));
        }
        let declared_alg = match text("alg") {
            None => None,
            Some(a) => match a.parse::<SigningAlg>() {
                Ok(alg) => Some(alg),
                // A key bound to an algorithm we do not accept can never verify anything here.
                Err(_) => return Ok(None),
            },
        };
        let field = |name: &str| -> Result<Vec<u8>, String> {
            let raw = text(name).ok_or_else(|| format!("{label} lacks \"{name}\""))?;
            b64url_decode(raw).ok_or_else(|| format!("{label} has \"{name}\" that is not base64url"))
        };

        let (kty, candidates): (&'static str, Vec<SigningAlg>) = match text("kty") {
            Some("RSA") => ("RSA", SigningAlg::ALL.iter().copied().filter(|a| a.is_rsa()).collect()),
            Some("EC") => {
                let crv = text("crv").unwrap_or_default();
                let algs: Vec<SigningAlg> =
                    SigningAlg::ALL.iter().copied().filter(|a| a.ec_curve() == Some(crv)).collect();
                if algs.is_empty() {
                    return Ok(None);
                }
                ("EC", algs)
            }
            _ => return Ok(None),
        };
        let candidates: Vec<SigningAlg> = match declared_alg {
            Some(alg) if candidates.contains(&alg) => vec![alg],
            Some(alg) => return Err(format!("{label} has kty {kty} which cannot be used with its alg {alg}")),
            None => candidates,
        };

        let mut verifiers = Vec::with_capacity(candidates.len());
        if kty == "RSA" {
            let n = field("n")?;
            let e = field("e")?;
            let bits = significant_bits(&n);
            if bits < MIN_RSA_BITS {
                return Err(format!("{label} is a {bits}-bit RSA key; at least {MIN_RSA_BITS} bits are required"));
            }
            let components = RsaPublicKeyComponents { n: &n[..], e: &e[..] };
            for alg in candidates {
                let params = alg.rsa_parameters().expect("RSA algorithm");
                let key = components
                    .to_parsed_public_key(params)
                    .map_err(|_| format!("{label} is not a valid RSA public key"))?;
                verifiers.push((alg, key));
            }
        } else {
            let x = field("x")?;
            let y = field("y")?;
            let mut point = Vec::with_capacity(1 + x.len() + y.len());
            point.push(0x04);
            point.extend_from_slice(&x);
            point.extend_from_slice(&y);
            for alg in candidates {
                let key = ParsedPublicKey::new(alg.verification_algorithm(), &point)
                    .map_err(|_| format!("{label} is not a valid EC public key on its curve"))?;
                verifiers.push((alg, key));
            }
        }
        Ok(Some(Self { kid, kty, declared_alg, verifiers }))
    }
}

fn significant_bits(big_endian: &[u8]) -> usize {
    let trimmed: &[u8] = {
        let start = big_endian.iter().position(|b| *b != 0).unwrap_or(big_endian.len());
        &big_endian[start..]
    };
    match trimmed.first() {
        None => 0,
        Some(first) => (trimmed.len() - 1) * 8 + (8 - first.leading_zeros() as usize),
    }
}

/// A JWK Set reduced to the public signature keys Keyfort can use.
#[derive(Debug, Default)]
pub struct JwkSet {
    keys: Vec<PublicJwk>,
}

impl JwkSet {
    /// Parses a JWKS document (`{"keys": [...]}`). Keys that are not signature keys are left
    /// out; a signature key that is malformed makes the whole document an error, because a
    /// silently dropped key would later surface as a baffling "unknown kid".
    pub fn from_json(bytes: &[u8]) -> Result<Self, JwksError> {
        let doc: Value = serde_json::from_slice(bytes).map_err(|e| JwksError::NotAJwkSet(format!("not JSON ({e})")))?;
        let keys = doc
            .get("keys")
            .and_then(Value::as_array)
            .ok_or_else(|| JwksError::NotAJwkSet("no \"keys\" array".into()))?;
        let mut parsed = Vec::new();
        for key in keys {
            if let Some(jwk) = PublicJwk::parse(key).map_err(JwksError::NotAJwkSet)? {
                parsed.push(jwk);
            }
        }
        if parsed.is_empty() {
            return Err(JwksError::NoUsableKeys(format!(
                "{} key(s) listed, none an RSA or EC P-256/P-384 signature key",
                keys.len()
            )));
        }
        Ok(Self { keys: parsed })
    }

    pub fn keys(&self) -> &[PublicJwk] {
        &self.keys
    }

    pub fn has_kid(&self, kid: &str) -> bool {
        self.keys.iter().any(|k| k.kid() == Some(kid))
    }

    pub fn with_kid<'a>(&'a self, kid: &'a str) -> impl Iterator<Item = &'a PublicJwk> + 'a {
        self.keys.iter().filter(move |k| k.kid() == Some(kid))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn small_rsa_keys_and_private_material_are_refused() {
        let small = r#"{"keys":[{"kty":"RSA","kid":"k","n":"AQAB","e":"AQAB"}]}"#;
        assert!(JwkSet::from_json(small.as_bytes()).unwrap_err().to_string().contains("at least 2048 bits"));
        let private = r#"{"keys":[{"kty":"RSA","kid":"k","n":"AQAB","e":"AQAB","d":"AQAB"}]}"#;
        assert!(JwkSet::from_json(private.as_bytes()).unwrap_err().to_string().contains("private key material"));
    }

    #[test]
    fn non_signature_keys_are_left_out() {
        let doc = r#"{"keys":[{"kty":"oct","k":"c2VjcmV0"},{"kty":"RSA","use":"enc","n":"AQAB","e":"AQAB"}]}"#;
        assert!(matches!(JwkSet::from_json(doc.as_bytes()), Err(JwksError::NoUsableKeys(_))));
        assert!(matches!(JwkSet::from_json(b"[]"), Err(JwksError::NotAJwkSet(_))));
    }

    #[test]
    fn overlong_kids_are_refused_and_quoted_safely() {
        let kid = format!("{}\\nFORGED", "k".repeat(200));
        let long = format!(r#"{{"keys":[{{"kty":"RSA","kid":"{kid}","n":"AQAB","e":"AQAB"}}]}}"#);
        let message = JwkSet::from_json(long.as_bytes()).unwrap_err().to_string();
        assert!(message.contains("a kid of 207 characters"), "{message}");
        assert!(!message.contains('\n') && message.chars().count() < 400, "{message}");
        let newline = r#"{"keys":[{"kty":"RSA","kid":"a\nFORGED","n":"AQAB","e":"AQAB"}]}"#;
        let message = JwkSet::from_json(newline.as_bytes()).unwrap_err().to_string();
        assert!(message.contains(r#"key "a\nFORGED""#) && !message.contains('\n'), "{message}");
    }

    #[test]
    fn bit_length_ignores_leading_zeros() {
        assert_eq!(significant_bits(&[0, 0, 1]), 1);
        assert_eq!(significant_bits(&[0x80, 0]), 16);
        assert_eq!(significant_bits(&[]), 0);
    }
}
