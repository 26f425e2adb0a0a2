//! OBIE message signing (Read/Write Data API Profile, v3.1.4 and later) of a consent
//! request: `x-jws-signature` holds a detached JWS (RFC 7515 Appendix F) over the exact
//! bytes of the body, whose JOSE header carries the OBIE claims.
//!
//! The header must hold only the parameters the profile specifies: `alg` (PS256, or ES256
//! when the client registered it), `kid` (a key of the client's software JWKS), optional
//! `typ` (`JOSE`) and `cty` (`json` or `application/json`), `http://openbanking.org.uk/iat`
//! (a number not in the future), `/iss` (`<org_id>/<software_id>` of the client), `/tan`
//! (the trust anchor this bank trusts), and `crit` naming exactly those three claims. `b64`
//! is refused: since v3.1.4 the payload is always base64url-encoded into the signing input.
//!
//! [`keyfort_core::jose::CompactJws`](crate::jose::CompactJws) refuses every `crit` header,
//! rightly for the tokens it reads; this is the one place where these critical claims are
//! understood, so it has its own parser, and reuses the JOSE key selection and algorithm
//! pinning for the signature itself.

use serde_json::{Map, Value};

use super::error::{ObieError, ObieErrorCode, ObieErrorItem};
use crate::clock::UnixTime;
use crate::jose::{b64url_decode, b64url_encode, verify_with_kid, JwkSet, JwsError, SigningAlg};

pub const CLAIM_IAT: &str = "http://openbanking.org.uk/iat";
pub const CLAIM_ISS: &str = "http://openbanking.org.uk/iss";
pub const CLAIM_TAN: &str = "http://openbanking.org.uk/tan";
/// What `crit` must list, in any order.
pub const CRITICAL_CLAIMS: [&str; 3] = [CLAIM_IAT, CLAIM_ISS, CLAIM_TAN];

/// The header parameters an OBIE request signature may carry.
const ALLOWED_PARAMETERS: [&str; 8] = ["alg", "kid", "typ", "cty", "crit", CLAIM_IAT, CLAIM_ISS, CLAIM_TAN];

/// Where an error about the header as a whole points.
const HEADER: &str = "x-jws-signature";

/// What the signature of one request must satisfy.
#[derive(Debug, Clone)]
pub struct SignatureRules<'a> {
    /// `<org_id>/<software_id>` of the calling client.
    pub expected_issuer: &'a str,
    /// The trust anchor's domain name (`openbanking.org.uk`).
    pub trust_anchor: &'a str,
    pub allowed_algs: &'a [SigningAlg],
    /// Tolerated clock difference for `iat`, in seconds.
    pub clock_skew: i64,
}

/// A request signature whose header passed every check; the signature itself is checked
/// by [`RequestSignature::verify`] once the keys of its `kid` are at hand.
#[derive(Debug, Clone)]
pub struct RequestSignature {
    alg: SigningAlg,
    kid: String,
    protected: String,
    signature: Vec<u8>,
}

fn malformed(message: impl Into<String>) -> ObieError {
    ObieError::bad_request(ObieErrorCode::SignatureMalformed, message, Some(HEADER))
}

fn missing(claim: &str, what: &str) -> ObieErrorItem {
    ObieErrorItem::new(
        ObieErrorCode::SignatureMissingClaim,
        format!("the x-jws-signature header has no \"{claim}\"; {what}"),
        Some(claim),
    )
}

fn invalid(claim: &str, message: impl Into<String>) -> ObieErrorItem {
    ObieErrorItem::new(ObieErrorCode::SignatureInvalidClaim, message, Some(claim))
}

