//! Typed access to the claims of a JSON object, with errors that name the claim.
//!
//! A TPP developer who sends `"redirect_uris": "https://..."` instead of an array should be
//! told exactly that, not "invalid type at line 1 column 212"; hence this small reader instead
//! of a derived deserializer.

use serde_json::{Map, Value};

use crate::clock::UnixTime;

/// Longest string accepted in any claim; no legitimate metadata value comes near it.
pub const MAX_CLAIM_CHARS: usize = 2048;
/// Most entries accepted in any array claim.
pub const MAX_ARRAY_ENTRIES: usize = 64;

/// Why a claim could not be read.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("claim `{claim}` {problem}")]
pub struct ClaimError {
    pub claim: String,
    pub problem: String,
}

impl ClaimError {
    fn new(claim: &str, problem: impl Into<String>) -> Self {
        Self { claim: claim.to_owned(), problem: problem.into() }
    }
}

/// A JSON object of claims, from a JWT payload or a JSON request body.
#[derive(Debug, Clone, Default, PartialEq)]
pub struct Claims(Map<String, Value>);

impl Claims {
    /// Parses bytes that must hold one JSON object.
    pub fn from_json_object(bytes: &[u8]) -> Result<Self, String> {
        let value: Value = serde_json::from_slice(bytes).map_err(|e| format!("is not valid JSON ({e})"))?;
        match value {
            Value::Object(map) => Ok(Self(map)),
            other => Err(format!("is JSON but not an object (found {})", json_kind(&other))),
        }
    }

    pub fn from_map(map: Map<String, Value>) -> Self {
        Self(map)
    }

    pub fn into_map(self) -> Map<String, Value> {
        self.0
    }

    pub fn contains(&self, claim: &str) -> bool {
        self.0.get(claim).is_some_and(|v| !v.is_null())
    }

    /// Reads an optional string claim; `null` counts as absent.
    pub fn string(&self, claim: &str) -> Result<Option<String>, ClaimError> {
        match self.0.get(claim) {
            None | Some(Value::Null) => Ok(None),
            Some(Value::String(s)) => check_len(claim, s).map(|()| Some(s.clone())),
            Some(other) => Err(ClaimError::new(claim, format!("must be a string, found {}", json_kind(other)))),
        }
    }

    pub fn required_string(&self, claim: &str) -> Result<String, ClaimError> {
        let value = self.string(claim)?.ok_or_else(|| ClaimError::new(claim, "is required but missing"))?;
        if value.trim().is_empty() {
            return Err(ClaimError::new(claim, "must not be empty"));
        }
        Ok(value)
    }

    /// Reads a string without the length cap, for claims that carry a whole JWT.
    pub fn long_string(&self, claim: &str, max_chars: usize) -> Result<Option<String>, ClaimError> {
        match self.0.get(claim) {
            None | Some(Value::Null) => Ok(None),
            Some(Value::String(s)) if s.len() <= max_chars => Ok(Some(s.clone())),
            Some(Value::String(_)) => {
                Err(ClaimError::new(claim, format!("is longer than the {max_chars} characters accepted")))
            }
            Some(other) => Err(ClaimError::new(claim, format!("must be a string, found {}", json_kind(other)))),
        }
    }

    /// Reads an optional array of strings.
    pub fn string_list(&self, claim: &str) -> Result<Option<Vec<String>>, ClaimError> {
        match self.0.get(claim) {
            None | Some(Value::Null) => Ok(None),
            Some(Value::Array(items)) => {
                if items.len() > MAX_ARRAY_ENTRIES {
                    return Err(ClaimError::new(
                        claim,
                        format!("has {} entries; at most {MAX_ARRAY_ENTRIES} are accepted", items.len()),
                    ));
                }
                items
                    .iter()
                    .map(|item| match item {
                        Value::String(s) => check_len(claim, s).map(|()| s.clone()),
                        other => Err(ClaimError::new(
                            claim,
                            format!("must be an array of strings, but holds {}", json_kind(other)),
                        )),
                    })
                    .collect::<Result<Vec<_>, _>>()
                    .map(Some)
            }
            Some(other) => {
                Err(ClaimError::new(claim, format!("must be an array of strings, found {}", json_kind(other))))
            }
        }
    }

    /// Reads a claim that JWTs allow as either one string or an array of strings (`aud`).
    pub fn string_or_list(&self, claim: &str) -> Result<Option<Vec<String>>, ClaimError> {
        match self.0.get(claim) {
            Some(Value::String(_)) => Ok(self.string(claim)?.map(|s| vec![s])),
            _ => self.string_list(claim).map_err(|mut e| {
                e.problem = e.problem.replace("must be an array of strings", "must be a string or an array of strings");
                e
            }),
        }
    }

    pub fn bool(&self, claim: &str) -> Result<Option<bool>, ClaimError> {
        match self.0.get(claim) {
            None | Some(Value::Null) => Ok(None),
            Some(Value::Bool(b)) => Ok(Some(*b)),
            Some(other) => Err(ClaimError::new(claim, format!("must be true or false, found {}", json_kind(other)))),
        }
    }

