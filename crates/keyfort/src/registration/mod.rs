//! Dynamic Client Registration as a service: verify the software statement and the signed
//! request against the right keys, apply the policy, and store the client durably with its
//! audit line. The HTTP handler only reads the body and hands it here with the caller.

use std::sync::Arc;

use keyfort_core::claims::Claims;
use keyfort_core::clock::Clock;
use keyfort_core::error::{ErrorCode, OAuthError};
use keyfort_core::jose::{CompactJws, JwsError};
use keyfort_core::registration::{Approved, IssuedCredentials, RegisteredClient, RegistrationRequest, RequestForm};
use keyfort_core::registration::{AuthMethod, BoundCertificate};
use keyfort_core::software_statement::SoftwareStatement;
use keyfort_core::transport::CertificateIdentity;
use url::Url;

mod management;

pub use management::ManagedClient;

use crate::audit::{AuditAction, Auditor};
use crate::caller::Caller;
use crate::config::{Config, KeySource};
use crate::directory::JwksCache;
use crate::error::ServiceError;
use crate::storage::{CreateClientError, ReplayRecord, Store};
use crate::token::TokenService;

/// The path of the registration endpoint, as in WSO2 Identity Server.
pub const REGISTRATION_PATH: &str = "/api/identity/oauth2/dcr/v1.1/register";

pub struct RegistrationService {
    config: Arc<Config>,
    store: Arc<dyn Store>,
    keys: Arc<JwksCache>,
    clock: Arc<dyn Clock>,
    auditor: Arc<Auditor>,
    /// Checks the client access tokens presented to manage a registration (OBIE).
    tokens: Arc<TokenService>,
}

/// A registration request as it arrived: its form (from `Content-Type`) and its body.
pub struct Submission<'a> {
    pub form: RequestForm,
    pub body: &'a [u8],
}

/// A request that passed every check, ready to store.
struct CheckedRequest {
    approved: Approved,
    software_statement: Option<String>,
    replay: ReplayRecord,
    /// `client_id` sent in the body (only meaningful on update).
    client_id: Option<String>,
}

fn bound(cert: &CertificateIdentity) -> BoundCertificate {
    BoundCertificate { thumbprint_s256: cert.thumbprint_s256.clone(), subject: cert.subject.to_string() }
}

fn storage_refusal(e: CreateClientError, replay: &ReplayRecord, software_id: Option<&str>) -> ServiceError {
    match e {
        CreateClientError::JtiReplayed => OAuthError::invalid_client_metadata(format!(
            "jti \"{}\" has already been used by {}; every registration request needs a new jti",
            replay.jti, replay.issuer
        ))
        .into(),
        CreateClientError::SoftwareAlreadyRegistered => OAuthError::invalid_client_metadata(format!(
            "software_id \"{}\" already has an active registration at this bank; update it with PUT on its registration_client_uri, or DELETE it before registering again",
            software_id.unwrap_or_default()
        ))
        .into(),
        CreateClientError::Store(e) => e.into(),
    }
}

/// A registration that was stored, with the secrets to show once.
pub struct Registered {
    pub client: RegisteredClient,
    pub credentials: IssuedCredentials,
}

impl RegistrationService {
    pub fn new(
        config: Arc<Config>,
        store: Arc<dyn Store>,
        keys: Arc<JwksCache>,
        clock: Arc<dyn Clock>,
        auditor: Arc<Auditor>,
        tokens: Arc<TokenService>,
    ) -> Self {
        Self { config, store, keys, clock, auditor, tokens }
    }

    pub fn registration_client_uri(&self, client_id: &str) -> String {
        format!("{}{REGISTRATION_PATH}/{client_id}", self.config.server.public_url)
    }

    /// Records a request the edge refused before the service could look at it (a body that
    /// is too large, the wrong content type, failed administrator credentials).
    pub async fn refused_at_edge(
        &self,
        action: AuditAction,
        caller: &Caller,
        client_id: Option<&str>,
        error: &ServiceError,
    ) {
        self.auditor.refusal(action, caller, client_id, error).await;
    }

    /// Registers a client. The registration, its `jti` and its audit line commit together;
    /// a refusal is audited on its own.
    #[tracing::instrument(skip_all, fields(client_id, software_id, org_id))]
    pub async fn register(&self, caller: &Caller, submission: Submission<'_>) -> Result<Registered, ServiceError> {
        let outcome = self.register_checked(caller, submission).await;
        if let Err(error) = &outcome {
            self.auditor.refusal(AuditAction::Register, caller, None, error).await;
        }
        outcome
    }

