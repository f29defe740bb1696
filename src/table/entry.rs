//! One stored id, packed into 48 bytes.
//!
//! A held lock is the unit of memory: a million of them should cost tens of megabytes, not
//! hundreds. An [`Entry`] keeps what every lock needs (id, key, fence, deadline) in one fixed
//! 48-byte cell, with short ids inline and the state in the fence's spare top bits. The rare
//! parts (a fingerprint, a stored result) live in a side map of the table, flagged here.

use std::fmt;

use subtle::ConstantTimeEq;
use thin_vec::ThinVec;

use crate::types::KeyBytes;
use crate::types::RecordRef;

/// Ids up to this many bytes are stored inside the entry; longer ones on the heap.
pub const INLINE_ID: usize = 14;

/// The highest fence an entry can hold: the top two bits of the fence word are flags. At ten
/// million grants a second it takes over ten thousand years to get there.
pub const MAX_FENCE: u64 = (1 << 62) - 1;

const COMPLETED: u64 = 1 << 63;
const HAS_EXTRA: u64 = 1 << 62;

/// Where an id stands.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum State {
    /// Held by whoever has the key.
    Locked,
    /// Done for good (or until reaped by `--completed-retention`).
    Completed,
}

/// Rarely used parts of an entry, kept out of line so plain locks stay small.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct Extra {
    /// The fingerprint given with LOCK.
    pub fingerprint: Option<Box<[u8]>>,
    /// The result given with COMPLETE.
    pub result: Option<Box<[u8]>>,
}

impl Extra {
    /// Whether there is nothing in it.
    pub fn is_empty(&self) -> bool {
        self.fingerprint.is_none() && self.result.is_none()
    }
}

/// An id as an entry stores it: 16 bytes, the bytes themselves when they fit, else one
/// allocation holding length and bytes behind a thin pointer.
#[derive(Clone, PartialEq, Eq)]
enum IdBuf {
    Inline { len: u8, bytes: [u8; INLINE_ID] },
    Heap(ThinVec<u8>),
}

impl IdBuf {
    fn new(id: &[u8]) -> IdBuf {
        if id.len() <= INLINE_ID {
            let mut bytes = [0; INLINE_ID];
            bytes[..id.len()].copy_from_slice(id);
            // The length fits: it is at most INLINE_ID.
            IdBuf::Inline {
                len: id.len() as u8,
                bytes,
            }
        } else {
            IdBuf::Heap(ThinVec::from(id))
        }
    }

    fn as_bytes(&self) -> &[u8] {
        match self {
            IdBuf::Inline { len, bytes } => &bytes[..usize::from(*len)],
            IdBuf::Heap(b) => b,
        }
    }
}

/// A stored id: locked or completed.
#[derive(Clone, PartialEq, Eq)]
pub struct Entry {
    key: KeyBytes,
    /// The fence, with [`COMPLETED`] and [`HAS_EXTRA`] in the top bits.
    meta: u64,
    at_ms: u64,
    id: IdBuf,
}

impl Entry {
    /// An entry for `id`. `at_ms` is the lease deadline of a locked id (Unix ms, 0 = none) or
    /// the completion time of a completed one. `fence` must be at most [`MAX_FENCE`].
    pub fn new(id: &[u8], state: State, key: KeyBytes, fence: u64, at_ms: u64) -> Entry {
        debug_assert!(fence <= MAX_FENCE);
        let mut meta = fence & MAX_FENCE;
        if state == State::Completed {
            meta |= COMPLETED;
        }
        Entry {
            key,
            meta,
            at_ms,
            id: IdBuf::new(id),
        }
    }

    /// The id.
    pub fn id(&self) -> &[u8] {
        self.id.as_bytes()
    }

    /// Locked or completed.
    pub fn state(&self) -> State {
        if self.meta & COMPLETED != 0 {
            State::Completed
        } else {
            State::Locked
        }
    }

    /// The fencing token of the grant that took the id.
    pub fn fence(&self) -> u64 {
        self.meta & MAX_FENCE
    }

    /// Locked: when the lease ends (Unix ms; 0 = no lease). Completed: when it completed.
    pub fn at_ms(&self) -> u64 {
        self.at_ms
    }

    /// The key handed out by the LOCK that took the id.
    pub fn key(&self) -> KeyBytes {
        self.key
    }

    /// Compares `key` with this entry's key in constant time.
    pub fn key_matches(&self, key: &KeyBytes) -> bool {
        self.key.ct_eq(key).into()
    }

    /// Whether the table keeps an [`Extra`] for this entry.
    pub fn has_extra(&self) -> bool {
        self.meta & HAS_EXTRA != 0
    }

    pub(super) fn set_has_extra(&mut self, on: bool) {
        if on {
            self.meta |= HAS_EXTRA;
        } else {
            self.meta &= !HAS_EXTRA;
        }
    }

