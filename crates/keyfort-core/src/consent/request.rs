//! The request bodies of the three consent endpoints, parsed from JSON with the exact OBIE
//! field names: `OBReadConsent1` (account access), `OBWriteDomesticConsent4` (domestic
//! payment) and `OBFundsConfirmationConsent1` (funds confirmation).
//!
//! Unknown fields are refused everywhere (`UK.OBIE.Field.Unexpected`), except inside
//! `SupplementaryData`, which the specification leaves free-form. The v3.1.11 schemas say
//! `additionalProperties: false` for nearly every object; Keyfort applies it to all,
//! because a misspelt optional field (`ExpirationDatetime`) would otherwise be dropped in
//! silence and turn a time-limited consent into an open-ended one.
//!
//! Parsing stops at the first structural problem (serde reads the body once) and names its
//! JSON path; the rules between fields (permission combinations, dates in order, account
//! identifications) are then checked together and every problem is reported.

use serde::Deserialize;
use serde_json::{Map, Value};

use super::error::{ObieError, ObieErrorCode, ObieErrorItem};
use super::fields::*;
use super::permission::{check_combination, Permission};
use super::ConsentType;
use crate::clock::UnixTime;

/// `Risk` of an account-access consent (`OBRisk2`): an empty object.
#[derive(Debug, Clone, PartialEq, Eq, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct EmptyRisk {}

/// `OBReadConsent1`.
#[derive(Debug, Clone, PartialEq, Eq, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct OBReadConsent1 {
    #[serde(rename = "Data")]
    pub data: OBReadConsentData,
    #[serde(rename = "Risk")]
    pub risk: EmptyRisk,
}

#[derive(Debug, Clone, PartialEq, Eq, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct OBReadConsentData {
    #[serde(rename = "Permissions", deserialize_with = "permissions")]
    pub permissions: Vec<Permission>,
    #[serde(rename = "ExpirationDateTime", default)]
    pub expiration_date_time: Option<IsoDateTime>,
    #[serde(rename = "TransactionFromDateTime", default)]
    pub transaction_from_date_time: Option<IsoDateTime>,
    #[serde(rename = "TransactionToDateTime", default)]
    pub transaction_to_date_time: Option<IsoDateTime>,
}

/// Permission codes, each named in its own error when it is not one.
fn permissions<'de, D: serde::Deserializer<'de>>(d: D) -> Result<Vec<Permission>, D::Error> {
    struct Code(Permission);
    impl<'de> Deserialize<'de> for Code {
        fn deserialize<D: serde::Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
            let text = String::deserialize(d)?;
            Permission::parse(&text).map(Code).ok_or_else(|| {
                let shown: String = text.chars().take(64).collect();
                field_error(
                    ObieErrorCode::FieldInvalid,
                    format!("\"{shown}\" is not an OBIE account-access permission code (e.g. ReadAccountsBasic, ReadBalances)"),
                )
            })
        }
    }
    Ok(Vec::<Code>::deserialize(d)?.into_iter().map(|c| c.0).collect())
}

/// `OBWriteDomesticConsent4`.
#[derive(Debug, Clone, PartialEq, Eq, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct OBWriteDomesticConsent4 {
    #[serde(rename = "Data")]
    pub data: DomesticConsentData,
    #[serde(rename = "Risk")]
    pub risk: PaymentRisk,
}

#[derive(Debug, Clone, PartialEq, Eq, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct DomesticConsentData {
    #[serde(rename = "ReadRefundAccount", default)]
    pub read_refund_account: Option<YesNo>,
    #[serde(rename = "Initiation")]
    pub initiation: DomesticInitiation,
    #[serde(rename = "Authorisation", default)]
    pub authorisation: Option<Authorisation>,
    #[serde(rename = "SCASupportData", default)]
    pub sca_support_data: Option<ScaSupportData>,
}

