use std::fmt;

use aws_lc_rs::encoding::AsDer;
use aws_lc_rs::rand::SystemRandom;
use aws_lc_rs::rsa::KeySize;
use aws_lc_rs::signature::{self, EcdsaKeyPair, KeyPair, RsaKeyPair};
use serde_json::{json, Value};

use super::{b64url_encode, SigningAlg};

enum Inner {
    Rsa(RsaKeyPair),
    Ec(EcdsaKeyPair),
}

/// A private signing key bound to one algorithm and kid, parsed once and reused for every
/// signature.
pub struct SigningKey {
    alg: SigningAlg,
    kid: String,
    inner: Inner,
}

impl fmt::Debug for SigningKey {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("SigningKey").field("alg", &self.alg).field("kid", &self.kid).finish_non_exhaustive()
    }
}

impl SigningKey {
    /// A new key: RSA 2048 for the RS/PS family, the algorithm's curve for ES.
    pub fn generate(alg: SigningAlg, kid: impl Into<String>) -> Result<Self, String> {
        let inner = match alg {
            SigningAlg::ES256 => Inner::Ec(
                EcdsaKeyPair::generate(&signature::ECDSA_P256_SHA256_FIXED_SIGNING)
                    .map_err(|_| "EC key generation failed")?,
            ),
            SigningAlg::ES384 => Inner::Ec(
                EcdsaKeyPair::generate(&signature::ECDSA_P384_SHA384_FIXED_SIGNING)
                    .map_err(|_| "EC key generation failed")?,
            ),
            _ => Inner::Rsa(RsaKeyPair::generate(KeySize::Rsa2048).map_err(|_| "RSA key generation failed")?),
        };
        Ok(Self { alg, kid: kid.into(), inner })
    }

    /// Loads a PKCS#8 DER private key for `alg`.
    pub fn from_pkcs8_der(alg: SigningAlg, kid: impl Into<String>, der: &[u8]) -> Result<Self, String> {
        let inner = match alg {
            SigningAlg::ES256 => Inner::Ec(
                EcdsaKeyPair::from_pkcs8(&signature::ECDSA_P256_SHA256_FIXED_SIGNING, der)
                    .map_err(|e| format!("not a P-256 PKCS#8 key: {e}"))?,
            ),
            SigningAlg::ES384 => Inner::Ec(
                EcdsaKeyPair::from_pkcs8(&signature::ECDSA_P384_SHA384_FIXED_SIGNING, der)
                    .map_err(|e| format!("not a P-384 PKCS#8 key: {e}"))?,
            ),
            _ => Inner::Rsa(RsaKeyPair::from_pkcs8(der).map_err(|e| format!("not an RSA PKCS#8 key: {e}"))?),
        };
        Ok(Self { alg, kid: kid.into(), inner })
    }

    pub fn to_pkcs8_der(&self) -> Vec<u8> {
        match &self.inner {
            Inner::Rsa(k) => k.as_der().map(|d| d.as_ref().to_vec()).unwrap_or_default(),
            Inner::Ec(k) => k.to_pkcs8v1().map(|d| d.as_ref().to_vec()).unwrap_or_default(),
        }
    }

    pub fn alg(&self) -> SigningAlg {
        self.alg
    }

    pub fn kid(&self) -> &str {
        &self.kid
    }

    /// The public half as a JWK with `kid`, `alg` and `use: sig`.
    pub fn public_jwk(&self) -> Value {
        match &self.inner {
            Inner::Rsa(k) => {
                let public = k.public_key();
                json!({
                    "kty": "RSA", "kid": self.kid, "alg": self.alg, "use": "sig",
                    "n": b64url_encode(public.modulus().big_endian_without_leading_zero()),
                    "e": b64url_encode(public.exponent().big_endian_without_leading_zero()),
                })
            }
            Inner::Ec(k) => {
                let point = k.public_key().as_ref();
                let half = (point.len() - 1) / 2;
                json!({
                    "kty": "EC", "kid": self.kid, "alg": self.alg, "use": "sig",
                    "crv": self.alg.ec_curve(),
                    "x": b64url_encode(&point[1..1 + half]),
                    "y": b64url_encode(&point[1 + half..]),
                })
            }
        }
    }

    /// Signs `claims` as a compact JWS with this key's alg and kid.
    pub fn sign_jwt(&self, claims: &Value, typ: &str) -> String {
        let header = json!({"alg": self.alg, "kid": self.kid, "typ": typ});
        let input = format!("{}.{}", b64url_encode(header.to_string()), b64url_encode(claims.to_string()));
        let signature = self.sign(input.as_bytes());
        format!("{input}.{}", b64url_encode(signature))
    }

    /// A detached JWS (RFC 7515 Appendix F) over `payload` with the given protected
    /// `header`, as sent as it is: `base64url(header)..base64url(signature)`, the signature
    /// computed over `base64url(header).base64url(payload)`. The header is used as given
    /// (it should name this key's alg and kid); OBIE message signing puts such a JWS in
    /// `x-jws-signature`.
    pub fn sign_detached(&self, header: &Value, payload: &[u8]) -> String {
        let protected = b64url_encode(header.to_string());
        let input = format!("{protected}.{}", b64url_encode(payload));
        format!("{protected}..{}", b64url_encode(self.sign(input.as_bytes())))
    }

