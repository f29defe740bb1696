//! The integration tests: the real binary on loopback, driven by real clients (the `redis`
//! crate, `redis-cli`, HTTP clients, Python, Ruby, PHP, shell). One crate, so the test code and
//! its dependencies are compiled and linked once; each file is a module named for what it
//! tests (`cargo test --test suite -- leases::` runs one).
//!
//! Shared helpers, by what they serve:
//! - [`common`]: starting servers, raw RESP connections, reply checks, outside tools;
//! - [`http_support`], [`tls_support`], [`durability_support`]: HTTP clients, certificates
//!   and TLS clients, restarts and kills on one data directory.

mod common;
mod durability_support;
mod http_support;
mod tls_support;

#[path = "../../examples/run_once.rs"]
#[allow(dead_code)]
mod run_once;

mod access;
mod auth;
mod bench_smoke;
mod chaos;
mod client_limits;
mod commands;
mod compat;
mod concurrency;
mod crash;
mod durability;
mod examples;
mod http;
mod http_leases;
mod http_limits;
mod ids;
mod inline;
mod leases;
mod log_faults;
mod observability;
mod operations;
mod pipeline;
mod protocol_errors;
mod redis_cli;
mod soak;
mod tls;
