//! Integration tests: one binary, a module per capability.

mod abuse;
mod config;
mod consents;
mod crash;
mod customers;
mod helpers;
mod jwks;
mod mtls;
mod openapi;
mod operations;
mod pki;
mod registration;
mod rules;
mod sandbox;
mod server;
mod storage;
mod tokens;