#[derive(Debug, Clone, PartialEq, Eq, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct DomesticInitiation {
    #[serde(rename = "InstructionIdentification")]
    pub instruction_identification: Text<1, 35>,
    #[serde(rename = "EndToEndIdentification")]
    pub end_to_end_identification: Text<1, 35>,
    #[serde(rename = "LocalInstrument", default)]
    pub local_instrument: Option<LocalInstrument>,
    #[serde(rename = "InstructedAmount")]
    pub instructed_amount: InstructedAmount,
    #[serde(rename = "DebtorAccount", default)]
    pub debtor_account: Option<AccountIdentification>,
    #[serde(rename = "CreditorAccount")]
    pub creditor_account: CreditorAccount,
    #[serde(rename = "CreditorPostalAddress", default)]
    pub creditor_postal_address: Option<PostalAddress>,
    #[serde(rename = "RemittanceInformation", default)]
    pub remittance_information: Option<RemittanceInformation>,
    /// Free-form by the specification (`OBSupplementaryData1`).
    #[serde(rename = "SupplementaryData", default)]
    pub supplementary_data: Option<Map<String, Value>>,
}

#[derive(Debug, Clone, PartialEq, Eq, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct InstructedAmount {
    #[serde(rename = "Amount")]
    pub amount: Amount,
    #[serde(rename = "Currency")]
    pub currency: Currency,
}

/// A creditor account: like [`AccountIdentification`], with `Name` required.
#[derive(Debug, Clone, PartialEq, Eq, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct CreditorAccount {
    #[serde(rename = "SchemeName")]
    pub scheme_name: SchemeName,
    #[serde(rename = "Identification")]
    pub identification: Text<1, 256>,
    #[serde(rename = "Name")]
    pub name: Text<1, 350>,
    #[serde(rename = "SecondaryIdentification", default)]
    pub secondary_identification: Option<Text<1, 34>>,
}

impl CreditorAccount {
    /// The same account as an [`AccountIdentification`], for code that handles both.
    pub fn as_identification(&self) -> AccountIdentification {
        AccountIdentification {
            scheme_name: self.scheme_name.clone(),
            identification: self.identification.clone(),
            name: Some(self.name.clone()),
            secondary_identification: self.secondary_identification.clone(),
        }
    }
}

#[derive(Debug, Clone, PartialEq, Eq, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct PostalAddress {
    #[serde(rename = "AddressType", default)]
    pub address_type: Option<AddressType>,
    #[serde(rename = "Department", default)]
    pub department: Option<Text<1, 70>>,
    #[serde(rename = "SubDepartment", default)]
    pub sub_department: Option<Text<1, 70>>,
    #[serde(rename = "StreetName", default)]
    pub street_name: Option<Text<1, 70>>,
    #[serde(rename = "BuildingNumber", default)]
    pub building_number: Option<Text<1, 16>>,
    #[serde(rename = "PostCode", default)]
    pub post_code: Option<Text<1, 16>>,
    #[serde(rename = "TownName", default)]
    pub town_name: Option<Text<1, 35>>,
    #[serde(rename = "CountrySubDivision", default)]
    pub country_sub_division: Option<Text<1, 35>>,
    #[serde(rename = "Country", default)]
    pub country: Option<CountryCode>,
    #[serde(rename = "AddressLine", default)]
    pub address_line: Option<Vec<Text<1, 70>>>,
}

#[derive(Debug, Clone, PartialEq, Eq, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct RemittanceInformation {
    #[serde(rename = "Unstructured", default)]
    pub unstructured: Option<Text<1, 140>>,
    #[serde(rename = "Reference", default)]
    pub reference: Option<Text<1, 35>>,
}

#[derive(Debug, Clone, PartialEq, Eq, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Authorisation {
    #[serde(rename = "AuthorisationType")]
    pub authorisation_type: AuthorisationType,
    #[serde(rename = "CompletionDateTime", default)]
    pub completion_date_time: Option<IsoDateTime>,
}

#[derive(Debug, Clone, PartialEq, Eq, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct ScaSupportData {
    #[serde(rename = "RequestedSCAExemptionType", default)]
    pub requested_sca_exemption_type: Option<ScaExemptionType>,
    #[serde(rename = "AppliedAuthenticationApproach", default)]
    pub applied_authentication_approach: Option<AuthenticationApproach>,
    #[serde(rename = "ReferencePaymentOrderId", default)]
    pub reference_payment_order_id: Option<Text<1, 40>>,
}

