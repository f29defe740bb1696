//! Durability: each shard's append-only log, recovery at start-up, and log rewrites.
//!
//! Layout under `--dir`:
//! - `LOCK`: held (advisory `flock`) by the running server; see [`dir_lock`].
//! - `FLOOR`: the lowest epoch and fence the next run may use; see [`floor`].
//! - `shard-<n>/appendonly.log`: shard `n`'s log; see [`format`](mod@format) and `docs/LOG_FORMAT.md`.
//! - `shard-<n>/appendonly.log.rewrite`: a rewrite in progress; never read, removed at start.
//!
//! Modules:
//! - [`record`]: what is logged — assignments of an id's whole state, and markers.
//! - [`format`](mod@format) and [`codec`]: the bytes on disk.
//! - [`storage`]: the file-system seam, with a fault-injecting in-memory disk for tests.
//! - [`writer`]: a shard's open log — group-committed appends and background rewrites.
//! - [`snapshot`]: the content of a rewritten log.
//! - [`recovery`]: rebuilding every shard's table from all logs at start-up.
//! - [`dir_lock`]: one server per directory.
//! - [`floor`]: fences reserved apart from the logs, so that repair cannot make them go back.
//!
//! Invariants:
//! - Records are whole-state assignments, so replay is idempotent and a rewritten log followed
//!   by the records appended during the rewrite gives the same state as the old log.
//! - A log file only ever grows by appends, except when recovery cuts a torn or (with repair)
//!   damaged tail, and when a rewrite atomically replaces it.
pub mod codec;
pub mod dir_lock;
pub mod floor;
pub mod format;
mod reader;
pub mod recovery;
mod replay;
pub mod snapshot;
pub mod storage;
pub mod writer;

#[cfg(test)]
mod tests;

use std::path::{Path, PathBuf};

pub use dir_lock::{DirLock, lock_dir};
pub use floor::{FENCE_STEP, FenceReservation, Floor, read_floor, write_floor};

pub use recovery::{Recovered, RecoveryError, RecoveryReport, recover};
pub use replay::{LiveRecord, LiveRecords};
pub use storage::{FaultyStorage, FsStorage, LogFile, Storage};
pub use writer::{RewriteReport, ShardLog, SnapshotEncoder, encode_snapshot};

/// Name of the log file inside a shard's directory.
pub const LOG_FILE: &str = "appendonly.log";

/// Name of the file a rewrite writes before renaming it over [`LOG_FILE`].
pub const REWRITE_FILE: &str = "appendonly.log.rewrite";

/// The directory of shard `shard` under `dir`: `dir/shard-<shard>`.
pub fn shard_dir(dir: &Path, shard: usize) -> PathBuf {
    dir.join(format!("shard-{shard}"))
}

/// The shard number of a directory name `shard-<n>` (decimal digits only).
pub fn parse_shard_dir(name: &str) -> Option<usize> {
    let digits = name.strip_prefix("shard-")?;
    if digits.is_empty() || !digits.bytes().all(|b| b.is_ascii_digit()) {
        return None;
    }
    digits.parse().ok()
}
