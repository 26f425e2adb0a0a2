//! Authentication context classes of the UK Open Banking profile: strong customer
//! authentication (two factors) and customer authentication (one).

use serde_json::{Map, Value};

use crate::error::OAuthError;

/// How strongly the customer was authenticated.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub enum Acr {
    /// One factor (a password).
    Ca,
    /// Two factors (a password and a one-time code), as PSD2 requires for most access.
    Sca,
}

impl Acr {
    pub const ALL: [Acr; 2] = [Acr::Sca, Acr::Ca];

    pub fn as_str(self) -> &'static str {
        match self {
            Acr::Sca => "urn:openbanking:psd2:sca",
            Acr::Ca => "urn:openbanking:psd2:ca",
        }
    }

    pub fn parse(s: &str) -> Option<Self> {
        Self::ALL.into_iter().find(|a| a.as_str() == s)
    }
}

/// What the request object's `claims.id_token.acr` asks for.
#[derive(Debug, Clone, PartialEq, Eq, Default)]
pub struct AcrRequest {
    /// The TPP marked `acr` essential: an authentication at another level must be refused.
    pub essential: bool,
    /// Acceptable values, in the TPP's order; empty means any.
    pub values: Vec<Acr>,
}

impl AcrRequest {
    /// Reads `claims.id_token.acr` (OpenID Connect Core §5.5.1.1). Unknown values are ignored
    /// unless nothing known is left of an essential request, which then cannot be met.
    pub fn from_claims_request(id_token: Option<&Map<String, Value>>) -> Result<Self, OAuthError> {
        let Some(acr) = id_token.and_then(|c| c.get("acr")) else { return Ok(Self::default()) };
        let Some(acr) = acr.as_object() else {
            if acr.is_null() {
                return Ok(Self::default());
            }
            return Err(OAuthError::invalid_request_object("claims.id_token.acr must be an object or null"));
        };
        let essential = acr.get("essential").and_then(Value::as_bool).unwrap_or(false);
        let mut wanted: Vec<&str> = Vec::new();
        if let Some(value) = acr.get("value").and_then(Value::as_str) {
            wanted.push(value);
        }
        if let Some(values) = acr.get("values").and_then(Value::as_array) {
            wanted.extend(values.iter().filter_map(Value::as_str));
        }
        let values: Vec<Acr> = wanted.iter().filter_map(|v| Acr::parse(v)).collect();
        if essential && !wanted.is_empty() && values.is_empty() {
            return Err(OAuthError::new(
                crate::error::ErrorCode::AccessDenied,
                format!(
                    "claims.id_token.acr asks essentially for {}, which this bank does not offer; use {} or {}",
                    wanted.join(", "),
                    Acr::Sca.as_str(),
                    Acr::Ca.as_str()
                ),
            ));
        }
        Ok(Self { essential, values })
    }

    /// Whether an authentication at `achieved` satisfies the request. A stronger level than
    /// asked for satisfies a request for the weaker one.
    pub fn accepts(&self, achieved: Acr) -> bool {
        !self.essential || self.values.is_empty() || self.values.iter().any(|wanted| achieved >= *wanted)
    }

    /// Whether the request can only be met with two factors.
    pub fn needs_sca(&self) -> bool {
        self.essential && !self.values.is_empty() && self.values.iter().all(|v| *v == Acr::Sca)
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    fn request(acr: Value) -> Result<AcrRequest, OAuthError> {
        let id_token = json!({ "acr": acr });
        AcrRequest::from_claims_request(id_token.as_object())
    }

    #[test]
    fn essential_sca_refuses_one_factor() {
        let sca = request(json!({"essential": true, "values": ["urn:openbanking:psd2:sca"]})).unwrap();
        assert!(sca.needs_sca());
        assert!(sca.accepts(Acr::Sca));
        assert!(!sca.accepts(Acr::Ca));
        let either =
            request(json!({"essential": true, "values": ["urn:openbanking:psd2:sca", "urn:openbanking:psd2:ca"]}))
                .unwrap();
        assert!(either.accepts(Acr::Ca) && !either.needs_sca());
        let voluntary = request(json!({"values": ["urn:openbanking:psd2:sca"]})).unwrap();
        assert!(voluntary.accepts(Acr::Ca), "a voluntary request is a preference");
        let ca = request(json!({"essential": true, "value": "urn:openbanking:psd2:ca"})).unwrap();
        assert!(ca.accepts(Acr::Sca), "stronger satisfies weaker");
    }

    #[test]
    fn unknown_essential_values_cannot_be_met() {
        assert!(request(json!({"essential": true, "values": ["urn:example:loa4"]})).is_err());
        assert_eq!(request(json!({"values": ["urn:example:loa4"]})).unwrap().values, vec![]);
        assert!(AcrRequest::from_claims_request(None).unwrap().accepts(Acr::Ca));
    }
}