impl RequestSignature {
    /// Parses the value of `x-jws-signature` and checks its JOSE header against `rules` at
    /// `now`. Every problem of the header is reported; nothing is fetched.
    pub fn parse(value: &str, rules: &SignatureRules<'_>, now: UnixTime) -> Result<Self, ObieError> {
        let value = value.trim();
        let parts: Vec<&str> = value.split('.').collect();
        let [protected, payload, signature] = parts[..] else {
            return Err(malformed(
                "x-jws-signature must be a detached JWS, \"<base64url header>..<base64url signature>\" (RFC 7515 Appendix F)",
            ));
        };
        if !payload.is_empty() {
            return Err(malformed(
                "x-jws-signature must be a detached JWS: leave the payload out (nothing between the two dots); the request body is the payload",
            ));
        }
        if protected.is_empty() || signature.is_empty() {
            return Err(malformed("x-jws-signature has an empty header or signature; send \"<header>..<signature>\""));
        }
        let header_bytes = b64url_decode(protected)
            .ok_or_else(|| malformed("the x-jws-signature header is not unpadded base64url"))?;
        let header: Map<String, Value> = match serde_json::from_slice(&header_bytes) {
            Ok(Value::Object(map)) => map,
            _ => return Err(malformed("the x-jws-signature header is not a JSON object")),
        };
        let signature = b64url_decode(signature)
            .ok_or_else(|| malformed("the x-jws-signature signature is not unpadded base64url"))?;

        let mut problems = Vec::new();
        let alg = check_alg(&header, rules, &mut problems);
        let kid = match header.get("kid") {
            None => {
                problems.push(missing("kid", "name the key of your software statement's JWKS that signed the request"));
                None
            }
            Some(Value::String(kid)) if !kid.is_empty() && kid.chars().count() <= 128 => Some(kid.clone()),
            Some(_) => {
                problems.push(invalid(
                    "kid",
                    "the x-jws-signature kid must be a non-empty string of at most 128 characters",
                ));
                None
            }
        };
        if let Some(typ) = header.get("typ") {
            if typ != "JOSE" {
                problems.push(invalid("typ", "the x-jws-signature typ, when present, must be \"JOSE\""));
            }
        }
        if let Some(cty) = header.get("cty") {
            if cty != "json" && cty != "application/json" {
                problems.push(invalid(
                    "cty",
                    "the x-jws-signature cty, when present, must be \"json\" or \"application/json\"",
                ));
            }
        }
        check_crit(&header, &mut problems);
        match header.get(CLAIM_IAT) {
            None => problems.push(missing(CLAIM_IAT, "set it to the time of signing, in seconds since 1970")),
            Some(Value::Number(n)) => match n.as_f64() {
                Some(iat) if iat <= (now + rules.clock_skew) as f64 => {}
                _ => problems.push(invalid(
                    CLAIM_IAT,
                    format!("the x-jws-signature {CLAIM_IAT} is in the future; sign with the current time (server time {now})"),
                )),
            },
            Some(_) => problems.push(invalid(CLAIM_IAT, format!("the x-jws-signature {CLAIM_IAT} must be a JSON number (seconds since 1970)"))),
        }
        match header.get(CLAIM_ISS) {
            None => problems.push(missing(
                CLAIM_ISS,
                &format!("set it to \"{}\" (your org_id/software_id)", rules.expected_issuer),
            )),
            Some(Value::String(iss)) if iss == rules.expected_issuer => {}
            Some(_) => problems.push(invalid(
                CLAIM_ISS,
                format!(
                    "the x-jws-signature {CLAIM_ISS} must be \"{}\": the org_id/software_id of the client that calls",
                    rules.expected_issuer
                ),
            )),
        }
        match header.get(CLAIM_TAN) {
            None => problems.push(missing(CLAIM_TAN, &format!("set it to \"{}\"", rules.trust_anchor))),
            Some(Value::String(tan)) if tan == rules.trust_anchor => {}
            Some(_) => problems.push(invalid(
                CLAIM_TAN,
                format!(
                    "the x-jws-signature {CLAIM_TAN} must be \"{}\", the trust anchor this bank uses",
                    rules.trust_anchor
                ),
            )),
        }
        if header.contains_key("b64") {
            problems.push(invalid(
                "b64",
                "the x-jws-signature must not carry b64 (OBIE message signing v3.1.4 and later): sign base64url(header) + \".\" + base64url(body)",
            ));
        }
        for name in header.keys().filter(|k| k.as_str() != "b64" && !ALLOWED_PARAMETERS.contains(&k.as_str())) {
            let shown: String = name.chars().take(64).collect();
            problems.push(invalid(
                &shown,
                format!(
                    "the x-jws-signature header may carry only {}; remove \"{shown}\"",
                    ALLOWED_PARAMETERS.join(", ")
                ),
            ));
        }
        match (alg, kid) {
            (Some(alg), Some(kid)) if problems.is_empty() => {
                Ok(Self { alg, kid, protected: protected.to_owned(), signature })
            }
            _ => Err(ObieError::from_items(problems)),
        }
    }

