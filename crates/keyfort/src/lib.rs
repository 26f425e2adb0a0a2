//! Keyfort, an Open Banking identity server: Dynamic Client Registration with software
//! statements, over TLS, on an embedded database by default.
//!
//! - [`config`]: the TOML configuration, checked at start-up, every problem reported at once.
//! - [`app`]: builds the application from a configuration (`Application::build`), after
//!   reading the files it names (`app::preflight`, which `check-config` runs too).
//! - [`cli`]: the command line: its arguments and each command's work.
//! - [`http`]: routes, handlers, the TLS listener, and the error-to-response mapping.
//! - [`registration`]: the registration service (keys, policy, storage).
//! - [`directory`]: fetching and caching the directory's and TPPs' JWKS.
//! - [`storage`]: the storage interface and its SQLite and PostgreSQL implementations.
//! - [`tls`]: the server certificate, configured or generated for development.
//! - [`files`]: secrets' files and directories, created owner-only.
//! - [`pem`]: reading certificates, private keys and CRLs from PEM, with errors naming the file.
//! - [`transport`]: mutual TLS: client certificate checks, CRLs, gateway-forwarded certificates.
//! - [`admin`]: administrator accounts and HTTP Basic authentication.
//! - [`consent`]: the Open Banking intents API (consents) and the decisions of customers.
//! - [`resource_server`]: what the bank's gateways ask about customers' tokens (consent
//!   validation), and the payments they report.
//! - [`customer_area`]: the customer's own page of the TPPs they authorised, to withdraw them.
//! - [`customers`]: bank customers (PSUs), their sign-in and accounts, behind traits a bank
//!   can implement.

pub mod admin;
pub mod app;
pub mod audit;
pub mod authorization;
pub mod caller;
pub mod cli;
pub mod config;
pub mod consent;
pub mod customer_area;
pub mod customers;
pub mod directory;
pub mod error;
pub mod files;
#[doc(hidden)]
pub mod fuzzing;
pub mod health;
pub mod http;
pub mod metrics;
pub mod operator;
pub mod otlp;
pub mod pages;
pub mod password;
pub mod pem;
pub mod registration;
pub mod resource_server;
pub mod sandbox;
pub mod signing;
pub mod storage;
pub mod telemetry;
pub mod throttle;
pub mod tls;
pub mod token;
pub mod transport;

pub use app::Application;
