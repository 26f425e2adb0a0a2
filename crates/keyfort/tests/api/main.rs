//! Integration tests: one binary, a module per capability.

mod abuse;
mod authorization;
mod authorization_storage;
mod browser;
mod cluster;
mod config;
mod consents;
mod crash;
mod customer_area_storage;
mod customers;
mod database;
mod helpers;
mod jwks;
mod mtls;
mod openapi;
mod operations;
mod outage;
mod pki;
mod proxy;
mod registration;
mod resource_server;
mod rules;
mod sandbox;
mod server;
mod storage;
mod tokens;