    async fn register_checked(&self, caller: &Caller, submission: Submission<'_>) -> Result<Registered, ServiceError> {
        let certificate = caller.certificate()?;
        // The edge checks administrator credentials when the configuration asks for them; a
        // caller that reaches here without them is refused, whatever the edge did.
        if self.config.dcr.authentication_required && caller.administrator.is_none() {
            return Err(crate::admin::unauthorized(
                "administrator credentials are required: send Authorization: Basic",
            ));
        }
        let now = self.clock.now();
        let checked = self
            .check_request(submission.form, submission.body, certificate, caller.administrator.is_some(), now)
            .await?;
        let (mut client, credentials) = RegisteredClient::new(checked.approved, checked.software_statement, now);
        client.transport_certificate = certificate.map(bound);
        record_client_fields(&client);
        let audit = self.auditor.success(AuditAction::Register, caller, &client);
        self.store
            .create_client(&client, &checked.replay, self.config.dcr.one_registration_per_software, &audit)
            .await
            .map_err(|e| storage_refusal(e, &checked.replay, client.software_id.as_deref()))?;
        tracing::info!(auth_method = %client.metadata.token_endpoint_auth_method, "client registered");
        Ok(Registered { client, credentials })
    }

    /// RFC 7592 / OBIE PUT: the whole request again, held to every registration rule. The
    /// client keeps its identifier, secrets and registration access token. The change and
    /// its audit line commit together; a refusal is audited on its own.
    #[tracing::instrument(skip_all, fields(client_id, software_id, org_id))]
    pub async fn update(
        &self,
        caller: &Caller,
        managed: ManagedClient,
        submission: Submission<'_>,
    ) -> Result<RegisteredClient, ServiceError> {
        let current = managed.client();
        record_client_fields(current);
        let outcome = self.update_checked(caller, current, submission).await;
        if let Err(error) = &outcome {
            self.auditor.refusal(AuditAction::Update, caller, Some(&current.client_id), error).await;
        }
        outcome
    }

    async fn update_checked(
        &self,
        caller: &Caller,
        current: &RegisteredClient,
        submission: Submission<'_>,
    ) -> Result<RegisteredClient, ServiceError> {
        let certificate = caller.certificate()?;
        let now = self.clock.now();
        // The caller proved itself with this client's registration or access token.
        let checked = self.check_request(submission.form, submission.body, certificate, true, now).await?;
        if let Some(sent) = &checked.client_id {
            if *sent != current.client_id {
                return Err(OAuthError::invalid_client_metadata(format!(
                    "client_id \"{sent}\" in the body differs from the client being updated (\"{}\")",
                    current.client_id
                ))
                .into());
            }
        }
        if checked.approved.software_id != current.software_id {
            return Err(OAuthError::invalid_software_statement(format!(
                "this registration belongs to software_id \"{}\"; the update's software statement is for \"{}\"",
                current.software_id.as_deref().unwrap_or("-"),
                checked.approved.software_id.as_deref().unwrap_or("-")
            ))
            .into());
        }
        let mut updated = current.clone();
        updated.metadata = checked.approved.metadata;
        updated.software_roles = checked.approved.software_roles;
        updated.software_statement = checked.software_statement;
        if let Some(cert) = certificate {
            updated.transport_certificate = Some(bound(cert));
        }
        if updated.metadata.token_endpoint_auth_method.uses_client_secret() != current.client_secret_hash.is_some() {
            return Err(OAuthError::invalid_client_metadata(
                "token_endpoint_auth_method cannot change between secret-based and key-based methods in an update; register again",
            )
            .into());
        }
        let audit = self.auditor.success(AuditAction::Update, caller, &updated);
        self.store
            .update_client(&updated, &checked.replay, now, &audit)
            .await
            .map_err(|e| storage_refusal(e, &checked.replay, updated.software_id.as_deref()))?;
        tracing::info!("registration updated");
        Ok(updated)
    }

