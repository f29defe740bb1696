//! Who is owed the answer to a command: a connection's reply slot, an outside caller, or
//! nobody.

use crate::types::ShardId;

/// Names a connection on its owning shard, safely across slot reuse.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct ConnRef {
    /// The connection's slab index on its shard.
    pub slot: u32,
    /// The connection's unique id (CLIENT ID); a reply for a closed connection is dropped.
    pub conn_id: u64,
}

/// Who is owed the reply to a command that may be answered later (a waiting LOCK).
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Origin {
    /// A reply slot of a RESP connection on some shard.
    Conn {
        /// The shard that owns the connection.
        shard: ShardId,
        /// The connection.
        conn: ConnRef,
        /// Its reply slot.
        seq: u64,
    },
    /// An outside caller (HTTP), registered under this number on the owning shard.
    External(u64),
    /// Nobody: the command cannot wait (tests, replay).
    Nobody,
}
