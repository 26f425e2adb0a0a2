//! The customer's authorization (FAPI 1.0 Advanced, UK Open Banking): the authorization
//! endpoint's signed request object, the customer's sign-in and decision, and the hybrid
//! response (`code id_token`) back to the TPP.
//!
//! The service decides what happens next and hands the page layer a typed view; the pages
//! only render and post back. Errors found before the client and its redirect URI are
//! trusted are shown to the customer; every later one goes back to the TPP.

pub(crate) mod view;

use std::sync::Arc;

use keyfort_core::authorization::{
    half_hash, Acr, AuthorizationRequest, ClientFacts, IdTokenClaims, OuterParameters, RequestObjectRules,
};
use keyfort_core::claims::Claims;
use keyfort_core::clock::Clock;
use keyfort_core::consent::Consent;
use keyfort_core::error::{ErrorCode, OAuthError};
use keyfort_core::jose::{CompactJws, JwsError, SigningAlg};
use keyfort_core::registration::{ClientStatus, GrantType, RegisteredClient, ResponseType};
use keyfort_core::secret::lookup_digest as digest;

use crate::caller::Caller;
use crate::config::{Config, KeySource, SubjectChoice};
use crate::consent::ConsentService;
use crate::customers::{AccountLookup, CustomerDirectory};
use crate::directory::JwksCache;
use crate::error::ServiceError;
use crate::pages::{ConsentView, LoginView};
use crate::signing::KeyRing;
use crate::storage::{AuthorizationSession, CodeRecord, GrantRecord, Store};

pub use view::{Decision, DecisionForm, SignInForm};

/// Where the authorization endpoint lives.
pub const AUTHORIZATION_PATH: &str = "/oauth2/authorize";

/// The algorithms a request object may be signed with (FAPI 1.0 Advanced §8.6).
pub const REQUEST_OBJECT_ALGS: [SigningAlg; 2] = [SigningAlg::PS256, SigningAlg::ES256];

/// The parameters of a call to the authorization endpoint (query or form).
#[derive(Debug, Default, Clone)]
pub struct AuthorizeParams {
    pub client_id: Option<String>,
    pub request: Option<String>,
    pub request_uri: Option<String>,
    pub response_type: Option<String>,
    pub scope: Option<String>,
}

/// What went wrong, and where the customer is sent because of it.
#[derive(Debug)]
pub enum AuthorizationFailure {
    /// Shown on the bank's error page: the client, its request object or its redirect URI
    /// cannot be trusted, or the customer's session is gone.
    Page(OAuthError),
    /// Sent back to the TPP: `location` is its redirect URI with the error in the fragment.
    Redirect { location: String, error: OAuthError },
    /// A fault of this server or a dependency: the error page, mapped like any service error.
    Service(ServiceError),
}

impl From<ServiceError> for AuthorizationFailure {
    fn from(e: ServiceError) -> Self {
        AuthorizationFailure::Service(e)
    }
}

impl From<crate::storage::StoreError> for AuthorizationFailure {
    fn from(e: crate::storage::StoreError) -> Self {
        AuthorizationFailure::Service(e.into())
    }
}

/// An authorization that passed every check: the customer signs in next.
pub struct Started {
    /// The session cookie's value (the `__Host-` cookie ties the pages to this request).
    pub session: String,
    pub login: LoginView,
    /// Where the customer's browser is sent back to (the page's forms may lead there).
    pub redirect_uri: String,
}

/// What follows a sign-in attempt.
pub enum SignInOutcome {
    /// Signed in: show the consent page.
    Consent,
    /// Show the login page again with a message; `retry_after` when the customer must wait.
    Retry { login: LoginView, retry_after: Option<std::time::Duration>, busy: bool, redirect_uri: String },
    /// Cancelled by the customer: back to the TPP with `access_denied`.
    Cancelled { location: String },
}

/// What follows a decision on the consent page.
pub enum DecisionOutcome {
    /// Back to the TPP: the hybrid response, or `access_denied`.
    Redirect { location: String },
    /// The choice was incomplete (no account chosen): the consent page again.
    Retry { consent: Box<ConsentView>, redirect_uri: String },
}