    /// Everything a registration or update must pass before it is stored.
    async fn check_request(
        &self,
        form: RequestForm,
        body: &[u8],
        certificate: Option<&CertificateIdentity>,
        caller_proven: bool,
        now: i64,
    ) -> Result<CheckedRequest, ServiceError> {
        let dcr = &self.config.dcr;
        // A software statement is not a secret (every bank the TPP joins holds a copy), so an
        // unsigned request carrying one proves nothing about who sends it. It needs the
        // transport certificate (bound to the SSA below), an administrator, or the request
        // must be signed with the software's key.
        if form == RequestForm::Json && certificate.is_none() && !caller_proven && !dcr.allow_json_without_proof {
            return Err(OAuthError::new(
                ErrorCode::InvalidClient,
                "an unsigned (application/json) registration must come over mutual TLS with the software's transport certificate, or with administrator credentials; otherwise send it as a JWT signed with the software's key (application/jose)",
            )
            .into());
        }
        if dcr.require_transport_certificate && certificate.is_none() {
            return Err(OAuthError::new(
                ErrorCode::InvalidClient,
                "registration requires mutual TLS: connect with your transport certificate (issued by the Open Banking directory or an eIDAS QTSP)",
            )
            .into());
        }
        let (claims, signed_request) = match form {
            RequestForm::Json => (
                Claims::from_json_object(body)
                    .map_err(|why| OAuthError::invalid_client_metadata(format!("the request body {why}")))?,
                None,
            ),
            RequestForm::SignedJwt => {
                let text = std::str::from_utf8(body)
                    .map_err(|_| OAuthError::invalid_client_metadata("the request body is not UTF-8 text"))?;
                let jws = CompactJws::parse(text)
                    .map_err(|e| OAuthError::invalid_client_metadata(format!("the registration request {e}")))?;
                let claims = jws
                    .unverified_claims()
                    .map_err(|e| OAuthError::invalid_client_metadata(format!("the registration request {e}")))?;
                (claims, Some(jws))
            }
        };
        let request = RegistrationRequest::from_claims(&claims)?;
        let client_id = claims.string("client_id").map_err(|e| OAuthError::invalid_client_metadata(e.to_string()))?;
        let policy = &dcr.policy;

        let ssa = match &request.software_statement {
            Some(raw) => {
                let ssa = self.verify_software_statement(raw, now).await?;
                // From here on a refusal (a certificate of another organisation, say) is
                // logged and audited with the software and organisation it was about.
                crate::telemetry::note_software(Some(&ssa.software_id), Some(&ssa.org_id));
                Some(ssa)
            }
            None if policy.mandate_ssa => {
                return Err(OAuthError::invalid_software_statement(
                    "software_statement is required: include the SSA issued by the Open Banking directory",
                )
                .into())
            }
            None => None,
        };

        if let Some(jws) = &signed_request {
            let Some(ssa) = &ssa else {
                return Err(OAuthError::invalid_software_statement(
                    "a signed registration request must carry a software_statement: its software_jwks_endpoint holds the key that signed the request",
                )
                .into());
            };
            self.verify_request_signature(jws, ssa).await?;
        }

        if let (Some(cert), Some(ssa)) = (certificate, &ssa) {
            cert.check_binding(ssa, dcr.binding).map_err(|mismatch| {
                ServiceError::Forbidden(OAuthError::unapproved_software_statement(format!(
                    "{mismatch}; register with the transport certificate of the software statement's organisation and software"
                )))
            })?;
        }

        let approved = policy.evaluate(&request, ssa.as_ref(), form, now)?;
        // A tls_client_auth client is recognised at the token endpoint by its certificate's
        // subject: registering a DN that is not the subject of the certificate sent with the
        // registration would only fail at every token request, so it is refused here.
        if let (Some(registered), Some(cert)) = (&approved.metadata.tls_client_auth_subject_dn, certificate) {
            if approved.metadata.token_endpoint_auth_method == AuthMethod::TlsClientAuth && *registered != cert.subject
            {
                return Err(OAuthError::invalid_client_metadata(format!(
                    "tls_client_auth_subject_dn \"{registered}\" is not the subject of the transport certificate \
                     presented with this registration (\"{}\"); register the subject of the certificate you will call the \
                     token endpoint with",
                    cert.subject
                ))
                .into());
            }
        }
        let replay = ReplayRecord {
            issuer: approved.jti_issuer.clone(),
            jti: approved.jti.clone(),
            expires_at: approved.jti_expires_at,
            recorded_at: now,
        };
        Ok(CheckedRequest { approved, software_statement: request.software_statement, replay, client_id })
    }

