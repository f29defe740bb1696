//! Taking back the changes the log could not store: each change leaves an [`Undo`] step until
//! the log has them; a failed write rolls them back, newest first.

use super::{At, Entry, Extra, LockTable, State};
use crate::table::store::Slot;

/// How to take back one logged change if the log could not store it.
#[derive(Debug)]
pub(super) enum Undo {
    /// A grant: remove the entry of the id with this hash and fence. Undo steps name entries
    /// by hash and fence, not by slot: a later step taken back first may have put the entry
    /// back in another slot.
    Grant { hash: u64, fence: u64 },
    /// A release: put the removed entry back in its cell.
    Release(Slot, Entry, Option<Extra>),
    /// A completion: back to locked with this deadline and result.
    Complete {
        hash: u64,
        fence: u64,
        deadline_ms: u64,
        result: Option<Box<[u8]>>,
    },
    /// A renewal: back to this deadline.
    Renew {
        hash: u64,
        fence: u64,
        deadline_ms: u64,
    },
}

impl LockTable {
    /// Forgets how to take back the changes made so far: they are safely logged.
    pub fn commit(&mut self) {
        self.undo.clear();
    }

    /// Takes back every change made since the last [`LockTable::commit`], newest first, because
    /// the log could not store them. Waiters popped by those changes are not requeued: their
    /// replies are failed along with the changes'.
    pub fn roll_back(&mut self) {
        while let Some(step) = self.undo.pop() {
            match step {
                Undo::Grant { hash, fence } => {
                    if let Some(slot) = self.store.find_fenced(hash, fence) {
                        self.remove_slot(At { slot, hash });
                    }
                }
                Undo::Release(slot, entry, extra) => {
                    let hash = self.store.hash(entry.id());
                    self.insert_hashed(hash, entry, extra, Some(slot));
                }
                Undo::Complete {
                    hash,
                    fence,
                    deadline_ms,
                    result,
                } => {
                    let Some(slot) = self.store.find_fenced(hash, fence) else {
                        continue;
                    };
                    let Some(e) = self.store.get_mut(slot) else {
                        continue;
                    };
                    e.set_state(State::Locked, deadline_ms);
                    let keep = match self.extras.get_mut(&slot) {
                        Some(extra) => {
                            extra.result = result;
                            !extra.is_empty()
                        }
                        None => false,
                    };
                    if !keep {
                        e.set_has_extra(false);
                        self.extras.remove(&slot);
                    }
                    self.completed -= 1;
                    self.locked += 1;
                    if deadline_ms != 0 {
                        self.expiry.push(deadline_ms, slot);
                    }
                }
                Undo::Renew {
                    hash,
                    fence,
                    deadline_ms,
                } => {
                    let slot = self.store.find_fenced(hash, fence);
                    if let Some((slot, e)) = slot.and_then(|s| Some((s, self.store.get_mut(s)?))) {
                        e.set_at_ms(deadline_ms);
                        self.expiry.push(deadline_ms, slot);
                    }
                }
            }
        }
    }
}
