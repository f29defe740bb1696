//! A shard thread: one mio event loop that owns its connections and its slice of the table.
//!
//! One iteration, in Redis's `beforeSleep` order:
//! 1. poll for readiness (sockets, the mailbox waker);
//! 2. read sockets, decode requests, run local commands, queue commands for other shards;
//! 3. take work from the inbox (new connections, HTTP commands) and the mesh (requests from
//!    other shards, replies to ours);
//! 4. publish this shard's figures;
//! 5. send this iteration's batches to other shards, waking each destination once;
//! 6. release replies to outside callers and write sockets.
//!
//! Replies are values in each connection's slot queue until step 6, so a later step that must
//! happen before any reply leaves (syncing the log) slots in before it.

use std::io;
use std::sync::Arc;
use std::sync::atomic::Ordering;
use std::time::Duration;

use mio::{Events, Poll, Token};
use slab::Slab;
use tracing::{debug, error, info, warn};

use crate::clock::Clock;
use crate::command::admin::{self, NOAUTH, Session};
use crate::command::{ApplyCtx, Command, Unlock, lookup, unknown_command, wrong_arity};
use crate::config::AppendFsync;
use crate::context::ServerContext;
use crate::keys::KeyGenerator;
use crate::log::LogRecord;
use crate::log::ShardLog;
use crate::log::writer::SnapshotEncoder;
use crate::metrics::commands::{Outcome, UNKNOWN};
use crate::net::connection::Connection;
use crate::protocol::{Args, Decoded, KeyBytes, Reply, RequestDecoder};
use crate::shard::mesh::{ConnRef, Endpoint, External, Message, ReplyFn};
use crate::shard::segmented::SEGMENTS;
use crate::shard::table::{Delivery, Id, LockTable};
use crate::shard::{Origin, ShardId, shard_for};

mod client_limits;
mod drain;
mod observe;

use client_limits::ClientLimits;
use observe::{Chaos, Client};

/// The token of the mailbox waker; connections use their slab index.
pub const WAKER_TOKEN: Token = Token(usize::MAX);

/// About how many entries a running log rewrite appends per loop iteration.
const REWRITE_ENTRIES_PER_ITERATION: usize = 16 * 1024;

/// Most expirations and wait time-outs handled per loop iteration, so that a million leases
/// running out together never stall the shard for long.
const EXPIRY_BUDGET: usize = 4096;

/// A reply that depends on this iteration's log records: if they cannot be stored, it must
/// not go out as it is.
#[derive(Clone, Copy, Debug)]
enum Ack {
    /// A reply slot of one of this shard's connections.
    Local { slot: u32, conn_id: u64, seq: u64 },
    /// The message at `index` in this iteration's outbox to `shard`.
    Remote { shard: ShardId, index: usize },
    /// The entry at `index` in `external_replies`.
    External { index: usize },
}

/// The reply to a change the log could not store, and to every reply that may have seen it.
/// The change was taken back in memory; if its bytes reached the disk anyway and the server
/// crashes before the log is rewritten, recovery may still bring it back, so the outcome is
/// unknown, as after a lost reply.
const IOERR: Reply = Reply::error(
    "IOERR the log could not be written: the change was taken back, but its outcome is unknown until the log is rewritten",
);

/// A reply to an outside caller, and the grant it carries (released if the caller has gone).
type ExternalReply = (ReplyFn, Reply, Option<(Id, KeyBytes)>);