    /// Reads a JWT `NumericDate`: seconds since the epoch, as an integer (a whole-valued
    /// float is tolerated because some JWT libraries emit `1.7e9`).
    pub fn numeric_date(&self, claim: &str) -> Result<Option<UnixTime>, ClaimError> {
        match self.0.get(claim) {
            None | Some(Value::Null) => Ok(None),
            Some(Value::Number(n)) => {
                // 0 to the end of year 9999: anything else is a mistake, and keeps arithmetic
                // on dates far from overflow.
                const LATEST: i64 = 253_402_300_799;
                if let Some(i) = n.as_i64() {
                    if !(0..=LATEST).contains(&i) {
                        return Err(ClaimError::new(
                            claim,
                            "is out of range: use seconds since 1970 (0 to 253402300799)",
                        ));
                    }
                    return Ok(Some(i));
                }
                match n.as_f64() {
                    Some(f) if f.is_finite() && f.fract() == 0.0 && (0.0..=LATEST as f64).contains(&f) => {
                        Ok(Some(f as i64))
                    }
                    _ => Err(ClaimError::new(claim, "must be a whole number of seconds since 1970-01-01T00:00:00Z")),
                }
            }
            Some(other) => Err(ClaimError::new(
                claim,
                format!("must be a number of seconds since 1970-01-01T00:00:00Z, found {}", json_kind(other)),
            )),
        }
    }

    pub fn object(&self, claim: &str) -> Result<Option<&Map<String, Value>>, ClaimError> {
        match self.0.get(claim) {
            None | Some(Value::Null) => Ok(None),
            Some(Value::Object(map)) => Ok(Some(map)),
            Some(other) => Err(ClaimError::new(claim, format!("must be a JSON object, found {}", json_kind(other)))),
        }
    }
}

fn check_len(claim: &str, s: &str) -> Result<(), ClaimError> {
    if s.chars().count() > MAX_CLAIM_CHARS {
        return Err(ClaimError::new(
            claim,
            format!("holds a value longer than the {MAX_CLAIM_CHARS} characters accepted"),
        ));
    }
    Ok(())
}

pub(crate) fn json_kind(value: &Value) -> &'static str {
    match value {
        Value::Null => "null",
        Value::Bool(_) => "a boolean",
        Value::Number(_) => "a number",
        Value::String(_) => "a string",
        Value::Array(_) => "an array",
        Value::Object(_) => "an object",
    }
}

/// Test helper: `base` with `patch` applied (a `null` in `patch` removes the claim).
#[cfg(test)]
pub(crate) fn patched(mut base: Value, patch: Value) -> Claims {
    for (k, v) in patch.as_object().expect("a patch is an object") {
        if v.is_null() {
            base.as_object_mut().expect("an object").remove(k);
        } else {
            base[k] = v.clone();
        }
    }
    Claims::from_map(base.as_object().expect("an object").clone())
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    fn claims(v: Value) -> Claims {
        match v {
            Value::Object(m) => Claims::from_map(m),
            _ => unreachable!(),
        }
    }

    #[test]
    fn wrong_types_name_the_claim() {
        let c = claims(json!({"redirect_uris": "https://a", "iat": "now", "x": true}));
        let err = c.string_list("redirect_uris").unwrap_err();
        assert_eq!(err.to_string(), "claim `redirect_uris` must be an array of strings, found a string");
        assert!(c.numeric_date("iat").unwrap_err().to_string().contains("`iat`"));
        assert!(c.string("x").unwrap_err().to_string().contains("found a boolean"));
    }

    #[test]
    fn aud_may_be_string_or_list() {
        assert_eq!(claims(json!({"aud": "a"})).string_or_list("aud").unwrap(), Some(vec!["a".to_owned()]));
        assert_eq!(
            claims(json!({"aud": ["a", "b"]})).string_or_list("aud").unwrap(),
            Some(vec!["a".to_owned(), "b".to_owned()])
        );
        let err = claims(json!({"aud": 3})).string_or_list("aud").unwrap_err();
        assert!(err.problem.contains("a string or an array of strings"), "{err}");
    }

    #[test]
    fn absurd_lengths_are_refused() {
        let long = "a".repeat(MAX_CLAIM_CHARS + 1);
        assert!(claims(json!({ "client_name": long })).string("client_name").is_err());
        let many: Vec<String> = (0..=MAX_ARRAY_ENTRIES).map(|i| i.to_string()).collect();
        assert!(claims(json!({ "grant_types": many })).string_list("grant_types").is_err());
    }

    #[test]
    fn numeric_dates_out_of_range_are_refused() {
        assert!(claims(json!({"exp": i64::MIN})).numeric_date("exp").is_err());
        assert!(claims(json!({"exp": -1})).numeric_date("exp").is_err());
        assert!(claims(json!({"exp": 1e300})).numeric_date("exp").is_err());
    }

    #[test]
    fn numeric_dates_accept_whole_floats_only() {
        assert_eq!(claims(json!({"iat": 1.0e9})).numeric_date("iat").unwrap(), Some(1_000_000_000));
        assert!(claims(json!({"iat": 1.5})).numeric_date("iat").is_err());
    }

    #[test]
    fn non_objects_are_refused() {
        assert!(Claims::from_json_object(b"[1]").unwrap_err().contains("not an object"));
        assert!(Claims::from_json_object(b"{").unwrap_err().contains("not valid JSON"));
    }
}
