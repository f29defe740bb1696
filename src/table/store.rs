//! Where one shard's entries live: a slab of fixed-size chunks addressed by slot numbers, and a
//! hash index of slot numbers split into segments.
//!
//! Memory: an entry sits in a 48-byte cell of a 4,096-cell chunk, so the slab wastes at most
//! one partly filled chunk while it grows. An insert takes a free cell of the lowest chunk that
//! has one, so after a burst the entries that stay and those that come gather in the low chunks
//! while the high ones empty; an emptied chunk is given back to the allocator (unless it is the
//! only room left: an id taken and freed over and over must not allocate each time), and an
//! index segment under an eighth full shrinks. The index ([`crate::table::index`]) holds 8-byte
//! buckets (the slot number and 32 bits of the id's hash) and is between 3/8 and 3/4 full
//! while it grows. Because the buckets carry the hash, growing the index never reads an entry
//! or its id, and a lookup touches an entry only when 32 bits of hash match.
//!
//! Pauses: a segment grows by moving every bucket at once. Splitting the index into
//! [`SEGMENTS`] segments by bits of the hash bounds a growth step to 1/[`SEGMENTS`] of the ids,
//! and the slab never moves an entry (a new chunk is one allocation). The segment comes from
//! bits 32 to 37 of the hash; a segment places and compares buckets by the low 32 bits.
//!
//! The hasher is seeded at random per store (ahash), so chosen ids cannot force collisions.
//!
//! Over 500 lines with its unit tests (the slab and the index against a reference model); the
//! code is under 400.

use ahash::RandomState;

use crate::table::entry::Entry;
use crate::table::index::{Segment, tag};

/// Number of index segments: a power of two.
pub const SEGMENTS: usize = 64;

const CHUNK_BITS: u32 = 12;
/// Cells per slab chunk.
pub const CHUNK: usize = 1 << CHUNK_BITS;

/// The number of an entry's cell; stable for as long as the entry is stored.
pub type Slot = u32;

/// One slab chunk: up to [`CHUNK`] cells, allocated whole when first needed and given back to
/// the allocator when it empties while other chunks have room (see [`Store::remove_hashed`]).
#[derive(Debug, Default)]
struct Chunk {
    /// The cells used so far; capacity [`CHUNK`], or none while the chunk is released.
    cells: Vec<Option<Entry>>,
    /// The free cells below `cells.len()`, the most recently freed last.
    free: Vec<u16>,
    /// Entries stored in the chunk.
    live: u32,
}

impl Chunk {
    fn has_room(&self) -> bool {
        !self.free.is_empty() || self.cells.len() < CHUNK
    }

    fn is_released(&self) -> bool {
        self.cells.capacity() == 0
    }

    /// Makes sure the chunk has its memory; returns whether it had to be allocated.
    fn allocate(&mut self) -> bool {
        let released = self.is_released();
        if released {
            self.cells.reserve_exact(CHUNK);
        }
        released
    }
}

/// A set of chunk numbers that yields its lowest member cheaply.
#[derive(Debug, Default)]
struct ChunkSet {
    words: Vec<u64>,
    /// No member lies in a word below this one.
    low: usize,
}

impl ChunkSet {
    fn insert(&mut self, n: usize) {
        let w = n / 64;
        if w >= self.words.len() {
            self.words.resize(w + 1, 0);
        }
        self.words[w] |= 1 << (n % 64);
        self.low = self.low.min(w);
    }

    fn remove(&mut self, n: usize) {
        if let Some(word) = self.words.get_mut(n / 64) {
            *word &= !(1 << (n % 64));
        }
    }

    /// The lowest member.
    fn first(&mut self) -> Option<usize> {
        while let Some(&word) = self.words.get(self.low) {
            if word != 0 {
                return Some(self.low * 64 + word.trailing_zeros() as usize);
            }
            self.low += 1;
        }
        None
    }
}

