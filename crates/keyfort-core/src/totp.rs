//! Time-based one-time passwords (RFC 6238) as authenticator apps use them: HMAC-SHA-1,
//! 6 digits, 30-second steps, a code accepted one step either side of now (clocks drift),
//! and never twice: the caller stores the last accepted step and passes it back.

use std::fmt;

use aws_lc_rs::{constant_time, hmac};

use crate::clock::UnixTime;

pub const STEP_SECONDS: i64 = 30;
pub const DIGITS: u32 = 6;
/// Steps accepted either side of the current one.
const WINDOW: i64 = 1;
/// RFC 4226 §4 asks for at least 128 bits and recommends 160.
const SECRET_BYTES: usize = 20;

/// A shared TOTP secret. Its `Debug` output is redacted.
#[derive(Clone, PartialEq, Eq)]
pub struct TotpSecret(Vec<u8>);

impl fmt::Debug for TotpSecret {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str("TotpSecret(<redacted>)")
    }
}

impl TotpSecret {
    /// A new random secret from the system CSPRNG.
    pub fn generate() -> Self {
        let mut bytes = vec![0u8; SECRET_BYTES];
        aws_lc_rs::rand::fill(&mut bytes).expect("the system random number generator failed");
        Self(bytes)
    }

    pub fn from_bytes(bytes: &[u8]) -> Self {
        Self(bytes.to_vec())
    }

    /// Reads the base32 form (RFC 4648; case, spaces and padding do not matter).
    pub fn from_base32(text: &str) -> Option<Self> {
        base32_decode(text).filter(|b| !b.is_empty()).map(Self)
    }

    /// The base32 form authenticator apps take (RFC 4648, no padding).
    pub fn to_base32(&self) -> String {
        base32_encode(&self.0)
    }

    /// The step (RFC 6238 `T`) that `now` falls in.
    pub fn step_at(now: UnixTime) -> i64 {
        now.div_euclid(STEP_SECONDS)
    }

    /// The 6-digit code of `step`.
    pub fn code(&self, step: i64) -> String {
        format!("{:0width$}", hotp(&self.0, step as u64, DIGITS), width = DIGITS as usize)
    }

    /// Checks `code` at `now`: the step it belongs to (one step either side of now),
    /// provided that step is later than `last_used_step`. The caller must store the
    /// returned step before accepting, so that the code cannot be used twice.
    pub fn verify(&self, code: &str, now: UnixTime, last_used_step: Option<i64>) -> Option<i64> {
        let code: String = code.chars().filter(|c| !c.is_whitespace()).collect();
        if code.len() != DIGITS as usize || !code.bytes().all(|b| b.is_ascii_digit()) {
            return None;
        }
        let current = Self::step_at(now);
        let mut accepted = None;
        // Every candidate is computed and compared, so the time taken does not say which.
        for step in current - WINDOW..=current + WINDOW {
            let fresh = last_used_step.is_none_or(|last| step > last);
            let equal = constant_time::verify_slices_are_equal(self.code(step).as_bytes(), code.as_bytes()).is_ok();
            if equal && fresh && accepted.is_none() {
                accepted = Some(step);
            }
        }
        accepted
    }

    /// The `otpauth://` URI authenticator apps read (usually from a QR code).
    pub fn otpauth_uri(&self, issuer: &str, account: &str) -> String {
        let label = format!("{}:{}", encode_component(issuer), encode_component(account));
        format!(
            "otpauth://totp/{label}?secret={}&issuer={}&algorithm=SHA1&digits={DIGITS}&period={STEP_SECONDS}",
            self.to_base32(),
            encode_component(issuer)
        )
    }
}

/// RFC 4226 HOTP with HMAC-SHA-1 and dynamic truncation.
fn hotp(key: &[u8], counter: u64, digits: u32) -> u32 {
    let key = hmac::Key::new(hmac::HMAC_SHA1_FOR_LEGACY_USE_ONLY, key);
    let tag = hmac::sign(&key, &counter.to_be_bytes());
    let mac = tag.as_ref();
    let offset = usize::from(mac[mac.len() - 1] & 0x0f);
    let binary = u32::from_be_bytes([mac[offset] & 0x7f, mac[offset + 1], mac[offset + 2], mac[offset + 3]]);
    binary % 10u32.pow(digits)
}

const ALPHABET: &[u8; 32] = b"ABCDEFGHIJKLMNOPQRSTUVWXYZ234567";

fn base32_encode(bytes: &[u8]) -> String {
    let mut out = String::with_capacity(bytes.len().div_ceil(5) * 8);
    let (mut buffer, mut bits) = (0u32, 0u32);
    for byte in bytes {
        buffer = (buffer << 8) | u32::from(*byte);
        bits += 8;
        while bits >= 5 {
            out.push(ALPHABET[((buffer >> (bits - 5)) & 31) as usize] as char);
            bits -= 5;
        }
    }
    if bits > 0 {
        out.push(ALPHABET[((buffer << (5 - bits)) & 31) as usize] as char);
    }
    out
}

