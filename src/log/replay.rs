//! The recovery state machine: folds records from any number of files into one state per id.
//!
//! Rules (the why is in `docs/LOG_FORMAT.md`):
//! - Every record is stamped with the epoch (server run) of the `Epoch` marker before it in
//!   its file (0 before any marker).
//! - Lock, Complete and Unlock *assign* an id's whole state. An assignment replaces the
//!   current one unless the current one is from a later epoch; within one epoch the later
//!   record in file order wins (one run keeps an id on one shard, so one epoch's records for
//!   an id are all in one file). Unlock leaves a tombstone, so an older record in another
//!   file cannot bring the id back.
//! - Renew is not an assignment: it is kept beside the assignment as "the latest renew",
//!   provided it is not older than the assignment, and applied at the end if the id is then
//!   locked. This makes the result independent of the order in which files are read.
//! - A rewritten file supersedes, for the ids of the shard it was written for, every record
//!   of an earlier epoch in every file (its header says which shard layout and epoch);
//!   superseded records are skipped.
//! - Fences are counted from every record, superseded or not: fences never go backwards.

use ahash::RandomState;
use hashbrown::HashTable;
use hashbrown::hash_table::Entry;

use super::format::FileHeader;
use crate::types::KeyBytes;
use crate::types::LogRecord;
use crate::types::RecordRef;
use crate::types::{shard_for, slot_for};

/// One tracked id. Its hash slot is computed once, while the id's bytes are still in the read
/// buffer, so whoever routes the live records at the end never reads the id again (with
/// millions of ids, each such read is a cache miss).
#[derive(Debug)]
#[cfg_attr(test, derive(Clone))]
struct Tracked {
    id: Box<[u8]>,
    hash_slot: u16,
    slot: Slot,
}

/// A live id's state after replay, as one Lock or Complete record, with the id's hash slot
/// ([`crate::types::slot_for`]) for routing.
#[derive(Debug)]
pub struct LiveRecord {
    /// The id's hash slot.
    pub hash_slot: u16,
    /// The id's state.
    pub record: LogRecord,
}

/// The live ids after replay, one [`LiveRecord`] each, in no particular order; consumed as it
/// is read, so recovery never holds two copies of them (tests may clone it).
#[derive(Debug)]
#[cfg_attr(test, derive(Clone))]
pub struct LiveRecords {
    ids: std::vec::IntoIter<Tracked>,
}

impl Iterator for LiveRecords {
    type Item = LiveRecord;

    fn next(&mut self) -> Option<LiveRecord> {
        self.ids.by_ref().find_map(Tracked::into_live)
    }

    fn size_hint(&self) -> (usize, Option<usize>) {
        (0, Some(self.ids.len()))
    }
}

impl Tracked {
    /// The id as a record, if it is live (locked or completed).
    fn into_live(self) -> Option<LiveRecord> {
        let Tracked {
            id,
            hash_slot,
            slot,
        } = self;
        let record = match slot.state {
            SlotState::Unassigned | SlotState::Free => return None,
            SlotState::Locked {
                key,
                fence,
                deadline_ms,
                fingerprint,
            } => LogRecord::Lock {
                key,
                fence,
                deadline_ms: slot.renew.map_or(deadline_ms, |(_, d)| d),
                fingerprint,
                id,
            },
            SlotState::Completed {
                key,
                fence,
                at_ms,
                fingerprint,
                result,
            } => LogRecord::Complete {
                key,
                fence,
                at_ms,
                fingerprint,
                result,
                id,
            },
        };
        Some(LiveRecord { hash_slot, record })
    }
}

/// The recovered state of one id so far.
#[derive(Debug)]
#[cfg_attr(test, derive(Clone))]
struct Slot {
    /// Epoch of the assignment in `state`.
    epoch: u64,
    state: SlotState,
    /// The latest renew not older than the assignment: (epoch, deadline).
    renew: Option<(u64, u64)>,
}

#[derive(Debug)]
#[cfg_attr(test, derive(Clone))]
enum SlotState {
    /// Only renews seen so far.
    Unassigned,
    /// Unlocked: a tombstone until the end of recovery.
    Free,
    Locked {
        key: KeyBytes,
        fence: u64,
        deadline_ms: u64,
        fingerprint: Option<Box<[u8]>>,
    },
    Completed {
        key: KeyBytes,
        fence: u64,
        at_ms: u64,
        fingerprint: Option<Box<[u8]>>,
        result: Option<Box<[u8]>>,
    },
}

/// Which ids rewritten files supersede: per shard count seen in headers, the epoch floor of
/// each shard (records of earlier epochs are superseded).
#[derive(Debug, Default)]
struct Coverage {
    by_count: Vec<(usize, Vec<u64>)>,
    max_floor: u64,
}

impl Coverage {
    fn add(&mut self, shard: usize, shards: usize, epoch: u64) {
        let index = match self.by_count.iter().position(|(n, _)| *n == shards) {
            Some(i) => i,
            None => {
                self.by_count.push((shards, vec![0; shards]));
                self.by_count.len() - 1
            }
        };
        if let Some(floor) = self
            .by_count
            .get_mut(index)
            .and_then(|(_, floors)| floors.get_mut(shard))
        {
            *floor = (*floor).max(epoch);
        }
        self.max_floor = self.max_floor.max(epoch);
    }

