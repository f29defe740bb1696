//! `MULTI ... EXEC`: the commands a connection queues for a transaction, checked as they come.
//!
//! As in Redis, each command after `MULTI` is checked when it arrives (known, arity,
//! authentication, arguments) and answered `+QUEUED`, or with its error, which dooms the
//! transaction: `EXEC` then answers `-EXECABORT` and runs nothing. `EXEC` runs the queued
//! commands in order with nothing of another client in between, and answers the array of their
//! replies; `DISCARD` drops them.
//!
//! Rules of token-server's transactions, each for a reason:
//! - Only lock commands (`LOCK`, `UNLOCK`, `COMPLETE`, `RENEW`, `STATUS`) can be queued: they
//!   run on the shard owning their ids, so a transaction runs as one step of that shard.
//! - Every id of a transaction hashes to the same slot (hash tags: `{order-1}.a`,
//!   `{order-1}.b`), as in Redis Cluster, so it runs on one shard now and one node in cluster
//!   mode; the first command that breaks this gets `-CROSSSLOT`.
//! - `LOCK ... WAIT` does not wait inside a transaction (as Redis's blocking commands inside
//!   `MULTI`): a held id answers `-LOCKED` at once.

use std::borrow::Cow;

use crate::protocol::Reply;
use crate::table::{Op, Outcome};
use crate::types::slot_for;

/// `+QUEUED`.
pub const QUEUED: Reply = Reply::Simple("QUEUED");
/// `MULTI` inside `MULTI`; the transaction goes on, as in Redis.
pub const NESTED: Reply = Reply::error("ERR MULTI calls can not be nested");
/// `EXEC` without `MULTI`.
pub const EXEC_WITHOUT_MULTI: Reply = Reply::error("ERR EXEC without MULTI");
/// `DISCARD` without `MULTI`.
pub const DISCARD_WITHOUT_MULTI: Reply = Reply::error("ERR DISCARD without MULTI");
/// `EXEC` of a transaction in which a command was refused while queuing.
pub const EXEC_ABORT: Reply =
    Reply::error("EXECABORT Transaction discarded because of previous errors.");
/// `WATCH` inside `MULTI`, Redis's text.
pub const WATCH_INSIDE_MULTI: Reply = Reply::error("ERR WATCH inside MULTI is not allowed");
/// `WATCH` anywhere else: there are no values to watch.
pub const WATCH_UNSUPPORTED: Reply = Reply::error(
    "ERR WATCH is not supported: lock commands already check the state themselves; \
     queue them in MULTI ... EXEC to run them together",
);
/// Ids of one transaction in different hash slots, Redis Cluster's text and the way out.
pub const CROSS_SLOT: Reply = Reply::error(
    "CROSSSLOT Keys in request don't hash to the same slot: give the ids of one transaction \
     a common hash tag ({order-1}.a, {order-1}.b), or send them in a pipeline without MULTI",
);

/// Queued commands past `--client-query-buffer-limit` bytes of arguments.
pub const TOO_LARGE: Reply = Reply::error(
    "ERR transaction too large: its queued commands hold more than --client-query-buffer-limit \
     bytes",
);

/// The reply to a command that cannot be queued (not a lock command).
pub fn not_queueable(name: &str) -> Reply {
    Reply::Error(Cow::Owned(format!(
        "ERR '{name}' cannot run inside MULTI: only LOCK, UNLOCK, COMPLETE, RENEW and STATUS \
         can be queued"
    )))
}

/// A transaction being queued on one connection.
///
/// Its memory is bounded: the queued commands' arguments may hold at most
/// `--client-query-buffer-limit` bytes, and a doomed transaction keeps nothing more.
#[derive(Debug, Default)]
pub struct Transaction {
    ops: Vec<Op>,
    slot: Option<u16>,
    doomed: bool,
    bytes: usize,
}

impl Transaction {
    /// Queues a checked lock command whose arguments hold `size` bytes; answers `+QUEUED`,
    /// or dooms the transaction with `-CROSSSLOT` if its id is in another slot than the ones
    /// before it, or with an error if the queue would pass `limit` bytes.
    pub fn queue(&mut self, mut op: Op, size: usize, limit: usize) -> Reply {
        let slot = slot_for(op.id());
        if *self.slot.get_or_insert(slot) != slot {
            return self.refuse(CROSS_SLOT);
        }
        self.bytes = self.bytes.saturating_add(size);
        if self.bytes > limit {
            return self.refuse(TOO_LARGE);
        }
        if !self.doomed {
            if let Op::Lock(lock) = &mut op {
                lock.wait_ms = None;
            }
            self.ops.push(op);
        }
        QUEUED
    }

    /// Dooms the transaction and passes on the error that did it. Nothing queued will run,
    /// so nothing is kept.
    pub fn refuse(&mut self, error: Reply) -> Reply {
        self.doomed = true;
        self.ops = Vec::new();
        error
    }

    /// What `EXEC` runs: the queued operations in order, or `-EXECABORT`.
    pub fn into_ops(self) -> Result<Vec<Op>, Reply> {
        if self.doomed {
            Err(EXEC_ABORT)
        } else {
            Ok(self.ops)
        }
    }
}

/// `EXEC`'s reply: the array of the queued commands' replies, in order.
pub fn exec_reply(outcomes: Vec<Outcome>) -> Reply {
    Reply::Array(
        outcomes
            .into_iter()
            .map(|o| {
                // Nothing waits inside a transaction, so every outcome has its reply now.
                crate::command::reply(o).unwrap_or(crate::command::errors::LOCKED)
            })
            .collect(),
    )
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::table::{Lock, Status};

    fn lock(id: &[u8]) -> Op {
        Op::Lock(Lock {
            wait_ms: Some(60_000),
            ..Lock::new(id.into())
        })
    }

    #[test]
    fn queues_ids_of_one_slot_and_drops_waits() {
        let mut t = Transaction::default();
        assert_eq!(t.queue(lock(b"{order-1}.a"), 10, 100), QUEUED);
        assert_eq!(t.queue(lock(b"{order-1}.b"), 10, 100), QUEUED);
        let ops = t.into_ops().expect("runs");
        assert_eq!(ops.len(), 2);
        assert!(
            ops.iter()
                .all(|op| matches!(op, Op::Lock(l) if l.wait_ms.is_none()))
        );
    }

    #[test]
    fn another_slot_or_a_refusal_dooms_it() {
        let mut t = Transaction::default();
        assert_eq!(t.queue(lock(b"a"), 10, 100), QUEUED);
        let other = Op::Status(Status {
            id: b"b".as_slice().into(),
        });
        assert_eq!(t.queue(other, 10, 100), CROSS_SLOT);
        assert!(t.ops.is_empty(), "a doomed transaction keeps nothing");
        assert_eq!(t.queue(lock(b"a"), 10, 100), QUEUED);
        assert!(t.ops.is_empty());
        assert_eq!(t.into_ops().unwrap_err(), EXEC_ABORT);

        let mut t = Transaction::default();
        assert_eq!(t.queue(lock(b"a"), 60, 100), QUEUED);
        assert_eq!(t.queue(lock(b"a"), 40, 100), QUEUED, "up to the limit");
        assert_eq!(t.queue(lock(b"a"), 1, 100), TOO_LARGE);
        assert_eq!(t.into_ops().unwrap_err(), EXEC_ABORT);

        let mut t = Transaction::default();
        assert_eq!(t.refuse(not_queueable("ping")), not_queueable("ping"));
        assert_eq!(t.into_ops().unwrap_err(), EXEC_ABORT);
        assert_eq!(Transaction::default().into_ops().unwrap(), Vec::new());
    }
}