pub struct AuthorizationService {
    config: Arc<Config>,
    store: Arc<dyn Store>,
    keys: Arc<JwksCache>,
    ring: Arc<KeyRing>,
    consents: Arc<ConsentService>,
    customers: Arc<dyn CustomerDirectory>,
    accounts: Arc<dyn AccountLookup>,
    clock: Arc<dyn Clock>,
}

/// The TPP's redirect URI, with the parameters of the response (or error) in the fragment,
/// as the hybrid flow requires (OpenID Connect Core §3.3.2.5).
fn fragment_redirect(redirect_uri: &str, parameters: &[(&str, &str)]) -> String {
    let fragment = url::form_urlencoded::Serializer::new(String::new()).extend_pairs(parameters).finish();
    format!("{redirect_uri}#{fragment}")
}

fn error_redirect(redirect_uri: &str, state: Option<&str>, error: OAuthError) -> AuthorizationFailure {
    let mut parameters = vec![("error", error.code.as_str()), ("error_description", error.description.as_str())];
    if let Some(state) = state {
        parameters.push(("state", state));
    }
    let location = fragment_redirect(redirect_uri, &parameters);
    AuthorizationFailure::Redirect { location, error }
}

fn page(code: ErrorCode, description: impl Into<String>) -> AuthorizationFailure {
    AuthorizationFailure::Page(OAuthError::new(code, description))
}

/// The CSRF token of an authorization's forms.
fn csrf_token(session: &str) -> String {
    keyfort_core::secret::csrf_token("authorization", session)
}

impl AuthorizationService {
    #[allow(clippy::too_many_arguments)]
    pub fn new(
        config: Arc<Config>,
        store: Arc<dyn Store>,
        keys: Arc<JwksCache>,
        ring: Arc<KeyRing>,
        consents: Arc<ConsentService>,
        customers: Arc<dyn CustomerDirectory>,
        accounts: Arc<dyn AccountLookup>,
        clock: Arc<dyn Clock>,
    ) -> Self {
        Self { config, store, keys, ring, consents, customers, accounts, clock }
    }

    /// `GET`/`POST /oauth2/authorize`: checks the signed request object and the consent it
    /// names, and opens a session for the customer's sign-in.
    #[tracing::instrument(skip_all, fields(client_id = params.client_id.as_deref().unwrap_or("-"), consent_id))]
    pub async fn begin(&self, params: AuthorizeParams) -> Result<Started, AuthorizationFailure> {
        if params.request_uri.is_some() {
            return Err(page(
                ErrorCode::RequestUriNotSupported,
                "request_uri is not supported: send the signed request object by value in the request parameter",
            ));
        }
        let client_id =
            params.client_id.clone().ok_or_else(|| page(ErrorCode::InvalidRequest, "client_id is required"))?;
        let client = match self.store.find_client(&client_id).await? {
            Some(client) if client.status == ClientStatus::Active => client,
            _ => {
                return Err(page(
                    ErrorCode::InvalidRequest,
                    format!("client \"{}\" is not registered", short(&client_id)),
                ))
            }
        };
        let request_object = params.request.as_deref().ok_or_else(|| {
            page(
                ErrorCode::InvalidRequest,
                "the request parameter is required: send the authorization request as a signed request object (RFC 9101)",
            )
        })?;
        let claims = self.verify_request_object(&client, request_object).await?;
        let redirect_uri = AuthorizationRequest::trusted_redirect_uri(&claims, &client.metadata.redirect_uris)
            .map_err(AuthorizationFailure::Page)?;
        // From here on the TPP is told, at the redirect URI it registered.
        let state = AuthorizationRequest::state(&claims);
        let refuse = |error: OAuthError| error_redirect(redirect_uri.as_str(), state.as_deref(), error);
        if !client.metadata.grant_types.contains(&GrantType::AuthorizationCode)
            || !client.metadata.response_types.contains(&ResponseType::CodeIdToken)
        {
            return Err(refuse(OAuthError::new(
                ErrorCode::UnauthorizedClient,
                "this client did not register the authorization_code grant and the \"code id_token\" response type",
            )));
        }
        let outer = OuterParameters {
            client_id: Some(client_id.clone()),
            response_type: params.response_type.clone(),
            scope: params.scope.clone(),
        };
        let facts = ClientFacts {
            client_id: &client.client_id,
            registered_scopes: &client.metadata.scope,
            pkce_mandatory: client.metadata.pkce_mandatory,
        };
        let rules = RequestObjectRules::fapi(&self.config.server.public_url, self.config.dcr.policy.clock_skew);
        let request = AuthorizationRequest::from_request_object(
            &claims,
            redirect_uri.clone(),
            &outer,
            &facts,
            &rules,
            self.clock.now(),
        )
        .map_err(&refuse)?;
        tracing::Span::current().record("consent_id", request.intent_id.as_str());
        let consent = self.authorisable_consent(&request).await?;

        let session = keyfort_core::secret::random_b64url(32);
        let now = self.clock.now();
        let record = AuthorizationSession {
            session_hash: digest(&session),
            request: serde_json::to_string(&request).map_err(|e| ServiceError::Internal(e.into()))?,
            csrf_hash: digest(&csrf_token(&session)),
            customer_id: None,
            customer_name: None,
            auth_time: None,
            acr: None,
            created_at: now,
            expires_at: now + self.config.authorization.session_lifetime.as_secs() as i64,
            completed_at: None,
        };
        self.store.create_authorization_session(&record).await?;
        tracing::info!(kind = consent.kind.as_str(), "authorization started");
        let login = view::login(&client, &consent, csrf_token(&session), None, String::new());
        Ok(Started { session, login, redirect_uri: request.redirect_uri.as_str().to_owned() })
    }