fn base32_decode(text: &str) -> Option<Vec<u8>> {
    let mut out = Vec::new();
    let (mut buffer, mut bits) = (0u32, 0u32);
    for c in text.chars().filter(|c| !c.is_whitespace() && *c != '=') {
        let value = ALPHABET.iter().position(|a| *a as char == c.to_ascii_uppercase())? as u32;
        buffer = (buffer << 5) | value;
        bits += 5;
        if bits >= 8 {
            out.push((buffer >> (bits - 8)) as u8);
            bits -= 8;
        }
        buffer &= (1 << bits) - 1;
    }
    Some(out)
}

/// Percent-encodes everything but unreserved characters (RFC 3986), for the URI's label
/// and issuer.
fn encode_component(text: &str) -> String {
    let mut out = String::new();
    for byte in text.bytes() {
        if byte.is_ascii_alphanumeric() || b"-._~".contains(&byte) {
            out.push(byte as char);
        } else {
            out.push_str(&format!("%{byte:02X}"));
        }
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    /// RFC 6238 Appendix B, SHA-1 rows: the 8-digit codes for the ASCII key
    /// "12345678901234567890"; the 6-digit codes are their last six digits.
    const VECTORS: [(i64, u32); 6] = [
        (59, 94287082),
        (1111111109, 7081804),
        (1111111111, 14050471),
        (1234567890, 89005924),
        (2000000000, 69279037),
        (20000000000, 65353130),
    ];

    #[test]
    fn rfc_6238_test_vectors() {
        let secret = TotpSecret::from_bytes(b"12345678901234567890");
        for (time, expected) in VECTORS {
            let step = TotpSecret::step_at(time);
            assert_eq!(hotp(&secret.0, step as u64, 8), expected, "T = {time}");
            assert_eq!(secret.code(step), format!("{:06}", expected % 1_000_000), "T = {time}");
        }
    }

    #[test]
    fn codes_are_accepted_one_step_either_side_and_once() {
        let secret = TotpSecret::generate();
        let now = 1_800_000_015;
        let step = TotpSecret::step_at(now);
        assert_eq!(secret.verify(&secret.code(step), now, None), Some(step));
        assert_eq!(secret.verify(&secret.code(step - 1), now, None), Some(step - 1));
        assert_eq!(secret.verify(&secret.code(step + 1), now, None), Some(step + 1));
        assert_eq!(secret.verify(&secret.code(step - 2), now, None), None, "too old");
        assert_eq!(secret.verify(&secret.code(step + 2), now, None), None, "too far ahead");
        assert_eq!(secret.verify(&secret.code(step), now, Some(step)), None, "used already");
        assert_eq!(secret.verify(&secret.code(step), now, Some(step - 1)), Some(step));
        assert_eq!(secret.verify(&secret.code(step - 1), now, Some(step)), None, "an older code after a newer one");
        let spaced = format!("{} {}", &secret.code(step)[..3], &secret.code(step)[3..]);
        assert_eq!(secret.verify(&spaced, now, None), Some(step));
        for bad in ["", "12345", "1234567", "abcdef"] {
            assert_eq!(secret.verify(bad, now, None), None, "{bad}");
        }
    }

    #[test]
    fn base32_round_trips_and_the_uri() {
        // RFC 4648 §10.
        for (plain, encoded) in [
            ("f", "MY"),
            ("fo", "MZXQ"),
            ("foo", "MZXW6"),
            ("foob", "MZXW6YQ"),
            ("fooba", "MZXW6YTB"),
            ("foobar", "MZXW6YTBOI"),
        ] {
            assert_eq!(base32_encode(plain.as_bytes()), encoded);
            assert_eq!(base32_decode(encoded).unwrap(), plain.as_bytes());
            assert_eq!(base32_decode(&format!("{}==", encoded.to_lowercase())).unwrap(), plain.as_bytes());
        }
        assert!(base32_decode("MZ1").is_none());
        let secret = TotpSecret::generate();
        assert_eq!(TotpSecret::from_base32(&secret.to_base32()), Some(secret.clone()));
        assert_eq!(secret.to_base32().len(), 32);
        let uri = secret.otpauth_uri("Acme Bank", "ann@example.com");
        assert!(uri.starts_with("otpauth://totp/Acme%20Bank:ann%40example.com?secret="), "{uri}");
        assert!(uri.contains("&issuer=Acme%20Bank"), "{uri}");
        assert!(!format!("{secret:?}").contains(&secret.to_base32()));
    }
}
