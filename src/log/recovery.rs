//! Start-up recovery: rebuild every shard's table from every log under the directory.
//!
//! Invariants:
//! - Every `shard-<n>/appendonly.log` is read, including shards beyond the current count; the
//!   live ids come back as records with their hash slots, and the caller routes them to the
//!   current shards. Ordering between files follows epochs (see `replay.rs`), so the order
//!   files are read in does not matter.
//! - A torn tail (the last, unfinished write before a crash) is cut off the file, so the next
//!   append lands after valid data, and reported. Damage before the tail stops recovery with
//!   the file and byte offset, unless `repair` is set: then the file is cut there and the cut
//!   is reported. A file of a newer format version is never cut, repair or not.
//! - Leftover rewrite files (`appendonly.log.rewrite`) are never read and are removed.
//! - Files are streamed; memory grows with the number of live ids, not with the log size.

use std::fmt;
use std::io::{self, Read};
use std::path::{Path, PathBuf};
use std::time::{Duration, Instant};

use super::codec::decode_body;
use super::format::{FILE_HEADER_LEN, FORMAT_VERSION, FileHeader, HeaderError};
use super::reader::{FrameReader, Step};
use super::replay::{LiveRecords, Replay};
use super::storage::{Storage, with_path};
use super::{LOG_FILE, REWRITE_FILE, parse_shard_dir, shard_dir};
use crate::types::LogRecord;
use crate::types::RecordRef;

/// What recovery rebuilt.
#[derive(Debug)]
pub struct Recovered {
    /// One Lock or Complete record per live id, with its hash slot: where each goes is the
    /// caller's to say.
    pub live: LiveRecords,
    /// The highest fence found; the new run hands out fences above it.
    pub max_fence: u64,
    /// The epoch (run number) for the new run: one above any found.
    pub epoch: u64,
    /// What was read, and what was cut.
    pub report: RecoveryReport,
}

/// What recovery read and what it cut.
#[derive(Debug, Default)]
pub struct RecoveryReport {
    /// Log files found.
    pub files: usize,
    /// Valid records read.
    pub records: u64,
    /// Bytes of valid data read (headers and records).
    pub bytes: u64,
    /// Files whose torn last write was cut off, with the bytes dropped.
    pub torn_tails: Vec<(PathBuf, u64)>,
    /// Files cut at damage because `repair` was set: offset of the cut, bytes dropped.
    pub repaired: Vec<(PathBuf, u64, u64)>,
    /// Time spent.
    pub elapsed: Duration,
}

/// Why recovery refused to start.
#[derive(Debug)]
pub enum RecoveryError {
    /// Damage before the end of a log.
    Corrupt {
        /// The damaged file.
        path: PathBuf,
        /// Byte offset of the first damaged header or record.
        offset: u64,
        /// What is wrong there.
        reason: String,
    },
    /// A log written in a format version this server does not read.
    Unsupported {
        /// The file.
        path: PathBuf,
        /// The version in its header.
        version: u32,
    },
    /// Reading, cutting or listing failed.
    Io(io::Error),
}

impl fmt::Display for RecoveryError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            RecoveryError::Corrupt {
                path,
                offset,
                reason,
            } => write!(
                f,
                "corrupt log {} at byte {offset}: {reason}; start with --repair-log to truncate it there",
                path.display()
            ),
            RecoveryError::Unsupported { path, version } => write!(
                f,
                "log {} has format version {version}, but this server reads version {FORMAT_VERSION}",
                path.display()
            ),
            RecoveryError::Io(e) => write!(f, "reading the logs: {e}"),
        }
    }
}

impl std::error::Error for RecoveryError {
    fn source(&self) -> Option<&(dyn std::error::Error + 'static)> {
        match self {
            RecoveryError::Io(e) => Some(e),
            _ => None,
        }
    }
}

impl From<io::Error> for RecoveryError {
    fn from(e: io::Error) -> Self {
        RecoveryError::Io(e)
    }
}