    /// Verifies a request object's signature with the client's registered keys: `kid`
    /// required, `alg` PS256 or ES256 and the client's registered one if it registered one.
    async fn verify_request_object(
        &self,
        client: &RegisteredClient,
        token: &str,
    ) -> Result<Claims, AuthorizationFailure> {
        let invalid = |e: JwsError| page(ErrorCode::InvalidRequestObject, format!("the request object {e}"));
        let jws = CompactJws::parse(token).map_err(invalid)?;
        let allowed: Vec<SigningAlg> = match client.metadata.request_object_signing_alg {
            Some(registered) => vec![registered],
            None => REQUEST_OBJECT_ALGS.to_vec(),
        };
        jws.check_alg(&allowed).map_err(invalid)?;
        jws.check_alg(&REQUEST_OBJECT_ALGS).map_err(invalid)?;
        let kid = jws.header().kid.clone().ok_or_else(|| invalid(JwsError::MissingKid))?;
        let jwks_uri = client.metadata.jwks_uri.clone().ok_or_else(|| {
            page(ErrorCode::InvalidRequestObject, "the client has no registered jwks_uri to verify its request object")
        })?;
        if !self.config.dcr.software_jwks_origins.allows(&jwks_uri) {
            return Err(page(ErrorCode::InvalidRequestObject, "the client's jwks_uri is not on an allowed key host"));
        }
        let keys = self
            .keys
            .keys(&KeySource::Url(jwks_uri), Some(&kid))
            .await
            .map_err(|e| ServiceError::unavailable("the app's signing keys (its JWKS) cannot be fetched now", e))?;
        jws.verify(&keys, &allowed, true).map_err(invalid)
    }

    /// The consent the request names, if this client may have it authorised now.
    async fn authorisable_consent(&self, request: &AuthorizationRequest) -> Result<Consent, AuthorizationFailure> {
        let refuse = |error: OAuthError| error_redirect(request.redirect_uri.as_str(), request.state.as_deref(), error);
        let consent =
            match self.consents.for_authorization(&request.client_id, &request.intent_id, self.clock.now()).await {
                Ok(consent) => consent,
                Err(ServiceError::Refused(error)) => return Err(refuse(error)),
                Err(ServiceError::Obie(error)) => return Err(refuse(OAuthError::access_denied(error.describe()))),
                Err(other) => return Err(other.into()),
            };
        let scope = consent.kind.scope();
        if !request.scopes.iter().any(|s| s == scope) {
            return Err(refuse(OAuthError::new(
                ErrorCode::InvalidScope,
                format!("consent {} is a {} consent: ask for scope {scope}", consent.id, consent.kind.as_str()),
            )));
        }
        Ok(consent)
    }