/// `Risk` of a payment consent (`OBRisk1`).
#[derive(Debug, Clone, PartialEq, Eq, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct PaymentRisk {
    #[serde(rename = "PaymentContextCode", default)]
    pub payment_context_code: Option<PaymentContextCode>,
    #[serde(rename = "MerchantCategoryCode", default)]
    pub merchant_category_code: Option<Text<3, 4>>,
    #[serde(rename = "MerchantCustomerIdentification", default)]
    pub merchant_customer_identification: Option<Text<1, 70>>,
    /// Spelt as in the specification.
    #[serde(rename = "ContractPresentInidicator", default)]
    pub contract_present_indicator: Option<bool>,
    #[serde(rename = "BeneficiaryPrepopulatedIndicator", default)]
    pub beneficiary_prepopulated_indicator: Option<bool>,
    #[serde(rename = "PaymentPurposeCode", default)]
    pub payment_purpose_code: Option<Text<3, 4>>,
    #[serde(rename = "BeneficiaryAccountType", default)]
    pub beneficiary_account_type: Option<BeneficiaryAccountType>,
    #[serde(rename = "DeliveryAddress", default)]
    pub delivery_address: Option<DeliveryAddress>,
}

#[derive(Debug, Clone, PartialEq, Eq, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct DeliveryAddress {
    #[serde(rename = "AddressLine", default)]
    pub address_line: Option<Vec<Text<1, 70>>>,
    #[serde(rename = "StreetName", default)]
    pub street_name: Option<Text<1, 70>>,
    #[serde(rename = "BuildingNumber", default)]
    pub building_number: Option<Text<1, 16>>,
    #[serde(rename = "PostCode", default)]
    pub post_code: Option<Text<1, 16>>,
    #[serde(rename = "TownName")]
    pub town_name: Text<1, 35>,
    #[serde(rename = "CountrySubDivision", default)]
    pub country_sub_division: Option<Text<1, 35>>,
    #[serde(rename = "Country")]
    pub country: CountryCode,
}

/// `OBFundsConfirmationConsent1`.
#[derive(Debug, Clone, PartialEq, Eq, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct OBFundsConfirmationConsent1 {
    #[serde(rename = "Data")]
    pub data: FundsConfirmationData,
}

#[derive(Debug, Clone, PartialEq, Eq, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct FundsConfirmationData {
    #[serde(rename = "ExpirationDateTime", default)]
    pub expiration_date_time: Option<IsoDateTime>,
    #[serde(rename = "DebtorAccount")]
    pub debtor_account: AccountIdentification,
}

/// A parsed request body of one of the three types.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum ConsentBody {
    AccountAccess(OBReadConsent1),
    /// Boxed: a payment body is several times the size of the others.
    DomesticPayment(Box<OBWriteDomesticConsent4>),
    FundsConfirmation(OBFundsConfirmationConsent1),
}

/// A consent request that passed every check that does not depend on the time: the body as
/// sent (echoed in responses) and its typed reading.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ConsentRequest {
    json: Map<String, Value>,
    body: ConsentBody,
}

/// The largest array a request may hold: no OBIE array comes near it, and it bounds the
/// work a hostile body can cause.
const MAX_ARRAY_ITEMS: usize = 64;
const ADDRESS_LINES_MAX: usize = 7;
const DELIVERY_ADDRESS_LINES_MAX: usize = 2;

impl ConsentRequest {
    /// Parses and checks a request body of `kind`.
    pub fn parse(kind: ConsentType, body: &[u8]) -> Result<Self, ObieError> {
        let json: Value = serde_json::from_slice(body).map_err(|e| {
            ObieError::bad_request(
                ObieErrorCode::ResourceInvalidFormat,
                format!(
                    "the body is not JSON ({}); send the {} as a JSON object",
                    strip_position(&e.to_string()),
                    kind.schema_name()
                ),
                None,
            )
        })?;
        let Value::Object(json) = json else {
            return Err(ObieError::bad_request(
                ObieErrorCode::ResourceInvalidFormat,
                format!("the body is JSON but not an object; send the {} as a JSON object", kind.schema_name()),
                None,
            ));
        };
        if let Some(path) = oversized_array(&Value::Object(json.clone()), "") {
            return Err(ObieError::bad_request(
                ObieErrorCode::FieldInvalid,
                format!("{path} has more than {MAX_ARRAY_ITEMS} entries"),
                Some(&path),
            ));
        }
        let value = Value::Object(json.clone());
        let body = match kind {
            ConsentType::AccountAccess => ConsentBody::AccountAccess(typed(value)?),
            ConsentType::DomesticPayment => ConsentBody::DomesticPayment(Box::new(typed(value)?)),
            ConsentType::FundsConfirmation => ConsentBody::FundsConfirmation(typed(value)?),
        };
        let problems = rules(&body);
        if !problems.is_empty() {
            return Err(ObieError::from_items(problems));
        }
        Ok(Self { json, body })
    }