/// Replays every shard log under `dir` into the live ids' records.
///
/// A missing `dir` is an empty history. With `repair`, damage is cut off instead of refused.
pub fn recover(
    storage: &dyn Storage,
    dir: &Path,
    repair: bool,
) -> Result<Recovered, RecoveryError> {
    let started = Instant::now();
    let mut report = RecoveryReport::default();
    let mut replay = Replay::default();
    let files = log_files(storage, dir)?;
    report.files = files.len();

    // Headers first: a rewritten file's header decides which records elsewhere are stale.
    let mut readable = Vec::with_capacity(files.len());
    for path in files {
        if let Some(header) = check_header(storage, &path, repair, &mut report)? {
            replay.add_header(&header);
            readable.push(path);
        }
    }
    for path in &readable {
        replay_file(storage, path, repair, &mut replay, &mut report)?;
    }

    let max_fence = replay.max_fence();
    let epoch = replay.max_epoch().saturating_add(1);
    let live = replay.into_live();
    report.elapsed = started.elapsed();
    Ok(Recovered {
        live,
        max_fence,
        epoch,
        report,
    })
}

/// The log files under `dir`, by shard number; removes leftover rewrite files.
fn log_files(storage: &dyn Storage, dir: &Path) -> io::Result<Vec<PathBuf>> {
    let names = match storage.list_dir(dir) {
        Ok(names) => names,
        Err(e) if e.kind() == io::ErrorKind::NotFound => return Ok(Vec::new()),
        Err(e) => return Err(with_path(e, "listing", dir)),
    };
    let mut shards: Vec<usize> = names
        .iter()
        .filter_map(|n| n.to_str().and_then(parse_shard_dir))
        .collect();
    shards.sort_unstable();
    let mut files = Vec::with_capacity(shards.len());
    for shard in shards {
        let sdir = shard_dir(dir, shard);
        let leftover = sdir.join(REWRITE_FILE);
        if storage.exists(&leftover)? {
            tracing::warn!(path = %leftover.display(), "removing an unfinished log rewrite");
            storage
                .remove_file(&leftover)
                .map_err(|e| with_path(e, "removing", &leftover))?;
        }
        let path = sdir.join(LOG_FILE);
        if storage.exists(&path)? {
            files.push(path);
        }
    }
    Ok(files)
}

/// Reads and checks a file's header. `None`: the file holds nothing to replay (empty, or a
/// torn or repaired header, cut to zero bytes).
fn check_header(
    storage: &dyn Storage,
    path: &Path,
    repair: bool,
    report: &mut RecoveryReport,
) -> Result<Option<FileHeader>, RecoveryError> {
    let len = storage
        .file_len(path)
        .map_err(|e| with_path(e, "reading", path))?;
    if len == 0 {
        return Ok(None);
    }
    let mut file = storage
        .open_read(path)
        .map_err(|e| with_path(e, "opening", path))?;
    let mut head = Vec::with_capacity(FILE_HEADER_LEN);
    (&mut file)
        .take(FILE_HEADER_LEN as u64)
        .read_to_end(&mut head)
        .map_err(|e| with_path(e, "reading", path))?;
    // The header is synced before anything follows it, so a short file, or one of nothing
    // but zeros, is a crash while the file was being created.
    let all_zero = head.iter().all(|&b| b == 0) && rest_is_zero(&mut file, path)?;
    if len < FILE_HEADER_LEN as u64 || all_zero {
        cut(storage, path, 0)?;
        tracing::warn!(path = %path.display(), bytes = len, "dropped a torn log header");
        report.torn_tails.push((path.to_path_buf(), len));
        return Ok(None);
    }
    match FileHeader::decode(&head) {
        Ok(header) => Ok(Some(header)),
        Err(HeaderError::Unsupported(version)) => Err(RecoveryError::Unsupported {
            path: path.to_path_buf(),
            version,
        }),
        Err(HeaderError::Bad(reason)) if repair => {
            cut(storage, path, 0)?;
            tracing::warn!(path = %path.display(), %reason, bytes = len, "repair: emptied a log with a bad header");
            report.repaired.push((path.to_path_buf(), 0, len));
            Ok(None)
        }
        Err(HeaderError::Bad(reason)) => Err(RecoveryError::Corrupt {
            path: path.to_path_buf(),
            offset: 0,
            reason,
        }),
    }
}