/// The parts of a shard that commands touch, apart from the connections.
struct Core {
    id: ShardId,
    shards: usize,
    table: LockTable,
    keys: KeyGenerator,
    mesh: Endpoint,
    ctx: Arc<ServerContext>,
    now_ms: u64,
    commands: u64,
    forwarded: u64,
    /// This iteration's changes, in order, for the log.
    records: Vec<LogRecord>,
    /// Replies owed to waiters, produced while running commands and sweeps.
    deliveries: Vec<Delivery>,
    /// Outside callers whose command waits (LOCK ... WAIT over HTTP).
    parked_external: Slab<ReplyFn>,
    /// Replies to outside callers, released after this iteration's writes are safe to send.
    external_replies: Vec<ExternalReply>,
    /// Locks granted to waiters that had gone; released at the next iteration.
    orphaned: Vec<(Id, KeyBytes)>,
    /// Replies that depend on this iteration's records.
    acks: Vec<Ack>,
    /// This shard's append-only log.
    log: ShardLog,
    /// When the log was last synced (for `everysec`).
    last_sync: std::time::Instant,
    /// When a failed log was last asked to heal by a rewrite.
    last_heal: std::time::Instant,
    /// Log size after the last rewrite: the base of the growth trigger.
    rewrite_base: u64,
    /// During a rewrite, the snapshot being encoded and the next table segment to encode.
    rewrite_snapshot: Option<(SnapshotEncoder, usize)>,
    log_rewrites: u64,
    log_errors: u64,
    /// Learning mode's generator (off unless `--chaos-rate`).
    chaos: Chaos,
    /// When the previous command of this batch ended (commands are timed lap by lap).
    mark: std::time::Instant,
}

/// One shard thread's state.
pub struct Shard<C: Clock> {
    poll: Poll,
    conns: Slab<Connection>,
    decoder: RequestDecoder,
    core: Core,
    clock: C,
    /// Connections with replies to write at the end of this iteration.
    dirty: Vec<usize>,
    /// Connections whose reading was paused and may resume.
    resume: Vec<usize>,
    incoming: Vec<(ShardId, Message)>,
    /// A shutdown was asked for: this is the last iteration.
    stopping: bool,
    /// Query, output and idle limits for this shard's connections.
    limits: ClientLimits,
}

impl<C: Clock> Shard<C> {
    /// A shard over `poll` (whose registry owns the waker in `mesh`), serving `table` (as
    /// recovered) and appending to `log`.
    pub fn new(
        poll: Poll,
        mesh: Endpoint,
        ctx: Arc<ServerContext>,
        clock: C,
        keys: KeyGenerator,
        table: LockTable,
        log: ShardLog,
    ) -> Self {
        let shards = ctx.shards.len();
        let rewrite_base = log.file_len();
        let chaos = Chaos::new(ctx.config.chaos_rate, ctx.config.chaos_seed, mesh.id);
        let limits = ClientLimits::from_config(&ctx.config);
        Shard {
            poll,
            conns: Slab::new(),
            decoder: RequestDecoder::new(limits.decoder),
            core: Core {
                id: mesh.id,
                shards,
                table,
                keys,
                mesh,
                ctx,
                now_ms: 0,
                commands: 0,
                forwarded: 0,
                records: Vec::new(),
                deliveries: Vec::new(),
                parked_external: Slab::new(),
                external_replies: Vec::new(),
                orphaned: Vec::new(),
                acks: Vec::new(),
                log,
                last_sync: std::time::Instant::now(),
                last_heal: std::time::Instant::now(),
                rewrite_base,
                rewrite_snapshot: None,
                log_rewrites: 0,
                log_errors: 0,
                chaos,
                mark: std::time::Instant::now(),
            },
            clock,
            dirty: Vec::new(),
            resume: Vec::new(),
            incoming: Vec::new(),
            stopping: false,
            limits,
        }
    }

