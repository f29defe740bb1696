//! When stored entries must go: `(deadline, slot)` pairs in one bucket per millisecond.
//!
//! A binary heap of millions of pairs grows by copying itself whole, a pause of tens of
//! milliseconds on the shard. Here each millisecond that is some entry's deadline has its own
//! small vector of slots in an ordered map, so nothing large is ever copied, and a pair costs
//! 4 bytes. Leases given out in a burst share a few buckets; the bucket being filled is kept
//! out of the map, so the common push (the same deadline as the last one) is a vector push.

use std::collections::BTreeMap;

use crate::table::store::Slot;

/// `(deadline, slot)` pairs, taken out earliest deadline first.
#[derive(Debug, Default)]
pub struct Deadlines {
    buckets: BTreeMap<u64, Vec<Slot>>,
    /// The bucket pushed to last, not in `buckets`.
    open: Option<(u64, Vec<Slot>)>,
    len: usize,
}

impl Deadlines {
    /// Adds a pair.
    pub fn push(&mut self, deadline: u64, slot: Slot) {
        self.len += 1;
        match &mut self.open {
            Some((at, slots)) if *at == deadline => slots.push(slot),
            open => {
                if let Some((at, mut slots)) = open.take() {
                    self.buckets.entry(at).or_default().append(&mut slots);
                }
                let mut slots = self.buckets.remove(&deadline).unwrap_or_default();
                slots.push(slot);
                *open = Some((deadline, slots));
            }
        }
    }

    /// The earliest deadline.
    pub fn first(&self) -> Option<u64> {
        let stored = self.buckets.first_key_value().map(|(at, _)| *at);
        let open = self.open.as_ref().map(|(at, _)| *at);
        match (stored, open) {
            (Some(a), Some(b)) => Some(a.min(b)),
            (a, b) => a.or(b),
        }
    }

    /// Takes out a pair whose deadline is the earliest, if that is at most `now`.
    pub fn pop_due(&mut self, now: u64) -> Option<(u64, Slot)> {
        let first = self.first().filter(|&at| at <= now)?;
        let popped = if self.open.as_ref().is_some_and(|(at, _)| *at == first) {
            let (_, slots) = self.open.as_mut()?;
            let slot = slots.pop();
            if slots.is_empty() {
                self.open = None;
            }
            slot
        } else {
            let mut bucket = self.buckets.first_entry()?;
            let slot = bucket.get_mut().pop();
            if bucket.get().is_empty() {
                bucket.remove();
            }
            slot
        };
        let slot = popped?;
        self.len -= 1;
        Some((first, slot))
    }

    /// Keeps only the pairs for which `keep` holds.
    pub fn retain(&mut self, mut keep: impl FnMut(u64, Slot) -> bool) {
        if let Some((at, slots)) = self.open.take() {
            self.buckets.entry(at).or_default().extend(slots);
        }
        self.buckets.retain(|&at, slots| {
            slots.retain(|&slot| keep(at, slot));
            slots.shrink_to_fit();
            !slots.is_empty()
        });
        self.len = self.buckets.values().map(Vec::len).sum();
    }

    /// Number of pairs.
    pub fn len(&self) -> usize {
        self.len
    }

    /// Whether there are none.
    pub fn is_empty(&self) -> bool {
        self.len == 0
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn pairs_come_out_earliest_first_and_only_when_due() {
        let mut d = Deadlines::default();
        let pushes = [
            (50, 1),
            (10, 2),
            (50, 3),
            (30, 4),
            (10, 5),
            (70, 6),
            (30, 7),
        ];
        for (at, slot) in pushes {
            d.push(at, slot);
        }
        assert_eq!((d.len(), d.first()), (7, Some(10)));
        assert_eq!(d.pop_due(9), None);
        let mut out = Vec::new();
        while let Some(pair) = d.pop_due(50) {
            out.push(pair);
        }
        out.sort_unstable();
        assert_eq!(out, [(10, 2), (10, 5), (30, 4), (30, 7), (50, 1), (50, 3)]);
        assert_eq!((d.len(), d.first()), (1, Some(70)));
        assert_eq!(d.pop_due(u64::MAX), Some((70, 6)));
        assert!(d.is_empty());
        assert_eq!(d.first(), None);
    }

    #[test]
    fn the_open_bucket_merges_with_a_stored_one_of_the_same_deadline() {
        let mut d = Deadlines::default();
        d.push(5, 1);
        d.push(6, 2);
        d.push(5, 3); // reopens 5, which is stored now
        d.push(6, 4);
        let mut out: Vec<_> = std::iter::from_fn(|| d.pop_due(10)).collect();
        out.sort_unstable();
        assert_eq!(out, [(5, 1), (5, 3), (6, 2), (6, 4)]);
    }

    #[test]
    fn retain_keeps_what_it_is_told_to() {
        let mut d = Deadlines::default();
        for slot in 0..100 {
            d.push(u64::from(slot % 7), slot);
        }
        d.retain(|_, slot| slot % 2 == 0);
        assert_eq!(d.len(), 50);
        let mut out: Vec<_> = std::iter::from_fn(|| d.pop_due(100)).collect();
        assert!(
            out.windows(2).all(|w| w[0].0 <= w[1].0),
            "in deadline order"
        );
        out.sort_unstable_by_key(|p| p.1);
        assert!(
            out.iter()
                .all(|(at, slot)| slot % 2 == 0 && *at == u64::from(slot % 7))
        );
    }
}
