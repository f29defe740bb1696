//! One shard's slice of the lock table.
//!
//! Invariants:
//! - Only the shard thread that owns the table touches it; there is no lock around it.
//! - A free id takes no memory: UNLOCK removes its entry. Only locked and completed ids are
//!   stored.
//! - Completed entries keep their key, so a retried COMPLETE with the same key succeeds again.
//! - The hash map is seeded at random per table (ahash), so an attacker who picks ids cannot
//!   force collisions.
//!
//! The table offers storage primitives; the semantics of each command live in `command/`.

use ahash::RandomState;
use hashbrown::HashMap;
use subtle::ConstantTimeEq;

use crate::protocol::KeyBytes;

/// An activity id as stored: any non-empty byte string.
pub type Id = Box<[u8]>;

/// Where an id stands.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum State {
    /// Held by whoever has the key.
    Locked,
    /// Done for good.
    Completed,
}

/// A stored id: its state and the key of its (last) holder.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Entry {
    /// Locked or completed.
    pub state: State,
    /// The key handed out by the LOCK that took the id.
    pub key: KeyBytes,
}

impl Entry {
    /// Compares `key` with this entry's key in constant time.
    pub fn key_matches(&self, key: &KeyBytes) -> bool {
        self.key.ct_eq(key).into()
    }
}

/// The lock table of one shard.
#[derive(Debug, Default)]
pub struct LockTable {
    map: HashMap<Id, Entry, RandomState>,
    locked: usize,
    completed: usize,
}

impl LockTable {
    /// An empty table with a randomly seeded hasher.
    pub fn new() -> Self {
        LockTable::default()
    }

    /// The entry for `id`, if it is locked or completed.
    pub fn get(&self, id: &[u8]) -> Option<&Entry> {
        self.map.get(id)
    }

    /// Stores `id` as locked under `key`. The id must be free.
    pub fn insert_locked(&mut self, id: Id, key: KeyBytes) {
        let previous = self.map.insert(
            id,
            Entry {
                state: State::Locked,
                key,
            },
        );
        debug_assert!(
            previous.is_none(),
            "insert_locked on an id that is not free"
        );
        self.locked += 1;
    }

    /// Frees a locked id. Returns whether it was locked.
    pub fn remove_locked(&mut self, id: &[u8]) -> bool {
        match self.map.get(id) {
            Some(e) if e.state == State::Locked => {
                self.map.remove(id);
                self.locked -= 1;
                true
            }
            _ => false,
        }
    }

    /// Turns a locked id into a completed one. Returns whether it was locked.
    pub fn mark_completed(&mut self, id: &[u8]) -> bool {
        match self.map.get_mut(id) {
            Some(e) if e.state == State::Locked => {
                e.state = State::Completed;
                self.locked -= 1;
                self.completed += 1;
                true
            }
            _ => false,
        }
    }

    /// Number of locked ids.
    pub fn locked(&self) -> usize {
        self.locked
    }

    /// Number of completed ids.
    pub fn completed(&self) -> usize {
        self.completed
    }
}