    /// The open session of a cookie, with its request. Gone or used up: the error page.
    async fn session(
        &self,
        cookie: Option<&str>,
    ) -> Result<(AuthorizationSession, AuthorizationRequest), AuthorizationFailure> {
        let gone = || {
            page(
                ErrorCode::LoginRequired,
                "this sign-in has expired or was already completed; go back to the app you came from and start again",
            )
        };
        let cookie = cookie.ok_or_else(gone)?;
        let session = self.store.find_authorization_session(&digest(cookie)).await?.ok_or_else(gone)?;
        let request: AuthorizationRequest =
            serde_json::from_str(&session.request).map_err(|e| ServiceError::Internal(e.into()))?;
        if session.completed_at.is_some() {
            return Err(gone());
        }
        if session.expires_at <= self.clock.now() {
            return Err(error_redirect(
                request.redirect_uri.as_str(),
                request.state.as_deref(),
                OAuthError::access_denied("the customer did not sign in and decide in time"),
            ));
        }
        Ok((session, request))
    }

    fn check_csrf(session: &AuthorizationSession, sent: &str) -> Result<(), AuthorizationFailure> {
        let sent = digest(sent);
        if aws_lc_rs::constant_time::verify_slices_are_equal(sent.as_bytes(), session.csrf_hash.as_bytes()).is_err() {
            return Err(page(
                ErrorCode::AccessDenied,
                "the form was not sent from this bank's sign-in page; go back to the app you came from and start again",
            ));
        }
        Ok(())
    }

    async fn client(&self, client_id: &str) -> Result<RegisteredClient, AuthorizationFailure> {
        match self.store.find_client(client_id).await? {
            Some(client) if client.status == ClientStatus::Active => Ok(client),
            _ => Err(page(ErrorCode::AccessDenied, "the app asking for access is no longer registered with this bank")),
        }
    }

    /// `POST /oauth2/authorize/login`: the customer signs in, or cancels.
    #[tracing::instrument(skip_all, fields(consent_id))]
    pub async fn sign_in(
        &self,
        caller: &Caller,
        cookie: Option<&str>,
        form: view::SignInForm,
    ) -> Result<SignInOutcome, AuthorizationFailure> {
        let (session, request) = self.session(cookie).await?;
        Self::check_csrf(&session, &form.csrf_token)?;
        tracing::Span::current().record("consent_id", request.intent_id.as_str());
        let refuse = |error: OAuthError| error_redirect(request.redirect_uri.as_str(), request.state.as_deref(), error);
        let client = self.client(&request.client_id).await?;
        let consent = self.authorisable_consent(&request).await?;
        if form.cancelled {
            return self
                .cancel(caller, &session, &request, None)
                .await
                .map(|location| SignInOutcome::Cancelled { location });
        }
        let retry = |message: &str| {
            view::login(
                &client,
                &consent,
                csrf_token(cookie.unwrap_or_default()),
                Some(message.to_owned()),
                form.username.clone(),
            )
        };
        let otp = form.otp.as_deref().map(str::trim).filter(|otp| !otp.is_empty());
        let customer = match self.customers.sign_in(&form.username, &form.password, otp, caller.peer).await {
            Ok(customer) => customer,
            Err(refused) => {
                let told = refused.for_customer()?;
                return Ok(SignInOutcome::Retry {
                    login: retry(&told.message),
                    retry_after: told.retry_after,
                    busy: told.busy,
                    redirect_uri: request.redirect_uri.as_str().to_owned(),
                });
            }
        };
        let acr = if customer.second_factor { Acr::Sca } else { Acr::Ca };
        if !request.acr().accepts(acr) {
            let error = OAuthError::access_denied(format!(
                "the TPP asked for {}, and this customer could only be authenticated at {}",
                request.acr_values.join(" or "),
                acr.as_str()
            ));
            return self
                .cancel(caller, &session, &request, Some(error))
                .await
                .map(|location| SignInOutcome::Cancelled { location });
        }
        let now = self.clock.now();
        if !self
            .store
            .sign_in_authorization_session(
                &session.session_hash,
                &customer.id,
                &customer.username,
                now,
                acr.as_str(),
                now,
            )
            .await?
        {
            return Err(refuse(OAuthError::access_denied("the sign-in could not be recorded; start again")));
        }
        tracing::info!(acr = acr.as_str(), "customer signed in for an authorization");
        Ok(SignInOutcome::Consent)
    }

