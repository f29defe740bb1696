//! Log records: what a shard appends for each change to its table.
//!
//! Every record is an *assignment* of an id's whole state, never a transition ("id is now
//! locked with this key, fence and deadline", "id is now free"), so replaying a record twice,
//! or replaying a rewritten log followed by records appended during the rewrite, gives the
//! same table. Deadlines and completion times are absolute Unix milliseconds, so a restart
//! never extends a lease.

use crate::protocol::KeyBytes;
use crate::shard::table::Id;

/// One change to one shard's table, or a marker.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum LogRecord {
    /// `id` is locked under `key`.
    Lock {
        /// The id.
        id: Id,
        /// The holder's key.
        key: KeyBytes,
        /// The fencing token of this grant.
        fence: u64,
        /// When the lease ends, in Unix ms; 0 for no lease.
        deadline_ms: u64,
        /// The fingerprint given with LOCK, if any.
        fingerprint: Option<Box<[u8]>>,
    },
    /// `id` is free.
    Unlock {
        /// The id.
        id: Id,
    },
    /// The lease of locked `id` now ends at `deadline_ms`.
    Renew {
        /// The id.
        id: Id,
        /// The new deadline in Unix ms.
        deadline_ms: u64,
    },
    /// `id` is completed under `key`.
    Complete {
        /// The id.
        id: Id,
        /// The key of the holder that completed it.
        key: KeyBytes,
        /// The fence of the grant that completed it.
        fence: u64,
        /// When it completed, in Unix ms (retention counts from here).
        at_ms: u64,
        /// The fingerprint of the lock, if any.
        fingerprint: Option<Box<[u8]>>,
        /// The stored result, if any.
        result: Option<Box<[u8]>>,
    },
    /// Fences up to `value` have been handed out; a restart continues above it. Written at the
    /// head of a rewritten log, where the records of freed ids no longer carry their fences.
    Fence {
        /// The highest fence issued so far.
        value: u64,
    },
    /// Records after this marker were written by the server run numbered `epoch`. Runs are
    /// numbered upwards, so when a restart with another shard count moves an id to another
    /// shard's log, the record from the later run wins.
    Epoch {
        /// The run number.
        epoch: u64,
    },
}

impl LogRecord {
    /// The id this record is about; `None` for markers.
    pub fn id(&self) -> Option<&[u8]> {
        match self {
            LogRecord::Lock { id, .. }
            | LogRecord::Unlock { id }
            | LogRecord::Renew { id, .. }
            | LogRecord::Complete { id, .. } => Some(id),
            LogRecord::Fence { .. } | LogRecord::Epoch { .. } => None,
        }
    }
}
