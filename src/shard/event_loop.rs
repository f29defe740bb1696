//! A shard thread: one mio event loop that owns its connections and its slice of the table.
//!
//! One iteration ([`Shard::run`] shows it on one screen), in Redis's `beforeSleep` order:
//! 1. poll for readiness (sockets, the mailbox waker), no longer than the next deadline;
//! 2. give back grants whose waiters have gone (the one place that does), run out leases and
//!    waits that are due (a bounded slice per iteration);
//! 3. read sockets, decode requests, run local commands, queue commands for other shards;
//! 4. take work from the inbox (new connections, HTTP commands) and the mesh (requests from
//!    other shards, replies to ours), and route the answers owed to waiters;
//! 5. write this iteration's records to the log and sync them (group commit);
//! 6. publish this shard's figures, send the batches to other shards (waking each destination
//!    once), answer outside callers and write sockets.
//!
//! Replies are values in each connection's slot queue until step 6, so a step that must happen
//! before any reply leaves (syncing the log) slots in before it.
//!
//! The loop's parts, a file each: `connections` (serve a readable connection, hang-ups,
//! writes, closing), `requests` (decode, check, run or forward a connection's requests),
//! `routing` (inbox, mesh and the replies owed to waiters), `waiters` (parked HTTP callers,
//! answers to outside callers, grants given back), `durability` (group commit, failed batches,
//! background rewrites), `client_limits` (taking connections over, buffer and idle limits),
//! `observe` (timing, metrics, chaos) and `drain` (shutdown).

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
use crate::net::connection::Connection;
use crate::protocol::RequestDecoder;
use crate::shard::mesh::{Answer, Endpoint, Message, ReplyFn};
use crate::table::{ApplyCtx, Delivery, LockTable, Op, Outcome};
use crate::types::{Error, Id, KeyBytes, LogRecord, Origin, ShardId};

mod client_limits;
mod connections;
mod drain;
mod durability;
mod observe;
mod requests;
mod routing;
mod waiters;

use client_limits::ClientLimits;
use durability::Durable;
use observe::{Chaos, Client};
use waiters::Callers;

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
    /// Outside callers owed an answer, and grants to give back (`waiters.rs`).
    callers: Callers,
    /// Replies that depend on this iteration's records.
    acks: Vec<Ack>,
    /// The log and its rewrites (`durability.rs`).
    durable: Durable,
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
        let shards = ctx.figures.shards.len();
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
                callers: Callers::default(),
                acks: Vec::new(),
                durable: Durable::new(log),
                chaos,
                mark: std::time::Instant::now(),
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

    /// Runs the loop until the process ends. One iteration, in order:
    pub fn run(mut self) -> io::Result<()> {
        let mut events = Events::with_capacity(1024);
        let mut stalled = false;
        let mut more_due = false;
        loop {
            // Wait for readiness, or until the next deadline (lease, wait, background work).
            let timeout = self.poll_timeout(stalled, more_due);
            if let Err(e) = self.poll.poll(&mut events, timeout)
                && e.kind() != io::ErrorKind::Interrupted
            {
                return Err(e);
            }
            self.core.now_ms = self.clock.now_ms();
            self.close_idle();
            // Grants whose waiters had gone go back first, then leases and waits run out.
            self.core.give_back_orphans();
            more_due = self.core.expire_due();
            // Read, decode and run (or forward) the requests of ready connections.
            self.release_held();
            self.read_ready(&events);
            // The mailbox: new connections and HTTP commands, then other shards' messages.
            self.take_external();
            self.core.drop_gone_callers();
            self.take_messages();
            if self.stopping {
                self.core.cancel_waits();
            }
            self.deliver();
            // The log: this iteration's records, synced per --appendfsync, before any reply.
            self.core.persist(&mut self.conns, self.stopping);
            self.publish_stats();
            // Replies leave: batches to other shards, answers to HTTP callers, sockets.
            stalled = self.core.mesh.flush();
            self.core.answer_external();
            self.write_dirty();
            if self.stopping && self.drained(stalled) {
                debug!(shard = self.core.id, "shard stopped");
                return Ok(());
            }
        }
    }

    /// How long the next poll may wait: not at all while work is left over (paused
    /// connections to resume, expirations due, grants to give back), 1 ms while the mesh is
    /// stalled or the shard stops, else until the earliest deadline: a lease or wait, a held
    /// connection, background log work, parked HTTP callers to check, idle connections.
    fn poll_timeout(&self, stalled: bool, more_due: bool) -> Option<Duration> {
        if !self.resume.is_empty() || more_due || !self.core.callers.orphaned.is_empty() {
            return Some(Duration::ZERO);
        }
        if stalled || self.stopping {
            return Some(Duration::from_millis(1));
        }
        let now = self.clock.now_ms();
        let until = |at: u64| Duration::from_millis(at.saturating_sub(now).saturating_add(1));
        // Background log work needs the loop to come round even when idle.
        let log = &self.core.durable.log;
        let log_work = if log.rewrite_in_progress() {
            Some(Duration::from_millis(5))
        } else if log.is_failed() || self.core.ctx.config.appendfsync == AppendFsync::Everysec {
            Some(Duration::from_secs(1))
        } else {
            None
        };
        let callers = (!self.core.callers.parked_external.is_empty()).then_some(GONE_CALLER_CHECK);
        [
            self.core.table.next_deadline().map(until),
            self.held.iter().map(|&(at, _)| at).min().map(until),
            log_work,
            callers,
            self.idle_poll_cap(),
        ]
        .into_iter()
        .flatten()
        .min()
    }

    /// Writes the connections marked dirty this iteration. The list is drained in place and
    /// kept, so that a busy loop does not allocate it anew every iteration.
    fn write_dirty(&mut self) {
        let mut dirty = std::mem::take(&mut self.dirty);
        for idx in dirty.drain(..) {
            self.write(idx);
        }
        if self.dirty.is_empty() {
            self.dirty = dirty;
        }
    }

    /// Connections held back after failed authentications whose time has come go back to
    /// reading.
    fn release_held(&mut self) {
        if self.held.is_empty() {
            return;
        }
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

    /// Serves the connections that may read: those to resume, then those the poll reported
    /// (a hang-up is acted on, readable ones are read, writable ones written at the end).
    fn read_ready(&mut self, events: &Events) {
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
    }

    fn publish_stats(&mut self) {
        let stats = &self.core.ctx.figures.shards[self.core.id];
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
        publish(&stats.log_bytes, self.core.durable.log.file_len());
        publish(&stats.table_memory, table.memory() as u64);
        publish(&stats.log_rewrites, self.core.durable.log_rewrites);
        publish(&stats.log_errors, self.core.durable.log_errors);
        publish(
            &stats.log_failed,
            u64::from(self.core.durable.log.is_failed()),
        );
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
            fences: &ctx.fences.issued,
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
        if cmd.is_write() && self.durable.log.is_failed() {
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
}
