//! Measuring commands where they run, and learning mode's deliberate failures.
//!
//! Every command is timed by the shard that runs it: a lock command on the shard owning its
//! id (whoever sent it), a connection command on the connection's shard. Timing is lap by
//! lap, one clock read per command: a batch (one read from a connection, one drain of the
//! mesh or of the inbox) reads the clock once as it starts, and each command's time runs from
//! the end of the previous one to its own end, so it covers decoding and parsing the command
//! as well as running it, but not the network or the log sync. The duration and the outcome
//! go into the shard's own atomic cells ([`crate::metrics::commands`]); a command at least
//! `--slowlog-log-slower-than` long also goes into the shard's slow-log ring.
//!
//! Chaos mode (`--chaos-rate P`) lives here too, so RESP and HTTP share it: for a fraction P
//! of write commands, half are refused before they run (`-TRYAGAIN`) and half run and then
//! lose their reply ([`Answer::Hangup`]: the RESP connection, or the HTTP connection, is
//! closed without it). Each shard draws from its own small generator, seeded from the OS or from
//! `--chaos-seed` plus the shard's number. A queued `LOCK ... WAIT` is never dropped.

use std::time::{Duration, Instant, SystemTime, UNIX_EPOCH};

use bytes::Bytes;
use rand::rngs::{SmallRng, SysRng};
use rand::{RngExt, SeedableRng};

use super::Core;
use crate::command::admin::Session;
use crate::metrics::commands::Outcome as Counted;
use crate::metrics::histogram::bump_owned;
use crate::metrics::slowlog::{Capture, SlowEntry};
use crate::shard::mesh::Answer;
use crate::table::{Op, Outcome};
use crate::types::{Error, LogRecord, Origin, ShardId};

/// Who sent a command, as the slow log names them.
#[derive(Clone, Copy)]
pub(super) enum Client<'a> {
    /// A RESP connection of this shard.
    Session(&'a Session),
    /// Another shard, forwarding a command of one of its connections.
    Shard(ShardId),
    /// The HTTP adapter.
    Http,
}

/// What chaos mode does to one write.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
enum Mischief {
    /// Refuse it before it runs.
    Refuse,
    /// Run it, then drop the reply and the connection.
    Drop,
}

/// One shard's chaos generator.
pub(super) struct Chaos {
    rate: f64,
    rng: Option<SmallRng>,
}

impl Chaos {
    /// A generator for shard `shard` at `rate` (0: off).
    pub(super) fn new(rate: f64, seed: Option<u64>, shard: ShardId) -> Self {
        let rng = (rate > 0.0).then(|| match seed {
            Some(s) => SmallRng::seed_from_u64(s.wrapping_add(shard as u64)),
            None => SmallRng::try_from_rng(&mut SysRng)
                .unwrap_or_else(|_| SmallRng::seed_from_u64(shard as u64 ^ 0x5eed)),
        });
        Chaos { rate, rng }
    }

    fn roll(&mut self) -> Option<Mischief> {
        let rng = self.rng.as_mut()?;
        if !rng.random_bool(self.rate) {
            return None;
        }
        Some(if rng.random_bool(0.5) {
            Mischief::Refuse
        } else {
            Mischief::Drop
        })
    }
}

impl Core {
    /// Runs a lock command this shard owns, as [`Core::apply_local`] does, with chaos mode,
    /// timing, the outcome count and the slow log around it.
    pub(super) fn run_observed(
        &mut self,
        mut cmd: Op,
        origin: Origin,
        client: Client<'_>,
    ) -> (Answer, bool) {
        self.commands += 1;
        let row = cmd.kind().index();
        if let Op::Lock(lock) = &mut cmd
            && lock.wait_ms.is_some()
            && self.ctx.lifecycle.is_stopping()
        {
            // A stopping server queues no waits: they could outlast it.
            lock.wait_ms = None;
        }
        let mischief = if cmd.is_write() && !matches!(origin, Origin::Nobody) {
            self.chaos.roll()
        } else {
            None
        };
        if mischief == Some(Mischief::Refuse) {
            let stats = &self.ctx.figures.shards[self.id];
            bump_owned(&stats.chaos_refused, 1);
            stats.commands.count(row, Counted::TryAgain);
            return (Answer::Outcome(Error::ChaosRefused.into()), false);
        }
        let capture = (self.ctx.config.slowlog_log_slower_than >= 0).then(|| Capture::of(&cmd));
        let (outcome, unlogged) = self.apply_local(cmd, origin);
        let elapsed = self.lap();
        self.observe(row, Counted::of(&outcome), elapsed, client, || {
            capture.map(|c| c.args()).unwrap_or_default()
        });
        if mischief == Some(Mischief::Drop) && !matches!(outcome, Outcome::Parked) {
            bump_owned(&self.ctx.figures.shards[self.id].chaos_dropped, 1);
            return (Answer::Hangup, unlogged);
        }
        (Answer::Outcome(outcome), unlogged)
    }

