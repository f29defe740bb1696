//! The request path of a shard's connections: decode the buffered requests, check each one
//! against the spec table, and run it here, forward it to the shard that owns its id, or answer
//! it on the spot (connection and server commands).

use tracing::debug;

use super::{Ack, Client, Core};
use crate::command::admin::{self, NOAUTH, Session};
use crate::command::{self, CommandKind, lookup, transaction, unknown_command, wrong_arity};
use crate::metrics::commands::{Outcome, UNKNOWN};
use crate::net::connection::Connection;
use crate::protocol::{Args, Decoded, Reply, RequestDecoder};
use crate::shard::mesh::{Message, SlotFill};
use crate::table::Op;
use crate::types::{ConnRef, Origin, shard_for};

/// The answer to a LOCK read after its client closed its side of the connection: it is not
/// run, since a key handed to a client that has gone would hold the id for nobody.
const PEER_CLOSED: Reply = Reply::error(
    "ERR the client closed the connection: LOCK is not run, its key could reach nobody",
);

impl Core {
    /// Runs one decoded request from a connection of this shard, and counts it in this
    /// shard's `commands`, unless it is a lock command sent to run: those count on the shard
    /// that runs them ([`Core::run_observed`]), with the ones from other shards and HTTP.
    fn execute(&mut self, args: &Args<'_>, conn: &mut ConnParts<'_>, cref: ConnRef) {
        if !self.dispatch(args, conn, cref) {
            self.commands += 1;
        }
    }

    /// Runs one decoded request; true if it was a lock command sent to run (here or on the
    /// shard owning its id).
    fn dispatch(&mut self, args: &Args<'_>, conn: &mut ConnParts<'_>, cref: ConnRef) -> bool {
        let protocol = conn.session.protocol;
        let name = args.get(0).unwrap_or_default();
        let stats = &self.ctx.figures.shards[self.id].commands;
        let Some(spec) = lookup(name) else {
            stats.count(UNKNOWN, Outcome::Rejected);
            let reply = conn.doom(unknown_command(args));
            conn.push(reply, protocol);
            return false;
        };
        if !spec.arity_ok(args.len()) {
            stats.count(spec.kind.index(), Outcome::Rejected);
            let reply = conn.doom(wrong_arity(spec.name));
            conn.push(reply, protocol);
            return false;
        }
        if !conn.session.authenticated && !spec.allowed_before_auth() {
            stats.count(spec.kind.index(), Outcome::Rejected);
            let reply = conn.doom(NOAUTH);
            conn.push(reply, protocol);
            return false;
        }
        if let Some(tx) = conn.session.multi.as_mut()
            && !matches!(
                spec.kind,
                CommandKind::Multi
                    | CommandKind::Exec
                    | CommandKind::Discard
                    | CommandKind::Watch
                    | CommandKind::Unwatch
                    | CommandKind::Quit
                    | CommandKind::Reset
            )
        {
            let reply = match command::parse(spec, args, &self.ctx.limits) {
                Some(Ok(op)) => {
                    let size = args.iter_from(0).map(<[u8]>::len).sum();
                    let limit = usize::try_from(self.ctx.config.security.client_query_buffer_limit)
                        .unwrap_or(usize::MAX);
                    tx.queue(op, size, limit)
                }
                Some(Err(error)) => {
                    stats.count(spec.kind.index(), Outcome::of_error(error));
                    tx.refuse(error.into())
                }
                None => {
                    stats.count(spec.kind.index(), Outcome::Rejected);
                    tx.refuse(transaction::not_queueable(spec.name))
                }
            };
            conn.push(reply, protocol);
            return false;
        }
        if spec.kind == CommandKind::Exec
            && let Some(tx) = conn.session.multi.take()
        {
            stats.count(spec.kind.index(), Outcome::Ok);
            match tx.into_ops() {
                Ok(ops) if *conn.peer_closed && ops.iter().any(|op| matches!(op, Op::Lock(_))) => {
                    conn.push(PEER_CLOSED, protocol);
                }
                Ok(ops) => self.exec(ops, conn, cref),
                Err(abort) => conn.push(abort, protocol),
            }
            return false;
        }
        match command::parse(spec, args, &self.ctx.limits) {
            Some(Ok(cmd)) if *conn.peer_closed && matches!(cmd, Op::Lock(_)) => {
                stats.count(spec.kind.index(), Outcome::Rejected);
                conn.push(PEER_CLOSED, protocol);
            }
            Some(Ok(cmd)) => {
                if matches!(&cmd, Op::Lock(lock) if lock.wait_ms.is_some_and(|ms| ms > 0)) {
                    *conn.waited = true;
                }
                let owner = shard_for(cmd.id(), self.shards);
                if owner == self.id {
                    let seq = conn.output.next_seq();
                    let origin = self.origin_of(cref, seq);
                    let (answer, unlogged) =
                        self.run_observed(cmd, origin, Client::Session(conn.session));
                    match answer.into_slot() {
                        SlotFill::Hangup => conn.output.push_hangup(),
                        SlotFill::Pending => {
                            conn.output.push_pending(protocol);
                        }
                        SlotFill::Reply(reply) => {
                            conn.push(reply, protocol);
                            if unlogged {
                                self.ack_local(cref, seq);
                            }
                        }
                    }
                } else {
                    let reserve = reply_reserve(&cmd, &self.ctx.limits);
                    let seq = conn.output.push_pending_sized(protocol, reserve);
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
                return true;
            }
            Some(Err(error)) => {
                let stats = &self.ctx.figures.shards[self.id].commands;
                stats.count(spec.kind.index(), Outcome::of_error(error));
                conn.push(error.into(), protocol);
            }
            None => {
                let reply = admin::run(spec.kind, args, conn.session, &self.ctx);
                let kind = Some(spec.kind);
                let elapsed = self.lap();
                let outcome = reply.as_ref().map_or(Outcome::Ok, Outcome::of_reply);
                self.observe(
                    spec.kind.index(),
                    outcome,
                    elapsed,
                    Client::Session(conn.session),
                    || crate::metrics::slowlog::from_args(kind, args),
                );
                if matches!(spec.kind, CommandKind::Auth | CommandKind::Hello)
                    && reply.as_ref() == Some(&admin::WRONGPASS)
                {
                    conn.session.auth_failures = conn.session.auth_failures.saturating_add(1);
                    self.ctx.figures.clients.auth_failed(&conn.session.peer);
                    let penalty = admin::auth_penalty_ms(conn.session.auth_failures);
                    if penalty > 0 {
                        *conn.hold_until_ms = self.now_ms.saturating_add(penalty);
                    }
                }
                match reply {
                    // HELLO answers in the protocol it selects.
                    Some(reply) => conn.push(reply, conn.session.protocol),
                    // SHUTDOWN: no reply, the connection closes.
                    None => conn.output.push_hangup(),
                }
            }
        }
        false
    }
}

impl Core {
    /// Who is owed the reply in slot `seq` of this shard's connection `cref`.
    fn origin_of(&self, cref: ConnRef, seq: u64) -> Origin {
        Origin::Conn {
            shard: self.id,
            conn: cref,
            seq,
        }
    }

