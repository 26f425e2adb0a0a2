//! Integration tests: one binary, a module per capability.

mod abuse;
mod authorization_storage;
mod cli;
mod cluster;
mod config;
mod consents;
mod crash;
mod customers;
mod database;
mod helpers;
mod jwks;
mod logs;
mod mtls;
mod openapi;
mod operations;
mod outage;
mod pki;
mod proxy;
mod registration;
mod rules;
mod sandbox;
mod server;
mod storage;
mod tokens;
mod traces;
mod wso2;