    /// Checks the dates against `now`: an ExpirationDateTime or a payment's
    /// Authorisation.CompletionDateTime must lie in the future.
    pub fn check_times(&self, now: UnixTime) -> Result<(), ObieError> {
        let mut problems = Vec::new();
        let mut future = |date: &Option<IsoDateTime>, path: &str, what: &str| {
            if let Some(date) = date {
                if date.unix() <= now {
                    problems.push(ObieErrorItem::new(
                        ObieErrorCode::FieldInvalidDate,
                        format!("{path} {} is not in the future; {what}", date.as_str()),
                        Some(path),
                    ));
                }
            }
        };
        match &self.body {
            ConsentBody::AccountAccess(r) => future(
                &r.data.expiration_date_time,
                "Data.ExpirationDateTime",
                "a consent that has already expired cannot be authorised; leave it out for an open-ended consent",
            ),
            ConsentBody::FundsConfirmation(r) => future(
                &r.data.expiration_date_time,
                "Data.ExpirationDateTime",
                "a consent that has already expired cannot be authorised; leave it out for an open-ended consent",
            ),
            ConsentBody::DomesticPayment(r) => future(
                &r.data.authorisation.as_ref().and_then(|a| a.completion_date_time.clone()),
                "Data.Authorisation.CompletionDateTime",
                "the payment could never be authorised in time",
            ),
        }
        if problems.is_empty() {
            Ok(())
        } else {
            Err(ObieError::from_items(problems))
        }
    }

    /// The body as sent, for responses.
    pub fn json(&self) -> &Map<String, Value> {
        &self.json
    }

    pub fn body(&self) -> &ConsentBody {
        &self.body
    }

    pub fn kind(&self) -> ConsentType {
        match self.body {
            ConsentBody::AccountAccess(_) => ConsentType::AccountAccess,
            ConsentBody::DomesticPayment(_) => ConsentType::DomesticPayment,
            ConsentBody::FundsConfirmation(_) => ConsentType::FundsConfirmation,
        }
    }

    /// The time after which the consent may not be used: `ExpirationDateTime` of an
    /// account-access or funds-confirmation consent. Payment consents have none.
    pub fn expires_at(&self) -> Option<UnixTime> {
        match &self.body {
            ConsentBody::AccountAccess(r) => r.data.expiration_date_time.as_ref().map(IsoDateTime::unix),
            ConsentBody::FundsConfirmation(r) => r.data.expiration_date_time.as_ref().map(IsoDateTime::unix),
            ConsentBody::DomesticPayment(_) => None,
        }
    }
}

/// Deserializes the body into `T`, naming the JSON path and OBIE code of the first problem.
fn typed<T: serde::de::DeserializeOwned>(value: Value) -> Result<T, ObieError> {
    serde_path_to_error::deserialize(value).map_err(|e| {
        let path = e.path().to_string();
        let path = if path == "." { String::new() } else { path };
        let message = strip_position(&e.inner().to_string());
        classify(&path, &message)
    })
}