    /// Runs the loop until the process ends.
    pub fn run(mut self) -> io::Result<()> {
        let mut events = Events::with_capacity(1024);
        let mut stalled = false;
        let mut more_due = false;
        // The recovered figures count from the start, not from the first event.
        self.publish_stats();
        loop {
            let timeout = if !self.resume.is_empty() || more_due || !self.core.orphaned.is_empty() {
                Some(Duration::ZERO)
            } else if stalled || self.stopping {
                Some(Duration::from_millis(1))
            } else {
                let next = self.core.table.next_deadline().map(|at| {
                    let now = self.clock.now_ms();
                    Duration::from_millis(at.saturating_sub(now).saturating_add(1))
                });
                // Background log work needs the loop to come round even when idle.
                let log = &self.core.log;
                let cap = if log.rewrite_in_progress() {
                    Some(Duration::from_millis(5))
                } else if log.is_failed()
                    || self.core.ctx.config.appendfsync == AppendFsync::Everysec
                {
                    Some(Duration::from_secs(1))
                } else {
                    None
                };
                let cap = match (cap, self.idle_poll_cap()) {
                    (Some(a), Some(b)) => Some(a.min(b)),
                    (a, b) => a.or(b),
                };
                match (next, cap) {
                    (Some(a), Some(b)) => Some(a.min(b)),
                    (a, b) => a.or(b),
                }
            };
            if let Err(e) = self.poll.poll(&mut events, timeout)
                && e.kind() != io::ErrorKind::Interrupted
            {
                return Err(e);
            }
            self.core.now_ms = self.clock.now_ms();
            self.close_idle();

            for (id, key) in std::mem::take(&mut self.core.orphaned) {
                self.core.release_orphan(id, key);
            }
            more_due = self.core.expire_due() >= EXPIRY_BUDGET;
            for idx in std::mem::take(&mut self.resume) {
                self.serve(idx);
            }
            for event in events.iter() {
                if event.token() == WAKER_TOKEN {
                    continue;
                }
                let idx = event.token().0;
                if event.is_readable() || event.is_read_closed() || event.is_error() {
                    self.serve(idx);
                }
                if event.is_writable() {
                    self.mark_dirty(idx);
                }
            }
            self.take_external();
            self.take_messages();
            if self.stopping {
                self.core.cancel_waits();
            }
            self.deliver();
            self.core.persist(&mut self.conns, self.stopping);

            self.publish_stats();
            stalled = self.core.mesh.flush();
            for (done, reply, grant) in self.core.external_replies.drain(..) {
                if !done(reply)
                    && let Some(grant) = grant
                {
                    self.core.orphaned.push(grant);
                }
            }
            for idx in std::mem::take(&mut self.dirty) {
                self.write(idx);
            }
            if self.stopping && self.drained(stalled) {
                debug!(shard = self.core.id, "shard stopped");
                return Ok(());
            }
        }
    }

    /// Reads and runs requests from connection `idx` until its socket is drained, its input is
    /// incomplete, or it is backlogged.
    fn serve(&mut self, idx: usize) {
        if self.stopping {
            // A stopping shard reads no more requests.
            return;
        }
        let Some(conn) = self.conns.get_mut(idx) else {
            return;
        };
        let cref = ConnRef {
            slot: idx as u32,
            conn_id: conn.session.id,
        };
        loop {
            run_requests(&mut self.core, &mut self.decoder, conn, cref);
            if conn.paused || conn.closing {
                break;
            }
            if conn.input.len() > self.limits.query_buffer {
                self.query_buffer_exceeded(idx);
                break;
            }
            match conn.input.read_from(&mut conn.stream) {
                Ok(0) => {
                    // The peer closed: nothing more can be read, and nobody reads replies.
                    self.close(idx);
                    return;
                }
                Ok(_) => conn.last_active_ms = self.core.now_ms,
                Err(e) if e.kind() == io::ErrorKind::WouldBlock => break,
                Err(e) if e.kind() == io::ErrorKind::Interrupted => {}
                Err(e) => {
                    debug!(client = conn.session.id, error = %e, "read failed");
                    self.close(idx);
                    return;
                }
            }
        }
        self.mark_dirty(idx);
    }

    fn mark_dirty(&mut self, idx: usize) {
        if let Some(conn) = self.conns.get_mut(idx)
            && !conn.dirty
        {
            conn.dirty = true;
            self.dirty.push(idx);
        }
    }

    /// Encodes the ready replies of connection `idx` and writes what the socket takes.
    fn write(&mut self, idx: usize) {
        let Some(conn) = self.conns.get_mut(idx) else {
            return;
        };
        conn.dirty = false;
        conn.output.encode_ready();
        if conn.output.hung_up() {
            conn.closing = true;
        }
        let sent = conn.output.sent();
        match conn.output.write_to(&mut conn.stream) {
            Ok(_) => {}
            Err(e) => {
                debug!(client = conn.session.id, error = %e, "write failed");
                self.close(idx);
                return;
            }
        }
        if conn.output.sent() != sent {
            conn.last_active_ms = self.core.now_ms;
        }
        if self.output_buffer_exceeded(idx) {
            return;
        }
        let Some(conn) = self.conns.get_mut(idx) else {
            return;
        };
        if conn.closing && conn.output.is_idle() {
            self.close(idx);
            return;
        }
        if conn.paused && !conn.output.is_backlogged() {
            conn.paused = false;
            self.resume.push(idx);
        }
    }

