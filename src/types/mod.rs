//! The plain types every layer shares, with no dependency inside the crate: ids, keys, where
//! an id lives, who is owed an answer, the records of changes, and the typed errors.
//!
//! - [`key`]: the 128-bit lock key and its hex form.
//! - [`slot`]: `slot_for` and `shard_for`, the one mapping of an id to its hash slot and shard.
//! - [`origin`]: who is owed the answer to a command.
//! - [`record`]: each change to a table as a whole-state assignment, owned or borrowed.
//! - [`error`]: the errors of the lock commands, each spelled once.
//! - [`spec`]: the command table (name, arity, flags, id position, syntax) and [`CommandKind`].
//! - [`limits`]: the limits lock commands are parsed against.
//! - [`password`]: the one password comparison.

pub mod error;
pub mod key;
pub mod limits;
pub mod origin;
pub mod password;
pub mod record;
pub mod slot;
pub mod spec;

pub use error::Error;
pub use key::{KeyBytes, hex_key, parse_key};
pub use limits::CommandLimits;
pub use origin::{ConnRef, Origin};
pub use password::password_matches;
pub use record::{LogRecord, RecordRef};
pub use slot::{SLOTS, ShardId, shard_for, shard_of_slot, slot_for};
pub use spec::{COMMANDS, CommandKind, CommandSpec, lookup};

/// An activity id as commands and records carry it: any non-empty byte string.
pub type Id = Box<[u8]>;
