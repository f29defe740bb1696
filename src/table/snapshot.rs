//! The table as whole-state records and back: restoring recovered records at start-up, and
//! reading the table a part at a time for a log rewrite.

use super::{At, Entry, Extra, LockTable, MAX_FENCE, State, View};
use crate::types::{LogRecord, RecordRef};

impl LockTable {
    /// Loads a recovered record (a `Lock` or `Complete` assignment) at start-up. Entries whose
    /// lease or retention already ended are skipped, and so are fences this server could
    /// never have handed out (above [`MAX_FENCE`]). Returns whether the entry was loaded.
    pub fn restore(&mut self, record: LogRecord, now_ms: u64) -> bool {
        let (id, entry, extra) = match record {
            LogRecord::Lock {
                id,
                key,
                fence,
                deadline_ms,
                fingerprint,
            } if fence <= MAX_FENCE => {
                let entry = Entry::new(&id, State::Locked, key, fence, deadline_ms);
                let extra = Extra {
                    fingerprint,
                    result: None,
                };
                (id, entry, extra)
            }
            LogRecord::Complete {
                id,
                key,
                fence,
                at_ms,
                fingerprint,
                result,
            } if fence <= MAX_FENCE => {
                let entry = Entry::new(&id, State::Completed, key, fence, at_ms);
                (
                    id,
                    entry,
                    Extra {
                        fingerprint,
                        result,
                    },
                )
            }
            _ => return false,
        };
        let hash = self.store.hash(&id);
        if self.is_due(&entry, now_ms) || self.store.find(hash, &id).is_some() {
            return false;
        }
        self.insert_hashed(hash, entry, Some(extra), None);
        true
    }

    /// Number of parts [`LockTable::part`] splits the table into, for rewriting the log a
    /// part at a time. An entry never moves between parts; entries stored after a rewrite
    /// began may land in any part, and their records are kept in the new log anyway.
    pub fn parts(&self) -> usize {
        self.store.chunks()
    }

    /// The records that recreate the entries of part `n` (`0..parts()`), borrowing from them.
    pub fn part(&self, n: usize) -> impl Iterator<Item = RecordRef<'_>> {
        self.store
            .chunk(n)
            .map(|(slot, e)| e.as_record(self.extra_of(slot, e)))
    }

    /// Every stored entry, with its extra parts.
    pub fn entries(&self) -> impl Iterator<Item = View<'_>> {
        self.store.iter().map(|(slot, e)| {
            let at = At {
                slot,
                hash: self.store.hash(e.id()),
            };
            View::new(e, self.extra_of(slot, e), at)
        })
    }
}