    fn close(&mut self, idx: usize) {
        if self.conns.contains(idx) {
            let mut conn = self.conns.remove(idx);
            let _ = self.poll.registry().deregister(&mut conn.stream);
            self.core.ctx.clients.fetch_sub(1, Ordering::Relaxed);
            debug!(client = conn.session.id, "connection closed");
        }
    }

    fn take_external(&mut self) {
        let mut timing = false;
        while let Ok(work) = self.core.mesh.inbox.try_recv() {
            if !timing && matches!(work, External::Command { .. }) {
                self.core.start_laps();
                timing = true;
            }
            match work {
                External::Connection(_) if self.stopping => {
                    // Accepted just before the shutdown: closed unserved.
                    self.core.ctx.clients.fetch_sub(1, Ordering::Relaxed);
                }
                External::Connection(accepted) => self.adopt(accepted),
                External::Shutdown => self.stopping = true,
                External::Command { cmd, done } => {
                    let slot = self.core.parked_external.vacant_key() as u64;
                    let (reply, unlogged) =
                        self.core
                            .run_observed(cmd, Origin::External(slot), Client::Http);
                    if matches!(reply, Reply::Parked) {
                        self.core.parked_external.insert(done);
                    } else {
                        if unlogged {
                            let index = self.core.external_replies.len();
                            self.core.acks.push(Ack::External { index });
                        }
                        self.core.external_replies.push((done, reply, None));
                    }
                }
            }
        }
    }

    fn take_messages(&mut self) {
        let mut incoming = std::mem::take(&mut self.incoming);
        self.core.mesh.drain(|from, msg| incoming.push((from, msg)));
        if !incoming.is_empty() {
            self.core.start_laps();
        }
        for (from, msg) in incoming.drain(..) {
            match msg {
                Message::Request { conn, seq, cmd } => {
                    let origin = Origin::Conn {
                        shard: from,
                        conn,
                        seq,
                    };
                    let (reply, unlogged) =
                        self.core.run_observed(cmd, origin, Client::Shard(from));
                    if !matches!(reply, Reply::Parked) {
                        if unlogged {
                            let index = self.core.mesh.queued(from);
                            self.core.acks.push(Ack::Remote { shard: from, index });
                        }
                        let msg = Message::Reply {
                            conn,
                            seq,
                            reply,
                            grant: None,
                        };
                        self.core.mesh.push(from, msg);
                    }
                }
                Message::Reply {
                    conn,
                    seq,
                    reply,
                    grant,
                } => {
                    if !self.fill(conn, seq, reply)
                        && let Some(grant) = grant
                    {
                        // The waiter's connection has gone: give the lock back to its owner.
                        let (id, key) = *grant;
                        let cmd = Command::Unlock(Unlock { id, key: Some(key) });
                        let msg = Message::Request { conn, seq, cmd };
                        self.core.mesh.push(from, msg);
                    }
                }
            }
        }
        self.incoming = incoming;
    }

    /// Fills a reply slot of one of this shard's connections. Returns false if the connection
    /// has gone (or the slot is not pending).
    fn fill(&mut self, conn: ConnRef, seq: u64, reply: Reply) -> bool {
        let idx = conn.slot as usize;
        let filled = match self.conns.get_mut(idx) {
            Some(c) if c.session.id == conn.conn_id => c.output.fill(seq, reply),
            _ => false,
        };
        if filled {
            self.mark_dirty(idx);
        }
        filled
    }

