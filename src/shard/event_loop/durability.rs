//! The durability half of a shard's loop: writing each iteration's records to the log before
//! their replies leave (group commit), failing a batch the log cannot take, and rewriting the
//! log in the background, its snapshot encoded a few table parts (slab chunks) per iteration.

use std::sync::atomic::Ordering;
use std::time::Duration;

use slab::Slab;
use tracing::{error, info, warn};

use super::{Ack, Core, REWRITE_ENTRIES_PER_ITERATION};
use crate::config::AppendFsync;
use crate::log::writer::SnapshotEncoder;
use crate::net::connection::Connection;
use crate::shard::mesh::Answer;
use crate::types::Error;

/// The wait after a first failed rewrite.
const MIN_REWRITE_BACKOFF: Duration = Duration::from_secs(1);
/// The longest wait between failed rewrites.
const MAX_REWRITE_BACKOFF: Duration = Duration::from_secs(60);

impl Core {
    /// Writes this iteration's records to the log and syncs them per `--appendfsync`, before
    /// any reply of theirs can leave. If the log cannot take them, the table takes them back
    /// and their replies become `-IOERR`. Also drives rewrites: healing a failed log, and
    /// compacting one that grew well past its live data.
    pub(super) fn persist(&mut self, conns: &mut Slab<Connection>, stopping: bool) {
        let policy = self.ctx.config.appendfsync;
        if let Some(done) = self.log.poll_rewrite() {
            match done {
                Ok(report) => {
                    self.rewrite_backoff = Duration::ZERO;
                    self.log_rewrites += 1;
                    self.rewrite_base = self.log.file_len();
                    info!(shard = self.id, ?report, "log rewritten");
                }
                Err(e) => {
                    self.log_errors += 1;
                    let retry = self.rewrite_failed();
                    warn!(shard = self.id, error = %e, retry_in_ms = retry.as_millis() as u64,
                          "log rewrite failed");
                }
            }
        }
        if !self.records.is_empty() {
            if self.log.is_failed() {
                self.fail_batch(conns);
            } else if let Err(e) = self.cover_fences() {
                // A fence past the reservation cannot be acknowledged.
                self.log_errors += 1;
                error!(shard = self.id, error = %e, "cannot reserve fences in the floor file");
                self.fail_batch(conns);
            } else {
                for record in self.records.drain(..) {
                    self.log.append(&record);
                }
                let sync = policy == AppendFsync::Always;
                let started = std::time::Instant::now();
                let flushed = self.log.flush(sync);
                if sync && flushed.is_ok() {
                    self.ctx.shards[self.id]
                        .fsync
                        .record_owned(started.elapsed());
                }
                match flushed {
                    Ok(()) => {
                        self.table.commit();
                        self.acks.clear();
                    }
                    Err(e) => {
                        self.log_errors += 1;
                        error!(shard = self.id, error = %e,
                               "cannot write the log: refusing writes until it can be rewritten");
                        self.fail_batch(conns);
                    }
                }
            }
        } else {
            self.table.commit();
            self.acks.clear();
        }
        let sync_due =
            policy == AppendFsync::Everysec && self.last_sync.elapsed() >= Duration::from_secs(1);
        if (sync_due || stopping) && !self.log.is_failed() {
            self.last_sync = std::time::Instant::now();
            let started = std::time::Instant::now();
            let synced = self.log.flush(true);
            if synced.is_ok() {
                self.ctx.shards[self.id]
                    .fsync
                    .record_owned(started.elapsed());
            }
            if let Err(e) = synced {
                self.log_errors += 1;
                error!(shard = self.id, error = %e, "cannot sync the log");
            }
        }
        self.continue_rewrite();
        if !stopping && !self.log.rewrite_in_progress() {
            let heal = self.log.is_failed() && self.last_heal.elapsed() >= Duration::from_secs(1);
            let pct = u64::from(self.ctx.config.log_rewrite_percentage);
            let len = self.log.file_len();
            let grown = pct > 0
                && len >= self.ctx.config.log_rewrite_min_size
                && len.saturating_sub(self.rewrite_base) * 100 >= self.rewrite_base.max(1) * pct;
            if (heal || grown) && std::time::Instant::now() >= self.next_rewrite {
                self.last_heal = std::time::Instant::now();
                self.begin_rewrite();
            }
        }
    }

