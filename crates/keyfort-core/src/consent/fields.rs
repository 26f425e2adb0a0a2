//! The field types of the OBIE consent bodies, each checking what the v3.1.11 schema says
//! about it (length, pattern, enumeration, ISO 8601 with an offset) as it is deserialized,
//! so a parsed request cannot hold a value the schema forbids.
//!
//! A failed check is reported through serde with its OBIE error code in front
//! (`UK.OBIE.Field.InvalidDate|message`); the request parser reads the code back and gets
//! the JSON path of the value from `serde_path_to_error`.

use std::fmt;

use serde::de::{self, Deserialize, Deserializer};
use time::format_description::well_known::{Iso8601, Rfc3339};
use time::OffsetDateTime;

use super::error::{ObieErrorCode, ObieErrorItem};
use crate::clock::UnixTime;

/// Separates the OBIE code from the message in a serde error.
pub(super) const CODE_SEPARATOR: char = '|';

/// A serde error that carries its OBIE error code.
pub(super) fn field_error<E: de::Error>(code: ObieErrorCode, message: impl fmt::Display) -> E {
    E::custom(format!("{}{CODE_SEPARATOR}{message}", code.as_str()))
}

/// A string of `MIN` to `MAX` characters (the schema's `minLength` and `maxLength`).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Text<const MIN: usize, const MAX: usize>(String);

impl<const MIN: usize, const MAX: usize> Text<MIN, MAX> {
    pub fn as_str(&self) -> &str {
        &self.0
    }
}

impl<'de, const MIN: usize, const MAX: usize> Deserialize<'de> for Text<MIN, MAX> {
    fn deserialize<D: Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
        let text = String::deserialize(d)?;
        let length = text.chars().count();
        if length == 0 && MIN > 0 {
            return Err(field_error(ObieErrorCode::FieldInvalid, "must not be empty; leave the field out instead"));
        }
        if length < MIN {
            return Err(field_error(
                ObieErrorCode::FieldInvalid,
                format!("has {length} characters; at least {MIN} are required"),
            ));
        }
        if length > MAX {
            return Err(field_error(
                ObieErrorCode::FieldInvalid,
                format!("has {length} characters; at most {MAX} are allowed"),
            ));
        }
        Ok(Self(text))
    }
}

/// An ISO 8601 date-time with a time zone offset, as OBIE requires of every date-time in a
/// payload. The text is kept as sent, since responses echo the request.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct IsoDateTime {
    text: String,
    at: OffsetDateTime,
}

impl IsoDateTime {
    /// Parses any ISO 8601 date-time with an offset: `2017-04-05T10:43:07+00:00`,
    /// `2018-07-03T14:43:41Z`, with or without seconds or fractions (the variations v3.1.11
    /// says an ASPSP must accept). A date-time without an offset is refused: its instant
    /// would depend on where the server runs.
    pub fn parse(text: &str) -> Result<Self, String> {
        let at = OffsetDateTime::parse(text, &Rfc3339)
            .or_else(|_| OffsetDateTime::parse(text, &Iso8601::DEFAULT))
            .map_err(|_| {
                let shown: String = text.chars().take(64).collect();
                if time::PrimitiveDateTime::parse(text, &Iso8601::DEFAULT).is_ok() {
                    format!("\"{shown}\" has no time zone offset; add one, e.g. 2017-04-05T10:43:07+00:00")
                } else {
                    format!("\"{shown}\" is not an ISO 8601 date-time; use e.g. 2017-04-05T10:43:07+00:00")
                }
            })?;
        Ok(Self { text: text.to_owned(), at })
    }

    pub fn as_str(&self) -> &str {
        &self.text
    }

    /// Seconds since the Unix epoch (fractions dropped).
    pub fn unix(&self) -> UnixTime {
        self.at.unix_timestamp()
    }
}

impl<'de> Deserialize<'de> for IsoDateTime {
    fn deserialize<D: Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
        let text = String::deserialize(d)?;
        IsoDateTime::parse(&text).map_err(|e| field_error(ObieErrorCode::FieldInvalidDate, e))
    }
}

