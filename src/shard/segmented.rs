//! A hash table split into independent segments, so that growing it never stalls the shard.
//!
//! hashbrown grows a table by rehashing every entry into one larger allocation at once: with
//! millions of ids that is a pause of tens or hundreds of milliseconds on a shard that answers
//! in microseconds. Splitting the table into [`SEGMENTS`] tables by bits of the hash bounds a
//! growth step to 1/[`SEGMENTS`] of the entries. The segment comes from the middle bits of the
//! hash: hashbrown places entries by the low bits and filters them by the top seven, so those
//! must stay varied within each segment.

use hashbrown::HashTable;
use hashbrown::hash_table::{AbsentEntry, OccupiedEntry};

/// Number of segments: a power of two.
pub const SEGMENTS: usize = 64;

/// A [`HashTable`] in [`SEGMENTS`] parts; the same calls, each routed by the hash.
#[derive(Debug)]
pub struct Segmented<T> {
    parts: Box<[HashTable<T>]>,
}

impl<T> Default for Segmented<T> {
    fn default() -> Self {
        Segmented {
            parts: (0..SEGMENTS).map(|_| HashTable::new()).collect(),
        }
    }
}

fn segment(hash: u64) -> usize {
    ((hash >> 32) as usize) & (SEGMENTS - 1)
}

impl<T> Segmented<T> {
    /// The entry with this hash for which `eq` holds.
    pub fn find(&self, hash: u64, eq: impl FnMut(&T) -> bool) -> Option<&T> {
        self.parts[segment(hash)].find(hash, eq)
    }

    /// The entry with this hash for which `eq` holds, mutably.
    pub fn find_mut(&mut self, hash: u64, eq: impl FnMut(&T) -> bool) -> Option<&mut T> {
        self.parts[segment(hash)].find_mut(hash, eq)
    }

    /// The entry with this hash for which `eq` holds, for removal.
    pub fn find_entry(
        &mut self,
        hash: u64,
        eq: impl FnMut(&T) -> bool,
    ) -> Result<OccupiedEntry<'_, T>, AbsentEntry<'_, T>> {
        self.parts[segment(hash)].find_entry(hash, eq)
    }

    /// Inserts `value`, which must not be present; `hasher` rehashes entries when its segment
    /// grows.
    pub fn insert_unique(&mut self, hash: u64, value: T, hasher: impl Fn(&T) -> u64) {
        self.parts[segment(hash)].insert_unique(hash, value, hasher);
    }

    /// The entries of segment `n` (`0..SEGMENTS`).
    pub fn segment(&self, n: usize) -> impl Iterator<Item = &T> {
        self.parts.get(n).into_iter().flat_map(HashTable::iter)
    }

    /// Every entry, segment by segment.
    pub fn iter(&self) -> impl Iterator<Item = &T> {
        self.parts.iter().flat_map(HashTable::iter)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn routes_every_call_to_one_segment() {
        let state = ahash::RandomState::new();
        let mut t: Segmented<u64> = Segmented::default();
        for i in 0..10_000u64 {
            t.insert_unique(state.hash_one(i), i, |v| state.hash_one(*v));
        }
        for i in 0..10_000u64 {
            assert_eq!(t.find(state.hash_one(i), |v| *v == i), Some(&i));
        }
        let h = state.hash_one(7u64);
        assert!(t.find_entry(h, |v| *v == 7).map(|e| e.remove()).is_ok());
        assert!(t.find(h, |v| *v == 7).is_none());
        assert_eq!(t.iter().count(), 9_999);
        let used = t.parts.iter().filter(|p| !p.is_empty()).count();
        assert_eq!(used, SEGMENTS, "the hash spreads over every segment");
    }
}