    /// Routes the replies owed to waiters to their connections, shards and callers.
    fn deliver(&mut self) {
        while !self.core.deliveries.is_empty() {
            for d in std::mem::take(&mut self.core.deliveries) {
                match d.origin {
                    Origin::Conn { shard, conn, seq } if shard == self.core.id => {
                        if self.fill(conn, seq, d.reply) {
                            self.core.acks.push(Ack::Local {
                                slot: conn.slot,
                                conn_id: conn.conn_id,
                                seq,
                            });
                        } else if let Some((id, key)) = d.grant {
                            self.core.release_orphan(id, key);
                        }
                    }
                    Origin::Conn { shard, conn, seq } => {
                        let index = self.core.mesh.queued(shard);
                        self.core.acks.push(Ack::Remote { shard, index });
                        let msg = Message::Reply {
                            conn,
                            seq,
                            reply: d.reply,
                            grant: d.grant.map(Box::new),
                        };
                        self.core.mesh.push(shard, msg);
                    }
                    Origin::External(slot) => {
                        if let Some(done) = self.core.parked_external.try_remove(slot as usize) {
                            let index = self.core.external_replies.len();
                            self.core.acks.push(Ack::External { index });
                            self.core.external_replies.push((done, d.reply, d.grant));
                        }
                    }
                    Origin::Nobody => {
                        if let Some((id, key)) = d.grant {
                            self.core.release_orphan(id, key);
                        }
                    }
                }
            }
        }
    }

    fn publish_stats(&mut self) {
        let stats = &self.core.ctx.shards[self.core.id];
        let table = &self.core.table;
        let publish = |cell: &std::sync::atomic::AtomicU64, value: u64| {
            cell.store(value, Ordering::Relaxed);
        };
        publish(&stats.locked, table.locked() as u64);
        publish(&stats.completed, table.completed() as u64);
        publish(&stats.waiters, table.waiting() as u64);
        publish(&stats.expired, table.counters.expired);
        publish(&stats.reaped, table.counters.reaped);
        publish(&stats.mismatches, table.counters.mismatches);
        publish(&stats.commands_processed, self.core.commands);
        publish(&stats.forwarded, self.core.forwarded);
        publish(&stats.messages_sent, self.core.mesh.sent);
        publish(&stats.messages_received, self.core.mesh.received);
        publish(&stats.log_bytes, self.core.log.file_len());
        publish(&stats.log_rewrites, self.core.log_rewrites);
        publish(&stats.log_errors, self.core.log_errors);
        publish(&stats.log_failed, u64::from(self.core.log.is_failed()));
    }
}

impl Core {
    /// Splits the core into the table and the context commands and sweeps run in.
    fn table_and_ctx(&mut self, origin: Origin) -> (&mut LockTable, ApplyCtx<'_>) {
        let Core {
            table,
            keys,
            ctx,
            records,
            deliveries,
            now_ms,
            ..
        } = self;
        let apply = ApplyCtx {
            now_ms: *now_ms,
            keys,
            fences: &ctx.fences,
            origin,
            records,
            deliveries,
        };
        (table, apply)
    }

    /// Runs a lock command whose id this shard owns, on behalf of `origin`. Returns the reply
    /// and whether it depends on changes not yet in the log: the command's own, or any earlier
    /// one of this iteration that it may have seen (a refusal, a STATUS). Such a reply must not
    /// leave if the log cannot take this iteration's records.
    fn apply_local(&mut self, cmd: Command, origin: Origin) -> (Reply, bool) {
        if cmd.is_write() && self.log.is_failed() {
            return (IOERR, false);
        }
        let (table, mut ctx) = self.table_and_ctx(origin);
        let reply = cmd.apply(table, &mut ctx);
        (reply, !self.records.is_empty())
    }