    fn sign(&self, message: &[u8]) -> Vec<u8> {
        let rng = SystemRandom::new();
        match &self.inner {
            Inner::Rsa(k) => {
                let padding: &'static dyn signature::RsaEncoding = match self.alg {
                    SigningAlg::PS384 => &signature::RSA_PSS_SHA384,
                    SigningAlg::PS512 => &signature::RSA_PSS_SHA512,
                    SigningAlg::RS256 => &signature::RSA_PKCS1_SHA256,
                    _ => &signature::RSA_PSS_SHA256,
                };
                let mut sig = vec![0u8; k.public_modulus_len()];
                k.sign(padding, &rng, message, &mut sig).expect("RSA signing with a valid key");
                sig
            }
            Inner::Ec(k) => k.sign(&rng, message).expect("ECDSA signing with a valid key").as_ref().to_vec(),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::jose::{CompactJws, JwkSet, JwsError};

    fn jwks(keys: &[&SigningKey]) -> JwkSet {
        let doc = json!({"keys": keys.iter().map(|k| k.public_jwk()).collect::<Vec<_>>()});
        JwkSet::from_json(doc.to_string().as_bytes()).unwrap()
    }

    #[test]
    fn signatures_verify_only_with_the_named_key_and_alg() {
        let ps = SigningKey::generate(SigningAlg::PS256, "rsa1").unwrap();
        let es = SigningKey::generate(SigningAlg::ES256, "ec1").unwrap();
        let other = SigningKey::generate(SigningAlg::PS256, "rsa1").unwrap();
        let set = jwks(&[&ps, &es]);
        let allowed = [SigningAlg::PS256, SigningAlg::ES256];
        let claims = json!({"sub": "x"});

        for key in [&ps, &es] {
            let token = key.sign_jwt(&claims, "JWT");
            let verified = CompactJws::parse(&token).unwrap().verify(&set, &allowed, true).unwrap();
            assert_eq!(verified.string("sub").unwrap().as_deref(), Some("x"));
        }
        // Same kid, different private key: the signature must fail.
        let forged = other.sign_jwt(&claims, "JWT");
        assert!(matches!(
            CompactJws::parse(&forged).unwrap().verify(&set, &allowed, true),
            Err(JwsError::BadSignature(_))
        ));
        // An alg outside the allow-list is refused before any key is used.
        assert!(matches!(
            CompactJws::parse(&ps.sign_jwt(&claims, "JWT")).unwrap().verify(&set, &[SigningAlg::ES256], true),
            Err(JwsError::AlgNotAllowed { .. })
        ));
    }

    #[test]
    fn the_key_must_fit_the_alg() {
        // An EC key named by kid cannot verify a PS256 signature, whatever the header says.
        let ps = SigningKey::generate(SigningAlg::PS256, "shared").unwrap();
        let es = SigningKey::generate(SigningAlg::ES256, "shared").unwrap();
        let token = ps.sign_jwt(&json!({}), "JWT");
        let err = CompactJws::parse(&token).unwrap().verify(&jwks(&[&es]), &[SigningAlg::PS256], true).unwrap_err();
        assert!(matches!(err, JwsError::KeyDoesNotFitAlg { .. }), "{err}");
    }

    #[test]
    fn kid_rules() {
        let ps = SigningKey::generate(SigningAlg::PS256, "k1").unwrap();
        let set = jwks(&[&ps]);
        let unknown = SigningKey::from_pkcs8_der(SigningAlg::PS256, "k2", &ps.to_pkcs8_der()).unwrap();
        let token = unknown.sign_jwt(&json!({}), "JWT");
        assert!(matches!(
            CompactJws::parse(&token).unwrap().verify(&set, &[SigningAlg::PS256], true),
            Err(JwsError::UnknownKid(_))
        ));
    }

    #[test]
    fn unsigned_and_malformed_tokens_are_refused() {
        let none = format!("{}.{}.", b64url_encode(r#"{"alg":"none"}"#), b64url_encode("{}"));
        assert!(matches!(CompactJws::parse(&none), Err(JwsError::UnsupportedAlg(_))));
        let empty_sig = format!("{}.{}.", b64url_encode(r#"{"alg":"PS256"}"#), b64url_encode("{}"));
        assert!(matches!(CompactJws::parse(&empty_sig), Err(JwsError::NotCompact)));
        let none_sig = format!("{}.{}.c2ln", b64url_encode(r#"{"alg":"none"}"#), b64url_encode("{}"));
        assert!(matches!(CompactJws::parse(&none_sig), Err(JwsError::UnsupportedAlg(_))));
        let hs = format!("{}.{}.c2ln", b64url_encode(r#"{"alg":"HS256","kid":"k1"}"#), b64url_encode("{}"));
        assert!(matches!(CompactJws::parse(&hs), Err(JwsError::UnsupportedAlg(_))));
        assert!(matches!(CompactJws::parse("a.b"), Err(JwsError::NotCompact)));
        assert!(matches!(CompactJws::parse("!!.b.c"), Err(JwsError::BadBase64("header"))));
    }
}