/// Turns serde's message into an OBIE error: its code (from the field types, or from serde's
/// own wording), the path of the field concerned, and a message that says what to do.
fn classify(path: &str, message: &str) -> ObieError {
    let child = |name: &str| if path.is_empty() { name.to_owned() } else { format!("{path}.{name}") };
    let quoted = |text: &str| text.split('`').nth(1).unwrap_or_default().to_owned();
    if let Some((code, detail)) = message.split_once(CODE_SEPARATOR) {
        if let Some(code) = ObieErrorCode::parse(code) {
            return ObieError::bad_request(code, format!("{path} {detail}"), Some(path));
        }
    }
    if message.starts_with("missing field") {
        let field = child(&quoted(message));
        return ObieError::bad_request(ObieErrorCode::FieldMissing, format!("{field} is required"), Some(&field));
    }
    if message.starts_with("unknown field") {
        // serde_path_to_error's path already ends with the unknown field's name.
        let field = if path.is_empty() { quoted(message) } else { path.to_owned() };
        return ObieError::bad_request(
            ObieErrorCode::FieldUnexpected,
            format!("{field} is not a field of this object in the OBIE v3.1.11 specification; remove it or correct its name"),
            Some(&field),
        );
    }
    if message.starts_with("duplicate field") {
        let field = child(&quoted(message));
        return ObieError::bad_request(
            ObieErrorCode::FieldInvalid,
            format!("{field} appears twice; send it once"),
            Some(&field),
        );
    }
    let at = if path.is_empty() { "the body".to_owned() } else { path.to_owned() };
    // serde names Rust types ("expected struct OBReadConsentData"); say it in JSON terms.
    let message = match message.split_once(", expected struct ") {
        Some((before, _)) => format!("{before}, expected a JSON object"),
        None => message
            .replace("expected a map", "expected a JSON object")
            .replace("expected a sequence", "expected a JSON array"),
    };
    ObieError::bad_request(ObieErrorCode::FieldInvalid, format!("{at}: {message}"), Some(path))
}

/// serde_json appends " at line L column C" to its messages; the path says more.
fn strip_position(message: &str) -> String {
    match message.rsplit_once(" at line ") {
        Some((text, _)) => text.to_owned(),
        None => message.to_owned(),
    }
}

/// The path of the first array longer than [`MAX_ARRAY_ITEMS`], if any.
fn oversized_array(value: &Value, path: &str) -> Option<String> {
    match value {
        Value::Array(items) if items.len() > MAX_ARRAY_ITEMS => Some(path.to_owned()),
        Value::Array(items) => {
            items.iter().enumerate().find_map(|(i, item)| oversized_array(item, &format!("{path}[{i}]")))
        }
        Value::Object(map) => map.iter().find_map(|(k, v)| {
            let child = if path.is_empty() { k.clone() } else { format!("{path}.{k}") };
            oversized_array(v, &child)
        }),
        _ => None,
    }
}

/// The rules between fields, every problem reported.
fn rules(body: &ConsentBody) -> Vec<ObieErrorItem> {
    let mut problems = Vec::new();
    match body {
        ConsentBody::AccountAccess(r) => {
            problems.extend(check_combination(&r.data.permissions));
            if let (Some(from), Some(to)) = (&r.data.transaction_from_date_time, &r.data.transaction_to_date_time) {
                if from.unix() > to.unix() {
                    problems.push(ObieErrorItem::new(
                        ObieErrorCode::FieldInvalidDate,
                        format!(
                            "Data.TransactionFromDateTime {} is after Data.TransactionToDateTime {}; the period must start before it ends",
                            from.as_str(),
                            to.as_str()
                        ),
                        Some("Data.TransactionFromDateTime"),
                    ));
                }
            }
        }
        ConsentBody::DomesticPayment(r) => {
            let initiation = &r.data.initiation;
            if let Some(debtor) = &initiation.debtor_account {
                problems.extend(debtor.check("Data.Initiation.DebtorAccount"));
            }
            problems.extend(initiation.creditor_account.as_identification().check("Data.Initiation.CreditorAccount"));
            if let Some(lines) = initiation.creditor_postal_address.as_ref().and_then(|a| a.address_line.as_ref()) {
                if lines.len() > ADDRESS_LINES_MAX {
                    problems.push(ObieErrorItem::new(
                        ObieErrorCode::FieldInvalid,
                        format!("Data.Initiation.CreditorPostalAddress.AddressLine has {} lines; at most {ADDRESS_LINES_MAX} are allowed", lines.len()),
                        Some("Data.Initiation.CreditorPostalAddress.AddressLine"),
                    ));
                }
            }
            if let Some(lines) = r.risk.delivery_address.as_ref().and_then(|a| a.address_line.as_ref()) {
                if lines.len() > DELIVERY_ADDRESS_LINES_MAX {
                    problems.push(ObieErrorItem::new(
                        ObieErrorCode::FieldInvalid,
                        format!("Risk.DeliveryAddress.AddressLine has {} lines; at most {DELIVERY_ADDRESS_LINES_MAX} are allowed", lines.len()),
                        Some("Risk.DeliveryAddress.AddressLine"),
                    ));
                }
            }
        }
        ConsentBody::FundsConfirmation(r) => problems.extend(r.data.debtor_account.check("Data.DebtorAccount")),
    }
    problems
}