    pub fn kid(&self) -> &str {
        &self.kid
    }

    pub fn alg(&self) -> SigningAlg {
        self.alg
    }

    /// Verifies the signature over `body` (the exact bytes received) with the key `kid`
    /// names in `keys`, the client's software JWKS.
    pub fn verify(&self, body: &[u8], keys: &JwkSet) -> Result<(), ObieError> {
        let input = format!("{}.{}", self.protected, b64url_encode(body));
        verify_with_kid(keys, &self.kid, self.alg, input.as_bytes(), &self.signature).map_err(|e| match e {
            JwsError::UnknownKid(kid) => ObieError::bad_request(
                ObieErrorCode::SignatureInvalidClaim,
                format!("the x-jws-signature kid \"{kid}\" is not in your software statement's JWKS (jwks_uri); sign with a key published there"),
                Some("kid"),
            ),
            JwsError::KeyDoesNotFitAlg { kid, kty, alg } => ObieError::bad_request(
                ObieErrorCode::SignatureInvalidClaim,
                format!("the x-jws-signature kid \"{kid}\" names a {kty} key, which cannot verify {alg}"),
                Some("kid"),
            ),
            _ => ObieError::bad_request(
                ObieErrorCode::SignatureInvalid,
                format!(
                    "the x-jws-signature does not verify over the request body with key \"{}\"; sign the exact bytes you send, as base64url(header) + \".\" + base64url(body)",
                    self.kid
                ),
                Some(HEADER),
            ),
        })
    }
}

fn check_alg(
    header: &Map<String, Value>,
    rules: &SignatureRules<'_>,
    problems: &mut Vec<ObieErrorItem>,
) -> Option<SigningAlg> {
    let allowed = rules.allowed_algs.iter().map(|a| a.as_str()).collect::<Vec<_>>().join(" or ");
    let alg = match header.get("alg") {
        None => {
            problems.push(missing("alg", &format!("sign with {allowed}")));
            return None;
        }
        Some(Value::String(alg)) => alg,
        Some(_) => {
            problems.push(invalid("alg", format!("the x-jws-signature alg must be a string: {allowed}")));
            return None;
        }
    };
    match alg.parse::<SigningAlg>() {
        Ok(alg) if rules.allowed_algs.contains(&alg) => Some(alg),
        Ok(alg) => {
            problems.push(invalid("alg", format!("the x-jws-signature is signed with {alg}; sign with {allowed}")));
            None
        }
        Err(why) => {
            problems.push(invalid("alg", format!("{why}; sign the x-jws-signature with {allowed}")));
            None
        }
    }
}

fn check_crit(header: &Map<String, Value>, problems: &mut Vec<ObieErrorItem>) {
    let expected = format!("[\"{}\"]", CRITICAL_CLAIMS.join("\", \""));
    let Some(crit) = header.get("crit") else {
        problems.push(missing("crit", &format!("set it to {expected}")));
        return;
    };
    let names: Option<Vec<&str>> = crit.as_array().and_then(|a| a.iter().map(Value::as_str).collect());
    let exact = names
        .is_some_and(|names| names.len() == CRITICAL_CLAIMS.len() && CRITICAL_CLAIMS.iter().all(|c| names.contains(c)));
    if !exact {
        problems.push(invalid("crit", format!("the x-jws-signature crit must be exactly {expected}")));
    }
}

#[cfg(test)]
mod tests {
    use serde_json::json;

    use super::*;
    use crate::jose::SigningKey;

    const NOW: i64 = 1_800_000_000;
    const ISS: &str = "0015800001HQQrZAAX/oQ4KoaavpOuoE7rvQsZEOV";
    const BODY: &[u8] = br#"{"Data":{"Initiation":{}},"Risk":{}}"#;

