//! The 21 OBIE account-access permission codes (`OBExternalPermissions1Code`), each with the
//! sentence the consent page shows the customer, and the combinations v3.1.11 forbids.
//!
//! The rules enforced are those of the Account and Transaction API Profile v3.1.11,
//! "Consent Elements / Permissions", which an ASPSP **must** reject with a 400:
//!
//! 1. an empty Permissions array (the schema's `minItems: 1`);
//! 2. no ReadAccountsBasic or ReadAccountsDetail ("must contain at least" one of them);
//! 3. ReadTransactionsBasic or ReadTransactionsDetail without at least one of
//!    ReadTransactionsCredits and ReadTransactionsDebits;
//! 4. ReadTransactionsCredits or ReadTransactionsDebits without at least one of
//!    ReadTransactionsBasic and ReadTransactionsDetail.
//!
//! Asking for a Basic code and its Detail code together is duplication but, as the profile
//! says, not malformed: it is accepted. A code listed twice is accepted too (it changes
//! nothing) and echoed as sent.

use super::error::{ObieErrorCode, ObieErrorItem};

/// An account-access permission code.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub enum Permission {
    ReadAccountsBasic,
    ReadAccountsDetail,
    ReadBalances,
    ReadBeneficiariesBasic,
    ReadBeneficiariesDetail,
    ReadDirectDebits,
    ReadOffers,
    ReadPAN,
    ReadParty,
    ReadPartyPSU,
    ReadProducts,
    ReadScheduledPaymentsBasic,
    ReadScheduledPaymentsDetail,
    ReadStandingOrdersBasic,
    ReadStandingOrdersDetail,
    ReadStatementsBasic,
    ReadStatementsDetail,
    ReadTransactionsBasic,
    ReadTransactionsCredits,
    ReadTransactionsDebits,
    ReadTransactionsDetail,
}

impl Permission {
    pub const ALL: [Permission; 21] = [
        Permission::ReadAccountsBasic,
        Permission::ReadAccountsDetail,
        Permission::ReadBalances,
        Permission::ReadBeneficiariesBasic,
        Permission::ReadBeneficiariesDetail,
        Permission::ReadDirectDebits,
        Permission::ReadOffers,
        Permission::ReadPAN,
        Permission::ReadParty,
        Permission::ReadPartyPSU,
        Permission::ReadProducts,
        Permission::ReadScheduledPaymentsBasic,
        Permission::ReadScheduledPaymentsDetail,
        Permission::ReadStandingOrdersBasic,
        Permission::ReadStandingOrdersDetail,
        Permission::ReadStatementsBasic,
        Permission::ReadStatementsDetail,
        Permission::ReadTransactionsBasic,
        Permission::ReadTransactionsCredits,
        Permission::ReadTransactionsDebits,
        Permission::ReadTransactionsDetail,
    ];

    pub fn as_str(self) -> &'static str {
        match self {
            Permission::ReadAccountsBasic => "ReadAccountsBasic",
            Permission::ReadAccountsDetail => "ReadAccountsDetail",
            Permission::ReadBalances => "ReadBalances",
            Permission::ReadBeneficiariesBasic => "ReadBeneficiariesBasic",
            Permission::ReadBeneficiariesDetail => "ReadBeneficiariesDetail",
            Permission::ReadDirectDebits => "ReadDirectDebits",
            Permission::ReadOffers => "ReadOffers",
            Permission::ReadPAN => "ReadPAN",
            Permission::ReadParty => "ReadParty",
            Permission::ReadPartyPSU => "ReadPartyPSU",
            Permission::ReadProducts => "ReadProducts",
            Permission::ReadScheduledPaymentsBasic => "ReadScheduledPaymentsBasic",
            Permission::ReadScheduledPaymentsDetail => "ReadScheduledPaymentsDetail",
            Permission::ReadStandingOrdersBasic => "ReadStandingOrdersBasic",
            Permission::ReadStandingOrdersDetail => "ReadStandingOrdersDetail",
            Permission::ReadStatementsBasic => "ReadStatementsBasic",
            Permission::ReadStatementsDetail => "ReadStatementsDetail",
            Permission::ReadTransactionsBasic => "ReadTransactionsBasic",
            Permission::ReadTransactionsCredits => "ReadTransactionsCredits",
            Permission::ReadTransactionsDebits => "ReadTransactionsDebits",
            Permission::ReadTransactionsDetail => "ReadTransactionsDetail",
        }
    }

    pub fn parse(s: &str) -> Option<Self> {
        Self::ALL.iter().copied().find(|p| p.as_str() == s)
    }

    /// What the permission lets the TPP do, in words a customer understands, for the
    /// consent page. Written from the data cluster descriptions of the v3.1.11 profile.
    pub fn sentence(self) -> &'static str {
        match self {
            Permission::ReadAccountsBasic => "See your account names, types and currencies",
            Permission::ReadAccountsDetail => "See your account names and numbers (sort code, account number or IBAN)",
            Permission::ReadBalances => "See your account balances",
            Permission::ReadBeneficiariesBasic => "See the people and businesses you have saved as payees",
            Permission::ReadBeneficiariesDetail => {
                "See the people and businesses you have saved as payees, with their account details"
            }
            Permission::ReadDirectDebits => "See your Direct Debits",
            Permission::ReadOffers => "See the offers the bank has made you, such as overdraft or credit card offers",
            Permission::ReadPAN => "See your full card numbers",
            Permission::ReadParty => "See the names, addresses and contact details of the account holders",
            Permission::ReadPartyPSU => "See your own name, address and contact details",
            Permission::ReadProducts => {
                "See the products your accounts are, with their features, fees and interest rates"
            }
            Permission::ReadScheduledPaymentsBasic => "See the payments you have scheduled for the future",
            Permission::ReadScheduledPaymentsDetail => {
                "See the payments you have scheduled for the future, with the payees' account details"
            }
            Permission::ReadStandingOrdersBasic => "See your standing orders",
            Permission::ReadStandingOrdersDetail => "See your standing orders, with the payees' account details",
            Permission::ReadStatementsBasic => "See your statements",
            Permission::ReadStatementsDetail => "See your statements in full, and download them",
            Permission::ReadTransactionsBasic => "See your transactions (amounts, dates and references)",
            Permission::ReadTransactionsCredits => "See the money coming into your accounts",
            Permission::ReadTransactionsDebits => "See the money going out of your accounts",
            Permission::ReadTransactionsDetail => {
                "See your transactions in full, including details of who paid you and whom you paid"
            }
        }
    }
}

