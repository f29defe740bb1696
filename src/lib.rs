//! token-server: a run-once lock server that speaks the Redis protocol.
//!
//! A client locks an activity id (`LOCK id` → key), then either completes it for good
//! (`COMPLETE id key`) or releases it after a failure (`UNLOCK id key`).
//!
//! # Map of the crate
//! Dependencies point inward: the edges know the core, the core knows nothing of sockets.
//! - [`protocol`]: RESP bytes ↔ requests and replies; pure, no I/O.
//! - [`command`]: the command spec table and each command's semantics; pure, no I/O.
//! - [`shard`]: `shard_for`, the per-shard lock table, the inter-shard mesh, the event loop.
//! - [`net`]: accepting connections and buffering their bytes.
//! - [`http`]: the HTTP adapter; turns requests into the same commands and sends them to shards.
//! - [`config`], [`context`], [`clock`], [`keys`]: settings, shared counters, time, keys.
//! - [`metrics`]: per-command figures, histograms, the slow log, `/metrics`.
//! - [`lifecycle`]: the shutdown switch every thread hears.
//! - [`server`]: wires it together and starts the threads.
#![warn(missing_docs)]

pub mod clock;
pub mod command;
pub mod config;
pub mod context;
pub mod http;
pub mod keys;
pub mod lifecycle;
pub mod log;
pub mod metrics;
pub mod net;
pub mod protocol;
pub mod server;
pub mod shard;
pub mod sparse;
pub mod table;
pub mod types;
