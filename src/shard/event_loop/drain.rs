//! A shard's part in a shutdown (see [`crate::lifecycle`] for the whole).
//!
//! Once a shard has seen `External::Shutdown` it reads no more requests and adopts no more
//! connections, but keeps running its loop: it still answers requests from other shards and
//! HTTP commands already in its inbox, syncs its log every iteration and writes replies. Every
//! queued `LOCK ... WAIT` is answered at once with `-LOCKED` (as if its wait had run out), and
//! no new wait is queued, so that what is left in flight finishes promptly. The shard leaves
//! when none of its connections waits for a reply or holds unwritten bytes, no batch for
//! another shard is stuck, and every other shard has got that far too; or when the
//! deadline passes.

use std::time::Instant;

use tracing::{debug, warn};

use super::{Core, Shard};
use crate::clock::Clock;
use crate::lifecycle::{DrainState, all_idle};
use crate::types::Origin;

impl Core {
    /// Answers every queued waiter `-LOCKED`, as if its wait had run out.
    pub(super) fn cancel_waits(&mut self) {
        if self.table.waiting() == 0 {
            return;
        }
        let (table, mut ctx) = self.table_and_ctx(Origin::Nobody);
        let n = table.time_out_all_waiters(&mut ctx);
        debug!(
            shard = self.id,
            waiters = n,
            "answered queued waits for the shutdown"
        );
    }
}

impl<C: Clock> Shard<C> {
    /// During a shutdown, after this iteration's writes: publishes where this shard stands
    /// and returns whether it may leave now.
    pub(super) fn drained(&mut self, stalled: bool) -> bool {
        let busy = stalled || self.conns.iter().any(|(_, c)| !c.output.is_idle());
        let state = if busy {
            DrainState::Busy
        } else {
            DrainState::Idle
        };
        let ctx = &self.core.ctx;
        state.publish(&ctx.figures.shards[self.core.id].drain);
        if !busy && all_idle(ctx.figures.shards.iter().map(|s| &s.drain)) {
            return true;
        }
        let late = ctx
            .lifecycle
            .deadline()
            .is_some_and(|d| Instant::now() >= d);
        if late {
            warn!(
                shard = self.core.id,
                busy, "shutdown timeout: stopping without waiting further"
            );
        }
        late
    }
}

#[cfg(test)]
mod tests {
    use crate::command::CommandKind;
    use crate::command::table_tests::Fixture;
    use crate::command::test_support::PARKED;
    use crate::table::{LockTable, Policy};
    use crate::types::Error;
    use crate::types::Origin;

    #[test]
    fn a_shutdown_answers_every_queued_wait_locked() {
        let mut f = Fixture::new();
        assert!(!f.lock(b"held").is_error());
        for n in 0..3 {
            f.origin = Origin::External(n);
            let r = f.run(CommandKind::Lock, &[b"LOCK", b"held", b"WAIT", b"60000"]);
            assert_eq!(r, PARKED);
        }
        assert_eq!(f.table.waiting(), 3);
        let mut table = std::mem::replace(&mut f.table, LockTable::new(Policy::default()));
        let n = table.time_out_all_waiters(&mut f.ctx());
        f.table = table;
        assert_eq!(n, 3);
        assert_eq!(f.table.waiting(), 0);
        assert_eq!(f.table.next_deadline(), None, "no wait deadline is left");
        let origins: Vec<_> = f.sink.deliveries.iter().map(|d| d.origin).collect();
        assert_eq!(origins.len(), 3);
        assert!(
            f.sink
                .deliveries
                .iter()
                .all(|d| d.outcome.error() == Some(Error::Locked))
        );
        assert!(f.sink.deliveries.iter().all(|d| d.grant.is_none()));
    }
}