    /// Starts rewriting the log without stalling the shard: the log keeps every record
    /// appended from now on for the new file, and [`Core::continue_rewrite`] encodes the
    /// snapshot a few table parts per loop iteration, each from committed state, then
    /// hands it to the log's background writer. The snapshot followed by the kept records
    /// ends with each id's current state, since records are assignments.
    fn begin_rewrite(&mut self) {
        if let Err(e) = self.log.begin_collecting() {
            self.log_errors += 1;
            let retry = self.rewrite_failed();
            warn!(shard = self.id, error = %e, retry_in_ms = retry.as_millis() as u64,
                  "cannot start a log rewrite");
            return;
        }
        let encoder = SnapshotEncoder::with_capacity(
            self.id,
            self.shards,
            self.log.epoch(),
            self.ctx
                .fences
                .issued
                .load(std::sync::atomic::Ordering::Relaxed),
            self.table.len().saturating_mul(72),
        );
        self.rewrite_snapshot = Some((encoder, 0));
        info!(
            shard = self.id,
            entries = self.table.len(),
            "log rewrite started"
        );
    }

    /// Encodes the next table parts of a running rewrite's snapshot, about
    /// [`REWRITE_ENTRIES_PER_ITERATION`] entries per loop iteration; after the last one, hands
    /// the snapshot to the log's background writer.
    fn continue_rewrite(&mut self) {
        let Some((mut encoder, mut segment)) = self.rewrite_snapshot.take() else {
            return;
        };
        let mut done = 0;
        while segment < self.table.parts() && done < REWRITE_ENTRIES_PER_ITERATION {
            for record in self.table.part(segment) {
                encoder.push(&record);
                done += 1;
            }
            segment += 1;
        }
        if segment < self.table.parts() {
            self.rewrite_snapshot = Some((encoder, segment));
        } else if let Err(e) = self.log.submit_snapshot(encoder.finish()) {
            self.log_errors += 1;
            let retry = self.rewrite_failed();
            warn!(shard = self.id, error = %e, retry_in_ms = retry.as_millis() as u64,
                  "cannot write a log rewrite");
        }
    }

    /// A rewrite failed (out of descriptors or space, say): the next one waits, 1 s after the
    /// first failure, doubling up to a minute, so a failing rewrite does not re-encode the
    /// whole table on every loop pass. Returns the wait.
    fn rewrite_failed(&mut self) -> Duration {
        self.rewrite_backoff =
            (self.rewrite_backoff * 2).clamp(MIN_REWRITE_BACKOFF, MAX_REWRITE_BACKOFF);
        self.next_rewrite = std::time::Instant::now() + self.rewrite_backoff;
        self.rewrite_backoff
    }

    /// Takes back this iteration's changes and fails the replies that depended on them.
    fn fail_batch(&mut self, conns: &mut Slab<Connection>) {
        self.records.clear();
        self.table.roll_back();
        self.fail_acks(conns);
    }

    /// Makes sure every fence handed out so far is reserved in the floor file, so that no
    /// repair of a log can make fences go back after this batch is acknowledged.
    fn cover_fences(&self) -> std::io::Result<()> {
        match self.ctx.fences.reservation.get() {
            Some(reservation) => reservation.cover(self.ctx.fences.issued.load(Ordering::Relaxed)),
            None => Ok(()),
        }
    }

    /// Turns every reply that depends on this iteration's records into `-IOERR`.
    fn fail_acks(&mut self, conns: &mut Slab<Connection>) {
        for ack in self.acks.drain(..) {
            match ack {
                Ack::Local { slot, conn_id, seq } => {
                    if let Some(c) = conns.get_mut(slot as usize)
                        && c.session.id == conn_id
                    {
                        c.output.replace(seq, Error::LogFailed.into());
                    }
                }
                Ack::Remote { shard, index } => {
                    let failed = Answer::Outcome(Error::LogFailed.into());
                    self.mesh.replace_answer(shard, index, failed);
                }
                Ack::External { index } => {
                    if let Some(entry) = self.external_replies.get_mut(index) {
                        entry.1 = Answer::Outcome(Error::LogFailed.into());
                        entry.2 = None;
                    }
                }
            }
        }
    }
}
