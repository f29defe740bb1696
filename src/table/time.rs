//! Deadlines running out: leases that end, completions past retention, waits that time out,
//! a bounded slice at a time, and the next deadline the loop must wake for.

use super::{ApplyCtx, At, Delivery, Entry, LockTable, Outcome, State};
use crate::table::store::Slot;
use crate::types::Error;

impl LockTable {
    pub(super) fn is_due(&self, e: &Entry, now_ms: u64) -> bool {
        self.deadline_of(e).is_some_and(|d| d <= now_ms)
    }

    /// When `e` must go, if ever.
    pub(super) fn deadline_of(&self, e: &Entry) -> Option<u64> {
        match e.state() {
            State::Locked => (e.at_ms() != 0).then_some(e.at_ms()),
            State::Completed => (self.policy.retention_ms != 0)
                .then(|| e.at_ms().saturating_add(self.policy.retention_ms)),
        }
    }

    /// Whether the pair `(deadline, slot)` still stands for the entry in `slot`.
    pub(super) fn is_target(&self, deadline: u64, slot: Slot) -> bool {
        self.store
            .get(slot)
            .is_some_and(|e| self.deadline_of(e) == Some(deadline))
    }

    pub(super) fn expire_slot(&mut self, at: At, ctx: &mut ApplyCtx<'_>) {
        let Some((entry, _)) = self.remove_slot(at) else {
            return;
        };
        match entry.state() {
            State::Locked => {
                self.counters.expired += 1;
                if !self.waits.is_empty() {
                    self.grant_next(entry.id(), ctx);
                }
            }
            State::Completed => self.counters.reaped += 1,
        }
    }

    /// Frees expired leases, reaps completions past retention and times out waiters whose
    /// deadline passed, doing at most `budget` steps. Returns the steps done.
    pub fn expire_due(&mut self, ctx: &mut ApplyCtx<'_>, budget: usize) -> usize {
        let now = ctx.now_ms;
        let mut done = 0;
        while done < budget {
            // Take whichever deadline comes first; on a tie the lease goes first, so a waiter
            // whose wait ends at the very instant the lease does still gets the lock.
            let lease = self.expiry.first();
            let wait = self.waits.next_deadline();
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
                let Some((deadline, slot)) = self.expiry.pop_due(now) else {
                    break;
                };
                if let Some(e) = self.store.get(slot)
                    && self.deadline_of(e) == Some(deadline)
                {
                    let hash = self.store.hash(e.id());
                    self.expire_slot(At { slot, hash }, ctx);
                }
            } else {
                let Some(timed_out) = self.waits.pop_due(now) else {
                    break;
                };
                if let Some((id, w)) = timed_out {
                    let lease_left_ms = self
                        .peek(&id)
                        .and_then(|e| (e.at_ms() != 0).then(|| e.at_ms().saturating_sub(now)));
                    ctx.deliveries.push(Delivery {
                        origin: w.origin,
                        outcome: Outcome::Refused {
                            error: Error::Locked,
                            lease_left_ms,
                        },
                        grant: None,
                    });
                }
            }
        }
        self.compact_heaps();
        done
    }

    /// Answers every queued waiter `-LOCKED` at once, as if its wait had run out (a shutdown
    /// does not wait for waits). Returns how many there were.
    pub fn time_out_all_waiters(&mut self, ctx: &mut ApplyCtx<'_>) -> usize {
        let mut n = 0;
        for w in self.waits.drain() {
            n += 1;
            ctx.deliveries.push(Delivery {
                origin: w.origin,
                outcome: Error::Locked.into(),
                grant: None,
            });
        }
        n
    }

    /// Drops stale heap pairs when they outnumber the live ones, so renewals and releases
    /// cannot grow the heaps without bound.
    pub(super) fn compact_heaps(&mut self) {
        let live = self.locked + self.completed;
        if self.expiry.len() > 2 * live + 1024 {
            let mut expiry = std::mem::take(&mut self.expiry);
            expiry.retain(|deadline, slot| self.is_target(deadline, slot));
            self.expiry = expiry;
        }
        self.waits.compact();
    }

    /// The earliest deadline of a lease, retention or waiter, if any.
    pub fn next_deadline(&self) -> Option<u64> {
        let a = self.expiry.first();
        let b = self.waits.next_deadline();
        match (a, b) {
            (Some(a), Some(b)) => Some(a.min(b)),
            (a, b) => a.or(b),
        }
    }
}
