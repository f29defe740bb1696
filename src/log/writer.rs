//! A shard's open log: group-committed appends, and rewrites that run beside the shard.
//!
//! Invariants:
//! - [`ShardLog::append`] only encodes into memory; bytes reach the file in
//!   [`ShardLog::flush`], one write per batch, and are durable after its sync. The caller
//!   answers the batch's commands only after that.
//! - After a failed write or sync the file may end in a torn record, so nothing more is
//!   appended to it (the log is *failed*) until a rewrite replaces it. A torn record thus
//!   always stays the last thing in its file, where recovery drops it.
//! - A rewrite writes `snapshot + records appended since it began` to
//!   `appendonly.log.rewrite`, syncs it, renames it over `appendonly.log` and syncs the
//!   directory. The snapshot, and then the records kept meanwhile in catch-up rounds of a
//!   background thread, are written beside the shard; only the last few records, a sync, the
//!   rename and the directory sync happen on the shard's thread. Until the rename, every record also goes to the old file, so a crash at any
//!   point leaves one complete log under the name: the old one or the new one.
//! - Nothing is appended to the new file before the directory sync succeeds: a record in it
//!   could otherwise be lost with the rename.
//! - The new file holds exactly what the caller's table holds: a batch whose flush failed (and
//!   which the caller takes back) is left out of it too.
//!
//! Over 500 lines: the append path and the rewrite's steps (snapshot, catch-up rounds, switch,
//! abandon) share one file handle, one buffer and the records kept for the rewrite, and read
//! best as one state machine; the snapshot's encoding is in [`super::snapshot`].

use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::thread::{self, JoinHandle};
use std::time::{Duration, Instant};
use std::{fmt, io};

use super::format::{FILE_HEADER_LEN, FileHeader};
use super::storage::{LogFile, Storage, with_path};
use super::{LOG_FILE, REWRITE_FILE, shard_dir};
use crate::types::LogRecord;
use crate::types::RecordRef;

pub use super::snapshot::{SnapshotEncoder, encode_snapshot};

/// Initial capacity of the append buffer; a buffer grown past `BUFFER_SHRINK` by a large
/// batch is given back after it is written.
const BUFFER_CAPACITY: usize = 64 * 1024;
const BUFFER_SHRINK: usize = 4 * 1024 * 1024;

/// A rewrite whose kept records (written to the old file since it began) exceed this many
/// bytes when its background write ends copies them in another background round instead of
/// on the shard's thread, where the switch must stay short.
const CATCH_UP_BYTES: usize = 256 * 1024;
/// Background rounds per rewrite at most: a shard appending faster than the disk takes the
/// copy still finishes its rewrite, with a longer switch.
const CATCH_UP_ROUNDS: u32 = 8;

/// What a finished rewrite did.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct RewriteReport {
    /// Size of the replaced file.
    pub old_len: u64,
    /// Size of the new file when it took over.
    pub new_len: u64,
    /// Bytes of the snapshot (header and records of live ids).
    pub snapshot_len: u64,
    /// Bytes of records appended during the rewrite and copied into the new file.
    pub tail_len: u64,
    /// Time from `begin_rewrite` to the switch.
    pub elapsed: Duration,
    /// Background catch-up rounds that copied kept records before the switch.
    pub rounds: u32,
    /// Time the switch itself took on the caller's thread (last records, syncs, rename).
    pub switch: Duration,
}

/// A rewrite in progress.
struct Rewrite {
    /// Writes and syncs the snapshot into the rewrite file; returns the open file. `None`
    /// while the caller is still encoding the snapshot (records are already being kept).
    worker: Option<JoinHandle<io::Result<Box<dyn LogFile>>>>,
    snapshot_len: u64,
    /// Bytes of kept records the background rounds have copied into the new file.
    caught_up: u64,
    /// Background rounds started after the snapshot's.
    rounds: u32,
    /// Every record appended since the rewrite began, less what background rounds copied.
    tail: Vec<u8>,
    /// Bytes at the front of the append buffer that were appended before the rewrite began
    /// and have not been written since (they are in the snapshot already).
    pre_begin: usize,
    /// A failed flush took back records the snapshot holds: the rewrite must not be used.
    abandoned: bool,
    started: Instant,
}

impl fmt::Debug for Rewrite {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("Rewrite")
            .field("snapshot_len", &self.snapshot_len)
            .field("caught_up", &self.caught_up)
            .field("tail_len", &self.tail.len())
            .field("pre_begin", &self.pre_begin)
            .field("abandoned", &self.abandoned)
            .finish_non_exhaustive()
    }
}

