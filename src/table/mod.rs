//! One shard's slice of the lock table: entries, lease expiry, retention and wait queues.
//!
//! Invariants:
//! - Only the shard thread that owns the table touches it; there is no lock around it.
//! - A free id takes no memory: UNLOCK, expiry and reaping remove its entry.
//! - Completed entries keep their key, so a retried COMPLETE with the same key succeeds again.
//! - Waiters exist only for locked ids: when an id is freed the first waiter is granted at
//!   once; when it is completed every waiter is told so.
//! - An expired lease or a reaped completion is never observed: every lookup checks the
//!   deadline first ([`LockTable::live`]), and an active sweep ([`LockTable::expire_due`])
//!   reclaims untouched entries with bounded work per call.
//! - Entries live in a [`Store`] (48-byte cells, indexed by slot). [`Deadlines`] holds
//!   `(deadline, slot)` pairs; a stale pair (the lease was renewed or released, the slot
//!   reused) is recognised because the slot's entry no longer has that deadline. A reused
//!   slot whose new entry happens to share the deadline is due anyway.
//! - Fingerprints and results live in a side map by slot, flagged in the entry.
//!
//! The table is a state machine over the plain types: [`LockTable::apply`] takes an [`Op`] and
//! the time and returns an [`Outcome`]; the records to log and the answers owed to waiters go
//! into the [`ApplyCtx`]. It knows nothing of the wire, the log's bytes or the shards.
//!
//! Modules: [`entry`] (one stored id in 48 bytes), [`store`] (the slab of entries and its
//! index by id, [`index`]), [`deadlines`] (when entries must go), [`waits`] (queues of
//! `LOCK ... WAIT` callers) and [`op`] (the operations and what each one means); beside the
//! core here, `time.rs` runs deadlines out, `undo.rs` takes back what the log could not store,
//! and `snapshot.rs` turns the table into records and back.

pub mod deadlines;
pub mod entry;
pub mod index;
pub mod op;
mod snapshot;
pub mod store;
mod time;
mod undo;
pub mod waits;

use std::sync::atomic::{AtomicU64, Ordering};

use ahash::RandomState;
use hashbrown::HashMap;

use crate::keys::KeySource;
use crate::table::deadlines::Deadlines;
pub use crate::table::entry::{At, Entry, Extra, MAX_FENCE, State, View};
pub use crate::table::op::{Complete, Lock, Op, Outcome, Renew, Standing, Status, Unlock};
use crate::table::store::{Slot, Store};
pub use crate::table::waits::Waiter;
use crate::table::waits::Waits;
use crate::types::{Error, Id, KeyBytes, LogRecord, Origin};
use undo::Undo;

/// What an operation needs besides the table, and where its effects go.
pub struct ApplyCtx<'a> {
    /// Now, in milliseconds since the Unix epoch, read once per loop iteration.
    pub now_ms: u64,
    /// Where fresh keys come from.
    pub keys: &'a mut dyn KeySource,
    /// The server-wide fence counter: every grant takes the next value.
    pub fences: &'a AtomicU64,
    /// Who sent the operation (a waiting LOCK is answered there later).
    pub origin: Origin,
    /// Changes to log, in order.
    pub records: &'a mut Vec<LogRecord>,
    /// Answers owed to waiters, produced as a side effect.
    pub deliveries: &'a mut Vec<Delivery>,
}

impl ApplyCtx<'_> {
    /// The next fencing token: larger than every one handed out before, on any shard.
    pub fn next_fence(&self) -> u64 {
        self.fences.fetch_add(1, Ordering::Relaxed) + 1
    }
}

/// An answer owed to a waiter, produced while running some other operation or a sweep.
#[derive(Debug)]
pub struct Delivery {
    /// Who gets it.
    pub origin: Origin,
    /// The answer: a grant, `COMPLETED` or `LOCKED` (its wait ran out).
    pub outcome: Outcome,
    /// For a grant: the id and key, so a grant whose waiter has gone can be released.
    pub grant: Option<(Id, KeyBytes)>,
}

