//! Where one shard's entries live: a slab of fixed-size chunks addressed by slot numbers, and a
//! hash index of slot numbers split into segments.
//!
//! Memory: an entry sits in a 48-byte cell of a 4,096-cell chunk, so the slab wastes at most
//! one partly filled chunk, and a freed cell is reused by the next insert. The index holds
//! 8-byte buckets (the slot number and 32 bits of the id's hash); its power-of-two slack (a hash
//! table is between 7/16 and 7/8 full) costs bytes per entry rather than a few times an entry.
//! Because the buckets carry the hash, growing the index never reads an entry or its id, and a
//! lookup touches an entry only when 32 bits of hash match.
//!
//! Pauses: hashbrown grows a table by rehashing every element at once. Splitting the index into
//! [`SEGMENTS`] tables by bits of the hash bounds a growth step to 1/[`SEGMENTS`] of the ids,
//! and the slab never moves an entry (a new chunk is one allocation). The segment comes from the
//! middle bits of the hash: hashbrown places entries by the low bits and filters them by the
//! top seven, so those must stay varied within each segment.
//!
//! The hasher is seeded at random per store (ahash), so chosen ids cannot force collisions.

use ahash::RandomState;
use hashbrown::HashTable;

use crate::shard::entry::Entry;

/// Number of index segments: a power of two.
pub const SEGMENTS: usize = 64;

const CHUNK_BITS: u32 = 12;
/// Cells per slab chunk.
pub const CHUNK: usize = 1 << CHUNK_BITS;

/// The number of an entry's cell; stable for as long as the entry is stored.
pub type Slot = u32;

/// An index bucket: a slot and the low 32 bits of its id's hash.
#[derive(Clone, Copy, Debug)]
struct Bucket {
    slot: Slot,
    hash: u32,
}

/// The hash an index segment files a bucket under, made from the 32 bits the bucket keeps:
/// hashbrown places buckets by the low bits and filters them by the top seven, so both halves
/// carry them. (The segment is chosen by other bits of the full hash.)
fn bucket_hash(low: u32) -> u64 {
    u64::from(low) | (u64::from(low) << 32)
}

/// A shard's entries and their index by id.
#[derive(Debug)]
pub struct Store {
    hasher: RandomState,
    index: Box<[HashTable<Bucket>]>,
    chunks: Vec<Vec<Option<Entry>>>,
    free: Vec<Slot>,
    len: usize,
}

impl Default for Store {
    fn default() -> Self {
        Store {
            hasher: RandomState::new(),
            index: (0..SEGMENTS).map(|_| HashTable::new()).collect(),
            chunks: Vec::new(),
            free: Vec::new(),
            len: 0,
        }
    }
}

fn segment(hash: u64) -> usize {
    ((hash >> 32) as usize) & (SEGMENTS - 1)
}

fn split(slot: Slot) -> (usize, usize) {
    ((slot >> CHUNK_BITS) as usize, slot as usize & (CHUNK - 1))
}

fn cell(chunks: &[Vec<Option<Entry>>], slot: Slot) -> Option<&Entry> {
    let (chunk, at) = split(slot);
    chunks.get(chunk)?.get(at)?.as_ref()
}

impl Store {
    /// The hash the index files `id` under.
    pub fn hash(&self, id: &[u8]) -> u64 {
        self.hasher.hash_one(id)
    }

    /// The slot of `id`, whose hash is `hash`.
    pub fn find(&self, hash: u64, id: &[u8]) -> Option<Slot> {
        self.find_by(hash, |e| e.id() == id)
    }

    /// The slot of the entry whose id hashes to `hash` and whose fence is `fence`. Fences are
    /// unique, so this finds one entry wherever it is stored now (an entry taken out and put
    /// back may have moved to another slot).
    pub fn find_fenced(&self, hash: u64, fence: u64) -> Option<Slot> {
        self.find_by(hash, |e| e.fence() == fence)
    }

    /// The slot of an entry filed under `hash` for which `is` holds; entries are read only
    /// when 32 bits of their hash match.
    fn find_by(&self, hash: u64, is: impl Fn(&Entry) -> bool) -> Option<Slot> {
        let chunks = &self.chunks;
        let low = hash as u32;
        self.index[segment(hash)]
            .find(bucket_hash(low), |b| {
                b.hash == low && cell(chunks, b.slot).is_some_and(&is)
            })
            .map(|b| b.slot)
    }

