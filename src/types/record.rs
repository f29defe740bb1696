//! Records: each change to a table, as the log stores it and the table reports it.
//!
//! Every record is an *assignment* of an id's whole state, never a transition ("id is now
//! locked with this key, fence and deadline", "id is now free"), so replaying a record twice,
//! or replaying a rewritten log followed by records appended during the rewrite, gives the
//! same table. Deadlines and completion times are absolute Unix milliseconds, so a restart
//! never extends a lease.

use crate::types::{Id, KeyBytes};

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
    /// The next `count` records are one transaction (`MULTI ... EXEC`): recovery applies all
    /// of them or, if the log ends before the last one, none.
    Group {
        /// How many records follow in the group.
        count: u32,
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
            LogRecord::Fence { .. } | LogRecord::Epoch { .. } | LogRecord::Group { .. } => None,
        }
    }

    /// A view of this record that borrows its byte strings.
    pub fn borrowed(&self) -> RecordRef<'_> {
        match self {
            LogRecord::Lock {
                id,
                key,
                fence,
                deadline_ms,
                fingerprint,
            } => RecordRef::Lock {
                id,
                key: *key,
                fence: *fence,
                deadline_ms: *deadline_ms,
                fingerprint: fingerprint.as_deref(),
            },
            LogRecord::Unlock { id } => RecordRef::Unlock { id },
            LogRecord::Renew { id, deadline_ms } => RecordRef::Renew {
                id,
                deadline_ms: *deadline_ms,
            },
            LogRecord::Complete {
                id,
                key,
                fence,
                at_ms,
                fingerprint,
                result,
            } => RecordRef::Complete {
                id,
                key: *key,
                fence: *fence,
                at_ms: *at_ms,
                fingerprint: fingerprint.as_deref(),
                result: result.as_deref(),
            },
            LogRecord::Fence { value } => RecordRef::Fence { value: *value },
            LogRecord::Epoch { epoch } => RecordRef::Epoch { epoch: *epoch },
            LogRecord::Group { count } => RecordRef::Group { count: *count },
        }
    }
}

/// A decoded record that borrows its byte strings from the buffer it was decoded from.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum RecordRef<'a> {
    /// See [`LogRecord::Lock`].
    Lock {
        /// The id.
        id: &'a [u8],
        /// The holder's key.
        key: KeyBytes,
        /// The fence of the grant.
        fence: u64,
        /// Lease end in Unix ms, 0 for none.
        deadline_ms: u64,
        /// The fingerprint, if any.
        fingerprint: Option<&'a [u8]>,
    },
    /// See [`LogRecord::Unlock`].
    Unlock {
        /// The id.
        id: &'a [u8],
    },
    /// See [`LogRecord::Renew`].
    Renew {
        /// The id.
        id: &'a [u8],
        /// The new deadline in Unix ms.
        deadline_ms: u64,
    },
    /// See [`LogRecord::Complete`].
    Complete {
        /// The id.
        id: &'a [u8],
        /// The completing holder's key.
        key: KeyBytes,
        /// The fence of the grant.
        fence: u64,
        /// Completion time in Unix ms.
        at_ms: u64,
        /// The fingerprint, if any.
        fingerprint: Option<&'a [u8]>,
        /// The result, if any.
        result: Option<&'a [u8]>,
    },
    /// See [`LogRecord::Fence`].
    Fence {
        /// The highest fence issued.
        value: u64,
    },
    /// See [`LogRecord::Epoch`].
    Epoch {
        /// The run number.
        epoch: u64,
    },
    /// See [`LogRecord::Group`].
    Group {
        /// How many records follow in the group.
        count: u32,
    },
}

impl RecordRef<'_> {
    /// Copies the borrowed bytes into an owned [`LogRecord`].
    pub fn to_record(&self) -> LogRecord {
        let boxed = |b: &[u8]| -> Box<[u8]> { b.into() };
        match *self {
            RecordRef::Lock {
                id,
                key,
                fence,
                deadline_ms,
                fingerprint,
            } => LogRecord::Lock {
                id: boxed(id),
                key,
                fence,
                deadline_ms,
                fingerprint: fingerprint.map(boxed),
            },
            RecordRef::Unlock { id } => LogRecord::Unlock { id: boxed(id) },
            RecordRef::Renew { id, deadline_ms } => LogRecord::Renew {
                id: boxed(id),
                deadline_ms,
            },
            RecordRef::Complete {
                id,
                key,
                fence,
                at_ms,
                fingerprint,
                result,
            } => LogRecord::Complete {
                id: boxed(id),
                key,
                fence,
                at_ms,
                fingerprint: fingerprint.map(boxed),
                result: result.map(boxed),
            },
            RecordRef::Fence { value } => LogRecord::Fence { value },
            RecordRef::Epoch { epoch } => LogRecord::Epoch { epoch },
            RecordRef::Group { count } => LogRecord::Group { count },
        }
    }
}
