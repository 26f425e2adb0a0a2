//! The registration policy: given a typed request and the verified software statement, decide
//! whether the client may be registered and with which metadata.

use std::collections::BTreeMap;
use std::str::FromStr;

use url::Url;

use super::metadata::{ApplicationType, AuthMethod, ClientMetadata, GrantType, ResponseType};
use super::request::{RegistrationRequest, RequestForm};
use crate::clock::UnixTime;
use crate::error::OAuthError;
use crate::jose::{alg, SigningAlg};
use crate::redirect_uri::RedirectUri;
use crate::software_statement::SoftwareStatement;
use crate::subject_dn::SubjectDn;

/// The bank's registration rules, built from configuration.
#[derive(Debug, Clone)]
pub struct RegistrationPolicy {
    /// FAPI enforcement: sender-constrained tokens and signed request objects are mandatory.
    pub fapi: bool,
    /// Whether a request without a software statement is refused.
    pub mandate_ssa: bool,
    /// Accepted `aud` values of a registration request (the bank's issuer).
    pub audiences: Vec<String>,
    /// Algorithms a client may register for signing (token endpoint, request objects, ID tokens).
    pub allowed_algs: Vec<SigningAlg>,
    /// Token endpoint authentication methods a client may register.
    pub auth_methods: Vec<AuthMethod>,
    /// Scopes each software role may register, e.g. AISP → accounts.
    pub role_scopes: BTreeMap<String, Vec<String>>,
    /// Tolerance for clock differences with the TPP, in seconds.
    pub clock_skew: i64,
}

/// A request the policy accepted: the metadata to register and the replay key to record.
#[derive(Debug, Clone, PartialEq)]
pub struct Approved {
    pub metadata: ClientMetadata,
    pub software_id: Option<String>,
    pub org_id: Option<String>,
    pub software_roles: Vec<String>,
    /// The request's `jti`, unique per issuer; recorded so a replay is refused.
    pub jti: String,
    /// Who the `jti` belongs to: the request's `iss`.
    pub jti_issuer: String,
    /// When the replay record may be forgotten: the request's `exp`, if it had one.
    pub jti_expires_at: Option<UnixTime>,
}

fn meta(description: String) -> OAuthError {
    OAuthError::invalid_client_metadata(description)
}

impl RegistrationPolicy {
    /// Scopes that `roles` may register; `openid` is always allowed.
    pub fn scopes_for_roles(&self, roles: &[String]) -> Vec<String> {
        let mut scopes = vec!["openid".to_owned()];
        for role in roles {
            for scope in self.role_scopes.get(role).into_iter().flatten() {
                if !scopes.contains(scope) {
                    scopes.push(scope.clone());
                }
            }
        }
        scopes
    }