/// Formats a Unix time as OBIE shows date-times in responses: `2017-04-05T10:43:07+00:00`.
pub fn format_date_time(at: UnixTime) -> String {
    let t = OffsetDateTime::from_unix_timestamp(at).unwrap_or(OffsetDateTime::UNIX_EPOCH);
    format!(
        "{:04}-{:02}-{:02}T{:02}:{:02}:{:02}+00:00",
        t.year(),
        u8::from(t.month()),
        t.day(),
        t.hour(),
        t.minute(),
        t.second()
    )
}

/// A closed set of values (a static enumeration of the schema).
macro_rules! closed_set {
    ($(#[$doc:meta])* $name:ident, $what:literal, [$($value:literal),+ $(,)?]) => {
        $(#[$doc])*
        #[derive(Debug, Clone, PartialEq, Eq)]
        pub struct $name(String);

        impl $name {
            pub const VALUES: &'static [&'static str] = &[$($value),+];

            pub fn as_str(&self) -> &str {
                &self.0
            }
        }

        impl<'de> Deserialize<'de> for $name {
            fn deserialize<D: Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
                let value = String::deserialize(d)?;
                if Self::VALUES.contains(&value.as_str()) {
                    return Ok(Self(value));
                }
                let shown: String = value.chars().take(64).collect();
                Err(field_error(
                    ObieErrorCode::FieldInvalid,
                    format!("\"{shown}\" is not a {}; use one of: {}", $what, Self::VALUES.join(", ")),
                ))
            }
        }
    };
}

/// A namespaced enumeration: Keyfort accepts the `UK.OBIE` namespace values the v3.1.11
/// specification lists; a value of another namespace is one this bank does not support.
macro_rules! namespaced_set {
    ($(#[$doc:meta])* $name:ident, $what:literal, $unsupported:expr, [$($value:literal),+ $(,)?]) => {
        $(#[$doc])*
        #[derive(Debug, Clone, PartialEq, Eq)]
        pub struct $name(String);

        impl $name {
            pub const VALUES: &'static [&'static str] = &[$($value),+];

            pub fn as_str(&self) -> &str {
                &self.0
            }
        }

        impl<'de> Deserialize<'de> for $name {
            fn deserialize<D: Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
                let value = String::deserialize(d)?;
                if Self::VALUES.contains(&value.as_str()) {
                    return Ok(Self(value));
                }
                let shown: String = value.chars().take(64).collect();
                Err(field_error(
                    $unsupported,
                    format!("{} \"{shown}\" is not supported here; use one of: {}", $what, Self::VALUES.join(", ")),
                ))
            }
        }
    };
}

namespaced_set!(
    /// `OBExternalAccountIdentification4Code`.
    SchemeName,
    "account identification scheme",
    ObieErrorCode::UnsupportedScheme,
    [
        "UK.OBIE.BBAN",
        "UK.OBIE.IBAN",
        "UK.OBIE.PAN",
        "UK.OBIE.Paym",
        "UK.OBIE.SortCodeAccountNumber",
        "UK.OBIE.Wallet",
    ]
);

namespaced_set!(
    /// `OBExternalLocalInstrument1Code`.
    LocalInstrument,
    "local instrument",
    ObieErrorCode::UnsupportedLocalInstrument,
    [
        "UK.OBIE.BACS",
        "UK.OBIE.BalanceTransfer",
        "UK.OBIE.CHAPS",
        "UK.OBIE.Euro1",
        "UK.OBIE.FPS",
        "UK.OBIE.Link",
        "UK.OBIE.MoneyTransfer",
        "UK.OBIE.Paym",
        "UK.OBIE.SEPACreditTransfer",
        "UK.OBIE.SEPAInstantCreditTransfer",
        "UK.OBIE.SWIFT",
        "UK.OBIE.Target2",
    ]
);

