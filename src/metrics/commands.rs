//! Per-command figures of one shard: calls by outcome and an execution-time histogram.
//!
//! A command is counted once, by the shard that runs it: a lock command by the shard that
//! owns its id (whether it came from a RESP connection of that shard, another shard or
//! HTTP), a connection command by the connection's shard. Every cell has one writer, the
//! owning shard thread (see [`crate::metrics::histogram`] for why that makes updates cheap).

use std::sync::atomic::{AtomicU64, Ordering};
use std::time::Duration;

use crate::metrics::histogram::{Histogram, bump_owned};
use crate::protocol::Reply;
use crate::types::CommandKind;
use crate::types::Error;

/// What became of a command, by its reply. Errors are classed by their code.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Outcome {
    /// Any reply that is not an error.
    Ok,
    /// LOCK ... WAIT was queued; its final reply comes later and is not counted again.
    Queued,
    /// `-LOCKED`.
    Locked,
    /// `-COMPLETED`.
    Completed,
    /// `-NOTLOCKED`.
    NotLocked,
    /// `-BADKEY`.
    BadKey,
    /// `-MISMATCH`.
    Mismatch,
    /// `-IOERR`: the log could not take the change.
    IoErr,
    /// `-TRYAGAIN`: refused by chaos mode before it ran.
    TryAgain,
    /// Refused before it ran: unknown command, wrong arity, not authenticated.
    Rejected,
    /// Any other error (`ERR` and the rest).
    Err,
}

impl Outcome {
    /// Every outcome, in the order of their cells.
    pub const ALL: [Outcome; 11] = [
        Outcome::Ok,
        Outcome::Queued,
        Outcome::Locked,
        Outcome::Completed,
        Outcome::NotLocked,
        Outcome::BadKey,
        Outcome::Mismatch,
        Outcome::IoErr,
        Outcome::TryAgain,
        Outcome::Rejected,
        Outcome::Err,
    ];

    /// The label value, lowercase.
    pub fn as_str(self) -> &'static str {
        match self {
            Outcome::Ok => "ok",
            Outcome::Queued => "queued",
            Outcome::Locked => "locked",
            Outcome::Completed => "completed",
            Outcome::NotLocked => "notlocked",
            Outcome::BadKey => "badkey",
            Outcome::Mismatch => "mismatch",
            Outcome::IoErr => "ioerr",
            Outcome::TryAgain => "tryagain",
            Outcome::Rejected => "rejected",
            Outcome::Err => "err",
        }
    }

    /// Whether the reply was an error (Redis's `failed_calls` or `rejected_calls`).
    pub fn is_error(self) -> bool {
        !matches!(self, Outcome::Ok | Outcome::Queued)
    }

    /// What a lock operation's outcome counts as.
    pub fn of(outcome: &crate::table::Outcome) -> Outcome {
        match outcome {
            crate::table::Outcome::Parked => Outcome::Queued,
            crate::table::Outcome::Refused { error, .. } => Outcome::of_error(*error),
            crate::table::Outcome::Taken { standing } => Outcome::of_error(standing.refusal()),
            _ => Outcome::Ok,
        }
    }

    /// What a lock command's error counts as, by its code.
    pub fn of_error(error: Error) -> Outcome {
        match error {
            Error::Locked | Error::QueueFull => Outcome::Locked,
            Error::Completed => Outcome::Completed,
            Error::NotLocked => Outcome::NotLocked,
            Error::BadKey => Outcome::BadKey,
            Error::Mismatch => Outcome::Mismatch,
            Error::LogFailed => Outcome::IoErr,
            Error::ChaosRefused => Outcome::TryAgain,
            Error::EmptyId
            | Error::IdTooLong
            | Error::Syntax
            | Error::ResultTooLarge
            | Error::FingerprintTooLong
            | Error::KeyForm
            | Error::LockExpire
            | Error::RenewExpire
            | Error::WaitTimeout => Outcome::Err,
        }
    }

    /// What a connection or server command's reply counts as: any error is [`Outcome::Err`].
    pub fn of_reply(reply: &Reply) -> Outcome {
        if reply.is_error() {
            Outcome::Err
        } else {
            Outcome::Ok
        }
    }

    fn index(self) -> usize {
        self as usize
    }
}