    /// Runs a transaction's operations, all owned by this shard, in order with nothing in
    /// between, each timed and counted as its own command. Chaos mode leaves transactions
    /// alone. Their records go to the log as one group (when there are two or more), which
    /// recovery applies whole or not at all. Returns the outcomes and whether they depend on
    /// records not yet in the log.
    pub(super) fn run_transaction(
        &mut self,
        ops: Vec<Op>,
        origin: Origin,
        client: Client<'_>,
    ) -> (Vec<Outcome>, bool) {
        let start = self.records.len();
        self.records.push(LogRecord::Group { count: 0 });
        let mut outcomes = Vec::with_capacity(ops.len());
        for op in ops {
            self.commands += 1;
            let row = op.kind().index();
            let capture = (self.ctx.config.slowlog_log_slower_than >= 0).then(|| Capture::of(&op));
            let (outcome, _) = self.apply_local(op, origin);
            let elapsed = self.lap();
            self.observe(row, Counted::of(&outcome), elapsed, client, || {
                capture.map(|c| c.args()).unwrap_or_default()
            });
            outcomes.push(outcome);
        }
        let count = self.records.len() - start - 1;
        if count < 2 {
            self.records.remove(start);
        } else if let Some(marker) = self.records.get_mut(start) {
            *marker = LogRecord::Group {
                count: u32::try_from(count).unwrap_or(u32::MAX),
            };
        }
        (outcomes, !self.records.is_empty())
    }

    /// Starts timing a batch of commands.
    pub(super) fn start_laps(&mut self) {
        self.mark = Instant::now();
    }

    /// The time since the previous command of the batch ended (or the batch began): this
    /// command's.
    pub(super) fn lap(&mut self) -> Duration {
        let now = Instant::now();
        let lap = now.saturating_duration_since(self.mark);
        self.mark = now;
        lap
    }

    /// Counts a command of row `row` that ran for `elapsed` and ended in `outcome`, and keeps
    /// it in the slow log (with the arguments `args` gives) if it was slow.
    pub(super) fn observe(
        &self,
        row: usize,
        outcome: Counted,
        elapsed: Duration,
        client: Client<'_>,
        args: impl FnOnce() -> Vec<Bytes>,
    ) {
        let stats = &self.ctx.figures.shards[self.id];
        stats.commands.record(row, outcome, elapsed);
        let config = &self.ctx.config;
        let Ok(threshold) = u128::try_from(config.slowlog_log_slower_than) else {
            return;
        };
        if elapsed.as_micros() < threshold {
            return;
        }
        let (client_addr, client_name) = match client {
            Client::Session(s) => (s.peer.to_string(), s.name.clone().unwrap_or_default()),
            Client::Shard(n) => (String::new(), Bytes::from(format!("shard-{n}"))),
            Client::Http => (String::new(), Bytes::from_static(b"http")),
        };
        let entry = SlowEntry {
            id: self
                .ctx
                .figures
                .slowlog_ids
                .fetch_add(1, std::sync::atomic::Ordering::Relaxed),
            unix_secs: SystemTime::now()
                .duration_since(UNIX_EPOCH)
                .map_or(0, |d| d.as_secs()),
            duration_us: u64::try_from(elapsed.as_micros()).unwrap_or(u64::MAX),
            args: args(),
            client_addr,
            client_name,
        };
        stats
            .slowlog
            .push(entry, config.slowlog_max_len.max(1) as usize);
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn chaos_is_off_at_zero_and_splits_its_mischief() {
        let mut off = Chaos::new(0.0, Some(1), 0);
        assert!((0..1000).all(|_| off.roll().is_none()));
        let mut on = Chaos::new(0.3, Some(7), 0);
        let rolls: Vec<_> = (0..10_000).map(|_| on.roll()).collect();
        let refused = rolls
            .iter()
            .filter(|r| **r == Some(Mischief::Refuse))
            .count();
        let dropped = rolls.iter().filter(|r| **r == Some(Mischief::Drop)).count();
        assert!((1200..1800).contains(&refused), "{refused}");
        assert!((1200..1800).contains(&dropped), "{dropped}");
        let mut again = Chaos::new(0.3, Some(7), 0);
        let replay: Vec<_> = (0..10_000).map(|_| again.roll()).collect();
        assert_eq!(rolls, replay, "a seed replays");
    }
}