    /// Writes this iteration's records to the log and syncs them per `--appendfsync`, before
    /// any reply of theirs can leave. If the log cannot take them, the table takes them back
    /// and their replies become `-IOERR`. Also drives rewrites: healing a failed log, and
    /// compacting one that grew well past its live data.
    fn persist(&mut self, conns: &mut Slab<Connection>, stopping: bool) {
        let policy = self.ctx.config.appendfsync;
        if let Some(done) = self.log.poll_rewrite() {
            match done {
                Ok(report) => {
                    self.log_rewrites += 1;
                    self.rewrite_base = self.log.file_len();
                    info!(shard = self.id, ?report, "log rewritten");
                }
                Err(e) => {
                    self.log_errors += 1;
                    warn!(shard = self.id, error = %e, "log rewrite failed");
                }
            }
        }
        if !self.records.is_empty() {
            if self.log.is_failed() {
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
        let sync_due = match policy {
            AppendFsync::Always => false,
            AppendFsync::Everysec => self.last_sync.elapsed() >= Duration::from_secs(1),
            AppendFsync::No => false,
        };
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
            if heal || grown {
                self.last_heal = std::time::Instant::now();
                self.begin_rewrite();
            }
        }
    }

    /// Starts rewriting the log without stalling the shard: the log keeps every record
    /// appended from now on for the new file, and [`Core::continue_rewrite`] encodes the
    /// snapshot a few table segments per loop iteration, each from committed state, then
    /// hands it to the log's background writer. The snapshot followed by the kept records
    /// ends with each id's current state, since records are assignments.
    fn begin_rewrite(&mut self) {
        if let Err(e) = self.log.begin_collecting() {
            self.log_errors += 1;
            warn!(shard = self.id, error = %e, "cannot start a log rewrite");
            return;
        }
        let encoder = SnapshotEncoder::with_capacity(
            self.id,
            self.shards,
            self.log.epoch(),
            self.ctx.fences.load(std::sync::atomic::Ordering::Relaxed),
            self.table.len().saturating_mul(72),
        );
        self.rewrite_snapshot = Some((encoder, 0));
        info!(
            shard = self.id,
            entries = self.table.len(),
            "log rewrite started"
        );
    }

    /// Encodes the next table segments of a running rewrite's snapshot, about
    /// [`REWRITE_ENTRIES_PER_ITERATION`] entries per loop iteration; after the last one, hands
    /// the snapshot to the log's background writer.
    fn continue_rewrite(&mut self) {
        let Some((mut encoder, mut segment)) = self.rewrite_snapshot.take() else {
            return;
        };
        let mut done = 0;
        while segment < SEGMENTS && done < REWRITE_ENTRIES_PER_ITERATION {
            for entry in self.table.segment(segment) {
                encoder.push(&entry.as_record());
                done += 1;
            }
            segment += 1;
        }
        if segment < SEGMENTS {
            self.rewrite_snapshot = Some((encoder, segment));
        } else if let Err(e) = self.log.submit_snapshot(encoder.finish()) {
            self.log_errors += 1;
            warn!(shard = self.id, error = %e, "cannot write a log rewrite");
        }
    }

    /// Takes back this iteration's changes and fails the replies that depended on them.
    fn fail_batch(&mut self, conns: &mut Slab<Connection>) {
        self.records.clear();
        self.table.roll_back();
        self.fail_acks(conns);
    }

    /// Turns every reply that depends on this iteration's records into `-IOERR`.
    fn fail_acks(&mut self, conns: &mut Slab<Connection>) {
        for ack in self.acks.drain(..) {
            match ack {
                Ack::Local { slot, conn_id, seq } => {
                    if let Some(c) = conns.get_mut(slot as usize)
                        && c.session.id == conn_id
                    {
                        c.output.replace(seq, IOERR);
                    }
                }
                Ack::Remote { shard, index } => self.mesh.replace_reply(shard, index, IOERR),
                Ack::External { index } => {
                    if let Some(entry) = self.external_replies.get_mut(index) {
                        entry.1 = IOERR;
                        entry.2 = None;
                    }
                }
            }
        }
    }

    /// Frees expired leases, reaps old completions and times out waiters, within the budget.
    fn expire_due(&mut self) -> usize {
        let (table, mut ctx) = self.table_and_ctx(Origin::Nobody);
        table.expire_due(&mut ctx, EXPIRY_BUDGET)
    }

    /// Releases a lock that was granted to a waiter who had gone by the time it came.
    fn release_orphan(&mut self, id: Id, key: KeyBytes) {
        let cmd = Command::Unlock(Unlock { id, key: Some(key) });
        let owner = shard_for(cmd.id(), self.shards);
        if owner == self.id {
            let _ = self.apply_local(cmd, Origin::Nobody);
        } else {
            let conn = ConnRef {
                slot: u32::MAX,
                conn_id: 0,
            };
            self.mesh
                .push(owner, Message::Request { conn, seq: 0, cmd });
        }
    }

    /// Runs one decoded request from a connection of this shard.
    fn execute(&mut self, args: &Args<'_>, conn: &mut ConnParts<'_>, cref: ConnRef) {
        self.commands += 1;
        let protocol = conn.session.protocol;
        let name = args.get(0).unwrap_or_default();
        let stats = &self.ctx.shards[self.id].commands;
        let Some(spec) = lookup(name) else {
            stats.count(UNKNOWN, Outcome::Rejected);
            conn.push(unknown_command(args), protocol);
            return;
        };
        if !spec.arity_ok(args.len()) {
            stats.count(spec.kind.index(), Outcome::Rejected);
            conn.push(wrong_arity(spec.name), protocol);
            return;
        }
        if !conn.session.authenticated && !spec.allowed_before_auth() {
            stats.count(spec.kind.index(), Outcome::Rejected);
            conn.push(NOAUTH, protocol);
            return;
        }
        match Command::parse(spec.kind, args, &self.ctx.limits) {
            Some(Ok(cmd)) => {
                let owner = shard_for(cmd.id(), self.shards);
                if owner == self.id {
                    let origin = Origin::Conn {
                        shard: self.id,
                        conn: cref,
                        seq: conn.output.next_seq(),
                    };
                    let seq = conn.output.next_seq();
                    match self.run_observed(cmd, origin, Client::Session(conn.session)) {
                        (Reply::Parked, _) => {
                            conn.output.push_pending(protocol);
                        }
                        (reply, unlogged) => {
                            conn.push(reply, protocol);
                            if unlogged {
                                self.acks.push(Ack::Local {
                                    slot: cref.slot,
                                    conn_id: cref.conn_id,
                                    seq,
                                });
                            }
                        }
                    }
                } else {
                    let seq = conn.output.push_pending(protocol);
                    self.forwarded += 1;
                    self.mesh.push(
                        owner,
                        Message::Request {
                            conn: cref,
                            seq,
                            cmd,
                        },
                    );
                }
            }
            Some(Err(reply)) => {
                let stats = &self.ctx.shards[self.id].commands;
                stats.count(spec.kind.index(), Outcome::of(&reply));
                conn.push(reply, protocol);
            }
            None => {
                let reply = admin::run(spec.kind, args, conn.session, &self.ctx);
                let kind = Some(spec.kind);
                let elapsed = self.lap();
                self.observe(
                    spec.kind.index(),
                    Outcome::of(&reply),
                    elapsed,
                    Client::Session(conn.session),
                    || crate::metrics::slowlog::from_args(kind, args),
                );
                // HELLO answers in the protocol it selects.
                conn.push(reply, conn.session.protocol);
            }
        }
    }
}

/// The parts of a connection a command may change while its input buffer is borrowed.
struct ConnParts<'a> {
    session: &'a mut Session,
    output: &'a mut crate::net::connection::Output,
}