    /// Whether every configured directory JWKS can be had (cached or fetched).
    pub async fn directory_keys_ready(&self) -> Result<(), String> {
        for source in &self.config.dcr.ssa_jwks {
            self.keys.keys(source, None).await.map_err(|e| e.to_string())?;
        }
        Ok(())
    }

    /// Verifies the SSA's signature with the directory key named by its `kid`, then its claims.
    async fn verify_software_statement(&self, raw: &str, now: i64) -> Result<SoftwareStatement, ServiceError> {
        let ssa_error = |e: JwsError| OAuthError::invalid_software_statement(format!("software_statement {e}"));
        let jws = CompactJws::parse(raw).map_err(ssa_error)?;
        let dcr = &self.config.dcr;
        // Refuse before any key lookup: no fetch for an algorithm that cannot pass.
        jws.check_alg(&dcr.ssa_signing_algs).map_err(ssa_error)?;
        let kid = jws.header().kid.clone().ok_or_else(|| ssa_error(JwsError::MissingKid))?;
        let keys = self.directory_keys_with_kid(&kid).await?;
        let claims = jws.verify(&keys, &dcr.ssa_signing_algs, true).map_err(ssa_error)?;
        Ok(SoftwareStatement::from_verified_claims(&claims, &dcr.ssa_rules, now)?)
    }

    /// The directory JWKS that holds `kid`, refreshing (rate-limited) when none does. When
    /// no source holds it, the first source's keys are returned so verification reports an
    /// unknown kid.
    async fn directory_keys_with_kid(&self, kid: &str) -> Result<Arc<keyfort_core::jose::JwkSet>, ServiceError> {
        let mut first = None;
        let mut failures = Vec::new();
        for source in &self.config.dcr.ssa_jwks {
            match self.keys.keys(source, Some(kid)).await {
                Ok(keys) if keys.has_kid(kid) => return Ok(keys),
                Ok(keys) => {
                    first.get_or_insert(keys);
                }
                Err(e) => failures.push(e.to_string()),
            }
        }
        first.ok_or_else(|| {
            ServiceError::unavailable(
                "the Open Banking directory's keys that verify software statements cannot be fetched now",
                failures.join("; "),
            )
        })
    }

    /// Verifies a signed registration request with the key its SSA's software JWKS names.
    async fn verify_request_signature(
        &self,
        jws: &CompactJws<'_>,
        ssa: &SoftwareStatement,
    ) -> Result<(), ServiceError> {
        let request_error =
            |e: JwsError| OAuthError::invalid_client_metadata(format!("the registration request JWT {e}"));
        let policy = &self.config.dcr.policy;
        jws.check_alg(&policy.allowed_algs).map_err(request_error)?;
        let kid = jws.header().kid.clone().ok_or_else(|| request_error(JwsError::MissingKid))?;
        let url = &ssa.software_jwks_endpoint;
        self.check_software_jwks_host(url)?;
        let keys = self.keys.keys(&KeySource::Url(url.clone()), Some(&kid)).await.map_err(|e| {
            ServiceError::unavailable(
                "the software statement's software JWKS (software_jwks_endpoint) cannot be fetched now",
                e,
            )
        })?;
        jws.verify(&keys, &policy.allowed_algs, true).map_err(request_error)?;
        Ok(())
    }

    fn check_software_jwks_host(&self, url: &Url) -> Result<(), ServiceError> {
        let allowed = &self.config.dcr.software_jwks_origins;
        if !allowed.allows(url) {
            return Err(OAuthError::invalid_software_statement(format!(
                "software_jwks_endpoint {} is not at an allowed key origin of this bank ({allowed}); key sets are \
                 fetched only from these (scheme, host and port)",
                keyfort_core::text::quote(url.as_str())
            ))
            .into());
        }
        self.keys.fetcher().check_url(url).map_err(|e| {
            OAuthError::invalid_software_statement(format!("software_jwks_endpoint cannot be used: {e}"))
        })?;
        Ok(())
    }
}

/// Puts the client's identifiers on the current span, so every log line of the request
/// carries them.
fn record_client_fields(client: &RegisteredClient) {
    crate::telemetry::note_client(&client.client_id);
    crate::telemetry::note_software(client.software_id.as_deref(), client.org_id.as_deref());
    let span = tracing::Span::current();
    span.record("client_id", client.client_id.as_str());
    span.record("software_id", client.software_id.as_deref().unwrap_or("-"));
    span.record("org_id", client.org_id.as_deref().unwrap_or("-"));
}