    /// Checks the request against the SSA and the bank's rules. `ssa` is `None` only when the
    /// request carried none and `mandate_ssa` is off.
    pub fn evaluate(
        &self,
        request: &RegistrationRequest,
        ssa: Option<&SoftwareStatement>,
        form: RequestForm,
        now: UnixTime,
    ) -> Result<Approved, OAuthError> {
        if request.jwks_by_value {
            return Err(meta(
                "jwks (keys by value) is not accepted: this server takes the software's keys from the software \
                 statement's software_jwks_endpoint, where the directory publishes and revokes them; remove jwks"
                    .into(),
            ));
        }
        if !request.unsupported_encryption.is_empty() {
            return Err(meta(format!(
                "{} requested, but this server does not encrypt ID tokens or accept encrypted request objects; remove these claims",
                request.unsupported_encryption.join(", ")
            )));
        }

        // Identity: who is registering, and is the request theirs?
        let software_id = match (ssa, &request.software_id) {
            (Some(ssa), Some(sent)) if *sent != ssa.software_id => {
                return Err(meta(format!(
                    "software_id \"{sent}\" differs from the software statement's software_id \"{}\"; send the SSA's value or leave software_id out",
                    ssa.software_id
                )))
            }
            (Some(ssa), _) => Some(ssa.software_id.clone()),
            (None, sent) => sent.clone(),
        };
        let iss =
            request.iss.clone().ok_or_else(|| meta("claim `iss` is required: set it to your software_id".into()))?;
        if let Some(expected) = &software_id {
            if iss != *expected {
                return Err(meta(format!(
                    "iss \"{iss}\" must equal the software statement's software_id \"{expected}\""
                )));
            }
        }

        self.check_audience(request)?;
        self.check_times(request, form, now)?;
        let jti = match &request.jti {
            Some(jti) if !jti.trim().is_empty() => jti.clone(),
            _ => {
                return Err(meta(
                    "claim `jti` is required: send a unique identifier for every registration request".into(),
                ))
            }
        };

        let redirect_uris = self.redirect_uris(request, ssa)?;
        let (token_endpoint_auth_method, token_endpoint_auth_signing_alg, tls_client_auth_subject_dn) =
            self.client_authentication(request)?;
        let id_token_signed_response_alg =
            self.optional_alg("id_token_signed_response_alg", &request.id_token_signed_response_alg)?;
        let request_object_signing_alg =
            self.optional_alg("request_object_signing_alg", &request.request_object_signing_alg)?;
        let grant_types =
            parse_list::<GrantType>("grant_types", &request.grant_types, &[GrantType::AuthorizationCode])?;
        let response_types =
            parse_list::<ResponseType>("response_types", &request.response_types, &[ResponseType::Code])?;
        let application_type = match &request.application_type {
            None => ApplicationType::Web,
            Some(raw) => ApplicationType::from_str(raw).map_err(|bad| {
                meta(format!(
                    "application_type \"{bad}\" is not supported; use one of: {}",
                    names(ApplicationType::ALL)
                ))
            })?,
        };
        let roles: Vec<String> = ssa.map(|s| s.software_roles.clone()).unwrap_or_default();
        let scope = self.scope(request, ssa, &roles)?;

        let require_signed_request_object =
            self.fapi_flag("require_signed_request_object", request.require_signed_request_object)?;
        let tls_client_certificate_bound_access_tokens = self.fapi_flag(
            "tls_client_certificate_bound_access_tokens",
            request.tls_client_certificate_bound_access_tokens,
        )?;
        if request.token_endpoint_allow_reuse_pvt_key_jwt == Some(true) {
            return Err(meta(
                "token_endpoint_allow_reuse_pvt_key_jwt must be false: a client assertion's jti is never accepted twice".into(),
            ));
        }
        if let Some(t) = &request.token_type_extension {
            if t != "JWT" {
                return Err(meta(format!(
                    "token_type_extension \"{t}\" is not supported; this server issues JWT access tokens"
                )));
            }
        }
        if let Some(st) = &request.subject_type {
            if st != "public" {
                return Err(meta(format!("subject_type \"{st}\" is not supported; use \"public\"")));
            }
        }
        let jwks_uri = self.jwks_uri(request, ssa)?;
        let client_name = request
            .client_name
            .clone()
            .or_else(|| ssa.and_then(|s| s.software_client_name.clone()))
            .or_else(|| software_id.clone())
            .unwrap_or_else(|| iss.clone());

        Ok(Approved {
            metadata: ClientMetadata {
                client_name,
                ext_application_display_name: request.ext_application_display_name.clone(),
                redirect_uris,
                token_endpoint_auth_method,
                token_endpoint_auth_signing_alg,
                tls_client_auth_subject_dn,
                grant_types,
                response_types,
                application_type,
                scope,
                id_token_signed_response_alg,
                request_object_signing_alg,
                require_signed_request_object,
                tls_client_certificate_bound_access_tokens,
                require_pushed_authorization_requests: request.require_pushed_authorization_requests.unwrap_or(false),
                jwks_uri,
                pkce_mandatory: request.ext_pkce_mandatory.unwrap_or(false),
            },
            software_id,
            org_id: ssa.map(|s| s.org_id.clone()),
            software_roles: roles,
            jti,
            jti_issuer: iss,
            jti_expires_at: request.exp,
        })
    }

    fn check_audience(&self, request: &RegistrationRequest) -> Result<(), OAuthError> {
        let accepted = self.audiences.join(", ");
        match &request.aud {
            None => Err(meta(format!("claim `aud` is required: set it to this server's issuer ({accepted})"))),
            Some(auds) if auds.iter().any(|a| self.audiences.contains(a)) => Ok(()),
            Some(auds) => Err(meta(format!(
                "aud {} does not name this server; set it to one of: {accepted}",
                auds.iter().map(|a| format!("\"{a}\"")).collect::<Vec<_>>().join(", ")
            ))),
        }
    }