    fn rules() -> SignatureRules<'static> {
        SignatureRules {
            expected_issuer: ISS,
            trust_anchor: "openbanking.org.uk",
            allowed_algs: &[SigningAlg::PS256],
            clock_skew: 30,
        }
    }

    fn header(key: &SigningKey, patch: Value) -> Value {
        let mut h = json!({
            "alg": key.alg(), "kid": key.kid(),
            CLAIM_IAT: NOW - 5, CLAIM_ISS: ISS, CLAIM_TAN: "openbanking.org.uk",
            "crit": CRITICAL_CLAIMS,
        });
        for (k, v) in patch.as_object().unwrap() {
            if v.is_null() {
                h.as_object_mut().unwrap().remove(k);
            } else {
                h[k] = v.clone();
            }
        }
        h
    }

    fn jwks(keys: &[&SigningKey]) -> JwkSet {
        JwkSet::from_json(
            json!({"keys": keys.iter().map(|k| k.public_jwk()).collect::<Vec<_>>()}).to_string().as_bytes(),
        )
        .unwrap()
    }

    #[track_caller]
    fn refused(value: &str, code: ObieErrorCode, path: &str) {
        let err = RequestSignature::parse(value, &rules(), NOW).expect_err("refused");
        assert!(
            err.errors.iter().any(|e| e.code == code && e.path.as_deref() == Some(path)),
            "{code} at {path} expected: {}",
            err.describe()
        );
    }

    #[test]
    fn a_valid_signature_verifies_over_the_exact_body() {
        let key = SigningKey::generate(SigningAlg::PS256, "k1").unwrap();
        let value = key.sign_detached(&header(&key, json!({})), BODY);
        let parsed = RequestSignature::parse(&value, &rules(), NOW).unwrap();
        assert_eq!(parsed.kid(), "k1");
        parsed.verify(BODY, &jwks(&[&key])).unwrap();
        // One byte more (a space) is another body.
        let err = parsed.verify(br#"{"Data":{"Initiation":{}},"Risk":{} }"#, &jwks(&[&key])).unwrap_err();
        assert_eq!(err.errors[0].code, ObieErrorCode::SignatureInvalid);
        // typ and cty as the profile allows them.
        let value = key.sign_detached(&header(&key, json!({"typ": "JOSE", "cty": "application/json"})), BODY);
        RequestSignature::parse(&value, &rules(), NOW).unwrap().verify(BODY, &jwks(&[&key])).unwrap();
    }

    #[test]
    fn the_key_must_be_the_clients() {
        let key = SigningKey::generate(SigningAlg::PS256, "k1").unwrap();
        let other = SigningKey::generate(SigningAlg::PS256, "k1").unwrap();
        let value = other.sign_detached(&header(&other, json!({})), BODY);
        let err = RequestSignature::parse(&value, &rules(), NOW).unwrap().verify(BODY, &jwks(&[&key])).unwrap_err();
        assert_eq!(err.errors[0].code, ObieErrorCode::SignatureInvalid, "same kid, another key");
        let stranger = SigningKey::generate(SigningAlg::PS256, "k9").unwrap();
        let value = stranger.sign_detached(&header(&stranger, json!({})), BODY);
        let err = RequestSignature::parse(&value, &rules(), NOW).unwrap().verify(BODY, &jwks(&[&key])).unwrap_err();
        assert_eq!(err.errors[0].code, ObieErrorCode::SignatureInvalidClaim);
        assert_eq!(err.errors[0].path.as_deref(), Some("kid"));
        // An EC key under the kid cannot verify PS256.
        let ec = SigningKey::generate(SigningAlg::ES256, "k1").unwrap();
        let value = key.sign_detached(&header(&key, json!({})), BODY);
        let err = RequestSignature::parse(&value, &rules(), NOW).unwrap().verify(BODY, &jwks(&[&ec])).unwrap_err();
        assert_eq!(err.errors[0].code, ObieErrorCode::SignatureInvalidClaim);
    }

    #[test]
    fn es256_only_when_allowed() {
        let key = SigningKey::generate(SigningAlg::ES256, "e1").unwrap();
        let value = key.sign_detached(&header(&key, json!({})), BODY);
        refused(&value, ObieErrorCode::SignatureInvalidClaim, "alg");
        let both = SignatureRules { allowed_algs: &[SigningAlg::PS256, SigningAlg::ES256], ..rules() };
        RequestSignature::parse(&value, &both, NOW).unwrap().verify(BODY, &jwks(&[&key])).unwrap();
    }

    #[test]
    fn every_header_rule() {
        use ObieErrorCode::*;
        let key = SigningKey::generate(SigningAlg::PS256, "k1").unwrap();
        let sign = |patch: Value| key.sign_detached(&header(&key, patch), BODY);
        refused(&sign(json!({"alg": null})), SignatureMissingClaim, "alg");
        refused(&sign(json!({"alg": "none"})), SignatureInvalidClaim, "alg");
        refused(&sign(json!({"alg": "HS256"})), SignatureInvalidClaim, "alg");
        refused(&sign(json!({"alg": "RS256"})), SignatureInvalidClaim, "alg");
        refused(&sign(json!({"kid": null})), SignatureMissingClaim, "kid");
        refused(&sign(json!({"kid": 7})), SignatureInvalidClaim, "kid");
        refused(&sign(json!({"crit": null})), SignatureMissingClaim, "crit");
        refused(&sign(json!({"crit": [CLAIM_IAT, CLAIM_ISS]})), SignatureInvalidClaim, "crit");
        refused(&sign(json!({"crit": [CLAIM_IAT, CLAIM_ISS, CLAIM_TAN, "b64"]})), SignatureInvalidClaim, "crit");
        refused(&sign(json!({"crit": "http://openbanking.org.uk/iat"})), SignatureInvalidClaim, "crit");
        refused(&sign(json!({CLAIM_IAT: null})), SignatureMissingClaim, CLAIM_IAT);
        refused(&sign(json!({CLAIM_IAT: "1800000000"})), SignatureInvalidClaim, CLAIM_IAT);
        refused(&sign(json!({CLAIM_IAT: NOW + 3600})), SignatureInvalidClaim, CLAIM_IAT);
        refused(&sign(json!({CLAIM_ISS: null})), SignatureMissingClaim, CLAIM_ISS);
        refused(&sign(json!({CLAIM_ISS: "0015800001HQQrZAAX/AnotherSoftware"})), SignatureInvalidClaim, CLAIM_ISS);
        refused(&sign(json!({CLAIM_TAN: null})), SignatureMissingClaim, CLAIM_TAN);
        refused(&sign(json!({CLAIM_TAN: "evil.example"})), SignatureInvalidClaim, CLAIM_TAN);
        refused(&sign(json!({"b64": false})), SignatureInvalidClaim, "b64");
        refused(&sign(json!({"b64": true})), SignatureInvalidClaim, "b64");
        refused(&sign(json!({"typ": "JWT"})), SignatureInvalidClaim, "typ");
        refused(&sign(json!({"cty": "text/plain"})), SignatureInvalidClaim, "cty");
        refused(&sign(json!({"jku": "https://evil.example/jwks"})), SignatureInvalidClaim, "jku");
        // iat a little ahead is within the clock skew.
        RequestSignature::parse(&sign(json!({CLAIM_IAT: NOW + 10})), &rules(), NOW).unwrap();
        // Several problems are all named.
        let err = RequestSignature::parse(&sign(json!({CLAIM_ISS: null, CLAIM_TAN: null})), &rules(), NOW).unwrap_err();
        assert_eq!(err.errors.len(), 2, "{}", err.describe());
    }

    #[test]
    fn malformed_values() {
        let key = SigningKey::generate(SigningAlg::PS256, "k1").unwrap();
        let good = key.sign_detached(&header(&key, json!({})), BODY);
        let (protected, signature) = good.split_once("..").unwrap();
        for bad in [
            "".to_owned(),
            "abc".to_owned(),
            format!("{protected}.{}.{signature}", b64url_encode(BODY)),
            format!("{protected}..{signature}.x"),
            format!("..{signature}"),
            format!("{protected}.."),
            format!("!!..{signature}"),
            format!("{}..{signature}", b64url_encode("[1]")),
            format!("{protected}..not*base64"),
        ] {
            refused(&bad, ObieErrorCode::SignatureMalformed, "x-jws-signature");
        }
    }
}