/// A shard's entries and their index by id.
///
/// New entries go to the lowest-numbered chunk with a free cell, so that after a burst the
/// survivors and newcomers gather in the low chunks while the high ones drain and are given
/// back; index segments shrink by their own rules ([`crate::table::index`]).
#[derive(Debug)]
pub struct Store {
    hasher: RandomState,
    index: Box<[Segment]>,
    chunks: Vec<Chunk>,
    /// Allocated chunks with a free cell or room to grow.
    open: ChunkSet,
    /// Chunks whose memory has been given back.
    released: ChunkSet,
    /// Chunks that hold memory.
    allocated: usize,
    /// Bytes the index segments have allocated.
    index_bytes: usize,
    len: usize,
}

impl Default for Store {
    fn default() -> Self {
        Store {
            hasher: RandomState::new(),
            index: (0..SEGMENTS).map(|_| Segment::default()).collect(),
            chunks: Vec::new(),
            open: ChunkSet::default(),
            released: ChunkSet::default(),
            allocated: 0,
            index_bytes: 0,
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

fn cell(chunks: &[Chunk], slot: Slot) -> Option<&Entry> {
    let (chunk, at) = split(slot);
    chunks.get(chunk)?.cells.get(at)?.as_ref()
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
        self.index[segment(hash)].find(tag(hash), |slot| cell(chunks, slot).is_some_and(&is))
    }

    /// The entry in `slot`.
    pub fn get(&self, slot: Slot) -> Option<&Entry> {
        cell(&self.chunks, slot)
    }

    /// The entry in `slot`, mutably. Its id must not be changed.
    pub fn get_mut(&mut self, slot: Slot) -> Option<&mut Entry> {
        let (chunk, at) = split(slot);
        self.chunks.get_mut(chunk)?.cells.get_mut(at)?.as_mut()
    }

    /// Stores `entry`, whose id (hashing to `hash`) must not be stored yet, in the lowest
    /// chunk with room. Returns its slot.
    ///
    /// # Panics
    /// When the store already holds 2^32 entries.
    pub fn insert(&mut self, hash: u64, entry: Entry) -> Slot {
        let n = match self.open.first().or_else(|| self.released.first()) {
            Some(n) => n,
            None => {
                assert!(
                    self.chunks.len() < 1 << (32 - CHUNK_BITS),
                    "a shard holds at most 2^32 ids"
                );
                self.chunks.push(Chunk::default());
                self.chunks.len() - 1
            }
        };
        self.hold(n);
        let chunk = &mut self.chunks[n];
        let at = match chunk.free.pop() {
            Some(at) => {
                chunk.cells[usize::from(at)] = Some(entry);
                usize::from(at)
            }
            None => {
                chunk.cells.push(Some(entry));
                chunk.cells.len() - 1
            }
        };
        self.filled(n);
        // Both parts fit: n < 2^(32 - CHUNK_BITS) and the cell < CHUNK.
        let slot = ((n as Slot) << CHUNK_BITS) | at as Slot;
        self.index_slot(hash, slot);
        slot
    }

    /// Stores `entry` (whose id, hashing to `hash`, must not be stored yet) back in `slot`,
    /// the free cell it was removed from, so that taking a removal back never moves an entry.
    /// Gives the entry back, storing nothing, if that cell is not free.
    pub fn insert_at(&mut self, slot: Slot, hash: u64, entry: Entry) -> Result<(), Entry> {
        let (n, at) = split(slot);
        let Some(chunk) = self.chunks.get(n) else {
            return Err(entry);
        };
        if chunk.cells.get(at).is_some_and(Option::is_some) {
            return Err(entry);
        }
        let below = at < chunk.cells.len();
        self.hold(n);
        let chunk = &mut self.chunks[n];
        if below {
            // A free cell below the used length is on the free list: take it off.
            if let Some(i) = chunk.free.iter().rposition(|&f| usize::from(f) == at) {
                chunk.free.swap_remove(i);
            }
            chunk.cells[at] = Some(entry);
        } else {
            while chunk.cells.len() < at {
                // The length is below `at` < CHUNK, so it fits in 16 bits.
                chunk.free.push(chunk.cells.len() as u16);
                chunk.cells.push(None);
            }
            chunk.cells.push(Some(entry));
        }
        self.filled(n);
        self.index_slot(hash, slot);
        Ok(())
    }

    /// Makes sure chunk `n` has its memory.
    fn hold(&mut self, n: usize) {
        if self.chunks[n].allocate() {
            self.released.remove(n);
            self.allocated += 1;
        }
    }

    /// Counts a cell of chunk `n` just filled, and whether the chunk still has room.
    fn filled(&mut self, n: usize) {
        let chunk = &mut self.chunks[n];
        chunk.live += 1;
        if chunk.has_room() {
            self.open.insert(n);
        } else {
            self.open.remove(n);
        }
    }

    fn index_slot(&mut self, hash: u64, slot: Slot) {
        let segment = &mut self.index[segment(hash)];
        let before = segment.bytes();
        segment.insert(tag(hash), slot);
        self.index_bytes += segment.bytes() - before;
        self.len += 1;
    }

    /// Removes the entry in `slot` and frees the slot (the table always knows the hash and
    /// calls [`Store::remove_hashed`]).
    #[cfg(test)]
    fn remove(&mut self, slot: Slot) -> Option<Entry> {
        let hash = self.hash(self.get(slot)?.id());
        self.remove_hashed(hash, slot)
    }

    /// Removes the entry in `slot`, whose id hashes to `hash`, and frees the slot.
    ///
    /// Memory: a chunk that empties is given back to the allocator when the other chunks
    /// have at least a chunk's worth of free cells (so that an id locked and freed over and
    /// over never allocates and frees a chunk each time); the index segment may shrink
    /// ([`Segment::remove`]).
    pub fn remove_hashed(&mut self, hash: u64, slot: Slot) -> Option<Entry> {
        let (n, at) = split(slot);
        let chunk = self.chunks.get_mut(n)?;
        let entry = chunk.cells.get_mut(at)?.take()?;
        chunk.live -= 1;
        self.len -= 1;
        // An empty chunk's neighbours hold every entry, so the subtraction cannot wrap.
        if chunk.live == 0 && (self.allocated - 1) * CHUNK - self.len >= CHUNK {
            chunk.cells = Vec::new();
            chunk.free = Vec::new();
            self.open.remove(n);
            self.released.insert(n);
            self.allocated -= 1;
        } else {
            // `at` < CHUNK, so it fits in 16 bits.
            chunk.free.push(at as u16);
            self.open.insert(n);
        }
        let segment = &mut self.index[segment(hash)];
        let before = segment.bytes();
        segment.remove(tag(hash), slot);
        // Removal may shrink the segment, never grow it.
        self.index_bytes -= before - segment.bytes();
        Some(entry)
    }

    /// Number of slab chunks; [`Store::chunk`] takes `0..chunks()`.
    pub fn chunks(&self) -> usize {
        self.chunks.len()
    }

    /// The entries in chunk `n`, with their slots.
    pub fn chunk(&self, n: usize) -> impl Iterator<Item = (Slot, &Entry)> {
        let base = (n as Slot) << CHUNK_BITS;
        self.chunks.get(n).into_iter().flat_map(move |c| {
            c.cells
                .iter()
                .enumerate()
                .filter_map(move |(i, e)| Some((base | i as Slot, e.as_ref()?)))
        })
    }

    /// Every entry, with its slot.
    pub fn iter(&self) -> impl Iterator<Item = (Slot, &Entry)> {
        (0..self.chunks.len()).flat_map(|n| self.chunk(n))
    }

    /// Bytes held for entries and their index: what the allocator gave the store, except the
    /// heap parts of ids too long to sit in an entry and the free lists.
    pub fn memory(&self) -> usize {
        self.allocated * CHUNK * size_of::<Option<Entry>>() + self.index_bytes
    }

    /// Chunks holding memory, and the index's size in bytes.
    #[cfg(test)]
    fn footprint(&self) -> (usize, usize) {
        let held = self.chunks.iter().filter(|c| !c.is_released()).count();
        assert_eq!(
            held, self.allocated,
            "the count of held chunks is kept right"
        );
        let bytes: usize = self.index.iter().map(Segment::bytes).sum();
        assert_eq!(bytes, self.index_bytes, "the index size is kept right");
        (held, bytes)
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
    use crate::table::entry::State;

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
    fn fill(s: &mut Store, ids: std::ops::Range<u64>) -> Vec<Slot> {
        ids.map(|i| {
            let e = entry(i);
            s.insert(s.hash(e.id()), e)
        })
        .collect()
    }

    #[test]
    fn a_drained_burst_gives_its_chunks_and_index_back() {
        let mut s = Store::default();
        let n = 40 * CHUNK as u64;
        let slots = fill(&mut s, 0..n);
        let (chunks, buckets) = s.footprint();
        assert_eq!(chunks, 40);
        // Keep the first 1,000 (the oldest: a burst expires in the order it came).
        for &slot in &slots[1000..] {
            assert!(s.remove(slot).is_some());
        }
        let (chunks_after, buckets_after) = s.footprint();
        assert!(
            chunks_after <= 2,
            "{chunks_after} chunks held for 1,000 entries"
        );
        assert!(
            buckets_after * 16 < buckets,
            "index: {buckets} buckets at the peak, {buckets_after} after"
        );
        for i in 0..1000u64 {
            let id = format!("id-{i}");
            assert_eq!(
                s.find(s.hash(id.as_bytes()), id.as_bytes()),
                Some(slots[i as usize])
            );
        }
        // Newcomers fill the held chunk's free cells before a released chunk is taken back.
        let more = fill(&mut s, n..n + 1000);
        assert!(more.iter().all(|&slot| split(slot).0 == 0));
        assert_eq!(s.footprint().0, chunks_after);
        assert_eq!(s.iter().count(), 2000);
    }

    #[test]
    fn new_entries_go_to_the_lowest_chunk_with_room() {
        let mut s = Store::default();
        let slots = fill(&mut s, 0..4 * CHUNK as u64);
        // Free a cell in chunk 3, then one in chunk 1: the next insert takes chunk 1's.
        s.remove(slots[3 * CHUNK + 5]);
        s.remove(slots[CHUNK + 7]);
        let e = entry(99_999);
        assert_eq!(s.insert(s.hash(e.id()), e), slots[CHUNK + 7]);
        let e = entry(99_998);
        assert_eq!(s.insert(s.hash(e.id()), e), slots[3 * CHUNK + 5]);
        let e = entry(99_997);
        assert_eq!(
            split(s.insert(s.hash(e.id()), e)),
            (4, 0),
            "then a new chunk"
        );
    }

    #[test]
    fn an_id_taken_and_freed_over_and_over_keeps_its_chunk() {
        let mut s = Store::default();
        for i in 0..10_000u64 {
            let e = entry(i);
            let slot = s.insert(s.hash(e.id()), e);
            assert_eq!(slot, 0);
            assert!(s.remove(slot).is_some());
            assert_eq!(s.footprint().0, 1, "the only chunk is kept");
        }
        // With a second chunk's worth of room elsewhere, an emptied chunk is released.
        let slots = fill(&mut s, 0..3 * CHUNK as u64);
        for &slot in &slots[CHUNK..2 * CHUNK] {
            s.remove(slot);
        }
        assert_eq!(s.footprint().0, 3, "no room elsewhere: chunk 1 is kept");
        for &slot in &slots[2 * CHUNK..] {
            s.remove(slot);
        }
        assert_eq!(
            s.footprint().0,
            2,
            "chunk 2 emptied with chunk 1 free: released"
        );
    }

    #[test]
    fn an_entry_put_back_into_a_released_chunk_returns_to_its_cell() {
        let mut s = Store::default();
        let slots = fill(&mut s, 0..3 * CHUNK as u64);
        let mut kept = None;
        for (i, &slot) in slots.iter().enumerate().skip(CHUNK) {
            let e = s.remove(slot).expect("stored");
            if i == 2 * CHUNK + 10 {
                kept = Some(e);
            }
        }
        assert_eq!(s.footprint().0, 2, "chunk 2 released");
        let e = kept.expect("removed");
        let slot = slots[2 * CHUNK + 10];
        assert!(s.insert_at(slot, s.hash(e.id()), e.clone()).is_ok());
        assert_eq!(s.footprint().0, 3);
        assert_eq!(s.find(s.hash(e.id()), e.id()), Some(slot));
        assert!(s.insert_at(slot, s.hash(e.id()), e).is_err(), "not free");
        // The cells below it are free and taken before any above, chunk 1 first.
        let next = fill(&mut s, 0..CHUNK as u64 + 10);
        assert!(next[..CHUNK].iter().all(|&x| split(x).0 == 1));
        let in_two: Vec<usize> = next[CHUNK..].iter().map(|&x| split(x).1).collect();
        let mut sorted = in_two.clone();
        sorted.sort_unstable();
        assert_eq!(sorted, (0..10).collect::<Vec<_>>());
        assert_eq!(s.len(), 2 * CHUNK + 11);
    }

    #[test]
    fn random_inserts_removals_and_put_backs_keep_the_store_consistent() {
        use rand::rngs::SmallRng;
        use rand::{RngExt, SeedableRng};
        let mut rng = SmallRng::seed_from_u64(7);
        let mut s = Store::default();
        // Live ids by fence, with their slots; the last removal, to put back.
        let mut live: Vec<(u64, Slot)> = Vec::new();
        let mut removed: Option<(Slot, Entry)> = None;
        let mut next = 0u64;
        let mut released_some = false;
        for step in 0..60_000u32 {
            // Grow for a while, then drain, then grow again: chunks fill, empty and come back.
            let grow = matches!(step / 15_000, 0 | 2);
            match rng.random_range(0..10u32) {
                0..=5 if grow || live.is_empty() => {
                    let e = entry(next);
                    live.push((next, s.insert(s.hash(e.id()), e)));
                    next += 1;
                }
                0..=7 if !live.is_empty() => {
                    let i = rng.random_range(0..live.len());
                    let (fence, slot) = live.swap_remove(i);
                    let e = s.remove(slot).expect("live");
                    assert_eq!(e.fence(), fence);
                    removed = Some((slot, e));
                }
                _ => {
                    if let Some((slot, e)) = removed.take() {
                        let fence = e.fence();
                        if s.insert_at(slot, s.hash(e.id()), e).is_ok() {
                            live.push((fence, slot));
                        }
                    }
                }
            }
            if step % 5_000 == 0 || step == 59_999 {
                let (held, _) = s.footprint();
                assert_eq!(s.len(), live.len());
                assert_eq!(s.iter().count(), live.len());
                assert!(held <= s.chunks());
                released_some |= held < s.chunks();
                for &(fence, slot) in &live {
                    let id = format!("id-{fence}");
                    assert_eq!(s.find(s.hash(id.as_bytes()), id.as_bytes()), Some(slot));
                }
            }
        }
        assert!(released_some, "the drains gave chunks back");
    }

    #[test]
    fn a_chunk_set_yields_its_lowest_member() {
        let mut set = ChunkSet::default();
        assert_eq!(set.first(), None);
        for n in [700, 3, 64, 200] {
            set.insert(n);
        }
        assert_eq!(set.first(), Some(3));
        set.remove(3);
        assert_eq!(set.first(), Some(64));
        set.remove(64);
        set.remove(200);
        assert_eq!(set.first(), Some(700));
        set.insert(1);
        assert_eq!(set.first(), Some(1));
        set.remove(1);
        set.remove(700);
        assert_eq!(set.first(), None);
    }
}