    /// The entry in `slot`.
    pub fn get(&self, slot: Slot) -> Option<&Entry> {
        cell(&self.chunks, slot)
    }

    /// The entry in `slot`, mutably. Its id must not be changed.
    pub fn get_mut(&mut self, slot: Slot) -> Option<&mut Entry> {
        let (chunk, at) = split(slot);
        self.chunks.get_mut(chunk)?.get_mut(at)?.as_mut()
    }

    /// Stores `entry`, whose id (hashing to `hash`) must not be stored yet. Returns its slot.
    ///
    /// # Panics
    /// When the store already holds 2^32 entries.
    pub fn insert(&mut self, hash: u64, entry: Entry) -> Slot {
        // The free list may name cells that `insert_at` has filled since: skip those.
        let reusable = loop {
            match self.free.pop() {
                Some(slot) if self.get(slot).is_some() => continue,
                other => break other,
            }
        };
        let slot = match reusable {
            Some(slot) => {
                let (chunk, at) = split(slot);
                self.chunks[chunk][at] = Some(entry);
                slot
            }
            None => {
                if self.chunks.last().is_none_or(|c| c.len() == CHUNK) {
                    assert!(
                        self.chunks.len() < 1 << (32 - CHUNK_BITS),
                        "a shard holds at most 2^32 ids"
                    );
                    self.chunks.push(Vec::with_capacity(CHUNK));
                }
                let chunk_no = self.chunks.len() - 1;
                let chunk = &mut self.chunks[chunk_no];
                chunk.push(Some(entry));
                // Both parts fit: chunk_no < 2^(32 - CHUNK_BITS) and the cell < CHUNK.
                ((chunk_no as Slot) << CHUNK_BITS) | (chunk.len() - 1) as Slot
            }
        };
        self.index_slot(hash, slot);
        slot
    }

    /// Stores `entry` (whose id, hashing to `hash`, must not be stored yet) back in `slot`,
    /// the free cell it was removed from, so that taking a removal back never moves an entry.
    /// Gives the entry back, storing nothing, if that cell is not free.
    pub fn insert_at(&mut self, slot: Slot, hash: u64, entry: Entry) -> Result<(), Entry> {
        let (chunk, at) = split(slot);
        match self.chunks.get_mut(chunk).and_then(|c| c.get_mut(at)) {
            Some(cell) if cell.is_none() => *cell = Some(entry),
            _ => return Err(entry),
        }
        self.index_slot(hash, slot);
        Ok(())
    }

    fn index_slot(&mut self, hash: u64, slot: Slot) {
        let low = hash as u32;
        self.index[segment(hash)].insert_unique(
            bucket_hash(low),
            Bucket { slot, hash: low },
            |b| bucket_hash(b.hash),
        );
        self.len += 1;
    }

    /// Removes the entry in `slot` and frees the slot.
    pub fn remove(&mut self, slot: Slot) -> Option<Entry> {
        let hash = self.hash(self.get(slot)?.id());
        self.remove_hashed(hash, slot)
    }

    /// [`Store::remove`] for an entry whose id's hash is known.
    pub fn remove_hashed(&mut self, hash: u64, slot: Slot) -> Option<Entry> {
        let found =
            self.index[segment(hash)].find_entry(bucket_hash(hash as u32), |b| b.slot == slot);
        if let Ok(found) = found {
            found.remove();
        }
        let (chunk, at) = split(slot);
        let entry = self.chunks.get_mut(chunk)?.get_mut(at)?.take();
        self.free.push(slot);
        self.len -= 1;
        entry
    }

    /// Number of slab chunks; [`Store::chunk`] takes `0..chunks()`.
    pub fn chunks(&self) -> usize {
        self.chunks.len()
    }

    /// The entries in chunk `n`, with their slots.
    pub fn chunk(&self, n: usize) -> impl Iterator<Item = (Slot, &Entry)> {
        let base = (n as Slot) << CHUNK_BITS;
        self.chunks.get(n).into_iter().flat_map(move |c| {
            c.iter()
                .enumerate()
                .filter_map(move |(i, e)| Some((base | i as Slot, e.as_ref()?)))
        })
    }

