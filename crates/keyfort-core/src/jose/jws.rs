use serde_json::Value;

use super::alg::{self, SigningAlg, UnsupportedAlg};
use super::{b64url_decode, JwkSet, MAX_KID_CHARS};
use crate::claims::Claims;
use crate::text::quote;

/// Why a compact JWS was refused. Each message is written for the developer who made the JWS.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum JwsError {
    #[error("is not a compact JWS (expected three base64url parts separated by '.')")]
    NotCompact,
    #[error("has a {0} that is not unpadded base64url")]
    BadBase64(&'static str),
    #[error("has a header that is not a JSON object")]
    HeaderNotJson,
    #[error("has no \"alg\" in its header")]
    MissingAlg,
    #[error("{0}")]
    UnsupportedAlg(UnsupportedAlg),
    #[error("is signed with {alg}, which this server does not accept; use one of: {allowed}")]
    AlgNotAllowed { alg: SigningAlg, allowed: String },
    #[error("header lists critical extensions {0:?}, which this server does not understand")]
    CriticalExtension(Vec<String>),
    #[error("has no \"kid\" in its header; name the signing key with kid")]
    MissingKid,
    #[error("has a kid that is not a string of 1 to {MAX_KID_CHARS} characters ({0}); name the signing key with a shorter kid")]
    BadKid(String),
    #[error("has kid {}, which is not in the JWKS it is checked against; publish the key there, or fix the kid", quote(.0))]
    UnknownKid(String),
    #[error(
        "has kid {}, but that key ({kty}) cannot verify {alg}: the key type, curve or declared alg does not fit",
        quote(kid)
    )]
    KeyDoesNotFitAlg { kid: String, kty: &'static str, alg: SigningAlg },
    #[error("has no key in the JWKS that can verify {0}")]
    NoKeyForAlg(SigningAlg),
    #[error(
        "has a signature that does not verify with the key it names; sign it again with the private key of kid {}",
        quote(.0)
    )]
    BadSignature(String),
    #[error("has a payload that {0}")]
    PayloadNotJsonObject(String),
}

/// The JOSE header fields Keyfort looks at. `jku`, `x5u`, `jwk` and `x5c` are deliberately
/// not read: keys come from configured or allow-listed JWKS only, never from the token.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct JwsHeader {
    pub alg: SigningAlg,
    pub kid: Option<String>,
    pub typ: Option<String>,
}

/// A compact JWS split into its parts, not yet verified.
#[derive(Debug, Clone)]
pub struct CompactJws<'a> {
    header: JwsHeader,
    signing_input: &'a str,
    payload: Vec<u8>,
    signature: Vec<u8>,
}

impl<'a> CompactJws<'a> {
    /// Splits and decodes a compact JWS. Decoding the header first means an unsupported
    /// algorithm is refused before any key lookup or network fetch happens.
    pub fn parse(token: &'a str) -> Result<Self, JwsError> {
        let token = token.trim();
        let mut parts = token.split('.');
        let (Some(h), Some(p), Some(s), None) = (parts.next(), parts.next(), parts.next(), parts.next()) else {
            return Err(JwsError::NotCompact);
        };
        if h.is_empty() {
            return Err(JwsError::NotCompact);
        }
        let header_bytes = b64url_decode(h).ok_or(JwsError::BadBase64("header"))?;
        let header: Value = serde_json::from_slice(&header_bytes).map_err(|_| JwsError::HeaderNotJson)?;
        let header = header.as_object().ok_or(JwsError::HeaderNotJson)?;
        // The algorithm is judged first, so an unsigned "alg":"none" token is named as such.
        let alg = header.get("alg").and_then(Value::as_str).ok_or(JwsError::MissingAlg)?;
        let alg: SigningAlg = alg.parse().map_err(JwsError::UnsupportedAlg)?;
        if s.is_empty() {
            return Err(JwsError::NotCompact);
        }
        let payload = b64url_decode(p).ok_or(JwsError::BadBase64("payload"))?;
        let signature = b64url_decode(s).ok_or(JwsError::BadBase64("signature"))?;
        if let Some(crit) = header.get("crit") {
            let names = crit
                .as_array()
                .map(|a| a.iter().filter_map(|v| v.as_str().map(str::to_owned)).collect())
                .unwrap_or_default();
            return Err(JwsError::CriticalExtension(names));
        }
        // A kid is echoed in error messages and the audit trail. One that is too long is
        // refused, not truncated: a truncated kid could name another key.
        let kid = match header.get("kid") {
            None | Some(Value::Null) => None,
            Some(Value::String(k)) if !k.is_empty() && k.chars().count() <= MAX_KID_CHARS => Some(k.clone()),
            Some(Value::String(k)) if k.is_empty() => return Err(JwsError::BadKid("it is empty".into())),
            Some(Value::String(k)) => return Err(JwsError::BadKid(format!("it has {} characters", k.chars().count()))),
            Some(_) => return Err(JwsError::BadKid("it is not a string".into())),
        };
        let typ = header.get("typ").and_then(Value::as_str).map(str::to_owned);
        let signing_input = &token[..h.len() + 1 + p.len()];
        Ok(Self { header: JwsHeader { alg, kid, typ }, signing_input, payload, signature })
    }