    /// The customer cancels or the request cannot be met: the consent is rejected, the
    /// session completed, and the TPP told `access_denied`.
    async fn cancel(
        &self,
        caller: &Caller,
        session: &AuthorizationSession,
        request: &AuthorizationRequest,
        error: Option<OAuthError>,
    ) -> Result<String, AuthorizationFailure> {
        let error = error.unwrap_or_else(|| OAuthError::access_denied("the customer did not give their consent"));
        if self.store.complete_authorization_session(&session.session_hash, self.clock.now()).await? {
            let caller = match &session.customer_id {
                Some(customer) => caller.clone().with_customer(customer.clone()),
                None => caller.clone(),
            };
            self.consents.reject(&caller, &request.intent_id, session.customer_id.as_deref()).await?;
        }
        match error_redirect(request.redirect_uri.as_str(), request.state.as_deref(), error) {
            AuthorizationFailure::Redirect { location, .. } => Ok(location),
            other => Err(other),
        }
    }

    /// `GET /oauth2/authorize/consent`: what the signed-in customer is asked to allow, and
    /// the redirect URI the decision leads to.
    pub async fn consent_page(&self, cookie: Option<&str>) -> Result<(ConsentView, String), AuthorizationFailure> {
        let (session, request) = self.session(cookie).await?;
        let customer_id = session.customer_id.clone().ok_or_else(|| {
            page(ErrorCode::LoginRequired, "sign in first: go back to the app you came from and start again")
        })?;
        let client = self.client(&request.client_id).await?;
        let consent = self.authorisable_consent(&request).await?;
        let customer_name = session.customer_name.clone().unwrap_or_default();
        let accounts = self.accounts.accounts(&customer_id).await?;
        let view =
            view::consent(&client, &consent, &customer_name, &accounts, csrf_token(cookie.unwrap_or_default()), None)
                .map_err(|error| error_redirect(request.redirect_uri.as_str(), request.state.as_deref(), error))?;
        Ok((view, request.redirect_uri.as_str().to_owned()))
    }

    /// `POST /oauth2/authorize/consent`: the customer allows or denies. Allowing authorises
    /// the consent with the chosen accounts and sends the TPP a code and an ID token.
    #[tracing::instrument(skip_all, fields(consent_id))]
    pub async fn decide(
        &self,
        caller: &Caller,
        cookie: Option<&str>,
        form: view::DecisionForm,
    ) -> Result<DecisionOutcome, AuthorizationFailure> {
        let (session, request) = self.session(cookie).await?;
        Self::check_csrf(&session, &form.csrf_token)?;
        tracing::Span::current().record("consent_id", request.intent_id.as_str());
        let refuse = |error: OAuthError| error_redirect(request.redirect_uri.as_str(), request.state.as_deref(), error);
        let (Some(customer_id), Some(auth_time), Some(acr)) =
            (session.customer_id.clone(), session.auth_time, session.acr.clone())
        else {
            return Err(page(
                ErrorCode::LoginRequired,
                "sign in first: go back to the app you came from and start again",
            ));
        };
        let caller = caller.clone().with_customer(customer_id.clone());
        let client = self.client(&request.client_id).await?;
        let consent = self.authorisable_consent(&request).await?;
        if form.decision == Decision::Deny {
            let location = self.cancel(&caller, &session, &request, None).await?;
            return Ok(DecisionOutcome::Redirect { location });
        }
        let accounts = self.accounts.accounts(&customer_id).await?;
        let chosen = match view::chosen_accounts(&consent, &accounts, &form.accounts) {
            Ok(chosen) => chosen,
            Err(message) => {
                let consent = view::consent(
                    &client,
                    &consent,
                    session.customer_name.as_deref().unwrap_or_default(),
                    &accounts,
                    form.csrf_token.clone(),
                    Some(message),
                )
                .map_err(&refuse)?;
                return Ok(DecisionOutcome::Retry {
                    consent: Box::new(consent),
                    redirect_uri: request.redirect_uri.as_str().to_owned(),
                });
            }
        };
        let now = self.clock.now();
        if !self.store.complete_authorization_session(&session.session_hash, now).await? {
            return Err(page(
                ErrorCode::LoginRequired,
                "this request was already decided; go back to the app you came from",
            ));
        }
        match self.consents.authorise(&caller, &consent.id, &customer_id, &chosen).await {
            Ok(_) => {}
            Err(ServiceError::Refused(error)) => return Err(refuse(error)),
            Err(other) => return Err(other.into()),
        }
        let location = self.issue_code(&client, &request, &consent, &customer_id, auth_time, &acr).await?;
        tracing::info!(accounts = chosen.len(), "consent authorised; code issued");
        Ok(DecisionOutcome::Redirect { location })
    }

