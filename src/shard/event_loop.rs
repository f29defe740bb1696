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
//!
//! The loop's parts: `requests` (decode, check, run or forward a connection's requests),
//! `routing` (inbox, mesh and the replies owed to waiters), `durability` (group commit,
//! failed batches, background rewrites), `client_limits`, `observe` (timing, metrics, chaos)
//! and `drain` (shutdown).

use std::io;
use std::sync::Arc;
use std::sync::atomic::Ordering;
use std::time::{Duration, Instant};

use mio::{Events, Poll, Token};
use slab::Slab;
use tracing::debug;

use crate::clock::Clock;
use crate::config::AppendFsync;
use crate::context::ServerContext;
use crate::keys::KeyGenerator;
use crate::log::ShardLog;
use crate::log::writer::SnapshotEncoder;
use crate::net::connection::Connection;
use crate::protocol::RequestDecoder;
use crate::shard::mesh::{Answer, Endpoint, Message, ReplyFn};
use crate::table::{ApplyCtx, Delivery, LockTable, Op, Outcome, Unlock};
use crate::types::{ConnRef, Error, Id, KeyBytes, LogRecord, Origin, ShardId, shard_for};

mod client_limits;
mod drain;
mod durability;
mod observe;
mod requests;
mod routing;

use client_limits::ClientLimits;
use observe::{Chaos, Client};
use requests::run_requests;

/// The token of the mailbox waker; connections use their slab index.
pub const WAKER_TOKEN: Token = Token(usize::MAX);

/// About how many entries of the table a running log rewrite encodes per loop iteration (one
/// slab chunk: a few hundred microseconds).
const REWRITE_ENTRIES_PER_ITERATION: usize = 4 * 1024;

/// Expirations and wait time-outs are handled in slices of this many steps per loop
/// iteration, until [`EXPIRY_TIME`] has passed or [`EXPIRY_BUDGET`] steps are done, so that a
/// million leases running out together never hold up the requests for long. What is left is
/// done in the next iterations, which then do not wait for events.
const EXPIRY_SLICE: usize = 256;
/// Most time spent on expirations per loop iteration (checked after each slice).
const EXPIRY_TIME: Duration = Duration::from_micros(200);
/// Most expirations per loop iteration.
const EXPIRY_BUDGET: usize = 4096;

/// How often a shard looks for HTTP callers of `LOCK ... WAIT` that have gone, while some wait.
const GONE_CALLER_CHECK: Duration = Duration::from_millis(100);

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

