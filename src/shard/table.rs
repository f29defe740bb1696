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
//! - The hash map is seeded at random per table (ahash), so chosen ids cannot force collisions.
//!   The expiry heap holds `(deadline, hash)` pairs, not copies of ids; a stale pair (the lease
//!   was renewed or released) is recognised by its deadline and skipped.
//!
//! Storage primitives live here; what each command means lives in `command/`.

use std::cmp::Reverse;
use std::collections::{BinaryHeap, VecDeque};

use ahash::RandomState;
use hashbrown::HashMap;
use subtle::ConstantTimeEq;

use crate::command::ApplyCtx;
use crate::command::errors;
use crate::log::LogRecord;
use crate::log::codec::RecordRef;
use crate::protocol::{KeyBytes, Reply};
use crate::shard::Origin;
use crate::shard::segmented::Segmented;

/// An activity id as stored: any non-empty byte string.
pub type Id = Box<[u8]>;

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

/// A stored id.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Entry {
    id: Id,
    /// Locked or completed.
    pub state: State,
    /// The key handed out by the LOCK that took the id.
    pub key: KeyBytes,
    /// The fencing token of that grant.
    pub fence: u64,
    /// Locked: when the lease ends (Unix ms; 0 = no lease). Completed: when it completed.
    pub at_ms: u64,
    /// Fingerprint and result, if any.
    pub extra: Option<Box<Extra>>,
}

impl Entry {
    /// A locked entry, as a grant or a replayed `Lock` record makes it.
    fn locked(
        id: Id,
        key: KeyBytes,
        fence: u64,
        deadline_ms: u64,
        fingerprint: Option<Box<[u8]>>,
    ) -> Entry {
        Entry {
            id,
            state: State::Locked,
            key,
            fence,
            at_ms: deadline_ms,
            extra: fingerprint.map(|f| {
                Box::new(Extra {
                    fingerprint: Some(f),
                    result: None,
                })
            }),
        }
    }

    /// The id.
    pub fn id(&self) -> &[u8] {
        &self.id
    }

    /// Compares `key` with this entry's key in constant time.
    pub fn key_matches(&self, key: &KeyBytes) -> bool {
        self.key.ct_eq(key).into()
    }

    /// The fingerprint, if one was given.
    pub fn fingerprint(&self) -> Option<&[u8]> {
        self.extra.as_ref()?.fingerprint.as_deref()
    }

    /// The stored result, if any.
    pub fn result(&self) -> Option<&[u8]> {
        self.extra.as_ref()?.result.as_deref()
    }

    /// The record that recreates this entry, borrowing from it (no copies: for rewrites).
    pub fn as_record(&self) -> RecordRef<'_> {
        match self.state {
            State::Locked => RecordRef::Lock {
                id: &self.id,
                key: self.key,
                fence: self.fence,
                deadline_ms: self.at_ms,
                fingerprint: self.fingerprint(),
            },
            State::Completed => RecordRef::Complete {
                id: &self.id,
                key: self.key,
                fence: self.fence,
                at_ms: self.at_ms,
                fingerprint: self.fingerprint(),
                result: self.result(),
            },
        }
    }

    /// The record that recreates this entry.
    pub fn to_record(&self) -> LogRecord {
        self.as_record().to_record()
    }
}

/// A LOCK ... WAIT queued for a locked id.
#[derive(Debug)]
pub struct Waiter {
    seq: u64,
    /// Who gets the reply.
    pub origin: Origin,
    /// The lease the grant gets.
    pub lease_ms: Option<u64>,
    /// The fingerprint the grant gets.
    pub fingerprint: Option<Box<[u8]>>,
    /// Reply `[key, fence]` instead of the key.
    pub with_fence: bool,
    deadline_ms: u64,
}

/// A reply owed to a waiter, produced while running some other command or a sweep.
#[derive(Debug)]
pub struct Delivery {
    /// Who gets it.
    pub origin: Origin,
    /// The reply.
    pub reply: Reply,
    /// For a grant: the id and key, so a grant whose waiter has gone can be released.
    pub grant: Option<(Id, KeyBytes)>,
}