/// Proof from [`LockTable::lookup`] that an id is free, carrying its hash for the grant.
/// Valid until the table next changes.
#[derive(Clone, Copy, Debug)]
pub struct Vacant {
    hash: u64,
}

/// What a new holder asks of its grant.
#[derive(Clone, Debug, Default)]
pub struct Grant {
    /// The lease, in ms; `None`: the policy's default lease.
    pub lease_ms: Option<u64>,
    /// The fingerprint to keep with the id.
    pub fingerprint: Option<Box<[u8]>>,
    /// The key the holder chose; `None`: a fresh one.
    pub key: Option<KeyBytes>,
}

/// Settings that shape the table's behaviour.
#[derive(Clone, Copy, Debug, Default)]
pub struct Policy {
    /// Lease for a LOCK without PX/EX, in ms; `None` = held until UNLOCK/COMPLETE.
    pub default_lease_ms: Option<u64>,
    /// How long completed ids are kept, in ms; 0 = forever.
    pub retention_ms: u64,
    /// Longest queue of waiters per id.
    pub max_waiters: usize,
}

/// Lifetime counters for INFO.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct Counters {
    /// Leases that ran out.
    pub expired: u64,
    /// Completed ids removed by retention.
    pub reaped: u64,
    /// LOCKs refused because of a different fingerprint.
    pub mismatches: u64,
}

/// The side map of fingerprints and results shrinks to half full when, at this capacity or
/// more, it falls under a quarter full.
const EXTRAS_SHRINK_FROM: usize = 128;

/// The lock table of one shard.
#[derive(Debug)]
pub struct LockTable {
    store: Store,
    extras: HashMap<Slot, Extra, RandomState>,
    expiry: Deadlines,
    waits: Waits,
    locked: usize,
    completed: usize,
    /// Lifetime counters.
    pub counters: Counters,
    policy: Policy,
    /// Changes made since the last [`LockTable::commit`], newest last.
    undo: Vec<Undo>,
}

impl LockTable {
    /// An empty table with a randomly seeded hasher.
    pub fn new(policy: Policy) -> Self {
        LockTable {
            store: Store::default(),
            extras: HashMap::default(),
            expiry: Deadlines::default(),
            waits: Waits::default(),
            locked: 0,
            completed: 0,
            counters: Counters::default(),
            policy,
            undo: Vec::new(),
        }
    }

    /// Bytes held for entries, their index and their extra parts (see [`Store::memory`]; the
    /// extra parts' own heap bytes are not counted).
    pub fn memory(&self) -> usize {
        self.store.memory() + self.extras.allocation_size()
    }

    /// The extra parts of the entry in `slot`.
    fn extra_of(&self, slot: Slot, entry: &Entry) -> Option<&Extra> {
        if entry.has_extra() {
            self.extras.get(&slot)
        } else {
            None
        }
    }