/// One shard's append-only log file, open for appending.
#[derive(Debug)]
pub struct ShardLog {
    storage: Arc<dyn Storage>,
    shard: usize,
    epoch: u64,
    shard_dir: PathBuf,
    path: PathBuf,
    rewrite_path: PathBuf,
    file: Box<dyn LogFile>,
    file_len: u64,
    buf: Vec<u8>,
    unsynced: bool,
    failed: bool,
    rewrite: Option<Rewrite>,
    catch_up_bytes: usize,
}

impl ShardLog {
    /// Opens (creating if needed) `dir/shard-<shard>/appendonly.log` for appending, writing
    /// and syncing the header if new, and buffers an `Epoch { epoch }` record. Removes a
    /// leftover rewrite file. Run [`super::recover`] first: it cuts torn tails, and this
    /// refuses a file whose header is not valid.
    pub fn open(
        storage: Arc<dyn Storage>,
        dir: &Path,
        shard: usize,
        epoch: u64,
    ) -> io::Result<ShardLog> {
        let sdir = shard_dir(dir, shard);
        let path = sdir.join(LOG_FILE);
        let rewrite_path = sdir.join(REWRITE_FILE);
        storage
            .create_dir_all(&sdir)
            .map_err(|e| with_path(e, "creating", &sdir))?;
        if storage.exists(&rewrite_path)? {
            storage
                .remove_file(&rewrite_path)
                .map_err(|e| with_path(e, "removing", &rewrite_path))?;
        }
        let mut file = storage
            .open_append(&path)
            .map_err(|e| with_path(e, "opening", &path))?;
        let mut file_len = file.size()?;
        if file_len == 0 {
            let header = FileHeader::plain(shard).encode();
            let created = file
                .write_all(&header)
                .and_then(|()| file.sync_data())
                .and_then(|()| storage.sync_dir(&sdir))
                .and_then(|()| storage.sync_dir(dir));
            created.map_err(|e| with_path(e, "creating", &path))?;
            file_len = header.len() as u64;
        } else {
            check_existing_header(&*storage, &path)?;
        }
        let mut buf = Vec::with_capacity(BUFFER_CAPACITY);
        LogRecord::Epoch { epoch }.encode_into(&mut buf);
        Ok(ShardLog {
            storage,
            shard,
            epoch,
            shard_dir: sdir,
            path,
            rewrite_path,
            file,
            file_len,
            buf,
            unsynced: false,
            failed: false,
            rewrite: None,
            catch_up_bytes: CATCH_UP_BYTES,
        })
    }

    /// Encodes `rec` into the in-memory buffer; no I/O. During a rewrite the record is also
    /// kept for the new file.
    pub fn append(&mut self, rec: &LogRecord) {
        self.append_ref(&rec.borrowed());
    }

    /// [`Self::append`] for a borrowed record.
    pub fn append_ref(&mut self, rec: &RecordRef<'_>) {
        let start = self.buf.len();
        rec.encode_into(&mut self.buf);
        if let Some(rewrite) = &mut self.rewrite {
            rewrite
                .tail
                .extend_from_slice(self.buf.get(start..).unwrap_or_default());
        }
    }

    /// Whether appended records wait to be written.
    pub fn has_pending(&self) -> bool {
        !self.buf.is_empty()
    }

    /// Writes the buffer to the file, then fdatasyncs if `sync` (also when earlier flushes
    /// left written bytes unsynced). The buffer is empty afterwards, ok or not.
    ///
    /// On error the log is failed: the file may end in a torn record, and every later flush
    /// or sync fails without writing until a rewrite succeeds. The caller answers the batch's
    /// commands with an error and takes their effects back from its table; to match, the
    /// batch is also dropped from a running rewrite. (A rewrite whose snapshot already holds
    /// records of the failed batch, appended before it began, is abandoned.) The batch may
    /// still be in the old file, so a crash before the next rewrite can bring it back: a
    /// failed command's outcome is unknown.
    pub fn flush(&mut self, sync: bool) -> io::Result<()> {
        let result = self.write_batch(sync);
        match result {
            Ok(()) => self.clear_buffer(),
            Err(_) => {
                self.failed = true;
                self.forget_batch();
            }
        }
        result
    }

    fn write_batch(&mut self, sync: bool) -> io::Result<()> {
        if self.failed {
            return Err(failed_error());
        }
        if !self.buf.is_empty() {
            self.file
                .write_all(&self.buf)
                .map_err(|e| with_path(e, "writing", &self.path))?;
            self.file_len += self.buf.len() as u64;
            self.unsynced = true;
        }
        if sync && self.unsynced {
            self.file
                .sync_data()
                .map_err(|e| with_path(e, "syncing", &self.path))?;
            self.unsynced = false;
        }
        Ok(())
    }