fn rest_is_zero(file: &mut dyn Read, path: &Path) -> io::Result<bool> {
    let mut chunk = vec![0u8; 64 * 1024];
    loop {
        let n = file
            .read(&mut chunk)
            .map_err(|e| with_path(e, "reading", path))?;
        if n == 0 {
            return Ok(true);
        }
        if chunk.get(..n).is_some_and(|c| c.iter().any(|&b| b != 0)) {
            return Ok(false);
        }
    }
}

/// Replays the records of one file whose header was accepted.
fn replay_file(
    storage: &dyn Storage,
    path: &Path,
    repair: bool,
    replay: &mut Replay,
    report: &mut RecoveryReport,
) -> Result<(), RecoveryError> {
    let io_err = |e| with_path(e, "reading", path);
    let len = storage.file_len(path).map_err(io_err)?;
    let mut file = storage.open_read(path).map_err(io_err)?;
    let mut head = [0u8; FILE_HEADER_LEN];
    file.read_exact(&mut head).map_err(io_err)?;
    let mut reader = FrameReader::new(file, FILE_HEADER_LEN as u64, len);
    let mut epoch = 0u64;
    // A transaction being read: where its Group marker starts, how many records are still to
    // come, and the ones read so far (applied only once the last one is read).
    let mut group: Option<PendingGroup> = None;
    // Where the file must be cut, why, and whether that is a torn tail or damage.
    let problem: Option<(u64, String, bool)> = loop {
        match reader.next_frame().map_err(io_err)? {
            Step::End => {
                break group.as_ref().map(|g| {
                    (
                        g.offset,
                        format!("the log ends inside a transaction of {} records", g.count),
                        true,
                    )
                });
            }
            Step::Record { offset, body } => match decode_body(body) {
                Ok(RecordRef::Group { count }) => {
                    if group.is_some() {
                        break Some((offset, "a transaction inside a transaction".into(), false));
                    }
                    report.records += 1;
                    group = (count > 0).then(|| PendingGroup {
                        offset,
                        count,
                        records: Vec::new(),
                    });
                }
                Ok(rec) => {
                    report.records += 1;
                    if let RecordRef::Epoch { epoch: e } = rec {
                        epoch = e;
                    }
                    match &mut group {
                        None => replay.apply(&rec, epoch),
                        Some(g) => {
                            g.records.push((rec.to_record(), epoch));
                            if g.records.len() == g.count as usize {
                                for (rec, epoch) in std::mem::take(&mut g.records) {
                                    replay.apply(&rec.borrowed(), epoch);
                                }
                                group = None;
                            }
                        }
                    }
                }
                Err(e) => break Some((offset, e.to_string(), false)),
            },
            Step::Torn { offset, reason } => break Some((offset, reason, true)),
            Step::Corrupt { offset, reason } => break Some((offset, reason, false)),
        }
    };
    // A transaction cut short is dropped whole: the cut goes back to its marker.
    let problem = match (problem, &group) {
        (Some((_, reason, torn)), Some(g)) if torn || repair => Some((g.offset, reason, torn)),
        (problem, _) => problem,
    };
    report.bytes += reader.offset();
    let Some((offset, reason, torn)) = problem else {
        return Ok(());
    };
    let dropped = len.saturating_sub(offset);
    if torn {
        cut(storage, path, offset)?;
        tracing::warn!(path = %path.display(), offset, bytes = dropped, %reason, "dropped a torn log tail");
        report.torn_tails.push((path.to_path_buf(), dropped));
        Ok(())
    } else if repair {
        cut(storage, path, offset)?;
        tracing::warn!(path = %path.display(), offset, bytes = dropped, %reason, "repair: cut a damaged log");
        report.repaired.push((path.to_path_buf(), offset, dropped));
        Ok(())
    } else {
        Err(RecoveryError::Corrupt {
            path: path.to_path_buf(),
            offset,
            reason,
        })
    }
}

/// The records of a transaction read so far, held back until its last one is read.
struct PendingGroup {
    /// Where its Group marker starts in the file.
    offset: u64,
    /// How many records it has.
    count: u32,
    /// Those read so far, each with its epoch.
    records: Vec<(LogRecord, u64)>,
}

fn cut(storage: &dyn Storage, path: &Path, len: u64) -> io::Result<()> {
    storage
        .truncate(path, len)
        .map_err(|e| with_path(e, "truncating", path))
}