    fn superseded(&self, id: &[u8], epoch: u64) -> bool {
        epoch < self.max_floor
            && self.by_count.iter().any(|(shards, floors)| {
                floors
                    .get(shard_for(id, *shards))
                    .is_some_and(|&floor| epoch < floor)
            })
    }
}

/// Folds records into per-id state.
///
/// Ids live in a vector in order of first appearance (new ids are appended: sequential
/// writes); the hash table holds only `(hash, position)`, 16 bytes per id, so the randomly
/// accessed memory stays small and growing the table never touches the ids.
#[derive(Debug, Default)]
pub(crate) struct Replay {
    index: HashTable<(u64, usize)>,
    ids: Vec<Tracked>,
    hasher: RandomState,
    coverage: Coverage,
    max_fence: u64,
    max_epoch: u64,
}

impl Replay {
    /// Registers a file header; must be called for every file before any record is applied.
    pub(crate) fn add_header(&mut self, header: &FileHeader) {
        self.max_epoch = self.max_epoch.max(header.covers_epoch);
        if header.covers_epoch > 0 {
            let shard = usize::try_from(header.shard).unwrap_or(usize::MAX);
            let shards = usize::try_from(header.shards).unwrap_or(0);
            self.coverage.add(shard, shards, header.covers_epoch);
        }
    }

    /// The highest epoch seen in headers and `Epoch` records.
    pub(crate) fn max_epoch(&self) -> u64 {
        self.max_epoch
    }

    /// Applies one record stamped with `epoch`. `Epoch` markers only raise the maximum; the
    /// caller tracks the current epoch of each file.
    pub(crate) fn apply(&mut self, rec: &RecordRef<'_>, epoch: u64) {
        match *rec {
            RecordRef::Epoch { epoch } => self.max_epoch = self.max_epoch.max(epoch),
            // Recovery holds a group's records back until the last one is read.
            RecordRef::Group { .. } => {}
            RecordRef::Fence { value } => self.max_fence = self.max_fence.max(value),
            RecordRef::Lock {
                id,
                key,
                fence,
                deadline_ms,
                fingerprint,
            } => {
                self.max_fence = self.max_fence.max(fence);
                self.assign(id, epoch, || SlotState::Locked {
                    key,
                    fence,
                    deadline_ms,
                    fingerprint: fingerprint.map(Box::from),
                });
            }
            RecordRef::Complete {
                id,
                key,
                fence,
                at_ms,
                fingerprint,
                result,
            } => {
                self.max_fence = self.max_fence.max(fence);
                self.assign(id, epoch, || SlotState::Completed {
                    key,
                    fence,
                    at_ms,
                    fingerprint: fingerprint.map(Box::from),
                    result: result.map(Box::from),
                });
            }
            RecordRef::Unlock { id } => self.assign(id, epoch, || SlotState::Free),
            RecordRef::Renew { id, deadline_ms } => self.renew(id, epoch, deadline_ms),
        }
    }

    /// The slot of `id`, tracking it (unassigned, epoch 0) if it is new.
    fn slot(&mut self, id: &[u8]) -> Option<&mut Slot> {
        let hash = self.hasher.hash_one(id);
        let ids = &self.ids;
        let found = self.index.entry(
            hash,
            |&(h, at)| h == hash && ids.get(at).is_some_and(|t| *t.id == *id),
            |&(h, _)| h,
        );
        let at = match found {
            Entry::Occupied(o) => o.get().1,
            Entry::Vacant(v) => {
                let at = self.ids.len();
                v.insert((hash, at));
                self.ids.push(Tracked {
                    id: id.into(),
                    hash_slot: slot_for(id),
                    slot: Slot {
                        epoch: 0,
                        state: SlotState::Unassigned,
                        renew: None,
                    },
                });
                at
            }
        };
        self.ids.get_mut(at).map(|t| &mut t.slot)
    }

    fn assign(&mut self, id: &[u8], epoch: u64, state: impl FnOnce() -> SlotState) {
        if self.coverage.superseded(id, epoch) {
            return;
        }
        let Some(slot) = self.slot(id) else {
            return;
        };
        if epoch < slot.epoch {
            return;
        }
        slot.epoch = epoch;
        slot.state = state();
        if slot.renew.is_some_and(|(renewed, _)| renewed <= epoch) {
            slot.renew = None;
        }
    }

    fn renew(&mut self, id: &[u8], epoch: u64, deadline_ms: u64) {
        if self.coverage.superseded(id, epoch) {
            return;
        }
        let Some(slot) = self.slot(id) else {
            return;
        };
        if epoch >= slot.epoch && slot.renew.is_none_or(|(renewed, _)| epoch >= renewed) {
            slot.renew = Some((epoch, deadline_ms));
        }
    }

    /// The highest fence seen.
    pub(crate) fn max_fence(&self) -> u64 {
        self.max_fence
    }

    /// Number of ids tracked so far (tombstones included).
    #[cfg(test)]
    pub(crate) fn tracked(&self) -> usize {
        self.ids.len()
    }

    /// The live ids, one record each.
    pub(crate) fn into_live(self) -> LiveRecords {
        LiveRecords {
            ids: self.ids.into_iter(),
        }
    }
}
