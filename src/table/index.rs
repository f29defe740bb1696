//! One segment of a store's index by id: an open-addressing table of 8-byte buckets, probed
//! linearly, each bucket holding an entry's slot number and 32 bits of its id's hash (the
//! *tag*).
//!
//! Why not hashbrown: a hashbrown lookup of an id that is present reads two cache lines, the
//! group of control bytes and then the bucket, which live in separate arrays; at a million ids
//! both miss the cache, and `perf annotate` put 54% and 42% of the lookup's samples on those
//! two loads. Here the tag sits in the bucket, so a lookup reads the line its probe starts in
//! (and the next one when the probe crosses it), and an insert writes the line the lookup has
//! just brought in.
//!
//! Layout and rules:
//! - A bucket is `tag << 32 | slot`; 0 is an empty bucket, so a tag of 0 is stored as 1.
//! - An id's probe starts at `tag & (buckets - 1)` and walks forward, wrapping at the end,
//!   until it finds the bucket or an empty one. The buckets are a power of two in number.
//! - The table grows (doubles) before it would be more than 3/4 full, and shrinks when under
//!   1/8 full to the smallest size at most half full, so neither happens twice in a row.
//! - Removal shifts later buckets of the same run back (backward-shift deletion), so there
//!   are no tombstones and a probe always ends at the first empty bucket.
//!
//! Tags are low bits of a randomly seeded hash (see `store.rs`), so ids chosen by a client
//! cannot be made to collide.

/// Buckets of a segment that holds anything.
const MIN_BUCKETS: usize = 16;

/// The tag a bucket stores for `hash`: its low 32 bits, never 0 (0 marks an empty bucket).
pub fn tag(hash: u64) -> u32 {
    (hash as u32).max(1)
}

fn pack(tag: u32, slot: u32) -> u64 {
    (u64::from(tag) << 32) | u64::from(slot)
}

fn tag_of(bucket: u64) -> u32 {
    (bucket >> 32) as u32
}

fn slot_of(bucket: u64) -> u32 {
    bucket as u32
}

/// One segment of the index.
#[derive(Debug, Default)]
pub struct Segment {
    /// Empty, or a power of two in number.
    buckets: Box<[u64]>,
    len: usize,
}

impl Segment {
    /// The slot filed under `tag` for which `is` holds (checked only for matching tags).
    #[inline]
    pub fn find(&self, tag: u32, is: impl Fn(u32) -> bool) -> Option<u32> {
        let mask = self.buckets.len().checked_sub(1)?;
        let mut i = tag as usize & mask;
        loop {
            let bucket = self.buckets[i];
            if bucket == 0 {
                return None;
            }
            if tag_of(bucket) == tag && is(slot_of(bucket)) {
                return Some(slot_of(bucket));
            }
            i = (i + 1) & mask;
        }
    }

    /// Files `slot` under `tag` (from [`tag`], so not 0); the pair must not be filed yet.
    pub fn insert(&mut self, tag: u32, slot: u32) {
        debug_assert_ne!(tag, 0, "0 marks an empty bucket");
        if (self.len + 1) * 4 > self.buckets.len() * 3 {
            self.resize((self.buckets.len() * 2).max(MIN_BUCKETS));
        }
        place(&mut self.buckets, pack(tag, slot));
        self.len += 1;
    }

    /// Removes `slot` filed under `tag`; false if it was not filed.
    pub fn remove(&mut self, tag: u32, slot: u32) -> bool {
        let Some(mask) = self.buckets.len().checked_sub(1) else {
            return false;
        };
        let wanted = pack(tag, slot);
        let mut hole = tag as usize & mask;
        loop {
            match self.buckets[hole] {
                0 => return false,
                b if b == wanted => break,
                _ => hole = (hole + 1) & mask,
            }
        }
        // Shift back every later bucket of the run that may sit in the hole: one whose probe
        // starts at or before the hole (cyclically), so that no probe meets an empty bucket
        // before its own.
        let mut j = hole;
        loop {
            j = (j + 1) & mask;
            let bucket = self.buckets[j];
            if bucket == 0 {
                break;
            }
            let home = tag_of(bucket) as usize & mask;
            if (j.wrapping_sub(home) & mask) >= (j.wrapping_sub(hole) & mask) {
                self.buckets[hole] = bucket;
                hole = j;
            }
        }
        self.buckets[hole] = 0;
        self.len -= 1;
        if self.buckets.len() > MIN_BUCKETS && self.len * 8 < self.buckets.len() {
            self.resize((self.len * 2).next_power_of_two().max(MIN_BUCKETS));
        }
        true
    }

    /// Number of filed slots.
    pub fn len(&self) -> usize {
        self.len
    }

    /// Whether nothing is filed.
    pub fn is_empty(&self) -> bool {
        self.len == 0
    }

    /// Bytes of buckets allocated.
    pub fn bytes(&self) -> usize {
        self.buckets.len() * size_of::<u64>()
    }

    fn resize(&mut self, buckets: usize) {
        let mut new = vec![0u64; buckets].into_boxed_slice();
        for &bucket in self.buckets.iter().filter(|&&b| b != 0) {
            place(&mut new, bucket);
        }
        self.buckets = new;
    }
}

/// Puts `bucket` in the first empty bucket of its probe. `buckets` must have an empty one.
fn place(buckets: &mut [u64], bucket: u64) {
    let mask = buckets.len() - 1;
    let mut i = tag_of(bucket) as usize & mask;
    while buckets[i] != 0 {
        i = (i + 1) & mask;
    }
    buckets[i] = bucket;
}

