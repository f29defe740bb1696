//! What the server measures about itself, and how it shows it.
//!
//! - [`histogram`]: fixed-bucket latency histograms made of atomics.
//! - [`commands`]: per-shard calls by command and outcome, and execution times.
//! - [`http`]: the HTTP adapter's connections and requests.
//! - [`slowlog`]: the per-shard rings of slow commands behind `SLOWLOG`.
//! - [`process`]: the process's resident memory.
//! - `GET /metrics` renders these figures (`http::exposition`).
//!
//! Invariant: nothing here is on a shard's hot path except single-writer atomic updates
//! (a relaxed load and store on the shard's own cells) and a comparison with the slow-log
//! threshold. Readers (`/metrics`, `INFO`, `SLOWLOG`) read atomics, or the slow-log ring's
//! lock that only slow commands take; they never touch a shard's table.

pub mod commands;
pub mod histogram;
pub mod http;
pub mod process;
pub mod slowlog;
