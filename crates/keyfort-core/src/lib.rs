//! Keyfort's domain.
//!
//! Everything that decides whether a Third Party Provider may register, and whether its
//! consents (`consent`) are well-formed and may be authorised, lives here, free of
//! HTTP and database types, so that each rule can be tested with plain values and a fixed
//! clock. The server crate (`keyfort`) does the I/O: it fetches keys, reads bodies, stores
//! clients, and maps [`error::OAuthError`] to HTTP responses in one place.

pub mod authorization;
pub mod claims;
pub mod clock;
pub mod consent;
pub mod error;
pub mod jose;
pub mod net;
pub mod redirect_uri;
pub mod registration;
pub mod secret;
pub mod software_statement;
pub mod subject_dn;
pub mod text;
pub mod token;
pub mod totp;
pub mod transport;
