//! The content of a rewritten log, a snapshot: the file header naming the shard layout and
//! epoch it covers, `Epoch`, `Fence`, then one Lock or Complete record per live id.

use super::format::FileHeader;
use crate::types::{LogRecord, RecordRef};

/// The buffer a snapshot starts with, whatever its expected size.
const BUFFER_CAPACITY: usize = 64 * 1024;

/// Builds a snapshot (the content of a rewritten log) one record at a time:
/// header, `Epoch { epoch }`, `Fence { max_fence }`, then one record per live entry.
#[derive(Debug)]
pub struct SnapshotEncoder {
    buf: Vec<u8>,
}

impl SnapshotEncoder {
    /// Starts the snapshot of shard `shard` of `shards` in run `epoch`, with fences up to
    /// `max_fence` issued.
    pub fn new(shard: usize, shards: usize, epoch: u64, max_fence: u64) -> Self {
        SnapshotEncoder::with_capacity(shard, shards, epoch, max_fence, BUFFER_CAPACITY)
    }

    /// [`SnapshotEncoder::new`] with room for about `bytes` of output, so that encoding a
    /// large table does not copy its buffer over and over as it grows.
    pub fn with_capacity(
        shard: usize,
        shards: usize,
        epoch: u64,
        max_fence: u64,
        bytes: usize,
    ) -> Self {
        let mut buf = Vec::with_capacity(bytes.max(BUFFER_CAPACITY));
        buf.extend_from_slice(&FileHeader::rewritten(shard, shards, epoch).encode());
        LogRecord::Epoch { epoch }.encode_into(&mut buf);
        LogRecord::Fence { value: max_fence }.encode_into(&mut buf);
        SnapshotEncoder { buf }
    }

    /// Adds one live entry (a Lock or Complete record).
    pub fn push(&mut self, rec: &RecordRef<'_>) {
        rec.encode_into(&mut self.buf);
    }

    /// The encoded snapshot, for [`crate::log::writer::ShardLog::begin_rewrite`].
    pub fn finish(self) -> Vec<u8> {
        self.buf
    }
}

/// Encodes a snapshot of shard `shard` of `shards` in run `epoch`: header, `Epoch{epoch}`,
/// `Fence{max_fence}`, then one record per live entry.
pub fn encode_snapshot(
    records: impl Iterator<Item = LogRecord>,
    shard: usize,
    shards: usize,
    epoch: u64,
    max_fence: u64,
) -> Vec<u8> {
    let mut encoder = SnapshotEncoder::new(shard, shards, epoch, max_fence);
    for rec in records {
        encoder.push(&rec.borrowed());
    }
    encoder.finish()
}