    /// fdatasyncs what earlier flushes wrote, without writing (for `everysec`). A failure
    /// fails the log.
    pub fn sync(&mut self) -> io::Result<()> {
        if self.failed {
            return Err(failed_error());
        }
        if self.unsynced {
            if let Err(e) = self.file.sync_data() {
                self.failed = true;
                return Err(with_path(e, "syncing", &self.path));
            }
            self.unsynced = false;
        }
        Ok(())
    }

    /// Whether a write or sync failed and no rewrite has replaced the file since.
    pub fn is_failed(&self) -> bool {
        self.failed
    }

    /// Bytes in the current file (for the rewrite trigger).
    pub fn file_len(&self) -> u64 {
        self.file_len
    }

    /// The epoch this log was opened with.
    pub fn epoch(&self) -> u64 {
        self.epoch
    }

    /// Starts a rewrite. `snapshot` is the shard's live state encoded by
    /// [`encode_snapshot`] (or [`SnapshotEncoder`]) for this shard and this log's epoch; a
    /// background thread writes and syncs it while the shard keeps appending. Every record
    /// appended from now on is also kept for the new file. Records appended before this call
    /// but not yet flushed must be reflected in `snapshot`. Fails if a rewrite is running or
    /// the snapshot is for another shard or epoch.
    pub fn begin_rewrite(&mut self, snapshot: Vec<u8>) -> io::Result<()> {
        self.begin_collecting()?;
        self.submit_snapshot(snapshot)
    }

    /// Starts a rewrite whose snapshot the caller will encode over time: from now on every
    /// appended record is kept for the new file. The snapshot, handed over later with
    /// [`ShardLog::submit_snapshot`], may then be built from the table a part at a time, as
    /// long as each part shows a committed state from after this call: records are
    /// assignments, so the snapshot followed by the records kept since this call ends with
    /// each id's current state. A failed flush in between is dropped from the kept records,
    /// and the caller's table takes it back, so parts encoded before or after it agree.
    pub fn begin_collecting(&mut self) -> io::Result<()> {
        if self.rewrite.is_some() {
            return Err(io::Error::other("a log rewrite is already running"));
        }
        self.rewrite = Some(Rewrite {
            worker: None,
            snapshot_len: 0,
            caught_up: 0,
            rounds: 0,
            tail: Vec::new(),
            pre_begin: self.buf.len(),
            abandoned: false,
            started: Instant::now(),
        });
        Ok(())
    }

    /// Hands the encoded snapshot of a rewrite started with [`ShardLog::begin_collecting`] to a
    /// background thread, which writes and syncs it. On error no rewrite is running.
    pub fn submit_snapshot(&mut self, snapshot: Vec<u8>) -> io::Result<()> {
        let header = FileHeader::decode(&snapshot).ok();
        let shard_ok = header.is_some_and(|h| usize::try_from(h.shard).ok() == Some(self.shard));
        if !shard_ok || header.map(|h| h.covers_epoch) != Some(self.epoch) {
            self.rewrite = None;
            return Err(io::Error::new(
                io::ErrorKind::InvalidInput,
                format!(
                    "snapshot is not for shard {} in epoch {}",
                    self.shard, self.epoch
                ),
            ));
        }
        let Some(rewrite) = self.rewrite.as_mut().filter(|r| r.worker.is_none()) else {
            return Err(io::Error::other(
                "no log rewrite is waiting for its snapshot",
            ));
        };
        let snapshot_len = snapshot.len() as u64;
        let storage = Arc::clone(&self.storage);
        let path = self.rewrite_path.clone();
        let spawned = thread::Builder::new()
            .name(format!("log-rewrite-{}", self.shard))
            .spawn(move || write_snapshot(&*storage, &path, &snapshot));
        match spawned {
            Ok(worker) => {
                rewrite.worker = Some(worker);
                rewrite.snapshot_len = snapshot_len;
                Ok(())
            }
            Err(e) => {
                self.rewrite = None;
                Err(e)
            }
        }
    }