    pub fn header(&self) -> &JwsHeader {
        &self.header
    }

    /// The payload as claims, before verification: only to learn where the keys are (the
    /// SSA inside a signed registration request) — never to make a decision.
    pub fn unverified_claims(&self) -> Result<Claims, JwsError> {
        Claims::from_json_object(&self.payload).map_err(JwsError::PayloadNotJsonObject)
    }

    /// Refuses an algorithm outside `allowed`; callers run this before fetching any keys.
    pub fn check_alg(&self, allowed: &[SigningAlg]) -> Result<(), JwsError> {
        if allowed.contains(&self.header.alg) {
            return Ok(());
        }
        Err(JwsError::AlgNotAllowed { alg: self.header.alg, allowed: alg::list(allowed) })
    }

    /// Checks the algorithm against `allowed`, selects the key by `kid` (required when
    /// `require_kid`), pins the algorithm to that key, and verifies the signature. Without a
    /// kid every key that fits the algorithm is tried, as RFC 7523 clients may omit it.
    pub fn verify(&self, keys: &JwkSet, allowed: &[SigningAlg], require_kid: bool) -> Result<Claims, JwsError> {
        let alg = self.header.alg;
        if !allowed.contains(&alg) {
            return Err(JwsError::AlgNotAllowed { alg, allowed: alg::list(allowed) });
        }
        match self.header.kid.as_deref() {
            Some(kid) => {
                verify_with_kid(keys, kid, alg, self.signing_input.as_bytes(), &self.signature)?;
                self.unverified_claims()
            }
            None if require_kid => Err(JwsError::MissingKid),
            None => {
                let mut fitting = keys.keys().iter().filter_map(|k| k.verifier_for(alg)).peekable();
                if fitting.peek().is_none() {
                    return Err(JwsError::NoKeyForAlg(alg));
                }
                if fitting.any(|key| key.verify_sig(self.signing_input.as_bytes(), &self.signature).is_ok()) {
                    return self.unverified_claims();
                }
                Err(JwsError::BadSignature("(none given)".into()))
            }
        }
    }
}

/// Verifies `signature` over `signing_input` with the key `kid` names in `keys`, pinned to
/// `alg`: the kid must be there, one of its keys must fit `alg` (type, curve, declared alg),
/// and the signature must verify with it. Callers check `alg` against their allow-list
/// first. Shared by compact and detached JWS.
pub fn verify_with_kid(
    keys: &JwkSet,
    kid: &str,
    alg: SigningAlg,
    signing_input: &[u8],
    signature: &[u8],
) -> Result<(), JwsError> {
    let mut named = keys.with_kid(kid).peekable();
    let Some(first) = named.peek() else {
        return Err(JwsError::UnknownKid(kid.to_owned()));
    };
    let kty = first.kty();
    let mut fitting = named.filter_map(|k| k.verifier_for(alg)).peekable();
    if fitting.peek().is_none() {
        return Err(JwsError::KeyDoesNotFitAlg { kid: kid.to_owned(), kty, alg });
    }
    if fitting.any(|key| key.verify_sig(signing_input, signature).is_ok()) {
        return Ok(());
    }
    Err(JwsError::BadSignature(kid.to_owned()))
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::jose::b64url_encode;

    fn token(header: Value) -> String {
        format!("{}.{}.{}", b64url_encode(header.to_string()), b64url_encode("{}"), b64url_encode([1u8, 2, 3]))
    }

    /// A kid over 128 characters was truncated to 128, so it could name another key.
    #[test]
    fn a_kid_over_128_characters_is_refused_not_truncated() {
        let at_limit = "k".repeat(MAX_KID_CHARS);
        let jws_text = token(serde_json::json!({"alg": "PS256", "kid": at_limit}));
        assert_eq!(CompactJws::parse(&jws_text).unwrap().header().kid.as_deref(), Some(at_limit.as_str()));
        let over = format!("{at_limit}x");
        let err = CompactJws::parse(&token(serde_json::json!({"alg": "PS256", "kid": over}))).unwrap_err();
        assert_eq!(err, JwsError::BadKid("it has 129 characters".into()));
        assert!(err.to_string().contains("1 to 128 characters"), "{err}");
        for bad in [serde_json::json!(""), serde_json::json!(7), serde_json::json!(["a"])] {
            assert!(matches!(
                CompactJws::parse(&token(serde_json::json!({"alg": "PS256", "kid": bad}))),
                Err(JwsError::BadKid(_))
            ));
        }
    }

    #[test]
    fn a_kid_is_quoted_safely_in_messages() {
        let message = JwsError::UnknownKid("a\nFORGED log line".into()).to_string();
        assert!(message.contains("kid \"a\\nFORGED log line\"") && !message.contains('\n'), "{message}");
    }
}