#[cfg(test)]
pub(super) mod tests {
    use serde_json::json;

    use super::*;

    fn parse(kind: ConsentType, body: Value) -> Result<ConsentRequest, ObieError> {
        ConsentRequest::parse(kind, body.to_string().as_bytes())
    }

    #[track_caller]
    fn refused(kind: ConsentType, body: Value, code: ObieErrorCode, path: &str) -> ObieError {
        let err = parse(kind, body.clone()).expect_err("refused");
        assert_eq!(err.errors[0].code, code, "{body}: {}", err.describe());
        assert_eq!(err.errors[0].path.as_deref().unwrap_or(""), path, "{body}: {}", err.describe());
        err
    }

    pub(crate) fn payment() -> Value {
        json!({
            "Data": {
                "Initiation": {
                    "InstructionIdentification": "ACME412",
                    "EndToEndIdentification": "FRESCO.21302.GFX.20",
                    "LocalInstrument": "UK.OBIE.FPS",
                    "InstructedAmount": {"Amount": "165.88", "Currency": "GBP"},
                    "CreditorAccount": {
                        "SchemeName": "UK.OBIE.SortCodeAccountNumber",
                        "Identification": "08080021325698",
                        "Name": "ACME Inc",
                        "SecondaryIdentification": "0002"
                    },
                    "RemittanceInformation": {"Reference": "FRESCO-101", "Unstructured": "Internal ops code 5120101"},
                    "SupplementaryData": {"anything": {"goes": [1, 2]}}
                },
                "Authorisation": {"AuthorisationType": "Single", "CompletionDateTime": "2099-01-01T00:00:00+00:00"},
                "SCASupportData": {"RequestedSCAExemptionType": "EcommerceGoods", "AppliedAuthenticationApproach": "SCA"},
                "ReadRefundAccount": "Yes"
            },
            "Risk": {
                "PaymentContextCode": "EcommerceGoods",
                "MerchantCategoryCode": "5967",
                "MerchantCustomerIdentification": "053598653254",
                "ContractPresentInidicator": true,
                "DeliveryAddress": {"AddressLine": ["Flat 7", "Acacia Lodge"], "TownName": "Sparsholt", "Country": "GB"}
            }
        })
    }

    #[test]
    fn a_full_payment_consent_parses() {
        let request = parse(ConsentType::DomesticPayment, payment()).unwrap();
        let ConsentBody::DomesticPayment(p) = request.body() else { panic!() };
        assert_eq!(p.data.initiation.instructed_amount.amount.as_str(), "165.88");
        assert_eq!(p.data.initiation.creditor_account.name.as_str(), "ACME Inc");
        assert_eq!(request.json()["Risk"]["MerchantCategoryCode"], "5967");
        assert!(request.check_times(1_800_000_000).is_ok());
        assert!(request.check_times(4_200_000_000).is_err(), "CompletionDateTime passed");
        assert_eq!(request.kind(), ConsentType::DomesticPayment);
    }