impl ConnParts<'_> {
    fn push(&mut self, reply: Reply, protocol: crate::protocol::Protocol) {
        self.output.push_ready(reply, protocol);
    }
}

/// Decodes and runs the buffered requests of `conn` until its input is incomplete, it is
/// backlogged, or it hit a protocol error.
fn run_requests(
    core: &mut Core,
    decoder: &mut RequestDecoder,
    conn: &mut Connection,
    cref: ConnRef,
) {
    let Connection {
        input,
        output,
        session,
        paused,
        closing,
        ..
    } = conn;
    core.start_laps();
    while !*closing {
        if output.is_backlogged() {
            *paused = true;
            return;
        }
        let pending = input.pending();
        if pending.is_empty() || pending.len() < input.need {
            return;
        }
        match decoder.decode(pending) {
            Decoded::Incomplete { at_least } => {
                input.need = at_least;
                return;
            }
            Decoded::Error(e) => {
                debug!(client = session.id, error = ?e, "protocol error");
                output.push_ready(Reply::Error(e.message().into()), session.protocol);
                *closing = true;
                return;
            }
            Decoded::Request { consumed } => {
                if decoder.arg_count() > 0 {
                    let args = decoder.view(pending);
                    let mut parts = ConnParts {
                        session: &mut *session,
                        output: &mut *output,
                    };
                    core.execute(&args, &mut parts, cref);
                    if session.close_after_reply {
                        *closing = true;
                    }
                }
                input.consume(consumed);
            }
        }
    }
}