closed_set!(YesNo, "ReadRefundAccount value", ["No", "Yes"]);
closed_set!(AuthorisationType, "AuthorisationType", ["Any", "Single"]);
closed_set!(
    ScaExemptionType,
    "RequestedSCAExemptionType",
    ["BillPayment", "ContactlessTravel", "EcommerceGoods", "EcommerceServices", "Kiosk", "Parking", "PartyToParty"]
);
closed_set!(AuthenticationApproach, "AppliedAuthenticationApproach", ["CA", "SCA"]);
closed_set!(
    AddressType,
    "AddressType",
    ["Business", "Correspondence", "DeliveryTo", "MailTo", "POBox", "Postal", "Residential", "Statement"]
);
closed_set!(
    PaymentContextCode,
    "PaymentContextCode",
    [
        "BillingGoodsAndServicesInAdvance",
        "BillingGoodsAndServicesInArrears",
        "PispPayee",
        "EcommerceMerchantInitiatedPayment",
        "FaceToFacePointOfSale",
        "TransferToSelf",
        "TransferToThirdParty",
        "BillPayment",
        "EcommerceGoods",
        "EcommerceServices",
        "Other",
        "PartyToParty",
    ]
);
closed_set!(
    BeneficiaryAccountType,
    "BeneficiaryAccountType",
    [
        "Business",
        "BusinessSavingsAccount",
        "Charity",
        "Collection",
        "Corporate",
        "Ewallet",
        "Government",
        "Investment",
        "ISA",
        "JointPersonal",
        "Pension",
        "Personal",
        "PersonalSavingsAccount",
        "Premier",
        "Wealth",
    ]
);

/// `OBActiveCurrencyAndAmount_SimpleType`: `^\d{1,13}$|^\d{1,13}\.\d{1,5}$`, and more than
/// zero (a payment of nothing is a mistake, not a payment).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Amount(String);

impl Amount {
    pub fn as_str(&self) -> &str {
        &self.0
    }

    pub fn check(text: &str) -> Result<(), String> {
        let (whole, fraction) = match text.split_once('.') {
            Some((w, f)) => (w, Some(f)),
            None => (text, None),
        };
        let digits = |s: &str, max: usize| !s.is_empty() && s.len() <= max && s.bytes().all(|b| b.is_ascii_digit());
        let shown: String = text.chars().take(32).collect();
        if !digits(whole, 13) || fraction.is_some_and(|f| !digits(f, 5)) {
            return Err(format!(
                "\"{shown}\" is not an amount: use 1 to 13 digits, optionally a '.' and 1 to 5 decimals (e.g. 10.50)"
            ));
        }
        if text.bytes().all(|b| b == b'0' || b == b'.') {
            return Err("must be more than zero".to_owned());
        }
        Ok(())
    }
}

impl<'de> Deserialize<'de> for Amount {
    fn deserialize<D: Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
        let text = String::deserialize(d)?;
        Amount::check(&text).map_err(|e| field_error(ObieErrorCode::FieldInvalid, e))?;
        Ok(Self(text))
    }
}

/// `ActiveOrHistoricCurrencyCode`: `^[A-Z]{3,3}$`.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Currency(String);

impl Currency {
    pub fn as_str(&self) -> &str {
        &self.0
    }

    pub fn is_valid(text: &str) -> bool {
        text.len() == 3 && text.bytes().all(|b| b.is_ascii_uppercase())
    }
}

impl<'de> Deserialize<'de> for Currency {
    fn deserialize<D: Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
        let text = String::deserialize(d)?;
        if !Currency::is_valid(&text) {
            let shown: String = text.chars().take(32).collect();
            return Err(field_error(
                ObieErrorCode::FieldInvalid,
                format!("\"{shown}\" is not an ISO 4217 currency code; use three capital letters, e.g. GBP"),
            ));
        }
        Ok(Self(text))
    }
}

/// `CountryCode`: `^[A-Z]{2,2}$`.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct CountryCode(String);