    fn view(&self, at: At) -> Option<View<'_>> {
        let entry = self.store.get(at.slot)?;
        Some(View::new(entry, self.extra_of(at.slot, entry), at))
    }

    /// The entry for `id` as stored, without checking deadlines.
    pub fn peek(&self, id: &[u8]) -> Option<View<'_>> {
        let hash = self.store.hash(id);
        let slot = self.store.find(hash, id)?;
        self.view(At { slot, hash })
    }

    /// The entry for `id` if it is locked or completed *now*: an expired lease is freed (and
    /// its first waiter granted) and a completion past retention is reaped before answering.
    pub fn live(&mut self, id: &[u8], ctx: &mut ApplyCtx<'_>) -> Option<View<'_>> {
        self.lookup(id, ctx).ok()
    }

    /// [`LockTable::live`], or the proof that `id` is free, for [`LockTable::grant`]: one hash
    /// and one probe for the lookup and the grant together.
    pub fn lookup(&mut self, id: &[u8], ctx: &mut ApplyCtx<'_>) -> Result<View<'_>, Vacant> {
        let hash = self.store.hash(id);
        let vacant = Vacant { hash };
        let mut slot = self.store.find(hash, id).ok_or(vacant)?;
        if self
            .store
            .get(slot)
            .is_some_and(|e| self.is_due(e, ctx.now_ms))
        {
            self.expire_slot(At { slot, hash }, ctx);
            // The first waiter, if any, has just been granted the id.
            slot = self.store.find(hash, id).ok_or(vacant)?;
        }
        self.view(At { slot, hash }).ok_or(vacant)
    }

    /// Removes the entry in `slot` with its extra parts, keeping the counts.
    fn remove_slot(&mut self, at: At) -> Option<(Entry, Option<Extra>)> {
        let entry = self.store.remove_hashed(at.hash, at.slot)?;
        let extra = if entry.has_extra() {
            let extra = self.extras.remove(&at.slot);
            // Like the store's index, the side map gives memory back after a burst.
            if self.extras.capacity() >= EXTRAS_SHRINK_FROM
                && self.extras.len() * 4 < self.extras.capacity()
            {
                self.extras.shrink_to(self.extras.len() * 2);
            }
            extra
        } else {
            None
        };
        match entry.state() {
            State::Locked => self.locked -= 1,
            State::Completed => self.completed -= 1,
        }
        Some((entry, extra))
    }

    /// Takes a free id (found so by [`LockTable::lookup`]) for a new holder: its key (a fresh
    /// one unless the holder chose it), a fresh fence, the lease, a log record. Returns the key
    /// and fence.
    pub fn grant(
        &mut self,
        vacant: Vacant,
        id: Id,
        grant: Grant,
        ctx: &mut ApplyCtx<'_>,
    ) -> (KeyBytes, u64) {
        let Grant {
            lease_ms,
            fingerprint,
            key,
        } = grant;
        let key = key.unwrap_or_else(|| ctx.keys.next_key());
        let fence = ctx.next_fence();
        let deadline_ms = lease_ms
            .or(self.policy.default_lease_ms)
            .map_or(0, |ms| ctx.now_ms.saturating_add(ms).max(1));
        let hash = vacant.hash;
        let entry = Entry::new(&id, State::Locked, key, fence, deadline_ms);
        let extra = fingerprint.clone().map(|f| Extra {
            fingerprint: Some(f),
            result: None,
        });
        self.insert_hashed(hash, entry, extra, None);
        self.undo.push(Undo::Grant { hash, fence });
        ctx.records.push(LogRecord::Lock {
            id,
            key,
            fence,
            deadline_ms,
            fingerprint,
        });
        (key, fence)
    }

    /// Stores an entry for a free id, with its extra parts, in the cell `at` if given and free
    /// (taking a release back: an entry never moves, which a running rewrite's snapshot,
    /// encoded a slab chunk at a time, relies on), else in any free cell. Returns its slot.
    fn insert_hashed(
        &mut self,
        hash: u64,
        mut entry: Entry,
        extra: Option<Extra>,
        at: Option<Slot>,
    ) -> Slot {
        let deadline = self.deadline_of(&entry);
        match entry.state() {
            State::Locked => self.locked += 1,
            State::Completed => self.completed += 1,
        }
        let extra = extra.filter(|x| !x.is_empty());
        entry.set_has_extra(extra.is_some());
        let slot = match at {
            Some(slot) => match self.store.insert_at(slot, hash, entry) {
                Ok(()) => slot,
                Err(entry) => self.store.insert(hash, entry),
            },
            None => self.store.insert(hash, entry),
        };
        if let Some(extra) = extra {
            self.extras.insert(slot, extra);
        }
        if let Some(deadline) = deadline {
            self.expiry.push(deadline, slot);
        }
        slot
    }

    /// Frees locked `id`, found at `at`, and grants it to its first waiter, if any.
    pub fn release(&mut self, id: &[u8], at: At, ctx: &mut ApplyCtx<'_>) {
        let Some((entry, extra)) = self.remove_slot(at) else {
            return;
        };
        ctx.records.push(LogRecord::Unlock { id: id.into() });
        self.undo.push(Undo::Release(at.slot, entry, extra));
        if !self.waits.is_empty() {
            self.grant_next(id, ctx);
        }
    }

    /// Completes locked `id`, found at `at`, storing `result`, and tells every waiter it is
    /// completed.
    pub fn complete(
        &mut self,
        id: &[u8],
        at: At,
        result: Option<Box<[u8]>>,
        ctx: &mut ApplyCtx<'_>,
    ) {
        let At { slot, hash } = at;
        let Some(e) = self.store.get_mut(slot) else {
            return;
        };
        let previous = if e.has_extra() {
            self.extras.get_mut(&slot).and_then(|x| x.result.take())
        } else {
            None
        };
        self.undo.push(Undo::Complete {
            hash,
            fence: e.fence(),
            deadline_ms: e.at_ms(),
            result: previous,
        });
        e.set_state(State::Completed, ctx.now_ms);
        if result.is_some() {
            e.set_has_extra(true);
            self.extras.entry(slot).or_default().result = result;
        }
        if let Some(record) = self.view(at).map(|v| v.as_record().to_record()) {
            ctx.records.push(record);
        }
        self.locked -= 1;
        self.completed += 1;
        let retention = self.policy.retention_ms;
        if retention != 0 {
            self.expiry.push(ctx.now_ms.saturating_add(retention), slot);
        }
        if !self.waits.is_empty() {
            for w in self.waits.take_all(id) {
                ctx.deliveries.push(Delivery {
                    origin: w.origin,
                    outcome: Error::Completed.into(),
                    grant: None,
                });
            }
        }
    }

    /// Moves the lease deadline of locked `id`, found at `at`.
    pub fn renew(&mut self, id: &[u8], at: At, lease_ms: u64, ctx: &mut ApplyCtx<'_>) {
        let deadline_ms = ctx.now_ms.saturating_add(lease_ms).max(1);
        let At { slot, hash } = at;
        if let Some(e) = self.store.get_mut(slot) {
            self.undo.push(Undo::Renew {
                hash,
                fence: e.fence(),
                deadline_ms: e.at_ms(),
            });
            e.set_at_ms(deadline_ms);
            self.expiry.push(deadline_ms, slot);
            ctx.records.push(LogRecord::Renew {
                id: id.into(),
                deadline_ms,
            });
        }
    }

    /// Queues a waiter for a locked id. Returns false if the queue is full.
    pub fn park(&mut self, id: &[u8], waiter: Waiter) -> bool {
        self.waits.push(id, waiter, self.policy.max_waiters)
    }

    /// Grants a just-freed id to its first waiter.
    fn grant_next(&mut self, id: &[u8], ctx: &mut ApplyCtx<'_>) {
        let Some(w) = self.waits.pop_first(id) else {
            return;
        };
        let vacant = Vacant {
            hash: self.store.hash(id),
        };
        let grant = Grant {
            lease_ms: w.lease_ms,
            fingerprint: w.fingerprint,
            key: w.key,
        };
        let (key, fence) = self.grant(vacant, id.into(), grant, ctx);
        ctx.deliveries.push(Delivery {
            origin: w.origin,
            outcome: Outcome::Granted {
                key,
                fence,
                with_fence: w.with_fence,
            },
            grant: Some((id.into(), key)),
        });
    }

    /// Drops the queued `LOCK ... WAIT` callers whose origin `gone` names (their connection
    /// closed), so they are never granted, counted or kept. Returns how many were dropped.
    pub fn cancel_waiters(&mut self, gone: impl Fn(&Origin) -> bool) -> usize {
        let n = self.waits.cancel(gone);
        if n > 0 {
            self.waits.compact();
        }
        n
    }

    /// Number of waiters queued for `id`.
    pub fn waiters(&self, id: &[u8]) -> usize {
        self.waits.count(id)
    }

    /// Number of stored ids (locked plus completed).
    pub fn len(&self) -> usize {
        self.locked + self.completed
    }

    /// Whether no id is stored.
    pub fn is_empty(&self) -> bool {
        self.len() == 0
    }

    /// Number of locked ids.
    pub fn locked(&self) -> usize {
        self.locked
    }

    /// Number of completed ids.
    pub fn completed(&self) -> usize {
        self.completed
    }

    /// Number of queued waiters.
    pub fn waiting(&self) -> usize {
        self.waits.len()
    }
}