impl std::fmt::Display for Permission {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(self.as_str())
    }
}

/// The combinations of v3.1.11 a request breaks (see the module documentation), each as an
/// error on `Data.Permissions`. Empty when the set is valid.
pub fn check_combination(permissions: &[Permission]) -> Vec<ObieErrorItem> {
    const PATH: Option<&str> = Some("Data.Permissions");
    let has = |p: Permission| permissions.contains(&p);
    let mut problems = Vec::new();
    if permissions.is_empty() {
        problems.push(ObieErrorItem::new(
            ObieErrorCode::FieldMissing,
            "Data.Permissions must list at least one permission code, and at least ReadAccountsBasic or ReadAccountsDetail",
            PATH,
        ));
        return problems;
    }
    if !has(Permission::ReadAccountsBasic) && !has(Permission::ReadAccountsDetail) {
        problems.push(ObieErrorItem::new(
            ObieErrorCode::FieldExpected,
            "Data.Permissions must contain ReadAccountsBasic or ReadAccountsDetail (OBIE v3.1.11 Account and Transaction API Profile); add one of them",
            PATH,
        ));
    }
    let kinds = has(Permission::ReadTransactionsBasic) || has(Permission::ReadTransactionsDetail);
    let directions = has(Permission::ReadTransactionsCredits) || has(Permission::ReadTransactionsDebits);
    if kinds && !directions {
        problems.push(ObieErrorItem::new(
            ObieErrorCode::FieldExpected,
            "ReadTransactionsBasic and ReadTransactionsDetail need at least one of ReadTransactionsCredits and ReadTransactionsDebits in Data.Permissions; add the direction(s) of transactions you need",
            PATH,
        ));
    }
    if directions && !kinds {
        problems.push(ObieErrorItem::new(
            ObieErrorCode::FieldExpected,
            "ReadTransactionsCredits and ReadTransactionsDebits need at least one of ReadTransactionsBasic and ReadTransactionsDetail in Data.Permissions; add the level of detail you need",
            PATH,
        ));
    }
    problems
}

#[cfg(test)]
mod tests {
    use super::*;
    use Permission::*;

    #[test]
    fn every_code_parses_and_has_a_sentence() {
        for p in Permission::ALL {
            assert_eq!(Permission::parse(p.as_str()), Some(p));
            assert!(p.sentence().len() > 10);
        }
        assert_eq!(Permission::parse("ReadEverything"), None);
        assert_eq!(ReadBalances.sentence(), "See your account balances");
    }

    #[test]
    fn the_v3_1_11_combinations() {
        assert!(check_combination(&[ReadAccountsBasic]).is_empty());
        assert!(
            check_combination(&[ReadAccountsDetail, ReadAccountsBasic, ReadBalances]).is_empty(),
            "duplication is fine"
        );
        assert!(check_combination(&[ReadAccountsBasic, ReadTransactionsBasic, ReadTransactionsDebits]).is_empty());
        assert!(check_combination(&[ReadAccountsBasic, ReadTransactionsDetail, ReadTransactionsCredits]).is_empty());
        assert!(check_combination(&[ReadAccountsBasic, ReadAccountsBasic]).is_empty(), "a repeated code is fine");

        let missing = check_combination(&[]);
        assert_eq!(missing[0].code, ObieErrorCode::FieldMissing);
        let no_accounts = check_combination(&[ReadBalances]);
        assert!(no_accounts[0].message.contains("ReadAccountsBasic or ReadAccountsDetail"));
        for lonely in [ReadTransactionsBasic, ReadTransactionsDetail] {
            let problems = check_combination(&[ReadAccountsBasic, lonely]);
            assert_eq!(problems.len(), 1, "{lonely}");
            assert!(problems[0].message.contains("ReadTransactionsCredits"));
            assert_eq!(problems[0].path.as_deref(), Some("Data.Permissions"));
        }
        for lonely in [ReadTransactionsCredits, ReadTransactionsDebits] {
            let problems = check_combination(&[ReadAccountsBasic, lonely]);
            assert_eq!(problems.len(), 1, "{lonely}");
            assert!(problems[0].message.contains("ReadTransactionsBasic and ReadTransactionsDetail"));
        }
        assert_eq!(check_combination(&[ReadTransactionsCredits]).len(), 2, "every broken rule is reported");
    }
}