    fn check_times(&self, request: &RegistrationRequest, form: RequestForm, now: UnixTime) -> Result<(), OAuthError> {
        let signed = form == RequestForm::SignedJwt;
        match request.iat {
            Some(iat) if iat > now + self.clock_skew => {
                return Err(meta(format!(
                    "iat {iat} is {} seconds in the future; set iat to the current time (check your clock)",
                    iat - now
                )))
            }
            None if signed => return Err(meta("claim `iat` is required in a signed registration request".into())),
            _ => {}
        }
        match request.exp {
            Some(exp) if exp + self.clock_skew < now => Err(meta(format!(
                "the request expired at {exp}, {} seconds ago; build a new request with a future exp",
                now - exp
            ))),
            Some(exp) if request.iat.is_some_and(|iat| exp <= iat) => {
                Err(meta(format!("exp {exp} must be later than iat {}", request.iat.unwrap_or_default())))
            }
            None if signed => Err(meta("claim `exp` is required in a signed registration request".into())),
            _ => Ok(()),
        }
    }

    fn redirect_uris(
        &self,
        request: &RegistrationRequest,
        ssa: Option<&SoftwareStatement>,
    ) -> Result<Vec<RedirectUri>, OAuthError> {
        let requested: Vec<String> = match (&request.redirect_uris, ssa) {
            (Some(list), _) if !list.is_empty() => list.clone(),
            (Some(_), _) => return Err(OAuthError::invalid_redirect_uri("redirect_uris must not be empty; leave it out to register the software statement's software_redirect_uris")),
            (None, Some(ssa)) => ssa.software_redirect_uris.clone(),
            (None, None) => return Err(OAuthError::invalid_redirect_uri("redirect_uris is required when no software statement is sent")),
        };
        let mut uris = Vec::with_capacity(requested.len());
        for raw in &requested {
            let uri = RedirectUri::parse(raw).map_err(OAuthError::invalid_redirect_uri)?;
            if let Some(ssa) = ssa {
                if !ssa.software_redirect_uris.iter().any(|allowed| allowed == raw) {
                    return Err(OAuthError::invalid_redirect_uri(format!(
                        "redirect URI \"{raw}\" is not one of the software statement's software_redirect_uris ({}); register it in the directory first",
                        ssa.software_redirect_uris.join(", ")
                    )));
                }
            }
            if !uris.contains(&uri) {
                uris.push(uri);
            }
        }
        Ok(uris)
    }

    #[allow(clippy::type_complexity)]
    fn client_authentication(
        &self,
        request: &RegistrationRequest,
    ) -> Result<(AuthMethod, Option<SigningAlg>, Option<SubjectDn>), OAuthError> {
        let allowed = names(&self.auth_methods);
        let method = match &request.token_endpoint_auth_method {
            None => return Err(meta(format!("token_endpoint_auth_method is required; use one of: {allowed}"))),
            Some(raw) => AuthMethod::from_str(raw).ok().filter(|m| self.auth_methods.contains(m)).ok_or_else(|| {
                meta(format!("token_endpoint_auth_method \"{raw}\" is not allowed here; use one of: {allowed}"))
            })?,
        };
        let signing_alg =
            self.optional_alg("token_endpoint_auth_signing_alg", &request.token_endpoint_auth_signing_alg)?;
        if matches!(method, AuthMethod::PrivateKeyJwt) && signing_alg.is_none() {
            return Err(meta(format!(
                "token_endpoint_auth_signing_alg is required with private_key_jwt; use one of: {}",
                alg::list(&self.allowed_algs)
            )));
        }
        let subject_dn = match &request.tls_client_auth_subject_dn {
            Some(raw) => {
                crate::subject_dn::check_obie_pattern(raw)
                    .map_err(|e| meta(format!("tls_client_auth_subject_dn {e}")))?;
                Some(SubjectDn::parse(raw).map_err(|e| meta(format!("tls_client_auth_subject_dn: {e}")))?)
            }
            None => None,
        };
        if method == AuthMethod::TlsClientAuth && subject_dn.is_none() {
            return Err(meta(
                "tls_client_auth_subject_dn is required with tls_client_auth: send the subject DN of your transport certificate".into(),
            ));
        }
        Ok((method, signing_alg, subject_dn))
    }

