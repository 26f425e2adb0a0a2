//! Who is calling, as established at the edge and handed to a service as an argument.
//!
//! A service never infers the caller from configuration or from headers: the HTTP layer
//! validates the transport certificate and authenticates administrators, and passes the
//! result here. A certificate that was presented but failed its checks is carried as such,
//! so the service that needs to refuse (and audit) the request can say why.

use std::net::IpAddr;

use keyfort_core::error::ErrorCode;
use keyfort_core::transport::CertificateIdentity;

use crate::admin::Administrator;
use crate::error::ServiceError;
use crate::transport::CertificateRejected;

/// The client certificate of a request, after the server's own checks.
#[derive(Debug, Clone)]
pub enum PresentedCertificate {
    /// No certificate was presented (or forwarded by a trusted gateway).
    None,
    /// A certificate that chains to a trusted CA, is valid now, fit for client
    /// authentication and not revoked.
    Valid(CertificateIdentity),
    /// A certificate was presented and refused; the reason is for the caller.
    Rejected(CertificateRejected),
}

#[derive(Debug, Clone)]
pub struct Caller {
    /// The address the request came from (the proxy's, behind a gateway).
    pub peer: IpAddr,
    pub certificate: PresentedCertificate,
    /// Set only when the edge checked administrator credentials.
    pub administrator: Option<Administrator>,
    /// The bank customer (PSU) acting, by customer id, once the login page has signed them
    /// in: set on the decisions they make about consents, and written to their audit lines.
    pub customer: Option<String>,
}

impl Caller {
    pub fn new(peer: IpAddr, certificate: PresentedCertificate) -> Self {
        Self { peer, certificate, administrator: None, customer: None }
    }

    /// This caller, acting as the signed-in customer `customer_id`.
    pub fn with_customer(mut self, customer_id: impl Into<String>) -> Self {
        self.customer = Some(customer_id.into());
        self
    }

    pub fn with_administrator(mut self, administrator: Administrator) -> Self {
        self.administrator = Some(administrator);
        self
    }

    /// The validated certificate, if any. A presented certificate that failed the checks is
    /// refused whether or not the action needs one: a TPP must learn its certificate is bad.
    pub fn certificate(&self) -> Result<Option<&CertificateIdentity>, ServiceError> {
        match &self.certificate {
            PresentedCertificate::None => Ok(None),
            PresentedCertificate::Valid(identity) => Ok(Some(identity)),
            PresentedCertificate::Rejected(why) => Err(ServiceError::refused(ErrorCode::InvalidClient, why.0.clone())),
        }
    }

    /// The certificate for the audit trail: whatever was validated, nothing otherwise.
    pub fn audited_certificate(&self) -> Option<&CertificateIdentity> {
        match &self.certificate {
            PresentedCertificate::Valid(identity) => Some(identity),
            _ => None,
        }
    }
}

/// A bank gateway or resource server, recognised by the subject of its transport
/// certificate (`[resource_server] client_subject_dns`). It may introspect any token and
/// ask whether a customer's token covers a call.
#[derive(Debug, Clone)]
pub struct ResourceServer {
    /// The certificate subject it presented, for the log and the audit trail.
    pub subject: String,
}

impl ResourceServer {
    /// The resource server `caller` is, if its validated certificate names one listed in
    /// `config`.
    pub fn recognise(caller: &Caller, config: &crate::config::ResourceServerConfig) -> Option<Self> {
        let PresentedCertificate::Valid(identity) = &caller.certificate else { return None };
        config
            .client_subject_dns
            .contains(&identity.subject)
            .then(|| Self { subject: identity.subject.as_str().to_owned() })
    }
}