    #[test]
    fn payment_fields_are_checked_with_their_paths() {
        use ObieErrorCode::*;
        let cases = [
            (
                "/Data/Initiation/InstructionIdentification",
                json!(null),
                FieldMissing,
                "Data.Initiation.InstructionIdentification",
            ),
            (
                "/Data/Initiation/InstructionIdentification",
                json!("x".repeat(36)),
                FieldInvalid,
                "Data.Initiation.InstructionIdentification",
            ),
            (
                "/Data/Initiation/InstructedAmount/Amount",
                json!("12.345678"),
                FieldInvalid,
                "Data.Initiation.InstructedAmount.Amount",
            ),
            (
                "/Data/Initiation/InstructedAmount/Amount",
                json!(12.5),
                FieldInvalid,
                "Data.Initiation.InstructedAmount.Amount",
            ),
            (
                "/Data/Initiation/InstructedAmount/Currency",
                json!("gbp"),
                FieldInvalid,
                "Data.Initiation.InstructedAmount.Currency",
            ),
            (
                "/Data/Initiation/LocalInstrument",
                json!("UK.OBIE.Pigeon"),
                UnsupportedLocalInstrument,
                "Data.Initiation.LocalInstrument",
            ),
            (
                "/Data/Initiation/CreditorAccount/SchemeName",
                json!("UK.OBIE.Carrier"),
                UnsupportedScheme,
                "Data.Initiation.CreditorAccount.SchemeName",
            ),
            (
                "/Data/Initiation/CreditorAccount/Name",
                json!(null),
                FieldMissing,
                "Data.Initiation.CreditorAccount.Name",
            ),
            (
                "/Data/Initiation/CreditorAccount/Identification",
                json!("123"),
                UnsupportedAccountIdentifier,
                "Data.Initiation.CreditorAccount.Identification",
            ),
            (
                "/Data/Initiation/CreditorAccount/Colour",
                json!("blue"),
                FieldUnexpected,
                "Data.Initiation.CreditorAccount.Colour",
            ),
            (
                "/Data/Authorisation/AuthorisationType",
                json!("Many"),
                FieldInvalid,
                "Data.Authorisation.AuthorisationType",
            ),
            (
                "/Data/Authorisation/CompletionDateTime",
                json!("2099-01-01T00:00:00"),
                FieldInvalidDate,
                "Data.Authorisation.CompletionDateTime",
            ),
            ("/Data/ReadRefundAccount", json!("Perhaps"), FieldInvalid, "Data.ReadRefundAccount"),
            ("/Risk/PaymentContextCode", json!("Bribe"), FieldInvalid, "Risk.PaymentContextCode"),
            (
                "/Risk/DeliveryAddress/AddressLine",
                json!(["a", "b", "c"]),
                FieldInvalid,
                "Risk.DeliveryAddress.AddressLine",
            ),
            ("/Risk/DeliveryAddress/TownName", json!(null), FieldMissing, "Risk.DeliveryAddress.TownName"),
            ("/Risk/Extra", json!(1), FieldUnexpected, "Risk.Extra"),
            ("/Risk", json!(null), FieldMissing, "Risk"),
            ("/Data/Initiation", json!(null), FieldMissing, "Data.Initiation"),
        ];
        for (pointer, value, code, path) in cases {
            let mut body = payment();
            let (parent, name) = pointer.rsplit_once('/').unwrap();
            let target = body.pointer_mut(parent).unwrap().as_object_mut().unwrap();
            if value.is_null() {
                target.remove(name);
            } else {
                target.insert(name.to_owned(), value);
            }
            let err = refused(ConsentType::DomesticPayment, body, code, path);
            assert!(err.errors[0].message.contains(path), "the message names the field: {}", err.describe());
        }
    }

    #[test]
    fn account_access_consents() {
        let ok = json!({"Data": {"Permissions": ["ReadAccountsDetail", "ReadBalances"], "ExpirationDateTime": "2099-05-02T00:00:00+00:00"}, "Risk": {}});
        let request = parse(ConsentType::AccountAccess, ok).unwrap();
        assert_eq!(request.expires_at(), Some(IsoDateTime::parse("2099-05-02T00:00:00+00:00").unwrap().unix()));
        assert!(request.check_times(1_800_000_000).is_ok());
        let err = request.check_times(4_200_000_000).unwrap_err();
        assert_eq!(err.errors[0].code, ObieErrorCode::FieldInvalidDate);
        assert_eq!(err.errors[0].path.as_deref(), Some("Data.ExpirationDateTime"));

        refused(
            ConsentType::AccountAccess,
            json!({"Data": {}, "Risk": {}}),
            ObieErrorCode::FieldMissing,
            "Data.Permissions",
        );
        refused(
            ConsentType::AccountAccess,
            json!({"Data": {"Permissions": []}, "Risk": {}}),
            ObieErrorCode::FieldMissing,
            "Data.Permissions",
        );
        refused(
            ConsentType::AccountAccess,
            json!({"Data": {"Permissions": ["ReadAccountsBasic", "ReadMinds"]}, "Risk": {}}),
            ObieErrorCode::FieldInvalid,
            "Data.Permissions[1]",
        );
        refused(
            ConsentType::AccountAccess,
            json!({"Data": {"Permissions": ["ReadAccountsBasic"]}}),
            ObieErrorCode::FieldMissing,
            "Risk",
        );
        refused(
            ConsentType::AccountAccess,
            json!({"Data": {"Permissions": ["ReadAccountsBasic"]}, "Risk": {"x": 1}}),
            ObieErrorCode::FieldUnexpected,
            "Risk.x",
        );
        refused(
            ConsentType::AccountAccess,
            json!({"Data": {"Permissions": ["ReadAccountsBasic"], "ExpirationDatetime": "2099-01-01T00:00:00Z"}, "Risk": {}}),
            ObieErrorCode::FieldUnexpected,
            "Data.ExpirationDatetime",
        );
        refused(
            ConsentType::AccountAccess,
            json!({"Data": {"Permissions": ["ReadAccountsBasic"], "ExpirationDateTime": "soon"}, "Risk": {}}),
            ObieErrorCode::FieldInvalidDate,
            "Data.ExpirationDateTime",
        );
        refused(
            ConsentType::AccountAccess,
            json!({"Data": {"Permissions": ["ReadAccountsBasic", "ReadTransactionsBasic"]}, "Risk": {}}),
            ObieErrorCode::FieldExpected,
            "Data.Permissions",
        );
        refused(
            ConsentType::AccountAccess,
            json!({"Data": {"Permissions": ["ReadAccountsBasic"], "TransactionFromDateTime": "2020-01-02T00:00:00Z", "TransactionToDateTime": "2020-01-01T00:00:00Z"}, "Risk": {}}),
            ObieErrorCode::FieldInvalidDate,
            "Data.TransactionFromDateTime",
        );
        refused(
            ConsentType::AccountAccess,
            json!({"Data": {"Permissions": vec!["ReadAccountsBasic"; 65]}, "Risk": {}}),
            ObieErrorCode::FieldInvalid,
            "Data.Permissions",
        );
    }