    /// Notes that the reply in slot `seq` of connection `cref` depends on this iteration's
    /// records: it becomes an error if they cannot be logged.
    fn ack_local(&mut self, cref: ConnRef, seq: u64) {
        self.acks.push(Ack::Local {
            slot: cref.slot,
            conn_id: cref.conn_id,
            seq,
        });
    }

    /// Runs a transaction's operations (all of one slot) on the shard owning their ids: here at
    /// once, or as one message to the owner. The reply is the array of their replies.
    fn exec(&mut self, ops: Vec<Op>, conn: &mut ConnParts<'_>, cref: ConnRef) {
        let protocol = conn.session.protocol;
        let Some(first) = ops.first() else {
            conn.push(Reply::Array(Vec::new()), protocol);
            return;
        };
        let owner = shard_for(first.id(), self.shards);
        if owner == self.id {
            let seq = conn.output.next_seq();
            let origin = self.origin_of(cref, seq);
            let (outcomes, unlogged) =
                self.run_transaction(ops, origin, Client::Session(conn.session));
            conn.push(transaction::exec_reply(outcomes), protocol);
            if unlogged {
                self.ack_local(cref, seq);
            }
        } else {
            let reserve = ops
                .iter()
                .map(|op| reply_reserve(op, &self.ctx.limits))
                .sum();
            let seq = conn.output.push_pending_sized(protocol, reserve);
            self.forwarded += 1;
            self.mesh.push(
                owner,
                Message::Transaction {
                    conn: cref,
                    seq,
                    ops,
                },
            );
        }
    }
}

/// The most bytes the reply to `op` may take: a STATUS may carry a stored result of up to
/// `--max-result-size`; the others are a key, a fence or a short error.
fn reply_reserve(op: &Op, limits: &command::CommandLimits) -> usize {
    match op {
        Op::Status(_) => limits.max_result_size + 128,
        _ => 64,
    }
}

/// The parts of a connection a command may change while its input buffer is borrowed.
struct ConnParts<'a> {
    session: &'a mut Session,
    output: &'a mut crate::net::connection::Output,
    /// Set when a `LOCK ... WAIT` is sent: its waits are cancelled when it closes.
    waited: &'a mut bool,
    /// The peer closed its side: a LOCK would hand a key to nobody.
    peer_closed: &'a bool,
    /// No request of this connection runs before this time (unix ms).
    hold_until_ms: &'a mut u64,
}

impl ConnParts<'_> {
    fn push(&mut self, reply: Reply, protocol: crate::protocol::Protocol) {
        self.output.push_ready(reply, protocol);
    }

    /// Passes on an error for a command refused before it ran; inside `MULTI` it also dooms
    /// the transaction, as in Redis.
    fn doom(&mut self, error: Reply) -> Reply {
        match self.session.multi.as_mut() {
            Some(tx) => tx.refuse(error),
            None => error,
        }
    }
}

/// Decodes and runs the buffered requests of `conn` until its input is incomplete, it is
/// backlogged, or it hit a protocol error.
pub(super) fn run_requests(
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
        waited,
        peer_closed,
        hold_until_ms,
        ..
    } = conn;
    core.start_laps();
    while !*closing {
        if *hold_until_ms > core.now_ms {
            // Slowed down after failed authentications: the rest waits in the buffer.
            return;
        }
        if output.is_backlogged() {
            *paused = true;
            return;
        }
        let pending = input.pending();
        if pending.is_empty() || pending.len() < input.need {
            return;
        }
        decoder.before_auth = !session.authenticated;
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
                        waited: &mut *waited,
                        peer_closed: &*peer_closed,
                        hold_until_ms: &mut *hold_until_ms,
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
