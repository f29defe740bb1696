//! The Redis wire protocol, as pure data transformations with no I/O.
//!
//! - [`request`]: bytes → one flat list of arguments (RESP multibulk or inline), with limits.
//! - [`reply`]: reply values → RESP2 or RESP3 bytes.

pub mod reply;
pub mod request;

pub use reply::{Protocol, Reply};
pub use request::{Args, Decoded, Limits, ProtocolError, RequestDecoder};