#[cfg(test)]
mod tests {
    use super::*;
    use rand::rngs::SmallRng;
    use rand::{RngExt, SeedableRng};
    use std::collections::HashMap;

    #[test]
    fn finds_what_it_files_and_forgets_what_it_removes() {
        let mut s = Segment::default();
        assert_eq!(s.find(5, |_| true), None);
        assert!(!s.remove(5, 1));
        for slot in 0..1000u32 {
            s.insert(
                tag(u64::from(slot).wrapping_mul(0x9E37_79B9_7F4A_7C15)),
                slot,
            );
        }
        assert_eq!(s.len(), 1000);
        assert!(s.bytes() >= 1000 * 8 * 4 / 3);
        for slot in 0..1000u32 {
            let t = tag(u64::from(slot).wrapping_mul(0x9E37_79B9_7F4A_7C15));
            assert_eq!(s.find(t, |x| x == slot), Some(slot));
        }
        for slot in (0..1000u32).step_by(2) {
            assert!(s.remove(
                tag(u64::from(slot).wrapping_mul(0x9E37_79B9_7F4A_7C15)),
                slot
            ));
        }
        for slot in 0..1000u32 {
            let t = tag(u64::from(slot).wrapping_mul(0x9E37_79B9_7F4A_7C15));
            let want = (slot % 2 == 1).then_some(slot);
            assert_eq!(s.find(t, |x| x == slot), want);
        }
    }

    #[test]
    fn equal_tags_are_told_apart_by_their_slots() {
        let mut s = Segment::default();
        for slot in 0..40u32 {
            s.insert(7, slot);
        }
        for slot in 0..40u32 {
            assert_eq!(s.find(7, |x| x == slot), Some(slot));
        }
        assert!(s.remove(7, 13));
        assert_eq!(s.find(7, |x| x == 13), None);
        assert_eq!(s.find(7, |x| x == 39), Some(39));
        assert_eq!(s.len(), 39);
    }

    #[test]
    fn a_tag_of_zero_is_stored_as_one() {
        assert_eq!(tag(0), 1);
        assert_eq!(tag(1 << 32), 1);
        assert_eq!(tag(0xffff_ffff), 0xffff_ffff);
        let mut s = Segment::default();
        s.insert(tag(0), 0);
        assert_eq!(s.find(tag(0), |x| x == 0), Some(0));
    }

    #[test]
    fn runs_that_wrap_past_the_end_survive_removals() {
        // Tags whose probes start in the last buckets, so their run wraps to the front.
        let mut s = Segment::default();
        let last = MIN_BUCKETS as u32 - 1;
        for slot in 0..8u32 {
            s.insert(last - (slot % 2), slot);
        }
        assert_eq!(s.bytes(), MIN_BUCKETS * 8, "no growth at half full");
        for remove in [0u32, 3, 6] {
            assert!(s.remove(last - (remove % 2), remove));
            for slot in 0..8u32 {
                let gone = [0, 3, 6]
                    .iter()
                    .take_while(|&&r| r <= remove)
                    .any(|&r| r == slot);
                let found = s.find(last - (slot % 2), |x| x == slot);
                assert_eq!(
                    found,
                    (!gone).then_some(slot),
                    "slot {slot} after removing {remove}"
                );
            }
        }
    }

    #[test]
    fn grows_before_three_quarters_and_shrinks_under_an_eighth() {
        let mut s = Segment::default();
        for slot in 0..12u32 {
            s.insert(slot * 977 + 1, slot);
        }
        assert_eq!(s.bytes(), 16 * 8, "12 of 16 is 3/4: no growth yet");
        s.insert(12 * 977 + 1, 12);
        assert_eq!(s.bytes(), 32 * 8);
        for slot in 13..1000u32 {
            s.insert(slot * 977 + 1, slot);
        }
        let big = s.bytes();
        for slot in 10..1000u32 {
            assert!(s.remove(slot * 977 + 1, slot));
        }
        assert!(s.bytes() * 32 <= big, "{} bytes left of {big}", s.bytes());
        for slot in 0..10u32 {
            assert_eq!(s.find(slot * 977 + 1, |x| x == slot), Some(slot));
        }
        for slot in 0..10u32 {
            assert!(s.remove(slot * 977 + 1, slot));
        }
        assert!(s.is_empty());
        assert_eq!(s.bytes(), MIN_BUCKETS * 8);
    }

    #[test]
    fn random_inserts_and_removals_match_a_map() {
        let mut rng = SmallRng::seed_from_u64(11);
        let mut s = Segment::default();
        let mut model: HashMap<u32, u32> = HashMap::new();
        let mut next = 0u32;
        for step in 0..200_000u32 {
            // Few tag values, so runs are long and tags repeat; phases of growth and decline.
            let grow = (step / 20_000) % 2 == 0;
            if rng.random_range(0..10u32) < if grow { 7 } else { 3 } {
                let t = rng.random_range(1..600u32);
                s.insert(t, next);
                model.insert(next, t);
                next += 1;
            } else if let Some((&slot, &t)) = model.iter().next() {
                assert!(s.remove(t, slot));
                model.remove(&slot);
                assert!(!s.remove(t, slot), "removed twice");
            }
            if step % 10_000 == 0 {
                assert_eq!(s.len(), model.len());
                assert!(s.len() * 4 <= s.bytes() / 8 * 3 || s.bytes() == 0);
                for (&slot, &t) in &model {
                    assert_eq!(s.find(t, |x| x == slot), Some(slot));
                }
                assert_eq!(s.find(600, |_| true), None);
            }
        }
    }
}