impl<'de> Deserialize<'de> for CountryCode {
    fn deserialize<D: Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
        let text = String::deserialize(d)?;
        if text.len() != 2 || !text.bytes().all(|b| b.is_ascii_uppercase()) {
            let shown: String = text.chars().take(32).collect();
            return Err(field_error(
                ObieErrorCode::FieldInvalid,
                format!("\"{shown}\" is not an ISO 3166 country code; use two capital letters, e.g. GB"),
            ));
        }
        Ok(Self(text))
    }
}

/// An account as OBIE names it in consents (`DebtorAccount`, `CreditorAccount`).
#[derive(Debug, Clone, PartialEq, Eq, serde::Deserialize)]
#[serde(deny_unknown_fields)]
pub struct AccountIdentification {
    #[serde(rename = "SchemeName")]
    pub scheme_name: SchemeName,
    #[serde(rename = "Identification")]
    pub identification: Text<1, 256>,
    #[serde(rename = "Name", default)]
    pub name: Option<Text<1, 350>>,
    #[serde(rename = "SecondaryIdentification", default)]
    pub secondary_identification: Option<Text<1, 34>>,
}

impl AccountIdentification {
    pub fn scheme(&self) -> &str {
        self.scheme_name.as_str()
    }

    pub fn identification(&self) -> &str {
        self.identification.as_str()
    }

    pub fn name(&self) -> Option<&str> {
        self.name.as_ref().map(Text::as_str)
    }

    pub fn secondary_identification(&self) -> Option<&str> {
        self.secondary_identification.as_ref().map(Text::as_str)
    }

    /// Whether this names the account `scheme`/`identification` (spaces and case in the
    /// identification do not matter: `GB29 NWBK ...` and `GB29NWBK...` are one IBAN).
    pub fn names(&self, scheme: &str, identification: &str) -> bool {
        self.scheme() == scheme
            && normalise_identification(self.identification()) == normalise_identification(identification)
    }

    /// The scheme's own rules for the identification: a sort code and account number is 14
    /// digits, an IBAN has a valid check (ISO 13616). `path` is the account's JSON path.
    pub fn check(&self, path: &str) -> Vec<ObieErrorItem> {
        let mut problems = Vec::new();
        if let Err(why) = check_identification(self.scheme(), self.identification()) {
            let field = format!("{path}.Identification");
            problems.push(ObieErrorItem::new(
                ObieErrorCode::UnsupportedAccountIdentifier,
                format!("{field}: {why}"),
                Some(&field),
            ));
        }
        problems
    }
}

/// Removes the spaces and dashes people write in account numbers and upper-cases the rest.
pub fn normalise_identification(identification: &str) -> String {
    identification.chars().filter(|c| !c.is_whitespace() && *c != '-').flat_map(char::to_uppercase).collect()
}

/// The identification rules of the schemes Keyfort can check.
pub fn check_identification(scheme: &str, identification: &str) -> Result<(), String> {
    let compact = normalise_identification(identification);
    match scheme {
        "UK.OBIE.SortCodeAccountNumber" => {
            if compact.len() == 14 && compact.bytes().all(|b| b.is_ascii_digit()) {
                Ok(())
            } else {
                Err("a UK.OBIE.SortCodeAccountNumber identification is the 6-digit sort code followed by the 8-digit account number (14 digits), e.g. 60304560123456".to_owned())
            }
        }
        "UK.OBIE.IBAN" => {
            if is_valid_iban(&compact) {
                Ok(())
            } else {
                Err("a UK.OBIE.IBAN identification must be an IBAN with a valid check (ISO 13616), e.g. GB29NWBK60161331926819".to_owned())
            }
        }
        _ => Ok(()),
    }
}