    pub(super) fn set_state(&mut self, state: State, at_ms: u64) {
        match state {
            State::Locked => self.meta &= !COMPLETED,
            State::Completed => self.meta |= COMPLETED,
        }
        self.at_ms = at_ms;
    }

    pub(super) fn set_at_ms(&mut self, at_ms: u64) {
        self.at_ms = at_ms;
    }

    /// The record that recreates this entry with its extra parts, borrowing from both.
    pub fn as_record<'a>(&'a self, extra: Option<&'a Extra>) -> RecordRef<'a> {
        let fingerprint = extra.and_then(|x| x.fingerprint.as_deref());
        match self.state() {
            State::Locked => RecordRef::Lock {
                id: self.id(),
                key: self.key,
                fence: self.fence(),
                deadline_ms: self.at_ms,
                fingerprint,
            },
            State::Completed => RecordRef::Complete {
                id: self.id(),
                key: self.key,
                fence: self.fence(),
                at_ms: self.at_ms,
                fingerprint,
                result: extra.and_then(|x| x.result.as_deref()),
            },
        }
    }
}

impl fmt::Debug for Entry {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("Entry")
            .field("id", &String::from_utf8_lossy(self.id()))
            .field("state", &self.state())
            .field("fence", &self.fence())
            .field("at_ms", &self.at_ms)
            .field("has_extra", &self.has_extra())
            .finish_non_exhaustive()
    }
}

/// Where a looked-up entry is stored: its cell and its id's hash, so that changing it needs
/// no second lookup. Valid until the table next changes.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct At {
    pub(super) slot: u32,
    pub(super) hash: u64,
}

/// An entry as a command sees it: the entry, its extra parts, and where it is.
#[derive(Clone, Copy, Debug)]
pub struct View<'a> {
    entry: &'a Entry,
    extra: Option<&'a Extra>,
    at: At,
}

impl<'a> View<'a> {
    pub(super) fn new(entry: &'a Entry, extra: Option<&'a Extra>, at: At) -> View<'a> {
        View { entry, extra, at }
    }

    /// Where the entry is, for [`crate::table::LockTable`]'s changes.
    pub fn at(&self) -> At {
        self.at
    }

    /// The fingerprint, if one was given.
    pub fn fingerprint(&self) -> Option<&'a [u8]> {
        self.extra?.fingerprint.as_deref()
    }

    /// The stored result, if any.
    pub fn result(&self) -> Option<&'a [u8]> {
        self.extra?.result.as_deref()
    }

    /// The record that recreates this entry.
    pub fn as_record(&self) -> RecordRef<'a> {
        self.entry.as_record(self.extra)
    }
}

impl std::ops::Deref for View<'_> {
    type Target = Entry;

    fn deref(&self) -> &Entry {
        self.entry
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn an_entry_is_48_bytes_and_a_free_cell_costs_nothing_more() {
        assert_eq!(size_of::<IdBuf>(), 16);
        assert_eq!(size_of::<Entry>(), 48);
        assert_eq!(size_of::<Option<Entry>>(), 48);
    }

    #[test]
    fn ids_of_every_length_round_trip() {
        for len in [1, 2, INLINE_ID - 1, INLINE_ID, INLINE_ID + 1, 64, 4096] {
            let id: Vec<u8> = (0..len).map(|i| (i % 251) as u8).collect();
            let e = Entry::new(&id, State::Locked, [7; 16], 9, 0);
            assert_eq!(e.id(), &id[..], "length {len}");
        }
        // Trailing zero bytes are part of the id, not padding.
        let e = Entry::new(b"a\0", State::Locked, [0; 16], 1, 0);
        assert_eq!(e.id(), b"a\0");
        assert_ne!(e, Entry::new(b"a", State::Locked, [0; 16], 1, 0));
    }

    #[test]
    fn flags_never_leak_into_the_fence() {
        let mut e = Entry::new(b"x", State::Locked, [1; 16], MAX_FENCE, 5);
        assert_eq!(
            (e.state(), e.fence(), e.at_ms()),
            (State::Locked, MAX_FENCE, 5)
        );
        e.set_has_extra(true);
        e.set_state(State::Completed, 10);
        assert_eq!(
            (e.state(), e.fence(), e.at_ms(), e.has_extra()),
            (State::Completed, MAX_FENCE, 10, true)
        );
        e.set_has_extra(false);
        e.set_state(State::Locked, 20);
        assert_eq!(
            (e.state(), e.fence(), e.at_ms(), e.has_extra()),
            (State::Locked, MAX_FENCE, 20, false)
        );
        assert!(e.key_matches(&[1; 16]));
        assert!(!e.key_matches(&[2; 16]));
    }
}
