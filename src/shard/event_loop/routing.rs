//! Where a shard's work comes from and its answers go: new connections and outside commands
//! from the inbox, requests and replies from other shards over the mesh, and the replies owed
//! to waiters, routed to their connection, shard or caller.

use super::{Ack, Client, Shard};
use crate::clock::Clock;
use crate::shard::mesh::{Answer, External, Message, SlotFill};
use crate::table::{Op, Outcome, Unlock};
use crate::types::{ConnRef, Id, KeyBytes, Origin, ShardId};

impl super::Core {
    /// Sends `answer` back to the shard `to` that forwarded the command, for reply slot `seq`
    /// of its connection `conn`; `unlogged`: it depends on this iteration's records, and must
    /// become an error if they cannot be logged.
    fn answer_shard(
        &mut self,
        to: ShardId,
        conn: ConnRef,
        seq: u64,
        answer: Answer,
        unlogged: bool,
    ) {
        if unlogged {
            let index = self.mesh.queued(to);
            self.acks.push(Ack::Remote { shard: to, index });
        }
        let msg = Message::Reply {
            conn,
            seq,
            answer,
            grant: None,
        };
        self.mesh.push(to, msg);
    }
}

impl<C: Clock> Shard<C> {
    pub(super) fn take_external(&mut self) {
        let mut timing = false;
        self.core.mesh.rearm_inbox();
        while let Ok(work) = self.core.mesh.inbox.try_recv() {
            if !timing && matches!(work, External::Command { .. }) {
                self.core.start_laps();
                timing = true;
            }
            match work {
                External::Connection(_) if self.stopping => {
                    // Accepted just before the shutdown: closed unserved.
                    self.core.ctx.figures.clients.left();
                }
                External::Connection(accepted) => self.adopt(accepted),
                External::Shutdown => self.stopping = true,
                External::Command { cmd, done } => {
                    let slot = self.core.callers.parked_external.vacant_key() as u64;
                    let (answer, unlogged) =
                        self.core
                            .run_observed(cmd, Origin::External(slot), Client::Http);
                    if matches!(answer, Answer::Outcome(Outcome::Parked)) {
                        self.core.callers.parked_external.insert(done);
                    } else {
                        if unlogged {
                            let index = self.core.callers.external_replies.len();
                            self.core.acks.push(Ack::External { index });
                        }
                        self.core
                            .callers
                            .external_replies
                            .push((done, answer, None));
                    }
                }
            }
        }
    }

    pub(super) fn take_messages(&mut self) {
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
                    let (answer, unlogged) =
                        self.core.run_observed(cmd, origin, Client::Shard(from));
                    if !matches!(answer, Answer::Outcome(Outcome::Parked)) {
                        self.core.answer_shard(from, conn, seq, answer, unlogged);
                    }
                }
                Message::Transaction { conn, seq, ops } => {
                    let origin = Origin::Conn {
                        shard: from,
                        conn,
                        seq,
                    };
                    let (outcomes, unlogged) =
                        self.core.run_transaction(ops, origin, Client::Shard(from));
                    let answer = Answer::Outcomes(outcomes);
                    self.core.answer_shard(from, conn, seq, answer, unlogged);
                }
                Message::CancelWaits { conn } => {
                    self.core.table.cancel_waiters(|origin| {
                        matches!(origin, Origin::Conn { shard, conn: c, .. }
                            if *shard == from && *c == conn)
                    });
                }
                Message::Reply {
                    conn,
                    seq,
                    answer,
                    grant,
                } => {
                    let grant = grant.map(|g| *g);
                    if let Err(Some(grant)) = self.fill(conn, seq, answer, grant) {
                        // The waiter's connection has gone: give the lock back to its owner.
                        let (id, key) = grant;
                        let cmd = Op::Unlock(Unlock { id, key: Some(key) });
                        let msg = Message::Request { conn, seq, cmd };
                        self.core.mesh.push(from, msg);
                    }
                }
            }
        }
        self.incoming = incoming;
    }

    /// Fills a reply slot of one of this shard's connections with the reply to `answer`; a
    /// `grant` it carries stays with the slot until its bytes are written, and is given back
    /// if the connection closes first. Fails, handing the grant back, if the connection has
    /// gone (or the slot is not pending).
    fn fill(
        &mut self,
        conn: ConnRef,
        seq: u64,
        answer: Answer,
        grant: Option<(Id, KeyBytes)>,
    ) -> Result<(), Option<(Id, KeyBytes)>> {
        let idx = conn.slot as usize;
        let Some(c) = self
            .conns
            .get_mut(idx)
            .filter(|c| c.session.id == conn.conn_id)
        else {
            return Err(grant);
        };
        let filled = match answer.into_slot() {
            SlotFill::Reply(reply) => c.output.fill_grant(seq, reply, grant),
            SlotFill::Hangup if c.output.fill_hangup(seq) => Ok(()),
            SlotFill::Hangup | SlotFill::Pending => Err(grant),
        };
        if filled.is_ok() {
            self.mark_dirty(idx);
        }
        filled
    }

    /// Routes the replies owed to waiters to their connections, shards and callers.
    pub(super) fn deliver(&mut self) {
        while !self.core.deliveries.is_empty() {
            for d in std::mem::take(&mut self.core.deliveries) {
                match d.origin {
                    Origin::Conn { shard, conn, seq } if shard == self.core.id => {
                        match self.fill(conn, seq, Answer::Outcome(d.outcome), d.grant) {
                            Ok(()) => self.core.acks.push(Ack::Local {
                                slot: conn.slot,
                                conn_id: conn.conn_id,
                                seq,
                            }),
                            Err(Some(grant)) => self.core.orphan(grant),
                            Err(None) => {}
                        }
                    }
                    Origin::Conn { shard, conn, seq } => {
                        let index = self.core.mesh.queued(shard);
                        self.core.acks.push(Ack::Remote { shard, index });
                        let msg = Message::Reply {
                            conn,
                            seq,
                            answer: Answer::Outcome(d.outcome),
                            grant: d.grant.map(Box::new),
                        };
                        self.core.mesh.push(shard, msg);
                    }
                    Origin::External(slot) => {
                        if let Some(done) =
                            self.core.callers.parked_external.try_remove(slot as usize)
                        {
                            let index = self.core.callers.external_replies.len();
                            self.core.acks.push(Ack::External { index });
                            let answer = Answer::Outcome(d.outcome);
                            self.core
                                .callers
                                .external_replies
                                .push((done, answer, d.grant));
                        }
                    }
                    Origin::Nobody => {
                        if let Some(grant) = d.grant {
                            self.core.orphan(grant);
                        }
                    }
                }
            }
        }
    }
}