    #[test]
    fn funds_confirmation_consents() {
        let ok = json!({"Data": {"DebtorAccount": {"SchemeName": "UK.OBIE.IBAN", "Identification": "GB29NWBK60161331926819", "Name": "Ms Smith"}, "ExpirationDateTime": "2099-01-01T00:00:00Z"}});
        let request = parse(ConsentType::FundsConfirmation, ok).unwrap();
        let ConsentBody::FundsConfirmation(f) = request.body() else { panic!() };
        assert!(f.data.debtor_account.names("UK.OBIE.IBAN", "gb29 nwbk 6016 1331 9268 19"));
        refused(ConsentType::FundsConfirmation, json!({"Data": {}}), ObieErrorCode::FieldMissing, "Data.DebtorAccount");
        refused(
            ConsentType::FundsConfirmation,
            json!({"Data": {"DebtorAccount": {"SchemeName": "UK.OBIE.IBAN"}}}),
            ObieErrorCode::FieldMissing,
            "Data.DebtorAccount.Identification",
        );
        refused(
            ConsentType::FundsConfirmation,
            json!({"Data": {"DebtorAccount": {"SchemeName": "UK.OBIE.IBAN", "Identification": "GB00NWBK60161331926819"}}}),
            ObieErrorCode::UnsupportedAccountIdentifier,
            "Data.DebtorAccount.Identification",
        );
        refused(
            ConsentType::FundsConfirmation,
            json!({"Data": {"DebtorAccount": {"SchemeName": "UK.OBIE.PAN", "Identification": "5555"}}, "Risk": {}}),
            ObieErrorCode::FieldUnexpected,
            "Risk",
        );
    }

    #[test]
    fn bodies_that_are_not_objects() {
        for body in [&b"not json"[..], b"[1]", b"", b"{\"Data\":"] {
            let err = ConsentRequest::parse(ConsentType::AccountAccess, body).unwrap_err();
            assert_eq!(err.errors[0].code, ObieErrorCode::ResourceInvalidFormat, "{}", String::from_utf8_lossy(body));
            assert!(!err.message.contains("line 1"), "{}", err.message);
        }
        let err =
            refused(ConsentType::AccountAccess, json!({"Data": "x", "Risk": {}}), ObieErrorCode::FieldInvalid, "Data");
        assert!(err.message.ends_with("expected a JSON object"), "{}", err.message);
        let err = refused(
            ConsentType::AccountAccess,
            json!({"Data": {"Permissions": "ReadBalances"}, "Risk": {}}),
            ObieErrorCode::FieldInvalid,
            "Data.Permissions",
        );
        assert!(err.message.contains("expected a JSON array"), "{}", err.message);
    }
}