/// An answer to an outside caller, and the grant it carries (released if the caller has gone).
///
/// A change the log could not store is answered [`Error::LogFailed`], and so is every reply
/// that may have seen it. The change was taken back in memory; if its bytes reached the disk
/// anyway and the server crashes before the log is rewritten, recovery may still bring it
/// back, so the outcome is unknown, as after a lost reply.
type ExternalReply = (ReplyFn, Answer, Option<(Id, KeyBytes)>);

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
    last_sync: Instant,
    /// When a failed log was last asked to heal by a rewrite.
    last_heal: Instant,
    /// Log size after the last rewrite: the base of the growth trigger.
    rewrite_base: u64,
    /// During a rewrite, the snapshot being encoded and the next table part to encode.
    rewrite_snapshot: Option<(SnapshotEncoder, usize)>,
    log_rewrites: u64,
    log_errors: u64,
    /// Learning mode's generator (off unless `--chaos-rate`).
    chaos: Chaos,
    /// When the previous command of this batch ended (commands are timed lap by lap).
    mark: std::time::Instant,
    /// When parked outside callers were last checked for having gone.
    callers_checked: Instant,
    /// The wait after the last failed log rewrite (zero after a success).
    rewrite_backoff: Duration,
    /// No rewrite starts before this.
    next_rewrite: Instant,
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
    /// Connections held back after failed authentications, with when they may go on.
    held: Vec<(u64, usize)>,
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
        let mut shard = Shard {
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
                callers_checked: Instant::now(),
                rewrite_backoff: Duration::ZERO,
                next_rewrite: Instant::now(),
            },
            clock,
            dirty: Vec::new(),
            resume: Vec::new(),
            held: Vec::new(),
            incoming: Vec::new(),
            stopping: false,
            limits,
        };
        // The recovered figures count before any thread runs: a client accepted by a shard
        // that is already looping must not see another shard's table as empty.
        shard.publish_stats();
        shard
    }

    /// Runs the loop until the process ends.
    pub fn run(mut self) -> io::Result<()> {
        let mut events = Events::with_capacity(1024);
        let mut stalled = false;
        let mut more_due = false;
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
                let cap = match self.held.iter().map(|&(at, _)| at).min() {
                    Some(at) => {
                        let now = self.clock.now_ms();
                        let wait = Duration::from_millis(at.saturating_sub(now).saturating_add(1));
                        Some(cap.map_or(wait, |c| c.min(wait)))
                    }
                    None => cap,
                };
                let cap = if self.core.parked_external.is_empty() {
                    cap
                } else {
                    Some(cap.map_or(GONE_CALLER_CHECK, |c| c.min(GONE_CALLER_CHECK)))
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
            more_due = self.core.expire_due();
            if !self.held.is_empty() {
                let now = self.core.now_ms;
                let resume = &mut self.resume;
                self.held.retain(|&(at, idx)| {
                    let due = at <= now;
                    if due {
                        resume.push(idx);
                    }
                    !due
                });
            }
            for idx in std::mem::take(&mut self.resume) {
                self.serve(idx);
            }
            for event in events.iter() {
                if event.token() == WAKER_TOKEN {
                    continue;
                }
                let idx = event.token().0;
                if event.is_read_closed() || event.is_error() {
                    self.hang_up(idx);
                } else if event.is_readable() {
                    self.serve(idx);
                }
                if event.is_writable() {
                    self.mark_dirty(idx);
                }
            }
            self.take_external();
            self.core.drop_gone_callers();
            self.take_messages();
            if self.stopping {
                self.core.cancel_waits();
            }
            self.deliver();
            self.core.persist(&mut self.conns, self.stopping);

            self.publish_stats();
            stalled = self.core.mesh.flush();
            for (done, answer, grant) in self.core.external_replies.drain(..) {
                if !done.answer(answer)
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
    /// incomplete, or it is backlogged. A plain socket counts as drained after a read that did
    /// not fill the space offered: on epoll, data arriving later is a new readiness event, so
    /// the read that would only answer `WouldBlock` is skipped (one syscall less per request
    /// when clients do not pipeline).
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
        let mut drained = false;
        loop {
            run_requests(&mut self.core, &mut self.decoder, conn, cref);
            if conn.hold_until_ms > self.core.now_ms {
                // Its next request waits; reading more would only fill the buffer.
                if !self.held.iter().any(|&(_, i)| i == idx) {
                    self.held.push((conn.hold_until_ms, idx));
                }
                break;
            }
            if conn.paused && conn.peer_closed {
                self.close(idx);
                return;
            }
            if conn.paused || conn.closing {
                break;
            }
            if conn.input.len() > self.limits.query_buffer {
                self.query_buffer_exceeded(idx);
                break;
            }
            if drained {
                break;
            }
            match conn.input.read_from(&mut conn.stream) {
                Ok((0, _)) => {
                    // The peer closed: nothing more can be read.
                    self.finish(idx);
                    return;
                }
                Ok((_, short)) => {
                    conn.last_active_ms = self.core.now_ms;
                    // After a hang-up, read on until the end is seen.
                    drained = short && conn.stream.short_read_drains() && !conn.peer_closed;
                }
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

    /// The peer of connection `idx` closed its side (or the socket failed): read what it sent
    /// before, up to the end, then close, as Redis does when a read finds the end. Nobody
    /// reads the replies of a client that has gone, and a grant must not go to it. A
    /// connection whose reading is paused is closed at once: its unread requests would only
    /// make replies that nobody reads.
    fn hang_up(&mut self, idx: usize) {
        let Some(conn) = self.conns.get_mut(idx) else {
            return;
        };
        conn.peer_closed = true;
        if conn.paused || self.stopping {
            self.close(idx);
        } else {
            self.serve(idx);
        }
    }

    /// Closes connection `idx` after its peer closed: the replies that are ready go out in
    /// one attempt (a half-closed client may still read them), unless one carries a lock,
    /// which a client that has gone must not be given: then nothing is written, and
    /// [`Shard::close`] gives the locks back.
    fn finish(&mut self, idx: usize) {
        if let Some(conn) = self.conns.get_mut(idx) {
            conn.output.encode_ready();
            if !conn.output.holds_grants() {
                let _ = conn.output.write_to(&mut conn.stream);
            }
        }
        self.close(idx);
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
        // A lock goes only to a connection known to be open: if its peer closed meanwhile
        // (during the log sync, say), close instead, and the lock is given back.
        if conn.output.holds_grants() && (conn.peer_closed || conn.stream.peer_has_closed()) {
            self.close(idx);
            return;
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

    /// Closes connection `idx`. Nobody will read its replies, so what was owed to it is
    /// taken back: the locks granted to its waits whose replies were not written whole are
    /// given back (at the start of the next iteration, as an UNLOCK would), and its queued
    /// `LOCK ... WAIT`s are dropped here and on every other shard.
    fn close(&mut self, idx: usize) {
        if self.conns.contains(idx) {
            let mut conn = self.conns.remove(idx);
            let _ = self.poll.registry().deregister(&mut conn.stream);
            self.core.ctx.clients.fetch_sub(1, Ordering::Relaxed);
            self.core.orphaned.extend(conn.output.take_unsent_grants());
            if conn.waited {
                let gone = ConnRef {
                    slot: idx as u32,
                    conn_id: conn.session.id,
                };
                let me = self.core.id;
                self.core.table.cancel_waiters(|origin| {
                    matches!(origin, Origin::Conn { shard, conn, .. } if *shard == me && *conn == gone)
                });
                for shard in (0..self.core.shards).filter(|&s| s != me) {
                    self.core
                        .mesh
                        .push(shard, Message::CancelWaits { conn: gone });
                }
            }
            debug!(client = conn.session.id, "connection closed");
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
        publish(&stats.table_memory, table.memory() as u64);
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

    /// Runs a lock command whose id this shard owns, on behalf of `origin`. Returns the
    /// outcome and whether it depends on changes not yet in the log: the command's own, or any
    /// earlier one of this iteration that it may have seen (a refusal, a STATUS). Such an
    /// answer must not leave if the log cannot take this iteration's records.
    fn apply_local(&mut self, cmd: Op, origin: Origin) -> (Outcome, bool) {
        if cmd.is_write() && self.log.is_failed() {
            return (Error::LogFailed.into(), false);
        }
        let (table, mut ctx) = self.table_and_ctx(origin);
        let outcome = table.apply(cmd, &mut ctx);
        (outcome, !self.records.is_empty())
    }

    /// Frees expired leases, reaps old completions and times out waiters, a slice at a time
    /// within the time and step budgets. Returns whether more are due.
    fn expire_due(&mut self) -> bool {
        let started = Instant::now();
        let mut done = 0;
        loop {
            let (table, mut ctx) = self.table_and_ctx(Origin::Nobody);
            let slice = table.expire_due(&mut ctx, EXPIRY_SLICE);
            done += slice;
            if slice < EXPIRY_SLICE {
                return false;
            }
            if done >= EXPIRY_BUDGET || started.elapsed() >= EXPIRY_TIME {
                return true;
            }
        }
    }

    /// Drops the `LOCK ... WAIT`s of HTTP callers that have gone (their client disconnected),
    /// checked at most every [`GONE_CALLER_CHECK`], so they are never granted, counted or
    /// kept.
    fn drop_gone_callers(&mut self) {
        if self.parked_external.is_empty() || self.callers_checked.elapsed() < GONE_CALLER_CHECK {
            return;
        }
        self.callers_checked = Instant::now();
        let gone: Vec<usize> = self
            .parked_external
            .iter()
            .filter(|(_, caller)| caller.has_gone())
            .map(|(slot, _)| slot)
            .collect();
        for slot in gone {
            self.parked_external.remove(slot);
            let origin = Origin::External(slot as u64);
            self.table.cancel_waiters(|o| *o == origin);
        }
    }

    /// Releases a lock that was granted to a waiter who had gone by the time it came.
    fn release_orphan(&mut self, id: Id, key: KeyBytes) {
        let cmd = Op::Unlock(Unlock { id, key: Some(key) });
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
}
