//! The durability half of a shard's loop: writing each iteration's records to the log before
//! their replies leave (group commit), failing a batch the log cannot take, and rewriting the
//! log in the background, its snapshot encoded a few table parts (slab chunks) per iteration.

use std::sync::atomic::Ordering;
use std::time::{Duration, Instant};

use slab::Slab;
use tracing::{error, info, warn};

use super::{Ack, Core, REWRITE_ENTRIES_PER_ITERATION};
use crate::config::AppendFsync;
use crate::log::ShardLog;
use crate::log::writer::SnapshotEncoder;
use crate::net::connection::Connection;
use crate::shard::mesh::Answer;
use crate::types::Error;

/// The wait after a first failed rewrite.
const MIN_REWRITE_BACKOFF: Duration = Duration::from_secs(1);
/// The longest wait between failed rewrites.
const MAX_REWRITE_BACKOFF: Duration = Duration::from_secs(60);

/// A shard's log and the state of its rewrites: owned by this step of the loop.
pub(super) struct Durable {
    /// This shard's append-only log.
    pub(super) log: ShardLog,
    /// When the log was last synced (for `everysec`).
    pub(super) last_sync: Instant,
    /// When a failed log was last asked to heal by a rewrite.
    pub(super) last_heal: Instant,
    /// Log size after the last rewrite: the base of the growth trigger.
    pub(super) rewrite_base: u64,
    /// During a rewrite, the snapshot being encoded and the next table part to encode.
    pub(super) rewrite_snapshot: Option<(SnapshotEncoder, usize)>,
    /// Completed rewrites.
    pub(super) log_rewrites: u64,
    /// Failed writes, syncs and rewrites.
    pub(super) log_errors: u64,
    /// The wait after the last failed log rewrite (zero after a success).
    pub(super) rewrite_backoff: Duration,
    /// No rewrite starts before this.
    pub(super) next_rewrite: Instant,
}

impl Durable {
    /// The state of a freshly opened (or recovered) log.
    pub(super) fn new(log: ShardLog) -> Self {
        Durable {
            rewrite_base: log.file_len(),
            log,
            last_sync: Instant::now(),
            last_heal: Instant::now(),
            rewrite_snapshot: None,
            log_rewrites: 0,
            log_errors: 0,
            rewrite_backoff: Duration::ZERO,
            next_rewrite: Instant::now(),
        }
    }
}

impl Core {
    /// Writes this iteration's records to the log and syncs them per `--appendfsync`, before
    /// any reply of theirs can leave. If the log cannot take them, the table takes them back
    /// and their replies become `-IOERR`. Also drives rewrites: healing a failed log, and
    /// compacting one that grew well past its live data.
    pub(super) fn persist(&mut self, conns: &mut Slab<Connection>, stopping: bool) {
        let policy = self.ctx.config.appendfsync;
        if let Some(done) = self.durable.log.poll_rewrite() {
            match done {
                Ok(report) => {
                    self.durable.rewrite_backoff = Duration::ZERO;
                    self.durable.log_rewrites += 1;
                    self.durable.rewrite_base = self.durable.log.file_len();
                    info!(shard = self.id, ?report, "log rewritten");
                }
                Err(e) => {
                    self.durable.log_errors += 1;
                    let retry = self.rewrite_failed();
                    warn!(shard = self.id, error = %e, retry_in_ms = retry.as_millis() as u64,
                          "log rewrite failed");
                }
            }
        }
        if !self.records.is_empty() {
            if self.durable.log.is_failed() {
                self.fail_batch(conns);
            } else if let Err(e) = self.cover_fences() {
                // A fence past the reservation cannot be acknowledged.
                self.durable.log_errors += 1;
                error!(shard = self.id, error = %e, "cannot reserve fences in the floor file");
                self.fail_batch(conns);
            } else {
                for record in self.records.drain(..) {
                    self.durable.log.append(&record);
                }
                let sync = policy == AppendFsync::Always;
                let started = std::time::Instant::now();
                let flushed = self.durable.log.flush(sync);
                if sync && flushed.is_ok() {
                    self.ctx.figures.shards[self.id]
                        .fsync
                        .record_owned(started.elapsed());
                }
                match flushed {
                    Ok(()) => {
                        self.table.commit();
                        self.acks.clear();
                    }
                    Err(e) => {
                        self.durable.log_errors += 1;
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
        let sync_due = policy == AppendFsync::Everysec
            && self.durable.last_sync.elapsed() >= Duration::from_secs(1);
        if (sync_due || stopping) && !self.durable.log.is_failed() {
            self.durable.last_sync = std::time::Instant::now();
            let started = std::time::Instant::now();
            let synced = self.durable.log.flush(true);
            if synced.is_ok() {
                self.ctx.figures.shards[self.id]
                    .fsync
                    .record_owned(started.elapsed());
            }
            if let Err(e) = synced {
                self.durable.log_errors += 1;
                error!(shard = self.id, error = %e, "cannot sync the log");
            }
        }
        self.continue_rewrite();
        if !stopping && !self.durable.log.rewrite_in_progress() {
            let heal = self.durable.log.is_failed()
                && self.durable.last_heal.elapsed() >= Duration::from_secs(1);
            let pct = u64::from(self.ctx.config.log_rewrite_percentage);
            let len = self.durable.log.file_len();
            let grown = pct > 0
                && len >= self.ctx.config.log_rewrite_min_size
                && len.saturating_sub(self.durable.rewrite_base) * 100
                    >= self.durable.rewrite_base.max(1) * pct;
            if (heal || grown) && std::time::Instant::now() >= self.durable.next_rewrite {
                self.durable.last_heal = std::time::Instant::now();
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
        if let Err(e) = self.durable.log.begin_collecting() {
            self.durable.log_errors += 1;
            let retry = self.rewrite_failed();
            warn!(shard = self.id, error = %e, retry_in_ms = retry.as_millis() as u64,
                  "cannot start a log rewrite");
            return;
        }
        let encoder = SnapshotEncoder::with_capacity(
            self.id,
            self.shards,
            self.durable.log.epoch(),
            self.ctx
                .fences
                .issued
                .load(std::sync::atomic::Ordering::Relaxed),
            self.table.len().saturating_mul(72),
        );
        self.durable.rewrite_snapshot = Some((encoder, 0));
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
        let Some((mut encoder, mut segment)) = self.durable.rewrite_snapshot.take() else {
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
            self.durable.rewrite_snapshot = Some((encoder, segment));
        } else if let Err(e) = self.durable.log.submit_snapshot(encoder.finish()) {
            self.durable.log_errors += 1;
            let retry = self.rewrite_failed();
            warn!(shard = self.id, error = %e, retry_in_ms = retry.as_millis() as u64,
                  "cannot write a log rewrite");
        }
    }

    /// A rewrite failed (out of descriptors or space, say): the next one waits, 1 s after the
    /// first failure, doubling up to a minute, so a failing rewrite does not re-encode the
    /// whole table on every loop pass. Returns the wait.
    fn rewrite_failed(&mut self) -> Duration {
        self.durable.rewrite_backoff =
            (self.durable.rewrite_backoff * 2).clamp(MIN_REWRITE_BACKOFF, MAX_REWRITE_BACKOFF);
        self.durable.next_rewrite = std::time::Instant::now() + self.durable.rewrite_backoff;
        self.durable.rewrite_backoff
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
                    if let Some(entry) = self.callers.external_replies.get_mut(index) {
                        entry.1 = Answer::Outcome(Error::LogFailed.into());
                        entry.2 = None;
                    }
                }
            }
        }
    }
}