    /// Every entry, with its slot.
    pub fn iter(&self) -> impl Iterator<Item = (Slot, &Entry)> {
        (0..self.chunks.len()).flat_map(|n| self.chunk(n))
    }

    /// Number of stored entries.
    pub fn len(&self) -> usize {
        self.len
    }

    /// Whether nothing is stored.
    pub fn is_empty(&self) -> bool {
        self.len == 0
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::shard::entry::State;

    fn entry(i: u64) -> Entry {
        Entry::new(format!("id-{i}").as_bytes(), State::Locked, [0; 16], i, 0)
    }

    #[test]
    fn finds_what_it_stores_and_forgets_what_it_removes() {
        let mut s = Store::default();
        let mut slots = Vec::new();
        for i in 0..10_000u64 {
            let e = entry(i);
            slots.push(s.insert(s.hash(e.id()), e));
        }
        assert_eq!(s.len(), 10_000);
        for i in 0..10_000u64 {
            let id = format!("id-{i}");
            let slot = s.find(s.hash(id.as_bytes()), id.as_bytes());
            assert_eq!(slot, Some(slots[i as usize]));
            assert_eq!(s.get(slots[i as usize]).map(Entry::fence), Some(i));
        }
        let removed = s.remove(slots[7]).map(|e| e.fence());
        assert_eq!(removed, Some(7));
        assert!(s.find(s.hash(b"id-7"), b"id-7").is_none());
        assert!(s.get(slots[7]).is_none());
        assert!(s.remove(slots[7]).is_none(), "a freed slot holds nothing");
        assert_eq!(s.iter().count(), 9_999);
        let used = s.index.iter().filter(|p| !p.is_empty()).count();
        assert_eq!(used, SEGMENTS, "the hash spreads over every segment");
    }

    #[test]
    fn an_entry_put_back_returns_to_its_cell() {
        let mut s = Store::default();
        let slots: Vec<Slot> = (0..3)
            .map(|i| {
                let e = entry(i);
                s.insert(s.hash(e.id()), e)
            })
            .collect();
        let first = s.remove(slots[0]).expect("stored");
        let second = s.remove(slots[1]).expect("stored");
        // The free list now offers slots[1] first; putting `first` back takes slots[0].
        assert!(
            s.insert_at(slots[0], s.hash(first.id()), first.clone())
                .is_ok()
        );
        let again = s.insert_at(slots[0], s.hash(first.id()), first);
        assert!(again.is_err(), "not free");
        assert_eq!(s.find(s.hash(b"id-0"), b"id-0"), Some(slots[0]));
        let e = entry(9);
        assert_eq!(s.insert(s.hash(e.id()), e), slots[1]);
        // slots[0] is still on the free list, but filled: the next insert skips it.
        let e = entry(10);
        let fresh = s.insert(s.hash(e.id()), e);
        assert!(!slots.contains(&fresh));
        let taken = s.insert_at(slots[1], s.hash(second.id()), second);
        assert!(taken.is_err(), "taken by entry 9");
        assert_eq!(s.len(), 4);
    }

    #[test]
    fn freed_cells_are_reused_before_the_slab_grows() {
        let mut s = Store::default();
        let n = CHUNK as u64 + 10;
        let slots: Vec<Slot> = (0..n)
            .map(|i| {
                let e = entry(i);
                s.insert(s.hash(e.id()), e)
            })
            .collect();
        assert_eq!(s.chunks(), 2);
        for &slot in &slots[..100] {
            s.remove(slot);
        }
        for i in n..n + 100 {
            let e = entry(i);
            s.insert(s.hash(e.id()), e);
        }
        assert_eq!(s.chunks(), 2, "no new chunk while cells are free");
        assert_eq!(s.len(), n as usize);
        let mut seen: Vec<u64> = (0..s.chunks())
            .flat_map(|c| s.chunk(c).map(|(_, e)| e.fence()))
            .collect();
        seen.sort_unstable();
        assert_eq!(seen, (100..n + 100).collect::<Vec<_>>());
    }
}
