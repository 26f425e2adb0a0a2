//! The customer's own pages: a signed-in customer sees the TPPs they have authorised (the
//! consents whose TPP can still use them) and withdraws any of them.
//!
//! The customer signs in through the same [`CustomerDirectory`] as on the login page, with
//! its lockout and limits. The session is a random cookie value stored only as a digest;
//! the forms carry a CSRF token derived from it, and every POST is also checked for a
//! same-origin `Origin` at the edge.

use std::sync::Arc;

use keyfort_core::clock::Clock;

use crate::authorization::view;
use crate::caller::Caller;
use crate::config::Config;
use crate::consent::{ConsentService, Withdrawer};
use crate::customers::{AccountLookup, CustomerDirectory, SignInRetry};
use crate::error::ServiceError;
use crate::pages::{AccessItem, AccessView, CustomerSignInView};
use crate::storage::{CustomerSession, Store};

/// Where the customer's page lives.
pub const CUSTOMER_AREA_PATH: &str = "/customer";

/// The sign-in form of the customer's page.
#[derive(Debug, Clone, Default)]
pub struct CustomerSignIn {
    pub username: String,
    pub password: String,
    pub otp: Option<String>,
}

/// What a sign-in came to.
#[derive(Debug)]
pub enum SignInAnswer {
    /// Signed in: `session` is the cookie's value, valid for `max_age` seconds.
    SignedIn { session: String, max_age: u64 },
    /// The form again, with why.
    Retry { page: CustomerSignInView, retry: SignInRetry },
}

/// What a request with a (possibly missing or stale) session cookie finds.
#[derive(Debug)]
pub enum Signed<T> {
    In(T),
    /// No live session: the customer must sign in (again).
    Out,
}

fn digest(secret: &str) -> String {
    keyfort_core::secret::hex(&keyfort_core::secret::sha256(secret.as_bytes()))
}

/// The CSRF token of a session's forms: only the holder of the cookie can know it.
fn csrf_token(session: &str) -> String {
    digest(&format!("keyfort-customer-csrf:{session}"))
}

pub struct CustomerAreaService {
    config: Arc<Config>,
    store: Arc<dyn Store>,
    directory: Arc<dyn CustomerDirectory>,
    accounts: Arc<dyn AccountLookup>,
    consents: Arc<ConsentService>,
    clock: Arc<dyn Clock>,
}

impl CustomerAreaService {
    pub fn new(
        config: Arc<Config>,
        store: Arc<dyn Store>,
        directory: Arc<dyn CustomerDirectory>,
        accounts: Arc<dyn AccountLookup>,
        consents: Arc<ConsentService>,
        clock: Arc<dyn Clock>,
    ) -> Self {
        Self { config, store, directory, accounts, consents, clock }
    }

    /// Checks the customer's credentials and opens a session.
    #[tracing::instrument(skip_all)]
    pub async fn sign_in(&self, caller: &Caller, form: CustomerSignIn) -> Result<SignInAnswer, ServiceError> {
        let otp = form.otp.as_deref().map(str::trim).filter(|otp| !otp.is_empty());
        let customer = match self.directory.sign_in(&form.username, &form.password, otp, caller.peer).await {
            Ok(customer) => customer,
            Err(refused) => {
                let retry = refused.for_customer()?;
                let page = CustomerSignInView { message: Some(retry.message.clone()), username: form.username };
                return Ok(SignInAnswer::Retry { page, retry });
            }
        };
        let session = keyfort_core::secret::random_b64url(32);
        let now = self.clock.now();
        let lifetime = self.config.customers.session;
        let record = CustomerSession {
            session_hash: digest(&session),
            customer_id: customer.id.clone(),
            customer_name: customer.username.clone(),
            csrf_hash: digest(&csrf_token(&session)),
            created_at: now,
            expires_at: now + lifetime.as_secs() as i64,
        };
        self.store.create_customer_session(&record).await?;
        tracing::info!(customer_id = %customer.id, "customer signed in to their page");
        Ok(SignInAnswer::SignedIn { session, max_age: lifetime.as_secs() })
    }

    async fn session(&self, cookie: Option<&str>) -> Result<Option<CustomerSession>, ServiceError> {
        let Some(cookie) = cookie.filter(|c| !c.is_empty()) else { return Ok(None) };
        Ok(self.store.find_customer_session(&digest(cookie), self.clock.now()).await?)
    }

    /// The session of `cookie`, if the form's `csrf_token` is its own.
    async fn session_for_form(
        &self,
        cookie: Option<&str>,
        csrf: &str,
    ) -> Result<Option<CustomerSession>, ServiceError> {
        let Some(session) = self.session(cookie).await? else { return Ok(None) };
        let sent = digest(csrf);
        if aws_lc_rs::constant_time::verify_slices_are_equal(sent.as_bytes(), session.csrf_hash.as_bytes()).is_err() {
            return Err(ServiceError::Forbidden(keyfort_core::error::OAuthError::access_denied(
                "the form is not from this session: reload the page and try again",
            )));
        }
        Ok(Some(session))
    }

    /// The page of the TPPs the signed-in customer has authorised; `notice` says what the
    /// last action did.
    pub async fn overview(
        &self,
        cookie: Option<&str>,
        notice: Option<String>,
    ) -> Result<Signed<AccessView>, ServiceError> {
        let Some(session) = self.session(cookie).await? else { return Ok(Signed::Out) };
        let accounts = self.accounts.accounts(&session.customer_id).await?;
        let mut items = Vec::new();
        for consent in self.consents.authorised_by(&session.customer_id).await? {
            // A TPP that was deleted since cannot use the consent: nothing to show.
            let Some(client) = self.store.find_client(&consent.client_id).await? else { continue };
            let tpp = view::tpp(&client);
            let (heading, lines, facts) = view::what_is_asked(&consent, &tpp.name);
            let chosen = accounts.iter().filter(|a| consent.account_ids.contains(&a.id)).map(view::account_view);
            items.push(AccessItem {
                consent_id: consent.id.clone(),
                tpp,
                heading,
                lines,
                facts,
                accounts: chosen.collect(),
            });
        }
        let csrf_token = cookie.map(csrf_token).unwrap_or_default();
        Ok(Signed::In(AccessView { customer: session.customer_name, csrf_token, items, notice }))
    }

    /// Withdraws the access of the TPP behind `consent_id`, one of the customer's consents;
    /// answers the notice to show.
    #[tracing::instrument(skip_all, fields(consent_id = %consent_id))]
    pub async fn withdraw(
        &self,
        caller: &Caller,
        cookie: Option<&str>,
        csrf: &str,
        consent_id: &str,
    ) -> Result<Signed<String>, ServiceError> {
        let Some(session) = self.session_for_form(cookie, csrf).await? else { return Ok(Signed::Out) };
        let caller = caller.clone().with_customer(session.customer_id.clone());
        let withdrawn = self.consents.withdraw(&caller, consent_id, Withdrawer::Customer(&session.customer_id)).await?;
        let name = match self.store.find_client(&withdrawn.consent.client_id).await? {
            Some(client) => client.metadata.client_name,
            None => "The app".to_owned(),
        };
        Ok(Signed::In(format!("{name} can no longer use the access you gave it.")))
    }

    /// Signs out: the session ends on every node.
    pub async fn sign_out(&self, cookie: Option<&str>, csrf: &str) -> Result<(), ServiceError> {
        if let Some(session) = self.session_for_form(cookie, csrf).await? {
            self.store.end_customer_session(&session.session_hash).await?;
        }
        Ok(())
    }
}
