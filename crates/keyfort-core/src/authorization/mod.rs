//! The customer's authorization (OpenID Connect hybrid flow, FAPI 1.0 Advanced, UK Open
//! Banking profile): what a signed request object must hold, the authentication levels a
//! TPP may ask for, PKCE, and the claims and hashes of ID tokens. Pure rules on plain
//! values and a clock; the server does the I/O (keys, consents, customers, storage).

mod acr;
mod id_token;
mod pkce;
mod request;

pub use acr::{Acr, AcrRequest};
pub use id_token::{half_hash, IdTokenClaims};
pub use pkce::CodeChallenge;
pub use request::{AuthorizationRequest, ClientFacts, OuterParameters, RequestObjectRules, HYBRID_RESPONSE_TYPE};
