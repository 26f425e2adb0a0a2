//! Integration tests: one binary, a module per capability.

mod crash;
mod helpers;
mod jwks;
mod registration;
mod rules;
mod server;
mod storage;