/// ISO 13616: country code, two check digits, up to 30 letters or digits; mod 97 = 1.
fn is_valid_iban(iban: &str) -> bool {
    let bytes = iban.as_bytes();
    if !(15..=34).contains(&bytes.len())
        || !bytes[..2].iter().all(u8::is_ascii_uppercase)
        || !bytes[2..4].iter().all(u8::is_ascii_digit)
        || !bytes.iter().all(|b| b.is_ascii_uppercase() || b.is_ascii_digit())
    {
        return false;
    }
    let rearranged = bytes[4..].iter().chain(&bytes[..4]);
    let mut remainder: u32 = 0;
    for b in rearranged {
        let value = if b.is_ascii_digit() { u32::from(b - b'0') } else { u32::from(b - b'A') + 10 };
        remainder = if value >= 10 { (remainder * 100 + value) % 97 } else { (remainder * 10 + value) % 97 };
    }
    remainder == 1
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn iso_date_times_need_an_offset() {
        for ok in [
            "2017-04-05T10:43:07+00:00",
            "2018-07-03T14:43:41Z",
            "2018-07-03T14:43:41.123+01:00",
            "2018-07-03T14:43Z",
            "2018-07-03T14:43:41-05:30",
        ] {
            assert!(IsoDateTime::parse(ok).is_ok(), "{ok}");
        }
        assert_eq!(IsoDateTime::parse("1970-01-01T01:00:00+01:00").unwrap().unix(), 0);
        let no_offset = IsoDateTime::parse("2017-04-05T10:43:07").unwrap_err();
        assert!(no_offset.contains("no time zone offset"), "{no_offset}");
        let garbage = IsoDateTime::parse("next tuesday").unwrap_err();
        assert!(garbage.contains("not an ISO 8601"), "{garbage}");
        assert!(IsoDateTime::parse("2017-02-30T10:00:00Z").is_err(), "no such day");
        assert_eq!(format_date_time(1_491_388_987), "2017-04-05T10:43:07+00:00");
    }

    #[test]
    fn amounts_follow_the_pattern_and_are_positive() {
        for ok in ["1", "10.5", "1234567890123", "0.01", "1234567890123.12345"] {
            assert!(Amount::check(ok).is_ok(), "{ok}");
        }
        for bad in ["", "1.", ".5", "12345678901234", "1.123456", "-1", "1e3", "1,00", "0", "0.00", " 1"] {
            assert!(Amount::check(bad).is_err(), "{bad:?}");
        }
    }

    #[test]
    fn identifications_by_scheme() {
        assert!(check_identification("UK.OBIE.SortCodeAccountNumber", "60304560123456").is_ok());
        assert!(check_identification("UK.OBIE.SortCodeAccountNumber", "60-30-45 60123456").is_ok());
        assert!(check_identification("UK.OBIE.SortCodeAccountNumber", "6030456012345").is_err());
        assert!(check_identification("UK.OBIE.IBAN", "GB29NWBK60161331926819").is_ok());
        assert!(check_identification("UK.OBIE.IBAN", "GB29 NWBK 6016 1331 9268 19").is_ok());
        assert!(check_identification("UK.OBIE.IBAN", "GB28NWBK60161331926819").is_err(), "bad check digits");
        assert!(check_identification("UK.OBIE.PAN", "anything").is_ok());
    }

    #[test]
    fn closed_and_namespaced_sets() {
        let yes: YesNo = serde_json::from_str("\"Yes\"").unwrap();
        assert_eq!(yes.as_str(), "Yes");
        let err = serde_json::from_str::<YesNo>("\"Maybe\"").unwrap_err().to_string();
        assert!(err.starts_with("UK.OBIE.Field.Invalid|"), "{err}");
        let err = serde_json::from_str::<LocalInstrument>("\"UK.OBIE.Carrier\"").unwrap_err().to_string();
        assert!(err.starts_with("UK.OBIE.Unsupported.LocalInstrument|"), "{err}");
        let err = serde_json::from_str::<Text<1, 3>>("\"abcd\"").unwrap_err().to_string();
        assert!(err.contains("at most 3"), "{err}");
        let err = serde_json::from_str::<Text<1, 3>>("\"\"").unwrap_err().to_string();
        assert!(err.contains("must not be empty"), "{err}");
    }
}
