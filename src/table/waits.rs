//! Queues of `LOCK ... WAIT` callers, per locked id, with their wait deadlines.
//!
//! Invariants:
//! - A queue is never empty: the last waiter out removes it.
//! - Every waiter has a pair `(deadline, seq, id)` in the deadline heap; a pair whose waiter
//!   has left (granted, told of a completion, cancelled) is stale, recognised by its `seq`, and
//!   dropped when popped or when stale pairs outnumber live ones.

use std::cmp::Reverse;
use std::collections::{BinaryHeap, VecDeque};

use ahash::RandomState;
use hashbrown::HashMap;

use crate::types::Origin;
use crate::types::{Id, KeyBytes};

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
    /// The key the grant gets, if the caller chose one.
    pub key: Option<KeyBytes>,
    /// When the wait runs out (Unix ms).
    pub deadline_ms: u64,
}

impl Waiter {
    /// A waiter, numbered when queued.
    pub fn new(
        origin: Origin,
        lease_ms: Option<u64>,
        fingerprint: Option<Box<[u8]>>,
        with_fence: bool,
        deadline_ms: u64,
    ) -> Waiter {
        Waiter {
            seq: 0,
            origin,
            lease_ms,
            fingerprint,
            with_fence,
            key: None,
            deadline_ms,
        }
    }
}

/// Every queue of one shard.
#[derive(Debug, Default)]
pub struct Waits {
    queues: HashMap<Id, VecDeque<Waiter>, RandomState>,
    deadlines: BinaryHeap<Reverse<(u64, u64, Id)>>,
    next_seq: u64,
    len: usize,
}

impl Waits {
    /// Queues `waiter` for `id` unless `id` already has `max` waiters. Returns whether it
    /// was queued.
    pub fn push(&mut self, id: &[u8], mut waiter: Waiter, max: usize) -> bool {
        let queue = self.queues.entry(Id::from(id)).or_default();
        if queue.len() >= max {
            if queue.is_empty() {
                self.queues.remove(id);
            }
            return false;
        }
        self.next_seq += 1;
        waiter.seq = self.next_seq;
        self.deadlines
            .push(Reverse((waiter.deadline_ms, waiter.seq, id.into())));
        queue.push_back(waiter);
        self.len += 1;
        true
    }

    /// Takes the first waiter for `id`.
    pub fn pop_first(&mut self, id: &[u8]) -> Option<Waiter> {
        let queue = self.queues.get_mut(id)?;
        let first = queue.pop_front();
        if queue.is_empty() {
            self.queues.remove(id);
        }
        self.len -= usize::from(first.is_some());
        first
    }

    /// Takes every waiter for `id`, in order.
    pub fn take_all(&mut self, id: &[u8]) -> VecDeque<Waiter> {
        let queue = self.queues.remove(id).unwrap_or_default();
        self.len -= queue.len();
        queue
    }

    /// Takes every waiter of every id.
    pub fn drain(&mut self) -> impl Iterator<Item = Waiter> + '_ {
        self.len = 0;
        self.deadlines.clear();
        self.queues.drain().flat_map(|(_, queue)| queue)
    }

    /// Removes every waiter whose origin `gone` names (its caller has gone), from every
    /// queue. Their deadline pairs turn stale. Returns how many were removed.
    pub fn cancel(&mut self, gone: impl Fn(&Origin) -> bool) -> usize {
        let mut removed = 0;
        self.queues.retain(|_, queue| {
            let before = queue.len();
            queue.retain(|w| !gone(&w.origin));
            removed += before - queue.len();
            !queue.is_empty()
        });
        self.len -= removed;
        removed
    }

    /// The earliest wait deadline (possibly of a waiter that has left).
    pub fn next_deadline(&self) -> Option<u64> {
        self.deadlines.peek().map(|Reverse((d, _, _))| *d)
    }

    /// Takes out the waiter whose deadline is the earliest, if that is at most `now`, with the
    /// id it waited for, and whether there was such a deadline at all (a stale one yields no
    /// waiter).
    pub fn pop_due(&mut self, now: u64) -> Option<Option<(Id, Waiter)>> {
        if self.next_deadline().is_none_or(|d| d > now) {
            return None;
        }
        let Reverse((_, seq, id)) = self.deadlines.pop()?;
        let Some(queue) = self.queues.get_mut(&id) else {
            return Some(None);
        };
        let Some(pos) = queue.iter().position(|w| w.seq == seq) else {
            return Some(None);
        };
        let waiter = queue.remove(pos);
        if queue.is_empty() {
            self.queues.remove(&id);
        }
        self.len -= usize::from(waiter.is_some());
        Some(waiter.map(|w| (id, w)))
    }

    /// Drops stale deadline pairs when they outnumber the live ones.
    pub fn compact(&mut self) {
        if self.deadlines.len() > 2 * self.len + 1024 {
            let heap = std::mem::take(&mut self.deadlines);
            self.deadlines = heap
                .into_iter()
                .filter(|Reverse((_, seq, id))| {
                    self.queues
                        .get(id)
                        .is_some_and(|q| q.iter().any(|w| w.seq == *seq))
                })
                .collect();
        }
    }

    /// Number of waiters for `id`.
    pub fn count(&self, id: &[u8]) -> usize {
        self.queues.get(id).map_or(0, VecDeque::len)
    }

    /// Number of waiters in all.
    pub fn len(&self) -> usize {
        self.len
    }

    /// Whether nobody waits.
    pub fn is_empty(&self) -> bool {
        self.len == 0
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn waiter(deadline_ms: u64) -> Waiter {
        Waiter::new(
            Origin::External(deadline_ms),
            None,
            None,
            false,
            deadline_ms,
        )
    }

    #[test]
    fn queues_are_fifo_bounded_and_vanish_when_empty() {
        let mut w = Waits::default();
        assert!(w.push(b"a", waiter(10), 2));
        assert!(w.push(b"a", waiter(20), 2));
        assert!(!w.push(b"a", waiter(30), 2), "the queue is full");
        assert!(!w.push(b"b", waiter(30), 0), "no room at all");
        assert_eq!((w.len(), w.count(b"a"), w.count(b"b")), (2, 2, 0));
        assert_eq!(w.pop_first(b"a").map(|x| x.deadline_ms), Some(10));
        assert_eq!(w.pop_first(b"a").map(|x| x.deadline_ms), Some(20));
        assert!(w.pop_first(b"a").is_none());
        assert!(w.queues.is_empty() && w.is_empty());
        // Both deadlines are stale now: popped, they yield nobody.
        assert!(matches!(w.pop_due(100), Some(None)));
        assert!(matches!(w.pop_due(100), Some(None)));
        assert!(w.pop_due(100).is_none());
    }

    #[test]
    fn deadlines_time_out_the_right_waiter() {
        let mut w = Waits::default();
        w.push(b"a", waiter(30), 8);
        w.push(b"a", waiter(10), 8);
        w.push(b"b", waiter(20), 8);
        assert_eq!(w.next_deadline(), Some(10));
        assert!(w.pop_due(9).is_none());
        let first = w.pop_due(10).flatten().map(|(_, x)| x.deadline_ms);
        assert_eq!(first, Some(10));
        assert_eq!(w.count(b"a"), 1);
        let all: Vec<u64> = w
            .take_all(b"a")
            .into_iter()
            .map(|x| x.deadline_ms)
            .collect();
        assert_eq!(all, [30]);
        assert_eq!(w.len(), 1);
        assert_eq!(w.drain().count(), 1);
        assert!(w.is_empty() && w.next_deadline().is_none());
    }
}
