//! The on-disk format of a shard log: constants and the file header.
//!
//! `docs/LOG_FORMAT.md` describes the same layout byte by byte; the two must agree.
//!
//! Records themselves are encoded in [`super::codec`].
//!
//! Invariants:
//! - The header is fixed-size and checksummed; a header that fails its checksum is never
//!   trusted, and a version other than [`FORMAT_VERSION`] is never read.
//! - A rewritten file's header declares which ids it supersedes (see [`FileHeader`]).

/// The first eight bytes of every log file.
pub const MAGIC: [u8; 8] = *b"TOKENLOG";

/// The format version this code writes and reads.
pub const FORMAT_VERSION: u32 = 1;

/// Size of the file header in bytes.
pub const FILE_HEADER_LEN: usize = 32;

/// Size of a record frame's header: length and checksum.
pub const FRAME_HEADER_LEN: usize = 8;

/// Largest accepted record body (type byte and payload). Ids, fingerprints and results are
/// each capped well below this by the request limits; a length above it is corruption.
pub const MAX_BODY_LEN: u32 = 16 * 1024 * 1024;

/// Largest shard count a header may name (far above what the server accepts).
pub const MAX_SHARDS: u32 = 1 << 16;

/// The header at the start of every log file.
///
/// A rewritten log is a complete statement of one shard's ids: `covers_epoch > 0` says that
/// for every id with `shard_for(id, shards) == shard`, records of runs before `covers_epoch`
/// (in any file) are superseded by this file. A log created by appending has
/// `covers_epoch == 0` and supersedes nothing.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct FileHeader {
    /// Format version of the file.
    pub version: u32,
    /// The shard the file was written for.
    pub shard: u32,
    /// The shard count of the run that wrote a rewritten file; 0 when `covers_epoch` is 0.
    pub shards: u32,
    /// The run that rewrote the file, or 0 for a file that supersedes nothing.
    pub covers_epoch: u64,
}

/// Why a file header was rejected.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum HeaderError {
    /// Not a log, or a damaged header.
    Bad(String),
    /// A well-formed header of a format version this code cannot read.
    Unsupported(u32),
}

impl std::fmt::Display for HeaderError {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            HeaderError::Bad(why) => f.write_str(why),
            HeaderError::Unsupported(v) => {
                write!(
                    f,
                    "format version {v}, this server reads version {FORMAT_VERSION}"
                )
            }
        }
    }
}

impl FileHeader {
    /// The header of a file that supersedes nothing (a log created by appending).
    pub fn plain(shard: usize) -> FileHeader {
        FileHeader {
            version: FORMAT_VERSION,
            shard: u32::try_from(shard).unwrap_or(u32::MAX),
            shards: 0,
            covers_epoch: 0,
        }
    }

    /// The header of a rewritten file: it supersedes, for the ids of `shard` among `shards`,
    /// every record of a run before `epoch`.
    pub fn rewritten(shard: usize, shards: usize, epoch: u64) -> FileHeader {
        FileHeader {
            version: FORMAT_VERSION,
            shard: u32::try_from(shard).unwrap_or(u32::MAX),
            shards: u32::try_from(shards).unwrap_or(u32::MAX),
            covers_epoch: epoch,
        }
    }

    /// Encodes the header: magic, version, shard, shards, covers_epoch, CRC32C of the rest.
    pub fn encode(&self) -> [u8; FILE_HEADER_LEN] {
        let mut out = [0u8; FILE_HEADER_LEN];
        out[0..8].copy_from_slice(&MAGIC);
        out[8..12].copy_from_slice(&self.version.to_le_bytes());
        out[12..16].copy_from_slice(&self.shard.to_le_bytes());
        out[16..20].copy_from_slice(&self.shards.to_le_bytes());
        out[20..28].copy_from_slice(&self.covers_epoch.to_le_bytes());
        let crc = crc32c::crc32c(&out[0..28]);
        out[28..32].copy_from_slice(&crc.to_le_bytes());
        out
    }

    /// Decodes and checks a header read from disk.
    pub fn decode(bytes: &[u8]) -> Result<FileHeader, HeaderError> {
        let Some(head) = bytes.first_chunk::<FILE_HEADER_LEN>() else {
            return Err(HeaderError::Bad("file shorter than its header".into()));
        };
        let u32_at = |at: usize| head.get(at..at + 4).and_then(|b| b.try_into().ok());
        let u64_at = |at: usize| head.get(at..at + 8).and_then(|b| b.try_into().ok());
        if head.get(0..8) != Some(MAGIC.as_slice()) {
            return Err(HeaderError::Bad(
                "not a token-server log (bad magic)".into(),
            ));
        }
        let stored = u32_at(28).map(u32::from_le_bytes);
        if head.get(0..28).map(crc32c::crc32c) != stored {
            return Err(HeaderError::Bad("file header checksum mismatch".into()));
        }
        let version = u32_at(8).map_or(0, u32::from_le_bytes);
        let shard = u32_at(12).map_or(0, u32::from_le_bytes);
        let shards = u32_at(16).map_or(0, u32::from_le_bytes);
        let covers_epoch = u64_at(20).map_or(0, u64::from_le_bytes);
        if version != FORMAT_VERSION {
            return Err(HeaderError::Unsupported(version));
        }
        if covers_epoch > 0 && (shard >= shards || shards > MAX_SHARDS) {
            return Err(HeaderError::Bad(format!(
                "file header names shard {shard} of {shards}"
            )));
        }
        Ok(FileHeader {
            version,
            shard,
            shards,
            covers_epoch,
        })
    }
}
