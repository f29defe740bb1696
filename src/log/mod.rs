//! Durability: each shard's append-only log.
//!
//! - [`record`]: what is logged — assignments of an id's whole state, and markers.
pub mod record;

pub use record::LogRecord;