    fn optional_alg(&self, claim: &str, raw: &Option<String>) -> Result<Option<SigningAlg>, OAuthError> {
        let Some(raw) = raw else { return Ok(None) };
        raw.parse::<SigningAlg>().ok().filter(|a| self.allowed_algs.contains(a)).map(Some).ok_or_else(|| {
            meta(format!("{claim} \"{raw}\" is not allowed; use one of: {}", alg::list(&self.allowed_algs)))
        })
    }

    fn scope(
        &self,
        request: &RegistrationRequest,
        ssa: Option<&SoftwareStatement>,
        roles: &[String],
    ) -> Result<Vec<String>, OAuthError> {
        let allowed = match ssa {
            Some(_) => self.scopes_for_roles(roles),
            None => {
                let all: Vec<String> = self.role_scopes.keys().cloned().collect();
                self.scopes_for_roles(&all)
            }
        };
        let Some(raw) = &request.scope else {
            return Ok(allowed.into_iter().filter(|s| s != "openid").collect());
        };
        let mut scopes: Vec<String> = Vec::new();
        for s in raw.split_whitespace() {
            if !allowed.iter().any(|a| a == s) {
                return Err(meta(format!(
                    "scope \"{s}\" is not allowed for software roles [{}]; allowed scopes: {}",
                    roles.join(", "),
                    allowed.join(" ")
                )));
            }
            if !scopes.iter().any(|x| x == s) {
                scopes.push(s.to_owned());
            }
        }
        if scopes.is_empty() {
            return Err(meta("scope is empty; leave it out or list scopes separated by spaces".into()));
        }
        Ok(scopes)
    }

    /// Under FAPI the flag must be true (absent means true: the server enforces it anyway).
    fn fapi_flag(&self, claim: &str, sent: Option<bool>) -> Result<bool, OAuthError> {
        match (self.fapi, sent) {
            (true, Some(false)) => Err(meta(format!("{claim} must be true under this server's FAPI profile"))),
            (true, _) => Ok(true),
            (false, sent) => Ok(sent.unwrap_or(false)),
        }
    }

    fn jwks_uri(
        &self,
        request: &RegistrationRequest,
        ssa: Option<&SoftwareStatement>,
    ) -> Result<Option<Url>, OAuthError> {
        match (ssa, &request.jwks_uri) {
            (Some(ssa), Some(sent)) if *sent != ssa.software_jwks_endpoint.as_str() => Err(meta(format!(
                "jwks_uri \"{sent}\" must equal the software statement's software_jwks_endpoint \"{}\"",
                ssa.software_jwks_endpoint
            ))),
            (Some(ssa), _) => Ok(Some(ssa.software_jwks_endpoint.clone())),
            (None, Some(sent)) => Url::parse(sent)
                .ok()
                .filter(|u| u.scheme() == "https")
                .map(Some)
                .ok_or_else(|| meta(format!("jwks_uri \"{sent}\" must be an absolute https URL"))),
            (None, None) => Ok(None),
        }
    }
}

fn names<T: std::fmt::Display>(items: &[T]) -> String {
    items.iter().map(ToString::to_string).collect::<Vec<_>>().join(", ")
}

fn parse_list<T>(claim: &str, raw: &Option<Vec<String>>, default: &[T]) -> Result<Vec<T>, OAuthError>
where
    T: FromStr<Err = String> + Copy + PartialEq + std::fmt::Display + AllValues,
{
    let Some(raw) = raw else {
        return Ok(default.to_vec());
    };
    if raw.is_empty() {
        return Err(meta(format!("{claim} must not be empty; leave it out to get the default")));
    }
    let mut out = Vec::with_capacity(raw.len());
    for item in raw {
        let value = T::from_str(item).map_err(|bad| {
            meta(format!("{claim} value \"{bad}\" is not supported; use values from: {}", names(T::all())))
        })?;
        if !out.contains(&value) {
            out.push(value);
        }
    }
    Ok(out)
}

trait AllValues: Sized + 'static {
    fn all() -> &'static [Self];
}
impl AllValues for GrantType {
    fn all() -> &'static [Self] {
        GrantType::ALL
    }
}
impl AllValues for ResponseType {
    fn all() -> &'static [Self] {
        ResponseType::ALL
    }
}
