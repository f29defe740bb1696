//! Shared harness for the black-box integration tests.
//!
//! Every test starts its own `token-server` process on free ports with a fresh
//! data directory, talks to it over TCP, and kills it when the [`Server`]
//! value is dropped.

#![allow(dead_code)]

mod raw;
mod replies;
mod server;
mod tools;

pub use raw::*;
pub use replies::*;
pub use server::*;
pub use tools::*;