    /// Advances a rewrite whose background write is done. If the records kept since it began
    /// that are already in the old file exceed the catch-up size, another background round
    /// appends and syncs them to the new file (up to `CATCH_UP_ROUNDS` (8) rounds). Otherwise it
    /// finishes: appends the rest of the kept records (minus those still buffered, which the
    /// next flush writes), syncs, renames over the old log, syncs the directory and switches
    /// to the new file, clearing a failure. `Some` when a rewrite ended, ok or not; `None`
    /// while running or idle. Blocks only for that last, short write and two syncs.
    ///
    /// If it fails before the rename, the old log stays in use, complete. If only the
    /// directory sync fails, the new file is in use but the log is failed (a crash could
    /// bring the old name back), so nothing is acknowledged until another rewrite succeeds.
    pub fn poll_rewrite(&mut self) -> Option<io::Result<RewriteReport>> {
        let rewrite = self.rewrite.as_mut()?;
        if !rewrite.worker.as_ref()?.is_finished() {
            return None;
        }
        let written = rewrite
            .worker
            .take()
            .ok_or_else(|| io::Error::other("the log rewrite had no snapshot"))
            .and_then(|w| {
                w.join()
                    .unwrap_or_else(|_| Err(io::Error::other("the log rewrite thread panicked")))
            });
        let file = match written {
            Ok(_) if rewrite.abandoned => Err(io::Error::other(
                "log rewrite abandoned: its snapshot holds records whose flush failed",
            )),
            Ok(file) => Ok(file),
            Err(e) => Err(with_path(e, "rewriting", &self.rewrite_path)),
        };
        let file = match file {
            Ok(file) => file,
            Err(e) => return Some(self.abandon_rewrite(e)),
        };
        let unwritten = self.buf.len().saturating_sub(rewrite.pre_begin);
        let ready = rewrite.tail.len().saturating_sub(unwritten);
        if ready > self.catch_up_bytes && rewrite.rounds < CATCH_UP_ROUNDS {
            // Hand over the kept records without copying them; keep only the unwritten suffix.
            let mut chunk = std::mem::take(&mut rewrite.tail);
            rewrite.tail = chunk.split_off(ready);
            let spawned = thread::Builder::new()
                .name(format!("log-rewrite-{}", self.shard))
                .spawn(move || catch_up(file, &chunk));
            match spawned {
                Ok(worker) => {
                    rewrite.worker = Some(worker);
                    rewrite.caught_up += ready as u64;
                    rewrite.rounds += 1;
                    return None;
                }
                Err(e) => return Some(self.abandon_rewrite(e)),
            }
        }
        let rewrite = self.rewrite.take()?;
        Some(self.switch(file, &rewrite))
    }

    /// Sets the size of kept records above which a rewrite copies them in a background round
    /// (tests use tiny logs).
    #[cfg(test)]
    pub(crate) fn set_catch_up_bytes(&mut self, bytes: usize) {
        self.catch_up_bytes = bytes;
    }

    /// Whether a rewrite is running.
    pub fn rewrite_in_progress(&self) -> bool {
        self.rewrite.is_some()
    }

    fn switch(
        &mut self,
        mut file: Box<dyn LogFile>,
        rewrite: &Rewrite,
    ) -> io::Result<RewriteReport> {
        let switch_started = Instant::now();
        // The buffer holds, after `pre_begin` stale bytes, a suffix of `tail` not yet
        // written anywhere; the rest of `tail` went to the old file and must go to the new.
        let unwritten = self.buf.len().saturating_sub(rewrite.pre_begin);
        let tail = &rewrite.tail;
        let copied = tail
            .get(..tail.len().saturating_sub(unwritten))
            .unwrap_or_default();
        let prepared = (if copied.is_empty() {
            Ok(())
        } else {
            file.write_all(copied)
        })
        .and_then(|()| file.sync_data())
        .and_then(|()| self.storage.rename(&self.rewrite_path, &self.path));
        if let Err(e) = prepared {
            self.discard_rewrite_file();
            return Err(with_path(e, "rewriting", &self.rewrite_path));
        }
        // From here the new file is the log, whatever happens next.
        let tail_len = rewrite.caught_up + copied.len() as u64;
        let report = RewriteReport {
            old_len: self.file_len,
            new_len: rewrite.snapshot_len + tail_len,
            snapshot_len: rewrite.snapshot_len,
            tail_len,
            elapsed: rewrite.started.elapsed(),
            rounds: rewrite.rounds,
            switch: Duration::ZERO,
        };
        let old = std::mem::replace(&mut self.file, file);
        close_in_background(old);
        self.file_len = report.new_len;
        self.unsynced = false;
        self.buf.drain(..rewrite.pre_begin.min(self.buf.len()));
        match self.storage.sync_dir(&self.shard_dir) {
            Ok(()) => {
                self.failed = false;
                Ok(RewriteReport {
                    switch: switch_started.elapsed(),
                    ..report
                })
            }
            Err(e) => {
                self.failed = true;
                Err(with_path(e, "syncing", &self.shard_dir))
            }
        }
    }

