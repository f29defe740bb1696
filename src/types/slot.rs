//! Where an id lives: its Redis Cluster hash slot, and the shard that owns the slot.

/// The index of a shard, `0..shards`.
pub type ShardId = usize;

/// Number of hash slots, as in Redis Cluster.
pub const SLOTS: usize = 16_384;

const CRC16: crc::Crc<u16> = crc::Crc::<u16>::new(&crc::CRC_16_XMODEM);

/// The Redis Cluster hash slot of an id: CRC16 of the id, or of its `{hash tag}` if it has a
/// non-empty one, modulo 16384. Ids sharing a tag (`{order-7}:email`, `{order-7}:sms`) land on
/// the same shard, and the mapping is ready for cluster-aware clients later.
pub fn slot_for(id: &[u8]) -> u16 {
    let hashed = match id.iter().position(|&b| b == b'{') {
        Some(open) => match id[open + 1..].iter().position(|&b| b == b'}') {
            Some(len) if len > 0 => &id[open + 1..open + 1 + len],
            _ => id,
        },
        None => id,
    };
    CRC16.checksum(hashed) % SLOTS as u16
}

/// The shard that owns `id` among `shards` shards: slots are split into contiguous ranges.
pub fn shard_for(id: &[u8], shards: usize) -> ShardId {
    shard_of_slot(slot_for(id), shards)
}

/// The shard that owns hash slot `slot` among `shards` shards.
pub fn shard_of_slot(slot: u16, shards: usize) -> ShardId {
    if shards <= 1 {
        return 0;
    }
    usize::from(slot) * shards / SLOTS
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn redis_cluster_slots() {
        // Values from Redis Cluster's specification and `CLUSTER KEYSLOT`.
        assert_eq!(slot_for(b"123456789"), 0x31C3);
        assert_eq!(slot_for(b"foo"), 12182);
        assert_eq!(slot_for(b"{user1000}.following"), slot_for(b"user1000"));
        assert_eq!(slot_for(b"foo{}{bar}"), slot_for(b"foo{}{bar}"));
        assert_ne!(slot_for(b"foo{}{bar}"), slot_for(b"bar"));
    }

    #[test]
    fn shards_cover_all_and_stay_in_range() {
        for n in 1..=16 {
            let mut seen = vec![false; n];
            for i in 0..10_000u32 {
                let s = shard_for(&i.to_le_bytes(), n);
                assert!(s < n);
                seen[s] = true;
            }
            assert!(seen.iter().all(|&x| x), "{n} shards");
        }
    }
}