/// The cell for commands the spec table does not know.
pub const UNKNOWN: usize = CommandKind::COUNT;
/// Rows of the per-command arrays: every kind, and unknown commands.
pub const ROWS: usize = CommandKind::COUNT + 1;

/// The name of row `row`: the command's lowercase name, or `unknown`.
pub fn row_name(row: usize) -> &'static str {
    crate::types::COMMANDS
        .iter()
        .find(|c| c.kind.index() == row)
        .map_or("unknown", |c| c.name)
}

/// One shard's per-command figures.
#[derive(Debug)]
pub struct CommandStats {
    /// `ROWS × Outcome::ALL.len()` call counters.
    calls: Box<[AtomicU64]>,
    /// One execution-time histogram per row.
    latency: Box<[Histogram]>,
}

impl Default for CommandStats {
    fn default() -> Self {
        CommandStats {
            calls: (0..ROWS * Outcome::ALL.len())
                .map(|_| AtomicU64::new(0))
                .collect(),
            latency: (0..ROWS).map(|_| Histogram::default()).collect(),
        }
    }
}

impl CommandStats {
    /// Counts one call of row `row` (a [`CommandKind::index`] or [`UNKNOWN`]) that took
    /// `elapsed`. Only the owning shard thread may call it.
    pub fn record(&self, row: usize, outcome: Outcome, elapsed: Duration) {
        self.count(row, outcome);
        if let Some(h) = self.latency.get(row.min(UNKNOWN)) {
            h.record_owned(elapsed);
        }
    }

    /// Counts one call of row `row` that did not run (refused before it ran), without a
    /// duration. Only the owning shard thread may call it.
    pub fn count(&self, row: usize, outcome: Outcome) {
        let row = row.min(UNKNOWN);
        if let Some(cell) = self.calls.get(row * Outcome::ALL.len() + outcome.index()) {
            bump_owned(cell, 1);
        }
    }

    /// Calls of row `row` that ended in `outcome`.
    pub fn calls(&self, row: usize, outcome: Outcome) -> u64 {
        self.calls
            .get(row * Outcome::ALL.len() + outcome.index())
            .map_or(0, |c| c.load(Ordering::Relaxed))
    }

    /// The execution-time histogram of row `row`.
    pub fn latency(&self, row: usize) -> Option<&Histogram> {
        self.latency.get(row)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn outcomes_follow_error_codes() {
        use crate::table::Outcome as Op;
        assert_eq!(Outcome::of(&Op::Done), Outcome::Ok);
        assert_eq!(Outcome::of(&Op::Parked), Outcome::Queued);
        assert_eq!(Outcome::of(&Error::Locked.into()), Outcome::Locked);
        assert_eq!(Outcome::of(&Error::QueueFull.into()), Outcome::Locked);
        assert_eq!(Outcome::of(&Error::Mismatch.into()), Outcome::Mismatch);
        assert_eq!(Outcome::of_error(Error::LogFailed), Outcome::IoErr);
        assert_eq!(Outcome::of_error(Error::ChaosRefused), Outcome::TryAgain);
        assert_eq!(Outcome::of_error(Error::Syntax), Outcome::Err);
        assert_eq!(Outcome::of_reply(&Reply::Ok), Outcome::Ok);
        assert_eq!(
            Outcome::of_reply(&Reply::error("WRONGPASS x")),
            Outcome::Err
        );
        for (i, o) in Outcome::ALL.iter().enumerate() {
            assert_eq!(o.index(), i);
        }
    }

    #[test]
    fn records_by_row_and_outcome() {
        let s = CommandStats::default();
        let lock = CommandKind::Lock.index();
        s.record(lock, Outcome::Ok, Duration::from_micros(3));
        s.record(lock, Outcome::Ok, Duration::from_micros(3));
        s.record(UNKNOWN, Outcome::Rejected, Duration::ZERO);
        s.record(usize::MAX, Outcome::Rejected, Duration::ZERO);
        assert_eq!(s.calls(lock, Outcome::Ok), 2);
        assert_eq!(s.calls(UNKNOWN, Outcome::Rejected), 2);
        assert_eq!(s.latency(lock).map(|h| h.snapshot().count()), Some(2));
        assert_eq!(row_name(lock), "lock");
        assert_eq!(row_name(UNKNOWN), "unknown");
    }
}