    /// The hybrid response: a code bound to everything it must be bound to, and an ID token
    /// that signs the code (`c_hash`) and `state` (`s_hash`).
    async fn issue_code(
        &self,
        client: &RegisteredClient,
        request: &AuthorizationRequest,
        consent: &Consent,
        customer_id: &str,
        auth_time: i64,
        acr: &str,
    ) -> Result<String, AuthorizationFailure> {
        let now = self.clock.now();
        let code = keyfort_core::secret::random_b64url(32);
        let grant = GrantRecord {
            grant_id: keyfort_core::secret::random_b64url(16),
            client_id: client.client_id.clone(),
            consent_id: consent.id.clone(),
            customer_id: customer_id.to_owned(),
            scope: request.scopes.join(" "),
            created_at: now,
            revoked_at: None,
        };
        let record = CodeRecord {
            code_hash: digest(&code),
            grant_id: grant.grant_id.clone(),
            redirect_uri: request.redirect_uri.as_str().to_owned(),
            nonce: request.nonce.clone(),
            acr: acr.to_owned(),
            auth_time,
            code_challenge: request.code_challenge.as_ref().map(|c| c.as_str().to_owned()),
            expires_at: now + self.config.authorization.code_lifetime.as_secs() as i64,
            redeemed_at: None,
        };
        self.store.create_grant_with_code(&grant, &record).await?;
        let alg = client.metadata.id_token_signed_response_alg.unwrap_or(SigningAlg::PS256);
        let key = self
            .ring
            .signing_key_for(alg)
            .ok_or_else(|| ServiceError::Internal(anyhow::anyhow!("no signing key for ID tokens with {alg}")))?;
        let claims = IdTokenClaims {
            issuer: self.config.server.public_url.clone(),
            subject: self.subject(customer_id, &consent.id),
            audience: client.client_id.clone(),
            issued_at: now,
            expires_at: now + self.config.token_lifetimes.id_token,
            auth_time,
            nonce: request.nonce.clone(),
            acr: acr.to_owned(),
            intent_id: consent.id.clone(),
            c_hash: Some(half_hash(alg, &code)),
            s_hash: request.state.as_deref().map(|state| half_hash(alg, state)),
            at_hash: None,
        };
        let id_token = key.sign_jwt(&claims.to_json(), "JWT");
        let mut parameters = vec![("code", code.as_str()), ("id_token", id_token.as_str())];
        if let Some(state) = &request.state {
            parameters.push(("state", state));
        }
        Ok(fragment_redirect(request.redirect_uri.as_str(), &parameters))
    }

    /// The ID token's `sub`, per `[authorization] subject`.
    pub fn subject(&self, customer_id: &str, consent_id: &str) -> String {
        match self.config.authorization.subject {
            SubjectChoice::Customer => customer_id.to_owned(),
            SubjectChoice::Consent => consent_id.to_owned(),
        }
    }
}

fn short(text: &str) -> String {
    text.chars().take(64).collect()
}
