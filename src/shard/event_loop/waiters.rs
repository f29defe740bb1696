//! What a shard owes the callers that wait, and what it takes back from those that have gone:
//! HTTP callers of `LOCK ... WAIT` checked for having left, answers handed to outside callers,
//! and every grant whose waiter has gone given back, in one place.

use std::time::Instant;

use slab::Slab;

use super::{Core, ExternalReply, GONE_CALLER_CHECK};
use crate::shard::mesh::Message;
use crate::shard::mesh::ReplyFn;
use crate::table::{Op, Unlock};
use crate::types::{ConnRef, Id, KeyBytes, Origin, shard_for};

/// Outside callers a shard owes an answer, and the grants it must give back: owned by this
/// step of the loop.
#[derive(Default)]
pub(super) struct Callers {
    /// Outside callers whose command waits (LOCK ... WAIT over HTTP).
    pub(super) parked_external: Slab<ReplyFn>,
    /// Replies to outside callers, released after this iteration's writes are safe to send.
    pub(super) external_replies: Vec<ExternalReply>,
    /// Locks granted to waiters that had gone; released at the next iteration.
    pub(super) orphaned: Vec<(Id, KeyBytes)>,
    /// When parked outside callers were last checked for having gone.
    pub(super) checked: Option<Instant>,
}

impl Core {
    /// Drops the `LOCK ... WAIT`s of HTTP callers that have gone (their client disconnected),
    /// checked at most every [`GONE_CALLER_CHECK`], so they are never granted, counted or
    /// kept.
    pub(super) fn drop_gone_callers(&mut self) {
        if self.callers.parked_external.is_empty()
            || self
                .callers
                .checked
                .is_some_and(|at| at.elapsed() < GONE_CALLER_CHECK)
        {
            return;
        }
        self.callers.checked = Some(Instant::now());
        let gone: Vec<usize> = self
            .callers
            .parked_external
            .iter()
            .filter(|(_, caller)| caller.has_gone())
            .map(|(slot, _)| slot)
            .collect();
        for slot in gone {
            self.callers.parked_external.remove(slot);
            let origin = Origin::External(slot as u64);
            self.table.cancel_waiters(|o| *o == origin);
        }
    }

    /// Hands the replies owed to outside callers to them; a grant whose caller has gone is
    /// given back.
    pub(super) fn answer_external(&mut self) {
        // Drained in place: the vector keeps its room for the next iteration.
        let mut replies = std::mem::take(&mut self.callers.external_replies);
        for (done, answer, grant) in replies.drain(..) {
            if !done.answer(answer)
                && let Some(grant) = grant
            {
                self.orphan(grant);
            }
        }
        self.callers.external_replies = replies;
    }

    /// Notes a lock granted to a waiter that has gone (its connection closed, its HTTP caller
    /// left, its reply could not be written whole): every such grant comes here, and is given
    /// back, as an UNLOCK would, at the start of the next iteration ([`Core::give_back_orphans`],
    /// which the loop runs at once when any is pending).
    pub(super) fn orphan(&mut self, grant: (Id, KeyBytes)) {
        self.callers.orphaned.push(grant);
    }

    /// Gives back every lock noted by [`Core::orphan`]: the one place a grant whose waiter has
    /// gone is released.
    pub(super) fn give_back_orphans(&mut self) {
        for (id, key) in std::mem::take(&mut self.callers.orphaned) {
            self.release_orphan(id, key);
        }
    }

    /// Releases one orphaned grant on the shard that owns its id.
    pub(super) fn release_orphan(&mut self, id: Id, key: KeyBytes) {
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
