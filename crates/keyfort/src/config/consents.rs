//! `[consents]`: the Open Banking intents API (account-access, domestic-payment and
//! funds-confirmation consents).

use super::loader::Section;

#[derive(Debug, Clone)]
pub struct ConsentsConfig {
    /// A payment-consent POST must carry a valid `x-jws-signature` (OBIE message signing).
    /// When false, a signature is still verified when one is sent.
    pub require_request_signature: bool,
    /// The `http://openbanking.org.uk/tan` a request signature must name: the domain of
    /// the trust anchor that publishes the TPPs' signing keys.
    pub signature_trust_anchor: String,
    /// How long an `x-idempotency-key` is remembered per client (OBIE: at least 24 hours).
    pub idempotency_seconds: i64,
}

pub(super) fn read(mut s: Section<'_>) -> ConsentsConfig {
    let signature_trust_anchor =
        s.take::<String>("signature_trust_anchor").unwrap_or_else(|| "openbanking.org.uk".into());
    if signature_trust_anchor.trim().is_empty() || signature_trust_anchor.chars().any(char::is_whitespace) {
        s.problem("signature_trust_anchor", "must be a domain name without spaces, such as \"openbanking.org.uk\"");
    }
    ConsentsConfig {
        require_request_signature: s.take("require_request_signature").unwrap_or(true),
        signature_trust_anchor,
        // OBIE: an ASPSP must treat a repeated key of the preceding 24 hours as idempotent.
        idempotency_seconds: s.take_in_range("idempotency_seconds", 86_400, 86_400..=30 * 86_400),
    }
}