    /// Empties the buffer after its records were written.
    fn clear_buffer(&mut self) {
        self.buf.clear();
        if self.buf.capacity() > BUFFER_SHRINK {
            self.buf = Vec::with_capacity(BUFFER_CAPACITY);
        }
        if let Some(rewrite) = &mut self.rewrite {
            rewrite.pre_begin = 0;
        }
    }

    /// Drops the buffered batch after a failed flush, from the running rewrite too.
    fn forget_batch(&mut self) {
        if let Some(rewrite) = &mut self.rewrite {
            let since_begin = self.buf.len().saturating_sub(rewrite.pre_begin);
            rewrite
                .tail
                .truncate(rewrite.tail.len().saturating_sub(since_begin));
            if rewrite.pre_begin > 0 {
                rewrite.abandoned = true;
            }
        }
        self.clear_buffer();
    }

    /// Ends a running rewrite that failed: the old log stays in use.
    fn abandon_rewrite(&mut self, e: io::Error) -> io::Result<RewriteReport> {
        self.rewrite = None;
        self.discard_rewrite_file();
        Err(e)
    }

    fn discard_rewrite_file(&self) {
        if let Err(e) = self.storage.remove_file(&self.rewrite_path)
            && e.kind() != io::ErrorKind::NotFound
        {
            tracing::warn!(path = %self.rewrite_path.display(), error = %e, "could not remove a failed log rewrite");
        }
    }
}

impl Drop for ShardLog {
    /// Waits for a running rewrite's background write and removes its file, so that no
    /// thread is still writing `appendonly.log.rewrite` when the shard's log is opened again.
    fn drop(&mut self) {
        if let Some(rewrite) = self.rewrite.take() {
            if let Some(worker) = rewrite.worker {
                let _ = worker.join();
            }
            self.discard_rewrite_file();
        }
    }
}

fn failed_error() -> io::Error {
    io::Error::other("the log failed earlier and is not written until a rewrite replaces it")
}

fn check_existing_header(storage: &dyn Storage, path: &Path) -> io::Result<()> {
    let mut head = Vec::with_capacity(FILE_HEADER_LEN);
    let file = storage.open_read(path)?;
    io::Read::read_to_end(&mut io::Read::take(file, FILE_HEADER_LEN as u64), &mut head)?;
    FileHeader::decode(&head).map(|_| ()).map_err(|e| {
        io::Error::new(
            io::ErrorKind::InvalidData,
            format!("{}: not a valid log header: {e}", path.display()),
        )
    })
}

/// A rewrite syncs its file after every this many bytes, so that the kernel never holds
/// hundreds of megabytes of its dirty pages: flushing those at once stalls every writer of the
/// disk, the shard's own log appends included (Redis's `aof-rewrite-incremental-fsync`).
const REWRITE_SYNC_BYTES: usize = 4 * 1024 * 1024;

/// Appends `bytes` to `file`, syncing after every [`REWRITE_SYNC_BYTES`] and at the end.
fn write_synced(file: &mut dyn LogFile, bytes: &[u8]) -> io::Result<()> {
    for piece in bytes.chunks(REWRITE_SYNC_BYTES) {
        file.write_all(piece)?;
        file.sync_data()?;
    }
    if bytes.is_empty() {
        file.sync_data()?;
    }
    Ok(())
}

/// Closes the replaced log on another thread. Its name now belongs to the new file, so this
/// close frees the whole old file, which for a log of hundreds of megabytes takes the file
/// system tens of milliseconds or more: too long for the shard's thread (Redis closes its old
/// AOF in a background job for the same reason). If no thread can be started, it is closed
/// here.
fn close_in_background(file: Box<dyn LogFile>) {
    let spawned = thread::Builder::new()
        .name("log-close".into())
        .spawn(move || drop(file));
    if let Err(e) = spawned {
        tracing::debug!(error = %e, "closing the old log on the shard thread");
    }
}

/// A catch-up round of a rewrite: appends kept records to the new file and syncs it.
fn catch_up(mut file: Box<dyn LogFile>, records: &[u8]) -> io::Result<Box<dyn LogFile>> {
    write_synced(&mut *file, records)?;
    Ok(file)
}

fn write_snapshot(
    storage: &dyn Storage,
    path: &Path,
    snapshot: &[u8],
) -> io::Result<Box<dyn LogFile>> {
    let mut file = storage.create(path)?;
    write_synced(&mut *file, snapshot)?;
    Ok(file)
}