/// How to take back one logged change if the log could not store it.
#[derive(Debug)]
enum Undo {
    /// A grant: remove the entry with this fence.
    Grant { hash: u64, fence: u64 },
    /// A release: put the removed entry back.
    Release(Entry),
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

/// The lock table of one shard.
#[derive(Debug)]
pub struct LockTable {
    hasher: RandomState,
    entries: Segmented<Entry>,
    expiry: BinaryHeap<Reverse<(u64, u64)>>,
    waits: HashMap<Id, VecDeque<Waiter>, RandomState>,
    wait_deadlines: BinaryHeap<Reverse<(u64, u64, Id)>>,
    next_waiter: u64,
    locked: usize,
    completed: usize,
    waiting: usize,
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
            hasher: RandomState::new(),
            entries: Segmented::default(),
            expiry: BinaryHeap::new(),
            waits: HashMap::default(),
            wait_deadlines: BinaryHeap::new(),
            next_waiter: 0,
            locked: 0,
            completed: 0,
            waiting: 0,
            counters: Counters::default(),
            policy,
            undo: Vec::new(),
        }
    }

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
                    if let Ok(slot) = self.entries.find_entry(hash, |e| e.fence == fence) {
                        slot.remove();
                        self.locked -= 1;
                    }
                }
                Undo::Release(entry) => self.insert(entry),
                Undo::Complete {
                    hash,
                    fence,
                    deadline_ms,
                    result,
                } => {
                    if let Some(e) = self.entries.find_mut(hash, |e| e.fence == fence) {
                        e.state = State::Locked;
                        e.at_ms = deadline_ms;
                        if let Some(extra) = e.extra.as_mut() {
                            extra.result = result;
                        }
                        if e.extra.as_ref().is_some_and(|x| **x == Extra::default()) {
                            e.extra = None;
                        }
                        self.completed -= 1;
                        self.locked += 1;
                        if deadline_ms != 0 {
                            self.expiry.push(Reverse((deadline_ms, hash)));
                        }
                    }
                }
                Undo::Renew {
                    hash,
                    fence,
                    deadline_ms,
                } => {
                    if let Some(e) = self.entries.find_mut(hash, |e| e.fence == fence) {
                        e.at_ms = deadline_ms;
                        self.expiry.push(Reverse((deadline_ms, hash)));
                    }
                }
            }
        }
    }

    fn hash(&self, id: &[u8]) -> u64 {
        self.hasher.hash_one(id)
    }

    /// The entry for `id` as stored, without checking deadlines.
    pub fn peek(&self, id: &[u8]) -> Option<&Entry> {
        self.entries.find(self.hash(id), |e| &*e.id == id)
    }

    /// The entry for `id` if it is locked or completed *now*: an expired lease is freed (and
    /// its first waiter granted) and a completion past retention is reaped before answering.
    pub fn live(&mut self, id: &[u8], ctx: &mut ApplyCtx<'_>) -> Option<&mut Entry> {
        let hash = self.hash(id);
        let due = self.is_due(self.entries.find(hash, |e| &*e.id == id)?, ctx.now_ms);
        if due {
            self.expire_entry(hash, id, ctx);
        }
        self.entries.find_mut(hash, |e| &*e.id == id)
    }

    fn is_due(&self, e: &Entry, now_ms: u64) -> bool {
        match e.state {
            State::Locked => e.at_ms != 0 && e.at_ms <= now_ms,
            State::Completed => {
                self.policy.retention_ms != 0
                    && e.at_ms.saturating_add(self.policy.retention_ms) <= now_ms
            }
        }
    }

    /// Whether `e` is the entry a heap pair `(deadline, hash)` points at. The hash must be
    /// compared in full: the table's probe only filters on a few bits of it, and many entries
    /// can share a deadline.
    fn is_target(&self, e: &Entry, deadline: u64, hash: u64) -> bool {
        self.deadline_of(e) == Some(deadline) && self.hash(&e.id) == hash
    }

    /// When `e` must go, if ever.
    fn deadline_of(&self, e: &Entry) -> Option<u64> {
        match e.state {
            State::Locked => (e.at_ms != 0).then_some(e.at_ms),
            State::Completed => (self.policy.retention_ms != 0)
                .then(|| e.at_ms.saturating_add(self.policy.retention_ms)),
        }
    }

    fn expire_entry(&mut self, hash: u64, id: &[u8], ctx: &mut ApplyCtx<'_>) {
        let Ok(slot) = self.entries.find_entry(hash, |e| &*e.id == id) else {
            return;
        };
        let (entry, _) = slot.remove();
        match entry.state {
            State::Locked => {
                self.locked -= 1;
                self.counters.expired += 1;
                self.grant_next(entry.id, ctx);
            }
            State::Completed => {
                self.completed -= 1;
                self.counters.reaped += 1;
            }
        }
    }

    /// Takes a free id for a new holder: a fresh key and fence, the lease, a log record.
    /// Returns the key and fence.
    pub fn grant(
        &mut self,
        id: Id,
        lease_ms: Option<u64>,
        fingerprint: Option<Box<[u8]>>,
        ctx: &mut ApplyCtx<'_>,
    ) -> (KeyBytes, u64) {
        let key = ctx.keys.next_key();
        let fence = ctx.next_fence();
        let deadline_ms = lease_ms
            .or(self.policy.default_lease_ms)
            .map_or(0, |ms| ctx.now_ms.saturating_add(ms).max(1));
        ctx.records.push(LogRecord::Lock {
            id: id.clone(),
            key,
            fence,
            deadline_ms,
            fingerprint: fingerprint.clone(),
        });
        let hash = self.hash(&id);
        self.undo.push(Undo::Grant { hash, fence });
        self.insert_hashed(
            hash,
            Entry::locked(id, key, fence, deadline_ms, fingerprint),
        );
        (key, fence)
    }

    /// Stores an entry for a free id (a grant, or a record replayed at start-up).
    pub fn insert(&mut self, entry: Entry) {
        self.insert_hashed(self.hash(&entry.id), entry);
    }

    /// [`LockTable::insert`] for an entry whose id's hash is already known.
    fn insert_hashed(&mut self, hash: u64, entry: Entry) {
        if let Some(deadline) = self.deadline_of(&entry) {
            self.expiry.push(Reverse((deadline, hash)));
        }
        match entry.state {
            State::Locked => self.locked += 1,
            State::Completed => self.completed += 1,
        }
        let hasher = &self.hasher;
        self.entries
            .insert_unique(hash, entry, |e| hasher.hash_one(&e.id));
    }

    /// Frees a locked id and grants it to its first waiter, if any.
    pub fn release(&mut self, id: &[u8], ctx: &mut ApplyCtx<'_>) {
        let hash = self.hash(id);
        if let Ok(slot) = self.entries.find_entry(hash, |e| &*e.id == id) {
            let (entry, _) = slot.remove();
            self.locked -= 1;
            let id = entry.id.clone();
            ctx.records.push(LogRecord::Unlock { id: id.clone() });
            self.undo.push(Undo::Release(entry));
            self.grant_next(id, ctx);
        }
    }

    /// Completes a locked id, storing `result`, and tells every waiter it is completed.
    pub fn complete(&mut self, id: &[u8], result: Option<Box<[u8]>>, ctx: &mut ApplyCtx<'_>) {
        let hash = self.hash(id);
        let retention = self.policy.retention_ms;
        let Some(e) = self.entries.find_mut(hash, |e| &*e.id == id) else {
            return;
        };
        self.undo.push(Undo::Complete {
            hash,
            fence: e.fence,
            deadline_ms: e.at_ms,
            result: e.extra.as_mut().and_then(|x| x.result.take()),
        });
        e.state = State::Completed;
        e.at_ms = ctx.now_ms;
        if result.is_some() {
            e.extra.get_or_insert_with(Box::default).result = result;
        }
        ctx.records.push(e.to_record());
        self.locked -= 1;
        self.completed += 1;
        if retention != 0 {
            self.expiry
                .push(Reverse((ctx.now_ms.saturating_add(retention), hash)));
        }
        if let Some(queue) = self.waits.remove(id) {
            self.waiting -= queue.len();
            for w in queue {
                ctx.deliveries.push(Delivery {
                    origin: w.origin,
                    reply: errors::COMPLETED,
                    grant: None,
                });
            }
        }
    }

    /// Moves the lease deadline of a locked id.
    pub fn renew(&mut self, id: &[u8], lease_ms: u64, ctx: &mut ApplyCtx<'_>) {
        let hash = self.hash(id);
        let deadline_ms = ctx.now_ms.saturating_add(lease_ms).max(1);
        if let Some(e) = self.entries.find_mut(hash, |e| &*e.id == id) {
            self.undo.push(Undo::Renew {
                hash,
                fence: e.fence,
                deadline_ms: e.at_ms,
            });
            e.at_ms = deadline_ms;
            self.expiry.push(Reverse((deadline_ms, hash)));
            ctx.records.push(LogRecord::Renew {
                id: id.into(),
                deadline_ms,
            });
        }
    }

    /// Queues a waiter for a locked id. Returns false if the queue is full.
    #[allow(clippy::too_many_arguments)]
    pub fn park(
        &mut self,
        id: &[u8],
        origin: Origin,
        wait_ms: u64,
        lease_ms: Option<u64>,
        fingerprint: Option<Box<[u8]>>,
        with_fence: bool,
        now_ms: u64,
    ) -> bool {
        let queue = self.waits.entry(Id::from(id)).or_default();
        if queue.len() >= self.policy.max_waiters {
            return false;
        }
        self.next_waiter += 1;
        let deadline_ms = now_ms.saturating_add(wait_ms);
        queue.push_back(Waiter {
            seq: self.next_waiter,
            origin,
            lease_ms,
            fingerprint,
            with_fence,
            deadline_ms,
        });
        self.waiting += 1;
        self.wait_deadlines
            .push(Reverse((deadline_ms, self.next_waiter, id.into())));
        true
    }

    /// Grants a just-freed id to its first waiter.
    fn grant_next(&mut self, id: Id, ctx: &mut ApplyCtx<'_>) {
        let Some(queue) = self.waits.get_mut(&id) else {
            return;
        };
        let Some(w) = queue.pop_front() else {
            self.waits.remove(&id);
            return;
        };
        if queue.is_empty() {
            self.waits.remove(&id);
        }
        self.waiting -= 1;
        let (key, fence) = self.grant(id.clone(), w.lease_ms, w.fingerprint, ctx);
        ctx.deliveries.push(Delivery {
            origin: w.origin,
            reply: lock_reply(key, fence, w.with_fence),
            grant: Some((id, key)),
        });
    }

    /// Number of waiters queued for `id`.
    pub fn waiters(&self, id: &[u8]) -> usize {
        self.waits.get(id).map_or(0, VecDeque::len)
    }

    /// Frees expired leases, reaps completions past retention and times out waiters whose
    /// deadline passed, doing at most `budget` steps. Returns the steps done.
    pub fn expire_due(&mut self, ctx: &mut ApplyCtx<'_>, budget: usize) -> usize {
        let now = ctx.now_ms;
        let mut done = 0;
        while done < budget {
            // Take whichever deadline comes first; on a tie the lease goes first, so a waiter
            // whose wait ends at the very instant the lease does still gets the lock.
            let lease = self.expiry.peek().map(|Reverse((d, _))| *d);
            let wait = self.wait_deadlines.peek().map(|Reverse((d, _, _))| *d);
            let lease_first = match (lease, wait) {
                (Some(l), Some(w)) => l <= w,
                (Some(_), None) => true,
                (None, Some(_)) => false,
                (None, None) => break,
            };
            let first = if lease_first { lease } else { wait };
            if first.is_none_or(|d| d > now) {
                break;
            }
            done += 1;
            if lease_first {
                let Some(Reverse((deadline, hash))) = self.expiry.pop() else {
                    break;
                };
                let target = self
                    .entries
                    .find(hash, |e| self.is_target(e, deadline, hash))
                    .map(|e| e.id.clone());
                if let Some(id) = target {
                    self.expire_entry(hash, &id, ctx);
                }
            } else {
                let Some(Reverse((_, seq, id))) = self.wait_deadlines.pop() else {
                    break;
                };
                self.time_out_waiter(&id, seq, ctx);
            }
        }
        self.compact_heaps();
        done
    }

    /// Answers every queued waiter `-LOCKED` at once, as if its wait had run out (a shutdown
    /// does not wait for waits). Returns how many there were.
    pub fn time_out_all_waiters(&mut self, ctx: &mut ApplyCtx<'_>) -> usize {
        let mut n = 0;
        for (_, queue) in self.waits.drain() {
            for w in queue {
                n += 1;
                ctx.deliveries.push(Delivery {
                    origin: w.origin,
                    reply: errors::LOCKED,
                    grant: None,
                });
            }
        }
        self.waiting = 0;
        self.wait_deadlines.clear();
        n
    }

    fn time_out_waiter(&mut self, id: &[u8], seq: u64, ctx: &mut ApplyCtx<'_>) {
        let Some(queue) = self.waits.get_mut(id) else {
            return;
        };
        if let Some(pos) = queue.iter().position(|w| w.seq == seq) {
            if let Some(w) = queue.remove(pos) {
                self.waiting -= 1;
                debug_assert!(w.deadline_ms <= ctx.now_ms);
                ctx.deliveries.push(Delivery {
                    origin: w.origin,
                    reply: errors::LOCKED,
                    grant: None,
                });
            }
            if queue.is_empty() {
                self.waits.remove(id);
            }
        }
    }

    /// Drops stale heap pairs when they outnumber the live ones, so renewals and releases
    /// cannot grow the heaps without bound.
    fn compact_heaps(&mut self) {
        let live = self.locked + self.completed;
        if self.expiry.len() > 2 * live + 1024 {
            let heap = std::mem::take(&mut self.expiry);
            self.expiry = heap
                .into_iter()
                .filter(|Reverse((d, h))| {
                    self.entries
                        .find(*h, |e| self.is_target(e, *d, *h))
                        .is_some()
                })
                .collect();
        }
        if self.wait_deadlines.len() > 2 * self.waiting + 1024 {
            let heap = std::mem::take(&mut self.wait_deadlines);
            self.wait_deadlines = heap
                .into_iter()
                .filter(|Reverse((_, seq, id))| {
                    self.waits
                        .get(id)
                        .is_some_and(|q| q.iter().any(|w| w.seq == *seq))
                })
                .collect();
        }
    }

    /// The earliest deadline of a lease, retention or waiter, if any.
    pub fn next_deadline(&self) -> Option<u64> {
        let a = self.expiry.peek().map(|Reverse((d, _))| *d);
        let b = self.wait_deadlines.peek().map(|Reverse((d, _, _))| *d);
        match (a, b) {
            (Some(a), Some(b)) => Some(a.min(b)),
            (a, b) => a.or(b),
        }
    }

    /// Loads a recovered record (a `Lock` or `Complete` assignment) at start-up. Entries whose
    /// lease or retention already ended are skipped. Returns whether the entry was loaded.
    pub fn restore(&mut self, record: LogRecord, now_ms: u64) -> bool {
        let entry = match record {
            LogRecord::Lock {
                id,
                key,
                fence,
                deadline_ms,
                fingerprint,
            } => Entry::locked(id, key, fence, deadline_ms, fingerprint),
            LogRecord::Complete {
                id,
                key,
                fence,
                at_ms,
                fingerprint,
                result,
            } => Entry {
                id,
                state: State::Completed,
                key,
                fence,
                at_ms,
                extra: (fingerprint.is_some() || result.is_some()).then(|| {
                    Box::new(Extra {
                        fingerprint,
                        result,
                    })
                }),
            },
            _ => return false,
        };
        if self.is_due(&entry, now_ms) || self.peek(&entry.id).is_some() {
            return false;
        }
        self.insert(entry);
        true
    }

    /// The entries of segment `n` of the table (`0..SEGMENTS`), for rewriting the log a part
    /// at a time.
    pub fn segment(&self, n: usize) -> impl Iterator<Item = &Entry> {
        self.entries.segment(n)
    }

    /// Every stored entry, for rewriting the log.
    pub fn entries(&self) -> impl Iterator<Item = &Entry> {
        self.entries.iter()
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
        self.waiting
    }
}

/// The reply to a granted LOCK: the key, or `[key, fence]` with WITHFENCE.
pub fn lock_reply(key: KeyBytes, fence: u64, with_fence: bool) -> Reply {
    if with_fence {
        Reply::Array(vec![
            Reply::Key(key),
            Reply::Integer(i64::try_from(fence).unwrap_or(i64::MAX)),
        ])
    } else {
        Reply::Key(key)
    }
}
