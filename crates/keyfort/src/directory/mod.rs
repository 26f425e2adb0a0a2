//! Keys from the outside world: the Open Banking directory's JWKS that signs software
//! statements, and each TPP's software JWKS that signs its registration requests.
//!
//! Fetching is https-only (loopback http only behind a development switch), bounded in time
//! and size, never follows a redirect to another host, and only reaches hosts the
//! configuration allows. Parsed key sets are cached; an unknown `kid` triggers a refresh at
//! most once per configured interval, and the last good keys survive a directory outage.

mod cache;
mod fetch;

pub use cache::{JwksCache, KeyLookupError};
pub use fetch::{FetchError, HttpFetcher};
pub use keyfort_core::net::is_loopback_host as is_loopback_url;
